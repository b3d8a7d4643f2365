package fetch

import (
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/popbox/popbox/pop3client"
)

// TestTLSVerification: the server certificate is checked against ca_file,
// the system roots or a pinned fingerprint; failures are ErrTLS and say
// what was expected and what the server presented.
func TestTLSVerification(t *testing.T) {
	t.Parallel()
	ts := startServer(t, serverOpts{})
	other := startServer(t, serverOpts{}) // another certificate
	host, port, _ := net.SplitHostPort(ts.TLS)
	const wrongPin = "sha256:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF"
	for _, tc := range []struct {
		name  string
		lines []string
		// wantIn lists strings the error must contain; nil means success.
		wantIn []string
	}{
		{"ca_file", []string{"ca_file = " + quote(ts.CertFile)}, nil},
		{"pin", []string{"fingerprint = " + quote("sha256:"+ts.Fingerprint)}, nil},
		{"pin lower-case without prefix", []string{"fingerprint = " + quote(strings.ToLower(strings.ReplaceAll(ts.Fingerprint, ":", "")))}, nil},
		{"pin and ca_file", []string{"fingerprint = " + quote(ts.Fingerprint), "ca_file = " + quote(ts.CertFile)}, nil},
		{"pin mismatch", []string{"fingerprint = " + quote(wrongPin)},
			[]string{"expected sha256:00:11:22", "presented sha256:" + ts.Fingerprint}},
		{"pin right, ca_file wrong", []string{"fingerprint = " + quote(ts.Fingerprint), "ca_file = " + quote(other.CertFile)},
			[]string{"does not verify against " + other.CertFile, "sha256:" + ts.Fingerprint}},
		{"system roots", nil, []string{"does not verify against the system roots", "sha256:" + ts.Fingerprint}},
		{"wrong ca_file", []string{"ca_file = " + quote(other.CertFile)}, []string{"sha256:" + ts.Fingerprint}},
		{"wrong name", []string{"ca_file = " + quote(ts.CertFile), `tls_server_name = "mail.example.org"`},
			[]string{`for "mail.example.org"`, "valid for"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ts.deliver(t) // nothing; the server is shared
			dir := filepath.Join(t.TempDir(), "md")
			a := account(t, append([]string{"server = " + quote(host), "port = " + port, "deliver = " + quote("maildir:"+dir)}, tc.lines...)...)
			r := run(t, a, Options{})
			if tc.wantIn == nil {
				if r.Err != nil {
					t.Fatalf("Fetch: %v", r.Err)
				}
				return
			}
			if !errors.Is(r.Err, ErrTLS) {
				t.Fatalf("Fetch error %v, want ErrTLS", r.Err)
			}
			t.Logf("error: %v", r.Err)
			for _, s := range tc.wantIn {
				if !strings.Contains(r.Err.Error(), s) {
					t.Errorf("error %q lacks %q", r.Err, s)
				}
			}
		})
	}
}

// TestSTARTTLS: tls = "starttls" upgrades when STLS is offered, and
// refuses to go on (ErrTLS, before any password is sent) when it is not.
func TestSTARTTLS(t *testing.T) {
	t.Parallel()
	t.Run("offered", func(t *testing.T) {
		t.Parallel()
		ts := startServer(t, serverOpts{})
		ts.deliver(t, "Subject: a\n\n1\n")
		host, port, _ := net.SplitHostPort(ts.Plain)
		spec := "maildir:" + filepath.Join(t.TempDir(), "md")
		a := account(t, "server = "+quote(host), "port = "+port, `tls = "starttls"`, "ca_file = "+quote(ts.CertFile), "deliver = "+quote(spec))
		if r := mustRun(t, a, Options{}); r.Fetched != 1 {
			t.Errorf("fetched %d, want 1", r.Fetched)
		}
	})
	t.Run("not offered", func(t *testing.T) {
		t.Parallel()
		ts := startServer(t, serverOpts{noTLS: true})
		ts.deliver(t, "Subject: a\n\n1\n")
		host, port, _ := net.SplitHostPort(ts.Plain)
		spec := "maildir:" + filepath.Join(t.TempDir(), "md")
		a := account(t, "server = "+quote(host), "port = "+port, `tls = "starttls"`, "deliver = "+quote(spec))
		r := run(t, a, Options{})
		if !errors.Is(r.Err, ErrTLS) || !strings.Contains(r.Err.Error(), "does not offer STLS") {
			t.Errorf("Fetch error %v, want ErrTLS about STLS", r.Err)
		}
		if r.Fetched != 0 {
			t.Errorf("fetched %d without TLS", r.Fetched)
		}
	})
}

// TestAuthFailure: a wrong password is ErrAuth.
func TestAuthFailure(t *testing.T) {
	t.Parallel()
	ts := startServer(t, serverOpts{})
	ts.deliver(t, "Subject: a\n\n1\n")
	a := tlsAccount(t, ts, "maildir:"+filepath.Join(t.TempDir(), "md"))
	a.Password = "wrong"
	r := run(t, a, Options{})
	if !errors.Is(r.Err, ErrAuth) {
		t.Errorf("Fetch error %v, want ErrAuth", r.Err)
	}
}

// TestChooseMechanism: auth = "auto" takes the strongest offered, and no
// mechanism that sends the password itself is used without TLS unless
// tls = "none" was chosen.
func TestChooseMechanism(t *testing.T) {
	t.Parallel()
	caps := func(sasl ...string) pop3client.Capabilities {
		return pop3client.Capabilities{"USER": nil, "SASL": sasl}
	}
	for _, tc := range []struct {
		name      string
		auth, tls string
		caps      pop3client.Capabilities
		tlsActive bool
		want      string // mechanism, or "error"
	}{
		{"plus over TLS", "auto", "implicit", caps("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"), true, "SCRAM-SHA-256-PLUS"},
		{"scram", "auto", "implicit", caps("PLAIN", "SCRAM-SHA-256"), true, "SCRAM-SHA-256"},
		{"no plus without TLS", "auto", "none", caps("SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"), false, "SCRAM-SHA-256"},
		{"plain over TLS", "auto", "starttls", caps("LOGIN", "PLAIN"), true, "PLAIN"},
		{"lower-case offer", "auto", "implicit", caps("plain"), true, "PLAIN"},
		{"user over TLS", "auto", "implicit", caps(), true, "USER"},
		{"no CAPA over TLS", "auto", "implicit", pop3client.Capabilities{}, true, "USER"},
		{"plain in clear refused", "auto", "starttls", caps("PLAIN"), false, "error"},
		{"plain in clear with tls none", "auto", "none", caps("PLAIN"), false, "PLAIN"},
		{"user in clear with tls none", "auto", "none", caps(), false, "USER"},
		{"explicit user without TLS", "user", "implicit", caps(), false, "error"},
		{"explicit plain not offered", "plain", "implicit", caps("LOGIN"), true, "error"},
		{"explicit login", "login", "implicit", caps("LOGIN"), true, "LOGIN"},
		{"explicit xoauth2", "xoauth2", "implicit", caps("XOAUTH2"), true, "XOAUTH2"},
		{"explicit oauthbearer in clear", "oauthbearer", "implicit", caps("OAUTHBEARER"), false, "error"},
		{"explicit scram prefers plus", "scram-sha-256", "implicit", caps("SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"), true, "SCRAM-SHA-256-PLUS"},
		{"explicit scram not offered", "scram-sha-256", "implicit", caps("PLAIN"), true, "error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := &Account{Auth: tc.auth, TLS: tc.tls}
			m, err := chooseMechanism(a, tc.caps, tc.tlsActive)
			got := m.name
			if err != nil {
				got = "error"
				if !errors.Is(err, ErrAuth) {
					t.Errorf("error %v is not ErrAuth", err)
				}
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("mechanism (-want +got):\n%s", diff)
			}
		})
	}
}
