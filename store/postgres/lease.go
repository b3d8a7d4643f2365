package postgres

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/popbox/popbox/store"
)

// ErrLeaseLost: a maildrop's session lock expired or was taken over (the
// node was paused, cut off from the database or shut down for longer than
// the lease), so Commit applied nothing: another session may have the
// mailbox now.
var ErrLeaseLost = errors.New("postgres: session lock lost")

// lease is a session lock this node holds: the row in leases whose token
// it got. The token is the fencing token: every grant of a mailbox's lease
// takes a new, larger one from the lease_tokens sequence, so a holder whose
// lease was taken over can tell, and is refused.
type lease struct {
	mailbox int64
	token   int64
	holder  string
	lost    atomic.Bool // a renewal found it expired or taken over
}

// acquireSQL takes a mailbox's lease if nobody holds it or its holder let
// it expire, in one statement, so two nodes cannot both succeed: the row
// (or, for a first lease, the primary key) serializes them, and the loser's
// ON CONFLICT ... WHERE sees the winner's unexpired lease and returns no
// row. Expiry is judged by the database's clock only, so the nodes' clocks
// do not matter.
const acquireSQL = `INSERT INTO leases (mailbox_id, token, holder, expires_at)
	VALUES ($1, nextval('lease_tokens'), $2, now() + make_interval(secs => $3))
	ON CONFLICT (mailbox_id) DO UPDATE
		SET token = excluded.token, holder = excluded.holder, acquired_at = now(), expires_at = excluded.expires_at
		WHERE leases.expires_at <= now()
	RETURNING token`

// acquire takes the lease of mailbox for a session, or returns an error
// wrapping store.ErrInUse at once if another holder has it. The lease is
// then renewed by the renewer until forget.
func (s *Store) acquire(ctx context.Context, mailbox int64, user string) (*lease, error) {
	l := &lease{mailbox: mailbox, holder: fmt.Sprintf("%s#%d", s.node, s.sessions.Add(1))}
	err := s.pool.QueryRow(ctx, acquireSQL, mailbox, l.holder, s.lease.Seconds()).Scan(&l.token)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, s.inUse(ctx, mailbox, user)
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: lock %s: %w", user, ctxErr(ctx, err))
	}
	s.mu.Lock()
	s.held[l.token] = l
	s.mu.Unlock()
	return l, nil
}

// inUse is the ErrInUse error for mailbox, naming the holder for the logs
// when it can.
func (s *Store) inUse(ctx context.Context, mailbox int64, user string) error {
	var holder string
	var left float64
	err := s.pool.QueryRow(ctx, "SELECT holder, extract(epoch FROM expires_at - now())::float8 FROM leases WHERE mailbox_id = $1",
		mailbox).Scan(&holder, &left)
	if err != nil {
		return fmt.Errorf("%w: %s", store.ErrInUse, user)
	}
	return fmt.Errorf("%w: %s (held by %s, lease ends in %.3fs)", store.ErrInUse, user, holder, left)
}

// forget stops renewing l. It does not release the lease.
func (s *Store) forget(l *lease) {
	s.mu.Lock()
	delete(s.held, l.token)
	s.mu.Unlock()
}

// release gives l back, if this node still holds it (the token says so;
// one known lost needs no query).
func (s *Store) release(l *lease) error {
	s.forget(l)
	if l.lost.Load() {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
	defer cancel()
	if _, err := s.pool.Exec(ctx, "DELETE FROM leases WHERE mailbox_id = $1 AND token = $2", l.mailbox, l.token); err != nil {
		return fmt.Errorf("postgres: release session lock (it expires in %v): %w", s.lease, err)
	}
	return nil
}

// verifyLease locks l's row for the rest of tx and checks that l is still
// this node's unexpired lease. From then until tx ends nobody can take the
// lease over (that needs the row), so whatever tx does next is done by the
// lease holder, however long it takes.
func verifyLease(ctx context.Context, tx pgx.Tx, l *lease) error {
	var holder string
	err := tx.QueryRow(ctx, `SELECT holder FROM leases
		WHERE mailbox_id = $1 AND token = $2 AND expires_at > clock_timestamp() FOR UPDATE`, l.mailbox, l.token).Scan(&holder)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%w: lease %d of %s expired or was taken over; nothing was deleted", ErrLeaseLost, l.token, l.holder)
	}
	if err != nil {
		return fmt.Errorf("postgres: check session lock: %w", ctxErr(ctx, err))
	}
	return nil
}

// renewLoop renews every lease this node holds, in one statement every
// LeaseDuration/3, on a connection pool of its own, until the store is
// closed; then it gives back what is still held.
func (s *Store) renewLoop() {
	t := time.NewTicker(s.lease / 3)
	defer t.Stop()
	for {
		select {
		case <-s.life.Done():
			s.releaseHeld()
			return
		case <-t.C:
			s.renew()
		}
	}
}

// renew extends the leases held, each only while it has not expired: one
// that did expire may have been taken over, or may be any moment, so it
// is lost for good; its maildrop's Commit will fail.
func (s *Store) renew() {
	s.mu.Lock()
	tokens := slices.Collect(maps.Keys(s.held))
	s.mu.Unlock()
	if len(tokens) == 0 {
		return
	}
	// A renewal that cannot finish within a third of the lease is retried
	// at the next tick, with a third still left. (It can wait for a row
	// lock only if it races the Commit of a lease it has just stopped
	// renewing; by the next tick that token is no longer in the list.)
	ctx, cancel := context.WithTimeout(s.life, s.lease/3)
	defer cancel()
	rows, err := s.leasePool.Query(ctx, `UPDATE leases SET expires_at = now() + make_interval(secs => $2)
		WHERE token = ANY($1) AND expires_at > now() RETURNING token`, tokens, s.lease.Seconds())
	var renewed []int64
	if err == nil {
		renewed, err = pgx.CollectRows(rows, pgx.RowTo[int64])
	}
	if err != nil {
		if s.life.Err() == nil {
			s.log.Warn("postgres: cannot renew session locks", "node", s.node, "count", len(tokens), "err", err)
		}
		return
	}
	ok := make(map[int64]bool, len(renewed))
	for _, t := range renewed {
		ok[t] = true
	}
	var lost []*lease
	s.mu.Lock()
	for _, t := range tokens {
		if l, held := s.held[t]; held && !ok[t] {
			l.lost.Store(true)
			delete(s.held, t)
			lost = append(lost, l)
		}
	}
	s.mu.Unlock()
	for _, l := range lost {
		s.log.Warn("postgres: session lock lost; the session's deletions will be refused", "holder", l.holder, "token", l.token)
	}
}

// releaseHeld gives back every lease still held, at shutdown.
func (s *Store) releaseHeld() {
	s.mu.Lock()
	held := slices.Collect(maps.Values(s.held))
	clear(s.held)
	s.mu.Unlock()
	if len(held) == 0 {
		return
	}
	tokens := make([]int64, len(held))
	for i, l := range held {
		l.lost.Store(true)
		tokens[i] = l.token
	}
	ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
	defer cancel()
	if _, err := s.leasePool.Exec(ctx, "DELETE FROM leases WHERE token = ANY($1)", tokens); err != nil {
		s.log.Warn("postgres: cannot release session locks at shutdown; they expire", "count", len(held), "in", s.lease, "err", err)
	}
}
