package lmtp

import (
	"errors"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// openTempFile makes an anonymous file in dir (O_TMPFILE, Linux 3.11):
// it never has a name, so not even a crash at the wrong instant leaves
// mail behind in a shared temporary directory. File systems without
// O_TMPFILE get createUnlinked.
func openTempFile(dir string) (*os.File, error) {
	if dir == "" {
		dir = os.TempDir()
	}
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err == nil {
		return os.NewFile(uintptr(fd), filepath.Join(dir, "(spool)")), nil
	}
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EISDIR) || errors.Is(err, unix.EINVAL) {
		return createUnlinked(dir)
	}
	return nil, &os.PathError{Op: "open", Path: dir, Err: err}
}
