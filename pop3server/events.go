package pop3server

import (
	"maps"
	"slices"

	"github.com/emersion/go-sasl"

	popsasl "github.com/popbox/popbox/sasl"
)

// Events receives counts of what a Server does, for monitoring (package
// metrics implements it with Prometheus, so this package does not depend
// on it). Server.Events nil means nothing is reported.
//
// The methods are called from the accept loops and from every session's
// goroutine, concurrently, some of them once per command: they must be
// safe for concurrent use, cheap, and must never block, or they would slow
// down every client. All string arguments come from small fixed sets this
// package defines (never from what a client sent), so an implementation
// may use them as label values without bounding them itself.
type Events interface {
	// ConnAccepted: a connection on listener (ListenerPOP3 or
	// ListenerPOP3S) became a session.
	ConnAccepted(listener string)
	// ConnRefused: a connection on listener was told -ERR [SYS/TEMP] and
	// closed, for reason RefusedMaxConnections or RefusedPerAddress.
	ConnRefused(listener, reason string)
	// SessionStarted and SessionEnded bracket each session.
	SessionStarted()
	SessionEnded()
	// Login: a login with mechanism (one of LoginMechanisms) succeeded,
	// the maildrop being open, or failed for bad credentials. A login
	// refused for another reason (maildrop in use, LOGIN-DELAY, a backend
	// failure) is neither.
	Login(mechanism string, ok bool)
	// Command: a command was answered, +OK (ok) or -ERR. name is one of
	// CommandNames, or "" for a line that names no command.
	Command(name string, ok bool)
	// MessageSent: a RETR (top false) or TOP sent a message; n is the
	// wire size for RETR, the octets of the stored message sent for TOP.
	MessageSent(top bool, n int64)
	// MessagesDeleted: QUIT removed n messages (n > 0).
	MessagesDeleted(n int)
	// InUse: a login was refused with -ERR [IN-USE], another session
	// holding the maildrop.
	InUse()
}

// Listener names given to Events.
const (
	ListenerPOP3  = "pop3"  // Serve: plain POP3 with STLS
	ListenerPOP3S = "pop3s" // ServeTLS: implicit TLS
)

// Refusal reasons given to Events.ConnRefused.
const (
	// RefusedMaxConnections: the server has Limits.MaxConnections sessions.
	RefusedMaxConnections = "max_connections"
	// RefusedPerAddress: the remote address is at
	// Limits.MaxConnectionsPerIP or Limits.MaxUnauthenticatedPerIP.
	RefusedPerAddress = "per_address"
)

// CommandNames lists the commands the server knows, sorted: every name
// Events.Command can be given besides "".
func CommandNames() []string {
	return slices.Sorted(maps.Keys(commands))
}

// LoginMechanisms lists the mechanism names Events.Login can be given:
// "USER" for USER/PASS and every SASL mechanism the server implements,
// whether or not a given configuration offers it.
func LoginMechanisms() []string {
	return []string{"USER", sasl.Plain, popsasl.Login, popsasl.SCRAMSHA256, popsasl.SCRAMSHA256Plus,
		popsasl.OAuthBearer, popsasl.XOAuth2, popsasl.External}
}

func listenerName(implicitTLS bool) string {
	if implicitTLS {
		return ListenerPOP3S
	}
	return ListenerPOP3
}

func (s *Server) connRefused(implicitTLS bool, reason string) {
	if s.Events != nil {
		s.Events.ConnRefused(listenerName(implicitTLS), reason)
	}
}
