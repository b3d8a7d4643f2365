package maildir

import (
	"errors"
	"fmt"
	"math"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// POP3 session locks (RFC 1939 §4) cost one file descriptor per Store, not
// one per session: a server with 10,000 clients logged in would otherwise
// hold 20,000 descriptors (socket and lock file each), and hit the usual
// 20k–64k RLIMIT_NOFILE hard limits at half the sessions it could serve.
//
// Every session lock of a Store is a byte-range lock on one shared file,
// root/.popbox-session-locks (a name no user can have), taken with
// F_OFD_SETLK at the offset given by the inode number of the mailbox's
// Maildir directory. Open file description locks, unlike classic POSIX
// record locks, belong to the open file description: closing some other
// descriptor of the file (as SQLite or a library might) does not drop them,
// and, like flock, they go with the process when it dies, so a crash leaves
// nothing stale. Two processes conflict on the same range; locks taken
// through one description never conflict with each other, so within the
// Store a table of held inodes refuses the second session. Two Stores on one
// root, in one process or two, open the file separately and so conflict as
// processes do. The inode names the mailbox itself, so a Maildir reached by
// two paths has one lock.
//
// A mailbox on another file system than the root (a symlinked home) has an
// inode number that may collide with one on the root's, so it falls back
// to a flock on its own popbox-pop3.lock, one descriptor per session, as
// every process decides the same way. The shared file is closed when the
// Store holds no session lock.

const sessionLocksName = ".popbox-session-locks"

// sessionLocks is the per-Store table of held session locks.
type sessionLocks struct {
	path string

	mu   sync.Mutex
	f    *os.File // open while held is not empty
	dev  uint64
	held map[uint64]bool // inodes of locked Maildir directories
}

// sessionLock is one held session lock.
type sessionLock struct {
	locks *sessionLocks
	ino   uint64
	file  *os.File // the fallback flock; nil on the shared file
}

// lockSession takes mb's session lock without waiting: errLocked if a
// session holds it, in this process or another.
func (s *Store) lockSession(mb mailbox) (*sessionLock, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(mb.dir, &st); err != nil {
		return nil, fmt.Errorf("maildir: session lock: %w", &os.PathError{Op: "stat", Path: mb.dir, Err: err})
	}
	l := &s.sessions
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.openLocked(); err != nil {
		return nil, err
	}
	if st.Dev != l.dev || st.Ino > math.MaxInt64 {
		l.closeIfIdleLocked()
		f, err := tryLock(mb.path(sessionLockName))
		if err != nil {
			return nil, err
		}
		return &sessionLock{file: f}, nil
	}
	if l.held[st.Ino] {
		return nil, errLocked
	}
	if err := l.setLocked(st.Ino, unix.F_WRLCK); err != nil {
		l.closeIfIdleLocked()
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EACCES) {
			return nil, errLocked
		}
		return nil, fmt.Errorf("maildir: session lock of %s: %w", mb.dir, err)
	}
	l.held[st.Ino] = true
	return &sessionLock{locks: l, ino: st.Ino}, nil
}

// release drops the lock; safe to call on nil.
func (h *sessionLock) release() error {
	if h == nil {
		return nil
	}
	if h.file != nil {
		return unlock(h.file)
	}
	l := h.locks
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.held[h.ino] {
		return nil
	}
	delete(l.held, h.ino)
	err := l.setLocked(h.ino, unix.F_UNLCK)
	// Closing the description drops its locks too, which makes a failed
	// F_UNLCK harmless once no other session is held.
	if cerr := l.closeIfIdleLocked(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("maildir: releasing session lock: %w", err)
	}
	return nil
}

// openLocked opens the shared file if it is not open.
func (l *sessionLocks) openLocked() error {
	if l.f != nil {
		return nil
	}
	f, err := os.OpenFile(l.path, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("maildir: session lock file: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("maildir: session lock file: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		f.Close()
		return errors.New("maildir: session lock file: no device number")
	}
	l.f, l.dev = f, st.Dev
	if l.held == nil {
		l.held = make(map[uint64]bool)
	}
	return nil
}

func (l *sessionLocks) closeIfIdleLocked() error {
	if l.f == nil || len(l.held) > 0 {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// setLocked sets the lock of the one-byte range at ino to typ (F_WRLCK or
// F_UNLCK) without waiting.
func (l *sessionLocks) setLocked(ino uint64, typ int16) error {
	lk := unix.Flock_t{Type: typ, Whence: 0, Start: int64(ino), Len: 1}
	rc, err := l.f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	err = rc.Control(func(fd uintptr) {
		for {
			ferr = unix.FcntlFlock(fd, unix.F_OFD_SETLK, &lk)
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
