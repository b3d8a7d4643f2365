package pop3server

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestPenaltyDelay(t *testing.T) {
	s := time.Second
	ms := time.Millisecond
	tests := []struct {
		name          string
		base, ceiling time.Duration
		want          []time.Duration // for failures 1, 2, 3, ...
	}{
		{"Dovecot's progression", 2 * s, 15 * s, []time.Duration{2 * s, 4 * s, 8 * s, 15 * s, 15 * s, 15 * s}},
		{"test scale", 20 * ms, 160 * ms, []time.Duration{20 * ms, 40 * ms, 80 * ms, 160 * ms, 160 * ms}},
		{"ceiling below base: constant", 300 * ms, 100 * ms, []time.Duration{300 * ms, 300 * ms, 300 * ms}},
		{"no delay", -1, 15 * s, []time.Duration{0, 0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []time.Duration
			for n := 1; n <= len(tt.want); n++ {
				got = append(got, penaltyDelay(tt.base, tt.ceiling, n))
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("delays (-want +got):\n%s", diff)
			}
		})
	}
	// Many failures and a huge ceiling: no overflow past the ceiling.
	if got, want := penaltyDelay(time.Second, 1<<62, 1000), time.Duration(1<<62); got != want {
		t.Errorf("penaltyDelay after 1000 failures = %v, want the ceiling %v", got, want)
	}
}

func TestPenaltyTable(t *testing.T) {
	attacker := netip.MustParseAddr("127.0.0.2")
	user := netip.MustParseAddr("127.0.0.3")
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	type step struct {
		op   string // fail, succeed, or count (of ip, name)
		ip   netip.Addr
		name string
		at   time.Duration // after now
		want int           // fail's result, or count's
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"address and user counted separately", []step{
			{op: "fail", ip: attacker, name: "alice", want: 1},
			{op: "fail", ip: attacker, name: "alice", want: 2},
			{op: "fail", ip: attacker, name: "Alice", want: 3}, // case-insensitive
			// Another name from the same address: the address's count.
			{op: "fail", ip: attacker, name: "bob", want: 4},
			{op: "count", ip: attacker, name: "bob", want: 1},
			// The same user from another address starts from scratch.
			{op: "fail", ip: user, name: "alice", want: 1},
			{op: "count", ip: attacker, name: "alice", want: 3},
		}},
		{"no user name: the address only", []step{
			{op: "fail", ip: attacker, want: 1},
			{op: "fail", ip: attacker, want: 2},
			{op: "fail", ip: attacker, name: "alice", want: 3},
			{op: "count", ip: attacker, name: "alice", want: 1},
		}},
		{"success resets the address and that user only", []step{
			{op: "fail", ip: attacker, name: "alice", want: 1},
			{op: "fail", ip: attacker, name: "bob", want: 2},
			{op: "fail", ip: attacker, name: "bob", want: 3},
			{op: "succeed", ip: attacker, name: "alice"},
			{op: "count", ip: attacker, want: 0},
			{op: "count", ip: attacker, name: "alice", want: 0},
			{op: "count", ip: attacker, name: "bob", want: 2},
			{op: "fail", ip: attacker, name: "bob", want: 3},
			{op: "fail", ip: attacker, name: "carol", want: 2},
		}},
		{"forgotten after 15 idle minutes", []step{
			{op: "fail", ip: attacker, name: "alice", want: 1},
			{op: "fail", ip: attacker, name: "alice", at: 10 * time.Minute, want: 2},
			{op: "count", ip: attacker, name: "alice", at: 24 * time.Minute, want: 2},
			{op: "count", ip: attacker, name: "alice", at: 25*time.Minute + time.Second, want: 0},
			{op: "fail", ip: attacker, name: "alice", at: 26 * time.Minute, want: 1},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pt := newPenaltyTable(penaltyMaxEntries, penaltyIdle)
			for i, st := range tt.steps {
				var got int
				switch st.op {
				case "fail":
					got = pt.fail(st.ip, st.name, now.Add(st.at))
				case "count":
					got = pt.failures(st.ip, st.name, now.Add(st.at))
				case "succeed":
					pt.succeed(st.ip, st.name)
					continue
				}
				if got != st.want {
					t.Errorf("step %d: %s(%v, %q) = %d, want %d", i, st.op, st.ip, st.name, got, st.want)
				}
			}
		})
	}
}

// TestPenaltyTableBound: a flood of distinct keys (addresses and user
// names are the attacker's choice) keeps the table at its cap, forgetting
// the least recently failed keys first.
func TestPenaltyTableBound(t *testing.T) {
	pt := newPenaltyTable(penaltyMaxEntries, penaltyIdle)
	now := time.Now()
	addr := func(i int) netip.Addr {
		return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
	}
	// A key failing all along stays: it is always recent.
	hot := netip.MustParseAddr("192.0.2.1")
	const n = 200_000
	for i := range n {
		pt.fail(addr(i), "", now)
		if i%1000 == 0 {
			pt.fail(hot, "", now)
		}
		if l := pt.len(); l > penaltyMaxEntries {
			t.Fatalf("after %d keys the table holds %d entries, more than %d", i+1, l, penaltyMaxEntries)
		}
	}
	if l, m := pt.len(), len(pt.byKey); l != penaltyMaxEntries || m != penaltyMaxEntries {
		t.Errorf("table holds %d entries (map %d), want %d", l, m, penaltyMaxEntries)
	}
	if got := pt.failures(addr(0), "", now); got != 0 {
		t.Errorf("oldest key still counted: %d failures", got)
	}
	if got := pt.failures(addr(n-1), "", now); got != 1 {
		t.Errorf("newest key: %d failures, want 1", got)
	}
	if got, want := pt.failures(hot, "", now), n/1000; got != want {
		t.Errorf("recently failing key: %d failures, want %d", got, want)
	}
	// Idle entries go: the whole table expires.
	if got := pt.failures(hot, "", now.Add(penaltyIdle+time.Second)); got != 0 || pt.len() != 0 {
		t.Errorf("after %v idle: %d failures, %d entries, want none", penaltyIdle, got, pt.len())
	}
}

func TestRemoteIP(t *testing.T) {
	tests := []struct {
		addr net.Addr
		want netip.Addr
	}{
		{&net.TCPAddr{IP: net.ParseIP("192.0.2.7"), Port: 110}, netip.MustParseAddr("192.0.2.7")},
		// IPv4-mapped IPv6 is the IPv4 address, not a second key for it.
		{&net.TCPAddr{IP: net.ParseIP("::ffff:192.0.2.7"), Port: 110}, netip.MustParseAddr("192.0.2.7")},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 110}, netip.MustParseAddr("2001:db8::1")},
		{&net.UnixAddr{Name: "/run/popbox.sock", Net: "unix"}, netip.Addr{}},
		{nil, netip.Addr{}},
	}
	for _, tt := range tests {
		if got := remoteIP(tt.addr); got != tt.want {
			t.Errorf("remoteIP(%v) = %v, want %v", tt.addr, got, tt.want)
		}
	}
}
