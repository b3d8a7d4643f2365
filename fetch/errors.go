package fetch

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"syscall"

	"github.com/popbox/popbox/pop3"
	"github.com/popbox/popbox/pop3client"
)

// Kinds of failure. Every error Fetch reports wraps exactly one of these
// (test with errors.Is); the command line maps them to exit codes.
var (
	// ErrConfig: the account's configuration cannot work (no password, a
	// destination that cannot be opened, a CA file that does not parse).
	ErrConfig = errors.New("configuration error")
	// ErrNetwork: connecting failed, the connection broke, or the server
	// stopped answering within the timeout.
	ErrNetwork = errors.New("network error")
	// ErrTLS: the handshake failed, the certificate did not verify or did
	// not match the pinned fingerprint, or STLS was required and not offered.
	ErrTLS = errors.New("TLS error")
	// ErrAuth: the server refused the credentials, or no mechanism the
	// policy allows is available.
	ErrAuth = errors.New("authentication failed")
	// ErrProtocol: the server's replies do not follow POP3, or it refused a
	// command it must support (UIDL, RETR of a listed message).
	ErrProtocol = errors.New("protocol error")
	// ErrDelivery: the local destination failed to store a message.
	ErrDelivery = errors.New("local delivery failed")
	// ErrBusy: the mailbox is locked, on the server (-ERR [IN-USE],
	// RFC 2449 §8.1.2) or here by another popbox fetch of the same account.
	ErrBusy = errors.New("mailbox busy")
)

// Error is a failure of one account's fetch: which account, what step, and
// which kind (one of the Err* values above).
type Error struct {
	Account string
	Op      string // "connect", "tls", "login", "list", "retrieve", "deliver", ...
	Kind    error
	Err     error
}

// Error reads "ACCOUNT: KIND (OP): CAUSE", e.g. "home: TLS error (connect):
// server certificate fingerprint mismatch: ...".
func (e *Error) Error() string {
	s := e.Account + ": " + e.Kind.Error()
	if e.Op != "" {
		s += " (" + e.Op + ")"
	}
	return s + ": " + e.Err.Error()
}

// Unwrap exposes both the kind and the cause to errors.Is and errors.As.
func (e *Error) Unwrap() []error { return []error{e.Kind, e.Err} }

// isNetwork reports whether err means the connection itself failed, as
// opposed to the peer answering something unwelcome.
func isNetwork(err error) bool {
	var ne net.Error
	var oe *net.OpError
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, net.ErrClosed), errors.Is(err, os.ErrDeadlineExceeded),
		errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, syscall.ECONNREFUSED):
		return true
	case errors.As(err, &oe), errors.As(err, &ne):
		return true
	}
	return false
}

// isTLS reports whether err comes from the TLS layer: a handshake failure,
// an alert, or a certificate that does not verify.
func isTLS(err error) bool {
	var (
		ve  *tls.CertificateVerificationError
		rhe tls.RecordHeaderError
		ae  tls.AlertError
		ua  x509.UnknownAuthorityError
		he  x509.HostnameError
		ci  x509.CertificateInvalidError
		pe  *pinError
	)
	return errors.As(err, &ve) || errors.As(err, &rhe) || errors.As(err, &ae) ||
		errors.As(err, &ua) || errors.As(err, &he) || errors.As(err, &ci) || errors.As(err, &pe)
}

// classify picks the kind of an error from a POP3 exchange: what the
// transport says first (a broken connection is a network problem whatever
// command was running), then the server's response code, then fallback.
func classify(err error, fallback error) error {
	var pe *pop3client.Error
	switch {
	case isTLS(err):
		return ErrTLS
	case errors.As(err, &pe) && pe.Code == "IN-USE": // RFC 2449 §8.1.2
		return ErrBusy
	case errors.As(err, &pe) && pe.Code == "LOGIN-DELAY": // RFC 2449 §8.1.1
		return ErrBusy
	case errors.Is(err, pop3.ErrUnterminated), errors.Is(err, io.ErrUnexpectedEOF):
		// pop3client calls a body or listing cut short a protocol error,
		// but a reply only ends early when the connection does.
		return ErrNetwork
	case errors.Is(err, pop3client.ErrProtocol):
		return ErrProtocol
	case isNetwork(err):
		return ErrNetwork
	}
	return fallback
}
