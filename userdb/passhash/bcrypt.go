package passhash

import (
	"errors"
	"fmt"

	"golang.org/x/crypto/bcrypt"
)

// bcryptHash is a modular-crypt bcrypt string, "$2b$NN$" + 22 salt + 31
// hash characters. $2a$, $2b$ and $2y$ compute the same function for every
// password that is valid UTF-8 without NUL (they differ only in old bugs
// with 8-bit characters and lengths over 255), so x/crypto verifies all
// three. $2x$ (the buggy variant) and $2$ are refused.
type bcryptHash struct {
	hash string
	cost int
}

func (*bcryptHash) scheme() string { return SchemeBcrypt }

func (h *bcryptHash) verify(password []byte) bool {
	// Like every bcrypt implementation, only the first 72 bytes count.
	// CompareHashAndPassword compares in constant time.
	return bcrypt.CompareHashAndPassword([]byte(h.hash), password) == nil
}

const bcryptLen = 60

func parseBcrypt(s string, lim limits) (*bcryptHash, error) {
	if len(s) != bcryptLen {
		return nil, fmt.Errorf("length %d, want %d", len(s), bcryptLen)
	}
	// s[:4] was checked by parse.
	if s[6] != '$' || !isDigit(s[4]) || !isDigit(s[5]) {
		return nil, errors.New("want $2b$NN$ with a two-digit cost")
	}
	cost := int(s[4]-'0')*10 + int(s[5]-'0')
	if cost < bcrypt.MinCost || cost > lim.bcryptCost {
		return nil, fmt.Errorf("cost %d outside %d..%d", cost, bcrypt.MinCost, lim.bcryptCost)
	}
	for i := 7; i < len(s); i++ {
		if !isCryptB64(s[i]) {
			return nil, errors.New("salt or hash contains a character outside ./0-9A-Za-z")
		}
	}
	return &bcryptHash{hash: s, cost: cost}, nil
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// isCryptB64 reports whether c is in the crypt(3) base64 alphabet
// "./0-9A-Za-z" that bcrypt and SHA-crypt share (in different orders).
func isCryptB64(c byte) bool {
	return c == '.' || c == '/' || isDigit(c) || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
}
