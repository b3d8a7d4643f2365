package pop3client

import (
	"bufio"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"

	gosasl "github.com/emersion/go-sasl"
	"github.com/xdg-go/scram"

	popsasl "github.com/popbox/popbox/sasl"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// fixedMech is a mechanism with a given initial response that answers every
// challenge with resp.
type fixedMech struct {
	name string
	ir   []byte
	resp []byte
}

func (m fixedMech) Start() (string, []byte, error) { return m.name, m.ir, nil }
func (m fixedMech) Next([]byte) ([]byte, error)    { return m.resp, nil }

// scramServer is a script action: the server side of an AUTH SCRAM-SHA-256
// exchange, by xdg-go/scram, for user with password. With skipFinal the
// server claims success without sending its signature.
func scramServer(user, password string, skipFinal bool) func(net.Conn, *bufio.Reader) (net.Conn, *bufio.Reader, error) {
	return func(conn net.Conn, r *bufio.Reader) (net.Conn, *bufio.Reader, error) {
		fail := func(err error) (net.Conn, *bufio.Reader, error) { return conn, r, err }
		client, err := scram.SHA256.NewClient(user, password, "")
		if err != nil {
			return fail(err)
		}
		creds, err := client.GetStoredCredentialsWithError(scram.KeyFactors{Salt: "QSXCR+Q6sek8bf92", Iters: 4096})
		if err != nil {
			return fail(err)
		}
		srv, err := scram.SHA256.NewServer(func(name string) (scram.StoredCredentials, error) {
			if name != user {
				return scram.StoredCredentials{}, errors.New("no such user")
			}
			return creds, nil
		})
		if err != nil {
			return fail(err)
		}
		conv := srv.NewConversation()
		readResp := func(prefix string) (string, error) {
			line, err := r.ReadString('\n')
			if err != nil {
				return "", err
			}
			rest, ok := strings.CutPrefix(strings.TrimSuffix(line, "\r\n"), prefix)
			if !ok {
				return "", fmt.Errorf("got %q, want prefix %q", line, prefix)
			}
			if rest == "*" {
				return "*", nil
			}
			b, err := base64.StdEncoding.DecodeString(rest)
			return string(b), err
		}
		c1, err := readResp("AUTH SCRAM-SHA-256 ")
		if err != nil {
			return fail(err)
		}
		s1, err := conv.Step(c1)
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(conn, "+ %s\r\n", b64(s1))
		c2, err := readResp("")
		if err != nil {
			return fail(err)
		}
		s2, _ := conv.Step(c2) // on a bad proof, s2 is "e=invalid-proof"
		if skipFinal {
			fmt.Fprintf(conn, "+OK\r\n")
			return conn, r, nil
		}
		fmt.Fprintf(conn, "+ %s\r\n", b64(s2))
		last, err := readResp("")
		switch {
		case err != nil:
			return fail(err)
		case last == "*":
			fmt.Fprintf(conn, "-ERR [AUTH] authentication failed\r\n")
		case last != "":
			return fail(fmt.Errorf("response to the server-final message %q, want empty", last))
		case conv.Valid():
			fmt.Fprintf(conn, "+OK\r\n")
		default:
			fmt.Fprintf(conn, "-ERR [AUTH] authentication failed\r\n")
		}
		return conn, r, nil
	}
}

// TestAuth drives AUTH (RFC 5034) through scripted exchanges. A NOOP after
// each exchange shows whether the session is still in step.
func TestAuth(t *testing.T) {
	longToken := strings.Repeat("t", 300)
	xoauthIR := "user=alice@example.com\x01auth=Bearer " + longToken + "\x01\x01"
	shortIR := "user=alice@example.com\x01auth=Bearer tok\x01\x01"
	jsonErr := `{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}`
	noop := step{recv: "NOOP\r\n", send: "+OK\r\n"}

	tests := []struct {
		name   string
		mech   gosasl.Client
		script []step
		check  func(t *testing.T, err error) // nil: Auth must succeed
		broken bool                          // the client must be unusable after
	}{{
		name:   "PLAIN initial response",
		mech:   plainClient("alice", "secret"),
		script: []step{{recv: "AUTH PLAIN " + b64("\x00alice\x00secret") + "\r\n", send: "+OK maildrop locked\r\n"}, noop},
	}, {
		name:   "empty initial response",
		mech:   fixedMech{name: "EXTERNAL", ir: []byte{}},
		script: []step{{recv: "AUTH EXTERNAL =\r\n", send: "+OK\r\n"}, noop},
	}, {
		name: "LOGIN",
		mech: popsasl.NewLoginClient("alice", "secret"),
		script: []step{
			{recv: "AUTH LOGIN\r\n", send: "+ " + b64("Username:") + "\r\n"},
			{recv: b64("alice") + "\r\n", send: "+ " + b64("Password:") + "\r\n"},
			{recv: b64("secret") + "\r\n", send: "+OK\r\n"},
			noop,
		},
	}, {
		name: "bare + challenges",
		mech: popsasl.NewLoginClient("alice", "secret"),
		script: []step{
			{recv: "AUTH LOGIN\r\n", send: "+\r\n"},
			{recv: b64("alice") + "\r\n", send: "+ \r\n"},
			{recv: b64("secret") + "\r\n", send: "+OK\r\n"},
			noop,
		},
	}, {
		// RFC 5034 §4: an initial response that would make the line
		// longer than 255 octets waits for the empty challenge.
		name: "long initial response deferred",
		mech: popsasl.NewXOAUTH2Client("alice@example.com", longToken),
		script: []step{
			{recv: "AUTH XOAUTH2\r\n", send: "+ \r\n"},
			{recv: b64(xoauthIR) + "\r\n", send: "+OK\r\n"},
			noop,
		},
	}, {
		name: "XOAUTH2 failure",
		mech: popsasl.NewXOAUTH2Client("alice@example.com", "tok"),
		script: []step{
			{recv: "AUTH XOAUTH2 " + b64(shortIR) + "\r\n", send: "+ " + b64(jsonErr) + "\r\n"},
			{recv: "\r\n", send: "-ERR [AUTH] invalid token\r\n"},
			noop,
		},
		check: func(t *testing.T, err error) {
			var e *Error
			if !errors.As(err, &e) || e.Code != "AUTH" {
				t.Errorf("error %v, want *Error with AUTH", err)
			}
			var xe *popsasl.XOAuth2Error
			if !errors.As(err, &xe) || xe.Status != "401" {
				t.Errorf("error %v does not carry the server's JSON report", err)
			}
		},
	}, {
		// RFC 7628 §3.2.3: the client answers the error with %x01.
		name: "OAUTHBEARER failure",
		mech: popsasl.NewOAuthBearerClient(&popsasl.OAuthBearerOptions{Username: "alice", Token: "tok"}),
		script: []step{
			{recv: "AUTH OAUTHBEARER " + b64("n,a=alice,\x01auth=Bearer tok\x01\x01") + "\r\n", send: "+ " + b64(jsonErr) + "\r\n"},
			{recv: b64("\x01") + "\r\n", send: "-ERR [AUTH] invalid token\r\n"},
			noop,
		},
		check: func(t *testing.T, err error) {
			var oe *popsasl.OAuthBearerError
			if !errors.As(err, &oe) || oe.Status != "401" {
				t.Errorf("error %v does not carry the server's JSON report", err)
			}
		},
	}, {
		// RFC 5034 §4: a challenge that is not base64 is cancelled.
		name: "challenge not base64",
		mech: popsasl.NewLoginClient("alice", "secret"),
		script: []step{
			{recv: "AUTH LOGIN\r\n", send: "+ !!!not base64\r\n"},
			{recv: "*\r\n", send: "-ERR AUTH cancelled\r\n"},
			noop,
		},
		check: func(t *testing.T, err error) {
			var e *Error
			if errors.Is(err, ErrProtocol) || !errors.As(err, &e) || !strings.Contains(err.Error(), "not base64") {
				t.Errorf("error %v, want a cancelled exchange with the server's -ERR", err)
			}
		},
	}, {
		name: "mechanism refuses a challenge",
		mech: popsasl.NewLoginClient("alice", "secret"),
		script: []step{
			{recv: "AUTH LOGIN\r\n", send: "+ " + b64("Username:") + "\r\n"},
			{recv: b64("alice") + "\r\n", send: "+ " + b64("Password:") + "\r\n"},
			{recv: b64("secret") + "\r\n", send: "+ " + b64("More?") + "\r\n"},
			{recv: "*\r\n", send: "-ERR cancelled\r\n"},
			noop,
		},
		check: func(t *testing.T, err error) {
			if !errors.Is(err, popsasl.ErrUnexpectedChallenge) {
				t.Errorf("error %v, want the mechanism's error", err)
			}
		},
	}, {
		name: "server accepts a cancelled exchange",
		mech: popsasl.NewLoginClient("alice", "secret"),
		script: []step{
			{recv: "AUTH LOGIN\r\n", send: "+ %%%\r\n"},
			{recv: "*\r\n", send: "+OK welcome anyway\r\n"},
		},
		check:  func(t *testing.T, err error) { checkIs(t, err, ErrProtocol) },
		broken: true,
	}, {
		name:   "garbage in the exchange",
		mech:   plainClient("alice", "secret"),
		script: []step{{recv: "AUTH PLAIN " + b64("\x00alice\x00secret") + "\r\n", send: "* OK IMAP4rev1\r\n"}},
		check:  func(t *testing.T, err error) { checkIs(t, err, ErrProtocol) },
		broken: true,
	}, {
		name: "endless challenges",
		mech: fixedMech{name: "X-ECHO", resp: []byte("x")},
		script: append([]step{{recv: "AUTH X-ECHO\r\n", send: "+ \r\n"}},
			repeatStep(step{recv: b64("x") + "\r\n", send: "+ \r\n"}, maxAuthRounds)...),
		check:  func(t *testing.T, err error) { checkIs(t, err, ErrProtocol) },
		broken: true,
	}, {
		name:   "SCRAM-SHA-256",
		mech:   popsasl.NewSCRAMSHA256Client("alice", "pencil", nil),
		script: []step{{do: scramServer("alice", "pencil", false)}, noop},
	}, {
		name:   "SCRAM-SHA-256 wrong password",
		mech:   popsasl.NewSCRAMSHA256Client("alice", "crayon", nil),
		script: []step{{do: scramServer("alice", "pencil", false)}, noop},
		check: func(t *testing.T, err error) {
			var e *Error
			if !errors.As(err, &e) || e.Code != "AUTH" || !strings.Contains(err.Error(), "invalid-proof") {
				t.Errorf("error %v, want the server's invalid-proof and its -ERR [AUTH]", err)
			}
		},
	}, {
		// The server never proves it knows the password: not to be trusted.
		name:   "SCRAM-SHA-256 without server signature",
		mech:   popsasl.NewSCRAMSHA256Client("alice", "pencil", nil),
		script: []step{{do: scramServer("alice", "pencil", true)}},
		check: func(t *testing.T, err error) {
			if err == nil || !strings.Contains(err.Error(), "without proving") {
				t.Errorf("error %v, want a failed server verification", err)
			}
		},
		broken: true,
	}, {
		name:   "mechanism fails to start",
		mech:   popsasl.NewPlainClient("", "al\x00ice", "pw"),
		script: []step{noop},
		check: func(t *testing.T, err error) {
			if err == nil {
				t.Error("no error")
			}
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := dialFake(t, greet, tt.script, nil)
			ctx := testCtx(t)
			err := c.Auth(ctx, tt.mech)
			if tt.check == nil {
				if err != nil {
					t.Fatalf("Auth: %v", err)
				}
			} else {
				tt.check(t, err)
			}
			for _, secret := range []string{"secret", "pencil", "crayon", longToken} {
				if err != nil && strings.Contains(err.Error(), secret) {
					t.Errorf("error %q shows a secret", err)
				}
			}
			nerr := c.Noop(ctx)
			if tt.broken != (nerr != nil) {
				t.Errorf("NOOP after AUTH: %v (want unusable: %v)", nerr, tt.broken)
			}
		})
	}
}

func repeatStep(s step, n int) []step {
	steps := make([]step, n)
	for i := range steps {
		steps[i] = s
	}
	return steps
}

func checkIs(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("error %v, want %v", err, target)
	}
}
