package fetch

import (
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/popbox/popbox/internal/dovecottest"
)

// TestDovecot fetches the corpus from a real Dovecot: implicit TLS with
// the certificate as ca_file and SCRAM-SHA-256 chosen by auth = "auto",
// STLS with a pinned fingerprint, and USER/PASS without TLS; into Maildir
// and mbox; keep mode (a second run fetches nothing) and delete mode (the
// server is empty after, the local store has everything).
func TestDovecot(t *testing.T) {
	t.Parallel()
	users := map[string]string{}
	cases := []struct {
		name, tls, kind string
		lines           []string
		keep            bool
	}{
		{"implicit-maildir-keep", "implicit", "maildir", nil, true},
		{"starttls-mbox-delete", "starttls", "mbox", nil, false},
		{"none-maildir-delete", "none", "maildir", []string{`auth = "user"`}, false},
		{"implicit-mbox-plain", "implicit", "mbox", []string{`auth = "plain"`}, true},
	}
	for _, tc := range cases {
		users[strings.ReplaceAll(tc.name, "-", "")] = "pw-" + tc.name
	}
	dc := dovecottest.Start(t, dovecottest.Options{Users: users, AuthMechanisms: "plain login scram-sha-256"})
	msgs := corpus()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			user := strings.ReplaceAll(tc.name, "-", "")
			for _, m := range msgs {
				dc.AddMessage(t, user, []byte(m))
			}
			addr := dc.POP3SAddr
			if tc.tls != "implicit" {
				addr = dc.POP3Addr
			}
			host, port, _ := net.SplitHostPort(addr)
			spec := tc.kind + ":" + filepath.Join(t.TempDir(), "local")
			lines := append([]string{
				"server = " + quote(host), "port = " + port, "tls = " + quote(tc.tls), "deliver = " + quote(spec),
				"keep = " + map[bool]string{true: "true", false: "false"}[tc.keep],
			}, tc.lines...)
			switch tc.tls {
			case "implicit":
				lines = append(lines, "ca_file = "+quote(dc.CertFile))
			case "starttls":
				lines = append(lines, "fingerprint = "+quote("sha256:"+dc.Fingerprint))
			}
			a := account(t, lines...)
			a.User, a.Password = user, users[user]
			r := mustRun(t, a, Options{})
			if r.Fetched != len(msgs) {
				t.Errorf("fetched %d, want %d", r.Fetched, len(msgs))
			}
			sameMessages(t, "local store", msgs, local(t, spec))
			if tc.keep {
				sameMessages(t, "server (keep)", msgs, strs(dc.Messages(t, user)))
				if r := mustRun(t, a, Options{}); r.Fetched != 0 || r.Planned != 0 {
					t.Errorf("second run fetched %d, planned %d", r.Fetched, r.Planned)
				}
			} else {
				if r.Deleted != len(msgs) {
					t.Errorf("deleted %d, want %d", r.Deleted, len(msgs))
				}
				if got := dc.Messages(t, user); len(got) != 0 {
					t.Errorf("Dovecot still has %d messages", len(got))
				}
			}
			sameMessages(t, "local store after the second run", msgs, local(t, spec))
		})
	}
}

// TestDovecotTLSRefusals: STLS not offered with tls = "starttls", and a
// pinned fingerprint that does not match, both stop before login with
// ErrTLS; the pin error shows both fingerprints.
func TestDovecotTLSRefusals(t *testing.T) {
	t.Parallel()
	t.Run("no STLS", func(t *testing.T) {
		t.Parallel()
		dc := dovecottest.Start(t, dovecottest.Options{NoSTLS: true})
		dc.AddMessage(t, "test", []byte("Subject: a\n\n1\n"))
		host, port, _ := net.SplitHostPort(dc.POP3Addr)
		a := account(t, "server = "+quote(host), "port = "+port, `tls = "starttls"`, "deliver = "+quote("maildir:"+t.TempDir()+"/md"))
		a.User = "test"
		r := run(t, a, Options{})
		if !errors.Is(r.Err, ErrTLS) || !strings.Contains(r.Err.Error(), "does not offer STLS") {
			t.Errorf("Fetch error %v, want ErrTLS about STLS", r.Err)
		}
	})
	t.Run("pin mismatch", func(t *testing.T) {
		t.Parallel()
		dc := dovecottest.Start(t, dovecottest.Options{})
		host, port, _ := net.SplitHostPort(dc.POP3SAddr)
		wrong := strings.Repeat("AB:", 31) + "AB"
		a := account(t, "server = "+quote(host), "port = "+port, "fingerprint = "+quote(wrong), "deliver = "+quote("maildir:"+t.TempDir()+"/md"))
		a.User = "test"
		r := run(t, a, Options{})
		if !errors.Is(r.Err, ErrTLS) {
			t.Fatalf("Fetch error %v, want ErrTLS", r.Err)
		}
		for _, s := range []string{"expected sha256:" + wrong, "presented sha256:" + dc.Fingerprint} {
			if !strings.Contains(r.Err.Error(), s) {
				t.Errorf("error %q lacks %q", r.Err, s)
			}
		}
	})
}

func strs(bs [][]byte) []string {
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = string(b)
	}
	return out
}

// TestDovecotDeleteAfter: keep = true with delete_after against real
// Dovecot: messages first seen more than 30 days ago (journal backdated)
// are deleted from the server, newer ones stay, the local store has all.
func TestDovecotDeleteAfter(t *testing.T) {
	t.Parallel()
	dc := dovecottest.Start(t, dovecottest.Options{Users: map[string]string{"aged": "pw-aged"}})
	old := []string{"Subject: old 1\n\na\n", "Subject: old 2\n\n.\n..\nb\n"}
	for _, m := range old {
		dc.AddMessage(t, "aged", []byte(m))
	}
	host, port, _ := net.SplitHostPort(dc.POP3SAddr)
	spec := "maildir:" + filepath.Join(t.TempDir(), "local")
	a := account(t, "server = "+quote(host), "port = "+port, `tls = "implicit"`, "ca_file = "+quote(dc.CertFile),
		"deliver = "+quote(spec), "keep = true", `delete_after = "30d"`)
	a.User, a.Password = "aged", "pw-aged"
	if r := mustRun(t, a, Options{}); r.Fetched != 2 || r.Deleted != 0 {
		t.Fatalf("first run: fetched %d deleted %d, want 2 and 0", r.Fetched, r.Deleted)
	}
	backdate(t, a, 31*24*time.Hour)
	recent := []string{"Subject: new 1\n\nc\n"}
	dc.AddMessage(t, "aged", []byte(recent[0]))
	r := mustRun(t, a, Options{})
	if r.Fetched != 1 || r.Deleted != 2 {
		t.Errorf("second run: fetched %d deleted %d, want 1 and 2", r.Fetched, r.Deleted)
	}
	sameMessages(t, "Dovecot after delete_after", recent, strs(dc.Messages(t, "aged")))
	sameMessages(t, "local store", append(old, recent...), local(t, spec))
}
