package proxyproto

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultHeaderTimeout is the HeaderTimeout of a Listener that sets none.
const DefaultHeaderTimeout = 5 * time.Second

// headerBufSize holds the largest v1 line and a typical v2 header in one
// read; a longer v2 header is read through it.
const headerBufSize = 512

// Listener wraps a listener whose trusted peers (load balancers) send a
// PROXY protocol header first. Set the fields before the first Accept and
// do not change them afterwards.
type Listener struct {
	net.Listener
	// Trusted are the networks of the proxies. From a peer in one of them
	// a header is required; from any other peer none is read, and a header
	// it sends is passed on as data, so that no client can claim another
	// address (§5). Give IPv4 networks in IPv4 form: peers' IPv4-mapped
	// addresses are unmapped before matching, and zones are ignored. An
	// empty list trusts no one: every connection passes through untouched.
	Trusted []netip.Prefix
	// HeaderTimeout bounds the wait for a trusted peer's header, counted
	// from the first use of the connection (zero means
	// DefaultHeaderTimeout, negative means only the caller's own read
	// deadline applies).
	HeaderTimeout time.Duration
	// Logger, if set, gets a warning for each rejected header (debug for a
	// trusted peer that closed without sending a byte, as TCP health checks
	// do) and a debug line for each accepted one.
	Logger *slog.Logger
}

// Accept waits for the next connection and returns it as a *Conn at once:
// the header, if the peer is trusted, is read later by the Conn (see
// Conn.Handshake), so that a slow proxy connection cannot hold up the
// accept loop.
func (l *Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return l.newConn(c), nil
}

func (l *Listener) newConn(c net.Conn) *Conn {
	pc := &Conn{conn: c}
	if !l.trusts(c.RemoteAddr()) {
		pc.hsDone.Store(true)
		return pc
	}
	pc.timeout = l.HeaderTimeout
	if pc.timeout == 0 {
		pc.timeout = DefaultHeaderTimeout
	}
	pc.logger = l.Logger
	return pc
}

func (l *Listener) trusts(a net.Addr) bool {
	ap, ok := addrPortOf(a)
	if !ok {
		return false
	}
	ip := ap.Addr().Unmap().WithZone("")
	for _, p := range l.Trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

func addrPortOf(a net.Addr) (netip.AddrPort, bool) {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.AddrPort(), true
	case nil:
		return netip.AddrPort{}, false
	}
	ap, err := netip.ParseAddrPort(a.String())
	return ap, err == nil
}

// Conn is a connection accepted by a Listener. From a trusted peer its
// header is read by Handshake, which every other method but Close, NetConn
// and the deadline setters runs first; from any other peer Conn passes
// everything through.
//
// It is safe for concurrent use, like any net.Conn. It can be handed to
// crypto/tls.Server: the header precedes the ClientHello (implicit TLS
// behind a proxy), and bytes the header read took in past the header are
// returned by Read before anything else.
type Conn struct {
	conn    net.Conn
	timeout time.Duration
	logger  *slog.Logger

	// hsMu serialises the header read; hsDone publishes its result (set
	// from the start for an untrusted peer), after which header, hsErr,
	// remote and local are read without the lock.
	hsMu   sync.Mutex
	hsDone atomic.Bool
	header *Header
	hsErr  error
	remote net.Addr // nil: the connection's own
	local  net.Addr

	// dlMu guards the read deadline bookkeeping during the header read:
	// the caller's deadline must still apply (the server's own timeouts,
	// or an interruption setting a deadline in the past) and must be
	// restored afterwards.
	dlMu           sync.Mutex
	readDeadline   time.Time // the caller's
	headerDeadline time.Time // non-zero while the header is being read

	// rest holds what the header read buffered past the header.
	restMu  sync.Mutex
	rest    []byte
	pending atomic.Bool // len(rest) > 0, for a lock-free Read afterwards
}

// Handshake reads and checks the PROXY header of a trusted peer, once; later
// calls return the first result. For an untrusted peer it does nothing. A
// missing or invalid header fails the connection for good: Read, Write and
// Handshake return the error (wrapping ErrNoHeader, ErrInvalidHeader or a
// read error such as os.ErrDeadlineExceeded), and the caller should close
// it.
//
// Every method but Close, NetConn and the deadline setters calls Handshake
// first, so RemoteAddr blocks until the header has arrived or the attempt
// failed. A server whose accept loop needs RemoteAddr should call Handshake
// in the connection's own goroutine first.
func (c *Conn) Handshake() error {
	if c.hsDone.Load() {
		return c.hsErr
	}
	c.hsMu.Lock()
	defer c.hsMu.Unlock()
	if c.hsDone.Load() {
		return c.hsErr
	}
	c.hsErr = c.readHeader()
	c.hsDone.Store(true)
	return c.hsErr
}

func (c *Conn) readHeader() error {
	c.startHeaderDeadline()
	br := bufio.NewReaderSize(c.conn, headerBufSize)
	h, err := ReadHeader(br)
	c.endHeaderDeadline()
	peer := c.conn.RemoteAddr()
	if err != nil {
		c.logRejected(peer, err)
		return fmt.Errorf("trusted peer %v: %w", peer, err)
	}
	if n := br.Buffered(); n > 0 {
		b, _ := br.Peek(n)
		// A copy, so that the rest of the buffer can be collected.
		c.rest = bytes.Clone(b)
		c.pending.Store(true)
	}
	c.header = h
	if h.Command == CommandProxy && h.Source.IsValid() {
		c.remote = tcpAddr(h.Source)
		c.local = tcpAddr(h.Destination)
	}
	if c.logger != nil {
		c.logger.Debug("PROXY protocol header", "peer", peer.String(), "command", h.Command.String(),
			"source", h.Source.String(), "destination", h.Destination.String())
	}
	return nil
}

// tcpAddr unmaps, so that an IPv4 client reported in an IPv6 header looks
// like any other IPv4 client to the server's per-address accounting.
func tcpAddr(ap netip.AddrPort) *net.TCPAddr {
	return net.TCPAddrFromAddrPort(netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
}

func (c *Conn) logRejected(peer net.Addr, err error) {
	if c.logger == nil {
		return
	}
	level := slog.LevelWarn
	if errors.Is(err, io.EOF) {
		level = slog.LevelDebug
	}
	c.logger.Log(context.Background(), level, "PROXY protocol header rejected", "peer", peer.String(), "err", err)
}

// startHeaderDeadline counts HeaderTimeout from the start of the read, not
// from Accept: a server that gets to the connection late would otherwise
// fail a header that has been waiting in the socket buffer all along.
func (c *Conn) startHeaderDeadline() {
	if c.timeout <= 0 {
		return
	}
	c.dlMu.Lock()
	defer c.dlMu.Unlock()
	c.headerDeadline = time.Now().Add(c.timeout)
	c.conn.SetReadDeadline(earliest(c.readDeadline, c.headerDeadline))
}

func (c *Conn) endHeaderDeadline() {
	c.dlMu.Lock()
	defer c.dlMu.Unlock()
	if c.headerDeadline.IsZero() {
		return
	}
	c.headerDeadline = time.Time{}
	c.conn.SetReadDeadline(c.readDeadline)
}

// earliest treats the zero time as no deadline.
func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

// Read reads data after the header.
func (c *Conn) Read(p []byte) (int, error) {
	if err := c.Handshake(); err != nil {
		return 0, err
	}
	if c.pending.Load() {
		c.restMu.Lock()
		if len(c.rest) > 0 {
			n := copy(p, c.rest)
			c.rest = c.rest[n:]
			if len(c.rest) == 0 {
				c.rest = nil
				c.pending.Store(false)
			}
			c.restMu.Unlock()
			return n, nil
		}
		c.restMu.Unlock()
	}
	return c.conn.Read(p)
}

// Write writes after the header has been read, so that nothing is said to a
// trusted peer whose header turns out missing or invalid.
func (c *Conn) Write(p []byte) (int, error) {
	if err := c.Handshake(); err != nil {
		return 0, err
	}
	return c.conn.Write(p)
}

// Close closes the connection; it also ends a header read in progress.
func (c *Conn) Close() error { return c.conn.Close() }

// RemoteAddr is the original client's address (a *net.TCPAddr) when the
// header says PROXY with TCP addresses, else the real peer's, as it is for
// an untrusted peer, a LOCAL or UNKNOWN header, or a failed one.
func (c *Conn) RemoteAddr() net.Addr {
	c.Handshake()
	if c.remote != nil {
		return c.remote
	}
	return c.conn.RemoteAddr()
}

// LocalAddr is the address the original client connected to (on the
// proxy) when RemoteAddr is the client's, else the real local address.
func (c *Conn) LocalAddr() net.Addr {
	c.Handshake()
	if c.local != nil {
		return c.local
	}
	return c.conn.LocalAddr()
}

// ProxyHeader returns the header after Handshake: nil for an untrusted peer.
func (c *Conn) ProxyHeader() (*Header, error) {
	if err := c.Handshake(); err != nil {
		return nil, err
	}
	return c.header, nil
}

// NetConn returns the underlying connection, for its real endpoints.
// Reading from it directly skips whatever the header read buffered.
func (c *Conn) NetConn() net.Conn { return c.conn }

// SetDeadline sets the read and write deadlines; during the header read the
// earlier of the read deadline and the header's applies.
func (c *Conn) SetDeadline(t time.Time) error {
	if c.hsDone.Load() {
		return c.conn.SetDeadline(t)
	}
	c.dlMu.Lock()
	defer c.dlMu.Unlock()
	c.readDeadline = t
	if c.headerDeadline.IsZero() {
		return c.conn.SetDeadline(t)
	}
	if err := c.conn.SetWriteDeadline(t); err != nil {
		return err
	}
	return c.conn.SetReadDeadline(earliest(t, c.headerDeadline))
}

// SetReadDeadline sets the read deadline; during the header read the earlier
// of it and the header's applies.
func (c *Conn) SetReadDeadline(t time.Time) error {
	if c.hsDone.Load() {
		return c.conn.SetReadDeadline(t)
	}
	c.dlMu.Lock()
	defer c.dlMu.Unlock()
	c.readDeadline = t
	return c.conn.SetReadDeadline(earliest(t, c.headerDeadline))
}

// SetWriteDeadline sets the write deadline.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.conn.SetWriteDeadline(t) }
