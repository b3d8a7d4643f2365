package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/popbox/popbox/lmtp"
	"github.com/popbox/popbox/pop3server"
)

// Label values that stand for anything outside the fixed sets.
const (
	other   = "other"
	unknown = "unknown"
)

// ListenerLMTP is the listener label of LMTP connections.
const ListenerLMTP = "lmtp"

// Metrics holds a private registry and every series popbox reports. Create
// it with New; it is safe for concurrent use.
type Metrics struct {
	reg *prometheus.Registry

	accepted *prometheus.CounterVec
	refused  *prometheus.CounterVec
	// acceptedBy and refusedBy are the series resolved in New, so that
	// reporting does not allocate; a pair missing from refusedBy is
	// normalised and resolved on the spot (bounded: few listeners and
	// reasons, and refusals are not the hot path).
	acceptedBy map[string]prometheus.Counter
	refusedBy  map[refusal]prometheus.Counter

	sessions  prometheus.Gauge
	logins    map[string]*[2]prometheus.Counter // by mechanism; [0] failure, [1] success
	commands  map[string]*[2]prometheus.Counter // by command; [0] err, [1] ok
	sentRETR  prometheus.Counter
	sentTOP   prometheus.Counter
	retrieved prometheus.Counter
	deleted   prometheus.Counter
	inUse     prometheus.Counter

	deliveries [5]prometheus.Counter // by lmtp.DeliveryResult; [4] unknown

	opSeconds [numOps]prometheus.Observer
	opErrors  [numOps]prometheus.Counter
	lockWait  prometheus.Observer

	pop3 pop3Events
	lmtp lmtpEvents
}

type refusal struct{ listener, reason string }

// op is a timed store operation.
type op int

const (
	opOpen op = iota
	opDeliver
	opCommit
	opMessageOpen
	numOps
)

var opNames = [numOps]string{"open", "deliver", "commit", "message_open"}

// latencyBuckets span a cached snapshot (well under a millisecond) to a
// delivery waiting on a slow disk or database (seconds): fsync dominates
// Deliver and Commit.
var latencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// New creates the metrics and their registry, with the Go runtime and
// process collectors.
func New() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.pop3.m, m.lmtp.m = m, m
	reg := m.reg
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	m.accepted = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "popbox_connections_accepted_total",
		Help: "Connections that became sessions, by listener.",
	}, []string{"listener"})
	m.refused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "popbox_connections_refused_total",
		Help: "Connections told to try again later and closed, by listener and reason.",
	}, []string{"listener", "reason"})
	m.acceptedBy = map[string]prometheus.Counter{}
	for _, l := range []string{pop3server.ListenerPOP3, pop3server.ListenerPOP3S, ListenerLMTP, other} {
		m.acceptedBy[l] = m.accepted.WithLabelValues(l)
	}
	m.refusedBy = map[refusal]prometheus.Counter{}
	for _, r := range []refusal{
		{pop3server.ListenerPOP3, pop3server.RefusedMaxConnections},
		{pop3server.ListenerPOP3, pop3server.RefusedPerAddress},
		{pop3server.ListenerPOP3S, pop3server.RefusedMaxConnections},
		{pop3server.ListenerPOP3S, pop3server.RefusedPerAddress},
		{ListenerLMTP, lmtp.RefusedMaxConnections},
	} {
		m.refusedBy[r] = m.refused.WithLabelValues(r.listener, r.reason)
	}

	m.sessions = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "popbox_pop3_sessions",
		Help: "POP3 sessions open now, logged in or not.",
	})
	logins := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "popbox_pop3_logins_total",
		Help: "POP3 logins by mechanism and result (success: maildrop open; failure: bad credentials).",
	}, []string{"mechanism", "result"})
	m.logins = map[string]*[2]prometheus.Counter{}
	for _, mech := range append(pop3server.LoginMechanisms(), other) {
		m.logins[mech] = &[2]prometheus.Counter{logins.WithLabelValues(mech, "failure"), logins.WithLabelValues(mech, "success")}
	}
	commands := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "popbox_pop3_commands_total",
		Help: "POP3 commands answered, by command and result (ok: +OK, err: -ERR); unknown for lines that name no command.",
	}, []string{"command", "result"})
	m.commands = map[string]*[2]prometheus.Counter{}
	for _, name := range append(pop3server.CommandNames(), unknown) {
		m.commands[name] = &[2]prometheus.Counter{commands.WithLabelValues(name, "err"), commands.WithLabelValues(name, "ok")}
	}
	sent := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "popbox_pop3_sent_bytes_total",
		Help: "Message octets sent, by command: RETR (wire size) or TOP (stored octets sent).",
	}, []string{"command"})
	m.sentRETR, m.sentTOP = sent.WithLabelValues("RETR"), sent.WithLabelValues("TOP")
	m.retrieved = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "popbox_pop3_messages_retrieved_total",
		Help: "Messages sent whole by RETR.",
	})
	m.deleted = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "popbox_pop3_messages_deleted_total",
		Help: "Messages removed by QUIT.",
	})
	m.inUse = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "popbox_pop3_maildrop_in_use_total",
		Help: "Logins refused with [IN-USE]: another session held the maildrop lock.",
	})

	deliveries := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "popbox_lmtp_deliveries_total",
		Help: "LMTP recipients' final replies after DATA: ok, temp (4xx), perm (5xx), quota (mailbox full).",
	}, []string{"result"})
	for r := lmtp.Delivered; r <= lmtp.DeliveryOverQuota; r++ {
		m.deliveries[r] = deliveries.WithLabelValues(r.String())
	}
	m.deliveries[len(m.deliveries)-1] = deliveries.WithLabelValues(unknown)

	opSeconds := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "popbox_store_operation_duration_seconds",
		Help:    "Latency of store calls: open (login), deliver, commit (QUIT), message_open (RETR, TOP).",
		Buckets: latencyBuckets,
	}, []string{"operation"})
	opErrors := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "popbox_store_operation_errors_total",
		Help: "Store calls that failed, by operation ([IN-USE] and over-quota are not failures).",
	}, []string{"operation"})
	for o, name := range opNames {
		m.opSeconds[o] = opSeconds.WithLabelValues(name)
		m.opErrors[o] = opErrors.WithLabelValues(name)
	}

	lockWait := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "popbox_store_lock_wait_seconds",
		Help:    "Time waited for a mailbox's index lock (Maildir store: deliveries, logins and QUIT queue on it).",
		Buckets: latencyBuckets,
	}, []string{"lock"})
	m.lockWait = lockWait.WithLabelValues("index")

	reg.MustRegister(m.accepted, m.refused, m.sessions, logins, commands, sent, m.retrieved, m.deleted, m.inUse,
		deliveries, opSeconds, opErrors, lockWait)
	return m
}

// LockWait records a wait for a mailbox's index lock; give it to the
// Maildir store (maildir.Options.LockWait).
func (m *Metrics) LockWait(d time.Duration) { m.lockWait.Observe(d.Seconds()) }

// Gatherer is the registry, for promhttp and tests.
func (m *Metrics) Gatherer() prometheus.Gatherer { return m.reg }

// POP3 returns the pop3server.Events that feed these metrics.
func (m *Metrics) POP3() pop3server.Events { return &m.pop3 }

// LMTP returns the lmtp.Events that feed these metrics.
func (m *Metrics) LMTP() lmtp.Events { return &m.lmtp }

func (m *Metrics) connAccepted(listener string) {
	c, ok := m.acceptedBy[listener]
	if !ok {
		c = m.acceptedBy[other]
	}
	c.Inc()
}

func (m *Metrics) connRefused(listener, reason string) {
	if c, ok := m.refusedBy[refusal{listener, reason}]; ok {
		c.Inc()
		return
	}
	if _, ok := m.acceptedBy[listener]; !ok {
		listener = other
	}
	if reason != pop3server.RefusedMaxConnections && reason != pop3server.RefusedPerAddress && reason != lmtp.RefusedMaxConnections {
		reason = other
	}
	m.refused.WithLabelValues(listener, reason).Inc()
}

// pop3Events implements pop3server.Events.
type pop3Events struct{ m *Metrics }

var _ pop3server.Events = (*pop3Events)(nil)

func (e *pop3Events) ConnAccepted(listener string)        { e.m.connAccepted(listener) }
func (e *pop3Events) ConnRefused(listener, reason string) { e.m.connRefused(listener, reason) }
func (e *pop3Events) SessionStarted()                     { e.m.sessions.Inc() }
func (e *pop3Events) SessionEnded()                       { e.m.sessions.Dec() }
func (e *pop3Events) InUse()                              { e.m.inUse.Inc() }

func (e *pop3Events) Login(mechanism string, ok bool) {
	c, found := e.m.logins[mechanism]
	if !found {
		c = e.m.logins[other]
	}
	c[index(ok)].Inc()
}

func (e *pop3Events) Command(name string, ok bool) {
	c, found := e.m.commands[name]
	if !found {
		c = e.m.commands[unknown]
	}
	c[index(ok)].Inc()
}

func (e *pop3Events) MessageSent(top bool, n int64) {
	if top {
		e.m.sentTOP.Add(float64(n))
		return
	}
	e.m.sentRETR.Add(float64(n))
	e.m.retrieved.Inc()
}

func (e *pop3Events) MessagesDeleted(n int) { e.m.deleted.Add(float64(n)) }

// lmtpEvents implements lmtp.Events.
type lmtpEvents struct{ m *Metrics }

var _ lmtp.Events = (*lmtpEvents)(nil)

func (e *lmtpEvents) ConnAccepted()             { e.m.connAccepted(ListenerLMTP) }
func (e *lmtpEvents) ConnRefused(reason string) { e.m.connRefused(ListenerLMTP, reason) }

func (e *lmtpEvents) Delivery(r lmtp.DeliveryResult) {
	if r < 0 || int(r) >= len(e.m.deliveries)-1 {
		r = lmtp.DeliveryResult(len(e.m.deliveries) - 1)
	}
	e.m.deliveries[r].Inc()
}

func index(ok bool) int {
	if ok {
		return 1
	}
	return 0
}
