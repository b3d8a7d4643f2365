package app

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"

	"github.com/popbox/popbox/userdb"

	_ "modernc.org/sqlite" // the driver userdb uses; registers "sqlite"
)

// UserCopy is the outcome of copying one account (CopyUsers).
type UserCopy struct {
	Name string
	// Copied: the account is new in the destination. Otherwise it was
	// there already (an earlier run, or a user added since) and was left
	// alone, or Err says why it could not be copied.
	Copied bool
	Err    error
	// AppPasswords is how many app passwords the account has in the
	// source, none of which are copied (see CopyUsers).
	AppPasswords int
}

// CopyUsers copies every account of the SQLite user database at src into
// dst, keeping each password hash (users log in with the passwords they
// have), the disabled flag and the quota overrides. An account dst already
// has is left alone, so a second run copies nothing twice. It calls report
// for each account and goes on past a failed one; the error is a database
// failure, or ctx's.
//
// Not copied, because userdb has no way to write them: SCRAM-SHA-256
// credentials (userdb computes them again at each user's next login with a
// password; until then SCRAM-SHA-256 fails for that user, and the other
// mechanisms work), app passwords (reported, so that the users can be told
// to make new ones) and login history.
//
// userdb offers no way to read password hashes either, so the source is
// read here, with SQL of its own against userdb's SQLite schema (version 5,
// which userdb.Open brings any older file up to first), read-only.
// TODO: move this into userdb (an export of accounts with hashes and
// SCRAM credentials, and an import that keeps them) and drop the SQL here.
func CopyUsers(ctx context.Context, src string, dst *userdb.DB, report func(UserCopy)) error {
	if _, err := os.Stat(src); err != nil {
		return fmt.Errorf("%w: %w", ErrNoUserDB, err)
	}
	// Upgrades an older file to the schema the query below reads.
	pre, err := userdb.Open(src, userdb.Options{})
	if err != nil {
		return fmt.Errorf("opening user database %s: %w", src, err)
	}
	if err := pre.Close(); err != nil {
		return fmt.Errorf("closing user database %s: %w", src, err)
	}
	abs, err := filepath.Abs(src)
	if err != nil {
		return err
	}
	q := url.Values{}
	q.Set("mode", "ro")
	q.Add("_pragma", "busy_timeout(5000)")
	q.Add("_pragma", "query_only(1)")
	db, err := sql.Open("sqlite", "file:"+(&url.URL{Path: abs}).EscapedPath()+"?"+q.Encode())
	if err != nil {
		return fmt.Errorf("opening user database %s: %w", src, err)
	}
	defer db.Close()

	type account struct {
		name, hash   string
		disabled     bool
		bytes, msgs  sql.NullInt64
		appPasswords int
	}
	rows, err := db.QueryContext(ctx, `SELECT u.name, u.password_hash, u.disabled, u.quota_bytes, u.quota_messages,
		(SELECT count(*) FROM app_passwords a WHERE a.user = u.name)
		FROM users u ORDER BY u.name`)
	if err != nil {
		return fmt.Errorf("reading user database %s: %w", src, err)
	}
	var accounts []account
	for rows.Next() {
		var a account
		if err := rows.Scan(&a.name, &a.hash, &a.disabled, &a.bytes, &a.msgs, &a.appPasswords); err != nil {
			rows.Close()
			return fmt.Errorf("reading user database %s: %w", src, err)
		}
		accounts = append(accounts, a)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return fmt.Errorf("reading user database %s: %w", src, err)
	}

	for _, a := range accounts {
		if err := ctx.Err(); err != nil {
			return err
		}
		r := UserCopy{Name: a.name, AppPasswords: a.appPasswords}
		err := dst.ImportHash(ctx, a.name, a.hash, a.disabled)
		switch {
		case errors.Is(err, userdb.ErrExists):
		case err != nil:
			r.Err = err
		default:
			r.Copied = true
			if a.bytes.Valid || a.msgs.Valid {
				r.Err = dst.SetQuota(ctx, a.name, nullable(a.bytes), nullable(a.msgs))
			}
		}
		report(r)
	}
	return nil
}

func nullable(n sql.NullInt64) *int64 {
	if !n.Valid {
		return nil
	}
	return &n.Int64
}
