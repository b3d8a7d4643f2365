package dest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// staleDotLock: a dot-lock older than this is taken for the leftover of
	// a crashed program and removed. procmail and mutt use 5 minutes too; a
	// live holder refreshes its lock's mtime (refresh) well within it.
	staleDotLock = 5 * time.Minute
	// dotLockRefresh is how often a holder touches its dot-lock.
	dotLockRefresh = time.Minute
	// maxLockWait bounds waiting for the mbox locks when ctx has no earlier
	// deadline: a mail reader holding the mbox for longer is unusual enough
	// to give up and retry on the next fetch.
	maxLockWait = 2 * time.Minute
)

// mboxLock is a held pair of locks on an mbox: the dot-lock PATH.lock and a
// write lock on the whole file through fcntl.
type mboxLock struct {
	f        *os.File
	dotPath  string // "" when the directory did not let us create one
	touched  time.Time
	logger   *slog.Logger
	released bool
}

// lockMbox takes both locks on f (opened on path), dot-lock first and fcntl
// second: the order of procmail and of Dovecot's default mbox_write_locks.
// Postfix and mutt take fcntl first; to never deadlock with them, neither
// lock is waited for while the other is held: both are tried without
// blocking, the dot-lock is given back when fcntl is busy, and the pair is
// retried with a growing pause until ctx or maxLockWait ends.
//
// The fcntl lock is an open-file-description lock (F_OFD_SETLK), which
// conflicts with the classic F_SETLK locks of other programs exactly like
// one of them, but belongs to this open file rather than to the process:
// two Destinations in one process exclude each other too, and closing some
// other descriptor of the file (Has reading it) does not drop the lock, as
// it would a classic one. F_OFD_SETLKW is not used because a blocked
// syscall cannot be cancelled by ctx.
func lockMbox(ctx context.Context, f *os.File, path string, logger *slog.Logger) (*mboxLock, error) {
	ctx, cancel := context.WithTimeout(ctx, maxLockWait)
	defer cancel()
	dotPath := path + ".lock"
	pause := 5 * time.Millisecond
	noDot := false
	for {
		dotHeld := false
		if !noDot {
			held, err := tryDotLock(dotPath, logger)
			switch {
			case errors.Is(err, fs.ErrPermission):
				// A spool directory like /var/mail (1777 or group mail) may
				// not let this user create files; mutt and procmail then rely
				// on the kernel lock alone, and so do we.
				logger.Warn("mbox: cannot create dot-lock, using fcntl locking only", "path", dotPath, "err", err)
				noDot = true
			case err != nil:
				return nil, fmt.Errorf("dest: mbox: dot-lock %s: %w", dotPath, err)
			}
			dotHeld = held
		}
		if dotHeld || noDot {
			ok, err := tryFcntlLock(f)
			if err != nil {
				if dotHeld {
					os.Remove(dotPath)
				}
				return nil, fmt.Errorf("dest: mbox: fcntl lock %s: %w", path, err)
			}
			if ok {
				l := &mboxLock{f: f, touched: time.Now(), logger: logger}
				if dotHeld {
					l.dotPath = dotPath
				}
				return l, nil
			}
			if dotHeld {
				os.Remove(dotPath)
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: dest: mbox: %s is locked by another program: %w", ErrTemporary, path, ctx.Err())
		case <-time.After(pause):
		}
		pause = min(pause*2, 250*time.Millisecond)
	}
}

// tryDotLock creates the dot-lock with O_EXCL, which is atomic on local
// file systems and on NFSv3 and later. An existing lock older than
// staleDotLock is removed and the attempt repeated.
func tryDotLock(dotPath string, logger *slog.Logger) (bool, error) {
	for range 2 {
		f, err := os.OpenFile(dotPath, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err == nil {
			// The pid is for people looking at the lock; staleness is judged
			// by mtime only, since a pid may belong to another host.
			_, werr := f.WriteString(strconv.Itoa(os.Getpid()) + "\n")
			cerr := f.Close()
			if werr != nil || cerr != nil {
				os.Remove(dotPath)
				return false, errors.Join(werr, cerr)
			}
			return true, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return false, err
		}
		if !breakStaleDotLock(dotPath, logger) {
			return false, nil
		}
	}
	return false, nil
}

// breakStaleDotLock removes dotPath if it is stale. Between judging it
// stale and removing it another program may have broken it too and made a
// fresh one; removing that would let two writers in. So the lock is first
// renamed away (atomic), the renamed file checked to be the one judged
// stale, and put back with link (which never replaces) if it was not.
func breakStaleDotLock(dotPath string, logger *slog.Logger) bool {
	fi, err := os.Lstat(dotPath)
	if err != nil {
		return errors.Is(err, fs.ErrNotExist) // gone meanwhile: try again
	}
	if time.Since(fi.ModTime()) < staleDotLock {
		return false
	}
	var rnd [6]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return false
	}
	aside := dotPath + "." + hex.EncodeToString(rnd[:]) + ".stale"
	if err := os.Rename(dotPath, aside); err != nil {
		return errors.Is(err, fs.ErrNotExist)
	}
	got, err := os.Lstat(aside)
	if err == nil && !os.SameFile(fi, got) {
		// Someone else's fresh lock: give it back.
		if lerr := os.Link(aside, dotPath); lerr != nil {
			logger.Warn("mbox: could not restore a dot-lock taken by mistake", "path", dotPath, "err", lerr)
		}
		os.Remove(aside)
		return false
	}
	os.Remove(aside)
	logger.Warn("mbox: removed stale dot-lock", "path", dotPath, "age", time.Since(fi.ModTime()).Round(time.Second))
	return true
}

// tryFcntlLock takes a write lock on the whole file without waiting.
func tryFcntlLock(f *os.File) (bool, error) {
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: 0, Len: 0}
	err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk)
	if err == nil {
		return true, nil
	}
	if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EACCES) {
		return false, nil
	}
	return false, err
}

// refresh keeps a long-held dot-lock from looking stale to others.
func (l *mboxLock) refresh() {
	if l.dotPath == "" || time.Since(l.touched) < dotLockRefresh {
		return
	}
	now := time.Now()
	if err := os.Chtimes(l.dotPath, now, now); err != nil {
		l.logger.Warn("mbox: refreshing dot-lock", "path", l.dotPath, "err", err)
	}
	l.touched = now
}

// release drops both locks, in the reverse order of taking them.
func (l *mboxLock) release() {
	if l.released {
		return
	}
	l.released = true
	lk := unix.Flock_t{Type: unix.F_UNLCK}
	if err := unix.FcntlFlock(l.f.Fd(), unix.F_OFD_SETLK, &lk); err != nil {
		l.logger.Warn("mbox: fcntl unlock", "err", err)
	}
	if l.dotPath != "" {
		if err := os.Remove(l.dotPath); err != nil {
			l.logger.Warn("mbox: removing dot-lock", "path", l.dotPath, "err", err)
		}
	}
}
