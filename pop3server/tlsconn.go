package pop3server

import (
	"bytes"
	"crypto/tls"
	"errors"
	"net"

	popsasl "github.com/popbox/popbox/sasl"
)

// SCRAM-SHA-256-PLUS with tls-server-end-point (RFC 5929 §4) needs the hash
// of the certificate this connection got, and crypto/tls does not tell a
// server which one it sent. So every handshake runs on a per-connection
// copy of the configuration, made by GetConfigForClient, whose
// GetCertificate records the choice in the session. A copy made that way,
// unlike a plain Clone, still uses the server's session ticket keys, so
// TLS resumption keeps working. A resumed session sends no certificate:
// the binding travels inside the session ticket instead (WrapSession and
// UnwrapSession), encrypted with the server's ticket keys like the rest of
// the ticket.

// sessionConn is the connection a TLS handshake runs on, carrying its
// session for GetConfigForClient (ClientHelloInfo.Conn).
type sessionConn struct {
	net.Conn
	s *session
}

// endPointTicketTag marks popbox's entry in a session ticket's Extra.
var endPointTicketTag = []byte("popbox tls-server-end-point\x00")

// tlsBaseConfig is TLSConfig with the per-connection hook.
func (srv *Server) tlsBaseConfig() *tls.Config {
	base := srv.TLSConfig.Clone()
	userHook := base.GetConfigForClient
	base.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		tmpl := base
		if userHook != nil {
			c, err := userHook(hello)
			if err != nil {
				return nil, err
			}
			if c != nil {
				tmpl = c
			}
		}
		sc, ok := hello.Conn.(sessionConn)
		if !ok {
			return nil, nil // not one of ours: the template as it is
		}
		return sc.s.connTLSConfig(base, tmpl), nil
	}
	return base
}

// connTLSConfig is this connection's configuration: tmpl with certificate
// selection and session tickets that remember the channel binding. base
// holds the ticket keys.
func (s *session) connTLSConfig(base, tmpl *tls.Config) *tls.Config {
	cfg := tmpl.Clone()
	cfg.GetConfigForClient = nil
	get, certs := cfg.GetCertificate, cfg.Certificates
	// Without Certificates crypto/tls always asks GetCertificate; with
	// them it would not when the client sends no server name.
	cfg.Certificates = nil
	cfg.GetCertificate = func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		var c *tls.Certificate
		if get != nil {
			var err error
			if c, err = get(hello); err != nil {
				return nil, err
			}
		}
		if c == nil {
			// What crypto/tls does without GetCertificate: the first
			// certificate that suits the client, else the first.
			for i := range certs {
				if hello.SupportsCertificate(&certs[i]) == nil {
					c = &certs[i]
					break
				}
			}
			if c == nil && len(certs) > 0 {
				c = &certs[0]
			}
		}
		if c == nil {
			return nil, errors.New("pop3server: no certificate configured")
		}
		if len(c.Certificate) > 0 {
			// Undefined for some signature algorithms (Ed25519): then
			// there is no binding of this type, and -PLUS with it fails.
			if h, err := popsasl.ServerEndPointHash(c.Certificate[0]); err == nil {
				s.endPoint.Store(&h)
			}
		}
		return c, nil
	}
	cfg.WrapSession = func(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
		if h := s.endPoint.Load(); h != nil {
			ss.Extra = append(ss.Extra, append(bytes.Clone(endPointTicketTag), *h...))
		}
		return base.EncryptTicket(cs, ss)
	}
	cfg.UnwrapSession = func(identity []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
		ss, err := base.DecryptTicket(identity, cs)
		if err != nil || ss == nil {
			return ss, err
		}
		for _, e := range ss.Extra {
			if h, ok := bytes.CutPrefix(e, endPointTicketTag); ok {
				h = bytes.Clone(h)
				s.endPoint.Store(&h)
			}
		}
		return ss, nil
	}
	return cfg
}
