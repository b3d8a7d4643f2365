package dest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"syscall"
)

// lfWriter turns CRLF into LF on the way to w; a lone CR is kept. It holds
// at most one byte (a CR at the end of a Write, whose fate the next Write
// decides), so it streams messages of any size.
type lfWriter struct {
	w    io.Writer
	cr   bool  // a CR is pending
	last byte  // last byte passed to w, 0 before the first
	n    int64 // octets passed to w
}

func (l *lfWriter) emit(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	n, err := l.w.Write(p)
	l.n += int64(n)
	if n > 0 {
		l.last = p[n-1]
	}
	return err
}

func (l *lfWriter) Write(p []byte) (int, error) {
	total := len(p)
	if len(p) > 0 && l.cr {
		l.cr = false
		if p[0] != '\n' {
			if err := l.emit([]byte{'\r'}); err != nil {
				return 0, err
			}
		}
	}
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\r')
		if i < 0 {
			if err := l.emit(p); err != nil {
				return 0, err
			}
			break
		}
		if err := l.emit(p[:i]); err != nil {
			return 0, err
		}
		if i+1 == len(p) {
			l.cr = true
			break
		}
		if p[i+1] == '\n' {
			p = p[i+1:] // drop the CR, the LF goes out with the next segment
			continue
		}
		if err := l.emit(p[i : i+1]); err != nil {
			return 0, err
		}
		p = p[i+1:]
	}
	return total, nil
}

// Flush emits a CR still pending at the end of the message.
func (l *lfWriter) Flush() error {
	if l.cr {
		l.cr = false
		return l.emit([]byte{'\r'})
	}
	return nil
}

// endsInNewline reports whether the output so far ends a line (an empty
// message does not).
func (l *lfWriter) endsInNewline() bool { return l.n > 0 && l.last == '\n' && !l.cr }

// fromLine is what mboxrd quotes at the start of a line, after any number
// of '>'.
const fromLine = "From "

// gts is a run of '>' to write quote prefixes from.
const gts = ">>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>"

// mboxrdWriter applies mboxrd quoting (one more '>' before any line
// matching ^>*From ) to a stream of LF-terminated lines. The '>' run is only
// counted, never buffered, so a line of a million '>' costs nothing; at most
// len("From ")-1 other bytes are held between Writes.
type mboxrdWriter struct {
	w       io.Writer
	midLine bool // false at the start of a line
	gt      int64
	from    int // bytes of "From " matched after the '>' run
}

func (q *mboxrdWriter) writeGT(n int64) error {
	for n > 0 {
		k := min(n, int64(len(gts)))
		if _, err := io.WriteString(q.w, gts[:k]); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

// flushPending writes the held prefix unchanged: it turned out not to be a
// From line.
func (q *mboxrdWriter) flushPending() error {
	if err := q.writeGT(q.gt); err != nil {
		return err
	}
	if q.from > 0 {
		if _, err := io.WriteString(q.w, fromLine[:q.from]); err != nil {
			return err
		}
	}
	q.gt, q.from = 0, 0
	return nil
}

func (q *mboxrdWriter) Write(p []byte) (int, error) {
	total := len(p)
	for len(p) > 0 {
		if q.midLine {
			i := bytes.IndexByte(p, '\n')
			if i < 0 {
				if _, err := q.w.Write(p); err != nil {
					return 0, err
				}
				break
			}
			if _, err := q.w.Write(p[:i+1]); err != nil {
				return 0, err
			}
			p = p[i+1:]
			q.midLine = false
			continue
		}
		c := p[0]
		switch {
		case c == '>' && q.from == 0:
			q.gt++
			p = p[1:]
		case c == fromLine[q.from]:
			q.from++
			p = p[1:]
			if q.from == len(fromLine) {
				if err := q.writeGT(q.gt + 1); err != nil {
					return 0, err
				}
				if _, err := io.WriteString(q.w, fromLine); err != nil {
					return 0, err
				}
				q.gt, q.from = 0, 0
				q.midLine = true
			}
		default:
			// Not a From line: release what was held; c itself (maybe the
			// '\n' of a line such as ">From\n") goes out mid-line.
			if err := q.flushPending(); err != nil {
				return 0, err
			}
			q.midLine = true
		}
	}
	return total, nil
}

// Flush writes a prefix still held when the message ends without a final
// newline (e.g. a last line ">>Fro").
func (q *mboxrdWriter) Flush() error { return q.flushPending() }

// temporaryIO marks local I/O errors that go away by themselves (a full
// disk or quota) as ErrTemporary, so the engine keeps the message on the
// server instead of giving up on it.
func temporaryIO(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("%w: %w", ErrTemporary, err)
	}
	return err
}
