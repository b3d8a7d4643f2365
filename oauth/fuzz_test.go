package oauth

import (
	"context"
	"errors"
	"testing"
)

// FuzzParseJWT feeds arbitrary tokens through the parser and the whole
// verification: nothing may panic, and with a live context every failure
// must be the token's (ErrInvalidToken), never anything else.
func FuzzParseJWT(f *testing.F) {
	k := newTestKeys(f)
	file := writeJWKS(f, f.TempDir(), testKeySet(f, k)...)
	v, err := NewJWKSVerifier(testJWKSConfig(file))
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []struct {
		alg, kid string
		key      any
	}{
		{"RS256", "rsa", k.rsa}, {"PS256", "rsa-ps", k.rsa}, {"ES256", "ec256", k.ec256},
		{"ES384", "ec384", k.ec384}, {"EdDSA", "ed", k.ed}, {"none", "rsa", nil},
		{"HS256", "hmac", []byte("shared secret")},
	} {
		f.Add(mintJWT(f, s.key, map[string]any{"alg": s.alg, "kid": s.kid}, baseClaims()))
	}
	f.Add(mintRaw(f, k.ed, "EdDSA", []byte(`{"alg":"EdDSA","kid":"ed","crit":["b64"],"b64":false}`), []byte(`{}`)))
	f.Add("eyJhbGciOiJFUzI1NiJ9.e30.")
	f.Add("..")
	f.Add("a.b.c.d.e")
	f.Fuzz(func(t *testing.T, token string) {
		if jws, err := parseJWT(token); err == nil {
			if _, err := parseObject(jws.payload); err == nil && len(jws.payload) == 0 {
				t.Error("empty payload parsed as an object")
			}
		} else if !errors.Is(err, ErrInvalidToken) {
			t.Errorf("parseJWT: %v does not wrap ErrInvalidToken", err)
		}
		id, err := v.Verify(context.Background(), token)
		if err != nil && !errors.Is(err, ErrInvalidToken) {
			t.Errorf("Verify: %v does not wrap ErrInvalidToken", err)
		}
		if err == nil && id.Username == "" {
			t.Error("verified identity without a user name")
		}
	})
}

// FuzzParseJWKS: no key file may panic the parser, and a parsed set holds
// only keys with a public key.
func FuzzParseJWKS(f *testing.F) {
	k := newTestKeys(f)
	f.Add(mustJSON(f, map[string]any{"keys": testKeySet(f, k)}))
	f.Add([]byte(`{"keys":[{"kty":"EC","crv":"P-256","x":"","y":""}]}`))
	f.Add([]byte(`{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB","alg":"RS256"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		set, err := parseJWKS(b)
		if err != nil {
			return
		}
		if len(set.keys) == 0 {
			t.Fatal("parsed set without keys")
		}
		for _, key := range set.keys {
			if key.pub == nil {
				t.Fatalf("key %q without public key", key.kid)
			}
		}
	})
}

// FuzzIntrospectionResponse: whatever an endpoint answers, judging it must
// not panic, and an accepted answer must name a user.
func FuzzIntrospectionResponse(f *testing.F) {
	v, err := NewIntrospectionVerifier(IntrospectionConfig{
		URL: "https://idp.example.com/introspect", ClientID: "popbox",
		Audience: "pop3", RequiredScope: "mail", Now: testNow,
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(`{"active":true,"username":"alice","aud":["pop3"],"scope":"mail","exp":1893456000,"nbf":0,"iat":1700000000}`))
	f.Add([]byte(`{"active":false}`))
	f.Add([]byte(`{"active":true,"username":null,"aud":"pop3","scp":["mail"]}`))
	f.Add([]byte(`{"active":1}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		c, err := parseIntrospection(body)
		if err != nil {
			return
		}
		id, err := v.judge(c, testNow())
		if err == nil && (id.Username == "" || !id.Expiry.IsZero() && !id.Expiry.After(testNow().Add(-DefaultLeeway))) {
			t.Errorf("accepted %+v", id)
		}
	})
}
