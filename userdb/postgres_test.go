package userdb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	storepg "github.com/popbox/popbox/store/postgres"
)

// pgVersionsOf reads userdb_migrations through a DB opened without the
// schema check.
func pgVersionsOf(t *testing.T, dsn string) []int {
	t.Helper()
	raw := rawPG(t, dsn)
	rows, err := raw.QueryContext(t.Context(), `SELECT version FROM userdb_migrations ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var vs []int
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		vs = append(vs, v)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return vs
}

// rawPG is a plain connection pool on dsn, for looking at and changing
// the database behind userdb's back.
func rawPG(t *testing.T, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func wantVersions() []int {
	var vs []int
	for i := range pgMigrations() {
		vs = append(vs, i+1)
	}
	return vs
}

// TestPGMigrateConcurrent: frontends starting together all migrate; the
// advisory lock makes each step run once (a step run twice would fail,
// its CREATE TABLE finding the table).
func TestPGMigrateConcurrent(t *testing.T) {
	dsn := newPGDatabase(t, false)
	const n = 4
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = Migrate(t.Context(), dsn) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Migrate %d: %v", i, err)
		}
	}
	if diff := cmp.Diff(wantVersions(), pgVersionsOf(t, dsn)); diff != "" {
		t.Errorf("userdb_migrations (-want +got):\n%s", diff)
	}
	if err := Migrate(t.Context(), dsn); err != nil {
		t.Errorf("Migrate of a migrated database: %v", err)
	}
	db := openTest(t, dsn, Options{})
	if err := db.Add(t.Context(), "alice", "pw"); err != nil {
		t.Fatal(err)
	}
}

// TestPGOpenSchemaVersion: Open refuses a database whose schema is
// missing, older or newer than the program's, changes nothing, and says
// what to do.
func TestPGOpenSchemaVersion(t *testing.T) {
	ctx := t.Context()
	open := func(dsn string) error {
		db, err := Open(dsn, Options{Hash: cheapParams()})
		if err == nil {
			db.Close()
		}
		return err
	}
	check := func(what string, err error, tooNew bool, want string) {
		t.Helper()
		if !errors.Is(err, ErrSchemaVersion) || errors.Is(err, ErrSchemaTooNew) != tooNew {
			t.Errorf("%s: %v; want ErrSchemaVersion (and ErrSchemaTooNew: %v)", what, err, tooNew)
			return
		}
		if !strings.Contains(err.Error(), "`popbox migrate`") || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %q does not say %q and name `popbox migrate`", what, err, want)
		}
	}

	t.Run("missing", func(t *testing.T) {
		dsn := newPGDatabase(t, false)
		check("Open", open(dsn), false, "no user schema")
		var table sql.NullString
		if err := rawPG(t, dsn).QueryRowContext(ctx, `SELECT to_regclass('userdb_migrations')::text`).Scan(&table); err != nil || table.Valid {
			t.Errorf("after a refused Open: userdb_migrations %v, %v; want none", table, err)
		}
		if err := Migrate(ctx, dsn); err != nil {
			t.Fatal(err)
		}
		if err := open(dsn); err != nil {
			t.Errorf("Open after Migrate: %v", err)
		}
	})

	t.Run("older", func(t *testing.T) {
		dsn := newPGDatabase(t, false)
		// As a binary one version back left it.
		if err := migratePostgres(ctx, dsn, pgMigrations()[:len(pgMigrations())-1]); err != nil {
			t.Fatal(err)
		}
		check("Open", open(dsn), false, "older")
		if err := Migrate(ctx, dsn); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(wantVersions(), pgVersionsOf(t, dsn)); diff != "" {
			t.Errorf("userdb_migrations (-want +got):\n%s", diff)
		}
		if err := open(dsn); err != nil {
			t.Errorf("Open after Migrate: %v", err)
		}
	})

	t.Run("newer", func(t *testing.T) {
		dsn := newPGDatabase(t, false)
		// As a binary one version ahead left it.
		if err := migratePostgres(ctx, dsn, append(pgMigrations(), `CREATE TABLE userdb_future (x int)`)); err != nil {
			t.Fatal(err)
		}
		check("Open", open(dsn), true, "newer popbox")
		check("Migrate", Migrate(ctx, dsn), true, "does not downgrade")
		if diff := cmp.Diff(append(wantVersions(), len(pgMigrations())+1), pgVersionsOf(t, dsn)); diff != "" {
			t.Errorf("userdb_migrations after a refused Migrate (-want +got):\n%s", diff)
		}
	})

	t.Run("gap", func(t *testing.T) {
		dsn := newPGDatabase(t, true)
		if _, err := rawPG(t, dsn).ExecContext(ctx, `UPDATE userdb_migrations SET version = version + 1`); err != nil {
			t.Fatal(err)
		}
		if err := open(dsn); !errors.Is(err, ErrSchemaVersion) {
			t.Errorf("Open with versions 2..%d: %v, want ErrSchemaVersion", len(pgMigrations())+1, err)
		}
	})
}

// TestPGBesideStore: the user schema and store/postgres's share a
// database (the scale-out setup) without colliding, in either order.
func TestPGBesideStore(t *testing.T) {
	ctx := t.Context()
	for _, order := range []string{"store first", "userdb first"} {
		t.Run(order, func(t *testing.T) {
			dsn := newPGDatabase(t, false)
			steps := []func(context.Context, string) error{storepg.Migrate, Migrate}
			if order == "userdb first" {
				slices.Reverse(steps)
			}
			for _, migrate := range steps {
				if err := migrate(ctx, dsn); err != nil {
					t.Fatal(err)
				}
			}
			st, err := storepg.Open(ctx, dsn, storepg.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			db := openTest(t, dsn, Options{})
			if err := db.Add(ctx, "alice", "pw"); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestMigrateSQLite: Migrate on a file path creates or upgrades the SQLite
// database, as Open would.
func TestMigrateSQLite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users.db")
	if err := Migrate(t.Context(), path); err != nil {
		t.Fatal(err)
	}
	db := openTest(t, path, Options{})
	var v int
	if err := db.sql.QueryRowContext(t.Context(), `PRAGMA user_version`).Scan(&v); err != nil || v != len(migrations()) {
		t.Errorf("user_version = %d, %v; want %d", v, err, len(migrations()))
	}
}

// TestPGOpenErrors: bad and unreachable DSNs fail without showing the
// password; pgxpool's pool_* parameters (store/postgres's DSN) are
// accepted.
func TestPGOpenErrors(t *testing.T) {
	const secret = "s3cret-pw"
	dead := "postgres://alice:" + secret + "@/users?host=" + filepath.Join(t.TempDir(), "nothing-here") + "&connect_timeout=2"
	for _, dsn := range []string{
		dead,
		"postgres://alice:" + secret + "@/users?pool_max_conns=zero",
		"postgresql://alice:" + secret + "@[::1/users",
	} {
		db, err := Open(dsn, Options{})
		if err == nil {
			db.Close()
			t.Errorf("Open(%q) succeeded", dsn)
			continue
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("Open error shows the password: %v", err)
		}
		if err := Migrate(t.Context(), dsn); err == nil || strings.Contains(err.Error(), secret) {
			t.Errorf("Migrate(%q) = %v; want an error without the password", dsn, err)
		}
	}

	dsn := newPGDatabase(t, true)
	db := openTest(t, dsn+"&pool_max_conns=2&pool_max_conn_lifetime=1h", Options{})
	if err := db.Add(t.Context(), "alice", "pw"); err != nil {
		t.Fatal(err)
	}
	if got := db.sql.db.Stats().MaxOpenConnections; got != 2 {
		t.Errorf("MaxOpenConnections = %d, want pool_max_conns 2", got)
	}
}

// TestPGBusyTimeout: as TestBusyTimeout for SQLite, a write waits for
// another frontend's row lock up to Options.BusyTimeout (lock_timeout),
// unless the DSN sets lock_timeout itself.
func TestPGBusyTimeout(t *testing.T) {
	ctx := t.Context()
	dsn := newPGDatabase(t, true)
	holder := openTest(t, dsn, Options{})
	waiter := openTest(t, dsn, Options{BusyTimeout: 10 * time.Second})
	impatient := openTest(t, dsn, Options{BusyTimeout: 20 * time.Millisecond})
	dsnImpatient := openTest(t, dsn+"&lock_timeout=20", Options{})
	if err := holder.Add(ctx, "alice", "pw"); err != nil {
		t.Fatal(err)
	}

	tx, err := holder.sql.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback() // if the test stops early; no-op after Commit
	if err := tx.lockUsers(ctx, []string{"alice"}); err != nil {
		t.Fatal(err)
	}
	for name, db := range map[string]*DB{"BusyTimeout 20ms": impatient, "lock_timeout=20 in the DSN": dsnImpatient} {
		if err := db.SetPassword(ctx, "alice", "new"); err == nil || errors.Is(err, ErrNotFound) {
			t.Errorf("%s: SetPassword while locked = %v, want a lock timeout", name, err)
		}
	}
	const hold = 300 * time.Millisecond
	released := make(chan error, 1)
	time.AfterFunc(hold, func() { released <- tx.Commit() })
	start := time.Now()
	err = waiter.SetPassword(ctx, "alice", "new")
	d := time.Since(start)
	// Before any Fatal: the test must not end before the commit.
	if err := <-released; err != nil {
		t.Fatal(err)
	}
	if err != nil {
		t.Fatalf("SetPassword while locked: %v", err)
	}
	if d < hold/2 {
		t.Errorf("SetPassword returned after %v, before the lock was released", d)
	}
	if _, err := holder.Authenticate(ctx, "alice", "new"); err != nil {
		t.Errorf("Authenticate: %v", err)
	}
}

// TestPGTwoFrontends: two DBs on one database, as two frontends on two
// machines, see each other's changes at once, and the limits that need a
// read before a write (app passwords per user, login history per user and
// kind) hold while both write at the same time.
func TestPGTwoFrontends(t *testing.T) {
	ctx := t.Context()
	dsn := newPGDatabase(t, true)
	a := openTest(t, dsn, Options{})
	b := openTest(t, dsn, Options{})
	auth := func(db *DB, name, password string, wantOK bool) {
		t.Helper()
		got, err := db.Authenticate(ctx, name, password)
		if wantOK && (err != nil || got != name) {
			t.Errorf("Authenticate(%q) = %q, %v; want success", name, got, err)
		}
		if !wantOK && !errors.Is(err, ErrAuthFailed) {
			t.Errorf("Authenticate(%q) = %q, %v; want ErrAuthFailed", name, got, err)
		}
	}

	t.Run("accounts", func(t *testing.T) {
		if err := a.Add(ctx, "alice", "first"); err != nil {
			t.Fatal(err)
		}
		auth(b, "alice", "first", true)
		if _, _, err := b.SCRAMCredentials(ctx, "alice"); err != nil {
			t.Errorf("SCRAM credentials set on a, read on b: %v", err)
		}
		if err := b.SetPassword(ctx, "alice", "second"); err != nil {
			t.Fatal(err)
		}
		auth(a, "alice", "first", false)
		auth(a, "alice", "second", true)

		app, err := a.AddAppPassword(ctx, "alice", "phone")
		if err != nil {
			t.Fatal(err)
		}
		auth(b, "alice", app, true)
		list, err := a.AppPasswords(ctx, "alice")
		if err != nil || len(list) != 1 || list[0].LastUsed.IsZero() {
			t.Errorf("app passwords seen on a after use on b = %+v, %v; want one, used", list, err)
		}
		if err := b.RevokeAppPassword(ctx, "alice", "phone"); err != nil {
			t.Fatal(err)
		}
		auth(a, "alice", app, false)

		if err := a.SetDisabled(ctx, "alice", true); err != nil {
			t.Fatal(err)
		}
		auth(b, "alice", "second", false)
		if err := a.SetDisabled(ctx, "alice", false); err != nil {
			t.Fatal(err)
		}
		auth(b, "alice", "second", true)

		gig := int64(1 << 30)
		if err := b.SetQuota(ctx, "alice", &gig, nil); err != nil {
			t.Fatal(err)
		}
		if u, err := a.Get(ctx, "alice"); err != nil || u.QuotaBytes == nil || *u.QuotaBytes != gig {
			t.Errorf("quota set on b, read on a: %+v, %v", u, err)
		}
		if err := b.Delete(ctx, "alice"); err != nil {
			t.Fatal(err)
		}
		auth(a, "alice", "second", false)
	})

	t.Run("app password limit", func(t *testing.T) {
		if err := a.Add(ctx, "carol", "pw"); err != nil {
			t.Fatal(err)
		}
		// 2 frontends x 2 goroutines x 15 labels: 60 tries for 50 places.
		var (
			mu              sync.Mutex
			added, tooMany  int
			labelWins, lost int
			wg              sync.WaitGroup
		)
		for f, db := range []*DB{a, b} {
			for g := range 2 {
				wg.Go(func() {
					for i := range 15 {
						_, err := db.AddAppPassword(ctx, "carol", fmt.Sprintf("device %d-%d-%d", f, g, i))
						mu.Lock()
						switch {
						case err == nil:
							added++
						case errors.Is(err, ErrTooManyPasswords):
							tooMany++
						default:
							t.Errorf("AddAppPassword: %v", err)
						}
						mu.Unlock()
					}
				})
			}
		}
		wg.Wait()
		if added != MaxAppPasswords || tooMany != 60-MaxAppPasswords {
			t.Errorf("%d added, %d refused as too many; want %d, %d", added, tooMany, MaxAppPasswords, 60-MaxAppPasswords)
		}
		if list, err := b.AppPasswords(ctx, "carol"); err != nil || len(list) != MaxAppPasswords {
			t.Errorf("carol has %d app passwords, %v; want %d", len(list), err, MaxAppPasswords)
		}

		// Both frontends add the same label at once: one wins.
		if err := a.Add(ctx, "dave", "pw"); err != nil {
			t.Fatal(err)
		}
		for _, db := range []*DB{a, b, a, b} {
			wg.Go(func() {
				_, err := db.AddAppPassword(ctx, "dave", "same label")
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					labelWins++
				case errors.Is(err, ErrExists):
					lost++
				default:
					t.Errorf("AddAppPassword of a contested label: %v", err)
				}
			})
		}
		wg.Wait()
		if labelWins != 1 || lost != 3 {
			t.Errorf("contested label: %d added, %d ErrExists; want 1, 3", labelWins, lost)
		}
	})

	t.Run("login history", func(t *testing.T) {
		names := []string{"erin", "frank"}
		for _, name := range names {
			if err := a.Add(ctx, name, "pw"); err != nil {
				t.Fatal(err)
			}
		}
		base := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
		// Every event has its own time, so the newest MaxLoginHistory of
		// each kind are well defined; the goroutines interleave them.
		const perG = 60
		var (
			wg   sync.WaitGroup
			mu   sync.Mutex
			sent = map[string][]time.Time{} // name/kind -> times
		)
		for f, db := range []*DB{a, b} {
			for g := range 3 {
				wg.Go(func() {
					for i := range perG {
						name := names[i%2]
						ok := i%3 != 0
						when := base.Add(time.Duration((i*6 + f*3 + g) * int(time.Second)))
						ev := LoginEvent{Time: when, RemoteAddr: fmt.Sprintf("192.0.2.%d:%d", f, g), Mechanism: "PLAIN", Success: ok}
						// Half through the queue, half written at once.
						if g == 2 {
							if err := db.RecordLogin(ctx, name, ev); err != nil {
								t.Errorf("RecordLogin: %v", err)
							}
						} else {
							db.QueueLogin(ctx, name, ev)
						}
						mu.Lock()
						k := fmt.Sprint(name, "/", ok)
						sent[k] = append(sent[k], when)
						mu.Unlock()
					}
				})
			}
		}
		wg.Wait()
		for _, db := range []*DB{a, b} {
			if err := db.FlushLogins(ctx); err != nil {
				t.Fatal(err)
			}
		}
		for _, name := range names {
			// Read through the other frontend than half the writers.
			h, err := b.LoginHistory(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			for ok, got := range map[bool][]LoginEvent{true: h.Successes, false: h.Failures} {
				want := slices.Clone(sent[fmt.Sprint(name, "/", ok)])
				slices.SortFunc(want, func(x, y time.Time) int { return y.Compare(x) })
				want = want[:MaxLoginHistory]
				var gotTimes []time.Time
				for _, ev := range got {
					gotTimes = append(gotTimes, ev.Time)
				}
				if diff := cmp.Diff(want, gotTimes); diff != "" {
					t.Errorf("%s, success %v: kept events are not the newest %d (-want +got):\n%s", name, ok, MaxLoginHistory, diff)
				}
			}
		}
		var rows int
		if err := a.sql.QueryRowContext(ctx, `SELECT count(*) FROM login_events`).Scan(&rows); err != nil || rows != 2*len(names)*MaxLoginHistory {
			t.Errorf("login_events holds %d rows, %v; want %d", rows, err, 2*len(names)*MaxLoginHistory)
		}
		if got, err := a.LastLogin(ctx, "erin"); err != nil || got.IsZero() {
			t.Errorf("LastLogin(erin) on a = %v, %v", got, err)
		}
	})
}

// TestPGRowLocks: while one frontend's transaction is between its check
// and its commit, another frontend's write for the same user waits for it,
// so the limits hold. The deterministic counterpart of TestPGTwoFrontends,
// whose races a small machine seldom hits: without the row lock these
// writes would not wait, and the history would keep 22 events and the
// user hold 51 app passwords.
func TestPGRowLocks(t *testing.T) {
	ctx := t.Context()
	dsn := newPGDatabase(t, true)
	a := openTest(t, dsn, Options{})
	b := openTest(t, dsn, Options{})
	// hold runs f in a transaction of a's, starts the others, and commits
	// only once they have had the time to run into its locks.
	hold := func(f func(tx *sqlTx) error, others ...func()) {
		t.Helper()
		tx, err := a.sql.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback() // no-op after Commit
		if err := f(tx); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for _, o := range others {
			wg.Go(o)
		}
		time.Sleep(300 * time.Millisecond)
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
	}

	t.Run("login history", func(t *testing.T) {
		if err := a.Add(ctx, "alice", "pw"); err != nil {
			t.Fatal(err)
		}
		base := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
		ev := func(i int) LoginEvent {
			return LoginEvent{Time: base.Add(time.Duration(i) * time.Minute), RemoteAddr: "192.0.2.1:1", Mechanism: "PLAIN"}
		}
		for i := range MaxLoginHistory {
			if err := a.RecordLogin(ctx, "alice", ev(i)); err != nil {
				t.Fatal(err)
			}
		}
		hold(func(tx *sqlTx) error { return recordLogin(ctx, tx, "alice", ev(100)) },
			func() {
				if err := b.RecordLogin(ctx, "alice", ev(101)); err != nil {
					t.Error(err)
				}
			},
			func() {
				b.QueueLogin(ctx, "alice", ev(102))
				if err := b.FlushLogins(ctx); err != nil {
					t.Error(err)
				}
			})
		h, err := a.LoginHistory(ctx, "alice")
		if err != nil {
			t.Fatal(err)
		}
		want := []time.Time{ev(102).Time, ev(101).Time, ev(100).Time}
		for i := MaxLoginHistory - 1; len(want) < MaxLoginHistory; i-- {
			want = append(want, ev(i).Time)
		}
		var got []time.Time
		for _, e := range h.Failures {
			got = append(got, e.Time)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("failures kept (-want +got):\n%s", diff)
		}
	})

	t.Run("app passwords", func(t *testing.T) {
		if err := a.Add(ctx, "carol", "pw"); err != nil {
			t.Fatal(err)
		}
		for i := range MaxAppPasswords - 1 {
			if _, err := a.AddAppPassword(ctx, "carol", fmt.Sprint("device ", i)); err != nil {
				t.Fatal(err)
			}
		}
		hold(func(tx *sqlTx) error {
			return insertAppPasswordTx(ctx, tx, "adding the last one", "carol", "zzzz", "last", "$argon2id$unused")
		}, func() {
			if _, err := b.AddAppPassword(ctx, "carol", "one too many"); !errors.Is(err, ErrTooManyPasswords) {
				t.Errorf("AddAppPassword on b while a adds the last = %v, want ErrTooManyPasswords", err)
			}
		})
		if list, err := a.AppPasswords(ctx, "carol"); err != nil || len(list) != MaxAppPasswords {
			t.Errorf("carol has %d app passwords, %v; want %d", len(list), err, MaxAppPasswords)
		}
	})
}
