package passhash

import (
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"errors"
	"fmt"
	"hash"
	"runtime"
	"strings"
)

// SHA-crypt as specified by Ulrich Drepper, "Unix crypt using SHA-256 and
// SHA-512" (https://www.akkadia.org/drepper/SHA-crypt.txt), the algorithm of
// glibc's crypt(3) "$5$" and "$6$" and of Dovecot's SHA256-CRYPT and
// SHA512-CRYPT. Step numbers in comments refer to that text.

// Spec constants: default and bounds of rounds, and the salt length cap.
const (
	shaCryptDefaultRounds = 5000
	shaCryptMinRounds     = 1000
	shaCryptMaxSaltLen    = 16
	shaCryptRoundsPrefix  = "rounds="
)

// shaVariant is what differs between $5$ and $6$.
type shaVariant struct {
	id      string // "$5$" or "$6$"
	scheme  string
	newHash func() hash.Hash
	// encode writes the final digest in crypt base64 with the variant's
	// byte permutation (spec step 22e).
	encode  func(d []byte) string
	encLen  int // length of encode's output
	maxSalt int
}

func sha512Variant() *shaVariant {
	return &shaVariant{id: "$6$", scheme: SchemeSHA512Crypt, newHash: sha512.New, encode: encodeSHA512Crypt, encLen: 86, maxSalt: shaCryptMaxSaltLen}
}

func sha256Variant() *shaVariant {
	return &shaVariant{id: "$5$", scheme: SchemeSHA256Crypt, newHash: sha256.New, encode: encodeSHA256Crypt, encLen: 43, maxSalt: shaCryptMaxSaltLen}
}

type shaCryptHash struct {
	v         *shaVariant
	rounds    int
	maxBlocks int // budget of hash blocks for one verification
	salt      []byte
	digest    string // encoded, v.encLen characters
}

func (h *shaCryptHash) scheme() string { return h.v.scheme }

func (h *shaCryptHash) verify(password []byte) bool {
	if h.blocks(len(password)) > h.maxBlocks {
		return false
	}
	d := h.v.encode(shaCryptDigest(h.v, password, h.salt, h.rounds))
	return subtle.ConstantTimeCompare([]byte(d), []byte(h.digest)) == 1
}

// blocks estimates the hash blocks one verification with a password of
// pwLen bytes processes: each round (step 21) hashes the password sequence
// twice or once, the salt sequence and a digest. The one-off steps 1-20 are
// at most len(password)^2 bytes, bounded by MaxPasswordLen.
func (h *shaCryptHash) blocks(pwLen int) int {
	const padding = 17 // SHA-2 length padding, at most
	hh := h.v.newHash()
	perRound := (2*pwLen + len(h.salt) + hh.Size() + padding + hh.BlockSize() - 1) / hh.BlockSize()
	return h.rounds * perRound
}

// parseSHACrypt parses a stored hash "$6$[rounds=N$]salt$digest". It is
// stricter than crypt(3)'s setting parser (spec steps 22a-c), which
// silently clamps rounds and truncates salts: a stored hash produced by
// crypt(3) never has rounds outside 1000..999999999, a salt over 16
// characters, or a zero-padded rounds value, so such strings are refused
// rather than guessed at.
func parseSHACrypt(s string, v *shaVariant, lim limits) (*shaCryptHash, error) {
	rest := s[len(v.id):]
	h := &shaCryptHash{v: v, rounds: shaCryptDefaultRounds, maxBlocks: lim.shaCryptBlocks}
	if r, ok := strings.CutPrefix(rest, shaCryptRoundsPrefix); ok {
		num, after, ok := strings.Cut(r, "$")
		if !ok {
			return nil, errors.New("rounds= without a following $")
		}
		n, err := parseDecimal(num)
		if err != nil {
			return nil, fmt.Errorf("rounds: %w", err)
		}
		if int(n) < shaCryptMinRounds || int(n) > lim.shaCryptRounds {
			return nil, fmt.Errorf("rounds %d outside %d..%d", n, shaCryptMinRounds, lim.shaCryptRounds)
		}
		h.rounds = int(n)
		rest = after
	}
	salt, digest, ok := strings.Cut(rest, "$")
	if !ok {
		return nil, errors.New("no $ between salt and hash")
	}
	if len(salt) > v.maxSalt {
		return nil, fmt.Errorf("salt longer than %d characters", v.maxSalt)
	}
	for _, c := range []byte(salt) {
		// The spec allows any byte but '$'; keep to printable ASCII so the
		// string survives every config file and terminal ('$' is excluded
		// by strings.Cut above).
		if c <= ' ' || c > '~' || c == ':' {
			return nil, errors.New("salt contains a control, space, ':' or non-ASCII character")
		}
	}
	if len(digest) != v.encLen {
		return nil, fmt.Errorf("hash of %d characters, want %d", len(digest), v.encLen)
	}
	for _, c := range []byte(digest) {
		if !isCryptB64(c) {
			return nil, errors.New("hash contains a character outside ./0-9A-Za-z")
		}
	}
	h.salt = []byte(salt)
	h.digest = digest
	return h, nil
}

// shaCryptDigest computes the final digest C of spec steps 1-21. Its cost is
// O(rounds * (len(password) + hash size)).
func shaCryptDigest(v *shaVariant, password, salt []byte, rounds int) []byte {
	h := v.newHash()
	size := h.Size()

	// Steps 4-8: digest B = H(password salt password).
	h.Write(password)
	h.Write(salt)
	h.Write(password)
	b := h.Sum(nil)

	// Steps 1-3, 9-12: digest A.
	h.Reset()
	h.Write(password)
	h.Write(salt)
	// Step 9-10: B repeated to the password's length.
	writeRepeated(h, b, len(password))
	// Step 11: for each bit of the password length, least significant
	// first, up to the most significant 1: B for 1, the password for 0.
	for n := len(password); n > 0; n >>= 1 {
		if n&1 != 0 {
			h.Write(b)
		} else {
			h.Write(password)
		}
	}
	a := h.Sum(nil)

	// Steps 13-16: P, the password-length prefix of the repeated digest
	// DP = H(password repeated len(password) times).
	h.Reset()
	for range len(password) {
		h.Write(password)
	}
	dp := h.Sum(nil)
	p := repeatTo(dp, len(password))

	// Steps 17-20: S, the salt-length prefix of the repeated digest
	// DS = H(salt repeated 16+A[0] times).
	h.Reset()
	for range 16 + int(a[0]) {
		h.Write(salt)
	}
	ds := h.Sum(nil)
	sb := repeatTo(ds, len(salt))

	// Step 21: the rounds, starting from C = A.
	c := a
	sum := make([]byte, 0, size)
	for i := range rounds {
		if i&255 == 255 {
			// A verification takes a millisecond or more of CPU; yielding
			// every 256 rounds (about 60 µs) lets the sessions' short
			// steps run in between, instead of waiting for the whole
			// hash whenever every core is verifying a login.
			runtime.Gosched()
		}
		h.Reset()
		if i%2 != 0 {
			h.Write(p)
		} else {
			h.Write(c)
		}
		if i%3 != 0 {
			h.Write(sb)
		}
		if i%7 != 0 {
			h.Write(p)
		}
		if i%2 != 0 {
			h.Write(c)
		} else {
			h.Write(p)
		}
		c = h.Sum(sum[:0])
	}
	return c
}

// writeRepeated writes n bytes of d repeated (spec steps 9-10).
func writeRepeated(h hash.Hash, d []byte, n int) {
	for ; n > len(d); n -= len(d) {
		h.Write(d)
	}
	h.Write(d[:n])
}

// repeatTo returns n bytes of d repeated (spec steps 16 and 20).
func repeatTo(d []byte, n int) []byte {
	out := make([]byte, 0, n)
	for len(out) < n {
		out = append(out, d[:min(len(d), n-len(out))]...)
	}
	return out
}

// cryptB64 is the alphabet of crypt(3)'s base64, in its value order (which
// differs from bcrypt's).
const cryptB64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// b64From24 appends n characters for the 24-bit group b2 b1 b0, least
// significant 6 bits first (the spec's b64_from_24bit).
func b64From24(out []byte, b2, b1, b0 byte, n int) []byte {
	w := uint(b2)<<16 | uint(b1)<<8 | uint(b0)
	for range n {
		out = append(out, cryptB64[w&0x3f])
		w >>= 6
	}
	return out
}

// encodeSHA512Crypt applies step 22e for SHA-512: 21 groups of bytes
// (i, i+21, i+42), rotated left by i mod 3 positions, then byte 63 alone.
func encodeSHA512Crypt(d []byte) string {
	out := make([]byte, 0, 86)
	for i := range 21 {
		g := [3]byte{d[i], d[i+21], d[i+42]}
		r := i % 3
		out = b64From24(out, g[r], g[(r+1)%3], g[(r+2)%3], 4)
	}
	out = b64From24(out, 0, 0, d[63], 2)
	return string(out)
}

// encodeSHA256Crypt applies step 22e for SHA-256: 10 groups of bytes
// (i, i+10, i+20), rotated right by i mod 3 positions, then bytes 31, 30.
func encodeSHA256Crypt(d []byte) string {
	out := make([]byte, 0, 43)
	for i := range 10 {
		g := [3]byte{d[i], d[i+10], d[i+20]}
		r := (3 - i%3) % 3
		out = b64From24(out, g[r], g[(r+1)%3], g[(r+2)%3], 4)
	}
	out = b64From24(out, 0, d[31], d[30], 3)
	return string(out)
}
