package pop3server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"

	"github.com/popbox/popbox/proxyproto"
)

// Connections relayed by a load balancer (a proxyproto.Listener given to
// Serve or ServeTLS) carry the client's address in a PROXY protocol header
// that arrives after Accept. Everything keyed by address (the per-address
// limits, the failure penalties, the remote_ip of the log lines fail2ban
// reads, ConnInfo for the Backend) must see the client, not the proxy, so
// admission waits for the header; and it waits in a goroutine of its own,
// since a trusted peer that is slow to send it must not hold up the accept
// loop and with it every other client's greeting.

// admitProxied reads pc's header, if its peer is trusted, in a goroutine
// counted in wg, then admits pc like any connection. pc is already counted
// in nconns. It returns false, having closed pc and released its count,
// when the server is shutting down.
func (s *Server) admitProxied(pc *proxyproto.Conn, implicitTLS bool) bool {
	// Counted in wg under mu, like refuse and sessions, so Shutdown's Wait
	// cannot race with this Add, and registered so that shutdown can close
	// a connection still waiting for its header.
	s.mu.Lock()
	closing := s.inShutdown.Load()
	if !closing {
		s.wg.Add(1)
		s.handshaking[pc] = struct{}{}
	}
	s.mu.Unlock()
	if closing {
		s.nconns.Add(-1)
		pc.Close()
		return false
	}
	go func() {
		defer s.wg.Done()
		err := pc.Handshake()
		s.mu.Lock()
		delete(s.handshaking, pc)
		s.mu.Unlock()
		if err != nil {
			s.nconns.Add(-1)
			s.logHeaderFailure(pc, err)
			pc.Close()
			return
		}
		// A false return means shutdown: admit has closed pc, and the
		// accept loop learns of it from its listener.
		s.admit(pc, implicitTLS)
	}()
	return true
}

// logHeaderFailure logs a connection dropped for its PROXY header. The
// peer is the proxy, so it is logged as peer, never as remote_ip: fail2ban
// must not ban the load balancer for a client's sake or its own
// misconfiguration. A proxy's TCP health check connects and closes
// without a byte, and shutdown closes pending reads: neither is worth a
// warning.
func (s *Server) logHeaderFailure(pc *proxyproto.Conn, err error) {
	level := slog.LevelWarn
	if errors.Is(err, io.EOF) || s.inShutdown.Load() {
		level = slog.LevelDebug
	}
	s.Logger.Log(context.Background(), level, "PROXY protocol header failed, connection closed",
		"peer", pc.NetConn().RemoteAddr().String(), "err", err)
}

// proxiedBy returns the proxy's address when c was relayed by a trusted
// proxy (whatever its header said), or nil. c must have completed its
// handshake.
func proxiedBy(c net.Conn) net.Addr {
	pc, ok := c.(*proxyproto.Conn)
	if !ok {
		return nil
	}
	if h, err := pc.ProxyHeader(); err != nil || h == nil {
		return nil
	}
	return pc.NetConn().RemoteAddr()
}

// clientOnLoopback reports whether c's client is on this host, for the
// PlaintextLoopback policy. A relayed connection counts only when its
// header names a loopback client. With a LOCAL header (§2.2; a health
// check), UNKNOWN (§2.1) or an address family without addresses, the
// connection keeps the proxy's own address, and a proxy on this host
// would make every remote client it relays look local and get USER/PASS
// in the clear.
func clientOnLoopback(c net.Conn) bool {
	if pc, ok := c.(*proxyproto.Conn); ok {
		h, err := pc.ProxyHeader()
		if err != nil {
			return false
		}
		if h != nil && (h.Command != proxyproto.CommandProxy || !h.Source.IsValid()) {
			return false
		}
	}
	ta, ok := c.RemoteAddr().(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}
