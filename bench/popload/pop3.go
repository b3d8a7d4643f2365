package main

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// modeThroughput: one session, LIST, then RETR of every message with
// -pipeline commands in flight. The RETR phase alone is timed.
func modeThroughput(o *opts) error {
	t0 := time.Now()
	cl, err := dial(o, 256<<10)
	if err != nil {
		return err
	}
	defer cl.c.Close()
	if err := cl.login(o.user); err != nil {
		return fmt.Errorf("login: %w", err)
	}
	tLogin := time.Now()
	n, _, err := cl.stat()
	if err != nil {
		return err
	}
	if _, err := cl.cmd("LIST"); err != nil {
		return err
	}
	sizes := make([]int64, 0, n)
	if _, err := cl.multi(func(l []byte) {
		f := strings.Fields(string(l))
		if len(f) == 2 {
			v, _ := strconv.ParseInt(f[1], 10, 64)
			sizes = append(sizes, v)
		}
	}); err != nil {
		return err
	}
	tList := time.Now()
	cm := markCPU(o)
	depth := max(o.pipeline, 1)
	var total int64
	sent, mismatch := 0, 0
	for i := 1; i <= n; i++ {
		for sent < n && sent < i-1+depth {
			sent++
			_, _ = cl.w.WriteString("RETR " + strconv.Itoa(sent) + "\r\n")
		}
		cl.deadline()
		if err := cl.w.Flush(); err != nil {
			return err
		}
		if _, err := cl.resp(); err != nil {
			return fmt.Errorf("RETR %d: %w", i, err)
		}
		k, err := cl.multi(nil)
		if err != nil {
			return fmt.Errorf("RETR %d body: %w", i, err)
		}
		if i-1 < len(sizes) && k != sizes[i-1] {
			mismatch++
		}
		total += k
	}
	tRetr := time.Now()
	cpu := cpuSince(o, cm, n, "msg")
	_ = cl.quit()
	secs := tRetr.Sub(tList).Seconds()
	result(o, "mode=throughput msgs=%d bytes=%d pipeline=%d retr_secs=%.3f login_ms=%s list_ms=%s msgs_per_s=%.1f MB_per_s=%.2f size_mismatch=%d %s",
		n, total, depth, secs, ms(tLogin.Sub(t0)), ms(tList.Sub(tLogin)),
		float64(n)/secs, float64(total)/1e6/secs, mismatch, cpu)
	return nil
}

// fullSession is scenario 2's session: login, STAT, UIDL, RETR every
// message, QUIT. It returns the octets and messages retrieved.
func fullSession(o *opts, user string) (int64, int, error) {
	cl, err := dial(o, 32<<10)
	if err != nil {
		return 0, 0, err
	}
	defer cl.c.Close()
	if err := cl.login(user); err != nil {
		return 0, 0, fmt.Errorf("login %s: %w", user, err)
	}
	n, _, err := cl.stat()
	if err != nil {
		return 0, 0, err
	}
	if _, err := cl.listing("UIDL"); err != nil {
		return 0, 0, err
	}
	var total int64
	for i := 1; i <= n; i++ {
		if _, err := cl.cmd("RETR " + strconv.Itoa(i)); err != nil {
			return total, i - 1, err
		}
		k, err := cl.multi(nil)
		if err != nil {
			return total, i - 1, err
		}
		total += k
	}
	if _, err := cl.cmd("QUIT"); err != nil {
		return total, n, err
	}
	return total, n, nil
}

type loadResult struct {
	mu     sync.Mutex
	lat    []time.Duration
	errs   int64
	msgs   atomic.Int64
	bytes  atomic.Int64
	errMsg map[string]int
}

func (r *loadResult) addErr(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs++
	if r.errMsg == nil {
		r.errMsg = map[string]int{}
	}
	s := err.Error()
	if len(s) > 100 {
		s = s[:100]
	}
	r.errMsg[s]++
}

func (r *loadResult) printErrs() {
	for k, v := range r.errMsg {
		fmt.Fprintf(os.Stderr, "  error x%d: %s\n", v, k)
	}
}

// runLoad runs -c workers calling fn for -duration. Worker w owns users w,
// w+c, w+2c, ... so no two workers use one mailbox at once (popbox locks
// the maildrop, RFC 1939 §4) when there are at least as many users.
func runLoad(o *opts, users []string, fn func(user string) (int64, int, error)) (*loadResult, time.Duration) {
	res := &loadResult{}
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(o.duration)
	for w := range o.conc {
		wg.Go(func() {
			var mine []string
			for j := w; j < len(users); j += o.conc {
				mine = append(mine, users[j])
			}
			if len(mine) == 0 {
				mine = []string{users[w%len(users)]}
			}
			var lat []time.Duration
			for k := 0; time.Now().Before(deadline); k++ {
				t := time.Now()
				b, m, err := fn(mine[k%len(mine)])
				if err != nil {
					res.addErr(err)
					time.Sleep(10 * time.Millisecond)
					continue
				}
				lat = append(lat, time.Since(t))
				res.bytes.Add(b)
				res.msgs.Add(int64(m))
			}
			res.mu.Lock()
			res.lat = append(res.lat, lat...)
			res.mu.Unlock()
		})
	}
	wg.Wait()
	el := time.Since(start)
	sortDurations(res.lat)
	return res, el
}

func modeSessions(o *opts) error {
	users := parseUsers(o.users)
	if len(users) < o.conc {
		fmt.Fprintf(os.Stderr, "note: %d users < %d workers: workers share mailboxes\n", len(users), o.conc)
	}
	if o.warmup {
		var wg sync.WaitGroup
		sem := make(chan struct{}, o.conc)
		for _, u := range users {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				if _, _, err := fullSession(o, u); err != nil {
					fmt.Fprintln(os.Stderr, "warm-up:", err)
				}
			})
		}
		wg.Wait()
	}
	cm := markCPU(o)
	r, el := runLoad(o, users, func(u string) (int64, int, error) { return fullSession(o, u) })
	n := len(r.lat)
	s := el.Seconds()
	result(o, "mode=sessions workers=%d secs=%.2f sessions=%d sessions_per_s=%.1f msgs_per_s=%.1f MB_per_s=%.2f p50_ms=%s p90_ms=%s p99_ms=%s max_ms=%s errors=%d %s",
		o.conc, s, n, float64(n)/s, float64(r.msgs.Load())/s, float64(r.bytes.Load())/1e6/s,
		ms(pct(r.lat, .5)), ms(pct(r.lat, .9)), ms(pct(r.lat, .99)), ms(pct(r.lat, 1)), r.errs, cpuSince(o, cm, n, "session"))
	r.printErrs()
	return nil
}

// modeLogin: -c workers loop connect, login, QUIT over -users. With
// -warmup every user logs in once first, untimed (popbox adds SCRAM
// credentials to an imported user at the first login, and upgrades a hash
// of another scheme; Dovecot creates a missing Maildir).
func modeLogin(o *opts) error {
	users := parseUsers(o.users)
	once := func(u string) (int64, int, error) {
		cl, err := dial(o, 4096)
		if err != nil {
			return 0, 0, err
		}
		defer cl.c.Close()
		if err := cl.login(u); err != nil {
			return 0, 0, err
		}
		_, err = cl.cmd("QUIT")
		return 0, 0, err
	}
	if o.warmup {
		var wg sync.WaitGroup
		sem := make(chan struct{}, o.conc)
		for _, u := range users {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				if _, _, err := once(u); err != nil {
					fmt.Fprintln(os.Stderr, "warm-up:", err)
				}
			})
		}
		wg.Wait()
	}
	cm := markCPU(o)
	r, el := runLoad(o, users, once)
	n := len(r.lat)
	s := el.Seconds()
	result(o, "mode=login workers=%d tls=%s secs=%.2f logins=%d logins_per_s=%.1f p50_ms=%s p90_ms=%s p99_ms=%s max_ms=%s errors=%d %s",
		o.conc, o.tlsMode, s, n, float64(n)/s, ms(pct(r.lat, .5)), ms(pct(r.lat, .9)), ms(pct(r.lat, .99)), ms(pct(r.lat, 1)),
		r.errs, cpuSince(o, cm, n, "login"))
	r.printErrs()
	return nil
}

// modeIdle opens -n sessions from -c dialers, each logged in as its own
// user, waits 2 s, reads the server's memory, holds them -hold, then sends
// NOOP on each (the alive count) and QUIT.
func modeIdle(o *opts) error {
	users := parseUsers(o.users)
	if len(users) < o.n {
		return fmt.Errorf("%d users for %d sessions: every session needs its own mailbox", len(users), o.n)
	}
	base, haveMem := measureMem(o.pids)
	sysBase := sysUsedKB()
	conns := make([]*client, o.n)
	var next atomic.Int64
	res := &loadResult{}
	var wg sync.WaitGroup
	t0 := time.Now()
	for range o.conc {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= o.n {
					return
				}
				cl, err := dial(o, 1024)
				if err == nil {
					if err = cl.login(users[i]); err != nil {
						cl.c.Close()
					}
				}
				if err != nil {
					res.addErr(err)
					continue
				}
				_ = cl.c.SetDeadline(time.Time{})
				conns[i] = cl
			}
		})
	}
	wg.Wait()
	estab := time.Since(t0)
	up := 0
	for _, c := range conns {
		if c != nil {
			up++
		}
	}
	time.Sleep(2 * time.Second) // let the server settle
	peak, _ := measureMem(o.pids)
	sysPeak := sysUsedKB()
	time.Sleep(o.hold)
	var alive atomic.Int64
	var wg2 sync.WaitGroup
	sem := make(chan struct{}, 200)
	for _, c := range conns {
		if c == nil {
			continue
		}
		sem <- struct{}{}
		wg2.Go(func() {
			defer func() { <-sem }()
			if _, err := c.cmd("NOOP"); err == nil {
				alive.Add(1)
			}
			_ = c.quit()
		})
	}
	wg2.Wait()
	mem := "mem=n/a"
	if haveMem && up > 0 {
		mem = fmt.Sprintf("procs_before=%d pss_before_MB=%.1f procs=%d rss_MB=%.1f pss_MB=%.1f rss_per_conn_KB=%.1f pss_per_conn_KB=%.1f",
			base.procs, float64(base.pssKB)/1024, peak.procs, float64(peak.rssKB)/1024, float64(peak.pssKB)/1024,
			float64(peak.rssKB-base.rssKB)/float64(up), float64(peak.pssKB-base.pssKB)/float64(up))
	}
	result(o, "mode=idle requested=%d established=%d alive=%d establish_secs=%.2f logins_per_s=%.1f %s sys_used_delta_MB=%.1f errors=%d",
		o.n, up, alive.Load(), estab.Seconds(), float64(up)/estab.Seconds(), mem, float64(sysPeak-sysBase)/1024, res.errs)
	res.printErrs()
	return nil
}

// dropCaches writes back dirty pages and drops the page cache, dentries
// and inodes (needs root).
func dropCaches() error {
	syscall.Sync()
	return os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0)
}

// modeStatUIDL times -n sessions of connect, USER/PASS, STAT, UIDL, QUIT,
// each optionally after -cold and -before.
func modeStatUIDL(o *opts) error {
	var login, su, total []time.Duration
	lines := 0
	for range o.n {
		if o.cold {
			if err := dropCaches(); err != nil {
				return fmt.Errorf("dropping caches: %w", err)
			}
		}
		if o.before != "" {
			if out, err := exec.Command("sh", "-c", o.before).CombinedOutput(); err != nil {
				return fmt.Errorf("-before: %v: %s", err, out)
			}
		}
		t0 := time.Now()
		cl, err := dial(o, 64<<10)
		if err != nil {
			return err
		}
		if err := cl.login(o.user); err != nil {
			cl.c.Close()
			return fmt.Errorf("login: %w", err)
		}
		t1 := time.Now()
		n, _, err := cl.stat()
		if err != nil {
			cl.c.Close()
			return err
		}
		k, err := cl.listing("UIDL")
		if err != nil {
			cl.c.Close()
			return err
		}
		if k != n {
			cl.c.Close()
			return fmt.Errorf("UIDL listed %d messages, STAT %d", k, n)
		}
		t2 := time.Now()
		if err := cl.quit(); err != nil {
			return err
		}
		t3 := time.Now()
		login = append(login, t1.Sub(t0))
		su = append(su, t2.Sub(t1))
		total = append(total, t3.Sub(t0))
		lines = n
	}
	for _, d := range [][]time.Duration{login, su, total} {
		sortDurations(d)
	}
	result(o, "mode=statuidl msgs=%d sessions=%d cold=%t login_ms_p50=%s stat_uidl_ms_p50=%s session_ms_p50=%s session_ms_p90=%s session_ms_max=%s",
		lines, o.n, o.cold, ms(pct(login, .5)), ms(pct(su, .5)), ms(pct(total, .5)), ms(pct(total, .9)), ms(pct(total, 1)))
	return nil
}
