package testcert

import (
	"crypto/tls"
	"net"
	"testing"
	"time"
)

// TestHandshake: a client trusting Pool completes a handshake with a server
// using Cert, for the names the certificate claims, and the PEM forms load.
func TestHandshake(t *testing.T) {
	p, err := New("testcert test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tls.X509KeyPair(p.CertPEM, p.KeyPEM); err != nil {
		t.Fatalf("PEM pair does not load: %v", err)
	}
	for _, name := range []string{"localhost", "127.0.0.1", "::1"} {
		c, s := net.Pipe()
		done := make(chan error, 1)
		go func() {
			srv := tls.Server(s, &tls.Config{Certificates: []tls.Certificate{p.Cert}})
			srv.SetDeadline(time.Now().Add(5 * time.Second))
			done <- srv.Handshake()
		}()
		cli := tls.Client(c, &tls.Config{RootCAs: p.Pool, ServerName: name, MaxVersion: tls.VersionTLS12})
		cli.SetDeadline(time.Now().Add(5 * time.Second))
		if err := cli.Handshake(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if err := <-done; err != nil {
			t.Errorf("%s: server: %v", name, err)
		}
		// Close the pipe itself: a TLS close_notify would wait for a
		// reader that is gone.
		c.Close()
		s.Close()
	}
	if len(p.Fingerprint) != 95 {
		t.Errorf("fingerprint %q is not 32 hex pairs", p.Fingerprint)
	}
}
