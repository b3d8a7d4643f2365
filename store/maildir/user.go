package maildir

import (
	"github.com/popbox/popbox/store"
)

// ValidUser reports whether user can name a mailbox directory, returning an
// error wrapping store.ErrInvalidUser if not: store.ValidUser, whose rules
// are this store's.
func ValidUser(user string) error { return store.ValidUser(user) }
