package pop3

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// ErrLineTooLong is returned by ReadLine for a line over the limit. The rest
// of that line has been consumed, so the next ReadLine starts on the next
// line and the session stays in step.
var ErrLineTooLong = errors.New("pop3: line too long")

// ReadLine reads one line of at most max octets including its line end
// (RFC 2449 §4: 255 octets for commands, 512 for replies) and returns it
// without the CRLF or LF. The returned slice is valid until the next read
// from r. A line over the limit yields ErrLineTooLong after the rest of it
// has been discarded without being stored; memory use is bounded by r's
// buffer size whatever the peer sends.
func ReadLine(r *bufio.Reader, max int) ([]byte, error) {
	if max > r.Size() {
		return nil, fmt.Errorf("pop3: line limit %d exceeds buffer size %d", max, r.Size())
	}
	// Peek grows with the data available, up to max, without copying.
	for n := 1; ; {
		b, err := r.Peek(n)
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line := b[:i]
			r.Discard(i + 1)
			return bytes.TrimSuffix(line, []byte("\r")), nil
		}
		if len(b) >= max {
			return nil, discardLine(r)
		}
		if err != nil {
			if errors.Is(err, io.EOF) && len(b) > 0 {
				return nil, io.ErrUnexpectedEOF
			}
			return nil, err
		}
		// Look at everything already buffered; only when b is all of it,
		// wait for one more byte. (Peek(n) returns just n bytes even when
		// more are buffered, so asking for Buffered()+1 after a short peek
		// blocked on a complete line until the read deadline.)
		n = r.Buffered()
		if n <= len(b) {
			n = len(b) + 1
		}
		if n > max {
			n = max
		}
	}
}

// discardLine drops input up to and including the next LF.
func discardLine(r *bufio.Reader) error {
	for {
		_, err := r.ReadSlice('\n')
		if err == nil {
			return ErrLineTooLong
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			// EOF here is always mid-line: at least max octets of this
			// line have been seen, whether or not ReadSlice returned any.
			if errors.Is(err, io.EOF) {
				return io.ErrUnexpectedEOF
			}
			return err
		}
	}
}
