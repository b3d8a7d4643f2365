package sasl

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode"

	gosasl "github.com/emersion/go-sasl"
	"github.com/google/go-cmp/cmp"

	"github.com/popbox/popbox/oauth"
)

var errTokenBackend = errors.New("introspection endpoint unreachable")

// oauthCall is one call of the verifier.
type oauthCall struct{ User, Token string }

// testOAuthVerify decides by token: "good" is alice's, "bobs" bob's,
// "elodie" Élodie's, "down" fails as a system would, "nobody" is accepted
// without a user (a broken verifier); anything else is invalid.
func testOAuthVerify(calls *[]oauthCall) OAuthVerify {
	return func(user, token string) (string, error) {
		*calls = append(*calls, oauthCall{user, token})
		switch token {
		case "good":
			return "alice@example.com", nil
		case "bobs":
			return "bob@example.com", nil
		case "elodie":
			return "Élodie@example.com", nil
		case "comma":
			return "a,b=c", nil
		case "down":
			return "", fmt.Errorf("checking token: %w", errTokenBackend)
		case "nobody":
			return "", nil
		}
		return "", fmt.Errorf("%w: token expired", ErrOAuthInvalid)
	}
}

// oauthExchange is one client response and what the server must answer.
type oauthExchange struct {
	resp      []byte // nil: no initial response
	challenge string
	done      bool
	err       error // nil: no error; errAnyOAuth: any error
}

var errAnyOAuth = errors.New("any error")

const (
	reportPlain = `{"status":"invalid_token","schemes":"bearer"}`
	reportScope = `{"status":"invalid_token","schemes":"bearer","scope":"mail","openid-configuration":"https://idp.example.com/.well-known/openid-configuration"}`
)

func bs(s string) []byte { return []byte(s) }

func TestOAuthServer(t *testing.T) {
	scopeOpts := []OAuthOption{WithOAuthScope("mail"), WithOpenIDConfiguration("https://idp.example.com/.well-known/openid-configuration")}
	good := "n,,\x01auth=Bearer good\x01\x01"
	var manyPairs string
	for c := 'a'; c < 'a'+maxOAuthPairs; c++ {
		manyPairs += "\x01" + string(c) + "=y"
	}
	tests := []struct {
		name      string
		mech      string
		opts      []OAuthOption
		steps     []oauthExchange
		user      string // Username after the exchange
		canonical string
		sysErr    error
		calls     []oauthCall
	}{
		// OAUTHBEARER (RFC 7628).
		{name: "initial response", mech: OAuthBearer, steps: []oauthExchange{
			{resp: bs(good), done: true},
		}, canonical: "alice@example.com", calls: []oauthCall{{"", "good"}}},
		{name: "no initial response", mech: OAuthBearer, steps: []oauthExchange{
			{resp: nil, challenge: ""},
			{resp: bs(good), done: true},
		}, canonical: "alice@example.com", calls: []oauthCall{{"", "good"}}},
		{name: "RFC 7628 §4.1 example", mech: OAuthBearer, steps: []oauthExchange{
			{resp: bs("n,a=alice@example.com,\x01host=server.example.com\x01port=143\x01auth=Bearer good\x01\x01"), done: true},
		}, user: "alice@example.com", canonical: "alice@example.com", calls: []oauthCall{{"alice@example.com", "good"}}},
		{name: "authzid in another case", mech: OAuthBearer, steps: []oauthExchange{
			{resp: bs("n,a=Alice@Example.COM,\x01auth=Bearer good\x01\x01"), done: true},
		}, user: "Alice@Example.COM", canonical: "alice@example.com", calls: []oauthCall{{"Alice@Example.COM", "good"}}},
		{name: "escaped authzid", mech: OAuthBearer, steps: []oauthExchange{
			{resp: bs("n,a=a=2Cb=3dc,\x01auth=Bearer comma\x01\x01"), done: true},
		}, user: "a,b=c", canonical: "a,b=c", calls: []oauthCall{{"a,b=c", "comma"}}},
		{name: "scheme in any case, several spaces", mech: OAuthBearer, steps: []oauthExchange{
			{resp: bs("n,,\x01auth=bEARER   good\x01\x01"), done: true},
		}, canonical: "alice@example.com", calls: []oauthCall{{"", "good"}}},
		{name: "unknown keys skipped", mech: OAuthBearer, steps: []oauthExchange{
			{resp: bs("n,,\x01mfa=otp 123\x01auth=Bearer good\x01\x01"), done: true},
		}, canonical: "alice@example.com", calls: []oauthCall{{"", "good"}}},
		{name: "every b64token character", mech: OAuthBearer, steps: []oauthExchange{
			{resp: bs("n,,\x01auth=Bearer aZ09-._~+/==\x01\x01"), challenge: reportPlain},
			{resp: bs("\x01"), err: ErrOAuthInvalid},
		}, calls: []oauthCall{{"", "aZ09-._~+/=="}}},
		{name: "invalid token", mech: OAuthBearer, steps: []oauthExchange{
			{resp: bs(strings.Replace(good, "good", "expired", 1)), challenge: reportPlain},
			{resp: bs("\x01"), err: ErrOAuthInvalid},
			{resp: bs("\x01"), err: gosasl.ErrUnexpectedClientResponse},
		}, calls: []oauthCall{{"", "expired"}}},
		{name: "invalid token, scope reported", mech: OAuthBearer, opts: scopeOpts, steps: []oauthExchange{
			{resp: bs("n,a=alice@example.com,\x01auth=Bearer expired\x01\x01"), challenge: reportScope},
			{resp: bs("\x01"), err: ErrOAuthInvalid},
		}, user: "alice@example.com", calls: []oauthCall{{"alice@example.com", "expired"}}},
		{name: "invalid token, no dummy response", mech: OAuthBearer, steps: []oauthExchange{
			{resp: bs("n,,\x01auth=Bearer expired\x01\x01"), challenge: reportPlain},
			{resp: bs("n,,\x01auth=Bearer good\x01\x01"), err: ErrMalformedResponse},
		}, calls: []oauthCall{{"", "expired"}}},
		{name: "invalid token, empty dummy response", mech: OAuthBearer, steps: []oauthExchange{
			{resp: bs("n,,\x01auth=Bearer expired\x01\x01"), challenge: reportPlain},
			{resp: bs(""), err: ErrMalformedResponse},
		}, calls: []oauthCall{{"", "expired"}}},
		{name: "token of another user", mech: OAuthBearer, steps: []oauthExchange{
			{resp: bs("n,a=mallory@example.com,\x01auth=Bearer good\x01\x01"), challenge: reportPlain},
			{resp: bs("\x01"), err: ErrOAuthInvalid},
		}, user: "mallory@example.com", calls: []oauthCall{{"mallory@example.com", "good"}}},
		{name: "system error", mech: OAuthBearer, steps: []oauthExchange{
			{resp: bs("n,,\x01auth=Bearer down\x01\x01"), err: errTokenBackend},
			{resp: bs("\x01"), err: gosasl.ErrUnexpectedClientResponse},
		}, sysErr: errTokenBackend, calls: []oauthCall{{"", "down"}}},
		{name: "verifier returns no user", mech: OAuthBearer, steps: []oauthExchange{
			{resp: bs("n,,\x01auth=Bearer nobody\x01\x01"), err: errAnyOAuth},
		}, sysErr: errAnyOAuth, calls: []oauthCall{{"", "nobody"}}},

		// Malformed OAUTHBEARER messages never reach the verifier.
		// "y": the client could bind, the server offers no -PLUS: fine.
		{name: "channel binding y", mech: OAuthBearer, steps: []oauthExchange{{resp: bs("y,,\x01auth=Bearer good\x01\x01"), done: true}},
			canonical: "alice@example.com", calls: []oauthCall{{"", "good"}}},
		{name: "channel binding p", mech: OAuthBearer, steps: []oauthExchange{{resp: bs("p=tls-exporter,,\x01auth=Bearer good\x01\x01"), err: ErrMalformedResponse}}},
		{name: "no GS2 header", mech: OAuthBearer, steps: []oauthExchange{{resp: bs("\x01auth=Bearer good\x01\x01"), err: ErrMalformedResponse}}},
		{name: "GS2 header unterminated", mech: OAuthBearer, steps: []oauthExchange{{resp: bs("n,a=alice"), err: ErrMalformedResponse}}},
		{name: "no separator after GS2 header", mech: OAuthBearer, steps: []oauthExchange{{resp: bs("n,,auth=Bearer good\x01\x01"), err: ErrMalformedResponse}}},
		{name: "bad authzid key", mech: OAuthBearer, steps: []oauthExchange{{resp: bs("n,u=alice,\x01auth=Bearer good\x01\x01"), err: ErrMalformedResponse}}},
		{name: "empty authzid", mech: OAuthBearer, steps: []oauthExchange{{resp: bs("n,a=,\x01auth=Bearer good\x01\x01"), err: ErrMalformedResponse}}},
		{name: "bad escape", mech: OAuthBearer, steps: []oauthExchange{{resp: bs("n,a=al=ice,\x01auth=Bearer good\x01\x01"), err: ErrMalformedResponse}}},
		{name: "truncated escape", mech: OAuthBearer, steps: []oauthExchange{{resp: bs("n,a=alice=2,\x01auth=Bearer good\x01\x01"), err: ErrMalformedResponse}}},
		{name: "NUL in authzid", mech: OAuthBearer, steps: []oauthExchange{{resp: bs("n,a=al\x00ice,\x01auth=Bearer good\x01\x01"), err: ErrMalformedResponse}}},
		{name: "invalid UTF-8 in authzid", mech: OAuthBearer, steps: []oauthExchange{{resp: bs("n,a=al\xffice,\x01auth=Bearer good\x01\x01"), err: ErrMalformedResponse}}},
		{name: "authzid too long", mech: OAuthBearer, steps: []oauthExchange{{resp: bs("n,a=" + strings.Repeat("a", 300) + ",\x01auth=Bearer good\x01\x01"), err: ErrMalformedResponse}}},
		{name: "no auth", mech: OAuthBearer, steps: []oauthExchange{{resp: bs("n,,\x01host=example.com\x01\x01"), err: ErrMalformedResponse}}},
		{name: "no pairs", mech: OAuthBearer, steps: []oauthExchange{{resp: bs("n,,\x01\x01"), err: ErrMalformedResponse}}},
		{name: "unterminated", mech: OAuthBearer, steps: []oauthExchange{{resp: bs("n,,\x01auth=Bearer good\x01"), err: ErrMalformedResponse}}},
		{name: "no separator at all", mech: OAuthBearer, steps: []oauthExchange{{resp: bs("n,,\x01auth=Bearer good"), err: ErrMalformedResponse}}},
		{name: "data after the end", mech: OAuthBearer, steps: []oauthExchange{{resp: bs(good + "x"), err: ErrMalformedResponse}}},
		{name: "auth twice", mech: OAuthBearer, steps: []oauthExchange{{resp: bs("n,,\x01auth=Bearer good\x01auth=Bearer bobs\x01\x01"), err: ErrMalformedResponse}}},
		{name: "unknown key twice", mech: OAuthBearer, steps: []oauthExchange{{resp: bs("n,,\x01x=1\x01x=2\x01auth=Bearer good\x01\x01"), err: ErrMalformedResponse}}},
		{name: "key not alphabetic", mech: OAuthBearer, steps: []oauthExchange{{resp: bs("n,,\x01x1=y\x01auth=Bearer good\x01\x01"), err: ErrMalformedResponse}}},
		{name: "pair without =", mech: OAuthBearer, steps: []oauthExchange{{resp: bs("n,,\x01auth\x01\x01"), err: ErrMalformedResponse}}},
		{name: "control character in a value", mech: OAuthBearer, steps: []oauthExchange{{resp: bs("n,,\x01host=a\x00b\x01auth=Bearer good\x01\x01"), err: ErrMalformedResponse}}},
		{name: "non-ASCII in a value", mech: OAuthBearer, steps: []oauthExchange{{resp: bs("n,,\x01host=bücher.example\x01auth=Bearer good\x01\x01"), err: ErrMalformedResponse}}},
		{name: "Basic credentials", mech: OAuthBearer, steps: []oauthExchange{{resp: bs("n,,\x01auth=Basic YWxpY2U6c2VjcmV0\x01\x01"), err: ErrMalformedResponse}}},
		{name: "empty token", mech: OAuthBearer, steps: []oauthExchange{{resp: bs("n,,\x01auth=Bearer \x01\x01"), err: ErrMalformedResponse}}},
		{name: "scheme alone", mech: OAuthBearer, steps: []oauthExchange{{resp: bs("n,,\x01auth=Bearer\x01\x01"), err: ErrMalformedResponse}}},
		{name: "token with a space", mech: OAuthBearer, steps: []oauthExchange{{resp: bs("n,,\x01auth=Bearer go od\x01\x01"), err: ErrMalformedResponse}}},
		{name: "token with = inside", mech: OAuthBearer, steps: []oauthExchange{{resp: bs("n,,\x01auth=Bearer go=od\x01\x01"), err: ErrMalformedResponse}}},
		{name: "too many pairs", mech: OAuthBearer, steps: []oauthExchange{{resp: bs("n,," + manyPairs + "\x01auth=Bearer good\x01\x01"), err: ErrMalformedResponse}}},
		{name: "too long", mech: OAuthBearer, steps: []oauthExchange{{resp: bs("n,,\x01auth=Bearer " + strings.Repeat("a", maxOAuthResponse) + "\x01\x01"), err: ErrMalformedResponse}}},
		{name: "dummy response as initial response", mech: OAuthBearer, steps: []oauthExchange{{resp: bs("\x01"), err: ErrMalformedResponse}}},
		{name: "empty initial response", mech: OAuthBearer, steps: []oauthExchange{{resp: bs(""), err: ErrMalformedResponse}}},
		{name: "empty response to the empty challenge", mech: OAuthBearer, steps: []oauthExchange{
			{resp: nil, challenge: ""},
			{resp: bs(""), err: ErrMalformedResponse},
		}},

		// XOAUTH2.
		{name: "XOAUTH2", mech: XOAuth2, steps: []oauthExchange{
			{resp: bs("user=alice@example.com\x01auth=Bearer good\x01\x01"), done: true},
		}, user: "alice@example.com", canonical: "alice@example.com", calls: []oauthCall{{"alice@example.com", "good"}}},
		{name: "XOAUTH2 without initial response", mech: XOAuth2, steps: []oauthExchange{
			{resp: nil, challenge: ""},
			{resp: bs("user=alice@example.com\x01auth=Bearer good\x01\x01"), done: true},
		}, user: "alice@example.com", canonical: "alice@example.com", calls: []oauthCall{{"alice@example.com", "good"}}},
		{name: "XOAUTH2 pairs in another order", mech: XOAuth2, steps: []oauthExchange{
			{resp: bs("auth=Bearer good\x01user=ALICE@example.com\x01\x01"), done: true},
		}, user: "ALICE@example.com", canonical: "alice@example.com", calls: []oauthCall{{"ALICE@example.com", "good"}}},
		{name: "XOAUTH2 internationalized user", mech: XOAuth2, steps: []oauthExchange{
			{resp: bs("user=élodie@example.com\x01auth=Bearer elodie\x01\x01"), done: true},
		}, user: "élodie@example.com", canonical: "Élodie@example.com", calls: []oauthCall{{"élodie@example.com", "elodie"}}},
		{name: "XOAUTH2 empty user", mech: XOAuth2, steps: []oauthExchange{
			{resp: bs("user=\x01auth=Bearer good\x01\x01"), done: true},
		}, canonical: "alice@example.com", calls: []oauthCall{{"", "good"}}},
		{name: "XOAUTH2 invalid token, empty dummy", mech: XOAuth2, opts: scopeOpts[:1], steps: []oauthExchange{
			{resp: bs("user=alice@example.com\x01auth=Bearer expired\x01\x01"), challenge: `{"status":"invalid_token","schemes":"bearer","scope":"mail"}`},
			{resp: bs(""), err: ErrOAuthInvalid},
		}, user: "alice@example.com", calls: []oauthCall{{"alice@example.com", "expired"}}},
		{name: "XOAUTH2 invalid token, %x01 dummy", mech: XOAuth2, steps: []oauthExchange{
			{resp: bs("user=alice@example.com\x01auth=Bearer expired\x01\x01"), challenge: reportPlain},
			{resp: bs("\x01"), err: ErrOAuthInvalid},
		}, user: "alice@example.com", calls: []oauthCall{{"alice@example.com", "expired"}}},
		{name: "XOAUTH2 invalid token, another message", mech: XOAuth2, steps: []oauthExchange{
			{resp: bs("user=alice@example.com\x01auth=Bearer expired\x01\x01"), challenge: reportPlain},
			{resp: bs("user=alice@example.com\x01auth=Bearer good\x01\x01"), err: ErrMalformedResponse},
		}, user: "alice@example.com", calls: []oauthCall{{"alice@example.com", "expired"}}},
		{name: "XOAUTH2 token of another user", mech: XOAuth2, steps: []oauthExchange{
			{resp: bs("user=alice@example.com\x01auth=Bearer bobs\x01\x01"), challenge: reportPlain},
			{resp: bs(""), err: ErrOAuthInvalid},
		}, user: "alice@example.com", calls: []oauthCall{{"alice@example.com", "bobs"}}},
		{name: "XOAUTH2 system error", mech: XOAuth2, steps: []oauthExchange{
			{resp: bs("user=alice@example.com\x01auth=Bearer down\x01\x01"), err: errTokenBackend},
		}, user: "alice@example.com", sysErr: errTokenBackend, calls: []oauthCall{{"alice@example.com", "down"}}},
		{name: "XOAUTH2 without user", mech: XOAuth2, steps: []oauthExchange{{resp: bs("auth=Bearer good\x01\x01"), err: ErrMalformedResponse}}},
		{name: "XOAUTH2 without auth", mech: XOAuth2, steps: []oauthExchange{{resp: bs("user=alice@example.com\x01\x01"), err: ErrMalformedResponse}}},
		{name: "XOAUTH2 unterminated", mech: XOAuth2, steps: []oauthExchange{{resp: bs("user=alice@example.com\x01auth=Bearer good\x01"), err: ErrMalformedResponse}}},
		{name: "XOAUTH2 with a GS2 header", mech: XOAuth2, steps: []oauthExchange{{resp: bs(good), err: ErrMalformedResponse}}},
		{name: "XOAUTH2 control character in user", mech: XOAuth2, steps: []oauthExchange{{resp: bs("user=alice\u0085@example.com\x01auth=Bearer good\x01\x01"), err: ErrMalformedResponse}}},
		{name: "XOAUTH2 invalid UTF-8 in user", mech: XOAuth2, steps: []oauthExchange{{resp: bs("user=al\xc3ice\x01auth=Bearer good\x01\x01"), err: ErrMalformedResponse}}},
		{name: "XOAUTH2 user twice", mech: XOAuth2, steps: []oauthExchange{{resp: bs("user=a\x01user=b\x01auth=Bearer good\x01\x01"), err: ErrMalformedResponse}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var calls []oauthCall
			newServer := NewOAuthBearerServer
			if tt.mech == XOAuth2 {
				newServer = NewXOAuth2Server
			}
			srv := newServer(testOAuthVerify(&calls), tt.opts...)
			for i, st := range tt.steps {
				ch, done, err := srv.Next(st.resp)
				if st.err == nil && err != nil || st.err != nil && err == nil ||
					st.err != nil && st.err != errAnyOAuth && !errors.Is(err, st.err) ||
					done != st.done || string(ch) != st.challenge {
					t.Fatalf("step %d: Next(%q) = %q, %v, %v; want %q, %v, %v",
						i, st.resp, ch, done, err, st.challenge, st.done, st.err)
				}
				if err != nil {
					t.Logf("step %d: %v", i, err)
				}
				if (ch == nil) != (st.challenge == "" && (err != nil || done)) {
					t.Errorf("step %d: challenge %#v: nil only when the exchange ends", i, ch)
				}
			}
			if got := srv.Username(); got != tt.user {
				t.Errorf("Username() = %q, want %q", got, tt.user)
			}
			if got := srv.Canonical(); got != tt.canonical {
				t.Errorf("Canonical() = %q, want %q", got, tt.canonical)
			}
			switch err := srv.SysErr(); {
			case tt.sysErr == nil && err != nil:
				t.Errorf("SysErr() = %v, want nil", err)
			case tt.sysErr == errAnyOAuth && err == nil:
				t.Error("SysErr() = nil, want an error")
			case tt.sysErr != nil && tt.sysErr != errAnyOAuth && !errors.Is(err, tt.sysErr):
				t.Errorf("SysErr() = %v, want %v", err, tt.sysErr)
			}
			if diff := cmp.Diff(tt.calls, calls); diff != "" {
				t.Errorf("verifier calls (-want +got):\n%s", diff)
			}
		})
	}
}

// converseOAuth runs a client against a server. Without initial response,
// the client's message answers the server's empty challenge, as a protocol
// client does when it sends "AUTH OAUTHBEARER" alone.
func converseOAuth(t *testing.T, c Client, srv *OAuthServer, initial bool) error {
	t.Helper()
	_, ir, err := c.Start()
	if err != nil {
		t.Fatal(err)
	}
	resp := ir
	if !initial {
		ch, done, err := srv.Next(nil)
		if err != nil || done || len(ch) != 0 {
			t.Fatalf("Next(nil) = %q, %v, %v; want an empty challenge", ch, done, err)
		}
	}
	for range 4 {
		ch, done, err := srv.Next(resp)
		if err != nil {
			return err
		}
		if done {
			return nil
		}
		if resp, err = c.Next(ch); err != nil {
			t.Fatalf("client Next(%q): %v", ch, err)
		}
	}
	t.Fatal("exchange does not end")
	return nil
}

// Our clients (client_mech.go) and go-sasl's talk to our servers.
func TestOAuthServerWithClients(t *testing.T) {
	tests := []struct {
		name      string
		client    func() Client
		server    func(OAuthVerify) *OAuthServer
		canonical string // "" when the login must fail
		failure   error  // what the client's Failure must report
	}{
		{name: "OAUTHBEARER", canonical: "alice@example.com",
			client: func() Client {
				return NewOAuthBearerClient(&OAuthBearerOptions{Username: "alice@example.com", Token: "good", Host: "mail.example.com", Port: 995})
			},
			server: func(v OAuthVerify) *OAuthServer { return NewOAuthBearerServer(v) }},
		{name: "OAUTHBEARER without user", canonical: "alice@example.com",
			client: func() Client { return NewOAuthBearerClient(&OAuthBearerOptions{Token: "good"}) },
			server: func(v OAuthVerify) *OAuthServer { return NewOAuthBearerServer(v) }},
		{name: "OAUTHBEARER name needing escapes", canonical: "a,b=c",
			client: func() Client { return NewOAuthBearerClient(&OAuthBearerOptions{Username: "a,b=c", Token: "comma"}) },
			server: func(v OAuthVerify) *OAuthServer { return NewOAuthBearerServer(v) }},
		{name: "go-sasl OAUTHBEARER", canonical: "alice@example.com",
			client: func() Client {
				return gosasl.NewOAuthBearerClient(&OAuthBearerOptions{Username: "alice@example.com", Token: "good", Host: "mail.example.com", Port: 110})
			},
			server: func(v OAuthVerify) *OAuthServer { return NewOAuthBearerServer(v) }},
		{name: "OAUTHBEARER refused",
			client: func() Client {
				return NewOAuthBearerClient(&OAuthBearerOptions{Username: "alice@example.com", Token: "expired"})
			},
			server:  func(v OAuthVerify) *OAuthServer { return NewOAuthBearerServer(v, WithOAuthScope("mail")) },
			failure: &OAuthBearerError{Status: "invalid_token", Schemes: "bearer", Scope: "mail"}},
		{name: "XOAUTH2", canonical: "alice@example.com",
			client: func() Client { return NewXOAUTH2Client("alice@example.com", "good") },
			server: func(v OAuthVerify) *OAuthServer { return NewXOAuth2Server(v) }},
		{name: "XOAUTH2 refused",
			client: func() Client { return NewXOAUTH2Client("alice@example.com", "bobs") },
			server: func(v OAuthVerify) *OAuthServer {
				return NewXOAuth2Server(v, WithOAuthScope("https://mail.example.com/"))
			},
			failure: &XOAuth2Error{Status: "invalid_token", Schemes: "bearer", Scope: "https://mail.example.com/"}},
	}
	for _, tt := range tests {
		for _, initial := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/initial=%v", tt.name, initial), func(t *testing.T) {
				var calls []oauthCall
				c := tt.client()
				srv := tt.server(testOAuthVerify(&calls))
				err := converseOAuth(t, c, srv, initial)
				if tt.canonical != "" {
					if err != nil {
						t.Fatalf("exchange failed: %v", err)
					}
					if srv.Canonical() != tt.canonical {
						t.Errorf("Canonical() = %q, want %q", srv.Canonical(), tt.canonical)
					}
					return
				}
				if !errors.Is(err, ErrOAuthInvalid) {
					t.Fatalf("exchange ended with %v, want ErrOAuthInvalid", err)
				}
				fr, ok := c.(FailureReporter)
				if !ok {
					t.Fatalf("%T is not a FailureReporter", c)
				}
				if diff := cmp.Diff(tt.failure, fr.Failure()); diff != "" {
					t.Errorf("client's Failure (-want +got):\n%s", diff)
				}
			})
		}
	}
}

// checkOAuthInvariants runs a server through arbitrary responses and checks
// what must hold whatever the client sends.
func checkOAuthInvariants(t *testing.T, srv *OAuthServer, calls *[]oauthCall, responses ...[]byte) {
	ended := false
	for i, r := range responses {
		ch, done, err := srv.Next(r)
		if ended {
			if err == nil {
				t.Fatalf("step %d: Next after the end = %q, %v, nil", i, ch, done)
			}
			continue
		}
		if done && err != nil {
			t.Fatalf("step %d: done with error %v", i, err)
		}
		if err != nil && srv.SysErr() == nil && !errors.Is(err, ErrMalformedResponse) &&
			!errors.Is(err, ErrOAuthInvalid) && !errors.Is(err, gosasl.ErrUnexpectedClientResponse) {
			t.Fatalf("step %d: unexpected kind of error %v", i, err)
		}
		if done {
			if srv.Canonical() == "" {
				t.Fatal("done without a user")
			}
			if u := srv.Username(); u != "" && !strings.EqualFold(u, srv.Canonical()) {
				t.Fatalf("done as %q though the client named %q", srv.Canonical(), u)
			}
		}
		ended = done || err != nil
	}
	for _, c := range *calls {
		if c.Token == "" || strings.ContainsAny(c.Token, " \x00\x01\r\n") {
			t.Fatalf("verifier called with token %q", c.Token)
		}
		if len(c.User) > maxOAuthUser || strings.ContainsFunc(c.User, unicode.IsControl) {
			t.Fatalf("verifier called with user %q", c.User)
		}
	}
	if len(*calls) > 1 {
		t.Fatalf("verifier called %d times", len(*calls))
	}
}

func FuzzOAuthBearerServer(f *testing.F) {
	f.Add(true, []byte("n,a=alice@example.com,\x01host=example.com\x01port=110\x01auth=Bearer good\x01\x01"), []byte("\x01"))
	f.Add(false, []byte("n,,\x01auth=Bearer expired\x01\x01"), []byte("\x01"))
	f.Add(true, []byte("n,a=a=2Cb=3D,\x01auth=Bearer down\x01\x01"), []byte{})
	f.Add(true, []byte("y,,\x01auth=bearer good=\x01\x01"), []byte("\x01"))
	f.Fuzz(func(t *testing.T, initial bool, first, second []byte) {
		var calls []oauthCall
		srv := NewOAuthBearerServer(testOAuthVerify(&calls), WithOAuthScope("mail"))
		if initial {
			checkOAuthInvariants(t, srv, &calls, first, second, second)
		} else {
			checkOAuthInvariants(t, srv, &calls, nil, first, second, second)
		}
	})
}

func FuzzXOAuth2Server(f *testing.F) {
	f.Add(true, []byte("user=alice@example.com\x01auth=Bearer good\x01\x01"), []byte(""))
	f.Add(false, []byte("user=bob@example.com\x01auth=Bearer good\x01\x01"), []byte("\x01"))
	f.Add(true, []byte("auth=Bearer down\x01user=\x01\x01"), []byte{})
	f.Add(true, []byte("user=élodie\x01auth=Bearer elodie\x01\x01"), []byte{})
	f.Fuzz(func(t *testing.T, initial bool, first, second []byte) {
		var calls []oauthCall
		srv := NewXOAuth2Server(testOAuthVerify(&calls))
		if initial {
			checkOAuthInvariants(t, srv, &calls, first, second, second)
		} else {
			checkOAuthInvariants(t, srv, &calls, nil, first, second, second)
		}
	})
}

// tokenTable stands in for an oauth.JWKSVerifier or IntrospectionVerifier.
type tokenTable map[string]string

func (t tokenTable) Verify(_ context.Context, token string) (oauth.Identity, error) {
	if u, ok := t[token]; ok {
		return oauth.Identity{Username: u}, nil
	}
	return oauth.Identity{}, fmt.Errorf("%w: not active", oauth.ErrInvalidToken)
}

// verifyWith is the glue between an oauth.Verifier and the mechanisms:
// token problems become ErrOAuthInvalid (the client gets the error report
// and -ERR [AUTH]); anything else stays a system error (SysErr, and
// -ERR [SYS/TEMP]).
func verifyWith(v oauth.Verifier) OAuthVerify {
	return func(user, token string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		id, err := v.Verify(ctx, token)
		if errors.Is(err, oauth.ErrInvalidToken) {
			return "", fmt.Errorf("%w: %w", ErrOAuthInvalid, err)
		}
		return id.Username, err
	}
}

func ExampleNewOAuthBearerServer() {
	v := tokenTable{"2YotnFZFEjr1zCsicMWpAA": "alice@example.com"}

	// AUTH OAUTHBEARER with an initial response (RFC 7628 §4.1).
	srv := NewOAuthBearerServer(verifyWith(v), WithOAuthScope("pop3"))
	_, done, err := srv.Next([]byte("n,a=alice@example.com,\x01host=pop.example.com\x01port=995\x01auth=Bearer 2YotnFZFEjr1zCsicMWpAA\x01\x01"))
	fmt.Println(done, err, srv.Canonical())

	// A refused token: the error report, the client's %x01, the failure
	// (RFC 7628 §4.3).
	srv = NewOAuthBearerServer(verifyWith(v), WithOAuthScope("pop3"))
	challenge, _, _ := srv.Next([]byte("n,,\x01auth=Bearer expired\x01\x01"))
	fmt.Printf("%s\n", challenge)
	_, _, err = srv.Next([]byte{0x01})
	fmt.Println(errors.Is(err, ErrOAuthInvalid), srv.SysErr())
	// Output:
	// true <nil> alice@example.com
	// {"status":"invalid_token","schemes":"bearer","scope":"pop3"}
	// true <nil>
}

func ExampleNewXOAuth2Server() {
	v := tokenTable{"ya29.a0AfH6SMB": "alice@example.com"}

	// AUTH XOAUTH2 without initial response: an empty challenge first.
	srv := NewXOAuth2Server(verifyWith(v))
	challenge, _, _ := srv.Next(nil)
	fmt.Printf("%q\n", challenge)
	_, done, _ := srv.Next([]byte("user=alice@example.com\x01auth=Bearer ya29.a0AfH6SMB\x01\x01"))
	fmt.Println(done, srv.Canonical())
	// Output:
	// ""
	// true alice@example.com
}
