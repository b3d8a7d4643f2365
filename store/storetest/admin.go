package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/popbox/popbox/store"
)

// AdminConfig is what RunAdmin asks a store to be configured with.
type AdminConfig struct {
	// Quota returns a user's limits; nil means no quotas.
	Quota func(ctx context.Context, user string) (store.Quota, error)
	// Retention is how long deleted messages are kept for Restore.
	Retention time.Duration
}

// RunAdmin runs the contract tests of store.Admin as subtests of t: quotas
// (exact under concurrency, deleted mail not counted, nothing left behind
// by a refusal), usage, retention of deleted mail with Purge and Restore
// (new UIDLs, safe beside an open session), Expire, and Import with given
// UIDLs. newStore is called once per subtest and must return a store over
// fresh, empty storage, configured as cfg says.
func RunAdmin(t *testing.T, newStore func(t *testing.T, cfg AdminConfig) store.Admin) {
	week := 7 * 24 * time.Hour
	tests := []struct {
		name string
		cfg  AdminConfig
		f    func(t *testing.T, s store.Admin)
	}{
		{"QuotaMessages", AdminConfig{Quota: quotaFor("alice", store.Quota{MaxMessages: 2})}, testQuotaMessages},
		{"QuotaBytes", AdminConfig{Quota: quotaFor("alice", store.Quota{MaxBytes: 100})}, testQuotaBytes},
		{"QuotaConcurrent", AdminConfig{Quota: quotaFor("alice", store.Quota{MaxMessages: 5})}, testQuotaConcurrent},
		{"QuotaLookupError", AdminConfig{Quota: quotaFor("alice", store.Quota{})}, testQuotaLookupError},
		{"QuotaExcludesDeleted", AdminConfig{Quota: quotaFor("alice", store.Quota{MaxMessages: 2}), Retention: week}, testQuotaExcludesDeleted},
		{"Usage", AdminConfig{Retention: week}, testUsage},
		{"RestoreSince", AdminConfig{Retention: week}, testRestoreSince},
		{"RestoreUIDL", AdminConfig{Retention: week}, testRestoreUIDL},
		{"RestoreDuringSession", AdminConfig{Retention: week}, testRestoreDuringSession},
		{"RestoreIgnoresQuota", AdminConfig{Quota: quotaFor("alice", store.Quota{MaxMessages: 1}), Retention: week}, testRestoreIgnoresQuota},
		{"Purge", AdminConfig{Retention: week}, testPurge},
		{"RetentionZero", AdminConfig{}, testRetentionZero},
		{"Expire", AdminConfig{Retention: week}, testExpire},
		{"ExpireInUse", AdminConfig{Retention: week}, testExpireInUse},
		{"ImportUIDLs", AdminConfig{Retention: week}, testImportUIDLs},
		{"ImportConflicts", AdminConfig{}, testImportConflicts},
		{"ImportInvalid", AdminConfig{}, testImportInvalid},
		{"UIDLsNeverReused", AdminConfig{Retention: week}, testAdminUIDLsNeverReused},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.f(t, newStore(t, tc.cfg))
		})
	}
}

// errQuotaLookup is what quotaFor's function returns for user "broken".
var errQuotaLookup = errors.New("quota lookup failed")

// quotaFor limits user to q; every other user is unlimited, except
// "broken", whose lookup fails.
func quotaFor(user string, q store.Quota) func(context.Context, string) (store.Quota, error) {
	return func(_ context.Context, u string) (store.Quota, error) {
		switch u {
		case user:
			return q, nil
		case "broken":
			return store.Quota{}, errQuotaLookup
		}
		return store.Quota{}, nil
	}
}

func usage(t *testing.T, s store.Admin, user string) store.Usage {
	t.Helper()
	u, err := s.Usage(ctx(t), user)
	if err != nil {
		t.Fatalf("Usage(%q): %v", user, err)
	}
	return u
}

// commit opens user's maildrop and deletes the messages at the given
// indexes.
func commit(t *testing.T, s store.Store, user string, del ...int) {
	t.Helper()
	m := open(t, s, user)
	if err := m.Commit(del); err != nil {
		t.Fatalf("Commit(%v): %v", del, err)
	}
}

func sum(infos ...store.MessageInfo) store.Usage {
	var u store.Usage
	for _, i := range infos {
		u.Messages++
		u.Bytes += i.Size
	}
	return u
}

func testQuotaMessages(t *testing.T, s store.Admin) {
	a := deliver(t, s, "alice", "one\n")
	b := deliver(t, s, "alice", "two\n")
	if _, err := s.Deliver(ctx(t), "alice", strings.NewReader("three\n")); !errors.Is(err, store.ErrQuota) {
		t.Fatalf("third delivery = %v, want ErrQuota", err)
	}
	msgs, bodies := contents(t, s, "alice")
	if diff := cmp.Diff([]store.MessageInfo{a, b}, msgs); diff != "" {
		t.Errorf("a refused delivery left something (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"one\n", "two\n"}, bodies); diff != "" {
		t.Errorf("bodies (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(sum(a, b), usage(t, s, "alice")); diff != "" {
		t.Errorf("usage (-want +got):\n%s", diff)
	}
	for i := range 4 { // other users are not limited
		deliver(t, s, "bob", fmt.Sprintf("bob %d\n", i))
	}
	commit(t, s, "alice", 0) // deleting makes room
	c := deliver(t, s, "alice", "three\n")
	if diff := cmp.Diff(sum(b, c), usage(t, s, "alice")); diff != "" {
		t.Errorf("usage after delete and delivery (-want +got):\n%s", diff)
	}
}

func testQuotaBytes(t *testing.T, s store.Admin) {
	sixty := strings.Repeat("x", 58) + "\n" // 60 octets on the wire
	a := deliver(t, s, "alice", sixty)
	if a.Size != 60 {
		t.Fatalf("size %d, want 60", a.Size)
	}
	for _, body := range []string{strings.Repeat("y", 39) + "\n", strings.Repeat("z", 1<<20)} {
		if _, err := s.Deliver(ctx(t), "alice", strings.NewReader(body)); !errors.Is(err, store.ErrQuota) {
			t.Errorf("delivery of %d octets over the limit = %v, want ErrQuota", wireSize([]byte(body)), err)
		}
	}
	b := deliver(t, s, "alice", strings.Repeat("w", 38)+"\n") // exactly to the limit
	if diff := cmp.Diff(store.Usage{Bytes: 100, Messages: 2}, usage(t, s, "alice")); diff != "" {
		t.Errorf("usage (-want +got):\n%s", diff)
	}
	if _, err := s.Deliver(ctx(t), "alice", strings.NewReader("a\n")); !errors.Is(err, store.ErrQuota) {
		t.Errorf("delivery to a full mailbox = %v, want ErrQuota", err)
	}
	msgs, _ := contents(t, s, "alice")
	if diff := cmp.Diff([]store.MessageInfo{a, b}, msgs); diff != "" {
		t.Errorf("refused deliveries left something (-want +got):\n%s", diff)
	}
}

func testQuotaConcurrent(t *testing.T, s store.Admin) {
	const n = 20
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, errs[i] = s.Deliver(ctx(t), "alice", strings.NewReader(fmt.Sprintf("message %d\n", i)))
		})
	}
	wg.Wait()
	ok := 0
	for i, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, store.ErrQuota):
			t.Errorf("delivery %d: %v", i, err)
		}
	}
	if ok != 5 {
		t.Errorf("%d deliveries succeeded under a limit of 5", ok)
	}
	if msgs, _ := contents(t, s, "alice"); len(msgs) != 5 {
		t.Errorf("%d messages stored under a limit of 5", len(msgs))
	}
	if u := usage(t, s, "alice"); u.Messages != 5 {
		t.Errorf("usage %+v, want 5 messages", u)
	}
}

func testQuotaLookupError(t *testing.T, s store.Admin) {
	_, err := s.Deliver(ctx(t), "broken", strings.NewReader("x\n"))
	if err == nil || errors.Is(err, store.ErrQuota) {
		t.Errorf("delivery with a failing quota lookup = %v, want a temporary error that is not ErrQuota", err)
	}
	if msgs, _ := contents(t, s, "broken"); len(msgs) != 0 {
		t.Errorf("%d messages stored", len(msgs))
	}
}

func testQuotaExcludesDeleted(t *testing.T, s store.Admin) {
	deliver(t, s, "alice", "a\n")
	deliver(t, s, "alice", "b\n")
	commit(t, s, "alice", 0, 1) // kept for restoring, but not counted
	c := deliver(t, s, "alice", "c\n")
	d := deliver(t, s, "alice", "d\n")
	if diff := cmp.Diff(sum(c, d), usage(t, s, "alice")); diff != "" {
		t.Errorf("usage (-want +got):\n%s", diff)
	}
}

func testUsage(t *testing.T, s store.Admin) {
	if diff := cmp.Diff(store.Usage{}, usage(t, s, "nobody")); diff != "" {
		t.Errorf("usage of a user without mail (-want +got):\n%s", diff)
	}
	if msgs, _ := contents(t, s, "nobody"); len(msgs) != 0 {
		t.Errorf("%d messages", len(msgs))
	}
	var infos []store.MessageInfo
	for i := range 4 {
		infos = append(infos, deliver(t, s, "alice", strings.Repeat("x", i*10)+"\n"))
	}
	if diff := cmp.Diff(sum(infos...), usage(t, s, "alice")); diff != "" {
		t.Errorf("usage after delivery (-want +got):\n%s", diff)
	}
	commit(t, s, "alice", 1, 2)
	if diff := cmp.Diff(sum(infos[0], infos[3]), usage(t, s, "alice")); diff != "" {
		t.Errorf("usage after delete (-want +got):\n%s", diff)
	}
	if _, err := s.Usage(ctx(t), "../x"); !errors.Is(err, store.ErrInvalidUser) {
		t.Errorf("Usage of a bad name = %v, want ErrInvalidUser", err)
	}
}

func restore(t *testing.T, s store.Admin, user string, opts store.RestoreOptions) []store.MessageInfo {
	t.Helper()
	infos, err := s.Restore(ctx(t), user, opts)
	if err != nil {
		t.Fatalf("Restore(%+v): %v", opts, err)
	}
	return infos
}

func testRestoreSince(t *testing.T, s store.Admin) {
	a := deliver(t, s, "alice", "a\n")
	b := deliver(t, s, "alice", "b\n")
	c := deliver(t, s, "alice", "c\n")
	commit(t, s, "alice", 0, 2)
	msgs, _ := contents(t, s, "alice")
	if diff := cmp.Diff([]store.MessageInfo{b}, msgs); diff != "" {
		t.Fatalf("deleted messages still listed (-want +got):\n%s", diff)
	}
	got := restore(t, s, "alice", store.RestoreOptions{Since: time.Hour})
	if len(got) != 2 {
		t.Fatalf("restored %d messages, want 2", len(got))
	}
	for i, old := range []store.MessageInfo{a, c} {
		checkUIDL(t, got[i].UIDL)
		if got[i].Size != old.Size {
			t.Errorf("restored message %d: size %d, want %d", i, got[i].Size, old.Size)
		}
		for _, prev := range []store.MessageInfo{a, b, c} {
			if got[i].UIDL == prev.UIDL {
				t.Errorf("restored message %d got the old UIDL %s: clients would not download it again", i, prev.UIDL)
			}
		}
	}
	if got[0].UIDL == got[1].UIDL {
		t.Errorf("restored messages share UIDL %s", got[0].UIDL)
	}
	msgs, bodies := contents(t, s, "alice")
	if diff := cmp.Diff([]store.MessageInfo{b, got[0], got[1]}, msgs); diff != "" {
		t.Errorf("after restore (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"b\n", "a\n", "c\n"}, bodies); diff != "" {
		t.Errorf("bodies after restore (-want +got):\n%s", diff)
	}
	if again := restore(t, s, "alice", store.RestoreOptions{}); len(again) != 0 {
		t.Errorf("second restore: %v", again)
	}
	if diff := cmp.Diff(sum(b, got[0], got[1]), usage(t, s, "alice")); diff != "" {
		t.Errorf("usage (-want +got):\n%s", diff)
	}
	if got := restore(t, s, "nobody", store.RestoreOptions{}); len(got) != 0 {
		t.Errorf("restore for a user without mail: %v", got)
	}
}

func testRestoreUIDL(t *testing.T, s store.Admin) {
	a := deliver(t, s, "alice", "a\n")
	deliver(t, s, "alice", "b\n")
	commit(t, s, "alice", 0, 1)
	if got := restore(t, s, "alice", store.RestoreOptions{UIDL: "no-such-uidl"}); len(got) != 0 {
		t.Errorf("restore of an unknown UIDL: %v", got)
	}
	got := restore(t, s, "alice", store.RestoreOptions{UIDL: a.UIDL, Since: time.Hour})
	if len(got) != 1 || got[0].Size != a.Size {
		t.Fatalf("restore by UIDL: %v", got)
	}
	_, bodies := contents(t, s, "alice")
	if diff := cmp.Diff([]string{"a\n"}, bodies); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func testRestoreDuringSession(t *testing.T, s store.Admin) {
	deliver(t, s, "alice", "a\n")
	b := deliver(t, s, "alice", "b\n")
	commit(t, s, "alice", 0)
	m := open(t, s, "alice")
	done := make(chan []store.MessageInfo, 1)
	go func() {
		infos, err := s.Restore(ctx(t), "alice", store.RestoreOptions{})
		if err != nil {
			t.Errorf("Restore during a session: %v", err)
		}
		done <- infos
	}()
	var got []store.MessageInfo
	select {
	case got = <-done:
	case <-time.After(timeout):
		t.Fatal("Restore waited for the POP3 session")
	}
	if len(got) != 1 {
		t.Fatalf("restored %v", got)
	}
	if diff := cmp.Diff([]store.MessageInfo{b}, m.Messages()); diff != "" {
		t.Errorf("snapshot changed by restore (-want +got):\n%s", diff)
	}
	if err := m.Commit([]int{0}); err != nil { // the session deletes b
		t.Fatal(err)
	}
	msgs, bodies := contents(t, s, "alice")
	if diff := cmp.Diff(got, msgs); diff != "" {
		t.Errorf("the session's commit lost the restored message (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"a\n"}, bodies); diff != "" {
		t.Errorf("bodies (-want +got):\n%s", diff)
	}
}

func testRestoreIgnoresQuota(t *testing.T, s store.Admin) {
	deliver(t, s, "alice", "a\n")
	commit(t, s, "alice", 0)
	b := deliver(t, s, "alice", "b\n")
	got := restore(t, s, "alice", store.RestoreOptions{})
	if len(got) != 1 {
		t.Fatalf("restore over quota: %v", got)
	}
	if diff := cmp.Diff(sum(b, got[0]), usage(t, s, "alice")); diff != "" {
		t.Errorf("usage (-want +got):\n%s", diff)
	}
	if _, err := s.Deliver(ctx(t), "alice", strings.NewReader("c\n")); !errors.Is(err, store.ErrQuota) {
		t.Errorf("delivery over quota after restore = %v, want ErrQuota", err)
	}
}

func testPurge(t *testing.T, s store.Admin) {
	deliver(t, s, "alice", "a\n")
	deliver(t, s, "bob", "b\n")
	commit(t, s, "alice", 0)
	commit(t, s, "bob", 0)
	now := time.Now()
	day := 24 * time.Hour
	for _, at := range []time.Time{now, now.Add(6 * day)} {
		if n, err := s.Purge(ctx(t), "alice", at); n != 0 || err != nil {
			t.Errorf("Purge within retention = %d, %v; want 0, nil", n, err)
		}
	}
	if n, err := s.Purge(ctx(t), "alice", now.Add(7*day+time.Minute)); n != 1 || err != nil {
		t.Errorf("Purge after retention = %d, %v; want 1, nil", n, err)
	}
	if got := restore(t, s, "alice", store.RestoreOptions{}); len(got) != 0 {
		t.Errorf("purged message restored: %v", got)
	}
	if n, err := s.Purge(ctx(t), "nobody", now.Add(8*day)); n != 0 || err != nil {
		t.Errorf("Purge of a user without mail = %d, %v", n, err)
	}
	if n, err := s.PurgeAll(ctx(t), now.Add(8*day)); n != 1 || err != nil {
		t.Errorf("PurgeAll = %d, %v; want bob's 1, nil", n, err)
	}
	if got := restore(t, s, "bob", store.RestoreOptions{}); len(got) != 0 {
		t.Errorf("purged message restored: %v", got)
	}
	if msgs, _ := contents(t, s, "alice"); len(msgs) != 0 {
		t.Errorf("purge brought back %d messages", len(msgs))
	}
}

func testRetentionZero(t *testing.T, s store.Admin) {
	deliver(t, s, "alice", "a\n")
	commit(t, s, "alice", 0)
	if got := restore(t, s, "alice", store.RestoreOptions{}); len(got) != 0 {
		t.Errorf("restored without retention: %v", got)
	}
	if n, err := s.Purge(ctx(t), "alice", time.Now()); n != 0 || err != nil {
		t.Errorf("Purge = %d, %v", n, err)
	}
}

func testExpire(t *testing.T, s store.Admin) {
	a := deliver(t, s, "alice", "a\n")
	b := deliver(t, s, "alice", "b\n")
	if n, err := s.Expire(ctx(t), "alice", time.Now().Add(-time.Hour)); n != 0 || err != nil {
		t.Errorf("Expire of nothing old = %d, %v", n, err)
	}
	if msgs, _ := contents(t, s, "alice"); len(msgs) != 2 {
		t.Fatalf("%d messages after expiring nothing", len(msgs))
	}
	if n, err := s.Expire(ctx(t), "alice", time.Now().Add(time.Hour)); n != 2 || err != nil {
		t.Errorf("Expire = %d, %v; want 2, nil", n, err)
	}
	if msgs, _ := contents(t, s, "alice"); len(msgs) != 0 {
		t.Errorf("%d messages after expiry", len(msgs))
	}
	if u := usage(t, s, "alice"); u != (store.Usage{}) {
		t.Errorf("usage after expiry: %+v", u)
	}
	// Expired mail went the way of deleted mail: restorable.
	got := restore(t, s, "alice", store.RestoreOptions{})
	if len(got) != 2 || got[0].Size != a.Size || got[1].Size != b.Size {
		t.Errorf("restore after expiry: %v", got)
	}
	if n, err := s.Expire(ctx(t), "nobody", time.Now().Add(time.Hour)); n != 0 || err != nil {
		t.Errorf("Expire of a user without mail = %d, %v", n, err)
	}
	n, busy, err := s.ExpireAll(ctx(t), time.Now().Add(time.Hour))
	if n != 2 || len(busy) != 0 || err != nil {
		t.Errorf("ExpireAll = %d, %v, %v; want the 2 restored messages", n, busy, err)
	}
}

func testExpireInUse(t *testing.T, s store.Admin) {
	a := deliver(t, s, "alice", "a\n")
	deliver(t, s, "bob", "b\n")
	m := open(t, s, "alice")
	if n, err := s.Expire(ctx(t), "alice", time.Now().Add(time.Hour)); !errors.Is(err, store.ErrInUse) || n != 0 {
		t.Errorf("Expire during a session = %d, %v; want 0, ErrInUse", n, err)
	}
	n, busy, err := s.ExpireAll(ctx(t), time.Now().Add(time.Hour))
	if n != 1 || err != nil || !slices.Equal(busy, []string{"alice"}) {
		t.Errorf("ExpireAll during alice's session = %d, %v, %v; want 1 (bob's), [alice], nil", n, busy, err)
	}
	if diff := cmp.Diff([]store.MessageInfo{a}, m.Messages()); diff != "" {
		t.Errorf("snapshot (-want +got):\n%s", diff)
	}
	m.Close()
	msgs, _ := contents(t, s, "alice")
	if diff := cmp.Diff([]store.MessageInfo{a}, msgs); diff != "" {
		t.Errorf("Expire changed a mailbox in use (-want +got):\n%s", diff)
	}
}

func importMsg(t *testing.T, s store.Admin, user, body, uidl string) store.MessageInfo {
	t.Helper()
	info, err := s.Import(ctx(t), user, strings.NewReader(body), uidl)
	if err != nil {
		t.Fatalf("Import(%q): %v", uidl, err)
	}
	return info
}

func testImportUIDLs(t *testing.T, s store.Admin) {
	given := []string{
		"000000015F000000", // popbox's format, an old epoch (an X-UIDL, say)
		"000000025F000000",
		"000000075F000000",
		"1234.5678",                           // Dovecot's %v.%u
		"<x/y:z,w%v>",                         // every byte a file name cannot hold as is
		"0000000a5f000000",                    // Dovecot's %08Xu%08Xv (lower case)
		strings.Repeat("~", 70),               // the longest
		"!",                                   // the shortest
		"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", // an X-UIDL
	}
	var want []store.MessageInfo
	var bodies []string
	for i, u := range given {
		body := fmt.Sprintf("imported %d\n", i)
		info := importMsg(t, s, "alice", body, u)
		if info.UIDL != u || info.Size != wireSize([]byte(body)) {
			t.Errorf("Import(%q) = %+v", u, info)
		}
		want = append(want, info)
		bodies = append(bodies, body)
	}
	d := deliver(t, s, "alice", "delivered\n")
	for _, u := range given {
		if d.UIDL == u {
			t.Errorf("delivery after import got the imported UIDL %s", u)
		}
	}
	for round := range 2 {
		msgs, got := contents(t, s, "alice")
		gotByUIDL := map[string]string{}
		for i, m := range msgs {
			gotByUIDL[m.UIDL] = got[i]
		}
		wantByUIDL := map[string]string{d.UIDL: "delivered\n"}
		for i, info := range want {
			wantByUIDL[info.UIDL] = bodies[i]
		}
		if diff := cmp.Diff(wantByUIDL, gotByUIDL); diff != "" {
			t.Errorf("round %d: listing (-want +got):\n%s", round, diff)
		}
		if len(msgs) != len(want)+1 {
			t.Errorf("round %d: %d messages, want %d", round, len(msgs), len(want)+1)
		}
		// In import order, whatever the UIDLs look like, then the
		// delivery.
		if diff := cmp.Diff(append(slices.Clone(given), d.UIDL), uidls(msgs)); diff != "" {
			t.Errorf("round %d: order (-want +got):\n%s", round, diff)
		}
	}
	// Deleted and restored, an imported message gets a new UIDL as well.
	m := open(t, s, "alice")
	var del int
	for i, msg := range m.Messages() {
		if msg.UIDL == "<x/y:z,w%v>" {
			del = i
		}
	}
	if err := m.Commit([]int{del}); err != nil {
		t.Fatal(err)
	}
	got := restore(t, s, "alice", store.RestoreOptions{UIDL: "<x/y:z,w%v>"})
	if len(got) != 1 || got[0].UIDL == "<x/y:z,w%v>" {
		t.Errorf("restore of an imported message: %v", got)
	}
}

func testImportConflicts(t *testing.T, s store.Admin) {
	a := importMsg(t, s, "alice", "a\n", "000000055F000000")
	lit := importMsg(t, s, "alice", "b\n", "uidl-b")
	d := deliver(t, s, "alice", "d\n")
	for _, u := range []string{a.UIDL, lit.UIDL, d.UIDL} {
		if _, err := s.Import(ctx(t), "alice", strings.NewReader("again\n"), u); !errors.Is(err, store.ErrUIDLConflict) {
			t.Errorf("Import of %s, already present = %v, want ErrUIDLConflict", u, err)
		}
	}
	// A UIDL the store handed out to a message since deleted is not in
	// the mailbox, and still refused, as another kind of conflict: a
	// client may have seen it.
	gone := deliver(t, s, "alice", "gone\n")
	commit(t, s, "alice", 3)
	_, err := s.Import(ctx(t), "alice", strings.NewReader("gone again\n"), gone.UIDL)
	if !errors.Is(err, store.ErrUIDLPossiblyUsed) || errors.Is(err, store.ErrUIDLConflict) {
		t.Errorf("Import of %s, deleted = %v, want ErrUIDLPossiblyUsed (and not ErrUIDLConflict)", gone.UIDL, err)
	}
	// The same UIDL in another mailbox is fine.
	importMsg(t, s, "bob", "a\n", a.UIDL)
	msgs, _ := contents(t, s, "alice")
	want := slices.Sorted(slices.Values([]string{a.UIDL, lit.UIDL, d.UIDL}))
	if diff := cmp.Diff(want, slices.Sorted(slices.Values(uidls(msgs)))); diff != "" {
		t.Errorf("refused imports left something (-want +got):\n%s", diff)
	}
}

func testImportInvalid(t *testing.T, s store.Admin) {
	for _, u := range []string{"", "a b", strings.Repeat("x", 71), "tab\t", "del\x7f", "ü"} {
		if _, err := s.Import(ctx(t), "alice", strings.NewReader("x\n"), u); !errors.Is(err, store.ErrInvalidUIDL) {
			t.Errorf("Import(%q) = %v, want ErrInvalidUIDL", u, err)
		}
	}
	if _, err := s.Import(ctx(t), "../x", strings.NewReader("x\n"), "ok"); !errors.Is(err, store.ErrInvalidUser) {
		t.Errorf("Import for a bad user name = %v, want ErrInvalidUser", err)
	}
	if msgs, _ := contents(t, s, "alice"); len(msgs) != 0 {
		t.Errorf("refused imports stored %d messages", len(msgs))
	}
}

// testAdminUIDLsNeverReused mixes every way a UIDL is made: deliveries,
// imports, restores after deletes and expiry, purges; none may repeat.
func testAdminUIDLsNeverReused(t *testing.T, s store.Admin) {
	used := map[string]bool{}
	note := func(infos ...store.MessageInfo) {
		t.Helper()
		for _, info := range infos {
			checkUIDL(t, info.UIDL)
			if used[info.UIDL] {
				t.Errorf("UIDL %q handed out twice", info.UIDL)
			}
			used[info.UIDL] = true
		}
	}
	for round := range 3 {
		note(deliver(t, s, "alice", fmt.Sprintf("round %d a\n", round)))
		note(importMsg(t, s, "alice", "imported\n", fmt.Sprintf("import-%d", round)))
		note(deliver(t, s, "alice", fmt.Sprintf("round %d b\n", round)))
		m := open(t, s, "alice")
		n := len(m.Messages())
		if err := m.Commit([]int{n - 1, n - 2}); err != nil { // the newest two
			t.Fatal(err)
		}
		note(restore(t, s, "alice", store.RestoreOptions{})...)
		if _, err := s.Expire(ctx(t), "alice", time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		note(restore(t, s, "alice", store.RestoreOptions{})...)
		commit(t, s, "alice", 0)
		if _, err := s.Purge(ctx(t), "alice", time.Now().Add(30*24*time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	msgs, _ := contents(t, s, "alice")
	seen := map[string]bool{}
	for _, m := range msgs {
		if !used[m.UIDL] || seen[m.UIDL] {
			t.Errorf("listed UIDL %s: handed out %v, listed twice %v", m.UIDL, used[m.UIDL], seen[m.UIDL])
		}
		seen[m.UIDL] = true
	}
}
