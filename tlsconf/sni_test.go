package tlsconf

import (
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestSNI: the client's server name picks the certificate; without a name,
// or with one no certificate has, the main one answers. Reload keeps the
// choice working.
func TestSNI(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, hosts ...string) FilePair {
		certPEM, keyPEM, err := generate(hosts, nil, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		p := FilePair{filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")}
		if err := os.WriteFile(p.CertFile, certPEM, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p.KeyFile, keyPEM, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	main := write("main", "mail.example.org")
	other := write("other", "pop.example.net", "*.example.com")
	certs, err := LoadCertificates(main.CertFile, main.KeyFile, other)
	if err != nil {
		t.Fatal(err)
	}
	cfg := ServerConfig(certs)

	served := func(serverName string) string {
		c, s := net.Pipe()
		defer c.Close()
		defer s.Close()
		go tls.Server(s, cfg).Handshake()
		tc := tls.Client(c, &tls.Config{ServerName: serverName, InsecureSkipVerify: true, NextProtos: []string{"pop3"}})
		tc.SetDeadline(time.Now().Add(10 * time.Second))
		if err := tc.Handshake(); err != nil {
			t.Fatalf("handshake for %q: %v", serverName, err)
		}
		return tc.ConnectionState().PeerCertificates[0].DNSNames[0]
	}
	for _, reload := range []bool{false, true} {
		if reload {
			if err := certs.Reload(); err != nil {
				t.Fatal(err)
			}
		}
		for name, want := range map[string]string{
			"mail.example.org": "mail.example.org",
			"pop.example.net":  "pop.example.net",
			"x.example.com":    "pop.example.net",
			"unknown.example":  "mail.example.org",
			"":                 "mail.example.org",
		} {
			if got := served(name); got != want {
				t.Errorf("reload %v: SNI %q got the certificate of %q, want %q", reload, name, got, want)
			}
		}
	}
	// A broken extra pair fails the reload and leaves the old ones.
	if err := os.WriteFile(other.KeyFile, []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := certs.Reload(); err == nil {
		t.Error("Reload with a broken extra key succeeded")
	}
	if got := served("pop.example.net"); got != "pop.example.net" {
		t.Errorf("after a failed reload, SNI pop.example.net got %q", got)
	}
}
