package maildir

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// errLocked: the flock is held by another open file description.
var errLocked = errors.New("maildir: locked")

// tryLock opens (creating if needed) the lock file at path and takes an
// exclusive flock(2) without waiting. Each call opens the file anew, so it
// gets its own open file description and conflicts with every other holder,
// in this process or another: flock locks belong to the open file
// description, not the process. The lock file's content and age mean
// nothing, so a file left behind by a dead process locks nobody out; the
// kernel drops the lock with the holder's last descriptor. Go opens files
// O_CLOEXEC, so children started by the holder do not inherit the lock.
func tryLock(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW, 0o600)
	if errors.Is(err, syscall.EISDIR) {
		// Something left a directory here; flock works on directories too.
		f, err = os.Open(path)
	}
	if err != nil {
		return nil, fmt.Errorf("maildir: lock file: %w", err)
	}
	if err := flock(f, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, errLocked
		}
		return nil, fmt.Errorf("maildir: flock %s: %w", path, err)
	}
	return f, nil
}

// waitLock takes the lock at path, polling until it is free or ctx ends.
// Used only for the index lock, which every holder keeps for a few fsyncs.
func waitLock(ctx context.Context, path string) (*os.File, error) {
	delay := time.Millisecond
	for {
		f, err := tryLock(path)
		if !errors.Is(err, errLocked) {
			return f, err
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("maildir: waiting for index lock: %w", ctx.Err())
		case <-t.C:
		}
		delay = min(2*delay, 50*time.Millisecond)
	}
}

// unlock releases the lock; closing the descriptor alone would do, the
// explicit LOCK_UN documents the intent.
func unlock(f *os.File) error {
	if f == nil {
		return nil
	}
	err := flock(f, unix.LOCK_UN)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func flock(f *os.File, how int) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	err = rc.Control(func(fd uintptr) {
		for {
			ferr = unix.Flock(int(fd), how)
			if ferr != unix.EINTR {
				return
			}
		}
	})
	if err != nil {
		return err
	}
	return ferr
}
