package main

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// copyUsers copies the user database of the data directory from into to.
func copyUsers(t *testing.T, from, to string) {
	t.Helper()
	for _, suffix := range []string{"", "-wal"} {
		b, err := os.ReadFile(filepath.Join(from, "users.db"+suffix))
		if suffix != "" && errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(to, "users.db"+suffix), string(b))
	}
}

// failingReader returns data and then a read error, like a pipe from an
// MTA that dies half way.
type failingReader struct{ data io.Reader }

func (r *failingReader) Read(p []byte) (int, error) {
	n, err := r.data.Read(p)
	if errors.Is(err, io.EOF) {
		return n, errors.New("read error injected by the test")
	}
	return n, err
}

// TestDeliver checks `popbox deliver`'s exit codes, in process and as a
// process reading its standard input from a file: 0 once the message is
// stored, 67 for an unknown user, 75 for a temporary failure, 78 for a bad
// configuration; every failure explained on stderr and leaving no message
// behind.
func TestDeliver(t *testing.T) {
	t.Parallel()
	template := t.TempDir()
	addUser(t, template, "alice", "pw")
	const msg = "From: bob@example.org\nTo: alice@example.org\nSubject: test\n\nHello\n.\nBye\n"

	notDir := func(rel string) func(t *testing.T, data string) {
		return func(t *testing.T, data string) { writeFile(t, filepath.Join(data, rel), "not a directory\n") }
	}
	tests := []struct {
		name       string
		setup      func(t *testing.T, data string)
		user       string
		extraArgs  []string
		stdin      io.Reader // in process only; nil: msg
		wantCode   int
		wantStderr string
		wantMsgs   int // messages in alice's mailbox afterwards; -1: do not look
	}{
		{name: "delivered", user: "alice", wantMsgs: 1},
		{name: "user name in upper case", user: "ALICE", wantMsgs: 1},
		{name: "empty message", user: "alice", stdin: strings.NewReader(""), wantMsgs: 1},
		{name: "unknown user", user: "bob", wantCode: exitNoUser, wantStderr: `no such user "bob"`},
		{name: "invalid user name", user: "../alice", wantCode: exitNoUser, wantStderr: "no such user"},
		// Not "no such user": that would bounce every message when the
		// data directory is wrong or not mounted.
		{name: "user database missing", user: "alice", setup: func(t *testing.T, data string) {
			os.Remove(filepath.Join(data, "users.db"))
		}, wantCode: exitTempFail, wantStderr: "no user database", wantMsgs: -1},
		{name: "data directory missing", user: "alice", setup: func(t *testing.T, data string) {
			os.RemoveAll(data)
		}, wantCode: exitTempFail, wantStderr: "no user database", wantMsgs: -1},
		{name: "mail root is a file", user: "alice", setup: notDir("mail"),
			wantCode: exitTempFail, wantStderr: "mail", wantMsgs: -1},
		{name: "user directory is a file", user: "alice", setup: notDir("mail/alice"),
			wantCode: exitTempFail, wantStderr: "alice", wantMsgs: -1},
		{name: "Maildir is a file", user: "alice", setup: notDir("mail/alice/Maildir"),
			wantCode: exitTempFail, wantStderr: "alice", wantMsgs: -1},
		{name: "Maildir/new is a file", user: "alice", setup: func(t *testing.T, data string) {
			for _, d := range []string{"tmp", "cur"} {
				if err := os.MkdirAll(filepath.Join(data, "mail/alice/Maildir", d), 0o700); err != nil {
					t.Fatal(err)
				}
			}
			notDir("mail/alice/Maildir/new")(t, data)
		}, wantCode: exitTempFail, wantStderr: "alice", wantMsgs: -1},
		{name: "user database is a directory", user: "alice", setup: func(t *testing.T, data string) {
			os.Remove(filepath.Join(data, "users.db"))
			if err := os.Mkdir(filepath.Join(data, "users.db"), 0o700); err != nil {
				t.Fatal(err)
			}
		}, wantCode: exitTempFail, wantStderr: "users.db"},
		{name: "standard input fails", user: "alice", stdin: &failingReader{strings.NewReader(msg)},
			wantCode: exitTempFail, wantStderr: "read error injected"},
		{name: "configuration error", user: "alice", setup: func(t *testing.T, data string) {
			writeFile(t, filepath.Join(data, "bad.toml"), "[pop3]\nlisten = 110\n")
		}, extraArgs: []string{"-c", "CONFIG"}, wantCode: exitConfig, wantStderr: "bad.toml:2: pop3.listen: "},
	}
	for _, tt := range tests {
		for _, mode := range []string{"in process", "binary"} {
			if mode == "binary" && tt.stdin != nil {
				continue
			}
			t.Run(tt.name+"/"+mode, func(t *testing.T) {
				t.Parallel()
				data := t.TempDir()
				copyUsers(t, template, data)
				if tt.setup != nil {
					tt.setup(t, data)
				}
				args := []string{"deliver", "--data", data, tt.user}
				for _, a := range tt.extraArgs {
					args = append(args, strings.ReplaceAll(a, "CONFIG", filepath.Join(data, "bad.toml")))
				}
				var r result
				if mode == "binary" {
					in := filepath.Join(t.TempDir(), "message")
					writeFile(t, in, msg)
					f, err := os.Open(in) // `popbox deliver alice < message`
					if err != nil {
						t.Fatal(err)
					}
					defer f.Close()
					r = runBin(t, binOpts{stdin: f}, args...)
				} else {
					stdin := tt.stdin
					if stdin == nil {
						stdin = strings.NewReader(msg)
					}
					r = runCLIReader(t, stdin, args...)
				}
				if r.Code != tt.wantCode || r.Stdout != "" {
					t.Errorf("popbox %s: exit %d, stdout %q, stderr %q; want exit %d and no output",
						strings.Join(args, " "), r.Code, r.Stdout, r.Stderr, tt.wantCode)
				}
				if tt.wantCode == 0 && r.Stderr != "" {
					t.Errorf("stderr %q after a delivery, want nothing", r.Stderr)
				}
				if tt.wantCode != 0 && (!strings.HasPrefix(r.Stderr, "popbox: ") || !strings.Contains(r.Stderr, tt.wantStderr)) {
					t.Errorf("stderr %q, want \"popbox: \" and an explanation containing %q", r.Stderr, tt.wantStderr)
				}
				if tt.wantMsgs >= 0 {
					files := maildirFiles(t, data, "alice")
					if len(files) != tt.wantMsgs {
						t.Errorf("alice's mailbox holds %d messages, want %d", len(files), tt.wantMsgs)
					}
					want := msg
					if tt.stdin != nil {
						want = ""
					}
					for name, got := range files {
						if diff := cmp.Diff(want, got); diff != "" {
							t.Errorf("message %s (-want +got):\n%s", name, diff)
						}
					}
				}
				if tt.wantStderr == "no user database" {
					if _, err := os.Stat(filepath.Join(data, "users.db")); !errors.Is(err, os.ErrNotExist) {
						t.Errorf("deliver created a user database (stat: %v)", err)
					}
				}
				// No half-delivered message waits in tmp/.
				if ents, err := os.ReadDir(filepath.Join(data, "mail/alice/Maildir/tmp")); err == nil && len(ents) > 0 {
					t.Errorf("%d files left in Maildir/tmp", len(ents))
				}
			})
		}
	}
}
