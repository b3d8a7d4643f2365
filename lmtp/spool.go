package lmtp

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
)

// spool holds one message while it is delivered to each recipient: the
// first memMax octets in memory, the rest in a temporary file that has no
// name (O_TMPFILE) or is unlinked at once, so that nothing is left behind
// when the process dies. It is written once, then read any number of times.
type spool struct {
	dir    string
	memMax int
	mem    bytes.Buffer
	file   *os.File
	size   int64
}

func (s *spool) Write(p []byte) (int, error) {
	n := len(p)
	if s.file == nil {
		room := s.memMax - s.mem.Len()
		if len(p) <= room {
			s.mem.Write(p)
			s.size += int64(n)
			return n, nil
		}
		f, err := openTempFile(s.dir)
		if err != nil {
			return 0, fmt.Errorf("lmtp: spool: %w", err)
		}
		s.file = f
		s.mem.Write(p[:room])
		s.size += int64(room)
		p = p[room:]
	}
	m, err := s.file.Write(p)
	s.size += int64(m)
	if err != nil {
		return n - len(p) + m, fmt.Errorf("lmtp: spool: %w", err)
	}
	return n, nil
}

// Size is the number of octets written.
func (s *spool) Size() int64 { return s.size }

// Reader returns a new reader of everything written. Readers are
// independent: the file part is read with ReadAt.
func (s *spool) Reader() io.Reader {
	mem := bytes.NewReader(s.mem.Bytes())
	if s.file == nil {
		return mem
	}
	return io.MultiReader(mem, io.NewSectionReader(s.file, 0, s.size-int64(s.mem.Len())))
}

// Close releases the temporary file.
func (s *spool) Close() error {
	if s.file == nil {
		return nil
	}
	err := s.file.Close()
	s.file = nil
	return err
}

// createUnlinked is the portable fallback for openTempFile: a named file
// that is removed at once, so it exists only for an instant.
func createUnlinked(dir string) (*os.File, error) {
	f, err := os.CreateTemp(dir, "popbox-lmtp-*")
	if err != nil {
		return nil, err
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, errors.Join(err, os.Remove(f.Name()))
	}
	return f, nil
}

// lfWriter turns CRLF into LF on its way to w and keeps every other byte,
// a lone CR included. A CR at the end of one Write is held until the next
// one shows whether an LF follows; Flush writes it out at the end.
type lfWriter struct {
	w   io.Writer
	cr  bool // a CR is held back
	buf []byte
}

func (l *lfWriter) Write(p []byte) (int, error) {
	n := len(p)
	if n == 0 {
		return 0, nil
	}
	out := l.buf[:0]
	if l.cr {
		l.cr = false
		if p[0] != '\n' {
			out = append(out, '\r')
		}
	}
	for {
		i := bytes.IndexByte(p, '\r')
		if i < 0 {
			out = append(out, p...)
			break
		}
		out = append(out, p[:i]...)
		if i+1 == len(p) {
			l.cr = true
			break
		}
		if p[i+1] != '\n' {
			out = append(out, '\r')
		}
		p = p[i+1:]
	}
	l.buf = out[:0]
	if _, err := l.w.Write(out); err != nil {
		return 0, err
	}
	return n, nil
}

// Flush writes out a CR held back by the last Write.
func (l *lfWriter) Flush() error {
	if !l.cr {
		return nil
	}
	l.cr = false
	_, err := l.w.Write([]byte{'\r'})
	return err
}
