// Package pgtest starts a private PostgreSQL server for tests, so that
// store/postgres (and anything else that speaks to PostgreSQL) is tested
// against the real thing, not a mock.
//
// Implementation notes:
//
//   - Nothing is shared with a system cluster: initdb writes a new cluster
//     into a temporary directory, and postgres runs with
//     listen_addresses=” (no TCP at all) and its Unix socket in that same
//     directory, so it cannot collide with, or be reached like, a server
//     already on the machine, and two test binaries never meet.
//   - Durability is not what tests check, so the server runs with
//     fsync=off, synchronous_commit=off and full_page_writes=off, and
//     initdb with --no-sync: creating a database then costs milliseconds.
//   - PostgreSQL refuses to run as root. Tests run as root in CI, so then
//     initdb and postgres run as the system user "postgres" (the Debian
//     package creates it) through syscall.Credential, and the temporary
//     directory, created 0755 directly under os.TempDir so that user can
//     traverse its parents, is chowned to it.
//   - The server is the test binary's child, in its own process group, with
//     a parent-death signal (SIGQUIT, immediate shutdown): Stop sends SIGINT
//     (fast shutdown) and waits, then SIGKILLs the whole group; if the test
//     binary itself dies, the kernel stops the server. No postgres process
//     outlives the tests.
//   - Each test gets its own database (NewDatabase: CREATE DATABASE with a
//     unique name, dropped WITH (FORCE) at cleanup), which is much cheaper
//     than a server per test; StartMain serves a whole package from
//     TestMain.
//   - Binaries are found through $PGTEST_BINDIR, `pg_config --bindir`, the
//     newest /usr/lib/postgresql/*/bin (Debian keeps initdb out of PATH) and
//     then PATH. When they are missing, tests are skipped, except with
//     CI=true, where a missing tool must fail the build: they fail naming
//     the Debian package to install, "postgresql" (Packages).
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Packages are the Debian packages that provide the server binaries.
const Packages = "postgresql"

// ErrUnavailable: the PostgreSQL server binaries are not installed, or
// cannot be run here.
var ErrUnavailable = errors.New("pgtest: PostgreSQL is not available")

// Timeouts of the server's lifecycle. initdb and the first start may be
// slow on a loaded machine; stopping is fast unless something is stuck,
// which SIGKILL then settles.
const (
	initTimeout  = 60 * time.Second
	startTimeout = 30 * time.Second
	stopTimeout  = 10 * time.Second
	adminTimeout = 30 * time.Second
)

// Server is a running private PostgreSQL instance. Its methods are safe
// for concurrent use.
type Server struct {
	// Dir is the instance's temporary directory: data/ holds the cluster,
	// the Unix socket lives in Dir itself, and postgres.log the server's
	// output.
	Dir string
	// Superuser is the role tests connect as (trust authentication over
	// the socket).
	Superuser string

	// unavailable is set by StartMain when the binaries are missing:
	// NewDatabase then skips (or fails under CI) instead of returning a
	// DSN.
	unavailable error

	port     int
	stopWait time.Duration // how long Stop waits after SIGINT
	cmd      *exec.Cmd
	exited   chan struct{}
	seq      atomic.Int64

	stopOnce sync.Once
	stopErr  error
}

// Start starts a server for one test (or benchmark) and stops it at the
// test's cleanup. It skips the test when PostgreSQL is not installed,
// failing it instead when CI=true.
func Start(t testing.TB) *Server {
	t.Helper()
	s, err := start()
	if errors.Is(err, ErrUnavailable) {
		unavailable(t, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("pgtest: stop: %v", err)
		}
	})
	return s
}

// StartMain starts one server for a whole test binary, from TestMain:
//
//	func TestMain(m *testing.M) {
//		srv, stop, err := pgtest.StartMain()
//		if err != nil {
//			fmt.Fprintln(os.Stderr, err)
//			os.Exit(1)
//		}
//		code := m.Run()
//		stop()
//		os.Exit(code)
//	}
//
// When the binaries are missing it still returns a Server, whose
// NewDatabase skips each test (fails it under CI=true), and a nil error;
// err is for a server that should have started but did not. stop stops
// the server and removes its directory; call it before os.Exit, which
// runs no deferred calls.
func StartMain() (*Server, func(), error) {
	s, err := start()
	if errors.Is(err, ErrUnavailable) {
		return &Server{unavailable: err}, func() {}, nil
	}
	if err != nil {
		return nil, nil, err
	}
	return s, func() {
		if err := s.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: stop: %v\n", err)
		}
	}, nil
}

// unavailable fails the test under CI and skips it otherwise.
func unavailable(t testing.TB, err error) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%v (CI=true: install the Debian package %s)", err, Packages)
	}
	t.Skip(err)
}

// BinDir returns the directory holding initdb and postgres.
func BinDir() (string, error) {
	var candidates []string
	if d := os.Getenv("PGTEST_BINDIR"); d != "" {
		candidates = append(candidates, d)
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		candidates = append(candidates, strings.TrimSpace(string(out)))
	}
	candidates = append(candidates, debianBinDirs()...)
	if p, err := exec.LookPath("initdb"); err == nil {
		candidates = append(candidates, filepath.Dir(p))
	}
	for _, d := range candidates {
		if hasServer(d) {
			return d, nil
		}
	}
	return "", fmt.Errorf("%w: no initdb and postgres in $PGTEST_BINDIR, pg_config --bindir, /usr/lib/postgresql/*/bin or PATH (Debian: apt-get install %s)",
		ErrUnavailable, Packages)
}

// debianBinDirs lists /usr/lib/postgresql/<version>/bin, newest first.
func debianBinDirs() []string {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	version := func(d string) float64 {
		v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(d)), 64)
		return v
	}
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	return dirs
}

func hasServer(dir string) bool {
	for _, name := range []string{"initdb", "postgres"} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			return false
		}
	}
	return true
}

// runAs is the identity the server runs under: nil for the current user,
// else the system user "postgres" (when we are root).
func runAs() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("%w: running as root, and PostgreSQL refuses root, but there is no user postgres to run it as (%w)", ErrUnavailable, err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("pgtest: user postgres has a non-numeric uid %q or gid %q", u.Uid, u.Gid)
	}
	// No Groups: the server drops root's supplementary groups.
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// start runs initdb and postgres in a new temporary directory and waits
// until the server accepts connections.
func start() (s *Server, err error) {
	bin, err := BinDir()
	if err != nil {
		return nil, err
	}
	cred, err := runAs()
	if err != nil {
		return nil, err
	}
	// Directly under os.TempDir with a short name: the socket path
	// (sun_path) holds only 107 bytes, so a long $TMPDIR falls back to
	// /tmp.
	parent := os.TempDir()
	if len(parent)+len("/pgtest0123456789/.s.PGSQL.5432") > 107 {
		parent = "/tmp"
	}
	dir, err := os.MkdirTemp(parent, "pgtest")
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	// MkdirTemp makes 0700; the server's user must reach the directory.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, fmt.Errorf("pgtest: %w", err)
		}
	}
	s = &Server{Dir: dir, Superuser: "postgres", port: 5432, stopWait: stopTimeout, exited: make(chan struct{})}
	data := filepath.Join(dir, "data")

	ctx, cancel := context.WithTimeout(context.Background(), initTimeout)
	defer cancel()
	initdb := exec.CommandContext(ctx, filepath.Join(bin, "initdb"),
		"-D", data, "-U", s.Superuser, "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions")
	initdb.Dir = dir
	initdb.Env = cleanEnv()
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("pgtest: initdb: %w\n%s", err, out)
	}

	logf, err := os.OpenFile(filepath.Join(dir, "postgres.log"), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	defer logf.Close() // the child has its own copy
	cmd := exec.Command(filepath.Join(bin, "postgres"),
		"-D", data,
		"-p", strconv.Itoa(s.port),
		"-c", "listen_addresses=",
		"-c", "unix_socket_directories="+dir,
		"-c", "fsync=off",
		"-c", "synchronous_commit=off",
		"-c", "full_page_writes=off",
		"-c", "max_connections=200",
		"-c", "shared_buffers=64MB",
		"-c", "logging_collector=off",
	)
	cmd.Dir = dir
	cmd.Env = cleanEnv()
	cmd.Stdout, cmd.Stderr = logf, logf
	// Own process group, so Stop can kill the backends too; SIGQUIT
	// (immediate shutdown) if the test binary dies without stopping it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true, Pdeathsig: syscall.SIGQUIT}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("pgtest: start postgres: %w", err)
	}
	s.cmd = cmd
	go func() {
		_ = cmd.Wait()
		close(s.exited)
	}()
	if err := s.waitReady(); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// cleanEnv is the environment without PG* variables, which would point
// client tools at another server, and with a neutral locale.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") || strings.HasPrefix(kv, "LC_") || strings.HasPrefix(kv, "LANG=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "LC_ALL=C")
}

// waitReady polls until the server accepts a connection, fails at once if
// it exits.
func (s *Server) waitReady() error {
	deadline := time.Now().Add(startTimeout)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-s.exited:
			return fmt.Errorf("pgtest: postgres exited during startup:\n%s", s.Log())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, s.DSN("postgres"))
		if err == nil {
			err = conn.Ping(ctx)
			conn.Close(ctx)
		}
		cancel()
		if err == nil {
			return nil
		}
		last = err
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("pgtest: postgres not ready after %v: %w\n%s", startTimeout, last, s.Log())
}

// Log returns the server's output so far (at most its last 8 KiB).
func (s *Server) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "postgres.log"))
	if len(b) > 8<<10 {
		b = b[len(b)-8<<10:]
	}
	return string(b)
}

// PID is the postmaster's process id.
func (s *Server) PID() int {
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// DSN returns a keyword/value connection string for database db, over
// the server's Unix socket.
func (s *Server) DSN(db string) string {
	return fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable", s.Dir, s.port, s.Superuser, db)
}

// NewDatabase creates an empty database for t and returns its DSN; the
// database is dropped at t's cleanup (after cleanups registered later,
// such as closing a pool on it, have run).
func (s *Server) NewDatabase(t testing.TB) string {
	t.Helper()
	if s.unavailable != nil {
		unavailable(t, s.unavailable)
	}
	name := fmt.Sprintf("t%d_%d", os.Getpid(), s.seq.Add(1))
	if err := s.Exec("CREATE DATABASE " + name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	return s.DSN(name)
}

// Exec runs one statement as the superuser in the postgres database.
func (s *Server) Exec(sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.DSN("postgres"))
	if err != nil {
		return fmt.Errorf("pgtest: connect: %w", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("pgtest: %s: %w", sql, err)
	}
	return nil
}

// Stop shuts the server down (fast shutdown: sessions are disconnected),
// kills its process group if it does not exit in time, and removes its
// directory. It is idempotent.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() { s.stopErr = s.stop() })
	return s.stopErr
}

func (s *Server) stop() error {
	if s.cmd == nil {
		return nil
	}
	var errs []error
	pid := s.cmd.Process.Pid
	_ = s.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-s.exited:
	case <-time.After(s.stopWait):
		errs = append(errs, fmt.Errorf("postgres did not stop within %v after SIGINT; killed", s.stopWait))
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-s.exited
	}
	// Backends normally exit with the postmaster; anything left in the
	// group is killed rather than left behind.
	if err := syscall.Kill(-pid, syscall.SIGKILL); err == nil {
		errs = append(errs, errors.New("postgres processes were left after the postmaster exited; killed"))
	}
	if err := os.RemoveAll(s.Dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
