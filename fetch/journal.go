package fetch

import (
	"bytes"
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// State is where a message stands in the journal.
type State int

const (
	// StateSeen: listed by the server, not delivered yet.
	StateSeen State = iota
	// StatePending: a delivery started; whether it finished is unknown
	// until the destination is asked (dest Has) or it is delivered again.
	StatePending
	// StateDelivered: the destination said the message is durable.
	StateDelivered
	// StateGone: no longer on the server (deleted by us after QUIT +OK, or
	// by someone else).
	StateGone
)

func (s State) String() string {
	return [...]string{"seen", "pending", "delivered", "gone"}[s]
}

// Entry is the journal's knowledge of one UIDL.
type Entry struct {
	UIDL string
	// Gen distinguishes messages that share a UIDL: a server that reuses an
	// id after a deletion, or one whose message under an id changed size.
	Gen       int
	Size      int64
	FirstSeen time.Time
	State     State
}

// RunRecord is the outcome of one run, for popbox fetch status.
type RunRecord struct {
	Time    time.Time
	Result  string // "fetched", "no new mail", or the kind of error
	Fetched int
	Bytes   int64
	Message string
}

// MaxJournalSize bounds the journal file read at start. A journal holds a
// few dozen bytes per message on the server; 256 MiB is millions.
const MaxJournalSize = 256 << 20

const journalMagic = "popbox-fetch-journal 1"

// Journal is the per-account record of UIDL states. It is append-only:
// every record is one line "CRC32 TYPE FIELDS...", written and fsynced
// before the step it announces is taken (pending) or after the step is
// known to be complete (delivered, gone). A line with a bad checksum or
// without its newline is a write a crash interrupted; it is ignored.
// Compaction rewrites the current state through a temporary file, fsync,
// rename and a directory fsync, so a crash leaves the old or the new file.
//
// The journal holds an exclusive flock on a separate lock file for as long
// as it is open, so two fetches of the same account cannot interleave.
type Journal struct {
	path    string
	f       *os.File
	lock    *os.File
	log     *slog.Logger
	entries map[string]*Entry
	last    RunRecord
	// floor is the lowest generation a new UIDL may take: one more than
	// the generation of any entry compaction has dropped, so that a UIDL
	// the journal forgot and the server reuses still gets a new key.
	floor int
	// mu serialises writes: the delivery workers record concurrently.
	mu       sync.Mutex
	records  int  // lines in the file, for deciding when to compact
	unsynced bool // records written since the last fsync
}

// JournalPath returns the journal file for an account base name.
func JournalPath(dir, base string) string {
	return filepath.Join(dir, base+".journal")
}

// lockPatience is how long OpenJournal keeps trying a lock that is held.
// flock(2) locks belong to the open file, and a child process forked by
// this one (an MDA, a password_command) holds a copy of every descriptor
// until it execs: for that instant a lock just released still looks held.
const lockPatience = 500 * time.Millisecond

// flockBriefly takes an exclusive flock, retrying for lockPatience.
func flockBriefly(f *os.File) error {
	deadline := time.Now().Add(lockPatience)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// OpenJournal locks and loads the journal of base in dir, creating both if
// needed. It fails with ErrBusy when another process holds the lock.
func OpenJournal(dir, base string, log *slog.Logger) (*Journal, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating state directory: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, base+".lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening journal lock: %w", err)
	}
	if err := flockBriefly(lock); err != nil {
		lock.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: another popbox fetch is running for this account (lock %s)", ErrBusy, lock.Name())
		}
		return nil, fmt.Errorf("locking journal: %w", err)
	}
	j := &Journal{path: JournalPath(dir, base), lock: lock, log: orDiscard(log), entries: map[string]*Entry{}}
	if err := j.load(true); err != nil {
		lock.Close()
		return nil, err
	}
	f, err := os.OpenFile(j.path, os.O_WRONLY|os.O_APPEND, 0o600)
	if errors.Is(err, os.ErrNotExist) {
		err = j.rewrite() // a new journal: header, fsync, dir fsync
		if err == nil {
			return j, nil
		}
	}
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("opening journal: %w", err)
	}
	j.f = f
	if j.records > 2*len(j.entries)+1024 {
		if err := j.Compact(); err != nil {
			j.Close()
			return nil, err
		}
	}
	return j, nil
}

// ReadJournal loads a journal without locking or changing it, for status
// and dry runs. A missing journal is empty.
func ReadJournal(dir, base string, log *slog.Logger) (*Journal, error) {
	j := &Journal{path: JournalPath(dir, base), log: orDiscard(log), entries: map[string]*Entry{}}
	if err := j.load(false); err != nil {
		return nil, err
	}
	return j, nil
}

func orDiscard(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}

// load reads the file. With repair, a torn last line is cut off so that
// the next append starts on a line of its own.
func (j *Journal) load(repair bool) error {
	f, err := os.Open(j.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading journal: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxJournalSize+1))
	if err != nil {
		return fmt.Errorf("reading journal %s: %w", j.path, err)
	}
	if len(data) > MaxJournalSize {
		return fmt.Errorf("journal %s is over %d bytes", j.path, MaxJournalSize)
	}
	good := 0 // length of the prefix made of complete lines
	lineNo := 0
	for len(data[good:]) > 0 {
		rest := data[good:]
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			j.log.Warn("journal: ignoring an incomplete last record (interrupted write)", "journal", j.path, "bytes", len(rest))
			break
		}
		lineNo++
		line := string(rest[:i])
		good += i + 1
		if lineNo == 1 {
			if line != journalMagic {
				return fmt.Errorf("%s is not a popbox fetch journal (first line %q)", j.path, truncateString(line, 40))
			}
			continue
		}
		if err := j.apply(line); err != nil {
			// A crash only tears the last line; damage elsewhere is
			// skipped, not fatal: what it loses is at worst a second
			// delivery, never a message.
			j.log.Warn("journal: skipping a damaged record", "journal", j.path, "line", lineNo, "err", err)
			continue
		}
		j.records++
	}
	if repair && good < len(data) {
		if err := os.Truncate(j.path, int64(good)); err != nil {
			return fmt.Errorf("repairing journal: %w", err)
		}
	}
	return nil
}

func truncateString(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// apply checks one line's checksum and applies its record.
func (j *Journal) apply(line string) error {
	sum, rec, ok := strings.Cut(line, " ")
	if !ok || len(sum) != 8 {
		return errors.New("no checksum")
	}
	want, err := strconv.ParseUint(sum, 16, 32)
	if err != nil || uint32(want) != crc32.ChecksumIEEE([]byte(rec)) {
		return errors.New("checksum mismatch")
	}
	f := strings.Fields(rec)
	num := func(i int) int64 {
		if i >= len(f) {
			err = errors.New("missing field")
			return 0
		}
		n, e := strconv.ParseInt(f[i], 10, 64)
		if e != nil {
			err = e
		}
		return n
	}
	if len(f) < 2 {
		return errors.New("short record")
	}
	typ, uidl := f[0], f[1]
	switch typ {
	case "seen": // seen UIDL GEN SIZE UNIXNANO
		e := &Entry{UIDL: uidl, Gen: int(num(2)), Size: num(3), FirstSeen: time.Unix(0, num(4)), State: StateSeen}
		if err == nil {
			j.entries[uidl] = e
		}
	case "pend", "dlvd", "gone": // TYPE UIDL GEN [SIZE]
		gen := int(num(2))
		if err != nil {
			return err
		}
		e := j.entries[uidl]
		if e == nil || e.Gen != gen {
			return fmt.Errorf("%s for %s generation %d, which was never seen", typ, uidl, gen)
		}
		switch typ {
		case "pend":
			e.State = StatePending
		case "dlvd":
			e.State, e.Size = StateDelivered, num(3)
		case "gone":
			e.State = StateGone
		}
	case "floor": // floor - N
		if n := int(num(2)); err == nil && n > j.floor {
			j.floor = n
		}
	case "run": // run - UNIXNANO FETCHED BYTES "RESULT" "MESSAGE"
		r := RunRecord{Time: time.Unix(0, num(2)), Fetched: int(num(3)), Bytes: num(4)}
		if err != nil {
			return err
		}
		q := strings.SplitN(rec, " ", 6)
		if len(q) < 6 {
			return errors.New("short run record")
		}
		res, tail, e1 := unquotePrefix(q[5])
		msg, _, e2 := unquotePrefix(strings.TrimPrefix(tail, " "))
		if e1 != nil || e2 != nil {
			return errors.New("bad run record")
		}
		r.Result, r.Message = res, msg
		j.last = r
	default:
		return fmt.Errorf("unknown record type %q", typ)
	}
	return err
}

func unquotePrefix(s string) (string, string, error) {
	q, err := strconv.QuotedPrefix(s)
	if err != nil {
		return "", "", err
	}
	v, err := strconv.Unquote(q)
	return v, s[len(q):], err
}

// line formats a record with its checksum.
func line(format string, args ...any) []byte {
	rec := fmt.Sprintf(format, args...)
	return fmt.Appendf(nil, "%08x %s\n", crc32.ChecksumIEEE([]byte(rec)), rec)
}

func seenLine(e *Entry) []byte {
	return line("seen %s %d %d %d", e.UIDL, e.Gen, e.Size, e.FirstSeen.UnixNano())
}

// append writes records and fsyncs them: when it returns nil they survive
// a crash, together with every record written before them.
func (j *Journal) append(b []byte) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := j.writeLocked(b); err != nil {
		return err
	}
	return j.syncLocked()
}

// write writes records without waiting for the disk. It serves the records
// whose loss a crash can only make the next run re-check, never act wrongly
// on: "pending" and "delivered" are re-learnt from the destination (Has),
// and Sync runs before anything relies on them (DELE, the run record).
// One fsync per message was the fetcher's bottleneck.
func (j *Journal) write(b []byte) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.writeLocked(b)
}

func (j *Journal) writeLocked(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	if _, err := j.f.Write(b); err != nil {
		return fmt.Errorf("writing journal: %w", err)
	}
	j.records += bytes.Count(b, []byte{'\n'})
	j.unsynced = true
	return nil
}

// Sync makes every record written so far durable.
func (j *Journal) Sync() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.syncLocked()
}

func (j *Journal) syncLocked() error {
	if !j.unsynced {
		return nil
	}
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("syncing journal: %w", err)
	}
	j.unsynced = false
	return nil
}

// Entry returns the entry of uidl, or nil.
func (j *Journal) Entry(uidl string) *Entry {
	return j.entries[uidl]
}

// Entries returns all entries, by UIDL.
func (j *Journal) Entries() []*Entry {
	return slices.SortedFunc(maps.Values(j.entries), func(a, b *Entry) int { return strings.Compare(a.UIDL, b.UIDL) })
}

// LastRun is the most recent run record.
func (j *Journal) LastRun() RunRecord { return j.last }

// NextGen is the generation a UIDL gets when first seen now: one past the
// generation it had if the journal remembers it, and never below the floor.
func (j *Journal) NextGen(uidl string) int {
	if e := j.entries[uidl]; e != nil {
		return max(e.Gen+1, j.floor)
	}
	return j.floor
}

// Seen records new entries (new UIDLs or new generations), in one write.
func (j *Journal) Seen(es []*Entry) error {
	var b []byte
	for _, e := range es {
		b = append(b, seenLine(e)...)
	}
	if err := j.append(b); err != nil {
		return err
	}
	for _, e := range es {
		j.entries[e.UIDL] = e
	}
	return nil
}

// Pending records that a delivery of e is about to start. It is not
// synced (see write): after a crash, entries still "seen" or "pending" are
// both checked against the destination.
func (j *Journal) Pending(e *Entry) error {
	if err := j.write(line("pend %s %d", e.UIDL, e.Gen)); err != nil {
		return err
	}
	e.State = StatePending
	return nil
}

// Delivered records that the destination holds e durably. The record is
// durable only after Sync, which must come before any DELE relies on it.
func (j *Journal) Delivered(e *Entry, size int64) error {
	if err := j.write(line("dlvd %s %d %d", e.UIDL, e.Gen, size)); err != nil {
		return err
	}
	e.State, e.Size = StateDelivered, size
	return nil
}

// Gone records that the entries are no longer on the server.
func (j *Journal) Gone(es []*Entry) error {
	var b []byte
	for _, e := range es {
		b = append(b, line("gone %s %d", e.UIDL, e.Gen)...)
	}
	if err := j.append(b); err != nil {
		return err
	}
	for _, e := range es {
		e.State = StateGone
	}
	return nil
}

// Run records the outcome of a run.
func (j *Journal) Run(r RunRecord) error {
	if err := j.append(line("run - %d %d %d %s %s", r.Time.UnixNano(), r.Fetched, r.Bytes,
		strconv.Quote(r.Result), strconv.Quote(truncateString(r.Message, 500)))); err != nil {
		return err
	}
	j.last = r
	return nil
}

// Compact rewrites the journal with one record per live fact. Gone entries
// are dropped; the floor is raised past their generations.
func (j *Journal) Compact() error {
	for uidl, e := range j.entries {
		if e.State == StateGone {
			j.floor = max(j.floor, e.Gen+1)
			delete(j.entries, uidl)
		}
	}
	if j.f != nil {
		j.f.Close()
		j.f = nil
	}
	return j.rewrite()
}

// rewrite writes the state to a temporary file and renames it into place:
// fsync of the file before the rename, of the directory after it, so a
// crash at any point leaves a complete journal, old or new.
func (j *Journal) rewrite() error {
	var buf bytes.Buffer
	buf.WriteString(journalMagic + "\n")
	n := 0
	if j.floor > 0 {
		buf.Write(line("floor - %d", j.floor))
		n++
	}
	for _, e := range j.Entries() {
		buf.Write(seenLine(e))
		n++
		switch e.State {
		case StatePending:
			buf.Write(line("pend %s %d", e.UIDL, e.Gen))
			n++
		case StateDelivered:
			buf.Write(line("dlvd %s %d %d", e.UIDL, e.Gen, e.Size))
			n++
		case StateGone:
			buf.Write(line("gone %s %d", e.UIDL, e.Gen))
			n++
		}
	}
	if !j.last.Time.IsZero() {
		r := j.last
		buf.Write(line("run - %d %d %d %s %s", r.Time.UnixNano(), r.Fetched, r.Bytes, strconv.Quote(r.Result), strconv.Quote(r.Message)))
		n++
	}
	tmp := j.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("compacting journal: %w", err)
	}
	if _, err := f.Write(buf.Bytes()); err != nil {
		f.Close()
		return fmt.Errorf("compacting journal: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("compacting journal: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("compacting journal: %w", err)
	}
	if err := os.Rename(tmp, j.path); err != nil {
		return fmt.Errorf("compacting journal: %w", err)
	}
	if err := syncDir(filepath.Dir(j.path)); err != nil {
		return fmt.Errorf("compacting journal: %w", err)
	}
	j.f, err = os.OpenFile(j.path, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("reopening journal: %w", err)
	}
	j.records = n
	j.unsynced = false
	return nil
}

// MaybeCompact compacts when the file has grown well past the live state.
func (j *Journal) MaybeCompact() error {
	if j.records > 2*len(j.entries)+1024 {
		return j.Compact()
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Close syncs and releases the file and the lock.
func (j *Journal) Close() error {
	var err error
	if j.f != nil {
		err = errors.Join(j.Sync(), j.f.Close())
	}
	if j.lock != nil {
		j.lock.Close() // closing the descriptor releases the flock
	}
	return err
}

// messageKey is the destination key of one message: a stable function of
// the account, the server, the user, the UIDL and its generation, so that
// after a crash the same message asks the destination about the same key.
// 26 base32 characters carry 130 bits of SHA-256, which fits the
// destinations' limit ([a-z2-7], at most 64 characters) with room to spare.
func messageKey(a *Account, uidl string, gen int) string {
	h := sha256.New()
	for _, s := range []string{a.Name, strings.ToLower(a.Server), a.User, uidl, strconv.Itoa(gen)} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(h.Sum(nil))[:26])
}

// validUIDL reports whether s is a UIDL as RFC 1939 §7 defines it: 1 to 70
// characters in 0x21..0x7E. The journal relies on it (no spaces).
func validUIDL(s string) bool {
	if len(s) < 1 || len(s) > 70 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
