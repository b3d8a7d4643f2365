package maildir

import (
	"context"
	"fmt"

	"github.com/popbox/popbox/store"
)

// limited reports whether q limits anything.
func limited(q store.Quota) bool { return q.MaxBytes > 0 || q.MaxMessages > 0 }

// checkQuota returns an error wrapping store.ErrQuota if one more message
// of size octets would take usage u over q.
func checkQuota(q store.Quota, u store.Usage, size int64) error {
	if q.MaxMessages > 0 && u.Messages+1 > q.MaxMessages {
		return fmt.Errorf("%w: %d of %d messages", store.ErrQuota, u.Messages, q.MaxMessages)
	}
	if q.MaxBytes > 0 && u.Bytes+size > q.MaxBytes {
		return fmt.Errorf("%w: %d of %d octets used, message is %d", store.ErrQuota, u.Bytes, q.MaxBytes, size)
	}
	return nil
}

// Usage implements store.Admin. It reads the totals the counter keeps (no
// scan); only a counter without them (written before quotas, or lost) makes
// it reconcile the mailbox as Open does, which also stores them. Files
// another MDA dropped into new/ since the last Open count from the next
// Open on.
func (s *Store) Usage(ctx context.Context, user string) (store.Usage, error) {
	mb, ok, err := s.existingMailbox(user)
	if err != nil || !ok {
		return store.Usage{}, err
	}
	lk, err := s.lockIndex(ctx, mb)
	if err != nil {
		return store.Usage{}, err
	}
	defer lk.unlock()
	ctr, ok, err := s.readCounter(mb)
	if err != nil {
		return store.Usage{}, err
	}
	if ok && ctr.acct {
		return ctr.usage(), nil
	}
	snap, unsaved, err := s.reconcile(ctx, mb)
	if err != nil {
		return store.Usage{}, err
	}
	if unsaved != nil {
		s.log.Warn("maildir: cannot update the index or the counter", "user", mb.user, "err", unsaved)
	}
	return usageOf(snap), nil
}

func usageOf(snap []entry) store.Usage {
	var u store.Usage
	for _, e := range snap {
		u.Messages++
		u.Bytes += e.size
	}
	return u
}
