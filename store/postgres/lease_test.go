package postgres

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/popbox/popbox/store"
)

// leaseHelperEnv makes the test binary, re-executed by TestLeaseKilledNode,
// a second node: it opens alice's maildrop in the database it names, says
// "locked", and holds it (renewing) until it is killed.
const leaseHelperEnv = "POPBOX_POSTGRES_LEASE_HELPER"

const testLease = time.Second

func leaseHelper(dsn string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := Open(ctx, dsn, Options{LeaseDuration: testLease, NodeID: "helper"})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	if _, err := s.Open(ctx, "alice"); err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("locked")
	// Hold the lease until killed; give up eventually should the parent
	// die without killing us.
	time.Sleep(time.Minute)
	os.Exit(0)
}

// die makes m's node behave, for m's lease, like a node that died or was
// cut off: it stops renewing the lease and releases nothing.
func die(m store.Maildrop) {
	md := m.(*maildrop)
	md.s.forget(md.lease)
}

func tctx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func mustDeliver(t testing.TB, s *Store, user, body string) store.MessageInfo {
	t.Helper()
	info, err := s.Deliver(tctx(t), user, strings.NewReader(body))
	if err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	return info
}

func mustOpen(t testing.TB, s *Store, user string) store.Maildrop {
	t.Helper()
	m, err := s.Open(tctx(t), user)
	if err != nil {
		t.Fatalf("Open(%s): %v", user, err)
	}
	return m
}

// wantInUse checks that s cannot open user's maildrop, at once.
func wantInUse(t testing.TB, s *Store, user string, when string) {
	t.Helper()
	start := time.Now()
	m, err := s.Open(tctx(t), user)
	if !errors.Is(err, store.ErrInUse) {
		if m != nil {
			m.Close()
		}
		t.Fatalf("%s: Open = %v, want ErrInUse", when, err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("%s: ErrInUse took %v, want it at once", when, d)
	}
}

// openWhenFree polls until s opens user's maildrop, failing after limit.
func openWhenFree(t testing.TB, s *Store, user string, limit time.Duration) (store.Maildrop, time.Duration) {
	t.Helper()
	start := time.Now()
	for {
		m, err := s.Open(tctx(t), user)
		if err == nil {
			return m, time.Since(start)
		}
		if !errors.Is(err, store.ErrInUse) {
			t.Fatalf("Open: %v", err)
		}
		if time.Since(start) > limit {
			t.Fatalf("still in use after %v: %v", limit, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func count(t testing.TB, s *Store, sql string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := s.pool.QueryRow(tctx(t), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// TestLeaseTwoNodes: two Stores on one database are two frontends. The
// lease keeps B out while A renews it; when A stops renewing (it died or
// was cut off), B gets in once the lease expires, and A's Commit, arriving
// late, deletes nothing.
func TestLeaseTwoNodes(t *testing.T) {
	dsn := newDatabase(t)
	week := 7 * 24 * time.Hour
	a := openStore(t, dsn, Options{LeaseDuration: testLease, NodeID: "node-a", Retention: week})
	b := openStore(t, dsn, Options{LeaseDuration: testLease, NodeID: "node-b", Retention: week})
	for i := range 3 {
		mustDeliver(t, b, "alice", fmt.Sprintf("message %d\n", i))
	}
	ma := mustOpen(t, a, "alice")
	wantInUse(t, b, "alice", "while A holds the lease")

	// A renews: B stays out for well over one lease duration.
	for end := time.Now().Add(testLease * 5 / 2); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		wantInUse(t, b, "alice", "while A renews")
	}

	die(ma)
	died := time.Now()
	wantInUse(t, b, "alice", "right after A died")
	mb, took := openWhenFree(t, b, "alice", testLease+time.Second)
	t.Logf("B got the mailbox %v after A stopped renewing (lease %v)", took.Round(time.Millisecond), testLease)
	if since := time.Since(died); since > testLease+time.Second {
		t.Errorf("B waited %v, want at most the lease %v plus a margin", since, testLease)
	}
	if n := len(mb.Messages()); n != 3 {
		t.Fatalf("B sees %d messages, want 3", n)
	}

	// A wakes up and commits: fenced off, nothing deleted, and B's lease
	// is untouched.
	err := ma.Commit([]int{0, 1})
	if !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("A's Commit after losing the lease = %v, want ErrLeaseLost", err)
	}
	if n := count(t, a, "SELECT count(*) FROM messages WHERE deleted_at IS NOT NULL"); n != 0 {
		t.Errorf("A's late Commit deleted %d messages", n)
	}
	wantInUse(t, a, "alice", "after A's failed Commit (B holds it)")

	// B's session goes on normally.
	if err := mb.Commit([]int{2}); err != nil {
		t.Fatalf("B's Commit: %v", err)
	}
	m := mustOpen(t, a, "alice")
	defer m.Close()
	if n := len(m.Messages()); n != 2 {
		t.Errorf("%d messages after B deleted one, want 2", n)
	}
}

// TestLeaseExpiredCommit: a lease that expired is lost even if nobody took
// it over yet: Commit refuses, deletes nothing, and the mailbox is free.
func TestLeaseExpiredCommit(t *testing.T) {
	s := openStore(t, newDatabase(t), Options{LeaseDuration: 300 * time.Millisecond})
	mustDeliver(t, s, "alice", "a\n")
	m := mustOpen(t, s, "alice")
	die(m)
	time.Sleep(500 * time.Millisecond)
	if err := m.Commit([]int{0}); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("Commit after expiry = %v, want ErrLeaseLost", err)
	}
	m2 := mustOpen(t, s, "alice")
	defer m2.Close()
	if n := len(m2.Messages()); n != 1 {
		t.Errorf("%d messages, want 1", n)
	}
}

// TestLeaseRenewalNoticesTakeover: when another holder's token replaces
// ours (as after a partition), the next renewal notices, and Commit is
// refused.
func TestLeaseRenewalNoticesTakeover(t *testing.T) {
	s := openStore(t, newDatabase(t), Options{LeaseDuration: 300 * time.Millisecond})
	mustDeliver(t, s, "alice", "a\n")
	m := mustOpen(t, s, "alice")
	l := m.(*maildrop).lease
	if _, err := s.pool.Exec(tctx(t), "UPDATE leases SET token = nextval('lease_tokens'), holder = 'intruder'"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for !l.lost.Load() {
		if time.Now().After(deadline) {
			t.Fatal("the renewer did not notice the lost lease")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := m.Commit([]int{0}); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("Commit = %v, want ErrLeaseLost", err)
	}
	if n := count(t, s, "SELECT count(*) FROM messages WHERE deleted_at IS NULL"); n != 1 {
		t.Errorf("%d live messages, want 1", n)
	}
	if n := count(t, s, "SELECT count(*) FROM leases WHERE holder = 'intruder'"); n != 1 {
		t.Errorf("the failed Commit released the other holder's lease")
	}
}

// TestStoreCloseReleasesLeases: a frontend shutting down gives its leases
// back, so users can log in elsewhere at once.
func TestStoreCloseReleasesLeases(t *testing.T) {
	dsn := newDatabase(t)
	a := openStore(t, dsn, Options{NodeID: "node-a"}) // the default 30 s lease
	b := openStore(t, dsn, Options{NodeID: "node-b"})
	mustDeliver(t, a, "alice", "a\n")
	m := mustOpen(t, a, "alice")
	wantInUse(t, b, "alice", "before A's shutdown")
	a.Close()
	mb := mustOpen(t, b, "alice")
	defer mb.Close()
	if err := m.Commit([]int{0}); err == nil {
		t.Error("Commit on a closed store succeeded")
	}
	if err := m.Close(); err != nil {
		t.Errorf("Close after the failed Commit: %v", err)
	}
}

// TestLeaseKilledNode: a frontend process killed with SIGKILL holds its
// mailbox only until its lease expires.
func TestLeaseKilledNode(t *testing.T) {
	dsn := newDatabase(t)
	b := openStore(t, dsn, Options{LeaseDuration: testLease, NodeID: "node-b"})
	mustDeliver(t, b, "alice", "a\n")

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), leaseHelperEnv+"="+dsn)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	t.Cleanup(func() {
		if !killed {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "locked\n" {
		t.Fatalf("helper said %q, %v", line, err)
	}
	// The helper renews from its own process.
	for end := time.Now().Add(testLease * 3 / 2); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
		wantInUse(t, b, "alice", "while the helper runs")
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	killed = true
	died := time.Now()
	m, took := openWhenFree(t, b, "alice", testLease+time.Second)
	defer m.Close()
	t.Logf("mailbox free %v after the holder was killed (lease %v)", took.Round(time.Millisecond), testLease)
	if since := time.Since(died); since > testLease+time.Second {
		t.Errorf("free after %v, want at most the lease %v plus a margin", since, testLease)
	}
}
