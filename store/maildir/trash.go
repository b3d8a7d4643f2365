package maildir

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/popbox/popbox/store"
)

// Deleted mail is kept in popbox-trash/ beside new/ and cur/, one file per
// message, named
//
//	<deleted-at>.<key>,P=<uid/epoch>[,L=<literal>],R=<size>
//
// where <deleted-at> is the Unix time of the deletion in decimal. The name
// alone says when the message was deleted, which UIDL it had and its size,
// so the time survives any crash with the rename that records the
// deletion itself (no second file to keep in step, no extra fsync per
// message), and Purge and Restore need only a readdir. The name is built
// from the snapshot, so a foreign file whose own name never carried
// popbox's fields still gets them here. When the name would be too long,
// a short random key replaces the original one (the key means nothing in
// the trash), and then, if still too long, the literal is left out.

// trashEntry is one file in popbox-trash/.
type trashEntry struct {
	name      string
	deletedAt time.Time
	fn        fileName
}

func (t *trashEntry) uidl() string {
	if t.fn.lit != "" {
		return t.fn.lit
	}
	return formatUIDL(t.fn.uid, t.fn.epoch)
}

// parseTrashName takes a trash file name apart; ok is false for anything
// popbox did not write.
func parseTrashName(name string) (trashEntry, bool) {
	secs, rest, found := strings.Cut(name, ".")
	if !found {
		return trashEntry{}, false
	}
	v, ok := parseDecimal(secs, 1<<40)
	if !ok {
		return trashEntry{}, false
	}
	fn := parseFileName(rest)
	if !fn.hasFields || fn.hasInfo {
		return trashEntry{}, false
	}
	return trashEntry{name: name, deletedAt: time.Unix(int64(v), 0), fn: fn}, true
}

// listTrash reads popbox-trash/; a missing directory is an empty trash.
// Files popbox did not name are returned apart, to be left alone.
func (s *Store) listTrash(mb mailbox) (ents []trashEntry, junk []string, err error) {
	d, err := os.Open(mb.path(trashName))
	if isNotExist(err) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("maildir: trash: %w", err)
	}
	des, err := d.ReadDir(-1)
	d.Close()
	if err != nil {
		return nil, nil, fmt.Errorf("maildir: trash: %w", err)
	}
	for _, de := range des {
		n := de.Name()
		if n == "" || n[0] == '.' || !de.Type().IsRegular() {
			continue
		}
		t, ok := parseTrashName(n)
		if !ok {
			junk = append(junk, n)
			continue
		}
		ents = append(ents, t)
	}
	return ents, junk, nil
}

// makeTrash creates popbox-trash/ if needed, durably.
func (s *Store) makeTrash(mb mailbox) error {
	p := mb.path(trashName)
	if isDir(p) {
		return nil
	}
	if err := s.step("mkdir trash"); err != nil {
		return fmt.Errorf("maildir: create trash: %w", err)
	}
	if err := os.Mkdir(p, 0o700); err != nil && !(errors.Is(err, fs.ErrExist) && isDir(p)) {
		return fmt.Errorf("maildir: create trash: %w", err)
	}
	return s.syncDir(mb.dir)
}

// trashPath is a free path in the trash for e, deleted at deletedAt. Only
// the holder of the session lock adds to the trash, so a name found free
// stays free until the rename.
func (s *Store) trashPath(mb mailbox, deletedAt time.Time, e *entry) (string, error) {
	prefix := strconv.FormatInt(max(deletedAt.Unix(), 0), 10) + "."
	key := e.key
	for range 4 {
		name := prefix + withFields(key, e.uid, e.epoch, e.size, e.lit, "", false)
		if len(name) > maxNameLen {
			name = prefix + withFields(key, e.uid, e.epoch, e.size, "", "", false)
		}
		p := mb.path(trashName, name)
		if len(name) <= maxNameLen {
			if _, err := os.Lstat(p); isNotExist(err) {
				return p, nil
			}
		}
		// Too long, or taken (a copy of the message deleted in the same
		// second): a short key of its own.
		var rnd [8]byte
		if _, err := rand.Read(rnd[:]); err != nil {
			return "", fmt.Errorf("maildir: random: %w", err)
		}
		key = "k" + hex.EncodeToString(rnd[:])
	}
	return "", fmt.Errorf("maildir: no free name in the trash for %s", e.name)
}

// Purge implements store.Admin: it removes the files in popbox-trash/ whose
// deletion time is Retention or more before now, under the index lock (so
// that it never races Restore), syncs the directory, and logs each one.
// With Retention 0 it empties the trash. Files in the trash that popbox did
// not name are left alone, with a warning.
func (s *Store) Purge(ctx context.Context, user string, now time.Time) (int, error) {
	mb, ok, err := s.existingMailbox(user)
	if err != nil || !ok || !isDir(mb.path(trashName)) {
		return 0, err
	}
	lk, err := s.lockIndex(ctx, mb)
	if err != nil {
		return 0, err
	}
	defer lk.unlock()
	ents, junk, err := s.listTrash(mb)
	if err != nil {
		return 0, err
	}
	if len(junk) > 0 {
		s.log.Warn("maildir: unknown files in the trash, left alone", "user", user, "count", len(junk), "first", junk[0])
	}
	cutoff := now.Add(-s.retention)
	var purged []trashEntry
	for _, t := range ents {
		if t.deletedAt.After(cutoff) {
			continue
		}
		if err = ctx.Err(); err != nil {
			err = fmt.Errorf("maildir: purge: %w", err)
			break
		}
		if err = s.step("unlink in trash"); err == nil {
			err = os.Remove(mb.path(trashName, t.name))
		}
		if isNotExist(err) {
			err = nil // removed behind our back
			continue
		}
		if err != nil {
			err = fmt.Errorf("maildir: purge %s: %w", t.name, err)
			break
		}
		purged = append(purged, t)
	}
	if len(purged) > 0 {
		if serr := s.syncDir(mb.path(trashName)); serr != nil {
			return 0, serr
		}
	}
	for _, t := range purged {
		s.log.Info("maildir: purged deleted message", "user", user, "uidl", t.uidl(), "size", t.fn.size,
			"deleted_at", t.deletedAt.UTC().Format(time.RFC3339))
	}
	return len(purged), err
}

// PurgeAll implements store.Admin: Purge for every mailbox under the root.
func (s *Store) PurgeAll(ctx context.Context, now time.Time) (int, error) {
	users, err := s.users()
	if err != nil {
		return 0, err
	}
	return store.PurgeEach(ctx, "maildir: purge", users, func(ctx context.Context, u string) (int, error) {
		return s.Purge(ctx, u, now)
	})
}

// users lists the directories under the root that can be mailboxes.
func (s *Store) users() ([]string, error) {
	des, err := os.ReadDir(s.root)
	if err != nil {
		return nil, fmt.Errorf("maildir: list mailboxes: %w", err)
	}
	var out []string
	for _, de := range des {
		if de.IsDir() && ValidUser(de.Name()) == nil {
			out = append(out, de.Name())
		}
	}
	return out, nil
}

// Restore implements store.Admin. Under the index lock (not the session
// lock), it picks the trash files, allocates a new uid for each from the
// counter and fsyncs it (so the new UIDLs are never handed out again),
// renames them into new/ under a new unique name (so Expire counts from
// the restore), syncs new/ and then the trash, and appends the index
// records. A crash at any point leaves each message in exactly one place,
// and a message in new/ carries its UIDL in its name. The quota does not
// refuse a restore: the administrator asked for it, and the user gets
// back mail that counted before it was deleted. On an error, the messages
// returned were restored.
func (s *Store) Restore(ctx context.Context, user string, opts store.RestoreOptions) ([]store.MessageInfo, error) {
	if opts.Since < 0 {
		return nil, fmt.Errorf("maildir: restore: negative Since %v", opts.Since)
	}
	mb, ok, err := s.existingMailbox(user)
	if err != nil || !ok || !isDir(mb.path(trashName)) {
		return nil, err
	}
	lk, err := s.lockIndex(ctx, mb)
	if err != nil {
		return nil, err
	}
	defer lk.unlock()
	ents, _, err := s.listTrash(mb)
	if err != nil {
		return nil, err
	}
	now := s.now()
	var sel []trashEntry
	for _, t := range ents {
		if opts.Since > 0 && t.deletedAt.Before(now.Add(-opts.Since)) {
			continue
		}
		if opts.UIDL != "" && t.uidl() != opts.UIDL {
			continue
		}
		sel = append(sel, t)
	}
	if len(sel) == 0 {
		return nil, nil
	}
	// In deletion order, then the old delivery order, so that restored
	// messages keep their order among themselves.
	slices.SortFunc(sel, func(a, b trashEntry) int {
		return cmp.Or(a.deletedAt.Compare(b.deletedAt), cmp.Compare(a.fn.epoch, b.fn.epoch), cmp.Compare(a.fn.uid, b.fn.uid))
	})

	ctr, err := s.lockedCounter(mb)
	if err != nil {
		return nil, err
	}
	type move struct {
		from string
		to   string
		rec  record
		old  *trashEntry
	}
	moves := make([]move, len(sel))
	for i := range sel {
		t := &sel[i]
		key, err := uniqueBase(now, s.pid, s.seq.Add(1), s.host)
		if err != nil {
			return nil, err
		}
		var uid, epoch uint32
		uid, epoch, ctr = s.allocate(ctr)
		ctr.msgs++
		ctr.bytes += t.fn.size
		moves[i] = move{
			from: mb.path(trashName, t.name),
			to:   mb.path("new", withFields(key, uid, epoch, t.fn.size, "", "", false)),
			rec:  record{key: key, uid: uid, epoch: epoch, size: t.fn.size},
			old:  t,
		}
	}
	if err := s.writeCounter(mb, ctr); err != nil {
		return nil, err
	}
	var done []move
	for _, m := range moves {
		if err == nil {
			if err = s.step("rename out of trash"); err == nil {
				err = os.Rename(m.from, m.to)
			}
			if err == nil {
				done = append(done, m)
				continue
			}
			if isNotExist(err) {
				err = nil // removed behind our back: nothing to restore
			} else {
				err = fmt.Errorf("maildir: restore %s: %w", m.old.name, err)
			}
		}
		// Not restored: its uid stays used, but the totals must not
		// count it.
		ctr.msgs--
		ctr.bytes -= m.rec.size
	}
	if len(done) < len(moves) {
		if werr := s.writeCounter(mb, ctr); werr != nil && err == nil {
			err = werr
		}
	}
	if len(done) == 0 {
		return nil, err
	}
	var recs []record
	var infos []store.MessageInfo
	for _, m := range done {
		recs = append(recs, m.rec)
		infos = append(infos, store.MessageInfo{UIDL: m.rec.uidl(), Size: m.rec.size})
	}
	// new/ before the trash: a message must be durably in new/ before it
	// is durably gone from the trash.
	serr := s.syncDir(mb.path("new"))
	if serr == nil {
		serr = s.syncDir(mb.path(trashName))
	}
	if serr == nil {
		serr = s.appendIndex(mb, recs, ctr)
	}
	for _, m := range done {
		s.log.Info("maildir: restored deleted message", "user", user, "uidl", m.rec.uidl(), "old_uidl", m.old.uidl(),
			"size", m.rec.size, "deleted_at", m.old.deletedAt.UTC().Format(time.RFC3339))
	}
	return infos, errors.Join(err, serr)
}
