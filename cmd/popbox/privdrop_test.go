package main

import (
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/popbox/popbox/config"
)

// needRoot skips t unless it runs as root; with CI=true (CI runs the tests
// as root) not being root fails, so that these tests cannot silently stop
// running.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("CI=true but not running as root: the privilege tests need root")
	}
	t.Skip("needs root")
}

// nobodyIDs returns the ids of user nobody and group nogroup, skipping t
// where the system has no such entries.
func nobodyIDs(t *testing.T) (uid, gid int) {
	t.Helper()
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Skipf("no user nobody: %v", err)
	}
	g, err := user.LookupGroup("nogroup")
	if err != nil {
		t.Skipf("no group nogroup: %v", err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(g.Gid)
	return uid, gid
}

// reachableDir returns a new directory that other users can traverse:
// t.TempDir's are private to root.
func reachableDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func chownTree(t *testing.T, root string, uid, gid int) {
	t.Helper()
	err := filepath.Walk(root, func(path string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, uid, gid)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// procStatus returns the named line of /proc/PID/status, without its key.
func procStatus(t *testing.T, pid int, key string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			return strings.Join(strings.Fields(v), " ")
		}
	}
	t.Fatalf("no %s line in /proc/%d/status", key, pid)
	return ""
}

// TestServeDropsPrivileges: started as root with process.user, serve binds,
// becomes that user for good (all of real, effective, saved and file-system
// ids, no supplementary groups) and serves logins from a data directory
// that user owns. Without user or group both the default primary group and
// an explicit one work.
func TestServeDropsPrivileges(t *testing.T) {
	needRoot(t)
	uid, gid := nobodyIDs(t)
	tests := []struct {
		name    string
		process string
	}{
		{"user and group", "user = \"nobody\"\ngroup = \"nogroup\"\n"},
		{"primary group", "user = \"nobody\"\n"},
		{"numeric ids", "user = \"" + strconv.Itoa(uid) + "\"\ngroup = \"" + strconv.Itoa(gid) + "\"\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			data := filepath.Join(reachableDir(t), "data")
			addUser(t, data, "alice", "alice-pw")
			deliverMsg(t, data, "alice", "Subject: hi\n\nhello\n")
			chownTree(t, data, uid, gid)
			cfg := testConfig(t, "[process]\n"+tt.process)
			// startServe passes --allow-root, which must not stop the
			// drop: process.user wins.
			p := startServe(t, binOpts{}, append([]string{"-c", cfg, "--data", data}, listenArgs...)...)
			p.waitLog(ioTimeout, "msg=\"dropped root privileges\"", func(r logRecord) bool {
				return r["msg"] == "dropped root privileges" && r["uid"] == strconv.Itoa(uid) && r["gid"] == strconv.Itoa(gid)
			})
			pid := p.cmd.Process.Pid
			ids := func(id int) string { return strings.TrimSpace(strings.Repeat(strconv.Itoa(id)+" ", 4)) }
			if got, want := procStatus(t, pid, "Uid"), ids(uid); got != want {
				t.Errorf("/proc/%d/status Uid: %s, want %s", pid, got, want)
			}
			if got, want := procStatus(t, pid, "Gid"), ids(gid); got != want {
				t.Errorf("/proc/%d/status Gid: %s, want %s", pid, got, want)
			}
			if got := procStatus(t, pid, "Groups"); got != "" && got != strconv.Itoa(gid) {
				t.Errorf("/proc/%d/status Groups: %s, want none", pid, got)
			}
			c := dialPOP3(t, p.plain)
			c.login("alice", "alice-pw")
			if got := c.cmd("STAT"); !strings.HasPrefix(got, "+OK 1 ") {
				t.Errorf("STAT: %q, want one message", got)
			}
			if got := c.cmd("DELE 1"); !strings.HasPrefix(got, "+OK") {
				t.Errorf("DELE 1: %q", got)
			}
			if got := c.cmd("QUIT"); !strings.HasPrefix(got, "+OK") {
				t.Errorf("QUIT: %q", got)
			}
			c.expectClosed()
			p.stop()
			if n := len(maildirFiles(t, data, "alice")); n != 0 {
				t.Errorf("%d messages left after DELE and QUIT as nobody, want 0", n)
			}
		})
	}
}

// TestServeRootRefusals: the ways serve refuses to start as root, each
// exit 78 with a message that says what to do, and nothing created.
func TestServeRootRefusals(t *testing.T) {
	needRoot(t)
	tests := []struct {
		name      string
		config    string
		rootOwned bool // data directory exists, owned by root, mode 0700
		wantCode  int
		wantErr   []string
		public    bool // listen beyond loopback: not a local trial
	}{
		{"no user", "", false, exitConfig, []string{
			"popbox: refusing to serve as root: set user under [process]", "--allow-root", "process.allow_root = true",
		}, true},
		{"allow_root false", "[process]\nallow_root = false\n", false, exitConfig, []string{"refusing to serve as root"}, true},
		{"unknown user", "[process]\nuser = \"no-such-user-popbox\"\n", false, exitConfig, []string{
			`process.user: user "no-such-user-popbox"`,
		}, false},
		{"user root", "[process]\nuser = \"root\"\n", false, exitConfig, []string{
			`process.user "root" is root`,
		}, false},
		{"data directory not the user's", "[process]\nuser = \"nobody\"\ngroup = \"nogroup\"\n", true, 1, []string{
			"permission denied", `as process.user "nobody"`, "chown -R nobody:nogroup ",
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if tt.rootOwned {
				nobodyIDs(t)
			}
			dir := reachableDir(t)
			data := filepath.Join(dir, "data")
			if tt.rootOwned {
				if err := os.Mkdir(data, 0o700); err != nil {
					t.Fatal(err)
				}
			}
			cfg := filepath.Join(dir, "popbox.toml")
			writeFile(t, cfg, tt.config)
			listen := listenArgs
			if tt.public {
				// Refused before anything is bound, so nothing listens here.
				listen = []string{"--listen", "0.0.0.0:0", "--listen-tls", ""}
			}
			args := append([]string{"serve", "-c", cfg, "--data", data}, listen...)
			r := runBin(t, binOpts{}, args...)
			if r.Code != tt.wantCode || r.Stdout != "" {
				t.Errorf("popbox %s: exit %d, stdout %q, stderr %q; want exit %d and no output",
					strings.Join(args, " "), r.Code, r.Stdout, r.Stderr, tt.wantCode)
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(r.Stderr, want) {
					t.Errorf("stderr %q does not contain %q", r.Stderr, want)
				}
			}
			if !tt.rootOwned {
				if _, err := os.Stat(data); !os.IsNotExist(err) {
					t.Errorf("a refused serve created its data directory (stat: %v)", err)
				}
			}
		})
	}
}

// TestPlanPrivileges covers the decisions for users other than root, which
// the tests cannot become without dropping root themselves.
func TestPlanPrivileges(t *testing.T) {
	uid, gid := nobodyIDs(t)
	other := uid - 1
	tests := []struct {
		name       string
		euid, egid int
		p          config.Process
		wantDrop   string
		wantErr    string
	}{
		{"root without user", 0, 0, config.Process{}, "", "refusing to serve as root"},
		{"root allowed", 0, 0, config.Process{AllowRoot: true}, "", ""},
		{"root with user", 0, 0, config.Process{User: "nobody"}, "nobody", ""},
		{"root with user and allow_root", 0, 0, config.Process{User: "nobody", AllowRoot: true}, "nobody", ""},
		{"root to root", 0, 0, config.Process{User: "0", Group: "0"}, "", `process.user "0" is root`},
		{"unknown group", 0, 0, config.Process{User: "nobody", Group: "no-such-group-popbox"}, "", `group "no-such-group-popbox"`},
		{"not root, no user", other, other, config.Process{}, "", ""},
		{"not root, allow_root ignored", other, other, config.Process{AllowRoot: true}, "", ""},
		{"not root, same user", uid, gid, config.Process{User: "nobody"}, "", ""},
		{"not root, same user and group", uid, gid, config.Process{User: "nobody", Group: "nogroup"}, "", ""},
		{"not root, other user", other, other, config.Process{User: "nobody"}, "",
			`process.user is "nobody" (uid ` + strconv.Itoa(uid) + `) but popbox runs as uid ` + strconv.Itoa(other) + ` and only root can switch user`},
		{"not root, other group", uid, other, config.Process{User: "nobody", Group: "nogroup"}, "",
			`process.group is "nogroup" (gid ` + strconv.Itoa(gid) + `) but popbox runs as gid ` + strconv.Itoa(other) + ` and only root can switch group`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := planPrivileges(tt.euid, tt.egid, tt.p, false)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("planPrivileges(%d, %d, %+v) error %v, want one containing %q", tt.euid, tt.egid, tt.p, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.wantDrop {
				t.Errorf("planPrivileges(%d, %d, %+v) = %q, %v; want %q", tt.euid, tt.egid, tt.p, got, err, tt.wantDrop)
			}
		})
	}
}

// TestLoopbackTrial: root without process.user is let through only when
// every listener is on loopback and an unprivileged port, as the embedded
// defaults are (the README's first command, run by a root newcomer).
func TestLoopbackTrial(t *testing.T) {
	tests := []struct {
		listen, listenTLS string
		want              bool
	}{
		{"127.0.0.1:1110", "127.0.0.1:1995", true},
		{"127.0.0.1:0", "127.0.0.1:0", true},
		{"[::1]:1110", "", true},
		{"localhost:1110", "", true},
		{"127.0.0.1:110", "127.0.0.1:1995", false},
		{"127.0.0.1:1110", "127.0.0.1:995", false},
		{"0.0.0.0:1110", "", false},
		{":1110", "", false},
		{"192.0.2.1:1110", "", false},
	}
	for _, tt := range tests {
		if got := loopbackTrial(config.POP3{Listen: tt.listen, ListenTLS: tt.listenTLS}); got != tt.want {
			t.Errorf("loopbackTrial(%q, %q) = %v, want %v", tt.listen, tt.listenTLS, got, tt.want)
		}
	}
	if _, err := planPrivileges(0, 0, config.Process{}, true); err != nil {
		t.Errorf("root on the loopback trial defaults refused: %v", err)
	}
	if _, err := planPrivileges(0, 0, config.Process{}, false); err == nil {
		t.Error("root beyond loopback without process.user was not refused")
	}
}
