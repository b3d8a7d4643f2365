package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/popbox/popbox/store"
	"github.com/popbox/popbox/store/maildir"
)

// failAfter yields n octets, then fails.
type failAfter struct{ n int }

func (r *failAfter) Read(p []byte) (int, error) {
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

// cancelAfter yields n octets, then cancels ctx and goes on.
type cancelAfter struct {
	n      int
	cancel context.CancelFunc
}

func (r *cancelAfter) Read(p []byte) (int, error) {
	if r.n <= 0 {
		r.cancel()
	}
	k := min(len(p), max(r.n, 1))
	for i := range k {
		p[i] = 'y'
	}
	r.n -= k
	return k, nil
}

// TestFailedDeliveriesLeaveNothing: whatever stops a delivery after some
// chunks are written, the transaction takes them back.
func TestFailedDeliveriesLeaveNothing(t *testing.T) {
	s := openStore(t, newDatabase(t), Options{
		MaxMessageSize: 3 * chunkSize,
		Quota: func(_ context.Context, user string) (store.Quota, error) {
			if user == "small" {
				return store.Quota{MaxBytes: chunkSize + 10}, nil
			}
			return store.Quota{}, nil
		},
	})
	if _, err := s.Deliver(tctx(t), "alice", &failAfter{n: 2*chunkSize + 5}); err == nil {
		t.Error("delivery from a failing reader succeeded")
	}
	if _, err := s.Deliver(tctx(t), "alice", bytes.NewReader(make([]byte, 3*chunkSize+1))); !errors.Is(err, ErrTooLarge) {
		t.Errorf("delivery over MaxMessageSize = %v, want ErrTooLarge", err)
	}
	if _, err := s.Deliver(tctx(t), "small", bytes.NewReader(make([]byte, 2*chunkSize))); !errors.Is(err, store.ErrQuota) {
		t.Errorf("delivery over the quota = %v, want ErrQuota", err)
	}
	ctx, cancel := context.WithCancel(tctx(t))
	defer cancel()
	if _, err := s.Deliver(ctx, "alice", &cancelAfter{n: chunkSize + 3, cancel: cancel}); !errors.Is(err, context.Canceled) {
		t.Errorf("delivery cancelled half-way = %v, want context.Canceled", err)
	}
	if _, err := s.Import(tctx(t), "alice", &failAfter{n: chunkSize * 3 / 2}, "imported-1"); err == nil {
		t.Error("import from a failing reader succeeded")
	}
	for _, table := range []string{"messages", "message_chunks"} {
		if n := count(t, s, "SELECT count(*) FROM "+table); n != 0 {
			t.Errorf("%d rows left in %s", n, table)
		}
	}
	if n := count(t, s, "SELECT count(*) FROM mailboxes WHERE msgs <> 0 OR bytes <> 0 OR pos_next <> 1 OR uid_next <> 1"); n != 0 {
		t.Errorf("%d mailboxes changed by failed deliveries", n)
	}
	// And the store still works.
	mustDeliver(t, s, "alice", "fine\n")
}

// TestChunks: a message is split into chunkSize rows and read back the
// same through any pattern of reads.
func TestChunks(t *testing.T) {
	s := openStore(t, newDatabase(t), Options{})
	body := make([]byte, 2*chunkSize+chunkSize/2)
	for i := range body {
		body[i] = "abc\r\n.\n"[i%7]
	}
	info := mustDeliver(t, s, "alice", string(body))
	rows, err := s.pool.Query(tctx(t), "SELECT seq, length(data) FROM message_chunks ORDER BY seq")
	if err != nil {
		t.Fatal(err)
	}
	var layout []string
	var seq, n int64
	for rows.Next() {
		if err := rows.Scan(&seq, &n); err != nil {
			t.Fatal(err)
		}
		layout = append(layout, fmt.Sprintf("%d:%d", seq, n))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("[0:%d 1:%d 2:%d]", chunkSize, chunkSize, chunkSize/2)
	if got := fmt.Sprint(layout); got != want {
		t.Errorf("chunks %s, want %s", got, want)
	}
	m := mustOpen(t, s, "alice")
	defer m.Close()
	if m.Messages()[0] != info {
		t.Errorf("listed %+v, delivered %+v", m.Messages()[0], info)
	}
	rc, err := m.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	if err := iotest.TestReader(rc, body); err != nil {
		t.Error(err)
	}
	rc.Close()
	// io.Copy takes the WriterTo path.
	rc, _ = m.Open(0)
	var buf bytes.Buffer
	if n, err := io.Copy(&buf, rc); err != nil || n != int64(len(body)) || !bytes.Equal(buf.Bytes(), body) {
		t.Errorf("io.Copy: %d, %v; equal %v", n, err, bytes.Equal(buf.Bytes(), body))
	}
	rc.Close()

	mustDeliver(t, s, "bob", "")
	mb := mustOpen(t, s, "bob")
	defer mb.Close()
	if got := read(t, mb, 0); len(got) != 0 {
		t.Errorf("empty message read as %q", got)
	}
}

func read(t testing.TB, m store.Maildrop, i int) []byte {
	t.Helper()
	rc, err := m.Open(i)
	if err != nil {
		t.Fatalf("Open(%d): %v", i, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %d: %v", i, err)
	}
	return b
}

// TestDeletedChunks: without retention Commit removes the chunks with the
// messages; with it they stay until Purge.
func TestDeletedChunks(t *testing.T) {
	for _, retention := range []time.Duration{0, time.Hour} {
		s := openStore(t, newDatabase(t), Options{Retention: retention})
		mustDeliver(t, s, "alice", strings.Repeat("x", chunkSize+1))
		mustDeliver(t, s, "alice", "keep\n")
		m := mustOpen(t, s, "alice")
		if err := m.Commit([]int{0}); err != nil {
			t.Fatal(err)
		}
		want := int64(1)
		if retention > 0 {
			want = 3
		}
		if n := count(t, s, "SELECT count(*) FROM message_chunks"); n != want {
			t.Errorf("retention %v: %d chunks after Commit, want %d", retention, n, want)
		}
		if n, err := s.Purge(tctx(t), "alice", time.Now().Add(retention+time.Minute)); err != nil || n != int(want-1)/2 {
			t.Errorf("retention %v: Purge = %d, %v", retention, n, err)
		}
		if n := count(t, s, "SELECT count(*) FROM message_chunks"); n != 1 {
			t.Errorf("retention %v: %d chunks after Purge, want 1", retention, n)
		}
	}
}

// TestImportOwnFormat: imported UIDLs in popbox's own format follow
// store/maildir's rules: the counter moves past those it could produce
// later, those it may have produced are refused, older epochs are kept
// as literals.
func TestImportOwnFormat(t *testing.T) {
	s := openStore(t, newDatabase(t), Options{})
	d1 := mustDeliver(t, s, "alice", "d1\n")
	uid, epoch, ok := parseUIDL(d1.UIDL)
	if !ok || uid != 1 {
		t.Fatalf("first UIDL %s", d1.UIDL)
	}
	imp := func(u string) error {
		_, err := s.Import(tctx(t), "alice", strings.NewReader("imported\n"), u)
		return err
	}
	if err := imp(formatUIDL(5, epoch)); err != nil {
		t.Fatalf("import above the counter: %v", err)
	}
	if d := mustDeliver(t, s, "alice", "d2\n"); d.UIDL != formatUIDL(6, epoch) {
		t.Errorf("delivery after importing uid 5: %s, want %s", d.UIDL, formatUIDL(6, epoch))
	}
	if err := imp(formatUIDL(3, epoch)); !errors.Is(err, store.ErrUIDLPossiblyUsed) {
		t.Errorf("import below the counter = %v, want ErrUIDLPossiblyUsed", err)
	}
	if err := imp(formatUIDL(1, epoch-100)); err != nil {
		t.Errorf("import from an epoch below the floor: %v", err)
	}
	if err := imp(formatUIDL(7, epoch+10)); err != nil {
		t.Errorf("import from a later epoch: %v", err)
	}
	if d := mustDeliver(t, s, "alice", "d3\n"); d.UIDL != formatUIDL(8, epoch+10) {
		t.Errorf("delivery after a later epoch: %s, want %s", d.UIDL, formatUIDL(8, epoch+10))
	}
	if err := imp(formatUIDL(1, 1<<32-1)); !errors.Is(err, store.ErrInvalidUIDL) {
		t.Errorf("import in epoch FFFFFFFF = %v, want ErrInvalidUIDL", err)
	}
}

// TestImportFromMaildir moves a popbox Maildir mailbox into PostgreSQL with
// Import: same UIDLs, same bodies, same order, and new mail gets UIDLs the
// Maildir never handed out.
func TestImportFromMaildir(t *testing.T) {
	md, err := maildir.New(t.TempDir(), maildir.Options{NoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := md.Deliver(tctx(t), "alice", strings.NewReader(fmt.Sprintf("message %d\r\n", i))); err != nil {
			t.Fatal(err)
		}
	}
	src, err := md.Open(tctx(t), "alice")
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Commit([]int{1}); err != nil { // a gap in the uids
		t.Fatal(err)
	}
	src, err = md.Open(tctx(t), "alice")
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()

	s := openStore(t, newDatabase(t), Options{})
	for i, info := range src.Messages() {
		rc, err := src.Open(i)
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.Import(tctx(t), "alice", rc, info.UIDL)
		rc.Close()
		if err != nil {
			t.Fatalf("Import %s: %v", info.UIDL, err)
		}
		if got != info {
			t.Errorf("imported %+v, was %+v", got, info)
		}
	}
	m := mustOpen(t, s, "alice")
	if fmt.Sprint(m.Messages()) != fmt.Sprint(src.Messages()) {
		t.Errorf("listing %v, want %v", m.Messages(), src.Messages())
	}
	for i := range m.Messages() {
		if a, b := read(t, m, i), read(t, src, i); !bytes.Equal(a, b) {
			t.Errorf("message %d: %q, want %q", i, a, b)
		}
	}
	m.Close()
	d := mustDeliver(t, s, "alice", "new\n")
	for _, info := range src.Messages() {
		if d.UIDL == info.UIDL {
			t.Errorf("new mail got the migrated UIDL %s", d.UIDL)
		}
	}
}

// TestOpenAfterTakeover: a session that lost its lease to one that deleted
// a message finds it gone, as fs.ErrNotExist.
func TestOpenAfterTakeover(t *testing.T) {
	dsn := newDatabase(t)
	a := openStore(t, dsn, Options{LeaseDuration: 200 * time.Millisecond})
	b := openStore(t, dsn, Options{LeaseDuration: 200 * time.Millisecond})
	mustDeliver(t, a, "alice", "a\n")
	ma := mustOpen(t, a, "alice")
	die(ma)
	mb, _ := openWhenFree(t, b, "alice", 2*time.Second)
	if err := mb.Commit([]int{0}); err != nil {
		t.Fatal(err)
	}
	if rc, err := ma.Open(0); !errors.Is(err, fs.ErrNotExist) {
		if rc != nil {
			rc.Close()
		}
		t.Errorf("Open of a message deleted by the new holder = %v, want fs.ErrNotExist", err)
	}
	if err := ma.Close(); err != nil {
		t.Errorf("Close of the fenced-off session: %v", err)
	}
}
