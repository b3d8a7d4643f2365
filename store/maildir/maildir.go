package maildir

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/popbox/popbox/pop3"
	"github.com/popbox/popbox/store"
)

// DefaultMaxMessageSize is the largest message Deliver accepts when
// Options.MaxMessageSize is zero.
const DefaultMaxMessageSize = 256 << 20

// ErrTooLarge: Deliver refused a message bigger than the configured limit.
var ErrTooLarge = errors.New("maildir: message too large")

// Names of popbox's files inside a Maildir directory, next to new/, cur/
// and tmp/. Maildir readers look only inside those three, so these do not
// disturb other tools.
const (
	sessionLockName = "popbox-pop3.lock"  // held by a POP3 session, for minutes
	indexLockName   = "popbox-index.lock" // held for index and counter updates, for milliseconds
	indexName       = "popbox-index"
	indexTmpName    = "popbox-index.tmp"
	counterName     = "popbox-uidnext"
	// trashName holds deleted messages for Options.Retention. No leading
	// dot: Dovecot and other Maildir++ readers take ".name" directories for
	// folders and would show the deleted mail again.
	trashName = "popbox-trash"
)

// tmpMaxAge: the Maildir spec lets readers remove files left in tmp/ for
// more than 36 hours (an MDA that died mid-delivery).
const tmpMaxAge = 36 * time.Hour

// Options configures a Store. The zero value is a durable store with the
// default limits and no logging.
type Options struct {
	// Logger receives warnings about repaired indexes and odd files; nil
	// discards them.
	Logger *slog.Logger
	// NoFsync skips every fsync. It exists for tests that do not test
	// durability; a crash may then lose or duplicate mail. (Inverted from
	// "Fsync bool" so that the zero Options is the safe one.)
	NoFsync bool
	// MaxMessageSize bounds what Deliver and Import store, in stored
	// octets; 0 means DefaultMaxMessageSize, negative means no bound.
	MaxMessageSize int64
	// Quota returns a user's limits, asked once per Deliver; nil means no
	// quotas. An error fails the delivery (not as store.ErrQuota: the
	// caller should retry, not tell the sender the mailbox is full).
	Quota func(ctx context.Context, user string) (store.Quota, error)
	// LockWait, if set, is told how long each acquisition of a mailbox's
	// index lock waited (for metrics).
	LockWait func(time.Duration)
	// SnapshotCache bounds the snapshot cache, which spares logins to big
	// unchanged mailboxes their directory scan, in messages across
	// mailboxes (about 200 bytes each); 0 means DefaultSnapshotCache,
	// negative disables it.
	SnapshotCache int
	// Retention is how long deleted messages (POP3 DELE, Expire) are kept
	// in popbox-trash/ for Restore before Purge removes them; 0 deletes at
	// once.
	Retention time.Duration
}

// Store keeps one Maildir per user under a root directory:
// root/<user>/Maildir. It implements store.Store and store.Admin; it is
// safe for concurrent use, and several processes may use the same root at
// once. After an Import it keeps that mailbox's index file open (see
// uidlCache).
type Store struct {
	root      string
	log       *slog.Logger
	fsync     bool
	maxSize   int64
	host      string
	pid       int
	seq       atomic.Uint64 // per-process part of unique names
	quota     func(ctx context.Context, user string) (store.Quota, error)
	retention time.Duration
	// measure computes the wire size of a file popbox did not deliver; tests
	// replace it to prove that a warm Open reads no message.
	measure func(path string) (int64, error)
	// now is the clock for deletion times; tests move it.
	now func() time.Time
	// hook, for tests, runs before every step that changes the disk (and a
	// few reads): returning an error makes the step fail, and calling
	// runtime.Goexit from it stops the operation there like a crash.
	hook func(step string) error
	// indexReads counts full index reads, so tests can show that a
	// delivery does not read the index.
	indexReads atomic.Int64
	// uidls caches the UIDLs of the mailbox Import last worked on.
	uidls uidlCache
	// snaps caches the snapshots of big unchanged mailboxes for Open.
	snaps snapCache
	// sessions holds the POP3 session locks (sessionlock.go).
	sessions sessionLocks
	// indexTurns queues this process's waiters for each index lock.
	indexTurns turns
	// lockWait is Options.LockWait.
	lockWait func(time.Duration)
}

// step runs the test hook before a step named by step.
func (s *Store) step(step string) error {
	if s.hook == nil {
		return nil
	}
	return s.hook(step)
}

var _ store.Admin = (*Store)(nil)

// New returns a Store rooted at root, which must be an existing directory.
// Mailboxes under it are created on first use.
func New(root string, opts Options) (*Store, error) {
	if root == "" {
		return nil, errors.New("maildir: empty root")
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("maildir: root: %w", err)
	}
	st, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("maildir: root: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("maildir: root %s is not a directory", abs)
	}
	host, err := os.Hostname()
	if err != nil {
		host = "localhost"
	}
	s := &Store{
		root:    abs,
		log:     opts.Logger,
		fsync:   !opts.NoFsync,
		maxSize: opts.MaxMessageSize,
		host:    sanitizeHost(host),
		pid:     os.Getpid(),

		quota:     opts.Quota,
		retention: max(opts.Retention, 0),
		now:       time.Now,
		snaps:     snapCache{limit: opts.SnapshotCache, racy: racyWindow},
		sessions:  sessionLocks{path: filepath.Join(abs, sessionLocksName)},
		lockWait:  opts.LockWait,
	}
	if s.snaps.limit == 0 {
		s.snaps.limit = DefaultSnapshotCache
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.maxSize == 0 {
		s.maxSize = DefaultMaxMessageSize
	}
	s.measure = measureFile
	return s, nil
}

// mailbox is one user's Maildir directory.
type mailbox struct {
	user string
	dir  string // root/<user>/Maildir
}

func (mb mailbox) path(elem ...string) string {
	return filepath.Join(append([]string{mb.dir}, elem...)...)
}

// existingMailbox validates user and reports whether its Maildir exists,
// creating nothing: administrative operations on a user without mail must
// not leave empty mailboxes behind.
func (s *Store) existingMailbox(user string) (mailbox, bool, error) {
	if err := ValidUser(user); err != nil {
		return mailbox{}, false, err
	}
	mb := mailbox{user: user, dir: filepath.Join(s.root, user, "Maildir")}
	return mb, isDir(mb.path("new")) && isDir(mb.path("cur")), nil
}

// mailbox validates user and makes sure its Maildir exists.
func (s *Store) mailbox(user string) (mailbox, error) {
	if err := ValidUser(user); err != nil {
		return mailbox{}, err
	}
	userDir := filepath.Join(s.root, user)
	mb := mailbox{user: user, dir: filepath.Join(userDir, "Maildir")}
	if isDir(mb.path("tmp")) && isDir(mb.path("new")) && isDir(mb.path("cur")) {
		return mb, nil
	}
	// Create each level, remembering which ones are new so that their
	// parents can be synced: a directory entry is durable only once the
	// directory containing it is.
	var synced []string
	for _, d := range []string{userDir, mb.dir, mb.path("tmp"), mb.path("new"), mb.path("cur")} {
		err := os.Mkdir(d, 0o700)
		if err == nil {
			synced = append(synced, filepath.Dir(d))
			continue
		}
		if !errors.Is(err, fs.ErrExist) || !isDir(d) {
			return mailbox{}, fmt.Errorf("maildir: create mailbox: %w", err)
		}
	}
	for _, d := range dedupe(synced) {
		if err := s.syncDir(d); err != nil {
			return mailbox{}, err
		}
	}
	return mb, nil
}

func isDir(p string) bool {
	st, err := os.Lstat(p)
	return err == nil && st.IsDir()
}

func dedupe(s []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, x := range s {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

// syncDir fsyncs a directory, making renames and unlinks in it durable.
func (s *Store) syncDir(dir string) error {
	if err := s.step("fsync " + filepath.Base(dir) + "/"); err != nil {
		return fmt.Errorf("maildir: sync dir %s: %w", dir, err)
	}
	if !s.fsync {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("maildir: sync dir: %w", err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("maildir: sync dir %s: %w", dir, err)
	}
	return nil
}

func (s *Store) syncFile(f *os.File) error {
	step := "fsync " + filepath.Base(f.Name())
	if filepath.Base(filepath.Dir(f.Name())) == "tmp" {
		step = "fsync tmp/ file" // a unique name: keep the step's name stable
	}
	if err := s.step(step); err != nil {
		return fmt.Errorf("maildir: fsync %s: %w", f.Name(), err)
	}
	if !s.fsync {
		return nil
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("maildir: fsync %s: %w", f.Name(), err)
	}
	return nil
}

// Deliver implements store.Store. The message is copied into tmp/ while its
// wire size is counted, synced, and then, under the short index lock (never
// the session lock), checked against the quota, given the next UIDL, renamed
// into new/ with the UIDL and size in its name, and recorded in the index.
func (s *Store) Deliver(ctx context.Context, user string, r io.Reader) (store.MessageInfo, error) {
	mb, err := s.mailbox(user)
	if err != nil {
		return store.MessageInfo{}, err
	}
	var q store.Quota
	if s.quota != nil {
		if q, err = s.quota(ctx, user); err != nil {
			return store.MessageInfo{}, fmt.Errorf("maildir: quota of %s: %w", user, err)
		}
	}
	// The cheap check: the counter holds the usage, read without the lock
	// (a torn read just skips this). A full mailbox refuses at once, and a
	// nearly full one stops reading as soon as the message cannot fit, so
	// a 50 MB message is not written only to be refused.
	room := int64(-1)
	if limited(q) {
		if u, ok := peekUsage(mb); ok {
			if err := checkQuota(q, u, 0); err != nil {
				return store.MessageInfo{}, fmt.Errorf("%w (%s)", err, user)
			}
			if q.MaxBytes > 0 {
				room = q.MaxBytes - u.Bytes
			}
		}
	}
	info, err := s.put(ctx, mb, r, incoming{quota: q, room: room})
	if err != nil {
		return store.MessageInfo{}, err
	}
	s.log.Debug("maildir: delivered", "user", user, "uidl", info.UIDL, "size", info.Size)
	return info, nil
}

// incoming describes how a new message is stored: delivered (against the
// quota) or imported (with its UIDL).
type incoming struct {
	quota store.Quota
	room  int64 // wire octets the quota leaves, or -1: stop reading beyond it
	// Import: the UIDL to keep (lit), and, if it is in popbox's own
	// format (own), the (uid, epoch) it spells.
	lit        string
	own        bool
	uid, epoch uint32
}

// put writes r into tmp/ and commits it into new/; on any failure the
// tmp file is removed, so nothing is left behind.
func (s *Store) put(ctx context.Context, mb mailbox, r io.Reader, in incoming) (store.MessageInfo, error) {
	base, err := uniqueBase(s.now(), s.pid, s.seq.Add(1), s.host)
	if err != nil {
		return store.MessageInfo{}, err
	}
	tmpPath := mb.path("tmp", base)
	size, err := s.writeTmp(ctx, tmpPath, r, in.room)
	if err != nil {
		os.Remove(tmpPath)
		if errors.Is(err, store.ErrQuota) {
			err = fmt.Errorf("%w (%s)", err, mb.user)
		}
		return store.MessageInfo{}, err
	}
	info, err := s.commitNew(ctx, mb, tmpPath, base, size, in)
	if err != nil {
		os.Remove(tmpPath)
		return store.MessageInfo{}, err
	}
	return info, nil
}

// writeTmp copies r into a new file at path, returning the wire size. With
// room >= 0 it fails with store.ErrQuota as soon as the wire size must
// exceed room.
func (s *Store) writeTmp(ctx context.Context, path string, r io.Reader, room int64) (int64, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return 0, fmt.Errorf("maildir: create tmp file: %w", err)
	}
	defer f.Close()
	var wc pop3.WireCounter
	w := io.MultiWriter(f, &wc)
	buf := make([]byte, 64<<10)
	var stored int64
	for {
		if err := ctx.Err(); err != nil {
			return 0, fmt.Errorf("maildir: deliver: %w", err)
		}
		n, rerr := r.Read(buf)
		if n > 0 {
			stored += int64(n)
			if s.maxSize > 0 && stored > s.maxSize {
				return 0, fmt.Errorf("%w: over %d octets", ErrTooLarge, s.maxSize)
			}
			if _, err := w.Write(buf[:n]); err != nil {
				return 0, fmt.Errorf("maildir: write tmp file: %w", err)
			}
			// Size counts a final CRLF that later data may make
			// unnecessary; without those 2 octets it is a lower bound.
			if room >= 0 && wc.Size()-2 > room {
				return 0, fmt.Errorf("%w: message over the %d octets left", store.ErrQuota, room)
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return 0, fmt.Errorf("maildir: read message: %w", rerr)
		}
	}
	if err := s.syncFile(f); err != nil {
		return 0, err
	}
	if err := f.Close(); err != nil {
		return 0, fmt.Errorf("maildir: close tmp file: %w", err)
	}
	return wc.Size(), nil
}

// commitNew runs under the index lock: check the quota exactly (no other
// delivery can slip in between), allocate a uid (or place an imported
// one), persist the counter with the new totals, move the file into new/
// under its final name, sync new/, append the index record. The counter is
// durable before the name that uses it, so a crash never lets a later
// delivery reuse a uid a file already carries.
func (s *Store) commitNew(ctx context.Context, mb mailbox, tmpPath, base string, size int64, in incoming) (store.MessageInfo, error) {
	lk, err := s.lockIndex(ctx, mb)
	if err != nil {
		return store.MessageInfo{}, err
	}
	defer lk.unlock()

	lit := in.lit
	if lit != "" {
		// Before the counter is read: the check may rebuild a damaged
		// index, which can move the counter.
		present, err := s.uidlPresent(ctx, mb, lit)
		if err != nil {
			return store.MessageInfo{}, err
		}
		if present {
			return store.MessageInfo{}, fmt.Errorf("%w: %s is in %s's mailbox", store.ErrUIDLConflict, lit, mb.user)
		}
	}
	old, err := s.lockedCounter(mb)
	if err != nil {
		return store.MessageInfo{}, err
	}
	if err := checkQuota(in.quota, old.usage(), size); err != nil {
		return store.MessageInfo{}, fmt.Errorf("%w (%s)", err, mb.user)
	}
	var uid, epoch uint32
	ctr := old
	if in.own {
		var atEnd bool
		if ctr, atEnd, err = placeImported(old, in.uid, in.epoch); err != nil {
			return store.MessageInfo{}, fmt.Errorf("%w (%s)", err, mb.user)
		}
		if atEnd {
			// The counter moved past it: it is popbox's own (uid, epoch)
			// now, at the end of the listing.
			uid, epoch, lit = in.uid, in.epoch, ""
		}
	}
	if uid == 0 {
		uid, epoch, ctr = s.allocate(ctr)
	}
	ctr.msgs++
	ctr.bytes += size
	// Durable before any name or record uses the uid: if it cannot be
	// written, nothing is allocated and the delivery fails.
	if err := s.writeCounter(mb, ctr); err != nil {
		return store.MessageInfo{}, err
	}
	name := withFields(base, uid, epoch, size, lit, "", false)
	if len(name) > maxNameLen && lit != "" {
		// No room for the literal in the name: the index alone keeps it
		// (see the package doc).
		name = withFields(base, uid, epoch, size, "", "", false)
	}
	newPath := mb.path("new", name)
	undo := func(err error) (store.MessageInfo, error) {
		// Nobody has been told about this message; take it back so that
		// the caller's retry does not deliver it twice, and the totals
		// with it (the uid stays used).
		if rerr := os.Remove(newPath); rerr == nil {
			_ = s.syncDir(mb.path("new"))
		}
		ctr.msgs--
		ctr.bytes -= size
		_ = s.writeCounter(mb, ctr)
		return store.MessageInfo{}, err
	}
	if err := s.step("rename into new/"); err != nil {
		return undo(fmt.Errorf("maildir: move into new/: %w", err))
	}
	if err := os.Rename(tmpPath, newPath); err != nil {
		return undo(fmt.Errorf("maildir: move into new/: %w", err))
	}
	if err := s.syncDir(mb.path("new")); err != nil {
		return undo(err)
	}
	rec := record{key: base, uid: uid, epoch: epoch, size: size, lit: lit}
	if err := s.appendIndex(mb, []record{rec}, ctr); err != nil {
		return undo(err)
	}
	return store.MessageInfo{UIDL: rec.uidl(), Size: size}, nil
}

// lockedCounter reads the counter under the index lock, recovering it if it
// is missing, damaged or behind the index, and filling in the totals of a
// version-1 counter from the index (once: the counter is rewritten with
// them by the caller).
func (s *Store) lockedCounter(mb mailbox) (counterState, error) {
	ctr, ok, err := s.readCounter(mb)
	if err != nil {
		return counterState{}, err
	}
	if ok {
		// A counter restored from a backup (or otherwise behind) is caught
		// cheaply by the index header, which every rewrite stamps with the
		// counter; Open's full reconcile catches the rest.
		if h, hok := peekIndexHeader(mb); hok && (h.epoch > ctr.epoch || h.epoch == ctr.epoch && h.next > ctr.next) {
			ok = false
		}
	}
	if !ok {
		return s.recoverFromDisk(mb)
	}
	if !ctr.acct {
		idx, _, err := s.readIndex(mb)
		if err != nil {
			return counterState{}, err
		}
		ctr.floor, ctr.msgs, ctr.bytes, ctr.acct = ctr.epoch, 0, 0, true
		for _, r := range idx.recs {
			ctr.floor = min(ctr.floor, r.epoch)
			ctr.msgs++
			ctr.bytes += r.size
		}
	}
	return ctr, nil
}

// allocate hands out the next uid, starting a new epoch when the 32-bit uid
// space of the current one is used up.
func (s *Store) allocate(c counterState) (uid, epoch uint32, next counterState) {
	if c.next > 1<<32-1 {
		c.epoch, c.next = newEpoch(c.epoch, true), 1
		s.log.Warn("maildir: uid space exhausted, new UIDL epoch", "epoch", c.epoch)
	}
	uid, epoch = uint32(c.next), c.epoch
	c.next++
	return uid, epoch, c
}

// newEpoch is the epoch for a fresh counter: the current time, but above
// every epoch already seen so that (uid, epoch) pairs cannot repeat.
func newEpoch(maxSeen uint32, haveSeen bool) uint32 {
	now := uint32(time.Now().Unix())
	if haveSeen && now <= maxSeen {
		if maxSeen == 1<<32-1 {
			return maxSeen // year 2106; nothing larger exists
		}
		return maxSeen + 1
	}
	return now
}

func (s *Store) readCounter(mb mailbox) (counterState, bool, error) {
	b, err := readBounded(mb.path(counterName), 4096)
	if errors.Is(err, fs.ErrNotExist) {
		return counterState{}, false, nil
	}
	if err != nil {
		return counterState{}, false, err
	}
	c, ok := parseCounter(b)
	if !ok {
		s.log.Warn("maildir: damaged UID counter, recovering", "user", mb.user)
	}
	return c, ok, nil
}

// peekUsage reads the totals without the index lock, for the cheap quota
// check; a counter being rewritten at that moment may read torn, which
// only skips the check (the exact one under the lock follows).
func peekUsage(mb mailbox) (store.Usage, bool) {
	b, err := readBounded(mb.path(counterName), 4096)
	if err != nil {
		return store.Usage{}, false
	}
	c, ok := parseCounter(b)
	if !ok || !c.acct {
		return store.Usage{}, false
	}
	return c.usage(), true
}

// writeCounter overwrites the fixed-length counter file in place (one write
// and one fsync; no rename, so no directory sync except at creation).
func (s *Store) writeCounter(mb mailbox, c counterState) error {
	p := mb.path(counterName)
	f, err := os.OpenFile(p, os.O_WRONLY|unix.O_NOFOLLOW, 0)
	created := false
	if errors.Is(err, fs.ErrNotExist) {
		f, err = os.OpenFile(p, os.O_WRONLY|os.O_CREATE|unix.O_NOFOLLOW, 0o600)
		created = true
	}
	if err != nil {
		return fmt.Errorf("maildir: counter: %w", err)
	}
	defer f.Close()
	if !c.acct {
		return errors.New("maildir: internal error: counter without totals")
	}
	b := formatCounter(c)
	if err := s.step("write counter"); err != nil {
		return fmt.Errorf("maildir: write counter: %w", err)
	}
	if _, err := f.WriteAt(b, 0); err != nil {
		return fmt.Errorf("maildir: write counter: %w", err)
	}
	if err := f.Truncate(int64(len(b))); err != nil {
		return fmt.Errorf("maildir: write counter: %w", err)
	}
	if err := s.syncFile(f); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("maildir: write counter: %w", err)
	}
	if created {
		return s.syncDir(mb.dir)
	}
	return nil
}

// readBounded reads a small file, refusing one longer than max.
func readBounded(path string, max int64) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("maildir: read %s: %w", path, err)
	}
	if int64(len(b)) > max {
		// Too big to be ours: hand back a prefix that cannot parse.
		return b[:0], nil
	}
	return b, nil
}

// readIndex reads and parses the index; exists is false if there is none.
func (s *Store) readIndex(mb mailbox) (d indexData, exists bool, err error) {
	s.indexReads.Add(1)
	b, err := readBounded(mb.path(indexName), maxIndexBytes)
	if errors.Is(err, fs.ErrNotExist) {
		return indexData{}, false, nil
	}
	if err != nil {
		return indexData{}, false, err
	}
	d = parseIndex(b)
	if d.damaged {
		s.log.Warn("maildir: damaged index, rebuilding", "user", mb.user)
	}
	return d, true, nil
}

// peekIndexHeader reads only the index's first line.
func peekIndexHeader(mb mailbox) (counterState, bool) {
	f, err := os.OpenFile(mb.path(indexName), os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return counterState{}, false
	}
	defer f.Close()
	buf := make([]byte, maxIndexLine+1)
	n, _ := io.ReadFull(f, buf)
	line, _, found := bytes.Cut(buf[:n], []byte{'\n'})
	if !found {
		return counterState{}, false
	}
	payload, ok := checkLine(line)
	if !ok {
		return counterState{}, false
	}
	epoch, next, ok := parseHeader(payload)
	return counterState{epoch: epoch, next: next}, ok
}

// writeIndex replaces the index: temp file, fsync, rename, fsync dir, so a
// reader sees the old or the new index, never a mix.
func (s *Store) writeIndex(mb mailbox, c counterState, recs []record) error {
	b := make([]byte, 0, 64+len(recs)*96)
	b = appendHeader(b, c.epoch, c.next)
	for _, r := range recs {
		b = appendRecord(b, r)
	}
	tmp := mb.path(indexTmpName)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("maildir: write index: %w", err)
	}
	defer f.Close()
	// On a full disk the temp file would keep what it got; give it back.
	fail := func(err error) error {
		os.Remove(tmp)
		return err
	}
	if _, err := f.Write(b); err != nil {
		return fail(fmt.Errorf("maildir: write index: %w", err))
	}
	if err := s.syncFile(f); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		return fail(fmt.Errorf("maildir: write index: %w", err))
	}
	if err := s.step("rename index"); err != nil {
		return fail(fmt.Errorf("maildir: write index: %w", err))
	}
	if err := os.Rename(tmp, mb.path(indexName)); err != nil {
		return fail(fmt.Errorf("maildir: write index: %w", err))
	}
	return s.syncDir(mb.dir)
}

// appendIndex adds records at the end of the index (one write, one fsync),
// creating the index if there is none. Appending keeps delivery O(1) in the
// mailbox size; the index is rewritten whole only when messages go away
// (Commit, or an Open that finds the directory changed), which costs O(n)
// like those operations already do. If the write or the fsync fails (a full
// disk can take part of a record), the index is cut back to its old size, so
// a failed append leaves no record, whole or torn, behind; should even that
// fail, or a crash come first, the parser salvages the lines before it.
func (s *Store) appendIndex(mb mailbox, recs []record, c counterState) error {
	p := mb.path(indexName)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_APPEND|unix.O_NOFOLLOW, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return s.writeIndex(mb, c, recs)
	}
	if err != nil {
		return fmt.Errorf("maildir: append index: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("maildir: append index: %w", err)
	}
	size := st.Size()
	var b []byte
	// After a crash mid-append the last line may be torn; start a fresh
	// line so the new record is not glued to it.
	if size > 0 {
		var last [1]byte
		if _, err := f.ReadAt(last[:], size-1); err == nil && last[0] != '\n' {
			b = append(b, '\n')
		}
	}
	for _, r := range recs {
		b = appendRecord(b, r)
	}
	err = s.step("append index")
	if err == nil {
		_, err = f.Write(b)
	}
	if err != nil {
		err = fmt.Errorf("maildir: append index: %w", err)
	} else {
		err = s.syncFile(f)
	}
	if err != nil {
		if terr := f.Truncate(size); terr != nil {
			s.log.Warn("maildir: cannot cut a failed append off the index", "user", mb.user, "err", terr)
		}
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("maildir: append index: %w", err)
	}
	return nil
}

// measureFile computes the wire size of a stored file by reading it.
func measureFile(path string) (int64, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return pop3.WireSize(f)
}

// isNotExist: the file is gone (or a path component is).
func isNotExist(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}
