package sasl

import (
	"bytes"
	"unicode"
	"unicode/utf8"
)

// External is the EXTERNAL mechanism's name (RFC 4422 Appendix A).
const External = "EXTERNAL"

// maxAuthzID bounds an EXTERNAL authorization identity; user names are far
// shorter.
const maxAuthzID = 255

// ExternalAuthenticator is told the authorization identity an EXTERNAL
// client asked for ("" for the identity its credentials establish) and
// decides; an error fails the exchange.
type ExternalAuthenticator func(authzid string) error

// NewExternalServer returns an EXTERNAL server (RFC 4422 Appendix A): the
// client's only message is an authorization identity, possibly empty, as
// the initial response or in answer to an empty challenge. The credentials
// themselves are outside SASL, for POP3 a TLS client certificate.
func NewExternalServer(auth ExternalAuthenticator) Server {
	return &externalServer{auth: auth}
}

type externalServer struct {
	auth ExternalAuthenticator
	step int // 0: nothing yet; 1: empty challenge sent; 2: done
}

func (s *externalServer) Next(response []byte) ([]byte, bool, error) {
	switch s.step {
	case 0:
		if response == nil {
			s.step = 1
			return []byte{}, false, nil
		}
	case 1:
	default:
		return nil, false, ErrMalformedResponse
	}
	s.step = 2
	// RFC 4422 Appendix A.1: the message is a UTF-8 authzid; NUL has no
	// place in one.
	// Control characters neither: no user name has them, and they would
	// only end up in logs.
	if len(response) > maxAuthzID || !utf8.Valid(response) || bytes.ContainsFunc(response, unicode.IsControl) {
		return nil, false, ErrMalformedResponse
	}
	if err := s.auth(string(response)); err != nil {
		return nil, false, err
	}
	return nil, true, nil
}
