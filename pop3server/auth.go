package pop3server

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
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

// Authorizer is a Backend that can log in a user whose identity something
// other than a password proved: an OAuth token (OAUTHBEARER, XOAUTH2) or a
// TLS client certificate (EXTERNAL). Authorize checks that the account
// exists and may log in and returns its canonical name; a user who may not
// wraps ErrAuthFailed. Those mechanisms are offered only to an Authorizer.
type Authorizer interface {
	Authorize(ctx context.Context, info ConnInfo, user string) (canonical string, err error)
}

// LoginRecorder is a Backend told of the logins the server decides itself,
// for the mechanisms that do not call Authenticate (SCRAM, OAUTHBEARER,
// XOAUTH2, EXTERNAL): user is the canonical name after a success and the
// name the client gave after a failure. The call is made before the reply;
// a recorder that writes slowly should do it in the background, or the
// timing of a failure would tell existing users from others.
type LoginRecorder interface {
	RecordLogin(ctx context.Context, info ConnInfo, user string, success bool)
}

// TokenVerifier checks an OAuth 2.0 bearer token (RFC 6750) and returns the
// user it was issued for. An invalid, expired or foreign token is an error
// wrapping ErrAuthFailed; any other error is a system problem.
type TokenVerifier interface {
	VerifyToken(ctx context.Context, token string) (user string, err error)
}

// mechanism is one SASL mechanism the AUTH command offers (RFC 5034); the
// table is built per session by mechanisms. Each exchange ends in a call to
// session.login or session.openMaildrop, or in an error.
type mechanism struct {
	name string
	// plaintext: the client sends a secret itself (a password or a bearer
	// token), so the mechanism is subject to the Plaintext policy like
	// USER/PASS.
	plaintext bool
	// start begins one exchange. The returned function reports its outcome
	// once the exchange is done or has failed.
	start func(s *session) (sasl.Server, func() authResult)
}

// authResult is what a finished exchange established. Mechanisms that carry
// the password (PLAIN, LOGIN) leave checking it to the Backend; the others
// verify a proof themselves and report the canonical user instead.
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

// mechanisms is what this session may use, in the order CAPA lists them.
func (s *session) mechanisms() []mechanism {
	mechs := []mechanism{{
		name:      sasl.Plain,
		plaintext: true,
		start: func(s *session) (sasl.Server, func() authResult) {
			var r authResult
			srv := sasl.NewPlainServer(func(identity, username, password string) error {
				r.user = username // for the log and the per-user penalty, even when refused
				// RFC 4616 §2: an authorization identity other than the
				// authentication identity would be proxy login, which
				// popbox does not offer.
				if identity != "" && !strings.EqualFold(identity, username) {
					return ErrAuthFailed
				}
				r.password = password
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
	if sb, ok := s.srv.Backend.(SCRAMBackend); ok {
		// SCRAM sends no password, only a proof, so it is offered without
		// TLS too. On TLS the -PLUS variant (RFC 7677, RFC 5802 §6) binds
		// the proof to the connection, so a man in the middle with a
		// certificate the client wrongly trusted cannot relay it.
		scramMech := func(name string, plus bool) mechanism {
			return mechanism{name: name, start: func(s *session) (sasl.Server, func() authResult) {
				var canonical string
				opts := popsasl.SCRAMServerOptions{Plus: plus}
				if s.tls != nil {
					opts.ChannelBinding = s.channelBinding
				}
				srv := popsasl.NewSCRAMServer(func(user string) (popsasl.SCRAMCredentials, error) {
					ctx, cancel := context.WithTimeout(context.Background(), backendTimeout)
					defer cancel()
					c, creds, err := sb.SCRAMCredentials(ctx, s.connInfo(name), user)
					if errors.Is(err, ErrAuthFailed) {
						return creds, fmt.Errorf("%w: %w", popsasl.ErrNoSCRAMCredentials, err)
					}
					canonical = c
					return creds, err
				}, s.srv.SCRAMSecret, opts)
				return srv, func() authResult {
					return authResult{user: srv.Username(), verified: true, canonical: canonical, sysErr: srv.LookupErr()}
				}
			}}
		}
		if s.tls != nil {
			mechs = append(mechs, scramMech(popsasl.SCRAMSHA256Plus, true))
		}
		mechs = append(mechs, scramMech(popsasl.SCRAMSHA256, false))
	}
	if az, ok := s.srv.Backend.(Authorizer); ok {
		if s.srv.TokenVerifier != nil {
			mechs = append(mechs, s.oauthMechanism(popsasl.OAuthBearer, az), s.oauthMechanism(popsasl.XOAuth2, az))
		}
		if s.srv.ClientCertUser != nil && s.tls != nil && len(s.tls.VerifiedChains) > 0 {
			mechs = append(mechs, s.externalMechanism(az))
		}
	}
	return mechs
}

// oauthMechanism is OAUTHBEARER (RFC 7628) or XOAUTH2: a bearer token the
// TokenVerifier checks, for an account the Authorizer allows. A token is as
// good as a password to whoever sees it, so the Plaintext policy applies.
func (s *session) oauthMechanism(name string, az Authorizer) mechanism {
	return mechanism{name: name, plaintext: true, start: func(s *session) (sasl.Server, func() authResult) {
		var tokenUser string
		verify := func(_, token string) (string, error) {
			ctx, cancel := context.WithTimeout(context.Background(), backendTimeout)
			defer cancel()
			user, err := s.srv.TokenVerifier.VerifyToken(ctx, token)
			if errors.Is(err, ErrAuthFailed) {
				return "", fmt.Errorf("%w: %w", popsasl.ErrOAuthInvalid, err)
			}
			if err != nil {
				return "", err
			}
			tokenUser = user
			canonical, err := az.Authorize(ctx, s.connInfo(name), user)
			if errors.Is(err, ErrAuthFailed) {
				return "", fmt.Errorf("%w: %w", popsasl.ErrOAuthInvalid, err)
			}
			return canonical, err
		}
		var srv *popsasl.OAuthServer
		if name == popsasl.OAuthBearer {
			srv = popsasl.NewOAuthBearerServer(verify)
		} else {
			srv = popsasl.NewXOAuth2Server(verify)
		}
		return srv, func() authResult {
			user := srv.Username()
			if user == "" {
				user = tokenUser
			}
			return authResult{user: user, verified: true, canonical: srv.Canonical(), sysErr: srv.SysErr()}
		}
	}}
}

// externalMechanism is EXTERNAL (RFC 4422 Appendix A) with the identity of
// the TLS client certificate, offered only when one was verified. The
// client's authorization identity, if any, must be that same user.
func (s *session) externalMechanism(az Authorizer) mechanism {
	return mechanism{name: popsasl.External, start: func(s *session) (sasl.Server, func() authResult) {
		var r authResult
		srv := popsasl.NewExternalServer(func(authzid string) error {
			cert := s.tls.VerifiedChains[0][0]
			user, err := s.srv.ClientCertUser(cert)
			r.user = authzid
			if err != nil || user == "" {
				return fmt.Errorf("%w: certificate %q maps to no user: %v", ErrAuthFailed, cert.Subject.String(), err)
			}
			if authzid != "" && !strings.EqualFold(authzid, user) {
				return fmt.Errorf("%w: certificate is %q's, not %q's", ErrAuthFailed, user, authzid)
			}
			r.user = user
			ctx, cancel := context.WithTimeout(context.Background(), backendTimeout)
			defer cancel()
			c, err := az.Authorize(ctx, s.connInfo(popsasl.External), user)
			if err != nil && !errors.Is(err, ErrAuthFailed) {
				r.sysErr = err
			}
			r.verified, r.canonical = err == nil, c
			return err
		})
		return srv, func() authResult { return r }
	}}
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
	return s.loopback
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
		for _, m := range s.mechanisms() {
			if !m.plaintext || allowed {
				sasl += " " + m.name
			}
		}
		if sasl != pop3.CapSASL {
			caps = append(caps, sasl)
		}
	}
	caps = append(caps, pop3.CapRespCodes, pop3.CapAuthRespCode, pop3.CapPipelining,
		// RFC 2449 §6.7: how long the server keeps mail.
		expireCap(s.srv.ExpireDays),
		// RFC 2449 §6.5: the minimum delay between logins, enforced
		// in openMaildrop.
		pop3.CapLoginDelay+" "+strconv.Itoa(int(s.srv.loginDelay().Seconds())),
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

func expireCap(days int) string {
	if days <= 0 {
		return pop3.CapExpire + " NEVER"
	}
	return pop3.CapExpire + " " + strconv.Itoa(days)
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
	mechs := s.mechanisms()
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
				s.log.Error("authentication backend", "user", r.user, "mechanism", mech.name, "err", r.sysErr)
				return s.reply(false, pop3.CodeSysTemp, "authentication temporarily unavailable")
			}
			return s.authFailed(r.user, mech.name)
		}
		if done {
			r := result()
			if r.verified && r.canonical == "" {
				return s.authFailed(r.user, mech.name) // a mechanism's bug; never log in as nobody
			}
			if r.verified {
				ctx, cancel := context.WithTimeout(context.Background(), backendTimeout)
				defer cancel()
				return s.openMaildrop(ctx, r.user, r.canonical, mech.name)
			}
			return s.login(r.user, r.password, mech.name)
		}
		s.w.WriteString("+ ")
		s.w.WriteString(base64.StdEncoding.EncodeToString(challenge))
		s.w.WriteString("\r\n")
		line, err := s.readLine(s.lim.MaxAuthLine)
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
		if string(line) == "=" {
			// RFC 5034 §4 defines "=" for an empty initial response only;
			// curl sends it as an empty continuation too, and it can mean
			// nothing else (it is not valid base64).
			line = nil
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
	canonical, err := s.srv.Backend.Authenticate(ctx, s.connInfo(mech), user, pass)
	if errors.Is(err, ErrAuthFailed) {
		return s.authFailed(user, mech)
	}
	if err != nil {
		s.log.Error("authentication backend", "user", user, "mechanism", mech, "err", err)
		return s.reply(false, pop3.CodeSysTemp, "authentication temporarily unavailable")
	}
	return s.openMaildrop(ctx, user, canonical, mech)
}

// connInfo describes this connection for a login with mechanism mech.
func (s *session) connInfo(mech string) ConnInfo {
	conn := s.currentConn()
	return ConnInfo{RemoteAddr: conn.RemoteAddr(), LocalAddr: conn.LocalAddr(), TLS: s.tls, Mechanism: mech}
}

// record tells a LoginRecorder Backend of a login's outcome.
func (s *session) record(user, mech string, success bool) {
	lr, ok := s.srv.Backend.(LoginRecorder)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), backendTimeout)
	defer cancel()
	lr.RecordLogin(ctx, s.connInfo(mech), user, success)
}

// openMaildrop opens the maildrop of a user whose credentials have been
// verified, by the Backend (login) or by the mechanism (SCRAM, ...). user is
// the name the client gave, canonical the Backend's, mech how.
func (s *session) openMaildrop(ctx context.Context, user, canonical, mech string) error {
	// The password was right: whatever happens to the maildrop, this
	// address and user are not guessing.
	s.srv.penalties.succeed(s.ip, user, canonical)
	if d := s.srv.loginDelay(); d > 0 {
		// RFC 2449 §6.5: a login too soon after the last one is refused
		// with [LOGIN-DELAY]. Only logins that opened the maildrop count,
		// so a client that polls too often gets in once the delay is over.
		last, err := s.srv.Backend.(LoginHistory).LastLogin(ctx, canonical)
		if err != nil {
			s.log.Error("reading last login", "user", canonical, "err", err)
			return s.reply(false, pop3.CodeSysTemp, "authentication temporarily unavailable")
		}
		if wait := d - time.Since(last); !last.IsZero() && wait > 0 {
			s.log.Info("login refused: too soon after the last", "remote_ip", s.ip.String(), "user", canonical,
				"mechanism", mech, "wait", wait.Round(time.Second))
			return s.reply(false, pop3.CodeLoginDelay, fmt.Sprintf("wait %d seconds between logins", int(d.Seconds())))
		}
	}
	drop, err := s.srv.Backend.Open(ctx, canonical)
	if errors.Is(err, store.ErrInUse) {
		s.log.Info("maildrop in use", "user", canonical)
		if ev := s.srv.Events; ev != nil {
			ev.InUse()
		}
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
	s.record(canonical, mech, true)
	if ev := s.srv.Events; ev != nil {
		ev.Login(mech, true)
	}
	tlsName := "none"
	if s.tls != nil {
		tlsName = tls.VersionName(s.tls.Version)
	}
	s.log.Info("login", "remote_ip", s.ip.String(), "user", canonical, "mechanism", mech, "tls", tlsName)
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
	s.record(user, mech, false)
	if ev := s.srv.Events; ev != nil {
		ev.Login(mech, false)
	}
	n := s.srv.penalties.fail(s.ip, user, time.Now())
	cur := s.srv.current()
	d := penaltyDelay(cur.authFailureDelay, cur.authFailureDelayMax, n)
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
	if err := s.handshake(min(s.lim.HandshakeTimeout, time.Until(s.authDeadline()))); err != nil {
		s.log.Debug("STLS handshake failed", "err", err)
		return err
	}
	s.r.Reset(connReader{s})
	s.w.Reset(deadlineWriter{s})
	// RFC 2595 §4: the session starts over; forget what was said before.
	s.user = ""
	return nil
}
