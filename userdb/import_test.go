package userdb

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/popbox/popbox/userdb/passhash"
)

// Fixed vectors: Dovecot 2.3 "doveadm pw -s SCHEME -p 'correct horse'"
// (the same as TestAddHashed's).
const (
	vecPassword = "correct horse"
	vecArgon2id = "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$KQIhQEXIuwX4BHm71138vQ$rshTR2N+uZKZdmZPbdG/EyrcrHhrDesxyM0DxOjsRlA"
	vecBlf      = "{BLF-CRYPT}$2y$05$FXTr1yTPzK/2nefwHJHhP.lZkdMqG4Wm.069Yl9QYY7PNiULvkEUG"
	vecCrypt    = "{CRYPT}$2y$05$i/b87raZPZfvekGxquj4PeT5qeRJzfla4.j5rk1BniP9qDTAcb1CK"
	vecSHA512   = "{SHA512-CRYPT}$6$I.3iRdMIli5lceDR$YlH1M8/j3fjDlXuM5mIimBU1QOoOcEaXtZ0zFRM7K8yqH/GExqKl3XCfyUpmzXX2dma99jLjUBZoDXd21qwIx0"
	vecSHA256   = "{SHA256-CRYPT}$5$vkasyQkCFFMOwh9e$5lFO3JItMyX3MwZC5PyhfJJRL.5IpSvZcd0nLAjssG/"
)

// lineErr is a PasswdLineError reduced to what the tests compare.
type lineErr struct {
	Line int
	User string
	Is   error
}

func lineErrors(t *testing.T, err error) []lineErr {
	t.Helper()
	if err == nil {
		return nil
	}
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok {
		t.Fatalf("error %v is not a joined list of line errors", err)
	}
	var out []lineErr
	for _, e := range joined.Unwrap() {
		var le *PasswdLineError
		if !errors.As(e, &le) {
			t.Fatalf("%v is not a *PasswdLineError", e)
		}
		if !errors.Is(e, ErrPasswdFile) {
			t.Errorf("%v does not wrap ErrPasswdFile", e)
		}
		kind := ErrPasswdFile
		for _, k := range []error{ErrInvalidName, passhash.ErrUnsupportedScheme, passhash.ErrInvalidHash} {
			if errors.Is(e, k) {
				kind = k
			}
		}
		out = append(out, lineErr{le.Line, le.User, kind})
	}
	return out
}

func TestParsePasswdFile(t *testing.T) {
	tests := []struct {
		name     string
		file     string
		want     []PasswdEntry
		wantErrs []lineErr
	}{
		{
			name: "schemes",
			file: "argon:" + vecArgon2id + "\n" +
				"blf:" + vecBlf + "::\n" +
				"crypt:" + vecCrypt + ":1000:1000::/home/crypt::\n" +
				"sha512:" + vecSHA512 + ":1000:1000:Gecos Field:/home/x:/bin/false\n" +
				"sha256:" + vecSHA256 + "\n" +
				"bare:$2y$05$FXTr1yTPzK/2nefwHJHhP.lZkdMqG4Wm.069Yl9QYY7PNiULvkEUG\n",
			want: []PasswdEntry{
				{Line: 1, User: "argon", Hash: vecArgon2id, Scheme: passhash.SchemeArgon2id},
				{Line: 2, User: "blf", Hash: vecBlf, Scheme: passhash.SchemeBcrypt},
				{Line: 3, User: "crypt", Hash: vecCrypt, Scheme: passhash.SchemeBcrypt},
				{Line: 4, User: "sha512", Hash: vecSHA512, Scheme: passhash.SchemeSHA512Crypt},
				{Line: 5, User: "sha256", Hash: vecSHA256, Scheme: passhash.SchemeSHA256Crypt},
				{Line: 6, User: "bare", Hash: "$2y$05$FXTr1yTPzK/2nefwHJHhP.lZkdMqG4Wm.069Yl9QYY7PNiULvkEUG", Scheme: passhash.SchemeBcrypt},
			},
		},
		{
			name: "comments, blank lines, CRLF, no final LF, domains, case",
			file: "# users\n\n:ignored:line\r\n" +
				"Alice@Example.ORG:" + vecBlf + "\r\n" +
				"   \n" +
				"bob:" + vecSHA256,
			want: []PasswdEntry{
				{Line: 4, User: "alice@example.org", Hash: vecBlf, Scheme: passhash.SchemeBcrypt},
				{Line: 6, User: "bob", Hash: vecSHA256, Scheme: passhash.SchemeSHA256Crypt},
			},
			wantErrs: []lineErr{{5, "   ", ErrInvalidName}},
		},
		{
			name: "extra fields",
			file: "a:" + vecBlf + ":1:1::/h::userdb_mail=maildir:~/Maildir allow_nets=10.0.0.0/8\n" +
				"b:" + vecBlf + ":1:1::/h::nologin reason=moved\n" +
				"c:" + vecBlf + ":1:1::/h:::mbox:~/mail\n" +
				"d:" + vecBlf + ":1:1::/h::nologin=y\n" +
				"e:" + vecBlf + ":::::\n",
			want: []PasswdEntry{
				{Line: 1, User: "a", Hash: vecBlf, Scheme: passhash.SchemeBcrypt, Extra: []string{"userdb_mail=maildir:~/Maildir", "allow_nets=10.0.0.0/8"}},
				{Line: 2, User: "b", Hash: vecBlf, Scheme: passhash.SchemeBcrypt, NoLogin: true, Extra: []string{"nologin", "reason=moved"}},
				{Line: 3, User: "c", Hash: vecBlf, Scheme: passhash.SchemeBcrypt, Extra: []string{"userdb_mail=mbox:~/mail"}},
				{Line: 4, User: "d", Hash: vecBlf, Scheme: passhash.SchemeBcrypt, NoLogin: true, Extra: []string{"nologin=y"}},
				{Line: 5, User: "e", Hash: vecBlf, Scheme: passhash.SchemeBcrypt},
			},
		},
		{
			name: "refused",
			file: "plain:{PLAIN}correct horse\n" +
				"md5:{MD5-CRYPT}$1$kOyMJpnJ$lmlnLKEcI0mxgn1Chlspi1\n" +
				"des:{CRYPT}abJnggxhB/yWI\n" +
				"pam13:abJnggxhB/yWI[13]\n" +
				"pam34:5f4dcc3b5aa765d61d8327deb882cf99[34]\n" +
				"yes:$y$j9T$F5Jx5fExrKuPp53xLKQ..1$X3DX6M94c7o.9agCG9G317fhZg9SqC.5i5rd.RhAtQ7\n" +
				"ssha:{SSHA512}qQPMAIvggmS9HzGHAeNk/bqb0y+YurnUHXBL4seBhuDpQX934nsXTPAx0Wzy3+47YovW9tnGiCC95F5vU36YsJCbJWg=\n" +
				"empty::1000:1000::/home/empty::nopassword\n" +
				"nopass\n" +
				"cost:{BLF-CRYPT}$2y$31$FXTr1yTPzK/2nefwHJHhP.lZkdMqG4Wm.069Yl9QYY7PNiULvkEUG\n" +
				"bad name:" + vecBlf + "\n" +
				"-dash:" + vecBlf + "\n" +
				"ok:" + vecBlf + "\n" +
				"OK:" + vecSHA512 + "\n",
			want: []PasswdEntry{
				{Line: 13, User: "ok", Hash: vecBlf, Scheme: passhash.SchemeBcrypt},
			},
			wantErrs: []lineErr{
				{1, "plain", passhash.ErrUnsupportedScheme},
				{2, "md5", passhash.ErrUnsupportedScheme},
				{3, "des", passhash.ErrUnsupportedScheme},
				{4, "pam13", passhash.ErrUnsupportedScheme},
				{5, "pam34", passhash.ErrUnsupportedScheme},
				{6, "yes", passhash.ErrUnsupportedScheme},
				{7, "ssha", passhash.ErrUnsupportedScheme},
				{8, "empty", ErrPasswdFile},
				{9, "nopass", ErrPasswdFile},
				{10, "cost", passhash.ErrInvalidHash},
				{11, "bad name", ErrInvalidName},
				{12, "-dash", ErrInvalidName},
				{14, "ok", ErrPasswdFile},
			},
		},
		{
			name: "NUL ends the line",
			file: "nul:" + vecBlf + "\x00junk\n",
			want: []PasswdEntry{{Line: 1, User: "nul", Hash: vecBlf, Scheme: passhash.SchemeBcrypt}},
		},
		{name: "empty file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePasswdFile(strings.NewReader(tt.file))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("entries (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantErrs, lineErrors(t, err), cmp.Comparer(func(a, b error) bool { return a == b })); diff != "" {
				t.Errorf("line errors (-want +got):\n%s\n%v", diff, err)
			}
			if err != nil && strings.Contains(err.Error(), "correct horse") {
				t.Errorf("error repeats a plaintext password: %v", err)
			}
		})
	}
}

func TestParsePasswdFileLongLine(t *testing.T) {
	_, err := ParsePasswdFile(strings.NewReader("a:" + vecBlf + "\nb:" + strings.Repeat("x", MaxPasswdLine) + "\n"))
	if err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("long line: %v", err)
	}
}

func TestImportHash(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := t.Context()
		db := newTestDB(t, b)
		for name, hash := range map[string]string{
			"argon": vecArgon2id, "blf": vecBlf, "crypt": vecCrypt, "sha512": vecSHA512, "sha256": vecSHA256,
		} {
			t.Run(name, func(t *testing.T) {
				if err := db.ImportHash(ctx, name, hash, false); err != nil {
					t.Fatal(err)
				}
				checkOldPassword(t, db, name, vecPassword)
			})
		}

		t.Run("disabled", func(t *testing.T) {
			if err := db.ImportHash(ctx, "gone", vecBlf, true); err != nil {
				t.Fatal(err)
			}
			if u, err := db.Get(ctx, "gone"); err != nil || !u.Disabled {
				t.Errorf("Get = %+v, %v; want disabled", u, err)
			}
			if _, err := db.Authenticate(ctx, "gone", vecPassword); !errors.Is(err, ErrAuthFailed) {
				t.Errorf("Authenticate of a nologin user = %v, want ErrAuthFailed", err)
			}
		})

		for _, tt := range []struct {
			name, user, hash string
			want             error
		}{
			{"exists", "BLF", vecSHA256, ErrExists},
			{"plain", "p", "{PLAIN}correct horse", passhash.ErrUnsupportedScheme},
			{"unknown prefix", "u", "{SSHA}abcdef", passhash.ErrUnsupportedScheme},
			{"bare plaintext", "b", "correct horse", passhash.ErrUnsupportedScheme},
			{"invalid", "i", "{SHA512-CRYPT}$6$short", passhash.ErrInvalidHash},
			{"name", "no/slash", vecBlf, ErrInvalidName},
		} {
			t.Run(tt.name, func(t *testing.T) {
				err := db.ImportHash(ctx, tt.user, tt.hash, false)
				if !errors.Is(err, tt.want) {
					t.Fatalf("ImportHash = %v, want %v", err, tt.want)
				}
				if strings.Contains(err.Error(), "correct horse") {
					t.Errorf("error repeats the plaintext: %v", err)
				}
			})
		}
		// The existing user was left alone.
		if got, err := db.Authenticate(ctx, "blf", vecPassword); got != "blf" || err != nil {
			t.Errorf("blf after a refused re-import: %q, %v", got, err)
		}
	})
}

// checkOldPassword: the imported user logs in with the old password only,
// and the first login upgrades the hash to argon2id and adds SCRAM
// credentials.
func checkOldPassword(t *testing.T, db *DB, name, password string) {
	t.Helper()
	ctx := t.Context()
	if _, _, err := db.SCRAMCredentials(ctx, name); !errors.Is(err, ErrAuthFailed) {
		t.Errorf("SCRAM credentials before the first login: %v", err)
	}
	if _, err := db.Authenticate(ctx, name, password+"x"); !errors.Is(err, ErrAuthFailed) {
		t.Errorf("wrong password: %v", err)
	}
	if got, err := db.Authenticate(ctx, name, password); got != name || err != nil {
		t.Fatalf("Authenticate with the old password = %q, %v", got, err)
	}
	u, err := db.Get(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if u.PasswordScheme != passhash.SchemeArgon2id || passhash.NeedsRehash(storedHash(t, db, name), db.params) {
		t.Errorf("after the first login the hash is %s, not current argon2id", u.PasswordScheme)
	}
	if _, _, err := db.SCRAMCredentials(ctx, name); err != nil {
		t.Errorf("SCRAM credentials after the first login: %v", err)
	}
	if got, err := db.Authenticate(ctx, name, password); got != name || err != nil {
		t.Errorf("second login = %q, %v", got, err)
	}
}

// TestImportDoveadm: hashes made by the real "doveadm pw" (Debian's
// dovecot-core), written to a passwd-file as an administrator would,
// parsed and imported; every user then logs in with the password given to
// doveadm. Skipped without doveadm, a failure with CI=true.
func TestImportDoveadm(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		doveadm, err := exec.LookPath("doveadm")
		if err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatal("doveadm is not installed (Debian: apt-get install dovecot-core)")
			}
			t.Skip("doveadm is not installed")
		}
		users := []struct {
			name, scheme, password string
			rounds                 string
			ok                     bool
		}{
			{"argon@example.org", "ARGON2ID", "pässwörd: with colon", "", true},
			{"blf", "BLF-CRYPT", "correct horse battery", "", true},
			{"blf10", "BLF-CRYPT", "ten rounds", "10", true},
			{"crypt", "CRYPT", "crypt is bcrypt", "", true},
			{"sha512", "SHA512-CRYPT", "sha five twelve", "", true},
			{"sha512r", "SHA512-CRYPT", "many rounds", "100000", true},
			{"sha256", "SHA256-CRYPT", "sha two five six", "", true},
			{"md5", "MD5-CRYPT", "md5 is refused", "", false},
			{"ssha", "SSHA512", "ssha is refused", "", false},
			{"argon2i", "ARGON2I", "argon2i is refused", "", false},
			{"plain", "PLAIN", "plain is refused", "", false},
		}
		var file strings.Builder
		file.WriteString("# made by doveadm pw\n")
		for _, u := range users {
			args := []string{"pw", "-s", u.scheme, "-p", u.password}
			if u.rounds != "" {
				args = append(args, "-r", u.rounds)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			out, err := exec.CommandContext(ctx, doveadm, args...).Output()
			cancel()
			if err != nil {
				t.Fatalf("doveadm %s: %v", strings.Join(args[:3], " "), err)
			}
			file.WriteString(u.name + ":" + strings.TrimSpace(string(out)) + ":1000:1000::/home/" + u.name + "::\n")
		}

		entries, perr := ParsePasswdFile(strings.NewReader(file.String()))
		var refused []string
		for _, le := range lineErrors(t, perr) {
			refused = append(refused, le.User)
		}
		var wantRefused []string
		for _, u := range users {
			if !u.ok {
				wantRefused = append(wantRefused, u.name)
			}
		}
		if diff := cmp.Diff(wantRefused, refused); diff != "" {
			t.Errorf("refused users (-want +got):\n%s\n%v", diff, perr)
		}

		db := newTestDB(t, b)
		results, err := db.ImportPasswdEntries(t.Context(), entries)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range results {
			if r.Err != nil {
				t.Errorf("importing %s: %v", r.Entry.User, r.Err)
			}
		}
		for _, u := range users {
			if u.ok {
				t.Run(u.name, func(t *testing.T) { checkOldPassword(t, db, u.name, u.password) })
			}
		}
		// Importing again changes nothing and says why.
		again, err := db.ImportPasswdEntries(t.Context(), entries)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range again {
			if !errors.Is(r.Err, ErrExists) {
				t.Errorf("second import of %s: %v, want ErrExists", r.Entry.User, r.Err)
			}
		}
	})
}

func TestImportPasswdEntriesCancelled(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		db := newTestDB(t, b)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		got, err := db.ImportPasswdEntries(ctx, []PasswdEntry{{User: "a", Hash: vecBlf}})
		if !errors.Is(err, context.Canceled) || len(got) != 0 {
			t.Errorf("cancelled import = %v, %v", got, err)
		}
	})
}

// FuzzParsePasswdFile: any input; what comes back must be importable as
// claimed, and errors must be line errors that never quote a password
// field.
func FuzzParsePasswdFile(f *testing.F) {
	for _, s := range []string{
		"argon:" + vecArgon2id + "\nblf:" + vecBlf + ":1:1::/h::nologin\n",
		"# c\n\n:x\r\nA@B:" + vecCrypt + "\r\n",
		"plain:{PLAIN}secretpassword\nx\n:\n#\n",
		"p:abJnggxhB/yWI[13]\nq:x[34]\nr:y[56]\n",
		"c:" + vecBlf + ":::::::mbox:~/m\n",
		"dup:" + vecBlf + "\nDUP:" + vecSHA256,
		"n:" + vecSHA512 + "\x00\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, file string) {
		entries, err := ParsePasswdFile(strings.NewReader(file))
		seen := map[string]bool{}
		prev := 0
		for _, e := range entries {
			if ValidName(e.User) != nil || Canonical(e.User) != e.User {
				t.Errorf("entry with name %q", e.User)
			}
			if seen[e.User] {
				t.Errorf("user %q twice", e.User)
			}
			seen[e.User] = true
			if e.Line <= prev {
				t.Errorf("line %d after %d", e.Line, prev)
			}
			prev = e.Line
			if s, err := passhash.Scheme(e.Hash); err != nil || s != e.Scheme {
				t.Errorf("entry %q: scheme %q, passhash says %q, %v", e.User, e.Scheme, s, err)
			}
		}
		if err == nil {
			return
		}
		joined, ok := err.(interface{ Unwrap() []error })
		if !ok {
			if !strings.Contains(err.Error(), "longer than") {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		for _, e := range joined.Unwrap() {
			var le *PasswdLineError
			if !errors.As(e, &le) || !errors.Is(e, ErrPasswdFile) {
				t.Errorf("error %v is not a line error", e)
			}
		}
		// A plaintext password never shows up.
		for _, line := range strings.Split(file, "\n") {
			fields := strings.Split(line, ":")
			if len(fields) < 2 || !strings.HasPrefix(fields[1], "{PLAIN}") {
				continue
			}
			pw := strings.TrimPrefix(fields[1], "{PLAIN}")
			if len(pw) < 8 || strings.Count(file, pw) != 1 || !strings.Contains(err.Error(), pw) {
				continue
			}
			// Unless the message has the text anyway ("password"...).
			other := strings.Replace(file, pw, strings.Repeat("\x01", len(pw)), 1)
			if _, err2 := ParsePasswdFile(strings.NewReader(other)); err2 == nil || !strings.Contains(err2.Error(), pw) {
				t.Errorf("error quotes plaintext password %q: %v", pw, err)
			}
		}
	})
}
