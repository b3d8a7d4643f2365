//go:build linux

package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/popbox/popbox/fetch"
	"github.com/popbox/popbox/internal/mailtest"
	"github.com/popbox/popbox/store/maildir"
)

// fetchEnv is a popbox serve with user alice (password "secret") and a
// direct handle on its Maildir store for delivering test mail.
type fetchEnv struct {
	t     *testing.T
	data  string
	serve *serveProc
	store *maildir.Store
	fp    string // the server certificate's fingerprint
	dir   string // the test's scratch directory
}

func newFetchEnv(t *testing.T) *fetchEnv {
	t.Helper()
	e := &fetchEnv{t: t, data: filepath.Join(t.TempDir(), "data"), dir: t.TempDir()}
	addUser(t, e.data, "alice", "secret")
	e.serve = startServe(t, binOpts{}, append([]string{"--data", e.data, "-c", testConfig(t, "")}, listenArgs...)...)
	e.fp = e.serve.waitLog(ioTimeout, `msg="tls certificate"`, func(r logRecord) bool { return r["msg"] == "tls certificate" })["sha256"]
	st, err := maildir.New(filepath.Join(e.data, "mail"), maildir.Options{NoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	e.store = st
	return e
}

func (e *fetchEnv) deliver(msgs ...string) {
	e.t.Helper()
	for _, m := range msgs {
		if _, err := e.store.Deliver(context.Background(), "alice", strings.NewReader(m)); err != nil {
			e.t.Fatal(err)
		}
	}
}

// serverMessages are alice's messages on the server.
func (e *fetchEnv) serverMessages() []string {
	e.t.Helper()
	var out []string
	for _, content := range maildirFiles(e.t, e.data, "alice") {
		out = append(out, content)
	}
	return out
}

// account is one [[account]] for this server over implicit TLS pinned to
// its certificate, with extra lines.
func (e *fetchEnv) account(name, deliver string, extra ...string) string {
	host, port, _ := net.SplitHostPort(e.serve.tls)
	return fmt.Sprintf("[[account]]\nname = %q\nserver = %q\nport = %s\nfingerprint = %q\nuser = \"alice\"\npassword = \"secret\"\n"+
		"deliver = %q\nstate_dir = %q\n%s\n", name, host, port, "sha256:"+e.fp, deliver, filepath.Join(e.dir, "state"), strings.Join(extra, "\n"))
}

// config writes an account file and returns its path.
func (e *fetchEnv) config(accounts ...string) string {
	e.t.Helper()
	path := filepath.Join(e.t.TempDir(), "fetch.toml")
	writeFile(e.t, path, strings.Join(accounts, "\n"))
	return path
}

// hashes returns the sorted content hashes of normalised messages.
func hashes(msgs []string) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		sum := sha256.Sum256([]byte(mailtest.Normalise(m)))
		out[i] = hex.EncodeToString(sum[:8])
	}
	slices.Sort(out)
	return out
}

// TestFetchCommand: new mail exits 0, a second run 1 ("no new mail"); the
// messages arrive intact; --dry-run and status report without changing
// anything.
func TestFetchCommand(t *testing.T) {
	t.Parallel()
	e := newFetchEnv(t)
	msgs := []string{
		"From: a@example.org\nSubject: one\n\n.\n..\nbody\n",
		"From: a@example.org\nSubject: two\n\nno final newline",
		"From: a@example.org\nSubject: =?utf-8?q?3?=\n\nGrüße\n",
	}
	e.deliver(msgs...)
	spec := "maildir:" + filepath.Join(e.dir, "Mail")
	cfg := e.config(e.account("home", spec, `delete_after = "30d"`))

	r := runCLI(t, "", "fetch", "-c", cfg, "--dry-run")
	if r.Code != 0 || r.Stdout != "home: would fetch 3 messages (161 B), would delete 0\n" {
		t.Errorf("dry run: exit %d, stdout %q, stderr %q", r.Code, r.Stdout, r.Stderr)
	}
	if got := localMessages(t, spec); len(got) != 0 {
		t.Errorf("the dry run delivered %d messages", len(got))
	}
	r = runCLI(t, "", "fetch", "status", "-c", cfg)
	for _, want := range []string{"home (alice@127.0.0.1:", "last run:   never", "server:     3 messages to fetch (161 B), 0 to delete"} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("status lacks %q:\n%s", want, r.Stdout)
		}
	}

	r = runCLI(t, "", "fetch", "-c", cfg)
	if r.Code != 0 {
		t.Fatalf("fetch: exit %d, stderr:\n%s", r.Code, r.Stderr)
	}
	if !strings.Contains(r.Stderr, `msg="fetch done" account=home fetched=3`) {
		t.Errorf("no summary log line:\n%s", r.Stderr)
	}
	if diff := cmp.Diff(hashes(msgs), hashes(localMessages(t, spec))); diff != "" {
		t.Errorf("local messages (-want +got):\n%s", diff)
	}
	r = runCLI(t, "", "fetch", "-c", cfg, "-q")
	if diff := cmp.Diff(result{1, "", "popbox: no new mail\n"}, r); diff != "" {
		t.Errorf("second fetch -q (-want +got):\n%s", diff)
	}
	r = runCLI(t, "", "fetch", "status", "-c", cfg)
	for _, want := range []string{"no new mail, 0 messages", "journal:    3 delivered and still on the server", "server:     0 messages to fetch (0 B), 0 to delete"} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("status lacks %q:\n%s", want, r.Stdout)
		}
	}
	if r.Code != 1 {
		t.Errorf("status with nothing to fetch: exit %d, want 1", r.Code)
	}
}

// fakePOP3 serves one scripted POP3 dialogue per connection: greeting,
// then for each command line read, the reply the function gives.
func fakePOP3(t *testing.T, greeting string, reply func(cmd string) string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(ioTimeout))
				c.Write([]byte(greeting))
				br := bufio.NewReader(c)
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					c.Write([]byte(reply(strings.TrimSpace(line))))
				}
			}()
		}
	}()
	return l.Addr().String()
}

// TestFetchExitCodes: each kind of failure has its documented exit status
// and an explanation; with several accounts the most severe wins.
func TestFetchExitCodes(t *testing.T) {
	t.Parallel()
	e := newFetchEnv(t)
	e.deliver("Subject: x\n\nx\n")
	noSTLS := fakePOP3(t, "+OK ready\r\n", func(cmd string) string {
		if cmd == "CAPA" {
			return "+OK\r\nUSER\r\nUIDL\r\n.\r\n"
		}
		return "+OK\r\n"
	})
	garbage := fakePOP3(t, "* OK IMAP4rev1 ready\r\n", func(string) string { return "" })
	refused := func() string { // a port nobody listens on
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().String()
	}()
	plainAt := func(name, addr string, extra ...string) string {
		host, port, _ := net.SplitHostPort(addr)
		return fmt.Sprintf("[[account]]\nname = %q\nserver = %q\nport = %s\nuser = \"alice\"\npassword = \"secret\"\ndeliver = %q\nstate_dir = %q\ntimeout = \"2s\"\n%s\n",
			name, host, port, "maildir:"+filepath.Join(e.dir, name), filepath.Join(e.dir, "state"), strings.Join(extra, "\n"))
	}
	blocker := filepath.Join(e.dir, "a-file")
	writeFile(t, blocker, "not a directory")
	wrongFP := strings.Repeat("00:", 31) + "00"

	tests := []struct {
		name     string
		accounts []string
		code     int
		stderr   []string
	}{
		{"new mail", []string{e.account("ok", "maildir:"+filepath.Join(e.dir, "ok"))}, 0, nil},
		{"auth", []string{strings.Replace(e.account("auth", "maildir:"+filepath.Join(e.dir, "auth")), `password = "secret"`, `password = "wrong"`, 1)},
			fetchExitAuth, []string{"authentication failed", "-ERR"}},
		{"tls pin", []string{strings.Replace(e.account("pin", "maildir:"+filepath.Join(e.dir, "pin")), e.fp, wrongFP, 1)},
			fetchExitTLS, []string{"expected sha256:" + wrongFP, "presented sha256:" + e.fp}},
		{"starttls not offered", []string{plainAt("stls", noSTLS, `tls = "starttls"`)}, fetchExitTLS, []string{"does not offer STLS"}},
		{"network", []string{plainAt("net", refused, `tls = "none"`)}, fetchExitNetwork, []string{"connection refused"}},
		{"protocol", []string{plainAt("proto", garbage, `tls = "none"`)}, fetchExitProtocol, []string{"protocol error"}},
		{"delivery", []string{e.account("dlv", "maildir:"+filepath.Join(blocker, "Maildir"))}, fetchExitDelivery, []string{"local delivery failed"}},
		{"config", []string{e.account("cfg", "maildir:/x", "colour = \"red\"")}, exitConfig, []string{"fetch.toml:", "colour: [[account]] 1: unknown key"}},
		{"several: auth beats network", []string{
			plainAt("net2", refused, `tls = "none"`),
			strings.Replace(e.account("auth2", "maildir:"+filepath.Join(e.dir, "auth2")), `password = "secret"`, `password = "wrong"`, 1),
		}, fetchExitAuth, []string{"connection refused", "authentication failed"}},
		{"several: network beats new mail", []string{
			e.account("ok2", "maildir:"+filepath.Join(e.dir, "ok2")),
			plainAt("net3", refused, `tls = "none"`),
		}, fetchExitNetwork, []string{"connection refused"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(t, "", "fetch", "-q", "-c", e.config(tt.accounts...))
			if r.Code != tt.code {
				t.Errorf("exit %d, want %d; stderr:\n%s", r.Code, tt.code, r.Stderr)
			}
			for _, s := range tt.stderr {
				if !strings.Contains(r.Stderr, s) {
					t.Errorf("stderr lacks %q:\n%s", s, r.Stderr)
				}
			}
		})
	}

	t.Run("busy", func(t *testing.T) {
		cfgText := e.account("busy", "maildir:"+filepath.Join(e.dir, "busy"))
		cfg, err := fetch.ParseConfig([]byte(cfgText), "x")
		if err != nil {
			t.Fatal(err)
		}
		a := cfg.Accounts[0]
		j, err := fetch.OpenJournal(a.StateDir, a.JournalBase(), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer j.Close()
		r := runCLI(t, "", "fetch", "-q", "-c", e.config(cfgText))
		if r.Code != fetchExitBusy || !strings.Contains(r.Stderr, "another popbox fetch is running") {
			t.Errorf("exit %d, stderr %q; want %d", r.Code, r.Stderr, fetchExitBusy)
		}
	})
	t.Run("usage", func(t *testing.T) {
		cfg := e.config(e.account("u", "maildir:/x"))
		for _, args := range [][]string{
			{"fetch", "-c", cfg, "--account", "nope"},
			{"fetch", "-c", cfg, "--interval", "1m"},
			{"fetch", "-c", cfg, "extra"},
		} {
			if r := runCLI(t, "", args...); r.Code != exitUsage {
				t.Errorf("popbox %s: exit %d, want %d (stderr %q)", strings.Join(args, " "), r.Code, exitUsage, r.Stderr)
			}
		}
	})
	t.Run("help documents the codes", func(t *testing.T) {
		r := runCLI(t, "", "fetch", "--help")
		for _, s := range []string{"0   new mail", "1   no new mail", "2   network", "3   authentication", "4   protocol", "5   TLS", "6   local delivery", "7   mailbox busy", "78  configuration"} {
			if !strings.Contains(r.Stdout, s) {
				t.Errorf("fetch --help lacks %q", s)
			}
		}
	})
}

// TestFetchPasswordCommand: password_command's first output line is the
// password; a failing command is a configuration error.
func TestFetchPasswordCommand(t *testing.T) {
	t.Parallel()
	e := newFetchEnv(t)
	e.deliver("Subject: x\n\nx\n")
	acct := strings.Replace(e.account("pc", "maildir:"+filepath.Join(e.dir, "pc")), `password = "secret"`, `password_command = "echo secret; echo ignored"`, 1)
	if r := runCLI(t, "", "fetch", "-q", "-c", e.config(acct)); r.Code != 0 {
		t.Errorf("exit %d: %s", r.Code, r.Stderr)
	}
	bad := strings.Replace(acct, "echo secret; echo ignored", "exit 3", 1)
	if r := runCLI(t, "", "fetch", "-q", "-c", e.config(bad)); r.Code != exitConfig || !strings.Contains(r.Stderr, "password_command") {
		t.Errorf("failing password_command: exit %d, stderr %q", r.Code, r.Stderr)
	}
	none := strings.Replace(acct, `password_command = "echo secret; echo ignored"`, "", 1)
	if r := runCLI(t, "", "fetch", "-q", "-c", e.config(none)); r.Code != exitConfig || !strings.Contains(r.Stderr, "no password") {
		t.Errorf("no password off a terminal: exit %d, stderr %q", r.Code, r.Stderr)
	}
}

// fetchProc is a popbox fetch started in the background.
type fetchProc struct {
	cmd    *exec.Cmd
	stderr *lineLog
	exited chan struct{}
	err    error
}

func startFetch(t *testing.T, args ...string) *fetchProc {
	t.Helper()
	p := &fetchProc{stderr: newLineLog(), exited: make(chan struct{})}
	p.cmd = exec.Command(popboxBin, append([]string{"fetch"}, args...)...)
	p.cmd.Stderr = p.stderr
	p.cmd.Env = childEnv()
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.exited
	})
	return p
}

// wait returns the exit status, or -1 for death by signal.
func (p *fetchProc) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(timeout):
		t.Fatalf("popbox fetch did not exit within %v; stderr:\n%s", timeout, p.stderr)
	}
	var ee *exec.ExitError
	switch {
	case p.err == nil:
		return 0
	case errors.As(p.err, &ee):
		return ee.ExitCode()
	}
	t.Fatal(p.err)
	return 0
}

// TestFetchKill is the central promise: popbox fetch killed with SIGKILL
// at random moments, over and over, while mail keeps arriving, then run
// once to completion, has stored every message exactly once, and the
// server holds what the policy says: nothing in delete mode, everything in
// keep mode.
func TestFetchKill(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		keep bool
		kind string
	}{
		{"delete-maildir", false, "maildir"},
		{"keep-maildir", true, "maildir"},
		{"delete-mbox", false, "mbox"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			testFetchKill(t, tc.keep, tc.kind)
		})
	}
}

func testFetchKill(t *testing.T, keep bool, kind string) {
	const (
		initial  = 300
		rounds   = 30
		perRound = 20 // new messages every round
	)
	e := newFetchEnv(t)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 2))
	var all []string
	newMsg := func() string {
		i := len(all)
		size := 200 + rng.IntN(6000)
		if i%25 == 0 {
			size = 200_000 + rng.IntN(300_000) // some long enough to be killed in
		}
		var b strings.Builder
		fmt.Fprintf(&b, "From: kill@example.org\nMessage-ID: <%d.%d@kill>\nSubject: message %d\n\n", seed, i, i)
		if i%7 == 0 {
			b.WriteString(".\n..\nFrom the start\n")
		}
		for b.Len() < size {
			fmt.Fprintf(&b, "%d %x\n", i, rng.Uint64())
		}
		if i%11 == 0 {
			b.WriteString("no final newline")
		}
		m := b.String()
		all = append(all, m)
		return m
	}
	for range initial {
		e.deliver(newMsg())
	}
	path := filepath.Join(e.dir, "local")
	spec := kind + ":" + path
	keepLine := "keep = false"
	if keep {
		keepLine = "keep = true"
	}
	cfg := e.config(e.account("kill", spec, keepLine))

	// progress measures the local store: files in new/, or mbox bytes.
	progress := func() int64 {
		if kind == "maildir" {
			ents, _ := os.ReadDir(filepath.Join(path, "new"))
			return int64(len(ents))
		}
		fi, err := os.Stat(path)
		if err != nil {
			return 0
		}
		return fi.Size()
	}

	codes := map[string]int{}
	for round := range rounds {
		for range perRound {
			e.deliver(newMsg())
		}
		// A dot-lock left by the killed fetch names a dead process, which
		// the next fetch breaks at once (fetch/dest): nothing is aged here.
		before := progress()
		p := startFetch(t, "-q", "-c", cfg)
		// Even rounds: SIGKILL after a random delay of 0-300 ms, which
		// lands anywhere from start-up to the end of the session. Odd
		// rounds: SIGKILL as soon as the local store has grown by a
		// random amount, which lands in the middle of deliveries.
		how := "delay"
		if round%2 == 0 {
			select {
			case <-p.exited:
			case <-time.After(time.Duration(rng.IntN(300)) * time.Millisecond):
				p.cmd.Process.Signal(syscall.SIGKILL)
			}
		} else {
			how = "progress"
			step := int64(1 + rng.IntN(perRound))
			if kind == "mbox" {
				step = int64(1 + rng.IntN(1<<20))
			}
			deadline := time.Now().Add(10 * time.Second)
			for progress() < before+step && time.Now().Before(deadline) {
				select {
				case <-p.exited:
					deadline = time.Time{}
				case <-time.After(200 * time.Microsecond):
				}
			}
			p.cmd.Process.Signal(syscall.SIGKILL)
		}
		code := p.wait(t, cmdTimeout)
		codes[fmt.Sprintf("%s:%d", how, code)]++
		switch code {
		case -1, 0, 1, fetchExitBusy:
			// killed, finished, nothing new, or the server still held the
			// lock of the session killed just before
		default:
			t.Fatalf("round %d: exit %d:\n%s", round, code, p.stderr)
		}
	}
	t.Logf("exit statuses over %d rounds (-1: killed): %v", rounds, codes)

	// The final clean run; the server may hold the last killed session's
	// lock for a moment.
	var final int
	for try := 0; ; try++ {
		p := startFetch(t, "-q", "-c", cfg)
		final = p.wait(t, cmdTimeout)
		if final != fetchExitBusy || try == 20 {
			if final != 0 && final != 1 {
				t.Fatalf("final run: exit %d:\n%s", final, p.stderr)
			}
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if diff := cmp.Diff(hashes(all), hashes(localMessages(t, spec))); diff != "" {
		t.Errorf("local store is not every message exactly once (-want +got):\n%s", diff)
		known := map[string]bool{}
		for _, h := range hashes(all) {
			known[h] = true
		}
		for _, m := range localMessages(t, spec) {
			if !known[hashes([]string{m})[0]] {
				t.Logf("a local message that was never sent (%d bytes): %q ... %q", len(m), m[:min(len(m), 150)], m[max(0, len(m)-100):])
			}
		}
	}
	onServer := e.serverMessages()
	if keep {
		if diff := cmp.Diff(hashes(all), hashes(onServer)); diff != "" {
			t.Errorf("keep mode: server lost or gained messages (-want +got):\n%s", diff)
		}
	} else if len(onServer) != 0 {
		t.Errorf("delete mode: %d messages left on the server", len(onServer))
	}
}

// TestFetchDaemon: --daemon fetches at every interval until SIGTERM, then
// exits 0.
func TestFetchDaemon(t *testing.T) {
	t.Parallel()
	e := newFetchEnv(t)
	e.deliver("Subject: first\n\n1\n")
	spec := "maildir:" + filepath.Join(e.dir, "Mail")
	p := startFetch(t, "--daemon", "--interval", "1s", "-c", e.config(e.account("d", spec, "keep = false")))
	waitFor := func(n int) {
		t.Helper()
		for deadline := time.Now().Add(15 * time.Second); len(localMessages(t, spec)) < n; time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("the daemon did not fetch %d messages; stderr:\n%s", n, p.stderr)
			}
		}
	}
	waitFor(1)
	e.deliver("Subject: second\n\n2\n", "Subject: third\n\n3\n")
	waitFor(3)
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t, 10*time.Second); code != 0 {
		t.Errorf("daemon exit %d after SIGTERM; stderr:\n%s", code, p.stderr)
	}
	if !strings.Contains(p.stderr.String(), "msg=stopped") {
		t.Errorf("no stop logged:\n%s", p.stderr)
	}
	if n := len(e.serverMessages()); n != 0 {
		t.Errorf("%d messages left on the server", n)
	}
}

// TestFetchSIGTERMMidRun: a SIGTERM while a large mailbox is being fetched
// ends the run soon, cleanly (QUIT), with the messages in hand delivered;
// nothing is lost, and a second run completes the job.
func TestFetchSIGTERMMidRun(t *testing.T) {
	t.Parallel()
	e := newFetchEnv(t)
	var msgs []string
	for i := range 200 {
		m := fmt.Sprintf("Subject: m%d\n\n%s\n", i, strings.Repeat("x", 20000))
		msgs = append(msgs, m)
	}
	e.deliver(msgs...)
	spec := "maildir:" + filepath.Join(e.dir, "Mail")
	cfg := e.config(e.account("t", spec, "keep = false"))
	p := startFetch(t, "-c", cfg)
	for deadline := time.Now().Add(10 * time.Second); len(localMessages(t, spec)) == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("nothing fetched; stderr:\n%s", p.stderr)
		}
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	code := p.wait(t, 10*time.Second)
	if code != 0 {
		t.Errorf("exit %d after SIGTERM, want 0 (new mail); stderr:\n%s", code, p.stderr)
	}
	got := len(localMessages(t, spec))
	left := len(e.serverMessages())
	t.Logf("after SIGTERM: %d delivered, %d left on the server", got, left)
	if got+left < len(msgs) {
		t.Errorf("%d delivered + %d on the server < %d: lost mail", got, left, len(msgs))
	}
	r := runCLI(t, "", "fetch", "-q", "-c", cfg)
	if r.Code != 0 && r.Code != 1 {
		t.Fatalf("second run: exit %d: %s", r.Code, r.Stderr)
	}
	if diff := cmp.Diff(hashes(msgs), hashes(localMessages(t, spec))); diff != "" {
		t.Errorf("local store (-want +got):\n%s", diff)
	}
}

// TestFetchProgressOnTerminal: on a terminal popbox fetch draws a progress
// bar per account (messages, bytes) and asks for a missing password
// without echo.
func TestFetchProgressOnTerminal(t *testing.T) {
	t.Parallel()
	e := newFetchEnv(t)
	for i := range 20 {
		e.deliver(fmt.Sprintf("Subject: m%d\n\n%s\n", i, strings.Repeat("p", 5000)))
	}
	spec := "maildir:" + filepath.Join(e.dir, "Mail")
	acct := strings.Replace(e.account("tty", spec), "password = \"secret\"\n", "", 1)
	master, tty := openPTY(t)
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, popboxBin, "fetch", "-c", e.config(acct))
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	cmd.Env = childEnv()
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	screen := newLineLog()
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			screen.Write(buf[:n])
			if err != nil {
				return
			}
		}
	}()
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	if !waitOutput(screen, exited, "Password for alice at 127.0.0.1 (account tty): ", ioTimeout) {
		t.Fatalf("no password prompt; screen %q", screen)
	}
	time.Sleep(100 * time.Millisecond) // let it turn echo off
	master.WriteString("secret\n")
	select {
	case <-exited:
	case <-time.After(cmdTimeout):
		t.Fatalf("popbox fetch did not exit; screen %q", screen)
	}
	if waitErr != nil {
		t.Errorf("popbox fetch: %v; screen %q", waitErr, screen)
	}
	// The last lines may still be on their way through the pty when the
	// process has exited.
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(screen.String(), "tty 20/20 msgs") && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	out := screen.String()
	t.Logf("screen: %q", out)
	for _, want := range []string{"tty 20/20 msgs", "100%"} {
		if !strings.Contains(out, want) {
			t.Errorf("the terminal did not show %q: %q", want, out)
		}
	}
	if strings.Contains(out, "secret") {
		t.Errorf("the password was echoed: %q", out)
	}
	if strings.Contains(out, "level=INFO") {
		t.Errorf("info log lines on a terminal with progress bars: %q", out)
	}
	if n := len(localMessages(t, spec)); n != 20 {
		t.Errorf("%d messages fetched, want 20", n)
	}
}

// TestFetchSeveralAccounts: all accounts of the file run in one
// invocation, each into its own destination; --account picks some.
func TestFetchSeveralAccounts(t *testing.T) {
	t.Parallel()
	e := newFetchEnv(t)
	addUser(t, e.data, "bob", "bobpw")
	e.deliver("Subject: for alice\n\na\n")
	if _, err := e.store.Deliver(context.Background(), "bob", strings.NewReader("Subject: for bob\n\nb\n")); err != nil {
		t.Fatal(err)
	}
	aliceSpec := "maildir:" + filepath.Join(e.dir, "alice")
	bobSpec := "mbox:" + filepath.Join(e.dir, "bob.mbox")
	bob := strings.NewReplacer(`user = "alice"`, `user = "bob"`, `password = "secret"`, `password = "bobpw"`).Replace(e.account("bob", bobSpec))
	cfg := e.config(e.account("alice", aliceSpec), bob)

	if r := runCLI(t, "", "fetch", "-q", "-c", cfg, "--account", "bob"); r.Code != 0 {
		t.Fatalf("fetch --account bob: exit %d: %s", r.Code, r.Stderr)
	}
	if n := len(localMessages(t, aliceSpec)); n != 0 {
		t.Errorf("--account bob fetched %d messages for alice", n)
	}
	r := runCLI(t, "", "fetch", "-c", cfg)
	if r.Code != 0 {
		t.Fatalf("fetch: exit %d: %s", r.Code, r.Stderr)
	}
	for _, want := range []string{`account=alice fetched=1`, `account=bob fetched=0`} {
		if !strings.Contains(r.Stderr, want) {
			t.Errorf("log lacks %q:\n%s", want, r.Stderr)
		}
	}
	if diff := cmp.Diff([]string{"Subject: for alice\n\na\n"}, localMessages(t, aliceSpec)); diff != "" {
		t.Errorf("alice's Maildir (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"Subject: for bob\n\nb\n"}, localMessages(t, bobSpec)); diff != "" {
		t.Errorf("bob's mbox (-want +got):\n%s", diff)
	}
}

// localMessages returns the messages of a destination spec, as
// mailtest.Local does.
func localMessages(t *testing.T, spec string) []string {
	t.Helper()
	msgs, err := mailtest.Local(spec)
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}
