package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/popbox/popbox/config"
	"github.com/popbox/popbox/store"
	"github.com/popbox/popbox/store/maildir"
	"github.com/popbox/popbox/store/postgres"
	"github.com/popbox/popbox/userdb"
)

// Mail is an open mail store, Maildir or PostgreSQL: everything the
// commands, the POP3 server (through Backend), LMTP and the maintenance job
// need. Close releases it (a PostgreSQL store gives back its sessions'
// leases and closes its connections; a Maildir store holds nothing).
type Mail interface {
	store.Admin
	Close()
}

// maildirMail is a Maildir store as a Mail.
type maildirMail struct{ *maildir.Store }

func (maildirMail) Close() {}

// UsersDatabase returns where cfg keeps its accounts: a postgres:// URL or
// the path of a SQLite file. Unless users.database names one, that is
// the store's database when mail is in PostgreSQL (one database to run and
// back up, and every frontend sees the same accounts), else
// DataDir.UsersPath. A relative users.database is taken relative to
// data_dir, like lmtp.socket.
func UsersDatabase(cfg config.Config) string {
	switch db := cfg.Users.Database; {
	case db != "" && (config.IsPostgresDSN(db) || filepath.IsAbs(db)):
		return db
	case db != "":
		return filepath.Join(cfg.DataDir, db)
	case cfg.StoreDSN() != "":
		return cfg.StoreDSN()
	}
	return DataDir(cfg.DataDir).UsersPath()
}

// UsersOnPostgres reports whether cfg keeps its accounts in PostgreSQL.
func UsersOnPostgres(cfg config.Config) bool {
	return config.IsPostgresDSN(UsersDatabase(cfg))
}

// DescribeUsers names where cfg keeps its accounts, for logs and
// messages: a file, or a URL without its password.
func DescribeUsers(cfg config.Config) string {
	return config.RedactDSN(UsersDatabase(cfg))
}

// DescribeStore names where cfg keeps its mail, for logs and messages: the
// Maildirs' directory, or a URL without its password.
func DescribeStore(cfg config.Config) string {
	if dsn := cfg.StoreDSN(); dsn != "" {
		return config.RedactDSN(dsn)
	}
	return DataDir(cfg.DataDir).MailRoot()
}

// IsSchemaError reports whether err says a PostgreSQL database's schema is
// not the one this binary needs: not created yet, older (`popbox migrate`
// fixes it) or newer (a newer popbox is needed).
func IsSchemaError(err error) bool {
	return errors.Is(err, postgres.ErrSchemaVersion) || errors.Is(err, userdb.ErrSchemaVersion)
}

// OpenUsersConfig opens the user database cfg names (UsersDatabase). A
// SQLite file is created on first use if create is set, and is otherwise
// required to exist (ErrNoUserDB: a wrong data directory should not leave
// an empty database behind); its schema is brought up to date on the way.
// A PostgreSQL database must exist and have the current schema
// (IsSchemaError otherwise): `popbox migrate` creates it, so that several
// frontends never race to.
func OpenUsersConfig(cfg config.Config, opts userdb.Options, create bool) (*userdb.DB, error) {
	where := UsersDatabase(cfg)
	if !config.IsPostgresDSN(where) {
		data := DataDir(cfg.DataDir)
		if create {
			if err := data.Create(); err != nil {
				return nil, err
			}
		} else if _, err := os.Stat(where); err != nil {
			return nil, fmt.Errorf("%s: %w: %w", where, ErrNoUserDB, err)
		}
		db, err := userdb.Open(where, opts)
		if err != nil {
			return nil, fmt.Errorf("opening user database %s: %w", where, err)
		}
		return db, nil
	}
	db, err := userdb.Open(where, opts)
	if err != nil {
		return nil, redact(fmt.Errorf("opening user database %s: %w", config.RedactDSN(where), err), where)
	}
	return db, nil
}

// OpenMail opens the mail store cfg names, as configured: quotas
// (mail's defaults, overridden per user in users, which may be nil for no
// overrides), deleted mail kept mail.keep_deleted_days days, and for
// PostgreSQL the lease and node id of [postgres]. Every command that
// delivers or deletes must open it this way, or it would ignore quotas or
// delete for good. ctx bounds connecting to PostgreSQL and checking its
// schema (IsSchemaError if it is not current); the store outlives it.
func OpenMail(ctx context.Context, cfg config.Config, log *slog.Logger, users *userdb.DB, opts ...MailOption) (Mail, error) {
	dsn := cfg.StoreDSN()
	if dsn == "" {
		st, err := DataDir(cfg.DataDir).OpenMailStore(log, users, cfg.Mail, opts...)
		if err != nil {
			return nil, err
		}
		return maildirMail{st}, nil
	}
	st, err := postgres.Open(ctx, dsn, postgres.Options{
		Logger:        log,
		Quota:         QuotaFunc(users, cfg.Mail),
		Retention:     time.Duration(cfg.Mail.KeepDeletedDays) * 24 * time.Hour,
		LeaseDuration: cfg.Postgres.Lease.Duration,
		NodeID:        cfg.Postgres.NodeID,
	})
	if err != nil {
		return nil, redact(fmt.Errorf("opening mail store %s: %w", config.RedactDSN(dsn), err), dsn)
	}
	return st, nil
}

// Migrate creates or upgrades the schemas of the PostgreSQL databases cfg
// uses (the mail store's, the users' or both, often one database) and
// returns one line per database for the operator. With Maildirs and a
// SQLite user database there is nothing to do (userdb upgrades a SQLite
// file when it opens it) and it returns no lines. Several Migrate calls
// may run at once: both packages serialise migrations with an advisory
// lock and apply each step once.
func Migrate(ctx context.Context, cfg config.Config) ([]string, error) {
	var done []string
	if dsn := cfg.StoreDSN(); dsn != "" {
		if err := postgres.Migrate(ctx, dsn); err != nil {
			return done, redact(fmt.Errorf("migrating the mail store %s: %w", config.RedactDSN(dsn), err), dsn)
		}
		done = append(done, fmt.Sprintf("mail store %s: schema version %d", config.RedactDSN(dsn), postgres.SchemaVersion()))
	}
	if dsn := UsersDatabase(cfg); config.IsPostgresDSN(dsn) {
		if err := userdb.Migrate(ctx, dsn); err != nil {
			return done, redact(fmt.Errorf("migrating the user database %s: %w", config.RedactDSN(dsn), err), dsn)
		}
		done = append(done, fmt.Sprintf("user database %s: schema current", config.RedactDSN(dsn)))
	}
	return done, nil
}

// redactedError keeps the password of a DSN out of an error's text, which
// drivers may build from the connection string, while errors.Is and
// errors.As still see the cause.
type redactedError struct {
	err error
	dsn string
}

func (e *redactedError) Error() string { return config.ScrubDSN(e.err.Error(), e.dsn) }
func (e *redactedError) Unwrap() error { return e.err }

func redact(err error, dsn string) error {
	if err == nil {
		return nil
	}
	return &redactedError{err: err, dsn: dsn}
}
