package metrics

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/popbox/popbox/lmtp"
	"github.com/popbox/popbox/pop3server"
)

// value returns the value of the series name{labels} (labels as "k=v"
// pairs), or -1 if there is none. Histograms give their sample count.
func value(t testing.TB, m *Metrics, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := m.Gatherer().Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, s := range mf.GetMetric() {
			if !hasLabels(s, labels) {
				continue
			}
			switch {
			case s.Counter != nil:
				return s.Counter.GetValue()
			case s.Gauge != nil:
				return s.Gauge.GetValue()
			case s.Histogram != nil:
				return float64(s.Histogram.GetSampleCount())
			}
		}
	}
	return -1
}

func hasLabels(s *dto.Metric, labels []string) bool {
	if len(s.GetLabel()) != len(labels) {
		return false
	}
	for _, kv := range labels {
		k, v, _ := strings.Cut(kv, "=")
		if !slices.ContainsFunc(s.GetLabel(), func(l *dto.LabelPair) bool { return l.GetName() == k && l.GetValue() == v }) {
			return false
		}
	}
	return true
}

// TestPOP3Events: each event moves its series, and only its own.
func TestPOP3Events(t *testing.T) {
	m := New()
	ev := m.POP3()
	ev.ConnAccepted(pop3server.ListenerPOP3)
	ev.ConnAccepted(pop3server.ListenerPOP3S)
	ev.ConnAccepted(pop3server.ListenerPOP3S)
	ev.ConnRefused(pop3server.ListenerPOP3, pop3server.RefusedPerAddress)
	ev.ConnRefused(pop3server.ListenerPOP3S, pop3server.RefusedMaxConnections)
	ev.SessionStarted()
	ev.SessionStarted()
	ev.SessionEnded()
	ev.Login("USER", false)
	ev.Login("USER", false)
	ev.Login("USER", true)
	ev.Login("SCRAM-SHA-256", true)
	ev.Command("USER", true)
	ev.Command("PASS", false)
	ev.Command("RETR", true)
	ev.Command("", false)
	ev.MessageSent(false, 1000)
	ev.MessageSent(false, 234)
	ev.MessageSent(true, 50)
	ev.MessagesDeleted(3)
	ev.InUse()

	for _, tt := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"popbox_connections_accepted_total", []string{"listener=pop3"}, 1},
		{"popbox_connections_accepted_total", []string{"listener=pop3s"}, 2},
		{"popbox_connections_accepted_total", []string{"listener=lmtp"}, 0},
		{"popbox_connections_refused_total", []string{"listener=pop3", "reason=per_address"}, 1},
		{"popbox_connections_refused_total", []string{"listener=pop3", "reason=max_connections"}, 0},
		{"popbox_connections_refused_total", []string{"listener=pop3s", "reason=max_connections"}, 1},
		{"popbox_pop3_sessions", nil, 1},
		{"popbox_pop3_logins_total", []string{"mechanism=USER", "result=failure"}, 2},
		{"popbox_pop3_logins_total", []string{"mechanism=USER", "result=success"}, 1},
		{"popbox_pop3_logins_total", []string{"mechanism=SCRAM-SHA-256", "result=success"}, 1},
		{"popbox_pop3_logins_total", []string{"mechanism=PLAIN", "result=success"}, 0},
		{"popbox_pop3_commands_total", []string{"command=USER", "result=ok"}, 1},
		{"popbox_pop3_commands_total", []string{"command=PASS", "result=err"}, 1},
		{"popbox_pop3_commands_total", []string{"command=PASS", "result=ok"}, 0},
		{"popbox_pop3_commands_total", []string{"command=RETR", "result=ok"}, 1},
		{"popbox_pop3_commands_total", []string{"command=unknown", "result=err"}, 1},
		{"popbox_pop3_sent_bytes_total", []string{"command=RETR"}, 1234},
		{"popbox_pop3_sent_bytes_total", []string{"command=TOP"}, 50},
		{"popbox_pop3_messages_retrieved_total", nil, 2},
		{"popbox_pop3_messages_deleted_total", nil, 3},
		{"popbox_pop3_maildrop_in_use_total", nil, 1},
	} {
		if got := value(t, m, tt.name, tt.labels...); got != tt.want {
			t.Errorf("%s%v = %v, want %v", tt.name, tt.labels, got, tt.want)
		}
	}
}

func TestLMTPEvents(t *testing.T) {
	m := New()
	ev := m.LMTP()
	ev.ConnAccepted()
	ev.ConnRefused(lmtp.RefusedMaxConnections)
	for _, r := range []lmtp.DeliveryResult{lmtp.Delivered, lmtp.Delivered, lmtp.DeliveryTempFail,
		lmtp.DeliveryPermFail, lmtp.DeliveryOverQuota, lmtp.DeliveryResult(99), lmtp.DeliveryResult(-1)} {
		ev.Delivery(r)
	}
	for _, tt := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"popbox_connections_accepted_total", []string{"listener=lmtp"}, 1},
		{"popbox_connections_refused_total", []string{"listener=lmtp", "reason=max_connections"}, 1},
		{"popbox_lmtp_deliveries_total", []string{"result=ok"}, 2},
		{"popbox_lmtp_deliveries_total", []string{"result=temp"}, 1},
		{"popbox_lmtp_deliveries_total", []string{"result=perm"}, 1},
		{"popbox_lmtp_deliveries_total", []string{"result=quota"}, 1},
		{"popbox_lmtp_deliveries_total", []string{"result=unknown"}, 2},
	} {
		if got := value(t, m, tt.name, tt.labels...); got != tt.want {
			t.Errorf("%s%v = %v, want %v", tt.name, tt.labels, got, tt.want)
		}
	}
}

// TestSeriesExistFromStart: every series is there at 0 before any event,
// so that rate() and alerts see a counter start rather than appear.
func TestSeriesExistFromStart(t *testing.T) {
	m := New()
	for _, name := range pop3server.CommandNames() {
		for _, r := range []string{"ok", "err"} {
			if got := value(t, m, "popbox_pop3_commands_total", "command="+name, "result="+r); got != 0 {
				t.Errorf("commands{%s,%s} = %v at start, want 0", name, r, got)
			}
		}
	}
	for _, op := range opNames {
		if got := value(t, m, "popbox_store_operation_duration_seconds", "operation="+op); got != 0 {
			t.Errorf("store histogram %s has %v samples at start, want 0", op, got)
		}
	}
}

// TestCardinalityBounded: whatever names arrive, the number of series
// stays what New made (plus the few normalised refusal pairs).
func TestCardinalityBounded(t *testing.T) {
	m := New()
	count := func(name string) int {
		n, err := testutil.GatherAndCount(m.Gatherer(), name)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	names := []string{"popbox_pop3_commands_total", "popbox_pop3_logins_total", "popbox_connections_accepted_total"}
	before := map[string]int{}
	for _, n := range names {
		before[n] = count(n)
	}
	ev := m.POP3()
	for i := range 1000 {
		junk := fmt.Sprintf("X%d\x00\xff", i)
		ev.Command(junk, i%2 == 0)
		ev.Login(junk, i%2 == 0)
		ev.ConnAccepted(junk)
		ev.ConnRefused(junk, junk)
		m.LMTP().ConnRefused(junk)
	}
	for _, n := range names {
		if got := count(n); got != before[n] {
			t.Errorf("%s: %d series after junk names, %d before", n, got, before[n])
		}
	}
	if got, want := value(t, m, "popbox_pop3_commands_total", "command=unknown", "result=ok"), 500.0; got != want {
		t.Errorf("unknown commands ok = %v, want %v", got, want)
	}
	if got, want := value(t, m, "popbox_pop3_logins_total", "mechanism=other", "result=failure"), 500.0; got != want {
		t.Errorf("other mechanism failures = %v, want %v", got, want)
	}
	if got, want := value(t, m, "popbox_connections_refused_total", "listener=other", "reason=other"), 1000.0; got != want {
		t.Errorf("refused{other,other} = %v, want %v", got, want)
	}
	if got, want := value(t, m, "popbox_connections_refused_total", "listener=lmtp", "reason=other"), 1000.0; got != want {
		t.Errorf("refused{lmtp,other} = %v, want %v", got, want)
	}
	// 5 pairs resolved in New, plus {other,other} and {lmtp,other}.
	if got := count("popbox_connections_refused_total"); got != 7 {
		t.Errorf("popbox_connections_refused_total has %d series, want 7", got)
	}
}

// TestEventsDoNotAllocate: the per-command events are on every client's
// path and must cost no garbage.
func TestEventsDoNotAllocate(t *testing.T) {
	m := New()
	ev, lev := m.POP3(), m.LMTP()
	for name, f := range map[string]func(){
		"Command":        func() { ev.Command("RETR", true) },
		"Command junk":   func() { ev.Command("XYZZY", false) },
		"Login":          func() { ev.Login("PLAIN", true) },
		"MessageSent":    func() { ev.MessageSent(false, 4096) },
		"ConnAccepted":   func() { ev.ConnAccepted(pop3server.ListenerPOP3S) },
		"ConnRefused":    func() { ev.ConnRefused(pop3server.ListenerPOP3, pop3server.RefusedPerAddress) },
		"Session":        func() { ev.SessionStarted(); ev.SessionEnded() },
		"LMTP delivery":  func() { lev.Delivery(lmtp.Delivered) },
		"LMTP accepted":  func() { lev.ConnAccepted() },
		"store observer": func() { m.observe(opMessageOpen, time.Now(), nil) },
	} {
		if n := testing.AllocsPerRun(100, f); n != 0 {
			t.Errorf("%s: %v allocations per call, want 0", name, n)
		}
	}
}

// TestLint: the metric names and help texts follow Prometheus's
// conventions (units, _total on counters).
func TestLint(t *testing.T) {
	problems, err := testutil.GatherAndLint(New().Gatherer())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "popbox_") {
			t.Errorf("%s: %s", p.Metric, p.Text)
		}
	}
}
