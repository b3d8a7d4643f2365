// Package tlsconf sets up TLS for the popbox server: a self-signed
// certificate made on first start when none is configured, a certificate pair
// that can be reloaded while the server runs, and the server's tls.Config.
//
// Implementation notes:
//
//   - The self-signed key is ECDSA P-256: every TLS 1.2 client supports it,
//     and signing is cheap, which matters when many clients poll at once. The
//     certificate lists localhost, 127.0.0.1, ::1 and the configured host
//     names, so that local clients can verify it by name once they trust it
//     (by pinning its fingerprint, which the server logs).
//   - Files are written key first, certificate second, each to a temporary
//     file that is fsynced, renamed into place, and followed by an fsync of
//     the directory. The certificate's presence therefore marks a complete
//     pair: after a crash there is no pair, a key alone (replaced at the next
//     start), or both. Never half a key.
//   - An existing pair is reused, whatever host names it lists: host names
//     can change at every start (containers), and a new certificate would
//     break every client that pinned the old one. Delete the files to get a
//     new one. The exception is a certificate that has expired or will within
//     30 days, since nobody else will renew a self-signed certificate.
//   - An existing pair that does not load is an error, not overwritten: it
//     may be an administrator's.
//   - Certificates keeps the current pair behind an atomic.Pointer, so
//     handshakes never wait on a lock, and Reload swaps the pair only after
//     the new one has loaded completely; on error the old pair stays.
//   - Certificate files are bounded (maxPEMSize) like any other input.
package tlsconf

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"
)

const (
	// validity of a generated certificate: about two years, under the 825
	// days some clients (Apple's) accept for a TLS server certificate.
	validity = 2 * 365 * 24 * time.Hour
	// renewBefore: a self-signed certificate this close to expiry is
	// replaced at the next start.
	renewBefore = 30 * 24 * time.Hour
	// backdate covers clients whose clocks run a little behind.
	backdate = time.Hour
	// maxPEMSize bounds a certificate or key file; real chains are a few KB.
	maxPEMSize = 1 << 20
)

var (
	// ErrInvalidHostname: a host name passed to EnsureSelfSigned that cannot
	// go into a certificate.
	ErrInvalidHostname = errors.New("tlsconf: invalid host name")
	// ErrTooLarge: a certificate or key file exceeds the size bound.
	ErrTooLarge = errors.New("tlsconf: file too large")
)

// EnsureSelfSigned makes dir/tls/cert.pem and dir/tls/key.pem if they are
// missing, and returns their paths and whether it created them. The key is
// ECDSA P-256 (mode 0600, directory 0700); the certificate is valid for about
// two years for localhost, 127.0.0.1, ::1 and hostnames (host names or IP
// addresses). An existing pair is reused unless it expires within 30 days.
func EnsureSelfSigned(dir string, hostnames []string) (certFile, keyFile string, created bool, err error) {
	tlsDir := filepath.Join(dir, "tls")
	certFile, keyFile = filepath.Join(tlsDir, "cert.pem"), filepath.Join(tlsDir, "key.pem")
	dnsNames, ips, err := subjectAltNames(hostnames)
	if err != nil {
		return "", "", false, err
	}
	if err := os.MkdirAll(tlsDir, 0o700); err != nil {
		return "", "", false, fmt.Errorf("tlsconf: %w", err)
	}
	removeStaleTemps(tlsDir)

	certOK, err := exists(certFile)
	if err != nil {
		return "", "", false, err
	}
	keyOK, err := exists(keyFile)
	if err != nil {
		return "", "", false, err
	}
	now := time.Now()
	if certOK && keyOK {
		l, err := load(certFile, keyFile)
		if err != nil {
			return "", "", false, fmt.Errorf("tlsconf: existing certificate: %w", err)
		}
		if l.cert.Leaf.NotAfter.Sub(now) > renewBefore {
			return certFile, keyFile, false, nil
		}
	}

	certPEM, keyPEM, err := generate(dnsNames, ips, now.Add(-backdate), now.Add(validity))
	if err != nil {
		return "", "", false, err
	}
	// Key first: a certificate on disk means its key is there too.
	if err := writeFileAtomic(keyFile, keyPEM, 0o600); err != nil {
		return "", "", false, err
	}
	if err := writeFileAtomic(certFile, certPEM, 0o644); err != nil {
		return "", "", false, err
	}
	return certFile, keyFile, true, nil
}

// subjectAltNames normalises hostnames (trimmed, lower case, without a
// trailing dot) and splits them into DNS names and IP addresses, after the
// names every local client uses. Duplicates and empty names are dropped.
func subjectAltNames(hostnames []string) ([]string, []net.IP, error) {
	dnsNames := []string{"localhost"}
	ips := []net.IP{net.IPv4(127, 0, 0, 1).To4(), net.IPv6loopback}
	seen := map[string]bool{"localhost": true, "127.0.0.1": true, "::1": true}
	for _, h := range hostnames {
		h = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(h)), ".")
		if h == "" {
			continue
		}
		if ip := net.ParseIP(h); ip != nil {
			if ip4 := ip.To4(); ip4 != nil {
				ip = ip4
			}
			if !seen[ip.String()] {
				seen[ip.String()] = true
				ips = append(ips, ip)
			}
			continue
		}
		if !validDNSName(h) {
			return nil, nil, fmt.Errorf("%w: %q", ErrInvalidHostname, h)
		}
		if !seen[h] {
			seen[h] = true
			dnsNames = append(dnsNames, h)
		}
	}
	return dnsNames, ips, nil
}

// validDNSName accepts what a dNSName SAN can carry (RFC 5280 §4.2.1.6:
// IA5String in "preferred name syntax"), leniently: letters, digits, '-',
// '_' (common in internal names), a leading "*." wildcard, non-empty labels.
func validDNSName(h string) bool {
	if len(h) > 253 {
		return false
	}
	for i, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		if i == 0 && label == "*" {
			continue
		}
		for _, c := range []byte(label) {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// generate makes a self-signed certificate and its key, both PEM.
func generate(dnsNames []string, ips []net.IP, notBefore, notAfter time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("tlsconf: generating key: %w", err)
	}
	// RFC 5280 §4.1.2.2: a positive serial of at most 20 octets, unique per
	// issuer; 128 random bits are unique without bookkeeping, and adding 1
	// keeps them positive.
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, nil, fmt.Errorf("tlsconf: serial number: %w", err)
	}
	cn := dnsNames[0]
	if len(dnsNames) > 1 {
		cn = dnsNames[1] // the configured name, more telling than localhost
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial.Add(serial, big.NewInt(1)),
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"popbox self-signed"}},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		// ECDSA keys sign; there is no key encipherment (RFC 5480 §3).
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              dnsNames,
		IPAddresses:           ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("tlsconf: creating certificate: %w", err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("tlsconf: encoding key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), nil
}

const tempPattern = ".tmp-*"

// writeFileAtomic replaces path with data so that a crash leaves either the
// old file or the whole new one: write a temporary file in the same
// directory, fsync it, rename it over path, fsync the directory so that the
// rename itself is durable.
func writeFileAtomic(path string, data []byte, perm fs.FileMode) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, filepath.Base(path)+tempPattern) // mode 0600 from the start
	if err != nil {
		return fmt.Errorf("tlsconf: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(perm); err != nil {
		return fmt.Errorf("tlsconf: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("tlsconf: writing %s: %w", f.Name(), err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("tlsconf: syncing %s: %w", f.Name(), err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("tlsconf: closing %s: %w", f.Name(), err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("tlsconf: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("tlsconf: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("tlsconf: syncing directory %s: %w", dir, err)
	}
	return nil
}

// removeStaleTemps deletes temporary files a crash left behind; one may hold
// a private key. Failure only leaves them, so it is not reported.
func removeStaleTemps(dir string) {
	for _, base := range []string{"cert.pem", "key.pem"} {
		matches, _ := filepath.Glob(filepath.Join(dir, base+tempPattern))
		for _, m := range matches {
			os.Remove(m)
		}
	}
}

func exists(path string) (bool, error) {
	_, err := os.Stat(path)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	}
	return false, fmt.Errorf("tlsconf: %w", err)
}

// Certificates holds certificates and keys loaded from files and reloads
// them on demand: a main pair and any number of others for other host
// names, among which the client's SNI chooses. It is safe for concurrent
// use.
type Certificates struct {
	pairs   []FilePair // the main pair first
	current atomic.Pointer[loadedSet]
}

// FilePair names a PEM certificate chain (leaf first) and its private key.
type FilePair struct{ CertFile, KeyFile string }

type loadedSet struct {
	certs       []*tls.Certificate // Leaf set; the main one first
	fingerprint string             // of the main one
}

type loaded struct {
	cert        *tls.Certificate // Leaf set
	fingerprint string
}

// LoadCertificates loads the PEM certificate chain in certFile (leaf first)
// and the matching PEM private key in keyFile, and the extra pairs.
func LoadCertificates(certFile, keyFile string, extra ...FilePair) (*Certificates, error) {
	c := &Certificates{pairs: append([]FilePair{{certFile, keyFile}}, extra...)}
	if err := c.Reload(); err != nil {
		return nil, err
	}
	return c, nil
}

// Reload reads the files again and, if all of them load, uses the new
// pairs for handshakes from then on (connections already made keep
// theirs). On error the previous pairs stay in use.
func (c *Certificates) Reload() error {
	set := &loadedSet{}
	for _, p := range c.pairs {
		l, err := load(p.CertFile, p.KeyFile)
		if err != nil {
			return fmt.Errorf("tlsconf: %w", err)
		}
		if set.certs == nil {
			set.fingerprint = l.fingerprint
		}
		set.certs = append(set.certs, l.cert)
	}
	c.current.Store(set)
	return nil
}

// GetCertificate picks the certificate for a handshake, for tls.Config:
// the first, main pair first, whose names cover the host name the client
// asked for (SNI, RFC 6066 §3) and whose key the client can use; the main
// one when none does, so that a client without SNI, or with a name this
// server does not have, still gets an answer (and its own verdict).
func (c *Certificates) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	certs := c.current.Load().certs
	if len(certs) > 1 && hello != nil {
		for _, cert := range certs {
			if hello.SupportsCertificate(cert) == nil {
				return cert, nil
			}
		}
	}
	return certs[0], nil
}

// Fingerprint is the SHA-256 of the current main leaf certificate's DER, as
// upper-case hex pairs joined by colons ("AB:CD:..."), the form openssl x509
// -fingerprint -sha256 prints, for clients that pin a self-signed
// certificate.
func (c *Certificates) Fingerprint() string {
	return c.current.Load().fingerprint
}

func load(certFile, keyFile string) (*loaded, error) {
	certPEM, err := readBounded(certFile)
	if err != nil {
		return nil, err
	}
	keyPEM, err := readBounded(keyFile)
	if err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("loading %s and %s: %w", certFile, keyFile, err)
	}
	if cert.Leaf == nil { // set by X509KeyPair since Go 1.23
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("parsing %s: %w", certFile, err)
		}
	}
	return &loaded{cert: &cert, fingerprint: fingerprint(cert.Certificate[0])}, nil
}

func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxPEMSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if len(data) > maxPEMSize {
		return nil, fmt.Errorf("%w: %s is over %d bytes", ErrTooLarge, path, maxPEMSize)
	}
	return data, nil
}

func fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	h := strings.ToUpper(hex.EncodeToString(sum[:]))
	var b bytes.Buffer
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(h[i : i+2])
	}
	return b.String()
}

// ServerConfig returns the TLS configuration for both POP3 listeners
// (implicit TLS and STLS), taking certificates from c.
func ServerConfig(c *Certificates) *tls.Config {
	return &tls.Config{
		// RFC 8314 §4.1: TLS 1.2 or later; older versions are broken.
		MinVersion: tls.VersionTLS12,
		// TLS 1.2 suites limited to ECDHE (forward secrecy) with AEAD
		// ciphers (RFC 7525 §4.2); ECDSA for the self-signed key, RSA for
		// administrators' certificates. Go ignores this list for TLS 1.3,
		// whose suites are all AEAD.
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
		GetCertificate: c.GetCertificate,
		// ALPN "pop3" (IANA ALPN registry): a client that offers only other
		// protocols is refused, which defeats cross-protocol attacks that
		// redirect, say, HTTPS to a POP3 port (ALPACA; RFC 7301 §3.2).
		NextProtos: []string{"pop3"},
	}
}

// RequestClientCerts makes cfg ask clients for a certificate and verify one
// if given against the CA certificates in caFile (PEM). A client without
// one still connects; one with a certificate from another CA fails the
// handshake.
func RequestClientCerts(cfg *tls.Config, caFile string) error {
	data, err := readBounded(caFile)
	if err != nil {
		return fmt.Errorf("tlsconf: client CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return fmt.Errorf("tlsconf: client CA file %s: no PEM certificate in it", caFile)
	}
	cfg.ClientCAs = pool
	cfg.ClientAuth = tls.VerifyClientCertIfGiven
	return nil
}

// ClientCertUser returns the mapping from a verified client certificate to
// a user name for SASL EXTERNAL: field "cn" takes the subject's common
// name, "email" the first e-mail address among the subject alternative
// names.
func ClientCertUser(field string) func(*x509.Certificate) (string, error) {
	return func(c *x509.Certificate) (string, error) {
		switch field {
		case "cn":
			if c.Subject.CommonName != "" {
				return c.Subject.CommonName, nil
			}
		case "email":
			if len(c.EmailAddresses) > 0 {
				return c.EmailAddresses[0], nil
			}
		default:
			return "", fmt.Errorf("tlsconf: unknown client certificate user field %q", field)
		}
		return "", fmt.Errorf("tlsconf: client certificate %q has no %s", c.Subject.String(), field)
	}
}
