package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/popbox/popbox/config"
	"github.com/popbox/popbox/internal/app"
	"github.com/popbox/popbox/migrate/dovecot"
)

// TestDeliverQuota: over quota, popbox deliver exits 75 (the MTA retries),
// or 73 with lmtp.quota_permanent, and stores nothing.
func TestDeliverQuota(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	addUser(t, data, "alice", "pw-1")
	if r := runCLI(t, "", "user", "set", "--data", data, "alice", "messages=1"); r.Code != 0 {
		t.Fatalf("user set: %d %s", r.Code, r.Stderr)
	}
	msg := "Subject: q\n\nbody\n"
	if r := runCLI(t, msg, "deliver", "--data", data, "alice"); r.Code != 0 {
		t.Fatalf("first delivery: exit %d %s", r.Code, r.Stderr)
	}
	r := runCLI(t, msg, "deliver", "--data", data, "alice")
	if r.Code != exitTempFail || !strings.Contains(r.Stderr, "quota") {
		t.Errorf("delivery over quota: exit %d, stderr %q; want %d", r.Code, r.Stderr, exitTempFail)
	}
	cfg := filepath.Join(t.TempDir(), "popbox.toml")
	writeFile(t, cfg, "[lmtp]\nquota_permanent = true\n")
	r = runCLI(t, msg, "deliver", "-c", cfg, "--data", data, "alice")
	if r.Code != exitCantCreat {
		t.Errorf("delivery over quota with quota_permanent: exit %d, stderr %q; want %d", r.Code, r.Stderr, exitCantCreat)
	}
	if n := len(maildirFiles(t, data, "alice")); n != 1 {
		t.Errorf("%d messages stored, want 1", n)
	}
}

// TestRestore: deleted mail comes back with new UIDLs; --since and --uidl
// choose; nothing is restored without a choice.
func TestRestore(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	addUser(t, data, "alice", "pw-1")
	for i := range 3 {
		if r := runCLI(t, fmt.Sprintf("Subject: %d\n\nbody\n", i), "deliver", "--data", data, "alice"); r.Code != 0 {
			t.Fatalf("deliver: %d %s", r.Code, r.Stderr)
		}
	}
	// A POP3 session deletes all three, through a store opened as the
	// server opens it (deleted mail kept 7 days by default).
	users, err := app.DataDir(data).OpenExistingUsers()
	if err != nil {
		t.Fatal(err)
	}
	st, err := app.DataDir(data).OpenMailStore(nil, users, config.Default().Mail)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	drop, err := st.Open(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	old := drop.Messages()
	if err := drop.Commit([]int{0, 1, 2}); err != nil {
		t.Fatal(err)
	}
	users.Close()

	if r := runCLI(t, "", "restore", "--data", data, "alice"); r.Code != exitUsage {
		t.Errorf("restore without a choice: exit %d, want %d", r.Code, exitUsage)
	}
	r := runCLI(t, "", "restore", "--data", data, "alice", "--uidl", old[1].UIDL)
	if r.Code != 0 || !strings.Contains(r.Stdout, "1 message(s) restored for alice") {
		t.Fatalf("restore --uidl: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	r = runCLI(t, "", "restore", "--data", data, "alice", "--since", "1h")
	if r.Code != 0 || !strings.Contains(r.Stdout, "2 message(s) restored for alice") {
		t.Fatalf("restore --since 1h: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if r := runCLI(t, "", "restore", "--data", data, "ghost", "--all"); r.Code != exitNoUser {
		t.Errorf("restore for an unknown user: exit %d, want %d", r.Code, exitNoUser)
	}
	drop, err = st.Open(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	defer drop.Close()
	got := drop.Messages()
	if len(got) != 3 {
		t.Fatalf("%d messages after restoring, want 3", len(got))
	}
	for _, m := range got {
		for _, o := range old {
			if m.UIDL == o.UIDL {
				t.Errorf("restored message kept its old UIDL %s: clients would not fetch it again", m.UIDL)
			}
		}
	}
}

// TestImportMaildir: a Dovecot Maildir (uidlist as Dovecot writes it) is
// imported with the UIDLs Dovecot served; importing it again adds nothing.
func TestImportMaildir(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	addUser(t, data, "alice", "pw-1")
	src := filepath.Join(t.TempDir(), "Maildir")
	for _, d := range []string{"new", "cur", "tmp"} {
		if err := os.MkdirAll(filepath.Join(src, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	names := []string{"1700000001.M1P1.host", "1700000002.M2P1.host", "1700000003.M3P1.host"}
	for i, n := range names {
		writeFile(t, filepath.Join(src, "cur", n+":2,S"), fmt.Sprintf("Subject: %d\n\nmessage %d\n", i, i))
	}
	writeFile(t, filepath.Join(src, "dovecot-uidlist"), "3 V1690000000 N8 G0123456789abcdef0123456789abcdef\n"+
		"3 :"+names[0]+"\n5 :"+names[1]+"\n7 :"+names[2]+"\n")
	want, err := dovecot.ReadMaildir(src, dovecot.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := runCLI(t, "", "import", "maildir", "--data", data, "--user", "alice", src)
	if r.Code != 0 || !strings.Contains(r.Stdout, "3 message(s) imported for alice") {
		t.Fatalf("import: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	r = runCLI(t, "", "import", "maildir", "--data", data, "--user", "alice", src)
	if r.Code != 0 || !strings.Contains(r.Stdout, "0 message(s) imported for alice, 3 already there") {
		t.Errorf("second import: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	st, err := app.DataDir(data).OpenStore(nil)
	if err != nil {
		t.Fatal(err)
	}
	drop, err := st.Open(context.Background(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	defer drop.Close()
	got := drop.Messages()
	if len(got) != len(want) {
		t.Fatalf("%d messages, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].UIDL != want[i].UIDL {
			t.Errorf("message %d: UIDL %q, Dovecot served %q", i+1, got[i].UIDL, want[i].UIDL)
		}
	}
	if r := runCLI(t, "", "import", "maildir", "--data", data, src); r.Code != exitUsage {
		t.Errorf("import without --user: exit %d", r.Code)
	}
}

// dovecotMaildir writes a Dovecot Maildir: the messages (in cur/, seen)
// and a version-3 dovecot-uidlist with the given record lines (UID,
// extensions, then ":" and the name, which is filled in).
func dovecotMaildir(t *testing.T, bodies []string, records []string) string {
	t.Helper()
	src := filepath.Join(t.TempDir(), "Maildir")
	for _, d := range []string{"new", "cur", "tmp"} {
		if err := os.MkdirAll(filepath.Join(src, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	uidlist := "3 V1690000000 N20 G0123456789abcdef0123456789abcdef\n"
	for i, body := range bodies {
		name := fmt.Sprintf("17000000%02d.M%dP1.host", i, i)
		writeFile(t, filepath.Join(src, "cur", name+":2,S"), body)
		uidlist += records[i] + ":" + name + "\n"
	}
	writeFile(t, filepath.Join(src, "dovecot-uidlist"), uidlist)
	return src
}

// importedUIDLs lists user's mailbox.
func importedUIDLs(t *testing.T, data, user string) []string {
	t.Helper()
	st, err := app.DataDir(data).OpenStore(nil)
	if err != nil {
		t.Fatal(err)
	}
	drop, err := st.Open(context.Background(), user)
	if err != nil {
		t.Fatal(err)
	}
	defer drop.Close()
	var out []string
	for _, m := range drop.Messages() {
		out = append(out, m.UIDL)
	}
	return out
}

// TestImportMaildirPOP3Order: with 'O' records Dovecot's POP3 order is not
// UID order; popbox lists the imported mail in Dovecot's order, and an
// X-UIDL that looks like popbox's own format stays in its place.
func TestImportMaildirPOP3Order(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	addUser(t, data, "alice", "pw-1")
	src := dovecotMaildir(t,
		[]string{"Subject: 0\n\nm0\n", "X-UIDL: 00000005000003E8\nSubject: 1\n\nm1\n", "Subject: 2\n\nm2\n", "Subject: 3\n\nm3\n"},
		[]string{"3 O3 ", "5 O1 ", "7 ", "9 O2 "})
	opts := dovecot.Options{ReuseXUIDL: true}
	want, err := dovecot.ReadMaildir(src, opts)
	if err != nil {
		t.Fatal(err)
	}
	var wantUIDLs []string
	for _, m := range want {
		wantUIDLs = append(wantUIDLs, m.UIDL)
	}
	if wantUIDLs[0] != "00000005000003E8" || want[0].UID != 5 || want[1].UID != 9 {
		t.Fatalf("the test's Maildir is not in the order it means: %v", want)
	}
	r := runCLI(t, "", "import", "maildir", "--data", data, "--user", "alice", "--reuse-xuidl", src)
	if r.Code != 0 || !strings.Contains(r.Stdout, "4 message(s) imported for alice") {
		t.Fatalf("import: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if got := importedUIDLs(t, data, "alice"); !slices.Equal(got, wantUIDLs) {
		t.Errorf("popbox lists %q, Dovecot listed %q", got, wantUIDLs)
	}
}

// TestImportMaildirPossiblyUsed: a UIDL that no message in the mailbox has
// but that popbox served before (for a message since deleted) is not
// skipped like one already there: the import stops with an error naming
// the message. Running it again skips what it imported and stops there
// again.
func TestImportMaildirPossiblyUsed(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	addUser(t, data, "alice", "pw-1")
	if r := runCLI(t, "Subject: popbox's\n\nserved and deleted\n", "deliver", "--data", data, "alice"); r.Code != 0 {
		t.Fatalf("deliver: %d %s", r.Code, r.Stderr)
	}
	st, err := app.DataDir(data).OpenStore(nil)
	if err != nil {
		t.Fatal(err)
	}
	drop, err := st.Open(context.Background(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	used := drop.Messages()[0].UIDL
	if err := drop.Commit([]int{0}); err != nil {
		t.Fatal(err)
	}
	src := dovecotMaildir(t,
		[]string{"X-UIDL: keep-1\n\none\n", "X-UIDL: " + used + "\n\ntwo\n", "X-UIDL: keep-3\n\nthree\n"},
		[]string{"1 ", "2 ", "3 "})
	for run := range 2 {
		r := runCLI(t, "", "import", "maildir", "--data", data, "--user", "alice", "--reuse-xuidl", src)
		if r.Code == 0 {
			t.Errorf("run %d: import of a UIDL popbox used before: exit 0\n%s%s", run, r.Stdout, r.Stderr)
		}
		t.Logf("run %d: exit %d: %s%s", run, r.Code, r.Stdout, r.Stderr)
		name := filepath.Join(src, "cur", "1700000001.M1P1.host:2,S")
		if !strings.Contains(r.Stderr, name) || !strings.Contains(r.Stderr, used) {
			t.Errorf("run %d: the error does not name %s (UIDL %s):\n%s", run, name, used, r.Stderr)
		}
		if wantSummary := []string{"1 imported so far, 0 already there", "0 imported so far, 1 already there"}[run]; !strings.Contains(r.Stderr, wantSummary) {
			t.Errorf("run %d: stderr lacks %q:\n%s", run, wantSummary, r.Stderr)
		}
		if got := importedUIDLs(t, data, "alice"); !slices.Equal(got, []string{"keep-1"}) {
			t.Errorf("run %d: mailbox %q, want only the message before", run, got)
		}
	}
}
