package pop3server

import (
	"container/list"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// Bounds of the failure-penalty table. An attacker chooses the keys (any
// user name, and with IPv6 many addresses), so the table must forget: at
// most penaltyMaxEntries entries, each dropped after penaltyIdle without a
// failure. 100,000 entries of a few hundred bytes each is a few tens of MB
// at worst; 15 minutes is Dovecot's auth_penalty expiry too.
const (
	penaltyMaxEntries = 100_000
	penaltyIdle       = 15 * time.Minute
)

// penaltyKey is one thing failures are counted against: a remote address
// (user == "") or a user name tried from a remote address. The two are
// separate so that a flood of guesses from one address slows that address
// only, never the same user logging in from elsewhere.
type penaltyKey struct {
	ip   netip.Addr
	user string
}

type penaltyEntry struct {
	key      penaltyKey
	failures int
	last     time.Time
}

// penaltyTable counts consecutive failed logins per key, in LRU order, with
// a hard bound on its size. It is owned by a Server; the zero value is not
// usable, see newPenaltyTable.
type penaltyTable struct {
	max  int
	idle time.Duration

	mu    sync.Mutex
	byKey map[penaltyKey]*list.Element // of *penaltyEntry
	lru   list.List                    // front: most recently failed
}

func newPenaltyTable(max int, idle time.Duration) *penaltyTable {
	return &penaltyTable{max: max, idle: idle, byKey: make(map[penaltyKey]*list.Element)}
}

// normUser makes the user part of a key: user names are matched without
// regard to case, as userdb does, so "Alice" and "alice" share a penalty.
func normUser(user string) string { return strings.ToLower(user) }

// fail records a failed login of user (possibly "", when the client never
// named one) from ip and returns the number of consecutive failures that now
// applies to this address: the larger of the address's count and the
// (user, address) count.
func (t *penaltyTable) fail(ip netip.Addr, user string, now time.Time) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.expire(now)
	n := t.bump(penaltyKey{ip: ip}, now)
	if user != "" {
		n = max(n, t.bump(penaltyKey{ip: ip, user: normUser(user)}, now))
	}
	return n
}

// bump adds one failure to k, creating or refreshing its entry and evicting
// the least recently failed entries beyond max.
func (t *penaltyTable) bump(k penaltyKey, now time.Time) int {
	if el, ok := t.byKey[k]; ok {
		e := el.Value.(*penaltyEntry)
		e.failures++
		e.last = now
		t.lru.MoveToFront(el)
		return e.failures
	}
	for t.lru.Len() >= t.max {
		t.remove(t.lru.Back())
	}
	t.byKey[k] = t.lru.PushFront(&penaltyEntry{key: k, failures: 1, last: now})
	return 1
}

// succeed forgets the failures of ip and of each (name, ip): a successful
// login proves the address is (now) used by someone who knows a password.
// A guesser who owns an account can reset the address's count this way, but
// not the count of the user it is guessing for, which only that user's
// success resets.
func (t *penaltyTable) succeed(ip netip.Addr, names ...string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if el, ok := t.byKey[penaltyKey{ip: ip}]; ok {
		t.remove(el)
	}
	for _, n := range names {
		if el, ok := t.byKey[penaltyKey{ip: ip, user: normUser(n)}]; ok {
			t.remove(el)
		}
	}
}

// failures returns the current count of k (for tests and diagnostics).
func (t *penaltyTable) failures(ip netip.Addr, user string, now time.Time) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.expire(now)
	if el, ok := t.byKey[penaltyKey{ip: ip, user: normUser(user)}]; ok {
		return el.Value.(*penaltyEntry).failures
	}
	return 0
}

// len returns the number of entries held.
func (t *penaltyTable) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.lru.Len()
}

// expire drops entries idle for longer than t.idle. The list is in order of
// last failure, so only its tail needs looking at: amortised O(1).
func (t *penaltyTable) expire(now time.Time) {
	for el := t.lru.Back(); el != nil; el = t.lru.Back() {
		if now.Sub(el.Value.(*penaltyEntry).last) <= t.idle {
			return
		}
		t.remove(el)
	}
}

func (t *penaltyTable) remove(el *list.Element) {
	delete(t.byKey, el.Value.(*penaltyEntry).key)
	t.lru.Remove(el)
}

// penaltyDelay is the wait before the reply to the nth consecutive failure:
// base doubled for each earlier failure, capped (with base 2 s and cap 15 s:
// 2, 4, 8, 15, 15, ... seconds, as Dovecot's auth_penalty grows).
func penaltyDelay(base, ceiling time.Duration, n int) time.Duration {
	if base <= 0 {
		return 0
	}
	ceiling = max(ceiling, base)
	d := base
	for i := 1; i < n && d < ceiling; i++ {
		if d > ceiling/2 {
			return ceiling // and no overflow however large ceiling is
		}
		d *= 2
	}
	return min(d, ceiling)
}

// remoteIP is the address penalties and per-address caps are counted
// against. IPv4-mapped IPv6 addresses count as the IPv4 address. A
// connection without an IP address (a Unix socket, a test pipe) gets the
// zero Addr, so all such connections share one count.
func remoteIP(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort().Addr().Unmap()
	}
	if a == nil {
		return netip.Addr{}
	}
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}
