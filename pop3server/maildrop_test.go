package pop3server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// readRawMulti reads a status line and the multi-line body after it exactly
// as sent, stuffing and terminator included.
func readRawMulti(t *testing.T, c *testClient) string {
	t.Helper()
	var sb strings.Builder
	c.conn.SetReadDeadline(time.Now().Add(ioTimeout))
	for first := true; ; first = false {
		l, err := c.r.ReadString('\n')
		if err != nil {
			t.Fatalf("reading multi-line reply: %v after %.200q", err, sb.String())
		}
		sb.WriteString(l)
		if first && !strings.HasPrefix(l, "+OK") {
			return sb.String()
		}
		if !first && l == ".\r\n" {
			return sb.String()
		}
	}
}

func TestRETRWireBytes(t *testing.T) {
	tests := []struct {
		cmd  string
		want string
	}{
		{"RETR 1", "+OK 52 octets\r\nFrom: a@example.org\r\nSubject: one\r\n\r\nHello, world.\r\n.\r\n"},
		{"RETR 2", "+OK 85 octets\r\n" +
			"From: b@example.org\r\nSubject: two\r\n\r\n" +
			"..leading dot\r\nline 2\r\n...two dots\r\n..\r\nlast line\r\n.\r\n"},
		{"RETR 3", "+OK 43 octets\r\nFrom: c@example.org\r\nSubject: header only\r\n.\r\n"},
		{"RETR 4", "+OK 41 octets\r\nSubject: four\r\n\r\nbody 1\r\nbody 2\r\nbody 3\r\n.\r\n"},
		{"TOP 2 1", "+OK top of message follows\r\nFrom: b@example.org\r\nSubject: two\r\n\r\n..leading dot\r\n.\r\n"},
		{"TOP 2 4", "+OK top of message follows\r\nFrom: b@example.org\r\nSubject: two\r\n\r\n" +
			"..leading dot\r\nline 2\r\n...two dots\r\n..\r\n.\r\n"},
		{"TOP 3 0", "+OK top of message follows\r\nFrom: c@example.org\r\nSubject: header only\r\n.\r\n"},
	}
	ts := newTestServer(t, fixtureBackend(), serverOpts{})
	c := ts.dial(t)
	c.login("alice", alicePass)
	for _, tt := range tests {
		t.Run(tt.cmd, func(t *testing.T) {
			c := c.on(t)
			c.send(tt.cmd)
			if diff := cmp.Diff(tt.want, readRawMulti(t, c)); diff != "" {
				t.Errorf("%s (-want +got):\n%s", tt.cmd, diff)
			}
		})
	}
	// The announced sizes are the octets received, un-stuffed, without the
	// terminator (RFC 1939 §11).
	for n := 1; n <= len(fixture); n++ {
		list := c.cmd(fmt.Sprintf("LIST %d", n))
		retr := c.cmd(fmt.Sprintf("RETR %d", n))
		body := c.body()
		if want := fmt.Sprintf("+OK %d %d", n, len(body)); list != want {
			t.Errorf("LIST %d = %q, but RETR sent %d octets", n, list, len(body))
		}
		if want := fmt.Sprintf("+OK %d octets", len(body)); retr != want {
			t.Errorf("RETR %d = %q, but sent %d octets", n, retr, len(body))
		}
		if body != fixture[n-1].wire {
			t.Errorf("RETR %d body %q, want %q", n, body, fixture[n-1].wire)
		}
	}
}

// TestLargeMessages streams messages much larger than every buffer.
func TestLargeMessages(t *testing.T) {
	oneLine := strings.Repeat("x", 1<<20)                          // 1 MB line, no line end
	dotted := strings.Repeat(".dot line\nplain line\n\n", 100_000) // ~2 MB, a third stuffed
	mixed := strings.Repeat("a\r\nb\n.\r\n", 200_000)              // CRLF, LF, lone dots
	tests := []struct{ name, stored, wire string }{
		{"1 MB line", oneLine, oneLine + "\r\n"},
		{"2 MB dotted", dotted, strings.ReplaceAll(dotted, "\n", "\r\n")},
		{"mixed line ends", mixed, strings.Repeat("a\r\nb\r\n.\r\n", 200_000)},
	}
	b := newMemBackend()
	b.addUser("u", "p")
	for _, tt := range tests {
		b.add("u", tt.stored)
	}
	ts := newTestServer(t, b, serverOpts{})
	c := ts.dial(t)
	c.login("u", "p")
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := c.on(t)
			n := i + 1
			if got, want := c.cmd(fmt.Sprintf("LIST %d", n)), fmt.Sprintf("+OK %d %d", n, len(tt.wire)); got != want {
				t.Errorf("LIST = %q, want %q", got, want)
			}
			if got, want := c.cmd(fmt.Sprintf("RETR %d", n)), fmt.Sprintf("+OK %d octets", len(tt.wire)); got != want {
				t.Fatalf("RETR = %q, want %q", got, want)
			}
			if body := c.body(); body != tt.wire {
				t.Errorf("RETR body: %d octets, want %d (equal: %v)", len(body), len(tt.wire), body == tt.wire)
			}
			c.send(fmt.Sprintf("TOP %d 0", n))
			c.line()
			c.body()
		})
	}
}

func TestInUse(t *testing.T) {
	b := fixtureBackend()
	ts := newTestServer(t, b, serverOpts{})
	first := ts.dial(t)
	first.login("alice", alicePass)

	second := ts.dial(t)
	second.cmd("USER alice")
	if got, want := second.cmd("PASS "+alicePass), "-ERR [IN-USE] mailbox locked by another session"; got != want {
		t.Fatalf("second login: %q, want %q", got, want)
	}
	if got, want := second.cmd("STAT"), "-ERR STAT not valid before login"; got != want {
		t.Errorf("after IN-USE: %q, want %q", got, want)
	}
	// Also by AUTH.
	if got := second.cmd("AUTH PLAIN " + b64("\x00alice\x00"+alicePass)); !strings.HasPrefix(got, "-ERR [IN-USE]") {
		t.Errorf("AUTH PLAIN while locked: %q, want -ERR [IN-USE]", got)
	}
	// Another user is not affected.
	other := ts.dial(t)
	other.login("bob", bobPass)
	// The first session is not disturbed.
	if got, want := first.cmd("DELE 1"), "+OK message 1 deleted"; got != want {
		t.Errorf("first session: %q, want %q", got, want)
	}
	if got, want := first.cmd("QUIT"), "+OK popbox signing off (3 messages left)"; got != want {
		t.Errorf("QUIT: %q, want %q", got, want)
	}
	first.expectClosed()
	second.cmd("USER alice")
	if got, want := second.cmd("PASS "+alicePass), fmt.Sprintf("+OK logged in, 3 messages (%d octets)", fixtureTotal()-fixtureSize(1)); got != want {
		t.Errorf("login after the lock is released: %q, want %q", got, want)
	}
}

// TestNoCommitWithoutQUIT: every way a TRANSACTION session can end other
// than QUIT leaves the maildrop unchanged and closes it.
func TestNoCommitWithoutQUIT(t *testing.T) {
	tests := []struct {
		name      string
		configure func(*Server)
		end       func(t *testing.T, ts *testServer, c *testClient)
	}{
		{"client drops", nil, func(t *testing.T, ts *testServer, c *testClient) { c.close() }},
		{"client half-closes", nil, func(t *testing.T, ts *testServer, c *testClient) {
			c.conn.(interface{ CloseWrite() error }).CloseWrite()
			c.expectClosed()
		}},
		{"QUIT cut short", nil, func(t *testing.T, ts *testServer, c *testClient) { c.write("QUI"); c.close() }},
		{"Server.Close", nil, func(t *testing.T, ts *testServer, c *testClient) {
			ts.srv.Close()
			c.expectClosed()
		}},
		{"Shutdown deadline", nil, func(t *testing.T, ts *testServer, c *testClient) {
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			if err := ts.srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Shutdown = %v, want DeadlineExceeded", err)
			}
			c.expectClosed()
		}},
		{"idle timeout", func(s *Server) { s.Limits.IdleTimeout = 100 * time.Millisecond },
			func(t *testing.T, ts *testServer, c *testClient) { c.expectClosed() }},
		{"too many errors", func(s *Server) { s.Limits.MaxBadCommands = 2 },
			func(t *testing.T, ts *testServer, c *testClient) {
				c.cmd("BAD")
				c.cmd("BAD")
				if got, want := c.line(), "-ERR too many errors, closing connection"; got != want {
					t.Errorf("after 2 errors: %q, want %q", got, want)
				}
				c.expectClosed()
			}},
		{"QUIT after the first reply went unread", nil, func(t *testing.T, ts *testServer, c *testClient) {
			// The client resets the connection with QUIT unsent.
			c.conn.(interface{ SetLinger(int) error }).SetLinger(0)
			c.close()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := fixtureBackend()
			ts := newTestServer(t, b, serverOpts{configure: tt.configure})
			c := ts.dial(t)
			c.login("alice", alicePass)
			c.cmd("DELE 1")
			c.cmd("DELE 3")
			tt.end(t, ts, c)
			ev := b.waitEvents(t, 1)
			if diff := cmp.Diff([]memEvent{{User: "alice", Kind: "close"}}, ev); diff != "" {
				t.Errorf("maildrop events (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]string{"uid-1", "uid-2", "uid-3", "uid-4"}, b.uidls("alice")); diff != "" {
				t.Errorf("mailbox changed (-want +got):\n%s", diff)
			}
			if b.isLocked("alice") {
				t.Error("maildrop still locked")
			}
		})
	}
}

func TestSnapshot(t *testing.T) {
	b := fixtureBackend()
	ts := newTestServer(t, b, serverOpts{})
	c := ts.dial(t)
	c.login("alice", alicePass)
	uid := b.add("alice", "Subject: late\r\n\r\nnew mail\r\n")
	stat := fmt.Sprintf("+OK 4 %d", fixtureTotal())
	for _, st := range []struct{ cmd, want string }{
		{"STAT", stat},
		{"LIST 5", "-ERR no such message"},
		{"RETR 5", "-ERR no such message"},
		{"DELE 5", "-ERR no such message"},
	} {
		if got := c.cmd(st.cmd); got != st.want {
			t.Errorf("%s during the session: %q, want %q", st.cmd, got, st.want)
		}
	}
	c.send("UIDL")
	c.line()
	if got := c.bodyLines(); len(got) != 4 {
		t.Errorf("UIDL during the session lists %v, want the 4 snapshot messages", got)
	}
	c.cmd("DELE 2")
	c.cmd("QUIT")
	c.expectClosed()

	c = ts.dial(t)
	if got, want := c.login("alice", alicePass), fmt.Sprintf("+OK logged in, 4 messages (%d octets)",
		fixtureTotal()-fixtureSize(2)+len("Subject: late\r\n\r\nnew mail\r\n")); got != want {
		t.Errorf("next login: %q, want %q", got, want)
	}
	if got, want := c.cmd("UIDL 4"), "+OK 4 "+uid; got != want {
		t.Errorf("UIDL 4 = %q, want %q", got, want)
	}
}

func TestMessageGoneBehindOurBack(t *testing.T) {
	b := fixtureBackend()
	ts := newTestServer(t, b, serverOpts{})
	c := ts.dial(t)
	c.login("alice", alicePass)
	b.remove("alice", "uid-1")
	for _, cmd := range []string{"RETR 1", "TOP 1 0"} {
		if got, want := c.cmd(cmd), "-ERR [SYS/TEMP] message 1 is no longer available"; got != want {
			t.Errorf("%s = %q, want %q", cmd, got, want)
		}
	}
	if got, want := c.cmd("STAT"), fmt.Sprintf("+OK 4 %d", fixtureTotal()); got != want {
		t.Errorf("STAT = %q, want the snapshot %q", got, want)
	}
	c.cmd("DELE 1")
	c.cmd("DELE 2")
	if got, want := c.cmd("QUIT"), "+OK popbox signing off (2 messages left)"; got != want {
		t.Errorf("QUIT = %q, want %q", got, want)
	}
	if diff := cmp.Diff([]string{"uid-3", "uid-4"}, b.uidls("alice")); diff != "" {
		t.Errorf("mailbox (-want +got):\n%s", diff)
	}
}

// TestReadErrorMidMessage: once "+OK" is out, a storage error can only be
// reported by dropping the connection, so the client sees a truncated
// reply, never a wrong one.
func TestReadErrorMidMessage(t *testing.T) {
	b := fixtureBackend()
	b.setFault(func(b *memBackend) { b.readErr, b.readAfter = errors.New("disk error"), 10 })
	ts := newTestServer(t, b, serverOpts{})
	c := ts.dial(t)
	c.login("alice", alicePass)
	c.cmd("DELE 2")
	c.send("RETR 1")
	got, err := c.readUntilClosed()
	if err != nil {
		t.Fatal(err)
	}
	// Whatever arrived is a prefix of the right reply, never terminated.
	full := fmt.Sprintf("+OK %d octets\r\n", fixtureSize(1)) + fixture[0].wire + ".\r\n"
	if !strings.HasPrefix(full, got) || got == full {
		t.Errorf("after a read error got %q, want a strict prefix of %q", got, full)
	}
	if diff := cmp.Diff([]memEvent{{User: "alice", Kind: "close"}}, b.waitEvents(t, 1)); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

func TestConnInfo(t *testing.T) {
	b := fixtureBackend()
	ts := newTestServer(t, b, serverOpts{})
	plain := ts.dial(t)
	plain.login("bob", bobPass)
	stls := ts.dial(t)
	stls.starttls()
	stls.cmd("USER nobody")
	stls.cmd("PASS x")
	implicit := ts.dialTLS(t)
	implicit.cmd("AUTH PLAIN " + b64("\x00nobody\x00x"))

	infos := b.connInfos()
	if len(infos) != 3 {
		t.Fatalf("%d Authenticate calls, want 3", len(infos))
	}
	for i, want := range []struct {
		local string
		tls   bool
	}{{ts.addr, false}, {ts.addr, true}, {ts.tlsAddr, true}} {
		got := infos[i]
		if got.RemoteAddr == nil || !strings.HasPrefix(got.RemoteAddr.String(), "127.0.0.1:") {
			t.Errorf("call %d: RemoteAddr %v, want 127.0.0.1", i, got.RemoteAddr)
		}
		if got.LocalAddr == nil || got.LocalAddr.String() != want.local {
			t.Errorf("call %d: LocalAddr %v, want %s", i, got.LocalAddr, want.local)
		}
		if (got.TLS != nil) != want.tls {
			t.Errorf("call %d: TLS %v, want TLS %v", i, got.TLS != nil, want.tls)
		} else if got.TLS != nil && !got.TLS.HandshakeComplete {
			t.Errorf("call %d: TLS handshake not complete", i)
		}
	}
}

// TestSTLSInjection: commands pipelined after STLS in the same plaintext
// packet must not run inside the TLS session (CVE-2011-0411 class).
func TestSTLSInjection(t *testing.T) {
	tests := []struct{ name, injected string }{
		{"CAPA", "CAPA\r\n"},
		{"USER", "USER alice\r\n"},
		{"several", "CAPA\r\nUSER alice\r\nNOOP\r\n"},
		{"partial line", "CAP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ts := newTestServer(t, fixtureBackend(), serverOpts{})
			c := ts.dial(t)
			c.write("STLS\r\n" + tt.injected)
			if got, want := c.line(), "+OK begin TLS negotiation"; got != want {
				t.Fatalf("STLS: %q, want %q", got, want)
			}
			c.handshake()
			// PASS would succeed if an injected USER had been executed.
			if got, want := c.cmd("PASS "+alicePass), "-ERR USER first"; got != want {
				t.Errorf("first reply inside TLS: %q, want %q (an injected command was answered)", got, want)
			}
			if got, want := c.cmd("QUIT"), "+OK popbox signing off"; got != want {
				t.Errorf("QUIT inside TLS: %q, want %q", got, want)
			}
			c.expectClosed()
		})
	}
}

func TestSTLSHandshakeFailure(t *testing.T) {
	b := fixtureBackend()
	ts := newTestServer(t, b, serverOpts{})
	c := ts.dial(t)
	c.cmd("STLS")
	c.write("this is not a TLS ClientHello\r\n")
	if _, err := c.readUntilClosed(); err != nil {
		t.Fatalf("server did not close after a failed handshake: %v", err)
	}
	// The server carries on.
	ts.dial(t).login("alice", alicePass)
}

func TestPlaintextPolicy(t *testing.T) {
	const refused = "-ERR [AUTH] plaintext authentication disallowed on an unencrypted connection, use STLS first"
	const elsewhere = "192.0.2.7:40000"
	refusedSteps := []step{
		{send: "USER alice", want: refused},
		{send: "PASS " + alicePass, want: refused},
		{send: "AUTH PLAIN " + b64("\x00alice\x00"+alicePass), want: refused},
		{send: "AUTH PLAIN", want: refused},
		{send: "auth plain", want: refused},
		{send: "AUTH", want: "+OK", body: []string{}},
		{send: "CAPA", want: "+OK capability list follows", body: without(capaBeforeLogin, "USER", "SASL PLAIN LOGIN")},
		{send: "STLS", want: "+OK begin TLS negotiation", stls: true},
		{send: "USER alice", want: "+OK send PASS"},
		{send: "PASS " + alicePass, want: aliceLoggedIn()},
	}
	allowedSteps := []step{
		{send: "CAPA", want: "+OK capability list follows", body: capaBeforeLogin},
		{send: "USER alice", want: "+OK send PASS"},
		{send: "PASS " + alicePass, want: aliceLoggedIn()},
	}
	authAllowed := []step{
		{send: "AUTH PLAIN " + b64("\x00alice\x00"+alicePass), want: aliceLoggedIn()},
	}
	never := func(s *Server) { s.Plaintext = PlaintextNever }
	always := func(s *Server) { s.Plaintext = PlaintextAlways }
	tests := []struct {
		name      string
		configure func(*Server)
		remote    string // "": the real 127.0.0.1
		implicit  bool
		steps     []step
	}{
		{"never, loopback", never, "", false, refusedSteps},
		{"never, elsewhere", never, elsewhere, false, refusedSteps},
		{"never, implicit TLS", never, "", true, authAllowed},
		{"loopback policy, 127.0.0.1", nil, "", false, allowedSteps},
		{"loopback policy, 127.0.0.1, AUTH", nil, "", false, authAllowed},
		{"loopback policy, ::1", nil, "[::1]:40000", false, allowedSteps},
		{"loopback policy, elsewhere", nil, elsewhere, false, refusedSteps},
		{"loopback policy, elsewhere, implicit TLS", nil, elsewhere, true, authAllowed},
		{"always, elsewhere", always, elsewhere, false, allowedSteps},
		{"always, elsewhere, AUTH", always, elsewhere, false, authAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			opts := serverOpts{configure: tt.configure}
			if tt.remote != "" {
				opts.wrap = fromAddr(tt.remote)
			}
			ts := newTestServer(t, fixtureBackend(), opts)
			var c *testClient
			if tt.implicit {
				c = ts.dialTLS(t)
			} else {
				c = ts.dial(t)
			}
			for i, st := range tt.steps {
				if got := c.cmd(st.send); !matchReply(st.want, got) {
					t.Fatalf("step %d %q: %q, want %q", i, st.send, got, st.want)
				}
				if st.body != nil {
					if diff := cmp.Diff(st.body, c.bodyLines(), cmpopts.EquateEmpty()); diff != "" {
						t.Fatalf("step %d %q: body (-want +got):\n%s", i, st.send, diff)
					}
				}
				if st.stls {
					c.handshake()
				}
			}
		})
	}
}

// fromAddr makes a listener's connections report hostport as their remote
// address, as if the client were there.
func fromAddr(hostport string) func(net.Listener) net.Listener {
	addr, err := net.ResolveTCPAddr("tcp", hostport)
	if err != nil {
		panic(err)
	}
	return func(l net.Listener) net.Listener { return remoteAddrListener{l, addr} }
}

func TestPlaintextPolicyRefusalNamesSTLS(t *testing.T) {
	ts := newTestServer(t, fixtureBackend(), serverOpts{configure: func(s *Server) { s.Plaintext = PlaintextNever }})
	c := ts.dial(t)
	for _, cmd := range []string{"USER alice", "PASS x", "AUTH PLAIN " + b64("\x00alice\x00x")} {
		got := c.cmd(cmd)
		if !strings.HasPrefix(got, "-ERR [AUTH] ") || !strings.Contains(got, "STLS") {
			t.Errorf("%s: %q, want -ERR [AUTH] naming STLS", cmd, got)
		}
	}
}
