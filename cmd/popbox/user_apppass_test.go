package main

import (
	"context"
	"errors"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/popbox/popbox/internal/app"
	"github.com/popbox/popbox/pop3server"
	"github.com/popbox/popbox/userdb"
)

var appPasswordLine = regexp.MustCompile(`(?m)^([a-z2-9]{4}-[a-z2-9]{4}-[a-z2-9]{4}-[a-z2-9]{4})\n\z`)

// addAppPassword runs "user app-password add" and returns the password from
// the last line of its output.
func addAppPassword(t *testing.T, data, name, label string) string {
	t.Helper()
	r := runCLI(t, "", "user", "app-password", "add", "--data", data, name, label)
	m := appPasswordLine.FindStringSubmatch(r.Stdout)
	if r.Code != 0 || r.Stderr != "" || m == nil || !strings.Contains(r.Stdout, "shown only once") {
		t.Fatalf("popbox user app-password add %s %s: exit %d, stdout %q, stderr %q; want the password on the last line",
			name, label, r.Code, r.Stdout, r.Stderr)
	}
	return m[1]
}

// tableRows runs a listing command and returns its lines split on runs of
// two or more spaces (the tabwriter padding), so fields may hold one space.
func tableRows(t *testing.T, args ...string) [][]string {
	t.Helper()
	r := runCLI(t, "", args...)
	if r.Code != 0 || r.Stderr != "" {
		t.Fatalf("popbox %s: exit %d, stderr %q", strings.Join(args, " "), r.Code, r.Stderr)
	}
	var rows [][]string
	for _, line := range strings.Split(strings.TrimSuffix(r.Stdout, "\n"), "\n") {
		rows = append(rows, regexp.MustCompile(`\s{2,}`).Split(strings.TrimSpace(line), -1))
	}
	return rows
}

// TestUserAppPasswordCommands: add, list and revoke through the CLI, with
// logins through the database in between.
func TestUserAppPasswordCommands(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	addUser(t, data, "alice", "main-pw")
	addUser(t, data, "bob", "bob-pw")

	phone := addAppPassword(t, data, "Alice", "phone")
	laptop := addAppPassword(t, data, "alice", "work laptop")
	bobPhone := addAppPassword(t, data, "bob", "phone")
	if phone == laptop || phone == bobPhone {
		t.Fatalf("app passwords repeat: %q %q %q", phone, laptop, bobPhone)
	}
	checkPasswords(t, data,
		map[string]string{"alice": phone},
		map[string]string{"bob": phone})

	rows := tableRows(t, "user", "app-password", "list", "--data", data, "alice")
	var got [][]string
	for _, r := range rows {
		if len(r) != 3 {
			t.Fatalf("app-password list row %q: want LABEL CREATED LAST-USED", r)
		}
		// Dates vary; "never" and the header do not.
		last := r[2]
		if regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d$`).MatchString(last) {
			last = "DATE"
		}
		got = append(got, []string{r[0], last})
	}
	want := [][]string{{"LABEL", "LAST USED"}, {"phone", "DATE"}, {"work laptop", "never"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("app-password list (-want +got):\n%s", diff)
	}

	steps := []struct {
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{[]string{"add", "alice", "phone"}, exitUsage, "", "already exists"},
		{[]string{"add", "ghost", "phone"}, exitNoUser, "", "no such user"},
		{[]string{"add", "bad name", "phone"}, exitUsage, "", "invalid user name"},
		{[]string{"add", "alice", " "}, exitUsage, "", "invalid app password label"},
		{[]string{"add", "alice"}, exitUsage, "", "accepts 2 arg"},
		{[]string{"list", "ghost"}, exitNoUser, "", "no such user"},
		{[]string{"revoke", "alice", "tablet"}, exitUsage, "", "no such app password"},
		{[]string{"revoke", "ghost", "phone"}, exitNoUser, "", "no such user"},
		{[]string{"revoke", "ALICE", "phone"}, 0, "app password \"phone\" of alice revoked\n", ""},
		{[]string{"revoke", "alice", "phone"}, exitUsage, "", "no such app password"},
		{[]string{"bogus"}, exitUsage, "", "unknown command"},
	}
	for i, s := range steps {
		args := append([]string{"user", "app-password", "--data", data}, s.args...)
		r := runCLI(t, "", args...)
		if r.Code != s.wantCode || r.Stdout != s.wantStdout ||
			(s.wantStderr == "") != (r.Stderr == "") || !strings.Contains(r.Stderr, s.wantStderr) {
			t.Errorf("step %d: popbox user app-password %s: exit %d, stdout %q, stderr %q; want %d, %q, stderr with %q",
				i, strings.Join(s.args, " "), r.Code, r.Stdout, r.Stderr, s.wantCode, s.wantStdout, s.wantStderr)
		}
	}
	// The revoked password fails like a wrong one; the other device, the
	// other user and the main password are unaffected.
	checkPasswords(t, data,
		map[string]string{"alice": laptop, "bob": bobPhone},
		map[string]string{"alice": phone})
	checkPasswords(t, data, map[string]string{"alice": "main-pw"}, nil)
	rows = tableRows(t, "user", "app-password", "list", "--data", data, "alice")
	if len(rows) != 2 || rows[1][0] != "work laptop" {
		t.Errorf("after revoke, list = %q; want header and work laptop", rows)
	}
}

// TestUserShow: "user show" with logins recorded through app.Backend, as
// the server records them.
func TestUserShow(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	addUser(t, data, "alice", "main-pw")
	addAppPassword(t, data, "alice", "phone")

	r := runCLI(t, "", "user", "show", "--data", data, "ALICE")
	wantFresh := regexp.MustCompile(`^user:          alice
created:       \d{4}-\d\d-\d\d \d\d:\d\d UTC
status:        enabled
quota:         default, messages default
mailbox:       0 messages, 0 octets
password:      argon2id
app passwords: 1
last logins:
  none
recent failures:
  none
$`)
	if r.Code != 0 || r.Stderr != "" || !wantFresh.MatchString(r.Stdout) {
		t.Errorf("user show (fresh): exit %d, stderr %q, stdout:\n%s", r.Code, r.Stderr, r.Stdout)
	}

	users, err := app.DataDir(data).OpenExistingUsers()
	if err != nil {
		t.Fatal(err)
	}
	defer users.Close()
	be := app.Backend{Users: users}
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	// What the server reports after a SCRAM login and two failed USER/PASS.
	info := pop3server.ConnInfo{RemoteAddr: &net.TCPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 50123}}
	info.Mechanism = "SCRAM-SHA-256"
	be.RecordLogin(ctx, info, "alice", true)
	info.Mechanism = "USER"
	for _, user := range []string{"Alice", "ghost"} {
		be.RecordLogin(ctx, info, user, false)
	}
	// Failures are recorded in the background; wait for it.
	for {
		h, err := users.LoginHistory(ctx, "alice")
		if err != nil {
			t.Fatal(err)
		}
		if len(h.Failures) > 0 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("failed login never recorded")
		case <-time.After(10 * time.Millisecond):
		}
	}

	r = runCLI(t, "", "user", "show", "--data", data, "alice")
	wantLogins := regexp.MustCompile(`(?s)
last logins:
  \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC  192\.0\.2\.7:50123  SCRAM-SHA-256
recent failures:
  \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC  192\.0\.2\.7:50123  USER
$`)
	if r.Code != 0 || r.Stderr != "" || !wantLogins.MatchString(r.Stdout) {
		t.Errorf("user show (after logins): exit %d, stderr %q, stdout:\n%s", r.Code, r.Stderr, r.Stdout)
	}

	for _, args := range [][]string{{"show", "ghost"}, {"show", "bad name"}} {
		r := runCLI(t, "", append([]string{"user", "--data", data}, args...)...)
		if r.Code == 0 || !strings.HasPrefix(r.Stderr, "popbox: ") {
			t.Errorf("popbox user %s: exit %d, stderr %q; want an error", strings.Join(args, " "), r.Code, r.Stderr)
		}
	}
	// An unknown user gets no history, and nothing else was recorded.
	if _, err := users.LoginHistory(ctx, "ghost"); !errors.Is(err, userdb.ErrNotFound) {
		t.Errorf("LoginHistory(ghost) = %v, want ErrNotFound", err)
	}
}
