package config

import (
	"cmp"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Bounds on postgres.lease. Renewals run every third of it, so below a
// second a frontend would spend its time renewing and a short stall (a GC
// pause, a database failover) would cost every session; above an hour a
// crashed frontend would lock its users out for longer than anyone waits.
const (
	minLease = time.Second
	maxLease = time.Hour
	// maxNodeID keeps a node id within PostgreSQL's application_name (63
	// bytes), where store/postgres shows it after "popbox ".
	maxNodeID = 48
)

// redactedPassword replaces passwords in what RedactDSN and ScrubDSN
// return: pgx's choice, so the two read alike in one log.
const redactedPassword = "xxxxx"

// IsPostgresDSN reports whether s names a PostgreSQL database: a URL with
// the scheme postgres or postgresql (the rule userdb.Open follows too, so a
// value means the same thing to every part of popbox). Keyword/value
// strings ("host=... dbname=...") are not accepted: they could not be told
// from a file name.
func IsPostgresDSN(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
}

// StoreDSN returns the PostgreSQL URL of the mail store, or "" when mail is
// kept in Maildirs.
func (c Config) StoreDSN() string {
	if IsPostgresDSN(c.Store) {
		return c.Store
	}
	return ""
}

// RedactDSN returns dsn fit for a log line or an error message: the
// password of its user part and the values of password and sslpassword
// parameters are replaced by "xxxxx". A string that does not parse as a URL
// loses everything between "://" and its last '@', which may hide more
// than the password but never less.
func RedactDSN(dsn string) string {
	scheme, rest, ok := strings.Cut(dsn, "://")
	if !ok {
		return redactParams(dsn)
	}
	_, err := url.Parse(dsn)
	if err != nil {
		if at := strings.LastIndexByte(rest, '@'); at >= 0 {
			rest = redactedPassword + rest[at:]
		}
		return scheme + "://" + redactParams(rest)
	}
	// Rebuilt by hand rather than with u.String(), which would re-encode
	// the parts the operator wrote and make the log line differ from the
	// configuration file.
	var b strings.Builder
	b.WriteString(scheme + "://")
	authority := rest
	if end := strings.IndexAny(rest, "/?#"); end >= 0 {
		authority = rest[:end] // a URL that parses has none of them unescaped before
	}
	if at := strings.LastIndexByte(authority, '@'); at >= 0 {
		user, _, hasPassword := strings.Cut(rest[:at], ":")
		b.WriteString(user)
		if hasPassword {
			b.WriteString(":" + redactedPassword)
		}
		rest = rest[at:]
	}
	b.WriteString(redactParams(rest))
	return b.String()
}

// redactParams masks the values of password parameters in the query part
// of s (or in s itself, for a string that is all parameters).
func redactParams(s string) string {
	head, query, ok := strings.Cut(s, "?")
	if !ok {
		return s
	}
	pairs := strings.Split(query, "&")
	for i, p := range pairs {
		k, _, hasValue := strings.Cut(p, "=")
		if key, err := url.QueryUnescape(k); hasValue && (err != nil || isPasswordKey(key)) {
			pairs[i] = k + "=" + redactedPassword
		}
	}
	return head + "?" + strings.Join(pairs, "&")
}

func isPasswordKey(k string) bool {
	k = strings.ToLower(k)
	return k == "password" || k == "sslpassword"
}

// dsnSecrets returns the passwords dsn carries, as written and decoded,
// longest first so that replacing them one after the other leaves no part
// of a longer one behind.
func dsnSecrets(dsn string) []string {
	var out []string
	add := func(s string) {
		if s == "" {
			return
		}
		out = append(out, s)
		if d, err := url.PathUnescape(s); err == nil && d != s {
			out = append(out, d)
		}
	}
	_, rest, ok := strings.Cut(dsn, "://")
	if !ok {
		rest = dsn
	}
	auth := rest
	if at := strings.LastIndexByte(rest, '@'); at >= 0 {
		auth = rest[:at]
		if _, pw, ok := strings.Cut(auth, ":"); ok {
			add(pw)
		}
	}
	if _, query, ok := strings.Cut(rest, "?"); ok {
		for p := range strings.SplitSeq(query, "&") {
			k, v, _ := strings.Cut(p, "=")
			if key, err := url.QueryUnescape(k); err != nil || isPasswordKey(key) {
				add(v)
				if d, err := url.QueryUnescape(v); err == nil {
					add(d)
				}
			}
		}
	}
	slices.SortStableFunc(out, func(a, b string) int { return cmp.Compare(len(b), len(a)) })
	return out
}

// ScrubDSN returns text with every password dsn carries replaced by
// "xxxxx", and dsn itself by RedactDSN(dsn): for the text of an error from
// a driver or a parser, which may quote the connection string it was
// given.
func ScrubDSN(text, dsn string) string {
	if dsn == "" {
		return text
	}
	text = strings.ReplaceAll(text, dsn, RedactDSN(dsn))
	for _, s := range dsnSecrets(dsn) {
		text = strings.ReplaceAll(text, s, redactedPassword)
	}
	return text
}

// checkDSN returns why dsn is not a usable PostgreSQL URL, without its
// password, or "".
func checkDSN(dsn string) string {
	_, err := pgxpool.ParseConfig(dsn)
	if err == nil {
		return ""
	}
	why := err.Error()
	// pgx says "cannot parse `DSN`: reason"; the DSN is printed anyway.
	var pe *pgconn.ParseConfigError
	if errors.As(err, &pe) {
		if _, after, ok := strings.Cut(why, "`: "); ok {
			why = after
		}
	}
	return fmt.Sprintf("%s is not a usable PostgreSQL URL: %s", RedactDSN(dsn), ScrubDSN(why, dsn))
}
