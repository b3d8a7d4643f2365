package maildir

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/popbox/popbox/store"
)

// maxUserLen is the longest user name: one path component (NAME_MAX).
const maxUserLen = 255

// ValidUser reports whether user can name a mailbox directory, returning an
// error wrapping store.ErrInvalidUser if not. The name becomes a single path
// component under the root, so it must not be empty, ".", "..", start with
// '.' (hidden, and Maildir++ folder syntax), contain '/', NUL, control
// characters (C0, DEL, C1) or invalid UTF-8, or exceed 255 bytes.
func ValidUser(user string) error {
	bad := func(why string) error {
		return fmt.Errorf("%w: %q: %s", store.ErrInvalidUser, truncate(user, 64), why)
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
