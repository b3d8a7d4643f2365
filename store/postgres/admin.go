package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/popbox/popbox/store"
)

// removed is a message Commit or Expire deleted.
type removed struct {
	uidl        string
	size        int64
	deliveredAt time.Time
}

// removeMessages deletes the live messages of mailbox that also match cond
// (SQL over messages, with $2 as arg) under the mailbox lock: marked
// deleted when deleted mail is kept, else deleted with their chunks (the
// foreign key cascades). It takes them out of the totals and returns them.
func (s *Store) removeMessages(ctx context.Context, tx pgx.Tx, mailbox int64, cond string, arg any) ([]removed, error) {
	mb, err := lockMailbox(ctx, tx, mailbox)
	if err != nil {
		return nil, err
	}
	var sql string
	if s.retention > 0 {
		sql = `UPDATE messages SET deleted_at = now()
			WHERE mailbox_id = $1 AND deleted_at IS NULL AND ` + cond + `
			RETURNING uidl, size, delivered_at`
	} else {
		sql = `DELETE FROM messages
			WHERE mailbox_id = $1 AND deleted_at IS NULL AND ` + cond + `
			RETURNING uidl, size, delivered_at`
	}
	rows, err := tx.Query(ctx, sql, mailbox, arg)
	if err != nil {
		return nil, fmt.Errorf("postgres: delete: %w", ctxErr(ctx, err))
	}
	var gone []removed
	var r removed
	if _, err := pgx.ForEachRow(rows, []any{&r.uidl, &r.size, &r.deliveredAt}, func() error {
		gone = append(gone, r)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("postgres: delete: %w", ctxErr(ctx, err))
	}
	if len(gone) == 0 {
		return nil, nil
	}
	for _, r := range gone {
		mb.msgs--
		mb.size -= r.size
	}
	if err := saveMailbox(ctx, tx, mailbox, mb); err != nil {
		return nil, err
	}
	return gone, nil
}

// Usage implements store.Admin: the totals the mailbox row keeps, which
// every change of the live messages updates in its own transaction, so
// they are exact and cost one row read.
func (s *Store) Usage(ctx context.Context, user string) (store.Usage, error) {
	if err := validUser(user); err != nil {
		return store.Usage{}, err
	}
	var u store.Usage
	err := s.pool.QueryRow(ctx, "SELECT msgs, bytes FROM mailboxes WHERE name = $1", user).Scan(&u.Messages, &u.Bytes)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Usage{}, nil
	}
	if err != nil {
		return store.Usage{}, fmt.Errorf("postgres: usage of %s: %w", user, ctxErr(ctx, err))
	}
	return u, nil
}

// Purge implements store.Admin: it deletes, with their chunks, user's
// deleted messages whose deletion time is Retention or more before now,
// in one statement, and logs each. It needs no lock: a Restore that got
// to a message first has made it live (the DELETE rechecks deleted_at
// after waiting for the row), and one that comes second no longer finds
// it. With Retention 0 it removes every deleted message.
func (s *Store) Purge(ctx context.Context, user string, now time.Time) (int, error) {
	if err := validUser(user); err != nil {
		return 0, err
	}
	id, ok, err := s.mailboxID(ctx, s.pool, user, false)
	if err != nil || !ok {
		return 0, err
	}
	rows, err := s.pool.Query(ctx, `DELETE FROM messages
		WHERE mailbox_id = $1 AND deleted_at IS NOT NULL AND deleted_at <= $2
		RETURNING uidl, size, deleted_at`, id, now.Add(-s.retention))
	if err != nil {
		return 0, fmt.Errorf("postgres: purge %s: %w", user, ctxErr(ctx, err))
	}
	var uidl string
	var size int64
	var deletedAt time.Time
	n, err := pgx.ForEachRow(rows, []any{&uidl, &size, &deletedAt}, func() error {
		s.log.Info("postgres: purged deleted message", "user", user, "uidl", uidl, "size", size,
			"deleted_at", deletedAt.UTC().Format(time.RFC3339))
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("postgres: purge %s: %w", user, ctxErr(ctx, err))
	}
	return int(n.RowsAffected()), nil
}

// PurgeAll implements store.Admin: Purge for every mailbox.
func (s *Store) PurgeAll(ctx context.Context, now time.Time) (int, error) {
	users, err := s.mailboxes(ctx)
	if err != nil {
		return 0, err
	}
	return store.PurgeEach(ctx, "postgres: purge", users, func(ctx context.Context, u string) (int, error) {
		return s.Purge(ctx, u, now)
	})
}

// Restore implements store.Admin. Under the mailbox lock (not the lease,
// so it works while a session is open: the session's snapshot lists the
// message ids it saw, and its Commit touches only those) it makes the
// selected deleted messages live again, in deletion order, each with a
// new UIDL from the counter (clients download it again; the old one is
// never reused), a new position at the end of the listing and a new
// delivery time (expiry counts from the restore). Chunks stay where they
// are. The quota does not refuse a restore.
func (s *Store) Restore(ctx context.Context, user string, opts store.RestoreOptions) ([]store.MessageInfo, error) {
	if opts.Since < 0 {
		return nil, fmt.Errorf("postgres: restore: negative Since %v", opts.Since)
	}
	if err := validUser(user); err != nil {
		return nil, err
	}
	id, ok, err := s.mailboxID(ctx, s.pool, user, false)
	if err != nil || !ok {
		return nil, err
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("postgres: restore: %w", ctxErr(ctx, err))
	}
	defer rollback(tx)
	mb, err := lockMailbox(ctx, tx, id)
	if err != nil {
		return nil, err
	}
	rows, err := tx.Query(ctx, `SELECT id, uidl, size, deleted_at FROM messages
		WHERE mailbox_id = $1 AND deleted_at IS NOT NULL
			AND ($2::float8 = 0 OR deleted_at >= now() - make_interval(secs => $2))
			AND ($3::text = '' OR uidl = $3)
		ORDER BY deleted_at, pos FOR UPDATE`, id, opts.Since.Seconds(), opts.UIDL)
	if err != nil {
		return nil, fmt.Errorf("postgres: restore: %w", ctxErr(ctx, err))
	}
	type pick struct {
		id        int64
		uidl      string
		size      int64
		deletedAt time.Time
	}
	var sel []pick
	var p pick
	if _, err := pgx.ForEachRow(rows, []any{&p.id, &p.uidl, &p.size, &p.deletedAt}, func() error {
		sel = append(sel, p)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("postgres: restore: %w", ctxErr(ctx, err))
	}
	if len(sel) == 0 {
		return nil, nil
	}
	infos := make([]store.MessageInfo, len(sel))
	for i, p := range sel {
		var uid, epoch uint32
		uid, epoch, mb.ctr = mb.ctr.allocate(time.Now())
		infos[i] = store.MessageInfo{UIDL: formatUIDL(uid, epoch), Size: p.size}
		if _, err := tx.Exec(ctx, `UPDATE messages SET deleted_at = NULL, uidl = $2, pos = $3, delivered_at = now()
			WHERE id = $1`, p.id, infos[i].UIDL, mb.pos); err != nil {
			return nil, fmt.Errorf("postgres: restore: %w", ctxErr(ctx, err))
		}
		mb.pos++
		mb.msgs++
		mb.size += p.size
	}
	if err := saveMailbox(ctx, tx, id, mb); err != nil {
		return nil, err
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("postgres: restore: commit: %w", ctxErr(ctx, err))
	}
	for i, p := range sel {
		s.log.Info("postgres: restored deleted message", "user", user, "uidl", infos[i].UIDL, "old_uidl", p.uidl,
			"size", p.size, "deleted_at", p.deletedAt.UTC().Format(time.RFC3339))
	}
	return infos, nil
}

// Expire implements store.Admin: the server-side expiry of RFC 2449 §6.7
// EXPIRE. In one transaction it takes the mailbox's lease as a login does
// (store.ErrInUse at once if a session has it), deletes the live messages
// delivered before olderThan exactly as a Commit would (kept for the
// retention period), and drops the lease. Holding the lease only inside
// the transaction means a crash cannot leave it behind, and needs no
// renewal; a login meanwhile waits for the transaction (milliseconds),
// then gets the mailbox. A message's delivery time is when it was delivered, imported
// or restored, by the database's clock.
func (s *Store) Expire(ctx context.Context, user string, olderThan time.Time) (int, error) {
	if err := validUser(user); err != nil {
		return 0, err
	}
	id, ok, err := s.mailboxID(ctx, s.pool, user, false)
	if err != nil || !ok {
		return 0, err
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("postgres: expire: %w", ctxErr(ctx, err))
	}
	defer rollback(tx)
	var token int64
	err = tx.QueryRow(ctx, acquireSQL, id, s.node+"#expire", s.lease.Seconds()).Scan(&token)
	if errors.Is(err, pgx.ErrNoRows) {
		rollback(tx)
		return 0, s.inUse(ctx, id, user)
	}
	if err != nil {
		return 0, fmt.Errorf("postgres: expire: lock %s: %w", user, ctxErr(ctx, err))
	}
	gone, err := s.removeMessages(ctx, tx, id, "delivered_at < $2", olderThan)
	if err != nil {
		return 0, err
	}
	if _, err := tx.Exec(ctx, "DELETE FROM leases WHERE mailbox_id = $1 AND token = $2", id, token); err != nil {
		return 0, fmt.Errorf("postgres: expire: %w", ctxErr(ctx, err))
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("postgres: expire: commit: %w", ctxErr(ctx, err))
	}
	for _, r := range gone {
		s.log.Info("postgres: expired message", "user", user, "uidl", r.uidl, "size", r.size,
			"delivered_at", r.deliveredAt.UTC().Format(time.RFC3339))
	}
	return len(gone), nil
}

// ExpireAll implements store.Admin: Expire for every mailbox, for a
// background job.
func (s *Store) ExpireAll(ctx context.Context, olderThan time.Time) (n int, busy []string, err error) {
	users, err := s.mailboxes(ctx)
	if err != nil {
		return 0, nil, err
	}
	return store.ExpireEach(ctx, "postgres: expire", users, func(ctx context.Context, u string) (int, error) {
		return s.Expire(ctx, u, olderThan)
	})
}
