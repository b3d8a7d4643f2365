package lmtp

import (
	"errors"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/emersion/go-smtp"
)

// socketDir returns a short directory for sockets: t.TempDir() can exceed
// the 108 bytes a Unix socket path may have.
func socketDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "lmtp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func TestListenUnix(t *testing.T) {
	tests := []struct {
		name     string
		opts     SocketOptions
		wantMode fs.FileMode
	}{
		{"default mode", SocketOptions{}, 0o660},
		{"owner only", SocketOptions{Mode: 0o600}, 0o600},
		{"numeric group", SocketOptions{Group: strconv.Itoa(os.Getgid())}, 0o660},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := socketDir(t)
			path := filepath.Join(dir, "lmtp.sock")
			l, err := ListenUnix(path, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			fi, err := os.Lstat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != tt.wantMode {
				t.Errorf("mode %v, want socket %v", fi.Mode(), tt.wantMode)
			}
			if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Gid) != os.Getgid() {
				t.Errorf("group %d, want %d", st.Gid, os.Getgid())
			}
			if got := l.Addr().String(); got != path {
				t.Errorf("Addr = %q, want %q", got, path)
			}
			// Nothing but the socket is left in the directory.
			if ents, _ := os.ReadDir(dir); len(ents) != 1 {
				t.Errorf("%d entries in the directory, want 1", len(ents))
			}
			// It accepts connections.
			go func() {
				if c, err := l.Accept(); err == nil {
					c.Close()
				}
			}()
			c, err := net.Dial("unix", path)
			if err != nil {
				t.Fatal(err)
			}
			c.Close()
			if err := l.Close(); err != nil {
				t.Error(err)
			}
			if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("socket file after Close: %v", err)
			}
		})
	}
}

func TestListenUnixExistingFile(t *testing.T) {
	t.Run("stale socket is replaced", func(t *testing.T) {
		path := filepath.Join(socketDir(t), "lmtp.sock")
		old, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		old.SetUnlinkOnClose(false)
		old.Close() // as a process that died: the file stays, nobody listens
		l, err := ListenUnix(path, SocketOptions{})
		if err != nil {
			t.Fatalf("ListenUnix over a stale socket: %v", err)
		}
		l.Close()
	})
	t.Run("live socket is kept", func(t *testing.T) {
		path := filepath.Join(socketDir(t), "lmtp.sock")
		live, err := net.Listen("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		defer live.Close()
		go func() {
			for {
				c, err := live.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		if _, err := ListenUnix(path, SocketOptions{}); !errors.Is(err, ErrSocketInUse) {
			t.Errorf("ListenUnix over a live socket: %v, want ErrSocketInUse", err)
		}
		if c, err := net.Dial("unix", path); err != nil {
			t.Errorf("the live socket no longer answers: %v", err)
		} else {
			c.Close()
		}
	})
	t.Run("regular file is kept", func(t *testing.T) {
		path := filepath.Join(socketDir(t), "lmtp.sock")
		if err := os.WriteFile(path, []byte("precious"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := ListenUnix(path, SocketOptions{}); err == nil {
			t.Error("ListenUnix replaced a regular file")
		}
		if b, err := os.ReadFile(path); err != nil || string(b) != "precious" {
			t.Errorf("the file is now %q, %v", b, err)
		}
	})
	t.Run("unknown group", func(t *testing.T) {
		path := filepath.Join(socketDir(t), "lmtp.sock")
		if _, err := ListenUnix(path, SocketOptions{Group: "no-such-group-popbox"}); err == nil {
			t.Error("ListenUnix with an unknown group succeeded")
		}
		if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("socket made despite the error: %v", err)
		}
	})
}

// Close leaves a socket that another server has put at the path since.
func TestUnixListenerCloseKeepsReplacement(t *testing.T) {
	path := filepath.Join(socketDir(t), "lmtp.sock")
	l, err := ListenUnix(path, SocketOptions{})
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(path)
	other, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	l.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Errorf("the other server's socket was removed: %v", err)
	}
}

func TestServeUnixSocket(t *testing.T) {
	st := newMemStore()
	srv := &Server{Store: st, Users: testUsers(), Logger: slog.New(slog.DiscardHandler)}
	path := filepath.Join(socketDir(t), "lmtp.sock")
	l, err := ListenUnix(path, SocketOptions{})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	nc, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	c := smtp.NewClientLMTP(nc)
	defer c.Close()
	if err := c.SendMail(sender, []string{"bob@example.org"}, strings.NewReader("Subject: unix\r\n\r\nhi\r\n")); err != nil {
		t.Fatal(err)
	}
	c.Quit()
	if err := srv.Close(); err != nil {
		t.Error(err)
	}
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve = %v", err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket left after Close: %v", err)
	}
	if got := st.contents()["bob"]; len(got) != 1 {
		t.Errorf("bob has %d messages, want 1", len(got))
	}
}
