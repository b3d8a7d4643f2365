// Package pgmigrate holds what popbox's two PostgreSQL schemas (the mail
// store's, package store/postgres, and the users', package userdb) do the
// same way when they migrate: each numbered step runs in a transaction of
// its own together with the row that records it, under a session-level
// pg_advisory_lock, so that frontends migrating at once apply every step
// once (the others wait, then find nothing to do). Each schema keeps its
// own version table, lock key, steps and error messages.
package pgmigrate

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Querier is what Versions reads through: a *pgx.Conn, a *pgxpool.Pool.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// Locked connects with cfg, runs fn while holding the session-level
// advisory lock key, and closes the connection, which releases the lock
// whatever happened. Its own failures are prefixed with what; fn's error
// is returned as it is.
func Locked(ctx context.Context, cfg *pgx.ConnConfig, key int64, what string, fn func(*pgx.Conn) error) error {
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("%s: connect: %w", what, err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", key); err != nil {
		return fmt.Errorf("%s: lock: %w", what, err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", key)
	return fn(conn)
}

// Versions returns the versions recorded in the integer column "version"
// of table.
func Versions(ctx context.Context, q Querier, table string) (map[int]bool, error) {
	rows, err := q.Query(ctx, "SELECT version FROM "+pgx.Identifier{table}.Sanitize())
	if err != nil {
		return nil, err
	}
	vs, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return nil, err
	}
	applied := make(map[int]bool, len(vs))
	for _, v := range vs {
		applied[int(v)] = true
	}
	return applied, nil
}

// Latest is the highest version in applied, 0 for none.
func Latest(applied map[int]bool) int {
	have := 0
	for v := range applied {
		have = max(have, v)
	}
	return have
}

// Apply runs step, then record with args (the INSERT of its row in the
// version table), in one transaction.
func Apply(ctx context.Context, conn *pgx.Conn, step, record string, args ...any) error {
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		// Without arguments Exec uses the simple protocol, which runs a
		// step of several statements.
		if _, err := tx.Exec(ctx, step); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, record, args...)
		return err
	})
}
