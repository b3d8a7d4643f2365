package pop3server

import (
	"bufio"
	"bytes"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// Loopback addresses for an attacker and a legitimate user. Linux routes
// all of 127.0.0.0/8 to lo, so a client can bind either as its source.
const (
	attackerIP = "127.0.0.2"
	userIP     = "127.0.0.3"
)

// dialFrom connects to addr from the local address ip and reads the
// greeting line, which it returns (a refusal is a greeting too).
func dialFrom(t testing.TB, addr, ip string) (*testClient, string) {
	t.Helper()
	d := net.Dialer{Timeout: ioTimeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial from %s: %v", ip, err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &testClient{t: t, conn: conn, r: bufio.NewReader(conn)}
	return c, c.line()
}

const greeting = "+OK mail.test POP3 server ready"

// logBuffer collects a Server's log, which sessions write concurrently.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// lines returns the lines logged so far whose message is msg.
func (l *logBuffer) lines(msg string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, line := range strings.Split(l.b.String(), "\n") {
		if strings.Contains(line, " msg="+msg+" ") || strings.Contains(line, ` msg="`+msg+`" `) {
			out = append(out, line)
		}
	}
	return out
}

// failureAttrs extracts "user failures delay" from the "login failed"
// lines of ip, to compare the penalty exactly where timing can only be
// bounded.
func failureAttrs(lines []string, ip string) []string {
	re := regexp.MustCompile(`remote_ip=(\S+) (user=\S+) mechanism=\S+ (failures=\d+) (delay=\S+)`)
	var out []string
	for _, l := range lines {
		if m := re.FindStringSubmatch(l); m != nil && m[1] == ip {
			out = append(out, m[2]+" "+m[3]+" "+m[4])
		}
	}
	return out
}

func withLog(lb *logBuffer) func(*Server) {
	return func(s *Server) { s.Logger = slog.New(slog.NewTextHandler(lb, nil)) }
}

// TestFailurePenalty is the defence scenario of issue 4, scaled down: an
// attacker guessing alice's password from one address is slowed more and
// more, while alice herself, from another address, logs in at once; a
// success resets the penalty. Not parallel: it measures time.
func TestFailurePenalty(t *testing.T) {
	const base, ceiling = 20 * time.Millisecond, 160 * time.Millisecond
	var lb logBuffer
	ts := newTestServer(t, fixtureBackend(), serverOpts{configure: func(s *Server) {
		withLog(&lb)(s)
		s.AuthFailureDelay = base
		s.AuthFailureDelayMax = ceiling
	}})

	attacker, g := dialFrom(t, ts.addr, attackerIP)
	if g != greeting {
		t.Fatalf("attacker greeting %q", g)
	}
	guess := func(c *testClient, user, pass string) (string, time.Duration) {
		c.t.Helper()
		c.cmd("USER " + user)
		start := time.Now()
		got := c.cmd("PASS " + pass)
		return got, time.Since(start)
	}
	wantDelays := []time.Duration{20, 40, 80, 160, 160, 160}
	for i, want := range wantDelays {
		want *= time.Millisecond
		got, d := guess(attacker, "alice", "guess")
		if got != authFailed {
			t.Fatalf("guess %d: %q, want %q", i+1, got, authFailed)
		}
		if d < want {
			t.Errorf("guess %d answered after %v, want >= %v", i+1, d, want)
		}
	}
	// A made-up user from the same address: the address's penalty, and
	// the same reply as for a wrong password.
	if got, d := guess(attacker, "nobody", alicePass); got != authFailed || d < ceiling {
		t.Errorf("unknown user from the attacker: %q after %v, want %q after >= %v", got, d, authFailed, ceiling)
	}

	// Meanwhile alice logs in from her own address without any delay.
	start := time.Now()
	alice, g := dialFrom(t, ts.addr, userIP)
	if g != greeting {
		t.Fatalf("alice's greeting %q", g)
	}
	alice.login("alice", alicePass)
	if d := time.Since(start); d >= time.Second {
		t.Errorf("alice's login from %s took %v during the attack, want < 1s", userIP, d)
	}
	if got := alice.cmd("QUIT"); !strings.HasPrefix(got, "+OK") {
		t.Fatalf("QUIT: %q", got)
	}
	// One typo from her address costs her the base delay, not the
	// attacker's.
	alice2, _ := dialFrom(t, ts.addr, userIP)
	if got, _ := guess(alice2, "alice", "typo"); got != authFailed {
		t.Errorf("typo: %q", got)
	}
	alice.expectClosed() // her maildrop is unlocked again

	// A successful login from the attacker's address (say a shared NAT)
	// resets that address's penalty: the next failure costs the base delay.
	if got, _ := guess(attacker, "alice", alicePass); got != aliceLoggedIn() {
		t.Fatalf("correct password from %s: %q", attackerIP, got)
	}
	attacker.cmd("QUIT")
	again, _ := dialFrom(t, ts.addr, attackerIP)
	if got, _ := guess(again, "alice", "guess"); got != authFailed { // its delay: in the log below
		t.Errorf("failure after a success: %q, want %q", got, authFailed)
	}

	// The log has the exact progression, which timing can only bound.
	lines := lb.lines("login failed")
	wantAttacker := []string{
		"user=alice failures=1 delay=20ms",
		"user=alice failures=2 delay=40ms",
		"user=alice failures=3 delay=80ms",
		"user=alice failures=4 delay=160ms",
		"user=alice failures=5 delay=160ms",
		"user=alice failures=6 delay=160ms",
		"user=nobody failures=7 delay=160ms",
		"user=alice failures=1 delay=20ms", // after the success
	}
	if diff := cmp.Diff(wantAttacker, failureAttrs(lines, attackerIP)); diff != "" {
		t.Errorf("attacker's failures (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"user=alice failures=1 delay=20ms"}, failureAttrs(lines, userIP)); diff != "" {
		t.Errorf("alice's failures (-want +got):\n%s", diff)
	}
}

// TestPerIPCaps: an address at its cap of connections, or of connections
// not logged in, is refused politely; sessions already open go on, and
// other addresses are served.
func TestPerIPCaps(t *testing.T) {
	const refused = "-ERR [SYS/TEMP] too many connections from your address"
	ts := newTestServer(t, fixtureBackend(), serverOpts{configure: func(s *Server) {
		s.Limits.MaxConnectionsPerIP = 3
		s.Limits.MaxUnauthenticatedPerIP = 2
	}})
	dial := func(ip, want string) *testClient {
		t.Helper()
		c, g := dialFrom(t, ts.addr, ip)
		if g != want {
			t.Fatalf("connection from %s: %q, want %q", ip, g, want)
		}
		if want == refused {
			c.expectClosed()
		}
		return c
	}
	a := dial(attackerIP, greeting)
	dial(attackerIP, greeting)
	// Two not logged in: the third is refused, on either listener.
	dial(attackerIP, refused)
	if c, g := dialFrom(t, ts.tlsAddr, attackerIP); g != refused {
		t.Fatalf("TLS connection over the cap: %q, want %q", g, refused)
	} else {
		c.expectClosed()
	}
	// Another address is served meanwhile.
	other := dial(userIP, greeting)
	other.login("bob", bobPass)

	// Once one logs in, another unauthenticated slot is free.
	a.login("alice", alicePass)
	c := dial(attackerIP, greeting)
	dial(attackerIP, refused)
	// With two logged in, one unauthenticated slot is free, but the
	// total cap of three is reached.
	ts.b.addUser("carol", "carol's password")
	c.login("carol", "carol's password")
	dial(attackerIP, refused)

	// The logged-in sessions carry on.
	if got := a.cmd("STAT"); !strings.HasPrefix(got, "+OK 4 ") {
		t.Errorf("STAT in a session over the cap: %q", got)
	}
	if got := other.cmd("STAT"); got != "+OK 0 0" {
		t.Errorf("STAT from the other address: %q", got)
	}
}

// TestAuthTimeout: a client has AuthTimeout from connect to log in, busy
// or not; after login only the idle timeout applies.
func TestAuthTimeout(t *testing.T) {
	const limit = 300 * time.Millisecond
	const want = "-ERR [SYS/TEMP] time limit for login reached, closing connection"
	ts := newTestServer(t, fixtureBackend(), serverOpts{configure: func(s *Server) {
		s.Limits.AuthTimeout = limit
	}})
	tests := []struct {
		name string
		dial func() *testClient
		// chat runs until the connection is closed; the client keeps
		// talking, which would reset an idle timer.
		busy bool
	}{
		{name: "silent", dial: func() *testClient { return ts.dial(t) }},
		{name: "busy", dial: func() *testClient { return ts.dial(t) }, busy: true},
		{name: "silent TLS", dial: func() *testClient { return ts.dialTLS(t) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			c := tt.dial().on(t)
			var got string
			for send := true; ; {
				if tt.busy && send {
					// Fails once the server has closed; the read says why.
					c.conn.SetWriteDeadline(time.Now().Add(ioTimeout))
					c.conn.Write([]byte("CAPA\r\n"))
				}
				l, err := c.readLine()
				if err != nil {
					t.Fatalf("no notice before the connection ended: %v", err)
				}
				if strings.HasPrefix(l, "-ERR") {
					got = l
					break
				}
				// One CAPA at a time, one every 20 ms.
				if send = l == "."; send {
					time.Sleep(20 * time.Millisecond)
				}
			}
			d := time.Since(start)
			if got != want {
				t.Errorf("got %q, want %q", got, want)
			}
			if d < limit || d > limit+time.Second {
				t.Errorf("closed after %v, want about %v", d, limit)
			}
			if _, err := c.readUntilClosed(); err != nil {
				t.Errorf("connection not closed: %v", err)
			}
		})
	}
	t.Run("pipelined", func(t *testing.T) {
		// Commands already buffered need no read, so no read deadline
		// stops them: the CAPA waiting behind a failed login (whose
		// delay outlasts the limit) must not be answered.
		slow := newTestServer(t, fixtureBackend(), serverOpts{configure: func(s *Server) {
			s.Limits.AuthTimeout = limit
			s.AuthFailureDelay = 2 * limit
		}})
		c := slow.dial(t)
		c.write("USER alice\r\nPASS wrong\r\nCAPA\r\n")
		got, err := c.readUntilClosed()
		if err != nil {
			t.Fatalf("connection not closed: %v", err)
		}
		if want := "+OK send PASS\r\n" + authFailed + "\r\n" + want + "\r\n"; got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	})
	t.Run("logged in", func(t *testing.T) {
		c := ts.dial(t)
		c.login("alice", alicePass)
		time.Sleep(2 * limit)
		if got := c.cmd("STAT"); !strings.HasPrefix(got, "+OK 4 ") {
			t.Errorf("STAT after the auth time limit: %q", got)
		}
	})
}

// TestPreAuthBytes: a client may send MaxPreAuthBytes before logging in;
// then the session is closed. After login there is no such limit.
func TestPreAuthBytes(t *testing.T) {
	const limit = 600 // exactly 100 "CAPA\r\n"
	const want = "-ERR too much data before login, closing connection"
	ts := newTestServer(t, fixtureBackend(), serverOpts{configure: func(s *Server) {
		s.Limits.MaxAuthLine = 256 // else the limit is raised to it
		s.Limits.MaxPreAuthBytes = limit
	}})
	t.Run("lock-step", func(t *testing.T) {
		c := ts.dial(t)
		for i := 0; i < limit/len("CAPA\r\n"); i++ {
			if got := c.cmd("CAPA"); !strings.HasPrefix(got, "+OK") {
				t.Fatalf("CAPA %d within the limit: %q", i+1, got)
			}
			c.body()
		}
		// The limit is reached exactly: the server reads nothing more.
		if got := c.line(); got != want {
			t.Errorf("after %d octets: %q, want %q", limit, got, want)
		}
		c.expectClosed()
	})
	t.Run("flood", func(t *testing.T) {
		c := ts.dial(t)
		// One endless line: the line limit only discards it (RFC 2449 §4
		// leaves the session in step), so only the byte limit ends this.
		go func() {
			c.conn.SetWriteDeadline(time.Now().Add(ioTimeout))
			c.conn.Write(bytes.Repeat([]byte("A"), 100_000)) // fails once closed
		}()
		got, err := c.readUntilClosed()
		if err != nil {
			t.Fatalf("connection not closed: %v", err)
		}
		// A reset may swallow the notice; when it arrives it is the last line.
		if got != "" && !strings.HasSuffix(got, want+"\r\n") {
			t.Errorf("flood: got %.300q, want it to end with %q", got, want)
		}
	})
	t.Run("logged in", func(t *testing.T) {
		c := ts.dial(t)
		c.login("alice", alicePass)
		for i := 0; i < 2*limit/len("NOOP\r\n"); i++ {
			if got := c.cmd("NOOP"); got != "+OK" {
				t.Fatalf("NOOP %d after login: %q", i+1, got)
			}
		}
	})
}

// TestFail2banFilter runs the server, fails logins in several ways and
// matches the real log lines with the failregex of
// contrib/fail2ban/popbox.conf, translated to Go: every failure must be
// found, with the client's address as <HOST>, and nothing else.
func TestFail2banFilter(t *testing.T) {
	filter := filepath.Join("..", "contrib", "fail2ban", "popbox.conf")
	conf, err := os.ReadFile(filter)
	if err != nil {
		t.Fatal(err)
	}
	failregex := confValue(t, conf, "failregex")
	datepattern := confValue(t, conf, "datepattern")

	var lb logBuffer
	ts := newTestServer(t, fixtureBackend(), serverOpts{configure: withLog(&lb)})
	c, _ := dialFrom(t, ts.addr, attackerIP)
	c.cmd("USER alice")
	c.cmd("PASS wrong")
	c.cmd("USER nobody")
	c.cmd("PASS " + alicePass)
	// A user name made to look like the matched part of the line.
	c.cmd("AUTH PLAIN " + b64("\x00x\" level=INFO msg=\"login failed\" remote=1 remote_ip=10.9.9.9 user=\x00pw"))
	c.cmd("AUTH PLAIN =")
	c.login("alice", alicePass)
	c.cmd("QUIT")
	c.expectClosed()
	ts.srv.Close() // flushes the session-end line too

	all := lb.lines("login failed")
	if len(all) != 4 {
		t.Fatalf("%d login failed lines, want 4:\n%s", len(all), strings.Join(all, "\n"))
	}
	lb.mu.Lock()
	logged := strings.Split(strings.TrimSpace(lb.b.String()), "\n")
	lb.mu.Unlock()

	// fail2ban's <HOST> for an address; (?P<host>) as fail2ban names it.
	re := regexp.MustCompile(strings.ReplaceAll(failregex, "<HOST>", `(?P<host>[0-9A-Fa-f.:]+)`))
	date := regexp.MustCompile(translateDate(datepattern))
	var hosts []string
	for _, l := range logged {
		if !date.MatchString(l) {
			t.Errorf("datepattern %q does not match %q", datepattern, l)
		}
		if m := re.FindStringSubmatch(l); m != nil {
			hosts = append(hosts, m[re.SubexpIndex("host")])
		}
	}
	if diff := cmp.Diff([]string{attackerIP, attackerIP, attackerIP, attackerIP}, hosts); diff != "" {
		t.Errorf("hosts found by the failregex (-want +got):\n%s\nlog:\n%s", diff, strings.Join(logged, "\n"))
	}

	// The real thing, where installed.
	f2b, err := exec.LookPath("fail2ban-regex")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("fail2ban-regex not found: install the Debian package fail2ban")
		}
		t.Log("fail2ban-regex not installed; checked with the Go translation only")
		return
	}
	logFile := filepath.Join(t.TempDir(), "popbox.log")
	if err := os.WriteFile(logFile, []byte(strings.Join(logged, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	abs, err := filepath.Abs(filter)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(f2b, "--print-all-matched", logFile, abs).CombinedOutput()
	if err != nil {
		t.Fatalf("fail2ban-regex: %v\n%s", err, out)
	}
	if want := "4 matched"; !strings.Contains(string(out), want) {
		t.Errorf("fail2ban-regex: want %q in:\n%s", want, out)
	}
}

// confValue returns the value of key in a fail2ban .conf (single-line
// values only, which is all popbox.conf uses).
func confValue(t *testing.T, conf []byte, key string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + key + `\s*=\s*(.*)$`).FindSubmatch(conf)
	if m == nil || len(bytes.TrimSpace(m[1])) == 0 {
		t.Fatalf("no %s in the filter", key)
	}
	return string(bytes.TrimSpace(m[1]))
}

// translateDate turns the fail2ban datepattern into a Go regexp (only the
// directives popbox.conf uses).
func translateDate(p string) string {
	return strings.NewReplacer(
		"{^LN-BEG}", "^",
		"%%Y", `\d{4}`, "%%m", `\d{2}`, "%%d", `\d{2}`,
		"%%H", `\d{2}`, "%%M", `\d{2}`, "%%S", `\d{2}`,
		"%%f", `\d+`, "%%z", `(?:Z|[+-]\d{2}:?\d{2})`,
	).Replace(p)
}
