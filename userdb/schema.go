package userdb

import (
	"context"
	"database/sql"
	"fmt"
)

// migrations are the SQLite schema steps; migrations()[i] takes the
// database from user_version i to i+1. Append only: released steps never
// change, since existing databases have already run them. A schema change
// also needs a step in pgMigrations (postgres.go), PostgreSQL's list.
func migrations() []string {
	return []string{
		// 1: accounts. name is the canonical (lower-case) name; created and
		// updated are Unix seconds (updated: last password change).
		`CREATE TABLE users (
			name          TEXT    NOT NULL PRIMARY KEY CHECK (name = lower(name) AND length(name) BETWEEN 1 AND 64),
			password_hash TEXT    NOT NULL,
			created       INTEGER NOT NULL,
			updated       INTEGER NOT NULL
		) STRICT`,
		// 2: app passwords and login history. id is the app password's
		// first group, a non-secret selector (see apppass.go); hash is the
		// argon2id hash of the whole password. Both tables go with their
		// user (foreign_keys is on for every connection). login_events
		// keeps at most MaxLoginHistory successes and as many failures per
		// user; ok is 1 for a success, 0 for a failure; time is Unix
		// seconds.
		`CREATE TABLE app_passwords (
			user      TEXT    NOT NULL REFERENCES users (name) ON DELETE CASCADE,
			id        TEXT    NOT NULL,
			label     TEXT    NOT NULL,
			hash      TEXT    NOT NULL,
			created   INTEGER NOT NULL,
			last_used INTEGER,
			PRIMARY KEY (user, id),
			UNIQUE (user, label)
		) STRICT;
		CREATE TABLE login_events (
			seq       INTEGER PRIMARY KEY,
			user      TEXT    NOT NULL REFERENCES users (name) ON DELETE CASCADE,
			ok        INTEGER NOT NULL CHECK (ok IN (0, 1)),
			time      INTEGER NOT NULL,
			remote    TEXT    NOT NULL,
			mechanism TEXT    NOT NULL
		) STRICT;
		CREATE INDEX login_events_user ON login_events (user, ok, time);`,
		// 3: SCRAM-SHA-256 credentials (RFC 5802 §3, RFC 7677) in
		// sasl.FormatSCRAMCredentials's text (Dovecot's format). NULL
		// until the password is next set or used to log in: they can only
		// be computed from the plaintext password.
		`ALTER TABLE users ADD COLUMN scram_sha256 TEXT`,
		// 4: disabled accounts keep their mail and settings but cannot
		// log in, by any mechanism.
		`ALTER TABLE users ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1))`,
		// 5: per-user quota overrides; NULL means the server's default,
		// 0 no limit.
		`ALTER TABLE users ADD COLUMN quota_bytes INTEGER CHECK (quota_bytes >= 0);
		ALTER TABLE users ADD COLUMN quota_messages INTEGER CHECK (quota_messages >= 0)`,
	}
}

// migrate brings the schema up to date inside one IMMEDIATE transaction
// (the DSN's _txlock), so concurrent Opens of a new file serialise and the
// second sees the first's work.
func migrate(ctx context.Context, db *sql.DB) error {
	steps := migrations()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("starting schema migration: %w", err)
	}
	defer tx.Rollback()
	var version int
	if err := tx.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&version); err != nil {
		return fmt.Errorf("reading schema version: %w", err)
	}
	if version > len(steps) {
		return fmt.Errorf("%w: version %d, this program knows up to %d", ErrSchemaTooNew, version, len(steps))
	}
	if version == len(steps) {
		return nil
	}
	for i := version; i < len(steps); i++ {
		if _, err := tx.ExecContext(ctx, steps[i]); err != nil {
			return fmt.Errorf("schema migration to version %d: %w", i+1, err)
		}
	}
	// PRAGMA takes no bound parameters; the value is our own integer.
	if _, err := tx.ExecContext(ctx, fmt.Sprintf(`PRAGMA user_version = %d`, len(steps))); err != nil {
		return fmt.Errorf("setting schema version: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("committing schema migration: %w", err)
	}
	return nil
}
