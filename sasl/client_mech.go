package sasl

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	gosasl "github.com/emersion/go-sasl"
)

// Client is a client-side SASL mechanism; the same type as go-sasl's Client,
// so any go-sasl mechanism can be passed wherever one of ours can.
type Client = gosasl.Client

// Mechanism names as servers advertise them (RFC 4422 §3.1; the IANA SASL
// registry).
const (
	Plain           = "PLAIN"
	Login           = "LOGIN"
	OAuthBearer     = "OAUTHBEARER"
	XOAuth2         = "XOAUTH2"
	SCRAMSHA256     = "SCRAM-SHA-256"
	SCRAMSHA256Plus = "SCRAM-SHA-256-PLUS"
)

// ErrUnexpectedChallenge is returned by a mechanism's Next for a challenge
// the mechanism has no answer for: a challenge after the exchange should have
// ended, or one in the wrong place.
var ErrUnexpectedChallenge = gosasl.ErrUnexpectedServerChallenge

// FailureReporter is implemented by mechanisms whose server can explain a
// failure inside the exchange (OAUTHBEARER, XOAUTH2): after the server's
// failure reply, Failure returns the decoded explanation, or nil when the
// server sent none.
type FailureReporter interface {
	Failure() error
}

// MutualAuthenticator is implemented by mechanisms in which the server proves
// it knows the credentials (SCRAM). After the server's success reply the
// protocol client calls ServerVerified; an error means the server claimed
// success without that proof and must not be trusted.
type MutualAuthenticator interface {
	ServerVerified() error
}

// NewPlainClient returns a PLAIN client (RFC 4616). identity is the
// authorization identity, normally "" (act as username).
func NewPlainClient(identity, username, password string) Client {
	return &plainClient{gosasl.NewPlainClient(identity, username, password), identity, username, password}
}

type plainClient struct {
	Client
	identity, username, password string
}

// Start refuses credentials containing NUL: RFC 4616 §2 separates the fields
// with NUL, so one inside a field would shift the others.
func (c *plainClient) Start() (string, []byte, error) {
	if strings.ContainsRune(c.identity+c.username+c.password, 0) {
		return "", nil, errors.New("sasl: PLAIN credentials must not contain NUL")
	}
	return c.Client.Start()
}

// NewLoginClient returns a LOGIN client (draft-murchison-sasl-login-00). It
// sends no initial response and answers the first challenge with the user
// name and the second with the password, whatever their text: servers word
// them differently ("Username:", "User Name", empty), and the draft says the
// client must not depend on it.
func NewLoginClient(username, password string) Client {
	return &loginClient{username: username, password: password}
}

type loginClient struct {
	username, password string
	step               int
}

func (c *loginClient) Start() (string, []byte, error) {
	return Login, nil, nil
}

func (c *loginClient) Next(challenge []byte) ([]byte, error) {
	c.step++
	switch c.step {
	case 1:
		return []byte(c.username), nil
	case 2:
		return []byte(c.password), nil
	}
	return nil, ErrUnexpectedChallenge
}

// OAuthBearerOptions are the OAUTHBEARER parameters (RFC 7628 §3.1).
type OAuthBearerOptions = gosasl.OAuthBearerOptions

// OAuthBearerError is the server's JSON failure report (RFC 7628 §3.2.2).
type OAuthBearerError = gosasl.OAuthBearerError

// NewOAuthBearerClient returns an OAUTHBEARER client (RFC 7628). Unlike
// go-sasl's, it answers the server's error challenge with the single %x01
// that RFC 7628 §3.2.3 requires rather than failing, so the server ends the
// exchange with its failure reply; the decoded error is then available from
// Failure.
func NewOAuthBearerClient(opt *OAuthBearerOptions) Client {
	return &oauthBearerClient{opt: *opt}
}

type oauthBearerClient struct {
	opt     OAuthBearerOptions
	failure *OAuthBearerError
}

func (c *oauthBearerClient) Start() (string, []byte, error) {
	// RFC 7628 §3.1: kvpairs are separated by %x01, so none may appear
	// inside a value.
	if strings.ContainsAny(c.opt.Username+c.opt.Token+c.opt.Host, "\x01") {
		return "", nil, errors.New("sasl: OAUTHBEARER user name, host or token contains %x01")
	}
	// The gs2 header is "n,a=" saslname ","; RFC 5801 §4 escapes "," and
	// "=" in the name (go-sasl does not, which breaks such names).
	var b strings.Builder
	b.WriteString("n,")
	if c.opt.Username != "" {
		b.WriteString("a=")
		b.WriteString(strings.NewReplacer("=", "=3D", ",", "=2C").Replace(c.opt.Username))
	}
	b.WriteString(",")
	if c.opt.Host != "" {
		b.WriteString("\x01host=" + c.opt.Host)
	}
	if c.opt.Port != 0 {
		fmt.Fprintf(&b, "\x01port=%d", c.opt.Port)
	}
	b.WriteString("\x01auth=Bearer " + c.opt.Token + "\x01\x01")
	return OAuthBearer, []byte(b.String()), nil
}

func (c *oauthBearerClient) Next(challenge []byte) ([]byte, error) {
	if c.failure != nil {
		return nil, ErrUnexpectedChallenge
	}
	e := &OAuthBearerError{}
	if err := json.Unmarshal(challenge, e); err != nil {
		return nil, fmt.Errorf("sasl: OAUTHBEARER: server challenge is not a JSON error: %w", err)
	}
	c.failure = e
	return []byte{0x01}, nil
}

// Failure returns the server's error report, or nil if it sent none.
func (c *oauthBearerClient) Failure() error {
	if c.failure == nil {
		return nil
	}
	return c.failure
}

// XOAuth2Error is the JSON failure report of Google's XOAUTH2 mechanism.
type XOAuth2Error struct {
	Status  string `json:"status"`
	Schemes string `json:"schemes"`
	Scope   string `json:"scope"`
}

func (e *XOAuth2Error) Error() string {
	return fmt.Sprintf("sasl: XOAUTH2 authentication error (status %q)", e.Status)
}

// NewXOAUTH2Client returns a client for Google's XOAUTH2 mechanism
// (https://developers.google.com/gmail/imap/xoauth2-protocol). The initial
// response is "user=" user "\x01auth=Bearer " token "\x01\x01". On failure
// the server sends a base64 JSON error as a challenge; the client answers
// with an empty response, as the protocol requires, so that the server
// replies -ERR, and Failure returns the decoded error.
func NewXOAUTH2Client(username, token string) Client {
	return &xoauth2Client{username: username, token: token}
}

type xoauth2Client struct {
	username, token string
	failure         *XOAuth2Error
	challenged      bool
}

func (c *xoauth2Client) Start() (string, []byte, error) {
	if strings.ContainsRune(c.username+c.token, 0x01) {
		return "", nil, errors.New("sasl: XOAUTH2 user name or token contains %x01")
	}
	return XOAuth2, []byte("user=" + c.username + "\x01auth=Bearer " + c.token + "\x01\x01"), nil
}

func (c *xoauth2Client) Next(challenge []byte) ([]byte, error) {
	if c.challenged {
		return nil, ErrUnexpectedChallenge
	}
	c.challenged = true
	e := &XOAuth2Error{}
	// A challenge that is not JSON still means failure; keep its absence of
	// detail rather than refuse to answer and leave the exchange hanging.
	if json.Unmarshal(challenge, e) == nil {
		c.failure = e
	}
	return []byte{}, nil
}

// Failure returns the server's error report, or nil if it sent none.
func (c *xoauth2Client) Failure() error {
	if c.failure == nil {
		return nil
	}
	return c.failure
}
