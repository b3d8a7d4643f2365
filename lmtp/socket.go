package lmtp

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// ErrSocketInUse: ListenUnix found a server answering on the socket path.
var ErrSocketInUse = errors.New("lmtp: socket in use")

// SocketOptions are the permissions of a socket made by ListenUnix.
type SocketOptions struct {
	// Mode is the socket's permission bits; 0 means 0660. Connecting needs
	// write permission, so 0660 admits the owner and the group.
	Mode fs.FileMode
	// Group, a group name or numeric id, becomes the socket's group, so
	// that an MTA running as another user (Postfix's lmtp client runs as
	// "postfix") can connect through it. Empty keeps the process's group.
	// The process must belong to the group unless it runs as root.
	Group string
}

// probeTimeout bounds the connection attempt that tells a live socket from
// a stale one.
const probeTimeout = 2 * time.Second

// ListenUnix listens on a Unix socket at path with the given permissions.
//
// A file already at path is removed only if it is a socket and nothing
// answers on it (a previous run that died); a live socket fails with
// ErrSocketInUse and anything else that is not a socket is left alone.
// The socket is made in a fresh owner-only directory next to path, given
// its mode and group there and only then linked to path, so there is no
// moment when it is reachable with the wrong permissions. link(2) does not
// replace an existing file, so two servers starting at once cannot take
// the path from each other.
//
// Closing the listener removes the socket file, if it is still the one
// ListenUnix made.
func ListenUnix(path string, opts SocketOptions) (net.Listener, error) {
	mode := opts.Mode
	if mode == 0 {
		mode = 0o660
	}
	gid := -1
	if opts.Group != "" {
		var err error
		if gid, err = lookupGroup(opts.Group); err != nil {
			return nil, err
		}
	}
	if err := removeStale(path); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(filepath.Dir(path), ".lmtp")
	if err != nil {
		return nil, fmt.Errorf("lmtp: listen %s: %w", path, err)
	}
	defer os.RemoveAll(dir)
	tmp := filepath.Join(dir, "s")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("lmtp: listen %s: %w", path, err)
	}
	// The file will be linked elsewhere; Close removes that one itself.
	l.SetUnlinkOnClose(false)
	fail := func(err error) (net.Listener, error) {
		l.Close()
		return nil, fmt.Errorf("lmtp: listen %s: %w", path, err)
	}
	if gid >= 0 {
		if err := os.Lchown(tmp, -1, gid); err != nil {
			return fail(err)
		}
	}
	if err := os.Chmod(tmp, mode.Perm()); err != nil {
		return fail(err)
	}
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fail(fmt.Errorf("%w: %s appeared meanwhile", ErrSocketInUse, path))
		}
		return fail(err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return fail(err)
	}
	return &unixListener{UnixListener: l, path: path, fi: fi}, nil
}

// removeStale removes a socket at path that nothing listens on.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("lmtp: listen %s: %w", path, err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("lmtp: listen %s: exists and is not a socket", path)
	}
	c, err := net.DialTimeout("unix", path, probeTimeout)
	if err == nil {
		c.Close()
		return fmt.Errorf("%w: a server answers on %s", ErrSocketInUse, path)
	}
	// Only "connection refused" proves that nobody listens; a timeout may
	// be a busy server, EACCES one we cannot judge.
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("lmtp: listen %s: probing the existing socket: %w", path, err)
	}
	// Remove the file probed, not one that replaced it meanwhile.
	if now, err := os.Lstat(path); err == nil && os.SameFile(fi, now) {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("lmtp: removing stale socket: %w", err)
		}
	}
	return nil
}

func lookupGroup(name string) (int, error) {
	if id, err := strconv.Atoi(name); err == nil && id >= 0 {
		return id, nil
	}
	g, err := user.LookupGroup(name)
	if err != nil {
		return 0, fmt.Errorf("lmtp: socket group: %w", err)
	}
	id, err := strconv.Atoi(g.Gid)
	if err != nil {
		return 0, fmt.Errorf("lmtp: socket group %s: gid %q: %w", name, g.Gid, err)
	}
	return id, nil
}

// unixListener reports the socket's final path and removes it on Close.
type unixListener struct {
	*net.UnixListener
	path string
	fi   fs.FileInfo
	once sync.Once
}

func (l *unixListener) Addr() net.Addr { return &net.UnixAddr{Name: l.path, Net: "unix"} }

func (l *unixListener) Close() error {
	err := l.UnixListener.Close()
	l.once.Do(func() {
		// Another server may have taken the path over since; its socket
		// stays.
		if now, serr := os.Lstat(l.path); serr == nil && os.SameFile(l.fi, now) {
			os.Remove(l.path)
		}
	})
	return err
}
