package oauth

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const testIssuer = "https://idp.example.com/realms/mail"

func testNow() time.Time { return time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC) }

// testKeySet holds every supported key type, the RSA key twice (once
// restricted to PS256), and two keys that must be skipped.
func testKeySet(t testing.TB, k *testKeys) []map[string]any {
	enc := publicJWK(t, k.otherRSA, "enc", "")
	enc["use"] = "enc"
	return []map[string]any{
		publicJWK(t, k.rsa, "rsa", ""),
		publicJWK(t, k.rsa, "rsa-ps", "PS256"),
		publicJWK(t, k.ec256, "ec256", "ES256"),
		publicJWK(t, k.ec384, "ec384", ""),
		publicJWK(t, k.ec521, "ec521", "ES512"),
		publicJWK(t, k.ed, "ed", "EdDSA"),
		{"kty": "oct", "kid": "hmac", "alg": "HS256", "k": b64u([]byte("shared secret"))},
		enc,
	}
}

func baseClaims() map[string]any {
	now := testNow().Unix()
	return map[string]any{
		"iss":   testIssuer,
		"aud":   "pop3",
		"sub":   "f81d4fae-7dec-11d0-a765-00a0c91e6bf6",
		"email": "alice@example.com",
		"exp":   now + 3600,
		"iat":   now - 60,
		"nbf":   now - 60,
		"scope": "openid mail.read",
	}
}

func testJWKSConfig(file string) JWKSConfig {
	return JWKSConfig{
		File:          file,
		Issuer:        testIssuer,
		Audience:      "pop3",
		UsernameClaim: "email",
		Now:           testNow,
	}
}

func TestJWKSVerifier(t *testing.T) {
	k := newTestKeys(t)
	file := writeJWKS(t, t.TempDir(), testKeySet(t, k)...)
	v, err := NewJWKSVerifier(testJWKSConfig(file))
	if err != nil {
		t.Fatal(err)
	}
	rsaPEM := func() []byte {
		der, err := x509.MarshalPKIXPublicKey(&k.rsa.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	}()
	alice := Identity{Username: "alice@example.com", Expiry: testNow().Add(time.Hour), Scopes: []string{"mail.read", "openid"}}
	now := testNow().Unix()

	tests := []struct {
		name    string
		alg     string
		kid     string
		key     any            // signs the token
		header  map[string]any // extra header members
		claims  map[string]any // changes to baseClaims; nil deletes
		raw     func(good string) string
		want    Identity
		wantErr bool
	}{
		{name: "RS256", alg: "RS256", kid: "rsa", key: k.rsa, want: alice},
		{name: "RS384", alg: "RS384", kid: "rsa", key: k.rsa, want: alice},
		{name: "RS512", alg: "RS512", kid: "rsa", key: k.rsa, want: alice},
		{name: "PS256", alg: "PS256", kid: "rsa", key: k.rsa, want: alice},
		{name: "PS256 with a key restricted to it", alg: "PS256", kid: "rsa-ps", key: k.rsa, want: alice},
		{name: "PS384", alg: "PS384", kid: "rsa", key: k.rsa, want: alice},
		{name: "PS512", alg: "PS512", kid: "rsa", key: k.rsa, want: alice},
		{name: "ES256", alg: "ES256", kid: "ec256", key: k.ec256, want: alice},
		{name: "ES384", alg: "ES384", kid: "ec384", key: k.ec384, want: alice},
		{name: "ES512", alg: "ES512", kid: "ec521", key: k.ec521, want: alice},
		{name: "EdDSA", alg: "EdDSA", kid: "ed", key: k.ed, want: alice},
		{name: "Ed25519 (RFC 9864 name)", alg: "Ed25519", kid: "ed", key: k.ed, want: alice},
		{name: "audience array", alg: "ES256", kid: "ec256", key: k.ec256,
			claims: map[string]any{"aud": []string{"imap", "pop3"}}, want: alice},
		{name: "scp array instead of scope", alg: "ES256", kid: "ec256", key: k.ec256,
			claims: map[string]any{"scope": nil, "scp": []string{"mail.read"}},
			want:   Identity{Username: "alice@example.com", Expiry: alice.Expiry, Scopes: []string{"mail.read"}}},
		{name: "expired within leeway", alg: "ES256", kid: "ec256", key: k.ec256,
			claims: map[string]any{"exp": now - 30},
			want:   Identity{Username: "alice@example.com", Expiry: testNow().Add(-30 * time.Second), Scopes: alice.Scopes}},
		{name: "nbf within leeway", alg: "ES256", kid: "ec256", key: k.ec256,
			claims: map[string]any{"nbf": now + 30}, want: alice},
		{name: "fractional exp", alg: "ES256", kid: "ec256", key: k.ec256,
			claims: map[string]any{"exp": float64(now) + 3600.5},
			want:   Identity{Username: "alice@example.com", Expiry: alice.Expiry.Add(500 * time.Millisecond), Scopes: alice.Scopes}},

		// Signatures.
		{name: "tampered signature", alg: "RS256", kid: "rsa", key: k.rsa, wantErr: true,
			raw: func(good string) string {
				i := strings.LastIndexByte(good, '.')
				sig, _ := decodeB64(good[i+1:])
				sig[10] ^= 1
				return good[:i+1] + b64u(sig)
			}},
		{name: "tampered payload", alg: "ES256", kid: "ec256", key: k.ec256, wantErr: true,
			raw: func(good string) string {
				p := strings.Split(good, ".")
				c := baseClaims()
				c["email"] = "mallory@example.com"
				b, _ := json.Marshal(c)
				return p[0] + "." + b64u(b) + "." + p[2]
			}},
		{name: "signed by a key not in the set", alg: "RS256", kid: "rsa", key: k.otherRSA, wantErr: true},
		{name: "EC key not in the set", alg: "ES256", kid: "ec256", key: k.otherEC, wantErr: true},
		{name: "unknown kid", alg: "RS256", kid: "rsa-2", key: k.rsa, wantErr: true},
		{name: "encryption key", alg: "RS256", kid: "enc", key: k.otherRSA, wantErr: true},
		{name: "no kid with several keys", alg: "RS256", key: k.rsa, wantErr: true},
		{name: "ECDSA signature DER-encoded", alg: "ES256", kid: "ec256", key: k.ec256, wantErr: true,
			raw: func(good string) string {
				i := strings.LastIndexByte(good, '.')
				sig, _ := decodeB64(good[i+1:])
				der := append([]byte{0x30, 68, 0x02, 32}, sig[:32]...)
				der = append(append(der, 0x02, 32), sig[32:]...)
				return good[:i+1] + b64u(der)
			}},

		// Algorithms.
		{name: "alg none", alg: "none", kid: "rsa", wantErr: true},
		{name: "alg None", wantErr: true,
			raw: func(string) string {
				return mintRaw(t, nil, "none", []byte(`{"alg":"None","kid":"rsa"}`), mustJSON(t, baseClaims()))
			}},
		{name: "HS256 with the PEM public key as secret", alg: "HS256", kid: "rsa", key: rsaPEM, wantErr: true},
		{name: "HS256 with the modulus as secret", alg: "HS256", kid: "rsa", key: k.rsa.N.Bytes(), wantErr: true},
		{name: "HS256 with the set's own oct key", alg: "HS256", kid: "hmac", key: []byte("shared secret"), wantErr: true},
		{name: "RS256 with a key restricted to PS256", alg: "RS256", kid: "rsa-ps", key: k.rsa, wantErr: true},
		{name: "ES256 on an RSA kid", alg: "ES256", kid: "rsa", key: k.ec256, wantErr: true},
		{name: "ES384 with a P-256 key", alg: "ES384", kid: "ec256", key: k.ec256, wantErr: true},
		{name: "RS256 on an EdDSA kid", alg: "RS256", kid: "ed", key: k.rsa, wantErr: true},
		{name: "crit header", alg: "ES256", kid: "ec256", key: k.ec256,
			header: map[string]any{"crit": []string{"exp"}, "exp": now}, wantErr: true},
		{name: "nested JWT", alg: "ES256", kid: "ec256", key: k.ec256,
			header: map[string]any{"cty": "JWT"}, wantErr: true},
		{name: "key in the header is not trusted", alg: "ES256", kid: "other", key: k.otherEC,
			header: map[string]any{"jwk": publicJWK(t, k.otherEC, "other", "ES256")}, wantErr: true},

		// Claims.
		{name: "expired", alg: "ES256", kid: "ec256", key: k.ec256,
			claims: map[string]any{"exp": now - 120}, wantErr: true},
		{name: "exact expiry plus leeway", alg: "ES256", kid: "ec256", key: k.ec256,
			claims: map[string]any{"exp": now - 60}, wantErr: true},
		{name: "no exp", alg: "ES256", kid: "ec256", key: k.ec256,
			claims: map[string]any{"exp": nil}, wantErr: true},
		{name: "exp is a string", alg: "ES256", kid: "ec256", key: k.ec256,
			claims: map[string]any{"exp": "2099-01-01"}, wantErr: true},
		{name: "exp absurdly far", alg: "ES256", kid: "ec256", key: k.ec256,
			claims: map[string]any{"exp": 1e300}, wantErr: true},
		{name: "nbf in the future", alg: "ES256", kid: "ec256", key: k.ec256,
			claims: map[string]any{"nbf": now + 120}, wantErr: true},
		{name: "iat in the future", alg: "ES256", kid: "ec256", key: k.ec256,
			claims: map[string]any{"iat": now + 3600}, wantErr: true},
		{name: "wrong issuer", alg: "ES256", kid: "ec256", key: k.ec256,
			claims: map[string]any{"iss": "https://evil.example.com/"}, wantErr: true},
		{name: "issuer differs in case", alg: "ES256", kid: "ec256", key: k.ec256,
			claims: map[string]any{"iss": strings.ToUpper(testIssuer)}, wantErr: true},
		{name: "no issuer", alg: "ES256", kid: "ec256", key: k.ec256,
			claims: map[string]any{"iss": nil}, wantErr: true},
		{name: "null issuer", alg: "ES256", kid: "ec256", key: k.ec256,
			raw: func(string) string {
				return mintRaw(t, k.ec256, "ES256", []byte(`{"alg":"ES256","kid":"ec256"}`),
					[]byte(`{"iss":null,"aud":"pop3","email":"alice@example.com","exp":9999999999}`))
			}, wantErr: true},
		{name: "wrong audience", alg: "ES256", kid: "ec256", key: k.ec256,
			claims: map[string]any{"aud": "imap"}, wantErr: true},
		{name: "audience array without ours", alg: "ES256", kid: "ec256", key: k.ec256,
			claims: map[string]any{"aud": []string{"imap", "smtp"}}, wantErr: true},
		{name: "no audience", alg: "ES256", kid: "ec256", key: k.ec256,
			claims: map[string]any{"aud": nil}, wantErr: true},
		{name: "missing user name claim", alg: "ES256", kid: "ec256", key: k.ec256,
			claims: map[string]any{"email": nil}, wantErr: true},
		{name: "empty user name", alg: "ES256", kid: "ec256", key: k.ec256,
			claims: map[string]any{"email": ""}, wantErr: true},
		{name: "user name not a string", alg: "ES256", kid: "ec256", key: k.ec256,
			claims: map[string]any{"email": 42}, wantErr: true},
		{name: "user name with a line break", alg: "ES256", kid: "ec256", key: k.ec256,
			claims: map[string]any{"email": "alice@example.com\r\nUSER root"}, wantErr: true},
		{name: "email not verified", alg: "ES256", kid: "ec256", key: k.ec256,
			claims: map[string]any{"email_verified": false}, wantErr: true},
		{name: "email not verified, as a string", alg: "ES256", kid: "ec256", key: k.ec256,
			claims: map[string]any{"email_verified": "false"}, wantErr: true},
		{name: "sender-constrained token", alg: "ES256", kid: "ec256", key: k.ec256,
			claims: map[string]any{"cnf": map[string]string{"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}}, wantErr: true},
		{name: "duplicate claim", alg: "ES256", kid: "ec256", key: k.ec256,
			raw: func(string) string {
				return mintRaw(t, k.ec256, "ES256", []byte(`{"alg":"ES256","kid":"ec256"}`),
					[]byte(`{"iss":"`+testIssuer+`","aud":"pop3","email":"alice@example.com","email":"root","exp":9999999999}`))
			}, wantErr: true},
		{name: "claim names are case-sensitive", alg: "ES256", kid: "ec256", key: k.ec256,
			claims: map[string]any{"email": nil, "EMAIL": "alice@example.com"}, wantErr: true},

		// Encoding.
		{name: "padding", alg: "ES256", kid: "ec256", key: k.ec256, wantErr: true,
			raw: func(good string) string { return good + "=" }},
		{name: "line break", alg: "ES256", kid: "ec256", key: k.ec256, wantErr: true,
			raw: func(good string) string { return good[:20] + "\n" + good[20:] }},
		{name: "standard base64", alg: "ES256", kid: "ec256", key: k.ec256, wantErr: true,
			raw: func(good string) string {
				return strings.NewReplacer("-", "+", "_", "/").Replace(good) + "+"
			}},
		{name: "JWE shape", alg: "ES256", kid: "ec256", key: k.ec256, wantErr: true,
			raw: func(good string) string { return good + ".e30.e30" }},
		{name: "too long", alg: "ES256", kid: "ec256", key: k.ec256, wantErr: true,
			claims: map[string]any{"pad": strings.Repeat("x", MaxTokenLen)}},
		{name: "empty", wantErr: true, raw: func(string) string { return "" }},
		{name: "header not JSON", wantErr: true,
			raw: func(string) string { return b64u([]byte("alg=RS256")) + ".e30.AAAA" }},
		{name: "payload not JSON", alg: "EdDSA", kid: "ed", key: k.ed, wantErr: true,
			raw: func(string) string {
				return mintRaw(t, k.ed, "EdDSA", []byte(`{"alg":"EdDSA","kid":"ed"}`), []byte(`["alice"]`))
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			header := map[string]any{"alg": tt.alg, "typ": "at+jwt"}
			if tt.kid != "" {
				header["kid"] = tt.kid
			}
			for n, val := range tt.header {
				header[n] = val
			}
			c := baseClaims()
			for n, val := range tt.claims {
				if val == nil {
					delete(c, n)
				} else {
					c[n] = val
				}
			}
			var token string
			if tt.alg != "" {
				token = mintJWT(t, tt.key, header, c)
			}
			if tt.raw != nil {
				token = tt.raw(token)
			}
			got, err := v.Verify(context.Background(), token)
			if tt.wantErr {
				if !errors.Is(err, ErrInvalidToken) {
					t.Fatalf("Verify = %+v, %v; want an error wrapping ErrInvalidToken", got, err)
				}
				t.Log(err)
				if strings.Contains(err.Error(), token) && token != "" {
					t.Errorf("error %q contains the token", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Verify (-want +got):\n%s", diff)
			}
		})
	}
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestJWKSVerifierOptions(t *testing.T) {
	k := newTestKeys(t)
	dir := t.TempDir()
	single := writeJWKS(t, dir, publicJWK(t, k.ed, "", ""))
	now := testNow().Unix()
	claims := func(change map[string]any) map[string]any {
		c := baseClaims()
		for n, v := range change {
			if v == nil {
				delete(c, n)
			} else {
				c[n] = v
			}
		}
		return c
	}
	ed := map[string]any{"alg": "EdDSA"}
	tests := []struct {
		name    string
		cfg     func(*JWKSConfig)
		header  map[string]any
		claims  map[string]any
		want    string
		wantErr bool
	}{
		{name: "default claim is sub", cfg: func(c *JWKSConfig) { c.UsernameClaim = "" },
			header: ed, claims: claims(nil), want: "f81d4fae-7dec-11d0-a765-00a0c91e6bf6"},
		{name: "no kid against a single-key set", header: ed, claims: claims(nil), want: "alice@example.com"},
		{name: "kid unknown to a single-key set", header: map[string]any{"alg": "EdDSA", "kid": "k1"},
			claims: claims(nil), wantErr: true},
		{name: "no audience configured, none in the token", cfg: func(c *JWKSConfig) { c.Audience = "" },
			header: ed, claims: claims(map[string]any{"aud": nil}), want: "alice@example.com"},
		{name: "no audience configured, one in the token", cfg: func(c *JWKSConfig) { c.Audience = "" },
			header: ed, claims: claims(nil), wantErr: true},
		{name: "required scope granted", cfg: func(c *JWKSConfig) { c.RequiredScope = "mail.read" },
			header: ed, claims: claims(nil), want: "alice@example.com"},
		{name: "required scope missing", cfg: func(c *JWKSConfig) { c.RequiredScope = "mail.write" },
			header: ed, claims: claims(nil), wantErr: true},
		{name: "required scope is not a prefix match", cfg: func(c *JWKSConfig) { c.RequiredScope = "mail" },
			header: ed, claims: claims(nil), wantErr: true},
		{name: "email_verified true", header: ed,
			claims: claims(map[string]any{"email_verified": true}), want: "alice@example.com"},
		{name: "email_verified false is fine for another claim", cfg: func(c *JWKSConfig) { c.UsernameClaim = "preferred_username" },
			header: ed, claims: claims(map[string]any{"email_verified": false, "preferred_username": "alice"}), want: "alice"},
		{name: "larger leeway", cfg: func(c *JWKSConfig) { c.Leeway = 10 * time.Minute },
			header: ed, claims: claims(map[string]any{"exp": now - 300}), want: "alice@example.com"},
		{name: "leeway applies to nbf", cfg: func(c *JWKSConfig) { c.Leeway = time.Nanosecond },
			header: ed, claims: claims(map[string]any{"nbf": now + 1}), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testJWKSConfig(single)
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			v, err := NewJWKSVerifier(cfg)
			if err != nil {
				t.Fatal(err)
			}
			id, err := v.Verify(context.Background(), mintJWT(t, k.ed, tt.header, tt.claims))
			if tt.wantErr {
				if !errors.Is(err, ErrInvalidToken) {
					t.Fatalf("Verify = %+v, %v; want ErrInvalidToken", id, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if id.Username != tt.want {
				t.Errorf("Username = %q, want %q", id.Username, tt.want)
			}
		})
	}
}

func TestNewJWKSVerifierErrors(t *testing.T) {
	k := newTestKeys(t)
	dir := t.TempDir()
	good := writeJWKS(t, dir, publicJWK(t, k.ed, "ed", ""))
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name string
		cfg  JWKSConfig
	}{
		{"no file", JWKSConfig{Issuer: testIssuer}},
		{"no issuer", JWKSConfig{File: good}},
		{"negative leeway", JWKSConfig{File: good, Issuer: testIssuer, Leeway: -time.Second}},
		{"missing file", JWKSConfig{File: filepath.Join(dir, "nope.json"), Issuer: testIssuer}},
		{"too large", JWKSConfig{File: write("big.json", `{"keys":[]}`+strings.Repeat(" ", MaxJWKSSize)), Issuer: testIssuer}},
		{"not JSON", JWKSConfig{File: write("bad.json", "keys: []"), Issuer: testIssuer}},
		{"no usable key", JWKSConfig{File: write("oct.json", `{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`), Issuer: testIssuer}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := NewJWKSVerifier(tt.cfg)
			if err == nil {
				t.Fatalf("NewJWKSVerifier = %v, nil; want an error", v)
			}
			if errors.Is(err, ErrInvalidToken) {
				t.Errorf("configuration error %v wraps ErrInvalidToken", err)
			}
		})
	}
}

func TestParseJWKS(t *testing.T) {
	k := newTestKeys(t)
	js := func(keys ...map[string]any) string { return string(mustJSON(t, map[string]any{"keys": keys})) }
	with := func(m map[string]any, kv ...any) map[string]any {
		out := map[string]any{}
		for n, v := range m {
			out[n] = v
		}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == nil {
				delete(out, kv[i].(string))
			} else {
				out[kv[i].(string)] = kv[i+1]
			}
		}
		return out
	}
	ec := publicJWK(t, k.ec256, "ec", "")
	rsaJWK := publicJWK(t, k.rsa, "rsa", "")
	ed := publicJWK(t, k.ed, "ed", "")
	small := publicJWK(t, k.rsa, "small", "")
	small["n"] = b64u(k.rsa.N.Bytes()[:128]) // 1024 bits
	offCurve := with(ec, "y", ec["x"])
	tests := []struct {
		name    string
		jwks    string
		kids    []string // usable keys, in order
		wantErr bool
	}{
		{name: "one of each", jwks: js(rsaJWK, ec, ed), kids: []string{"rsa", "ec", "ed"}},
		{name: "encryption key skipped", jwks: js(with(rsaJWK, "use", "enc"), ed), kids: []string{"ed"}},
		{name: "use sig kept", jwks: js(with(rsaJWK, "use", "sig")), kids: []string{"rsa"}},
		{name: "key_ops without verify skipped", jwks: js(with(ec, "key_ops", []string{"sign"}), ed), kids: []string{"ed"}},
		{name: "key_ops with verify kept", jwks: js(with(ec, "key_ops", []string{"verify"})), kids: []string{"ec"}},
		{name: "unsupported alg skipped", jwks: js(with(rsaJWK, "alg", "RSA-OAEP"), ed), kids: []string{"ed"}},
		{name: "X25519 skipped", jwks: js(with(ed, "crv", "X25519"), ec), kids: []string{"ec"}},
		{name: "secp256k1 skipped", jwks: js(with(ec, "crv", "secp256k1"), ed), kids: []string{"ed"}},
		{name: "unknown members ignored", jwks: js(with(rsaJWK, "x5t", "abc", "d", "private")), kids: []string{"rsa"}},
		{name: "alg not fitting the key", jwks: js(with(rsaJWK, "alg", "ES256")), wantErr: true},
		{name: "alg with the wrong curve", jwks: js(with(ec, "alg", "ES384")), wantErr: true},
		{name: "RSA modulus too small", jwks: js(small), wantErr: true},
		{name: "RSA exponent even", jwks: js(with(rsaJWK, "e", b64u([]byte{2}))), wantErr: true},
		{name: "RSA exponent one", jwks: js(with(rsaJWK, "e", b64u([]byte{1}))), wantErr: true},
		{name: "RSA exponent huge", jwks: js(with(rsaJWK, "e", b64u([]byte{1, 0, 0, 0, 1}))), wantErr: true},
		{name: "RSA modulus even", jwks: js(with(rsaJWK, "n", b64u(append(k.rsa.N.Bytes()[:255:255], 2)))), wantErr: true},
		{name: "RSA without n", jwks: js(with(rsaJWK, "n", nil)), wantErr: true},
		{name: "EC point off the curve", jwks: js(offCurve), wantErr: true},
		{name: "EC coordinate short", jwks: js(with(ec, "x", b64u(make([]byte, 31)))), wantErr: true},
		{name: "EC coordinate not base64url", jwks: js(with(ec, "x", "a+b/")), wantErr: true},
		{name: "Ed25519 key short", jwks: js(with(ed, "x", b64u(make([]byte, 31)))), wantErr: true},
		{name: "kid not a string", jwks: js(with(ed, "kid", 7)), wantErr: true},
		{name: "keys not an array", jwks: `{"keys":{}}`, wantErr: true},
		{name: "keys null", jwks: `{"keys":null}`, wantErr: true},
		{name: "no keys member", jwks: `{}`, wantErr: true},
		{name: "empty", jwks: `{"keys":[]}`, wantErr: true},
		{name: "duplicate keys member", jwks: `{"keys":[],"keys":[]}`, wantErr: true},
		{name: "trailing data", jwks: js(ed) + "{}", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set, err := parseJWKS([]byte(tt.jwks))
			if tt.wantErr {
				if err == nil {
					t.Fatalf("parseJWKS succeeded with %d keys, want an error", len(set.keys))
				}
				t.Log(err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var kids []string
			for _, k := range set.keys {
				kids = append(kids, k.kid)
			}
			if diff := cmp.Diff(tt.kids, kids); diff != "" {
				t.Errorf("usable keys (-want +got):\n%s", diff)
			}
		})
	}
}

func TestJWKSReload(t *testing.T) {
	k := newTestKeys(t)
	dir := t.TempDir()
	file := writeJWKS(t, dir, publicJWK(t, k.ec256, "2026-01", "ES256"))
	v, err := NewJWKSVerifier(testJWKSConfig(file))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	oldToken := mintJWT(t, k.ec256, map[string]any{"alg": "ES256", "kid": "2026-01"}, baseClaims())
	newToken := mintJWT(t, k.ed, map[string]any{"alg": "EdDSA", "kid": "2026-02"}, baseClaims())
	check := func(step string, token string, ok bool) {
		t.Helper()
		_, err := v.Verify(ctx, token)
		if ok && err != nil {
			t.Errorf("%s: Verify: %v", step, err)
		}
		if !ok && !errors.Is(err, ErrInvalidToken) {
			t.Errorf("%s: Verify = %v, want ErrInvalidToken", step, err)
		}
	}
	check("before rotation, old key", oldToken, true)
	check("before rotation, new key", newToken, false)

	// Rotation: first both keys, then only the new one.
	writeJWKS(t, dir, publicJWK(t, k.ec256, "2026-01", "ES256"), publicJWK(t, k.ed, "2026-02", "EdDSA"))
	if err := v.Reload(); err != nil {
		t.Fatal(err)
	}
	check("during rotation, old key", oldToken, true)
	check("during rotation, new key", newToken, true)
	writeJWKS(t, dir, publicJWK(t, k.ed, "2026-02", "EdDSA"))
	if err := v.Reload(); err != nil {
		t.Fatal(err)
	}
	check("after rotation, old key", oldToken, false)
	check("after rotation, new key", newToken, true)

	// A broken file is refused and the keys in use stay.
	if err := os.WriteFile(file, []byte(`{"keys":[`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := v.Reload(); err == nil {
		t.Error("Reload of a broken file succeeded")
	}
	check("after a failed reload", newToken, true)
}

// TestJWKSReloadConcurrent is for the race detector: logins go on while
// the key set is swapped.
func TestJWKSReloadConcurrent(t *testing.T) {
	k := newTestKeys(t)
	dir := t.TempDir()
	file := writeJWKS(t, dir, publicJWK(t, k.ed, "ed", ""))
	v, err := NewJWKSVerifier(testJWKSConfig(file))
	if err != nil {
		t.Fatal(err)
	}
	token := mintJWT(t, k.ed, map[string]any{"alg": "EdDSA", "kid": "ed"}, baseClaims())
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 50 {
				if _, err := v.Verify(context.Background(), token); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	for range 20 {
		if err := v.Reload(); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
}

func TestJWKSVerifyCanceled(t *testing.T) {
	k := newTestKeys(t)
	v, err := NewJWKSVerifier(testJWKSConfig(writeJWKS(t, t.TempDir(), publicJWK(t, k.ed, "ed", ""))))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = v.Verify(ctx, "x")
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrInvalidToken) {
		t.Errorf("Verify with a canceled context = %v, want context.Canceled only", err)
	}
}

func TestParseObject(t *testing.T) {
	tests := []struct {
		in      string
		want    map[string]string
		wantErr bool
	}{
		{in: `{}`, want: map[string]string{}},
		{in: ` { "a" : 1 , "b" : [ 1 , 2 ] } `, want: map[string]string{"a": "1", "b": "[ 1 , 2 ]"}},
		{in: `{"a":1,"a":2}`, wantErr: true},
		{in: `{"a":1}{}`, wantErr: true},
		{in: `{"a":1} x`, wantErr: true},
		{in: `[]`, wantErr: true},
		{in: `"a"`, wantErr: true},
		{in: `{"a":}`, wantErr: true},
		{in: `{"a":1`, wantErr: true},
		{in: ``, wantErr: true},
	}
	for _, tt := range tests {
		got, err := parseObject([]byte(tt.in))
		if tt.wantErr {
			if err == nil {
				t.Errorf("parseObject(%q) = %v, want an error", tt.in, got)
			}
			continue
		}
		if err != nil {
			t.Errorf("parseObject(%q): %v", tt.in, err)
			continue
		}
		m := map[string]string{}
		for n, v := range got {
			m[n] = string(v)
		}
		if diff := cmp.Diff(tt.want, m); diff != "" {
			t.Errorf("parseObject(%q) (-want +got):\n%s", tt.in, diff)
		}
	}
}
