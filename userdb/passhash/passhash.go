// Package passhash hashes and verifies account passwords.
//
// New passwords are always stored as argon2id (RFC 9106) in the PHC string
// format used by the reference implementation, libsodium and Dovecot:
//
//	$argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt>$<key>
//
// with salt and key in standard base64 without padding, a 16-byte random salt
// and a 32-byte key. Verification additionally accepts the schemes a Dovecot
// passdb is likely to hold, so existing accounts can be imported without
// knowing the passwords:
//
//   - argon2id with any (bounded) parameters, optionally prefixed {ARGON2ID};
//   - bcrypt $2a$, $2b$, $2y$ (golang.org/x/crypto/bcrypt), optionally
//     prefixed {BLF-CRYPT} or {CRYPT};
//   - SHA-crypt $6$ (SHA512-CRYPT) and $5$ (SHA256-CRYPT), implemented here
//     from Ulrich Drepper's specification because no maintained Go library
//     offers it, optionally prefixed {SHA512-CRYPT}, {SHA256-CRYPT} or
//     {CRYPT}.
//
// The caller re-hashes to argon2id after the first successful login with an
// older scheme or outdated parameters (NeedsRehash), so imported hashes fade
// out on their own.
//
// Default parameters: m=19456 KiB (19 MiB), t=2, p=1, the first of OWASP's
// equivalent argon2id configurations (Password Storage Cheat Sheet). On the
// 2-core machines popbox targets one verification takes roughly 20-30 ms of
// one core, so the box sustains about 70 logins per second; 50 simultaneous
// logins need at most 50 x 19 MiB < 1 GiB even unthrottled (userdb throttles
// further). p=1 because logins already run in parallel across the cores: more
// lanes would only add memory traffic, not throughput. Raising m buys more
// resistance against GPU cracking at a linear memory cost per concurrent
// login; it is a configuration choice, not a code change.
//
// Every hash this package will verify is bounded (MaxHashLen, argon2
// memory/time/lanes, bcrypt cost, SHA-crypt rounds) so that a hostile or
// careless import cannot make one login cost minutes of CPU or gigabytes of
// memory. Passwords longer than MaxPasswordLen never verify, which also bounds
// SHA-crypt, whose work grows with the password length.
//
// All comparisons of derived keys are constant-time (crypto/subtle).
package passhash

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Errors returned by this package; test with errors.Is.
var (
	// ErrInvalidPassword: a password that may not be set (empty, too long,
	// not UTF-8, contains NUL).
	ErrInvalidPassword = errors.New("passhash: invalid password")
	// ErrInvalidHash: a hash string of a known scheme that is malformed or
	// whose parameters are outside the bounds this package verifies.
	ErrInvalidHash = errors.New("passhash: invalid hash")
	// ErrUnsupportedScheme: a hash of a scheme this package cannot verify
	// (e.g. MD5-crypt, {PLAIN}, argon2i).
	ErrUnsupportedScheme = errors.New("passhash: unsupported hash scheme")
	// ErrInvalidParams: argon2id parameters Hash refuses to use.
	ErrInvalidParams = errors.New("passhash: invalid argon2id parameters")
)

// Bounds on what is accepted. They are constants, not settings, because they
// exist to protect the server from its own database.
const (
	// MaxPasswordLen is the longest password in bytes that can be set or
	// will verify.
	MaxPasswordLen = 1024
	// MaxHashLen bounds a stored hash string, Dovecot prefix included. The
	// longest legitimate one (argon2id with 64-byte salt and key) is ~220.
	MaxHashLen = 512

	// MaxArgon2Memory (KiB) is 1 GiB, the most one login may allocate.
	MaxArgon2Memory = 1 << 20
	// MaxArgon2Work bounds memory x passes (KiB), the total memory traffic
	// and so the time, to 1 GiB: 27 times the default cost, a second or
	// more of CPU. It admits Dovecot's ARGON2ID (64 MiB, t=3) and
	// libsodium's "moderate" preset (256 MiB, t=3); its "sensitive" preset
	// (1 GiB, t=4) is refused, as it costs over 10 s per login here.
	MaxArgon2Work = 1 << 20
	// MaxArgon2Time bounds passes, for small m.
	MaxArgon2Time = 64
	// MaxArgon2Threads bounds lanes; each one is a goroutine.
	MaxArgon2Threads = 16

	// MaxBcryptCost 13 is 2^13 rounds, about a second of CPU. Dovecot
	// defaults to 5 and common advice to 10-12.
	MaxBcryptCost = 13
	// MaxSHACryptRounds bounds SHA-crypt rounds, about a second of CPU; the
	// spec allows up to 999999999 (hours). glibc and Dovecot default to
	// 5000, passlib to 656000.
	MaxSHACryptRounds = 1_000_000
	// MaxSHACryptBlocks bounds the compression-function calls of one
	// SHA-crypt verification. SHA-crypt hashes the password twice per round,
	// so a long password multiplies the cost of a high-rounds hash. This
	// admits MaxSHACryptRounds for passwords up to 63 bytes, and a
	// 1024-byte password with up to 88000 rounds; beyond that the
	// verification fails without hashing (Verify returns false, nil).
	MaxSHACryptBlocks = 3 * MaxSHACryptRounds
)

// Scheme names reported by Scheme.
const (
	SchemeArgon2id    = "argon2id"
	SchemeBcrypt      = "bcrypt"
	SchemeSHA512Crypt = "sha512-crypt"
	SchemeSHA256Crypt = "sha256-crypt"
)

// Params are the argon2id cost parameters for new hashes. The zero value
// means DefaultParams.
type Params struct {
	// Memory in KiB (argon2 "m"). At least 8*Threads.
	Memory uint32
	// Time is the number of passes over memory (argon2 "t"), at least 1.
	Time uint32
	// Threads is the degree of parallelism (argon2 "p", lanes), at least 1.
	Threads uint8
}

// DefaultParams returns OWASP's argon2id recommendation: m=19456 KiB, t=2,
// p=1. See the package documentation for why.
func DefaultParams() Params {
	return Params{Memory: 19456, Time: 2, Threads: 1}
}

// orDefault resolves the zero value.
func (p Params) orDefault() Params {
	if p == (Params{}) {
		return DefaultParams()
	}
	return p
}

// Validate reports whether p (after resolving the zero value) is usable for
// new hashes; the bounds are the same as for verification.
func (p Params) Validate() error {
	p = p.orDefault()
	if err := checkArgon2Cost(p.Memory, p.Time, uint32(p.Threads), defaultLimits()); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidParams, err)
	}
	return nil
}

func (p Params) String() string {
	p = p.orDefault()
	return fmt.Sprintf("m=%d,t=%d,p=%d", p.Memory, p.Time, p.Threads)
}

// CheckPassword reports whether password may be set as a new password:
// non-empty, at most MaxPasswordLen bytes, valid UTF-8 (so it means the same
// to every client and tool), and free of NUL, which crypt(3)-based systems
// such as Dovecot's cannot represent and SASL PLAIN (RFC 4616 §2) cannot
// carry.
func CheckPassword(password string) error {
	switch {
	case password == "":
		return fmt.Errorf("%w: empty", ErrInvalidPassword)
	case len(password) > MaxPasswordLen:
		return fmt.Errorf("%w: longer than %d bytes", ErrInvalidPassword, MaxPasswordLen)
	case !utf8.ValidString(password):
		return fmt.Errorf("%w: not valid UTF-8", ErrInvalidPassword)
	case strings.IndexByte(password, 0) >= 0:
		return fmt.Errorf("%w: contains a NUL character", ErrInvalidPassword)
	}
	return nil
}

// Hash returns a new argon2id PHC string for password with a fresh random
// salt. The zero Params means DefaultParams.
func Hash(password string, p Params) (string, error) {
	if err := CheckPassword(password); err != nil {
		return "", err
	}
	p = p.orDefault()
	if err := p.Validate(); err != nil {
		return "", err
	}
	return hashArgon2id(password, p)
}

// Verify reports whether password matches hash. err is non-nil only when the
// hash itself cannot be used (ErrInvalidHash, ErrUnsupportedScheme); a wrong
// password is (false, nil). A password that could never have been set
// (empty, longer than MaxPasswordLen) is (false, nil) without any hashing.
// Dovecot scheme prefixes ({BLF-CRYPT} etc.) are accepted.
func Verify(hash, password string) (ok bool, err error) {
	return verify(hash, password, defaultLimits())
}

func verify(hash, password string, lim limits) (bool, error) {
	h, err := parse(hash, lim)
	if err != nil {
		return false, err
	}
	// Checked after parsing so that a broken hash is reported whatever the
	// password; not CheckPassword, because an imported hash may predate our
	// UTF-8 rule.
	if password == "" || len(password) > MaxPasswordLen {
		return false, nil
	}
	return h.verify([]byte(password)), nil
}

// NeedsRehash reports whether hash should be replaced by Hash(password, p)
// at the next opportunity: it is not argon2id, uses parameters other than p
// (lower or higher: the configuration is what counts), a salt or key of
// another length, or cannot be parsed at all.
func NeedsRehash(hash string, p Params) bool {
	h, err := parse(hash, defaultLimits())
	if err != nil {
		return true
	}
	a, ok := h.(*argon2Hash)
	if !ok {
		return true
	}
	p = p.orDefault()
	return a.memory != p.Memory || a.time != p.Time || a.threads != uint32(p.Threads) ||
		len(a.salt) != saltLen || len(a.key) != keyLen
}

// Normalize validates hash as one Verify can check and returns it without
// any Dovecot scheme prefix (the hash strings themselves name their scheme).
// It is what an import should store.
func Normalize(hash string) (string, error) {
	if _, err := parse(hash, defaultLimits()); err != nil {
		return "", err
	}
	_, rest, _ := splitPrefix(hash)
	return rest, nil
}

// Scheme returns the scheme name of hash (SchemeArgon2id, ...), or an error
// if Verify could not check it.
func Scheme(hash string) (string, error) {
	h, err := parse(hash, defaultLimits())
	if err != nil {
		return "", err
	}
	return h.scheme(), nil
}

// parsedHash is one decoded hash string.
type parsedHash interface {
	scheme() string
	// verify does the (bounded) work and compares in constant time.
	verify(password []byte) bool
}

// limits are the cost bounds parse enforces. They are a value rather than the
// constants alone so the fuzz test can run the same code with cheap bounds.
type limits struct {
	argon2Memory, argon2Time, argon2Threads uint32
	argon2Work                              uint64
	bcryptCost                              int
	shaCryptRounds, shaCryptBlocks          int
}

func defaultLimits() limits {
	return limits{
		argon2Memory:   MaxArgon2Memory,
		argon2Time:     MaxArgon2Time,
		argon2Threads:  MaxArgon2Threads,
		argon2Work:     MaxArgon2Work,
		bcryptCost:     MaxBcryptCost,
		shaCryptRounds: MaxSHACryptRounds,
		shaCryptBlocks: MaxSHACryptBlocks,
	}
}

// splitPrefix separates a Dovecot "{SCHEME}" prefix (Dovecot's
// doc/configuration "Password schemes"); the scheme name is returned upper
// case because Dovecot matches it case-insensitively.
func splitPrefix(hash string) (prefix, rest string, ok bool) {
	if !strings.HasPrefix(hash, "{") {
		return "", hash, false
	}
	end := strings.IndexByte(hash, '}')
	// Dovecot's scheme names are short; anything longer is not a prefix.
	if end < 0 || end > 32 {
		return "", hash, false
	}
	return strings.ToUpper(hash[1:end]), hash[end+1:], true
}

func parse(hash string, lim limits) (parsedHash, error) {
	if len(hash) > MaxHashLen {
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrInvalidHash, MaxHashLen)
	}
	prefix, rest, hasPrefix := splitPrefix(hash)
	if hasPrefix && !knownPrefix(prefix) {
		return nil, fmt.Errorf("%w: scheme %q", ErrUnsupportedScheme, prefix)
	}
	var kind string
	switch {
	case strings.HasPrefix(rest, "$argon2id$"):
		kind = SchemeArgon2id
	case strings.HasPrefix(rest, "$2a$"), strings.HasPrefix(rest, "$2b$"), strings.HasPrefix(rest, "$2y$"):
		kind = SchemeBcrypt
	case strings.HasPrefix(rest, "$6$"):
		kind = SchemeSHA512Crypt
	case strings.HasPrefix(rest, "$5$"):
		kind = SchemeSHA256Crypt
	default:
		if hasPrefix {
			return nil, fmt.Errorf("%w: scheme %s with an unrecognised hash format", ErrUnsupportedScheme, prefix)
		}
		// Do not echo the string: it may be a plaintext password.
		return nil, fmt.Errorf("%w: unrecognised hash format", ErrUnsupportedScheme)
	}
	if hasPrefix && !prefixAllows(prefix, kind) {
		return nil, fmt.Errorf("%w: {%s} prefix on a %s hash", ErrInvalidHash, prefix, kind)
	}
	var h parsedHash
	var err error
	switch kind {
	case SchemeArgon2id:
		h, err = parseArgon2id(rest, lim)
	case SchemeBcrypt:
		h, err = parseBcrypt(rest, lim)
	case SchemeSHA512Crypt:
		h, err = parseSHACrypt(rest, sha512Variant(), lim)
	case SchemeSHA256Crypt:
		h, err = parseSHACrypt(rest, sha256Variant(), lim)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrInvalidHash, kind, err)
	}
	return h, nil
}

func knownPrefix(prefix string) bool {
	switch prefix {
	case "ARGON2ID", "BLF-CRYPT", "SHA512-CRYPT", "SHA256-CRYPT", "CRYPT":
		return true
	}
	return false
}

// prefixAllows reports whether a Dovecot scheme prefix may carry a hash of
// kind. {CRYPT} is whatever crypt(3) understands, which for us is bcrypt and
// SHA-crypt.
func prefixAllows(prefix, kind string) bool {
	switch prefix {
	case "ARGON2ID":
		return kind == SchemeArgon2id
	case "BLF-CRYPT":
		return kind == SchemeBcrypt
	case "SHA512-CRYPT":
		return kind == SchemeSHA512Crypt
	case "SHA256-CRYPT":
		return kind == SchemeSHA256Crypt
	case "CRYPT":
		return kind == SchemeBcrypt || kind == SchemeSHA512Crypt || kind == SchemeSHA256Crypt
	}
	return false
}
