package pop3server

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/popbox/popbox/sasl"
)

// scramBackend adds SCRAM-SHA-256 to memBackend: credentials computed from
// the users' passwords, except for those in noCreds; lookupErr fails every
// lookup as a broken database would.
type scramBackend struct {
	*memBackend
	creds     map[string]sasl.SCRAMCredentials
	lookupErr error
}

func newSCRAMBackend(t testing.TB, noCreds ...string) *scramBackend {
	b := &scramBackend{memBackend: fixtureBackend(), creds: map[string]sasl.SCRAMCredentials{}}
	for user, pw := range map[string]string{"alice": alicePass, "bob": bobPass} {
		if strings.Contains(" "+strings.Join(noCreds, " ")+" ", " "+user+" ") {
			continue
		}
		c, err := sasl.NewSCRAMSHA256Credentials(pw, 0)
		if err != nil {
			t.Fatal(err)
		}
		b.creds[user] = c
	}
	return b
}

func (b *scramBackend) SCRAMCredentials(_ context.Context, _ ConnInfo, user string) (string, sasl.SCRAMCredentials, error) {
	if b.lookupErr != nil {
		return "", sasl.SCRAMCredentials{}, b.lookupErr
	}
	c, ok := b.creds[user]
	if !ok {
		return "", c, fmt.Errorf("no SCRAM credentials for %q: %w", user, ErrAuthFailed)
	}
	return user, c, nil
}

// scramLogin runs AUTH SCRAM-SHA-256 with the sasl package's client and
// returns the final reply.
func scramLogin(t *testing.T, c *testClient, user, pass string, initial bool) string {
	t.Helper()
	cl := sasl.NewSCRAMSHA256Client(user, pass, nil)
	_, resp, err := cl.Start()
	if err != nil {
		t.Fatal(err)
	}
	if initial {
		c.send("AUTH SCRAM-SHA-256 " + base64.StdEncoding.EncodeToString(resp))
	} else {
		c.send("AUTH SCRAM-SHA-256")
		if got := c.line(); got != "+ " {
			t.Fatalf("AUTH without initial response: %q, want an empty challenge", got)
		}
		c.send(base64.StdEncoding.EncodeToString(resp))
	}
	for {
		line := c.line()
		ch, ok := strings.CutPrefix(line, "+ ")
		if !ok {
			if strings.HasPrefix(line, "+OK") {
				if err := cl.(sasl.MutualAuthenticator).ServerVerified(); err != nil {
					t.Errorf("server not verified: %v", err)
				}
			}
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

// TestAUTHSCRAM runs whole exchanges with the sasl package's client.
func TestAUTHSCRAM(t *testing.T) {
	never := func(s *Server) { s.Plaintext = PlaintextNever }
	tests := []struct {
		name       string
		configure  func(*Server)
		noCreds    []string
		lookupErr  error
		user, pass string
		initial    bool
		want       string
	}{
		{name: "success", user: "alice", pass: alicePass, initial: true, want: aliceLoggedIn()},
		{name: "success without initial response", user: "alice", pass: alicePass, want: aliceLoggedIn()},
		{name: "password with spaces", user: "bob", pass: bobPass, initial: true, want: "+OK logged in, 0 messages (0 octets)"},
		{name: "no TLS needed", configure: never, user: "alice", pass: alicePass, initial: true, want: aliceLoggedIn()},
		{name: "wrong password", user: "alice", pass: "wrong", initial: true, want: authFailed},
		{name: "unknown user", user: "nobody", pass: alicePass, initial: true, want: authFailed},
		{name: "user without credentials", noCreds: []string{"alice"}, user: "alice", pass: alicePass, initial: true, want: authFailed},
		{name: "backend failure", lookupErr: errors.New("database down"), user: "alice", pass: alicePass, initial: true,
			want: "-ERR [SYS/TEMP] authentication temporarily unavailable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := newSCRAMBackend(t, tt.noCreds...)
			b.lookupErr = tt.lookupErr
			ts := newTestServer(t, b.memBackend, serverOpts{configure: func(s *Server) {
				s.Backend = b
				if tt.configure != nil {
					tt.configure(s)
				}
			}})
			c := ts.dial(t)
			if got := scramLogin(t, c, tt.user, tt.pass, tt.initial); got != tt.want {
				t.Errorf("reply %q, want %q", got, tt.want)
			}
		})
	}
}

// TestAUTHSCRAMProtocol checks the offer and malformed or cancelled
// exchanges, under PlaintextNever (SCRAM needs no TLS).
func TestAUTHSCRAMProtocol(t *testing.T) {
	tests := []struct {
		name  string
		plain bool // a Backend without SCRAM
		steps []step
	}{
		{name: "advertised by a SCRAMBackend, without TLS too", steps: []step{
			{send: "CAPA", want: "+OK capability list follows", body: capaSCRAM},
			{send: "AUTH", want: "+OK", body: []string{"SCRAM-SHA-256"}},
		}},
		{name: "not advertised by a plain Backend", plain: true, steps: []step{
			{send: "AUTH", want: "+OK", body: []string{}},
			{send: "AUTH SCRAM-SHA-256 " + b64("n,,n=alice,r=abc"), want: "-ERR unsupported authentication mechanism"},
		}},
		{name: "advertised beside the plaintext mechanisms over TLS", steps: []step{
			{send: "STLS", want: "+OK begin TLS negotiation", stls: true},
			{send: "AUTH", want: "+OK", body: []string{"PLAIN", "LOGIN", "SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"}},
		}},
		{name: "channel binding refused", steps: []step{
			{send: "AUTH SCRAM-SHA-256 " + b64("p=tls-exporter,,n=alice,r=abc"), want: authFailed},
		}},
		{name: "malformed client-first", steps: []step{
			{send: "AUTH SCRAM-SHA-256 " + b64("garbage"), want: authFailed},
		}},
		{name: "malformed client-final", steps: []step{
			{send: "AUTH SCRAM-SHA-256 " + b64("n,,n=alice,r=abc"), want: "+ *"},
			{send: b64("c=biws,r=abc,p=AAAA"), want: authFailed},
		}},
		{name: "cancel", steps: []step{
			{send: "AUTH SCRAM-SHA-256 " + b64("n,,n=alice,r=abc"), want: "+ *"},
			{send: "*", want: "-ERR authentication cancelled"},
			{send: "STAT", want: "-ERR STAT not valid before login"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := newSCRAMBackend(t)
			ts := newTestServer(t, b.memBackend, serverOpts{configure: func(s *Server) {
				if !tt.plain {
					s.Backend = b
				}
				s.Plaintext = PlaintextNever
			}})
			c := ts.dial(t)
			for i, st := range tt.steps {
				c.send(st.send)
				if got := c.line(); !matchReply(st.want, got) {
					t.Fatalf("step %d %q: reply %q, want %q", i, st.send, got, st.want)
				}
				if st.body != nil {
					if diff := cmp.Diff(st.body, c.bodyLines()); diff != "" {
						t.Fatalf("step %d %q: body (-want +got):\n%s", i, st.send, diff)
					}
				}
				if st.stls {
					c.handshake()
				}
			}
		})
	}
}

// capaSCRAM is CAPA before login under PlaintextNever with a SCRAMBackend:
// no USER, and SCRAM-SHA-256 alone in SASL.
var capaSCRAM = []string{"TOP", "UIDL", "SASL SCRAM-SHA-256", "RESP-CODES", "AUTH-RESP-CODE",
	"PIPELINING", "EXPIRE NEVER", "LOGIN-DELAY 0", "UTF8", "IMPLEMENTATION popbox-test", "STLS"}
