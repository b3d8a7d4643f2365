package maildir

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/popbox/popbox/store"
)

// fill delivers n small messages to user (fsync off: the setup is not what
// is measured).
func fill(b *testing.B, root, user string, n int) {
	b.Helper()
	s, err := New(root, Options{NoFsync: true})
	if err != nil {
		b.Fatal(err)
	}
	for i := range n {
		body := fmt.Sprintf("From: a@example.com\nSubject: %d\n\nbody\n", i)
		if _, err := s.Deliver(context.Background(), user, strings.NewReader(body)); err != nil {
			b.Fatal(err)
		}
	}
}

func benchmarkOpenWarm(b *testing.B, n int) {
	root := b.TempDir()
	fill(b, root, "alice", n)
	// Without the snapshot cache, which would serve most iterations once
	// the files are older than its racy window: reconcile is measured.
	s, err := New(root, Options{SnapshotCache: -1})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	m, err := s.Open(ctx, "alice") // warm the index
	if err != nil {
		b.Fatal(err)
	}
	m.Close()
	for b.Loop() {
		m, err := s.Open(ctx, "alice")
		if err != nil {
			b.Fatal(err)
		}
		if got := len(m.Messages()); got != n {
			b.Fatalf("%d messages, want %d", got, n)
		}
		m.Close()
	}
}

// BenchmarkOpenWarm10k: Open+Messages+Close on 10,000 messages whose index
// is current: two readdirs and one index read, no message file opened.
func BenchmarkOpenWarm10k(b *testing.B) { benchmarkOpenWarm(b, 10_000) }

// BenchmarkDeliver: one 4 KiB message per iteration, with and without
// fsync (with it, the cost is the four fsyncs: file, counter, new/, index).
func BenchmarkDeliver(b *testing.B) {
	body := bytes.Repeat([]byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n"), 64)
	for _, fsync := range []bool{true, false} {
		b.Run(fmt.Sprintf("fsync=%v", fsync), func(b *testing.B) {
			s, err := New(b.TempDir(), Options{NoFsync: !fsync})
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if _, err := s.Deliver(ctx, "alice", bytes.NewReader(body)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDeliverQuota: delivery under a quota into a mailbox that already
// holds 10,000 messages, without fsync: the check reads the totals from the
// counter, so the cost is that of BenchmarkDeliver/fsync=false.
func BenchmarkDeliverQuota(b *testing.B) {
	root := b.TempDir()
	fill(b, root, "alice", 10_000)
	q := store.Quota{MaxBytes: 1 << 40, MaxMessages: 1 << 30}
	s, err := New(root, Options{NoFsync: true, Quota: func(context.Context, string) (store.Quota, error) { return q, nil }})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	body := bytes.Repeat([]byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n"), 64)
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := s.Deliver(ctx, "alice", bytes.NewReader(body)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkImport: imports with literal UIDLs into a mailbox of 10,000
// messages, without fsync: the duplicate check reads only what was
// appended since the previous import.
func BenchmarkImport(b *testing.B) {
	root := b.TempDir()
	fill(b, root, "alice", 10_000)
	s, err := New(root, Options{NoFsync: true})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	i := 0
	for b.Loop() {
		i++
		if _, err := s.Import(ctx, "alice", strings.NewReader("Subject: x\n\nbody\n"), fmt.Sprintf("X-UIDL-%d", i)); err != nil {
			b.Fatal(err)
		}
	}
}
