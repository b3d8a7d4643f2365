//go:build linux

package interop

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/popbox/popbox/internal/dovecottest"
)

// TestDovecotImportChain is a migration from Dovecot to popbox with the
// real binaries at both ends, as the project's issue asks: a private
// Dovecot (Debian dovecot-pop3d; its own configuration, state and
// passwd-file, 127.0.0.1 only) serves a Maildir of varied mail to a POP3
// client twice, with mail arriving in between; then Dovecot is stopped,
// `popbox user import passwd-file` takes its users and
// `popbox import maildir` its mail, and popbox serve must offer the same
// UIDLs in the same order and the same octets, so that no client
// downloads anything again. The users log in to popbox with their Dovecot
// passwords.
//
// LIST may differ in exactly one way, asserted as such: for a message
// whose file does not end in a newline Dovecot's LIST is 2 less than what
// its RETR sends (it does not count the CRLF it adds), while popbox's LIST
// is exactly what RETR sends.
//
// Run for Dovecot's default pop3_uidl_format and for pop3_reuse_xuidl =
// yes (imported with --reuse-xuidl). The Dovecot plumbing follows
// migrate/dovecot/realdovecot_test.go (internal/dovecottest has a fixed
// configuration with {PLAIN} passwords): mail belongs to
// dovecottest.MailUser, because Dovecot refuses to run mail processes as
// root, so the test needs root.
func TestDovecotImportChain(t *testing.T) {
	for _, v := range []struct {
		name   string
		config string   // extra dovecot.conf lines
		flags  []string // the matching flags of popbox import maildir
	}{
		{name: "default-uidl-format"},
		{name: "reuse-xuidl", config: "pop3_reuse_xuidl = yes", flags: []string{"--reuse-xuidl"}},
	} {
		t.Run(v.name, func(t *testing.T) { testDovecotImportChain(t, v.config, v.flags) })
	}
}

// The Dovecot users: Dovecot's passwd-file keeps crypt hashes made by
// doveadm pw, which popbox imports as they are.
var chainUsers = []struct{ name, password, scheme string }{
	{"alice", "Alice-dove-2033", "SHA512-CRYPT"},
	{"bob", "Bob-dove-1939", "BLF-CRYPT"},
}

const chainSeqHeader = "X-Chain-Seq"

// chainMessage is one test mail, numbered by its X-Chain-Seq header.
type chainMessage struct {
	name string
	data []byte
	dir  string // "new", or "cur" for mail another client has read (":2,S")
}

// chainSeqOf returns a message's X-Chain-Seq, or -1.
func chainSeqOf(data []byte) int {
	m := regexp.MustCompile(`(?m)^` + chainSeqHeader + `: (\d+)\r?$`).FindSubmatch(data)
	if m == nil {
		return -1
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// chainMessages are the mail Dovecot finds at its first login (first
// ones) and the mail delivered after it (the rest).
func chainMessages() (first, later []chainMessage) {
	r := rand.New(rand.NewPCG(1939, 2033))
	text := func(n int, eol string) string {
		const letters = "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789.,"
		var b strings.Builder
		for line := 0; b.Len() < n; line++ {
			if line%17 == 4 {
				b.WriteString(".")
			}
			for range 10 + r.IntN(60) {
				b.WriteByte(letters[r.IntN(len(letters))])
			}
			b.WriteString(eol)
		}
		return b.String()
	}
	seq := 0
	msg := func(name, dir, head, body string) chainMessage {
		seq++
		eol := "\n"
		if strings.Contains(head, "\r\n") {
			eol = "\r\n"
		}
		data := fmt.Sprintf("%s: %d%sFrom: someone@example.net%sTo: alice@example.org%sSubject: %s%s",
			chainSeqHeader, seq, eol, eol, eol, name, eol) + head + body
		return chainMessage{name: name, data: []byte(data), dir: dir}
	}
	first = []chainMessage{
		msg("plain LF", "new", "\n", "Hello.\n"),
		msg("plain CRLF", "new", "Date: Fri, 27 Nov 2026 12:00:00 +0000\r\n\r\n", "Hello.\r\nSecond line.\r\n"),
		msg("dot lines LF", "new", "\n", ".\n..two\n.three\n...\nend\n.\n"),
		msg("dot lines CRLF", "new", "X-Mailer: test\r\n\r\n", ".\r\n..\r\n.x\r\n.\r\n"),
		msg("no final newline LF", "new", "\n", "first line\nlast line without newline"),
		msg("no final newline CRLF", "new", "X-Eol: crlf\r\n\r\n", "first\r\nlast, no CRLF"),
		msg("ends in a dot, no newline", "new", "\n", "line\n."),
		msg("8-bit UTF-8", "new", "MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n",
			"Grüße, ça va? 日本語 ÆØÅ\n"),
		msg("8-bit Latin-1 CRLF", "new", "Content-Type: text/plain; charset=iso-8859-1\r\n\r\n", "caf\xe9 \xff\xfe na\xefve\r\n"),
		msg("header only", "new", "X-Empty: yes\n", ""),
		msg("empty body", "new", "\n", ""),
		msg("mixed line ends", "new", "X-Eol: mixed\r\n\n", "crlf\r\nlf\ncrlf\r\nlf\n"),
		msg("long line", "new", "\n", strings.Repeat("0123456789", 500)+"\n"),
		msg("big, about 1 MB", "new", "Content-Type: text/plain\n\n", text(1<<20, "\n")),
		msg("X-UIDL plain", "new", "X-UIDL: chain-xuidl-1\n\n", "body\n"),
		msg("X-UIDL CRLF", "new", "X-UIDL: chain-xuidl-2\r\n\r\n", "body\r\n"),
		msg("x-uidl lower-case name", "new", "x-uidl: Chain-Lower-3\n\n", "body\n"),
		// An X-UIDL that looks like popbox's own UIDL format (16
		// upper-case hex digits: uid 5, epoch 1000). It is just a name
		// and must stay one: same UIDL, same place in the order.
		msg("X-UIDL popbox-like", "new", "X-UIDL: 00000005000003E8\n\n", "looks like popbox's own UIDL format\n"),
		msg("X-UIDL in the body only", "new", "\n", "X-UIDL: not-a-header\n"),
		msg("read by IMAP", "cur", "\n", "seen\n"),
		msg("read by IMAP, CRLF", "cur", "X-Eol: crlf\r\n\r\n", "seen\r\n"),
		msg("read, X-UIDL", "cur", "X-UIDL: chain-xuidl-cur\n\n", "seen\n"),
	}
	for len(first) < 30 {
		eol := []string{"\n", "\r\n"}[len(first)%2]
		head := eol
		if len(first)%4 == 0 {
			head = "X-UIDL: chain-filler-" + strconv.Itoa(len(first)) + eol + eol
		}
		first = append(first, msg(fmt.Sprintf("filler %d", len(first)), "new", head, text(500+r.IntN(20000), eol)))
	}
	later = []chainMessage{
		msg("later LF", "new", "\n", "new mail\n"),
		msg("later CRLF, no final newline", "new", "X-Eol: crlf\r\n\r\n", "new mail\r\nno end"),
		msg("later X-UIDL", "new", "X-UIDL: chain-later-xuidl\n\n", "new mail\n"),
		msg("later dots", "new", "\n", ".\n..\n"),
		msg("later 8-bit", "new", "Content-Type: text/plain; charset=utf-8\n\n", "Zürich\n"),
	}
	return first, later
}

// dovecotAvailable skips (fails under CI) without Dovecot, doveadm or
// root.
func dovecotAvailable(t *testing.T) (dovecot, doveadm string) {
	t.Helper()
	find := func(name string) string {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
		for _, dir := range []string{"/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"} {
			if p := filepath.Join(dir, name); fileExists(p) {
				return p
			}
		}
		return ""
	}
	dovecot, doveadm = find("dovecot"), find("doveadm")
	if dovecot == "" || doveadm == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("dovecot or doveadm is not installed (Debian packages %s); CI must install them", dovecottest.Packages)
		}
		t.Skipf("dovecot or doveadm is not installed (Debian packages %s)", dovecottest.Packages)
	}
	requireRoot(t, "a private Dovecot (it must switch to the mail user "+dovecottest.MailUser+")")
	return dovecot, doveadm
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// chainDovecot is a private Dovecot and the mail it serves.
type chainDovecot struct {
	t        *testing.T
	dir      string // configuration, state, logs, passwd-file, mail/
	uid, gid int
	addr     string
	cmd      *exec.Cmd
	exited   chan struct{}
	seq      int
}

func (d *chainDovecot) mailRoot() string { return filepath.Join(d.dir, "mail") }
func (d *chainDovecot) maildir(user string) string {
	return filepath.Join(d.mailRoot(), user, "Maildir")
}
func (d *chainDovecot) passwdFile() string { return filepath.Join(d.dir, "users.passwd") }
func (d *chainDovecot) log() string {
	b, err := os.ReadFile(filepath.Join(d.dir, "log", "dovecot.log"))
	if err != nil {
		return "(" + err.Error() + ")"
	}
	return string(b[max(0, len(b)-16000):])
}

// newChainDovecot prepares the instance directory, the users' Maildirs and
// the passwd-file with hashes from doveadm pw; start starts it.
func newChainDovecot(t *testing.T, doveadm string) *chainDovecot {
	t.Helper()
	uid, gid, err := dovecottest.MailUserIDs()
	if err != nil {
		t.Fatal(err)
	}
	// A short path: Dovecot's sockets live below it and sun_path is short.
	dir, err := os.MkdirTemp("", "dcc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// Dovecot's unprivileged processes must reach what is theirs below it.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	d := &chainDovecot{t: t, dir: dir, uid: uid, gid: gid}
	for _, sub := range []string{"run", "state", "log"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	var passwd strings.Builder
	passwd.WriteString("# Dovecot passwd-file written by popbox's interop tests\n")
	for _, u := range chainUsers {
		for _, sub := range []string{"", "/" + u.name, "/" + u.name + "/Maildir", "/" + u.name + "/Maildir/new",
			"/" + u.name + "/Maildir/cur", "/" + u.name + "/Maildir/tmp"} {
			p := d.mailRoot() + sub
			if err := os.Mkdir(p, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
				t.Fatal(err)
			}
			d.chown(p)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		out, err := exec.CommandContext(ctx, doveadm, "-O", "pw", "-s", u.scheme, "-p", u.password).Output()
		cancel()
		hash := strings.TrimSpace(string(out))
		if err != nil || !strings.HasPrefix(hash, "{"+u.scheme+"}") {
			t.Fatalf("doveadm pw -s %s: %q, %v", u.scheme, hash, err)
		}
		// user:password:uid:gid:gecos:home:shell:extra, as Dovecot's
		// documentation shows it.
		fmt.Fprintf(&passwd, "%s:%s::::::\n", u.name, hash)
	}
	if err := os.WriteFile(d.passwdFile(), []byte(passwd.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return d
}

func (d *chainDovecot) chown(p string) {
	d.t.Helper()
	if err := os.Chown(p, d.uid, d.gid); err != nil {
		d.t.Fatal(err)
	}
}

// put delivers a message as an MDA does (tmp/, then rename), with a name
// in delivery order; mail for cur/ gets the seen flag.
func (d *chainDovecot) put(user string, m chainMessage) {
	d.t.Helper()
	d.seq++
	name := fmt.Sprintf("%d.M%dP%d.chain", 1790000000+d.seq, d.seq, os.Getpid())
	tmp := filepath.Join(d.maildir(user), "tmp", name)
	if err := os.WriteFile(tmp, m.data, 0o600); err != nil {
		d.t.Fatal(err)
	}
	d.chown(tmp)
	dst := filepath.Join(d.maildir(user), "new", name)
	if m.dir == "cur" {
		dst = filepath.Join(d.maildir(user), "cur", name+":2,S")
	}
	if err := os.Rename(tmp, dst); err != nil {
		d.t.Fatal(err)
	}
}

// start starts Dovecot with extra configuration lines, retrying with
// another port if the chosen one was taken meanwhile; it is stopped when
// the test ends, if not before.
func (d *chainDovecot) start(bin, extra string) {
	t := d.t
	t.Helper()
	var lastErr error
	for range 3 {
		if lastErr = d.launch(bin, extra); lastErr == nil {
			t.Cleanup(d.stop)
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("dovecot log:\n%s", d.log())
				}
			})
			return
		}
	}
	t.Fatalf("starting dovecot: %v", lastErr)
}

func (d *chainDovecot) launch(bin, extra string) error {
	port := freePort(d.t)
	conf := fmt.Sprintf(`# Written by popbox internal/interop (TestDovecotImportChain).
instance_name = popboxchain-%[1]s
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
  args = scheme=CRYPT username_format=%%u %[3]s
}
userdb {
  driver = static
  args = uid=%[4]d gid=%[5]d home=%[6]s/%%u
}
first_valid_uid = %[4]d
first_valid_gid = %[5]d
mail_location = maildir:%[6]s/%%u/Maildir
service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = %[7]d
  }
}
%[8]s
`, filepath.Base(d.dir), d.dir, d.passwdFile(), d.uid, d.gid, d.mailRoot(), port, extra)
	confPath := filepath.Join(d.dir, "dovecot.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return err
	}
	out, err := os.Create(filepath.Join(d.dir, "log", "stdout.log"))
	if err != nil {
		return err
	}
	defer out.Close()
	d.addr = "127.0.0.1:" + strconv.Itoa(port)
	d.exited = make(chan struct{})
	d.cmd = exec.Command(bin, "-F", "-c", confPath)
	d.cmd.Stdout, d.cmd.Stderr = out, out
	// Its own process group, so that a kill reaches every child.
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		return err
	}
	go func() {
		d.cmd.Wait()
		close(d.exited)
	}()
	for deadline := time.Now().Add(startTimeout); ; {
		select {
		case <-d.exited:
			stdout, _ := os.ReadFile(out.Name())
			return fmt.Errorf("dovecot exited at start:\n%s\n%s", d.log(), stdout)
		default:
		}
		if c, err := net.DialTimeout("tcp", d.addr, time.Second); err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			d.stop()
			return fmt.Errorf("dovecot did not listen on %s within %v:\n%s", d.addr, startTimeout, d.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop ends the instance: SIGTERM to the master, SIGKILL to its process
// group if it lingers. It may be called more than once.
func (d *chainDovecot) stop() {
	if d.cmd == nil || d.cmd.Process == nil {
		return
	}
	select {
	case <-d.exited:
		return
	default:
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(10 * time.Second):
		syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
		<-d.exited
	}
}

// popListing is what a POP3 server listed, by message number from 1.
type popListing struct {
	uidls []string
	sizes []int
	msgs  [][]byte // RETR, un-stuffed; nil unless asked for
}

// listMailbox logs in, takes UIDL and LIST (and RETR of every message if
// retr) with the strict client, and quits without deleting.
func listMailbox(t *testing.T, addr, user, password string, retr bool) popListing {
	t.Helper()
	p := dialPOP(t, addr)
	p.login(t, user, password)
	count, octets := stat(t, p)
	uidl := p.lines(t, "UIDL")
	list := sizes(t, p.lines(t, "LIST"))
	if len(uidl) != count || len(list) != count {
		t.Fatalf("%s: STAT says %d messages, UIDL lists %d, LIST %d", addr, count, len(uidl), len(list))
	}
	var l popListing
	total := 0
	for n := 1; n <= count; n++ {
		u, ok1 := uidl[n]
		s, ok2 := list[n]
		if !ok1 || !ok2 {
			t.Fatalf("%s: message %d missing from UIDL or LIST", addr, n)
		}
		l.uidls = append(l.uidls, u)
		l.sizes = append(l.sizes, s)
		total += s
		if retr {
			l.msgs = append(l.msgs, p.multi(t, fmt.Sprintf("RETR %d", n)))
		}
	}
	if total != octets {
		t.Errorf("%s: STAT says %d octets, LIST adds up to %d", addr, octets, total)
	}
	p.ok(t, "QUIT")
	return l
}

func testDovecotImportChain(t *testing.T, config string, importFlags []string) {
	dovecotBin, doveadm := dovecotAvailable(t)
	start := time.Now()
	d := newChainDovecot(t, doveadm)
	alice, bob := chainUsers[0], chainUsers[1]
	first, later := chainMessages()
	bySeq := map[int]chainMessage{}
	for _, m := range append(first, later...) {
		bySeq[chainSeqOf(m.data)] = m
	}
	for _, m := range first {
		d.put(alice.name, m)
	}
	d.start(dovecotBin, config)
	firstList := listMailbox(t, d.addr, alice.name, alice.password, false)
	if len(firstList.uidls) != len(first) {
		t.Fatalf("Dovecot's first login lists %d messages, %d were delivered", len(firstList.uidls), len(first))
	}
	for _, m := range later {
		d.put(alice.name, m)
	}
	dove := listMailbox(t, d.addr, alice.name, alice.password, true)
	if len(dove.uidls) != len(first)+len(later) {
		t.Fatalf("Dovecot's second login lists %d messages, %d were delivered", len(dove.uidls), len(first)+len(later))
	}
	if diff := cmp.Diff(firstList.uidls, dove.uidls[:len(first)]); diff != "" {
		t.Errorf("Dovecot's UIDLs changed between its logins (-first +second):\n%s", diff)
	}
	// Dovecot logs bob in with his hash too (a BLF-CRYPT one).
	if l := listMailbox(t, d.addr, bob.name, bob.password, false); len(l.uidls) != 0 {
		t.Errorf("bob has %d messages in Dovecot", len(l.uidls))
	}
	// What Dovecot sends is the message with CRLF line ends; its LIST
	// lacks the final CRLF it adds to a message without one.
	noFinalNewline := make([]bool, len(dove.msgs))
	for i, got := range dove.msgs {
		m, ok := bySeq[chainSeqOf(got)]
		if !ok {
			t.Fatalf("Dovecot's message %d is none of those delivered:\n%.300q", i+1, got)
		}
		noFinalNewline[i] = !bytes.HasSuffix(m.data, []byte("\n"))
		if want := wireForm(m.data); !bytes.Equal(got, want) {
			t.Errorf("Dovecot's RETR %d (%s): %s", i+1, m.name, firstDifference(got, want))
		}
		want := len(got)
		if noFinalNewline[i] {
			want -= 2
		}
		if dove.sizes[i] != want {
			t.Errorf("Dovecot's LIST %d (%s) says %d, RETR sent %d", i+1, m.name, dove.sizes[i], len(got))
		}
	}
	d.stop()

	// The migration, as an administrator does it: users first, then mail.
	bin, err := popboxBinary()
	if err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	admin := newCLI(t, bin, data)
	out, code := admin.run(t, nil, "user", "import", "passwd-file", "--data", data, d.passwdFile())
	t.Logf("popbox user import passwd-file: exit %d: %s", code, strings.TrimSpace(out))
	if code != 0 {
		t.Fatalf("popbox user import passwd-file: exit %d\n%s", code, out)
	}
	args := append([]string{"import", "maildir", "--data", data, "--user", alice.name}, importFlags...)
	args = append(args, d.maildir(alice.name))
	out, code = admin.run(t, nil, args...)
	t.Logf("popbox %s: exit %d: %s", strings.Join(args, " "), code, strings.TrimSpace(out))
	if code != 0 {
		t.Fatalf("popbox import maildir: exit %d\n%s", code, out)
	}

	srv := startServerIn(t, data)
	pop := listMailbox(t, srv.plain, alice.name, alice.password, true)
	if diff := cmp.Diff(dove.uidls, pop.uidls); diff != "" {
		t.Errorf("UIDL after the import (-Dovecot +popbox):\n%s", diff)
	}
	// Content and size, message by message, matched by UIDL so that an
	// order difference (reported above) is not reported again here.
	doveIndex := map[string]int{}
	for i, u := range dove.uidls {
		doveIndex[u] = i
	}
	for i, u := range pop.uidls {
		j, ok := doveIndex[u]
		if !ok {
			t.Errorf("popbox's message %d has UIDL %q, which Dovecot did not serve", i+1, u)
			continue
		}
		name := bySeq[chainSeqOf(dove.msgs[j])].name
		if !bytes.Equal(pop.msgs[i], dove.msgs[j]) {
			t.Errorf("UIDL %s (%s): popbox's RETR %d sends other octets than Dovecot's RETR %d: %s",
				u, name, i+1, j+1, firstDifference(pop.msgs[i], dove.msgs[j]))
		}
		want := dove.sizes[j]
		if noFinalNewline[j] {
			want += 2 // the one known difference
		}
		if pop.sizes[i] != want {
			t.Errorf("UIDL %s (%s): popbox's LIST says %d, Dovecot's said %d (want %d)", u, name, pop.sizes[i], dove.sizes[j], want)
		}
		if pop.sizes[i] != len(pop.msgs[i]) {
			t.Errorf("UIDL %s (%s): popbox's LIST says %d, its RETR sent %d", u, name, pop.sizes[i], len(pop.msgs[i]))
		}
	}
	differ := 0
	for i := range noFinalNewline {
		if noFinalNewline[i] {
			differ++
		}
	}
	t.Logf("%d messages, %d with a LIST size 2 above Dovecot's (no final newline); Dovecot UIDLs e.g. %q ... %q",
		len(pop.uidls), differ, dove.uidls[0], dove.uidls[len(dove.uidls)-1])

	// bob, imported with his BLF-CRYPT hash, logs in too.
	if l := listMailbox(t, srv.plain, bob.name, bob.password, false); len(l.uidls) != 0 {
		t.Errorf("bob has %d messages in popbox, want 0", len(l.uidls))
	}

	// Mail that arrives after the migration is new mail: a UIDL no
	// imported message has, listed last.
	srv.deliver(t, alice.name, message{name: "after the migration", data: []byte("Subject: after the migration\n\nnew\n")})
	after := listMailbox(t, srv.plain, alice.name, alice.password, false)
	if len(after.uidls) != len(pop.uidls)+1 {
		t.Fatalf("%d messages after one more delivery, want %d", len(after.uidls), len(pop.uidls)+1)
	}
	if diff := cmp.Diff(pop.uidls, after.uidls[:len(pop.uidls)]); diff != "" {
		t.Errorf("imported UIDLs after a new delivery (-before +after):\n%s", diff)
	}
	newUIDL := after.uidls[len(after.uidls)-1]
	for i, u := range dove.uidls {
		if u == newUIDL {
			t.Errorf("the new message got UIDL %q, that of imported message %d", newUIDL, i+1)
		}
	}

	// Importing again adds nothing.
	out, code = admin.run(t, nil, args...)
	if code != 0 || !strings.Contains(out, "0 message(s) imported") {
		t.Errorf("importing the same Maildir again: exit %d\n%s", code, out)
	}
	if again := listMailbox(t, srv.plain, alice.name, alice.password, false); !cmp.Equal(again.uidls, after.uidls) {
		t.Errorf("UIDLs changed by importing again (-before +after):\n%s", cmp.Diff(after.uidls, again.uidls))
	}
	t.Logf("chain took %v", time.Since(start).Round(time.Millisecond))
}
