package passhash

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Lengths of new hashes: RFC 9106 §4 recommends a 128-bit salt and a 256-bit
// tag.
const (
	saltLen = 16
	keyLen  = 32
)

// Accepted lengths of imported hashes, as the reference implementation's
// ARGON2_MIN_SALT_LENGTH / ARGON2_MIN_OUTLEN; the upper ends keep the hash
// string short and are far beyond anything in use.
const (
	minSaltLen, maxSaltLen = 8, 64
	minKeyLen, maxKeyLen   = 4, 64
)

// b64 is the PHC string format's base64: standard alphabet, no padding.
// Strict so a hash has one spelling.
func b64() *base64.Encoding { return base64.RawStdEncoding.Strict() }

type argon2Hash struct {
	memory, time, threads uint32
	salt, key             []byte
}

func (*argon2Hash) scheme() string { return SchemeArgon2id }

func (h *argon2Hash) verify(password []byte) bool {
	// parse bounded threads to MaxArgon2Threads (< 256), so the conversion
	// is exact.
	k := argon2.IDKey(password, h.salt, h.time, h.memory, uint8(h.threads), uint32(len(h.key)))
	return subtle.ConstantTimeCompare(k, h.key) == 1
}

func hashArgon2id(password string, p Params) (string, error) {
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("passhash: reading random salt: %w", err)
	}
	key := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, keyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.Memory, p.Time, p.Threads, b64().EncodeToString(salt), b64().EncodeToString(key)), nil
}

// parseArgon2id decodes "$argon2id$v=19$m=M,t=T,p=P$salt$key", the encoding
// of the reference implementation (and PHC string format) with parameters in
// that fixed order. The version field is required: its absence means Argon2
// 1.0 (v=16), which x/crypto does not implement.
func parseArgon2id(s string, lim limits) (*argon2Hash, error) {
	f := strings.Split(s, "$")
	if len(f) != 6 || f[0] != "" || f[1] != "argon2id" {
		return nil, errors.New("want $argon2id$v=19$m=..,t=..,p=..$salt$hash")
	}
	if f[2] != fmt.Sprintf("v=%d", argon2.Version) {
		return nil, fmt.Errorf("unsupported version field %q (only v=%d)", f[2], argon2.Version)
	}
	params := strings.Split(f[3], ",")
	if len(params) != 3 {
		return nil, errors.New("want exactly the parameters m, t, p")
	}
	var vals [3]uint32
	for i, name := range []string{"m", "t", "p"} {
		v, ok := strings.CutPrefix(params[i], name+"=")
		if !ok {
			return nil, fmt.Errorf("parameter %d is not %s=", i+1, name)
		}
		n, err := parseDecimal(v)
		if err != nil {
			return nil, fmt.Errorf("parameter %s: %w", name, err)
		}
		vals[i] = n
	}
	h := &argon2Hash{memory: vals[0], time: vals[1], threads: vals[2]}
	if err := checkArgon2Cost(h.memory, h.time, h.threads, lim); err != nil {
		return nil, err
	}
	var err error
	if h.salt, err = b64().DecodeString(f[4]); err != nil {
		return nil, fmt.Errorf("salt: %w", err)
	}
	if len(h.salt) < minSaltLen || len(h.salt) > maxSaltLen {
		return nil, fmt.Errorf("salt of %d bytes, want %d..%d", len(h.salt), minSaltLen, maxSaltLen)
	}
	if h.key, err = b64().DecodeString(f[5]); err != nil {
		return nil, fmt.Errorf("hash: %w", err)
	}
	if len(h.key) < minKeyLen || len(h.key) > maxKeyLen {
		return nil, fmt.Errorf("hash of %d bytes, want %d..%d", len(h.key), minKeyLen, maxKeyLen)
	}
	return h, nil
}

// checkArgon2Cost applies RFC 9106 §3.1's minimums (t >= 1, p >= 1,
// m >= 8p) and our DoS bounds.
func checkArgon2Cost(m, t, p uint32, lim limits) error {
	switch {
	case t < 1 || t > lim.argon2Time:
		return fmt.Errorf("t=%d outside 1..%d", t, lim.argon2Time)
	case p < 1 || p > lim.argon2Threads:
		return fmt.Errorf("p=%d outside 1..%d", p, lim.argon2Threads)
	case m < 8*p || m > lim.argon2Memory:
		return fmt.Errorf("m=%d KiB outside %d..%d", m, 8*p, lim.argon2Memory)
	case uint64(m)*uint64(t) > lim.argon2Work:
		return fmt.Errorf("m*t=%d exceeds %d", uint64(m)*uint64(t), lim.argon2Work)
	}
	return nil
}

// parseDecimal parses a canonical unsigned decimal (no sign, no leading
// zeros) that fits in 32 bits.
func parseDecimal(s string) (uint32, error) {
	if s == "" || len(s) > 10 || (len(s) > 1 && s[0] == '0') {
		return 0, fmt.Errorf("bad number %q", s)
	}
	var n uint64
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("bad number %q", s)
		}
		n = n*10 + uint64(c-'0')
	}
	if n > 1<<32-1 {
		return 0, fmt.Errorf("number %s out of range", s)
	}
	return uint32(n), nil
}
