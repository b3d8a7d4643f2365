package oauth_test

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"time"

	"github.com/popbox/popbox/oauth"
)

// A JWKSVerifier checks JWT access tokens against the provider's public
// keys, saved in a file (here written on the spot; in production it is a
// copy of the provider's jwks_uri document).
func ExampleNewJWKSVerifier() {
	key := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)) // the provider's key
	enc := base64.RawURLEncoding.EncodeToString
	dir, err := os.MkdirTemp("", "jwks")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	jwks := filepath.Join(dir, "jwks.json")
	set := `{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"k1","use":"sig","x":"` + enc(key.Public().(ed25519.PublicKey)) + `"}]}`
	if err := os.WriteFile(jwks, []byte(set), 0o644); err != nil {
		log.Fatal(err)
	}

	v, err := oauth.NewJWKSVerifier(oauth.JWKSConfig{
		File:          jwks,
		Issuer:        "https://idp.example.com",
		Audience:      "pop3.example.com",
		UsernameClaim: "email",
		Now:           func() time.Time { return time.Unix(1767225600, 0) }, // for the example's fixed token
	})
	if err != nil {
		log.Fatal(err)
	}

	// What the provider would issue, and the client send in AUTH OAUTHBEARER.
	input := enc([]byte(`{"alg":"EdDSA","typ":"at+jwt","kid":"k1"}`)) + "." +
		enc([]byte(`{"iss":"https://idp.example.com","aud":"pop3.example.com","sub":"8f14e45f","email":"alice@example.com","exp":1767229200,"scope":"pop3"}`))
	token := input + "." + enc(ed25519.Sign(key, []byte(input)))

	id, err := v.Verify(context.Background(), token)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(id.Username, id.Expiry.UTC().Format(time.RFC3339), id.Scopes)

	_, err = v.Verify(context.Background(), token[:len(token)-4]+"AAAA")
	fmt.Println(errors.Is(err, oauth.ErrInvalidToken))
	// Output:
	// alice@example.com 2026-01-01T01:00:00Z [pop3]
	// true
}

// An IntrospectionVerifier asks the authorization server about each token.
// Token problems wrap ErrInvalidToken; anything else means the endpoint
// could not answer, and the POP3 server should say [SYS/TEMP].
func ExampleNewIntrospectionVerifier() {
	endpoint := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if id, secret, _ := r.BasicAuth(); id != "popbox" || secret != "s3cret" {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		switch r.PostFormValue("token") {
		case "2YotnFZFEjr1zCsicMWpAA":
			fmt.Fprint(w, `{"active":true,"username":"alice@example.com","scope":"pop3"}`)
		case "down":
			http.Error(w, "maintenance", http.StatusServiceUnavailable)
		default:
			fmt.Fprint(w, `{"active":false}`)
		}
	}))
	defer endpoint.Close()

	v, err := oauth.NewIntrospectionVerifier(oauth.IntrospectionConfig{
		URL:           endpoint.URL, // https is required except on loopback
		ClientID:      "popbox",
		ClientSecret:  "s3cret",
		RequiredScope: "pop3",
		CacheTTL:      time.Minute,
	})
	if err != nil {
		log.Fatal(err)
	}
	for _, token := range []string{"2YotnFZFEjr1zCsicMWpAA", "revoked", "down"} {
		id, err := v.Verify(context.Background(), token)
		switch {
		case err == nil:
			fmt.Println("+OK", id.Username)
		case errors.Is(err, oauth.ErrInvalidToken):
			fmt.Println("-ERR [AUTH]")
		default:
			fmt.Println("-ERR [SYS/TEMP]")
		}
	}
	// Output:
	// +OK alice@example.com
	// -ERR [AUTH]
	// -ERR [SYS/TEMP]
}
