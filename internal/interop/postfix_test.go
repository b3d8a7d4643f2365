package interop

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/smtp"
	"net/textproto"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// postfixMainCF is the main.cf of the test's private Postfix, beside the
// lines the README's "Use with Postfix" section shows (the block between
// the BEGIN and END comments, with %s for the socket path). Everything else
// keeps this instance away from the system's: its own directories, no
// system aliases, loopback only, no chroot (master.cf below).
const postfixMainCF = `compatibility_level = 3.6
queue_directory = %[1]s/queue
data_directory = %[1]s/data
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.popbox.test
mydomain = popbox.test
myorigin = popbox.test
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_recipient_restrictions = permit_mynetworks, reject
maillog_file = %[1]s/maillog
maillog_file_prefixes = %[1]s
alias_maps =
alias_database =
biff = no
# BEGIN README
mydestination =
virtual_mailbox_domains = example.org
virtual_transport = lmtp:unix:%[2]s
# END README
`

// postfixMasterCF runs smtpd on the test's port and the daemons delivery
// needs, none chrooted (the socket is outside any chroot).
const postfixMasterCF = `127.0.0.1:%d inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
`

// postfixMessages go through Postfix and LMTP into popbox and must come out
// of POP3 as sent, below the trace headers the MTA and LMTP add: dot lines,
// a lone dot, 8-bit text, a long line within SMTP's 998, an empty body line
// at the end.
func postfixMessages() []string {
	long := strings.Repeat("0123456789", 99)
	return []string{
		"From: a@example.net\r\nTo: alice@example.org\r\nSubject: one\r\nMessage-ID: <1@example.net>\r\nDate: Fri, 27 Nov 2026 12:00:00 +0000\r\n\r\nHello.\r\n",
		"From: a@example.net\r\nTo: alice@example.org\r\nSubject: dots\r\nMessage-ID: <2@example.net>\r\nDate: Fri, 27 Nov 2026 12:00:01 +0000\r\n\r\n.\r\n..two\r\n.leading\r\nend\r\n",
		"From: a@example.net\r\nTo: alice@example.org\r\nSubject: =?utf-8?q?8bit?=\r\nMessage-ID: <3@example.net>\r\nDate: Fri, 27 Nov 2026 12:00:02 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGrüße, ça va? 日本語\r\n" + long + "\r\n\r\n",
	}
}

// TestPostfixToPOP3: a real MTA end to end. Postfix (its own config
// directory, queue and port, never the system's) accepts messages by SMTP,
// delivers them over LMTP to popbox serve's Unix socket, and a POP3 client
// fetches them byte for byte as sent.
func TestPostfixToPOP3(t *testing.T) {
	requireTool(t, tool{"postfix", "postfix"})
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("Postfix's master needs root; CI runs as root")
		}
		t.Skip("Postfix's master needs root")
	}
	if _, err := user.Lookup("postfix"); err != nil {
		t.Fatalf("no postfix user (Debian package postfix makes it): %v", err)
	}

	// A directory Postfix's own user can traverse (t.TempDir is 0700):
	// the queue and the LMTP socket live under it.
	root, err := os.MkdirTemp("", "popbox-postfix-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	for _, d := range []string{"", "etc", "queue", "data", "run"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
		os.Chmod(filepath.Join(root, d), 0o755)
	}
	if out, err := exec.Command("chown", "postfix", filepath.Join(root, "data")).CombinedOutput(); err != nil {
		t.Fatalf("chown postfix data: %v\n%s", err, out)
	}
	socket := filepath.Join(root, "run", "lmtp.sock")

	srv := startServerConfig(t, t.TempDir(), fmt.Sprintf("[lmtp]\nsocket = %q\nsocket_group = \"postfix\"\n", socket))
	srv.addUser(t, "alice", "Postfix-pw-2033")
	if !strings.Contains(srv.log.String(), "proto=lmtp addr="+socket) {
		t.Fatalf("popbox serve does not listen for LMTP on %s; its log:\n%s", socket, srv.log)
	}

	port := freePort(t)
	etc := filepath.Join(root, "etc")
	writeFile := func(name, content string) {
		if err := os.WriteFile(filepath.Join(etc, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeFile("main.cf", fmt.Sprintf(postfixMainCF, root, socket))
	writeFile("master.cf", fmt.Sprintf(postfixMasterCF, port))
	postfix := func(args ...string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, "postfix", append([]string{"-c", etc}, args...)...).CombinedOutput()
		if err != nil {
			log, _ := os.ReadFile(filepath.Join(root, "maillog"))
			return fmt.Errorf("postfix %s: %v\n%s\nmaillog:\n%s", strings.Join(args, " "), err, out, log)
		}
		return nil
	}
	if err := postfix("start"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := postfix("stop"); err != nil {
			t.Log(err)
		}
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(root, "maillog"))
			t.Logf("Postfix log:\n%s", log)
		}
	})
	smtpAddr := fmt.Sprintf("127.0.0.1:%d", port)
	waitForPort(t, smtpAddr, 30*time.Second)

	msgs := postfixMessages()
	for i, m := range msgs {
		if err := smtp.SendMail(smtpAddr, nil, "a@example.net", []string{"alice@example.org"}, []byte(m)); err != nil {
			t.Fatalf("SMTP message %d: %v", i+1, err)
		}
	}
	// Mail for a user popbox does not have is refused at RCPT over LMTP
	// (550 5.1.1), so Postfix bounces it rather than retrying forever.
	if err := smtp.SendMail(smtpAddr, nil, "a@example.net", []string{"nobody@example.org"}, []byte(msgs[0])); err != nil {
		t.Fatalf("SMTP to an unknown user: %v", err)
	}

	// Postfix queues, then delivers within a second or two.
	deadline := time.Now().Add(60 * time.Second)
	var p *popConn
	for {
		p = dialPOP(t, srv.plain)
		p.login(t, "alice", "Postfix-pw-2033")
		if n, _ := stat(t, p); n == len(msgs) || time.Now().After(deadline) {
			break
		}
		p.ok(t, "QUIT")
		time.Sleep(200 * time.Millisecond)
	}
	defer p.ok(t, "QUIT")
	if n, _ := stat(t, p); n != len(msgs) {
		t.Fatalf("%d messages in the mailbox after 60 s, want %d; popbox log:\n%s", n, len(msgs), srv.log)
	}
	// Delivery order is not promised; match by Message-ID.
	trace := regexp.MustCompile(`^(Return-Path|Delivered-To|Received|X-Original-To): `)
	for i := range msgs {
		got := p.multi(t, fmt.Sprintf("RETR %d", i+1))
		var want string
		for _, m := range msgs {
			id := m[strings.Index(m, "Message-ID:"):]
			id = id[:strings.Index(id, "\r\n")]
			if bytes.Contains(got, []byte(id)) {
				want = m
			}
		}
		if want == "" {
			t.Fatalf("message %d is none of those sent:\n%s", i+1, got)
		}
		prefix, ok := bytes.CutSuffix(got, []byte(want))
		if !ok {
			t.Errorf("message %d does not end with the message as sent: %s\ngot:\n%s", i+1, firstDifference(got[len(got)-min(len(got), len(want)):], []byte(want)), got)
			continue
		}
		// Above it only trace header fields (with their continuation
		// lines): Postfix's Received, LMTP's Return-Path and Delivered-To.
		for _, line := range strings.SplitAfter(string(prefix), "\r\n") {
			if line != "" && !trace.MatchString(line) && !strings.HasPrefix(line, "\t") && !strings.HasPrefix(line, " ") {
				t.Errorf("message %d: unexpected line above the message: %q", i+1, line)
			}
		}
		for _, h := range []string{"Return-Path: <a@example.net>\r\n", "Delivered-To: alice@example.org\r\n", "Received: from "} {
			if !bytes.Contains(prefix, []byte(h)) {
				t.Errorf("message %d: no %q among the trace headers:\n%s", i+1, h, prefix)
			}
		}
	}
	// The message for nobody was sent last and Postfix may still hold it:
	// wait for popbox's refusal rather than look once.
	refused := func() bool {
		l := srv.log.String()
		return strings.Contains(l, "user=nobody") || strings.Contains(l, "nobody@example.org")
	}
	for deadline := time.Now().Add(30 * time.Second); !refused(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Errorf("popbox logged nothing about the refused recipient nobody@example.org within 30 s; its log:\n%s", srv.log)
			break
		}
	}
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// waitForPort waits until addr accepts connections.
func waitForPort(t *testing.T, addr string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not accepting connections after %v: %v", addr, limit, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestLMTPDefaultSocket: popbox serve listens for LMTP on DATA/lmtp.sock by
// default; two recipients, one unknown, get their own replies, and the
// message is in the known one's mailbox at once after its 250.
func TestLMTPDefaultSocket(t *testing.T) {
	srv := startServer(t)
	srv.addUser(t, "bob", "Lmtp-pw-2033")
	c, err := net.DialTimeout("unix", filepath.Join(srv.data, "lmtp.sock"), ioTimeout)
	if err != nil {
		t.Fatalf("LMTP socket: %v; popbox log:\n%s", err, srv.log)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(ioTimeout))
	r := textproto.NewConn(c)
	expect := func(code int) string {
		t.Helper()
		_, msg, err := r.ReadResponse(code)
		if err != nil {
			t.Fatalf("want %d: %v", code, err)
		}
		return msg
	}
	expect(220)
	for _, step := range []struct {
		cmd  string
		code int
	}{{"LHLO client.test", 250}, {"MAIL FROM:<a@example.net>", 250}, {"RCPT TO:<bob@example.org>", 250},
		{"RCPT TO:<ghost@example.org>", 550}, {"DATA", 354}} {
		if err := r.PrintfLine("%s", step.cmd); err != nil {
			t.Fatal(err)
		}
		expect(step.code)
	}
	msg := "Subject: via LMTP\r\n\r\n..a dot line\r\nbye\r\n.\r\n"
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatal(err)
	}
	// RFC 2033 §4.2: one reply per accepted recipient: here one.
	if got := expect(250); !strings.Contains(got, "UIDL") {
		t.Errorf("DATA reply %q", got)
	}
	r.PrintfLine("QUIT")
	p := dialPOP(t, srv.plain)
	p.login(t, "bob", "Lmtp-pw-2033")
	got := p.multi(t, "RETR 1")
	if !bytes.HasSuffix(got, []byte("Subject: via LMTP\r\n\r\n.a dot line\r\nbye\r\n")) {
		t.Errorf("RETR 1:\n%s", got)
	}
	p.ok(t, "QUIT")
}

// TestLMTPQuotaAndExpire: popbox serve's LMTP refuses mail over a user's
// quota with 452 4.2.2 and stores nothing of it; with mail.expire_days the
// server says EXPIRE n in CAPA.
func TestLMTPQuotaAndExpire(t *testing.T) {
	srv := startServerConfig(t, t.TempDir(), "[mail]\nexpire_days = 30\n")
	srv.addUser(t, "carol", "Quota-pw-2033")
	if out, code := srv.run(t, nil, "user", "set", "--data", srv.data, "carol", "messages=1"); code != 0 {
		t.Fatalf("user set: exit %d\n%s", code, out)
	}
	deliver := func(serial int) (int, string) {
		t.Helper()
		c, err := net.DialTimeout("unix", filepath.Join(srv.data, "lmtp.sock"), ioTimeout)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(ioTimeout))
		r := textproto.NewConn(c)
		if _, _, err := r.ReadResponse(220); err != nil {
			t.Fatal(err)
		}
		for _, cmd := range []string{"LHLO client.test", "MAIL FROM:<a@example.net>", "RCPT TO:<carol@example.org>", "DATA"} {
			r.PrintfLine("%s", cmd)
			if _, _, err := r.ReadResponse(0); err != nil && !strings.HasPrefix(cmd, "DATA") {
				t.Fatalf("%s: %v", cmd, err)
			}
		}
		fmt.Fprintf(c, "Subject: %d\r\n\r\nbody\r\n.\r\n", serial)
		code, msg, _ := r.ReadResponse(0)
		r.PrintfLine("QUIT")
		return code, msg
	}
	if code, msg := deliver(1); code != 250 {
		t.Fatalf("first message: %d %s", code, msg)
	}
	if code, msg := deliver(2); code != 452 || !strings.HasPrefix(msg, "4.2.2") {
		t.Errorf("second message over a one-message quota: %d %s, want 452 4.2.2", code, msg)
	}
	p := dialPOP(t, srv.plain)
	if got := string(p.multi(t, "CAPA")); !strings.Contains(got, "EXPIRE 30\r\n") {
		t.Errorf("CAPA does not say EXPIRE 30:\n%s", got)
	}
	p.login(t, "carol", "Quota-pw-2033")
	if n, _ := stat(t, p); n != 1 {
		t.Errorf("%d messages, want the 1 within quota", n)
	}
	p.ok(t, "QUIT")
}
