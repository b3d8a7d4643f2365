package interop

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestTestSSL runs testssl.sh (Debian package testssl.sh) against the POP3S
// port and against STLS, and fails on any finding rated HIGH or CRITICAL.
//
// The server gets a certificate issued by a test CA that testssl.sh is told
// to trust (--add-ca), with a CRL distribution point, as a certificate from
// a real CA has. With popbox's self-signed default, testssl.sh would rate
// the missing chain of trust CRITICAL and the missing revocation
// information HIGH: facts about the certificate an operator installs, not
// about popbox's TLS, which is what this test checks (protocols, ciphers,
// renegotiation, known attacks).
func TestTestSSL(t *testing.T) {
	skipOnSuiteStore(t, "it checks TLS only, which does not depend on the store")
	testssl, err := exec.LookPath("testssl")
	if err != nil {
		testssl, err = exec.LookPath("testssl.sh")
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("testssl not found: install the Debian package testssl.sh")
		}
		t.Skip("testssl not installed (Debian package testssl.sh)")
	}
	data := t.TempDir()
	caFile := writeCAIssuedCert(t, data)
	s := startServerIn(t, data)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"pop3s", []string{s.tls}},
		{"stls", []string{"--starttls", "pop3", s.plain}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "testssl.json")
			args := append([]string{"--quiet", "--color", "0", "--warnings", "off", "--add-ca", caFile,
				"--jsonfile", out}, tc.args...)
			// About 40 s here; the bound keeps a hung scan from eating CI's time.
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, testssl, args...)
			cmd.WaitDelay = 5 * time.Second
			text, err := cmd.CombinedOutput()
			// testssl.sh exits non-zero for findings, so its status is not
			// the verdict; the JSON is.
			b, rerr := os.ReadFile(out)
			if rerr != nil {
				t.Fatalf("testssl produced no JSON (%v, %v):\n%s", rerr, err, text)
			}
			var findings []struct {
				ID, Severity, Finding string
			}
			if err := json.Unmarshal(b, &findings); err != nil {
				t.Fatalf("testssl JSON: %v", err)
			}
			if len(findings) < 20 {
				t.Fatalf("testssl reported only %d findings; did it reach the server?\n%s", len(findings), text)
			}
			counts := map[string]int{}
			for _, f := range findings {
				counts[f.Severity]++
				switch f.Severity {
				case "HIGH", "CRITICAL":
					t.Errorf("testssl %s: %s %s: %s", tc.name, f.Severity, f.ID, f.Finding)
				case "MEDIUM", "LOW":
					t.Logf("testssl %s: %s %s: %s", tc.name, f.Severity, f.ID, f.Finding)
				}
			}
			t.Logf("testssl %s severities: %v", tc.name, counts)
		})
	}
}

// writeCAIssuedCert makes a test CA and a server certificate it signs for
// localhost and 127.0.0.1, writes the pair where popbox serve looks for its
// certificate (DATA/tls/), and returns the CA's PEM file.
func writeCAIssuedCert(t *testing.T, data string) string {
	t.Helper()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey, leafKey := newKey(), newKey()
	now := time.Now()
	ca := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "popbox test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(365 * 24 * time.Hour), // beyond the 30 days before expiry at which serve would replace it
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{
		SerialNumber:          big.NewInt(2),
		Subject:               pkix.Name{CommonName: "localhost"},
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(365 * 24 * time.Hour), // beyond the 30 days before expiry at which serve would replace it
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		CRLDistributionPoints: []string{"http://127.0.0.1:9/popbox-test.crl"},
		BasicConstraintsValid: true,
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &leafKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(leafKey)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(data, "tls")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	chain := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER})
	chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})...)
	for name, b := range map[string][]byte{
		"cert.pem": chain,
		"key.pem":  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644); err != nil {
		t.Fatal(err)
	}
	return caFile
}
