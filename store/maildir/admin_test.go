package maildir

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/popbox/popbox/store"
)

// adminStore is a Store with retention and a clock the test moves.
func adminStore(t *testing.T, opts Options) (*Store, string, *fakeClock) {
	t.Helper()
	root := t.TempDir()
	opts.NoFsync = true
	s, err := New(root, opts)
	if err != nil {
		t.Fatal(err)
	}
	clk := &fakeClock{t: time.Unix(1_750_000_000, 0)}
	s.now = clk.now
	return s, root, clk
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func deleteAll(t *testing.T, s *Store, user string, which ...int) {
	t.Helper()
	m, err := s.Open(context.Background(), user)
	if err != nil {
		t.Fatal(err)
	}
	if which == nil {
		for i := range m.Messages() {
			which = append(which, i)
		}
	}
	if err := m.Commit(which); err != nil {
		t.Fatal(err)
	}
}

func restoreAll(t *testing.T, s *Store, user string, opts store.RestoreOptions) []store.MessageInfo {
	t.Helper()
	infos, err := s.Restore(context.Background(), user, opts)
	if err != nil {
		t.Fatalf("Restore: %v", err)
	}
	return infos
}

// TestTrashLayout: a deleted message leaves new/ and cur/ for
// popbox-trash/ under a name that carries its deletion time, UIDL and
// size, and the directories are synced in order (trash first).
func TestTrashLayout(t *testing.T) {
	s, root, clk := adminStore(t, Options{Retention: time.Hour})
	mb := mdir(root, "alice")
	a := deliver(t, s, "alice", "a\n")
	dropForeign(t, mb, "cur", "1700000001.X.other:2,S", "foreign\n")
	msgs, _ := snapshotOf(t, s, "alice")
	key := parseFileName(names(t, mb, "new")[0]).key
	var steps []string
	s.hook = func(step string) error { steps = append(steps, step); return nil }
	deleteAll(t, s, "alice")
	s.hook = nil
	if n := append(names(t, mb, "new"), names(t, mb, "cur")...); len(n) != 0 {
		t.Errorf("new/ and cur/ after delete: %v", n)
	}
	want := []string{
		fmt.Sprintf("%d.1700000001.X.other,P=%s,R=%d", clk.now().Unix(), msgs[1].UIDL, msgs[1].Size),
		fmt.Sprintf("%d.%s,P=%s,R=%d", clk.now().Unix(), key, a.UIDL, a.Size),
	}
	if diff := cmp.Diff(want, names(t, mb, trashName)); diff != "" {
		t.Errorf("trash (-want +got):\n%s", diff)
	}
	// The rename into the trash is made durable in the trash before it is
	// made durable in the source directories.
	i, j, k := slices.Index(steps, "fsync popbox-trash/"), slices.Index(steps, "fsync new/"), slices.Index(steps, "fsync cur/")
	if i < 0 || j < i || k < i {
		t.Errorf("sync order: %v", steps)
	}
	st, err := os.Stat(mb.path(trashName))
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("trash directory: %v, %v", st, err)
	}
}

// TestRestoreSinceClock: Since counts back from the Store's clock, and
// restored messages come back in deletion order, then delivery order.
func TestRestoreSinceClock(t *testing.T) {
	s, _, clk := adminStore(t, Options{Retention: 7 * 24 * time.Hour})
	for _, b := range []string{"a\n", "b\n", "c\n", "d\n"} {
		deliver(t, s, "alice", b)
	}
	deleteAll(t, s, "alice", 3, 0) // a and d at T
	clk.add(2 * time.Hour)
	deleteAll(t, s, "alice", 1) // c at T+2h (b is now first)
	clk.add(30 * time.Minute)
	got := restoreAll(t, s, "alice", store.RestoreOptions{Since: time.Hour})
	if len(got) != 1 {
		t.Fatalf("restored %v, want only c", got)
	}
	got = restoreAll(t, s, "alice", store.RestoreOptions{Since: 3 * time.Hour})
	if len(got) != 2 {
		t.Fatalf("restored %v, want a and d", got)
	}
	_, bodies := snapshotOf(t, s, "alice")
	if diff := cmp.Diff([]string{"b\n", "c\n", "a\n", "d\n"}, bodies); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if _, err := s.Restore(context.Background(), "alice", store.RestoreOptions{Since: -time.Second}); err == nil {
		t.Error("negative Since accepted")
	}
}

// TestPurgeLog: each purged message is logged with user, UIDL, size and
// deletion time; junk in the trash is left alone.
func TestPurgeLog(t *testing.T) {
	var buf bytes.Buffer
	s, root, clk := adminStore(t, Options{Retention: 24 * time.Hour, Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	a := deliver(t, s, "alice", "a\n")
	deleteAll(t, s, "alice")
	deletedAt := clk.now()
	mb := mdir(root, "alice")
	mustWrite(t, mb.path(trashName, "not-ours"), []byte("x"))
	buf.Reset()
	if n, err := s.Purge(context.Background(), "alice", deletedAt.Add(24*time.Hour-time.Second)); n != 0 || err != nil {
		t.Errorf("Purge before retention ends = %d, %v", n, err)
	}
	if n, err := s.Purge(context.Background(), "alice", deletedAt.Add(24*time.Hour)); n != 1 || err != nil {
		t.Errorf("Purge when retention ends = %d, %v", n, err)
	}
	want := fmt.Sprintf(`msg="maildir: purged deleted message" user=alice uidl=%s size=%d deleted_at=%s`,
		a.UIDL, a.Size, deletedAt.UTC().Format(time.RFC3339))
	if !strings.Contains(buf.String(), want) {
		t.Errorf("log lacks %s:\n%s", want, buf.String())
	}
	if !strings.Contains(buf.String(), "unknown files in the trash") {
		t.Errorf("junk not reported:\n%s", buf.String())
	}
	if diff := cmp.Diff([]string{"not-ours"}, names(t, mb, trashName)); diff != "" {
		t.Errorf("trash (-want +got):\n%s", diff)
	}
}

// TestExpireDeliveryTime: the delivery time comes from the unique name,
// else the file's mtime; a restored message counts from its restore.
func TestExpireDeliveryTime(t *testing.T) {
	s, root, clk := adminStore(t, Options{Retention: time.Hour})
	mb := mdir(root, "alice")
	old := time.Unix(1_600_000_000, 0)
	dropForeign(t, mb, "new", "1600000000.A.other", "old by name\n")
	dropForeign(t, mb, "cur", "1800000000.B.other:2,S", "new by name\n")
	dropForeign(t, mb, "new", "no-time-in-name", "old by mtime\n")
	dropForeign(t, mb, "new", "no-time-either", "new by mtime\n")
	if err := os.Chtimes(mb.path("new", "no-time-in-name"), old, old); err != nil {
		t.Fatal(err)
	}
	n, err := s.Expire(context.Background(), "alice", time.Unix(1_700_000_000, 0))
	if n != 2 || err != nil {
		t.Fatalf("Expire = %d, %v; want 2", n, err)
	}
	_, bodies := snapshotOf(t, s, "alice")
	slices.Sort(bodies)
	if diff := cmp.Diff([]string{"new by mtime\n", "new by name\n"}, bodies); diff != "" {
		t.Errorf("left after expiry (-want +got):\n%s", diff)
	}
	clk.add(time.Minute)
	if got := restoreAll(t, s, "alice", store.RestoreOptions{}); len(got) != 2 {
		t.Fatalf("restored %v", got)
	}
	// Restored now (clk), so not older than a cutoff before now.
	if n, err := s.Expire(context.Background(), "alice", clk.now().Add(-time.Second)); n != 0 || err != nil {
		t.Errorf("Expire right after restore = %d, %v; want 0", n, err)
	}
}

// slowReader counts what is read from it: a refused delivery must not
// read the whole message.
type countingReader struct {
	n    int64
	left int64
}

func (r *countingReader) Read(p []byte) (int, error) {
	if r.left <= 0 {
		return 0, io.EOF
	}
	k := int64(len(p))
	k = min(k, r.left)
	for i := range k {
		p[i] = 'x'
		if i%80 == 79 {
			p[i] = '\n'
		}
	}
	r.left -= k
	r.n += k
	return int(k), nil
}

// TestQuotaPrecheck: a full mailbox refuses before reading the message, a
// nearly full one as soon as the message cannot fit; tmp/ stays empty.
func TestQuotaPrecheck(t *testing.T) {
	q := store.Quota{MaxBytes: 1 << 20, MaxMessages: 3}
	s, root, _ := adminStore(t, Options{Quota: func(context.Context, string) (store.Quota, error) { return q, nil }})
	mb := mdir(root, "alice")
	deliver(t, s, "alice", strings.Repeat("x", 1<<19)) // half full
	big := &countingReader{left: 50 << 20}
	if _, err := s.Deliver(context.Background(), "alice", big); !errors.Is(err, store.ErrQuota) {
		t.Fatalf("50 MB into half a MB of room = %v, want ErrQuota", err)
	}
	if big.n > 1<<20 {
		t.Errorf("read %d octets of a message that could not fit in %d", big.n, 1<<19)
	}
	deliver(t, s, "alice", "b\n")
	deliver(t, s, "alice", "c\n") // three messages: full
	r := &countingReader{left: 10}
	if _, err := s.Deliver(context.Background(), "alice", r); !errors.Is(err, store.ErrQuota) {
		t.Fatalf("delivery to a full mailbox = %v, want ErrQuota", err)
	}
	if r.n != 0 {
		t.Errorf("read %d octets for a full mailbox", r.n)
	}
	if n := names(t, mb, "tmp"); len(n) != 0 {
		t.Errorf("tmp/ after refused deliveries: %v", n)
	}
}

// TestQuotaNoIndexRead: with a sound counter, delivery under a quota reads
// neither the index nor the directories: O(1) in the mailbox size.
func TestQuotaNoIndexRead(t *testing.T) {
	q := store.Quota{MaxBytes: 1 << 30, MaxMessages: 1 << 20}
	s, _, _ := adminStore(t, Options{Quota: func(context.Context, string) (store.Quota, error) { return q, nil }})
	for i := range 50 {
		deliver(t, s, "alice", fmt.Sprintf("m%d\n", i))
	}
	snapshotOf(t, s, "alice")
	s.indexReads.Store(0)
	for i := range 50 {
		deliver(t, s, "alice", fmt.Sprintf("n%d\n", i))
	}
	if n := s.indexReads.Load(); n != 0 {
		t.Errorf("50 deliveries read the index %d times", n)
	}
	u, err := s.Usage(context.Background(), "alice")
	if err != nil || u.Messages != 100 || s.indexReads.Load() != 0 {
		t.Errorf("Usage = %+v, %v after %d index reads", u, err, s.indexReads.Load())
	}
}

// TestWarmOpenWritesNothing: with the totals in the counter, a warm Open
// still changes nothing on disk.
func TestWarmOpenWritesNothing(t *testing.T) {
	s, _, _ := adminStore(t, Options{Retention: time.Hour})
	for i := range 5 {
		deliver(t, s, "alice", fmt.Sprintf("m%d\n", i))
	}
	deleteAll(t, s, "alice", 1)
	snapshotOf(t, s, "alice")
	var steps []string
	s.hook = func(step string) error { steps = append(steps, step); return nil }
	snapshotOf(t, s, "alice")
	if len(steps) != 0 {
		t.Errorf("warm Open: %v", steps)
	}
}

// writeV1Counter rewrites the counter the way popbox wrote it before
// quotas (version 1: epoch and next only).
func writeV1Counter(t *testing.T, mb mailbox) {
	t.Helper()
	c, ok := parseCounter(mustRead(t, mb.path(counterName)))
	if !ok {
		t.Fatal("bad counter")
	}
	mustWrite(t, mb.path(counterName), appendLine(nil, fmt.Appendf(nil, "%s 1 %010d %010d", counterMagic, c.epoch, c.next)))
}

// TestOldMailbox: a mailbox written before quotas (version-1 counter; index
// and names unchanged since) keeps its UIDLs, and its totals are computed
// once, from the index, then kept.
func TestOldMailbox(t *testing.T) {
	for _, via := range []string{"Open", "Deliver", "Usage", "Commit", "Import", "Restore"} {
		t.Run(via, func(t *testing.T) {
			q := store.Quota{MaxMessages: 100}
			s, root, _ := adminStore(t, Options{Retention: time.Hour, Quota: func(context.Context, string) (store.Quota, error) { return q, nil }})
			mb := mdir(root, "alice")
			var want []store.MessageInfo
			for i := range 4 {
				want = append(want, deliver(t, s, "alice", fmt.Sprintf("m%d\n", i)))
			}
			if via == "Restore" {
				deleteAll(t, s, "alice", 3)
				want = want[:3]
			}
			writeV1Counter(t, mb)
			ctx := context.Background()
			switch via {
			case "Open":
				snapshotOf(t, s, "alice")
			case "Deliver":
				want = append(want, deliver(t, s, "alice", "new\n"))
			case "Usage":
				if u, err := s.Usage(ctx, "alice"); err != nil || u != sumOf(want) {
					t.Errorf("Usage = %+v, %v; want %+v", u, err, sumOf(want))
				}
			case "Commit":
				deleteAll(t, s, "alice", 0)
				want = want[1:]
			case "Import":
				info, err := s.Import(ctx, "alice", strings.NewReader("imported\n"), "x-1")
				if err != nil {
					t.Fatal(err)
				}
				want = append(want, info)
			case "Restore":
				want = append(want, restoreAll(t, s, "alice", store.RestoreOptions{})...)
			}
			c, ok := parseCounter(mustRead(t, mb.path(counterName)))
			if !ok || !c.acct || c.usage() != sumOf(want) {
				t.Errorf("counter after %s: %+v, ok=%v; want totals %+v", via, c, ok, sumOf(want))
			}
			_, epoch, _ := parseUIDL(want[0].UIDL)
			if c.floor != epoch {
				t.Errorf("floor %08X, want the mailbox's epoch %08X", c.floor, epoch)
			}
			msgs, _ := snapshotOf(t, s, "alice")
			if diff := cmp.Diff(want, msgs); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func sumOf(infos []store.MessageInfo) store.Usage {
	var u store.Usage
	for _, i := range infos {
		u.Messages++
		u.Bytes += i.Size
	}
	return u
}

// TestUsageFollowsForeignFiles: files other tools add or remove are in the
// totals from the next Open on.
func TestUsageFollowsForeignFiles(t *testing.T) {
	s, root, _ := adminStore(t, Options{})
	mb := mdir(root, "alice")
	a := deliver(t, s, "alice", "a\n")
	dropForeign(t, mb, "new", "1700000000.F.other", "foreign\n")
	snapshotOf(t, s, "alice")
	u, err := s.Usage(context.Background(), "alice")
	if err != nil || u != (store.Usage{Messages: 2, Bytes: a.Size + 9}) {
		t.Errorf("Usage = %+v, %v", u, err)
	}
	for _, n := range names(t, mb, "new") {
		if strings.HasPrefix(n, "1700000000.F") {
			mustRemove(t, mb.path("new", n))
		}
	}
	snapshotOf(t, s, "alice")
	if u, err := s.Usage(context.Background(), "alice"); err != nil || u != (store.Usage{Messages: 1, Bytes: a.Size}) {
		t.Errorf("Usage = %+v, %v", u, err)
	}
}

// TestImportHexRules: imports are listed in import order, each with its
// UIDL, and the counter never hands out a popbox-format UIDL that was
// imported (or one popbox may have handed out) again.
func TestImportHexRules(t *testing.T) {
	ctx := context.Background()
	s, root, _ := adminStore(t, Options{})
	mb := mdir(root, "alice")
	d := deliver(t, s, "alice", "first\n") // the counter: epoch E, next 2, floor E
	_, e, _ := parseUIDL(d.UIDL)
	imp := func(uidl string) error {
		_, err := s.Import(ctx, "alice", strings.NewReader("x\n"), uidl)
		return err
	}
	tests := []struct {
		uidl string
		err  error
	}{
		{formatUIDL(9, e-100), nil},                     // below the floor: never popbox's; a literal, uid 2
		{formatUIDL(3, e-100), nil},                     // ... in any order; uid 3
		{formatUIDL(9, e-100), store.ErrUIDLConflict},   // present
		{d.UIDL, store.ErrUIDLConflict},                 // present, popbox's own
		{formatUIDL(2, e), store.ErrUIDLPossiblyUsed},   // popbox's own, given to a literal import
		{formatUIDL(5, e), nil},                         // ahead in popbox's epoch: next becomes 6
		{formatUIDL(4, e), store.ErrUIDLPossiblyUsed},   // behind the counter now
		{formatUIDL(7, e+10), nil},                      // a later epoch: the counter moves there
		{formatUIDL(9, e+5), store.ErrUIDLPossiblyUsed}, // between floor and counter: maybe popbox's
		{formatUIDL(1, 1<<32-1), store.ErrInvalidUIDL},  // no epoch left above
		{"00000000" + formatUIDL(1, e)[8:], nil},        // uid 0 is not popbox's format: a literal
		{formatUIDL(1, e-100) + "x", nil},               // 17 characters: a literal
		{strings.ToLower(formatUIDL(11, e-100)), nil},   // lower case: a literal
		{strings.ToLower(formatUIDL(11, e-100)), store.ErrUIDLConflict},
	}
	for _, tc := range tests {
		err := imp(tc.uidl)
		if !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
			t.Errorf("Import(%s) = %v, want %v", tc.uidl, err, tc.err)
		}
		// The two refusals are told apart: a migration skips the one
		// and must not skip the other.
		if errors.Is(err, store.ErrUIDLConflict) && errors.Is(err, store.ErrUIDLPossiblyUsed) {
			t.Errorf("Import(%s) = %v: both ErrUIDLConflict and ErrUIDLPossiblyUsed", tc.uidl, err)
		}
	}
	// The literals took uids 8 to 10 of the new epoch.
	next := deliver(t, s, "alice", "next\n")
	if want := formatUIDL(11, e+10); next.UIDL != want {
		t.Errorf("delivery after imports got %s, want %s", next.UIDL, want)
	}
	c, _ := parseCounter(mustRead(t, mb.path(counterName)))
	if c.floor != e {
		t.Errorf("floor %08X moved; want %08X", c.floor, e)
	}
	msgs, _ := snapshotOf(t, s, "alice")
	var got []string
	for _, m := range msgs {
		got = append(got, m.UIDL)
	}
	// Import order, after what was there: an old epoch's UIDL does not
	// move to the front.
	want := []string{d.UIDL, formatUIDL(9, e-100), formatUIDL(3, e-100), formatUIDL(5, e), formatUIDL(7, e+10),
		"00000000" + formatUIDL(1, e)[8:], formatUIDL(1, e-100) + "x", strings.ToLower(formatUIDL(11, e-100)), next.UIDL}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("listing (-want +got):\n%s", diff)
	}
	if n := names(t, mb, "tmp"); len(n) != 0 {
		t.Errorf("refused imports left %v in tmp/", n)
	}
}

// TestImportLiteralNames: a literal UIDL is in the file name (encoded) and
// in the index, so either alone brings it back; a literal that does not fit
// in the name is kept by the index.
func TestImportLiteralNames(t *testing.T) {
	ctx := context.Background()
	s, root, _ := adminStore(t, Options{})
	mb := mdir(root, "alice")
	lit := "a/b:c,d%e"
	info, err := s.Import(ctx, "alice", strings.NewReader("x\n"), lit)
	if err != nil || info.UIDL != lit {
		t.Fatalf("Import = %+v, %v", info, err)
	}
	n := names(t, mb, "new")
	if len(n) != 1 || !strings.Contains(n[0], ",L=a%2Fb%3Ac%2Cd%25e,R=3") {
		t.Fatalf("new/ = %v", n)
	}
	// Some tool moves it to cur/ and flags it; the index goes.
	mustRemove(t, mb.path(indexName))
	if err := os.Rename(mb.path("new", n[0]), mb.path("cur", n[0]+":2,S")); err != nil {
		t.Fatal(err)
	}
	if msgs, _ := snapshotOf(t, s, "alice"); len(msgs) != 1 || msgs[0].UIDL != lit {
		t.Errorf("from the name alone: %v", msgs)
	}
	// A literal that cannot fit: a long one full of escapes, and a long
	// host name.
	s.host = strings.Repeat("h", 120)
	long := strings.Repeat(",", 70)
	info, err = s.Import(ctx, "alice", strings.NewReader("y\n"), long)
	if err != nil || info.UIDL != long {
		t.Fatalf("Import = %+v, %v", info, err)
	}
	for _, n := range names(t, mb, "new") {
		if strings.Contains(n, fieldLiteral) || len(n) > maxNameLen {
			t.Errorf("name %q", n)
		}
	}
	msgs, _ := snapshotOf(t, s, "alice")
	if diff := cmp.Diff([]string{lit, long}, []string{msgs[0].UIDL, msgs[1].UIDL}); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	// Deleted, it keeps the literal in the trash name when it fits.
	s.retention = time.Hour
	deleteAll(t, s, "alice")
	got := restoreAll(t, s, "alice", store.RestoreOptions{UIDL: lit})
	if len(got) != 1 || got[0].UIDL == lit {
		t.Errorf("restore by literal: %v", got)
	}
}

// TestImportCache: the duplicate check reads the index once per mailbox,
// then only what was appended, and notices other writers' appends and
// rewrites.
func TestImportCache(t *testing.T) {
	ctx := context.Background()
	s, root, _ := adminStore(t, Options{Retention: time.Hour})
	other, err := New(root, Options{NoFsync: true}) // another process
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		deliver(t, s, "alice", fmt.Sprintf("m%d\n", i))
	}
	for i := range 200 {
		if i == 1 {
			s.indexReads.Store(0) // after the first, which reads it all
		}
		if _, err := s.Import(ctx, "alice", strings.NewReader("x\n"), fmt.Sprintf("uidl-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.indexReads.Load(); n != 0 {
		t.Errorf("199 imports after the first read the index %d times, want 0", n)
	}
	// Another writer appends.
	if _, err := other.Import(ctx, "alice", strings.NewReader("x\n"), "by-other"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Import(ctx, "alice", strings.NewReader("x\n"), "by-other"); !errors.Is(err, store.ErrUIDLConflict) {
		t.Errorf("UIDL appended by another writer = %v, want ErrUIDLConflict", err)
	}
	// Another writer rewrites (a Commit): the deleted UIDL is free again.
	m, err := other.Open(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Messages()[5].UIDL; got != "uidl-0" {
		t.Fatalf("message 5 is %s", got)
	}
	if err := m.Commit([]int{5}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Import(ctx, "alice", strings.NewReader("x\n"), "uidl-0"); err != nil {
		t.Errorf("re-import of a deleted UIDL: %v", err)
	}
	if _, err := s.Import(ctx, "alice", strings.NewReader("x\n"), "uidl-1"); !errors.Is(err, store.ErrUIDLConflict) {
		t.Errorf("import of a present UIDL after a rewrite = %v", err)
	}
	// A damaged index is rebuilt before the check.
	mb := mdir(root, "alice")
	b := mustRead(t, mb.path(indexName))
	mustWrite(t, mb.path(indexName), b[:len(b)/2])
	if _, err := s.Import(ctx, "alice", strings.NewReader("x\n"), "uidl-199"); !errors.Is(err, store.ErrUIDLConflict) {
		t.Errorf("import of a present UIDL the damaged index lost = %v", err)
	}
}

// TestLiteralDuplicates: two files claiming one literal UIDL (a copy, or a
// retried import after a crash) are listed with distinct UIDLs.
func TestLiteralDuplicates(t *testing.T) {
	s, root, _ := adminStore(t, Options{})
	mb := mdir(root, "alice")
	orig, err := s.Import(context.Background(), "alice", strings.NewReader("x\n"), "lit")
	if err != nil {
		t.Fatal(err)
	}
	n := names(t, mb, "new")[0]
	fn := parseFileName(n)
	// A copy under its own key and uid, as a retried import would leave.
	copyName := withFields("1700000000.copy.host", fn.uid+100, fn.epoch, fn.size, "lit", "", false)
	mustWrite(t, mb.path("new", copyName), []byte("x\n"))
	for round := range 2 {
		msgs, _ := snapshotOf(t, s, "alice")
		if len(msgs) != 2 || msgs[0] != orig || msgs[1].UIDL == "lit" {
			t.Errorf("round %d: %v", round, msgs)
		}
	}
	for _, n := range names(t, mb, "new") {
		if strings.HasPrefix(n, "1700000000.copy") && strings.Contains(n, fieldLiteral) {
			t.Errorf("the copy kept the literal in its name: %s", n)
		}
	}
}

// TestRecoveryCountsTrash: with the counter lost and the index from an
// old backup, the uids of deleted messages in the trash are still never
// handed out again.
func TestRecoveryCountsTrash(t *testing.T) {
	s, root, _ := adminStore(t, Options{Retention: time.Hour})
	mb := mdir(root, "alice")
	a := deliver(t, s, "alice", "a\n")
	backup := mustRead(t, mb.path(indexName))
	b := deliver(t, s, "alice", "b\n")
	c := deliver(t, s, "alice", "c\n")
	deleteAll(t, s, "alice", 1, 2)
	mustWrite(t, mb.path(indexName), backup)
	mustRemove(t, mb.path(counterName))
	d := deliver(t, s, "alice", "d\n")
	for _, old := range []store.MessageInfo{a, b, c} {
		if d.UIDL == old.UIDL {
			t.Errorf("UIDL %s of a deleted message handed out again", d.UIDL)
		}
	}
}

// TestPurgeAllSkipsJunk: PurgeAll walks only directories that can be
// mailboxes, and creates none.
func TestPurgeAllSkipsJunk(t *testing.T) {
	s, root, clk := adminStore(t, Options{Retention: time.Hour})
	deliver(t, s, "alice", "a\n")
	deleteAll(t, s, "alice")
	mustWrite(t, root+"/file", nil)
	if err := os.Mkdir(root+"/.hidden", 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(root+"/empty", 0o700); err != nil {
		t.Fatal(err)
	}
	n, err := s.PurgeAll(context.Background(), clk.now().Add(2*time.Hour))
	if n != 1 || err != nil {
		t.Errorf("PurgeAll = %d, %v", n, err)
	}
	if isDir(root + "/empty/Maildir") {
		t.Error("PurgeAll created a mailbox")
	}
}

// TestImportRetryAfterCrash: an import that stopped after its rename but
// before its index record is found by the retry of a new process, with no
// Open in between.
func TestImportRetryAfterCrash(t *testing.T) {
	for _, uidl := range []string{"0000000712345678", "lit-1"} {
		t.Run(uidl, func(t *testing.T) {
			s, root, _ := adminStore(t, Options{})
			deliver(t, s, "alice", "a\n")
			deliver(t, s, "bob", "a\n") // the same steps, counted on bob
			var crashed bool
			_, crashed = runAt(s, stepIndex(t, s, "append index", func() error {
				_, err := s.Import(context.Background(), "bob", strings.NewReader("x\n"), uidl)
				return err
			}), true, func() error {
				_, err := s.Import(context.Background(), "alice", strings.NewReader("x\n"), uidl)
				return err
			})
			if !crashed {
				t.Fatal("did not crash")
			}
			s2, err := New(root, Options{NoFsync: true})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s2.Import(context.Background(), "alice", strings.NewReader("x\n"), uidl); !errors.Is(err, store.ErrUIDLConflict) {
				t.Errorf("retry = %v, want ErrUIDLConflict", err)
			}
			msgs, _ := snapshotOf(t, s2, "alice")
			if len(msgs) != 2 || msgs[1].UIDL != uidl && msgs[0].UIDL != uidl {
				t.Errorf("after retry: %v", msgs)
			}
		})
	}
}

// stepIndex is the position of the first step named name in op's run
// (op runs on a scratch mailbox).
func stepIndex(t *testing.T, s *Store, name string, op func() error) int {
	t.Helper()
	var steps []string
	s.hook = func(step string) error { steps = append(steps, step); return nil }
	err := op()
	s.hook = nil
	if err != nil {
		t.Fatal(err)
	}
	i := slices.Index(steps, name)
	if i < 0 {
		t.Fatalf("no step %q in %v", name, steps)
	}
	return i
}

// TestImportOrder: imported messages are listed in import order after the
// mailbox's own, with the UIDLs given, whatever the UIDLs look like (an
// X-UIDL that happens to spell an old (uid, epoch) does not jump to the
// front), also when only the file names are left; mail delivered later
// comes last with a UIDL of its own. Mailboxes written before, where such
// an import took its (uid, epoch) as is, read unchanged.
func TestImportOrder(t *testing.T) {
	ctx := context.Background()
	s, root, _ := adminStore(t, Options{})
	mb := mdir(root, "alice")
	first := deliver(t, s, "alice", "first\n")
	_, e, _ := parseUIDL(first.UIDL)
	imported := []string{"000000016b09839a", "00000005000003E8", "chain-xuidl-1", formatUIDL(2, e-1), "000000026b09839a"}
	want := []string{first.UIDL}
	for i, u := range imported {
		info, err := s.Import(ctx, "alice", strings.NewReader(fmt.Sprintf("m%d\n", i)), u)
		if err != nil || info.UIDL != u {
			t.Fatalf("Import(%s) = %+v, %v", u, info, err)
		}
		want = append(want, u)
	}
	last := deliver(t, s, "alice", "last\n")
	if slices.Contains(want, last.UIDL) {
		t.Fatalf("delivery after the imports got %s, an imported UIDL", last.UIDL)
	}
	want = append(want, last.UIDL)
	check := func(when string) {
		t.Helper()
		msgs, _ := snapshotOf(t, s, "alice")
		if diff := cmp.Diff(want, uidlsOf(msgs)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", when, diff)
		}
	}
	check("listing")
	mustRemove(t, mb.path(indexName))
	check("from the names alone")
	mustRemove(t, mb.path(indexName))
	mustRemove(t, mb.path(counterName))
	check("from the names alone, counter lost")
	again := deliver(t, s, "alice", "again\n")
	if slices.Contains(want, again.UIDL) {
		t.Errorf("delivery after recovery got %s, a UIDL in use", again.UIDL)
	}

	// Written before: bob's import of 00000005000003E8 took it as its
	// (uid, epoch), without ,L=. It stays as it is.
	b := deliver(t, s, "bob", "b\n")
	bob := mdir(root, "bob")
	mustWrite(t, bob.path("new", withFields("1700000000.M1P1.old", 5, 0x3E8, 3, "", "", false)), []byte("x\n"))
	idx := mustRead(t, bob.path(indexName))
	mustWrite(t, bob.path(indexName), appendRecord(idx, record{key: "1700000000.M1P1.old", uid: 5, epoch: 0x3E8, size: 3}))
	msgs, _ := snapshotOf(t, s, "bob")
	if diff := cmp.Diff([]string{"00000005000003E8", b.UIDL}, uidlsOf(msgs)); diff != "" {
		t.Errorf("a numeric import written before (-want +got):\n%s", diff)
	}
	if _, err := s.Import(ctx, "bob", strings.NewReader("x\n"), "00000005000003E8"); !errors.Is(err, store.ErrUIDLConflict) {
		t.Errorf("importing it again = %v, want ErrUIDLConflict", err)
	}
}

func uidlsOf(msgs []store.MessageInfo) []string {
	var out []string
	for _, m := range msgs {
		out = append(out, m.UIDL)
	}
	return out
}
