package metrics

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/popbox/popbox/store"
)

// Store returns st with Open, Deliver and the maildrops' Open and Commit
// timed into popbox_store_operation_duration_seconds. Errors are returned
// as st gave them, so errors.Is (store.ErrInUse, store.ErrQuota, ...)
// works through the wrapper.
func (m *Metrics) Store(st store.Store) store.Store { return timedStore{st, m} }

// Admin is Store for a store.Admin; the administrative calls (Usage,
// Purge, Restore, Expire, Import) pass through untimed.
func (m *Metrics) Admin(st store.Admin) store.Admin { return timedAdmin{st, m} }

type timedStore struct {
	next store.Store
	m    *Metrics
}

func (t timedStore) Open(ctx context.Context, user string) (store.Maildrop, error) {
	return t.m.open(ctx, t.next, user)
}

func (t timedStore) Deliver(ctx context.Context, user string, r io.Reader) (store.MessageInfo, error) {
	return t.m.deliver(ctx, t.next, user, r)
}

// timedAdmin's own Open and Deliver shadow those of the embedded Admin.
type timedAdmin struct {
	store.Admin
	m *Metrics
}

func (t timedAdmin) Open(ctx context.Context, user string) (store.Maildrop, error) {
	return t.m.open(ctx, t.Admin, user)
}

func (t timedAdmin) Deliver(ctx context.Context, user string, r io.Reader) (store.MessageInfo, error) {
	return t.m.deliver(ctx, t.Admin, user, r)
}

func (m *Metrics) open(ctx context.Context, st store.Store, user string) (store.Maildrop, error) {
	start := time.Now()
	d, err := st.Open(ctx, user)
	m.observe(opOpen, start, err)
	if err != nil {
		return nil, err
	}
	return &timedMaildrop{Maildrop: d, m: m}, nil
}

func (m *Metrics) deliver(ctx context.Context, st store.Store, user string, r io.Reader) (store.MessageInfo, error) {
	start := time.Now()
	info, err := st.Deliver(ctx, user, r)
	m.observe(opDeliver, start, err)
	return info, err
}

// observe records one call. ErrInUse and ErrQuota are the store answering
// as designed, counted elsewhere (IN-USE refusals, quota deliveries), so
// they do not count as errors.
func (m *Metrics) observe(o op, start time.Time, err error) {
	m.opSeconds[o].Observe(time.Since(start).Seconds())
	if err != nil && !errors.Is(err, store.ErrInUse) && !errors.Is(err, store.ErrQuota) {
		m.opErrors[o].Inc()
	}
}

// timedMaildrop times Open (of a message, not the streaming that follows)
// and Commit; Messages and Close pass through.
type timedMaildrop struct {
	store.Maildrop
	m *Metrics
}

func (d *timedMaildrop) Open(i int) (io.ReadCloser, error) {
	start := time.Now()
	rc, err := d.Maildrop.Open(i)
	d.m.observe(opMessageOpen, start, err)
	return rc, err
}

func (d *timedMaildrop) Commit(deleted []int) error {
	start := time.Now()
	err := d.Maildrop.Commit(deleted)
	d.m.observe(opCommit, start, err)
	return err
}
