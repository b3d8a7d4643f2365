package pop3client

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// ioTimeout bounds every network operation of the fake server and of the
// clients the tests make. It only catches hangs, so it is generous: the
// machine may be loaded.
const ioTimeout = 10 * time.Second

// step is one exchange of a scripted server.
type step struct {
	// recv is what the client must send next, byte for byte.
	recv string
	// quiet: after recv, nothing more may arrive for this long. It checks
	// a pipelining window: the client must wait for a reply first.
	quiet time.Duration
	// send is written after recv (and the quiet check).
	send string
	// sendMayFail: the client may close before send is written whole.
	sendMayFail bool
	// do runs after send, with the connection and its reader; it may
	// replace the connection (STLS) by returning a new one.
	do func(conn net.Conn, r *bufio.Reader) (net.Conn, *bufio.Reader, error)
	// hangUp closes the connection after this step.
	hangUp bool
	// stall sends nothing more and waits for the client to close.
	stall bool
}

// fakeServer serves one connection on 127.0.0.1 by following a script,
// byte-exact: what the client sends must be exactly the script's recv
// strings, in order, and nothing after the last one but a close.
type fakeServer struct {
	addr string
	done chan error
}

// startFake starts a scripted server. The test fails at cleanup if the
// client deviated from the script; register it before the client so that
// the client is closed first.
func startFake(t testing.TB, greeting string, script []step) *fakeServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeServer{addr: l.Addr().String(), done: make(chan error, 1)}
	go func() {
		f.done <- f.serve(l, greeting, script)
	}()
	t.Cleanup(func() {
		l.Close()
		select {
		case err := <-f.done:
			if err != nil {
				t.Errorf("fake server: %v", err)
			}
		case <-time.After(2 * ioTimeout):
			t.Errorf("fake server did not finish")
		}
	})
	return f
}

func (f *fakeServer) serve(l net.Listener, greeting string, script []step) error {
	l.(*net.TCPListener).SetDeadline(time.Now().Add(ioTimeout))
	conn, err := l.Accept()
	l.Close()
	if err != nil {
		return fmt.Errorf("accept: %w", err)
	}
	defer func() { conn.Close() }()
	conn.SetDeadline(time.Now().Add(ioTimeout))
	r := bufio.NewReader(conn)
	if _, err := io.WriteString(conn, greeting); err != nil {
		return fmt.Errorf("greeting: %w", err)
	}
	for i, st := range script {
		if st.recv != "" {
			got := make([]byte, len(st.recv))
			n, err := io.ReadFull(r, got)
			if err != nil || string(got) != st.recv {
				return fmt.Errorf("step %d: received %q (%v), want %q", i, got[:n], err, st.recv)
			}
		}
		if st.quiet > 0 {
			conn.SetReadDeadline(time.Now().Add(st.quiet))
			if extra, err := r.Peek(1); err == nil || r.Buffered() > 0 {
				return fmt.Errorf("step %d: client sent %q before the reply it must wait for", i, extra)
			} else if !errors.Is(err, os.ErrDeadlineExceeded) {
				return fmt.Errorf("step %d: quiet check: %w", i, err)
			}
			conn.SetDeadline(time.Now().Add(ioTimeout))
		}
		if st.send != "" {
			if _, err := io.WriteString(conn, st.send); err != nil && !st.sendMayFail {
				return fmt.Errorf("step %d: send: %w", i, err)
			}
		}
		if st.do != nil {
			if conn, r, err = st.do(conn, r); err != nil {
				return fmt.Errorf("step %d: %w", i, err)
			}
		}
		if st.hangUp {
			return nil
		}
		if st.stall {
			// Wait for the client to give up; what it sends is not checked.
			io.Copy(io.Discard, r)
			return nil
		}
	}
	// The script is done: the client may only close now.
	extra, err := io.ReadAll(io.LimitReader(r, 1024))
	if len(extra) > 0 {
		return fmt.Errorf("client sent %q after the script ended", extra)
	}
	if err != nil && !errors.Is(err, net.ErrClosed) && !isReset(err) {
		return fmt.Errorf("waiting for close: %w", err)
	}
	return nil
}

// isReset reports a connection error from the client's side closing, such
// as a reset when it closes with unread data.
func isReset(err error) bool {
	var ne *net.OpError
	return errors.As(err, &ne)
}

// dialFake starts a scripted server and connects a client to it. The client
// is closed at the end of the test, before the script is checked.
func dialFake(t testing.TB, greeting string, script []step, opts *Options) *Client {
	t.Helper()
	f := startFake(t, greeting, script)
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	c, err := Dial(ctx, f.addr, opts)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// testCtx is a context that ends with the test, with a deadline that only
// catches hangs.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	t.Cleanup(cancel)
	return ctx
}

// wire encodes a message as a RETR reply body the way a correct server does:
// lines byte-stuffed, then the terminator. msg must use CRLF and end in one.
func wire(msg string) string {
	var b bytes.Buffer
	for line := range bytes.Lines([]byte(msg)) {
		if line[0] == '.' {
			b.WriteByte('.')
		}
		b.Write(line)
	}
	b.WriteString(".\r\n")
	return b.String()
}
