package userdb

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/popbox/popbox/internal/pgmigrate"
)

// ErrSchemaVersion: a PostgreSQL database's user schema is missing or is
// not the version this program was built for. Open never changes a
// PostgreSQL schema; `popbox migrate` (Migrate) does.
var ErrSchemaVersion = errors.New("userdb: the database's user schema is not this program's version")

// pgMigrateLockKey is the pg_advisory_lock key that serialises Migrate: an
// arbitrary constant ("userdb" in ASCII), the same in every binary, and
// not store/postgres's, so the two packages' migrations do not wait for
// each other.
const pgMigrateLockKey int64 = 0x757365726462

// pgConnectTimeout bounds establishing one connection when the DSN sets no
// connect_timeout (pgx's default is two minutes), as store/postgres does.
const pgConnectTimeout = 10 * time.Second

// pgMigrations are the PostgreSQL schema steps: pgMigrations()[i] takes the
// database from version i to i+1, recorded as row i+1 of
// userdb_migrations. Append only, like the SQLite steps, and with them:
// a schema change is a step in each list. Version 1 is SQLite's version 5
// in one step, since no PostgreSQL database predates it.
//
// Types and names differ from SQLite's where PostgreSQL needs it, never in
// what the queries see: integers are bigint (Unix seconds, sizes), the
// disabled flag is boolean (the queries pass and scan Go bools), ok stays
// 0/1 (the queries compare it with integers), "user" is quoted (see
// dialect.go), and seq is an identity column. Names and labels are
// COLLATE "C" so that ORDER BY sorts by bytes as SQLite does, whatever the
// database's default collation, and lower() in the CHECK folds ASCII only,
// as SQLite's does.
func pgMigrations() []string {
	return []string{
		`CREATE TABLE users (
			name           text COLLATE "C" NOT NULL PRIMARY KEY CHECK (name = lower(name) AND length(name) BETWEEN 1 AND 64),
			password_hash  text    NOT NULL,
			created        bigint  NOT NULL,
			updated        bigint  NOT NULL,
			scram_sha256   text,
			disabled       boolean NOT NULL DEFAULT false,
			quota_bytes    bigint  CHECK (quota_bytes >= 0),
			quota_messages bigint  CHECK (quota_messages >= 0)
		);
		CREATE TABLE app_passwords (
			"user"    text COLLATE "C" NOT NULL REFERENCES users (name) ON DELETE CASCADE,
			id        text   NOT NULL,
			label     text COLLATE "C" NOT NULL,
			hash      text   NOT NULL,
			created   bigint NOT NULL,
			last_used bigint,
			PRIMARY KEY ("user", id),
			UNIQUE ("user", label)
		);
		CREATE TABLE login_events (
			seq       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
			"user"    text COLLATE "C" NOT NULL REFERENCES users (name) ON DELETE CASCADE,
			ok        smallint NOT NULL CHECK (ok IN (0, 1)),
			time      bigint NOT NULL,
			remote    text   NOT NULL,
			mechanism text   NOT NULL
		);
		CREATE INDEX login_events_user ON login_events ("user", ok, time);`,
	}
}

// isPostgres reports whether Open's path is a PostgreSQL DSN rather than a
// file name. Only URLs: a keyword/value DSN ("host=... dbname=...") is a
// valid file name too, so it cannot be told apart.
func isPostgres(path string) bool {
	return strings.HasPrefix(path, "postgres://") || strings.HasPrefix(path, "postgresql://")
}

// pgConfig parses dsn as store/postgres does (pgxpool's syntax), so that
// one DSN serves both, pool_* parameters included.
func pgConfig(dsn string) (*pgxpool.Config, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("userdb: %w", err) // pgconn redacts the password
	}
	if cfg.ConnConfig.ConnectTimeout <= 0 {
		cfg.ConnConfig.ConnectTimeout = pgConnectTimeout
	}
	return cfg, nil
}

// pgName names the database in errors: never the DSN, which may hold a
// password.
func pgName(cfg *pgxpool.Config) string {
	return fmt.Sprintf("PostgreSQL database %q on %s", cfg.ConnConfig.Database, cfg.ConnConfig.Host)
}

// openPostgres connects to the database at dsn and checks its schema.
// busy becomes lock_timeout, unless the DSN sets one: it bounds waiting for
// another connection's row lock, as BusyTimeout does SQLite's write lock.
func openPostgres(dsn string, busy time.Duration) (*sqlDB, error) {
	cfg, err := pgConfig(dsn)
	if err != nil {
		return nil, err
	}
	params := cfg.ConnConfig.RuntimeParams
	if _, ok := params["lock_timeout"]; !ok {
		params["lock_timeout"] = strconv.FormatInt(busy.Milliseconds(), 10)
	}
	sqldb := stdlib.OpenDB(*cfg.ConnConfig)
	// database/sql pools the connections, so the pool_* settings go to
	// it; idle connections are kept up to the maximum, since logins come
	// in bursts and a new connection costs more than the query.
	sqldb.SetMaxOpenConns(int(cfg.MaxConns))
	sqldb.SetMaxIdleConns(int(cfg.MaxConns))
	sqldb.SetConnMaxLifetime(cfg.MaxConnLifetime)
	sqldb.SetConnMaxIdleTime(cfg.MaxConnIdleTime)
	s := &sqlDB{db: sqldb, d: postgresDialect()}

	ctx, cancel := context.WithTimeout(context.Background(), cfg.ConnConfig.ConnectTimeout+busy+10*time.Second)
	defer cancel()
	if err := checkPGSchema(ctx, s, len(pgMigrations())); err != nil {
		sqldb.Close()
		return nil, fmt.Errorf("userdb: %s: %w", pgName(cfg), err)
	}
	return s, nil
}

// Migrate creates or upgrades the user schema of the PostgreSQL database
// at dsn (a postgres:// or postgresql:// URL) to this program's version:
// the `popbox migrate` step, which Open on PostgreSQL requires. Each
// missing step runs in a transaction of its own together with its row in
// userdb_migrations, under a session-level pg_advisory_lock, so frontends
// migrating at once apply each step once: the others wait, then find
// nothing to do. A schema newer than this program's is refused (an error
// wrapping ErrSchemaVersion and ErrSchemaTooNew), never downgraded.
// Migrate is bounded by ctx.
//
// For any other path (an SQLite file) Migrate opens and closes the
// database, which migrates it as Open always does.
func Migrate(ctx context.Context, dsn string) error {
	if !isPostgres(dsn) {
		db, err := Open(dsn, Options{})
		if err != nil {
			return err
		}
		return db.Close()
	}
	return migratePostgres(ctx, dsn, pgMigrations())
}

// migratePostgres applies steps; tests pass other lists to make databases
// older or newer than the program.
func migratePostgres(ctx context.Context, dsn string, steps []string) error {
	cfg, err := pgConfig(dsn)
	if err != nil {
		return err
	}
	what := "userdb: migrating " + pgName(cfg)
	return pgmigrate.Locked(ctx, cfg.ConnConfig, pgMigrateLockKey, what, func(conn *pgx.Conn) error {
		// Under the lock: CREATE TABLE IF NOT EXISTS is not safe against a
		// concurrent one.
		if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS userdb_migrations (
			version    integer PRIMARY KEY,
			applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		applied, err := pgmigrate.Versions(ctx, conn, "userdb_migrations")
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if have := pgmigrate.Latest(applied); have > len(steps) {
			return fmt.Errorf("%s: %w", what, tooNew(have, len(steps)))
		}
		for i, step := range steps {
			v := i + 1
			if applied[v] {
				continue
			}
			if err := pgmigrate.Apply(ctx, conn, step, `INSERT INTO userdb_migrations (version) VALUES ($1)`, v); err != nil {
				return fmt.Errorf("%s to version %d: %w", what, v, err)
			}
		}
		return nil
	})
}

func tooNew(have, want int) error {
	return fmt.Errorf("%w (%w): the database has user schema version %d, this popbox knows up to %d: run a newer popbox (`popbox migrate` does not downgrade)",
		ErrSchemaVersion, ErrSchemaTooNew, have, want)
}

// checkPGSchema returns an error wrapping ErrSchemaVersion unless the
// database has exactly the steps 1..want applied: a frontend must not run
// on a schema it was not built for, where an older one lacks what it
// writes and a newer one may mean something else by what it reads. Open
// does not migrate on PostgreSQL because the database is shared: an
// upgrade is one deliberate step for all frontends, not a side effect of
// whichever starts first.
func checkPGSchema(ctx context.Context, s *sqlDB, want int) error {
	rows, err := s.QueryContext(ctx, `SELECT version FROM userdb_migrations`)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P01" { // undefined_table
		return fmt.Errorf("%w: the database has no user schema (version 0, this popbox needs %d): run `popbox migrate`",
			ErrSchemaVersion, want)
	}
	if err != nil {
		return fmt.Errorf("reading the schema version: %w", err)
	}
	defer rows.Close()
	applied := make(map[int]bool)
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			return fmt.Errorf("reading the schema version: %w", err)
		}
		applied[v] = true
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reading the schema version: %w", err)
	}
	have := pgmigrate.Latest(applied)
	switch {
	case have > want:
		return tooNew(have, want)
	case have < want || len(applied) != want:
		return fmt.Errorf("%w: the database has user schema version %d, older than this popbox's %d: run `popbox migrate`",
			ErrSchemaVersion, have, want)
	}
	return nil
}
