package pop3client

import (
	"bufio"
	"bytes"
	"errors"
	"io"

	"github.com/popbox/popbox/pop3"
)

// dotReader reads the body of a multi-line reply (RFC 1939 §3): it removes
// the byte-stuffing, keeps line ends as received, and stops after the
// terminating line, which it consumes but does not return. Lines of any
// length stream through in pieces.
//
// It does the job of pop3.DotReader, which it replaces here because that
// one waits for three octets at every line starting with a dot: after a
// ".LF" terminator from a sloppy server, the third octet never comes (the
// server is waiting for the next command), and the read hangs until the
// deadline. This one looks at the second octet before asking for a third.
type dotReader struct {
	r         *bufio.Reader
	lineStart bool
	done      bool
	err       error
}

func newDotReader(r *bufio.Reader) *dotReader {
	return &dotReader{r: r, lineStart: true}
}

func (d *dotReader) Read(p []byte) (int, error) {
	if d.err != nil {
		return 0, d.err
	}
	if d.done {
		return 0, io.EOF
	}
	n := 0
	for n < len(p) {
		// With data in hand, return it rather than wait for more
		// (io.Reader convention: the caller streams as data arrives).
		if n > 0 && !d.canContinue() {
			break
		}
		if d.lineStart {
			b, err := d.r.Peek(1)
			if err != nil {
				return n, d.fail(err)
			}
			if b[0] == '.' {
				if b, err = d.r.Peek(2); err != nil {
					return n, d.fail(err)
				}
				term := 0
				switch b[1] {
				case '\n': // ".LF", from a sloppy server
					term = 2
				case '\r':
					if b, err = d.r.Peek(3); err != nil {
						return n, d.fail(err)
					}
					if b[2] == '\n' {
						term = 3
					}
				}
				if term > 0 {
					d.r.Discard(term)
					d.done = true
					if n == 0 {
						return 0, io.EOF
					}
					return n, nil
				}
				d.r.Discard(1) // the stuffing dot
			}
			d.lineStart = false
		}
		// Copy up to the end of the line or of p, whichever comes first.
		if _, err := d.r.Peek(1); err != nil {
			return n, d.fail(err)
		}
		b, _ := d.r.Peek(min(d.r.Buffered(), len(p)-n))
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[:i+1]
			d.lineStart = true
		}
		n += copy(p[n:], b)
		d.r.Discard(len(b))
	}
	return n, nil
}

// canContinue reports whether the next step can be taken with the octets
// already buffered, without waiting for the network.
func (d *dotReader) canContinue() bool {
	buffered := d.r.Buffered()
	if buffered == 0 {
		return false
	}
	if !d.lineStart {
		return true
	}
	b, _ := d.r.Peek(min(buffered, 3))
	switch {
	case b[0] != '.':
		return true
	case len(b) < 2:
		return false
	case b[1] != '\r':
		return true
	}
	return len(b) == 3
}

func (d *dotReader) fail(err error) error {
	if errors.Is(err, io.EOF) {
		err = pop3.ErrUnterminated
	}
	d.err = err
	return err
}
