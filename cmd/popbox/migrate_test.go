package main

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/popbox/popbox/internal/app"
	"github.com/popbox/popbox/store"
)

// TestMigrateMaildir: with Maildirs and a SQLite user database there is
// nothing to migrate, which is no error.
func TestMigrateMaildir(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	r := runCLI(t, "", "migrate", "--data", data)
	if r.Code != 0 || !strings.Contains(r.Stdout, "nothing to migrate") {
		t.Errorf("popbox migrate on Maildirs: exit %d, stdout %q, stderr %q", r.Code, r.Stdout, r.Stderr)
	}
}

// TestPostgresUnreachable: with a database that cannot be reached, the
// commands fail, deliver with EX_TEMPFAIL so that the MTA retries, and none
// shows the password of the URL.
func TestPostgresUnreachable(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "popbox.toml")
	writeFile(t, file, "store = \"postgres://popbox:Hush-1939@/popbox?host="+filepath.Join(dir, "nosocket")+"&connect_timeout=2\"\n")
	for _, tt := range []struct {
		args []string
		code int
	}{
		{[]string{"migrate"}, 1},
		{[]string{"deliver", "alice"}, exitTempFail},
		{[]string{"user", "list"}, 1},
		{[]string{"purge"}, 1},
	} {
		args := append(tt.args, "-c", file, "--data", filepath.Join(dir, "data"))
		r := runCLI(t, "Subject: x\n\nbody\n", args...)
		if r.Code != tt.code || !strings.Contains(r.Stderr, "postgres://popbox:xxxxx@/popbox") || strings.Contains(r.Stdout+r.Stderr, "Hush") {
			t.Errorf("popbox %s: exit %d, stdout %q, stderr %q; want exit %d and the URL without its password",
				strings.Join(args, " "), r.Code, r.Stdout, r.Stderr, tt.code)
		}
	}
}

func TestImportDataDirUsage(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	addUser(t, data, "alice", "pw-alice-1")
	deliverMsg(t, data, "alice", "Subject: x\n\nbody\n")
	for _, tt := range []struct {
		args []string
		want string
	}{
		{nil, "--from DIR is required"},
		{[]string{"--from", t.TempDir()}, "is not a popbox data directory"},
		{[]string{"--from", data}, "the source is the configured mail store itself"},
	} {
		args := append([]string{"import", "datadir", "--data", data}, tt.args...)
		if r := runCLI(t, "", args...); r.Code != exitUsage || !strings.Contains(r.Stderr, tt.want) {
			t.Errorf("popbox %s: exit %d, stderr %q; want exit %d and %q", strings.Join(args, " "), r.Code, r.Stderr, exitUsage, tt.want)
		}
	}
}

// uidls lists user's UIDLs in the Maildirs of data.
func uidls(t *testing.T, data, user string) []string {
	t.Helper()
	st, err := app.DataDir(data).OpenStore(nil)
	if err != nil {
		t.Fatal(err)
	}
	m, err := st.Open(context.Background(), user)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var out []string
	for _, i := range m.Messages() {
		out = append(out, i.UIDL)
	}
	return out
}

// TestImportDataDir moves one data directory into another (Maildir to
// Maildir here; internal/interop's TestPostgres does it into PostgreSQL):
// accounts with their passwords, mail with its UIDLs, and a second run
// copies nothing.
func TestImportDataDir(t *testing.T) {
	t.Parallel()
	src, dst := t.TempDir(), t.TempDir()
	addUser(t, src, "alice", "pw-alice-1")
	addUser(t, src, "bob", "pw-bob-1")
	for i, u := range []string{"alice", "bob", "alice"} {
		deliverMsg(t, src, u, "Subject: "+strings.Repeat("x", i)+"\n\nbody\n")
	}
	if r := runCLI(t, "", "user", "app-password", "add", "--data", src, "bob", "phone"); r.Code != 0 {
		t.Fatalf("app-password add: %d %s", r.Code, r.Stderr)
	}

	r := runCLI(t, "", "import", "datadir", "--from", src, "--data", dst)
	for _, want := range []string{"user alice copied\n", "2 user(s) copied, 0 already there\n", "mailbox alice: 2 message(s) imported, 0 already there\n",
		"mailbox bob: 1 message(s) imported, 0 already there\n", "3 message(s) imported into " + filepath.Join(dst, "mail") + ", 0 already there\n"} {
		if r.Code != 0 || !strings.Contains(r.Stdout, want) {
			t.Errorf("first import: exit %d, no %q in stdout %q (stderr %q)", r.Code, want, r.Stdout, r.Stderr)
		}
	}
	if !strings.Contains(r.Stderr, "app passwords are not copied") || !strings.Contains(r.Stderr, "\n  bob\n") {
		t.Errorf("first import does not name bob as having lost an app password: %q", r.Stderr)
	}
	for _, u := range []string{"alice", "bob"} {
		if got, want := uidls(t, dst, u), uidls(t, src, u); !slices.Equal(got, want) || len(got) == 0 {
			t.Errorf("%s: UIDLs %q after the import, %q before", u, got, want)
		}
	}
	users, err := app.DataDir(dst).OpenExistingUsers()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := users.Authenticate(context.Background(), "alice", "pw-alice-1"); err != nil {
		t.Errorf("alice cannot log in with her password after the import: %v", err)
	}
	users.Close()

	r = runCLI(t, "", "import", "datadir", "--from", src, "--data", dst)
	for _, want := range []string{"0 user(s) copied, 2 already there\n", "mailbox alice: 0 message(s) imported, 2 already there\n",
		"0 message(s) imported into " + filepath.Join(dst, "mail") + ", 3 already there\n"} {
		if r.Code != 0 || !strings.Contains(r.Stdout, want) {
			t.Errorf("second import: exit %d, no %q in stdout %q (stderr %q)", r.Code, want, r.Stdout, r.Stderr)
		}
	}

	// A mailbox in use on the source is reported; the command fails.
	st, err := app.DataDir(src).OpenStore(nil)
	if err != nil {
		t.Fatal(err)
	}
	busy, err := st.Open(context.Background(), "bob")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	r = runCLI(t, "", "import", "datadir", "--from", src, "--data", dst, "--skip-users")
	if r.Code != 1 || !strings.Contains(r.Stderr, "popbox: mailbox bob: reading the source mailbox: "+store.ErrInUse.Error()) ||
		strings.Contains(r.Stdout, "user(s) copied") {
		t.Errorf("import with bob's mailbox in use: exit %d, stdout %q, stderr %q", r.Code, r.Stdout, r.Stderr)
	}
}
