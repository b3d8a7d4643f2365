package main

import (
	"strings"
	"testing"
)

func TestUserSet(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	addUser(t, data, "alice", "pw-1")
	steps := []struct {
		args     []string
		wantCode int
		want     string // stdout, or a piece of stderr
	}{
		{[]string{"alice", "quota=2G", "messages=50000"}, 0, "user alice: quota 2G, messages 50000\n"},
		{[]string{"ALICE", "quota=1536k"}, 0, "user alice: quota 1536K, messages 50000\n"},
		{[]string{"alice", "messages=unlimited"}, 0, "user alice: quota 1536K, messages unlimited\n"},
		{[]string{"alice", "quota=default", "messages=default"}, 0, "user alice: quota default, messages default\n"},
		{[]string{"alice", "quota=12345"}, 0, "user alice: quota 12345, messages default\n"},
		{[]string{"alice", "quota=-1"}, exitUsage, "want a size"},
		{[]string{"alice", "quota=2X"}, exitUsage, "want a size"},
		{[]string{"alice", "messages=1k"}, exitUsage, "want a number"},
		{[]string{"alice", "colour=blue"}, exitUsage, "unknown key"},
		{[]string{"alice"}, exitUsage, "usage"},
		{[]string{"ghost", "quota=1G"}, exitNoUser, "no such user"},
	}
	for i, s := range steps {
		r := runCLI(t, "", append([]string{"user", "set", "--data", data}, s.args...)...)
		if r.Code != s.wantCode {
			t.Errorf("step %d: user set %s: exit %d (stderr %q), want %d", i, strings.Join(s.args, " "), r.Code, r.Stderr, s.wantCode)
			continue
		}
		if s.wantCode == 0 && r.Stdout != s.want || s.wantCode != 0 && !strings.Contains(r.Stderr, s.want) {
			t.Errorf("step %d: user set %s: stdout %q, stderr %q; want %q", i, strings.Join(s.args, " "), r.Stdout, r.Stderr, s.want)
		}
	}
	r := runCLI(t, "", "user", "show", "--data", data, "alice")
	if !strings.Contains(r.Stdout, "quota:         12345, messages default\n") {
		t.Errorf("user show:\n%s", r.Stdout)
	}
}
