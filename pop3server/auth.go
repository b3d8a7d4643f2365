package pop3server

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/emersion/go-sasl"

	"github.com/popbox/popbox/pop3"
	popsasl "github.com/popbox/popbox/sasl"
	"github.com/popbox/popbox/store"
)

// SCRAMBackend is a Backend that can also serve SCRAM-SHA-256 (RFC 7677):
// the mechanism is offered only when the Backend implements it.
type SCRAMBackend interface {
	Backend
	// SCRAMCredentials returns the canonical name and the stored SCRAM
	// credentials of user. An unknown user or one without credentials is
	// an error wrapping ErrAuthFailed: the exchange then runs on with fake
	// credentials and fails like a wrong password. Any other error is a
	// system problem reported as -ERR [SYS/TEMP].
	SCRAMCredentials(ctx context.Context, info ConnInfo, user string) (canonical string, creds popsasl.SCRAMCredentials, err error)
}

// mechanism is one SASL mechanism the AUTH command offers (RFC 5034). New
// mechanisms (OAUTHBEARER, ...) are added to the table in mechanisms; each
// exchange ends in a call to session.login or session.openMaildrop, or in an
// error.
type mechanism struct {
	name string
	// plaintext: the client sends the password itself, so the mechanism is
	// subject to the Plaintext policy like USER/PASS.
	plaintext bool
	// start begins one exchange. The returned function reports its outcome
	// once the exchange is done or has failed.
	start func(s *session) (sasl.Server, func() authResult)
}

// authResult is what a finished exchange established. Mechanisms that carry
// the password (PLAIN, LOGIN) leave checking it to the Backend; those that
// verify a proof themselves (SCRAM) report the canonical user instead.
type authResult struct {
	user     string // as the client gave it, for the log and the penalties
	password string
	// verified: the mechanism has checked the credentials; canonical is
	// the Backend's name for the user.
	verified  bool
	canonical string
	// sysErr is a Backend failure during the exchange: not bad
	// credentials but -ERR [SYS/TEMP].
	sysErr error
}

func mechanisms(b Backend) []mechanism {
	mechs := []mechanism{{
		name:      sasl.Plain,
		plaintext: true,
		start: func(s *session) (sasl.Server, func() authResult) {
			var r authResult
			srv := sasl.NewPlainServer(func(identity, username, password string) error {
				// RFC 4616 §2: an authorization identity other than the
				// authentication identity would be proxy login, which
				// popbox does not offer.
				if identity != "" && !strings.EqualFold(identity, username) {
					return ErrAuthFailed
				}
				r.user, r.password = username, password
				return nil
			})
			return srv, func() authResult { return r }
		},
	}, {
		// LOGIN (draft-murchison-sasl-login-00) is what Outlook offers when
		// the server has no PLAIN it likes; it carries the password as is.
		name:      popsasl.Login,
		plaintext: true,
		start: func(s *session) (sasl.Server, func() authResult) {
			var r authResult
			srv := popsasl.NewLoginServer(func(username, password string) error {
				r.user, r.password = username, password
				return nil
			})
			return srv, func() authResult { return r }
		},
	}}
	if sb, ok := b.(SCRAMBackend); ok {
		// SCRAM-SHA-256 (RFC 7677) sends no password, only a proof, so it
		// is offered without TLS too.
		mechs = append(mechs, mechanism{
			name: popsasl.SCRAMSHA256,
			start: func(s *session) (sasl.Server, func() authResult) {
				var canonical string
				srv := popsasl.NewSCRAMSHA256Server(func(user string) (popsasl.SCRAMCredentials, error) {
					ctx, cancel := context.WithTimeout(context.Background(), backendTimeout)
					defer cancel()
					c, creds, err := sb.SCRAMCredentials(ctx, s.connInfo(), user)
					if errors.Is(err, ErrAuthFailed) {
						return creds, fmt.Errorf("%w: %w", popsasl.ErrNoSCRAMCredentials, err)
					}
					canonical = c
					return creds, err
				}, s.srv.SCRAMSecret)
				return srv, func() authResult {
					return authResult{user: srv.Username(), verified: true, canonical: canonical, sysErr: srv.LookupErr()}
				}
			},
		})
	}
	return mechs
}

// backendTimeout bounds one Backend call for a login.
const backendTimeout = 30 * time.Second

// plaintextAllowed applies the Plaintext policy to this connection
// (RFC 8314 §5 and RFC 2595 §2.1: no password in clear by default).
func (s *session) plaintextAllowed() bool {
	if s.tls != nil {
		return true
	}
	switch s.srv.Plaintext {
	case PlaintextAlways:
		return true
	case PlaintextNever:
		return false
	}
	if ta, ok := s.currentConn().RemoteAddr().(*net.TCPAddr); ok {
		return ta.IP.IsLoopback()
	}
	return false
}

func (s *session) stlsAvailable() bool {
	return s.srv.TLSConfig != nil && s.tls == nil && s.state == stateAuthorization
}

const plaintextRefused = "plaintext authentication disallowed on an unencrypted connection, use STLS first"

func cmdCapa(s *session, _ pop3.Command, _ []byte) error {
	s.ok("capability list follows")
	caps := []string{pop3.CapTop, pop3.CapUIDL}
	if s.state == stateAuthorization {
		allowed := s.plaintextAllowed()
		if allowed {
			caps = append(caps, pop3.CapUser)
		}
		sasl := pop3.CapSASL
		for _, m := range mechanisms(s.srv.Backend) {
			if !m.plaintext || allowed {
				sasl += " " + m.name
			}
		}
		if sasl != pop3.CapSASL {
			caps = append(caps, sasl)
		}
	}
	caps = append(caps, pop3.CapRespCodes, pop3.CapAuthRespCode, pop3.CapPipelining,
		// RFC 2449 §6.7: popbox never deletes mail on its own.
		pop3.CapExpire+" NEVER",
		// RFC 2449 §6.5: no minimum delay between logins.
		pop3.CapLoginDelay+" 0",
		pop3.CapUTF8,
		pop3.CapImplementation+" "+s.srv.Implementation)
	if s.stlsAvailable() {
		caps = append(caps, pop3.CapSTLS)
	}
	for _, c := range caps {
		s.w.WriteString(c)
		s.w.WriteString("\r\n")
	}
	_, err := s.w.WriteString(".\r\n")
	return err
}

func cmdUTF8(s *session, cmd pop3.Command, _ []byte) error {
	if len(cmd.Args) != 0 {
		return s.replyBad("UTF8 takes no arguments")
	}
	s.utf8 = true // RFC 6856 §2: mail is sent as stored; nothing to convert
	return s.ok("UTF8 enabled")
}

func cmdUser(s *session, cmd pop3.Command, _ []byte) error {
	if !s.plaintextAllowed() {
		return s.reply(false, pop3.CodeAuth, plaintextRefused)
	}
	if len(cmd.Args) != 1 {
		return s.replyBad("usage: USER name")
	}
	s.user = cmd.Args[0]
	// The same reply for every name: existence is not revealed here. It
	// does not reset the error count, or USER/PASS guessing would never
	// reach MaxBadCommands.
	bad := s.badCmds
	err := s.ok("send PASS")
	s.badCmds = bad
	return err
}

func cmdPass(s *session, cmd pop3.Command, line []byte) error {
	if !s.plaintextAllowed() {
		return s.reply(false, pop3.CodeAuth, plaintextRefused)
	}
	if s.user == "" {
		return s.replyBad("USER first")
	}
	// RFC 1939 §7: the password may contain spaces, so it is the rest of
	// the line after "PASS ", not the first argument.
	pass := ""
	rest := bytes.TrimLeft(line, " ") // ParseCommand accepts leading spaces
	if i := bytes.IndexByte(rest, ' '); i >= 0 {
		pass = string(rest[i+1:])
	}
	user := s.user
	s.user = ""
	if pass == "" {
		return s.replyBad("usage: PASS password")
	}
	return s.login(user, pass, "USER")
}

func cmdAuth(s *session, cmd pop3.Command, _ []byte) error {
	mechs := mechanisms(s.srv.Backend)
	if len(cmd.Args) == 0 {
		// Not in RFC 5034, but Outlook sends a bare AUTH and expects the
		// mechanism list as a multi-line reply, as from CAPA's SASL line.
		s.ok("")
		for _, m := range mechs {
			if !m.plaintext || s.plaintextAllowed() {
				s.w.WriteString(m.name)
				s.w.WriteString("\r\n")
			}
		}
		_, err := s.w.WriteString(".\r\n")
		return err
	}
	if len(cmd.Args) > 2 {
		return s.replyBad("usage: AUTH mechanism [initial-response]")
	}
	var mech *mechanism
	for i := range mechs {
		if strings.EqualFold(mechs[i].name, cmd.Args[0]) {
			mech = &mechs[i]
		}
	}
	if mech == nil {
		return s.replyBad("unsupported authentication mechanism")
	}
	if mech.plaintext && !s.plaintextAllowed() {
		return s.reply(false, pop3.CodeAuth, plaintextRefused)
	}
	srv, result := mech.start(s)
	var resp []byte
	if len(cmd.Args) == 2 {
		// RFC 5034 §4: "=" is an empty initial response.
		if cmd.Args[1] == "=" {
			resp = []byte{}
		} else {
			var err error
			if resp, err = base64.StdEncoding.DecodeString(cmd.Args[1]); err != nil {
				return s.replyBad("invalid base64 in initial response")
			}
		}
	}
	for {
		challenge, done, err := srv.Next(resp)
		if err != nil {
			r := result()
			if r.sysErr != nil {
				s.log.Error("authentication backend", "user", r.user, "err", r.sysErr)
				return s.reply(false, pop3.CodeSysTemp, "authentication temporarily unavailable")
			}
			return s.authFailed(r.user, mech.name)
		}
		if done {
			r := result()
			if r.verified {
				ctx, cancel := context.WithTimeout(context.Background(), backendTimeout)
				defer cancel()
				return s.openMaildrop(ctx, r.user, r.canonical)
			}
			return s.login(r.user, r.password, mech.name)
		}
		s.w.WriteString("+ ")
		s.w.WriteString(base64.StdEncoding.EncodeToString(challenge))
		s.w.WriteString("\r\n")
		line, err := s.readLine(s.srv.limits.MaxAuthLine)
		if errors.Is(err, pop3.ErrLineTooLong) {
			return s.replyBad("authentication line too long")
		}
		if err != nil {
			return err
		}
		if string(line) == "*" {
			// RFC 5034 §4: the client cancels the exchange.
			return s.replyBad("authentication cancelled")
		}
		if resp, err = base64.StdEncoding.DecodeString(string(line)); err != nil {
			return s.replyBad("invalid base64 in authentication response")
		}
	}
}

// login checks credentials and opens the maildrop. mech names the way the
// credentials came, for the log: "USER" or the SASL mechanism.
func (s *session) login(user, pass, mech string) error {
	ctx, cancel := context.WithTimeout(context.Background(), backendTimeout)
	defer cancel()
	canonical, err := s.srv.Backend.Authenticate(ctx, s.connInfo(), user, pass)
	if errors.Is(err, ErrAuthFailed) {
		return s.authFailed(user, mech)
	}
	if err != nil {
		s.log.Error("authentication backend", "user", user, "err", err)
		return s.reply(false, pop3.CodeSysTemp, "authentication temporarily unavailable")
	}
	return s.openMaildrop(ctx, user, canonical)
}

func (s *session) connInfo() ConnInfo {
	conn := s.currentConn()
	return ConnInfo{RemoteAddr: conn.RemoteAddr(), LocalAddr: conn.LocalAddr(), TLS: s.tls}
}

// openMaildrop opens the maildrop of a user whose credentials have been
// verified, by the Backend (login) or by the mechanism (SCRAM). user is the
// name the client gave, canonical the Backend's.
func (s *session) openMaildrop(ctx context.Context, user, canonical string) error {
	// The password was right: whatever happens to the maildrop, this
	// address and user are not guessing.
	s.srv.penalties.succeed(s.ip, user, canonical)
	drop, err := s.srv.Backend.Open(ctx, canonical)
	if errors.Is(err, store.ErrInUse) {
		s.log.Info("maildrop in use", "user", canonical)
		return s.reply(false, pop3.CodeInUse, "mailbox locked by another session")
	}
	if err != nil {
		s.log.Error("opening maildrop", "user", canonical, "err", err)
		return s.reply(false, pop3.CodeSysTemp, "mailbox temporarily unavailable")
	}
	s.drop = drop
	s.msgs = drop.Messages()
	s.deleted = make([]bool, len(s.msgs))
	s.authUser = canonical
	s.state = stateTransaction
	s.srv.authenticated(s)
	n, size := s.totals()
	return s.ok("logged in, %d messages (%d octets)", n, size)
}

// authFailed answers a failed login after the failure penalty; every kind of
// failure comes through here so none can be told apart by text or timing:
// an unknown user is counted, delayed and logged exactly like a wrong
// password. user is the name the client gave ("" if none), mech how.
//
// The delay grows with the consecutive failures of this address and of this
// user from this address, whichever is larger (penalty.go): a guesser is
// slowed down, the same user logging in from elsewhere is not. The log line
// is the one fail2ban matches (see the package documentation); its format
// is a stable interface.
func (s *session) authFailed(user, mech string) error {
	n := s.srv.penalties.fail(s.ip, user, time.Now())
	d := penaltyDelay(s.srv.AuthFailureDelay, s.srv.AuthFailureDelayMax, n)
	s.log.Info("login failed", "remote_ip", s.ip.String(), "user", user, "mechanism", mech,
		"failures", n, "delay", d)
	if d > 0 {
		// Flush nothing first: the client learns nothing before the delay.
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-s.srv.done:
			t.Stop()
		}
	}
	// RFC 3206 §5 / RFC 2449 AUTH-RESP-CODE: [AUTH] means the credentials
	// were wrong, not the system.
	return s.reply(false, pop3.CodeAuth, "invalid user name or password")
}

func cmdSTLS(s *session, cmd pop3.Command, _ []byte) error {
	if s.tls != nil {
		return s.replyBad("TLS already active")
	}
	if s.srv.TLSConfig == nil {
		return s.replyBad("STLS not available")
	}
	if len(cmd.Args) != 0 {
		return s.replyBad("STLS takes no arguments")
	}
	s.ok("begin TLS negotiation")
	if err := s.w.Flush(); err != nil {
		return err
	}
	// Anything the client pipelined after STLS arrived in plaintext and
	// must not be executed inside the TLS session (RFC 2595 §4, the
	// STARTTLS command-injection class of bugs): drop it with the buffer.
	if n := s.r.Buffered(); n > 0 {
		s.log.Warn("discarding plaintext sent before TLS handshake", "bytes", n)
	}
	if err := s.handshake(min(s.srv.limits.HandshakeTimeout, time.Until(s.authDeadline()))); err != nil {
		s.log.Debug("STLS handshake failed", "err", err)
		return err
	}
	s.r.Reset(connReader{s})
	s.w.Reset(deadlineWriter{s})
	// RFC 2595 §4: the session starts over; forget what was said before.
	s.user = ""
	return nil
}
