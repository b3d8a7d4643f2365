//go:build unix

package privdrop

import (
	"encoding/json"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// childEnv names the user and group a re-executed test binary drops to.
const childEnv = "PRIVDROP_TEST_CHILD"

// report is what the child process found after dropping.
type report struct {
	Err             string
	UID, EUID       int
	GID, EGID       int
	Groups          []int
	SetuidRootFails bool
	// ThreadUIDs are the "Uid:" lines of every thread (Linux only):
	// credentials are per thread there.
	ThreadUIDs []string
}

// TestMain lets the test binary serve as the child that drops privileges:
// dropping is irreversible, so it cannot happen in the test process.
func TestMain(m *testing.M) {
	if spec, ok := os.LookupEnv(childEnv); ok {
		userName, groupName, _ := strings.Cut(spec, ":")
		os.Exit(child(userName, groupName))
	}
	os.Exit(m.Run())
}

func child(userName, groupName string) int {
	// Threads that exist before the drop must be switched too.
	done := make(chan struct{})
	for range 4 {
		go func() {
			runtime.LockOSThread()
			<-done
		}()
	}
	var r report
	if _, err := Drop(userName, groupName); err != nil {
		r.Err = err.Error()
	}
	r.UID, r.EUID, r.GID, r.EGID = os.Getuid(), os.Geteuid(), os.Getgid(), os.Getegid()
	r.Groups, _ = os.Getgroups()
	r.SetuidRootFails = syscall.Setuid(0) != nil
	tasks, _ := filepath.Glob("/proc/self/task/*/status")
	for _, f := range tasks {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for line := range strings.Lines(string(b)) {
			if strings.HasPrefix(line, "Uid:") {
				r.ThreadUIDs = append(r.ThreadUIDs, strings.Join(strings.Fields(line)[1:], " "))
			}
		}
	}
	close(done)
	json.NewEncoder(os.Stdout).Encode(r)
	return 0
}

// needRoot skips t unless it runs as root; in CI, which runs as root, not
// being root is a failure, so the test cannot silently stop running.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("CI=true but not running as root: the privilege-drop tests need root")
	}
	t.Skip("needs root")
}

func runChild(t *testing.T, userName, groupName string) report {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+userName+":"+groupName)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	var r report
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("child output %q: %v", out, err)
	}
	return r
}

func lookupIDs(t *testing.T, userName, groupName string) (uid, gid int) {
	t.Helper()
	u, err := user.Lookup(userName)
	if err != nil {
		t.Skipf("no user %s: %v", userName, err)
	}
	g, err := user.LookupGroup(groupName)
	if err != nil {
		t.Skipf("no group %s: %v", groupName, err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(g.Gid)
	return uid, gid
}

func TestDrop(t *testing.T) {
	needRoot(t)
	nobody, nogroup := lookupIDs(t, "nobody", "nogroup")
	tests := []struct {
		name, user, group string
		wantUID, wantGID  int
	}{
		{"names", "nobody", "nogroup", nobody, nogroup},
		{"primary group", "nobody", "", nobody, nogroup},
		{"numeric ids", strconv.Itoa(nobody), strconv.Itoa(nogroup), nobody, nogroup},
		{"ids without passwd entry", "4000123", "4000124", 4000123, 4000124},
	}
	// A user with a supplementary group, if this machine has one: Debian's
	// postgres user is also in ssl-cert.
	if u, err := user.Lookup("postgres"); err == nil {
		if ids, _ := u.GroupIds(); len(ids) > 1 {
			uid, _ := strconv.Atoi(u.Uid)
			gid, _ := strconv.Atoi(u.Gid)
			tests = append(tests, struct {
				name, user, group string
				wantUID, wantGID  int
			}{"supplementary groups", "postgres", "", uid, gid})
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := runChild(t, tt.user, tt.group)
			if r.Err != "" {
				t.Fatalf("Drop(%q, %q): %s", tt.user, tt.group, r.Err)
			}
			if r.UID != tt.wantUID || r.EUID != tt.wantUID || r.GID != tt.wantGID || r.EGID != tt.wantGID {
				t.Errorf("after Drop: uid %d euid %d gid %d egid %d, want uid %d gid %d",
					r.UID, r.EUID, r.GID, r.EGID, tt.wantUID, tt.wantGID)
			}
			// Exactly the user's memberships (and the group).
			wantGroups := memberships(t, tt.user)
			for _, g := range r.Groups {
				if g != tt.wantGID && !slices.Contains(wantGroups, g) {
					t.Errorf("still in supplementary group %d", g)
				}
			}
			for _, g := range wantGroups {
				if !slices.Contains(r.Groups, g) {
					t.Errorf("not in the user's group %d after Drop (groups %v)", g, r.Groups)
				}
			}
			if !r.SetuidRootFails {
				t.Error("setuid(0) succeeded after Drop")
			}
			// Real, effective, saved and file-system uid.
			want := strings.TrimSpace(strings.Repeat(strconv.Itoa(tt.wantUID)+" ", 4))
			if runtime.GOOS == "linux" && len(r.ThreadUIDs) < 2 {
				t.Errorf("child saw %d threads, want several", len(r.ThreadUIDs))
			}
			for i, line := range r.ThreadUIDs {
				if line != want {
					t.Errorf("thread %d: Uid: %s, want %s", i, line, want)
				}
			}
		})
	}
}

func TestDropErrors(t *testing.T) {
	needRoot(t)
	tests := []struct {
		name, user, group, want string
	}{
		{"unknown user", "no-such-user-popbox", "", `user "no-such-user-popbox"`},
		{"unknown group", "nobody", "no-such-group-popbox", `group "no-such-group-popbox"`},
		{"root", "root", "", `user "root" is root`},
		{"number without entry or group", "4000123", "", "set the group"},
		{"empty", "", "", "no user to run as"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := runChild(t, tt.user, tt.group)
			if !strings.Contains(r.Err, tt.want) {
				t.Errorf("Drop(%q, %q) = %q, want an error containing %q", tt.user, tt.group, r.Err, tt.want)
			}
			if r.UID != 0 || r.EUID != 0 {
				t.Errorf("failed Drop changed uid to %d/%d", r.UID, r.EUID)
			}
		})
	}
}

func TestResolve(t *testing.T) {
	tests := []struct {
		name, user, group string
		want              Creds
		wantErr           string
	}{
		{"root by name", "root", "", Creds{UID: 0, GID: 0, User: "root", Group: "0"}, ""},
		{"numeric", "4000123", "4000124", Creds{UID: 4000123, GID: 4000124, User: "4000123", Group: "4000124"}, ""},
		{"unknown", "no-such-user-popbox", "", Creds{}, `user "no-such-user-popbox"`},
		{"negative", "-1", "0", Creds{}, `user "-1"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Resolve(tt.user, tt.group)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("Resolve(%q, %q) error %v, want one containing %q", tt.user, tt.group, err, tt.wantErr)
				}
				return
			}
			want := tt.want
			want.Groups = memberships(t, tt.user)
			if err != nil || !slices.Equal(got.Groups, want.Groups) || got.UID != want.UID || got.GID != want.GID ||
				got.User != want.User || got.Group != want.Group {
				t.Errorf("Resolve(%q, %q) = %+v, %v; want %+v", tt.user, tt.group, got, err, want)
			}
		})
	}
}

// memberships is the user's groups in the group database, none for an id
// without an entry.
func memberships(t *testing.T, name string) []int {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		if u, err = user.LookupId(name); err != nil {
			return nil
		}
	}
	ids, err := u.GroupIds()
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, s := range ids {
		g, _ := strconv.Atoi(s)
		out = append(out, g)
	}
	return out
}
