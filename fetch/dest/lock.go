package dest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// staleDotLock: a dot-lock older than this is taken for the leftover of
	// a crashed program and removed. procmail and mutt use 5 minutes too; a
	// live holder refreshes its lock's mtime (refresh) well within it. A
	// lock whose owner on this host is dead is stale at once (dotLockStale).
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

// tryDotLock creates the dot-lock holding its owner (createDotLock). An
// existing lock that is stale (see dotLockStale) is broken and the attempt
// repeated.
func tryDotLock(dotPath string, logger *slog.Logger) (bool, error) {
	for range 2 {
		err := createDotLock(dotPath, dotLockOwner())
		if err == nil {
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

// dotLockCreating, when set (by tests), is called once the lock's file
// exists but before it is complete under its name, where a kill hurts most.
var dotLockCreating func()

// createDotLock makes dotPath holding content, or fails with an error
// matching fs.ErrExist if it exists. The content is written to an unnamed
// file (O_TMPFILE) that is then linked to the name: link(2) never replaces
// an existing name, so this excludes like O_EXCL, and the lock appears
// with its owner in it. With O_EXCL and then a write, a process killed in
// between leaves an empty lock that names no owner, which only the age
// rule breaks: five minutes of no delivery. Where O_TMPFILE or the
// /proc/self/fd link is not available (NFS, no /proc), createDotLockExcl.
func createDotLock(dotPath, content string) error {
	fd, err := unix.Open(filepath.Dir(dotPath), unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return createDotLockExcl(dotPath, content)
	}
	f := os.NewFile(uintptr(fd), dotPath+" (unnamed)")
	defer f.Close()
	if _, err := f.WriteString(content); err != nil {
		return fmt.Errorf("writing %s: %w", dotPath, err)
	}
	if dotLockCreating != nil {
		dotLockCreating()
	}
	// linkat(2) of an O_TMPFILE file through /proc/self/fd, as open(2)
	// shows; AT_EMPTY_PATH would need CAP_DAC_READ_SEARCH.
	err = unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), unix.AT_FDCWD, dotPath, unix.AT_SYMLINK_FOLLOW)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EEXIST):
		return &fs.PathError{Op: "link", Path: dotPath, Err: err}
	}
	return createDotLockExcl(dotPath, content)
}

// createDotLockExcl is createDotLock with O_EXCL, atomic on local file
// systems and on NFSv3 and later, and then a write.
func createDotLockExcl(dotPath, content string) error {
	f, err := os.OpenFile(dotPath, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if dotLockCreating != nil {
		dotLockCreating()
	}
	_, werr := f.WriteString(content)
	cerr := f.Close()
	if werr != nil || cerr != nil {
		os.Remove(dotPath)
		return errors.Join(werr, cerr)
	}
	return nil
}

// thisHost is the kernel's host name (gethostname(2), like Dovecot's
// my_hostname), not Options.Hostname: a dot-lock's host must compare equal
// between every program on this machine. "" if unknown.
var thisHost = sync.OnceValue(func() string {
	h, err := os.Hostname()
	if err != nil || strings.Contains(h, "\n") {
		return ""
	}
	return h
})

// dotLockOwner is the content of a dot-lock we create: "PID:HOST\n", the
// format of Dovecot's file-dotlock.c, so Dovecot recognizes our dead locks
// and we its. If the host name is unknown, "PID\n" alone, which (like the
// empty or PID-only locks of other programs) only the age rule breaks.
func dotLockOwner() string {
	pid := strconv.Itoa(os.Getpid())
	if h := thisHost(); h != "" {
		return pid + ":" + h + "\n"
	}
	return pid + "\n"
}

// maxDotLockRead bounds what is read of a dot-lock; an owner line is short.
const maxDotLockRead = 512

// dotLockStale says why a dot-lock is stale, or "" if it must be respected:
//
//   - its owner is dead: the lock names this host and a PID for which
//     kill(pid, 0) fails with ESRCH (POSIX kill(2): no such process). A
//     SIGKILLed holder cannot remove its lock, and waiting five minutes
//     for its age would stall every delivery meanwhile. Only ESRCH counts:
//     EPERM is a live process of another user. A PID can be reused, and a
//     killed process stays a zombie until its parent reaps it; both make a
//     dead owner look alive (then the age rule still applies), never the
//     reverse. Dovecot judges its dot-locks the same way, and shares the
//     one blind spot: containers that have the same host name but separate
//     PID namespaces and share a mail spool see each other's holders dead.
//   - it is older than staleDotLock (a live holder refreshes it well
//     within that). This is the only rule for a lock from another host (a
//     PID from an NFS client means nothing here) or without "PID:HOST".
func dotLockStale(fi fs.FileInfo, content []byte) string {
	if pid, host, ok := parseDotLockOwner(content); ok && host != "" && host == thisHost() {
		if errors.Is(unix.Kill(pid, 0), unix.ESRCH) {
			return "owner " + strconv.Itoa(pid) + " on this host is gone"
		}
	}
	if age := time.Since(fi.ModTime()); age >= staleDotLock {
		return "older than " + staleDotLock.String()
	}
	return ""
}

// parseDotLockOwner reads "PID:HOST" (a final newline optional). ok is
// false for anything else, a plain "PID" included: without a host the PID
// may be another machine's.
func parseDotLockOwner(b []byte) (pid int, host string, ok bool) {
	p, h, found := strings.Cut(strings.TrimSuffix(string(b), "\n"), ":")
	if !found {
		return 0, "", false
	}
	n, err := strconv.Atoi(p)
	// kill(2) with pid 0 or negative signals a process group or every
	// process: only a positive PID names one process.
	if err != nil || n <= 0 || strconv.Itoa(n) != p {
		return 0, "", false
	}
	return n, h, true
}

// readDotLock returns a dot-lock's file info and its first octets.
func readDotLock(path string) (fs.FileInfo, []byte, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		return fi, nil, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxDotLockRead))
	return fi, b, err
}

// breakStaleDotLock removes dotPath if it is stale. Between judging it
// stale and removing it another program may have broken it too and made a
// fresh one; removing that would let two writers in. So the lock is first
// renamed away (atomic), the renamed file checked to be the one judged
// stale and judged stale again (its content read anew: the name may have
// held another lock when it was first read), and put back with link (which
// never replaces) if not.
func breakStaleDotLock(dotPath string, logger *slog.Logger) bool {
	fi, content, err := readDotLock(dotPath)
	if err != nil {
		return errors.Is(err, fs.ErrNotExist) // gone meanwhile: try again
	}
	if dotLockStale(fi, content) == "" {
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
	got, gotContent, err := readDotLock(aside)
	why := ""
	if err == nil && os.SameFile(fi, got) {
		why = dotLockStale(got, gotContent)
	}
	if why == "" {
		// Someone else's fresh lock: give it back.
		if lerr := os.Link(aside, dotPath); lerr != nil {
			logger.Warn("mbox: could not restore a dot-lock taken by mistake", "path", dotPath, "err", lerr)
		}
		os.Remove(aside)
		return false
	}
	os.Remove(aside)
	logger.Warn("mbox: removed stale dot-lock", "path", dotPath, "why", why, "owner", strings.TrimSpace(string(gotContent)), "age", time.Since(got.ModTime()).Round(time.Second))
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
