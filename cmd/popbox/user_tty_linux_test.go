package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

// openPTY returns the two ends of a new pseudo-terminal, or skips the test
// where there is none.
func openPTY(t *testing.T) (master, tty *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Skipf("no pseudo-terminal: TIOCGPTN: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Skipf("no pseudo-terminal: TIOCSPTLCK: %v", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return m, s
}

// waitOutput waits until l holds want, or the process exits, or timeout.
func waitOutput(l *lineLog, exited <-chan struct{}, want string, timeout time.Duration) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		_, _, changed := l.snapshot()
		if strings.Contains(l.String(), want) {
			return true
		}
		select {
		case <-changed:
		case <-exited:
			return strings.Contains(l.String(), want)
		case <-deadline.C:
			return false
		}
	}
}

// TestUserPasswordOnTerminal runs user add and passwd with standard input
// on a terminal: the password is asked for twice, without echo, unless
// --password-stdin says to read a line.
func TestUserPasswordOnTerminal(t *testing.T) {
	t.Parallel()
	type exchange struct{ prompt, answer string } // prompt "" answers at once
	tests := []struct {
		name       string
		args       []string
		dialog     []exchange
		wantCode   int
		wantStdout string
		wantStderr string // exact
		wantPW     string // alice's password afterwards
	}{
		{
			name:       "add, prompted twice",
			args:       []string{"add", "alice"},
			dialog:     []exchange{{"Password: ", "tty-pw\n"}, {"Again: ", "tty-pw\n"}},
			wantStdout: "user alice added\n",
			wantStderr: "Password: \nAgain: \n",
			wantPW:     "tty-pw",
		},
		{
			name:       "add, the two differ",
			args:       []string{"add", "alice"},
			dialog:     []exchange{{"Password: ", "tty-pw\n"}, {"Again: ", "typo-pw\n"}},
			wantCode:   exitUsage,
			wantStderr: "Password: \nAgain: \npopbox: passwords do not match\n",
		},
		{
			name:       "add with --password-stdin reads a line",
			args:       []string{"add", "alice", "--password-stdin"},
			dialog:     []exchange{{"", "line-pw\n"}},
			wantStdout: "user alice added\n",
			wantPW:     "line-pw",
		},
		{
			name:       "passwd, prompted twice",
			args:       []string{"passwd", "bob"},
			dialog:     []exchange{{"Password: ", "new-pw\n"}, {"Again: ", "new-pw\n"}},
			wantStdout: "password of bob changed\n",
			wantStderr: "Password: \nAgain: \n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			data := t.TempDir()
			addUser(t, data, "bob", "bob-pw")
			master, tty := openPTY(t)

			ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
			defer cancel()
			cmd := exec.CommandContext(ctx, popboxBin, append([]string{"user", "--data", data}, tt.args...)...)
			stdout, stderr := newLineLog(), newLineLog()
			cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, stdout, stderr
			cmd.Env = childEnv()
			cmd.WaitDelay = time.Second
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan struct{})
			var waitErr error
			go func() { waitErr = cmd.Wait(); close(exited) }()
			defer func() { cancel(); <-exited }()

			screenc := make(chan []byte, 1)
			go func() {
				var screen []byte
				buf := make([]byte, 4096)
				for {
					n, err := master.Read(buf)
					screen = append(screen, buf[:n]...)
					if err != nil {
						screenc <- screen
						return
					}
				}
			}()
			for _, x := range tt.dialog {
				if x.prompt != "" && !waitOutput(stderr, exited, x.prompt, ioTimeout) {
					t.Fatalf("no prompt %q; stderr %q", x.prompt, stderr)
				}
				// Type only once popbox has turned echo off, as a person
				// would be slower to do than popbox.
				for deadline := time.Now().Add(ioTimeout); x.prompt != ""; time.Sleep(time.Millisecond) {
					tio, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
					if err != nil {
						t.Fatal(err)
					}
					if tio.Lflag&unix.ECHO == 0 {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("echo still on %v after the prompt %q", ioTimeout, x.prompt)
					}
				}
				if _, err := master.WriteString(x.answer); err != nil {
					t.Fatal(err)
				}
			}
			select {
			case <-exited:
			case <-time.After(cmdTimeout):
				t.Fatalf("popbox user %s did not exit; stderr %q", strings.Join(tt.args, " "), stderr)
			}
			code := 0
			if waitErr != nil {
				ee, ok := waitErr.(*exec.ExitError)
				if !ok {
					t.Fatal(waitErr)
				}
				code = ee.ExitCode()
			}
			// What the terminal showed: a prompted password is not echoed.
			// With the child gone and our end of the terminal closed, reading
			// the master side returns what is left, then EIO.
			tty.Close()
			select {
			case screen := <-screenc:
				for _, x := range tt.dialog {
					echoed := strings.Contains(string(screen), strings.TrimSpace(x.answer))
					switch {
					case x.prompt != "" && echoed:
						t.Errorf("the password was echoed on the terminal: %q", screen)
					case x.prompt == "" && !echoed:
						// A line read as is shows, as anything typed does:
						// otherwise this check could not see an echo.
						t.Errorf("the terminal did not echo %q: %q", x.answer, screen)
					}
				}
			case <-time.After(ioTimeout):
				t.Errorf("reading the terminal did not end within %v", ioTimeout)
			}
			got := result{code, stdout.String(), stderr.String()}
			if diff := cmp.Diff(result{tt.wantCode, tt.wantStdout, tt.wantStderr}, got); diff != "" {
				t.Errorf("popbox user %s on a terminal (-want +got):\n%s", strings.Join(tt.args, " "), diff)
			}
			switch {
			case tt.wantPW != "":
				checkPasswords(t, data, map[string]string{"alice": tt.wantPW}, nil)
			case tt.args[0] == "passwd":
				checkPasswords(t, data, map[string]string{"bob": "new-pw"}, map[string]string{"bob": "bob-pw"})
			default:
				if r := runCLI(t, "", "user", "list", "--data", data); strings.Contains(r.Stdout, "alice") {
					t.Errorf("alice was created:\n%s", r.Stdout)
				}
			}
		})
	}
}
