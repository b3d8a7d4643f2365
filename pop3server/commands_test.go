package pop3server

import (
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// step is one exchange of a scripted session.
type step struct {
	send   string   // a command line, sent with CRLF
	raw    string   // or: bytes sent exactly as they are
	read   bool     // or: send nothing, read the next reply
	want   string   // the status line; a trailing "*" makes it a prefix match
	body   []string // non-nil: a multi-line body with these lines follows
	stls   bool     // after the reply, run the client side of the TLS handshake
	closed bool     // after the reply, the server closes the connection
}

// sessionTest is one scripted session against a fresh fixture server.
type sessionTest struct {
	name        string
	implicitTLS bool
	configure   func(*Server)
	login       string // log in as this fixture user (alice or bob) first
	steps       []step
	events      []memEvent // non-nil: the maildrop events once the session is over
	box         []string   // non-nil: alice's UIDLs once the session is over
}

func runSessionTests(t *testing.T, tests []sessionTest) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := fixtureBackend()
			ts := newTestServer(t, b, serverOpts{configure: tt.configure})
			var c *testClient
			if tt.implicitTLS {
				c = ts.dialTLS(t)
			} else {
				c = ts.dial(t)
			}
			switch tt.login {
			case "alice":
				c.login("alice", alicePass)
			case "bob":
				c.login("bob", bobPass)
			}
			for i, st := range tt.steps {
				what := st.send
				switch {
				case st.read:
					what = "(nothing)"
				case st.raw != "":
					what = st.raw
					c.write(st.raw)
				default:
					c.send(st.send)
				}
				got := c.line()
				if !matchReply(st.want, got) {
					t.Fatalf("step %d %q: reply %q, want %q", i, what, got, st.want)
				}
				if st.body != nil {
					if diff := cmp.Diff(st.body, c.bodyLines()); diff != "" {
						t.Fatalf("step %d %q: body mismatch (-want +got):\n%s", i, what, diff)
					}
				}
				if st.stls {
					c.handshake()
				}
				if st.closed {
					c.expectClosed()
				}
			}
			c.close()
			ts.srv.Close() // waits for the session to end
			if tt.events != nil {
				if diff := cmp.Diff(tt.events, b.eventList(), cmpopts.EquateEmpty()); diff != "" {
					t.Errorf("maildrop events (-want +got):\n%s", diff)
				}
			}
			if tt.box != nil {
				if diff := cmp.Diff(tt.box, b.uidls("alice")); diff != "" {
					t.Errorf("alice's mailbox afterwards (-want +got):\n%s", diff)
				}
			}
		})
	}
}

func matchReply(want, got string) bool {
	if p, ok := strings.CutSuffix(want, "*"); ok {
		return strings.HasPrefix(got, p)
	}
	return got == want
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

var (
	capaBeforeLogin = []string{"TOP", "UIDL", "USER", "SASL PLAIN LOGIN", "RESP-CODES", "AUTH-RESP-CODE",
		"PIPELINING", "EXPIRE NEVER", "LOGIN-DELAY 0", "UTF8", "IMPLEMENTATION popbox-test", "STLS"}
	capaAfterLogin = []string{"TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE",
		"PIPELINING", "EXPIRE NEVER", "LOGIN-DELAY 0", "UTF8", "IMPLEMENTATION popbox-test"}
)

// without returns caps minus the named entries.
func without(caps []string, drop ...string) []string {
	var out []string
	for _, c := range caps {
		if !strings.Contains(" "+strings.Join(drop, " ")+" ", " "+c+" ") {
			out = append(out, c)
		}
	}
	return out
}

func aliceLoggedIn() string {
	return fmt.Sprintf("+OK logged in, 4 messages (%d octets)", fixtureTotal())
}

func listAll() []string {
	var out []string
	for i := range fixture {
		out = append(out, fmt.Sprintf("%d %d", i+1, fixtureSize(i+1)))
	}
	return out
}

// wireLines is fixture message n's wire form split into lines.
func wireLines(n int) []string {
	return strings.Split(strings.TrimSuffix(fixture[n-1].wire, "\r\n"), "\r\n")
}

const authFailed = "-ERR [AUTH] invalid user name or password"

func TestCAPA(t *testing.T) {
	noTLS := func(s *Server) { s.TLSConfig = nil }
	never := func(s *Server) { s.Plaintext = PlaintextNever }
	runSessionTests(t, []sessionTest{
		{name: "before login", steps: []step{
			{send: "CAPA", want: "+OK capability list follows", body: capaBeforeLogin},
		}},
		{name: "lower case", steps: []step{
			{send: "capa", want: "+OK capability list follows", body: capaBeforeLogin},
		}},
		{name: "after login", login: "alice", steps: []step{
			{send: "CAPA", want: "+OK capability list follows", body: capaAfterLogin},
		}},
		{name: "after USER before PASS", steps: []step{
			{send: "USER alice", want: "+OK send PASS"},
			{send: "CAPA", want: "+OK capability list follows", body: capaBeforeLogin},
		}},
		{name: "no STLS without TLSConfig", configure: noTLS, steps: []step{
			{send: "CAPA", want: "+OK capability list follows", body: without(capaBeforeLogin, "STLS")},
		}},
		{name: "no STLS under implicit TLS", implicitTLS: true, steps: []step{
			{send: "CAPA", want: "+OK capability list follows", body: without(capaBeforeLogin, "STLS")},
		}},
		{name: "no STLS after STLS", steps: []step{
			{send: "STLS", want: "+OK begin TLS negotiation", stls: true},
			{send: "CAPA", want: "+OK capability list follows", body: without(capaBeforeLogin, "STLS")},
		}},
		{name: "plaintext never hides USER and SASL PLAIN", configure: never, steps: []step{
			{send: "CAPA", want: "+OK capability list follows", body: without(capaBeforeLogin, "USER", "SASL PLAIN LOGIN")},
		}},
		{name: "plaintext never, after STLS", configure: never, steps: []step{
			{send: "STLS", want: "+OK begin TLS negotiation", stls: true},
			{send: "CAPA", want: "+OK capability list follows", body: without(capaBeforeLogin, "STLS")},
		}},
		{name: "plaintext never, implicit TLS", configure: never, implicitTLS: true, steps: []step{
			{send: "CAPA", want: "+OK capability list follows", body: without(capaBeforeLogin, "STLS")},
		}},
		{name: "after login over TLS", implicitTLS: true, login: "alice", steps: []step{
			{send: "CAPA", want: "+OK capability list follows", body: capaAfterLogin},
		}},
	})
}

func TestUSERPASS(t *testing.T) {
	runSessionTests(t, []sessionTest{
		{name: "good", steps: []step{
			{send: "USER alice", want: "+OK send PASS"},
			{send: "PASS " + alicePass, want: aliceLoggedIn()},
			{send: "STAT", want: fmt.Sprintf("+OK 4 %d", fixtureTotal())},
		}},
		{name: "lower case keywords", steps: []step{
			{send: "user alice", want: "+OK send PASS"},
			{send: "pass " + alicePass, want: aliceLoggedIn()},
		}},
		{name: "wrong password", steps: []step{
			{send: "USER alice", want: "+OK send PASS"},
			{send: "PASS wrong", want: authFailed},
			{send: "STAT", want: "-ERR STAT not valid before login"},
		}},
		{name: "unknown user", steps: []step{
			{send: "USER nobody", want: "+OK send PASS"},
			{send: "PASS " + alicePass, want: authFailed},
		}},
		{name: "password is case sensitive", steps: []step{
			{send: "USER alice", want: "+OK send PASS"},
			{send: "PASS SECRET", want: authFailed},
		}},
		{name: "PASS without USER", steps: []step{
			{send: "PASS " + alicePass, want: "-ERR USER first"},
		}},
		{name: "PASS after a failed PASS needs USER again", steps: []step{
			{send: "USER alice", want: "+OK send PASS"},
			{send: "PASS wrong", want: authFailed},
			{send: "PASS " + alicePass, want: "-ERR USER first"},
			{send: "USER alice", want: "+OK send PASS"},
			{send: "PASS " + alicePass, want: aliceLoggedIn()},
		}},
		{name: "password with spaces", steps: []step{
			{send: "USER bob", want: "+OK send PASS"},
			{send: "PASS " + bobPass, want: "+OK logged in, 0 messages (0 octets)"},
		}},
		{name: "password with spaces, first word only", steps: []step{
			{send: "USER bob", want: "+OK send PASS"},
			{send: "PASS pass", want: authFailed},
		}},
		{name: "leading space before PASS", steps: []step{
			{send: "USER alice", want: "+OK send PASS"},
			{send: " PASS " + alicePass, want: aliceLoggedIn()},
		}},
		{name: "USER without name", steps: []step{
			{send: "USER", want: "-ERR usage: USER name"},
		}},
		{name: "USER with two names", steps: []step{
			{send: "USER a b", want: "-ERR usage: USER name"},
		}},
		{name: "PASS without password", steps: []step{
			{send: "USER alice", want: "+OK send PASS"},
			{send: "PASS", want: "-ERR usage: PASS password"},
		}},
		{name: "second USER replaces the first", steps: []step{
			{send: "USER bob", want: "+OK send PASS"},
			{send: "USER alice", want: "+OK send PASS"},
			{send: "PASS " + alicePass, want: aliceLoggedIn()},
		}},
		{name: "UTF-8 user name", steps: []step{
			{send: "USER jörg", want: "+OK send PASS"},
			{send: "PASS x", want: authFailed},
		}},
		{name: "empty mailbox", login: "bob", steps: []step{
			{send: "STAT", want: "+OK 0 0"},
			{send: "LIST", want: "+OK 0 messages (0 octets)", body: []string{}},
			{send: "UIDL", want: "+OK", body: []string{}},
			{send: "RETR 1", want: "-ERR no such message"},
		}},
		{name: "backend failure is SYS/TEMP", configure: func(s *Server) {
			s.Backend.(*memBackend).setFault(func(b *memBackend) { b.authErr = fmt.Errorf("database down") })
		}, steps: []step{
			{send: "USER alice", want: "+OK send PASS"},
			{send: "PASS " + alicePass, want: "-ERR [SYS/TEMP] authentication temporarily unavailable"},
		}},
		{name: "open failure is SYS/TEMP", configure: func(s *Server) {
			s.Backend.(*memBackend).setFault(func(b *memBackend) { b.openErr = fmt.Errorf("disk on fire") })
		}, steps: []step{
			{send: "USER alice", want: "+OK send PASS"},
			{send: "PASS " + alicePass, want: "-ERR [SYS/TEMP] mailbox temporarily unavailable"},
			{send: "STAT", want: "-ERR STAT not valid before login"},
		}},
	})
}

func TestAUTH(t *testing.T) {
	runSessionTests(t, []sessionTest{
		{name: "bare AUTH lists mechanisms", steps: []step{
			{send: "AUTH", want: "+OK", body: []string{"PLAIN", "LOGIN"}},
		}},
		{name: "bare AUTH, plaintext not allowed", configure: func(s *Server) { s.Plaintext = PlaintextNever }, steps: []step{
			{send: "AUTH", want: "+OK", body: []string{}},
		}},
		{name: "PLAIN with initial response", steps: []step{
			{send: "AUTH PLAIN " + b64("\x00alice\x00"+alicePass), want: aliceLoggedIn()},
			{send: "STAT", want: fmt.Sprintf("+OK 4 %d", fixtureTotal())},
		}},
		{name: "mechanism name case-insensitive", steps: []step{
			{send: "auth plain " + b64("\x00alice\x00"+alicePass), want: aliceLoggedIn()},
		}},
		{name: "PLAIN then continuation", steps: []step{
			{send: "AUTH PLAIN", want: "+ "},
			{send: b64("\x00alice\x00" + alicePass), want: aliceLoggedIn()},
		}},
		{name: "password with spaces", steps: []step{
			{send: "AUTH PLAIN " + b64("\x00bob\x00"+bobPass), want: "+OK logged in, 0 messages (0 octets)"},
		}},
		{name: "authzid equal to user", steps: []step{
			{send: "AUTH PLAIN " + b64("alice\x00alice\x00"+alicePass), want: aliceLoggedIn()},
		}},
		{name: "authzid other than user refused", steps: []step{
			{send: "AUTH PLAIN " + b64("bob\x00alice\x00"+alicePass), want: authFailed},
			{send: "STAT", want: "-ERR STAT not valid before login"},
		}},
		{name: "wrong password", steps: []step{
			{send: "AUTH PLAIN " + b64("\x00alice\x00wrong"), want: authFailed},
		}},
		{name: "unknown user", steps: []step{
			{send: "AUTH PLAIN " + b64("\x00nobody\x00"+alicePass), want: authFailed},
		}},
		{name: "empty initial response", steps: []step{
			{send: "AUTH PLAIN =", want: authFailed},
			{send: "AUTH PLAIN " + b64("\x00alice\x00"+alicePass), want: aliceLoggedIn()},
		}},
		{name: "malformed PLAIN message", steps: []step{
			{send: "AUTH PLAIN " + b64("alice\x00"+alicePass), want: authFailed},
		}},
		{name: "cancel", steps: []step{
			{send: "AUTH PLAIN", want: "+ "},
			{send: "*", want: "-ERR authentication cancelled"},
			{send: "STAT", want: "-ERR STAT not valid before login"},
			{send: "CAPA", want: "+OK capability list follows", body: capaBeforeLogin},
		}},
		{name: "bad base64 initial response", steps: []step{
			{send: "AUTH PLAIN !!!!", want: "-ERR invalid base64 in initial response"},
		}},
		{name: "bad base64 continuation", steps: []step{
			{send: "AUTH PLAIN", want: "+ "},
			{send: "not base64!", want: "-ERR invalid base64 in authentication response"},
			{send: "CAPA", want: "+OK capability list follows", body: capaBeforeLogin},
		}},
		{name: "unknown mechanism", steps: []step{
			{send: "AUTH CRAM-MD5", want: "-ERR unsupported authentication mechanism"},
			{send: "AUTH X-UNKNOWN " + b64("x"), want: "-ERR unsupported authentication mechanism"},
		}},
		{name: "too many arguments", steps: []step{
			{send: "AUTH PLAIN a b", want: "-ERR usage: AUTH mechanism [initial-response]"},
		}},
		{name: "continuation line over MaxAuthLine", configure: func(s *Server) { s.Limits.MaxAuthLine = 1024 }, steps: []step{
			{send: "AUTH PLAIN", want: "+ "},
			{send: strings.Repeat("A", 2000), want: "-ERR authentication line too long"},
			{send: "AUTH PLAIN " + b64("\x00alice\x00"+alicePass), want: aliceLoggedIn()},
		}},
		{name: "continuation line longer than a command line", steps: []step{
			{send: "AUTH PLAIN", want: "+ "},
			{send: b64("\x00alice\x00" + strings.Repeat("p", 400)), want: authFailed},
		}},
		{name: "after login", login: "alice", steps: []step{
			{send: "AUTH PLAIN " + b64("\x00alice\x00"+alicePass), want: "-ERR AUTH not valid after login"},
		}},
	})
}

// TestAUTHLOGIN covers the LOGIN mechanism (draft-murchison-sasl-login-00)
// as Outlook and Thunderbird drive it.
func TestAUTHLOGIN(t *testing.T) {
	const (
		askUser = "+ VXNlcm5hbWU6" // "Username:"
		askPass = "+ UGFzc3dvcmQ6" // "Password:"
	)
	runSessionTests(t, []sessionTest{
		{name: "success", steps: []step{
			{send: "AUTH LOGIN", want: askUser},
			{send: b64("alice"), want: askPass},
			{send: b64(alicePass), want: aliceLoggedIn()},
			{send: "STAT", want: fmt.Sprintf("+OK 4 %d", fixtureTotal())},
		}},
		{name: "initial response is the user name", steps: []step{
			{send: "auth login " + b64("alice"), want: askPass},
			{send: b64(alicePass), want: aliceLoggedIn()},
		}},
		{name: "password with spaces", steps: []step{
			{send: "AUTH LOGIN", want: askUser},
			{send: b64("bob"), want: askPass},
			{send: b64(bobPass), want: "+OK logged in, 0 messages (0 octets)"},
		}},
		{name: "wrong password", steps: []step{
			{send: "AUTH LOGIN", want: askUser},
			{send: b64("alice"), want: askPass},
			{send: b64("wrong"), want: authFailed},
			{send: "STAT", want: "-ERR STAT not valid before login"},
		}},
		{name: "unknown user answered like a wrong password", steps: []step{
			{send: "AUTH LOGIN", want: askUser},
			{send: b64("nobody"), want: askPass},
			{send: b64(alicePass), want: authFailed},
		}},
		{name: "NUL in user name", steps: []step{
			{send: "AUTH LOGIN " + b64("alice\x00"), want: askPass},
			{send: b64(alicePass), want: authFailed},
		}},
		{name: "NUL in password", steps: []step{
			{send: "AUTH LOGIN " + b64("alice"), want: askPass},
			{send: b64(alicePass + "\x00"), want: authFailed},
		}},
		{name: "cancel at user name", steps: []step{
			{send: "AUTH LOGIN", want: askUser},
			{send: "*", want: "-ERR authentication cancelled"},
			{send: "STAT", want: "-ERR STAT not valid before login"},
		}},
		{name: "cancel at password", steps: []step{
			{send: "AUTH LOGIN", want: askUser},
			{send: b64("alice"), want: askPass},
			{send: "*", want: "-ERR authentication cancelled"},
			{send: "AUTH LOGIN " + b64("alice"), want: askPass},
			{send: b64(alicePass), want: aliceLoggedIn()},
		}},
		{name: "bad base64 initial response", steps: []step{
			{send: "AUTH LOGIN !!!!", want: "-ERR invalid base64 in initial response"},
		}},
		{name: "bad base64 password", steps: []step{
			{send: "AUTH LOGIN " + b64("alice"), want: askPass},
			{send: "not base64!", want: "-ERR invalid base64 in authentication response"},
			{send: "CAPA", want: "+OK capability list follows", body: capaBeforeLogin},
		}},
		{name: "plaintext policy applies", configure: func(s *Server) { s.Plaintext = PlaintextNever }, steps: []step{
			{send: "AUTH LOGIN", want: "-ERR [AUTH] " + plaintextRefused},
		}},
		{name: "allowed after STLS", configure: func(s *Server) { s.Plaintext = PlaintextNever }, steps: []step{
			{send: "STLS", want: "+OK begin TLS negotiation", stls: true},
			{send: "AUTH LOGIN " + b64("alice"), want: askPass},
			{send: b64(alicePass), want: aliceLoggedIn()},
		}},
	})
}

func TestSTLS(t *testing.T) {
	runSessionTests(t, []sessionTest{
		{name: "upgrade then login", steps: []step{
			{send: "STLS", want: "+OK begin TLS negotiation", stls: true},
			{send: "CAPA", want: "+OK capability list follows", body: without(capaBeforeLogin, "STLS")},
			{send: "STLS", want: "-ERR TLS already active"},
			{send: "USER alice", want: "+OK send PASS"},
			{send: "PASS " + alicePass, want: aliceLoggedIn()},
			{send: "RETR 1", want: fmt.Sprintf("+OK %d octets", fixtureSize(1)), body: wireLines(1)},
		}},
		{name: "USER before STLS is forgotten", steps: []step{
			{send: "USER alice", want: "+OK send PASS"},
			{send: "STLS", want: "+OK begin TLS negotiation", stls: true},
			{send: "PASS " + alicePass, want: "-ERR USER first"},
		}},
		{name: "after login", login: "alice", steps: []step{
			{send: "STLS", want: "-ERR STLS not valid after login"},
			{send: "STAT", want: fmt.Sprintf("+OK 4 %d", fixtureTotal())},
		}},
		{name: "without TLSConfig", configure: func(s *Server) { s.TLSConfig = nil }, steps: []step{
			{send: "STLS", want: "-ERR STLS not available"},
		}},
		{name: "under implicit TLS", implicitTLS: true, steps: []step{
			{send: "STLS", want: "-ERR TLS already active"},
		}},
		{name: "with an argument", steps: []step{
			{send: "STLS now", want: "-ERR STLS takes no arguments"},
			{send: "CAPA", want: "+OK capability list follows", body: capaBeforeLogin},
		}},
	})
}

func TestTransactionCommands(t *testing.T) {
	stat := fmt.Sprintf("+OK 4 %d", fixtureTotal())
	retr := func(n int) step {
		return step{send: fmt.Sprintf("RETR %d", n), want: fmt.Sprintf("+OK %d octets", fixtureSize(n)), body: wireLines(n)}
	}
	allUIDL := []string{"1 uid-1", "2 uid-2", "3 uid-3", "4 uid-4"}
	runSessionTests(t, []sessionTest{
		{name: "UTF8", steps: []step{
			{send: "UTF8", want: "+OK UTF8 enabled"},
			{send: "USER alice", want: "+OK send PASS"},
			{send: "PASS " + alicePass, want: aliceLoggedIn()},
		}},
		{name: "UTF8 with argument", steps: []step{
			{send: "UTF8 yes", want: "-ERR UTF8 takes no arguments"},
		}},
		{name: "STAT", login: "alice", steps: []step{
			{send: "STAT", want: stat},
			{send: "stat", want: stat},
			{send: "STAT 1", want: "-ERR STAT takes no arguments"},
		}},
		{name: "LIST", login: "alice", steps: []step{
			{send: "LIST", want: fmt.Sprintf("+OK 4 messages (%d octets)", fixtureTotal()), body: listAll()},
			{send: "LIST 2", want: fmt.Sprintf("+OK 2 %d", fixtureSize(2))},
			{send: "LIST 4", want: fmt.Sprintf("+OK 4 %d", fixtureSize(4))},
			{send: "LIST 5", want: "-ERR no such message"},
			{send: "LIST 0", want: "-ERR no such message"},
			{send: "LIST x", want: "-ERR no such message"},
			{send: "LIST 1 2", want: "-ERR too many arguments"},
		}},
		{name: "UIDL", login: "alice", steps: []step{
			{send: "UIDL", want: "+OK", body: allUIDL},
			{send: "UIDL 3", want: "+OK 3 uid-3"},
			{send: "UIDL 5", want: "-ERR no such message"},
			{send: "UIDL 1 2", want: "-ERR too many arguments"},
		}},
		{name: "RETR", login: "alice", steps: []step{
			retr(1), retr(2), retr(3), retr(4),
			{send: "RETR 0", want: "-ERR no such message"},
			{send: "RETR -1", want: "-ERR no such message"},
			{send: "RETR 5", want: "-ERR no such message"},
			{send: "RETR 99999999999999999999", want: "-ERR no such message"},
			{send: "RETR 1x", want: "-ERR no such message"},
			{send: "RETR +1", want: "-ERR no such message"},
			{send: "RETR", want: "-ERR usage: RETR msg"},
			{send: "RETR 1 2", want: "-ERR usage: RETR msg"},
			{send: "STAT", want: stat},
		}},
		{name: "TOP", login: "alice", steps: []step{
			{send: "TOP 1 0", want: "+OK top of message follows", body: []string{"From: a@example.org", "Subject: one", ""}},
			{send: "TOP 4 0", want: "+OK top of message follows", body: []string{"Subject: four", ""}},
			{send: "TOP 4 2", want: "+OK top of message follows", body: []string{"Subject: four", "", "body 1", "body 2"}},
			{send: "TOP 4 3", want: "+OK top of message follows", body: wireLines(4)},
			{send: "TOP 4 999999999", want: "+OK top of message follows", body: wireLines(4)},
			{send: "TOP 2 1", want: "+OK top of message follows", body: []string{"From: b@example.org", "Subject: two", "", ".leading dot"}},
			{send: "TOP 2 100", want: "+OK top of message follows", body: wireLines(2)},
			{send: "TOP 3 0", want: "+OK top of message follows", body: wireLines(3)},
			{send: "TOP 3 2", want: "+OK top of message follows", body: wireLines(3)},
			{send: "TOP 5 0", want: "-ERR no such message"},
			{send: "TOP 0 0", want: "-ERR no such message"},
			{send: "TOP 1 -1", want: "-ERR invalid line count"},
			{send: "TOP 1 x", want: "-ERR invalid line count"},
			{send: "TOP 1", want: "-ERR usage: TOP msg lines"},
			{send: "TOP", want: "-ERR usage: TOP msg lines"},
			{send: "TOP 1 2 3", want: "-ERR usage: TOP msg lines"},
		}},
		{name: "DELE", login: "alice", steps: []step{
			{send: "DELE 1", want: "+OK message 1 deleted"},
			{send: "DELE 1", want: "-ERR message 1 already deleted"},
			{send: "LIST 1", want: "-ERR message 1 already deleted"},
			{send: "UIDL 1", want: "-ERR message 1 already deleted"},
			{send: "RETR 1", want: "-ERR message 1 already deleted"},
			{send: "TOP 1 0", want: "-ERR message 1 already deleted"},
			{send: "STAT", want: fmt.Sprintf("+OK 3 %d", fixtureTotal()-fixtureSize(1))},
			{send: "LIST", want: fmt.Sprintf("+OK 3 messages (%d octets)", fixtureTotal()-fixtureSize(1)), body: listAll()[1:]},
			{send: "UIDL", want: "+OK", body: allUIDL[1:]},
			{send: "LIST 2", want: fmt.Sprintf("+OK 2 %d", fixtureSize(2))},
			{send: "DELE 5", want: "-ERR no such message"},
			{send: "DELE", want: "-ERR usage: DELE msg"},
			{send: "DELE 2 3", want: "-ERR usage: DELE msg"},
		}, events: []memEvent{{User: "alice", Kind: "close"}}, box: []string{"uid-1", "uid-2", "uid-3", "uid-4"}},
		{name: "RSET", login: "alice", steps: []step{
			{send: "DELE 1", want: "+OK message 1 deleted"},
			{send: "DELE 3", want: "+OK message 3 deleted"},
			{send: "RSET", want: fmt.Sprintf("+OK maildrop has 4 messages (%d octets)", fixtureTotal())},
			{send: "LIST", want: "+OK 4 messages*", body: listAll()},
			retr(1),
			{send: "RSET 1", want: "-ERR RSET takes no arguments"},
			{send: "QUIT", want: "+OK popbox signing off (4 messages left)", closed: true},
		}, events: []memEvent{{User: "alice", Kind: "commit", Deleted: []string{}}}, box: []string{"uid-1", "uid-2", "uid-3", "uid-4"}},
		{name: "NOOP", login: "alice", steps: []step{
			{send: "NOOP", want: "+OK"},
			{send: "noop", want: "+OK"},
			{send: "NOOP 1", want: "-ERR NOOP takes no arguments"},
		}},
		{name: "QUIT in AUTHORIZATION", steps: []step{
			{send: "QUIT", want: "+OK popbox signing off", closed: true},
		}, events: []memEvent{}},
		{name: "QUIT after USER", steps: []step{
			{send: "USER alice", want: "+OK send PASS"},
			{send: "QUIT", want: "+OK popbox signing off", closed: true},
		}, events: []memEvent{}},
		{name: "QUIT in TRANSACTION, nothing deleted", login: "alice", steps: []step{
			{send: "QUIT", want: "+OK popbox signing off (4 messages left)", closed: true},
		}, events: []memEvent{{User: "alice", Kind: "commit", Deleted: []string{}}}},
		{name: "QUIT in TRANSACTION applies deletions", login: "alice", steps: []step{
			{send: "DELE 2", want: "+OK message 2 deleted"},
			{send: "DELE 4", want: "+OK message 4 deleted"},
			{send: "QUIT", want: "+OK popbox signing off (2 messages left)", closed: true},
		}, events: []memEvent{{User: "alice", Kind: "commit", Deleted: []string{"uid-2", "uid-4"}}},
			box: []string{"uid-1", "uid-3"}},
		{name: "QUIT with argument still quits", login: "alice", steps: []step{
			{send: "QUIT now", want: "+OK popbox signing off (4 messages left)", closed: true},
		}},
		{name: "commit failure", login: "alice", configure: func(s *Server) {
			s.Backend.(*memBackend).setFault(func(b *memBackend) { b.commitErr = fmt.Errorf("fsync failed") })
		}, steps: []step{
			{send: "DELE 1", want: "+OK message 1 deleted"},
			{send: "QUIT", want: "-ERR [SYS/TEMP] some deleted messages not removed", closed: true},
		}, events: []memEvent{{User: "alice", Kind: "close"}}, box: []string{"uid-1", "uid-2", "uid-3", "uid-4"}},
	})
}

func TestWrongState(t *testing.T) {
	var before, after []step
	for _, c := range []string{"STAT", "LIST", "LIST 1", "UIDL", "UIDL 1", "RETR 1", "TOP 1 0", "DELE 1", "NOOP", "RSET"} {
		name := strings.Fields(c)[0]
		before = append(before, step{send: c, want: "-ERR " + name + " not valid before login"})
	}
	for _, c := range []string{"USER alice", "PASS " + alicePass, "AUTH", "AUTH PLAIN " + b64("\x00alice\x00"+alicePass), "STLS", "UTF8"} {
		name := strings.Fields(c)[0]
		after = append(after, step{send: c, want: "-ERR " + name + " not valid after login"})
	}
	// Valid commands in between keep the error counter below MaxBadCommands.
	before = append(before, step{send: "CAPA", want: "+OK*", body: capaBeforeLogin})
	after = append(after, step{send: "STAT", want: fmt.Sprintf("+OK 4 %d", fixtureTotal())})
	runSessionTests(t, []sessionTest{
		{name: "transaction commands before login", steps: before, events: []memEvent{}},
		{name: "authorization commands after login", login: "alice", steps: after,
			events: []memEvent{{User: "alice", Kind: "close"}}},
	})
}

func TestBadCommands(t *testing.T) {
	runSessionTests(t, []sessionTest{
		{name: "before login", steps: []step{
			{send: "XYZZY", want: "-ERR unknown command"},
			{send: "APOP alice 0123456789abcdef0123456789abcdef", want: "-ERR unknown command"},
			{send: "", want: "-ERR empty command"},
			{send: "   ", want: "-ERR empty command"},
			{send: "ABCDEFGHIJKLMNOPQ", want: "-ERR invalid command syntax"},
			{send: "LI$T", want: "-ERR invalid command syntax"},
			{send: "LIST 1 2 3 4 5", want: "-ERR too many arguments"},
			{raw: "NO\x00OP\r\n", want: "-ERR invalid command syntax"},
			{raw: "USER \xff\xfe\r\n", want: "-ERR invalid command syntax"},
			{raw: "USER a\tb\r\n", want: "-ERR invalid command syntax"},
			{raw: "USER a\x7f\r\n", want: "-ERR invalid command syntax"},
			{raw: "CAPA\n", want: "+OK capability list follows", body: capaBeforeLogin},
		}},
		{name: "after login", login: "alice", steps: []step{
			{send: "XYZZY", want: "-ERR unknown command"},
			{raw: "LIST \xc3\x28\r\n", want: "-ERR invalid command syntax"},
			{raw: "LIST 1\x00\r\n", want: "-ERR invalid command syntax"},
			{raw: "STAT\n", want: fmt.Sprintf("+OK 4 %d", fixtureTotal())},
			{raw: "LIST  2 \r\n", want: fmt.Sprintf("+OK 2 %d", fixtureSize(2))},
		}},
		{name: "line of exactly MaxLine octets", steps: []step{
			{send: "USER " + strings.Repeat("a", 255-len("USER ")-2), want: "+OK send PASS"},
			{send: "USER " + strings.Repeat("a", 255-len("USER ")-1), want: "-ERR line too long"},
			{send: "CAPA", want: "+OK*", body: capaBeforeLogin},
		}},
		{name: "100 KB line", login: "alice", steps: []step{
			{send: "LIST " + strings.Repeat("9", 100<<10), want: "-ERR line too long"},
			{send: "LIST 1", want: fmt.Sprintf("+OK 1 %d", fixtureSize(1))},
			{raw: strings.Repeat("x", 100<<10) + "\nSTAT\r\n", want: "-ERR line too long"},
			{read: true, want: fmt.Sprintf("+OK 4 %d", fixtureTotal())},
		}},
		{name: "MaxLine raised", configure: func(s *Server) { s.Limits.MaxLine = 1000 }, steps: []step{
			{send: "USER " + strings.Repeat("a", 900), want: "+OK send PASS"},
		}},
	})
}
