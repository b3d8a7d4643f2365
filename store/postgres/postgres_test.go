package postgres

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/popbox/popbox/internal/pgtest"
	"github.com/popbox/popbox/store"
	"github.com/popbox/popbox/store/storetest"
)

// srv is the one PostgreSQL server of this test binary; each test gets a
// database of its own on it.
var srv *pgtest.Server

func TestMain(m *testing.M) {
	if dsn := os.Getenv(leaseHelperEnv); dsn != "" {
		leaseHelper(dsn)
		return
	}
	s, stop, err := pgtest.StartMain()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	srv = s
	code := m.Run()
	stop()
	os.Exit(code)
}

// newDatabase returns the DSN of a fresh, migrated database.
func newDatabase(t testing.TB) string {
	t.Helper()
	dsn := srv.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := Migrate(ctx, dsn); err != nil {
		t.Fatal(err)
	}
	return dsn
}

// openStore opens a Store on dsn, closed at t's cleanup.
func openStore(t testing.TB, dsn string, opts Options) *Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := Open(ctx, dsn, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return openStore(t, newDatabase(t), Options{})
	})
}

func TestAdminContract(t *testing.T) {
	storetest.RunAdmin(t, func(t *testing.T, cfg storetest.AdminConfig) store.Admin {
		return openStore(t, newDatabase(t), Options{Quota: cfg.Quota, Retention: cfg.Retention})
	})
}
