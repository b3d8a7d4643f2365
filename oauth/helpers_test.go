package oauth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// testKeys are one key of each supported type.
type testKeys struct {
	rsa                 *rsa.PrivateKey
	ec256, ec384, ec521 *ecdsa.PrivateKey
	ed                  ed25519.PrivateKey
	// Never in a key set.
	otherRSA *rsa.PrivateKey
	otherEC  *ecdsa.PrivateKey
}

func newTestKeys(t testing.TB) *testKeys {
	t.Helper()
	var k testKeys
	var err error
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	k.rsa, err = rsa.GenerateKey(rand.Reader, 2048)
	must(err)
	k.otherRSA, err = rsa.GenerateKey(rand.Reader, 2048)
	must(err)
	k.ec256, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(err)
	k.ec384, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	must(err)
	k.ec521, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	must(err)
	k.otherEC, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(err)
	_, k.ed, err = ed25519.GenerateKey(rand.Reader)
	must(err)
	return &k
}

func b64u(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// publicJWK returns the JWK (RFC 7517 §4) of priv's public key.
func publicJWK(t testing.TB, priv crypto.PrivateKey, kid, alg string) map[string]any {
	t.Helper()
	m := map[string]any{}
	switch k := priv.(type) {
	case *rsa.PrivateKey:
		m["kty"] = "RSA"
		m["n"] = b64u(k.N.Bytes())
		e := []byte{byte(k.E >> 16), byte(k.E >> 8), byte(k.E)}
		for len(e) > 1 && e[0] == 0 {
			e = e[1:]
		}
		m["e"] = b64u(e)
	case *ecdsa.PrivateKey:
		m["kty"] = "EC"
		m["crv"] = k.Curve.Params().Name
		size := (k.Curve.Params().BitSize + 7) / 8
		pt, err := k.PublicKey.Bytes() // 0x04 || X || Y
		if err != nil {
			t.Fatal(err)
		}
		m["x"] = b64u(pt[1 : 1+size])
		m["y"] = b64u(pt[1+size:])
	case ed25519.PrivateKey:
		m["kty"] = "OKP"
		m["crv"] = "Ed25519"
		m["x"] = b64u(k.Public().(ed25519.PublicKey))
	default:
		t.Fatalf("publicJWK: unsupported key %T", priv)
	}
	if kid != "" {
		m["kid"] = kid
	}
	if alg != "" {
		m["alg"] = alg
	}
	return m
}

// writeJWKS writes a JWK Set to a file in dir and returns its name.
func writeJWKS(t testing.TB, dir string, keys ...map[string]any) string {
	t.Helper()
	b, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		t.Fatal(err)
	}
	name := filepath.Join(dir, "jwks.json")
	// Write and rename, as an operator's tooling should, so that a
	// concurrent Reload never sees half a file.
	tmp := name + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, name); err != nil {
		t.Fatal(err)
	}
	return name
}

// signJWS signs input as alg with key. For "HS*", key is the []byte
// secret; for "none" there is no signature.
func signJWS(t testing.TB, alg string, key any, input []byte) []byte {
	t.Helper()
	hashOf := map[string]crypto.Hash{
		"256": crypto.SHA256, "384": crypto.SHA384, "512": crypto.SHA512,
	}
	if alg == "none" {
		return nil
	}
	if alg == "EdDSA" || alg == "Ed25519" {
		return ed25519.Sign(key.(ed25519.PrivateKey), input)
	}
	if len(alg) != 5 {
		t.Fatalf("signJWS: unknown alg %q", alg)
	}
	h := hashOf[alg[2:]]
	d := h.New()
	d.Write(input)
	digest := d.Sum(nil)
	var sig []byte
	var err error
	switch alg[:2] {
	case "HS":
		m := hmac.New(h.New, key.([]byte))
		m.Write(input)
		return m.Sum(nil)
	case "RS":
		sig, err = rsa.SignPKCS1v15(rand.Reader, key.(*rsa.PrivateKey), h, digest)
	case "PS":
		sig, err = rsa.SignPSS(rand.Reader, key.(*rsa.PrivateKey), h, digest, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
	case "ES":
		k := key.(*ecdsa.PrivateKey)
		r, s, err := ecdsa.Sign(rand.Reader, k, digest)
		if err != nil {
			t.Fatal(err)
		}
		n := (k.Curve.Params().BitSize + 7) / 8
		sig = make([]byte, 2*n)
		r.FillBytes(sig[:n])
		s.FillBytes(sig[n:])
	default:
		t.Fatalf("signJWS: unknown alg %q", alg)
	}
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

// mintJWT makes a compact JWS with the given header and claims, signed as
// header["alg"] says with key.
func mintJWT(t testing.TB, key any, header, claims map[string]any) string {
	t.Helper()
	hb, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	cb, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	return mintRaw(t, key, header["alg"].(string), hb, cb)
}

// mintRaw signs a header and payload given as raw bytes, for tests of
// JSON that json.Marshal would not produce (duplicate members...).
func mintRaw(t testing.TB, key any, alg string, header, payload []byte) string {
	t.Helper()
	input := b64u(header) + "." + b64u(payload)
	return input + "." + b64u(signJWS(t, alg, key, []byte(input)))
}
