package maildir

import (
	"errors"
	"io/fs"
	"sync"
	"syscall"
	"time"

	"github.com/popbox/popbox/store"
)

// The snapshot cache keeps the last reconciled snapshot of big mailboxes in
// memory, so that logging in to a mailbox of 100,000 messages that has not
// changed costs four stat calls and a 40-byte read instead of reading two
// directories and the index (about 220 ms at that size).
//
// A cached snapshot is served only while the mailbox is provably unchanged,
// so it can never give a stale size or UIDL. What is compared, under the
// index lock, is everything that changes when the snapshot would:
//
//   - new/ and cur/: device, inode, mtime and ctime. Every create, rename
//     and unlink in a directory updates its mtime and ctime, and ctime
//     cannot be set back by a tool restoring times (rsync, touch).
//   - the index: device, inode, size, mtime, ctime. Deliveries append to it
//     (size), Commit and repairs replace it (inode).
//   - the counter file's bytes, which every allocation and every change of
//     the totals rewrites in place.
//
// File systems keep those times with a coarse clock (a jiffy on Linux, a
// second on some), so two changes within one tick can leave the same time
// behind: one before the snapshot was read and one after. As git does for
// its index ("racily clean" entries), a snapshot is cached only if every
// time it was validated by is older than racyWindow before the snapshot was
// read; any later change then shows a newer time. A mailbox changed in the
// last two seconds is simply reconciled again at its next login.
//
// Only mailboxes of at least minCachedMessages are cached: smaller ones
// reconcile in a millisecond or two. The cache holds at most
// Options.SnapshotCache messages across mailboxes and drops the least
// recently used mailbox beyond that.

// racyWindow: how much older than the snapshot a validating time must be.
const racyWindow = 2 * time.Second

// minCachedMessages: smaller mailboxes are not worth the memory.
const minCachedMessages = 256

// DefaultSnapshotCache is Options.SnapshotCache when zero: about 200 MB at
// the most, for about 200 bytes a message.
const DefaultSnapshotCache = 1_000_000

// fileState identifies one version of a file or directory.
type fileState struct {
	dev, ino     uint64
	size         int64
	mtime, ctime syscall.Timespec
}

// mailboxState is what a cached snapshot is valid for.
type mailboxState struct {
	newDir, curDir, index fileState
	hasIndex              bool
	counter               string
}

// newest is the latest time mentioned.
func (st *mailboxState) newest() time.Time {
	var t time.Time
	for _, f := range []*fileState{&st.newDir, &st.curDir, &st.index} {
		for _, ts := range []syscall.Timespec{f.mtime, f.ctime} {
			if u := time.Unix(ts.Unix()); u.After(t) {
				t = u
			}
		}
	}
	return t
}

func statFile(path string) (fileState, error) {
	var st syscall.Stat_t
	if err := syscall.Lstat(path, &st); err != nil {
		return fileState{}, &fs.PathError{Op: "lstat", Path: path, Err: err}
	}
	return fileState{
		dev: st.Dev, ino: st.Ino, size: st.Size,
		mtime: st.Mtim, ctime: st.Ctim,
	}, nil
}

// readState reads the mailbox's state; the caller holds the index lock.
func readState(mb mailbox) (mailboxState, error) {
	var st mailboxState
	var err error
	if st.newDir, err = statFile(mb.path("new")); err != nil {
		return st, err
	}
	if st.curDir, err = statFile(mb.path("cur")); err != nil {
		return st, err
	}
	st.index, err = statFile(mb.path(indexName))
	switch {
	case err == nil:
		st.hasIndex = true
	case errors.Is(err, fs.ErrNotExist):
	default:
		return st, err
	}
	b, err := readBounded(mb.path(counterName), 4096)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return st, err
	}
	st.counter = string(b)
	return st, nil
}

// cachedSnapshot is a reconciled snapshot and its message list, shared by
// every session that opens the unchanged mailbox: neither is ever modified.
type cachedSnapshot struct {
	state mailboxState
	snap  []entry
	msgs  []store.MessageInfo
	used  uint64 // the cache's tick at the last hit, for eviction
}

// snapCache maps a mailbox directory to its cached snapshot.
type snapCache struct {
	mu    sync.Mutex
	limit int // messages; <= 0 disables the cache
	// racy is racyWindow; tests shorten it rather than sleep.
	racy  time.Duration
	total int
	tick  uint64
	m     map[string]*cachedSnapshot
}

// get returns the snapshot cached for dir if it is valid for st.
func (c *snapCache) get(dir string, st mailboxState) *cachedSnapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	cs := c.m[dir]
	if cs == nil {
		return nil
	}
	if cs.state != st {
		c.dropLocked(dir)
		return nil
	}
	c.tick++
	cs.used = c.tick
	return cs
}

// errCacheOff stands for the state not read because the cache is off.
var errCacheOff = errors.New("maildir: snapshot cache off")

// takes reports whether a snapshot of n messages is one the cache keeps.
func (c *snapCache) takes(n int) bool {
	return c.limit > 0 && n >= minCachedMessages && n <= c.limit
}

// put caches snap for dir, valid while the mailbox stays in state st, if
// st is old enough to be trusted (see racyWindow) given that the snapshot
// was read starting at readStart.
func (c *snapCache) put(dir string, st mailboxState, readStart time.Time, snap []entry, msgs []store.MessageInfo) {
	if !c.takes(len(snap)) {
		return
	}
	if !st.newest().Before(readStart.Add(-c.racy)) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[string]*cachedSnapshot)
	}
	c.dropLocked(dir)
	for c.total+len(snap) > c.limit {
		c.evictLocked()
	}
	c.tick++
	c.m[dir] = &cachedSnapshot{state: st, snap: snap, msgs: msgs, used: c.tick}
	c.total += len(snap)
}

// forget drops dir's snapshot; for changes that the state might not show
// at once.
func (c *snapCache) forget(dir string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dropLocked(dir)
}

func (c *snapCache) dropLocked(dir string) {
	if cs, ok := c.m[dir]; ok {
		c.total -= len(cs.snap)
		delete(c.m, dir)
	}
}

// evictLocked drops the least recently used snapshot. A linear scan: only
// big mailboxes are cached, so there are few.
func (c *snapCache) evictLocked() {
	var oldest string
	var used uint64
	first := true
	for dir, cs := range c.m {
		if first || cs.used < used {
			oldest, used, first = dir, cs.used, false
		}
	}
	c.dropLocked(oldest)
}
