package fetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/popbox/popbox/fetch/dest"
	"github.com/popbox/popbox/pop3client"
)

const (
	// defaultPipeline is the RETR window when the server offers
	// PIPELINING (RFC 2449 §6.6) and the account does not set one.
	defaultPipeline = 128
	// spoolBudget bounds the bytes retrieved but not yet delivered. The
	// network side waits (sending NOOPs) when the destination falls this
	// far behind. A single larger message is still taken, alone.
	spoolBudget = 32 << 20
	// deliverTimeout is a backstop for one delivery; destinations that
	// talk to the network (lmtp, smtp) have their own, shorter deadlines.
	deliverTimeout = 30 * time.Minute
	// quitTimeout bounds the QUIT of a session that changed nothing.
	quitTimeout = 10 * time.Second
)

// Progress receives a run's progress, for a progress bar. Calls come from
// the run's goroutines, one at a time per account.
type Progress interface {
	// Planned is called once the run knows what it will retrieve.
	Planned(messages int, bytes int64)
	// Retrieved is called as message bytes arrive from the server.
	Retrieved(bytes int64)
	// Delivered is called when one message is durable locally.
	Delivered(size int64)
}

// Options configure a run beyond what the account says.
type Options struct {
	Logger *slog.Logger
	// DryRun connects, logs in and plans, but delivers, deletes and
	// records nothing.
	DryRun bool
	// Hostname names this host in the Received header (os.Hostname when
	// empty).
	Hostname string
	// Now is the clock (time.Now when nil); tests move it to age messages.
	Now      func() time.Time
	Progress Progress
	// Dest is passed to dest.Open.
	Dest dest.Options
	// SpoolBudget bounds the bytes retrieved but not yet delivered
	// (default 32 MiB); lower it on a device short of memory and disk.
	SpoolBudget int64
}

// Result is what one run of one account did.
type Result struct {
	Account    string
	Start, End time.Time
	// Fetched messages and their bytes are durable in the destination.
	Fetched int
	Bytes   int64
	// Deleted messages are gone from the server (QUIT answered +OK).
	Deleted int
	// Skipped: over max_size with oversize = "skip".
	Skipped int
	// Deferred: left for a later run by max_messages or max_bytes, or by a
	// stop request.
	Deferred int
	// Planned is what the run set out to retrieve (all a dry run does).
	Planned      int
	PlannedBytes int64
	// PlannedDeletes is what a dry run would delete.
	PlannedDeletes int
	// Err is nil or wraps one *Error per failure (a failed retrieval and
	// a failed delivery may both be reported).
	Err error
}

// item is one message of the server's listing.
type item struct {
	num      int
	uidl     string
	size     int64
	e        *Entry
	key      string
	oversize bool
	queued   bool // handed to the delivery side
}

// retrieved is a message read completely from the server.
type retrieved struct {
	it   *item
	sp   *spool
	n    int64
	when time.Time
}

// errStop ends a retrieval early after a stop request.
var errStop = errors.New("stop requested")

type session struct {
	a    *Account
	o    Options
	log  *slog.Logger
	j    *Journal
	d    dest.Destination
	c    *pop3client.Client
	res  *Result
	dir  string // state directory (journal, spool)
	host string
	// broken is set when the connection can no longer be trusted to be in
	// step (a network or protocol error): it is then closed without QUIT,
	// which deletes nothing (RFC 1939 §6).
	broken    bool
	delivFail atomic.Bool
	used      atomic.Int64 // spooled bytes not yet delivered
	resMu     sync.Mutex   // res.Fetched and res.Bytes, counted by the delivery workers
	pre       *listings    // listings read together with the login, for list
}

// listings are the UIDL and LIST replies of a session.
type listings struct {
	uidls, sizes []pop3client.MessageInfo
	err          error // the server refused one of them
}

func (s *session) now() time.Time {
	if s.o.Now != nil {
		return s.o.Now()
	}
	return time.Now()
}

// Fetch runs one account once: connect, log in, list, retrieve what the
// journal says is new, deliver it, delete what the policy says, QUIT.
//
// Cancelling ctx asks for a stop: the message being retrieved is finished
// and delivered, then the session QUITs (applying deletions of durable
// messages) if it is still in step, or is closed without QUIT otherwise.
func Fetch(ctx context.Context, a *Account, o Options) *Result {
	s := &session{a: a, o: o, log: o.Logger, res: &Result{Account: a.Name}}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.log = s.log.With("account", a.Name)
	s.res.Start = s.now()
	err := s.run(ctx)
	if s.c != nil {
		s.c.Close()
	}
	if s.d != nil {
		if cerr := s.d.Close(); cerr != nil && err == nil {
			err = &Error{Account: a.Name, Op: "deliver", Kind: ErrDelivery, Err: cerr}
		}
	}
	s.res.End = s.now()
	s.res.Err = err
	if s.j != nil {
		if !o.DryRun {
			rec := RunRecord{Time: s.res.Start, Fetched: s.res.Fetched, Bytes: s.res.Bytes, Result: ResultText(s.res)}
			if err != nil {
				rec.Message = err.Error()
			}
			if jerr := s.j.Run(rec); jerr != nil {
				s.log.Warn("recording the run in the journal", "err", jerr)
			}
			if jerr := s.j.MaybeCompact(); jerr != nil {
				s.log.Warn("compacting the journal", "err", jerr)
			}
		}
		s.j.Close()
	}
	return s.res
}

// ResultText is a run's outcome in a few words, as the journal and status
// show it.
func ResultText(r *Result) string {
	switch {
	case r.Err != nil:
		for _, k := range []error{ErrConfig, ErrNetwork, ErrTLS, ErrAuth, ErrProtocol, ErrDelivery, ErrBusy} {
			if errors.Is(r.Err, k) {
				return k.Error()
			}
		}
		return "error"
	case r.Fetched > 0:
		return "fetched"
	}
	return "no new mail"
}

func (s *session) fail(op string, kind, err error) error {
	var fe *Error
	if errors.As(err, &fe) {
		return err
	}
	return &Error{Account: s.a.Name, Op: op, Kind: kind, Err: err}
}

func (s *session) run(ctx context.Context) error {
	a := s.a
	s.dir = a.StateDir
	if s.dir == "" {
		d, err := DefaultStateDir()
		if err != nil {
			return s.fail("journal", ErrConfig, err)
		}
		s.dir = d
	}
	s.host = s.o.Hostname
	if s.host == "" {
		s.host, _ = os.Hostname()
		if s.host == "" {
			s.host = "localhost"
		}
	}
	if a.Password == "" {
		return s.fail("login", ErrConfig, errors.New("no password: set password_command (or password), or run on a terminal to be asked"))
	}
	var err error
	if s.o.DryRun {
		s.j, err = ReadJournal(s.dir, a.JournalBase(), s.log)
	} else {
		s.j, err = OpenJournal(s.dir, a.JournalBase(), s.log)
	}
	if err != nil {
		kind := ErrDelivery // the state directory is local storage
		if errors.Is(err, ErrBusy) {
			kind = ErrBusy
		}
		return s.fail("journal", kind, err)
	}
	if !s.o.DryRun {
		do := s.o.Dest
		if do.Logger == nil {
			do.Logger = s.log
		}
		if do.Hostname == "" {
			do.Hostname = s.host
		}
		if s.d, err = dest.Open(a.Deliver, do); err != nil {
			s.d = nil // Open may return a typed nil with its error
			return s.fail("deliver", ErrDelivery, fmt.Errorf("opening %s: %w", a.Deliver, err))
		}
	}
	if err := s.connect(ctx); err != nil {
		return err
	}
	window, err := s.login(ctx)
	if err != nil {
		return err
	}
	items, err := s.list(ctx)
	if err != nil {
		return err
	}
	fetch, err := s.plan(ctx, items)
	if err != nil {
		return err
	}
	if s.o.DryRun {
		for _, it := range items {
			if s.shouldDelete(it, true) {
				s.res.PlannedDeletes++
			}
		}
		s.quit()
		return nil
	}
	if s.o.Progress != nil {
		s.o.Progress.Planned(s.res.Planned, s.res.PlannedBytes)
	}
	rerr := s.retrieve(ctx, fetch, window)
	var del []*item
	for _, it := range items {
		if s.shouldDelete(it, false) {
			del = append(del, it)
		}
	}
	derr := s.deleteAndQuit(del, window)
	return errors.Join(rerr, derr)
}

// opCtx is the context for one short command: it outlives a stop request
// (which only takes effect between messages) but has a deadline.
func (s *session) opCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), s.a.Timeout)
}

func (s *session) connect(ctx context.Context) error {
	a := s.a
	copts := &pop3client.Options{Timeout: a.Timeout, Logger: s.log}
	cctx, cancel := context.WithTimeout(ctx, a.Timeout)
	defer cancel()
	var err error
	switch a.TLS {
	case TLSImplicit:
		cfg, cerr := a.tlsConfig()
		if cerr != nil {
			return s.fail("tls", ErrConfig, cerr)
		}
		s.c, err = pop3client.DialTLS(cctx, a.Addr(), cfg, copts)
	default:
		s.c, err = pop3client.Dial(cctx, a.Addr(), copts)
	}
	if err != nil {
		s.c = nil
		return s.fail("connect", classify(err, ErrNetwork), err)
	}
	if a.TLS != TLSStartTLS {
		return nil
	}
	caps, err := s.capabilities(ctx)
	if err != nil {
		return err
	}
	// RFC 2595 §4: STLS is only sent when CAPA lists it; without it the
	// only alternative would be plaintext, which the account forbids.
	if !caps.Has("STLS") {
		s.quit()
		return s.fail("tls", ErrTLS, fmt.Errorf("tls = \"starttls\" but %s does not offer STLS (CAPA: %s); refusing to continue without TLS",
			a.Addr(), capsList(caps)))
	}
	cfg, err := a.tlsConfig()
	if err != nil {
		return s.fail("tls", ErrConfig, err)
	}
	octx, ocancel := s.opCtx(ctx)
	defer ocancel()
	if err := s.c.StartTLS(octx, cfg); err != nil {
		s.broken = true
		return s.fail("tls", classify(err, ErrTLS), fmt.Errorf("STLS: %w", err))
	}
	return nil
}

func capsList(caps pop3client.Capabilities) string {
	if len(caps) == 0 {
		return "none"
	}
	var names []string
	for k := range caps {
		names = append(names, k)
	}
	slices.Sort(names)
	return strings.Join(names, " ")
}

// capabilities asks CAPA (RFC 2449 §5). A server without CAPA answers -ERR;
// that is an empty list, not a failure.
func (s *session) capabilities(ctx context.Context) (pop3client.Capabilities, error) {
	octx, cancel := s.opCtx(ctx)
	defer cancel()
	caps, err := s.c.Capabilities(octx)
	var pe *pop3client.Error
	if errors.As(err, &pe) {
		return pop3client.Capabilities{}, nil
	}
	if err != nil {
		s.broken = true
		return nil, s.fail("capa", classify(err, ErrProtocol), err)
	}
	return caps, nil
}

// login authenticates and returns the RETR window to use.
func (s *session) login(ctx context.Context) (int, error) {
	caps, err := s.capabilities(ctx)
	if err != nil {
		return 0, err
	}
	state, tlsActive := s.c.TLSConnectionState()
	m, err := chooseMechanism(s.a, caps, tlsActive)
	if err != nil {
		s.quit()
		return 0, s.fail("login", ErrAuth, err)
	}
	octx, cancel := s.opCtx(ctx)
	defer cancel()
	if m.name == "USER" {
		// USER, PASS, UIDL and LIST in one round trip when the server
		// pipelines; list() takes the listings from here.
		var l listings
		l.uidls, l.sizes, err = s.c.LoginAndListings(octx, s.a.User, s.a.Password)
		var pe *pop3client.Error
		if errors.As(err, &pe) && (pe.Command == "UIDL" || pe.Command == "LIST") {
			l.err, err = err, nil // logged in; list() reports the refusal
		}
		if err == nil {
			s.pre = &l
		}
	} else {
		sc, serr := saslClient(m, s.a, s.a.Password, state)
		if serr != nil {
			s.quit()
			return 0, s.fail("login", ErrAuth, serr)
		}
		err = s.c.Auth(octx, sc)
	}
	if err != nil {
		var pe *pop3client.Error
		kind := classify(err, ErrProtocol)
		if errors.As(err, &pe) {
			// RFC 3206 §4 SYS/TEMP and RFC 2449 §8.1.2 IN-USE are
			// worth retrying; anything else the server refused is the
			// credentials.
			kind = ErrAuth
			if pe.Code == "IN-USE" || pe.Code == "LOGIN-DELAY" || pe.Code == "SYS/TEMP" {
				kind = ErrBusy
			}
			s.quit()
		} else {
			s.broken = true
		}
		return 0, s.fail("login", kind, fmt.Errorf("%s as %q: %w", m.name, s.a.User, err))
	}
	tlsDesc := "none"
	if tlsActive {
		tlsDesc = tlsVersionName(state.Version)
	}
	s.log.Info("logged in", "server", s.a.Addr(), "tls", tlsDesc, "mechanism", m.name)
	window := 1
	if caps.Has("PIPELINING") {
		window = defaultPipeline
		if s.a.Pipeline > 0 {
			window = s.a.Pipeline
		}
	}
	return window, nil
}

// list merges UIDL and LIST. Both are required: without UIDL (RFC 1939
// §7, optional in the RFC) there is no way to know what was fetched before.
func (s *session) list(ctx context.Context) ([]*item, error) {
	lctx := context.WithoutCancel(ctx) // per-read deadlines come from the client's Timeout
	// Both listings in one round trip when the server pipelines, or
	// already read along with the login.
	var uidls, sizes []pop3client.MessageInfo
	var err error
	if s.pre != nil {
		uidls, sizes, err = s.pre.uidls, s.pre.sizes, s.pre.err
		s.pre = nil
	} else {
		uidls, sizes, err = s.c.Listings(lctx)
	}
	if err != nil {
		var pe *pop3client.Error
		if errors.As(err, &pe) {
			s.quit()
			if pe.Command == "UIDL" {
				return nil, s.fail("list", ErrProtocol, fmt.Errorf("the server refused UIDL (%w); popbox fetch needs it to know which messages it already has", err))
			}
			return nil, s.fail("list", ErrProtocol, fmt.Errorf("LIST: %w", err))
		}
		s.broken = true
		return nil, s.fail("list", classify(err, ErrProtocol), fmt.Errorf("UIDL/LIST: %w", err))
	}
	bySize := make(map[int]int64, len(sizes))
	for _, m := range sizes {
		bySize[m.Num] = m.Size
	}
	seen := make(map[string]bool, len(uidls))
	items := make([]*item, 0, len(uidls))
	for _, m := range uidls {
		size, ok := bySize[m.Num]
		switch {
		case !validUIDL(m.UIDL):
			return nil, s.fail("list", ErrProtocol, fmt.Errorf("message %d has an invalid UIDL %q (RFC 1939 §7: 1-70 characters 0x21-0x7E)", m.Num, truncateString(m.UIDL, 80)))
		case seen[m.UIDL]:
			return nil, s.fail("list", ErrProtocol, fmt.Errorf("UIDL %q is given to two messages; refusing to guess which is which", m.UIDL))
		case !ok:
			return nil, s.fail("list", ErrProtocol, fmt.Errorf("message %d is in the UIDL listing but not in LIST", m.Num))
		}
		seen[m.UIDL] = true
		items = append(items, &item{num: m.Num, uidl: m.UIDL, size: size})
	}
	if len(sizes) != len(uidls) {
		return nil, s.fail("list", ErrProtocol, fmt.Errorf("LIST has %d messages but UIDL %d", len(sizes), len(uidls)))
	}
	return items, nil
}

// plan matches the listing against the journal, records new UIDLs and
// UIDLs that disappeared, resolves deliveries a crash left undecided, and
// returns what to retrieve in this run.
func (s *session) plan(ctx context.Context, items []*item) ([]*item, error) {
	a := s.a
	now := s.now()
	var fresh []*Entry
	isFresh := make(map[*Entry]bool)
	listed := make(map[string]bool, len(items))
	for _, it := range items {
		listed[it.uidl] = true
		e := s.j.Entry(it.uidl)
		// A UIDL never seen, seen deleted before, or now naming a message
		// of another size is a new message: a new generation, hence a
		// new key, so the destination never confuses it with the old one.
		if e == nil || e.State == StateGone || e.Size != it.size {
			e = &Entry{UIDL: it.uidl, Gen: s.j.NextGen(it.uidl), Size: it.size, FirstSeen: now, State: StateSeen}
			fresh = append(fresh, e)
			isFresh[e] = true
		}
		it.e = e
		it.key = messageKey(a, it.uidl, e.Gen)
		it.oversize = a.MaxSize > 0 && it.size > a.MaxSize
	}
	var gone []*Entry
	for _, e := range s.j.Entries() {
		if e.State != StateGone && !listed[e.UIDL] {
			gone = append(gone, e)
		}
	}
	if !s.o.DryRun {
		if err := s.j.Seen(fresh); err != nil {
			return nil, s.fail("journal", ErrDelivery, err)
		}
		if err := s.j.Gone(gone); err != nil {
			return nil, s.fail("journal", ErrDelivery, err)
		}
	}

	var fetch []*item
	var bytes int64
	for _, it := range items {
		switch it.e.State {
		case StateDelivered:
			continue
		case StatePending, StateSeen:
			if s.o.DryRun || isFresh[it.e] {
				break
			}
			// An earlier run may have delivered it and died before its
			// unsynced "pending"/"delivered" records reached the disk (see
			// Journal.write): the destination knows whether the message
			// arrived. Where it cannot know (mda, lmtp, smtp), deliver
			// again: at least once, never lost.
			hctx, cancel := s.opCtx(ctx)
			has, err := s.d.Has(hctx, it.key)
			cancel()
			switch {
			case errors.Is(err, dest.ErrUnknowable):
				s.log.Info("delivery interrupted earlier; the destination cannot tell whether it completed, delivering again", "uidl", it.uidl, "key", it.key)
			case err != nil:
				return nil, s.fail("deliver", ErrDelivery, fmt.Errorf("asking the destination about %s: %w", it.key, err))
			case has:
				if err := s.j.Delivered(it.e, it.size); err != nil {
					return nil, s.fail("journal", ErrDelivery, err)
				}
				s.log.Info("delivery interrupted earlier had completed", "uidl", it.uidl, "key", it.key)
				continue
			}
		}
		if it.oversize {
			if a.Oversize == OversizeSkip {
				s.res.Skipped++
				s.log.Info("skipping message over max_size", "uidl", it.uidl, "size", it.size, "max_size", a.MaxSize)
			}
			continue
		}
		// A message larger than max_bytes alone is still fetched when it
		// comes first, or it would never be.
		if (a.MaxMessages > 0 && len(fetch) >= a.MaxMessages) ||
			(a.MaxBytes > 0 && len(fetch) > 0 && bytes+it.size > a.MaxBytes) {
			s.res.Deferred++
			continue
		}
		fetch = append(fetch, it)
		bytes += it.size
	}
	s.res.Planned, s.res.PlannedBytes = len(fetch), bytes
	if len(fetch) > 0 || s.res.Deferred > 0 {
		s.log.Info("planned", "messages", len(fetch), "bytes", bytes, "deferred", s.res.Deferred, "on_server", len(items))
	}
	return fetch, nil
}

// shouldDelete applies the deletion policy to a listed message. DELE is
// only ever sent for a message whose local copy the journal records as
// durable, or for one the oversize policy deletes unread on purpose. In a
// dry run, messages that would be fetched count as delivered.
func (s *session) shouldDelete(it *item, dry bool) bool {
	a := s.a
	if it.oversize && a.Oversize == OversizeDelete && it.e.State != StateDelivered {
		return true
	}
	delivered := it.e.State == StateDelivered
	if dry && !delivered && !it.oversize {
		delivered = true
	}
	if !delivered {
		return false
	}
	if !a.Keep {
		return true
	}
	return a.DeleteAfter > 0 && s.now().Sub(it.e.FirstSeen) >= a.DeleteAfter
}

// retrieve reads the messages and has them delivered. The network side
// (this goroutine) spools each message completely before handing it to
// the delivery goroutine, so a destination never sees a partial message
// and a slow destination never stalls reads: while it works, the network
// side fetches ahead up to spoolBudget and otherwise keeps the session
// alive with NOOP.
func (s *session) retrieve(ctx context.Context, items []*item, window int) error {
	if len(items) == 0 {
		return nil
	}
	opctx := context.WithoutCancel(ctx)
	queue := make(chan *retrieved, len(items))
	freed := make(chan int64, len(items)+1)
	deliverDone := make(chan error, 1)
	go func() { deliverDone <- s.deliverAll(opctx, queue, freed) }()

	byNum := make(map[int]*item, len(items))
	for _, it := range items {
		byNum[it.num] = it
	}
	keepalive := time.NewTicker(s.a.Keepalive)
	defer keepalive.Stop()

	// One pipelined RETR stream over the messages: splitting it into
	// batches would drain the pipeline, a round trip lost per batch. When
	// the spool budget is used up the callback waits for the destination;
	// if that takes longer than the keepalive interval it pauses the
	// stream (the RETRs in flight are drained), keeps the session alive
	// with NOOPs until the destination catches up, and starts a new one.
	var netErr error
	next := 0 // messages handled: queued, or skipped after -ERR
	stopped := false
	for remaining := items; len(remaining) > 0 && netErr == nil && !stopped && !s.delivFail.Load(); {
		nums := make([]int, len(remaining))
		for i, it := range remaining {
			nums[i] = it.num
		}
		handled := 0
		err := s.c.RetrMany(opctx, nums, window, func(n int, body io.Reader, rerr error) error {
			it := byNum[n]
			if it == nil {
				return fmt.Errorf("%w: RETR reply for message %d, which was not asked for", pop3client.ErrProtocol, n)
			}
			if rerr != nil {
				var pe *pop3client.Error
				if errors.As(rerr, &pe) {
					// Gone since the listing (another client): the next
					// listing will say so.
					s.log.Warn("server refused RETR; skipping the message", "uidl", it.uidl, "err", rerr)
					handled++
					return nil
				}
				return rerr
			}
			if err := s.waitForSpool(ctx, it.size, freed, s.a.Keepalive); err != nil {
				return err
			}
			if s.delivFail.Load() {
				return errStop
			}
			s.used.Add(it.size)
			sp := newSpool(s.dir)
			var r io.Reader = body
			if s.o.Progress != nil {
				r = &countingReader{r: body, p: s.o.Progress}
			}
			got, err := boundedCopy(sp, r, 2*it.size+64<<10)
			if err != nil {
				sp.Close()
				s.used.Add(-it.size)
				if errors.Is(err, errTooLong) {
					return fmt.Errorf("%w: message %d (UIDL %s): %w (LIST said %d)", pop3client.ErrProtocol, n, it.uidl, err, it.size)
				}
				return err
			}
			it.queued = true
			handled++
			queue <- &retrieved{it: it, sp: sp, n: got, when: s.now()}
			if ctx.Err() != nil {
				return errStop
			}
			return nil
		})
		next += handled
		remaining = remaining[handled:]
		switch {
		case errors.Is(err, errPause):
			// Keep the session alive until the next message fits.
			if len(remaining) > 0 {
				netErr = s.keepAliveUntilSpool(ctx, remaining[0].size, freed, keepalive)
			}
		case errors.Is(err, errStop):
			stopped = ctx.Err() != nil
			remaining = nil
		case err != nil:
			s.broken = true
			netErr = s.fail("retrieve", classify(err, ErrProtocol), err)
		}
		if ctx.Err() != nil {
			stopped = true
		}
	}
	s.res.Deferred += len(items) - next
	if stopped {
		s.log.Info("stop requested: finishing the messages in hand")
	}
	close(queue)
	var derr error
	for waiting := true; waiting; {
		select {
		case derr = <-deliverDone:
			waiting = false
		case <-freed:
		case <-keepalive.C:
			if !s.broken {
				if err := s.noop(ctx); err != nil && netErr == nil {
					netErr = err
				}
			}
		}
	}
	return errors.Join(netErr, derr)
}

// errPause stops a RETR stream that waited too long for spool space.
var errPause = errors.New("pausing retrieval for the destination")

// spoolFull reports whether a message of size must wait for spool space.
// Something always fits an empty spool, or a message over the budget would
// never be fetched.
func (s *session) spoolFull(size int64) bool {
	used := s.used.Load()
	budget := s.o.SpoolBudget
	if budget <= 0 {
		budget = spoolBudget
	}
	return used > 0 && used+size > budget
}

// waitForSpool waits until a message of size fits the spool budget, for at
// most patience: then it returns errPause so that the caller can keep the
// session alive. It returns errStop when ctx ends.
func (s *session) waitForSpool(ctx context.Context, size int64, freed <-chan int64, patience time.Duration) error {
	if ctx.Err() != nil {
		return errStop
	}
	if !s.spoolFull(size) {
		return nil
	}
	t := time.NewTimer(patience)
	defer t.Stop()
	for s.spoolFull(size) {
		select {
		case <-freed:
		case <-ctx.Done():
			return errStop
		case <-t.C:
			return errPause
		}
	}
	if ctx.Err() != nil {
		return errStop
	}
	return nil
}

// keepAliveUntilSpool sends NOOPs every keepalive tick until a message of
// size fits the spool, the destination fails, or ctx ends.
func (s *session) keepAliveUntilSpool(ctx context.Context, size int64, freed <-chan int64, keepalive *time.Ticker) error {
	for s.spoolFull(size) && !s.delivFail.Load() {
		select {
		case <-freed:
		case <-ctx.Done():
			return nil
		case <-keepalive.C:
			if err := s.noop(ctx); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *session) noop(ctx context.Context) error {
	octx, cancel := s.opCtx(ctx)
	defer cancel()
	if err := s.c.Noop(octx); err != nil {
		s.broken = true
		return s.fail("keepalive", classify(err, ErrProtocol), fmt.Errorf("NOOP: %w", err))
	}
	return nil
}

type countingReader struct {
	r io.Reader
	p Progress
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	if n > 0 {
		c.p.Retrieved(int64(n))
	}
	return n, err
}

// deliverAll delivers queued messages in order until the queue closes.
// After a failure it only releases the rest: the destination is likely
// broken (disk full), and what was not delivered stays on the server.
func (s *session) deliverAll(ctx context.Context, queue <-chan *retrieved, freed chan<- int64) error {
	// A Maildir takes messages in any order and each delivery waits for
	// its own fsyncs, so several run at once and the file system commits
	// their syncs together: one at a time, the disk, not the network, set
	// the pace. mbox order matters and an MDA or LMTP server may not
	// expect parallel deliveries, so those get one worker.
	workers := 1
	if strings.HasPrefix(s.a.Deliver, "maildir:") {
		workers = maildirWorkers
	}
	var mu sync.Mutex
	var first error
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range queue {
				if !s.delivFail.Load() {
					if err := s.deliverOne(ctx, r); err != nil {
						mu.Lock()
						if first == nil {
							first = err
						}
						mu.Unlock()
						s.delivFail.Store(true)
					}
				}
				r.sp.Close()
				s.used.Add(-r.it.size)
				freed <- r.it.size
			}
		}()
	}
	wg.Wait()
	return first
}

// maildirWorkers is how many Maildir deliveries run at once.
const maildirWorkers = 8

func (s *session) deliverOne(ctx context.Context, r *retrieved) error {
	it := r.it
	if err := s.j.Pending(it.e); err != nil {
		return s.fail("journal", ErrDelivery, err)
	}
	body, err := r.sp.Reader()
	if err != nil {
		return s.fail("deliver", ErrDelivery, err)
	}
	if s.a.ReceivedHeader {
		body = io.MultiReader(strings.NewReader(receivedHeader(s.a.Server, s.host, it.key, r.when)), body)
	}
	dctx, cancel := context.WithTimeout(ctx, deliverTimeout)
	defer cancel()
	msg := dest.Message{Key: it.key, Recipient: s.a.Recipient, Sender: s.a.Sender, Time: r.when}
	if err := s.d.Deliver(dctx, body, msg); err != nil {
		return s.fail("deliver", ErrDelivery, fmt.Errorf("message %s (UIDL %s): %w", it.key, it.uidl, err))
	}
	if err := s.j.Delivered(it.e, it.size); err != nil {
		return s.fail("journal", ErrDelivery, err)
	}
	s.resMu.Lock()
	s.res.Fetched++
	s.res.Bytes += r.n
	s.resMu.Unlock()
	if s.o.Progress != nil {
		s.o.Progress.Delivered(r.n)
	}
	s.log.Debug("delivered", "uidl", it.uidl, "key", it.key, "bytes", r.n)
	return nil
}

// receivedHeader is the trace field added on top of each message
// (RFC 5322 §3.6.7), folded so that no line exceeds 78 characters.
func receivedHeader(server, host, key string, t time.Time) string {
	return "Received: from " + server + "\r\n\tby " + host + " (popbox fetch) with POP3\r\n\tid " + key + ";\r\n\t" +
		t.Format("Mon, 02 Jan 2006 15:04:05 -0700") + "\r\n"
}

// deleteAndQuit marks del for deletion and ends the session. Only a QUIT
// answered +OK deletes anything (RFC 1939 §6), and only then are the
// messages recorded as gone.
func (s *session) deleteAndQuit(del []*item, window int) error {
	if s.c == nil || s.broken {
		return nil
	}
	// No overall deadline: a DELE of thousands of messages may take long,
	// and pop3client renews the account's timeout at every reply.
	ctx := context.Background()
	if len(del) > 0 {
		// The "delivered" records that justify these DELEs must be on
		// disk before the server is told anything.
		if err := s.j.Sync(); err != nil {
			s.broken = true
			return s.fail("journal", ErrDelivery, err)
		}
		nums := make([]int, len(del))
		for i, it := range del {
			nums[i] = it.num
		}
		if err := s.c.DeleMany(ctx, nums, window); err != nil {
			// Some DELEs may have been taken and some not; closing
			// without QUIT deletes none of them, and the next run
			// tries again.
			s.log.Warn("DELE failed; closing without QUIT so that nothing is deleted", "err", err)
			s.broken = true
			var pe *pop3client.Error
			if errors.As(err, &pe) {
				return nil
			}
			return s.fail("delete", classify(err, ErrProtocol), err)
		}
	}
	if len(del) == 0 {
		// Nothing marked: the QUIT reply cannot change anything, so do
		// not wait a round trip for it.
		s.c.Hangup(ctx)
		s.c = nil
		return nil
	}
	if err := s.c.Quit(ctx); err != nil {
		s.broken = true
		var pe *pop3client.Error
		if errors.As(err, &pe) {
			// RFC 1939 §6: -ERR to QUIT means some deletions failed.
			s.log.Warn("the server refused QUIT", "err", err)
			return nil
		}
		return s.fail("quit", classify(err, ErrProtocol), err)
	}
	s.c.Close()
	s.c = nil
	if len(del) == 0 {
		return nil
	}
	es := make([]*Entry, len(del))
	for i, it := range del {
		es[i] = it.e
	}
	if err := s.j.Gone(es); err != nil {
		// Not fatal: the next listing shows they are gone.
		s.log.Warn("recording deletions in the journal", "err", err)
	}
	s.res.Deleted = len(del)
	s.log.Info("deleted from the server", "messages", len(del))
	return nil
}

// quit ends a session that made no changes; errors do not matter then.
func (s *session) quit() {
	if s.c == nil || s.broken {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), quitTimeout)
	defer cancel()
	s.c.Quit(ctx)
	s.c.Close()
	s.c = nil
}
