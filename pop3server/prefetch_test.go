package pop3server

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// wantRETR is the whole reply to RETR of a message whose wire form (CRLF
// line ends, not stuffed) is wire.
func wantRETR(wire string) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "+OK %d octets\r\n", len(wire))
	for line := range strings.SplitAfterSeq(wire, "\r\n") {
		if strings.HasPrefix(line, ".") {
			sb.WriteByte('.')
		}
		sb.WriteString(line)
	}
	sb.WriteString(".\r\n")
	return sb.String()
}

// retr sends RETR n and checks the reply byte for byte.
func retr(t *testing.T, c *testClient, n int, wire string) {
	t.Helper()
	c.send(fmt.Sprintf("RETR %d", n))
	if diff := cmp.Diff(wantRETR(wire), readRawMulti(t, c)); diff != "" {
		t.Errorf("RETR %d (-want +got):\n%s", n, diff)
	}
}

// aliceSession starts a server on the fixture with opts and logs alice in,
// over TLS if tls.
func aliceSession(t *testing.T, opts serverOpts, tls bool) (*memBackend, *testServer, *testClient) {
	t.Helper()
	b := fixtureBackend()
	ts := newTestServer(t, b, opts)
	c := ts.dial
	if tls {
		c = ts.dialTLS
	}
	cl := c(t)
	cl.login("alice", alicePass)
	return b, ts, cl
}

// TestPrefetch: after a RETR the session reads the next message ahead
// while the client takes in the reply, and a RETR of it gets exactly the
// bytes it would get without that; the prepared reply is given back when it
// cannot be used.
func TestPrefetch(t *testing.T) {
	// Every message of the fixture is read once: RETR 2 to 4 are answered
	// from replies prepared while the client read the previous one (the
	// NOOP's reply shows that the session has had its chance to prepare).
	t.Run("lock-step download", func(t *testing.T) {
		b, ts, c := aliceSession(t, serverOpts{}, false)
		for n := 1; n <= len(fixture); n++ {
			retr(t, c, n, fixture[n-1].wire)
			c.cmd("NOOP")
			if got, want := b.openCount(), min(n+1, len(fixture)); got != want {
				t.Errorf("after RETR %d: %d messages opened, want %d", n, got, want)
			}
		}
		if got := ts.srv.prefetching.Load(); got != 0 {
			t.Errorf("%d prepared replies held after the last message", got)
		}
		c.cmd("QUIT")
	})

	// RETR of a message marked deleted is refused whatever is prepared; RSET
	// brings it back, with the same bytes.
	t.Run("DELE and RSET", func(t *testing.T) {
		b, _, c := aliceSession(t, serverOpts{}, false)
		retr(t, c, 1, fixture[0].wire)
		if got, want := c.cmd("DELE 2"), "+OK message 2 deleted"; got != want {
			t.Errorf("DELE 2 = %q, want %q", got, want)
		}
		if got, want := c.cmd("RETR 2"), "-ERR message 2 already deleted"; got != want {
			t.Errorf("RETR 2 = %q, want %q", got, want)
		}
		c.cmd("RSET")
		retr(t, c, 2, fixture[1].wire)
		c.cmd("NOOP")
		if got, want := b.openCount(), 3; got != want { // 1, 2 once, then 3 ahead
			t.Errorf("%d messages opened, want %d", got, want)
		}
	})

	// A client that skips a message gets the one it asks for; the reply
	// prepared for the skipped one is given back, and the last one at QUIT.
	t.Run("skipping", func(t *testing.T) {
		_, ts, c := aliceSession(t, serverOpts{}, false)
		retr(t, c, 1, fixture[0].wire)
		retr(t, c, 3, fixture[2].wire)
		c.cmd("NOOP")
		if got := ts.srv.prefetching.Load(); got != 1 {
			t.Errorf("%d prepared replies held, want 1 (message 4)", got)
		}
		c.cmd("QUIT")
		waitFor(t, "the session to give its prepared reply back", func() bool { return ts.srv.prefetching.Load() == 0 })
	})

	// A client that stops asking keeps no memory: the reply is dropped after
	// prefetchHold, and a later RETR reads the message again.
	t.Run("silence", func(t *testing.T) {
		b, ts, c := aliceSession(t, serverOpts{configure: func(s *Server) { s.prefetchHold = 50 * time.Millisecond }}, false)
		retr(t, c, 1, fixture[0].wire)
		waitFor(t, "message 2 to be prepared", func() bool { return b.openCount() == 2 })
		waitFor(t, "the prepared reply to be dropped", func() bool { return ts.srv.prefetching.Load() == 0 })
		retr(t, c, 2, fixture[1].wire)
		c.cmd("NOOP")
		if got, want := b.openCount(), 4; got != want { // 2 again, then 3 ahead
			t.Errorf("%d messages opened, want %d", got, want)
		}
		// The session is still under its idle timeout, not the hold.
		time.Sleep(100 * time.Millisecond)
		if got, want := c.cmd("NOOP"), "+OK"; got != want {
			t.Errorf("NOOP after a pause = %q, want %q", got, want)
		}
	})

	// At most prefetchLimit sessions hold a prepared reply; the others send
	// as usual.
	t.Run("limit", func(t *testing.T) {
		b := fixtureBackend()
		for _, m := range fixture {
			b.add("bob", m.stored)
		}
		ts := newTestServer(t, b, serverOpts{configure: func(s *Server) { s.prefetchLimit = 1 }})
		alice, bob := ts.dial(t), ts.dial(t)
		alice.login("alice", alicePass)
		bob.login("bob", bobPass)
		for n := 1; n <= len(fixture); n++ {
			for _, c := range []*testClient{alice, bob} {
				retr(t, c, n, fixture[n-1].wire)
				c.cmd("NOOP")
				if got := ts.srv.prefetching.Load(); got > 1 {
					t.Fatalf("%d prepared replies held, limit 1", got)
				}
			}
		}
		if got, want := b.openCount(), 2*len(fixture); got != want {
			t.Errorf("%d messages opened, want %d", got, want)
		}
	})

	// Messages too large to prepare, or that grow past the buffer when
	// stuffed, are sent the usual way.
	t.Run("large and dotted", func(t *testing.T) {
		b := newMemBackend()
		b.addUser("u", "p")
		small := "Subject: small\r\n\r\nhi\r\n"
		large := "Subject: large\r\n\r\n" + strings.Repeat("0123456789abcdef\r\n", maxPrefetchSize/18+1)
		dotted := strings.Repeat(".\r\n", (maxPrefetchSize-100)/3) // within the size, not once stuffed
		for _, m := range []string{small, large, small, dotted, small} {
			b.add("u", m)
		}
		ts := newTestServer(t, b, serverOpts{})
		c := ts.dial(t)
		c.login("u", "p")
		retr(t, c, 1, small)
		c.cmd("NOOP")
		if got := b.openCount(); got != 1 {
			t.Errorf("after RETR 1: %d messages opened, want 1: message 2 is too large to prepare", got)
		}
		retr(t, c, 2, large)
		retr(t, c, 3, small)
		retr(t, c, 4, dotted)
		c.cmd("NOOP")
		if got := ts.srv.prefetching.Load(); got != 1 {
			t.Errorf("%d prepared replies held, want 1 (message 5)", got)
		}
		retr(t, c, 5, small)
		if got, want := b.openCount(), 6; got != want { // message 4 twice
			t.Errorf("%d messages opened, want %d", got, want)
		}
	})

	// Over TLS the prepared reply goes through the TLS connection.
	t.Run("TLS", func(t *testing.T) {
		b, _, c := aliceSession(t, serverOpts{}, true)
		for n := 1; n <= len(fixture); n++ {
			retr(t, c, n, fixture[n-1].wire)
		}
		if got, want := b.openCount(), len(fixture); got != want {
			t.Errorf("%d messages opened, want %d", got, want)
		}
	})
}
