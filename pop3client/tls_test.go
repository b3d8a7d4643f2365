package pop3client

import (
	"bufio"
	"crypto/tls"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/popbox/popbox/internal/testcert"
)

// testTLS makes a self-signed certificate for "localhost" and 127.0.0.1 and
// returns a server configuration and a client configuration trusting it.
func testTLS(t testing.TB) (server, client *tls.Config) {
	t.Helper()
	p, err := testcert.New("popbox pop3client test")
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{p.Cert}}, &tls.Config{RootCAs: p.Pool}
}

// tlsHandshake is a script action: the server side of the STLS handshake.
func tlsHandshake(cfg *tls.Config) func(net.Conn, *bufio.Reader) (net.Conn, *bufio.Reader, error) {
	return func(conn net.Conn, r *bufio.Reader) (net.Conn, *bufio.Reader, error) {
		if r.Buffered() > 0 {
			return conn, r, errors.New("client sent data before the handshake")
		}
		tc := tls.Server(conn, cfg)
		if err := tc.Handshake(); err != nil {
			return conn, r, err
		}
		return tc, bufio.NewReader(tc), nil
	}
}

func TestStartTLS(t *testing.T) {
	serverCfg, clientCfg := testTLS(t)
	t.Run("upgrade", func(t *testing.T) {
		t.Parallel()
		c := dialFake(t, greet, []step{
			{recv: "CAPA\r\n", send: "+OK\r\nSTLS\r\nTOP\r\n.\r\n"},
			{recv: "STLS\r\n", send: "+OK begin TLS negotiation\r\n", do: tlsHandshake(serverCfg)},
			{recv: "CAPA\r\n", send: "+OK\r\nTOP\r\nUSER\r\n.\r\n"},
			{recv: "QUIT\r\n", send: "+OK\r\n"},
		}, nil)
		ctx := testCtx(t)
		if _, ok := c.TLSConnectionState(); ok {
			t.Errorf("TLS state before STLS")
		}
		caps, err := c.Capabilities(ctx)
		if err != nil || !caps.Has("STLS") {
			t.Fatalf("CAPA: %v, %v", caps, err)
		}
		// Dial was given 127.0.0.1, which the certificate covers.
		if err := c.StartTLS(ctx, clientCfg); err != nil {
			t.Fatal(err)
		}
		state, ok := c.TLSConnectionState()
		if !ok || !state.HandshakeComplete {
			t.Errorf("no TLS state after STLS")
		}
		// RFC 2595 §4: the capabilities are asked again.
		caps, err = c.Capabilities(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(Capabilities{"TOP": {}, "USER": {}}, caps); diff != "" {
			t.Errorf("capabilities after STLS (-want +got):\n%s", diff)
		}
		if err := c.StartTLS(ctx, clientCfg); err == nil {
			t.Errorf("STLS twice succeeded")
		}
		if err := c.Quit(ctx); err != nil {
			t.Error(err)
		}
	})
	t.Run("injection refused", func(t *testing.T) {
		t.Parallel()
		// A man in the middle appends a reply to the +OK, hoping the
		// client reads it as if it came over TLS.
		c := dialFake(t, greet, []step{{recv: "STLS\r\n", send: "+OK\r\n+OK injected\r\n"}}, nil)
		checkProtocolError(t, c, c.StartTLS(testCtx(t), clientCfg))
	})
	t.Run("bad certificate", func(t *testing.T) {
		t.Parallel()
		// The client refuses the certificate; the fake's handshake fails
		// too, which is the point.
		handshake := func(conn net.Conn, r *bufio.Reader) (net.Conn, *bufio.Reader, error) {
			tls.Server(conn, serverCfg).Handshake()
			return conn, r, nil
		}
		c := dialFake(t, greet, []step{{recv: "STLS\r\n", send: "+OK\r\n", do: handshake, hangUp: true}}, nil)
		err := c.StartTLS(testCtx(t), &tls.Config{ServerName: "localhost"}) // system roots
		if err == nil {
			t.Fatal("STLS with an untrusted certificate succeeded")
		}
		if err := c.Noop(testCtx(t)); err == nil {
			t.Errorf("NOOP after a failed handshake succeeded")
		}
	})
	t.Run("server name unknown", func(t *testing.T) {
		t.Parallel()
		f := startFake(t, greet, nil)
		conn, err := net.Dial("tcp", f.addr)
		if err != nil {
			t.Fatal(err)
		}
		c, err := NewClient(conn, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.StartTLS(testCtx(t), &tls.Config{RootCAs: clientCfg.RootCAs}); err == nil {
			t.Errorf("STLS without a server name succeeded")
		}
	})
}

// TestDialTLS: implicit TLS (RFC 8314), the certificate checked against the
// host in the address.
func TestDialTLS(t *testing.T) {
	serverCfg, clientCfg := testTLS(t)
	l, err := tls.Listen("tcp", "127.0.0.1:0", serverCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	done := make(chan error, 1)
	go func() {
		conn, err := l.Accept()
		if err != nil {
			done <- err
			return
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(ioTimeout))
		conn.Write([]byte("+OK secure\r\n"))
		r := bufio.NewReader(conn)
		line, err := r.ReadString('\n')
		if err == nil && line != "QUIT\r\n" {
			err = errors.New("got " + line)
		}
		conn.Write([]byte("+OK\r\n"))
		done <- err
	}()
	ctx := testCtx(t)
	c, err := DialTLS(ctx, l.Addr().String(), clientCfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Greeting() != "secure" {
		t.Errorf("greeting %q", c.Greeting())
	}
	if _, ok := c.TLSConnectionState(); !ok {
		t.Errorf("no TLS state")
	}
	if err := c.Quit(ctx); err != nil {
		t.Error(err)
	}
	if err := <-done; err != nil {
		t.Errorf("server: %v", err)
	}
}
