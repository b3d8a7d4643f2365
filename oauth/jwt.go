package oauth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	_ "crypto/sha256" // registers SHA-256 for crypto.Hash
	_ "crypto/sha512" // registers SHA-384 and SHA-512
	"encoding/base64"
	"errors"
	"math/big"
	"strings"
)

// decodeB64 decodes base64url without padding (RFC 7515 §2). Strict
// refuses non-zero trailing bits, so each value has exactly one encoding.
func decodeB64(s string) ([]byte, error) {
	return base64.RawURLEncoding.Strict().DecodeString(s)
}

// jws is a parsed JWS in compact serialization (RFC 7515 §7.1) whose
// signature has not been checked yet.
type jws struct {
	alg, kid     string
	signingInput string // ASCII(BASE64URL(header) || '.' || BASE64URL(payload))
	payload      []byte
	sig          []byte
}

// isB64URLOrDot reports whether c may appear in a compact JWS. Checking
// this up front matters because the base64 decoder skips '\r' and '\n', so
// a token with line breaks would otherwise decode to the same bytes as one
// without.
func isB64URLOrDot(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.'
}

// parseJWT splits and decodes a compact JWS and reads its protected header.
// The payload is only decoded: its claims are not to be trusted, or even
// looked at, before the signature is verified.
func parseJWT(token string) (*jws, error) {
	if len(token) > MaxTokenLen {
		return nil, invalidf("token longer than %d bytes", MaxTokenLen)
	}
	for i := 0; i < len(token); i++ {
		if !isB64URLOrDot(token[i]) {
			return nil, invalidf("not a JWS compact serialization")
		}
	}
	// Exactly three parts: five would be a JWE (RFC 7516 §7.1), which
	// carries no signature we could check.
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, invalidf("not a JWS compact serialization (%d parts)", len(parts))
	}
	hb, err := decodeB64(parts[0])
	if err != nil {
		return nil, invalidf("header: %v", err)
	}
	payload, err := decodeB64(parts[1])
	if err != nil {
		return nil, invalidf("payload: %v", err)
	}
	sig, err := decodeB64(parts[2])
	if err != nil {
		return nil, invalidf("signature: %v", err)
	}
	hdr, err := parseObject(hb)
	if err != nil {
		return nil, invalidf("header: %v", err)
	}
	h := claims(hdr)
	alg, ok, err := h.str("alg")
	if err != nil || !ok {
		return nil, invalidf("header has no alg") // RFC 7515 §4.1.1: required
	}
	kid, _, err := h.str("kid")
	if err != nil {
		return nil, invalidf("header: %v", err)
	}
	// RFC 7515 §4.1.11: a recipient that does not understand every
	// extension listed in "crit" must reject the JWS; we understand none.
	if _, ok := hdr["crit"]; ok {
		return nil, invalidf("header has crit extensions")
	}
	// A nested JWT (RFC 7519 §5.2) would need a second verification whose
	// outcome this one would otherwise vouch for.
	if cty, _, _ := h.str("cty"); strings.EqualFold(cty, "JWT") {
		return nil, invalidf("nested JWT")
	}
	return &jws{
		alg:          alg,
		kid:          kid,
		signingInput: parts[0] + "." + parts[1],
		payload:      payload,
		sig:          sig,
	}, nil
}

// algorithm is one accepted JWS "alg" (RFC 7518 §3.1): the key type and
// curve it needs and the hash it signs with.
type algorithm struct {
	kty  string // "RSA", "EC" or "OKP" (RFC 7518 §6.1, RFC 8037 §2)
	crv  string // EC and OKP only
	hash crypto.Hash
	pss  bool
}

// lookupAlg returns an accepted algorithm. "none" (RFC 7518 §3.6) and
// HS256/384/512 (§3.2) are absent on purpose: the first needs no key at
// all, and the second would turn a public verification key into the HMAC
// secret anyone can sign with (the classic algorithm confusion attack).
func lookupAlg(name string) (algorithm, bool) {
	switch name {
	case "RS256":
		return algorithm{kty: "RSA", hash: crypto.SHA256}, true
	case "RS384":
		return algorithm{kty: "RSA", hash: crypto.SHA384}, true
	case "RS512":
		return algorithm{kty: "RSA", hash: crypto.SHA512}, true
	case "PS256":
		return algorithm{kty: "RSA", hash: crypto.SHA256, pss: true}, true
	case "PS384":
		return algorithm{kty: "RSA", hash: crypto.SHA384, pss: true}, true
	case "PS512":
		return algorithm{kty: "RSA", hash: crypto.SHA512, pss: true}, true
	case "ES256":
		return algorithm{kty: "EC", crv: "P-256", hash: crypto.SHA256}, true
	case "ES384":
		return algorithm{kty: "EC", crv: "P-384", hash: crypto.SHA384}, true
	case "ES512":
		return algorithm{kty: "EC", crv: "P-521", hash: crypto.SHA512}, true
	case "EdDSA", "Ed25519":
		// RFC 8037 §3.1 "EdDSA" with an Ed25519 key, or RFC 9864's fully
		// specified "Ed25519". Ed448 is not supported by the standard
		// library.
		return algorithm{kty: "OKP", crv: "Ed25519"}, true
	}
	return algorithm{}, false
}

// sameAlg compares a key's "alg" with a token's, treating the two names of
// Ed25519 signatures as one.
func sameAlg(a, b string) bool {
	ed := func(s string) bool { return s == "EdDSA" || s == "Ed25519" }
	return a == b || ed(a) && ed(b)
}

var errBadSignature = errors.New("signature does not verify")

// verifySignature checks sig over input with pub under alg. The caller has
// matched alg with the key's type and curve.
func verifySignature(alg algorithm, pub crypto.PublicKey, input, sig []byte) error {
	var digest []byte
	if alg.hash != 0 {
		h := alg.hash.New()
		h.Write(input)
		digest = h.Sum(nil)
	}
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if alg.pss {
			// RFC 7518 §3.5: the salt is as long as the hash output.
			return rsa.VerifyPSS(k, alg.hash, digest, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
		}
		return rsa.VerifyPKCS1v15(k, alg.hash, digest, sig)
	case *ecdsa.PublicKey:
		// RFC 7518 §3.4: R and S as fixed-size big-endian integers, not
		// the ASN.1 DER that crypto/ecdsa's VerifyASN1 takes.
		n := (k.Curve.Params().BitSize + 7) / 8
		if len(sig) != 2*n {
			return errBadSignature
		}
		r := new(big.Int).SetBytes(sig[:n])
		s := new(big.Int).SetBytes(sig[n:])
		if !ecdsa.Verify(k, digest, r, s) {
			return errBadSignature
		}
		return nil
	case ed25519.PublicKey:
		if !ed25519.Verify(k, input, sig) {
			return errBadSignature
		}
		return nil
	}
	return errBadSignature
}

// curveByName maps a JWK "crv" to its curve (RFC 7518 §6.2.1.1).
func curveByName(crv string) elliptic.Curve {
	switch crv {
	case "P-256":
		return elliptic.P256()
	case "P-384":
		return elliptic.P384()
	case "P-521":
		return elliptic.P521()
	}
	return nil
}
