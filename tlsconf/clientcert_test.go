package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestClientCertUser(t *testing.T) {
	cert := &x509.Certificate{Subject: pkix.Name{CommonName: "alice"}, EmailAddresses: []string{"alice@example.org", "a@example.org"}}
	bare := &x509.Certificate{}
	tests := []struct {
		field   string
		cert    *x509.Certificate
		want    string
		wantErr bool
	}{
		{"cn", cert, "alice", false},
		{"email", cert, "alice@example.org", false},
		{"cn", bare, "", true},
		{"email", bare, "", true},
		{"uid", cert, "", true},
	}
	for _, tt := range tests {
		got, err := ClientCertUser(tt.field)(tt.cert)
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("ClientCertUser(%q)(%v) = %q, %v; want %q, error %v", tt.field, tt.cert.Subject, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestRequestClientCerts(t *testing.T) {
	dir := t.TempDir()
	certPEM, _, err := generate([]string{"ca.example"}, nil, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	good, junk := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "junk.pem")
	os.WriteFile(good, certPEM, 0o600)
	os.WriteFile(junk, []byte("not PEM"), 0o600)
	cfg := &tls.Config{}
	if err := RequestClientCerts(cfg, good); err != nil {
		t.Fatal(err)
	}
	if cfg.ClientAuth != tls.VerifyClientCertIfGiven || cfg.ClientCAs == nil {
		t.Errorf("ClientAuth %v, ClientCAs %v", cfg.ClientAuth, cfg.ClientCAs)
	}
	for _, f := range []string{junk, filepath.Join(dir, "missing.pem")} {
		if err := RequestClientCerts(&tls.Config{}, f); err == nil {
			t.Errorf("RequestClientCerts(%s) succeeded", f)
		}
	}
}
