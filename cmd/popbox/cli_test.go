package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/cobra"
)

// commandPaths lists the argument paths of c and every command below it,
// c's own as prefix.
func commandPaths(c *cobra.Command, prefix []string) [][]string {
	paths := [][]string{prefix}
	for _, sub := range c.Commands() {
		path := append(prefix[:len(prefix):len(prefix)], sub.Name())
		paths = append(paths, commandPaths(sub, path)...)
	}
	return paths
}

// TestHelpEveryCommand walks the command tree, including cobra's own help
// and completion commands: `popbox PATH --help`, `-h` and `popbox help
// PATH` all exit 0 and print the command's usage line on stdout, nothing
// on stderr.
func TestHelpEveryCommand(t *testing.T) {
	t.Parallel()
	root := newRoot()
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	paths := commandPaths(root, nil)
	for _, want := range []string{"serve", "user add", "user passwd", "user del", "user list", "deliver", "version", "help"} {
		found := false
		for _, p := range paths {
			found = found || strings.Join(p, " ") == want
		}
		if !found {
			t.Errorf("no command %q in the tree", want)
		}
	}
	for _, path := range paths {
		name := strings.Join(path, " ")
		if name == "" {
			name = "popbox"
		}
		c, _, err := root.Find(path)
		if err != nil {
			t.Fatal(err)
		}
		// The Use line (after the parents' names) for a command that runs,
		// the "[command]" line for one that only groups others.
		wantLine := c.Use
		if c.HasParent() {
			wantLine = c.Parent().CommandPath() + " " + c.Use
		}
		if !c.Runnable() {
			wantLine = c.CommandPath() + " [command]"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var first string
			for i, args := range [][]string{
				append(append([]string{}, path...), "--help"),
				append(append([]string{}, path...), "-h"),
				append([]string{"help"}, path...),
			} {
				r := runCLI(t, "", args...)
				if r.Code != 0 || r.Stderr != "" {
					t.Errorf("popbox %s: exit %d, stderr %q; want 0 and nothing", strings.Join(args, " "), r.Code, r.Stderr)
				}
				if !strings.Contains(r.Stdout, "Usage:\n  "+wantLine) {
					t.Errorf("popbox %s does not show the usage line %q:\n%s", strings.Join(args, " "), wantLine, r.Stdout)
				}
				if i == 0 {
					first = r.Stdout
				} else if diff := cmp.Diff(first, r.Stdout); diff != "" {
					t.Errorf("popbox %s differs from --help (-want +got):\n%s", strings.Join(args, " "), diff)
				}
			}
		})
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	r := runCLI(t, "", "version")
	if diff := cmp.Diff(result{0, "popbox " + version() + "\n", ""}, r); diff != "" {
		t.Errorf("popbox version in process (-want +got):\n%s", diff)
	}
	r = runBin(t, binOpts{}, "version")
	if r.Code != 0 || r.Stderr != "" || !regexp.MustCompile(`^popbox \S+\n$`).MatchString(r.Stdout) {
		t.Errorf("popbox version: exit %d, stdout %q, stderr %q; want 0, \"popbox VERSION\\n\", nothing", r.Code, r.Stdout, r.Stderr)
	}
}

// TestUsageErrors: every mistake on the command line exits 64 (EX_USAGE)
// with an explanation on stderr, does nothing, and in particular creates no
// data directory.
func TestUsageErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		args       []string
		wantStderr string
	}{
		{"unknown command", []string{"bogus"}, `unknown command "bogus" for "popbox"`},
		{"unknown user command", []string{"user", "ad", "alice"}, `unknown command "ad" for "popbox user"`},
		{"argument to serve", []string{"serve", "now"}, "accepts 0 arg(s), received 1"},
		{"argument to version", []string{"version", "now"}, "accepts 0 arg(s), received 1"},
		{"user add without name", []string{"user", "add"}, "accepts 1 arg(s), received 0"},
		{"user add with two names", []string{"user", "add", "a", "b"}, "accepts 1 arg(s), received 2"},
		{"user passwd without name", []string{"user", "passwd"}, "accepts 1 arg(s), received 0"},
		{"user del without name", []string{"user", "del"}, "accepts 1 arg(s), received 0"},
		{"argument to user list", []string{"user", "list", "alice"}, "accepts 0 arg(s), received 1"},
		{"deliver without user", []string{"deliver"}, "accepts 1 arg(s), received 0"},
		{"deliver to two users", []string{"deliver", "a", "b"}, "accepts 1 arg(s), received 2"},
		{"unknown flag", []string{"user", "list", "--bogus"}, "unknown flag: --bogus"},
		{"unknown flag on serve", []string{"serve", "--bogus"}, "unknown flag: --bogus"},
		{"flag without value", []string{"deliver", "alice", "--data"}, "flag needs an argument: --data"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			data := filepath.Join(t.TempDir(), "data")
			args := tt.args
			if args[len(args)-1] != "--data" {
				args = append(append([]string{}, args...), "--data", data)
			}
			r := runCLI(t, "From: x\n\nx\n", args...)
			if r.Code != exitUsage || r.Stdout != "" || !strings.HasPrefix(r.Stderr, "popbox: ") || !strings.Contains(r.Stderr, tt.wantStderr) {
				t.Errorf("popbox %s: exit %d, stdout %q, stderr %q; want %d, nothing, \"popbox: ...%s...\"",
					strings.Join(args, " "), r.Code, r.Stdout, r.Stderr, exitUsage, tt.wantStderr)
			}
			if _, err := os.Stat(data); !os.IsNotExist(err) {
				t.Errorf("a usage error created the data directory (stat: %v)", err)
			}
		})
	}
}
