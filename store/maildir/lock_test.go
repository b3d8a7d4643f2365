package maildir

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// TestTurns: one holder per key at a time, a waiter gives up with its
// context, and keys are forgotten once nobody holds or waits.
func TestTurns(t *testing.T) {
	var q turns
	ctx := context.Background()
	a, err := q.acquire(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := q.acquire(ctx, "b") // another key does not wait
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := q.acquire(short, "a"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second acquire of a held key = %v, want DeadlineExceeded", err)
	}
	got := make(chan *turn)
	go func() {
		w, err := q.acquire(ctx, "a")
		if err != nil {
			t.Error(err)
		}
		got <- w
	}()
	select {
	case <-got:
		t.Fatal("a waiter got the turn while it was held")
	case <-time.After(20 * time.Millisecond):
	}
	q.release(a)
	w := <-got
	q.release(w)
	q.release(b)
	if len(q.m) != 0 {
		t.Errorf("%d keys left after every turn was released", len(q.m))
	}
}

// TestLockIndexConcurrent: 8 goroutines of one store take a mailbox's index
// lock 50 times each; never two at once.
func TestLockIndexConcurrent(t *testing.T) {
	s, _ := testStore(t, false)
	deliver(t, s, "alice", "x\n")
	mb, err := s.mailbox("alice")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	inside := 0
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				lk, err := s.lockIndex(context.Background(), mb)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				inside++
				if inside != 1 {
					t.Errorf("%d holders of the index lock", inside)
				}
				mu.Unlock()
				time.Sleep(10 * time.Microsecond)
				mu.Lock()
				inside--
				mu.Unlock()
				lk.unlock()
			}
		})
	}
	wg.Wait()
}
