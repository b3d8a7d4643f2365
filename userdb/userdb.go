// Package userdb is popbox's account database: user names and password
// hashes, SCRAM credentials, app passwords, login history, the disabled
// flag and quota overrides. It has two backends behind one API: an SQLite
// file in the data directory (e.g. data/users.db), for a single server,
// and a PostgreSQL database, for several frontends sharing their users
// (Open's path is then a postgres:// or postgresql:// URL, usually the
// database the mail store, store/postgres, uses too).
//
// Implementation notes:
//
//   - SQLite is reached through modernc.org/sqlite (pure Go, no cgo),
//     because the server and the CLI ("popbox user add" while the server
//     runs) change the same accounts concurrently and every change must be
//     atomic, and because accounts hold more (app passwords, SCRAM
//     secrets, login history) than a passwd-style file can.
//   - The SQLite database runs in WAL mode so readers (logins) never wait
//     for a writer, with a busy timeout (Options.BusyTimeout) so that two
//     writers in different processes queue for the lock instead of failing
//     at once. The few transactions are IMMEDIATE, so each holds the write
//     lock from its start; the schema migration is one of them, so two
//     processes opening a fresh file cannot both migrate.
//   - The SQLite file is created mode 0600 before SQLite opens it; SQLite
//     gives the -wal and -shm files the database file's mode. An existing
//     file's mode is left alone.
//   - PostgreSQL is reached through pgx's database/sql driver, so both
//     backends run the same code and the same queries: dialect.go holds
//     the few differences (parameter syntax, row locks) and says why.
//     Its transactions are READ COMMITTED; those that read and then write
//     (the app password limit, pruning the login history) lock the user's
//     row first, so frontends take turns per user. Options.BusyTimeout
//     becomes lock_timeout unless the DSN sets one. The DSN is parsed as
//     store/postgres parses it, so one DSN (pool_max_conns included) can
//     serve both.
//   - Schema versions and migrations differ by backend. SQLite's schema is
//     versioned by PRAGMA user_version; Open applies the missing steps
//     (schema.go) itself and refuses a database written by a newer popbox
//     (ErrSchemaTooNew). PostgreSQL's is versioned by the rows of
//     userdb_migrations (postgres.go), and Open never changes it: the
//     database is shared, so an upgrade is one deliberate step, Migrate
//     (`popbox migrate`), which runs under an advisory lock so that
//     frontends migrating at once are safe. Open refuses a schema that is
//     missing, older or newer than the program's (ErrSchemaVersion), since
//     a frontend must not write to a schema it was not built for. Both
//     step lists are append-only, and a schema change adds a step to each.
//   - User names are ASCII, case-insensitive and stored lower case; see
//     ValidName and Canonical.
//   - Passwords are hashed by package passhash (argon2id). Hashes imported
//     from Dovecot (bcrypt, SHA-crypt, argon2id) keep working and are
//     replaced by current argon2id at the next successful login; so are
//     argon2id hashes with parameters other than Options.Hash.
//   - Authenticate takes the same time whether the user is unknown, the
//     name is invalid or the password is wrong: unknown and invalid names
//     are verified against a dummy argon2id hash with the current
//     parameters, made once per DB. Only users with hashes of another
//     scheme or cost (not yet upgraded) differ in timing, which reveals that
//     the account exists; that is inherent in importing them.
//   - App passwords (one per device, revocable on its own) are argon2id
//     hashes too. The generated password's first group is a non-secret ID
//     that selects the one hash to verify, so a login costs one
//     verification however many app passwords the user has; see
//     apppass.go for the format and the trade-off.
//   - SCRAM-SHA-256 credentials (RFC 5802 §3: salt, iteration count,
//     StoredKey, ServerKey; sasl.DefaultSCRAMIterations) are stored beside
//     the hash whenever a password is set (Add, SetPassword). They need the
//     plaintext password, so users from before schema version 3 and
//     imported hashes get them at their next successful password login;
//     app passwords have none (SCRAM uses the main password). See
//     SCRAMCredentials.
//   - Login history (RecordLogin, LoginHistory) keeps the last
//     MaxLoginHistory successful logins and as many failures per user, so
//     the table stays small however long the server runs or however hard
//     it is attacked; the bound holds with any number of frontends writing.
//   - At most Options.MaxConcurrentHashes hash computations run at a time.
//     Hashing is CPU-bound, so more would not raise the login rate, only
//     memory use (19 MiB per argon2id computation at the defaults) and
//     everyone's latency.
package userdb

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/popbox/popbox/sasl"
	"github.com/popbox/popbox/userdb/passhash"

	"modernc.org/sqlite" // registers driver "sqlite"
)

// Errors returned by DB methods; test with errors.Is.
var (
	ErrNotFound    = errors.New("userdb: no such user")
	ErrExists      = errors.New("userdb: user already exists")
	ErrAuthFailed  = errors.New("userdb: authentication failed")
	ErrInvalidName = errors.New("userdb: invalid user name")
	// ErrInvalidPassword is passhash.ErrInvalidPassword: a password that
	// may not be set (see ValidPassword).
	ErrInvalidPassword = passhash.ErrInvalidPassword
	// ErrSchemaTooNew: the database was written by a newer version of
	// popbox, whose schema this one does not know. On PostgreSQL the error
	// wraps ErrSchemaVersion too.
	ErrSchemaTooNew = errors.New("userdb: database schema is newer than this program")
)

// User is one account as listed.
type User struct {
	// Name is the canonical (lower-case) name.
	Name    string
	Created time.Time
	// PasswordScheme names the stored hash's scheme: passhash.SchemeArgon2id
	// ("argon2id"), "bcrypt", "sha512-crypt", "sha256-crypt", or "unknown"
	// for a hash that cannot be verified (only possible by editing the
	// database by hand).
	PasswordScheme string
	// Disabled accounts cannot log in (see SetDisabled).
	Disabled bool
	// QuotaBytes and QuotaMessages override the server's default quota
	// for this user; nil keeps the default, 0 means no limit.
	QuotaBytes, QuotaMessages *int64
}

// Options configure Open. The zero value means the defaults.
type Options struct {
	// Hash are the argon2id parameters for new and upgraded hashes; zero
	// means passhash.DefaultParams().
	Hash passhash.Params
	// MaxConcurrentHashes bounds simultaneous hash computations (logins,
	// password changes); zero means runtime.GOMAXPROCS(0).
	MaxConcurrentHashes int
	// BusyTimeout is how long a write waits for another connection or
	// process holding the write lock (SQLite) or a row lock (PostgreSQL's
	// lock_timeout, unless the DSN sets it); zero means 5 s.
	BusyTimeout time.Duration
	// Logger receives hash upgrades and unusable stored hashes; nil means
	// slog.Default().
	Logger *slog.Logger
	// KeepHashes leaves hashes of other schemes or costs (imported from
	// Dovecot, say) as they are at login instead of replacing them with
	// argon2id. For benchmarks that compare servers at the same scheme:
	// it keeps weak hashes weak, and an unknown user (checked against an
	// argon2id dummy) then takes longer than such a user's wrong password.
	KeepHashes bool
}

const defaultBusyTimeout = 5 * time.Second

// sqliteBusy is SQLITE_BUSY, the primary result code of "database is
// locked".
const sqliteBusy = 5

// DB is an open user database. Its methods are safe for concurrent use, and
// several DBs (in one or more processes, or on several machines for
// PostgreSQL) may use the same database.
type DB struct {
	sql     *sqlDB
	params  passhash.Params
	log     *slog.Logger
	hashSem chan struct{}
	// keepHashes is Options.KeepHashes.
	keepHashes bool
	// dummyHash is an argon2id hash of a random password with params,
	// verified against when the user does not exist. Made on first use so
	// that CLI commands that never authenticate do not pay for it.
	dummyHash func() (string, error)
	// history holds login events written behind the logins (QueueLogin).
	history historyQueue
}

// Open opens the database at path. A path starting with postgres:// or
// postgresql:// is a PostgreSQL URL (pgx's syntax, as store/postgres
// takes it): Open connects and checks that Migrate has brought the schema
// to this program's version, else fails with an error wrapping
// ErrSchemaVersion. Any other path is an SQLite file, created (mode 0600)
// with its schema if needed, in a directory that must exist.
func Open(path string, opts Options) (*DB, error) {
	if path == "" {
		return nil, errors.New("userdb: empty database path")
	}
	params := opts.Hash
	if params == (passhash.Params{}) {
		params = passhash.DefaultParams()
	}
	if err := params.Validate(); err != nil {
		return nil, fmt.Errorf("userdb: %w", err)
	}
	maxHashes := opts.MaxConcurrentHashes
	if maxHashes <= 0 {
		maxHashes = runtime.GOMAXPROCS(0)
	}
	busy := opts.BusyTimeout
	if busy <= 0 {
		busy = defaultBusyTimeout
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}

	var (
		s   *sqlDB
		err error
	)
	if isPostgres(path) {
		s, err = openPostgres(path, busy)
	} else {
		s, err = openSQLite(path, busy)
	}
	if err != nil {
		return nil, err
	}
	db := &DB{
		sql:        s,
		params:     params,
		log:        logger,
		hashSem:    make(chan struct{}, maxHashes),
		keepHashes: opts.KeepHashes,
	}
	db.dummyHash = sync.OnceValues(func() (string, error) {
		// Any password will do: no user has this hash.
		return passhash.Hash(rand.Text(), params)
	})
	return db, nil
}

// openSQLite opens the SQLite file at path, creating it (mode 0600) and
// its schema if needed.
func openSQLite(path string, busy time.Duration) (*sqlDB, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("userdb: %w", err)
	}
	// Create the file ourselves: SQLite would create it 0644 (less umask),
	// and it holds password hashes.
	f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("userdb: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("userdb: %w", err)
	}

	// Pragmas run on every new connection of the pool. busy_timeout is
	// applied first by the driver, so the journal_mode switch below waits
	// for a lock too. _txlock=immediate makes BeginTx take the write lock
	// up front: a deferred transaction that reads and then writes can fail
	// with SQLITE_BUSY without waiting, in WAL mode.
	q := url.Values{}
	q.Add("_pragma", "busy_timeout("+strconv.FormatInt(busy.Milliseconds(), 10)+")")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Set("_txlock", "immediate")
	// A file: URI, so that '?' or '#' in the path are escaped rather than
	// taken for the query.
	dsn := "file:" + (&url.URL{Path: abs}).EscapedPath() + "?" + q.Encode()
	sqldb, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("userdb: opening %s: %w", abs, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), busy+10*time.Second)
	defer cancel()
	// Two processes opening a new file at once (the server starting while
	// "popbox user add" runs) race to switch it to WAL mode, and SQLite
	// answers SQLITE_BUSY to the loser without waiting out busy_timeout:
	// its busy handler is not used where waiting could deadlock. Retry for
	// as long as busy_timeout would have waited.
	for start := time.Now(); ; {
		err := migrate(ctx, sqldb)
		if err == nil {
			break
		}
		var se *sqlite.Error
		if !errors.As(err, &se) || se.Code()&0xff != sqliteBusy || time.Since(start) > busy {
			sqldb.Close()
			return nil, fmt.Errorf("userdb: %s: %w", abs, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return &sqlDB{db: sqldb, d: sqliteDialect()}, nil
}

// Close writes the queued login history and closes the database.
func (db *DB) Close() error {
	db.closeHistory()
	return db.sql.Close()
}

// ValidPassword reports whether password may be set: non-empty, at most
// passhash.MaxPasswordLen (1024) bytes, valid UTF-8, no NUL. The error wraps
// ErrInvalidPassword and says which rule failed.
func ValidPassword(password string) error {
	return passhash.CheckPassword(password)
}

// Add creates a user with password. It returns an error wrapping
// ErrInvalidName, ErrInvalidPassword or ErrExists.
func (db *DB) Add(ctx context.Context, name, password string) error {
	if err := ValidName(name); err != nil {
		return err
	}
	if err := ValidPassword(password); err != nil {
		return err
	}
	h, err := db.hash(ctx, password)
	if err != nil {
		return err
	}
	return db.insert(ctx, Canonical(name), h, db.scramCredentials(Canonical(name), password))
}

// AddHashed creates a user with an existing password hash, e.g. from a
// Dovecot passdb. hash may carry a Dovecot scheme prefix ({ARGON2ID},
// {BLF-CRYPT}, {SHA512-CRYPT}, {SHA256-CRYPT}, {CRYPT}); it is stored
// without it. A hash this package cannot verify is refused with an error
// wrapping passhash.ErrInvalidHash or passhash.ErrUnsupportedScheme; the
// other errors are those of Add.
func (db *DB) AddHashed(ctx context.Context, name, hash string) error {
	if err := ValidName(name); err != nil {
		return err
	}
	norm, err := passhash.Normalize(hash)
	if err != nil {
		return fmt.Errorf("userdb: importing hash for %q: %w", Canonical(name), err)
	}
	// No SCRAM credentials: they need the plaintext password, so they
	// come with the first successful login (Authenticate).
	return db.insert(ctx, Canonical(name), norm, sql.NullString{})
}

func (db *DB) insert(ctx context.Context, name, hash string, scram sql.NullString) error {
	now := time.Now().Unix()
	// ON CONFLICT rather than a preceding SELECT: one statement, so a
	// concurrent Add of the same name in another process cannot slip in
	// between.
	res, err := db.sql.ExecContext(ctx,
		`INSERT INTO users (name, password_hash, scram_sha256, created, updated) VALUES (?, ?, ?, ?, ?)
		 ON CONFLICT (name) DO NOTHING`, name, hash, scram, now, now)
	if err != nil {
		return fmt.Errorf("userdb: adding %q: %w", name, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("userdb: adding %q: %w", name, err)
	} else if n == 0 {
		return fmt.Errorf("%w: %q", ErrExists, name)
	}
	return nil
}

// SetPassword replaces name's password. It returns an error wrapping
// ErrInvalidName, ErrInvalidPassword or ErrNotFound.
func (db *DB) SetPassword(ctx context.Context, name, password string) error {
	if err := ValidName(name); err != nil {
		return err
	}
	if err := ValidPassword(password); err != nil {
		return err
	}
	h, err := db.hash(ctx, password)
	if err != nil {
		return err
	}
	name = Canonical(name)
	// The SCRAM credentials change with the password: old ones would
	// still accept the old password.
	res, err := db.sql.ExecContext(ctx,
		`UPDATE users SET password_hash = ?, scram_sha256 = ?, updated = ? WHERE name = ?`,
		h, db.scramCredentials(name, password), time.Now().Unix(), name)
	return affectedOne(res, err, "setting password of", name)
}

// Delete removes a user. It returns an error wrapping ErrInvalidName or
// ErrNotFound. The user's mail is not touched.
func (db *DB) Delete(ctx context.Context, name string) error {
	if err := ValidName(name); err != nil {
		return err
	}
	name = Canonical(name)
	res, err := db.sql.ExecContext(ctx, `DELETE FROM users WHERE name = ?`, name)
	return affectedOne(res, err, "deleting", name)
}

// SetDisabled disables or enables name's account. A disabled account keeps
// its mail, passwords and history, but every login fails exactly as a wrong
// password does. Errors wrap ErrInvalidName or ErrNotFound.
func (db *DB) SetDisabled(ctx context.Context, name string, disabled bool) error {
	if err := ValidName(name); err != nil {
		return err
	}
	name = Canonical(name)
	res, err := db.sql.ExecContext(ctx, `UPDATE users SET disabled = ? WHERE name = ?`, disabled, name)
	return affectedOne(res, err, "disabling", name)
}

// SetQuota overrides the server's default quota for name: bytes and
// messages are the limits (0 for none), nil restores the default for that
// limit. Errors wrap ErrInvalidName or ErrNotFound.
func (db *DB) SetQuota(ctx context.Context, name string, bytes, messages *int64) error {
	if err := ValidName(name); err != nil {
		return err
	}
	for _, v := range []*int64{bytes, messages} {
		if v != nil && *v < 0 {
			return fmt.Errorf("userdb: negative quota %d", *v)
		}
	}
	name = Canonical(name)
	res, err := db.sql.ExecContext(ctx, `UPDATE users SET quota_bytes = ?, quota_messages = ? WHERE name = ?`,
		nullInt(bytes), nullInt(messages), name)
	return affectedOne(res, err, "setting the quota of", name)
}

func nullInt(v *int64) sql.NullInt64 {
	if v == nil {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: *v, Valid: true}
}

// affectedOne turns the result of a single-row UPDATE or DELETE into
// ErrNotFound when no row matched.
func affectedOne(res sql.Result, err error, what, name string) error {
	if err != nil {
		return fmt.Errorf("userdb: %s %q: %w", what, name, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("userdb: %s %q: %w", what, name, err)
	}
	if n == 0 {
		return fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	return nil
}

// List returns all users sorted by name.
func (db *DB) List(ctx context.Context) ([]User, error) {
	rows, err := db.sql.QueryContext(ctx,
		`SELECT name, created, password_hash, disabled, quota_bytes, quota_messages FROM users ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("userdb: listing users: %w", err)
	}
	defer rows.Close()
	var users []User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, fmt.Errorf("userdb: listing users: %w", err)
		}
		users = append(users, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("userdb: listing users: %w", err)
	}
	return users, nil
}

// Get returns one user. It returns an error wrapping ErrInvalidName or
// ErrNotFound.
func (db *DB) Get(ctx context.Context, name string) (User, error) {
	if err := ValidName(name); err != nil {
		return User{}, err
	}
	name = Canonical(name)
	u, err := scanUser(db.sql.QueryRowContext(ctx,
		`SELECT name, created, password_hash, disabled, quota_bytes, quota_messages FROM users WHERE name = ?`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	if err != nil {
		return User{}, fmt.Errorf("userdb: reading %q: %w", name, err)
	}
	return u, nil
}

func scanUser(row interface{ Scan(...any) error }) (User, error) {
	var (
		u       User
		created int64
		hash    string
	)
	var qb, qm sql.NullInt64
	if err := row.Scan(&u.Name, &created, &hash, &u.Disabled, &qb, &qm); err != nil {
		return User{}, err
	}
	if qb.Valid {
		u.QuotaBytes = &qb.Int64
	}
	if qm.Valid {
		u.QuotaMessages = &qm.Int64
	}
	u.Created = time.Unix(created, 0).UTC()
	u.PasswordScheme = "unknown"
	if s, err := passhash.Scheme(hash); err == nil {
		u.PasswordScheme = s
	}
	return u, nil
}

// Count returns the number of users.
func (db *DB) Count(ctx context.Context) (int, error) {
	var n int
	if err := db.sql.QueryRowContext(ctx, `SELECT count(*) FROM users`).Scan(&n); err != nil {
		return 0, fmt.Errorf("userdb: counting users: %w", err)
	}
	return n, nil
}

// Authenticate checks name's password, the main one or any of the user's
// app passwords, and returns the canonical name. An invalid name, an unknown
// user, a wrong password and a revoked app password all return
// ErrAuthFailed, after the same amount of work: exactly one hash
// verification (see the package documentation and apppass.go). Other errors
// (database failure, ctx done while waiting for a hashing slot) are returned
// wrapped and mean "try again later", not "wrong password".
//
// A successful login with an app password records its last use. After a
// successful login with a hash of another scheme or cost, the hash is
// replaced by an argon2id hash with the current parameters; failures of
// that upgrade are logged, not returned.
func (db *DB) Authenticate(ctx context.Context, name, password string) (canonicalName string, err error) {
	if ValidName(name) != nil {
		return "", db.failDummy(ctx, password)
	}
	name = Canonical(name)
	// The app password, if the password has that shape and its ID selects
	// one of the user's, comes in the same query: the lookup costs the
	// same whether or not it does.
	appCanonical, appID, isApp := parseAppPassword(password)
	var (
		stored         string
		appHash, scram sql.NullString
		disabled       bool
	)
	err = db.sql.QueryRowContext(ctx,
		`SELECT u.password_hash, u.scram_sha256, u.disabled, a.hash FROM users u
		 LEFT JOIN app_passwords a ON a."user" = u.name AND a.id = ?
		 WHERE u.name = ?`, appID, name).Scan(&stored, &scram, &disabled, &appHash)
	if errors.Is(err, sql.ErrNoRows) {
		return "", db.failDummy(ctx, password)
	}
	if err != nil {
		return "", fmt.Errorf("userdb: looking up %q: %w", name, err)
	}
	useApp := isApp && appHash.Valid
	verifyHash, verifyPassword := stored, password
	if useApp {
		verifyHash, verifyPassword = appHash.String, appCanonical
	}

	if err := db.acquire(ctx); err != nil {
		return "", err
	}
	ok, err := passhash.Verify(verifyHash, verifyPassword)
	db.release()
	if err != nil {
		// Only a hand-edited database gets here: imports are validated.
		db.log.Error("userdb: stored password hash is unusable", "user", name, "app_password", useApp, "err", err)
		return "", ErrAuthFailed
	}
	// A disabled account fails after the same hash check as any other,
	// so neither the reply nor its timing tells it from a wrong password.
	if !ok || disabled {
		return "", ErrAuthFailed
	}
	if useApp {
		db.appPasswordUsed(ctx, name, appID, verifyHash, verifyPassword, !db.keepHashes && passhash.NeedsRehash(verifyHash, db.params))
		return name, nil
	}
	if !scram.Valid {
		// A user from before schema version 3, or imported: the
		// password is at hand now and only now. After the check, so it
		// costs nothing on a failed login.
		db.addSCRAM(ctx, name, stored, password)
	}
	if !db.keepHashes && passhash.NeedsRehash(stored, db.params) {
		db.upgrade(ctx, name, stored, password)
	}
	return name, nil
}

// scramCredentials computes SCRAM-SHA-256 credentials for password, or NULL
// for a password SASLprep refuses (RFC 4013 prohibits some characters that
// ValidPassword allows): that user then cannot use SCRAM, only the
// password mechanisms.
func (db *DB) scramCredentials(name, password string) sql.NullString {
	c, err := sasl.NewSCRAMSHA256Credentials(password, 0)
	if err != nil {
		db.log.Warn("userdb: cannot compute SCRAM credentials", "user", name, "err", err)
		return sql.NullString{}
	}
	return sql.NullString{String: sasl.FormatSCRAMCredentials(c), Valid: true}
}

// addSCRAM stores SCRAM credentials for a user who has none, computed from
// the password just verified against hash. It is best effort like upgrade.
func (db *DB) addSCRAM(ctx context.Context, name, hash, password string) {
	c := db.scramCredentials(name, password)
	if !c.Valid {
		return
	}
	// Only if the password is still the one verified.
	res, err := db.sql.ExecContext(ctx,
		`UPDATE users SET scram_sha256 = ? WHERE name = ? AND password_hash = ? AND scram_sha256 IS NULL`,
		c, name, hash)
	if err != nil {
		db.log.Warn("userdb: cannot store SCRAM credentials", "user", name, "err", err)
		return
	}
	if n, err := res.RowsAffected(); err == nil && n == 1 {
		db.log.Info("userdb: added SCRAM-SHA-256 credentials", "user", name)
	}
}

// SCRAMCredentials returns name's canonical name and SCRAM-SHA-256
// credentials. An invalid name, an unknown user and a user without
// credentials (see Authenticate) all return ErrAuthFailed, after the same
// single query; other errors are database failures. App passwords have no
// SCRAM credentials: SCRAM logs in with the main password only.
func (db *DB) SCRAMCredentials(ctx context.Context, name string) (string, sasl.SCRAMCredentials, error) {
	if ValidName(name) != nil {
		name = "" // no such row; the query still runs, for equal timing
	}
	name = Canonical(name)
	var (
		scram    sql.NullString
		disabled bool
	)
	err := db.sql.QueryRowContext(ctx, `SELECT scram_sha256, disabled FROM users WHERE name = ?`, name).Scan(&scram, &disabled)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && (!scram.Valid || disabled)) {
		return "", sasl.SCRAMCredentials{}, ErrAuthFailed
	}
	if err != nil {
		return "", sasl.SCRAMCredentials{}, fmt.Errorf("userdb: looking up %q: %w", name, err)
	}
	c, err := sasl.ParseSCRAMCredentials(scram.String)
	if err != nil {
		// Only a hand-edited database gets here.
		db.log.Error("userdb: stored SCRAM credentials are unusable", "user", name, "err", err)
		return "", sasl.SCRAMCredentials{}, ErrAuthFailed
	}
	return name, c, nil
}

// failDummy does a wrong-password verification's work for a user that does
// not exist, and returns ErrAuthFailed.
// PrepareDummyHash computes the hash that unknown users are checked against
// now rather than at the first such login, which would otherwise take one
// hash longer than any later one and tell an observer that the name was
// the first unknown one since the start. A server calls it at start-up;
// one-shot commands need not.
func (db *DB) PrepareDummyHash() error {
	_, err := db.dummyHash()
	return err
}

func (db *DB) failDummy(ctx context.Context, password string) error {
	dummy, err := db.dummyHash()
	if err != nil {
		return fmt.Errorf("userdb: making dummy hash: %w", err)
	}
	if err := db.acquire(ctx); err != nil {
		return err
	}
	defer db.release()
	if _, err := passhash.Verify(dummy, password); err != nil {
		return fmt.Errorf("userdb: verifying dummy hash: %w", err)
	}
	return ErrAuthFailed
}

// upgrade replaces name's hash old by a current argon2id hash of password.
// It is best effort: the login has already succeeded.
func (db *DB) upgrade(ctx context.Context, name, old, password string) {
	from, _ := passhash.Scheme(old)
	h, err := db.hash(ctx, password)
	if err != nil {
		// E.g. an imported password that is not UTF-8: keep the old hash,
		// which still works.
		db.log.Warn("userdb: cannot upgrade password hash", "user", name, "scheme", from, "err", err)
		return
	}
	// Only if the hash is still the one verified: a password changed in
	// the meantime (by the CLI, say) must not be overwritten by the old one.
	res, err := db.sql.ExecContext(ctx,
		`UPDATE users SET password_hash = ?, updated = ? WHERE name = ? AND password_hash = ?`,
		h, time.Now().Unix(), name, old)
	if err != nil {
		db.log.Warn("userdb: cannot upgrade password hash", "user", name, "scheme", from, "err", err)
		return
	}
	if n, err := res.RowsAffected(); err == nil && n == 1 {
		db.log.Info("userdb: upgraded password hash", "user", name, "from", from, "to", passhash.SchemeArgon2id, "params", db.params.String())
	}
}

// hash computes a new argon2id hash within the concurrency bound.
func (db *DB) hash(ctx context.Context, password string) (string, error) {
	if err := db.acquire(ctx); err != nil {
		return "", err
	}
	defer db.release()
	h, err := passhash.Hash(password, db.params)
	if err != nil {
		return "", fmt.Errorf("userdb: %w", err)
	}
	return h, nil
}

func (db *DB) acquire(ctx context.Context) error {
	select {
	case db.hashSem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("userdb: waiting to hash: %w", ctx.Err())
	}
}

func (db *DB) release() { <-db.hashSem }
