package userdb

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// App passwords let a user give each device its own password, revocable on
// its own when the device is lost, sold or shared, without changing the
// main password on every other device.
//
// Format and lookup: an app password is four groups of four characters from
// a 32-letter alphabet (lower-case letters and digits without the look-alikes
// 0, 1, l and o), e.g. "k7dq-m2xa-9fzt-hw4p": 80 random bits. The first group
// is the password's ID: stored in clear, unique per user, it selects the one
// row whose argon2id hash is verified. The other 60 bits are the secret. That
// is plenty against online guessing (at the ~70 verifications per second a
// server manages, 2^60 guesses take hundreds of millions of years) and, being
// hashed with argon2id, against an offline attack on a stolen database too.
//
// Why an ID rather than verifying the password against every hash: a login
// would then cost one argon2id verification per app password, so a failed
// login would take N+1 times as long for a user with N app passwords as for
// an unknown user, revealing that the account exists (and how many devices
// it has), and letting each failed guess cost the server N+1 times the work.
// With the ID, every login verifies exactly one hash: the selected app
// password's, else the main password's, else (unknown user) the dummy hash.
//
// The trade-off: a main password that happens to have an app password's
// shape, and whose first group equals the ID of one of the user's app
// passwords, is checked against that app password only, so it fails while
// that app password exists (chance about N in a million for a main password
// chosen in this very format; nil for any other). Checking the main password
// as well in that case would make the timing reveal which IDs exist.

// appPasswordAlphabet has 32 characters, so 5 random bits pick one exactly.
const appPasswordAlphabet = "abcdefghijkmnpqrstuvwxyz23456789"

// Limits on app passwords, so that one account cannot grow the database
// without bound.
const (
	// MaxAppPasswords is the most app passwords one user may hold.
	MaxAppPasswords = 50
	// MaxLabelLen is the longest app password label in bytes.
	MaxLabelLen = 64
)

// Errors of the app password methods; test with errors.Is.
var (
	ErrInvalidLabel     = errors.New("userdb: invalid app password label")
	ErrNoAppPassword    = errors.New("userdb: no such app password")
	ErrTooManyPasswords = fmt.Errorf("userdb: too many app passwords (at most %d)", MaxAppPasswords)
)

// AppPassword is one app password as listed; the password itself is never
// stored, only its hash.
type AppPassword struct {
	Label   string
	Created time.Time
	// LastUsed is the last successful login with it; zero if never.
	LastUsed time.Time
}

// ValidLabel reports whether label can name an app password: 1 to
// MaxLabelLen bytes of valid UTF-8 without control characters and without
// leading or trailing space. The error wraps ErrInvalidLabel.
func ValidLabel(label string) error {
	switch {
	case label == "":
		return fmt.Errorf("%w: empty", ErrInvalidLabel)
	case len(label) > MaxLabelLen:
		return fmt.Errorf("%w: longer than %d bytes", ErrInvalidLabel, MaxLabelLen)
	case !utf8.ValidString(label):
		return fmt.Errorf("%w: not UTF-8", ErrInvalidLabel)
	case strings.TrimSpace(label) != label:
		return fmt.Errorf("%w: %q has leading or trailing space", ErrInvalidLabel, label)
	case strings.IndexFunc(label, unicode.IsControl) >= 0:
		return fmt.Errorf("%w: %q contains a control character", ErrInvalidLabel, label)
	}
	return nil
}

// newAppPassword returns a fresh app password and its ID (first group).
func newAppPassword() (password, id string) {
	var b [16]byte
	rand.Read(b[:])
	var sb strings.Builder
	for i, c := range b {
		if i > 0 && i%4 == 0 {
			sb.WriteByte('-')
		}
		sb.WriteByte(appPasswordAlphabet[c&31])
	}
	password = sb.String()
	return password, password[:4]
}

// parseAppPassword reports whether password has an app password's shape and
// returns its canonical form and ID. Upper case and groups separated by
// spaces or run together are accepted too, as people retype what they read.
func parseAppPassword(password string) (canonical, id string, ok bool) {
	// 16 characters plus a few separators; anything longer is not one.
	if len(password) < 16 || len(password) > 24 {
		return "", "", false
	}
	var b [16]byte
	n := 0
	for i := 0; i < len(password); i++ {
		c := password[i]
		if c == '-' || c == ' ' {
			continue
		}
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if n == len(b) || strings.IndexByte(appPasswordAlphabet, c) < 0 {
			return "", "", false
		}
		b[n] = c
		n++
	}
	if n != len(b) {
		return "", "", false
	}
	s := string(b[:])
	canonical = s[0:4] + "-" + s[4:8] + "-" + s[8:12] + "-" + s[12:16]
	return canonical, canonical[:4], true
}

// AddAppPassword creates an app password labelled label for name and
// returns it; it cannot be retrieved later. Errors wrap ErrInvalidName,
// ErrInvalidLabel, ErrNotFound, ErrExists (label taken) or
// ErrTooManyPasswords.
func (db *DB) AddAppPassword(ctx context.Context, name, label string) (string, error) {
	if err := ValidName(name); err != nil {
		return "", err
	}
	if err := ValidLabel(label); err != nil {
		return "", err
	}
	name = Canonical(name)
	// An ID already taken by another of the user's app passwords is
	// retried with a new password: with at most MaxAppPasswords of 2^20
	// IDs, a few tries always suffice.
	for range 8 {
		password, id := newAppPassword()
		h, err := db.hash(ctx, password)
		if err != nil {
			return "", err
		}
		err = db.insertAppPassword(ctx, name, id, label, h)
		if errors.Is(err, errIDTaken) {
			continue
		}
		if err != nil {
			return "", err
		}
		return password, nil
	}
	return "", fmt.Errorf("userdb: adding app password for %q: no free ID", name)
}

var errIDTaken = errors.New("app password ID taken")

func (db *DB) insertAppPassword(ctx context.Context, name, id, label, hash string) error {
	what := fmt.Sprintf("adding app password %q for %q", label, name)
	tx, err := db.sql.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("userdb: %s: %w", what, err)
	}
	defer tx.Rollback()
	if err := insertAppPasswordTx(ctx, tx, what, name, id, label, hash); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("userdb: %s: %w", what, err)
	}
	return nil
}

// insertAppPasswordTx checks the limits and inserts, in tx. One
// transaction, so the checks and the insert see the same state even with
// the server or another CLI (or frontend) writing concurrently: it holds
// SQLite's write lock, or the user's row lock in PostgreSQL. (Without the
// row lock, two frontends could each count MaxAppPasswords-1 and both
// insert.)
func insertAppPasswordTx(ctx context.Context, tx *sqlTx, what, name, id, label, hash string) error {
	if err := tx.lockUsers(ctx, []string{name}); err != nil {
		return fmt.Errorf("userdb: %s: %w", what, err)
	}
	var exists, count, labelTaken, idTaken int
	err := tx.QueryRowContext(ctx, `SELECT
			(SELECT count(*) FROM users WHERE name = ?1),
			(SELECT count(*) FROM app_passwords WHERE "user" = ?1),
			(SELECT count(*) FROM app_passwords WHERE "user" = ?1 AND label = ?2),
			(SELECT count(*) FROM app_passwords WHERE "user" = ?1 AND id = ?3)`,
		name, label, id).Scan(&exists, &count, &labelTaken, &idTaken)
	switch {
	case err != nil:
		return fmt.Errorf("userdb: %s: %w", what, err)
	case exists == 0:
		return fmt.Errorf("%w: %q", ErrNotFound, name)
	case labelTaken > 0:
		return fmt.Errorf("%w: app password %q of %q", ErrExists, label, name)
	case count >= MaxAppPasswords:
		return fmt.Errorf("%w: %q", ErrTooManyPasswords, name)
	case idTaken > 0:
		return errIDTaken
	}
	if _, err := tx.ExecContext(ctx,
		`INSERT INTO app_passwords ("user", id, label, hash, created) VALUES (?, ?, ?, ?, ?)`,
		name, id, label, hash, time.Now().Unix()); err != nil {
		return fmt.Errorf("userdb: %s: %w", what, err)
	}
	return nil
}

// AppPasswords lists name's app passwords by label. Errors wrap
// ErrInvalidName or ErrNotFound.
func (db *DB) AppPasswords(ctx context.Context, name string) ([]AppPassword, error) {
	if _, err := db.Get(ctx, name); err != nil {
		return nil, err
	}
	name = Canonical(name)
	rows, err := db.sql.QueryContext(ctx,
		`SELECT label, created, last_used FROM app_passwords WHERE "user" = ? ORDER BY label`, name)
	if err != nil {
		return nil, fmt.Errorf("userdb: listing app passwords of %q: %w", name, err)
	}
	defer rows.Close()
	var list []AppPassword
	for rows.Next() {
		var (
			a        AppPassword
			created  int64
			lastUsed sql.NullInt64
		)
		if err := rows.Scan(&a.Label, &created, &lastUsed); err != nil {
			return nil, fmt.Errorf("userdb: listing app passwords of %q: %w", name, err)
		}
		a.Created = time.Unix(created, 0).UTC()
		if lastUsed.Valid {
			a.LastUsed = time.Unix(lastUsed.Int64, 0).UTC()
		}
		list = append(list, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("userdb: listing app passwords of %q: %w", name, err)
	}
	return list, nil
}

// RevokeAppPassword deletes name's app password labelled label; logins with
// it fail from now on, like any wrong password. Errors wrap ErrInvalidName,
// ErrNotFound or ErrNoAppPassword.
func (db *DB) RevokeAppPassword(ctx context.Context, name, label string) error {
	if _, err := db.Get(ctx, name); err != nil {
		return err
	}
	name = Canonical(name)
	if ValidLabel(label) != nil {
		// No app password has such a label, and PostgreSQL would refuse
		// one that is not UTF-8 as a query error rather than find none.
		return fmt.Errorf("%w: %q for %q", ErrNoAppPassword, label, name)
	}
	res, err := db.sql.ExecContext(ctx, `DELETE FROM app_passwords WHERE "user" = ? AND label = ?`, name, label)
	if err != nil {
		return fmt.Errorf("userdb: revoking app password %q of %q: %w", label, name, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("userdb: revoking app password %q of %q: %w", label, name, err)
	}
	if n == 0 {
		return fmt.Errorf("%w: %q for %q", ErrNoAppPassword, label, name)
	}
	return nil
}

// appPasswordUsed records a successful login with name's app password id,
// and upgrades its hash if it was made with other parameters. Best effort:
// the login has already succeeded.
func (db *DB) appPasswordUsed(ctx context.Context, name, id, stored, password string, rehash bool) {
	if _, err := db.sql.ExecContext(ctx,
		`UPDATE app_passwords SET last_used = ? WHERE "user" = ? AND id = ?`,
		time.Now().Unix(), name, id); err != nil {
		db.log.Warn("userdb: cannot record app password use", "user", name, "err", err)
	}
	if !rehash {
		return
	}
	h, err := db.hash(ctx, password)
	if err != nil {
		db.log.Warn("userdb: cannot upgrade app password hash", "user", name, "err", err)
		return
	}
	if _, err := db.sql.ExecContext(ctx,
		`UPDATE app_passwords SET hash = ? WHERE "user" = ? AND id = ? AND hash = ?`,
		h, name, id, stored); err != nil {
		db.log.Warn("userdb: cannot upgrade app password hash", "user", name, "err", err)
	}
}
