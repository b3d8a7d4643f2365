package interop

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A client run normally takes about a second, and under ten on a loaded
// machine. The scripts kill their client after scriptTimeout (curl, for
// one, waits forever on broken framing); clientTimeout is the backstop for
// the script itself.
const (
	scriptTimeout = 45 * time.Second
	clientTimeout = scriptTimeout + 15*time.Second
)

// scriptSkip is the exit status of a client script for a TLS mode its
// client cannot do.
const scriptSkip = 77

// tool is a command a client script needs and the Debian package that has it.
type tool struct{ command, pkg string }

// TestClients fetches one mailbox holding all the test mail with every
// client in every TLS mode. The scripts never delete, so one mailbox serves
// all of them, and each compares what its client stored with the manifest.
func TestClients(t *testing.T) {
	srv := startServer(t)
	const user, password = "interop", "Interop-pw-1939"
	srv.addUser(t, user, password)
	msgs := testMessages()
	for _, m := range msgs {
		srv.deliver(t, user, m)
	}

	python3 := tool{"python3", "python3"} // runs maildigest.py, which every script uses
	clients := []struct {
		name   string
		tools  []tool
		noSTLS bool                // getmail6 has none for POP3; its script exits 77
		stored func([]byte) []byte // how the client is known to alter a message
	}{
		{name: "curl", tools: []tool{{"curl", "curl"}, python3}},
		{name: "poplib", tools: []tool{python3}},
		{name: "fetchmail", tools: []tool{{"fetchmail", "fetchmail"}, python3}, stored: withBodySeparator},
		{name: "mpop", tools: []tool{{"mpop", "mpop"}, python3}},
		{name: "getmail", tools: []tool{{"getmail", "getmail6"}, python3}, noSTLS: true,
			stored: withBodySeparator},
	}
	for _, c := range clients {
		manifest := filepath.Join(t.TempDir(), c.name+".manifest")
		if err := writeManifest(manifest, msgs, c.stored); err != nil {
			t.Fatal(err)
		}
		for _, mode := range []string{"none", "stls", "pop3s"} {
			t.Run(c.name+"/"+mode, func(t *testing.T) {
				for _, tl := range c.tools {
					requireTool(t, tl)
				}
				addr := srv.plain
				if mode == "pop3s" {
					addr = srv.tls
				}
				out, code := runClient(t, c.name, "--host", "127.0.0.1", "--port", portOf(t, addr),
					"--user", user, "--pass", password, "--tls", mode,
					"--cafile", srv.cafile, "--expect", manifest,
					"--timeout", strconv.Itoa(int(scriptTimeout.Seconds())))
				switch {
				case c.noSTLS && mode == "stls" && code == scriptSkip:
					t.Skipf("%s cannot do POP3 STLS (expected): %s", c.name, lastLine(out))
				case code != 0:
					t.Fatalf("%s --tls %s: exit %d; output:\n%s", c.name, mode, code, out)
				case c.noSTLS && mode == "stls":
					t.Fatalf("%s --tls stls passed, but the client has no STLS: the script is wrong\n%s", c.name, out)
				}
				t.Log(lastLine(out))
			})
		}
	}
}

// requireTool skips the test when a client is not installed, but fails it
// under CI, which must install every client.
func requireTool(t *testing.T, tl tool) {
	t.Helper()
	if _, err := exec.LookPath(tl.command); err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is not installed (Debian package %s); CI must install it", tl.command, tl.pkg)
	}
	t.Skipf("%s is not installed (Debian package %s)", tl.command, tl.pkg)
}

// runClient runs testdata/NAME.sh and returns its combined output and exit
// status. The script's work directories go in a directory of the test's own,
// which is open to traversal because getmail, run as root, delivers as
// nobody.
func runClient(t *testing.T, name string, args ...string) (string, int) {
	t.Helper()
	script, err := filepath.Abs(filepath.Join("testdata", name+".sh"))
	if err != nil {
		t.Fatal(err)
	}
	work, err := os.MkdirTemp("", "popbox-interop-"+name+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(work) })
	if err := os.Chmod(work, 0o711); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(t.Context(), clientTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", append([]string{script}, args...)...)
	cmd.Env = append(os.Environ(), "TMPDIR="+work)
	// Kill the whole process group on timeout: the script's children
	// (timeout, the client, its MDA) would otherwise outlive it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("%s: no exit within %v; output so far:\n%s", name, clientTimeout, out)
	case errors.As(err, &exit):
		return string(out), exit.ExitCode()
	case err != nil:
		t.Fatalf("%s: %v", name, err)
	}
	return string(out), 0
}

func portOf(t *testing.T, addr string) string {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// lastLine is a script's verdict, e.g. "PASS client=curl tls=none MATCH count=56 ...".
func lastLine(out string) string {
	out = strings.TrimRight(out, "\n")
	return out[strings.LastIndexByte(out, '\n')+1:]
}
