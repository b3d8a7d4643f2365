package pop3server

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/popbox/popbox/internal/testcert"
	"github.com/popbox/popbox/sasl"
)

// historyBackend is a SCRAM backend that also authorizes users proven by
// other means (Authorizer) and keeps a login history (LoginHistory).
type historyBackend struct {
	*scramBackend
	mu     sync.Mutex
	events []string // "user mechanism ok|fail"
	last   map[string]time.Time
}

func newHistoryBackend(t testing.TB) *historyBackend {
	return &historyBackend{scramBackend: newSCRAMBackend(t), last: map[string]time.Time{}}
}

func (b *historyBackend) Authorize(_ context.Context, _ ConnInfo, user string) (string, error) {
	b.memBackend.mu.Lock()
	defer b.memBackend.mu.Unlock()
	if _, ok := b.users[user]; !ok {
		return "", fmt.Errorf("no user %q: %w", user, ErrAuthFailed)
	}
	return user, nil
}

func (b *historyBackend) RecordLogin(_ context.Context, info ConnInfo, user string, success bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	outcome := "fail"
	if success {
		outcome = "ok"
		b.last[user] = time.Now()
	}
	b.events = append(b.events, user+" "+info.Mechanism+" "+outcome)
}

func (b *historyBackend) LastLogin(_ context.Context, user string) (time.Time, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.last[user], nil
}

func (b *historyBackend) recorded() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.events...)
}

// saslLogin runs AUTH mech with a client of the sasl package and returns
// the final reply.
func saslLogin(t *testing.T, c *testClient, mech string, cl sasl.Client) string {
	t.Helper()
	_, resp, err := cl.Start()
	if err != nil {
		t.Fatal(err)
	}
	ir := base64.StdEncoding.EncodeToString(resp)
	if ir == "" {
		ir = "="
	}
	c.send("AUTH " + mech + " " + ir)
	for {
		line := c.line()
		ch, ok := strings.CutPrefix(line, "+ ")
		if !ok {
			return line
		}
		dec, err := base64.StdEncoding.DecodeString(ch)
		if err != nil {
			t.Fatalf("challenge %q: %v", line, err)
		}
		resp, err := cl.Next(dec)
		if err != nil {
			t.Fatalf("client: %v", err)
		}
		c.send(base64.StdEncoding.EncodeToString(resp))
	}
}

func (c *testClient) tlsState() tls.ConnectionState {
	c.t.Helper()
	tc, ok := c.conn.(*tls.Conn)
	if !ok {
		c.t.Fatal("no TLS on this connection")
	}
	return tc.ConnectionState()
}

// TestAUTHSCRAMPlus: SCRAM-SHA-256-PLUS with both channel binding types,
// on implicit TLS and after STLS, and a relayed exchange (binding data of
// another connection) refused.
func TestAUTHSCRAMPlus(t *testing.T) {
	b := newHistoryBackend(t)
	ts := newTestServer(t, b.memBackend, serverOpts{configure: func(s *Server) { s.Backend = b }})
	other := ts.dialTLS(t) // a second connection, as a man in the middle would have
	defer other.conn.Close()

	for _, stls := range []bool{false, true} {
		for _, typ := range []string{sasl.TLSExporter, sasl.TLSServerEndPoint} {
			t.Run(fmt.Sprintf("stls=%v/%s", stls, typ), func(t *testing.T) {
				var c *testClient
				if stls {
					c = ts.dial(t)
					if got := c.cmd("STLS"); !strings.HasPrefix(got, "+OK") {
						t.Fatalf("STLS: %q", got)
					}
					c.handshake()
				} else {
					c = ts.dialTLS(t)
				}
				defer c.conn.Close()
				if !strings.Contains(strings.Join(capaLines(t, c), "\n"), "SCRAM-SHA-256-PLUS") {
					t.Fatalf("CAPA over TLS does not offer SCRAM-SHA-256-PLUS")
				}
				relayed, err := sasl.ChannelBindingFromTLS(other.tlsState(), typ)
				if err != nil {
					t.Fatal(err)
				}
				if typ == sasl.TLSServerEndPoint {
					// The same certificate on every connection: this type
					// only proves the certificate, so a relay with the
					// server's own certificate is not caught; with another
					// certificate it is.
					relayed.Data = append([]byte(nil), relayed.Data...)
					relayed.Data[0] ^= 1
				}
				if got := saslLogin(t, c, sasl.SCRAMSHA256Plus, sasl.NewSCRAMSHA256Client("alice", alicePass, relayed)); got != authFailed {
					t.Errorf("relayed binding: %q, want %q", got, authFailed)
				}
				cb, err := sasl.ChannelBindingFromTLS(c.tlsState(), typ)
				if err != nil {
					t.Fatal(err)
				}
				cl := sasl.NewSCRAMSHA256Client("alice", alicePass, cb)
				if got := saslLogin(t, c, sasl.SCRAMSHA256Plus, cl); got != aliceLoggedIn() {
					t.Fatalf("AUTH %s with %s: %q", sasl.SCRAMSHA256Plus, typ, got)
				}
				if err := cl.(sasl.MutualAuthenticator).ServerVerified(); err != nil {
					t.Error(err)
				}
				c.cmd("QUIT")
			})
		}
	}

	// Without TLS: not offered, and refused when asked for.
	c := ts.dial(t)
	if strings.Contains(strings.Join(capaLines(t, c), "\n"), "PLUS") {
		t.Error("CAPA without TLS offers a -PLUS mechanism")
	}
	if got := c.cmd("AUTH SCRAM-SHA-256-PLUS"); got != "-ERR unsupported authentication mechanism" {
		t.Errorf("AUTH SCRAM-SHA-256-PLUS without TLS: %q", got)
	}
}

func capaLines(t *testing.T, c *testClient) []string {
	t.Helper()
	if got := c.cmd("CAPA"); !strings.HasPrefix(got, "+OK") {
		t.Fatalf("CAPA: %q", got)
	}
	return c.bodyLines()
}

// TestAUTHExternal: EXTERNAL with a verified client certificate, mapped to
// a user by its common name.
func TestAUTHExternal(t *testing.T) {
	ca, err := testcert.New("popbox client CA")
	if err != nil {
		t.Fatal(err)
	}
	certFor := func(cn string) tls.Certificate {
		p, err := testcert.NewClient(ca, cn, "")
		if err != nil {
			t.Fatal(err)
		}
		return p.Cert
	}
	b := newHistoryBackend(t)
	ts := newTestServer(t, b.memBackend, serverOpts{configure: func(s *Server) {
		s.Backend = b
		s.TLSConfig.ClientAuth = tls.VerifyClientCertIfGiven
		s.TLSConfig.ClientCAs = ca.Pool
		s.ClientCertUser = func(c *x509.Certificate) (string, error) { return c.Subject.CommonName, nil }
	}})
	dialWith := func(t *testing.T, cert *tls.Certificate) *testClient {
		cfg := clientTLSConfig()
		if cert != nil {
			cfg.Certificates = []tls.Certificate{*cert}
		}
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: ioTimeout}, "tcp", ts.tlsAddr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		c := &testClient{t: t, conn: conn, r: bufio.NewReader(conn)}
		c.readGreeting()
		return c
	}
	alice, carol := certFor("alice"), certFor("carol")
	tests := []struct {
		name    string
		cert    *tls.Certificate
		authz   string
		offered bool
		want    string
	}{
		{name: "no certificate", want: "-ERR unsupported authentication mechanism"},
		{name: "own identity", cert: &alice, offered: true, want: aliceLoggedIn()},
		{name: "authzid the same user", cert: &alice, authz: "alice", offered: true, want: aliceLoggedIn()},
		{name: "authzid another user", cert: &alice, authz: "bob", offered: true, want: authFailed},
		{name: "certificate of no user", cert: &carol, offered: true, want: authFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dialWith(t, tt.cert)
			offered := strings.Contains(strings.Join(capaLines(t, c), "\n"), "EXTERNAL")
			if offered != tt.offered {
				t.Errorf("EXTERNAL offered: %v, want %v", offered, tt.offered)
			}
			ir := base64.StdEncoding.EncodeToString([]byte(tt.authz))
			if ir == "" {
				ir = "="
			}
			if got := c.cmd("AUTH EXTERNAL " + ir); got != tt.want {
				t.Errorf("AUTH EXTERNAL: %q, want %q", got, tt.want)
			}
			c.cmd("QUIT")
		})
	}
	// A certificate from a CA the server does not trust fails the
	// handshake: crypto/tls checks it before POP3 starts.
	stranger, err := testcert.New("stranger")
	if err != nil {
		t.Fatal(err)
	}
	cfg := clientTLSConfig()
	// GetClientCertificate: given Certificates, crypto/tls would send none
	// that the server's CA list does not name.
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &stranger.Cert, nil }
	if conn, err := tls.DialWithDialer(&net.Dialer{Timeout: ioTimeout}, "tcp", ts.tlsAddr, cfg); err == nil {
		conn.SetDeadline(time.Now().Add(ioTimeout))
		if l, err := bufio.NewReader(conn).ReadString('\n'); err == nil {
			t.Errorf("untrusted client certificate accepted: %q", l)
		}
		conn.Close()
	}
}

// TestLoginDelay: a second login within LOGIN-DELAY is refused with
// [LOGIN-DELAY] and does not restart the clock; CAPA advertises the delay.
func TestLoginDelay(t *testing.T) {
	b := newHistoryBackend(t)
	ts := newTestServer(t, b.memBackend, serverOpts{configure: func(s *Server) {
		s.Backend = b
		s.LoginDelay = time.Hour
	}})
	c := ts.dial(t)
	if !strings.Contains(strings.Join(capaLines(t, c), "\n"), "LOGIN-DELAY 3600") {
		t.Error("CAPA does not advertise LOGIN-DELAY 3600")
	}
	c.login("alice", alicePass)
	c.cmd("QUIT")

	refused := "-ERR [LOGIN-DELAY] wait 3600 seconds between logins"
	for _, login := range []func(c *testClient) string{
		func(c *testClient) string { c.cmd("USER alice"); return c.cmd("PASS " + alicePass) },
		func(c *testClient) string { return scramLogin(t, c, "alice", alicePass, true) },
	} {
		c := ts.dial(t)
		if got := login(c); got != refused {
			t.Errorf("second login: %q, want %q", got, refused)
		}
		c.cmd("QUIT")
	}
	// Other users are not affected, and a wrong password is still just
	// that.
	c = ts.dial(t)
	c.cmd("USER alice")
	if got := c.cmd("PASS wrong"); got != authFailed {
		t.Errorf("wrong password during the delay: %q", got)
	}
	c.cmd("USER bob")
	if got := c.cmd("PASS " + bobPass); !strings.HasPrefix(got, "+OK") {
		t.Errorf("bob: %q", got)
	}
	c.cmd("QUIT")

	// The delay over, alice gets in again.
	b.mu.Lock()
	b.last["alice"] = time.Now().Add(-time.Hour - time.Second)
	b.mu.Unlock()
	c = ts.dial(t)
	c.login("alice", alicePass)
	c.cmd("QUIT")
}

// TestLoginRecorder: every mechanism's outcome reaches a LoginRecorder,
// with the mechanism used.
func TestLoginRecorder(t *testing.T) {
	b := newHistoryBackend(t)
	ts := newTestServer(t, b.memBackend, serverOpts{configure: func(s *Server) { s.Backend = b }})
	c := ts.dial(t)
	c.cmd("USER alice")
	c.cmd("PASS wrong")
	if got := scramLogin(t, c, "alice", "wrong", true); got != authFailed {
		t.Fatalf("SCRAM with a wrong password: %q", got)
	}
	if got := saslLogin(t, c, "PLAIN", sasl.NewPlainClient("", "alice", alicePass)); got != aliceLoggedIn() {
		t.Fatalf("PLAIN: %q", got)
	}
	c.cmd("QUIT")
	c = ts.dial(t)
	if got := scramLogin(t, c, "alice", alicePass, false); got != aliceLoggedIn() {
		t.Fatalf("SCRAM: %q", got)
	}
	c.cmd("QUIT")
	want := []string{"alice USER fail", "alice SCRAM-SHA-256 fail", "alice PLAIN ok", "alice SCRAM-SHA-256 ok"}
	if diff := cmp.Diff(want, b.recorded()); diff != "" {
		t.Errorf("recorded logins (-want +got):\n%s", diff)
	}
}

// tokenVerifier knows fixed tokens; "down" fails as an unreachable
// identity provider would.
type tokenVerifier map[string]string

func (v tokenVerifier) VerifyToken(_ context.Context, token string) (string, error) {
	if token == "down" {
		return "", errors.New("identity provider unreachable")
	}
	if u, ok := v[token]; ok {
		return u, nil
	}
	return "", fmt.Errorf("unknown token: %w", ErrAuthFailed)
}

// TestAUTHOAuth: OAUTHBEARER and XOAUTH2 with the sasl package's clients,
// with and without initial response; a bad token gets RFC 7628's error
// challenge and then the same [AUTH] failure as a wrong password.
func TestAUTHOAuth(t *testing.T) {
	b := newHistoryBackend(t)
	tokens := tokenVerifier{"alice-token": "alice", "carol-token": "carol"}
	ts := newTestServer(t, b.memBackend, serverOpts{configure: func(s *Server) {
		s.Backend = b
		s.TokenVerifier = tokens
		s.Plaintext = PlaintextNever
	}})
	bearer := func(user, token string) sasl.Client {
		return sasl.NewOAuthBearerClient(&sasl.OAuthBearerOptions{Username: user, Token: token})
	}
	const sysTemp = "-ERR [SYS/TEMP] authentication temporarily unavailable"
	tests := []struct {
		name, mech string
		cl         sasl.Client
		want       string
	}{
		{"oauthbearer", "OAUTHBEARER", bearer("", "alice-token"), aliceLoggedIn()},
		{"oauthbearer with authzid", "OAUTHBEARER", bearer("alice", "alice-token"), aliceLoggedIn()},
		{"oauthbearer authzid of another user", "OAUTHBEARER", bearer("bob", "alice-token"), authFailed},
		{"oauthbearer bad token", "OAUTHBEARER", bearer("alice", "forged"), authFailed},
		{"oauthbearer token of no account", "OAUTHBEARER", bearer("", "carol-token"), authFailed},
		{"oauthbearer provider down", "OAUTHBEARER", bearer("", "down"), sysTemp},
		{"xoauth2", "XOAUTH2", sasl.NewXOAUTH2Client("alice", "alice-token"), aliceLoggedIn()},
		{"xoauth2 bad token", "XOAUTH2", sasl.NewXOAUTH2Client("alice", "forged"), authFailed},
		{"xoauth2 user of another token", "XOAUTH2", sasl.NewXOAUTH2Client("bob", "alice-token"), authFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ts.dialTLS(t)
			defer c.conn.Close()
			if got := saslLogin(t, c, tt.mech, tt.cl); got != tt.want {
				t.Errorf("AUTH %s: %q, want %q", tt.mech, got, tt.want)
			}
			c.cmd("QUIT")
		})
	}

	// The error challenge, by hand: RFC 7628 §3.2.2's JSON, then the
	// client's %x01, then the failure.
	c := ts.dialTLS(t)
	c.send("AUTH XOAUTH2 " + base64.StdEncoding.EncodeToString([]byte("user=alice\x01auth=Bearer forged\x01\x01")))
	ch, ok := strings.CutPrefix(c.line(), "+ ")
	if !ok {
		t.Fatal("no error challenge")
	}
	if js, _ := base64.StdEncoding.DecodeString(ch); !strings.Contains(string(js), `"status":"invalid_token"`) {
		t.Errorf("error challenge %q", js)
	}
	if got := c.cmd(""); got != authFailed {
		t.Errorf("after the error challenge: %q, want %q", got, authFailed)
	}

	// Tokens are bearer secrets: no OAuth without TLS under PlaintextNever.
	c = ts.dial(t)
	if capa := strings.Join(capaLines(t, c), "\n"); strings.Contains(capa, "OAUTHBEARER") || strings.Contains(capa, "XOAUTH2") {
		t.Errorf("OAuth offered without TLS: %s", capa)
	}
	if got := c.cmd("AUTH OAUTHBEARER"); !strings.HasPrefix(got, "-ERR [AUTH] plaintext") {
		t.Errorf("AUTH OAUTHBEARER without TLS: %q", got)
	}
}

// TestLongAUTHLine: before login an AUTH line may be as long as
// MaxAuthLine (clients put long OAuth tokens on it despite RFC 5034 §4);
// other commands, and every command after login, stay within MaxLine.
func TestLongAUTHLine(t *testing.T) {
	b := newHistoryBackend(t)
	ts := newTestServer(t, b.memBackend, serverOpts{configure: func(s *Server) {
		s.Backend = b
		s.TokenVerifier = tokenVerifier{strings.Repeat("t", 1500): "alice"}
	}})
	c := ts.dial(t)
	defer c.conn.Close()
	if got := c.cmd("USER " + strings.Repeat("a", 300)); got != "-ERR line too long" {
		t.Errorf("300-octet USER: %q, want -ERR line too long", got)
	}
	ir := base64.StdEncoding.EncodeToString([]byte("n,a=alice,\x01auth=Bearer " + strings.Repeat("t", 1500) + "\x01\x01"))
	if got := c.cmd("AUTH OAUTHBEARER " + ir); got != aliceLoggedIn() {
		t.Fatalf("AUTH with a 2 KB initial response: %q", got)
	}
	if got := c.cmd("NOOP " + strings.Repeat("a", 300)); got != "-ERR line too long" {
		t.Errorf("300-octet NOOP after login: %q, want -ERR line too long", got)
	}
	if got := c.cmd("AUTH PLAIN " + strings.Repeat("A", 400)); got != "-ERR line too long" {
		t.Errorf("400-octet AUTH after login: %q, want -ERR line too long", got)
	}
}

// TestAUTHEmptyContinuation: "=" as a continuation line is an empty
// response (curl sends it for EXTERNAL without authzid).
func TestAUTHEmptyContinuation(t *testing.T) {
	b := newHistoryBackend(t)
	ts := newTestServer(t, b.memBackend, serverOpts{configure: func(s *Server) { s.Backend = b }})
	c := ts.dial(t)
	defer c.conn.Close()
	if got := c.cmd("AUTH LOGIN"); got != "+ "+base64.StdEncoding.EncodeToString([]byte("Username:")) {
		t.Fatalf("AUTH LOGIN: %q", got)
	}
	// An empty user name, then any password: a failed login, not a
	// protocol error.
	if got := c.cmd("="); !strings.HasPrefix(got, "+ ") {
		t.Fatalf("after \"=\": %q, want the password challenge", got)
	}
	if got := c.cmd(base64.StdEncoding.EncodeToString([]byte("x"))); got != authFailed {
		t.Errorf("login with an empty user name: %q, want %q", got, authFailed)
	}
}

// TestTLSResumption: TLS session resumption works (POP3 clients reconnect
// often), and SCRAM-SHA-256-PLUS with tls-server-end-point works on a
// resumed session too, which sends no certificate.
func TestTLSResumption(t *testing.T) {
	b := newHistoryBackend(t)
	ts := newTestServer(t, b.memBackend, serverOpts{configure: func(s *Server) { s.Backend = b }})
	cfg := clientTLSConfig()
	cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	for i, want := range []bool{false, true, true} {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: ioTimeout}, "tcp", ts.tlsAddr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		c := &testClient{t: t, conn: conn, r: bufio.NewReader(conn)}
		c.readGreeting() // TLS 1.3 tickets arrive after the handshake
		if got := conn.ConnectionState().DidResume; got != want {
			t.Errorf("connection %d: resumed %v, want %v", i, got, want)
		}
		for _, typ := range []string{sasl.TLSServerEndPoint, sasl.TLSExporter} {
			cb, err := sasl.ChannelBindingFromTLS(conn.ConnectionState(), typ)
			if err != nil {
				t.Fatal(err)
			}
			if got := saslLogin(t, c, sasl.SCRAMSHA256Plus, sasl.NewSCRAMSHA256Client("alice", alicePass, cb)); got != aliceLoggedIn() {
				t.Errorf("connection %d (resumed %v): SCRAM-SHA-256-PLUS with %s: %q", i, want, typ, got)
			}
			c.cmd("QUIT")
			c.expectClosed()
			if typ == sasl.TLSServerEndPoint {
				conn, err = tls.DialWithDialer(&net.Dialer{Timeout: ioTimeout}, "tcp", ts.tlsAddr, cfg)
				if err != nil {
					t.Fatal(err)
				}
				c = &testClient{t: t, conn: conn, r: bufio.NewReader(conn)}
				c.readGreeting()
			}
		}
	}
}
