package userdb

// Importing Dovecot passwd-file accounts ("popbox user import passwd-file").
//
// Implementation notes:
//
//   - Format (Dovecot documentation, "Passwd-file": doc.dovecot.org
//     configuration_manual/authentication/passwd_file; src/auth/
//     db-passwd-file.c): one user per line,
//     user:password:uid:gid:(gecos):home:(shell):extra_fields, of which
//     only user and password matter to a passdb. Empty lines and lines
//     starting with '#' or ':' are skipped. Fields are split at every ':';
//     the fields after the shell are joined again with ':' and split at
//     spaces into key=value extra fields (a pre-2.0 file with an empty
//     eighth field has a mail location in the ninth, kept as
//     userdb_mail=...). A line may end with CRLF and the last line may lack
//     its LF; Dovecot accepts both (checked against Dovecot 2.3.19).
//   - The password field is "{SCHEME}hash", or a bare hash (Dovecot's
//     default scheme is CRYPT), or libpam-pwdfile's "hash[13]" (CRYPT) and
//     "hash[34]" (PLAIN-MD5), rewritten with those prefixes as Dovecot
//     does. Only what package passhash can verify is accepted: {ARGON2ID},
//     {BLF-CRYPT}, {SHA512-CRYPT}, {SHA256-CRYPT}, and {CRYPT} or a bare
//     hash when it is bcrypt or SHA-crypt ($2a$/$2b$/$2y$/$5$/$6$, which is
//     what crypt(3) makes of them, so those users keep their passwords).
//     {PLAIN}, {CLEAR}, {PLAIN-MD5}, DES- and MD5-crypt, yescrypt ($y$),
//     {SSHA}... are refused with the scheme named; an empty password field
//     (an account without a password, or with nopassword) too. Errors never
//     quote the password field.
//   - User names are kept whole, domain included: Dovecot matches the name
//     the client sends against this field, and popbox names admit '@', so
//     "alice@example.org" logs in to popbox as before. They are made
//     canonical (ASCII lower case): Dovecot's default auth_username_format
//     %Lu lowercases the login name before the lookup, so a mixed-case
//     entry only ever matched under a changed setting, and popbox names are
//     case-insensitive. A name that is not a valid popbox name (ValidName)
//     is refused; two entries with one canonical name keep the first, as
//     Dovecot does ("User exists more than once"), and report the others.
//   - The extra field "nologin" makes Dovecot refuse the login whatever the
//     password; such entries are imported disabled (PasswdEntry.NoLogin,
//     ImportHash's disabled), in the same INSERT so that no moment exists
//     in which the account is enabled. Other extra fields (allow_nets,
//     nopassword, userdb_*...) have no popbox equivalent and are returned
//     for the caller to report.
//   - ParsePasswdFile reports every bad line, not just the first, so the
//     administrator can fix the file in one go; the good entries come back
//     with the error.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/popbox/popbox/userdb/passhash"
)

// MaxPasswdLine bounds one passwd-file line.
const MaxPasswdLine = 64 << 10

// ErrPasswdFile is wrapped by every PasswdLineError.
var ErrPasswdFile = errors.New("userdb: passwd-file entry cannot be imported")

// PasswdEntry is one importable user of a Dovecot passwd-file.
type PasswdEntry struct {
	// Line is the line number, from 1.
	Line int
	// User is the canonical popbox user name.
	User string
	// Hash is the password field, with its {SCHEME} prefix if any
	// (libpam-pwdfile forms rewritten, see the notes above).
	Hash string
	// Scheme is the passhash scheme of Hash (passhash.SchemeArgon2id,
	// "bcrypt", "sha512-crypt", "sha256-crypt").
	Scheme string
	// NoLogin: the extra fields include nologin; Dovecot refuses every
	// login, so the user should be imported disabled.
	NoLogin bool
	// Extra are the extra fields, key=value, in file order, nologin
	// included.
	Extra []string
}

// PasswdLineError is one line ParsePasswdFile cannot import.
type PasswdLineError struct {
	Line int
	// User is the name as written, if the line has one.
	User string
	Err  error
}

func (e *PasswdLineError) Error() string {
	if e.User == "" {
		return fmt.Sprintf("line %d: %v", e.Line, e.Err)
	}
	return fmt.Sprintf("line %d (%q): %v", e.Line, e.User, e.Err)
}

func (e *PasswdLineError) Unwrap() error { return e.Err }

// ParsePasswdFile reads a Dovecot passwd-file. It returns the importable
// entries and, if some lines are not importable, an error joining a
// *PasswdLineError (wrapping ErrPasswdFile and, where it applies,
// ErrInvalidName, passhash.ErrUnsupportedScheme or passhash.ErrInvalidHash)
// per such line. A read error or a line longer than MaxPasswdLine ends the
// parse with that error alone.
func ParsePasswdFile(r io.Reader) ([]PasswdEntry, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), MaxPasswdLine)
	var (
		entries []PasswdEntry
		bad     []error
		seen    = map[string]int{} // canonical name -> line
		lineNum int
	)
	for sc.Scan() {
		lineNum++
		line := sc.Bytes()
		line = bytes.TrimSuffix(line, []byte{'\r'})
		// Dovecot handles lines as C strings.
		if i := bytes.IndexByte(line, 0); i >= 0 {
			line = line[:i]
		}
		if len(line) == 0 || line[0] == '#' || line[0] == ':' {
			continue
		}
		e, err := parsePasswdLine(string(line))
		if err != nil {
			bad = append(bad, &PasswdLineError{Line: lineNum, User: e.User, Err: err})
			continue
		}
		if first, dup := seen[e.User]; dup {
			bad = append(bad, &PasswdLineError{Line: lineNum, User: e.User,
				Err: fmt.Errorf("%w: same user as line %d (names are case-insensitive); the first entry is kept, as in Dovecot", ErrPasswdFile, first)})
			continue
		}
		seen[e.User] = lineNum
		e.Line = lineNum
		entries = append(entries, e)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("userdb: passwd-file line %d longer than %d bytes", lineNum+1, MaxPasswdLine)
		}
		return nil, fmt.Errorf("userdb: reading passwd-file: %w", err)
	}
	return entries, errors.Join(bad...)
}

// parsePasswdLine parses one non-comment line. On error the returned entry
// holds the user name as written, for the message.
func parsePasswdLine(line string) (PasswdEntry, error) {
	fields := strings.Split(line, ":")
	e := PasswdEntry{User: fields[0]}
	if err := ValidName(fields[0]); err != nil {
		return e, fmt.Errorf("%w: %w", ErrPasswdFile, err)
	}
	e.User = Canonical(fields[0])
	if len(fields) >= 8 {
		e.Extra = extraFields(fields[7:])
	}
	for _, f := range e.Extra {
		if k, _, _ := strings.Cut(f, "="); k == "nologin" {
			e.NoLogin = true
		}
	}
	if len(fields) < 2 || fields[1] == "" {
		return e, fmt.Errorf("%w: no password hash (the account has no password of its own)", ErrPasswdFile)
	}
	e.Hash = pamPwdfile(fields[1])
	scheme, err := passhash.Scheme(e.Hash)
	if err != nil {
		return e, fmt.Errorf("%w: password: %w%s", ErrPasswdFile, err, schemeHint(e.Hash, err))
	}
	e.Scheme = scheme
	return e, nil
}

// extraFields follows passwd_file_add: fields[0] is the eighth field. An
// empty eighth field followed by more is the old format, whose ninth field
// is a mail location; otherwise the rest, joined by ':' again, is a list of
// space-separated extra fields.
func extraFields(fields []string) []string {
	if fields[0] == "" {
		if len(fields) > 1 && fields[1] != "" {
			return []string{"userdb_mail=" + strings.Join(fields[1:], ":")}
		}
		return nil
	}
	return strings.Fields(strings.Join(fields, ":"))
}

// pamPwdfile rewrites libpam-pwdfile's "hash[NN]" as Dovecot does: 34 is
// PLAIN-MD5, 56 DIGEST-MD5, anything else CRYPT.
func pamPwdfile(pw string) string {
	n := len(pw)
	if n <= 4 || pw[0] == '{' || pw[0] == '$' || pw[n-1] != ']' || pw[n-4] != '[' {
		return pw
	}
	switch pw[n-3 : n-1] {
	case "34":
		return "{PLAIN-MD5}" + pw[:n-4]
	case "56":
		return "{DIGEST-MD5}" + pw[:n-4]
	}
	return "{CRYPT}" + pw[:n-4]
}

// schemeHint adds advice to a refusal of hash as unsupported.
func schemeHint(hash string, err error) string {
	if !errors.Is(err, passhash.ErrUnsupportedScheme) {
		return ""
	}
	scheme := ""
	if strings.HasPrefix(hash, "{") {
		if end := strings.IndexByte(hash, '}'); end > 0 {
			scheme = strings.ToUpper(hash[1:end])
		}
	}
	switch {
	case scheme == "PLAIN" || scheme == "CLEAR" || scheme == "CLEARTEXT" || strings.HasPrefix(scheme, "PLAIN."):
		return ` (a plaintext password: create the user with "popbox user add" instead)`
	case strings.HasPrefix(strings.TrimPrefix(hash, "{"+scheme+"}"), "$y$"):
		return " (yescrypt is not supported: the user needs a new password)"
	}
	return " (importable: ARGON2ID, BLF-CRYPT, SHA512-CRYPT, SHA256-CRYPT; the user needs a new password)"
}

// ImportHash creates the user name with an existing password hash, such as
// PasswdEntry.Hash, and disabled if asked, in one statement. The hash is
// checked and stored as AddHashed does: it may carry a Dovecot {SCHEME}
// prefix and must be one passhash can verify ({ARGON2ID}, {BLF-CRYPT},
// {SHA512-CRYPT}, {SHA256-CRYPT}, or {CRYPT} of bcrypt or SHA-crypt),
// otherwise the error wraps passhash.ErrUnsupportedScheme or
// passhash.ErrInvalidHash. An existing user is ErrExists, an invalid name
// ErrInvalidName. The user logs in with the old password; Authenticate then
// replaces the hash with the current argon2id and adds SCRAM credentials.
func (db *DB) ImportHash(ctx context.Context, name, hash string, disabled bool) error {
	if err := ValidName(name); err != nil {
		return err
	}
	name = Canonical(name)
	norm, err := passhash.Normalize(hash)
	if err != nil {
		return fmt.Errorf("userdb: importing hash for %q: %w%s", name, err, schemeHint(hash, err))
	}
	now := time.Now().Unix()
	// As insert does: one statement, so a concurrent Add cannot slip in
	// between a check and the INSERT. No SCRAM credentials: they need the
	// plaintext password, which the first login supplies.
	res, err := db.sql.ExecContext(ctx,
		`INSERT INTO users (name, password_hash, scram_sha256, created, updated, disabled) VALUES (?, ?, NULL, ?, ?, ?)
		 ON CONFLICT (name) DO NOTHING`, name, norm, now, now, disabled)
	if err != nil {
		return fmt.Errorf("userdb: importing %q: %w", name, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("userdb: importing %q: %w", name, err)
	} else if n == 0 {
		return fmt.Errorf("%w: %q", ErrExists, name)
	}
	return nil
}

// ImportResult is the outcome of importing one PasswdEntry.
type ImportResult struct {
	Entry PasswdEntry
	// Err is nil for an imported user, wraps ErrExists for a name already
	// taken (the existing account is left alone), or is another error.
	Err error
}

// ImportPasswdEntries imports entries with ImportHash, each disabled if it
// has NoLogin, and reports each outcome. It goes on after a failed entry;
// only ctx ending stops it early, with ctx's error (the results so far are
// returned).
func (db *DB) ImportPasswdEntries(ctx context.Context, entries []PasswdEntry) ([]ImportResult, error) {
	results := make([]ImportResult, 0, len(entries))
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return results, fmt.Errorf("userdb: import interrupted: %w", err)
		}
		results = append(results, ImportResult{Entry: e, Err: db.ImportHash(ctx, e.User, e.Hash, e.NoLogin)})
	}
	return results, nil
}
