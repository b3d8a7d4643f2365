package pop3server

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/popbox/popbox/proxyproto"
)

// The proxy in these tests is 127.0.0.1, the only trusted address; the
// clients it relays have documentation addresses (RFC 5737), and
// untrustedIP is a loopback client that connects directly.
const (
	proxyIP     = "127.0.0.1"
	untrustedIP = "127.0.0.4"
)

// proxyOpts puts both of a test server's listeners behind a
// proxyproto.Listener trusting proxyIP, with a header timeout long enough
// that only a test's own ending stops a header wait.
func proxyOpts(configure func(*Server)) serverOpts {
	return serverOpts{
		configure: configure,
		wrap: func(l net.Listener) net.Listener {
			return &proxyproto.Listener{
				Listener:      l,
				Trusted:       []netip.Prefix{netip.MustParsePrefix(proxyIP + "/32")},
				HeaderTimeout: 30 * time.Second,
			}
		},
	}
}

// relayed returns a PROXY header for a TCP client at src connecting to
// 198.51.100.1:110, or [2001:db8::1]:110 for an IPv6 client (§2.1: both
// addresses are of one family).
func relayed(src string) *proxyproto.Header {
	h := &proxyproto.Header{
		Command:     proxyproto.CommandProxy,
		Source:      netip.MustParseAddrPort(src),
		Destination: netip.MustParseAddrPort("198.51.100.1:110"),
	}
	if h.Source.Addr().Is6() {
		h.Destination = netip.MustParseAddrPort("[2001:db8::1]:110")
	}
	return h
}

// dialProxied connects to addr from the local address from, as a proxy
// would, and sends h in the given version (nil: no header) without
// reading anything.
func dialProxied(t testing.TB, addr, from string, h *proxyproto.Header, version int) *testClient {
	t.Helper()
	d := net.Dialer{Timeout: ioTimeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial from %s: %v", from, err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &testClient{t: t, conn: conn, r: bufio.NewReader(conn)}
	if h != nil {
		b, err := h.Format(version)
		if err != nil {
			t.Fatalf("formatting header: %v", err)
		}
		c.write(string(b))
	}
	return c
}

// attr returns the value of key in a slog text line, or "".
func attr(line, key string) string {
	for _, f := range strings.Fields(line) {
		if v, ok := strings.CutPrefix(f, key+"="); ok {
			return v
		}
	}
	return ""
}

// TestProxyClientAddress: the address a relayed session is known by, in
// the log lines fail2ban reads, the login line and ConnInfo, is the
// header's source; the proxy appears only as proxy=. Both header versions,
// and implicit TLS, where the header precedes the ClientHello.
func TestProxyClientAddress(t *testing.T) {
	var lb logBuffer
	ts := newTestServer(t, fixtureBackend(), proxyOpts(func(s *Server) {
		withLog(&lb)(s)
		s.Plaintext = PlaintextAlways // the USER/PASS policy has its own test
	}))

	v1 := dialProxied(t, ts.addr, proxyIP, relayed("192.0.2.7:40001"), 1)
	v1.readGreeting()
	v1.cmd("USER alice")
	if got := v1.cmd("PASS wrong"); got != authFailed {
		t.Fatalf("wrong password: %q", got)
	}
	v1.login("alice", alicePass)
	v1.cmd("QUIT")
	v1.expectClosed()

	v2 := dialProxied(t, ts.tlsAddr, proxyIP, relayed("[2001:db8::9]:40002"), 2)
	v2.handshake()
	v2.readGreeting()
	v2.login("bob", bobPass)
	v2.cmd("QUIT")
	v2.expectClosed()

	failed := lb.lines("login failed")
	if len(failed) != 1 || attr(failed[0], "remote_ip") != "192.0.2.7" || attr(failed[0], "remote") != "192.0.2.7:40001" {
		t.Errorf("login failed lines %q, want one with remote=192.0.2.7:40001 remote_ip=192.0.2.7", failed)
	}
	logins := lb.lines("login")
	wantIPs := []string{"192.0.2.7", "2001:db8::9"}
	if len(logins) != len(wantIPs) {
		t.Fatalf("login lines %q, want %d", logins, len(wantIPs))
	}
	for i, l := range logins {
		if got := attr(l, "remote_ip"); got != wantIPs[i] {
			t.Errorf("login line %q: remote_ip=%s, want %s", l, got, wantIPs[i])
		}
		if got := attr(l, "proxy"); !strings.HasPrefix(got, proxyIP+":") {
			t.Errorf("login line %q: proxy=%s, want the proxy's %s:port", l, got, proxyIP)
		}
	}
	ts.b.mu.Lock()
	defer ts.b.mu.Unlock()
	for i, info := range ts.b.infos {
		remote, local := "192.0.2.7:40001", "198.51.100.1:110"
		if i == len(ts.b.infos)-1 {
			remote, local = "[2001:db8::9]:40002", "[2001:db8::1]:110"
		}
		if info.RemoteAddr.String() != remote || info.LocalAddr.String() != local {
			t.Errorf("ConnInfo %d: remote %v, local %v; want %s, %s", i, info.RemoteAddr, info.LocalAddr, remote, local)
		}
	}
}

// TestProxyPerIPLimit: the per-address limit counts the clients the
// header names, not the one proxy they all come through.
func TestProxyPerIPLimit(t *testing.T) {
	var lb logBuffer
	ts := newTestServer(t, fixtureBackend(), proxyOpts(func(s *Server) {
		withLog(&lb)(s)
		s.Limits.MaxConnectionsPerIP = 2
		s.Limits.MaxUnauthenticatedPerIP = 2
	}))
	for i := range 2 {
		c := dialProxied(t, ts.addr, proxyIP, relayed(fmt.Sprintf("192.0.2.7:%d", 40000+i)), 2)
		c.readGreeting()
	}
	over := dialProxied(t, ts.addr, proxyIP, relayed("192.0.2.7:40009"), 2)
	if got, want := over.line(), "-ERR [SYS/TEMP] too many connections from your address"; got != want {
		t.Fatalf("third connection of 192.0.2.7: %q, want %q", got, want)
	}
	over.expectClosed()
	// The same proxy relaying another client is not affected.
	other := dialProxied(t, ts.addr, proxyIP, relayed("192.0.2.8:40000"), 2)
	other.readGreeting()

	refused := lb.lines("connection refused")
	if len(refused) != 1 || attr(refused[0], "remote_ip") != "192.0.2.7" {
		t.Errorf("refusal lines %q, want one with remote_ip=192.0.2.7", refused)
	}
}

// TestProxySlowHeader: a trusted peer that has not sent its header holds up
// only itself, not the accept loop: other connections are greeted at once.
func TestProxySlowHeader(t *testing.T) {
	ts := newTestServer(t, fixtureBackend(), proxyOpts(nil))
	slow := make([]*testClient, 3)
	for i := range slow {
		slow[i] = dialProxied(t, ts.addr, proxyIP, nil, 0)
	}
	start := time.Now()
	c := dialProxied(t, ts.addr, proxyIP, relayed("192.0.2.7:40000"), 1)
	c.readGreeting()
	direct, g := dialFrom(t, ts.addr, untrustedIP)
	if g != greeting {
		t.Fatalf("direct client's greeting %q", g)
	}
	direct.cmd("QUIT")
	// 30 s is the header timeout the slow ones would hold things up for.
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("greetings took %v behind connections waiting for their header", d)
	}
	// The slow ones are served once their header comes.
	for i, s := range slow {
		b, _ := relayed(fmt.Sprintf("192.0.2.9:%d", 40000+i)).Format(2)
		s.write(string(b))
		s.readGreeting()
	}
}

// TestProxyUntrustedHeader: from a peer that is not trusted a PROXY line is
// not a header but a command, and a bad one: the client cannot claim
// another address.
func TestProxyUntrustedHeader(t *testing.T) {
	var lb logBuffer
	ts := newTestServer(t, fixtureBackend(), proxyOpts(withLog(&lb)))
	c, g := dialFrom(t, ts.addr, untrustedIP)
	if g != greeting {
		t.Fatalf("greeting %q", g)
	}
	b, _ := relayed("192.0.2.66:40000").Format(1)
	c.write(string(b))
	if got := c.line(); !strings.HasPrefix(got, "-ERR ") {
		t.Errorf("PROXY line from an untrusted peer: %q, want -ERR", got)
	}
	c.cmd("USER alice")
	if got := c.cmd("PASS wrong"); got != authFailed {
		t.Fatalf("wrong password: %q", got)
	}
	failed := lb.lines("login failed")
	if len(failed) != 1 || attr(failed[0], "remote_ip") != untrustedIP || attr(failed[0], "proxy") != "" {
		t.Errorf("login failed lines %q, want one with remote_ip=%s and no proxy", failed, untrustedIP)
	}
}

// TestProxyBadHeader: a trusted peer whose header is invalid is closed
// without a word (nothing is written before the header is read), logged
// with the proxy as peer, not as remote_ip (fail2ban must not ban the
// proxy), and its connection count is given back.
func TestProxyBadHeader(t *testing.T) {
	var lb logBuffer
	ts := newTestServer(t, fixtureBackend(), proxyOpts(func(s *Server) {
		withLog(&lb)(s)
		s.Limits.MaxConnections = 1
	}))
	for range 3 {
		c := dialProxied(t, ts.addr, proxyIP, nil, 0)
		c.write("PROXY TCP4 192.0.2.7 nonsense\r\n")
		c.expectClosed()
	}
	waitFor(t, "connection count released", func() bool { return ts.srv.nconns.Load() == 0 })
	lines := lb.lines("PROXY protocol header failed, connection closed")
	if len(lines) != 3 {
		t.Fatalf("header failure lines %q, want 3", lines)
	}
	for _, l := range lines {
		if !strings.HasPrefix(attr(l, "peer"), proxyIP+":") || attr(l, "remote_ip") != "" || !strings.Contains(l, "level=WARN") {
			t.Errorf("header failure line %q: want a warning with peer=%s:port and no remote_ip", l, proxyIP)
		}
	}
	// With MaxConnections 1, a leaked count would refuse this one.
	c := dialProxied(t, ts.addr, proxyIP, relayed("192.0.2.7:40000"), 2)
	c.readGreeting()
}

// TestProxyPlaintextPolicy: under PlaintextLoopback a relayed connection
// gets USER/PASS without TLS only when its header names a loopback client.
// LOCAL and UNKNOWN headers (and an address family without addresses)
// leave the connection with the proxy's own address, loopback here, which
// must not count: the client behind it may be anywhere.
func TestProxyPlaintextPolicy(t *testing.T) {
	ts := newTestServer(t, fixtureBackend(), proxyOpts(nil))
	const allowed, refused = "+OK send PASS", "-ERR [AUTH] " + plaintextRefused
	tests := []struct {
		name    string
		from    string
		header  *proxyproto.Header
		version int
		want    string
	}{
		{"PROXY from a loopback client", proxyIP, relayed("127.0.0.9:40000"), 2, allowed},
		{"PROXY from ::1", proxyIP, relayed("[::1]:40000"), 1, allowed},
		{"PROXY from a remote client", proxyIP, relayed("192.0.2.7:40000"), 2, refused},
		{"LOCAL", proxyIP, &proxyproto.Header{Command: proxyproto.CommandLocal}, 2, refused},
		{"UNKNOWN", proxyIP, &proxyproto.Header{Command: proxyproto.CommandProxy}, 1, refused},
		{"UNSPEC", proxyIP, &proxyproto.Header{Command: proxyproto.CommandProxy}, 2, refused},
		{"untrusted loopback client, no header", untrustedIP, nil, 0, allowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dialProxied(t, ts.addr, tt.from, tt.header, tt.version).on(t)
			c.readGreeting()
			if got := c.cmd("USER alice"); got != tt.want {
				t.Errorf("USER: %q, want %q", got, tt.want)
			}
			// STLS is the way for the refused: after it the password
			// is accepted.
			if tt.want == refused {
				c.starttls()
				c.login("alice", alicePass)
			}
			c.cmd("QUIT")
		})
	}
}

// TestProxyShutdownDuringHeader: Shutdown closes a connection still waiting
// for its header at once, as it does sessions not logged in, instead of
// waiting out the header timeout, and Serve returns.
func TestProxyShutdownDuringHeader(t *testing.T) {
	var lb logBuffer
	ts := newTestServer(t, fixtureBackend(), proxyOpts(withLog(&lb)))
	c := dialProxied(t, ts.addr, proxyIP, nil, 0)
	waitFor(t, "header read pending", func() bool {
		ts.srv.init() // for the happens-before edge with Serve's init
		ts.srv.mu.Lock()
		defer ts.srv.mu.Unlock()
		return len(ts.srv.handshaking) == 1
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	if err := ts.srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Shutdown took %v with a header read pending", d)
	}
	c.expectClosed()
	for _, err := range ts.waitServe(t) {
		if err != ErrServerClosed {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	}
	if n := ts.srv.nconns.Load(); n != 0 {
		t.Errorf("%d connections still counted after Shutdown", n)
	}
	// Logged at debug level, below the test logger's.
	if l := lb.lines("PROXY protocol header failed, connection closed"); len(l) != 0 {
		t.Errorf("header read ended by shutdown logged as %q, want nothing above debug", l)
	}
}

// waitFor polls cond until it holds, failing the test after ioTimeout.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(ioTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
