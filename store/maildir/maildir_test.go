package maildir

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/popbox/popbox/store"
	"github.com/popbox/popbox/store/storetest"
)

// lockHelperEnv makes the test binary, re-executed by TestCrossProcessLock,
// hold alice's maildrop under the root it names until it is killed.
const lockHelperEnv = "POPBOX_MAILDIR_LOCK_HELPER"

func TestMain(m *testing.M) {
	if root := os.Getenv(lockHelperEnv); root != "" {
		lockHelper(root)
		return
	}
	os.Exit(m.Run())
}

func lockHelper(root string) {
	s, err := New(root, Options{NoFsync: true})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	if _, err := s.Open(context.Background(), "alice"); err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("locked")
	// Hold the lock until killed; give up eventually should the parent
	// die without killing us.
	time.Sleep(2 * time.Minute)
	os.Exit(0)
}

// testStore returns a Store on a fresh root. Durability is not what these
// tests check (no crash is simulated), so fsync is off unless asked for.
func testStore(t *testing.T, fsync bool) (*Store, string) {
	t.Helper()
	root := t.TempDir()
	s, err := New(root, Options{NoFsync: !fsync})
	if err != nil {
		t.Fatal(err)
	}
	return s, root
}

func TestContract(t *testing.T) {
	// With fsync on: the contract is what production runs.
	storetest.Run(t, func(t *testing.T) store.Store {
		s, _ := testStore(t, true)
		return s
	})
}

func TestAdminContract(t *testing.T) {
	storetest.RunAdmin(t, func(t *testing.T, cfg storetest.AdminConfig) store.Admin {
		s, err := New(t.TempDir(), Options{Quota: cfg.Quota, Retention: cfg.Retention})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func mdir(root, user string) mailbox {
	return mailbox{user: user, dir: filepath.Join(root, user, "Maildir")}
}

func deliver(t *testing.T, s *Store, user, body string) store.MessageInfo {
	t.Helper()
	info, err := s.Deliver(context.Background(), user, strings.NewReader(body))
	if err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	return info
}

// session opens user's maildrop and returns its snapshot and bodies.
func session(t *testing.T, s *Store, user string) (store.Maildrop, []store.MessageInfo, []string) {
	t.Helper()
	m, err := s.Open(context.Background(), user)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	var bodies []string
	for i := range m.Messages() {
		bodies = append(bodies, readMsg(t, m, i))
	}
	return m, m.Messages(), bodies
}

func readMsg(t *testing.T, m store.Maildrop, i int) string {
	t.Helper()
	rc, err := m.Open(i)
	if err != nil {
		t.Fatalf("Maildrop.Open(%d): %v", i, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// snapshotOf opens, lists and closes.
func snapshotOf(t *testing.T, s *Store, user string) ([]store.MessageInfo, []string) {
	t.Helper()
	m, msgs, bodies := session(t, s, user)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	return msgs, bodies
}

// dropForeign delivers a file the way another MDA does: tmp/, then rename
// into sub (new or cur), under a plain Maildir name.
func dropForeign(t *testing.T, mb mailbox, sub, name, body string) {
	t.Helper()
	for _, d := range []string{"tmp", "new", "cur"} {
		if err := os.MkdirAll(mb.path(d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	tmp := mb.path("tmp", strings.SplitN(name, ":", 2)[0])
	if err := os.WriteFile(tmp, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, mb.path(sub, name)); err != nil {
		t.Fatal(err)
	}
}

// names lists sub's file names, sorted.
func names(t *testing.T, mb mailbox, sub string) []string {
	t.Helper()
	ents, err := os.ReadDir(mb.path(sub))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// countMeasure makes s count the message files it reads to size them.
func countMeasure(s *Store) *atomic.Int64 {
	var n atomic.Int64
	s.measure = func(p string) (int64, error) {
		n.Add(1)
		return measureFile(p)
	}
	return &n
}

func TestNew(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, root := range []string{"", filepath.Join(dir, "missing"), file} {
		if _, err := New(root, Options{}); err == nil {
			t.Errorf("New(%q) succeeded", root)
		}
	}
	s, err := New(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !s.fsync || s.maxSize != DefaultMaxMessageSize {
		t.Errorf("zero Options: fsync=%v maxSize=%d, want durable defaults", s.fsync, s.maxSize)
	}
}

func TestDeliverLayout(t *testing.T) {
	s, root := testStore(t, true)
	info := deliver(t, s, "alice", "Subject: x\n\nhi\n")
	mb := mdir(root, "alice")
	for _, d := range []string{filepath.Join(root, "alice"), mb.dir, mb.path("new"), mb.path("cur"), mb.path("tmp")} {
		st, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o700 {
			t.Errorf("%s: mode %v, want 0700", d, st.Mode().Perm())
		}
	}
	if n := names(t, mb, "tmp"); len(n) != 0 {
		t.Errorf("tmp/ not empty after delivery: %v", n)
	}
	nn := names(t, mb, "new")
	if len(nn) != 1 {
		t.Fatalf("new/ = %v, want one file", nn)
	}
	fn := parseFileName(nn[0])
	if !fn.hasFields || formatUIDL(fn.uid, fn.epoch) != info.UIDL || fn.size != info.Size || fn.hasInfo {
		t.Errorf("file name %q does not carry UIDL %s and size %d", nn[0], info.UIDL, info.Size)
	}
	st, err := os.Stat(mb.path("new", nn[0]))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("message mode %v, want 0600", st.Mode().Perm())
	}
	if idx, ok, err := s.readIndex(mb); err != nil || !ok || idx.damaged || len(idx.recs) != 1 {
		t.Errorf("index after one delivery: %+v exists=%v err=%v", idx, ok, err)
	}
	// RETR streams from the file itself, never from a copy in memory.
	m, err := s.Open(context.Background(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	rc, err := m.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if f, ok := rc.(*messageFile); !ok || f.path != mb.path("new", nn[0]) {
		t.Errorf("Maildrop.Open returned %T, want the message's file", rc)
	}
}

func TestMaxMessageSize(t *testing.T) {
	root := t.TempDir()
	s, err := New(root, Options{NoFsync: true, MaxMessageSize: 10})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Deliver(context.Background(), "alice", strings.NewReader("0123456789")); err != nil {
		t.Errorf("10 octets: %v", err)
	}
	if _, err := s.Deliver(context.Background(), "alice", strings.NewReader("0123456789a")); !errors.Is(err, ErrTooLarge) {
		t.Errorf("11 octets: %v, want ErrTooLarge", err)
	}
	mb := mdir(root, "alice")
	if n := names(t, mb, "tmp"); len(n) != 0 {
		t.Errorf("tmp/ not empty: %v", n)
	}
	if msgs, _ := snapshotOf(t, s, "alice"); len(msgs) != 1 {
		t.Errorf("%d messages, want 1", len(msgs))
	}
}

func TestForeignFiles(t *testing.T) {
	s, root := testStore(t, false)
	mb := mdir(root, "alice")
	own := deliver(t, s, "alice", "own\n")
	// Another MDA's delivery (plain name in new/) and a file some MUA left
	// in cur/ with flags; the cur/ one sorts first by name.
	dropForeign(t, mb, "new", "1700000002.M1P9.otherhost", "new one\r\nno final newline")
	dropForeign(t, mb, "cur", "1700000001.M1P9.otherhost:2,S", "seen one\n")
	measured := countMeasure(s)

	msgs, bodies := snapshotOf(t, s, "alice")
	if diff := cmp.Diff([]string{"own\n", "seen one\n", "new one\r\nno final newline"}, bodies); diff != "" {
		t.Fatalf("bodies (-want +got):\n%s", diff)
	}
	wantSizes := []int64{5, 10, 27}
	for i, m := range msgs {
		if m.Size != wantSizes[i] {
			t.Errorf("message %d size %d, want %d", i, m.Size, wantSizes[i])
		}
	}
	if msgs[0] != own {
		t.Errorf("own message %+v, delivered as %+v", msgs[0], own)
	}
	if n := measured.Load(); n != 2 {
		t.Errorf("measured %d files, want the 2 foreign ones", n)
	}
	// The foreign files stay where they were, renamed to carry their UIDL.
	for _, c := range []struct {
		sub, key, info string
		msg            int
	}{
		{"new", "1700000002.M1P9.otherhost", "", 2},
		{"cur", "1700000001.M1P9.otherhost", "2,S", 1},
	} {
		want := withFields(c.key, 0, 0, 0, "", "", false)
		var found bool
		for _, n := range names(t, mb, c.sub) {
			fn := parseFileName(n)
			if fn.key == c.key {
				found = true
				if !fn.hasFields || formatUIDL(fn.uid, fn.epoch) != msgs[c.msg].UIDL || fn.size != msgs[c.msg].Size || fn.info != c.info {
					t.Errorf("%s/%s: fields do not match %+v (like %s)", c.sub, n, msgs[c.msg], want)
				}
			}
		}
		if !found {
			t.Errorf("%s: no file with key %s", c.sub, c.key)
		}
	}

	// Warm: same snapshot, nothing read, index not rewritten.
	before := inode(t, mb.path(indexName))
	measured.Store(0)
	again, _ := snapshotOf(t, s, "alice")
	if diff := cmp.Diff(msgs, again); diff != "" {
		t.Errorf("reopen (-first +second):\n%s", diff)
	}
	if n := measured.Load(); n != 0 {
		t.Errorf("warm Open measured %d files, want 0", n)
	}
	if after := inode(t, mb.path(indexName)); after != before {
		t.Error("warm Open rewrote the index")
	}
}

func inode(t *testing.T, p string) uint64 {
	t.Helper()
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return st.Sys().(*syscall.Stat_t).Ino
}

// TestForeignUnrenamable: a foreign file whose name cannot take popbox's
// fields (too long) keeps its UIDL through the index alone.
func TestForeignUnrenamable(t *testing.T) {
	s, root := testStore(t, false)
	mb := mdir(root, "alice")
	long := strings.Repeat("n", 250)
	dropForeign(t, mb, "new", long, "long name\n")
	first, _ := snapshotOf(t, s, "alice")
	if len(first) != 1 {
		t.Fatalf("%d messages", len(first))
	}
	if n := names(t, mb, "new"); len(n) != 1 || n[0] != long {
		t.Fatalf("new/ = %v", n)
	}
	measured := countMeasure(s)
	before := inode(t, mb.path(indexName))
	second, bodies := snapshotOf(t, s, "alice")
	if inode(t, mb.path(indexName)) != before {
		t.Error("warm Open rewrote the index")
	}
	if diff := cmp.Diff(first, second); diff != "" {
		t.Errorf("reopen (-first +second):\n%s", diff)
	}
	if bodies[0] != "long name\n" || measured.Load() != 0 {
		t.Errorf("body %q, measured %d", bodies[0], measured.Load())
	}
}

// fixture delivers three messages and drops two foreign ones, opens once to
// index them, and returns the snapshot.
func fixture(t *testing.T, s *Store, mb mailbox) []store.MessageInfo {
	t.Helper()
	for i := range 3 {
		deliver(t, s, mb.user, fmt.Sprintf("popbox %d\n", i))
	}
	dropForeign(t, mb, "new", "1700000001.A.other", "foreign new\n")
	dropForeign(t, mb, "cur", "1700000002.B.other:2,RS", "foreign cur\n")
	msgs, _ := snapshotOf(t, s, mb.user)
	if len(msgs) != 5 {
		t.Fatalf("fixture: %d messages", len(msgs))
	}
	return msgs
}

func TestIndexRecovery(t *testing.T) {
	tests := []struct {
		name   string
		damage func(t *testing.T, p string)
	}{
		{"deleted", func(t *testing.T, p string) { mustRemove(t, p) }},
		{"empty", func(t *testing.T, p string) { mustWrite(t, p, nil) }},
		{"truncated mid-line", func(t *testing.T, p string) {
			b := mustRead(t, p)
			mustWrite(t, p, b[:len(b)/2+3])
		}},
		{"header only", func(t *testing.T, p string) {
			b := mustRead(t, p)
			mustWrite(t, p, b[:strings.IndexByte(string(b), '\n')+1])
		}},
		{"garbage", func(t *testing.T, p string) { mustWrite(t, p, []byte("\x00\xffnot an index\n\n\n")) }},
		{"bit flip", func(t *testing.T, p string) {
			b := mustRead(t, p)
			b[len(b)/2] ^= 0x04
			mustWrite(t, p, b)
		}},
		{"header damaged", func(t *testing.T, p string) {
			b := mustRead(t, p)
			b[3] = 'X'
			mustWrite(t, p, b)
		}},
		{"garbage appended", func(t *testing.T, p string) {
			b := mustRead(t, p)
			mustWrite(t, p, append(b, "m bogus 0000000100000001 5 00000000\nm x"...))
		}},
		{"replaced by directory", func(t *testing.T, p string) {
			mustRemove(t, p)
			if err := os.Mkdir(p, 0o700); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, root := testStore(t, false)
			mb := mdir(root, "alice")
			want := fixture(t, s, mb)
			tc.damage(t, mb.path(indexName))
			if tc.name == "replaced by directory" {
				// Not repairable by popbox: it must fail loudly, not
				// hand out new UIDLs.
				if _, err := s.Open(context.Background(), "alice"); err == nil {
					t.Error("Open succeeded with a directory as index")
				}
				return
			}
			measured := countMeasure(s)
			got, bodies := snapshotOf(t, s, "alice")
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("after rebuild (-before +after):\n%s", diff)
			}
			if len(bodies) != 5 {
				t.Errorf("bodies: %q", bodies)
			}
			// Every UIDL and size came back from file names.
			if n := measured.Load(); n != 0 {
				t.Errorf("rebuild measured %d files, want 0", n)
			}
			idx, _, err := s.readIndex(mb)
			if err != nil || idx.damaged || len(idx.recs) != 5 {
				t.Errorf("index not repaired: damaged=%v recs=%d err=%v", idx.damaged, len(idx.recs), err)
			}
			// New mail after the rebuild gets a fresh UIDL.
			info := deliver(t, s, "alice", "after\n")
			for _, m := range want {
				if m.UIDL == info.UIDL {
					t.Errorf("UIDL %s reused after rebuild", info.UIDL)
				}
			}
		})
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustWrite(t *testing.T, p string, b []byte) {
	t.Helper()
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func mustRemove(t *testing.T, p string) {
	t.Helper()
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
}

func TestCounterRecovery(t *testing.T) {
	tests := []struct {
		name   string
		damage func(t *testing.T, mb mailbox)
		// sameEpoch: the counter could be recovered exactly, so new UIDLs
		// continue the old epoch; otherwise a new epoch must start.
		sameEpoch bool
	}{
		{"counter deleted", func(t *testing.T, mb mailbox) { mustRemove(t, mb.path(counterName)) }, true},
		{"counter garbage", func(t *testing.T, mb mailbox) { mustWrite(t, mb.path(counterName), []byte("42\n")) }, true},
		{"counter torn", func(t *testing.T, mb mailbox) {
			b := mustRead(t, mb.path(counterName))
			mustWrite(t, mb.path(counterName), b[:20])
		}, true},
		{"counter rolled back", func(t *testing.T, mb mailbox) {
			b := mustRead(t, mb.path(counterName))
			c, ok := parseCounter(b)
			if !ok {
				t.Fatal("bad counter")
			}
			c.next = 1
			mustWrite(t, mb.path(counterName), formatCounter(c))
		}, true},
		{"counter and index deleted", func(t *testing.T, mb mailbox) {
			mustRemove(t, mb.path(counterName))
			mustRemove(t, mb.path(indexName))
		}, false},
	}
	for _, tc := range tests {
		for _, via := range []string{"Deliver", "Open"} {
			t.Run(tc.name+"/"+via, func(t *testing.T) {
				s, root := testStore(t, false)
				mb := mdir(root, "alice")
				used := map[string]bool{}
				var kept []store.MessageInfo
				for i := range 4 {
					info := deliver(t, s, "alice", fmt.Sprintf("m%d\n", i))
					used[info.UIDL] = true
					if i < 2 {
						kept = append(kept, info)
					}
				}
				// Delete the two newest: the highest UIDLs left are lower
				// than the ones handed out.
				m, _, _ := session(t, s, "alice")
				if err := m.Commit([]int{2, 3}); err != nil {
					t.Fatal(err)
				}
				tc.damage(t, mb)
				if via == "Open" {
					msgs, _ := snapshotOf(t, s, "alice")
					if diff := cmp.Diff(kept, msgs); diff != "" {
						t.Errorf("kept messages changed (-want +got):\n%s", diff)
					}
				}
				info := deliver(t, s, "alice", "new\n")
				if used[info.UIDL] {
					t.Errorf("UIDL %s reused", info.UIDL)
				}
				_, oldEpoch, _ := parseUIDL(kept[0].UIDL)
				uid, epoch, ok := parseUIDL(info.UIDL)
				if !ok {
					t.Fatalf("bad UIDL %q", info.UIDL)
				}
				if tc.sameEpoch && (epoch != oldEpoch || uid != 5) {
					t.Errorf("new UIDL %s: want uid 5 in epoch %08X", info.UIDL, oldEpoch)
				}
				if !tc.sameEpoch && epoch <= oldEpoch {
					t.Errorf("new UIDL %s: want an epoch after %08X", info.UIDL, oldEpoch)
				}
				msgs, _ := snapshotOf(t, s, "alice")
				if diff := cmp.Diff(append(kept, info), msgs); diff != "" {
					t.Errorf("final snapshot (-want +got):\n%s", diff)
				}
			})
		}
	}
}

// TestFlagChanges: other Maildir tools move new/ to cur/ and rewrite the
// flags after ':2,'; the UIDL must survive both, for popbox's own files and
// for foreign ones.
func TestFlagChanges(t *testing.T) {
	s, root := testStore(t, false)
	mb := mdir(root, "alice")
	deliver(t, s, "alice", "own\n")
	dropForeign(t, mb, "new", "1700000001.X.other", "foreign\n")
	want, _ := snapshotOf(t, s, "alice")
	steps := []func(name string) (from, to string){
		func(n string) (string, string) { return mb.path("new", n), mb.path("cur", n+":2,") },
		func(n string) (string, string) {
			return mb.path("cur", n), mb.path("cur", strings.TrimSuffix(n, ",")+",S")
		},
		func(n string) (string, string) {
			return mb.path("cur", n), mb.path("cur", strings.Split(n, ":")[0]+":2,RST")
		},
	}
	for i, step := range steps {
		for _, sub := range []string{"new", "cur"} {
			for _, n := range names(t, mb, sub) {
				from, to := step(n)
				if filepath.Base(filepath.Dir(from)) != sub {
					continue
				}
				if err := os.Rename(from, to); err != nil {
					t.Fatal(err)
				}
			}
		}
		got, bodies := snapshotOf(t, s, "alice")
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("step %d (-want +got):\n%s", i, diff)
		}
		if diff := cmp.Diff([]string{"own\n", "foreign\n"}, bodies); diff != "" {
			t.Errorf("step %d bodies (-want +got):\n%s", i, diff)
		}
	}
	if n := names(t, mb, "cur"); len(n) != 2 || !strings.HasSuffix(n[0], ":2,RST") {
		t.Errorf("cur/ = %v", n)
	}
}

// TestMovedDuringSession: a file moved or re-flagged between the snapshot
// and RETR/DELE is still found, by its key.
func TestMovedDuringSession(t *testing.T) {
	s, root := testStore(t, false)
	mb := mdir(root, "alice")
	a := deliver(t, s, "alice", "a\n")
	deliver(t, s, "alice", "b\n")
	m, _, _ := session(t, s, "alice")
	for _, n := range names(t, mb, "new") {
		if err := os.Rename(mb.path("new", n), mb.path("cur", n+":2,S")); err != nil {
			t.Fatal(err)
		}
	}
	if got := readMsg(t, m, 1); got != "b\n" {
		t.Errorf("moved message reads %q", got)
	}
	if err := m.Commit([]int{1}); err != nil {
		t.Fatal(err)
	}
	if n := names(t, mb, "cur"); len(n) != 1 || string(mustRead(t, mb.path("cur", n[0]))) != "a\n" {
		t.Errorf("cur/ after deleting the moved message: %v", n)
	}
	msgs, _ := snapshotOf(t, s, "alice")
	if diff := cmp.Diff([]store.MessageInfo{a}, msgs); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestRemovedBehindBack(t *testing.T) {
	s, root := testStore(t, false)
	mb := mdir(root, "alice")
	deliver(t, s, "alice", "a\n")
	b := deliver(t, s, "alice", "b\n")
	m, _, _ := session(t, s, "alice")
	n := names(t, mb, "new")
	slices.Sort(n)
	var gone string
	for _, x := range n {
		if formatUIDL(parseFileName(x).uid, parseFileName(x).epoch) != b.UIDL {
			gone = x
		}
	}
	mustRemove(t, mb.path("new", gone))
	if _, err := m.Open(0); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open of removed message = %v, want fs.ErrNotExist", err)
	}
	if err := m.Commit([]int{0}); err != nil {
		t.Errorf("Commit of removed message: %v", err)
	}
	msgs, _ := snapshotOf(t, s, "alice")
	if diff := cmp.Diff([]store.MessageInfo{b}, msgs); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	// Removed while no session is open: a stale record, dropped.
	mustRemove(t, mb.path("new", names(t, mb, "new")[0]))
	if msgs, _ := snapshotOf(t, s, "alice"); len(msgs) != 0 {
		t.Errorf("stale record listed: %v", msgs)
	}
	if idx, _, _ := s.readIndex(mb); len(idx.recs) != 0 {
		t.Errorf("stale records kept: %+v", idx.recs)
	}
}

// TestDuplicates: a copied file (same name in new/ and cur/, or the same
// popbox fields under another base) must not give two messages one UIDL.
func TestDuplicates(t *testing.T) {
	s, root := testStore(t, false)
	mb := mdir(root, "alice")
	orig := deliver(t, s, "alice", "original\n")
	n := names(t, mb, "new")[0]
	b := mustRead(t, mb.path("new", n))
	mustWrite(t, mb.path("cur", n+":2,S"), b)                               // same key
	mustWrite(t, mb.path("cur", "copy"+n[strings.Index(n, ","):]+":2,"), b) // same fields
	msgs, bodies := snapshotOf(t, s, "alice")
	if len(msgs) != 3 {
		t.Fatalf("%d messages, want 3", len(msgs))
	}
	if msgs[0] != orig {
		t.Errorf("original lost its UIDL: %+v, want %+v", msgs[0], orig)
	}
	seen := map[string]bool{}
	for _, m := range msgs {
		if seen[m.UIDL] {
			t.Errorf("duplicate UIDL %s", m.UIDL)
		}
		seen[m.UIDL] = true
	}
	if diff := cmp.Diff([]string{"original\n", "original\n", "original\n"}, bodies); diff != "" {
		t.Errorf("bodies (-want +got):\n%s", diff)
	}
	again, _ := snapshotOf(t, s, "alice")
	if diff := cmp.Diff(msgs, again); diff != "" {
		t.Errorf("not stable (-first +second):\n%s", diff)
	}
}

func TestIgnoredEntries(t *testing.T) {
	s, root := testStore(t, false)
	mb := mdir(root, "alice")
	deliver(t, s, "alice", "real\n")
	outside := filepath.Join(root, "secret")
	mustWrite(t, outside, []byte("do not serve\n"))
	if err := os.Symlink(outside, mb.path("new", "1700000000.link.host")); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, mb.path("cur", ".hidden"), []byte("dot file\n"))
	if err := os.Mkdir(mb.path("cur", "subdir"), 0o700); err != nil {
		t.Fatal(err)
	}
	_, bodies := snapshotOf(t, s, "alice")
	if diff := cmp.Diff([]string{"real\n"}, bodies); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestTmpCleanup(t *testing.T) {
	s, root := testStore(t, false)
	mb := mdir(root, "alice")
	deliver(t, s, "alice", "x\n")
	old, fresh := mb.path("tmp", "old"), mb.path("tmp", "fresh")
	mustWrite(t, old, []byte("abandoned"))
	mustWrite(t, fresh, []byte("in progress"))
	past := time.Now().Add(-37 * time.Hour)
	if err := os.Chtimes(old, past, past); err != nil {
		t.Fatal(err)
	}
	snapshotOf(t, s, "alice")
	if diff := cmp.Diff([]string{"fresh"}, names(t, mb, "tmp")); diff != "" {
		t.Errorf("tmp/ (-want +got):\n%s", diff)
	}
}

// TestLeftoverLocks: lock files are never meaningful by themselves; junk,
// or a directory where a lock file should be, locks nobody out.
func TestLeftoverLocks(t *testing.T) {
	s, root := testStore(t, false)
	mb := mdir(root, "alice")
	if err := os.MkdirAll(mb.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, mb.path(sessionLockName), []byte("pid 12345 on otherhost\n"))
	if err := os.Mkdir(mb.path(indexLockName), 0o700); err != nil {
		t.Fatal(err)
	}
	info := deliver(t, s, "alice", "x\n")
	m, msgs, _ := session(t, s, "alice")
	if diff := cmp.Diff([]store.MessageInfo{info}, msgs); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if _, err := s.Open(context.Background(), "alice"); !errors.Is(err, store.ErrInUse) {
		t.Errorf("second Open = %v, want ErrInUse", err)
	}
	m.Close()
}

// TestCrossProcessLock runs a second copy of this test binary that holds
// alice's maildrop, checks this process gets ErrInUse while Deliver still
// works, then kills the holder with SIGKILL and checks the lock is free.
func TestCrossProcessLock(t *testing.T) {
	s, root := testStore(t, false)
	deliver(t, s, "alice", "before\n")

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), lockHelperEnv+"="+root)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	line := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(out).ReadString('\n')
		line <- l
	}()
	select {
	case l := <-line:
		if l != "locked\n" {
			t.Fatalf("helper said %q", l)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("helper did not take the lock")
	}

	if _, err := s.Open(context.Background(), "alice"); !errors.Is(err, store.ErrInUse) {
		t.Fatalf("Open while another process holds the lock = %v, want ErrInUse", err)
	}
	during := deliver(t, s, "alice", "during\n")

	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err == nil {
		t.Fatal("helper exited cleanly; it should have been killed")
	}
	m, msgs, bodies := session(t, s, "alice")
	defer m.Close()
	if diff := cmp.Diff([]string{"before\n", "during\n"}, bodies); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if msgs[1] != during {
		t.Errorf("message delivered during the other session: %+v, want %+v", msgs[1], during)
	}
}

// TestSameProcessLock: two Opens in one process conflict although flock
// would let one open file description take the lock twice.
func TestSameProcessLock(t *testing.T) {
	s1, root := testStore(t, false)
	s2, err := New(root, Options{NoFsync: true}) // a second Store on the same root
	if err != nil {
		t.Fatal(err)
	}
	m, err := s1.Open(context.Background(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []*Store{s1, s2} {
		if _, err := s.Open(context.Background(), "alice"); !errors.Is(err, store.ErrInUse) {
			t.Errorf("Open = %v, want ErrInUse", err)
		}
	}
	m.Close()
	m, err = s2.Open(context.Background(), "alice")
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	m.Close()
}

func TestOpenCancelled(t *testing.T) {
	s, root := testStore(t, false)
	deliver(t, s, "alice", "x\n")
	// Hold the index lock as a slow delivery would; a cancelled Open must
	// give up and release the session lock.
	lk, err := tryLock(mdir(root, "alice").path(indexLockName))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := s.Open(ctx, "alice"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Open = %v, want DeadlineExceeded", err)
	}
	unlock(lk)
	m, _, _ := session(t, s, "alice")
	m.Close()
}

func TestValidUser(t *testing.T) {
	tests := []struct {
		user string
		ok   bool
	}{
		{"alice", true},
		{"bob@example.com", true},
		{"ünïcode", true},
		{"a.b", true},
		{strings.Repeat("u", 255), true},
		{strings.Repeat("u", 256), false},
		{"", false},
		{".", false},
		{"..", false},
		{".alice", false},
		{"a/b", false},
		{"a\x00", false},
		{"a\x1b[0m", false},
		{"a\u0085", false}, // C1 control
		{"\xff\xfe", false},
	}
	for _, tc := range tests {
		err := ValidUser(tc.user)
		if tc.ok != (err == nil) || (err != nil && !errors.Is(err, store.ErrInvalidUser)) {
			t.Errorf("ValidUser(%q) = %v, want ok=%v", tc.user, err, tc.ok)
		}
	}
}
