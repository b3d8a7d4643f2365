package postgres

import (
	"fmt"
	"strconv"
	"time"

	"github.com/popbox/popbox/store"
)

// maxUIDLLen is RFC 1939 §7's limit.
const maxUIDLLen = 70

// formatUIDL is the UIDL of uid in epoch: %08X%08X, store/maildir's
// format, so that a mailbox moved between the two backends with Import
// keeps its UIDLs and neither backend can later hand one of them out again
// (see placeImported).
func formatUIDL(uid, epoch uint32) string {
	return fmt.Sprintf("%08X%08X", uid, epoch)
}

// parseUIDL is the strict inverse of formatUIDL; uid 0 is never assigned.
func parseUIDL(s string) (uid, epoch uint32, ok bool) {
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

// validUIDL checks RFC 1939 §7: "one to 70 characters in the range 0x21 to
// 0x7E".
func validUIDL(s string) bool {
	if len(s) < 1 || len(s) > maxUIDLLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// counter is a mailbox's UIDL counter, as its row holds it: the next uid
// in epoch, and floor, the lowest epoch it ever allocated in.
type counter struct {
	epoch, next, floor int64
}

// allocate hands out the next uid, starting a new epoch when the 32-bit
// uid space of the current one is used up (above every epoch used, so no
// (uid, epoch) pair can repeat).
func (c counter) allocate(now time.Time) (uid, epoch uint32, next counter) {
	if c.next > 1<<32-1 {
		c.epoch, c.next = max(now.Unix(), c.epoch+1), 1
		c.epoch = min(c.epoch, 1<<32-1)
	}
	uid, epoch = uint32(c.next), uint32(c.epoch)
	c.next++
	return uid, epoch, c
}

// placeImported decides how an imported UIDL in popbox's own format,
// (uid, epoch), is stored, given the counter c; it is store/maildir's rule,
// so both backends accept and refuse the same UIDLs. atEnd: the counter
// moves past it (next), and the UIDL is the counter's own from now on. Not
// atEnd: c is unchanged, and the UIDL is kept as a literal, which the
// counter can never produce. The error wraps store.ErrUIDLPossiblyUsed if
// the store may have handed that UIDL out already.
func placeImported(c counter, uid, epoch uint32) (next counter, atEnd bool, err error) {
	u, e := int64(uid), int64(epoch)
	switch {
	case e > c.epoch:
		c.epoch, c.next = e, u+1
		return c, true, nil
	case e == c.epoch && u >= c.next:
		c.next = u + 1
		return c, true, nil
	case e < c.floor:
		// The counter never allocated in this epoch, and never will.
		return c, false, nil
	}
	return c, false, fmt.Errorf("%w: %s: popbox may have handed it out (its UIDLs run from epoch %08X to uid %d of epoch %08X; import the UIDLs of one epoch in ascending order)",
		store.ErrUIDLPossiblyUsed, formatUIDL(uid, epoch), c.floor, c.next-1, c.epoch)
}
