package userdb

import (
	"context"
	"database/sql"
	"strconv"
	"strings"
	"sync"
)

// The two backends share every query. They are written once, in the
// syntax both accept except for parameters, which are SQLite's (?NNN, or ?
// for the next number); sqlDB and sqlTx hand each query to the backend in
// its dialect. What the dialects cannot share is here and in the two Open
// paths (userdb.go, postgres.go), nowhere else:
//
//   - Parameters: PostgreSQL has only $NNN, so its queries are rewritten,
//     once per query text (the result is cached), by dollarParams.
//   - The column "user" (the owner of an app password or a login event)
//     is written quoted everywhere: in PostgreSQL the bare word is
//     CURRENT_USER, a valid expression that would compare with the role
//     name instead of failing; quoted, both read it as the column.
//   - Row locks: lockUsers. See its comment.
//   - Types live only in the two schemas (schema.go, postgres.go): the Go
//     values the queries pass and scan are the same for both.
type dialect struct {
	name string
	// rewrite turns a query into the dialect's; nil keeps it as written.
	rewrite func(string) string
	// cache maps query text to its rewrite: queries are constants, so
	// the map stays as small as the package's set of queries.
	cache sync.Map
	// lockUsers is a query that locks the users rows whose names are in
	// the text[] $1, in name order, until the transaction ends; empty
	// where transactions are serialised anyway.
	lockUsers string
}

// sqliteDialect: queries are written in it. Transactions need no row
// locks: every one is IMMEDIATE (_txlock in the DSN), so it holds the
// database's single write lock from its first statement.
func sqliteDialect() *dialect { return &dialect{name: "sqlite"} }

// postgresDialect: transactions are READ COMMITTED, PostgreSQL's default;
// those that read and then write (the app password limit, the history
// pruning) first take the row lock of each user they touch, so two
// frontends writing for one user take turns, and each statement after the
// lock sees what the other committed. FOR NO KEY UPDATE conflicts with
// itself and with UPDATE and DELETE of the row, but not with the KEY SHARE
// locks that foreign-key checks take, so plain inserts of other users'
// events never wait. ORDER BY: the rows are locked in the order the sort
// returns them, the same in every transaction, so two transactions
// locking several users (history batches) cannot deadlock.
// Each DB gets its own, so that the rewrite cache is not package state.
func postgresDialect() *dialect {
	return &dialect{
		name:      "postgres",
		rewrite:   dollarParams,
		lockUsers: `SELECT name FROM users WHERE name = ANY ($1) ORDER BY name FOR NO KEY UPDATE`,
	}
}

// query returns q in d's dialect.
func (d *dialect) query(q string) string {
	if d.rewrite == nil {
		return q
	}
	if r, ok := d.cache.Load(q); ok {
		return r.(string)
	}
	r := d.rewrite(q)
	d.cache.Store(q, r)
	return r
}

// dollarParams rewrites SQLite parameters into PostgreSQL's: ?NNN becomes
// $NNN, and a bare ? gets the number after the largest one so far, as
// SQLite numbers it. Quoted strings and identifiers and -- comments are
// copied unchanged.
func dollarParams(q string) string {
	var b strings.Builder
	b.Grow(len(q) + 8)
	last := 0
	for i := 0; i < len(q); i++ {
		c := q[i]
		switch {
		case c == '\'' || c == '"':
			// A doubled quote inside ends one quoted run and starts the
			// next, which comes out the same.
			end := strings.IndexByte(q[i+1:], c)
			if end < 0 {
				b.WriteString(q[i:])
				return b.String()
			}
			b.WriteString(q[i : i+end+2])
			i += end + 1
		case c == '-' && i+1 < len(q) && q[i+1] == '-':
			end := strings.IndexByte(q[i:], '\n')
			if end < 0 {
				b.WriteString(q[i:])
				return b.String()
			}
			b.WriteString(q[i : i+end])
			i += end - 1
		case c == '?':
			j := i + 1
			for j < len(q) && q[j] >= '0' && q[j] <= '9' {
				j++
			}
			n := last + 1
			if j > i+1 {
				n, _ = strconv.Atoi(q[i+1 : j])
			}
			last = max(last, n)
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			i = j - 1
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// sqlDB is the database handle through which every query goes, so that
// none reaches the driver in the wrong dialect.
type sqlDB struct {
	db *sql.DB
	d  *dialect
}

func (s *sqlDB) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return s.db.ExecContext(ctx, s.d.query(query), args...)
}

func (s *sqlDB) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return s.db.QueryContext(ctx, s.d.query(query), args...)
}

func (s *sqlDB) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	return s.db.QueryRowContext(ctx, s.d.query(query), args...)
}

func (s *sqlDB) BeginTx(ctx context.Context, opts *sql.TxOptions) (*sqlTx, error) {
	tx, err := s.db.BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	return &sqlTx{tx: tx, d: s.d}, nil
}

func (s *sqlDB) Close() error { return s.db.Close() }

// sqlTx is a transaction of a sqlDB.
type sqlTx struct {
	tx *sql.Tx
	d  *dialect
}

func (t *sqlTx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return t.tx.ExecContext(ctx, t.d.query(query), args...)
}

func (t *sqlTx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	return t.tx.QueryRowContext(ctx, t.d.query(query), args...)
}

func (t *sqlTx) Commit() error   { return t.tx.Commit() }
func (t *sqlTx) Rollback() error { return t.tx.Rollback() }

// lockUsers locks the users rows of the canonical names until the
// transaction ends, where the dialect needs it (see postgresDialect).
// Names without a row are skipped: the statements that follow find them
// missing too.
func (t *sqlTx) lockUsers(ctx context.Context, names []string) error {
	if t.d.lockUsers == "" || len(names) == 0 {
		return nil
	}
	// Exec runs the SELECT to its end, locking every row, and discards
	// the rows.
	_, err := t.tx.ExecContext(ctx, t.d.lockUsers, names)
	return err
}
