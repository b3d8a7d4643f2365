package maildir

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/popbox/popbox/store"
)

// Import implements store.Admin, for migrating from another POP3 server
// without clients downloading everything again. The message is stored as
// Deliver stores it (same fsyncs, same all-or-nothing), and keeps uidl.
// Imported messages are listed after what the mailbox already has, in the
// order they were imported, whatever their UIDLs look like:
//
//   - Most UIDLs, such as Dovecot's (its default pop3_uidl_format
//     %08Xu%08Xv prints lower-case hex, e.g. 000000016b09839a), an X-UIDL
//     header or another server's format, are kept as literals: the message
//     gets a uid of its own from the counter, which places it at the end of
//     the listing, and the literal goes into the index record and,
//     percent-encoded, into an ,L= field of its file name (see name.go);
//     POP3 reports the literal.
//   - A UIDL in popbox's own format (16 upper-case hex digits, uid not 0:
//     formatUIDL of a (uid, epoch)) could be one popbox hands out, so the
//     counter is kept from ever producing it. In an epoch above the
//     counter's, the counter moves to that epoch past the uid; in the
//     counter's epoch at or above the next uid, the counter moves past it:
//     either way the UIDL sorts after everything in the mailbox, so the
//     message is stored as that (uid, epoch) itself (as Deliver stores one),
//     at the end of the listing. In an epoch below the floor (the lowest one
//     popbox ever allocated in, which the counter keeps) popbox never hands
//     it out, and the message is stored as a literal like any other, at the
//     end of the listing rather than at its (uid, epoch). Anything else is
//     refused with store.ErrUIDLPossiblyUsed: popbox may have given that
//     UIDL to a message since deleted. So import such UIDLs of one epoch in
//     ascending order; into a mailbox popbox created after the source's
//     epoch began, import works in any order.
//
// A UIDL that a message in the mailbox has is refused with
// store.ErrUIDLConflict. That check reconciles the mailbox and reads its
// index once, then only what was appended since, so a migration of n
// messages costs O(n), not O(n²); a retried import finds the message a
// crashed one stored. A UIDL only a deleted message in the trash has is not
// refused: Restore gives messages new UIDLs, so they cannot meet.
//
// The quota does not refuse an import, which is the administrator moving
// mail that the user already had; it counts toward the usage afterwards.
// The message's delivery time for Expire is the time of the import.
func (s *Store) Import(ctx context.Context, user string, r io.Reader, uidl string) (store.MessageInfo, error) {
	if err := store.CheckUIDL(uidl); err != nil {
		return store.MessageInfo{}, err
	}
	in := incoming{room: -1, lit: uidl}
	if uid, epoch, ok := parseUIDL(uidl); ok {
		if epoch == 1<<32-1 {
			// Above every epoch popbox could move on to later.
			return store.MessageInfo{}, fmt.Errorf("%w: %s: epoch FFFFFFFF leaves no room for later mail", store.ErrInvalidUIDL, uidl)
		}
		in.own, in.uid, in.epoch = true, uid, epoch
	}
	mb, err := s.mailbox(user)
	if err != nil {
		return store.MessageInfo{}, err
	}
	info, err := s.put(ctx, mb, r, in)
	if err != nil {
		return store.MessageInfo{}, err
	}
	s.log.Debug("maildir: imported", "user", user, "uidl", info.UIDL, "size", info.Size)
	return info, nil
}

// placeImported decides how an imported UIDL in popbox's format, (uid,
// epoch), is stored, given the counter c (see Import). atEnd: the counter
// moved past it (returned), and it sorts after every message, so the
// message takes (uid, epoch) itself. Otherwise c is unchanged and the
// message is stored as a literal with a uid of its own. The error wraps
// store.ErrUIDLPossiblyUsed if popbox may have handed that UIDL out.
func placeImported(c counterState, uid, epoch uint32) (next counterState, atEnd bool, err error) {
	switch {
	case epoch > c.epoch:
		c.epoch, c.next = epoch, uint64(uid)+1
		return c, true, nil
	case epoch == c.epoch && uint64(uid) >= c.next:
		c.next = uint64(uid) + 1
		return c, true, nil
	case epoch < c.floor:
		// popbox never allocated a uid in this epoch, and never will.
		return c, false, nil
	}
	return c, false, fmt.Errorf("%w: %s: popbox may have handed it out (its UIDLs run from epoch %08X to uid %d of epoch %08X; import the UIDLs of one epoch in ascending order)",
		store.ErrUIDLPossiblyUsed, formatUIDL(uid, epoch), c.floor, c.next-1, c.epoch)
}

// uidlCache is the set of UIDLs in one mailbox's index, kept between
// imports. It holds the index file open, so that the file it read cannot
// be replaced by another with the same inode number unnoticed: a rewrite
// (always a rename) shows as a different file and causes a full read, an
// append as a longer file, of which only the new lines are read.
type uidlCache struct {
	mu   sync.Mutex
	dir  string
	f    *os.File
	size int64
	set  map[string]bool
}

// uidlPresent reports whether a message in mb has uidl. It runs under the
// index lock. A full read of the index (the first for this mailbox, or
// after another writer rewrote it) starts with a reconcile, as Open does:
// that repairs a damaged index and indexes files it lacks, such as one an
// import left when it crashed after its rename, so that the retried import
// finds its UIDL. On a warm mailbox the reconcile writes nothing.
func (s *Store) uidlPresent(ctx context.Context, mb mailbox, uidl string) (bool, error) {
	c := &s.uidls
	c.mu.Lock()
	defer c.mu.Unlock()
	p := mb.path(indexName)
	if st, err := os.Lstat(p); err == nil && c.dir == mb.dir && c.f != nil {
		if cst, err := c.f.Stat(); err == nil && os.SameFile(cst, st) && st.Size() >= c.size && c.readTail(st.Size()) {
			return c.set[uidl], nil
		}
	}
	c.reset()
	// The index file must list the mailbox: an index the reconcile could
	// not write back might lack a UIDL that a file's name carries.
	if _, unsaved, err := s.reconcile(ctx, mb); err != nil || unsaved != nil {
		return false, errors.Join(err, unsaved)
	}
	f, err := os.OpenFile(p, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return false, fmt.Errorf("maildir: read index: %w", err)
	}
	s.indexReads.Add(1)
	b, err := io.ReadAll(io.LimitReader(f, maxIndexBytes+1))
	if err != nil {
		f.Close()
		return false, fmt.Errorf("maildir: read index: %w", err)
	}
	d := parseIndex(b)
	c.dir, c.f, c.size = mb.dir, f, int64(len(b))
	c.set = make(map[string]bool, len(d.recs))
	for _, r := range d.recs {
		c.set[r.uidl()] = true
	}
	return c.set[uidl], nil
}

// readTail adds the records appended since the last read, reporting false
// (for a full read) on anything but whole, valid record lines.
func (c *uidlCache) readTail(size int64) bool {
	if size == c.size {
		return true
	}
	buf := make([]byte, size-c.size)
	if _, err := c.f.ReadAt(buf, c.size); err != nil || buf[len(buf)-1] != '\n' {
		return false
	}
	add := make([]string, 0, bytes.Count(buf, []byte{'\n'}))
	for line := range bytes.Lines(buf) {
		payload, ok := checkLine(line[:len(line)-1])
		if !ok {
			return false
		}
		r, ok := parseRecord(payload)
		if !ok {
			return false
		}
		add = append(add, r.uidl())
	}
	for _, u := range add {
		c.set[u] = true
	}
	c.size = size
	return true
}

func (c *uidlCache) reset() {
	if c.f != nil {
		c.f.Close()
	}
	c.dir, c.f, c.size, c.set = "", nil, 0, nil
}
