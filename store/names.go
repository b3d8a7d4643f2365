package store

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxUserLen is the longest user name: one path component (NAME_MAX), so
// that the Maildir store can use it as a directory name.
const maxUserLen = 255

// ValidUser reports whether user can name a mailbox in every store,
// returning an error wrapping ErrInvalidUser if not. The rules are the
// Maildir store's, where the name becomes a single path component under
// the root; the PostgreSQL store applies them too, so that a mailbox can
// move between the two: not empty, ".", "..", starting with '.' (hidden,
// and Maildir++ folder syntax), containing '/', NUL, control characters
// (C0, DEL, C1) or invalid UTF-8, or longer than 255 bytes.
func ValidUser(user string) error {
	bad := func(why string) error {
		return fmt.Errorf("%w: %q: %s", ErrInvalidUser, truncate(user, 64), why)
	}
	switch {
	case user == "":
		return bad("empty")
	case len(user) > maxUserLen:
		return bad("longer than 255 bytes")
	case strings.HasPrefix(user, "."):
		return bad("starts with '.'")
	case strings.ContainsAny(user, "/\x00"):
		return bad("contains '/' or NUL")
	case !utf8.ValidString(user):
		return bad("invalid UTF-8")
	case strings.ContainsFunc(user, unicode.IsControl):
		return bad("contains a control character")
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// MaxUIDLLen is RFC 1939 §7's bound on a UIDL.
const MaxUIDLLen = 70

// ValidUIDL checks RFC 1939 §7: "one to 70 characters in the range 0x21 to
// 0x7E".
func ValidUIDL(s string) bool {
	if len(s) < 1 || len(s) > MaxUIDLLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// CheckUIDL is ValidUIDL as an error wrapping ErrInvalidUIDL, for a UIDL
// given from outside (Import).
func CheckUIDL(s string) error {
	if !ValidUIDL(s) {
		return fmt.Errorf("%w: %q: not 1 to 70 characters in 0x21..0x7E", ErrInvalidUIDL, truncate(s, 80))
	}
	return nil
}

// FormatUIDL is the UIDL the stores give message uid of a mailbox's
// epoch: %08X%08X in upper-case hex (the shape of Dovecot's default
// %08Xu%08Xv, which Dovecot prints in lower case). Fixed width, so
// distinct (uid, epoch) pairs give distinct strings, and RFC 1939 §7
// syntax by construction. Both stores use it, so that a mailbox moved
// between them with Import keeps its UIDLs and neither can later hand one
// of them out again.
func FormatUIDL(uid, epoch uint32) string {
	return fmt.Sprintf("%08X%08X", uid, epoch)
}

// ParseUIDL is the strict inverse of FormatUIDL; uid 0 is never assigned.
func ParseUIDL(s string) (uid, epoch uint32, ok bool) {
	if len(s) != 16 {
		return 0, 0, false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'A' || c > 'F') {
			return 0, 0, false
		}
	}
	u, err1 := strconv.ParseUint(s[:8], 16, 32)
	e, err2 := strconv.ParseUint(s[8:], 16, 32)
	if err1 != nil || err2 != nil || u == 0 {
		return 0, 0, false
	}
	return uint32(u), uint32(e), true
}
