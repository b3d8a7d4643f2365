package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/popbox/popbox/config"
	"github.com/popbox/popbox/internal/app"
)

// TestPurge: deleted mail within its keep period survives a plain purge,
// goes with --all-kept, and can then no longer be restored.
func TestPurge(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	addUser(t, data, "alice", "pw-1")
	for range 2 {
		if r := runCLI(t, "Subject: x\n\nbody\n", "deliver", "--data", data, "alice"); r.Code != 0 {
			t.Fatalf("deliver: %d %s", r.Code, r.Stderr)
		}
	}
	users, err := app.DataDir(data).OpenExistingUsers()
	if err != nil {
		t.Fatal(err)
	}
	st, err := app.DataDir(data).OpenMailStore(nil, users, config.Default().Mail)
	if err != nil {
		t.Fatal(err)
	}
	drop, err := st.Open(context.Background(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	if err := drop.Commit([]int{0, 1}); err != nil {
		t.Fatal(err)
	}
	users.Close()
	trash := func() int {
		m, _ := filepath.Glob(filepath.Join(data, "mail", "alice", "Maildir", "popbox-trash", "*"))
		return len(m)
	}
	if n := trash(); n != 2 {
		t.Fatalf("%d files kept after deleting 2", n)
	}
	if r := runCLI(t, "", "purge", "--data", data); r.Code != 0 || !strings.Contains(r.Stdout, "0 deleted message(s) purged") || trash() != 2 {
		t.Errorf("purge within the keep period: exit %d, %q, %d kept", r.Code, r.Stdout, trash())
	}
	if r := runCLI(t, "", "purge", "--data", data, "--user", "alice", "--all-kept"); r.Code != 0 || !strings.Contains(r.Stdout, "2 deleted message(s) purged for alice") || trash() != 0 {
		t.Errorf("purge --all-kept: exit %d, %q, %d kept", r.Code, r.Stdout, trash())
	}
	if r := runCLI(t, "", "restore", "--data", data, "alice", "--all"); r.Code != 0 || !strings.Contains(r.Stdout, "0 message(s) restored") {
		t.Errorf("restore after purging: exit %d, %q", r.Code, r.Stdout)
	}
}
