// Package app assembles a popbox installation from its configuration:
// where the user database, the mailboxes and the TLS files live, the
// Backend that joins accounts to storage for the POP3 server, and the
// first-run setup. cmd/popbox calls it; the protocol and storage packages
// know nothing of it.
//
// The choice of backend is made here and nowhere else: OpenUsersConfig and
// OpenMail read the configuration's store and users.database and return a
// *userdb.DB and a Mail (a store.Admin) that pop3server, lmtp, the
// maintenance job and the commands use alike, whichever store is behind
// them:
//
//   - store = "maildir" (the default): Maildirs under the data directory
//     (store/maildir), users in DATA/users.db (userdb, SQLite). One server.
//   - store = "postgres://...": mailboxes, bodies and session leases in
//     that database (store/postgres), and the users in the same database
//     (userdb on the same DSN) unless users.database names another. Any
//     number of `popbox serve` frontends share it; each still has its own
//     data directory for its TLS files, scram-secret and LMTP socket.
//     Neither package creates its PostgreSQL schema on open (several
//     frontends would race, and an upgrade should be one deliberate step):
//     Migrate does, for `popbox migrate`, and the Open functions refuse a
//     schema that is not current (IsSchemaError).
//
// Data directory layout:
//
//	DATA/users.db           user database (userdb, SQLite), unless elsewhere
//	DATA/mail/USER/Maildir  one Maildir per user (store/maildir), with Maildirs
//	DATA/tls/cert.pem, key.pem  the self-signed certificate made on first run
//	DATA/scram-secret       the salt secret of unknown users' fake SCRAM credentials
//
// ImportMailboxes and CopyUsers move a Maildir data directory into the
// configured store (`popbox import datadir`).
package app

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/popbox/popbox/config"
	"github.com/popbox/popbox/lmtp"
	"github.com/popbox/popbox/pop3server"
	"github.com/popbox/popbox/sasl"
	"github.com/popbox/popbox/store"
	"github.com/popbox/popbox/store/maildir"
	"github.com/popbox/popbox/userdb"
)

// DataDir is an installation's data directory.
type DataDir string

// UsersPath is the user database file.
func (d DataDir) UsersPath() string { return filepath.Join(string(d), "users.db") }

// MailRoot holds the per-user mailboxes.
func (d DataDir) MailRoot() string { return filepath.Join(string(d), "mail") }

// Create makes the directory (owner-only: it holds password hashes, keys and
// mail) if it does not exist.
func (d DataDir) Create() error {
	if err := os.MkdirAll(string(d), 0o700); err != nil {
		return fmt.Errorf("creating data directory: %w", err)
	}
	return nil
}

// OpenUsers opens the user database, creating it if needed.
func (d DataDir) OpenUsers() (*userdb.DB, error) {
	return d.OpenUsersWith(userdb.Options{})
}

// OpenUsersWith is OpenUsers with options (the server's).
func (d DataDir) OpenUsersWith(opts userdb.Options) (*userdb.DB, error) {
	if err := d.Create(); err != nil {
		return nil, err
	}
	db, err := userdb.Open(d.UsersPath(), opts)
	if err != nil {
		return nil, fmt.Errorf("opening user database %s: %w", d.UsersPath(), err)
	}
	return db, nil
}

// SCRAMSecret returns the installation's secret for the fake SCRAM
// credentials of unknown users (RFC 5802 §5.1), creating it on first use.
// It is kept in the data directory so that an unknown user's salt stays the
// same across restarts, as a real user's does: one that changed at every
// restart would tell the two apart.
func (d DataDir) SCRAMSecret() ([]byte, error) {
	path := filepath.Join(string(d), "scram-secret")
	if b, err := os.ReadFile(path); err == nil && len(b) == 32 {
		return b, nil
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	b := make([]byte, 32)
	rand.Read(b)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("creating %s: %w", path, err)
	}
	_, werr := f.Write(b)
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		os.Remove(tmp)
		return nil, fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, fmt.Errorf("writing %s: %w", path, err)
	}
	return b, nil
}

// ErrNoUserDB means the data directory has no user database yet: usually a
// wrong --data, where creating an empty database would only hide the mistake.
var ErrNoUserDB = errors.New("no user database (wrong data directory?)")

// OpenExistingUsers opens the user database, failing with ErrNoUserDB
// instead of creating it.
func (d DataDir) OpenExistingUsers() (*userdb.DB, error) {
	if _, err := os.Stat(d.UsersPath()); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoUserDB, err)
	}
	return d.OpenUsers()
}

// OpenStore opens the Maildir store without quotas and without keeping
// deleted mail, for tests; the commands use OpenMailStore.
func (d DataDir) OpenStore(log *slog.Logger) (*maildir.Store, error) {
	return d.openStore(maildir.Options{Logger: log})
}

// OpenMailStore opens the Maildir store as configured: quotas (mail's
// defaults, overridden per user in users), and deleted mail kept
// mail.KeepDeletedDays days. Every command that delivers or deletes must
// open it this way, or it would ignore quotas or delete for good.
func (d DataDir) OpenMailStore(log *slog.Logger, users *userdb.DB, mail config.Mail, opts ...MailOption) (*maildir.Store, error) {
	var o mailOptions
	for _, f := range opts {
		f(&o)
	}
	return d.openStore(maildir.Options{
		Logger:    log,
		Retention: time.Duration(mail.KeepDeletedDays) * 24 * time.Hour,
		Quota:     QuotaFunc(users, mail),
		LockWait:  o.lockWait,
	})
}

// MailOption adjusts how OpenMail and OpenMailStore open the store.
type MailOption func(*mailOptions)

type mailOptions struct {
	lockWait func(time.Duration)
}

// WithLockWait has the store report each wait for a mailbox's index lock
// (Maildir only: PostgreSQL's row locks wait inside the database).
func WithLockWait(f func(time.Duration)) MailOption {
	return func(o *mailOptions) { o.lockWait = f }
}

// QuotaFunc returns each user's quota: the per-user overrides in users (if
// not nil) over mail's defaults. It is asked at every delivery, so a
// change with "popbox user set" applies at once, without a restart.
func QuotaFunc(users *userdb.DB, mail config.Mail) func(ctx context.Context, user string) (store.Quota, error) {
	return func(ctx context.Context, user string) (store.Quota, error) {
		q := store.Quota{MaxBytes: int64(mail.QuotaBytes), MaxMessages: int64(mail.QuotaMessages)}
		if users == nil {
			return q, nil
		}
		u, err := users.Get(ctx, user)
		if errors.Is(err, userdb.ErrNotFound) || errors.Is(err, userdb.ErrInvalidName) {
			return q, nil // mail for a name userdb does not know: the defaults
		}
		if err != nil {
			return q, fmt.Errorf("reading the quota of %s: %w", user, err)
		}
		if u.QuotaBytes != nil {
			q.MaxBytes = *u.QuotaBytes
		}
		if u.QuotaMessages != nil {
			q.MaxMessages = *u.QuotaMessages
		}
		return q, nil
	}
}

func (d DataDir) openStore(opts maildir.Options) (*maildir.Store, error) {
	if err := os.MkdirAll(d.MailRoot(), 0o700); err != nil {
		return nil, fmt.Errorf("creating mail directory: %w", err)
	}
	st, err := maildir.New(d.MailRoot(), opts)
	if err != nil {
		return nil, fmt.Errorf("opening mail store %s: %w", d.MailRoot(), err)
	}
	return st, nil
}

// Backend joins the user database and the store for pop3server. Besides a
// pop3server.Backend it is a SCRAMBackend (SCRAM-SHA-256), an Authorizer
// (OAUTHBEARER, XOAUTH2, EXTERNAL) and a LoginHistory (login history and
// LOGIN-DELAY).
type Backend struct {
	Users *userdb.DB
	Store store.Store
}

var (
	_ pop3server.SCRAMBackend = Backend{}
	_ pop3server.Authorizer   = Backend{}
	_ pop3server.LoginHistory = Backend{}
)

// Authenticate implements pop3server.Backend. The server reports the
// outcome to RecordLogin.
func (b Backend) Authenticate(ctx context.Context, _ pop3server.ConnInfo, user, password string) (string, error) {
	name, err := b.Users.Authenticate(ctx, user, password)
	if errors.Is(err, userdb.ErrAuthFailed) {
		return "", fmt.Errorf("%w: %w", pop3server.ErrAuthFailed, err)
	}
	return name, err
}

// SCRAMCredentials implements pop3server.SCRAMBackend, which makes the
// server offer SCRAM-SHA-256. Users without credentials (imported hashes,
// accounts from before schema version 3 that have not logged in since) fail
// as unknown users do, with pop3server.ErrAuthFailed.
func (b Backend) SCRAMCredentials(ctx context.Context, _ pop3server.ConnInfo, user string) (string, sasl.SCRAMCredentials, error) {
	name, creds, err := b.Users.SCRAMCredentials(ctx, user)
	if errors.Is(err, userdb.ErrAuthFailed) {
		return "", creds, fmt.Errorf("%w: %w", pop3server.ErrAuthFailed, err)
	}
	return name, creds, err
}

// Authorize implements pop3server.Authorizer: a user whose OAuth token or
// client certificate was verified logs in if the account exists.
func (b Backend) Authorize(ctx context.Context, _ pop3server.ConnInfo, user string) (string, error) {
	u, err := b.Users.Get(ctx, user)
	if errors.Is(err, userdb.ErrNotFound) || errors.Is(err, userdb.ErrInvalidName) {
		return "", fmt.Errorf("%w: %w", pop3server.ErrAuthFailed, err)
	}
	if err != nil {
		return "", err
	}
	if u.Disabled {
		return "", fmt.Errorf("%w: %q is disabled", pop3server.ErrAuthFailed, u.Name)
	}
	return u.Name, nil
}

// RecordLogin implements pop3server.LoginRecorder: successful logins and
// failed ones of existing users go into the login history, with the
// mechanism. Both are queued and written behind the reply
// (userdb.QueueLogin): a write per login would put a database transaction
// on every client's path, and a failure recorded before the reply would
// make a wrong password answer measurably later than an unknown user,
// telling an attacker which accounts exist. LOGIN-DELAY still sees a
// queued success.
func (b Backend) RecordLogin(ctx context.Context, info pop3server.ConnInfo, user string, success bool) {
	ev := userdb.LoginEvent{Time: time.Now(), Mechanism: info.Mechanism, Success: success}
	if info.RemoteAddr != nil {
		ev.RemoteAddr = info.RemoteAddr.String()
	}
	b.Users.QueueLogin(context.WithoutCancel(ctx), user, ev)
}

// LastLogin implements pop3server.LoginHistory.
func (b Backend) LastLogin(ctx context.Context, user string) (time.Time, error) {
	return b.Users.LastLogin(ctx, user)
}

// Open implements pop3server.Backend.
func (b Backend) Open(ctx context.Context, user string) (store.Maildrop, error) {
	return b.Store.Open(ctx, user)
}

// DemoUser is the account made on an empty installation.
const DemoUser = "demo"

// Bootstrap creates the demo user with a random password and a welcome
// message when the user database is empty. It returns the password, or ""
// when there was nothing to do.
func Bootstrap(ctx context.Context, users *userdb.DB, st store.Store) (string, error) {
	n, err := users.Count(ctx)
	if err != nil || n > 0 {
		return "", err
	}
	password := RandomPassword()
	if err := users.Add(ctx, DemoUser, password); err != nil {
		return "", fmt.Errorf("creating demo user: %w", err)
	}
	if _, err := st.Deliver(ctx, DemoUser, strings.NewReader(welcomeMessage)); err != nil {
		return "", fmt.Errorf("delivering welcome message: %w", err)
	}
	return password, nil
}

// RandomPassword returns 20 characters from an alphabet without look-alikes
// (about 100 bits).
func RandomPassword() string {
	const alphabet = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
	return randomString(alphabet, 20)
}

func randomString(alphabet string, n int) string {
	b := make([]byte, n)
	buf := make([]byte, 1)
	for i := 0; i < n; {
		rand.Read(buf)
		// Rejection sampling keeps the distribution uniform.
		if int(buf[0]) >= 256-256%len(alphabet) {
			continue
		}
		b[i] = alphabet[int(buf[0])%len(alphabet)]
		i++
	}
	return string(b)
}

const welcomeMessage = "From: popbox <postmaster@localhost>\n" +
	"To: demo@localhost\n" +
	"Subject: Welcome to popbox\n" +
	"MIME-Version: 1.0\n" +
	"Content-Type: text/plain; charset=utf-8\n" +
	"\n" +
	"This message was delivered by popbox when it first started.\n" +
	"\n" +
	"Add users with `popbox user add NAME` and deliver mail with\n" +
	"`popbox deliver NAME < message`. Your mail client can now fetch\n" +
	"this mailbox over POP3.\n"

// RecipientLookup returns the canonical user of an LMTP recipient's name
// (lmtp.AddressResolver's Lookup): an unknown or invalid name is
// lmtp.ErrUnknownRecipient, so the MTA bounces it at RCPT. A disabled
// account still gets mail, as with popbox deliver.
func RecipientLookup(users *userdb.DB) func(ctx context.Context, name string) (string, error) {
	return func(ctx context.Context, name string) (string, error) {
		u, err := users.Get(ctx, name)
		if errors.Is(err, userdb.ErrNotFound) || errors.Is(err, userdb.ErrInvalidName) {
			return "", fmt.Errorf("%w: %w", lmtp.ErrUnknownRecipient, err)
		}
		if err != nil {
			return "", err
		}
		return u.Name, nil
	}
}
