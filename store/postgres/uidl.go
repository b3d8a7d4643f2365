package postgres

import (
	"fmt"
	"time"

	"github.com/popbox/popbox/store"
)

func formatUIDL(uid, epoch uint32) string { return store.FormatUIDL(uid, epoch) }

func parseUIDL(s string) (uid, epoch uint32, ok bool) { return store.ParseUIDL(s) }

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
