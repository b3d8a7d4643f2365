package lmtp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/popbox/popbox/store"
)

// Defaults for the zero fields of Server.
const (
	DefaultMaxMessageBytes = 50 << 20
	DefaultMaxRecipients   = 100
	DefaultMaxLineLength   = 64 << 10
	DefaultMaxConnections  = 100
	DefaultReadTimeout     = 5 * time.Minute
	DefaultWriteTimeout    = time.Minute
	DefaultDeliverTimeout  = 2 * time.Minute
	DefaultSpoolMemory     = 256 << 10
)

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("lmtp: server closed")

// Server is an LMTP server delivering into a store.Store. Set the fields,
// then call Serve; the fields must not change afterwards. Zero numeric
// fields take the Default values.
type Server struct {
	// Store receives the messages. Required.
	Store store.Store
	// Users maps RCPT addresses to user names. Required; AddressResolver
	// is the usual one.
	Users UserResolver
	// Hostname is announced in the greeting; empty means os.Hostname.
	Hostname string

	// MaxMessageBytes bounds a message as received (after dot-unstuffing,
	// CRLF line ends), announced as SIZE (RFC 1870) so that an MTA refuses
	// bigger ones before sending them.
	MaxMessageBytes int64
	// MaxRecipients bounds RCPT commands per transaction (announced as
	// LIMITS RCPTMAX, RFC 9422); more get 452 4.5.3 and the MTA sends
	// them in another transaction.
	MaxRecipients int
	// MaxLineLength bounds each command line and each line of a message
	// sent with DATA. RFC 5321 §4.5.3.1.6 allows 1000 octets, but mail
	// with longer lines exists and LMTP is the last hop, so the default
	// is generous; the command buffer it bounds is per connection.
	MaxLineLength int
	// MaxConnections bounds concurrent connections; more are answered
	// "421 4.3.2" and closed.
	MaxConnections int
	// ReadTimeout bounds the wait for each command line. go-smtp sets the
	// read deadline only when it reads a command, so it also bounds the
	// whole of a DATA transfer (and each BDAT chunk) from the command on.
	ReadTimeout time.Duration
	// WriteTimeout bounds writing each reply.
	WriteTimeout time.Duration
	// DeliverTimeout bounds each Users.ResolveRecipient and each
	// Store.Deliver call.
	DeliverTimeout time.Duration

	// QuotaPermanent makes a full mailbox (store.ErrQuota) a permanent
	// failure, 552 5.2.2, so the MTA bounces at once. By default it is
	// 452 4.2.2 and the MTA retries until its queue lifetime runs out, as
	// `popbox deliver` exits EX_TEMPFAIL: the owner may make room.
	QuotaPermanent bool
	// NoDeliveryHeaders leaves each recipient's copy as received. By
	// default "Return-Path: <sender>" and "Delivered-To: <recipient>" are
	// put in front of it, as Dovecot's LMTP and Postfix's local do (RFC
	// 5321 §4.4: the final delivery adds Return-Path).
	NoDeliveryHeaders bool

	// SpoolDir is where messages bigger than SpoolMemory are kept during
	// delivery, in files that have no name; empty means os.TempDir().
	SpoolDir string
	// SpoolMemory is how much of a message is kept in memory.
	SpoolMemory int

	// Logger receives one line per delivery and per refusal; nil means
	// slog.Default().
	Logger *slog.Logger
	// Events, if not nil, is told of connections and deliveries, for
	// metrics (events.go).
	Events Events

	initOnce sync.Once
	initErr  error
	lim      limits
	log      *slog.Logger
	smtp     *smtp.Server
	ctx      context.Context // parent of every delivery; cancelled by Close
	cancel   context.CancelFunc
	ids      atomic.Uint64

	mu        sync.Mutex
	closing   bool
	listeners map[*listener]struct{}
	conns     map[*conn]struct{}
	wg        sync.WaitGroup // connections, and refusals being written
}

// limits are Server's numeric fields with the defaults filled in.
type limits struct {
	maxMessage     int64
	maxConns       int
	deliverTimeout time.Duration
	spoolMemory    int
}

func (s *Server) init() {
	s.initOnce.Do(func() {
		s.log = s.Logger
		if s.log == nil {
			s.log = slog.Default()
		}
		s.lim = limits{
			maxMessage:     orDefault(s.MaxMessageBytes, DefaultMaxMessageBytes),
			maxConns:       orDefault(s.MaxConnections, DefaultMaxConnections),
			deliverTimeout: orDefault(s.DeliverTimeout, DefaultDeliverTimeout),
			spoolMemory:    orDefault(s.SpoolMemory, DefaultSpoolMemory),
		}
		s.ctx, s.cancel = context.WithCancel(context.Background())
		s.listeners = make(map[*listener]struct{})
		s.conns = make(map[*conn]struct{})

		host := s.Hostname
		if host == "" {
			host, _ = os.Hostname()
		}
		if host == "" {
			host = "localhost"
		}
		srv := smtp.NewServer(smtp.BackendFunc(s.newSession))
		srv.LMTP = true // RFC 2033 §4.1: LHLO only; EHLO and HELO get 500
		srv.Domain = host
		srv.MaxMessageBytes = s.lim.maxMessage
		srv.MaxRecipients = orDefault(s.MaxRecipients, DefaultMaxRecipients)
		srv.MaxLineLength = orDefault(s.MaxLineLength, DefaultMaxLineLength)
		srv.ReadTimeout = orDefault(s.ReadTimeout, DefaultReadTimeout)
		srv.WriteTimeout = orDefault(s.WriteTimeout, DefaultWriteTimeout)
		// Messages are stored byte for byte, so UTF-8 headers (RFC 6532)
		// need nothing from us; without the capability an MTA would have
		// to bounce such mail.
		srv.EnableSMTPUTF8 = true
		srv.ErrorLog = errorLog{s.log}
		s.smtp = srv

		switch {
		case s.Store == nil:
			s.initErr = errors.New("lmtp: Server.Store is nil")
		case s.Users == nil:
			s.initErr = errors.New("lmtp: Server.Users is nil")
		}
	})
}

func orDefault[T int | int64 | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// Serve accepts LMTP connections on l until Shutdown or Close, and then
// returns ErrServerClosed; it always returns a non-nil error. Serve may be
// called for several listeners at once.
func (s *Server) Serve(l net.Listener) error {
	s.init()
	if s.initErr != nil {
		return s.initErr
	}
	// RFC 2033 §5: LMTP is not SMTP and must not be offered where SMTP
	// clients connect.
	if a, ok := l.Addr().(*net.TCPAddr); ok && a.Port == 25 {
		return errors.New("lmtp: refusing to serve LMTP on TCP port 25 (RFC 2033 §5)")
	}
	tl := &listener{Listener: l, srv: s}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		l.Close()
		return ErrServerClosed
	}
	s.listeners[tl] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, tl)
		s.mu.Unlock()
	}()

	err := s.smtp.Serve(tl)
	s.mu.Lock()
	closing := s.closing
	s.mu.Unlock()
	if closing {
		return ErrServerClosed
	}
	if err == nil {
		err = errors.New("listener stopped")
	}
	return fmt.Errorf("lmtp: accept: %w", err)
}

// Shutdown stops accepting connections and ends the open ones gracefully:
// a connection waiting for a command outside a mail transaction is told
// "421" and closed at once; one inside a transaction (MAIL given, DATA not
// yet answered) carries on until the transaction ends, so a message being
// received or delivered gets its replies, and is then closed the same way.
// New MAIL commands are refused with 421. When ctx ends first, Shutdown
// closes what is left as Close does and returns ctx.Err().
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	s.beginShutdown()
	waited := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(waited)
	}()
	select {
	case <-waited:
		return nil
	case <-ctx.Done():
		s.closeAll()
		<-waited
		return ctx.Err()
	}
}

// Close stops the server at once: listeners and connections are closed and
// deliveries in progress are cancelled. A recipient not yet answered 250
// has not been told its message is stored, so the MTA keeps it; a store
// never shows a message whose Deliver failed. Close waits for the
// connections' goroutines to end.
func (s *Server) Close() error {
	s.init()
	s.beginShutdown()
	s.closeAll()
	s.wg.Wait()
	return nil
}

func (s *Server) beginShutdown() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return
	}
	s.closing = true
	for l := range s.listeners {
		l.Listener.Close()
	}
	for c := range s.conns {
		c.drain()
	}
}

func (s *Server) closeAll() {
	s.cancel()
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.Conn.Close()
	}
}

func (s *Server) draining() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// track registers a new connection, or refuses it when the server is at
// MaxConnections or shutting down (then it returns nil).
func (s *Server) track(nc net.Conn) *conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		nc.Close()
		return nil
	}
	id := s.ids.Add(1)
	if len(s.conns) >= s.lim.maxConns {
		s.log.Warn("connection refused", "session", id, "remote", remoteString(nc), "reason", "too many connections")
		if s.Events != nil {
			s.Events.ConnRefused(RefusedMaxConnections)
		}
		s.wg.Add(1)
		// In a goroutine of its own, so that a client that does not read
		// cannot stall the accept loop.
		go func() {
			defer s.wg.Done()
			nc.SetDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(nc, "421 4.3.2 Too many connections, try again later\r\n")
			nc.Close()
		}()
		return nil
	}
	c := &conn{Conn: nc, srv: s, id: id}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	if s.Events != nil {
		s.Events.ConnAccepted()
	}
	return c
}

func (s *Server) untrack(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.wg.Done()
}

func remoteString(c net.Conn) string {
	if a := c.RemoteAddr(); a != nil {
		return a.String()
	}
	return ""
}

// listener wraps every accepted connection in a conn.
type listener struct {
	net.Listener
	srv *Server
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if c := l.srv.track(nc); c != nil {
			return c, nil
		}
	}
}

// longAgo is a deadline in the past: it makes a blocked Read return at
// once.
func longAgo() time.Time { return time.Unix(1, 0) }

// conn is the connection go-smtp reads from. It adds two things go-smtp
// lacks:
//
//   - Read errors are sticky. After a timeout in the middle of DATA or BDAT
//     the client's next bytes are message text; go-smtp would go on to
//     read them as commands (the SMTP-smuggling class of bug). Once a Read
//     fails, every later Read fails the same way and the session ends.
//   - Graceful shutdown: go-smtp's own Shutdown waits for every connection
//     to close by itself. drain makes a connection that is waiting for a
//     command outside a transaction time out at once (go-smtp then answers
//     421 and closes), and one inside a transaction time out at its first
//     command read after the transaction ends.
type conn struct {
	net.Conn
	srv *Server
	id  uint64

	mu       sync.Mutex
	readErr  error
	draining bool
	inTxn    bool
	once     sync.Once
}

func (c *conn) Read(p []byte) (int, error) {
	c.mu.Lock()
	err := c.readErr
	c.mu.Unlock()
	if err != nil {
		return 0, err
	}
	n, err := c.Conn.Read(p)
	if err != nil {
		c.mu.Lock()
		if c.readErr == nil {
			c.readErr = err
		}
		c.mu.Unlock()
	}
	return n, err
}

// SetReadDeadline is called by go-smtp before it reads each command line.
func (c *conn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.draining && !c.inTxn {
		t = longAgo()
	}
	return c.Conn.SetReadDeadline(t)
}

func (c *conn) SetDeadline(t time.Time) error {
	if err := c.SetWriteDeadline(t); err != nil {
		return err
	}
	return c.SetReadDeadline(t)
}

// drain marks the connection as to be closed at its next command outside
// a transaction.
func (c *conn) drain() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.draining = true
	if !c.inTxn {
		c.Conn.SetReadDeadline(longAgo())
	}
}

// setTxn records whether a mail transaction is open (from MAIL to the end
// of DATA, RSET, or a new LHLO).
func (c *conn) setTxn(open bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.inTxn = open
	if !open && c.draining {
		c.Conn.SetReadDeadline(longAgo())
	}
}

// Close is called by go-smtp when the session ends, possibly twice.
func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.srv.untrack(c) })
	return err
}

// errorLog passes go-smtp's own messages (accept errors, connection errors,
// recovered panics) to slog.
type errorLog struct{ log *slog.Logger }

func (e errorLog) Printf(format string, v ...any) {
	e.log.Warn("go-smtp", "detail", fmt.Sprintf(format, v...))
}

func (e errorLog) Println(v ...any) {
	e.log.Warn("go-smtp", "detail", strings.TrimSuffix(fmt.Sprintln(v...), "\n"))
}
