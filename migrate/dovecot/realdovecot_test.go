package dovecot

// A private Dovecot for the tests that compare ReadMaildir with what
// Dovecot really serves. internal/dovecottest cannot be used as it is: its
// configuration is fixed (pop3_reuse_xuidl, pop3_uidl_duplicates and
// pop3_uidl_format cannot be set) and it owns the Maildir's creation. This
// is the same approach, trimmed: its own temporary directory, no TLS,
// 127.0.0.1 only, Dovecot in the foreground as the test's child, mail owned
// by dovecottest.MailUser because Dovecot refuses to run mail processes as
// root.

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/popbox/popbox/internal/dovecottest"
)

const (
	testUser     = "test"
	testPassword = "secret"
)

// unavailable fails the test under CI=true and skips it otherwise.
func unavailable(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

func dovecotBinary() (string, bool) {
	if p, err := exec.LookPath("dovecot"); err == nil {
		return p, true
	}
	for _, p := range []string{"/usr/sbin/dovecot", "/usr/local/sbin/dovecot"} {
		if _, err := os.Stat(p); err == nil {
			return p, true
		}
	}
	return "", false
}

// mailbox is a Maildir for testUser that Dovecot instances serve.
type mailbox struct {
	t        *testing.T
	root     string // the mail root: root/test/Maildir
	uid, gid int
	seq      int
}

// newMailbox makes an empty Maildir owned by the mail user. It needs
// Dovecot and root, and skips (fails with CI=true) without them.
func newMailbox(t *testing.T) *mailbox {
	t.Helper()
	if _, ok := dovecotBinary(); !ok {
		unavailable(t, "dovecot is not installed (Debian: apt-get install %s)", dovecottest.Packages)
	}
	if os.Geteuid() != 0 {
		unavailable(t, "the real-Dovecot tests need root: Dovecot must switch to the mail user %s", dovecottest.MailUser)
	}
	uid, gid, err := dovecottest.MailUserIDs()
	if err != nil {
		t.Fatal(err)
	}
	// A short path: Dovecot's sockets live below it and sun_path is short.
	dir, err := os.MkdirTemp("", "dcm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	m := &mailbox{t: t, root: filepath.Join(dir, "mail"), uid: uid, gid: gid}
	for _, sub := range []string{"", testUser, testUser + "/Maildir", testUser + "/Maildir/new", testUser + "/Maildir/cur", testUser + "/Maildir/tmp"} {
		p := filepath.Join(m.root, sub)
		if err := os.MkdirAll(p, 0o700); err != nil {
			t.Fatal(err)
		}
		m.chown(p)
	}
	return m
}

func (m *mailbox) dir() string { return filepath.Join(m.root, testUser, "Maildir") }

func (m *mailbox) chown(p string) {
	m.t.Helper()
	if err := os.Chown(p, m.uid, m.gid); err != nil {
		m.t.Fatal(err)
	}
}

// deliver puts msg into new/ as an MDA does (tmp/, then rename) under name,
// or a generated name when name is "".
func (m *mailbox) deliver(name, msg string) string {
	m.t.Helper()
	m.seq++
	if name == "" {
		name = fmt.Sprintf("%d.M%dP%d.test", 1700000000+m.seq, m.seq, os.Getpid())
	}
	tmp := filepath.Join(m.dir(), "tmp", name)
	if err := os.WriteFile(tmp, []byte(msg), 0o600); err != nil {
		m.t.Fatal(err)
	}
	m.chown(tmp)
	dst := filepath.Join(m.dir(), "new", name)
	if err := os.Rename(tmp, dst); err != nil {
		m.t.Fatal(err)
	}
	return dst
}

// writeFile writes a file below the Maildir owned by the mail user.
func (m *mailbox) writeFile(rel, content string) {
	m.t.Helper()
	p := filepath.Join(m.dir(), rel)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		m.t.Fatal(err)
	}
	m.chown(p)
}

// dovecot is one running instance serving a mailbox.
type dovecot struct {
	addr   string
	dir    string
	cmd    *exec.Cmd
	exited chan struct{}
}

// startDovecot starts Dovecot for mb with extra configuration lines
// (pop3_* settings) and stops it when the test ends.
func startDovecot(t *testing.T, mb *mailbox, extra string) *dovecot {
	t.Helper()
	bin, _ := dovecotBinary()
	dir, err := os.MkdirTemp("", "dci")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"run", "state", "log"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "users.passwd"), []byte(testUser+":{PLAIN}"+testPassword+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		d, err := launch(t, bin, dir, mb, extra)
		if err == nil {
			return d
		}
		lastErr = err
	}
	t.Fatalf("starting dovecot: %v", lastErr)
	return nil
}

func launch(t *testing.T, bin, dir string, mb *mailbox, extra string) (*dovecot, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	conf := fmt.Sprintf(`# Written by popbox migrate/dovecot tests.
instance_name = popboxmig-%[1]s
base_dir = %[2]s/run
state_dir = %[2]s/state
log_path = %[2]s/log/dovecot.log
protocols = pop3
listen = 127.0.0.1
shutdown_clients = yes
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%%u %[2]s/users.passwd
}
userdb {
  driver = static
  args = uid=%[3]d gid=%[4]d home=%[5]s/%%u
}
first_valid_uid = %[3]d
first_valid_gid = %[4]d
mail_location = maildir:%[5]s/%%u/Maildir
service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = %[6]d
  }
}
%[7]s
`, filepath.Base(dir), dir, mb.uid, mb.gid, mb.root, port, extra)
	confPath := filepath.Join(dir, "dovecot.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	d := &dovecot{addr: "127.0.0.1:" + strconv.Itoa(port), dir: dir, exited: make(chan struct{})}
	out, err := os.Create(filepath.Join(dir, "log", "stdout.log"))
	if err != nil {
		return nil, err
	}
	defer out.Close()
	d.cmd = exec.Command(bin, "-F", "-c", confPath)
	d.cmd.Stdout, d.cmd.Stderr = out, out
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		d.cmd.Wait()
		close(d.exited)
	}()
	for deadline := time.Now().Add(20 * time.Second); ; {
		select {
		case <-d.exited:
			return nil, fmt.Errorf("dovecot exited at start:\n%s\n%s", d.log(), readTail(out.Name()))
		default:
		}
		if c, err := net.DialTimeout("tcp", d.addr, time.Second); err == nil {
			c.Close()
			t.Cleanup(d.stop)
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("dovecot log:\n%s", d.log())
				}
			})
			return d, nil
		}
		if time.Now().After(deadline) {
			d.stop()
			return nil, fmt.Errorf("dovecot did not listen on %s:\n%s", d.addr, d.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop ends the instance: SIGTERM to the master, SIGKILL to its process
// group if it lingers.
func (d *dovecot) stop() {
	if d.cmd == nil || d.cmd.Process == nil {
		return
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(10 * time.Second):
		syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
		<-d.exited
	}
}

func (d *dovecot) log() string { return readTail(filepath.Join(d.dir, "log", "dovecot.log")) }

func readTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	if len(b) > 8000 {
		b = b[len(b)-8000:]
	}
	return string(b)
}

// listing is what Dovecot's UIDL and LIST answered, by message number.
type listing struct {
	uidls []string
	sizes []int64
}

// list logs in, takes UIDL and LIST, and quits (deleting nothing). Lines are
// split at CRLF only, so that a UIDL containing a bare LF (a folded X-UIDL
// header, which Dovecot sends as is) stays one entry. Every read is bounded.
func (d *dovecot) list(t *testing.T) listing {
	t.Helper()
	c, err := net.DialTimeout("tcp", d.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	r := bufio.NewReaderSize(c, 4096)
	readLine := func() string {
		t.Helper()
		var b []byte
		for {
			chunk, err := r.ReadSlice('\n')
			b = append(b, chunk...)
			if len(b) > 8192 {
				t.Fatalf("line longer than 8 KiB: %.80q", b)
			}
			if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
				t.Fatalf("reading from dovecot: %v (after %q)", err, b)
			}
			if err == nil && len(b) >= 2 && b[len(b)-2] == '\r' {
				return string(b[:len(b)-2])
			}
		}
	}
	cmd := func(line string) string {
		t.Helper()
		if _, err := c.Write([]byte(line + "\r\n")); err != nil {
			t.Fatal(err)
		}
		reply := readLine()
		if !strings.HasPrefix(reply, "+OK") {
			t.Fatalf("%s: %q", line, reply)
		}
		return reply
	}
	multi := func() []string {
		t.Helper()
		var lines []string
		for l := readLine(); l != "."; l = readLine() {
			if len(lines) == 10000 {
				t.Fatal("listing longer than 10000 lines")
			}
			lines = append(lines, l)
		}
		return lines
	}
	if g := readLine(); !strings.HasPrefix(g, "+OK") {
		t.Fatalf("greeting %q", g)
	}
	cmd("USER " + testUser)
	cmd("PASS " + testPassword)
	var l listing
	cmd("UIDL")
	for i, line := range multi() {
		n, uidl, ok := strings.Cut(line, " ")
		if !ok || n != strconv.Itoa(i+1) {
			t.Fatalf("UIDL line %q", line)
		}
		l.uidls = append(l.uidls, uidl)
	}
	cmd("LIST")
	for i, line := range multi() {
		n, size, ok := strings.Cut(line, " ")
		s, err := strconv.ParseInt(size, 10, 64)
		if !ok || n != strconv.Itoa(i+1) || err != nil {
			t.Fatalf("LIST line %q", line)
		}
		l.sizes = append(l.sizes, s)
	}
	cmd("QUIT")
	return l
}
