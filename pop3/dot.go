package pop3

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// DotWriter writes a message as the body of a multi-line response: it
// converts line ends to CRLF, byte-stuffs lines that start with '.'
// (RFC 1939 §3), and Close adds the final CRLF when missing and the
// terminating ".CRLF". It writes to a bufio.Writer so that the many small
// pieces become few system calls; it does not flush.
type DotWriter struct {
	w         *bufio.Writer
	lineStart bool // the next byte begins a line
	lastCR    bool // the previous byte written was a CR
	closed    bool
}

// NewDotWriter returns a DotWriter that writes to w.
func NewDotWriter(w *bufio.Writer) *DotWriter {
	return &DotWriter{w: w, lineStart: true}
}

var (
	crlf    = []byte("\r\n")
	dotCRLF = []byte(".\r\n")
)

// Write converts and writes p. It returns len(p) on success: the count is of
// input bytes, not of the (larger) output.
func (d *DotWriter) Write(p []byte) (int, error) {
	if d.closed {
		return 0, errors.New("pop3: write after close")
	}
	n := len(p)
	for len(p) > 0 {
		if d.lineStart && p[0] == '.' {
			if err := d.w.WriteByte('.'); err != nil {
				return 0, err
			}
		}
		d.lineStart = false
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			if _, err := d.w.Write(p); err != nil {
				return 0, err
			}
			d.lastCR = p[len(p)-1] == '\r'
			break
		}
		// p[:i] is the rest of the line; is its LF already preceded by CR?
		hasCR := (i > 0 && p[i-1] == '\r') || (i == 0 && d.lastCR)
		if _, err := d.w.Write(p[:i]); err != nil {
			return 0, err
		}
		var err error
		if hasCR {
			err = d.w.WriteByte('\n')
		} else {
			_, err = d.w.Write(crlf)
		}
		if err != nil {
			return 0, err
		}
		d.lastCR = false
		d.lineStart = true
		p = p[i+1:]
	}
	return n, nil
}

// Close ends the message: a CRLF if the data did not end in a line end,
// then ".CRLF". It does not close or flush the underlying writer.
func (d *DotWriter) Close() error {
	if d.closed {
		return nil
	}
	d.closed = true
	if !d.lineStart {
		if _, err := d.w.Write(crlf); err != nil {
			return err
		}
	}
	_, err := d.w.Write(dotCRLF)
	return err
}

// ErrUnterminated is returned by DotReader when the stream ends before the
// terminating ".CRLF" line.
var ErrUnterminated = errors.New("pop3: multi-line response not terminated")

// DotReader reads the body of a multi-line response (RFC 1939 §3): it removes
// the byte-stuffing and stops at the terminating line, which it consumes but
// does not return. Line ends are returned as received (CRLF from a correct
// server). It streams: lines of any length pass through in pieces.
type DotReader struct {
	r         *bufio.Reader
	lineStart bool
	done      bool
	err       error
}

// NewDotReader returns a DotReader reading from r.
func NewDotReader(r *bufio.Reader) *DotReader {
	return &DotReader{r: r, lineStart: true}
}

// Read implements io.Reader.
func (d *DotReader) Read(p []byte) (int, error) {
	if d.err != nil {
		return 0, d.err
	}
	if d.done {
		return 0, io.EOF
	}
	n := 0
	for n < len(p) {
		// Return what we have rather than wait for more input (io.Reader
		// convention; a client streams the message as it arrives): stop
		// when nothing is buffered, or at a line start whose dot check
		// might wait for up to 3 bytes.
		if n > 0 && (d.r.Buffered() == 0 || d.lineStart && d.r.Buffered() < 3) {
			break
		}
		if d.lineStart {
			// Look at the start of the line to find a stuffed dot or the
			// terminator. Peek waits for at most 3 bytes.
			b, err := d.r.Peek(1)
			if err != nil {
				return n, d.fail(err)
			}
			if b[0] == '.' {
				// Ask for a third byte only after ".CR": after a sloppy
				// ".LF" terminator the server sends nothing more until
				// the next command, so waiting for three would hang.
				b, err = d.r.Peek(2)
				if len(b) == 2 && b[1] == '\n' {
					// ".LF": a terminator from a sloppy server.
					d.r.Discard(2)
					d.done = true
					return n, d.eofIfEmpty(n)
				}
				if len(b) == 2 && b[1] == '\r' {
					b, err = d.r.Peek(3)
					if len(b) == 3 && b[2] == '\n' {
						d.r.Discard(3)
						d.done = true
						return n, d.eofIfEmpty(n)
					}
				}
				if err != nil {
					return n, d.fail(err)
				}
				d.r.Discard(1) // drop the stuffing dot
			}
			d.lineStart = false
		}
		// Copy up to the end of the line or of p, whichever comes first.
		if _, err := d.r.Peek(1); err != nil {
			return n, d.fail(err)
		}
		avail := d.r.Buffered()
		if avail > len(p)-n {
			avail = len(p) - n
		}
		buf, _ := d.r.Peek(avail)
		if i := bytes.IndexByte(buf, '\n'); i >= 0 {
			buf = buf[:i+1]
			d.lineStart = true
		}
		copy(p[n:], buf)
		n += len(buf)
		d.r.Discard(len(buf))
	}
	return n, nil
}

func (d *DotReader) eofIfEmpty(n int) error {
	if n == 0 {
		return io.EOF
	}
	return nil
}

func (d *DotReader) fail(err error) error {
	if errors.Is(err, io.EOF) {
		err = ErrUnterminated
	}
	d.err = err
	return err
}
