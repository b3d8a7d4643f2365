package fetch

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/popbox/popbox/internal/mailtest"
	"github.com/popbox/popbox/internal/testcert"
	"github.com/popbox/popbox/pop3server"
	"github.com/popbox/popbox/store"
	"github.com/popbox/popbox/store/maildir"
)

// runTimeout bounds one Fetch in the tests; it only catches hangs.
const runTimeout = 60 * time.Second

// testServer is popbox's own POP3 server, in process, on loopback.
type testServer struct {
	Plain, TLS  string // addresses; TLS is implicit TLS
	CertFile    string
	Fingerprint string
	store       *maildir.Store
	root        string
	srv         *pop3server.Server
}

type serverOpts struct {
	noTLS       bool          // no certificate: no STLS, no POP3S
	idleTimeout time.Duration // the server's autologout timer
}

type testBackend struct {
	users map[string]string
	st    store.Store
}

func (b testBackend) Authenticate(_ context.Context, _ pop3server.ConnInfo, user, password string) (string, error) {
	if pw, ok := b.users[user]; ok && pw == password {
		return user, nil
	}
	return "", pop3server.ErrAuthFailed
}

func (b testBackend) Open(ctx context.Context, user string) (store.Maildrop, error) {
	return b.st.Open(ctx, user)
}

// startServer runs a pop3server with user "alice", password "secret".
func startServer(t testing.TB, o serverOpts) *testServer {
	t.Helper()
	root := t.TempDir()
	st, err := maildir.New(root, maildir.Options{NoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{store: st, root: root}
	ts.srv = &pop3server.Server{
		Backend:          testBackend{users: map[string]string{"alice": "secret"}, st: st},
		AuthFailureDelay: -1,
		Limits:           pop3server.Limits{IdleTimeout: o.idleTimeout},
		Logger:           slog.New(slog.DiscardHandler),
	}
	if !o.noTLS {
		cert := newCert(t)
		ts.srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
		ts.Fingerprint = Fingerprint(cert.Certificate[0])
		ts.CertFile = filepath.Join(t.TempDir(), "cert.pem")
		writeFile(t, ts.CertFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})))
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts.Plain = l.Addr().String()
	go ts.srv.Serve(l)
	if !o.noTLS {
		lt, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ts.TLS = lt.Addr().String()
		go ts.srv.ServeTLS(lt)
	}
	t.Cleanup(func() { ts.srv.Close() })
	return ts
}

func newCert(t testing.TB) tls.Certificate {
	t.Helper()
	p, err := testcert.New("popbox fetch test")
	if err != nil {
		t.Fatal(err)
	}
	return p.Cert
}

// deliver stores messages for alice.
func (ts *testServer) deliver(t testing.TB, msgs ...string) {
	t.Helper()
	for _, m := range msgs {
		if _, err := ts.store.Deliver(context.Background(), "alice", strings.NewReader(m)); err != nil {
			t.Fatal(err)
		}
	}
}

// messages returns alice's messages as stored on the server.
func (ts *testServer) messages(t testing.TB) []string {
	t.Helper()
	var out []string
	for _, sub := range []string{"new", "cur"} {
		dir := filepath.Join(ts.root, "alice", "Maildir", sub)
		ents, err := os.ReadDir(dir)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, string(b))
		}
	}
	return out
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// corpus is the set of awkward messages every fetch test moves: byte
// stuffing, line ends, 8-bit text, no final newline, no body, a From_
// line for mbox, and a 5 MB message.
func corpus() []string {
	var big strings.Builder
	big.WriteString("From: big@example.org\nSubject: five megabytes\n\n")
	for i := 0; big.Len() < 5<<20; i++ {
		fmt.Fprintf(&big, "%07d %s\n", i, strings.Repeat("x", 70))
		if i%1000 == 0 {
			big.WriteString(".\n..\n") // dot lines deep inside a long body
		}
	}
	return []string{
		"From: a@example.org\nSubject: plain\n\nHello.\n",
		"From: a@example.org\nSubject: dots\n\n.\n..\n...\n. x\n.signature\nend\n",
		"From: a@example.org\nSubject: lone dot last\n\nbody\n.\n",
		"From: a@example.org\r\nSubject: crlf\r\n\r\nstored with CRLF\r\n.\r\n",
		"From: a@example.org\nSubject: mixed\r\n\nbare LF and CRLF\r\nmixed\n",
		"From: a@example.org\nSubject: no final newline\n\nthe last line has no end",
		"From: a@example.org\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\nGrüße, 日本語, ça va?\n",
		"From: a@example.org\nSubject: headers only\n",
		"From: a@example.org\nSubject: from lines\n\nFrom here on\n>From quoted\n>>From twice\n",
		"From: a@example.org\nSubject: long line\n\n" + strings.Repeat("y", 2000) + "\n",
		big.String(),
	}
}

// sameMessages compares two multisets of messages by content, reporting
// differences by subject and hash, not whole 5 MB bodies.
func sameMessages(t testing.TB, what string, want, got []string) {
	t.Helper()
	sum := func(ms []string) []string {
		out := make([]string, len(ms))
		for i, m := range ms {
			h := sha256.Sum256([]byte(mailtest.Normalise(m)))
			subj := ""
			for _, l := range strings.Split(m, "\n") {
				if s, ok := strings.CutPrefix(l, "Subject: "); ok {
					subj = strings.TrimRight(s, "\r")
					break
				}
			}
			out[i] = fmt.Sprintf("%s %s (%d bytes)", hex.EncodeToString(h[:6]), subj, len(mailtest.Normalise(m)))
		}
		slices.Sort(out)
		return out
	}
	if diff := cmp.Diff(sum(want), sum(got)); diff != "" {
		t.Errorf("%s (-want +got):\n%s", what, diff)
	}
}

// account builds an Account from TOML lines (plus name, user and
// state_dir), as the account file would.
func account(t testing.TB, lines ...string) *Account {
	t.Helper()
	doc := "[[account]]\nname = \"test\"\nuser = \"alice\"\npassword = \"secret\"\n" +
		"state_dir = " + quote(t.TempDir()) + "\n" + strings.Join(lines, "\n") + "\n"
	cfg, err := ParseConfig([]byte(doc), "test.toml")
	if err != nil {
		t.Fatalf("account:\n%s\n%v", doc, err)
	}
	return cfg.Accounts[0]
}

func quote(s string) string { return fmt.Sprintf("%q", s) }

// plainAccount fetches from ts without TLS.
func plainAccount(t testing.TB, ts *testServer, deliver string, lines ...string) *Account {
	host, port, _ := net.SplitHostPort(ts.Plain)
	return account(t, append([]string{
		"server = " + quote(host), "port = " + port, `tls = "none"`, "deliver = " + quote(deliver),
	}, lines...)...)
}

// tlsAccount fetches from ts over implicit TLS, trusting its certificate.
func tlsAccount(t testing.TB, ts *testServer, deliver string, lines ...string) *Account {
	host, port, _ := net.SplitHostPort(ts.TLS)
	return account(t, append([]string{
		"server = " + quote(host), "port = " + port, "ca_file = " + quote(ts.CertFile), "deliver = " + quote(deliver),
	}, lines...)...)
}

// run fetches once and returns the result; logs go to the test log.
func run(t testing.TB, a *Account, o Options) *Result {
	t.Helper()
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	done := make(chan *Result, 1)
	go func() { done <- Fetch(ctx, a, o) }()
	select {
	case r := <-done:
		return r
	case <-time.After(runTimeout + 10*time.Second):
		t.Fatalf("Fetch did not return")
		return nil
	}
}

// mustRun fetches once and wants no error.
func mustRun(t testing.TB, a *Account, o Options) *Result {
	t.Helper()
	r := run(t, a, o)
	if r.Err != nil {
		t.Fatalf("Fetch: %v", r.Err)
	}
	return r
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// local returns the messages of a destination spec, as mailtest.Local does.
func local(t testing.TB, spec string) []string {
	t.Helper()
	msgs, err := mailtest.Local(spec)
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}
