package pop3client

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/popbox/popbox/pop3"
)

// Defaults for the zero fields of Options.
const (
	DefaultTimeout    = 2 * time.Minute
	DefaultMaxLine    = 8192
	DefaultMaxListing = 1_000_000
)

const (
	// maxCapaLines bounds a CAPA listing; real servers send about a dozen.
	maxCapaLines = 1000
	// maxAuthRounds bounds the challenges of one AUTH exchange; SCRAM needs
	// two, so a server that keeps challenging is looping or hostile.
	maxAuthRounds = 32
	// maxWindow caps the pipelining window so that the unanswered commands
	// (at most ~20 octets each) always fit in the socket buffers: a client
	// blocked writing commands while the server is blocked writing replies
	// would deadlock (RFC 2449 §6.6 warns of this).
	maxWindow = 128
	// readBufferSize is the connection's read buffer when MaxLine is
	// smaller: big enough that a message streams in few system calls.
	readBufferSize = 64 << 10
)

// Options configure a Client. The zero value means the defaults.
type Options struct {
	// Timeout is the deadline of each command and its reply when the
	// context has none (default 2 minutes). For message bodies and
	// listings it is renewed as data arrives, so it limits a stall, not a
	// long transfer.
	Timeout time.Duration
	// MaxLine bounds a status or listing line in octets (default 8192;
	// RFC 2449 §4 says 512, but servers exceed it).
	MaxLine int
	// MaxListing bounds the entries of a LIST or UIDL listing (default
	// 1,000,000): a server cannot make the client hold more.
	MaxListing int
	// Logger receives protocol traces at debug level (passwords and SASL
	// data redacted) and notes on out-of-spec replies at warn level;
	// nil discards.
	Logger *slog.Logger
}

func (o *Options) withDefaults() Options {
	var r Options
	if o != nil {
		r = *o
	}
	if r.Timeout <= 0 {
		r.Timeout = DefaultTimeout
	}
	if r.MaxLine <= 0 {
		r.MaxLine = DefaultMaxLine
	}
	if r.MaxListing <= 0 {
		r.MaxListing = DefaultMaxListing
	}
	if r.Logger == nil {
		r.Logger = slog.New(slog.DiscardHandler)
	}
	return r
}

// Client is a POP3 client connection. It is used by one goroutine at a
// time, except Close, which may be called from any goroutine.
type Client struct {
	opts     Options
	log      *slog.Logger
	host     string // server name for STLS certificate checks; "" if unknown
	greeting string

	// Used only by the goroutine running the current command.
	r    *bufio.Reader
	w    *bufio.Writer
	caps Capabilities // nil until CAPA succeeded, and again after STLS/login
	// pipelining: the last CAPA offered PIPELINING. Unlike caps it
	// survives login: PIPELINING describes the server's command reader,
	// which does not change when the user is known, and asking again
	// would cost the round trip that pipelining saves. STLS clears it.
	pipelining bool

	mu     sync.Mutex // guards the fields below
	conn   net.Conn   // *tls.Conn after STLS
	cur    *op        // the command in progress, for cancellation
	busy   bool       // a Retr/Top body is open, or RetrMany runs
	err    error      // set when the connection failed; sticky
	closed bool       // Close or Quit was called
}

// Dial connects to a POP3 server over plain TCP (port 110; use StartTLS
// before logging in) and reads the greeting.
func Dial(ctx context.Context, addr string, opts *Options) (*Client, error) {
	o := opts.withDefaults()
	dctx, cancel := withTimeout(ctx, o.Timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(dctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("pop3client: dial %s: %w", addr, err)
	}
	return newClient(ctx, conn, o, hostOf(addr))
}

// DialTLS connects to a POP3S server (implicit TLS, RFC 8314 §3.3, port
// 995) and reads the greeting. A nil cfg, or one without ServerName, checks
// the certificate against the host in addr.
func DialTLS(ctx context.Context, addr string, cfg *tls.Config, opts *Options) (*Client, error) {
	o := opts.withDefaults()
	dctx, cancel := withTimeout(ctx, o.Timeout)
	defer cancel()
	// tls.Dialer fills in ServerName from addr when cfg has none, and
	// completes the handshake before returning.
	d := tls.Dialer{Config: cfg}
	conn, err := d.DialContext(dctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("pop3client: dial %s: %w", addr, err)
	}
	return newClient(ctx, conn, o, hostOf(addr))
}

// NewClient starts a session on an established connection (plain, or a
// *tls.Conn for implicit TLS) and reads the greeting. It takes ownership of
// conn, which is closed on error. StartTLS on such a client needs a
// tls.Config with ServerName, since the server's name is not known here.
func NewClient(conn net.Conn, opts *Options) (*Client, error) {
	return newClient(context.Background(), conn, opts.withDefaults(), "")
}

func newClient(ctx context.Context, conn net.Conn, opts Options, host string) (*Client, error) {
	c := &Client{
		opts: opts,
		log:  opts.Logger,
		host: host,
		conn: conn,
		r:    bufio.NewReaderSize(conn, max(opts.MaxLine, readBufferSize)),
		w:    bufio.NewWriter(conn),
	}
	o, err := c.begin(ctx, "greeting")
	if err != nil {
		conn.Close()
		return nil, err
	}
	defer o.end()
	// RFC 1939 §4: the server greets with +OK; a server refusing service
	// (overloaded, blocked) may greet with -ERR.
	ok, text, err := o.status()
	if err != nil {
		return nil, err
	}
	if !ok {
		c.Close()
		return nil, parseError("greeting", text)
	}
	c.greeting = text
	return c, nil
}

// Greeting returns the text of the server's greeting, after "+OK ".
func (c *Client) Greeting() string { return c.greeting }

// TLSConnectionState returns the TLS state of the connection, and false
// when it is not (yet) TLS.
func (c *Client) TLSConnectionState() (tls.ConnectionState, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if tc, ok := c.conn.(*tls.Conn); ok {
		return tc.ConnectionState(), true
	}
	return tls.ConnectionState{}, false
}

// Close closes the connection without QUIT: the server applies no deletion
// (RFC 1939 §6). It interrupts a command in progress in another goroutine.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	failed := c.err != nil
	conn := c.conn
	c.mu.Unlock()
	err := conn.Close()
	if failed {
		// Already closed when the failure was recorded.
		return nil
	}
	if err != nil {
		return fmt.Errorf("pop3client: close: %w", err)
	}
	return nil
}

// op is one command (or pipelined batch) in progress: it holds the context
// and the deadline, and turns I/O failures into the Client's sticky error.
type op struct {
	c    *Client
	ctx  context.Context
	name string // the command for errors and logs, without secrets
	stop func() bool

	fixedDeadline bool      // ctx has a deadline; it is not renewed
	lastSet       time.Time // when the Timeout deadline was last renewed
	canceled      bool      // ctx was cancelled mid-command; guarded by c.mu
}

// begin starts a command. It fails without touching the connection when the
// Client is unusable, closed or busy, or ctx is already done, so such
// failures leave the session as it was.
func (c *Client) begin(ctx context.Context, name string) (*op, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.checkLocked(name); err != nil {
		return nil, err
	}
	if c.busy {
		return nil, fmt.Errorf("%w: %s refused", ErrBusy, name)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("pop3client: %s: %w", name, err)
	}
	o := &op{c: c, ctx: ctx, name: name}
	c.cur = o
	now := time.Now()
	if d, ok := ctx.Deadline(); ok {
		o.fixedDeadline = true
		c.conn.SetDeadline(d)
	} else {
		o.lastSet = now
		c.conn.SetDeadline(now.Add(c.opts.Timeout))
	}
	o.stop = context.AfterFunc(ctx, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		// A late call for a command that has ended must not disturb the
		// next one.
		if c.cur != o {
			return
		}
		o.canceled = true
		// A deadline in the past makes blocked I/O return at once.
		c.conn.SetDeadline(time.Unix(1, 0))
	})
	return o, nil
}

// check reports why the Client cannot be used, if it cannot.
func (c *Client) check(name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.checkLocked(name)
}

func (c *Client) checkLocked(name string) error {
	switch {
	case c.err != nil:
		return fmt.Errorf("pop3client: %s: connection unusable after an earlier error: %w", name, c.err)
	case c.closed:
		return fmt.Errorf("pop3client: %s: %w", name, net.ErrClosed)
	}
	return nil
}

// end finishes the command; the connection is left as it is.
func (o *op) end() {
	o.stop()
	o.c.mu.Lock()
	if o.c.cur == o {
		o.c.cur = nil
	}
	o.c.mu.Unlock()
}

// refresh renews the Timeout deadline before a read that may follow a long
// transfer. It renews at most every Timeout/8, so a stream of small reads
// does not pay for a timer update each.
func (o *op) refresh() {
	if o.fixedDeadline {
		return
	}
	now := time.Now()
	if now.Sub(o.lastSet) < o.c.opts.Timeout/8 {
		return
	}
	o.c.mu.Lock()
	defer o.c.mu.Unlock()
	if o.canceled {
		return // keep the past deadline: the read must fail
	}
	o.lastSet = now
	o.c.conn.SetDeadline(now.Add(o.c.opts.Timeout))
}

// fail records err as the reason the connection is unusable, closes it,
// and returns the error to report. A failure caused by the context is
// reported as such.
func (o *op) fail(err error) error {
	c := o.c
	c.mu.Lock()
	defer c.mu.Unlock()
	ctxErr := o.ctx.Err()
	if d, ok := o.ctx.Deadline(); ok && ctxErr == nil && !time.Now().Before(d) {
		// The connection's deadline, which is the context's, can expire
		// a moment before the context notices.
		ctxErr = context.DeadlineExceeded
	}
	if ctxErr != nil && (o.canceled || errors.Is(err, os.ErrDeadlineExceeded)) {
		if errors.Is(ctxErr, context.DeadlineExceeded) {
			err = fmt.Errorf("pop3client: %s: %w (%w); connection closed", o.name, ctxErr, err)
		} else {
			err = fmt.Errorf("pop3client: %s: interrupted: %w; connection closed", o.name, ctxErr)
		}
	} else if errors.Is(err, os.ErrDeadlineExceeded) && !o.fixedDeadline {
		err = fmt.Errorf("pop3client: %s: server silent for %v (Options.Timeout): %w", o.name, o.c.opts.Timeout, err)
	} else if !errors.Is(err, ErrProtocol) {
		err = fmt.Errorf("pop3client: %s: %w", o.name, err)
	}
	if c.err == nil {
		c.err = err
		c.conn.Close()
		c.log.Debug("pop3 connection failed", "err", err)
	}
	return err
}

// protocol fails the connection for a malformed reply.
func (o *op) protocol(format string, args ...any) error {
	return o.fail(fmt.Errorf("%w: %s: %w", ErrProtocol, o.name, fmt.Errorf(format, args...)))
}

// send writes one command line and flushes it. logged is what the trace
// shows instead of line when line holds a secret.
func (o *op) send(line, logged string) error {
	o.write(line, logged)
	return o.flush()
}

// write buffers one command line without flushing (pipelining).
func (o *op) write(line, logged string) {
	if logged == "" {
		logged = line
	}
	o.c.log.Debug("pop3 send", "line", logged)
	o.c.w.WriteString(line)
	o.c.w.WriteString("\r\n")
}

func (o *op) flush() error {
	if err := o.c.w.Flush(); err != nil {
		return o.fail(err)
	}
	return nil
}

// readLine reads one status or listing line. inListing says whether the
// connection ending here cuts a multi-line reply short (a protocol error)
// rather than comes between replies.
func (o *op) readLine(inListing bool) ([]byte, error) {
	o.refresh()
	line, err := pop3.ReadLine(o.c.r, o.c.opts.MaxLine)
	switch {
	case err == nil:
	case errors.Is(err, pop3.ErrLineTooLong):
		return nil, o.protocol("line longer than %d octets", o.c.opts.MaxLine)
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		if inListing {
			return nil, o.protocol("connection closed before the end of the listing: %w", io.ErrUnexpectedEOF)
		}
		return nil, o.fail(fmt.Errorf("server closed the connection: %w", io.ErrUnexpectedEOF))
	default:
		return nil, o.fail(err)
	}
	if err := checkLine(line); err != nil {
		return nil, o.protocol("%w", err)
	}
	return line, nil
}

// status reads a status line and returns whether it is +OK, and its text.
func (o *op) status() (bool, string, error) {
	line, err := o.readLine(false)
	if err != nil {
		return false, "", err
	}
	o.c.log.Debug("pop3 recv", "line", string(line))
	ok, text, err := parseStatus(line)
	if err != nil {
		return false, "", o.protocol("%w", err)
	}
	return ok, text, nil
}

// listing reads the lines of a multi-line reply up to the terminating ".",
// removes the byte-stuffing (RFC 1939 §3), and passes each to fn, at most
// limit of them.
func (o *op) listing(limit int, fn func(line string) error) error {
	for n := 0; ; n++ {
		line, err := o.readLine(true)
		if err != nil {
			return err
		}
		if len(line) == 1 && line[0] == '.' {
			return nil
		}
		if n >= limit {
			return o.protocol("listing longer than %d lines", limit)
		}
		if len(line) > 0 && line[0] == '.' {
			line = line[1:]
		}
		if err := fn(string(line)); err != nil {
			return o.protocol("%w", err)
		}
	}
}

// simple runs a command with a single-line reply and returns the text of
// its +OK. logged replaces line in traces and errors when it holds a secret.
func (c *Client) simple(ctx context.Context, line, logged string) (string, error) {
	name := line
	if logged != "" {
		name = logged
	}
	o, err := c.begin(ctx, name)
	if err != nil {
		return "", err
	}
	defer o.end()
	if err := o.send(line, logged); err != nil {
		return "", err
	}
	ok, text, err := o.status()
	if err != nil {
		return "", err
	}
	if !ok {
		return "", parseError(name, text)
	}
	return text, nil
}

func (c *Client) setBusy(b bool) {
	c.mu.Lock()
	c.busy = b
	c.mu.Unlock()
}

func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, d)
}

func hostOf(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return strings.TrimSuffix(host, ".")
}
