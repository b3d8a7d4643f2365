package pop3server

import (
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestPipelining(t *testing.T) {
	var writes atomic.Int64
	ts := newTestServer(t, fixtureBackend(), serverOpts{
		wrap: func(l net.Listener) net.Listener { return countingListener{l, &writes} },
	})
	c := ts.dial(t)
	c.login("alice", alicePass)

	// 100 commands in one write: 49 LIST 1, 49 UIDL 1, a RETR and a STAT,
	// interleaved.
	var cmds []string
	for i := 0; i < 49; i++ {
		cmds = append(cmds, "LIST 1", "UIDL 1")
	}
	cmds = append(cmds[:50], append([]string{"RETR 2", "STAT"}, cmds[50:]...)...)
	if len(cmds) != 100 {
		t.Fatalf("built %d commands", len(cmds))
	}
	before := writes.Load()
	c.write(strings.Join(cmds, "\r\n") + "\r\n")
	for i, cmd := range cmds {
		got := c.line()
		var want string
		switch cmd {
		case "LIST 1":
			want = fmt.Sprintf("+OK 1 %d", fixtureSize(1))
		case "UIDL 1":
			want = "+OK 1 uid-1"
		case "STAT":
			want = fmt.Sprintf("+OK 4 %d", fixtureTotal())
		case "RETR 2":
			want = fmt.Sprintf("+OK %d octets", fixtureSize(2))
		}
		if got != want {
			t.Fatalf("reply %d to %q: %q, want %q", i, cmd, got, want)
		}
		if cmd == "RETR 2" {
			if body := c.body(); body != fixture[1].wire {
				t.Fatalf("RETR 2 body %q, want %q", body, fixture[1].wire)
			}
		}
	}
	// RFC 2449 §6.6: the replies to a burst go out in few writes.
	if n := writes.Load() - before; n > 5 {
		t.Errorf("100 pipelined replies took %d writes, want at most 5", n)
	}
	if got, want := c.cmd("NOOP"), "+OK"; got != want {
		t.Errorf("after the burst: %q, want %q", got, want)
	}
}

// TestPipelinedPartialLine: a reply must not wait for the rest of a command
// line the client has only begun.
func TestPipelinedPartialLine(t *testing.T) {
	ts := newTestServer(t, fixtureBackend(), serverOpts{})
	c := ts.dial(t)
	c.login("alice", alicePass)
	c.write("STAT\r\nNO")
	if got, want := c.line(), fmt.Sprintf("+OK 4 %d", fixtureTotal()); got != want {
		t.Fatalf("STAT: %q, want %q", got, want)
	}
	c.write("OP\r\n")
	if got, want := c.line(), "+OK"; got != want {
		t.Errorf("NOOP: %q, want %q", got, want)
	}
	// The same before login and in a SASL exchange.
	c2 := ts.dial(t)
	c2.write("AUTH PLAIN\r\n" + b64("\x00bob\x00" + bobPass)[:4])
	if got, want := c2.line(), "+ "; got != want {
		t.Fatalf("AUTH PLAIN: %q, want %q", got, want)
	}
	c2.write(b64("\x00bob\x00" + bobPass)[4:] + "\r\n")
	if got, want := c2.line(), "+OK logged in, 0 messages (0 octets)"; got != want {
		t.Errorf("AUTH continuation: %q, want %q", got, want)
	}
}

// TestBackpressure: a client that pipelines many RETRs and reads nothing
// must cost the server a bounded amount of memory.
func TestBackpressure(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	b := newMemBackend()
	b.addUser("u", "p")
	msg := strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789\n", 100<<10/75)
	b.add("u", msg)
	ts := newTestServer(t, b, serverOpts{})
	c := ts.dial(t)
	c.login("u", "p")

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	cmds := strings.Repeat("RETR 1\r\n", 10_000)
	writeErr := make(chan error, 1)
	conn := c.conn
	go func() {
		conn.SetWriteDeadline(time.Now().Add(ioTimeout))
		_, err := conn.Write([]byte(cmds))
		writeErr <- err
	}()
	// Let the server run into the full socket buffers.
	time.Sleep(500 * time.Millisecond)
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	growth := int64(after.HeapInuse) - int64(before.HeapInuse)
	t.Logf("heap in use grew by %d KB", growth>>10)
	if growth > 20<<20 {
		t.Errorf("heap in use grew by %d MB while the client was not reading, want < 20 MB", growth>>20)
	}

	// Read a few replies: they are intact.
	for i := 0; i < 3; i++ {
		if got, want := c.line(), fmt.Sprintf("+OK %d octets", len(strings.ReplaceAll(msg, "\n", "\r\n"))); got != want {
			t.Fatalf("reply %d: %q, want %q", i, got, want)
		}
		if body := c.body(); body != strings.ReplaceAll(msg, "\n", "\r\n") {
			t.Fatalf("reply %d: body of %d octets differs", i, len(body))
		}
	}
	c.close()
	if err := <-writeErr; err != nil && !errors.Is(err, net.ErrClosed) {
		t.Logf("client write ended with %v", err)
	}
	// The session ends (without commit) and the server carries on.
	b.waitEvents(t, 1)
	c = ts.dial(t)
	c.login("u", "p")
	if got := c.cmd("QUIT"); got != "+OK popbox signing off (1 messages left)" {
		t.Errorf("QUIT: %q", got)
	}
}

func TestMaxBadCommands(t *testing.T) {
	tests := []struct {
		name    string
		max     int    // Limits.MaxBadCommands, 0 for the default
		login   bool   // log in first
		input   string // sent in one write
		replies []string
	}{
		{
			name:    "default 20",
			input:   strings.Repeat("XYZZY\r\n", 2000),
			replies: append(repeat("-ERR unknown command", 20), "-ERR too many errors, closing connection"),
		},
		{
			name:    "5, 2000 bad commands",
			max:     5,
			input:   strings.Repeat("XYZZY\r\n", 2000),
			replies: append(repeat("-ERR unknown command", 5), "-ERR too many errors, closing connection"),
		},
		{
			name:    "5, after login",
			max:     5,
			login:   true,
			input:   strings.Repeat("RETR 9\r\n", 2000),
			replies: append(repeat("-ERR no such message", 5), "-ERR too many errors, closing connection"),
		},
		{
			name:  "only consecutive errors count",
			max:   3,
			login: true,
			input: "BAD\r\nBAD\r\nNOOP\r\nBAD\r\nBAD\r\nNOOP\r\nBAD\r\nBAD\r\nBAD\r\nNOOP\r\n",
			replies: []string{"-ERR unknown command", "-ERR unknown command", "+OK",
				"-ERR unknown command", "-ERR unknown command", "+OK",
				"-ERR unknown command", "-ERR unknown command", "-ERR unknown command",
				"-ERR too many errors, closing connection"},
		},
		{
			name:    "mixed garbage",
			max:     4,
			input:   "\x00\x00\r\n\xff\xfe\r\n" + strings.Repeat("A", 300) + "\r\n\r\nCAPA\r\n",
			replies: []string{"-ERR invalid command syntax", "-ERR invalid command syntax", "-ERR line too long", "-ERR empty command", "-ERR too many errors, closing connection"},
		},
		{
			name:    "failed logins count",
			max:     3,
			input:   strings.Repeat("AUTH PLAIN "+b64("\x00alice\x00wrong")+"\r\n", 10),
			replies: append(repeat(authFailed, 3), "-ERR too many errors, closing connection"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ts := newTestServer(t, fixtureBackend(), serverOpts{configure: func(s *Server) { s.Limits.MaxBadCommands = tt.max }})
			c := ts.dial(t)
			if tt.login {
				c.login("alice", alicePass)
			}
			// The server may close before reading everything: write from
			// another goroutine and ignore its error.
			conn := c.conn
			go func() {
				conn.SetWriteDeadline(time.Now().Add(ioTimeout))
				conn.Write([]byte(tt.input))
			}()
			var got []string
			for range tt.replies {
				l, err := c.readLine()
				if err != nil {
					t.Fatalf("after %q: %v", got, err)
				}
				got = append(got, l)
			}
			if diff := cmp.Diff(tt.replies, got); diff != "" {
				t.Fatalf("replies (-want +got):\n%s", diff)
			}
			if tt.replies[len(tt.replies)-1] == "-ERR too many errors, closing connection" {
				c.expectClosed()
			}
			// No panic, and the server still serves.
			ts.dial(t).login("bob", bobPass)
		})
	}
}

func repeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

func TestSilentConnections(t *testing.T) {
	// The per-address caps would refuse most of these (see TestPerIPCaps);
	// this test is about silent connections slowing nobody down.
	ts := newTestServer(t, fixtureBackend(), serverOpts{configure: func(s *Server) {
		s.Limits.MaxConnectionsPerIP = 1000
		s.Limits.MaxUnauthenticatedPerIP = 1000
	}})
	for i := 0; i < 200; i++ {
		ts.dialRaw(t) // closed at the end of the test
	}
	start := time.Now()
	c := ts.dial(t)
	c.login("alice", alicePass)
	if d := time.Since(start); d > time.Second {
		t.Errorf("greeting and login took %v with 200 silent connections open, want < 1s", d)
	}
}

func TestIdleTimeout(t *testing.T) {
	const idle = 200 * time.Millisecond
	short := func(s *Server) {
		s.Limits.IdleTimeout = idle
		s.Limits.HandshakeTimeout = idle
	}
	tests := []struct {
		name    string
		session func(t *testing.T, ts *testServer) *testClient
		commit  bool
	}{
		{"silent before login", func(t *testing.T, ts *testServer) *testClient { return ts.dial(t) }, false},
		{"silent after login", func(t *testing.T, ts *testServer) *testClient {
			c := ts.dial(t)
			c.login("alice", alicePass)
			c.cmd("DELE 1")
			return c
		}, false},
		{"silent mid-line", func(t *testing.T, ts *testServer) *testClient {
			c := ts.dial(t)
			c.write("CAP")
			return c
		}, false},
		{"silent in SASL exchange", func(t *testing.T, ts *testServer) *testClient {
			c := ts.dial(t)
			c.cmd("AUTH PLAIN")
			return c
		}, false},
		{"silent TLS handshake", func(t *testing.T, ts *testServer) *testClient {
			return dialAddr(t, ts.tlsAddr)
		}, false},
		{"silent after STLS", func(t *testing.T, ts *testServer) *testClient {
			c := ts.dial(t)
			c.cmd("STLS")
			return c
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ts := newTestServer(t, fixtureBackend(), serverOpts{configure: short})
			start := time.Now()
			c := tt.session(t, ts)
			c.expectClosed()
			if d := time.Since(start); d < idle-20*time.Millisecond || d > 3*time.Second {
				t.Errorf("closed after %v, want about %v", d, idle)
			}
		})
	}

	t.Run("activity keeps the session", func(t *testing.T) {
		t.Parallel()
		ts := newTestServer(t, fixtureBackend(), serverOpts{configure: short})
		c := ts.dial(t)
		c.login("alice", alicePass)
		for i := 0; i < 6; i++ {
			time.Sleep(idle / 2)
			if got := c.cmd("NOOP"); got != "+OK" {
				t.Fatalf("NOOP %d after %v: %q", i, time.Duration(i+1)*idle/2, got)
			}
		}
	})

	t.Run("client not reading a RETR", func(t *testing.T) {
		t.Parallel()
		b := newMemBackend()
		b.addUser("u", "p")
		b.add("u", strings.Repeat("a line of text\n", 1<<20)) // 16 MB on the wire
		ts := newTestServer(t, b, serverOpts{configure: short})
		c := ts.dial(t)
		c.login("u", "p")
		c.send("RETR 1")
		// The write deadline ends the session while the client does not read.
		if diff := cmp.Diff([]memEvent{{User: "u", Kind: "close"}}, b.waitEvents(t, 1)); diff != "" {
			t.Errorf("events (-want +got):\n%s", diff)
		}
	})
}

// TestAuthFailureDelay: wrong passwords and unknown users take the same
// time and get the same reply. The penalty does not grow here
// (AuthFailureDelayMax = AuthFailureDelay), so every sample is comparable;
// TestFailurePenalty tests the growth. Not parallel: it measures time.
func TestAuthFailureDelay(t *testing.T) {
	const delay = 300 * time.Millisecond
	ts := newTestServer(t, fixtureBackend(), serverOpts{configure: func(s *Server) {
		s.AuthFailureDelay = delay
		s.AuthFailureDelayMax = delay
	}})
	c := ts.dial(t)
	// attempt logs in (or fails to) and returns the reply and the time
	// from sending the credentials to the reply.
	attempt := func(user, cmd string) (string, time.Duration) {
		if user != "" {
			c.cmd("USER " + user)
		}
		start := time.Now()
		got := c.cmd(cmd)
		return got, time.Since(start)
	}
	tests := []struct {
		name, user, cmd, want string
		delayed               bool
		min                   time.Duration // fastest of the samples
	}{
		{name: "wrong password", user: "alice", cmd: "PASS wrong", want: authFailed, delayed: true},
		{name: "unknown user", user: "nobody", cmd: "PASS " + alicePass, want: authFailed, delayed: true},
		{name: "AUTH PLAIN wrong password", cmd: "AUTH PLAIN " + b64("\x00alice\x00wrong"), want: authFailed, delayed: true},
		{name: "AUTH PLAIN unknown user", cmd: "AUTH PLAIN " + b64("\x00nobody\x00x"), want: authFailed, delayed: true},
		{name: "AUTH PLAIN foreign authzid", cmd: "AUTH PLAIN " + b64("bob\x00alice\x00"+alicePass), want: authFailed, delayed: true},
		{name: "AUTH PLAIN malformed", cmd: "AUTH PLAIN =", want: authFailed, delayed: true},
	}
	// Interleaved samples; the fastest of each kind is compared, which
	// discounts scheduling noise on a loaded machine.
	const samples = 3
	for k := 0; k < samples; k++ {
		for i := range tests {
			tt := &tests[i]
			if k > 0 && i > 1 {
				break // only the two compared below need several samples
			}
			got, d := attempt(tt.user, tt.cmd)
			if got != tt.want {
				t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
			}
			if tt.delayed && d < delay {
				t.Errorf("%s: reply after %v, want >= %v", tt.name, d, delay)
			}
			if k == 0 || d < tt.min {
				tt.min = d
			}
		}
	}
	if d := tests[0].min - tests[1].min; d > 100*time.Millisecond || d < -100*time.Millisecond {
		t.Errorf("wrong password took %v, unknown user %v: more than 100ms apart", tests[0].min, tests[1].min)
	}
	// A good password is not delayed.
	if got, d := attempt("alice", "PASS "+alicePass); got != aliceLoggedIn() || d >= delay {
		t.Errorf("successful login: %q after %v, want %q without the delay", got, d, aliceLoggedIn())
	}
}

func TestMaxConnections(t *testing.T) {
	ts := newTestServer(t, fixtureBackend(), serverOpts{configure: func(s *Server) { s.Limits.MaxConnections = 2 }})
	a := ts.dial(t)
	a.login("alice", alicePass)
	bc := ts.dial(t)

	for i := 0; i < 3; i++ {
		over := ts.dialRaw(t)
		if got, want := over.line(), "-ERR [SYS/TEMP] too many connections, try again later"; got != want {
			t.Fatalf("connection over the limit: %q, want %q", got, want)
		}
		over.expectClosed()
	}
	// The implicit-TLS listener shares the limit.
	over := dialAddr(t, ts.tlsAddr)
	if got, want := over.line(), "-ERR [SYS/TEMP] too many connections, try again later"; got != want {
		t.Fatalf("TLS connection over the limit: %q, want %q", got, want)
	}

	// Existing sessions go on.
	if got, want := a.cmd("STAT"), fmt.Sprintf("+OK 4 %d", fixtureTotal()); got != want {
		t.Errorf("existing session: %q, want %q", got, want)
	}
	bc.login("bob", bobPass)
	if got, want := bc.cmd("QUIT"), "+OK popbox signing off (0 messages left)"; got != want {
		t.Errorf("QUIT: %q, want %q", got, want)
	}
	bc.expectClosed()

	// A slot is free again once the session has ended.
	deadline := time.Now().Add(ioTimeout)
	for {
		c := ts.dialRaw(t)
		l := c.line()
		if strings.HasPrefix(l, "+OK") {
			break
		}
		c.close()
		if time.Now().After(deadline) {
			t.Fatalf("no slot freed after a session ended: %q", l)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
