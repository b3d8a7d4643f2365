package postgres

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/jackc/pgx/v5"
)

func connect(t testing.TB, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(tctx(t), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func versions(t testing.TB, conn *pgx.Conn) []int32 {
	t.Helper()
	rows, err := conn.Query(tctx(t), "SELECT version FROM schema_migrations ORDER BY version")
	if err != nil {
		t.Fatal(err)
	}
	vs, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		t.Fatal(err)
	}
	return vs
}

func TestEmbeddedMigrations(t *testing.T) {
	ms, err := loadMigrations(migrationFiles)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != SchemaVersion() || ms[0].name != "0001_init.sql" {
		t.Errorf("migrations %v, SchemaVersion %d", ms, SchemaVersion())
	}
	for _, bad := range []fstest.MapFS{
		{"migrations/0002_b.sql": {}},                              // gap
		{"migrations/0001_a.sql": {}, "migrations/0001_b.sql": {}}, // twice
		{"migrations/0001_a.sql": {}, "migrations/notes.txt": {}},  // stray file
		{"migrations/1_a.sql": {}},                                 // not 4 digits
		{"migrations/0001_a.sql": {}, "migrations/0003_c.sql": {}}, // gap
		{"other/0001_a.sql": {}},                                   // none
	} {
		if ms, err := loadMigrations(bad); err == nil {
			t.Errorf("loadMigrations(%v) = %v, want an error", bad, ms)
		}
	}
}

// TestMigrateConcurrent: frontends starting together all migrate; the
// advisory lock makes each migration run once.
func TestMigrateConcurrent(t *testing.T) {
	dsn := srv.NewDatabase(t)
	const n = 4
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = Migrate(tctx(t), dsn) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Migrate %d: %v", i, err)
		}
	}
	conn := connect(t, dsn)
	if vs := versions(t, conn); len(vs) != SchemaVersion() || int(vs[len(vs)-1]) != SchemaVersion() {
		t.Errorf("schema_migrations %v, want 1..%d", vs, SchemaVersion())
	}
	if err := Migrate(tctx(t), dsn); err != nil { // again: nothing to do
		t.Errorf("Migrate on a migrated database: %v", err)
	}
	s := openStore(t, dsn, Options{})
	mustDeliver(t, s, "alice", "a\n")
}

// TestOpenChecksSchema: Open refuses a database without the schema, or
// with an older or newer one, saying what to do.
func TestOpenChecksSchema(t *testing.T) {
	open := func(dsn string) error {
		s, err := Open(tctx(t), dsn, Options{})
		if err == nil {
			s.Close()
		}
		return err
	}
	t.Run("none", func(t *testing.T) {
		err := open(srv.NewDatabase(t))
		if !errors.Is(err, ErrSchemaVersion) || !strings.Contains(err.Error(), "popbox migrate") {
			t.Errorf("Open of an empty database = %v, want ErrSchemaVersion naming `popbox migrate`", err)
		}
	})
	t.Run("older", func(t *testing.T) {
		dsn := newDatabase(t)
		conn := connect(t, dsn)
		if _, err := conn.Exec(tctx(t), "DELETE FROM schema_migrations WHERE version = $1", SchemaVersion()); err != nil {
			t.Fatal(err)
		}
		err := open(dsn)
		if !errors.Is(err, ErrSchemaVersion) || !strings.Contains(err.Error(), "older") || !strings.Contains(err.Error(), "popbox migrate") {
			t.Errorf("Open of an older schema = %v, want ErrSchemaVersion naming `popbox migrate`", err)
		}
	})
	t.Run("newer", func(t *testing.T) {
		dsn := newDatabase(t)
		conn := connect(t, dsn)
		if _, err := conn.Exec(tctx(t), "INSERT INTO schema_migrations (version, name) VALUES ($1, 'from_the_future.sql')", SchemaVersion()+1); err != nil {
			t.Fatal(err)
		}
		err := open(dsn)
		if !errors.Is(err, ErrSchemaVersion) || !strings.Contains(err.Error(), "newer") || !strings.Contains(err.Error(), "popbox migrate") {
			t.Errorf("Open of a newer schema = %v, want ErrSchemaVersion saying it is newer", err)
		}
		if err := Migrate(tctx(t), dsn); !errors.Is(err, ErrSchemaVersion) {
			t.Errorf("Migrate of a newer schema = %v, want ErrSchemaVersion", err)
		}
	})
}

// TestMigrateSteps runs a made-up history: an older binary's migrations,
// then a newer binary's, then one that fails half-way and must leave
// nothing of itself.
func TestMigrateSteps(t *testing.T) {
	dsn := srv.NewDatabase(t)
	conn := connect(t, dsn)
	v1 := fstest.MapFS{"migrations/0001_a.sql": {Data: []byte("CREATE TABLE a (x int);")}}
	v2 := fstest.MapFS{
		"migrations/0001_a.sql": v1["migrations/0001_a.sql"],
		"migrations/0002_b.sql": {Data: []byte("CREATE TABLE b (x int); INSERT INTO b VALUES (1);")},
	}
	v3 := fstest.MapFS{
		"migrations/0001_a.sql": v2["migrations/0001_a.sql"],
		"migrations/0002_b.sql": v2["migrations/0002_b.sql"],
		"migrations/0003_c.sql": {Data: []byte("CREATE TABLE c (x int); SELECT no_such_function();")},
	}
	if err := migrate(tctx(t), dsn, v1); err != nil {
		t.Fatal(err)
	}
	if err := checkSchema(tctx(t), conn, 2); !errors.Is(err, ErrSchemaVersion) || !strings.Contains(err.Error(), "popbox migrate") {
		t.Errorf("version 1 checked by a binary wanting 2 = %v, want ErrSchemaVersion naming `popbox migrate`", err)
	}
	if err := migrate(tctx(t), dsn, v2); err != nil {
		t.Fatal(err)
	}
	if err := checkSchema(tctx(t), conn, 2); err != nil {
		t.Errorf("after migrating to 2: %v", err)
	}
	if err := migrate(tctx(t), dsn, v3); err == nil {
		t.Fatal("a failing migration succeeded")
	}
	if vs := versions(t, conn); len(vs) != 2 {
		t.Errorf("after a failed migration: versions %v, want [1 2]", vs)
	}
	var exists bool
	if err := conn.QueryRow(tctx(t), "SELECT to_regclass('c') IS NOT NULL").Scan(&exists); err != nil || exists {
		t.Errorf("table c of the failed migration exists: %v, %v", exists, err)
	}
}

// TestMigratePoolSettings: pool settings in the DSN, which Open takes,
// do not make Migrate fail (the server refuses unknown run-time
// parameters).
func TestMigratePoolSettings(t *testing.T) {
	dsn := srv.NewDatabase(t) + " pool_max_conns=4 pool_min_conns=1"
	if err := Migrate(tctx(t), dsn); err != nil {
		t.Fatalf("Migrate with pool settings: %v", err)
	}
	st, err := Open(tctx(t), dsn, Options{})
	if err != nil {
		t.Fatalf("Open after Migrate: %v", err)
	}
	st.Close()
}
