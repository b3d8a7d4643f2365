package userdb

import (
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/popbox/popbox/internal/pgtest"
	"github.com/popbox/popbox/userdb/passhash"
)

// The tests of behaviour run against both backends (forEachBackend); those
// of one backend's mechanics (SQLite's file mode, WAL, busy handling and
// user_version migrations; PostgreSQL's Migrate and schema checks) against
// that one only.

// pg is the package's PostgreSQL server, started at the first test that
// needs one (so that a run of SQLite-only tests, and fuzzing workers,
// which run TestMain too, start none) and stopped by TestMain.
var pg struct {
	once sync.Once
	srv  *pgtest.Server
	stop func()
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if pg.stop != nil {
		pg.stop()
	}
	os.Exit(code)
}

// pgServer returns the package's server. Without PostgreSQL installed,
// NewDatabase on it skips the test, or fails it under CI=true.
func pgServer(t testing.TB) *pgtest.Server {
	t.Helper()
	pg.once.Do(func() { pg.srv, pg.stop, pg.err = pgtest.StartMain() })
	if pg.err != nil {
		t.Fatal(pg.err)
	}
	return pg.srv
}

// newPGDatabase returns the URL of a new, empty PostgreSQL database for t,
// migrated if asked.
func newPGDatabase(t testing.TB, migrate bool) string {
	t.Helper()
	dsn := pgURL(t, pgServer(t).NewDatabase(t))
	if migrate {
		if err := Migrate(t.Context(), dsn); err != nil {
			t.Fatalf("Migrate: %v", err)
		}
	}
	return dsn
}

// pgURL turns pgtest's keyword/value DSN into the URL form Open takes.
func pgURL(t testing.TB, dsn string) string {
	t.Helper()
	kv := map[string]string{}
	for _, f := range strings.Fields(dsn) {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			t.Fatalf("pgtest DSN %q: field %q", dsn, f)
		}
		kv[k] = v
	}
	q := url.Values{"host": {kv["host"]}, "port": {kv["port"]}, "sslmode": {kv["sslmode"]}}
	u := url.URL{Scheme: "postgres", User: url.User(kv["user"]), Path: "/" + kv["dbname"], RawQuery: q.Encode()}
	return u.String()
}

// backend makes databases of one kind.
type backend struct {
	name string
	// path returns a new database's path for Open: an SQLite file name
	// that does not exist yet, or the URL of a migrated PostgreSQL
	// database.
	path func(t testing.TB) string
}

var backends = []backend{
	{"sqlite", func(t testing.TB) string { return filepath.Join(t.TempDir(), "users.db") }},
	{"postgres", func(t testing.TB) string { return newPGDatabase(t, true) }},
}

// forEachBackend runs f as a subtest per backend.
func forEachBackend(t *testing.T, f func(t *testing.T, b backend)) {
	t.Helper()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { f(t, b) })
	}
}

// newTestDB opens a new database of b's kind for t.
func newTestDB(t *testing.T, b backend) *DB {
	return openTest(t, b.path(t), Options{})
}

func TestDollarParams(t *testing.T) {
	tests := []struct{ in, want string }{
		{`SELECT 1`, `SELECT 1`},
		{`a = ? AND b = ?`, `a = $1 AND b = $2`},
		{`a = ?1 AND b = ?2 AND c = ?1 LIMIT ?3`, `a = $1 AND b = $2 AND c = $1 LIMIT $3`},
		{`a = ?2 AND b = ?`, `a = $2 AND b = $3`}, // SQLite's numbering
		{`a = ?10, ?`, `a = $10, $11`},
		{`'?' || ? || 'it''s ?' AND "we?rd" = ?`, `'?' || $1 || 'it''s ?' AND "we?rd" = $2`},
		{"x = ? -- why?\n AND y = ?", "x = $1 -- why?\n AND y = $2"},
		{"x = ? -- why?", "x = $1 -- why?"},
		{`'unterminated ?`, `'unterminated ?`},
		{`a - ? - -?`, `a - $1 - -$2`},
	}
	for _, tt := range tests {
		if got := dollarParams(tt.in); got != tt.want {
			t.Errorf("dollarParams(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	// Cached: the same text again gives the same result.
	for range 2 {
		if got := postgresDialect().query(`x = ?`); got != `x = $1` {
			t.Errorf("postgresDialect.query = %q", got)
		}
	}
	if got := sqliteDialect().query(`x = ?`); got != `x = ?` {
		t.Errorf("sqliteDialect.query = %q", got)
	}
}

func TestIsPostgres(t *testing.T) {
	for path, want := range map[string]bool{
		"postgres://u@h/db":           true,
		"postgresql:///db?host=/tmp":  true,
		"users.db":                    false,
		"/var/lib/popbox/users.db":    false,
		"host=/tmp dbname=x":          false, // a file name too; not taken for a DSN
		"postgres:relative/file":      false,
		"./postgres://not-a-url/x.db": false,
	} {
		if got := isPostgres(path); got != want {
			t.Errorf("isPostgres(%q) = %v, want %v", path, got, want)
		}
	}
}

// TestUnstorableText: bytes PostgreSQL's text refuses (invalid UTF-8, NUL)
// from the network side never make a write fail, on either backend: login
// events store them as U+FFFD, and arguments that cannot name anything
// stored are answered without a query.
func TestUnstorableText(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := t.Context()
		db := newTestDB(t, b)
		if err := db.Add(ctx, "alice", "pw"); err != nil {
			t.Fatal(err)
		}
		when := time.Date(2026, 7, 8, 9, 10, 11, 0, time.UTC)
		if err := db.RecordLogin(ctx, "alice", LoginEvent{Time: when, RemoteAddr: "192.0.2.1\x00\xff:1", Mechanism: "PL\xffAIN"}); err != nil {
			t.Fatalf("RecordLogin: %v", err)
		}
		// In a batch with a good event, which must not be lost with it.
		db.QueueLogin(ctx, "alice", LoginEvent{Time: when.Add(time.Second), RemoteAddr: "\xc3", Mechanism: "x\x00", Success: true})
		db.QueueLogin(ctx, "alice", LoginEvent{Time: when.Add(2 * time.Second), RemoteAddr: "192.0.2.2:2", Mechanism: "PLAIN", Success: true})
		h, err := db.LoginHistory(ctx, "alice")
		if err != nil {
			t.Fatal(err)
		}
		want := LoginHistory{
			Successes: []LoginEvent{
				{Time: when.Add(2 * time.Second), RemoteAddr: "192.0.2.2:2", Mechanism: "PLAIN", Success: true},
				{Time: when.Add(time.Second), RemoteAddr: "\uFFFD", Mechanism: "x\uFFFD", Success: true},
			},
			Failures: []LoginEvent{{Time: when, RemoteAddr: "192.0.2.1\uFFFD\uFFFD:1", Mechanism: "PL\uFFFDAIN"}},
		}
		if diff := cmp.Diff(want, h); diff != "" {
			t.Errorf("LoginHistory (-want +got):\n%s", diff)
		}
		// Long and invalid: still cut to maxEventField on a rune boundary.
		if got, want := truncate(strings.Repeat("ab\xff", 100)), strings.Repeat("ab\uFFFD", 25)+"ab"; got != want {
			t.Errorf("truncate(ab 0xff ...) = %q, want %q", got, want)
		}

		if err := db.RevokeAppPassword(ctx, "alice", "a\xffb"); !errors.Is(err, ErrNoAppPassword) {
			t.Errorf("RevokeAppPassword(invalid label) = %v, want ErrNoAppPassword", err)
		}
		if _, err := db.AddAppPassword(ctx, "alice", "nul\x00"); !errors.Is(err, ErrInvalidLabel) {
			t.Errorf("AddAppPassword(NUL label) = %v, want ErrInvalidLabel", err)
		}
		for _, h := range []string{"$2y$05$\xff", "{BLF-CRYPT}\x00", "\xff"} {
			if err := db.AddHashed(ctx, "bob", h); err == nil || !(errors.Is(err, passhash.ErrInvalidHash) || errors.Is(err, passhash.ErrUnsupportedScheme)) {
				t.Errorf("AddHashed(%q) = %v, want a hash error", h, err)
			}
		}
		for _, name := range []string{"al\xffice", "al\x00ice"} {
			if _, err := db.Authenticate(ctx, name, "pw"); !errors.Is(err, ErrAuthFailed) {
				t.Errorf("Authenticate(%q) = %v, want ErrAuthFailed", name, err)
			}
			if _, _, err := db.SCRAMCredentials(ctx, name); !errors.Is(err, ErrAuthFailed) {
				t.Errorf("SCRAMCredentials(%q) = %v, want ErrAuthFailed", name, err)
			}
		}
	})
}
