package maildir

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/popbox/popbox/store"
)

// cachedStore returns a store whose snapshot cache trusts times older than
// racy, and a reader on the same root with the cache off.
func cachedStore(t *testing.T, racy time.Duration, limit int) (cached, plain *Store, root string) {
	t.Helper()
	root = t.TempDir()
	cached, err := New(root, Options{NoFsync: true, SnapshotCache: limit})
	if err != nil {
		t.Fatal(err)
	}
	cached.snaps.racy = racy
	plain, err = New(root, Options{NoFsync: true, SnapshotCache: -1})
	if err != nil {
		t.Fatal(err)
	}
	return cached, plain, root
}

func fillT(t *testing.T, s *Store, user string, n int) {
	t.Helper()
	for i := range n {
		deliver(t, s, user, fmt.Sprintf("Subject: %d\n\nbody %d\n", i, i))
	}
}

// openClose returns user's snapshot and whether it came without reading
// the index (from the cache).
func openClose(t *testing.T, s *Store, user string) ([]store.MessageInfo, bool) {
	t.Helper()
	reads := s.indexReads.Load()
	m, err := s.Open(context.Background(), user)
	if err != nil {
		t.Fatal(err)
	}
	msgs := m.Messages()
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	return msgs, s.indexReads.Load() == reads
}

// TestSnapshotCacheHit: an unchanged big mailbox is served from the cache,
// with the same snapshot, and its messages read as before.
func TestSnapshotCacheHit(t *testing.T) {
	s, _, _ := cachedStore(t, 0, 0)
	fillT(t, s, "alice", minCachedMessages)
	time.Sleep(20 * time.Millisecond) // past the file system's time granularity
	want, hit := openClose(t, s, "alice")
	if hit {
		t.Fatal("first Open served from the cache")
	}
	for range 3 {
		got, hit := openClose(t, s, "alice")
		if !hit {
			t.Fatal("Open of an unchanged mailbox read the index")
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("cached snapshot differs (-want +got):\n%s", diff)
		}
	}
	m, _, bodies := session(t, s, "alice")
	m.Close()
	if bodies[7] != "Subject: 7\n\nbody 7\n" {
		t.Errorf("message 8 reads %q", bodies[7])
	}
}

// TestSnapshotCacheRacy: a mailbox changed within the racy window is not
// cached, however often it is opened.
func TestSnapshotCacheRacy(t *testing.T) {
	s, _, _ := cachedStore(t, time.Hour, 0)
	fillT(t, s, "alice", minCachedMessages)
	for range 3 {
		if _, hit := openClose(t, s, "alice"); hit {
			t.Fatal("a mailbox changed within the racy window came from the cache")
		}
	}
}

// TestSnapshotCacheSmallAndLimit: small mailboxes are not cached, and the
// cache keeps within its limit by dropping the least recently used.
func TestSnapshotCacheSmallAndLimit(t *testing.T) {
	s, _, _ := cachedStore(t, 0, 2*minCachedMessages)
	fillT(t, s, "small", minCachedMessages-1)
	for _, u := range []string{"a", "b", "c"} {
		fillT(t, s, u, minCachedMessages)
	}
	time.Sleep(20 * time.Millisecond)
	for _, u := range []string{"small", "a", "b", "a", "c"} {
		openClose(t, s, u)
	}
	// In this order: a miss caches its mailbox and evicts another.
	for _, c := range []struct {
		user string
		want bool
	}{{"small", false}, {"c", true}, {"a", true}, {"b", false}} {
		if _, hit := openClose(t, s, c.user); hit != c.want {
			t.Errorf("%s from the cache: %v, want %v", c.user, hit, c.want)
		}
	}
	if s.snaps.total > 2*minCachedMessages {
		t.Errorf("cache holds %d messages, limit %d", s.snaps.total, 2*minCachedMessages)
	}
}

// TestSnapshotCacheNeverStale changes a mailbox in every way popbox and
// other tools do, at random moments, and checks after each change that the
// cached store sees exactly what a store without the cache sees. The racy
// window is shortened to 30 ms and half the steps come sooner than that,
// so both the cache and its racy rule are exercised.
func TestSnapshotCacheNeverStale(t *testing.T) {
	cached, plain, root := cachedStore(t, 30*time.Millisecond, 0)
	mb := mdir(root, "alice")
	fillT(t, cached, "alice", minCachedMessages+10)
	rng := rand.New(rand.NewPCG(1, uint64(time.Now().UnixNano())))
	ctx := context.Background()
	hits := 0
	foreign := 0
	steps := []struct {
		name string
		f    func() error
	}{
		{"deliver", func() error {
			_, err := plain.Deliver(ctx, "alice", strings.NewReader("new\n"))
			return err
		}},
		{"foreign into new", func() error {
			foreign++
			dropForeign(t, mb, "new", fmt.Sprintf("1700000%03d.X%d.other", foreign, foreign), "foreign\n")
			return nil
		}},
		{"flag change in cur", func() error {
			for _, sub := range []string{"new", "cur"} {
				n := names(t, mb, sub)
				if len(n) == 0 {
					continue
				}
				from := n[rng.IntN(len(n))]
				base := strings.Split(from, ":")[0]
				return os.Rename(mb.path(sub, from), mb.path("cur", base+":2,S"+strings.Repeat("T", rng.IntN(2))))
			}
			return nil
		}},
		{"foreign delete", func() error {
			n := names(t, mb, "cur")
			if len(n) == 0 {
				return nil
			}
			return os.Remove(mb.path("cur", n[rng.IntN(len(n))]))
		}},
		{"POP3 delete", func() error {
			m, err := plain.Open(ctx, "alice")
			if err != nil {
				return err
			}
			return m.Commit([]int{rng.IntN(len(m.Messages()))})
		}},
	}
	for i := range 80 {
		step := steps[rng.IntN(len(steps))]
		if err := step.f(); err != nil {
			t.Fatalf("step %d, %s: %v", i, step.name, err)
		}
		if rng.IntN(2) == 0 {
			time.Sleep(40 * time.Millisecond)
		}
		for range 2 {
			got, hit := openClose(t, cached, "alice")
			want, _ := openClose(t, plain, "alice")
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("step %d, after %s: cached snapshot differs (-plain +cached):\n%s", i, step.name, diff)
			}
			if hit {
				hits++
			}
		}
	}
	t.Logf("%d of 160 Opens served from the cache", hits)
	if hits == 0 {
		t.Error("the cache was never used: the test proves nothing")
	}
}

// BenchmarkOpenWarm100k: a login to a mailbox of 100,000 unchanged
// messages, with and without the snapshot cache.
func BenchmarkOpenWarm100k(b *testing.B) {
	root := b.TempDir()
	s, err := New(root, Options{NoFsync: true})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	for i := range 100_000 {
		if _, err := s.Deliver(ctx, "alice", strings.NewReader(fmt.Sprintf("Subject: %d\n\nx\n", i))); err != nil {
			b.Fatal(err)
		}
	}
	s.snaps.racy = 0
	time.Sleep(20 * time.Millisecond)
	for _, bc := range []struct {
		name  string
		limit int
	}{{"cache", 0}, {"nocache", -1}} {
		b.Run(bc.name, func(b *testing.B) {
			s, err := New(root, Options{NoFsync: true, SnapshotCache: bc.limit})
			if err != nil {
				b.Fatal(err)
			}
			s.snaps.racy = 0
			if m, err := s.Open(ctx, "alice"); err == nil { // fills the cache
				m.Close()
			}
			for b.Loop() {
				m, err := s.Open(ctx, "alice")
				if err != nil {
					b.Fatal(err)
				}
				m.Close()
			}
		})
	}
}
