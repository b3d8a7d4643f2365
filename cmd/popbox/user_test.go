package main

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/popbox/popbox/internal/app"
	"github.com/popbox/popbox/userdb"
)

// checkPasswords opens the user database of data and wants each name to
// authenticate with its password ("" for: no such user).
func checkPasswords(t *testing.T, data string, want map[string]string, wrong map[string]string) {
	t.Helper()
	db, err := userdb.Open(app.DataDir(data).UsersPath(), userdb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	for name, pw := range want {
		if _, err := db.Authenticate(ctx, name, pw); err != nil {
			t.Errorf("%s with password %q: %v, want success", name, pw, err)
		}
	}
	for name, pw := range wrong {
		if _, err := db.Authenticate(ctx, name, pw); !errors.Is(err, userdb.ErrAuthFailed) {
			t.Errorf("%s with password %q: %v, want %v", name, pw, err, userdb.ErrAuthFailed)
		}
	}
}

// TestUserCommands runs user add, passwd, del and list in sequence on one
// data directory, with passwords on standard input (not a terminal).
func TestUserCommands(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	long := strings.Repeat("x", 2000)
	steps := []struct {
		args       []string
		stdin      string
		wantCode   int
		wantStdout string
		wantStderr string // contained in stderr; "" for empty stderr
	}{
		{[]string{"add", "alice"}, "first-pw\n", 0, "user alice added\n", ""},
		// Names are case-insensitive and stored lower case; CRLF is not
		// part of the password.
		{[]string{"add", "Bob"}, "bob-pw\r\n", 0, "user bob added\n", ""},
		{[]string{"add", "carol", "--password-stdin"}, "carol-pw\nnot read\n", 0, "user carol added\n", ""},
		{[]string{"add", "alice"}, "other\n", exitUsage, "", "already exists"},
		{[]string{"add", "ALICE"}, "other\n", exitUsage, "", "already exists"},
		// The name is checked before the password is read.
		{[]string{"add", "alice"}, "", exitUsage, "", "already exists"},
		{[]string{"add", "bad name"}, "pw\n", exitUsage, "", "invalid user name"},
		{[]string{"add", ".dot"}, "pw\n", exitUsage, "", "invalid user name"},
		{[]string{"add", "--", "-dash"}, "pw\n", exitUsage, "", "invalid user name"},
		{[]string{"add", strings.Repeat("a", 65)}, "pw\n", exitUsage, "", "invalid user name"},
		{[]string{"add", "dave"}, "", exitUsage, "", "empty password"},
		{[]string{"add", "dave"}, "\n", exitUsage, "", "empty password"},
		{[]string{"add", "dave"}, long + "\n", exitUsage, "", "password"},
		{[]string{"passwd", "ghost"}, "pw\n", exitNoUser, "", "no such user"},
		// An unknown user is reported before a password is read.
		{[]string{"passwd", "ghost"}, "", exitNoUser, "", "no such user"},
		{[]string{"passwd", "bad name"}, "pw\n", exitUsage, "", "invalid user name"},
		{[]string{"passwd", "alice"}, "", exitUsage, "", "empty password"},
		{[]string{"passwd", "ALICE"}, "second-pw\n", 0, "password of alice changed\n", ""},
		{[]string{"passwd", "carol", "--password-stdin"}, "carol-pw-2\n", 0, "password of carol changed\n", ""},
		{[]string{"del", "ghost"}, "", exitNoUser, "", "no such user"},
		{[]string{"del", "bad name"}, "", exitUsage, "", "invalid user name"},
		{[]string{"del", "bob"}, "", 0, "user bob deleted; mail kept on disk\n", ""},
		{[]string{"del", "bob"}, "", exitNoUser, "", "no such user"},
		{[]string{"disable", "ghost"}, "", exitNoUser, "", "no such user"},
		{[]string{"enable", "bad name"}, "", exitUsage, "", "invalid user name"},
		{[]string{"disable", "dave"}, "", exitNoUser, "", "no such user"},
		{[]string{"add", "dave", "--password-stdin"}, "dave-pw\n", 0, "user dave added\n", ""},
		{[]string{"disable", "DAVE"}, "", 0, "user dave disabled\n", ""},
		{[]string{"disable", "carol"}, "", 0, "user carol disabled\n", ""},
		{[]string{"enable", "carol"}, "", 0, "user carol enabled\n", ""},
	}
	for i, s := range steps {
		if s.args[0] == "del" && s.args[1] == "bob" && s.wantCode == 0 {
			deliverMsg(t, data, "bob", "Subject: for bob\n\nkept\n")
		}
		args := append([]string{"user", "--data", data}, s.args...)
		r := runCLI(t, s.stdin, args...)
		if r.Code != s.wantCode || r.Stdout != s.wantStdout ||
			(s.wantStderr == "") != (r.Stderr == "") || !strings.Contains(r.Stderr, s.wantStderr) {
			t.Errorf("step %d: popbox user %s: exit %d, stdout %q, stderr %q; want %d, %q, stderr with %q",
				i, strings.Join(s.args, " "), r.Code, r.Stdout, r.Stderr, s.wantCode, s.wantStdout, s.wantStderr)
		}
		if r.Code != 0 && !strings.HasPrefix(r.Stderr, "popbox: ") {
			t.Errorf("step %d: stderr %q does not start with \"popbox: \"", i, r.Stderr)
		}
	}

	if got := len(maildirFiles(t, data, "bob")); got != 1 {
		t.Errorf("bob's mailbox holds %d messages after user del, want the 1 kept", got)
	}
	// dave is disabled: his right password fails like a wrong one.
	checkPasswords(t, data,
		map[string]string{"alice": "second-pw", "carol": "carol-pw-2"},
		map[string]string{"alice": "first-pw", "carol": "carol-pw", "dave": "dave-pw"})

	r := runCLI(t, "", "user", "list", "--data", data)
	if r.Code != 0 || r.Stderr != "" {
		t.Fatalf("popbox user list: exit %d, stderr %q", r.Code, r.Stderr)
	}
	var got [][]string
	for i, line := range strings.Split(strings.TrimSuffix(r.Stdout, "\n"), "\n") {
		f := strings.Fields(line)
		if i == 0 {
			got = append(got, f)
			continue
		}
		if len(f) != 5 {
			t.Fatalf("user list line %q: want NAME DATE TIME SCHEME STATUS", line)
		}
		created, err := time.Parse("2006-01-02 15:04", f[1]+" "+f[2])
		if err != nil {
			t.Errorf("user list line %q: %v", line, err)
		} else if d := time.Since(created); d < -time.Minute || d > 10*time.Minute {
			t.Errorf("user list line %q: created %v ago, want just now (UTC)", line, d)
		}
		got = append(got, []string{f[0], f[3], f[4]})
	}
	want := [][]string{{"NAME", "CREATED", "PASSWORD", "STATUS"}, {"alice", "argon2id", "enabled"},
		{"carol", "argon2id", "enabled"}, {"dave", "argon2id", "disabled"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("popbox user list (-want +got):\n%s\n%s", diff, r.Stdout)
	}
}

// TestUserPasswordFromStdin runs the binary with the password on a real
// standard input: a pipe and a file, with and without --password-stdin.
func TestUserPasswordFromStdin(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	pwFile := filepath.Join(t.TempDir(), "pw")
	writeFile(t, pwFile, "from-file\n")
	openPW := func() *os.File {
		f, err := os.Open(pwFile)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	steps := []struct {
		stdin      func() io.Reader // a pipe, a file (*os.File) or nil (/dev/null)
		args       []string
		wantCode   int
		wantStdout string
	}{
		{func() io.Reader { return strings.NewReader("from-pipe\n") }, []string{"add", "alice"}, 0, "user alice added\n"},
		{func() io.Reader { return openPW() }, []string{"add", "bob", "--password-stdin"}, 0, "user bob added\n"},
		{func() io.Reader { return strings.NewReader("pipe-2\n") }, []string{"passwd", "bob", "--password-stdin"}, 0, "password of bob changed\n"},
		{func() io.Reader { return openPW() }, []string{"passwd", "alice"}, 0, "password of alice changed\n"},
		{func() io.Reader { return nil }, []string{"add", "carol"}, exitUsage, ""},
		{func() io.Reader { return strings.NewReader("x\n") }, []string{"passwd", "ghost"}, exitNoUser, ""},
	}
	for i, s := range steps {
		r := runBin(t, binOpts{stdin: s.stdin()}, append([]string{"user", "--data", data}, s.args...)...)
		if r.Code != s.wantCode || r.Stdout != s.wantStdout || (r.Code == 0) != (r.Stderr == "") {
			t.Errorf("step %d: popbox user %s: exit %d, stdout %q, stderr %q; want %d, %q",
				i, strings.Join(s.args, " "), r.Code, r.Stdout, r.Stderr, s.wantCode, s.wantStdout)
		}
	}
	checkPasswords(t, data,
		map[string]string{"alice": "from-file", "bob": "pipe-2"},
		map[string]string{"alice": "from-pipe", "bob": "from-file"})
}

// TestUserCommandsNeedDatabase: only "user add" creates the user database;
// the others, pointed at a directory without one, say so and create nothing.
func TestUserCommandsNeedDatabase(t *testing.T) {
	for _, args := range [][]string{
		{"user", "list"},
		{"user", "del", "alice"},
		{"user", "passwd", "--password-stdin", "alice"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			dir := t.TempDir()
			res := runCLI(t, "secret-password\n", append(args, "--data", dir)...)
			if res.Code != exitConfig {
				t.Errorf("exit %d, want %d; stderr: %s", res.Code, exitConfig, res.Stderr)
			}
			if !strings.Contains(res.Stderr, "no user database") {
				t.Errorf("stderr %q does not explain the missing database", res.Stderr)
			}
			if _, err := os.Stat(filepath.Join(dir, "users.db")); !os.IsNotExist(err) {
				t.Errorf("users.db was created (stat: %v)", err)
			}
		})
	}
}
