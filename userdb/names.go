package userdb

import (
	"fmt"
)

// MaxNameLen is the longest user name in bytes.
const MaxNameLen = 64

// Canonical returns name's canonical form: ASCII letters lower-cased, all
// other bytes unchanged. Deliberately not strings.ToLower: Unicode case
// mapping would turn e.g. "\u212A" (KELVIN SIGN) into "k", letting a second
// spelling reach an existing account; here it stays non-ASCII and fails
// ValidName.
func Canonical(name string) string {
	for i := 0; i < len(name); i++ {
		if c := name[i]; c >= 'A' && c <= 'Z' {
			b := []byte(name)
			for j := i; j < len(b); j++ {
				if b[j] >= 'A' && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return name
}

// ValidName reports whether name (in any case) can be a user name: 1 to
// MaxNameLen characters of [a-z0-9._@+-] after Canonical, not starting with
// '.' or '-'. The set admits plain names and e-mail addresses, and every
// valid name is safe as a file name (the maildir store uses it as one) and
// as a command-line argument. The error wraps ErrInvalidName.
func ValidName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty", ErrInvalidName)
	case len(name) > MaxNameLen:
		return fmt.Errorf("%w: longer than %d characters", ErrInvalidName, MaxNameLen)
	case name[0] == '.' || name[0] == '-':
		return fmt.Errorf("%w: %q starts with %q", ErrInvalidName, name, name[0])
	}
	for i := 0; i < len(name); i++ {
		if !nameChar(name[i]) {
			return fmt.Errorf("%w: %q contains %q; allowed are letters, digits and . _ @ + -", ErrInvalidName, name, name[i])
		}
	}
	return nil
}

func nameChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	switch c {
	case '.', '_', '@', '+', '-':
		return true
	}
	return false
}
