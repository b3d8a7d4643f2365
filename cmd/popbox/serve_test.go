package main

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// listenArgs make serve listen on ports the kernel chooses.
var listenArgs = []string{"--listen", "127.0.0.1:0", "--listen-tls", "127.0.0.1:0"}

// testConfig writes a configuration for tests (no delay after a failed
// login) with extra lines appended, and returns its path.
func testConfig(t *testing.T, extra string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "popbox.toml")
	writeFile(t, path, "[pop3]\nauth_failure_delay = \"0s\"\n"+extra)
	return path
}

// curlArgs runs the curl command line serve printed through sh(1), with a
// curl function that prints its arguments, and returns them: the command
// is paste-ready only if the shell splits it into the intended words.
func curlArgs(t *testing.T, dir, commandLine string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	script := `curl() { for a in "$@"; do printf '%s\n' "$a"; done; }; ` + commandLine
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", script)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("sh -c %q: %v", commandLine, err)
	}
	return strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
}

// TestServeFirstRunAndRestart: the first start on an empty data directory
// creates a self-signed certificate (fingerprint logged), the user demo with
// a password printed once beside a working curl command, and a welcome
// message; the second start prints no password and keeps the certificate
// and the mailbox.
func TestServeFirstRunAndRestart(t *testing.T) {
	t.Parallel()
	cwd := t.TempDir()
	const dataArg = "my data" // relative, with a space: the curl command must still paste
	data := filepath.Join(cwd, dataArg)
	certFile := filepath.Join(data, "tls", "cert.pem")

	// First run.
	p := startServe(t, binOpts{dir: cwd}, append([]string{"--data", dataArg}, listenArgs...)...)
	created := p.waitLog(ioTimeout, `msg="created self-signed certificate"`, func(r logRecord) bool {
		return r["msg"] == "created self-signed certificate"
	})
	if want := filepath.Join(dataArg, "tls", "cert.pem"); created["cert"] != want {
		t.Errorf("created certificate %q, want %q", created["cert"], want)
	}
	logged1 := p.waitLog(ioTimeout, `msg="tls certificate" sha256=...`, func(r logRecord) bool {
		return r["msg"] == "tls certificate"
	})["sha256"]
	roots, fileFP := readCert(t, certFile)
	if logged1 != fileFP {
		t.Errorf("logged fingerprint %s, but %s has %s", logged1, certFile, fileFP)
	}

	curl := p.waitStdout(ioTimeout, "  curl ")
	lines, _, _ := p.stdout.snapshot()
	m := regexp.MustCompile(`^popbox: created user "demo" with password ([A-Za-z0-9]{16,})$`).FindStringSubmatch(lines[0])
	if m == nil {
		t.Fatalf("first stdout line %q does not give demo's password", lines[0])
	}
	password := m[1]
	_, port, _ := net.SplitHostPort(p.tls)
	wantCurl := []string{"-sS", "--cacert", filepath.Join(dataArg, "tls", "cert.pem"), "-u", "demo:" + password, "pop3s://localhost:" + port + "/"}
	gotCurl := curlArgs(t, cwd, strings.TrimSpace(curl))
	if diff := cmp.Diff(wantCurl, gotCurl); diff != "" {
		t.Fatalf("curl command %q splits into the wrong arguments (-want +got):\n%s", curl, diff)
	}
	if strings.Count(p.stdout.String(), password) != 2 { // the line and the curl command
		t.Errorf("the password appears %d times on stdout, want 2:\n%s", strings.Count(p.stdout.String(), password), p.stdout)
	}
	if strings.Contains(p.stderr.String(), password) {
		t.Error("the password is in the log")
	}

	// What the printed command does works: the certificate it names
	// verifies the server at the URL's address as localhost, and the user
	// and password log in.
	cmdRoots, _ := readCert(t, filepath.Join(cwd, gotCurl[2]))
	u, err := url.Parse(gotCurl[5])
	if err != nil {
		t.Fatal(err)
	}
	c, tlsFP := dialPOP3S(t, u.Host, cmdRoots)
	if tlsFP != logged1 {
		t.Errorf("POP3S certificate %s, logged %s", tlsFP, logged1)
	}
	user, pass, _ := strings.Cut(gotCurl[4], ":")
	c.login(user, pass)
	stat1 := c.cmd("STAT")
	if !regexp.MustCompile(`^\+OK 1 \d+$`).MatchString(stat1) {
		t.Errorf("STAT of the new demo mailbox: %q, want 1 message", stat1)
	}
	uidl1 := c.cmd("UIDL 1")
	if got := c.cmd("RETR 1"); !strings.HasPrefix(got, "+OK") {
		t.Fatalf("RETR 1: %q", got)
	}
	if body := strings.Join(c.body(), "\n"); !strings.Contains(body, "Subject: Welcome to popbox") {
		t.Errorf("demo's message is not the welcome message:\n%s", body)
	}
	if got := c.cmd("QUIT"); !strings.HasPrefix(got, "+OK") {
		t.Errorf("QUIT: %q", got)
	}
	p.stop()

	// Second run: nothing new.
	p = startServe(t, binOpts{dir: cwd}, append([]string{"--data", dataArg}, listenArgs...)...)
	logged2 := p.waitLog(ioTimeout, `msg="tls certificate"`, func(r logRecord) bool {
		return r["msg"] == "tls certificate"
	})["sha256"]
	if logged2 != logged1 {
		t.Errorf("second run logs fingerprint %s, first %s", logged2, logged1)
	}
	c, tlsFP = dialPOP3S(t, p.tls, roots)
	if tlsFP != logged1 {
		t.Errorf("second run serves certificate %s, want %s", tlsFP, logged1)
	}
	c.login("demo", password)
	if got := c.cmd("STAT"); got != stat1 {
		t.Errorf("second run: STAT %q, want %q (no second welcome message)", got, stat1)
	}
	if got := c.cmd("UIDL 1"); got != uidl1 {
		t.Errorf("second run: UIDL 1 %q, want %q", got, uidl1)
	}
	c.cmd("QUIT")
	p.stop()
	if out := p.stdout.String(); out != "" {
		t.Errorf("second run printed on stdout:\n%s", out)
	}
	if strings.Contains(p.stderr.String(), "created self-signed certificate") {
		t.Error("second run created a new certificate")
	}
}

// TestDataDirPrecedence: --data, then POPBOX_DATA, then data_dir from the
// configuration file, then ./popbox-data; for serve and the other commands.
func TestDataDirPrecedence(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		flag    bool
		env     bool
		config  bool
		wantDir string
	}{
		{"flag over everything", true, true, true, "flag"},
		{"flag over config", true, false, true, "flag"},
		{"environment over config", false, true, true, "env"},
		{"config", false, false, true, "config"},
		{"default", false, false, false, "popbox-data"},
	}
	template := t.TempDir()
	addUser(t, template, "alice", "pw")
	for _, tt := range tests {
		for _, command := range []string{"serve", "user add", "deliver"} {
			t.Run(tt.name+"/"+command, func(t *testing.T) {
				t.Parallel()
				cwd := t.TempDir()
				dirs := map[string]string{}
				for _, d := range []string{"flag", "env", "config", "popbox-data"} {
					dirs[d] = filepath.Join(cwd, d)
				}
				var args []string
				var o binOpts
				o.dir = cwd
				if tt.flag {
					args = append(args, "--data", dirs["flag"])
				}
				if tt.env {
					o.env = []string{"POPBOX_DATA=" + dirs["env"]}
				}
				if tt.config {
					cfg := testConfig(t, "")
					writeFile(t, cfg, `data_dir = "`+dirs["config"]+`"`+"\n")
					args = append(args, "-c", cfg)
				}
				switch command {
				case "serve":
					p := startServe(t, o, append(args, listenArgs...)...)
					cert := p.waitLog(ioTimeout, `msg="tls certificate"`, func(r logRecord) bool {
						return r["msg"] == "tls certificate"
					})["cert"]
					if want := filepath.Join(dirs[tt.wantDir], "tls", "cert.pem"); cert != want && cert != filepath.Join(tt.wantDir, "tls", "cert.pem") {
						t.Errorf("serve uses certificate %s, want %s", cert, want)
					}
					p.stop()
				case "user add":
					o.stdin = strings.NewReader("pw\n")
					if r := runBin(t, o, append([]string{"user", "add", "alice"}, args...)...); r.Code != 0 {
						t.Fatalf("user add: exit %d: %s", r.Code, r.Stderr)
					}
				case "deliver":
					// Only the right directory has alice; deliver fails
					// (75) in the others.
					copyUsers(t, template, dirs[tt.wantDir])
					o.stdin = strings.NewReader("Subject: x\n\nx\n")
					if r := runBin(t, o, append([]string{"deliver", "alice"}, args...)...); r.Code != 0 {
						t.Fatalf("deliver: exit %d: %s", r.Code, r.Stderr)
					}
					if n := len(maildirFiles(t, dirs[tt.wantDir], "alice")); n != 1 {
						t.Errorf("%d messages in alice's mailbox in %s, want 1", n, tt.wantDir)
					}
				}
				for name, dir := range dirs {
					_, err := os.Stat(filepath.Join(dir, "users.db"))
					switch {
					case name == tt.wantDir && err != nil:
						t.Errorf("the data directory %s was not used: %v", name, err)
					case name != tt.wantDir && !errors.Is(err, os.ErrNotExist):
						t.Errorf("the data directory %s was used too (stat: %v)", name, err)
					}
				}
			})
		}
	}
}

// TestServeShutdown: on SIGTERM the server stops accepting at once, closes
// sessions that have not logged in, lets logged-in sessions finish within
// shutdown_grace (their QUIT applies their deletions), then cuts the rest
// without applying their deletions, and exits 0.
func TestServeShutdown(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	for _, u := range []string{"alice", "bob"} {
		addUser(t, data, u, u+"-pw")
		deliverMsg(t, data, u, "Subject: for "+u+"\n\nhello\n")
	}
	const grace = 2 * time.Second
	cfg := testConfig(t, `shutdown_grace = "2s"`+"\n")
	p := startServe(t, binOpts{}, append([]string{"-c", cfg, "--data", data}, listenArgs...)...)
	roots, _ := readCert(t, filepath.Join(data, "tls", "cert.pem"))

	quitter := dialPOP3(t, p.plain) // plaintext login is allowed on loopback
	quitter.login("alice", "alice-pw")
	if got := quitter.cmd("DELE 1"); !strings.HasPrefix(got, "+OK") {
		t.Fatalf("DELE 1: %q", got)
	}
	stayer, _ := dialPOP3S(t, p.tls, roots)
	stayer.login("bob", "bob-pw")
	if got := stayer.cmd("DELE 1"); !strings.HasPrefix(got, "+OK") {
		t.Fatalf("DELE 1: %q", got)
	}
	anonymous := dialPOP3(t, p.plain)

	start := time.Now()
	p.signal(syscall.SIGTERM)
	p.waitLog(ioTimeout, `msg="shutting down"`, func(r logRecord) bool { return r["msg"] == "shutting down" })
	anonymous.expectClosed()

	// No new connections on either listener.
	for _, addr := range []string{p.plain, p.tls} {
		for deadline := time.Now().Add(time.Second); ; {
			c, err := net.DialTimeout("tcp", addr, ioTimeout)
			if err != nil {
				break
			}
			c.Close()
			if time.Now().After(deadline) {
				t.Errorf("%s still accepts connections 1s after SIGTERM", addr)
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	// A logged-in session carries on and its QUIT applies its deletion.
	if got := quitter.cmd("NOOP"); !strings.HasPrefix(got, "+OK") {
		t.Errorf("NOOP during shutdown: %q", got)
	}
	if got := quitter.cmd("QUIT"); got != "+OK popbox signing off (0 messages left)" {
		t.Errorf("QUIT during shutdown: %q", got)
	}
	quitter.expectClosed()

	// The other is cut when the grace period ends, deleting nothing.
	stayer.expectClosed()
	if code := p.wait(stopTimeout); code != 0 {
		t.Errorf("exit status %d after SIGTERM, want 0", code)
	}
	if d := time.Since(start); d < grace-200*time.Millisecond {
		t.Errorf("exited %v after SIGTERM, before the %v grace period ended", d, grace)
	}
	p.waitLog(0, `msg="grace period over, ..."`, func(r logRecord) bool {
		return r["level"] == "WARN" && strings.HasPrefix(r["msg"], "grace period over")
	})
	p.waitLog(0, "msg=stopped", func(r logRecord) bool { return r["msg"] == "stopped" })

	got := map[string]int{"alice": len(maildirFiles(t, data, "alice")), "bob": len(maildirFiles(t, data, "bob"))}
	if diff := cmp.Diff(map[string]int{"alice": 0, "bob": 1}, got); diff != "" {
		t.Errorf("messages left after shutdown (-want +got):\n%s", diff)
	}
}

// TestServeReloadCertificate: SIGHUP loads a new certificate pair from
// DATA/tls for new connections (POP3S and STLS) while a logged-in session
// carries on; a pair that does not load leaves the current one in use.
func TestServeReloadCertificate(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	addUser(t, data, "alice", "alice-pw")
	deliverMsg(t, data, "alice", "Subject: one\n\n1\n")
	p := startServe(t, binOpts{}, append([]string{"-c", testConfig(t, ""), "--data", data}, listenArgs...)...)
	certFile, keyFile := filepath.Join(data, "tls", "cert.pem"), filepath.Join(data, "tls", "key.pem")
	oldRoots, oldFP := readCert(t, certFile)

	old, fp := dialPOP3S(t, p.tls, oldRoots)
	if fp != oldFP {
		t.Fatalf("POP3S certificate %s, want %s", fp, oldFP)
	}
	old.login("alice", "alice-pw")
	stat := old.cmd("STAT")

	certPEM, keyPEM, newFP := newCertPair(t)
	replaceFile(t, keyFile, keyPEM)
	replaceFile(t, certFile, certPEM)
	p.signal(syscall.SIGHUP)
	p.waitLog(ioTimeout, `msg="certificate reloaded" sha256=`+newFP, func(r logRecord) bool {
		return r["msg"] == "certificate reloaded" && r["sha256"] == newFP
	})
	newRoots, _ := readCert(t, certFile)

	c, fp := dialPOP3S(t, p.tls, newRoots)
	if fp != newFP {
		t.Errorf("POP3S after SIGHUP: certificate %s, want the new %s", fp, newFP)
	}
	c.cmd("QUIT")
	c = dialPOP3(t, p.plain)
	if fp := c.stls(newRoots); fp != newFP {
		t.Errorf("STLS after SIGHUP: certificate %s, want the new %s", fp, newFP)
	}
	c.cmd("QUIT")

	// The session from before the reload is still there.
	if got := old.cmd("NOOP"); !strings.HasPrefix(got, "+OK") {
		t.Errorf("NOOP on the old session after SIGHUP: %q", got)
	}
	if got := old.cmd("STAT"); got != stat {
		t.Errorf("STAT on the old session after SIGHUP: %q, want %q", got, stat)
	}

	// A broken pair is refused and the new one stays.
	replaceFile(t, certFile, []byte("not a certificate\n"))
	p.signal(syscall.SIGHUP)
	p.waitLog(ioTimeout, `msg="reloading certificate failed, ..."`, func(r logRecord) bool {
		return r["level"] == "ERROR" && strings.HasPrefix(r["msg"], "reloading certificate failed")
	})
	c, fp = dialPOP3S(t, p.tls, newRoots)
	if fp != newFP {
		t.Errorf("POP3S after a failed reload: certificate %s, want %s", fp, newFP)
	}
	c.cmd("QUIT")

	if got := old.cmd("QUIT"); !strings.HasPrefix(got, "+OK") {
		t.Errorf("QUIT on the old session: %q", got)
	}
	p.stop()
}

// TestServeHangupRightAfterStart: once serve logs that it listens, SIGHUP
// reloads the certificate. It must not kill the server, which is SIGHUP's
// default action until a handler is installed. The signal is sent the
// moment the first listening line is written; the race it looks for is
// narrow, hence several starts.
func TestServeHangupRightAfterStart(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	addUser(t, data, "alice", "alice-pw") // no demo user: a faster start
	hup := func(proc *os.Process, line string) {
		if parseLogLine(line)["msg"] == "listening" {
			proc.Signal(syscall.SIGHUP)
		}
	}
	for i := range 10 {
		p := startServe(t, binOpts{onLogLine: hup}, append([]string{"--data", data}, listenArgs...)...)
		p.waitLog(ioTimeout, `msg="certificate reloaded" after a SIGHUP on the first listening line (start `+strconv.Itoa(i)+`)`, func(r logRecord) bool {
			return r["msg"] == "certificate reloaded"
		})
		p.stop()
	}
}

// TestServeConfigApplied: the [pop3] settings of the configuration file
// reach the server.
func TestServeConfigApplied(t *testing.T) {
	t.Parallel()
	template := t.TempDir()
	addUser(t, template, "alice", "alice-pw")
	wrongPassword := func(t *testing.T, p *serveProc) time.Duration {
		c := dialPOP3(t, p.plain)
		c.cmd("USER alice")
		start := time.Now()
		if got := c.cmd("PASS wrong"); !strings.HasPrefix(got, "-ERR") {
			t.Fatalf("PASS with a wrong password: %q", got)
		}
		return time.Since(start)
	}
	tests := []struct {
		name   string
		config string // under [pop3]
		check  func(t *testing.T, p *serveProc)
	}{
		{"no auth failure delay", `auth_failure_delay = "0s"`, func(t *testing.T, p *serveProc) {
			// The default would be 2s.
			if d := wrongPassword(t, p); d > 1500*time.Millisecond {
				t.Errorf("failed login answered after %v, want no delay", d)
			}
		}},
		{"auth failure delay", `auth_failure_delay = "1s"`, func(t *testing.T, p *serveProc) {
			if d := wrongPassword(t, p); d < 900*time.Millisecond {
				t.Errorf("failed login answered after %v, want 1s or a little more", d)
			}
		}},
		{"idle timeout", "idle_timeout = \"1s\"\nallow_short_idle_timeout = true", func(t *testing.T, p *serveProc) {
			c := dialPOP3(t, p.plain)
			start := time.Now()
			c.conn.SetReadDeadline(time.Now().Add(ioTimeout))
			for { // whatever the server says before it hangs up
				if _, err := c.r.ReadString('\n'); err != nil {
					break
				}
			}
			if d := time.Since(start); d < 800*time.Millisecond || d > 4*time.Second {
				t.Errorf("idle session closed after %v, want about 1s", d)
			}
		}},
		{"max connections", "max_connections = 1", func(t *testing.T, p *serveProc) {
			first := dialPOP3(t, p.plain)
			conn, err := net.DialTimeout("tcp", p.plain, ioTimeout)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			second := &pop3Conn{t: t, conn: conn, r: bufio.NewReader(conn)}
			if got := second.line(); !strings.HasPrefix(got, "-ERR [SYS/TEMP]") {
				t.Errorf("connection over max_connections: %q, want -ERR [SYS/TEMP]", got)
			}
			if got := first.cmd("CAPA"); !strings.HasPrefix(got, "+OK") {
				t.Errorf("CAPA on the first connection: %q", got)
			}
		}},
		{"unauthenticated per address", "max_unauthenticated_per_ip = 1", func(t *testing.T, p *serveProc) {
			first := dialPOP3(t, p.plain)
			conn, err := net.DialTimeout("tcp", p.plain, ioTimeout)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			second := &pop3Conn{t: t, conn: conn, r: bufio.NewReader(conn)}
			if got := second.line(); !strings.HasPrefix(got, "-ERR [SYS/TEMP] too many connections from your address") {
				t.Errorf("second unauthenticated connection: %q, want the per-address refusal", got)
			}
			first.login("alice", "alice-pw")
			// Logged in, the first no longer counts: a new one is served.
			third := dialPOP3(t, p.plain)
			third.cmd("QUIT")
			first.cmd("QUIT")
		}},
		{"plaintext auth never", `plaintext_auth = "never"`, func(t *testing.T, p *serveProc) {
			c := dialPOP3(t, p.plain)
			if got := c.cmd("USER alice"); !strings.HasPrefix(got, "-ERR [AUTH]") {
				t.Errorf("USER on loopback without TLS: %q, want -ERR [AUTH]", got)
			}
			roots, _ := readCert(t, filepath.Join(p.data, "tls", "cert.pem"))
			c.stls(roots)
			c.login("alice", "alice-pw")
			c.cmd("QUIT")
		}},
		{"host name", `hostname = "mail.example.test"`, func(t *testing.T, p *serveProc) {
			conn, err := net.DialTimeout("tcp", p.plain, ioTimeout)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			c := &pop3Conn{t: t, conn: conn, r: bufio.NewReader(conn)}
			if got := c.line(); !strings.HasPrefix(got, "+OK mail.example.test ") {
				t.Errorf("greeting %q, want the configured host name", got)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			data := t.TempDir()
			copyUsers(t, template, data)
			cfg := filepath.Join(t.TempDir(), "popbox.toml")
			writeFile(t, cfg, "[pop3]\n"+tt.config+"\n")
			p := startServe(t, binOpts{}, append([]string{"-c", cfg, "--data", data}, listenArgs...)...)
			p.data = data
			tt.check(t, p)
			p.stop()
		})
	}
}
