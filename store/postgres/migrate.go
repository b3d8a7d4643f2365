package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/popbox/popbox/internal/pgmigrate"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// ErrSchemaVersion: the database's schema is not the version this binary
// expects (older: run `popbox migrate`; newer: run a newer popbox).
var ErrSchemaVersion = errors.New("postgres: schema version mismatch")

// migrateLockKey is the pg_advisory_lock key that serializes migrations:
// an arbitrary constant ("popbox" in ASCII), the same in every binary.
const migrateLockKey int64 = 0x706f70626f78

// migration is one numbered SQL file.
type migration struct {
	version int
	name    string
	sql     string
}

var migrationName = regexp.MustCompile(`^([0-9]{4})_[a-z0-9_]+\.sql$`)

// loadMigrations reads the migrations of fsys (migrations/NNNN_name.sql),
// which must be numbered 1, 2, ... without gaps, so that "version n" means
// the same schema in every binary.
func loadMigrations(fsys fs.FS) ([]migration, error) {
	ents, err := fs.ReadDir(fsys, "migrations")
	if err != nil {
		return nil, fmt.Errorf("postgres: migrations: %w", err)
	}
	var ms []migration
	for _, e := range ents { // ReadDir sorts by name
		m := migrationName.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("postgres: migrations: unexpected file %s", e.Name())
		}
		v, _ := strconv.Atoi(m[1])
		if v != len(ms)+1 {
			return nil, fmt.Errorf("postgres: migrations: %s out of sequence (want version %d)", e.Name(), len(ms)+1)
		}
		b, err := fs.ReadFile(fsys, path.Join("migrations", e.Name()))
		if err != nil {
			return nil, fmt.Errorf("postgres: migrations: %w", err)
		}
		ms = append(ms, migration{version: v, name: e.Name(), sql: string(b)})
	}
	if len(ms) == 0 {
		return nil, errors.New("postgres: migrations: none")
	}
	return ms, nil
}

// SchemaVersion is the schema version this binary works with: the number
// of its last migration.
func SchemaVersion() int {
	ms, err := loadMigrations(migrationFiles)
	if err != nil {
		panic(err) // the embedded files are checked by the tests
	}
	return len(ms)
}

// Migrate brings the database at dsn to the schema this binary expects,
// applying each missing migration in a transaction of its own together
// with its row in schema_migrations. It runs under a session-level
// pg_advisory_lock, so frontends starting together (or two `popbox
// migrate`) apply each migration once: the second waits, then finds
// nothing to do. It refuses a database whose schema is newer than this
// binary's, rather than guess. It is bounded by ctx.
func Migrate(ctx context.Context, dsn string) error {
	return migrate(ctx, dsn, migrationFiles)
}

func migrate(ctx context.Context, dsn string, fsys fs.FS) error {
	ms, err := loadMigrations(fsys)
	if err != nil {
		return err
	}
	// Parsed as Open parses it, so that pool settings in the URL
	// (pool_max_conns...) are taken as such and not sent to the server as
	// run-time parameters, which it refuses.
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	return pgmigrate.Locked(ctx, cfg.ConnConfig, migrateLockKey, "postgres: migrate", func(conn *pgx.Conn) error {
		if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version    integer PRIMARY KEY,
			name       text NOT NULL,
			applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
			return fmt.Errorf("postgres: migrate: %w", err)
		}
		applied, err := pgmigrate.Versions(ctx, conn, "schema_migrations")
		if err != nil {
			return err
		}
		if have := pgmigrate.Latest(applied); have > len(ms) {
			return fmt.Errorf("%w: the database has schema version %d, newer than this popbox's %d: run a newer popbox (`popbox migrate` does not downgrade)",
				ErrSchemaVersion, have, len(ms))
		}
		for _, m := range ms {
			if applied[m.version] {
				continue
			}
			if err := pgmigrate.Apply(ctx, conn, m.sql,
				"INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", m.version, m.name); err != nil {
				return fmt.Errorf("postgres: migrate: %s: %w", m.name, err)
			}
		}
		return nil
	})
}

// checkSchema returns an error wrapping ErrSchemaVersion unless the
// database has exactly migrations 1..want applied. A frontend must never
// run against a schema it was not built for: an older one lacks what it
// writes, a newer one may mean something else by what it reads.
func checkSchema(ctx context.Context, q pgmigrate.Querier, want int) error {
	applied, err := pgmigrate.Versions(ctx, q, "schema_migrations")
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P01" { // undefined_table
		return fmt.Errorf("%w: the database has no popbox schema (version 0, this popbox needs %d): run `popbox migrate`",
			ErrSchemaVersion, want)
	}
	if err != nil {
		return fmt.Errorf("postgres: schema version: %w", err)
	}
	have := pgmigrate.Latest(applied)
	switch {
	case have > want:
		return fmt.Errorf("%w: the database has schema version %d, newer than this popbox's %d: run a newer popbox (`popbox migrate` does not downgrade)",
			ErrSchemaVersion, have, want)
	case have < want || len(applied) != want:
		return fmt.Errorf("%w: the database has schema version %d, older than this popbox's %d: run `popbox migrate`",
			ErrSchemaVersion, have, want)
	}
	return nil
}
