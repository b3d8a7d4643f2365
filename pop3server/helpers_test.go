package pop3server

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/popbox/popbox/internal/testcert"
	"github.com/popbox/popbox/pop3"
)

// ioTimeout bounds every network operation of the test clients. It only
// catches hangs, so it is generous: the machine may be loaded.
const ioTimeout = 10 * time.Second

// testCert is a self-signed ECDSA certificate for "localhost" and 127.0.0.1,
// made once per test binary.
var testCert = sync.OnceValues(func() (tls.Certificate, *x509.CertPool) {
	p, err := testcert.New("popbox pop3server test")
	if err != nil {
		panic(err)
	}
	return p.Cert, p.Pool
})

func serverTLSConfig() *tls.Config {
	cert, _ := testCert()
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
}

func clientTLSConfig() *tls.Config {
	_, pool := testCert()
	return &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12}
}

// serverOpts adjusts a test server.
type serverOpts struct {
	// configure runs on the Server before Serve. Set TLSConfig to nil to
	// run without STLS and without the implicit-TLS listener.
	configure func(*Server)
	// wrap wraps both listeners, e.g. to disguise or count connections.
	wrap func(net.Listener) net.Listener
}

// testServer is a Server running on loopback: Serve on addr and, when it
// has a TLSConfig, ServeTLS on tlsAddr. It is closed at the end of the test
// and both Serve calls must then have returned ErrServerClosed.
type testServer struct {
	srv     *Server
	b       *memBackend
	addr    string
	tlsAddr string

	serveDone chan struct{} // closed when every Serve call has returned
	serveErrs []error
}

func newTestServer(t testing.TB, b *memBackend, opts serverOpts) *testServer {
	t.Helper()
	srv := &Server{
		Backend:          b,
		TLSConfig:        serverTLSConfig(),
		Hostname:         "mail.test",
		Implementation:   "popbox-test",
		AuthFailureDelay: -1,
		Limits:           Limits{IdleTimeout: 30 * time.Second, HandshakeTimeout: ioTimeout},
	}
	if opts.configure != nil {
		opts.configure(srv)
	}
	ts := &testServer{srv: srv, b: b, serveDone: make(chan struct{})}
	listen := func() net.Listener {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		if opts.wrap != nil {
			return opts.wrap(l)
		}
		return l
	}
	serves := []func(net.Listener) error{srv.Serve}
	ls := []net.Listener{listen()}
	ts.addr = ls[0].Addr().String()
	if srv.TLSConfig != nil {
		ls = append(ls, listen())
		serves = append(serves, srv.ServeTLS)
		ts.tlsAddr = ls[1].Addr().String()
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	for i, l := range ls {
		wg.Go(func() {
			err := serves[i](l)
			mu.Lock()
			ts.serveErrs = append(ts.serveErrs, err)
			mu.Unlock()
		})
	}
	go func() { wg.Wait(); close(ts.serveDone) }()
	t.Cleanup(func() {
		srv.Close()
		for _, l := range ls {
			l.Close()
		}
		for _, err := range ts.waitServe(t) {
			if !errors.Is(err, ErrServerClosed) {
				t.Errorf("Serve returned %v, want ErrServerClosed", err)
			}
		}
		if n := b.openReaders(); n != 0 {
			t.Errorf("%d message readers were not closed", n)
		}
	})
	return ts
}

// waitServe waits for every Serve call to return and gives their errors.
func (ts *testServer) waitServe(t testing.TB) []error {
	t.Helper()
	select {
	case <-ts.serveDone:
		return ts.serveErrs
	case <-time.After(ioTimeout):
		t.Fatalf("Serve did not return within %v", ioTimeout)
		return nil
	}
}

// testClient is one POP3 client connection. Every read and write has a
// deadline of ioTimeout. Its methods fail the test on any error, so call
// them from the test goroutine only.
type testClient struct {
	t        testing.TB
	conn     net.Conn
	r        *bufio.Reader
	greeting string
}

// dialRaw connects without reading the greeting.
func (ts *testServer) dialRaw(t testing.TB) *testClient {
	t.Helper()
	return dialAddr(t, ts.addr)
}

func dialAddr(t testing.TB, addr string) *testClient {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &testClient{t: t, conn: conn, r: bufio.NewReader(conn)}
}

// dial connects to the plain listener and checks the greeting.
func (ts *testServer) dial(t testing.TB) *testClient {
	t.Helper()
	c := ts.dialRaw(t)
	c.readGreeting()
	return c
}

// dialTLS connects to the implicit-TLS listener and checks the greeting.
func (ts *testServer) dialTLS(t testing.TB) *testClient {
	t.Helper()
	if ts.tlsAddr == "" {
		t.Fatal("server has no TLS listener")
	}
	c := dialAddr(t, ts.tlsAddr)
	c.handshake()
	c.readGreeting()
	return c
}

func (c *testClient) readGreeting() {
	c.t.Helper()
	c.greeting = c.line()
	if c.greeting != "+OK mail.test POP3 server ready" {
		c.t.Fatalf("greeting %q, want %q", c.greeting, "+OK mail.test POP3 server ready")
	}
}

// handshake starts TLS on the connection as a client.
func (c *testClient) handshake() {
	c.t.Helper()
	if n := c.r.Buffered(); n > 0 {
		c.t.Fatalf("%d bytes from the server pending before the TLS handshake", n)
	}
	tc := tls.Client(c.conn, clientTLSConfig())
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		c.t.Fatalf("TLS handshake: %v", err)
	}
	c.conn = tc
	c.r = bufio.NewReader(tc)
}

func (c *testClient) write(s string) {
	c.t.Helper()
	c.conn.SetWriteDeadline(time.Now().Add(ioTimeout))
	if _, err := io.WriteString(c.conn, s); err != nil {
		c.t.Fatalf("write %.40q: %v", s, err)
	}
}

// send writes one command line.
func (c *testClient) send(line string) {
	c.t.Helper()
	c.write(line + "\r\n")
}

// readLine reads one CRLF-terminated line and returns it without the CRLF.
func (c *testClient) readLine() (string, error) {
	c.conn.SetReadDeadline(time.Now().Add(ioTimeout))
	s, err := c.r.ReadString('\n')
	if err != nil {
		if s != "" {
			return s, errors.New("unterminated line " + strings.TrimSpace(s) + ": " + err.Error())
		}
		return "", err
	}
	if !strings.HasSuffix(s, "\r\n") {
		return s, errors.New("line not terminated by CRLF: " + s)
	}
	return strings.TrimSuffix(s, "\r\n"), nil
}

// line reads a status line (at most 512 octets with CRLF, RFC 2449 §4).
func (c *testClient) line() string {
	c.t.Helper()
	s, err := c.readLine()
	if err != nil {
		c.t.Fatalf("reading reply: %v", err)
	}
	if len(s)+2 > pop3.MaxResponseLine {
		c.t.Fatalf("reply line of %d octets exceeds %d", len(s)+2, pop3.MaxResponseLine)
	}
	return s
}

// cmd sends a command and returns the status line.
func (c *testClient) cmd(line string) string {
	c.t.Helper()
	c.send(line)
	return c.line()
}

// body reads the rest of a multi-line reply, un-stuffed, without the
// terminating line.
func (c *testClient) body() string {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(ioTimeout))
	b, err := io.ReadAll(pop3.NewDotReader(c.r))
	if err != nil {
		c.t.Fatalf("reading multi-line reply: %v (got %.200q)", err, b)
	}
	return string(b)
}

// bodyLines reads a multi-line body and splits it into lines, each of which
// must have ended in CRLF.
func (c *testClient) bodyLines() []string {
	c.t.Helper()
	return splitCRLF(c.t, c.body())
}

func splitCRLF(t testing.TB, s string) []string {
	t.Helper()
	lines := []string{}
	if s == "" {
		return lines
	}
	if !strings.HasSuffix(s, "\r\n") {
		t.Fatalf("multi-line body does not end in CRLF: %.200q", s)
	}
	for _, l := range strings.SplitAfter(s, "\r\n") {
		if l == "" {
			continue
		}
		if strings.ContainsAny(strings.TrimSuffix(l, "\r\n"), "\n") {
			t.Fatalf("bare LF in line %q", l)
		}
		lines = append(lines, strings.TrimSuffix(l, "\r\n"))
	}
	return lines
}

// login runs USER/PASS and expects success.
func (c *testClient) login(user, pass string) string {
	c.t.Helper()
	if got := c.cmd("USER " + user); got != "+OK send PASS" {
		c.t.Fatalf("USER %s: %q", user, got)
	}
	got := c.cmd("PASS " + pass)
	if !strings.HasPrefix(got, "+OK logged in") {
		c.t.Fatalf("PASS for %s: %q", user, got)
	}
	return got
}

// starttls runs STLS and the handshake.
func (c *testClient) starttls() {
	c.t.Helper()
	if got := c.cmd("STLS"); got != "+OK begin TLS negotiation" {
		c.t.Fatalf("STLS: %q", got)
	}
	c.handshake()
}

// expectClosed reads until the server closes the connection; it fails on
// any data or on a timeout. A reset counts as closed.
func (c *testClient) expectClosed() {
	c.t.Helper()
	if s, err := c.readUntilClosed(); err != nil {
		c.t.Fatalf("waiting for the server to close: %v", err)
	} else if s != "" {
		c.t.Fatalf("got %.200q, want the connection closed", s)
	}
}

// readUntilClosed returns everything the server sends until it closes;
// a timeout is an error.
func (c *testClient) readUntilClosed() (string, error) {
	c.conn.SetReadDeadline(time.Now().Add(ioTimeout))
	b, err := io.ReadAll(c.r)
	if err == nil || isReset(err) {
		return string(b), nil
	}
	return string(b), err
}

func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET)
}

func (c *testClient) close() { c.conn.Close() }

// on returns the client reporting failures to t, for use in a subtest.
func (c *testClient) on(t testing.TB) *testClient {
	cc := *c
	cc.t = t
	return &cc
}

// remoteAddrListener makes every accepted connection report addr as its
// remote address, to test the loopback policy from "elsewhere".
type remoteAddrListener struct {
	net.Listener
	addr net.Addr
}

func (l remoteAddrListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return remoteAddrConn{c, l.addr}, nil
}

type remoteAddrConn struct {
	net.Conn
	addr net.Addr
}

func (c remoteAddrConn) RemoteAddr() net.Addr { return c.addr }

// countingListener counts the Write calls made on accepted connections.
type countingListener struct {
	net.Listener
	writes *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{c, l.writes}, nil
}

type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}
