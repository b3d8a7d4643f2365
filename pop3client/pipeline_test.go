package pop3client

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const capaPipelining = "+OK\r\nUSER\r\nPIPELINING\r\n.\r\n"
const capaPlain = "+OK\r\nUSER\r\n.\r\n"

// TestLoginPipelined: with PIPELINING, USER and PASS leave in one write
// (the server sees both before it answers); without it, PASS waits for the
// reply to USER.
func TestLoginPipelined(t *testing.T) {
	c := dialFake(t, "+OK hi\r\n", []step{
		{recv: "CAPA\r\n", send: capaPipelining},
		{recv: "USER alice\r\nPASS s3cret pass\r\n", send: "+OK\r\n+OK logged in\r\n"},
	}, nil)
	ctx := testCtx(t)
	if _, err := c.Capabilities(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Login(ctx, "alice", "s3cret pass"); err != nil {
		t.Fatal(err)
	}

	c = dialFake(t, "+OK hi\r\n", []step{
		{recv: "CAPA\r\n", send: capaPlain},
		{recv: "USER alice\r\n", quiet: 100 * time.Millisecond, send: "+OK\r\n"},
		{recv: "PASS pw\r\n", send: "+OK\r\n"},
	}, nil)
	if _, err := c.Capabilities(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Login(ctx, "alice", "pw"); err != nil {
		t.Fatal(err)
	}
}

// TestLoginPipelinedError: both replies are read, the first -ERR is
// returned as *Error, and the session is still in step.
func TestLoginPipelinedError(t *testing.T) {
	c := dialFake(t, "+OK hi\r\n", []step{
		{recv: "CAPA\r\n", send: capaPipelining},
		{recv: "USER alice\r\nPASS pw\r\n", send: "+OK\r\n-ERR [AUTH] no\r\n"},
		{recv: "NOOP\r\n", send: "-ERR not logged in\r\n"},
	}, nil)
	ctx := testCtx(t)
	if _, err := c.Capabilities(ctx); err != nil {
		t.Fatal(err)
	}
	var pe *Error
	if err := c.Login(ctx, "alice", "pw"); !errors.As(err, &pe) || pe.Code != "AUTH" || pe.Command != "PASS" {
		t.Fatalf("Login = %v, want *Error PASS [AUTH]", err)
	}
	if err := c.Noop(ctx); !errors.As(err, &pe) || pe.Text != "not logged in" {
		t.Fatalf("NOOP after failed login = %v: session out of step", err)
	}
}

// TestListingsPipelined: UIDL and LIST in one write, both parsed.
func TestListingsPipelined(t *testing.T) {
	c := dialFake(t, "+OK hi\r\n", []step{
		{recv: "CAPA\r\n", send: capaPipelining},
		{recv: "UIDL\r\nLIST\r\n", send: "+OK\r\n1 aaa\r\n2 bbb\r\n.\r\n+OK 2 messages\r\n1 120\r\n2 300\r\n.\r\n"},
	}, nil)
	ctx := testCtx(t)
	if _, err := c.Capabilities(ctx); err != nil {
		t.Fatal(err)
	}
	uidls, sizes, err := c.Listings(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]MessageInfo{{Num: 1, UIDL: "aaa"}, {Num: 2, UIDL: "bbb"}}, uidls); d != "" {
		t.Errorf("uidls (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]MessageInfo{{Num: 1, Size: 120}, {Num: 2, Size: 300}}, sizes); d != "" {
		t.Errorf("sizes (-want +got):\n%s", d)
	}
}

// TestListingsLockStep: without PIPELINING, LIST waits for UIDL's reply.
func TestListingsLockStep(t *testing.T) {
	c := dialFake(t, "+OK hi\r\n", []step{
		{recv: "CAPA\r\n", send: capaPlain},
		{recv: "UIDL\r\n", quiet: 100 * time.Millisecond, send: "+OK\r\n1 aaa\r\n.\r\n"},
		{recv: "LIST\r\n", send: "+OK\r\n1 5\r\n.\r\n"},
	}, nil)
	ctx := testCtx(t)
	if _, err := c.Capabilities(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Listings(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestHangup sends QUIT and closes without waiting for the reply.
func TestHangup(t *testing.T) {
	c := dialFake(t, "+OK hi\r\n", []step{{recv: "QUIT\r\n", stall: true}}, nil)
	done := make(chan error, 1)
	go func() { done <- c.Hangup(testCtx(t)) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Hangup waited for the server's reply")
	}
	if err := c.Noop(testCtx(t)); err == nil {
		t.Error("the Client is still usable after Hangup")
	}
}

// TestListingsPipelinedAfterLogin: PIPELINING learnt before login still
// applies after it, when the capability cache has been dropped.
func TestListingsPipelinedAfterLogin(t *testing.T) {
	c := dialFake(t, "+OK hi\r\n", []step{
		{recv: "CAPA\r\n", send: capaPipelining},
		{recv: "USER a\r\nPASS b\r\n", send: "+OK\r\n+OK\r\n"},
		{recv: "UIDL\r\nLIST\r\n", send: "+OK\r\n.\r\n+OK\r\n.\r\n"},
	}, nil)
	ctx := testCtx(t)
	if _, err := c.Capabilities(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Login(ctx, "a", "b"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Listings(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestLoginAndListings: the whole set-up in one write; a failed login is
// reported as the login's error even though the listings were refused too.
func TestLoginAndListings(t *testing.T) {
	c := dialFake(t, "+OK hi\r\n", []step{
		{recv: "CAPA\r\n", send: capaPipelining},
		{recv: "USER a\r\nPASS b\r\nUIDL\r\nLIST\r\n", send: "+OK\r\n+OK\r\n+OK\r\n1 x\r\n.\r\n+OK\r\n1 9\r\n.\r\n"},
	}, nil)
	ctx := testCtx(t)
	if _, err := c.Capabilities(ctx); err != nil {
		t.Fatal(err)
	}
	uidls, sizes, err := c.LoginAndListings(ctx, "a", "b")
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]MessageInfo{{Num: 1, UIDL: "x"}}, uidls); d != "" {
		t.Errorf("uidls (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]MessageInfo{{Num: 1, Size: 9}}, sizes); d != "" {
		t.Errorf("sizes (-want +got):\n%s", d)
	}

	c = dialFake(t, "+OK hi\r\n", []step{
		{recv: "CAPA\r\n", send: capaPipelining},
		{recv: "USER a\r\nPASS b\r\nUIDL\r\nLIST\r\n", send: "+OK\r\n-ERR [AUTH] bad\r\n-ERR no\r\n-ERR no\r\n"},
	}, nil)
	if _, err := c.Capabilities(ctx); err != nil {
		t.Fatal(err)
	}
	var pe *Error
	if _, _, err := c.LoginAndListings(ctx, "a", "b"); !errors.As(err, &pe) || pe.Command != "PASS" || pe.Code != "AUTH" {
		t.Fatalf("failed login: %v, want the PASS [AUTH] error", err)
	}

	// A server that hangs up after the failed PASS: still the login error.
	c = dialFake(t, "+OK hi\r\n", []step{
		{recv: "CAPA\r\n", send: capaPipelining},
		{recv: "USER a\r\nPASS b\r\nUIDL\r\nLIST\r\n", send: "+OK\r\n-ERR [AUTH] bad\r\n", hangUp: true},
	}, nil)
	if _, err := c.Capabilities(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.LoginAndListings(ctx, "a", "b"); !errors.As(err, &pe) || pe.Command != "PASS" {
		t.Fatalf("failed login then hang-up: %v, want the PASS error", err)
	}
}
