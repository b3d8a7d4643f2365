package main

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/popbox/popbox/config"
	"github.com/popbox/popbox/store"
)

// adminStub records the maintenance calls.
type adminStub struct {
	store.Admin
	mu      sync.Mutex
	purges  []time.Time
	expires []time.Time
	calls   chan struct{}
}

func (a *adminStub) PurgeAll(_ context.Context, now time.Time) (int, error) {
	a.mu.Lock()
	a.purges = append(a.purges, now)
	a.mu.Unlock()
	a.calls <- struct{}{}
	return 2, nil
}

func (a *adminStub) ExpireAll(_ context.Context, olderThan time.Time) (int, []string, error) {
	a.mu.Lock()
	a.expires = append(a.expires, olderThan)
	a.mu.Unlock()
	return 3, []string{"busy"}, nil
}

// TestMaintain: the background job purges at start and then every
// interval, expires mail older than expire_days only when that is set, and
// stops with its context.
func TestMaintain(t *testing.T) {
	for _, days := range []int{0, 30} {
		st := &adminStub{calls: make(chan struct{}, 10)}
		mail := config.Mail{KeepDeletedDays: 7, ExpireDays: days, MaintenanceInterval: config.Duration{Duration: 50 * time.Millisecond}}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		start := time.Now()
		go func() { maintain(ctx, st, mail, slog.New(slog.NewTextHandler(io.Discard, nil))); close(done) }()
		for range 2 {
			select {
			case <-st.calls:
			case <-time.After(10 * time.Second):
				t.Fatal("no purge run")
			}
		}
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("maintain did not stop with its context")
		}
		st.mu.Lock()
		if len(st.purges) < 2 {
			t.Errorf("expire_days %d: %d purges, want at least 2", days, len(st.purges))
		}
		if days == 0 && len(st.expires) != 0 {
			t.Errorf("expire_days 0: ExpireAll called %d times", len(st.expires))
		}
		if days > 0 {
			if len(st.expires) < 2 {
				t.Errorf("expire_days %d: %d expiry runs, want at least 2", days, len(st.expires))
			} else if age := start.Sub(st.expires[0]); age < 30*24*time.Hour-time.Minute || age > 30*24*time.Hour+time.Minute {
				t.Errorf("expire_days 30: expired mail older than %v ago", age)
			}
		}
		st.mu.Unlock()
	}
}
