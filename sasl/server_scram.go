package sasl

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/xdg-go/scram"
)

// SCRAMCredentials are what a server stores for SCRAM-SHA-256 instead of
// the password (RFC 5802 §3): salt, iteration count, StoredKey, ServerKey.
type SCRAMCredentials = scram.StoredCredentials

// DefaultSCRAMIterations is the iteration count for new SCRAM-SHA-256
// credentials: RFC 7677 §4's minimum. The fake credentials of unknown users
// use it too, so it must be what real users have or the count would tell
// the two apart.
const DefaultSCRAMIterations = 4096

// scramSaltLen is the length of new salts; RFC 5802 leaves it open, 16
// octets is what Dovecot and Cyrus use.
const scramSaltLen = 16

// ErrNoSCRAMCredentials is what a SCRAMLookup returns (wrapped or not) for a
// user it has no credentials for: an unknown user, or one whose credentials
// were never computed. The exchange then continues with fake credentials.
var ErrNoSCRAMCredentials = errors.New("sasl: no SCRAM credentials for user")

// SCRAMLookup returns the credentials of the user a SCRAM client names.
// ErrNoSCRAMCredentials means none; any other error aborts the exchange
// (SCRAMServer.LookupErr reports it).
type SCRAMLookup func(username string) (SCRAMCredentials, error)

// NewSCRAMSHA256Credentials computes SCRAM-SHA-256 credentials for password
// with a fresh random salt and iters iterations (DefaultSCRAMIterations
// when iters is 0). The password goes through SASLprep (RFC 5802 §2.2) as
// the client's does.
func NewSCRAMSHA256Credentials(password string, iters int) (SCRAMCredentials, error) {
	if iters == 0 {
		iters = DefaultSCRAMIterations
	}
	if iters < DefaultSCRAMIterations {
		return SCRAMCredentials{}, fmt.Errorf("sasl: SCRAM iteration count %d below RFC 7677's minimum %d", iters, DefaultSCRAMIterations)
	}
	salt := make([]byte, scramSaltLen)
	rand.Read(salt)
	c, err := scram.SHA256.NewClient("", password, "")
	if err != nil {
		return SCRAMCredentials{}, fmt.Errorf("sasl: SCRAM credentials: %w", err)
	}
	creds, err := c.GetStoredCredentialsWithError(scram.KeyFactors{Salt: string(salt), Iters: iters})
	if err != nil {
		return SCRAMCredentials{}, fmt.Errorf("sasl: SCRAM credentials: %w", err)
	}
	return creds, nil
}

// FormatSCRAMCredentials encodes credentials as Dovecot's SCRAM-SHA-256
// scheme does (without the "{SCRAM-SHA-256}" prefix): "iter,salt,
// StoredKey,ServerKey" with the binary fields in base64, so the same text
// can be imported from or exported to a Dovecot passdb.
func FormatSCRAMCredentials(c SCRAMCredentials) string {
	enc := base64.StdEncoding.EncodeToString
	return strconv.Itoa(c.Iters) + "," + enc([]byte(c.Salt)) + "," + enc(c.StoredKey) + "," + enc(c.ServerKey)
}

// ParseSCRAMCredentials decodes FormatSCRAMCredentials's text.
func ParseSCRAMCredentials(s string) (SCRAMCredentials, error) {
	f := strings.Split(s, ",")
	if len(f) != 4 {
		return SCRAMCredentials{}, errors.New("sasl: SCRAM credentials: want 4 comma-separated fields")
	}
	iters, err := strconv.Atoi(f[0])
	if err != nil || iters < 1 {
		return SCRAMCredentials{}, fmt.Errorf("sasl: SCRAM credentials: bad iteration count %q", f[0])
	}
	var b [3][]byte
	for i := range b {
		if b[i], err = base64.StdEncoding.DecodeString(f[i+1]); err != nil {
			return SCRAMCredentials{}, fmt.Errorf("sasl: SCRAM credentials: field %d: %w", i+2, err)
		}
	}
	if len(b[0]) == 0 || len(b[1]) != sha256.Size || len(b[2]) != sha256.Size {
		return SCRAMCredentials{}, errors.New("sasl: SCRAM credentials: bad salt or key length")
	}
	return SCRAMCredentials{
		KeyFactors: scram.KeyFactors{Salt: string(b[0]), Iters: iters},
		StoredKey:  b[1], ServerKey: b[2],
	}, nil
}

// SCRAMServer is the server side of SCRAM-SHA-256 and SCRAM-SHA-256-PLUS
// (RFC 5802, RFC 7677; the message parsing is xdg-go/scram's).
//
// Channel binding (RFC 5802 §6): SCRAM-SHA-256-PLUS requires the client's
// GS2 header to be "p=TYPE" and the binding data it proves to be the
// connection's own for that type (tls-exporter, RFC 9266, or
// tls-server-end-point, RFC 5929, whichever the client names). The plain
// mechanism refuses "p=" and, on a connection where -PLUS was offered, also
// "y": a client that supports binding but did not see -PLUS had the
// mechanism list stripped by someone in the middle.
//
// A user the lookup has no credentials for gets fake ones derived from
// fakeKey and the name (RFC 5802 §5.1): the same salt at every attempt and
// the same iteration count as real users, so the server-first message does
// not reveal whether the account exists, and the exchange fails at the
// proof exactly as a wrong password does.
type SCRAMServer struct {
	lookup    SCRAMLookup
	fakeKey   []byte
	opts      SCRAMServerOptions
	srv       *scram.Server
	conv      *scram.ServerConversation
	step      int // 0: want client-first; 1: want client-final; 2: want the empty last response; 3: over
	fake      bool
	username  string
	lookupErr error
	cbType    string
}

// SCRAMServerOptions configure channel binding for a SCRAMServer.
type SCRAMServerOptions struct {
	// Plus makes the server SCRAM-SHA-256-PLUS: channel binding required.
	Plus bool
	// ChannelBinding returns the connection's channel binding data of a
	// type (TLSExporter, TLSServerEndPoint), or an error for a type it
	// cannot provide. Set it on every TLS connection where -PLUS is
	// offered, for the plain mechanism too (see SCRAMServer); nil means
	// no TLS and no -PLUS.
	ChannelBinding func(cbType string) ([]byte, error)
}

// NewSCRAMSHA256Server returns a SCRAM-SHA-256 server for a connection
// where -PLUS is not offered. fakeKey is a secret of at least 32 octets
// that stays the same as long as possible (a restart changes the fake
// salts, which an observer could notice).
func NewSCRAMSHA256Server(lookup SCRAMLookup, fakeKey []byte) *SCRAMServer {
	return NewSCRAMServer(lookup, fakeKey, SCRAMServerOptions{})
}

// NewSCRAMServer returns a SCRAM-SHA-256 or, with opts.Plus,
// SCRAM-SHA-256-PLUS server; see NewSCRAMSHA256Server for fakeKey.
func NewSCRAMServer(lookup SCRAMLookup, fakeKey []byte, opts SCRAMServerOptions) *SCRAMServer {
	s := &SCRAMServer{lookup: lookup, fakeKey: fakeKey, opts: opts}
	srv, err := scram.SHA256.NewServer(s.credentials)
	if err != nil {
		// NewServer fails only for a nil hash function; SHA256 is not.
		panic(err)
	}
	s.srv = srv
	return s
}

// errChannelBinding: the GS2 header's channel binding flag does not fit
// the mechanism or the connection.
var errChannelBinding = errors.New("sasl: SCRAM: channel binding refused")

// startConversation reads the GS2 header's binding flag (RFC 5802 §7:
// gs2-cbind-flag = "p=" cb-name / "n" / "y") and begins a conversation that
// checks it against the mechanism and the connection.
func (s *SCRAMServer) startConversation(clientFirst []byte) error {
	flag, _, _ := strings.Cut(string(clientFirst), ",")
	cbName, isP := strings.CutPrefix(flag, "p=")
	switch {
	case s.opts.Plus && !isP:
		// RFC 5802 §6: -PLUS means the client binds.
		return fmt.Errorf("%w: %s without p=", errChannelBinding, SCRAMSHA256Plus)
	case !s.opts.Plus && isP:
		return fmt.Errorf("%w: p= with %s; use %s", errChannelBinding, SCRAMSHA256, SCRAMSHA256Plus)
	case isP:
		if s.opts.ChannelBinding == nil {
			return fmt.Errorf("%w: no TLS", errChannelBinding)
		}
		data, err := s.opts.ChannelBinding(cbName)
		if err != nil || len(data) == 0 {
			return fmt.Errorf("%w: type %.40q: %v", errChannelBinding, cbName, err)
		}
		s.cbType = cbName
		s.conv = s.srv.NewConversationWithChannelBindingRequired(scram.ChannelBinding{Type: scram.ChannelBindingType(cbName), Data: data})
	case s.opts.ChannelBinding != nil:
		// -PLUS was offered: xdg-go/scram refuses "y" as a downgrade when
		// the conversation has a binding, whose data is never used here
		// since "p=" was refused above.
		s.conv = s.srv.NewConversationWithChannelBinding(scram.ChannelBinding{Type: scram.ChannelBindingTLSExporter, Data: []byte{0}})
	default:
		s.conv = s.srv.NewConversation()
	}
	return nil
}

func (s *SCRAMServer) credentials(username string) (scram.StoredCredentials, error) {
	s.username = username
	c, err := s.lookup(username)
	if errors.Is(err, ErrNoSCRAMCredentials) {
		s.fake = true
		return fakeSCRAMCredentials(s.fakeKey, username), nil
	}
	if err != nil {
		s.lookupErr = err
		return scram.StoredCredentials{}, err
	}
	return c, nil
}

// fakeSCRAMCredentials derives credentials no password matches, the same
// for the same key and name.
func fakeSCRAMCredentials(key []byte, username string) SCRAMCredentials {
	derive := func(label string) []byte {
		m := hmac.New(sha256.New, key)
		m.Write([]byte(label))
		m.Write([]byte{0})
		m.Write([]byte(username))
		return m.Sum(nil)
	}
	return SCRAMCredentials{
		KeyFactors: scram.KeyFactors{Salt: string(derive("salt")[:scramSaltLen]), Iters: DefaultSCRAMIterations},
		StoredKey:  derive("stored-key"),
		ServerKey:  derive("server-key"),
	}
}

// Next implements Server. The server-final message ("v=...") goes out as a
// challenge, because POP3 has no additional data with success (RFC 5034
// §4); the client answers it with an empty response.
func (s *SCRAMServer) Next(response []byte) (challenge []byte, done bool, err error) {
	switch s.step {
	case 0:
		if response == nil {
			// RFC 4422 §5: SCRAM is client-first; without an initial
			// response the server sends an empty challenge.
			return []byte{}, false, nil
		}
		s.step = 3
		if err := s.startConversation(response); err != nil {
			return nil, false, err
		}
		out, err := s.conv.Step(string(response))
		if err != nil {
			return nil, false, fmt.Errorf("sasl: SCRAM client-first: %w", err)
		}
		// RFC 5802 §5.1: an authzid other than the user would be proxy
		// login, which is not offered.
		if a := s.conv.AuthzID(); a != "" && !strings.EqualFold(a, s.username) {
			return nil, false, errors.New("sasl: SCRAM: authorization identity differs from user")
		}
		s.step = 1
		return []byte(out), false, nil
	case 1:
		s.step = 3
		out, err := s.conv.Step(string(response))
		if err != nil {
			return nil, false, fmt.Errorf("sasl: SCRAM client-final: %w", err)
		}
		if !s.conv.Valid() {
			return nil, false, errors.New("sasl: SCRAM: proof not verified")
		}
		if s.fake {
			// Unreachable short of an HMAC collision; refuse regardless.
			return nil, false, errors.New("sasl: SCRAM: no credentials")
		}
		s.step = 2
		return []byte(out), false, nil
	case 2:
		s.step = 3
		if len(response) != 0 {
			return nil, false, ErrMalformedResponse
		}
		return nil, true, nil
	}
	return nil, false, ErrMalformedResponse
}

// Username is the user name from the client-first message ("" before it).
func (s *SCRAMServer) Username() string { return s.username }

// ChannelBindingType is the binding type the client used with -PLUS ("" for
// none).
func (s *SCRAMServer) ChannelBindingType() string { return s.cbType }

// LookupErr is the lookup's error other than ErrNoSCRAMCredentials, if it
// failed: a system problem rather than bad credentials.
func (s *SCRAMServer) LookupErr() error { return s.lookupErr }
