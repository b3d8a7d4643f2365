package sasl

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	gosasl "github.com/emersion/go-sasl"
)

// ErrOAuthInvalid is what an OAuthVerify returns (wrapped or not) for a
// token that does not authenticate anyone: expired, revoked, badly signed,
// for another audience. The exchange then fails as a wrong password does.
// Any other error from OAuthVerify is a system problem (OAuthServer.SysErr).
var ErrOAuthInvalid = errors.New("sasl: invalid OAuth token")

// OAuthVerify checks a bearer token. user is the name the client gave (the
// OAUTHBEARER authzid or the XOAUTH2 user=; "" if it gave none), for
// logging: the token alone decides who logs in. The result is the user the
// token was issued for. If the client named a user and the result differs
// (ignoring case), the exchange fails as an invalid token, so the result
// must be in the form clients name themselves (usually the address).
type OAuthVerify func(user, token string) (canonical string, err error)

// OAuthOption sets what an OAuthServer tells a client whose token failed.
type OAuthOption func(*OAuthServer)

// WithOAuthScope sets the "scope" of the error report (RFC 7628 §3.2.2):
// the scope a token needs here, so the client can ask for a new one.
func WithOAuthScope(scope string) OAuthOption {
	return func(s *OAuthServer) { s.scope = scope }
}

// WithOpenIDConfiguration sets the "openid-configuration" URL of the error
// report (RFC 7628 §3.2.2), from which a client discovers where to get a
// token.
func WithOpenIDConfiguration(url string) OAuthOption {
	return func(s *OAuthServer) { s.openIDConfig = url }
}

// maxOAuthResponse bounds a client response: tokens above 16 KiB are
// refused by the verifiers anyway, and the rest of the message is short.
// The protocol layer bounds its lines too; this keeps the mechanism safe
// on its own.
const maxOAuthResponse = 20 << 10

// maxOAuthUser bounds the user name a client gives (RFC 5321 §4.5.3.1.3's
// 256-octet path limit; no mailbox name is longer).
const maxOAuthUser = 256

// maxOAuthPairs bounds the key/value pairs of one message: RFC 7628 §3.1
// defines three, and unknown ones are only skipped.
const maxOAuthPairs = 16

// OAuthServer is the server side of OAUTHBEARER (RFC 7628) and of Google's
// XOAUTH2. Both carry a bearer token in a single client message, with or
// without initial response. If the token is refused, the server sends the
// JSON error report of RFC 7628 §3.2.2 as a challenge, waits for the
// client's dummy response, and only then fails, as both protocols require;
// if the verifier could not decide (a system error), it fails at once.
type OAuthServer struct {
	mech         string
	verify       OAuthVerify
	scope        string
	openIDConfig string

	step      oauthStep
	user      string // as the client gave it
	canonical string
	sysErr    error
	failure   error // why the token was refused, returned after the dummy response
}

var _ Server = (*OAuthServer)(nil)

type oauthStep int

const (
	oauthStart     oauthStep = iota // nothing received yet
	oauthWant                       // empty challenge sent, the message is due
	oauthErrorSent                  // error report sent, the dummy response is due
	oauthOver
)

// NewOAuthBearerServer returns an OAUTHBEARER server (RFC 7628 §3). The
// message is a GS2 header ("n,a=authzid," or "n,,") followed by %x01
// separated key/value pairs with "auth=Bearer <token>". "p=" in the GS2
// header is refused: the mechanism has no channel-binding variant. "y"
// (the client could bind, but the server offers no -PLUS mechanism) is
// true here and accepted, as RFC 5801 §5 has it.
func NewOAuthBearerServer(verify OAuthVerify, opts ...OAuthOption) *OAuthServer {
	return newOAuthServer(OAuthBearer, verify, opts)
}

// NewXOAuth2Server returns a server for Google's XOAUTH2
// (https://developers.google.com/gmail/imap/xoauth2-protocol), whose
// message is "user=<user>\x01auth=Bearer <token>\x01\x01". On failure the
// client answers the error report with an empty response; a %x01 (what an
// OAUTHBEARER client would send) is accepted too.
func NewXOAuth2Server(verify OAuthVerify, opts ...OAuthOption) *OAuthServer {
	return newOAuthServer(XOAuth2, verify, opts)
}

func newOAuthServer(mech string, verify OAuthVerify, opts []OAuthOption) *OAuthServer {
	s := &OAuthServer{mech: mech, verify: verify}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Next implements Server.
func (s *OAuthServer) Next(response []byte) (challenge []byte, done bool, err error) {
	switch s.step {
	case oauthStart:
		if response == nil {
			// RFC 4422 §5: a client-first mechanism without an initial
			// response gets an empty challenge.
			s.step = oauthWant
			return []byte{}, false, nil
		}
		return s.authenticate(response)
	case oauthWant:
		return s.authenticate(response)
	case oauthErrorSent:
		s.step = oauthOver
		// RFC 7628 §3.2.3: the client's only possible answer to the error
		// report is a lone %x01; XOAUTH2 clients send nothing.
		if string(response) == "\x01" || s.mech == XOAuth2 && len(response) == 0 {
			return nil, false, s.failure
		}
		return nil, false, fmt.Errorf("%w: %s: expected the dummy response to the error report", ErrMalformedResponse, s.mech)
	}
	return nil, false, gosasl.ErrUnexpectedClientResponse
}

func (s *OAuthServer) authenticate(response []byte) ([]byte, bool, error) {
	s.step = oauthOver
	if len(response) > maxOAuthResponse {
		return nil, false, fmt.Errorf("%w: %s message longer than %d bytes", ErrMalformedResponse, s.mech, maxOAuthResponse)
	}
	var user, token string
	var err error
	if s.mech == OAuthBearer {
		user, token, err = parseOAuthBearer(string(response))
	} else {
		user, token, err = parseXOAuth2(string(response))
	}
	if err != nil {
		return nil, false, err
	}
	s.user = user
	canonical, err := s.verify(user, token)
	switch {
	case err != nil && !errors.Is(err, ErrOAuthInvalid):
		s.sysErr = err
		return nil, false, err
	case err == nil && canonical == "":
		s.sysErr = fmt.Errorf("sasl: %s: verifier accepted the token but returned no user", s.mech)
		return nil, false, s.sysErr
	case err == nil && user != "" && !strings.EqualFold(user, canonical):
		// Proxy login (acting as another user) is not offered; a client
		// naming someone else's mailbox with its own token is refused like
		// a bad token.
		err = fmt.Errorf("%w: token was not issued to the user the client named", ErrOAuthInvalid)
	}
	if err != nil {
		s.failure = err
		s.step = oauthErrorSent
		return s.errorReport(), false, nil
	}
	s.canonical = canonical
	return nil, true, nil
}

// errorReport is the JSON error of RFC 7628 §3.2.2, which XOAUTH2 uses too.
func (s *OAuthServer) errorReport() []byte {
	b, err := json.Marshal(struct {
		Status       string `json:"status"`
		Schemes      string `json:"schemes"`
		Scope        string `json:"scope,omitempty"`
		OpenIDConfig string `json:"openid-configuration,omitempty"`
	}{"invalid_token", "bearer", s.scope, s.openIDConfig})
	if err != nil {
		panic(err) // strings only: cannot fail
	}
	return b
}

// Username is the user name the client gave ("" if none, or before the
// message), for logs; it is not authenticated.
func (s *OAuthServer) Username() string { return s.user }

// Canonical is the user the token authenticated, once Next reported done.
func (s *OAuthServer) Canonical() string { return s.canonical }

// SysErr is the verifier's error if it failed other than with
// ErrOAuthInvalid: a system problem (-ERR [SYS/TEMP]) rather than a bad
// token.
func (s *OAuthServer) SysErr() error { return s.sysErr }

// parseOAuthBearer parses an OAUTHBEARER client response (RFC 7628 §3.1):
//
//	client-resp = (gs2-header kvsep *kvpair kvsep) / kvsep
//	kvpair      = key "=" value kvsep
func parseOAuthBearer(msg string) (user, token string, err error) {
	bad := func(why string) (string, string, error) {
		return "", "", fmt.Errorf("%w: OAUTHBEARER: %s", ErrMalformedResponse, why)
	}
	// RFC 5801 §4: gs2-cb-flag "," [authzid] ",".
	switch {
	case strings.HasPrefix(msg, "n,"), strings.HasPrefix(msg, "y,"):
		msg = msg[2:]
	case strings.HasPrefix(msg, "p="):
		return bad("channel binding not supported")
	default:
		return bad("no GS2 header")
	}
	authz, rest, ok := strings.Cut(msg, ",")
	if !ok {
		return bad("GS2 header not terminated")
	}
	if authz != "" {
		name, ok := strings.CutPrefix(authz, "a=")
		if !ok {
			return bad("GS2 header: bad authzid")
		}
		if user, err = decodeSASLName(name); err != nil {
			return "", "", err
		}
	}
	kv, ok := strings.CutPrefix(rest, "\x01")
	if !ok {
		return bad("no separator after the GS2 header")
	}
	pairs, err := parseKVPairs(kv, false)
	if err != nil {
		return "", "", fmt.Errorf("%w: OAUTHBEARER: %w", ErrMalformedResponse, err)
	}
	// host and port (RFC 7628 §3.1) tell a virtual-hosting server which
	// name the client connected to; popbox has one set of users, so they
	// are only checked for syntax.
	auth, ok := pairs["auth"]
	if !ok {
		return bad("no auth")
	}
	if token, err = parseBearer(auth); err != nil {
		return "", "", fmt.Errorf("%w: OAUTHBEARER: %w", ErrMalformedResponse, err)
	}
	return user, token, nil
}

// parseXOAuth2 parses "user=" user "\x01auth=Bearer " token "\x01\x01".
func parseXOAuth2(msg string) (user, token string, err error) {
	pairs, err := parseKVPairs(msg, true)
	if err != nil {
		return "", "", fmt.Errorf("%w: XOAUTH2: %w", ErrMalformedResponse, err)
	}
	user, ok := pairs["user"]
	if !ok {
		return "", "", fmt.Errorf("%w: XOAUTH2: no user", ErrMalformedResponse)
	}
	if err := checkOAuthUser(user); err != nil {
		return "", "", err
	}
	auth, ok := pairs["auth"]
	if !ok {
		return "", "", fmt.Errorf("%w: XOAUTH2: no auth", ErrMalformedResponse)
	}
	if token, err = parseBearer(auth); err != nil {
		return "", "", fmt.Errorf("%w: XOAUTH2: %w", ErrMalformedResponse, err)
	}
	return user, token, nil
}

// parseKVPairs parses *kvpair kvsep (RFC 7628 §3.1), the part after the
// GS2 header and its separator:
//
//	kvpair = key "=" value kvsep
//	key    = 1*(ALPHA)
//	value  = *(VCHAR / SP / HTAB / CR / LF)
//
// Keys other than auth, host, port and user are skipped (RFC 7628 §3.1
// leaves room for extensions); a key given twice is refused, so that no
// two readers can take different values. utf8OK admits UTF-8 in values
// beyond the ABNF's ASCII, for XOAUTH2's user= of an internationalized
// address (RFC 6531).
func parseKVPairs(s string, utf8OK bool) (map[string]string, error) {
	pairs := map[string]string{}
	for n := 0; s != "\x01"; n++ {
		if n == maxOAuthPairs {
			return nil, errors.New("too many key/value pairs")
		}
		pair, rest, ok := strings.Cut(s, "\x01")
		if !ok {
			return nil, errors.New("message not terminated by %x01 %x01")
		}
		s = rest
		key, value, ok := strings.Cut(pair, "=")
		if !ok || key == "" || strings.ContainsFunc(key, func(r rune) bool { return r > unicode.MaxASCII || !unicode.IsLetter(r) }) {
			return nil, errors.New("bad key/value pair")
		}
		if !utf8.ValidString(value) || strings.ContainsFunc(value, func(r rune) bool {
			return r < 0x20 && r != '\t' && r != '\r' && r != '\n' || r == 0x7f || r > unicode.MaxASCII && !utf8OK
		}) {
			return nil, fmt.Errorf("bad character in the value of %q", key)
		}
		if _, dup := pairs[key]; dup {
			return nil, fmt.Errorf("key %q given twice", key)
		}
		switch key {
		case "auth", "host", "port", "user":
			pairs[key] = value
		default:
			pairs[key] = "" // remembered only to catch duplicates
		}
		if s == "" {
			return nil, errors.New("message not terminated by %x01 %x01")
		}
	}
	return pairs, nil
}

// parseBearer extracts the token from an auth value (RFC 7628 §3.1 refers
// to RFC 6750 §2.1): "Bearer" 1*SP b64token, the scheme name being
// case-insensitive (RFC 7235 §2.1).
func parseBearer(auth string) (string, error) {
	scheme, token, ok := strings.Cut(auth, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", errors.New("auth is not a Bearer credential")
	}
	token = strings.TrimLeft(token, " ")
	// b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
	body := strings.TrimRight(token, "=")
	if body == "" || strings.ContainsFunc(body, func(r rune) bool {
		return !('A' <= r && r <= 'Z' || 'a' <= r && r <= 'z' || '0' <= r && r <= '9' || strings.ContainsRune("-._~+/", r))
	}) {
		return "", errors.New("bearer token is not a b64token")
	}
	return token, nil
}

// decodeSASLName undoes RFC 5801 §4's escaping of the authzid: "," is sent
// as "=2C" and "=" as "=3D" (ABNF literals, so either case of the hex
// letters), and no other "=" may appear.
func decodeSASLName(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '=' {
			b.WriteByte(s[i])
			continue
		}
		switch esc := strings.ToUpper(s[i+1 : min(i+3, len(s))]); esc {
		case "2C":
			b.WriteByte(',')
		case "3D":
			b.WriteByte('=')
		default:
			return "", fmt.Errorf("%w: OAUTHBEARER: bad escape in authzid", ErrMalformedResponse)
		}
		i += 2
	}
	name := b.String()
	if name == "" {
		return "", fmt.Errorf("%w: OAUTHBEARER: empty authzid", ErrMalformedResponse)
	}
	return name, checkOAuthUser(name)
}

// checkOAuthUser refuses names no mailbox has and that would be dangerous
// in a log line or a later lookup: invalid UTF-8, control characters
// (NUL included), absurd lengths.
func checkOAuthUser(name string) error {
	if len(name) > maxOAuthUser || !utf8.ValidString(name) || strings.ContainsFunc(name, unicode.IsControl) {
		return fmt.Errorf("%w: unusable user name", ErrMalformedResponse)
	}
	return nil
}
