package main

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/popbox/popbox/internal/app"
	"github.com/popbox/popbox/userdb"
	"github.com/popbox/popbox/userdb/passhash"
)

// TestUserImportPasswdFile: Dovecot passwd-file users log in with their old
// passwords after the import; a line popbox cannot take stops the import
// unless --skip-invalid; nologin users come in disabled; existing users
// are left alone.
func TestUserImportPasswdFile(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	addUser(t, data, "erin", "erin-own-pw")
	argon, err := passhash.Hash("anna-pw", passhash.Params{Memory: 64, Time: 1, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	bc, err := bcrypt.GenerateFromPassword([]byte("bert-pw"), 5)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "users")
	lines := []string{
		"# Dovecot passwd-file",
		"anna:{ARGON2ID}" + strings.TrimPrefix(argon, "{ARGON2ID}") + "::::::",
		"bert:{BLF-CRYPT}" + string(bc) + ":1000:1000::/home/bert::userdb_quota_rule=*:storage=1G",
		"carl:{BLF-CRYPT}" + string(bc) + "::::::nologin",
		"erin:{BLF-CRYPT}" + string(bc) + "::::::",
		"dora:{PLAIN}secret::::::",
	}
	writeFile(t, file, strings.Join(lines, "\n")+"\n")

	r := runCLI(t, "", "user", "import", "passwd-file", "--data", data, file)
	if r.Code != exitUsage || !strings.Contains(r.Stderr, "line 6") || !strings.Contains(r.Stderr, "nothing imported") || strings.Contains(r.Stderr, "secret") {
		t.Fatalf("import with a {PLAIN} line: exit %d, stderr %q; want exit %d naming line 6, not the password", r.Code, r.Stderr, exitUsage)
	}
	r = runCLI(t, "", "user", "import", "passwd-file", "--skip-invalid", "--data", data, file)
	if r.Code != 0 {
		t.Fatalf("import --skip-invalid: exit %d\nstdout:\n%s\nstderr:\n%s", r.Code, r.Stdout, r.Stderr)
	}
	for _, want := range []string{"imported anna", "imported bert", "imported carl (bcrypt) (disabled: nologin)", "skipped erin", "3 imported, 1 skipped, 0 failed"} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, r.Stdout)
		}
	}
	if !strings.Contains(r.Stderr, "userdb_quota_rule") {
		t.Errorf("stderr does not mention bert's unused extra field:\n%s", r.Stderr)
	}

	users, err := app.DataDir(data).OpenExistingUsers()
	if err != nil {
		t.Fatal(err)
	}
	defer users.Close()
	ctx := context.Background()
	for user, pw := range map[string]string{"anna": "anna-pw", "bert": "bert-pw", "erin": "erin-own-pw"} {
		if _, err := users.Authenticate(ctx, user, pw); err != nil {
			t.Errorf("%s with the old password: %v", user, err)
		}
	}
	if _, err := users.Authenticate(ctx, "carl", "bert-pw"); !errors.Is(err, userdb.ErrAuthFailed) {
		t.Errorf("carl (nologin) logged in: %v", err)
	}
	if _, err := users.Get(ctx, "dora"); !errors.Is(err, userdb.ErrNotFound) {
		t.Errorf("dora ({PLAIN}) was imported: %v", err)
	}
}
