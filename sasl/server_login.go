package sasl

import (
	"bytes"
	"errors"

	gosasl "github.com/emersion/go-sasl"
)

// Server is a server-side SASL mechanism; the same type as go-sasl's Server,
// so protocol servers built on go-sasl can drive ours.
type Server = gosasl.Server

// Challenges of the LOGIN mechanism: base64 "VXNlcm5hbWU6" and
// "UGFzc3dvcmQ6" on the wire, the exact strings Outlook and other clients
// expect even though draft-murchison-sasl-login-00 §2.1 says clients must
// not depend on them.
const (
	LoginUsernameChallenge = "Username:"
	LoginPasswordChallenge = "Password:"
)

// ErrMalformedResponse is returned by a server mechanism for a client
// response it cannot parse; the protocol server treats it as a failed login.
var ErrMalformedResponse = errors.New("sasl: malformed client response")

// LoginAuthenticator checks a LOGIN exchange's credentials once both have
// arrived. An error fails the exchange.
type LoginAuthenticator func(username, password string) error

// NewLoginServer returns a LOGIN server (draft-murchison-sasl-login-00). An
// initial response is taken as the user name (draft §2.1 allows it and
// Thunderbird sends one); otherwise the first challenge asks for it. LOGIN
// sends the password itself, so a protocol server must apply its plaintext
// policy to it as to PLAIN.
func NewLoginServer(auth LoginAuthenticator) Server {
	return &loginServer{auth: auth}
}

type loginServer struct {
	auth     LoginAuthenticator
	username string
	step     int // 0: nothing yet; 1: user name asked; 2: password asked; 3: done
}

func (s *loginServer) Next(response []byte) (challenge []byte, done bool, err error) {
	switch s.step {
	case 0:
		// nil is "no initial response" (go-sasl's convention); RFC 5034 §4's
		// "=" arrives as an empty, non-nil slice and is an empty user name.
		if response == nil {
			s.step = 1
			return []byte(LoginUsernameChallenge), false, nil
		}
		return s.gotUsername(response)
	case 1:
		return s.gotUsername(response)
	case 2:
		s.step = 3
		if err := checkLoginField(response); err != nil {
			return nil, false, err
		}
		if err := s.auth(s.username, string(response)); err != nil {
			return nil, false, err
		}
		return nil, true, nil
	}
	return nil, false, gosasl.ErrUnexpectedClientResponse
}

func (s *loginServer) gotUsername(response []byte) ([]byte, bool, error) {
	// Ask for the password even for an unusable name, so that the reply
	// does not tell which names the server would accept.
	s.step = 2
	if checkLoginField(response) == nil {
		s.username = string(response)
	}
	return []byte(LoginPasswordChallenge), false, nil
}

// checkLoginField refuses NUL: the draft carries the fields as raw octets,
// and NUL is in no valid user name or password (userdb refuses it), so it
// can only be an attempt to smuggle a separator into a later layer.
func checkLoginField(b []byte) error {
	if bytes.IndexByte(b, 0) >= 0 {
		return ErrMalformedResponse
	}
	return nil
}
