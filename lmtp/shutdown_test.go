package lmtp

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func shutdownAsync(srv *Server, grace time.Duration) <-chan error {
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), grace)
		defer cancel()
		done <- srv.Shutdown(ctx)
	}()
	return done
}

func TestShutdownFinishesTransactions(t *testing.T) {
	st := newMemStore()
	ts := newTestServer(t, st, nil)
	idle := ts.hello(t)
	busy := ts.hello(t)
	busy.cmd("MAIL FROM:<" + sender + ">")
	busy.cmd("RCPT TO:<alice@example.org>")
	if got := last(busy.cmd("DATA")); !strings.HasPrefix(got, "354 ") {
		t.Fatalf("DATA: %q", got)
	}
	busy.send("Subject: in flight\r\n\r\n")

	start := time.Now()
	done := shutdownAsync(ts.srv, ioTimeout)

	// A session outside a transaction is told 421 and closed at once.
	if rest := idle.expectClosed(); len(rest) != 1 || !strings.HasPrefix(rest[0], "421 ") {
		t.Errorf("idle session got %q, want one 421", rest)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("idle session closed after %v, want at once", d)
	}
	if err := ts.served(t); !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve = %v, want ErrServerClosed", err)
	}
	if c, err := net.DialTimeout("tcp", ts.addr, time.Second); err == nil {
		c.Close()
		t.Error("a connection was accepted during Shutdown")
	}
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v with a transaction open", err)
	case <-time.After(100 * time.Millisecond):
	}

	// The transaction finishes and is answered; a pipelined MAIL after it
	// is refused, and the session is closed.
	busy.send("body\r\n.\r\nMAIL FROM:<" + sender + ">\r\n")
	if got := code(busy.line()); got != "250 2.0.0" {
		t.Errorf("DATA reply during Shutdown: %q", got)
	}
	for _, l := range busy.expectClosed() {
		if !strings.HasPrefix(l, "421 ") {
			t.Errorf("after the transaction: %q, want only 421", l)
		}
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Shutdown = %v", err)
		}
	case <-time.After(ioTimeout):
		t.Fatal("Shutdown did not return after the last session ended")
	}
	want := map[string][]string{"alice": {hdr(sender, "alice@example.org") + "Subject: in flight\n\nbody\n"}}
	if diff := cmp.Diff(want, st.contents()); diff != "" {
		t.Errorf("stored (-want +got):\n%s", diff)
	}
}

func TestShutdownDeadlineCancelsDeliveries(t *testing.T) {
	st := newMemStore()
	st.block = make(chan struct{}) // never closed: Deliver waits for its context
	st.started = make(chan string, 1)
	ts := newTestServer(t, st, nil)
	rc := ts.hello(t)
	rc.cmd("MAIL FROM:<" + sender + ">")
	rc.cmd("RCPT TO:<alice@example.org>")
	rc.cmd("DATA")
	rc.send("x\r\n.\r\n")
	select {
	case <-st.started:
	case <-time.After(ioTimeout):
		t.Fatal("Deliver was not called")
	}

	err := <-shutdownAsync(ts.srv, 200*time.Millisecond)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown = %v, want DeadlineExceeded", err)
	}
	// The client is never told 250; the MTA keeps the message.
	for _, l := range rc.expectClosed() {
		if strings.HasPrefix(l, "250") {
			t.Errorf("client got %q after a cancelled delivery", l)
		}
	}
	st.mu.Lock()
	ctxErrs := st.ctxErrs
	st.mu.Unlock()
	if len(ctxErrs) != 1 || !errors.Is(ctxErrs[0], context.Canceled) {
		t.Errorf("Deliver saw %v, want its context cancelled", ctxErrs)
	}
	if got := st.contents(); len(got) != 0 {
		t.Errorf("stored %q, want nothing", got)
	}
}
