package sasl

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// exchange is one step of a client conversation: a challenge and the
// response (or error) the mechanism must give.
type exchange struct {
	challenge string
	response  string
	wantErr   bool
}

func TestClients(t *testing.T) {
	tests := []struct {
		name     string
		client   Client
		mech     string
		ir       *string // nil: no initial response
		startErr bool
		steps    []exchange
		failure  error // what Failure reports at the end (FailureReporter)
	}{{
		name:   "PLAIN",
		client: NewPlainClient("", "alice", "secret"),
		mech:   Plain, ir: ptr("\x00alice\x00secret"),
	}, {
		name:   "PLAIN with authorization identity",
		client: NewPlainClient("admin", "alice", "secret"),
		mech:   Plain, ir: ptr("admin\x00alice\x00secret"),
	}, {
		name:     "PLAIN refuses NUL",
		client:   NewPlainClient("", "alice", "sec\x00ret"),
		startErr: true,
	}, {
		// draft-murchison-sasl-login: answer by position, whatever the
		// prompt says.
		name:   "LOGIN",
		client: NewLoginClient("alice", "secret"),
		mech:   Login,
		steps: []exchange{
			{challenge: "User Name\x00", response: "alice"},
			{challenge: "", response: "secret"},
			{challenge: "again?", wantErr: true},
		},
	}, {
		name:   "XOAUTH2",
		client: NewXOAUTH2Client("alice@example.com", "ya29.token"),
		mech:   XOAuth2, ir: ptr("user=alice@example.com\x01auth=Bearer ya29.token\x01\x01"),
	}, {
		name:   "XOAUTH2 failure",
		client: NewXOAUTH2Client("alice@example.com", "ya29.token"),
		mech:   XOAuth2, ir: ptr("user=alice@example.com\x01auth=Bearer ya29.token\x01\x01"),
		steps: []exchange{
			{challenge: `{"status":"400","schemes":"Bearer","scope":"https://mail.google.com/"}`, response: ""},
			{challenge: "x", wantErr: true},
		},
		failure: &XOAuth2Error{Status: "400", Schemes: "Bearer", Scope: "https://mail.google.com/"},
	}, {
		name:   "XOAUTH2 failure without JSON",
		client: NewXOAUTH2Client("alice@example.com", "t"),
		mech:   XOAuth2, ir: ptr("user=alice@example.com\x01auth=Bearer t\x01\x01"),
		steps: []exchange{{challenge: "not json", response: ""}},
	}, {
		name:     "XOAUTH2 refuses ^A",
		client:   NewXOAUTH2Client("alice", "to\x01ken"),
		startErr: true,
	}, {
		// RFC 7628 §3.1, with RFC 5801 §4 escaping in the authzid.
		name:   "OAUTHBEARER",
		client: NewOAuthBearerClient(&OAuthBearerOptions{Username: "a=b,c", Token: "tok", Host: "mail.example.com", Port: 995}),
		mech:   OAuthBearer, ir: ptr("n,a=a=3Db=2Cc,\x01host=mail.example.com\x01port=995\x01auth=Bearer tok\x01\x01"),
	}, {
		name:   "OAUTHBEARER without user",
		client: NewOAuthBearerClient(&OAuthBearerOptions{Token: "tok"}),
		mech:   OAuthBearer, ir: ptr("n,,\x01auth=Bearer tok\x01\x01"),
	}, {
		// RFC 7628 §3.2.3: the error challenge is answered with %x01.
		name:   "OAUTHBEARER failure",
		client: NewOAuthBearerClient(&OAuthBearerOptions{Username: "alice", Token: "tok"}),
		mech:   OAuthBearer, ir: ptr("n,a=alice,\x01auth=Bearer tok\x01\x01"),
		steps: []exchange{
			{challenge: `{"status":"invalid_token","schemes":"bearer"}`, response: "\x01"},
			{challenge: "{}", wantErr: true},
		},
		failure: &OAuthBearerError{Status: "invalid_token", Schemes: "bearer"},
	}, {
		name:   "OAUTHBEARER challenge not JSON",
		client: NewOAuthBearerClient(&OAuthBearerOptions{Token: "tok"}),
		mech:   OAuthBearer, ir: ptr("n,,\x01auth=Bearer tok\x01\x01"),
		steps: []exchange{{challenge: "nope", wantErr: true}},
	}, {
		name:     "OAUTHBEARER refuses ^A",
		client:   NewOAuthBearerClient(&OAuthBearerOptions{Token: "a\x01b"}),
		startErr: true,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mech, ir, err := tt.client.Start()
			if tt.startErr {
				if err == nil {
					t.Fatalf("Start succeeded")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if mech != tt.mech {
				t.Errorf("mechanism %q, want %q", mech, tt.mech)
			}
			if diff := cmp.Diff(tt.ir, optional(ir)); diff != "" {
				t.Errorf("initial response (-want +got):\n%s", diff)
			}
			for i, st := range tt.steps {
				resp, err := tt.client.Next([]byte(st.challenge))
				if st.wantErr {
					if err == nil {
						t.Errorf("step %d: Next(%q) succeeded", i, st.challenge)
					}
					continue
				}
				if err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				if resp == nil {
					t.Errorf("step %d: nil response, want a (possibly empty) one", i)
				}
				if diff := cmp.Diff(st.response, string(resp)); diff != "" {
					t.Errorf("step %d: response (-want +got):\n%s", i, diff)
				}
			}
			if fr, ok := tt.client.(FailureReporter); ok {
				got := fr.Failure()
				if diff := cmp.Diff(tt.failure, got, cmp.Comparer(func(a, b error) bool {
					return a == nil && b == nil || a != nil && b != nil && a.Error() == b.Error()
				})); diff != "" {
					t.Errorf("Failure (-want +got):\n%s", diff)
				}
			} else if tt.failure != nil {
				t.Errorf("%T is not a FailureReporter", tt.client)
			}
		})
	}
}

func ptr(s string) *string { return &s }

func optional(b []byte) *string {
	if b == nil {
		return nil
	}
	s := string(b)
	return &s
}

func TestFailureErrorsAs(t *testing.T) {
	c := NewXOAUTH2Client("u", "t")
	c.Start()
	c.Next([]byte(`{"status":"401"}`))
	var xe *XOAuth2Error
	if !errors.As(c.(FailureReporter).Failure(), &xe) || xe.Status != "401" {
		t.Errorf("Failure %v is not an *XOAuth2Error with status 401", c.(FailureReporter).Failure())
	}
}

func TestStrongest(t *testing.T) {
	all := []string{"LOGIN", "PLAIN", "XOAUTH2", "OAUTHBEARER", "SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"}
	tests := []struct {
		name             string
		offered, allowed []string
		want             string
	}{
		{"everything", all, nil, SCRAMSHA256Plus},
		{"no channel binding", all, []string{SCRAMSHA256, Plain}, SCRAMSHA256},
		{"tokens only", all, []string{XOAuth2, OAuthBearer}, OAuthBearer},
		{"XOAUTH2 over PLAIN", []string{"PLAIN", "XOAUTH2"}, nil, XOAuth2},
		{"PLAIN over LOGIN", []string{"LOGIN", "PLAIN"}, nil, Plain},
		{"LOGIN only", []string{"LOGIN"}, nil, Login},
		{"case-insensitive", []string{"plain", "scram-sha-256"}, []string{"Plain", "SCRAM-sha-256"}, SCRAMSHA256},
		{"unknown mechanisms never chosen", []string{"CRAM-MD5", "GSSAPI", "SCRAM-SHA-1"}, nil, ""},
		{"allowed but not offered", []string{"PLAIN"}, []string{SCRAMSHA256}, ""},
		{"nothing offered", nil, nil, ""},
		{"nothing allowed", all, []string{}, ""},
	}
	for _, tt := range tests {
		if got := Strongest(tt.offered, tt.allowed); got != tt.want {
			t.Errorf("%s: Strongest(%q, %q) = %q, want %q", tt.name, tt.offered, tt.allowed, got, tt.want)
		}
	}
}
