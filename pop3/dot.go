package pop3

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// DotEncoder converts a message to the body of a multi-line response,
// appending to a byte slice: line ends become CRLF, lines that start with
// '.' are byte-stuffed (RFC 1939 §3), and Close adds the final CRLF when
// missing and the terminating ".CRLF". It is DotWriter without the writer,
// for a reply prepared in memory before it is sent.
type DotEncoder struct {
	lineStart bool // the next byte begins a line
	lastCR    bool // the previous byte written was a CR
}

// NewDotEncoder returns an encoder at the start of a message.
func NewDotEncoder() DotEncoder { return DotEncoder{lineStart: true} }

// Append appends p converted to dst and returns the extended slice. A line
// may be split across calls.
func (e *DotEncoder) Append(dst, p []byte) []byte {
	if haveBlockEncoder && len(p) >= minBlockInput {
		if e.lineStart && p[0] == '.' {
			dst = append(dst, '.')
		}
		e.lineStart = false
		dst, p = e.appendBlocks(dst, p)
	}
	return e.appendLines(dst, p)
}

// appendLines is Append a line at a time, in Go.
func (e *DotEncoder) appendLines(dst, p []byte) []byte {
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		dst = e.appendLine(dst, p, i)
		if i < 0 {
			break
		}
		p = p[i+1:]
	}
	return dst
}

// Close appends the end of the message: a CRLF if the data did not end in
// a line end, then ".CRLF".
func (e *DotEncoder) Close(dst []byte) []byte {
	if !e.lineStart {
		dst = append(dst, crlf...)
	}
	e.lineStart = true
	return append(dst, dotCRLF...)
}

// appendLine appends the converted line p[:i] and its line end, or all of
// p if i < 0 (a line continued by the next call), to dst.
func (e *DotEncoder) appendLine(dst, p []byte, i int) []byte {
	if e.lineStart && p[0] == '.' {
		dst = append(dst, '.')
	}
	e.lineStart = false
	if i < 0 {
		e.lastCR = p[len(p)-1] == '\r'
		return append(dst, p...)
	}
	dst = append(dst, p[:i]...)
	// Is the LF already preceded by CR?
	if (i > 0 && p[i-1] == '\r') || (i == 0 && e.lastCR) {
		dst = append(dst, '\n')
	} else {
		dst = append(dst, '\r', '\n')
	}
	e.lastCR = false
	e.lineStart = true
	return dst
}

// DotWriter writes a message as the body of a multi-line response, with
// the conversion of DotEncoder. It writes to a bufio.Writer so that the
// many small pieces become few system calls; it does not flush.
type DotWriter struct {
	w      *bufio.Writer
	enc    DotEncoder
	closed bool
}

// NewDotWriter returns a DotWriter that writes to w.
func NewDotWriter(w *bufio.Writer) *DotWriter {
	return &DotWriter{w: w, enc: NewDotEncoder()}
}

var (
	crlf    = []byte("\r\n")
	dotCRLF = []byte(".\r\n")
)

// Write converts and writes p. It returns len(p) on success: the count is of
// input bytes, not of the (larger) output.
//
// Lines are converted straight into the bufio.Writer's free space
// (AvailableBuffer) and handed over in one Write per buffer's worth: with
// a Write call per line and another per line end, the calls cost more than
// the conversion on typical mail. A line that does not fit in the free
// space goes through Write piece by piece, which flushes as needed.
func (d *DotWriter) Write(p []byte) (int, error) {
	if d.closed {
		return 0, errors.New("pop3: write after close")
	}
	n := len(p)
	buf := d.w.AvailableBuffer()
	if haveBlockEncoder && len(p) >= minBlockInput && cap(buf) >= len(p)+len(p)/16+64 {
		// Room for all of it: the vector fast path (dotenc.go) straight
		// into the free space.
		if _, err := d.w.Write(d.enc.Append(buf, p)); err != nil {
			return 0, err
		}
		return n, nil
	}
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		line := p
		if i >= 0 {
			line = p[:i]
		}
		// At most a stuffed dot, the line and CRLF.
		if cap(buf)-len(buf) >= len(line)+3 {
			buf = d.enc.appendLine(buf, p, i)
		} else {
			if len(buf) > 0 {
				if _, err := d.w.Write(buf); err != nil {
					return 0, err
				}
			}
			if err := d.writeLine(p, i); err != nil {
				return 0, err
			}
			buf = d.w.AvailableBuffer()
		}
		if i < 0 {
			break
		}
		p = p[i+1:]
	}
	if len(buf) > 0 {
		if _, err := d.w.Write(buf); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// writeLine is appendLine through the writer's Write, for lines longer
// than its free space.
func (d *DotWriter) writeLine(p []byte, i int) error {
	e := &d.enc
	if e.lineStart && p[0] == '.' {
		if err := d.w.WriteByte('.'); err != nil {
			return err
		}
	}
	e.lineStart = false
	if i < 0 {
		e.lastCR = p[len(p)-1] == '\r'
		_, err := d.w.Write(p)
		return err
	}
	hasCR := (i > 0 && p[i-1] == '\r') || (i == 0 && e.lastCR)
	if _, err := d.w.Write(p[:i]); err != nil {
		return err
	}
	var err error
	if hasCR {
		err = d.w.WriteByte('\n')
	} else {
		_, err = d.w.Write(crlf)
	}
	if err != nil {
		return err
	}
	e.lastCR = false
	e.lineStart = true
	return nil
}

// Close ends the message: a CRLF if the data did not end in a line end,
// then ".CRLF". It does not close or flush the underlying writer.
func (d *DotWriter) Close() error {
	if d.closed {
		return nil
	}
	d.closed = true
	if !d.enc.lineStart {
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
