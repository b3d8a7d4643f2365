package dest

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// deadPID returns the PID of a process that has exited and been reaped.
func deadPID(t *testing.T) int {
	t.Helper()
	for range 5 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		if err := cmd.Run(); err != nil {
			t.Fatal(err)
		}
		pid := cmd.Process.Pid
		if errors.Is(unix.Kill(pid, 0), unix.ESRCH) {
			return pid
		}
	}
	t.Fatal("no dead PID found (PIDs reused at once?)")
	return 0
}

// The dot-lock names its owner as Dovecot does, "PID:HOST".
func TestDotLockOwner(t *testing.T) {
	host := thisHost()
	if host == "" {
		t.Skip("no host name")
	}
	dotPath := filepath.Join(t.TempDir(), "mbox.lock")
	held, err := tryDotLock(dotPath, slog.New(slog.DiscardHandler))
	if err != nil || !held {
		t.Fatalf("tryDotLock = %v, %v", held, err)
	}
	want := fmt.Sprintf("%d:%s\n", os.Getpid(), host)
	if got := readFile(t, dotPath); got != want {
		t.Errorf("dot-lock holds %q, want %q", got, want)
	}
	pid, h, ok := parseDotLockOwner([]byte(want))
	if !ok || pid != os.Getpid() || h != host {
		t.Errorf("parseDotLockOwner(%q) = %d, %q, %v", want, pid, h, ok)
	}
}

func TestParseDotLockOwner(t *testing.T) {
	for _, tt := range []struct {
		in   string
		pid  int
		host string
		ok   bool
	}{
		{"123:host.example\n", 123, "host.example", true},
		{"123:host", 123, "host", true},
		{"123:", 123, "", true},
		{"123\n", 0, "", false}, // no host: may be another machine's
		{"", 0, "", false},
		{"0:host\n", 0, "", false},  // kill(0, 0) is the process group
		{"-1:host\n", 0, "", false}, // kill(-1, 0) is every process
		{"+5:host\n", 0, "", false},
		{" 5:host\n", 0, "", false},
		{"x:host\n", 0, "", false},
	} {
		pid, host, ok := parseDotLockOwner([]byte(tt.in))
		if pid != tt.pid || host != tt.host || ok != tt.ok {
			t.Errorf("parseDotLockOwner(%q) = %d, %q, %v; want %d, %q, %v", tt.in, pid, host, ok, tt.pid, tt.host, tt.ok)
		}
	}
}

// A fresh dot-lock is broken at once when it names this host and a PID
// that is gone, and respected when its owner is alive, on another host,
// or not named in full.
func TestMboxDotLockOwnerGone(t *testing.T) {
	host := thisHost()
	if host == "" {
		t.Skip("no host name")
	}
	dead := deadPID(t)
	tests := []struct {
		name    string
		content string
		broken  bool
	}{
		{"owner gone", fmt.Sprintf("%d:%s\n", dead, host), true},
		{"owner gone, no newline", fmt.Sprintf("%d:%s", dead, host), true},
		{"owner alive", fmt.Sprintf("%d:%s\n", os.Getpid(), host), false},
		{"owner is init", "1:" + host + "\n", false},
		{"other host", fmt.Sprintf("%d:elsewhere.invalid\n", dead), false},
		{"no host", strconv.Itoa(dead) + "\n", false},
		{"empty", "", false},
		{"process group", "0:" + host + "\n", false},
	}
	msg := "Subject: x\r\n\r\nhi\r\n"
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "mbox")
			d, logs := openLoggedMbox(t, path)
			if err := os.WriteFile(path+".lock", []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			timeout := 300 * time.Millisecond
			if tt.broken {
				timeout = 10 * time.Second
			}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			start := time.Now()
			err := d.Deliver(ctx, strings.NewReader(msg), Message{Key: "k"})
			if !tt.broken {
				if !errors.Is(err, ErrTemporary) {
					t.Errorf("Deliver = %v, want ErrTemporary (lock respected)", err)
				}
				if got, err := os.ReadFile(path + ".lock"); err != nil || string(got) != tt.content {
					t.Errorf("the lock is now %q, %v; want it kept as %q", got, err, tt.content)
				}
				return
			}
			if err != nil {
				t.Fatalf("Deliver = %v (log: %s)", err, logs)
			}
			if el := time.Since(start); el > 5*time.Second {
				t.Errorf("Deliver took %v", el)
			}
			if !strings.Contains(logs.String(), "is gone") {
				t.Errorf("log %q does not say why the lock was broken", logs)
			}
			if _, err := os.Stat(path + ".lock"); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("dot-lock left behind: %v", err)
			}
			if stale, _ := filepath.Glob(path + ".lock.*"); len(stale) != 0 {
				t.Errorf("leftovers of breaking the lock: %q", stale)
			}
			if n := len(parseMbox(t, readFile(t, path))); n != 1 {
				t.Errorf("%d messages, want 1", n)
			}
		})
	}
}

// Both ways of creating a dot-lock make it whole, 0600, exclusive, and
// leave nothing else behind.
func TestCreateDotLock(t *testing.T) {
	for name, create := range map[string]func(string, string) error{
		"O_TMPFILE and link": createDotLock,
		"O_EXCL and write":   createDotLockExcl,
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			dotPath := filepath.Join(dir, "mbox.lock")
			if err := create(dotPath, "1:a\n"); err != nil {
				t.Fatal(err)
			}
			if err := create(dotPath, "2:b\n"); !errors.Is(err, fs.ErrExist) {
				t.Errorf("second create = %v, want fs.ErrExist", err)
			}
			if got := readFile(t, dotPath); got != "1:a\n" {
				t.Errorf("lock holds %q", got)
			}
			if fi, err := os.Stat(dotPath); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("lock mode %v, %v; want 0600", fi.Mode().Perm(), err)
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 1 {
				t.Errorf("%d entries in the directory, want only the lock", len(ents))
			}
		})
	}
}

// dotLockKilledHelper is the child of TestMboxKilledCreatingDotLock: it
// SIGKILLs itself while creating the dot-lock.
func dotLockKilledHelper() int {
	d, err := Open("mbox:"+os.Getenv("POPBOX_DEST_MBOX"), Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	dotLockCreating = func() { syscall.Kill(os.Getpid(), syscall.SIGKILL) }
	err = d.Deliver(context.Background(), strings.NewReader("Subject: x\r\n\r\n"), Message{Key: "k"})
	fmt.Fprintln(os.Stderr, "not killed:", err)
	return 1
}

// A process killed while creating the dot-lock leaves no lock without an
// owner (which would block delivery for five minutes): the lock appears
// only complete.
func TestMboxKilledCreatingDotLock(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	dir := t.TempDir()
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, 0o600)
	if err != nil {
		t.Skipf("no O_TMPFILE here (%v): the O_EXCL fallback has this window", err)
	}
	unix.Close(fd)
	path := filepath.Join(dir, "mbox")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "POPBOX_DEST_HELPER=dotlock-killed", "POPBOX_DEST_MBOX="+path)
	out, err := cmd.CombinedOutput()
	if ee := (*exec.ExitError)(nil); !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("helper: %v: %s", err, out)
	}
	if b, err := os.ReadFile(path + ".lock"); err == nil {
		if _, _, ok := parseDotLockOwner(b); !ok {
			t.Errorf("the killed process left a lock without an owner: %q", b)
		}
	}
	d, logs := openLoggedMbox(t, path)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := d.Deliver(ctx, strings.NewReader("Subject: y\r\n\r\n"), Message{Key: "k"}); err != nil {
		t.Errorf("Deliver after the kill: %v (log: %s)", err, logs)
	}
}
