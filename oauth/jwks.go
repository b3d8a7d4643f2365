package oauth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"slices"
)

// RSA modulus sizes accepted in a key set. RFC 7518 §3.3 and §3.5 require
// at least 2048 bits; the upper bound keeps one verification cheap.
const (
	minRSABits = 2048
	maxRSABits = 8192
)

// jwk is one usable verification key of a JWK Set (RFC 7517 §4).
type jwk struct {
	kid string
	alg string // "" when the set does not restrict the key
	kty string
	crv string
	pub crypto.PublicKey
}

// usableFor reports whether the key may verify a signature made with the
// named algorithm: the key's type and curve must be the algorithm's, and
// its own "alg", when given, must be the same (RFC 7517 §4.4).
func (k *jwk) usableFor(name string, alg algorithm) bool {
	if k.kty != alg.kty || k.crv != alg.crv {
		return false
	}
	return k.alg == "" || sameAlg(k.alg, name)
}

// keySet is an immutable parsed JWK Set.
type keySet struct {
	keys []*jwk
}

// parseJWKS decodes a JWK Set (RFC 7517 §5). Keys that cannot verify
// signatures for us are skipped rather than refused, because an identity
// provider's set also holds encryption keys and key types we do not
// support; a key we do support but which is malformed fails the whole set,
// so that a broken file is noticed on Reload instead of failing logins one
// key at a time.
func parseJWKS(b []byte) (*keySet, error) {
	top, err := parseObject(b)
	if err != nil {
		return nil, err
	}
	raw, ok := top["keys"]
	if !ok {
		return nil, errors.New(`no "keys" member`)
	}
	var keys []json.RawMessage
	if isNull(raw) || json.Unmarshal(raw, &keys) != nil {
		return nil, errors.New(`"keys" is not an array`)
	}
	set := &keySet{}
	for i, rk := range keys {
		k, err := parseJWK(rk)
		if err != nil {
			return nil, fmt.Errorf("key %d: %w", i, err)
		}
		if k != nil {
			set.keys = append(set.keys, k)
		}
	}
	if len(set.keys) == 0 {
		return nil, errors.New("no usable signature verification key")
	}
	return set, nil
}

// parseJWK returns nil, nil for a key that is not for verifying signatures
// or is of a type we do not support.
func parseJWK(raw []byte) (*jwk, error) {
	obj, err := parseObject(raw)
	if err != nil {
		return nil, err
	}
	m := claims(obj)
	field := func(name string) (string, error) {
		s, _, err := m.str(name)
		return s, err
	}
	kty, err := field("kty")
	if err != nil {
		return nil, err
	}
	// RFC 7517 §4.2 and §4.3: a key meant for encryption, or not allowed to
	// verify, must not be used to accept a signature.
	use, err := field("use")
	if err != nil {
		return nil, err
	}
	if use != "" && use != "sig" {
		return nil, nil
	}
	if _, ok := obj["key_ops"]; ok {
		ops, err := m.strings("key_ops")
		if err != nil {
			return nil, err
		}
		if !slices.Contains(ops, "verify") {
			return nil, nil
		}
	}
	k := &jwk{kty: kty}
	if k.kid, err = field("kid"); err != nil {
		return nil, err
	}
	if k.alg, err = field("alg"); err != nil {
		return nil, err
	}
	if k.crv, err = field("crv"); err != nil {
		return nil, err
	}
	b64field := func(name string) ([]byte, error) {
		s, ok, err := m.str(name)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("no %q", name)
		}
		b, err := decodeB64(s)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", name, err)
		}
		return b, nil
	}
	switch kty {
	case "RSA":
		k.crv = "" // not an RSA parameter; ignore whatever is there
		n, err := b64field("n")
		if err != nil {
			return nil, err
		}
		e, err := b64field("e")
		if err != nil {
			return nil, err
		}
		if k.pub, err = rsaKey(n, e); err != nil {
			return nil, err
		}
	case "EC":
		curve := curveByName(k.crv)
		if curve == nil {
			return nil, nil // e.g. secp256k1 (RFC 8812): not supported
		}
		x, err := b64field("x")
		if err != nil {
			return nil, err
		}
		y, err := b64field("y")
		if err != nil {
			return nil, err
		}
		// RFC 7518 §6.2.1.2 and §6.2.1.3: both coordinates at full
		// length, which also makes the uncompressed encoding unambiguous.
		size := (curve.Params().BitSize + 7) / 8
		if len(x) != size || len(y) != size {
			return nil, fmt.Errorf("%s coordinates are not %d bytes", k.crv, size)
		}
		// ParseUncompressedPublicKey checks that the point is on the curve.
		pub, err := ecdsa.ParseUncompressedPublicKey(curve, append(append([]byte{4}, x...), y...))
		if err != nil {
			return nil, fmt.Errorf("%s key: %w", k.crv, err)
		}
		k.pub = pub
	case "OKP":
		if k.crv != "Ed25519" {
			return nil, nil // X25519 is for key agreement; Ed448 unsupported
		}
		x, err := b64field("x")
		if err != nil {
			return nil, err
		}
		if len(x) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("Ed25519 key is not %d bytes", ed25519.PublicKeySize)
		}
		k.pub = ed25519.PublicKey(x)
	default:
		return nil, nil // "oct" and unknown types: never for verification here
	}
	if k.alg != "" {
		alg, ok := lookupAlg(k.alg)
		if !ok {
			// An algorithm we do not accept (HS256, RSA-OAEP without
			// "use"...): the key is not for us.
			return nil, nil
		}
		if alg.kty != k.kty || alg.crv != k.crv {
			return nil, fmt.Errorf("alg %q does not fit the key (kty %q, crv %q)", k.alg, k.kty, k.crv)
		}
	}
	return k, nil
}

func rsaKey(n, e []byte) (*rsa.PublicKey, error) {
	// RFC 7518 §6.3.1.2: e is a big-endian unsigned integer; crypto/rsa
	// wants an int, and exponents above 2^31 exist only in attacks on
	// verifiers.
	if len(e) == 0 || len(e) > 4 {
		return nil, errors.New("RSA exponent out of range")
	}
	var ev uint64
	for _, b := range e {
		ev = ev<<8 | uint64(b)
	}
	if ev < 3 || ev > 1<<31-1 || ev%2 == 0 {
		return nil, errors.New("RSA exponent out of range")
	}
	nv := new(big.Int).SetBytes(n)
	if bits := nv.BitLen(); bits < minRSABits || bits > maxRSABits {
		return nil, fmt.Errorf("RSA modulus of %d bits, want %d to %d", bits, minRSABits, maxRSABits)
	}
	if nv.Bit(0) == 0 {
		return nil, errors.New("RSA modulus is even") // no product of two odd primes
	}
	return &rsa.PublicKey{N: nv, E: int(ev)}, nil
}

// candidates returns the keys that may verify a token with the given kid
// and algorithm. RFC 7515 §4.1.4 makes kid a hint, but a token naming a
// key the set does not hold is refused rather than tried against every
// key: it was signed by someone else. A token without kid is accepted only
// against a set with a single key, where there is nothing to choose.
func (s *keySet) candidates(kid, name string, alg algorithm) []*jwk {
	var out []*jwk
	if kid == "" {
		if len(s.keys) == 1 && s.keys[0].usableFor(name, alg) {
			out = append(out, s.keys[0])
		}
		return out
	}
	// Several keys may share a kid (RFC 7517 §4.5 allows it for keys of
	// different types), so all matches are tried.
	for _, k := range s.keys {
		if k.kid == kid && k.usableFor(name, alg) {
			out = append(out, k)
		}
	}
	return out
}
