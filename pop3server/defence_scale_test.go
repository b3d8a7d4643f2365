//go:build linux

// The defences at full scale. Linux only: the clients take their source
// addresses from all of 127.0.0.0/8, which only Linux routes to lo without
// configuration (the other defence tests need 127.0.0.2 and 127.0.0.3 too),
// and the memory test keeps its connections as bare socket descriptors.

package pop3server

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

// guessConn is one of the attacker's connections. Unlike testClient it
// reports errors instead of failing the test, so the attack can run in
// several goroutines.
type guessConn struct {
	conn net.Conn
	r    *bufio.Reader
}

func dialGuesser(addr, ip string) (*guessConn, error) {
	d := net.Dialer{Timeout: ioTimeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	c := &guessConn{conn: conn, r: bufio.NewReader(conn)}
	if g, err := c.line(); err != nil || g != greeting {
		conn.Close()
		return nil, fmt.Errorf("greeting %q, %v", g, err)
	}
	return c, nil
}

func (c *guessConn) line() (string, error) {
	c.conn.SetReadDeadline(time.Now().Add(ioTimeout))
	s, err := c.r.ReadString('\n')
	if err != nil {
		return s, err
	}
	return strings.TrimSuffix(s, "\r\n"), nil
}

// guess sends USER and PASS pipelined and returns the reply to PASS.
func (c *guessConn) guess(user, pass string) (string, error) {
	c.conn.SetWriteDeadline(time.Now().Add(ioTimeout))
	if _, err := io.WriteString(c.conn, "USER "+user+"\r\nPASS "+pass+"\r\n"); err != nil {
		return "", err
	}
	if l, err := c.line(); err != nil || l != "+OK send PASS" {
		return "", fmt.Errorf("USER %s: %q, %v", user, l, err)
	}
	return c.line()
}

// closedAfterNotice reads the notice of a session closed for too many
// errors, then the end of the connection.
func (c *guessConn) closedAfterNotice() error {
	const notice = "-ERR too many errors, closing connection"
	if l, err := c.line(); err != nil || l != notice {
		return fmt.Errorf("after %d failures: %q, %v, want %q", guessMaxBad, l, err, notice)
	}
	if rest, err := io.ReadAll(c.r); (err != nil && !isReset(err)) || len(rest) > 0 {
		return fmt.Errorf("after the notice: %q, %v, want the connection closed", rest, err)
	}
	return nil
}

// guessMaxBad is Limits.MaxBadCommands in TestThousandGuesses: every failed
// login is a bad command, so a guesser has to reconnect after this many.
const guessMaxBad = 20

// failureRecord is one "login failed" log line, parsed.
type failureRecord struct {
	user     string
	failures int
	delay    string
}

func parseFailures(t *testing.T, attrs []string) []failureRecord {
	t.Helper()
	re := regexp.MustCompile(`^user=(\S*) failures=(\d+) delay=(\S+)$`)
	var out []failureRecord
	for _, a := range attrs {
		m := re.FindStringSubmatch(a)
		if m == nil {
			t.Fatalf("cannot parse failure attributes %q", a)
		}
		n, _ := strconv.Atoi(m[2])
		out = append(out, failureRecord{user: m[1], failures: n, delay: m[3]})
	}
	return out
}

// seq returns from, from+1, ..., to.
func seq(from, to int) []int {
	var s []int
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}

// TestThousandGuesses is the password-guessing scenario of the security
// issue at full scale: 1,000 wrong passwords from one address, over
// several parallel connections, each reconnected whenever the server
// closes it after MaxBadCommands failures. It shows, from the log and from
// the clock, that
//
//   - failures are counted per address: the count runs from 1 to 500 over
//     all the attacker's connections, and a user name never tried before
//     gets the address's count, not 1;
//   - and per (user, address): after the attacker resets its address's
//     count by logging in to an account of its own, the count for the
//     victim's name goes on where it was;
//   - the delay follows the count, reaches the ceiling at the 6th failure
//     and stays there, never more, so the attacker's guess rate is bounded
//     by connections / ceiling;
//   - every guess gets the same reply as any failed login;
//   - meanwhile the victim logs in from her own address in well under a
//     second, again and again.
//
// The delays are scaled down (1 ms doubling to 20 ms instead of 2 s to
// 15 s); the counting is the same. Not parallel: it measures time.
func TestThousandGuesses(t *testing.T) {
	const (
		base, ceiling = time.Millisecond, 20 * time.Millisecond
		// Parallel connections of the attacker. A connection closed by the
		// server still counts against the address until its session has
		// ended, which the client cannot observe, so up to 2*workers may
		// count at once; with 4 that and the two sequential connections
		// of the reset stay below the default MaxUnauthenticatedPerIP of
		// 10, and no connection is refused.
		workers = 4
		phase1  = 500 // guesses before the reset
		phase2  = 499 // after it; with the probe in between, 1,000
		// The victim logs in every victimEvery while the attack runs.
		victimEvery = 250 * time.Millisecond
	)
	var lb logBuffer
	ts := newTestServer(t, fixtureBackend(), serverOpts{configure: func(s *Server) {
		withLog(&lb)(s)
		s.TLSConfig = nil
		s.AuthFailureDelay = base
		s.AuthFailureDelayMax = ceiling
		s.Limits.MaxBadCommands = guessMaxBad
	}})

	var (
		guessed      atomic.Int64 // replies the attacker has had
		reconnects   atomic.Int64
		otherReplies sync.Map // reply -> count, for replies other than authFailed
	)
	// attack makes n guesses over workers connections and returns how
	// long they took; user picks the name for guess i.
	attack := func(n int, user func(i int) string) time.Duration {
		var next atomic.Int64
		var wg sync.WaitGroup
		start := time.Now()
		for range workers {
			wg.Go(func() {
				var c *guessConn
				defer func() {
					if c != nil {
						c.conn.Close()
					}
				}()
				fails := 0
				for {
					i := int(next.Add(1) - 1)
					if i >= n {
						return
					}
					if c == nil {
						var err error
						if c, err = dialGuesser(ts.addr, attackerIP); err != nil {
							t.Errorf("attacker's connection: %v", err)
							return
						}
						fails = 0
					}
					got, err := c.guess(user(i), fmt.Sprintf("guess-%d", i))
					if err != nil {
						t.Errorf("guess %d: %v", i, err)
						return
					}
					guessed.Add(1)
					if got != authFailed {
						v, _ := otherReplies.LoadOrStore(got, new(atomic.Int64))
						v.(*atomic.Int64).Add(1)
					}
					if fails++; fails == guessMaxBad {
						if err := c.closedAfterNotice(); err != nil {
							t.Error(err)
							return
						}
						c.conn.Close()
						c = nil
						reconnects.Add(1)
					}
				}
			})
		}
		wg.Wait()
		return time.Since(start)
	}

	// The victim: alice, from her own address, once the attacker's delay
	// is at the ceiling and until the attack is over.
	attackOver := make(chan struct{})
	var victimLogins []time.Duration
	victimDone := make(chan struct{})
	stopVictim := sync.OnceFunc(func() {
		close(attackOver)
		<-victimDone
	})
	t.Cleanup(stopVictim) // also when the test ends early
	go func() {
		defer close(victimDone)
		for guessed.Load() < 30 {
			select {
			case <-attackOver:
				return
			case <-time.After(time.Millisecond):
			}
		}
		tick := time.NewTicker(victimEvery)
		defer tick.Stop()
		for {
			start := time.Now()
			c, err := dialGuesser(ts.addr, userIP)
			if err != nil {
				t.Errorf("victim's connection: %v", err)
				return
			}
			got, err := c.guess("alice", alicePass)
			d := time.Since(start)
			if err != nil || got != aliceLoggedIn() {
				t.Errorf("victim's login: %q, %v", got, err)
				c.conn.Close()
				return
			}
			victimLogins = append(victimLogins, d)
			// QUIT and wait for the end, which unlocks her maildrop.
			io.WriteString(c.conn, "QUIT\r\n")
			c.conn.SetReadDeadline(time.Now().Add(ioTimeout))
			io.Copy(io.Discard, c.r)
			c.conn.Close()
			select {
			case <-attackOver:
				return
			case <-tick.C:
			}
		}
	}()

	// Phase 1: mostly alice, every tenth guess a name never tried before.
	fresh := func(i int) string { return fmt.Sprintf("user%d", i) }
	elapsed1 := attack(phase1, func(i int) string {
		if i%10 == 9 {
			return fresh(i)
		}
		return "alice"
	})

	// The attacker logs in to an account of its own (bob) from the same
	// address: that resets the address's count, not alice's.
	own, g := dialFrom(t, ts.addr, attackerIP)
	if g != greeting {
		t.Fatalf("attacker's own login: greeting %q", g)
	}
	own.login("bob", bobPass)
	own.cmd("QUIT")
	own.expectClosed()
	probe, g := dialFrom(t, ts.addr, attackerIP)
	if g != greeting {
		t.Fatalf("probe: greeting %q", g)
	}
	probe.cmd("USER mallory")
	if got := probe.cmd("PASS guess-probe"); got != authFailed {
		t.Errorf("probe after the reset: %q, want %q", got, authFailed)
	}
	probe.close()

	// Phase 2: alice only.
	elapsed2 := attack(phase2, func(int) string { return "alice" })
	stopVictim()

	total := phase1 + 1 + phase2
	if n := guessed.Load() + 1; n != int64(total) {
		t.Fatalf("%d guesses answered, want %d", n, total)
	}
	otherReplies.Range(func(k, v any) bool {
		t.Errorf("%d guesses got %q, want %q", v.(*atomic.Int64).Load(), k, authFailed)
		return true
	})

	// The log: one line per guess, from the attacker's address only.
	lines := lb.lines("login failed")
	if got := failureAttrs(lines, userIP); len(got) != 0 {
		t.Errorf("the victim's address has failures: %q", got)
	}
	recs := parseFailures(t, failureAttrs(lines, attackerIP))
	if len(recs) != total {
		t.Fatalf("%d login failed lines for %s, want %d", len(recs), attackerIP, total)
	}
	atCeiling := 0
	var sumDelay [2]time.Duration // of phase 1 and phase 2
	for i, r := range recs {
		want := penaltyDelay(base, ceiling, r.failures)
		if r.delay != want.String() {
			t.Errorf("line %d: %+v: delay %s, want %v for failure %d", i, r, r.delay, want, r.failures)
		}
		if want == ceiling {
			atCeiling++
		}
		switch {
		case i < phase1:
			sumDelay[0] += want
		case i > phase1:
			sumDelay[1] += want
		}
	}
	counts := func(rs []failureRecord) []int {
		var n []int
		for _, r := range rs {
			n = append(n, r.failures)
		}
		slices.Sort(n)
		return n
	}
	// Phase 1: one count for the address across all its connections.
	if diff := cmp.Diff(seq(1, phase1), counts(recs[:phase1])); diff != "" {
		t.Errorf("phase 1: failure counts, sorted (-want +got):\n%s", diff)
	}
	freshNames := 0
	for _, r := range recs[:phase1] {
		if r.user == "alice" {
			continue
		}
		freshNames++
		// Its own count is 1; more is the address's.
		if r.failures < 2 {
			t.Errorf("first guess for %s counted %d failures, want the address's count (> 1)", r.user, r.failures)
		}
	}
	if freshNames != phase1/10 {
		t.Errorf("%d guesses for fresh names, want %d", freshNames, phase1/10)
	}
	// The reset: the address's count starts over...
	if got, want := recs[phase1], (failureRecord{"mallory", 1, base.String()}); got != want {
		t.Errorf("first failure after the attacker's own login: %+v, want %+v", got, want)
	}
	// ...but alice's count from the attacker's address goes on: the delay
	// stays at the ceiling.
	aliceBefore := phase1 - freshNames
	if diff := cmp.Diff(seq(aliceBefore+1, aliceBefore+phase2), counts(recs[phase1+1:])); diff != "" {
		t.Errorf("phase 2: failure counts, sorted (-want +got):\n%s", diff)
	}
	// Delays below the ceiling: failures 1-5 and the probe.
	if want := total - 6; atCeiling != want {
		t.Errorf("%d failures delayed by the ceiling, want %d", atCeiling, want)
	}

	// The clock: each connection waits for every reply, so the attack
	// cannot go faster than its summed delays spread over its connections,
	// i.e. workers/ceiling guesses per second once at the ceiling.
	for i, e := range []time.Duration{elapsed1, elapsed2} {
		if floor := sumDelay[i] / workers; e < floor {
			t.Errorf("phase %d took %v, less than its delays allow (%v over %d connections)", i+1, e, floor, workers)
		}
	}
	rate := float64(phase1+phase2) / (elapsed1 + elapsed2).Seconds()
	bound := float64(workers) / ceiling.Seconds()
	t.Logf("%d guesses in %v + %v over %d connections (%d reconnections): %.0f guesses/s, bound %.0f/s (%.0f%%)",
		phase1+phase2, elapsed1.Round(time.Millisecond), elapsed2.Round(time.Millisecond), workers,
		reconnects.Load(), rate, bound, 100*rate/bound)
	if rate > bound*1.01 {
		t.Errorf("attacker reached %.0f guesses/s, above the bound of %.0f/s", rate, bound)
	}

	// The victim, during the attack.
	t.Logf("victim's logins during the attack: %v", victimLogins)
	if len(victimLogins) < 5 {
		t.Errorf("victim logged in %d times during the attack, want at least 5", len(victimLogins))
	}
	for i, d := range victimLogins {
		if d >= time.Second {
			t.Errorf("victim's login %d took %v during the attack, want < 1s", i+1, d)
		}
	}
}

// Scale of TestManyUnauthenticatedConnectionsMemory.
const (
	idleConns = 5000
	// maxBytesPerConn bounds the server's memory per unauthenticated
	// connection; see the test.
	maxBytesPerConn = 24 << 10
)

// TestManyUnauthenticatedConnectionsMemory opens idleConns connections that
// read the greeting and then say nothing, measures what they cost the
// server, checks that a real user is still served at once, and that
// everything is released when they go.
//
// The per-address caps stay at their defaults (10 unauthenticated per
// address): the connections come from 500 addresses in 127.10.0.0/16, as
// from a botnet, so the per-address bookkeeping is part of what is
// measured. Only MaxConnections is raised, to let them all in.
//
// The client side holds bare socket descriptors (each connection is made
// and its greeting read by a net.Conn that is then closed, its descriptor
// kept as a duplicate: no net.Conn, buffer or goroutine stays, and the
// slice of descriptors is allocated before the first measurement), so what
// the process gains is the server's cost.
//
// Per connection that is now about 15 KiB: the session's read buffer
// (max(4 KiB, MaxAuthLine) = 8 KiB, since a SASL line may be that long),
// the 1 KiB write buffer used until login (the 32 KiB one comes with the
// login), under 2 KiB of objects (session, net.Conn, the logger with its
// "remote" attribute, per-address count) and a 4 KiB goroutine stack. The
// bound, maxBytesPerConn, leaves room for the stack to double but not for
// another buffer, nor for anything that grows with what a client may send
// before login (MaxPreAuthBytes is 64 KiB).
func TestManyUnauthenticatedConnectionsMemory(t *testing.T) {
	ensureOpenFiles(t, 2*idleConns+500) // both ends are in this process
	ts := newTestServer(t, fixtureBackend(), serverOpts{configure: func(s *Server) {
		s.TLSConfig = nil
		s.Limits.MaxConnections = idleConns + 100
		// Generous, so a slow machine does not time out the first
		// connections before the last are open.
		s.Limits.IdleTimeout = 5 * time.Minute
		s.Limits.AuthTimeout = 5 * time.Minute
	}})
	// Connection i comes from 127.10.x.y, ten from each address.
	source := func(i int) [4]byte {
		a := i / 10
		return [4]byte{127, 10, byte(a / 250), byte(a%250 + 1)}
	}
	fds := make([]int, idleConns) // all the client side holds

	// Warm up: whatever the server sets up once (the logger, the poller,
	// the penalty table's first use...) is not per connection.
	for i := range 20 {
		fd, err := idleDial(source(i), ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		syscall.Close(fd)
	}
	ts.dial(t).login("alice", alicePass)
	waitSessions(t, ts.srv, 1) // the login's connection stays open

	before, goBefore := serverMem()

	start := time.Now()
	const dialers = 4
	var wg sync.WaitGroup
	var failed atomic.Bool
	for w := range dialers {
		wg.Go(func() {
			for i := w; i < idleConns && !failed.Load(); i += dialers {
				fd, err := idleDial(source(i), ts.addr)
				if err != nil {
					t.Errorf("connection %d from %v: %v", i, netip.AddrFrom4(source(i)), err)
					failed.Store(true)
					return
				}
				fds[i] = fd
			}
		})
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, fd := range fds {
			if fd > 0 {
				syscall.Close(fd)
			}
		}
	})
	if failed.Load() {
		t.FailNow()
	}
	opened := time.Since(start)
	waitSessions(t, ts.srv, idleConns+1)

	after, goAfter := serverMem()
	perConn := func(a, b uint64) float64 { return (float64(a) - float64(b)) / idleConns }
	heap := perConn(after.HeapInuse, before.HeapInuse)
	stack := perConn(after.StackInuse, before.StackInuse)
	t.Logf("%d connections opened in %v; server memory per connection: %.0f B heap + %.0f B stack = %.1f KiB; goroutines %d -> %d",
		idleConns, opened.Round(time.Millisecond), heap, stack, (heap+stack)/1024, goBefore, goAfter)
	if g := goAfter - goBefore; g < idleConns || g > idleConns+20 {
		t.Errorf("%d more goroutines with %d connections open, want one each", g, idleConns)
	}
	if heap+stack > maxBytesPerConn {
		t.Errorf("an unauthenticated connection costs the server %.1f KiB, want at most %d KiB",
			(heap+stack)/1024, maxBytesPerConn>>10)
	}

	// A real user is served at once.
	start = time.Now()
	c, g := dialFrom(t, ts.addr, userIP)
	if g != greeting {
		t.Fatalf("greeting with %d connections open: %q", idleConns, g)
	}
	c.login("bob", bobPass)
	if d := time.Since(start); d >= time.Second {
		t.Errorf("login took %v with %d connections open, want < 1s", d, idleConns)
	} else {
		t.Logf("login with %d connections open took %v", idleConns, d.Round(time.Microsecond))
	}
	c.cmd("QUIT")
	c.expectClosed()

	// All gone: the sessions end and their goroutines with them.
	for i, fd := range fds {
		syscall.Close(fd)
		fds[i] = 0
	}
	waitSessions(t, ts.srv, 1)
	deadline := time.Now().Add(ioTimeout)
	n := runtime.NumGoroutine()
	for ; n > goBefore+5 && time.Now().Before(deadline); n = runtime.NumGoroutine() {
		time.Sleep(10 * time.Millisecond)
	}
	if n > goBefore+5 {
		t.Errorf("%d goroutines after the connections closed, want about %d as before", n, goBefore)
	}
	final, _ := serverMem()
	t.Logf("after closing: heap+stack %+.0f KiB from before (%d goroutines)",
		(float64(final.HeapInuse+final.StackInuse)-float64(before.HeapInuse+before.StackInuse))/1024, n)
	if left := perConn(final.HeapInuse+final.StackInuse, before.HeapInuse+before.StackInuse); left > 0.1*(heap+stack) {
		t.Errorf("after closing, %.0f B per connection still in use, want the memory back", left)
	}
	ts.srv.mu.Lock()
	addrs := len(ts.srv.perIP)
	ts.srv.mu.Unlock()
	if addrs != 1 { // the login's connection from 127.0.0.1
		t.Errorf("the server still counts connections of %d addresses, want 1", addrs)
	}
}

// serverMem returns the memory in use and the number of goroutines once the
// garbage is collected.
func serverMem() (runtime.MemStats, int) {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC() // finalizers (os.File...) of the first run
	runtime.ReadMemStats(&m)
	return m, runtime.NumGoroutine()
}

// waitSessions waits until the server has want sessions.
func waitSessions(t *testing.T, s *Server, want int) {
	t.Helper()
	deadline := time.Now().Add(ioTimeout)
	for s.nconns.Load() != int64(want) {
		if time.Now().After(deadline) {
			t.Fatalf("server has %d sessions, want %d", s.nconns.Load(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// idleDial connects from src to dst and reads the greeting with a
// net.Conn, then keeps only a duplicate of its descriptor: the
// connection stays open at no cost to the test's heap.
func idleDial(src [4]byte, dst string) (int, error) {
	d := net.Dialer{Timeout: ioTimeout, LocalAddr: &net.TCPAddr{IP: net.IP(src[:])}}
	conn, err := d.Dial("tcp", dst)
	if err != nil {
		return -1, err
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(ioTimeout))
	buf := make([]byte, len(greeting)+2)
	if _, err := io.ReadFull(conn, buf); err != nil {
		return -1, fmt.Errorf("reading the greeting: %w (got %q)", err, buf)
	}
	if got := string(buf); got != greeting+"\r\n" {
		return -1, fmt.Errorf("greeting %q, want %q", got, greeting+"\r\n")
	}
	raw, err := conn.(*net.TCPConn).SyscallConn()
	if err != nil {
		return -1, err
	}
	fd, dupErr := -1, error(nil)
	if err := raw.Control(func(s uintptr) { fd, dupErr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return -1, err
	}
	return fd, dupErr
}

// ensureOpenFiles raises the soft limit on open files to need if the hard
// limit allows. Otherwise the test cannot run: in CI that is a failure,
// elsewhere a skip.
func ensureOpenFiles(t *testing.T, need uint64) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatalf("getrlimit: %v", err)
	}
	if lim.Cur < need && lim.Max > lim.Cur {
		old := lim
		lim.Cur = min(need, lim.Max)
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			t.Logf("raising the open files limit from %d to %d: %v", old.Cur, lim.Cur, err)
			lim = old
		} else {
			t.Cleanup(func() { syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old) })
		}
	}
	if lim.Cur < need {
		msg := fmt.Sprintf("open files limit is %d (hard %d), the test needs %d: raise it (ulimit -n)", lim.Cur, lim.Max, need)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
}
