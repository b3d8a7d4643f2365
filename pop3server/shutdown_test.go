package pop3server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// shutdownAsync runs Shutdown with the given grace in a goroutine.
func shutdownAsync(ts *testServer, grace time.Duration) <-chan error {
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), grace)
		defer cancel()
		done <- ts.srv.Shutdown(ctx)
	}()
	return done
}

func TestShutdownWaitsForLoggedInSession(t *testing.T) {
	b := fixtureBackend()
	ts := newTestServer(t, b, serverOpts{})
	loggedIn := ts.dial(t)
	loggedIn.login("alice", alicePass)
	waiting := ts.dial(t) // AUTHORIZATION
	waiting.cmd("USER bob")
	stls := dialAddr(t, ts.tlsAddr) // in the TLS handshake

	start := time.Now()
	done := shutdownAsync(ts, 10*time.Second)

	// Sessions that have not logged in are closed at once.
	waiting.expectClosed()
	stls.expectClosed()
	if d := time.Since(start); d > time.Second {
		t.Errorf("unauthenticated sessions closed after %v, want at once", d)
	}
	// Serve and ServeTLS return ErrServerClosed; no new connections.
	for _, err := range ts.waitServe(t) {
		if !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	}
	if c, err := net.DialTimeout("tcp", ts.addr, time.Second); err == nil {
		c.Close()
		t.Error("a new connection was accepted during Shutdown")
	}
	// Shutdown waits for the logged-in session, which carries on normally.
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v while a logged-in session was open", err)
	case <-time.After(100 * time.Millisecond):
	}
	if got, want := loggedIn.cmd("STAT"), fmt.Sprintf("+OK 4 %d", fixtureTotal()); got != want {
		t.Errorf("STAT during Shutdown: %q, want %q", got, want)
	}
	loggedIn.send("RETR 2")
	loggedIn.line()
	if body := loggedIn.body(); body != fixture[1].wire {
		t.Errorf("RETR during Shutdown: %q", body)
	}
	loggedIn.cmd("DELE 1")
	if got, want := loggedIn.cmd("QUIT"), "+OK popbox signing off (3 messages left)"; got != want {
		t.Errorf("QUIT during Shutdown: %q, want %q", got, want)
	}
	loggedIn.expectClosed()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Shutdown = %v, want nil", err)
		}
	case <-time.After(ioTimeout):
		t.Fatal("Shutdown did not return after the last session ended")
	}
	if diff := cmp.Diff([]memEvent{{User: "alice", Kind: "commit", Deleted: []string{"uid-1"}}}, b.eventList()); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

func TestShutdownDeadline(t *testing.T) {
	b := fixtureBackend()
	ts := newTestServer(t, b, serverOpts{})
	c := ts.dialTLS(t)
	c.login("alice", alicePass)
	c.cmd("DELE 1")
	start := time.Now()
	err := <-shutdownAsync(ts, 200*time.Millisecond)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d < 190*time.Millisecond || d > 2*time.Second {
		t.Errorf("Shutdown took %v, want about 200ms", d)
	}
	c.expectClosed()
	if diff := cmp.Diff([]memEvent{{User: "alice", Kind: "close"}}, b.eventList()); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"uid-1", "uid-2", "uid-3", "uid-4"}, b.uidls("alice")); diff != "" {
		t.Errorf("mailbox changed (-want +got):\n%s", diff)
	}
}

// TestShutdownCutsAuthDelay: a session waiting out AuthFailureDelay has not
// logged in, so Shutdown does not wait for the delay.
func TestShutdownCutsAuthDelay(t *testing.T) {
	ts := newTestServer(t, fixtureBackend(), serverOpts{configure: func(s *Server) { s.AuthFailureDelay = time.Minute }})
	c := ts.dial(t)
	c.cmd("USER alice")
	c.send("PASS wrong")
	time.Sleep(50 * time.Millisecond) // let the server enter the delay
	start := time.Now()
	if err := <-shutdownAsync(ts, 10*time.Second); err != nil {
		t.Errorf("Shutdown = %v, want nil", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Shutdown took %v, want well under the 1 minute delay", d)
	}
	if _, err := c.readUntilClosed(); err != nil {
		t.Error(err)
	}
}

func TestShutdownWithoutSessions(t *testing.T) {
	ts := newTestServer(t, fixtureBackend(), serverOpts{})
	start := time.Now()
	if err := <-shutdownAsync(ts, 10*time.Second); err != nil {
		t.Errorf("Shutdown = %v, want nil", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Shutdown took %v", d)
	}
	if err := <-shutdownAsync(ts, time.Second); err != nil {
		t.Errorf("second Shutdown = %v, want nil", err)
	}
	if err := ts.srv.Close(); err != nil {
		t.Errorf("Close after Shutdown = %v", err)
	}
}

func TestServeAfterShutdown(t *testing.T) {
	for _, tt := range []struct {
		name  string
		close func(*Server) error
	}{
		{"Shutdown", func(s *Server) error { return s.Shutdown(context.Background()) }},
		{"Close", (*Server).Close},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := &Server{Backend: fixtureBackend(), TLSConfig: serverTLSConfig()}
			if err := tt.close(srv); err != nil {
				t.Fatal(err)
			}
			for _, serve := range []func(net.Listener) error{srv.Serve, srv.ServeTLS} {
				l, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				errc := make(chan error, 1)
				go func() { errc <- serve(l) }()
				select {
				case err := <-errc:
					if !errors.Is(err, ErrServerClosed) {
						t.Errorf("Serve after %s = %v, want ErrServerClosed", tt.name, err)
					}
				case <-time.After(ioTimeout):
					t.Errorf("Serve after %s did not return", tt.name)
				}
				l.Close()
			}
		})
	}
}

func TestServeTLSNeedsConfig(t *testing.T) {
	srv := &Server{Backend: fixtureBackend()}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(l) }()
	select {
	case err := <-errc:
		if err == nil || errors.Is(err, ErrServerClosed) {
			t.Errorf("ServeTLS without TLSConfig = %v, want a configuration error", err)
		}
	case <-time.After(ioTimeout):
		srv.Close()
		t.Fatal("ServeTLS without TLSConfig did not return")
	}
}

// TestCloseInterruptsBlockedWrite: Close and an expiring Shutdown must not
// wait for a client that stopped reading in the middle of a large RETR.
func TestCloseInterruptsBlockedWrite(t *testing.T) {
	tests := []struct {
		name string
		tls  bool
		stop func(*Server)
	}{
		{"Close", false, func(s *Server) { s.Close() }},
		{"Close, TLS", true, func(s *Server) { s.Close() }},
		{"Shutdown deadline, TLS", true, func(s *Server) {
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			s.Shutdown(ctx)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := newMemBackend()
			b.addUser("u", "p")
			b.add("u", string(make([]byte, 16<<20)))
			// Small fixed socket buffers (no autotuning) on both ends, so that
			// the server's send queue stays full once it blocks.
			ts := newTestServer(t, b, serverOpts{wrap: smallSendBuffer})
			addr := ts.addr
			if tt.tls {
				addr = ts.tlsAddr
			}
			c := dialAddr(t, addr)
			if err := c.conn.(*net.TCPConn).SetReadBuffer(16 << 10); err != nil {
				t.Fatal(err)
			}
			if tt.tls {
				c.handshake()
			}
			c.readGreeting()
			c.login("u", "p")
			c.send("RETR 1")
			c.line()
			time.Sleep(200 * time.Millisecond) // the server fills the socket buffers
			start := time.Now()
			tt.stop(ts.srv)
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("stopping took %v with a blocked writer", d)
			}
			if diff := cmp.Diff([]memEvent{{User: "u", Kind: "close"}}, b.eventList()); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
		})
	}
}

// smallSendBuffer fixes the send buffer of accepted connections at 16 KB.
func smallSendBuffer(l net.Listener) net.Listener { return sendBufListener{l} }

type sendBufListener struct{ net.Listener }

func (l sendBufListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		err = c.(*net.TCPConn).SetWriteBuffer(16 << 10)
	}
	return c, err
}
