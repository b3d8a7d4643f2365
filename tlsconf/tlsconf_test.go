package tlsconf

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func readLeaf(t *testing.T, certFile string) *x509.Certificate {
	t.Helper()
	l, err := load(certFile, strings.TrimSuffix(certFile, "cert.pem")+"key.pem")
	if err != nil {
		t.Fatal(err)
	}
	return l.cert.Leaf
}

func TestEnsureSelfSigned(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, created, err := EnsureSelfSigned(dir, []string{"Mail.Example.ORG.", "192.0.2.7", "localhost", "", "2001:db8::1"})
	if err != nil {
		t.Fatal(err)
	}
	if !created {
		t.Error("created = false on first call")
	}
	if want := filepath.Join(dir, "tls", "cert.pem"); certFile != want {
		t.Errorf("certFile = %s, want %s", certFile, want)
	}
	if want := filepath.Join(dir, "tls", "key.pem"); keyFile != want {
		t.Errorf("keyFile = %s, want %s", keyFile, want)
	}

	for _, p := range []struct {
		path string
		want fs.FileMode
	}{{filepath.Join(dir, "tls"), 0o700 | fs.ModeDir}, {keyFile, 0o600}, {certFile, 0o644}} {
		fi, err := os.Stat(p.path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != p.want {
			t.Errorf("%s: mode %v, want %v", p.path, fi.Mode(), p.want)
		}
	}

	leaf := readLeaf(t, certFile)
	var ips []string
	for _, ip := range leaf.IPAddresses {
		ips = append(ips, ip.String())
	}
	if diff := cmp.Diff([]string{"localhost", "mail.example.org"}, leaf.DNSNames); diff != "" {
		t.Errorf("DNS names (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"127.0.0.1", "::1", "192.0.2.7", "2001:db8::1"}, ips); diff != "" {
		t.Errorf("IP addresses (-want +got):\n%s", diff)
	}
	if pub, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		t.Errorf("public key %T, want ECDSA P-256", leaf.PublicKey)
	}
	if life := leaf.NotAfter.Sub(leaf.NotBefore); life < 729*24*time.Hour || life > 732*24*time.Hour {
		t.Errorf("validity %v, want about two years", life)
	}
	if time.Now().Before(leaf.NotBefore) || leaf.SerialNumber.Sign() <= 0 || leaf.Subject.CommonName != "mail.example.org" {
		t.Errorf("NotBefore %v, serial %v, CN %q", leaf.NotBefore, leaf.SerialNumber, leaf.Subject.CommonName)
	}
	entries, err := os.ReadDir(filepath.Join(dir, "tls"))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Errorf("tls dir holds %d entries, want cert.pem and key.pem only", len(entries))
	}

	// Second call: same files, untouched, whatever the host names.
	first, err := LoadCertificates(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	c2, k2, created, err := EnsureSelfSigned(dir, []string{"other.example"})
	if err != nil || created || c2 != certFile || k2 != keyFile {
		t.Fatalf("second call = %s, %s, %v, %v; want the same files, not created", c2, k2, created, err)
	}
	second, err := LoadCertificates(c2, k2)
	if err != nil {
		t.Fatal(err)
	}
	if first.Fingerprint() != second.Fingerprint() {
		t.Errorf("fingerprint changed on reuse: %s -> %s", first.Fingerprint(), second.Fingerprint())
	}
}

func TestEnsureSelfSignedRegenerates(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(t *testing.T, tlsDir string) // after a first EnsureSelfSigned
	}{
		{"key without certificate (crash between renames)", func(t *testing.T, tlsDir string) {
			remove(t, filepath.Join(tlsDir, "cert.pem"))
		}},
		{"certificate without key", func(t *testing.T, tlsDir string) {
			remove(t, filepath.Join(tlsDir, "key.pem"))
		}},
		{"expired", func(t *testing.T, tlsDir string) {
			writeGenerated(t, tlsDir, time.Now().Add(-3*365*24*time.Hour), time.Now().Add(-time.Hour))
		}},
		{"expires within 30 days", func(t *testing.T, tlsDir string) {
			writeGenerated(t, tlsDir, time.Now().Add(-time.Hour), time.Now().Add(29*24*time.Hour))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			certFile, keyFile, _, err := EnsureSelfSigned(dir, nil)
			if err != nil {
				t.Fatal(err)
			}
			before := fingerprintOf(t, certFile)
			tt.prepare(t, filepath.Join(dir, "tls"))
			// A temporary file left by a crash is cleaned up.
			stale := filepath.Join(dir, "tls", "key.pem.tmp-123")
			if err := os.WriteFile(stale, []byte("half a key"), 0o600); err != nil {
				t.Fatal(err)
			}

			_, _, created, err := EnsureSelfSigned(dir, nil)
			if err != nil || !created {
				t.Fatalf("EnsureSelfSigned = created %v, %v; want a new pair", created, err)
			}
			if _, err := LoadCertificates(certFile, keyFile); err != nil {
				t.Fatalf("new pair does not load: %v", err)
			}
			if fingerprintOf(t, certFile) == before {
				t.Error("certificate not replaced")
			}
			if time.Until(readLeaf(t, certFile).NotAfter) < 700*24*time.Hour {
				t.Error("new certificate is not valid for about two years")
			}
			if _, err := os.Stat(stale); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("stale temporary file: %v", err)
			}
		})
	}
}

func TestEnsureSelfSignedErrors(t *testing.T) {
	t.Run("invalid host name", func(t *testing.T) {
		for _, h := range []string{"a b", "bad/name", "x..y", "ünicode.example", strings.Repeat("a", 64) + ".example"} {
			if _, _, _, err := EnsureSelfSigned(t.TempDir(), []string{h}); !errors.Is(err, ErrInvalidHostname) {
				t.Errorf("host name %q: err = %v, want ErrInvalidHostname", h, err)
			}
		}
		if _, _, _, err := EnsureSelfSigned(t.TempDir(), []string{"*.example.org", "mail_1.lan"}); err != nil {
			t.Errorf("wildcard and underscore: %v", err)
		}
	})
	t.Run("existing pair that does not load is kept", func(t *testing.T) {
		dir := t.TempDir()
		_, keyFile, _, err := EnsureSelfSigned(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(keyFile, []byte("not a key"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, _, _, err := EnsureSelfSigned(dir, nil); err == nil {
			t.Error("EnsureSelfSigned replaced or accepted a broken pair")
		}
		if data, _ := os.ReadFile(keyFile); string(data) != "not a key" {
			t.Error("broken key file was overwritten")
		}
	})
}

func remove(t *testing.T, path string) {
	t.Helper()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
}

// writeGenerated writes a pair valid from notBefore to notAfter into tlsDir.
func writeGenerated(t *testing.T, tlsDir string, notBefore, notAfter time.Time) {
	t.Helper()
	dnsNames, ips, err := subjectAltNames(nil)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := generate(dnsNames, ips, notBefore, notAfter)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tlsDir, "key.pem"), keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tlsDir, "cert.pem"), certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
}

func fingerprintOf(t *testing.T, certFile string) string {
	t.Helper()
	return fingerprint(readLeaf(t, certFile).Raw)
}

// handshake connects a client with cfg to a server with ServerConfig(certs)
// over loopback TCP (net.Pipe would deadlock on TLS 1.3 session tickets,
// which the server writes while the client is not reading). The server sends
// one line after its handshake so that the client sees a working
// connection. It returns the client's view and both errors.
func handshake(t *testing.T, certs *Certificates, cfg *tls.Config) (tls.ConnectionState, error, error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	serverErr := make(chan error, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			serverErr <- err
			return
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		tc := tls.Server(conn, ServerConfig(certs))
		if err := tc.Handshake(); err != nil {
			serverErr <- err
			return
		}
		_, err = tc.Write([]byte("+OK ready\r\n"))
		serverErr <- err
	}()

	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	tc := tls.Client(conn, cfg)
	clientErr := tc.Handshake()
	if clientErr == nil {
		line, err := bufio.NewReader(tc).ReadString('\n')
		if err == nil && line != "+OK ready\r\n" {
			err = fmt.Errorf("read %q", line)
		}
		clientErr = err
	}
	if clientErr != nil {
		conn.Close() // unblock a server still waiting for us
	}
	return tc.ConnectionState(), <-serverErr, clientErr
}

// selfSigned makes a pair in a temporary directory and loads it.
func selfSigned(t *testing.T) (*Certificates, *x509.CertPool, string, string) {
	t.Helper()
	certFile, keyFile, _, err := EnsureSelfSigned(t.TempDir(), []string{"mail.example.org"})
	if err != nil {
		t.Fatal(err)
	}
	certs, err := LoadCertificates(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(readLeaf(t, certFile))
	return certs, pool, certFile, keyFile
}

func TestHandshake(t *testing.T) {
	certs, pool, _, _ := selfSigned(t)
	tests := []struct {
		name      string
		cfg       *tls.Config
		wantErr   bool
		version   uint16
		protocol  string
		errSubstr string // expected in the server's error
	}{
		{name: "localhost", cfg: &tls.Config{ServerName: "localhost"}, version: tls.VersionTLS13},
		{name: "127.0.0.1", cfg: &tls.Config{ServerName: "127.0.0.1"}, version: tls.VersionTLS13},
		{name: "::1", cfg: &tls.Config{ServerName: "::1"}, version: tls.VersionTLS13},
		{name: "configured host name", cfg: &tls.Config{ServerName: "mail.example.org"}, version: tls.VersionTLS13},
		{name: "ALPN pop3", cfg: &tls.Config{ServerName: "localhost", NextProtos: []string{"pop3"}}, version: tls.VersionTLS13, protocol: "pop3"},
		{name: "TLS 1.2 AEAD", cfg: &tls.Config{ServerName: "localhost", MaxVersion: tls.VersionTLS12}, version: tls.VersionTLS12},
		{name: "TLS 1.2 ChaCha20-Poly1305", cfg: &tls.Config{
			ServerName: "localhost", MaxVersion: tls.VersionTLS12,
			CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256},
		}, version: tls.VersionTLS12},
		{name: "unknown name", cfg: &tls.Config{ServerName: "other.example"}, wantErr: true},
		{name: "TLS 1.1 refused", cfg: &tls.Config{
			ServerName: "localhost", MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11,
		}, wantErr: true, errSubstr: "unsupported versions"},
		{name: "TLS 1.2 CBC refused", cfg: &tls.Config{
			ServerName: "localhost", MaxVersion: tls.VersionTLS12,
			CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256},
		}, wantErr: true, errSubstr: "no cipher suite"},
		{name: "other ALPN protocol refused", cfg: &tls.Config{ServerName: "localhost", NextProtos: []string{"imap"}},
			wantErr: true, errSubstr: "application protocol"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg.Clone()
			cfg.RootCAs = pool
			state, serverErr, clientErr := handshake(t, certs, cfg)
			if tt.wantErr {
				if clientErr == nil {
					t.Fatal("handshake succeeded")
				}
				if tt.errSubstr != "" && (serverErr == nil || !strings.Contains(serverErr.Error(), tt.errSubstr)) {
					t.Errorf("server error %v, want one containing %q", serverErr, tt.errSubstr)
				}
				return
			}
			if serverErr != nil || clientErr != nil {
				t.Fatalf("server: %v; client: %v", serverErr, clientErr)
			}
			if state.Version != tt.version || state.NegotiatedProtocol != tt.protocol {
				t.Errorf("version %x, ALPN %q; want %x, %q", state.Version, state.NegotiatedProtocol, tt.version, tt.protocol)
			}
			if got := fingerprint(state.PeerCertificates[0].Raw); got != certs.Fingerprint() {
				t.Errorf("peer fingerprint %s, want %s", got, certs.Fingerprint())
			}
		})
	}
}

func TestFingerprint(t *testing.T) {
	certs, _, certFile, _ := selfSigned(t)
	got := certs.Fingerprint()
	if !regexp.MustCompile(`^[0-9A-F]{2}(:[0-9A-F]{2}){31}$`).MatchString(got) {
		t.Errorf("Fingerprint() = %q, want 32 upper-case hex pairs joined by ':'", got)
	}
	sum := sha256.Sum256(readLeaf(t, certFile).Raw)
	if want := strings.ToUpper(strings.Join(regexp.MustCompile("..").FindAllString(fmt.Sprintf("%x", sum), -1), ":")); got != want {
		t.Errorf("Fingerprint() = %s, want %s", got, want)
	}
	if got := fingerprint([]byte("abc")); got != "BA:78:16:BF:8F:01:CF:EA:41:41:40:DE:5D:AE:22:23:B0:03:61:A3:96:17:7A:9C:B4:10:FF:61:F2:00:15:AD" {
		t.Errorf("fingerprint(abc) = %s", got) // SHA-256 test vector, FIPS 180-2 B.1
	}
}

func TestReload(t *testing.T) {
	certs, pool, certFile, keyFile := selfSigned(t)
	other, _, otherCert, otherKey := selfSigned(t)
	oldFP, newFP := certs.Fingerprint(), other.Fingerprint()
	if oldFP == newFP {
		t.Fatal("two generated certificates share a fingerprint")
	}
	both := pool.Clone()
	both.AppendCertsFromPEM(mustRead(t, otherCert))
	seen := func() string {
		t.Helper()
		state, serverErr, clientErr := handshake(t, certs, &tls.Config{ServerName: "localhost", RootCAs: both})
		if serverErr != nil || clientErr != nil {
			t.Fatalf("server: %v; client: %v", serverErr, clientErr)
		}
		return fingerprint(state.PeerCertificates[0].Raw)
	}
	if got := seen(); got != oldFP {
		t.Fatalf("before reload: peer %s, want %s", got, oldFP)
	}

	copyFile(t, otherKey, keyFile)
	copyFile(t, otherCert, certFile)
	if err := certs.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := certs.Fingerprint(); got != newFP {
		t.Errorf("Fingerprint after reload = %s, want %s", got, newFP)
	}
	if got := seen(); got != newFP {
		t.Errorf("after reload: peer %s, want %s", got, newFP)
	}

	// A broken file, a missing file, or a key that does not match: Reload
	// fails and the pair in use stays.
	mismatchDir := t.TempDir()
	writeGenerated(t, mismatchDir, time.Now(), time.Now().Add(time.Hour))
	broken := []struct {
		name  string
		apply func()
	}{
		{"garbage key", func() { writeFile(t, keyFile, []byte("garbage")) }},
		{"mismatched key", func() { copyFile(t, filepath.Join(mismatchDir, "key.pem"), keyFile) }},
		{"missing certificate", func() { remove(t, certFile) }},
		{"oversized certificate", func() { writeFile(t, certFile, make([]byte, maxPEMSize+1)) }},
	}
	for _, b := range broken {
		copyFile(t, otherKey, keyFile)
		copyFile(t, otherCert, certFile)
		b.apply()
		if err := certs.Reload(); err == nil {
			t.Errorf("%s: Reload succeeded", b.name)
		}
		if got := certs.Fingerprint(); got != newFP {
			t.Errorf("%s: Fingerprint = %s, want the previous %s", b.name, got, newFP)
		}
		if got := seen(); got != newFP {
			t.Errorf("%s: peer %s, want the previous %s", b.name, got, newFP)
		}
	}
}

func TestReloadOversizedIsErrTooLarge(t *testing.T) {
	_, _, certFile, keyFile := selfSigned(t)
	writeFile(t, certFile, make([]byte, maxPEMSize+1))
	if _, err := LoadCertificates(certFile, keyFile); !errors.Is(err, ErrTooLarge) {
		t.Errorf("LoadCertificates = %v, want ErrTooLarge", err)
	}
	if _, err := LoadCertificates(filepath.Join(t.TempDir(), "none.pem"), keyFile); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("LoadCertificates(missing) = %v, want fs.ErrNotExist", err)
	}
}

func TestConcurrentReload(t *testing.T) {
	certs, _, _, _ := selfSigned(t)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				c, err := certs.GetCertificate(&tls.ClientHelloInfo{})
				if err != nil || c == nil || certs.Fingerprint() == "" {
					t.Error("GetCertificate or Fingerprint failed during reload")
					return
				}
			}
		}()
	}
	for range 50 {
		if err := certs.Reload(); err != nil {
			t.Error(err)
			break
		}
	}
	close(stop)
	wg.Wait()
}

func TestServerConfig(t *testing.T) {
	certs, _, _, _ := selfSigned(t)
	cfg := ServerConfig(certs)
	if cfg.MinVersion != tls.VersionTLS12 {
		t.Errorf("MinVersion = %x", cfg.MinVersion)
	}
	if diff := cmp.Diff([]string{"pop3"}, cfg.NextProtos); diff != "" {
		t.Errorf("NextProtos (-want +got):\n%s", diff)
	}
	for _, id := range cfg.CipherSuites {
		var suite *tls.CipherSuite
		for _, s := range tls.CipherSuites() {
			if s.ID == id {
				suite = s
			}
		}
		if suite == nil || !strings.HasPrefix(suite.Name, "TLS_ECDHE_") || !(strings.Contains(suite.Name, "_GCM_") || strings.Contains(suite.Name, "CHACHA20_POLY1305")) {
			t.Errorf("cipher suite %s is not ECDHE with AEAD, or is insecure", tls.CipherSuiteName(id))
		}
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	writeFile(t, to, mustRead(t, from))
}

func ExampleEnsureSelfSigned() {
	dir, err := os.MkdirTemp("", "popbox-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)

	for range 2 {
		certFile, keyFile, created, err := EnsureSelfSigned(dir, []string{"mail.example.org"})
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(filepath.Base(certFile), filepath.Base(keyFile), "created:", created)
	}

	certs, err := LoadCertificates(filepath.Join(dir, "tls", "cert.pem"), filepath.Join(dir, "tls", "key.pem"))
	if err != nil {
		fmt.Println(err)
		return
	}
	cfg := ServerConfig(certs)
	fmt.Println("fingerprint length:", len(certs.Fingerprint()), "ALPN:", cfg.NextProtos)
	// Output:
	// cert.pem key.pem created: true
	// cert.pem key.pem created: false
	// fingerprint length: 95 ALPN: [pop3]
}
