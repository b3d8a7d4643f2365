package sasl

import (
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"

	"github.com/xdg-go/scram"
)

// Channel binding types for SCRAM-SHA-256-PLUS.
const (
	// TLSExporter is RFC 9266's binding, keyed material exported from the
	// TLS session. It needs TLS 1.3, or TLS 1.2 with the extended master
	// secret (RFC 9266 §2), which Go enforces.
	TLSExporter = "tls-exporter"
	// TLSServerEndPoint is RFC 5929 §4's binding, a hash of the server's
	// certificate. It works on any TLS version but only proves which
	// certificate the server used, not which session.
	TLSServerEndPoint = "tls-server-end-point"
)

// MaxSCRAMIterations bounds the iteration count a server may ask for. The
// client runs PBKDF2 that many rounds before the server has proved anything,
// so an unbounded count lets a hostile server pin a CPU; ten million rounds
// of SHA-256 is a few seconds, well above any real server's setting
// (RFC 7677 §4 asks for at least 4096).
const MaxSCRAMIterations = 10_000_000

// ChannelBinding is the data that ties a SCRAM exchange to the TLS
// connection it runs on (RFC 5802 §6).
type ChannelBinding struct {
	Type string // TLSExporter or TLSServerEndPoint
	Data []byte
}

// ChannelBindingFromTLS computes the channel binding of type typ for a
// client's TLS connection. With typ "" it uses TLSExporter where the
// connection allows it and TLSServerEndPoint otherwise.
func ChannelBindingFromTLS(state tls.ConnectionState, typ string) (*ChannelBinding, error) {
	if !state.HandshakeComplete {
		return nil, errors.New("sasl: channel binding: TLS handshake not complete")
	}
	switch typ {
	case "":
		if cb, err := ChannelBindingFromTLS(state, TLSExporter); err == nil {
			return cb, nil
		}
		return ChannelBindingFromTLS(state, TLSServerEndPoint)
	case TLSExporter:
		cb, err := scram.NewTLSExporterBinding(&state)
		if err != nil {
			return nil, fmt.Errorf("sasl: channel binding %s: %w", typ, err)
		}
		return &ChannelBinding{Type: typ, Data: cb.Data}, nil
	case TLSServerEndPoint:
		cb, err := scram.NewTLSServerEndpointBinding(&state)
		if err != nil {
			// RFC 5929 §4.1: undefined for certificates signed without a
			// single hash function (Ed25519, for one).
			return nil, fmt.Errorf("sasl: channel binding %s: %w", typ, err)
		}
		return &ChannelBinding{Type: typ, Data: cb.Data}, nil
	}
	return nil, fmt.Errorf("sasl: unsupported channel binding type %q", typ)
}

// NewSCRAMSHA256Client returns a SCRAM-SHA-256 client (RFC 5802, RFC 7677),
// or SCRAM-SHA-256-PLUS bound to the TLS connection when cb is not nil. The
// user name and password are normalised with SASLprep (RFC 4013); a password
// SASLprep refuses makes Start fail. The server's final message is checked by
// Next, and ServerVerified tells whether that happened.
func NewSCRAMSHA256Client(username, password string, cb *ChannelBinding) Client {
	return &scramClient{username: username, password: password, cb: cb}
}

type scramClient struct {
	username, password string
	cb                 *ChannelBinding
	conv               *scram.ClientConversation
	step               int // challenges answered
}

func (c *scramClient) mechanism() string {
	if c.cb != nil {
		return SCRAMSHA256Plus
	}
	return SCRAMSHA256
}

func (c *scramClient) Start() (string, []byte, error) {
	mech := c.mechanism()
	if c.cb != nil && (c.cb.Type == "" || len(c.cb.Data) == 0) {
		return "", nil, fmt.Errorf("sasl: %s: empty channel binding", mech)
	}
	client, err := scram.SHA256.NewClient(c.username, c.password, "")
	if err != nil {
		// xdg-go/scram's message names no password characters.
		return "", nil, fmt.Errorf("sasl: %s: %w", mech, err)
	}
	if c.cb != nil {
		c.conv = client.NewConversationWithChannelBinding(scram.ChannelBinding{
			Type: scram.ChannelBindingType(c.cb.Type), Data: c.cb.Data})
	} else {
		c.conv = client.NewConversation()
	}
	c.step = 0
	first, err := c.conv.Step("")
	if err != nil {
		return "", nil, fmt.Errorf("sasl: %s: %w", mech, err)
	}
	return mech, []byte(first), nil
}

func (c *scramClient) Next(challenge []byte) ([]byte, error) {
	mech := c.mechanism()
	if c.conv == nil || c.conv.Done() {
		return nil, ErrUnexpectedChallenge
	}
	c.step++
	if c.step == 1 {
		if err := checkIterations(string(challenge)); err != nil {
			return nil, fmt.Errorf("sasl: %s: %w", mech, err)
		}
	}
	resp, err := c.conv.Step(string(challenge))
	if err != nil {
		return nil, fmt.Errorf("sasl: %s: %w", mech, err)
	}
	// After the server-final message the response is empty: RFC 5034 §4
	// (and RFC 4422 §3.6) turn "additional data with success" into a last
	// challenge that the client answers with an empty line.
	return []byte(resp), nil
}

// ServerVerified returns nil once the server's signature (RFC 5802 §3 "v=")
// has been received and checked.
func (c *scramClient) ServerVerified() error {
	if c.conv == nil || !c.conv.Valid() {
		return fmt.Errorf("sasl: %s: server reported success without proving it knows the password", c.mechanism())
	}
	return nil
}

// checkIterations refuses a server-first-message (RFC 5802 §7:
// "r=...,s=...,i=N") whose iteration count exceeds MaxSCRAMIterations.
// Malformed messages are left to the SCRAM library to reject.
func checkIterations(serverFirst string) error {
	for _, attr := range strings.Split(serverFirst, ",") {
		v, ok := strings.CutPrefix(attr, "i=")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return nil
		}
		if n > MaxSCRAMIterations {
			return fmt.Errorf("server asks for %d iterations, more than the %d allowed", n, MaxSCRAMIterations)
		}
	}
	return nil
}

// ServerEndPointHash is the tls-server-end-point channel binding data of a
// DER certificate (RFC 5929 §4.1): its hash with the hash function of its
// signature algorithm, SHA-256 in place of MD5 and SHA-1. It is undefined
// for algorithms without one hash function, such as Ed25519.
func ServerEndPointHash(der []byte) ([]byte, error) {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("sasl: channel binding %s: %w", TLSServerEndPoint, err)
	}
	var h hash.Hash
	switch cert.SignatureAlgorithm {
	case x509.MD5WithRSA, x509.SHA1WithRSA, x509.ECDSAWithSHA1, x509.DSAWithSHA1,
		x509.SHA256WithRSA, x509.SHA256WithRSAPSS, x509.ECDSAWithSHA256:
		h = sha256.New()
	case x509.SHA384WithRSA, x509.SHA384WithRSAPSS, x509.ECDSAWithSHA384:
		h = sha512.New384()
	case x509.SHA512WithRSA, x509.SHA512WithRSAPSS, x509.ECDSAWithSHA512:
		h = sha512.New()
	default:
		return nil, fmt.Errorf("sasl: channel binding %s undefined for %v certificates", TLSServerEndPoint, cert.SignatureAlgorithm)
	}
	h.Write(der)
	return h.Sum(nil), nil
}
