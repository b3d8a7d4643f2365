// Package testjwt is a throw-away OAuth token issuer for tests: an ES256
// key, its JSON Web Key Set, and signed JWT access tokens. The server
// checks tokens with package oauth; this package only spares the tests that
// need a token (unit and interop) their own copy of the JOSE boilerplate.
package testjwt

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"
)

// Issuer signs tokens with one P-256 key.
type Issuer struct {
	Name  string // the "iss" of its tokens
	KeyID string
	key   *ecdsa.PrivateKey
}

// New makes an issuer named name (a URL, by convention).
func New(name string) (*Issuer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("testjwt: %w", err)
	}
	return &Issuer{Name: name, KeyID: "test-key-1", key: key}, nil
}

var b64 = base64.RawURLEncoding

// JWKS is the issuer's public key set, as a JWKS file holds it.
func (is *Issuer) JWKS() []byte {
	// The uncompressed point: 0x04, X, Y (SEC 1 §2.3.3).
	pt, err := is.key.PublicKey.Bytes()
	if err != nil {
		panic(err) // a key from GenerateKey always encodes
	}
	x, y := pt[1:33], pt[33:]
	set := map[string]any{"keys": []map[string]string{{
		"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": is.KeyID,
		"x": b64.EncodeToString(x), "y": b64.EncodeToString(y),
	}}}
	out, _ := json.Marshal(set) // cannot fail: strings only
	return out
}

// Token returns a signed JWT for subject sub, valid for an hour, with the
// audience aud (none if "") and any extra claims, which override the
// defaults.
func (is *Issuer) Token(sub, aud string, extra map[string]any) (string, error) {
	now := time.Now()
	claims := map[string]any{"iss": is.Name, "sub": sub, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	if aud != "" {
		claims["aud"] = aud
	}
	for k, v := range extra {
		claims[k] = v
	}
	header, err := json.Marshal(map[string]string{"alg": "ES256", "typ": "JWT", "kid": is.KeyID})
	if err != nil {
		return "", fmt.Errorf("testjwt: %w", err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("testjwt: %w", err)
	}
	signing := b64.EncodeToString(header) + "." + b64.EncodeToString(payload)
	sum := sha256.Sum256([]byte(signing))
	r, s, err := ecdsa.Sign(rand.Reader, is.key, sum[:])
	if err != nil {
		return "", fmt.Errorf("testjwt: %w", err)
	}
	// RFC 7518 §3.4: R and S as 32-octet big-endian integers, concatenated.
	var sig [64]byte
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return signing + "." + b64.EncodeToString(sig[:]), nil
}
