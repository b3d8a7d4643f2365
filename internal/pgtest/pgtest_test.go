package pgtest

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// groupProcesses lists the live processes of process group pgid, from
// /proc.
func groupProcesses(pgid int) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// After the command name, which is in parentheses and may hold
		// spaces: state ppid pgrp ...
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 2 && f[0] != "Z" && f[2] == strconv.Itoa(pgid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func TestServer(t *testing.T) {
	s := Start(t)
	pid := s.PID()
	if len(groupProcesses(pid)) == 0 {
		t.Fatal("no server processes found")
	}
	var name string
	t.Run("database", func(t *testing.T) {
		dsn := s.NewDatabase(t)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		var one int
		var listen string
		if err := conn.QueryRow(ctx, "SELECT 1, current_database(), current_setting('listen_addresses')").Scan(&one, &name, &listen); err != nil {
			t.Fatal(err)
		}
		if one != 1 || !strings.HasPrefix(name, "t") || listen != "" {
			t.Errorf("got %d, database %q, listen_addresses %q", one, name, listen)
		}
		if dsn2 := s.NewDatabase(t); dsn2 == dsn {
			t.Errorf("two databases with one DSN %s", dsn)
		}
	})
	// The subtest's cleanup dropped its databases.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_database WHERE datname = $1", name).Scan(&n); err != nil || n != 0 {
		t.Errorf("database %q after cleanup: count %d, %v", name, n, err)
	}
	conn.Close(ctx)

	if err := s.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := s.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if left := groupProcesses(pid); len(left) > 0 {
		t.Errorf("processes left after Stop: %v", left)
	}
	if _, err := os.Stat(s.Dir); !os.IsNotExist(err) {
		t.Errorf("directory %s left after Stop: %v", s.Dir, err)
	}
}

func TestStopKillsStuckServer(t *testing.T) {
	s, err := start()
	if err != nil {
		t.Skip(err) // TestServer reports why
	}
	s.stopWait = time.Second
	pid := s.PID()
	// A postmaster that ignores SIGINT: stop it (SIGSTOP) so the signal
	// stays pending, and Stop must fall back to SIGKILL.
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = s.Stop()
	if err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("Stop of a stuck server = %v, want an error saying it was killed", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Stop took %v", d)
	}
	if left := groupProcesses(pid); len(left) > 0 {
		t.Errorf("processes left: %v", left)
	}
}

func TestBinDir(t *testing.T) {
	d, err := BinDir()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	if !hasServer(d) {
		t.Errorf("BinDir %s has no server", d)
	}
	t.Setenv("PGTEST_BINDIR", t.TempDir()) // empty: skipped over
	if d2, err := BinDir(); err != nil || d2 != d {
		t.Errorf("with an empty PGTEST_BINDIR: %q, %v; want %q", d2, err, d)
	}
}

// TestUnavailableServer: without the binaries, a test asking for a
// database is skipped, except under CI=true, where it fails.
func TestUnavailableServer(t *testing.T) {
	if os.Getenv("PGTEST_UNAVAILABLE_HELPER") != "" {
		(&Server{unavailable: ErrUnavailable}).NewDatabase(t)
		t.Error("NewDatabase on an unavailable server returned")
		return
	}
	for _, ci := range []string{"", "true"} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestUnavailableServer$", "-test.v")
		cmd.Env = append(os.Environ(), "PGTEST_UNAVAILABLE_HELPER=1", "CI="+ci)
		out, err := cmd.CombinedOutput()
		skipped := err == nil && strings.Contains(string(out), "--- SKIP")
		failed := err != nil && strings.Contains(string(out), "--- FAIL") && strings.Contains(string(out), Packages)
		if ci == "" && !skipped || ci == "true" && !failed {
			t.Errorf("CI=%q: exit %v, output:\n%s", ci, err, out)
		}
	}
}
