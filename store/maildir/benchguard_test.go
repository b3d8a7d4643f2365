package maildir

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestOpenGuard: a warm Open of 10,000 messages (two readdirs, one index
// read, no message file) costs a bounded multiple of the two readdirs
// alone, measured in the same run: an Open that started reading or
// stat'ing every message would be many times that. About 3 on the
// development machine; the bound is 15.
func TestOpenGuard(t *testing.T) {
	if testing.Short() {
		t.Skip("benchmarks in -short")
	}
	if raceEnabled {
		t.Skip("timing guard: the race detector distorts the ratio")
	}
	const n = 10_000
	root := t.TempDir()
	s, err := New(root, Options{NoFsync: true, SnapshotCache: -1}) // reconcile is what is guarded
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := range n {
		if _, err := s.Deliver(ctx, "alice", stringsReader(i)); err != nil {
			t.Fatal(err)
		}
	}
	if m, err := s.Open(ctx, "alice"); err != nil {
		t.Fatal(err)
	} else {
		m.Close()
	}
	dir := filepath.Join(root, "alice", "Maildir")
	open := func(b *testing.B) {
		for b.Loop() {
			m, err := s.Open(ctx, "alice")
			if err != nil {
				b.Fatal(err)
			}
			if len(m.Messages()) != n {
				b.Fatalf("%d messages", len(m.Messages()))
			}
			m.Close()
		}
	}
	readdirs := benchReaddirs(dir)
	const maxRatio = 15.0
	ratio := guardRatio(t, fmt.Sprintf("warm Open of %d messages", n), open, readdirs, maxRatio)
	if ratio > maxRatio {
		t.Errorf("a warm Open takes %.1f times the readdirs it needs, want at most %.0f", ratio, maxRatio)
	}
}

func stringsReader(i int) *strings.Reader {
	return strings.NewReader(fmt.Sprintf("From: a@example.com\nSubject: %d\n\nbody\n", i))
}

// TestSnapshotCacheGuard: an Open of an unchanged 10,000-message mailbox
// served by the snapshot cache costs a small fraction of the two readdirs
// a reconcile needs, measured in the same run. A cache that stopped
// hitting (a validation that always fails, say) costs several times the
// readdirs. About 0.01 on the development machine; the bound is 0.25.
func TestSnapshotCacheGuard(t *testing.T) {
	if testing.Short() {
		t.Skip("benchmarks in -short")
	}
	if raceEnabled {
		t.Skip("timing guard: the race detector distorts the ratio")
	}
	const n = 10_000
	root := t.TempDir()
	s, err := New(root, Options{NoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	s.snaps.racy = 0 // the files are new; see racyWindow
	ctx := context.Background()
	for i := range n {
		if _, err := s.Deliver(ctx, "alice", stringsReader(i)); err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Join(root, "alice", "Maildir")
	var newest int64
	for _, sub := range []string{"new", "cur", indexName} {
		if st, err := os.Stat(filepath.Join(dir, sub)); err == nil {
			newest = max(newest, st.ModTime().UnixNano())
		}
	}
	// Past the file system's clock tick, so the first Open may cache.
	for time.Now().UnixNano() < newest+int64(50*time.Millisecond) {
		time.Sleep(10 * time.Millisecond)
	}
	for range 2 { // the first reconciles (and may rename), the second caches
		m, err := s.Open(ctx, "alice")
		if err != nil {
			t.Fatal(err)
		}
		m.Close()
	}
	reads := s.indexReads.Load()
	open := func(b *testing.B) {
		for b.Loop() {
			m, err := s.Open(ctx, "alice")
			if err != nil {
				b.Fatal(err)
			}
			m.Close()
		}
	}
	readdirs := benchReaddirs(dir)
	const maxRatio = 0.25
	ratio := guardRatio(t, fmt.Sprintf("cached Open of %d messages", n), open, readdirs, maxRatio)
	if got := s.indexReads.Load() - reads; got != 0 {
		t.Errorf("the cached Opens read the index %d times", got)
	}
	if ratio > maxRatio {
		t.Errorf("a cached Open takes %.2f times the readdirs of a reconcile, want at most %.2f", ratio, maxRatio)
	}
}

// benchReaddirs lists dir's new/ and cur/ by name, what a reconcile must
// read at least: the guards' baseline.
func benchReaddirs(dir string) func(*testing.B) {
	return func(b *testing.B) {
		for b.Loop() {
			for _, sub := range []string{"new", "cur"} {
				f, err := os.Open(filepath.Join(dir, sub))
				if err != nil {
					b.Fatal(err)
				}
				if _, err := f.Readdirnames(-1); err != nil {
					b.Fatal(err)
				}
				f.Close()
			}
		}
	}
}

// guardRatio measures hot against base, up to three times while the ratio
// is over maxRatio (a noisy machine), logging each attempt, and returns
// the last ratio.
func guardRatio(t *testing.T, what string, hot, base func(*testing.B), maxRatio float64) float64 {
	t.Helper()
	var ratio float64
	for attempt := range 3 {
		h, b := testing.Benchmark(hot), testing.Benchmark(base)
		ratio = float64(h.NsPerOp()) / float64(b.NsPerOp())
		t.Logf("attempt %d: %s %v/op, the two readdirs %v/op: ratio %.3f", attempt+1, what, h.NsPerOp(), b.NsPerOp(), ratio)
		if ratio <= maxRatio {
			break
		}
	}
	return ratio
}
