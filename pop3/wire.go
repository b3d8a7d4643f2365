package pop3

import (
	"bytes"
	"io"
)

// WireCounter counts the octets a message occupies on the wire after
// line-end conversion (see the package doc), excluding byte-stuffing and the
// terminating ".CRLF". Its zero value is ready to use. Writes never fail.
type WireCounter struct {
	n       int64
	started bool
	lastCR  bool // previous byte was CR
	lastLF  bool // previous byte was LF (so the data ends in a line end)
}

// Write counts p.
func (c *WireCounter) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.started = true
	c.n += int64(len(p))
	prevCR := c.lastCR
	for i := 0; ; {
		j := bytes.IndexByte(p[i:], '\n')
		if j < 0 {
			break
		}
		j += i
		cr := prevCR
		if j > 0 {
			cr = p[j-1] == '\r'
		}
		if !cr {
			c.n++ // a bare LF becomes CRLF
		}
		i = j + 1
		if i >= len(p) {
			break
		}
	}
	last := p[len(p)-1]
	c.lastCR = last == '\r'
	c.lastLF = last == '\n'
	return len(p), nil
}

// Size is the wire size of everything written so far, including the final
// CRLF that will be added if the data does not end in a line end.
func (c *WireCounter) Size() int64 {
	if c.started && !c.lastLF {
		return c.n + 2
	}
	return c.n
}

// WireSize reads r to the end and returns its wire size.
func WireSize(r io.Reader) (int64, error) {
	var c WireCounter
	if _, err := io.Copy(&c, r); err != nil {
		return 0, err
	}
	return c.Size(), nil
}
