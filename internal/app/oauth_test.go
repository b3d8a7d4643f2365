package app

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/popbox/popbox/config"
	"github.com/popbox/popbox/internal/testjwt"
	"github.com/popbox/popbox/pop3client"
	"github.com/popbox/popbox/pop3server"
	"github.com/popbox/popbox/sasl"
	"github.com/popbox/popbox/userdb"
	"github.com/popbox/popbox/userdb/passhash"
)

// TestOAuthLogin: tokens from an issuer whose JWKS file is configured log
// in existing, enabled users through OAUTHBEARER and XOAUTH2; a token of
// another issuer, of an unknown user or of a disabled one fails as a wrong
// password does; the login history names the mechanism.
func TestOAuthLogin(t *testing.T) {
	ctx := context.Background()
	issuer, err := testjwt.New("https://idp.test")
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := testjwt.New("https://idp.test") // same name, other key
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	jwks := filepath.Join(dir, "jwks.json")
	if err := os.WriteFile(jwks, issuer.JWKS(), 0o600); err != nil {
		t.Fatal(err)
	}
	tokens, err := NewTokenVerifier(config.OAuth{JWKSFile: jwks, Issuer: "https://idp.test", Audience: "popbox"})
	if err != nil || tokens == nil {
		t.Fatalf("NewTokenVerifier: %v, %v", tokens, err)
	}
	if none, err := NewTokenVerifier(config.OAuth{}); none != nil || err != nil {
		t.Errorf("NewTokenVerifier without configuration = %v, %v; want nil, nil", none, err)
	}

	data := DataDir(t.TempDir())
	users, err := userdb.Open(data.UsersPath(), userdb.Options{Hash: passhash.Params{Memory: 64, Time: 1, Threads: 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer users.Close()
	for _, u := range []string{"alice", "dora"} {
		if err := users.Add(ctx, u, u+"-secret"); err != nil {
			t.Fatal(err)
		}
	}
	if err := users.SetDisabled(ctx, "dora", true); err != nil {
		t.Fatal(err)
	}
	st, err := data.OpenStore(nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := &pop3server.Server{Backend: Backend{Users: users, Store: st}, AuthFailureDelay: -1, TokenVerifier: tokens}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	defer srv.Close()

	token := func(is *testjwt.Issuer, sub, aud string) string {
		tok, err := is.Token(sub, aud, nil)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	bearer := func(tok string) sasl.Client {
		return sasl.NewOAuthBearerClient(&sasl.OAuthBearerOptions{Token: tok})
	}
	tests := []struct {
		name    string
		cl      sasl.Client
		wantErr bool
	}{
		{"oauthbearer", bearer(token(issuer, "alice", "popbox")), false},
		{"xoauth2", sasl.NewXOAUTH2Client("alice", token(issuer, "alice", "popbox")), false},
		{"user in another case", bearer(token(issuer, "Alice", "popbox")), false},
		{"other audience", bearer(token(issuer, "alice", "webmail")), true},
		{"other key", bearer(token(stranger, "alice", "popbox")), true},
		{"unknown user", bearer(token(issuer, "mallory", "popbox")), true},
		{"disabled user", bearer(token(issuer, "dora", "popbox")), true},
		{"not a token", bearer("password"), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			cl, err := pop3client.Dial(cctx, l.Addr().String(), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			err = cl.Auth(cctx, tt.cl)
			var pe *pop3client.Error
			switch {
			case tt.wantErr && (!errors.As(err, &pe) || !strings.Contains(err.Error(), "[AUTH]")):
				t.Errorf("Auth = %v, want -ERR [AUTH]", err)
			case !tt.wantErr && err != nil:
				t.Errorf("Auth: %v", err)
			case err == nil:
				cl.Quit(cctx)
			}
		})
	}
	h, err := users.LoginHistory(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	var mechs []string
	for _, ev := range h.Successes {
		mechs = append(mechs, ev.Mechanism)
	}
	if got := strings.Join(mechs, " "); !strings.Contains(got, "OAUTHBEARER") || !strings.Contains(got, "XOAUTH2") {
		t.Errorf("alice's logins recorded with mechanisms %q, want OAUTHBEARER and XOAUTH2", got)
	}
}
