package app

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/popbox/popbox/pop3server"
	"github.com/popbox/popbox/userdb"
)

// timingSample is one refused login: the time from sending USER and PASS
// to reading the reply to PASS, and the CPU time the process spent
// meanwhile.
type timingSample struct {
	wall, cpu time.Duration
}

// processCPU returns the CPU time the process has used so far.
func processCPU(t *testing.T) time.Duration {
	t.Helper()
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_PROCESS_CPUTIME_ID, &ts); err != nil {
		t.Fatalf("clock_gettime: %v", err)
	}
	return time.Duration(ts.Nano())
}

// TestUnknownUserTimingMatchesWrongPassword measures, end to end through
// the real server, Backend and user database with the default argon2id
// parameters, how long USER/PASS takes to be refused for each kind of bad
// credentials, and requires the same reply after the same time: within
// [0.8, 1.25] of a wrong password's. Otherwise the time of the reply
// would tell an attacker which accounts exist, are disabled, or have had an
// app password revoked.
//
// The server's failure delay is off (AuthFailureDelay < 0; zero would mean
// the 2 s default), so what is timed is the path through the Backend, whose
// hash verification (about 17 ms here) is the only large cost. The kinds
// are sampled interleaved, in a new random order each round, so that
// drift in the machine's load, and the background write that records the
// failures of existing users, spread over all of them alike.
//
// Two measures are compared. The CPU time the process spends on a login is
// the work done, which other processes on the machine do not change: its
// medians must agree in every batch of samples. The wall-clock time is what
// an attacker sees, and also catches waiting (a sleep, a lock) that costs
// no CPU; it is compared at the 10th percentile, since load only adds to
// it (the medians differed by up to 1.5x under CI's load while the work did
// not). If it is out of bounds anyway, the test measures another batch, at
// most maxBatches in all: a real difference shows in every batch.
func TestUnknownUserTimingMatchesWrongPassword(t *testing.T) {
	const (
		rounds     = 31 // samples of each kind per batch, after a round of warm-up
		maxBatches = 3
		minRatio   = 0.8
		maxRatio   = 1.25
	)
	ctx := context.Background()
	data := DataDir(t.TempDir())
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	// The default hash parameters: their cost is what must not differ.
	users, err := userdb.Open(data.UsersPath(), userdb.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { users.Close() })
	for _, u := range []string{"alice", "carol"} {
		if err := users.Add(ctx, u, u+"-secret"); err != nil {
			t.Fatal(err)
		}
	}
	revoked, err := users.AddAppPassword(ctx, "alice", "old phone")
	if err != nil {
		t.Fatal(err)
	}
	current, err := users.AddAppPassword(ctx, "alice", "laptop")
	if err != nil {
		t.Fatal(err)
	}
	st, err := data.OpenStore(quiet)
	if err != nil {
		t.Fatal(err)
	}
	srv := &pop3server.Server{
		Backend:          Backend{Users: users, Store: st},
		Logger:           quiet,
		AuthFailureDelay: -1,
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	addr := l.Addr().String()

	// login runs USER and PASS on a new connection and returns the reply
	// to PASS.
	login := func(user, pass string) (string, timingSample) {
		t.Helper()
		conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(30 * time.Second))
		r := bufio.NewReader(conn)
		line := func() string {
			t.Helper()
			s, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("reading reply: %v (got %q)", err, s)
			}
			return strings.TrimSuffix(s, "\r\n")
		}
		if g := line(); !strings.HasPrefix(g, "+OK ") {
			t.Fatalf("greeting %q", g)
		}
		cpu, start := processCPU(t), time.Now()
		if _, err := io.WriteString(conn, "USER "+user+"\r\nPASS "+pass+"\r\n"); err != nil {
			t.Fatal(err)
		}
		if got := line(); got != "+OK send PASS" {
			t.Fatalf("USER %s: %q", user, got)
		}
		got := line()
		return got, timingSample{wall: time.Since(start), cpu: processCPU(t) - cpu}
	}
	loggedIn := func(user, pass string) {
		t.Helper()
		if got, _ := login(user, pass); !strings.HasPrefix(got, "+OK logged in") {
			t.Fatalf("login of %s: %q", user, got)
		}
	}

	// The credentials below all worked once: the app passwords until one
	// is revoked, carol's password until her account is disabled.
	loggedIn("alice", revoked)
	loggedIn("alice", current)
	loggedIn("carol", "carol-secret")
	if err := users.RevokeAppPassword(ctx, "alice", "old phone"); err != nil {
		t.Fatal(err)
	}
	if err := users.SetDisabled(ctx, "carol", true); err != nil {
		t.Fatal(err)
	}
	// The current app password's ID with another secret: the ID selects
	// its hash, which is verified and fails.
	wrongSecret := current[:5] + strings.Map(func(r rune) rune {
		switch r {
		case '-':
			return r
		case 'a':
			return 'b'
		}
		return 'a'
	}, current[5:])

	kinds := []struct {
		name, user, pass string
	}{
		{"wrong password", "alice", "wrong-password"}, // the reference
		{"unknown user", "nobody", "wrong-password"},
		{"invalid user name", "-alice", "wrong-password"},
		{"unknown user, app password", "nobody", revoked},
		{"revoked app password", "alice", revoked},
		{"app password, wrong secret", "alice", wrongSecret},
		{"disabled account, right password", "carol", "carol-secret"},
	}
	const want = "-ERR [AUTH] invalid user name or password"
	// quantile q of one measure. Reply times are compared at their tenth
	// percentile: a busy machine (CI runs other test packages beside this
	// one) only ever adds time, so the fast end is where the server's own
	// work shows, while the median wandered by up to 1.5x between kinds
	// under load. CPU times are compared at the median.
	quantile := func(ss []timingSample, f func(timingSample) time.Duration, q float64) time.Duration {
		var ds []time.Duration
		for _, s := range ss {
			ds = append(ds, f(s))
		}
		slices.Sort(ds)
		return ds[int(q*float64(len(ds)-1))]
	}
	wall := func(s timingSample) time.Duration { return s.wall }
	cpu := func(s timingSample) time.Duration { return s.cpu }
	// compare checks quantile q of one measure against the reference's
	// and returns what is out of bounds.
	compare := func(samples [][]timingSample, measure string, f func(timingSample) time.Duration, q float64) (report, bad []string) {
		ref := quantile(samples[0], f, q)
		for k, kind := range kinds {
			m := quantile(samples[k], f, q)
			ratio := float64(m) / float64(ref)
			report = append(report, fmt.Sprintf("  %-34s %9v  %.3f", kind.name, m.Round(time.Microsecond), ratio))
			if ratio < minRatio || ratio > maxRatio {
				bad = append(bad, fmt.Sprintf("%s: %s %v, %.2f times a wrong password's (%v), want within [%.2f, %.2f]",
					kind.name, measure, m, ratio, ref, minRatio, maxRatio))
			}
		}
		return report, bad
	}

	rng := rand.New(rand.NewPCG(1, 2))
	order := make([]int, len(kinds))
	for batch := 1; ; batch++ {
		samples := make([][]timingSample, len(kinds))
		start := time.Now()
		for round := range rounds + 1 {
			for i := range order {
				order[i] = i
			}
			rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
			for _, k := range order {
				reply, s := login(kinds[k].user, kinds[k].pass)
				if reply != want {
					t.Fatalf("%s: %q, want %q", kinds[k].name, reply, want)
				}
				// Round 0 warms up: the first unknown user makes the
				// dummy hash, the first connections set up the
				// database pool.
				if round > 0 {
					samples[k] = append(samples[k], s)
				}
			}
		}
		wallReport, wallBad := compare(samples, "reply time (10th percentile)", wall, 0.1)
		cpuReport, cpuBad := compare(samples, "CPU time (median)", cpu, 0.5)
		t.Logf("batch %d: %d samples of each kind in %v; ratios to a wrong password's:\nreply time, 10th percentile\n%s\nCPU time, median\n%s",
			batch, rounds, time.Since(start).Round(time.Millisecond),
			strings.Join(wallReport, "\n"), strings.Join(cpuReport, "\n"))
		if len(wallBad) == 0 && len(cpuBad) == 0 {
			return
		}
		// A difference in the work done is no noise.
		if len(cpuBad) > 0 || batch == maxBatches {
			for _, b := range append(cpuBad, wallBad...) {
				t.Errorf("batch %d: %s", batch, b)
			}
			return
		}
		t.Logf("batch %d: reply times out of bounds while the CPU times agree; taken for noise from a busy machine, measuring again:\n%s",
			batch, strings.Join(wallBad, "\n"))
	}
}
