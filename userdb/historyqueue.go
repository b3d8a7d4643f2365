package userdb

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// The login history is written behind the login, in batches: a server
// under load logs in hundreds of clients a second, and one transaction per
// login, each ending in a WAL fsync and each waiting for SQLite's single
// writer, put the database on every client's critical path (in the
// benchmark, the 99th percentile of a full session fell from 84 ms to
// 6 ms without it). A batch costs one transaction and one fsync however
// many events it holds (on PostgreSQL: one commit, and in it one row lock
// per user however many of the user's logins it holds).
//
// What this trades: events queued but not yet written when the process is
// killed are lost. They are audit information, never mail, and the window
// is one batch write. LastLogin, which LOGIN-DELAY relies on, also looks at
// the queue, so a queued success counts at once.

// maxQueuedLogins bounds the queue; beyond it QueueLogin writes in the
// caller, which slows logins down rather than growing memory without end
// when the database cannot keep up.
const maxQueuedLogins = 10000

// historyWriteTimeout bounds one batch write.
const historyWriteTimeout = 30 * time.Second

type queuedLogin struct {
	name string // canonical
	ev   LoginEvent
}

// historyQueue holds login events not yet written. Its zero value is
// ready; the writer goroutine starts with the first event.
type historyQueue struct {
	mu      sync.Mutex
	pending []queuedLogin
	// lastOK is the newest queued success per user, for LastLogin.
	lastOK map[string]time.Time
	// writing is true while the writer goroutine runs; idle is closed and
	// replaced when it stops, for Flush.
	writing bool
	idle    chan struct{}
	closed  bool
}

// QueueLogin adds ev to name's login history in the background, like
// RecordLogin without waiting for the write. Events are written in batches
// within milliseconds; LastLogin sees a queued success at once. Events of
// unknown or invalid names are dropped, as RecordLogin refuses them; write
// errors are logged. After Close, or with the queue full, it writes
// synchronously.
func (db *DB) QueueLogin(ctx context.Context, name string, ev LoginEvent) {
	if ValidName(name) != nil {
		return
	}
	name = Canonical(name)
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	q := &db.history
	q.mu.Lock()
	if q.closed || len(q.pending) >= maxQueuedLogins {
		q.mu.Unlock()
		ctx, cancel := context.WithTimeout(ctx, historyWriteTimeout)
		defer cancel()
		db.logHistoryError(db.RecordLogin(ctx, name, ev), name)
		return
	}
	q.pending = append(q.pending, queuedLogin{name, ev})
	if ev.Success {
		if q.lastOK == nil {
			q.lastOK = make(map[string]time.Time)
		}
		if ev.Time.After(q.lastOK[name]) {
			q.lastOK[name] = ev.Time
		}
	}
	if !q.writing {
		q.writing = true
		if q.idle == nil {
			q.idle = make(chan struct{})
		}
		go db.writeHistory()
	}
	q.mu.Unlock()
}

// writeHistory writes batches until the queue is empty; whatever arrives
// during a write makes the next batch.
func (db *DB) writeHistory() {
	q := &db.history
	for {
		q.mu.Lock()
		batch := q.pending
		q.pending = nil
		if len(batch) == 0 {
			q.writing = false
			close(q.idle)
			q.idle = nil
			q.mu.Unlock()
			return
		}
		q.mu.Unlock()

		ctx, cancel := context.WithTimeout(context.Background(), historyWriteTimeout)
		err := db.recordBatch(ctx, batch)
		cancel()
		if err != nil {
			db.log.Warn("cannot record login history", "events", len(batch), "err", err)
		}

		q.mu.Lock()
		for _, l := range batch {
			if t, ok := q.lastOK[l.name]; ok && !t.After(l.ev.Time) {
				delete(q.lastOK, l.name)
			}
		}
		q.mu.Unlock()
	}
}

// recordBatch writes events in one transaction: insert all, then prune
// each (user, kind) once.
func (db *DB) recordBatch(ctx context.Context, batch []queuedLogin) error {
	tx, err := db.sql.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	type kind struct {
		name    string
		success bool
	}
	// The users' row locks first (PostgreSQL), all in one statement and
	// in one order, so that batches of two frontends cannot deadlock.
	var names []string
	seen := make(map[string]bool)
	for _, l := range batch {
		if !seen[l.name] {
			seen[l.name] = true
			names = append(names, l.name)
		}
	}
	if err := tx.lockUsers(ctx, names); err != nil {
		return fmt.Errorf("locking users: %w", err)
	}
	touched := make(map[kind]bool)
	for _, l := range batch {
		err := insertEvent(ctx, tx, l.name, l.ev)
		if errors.Is(err, ErrNotFound) {
			continue // deleted meanwhile, or never was
		}
		if err != nil {
			return fmt.Errorf("recording login of %q: %w", l.name, err)
		}
		touched[kind{l.name, l.ev.Success}] = true
	}
	for k := range touched {
		if err := pruneEvents(ctx, tx, k.name, k.success); err != nil {
			return fmt.Errorf("pruning login history of %q: %w", k.name, err)
		}
	}
	return tx.Commit()
}

// FlushLogins waits until every event queued before the call is written
// (or failed to be), or ctx ends.
func (db *DB) FlushLogins(ctx context.Context) error {
	q := &db.history
	q.mu.Lock()
	idle := q.idle
	q.mu.Unlock()
	if idle == nil {
		return nil
	}
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("userdb: waiting for the login history: %w", ctx.Err())
	}
}

// queuedLastLogin returns the newest queued success of the canonical name.
func (db *DB) queuedLastLogin(name string) time.Time {
	q := &db.history
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.lastOK[name]
}

// closeHistory stops queueing and writes what is queued.
func (db *DB) closeHistory() {
	q := &db.history
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), historyWriteTimeout)
	defer cancel()
	if err := db.FlushLogins(ctx); err != nil {
		db.log.Warn("login history not fully written at close", "err", err)
	}
}

func (db *DB) logHistoryError(err error, name string) {
	if err == nil || errors.Is(err, ErrNotFound) || errors.Is(err, ErrInvalidName) {
		return
	}
	db.log.Warn("cannot record login", "user", name, "err", err)
}
