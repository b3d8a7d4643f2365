package interop

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	buildTimeout = 5 * time.Minute // a cold build compiles SQLite
	startTimeout = 20 * time.Second
	stopTimeout  = 5 * time.Second
	cmdTimeout   = 60 * time.Second // one `popbox user add` or `popbox deliver`
)

// popboxBinary builds cmd/popbox the first time it is called and returns the
// path of the binary; TestMain calls it first and removes it at the end.
var popboxBinary = sync.OnceValues(func() (string, error) {
	if bin := os.Getenv(suiteBinEnv); bin != "" {
		return bin, nil // the PostgreSQL run reuses the first run's
	}
	// go test puts its own GOROOT/bin first in PATH, so this is the go
	// command that is running the tests.
	goTool, err := exec.LookPath("go")
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "popbox-interop-bin-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "popbox")
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, goTool, "build", "-o", bin,
		"github.com/popbox/popbox/cmd/popbox").CombinedOutput()
	if err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("go build ./cmd/popbox: %v\n%s", err, out)
	}
	return bin, nil
})

func TestMain(m *testing.M) {
	bin, err := popboxBinary()
	if err != nil {
		fmt.Fprintln(os.Stderr, "interop:", err)
		os.Exit(1)
	}
	stopPG, err := startSuitePG()
	if err != nil {
		fmt.Fprintln(os.Stderr, "interop:", err)
		os.Exit(1)
	}
	code := m.Run()
	stopPG()
	if os.Getenv(suiteBinEnv) == "" {
		os.RemoveAll(filepath.Dir(bin))
	}
	os.Exit(code)
}

// server is a running `popbox serve` with its own data directory.
type server struct {
	bin    string
	data   string
	plain  string // host:port of the POP3 listener, which offers STLS
	tls    string // host:port of the POP3S listener
	cafile string // the self-signed certificate the server created
	log    *serverLog
	// config is the configuration file passed to serve and to every
	// command, in the PostgreSQL run (suite_store_test.go); else "".
	config string
}

// startServer starts popbox on loopback ports chosen by the kernel, so tests
// never collide with each other or with anything else on the machine. The
// server is stopped with SIGTERM when the test ends; its log is shown if the
// test failed.
func startServer(t *testing.T) *server {
	t.Helper()
	return startServerIn(t, t.TempDir())
}

// startServerIn is startServer on a data directory the test prepared (for
// example with its own certificate in tls/).
func startServerIn(t *testing.T, data string) *server {
	t.Helper()
	return startServerArgs(t, data)
}

// startServerConfig is startServerIn with a configuration file holding
// config (TOML, see popbox.example.toml), passed as -c. The data directory
// and the listeners are still set by flags, which take precedence.
func startServerConfig(t *testing.T, data, config string) *server {
	t.Helper()
	file := filepath.Join(t.TempDir(), "popbox.toml")
	if err := os.WriteFile(file, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	return startServerArgs(t, data, "-c", file)
}

// startServerArgs starts popbox serve with more arguments.
func startServerArgs(t *testing.T, data string, args ...string) *server {
	t.Helper()
	bin, err := popboxBinary()
	if err != nil {
		t.Fatal(err)
	}
	s := &server{bin: bin, data: data, log: newServerLog()}
	s.cafile = filepath.Join(s.data, "tls", "cert.pem")
	if suitePG != nil {
		args = suiteStoreConfig(t, s, args)
	}
	// --allow-root: CI runs the tests as root.
	cmd := exec.Command(bin, append([]string{"serve", "--allow-root", "--data", s.data,
		"--listen", "127.0.0.1:0", "--listen-tls", "127.0.0.1:0"}, args...)...)
	cmd.Stderr = s.log
	cmd.Stdout = s.log
	cmd.WaitDelay = stopTimeout
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting popbox serve: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { s.stop(t, cmd, exited) })

	timer := time.NewTimer(startTimeout)
	defer timer.Stop()
	for s.plain == "" || s.tls == "" {
		select {
		case l := <-s.log.listening:
			switch l.proto {
			case "pop3":
				s.plain = l.addr
			case "pop3s":
				s.tls = l.addr
			}
		case err := <-exited:
			exited <- err // for stop
			t.Fatalf("popbox serve exited during start-up (%v); its log:\n%s", err, s.log)
		case <-timer.C:
			t.Fatalf("popbox serve did not log both `msg=listening proto=pop3 addr=...` and "+
				"`proto=pop3s` within %v; its log:\n%s", startTimeout, s.log)
		}
	}
	if l := s.log.String(); s.config != "" && !strings.Contains(l, "mail=postgres://") && !strings.Contains(l, `mail="postgres://`) {
		// The PostgreSQL run must not quietly test the Maildir store.
		t.Fatalf("popbox serve with %s does not log a PostgreSQL store; its log:\n%s", s.config, s.log)
	}
	if _, err := os.Stat(s.cafile); err != nil {
		t.Fatalf("no self-signed certificate after start-up: %v; server log:\n%s", err, s.log)
	}
	return s
}

// stop sends SIGTERM and insists on a prompt, clean exit: a server that
// needs SIGKILL would lose mail in production.
func (s *server) stop(t *testing.T, cmd *exec.Cmd, exited chan error) {
	select {
	case err := <-exited:
		t.Errorf("popbox serve exited before the test ended: %v", err)
	default:
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Errorf("SIGTERM to popbox serve: %v", err)
		}
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("popbox serve exited with %v after SIGTERM, want status 0", err)
			}
		case <-time.After(stopTimeout):
			cmd.Process.Kill()
			<-exited
			t.Errorf("popbox serve did not exit within %v of SIGTERM; killed it", stopTimeout)
		}
	}
	if t.Failed() {
		t.Logf("popbox serve log:\n%s", s.log)
	}
}

// run runs one popbox subcommand against the server's data directory and
// returns its combined output and exit status.
func (s *server) run(t testing.TB, stdin []byte, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), cmdTimeout)
	defer cancel()
	if s.config != "" && !slices.Contains(args, "-c") {
		args = append(args[:len(args):len(args)], "-c", s.config)
	}
	cmd := exec.CommandContext(ctx, s.bin, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("popbox %s: no exit within %v\n%s", strings.Join(args, " "), cmdTimeout, out)
	case errors.As(err, &exit):
		return string(out), exit.ExitCode()
	case err != nil:
		t.Fatalf("popbox %s: %v", strings.Join(args, " "), err)
	}
	return string(out), 0
}

func (s *server) addUser(t testing.TB, name, password string) {
	t.Helper()
	out, code := s.run(t, []byte(password+"\n"), "user", "add", name, "--data", s.data, "--password-stdin")
	if code != 0 {
		t.Fatalf("popbox user add %s: exit %d\n%s", name, code, out)
	}
}

func (s *server) deliver(t testing.TB, user string, m message) {
	t.Helper()
	out, code := s.run(t, m.data, "deliver", "--data", s.data, user)
	if code != 0 {
		t.Fatalf("popbox deliver %s < %s: exit %d\n%s", user, m.name, code, out)
	}
}

// listener is what one start-up line announced.
type listener struct{ proto, addr string }

// serverLog keeps everything the server writes, for failure reports, and
// watches it for the start-up lines that give the listening addresses.
type serverLog struct {
	mu        sync.Mutex
	buf       bytes.Buffer
	scanned   int // buf[:scanned] has been searched for listening lines
	listening chan listener
}

func newServerLog() *serverLog {
	return &serverLog{listening: make(chan listener, 8)}
}

func (l *serverLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	for {
		rest := l.buf.Bytes()[l.scanned:]
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			return len(p), nil
		}
		l.scanned += i + 1
		if ln, ok := parseListening(string(rest[:i])); ok {
			select {
			case l.listening <- ln:
			default: // nobody needs more than the first few
			}
		}
	}
}

// String returns the log, shortened to its last 64 KiB.
func (l *serverLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	const max = 64 << 10
	b := l.buf.Bytes()
	if len(b) > max {
		return fmt.Sprintf("[... %d bytes cut ...]\n%s", len(b)-max, b[len(b)-max:])
	}
	return string(b)
}

// parseListening recognises the slog text line
// `time=... level=INFO msg=listening proto=pop3 addr=127.0.0.1:NNNNN`.
func parseListening(line string) (listener, bool) {
	var msg string
	var ln listener
	for _, f := range strings.Fields(line) {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			continue
		}
		if u, err := strconv.Unquote(v); err == nil {
			v = u
		}
		switch k {
		case "msg":
			msg = v
		case "proto":
			ln.proto = v
		case "addr":
			ln.addr = v
		}
	}
	if msg != "listening" || ln.proto == "" {
		return listener{}, false
	}
	if _, _, err := net.SplitHostPort(ln.addr); err != nil {
		return listener{}, false
	}
	return ln, true
}

func TestParseListening(t *testing.T) {
	for _, tc := range []struct {
		line string
		want listener
		ok   bool
	}{
		{`time=2026-11-27T10:00:00.000Z level=INFO msg=listening proto=pop3 addr=127.0.0.1:40123`,
			listener{"pop3", "127.0.0.1:40123"}, true},
		{`level=INFO msg=listening proto=pop3s addr="[::1]:995"`, listener{"pop3s", "[::1]:995"}, true},
		{`level=INFO msg="session started" proto=pop3 addr=127.0.0.1:1`, listener{}, false},
		{`level=INFO msg=listening proto=pop3 addr=nonsense`, listener{}, false},
	} {
		got, ok := parseListening(tc.line)
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseListening(%q) = %v, %v; want %v, %v", tc.line, got, ok, tc.want, tc.ok)
		}
	}
}
