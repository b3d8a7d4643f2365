package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/popbox/popbox/internal/testcert"
)

// Deadlines. Every command, child process and network operation in these
// tests has one, so a hang fails a test instead of the whole run.
const (
	buildTimeout = 5 * time.Minute  // a cold build compiles SQLite
	cmdTimeout   = 30 * time.Second // one short CLI command
	startTimeout = 20 * time.Second // until serve logs its listeners
	stopTimeout  = 10 * time.Second // from SIGTERM to exit
	serveTimeout = 60 * time.Second // a serve process's whole life
	ioTimeout    = 5 * time.Second  // one network operation
)

// popboxBin is the popbox binary TestMain builds, for the tests that need a
// real process: signals, standard input from a pipe, file or terminal.
var popboxBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "popbox-cmd-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	popboxBin = filepath.Join(dir, "popbox")
	if err := buildPopbox(popboxBin); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// buildPopbox builds this package into bin, with the race detector when the
// tests have it: the packages are then already compiled, and the server's
// goroutines are checked too.
func buildPopbox(bin string) error {
	goTool, err := exec.LookPath("go") // go test puts its own GOROOT/bin first
	if err != nil {
		return fmt.Errorf("go tool not found: %w", err)
	}
	args := []string{"build", "-buildvcs=false", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, goTool, append(args, ".")...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("go %s .: %v\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// result is what one popbox command did.
type result struct {
	Code           int
	Stdout, Stderr string
}

// runCLI runs popbox in this process through run, with stdin as standard
// input.
func runCLI(t testing.TB, stdin string, args ...string) result {
	t.Helper()
	return runCLIReader(t, strings.NewReader(stdin), args...)
}

// runCLIReader is runCLI with any standard input.
func runCLIReader(t testing.TB, stdin io.Reader, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	done := make(chan int, 1)
	go func() { done <- run(args, stdin, &stdout, &stderr) }()
	select {
	case code := <-done:
		return result{code, stdout.String(), stderr.String()}
	case <-time.After(cmdTimeout):
		t.Fatalf("popbox %s did not return within %v", strings.Join(args, " "), cmdTimeout)
		return result{}
	}
}

// childEnv is this process's environment without POPBOX_DATA (which would
// change the data directory of every command that does not pass --data),
// plus extra. A race-enabled binary is told not to sleep a second before
// exiting, as it does by default.
func childEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "POPBOX_DATA=") && !strings.HasPrefix(kv, "GORACE=") {
			env = append(env, kv)
		}
	}
	if raceEnabled {
		env = append(env, "GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	}
	return append(env, extra...)
}

// binOpts are the optional settings of runBin and startServe.
type binOpts struct {
	stdin io.Reader // nil: the null device
	env   []string  // added to childEnv
	dir   string    // working directory; "" for the test's
	// onLogLine, if set, is called by startServe with the process and
	// every line of its stderr as soon as it is written.
	onLogLine func(*os.Process, string)
}

// runBin runs the popbox binary to completion.
func runBin(t testing.TB, o binOpts, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, popboxBin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = o.stdin, &stdout, &stderr
	cmd.Env, cmd.Dir = childEnv(o.env...), o.dir
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("popbox %s: no exit within %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), cmdTimeout, &stdout, &stderr)
	case errors.As(err, &exit):
		return result{exit.ExitCode(), stdout.String(), stderr.String()}
	case err != nil:
		t.Fatalf("popbox %s: %v", strings.Join(args, " "), err)
	}
	return result{0, stdout.String(), stderr.String()}
}

// addUser creates name with password through the CLI, in process.
func addUser(t testing.TB, data, name, password string) {
	t.Helper()
	if r := runCLI(t, password+"\n", "user", "add", "--data", data, name); r.Code != 0 {
		t.Fatalf("popbox user add %s: exit %d: %s", name, r.Code, r.Stderr)
	}
}

// deliverMsg delivers msg to user through the CLI, in process.
func deliverMsg(t testing.TB, data, user, msg string) {
	t.Helper()
	if r := runCLI(t, msg, "deliver", "--data", data, user); r.Code != 0 {
		t.Fatalf("popbox deliver %s: exit %d: %s", user, r.Code, r.Stderr)
	}
}

// maildirFiles returns the messages in user's Maildir (new/ and cur/), by
// file name, with their contents.
func maildirFiles(t testing.TB, data, user string) map[string]string {
	t.Helper()
	files := map[string]string{}
	for _, sub := range []string{"new", "cur"} {
		dir := filepath.Join(data, "mail", user, "Maildir", sub)
		ents, err := os.ReadDir(dir)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			files[sub+"/"+e.Name()] = string(b)
		}
	}
	return files
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// lineLog collects what a process writes to one stream, line by line, and
// lets tests wait for a line.
type lineLog struct {
	mu      sync.Mutex
	all     bytes.Buffer
	partial []byte
	lines   []string
	changed chan struct{} // closed and replaced on every write
	onLine  func(string)  // if set, called with every complete line
}

func newLineLog() *lineLog { return &lineLog{changed: make(chan struct{})} }

func (l *lineLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.all.Write(p)
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		l.lines = append(l.lines, string(l.partial[:i]))
		l.partial = l.partial[i+1:]
		if l.onLine != nil {
			l.onLine(l.lines[len(l.lines)-1])
		}
	}
	close(l.changed)
	l.changed = make(chan struct{})
	return len(p), nil
}

func (l *lineLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.all.String()
}

// snapshot returns the complete lines so far, the unterminated rest, and a
// channel closed at the next write.
func (l *lineLog) snapshot() ([]string, string, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lines[:len(l.lines):len(l.lines)], string(l.partial), l.changed
}

// logRecord is one slog text line as key/value pairs.
type logRecord map[string]string

// parseLogLine splits a log/slog text line (`time=... level=INFO
// msg="a b" key=value`) into its pairs, unquoting quoted values.
func parseLogLine(line string) logRecord {
	rec := logRecord{}
	for s := strings.TrimSpace(line); s != ""; s = strings.TrimLeft(s, " ") {
		k, rest, ok := strings.Cut(s, "=")
		if !ok {
			break
		}
		var v string
		if strings.HasPrefix(rest, `"`) {
			q, err := strconv.QuotedPrefix(rest)
			if err != nil {
				break
			}
			v, _ = strconv.Unquote(q)
			rest = rest[len(q):]
		} else {
			v, rest, _ = strings.Cut(rest, " ")
		}
		rec[k] = v
		s = rest
	}
	return rec
}

// serveProc is a running `popbox serve`.
type serveProc struct {
	t      *testing.T
	cmd    *exec.Cmd
	cancel context.CancelFunc
	stdout *lineLog
	stderr *lineLog
	exited chan struct{} // closed once waitErr is set
	waitEr error
	plain  string // address of the pop3 listener
	tls    string // address of the pop3s listener
	data   string // data directory, where a test sets it
}

// startServe starts `popbox serve args...` and waits for the listening
// lines of the listeners args enable (both unless "" is passed for one).
// The process is stopped with SIGTERM at the end of the test if it still
// runs, and killed after serveTimeout in any case.
func startServe(t *testing.T, o binOpts, args ...string) *serveProc {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), serveTimeout)
	p := &serveProc{t: t, cancel: cancel, stdout: newLineLog(), stderr: newLineLog(), exited: make(chan struct{})}
	// --allow-root: CI runs the tests as root, and these servers are not
	// about privileges (privdrop_test.go is).
	p.cmd = exec.CommandContext(ctx, popboxBin, append([]string{"serve", "--allow-root"}, args...)...)
	p.cmd.Stdin, p.cmd.Stdout, p.cmd.Stderr = o.stdin, p.stdout, p.stderr
	p.cmd.Env, p.cmd.Dir = childEnv(o.env...), o.dir
	p.cmd.WaitDelay = time.Second
	if o.onLogLine != nil {
		// Start sets Process before it starts copying the output.
		p.stderr.onLine = func(line string) { o.onLogLine(p.cmd.Process, line) }
	}
	if err := p.cmd.Start(); err != nil {
		cancel()
		t.Fatalf("starting popbox serve: %v", err)
	}
	go func() {
		p.waitEr = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.exited:
			case <-time.After(stopTimeout):
				p.cmd.Process.Kill()
				<-p.exited
			}
		}
		cancel()
		if t.Failed() {
			t.Logf("popbox serve %s\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), p.stdout, p.stderr)
		}
	})

	wantPlain, wantTLS := true, true
	for i, a := range args {
		if i+1 < len(args) && args[i+1] == "" {
			switch a {
			case "--listen":
				wantPlain = false
			case "--listen-tls":
				wantTLS = false
			}
		}
	}
	if wantPlain {
		p.plain = p.waitLog(startTimeout, "msg=listening proto=pop3", func(r logRecord) bool {
			return r["msg"] == "listening" && r["proto"] == "pop3"
		})["addr"]
	}
	if wantTLS {
		p.tls = p.waitLog(startTimeout, "msg=listening proto=pop3s", func(r logRecord) bool {
			return r["msg"] == "listening" && r["proto"] == "pop3s"
		})["addr"]
	}
	return p
}

// waitLog waits for a line on the server's stderr that match accepts and
// returns it; what describes it for the failure message.
func (p *serveProc) waitLog(timeout time.Duration, what string, match func(logRecord) bool) logRecord {
	p.t.Helper()
	line, ok := waitLine(p.stderr, p.exited, timeout, func(s string) bool { return match(parseLogLine(s)) })
	if !ok {
		p.t.Fatalf("popbox serve did not log %s within %v (%s)", what, timeout, p.status())
	}
	return parseLogLine(line)
}

// waitStdout waits for a line on the server's stdout with the prefix.
func (p *serveProc) waitStdout(timeout time.Duration, prefix string) string {
	p.t.Helper()
	line, ok := waitLine(p.stdout, p.exited, timeout, func(s string) bool { return strings.HasPrefix(s, prefix) })
	if !ok {
		p.t.Fatalf("popbox serve did not print a line starting %q within %v (%s)", prefix, timeout, p.status())
	}
	return line
}

// waitLine returns the first line of l that match accepts, waiting for it
// until timeout or until exited is closed (and the line did not come).
func waitLine(l *lineLog, exited <-chan struct{}, timeout time.Duration, match func(string) bool) (string, bool) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	gone := false
	for {
		lines, _, changed := l.snapshot()
		for _, s := range lines {
			if match(s) {
				return s, true
			}
		}
		if gone {
			return "", false
		}
		select {
		case <-changed:
		case <-exited:
			// Output is all copied once Wait returns: look once more.
			gone = true
		case <-deadline.C:
			return "", false
		}
	}
}

// status describes whether the process runs or how it ended.
func (p *serveProc) status() string {
	select {
	case <-p.exited:
		if p.waitEr == nil {
			return "exited with status 0"
		}
		return "exited: " + p.waitEr.Error()
	default:
		return "still running"
	}
}

func (p *serveProc) signal(sig os.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("sending %v to popbox serve: %v", sig, err)
	}
}

// wait waits for the process to exit and returns its exit status.
func (p *serveProc) wait(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.exited:
	case <-time.After(timeout):
		p.t.Fatalf("popbox serve did not exit within %v", timeout)
	}
	var exit *exec.ExitError
	switch {
	case p.waitEr == nil:
		return 0
	case errors.As(p.waitEr, &exit) && exit.ExitCode() >= 0:
		return exit.ExitCode()
	}
	p.t.Fatalf("popbox serve: %v", p.waitEr)
	return -1
}

// stop sends SIGTERM and wants exit status 0.
func (p *serveProc) stop() {
	p.t.Helper()
	p.signal(syscall.SIGTERM)
	if code := p.wait(stopTimeout); code != 0 {
		p.t.Errorf("popbox serve exited with status %d after SIGTERM, want 0", code)
	}
}

// fingerprint formats the SHA-256 of a DER certificate as the server logs
// it: upper-case hex pairs joined by colons.
func fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	h := strings.ToUpper(hex.EncodeToString(sum[:]))
	pairs := make([]string, 0, len(sum))
	for i := 0; i < len(h); i += 2 {
		pairs = append(pairs, h[i:i+2])
	}
	return strings.Join(pairs, ":")
}

// readCert reads a PEM certificate file and returns a pool trusting it and
// its fingerprint.
func readCert(t testing.TB, path string) (*x509.CertPool, string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		t.Fatalf("%s: no PEM certificate", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(c)
	return pool, fingerprint(c.Raw)
}

// newCertPair makes a self-signed ECDSA certificate for localhost and
// 127.0.0.1, PEM encoded, and its fingerprint.
func newCertPair(t testing.TB) (certPEM, keyPEM []byte, fp string) {
	t.Helper()
	p, err := testcert.New("popbox cmd test")
	if err != nil {
		t.Fatal(err)
	}
	return p.CertPEM, p.KeyPEM, fingerprint(p.Cert.Certificate[0])
}

// replaceFile writes data to path through a temporary file and a rename,
// so a reader sees the old or the new file, never half of one.
func replaceFile(t testing.TB, path string, data []byte) {
	t.Helper()
	tmp := path + ".test-tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func clientTLS(roots *x509.CertPool) *tls.Config {
	return &tls.Config{
		RootCAs:    roots,
		ServerName: "localhost",
		NextProtos: []string{"pop3"},
		MinVersion: tls.VersionTLS12,
	}
}

// pop3Conn is a minimal POP3 client for the tests; every operation has a
// deadline of ioTimeout.
type pop3Conn struct {
	t    testing.TB
	conn net.Conn
	r    *bufio.Reader
}

// dialPOP3 connects to the plain listener and reads the greeting.
func dialPOP3(t testing.TB, addr string) *pop3Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, ioTimeout)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	c := &pop3Conn{t: t, conn: conn, r: bufio.NewReader(conn)}
	t.Cleanup(func() { c.conn.Close() })
	if g := c.line(); !strings.HasPrefix(g, "+OK") {
		t.Fatalf("greeting from %s: %q", addr, g)
	}
	return c
}

// dialPOP3S connects to the implicit-TLS listener, trusting only roots, and
// reads the greeting. It returns the fingerprint of the server's
// certificate.
func dialPOP3S(t testing.TB, addr string, roots *x509.CertPool) (*pop3Conn, string) {
	t.Helper()
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: ioTimeout}, Config: clientTLS(roots)}
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatalf("TLS dial %s: %v", addr, err)
	}
	c := &pop3Conn{t: t, conn: conn, r: bufio.NewReader(conn)}
	t.Cleanup(func() { c.conn.Close() })
	if g := c.line(); !strings.HasPrefix(g, "+OK") {
		t.Fatalf("greeting from %s: %q", addr, g)
	}
	return c, fingerprint(conn.(*tls.Conn).ConnectionState().PeerCertificates[0].Raw)
}

// stls upgrades the connection with STLS and returns the fingerprint of
// the server's certificate.
func (c *pop3Conn) stls(roots *x509.CertPool) string {
	c.t.Helper()
	if got := c.cmd("STLS"); !strings.HasPrefix(got, "+OK") {
		c.t.Fatalf("STLS: %q", got)
	}
	if c.r.Buffered() > 0 {
		c.t.Fatal("data after the STLS reply, before the handshake")
	}
	tc := tls.Client(c.conn, clientTLS(roots))
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		c.t.Fatalf("TLS handshake after STLS: %v", err)
	}
	c.conn, c.r = tc, bufio.NewReader(tc)
	return fingerprint(tc.ConnectionState().PeerCertificates[0].Raw)
}

func (c *pop3Conn) line() string {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(ioTimeout))
	s, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("reading a POP3 reply: %v (after %q)", err, s)
	}
	return strings.TrimSuffix(s, "\r\n")
}

// cmd sends one command and returns the first line of the reply.
func (c *pop3Conn) cmd(line string) string {
	c.t.Helper()
	c.conn.SetWriteDeadline(time.Now().Add(ioTimeout))
	if _, err := io.WriteString(c.conn, line+"\r\n"); err != nil {
		c.t.Fatalf("sending %q: %v", line, err)
	}
	return c.line()
}

// body reads a multi-line reply's lines up to the terminating ".",
// undoing dot-stuffing.
func (c *pop3Conn) body() []string {
	c.t.Helper()
	var lines []string
	for {
		s := c.line()
		if s == "." {
			return lines
		}
		lines = append(lines, strings.TrimPrefix(s, "."))
	}
}

func (c *pop3Conn) login(user, password string) {
	c.t.Helper()
	if got := c.cmd("USER " + user); !strings.HasPrefix(got, "+OK") {
		c.t.Fatalf("USER %s: %q", user, got)
	}
	if got := c.cmd("PASS " + password); !strings.HasPrefix(got, "+OK") {
		c.t.Fatalf("PASS for %s: %q", user, got)
	}
}

// expectClosed wants the server to close the connection within ioTimeout,
// without sending anything more.
func (c *pop3Conn) expectClosed() {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(ioTimeout))
	s, err := c.r.ReadString('\n')
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		c.t.Fatalf("connection still open after %v", ioTimeout)
	case err == nil || s != "":
		c.t.Fatalf("read %q (err %v), want the connection closed", s, err)
	}
}
