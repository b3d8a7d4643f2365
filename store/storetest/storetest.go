// Package storetest holds the contract tests every store.Store
// implementation must pass (Maildir now, PostgreSQL later), so that the
// POP3 server can rely on the same behaviour from each: exclusive session
// locks, snapshots isolated from concurrent delivery, deletion only by
// Commit, UIDLs that are stable, unique, well-formed and never reused, exact
// wire sizes (RFC 1939 §11), byte-identical content, safe concurrent
// delivery, and rejection of unusable user names. RunAdmin adds the
// contract of store.Admin: quotas, usage, retention of deleted mail with
// Purge and Restore, Expire and Import.
//
// The tests use only the store package's interfaces, so they cannot reach
// into a backend; backend-specific behaviour (crash recovery, foreign files,
// cross-process locking) is tested next to each backend.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/popbox/popbox/store"
)

// Run runs the contract tests as subtests of t. newStore is called once per
// subtest and must return a Store over fresh, empty storage.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		f    func(t *testing.T, s store.Store)
	}{
		{"EmptyMailbox", testEmptyMailbox},
		{"InvalidUser", testInvalidUser},
		{"LockExclusive", testLockExclusive},
		{"DeliverDuringSession", testDeliverDuringSession},
		{"CommitDeletesExactly", testCommitDeletesExactly},
		{"CommitBadIndex", testCommitBadIndex},
		{"CloseDeletesNothing", testCloseDeletesNothing},
		{"OpenBadIndex", testOpenBadIndex},
		{"UIDLStable", testUIDLStable},
		{"UIDLNotReused", testUIDLNotReused},
		{"WireSizes", testWireSizes},
		{"ConcurrentDeliver", testConcurrentDeliver},
		{"DeliverFailure", testDeliverFailure},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.f(t, newStore(t))
		})
	}
}

// timeout bounds every operation: a store that blocks fails instead of
// hanging the test binary.
const timeout = 20 * time.Second

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	return c
}

func deliver(t *testing.T, s store.Store, user, body string) store.MessageInfo {
	t.Helper()
	info, err := s.Deliver(ctx(t), user, strings.NewReader(body))
	if err != nil {
		t.Fatalf("Deliver(%q): %v", user, err)
	}
	return info
}

func open(t *testing.T, s store.Store, user string) store.Maildrop {
	t.Helper()
	m, err := s.Open(ctx(t), user)
	if err != nil {
		t.Fatalf("Open(%q): %v", user, err)
	}
	return m
}

func read(t *testing.T, m store.Maildrop, i int) []byte {
	t.Helper()
	rc, err := m.Open(i)
	if err != nil {
		t.Fatalf("Maildrop.Open(%d): %v", i, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read message %d: %v", i, err)
	}
	return b
}

// contents opens user's maildrop, returns every message body in order with
// the snapshot, and closes it.
func contents(t *testing.T, s store.Store, user string) ([]store.MessageInfo, []string) {
	t.Helper()
	m := open(t, s, user)
	defer m.Close()
	msgs := m.Messages()
	var bodies []string
	for i := range msgs {
		bodies = append(bodies, string(read(t, m, i)))
	}
	return msgs, bodies
}

// wireSize is the reference for RFC 1939's "exact size": the octets of the
// message with every bare LF turned into CRLF and a final CRLF added when
// the message does not end in LF (before byte-stuffing, without ".CRLF").
// It builds the wire form and measures it, independently of any counter.
func wireSize(body []byte) int64 {
	var w bytes.Buffer
	for i, c := range body {
		if c == '\n' && (i == 0 || body[i-1] != '\r') {
			w.WriteByte('\r')
		}
		w.WriteByte(c)
	}
	if len(body) > 0 && body[len(body)-1] != '\n' {
		w.WriteString("\r\n")
	}
	return int64(w.Len())
}

func checkUIDL(t *testing.T, u string) {
	t.Helper()
	// RFC 1939 §7: 1 to 70 characters in the range 0x21 to 0x7E.
	if len(u) < 1 || len(u) > 70 {
		t.Errorf("UIDL %q: length %d, want 1..70", u, len(u))
	}
	for i := 0; i < len(u); i++ {
		if u[i] < 0x21 || u[i] > 0x7e {
			t.Errorf("UIDL %q: octet %#x outside 0x21..0x7E", u, u[i])
		}
	}
}

func uidls(msgs []store.MessageInfo) []string {
	var out []string
	for _, m := range msgs {
		out = append(out, m.UIDL)
	}
	return out
}

func testEmptyMailbox(t *testing.T, s store.Store) {
	m := open(t, s, "nobody-yet")
	if n := len(m.Messages()); n != 0 {
		t.Errorf("new mailbox has %d messages, want 0", n)
	}
	if err := m.Commit(nil); err != nil {
		t.Errorf("Commit(nil): %v", err)
	}
}

func testInvalidUser(t *testing.T, s store.Store) {
	bad := []string{
		"", ".", "..", ".hidden", "a/b", "/abs", "a\x00b", "a\nb", "tab\there",
		"del\x7f", strings.Repeat("x", 256),
	}
	for _, u := range bad {
		if m, err := s.Open(ctx(t), u); !errors.Is(err, store.ErrInvalidUser) {
			t.Errorf("Open(%q) = %v, want ErrInvalidUser", u, err)
			if m != nil {
				m.Close()
			}
		}
		if _, err := s.Deliver(ctx(t), u, strings.NewReader("x\n")); !errors.Is(err, store.ErrInvalidUser) {
			t.Errorf("Deliver(%q) = %v, want ErrInvalidUser", u, err)
		}
	}
	good := []string{"alice", "bob@example.com", "first.last", "x-y_z+tag", strings.Repeat("x", 255)}
	for _, u := range good {
		info := deliver(t, s, u, "hello\n")
		msgs, _ := contents(t, s, u)
		if diff := cmp.Diff([]store.MessageInfo{info}, msgs); diff != "" {
			t.Errorf("user %q: messages (-delivered +listed):\n%s", u, diff)
		}
	}
}

func testLockExclusive(t *testing.T, s store.Store) {
	deliver(t, s, "alice", "one\n")
	m1 := open(t, s, "alice")

	start := time.Now()
	m2, err := s.Open(ctx(t), "alice")
	if !errors.Is(err, store.ErrInUse) {
		if m2 != nil {
			m2.Close()
		}
		t.Fatalf("second Open = %v, want ErrInUse", err)
	}
	// RFC 2449 §8.1.2 [IN-USE] is an immediate answer, not a wait.
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("second Open took %v, want an immediate ErrInUse", d)
	}

	other := open(t, s, "bob") // other mailboxes are not affected
	if err := other.Close(); err != nil {
		t.Errorf("Close bob: %v", err)
	}

	if err := m1.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := m1.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	m3 := open(t, s, "alice") // free after Close
	if err := m3.Commit(nil); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if err := m3.Close(); err != nil {
		t.Errorf("Close after Commit: %v", err)
	}
	if err := m3.Commit(nil); err != nil {
		t.Errorf("second Commit: %v", err)
	}
	m4 := open(t, s, "alice") // free after Commit
	if _, err := s.Open(ctx(t), "alice"); !errors.Is(err, store.ErrInUse) {
		t.Errorf("Open while reopened = %v, want ErrInUse", err)
	}
	m4.Close()
}

func testDeliverDuringSession(t *testing.T, s store.Store) {
	a := deliver(t, s, "alice", "first\n")
	b := deliver(t, s, "alice", "second\n")
	m := open(t, s, "alice")

	// Deliver must not wait for the session lock.
	type result struct {
		info store.MessageInfo
		err  error
	}
	done := make(chan result, 1)
	go func() {
		info, err := s.Deliver(ctx(t), "alice", strings.NewReader("third\n"))
		done <- result{info, err}
	}()
	var c store.MessageInfo
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatalf("Deliver during session: %v", r.err)
		}
		c = r.info
	case <-time.After(timeout):
		t.Fatal("Deliver blocked while a session held the maildrop")
	}

	want := []store.MessageInfo{a, b}
	if diff := cmp.Diff(want, m.Messages()); diff != "" {
		t.Errorf("snapshot changed by delivery (-want +got):\n%s", diff)
	}
	if got := string(read(t, m, 1)); got != "second\n" {
		t.Errorf("message 1 = %q", got)
	}
	// Committing the session must not lose the message delivered during it.
	if err := m.Commit([]int{0}); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	msgs, bodies := contents(t, s, "alice")
	if diff := cmp.Diff([]store.MessageInfo{b, c}, msgs); diff != "" {
		t.Errorf("next session (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"second\n", "third\n"}, bodies); diff != "" {
		t.Errorf("next session bodies (-want +got):\n%s", diff)
	}
}

func testCommitDeletesExactly(t *testing.T, s store.Store) {
	var infos []store.MessageInfo
	for i := range 5 {
		infos = append(infos, deliver(t, s, "alice", fmt.Sprintf("message %d\n", i)))
	}
	m := open(t, s, "alice")
	// Repeated indexes are harmless (a client cannot DELE twice, but the
	// store must not care).
	if err := m.Commit([]int{3, 1, 3}); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	msgs, bodies := contents(t, s, "alice")
	if diff := cmp.Diff([]store.MessageInfo{infos[0], infos[2], infos[4]}, msgs); diff != "" {
		t.Errorf("after Commit (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"message 0\n", "message 2\n", "message 4\n"}, bodies); diff != "" {
		t.Errorf("after Commit bodies (-want +got):\n%s", diff)
	}

	m = open(t, s, "alice")
	if err := m.Commit([]int{0, 1, 2}); err != nil {
		t.Fatalf("Commit all: %v", err)
	}
	if msgs, _ := contents(t, s, "alice"); len(msgs) != 0 {
		t.Errorf("after deleting all: %d messages left", len(msgs))
	}
}

func testCommitBadIndex(t *testing.T, s store.Store) {
	infos := []store.MessageInfo{deliver(t, s, "alice", "a\n"), deliver(t, s, "alice", "b\n")}
	m := open(t, s, "alice")
	if err := m.Commit([]int{0, 2}); !errors.Is(err, store.ErrNoSuchMessage) {
		t.Errorf("Commit([0 2]) = %v, want ErrNoSuchMessage", err)
	}
	m.Close()
	msgs, _ := contents(t, s, "alice")
	if diff := cmp.Diff(infos, msgs); diff != "" {
		t.Errorf("a failed Commit deleted something (-want +got):\n%s", diff)
	}
}

func testCloseDeletesNothing(t *testing.T, s store.Store) {
	infos := []store.MessageInfo{deliver(t, s, "alice", "a\n"), deliver(t, s, "alice", "b\n")}
	m := open(t, s, "alice")
	read(t, m, 0)
	if err := m.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// RFC 1939 §6: without QUIT in TRANSACTION, nothing is deleted.
	msgs, _ := contents(t, s, "alice")
	if diff := cmp.Diff(infos, msgs); diff != "" {
		t.Errorf("after Close (-want +got):\n%s", diff)
	}
}

func testOpenBadIndex(t *testing.T, s store.Store) {
	deliver(t, s, "alice", "a\n")
	m := open(t, s, "alice")
	defer m.Close()
	for _, i := range []int{-1, 1, 1000} {
		rc, err := m.Open(i)
		if !errors.Is(err, store.ErrNoSuchMessage) {
			t.Errorf("Open(%d) = %v, want ErrNoSuchMessage", i, err)
		}
		if rc != nil {
			rc.Close()
		}
	}
}

func testUIDLStable(t *testing.T, s store.Store) {
	var want []store.MessageInfo
	for i := range 4 {
		want = append(want, deliver(t, s, "alice", fmt.Sprintf("m%d\n", i)))
	}
	seen := map[string]bool{}
	for _, info := range want {
		checkUIDL(t, info.UIDL)
		if seen[info.UIDL] {
			t.Errorf("UIDL %q handed out twice", info.UIDL)
		}
		seen[info.UIDL] = true
	}
	for round := range 3 {
		msgs, bodies := contents(t, s, "alice")
		if diff := cmp.Diff(want, msgs); diff != "" {
			t.Errorf("round %d: snapshot is not the deliveries in order (-want +got):\n%s", round, diff)
		}
		if diff := cmp.Diff([]string{"m0\n", "m1\n", "m2\n", "m3\n"}, bodies); diff != "" {
			t.Errorf("round %d: bodies (-want +got):\n%s", round, diff)
		}
	}
	// Deleting one message renumbers the others but keeps their UIDLs.
	m := open(t, s, "alice")
	if err := m.Commit([]int{1}); err != nil {
		t.Fatal(err)
	}
	msgs, _ := contents(t, s, "alice")
	if diff := cmp.Diff([]string{want[0].UIDL, want[2].UIDL, want[3].UIDL}, uidls(msgs)); diff != "" {
		t.Errorf("UIDLs after deleting message 2 (-want +got):\n%s", diff)
	}
}

func testUIDLNotReused(t *testing.T, s store.Store) {
	used := map[string]bool{}
	note := func(info store.MessageInfo) {
		t.Helper()
		checkUIDL(t, info.UIDL)
		if used[info.UIDL] {
			t.Errorf("UIDL %q reused", info.UIDL)
		}
		used[info.UIDL] = true
	}
	for i := range 3 {
		note(deliver(t, s, "alice", fmt.Sprintf("m%d\n", i)))
	}
	// Delete the newest, then everything: a counter derived from the
	// highest remaining UIDL would hand the deleted ones out again.
	m := open(t, s, "alice")
	if err := m.Commit([]int{2}); err != nil {
		t.Fatal(err)
	}
	note(deliver(t, s, "alice", "m3\n"))
	m = open(t, s, "alice")
	if err := m.Commit([]int{0, 1, 2}); err != nil {
		t.Fatal(err)
	}
	note(deliver(t, s, "alice", "m4\n"))
	msgs, _ := contents(t, s, "alice")
	if len(msgs) != 1 {
		t.Fatalf("%d messages, want 1", len(msgs))
	}
}

// bigMessage is n octets of text lines with all kinds of line ends and no
// final newline, so every wire-size rule is exercised at scale.
func bigMessage(n int) []byte {
	var b bytes.Buffer
	ends := []string{"\n", "\r\n", "\r", "\n\n", "\r\n\r\n"}
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "line %d .dots %s", i, strings.Repeat("x", i%97))
		b.WriteString(ends[i%len(ends)])
	}
	b.Truncate(n)
	if b.Bytes()[n-1] == '\n' {
		b.Bytes()[n-1] = 'z'
	}
	return b.Bytes()
}

func testWireSizes(t *testing.T, s store.Store) {
	tests := []struct {
		name string
		body []byte
		want int64 // hand-computed, cross-checked against wireSize
	}{
		{"bare LF", []byte("a\nbc\n"), 7},
		{"CRLF", []byte("a\r\nbc\r\n"), 7},
		{"mixed", []byte("a\r\nb\nc\r\n\n"), 11},
		{"no final newline", []byte("a\nb"), 6},
		{"final CR only", []byte("a\r"), 4},
		{"bare CR inside", []byte("a\rb\n"), 5},
		{"only LF", []byte("\n"), 2},
		{"empty", []byte{}, 0},
		{"5 MB", bigMessage(5 << 20), -1},
	}
	var want []store.MessageInfo
	for _, tc := range tests {
		ref := wireSize(tc.body)
		if tc.want >= 0 && ref != tc.want {
			t.Fatalf("%s: reference wire size %d, hand-computed %d", tc.name, ref, tc.want)
		}
		info, err := s.Deliver(ctx(t), "alice", bytes.NewReader(tc.body))
		if err != nil {
			t.Fatalf("%s: Deliver: %v", tc.name, err)
		}
		if info.Size != ref {
			t.Errorf("%s: Deliver size %d, want %d", tc.name, info.Size, ref)
		}
		want = append(want, store.MessageInfo{UIDL: info.UIDL, Size: ref})
	}
	for round := range 2 { // fresh and reopened
		m := open(t, s, "alice")
		if diff := cmp.Diff(want, m.Messages()); diff != "" {
			t.Errorf("round %d: listed sizes (-want +got):\n%s", round, diff)
		}
		for i, tc := range tests {
			if got := read(t, m, i); !bytes.Equal(got, tc.body) {
				t.Errorf("round %d: %s: content differs (%d octets, want %d)", round, tc.name, len(got), len(tc.body))
			}
		}
		m.Close()
	}
}

func testConcurrentDeliver(t *testing.T, s store.Store) {
	const n = 20
	infos := make([]store.MessageInfo, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			body := fmt.Sprintf("From: sender%d\n\nbody %d %s\n", i, i, strings.Repeat("y", i*100))
			infos[i], errs[i] = s.Deliver(ctx(t), "alice", strings.NewReader(body))
		})
	}
	wg.Wait()
	want := map[string]store.MessageInfo{}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("Deliver %d: %v", i, errs[i])
		}
		body := fmt.Sprintf("From: sender%d\n\nbody %d %s\n", i, i, strings.Repeat("y", i*100))
		want[body] = infos[i]
	}
	msgs, bodies := contents(t, s, "alice")
	got := map[string]store.MessageInfo{}
	for i, b := range bodies {
		if _, dup := got[b]; dup {
			t.Errorf("message %q listed twice", b[:20])
		}
		got[b] = msgs[i]
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("concurrent deliveries (-delivered +listed):\n%s", diff)
	}
	seen := map[string]bool{}
	for _, m := range msgs {
		if seen[m.UIDL] {
			t.Errorf("UIDL %q listed twice", m.UIDL)
		}
		seen[m.UIDL] = true
	}
}

// failingReader yields some data, then an error, like a dropped LMTP
// connection.
type failingReader struct{ n int }

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, errors.New("connection lost")
	}
	k := min(len(p), r.n)
	for i := range k {
		p[i] = 'x'
	}
	r.n -= k
	return k, nil
}

func testDeliverFailure(t *testing.T, s store.Store) {
	if _, err := s.Deliver(ctx(t), "alice", &failingReader{n: 100 << 10}); err == nil {
		t.Error("Deliver from a failing reader succeeded")
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Deliver(cancelled, "alice", strings.NewReader("partial\n")); !errors.Is(err, context.Canceled) {
		t.Errorf("Deliver with cancelled context = %v, want context.Canceled", err)
	}
	ok := deliver(t, s, "alice", "whole\n")
	msgs, bodies := contents(t, s, "alice")
	if diff := cmp.Diff([]store.MessageInfo{ok}, msgs); diff != "" {
		t.Errorf("failed deliveries left something (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"whole\n"}, bodies); diff != "" {
		t.Errorf("bodies (-want +got):\n%s", diff)
	}
}
