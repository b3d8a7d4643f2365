package maildir

import (
	"context"
	"os"
	"time"

	"github.com/popbox/popbox/store"
)

// Expire implements store.Admin: the server-side expiry a site announces
// with RFC 2449 §6.7 EXPIRE ("the minimum server retention period, in days,
// for messages on the server"). It takes the session lock as a POP3 login
// does, without waiting, so it returns store.ErrInUse and changes nothing
// while a client has the maildrop open (the next run catches up), then
// deletes through Commit, exactly as a DELE and QUIT would: into the trash
// when Options.Retention is set.
//
// A message's delivery time is the Unix time its Maildir unique name starts
// with ("<seconds>.", which popbox and most MDAs write at delivery, and
// which no tool changes), else its file's modification time. Neither the
// UIDL (an epoch is per mailbox, not per message) nor the mtime alone (a
// backup restore or a copy resets it) would do. A restored message gets a
// new unique name, so its expiry counts from the restore; an imported one
// counts from the import.
func (s *Store) Expire(ctx context.Context, user string, olderThan time.Time) (int, error) {
	_, ok, err := s.existingMailbox(user)
	if err != nil || !ok {
		return 0, err
	}
	md, err := s.Open(ctx, user)
	if err != nil {
		return 0, err
	}
	m := md.(*maildrop)
	var doomed []int
	var at []time.Time
	for i := range m.snap {
		t, ok := deliveredAt(m.mb, &m.snap[i])
		if ok && t.Before(olderThan) {
			doomed = append(doomed, i)
			at = append(at, t)
		}
	}
	if len(doomed) == 0 {
		return 0, m.Close()
	}
	if err := m.Commit(doomed); err != nil {
		return 0, err
	}
	for j, i := range doomed {
		e := &m.snap[i]
		s.log.Info("maildir: expired message", "user", user, "uidl", e.uidl(), "size", e.size,
			"delivered_at", at[j].UTC().Format(time.RFC3339))
	}
	return len(doomed), nil
}

// deliveredAt is e's delivery time (see Expire).
func deliveredAt(mb mailbox, e *entry) (time.Time, bool) {
	if t, ok := keyTime(e.key); ok {
		return t, true
	}
	st, err := os.Lstat(mb.path(e.sub, e.name))
	if err != nil {
		return time.Time{}, false
	}
	return st.ModTime(), true
}

// ExpireAll implements store.Admin: Expire for every mailbox under the
// root, for a background job.
func (s *Store) ExpireAll(ctx context.Context, olderThan time.Time) (n int, busy []string, err error) {
	users, err := s.users()
	if err != nil {
		return 0, nil, err
	}
	return store.ExpireEach(ctx, "maildir: expire", users, func(ctx context.Context, u string) (int, error) {
		return s.Expire(ctx, u, olderThan)
	})
}
