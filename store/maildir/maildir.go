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
	// MaxMessageSize bounds what Deliver stores, in stored octets; 0 means
	// DefaultMaxMessageSize, negative means no bound.
	MaxMessageSize int64
}

// Store keeps one Maildir per user under a root directory:
// root/<user>/Maildir. It implements store.Store; it is safe for concurrent
// use, and several processes may use the same root at once.
type Store struct {
	root    string
	log     *slog.Logger
	fsync   bool
	maxSize int64
	host    string
	pid     int
	seq     atomic.Uint64 // per-process part of unique names
	// measure computes the wire size of a file popbox did not deliver; tests
	// replace it to prove that a warm Open reads no message.
	measure func(path string) (int64, error)
}

var _ store.Store = (*Store)(nil)

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
// the session lock), given the next UIDL, renamed into new/ with the UIDL
// and size in its name, and recorded in the index.
func (s *Store) Deliver(ctx context.Context, user string, r io.Reader) (store.MessageInfo, error) {
	mb, err := s.mailbox(user)
	if err != nil {
		return store.MessageInfo{}, err
	}
	base, err := uniqueBase(time.Now(), s.pid, s.seq.Add(1), s.host)
	if err != nil {
		return store.MessageInfo{}, err
	}
	tmpPath := mb.path("tmp", base)
	size, err := s.writeTmp(ctx, tmpPath, r)
	if err != nil {
		os.Remove(tmpPath)
		return store.MessageInfo{}, err
	}
	info, err := s.commitDelivery(ctx, mb, tmpPath, base, size)
	if err != nil {
		os.Remove(tmpPath)
		return store.MessageInfo{}, err
	}
	s.log.Debug("maildir: delivered", "user", user, "uidl", info.UIDL, "size", info.Size)
	return info, nil
}

// writeTmp copies r into a new file at path, returning the wire size.
func (s *Store) writeTmp(ctx context.Context, path string, r io.Reader) (int64, error) {
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

// commitDelivery runs under the index lock: allocate a uid, persist the
// counter, move the file into new/ under its final name, sync new/, append
// the index record. The counter is durable before the name that uses it, so
// a crash never lets a later delivery reuse a uid a file already carries.
func (s *Store) commitDelivery(ctx context.Context, mb mailbox, tmpPath, base string, size int64) (store.MessageInfo, error) {
	lk, err := waitLock(ctx, mb.path(indexLockName))
	if err != nil {
		return store.MessageInfo{}, err
	}
	defer unlock(lk)

	ctr, ok, err := s.readCounter(mb)
	if err != nil {
		return store.MessageInfo{}, err
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
		ctr, err = s.recoverFromDisk(mb)
		if err != nil {
			return store.MessageInfo{}, err
		}
	}
	uid, epoch, ctr := s.allocate(ctr)
	if err := s.writeCounter(mb, ctr); err != nil {
		return store.MessageInfo{}, err
	}
	name := withFields(base, uid, epoch, size, "", false)
	newPath := mb.path("new", name)
	if err := os.Rename(tmpPath, newPath); err != nil {
		return store.MessageInfo{}, fmt.Errorf("maildir: move into new/: %w", err)
	}
	undo := func(err error) (store.MessageInfo, error) {
		// Nobody has been told about this message; take it back so that
		// the caller's retry does not deliver it twice.
		if rerr := os.Remove(newPath); rerr == nil {
			_ = s.syncDir(mb.path("new"))
		}
		return store.MessageInfo{}, err
	}
	if err := s.syncDir(mb.path("new")); err != nil {
		return undo(err)
	}
	rec := record{key: base, uid: uid, epoch: epoch, size: size}
	if err := s.appendIndex(mb, rec, ctr); err != nil {
		return undo(err)
	}
	return store.MessageInfo{UIDL: formatUIDL(uid, epoch), Size: size}, nil
}

// allocate hands out the next uid, starting a new epoch when the 32-bit uid
// space of the current one is used up.
func (s *Store) allocate(c counterState) (uid, epoch uint32, next counterState) {
	if c.next > 1<<32-1 {
		c = counterState{epoch: newEpoch(c.epoch, true), next: 1}
		s.log.Warn("maildir: uid space exhausted, new UIDL epoch", "epoch", c.epoch)
	}
	return uint32(c.next), c.epoch, counterState{epoch: c.epoch, next: c.next + 1}
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
	b := formatCounter(c)
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
	if _, err := f.Write(b); err != nil {
		return fmt.Errorf("maildir: write index: %w", err)
	}
	if err := s.syncFile(f); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("maildir: write index: %w", err)
	}
	if err := os.Rename(tmp, mb.path(indexName)); err != nil {
		return fmt.Errorf("maildir: write index: %w", err)
	}
	return s.syncDir(mb.dir)
}

// appendIndex adds one record at the end of the index, creating the index
// if there is none. Appending keeps delivery O(1) in the mailbox size; the
// index is rewritten whole only when messages go away (Commit, or an Open
// that finds the directory changed), which costs O(n) like those
// operations already do.
func (s *Store) appendIndex(mb mailbox, r record, c counterState) error {
	p := mb.path(indexName)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_APPEND|unix.O_NOFOLLOW, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return s.writeIndex(mb, c, []record{r})
	}
	if err != nil {
		return fmt.Errorf("maildir: append index: %w", err)
	}
	defer f.Close()
	var b []byte
	// After a crash mid-append the last line may be torn; start a fresh
	// line so the new record is not glued to it.
	if st, err := f.Stat(); err == nil && st.Size() > 0 {
		var last [1]byte
		if _, err := f.ReadAt(last[:], st.Size()-1); err == nil && last[0] != '\n' {
			b = append(b, '\n')
		}
	}
	b = appendRecord(b, r)
	if _, err := f.Write(b); err != nil {
		return fmt.Errorf("maildir: append index: %w", err)
	}
	if err := s.syncFile(f); err != nil {
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
