package fetch

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
)

// spoolMemory is how much of a message is kept in memory before the spool
// moves to a file. With a window of 32 that is at most 8 MiB of memory.
const spoolMemory = 256 << 10

// spool holds one retrieved message between the network and the
// destination: in memory while small, then in a file that is unlinked as
// soon as it is created, so that nothing is left behind by a kill.
type spool struct {
	dir  string
	mem  bytes.Buffer
	file *os.File
	size int64
}

func newSpool(dir string) *spool { return &spool{dir: dir} }

func (s *spool) Write(p []byte) (int, error) {
	if s.file == nil && s.mem.Len()+len(p) > spoolMemory {
		f, err := os.CreateTemp(s.dir, ".spool-*")
		if err != nil {
			return 0, fmt.Errorf("spooling message: %w", err)
		}
		os.Remove(f.Name()) // the open descriptor keeps the data
		s.file = f
		if _, err := f.Write(s.mem.Bytes()); err != nil {
			return 0, fmt.Errorf("spooling message: %w", err)
		}
		s.mem = bytes.Buffer{}
	}
	var n int
	var err error
	if s.file != nil {
		n, err = s.file.Write(p)
		if err != nil {
			err = fmt.Errorf("spooling message: %w", err)
		}
	} else {
		n, err = s.mem.Write(p)
	}
	s.size += int64(n)
	return n, err
}

// Reader returns the spooled bytes from the start.
func (s *spool) Reader() (io.Reader, error) {
	if s.file == nil {
		return bytes.NewReader(s.mem.Bytes()), nil
	}
	if _, err := s.file.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("rewinding spool: %w", err)
	}
	return io.LimitReader(s.file, s.size), nil
}

func (s *spool) Close() error {
	s.mem = bytes.Buffer{}
	if s.file != nil {
		return s.file.Close()
	}
	return nil
}

// errTooLong: a message body much longer than its LIST size. A server
// that never ends a message must not fill the disk.
var errTooLong = errors.New("message much longer than its LIST size")

// boundedCopy copies r to w, refusing more than limit bytes.
func boundedCopy(w io.Writer, r io.Reader, limit int64) (int64, error) {
	n, err := io.Copy(w, io.LimitReader(r, limit+1))
	if err != nil {
		return n, err
	}
	if n > limit {
		return n, errTooLong
	}
	return n, nil
}
