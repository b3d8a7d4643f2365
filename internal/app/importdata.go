package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/popbox/popbox/store"
	"github.com/popbox/popbox/store/maildir"
)

// MailboxImport is the outcome of copying one mailbox (ImportMailboxes).
type MailboxImport struct {
	User string
	// Imported messages are new in the destination; Already ones were
	// there with the same UIDL (an earlier run) and were skipped.
	Imported, Already int
	// Err is why the mailbox was not copied completely; the messages
	// counted were.
	Err error
}

// ErrSameStore: the source of ImportMailboxes is the configured store
// itself.
var ErrSameStore = errors.New("the source is the configured mail store itself")

// Mailboxes lists the users with a Maildir under the data directory, in
// name order. A directory that is not a valid user name or has no Maildir
// inside is not a mailbox, and is left out.
func (d DataDir) Mailboxes() ([]string, error) {
	ents, err := os.ReadDir(d.MailRoot())
	if err != nil {
		return nil, fmt.Errorf("listing mailboxes: %w", err)
	}
	var users []string
	for _, e := range ents { // ReadDir sorts by name
		if !e.IsDir() || maildir.ValidUser(e.Name()) != nil {
			continue
		}
		if st, err := os.Stat(filepath.Join(d.MailRoot(), e.Name(), "Maildir")); err == nil && st.IsDir() {
			users = append(users, e.Name())
		}
	}
	return users, nil
}

// ImportMailboxes copies every mailbox of the Maildir store in the data
// directory src into dst, each message with the UIDL src served for it, in
// src's listing order, so that no client downloads anything again. It
// calls report after each mailbox and goes on past a failed one; the
// error joins every mailbox's.
//
// It can be run again after an interruption, or to pick up mail that
// arrived in src since: a message whose UIDL a live message in dst already
// has is skipped, not copied twice. It must not be run again once users
// fetch from dst, though: a message they have deleted there since is no
// longer live and would be copied back.
//
// Each src mailbox is locked while it is read (store.ErrInUse if a
// `popbox serve` on src has a session open): stop the server on src first,
// and mail delivery to it. Deleted mail src keeps for restoring is not
// copied.
func ImportMailboxes(ctx context.Context, src DataDir, dst store.Admin, log *slog.Logger, report func(MailboxImport)) error {
	users, err := src.Mailboxes()
	if err != nil {
		return err
	}
	from, err := maildir.New(src.MailRoot(), maildir.Options{Logger: log})
	if err != nil {
		return fmt.Errorf("opening mail store %s: %w", src.MailRoot(), err)
	}
	var errs []error
	for _, user := range users {
		if err := ctx.Err(); err != nil {
			return errors.Join(append(errs, err)...)
		}
		r := importMailbox(ctx, from, dst, user)
		if r.Err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", user, r.Err))
		}
		report(r)
	}
	return errors.Join(errs...)
}

// importMailbox copies one mailbox (see ImportMailboxes).
func importMailbox(ctx context.Context, from *maildir.Store, dst store.Admin, user string) MailboxImport {
	res := MailboxImport{User: user}
	src, err := from.Open(ctx, user)
	if errors.Is(err, store.ErrInUse) {
		res.Err = fmt.Errorf("reading the source mailbox: %w (stop popbox serve on the source first)", err)
		return res
	}
	if err != nil {
		res.Err = fmt.Errorf("reading the source mailbox: %w", err)
		return res
	}
	defer src.Close() // changes nothing

	// The messages dst has, by UIDL, so that a second run skips them
	// without sending each body to the database only to see Import refuse
	// it. A session on dst (a frontend already serving the user) hides
	// them; Import's ErrUIDLConflict then still keeps the run from copying
	// anything twice.
	have := map[string]int64{}
	if dm, err := dst.Open(ctx, user); err == nil {
		for _, m := range dm.Messages() {
			have[m.UIDL] = m.Size
		}
		dm.Close()
	} else if !errors.Is(err, store.ErrInUse) {
		res.Err = fmt.Errorf("reading the destination mailbox: %w", err)
		return res
	}

	for i, m := range src.Messages() {
		if size, ok := have[m.UIDL]; ok {
			if size != m.Size {
				// Another message has this UIDL in dst (mail delivered
				// there before the import, in the second the source
				// mailbox was made): skipping this one would lose it,
				// and it cannot keep its UIDL.
				res.Err = fmt.Errorf("message %d cannot keep its UIDL %s: %w by a message of %d octets, not %d",
					i+1, m.UIDL, store.ErrUIDLConflict, size, m.Size)
				return res
			}
			res.Already++
			continue
		}
		body, err := src.Open(i)
		if err != nil {
			res.Err = fmt.Errorf("reading message %d (UIDL %s): %w", i+1, m.UIDL, err)
			return res
		}
		_, err = dst.Import(ctx, user, body, m.UIDL)
		body.Close()
		switch {
		case errors.Is(err, store.ErrUIDLConflict):
			res.Already++
		case errors.Is(err, store.ErrUIDLPossiblyUsed):
			// The destination may have served this UIDL for another
			// message (or served this one and it was deleted since):
			// a client that saw it would never download this one.
			res.Err = fmt.Errorf("message %d cannot keep its UIDL %s: %w", i+1, m.UIDL, err)
			return res
		case err != nil:
			res.Err = fmt.Errorf("importing message %d (UIDL %s): %w", i+1, m.UIDL, err)
			return res
		default:
			res.Imported++
		}
	}
	return res
}
