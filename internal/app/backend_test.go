package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/popbox/popbox/config"
	"github.com/popbox/popbox/store"
	"github.com/popbox/popbox/store/postgres"
	"github.com/popbox/popbox/userdb"
	"github.com/popbox/popbox/userdb/passhash"
)

// cheapHashes keeps the tests' argon2id fast.
var cheapHashes = userdb.Options{Hash: passhash.Params{Memory: 64, Time: 1, Threads: 1}}

func TestUsersDatabase(t *testing.T) {
	const dsn = "postgres://popbox:pw@db/popbox"
	for _, tt := range []struct {
		name           string
		store, users   string
		want           string
		onPG, storeDSN bool
	}{
		{"maildir default", "maildir", "", "data/users.db", false, false},
		{"maildir, users elsewhere", "", "/srv/users.db", "/srv/users.db", false, false},
		{"maildir, users relative to data_dir", "maildir", "db/users.db", "data/db/users.db", false, false},
		{"maildir, users in postgres", "maildir", dsn, dsn, true, false},
		{"postgres: users there too", dsn, "", dsn, true, true},
		{"postgres, users in sqlite", dsn, "/srv/users.db", "/srv/users.db", false, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config.Default()
			cfg.DataDir, cfg.Store, cfg.Users.Database = "data", tt.store, tt.users
			if got := UsersDatabase(cfg); got != tt.want {
				t.Errorf("UsersDatabase = %q, want %q", got, tt.want)
			}
			if got := UsersOnPostgres(cfg); got != tt.onPG {
				t.Errorf("UsersOnPostgres = %v", got)
			}
			if strings.Contains(DescribeUsers(cfg)+DescribeStore(cfg), ":pw@") {
				t.Errorf("Describe shows the password: %s, %s", DescribeUsers(cfg), DescribeStore(cfg))
			}
			if got := DescribeStore(cfg) != "data/mail"; got != tt.storeDSN {
				t.Errorf("DescribeStore = %q", DescribeStore(cfg))
			}
		})
	}
}

func TestRedactedError(t *testing.T) {
	dsn := "postgres://popbox:Hush-42@db/popbox"
	err := redact(fmt.Errorf("opening %s: %w", dsn, postgres.ErrSchemaVersion), dsn)
	if strings.Contains(err.Error(), "Hush-42") || !strings.Contains(err.Error(), "postgres://popbox:xxxxx@db/popbox") {
		t.Errorf("redacted error: %v", err)
	}
	if !IsSchemaError(err) {
		t.Errorf("IsSchemaError(%v) = false", err)
	}
	if redact(nil, dsn) != nil {
		t.Error("redact(nil) is not nil")
	}
}

// TestOpenMaildirConfig: without a PostgreSQL URL the configuration opens
// the Maildirs and the SQLite file of the data directory; only create
// makes the file.
func TestOpenMaildirConfig(t *testing.T) {
	ctx := context.Background()
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	if _, err := OpenUsersConfig(cfg, cheapHashes, false); !errors.Is(err, ErrNoUserDB) {
		t.Fatalf("OpenUsersConfig(create=false) on an empty directory: %v, want ErrNoUserDB", err)
	}
	users, err := OpenUsersConfig(cfg, cheapHashes, true)
	if err != nil {
		t.Fatal(err)
	}
	defer users.Close()
	if _, err := os.Stat(DataDir(cfg.DataDir).UsersPath()); err != nil {
		t.Errorf("no users.db after OpenUsersConfig(create=true): %v", err)
	}
	st, err := OpenMail(ctx, cfg, nil, users)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Deliver(ctx, "alice", strings.NewReader("Subject: x\n\nhi\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, "mail", "alice", "Maildir")); err != nil {
		t.Errorf("delivery did not go to the data directory's Maildir: %v", err)
	}
	if done, err := Migrate(ctx, cfg); err != nil || len(done) != 0 {
		t.Errorf("Migrate on Maildirs = %q, %v; want nothing to do", done, err)
	}
}

// mailbox returns the UIDLs and bodies of user's messages in st.
func mailbox(t *testing.T, st store.Store, user string) (uidls, bodies []string) {
	t.Helper()
	m, err := st.Open(context.Background(), user)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for i, info := range m.Messages() {
		r, err := m.Open(i)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(r)
		r.Close()
		if err != nil {
			t.Fatal(err)
		}
		uidls, bodies = append(uidls, info.UIDL), append(bodies, string(b))
	}
	return uidls, bodies
}

// TestImportMailboxes moves the Maildirs of one data directory into
// another store (here another data directory's: the logic does not depend
// on the destination) with UIDLs and bodies unchanged, and a second run
// copies nothing.
func TestImportMailboxes(t *testing.T) {
	ctx := context.Background()
	src, dstDir := DataDir(t.TempDir()), DataDir(t.TempDir())
	from, err := src.OpenStore(nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, user := range []string{"bob", "alice", "bob", "carol", "bob", "dave"} {
		if _, err := from.Deliver(ctx, user, strings.NewReader(fmt.Sprintf("Subject: %d\n\nmessage %d for %s\n", i, i, user))); err != nil {
			t.Fatal(err)
		}
	}
	// Not mailboxes: a file, a directory without Maildir, a bad name.
	for _, p := range []string{"mail/README", "mail/empty/", "mail/.hidden/Maildir/"} {
		full := filepath.Join(string(src), p)
		if strings.HasSuffix(p, "/") {
			err = os.MkdirAll(full, 0o700)
		} else {
			err = os.WriteFile(full, []byte("x"), 0o600)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if got, err := src.Mailboxes(); err != nil || !slices.Equal(got, []string{"alice", "bob", "carol", "dave"}) {
		t.Fatalf("Mailboxes = %q, %v", got, err)
	}
	dst, err := dstDir.OpenStore(nil)
	if err != nil {
		t.Fatal(err)
	}
	// dave has another message with the UIDL of his in the destination:
	// that is no reason to skip his.
	daveUIDLs, _ := mailbox(t, from, "dave")
	if _, err := dst.Import(ctx, "dave", strings.NewReader("Subject: other\n\nanother message\n"), daveUIDLs[0]); err != nil {
		t.Fatal(err)
	}

	run := func() map[string]MailboxImport {
		t.Helper()
		got := map[string]MailboxImport{}
		err := ImportMailboxes(ctx, src, dst, nil, func(r MailboxImport) { got[r.User] = r })
		if !errors.Is(err, store.ErrUIDLConflict) || !strings.HasPrefix(err.Error(), "dave: message 1 cannot keep its UIDL") {
			t.Errorf("ImportMailboxes: %v; want dave's conflict", err)
		}
		if r := got["dave"]; r.Imported != 0 || !errors.Is(r.Err, store.ErrUIDLConflict) {
			t.Errorf("dave: %+v; want the UIDL conflict", r)
		}
		return got
	}
	first := run()
	for user, want := range map[string]int{"alice": 1, "bob": 3, "carol": 1} {
		if r := first[user]; r.Imported != want || r.Already != 0 || r.Err != nil {
			t.Errorf("first run, %s: %+v; want %d imported", user, r, want)
		}
		srcUIDLs, srcBodies := mailbox(t, from, user)
		dstUIDLs, dstBodies := mailbox(t, dst, user)
		if !slices.Equal(srcUIDLs, dstUIDLs) || !slices.Equal(srcBodies, dstBodies) {
			t.Errorf("%s: source %q %q, destination %q %q", user, srcUIDLs, srcBodies, dstUIDLs, dstBodies)
		}
	}
	second := run()
	for user, want := range map[string]int{"alice": 1, "bob": 3, "carol": 1} {
		if r := second[user]; r.Imported != 0 || r.Already != want || r.Err != nil {
			t.Errorf("second run, %s: %+v; want %d already there", user, r, want)
		}
	}

	// A mailbox in use in the source is reported, the others copied.
	busy, err := from.Open(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	var reports []MailboxImport
	err = ImportMailboxes(ctx, src, dst, nil, func(r MailboxImport) { reports = append(reports, r) })
	if !errors.Is(err, store.ErrInUse) || len(reports) != 4 || !errors.Is(reports[1].Err, store.ErrInUse) || reports[2].Err != nil {
		t.Errorf("import with bob's source mailbox in use: %v, %+v", err, reports)
	}
}

// TestCopyUsers copies accounts with their hashes: the users log in with
// the same passwords, keep their quota overrides and disabled flags; a
// second run copies nothing.
func TestCopyUsers(t *testing.T) {
	ctx := context.Background()
	src := DataDir(t.TempDir())
	from, err := userdb.Open(src.UsersPath(), cheapHashes)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"alice", "bob", "carol"} {
		if err := from.Add(ctx, u, u+"-password"); err != nil {
			t.Fatal(err)
		}
	}
	q := int64(1 << 20)
	if err := from.SetQuota(ctx, "bob", &q, nil); err != nil {
		t.Fatal(err)
	}
	if err := from.SetDisabled(ctx, "carol", true); err != nil {
		t.Fatal(err)
	}
	if _, err := from.AddAppPassword(ctx, "alice", "phone"); err != nil {
		t.Fatal(err)
	}
	from.Close()

	to, err := userdb.Open(filepath.Join(t.TempDir(), "users.db"), cheapHashes)
	if err != nil {
		t.Fatal(err)
	}
	defer to.Close()
	if err := to.Add(ctx, "bob", "another-password"); err != nil { // there already: left alone
		t.Fatal(err)
	}
	run := func() []UserCopy {
		t.Helper()
		var got []UserCopy
		if err := CopyUsers(ctx, src.UsersPath(), to, func(r UserCopy) { got = append(got, r) }); err != nil {
			t.Fatal(err)
		}
		return got
	}
	want := []UserCopy{{Name: "alice", Copied: true, AppPasswords: 1}, {Name: "bob"}, {Name: "carol", Copied: true}}
	if got := run(); !slices.Equal(got, want) {
		t.Errorf("first run: %+v, want %+v", got, want)
	}
	if _, err := to.Authenticate(ctx, "alice", "alice-password"); err != nil {
		t.Errorf("alice cannot log in with her password after the copy: %v", err)
	}
	if _, err := to.Authenticate(ctx, "bob", "another-password"); err != nil {
		t.Errorf("bob, there already, was changed: %v", err)
	}
	if u, err := to.Get(ctx, "carol"); err != nil || !u.Disabled {
		t.Errorf("carol: %+v, %v; want disabled", u, err)
	}
	for i := range want {
		want[i].Copied = false
	}
	if got := run(); !slices.Equal(got, want) {
		t.Errorf("second run: %+v, want %+v", got, want)
	}
	if err := CopyUsers(ctx, filepath.Join(t.TempDir(), "none.db"), to, func(UserCopy) {}); !errors.Is(err, ErrNoUserDB) {
		t.Errorf("CopyUsers from a missing file: %v, want ErrNoUserDB", err)
	}
}
