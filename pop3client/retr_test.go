package pop3client

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestRetrBodies checks that message bodies come out exactly: stuffing
// removed, line ends as sent, long lines whole. Each body is fetched twice,
// read with io.ReadAll and one byte at a time, and a NOOP after shows the
// session is still in step.
func TestRetrBodies(t *testing.T) {
	long := strings.Repeat("0123456789", 10<<10) // a 100 KB line
	tests := []struct {
		name string
		wire string // the reply body as the server sends it, terminator included
		want string
	}{
		{"simple", wire("Subject: a\r\n\r\nhello\r\n"), "Subject: a\r\n\r\nhello\r\n"},
		{"empty", ".\r\n", ""},
		{"stuffed dots", wire(".\r\n..\r\n.hidden\r\n...x\r\nmid.dle\r\n.\r\n"), ".\r\n..\r\n.hidden\r\n...x\r\nmid.dle\r\n.\r\n"},
		{"lone dot line first", "..\r\nafter\r\n.\r\n", ".\r\nafter\r\n"},
		{"100 KB line", wire("a: b\r\n\r\n" + long + "\r\n." + long + "\r\n"), "a: b\r\n\r\n" + long + "\r\n." + long + "\r\n"},
		{"bare LF kept", "line1\nline2\n..dot\n.\r\n", "line1\nline2\n.dot\n"},
		{"bare LF terminator", "x\n.\n", "x\n"},
		{"bare CR kept", "a\rb\r\n.\r\n", "a\rb\r\n"},
		{"binary", "a\x00b\xff\x80\r\n\x1b[0m\r\n.\r\n", "a\x00b\xff\x80\r\n\x1b[0m\r\n"},
		{"dot not at line start", "a.\r\nb..\r\n.\r\n", "a.\r\nb..\r\n"},
		{"CRLF dot CRLF inside a line", "x\r\n..\r\n.\r\n", "x\r\n.\r\n"},
		{"unstuffed dot line", ".x\r\n.\r\n", "x\r\n"}, // RFC 1939 §3: the first dot goes
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			reply := "+OK message follows\r\n" + tt.wire
			c := dialFake(t, greet, []step{
				{recv: "RETR 1\r\n", send: reply},
				{recv: "RETR 1\r\n", send: reply},
				{recv: "NOOP\r\n", send: "+OK\r\n"},
			}, nil)
			ctx := testCtx(t)
			got, err := readBody(c.Retr(ctx, 1))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("body (-want +got):\n%s", diff)
			}
			rc, err := c.Retr(ctx, 1)
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(iotest.OneByteReader(rc))
			if err != nil {
				t.Fatal(err)
			}
			rc.Close()
			if diff := cmp.Diff(tt.want, string(b)); diff != "" {
				t.Errorf("body read byte by byte (-want +got):\n%s", diff)
			}
			if err := c.Noop(ctx); err != nil {
				t.Errorf("NOOP after the body: %v", err)
			}
		})
	}
}

// TestRetrClose: closing a body early drains it, so the next command reads
// its own reply; reading after Close is an error.
func TestRetrClose(t *testing.T) {
	msg := strings.Repeat("line of a big message\r\n", 50000) // ~1 MB
	c := dialFake(t, greet, []step{
		{recv: "RETR 1\r\n", send: "+OK\r\n" + wire(msg)},
		{recv: "TOP 1 0\r\n", send: "+OK\r\n" + wire("h: v\r\n\r\n")},
		{recv: "NOOP\r\n", send: "+OK\r\n"},
	}, nil)
	ctx := testCtx(t)
	rc, err := c.Retr(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 10)
	if _, err := io.ReadFull(rc, buf); err != nil || string(buf) != "line of a " {
		t.Fatalf("first bytes %q, %v", buf, err)
	}
	if err := rc.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := rc.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := rc.Read(buf); err == nil {
		t.Errorf("Read after Close succeeded")
	}
	rc, err = c.Top(ctx, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	rc.Close() // unread: drained whole
	if err := c.Noop(ctx); err != nil {
		t.Errorf("NOOP: %v", err)
	}
}

// TestErrBusy: while a body is open, every command fails with ErrBusy
// without being sent, and works again after Close.
func TestErrBusy(t *testing.T) {
	c := dialFake(t, greet, []step{
		{recv: "RETR 1\r\n", send: "+OK\r\n" + wire("x\r\n")},
		{recv: "RETR 1\r\n", send: "+OK\r\n" + wire("y\r\n")},
		{recv: "NOOP\r\n", send: "+OK\r\n"},
		{recv: "QUIT\r\n", send: "+OK\r\n"},
	}, nil)
	ctx := testCtx(t)
	rc, err := c.Retr(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	busy := map[string]error{
		"NOOP": c.Noop(ctx),
		"RETR": func() error { _, err := c.Retr(ctx, 2); return err }(),
		"RetrMany": c.RetrMany(ctx, []int{2}, 1, func(int, io.Reader, error) error {
			t.Error("fn called")
			return nil
		}),
		"DeleMany": c.DeleMany(ctx, []int{1}, 1),
		"AUTH":     c.Auth(ctx, plainClient("u", "p")),
		"QUIT":     c.Quit(ctx), // refused, and the connection stays open
	}
	for name, err := range busy {
		if !errors.Is(err, ErrBusy) {
			t.Errorf("%s with a body open: %v, want ErrBusy", name, err)
		}
	}
	if b, err := io.ReadAll(rc); err != nil || string(b) != "x\r\n" {
		t.Errorf("body %q, %v", b, err)
	}
	rc.Close()
	// Inside RetrMany's callback too.
	err = c.RetrMany(ctx, []int{1}, 1, func(n int, body io.Reader, err error) error {
		if err := c.Noop(ctx); !errors.Is(err, ErrBusy) {
			t.Errorf("NOOP inside RetrMany: %v, want ErrBusy", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Noop(ctx); err != nil {
		t.Errorf("NOOP after Close: %v", err)
	}
	if err := c.Quit(ctx); err != nil {
		t.Errorf("QUIT: %v", err)
	}
}

// retrResult is what RetrMany's callback saw for one message.
type retrResult struct {
	N    int
	Body string
	Err  string
}

func collect(results *[]retrResult) func(int, io.Reader, error) error {
	return func(n int, body io.Reader, err error) error {
		r := retrResult{N: n}
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				return fmt.Errorf("message %d: error %v is not *Error", n, err)
			}
			r.Err = e.Error()
		}
		b, rerr := io.ReadAll(body)
		if rerr != nil {
			return rerr
		}
		r.Body = string(b)
		*results = append(*results, r)
		return nil
	}
}

func msgN(n int) string { return fmt.Sprintf("Subject: %d\r\n\r\n.line %d\r\n", n, n) }

// TestRetrManyPipelined checks the window: the server reads the first
// three commands and checks that no fourth comes before it replies; each
// reply frees exactly one place.
func TestRetrManyPipelined(t *testing.T) {
	const quiet = 100 * time.Millisecond
	reply := func(n int) string { return "+OK\r\n" + wire(msgN(n)) }
	c := dialFake(t, greet, []step{
		{recv: "RETR 1\r\nRETR 2\r\nRETR 3\r\n", quiet: quiet, send: reply(1)},
		{recv: "RETR 4\r\n", quiet: quiet, send: reply(2)},
		{recv: "RETR 5\r\n", quiet: quiet, send: reply(3) + reply(4) + reply(5)},
		{recv: "NOOP\r\n", send: "+OK\r\n"},
	}, nil)
	ctx := testCtx(t)
	var got []retrResult
	if err := c.RetrMany(ctx, []int{1, 2, 3, 4, 5}, 3, collect(&got)); err != nil {
		t.Fatal(err)
	}
	var want []retrResult
	for n := 1; n <= 5; n++ {
		want = append(want, retrResult{N: n, Body: msgN(n)})
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("results (-want +got):\n%s", diff)
	}
	if err := c.Noop(ctx); err != nil {
		t.Errorf("NOOP: %v", err)
	}
}

// TestRetrManyLockStep: window 1 sends each command only after the
// previous reply, and so does a window of 0 or less.
func TestRetrManyLockStep(t *testing.T) {
	for _, window := range []int{1, 0, -3} {
		t.Run(fmt.Sprint(window), func(t *testing.T) {
			t.Parallel()
			const quiet = 50 * time.Millisecond
			c := dialFake(t, greet, []step{
				{recv: "RETR 3\r\n", quiet: quiet, send: "+OK\r\n" + wire(msgN(3))},
				{recv: "RETR 1\r\n", quiet: quiet, send: "+OK\r\n" + wire(msgN(1))},
			}, nil)
			var got []retrResult
			if err := c.RetrMany(testCtx(t), []int{3, 1}, window, collect(&got)); err != nil {
				t.Fatal(err)
			}
			want := []retrResult{{N: 3, Body: msgN(3)}, {N: 1, Body: msgN(1)}}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("results (-want +got):\n%s", diff)
			}
		})
	}
}

// TestRetrManyErrorInMiddle: an -ERR for one message goes to fn and the
// others still arrive.
func TestRetrManyErrorInMiddle(t *testing.T) {
	c := dialFake(t, greet, []step{
		{recv: "RETR 1\r\nRETR 2\r\nRETR 3\r\nRETR 4\r\n", send: "+OK\r\n" + wire(msgN(1)) + "-ERR [SYS/TEMP] message 2 unreadable\r\n"},
		{recv: "RETR 5\r\n"},
		{recv: "RETR 6\r\n", send: "+OK\r\n" + wire(msgN(3)) + "+OK\r\n" + wire(msgN(4)) +
			"+OK\r\n" + wire(msgN(5)) + "+OK\r\n" + wire(msgN(6))},
	}, nil)
	var got []retrResult
	if err := c.RetrMany(testCtx(t), []int{1, 2, 3, 4, 5, 6}, 4, collect(&got)); err != nil {
		t.Fatal(err)
	}
	want := []retrResult{
		{N: 1, Body: msgN(1)},
		{N: 2, Err: "pop3client: RETR 2: -ERR [SYS/TEMP] message 2 unreadable"},
		{N: 3, Body: msgN(3)}, {N: 4, Body: msgN(4)}, {N: 5, Body: msgN(5)}, {N: 6, Body: msgN(6)},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("results (-want +got):\n%s", diff)
	}
}

// TestRetrManyStop: fn's error stops the loop; the replies in flight are
// drained (bodies fn never saw, and one it left half read) and the session
// stays usable.
func TestRetrManyStop(t *testing.T) {
	big := strings.Repeat("x", 200<<10) + "\r\n"
	c := dialFake(t, greet, []step{
		{recv: "RETR 1\r\nRETR 2\r\nRETR 3\r\n", send: "+OK\r\n" + wire(big)},
		{recv: "RETR 4\r\n", send: "+OK\r\n" + wire(big) + "-ERR gone\r\n" + "+OK\r\n" + wire(msgN(4))},
		{recv: "NOOP\r\n", send: "+OK\r\n"},
	}, nil)
	ctx := testCtx(t)
	stop := errors.New("disk full")
	var seen []int
	var kept io.Reader
	err := c.RetrMany(ctx, []int{1, 2, 3, 4, 5}, 3, func(n int, body io.Reader, err error) error {
		seen = append(seen, n)
		if n == 1 {
			return nil // leaves the body unread: drained
		}
		io.CopyN(io.Discard, body, 1000)
		kept = body
		return stop
	})
	if !errors.Is(err, stop) {
		t.Fatalf("RetrMany: %v, want fn's error", err)
	}
	if diff := cmp.Diff([]int{1, 2}, seen); diff != "" {
		t.Errorf("messages seen (-want +got):\n%s", diff)
	}
	if _, err := kept.Read(make([]byte, 1)); err == nil {
		t.Errorf("a body read after fn returned")
	}
	if err := c.Noop(ctx); err != nil {
		t.Errorf("NOOP after the stop: %v", err)
	}
}

// TestDeleMany: pipelined DELE, an -ERR among the replies, then QUIT.
func TestDeleMany(t *testing.T) {
	c := dialFake(t, greet, []step{
		{recv: "DELE 1\r\nDELE 2\r\n", quiet: 50 * time.Millisecond, send: "+OK\r\n"},
		{recv: "DELE 3\r\n", send: "-ERR [SYS/TEMP] message 2 already deleted\r\n+OK\r\n"},
		{recv: "DELE 4\r\n", send: "+OK\r\n"},
		{recv: "QUIT\r\n", send: "+OK 3 messages deleted\r\n"},
	}, nil)
	ctx := testCtx(t)
	err := c.DeleMany(ctx, []int{1, 2, 3, 4}, 2)
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("DeleMany: %v, want an *Error", err)
	}
	if diff := cmp.Diff(&Error{Command: "DELE 2", Code: "SYS/TEMP", Text: "message 2 already deleted"}, e); diff != "" {
		t.Errorf("error (-want +got):\n%s", diff)
	}
	if err := c.Quit(ctx); err != nil {
		t.Errorf("QUIT: %v", err)
	}
}

// TestQuitError: an -ERR to QUIT means the deletions failed; it is returned
// and the connection is closed anyway.
func TestQuitError(t *testing.T) {
	c := dialFake(t, greet, []step{
		{recv: "DELE 1\r\n", send: "+OK\r\n"},
		{recv: "QUIT\r\n", send: "-ERR [SYS/TEMP] some deleted messages not removed\r\n"},
	}, nil)
	ctx := testCtx(t)
	if err := c.Dele(ctx, 1); err != nil {
		t.Fatal(err)
	}
	err := c.Quit(ctx)
	var e *Error
	if !errors.As(err, &e) || e.Code != "SYS/TEMP" {
		t.Errorf("QUIT: %v, want *Error with SYS/TEMP", err)
	}
	if err := c.Noop(ctx); !errors.Is(err, net.ErrClosed) {
		t.Errorf("NOOP after QUIT: %v, want net.ErrClosed", err)
	}
}

// TestCancel: cancelling the context interrupts a blocked read at once and
// leaves the client unusable with an error saying so.
func TestCancel(t *testing.T) {
	t.Run("mid-RETR", func(t *testing.T) {
		t.Parallel()
		c := dialFake(t, greet, []step{{recv: "RETR 1\r\n", send: "+OK\r\nfirst line\r\n", stall: true}}, nil)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		rc, err := c.Retr(ctx, 1)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 100)
		n, err := rc.Read(buf)
		if err != nil || string(buf[:n]) != "first line\r\n" {
			t.Fatalf("first read %q, %v", buf[:n], err)
		}
		time.AfterFunc(50*time.Millisecond, cancel)
		start := time.Now()
		_, err = rc.Read(buf)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Read: %v, want context.Canceled", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("cancellation took %v", d)
		}
		if err := rc.Close(); !errors.Is(err, context.Canceled) {
			t.Errorf("Close: %v, want context.Canceled", err)
		}
		if err := c.Noop(testCtx(t)); !errors.Is(err, context.Canceled) {
			t.Errorf("NOOP after cancellation: %v, want the cancellation", err)
		}
	})
	t.Run("waiting for status", func(t *testing.T) {
		t.Parallel()
		c := dialFake(t, greet, []step{{recv: "STAT\r\n", stall: true}}, nil)
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(50*time.Millisecond, cancel)
		_, _, err := c.Stat(ctx)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("STAT: %v, want context.Canceled", err)
		}
	})
	t.Run("before the command", func(t *testing.T) {
		t.Parallel()
		// Nothing was sent, so the client is still usable.
		c := dialFake(t, greet, []step{{recv: "NOOP\r\n", send: "+OK\r\n"}}, nil)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := c.Noop(ctx); !errors.Is(err, context.Canceled) {
			t.Errorf("NOOP: %v, want context.Canceled", err)
		}
		if err := c.Noop(testCtx(t)); err != nil {
			t.Errorf("NOOP with a live context: %v", err)
		}
	})
	t.Run("after the command", func(t *testing.T) {
		t.Parallel()
		// A cancellation after the reply disturbs nothing.
		c := dialFake(t, greet, []step{
			{recv: "NOOP\r\n", send: "+OK\r\n"},
			{recv: "NOOP\r\n", send: "+OK\r\n"},
		}, nil)
		ctx, cancel := context.WithCancel(context.Background())
		if err := c.Noop(ctx); err != nil {
			t.Fatal(err)
		}
		cancel()
		if err := c.Noop(testCtx(t)); err != nil {
			t.Errorf("NOOP: %v", err)
		}
	})
	t.Run("Close from another goroutine", func(t *testing.T) {
		t.Parallel()
		c := dialFake(t, greet, []step{{recv: "STAT\r\n", stall: true}}, nil)
		time.AfterFunc(50*time.Millisecond, func() { c.Close() })
		if _, _, err := c.Stat(testCtx(t)); !errors.Is(err, net.ErrClosed) {
			t.Errorf("STAT: %v, want net.ErrClosed", err)
		}
	})
}

// TestDeadline: a stalling server makes the command fail at the deadline
// (Options.Timeout or the context's), while a slow but steady body does not.
func TestDeadline(t *testing.T) {
	t.Run("Timeout, status", func(t *testing.T) {
		t.Parallel()
		c := dialFake(t, greet, []step{{recv: "STAT\r\n", stall: true}}, &Options{Timeout: 200 * time.Millisecond})
		start := time.Now()
		_, _, err := c.Stat(context.Background())
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("STAT: %v, want os.ErrDeadlineExceeded", err)
		}
		if d := time.Since(start); d < 150*time.Millisecond || d > 5*time.Second {
			t.Errorf("STAT failed after %v, want about 200ms", d)
		}
		if err := c.Noop(context.Background()); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("NOOP after the timeout: %v", err)
		}
	})
	t.Run("context deadline", func(t *testing.T) {
		t.Parallel()
		c := dialFake(t, greet, []step{{recv: "LIST\r\n", send: "+OK\r\n1 100\r\n", stall: true}}, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		_, err := c.List(ctx)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("LIST: %v, want context.DeadlineExceeded", err)
		}
	})
	t.Run("Timeout, body stalls", func(t *testing.T) {
		t.Parallel()
		c := dialFake(t, greet, []step{{recv: "RETR 1\r\n", send: "+OK\r\npart\r\n", stall: true}}, &Options{Timeout: 200 * time.Millisecond})
		_, err := readBody(c.Retr(context.Background(), 1))
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("RETR: %v, want os.ErrDeadlineExceeded", err)
		}
	})
	t.Run("Timeout renewed while the body flows", func(t *testing.T) {
		t.Parallel()
		// Gaps well under the timeout, a total well over it; generous so
		// that a loaded machine (CI) does not stretch a gap past it.
		const chunks, gap, timeout = 8, 150 * time.Millisecond, time.Second
		trickle := func(conn net.Conn, r *bufio.Reader) (net.Conn, *bufio.Reader, error) {
			for i := range chunks {
				time.Sleep(gap)
				if _, err := fmt.Fprintf(conn, "line %d\r\n", i); err != nil {
					return conn, r, err
				}
			}
			_, err := io.WriteString(conn, ".\r\n")
			return conn, r, err
		}
		c := dialFake(t, greet, []step{{recv: "RETR 1\r\n", send: "+OK\r\n", do: trickle}}, &Options{Timeout: timeout})
		body, err := readBody(c.Retr(context.Background(), 1))
		if err != nil {
			t.Fatalf("a body arriving over %v with a %v Timeout: %v", chunks*gap, timeout, err)
		}
		if n := strings.Count(body, "\r\n"); n != chunks {
			t.Errorf("%d lines, want %d", n, chunks)
		}
	})
}
