package interop

import (
	"bytes"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/popbox/popbox/internal/pgtest"
)

// The PostgreSQL tests run the real binary on a private PostgreSQL server
// (internal/pgtest: skipped without one, failed under CI=true), one
// database per subtest, in the setups an operator scales out with:
// `popbox migrate`, frontends sharing one database, a frontend killed
// mid-session, and a Maildir data directory moved into PostgreSQL with
// `popbox import datadir`.

// pgLease is the frontends' postgres.lease: short, so that the crash test
// waits seconds, not the default half minute.
const pgLease = 2 * time.Second

// pgPassword is put in every DSN (the private server trusts its socket and
// never asks for it), so that the tests can check it never shows.
const pgPassword = "Pg-secret-4711"

// pgURL turns pgtest's keyword/value DSN into the postgres:// URL popbox
// takes, with pgPassword in it.
func pgURL(t *testing.T, kv string) string {
	t.Helper()
	f := map[string]string{}
	for _, p := range strings.Fields(kv) {
		k, v, _ := strings.Cut(p, "=")
		f[k] = v
	}
	q := url.Values{"host": {f["host"]}, "port": {f["port"]}, "sslmode": {f["sslmode"]}}
	return fmt.Sprintf("postgres://%s:%s@/%s?%s", f["user"], pgPassword, f["dbname"], q.Encode())
}

// pgInstall is one installation on one database: its configuration file
// and a data directory for the commands run outside a frontend.
type pgInstall struct {
	cli  *server // runs commands; never started
	conf string  // the configuration file, for -c
}

// newPGInstall writes a configuration for dsn: PostgreSQL store, a short
// lease, no delivery headers so that RETR must return exactly what LMTP
// was given, and no delay after a failed login, which the tests provoke.
func newPGInstall(t *testing.T, dsn string) *pgInstall {
	t.Helper()
	bin, err := popboxBinary()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "popbox.toml")
	text := fmt.Sprintf("store = %q\n\n[postgres]\nlease = %q\n\n[lmtp]\ndelivery_headers = false\n\n[pop3]\nauth_failure_delay = \"0s\"\n",
		dsn, pgLease.String())
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return &pgInstall{cli: &server{bin: bin, data: filepath.Join(dir, "data")}, conf: conf}
}

// popbox runs a command of the installation; it must exit 0.
func (in *pgInstall) popbox(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	out, code := in.try(t, stdin, args...)
	if code != 0 {
		t.Fatalf("popbox %s: exit %d\n%s", strings.Join(args, " "), code, out)
	}
	return out
}

// try runs a command of the installation and returns its output and exit
// status, after checking the output does not show the DSN's password.
func (in *pgInstall) try(t *testing.T, stdin string, args ...string) (string, int) {
	t.Helper()
	out, code := in.cli.run(t, []byte(stdin), append(args, "-c", in.conf, "--data", in.cli.data)...)
	if strings.Contains(out, pgPassword) {
		t.Errorf("popbox %s shows the database password:\n%s", strings.Join(args, " "), out)
	}
	return out, code
}

func (in *pgInstall) addUser(t *testing.T, name, password string) {
	t.Helper()
	in.popbox(t, password+"\n", "user", "add", name, "--password-stdin")
}

// frontend starts `popbox serve` on the installation with its own data
// directory, as one more machine would; node names it in lease rows.
func (in *pgInstall) frontend(t *testing.T, node string) *server {
	t.Helper()
	conf := in.nodeConfig(t, node)
	srv := startServerArgs(t, t.TempDir(), "-c", conf)
	t.Cleanup(func() {
		if strings.Contains(srv.log.String(), pgPassword) {
			t.Errorf("frontend %s logged the database password:\n%s", node, srv.log)
		}
	})
	return srv
}

// nodeConfig is the installation's configuration with node_id set.
func (in *pgInstall) nodeConfig(t *testing.T, node string) string {
	t.Helper()
	b, err := os.ReadFile(in.conf)
	if err != nil {
		t.Fatal(err)
	}
	b = bytes.Replace(b, []byte("[postgres]\n"), fmt.Appendf(nil, "[postgres]\nnode_id = %q\n", node), 1)
	conf := filepath.Join(t.TempDir(), "popbox-"+node+".toml")
	if err := os.WriteFile(conf, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return conf
}

// lmtpDeliver delivers msgs to fillUser over srv's LMTP socket, each
// acknowledged with 250.
func lmtpDeliver(t *testing.T, srv *server, msgs []message) {
	t.Helper()
	l := dialLMTP(t, srv)
	for _, m := range msgs {
		if code, text := l.send(t, m.data); code != 250 {
			t.Fatalf("LMTP delivery of %s: %d %s", m.name, code, text)
		}
	}
	l.cmd("QUIT")
}

// checkListing compares a listing with RETR against the wire form of msgs,
// in delivery order.
func checkListing(t *testing.T, where string, got popListing, msgs []message) {
	t.Helper()
	if len(got.msgs) != len(msgs) {
		t.Fatalf("%s: %d messages, want %d", where, len(got.msgs), len(msgs))
	}
	for i, m := range msgs {
		want := wireForm(m.data)
		if !bytes.Equal(got.msgs[i], want) {
			t.Errorf("%s: RETR %d (%s) is not the delivered message: %s", where, i+1, m.name, firstDifference(got.msgs[i], want))
		}
		if got.sizes[i] != len(want) {
			t.Errorf("%s: LIST %d = %d, want %d", where, i+1, got.sizes[i], len(want))
		}
	}
}

// TestPostgres runs popbox on PostgreSQL, each subtest on a database of its
// own on one private server.
func TestPostgres(t *testing.T) {
	pg := pgtest.Start(t)
	start := time.Now()
	newInstall := func(t *testing.T) *pgInstall {
		t.Helper()
		in := newPGInstall(t, pgURL(t, pg.NewDatabase(t)))
		in.popbox(t, "", "migrate")
		return in
	}
	for _, tc := range []struct {
		name string
		run  func(*testing.T, *pgInstall)
	}{
		{"MigrateAndServe", func(t *testing.T, _ *pgInstall) { testPostgresMigrate(t, pgURL(t, pg.NewDatabase(t))) }},
		{"LMTPToPOP3", testPostgresLMTPToPOP3},
		{"TwoFrontends", testPostgresTwoFrontends},
		{"InUseAcrossFrontends", testPostgresInUse},
		{"KilledFrontend", testPostgresKilledFrontend},
		{"ImportDataDir", testPostgresImportDataDir},
		{"UserCommands", testPostgresUserCommands},
	} {
		t.Run(tc.name, func(t *testing.T) {
			began := time.Now()
			var in *pgInstall
			if tc.name != "MigrateAndServe" {
				in = newInstall(t)
			}
			tc.run(t, in)
			t.Logf("%s took %v", tc.name, time.Since(began).Round(time.Millisecond))
		})
	}
	t.Logf("TestPostgres took %v (server start not included)", time.Since(start).Round(time.Millisecond))
}

// testPostgresMigrate: serve refuses a database without the schema,
// naming `popbox migrate`; migrate creates it (and may run again); serve
// then starts. On a Maildir configuration migrate has nothing to do.
func testPostgresMigrate(t *testing.T, dsn string) {
	in := newPGInstall(t, dsn)
	out, code := in.try(t, "", "serve", "--allow-root", "--listen", "127.0.0.1:0", "--listen-tls", "127.0.0.1:0")
	if code != 78 || !strings.Contains(out, "popbox migrate") {
		t.Errorf("serve on a database without the schema: exit %d, want 78 and a message naming `popbox migrate`:\n%s", code, out)
	}
	if out, code := in.try(t, "pw\n", "user", "add", "alice", "--password-stdin"); code != 78 || !strings.Contains(out, "popbox migrate") {
		t.Errorf("user add on a database without the schema: exit %d, want 78 naming `popbox migrate`:\n%s", code, out)
	}

	out = in.popbox(t, "", "migrate")
	for _, want := range []string{"migrated mail store postgres://postgres:xxxxx@/", "migrated user database postgres://postgres:xxxxx@/"} {
		if !strings.Contains(out, want) {
			t.Errorf("popbox migrate says\n%s\nwant a line with %q", out, want)
		}
	}
	in.popbox(t, "", "migrate") // a second run finds nothing to do

	in.addUser(t, "alice", "Alice-pw-1939")
	srv := in.frontend(t, "a")
	p := dialPOP(t, srv.plain)
	p.login(t, "alice", "Alice-pw-1939")
	if n, _ := stat(t, p); n != 0 {
		t.Errorf("new mailbox has %d messages", n)
	}
	p.ok(t, "QUIT")
	if !strings.Contains(srv.log.String(), `mail="postgres://postgres:xxxxx@/`) {
		t.Errorf("serve does not log its store without the password:\n%s", srv.log)
	}

	// Maildir: nothing to migrate, exit 0.
	out, code = in.cli.run(t, nil, "migrate", "--data", t.TempDir())
	if code != 0 || !strings.Contains(out, "nothing to migrate") {
		t.Errorf("popbox migrate on Maildirs: exit %d\n%s", code, out)
	}
}

// testPostgresLMTPToPOP3: mail delivered over LMTP to a frontend on
// PostgreSQL comes back from RETR octet for octet (byte-stuffing, line
// ends, 8-bit text, 5 MiB), DELE + QUIT deletes, and the other commands
// work on the PostgreSQL store.
func testPostgresLMTPToPOP3(t *testing.T, in *pgInstall) {
	in.addUser(t, fillUser, fillPassword)
	srv := in.frontend(t, "a")
	msgs := testMessages()
	lmtpDeliver(t, srv, msgs)
	in.popbox(t, "Subject: by deliver\n\nbody\n", "deliver", fillUser)

	got := listMailbox(t, srv.plain, fillUser, fillPassword, true)
	checkListing(t, "RETR after LMTP", popListing{uidls: got.uidls[:len(msgs)], sizes: got.sizes[:len(msgs)], msgs: got.msgs[:len(msgs)]}, msgs)
	if len(got.uidls) != len(msgs)+1 {
		t.Fatalf("%d messages listed, want %d (LMTP) + 1 (popbox deliver)", len(got.uidls), len(msgs)+1)
	}
	for _, u := range got.uidls {
		if !uidlSyntax.MatchString(u) {
			t.Errorf("UIDL %q breaks RFC 1939 §7", u)
		}
	}

	p := dialPOP(t, srv.plain)
	p.login(t, fillUser, fillPassword)
	p.ok(t, "DELE 1")
	p.ok(t, "DELE 3")
	p.ok(t, "QUIT")
	want := slices.Concat(got.uidls[1:2], got.uidls[3:])
	after := listMailbox(t, srv.plain, fillUser, fillPassword, false)
	if diff := cmp.Diff(want, after.uidls); diff != "" {
		t.Errorf("UIDLs after DELE 1, DELE 3, QUIT (-want +got):\n%s", diff)
	}

	// The deleted messages are kept (mail.keep_deleted_days) and come back.
	if out := in.popbox(t, "", "restore", fillUser, "--all"); !strings.Contains(out, "2 message(s) restored") {
		t.Errorf("popbox restore --all:\n%s", out)
	}
	if out := in.popbox(t, "", "user", "show", fillUser); !strings.Contains(out, fmt.Sprintf("mailbox:       %d messages", len(msgs)+1)) {
		t.Errorf("popbox user show after restore:\n%s", out)
	}
	p = loginRetrying(t, srv.plain, fillUser, fillPassword)
	p.ok(t, fmt.Sprintf("DELE %d", len(msgs)+1))
	p.ok(t, "QUIT")
	if out := in.popbox(t, "", "purge", "--all-kept"); !strings.Contains(out, "1 deleted message(s) purged") {
		t.Errorf("popbox purge --all-kept:\n%s", out)
	}
}

// testPostgresTwoFrontends: mail delivered over LMTP on frontend A is
// fetched on frontend B, with the same UIDLs on both.
func testPostgresTwoFrontends(t *testing.T, in *pgInstall) {
	in.addUser(t, fillUser, fillPassword)
	a, b := in.frontend(t, "a"), in.frontend(t, "b")
	msgs := testMessages()[:8]
	lmtpDeliver(t, a, msgs)

	onB := listMailbox(t, b.plain, fillUser, fillPassword, true)
	checkListing(t, "frontend B", onB, msgs)
	onA := listMailbox(t, a.plain, fillUser, fillPassword, true)
	if diff := cmp.Diff(onB.uidls, onA.uidls); diff != "" {
		t.Errorf("UIDLs on frontend A (-B +A):\n%s", diff)
	}
	checkListing(t, "frontend A", onA, msgs)

	// Deleted on B, gone on A.
	p := dialPOP(t, b.plain)
	p.login(t, fillUser, fillPassword)
	p.ok(t, "DELE 2")
	p.ok(t, "QUIT")
	onA = listMailbox(t, a.plain, fillUser, fillPassword, false)
	if diff := cmp.Diff(slices.Concat(onB.uidls[:1], onB.uidls[2:]), onA.uidls); diff != "" {
		t.Errorf("UIDLs on A after DELE 2 + QUIT on B (-want +got):\n%s", diff)
	}
}

// testPostgresInUse: a session on frontend A locks the mailbox on frontend
// B too (RFC 2449 §8.1.2 [IN-USE]), and QUIT on A releases it.
func testPostgresInUse(t *testing.T, in *pgInstall) {
	in.addUser(t, fillUser, fillPassword)
	a, b := in.frontend(t, "a"), in.frontend(t, "b")
	lmtpDeliver(t, b, testMessages()[:2])

	pa := dialPOP(t, a.plain)
	pa.login(t, fillUser, fillPassword)
	pb := dialPOP(t, b.plain)
	pb.ok(t, "USER "+fillUser)
	line, err := pb.cmd("PASS " + fillPassword)
	if err == nil || !strings.HasPrefix(line, "-ERR [IN-USE]") {
		t.Errorf("login on B during a session on A: %q, want -ERR [IN-USE]", line)
	}
	pa.ok(t, "QUIT")
	pb = loginRetrying(t, b.plain, fillUser, fillPassword)
	if n, _ := stat(t, pb); n != 2 {
		t.Errorf("B sees %d messages, want 2", n)
	}
	pb.ok(t, "QUIT")
}

// testPostgresKilledFrontend: a frontend killed (SIGKILL) in a session
// after DELE, before QUIT, applies no deletion, and the other frontend can
// open the mailbox once the lease has run out.
func testPostgresKilledFrontend(t *testing.T, in *pgInstall) {
	in.addUser(t, fillUser, fillPassword)
	b := in.frontend(t, "b")
	msgs := testMessages()[:4]
	lmtpDeliver(t, b, msgs)
	before := listMailbox(t, b.plain, fillUser, fillPassword, false)

	a, kill := startKillable(t, in.nodeConfig(t, "a"))
	p := dialPOP(t, a.plain)
	p.login(t, fillUser, fillPassword)
	p.ok(t, "DELE 1")
	p.ok(t, "DELE 2")
	p.multi(t, "RETR 3")
	kill()
	killed := time.Now()

	// Until the lease runs out, B must refuse: A's session might only be
	// cut off, and still about to commit.
	q := dialPOP(t, b.plain)
	q.ok(t, "USER "+fillUser)
	if line, err := q.cmd("PASS " + fillPassword); err == nil {
		t.Errorf("B opened the mailbox at once after A was killed (%q): the lease should hold it for up to %v", line, pgLease)
		q.ok(t, "QUIT")
	}

	var got popListing
	for {
		pb := dialPOP(t, b.plain)
		pb.ok(t, "USER "+fillUser)
		line, err := pb.cmd("PASS " + fillPassword)
		if err == nil {
			uidl := pb.lines(t, "UIDL")
			for n := 1; n <= len(uidl); n++ {
				got.uidls = append(got.uidls, uidl[n])
			}
			pb.ok(t, "QUIT")
			break
		}
		if !strings.Contains(line, "[IN-USE]") {
			t.Fatalf("login on B after A was killed: %q", line)
		}
		// The lease expires at most pgLease after A's last renewal; a
		// second on top for the machine.
		if time.Since(killed) > pgLease+time.Second+pgLease/2 {
			t.Fatalf("B still gets %q %v after A was killed; postgres.lease is %v", line, time.Since(killed).Round(time.Millisecond), pgLease)
		}
		pb.conn.Close()
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("B opened the mailbox %v after A was killed (lease %v)", time.Since(killed).Round(time.Millisecond), pgLease)
	if diff := cmp.Diff(before.uidls, got.uidls); diff != "" {
		t.Errorf("UIDLs after A was killed with DELE 1, DELE 2 pending (-before +after): deletions were applied without QUIT\n%s", diff)
	}
}

// startKillable starts a frontend on the configuration conf, as
// startServerArgs does, but leaves stopping it to the test: kill sends
// SIGKILL and waits for the process.
func startKillable(t *testing.T, conf string) (srv *server, kill func()) {
	t.Helper()
	bin, err := popboxBinary()
	if err != nil {
		t.Fatal(err)
	}
	srv = &server{bin: bin, data: t.TempDir(), log: newServerLog()}
	cmd := exec.Command(bin, "serve", "--allow-root", "--data", srv.data,
		"--listen", "127.0.0.1:0", "--listen-tls", "127.0.0.1:0", "-c", conf)
	cmd.Stdout, cmd.Stderr = srv.log, srv.log
	cmd.WaitDelay = stopTimeout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	killed := false
	kill = func() {
		if killed {
			return
		}
		killed = true
		cmd.Process.Signal(syscall.SIGKILL)
		<-exited
	}
	t.Cleanup(kill)
	timer := time.NewTimer(startTimeout)
	defer timer.Stop()
	for srv.plain == "" || srv.tls == "" {
		select {
		case l := <-srv.log.listening:
			switch l.proto {
			case "pop3":
				srv.plain = l.addr
			case "pop3s":
				srv.tls = l.addr
			}
		case err := <-exited:
			killed = true
			t.Fatalf("popbox serve exited during start-up (%v); its log:\n%s", err, srv.log)
		case <-timer.C:
			t.Fatalf("popbox serve did not start within %v; its log:\n%s", startTimeout, srv.log)
		}
	}
	return srv, kill
}

// testPostgresImportDataDir: `popbox import datadir` moves a Maildir data
// directory (users and mail) into PostgreSQL with every UIDL unchanged,
// and a second run changes nothing.
func testPostgresImportDataDir(t *testing.T, in *pgInstall) {
	old := &server{bin: in.cli.bin, data: t.TempDir()}
	users := []struct{ name, password string }{{"bob", "Bob-pw-1081"}, {"carol", "Carol-pw-2033"}}
	msgs := testMessages()
	boxes := map[string][]message{"bob": msgs[:6], "carol": msgs[10:13]}
	for _, u := range users {
		old.addUser(t, u.name, u.password)
		for _, m := range boxes[u.name] {
			old.deliver(t, u.name, m)
		}
	}
	if out, code := old.run(t, nil, "user", "set", "--data", old.data, "carol", "quota=10M"); code != 0 {
		t.Fatalf("user set: exit %d\n%s", code, out)
	}
	if out, code := old.run(t, nil, "user", "app-password", "add", "--data", old.data, "bob", "phone"); code != 0 {
		t.Fatalf("app-password add: exit %d\n%s", code, out)
	}
	// What the Maildir server serves, from the real server.
	maildirSrv := startServerIn(t, old.data)
	want := map[string]popListing{}
	for _, u := range users {
		want[u.name] = listMailbox(t, maildirSrv.plain, u.name, u.password, true)
	}

	out := in.popbox(t, "", "import", "datadir", "--from", old.data)
	for _, line := range []string{"2 user(s) copied, 0 already there", "mailbox bob: 6 message(s) imported, 0 already there",
		"mailbox carol: 3 message(s) imported, 0 already there", "9 message(s) imported into postgres://postgres:xxxxx@/"} {
		if !strings.Contains(out, line) {
			t.Errorf("first import: no line %q in\n%s", line, out)
		}
	}
	if !strings.Contains(out, "app passwords are not copied") || !strings.Contains(out, "\n  bob\n") {
		t.Errorf("first import does not list bob's app password as not copied:\n%s", out)
	}

	srv := in.frontend(t, "a")
	check := func(run string) {
		t.Helper()
		for _, u := range users {
			got := listMailbox(t, srv.plain, u.name, u.password, true)
			if diff := cmp.Diff(want[u.name].uidls, got.uidls); diff != "" {
				t.Errorf("%s: %s's UIDLs on PostgreSQL (-Maildir +PostgreSQL):\n%s", run, u.name, diff)
			}
			checkListing(t, run+": "+u.name, got, boxes[u.name])
		}
	}
	check("after the import")
	if out := in.popbox(t, "", "user", "show", "carol"); !strings.Contains(out, "quota:         10M") {
		t.Errorf("carol's quota override was not copied:\n%s", out)
	}

	out = in.popbox(t, "", "import", "datadir", "--from", old.data)
	for _, line := range []string{"0 user(s) copied, 2 already there", "mailbox bob: 0 message(s) imported, 6 already there",
		"mailbox carol: 0 message(s) imported, 3 already there"} {
		if !strings.Contains(out, line) {
			t.Errorf("second import: no line %q in\n%s", line, out)
		}
	}
	check("after a second import")
}

// testPostgresUserCommands: the account commands work on the PostgreSQL
// user database, and a running frontend sees their changes at once.
func testPostgresUserCommands(t *testing.T, in *pgInstall) {
	srv := in.frontend(t, "a")
	in.addUser(t, "dora", "Dora-pw-1")
	in.popbox(t, "Dora-pw-2\n", "user", "passwd", "dora", "--password-stdin")
	if out := in.popbox(t, "", "user", "list"); !strings.Contains(out, "dora") {
		t.Errorf("user list:\n%s", out)
	}
	out := in.popbox(t, "", "user", "app-password", "add", "dora", "phone")
	app := strings.TrimSpace(out[strings.LastIndexByte(strings.TrimSpace(out), '\n')+1:])
	for _, pw := range []string{"Dora-pw-2", app} {
		p := dialPOP(t, srv.plain)
		p.login(t, "dora", pw)
		p.ok(t, "QUIT")
	}
	in.popbox(t, "", "user", "set", "dora", "messages=1")
	in.popbox(t, "Subject: 1\n\none\n", "deliver", "dora")
	if out, code := in.try(t, "Subject: 2\n\ntwo\n", "deliver", "dora"); code != 75 {
		t.Errorf("deliver over the message quota: exit %d, want 75\n%s", code, out)
	}
	in.popbox(t, "", "user", "disable", "dora")
	p := dialPOP(t, srv.plain)
	p.ok(t, "USER dora")
	if line, err := p.cmd("PASS Dora-pw-2"); err == nil {
		t.Errorf("a disabled user logged in: %q", line)
	}
	in.popbox(t, "", "user", "enable", "dora")
	in.popbox(t, "", "user", "app-password", "revoke", "dora", "phone")
	if out := in.popbox(t, "", "user", "del", "dora"); !strings.Contains(out, "mail kept in the database") {
		t.Errorf("user del:\n%s", out)
	}
	if out, code := in.try(t, "Subject: 3\n\nthree\n", "deliver", "dora"); code != 67 {
		t.Errorf("deliver to a deleted user: exit %d, want 67\n%s", code, out)
	}
}
