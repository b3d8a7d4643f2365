package dovecottest

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// session is a minimal POP3 exchange with a deadline on every step.
type session struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func (s *session) line() string {
	s.t.Helper()
	s.c.SetDeadline(time.Now().Add(5 * time.Second))
	l, err := s.r.ReadString('\n')
	if err != nil {
		s.t.Fatalf("reading: %v", err)
	}
	return strings.TrimRight(l, "\r\n")
}

func (s *session) cmd(c string) string {
	s.t.Helper()
	s.c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := s.c.Write([]byte(c + "\r\n")); err != nil {
		s.t.Fatal(err)
	}
	return s.line()
}

func (s *session) multi() []string {
	s.t.Helper()
	var out []string
	for l := s.line(); l != "."; l = s.line() {
		out = append(out, l)
	}
	return out
}

func dial(t *testing.T, addr string, cfg *tls.Config) *session {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second}
	var c net.Conn
	var err error
	if cfg != nil {
		c, err = tls.DialWithDialer(d, "tcp", addr, cfg)
	} else {
		c, err = d.Dial("tcp", addr)
	}
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	s := &session{t: t, c: c, r: bufio.NewReader(c)}
	if g := s.line(); !strings.HasPrefix(g, "+OK") {
		t.Fatalf("greeting %q", g)
	}
	return s
}

// TestStart: the instance serves POP3 and POP3S with the certificate it
// reports, users log in, and added messages are listed and retrieved byte
// for byte (CRLF on the wire).
func TestStart(t *testing.T) {
	d := Start(t, Options{Users: map[string]string{"alice": "pw1", "bob": "pw2"}})
	d.AddMessage(t, "alice", []byte("Subject: one\n\nfirst\n"))
	d.AddMessage(t, "alice", []byte("Subject: two\n\n.dot\n"))

	pem, err := os.ReadFile(d.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		t.Fatal("no certificate in CertFile")
	}
	s := dial(t, d.POP3SAddr, &tls.Config{RootCAs: roots, ServerName: "localhost"})
	if got := s.cmd("USER alice"); !strings.HasPrefix(got, "+OK") {
		t.Fatalf("USER: %q", got)
	}
	if got := s.cmd("PASS pw1"); !strings.HasPrefix(got, "+OK") {
		t.Fatalf("PASS: %q", got)
	}
	if got := s.cmd("LIST"); !strings.HasPrefix(got, "+OK") {
		t.Fatalf("LIST: %q", got)
	}
	if diff := cmp.Diff([]string{"1 23", "2 22"}, s.multi()); diff != "" {
		t.Errorf("LIST (-want +got):\n%s", diff)
	}
	s.cmd("RETR 2")
	if diff := cmp.Diff([]string{"Subject: two", "", "..dot"}, s.multi()); diff != "" {
		t.Errorf("RETR 2 (-want +got):\n%s", diff)
	}
	s.cmd("QUIT")

	p := dial(t, d.POP3Addr, nil)
	if got := p.cmd("CAPA"); !strings.HasPrefix(got, "+OK") {
		t.Fatalf("CAPA: %q", got)
	}
	if caps := p.multi(); !contains(caps, "STLS") {
		t.Errorf("CAPA %q lacks STLS", caps)
	}
	if got := p.cmd("USER bob"); !strings.HasPrefix(got, "+OK") {
		t.Fatalf("USER: %q", got)
	}
	if got := p.cmd("PASS wrong"); !strings.HasPrefix(got, "-ERR") {
		t.Errorf("PASS with a wrong password: %q", got)
	}
	if got := len(d.Messages(t, "alice")); got != 2 {
		t.Errorf("Messages: %d, want 2", got)
	}
}

// TestNoSTLS: with NoSTLS the plain port does not offer STLS.
func TestNoSTLS(t *testing.T) {
	d := Start(t, Options{NoSTLS: true})
	p := dial(t, d.POP3Addr, nil)
	p.cmd("CAPA")
	if caps := p.multi(); contains(caps, "STLS") {
		t.Errorf("CAPA %q offers STLS", caps)
	}
	if d.POP3SAddr != "" {
		t.Errorf("POP3SAddr = %q, want none", d.POP3SAddr)
	}
}

func contains(lines []string, word string) bool {
	for _, l := range lines {
		if strings.EqualFold(strings.Fields(l + " x")[0], word) {
			return true
		}
	}
	return false
}
