package interop

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestCrashRecovery is the durability proof of the whole system: rounds in
// which mail is delivered and fetched continuously while `popbox serve` is
// killed with SIGKILL at a random moment, then restarted on the same data
// directory and checked against what every client was promised.
//
// In each round, against one data directory:
//
//   - LMTP clients (over DATA/lmtp.sock, one or two recipients per message,
//     a few transactions per connection, now and then a transfer cut off
//     in the middle of DATA) and loops running `popbox deliver` processes
//     deliver continuously. A copy (serial, user) is ACKNOWLEDGED only when
//     its recipient got 250 (LMTP) or the process exited 0 (deliver);
//   - POP3 sessions for every user (two competing for the first user, so
//     that [IN-USE] happens) log in, check STAT, LIST and UIDL against each
//     other, RETR some messages and compare them octet for octet with what
//     was sent, DELE some, and then QUIT (a deletion is COMMITTED when the
//     +OK arrives, IN FLIGHT when QUIT was sent and no answer came) or
//     drop the connection (the deletions must not apply);
//   - after 50-500 ms the server gets SIGKILL, and so does each `popbox
//     deliver` still running with probability 1/2.
//
// Before the restart the Maildirs are read as the crash left them (every
// message file already carries its UIDL, the UID counter is intact and
// ahead of every UIDL in use). After the restart every mailbox is read
// whole over POP3 and then on disk, and:
//
//  1. every acknowledged copy is there exactly once, unless a committed
//     QUIT deleted it;
//  2. nothing that was ever seen is missing unless a QUIT deleted it; a
//     copy whose QUIT was in flight may be there or not (either is then
//     final), never twice;
//  3. a copy's UIDL never changes (also against the UIDL LMTP's 250 gave)
//     and a UIDL never names another copy;
//  4. STAT, LIST and UIDL agree, LIST sizes are what RETR sends, and the
//     store agrees with itself: every file in new/ and cur/ is served, with
//     its UIDL and size in its name, popbox-index lists exactly those
//     files, popbox-uidnext has their totals and is above every UIDL ever
//     used, and popbox-trash/ holds every deleted copy, once;
//  5. a copy that was not acknowledged is there at most once, and if it is
//     not there at a restart it never appears later; a transfer cut off in
//     DATA never reaches a mailbox.
//
// The verification also deletes (with a QUIT it waits for) part of what
// has survived two restarts, so that the mailboxes stay small.
// POPBOX_CRASH_ROUNDS sets the number of rounds (for longer runs by hand).
func TestCrashRecovery(t *testing.T) {
	skipOnSuiteStore(t, "it checks the Maildir files a killed server left")
	bin, err := popboxBinary()
	if err != nil {
		t.Fatal(err)
	}
	rounds, least := crashRoundsFull, crashRoundsLeast
	if testing.Short() {
		rounds, least = crashRoundsShort, crashRoundsShort
	}
	if s := os.Getenv("POPBOX_CRASH_ROUNDS"); s != "" {
		if rounds, err = strconv.Atoi(s); err != nil || rounds < 1 {
			t.Fatalf("POPBOX_CRASH_ROUNDS=%q: want a positive number", s)
		}
		least = rounds
	}
	seed := rand.Uint64()
	t.Logf("seed %#x (message contents), %d rounds", seed, rounds)

	ct := &crashTest{
		t:    t,
		bin:  bin,
		data: t.TempDir(),
		m:    newCrashModel(t, seed),
		rnd:  rand.New(rand.NewPCG(seed, 0)),
	}
	ct.cfg = filepath.Join(t.TempDir(), "popbox.toml")
	// The defaults, spelled out: deleted mail is kept (and checked for in
	// popbox-trash/), LMTP on DATA/lmtp.sock.
	config := "[mail]\nkeep_deleted_days = 7\n\n[lmtp]\nsocket = \"lmtp.sock\"\n"
	if err := os.WriteFile(ct.cfg, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	ct.sock = filepath.Join(ct.data, "lmtp.sock")
	admin := &server{bin: bin, data: ct.data}
	for i := range crashUsers {
		u := crashUser{name: fmt.Sprintf("crash%d", i+1), pw: fmt.Sprintf("Crash-pw-%d-7391", i+1)}
		admin.addUser(t, u.name, u.pw)
		ct.users = append(ct.users, u)
	}
	t.Cleanup(ct.cleanup)

	start := time.Now()
	ct.restart()
	ct.verify(0) // creates every mailbox, with its counter
	for n := 1; n <= rounds && !t.Failed(); n++ {
		if n > least && time.Since(start) > crashBudget {
			t.Logf("%v spent: stopping after %d rounds", crashBudget, n-1)
			break
		}
		rd := ct.runRound(n)
		ct.running = rd
		ct.scanCrashState(rd)
		ct.restart()
		ct.verify(n)
		rd.line.WriteString(ct.m.restartLine())
		ct.log = append(ct.log, rd.line.String())
		ct.running = nil
		t.Log(rd.line.String())
	}
	ct.stopServer()
	t.Log(ct.m.summary(len(ct.log), time.Since(start)))
}

const (
	crashRoundsFull  = 50
	crashRoundsLeast = 30               // more only while within crashBudget
	crashBudget      = 60 * time.Second // of rounds, so the test takes at most about 90 s
	crashRoundsShort = 8
	crashUsers       = 4
	crashLMTPClients = 4
	crashDeliverers  = 2
	crashRETRs       = 12 // most RETR commands in a session during a round
	crashKillMin     = 50 * time.Millisecond
	crashKillMax     = 500 * time.Millisecond
	crashIOTimeout   = 15 * time.Second
	crashWorkersWait = 60 * time.Second // for clients and deliver processes after the kill
	crashDomain      = "example.org"
	crashSerialField = "X-Crash-Serial"

	crashViaLMTP    = "lmtp"
	crashViaDeliver = "deliver"
)

type crashUser struct{ name, pw string }

// crashTest is the harness: the data directory, the running server, the
// model of what was promised and the round log.
type crashTest struct {
	t     *testing.T
	bin   string
	data  string
	cfg   string
	sock  string
	users []crashUser
	m     *crashModel
	rnd   *rand.Rand // main goroutine only

	srv     *crashServer
	prevLog *serverLog // the log of the server killed last
	log     []string
	running *crashRound // the round being checked, not yet in log
	// trashChecked: trash files whose content has been compared already.
	trashChecked map[string]bool
	// tmpSeen: files in tmp/ counted already (crashed deliveries leave
	// them, for the store to remove after 36 hours).
	tmpSeen map[string]bool
}

// crashServer is one `popbox serve` process.
type crashServer struct {
	cmd    *exec.Cmd
	log    *serverLog
	exited chan error
	plain  string
}

// restart starts popbox serve on the data directory and waits until it
// listens for POP3 and LMTP.
func (ct *crashTest) restart() {
	t := ct.t
	t.Helper()
	s := &crashServer{log: newServerLog(), exited: make(chan error, 1)}
	s.cmd = exec.Command(ct.bin, "serve", "--allow-root", "--data", ct.data,
		"--listen", "127.0.0.1:0", "--listen-tls", "127.0.0.1:0", "-c", ct.cfg)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	s.cmd.WaitDelay = stopTimeout
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("starting popbox serve: %v", err)
	}
	go func() { s.exited <- s.cmd.Wait() }()
	ct.srv = s
	deadline := time.NewTimer(startTimeout)
	defer deadline.Stop()
	for s.plain == "" {
		select {
		case l := <-s.log.listening:
			if l.proto == "pop3" {
				s.plain = l.addr
			}
		case err := <-s.exited:
			s.exited <- err
			t.Fatalf("popbox serve exited during start-up (%v); its log:\n%s%s", err, s.log, ct.prevLogText())
		case <-deadline.C:
			t.Fatalf("popbox serve did not log `msg=listening proto=pop3` within %v; its log:\n%s%s",
				startTimeout, s.log, ct.prevLogText())
		}
	}
	// The LMTP line names a path, which parseListening does not take.
	for !strings.Contains(s.log.String(), "msg=listening proto=lmtp addr="+ct.sock) {
		select {
		case err := <-s.exited:
			s.exited <- err
			t.Fatalf("popbox serve exited during start-up (%v); its log:\n%s%s", err, s.log, ct.prevLogText())
		case <-deadline.C:
			t.Fatalf("popbox serve did not listen for LMTP on %s within %v (stale socket after SIGKILL?); its log:\n%s%s",
				ct.sock, startTimeout, s.log, ct.prevLogText())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// kill sends SIGKILL to a server that must still be running.
func (ct *crashTest) kill() {
	s := ct.srv
	select {
	case err := <-s.exited:
		s.exited <- err
		ct.t.Errorf("popbox serve died by itself before the kill (%v); its log:\n%s", err, s.log)
	default:
		if err := s.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			ct.t.Errorf("SIGKILL to popbox serve: %v", err)
		}
	}
	err := <-s.exited
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		ct.t.Errorf("popbox serve ended with %v, want death by SIGKILL; its log:\n%s", err, s.log)
	}
	ct.prevLog = s.log
	ct.srv = nil
}

// checkLog looks through a server's whole log for what no kill can
// excuse: an error (a failed commit or delivery), a panic, or a warning
// (the store warns when it finds its counter damaged or lost, or cannot
// rename a file), except the one about running as root.
func (ct *crashTest) checkLog(l *serverLog) {
	l.mu.Lock()
	data := bytes.Clone(l.buf.Bytes())
	l.mu.Unlock()
	bad := 0
	for line := range strings.Lines(string(data)) {
		if strings.Contains(line, "level=ERROR") || strings.Contains(line, "panic") ||
			strings.Contains(line, "level=WARN") && !strings.Contains(line, "running as root") {
			if bad++; bad <= 5 {
				ct.m.failf("popbox serve logged: %s", strings.TrimSpace(line))
			}
		}
	}
}

// stopServer ends the last server with SIGTERM, which it must obey at once
// and cleanly (as startServer's servers).
func (ct *crashTest) stopServer() {
	t := ct.t
	s := ct.srv
	ct.srv = nil
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Errorf("SIGTERM to popbox serve: %v", err)
	}
	select {
	case err := <-s.exited:
		if err != nil {
			t.Errorf("popbox serve exited with %v after SIGTERM, want status 0; its log:\n%s", err, s.log)
		}
		ct.checkLog(s.log)
	case <-time.After(stopTimeout):
		s.cmd.Process.Kill()
		<-s.exited
		t.Errorf("popbox serve did not exit within %v of SIGTERM; its log:\n%s", stopTimeout, s.log)
	}
}

// cleanup kills a server a failed test left running and shows the logs.
func (ct *crashTest) cleanup() {
	t := ct.t
	if ct.srv != nil {
		ct.srv.cmd.Process.Kill()
		<-ct.srv.exited
	}
	if !t.Failed() {
		return
	}
	// The finished rounds are in the test's log already.
	if ct.running != nil {
		t.Logf("%s [its check did not finish]", ct.running.line.String())
	}
	if ct.srv != nil {
		t.Logf("log of the last popbox serve:\n%s", ct.srv.log)
	}
	if ct.prevLog != nil {
		t.Logf("log of the popbox serve killed last:\n%s", ct.prevLog)
	}
}

func (ct *crashTest) prevLogText() string {
	if ct.prevLog == nil {
		return ""
	}
	return "\nlog of the popbox serve killed before:\n" + ct.prevLog.String()
}

// crashRound is one round's shared state.
type crashRound struct {
	n      int
	addr   string // POP3 listener
	killed atomic.Bool
	// quitting gets a value when a session sends QUIT with deletions, for
	// the rounds that kill the server during a QUIT.
	quitting chan struct{}
	done     chan struct{}
	line     strings.Builder // the round's log line

	procMu sync.Mutex
	procs  map[*exec.Cmd]bool // running `popbox deliver` -> killed by the test
}

func (rd *crashRound) stopped() bool {
	select {
	case <-rd.done:
		return true
	default:
		return false
	}
}

// pause waits a little before a client tries again, unless the round is over.
func (rd *crashRound) pause(r *rand.Rand) {
	select {
	case <-rd.done:
	case <-time.After(time.Duration(2+r.IntN(15)) * time.Millisecond):
	}
}

// runRound runs the clients, kills the server (and some deliver processes)
// at a random moment and waits for every client to finish.
func (ct *crashTest) runRound(n int) *crashRound {
	rd := &crashRound{n: n, addr: ct.srv.plain, done: make(chan struct{}), procs: map[*exec.Cmd]bool{},
		quitting: make(chan struct{}, 1)}
	ct.m.beginRound(n)
	var wg sync.WaitGroup
	worker := func(f func(r *rand.Rand)) {
		r := rand.New(rand.NewPCG(ct.rnd.Uint64(), ct.rnd.Uint64()))
		wg.Go(func() { f(r) })
	}
	for i := range crashLMTPClients {
		worker(func(r *rand.Rand) { ct.lmtpClient(rd, i+1, r) })
	}
	for i := range crashDeliverers {
		worker(func(r *rand.Rand) { ct.deliverLoop(rd, i+1, r) })
	}
	for i, u := range append([]crashUser{ct.users[0]}, ct.users...) {
		worker(func(r *rand.Rand) { ct.popWorker(rd, i+1, u, r) })
	}

	// The kill comes at a random moment; in one round of three at the
	// first QUIT with deletions (plus 0-3 ms) if one comes before that
	// moment, because a kill in the middle of a QUIT is rare otherwise.
	began := time.Now()
	after := crashKillMin + time.Duration(ct.rnd.Int64N(int64(crashKillMax-crashKillMin)))
	how := ""
	time.Sleep(crashKillMin)
	var quitting chan struct{}
	if ct.rnd.IntN(3) == 0 {
		quitting = rd.quitting
		select {
		case <-quitting: // too early
		default:
		}
	}
	select {
	case <-time.After(after - crashKillMin):
	case <-quitting:
		d := time.Duration(ct.rnd.Int64N(int64(3 * time.Millisecond)))
		time.Sleep(d)
		how = fmt.Sprintf(" at a QUIT +%.1fms", d.Seconds()*1000)
	}
	after = time.Since(began)
	rd.killed.Store(true)
	ct.kill()
	killedProcs, running := 0, 0
	rd.procMu.Lock()
	for cmd := range rd.procs {
		running++
		if ct.rnd.IntN(2) == 0 {
			rd.procs[cmd] = true
			cmd.Process.Kill()
			killedProcs++
		}
	}
	rd.procMu.Unlock()
	close(rd.done)
	ct.checkLog(ct.prevLog)
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(crashWorkersWait):
		ct.t.Fatalf("round %d: clients still running %v after the kill", n, crashWorkersWait)
	}
	fmt.Fprintf(&rd.line, "round %2d: killed at %3dms%s (%d/%d deliver processes too); %s",
		n, after.Milliseconds(), how, killedProcs, running, ct.m.roundLine())
	return rd
}

// lmtpClient delivers over the LMTP socket until the round ends.
func (ct *crashTest) lmtpClient(rd *crashRound, id int, r *rand.Rand) {
	who := fmt.Sprintf("round %d: LMTP client %d", rd.n, id)
	for !rd.stopped() {
		c, err := net.DialTimeout("unix", ct.sock, crashIOTimeout)
		if err != nil {
			ct.clientError(rd, who+": connecting", err)
			rd.pause(r)
			continue
		}
		ct.lmtpSession(rd, who, c, r)
		c.Close()
	}
}

var crashUIDLReply = regexp.MustCompile(`UIDL (\S+)`)

// lmtpSession runs a few transactions on one connection.
func (ct *crashTest) lmtpSession(rd *crashRound, who string, c net.Conn, r *rand.Rand) {
	tp := textproto.NewConn(c)
	step := func(cmd string, want int) error {
		c.SetDeadline(time.Now().Add(crashIOTimeout))
		if cmd != "" {
			if err := tp.PrintfLine("%s", cmd); err != nil {
				return fmt.Errorf("%s: %w", cmd, err)
			}
		}
		if _, _, err := tp.ReadResponse(want); err != nil {
			return fmt.Errorf("%q: %w", cmd, err)
		}
		return nil
	}
	if err := step("", 220); err != nil {
		ct.clientError(rd, who+": greeting", err)
		return
	}
	if err := step("LHLO crash.test", 250); err != nil {
		ct.clientError(rd, who, err)
		return
	}
	for range 1 + r.IntN(5) {
		if rd.stopped() {
			return
		}
		users := ct.pickUsers(r)
		abort := r.IntN(30) == 0
		serial, data := ct.m.newMessage(crashViaLMTP, users, abort)
		from := crashFrom(serial)
		if err := step("MAIL FROM:<"+from+">", 250); err != nil {
			ct.clientError(rd, who, err)
			return
		}
		for _, u := range users {
			if err := step("RCPT TO:<"+u+"@"+crashDomain+">", 250); err != nil {
				ct.clientError(rd, who, err)
				return
			}
		}
		if err := step("DATA", 354); err != nil {
			ct.clientError(rd, who, err)
			return
		}
		var stuffed bytes.Buffer
		dw := textproto.NewWriter(bufio.NewWriter(&stuffed)).DotWriter()
		dw.Write(data)
		dw.Close()
		if abort {
			// Half the message, then hang up: it must reach nobody.
			c.Write(stuffed.Bytes()[:stuffed.Len()/2])
			return
		}
		c.SetDeadline(time.Now().Add(crashIOTimeout))
		if _, err := c.Write(stuffed.Bytes()); err != nil {
			ct.m.noReply(serial, users, "LMTP: DATA not sent whole")
			ct.clientError(rd, who+": sending DATA", err)
			return
		}
		// RFC 2033 §4.2: one reply per recipient, in RCPT order.
		for i, u := range users {
			code, msg, err := tp.ReadResponse(0)
			if err != nil {
				ct.m.noReply(serial, users[i:], "LMTP: no reply after DATA")
				ct.clientError(rd, who+": reply after DATA", err)
				return
			}
			if code != 250 {
				ct.m.noReply(serial, users[i:i+1], fmt.Sprintf("LMTP: %d %s", code, msg))
				ct.m.failf("%s: serial %d for %s: DATA answered %d %s, want 250", who, serial, u, code, msg)
				continue
			}
			uidl := ""
			if m := crashUIDLReply.FindStringSubmatch(msg); m != nil {
				uidl = m[1]
			}
			ct.m.acked(crashKey{serial, u}, uidl, "LMTP 250 "+msg)
		}
	}
	step("QUIT", 221)
}

func (ct *crashTest) pickUsers(r *rand.Rand) []string {
	i := r.IntN(len(ct.users))
	if r.IntN(3) != 0 {
		return []string{ct.users[i].name}
	}
	j := (i + 1 + r.IntN(len(ct.users)-1)) % len(ct.users)
	return []string{ct.users[i].name, ct.users[j].name}
}

// deliverLoop runs `popbox deliver` processes one after another until the
// round ends.
func (ct *crashTest) deliverLoop(rd *crashRound, id int, r *rand.Rand) {
	for !rd.stopped() {
		user := ct.users[r.IntN(len(ct.users))].name
		serial, data := ct.m.newMessage(crashViaDeliver, []string{user}, false)
		k := crashKey{serial, user}
		cmd := exec.Command(ct.bin, "deliver", "-c", ct.cfg, "--data", ct.data, user)
		cmd.Stdin = bytes.NewReader(data)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			ct.m.failf("round %d: starting popbox deliver: %v", rd.n, err)
			return
		}
		rd.procMu.Lock()
		rd.procs[cmd] = false
		rd.procMu.Unlock()
		err := cmd.Wait()
		rd.procMu.Lock()
		killed := rd.procs[cmd]
		delete(rd.procs, cmd)
		rd.procMu.Unlock()
		var exit *exec.ExitError
		switch {
		case err == nil:
			ct.m.acked(k, "", "popbox deliver exit 0")
		case killed && errors.As(err, &exit) && exit.Sys().(syscall.WaitStatus).Signal() == syscall.SIGKILL:
			ct.m.noReply(serial, []string{user}, "popbox deliver killed by the test")
		default:
			ct.m.noReply(serial, []string{user}, fmt.Sprintf("popbox deliver: %v", err))
			ct.m.failf("round %d: deliver loop %d: popbox deliver %s (serial %d): %v, want exit 0\n%s",
				rd.n, id, user, serial, err, out.Bytes())
		}
	}
}

// popWorker runs POP3 sessions for one user until the round ends.
func (ct *crashTest) popWorker(rd *crashRound, id int, u crashUser, r *rand.Rand) {
	who := fmt.Sprintf("round %d: POP3 worker %d (%s)", rd.n, id, u.name)
	for !rd.stopped() {
		ct.popSession(rd, who, u, r)
	}
}

func (ct *crashTest) popSession(rd *crashRound, who string, u crashUser, r *rand.Rand) {
	p, err := crashDial(rd.addr)
	if err != nil {
		ct.clientError(rd, who+": connecting", err)
		rd.pause(r)
		return
	}
	defer p.conn.Close()
	if _, err := crashCmd(p, "USER "+u.name); err != nil {
		ct.clientError(rd, who, err)
		return
	}
	if line, err := crashCmd(p, "PASS "+u.pw); err != nil {
		var e *crashERR
		if errors.As(err, &e) && strings.Contains(line, "[IN-USE]") {
			ct.m.count(func(s *crashStats) { s.inUse++ })
			rd.pause(r)
			return
		}
		ct.clientError(rd, who, err)
		return
	}
	ct.m.count(func(s *crashStats) { s.sessions++ })
	box, err := crashListing(p)
	if err != nil {
		ct.clientError(rd, who, err)
		return
	}
	where := fmt.Sprintf("%s, session during round %d", u.name, rd.n)
	ct.m.checkListing(where, box)
	known := map[int]crashKey{}
	got := map[crashKey]int{}
	retrieved := 0
	for _, i := range r.Perm(box.count) {
		n := i + 1
		k, ok := ct.m.lookup(u.name, box.uidl[n])
		if ok {
			known[n] = k
		}
		if (ok && r.IntN(4) != 0) || retrieved >= crashRETRs {
			continue
		}
		data, err := crashMulti(p, fmt.Sprintf("RETR %d", n))
		if err != nil {
			ct.clientError(rd, who, err)
			return
		}
		retrieved++
		if k, ok := ct.m.observe(where, u.name, n, box, data, got, true); ok {
			known[n] = k
		}
	}
	ct.m.count(func(s *crashStats) { s.retrieved += retrieved })
	var dele []crashKey
	for _, n := range slices.Sorted(maps.Keys(known)) {
		if r.IntN(3) != 0 {
			continue
		}
		if _, err := crashCmd(p, fmt.Sprintf("DELE %d", n)); err != nil {
			ct.clientError(rd, who, err)
			return
		}
		dele = append(dele, known[n])
	}
	if r.IntN(4) == 0 {
		ct.m.event(dele, "DELE, then the connection dropped without QUIT")
		ct.m.count(func(s *crashStats) { s.dropped++ })
		return
	}
	ct.m.quitSent(dele)
	if len(dele) > 0 {
		select {
		case rd.quitting <- struct{}{}:
		default:
		}
	}
	if _, err := crashCmd(p, "QUIT"); err != nil {
		ct.clientError(rd, who+": QUIT after "+strconv.Itoa(len(dele))+" DELE", err)
		ct.m.count(func(s *crashStats) { s.quitInFlight++; s.deleInFlight += len(dele) })
		return
	}
	ct.m.quitOK(dele, "QUIT +OK")
	ct.m.count(func(s *crashStats) { s.quits++; s.deleCommitted += len(dele) })
}

// clientError judges an error of a client: an answer the server should not
// have given is a failure; a broken connection is expected once the
// server has been killed, and a failure before.
func (ct *crashTest) clientError(rd *crashRound, who string, err error) {
	if crashIsTransport(err) {
		if rd.killed.Load() {
			return
		}
		ct.m.failf("%s: %v, before the server was killed", who, err)
		return
	}
	ct.m.failf("%s: %v", who, err)
}

func crashIsTransport(err error) bool {
	var ne net.Error
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) || errors.As(err, &ne)
}

// verify reads every mailbox whole after a restart and checks it against
// the model and the files on disk; then it deletes part of what has
// survived two restarts.
func (ct *crashTest) verify(round int) {
	t := ct.t
	t.Helper()
	for _, u := range ct.users {
		where := fmt.Sprintf("%s, check after restart %d", u.name, round)
		p, err := crashDial(ct.srv.plain)
		if err != nil {
			t.Fatalf("%s: %v", where, err)
		}
		crashMust(t, where, p, "USER "+u.name)
		crashMust(t, where, p, "PASS "+u.pw)
		box, err := crashListing(p)
		if err != nil {
			t.Fatalf("%s: %v", where, err)
		}
		ct.m.checkListing(where, box)
		got := map[crashKey]int{}
		served := map[string][]byte{} // UIDL -> RETR
		for n := 1; n <= box.count; n++ {
			data, err := crashMulti(p, fmt.Sprintf("RETR %d", n))
			if err != nil {
				ct.m.failf("%s: RETR %d of %d (UIDL %s, LIST %d octets): %v", where, n, box.count, box.uidl[n], box.size[n], err)
				if crashIsTransport(err) {
					t.FailNow()
				}
				continue
			}
			served[box.uidl[n]] = data
			ct.m.observe(where, u.name, n, box, data, got, false)
		}
		doomed := ct.m.reconcile(where, round, u.name, got, ct.rnd)
		var dele []crashKey
		for _, k := range doomed {
			n := got[k]
			crashMust(t, where, p, fmt.Sprintf("DELE %d", n))
			dele = append(dele, k)
			delete(served, box.uidl[n])
		}
		ct.m.quitSent(dele)
		crashMust(t, where, p, "QUIT")
		ct.m.quitOK(dele, fmt.Sprintf("QUIT +OK (check after restart %d)", round))
		ct.m.count(func(s *crashStats) { s.deleVerify += len(dele) })
		p.conn.Close()
		ct.checkMaildir(where, u.name, served)
	}
}

func crashMust(t *testing.T, where string, p *popConn, cmd string) string {
	t.Helper()
	line, err := crashCmd(p, cmd)
	if err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	return line
}

// The POP3 client: popConn from raw_test.go with errors instead of t.Fatal,
// since most of it runs in client goroutines, and answers told apart from
// broken connections.

// crashERR is a -ERR answer, or a status line that is neither +OK nor -ERR.
type crashERR struct{ cmd, line string }

func (e *crashERR) Error() string {
	return fmt.Sprintf("%s: server answered %q", redact(e.cmd), e.line)
}

// crashBad is a protocol violation in a multi-line answer.
type crashBad struct{ msg string }

func (e *crashBad) Error() string { return e.msg }

func crashDial(addr string) (*popConn, error) {
	c, err := net.DialTimeout("tcp", addr, crashIOTimeout)
	if err != nil {
		return nil, err
	}
	p := &popConn{conn: c, r: bufio.NewReaderSize(c, 64<<10)}
	c.SetDeadline(time.Now().Add(crashIOTimeout))
	greeting, err := p.readLine()
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("greeting: %w", err)
	}
	if !bytes.HasPrefix(greeting, []byte("+OK")) {
		c.Close()
		return nil, &crashERR{"(greeting)", string(greeting)}
	}
	return p, nil
}

func crashCmd(p *popConn, command string) (string, error) {
	p.conn.SetDeadline(time.Now().Add(crashIOTimeout))
	if _, err := p.conn.Write([]byte(command + "\r\n")); err != nil {
		return "", fmt.Errorf("%s: %w", redact(command), err)
	}
	line, err := p.readLine()
	if err != nil {
		return "", fmt.Errorf("%s: %w", redact(command), err)
	}
	if bytes.HasPrefix(line, []byte("+OK")) {
		return string(line), nil
	}
	return string(line), &crashERR{command, string(line)}
}

func crashMulti(p *popConn, command string) ([]byte, error) {
	if _, err := crashCmd(p, command); err != nil {
		return nil, err
	}
	var b bytes.Buffer
	for {
		line, err := p.readLine()
		if err != nil {
			if !crashIsTransport(err) {
				err = &crashBad{err.Error()}
			}
			return nil, fmt.Errorf("%s: %w", command, err)
		}
		if string(line) == "." {
			return b.Bytes(), nil
		}
		if rest, ok := bytes.CutPrefix(line, []byte(".")); ok {
			if !bytes.HasPrefix(rest, []byte(".")) {
				return nil, &crashBad{fmt.Sprintf("%s: line %.80q starts with an unstuffed '.'", command, line)}
			}
			line = rest
		}
		b.Write(line)
		b.WriteString("\r\n")
	}
}

// crashBox is what STAT, LIST and UIDL said at the start of a session.
type crashBox struct {
	count, octets int
	size          map[int]int
	uidl          map[int]string
}

func crashListing(p *popConn) (crashBox, error) {
	var box crashBox
	line, err := crashCmd(p, "STAT")
	if err != nil {
		return box, err
	}
	if _, err := fmt.Sscanf(line, "+OK %d %d", &box.count, &box.octets); err != nil {
		return box, &crashBad{fmt.Sprintf("STAT: %q: %v", line, err)}
	}
	parse := func(cmd string) (map[int]string, error) {
		data, err := crashMulti(p, cmd)
		if err != nil {
			return nil, err
		}
		m := map[int]string{}
		for l := range strings.Lines(string(data)) {
			ns, v, ok := strings.Cut(strings.TrimSuffix(l, "\r\n"), " ")
			n, err := strconv.Atoi(ns)
			if !ok || err != nil || n < 1 || m[n] != "" {
				return nil, &crashBad{fmt.Sprintf("%s: bad or repeated line %q", cmd, l)}
			}
			m[n] = v
		}
		return m, nil
	}
	if box.uidl, err = parse("UIDL"); err != nil {
		return box, err
	}
	list, err := parse("LIST")
	if err != nil {
		return box, err
	}
	box.size = map[int]int{}
	for n, v := range list {
		size, err := strconv.Atoi(v)
		if err != nil || size < 0 {
			return box, &crashBad{fmt.Sprintf("LIST: message %d has size %q", n, v)}
		}
		box.size[n] = size
	}
	return box, nil
}

// The model: every message sent, every copy (serial, user) with what was
// promised about it, and every UIDL seen.

type crashKey struct {
	serial int
	user   string
}

func (k crashKey) String() string { return fmt.Sprintf("serial %d for %s", k.serial, k.user) }

type crashMsg struct {
	via     string
	rcpts   []string
	round   int
	aborted bool
}

type crashDel int

const (
	delNone      crashDel = iota
	delInFlight           // QUIT sent, no answer: either outcome is allowed, once
	delCommitted          // QUIT answered +OK
	delGone               // was in flight, and found gone at the restart
)

type crashCopy struct {
	key      crashKey
	acked    bool
	ackUIDL  string
	uidl     string // as first seen (LMTP reply or POP3)
	seen     bool   // served by POP3 at least once
	absent   bool   // not acknowledged and not there at a restart: must never appear
	verified int    // restarts it was there at
	del      crashDel
	events   []string
}

type crashStats struct {
	messages, copies, lmtpCopies, deliverCopies int
	ackLMTP, ackDeliver, aborted, unacked       int
	sessions, inUse, retrieved, quits, dropped  int
	quitInFlight, deleInFlight, deleCommitted   int
	deleVerify                                  int
	// at the restarts
	unackedThere, unackedAbsent, inFlightKept, inFlightGone int
	tmpLeft, unindexed, staleRecords, badIndexLines         int
	present                                                 int
}

func (s *crashStats) add(o crashStats) {
	s.messages += o.messages
	s.copies += o.copies
	s.lmtpCopies += o.lmtpCopies
	s.deliverCopies += o.deliverCopies
	s.ackLMTP += o.ackLMTP
	s.ackDeliver += o.ackDeliver
	s.aborted += o.aborted
	s.unacked += o.unacked
	s.sessions += o.sessions
	s.inUse += o.inUse
	s.retrieved += o.retrieved
	s.quits += o.quits
	s.dropped += o.dropped
	s.quitInFlight += o.quitInFlight
	s.deleInFlight += o.deleInFlight
	s.deleCommitted += o.deleCommitted
	s.deleVerify += o.deleVerify
	s.unackedThere += o.unackedThere
	s.unackedAbsent += o.unackedAbsent
	s.inFlightKept += o.inFlightKept
	s.inFlightGone += o.inFlightGone
	s.tmpLeft += o.tmpLeft
	s.unindexed += o.unindexed
	s.staleRecords += o.staleRecords
	s.badIndexLines += o.badIndexLines
	s.present = max(s.present, o.present)
}

type crashModel struct {
	t    *testing.T
	seed uint64

	mu       sync.Mutex
	round    int
	serial   int
	msgs     map[int]*crashMsg
	copies   map[crashKey]*crashCopy
	byUser   map[string][]*crashCopy
	owner    map[string]map[string]crashKey // user -> UIDL -> copy
	cur, tot crashStats
	failures int
}

func newCrashModel(t *testing.T, seed uint64) *crashModel {
	return &crashModel{t: t, seed: seed, msgs: map[int]*crashMsg{}, copies: map[crashKey]*crashCopy{},
		byUser: map[string][]*crashCopy{}, owner: map[string]map[string]crashKey{}}
}

// failf reports a failure; after 40 only the count goes on.
func (m *crashModel) failf(format string, args ...any) {
	m.t.Helper()
	m.mu.Lock()
	m.failures++
	n := m.failures
	m.mu.Unlock()
	switch {
	case n <= 40:
		m.t.Errorf(format, args...)
	case n == 41:
		m.t.Errorf("(more failures follow; not shown)")
	default:
		m.t.Fail()
	}
}

// history describes a copy for a failure report; m.mu must be held.
func (m *crashModel) history(k crashKey) string {
	c := m.copies[k]
	msg := m.msgs[k.serial]
	if c == nil || msg == nil {
		return ""
	}
	state := "not acknowledged"
	if c.acked {
		state = "acknowledged"
	}
	return fmt.Sprintf("\n  %s: sent by %s to %s in round %d, %s; history:\n    %s",
		k, msg.via, strings.Join(msg.rcpts, ", "), msg.round, state, strings.Join(c.events, "\n    "))
}

func (m *crashModel) beginRound(n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.round = n
	m.cur = crashStats{}
}

func (m *crashModel) count(f func(*crashStats)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f(&m.cur)
}

// newMessage registers a message before any of it is sent and returns its
// serial and content.
func (m *crashModel) newMessage(via string, rcpts []string, aborted bool) (int, []byte) {
	m.mu.Lock()
	m.serial++
	serial := m.serial
	m.msgs[serial] = &crashMsg{via: via, rcpts: rcpts, round: m.round, aborted: aborted}
	m.cur.messages++
	if aborted {
		m.cur.aborted++
	}
	for _, u := range rcpts {
		k := crashKey{serial, u}
		c := &crashCopy{key: k, events: []string{fmt.Sprintf("r%d: sent by %s", m.round, via)}}
		if aborted {
			c.events[0] += ", transfer cut off in the middle of DATA"
		}
		m.copies[k] = c
		m.byUser[u] = append(m.byUser[u], c)
		m.cur.copies++
		if via == crashViaLMTP {
			m.cur.lmtpCopies++
		} else {
			m.cur.deliverCopies++
		}
	}
	m.mu.Unlock()
	return serial, crashMessage(m.seed, serial, via, rcpts)
}

func (m *crashModel) acked(k crashKey, uidl, how string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.copies[k]
	c.acked = true
	c.events = append(c.events, fmt.Sprintf("r%d: %s", m.round, how))
	if m.msgs[k.serial].via == crashViaLMTP {
		m.cur.ackLMTP++
	} else {
		m.cur.ackDeliver++
	}
	if uidl == "" {
		return
	}
	c.ackUIDL = uidl
	if c.uidl != "" && c.uidl != uidl {
		m.failLocked("%s: LMTP's 250 gave UIDL %s, but POP3 already served it as %s%s", k, uidl, c.uidl, m.history(k))
		return
	}
	if o, ok := m.owner[k.user][uidl]; ok && o != k {
		m.failLocked("%s: LMTP's 250 gave UIDL %s, which is %s's%s%s", k, uidl, o, m.history(k), m.history(o))
		return
	}
	c.uidl = uidl
	m.setOwner(k, uidl)
}

func (m *crashModel) setOwner(k crashKey, uidl string) {
	if m.owner[k.user] == nil {
		m.owner[k.user] = map[string]crashKey{}
	}
	m.owner[k.user][uidl] = k
}

// failLocked is failf with m.mu held.
func (m *crashModel) failLocked(format string, args ...any) {
	m.t.Helper()
	m.mu.Unlock()
	defer m.mu.Lock()
	m.failf(format, args...)
}

func (m *crashModel) noReply(serial int, users []string, why string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, u := range users {
		c := m.copies[crashKey{serial, u}]
		c.events = append(c.events, fmt.Sprintf("r%d: not acknowledged: %s", m.round, why))
		m.cur.unacked++
	}
}

func (m *crashModel) event(keys []crashKey, what string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, k := range keys {
		c := m.copies[k]
		c.events = append(c.events, fmt.Sprintf("r%d: %s", m.round, what))
	}
}

func (m *crashModel) lookup(user, uidl string) (crashKey, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k, ok := m.owner[user][uidl]
	return k, ok
}

func (m *crashModel) quitSent(keys []crashKey) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, k := range keys {
		c := m.copies[k]
		c.del = delInFlight
		c.events = append(c.events, fmt.Sprintf("r%d: DELE, QUIT sent", m.round))
	}
}

func (m *crashModel) quitOK(keys []crashKey, how string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, k := range keys {
		c := m.copies[k]
		c.del = delCommitted
		c.events = append(c.events, fmt.Sprintf("r%d: %s: deletion committed", m.round, how))
	}
}

// checkListing checks STAT, LIST and UIDL against each other.
func (m *crashModel) checkListing(where string, box crashBox) {
	if len(box.uidl) != box.count || len(box.size) != box.count {
		m.failf("%s: STAT counts %d messages, UIDL lists %d, LIST %d", where, box.count, len(box.uidl), len(box.size))
	}
	total := 0
	seen := map[string]int{}
	for n := 1; n <= box.count; n++ {
		u, ok1 := box.uidl[n]
		s, ok2 := box.size[n]
		if !ok1 || !ok2 {
			m.failf("%s: message %d of %d missing from UIDL or LIST", where, n, box.count)
			continue
		}
		total += s
		if !uidlSyntax.MatchString(u) {
			m.failf("%s: UIDL of message %d is %q: not 1-70 octets of 0x21-0x7E", where, n, u)
		}
		if o, dup := seen[u]; dup {
			m.failf("%s: messages %d and %d share UIDL %s", where, o, n, u)
		}
		seen[u] = n
	}
	if total != box.octets {
		m.failf("%s: STAT says %d octets, LIST adds up to %d", where, box.octets, total)
	}
}

// observe checks one message a session retrieved: it must be a copy sent
// to this user, as sent, with the size LIST gave and the UIDL it always had,
// and not be in got (the copies this session has met) already.
func (m *crashModel) observe(where, user string, n int, box crashBox, data []byte, got map[crashKey]int, during bool) (crashKey, bool) {
	uidl := box.uidl[n]
	if len(data) != box.size[n] {
		m.failf("%s: RETR %d (UIDL %s) sent %d octets, LIST said %d", where, n, uidl, len(data), box.size[n])
	}
	serial, ok := crashSerialOf(data)
	if !ok {
		m.failf("%s: message %d (UIDL %s) has no %s field: the test never sent it:\n%.400s", where, n, uidl, crashSerialField, data)
		return crashKey{}, false
	}
	k := crashKey{serial, user}
	if o, dup := got[k]; dup {
		m.mu.Lock()
		h := m.history(k)
		m.mu.Unlock()
		m.failf("%s: %s is there twice, as message %d (UIDL %s) and message %d (UIDL %s)%s",
			where, k, o, box.uidl[o], n, uidl, h)
		return crashKey{}, false
	}
	got[k] = n

	m.mu.Lock()
	msg, c := m.msgs[serial], m.copies[k]
	switch {
	case msg == nil:
		m.failLocked("%s: message %d (UIDL %s) has serial %d, which was never sent", where, n, uidl, serial)
	case c == nil:
		m.failLocked("%s: message %d (UIDL %s) is serial %d, which went to %s only: delivered to the wrong mailbox",
			where, n, uidl, serial, strings.Join(msg.rcpts, ", "))
	case msg.aborted:
		m.failLocked("%s: message %d (UIDL %s) is %s, whose LMTP transfer was cut off in DATA: it must reach nobody%s",
			where, n, uidl, k, m.history(k))
	case c.absent:
		m.failLocked("%s: message %d (UIDL %s) is %s, which was not there at an earlier restart (not acknowledged), yet it appears now%s",
			where, n, uidl, k, m.history(k))
	case c.del == delCommitted:
		m.failLocked("%s: message %d (UIDL %s) is %s, deleted by a QUIT that was answered +OK%s", where, n, uidl, k, m.history(k))
	case c.del == delGone:
		m.failLocked("%s: message %d (UIDL %s) is %s, which was gone at an earlier restart after a QUIT in flight%s",
			where, n, uidl, k, m.history(k))
	case c.del == delInFlight && during:
		m.failLocked("%s: message %d (UIDL %s) is %s, deleted by a QUIT of this round, yet served again%s",
			where, n, uidl, k, m.history(k))
	case c.uidl != "" && c.uidl != uidl:
		m.failLocked("%s: message %d is %s with UIDL %s, but its UIDL was %s: it changed%s", where, n, k, uidl, c.uidl, m.history(k))
	default:
		if o, ok := m.owner[user][uidl]; ok && o != k {
			m.failLocked("%s: message %d is %s with UIDL %s, but that UIDL was %s's: reused%s%s",
				where, n, k, uidl, o, m.history(k), m.history(o))
			break
		}
		if c.uidl == "" {
			c.events = append(c.events, fmt.Sprintf("r%d: first served as UIDL %s (%s)", m.round, uidl, where))
		}
		c.uidl = uidl
		c.seen = true
		m.setOwner(k, uidl)
	}
	var via string
	var rcpts []string
	if msg != nil {
		via, rcpts = msg.via, msg.rcpts
	}
	m.mu.Unlock()
	if c == nil {
		return crashKey{}, false
	}
	want := crashWire(m.seed, k, via, rcpts)
	if !bytes.Equal(data, want) {
		m.mu.Lock()
		h := m.history(k)
		m.mu.Unlock()
		m.failf("%s: RETR %d (UIDL %s, %s) differs from what was sent: %s%s", where, n, uidl, k, firstDifference(data, want), h)
	}
	return k, true
}

// reconcile compares a mailbox after a restart (got: the copies there, by
// message number) with the model, settles what was open, and picks the
// copies the check deletes.
func (m *crashModel) reconcile(where string, round int, user string, got map[crashKey]int, r *rand.Rand) []crashKey {
	m.mu.Lock()
	defer m.mu.Unlock()
	var doomed []crashKey
	for _, c := range m.byUser[user] {
		k := c.key
		_, there := got[k]
		switch {
		case there:
			// observe has judged whether it may be there.
			if c.del == delInFlight {
				c.del = delNone
				m.cur.inFlightKept++
				c.events = append(c.events, fmt.Sprintf("r%d: still there after the restart: the QUIT in flight did not delete it", round))
			}
			if !c.acked && c.verified == 0 {
				m.cur.unackedThere++
			}
			c.verified++
			m.cur.present++
			if c.verified >= 2 && k.serial%4 != 0 && r.IntN(2) == 0 {
				doomed = append(doomed, k)
			}
		case c.del == delCommitted || c.del == delGone || c.absent:
		case c.del == delInFlight:
			c.del = delGone
			m.cur.inFlightGone++
			c.events = append(c.events, fmt.Sprintf("r%d: gone after the restart: the QUIT in flight deleted it", round))
		case m.msgs[k.serial].aborted:
			c.absent = true
		case c.acked || c.seen:
			why := "acknowledged"
			if !c.acked {
				why = "not acknowledged, but served by POP3 before"
			}
			m.failLocked("%s: %s is missing (%s, never deleted by a QUIT)%s", where, k, why, m.history(k))
			c.absent = true // report it once
		default:
			c.absent = true
			m.cur.unackedAbsent++
			c.events = append(c.events, fmt.Sprintf("r%d: not there after the restart", round))
		}
	}
	slices.SortFunc(doomed, func(a, b crashKey) int { return got[a] - got[b] })
	return doomed
}

// expectedTrash returns the UIDLs of the user's deleted copies, which
// popbox-trash/ must hold, and the copy of every UIDL the model knows.
func (m *crashModel) expectedTrash(user string) (deleted map[string]crashKey, owner map[string]crashKey) {
	m.mu.Lock()
	defer m.mu.Unlock()
	deleted = map[string]crashKey{}
	for _, c := range m.byUser[user] {
		if (c.del == delCommitted || c.del == delGone) && c.uidl != "" {
			deleted[c.uidl] = c.key
		}
	}
	return deleted, maps.Clone(m.owner[user])
}

func (m *crashModel) copyOf(k crashKey) (via string, rcpts []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	msg := m.msgs[k.serial]
	return msg.via, msg.rcpts
}

func (m *crashModel) roundLine() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := &m.cur
	return fmt.Sprintf("%d messages (%d copies: %d acked by LMTP, %d by deliver, %d unacked, %d cut off in DATA); "+
		"%d POP3 sessions (%d [IN-USE]), %d RETR, %d QUIT +OK (%d deletions), %d dropped, %d QUIT in flight (%d deletions)",
		s.messages, s.copies, s.ackLMTP, s.ackDeliver, s.unacked, s.aborted,
		s.sessions, s.inUse, s.retrieved, s.quits, s.deleCommitted, s.dropped, s.quitInFlight, s.deleInFlight)
}

func (m *crashModel) crashLine() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := &m.cur
	return fmt.Sprintf("; crash left %d tmp files, %d files not yet indexed, %d index records of removed files, %d bad index lines",
		s.tmpLeft, s.unindexed, s.staleRecords, s.badIndexLines)
}

// restartLine ends a round: what the restart found; it adds the round's
// numbers to the totals.
func (m *crashModel) restartLine() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := &m.cur
	line := fmt.Sprintf("; after restart: %d messages there, unacked there %d / absent %d, in-flight deletions kept %d / done %d, check deleted %d",
		s.present, s.unackedThere, s.unackedAbsent, s.inFlightKept, s.inFlightGone, s.deleVerify)
	m.tot.add(*s)
	m.cur = crashStats{}
	return line
}

func (m *crashModel) summary(rounds int, took time.Duration) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := &m.tot
	return fmt.Sprintf("TestCrashRecovery summary: %d rounds with SIGKILL in %v\n"+
		"  deliveries: %d messages, %d copies (%d over LMTP, %d by popbox deliver); acknowledged %d (LMTP %d, deliver %d); "+
		"%d not acknowledged (at the restart %d there, %d absent); %d LMTP transfers cut off in DATA (none delivered)\n"+
		"  POP3: %d sessions (%d [IN-USE] refusals), %d RETR during rounds, %d QUIT +OK, %d dropped without QUIT\n"+
		"  deletions: %d committed by QUIT during rounds, %d by the checks after restarts; "+
		"in-flight ambiguities: %d QUITs with %d deletions (at the restart %d kept, %d done)\n"+
		"  crash states: %d tmp files left, %d message files not yet indexed, %d index records of removed files, %d bad index lines; "+
		"largest check: %d messages",
		rounds, took.Round(time.Millisecond),
		s.messages, s.copies, s.lmtpCopies, s.deliverCopies, s.ackLMTP+s.ackDeliver, s.ackLMTP, s.ackDeliver,
		s.copies-s.ackLMTP-s.ackDeliver, s.unackedThere, s.unackedAbsent, s.aborted,
		s.sessions, s.inUse, s.retrieved, s.quits, s.dropped,
		s.deleCommitted, s.deleVerify, s.quitInFlight, s.deleInFlight, s.inFlightKept, s.inFlightGone,
		s.tmpLeft, s.unindexed, s.staleRecords, s.badIndexLines, s.present)
}

// The messages: generated from the seed and the serial, so that none has
// to be kept; dot lines, a lone dot, "From " lines, 8-bit text, empty
// lines, CRLF or LF (deliver only), sometimes no final newline (deliver
// only), and now and then a big one (150-300 KB) to widen the window in
// which a kill finds a write half done.

func crashFrom(serial int) string { return fmt.Sprintf("sender%d@example.net", serial%97) }

func crashMessage(seed uint64, serial int, via string, rcpts []string) []byte {
	r := rand.New(rand.NewPCG(seed, uint64(serial)))
	nl := "\n"
	if via == crashViaDeliver && r.IntN(3) == 0 {
		nl = "\r\n"
	}
	var b strings.Builder
	line := func(s string) {
		b.WriteString(s)
		b.WriteString(nl)
	}
	to := make([]string, len(rcpts))
	for i, u := range rcpts {
		to[i] = u + "@" + crashDomain
	}
	line("From: " + crashFrom(serial))
	line("To: " + strings.Join(to, ", "))
	line(fmt.Sprintf("Subject: crash test message %d", serial))
	line(fmt.Sprintf("Message-ID: <%d.%x@crash.popbox.test>", serial, seed))
	line(fmt.Sprintf("%s: %d", crashSerialField, serial))
	line("Date: Fri, 27 Nov 2026 12:00:00 +0000")
	line("")
	lines := 1 + r.IntN(40)
	if r.IntN(40) == 0 {
		lines = 2000 + r.IntN(2000)
	}
	const alphabet = "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 .,;:-+=/"
	text := func(n int) string {
		t := make([]byte, n)
		for i := range t {
			t[i] = alphabet[r.IntN(len(alphabet))]
		}
		return string(t)
	}
	for i := range lines {
		switch r.IntN(12) {
		case 0:
			line(".")
		case 1:
			line("." + text(1+r.IntN(30)))
		case 2:
			line("From the start of a line, " + strconv.Itoa(i))
		case 3:
			line("Grüße, ça va? 日本語 " + strconv.Itoa(i))
		case 4:
			line("")
		default:
			line(text(10 + r.IntN(70)))
		}
	}
	line(fmt.Sprintf("-- end of message %d", serial))
	s := b.String()
	if via == crashViaDeliver && r.IntN(8) == 0 {
		s = strings.TrimSuffix(s, nl)
	}
	return []byte(s)
}

// crashWire is what RETR must send for a copy: LMTP puts Return-Path and
// Delivered-To on top.
func crashWire(seed uint64, k crashKey, via string, rcpts []string) []byte {
	data := crashMessage(seed, k.serial, via, rcpts)
	if via == crashViaLMTP {
		data = slices.Concat([]byte("Return-Path: <"+crashFrom(k.serial)+">\nDelivered-To: "+k.user+"@"+crashDomain+"\n"), data)
	}
	return wireForm(data)
}

func crashSerialOf(data []byte) (int, bool) {
	for line := range bytes.Lines(data) {
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		if v, ok := bytes.CutPrefix(line, []byte(crashSerialField+": ")); ok {
			n, err := strconv.Atoi(string(v))
			return n, err == nil
		}
	}
	return 0, false
}

// The Maildir as store/maildir writes it (see its doc.go): files named
// <key>,P=<UIDL>,R=<wire size>[:2,<flags>] in new/ and cur/, popbox-index
// (a header and one record per message, each line with its CRC-32C),
// popbox-uidnext (the counter and the totals), popbox-trash/ with
// <deleted-at>.<key>,P=<UIDL>,R=<size>.

type crashFile struct {
	sub, name, key, uidl string
	size                 int64
}

var (
	crashNameRE  = regexp.MustCompile(`^(.+),P=([0-9A-F]{16}),R=(0|[1-9][0-9]*)$`)
	crashTrashRE = regexp.MustCompile(`^(?:0|[1-9][0-9]*)\.(.+),P=([0-9A-F]{16}),R=(0|[1-9][0-9]*)$`)
	crashCRC     = crc32.MakeTable(crc32.Castagnoli)
)

func (ct *crashTest) maildir(user string) string {
	return filepath.Join(ct.data, "mail", user, "Maildir")
}

// crashListFiles lists new/ and cur/ (or popbox-trash/ with trash set);
// names that do not parse come back in bad.
func crashListFiles(dir string, trash bool) (files []crashFile, bad []string, err error) {
	subs, re := []string{"new", "cur"}, crashNameRE
	if trash {
		subs, re = []string{"popbox-trash"}, crashTrashRE
	}
	for _, sub := range subs {
		ents, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil {
			if trash && errors.Is(err, os.ErrNotExist) {
				continue
			}
			return nil, nil, err
		}
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), ".") {
				continue
			}
			base, _, hasInfo := strings.Cut(e.Name(), ":")
			f := re.FindStringSubmatch(base)
			if f == nil || !e.Type().IsRegular() || (trash && hasInfo) {
				bad = append(bad, sub+"/"+e.Name())
				continue
			}
			size, _ := strconv.ParseInt(f[3], 10, 64)
			files = append(files, crashFile{sub: sub, name: e.Name(), key: f[1], uidl: f[2], size: size})
		}
	}
	return files, bad, nil
}

type crashIndexRec struct {
	key, uidl string
	size      int64
}

type crashIndex struct {
	header      bool
	epoch, next uint64
	recs        []crashIndexRec
	bad         []string // lines failing the checksum or the syntax
}

func crashReadIndex(path string) (crashIndex, error) {
	var idx crashIndex
	data, err := os.ReadFile(path)
	if err != nil {
		return idx, err
	}
	for i, line := range strings.SplitAfter(string(data), "\n") {
		if line == "" {
			continue
		}
		payload, ok := crashCheckLine(line)
		if !ok {
			idx.bad = append(idx.bad, fmt.Sprintf("line %d %q", i+1, line))
			continue
		}
		f := strings.Split(payload, " ")
		if i == 0 {
			if len(f) == 4 && f[0] == "popbox-index" && f[1] == "1" {
				idx.epoch, _ = strconv.ParseUint(f[2], 10, 32)
				idx.next, _ = strconv.ParseUint(f[3], 10, 64)
				idx.header = true
				continue
			}
		}
		size, err := strconv.ParseInt(f[len(f)-1], 10, 64)
		if len(f) != 4 || f[0] != "m" || err != nil {
			idx.bad = append(idx.bad, fmt.Sprintf("line %d %q", i+1, line))
			continue
		}
		idx.recs = append(idx.recs, crashIndexRec{key: crashUnescape(f[1]), uidl: f[2], size: size})
	}
	return idx, nil
}

// crashCheckLine checks "<payload> <crc32c, 8 hex>\n" and returns the payload.
func crashCheckLine(line string) (string, bool) {
	line, ok := strings.CutSuffix(line, "\n")
	if !ok || len(line) < 10 || line[len(line)-9] != ' ' {
		return "", false
	}
	payload := line[:len(line)-9]
	return payload, fmt.Sprintf("%08x", crc32.Checksum([]byte(payload), crashCRC)) == line[len(line)-8:]
}

func crashUnescape(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+3], 16, 8); err == nil {
				b.WriteByte(byte(v))
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

type crashCounter struct{ epoch, next, msgs, bytes uint64 }

func crashReadCounter(path string) (crashCounter, error) {
	var c crashCounter
	data, err := os.ReadFile(path)
	if err != nil {
		return c, err
	}
	payload, ok := crashCheckLine(string(data))
	f := strings.Fields(payload)
	if !ok || strings.Count(string(data), "\n") != 1 || len(f) != 7 || f[0] != "popbox-uidnext" || f[1] != "2" {
		return c, fmt.Errorf("%s is damaged: %q", path, data)
	}
	for i, p := range []*uint64{&c.epoch, &c.next, nil, &c.msgs, &c.bytes} {
		if p == nil {
			continue
		}
		if *p, err = strconv.ParseUint(f[2+i], 10, 64); err != nil {
			return c, fmt.Errorf("%s is damaged: %q", path, data)
		}
	}
	return c, nil
}

// crashUID splits a UIDL into (uid, epoch).
func crashUID(uidl string) (uid, epoch uint64) {
	uid, _ = strconv.ParseUint(uidl[:8], 16, 32)
	epoch, _ = strconv.ParseUint(uidl[8:], 16, 32)
	return uid, epoch
}

// scanCrashState reads every Maildir as the kill left it, before the
// restart: every message file must already carry its UIDL, the counter
// must be intact and above every UIDL anywhere, no UIDL twice. Files not
// yet in the index, records of files already moved to the trash and a
// torn last index line are what a crash may leave, for the next Open to
// repair; they are counted.
func (ct *crashTest) scanCrashState(rd *crashRound) {
	for _, u := range ct.users {
		where := fmt.Sprintf("%s, Maildir as the kill in round %d left it", u.name, rd.n)
		dir := ct.maildir(u.name)
		files, bad, err := crashListFiles(dir, false)
		if err != nil {
			ct.t.Fatalf("%s: %v", where, err)
		}
		if len(bad) > 0 {
			ct.m.failf("%s: message files without ,P=<UIDL>,R=<size> in their names (every delivery names its file so): %q", where, bad)
		}
		trash, badTrash, err := crashListFiles(dir, true)
		if err != nil {
			ct.t.Fatalf("%s: %v", where, err)
		}
		if len(badTrash) > 0 {
			ct.m.failf("%s: files in popbox-trash/ not named as the store names them: %q", where, badTrash)
		}
		idx, err := crashReadIndex(filepath.Join(dir, "popbox-index"))
		if err != nil {
			ct.t.Fatalf("%s: %v", where, err)
		}
		ctr, err := crashReadCounter(filepath.Join(dir, "popbox-uidnext"))
		if err != nil {
			ct.m.failf("%s: %v (it is rewritten in place with one write: a kill cannot tear it)", where, err)
			continue
		}
		live := map[string]crashFile{}
		for _, f := range files {
			if o, dup := live[f.uidl]; dup {
				ct.m.failf("%s: UIDL %s on two files: %s/%s and %s/%s", where, f.uidl, o.sub, o.name, f.sub, f.name)
			}
			live[f.uidl] = f
		}
		for _, f := range trash {
			if o, dup := live[f.uidl]; dup {
				ct.m.failf("%s: UIDL %s both in %s/ (%s) and in the trash (%s)", where, f.uidl, o.sub, o.name, f.name)
			}
		}
		ct.checkCounter(where, ctr, files, trash, idx)
		indexed := map[string]bool{}
		stale := 0
		for _, r := range idx.recs {
			indexed[r.key] = true
			if f, ok := live[r.uidl]; !ok || f.key != r.key {
				stale++
			}
		}
		unindexed := 0
		for _, f := range files {
			if !indexed[f.key] {
				unindexed++
			}
		}
		tmp, _ := os.ReadDir(filepath.Join(dir, "tmp"))
		if ct.tmpSeen == nil {
			ct.tmpSeen = map[string]bool{}
		}
		tmpNew := 0
		for _, e := range tmp {
			if p := filepath.Join(dir, "tmp", e.Name()); !ct.tmpSeen[p] {
				ct.tmpSeen[p] = true
				tmpNew++
			}
		}
		ct.m.count(func(s *crashStats) {
			s.unindexed += unindexed
			s.staleRecords += stale
			s.badIndexLines += len(idx.bad)
			s.tmpLeft += tmpNew
		})
	}
	rd.line.WriteString(ct.m.crashLine())
}

// checkCounter: the counter's epoch is the only one in use (it was never
// lost) and its next uid is above every uid in use, deleted ones included.
func (ct *crashTest) checkCounter(where string, ctr crashCounter, files, trash []crashFile, idx crashIndex) {
	check := func(what, uidl string) {
		uid, epoch := crashUID(uidl)
		if epoch != ctr.epoch {
			ct.m.failf("%s: %s has UIDL %s of epoch %d, the counter is at epoch %d: the counter was lost and recovered in a new epoch",
				where, what, uidl, epoch, ctr.epoch)
		} else if uid >= ctr.next {
			ct.m.failf("%s: %s has UIDL %s (uid %d), the counter's next uid is %d: that uid would be handed out again",
				where, what, uidl, uid, ctr.next)
		}
	}
	for _, f := range files {
		check(f.sub+"/"+f.name, f.uidl)
	}
	for _, f := range trash {
		check("popbox-trash/"+f.name, f.uidl)
	}
	for _, r := range idx.recs {
		check("the index record of "+r.key, r.uidl)
	}
	if idx.header && (idx.epoch != ctr.epoch || idx.next > ctr.next) {
		ct.m.failf("%s: the index header says epoch %d next %d, the counter epoch %d next %d", where, idx.epoch, idx.next, ctr.epoch, ctr.next)
	}
}

// checkMaildir checks a Maildir right after the check's session, with no
// other process about: served holds what that session left (UIDL -> RETR).
func (ct *crashTest) checkMaildir(where, user string, served map[string][]byte) {
	where += ", on disk"
	dir := ct.maildir(user)
	files, bad, err := crashListFiles(dir, false)
	if err != nil {
		ct.t.Fatalf("%s: %v", where, err)
	}
	if len(bad) > 0 {
		ct.m.failf("%s: files without ,P=<UIDL>,R=<size> in their names after a POP3 session opened the mailbox: %q", where, bad)
	}
	live := map[string]crashFile{}
	keys := map[string]string{}
	var total int64
	for _, f := range files {
		if o, dup := live[f.uidl]; dup {
			ct.m.failf("%s: UIDL %s on two files: %s/%s and %s/%s", where, f.uidl, o.sub, o.name, f.sub, f.name)
		}
		if o, dup := keys[f.key]; dup {
			ct.m.failf("%s: two files with the key %s: %s and %s/%s", where, f.key, o, f.sub, f.name)
		}
		live[f.uidl], keys[f.key] = f, f.sub+"/"+f.name
		total += f.size
		want, ok := served[f.uidl]
		if !ok {
			ct.m.failf("%s: %s/%s is not served by POP3 (no message has UIDL %s)", where, f.sub, f.name, f.uidl)
			continue
		}
		if f.size != int64(len(want)) {
			ct.m.failf("%s: %s/%s says size %d, RETR sent %d octets", where, f.sub, f.name, f.size, len(want))
		}
		data, err := os.ReadFile(filepath.Join(dir, f.sub, f.name))
		if err != nil {
			ct.m.failf("%s: %v", where, err)
		} else if got := wireForm(data); !bytes.Equal(got, want) {
			ct.m.failf("%s: %s/%s (in wire form) differs from what RETR sent: %s", where, f.sub, f.name, firstDifference(got, want))
		}
	}
	for uidl := range served {
		if _, ok := live[uidl]; !ok {
			ct.m.failf("%s: POP3 served UIDL %s, but no file in new/ or cur/ has it", where, uidl)
		}
	}

	idx, err := crashReadIndex(filepath.Join(dir, "popbox-index"))
	if err != nil {
		ct.t.Fatalf("%s: %v", where, err)
	}
	if !idx.header || len(idx.bad) > 0 {
		ct.m.failf("%s: popbox-index still damaged after Open and Commit (header %v): %q", where, idx.header, idx.bad)
	}
	recs := map[string]bool{}
	for _, r := range idx.recs {
		f, ok := live[r.uidl]
		switch {
		case recs[r.key]:
			ct.m.failf("%s: popbox-index lists the key %s twice", where, r.key)
		case !ok:
			ct.m.failf("%s: popbox-index lists %s with UIDL %s, which no file has", where, r.key, r.uidl)
		case f.key != r.key || f.size != r.size:
			ct.m.failf("%s: popbox-index lists UIDL %s as %s size %d, the file is %s/%s", where, r.uidl, r.key, r.size, f.sub, f.name)
		}
		recs[r.key] = true
	}
	for _, f := range files {
		if !recs[f.key] {
			ct.m.failf("%s: %s/%s is not in popbox-index", where, f.sub, f.name)
		}
	}

	ctr, err := crashReadCounter(filepath.Join(dir, "popbox-uidnext"))
	if err != nil {
		ct.m.failf("%s: %v", where, err)
		return
	}
	if ctr.msgs != uint64(len(files)) || ctr.bytes != uint64(total) {
		ct.m.failf("%s: popbox-uidnext counts %d messages of %d octets, new/ and cur/ hold %d of %d",
			where, ctr.msgs, ctr.bytes, len(files), total)
	}
	trash, badTrash, err := crashListFiles(dir, true)
	if err != nil {
		ct.t.Fatalf("%s: %v", where, err)
	}
	if len(badTrash) > 0 {
		ct.m.failf("%s: files in popbox-trash/ not named as the store names them: %q", where, badTrash)
	}
	ct.checkCounter(where, ctr, files, trash, idx)

	// Deleted mail is kept (keep_deleted_days = 7): every deleted copy is
	// in the trash once, as it was, and nothing else is.
	deleted, owner := ct.m.expectedTrash(user)
	inTrash := map[string]string{}
	if ct.trashChecked == nil {
		ct.trashChecked = map[string]bool{}
	}
	for _, f := range trash {
		if o, dup := inTrash[f.uidl]; dup {
			ct.m.failf("%s: UIDL %s twice in popbox-trash/: %s and %s", where, f.uidl, o, f.name)
		}
		inTrash[f.uidl] = f.name
		if _, ok := live[f.uidl]; ok {
			ct.m.failf("%s: UIDL %s both in popbox-trash/ (%s) and served", where, f.uidl, f.name)
		}
		k, ok := owner[f.uidl]
		if !ok {
			ct.m.failf("%s: popbox-trash/%s holds UIDL %s, which the test never deleted", where, f.name, f.uidl)
			continue
		}
		if _, ok := deleted[f.uidl]; !ok {
			ct.m.failf("%s: popbox-trash/%s holds %s (UIDL %s), which was not deleted", where, f.name, k, f.uidl)
		}
		path := filepath.Join(dir, "popbox-trash", f.name)
		if ct.trashChecked[path] {
			continue
		}
		ct.trashChecked[path] = true
		data, err := os.ReadFile(path)
		if err != nil {
			ct.m.failf("%s: %v", where, err)
			continue
		}
		via, rcpts := ct.m.copyOf(k)
		if got, want := wireForm(data), crashWire(ct.m.seed, k, via, rcpts); !bytes.Equal(got, want) || f.size != int64(len(want)) {
			ct.m.failf("%s: popbox-trash/%s (%s) differs from what was sent (name says %d octets): %s",
				where, f.name, k, f.size, firstDifference(got, want))
		}
	}
	for uidl, k := range deleted {
		if _, ok := inTrash[uidl]; !ok {
			ct.m.mu.Lock()
			h := ct.m.history(k)
			ct.m.mu.Unlock()
			ct.m.failf("%s: %s (UIDL %s) was deleted, but it is not in popbox-trash/ (keep_deleted_days = 7)%s", where, k, uidl, h)
		}
	}
}
