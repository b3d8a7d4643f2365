package pop3server

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/popbox/popbox/pop3"
	"github.com/popbox/popbox/proxyproto"
	"github.com/popbox/popbox/store"
)

// ErrAuthFailed is what a Backend returns (wrapped or not) for credentials
// that do not check out: unknown user, wrong password, disabled account. The
// client is told nothing more specific.
var ErrAuthFailed = errors.New("pop3server: authentication failed")

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("pop3server: server closed")

// ConnInfo describes the connection a login arrives on.
type ConnInfo struct {
	RemoteAddr net.Addr
	LocalAddr  net.Addr
	TLS        *tls.ConnectionState // nil without TLS
	// Mechanism is how the client logs in: "USER" or a SASL mechanism.
	Mechanism string
}

// Backend is the server's view of accounts and storage.
type Backend interface {
	// Authenticate checks a password and returns the canonical user name.
	// Bad credentials of any kind wrap ErrAuthFailed; any other error is a
	// system problem reported as -ERR [SYS/TEMP].
	Authenticate(ctx context.Context, info ConnInfo, user, password string) (string, error)
	// Open locks and snapshots the user's maildrop (store.ErrInUse when
	// another session holds it).
	Open(ctx context.Context, user string) (store.Maildrop, error)
}

// PlaintextPolicy says when a password may travel without TLS.
type PlaintextPolicy int

const (
	// PlaintextLoopback allows it only on connections from a loopback address.
	PlaintextLoopback PlaintextPolicy = iota
	// PlaintextNever requires TLS (STLS or implicit) for every password.
	PlaintextNever
	// PlaintextAlways allows passwords in clear from anywhere.
	PlaintextAlways
)

// Limits bounds what one client can make the server do. Zero fields take the
// defaults given beside them.
type Limits struct {
	// MaxLine is the longest command line in octets including CRLF
	// (default 255, RFC 2449 §4).
	MaxLine int
	// MaxAuthLine bounds SASL continuation lines (default 8192).
	MaxAuthLine int
	// IdleTimeout is the autologout timer and the deadline of every read and
	// write (default 10 minutes, the minimum RFC 1939 §3 allows).
	IdleTimeout time.Duration
	// HandshakeTimeout bounds a TLS handshake (default 30 s).
	HandshakeTimeout time.Duration
	// MaxBadCommands closes a session after this many consecutive errors
	// (default 20).
	MaxBadCommands int
	// MaxConnections refuses connections beyond this many (default 1000).
	MaxConnections int
	// MaxConnectionsPerIP refuses connections from an address that already
	// has this many, logged in or not (default 50).
	MaxConnectionsPerIP int
	// MaxUnauthenticatedPerIP refuses connections from an address that
	// already has this many sessions not yet logged in (default 10). With
	// the failure penalty it bounds how many guesses an address can have in
	// flight at once.
	MaxUnauthenticatedPerIP int
	// AuthTimeout is the time from connect within which a client must log
	// in; then the session is closed (default 60 s). It keeps idle
	// unauthenticated connections from holding MaxUnauthenticatedPerIP
	// slots for the whole IdleTimeout.
	AuthTimeout time.Duration
	// MaxPreAuthBytes closes a session that sends more than this many
	// octets before logging in (default 64 KiB, at least MaxAuthLine); a
	// login needs a few hundred.
	MaxPreAuthBytes int64
}

func (l Limits) withDefaults() Limits {
	if l.MaxLine <= 0 {
		l.MaxLine = pop3.MaxCommandLine
	}
	if l.MaxAuthLine <= 0 {
		l.MaxAuthLine = 8192
	}
	if l.MaxAuthLine < l.MaxLine {
		l.MaxAuthLine = l.MaxLine
	}
	if l.IdleTimeout <= 0 {
		l.IdleTimeout = 10 * time.Minute
	}
	if l.HandshakeTimeout <= 0 {
		l.HandshakeTimeout = 30 * time.Second
	}
	if l.MaxBadCommands <= 0 {
		l.MaxBadCommands = 20
	}
	if l.MaxConnections <= 0 {
		l.MaxConnections = 1000
	}
	if l.MaxConnectionsPerIP <= 0 {
		l.MaxConnectionsPerIP = 50
	}
	if l.MaxUnauthenticatedPerIP <= 0 {
		l.MaxUnauthenticatedPerIP = 10
	}
	if l.AuthTimeout <= 0 {
		l.AuthTimeout = 60 * time.Second
	}
	if l.MaxPreAuthBytes <= 0 {
		l.MaxPreAuthBytes = 64 << 10
	}
	// A login must fit: at least one whole SASL response line.
	l.MaxPreAuthBytes = max(l.MaxPreAuthBytes, int64(l.MaxAuthLine))
	return l
}

// Server is a POP3 server. Set the fields before calling Serve; do not change
// them afterwards (SetLimits, SetAuthFailureDelay and SetLoginDelay change
// those that may change while it runs).
type Server struct {
	Backend Backend
	// TLSConfig enables STLS on Serve and is required by ServeTLS. Use
	// GetCertificate in it to reload certificates without a restart.
	TLSConfig *tls.Config
	// Hostname appears in the greeting.
	Hostname string
	// Implementation is the IMPLEMENTATION capability's argument.
	Implementation string
	Plaintext      PlaintextPolicy
	// AuthFailureDelay is waited before the reply to a failed login
	// (default 2 s; negative means none, for tests). It doubles with each
	// further consecutive failure from the same address, or of the same
	// user from that address, up to AuthFailureDelayMax; a successful login
	// from the address resets it (see penalty.go).
	AuthFailureDelay time.Duration
	// AuthFailureDelayMax caps the growing delay (default 15 s; a value
	// below AuthFailureDelay, negative for instance, means a constant
	// AuthFailureDelay).
	AuthFailureDelayMax time.Duration
	Limits              Limits
	Logger              *slog.Logger
	// ExpireDays is advertised as RFC 2449 §6.7's EXPIRE: the server
	// deletes messages older than this many days on its own; 0 means
	// NEVER. (The deleting is the store's, run by the caller.)
	ExpireDays int
	// LoginDelay is the minimum time between two logins of a user (RFC
	// 2449 §6.5 LOGIN-DELAY), advertised in CAPA and enforced when the
	// Backend is a LoginHistory; 0 means none.
	LoginDelay time.Duration
	// ClientCertUser maps a verified TLS client certificate to a user name
	// for SASL EXTERNAL, offered when it is set, the Backend is an
	// Authorizer and TLSConfig verifies client certificates (ClientAuth
	// VerifyClientCertIfGiven and ClientCAs).
	ClientCertUser func(*x509.Certificate) (string, error)
	// TokenVerifier checks OAuth bearer tokens for OAUTHBEARER and
	// XOAUTH2, offered when it is set and the Backend is an Authorizer.
	TokenVerifier TokenVerifier
	// SCRAMSecret derives the fake SCRAM credentials of unknown users
	// (RFC 5802 §5.1). Set it to a stored secret of 32 or more random
	// octets to keep their salts the same across restarts; nil means a
	// random one per Server.
	SCRAMSecret []byte
	// Events, if not nil, is told of connections, logins and commands,
	// for metrics (events.go).
	Events Events

	live       atomic.Pointer[settings] // live.go: what SetLimits and friends change
	liveMu     sync.Mutex               // orders updates of live
	initOnce   sync.Once
	mu         sync.Mutex
	listeners  map[net.Listener]struct{}
	conns      map[*session]struct{}
	nconns     atomic.Int64
	inShutdown atomic.Bool
	done       chan struct{} // closed by Shutdown/Close
	wg         sync.WaitGroup
	penalties  *penaltyTable
	tlsBase    *tls.Config // TLSConfig with per-connection hooks (tlsconn.go)
	bigBuffers sync.Pool   // of *bigBuffer, lent to sessions for large replies
	// preparedReplies (of *preparedReply) and prefetching, the number
	// held by sessions, are for prefetch.go.
	preparedReplies sync.Pool
	prefetching     atomic.Int32
	prefetchLimit   int32                   // at most this many held at once
	prefetchHold    time.Duration           // dropped after this much client silence
	perIP           map[netip.Addr]*ipConns // under mu
	// handshaking holds the connections whose PROXY header is being read
	// (proxy.go), under mu, so that shutdown can end the wait.
	handshaking map[*proxyproto.Conn]struct{}
}

// LoginHistory is a Backend that knows when a user last logged in, which
// LOGIN-DELAY needs; the server reports logins to it as a LoginRecorder.
type LoginHistory interface {
	LoginRecorder
	// LastLogin is the time of the user's last successful login (zero if
	// none).
	LastLogin(ctx context.Context, user string) (time.Time, error)
}

// loginDelay is the LOGIN-DELAY in force: none without a LoginHistory.
func (s *Server) loginDelay() time.Duration {
	if _, ok := s.Backend.(LoginHistory); !ok {
		return 0
	}
	return max(s.current().loginDelay, 0)
}

// ipConns counts one remote address's sessions for the per-address caps.
type ipConns struct {
	total, unauth int
}

func (s *Server) init() {
	s.initOnce.Do(func() {
		if s.Logger == nil {
			s.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
		}
		s.AuthFailureDelay, s.AuthFailureDelayMax = authDelayDefaults(s.AuthFailureDelay, s.AuthFailureDelayMax)
		s.live.Store(&settings{
			limits:              s.Limits.withDefaults(),
			authFailureDelay:    s.AuthFailureDelay,
			authFailureDelayMax: s.AuthFailureDelayMax,
			loginDelay:          s.LoginDelay,
		})
		if s.LoginDelay > 0 && s.loginDelay() == 0 {
			s.Logger.Warn("login delay not enforced: the backend keeps no login history")
		}
		if s.SCRAMSecret == nil {
			s.SCRAMSecret = make([]byte, 32)
			rand.Read(s.SCRAMSecret)
		}
		s.penalties = newPenaltyTable(penaltyMaxEntries, penaltyIdle)
		s.bigBuffers.New = newBigBuffer
		s.preparedReplies.New = newPreparedReply
		if s.prefetchLimit == 0 {
			s.prefetchLimit = maxPrefetching
		}
		if s.prefetchHold == 0 {
			s.prefetchHold = prefetchHold
		}
		if s.TLSConfig != nil {
			s.tlsBase = s.tlsBaseConfig()
		}
		s.perIP = make(map[netip.Addr]*ipConns)
		if s.Hostname == "" {
			s.Hostname = "localhost"
		}
		if s.Implementation == "" {
			s.Implementation = "popbox"
		}
		s.listeners = make(map[net.Listener]struct{})
		s.conns = make(map[*session]struct{})
		s.handshaking = make(map[*proxyproto.Conn]struct{})
		s.done = make(chan struct{})
	})
}

// Serve accepts plain POP3 connections on l (STLS offered when TLSConfig is
// set) until Shutdown or Close. It always returns a non-nil error.
func (s *Server) Serve(l net.Listener) error { return s.serve(l, false) }

// ServeTLS accepts implicit-TLS connections (POP3S, RFC 8314 §3.3) on l.
func (s *Server) ServeTLS(l net.Listener) error {
	if s.TLSConfig == nil {
		return errors.New("pop3server: ServeTLS needs TLSConfig")
	}
	return s.serve(l, true)
}

func (s *Server) serve(l net.Listener, implicitTLS bool) error {
	s.init()
	if !s.trackListener(l, true) {
		l.Close()
		return ErrServerClosed
	}
	defer s.trackListener(l, false)
	var backoff time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if s.inShutdown.Load() {
				return ErrServerClosed
			}
			if isTemporary(err) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.Logger.Warn("accept error, retrying", "err", err, "delay", backoff)
				select {
				case <-time.After(backoff):
				case <-s.done:
				}
				continue
			}
			return fmt.Errorf("pop3server: accept: %w", err)
		}
		backoff = 0
		// Counted before a PROXY header is read, so that connections
		// waiting for theirs are bounded by MaxConnections too.
		if s.nconns.Add(1) > int64(s.limits().MaxConnections) {
			s.nconns.Add(-1)
			s.connRefused(implicitTLS, RefusedMaxConnections)
			if !s.refuse(c, "too many connections, try again later") {
				return ErrServerClosed
			}
			continue
		}
		var admitted bool
		if pc, ok := c.(*proxyproto.Conn); ok {
			// The per-address limits need the client's address, which a
			// trusted proxy sends first: it is read off the accept loop.
			admitted = s.admitProxied(pc, implicitTLS)
		} else {
			admitted = s.admit(c, implicitTLS)
		}
		if !admitted {
			return ErrServerClosed
		}
	}
}

// admit starts a session on c, already counted in nconns, or refuses c
// when its address is over a per-address limit. It returns false, having
// closed c and released its count, when the server is shutting down.
func (s *Server) admit(c net.Conn, implicitTLS bool) bool {
	sess := newSession(s, c, implicitTLS)
	switch s.trackConn(sess, true) {
	case trackClosing:
		s.nconns.Add(-1)
		c.Close()
		return false
	case trackOverIPLimit:
		s.nconns.Add(-1)
		sess.log.Info("connection refused", "reason", "per-address limit", "remote_ip", sess.ip.String())
		s.connRefused(implicitTLS, RefusedPerAddress)
		return s.refuse(c, "too many connections from your address")
	}
	go func() {
		defer s.wg.Done()
		defer s.nconns.Add(-1)
		defer s.trackConn(sess, false)
		sess.serve()
	}()
	return true
}

// isTemporary reports accept(2) errors worth retrying, such as EMFILE under
// load, as net/http does.
func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// refuse answers a connection over a connection limit politely (RFC 3206
// SYS/TEMP: try again later) instead of letting it hang, in a goroutine of
// its own so that a client that does not read cannot stall the accept
// loop. It returns false, having closed c, when the server is shutting down.
func (s *Server) refuse(c net.Conn, text string) bool {
	// Counted in wg under mu, like sessions, so Shutdown's Wait cannot
	// race with this Add.
	s.mu.Lock()
	closing := s.inShutdown.Load()
	if !closing {
		s.wg.Add(1)
	}
	s.mu.Unlock()
	if closing {
		c.Close()
		return false
	}
	go func() {
		defer s.wg.Done()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "-ERR [SYS/TEMP] "+text+"\r\n")
		c.Close()
	}()
	return true
}

func (s *Server) trackListener(l net.Listener, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if add {
		if s.inShutdown.Load() {
			return false
		}
		s.listeners[l] = struct{}{}
	} else {
		delete(s.listeners, l)
	}
	return true
}

type trackResult int

const (
	tracked trackResult = iota
	trackClosing
	trackOverIPLimit
)

// trackConn adds a session (counting it against its address's caps) or
// removes one. Adding fails when the server is shutting down or the
// address is at MaxConnectionsPerIP or MaxUnauthenticatedPerIP.
func (s *Server) trackConn(c *session, add bool) trackResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.perIP[c.ip]
	if !add {
		delete(s.conns, c)
		n.total--
		if !c.loggedIn.Load() {
			n.unauth--
		}
		if n.total == 0 {
			delete(s.perIP, c.ip) // the map holds only live addresses
		}
		return tracked
	}
	if s.inShutdown.Load() {
		return trackClosing
	}
	if n == nil {
		n = &ipConns{}
		s.perIP[c.ip] = n
	}
	if lim := s.limits(); n.total >= lim.MaxConnectionsPerIP || n.unauth >= lim.MaxUnauthenticatedPerIP {
		if n.total == 0 {
			delete(s.perIP, c.ip)
		}
		return trackOverIPLimit
	}
	n.total++
	n.unauth++
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return tracked
}

// authenticated marks the session as logged in, so it no longer counts
// against MaxUnauthenticatedPerIP. Under mu, so that trackConn's removal
// sees a consistent loggedIn.
func (s *Server) authenticated(c *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c.loggedIn.Store(true)
	s.perIP[c.ip].unauth--
}

// Shutdown stops accepting, closes sessions that have not logged in, and
// waits for logged-in sessions to end by themselves until ctx is done; then
// it closes the rest. A session closed this way applies no deletions.
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	s.beginShutdown()
	waited := make(chan struct{})
	go func() { s.wg.Wait(); close(waited) }()
	select {
	case <-waited:
		return nil
	case <-ctx.Done():
		s.closeConns(true)
		<-waited
		return ctx.Err()
	}
}

// Close stops the server at once: listeners and all connections are closed,
// no deletion is applied.
func (s *Server) Close() error {
	s.init()
	s.beginShutdown()
	s.closeConns(true)
	s.wg.Wait()
	return nil
}

func (s *Server) beginShutdown() {
	s.mu.Lock()
	if s.inShutdown.Swap(true) {
		s.mu.Unlock()
		return
	}
	close(s.done)
	for l := range s.listeners {
		l.Close()
	}
	s.mu.Unlock()
	s.closeConns(false)
}

// closeConns interrupts sessions: all of them, or only those not logged in.
// Connections still waiting for a PROXY header are not logged in either.
func (s *Server) closeConns(all bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for pc := range s.handshaking {
		pc.Close()
	}
	for c := range s.conns {
		if all || !c.loggedIn.Load() {
			c.interrupt()
		}
	}
}
