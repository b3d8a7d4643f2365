package userdb

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// MaxLoginHistory is how many successful logins, and separately how many
// failures, are kept per user. Older events are dropped as new ones arrive:
// the history shows an owner what happened lately (a login from an unknown
// address, a burst of failures) without an attacker being able to grow the
// database by failing to log in.
const MaxLoginHistory = 20

// maxEventField bounds the stored remote address and mechanism, which come
// from the network side.
const maxEventField = 128

// LoginEvent is one login attempt on an existing account.
type LoginEvent struct {
	Time time.Time
	// RemoteAddr is the client's address, e.g. "192.0.2.7:50123".
	RemoteAddr string
	// Mechanism is how the client authenticated, e.g. "password".
	Mechanism string
	// Success is whether the login succeeded.
	Success bool
}

// LoginHistory is a user's recent logins, newest first.
type LoginHistory struct {
	Successes []LoginEvent
	Failures  []LoginEvent
}

// RecordLogin adds ev to name's history, dropping the oldest event of its
// kind beyond MaxLoginHistory. Time is kept to the second; a zero Time means
// now. Over-long RemoteAddr and Mechanism are truncated, and their invalid
// UTF-8 and NUL bytes stored as U+FFFD. Errors wrap ErrInvalidName or
// ErrNotFound (history is kept only for existing users).
func (db *DB) RecordLogin(ctx context.Context, name string, ev LoginEvent) error {
	if err := ValidName(name); err != nil {
		return err
	}
	name = Canonical(name)
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	what := fmt.Sprintf("recording login of %q", name)
	tx, err := db.sql.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("userdb: %s: %w", what, err)
	}
	defer tx.Rollback()
	if err := recordLogin(ctx, tx, name, ev); err != nil {
		return fmt.Errorf("userdb: %s: %w", what, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("userdb: %s: %w", what, err)
	}
	return nil
}

// recordLogin inserts ev for the canonical name and prunes its kind, in
// tx. Insert and prune in one transaction, so that concurrent logins never
// leave more than MaxLoginHistory events behind: the transaction holds
// SQLite's write lock, or the user's row lock in PostgreSQL, so the
// pruning sees every event committed before it. (Without the row lock,
// two frontends inserting at once would each see the other's event
// uncommitted, and both delete the same oldest one.)
func recordLogin(ctx context.Context, tx *sqlTx, name string, ev LoginEvent) error {
	if err := tx.lockUsers(ctx, []string{name}); err != nil {
		return err
	}
	if err := insertEvent(ctx, tx, name, ev); err != nil {
		return err
	}
	return pruneEvents(ctx, tx, name, ev.Success)
}

// insertEvent adds one event for the canonical name; ErrNotFound if there
// is no such user.
func insertEvent(ctx context.Context, tx *sqlTx, name string, ev LoginEvent) error {
	ok := 0
	if ev.Success {
		ok = 1
	}
	// INSERT ... SELECT ... WHERE EXISTS rather than relying on the foreign
	// key, so that an unknown user is ErrNotFound, not a constraint error.
	res, err := tx.ExecContext(ctx,
		`INSERT INTO login_events ("user", ok, time, remote, mechanism)
		 SELECT ?1, ?2, ?3, ?4, ?5 WHERE EXISTS (SELECT 1 FROM users WHERE name = ?1)`,
		name, ok, ev.Time.Unix(), truncate(ev.RemoteAddr), truncate(ev.Mechanism))
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	return nil
}

// pruneEvents keeps the newest MaxLoginHistory events of one kind.
func pruneEvents(ctx context.Context, tx *sqlTx, name string, success bool) error {
	ok := 0
	if success {
		ok = 1
	}
	_, err := tx.ExecContext(ctx,
		`DELETE FROM login_events WHERE "user" = ?1 AND ok = ?2 AND seq NOT IN (
			SELECT seq FROM login_events WHERE "user" = ?1 AND ok = ?2
			ORDER BY time DESC, seq DESC LIMIT ?3)`,
		name, ok, MaxLoginHistory)
	return err
}

// truncate makes s storable and cuts it to maxEventField bytes, on a
// UTF-8 boundary. Storable: PostgreSQL's text holds neither invalid UTF-8
// nor NUL, which a client can put into what it sends; each becomes U+FFFD
// (in SQLite too, so both backends keep the same history), rather than
// failing the login's record, or a whole batch of them.
func truncate(s string) string {
	if !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 {
		s = strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
	}
	if len(s) <= maxEventField {
		return s
	}
	return strings.ToValidUTF8(s[:maxEventField], "")
}

// LoginHistory returns name's recent successful and failed logins, newest
// first. Errors wrap ErrInvalidName or ErrNotFound.
func (db *DB) LoginHistory(ctx context.Context, name string) (LoginHistory, error) {
	if _, err := db.Get(ctx, name); err != nil {
		return LoginHistory{}, err
	}
	if err := db.FlushLogins(ctx); err != nil {
		return LoginHistory{}, err
	}
	name = Canonical(name)
	rows, err := db.sql.QueryContext(ctx,
		`SELECT ok, time, remote, mechanism FROM login_events WHERE "user" = ?
		 ORDER BY time DESC, seq DESC`, name)
	if err != nil {
		return LoginHistory{}, fmt.Errorf("userdb: reading login history of %q: %w", name, err)
	}
	defer rows.Close()
	var h LoginHistory
	for rows.Next() {
		var (
			ev   LoginEvent
			ok   int
			unix int64
		)
		if err := rows.Scan(&ok, &unix, &ev.RemoteAddr, &ev.Mechanism); err != nil {
			return LoginHistory{}, fmt.Errorf("userdb: reading login history of %q: %w", name, err)
		}
		ev.Time = time.Unix(unix, 0).UTC()
		ev.Success = ok == 1
		if ev.Success {
			h.Successes = append(h.Successes, ev)
		} else {
			h.Failures = append(h.Failures, ev)
		}
	}
	if err := rows.Err(); err != nil {
		return LoginHistory{}, fmt.Errorf("userdb: reading login history of %q: %w", name, err)
	}
	return h, nil
}

// LastLogin returns the time of name's last successful login, to the
// second, or the zero time if the history has none.
func (db *DB) LastLogin(ctx context.Context, name string) (time.Time, error) {
	if err := ValidName(name); err != nil {
		return time.Time{}, err
	}
	name = Canonical(name)
	if t := db.queuedLastLogin(name); !t.IsZero() {
		// Newer than anything written: the server stamps events when it
		// queues them.
		return time.Unix(t.Unix(), 0).UTC(), nil
	}
	var unix sql.NullInt64
	if err := db.sql.QueryRowContext(ctx,
		`SELECT max(time) FROM login_events WHERE "user" = ? AND ok = 1`, name).Scan(&unix); err != nil {
		return time.Time{}, fmt.Errorf("userdb: reading last login of %q: %w", name, err)
	}
	if !unix.Valid {
		return time.Time{}, nil
	}
	return time.Unix(unix.Int64, 0).UTC(), nil
}
