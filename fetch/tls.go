package fetch

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// maxCAFile bounds the CA bundle read from ca_file; system bundles are
// about 200 KB.
const maxCAFile = 4 << 20

// pinError is a certificate that does not match the pinned fingerprint.
type pinError struct {
	Want, Got string
	Subject   string
}

func (e *pinError) Error() string {
	return fmt.Sprintf("server certificate fingerprint mismatch: expected sha256:%s, server presented sha256:%s (subject %q)", e.Want, e.Got, e.Subject)
}

// verifyError is a certificate that does not verify against the roots;
// it says what was presented, so the user can compare or pin it.
type verifyError struct {
	Roots  string // "the system roots" or the CA file
	Name   string
	Leaf   *x509.Certificate
	Reason error
}

func (e *verifyError) Error() string {
	return fmt.Sprintf("server certificate for %q does not verify against %s: %v (presented: subject %q, issuer %q, sha256:%s)",
		e.Name, e.Roots, e.Reason, e.Leaf.Subject.String(), e.Leaf.Issuer.String(), Fingerprint(e.Leaf.Raw))
}

func (e *verifyError) Unwrap() error { return e.Reason }

// Fingerprint is the SHA-256 of a DER certificate as upper-case hex pairs
// joined by colons, the form the fingerprint key takes and popbox serve logs.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return formatFingerprint(sum[:])
}

// tlsConfig builds the client TLS configuration of the account.
//
// Verification is done in VerifyConnection rather than by crypto/tls so
// that a failure can name what the server presented (subject, issuer,
// fingerprint) beside what was expected. The rules:
//   - no fingerprint: the chain must verify against ca_file or the system
//     roots, for TLSServerName (or Server);
//   - fingerprint only: the leaf must have that SHA-256 and nothing else is
//     checked, as with mpop's --tls-fingerprint: a pin is how self-signed
//     servers are trusted;
//   - fingerprint and ca_file: both must hold.
func (a *Account) tlsConfig() (*tls.Config, error) {
	name := a.TLSServerName
	if name == "" {
		name = a.Server
	}
	var roots *x509.CertPool
	rootsName := "the system roots"
	if a.CAFile != "" {
		pem, err := readBounded(a.CAFile, maxCAFile)
		if err != nil {
			return nil, fmt.Errorf("%w: ca_file: %w", ErrConfig, err)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: ca_file %s holds no PEM certificate", ErrConfig, a.CAFile)
		}
		rootsName = a.CAFile
	}
	pin := a.Fingerprint
	checkChain := pin == "" || a.CAFile != ""
	return &tls.Config{
		ServerName: name,
		MinVersion: tls.VersionTLS12,
		// The checks below replace crypto/tls's own, which cannot say
		// what the server presented.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("server presented no certificate")
			}
			leaf := cs.PeerCertificates[0]
			if pin != "" {
				if got := Fingerprint(leaf.Raw); got != pin {
					return &pinError{Want: pin, Got: got, Subject: leaf.Subject.String()}
				}
			}
			if !checkChain {
				return nil
			}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			_, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: roots, Intermediates: inter})
			if err != nil {
				return &verifyError{Roots: rootsName, Name: name, Leaf: leaf, Reason: err}
			}
			return nil
		},
	}, nil
}

func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return b, nil
}

// tlsVersionName is for logs.
func tlsVersionName(v uint16) string {
	return strings.ReplaceAll(tls.VersionName(v), " ", "")
}
