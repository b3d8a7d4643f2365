package maildir

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/popbox/popbox/store"
)

// errClosed: the maildrop was already committed or closed.
var errClosed = errors.New("maildir: maildrop closed")

// commitLockWait bounds how long Commit waits for the index lock, which is
// normally held for milliseconds; the deletions themselves are already
// durable by then, so giving up only leaves stale index records that the
// next Open drops.
const commitLockWait = 30 * time.Second

// Open implements store.Store: it takes the session lock without waiting
// (store.ErrInUse if held), then, under the index lock, reconciles the
// index with new/ and cur/ and returns the snapshot.
func (s *Store) Open(ctx context.Context, user string) (store.Maildrop, error) {
	mb, err := s.mailbox(user)
	if err != nil {
		return nil, err
	}
	// RFC 1939 §4: the server acquires an exclusive-access lock on the
	// maildrop; RFC 2449 §8.1.2 [IN-USE] when it cannot.
	session, err := s.lockSession(mb)
	if errors.Is(err, errLocked) {
		return nil, fmt.Errorf("%w: %s", store.ErrInUse, user)
	}
	if err != nil {
		return nil, err
	}
	// Deferred, so that the lock goes with any way out short of success
	// (a panic included), not only with the error returns.
	handedOver := false
	defer func() {
		if !handedOver {
			session.release()
		}
	}()
	snap, msgs, err := s.snapshot(ctx, mb)
	if err != nil {
		return nil, err
	}
	s.cleanTmp(mb)
	handedOver = true
	return &maildrop{s: s, mb: mb, lock: session, snap: snap, msgs: msgs}, nil
}

// snapshot returns the mailbox's messages in delivery order, from the
// snapshot cache if the mailbox is unchanged since it was cached, else by
// reconciling. The slices may be shared with other sessions: read only.
func (s *Store) snapshot(ctx context.Context, mb mailbox) ([]entry, []store.MessageInfo, error) {
	lk, err := s.lockIndex(ctx, mb)
	if err != nil {
		return nil, nil, err
	}
	defer lk.unlock()
	readStart := time.Now()
	var before mailboxState
	stErr := errCacheOff
	if s.snaps.limit > 0 {
		before, stErr = readState(mb)
		if stErr == nil {
			if cs := s.snaps.get(mb.dir, before); cs != nil {
				return cs.snap, cs.msgs, nil
			}
		}
	}
	snap, unsaved, err := s.reconcile(ctx, mb)
	if err != nil {
		return nil, nil, err
	}
	msgs := make([]store.MessageInfo, len(snap))
	for i := range snap {
		msgs[i] = store.MessageInfo{UIDL: snap[i].uidl(), Size: snap[i].size}
	}
	if unsaved != nil {
		// Serving what is there needs no write; the next Open retries.
		s.log.Warn("maildir: cannot update the index or the counter, serving the mailbox as it is", "user", mb.user, "err", unsaved)
		return snap, msgs, nil
	}
	// Cached only if reconcile changed nothing and found nothing changing:
	// the state read before it then describes what it read. A mailbox the
	// cache would not take costs no second read.
	if stErr == nil && s.snaps.takes(len(snap)) {
		if after, err := readState(mb); err == nil && after == before {
			s.snaps.put(mb.dir, before, readStart, snap, msgs)
		}
	}
	return snap, msgs, nil
}

// maildrop is one POP3 session's view of a mailbox.
type maildrop struct {
	s  *Store
	mb mailbox
	// snap and msgs may be shared with other sessions (the snapshot
	// cache): never modified. moved holds the new place of files another
	// tool moved or renamed since the snapshot.
	snap  []entry
	msgs  []store.MessageInfo
	moved map[int]dirFile

	mu        sync.Mutex   // Close may come from another goroutine at shutdown
	lock      *sessionLock // the session lock; nil once released
	committed bool
}

var _ store.Maildrop = (*maildrop)(nil)

func (m *maildrop) Messages() []store.MessageInfo { return m.msgs }

// Open returns the message file itself, so RETR streams from disk. If
// another tool moved the file or changed its flags since the snapshot, it
// is found again by its key.
func (m *maildrop) Open(i int) (io.ReadCloser, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.lock == nil {
		return nil, errClosed
	}
	if i < 0 || i >= len(m.snap) {
		return nil, fmt.Errorf("%w: %d", store.ErrNoSuchMessage, i)
	}
	e := m.entry(i)
	f, err := openMessage(m.mb.path(e.sub, e.name))
	if err == nil {
		return f, nil
	}
	if !isNotExist(err) {
		return nil, err
	}
	df, ok, ferr := findByKey(m.mb, e.key)
	if ferr != nil {
		return nil, ferr
	}
	if !ok {
		return nil, fmt.Errorf("maildir: message %d (%s): %w", i, e.key, fs.ErrNotExist)
	}
	if m.moved == nil {
		m.moved = make(map[int]dirFile)
	}
	m.moved[i] = df
	f, err = openMessage(m.mb.path(df.sub, df.name))
	if err != nil {
		return nil, err
	}
	return f, nil
}

// entry returns message i as last seen: from the snapshot, or where Open
// found it after it moved.
func (m *maildrop) entry(i int) entry {
	e := m.snap[i]
	if df, ok := m.moved[i]; ok {
		e.sub, e.name = df.sub, df.name
	}
	return e
}

// openMessage opens a message file for RETR. It is a bare descriptor, not
// an *os.File: os.OpenFile offers every file to the network poller, which
// costs five system calls per message that epoll refuses for regular
// files anyway (two fcntl to set O_NONBLOCK, the failing epoll_ctl, two
// to clear it), a third of what a lock-step RETR otherwise makes.
func openMessage(path string) (*messageFile, error) {
	for {
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "open", Path: path, Err: err}
		}
		return &messageFile{fd: fd, path: path}, nil
	}
}

// messageFile reads a message file through its descriptor; reads of a
// regular file block in the kernel, which the runtime handles like any
// other blocking system call.
type messageFile struct {
	fd   int // -1 once closed
	path string
}

func (f *messageFile) Read(p []byte) (int, error) {
	if f.fd < 0 {
		return 0, fs.ErrClosed
	}
	if len(p) == 0 {
		return 0, nil
	}
	for {
		n, err := unix.Read(f.fd, p)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, &fs.PathError{Op: "read", Path: f.path, Err: err}
		}
		if n == 0 {
			return 0, io.EOF
		}
		return n, nil
	}
}

func (f *messageFile) Close() error {
	if f.fd < 0 {
		return fs.ErrClosed
	}
	err := unix.Close(f.fd)
	f.fd = -1
	if err != nil {
		return &fs.PathError{Op: "close", Path: f.path, Err: err}
	}
	return nil
}

// Commit implements RFC 1939 §6 (UPDATE state): remove the files (into
// popbox-trash/ when Options.Retention is set, else for good), sync the
// directories, drop the records from the index and the messages from the
// totals, release the lock. The lock is released whatever happens: the
// session is over. Bad indexes fail the whole Commit before anything is
// deleted. Once the directories are synced the deletions are done, and
// Commit reports success even if updating the index and the totals then
// fails (logged; the next Open catches up).
func (m *maildrop) Commit(deleted []int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.lock == nil {
		if m.committed {
			return nil
		}
		return errClosed
	}
	defer func() {
		m.lock.release()
		m.lock = nil
		m.committed = true
	}()
	for _, i := range deleted {
		if i < 0 || i >= len(m.snap) {
			return fmt.Errorf("%w: %d", store.ErrNoSuchMessage, i)
		}
	}
	if len(deleted) == 0 {
		return nil
	}
	doomed := make([]entry, 0, len(deleted))
	seen := map[int]bool{}
	for _, i := range deleted {
		if !seen[i] {
			seen[i] = true
			doomed = append(doomed, m.entry(i))
		}
	}
	// The mailbox changes: the cached snapshot, if any, is dead weight.
	m.s.snaps.forget(m.mb.dir)
	keys, err := m.s.discard(m.mb, doomed)
	if err != nil {
		return err
	}
	// The deletions are durable: the Commit has succeeded. Failing to drop
	// their records (a full disk, a lock held too long) only leaves stale
	// records, which the next Open drops (the index then lists files that
	// are gone); until then the totals count the deleted messages.
	ctx, cancel := context.WithTimeout(context.Background(), commitLockWait)
	defer cancel()
	if err := m.s.dropFromIndex(ctx, m.mb, keys); err != nil {
		m.s.log.Warn("maildir: deleted messages removed, but not from the index; the next Open drops them", "user", m.mb.user, "err", err)
	}
	return nil
}

// discard removes the snapshot entries' files, moving them into the trash
// when deleted mail is retained, and syncs the directories: the trash
// first, so that a message is durably kept before it is durably gone from
// cur/. It runs under the session lock, which makes it the only writer
// into the trash (Restore and Purge only take files out, under the index
// lock). It returns the keys to drop from the index.
func (s *Store) discard(mb mailbox, doomed []entry) (map[string]bool, error) {
	keep := s.retention > 0
	if keep {
		if err := s.makeTrash(mb); err != nil {
			return nil, err
		}
	}
	deletedAt := s.now()
	var moved map[string]dirFile // built on the first ENOENT
	touched := map[string]bool{}
	keys := make(map[string]bool, len(doomed))
	trashed := 0
	remove := func(sub, name string, e *entry) error {
		from := mb.path(sub, name)
		if !keep {
			if err := s.step("unlink in " + sub + "/"); err != nil {
				return err
			}
			return os.Remove(from)
		}
		to, err := s.trashPath(mb, deletedAt, e)
		if err != nil {
			return err
		}
		if err := s.step("rename into trash"); err != nil {
			return err
		}
		if err := os.Rename(from, to); err != nil {
			return err
		}
		trashed++
		return nil
	}
	for i := range doomed {
		e := &doomed[i]
		keys[e.key] = true
		err := remove(e.sub, e.name, e)
		if err == nil {
			touched[e.sub] = true
			continue
		}
		if !isNotExist(err) {
			return nil, fmt.Errorf("maildir: delete %s: %w", e.name, err)
		}
		// Another tool moved it to cur/ or changed its flags: find it by
		// its key.
		if moved == nil {
			files, err := listFiles(mb)
			if err != nil {
				return nil, err
			}
			moved = make(map[string]dirFile, len(files))
			for _, f := range files {
				moved[parseFileName(f.name).key] = f
			}
		}
		f, ok := moved[e.key]
		if !ok {
			continue // already gone: not an error
		}
		if err := remove(f.sub, f.name, e); err != nil && !isNotExist(err) {
			return nil, fmt.Errorf("maildir: delete %s: %w", f.name, err)
		}
		touched[f.sub] = true
	}
	if trashed > 0 {
		if err := s.syncDir(mb.path(trashName)); err != nil {
			return nil, err
		}
	}
	for _, sub := range []string{"new", "cur"} {
		if touched[sub] {
			if err := s.syncDir(mb.path(sub)); err != nil {
				return nil, err
			}
		}
	}
	return keys, nil
}

// Close releases the lock and changes nothing.
func (m *maildrop) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.lock == nil {
		return nil
	}
	err := m.lock.release()
	m.lock = nil
	return err
}

// dropFromIndex rewrites the index without the given keys and the counter
// with the new totals. It rereads the index under the lock, so records
// Deliver or Restore appended during the session stay, and stamps the
// header with the current counter, so that deleting the newest message
// cannot lower the uid recovery would compute.
func (s *Store) dropFromIndex(ctx context.Context, mb mailbox, keys map[string]bool) error {
	lk, err := s.lockIndex(ctx, mb)
	if err != nil {
		return err
	}
	defer lk.unlock()
	idx, _, err := s.readIndex(mb)
	if err != nil {
		return err
	}
	ctr, ctrOK, err := s.readCounter(mb)
	if err != nil {
		return err
	}
	var seen uidSeen
	recs := make([]record, 0, len(idx.recs))
	pos := make(map[string]int, len(idx.recs))
	for _, r := range idx.recs {
		seen.add(r.uid, r.epoch)
		if keys[r.key] {
			continue
		}
		if j, dup := pos[r.key]; dup {
			recs[j] = r
			continue
		}
		pos[r.key] = len(recs)
		recs = append(recs, r)
	}
	if !ctrOK {
		if err := s.seeTrash(mb, &seen); err != nil {
			return err
		}
	}
	next, fresh := recoverCounter(ctr, ctrOK, idx, seen)
	next.floor = floorOf(next, ctr, ctrOK, idx, seen)
	// The totals of what the index lists: the deleted messages leave
	// them; a file another MDA dropped meanwhile joins at the next Open.
	next.msgs, next.bytes, next.acct = 0, 0, true
	for _, r := range recs {
		next.msgs++
		next.bytes += r.size
	}
	if !ctrOK || next != ctr {
		if fresh && (ctrOK || idx.header || seen.any) {
			s.log.Warn("maildir: UID counter lost, starting a new UIDL epoch", "user", mb.user, "epoch", next.epoch)
		}
		if err := s.writeCounter(mb, next); err != nil {
			return err
		}
	}
	return s.writeIndex(mb, next, recs)
}
