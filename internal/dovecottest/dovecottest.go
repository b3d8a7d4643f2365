// Package dovecottest starts a private Dovecot POP3 server for tests: the
// reference implementation popbox's fetcher is checked against.
//
// Implementation notes:
//
//   - Everything is private to the test: the configuration, run, state and
//     log directories and the passwd-file live in a temporary directory;
//     /etc/dovecot is never read (dovecot -c). Dovecot runs in the
//     foreground (-F) as a child of the test, so it is stopped by its PID
//     and cannot outlive the test by more than the cleanup.
//   - Listeners bind 127.0.0.1 on ports chosen by asking the kernel for a
//     free one and closing it; Start retries with new ports if Dovecot then
//     fails to bind (another process took the port in between).
//   - Dovecot refuses to run mail processes as uid 0, so mail belongs to a
//     system user, MailUser ("popboxtest"), created with useradd when
//     missing, as the harness does with pop3h. That is why Start needs
//     root; without root it skips (or fails with CI=true).
//   - The certificate is self-signed (ECDSA P-256, CN=localhost, SAN
//     localhost and 127.0.0.1), made in Go, so openssl is not needed.
//   - Messages are placed with a Maildir writer: a file in tmp/, renamed
//     into new/, owned by MailUser, exactly as an MDA delivers.
//   - The configuration is adapted from the harness's dovecot/dovecot.conf
//     (/work/shared/harness), trimmed to what one test needs.
//   - With CI=true a missing dovecot binary is a test failure naming the
//     Debian packages (dovecot-core, dovecot-pop3d); otherwise the test is
//     skipped.
package dovecottest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/popbox/popbox/internal/testcert"
)

// MailUser is the system user that owns the test mail.
const MailUser = "popboxtest"

// Packages are the Debian packages that provide Dovecot's POP3 server.
const Packages = "dovecot-core dovecot-pop3d"

const (
	startTimeout = 20 * time.Second
	stopTimeout  = 10 * time.Second
)

// Options configure the instance. The zero value gives one user "test"
// with password "secret", SASL PLAIN and LOGIN, and plaintext logins
// allowed (so tests can use tls = "none").
type Options struct {
	// Users maps user names to passwords.
	Users map[string]string
	// AuthMechanisms is Dovecot's auth_mechanisms ("plain login" when
	// empty); "plain login scram-sha-256" adds SCRAM.
	AuthMechanisms string
	// DisablePlaintextAuth refuses passwords before TLS (Dovecot's
	// disable_plaintext_auth); loopback counts as secure to Dovecot
	// unless this is set.
	DisablePlaintextAuth bool
	// NoSTLS turns TLS off on the plain port, so CAPA lacks STLS. The POP3S
	// port is then not started either.
	NoSTLS bool
}

// Dovecot is a running instance.
type Dovecot struct {
	// POP3Addr is plain POP3 (with STLS unless NoSTLS); POP3SAddr is
	// implicit TLS ("" with NoSTLS).
	POP3Addr, POP3SAddr string
	// CertFile is the server certificate (PEM), to use as a CA file.
	CertFile string
	// Fingerprint is the SHA-256 of the certificate, upper-case hex pairs
	// joined by colons.
	Fingerprint string
	// MailRoot holds USER/Maildir.
	MailRoot string
	// Dir is the instance directory (configuration, logs).
	Dir string

	uid, gid int
	cmd      *exec.Cmd
	exited   chan struct{}
	seq      atomic.Int64
}

// binary finds dovecot, also in /usr/sbin, which a test's PATH may lack.
func binary() (string, bool) {
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

// unavailable fails the test under CI and skips it otherwise.
func unavailable(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// Start starts Dovecot and stops it when the test ends.
func Start(t *testing.T, o Options) *Dovecot {
	t.Helper()
	bin, ok := binary()
	if !ok {
		unavailable(t, "dovecot is not installed (Debian: apt-get install %s)", Packages)
	}
	if os.Geteuid() != 0 {
		unavailable(t, "dovecottest needs root: Dovecot must switch to the mail user %s", MailUser)
	}
	if len(o.Users) == 0 {
		o.Users = map[string]string{"test": "secret"}
	}
	if o.AuthMechanisms == "" {
		o.AuthMechanisms = "plain login"
	}
	uid, gid, err := MailUserIDs()
	if err != nil {
		t.Fatalf("dovecottest: %v", err)
	}
	// A short path of its own: Dovecot's unix sockets live under base_dir
	// and sun_path holds only 108 bytes, more than t.TempDir() may leave.
	dir, err := os.MkdirTemp("", "dct")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// Dovecot's unprivileged processes (dovenull, the mail user) must be
	// able to reach what is theirs below it.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	d := &Dovecot{Dir: dir, MailRoot: filepath.Join(dir, "mail"), uid: uid, gid: gid}
	for _, sub := range []string{"run", "state", "log", "ssl", "mail"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(d.MailRoot, uid, gid); err != nil {
		t.Fatal(err)
	}
	if err := d.writeCert(); err != nil {
		t.Fatalf("dovecottest: certificate: %v", err)
	}
	var passwd strings.Builder
	names := make([]string, 0, len(o.Users))
	for u := range o.Users {
		names = append(names, u)
	}
	sort.Strings(names)
	for _, u := range names {
		fmt.Fprintf(&passwd, "%s:{PLAIN}%s\n", u, o.Users[u])
		if err := d.makeMaildir(u); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "users.passwd"), []byte(passwd.String()), 0o644); err != nil {
		t.Fatal(err)
	}

	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		if lastErr = d.start(t, bin, o); lastErr == nil {
			return d
		}
	}
	t.Fatalf("dovecottest: %v", lastErr)
	return nil
}

// MailUserIDs returns the uid and gid of MailUser, creating the system
// user if needed, for tests that run their own Dovecot configuration.
func MailUserIDs() (int, int, error) {
	u, err := user.Lookup(MailUser)
	if err != nil {
		var unknown user.UnknownUserError
		if !errors.As(err, &unknown) {
			return 0, 0, fmt.Errorf("looking up %s: %w", MailUser, err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, "useradd", "--system", "--no-create-home",
			"--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", MailUser).CombinedOutput()
		// Another test process may have created it meanwhile (exit 9:
		// the user exists).
		if err != nil && !strings.Contains(string(out), "already exists") {
			return 0, 0, fmt.Errorf("useradd %s: %v: %s", MailUser, err, out)
		}
		if u, err = user.Lookup(MailUser); err != nil {
			return 0, 0, fmt.Errorf("looking up %s after useradd: %w", MailUser, err)
		}
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err := errors.Join(err1, err2); err != nil {
		return 0, 0, fmt.Errorf("user %s: %w", MailUser, err)
	}
	return uid, gid, nil
}

func (d *Dovecot) writeCert() error {
	p, err := testcert.New("popbox dovecottest")
	if err != nil {
		return err
	}
	d.CertFile = filepath.Join(d.Dir, "ssl", "cert.pem")
	if err := os.WriteFile(d.CertFile, p.CertPEM, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(d.Dir, "ssl", "key.pem"), p.KeyPEM, 0o600); err != nil {
		return err
	}
	d.Fingerprint = p.Fingerprint
	return nil
}

// freePort asks the kernel for a free loopback port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (d *Dovecot) start(t *testing.T, bin string, o Options) error {
	p1, err := freePort()
	if err != nil {
		return err
	}
	p2, err := freePort()
	if err != nil {
		return err
	}
	d.POP3Addr = "127.0.0.1:" + strconv.Itoa(p1)
	d.POP3SAddr = ""
	if !o.NoSTLS {
		d.POP3SAddr = "127.0.0.1:" + strconv.Itoa(p2)
	}
	conf := filepath.Join(d.Dir, "dovecot.conf")
	if err := os.WriteFile(conf, []byte(d.config(p1, p2, o)), 0o644); err != nil {
		return err
	}
	logFile := filepath.Join(d.Dir, "log", "dovecot.log")
	d.cmd = exec.Command(bin, "-F", "-c", conf)
	out, err := os.Create(filepath.Join(d.Dir, "log", "stdout.log"))
	if err != nil {
		return err
	}
	defer out.Close()
	d.cmd.Stdout, d.cmd.Stderr = out, out
	// Its own process group, so that stopping it reaches every child.
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", bin, err)
	}
	d.exited = make(chan struct{})
	go func() {
		d.cmd.Wait()
		close(d.exited)
	}()
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-d.exited:
			return fmt.Errorf("dovecot exited at start:\n%s\n%s", readTail(logFile), readTail(out.Name()))
		default:
		}
		if d.listening() {
			t.Cleanup(d.stop)
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("dovecot log (%s):\n%s", logFile, readTail(logFile))
				}
			})
			return nil
		}
		if time.Now().After(deadline) {
			d.stop()
			return fmt.Errorf("dovecot did not listen on %s within %v:\n%s", d.POP3Addr, startTimeout, readTail(logFile))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// listening reports whether both listeners answer.
func (d *Dovecot) listening() bool {
	for _, a := range []string{d.POP3Addr, d.POP3SAddr} {
		if a == "" {
			continue
		}
		c, err := net.DialTimeout("tcp", a, time.Second)
		if err != nil {
			return false
		}
		c.Close()
	}
	return true
}

// stop sends SIGTERM to the master (which ends its children) and waits,
// then kills the whole process group if it is still there.
func (d *Dovecot) stop() {
	if d.cmd == nil || d.cmd.Process == nil {
		return
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(stopTimeout):
		syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
		<-d.exited
	}
}

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

func (d *Dovecot) config(pop3Port, pop3sPort int, o Options) string {
	ssl := "yes"
	if o.NoSTLS {
		ssl = "no"
	}
	var b strings.Builder
	fmt.Fprintf(&b, `# Written by popbox internal/dovecottest; adapted from the harness's dovecot.conf.
instance_name = popboxtest-%[1]s
base_dir = %[2]s/run
state_dir = %[2]s/state
log_path = %[2]s/log/dovecot.log
info_log_path = %[2]s/log/dovecot-info.log
debug_log_path = %[2]s/log/dovecot-debug.log
protocols = pop3
listen = 127.0.0.1
shutdown_clients = yes

disable_plaintext_auth = %[3]s
auth_mechanisms = %[4]s
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%%u %[2]s/users.passwd
}
userdb {
  driver = static
  args = uid=%[5]d gid=%[6]d home=%[7]s/%%u
}
first_valid_uid = %[5]d
first_valid_gid = %[6]d

ssl = %[8]s
ssl_cert = <%[2]s/ssl/cert.pem
ssl_key = <%[2]s/ssl/key.pem
ssl_min_protocol = TLSv1.2

mail_location = maildir:%[7]s/%%u/Maildir
pop3_uidl_format = %%08Xu%%08Xv

default_process_limit = 50
default_client_limit = 200
default_vsz_limit = 256M

service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = %[9]d
  }
  inet_listener pop3s {
    address = 127.0.0.1
    port = %[10]d
    ssl = yes
  }
}
`, filepath.Base(d.Dir), d.Dir, yesNo(o.DisablePlaintextAuth), o.AuthMechanisms, d.uid, d.gid, d.MailRoot, ssl, pop3Port, pop3sPortOrZero(pop3sPort, o))
	if _, err := os.Stat("/usr/share/dovecot/dh.pem"); err == nil && !o.NoSTLS {
		b.WriteString("ssl_dh = </usr/share/dovecot/dh.pem\n")
	}
	return b.String()
}

func pop3sPortOrZero(p int, o Options) int {
	if o.NoSTLS {
		return 0 // port 0 disables a Dovecot inet_listener
	}
	return p
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// Maildir is the Maildir of user.
func (d *Dovecot) Maildir(user string) string {
	return filepath.Join(d.MailRoot, user, "Maildir")
}

func (d *Dovecot) makeMaildir(user string) error {
	for _, p := range []string{filepath.Join(d.MailRoot, user), d.Maildir(user)} {
		if err := os.MkdirAll(p, 0o700); err != nil {
			return err
		}
		if err := os.Chown(p, d.uid, d.gid); err != nil {
			return err
		}
	}
	for _, sub := range []string{"new", "cur", "tmp"} {
		p := filepath.Join(d.Maildir(user), sub)
		if err := os.MkdirAll(p, 0o700); err != nil {
			return err
		}
		if err := os.Chown(p, d.uid, d.gid); err != nil {
			return err
		}
	}
	return nil
}

// AddMessage delivers msg into user's Maildir as an MDA does: written in
// tmp/, renamed into new/, owned by the mail user. Messages added in one
// test keep their order (Dovecot numbers new/ by file name).
func (d *Dovecot) AddMessage(t testing.TB, user string, msg []byte) {
	t.Helper()
	if err := d.makeMaildir(user); err != nil {
		t.Fatal(err)
	}
	n := d.seq.Add(1)
	name := fmt.Sprintf("%d.M%06dP%d.dovecottest", time.Now().Unix(), n, os.Getpid())
	tmp := filepath.Join(d.Maildir(user), "tmp", name)
	if err := os.WriteFile(tmp, msg, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(tmp, d.uid, d.gid); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(d.Maildir(user), "new", name)); err != nil {
		t.Fatal(err)
	}
}

// Messages returns the contents of user's messages (new/ and cur/), in no
// particular order.
func (d *Dovecot) Messages(t testing.TB, user string) [][]byte {
	t.Helper()
	var msgs [][]byte
	for _, sub := range []string{"new", "cur"} {
		dir := filepath.Join(d.Maildir(user), sub)
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			msgs = append(msgs, b)
		}
	}
	return msgs
}
