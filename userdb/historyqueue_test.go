package userdb

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestQueueLogin: queued events are written in batches, pruned like
// RecordLogin's, visible to LastLogin before they are written, dropped for
// unknown users, and written by Close.
func TestQueueLogin(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		path := b.path(t)
		db, err := Open(path, Options{Hash: cheapParams()})
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		for _, name := range []string{"alice", "bob"} {
			if err := db.Add(ctx, name, "pw"); err != nil {
				t.Fatal(err)
			}
		}
		base := time.Now().Add(-time.Hour).Truncate(time.Second)
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Go(func() {
				for i := range 50 {
					name := []string{"alice", "bob", "nobody", "bad name"}[(g+i)%4]
					db.QueueLogin(ctx, name, LoginEvent{
						Time:       base.Add(time.Duration(g*50+i) * time.Second),
						RemoteAddr: fmt.Sprintf("192.0.2.%d:1", g),
						Mechanism:  "PLAIN",
						Success:    i%2 == 0,
					})
				}
			})
		}
		wg.Wait()
		last := time.Now().Truncate(time.Second)
		db.QueueLogin(ctx, "alice", LoginEvent{Time: last, Mechanism: "USER", Success: true})
		// Seen at once, written or not.
		if got, err := db.LastLogin(ctx, "alice"); err != nil || !got.Equal(last.UTC()) {
			t.Fatalf("LastLogin right after QueueLogin = %v, %v; want %v", got, err, last.UTC())
		}
		if err := db.FlushLogins(ctx); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"alice", "bob"} {
			h, err := db.LoginHistory(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			if len(h.Successes) != MaxLoginHistory || len(h.Failures) != MaxLoginHistory {
				t.Errorf("%s: %d successes and %d failures kept, want %d each", name, len(h.Successes), len(h.Failures), MaxLoginHistory)
			}
		}
		var n int
		if err := db.sql.QueryRowContext(t.Context(), `SELECT count(*) FROM login_events WHERE "user" NOT IN ('alice', 'bob')`).Scan(&n); err != nil || n != 0 {
			t.Errorf("events of unknown users: %d, %v", n, err)
		}

		// Close writes what is still queued.
		late := last.Add(time.Hour)
		db.QueueLogin(ctx, "bob", LoginEvent{Time: late, Mechanism: "SCRAM-SHA-256", Success: true})
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		db2 := openTest(t, path, Options{})
		if got, err := db2.LastLogin(ctx, "bob"); err != nil || !got.Equal(late.UTC()) {
			t.Errorf("LastLogin after Close and reopen = %v, %v; want %v", got, err, late.UTC())
		}
		// After Close, QueueLogin writes synchronously rather than losing it.
		db.QueueLogin(ctx, "bob", LoginEvent{Time: late.Add(time.Hour), Success: true})
	})
}

// BenchmarkQueueLogin against BenchmarkRecordLogin: the cost a login pays,
// per backend.
func BenchmarkQueueLogin(b *testing.B) {
	forEachBackendB(b, func(b *testing.B, db *DB) {
		ctx := context.Background()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				db.QueueLogin(ctx, "alice", LoginEvent{RemoteAddr: "192.0.2.1:1", Mechanism: "PLAIN", Success: true})
			}
		})
		if err := db.FlushLogins(ctx); err != nil {
			b.Fatal(err)
		}
	})
}

func BenchmarkRecordLogin(b *testing.B) {
	forEachBackendB(b, func(b *testing.B, db *DB) {
		ctx := context.Background()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := db.RecordLogin(ctx, "alice", LoginEvent{RemoteAddr: "192.0.2.1:1", Mechanism: "PLAIN", Success: true}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// forEachBackendB runs f per backend on a new database with the user
// alice.
func forEachBackendB(b *testing.B, f func(b *testing.B, db *DB)) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			db, err := Open(be.path(b), Options{Hash: cheapParams()})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { db.Close() })
			if err := db.Add(context.Background(), "alice", "pw"); err != nil {
				b.Fatal(err)
			}
			f(b, db)
		})
	}
}
