package dest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// keyHeader is the header Deliver puts first in every message it appends
// to an mbox, so the mbox itself records which message it holds.
const keyHeader = "X-Popbox-Key: "

// Sidecar key index (PATH.popbox-keys). First line keysMagic, then one
// record a line:
//
//	D KEY OFFSET LENGTH CRC   intent to append, fsynced before the append
//	I KEY                     found in the mbox by the scan that created the file
//
// OFFSET is where the message's From_ line starts, LENGTH its octets up to
// and including the blank separator line, CRC their CRC-32C in hex.
const (
	keysSuffix = ".popbox-keys"
	keysMagic  = "popbox-mbox-keys 1"
	// maxKeysLine bounds one index line; ours are under 120 octets.
	maxKeysLine = 512
	// maxMboxLine bounds what the fallback scan holds of one mbox line; the
	// rest of a longer line is skipped, never buffered.
	maxMboxLine = 4096
)

// newCRC is the checksum of sidecar records: CRC-32C, hardware-assisted
// on amd64 and arm64, so verifying a region costs about a read.
func newCRC() hash.Hash32 { return crc32.New(crc32.MakeTable(crc32.Castagnoli)) }

type mboxDest struct {
	path     string
	keysPath string
	opts     Options

	mu     sync.Mutex
	closed bool
	// Has's caches. verified holds keys proven stored; recs the sidecar's
	// records read so far (keysOff octets of the file keysIno).
	verified map[string]struct{}
	recs     map[string][]keyRec
	keysOff  int64
	keysIno  uint64
	// scanned: keys found by a full scan when there was no sidecar, valid
	// while the mbox keeps scanStamp.
	scanned   map[string]struct{}
	scanStamp fileStamp
	// checked is the last sidecar record whose append recoverAppend found
	// settled (or this Destination completed), so it is not verified again
	// before every delivery.
	checked lastIntent

	// appendFault, when set (by tests), is called after each write to the
	// mbox with the octets written so far; an error it returns fails the
	// append there, as a full disk or an I/O error would.
	appendFault func(written int64) error
}

// keyRec is one sidecar record; imported records have length < 0.
type keyRec struct {
	off, length int64
	crc         uint32
}

// lastIntent is the sidecar's last D record.
type lastIntent struct {
	key string
	rec keyRec
}

type fileStamp struct {
	ino, size int64
	mtime     time.Time
}

func openMbox(path string, opts Options) (*mboxDest, error) {
	dir := filepath.Dir(path)
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("dest: mbox %s: %w", path, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("dest: mbox %s: %s is not a directory", path, dir)
	}
	if fi, err := os.Stat(path); err == nil && !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("dest: mbox %s: not a regular file", path)
	}
	return &mboxDest{path: path, keysPath: path + keysSuffix, opts: opts}, nil
}

// fromLineFor is the mbox From_ line: "From SENDER DATE" with the date in
// asctime(3) format, which every mbox reader parses. The sender is one
// word there, so blanks and controls in it are replaced.
func fromLineFor(m Message) string {
	sender := m.Sender
	if sender == "" {
		sender = "MAILER-DAEMON"
	}
	sender = strings.Map(func(r rune) rune {
		if r <= ' ' || r == 0x7f {
			return '_'
		}
		return r
	}, sender)
	t := m.Time
	if t.IsZero() {
		t = time.Now()
	}
	return "From " + sender + " " + t.Format(time.ANSIC) + "\n"
}

// spool writes the complete mbox entry for the message to a private
// unnamed temporary file and returns it rewound, with its length and CRC.
// Spooling first means the mbox is locked only for a local copy, not for as
// long as a slow POP3 download takes (mail readers and other MDAs wait on
// that lock), and the length and CRC of the entry are known before the
// append starts, for the sidecar intent record.
func (d *mboxDest) spool(ctx context.Context, r io.Reader, m Message) (*os.File, int64, uint32, error) {
	f, err := tempFile(filepath.Dir(d.path))
	if err != nil {
		return nil, 0, 0, err
	}
	crc := newCRC()
	bw := bufio.NewWriterSize(io.MultiWriter(f, crc), 64<<10)
	err = func() error {
		if _, err := bw.WriteString(fromLineFor(m)); err != nil {
			return err
		}
		if _, err := bw.WriteString(keyHeader + m.Key + "\n"); err != nil {
			return err
		}
		q := &mboxrdWriter{w: bw}
		lf := &lfWriter{w: q}
		if err := copyCtx(ctx, lf, &limitReader{r: r, max: d.opts.MaxMessageSize}); err != nil {
			return err
		}
		if err := lf.Flush(); err != nil {
			return err
		}
		if err := q.Flush(); err != nil {
			return err
		}
		// The message ends with a line end, then a blank line separates it
		// from the next From_ line.
		tail := "\n"
		if !lf.endsInNewline() {
			tail = "\n\n"
		}
		if _, err := bw.WriteString(tail); err != nil {
			return err
		}
		return bw.Flush()
	}()
	if err != nil {
		f.Close()
		return nil, 0, 0, temporaryIO(fmt.Errorf("dest: mbox: spooling: %w", err))
	}
	n, err := f.Seek(0, io.SeekCurrent)
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		f.Close()
		return nil, 0, 0, fmt.Errorf("dest: mbox: spool: %w", err)
	}
	return f, n, crc.Sum32(), nil
}

// tempFile opens an unnamed file (O_TMPFILE) next to the mbox, so the
// spool lives on the mbox's disk rather than on a memory-backed /tmp; where
// that directory refuses, os.TempDir. Unnamed or unlinked at once: nothing
// to clean up after a crash.
func tempFile(dir string) (*os.File, error) {
	for _, d := range []string{dir, os.TempDir()} {
		fd, err := unix.Open(d, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
		if err == nil {
			return os.NewFile(uintptr(fd), filepath.Join(d, "(spool)")), nil
		}
		f, err := os.CreateTemp(d, ".popbox-spool-*")
		if err == nil {
			os.Remove(f.Name())
			return f, nil
		}
	}
	return nil, fmt.Errorf("dest: mbox: no directory for a spool file (tried %s and %s)", dir, os.TempDir())
}

func (d *mboxDest) Deliver(ctx context.Context, r io.Reader, m Message) error {
	if err := checkKey(m.Key); err != nil {
		return err
	}
	d.mu.Lock()
	closed := d.closed
	d.mu.Unlock()
	if closed {
		return ErrClosed
	}
	sp, length, crc, err := d.spool(ctx, r, m)
	if err != nil {
		return err
	}
	defer sp.Close()

	f, lk, err := d.openLocked(ctx)
	if err != nil {
		return err
	}
	defer f.Close()
	defer lk.release()

	d.recoverAppend(ctx, f)
	rec, err := d.append(ctx, f, lk, sp, m.Key, length, crc)
	if err != nil {
		return err
	}
	// Has need not verify what it just watched being fsynced; the sidecar
	// record itself reaches Has's cache through its incremental read. Nor
	// need the next Deliver's recovery look at this append again.
	d.mu.Lock()
	if d.verified == nil {
		d.verified = make(map[string]struct{})
	}
	d.verified[m.Key] = struct{}{}
	d.checked = lastIntent{key: m.Key, rec: rec}
	d.mu.Unlock()
	return nil
}

// recoverAppend removes what an append killed midway (SIGKILL, a power
// cut) left at the end of the mbox, before the message is appended again:
// Has rightly answers false for such a torn entry, so without this the
// mbox would keep a cut-off copy before the full one. Called with both
// locks held, so no cooperating writer is appending meanwhile.
//
// It looks at the sidecar's last intent record, KEY OFFSET LENGTH CRC;
// only the last one can describe an unfinished append, since every later
// Deliver runs this first. With the mbox's size S:
//
//   - S <= OFFSET: the append never began, or failed and was cut back.
//   - OFFSET < S < OFFSET+LENGTH: the append was cut short. The tail
//     [OFFSET, S) is cut off (truncate, fsync) if it is all ours: it starts
//     with the From_ line and our key header (or a prefix of them) and no
//     other writer's entry starts in it (foreignEntryIn). Another program
//     that locks only with fcntl (which our death released) may have
//     appended after the torn entry without the file reaching OFFSET+LENGTH,
//     and its message must not be cut off with ours; then the tail is left
//     as it is: a torn copy plus a full one, a duplicate, never a loss.
//   - S >= OFFSET+LENGTH: the region is complete, or it does not verify
//     (the mbox was rewritten, or mail was appended after a torn entry).
//     Nothing is truncated, since what follows OFFSET may be someone
//     else's; a region that does not verify is logged.
//
// Failures are logged, not returned: recovery is tidying, and delivering
// anyway is what happened before it existed.
func (d *mboxDest) recoverAppend(ctx context.Context, f *os.File) {
	log := d.opts.Logger
	last, ok, err := readLastIntent(d.keysPath)
	if err != nil {
		log.Warn("mbox: reading the key index to recover an interrupted append", "path", d.keysPath, "err", err)
		return
	}
	if !ok {
		// No sidecar, or no D record. Without a record nothing tells where
		// an append began or how long it was meant to be, and cutting on a
		// guess could cut a complete message: a torn entry is left alone
		// (scanMboxKeys does not count it as delivered).
		return
	}
	d.mu.Lock()
	settled := d.checked == last
	d.mu.Unlock()
	if settled {
		return
	}
	fi, err := f.Stat()
	if err != nil {
		log.Warn("mbox: recovering an interrupted append", "path", d.path, "err", err)
		return
	}
	size, off, end := fi.Size(), last.rec.off, last.rec.off+last.rec.length
	switch {
	case size <= off:
	case size < end:
		ours, err := tornTailIsOurs(ctx, f, last.key, off, size)
		if err != nil {
			log.Warn("mbox: checking the end of an interrupted append", "path", d.path, "key", last.key, "err", err)
			return
		}
		if !ours {
			log.Warn("mbox: the end of an interrupted append is not only ours; leaving it", "path", d.path, "key", last.key, "offset", off, "have", size-off, "want", last.rec.length)
			break
		}
		if err := f.Truncate(off); err != nil {
			log.Error("mbox: cutting off an interrupted append", "path", d.path, "key", last.key, "err", err)
			return
		}
		if err := f.Sync(); err != nil {
			log.Error("mbox: fsync after cutting off an interrupted append", "path", d.path, "err", err)
			return
		}
		log.Warn("mbox: cut off the incomplete end of an interrupted append", "path", d.path, "key", last.key, "offset", off, "removed", size-off, "of", last.rec.length)
	default:
		ok, err := verifyRegionAt(ctx, f, last.key, last.rec)
		if err != nil {
			log.Warn("mbox: verifying the last recorded append", "path", d.path, "key", last.key, "err", err)
			return
		}
		if !ok {
			log.Warn("mbox: the last recorded append does not verify (mbox rewritten, or mail appended after an interrupted append); leaving it", "path", d.path, "key", last.key, "offset", off, "length", last.rec.length)
		}
	}
	d.mu.Lock()
	d.checked = last
	d.mu.Unlock()
}

// readLastIntent returns the sidecar's last complete line if it is a D
// record. Only the end of the file is read: the sidecar grows by a line
// per delivery and this runs before every one. A last line without its
// newline (a crash while the intent was written, so its append never
// began) is passed over.
func readLastIntent(keysPath string) (lastIntent, bool, error) {
	f, err := os.Open(keysPath)
	if errors.Is(err, fs.ErrNotExist) {
		return lastIntent{}, false, nil
	}
	if err != nil {
		return lastIntent{}, false, fmt.Errorf("dest: mbox: key index: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return lastIntent{}, false, fmt.Errorf("dest: mbox: key index: %w", err)
	}
	start := max(fi.Size()-2*maxKeysLine, 0)
	buf := make([]byte, fi.Size()-start)
	if _, err := f.ReadAt(buf, start); err != nil && !errors.Is(err, io.EOF) {
		return lastIntent{}, false, fmt.Errorf("dest: mbox: key index: %w", err)
	}
	end := bytes.LastIndexByte(buf, '\n')
	if end < 0 {
		return lastIntent{}, false, nil
	}
	begin := bytes.LastIndexByte(buf[:end], '\n') + 1
	if begin == 0 && start > 0 {
		// A line longer than the window: damaged, not a record.
		return lastIntent{}, false, nil
	}
	line := buf[begin:end]
	key, rec, ok := parseKeyRec(string(line))
	if !ok || rec.length < 0 {
		return lastIntent{}, false, nil
	}
	return lastIntent{key: key, rec: rec}, true, nil
}

// tornTailIsOurs reports whether the mbox's octets [off, size), the start
// of an entry that was to be longer, are only what our append of key
// wrote: a prefix of "From " ... "\n" then of the key header, and no other
// writer's entry starting after that.
func tornTailIsOurs(ctx context.Context, f *os.File, key string, off, size int64) (bool, error) {
	br := bufio.NewReaderSize(io.NewSectionReader(f, off, size-off), maxMboxLine)
	from, err := readBoundedLine(br)
	if err != nil {
		return false, err
	}
	if !bytes.HasPrefix(from, []byte(fromLine)) && !strings.HasPrefix(fromLine, string(from)) {
		return false, nil
	}
	hdr, err := readBoundedLine(br)
	switch {
	case errors.Is(err, io.EOF):
		// Cut within the From_ line.
	case err != nil:
		return false, err
	case !strings.HasPrefix(keyHeader+key+"\n", string(hdr)):
		return false, nil
	}
	// From off+1: our own From_ line is not a foreign one.
	foreign, err := foreignEntryIn(ctx, io.NewSectionReader(f, off+1, size-off-1))
	return !foreign && err == nil, err
}

// foreignFromLine matches, where "From " was found in the middle of a
// line, the start of an mbox From_ line (RFC 4155: "From ", the sender,
// blanks, an asctime date; Postfix puts two blanks) as another writer puts
// it right after our unfinished last line when it does not first end that
// line. Bounded so a match fits in foreignEntryIn's overlap.
var foreignFromLine = regexp.MustCompile(`^From \S{1,256}\s{1,8}(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) `)

// foreignOverlap is how many octets past a chunk foreignEntryIn needs to
// judge a "From " found near its end: a foreignFromLine match at most.
const foreignOverlap = 5 + 256 + 8 + 4

// foreignEntryIn reports whether another mbox entry starts in r, the
// octets of a torn entry of ours: a "From " at the start of a line
// (mboxrd quotes every such line inside our entries to ">From ", so it is
// someone else's From_ line) or a From_ line glued to the middle of one.
// A message of ours whose text holds such a line mid-line looks foreign
// too; that only means a torn entry is left in place. The octet before r
// is taken to be in the middle of a line (r starts inside our From_ line).
func foreignEntryIn(ctx context.Context, r io.Reader) (bool, error) {
	const chunk = 64 << 10
	needle := []byte(fromLine)
	// buf[0] is the octet before the ones to check (a line end or not);
	// checked positions are 1..hi.
	buf := make([]byte, 1+chunk+foreignOverlap)
	buf[0] = 'F'
	n := 1
	for {
		if err := ctx.Err(); err != nil {
			return false, err
		}
		m, err := io.ReadFull(r, buf[n:])
		n += m
		eof := errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
		if err != nil && !eof {
			return false, err
		}
		hi := n - foreignOverlap
		if eof {
			hi = n
		}
		for p := 1; p < hi; {
			i := bytes.Index(buf[p:n], needle)
			if i < 0 || p+i >= hi {
				break
			}
			q := p + i
			if buf[q-1] == '\n' || foreignFromLine.Match(buf[q:min(n, q+foreignOverlap)]) {
				return true, nil
			}
			p = q + 1
		}
		if eof {
			return false, nil
		}
		n = copy(buf, buf[hi-1:n])
	}
}

// openLocked opens (creating it 0600) and locks the mbox. A mail reader
// may replace the file by rename while we wait for the lock; then the lock
// is on a file no longer at path, so it is retaken on the new one.
func (d *mboxDest) openLocked(ctx context.Context) (*os.File, *mboxLock, error) {
	for range 5 {
		f, created, err := openOrCreate(d.path)
		if err != nil {
			return nil, nil, temporaryIO(fmt.Errorf("dest: mbox: %w", err))
		}
		if created {
			// The mbox's name must be as durable as what goes into it.
			if err := syncDir(filepath.Dir(d.path)); err != nil {
				f.Close()
				return nil, nil, temporaryIO(fmt.Errorf("dest: mbox: %w", err))
			}
		}
		fi, err := f.Stat()
		if err != nil || !fi.Mode().IsRegular() {
			f.Close()
			return nil, nil, fmt.Errorf("dest: mbox %s: not a regular file (%v)", d.path, err)
		}
		lk, err := lockMbox(ctx, f, d.path, d.opts.Logger)
		if err != nil {
			f.Close()
			return nil, nil, err
		}
		now, err := os.Stat(d.path)
		if err == nil && os.SameFile(fi, now) {
			return f, lk, nil
		}
		lk.release()
		f.Close()
	}
	return nil, nil, fmt.Errorf("%w: dest: mbox %s keeps being replaced", ErrTemporary, d.path)
}

// openOrCreate opens path read-write, creating it 0600 if missing, and
// reports whether it created it.
func openOrCreate(path string) (*os.File, bool, error) {
	for {
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if !errors.Is(err, fs.ErrNotExist) {
			return f, false, err
		}
		f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if !errors.Is(err, fs.ErrExist) {
			return f, err == nil, err
		}
		// Created by someone else meanwhile: open theirs.
	}
}

// append copies the spooled entry to the end of the locked mbox and
// returns its intent record. Order: intent record fsynced, then the entry
// written and fsynced; on any failure the mbox is cut back to its old size.
func (d *mboxDest) append(ctx context.Context, f *os.File, lk *mboxLock, sp *os.File, key string, length int64, crc uint32) (keyRec, error) {
	fi, err := f.Stat()
	if err != nil {
		return keyRec{}, fmt.Errorf("dest: mbox: %w", err)
	}
	orig := fi.Size()
	pad, err := separatorNeeded(f, orig)
	if err != nil {
		return keyRec{}, fmt.Errorf("dest: mbox: %w", err)
	}
	off := orig + int64(len(pad))
	if err := d.writeIntent(ctx, key, off, length, crc); err != nil {
		return keyRec{}, err
	}
	werr := func() error {
		w := io.NewOffsetWriter(f, orig)
		if _, err := w.Write([]byte(pad)); err != nil {
			return err
		}
		buf := make([]byte, 64<<10)
		var written int64
		for {
			if err := ctx.Err(); err != nil {
				return err
			}
			lk.refresh()
			n, rerr := sp.Read(buf)
			if n > 0 {
				if _, err := w.Write(buf[:n]); err != nil {
					return err
				}
				written += int64(n)
				if d.appendFault != nil {
					if err := d.appendFault(written); err != nil {
						return err
					}
				}
			}
			if rerr == io.EOF {
				break
			}
			if rerr != nil {
				return rerr
			}
		}
		return f.Sync()
	}()
	if werr != nil {
		// Cut back so no partial message is visible, and make the cut
		// durable. The intent record stays; Has finds it unverifiable.
		if terr := f.Truncate(orig); terr != nil {
			d.opts.Logger.Error("mbox: truncating back after a failed append", "path", d.path, "size", orig, "err", terr)
		} else if serr := f.Sync(); serr != nil {
			d.opts.Logger.Error("mbox: fsync after truncating back", "path", d.path, "err", serr)
		}
		return keyRec{}, temporaryIO(fmt.Errorf("dest: mbox: appending to %s: %w", d.path, werr))
	}
	return keyRec{off: off, length: length, crc: crc}, nil
}

// separatorNeeded returns what must precede a From_ line appended at size
// so it follows a blank line, as mboxrd readers expect: nothing for an
// empty file or one ending in "\n\n".
func separatorNeeded(f *os.File, size int64) (string, error) {
	if size == 0 {
		return "", nil
	}
	var b [2]byte
	start := max(size-2, 0)
	n, err := f.ReadAt(b[:size-start], start)
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	tail := string(b[:n])
	switch {
	case strings.HasSuffix(tail, "\n\n") || tail == "\n" && size == 1:
		return "", nil
	case strings.HasSuffix(tail, "\n"):
		return "\n", nil
	default:
		return "\n\n", nil
	}
}

// writeIntent appends a D record to the sidecar and fsyncs it, creating
// the sidecar first if needed. Called with the mbox locked, so records are
// in append order and a sidecar is created by one writer at a time.
func (d *mboxDest) writeIntent(ctx context.Context, key string, off, length int64, crc uint32) error {
	kf, err := os.OpenFile(d.keysPath, os.O_RDWR|os.O_APPEND, 0)
	if errors.Is(err, fs.ErrNotExist) {
		if err = d.createKeys(ctx); err == nil {
			kf, err = os.OpenFile(d.keysPath, os.O_RDWR|os.O_APPEND, 0)
		}
	}
	if err != nil {
		if errors.Is(err, fs.ErrPermission) {
			// A spool directory we may not create files in: deliver
			// anyway, Has then falls back to scanning the mbox.
			d.opts.Logger.Warn("mbox: no key index, Has will scan the mbox", "path", d.keysPath, "err", err)
			return nil
		}
		return temporaryIO(fmt.Errorf("dest: mbox: key index: %w", err))
	}
	defer kf.Close()
	rec := fmt.Sprintf("D %s %d %d %08x\n", key, off, length, crc)
	// A last line without its newline is an intent torn by a crash (its
	// append never began). Appended to directly, our record would join it
	// into one damaged line and be lost; so that line is ended first.
	torn, err := endsWithoutNewline(kf)
	if err != nil {
		return temporaryIO(fmt.Errorf("dest: mbox: key index: %w", err))
	}
	if torn {
		rec = "\n" + rec
	}
	if _, err := kf.WriteString(rec); err != nil {
		return temporaryIO(fmt.Errorf("dest: mbox: key index: %w", err))
	}
	if err := kf.Sync(); err != nil {
		return temporaryIO(fmt.Errorf("dest: mbox: key index: %w", err))
	}
	return nil
}

// endsWithoutNewline reports whether f is non-empty and its last octet is
// not '\n'.
func endsWithoutNewline(f *os.File) (bool, error) {
	fi, err := f.Stat()
	if err != nil || fi.Size() == 0 {
		return false, err
	}
	var b [1]byte
	if _, err := f.ReadAt(b[:], fi.Size()-1); err != nil {
		return false, err
	}
	return b[0] != '\n', nil
}

// createKeys makes a new sidecar holding an I record for every key the
// mbox already carries (an earlier sidecar was deleted, or never existed),
// so that afterwards a key missing from the sidecar is one never
// delivered. Written to a temporary name, fsynced, renamed, directory
// fsynced: a crash leaves either no sidecar or a complete one.
func (d *mboxDest) createKeys(ctx context.Context) error {
	keys, err := scanMboxKeys(ctx, d.path)
	if err != nil {
		return err
	}
	tmp := d.keysPath + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(f)
	bw.WriteString(keysMagic + "\n")
	for k := range keys {
		bw.WriteString("I " + k + "\n")
	}
	err = bw.Flush()
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, d.keysPath)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(filepath.Dir(d.keysPath))
}

// scanMboxKeys reads the whole mbox and returns the key of every message
// whose From_ line is directly followed by our key header. Lines are read
// with a bound; in mboxrd every unquoted "From " at a line start begins a
// message.
//
// The last entry's key is left out unless the file ends with the blank
// line that ends each of our entries: an entry without it was cut off (a
// crash in the middle of its append), and with no sidecar record to tell
// its length that is the one sign of it there is. Counting it would make
// Has report a torn message as delivered, and the engine delete it from
// the server: a loss; leaving it out costs at worst a second copy. An
// entry cut just after a blank line of its body still looks whole, which
// only the sidecar's LENGTH and CRC rule out.
func scanMboxKeys(ctx context.Context, path string) (map[string]struct{}, error) {
	keys := make(map[string]struct{})
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return keys, nil
	}
	if err != nil {
		return nil, fmt.Errorf("dest: mbox: %w", err)
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, maxMboxLine)
	afterFrom := false
	pending := ""      // the key of the entry being read, "" if none
	endsBlank := false // the last line read is an empty one
	for n := 0; ; n++ {
		if n%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		line, err := readBoundedLine(br)
		if errors.Is(err, io.EOF) {
			if pending != "" && endsBlank {
				keys[pending] = struct{}{}
			}
			return keys, nil
		}
		if err != nil {
			return nil, fmt.Errorf("dest: mbox: scanning %s: %w", path, err)
		}
		if afterFrom {
			if k, ok := strings.CutPrefix(string(line), keyHeader); ok {
				k = strings.TrimRight(k, "\n")
				if checkKey(k) == nil {
					pending = k
				}
			}
		}
		afterFrom = bytes.HasPrefix(line, []byte(fromLine))
		if afterFrom {
			// The previous entry was followed by another: complete as far
			// as a scan can tell.
			if pending != "" {
				keys[pending] = struct{}{}
			}
			pending = ""
		}
		endsBlank = n > 0 && string(line) == "\n"
	}
}

// readBoundedLine returns the next line (with its '\n') or, for a line
// longer than the reader's buffer, its first part with the rest skipped.
// io.EOF only when nothing is left.
func readBoundedLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		head := bytes.Clone(line)
		for errors.Is(err, bufio.ErrBufferFull) {
			_, err = br.ReadSlice('\n')
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		return head, nil
	}
	if errors.Is(err, io.EOF) && len(line) > 0 {
		return line, nil
	}
	return line, err
}

// Has answers from the sidecar: a key with no record there was never
// appended (the intent record is fsynced before the append starts); a key
// whose record's region of the mbox still starts with its From_ line and
// key header and has the recorded length and CRC is stored. A crash
// between the append's fsync and anything later is therefore still
// detected, and a crash during the append (a torn entry) is not mistaken
// for a delivery. Proven keys are cached; the sidecar is read
// incrementally, since it only grows.
//
// Without a sidecar (never delivered here, deleted, or an unwritable
// directory) Has scans the mbox for key headers once and caches the result
// until the mbox changes.
func (d *mboxDest) Has(ctx context.Context, key string) (bool, error) {
	if err := checkKey(key); err != nil {
		return false, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return false, ErrClosed
	}
	if _, ok := d.verified[key]; ok {
		return true, nil
	}
	haveKeys, err := d.loadKeysLocked(ctx)
	if err != nil {
		return false, err
	}
	if !haveKeys {
		return d.hasByScanLocked(ctx, key)
	}
	recs := d.recs[key]
	for i := len(recs) - 1; i >= 0; i-- {
		rec := recs[i]
		ok := rec.length < 0
		if !ok {
			ok, err = verifyRegion(ctx, d.path, key, rec)
			if err != nil {
				return false, err
			}
		}
		if ok {
			if d.verified == nil {
				d.verified = make(map[string]struct{})
			}
			d.verified[key] = struct{}{}
			return true, nil
		}
	}
	return false, nil
}

// loadKeysLocked reads sidecar records appended since the last call. It
// reports false when there is no sidecar.
func (d *mboxDest) loadKeysLocked(ctx context.Context) (bool, error) {
	f, err := os.Open(d.keysPath)
	if errors.Is(err, fs.ErrNotExist) {
		d.recs, d.keysOff, d.keysIno = nil, 0, 0
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("dest: mbox: key index: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return false, fmt.Errorf("dest: mbox: key index: %w", err)
	}
	ino := fileIno(fi)
	if d.recs == nil || ino != d.keysIno || fi.Size() < d.keysOff {
		// New or replaced sidecar: read it whole.
		d.recs, d.keysOff, d.keysIno = make(map[string][]keyRec), 0, ino
	}
	if fi.Size() == d.keysOff {
		return true, nil
	}
	if _, err := f.Seek(d.keysOff, io.SeekStart); err != nil {
		return false, fmt.Errorf("dest: mbox: key index: %w", err)
	}
	br := bufio.NewReaderSize(f, maxKeysLine)
	for n := 0; ; n++ {
		if n%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return false, err
			}
		}
		line, err := readBoundedLine(br)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return false, fmt.Errorf("dest: mbox: key index: %w", err)
		}
		if !bytes.HasSuffix(line, []byte("\n")) {
			// A record being written now, or torn by a crash (so its append
			// never started): not consumed, read again next time.
			break
		}
		d.keysOff += int64(len(line))
		key, rec, ok := parseKeyRec(strings.TrimSuffix(string(line), "\n"))
		if ok {
			d.recs[key] = append(d.recs[key], rec)
		}
	}
	return true, nil
}

// parseKeyRec parses one sidecar line; the magic line and damaged lines
// are not records.
func parseKeyRec(s string) (string, keyRec, bool) {
	f := strings.Split(s, " ")
	switch {
	case len(f) == 2 && f[0] == "I" && checkKey(f[1]) == nil:
		return f[1], keyRec{length: -1}, true
	case len(f) == 5 && f[0] == "D" && checkKey(f[1]) == nil:
		off, err1 := strconv.ParseInt(f[2], 10, 64)
		length, err2 := strconv.ParseInt(f[3], 10, 64)
		crc, err3 := strconv.ParseUint(f[4], 16, 32)
		if err1 != nil || err2 != nil || err3 != nil || off < 0 || length <= 0 {
			return "", keyRec{}, false
		}
		return f[1], keyRec{off: off, length: length, crc: uint32(crc)}, true
	}
	return "", keyRec{}, false
}

// verifyRegion checks that the mbox holds, at rec.off, an entry of
// rec.length octets with CRC rec.crc starting with a From_ line and key's
// header. The header check rules out a region another message now fills
// after a truncate-back; the CRC rules out a torn entry.
func verifyRegion(ctx context.Context, path, key string, rec keyRec) (bool, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("dest: mbox: %w", err)
	}
	defer f.Close()
	return verifyRegionAt(ctx, f, key, rec)
}

// verifyRegionAt is verifyRegion on an open mbox.
func verifyRegionAt(ctx context.Context, f *os.File, key string, rec keyRec) (bool, error) {
	fi, err := f.Stat()
	if err != nil {
		return false, fmt.Errorf("dest: mbox: %w", err)
	}
	if fi.Size() < rec.off+rec.length {
		return false, nil
	}
	crc := newCRC()
	br := bufio.NewReaderSize(io.TeeReader(io.NewSectionReader(f, rec.off, rec.length), crc), maxMboxLine)
	from, err := readBoundedLine(br)
	if err != nil || !bytes.HasPrefix(from, []byte(fromLine)) {
		return false, nil
	}
	hdr, err := readBoundedLine(br)
	if err != nil || string(hdr) != keyHeader+key+"\n" {
		return false, nil
	}
	if err := copyCtx(ctx, io.Discard, br); err != nil {
		return false, fmt.Errorf("dest: mbox: %w", err)
	}
	return crc.Sum32() == rec.crc, nil
}

// hasByScanLocked answers Has without a sidecar.
func (d *mboxDest) hasByScanLocked(ctx context.Context, key string) (bool, error) {
	st, err := statMbox(d.path)
	if err != nil {
		return false, err
	}
	if d.scanned == nil || st != d.scanStamp || time.Since(st.mtime) < time.Second {
		keys, err := scanMboxKeys(ctx, d.path)
		if err != nil {
			return false, err
		}
		d.scanned, d.scanStamp = keys, st
	}
	_, ok := d.scanned[key]
	return ok, nil
}

func statMbox(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fileStamp{}, nil
	}
	if err != nil {
		return fileStamp{}, fmt.Errorf("dest: mbox: %w", err)
	}
	return fileStamp{ino: int64(fileIno(fi)), size: fi.Size(), mtime: fi.ModTime()}, nil
}

func fileIno(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}

func (d *mboxDest) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	d.verified, d.recs, d.scanned = nil, nil, nil
	return nil
}
