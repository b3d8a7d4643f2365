package dest

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// maildirDest delivers into one Maildir.
type maildirDest struct {
	dir  string
	opts Options
	host string // Options.Hostname made safe for a file name

	newSync *groupSync // fsyncs new/ for concurrent deliveries at once

	mu      sync.Mutex
	closed  bool
	seq     uint64
	keys    map[string]struct{} // nil until the first Has scan
	scanned [2]dirStamp         // new/ and cur/ as seen just before that scan
}

// dirStamp identifies a directory's state cheaply: any entry added,
// removed or renamed changes its mtime.
type dirStamp struct {
	mtime time.Time
	ok    bool
}

func openMaildir(dir string, opts Options) (*maildirDest, error) {
	created := false
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		created = true
	}
	for _, sub := range [...]string{"tmp", "new", "cur"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return nil, fmt.Errorf("dest: maildir %s: %w", dir, err)
		}
	}
	if created {
		// The new directory's entries must survive a crash too, or the first
		// delivery's fsync of new/ would fsync a directory that vanishes.
		if err := syncDir(dir); err != nil {
			return nil, fmt.Errorf("dest: maildir %s: %w", dir, err)
		}
		if err := syncDir(filepath.Dir(dir)); err != nil {
			return nil, fmt.Errorf("dest: maildir %s: %w", dir, err)
		}
	}
	gs, err := newGroupSync(filepath.Join(dir, "new"))
	if err != nil {
		return nil, fmt.Errorf("dest: maildir %s: %w", dir, err)
	}
	return &maildirDest{dir: dir, opts: opts, host: safeHost(opts.Hostname), newSync: gs}, nil
}

// safeHost encodes '/' and ':' in a host name as the Maildir spec asks
// ("replace / with \057 and : with \072"), so the name stays one path
// element and ':' still starts the info part.
func safeHost(h string) string {
	h = strings.ReplaceAll(h, "/", `\057`)
	return strings.ReplaceAll(h, ":", `\072`)
}

// Maildir file names are <sec>.M<usec>P<pid>Q<seq>R<rand>_<key>.<host>.
// The middle part is the spec's delivery identifier, unique on this host
// through time, pid, a per-Destination counter and 32 random bits (two
// Destinations in one process may share a microsecond). The key comes last
// in that part after '_', which no earlier field contains; its '.' are
// written as ',' (outside the key alphabet, so the mapping is one-to-one)
// because '.' separates the name's three parts.
func (d *maildirDest) fileName(key string, now time.Time) (string, error) {
	var rnd [4]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return "", fmt.Errorf("dest: random: %w", err)
	}
	d.mu.Lock()
	d.seq++
	seq := d.seq
	d.mu.Unlock()
	return fmt.Sprintf("%d.M%dP%dQ%dR%s_%s.%s",
		now.Unix(), now.Nanosecond()/1000, os.Getpid(), seq, hex.EncodeToString(rnd[:]),
		strings.ReplaceAll(key, ".", ","), d.host), nil
}

// keyFromName returns the key a file name of ours carries, or false for a
// name some other program chose. Only the base (before ':') counts: mail
// readers append ":2,FLAGS" when they move a message to cur/.
func keyFromName(name string) (string, bool) {
	base, _, _ := strings.Cut(name, ":")
	_, rest, ok := strings.Cut(base, ".")
	if !ok {
		return "", false
	}
	mid, _, ok := strings.Cut(rest, ".")
	if !ok {
		return "", false
	}
	// Parse our delivery identifier strictly, so that another MDA's name
	// that happens to contain '_' (Courier's "M…P…_N") is not taken for ours.
	for _, f := range [...]struct {
		letter byte
		hex    bool
	}{{'M', false}, {'P', false}, {'Q', false}, {'R', true}} {
		if mid == "" || mid[0] != f.letter {
			return "", false
		}
		i := 1
		for i < len(mid) && ('0' <= mid[i] && mid[i] <= '9' || f.hex && 'a' <= mid[i] && mid[i] <= 'f') {
			i++
		}
		if i == 1 {
			return "", false
		}
		mid = mid[i:]
	}
	enc, ok := strings.CutPrefix(mid, "_")
	if !ok || enc == "" {
		return "", false
	}
	key := strings.ReplaceAll(enc, ",", ".")
	if checkKey(key) != nil {
		return "", false
	}
	return key, true
}

func (d *maildirDest) Deliver(ctx context.Context, r io.Reader, m Message) (err error) {
	if err := checkKey(m.Key); err != nil {
		return err
	}
	d.mu.Lock()
	closed := d.closed
	d.mu.Unlock()
	if closed {
		return ErrClosed
	}
	name, err := d.fileName(m.Key, time.Now())
	if err != nil {
		return err
	}
	tmpPath := filepath.Join(d.dir, "tmp", name)
	newPath := filepath.Join(d.dir, "new", name)
	// O_EXCL: a name is never reused; 0600: mail is private.
	f, err := os.OpenFile(tmpPath, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return temporaryIO(fmt.Errorf("dest: maildir: %w", err))
	}
	defer func() {
		if f != nil {
			f.Close()
		}
		if err != nil {
			// Nothing half-written stays behind; new/ never saw the file.
			os.Remove(tmpPath)
		}
	}()
	if err := copyLF(ctx, f, &limitReader{r: r, max: d.opts.MaxMessageSize}); err != nil {
		return temporaryIO(fmt.Errorf("dest: maildir: writing %s: %w", tmpPath, err))
	}
	if err := f.Sync(); err != nil {
		return temporaryIO(fmt.Errorf("dest: maildir: fsync %s: %w", tmpPath, err))
	}
	cerr := f.Close()
	f = nil
	if cerr != nil {
		return temporaryIO(fmt.Errorf("dest: maildir: close %s: %w", tmpPath, cerr))
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("dest: maildir: %w", err)
	}
	// The Maildir spec links and unlinks so that an existing file is never
	// replaced; renameat2 with RENAME_NOREPLACE gives the same guarantee in
	// one step, and leaves no tmp/ entry to tidy.
	if err := moveNoReplace(tmpPath, newPath); err != nil {
		return temporaryIO(fmt.Errorf("dest: maildir: %w", err))
	}
	if err := d.newSync.Sync(); err != nil {
		// The file may or may not survive a crash: take it back, so that
		// an error always means "not delivered".
		os.Remove(newPath)
		return temporaryIO(fmt.Errorf("dest: maildir: %w", err))
	}
	d.mu.Lock()
	if d.keys != nil {
		d.keys[m.Key] = struct{}{}
	}
	d.mu.Unlock()
	return nil
}

// copyLF streams r into w with CRLF turned into LF, checking ctx between
// chunks so a cancelled fetch stops writing.
func copyLF(ctx context.Context, w io.Writer, r io.Reader) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	lf := &lfWriter{w: bw}
	if err := copyCtx(ctx, lf, r); err != nil {
		return err
	}
	if err := lf.Flush(); err != nil {
		return err
	}
	return bw.Flush()
}

// copyCtx is io.Copy with a context check per 32 KiB.
func copyCtx(ctx context.Context, w io.Writer, r io.Reader) error {
	buf := make([]byte, 32<<10)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, rerr := r.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return fmt.Errorf("reading message: %w", rerr)
		}
	}
}

// Has looks in new/ and cur/. The first call lists both once and caches the
// keys found; Deliver adds its own. A later miss lists again only if either
// directory changed since (another program delivered, or a reader moved a
// file between the two readdirs), so repeated calls are O(1) each.
func (d *maildirDest) Has(ctx context.Context, key string) (bool, error) {
	if err := checkKey(key); err != nil {
		return false, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return false, ErrClosed
	}
	if d.keys != nil {
		if _, ok := d.keys[key]; ok {
			return true, nil
		}
		if !d.changedLocked() {
			return false, nil
		}
	}
	if err := d.scanLocked(ctx); err != nil {
		return false, err
	}
	_, ok := d.keys[key]
	return ok, nil
}

// changedLocked reports whether new/ or cur/ may hold entries the last
// scan missed. An mtime within a second of the scan is not trusted: on a
// file system with coarse timestamps a later change could keep it.
func (d *maildirDest) changedLocked() bool {
	for i, sub := range [2]string{"new", "cur"} {
		st := d.stamp(sub)
		if !st.ok || !d.scanned[i].ok || !st.mtime.Equal(d.scanned[i].mtime) {
			return true
		}
		if time.Since(st.mtime) < time.Second {
			return true
		}
	}
	return false
}

func (d *maildirDest) stamp(sub string) dirStamp {
	fi, err := os.Stat(filepath.Join(d.dir, sub))
	if err != nil {
		return dirStamp{}
	}
	return dirStamp{mtime: fi.ModTime(), ok: true}
}

func (d *maildirDest) scanLocked(ctx context.Context) error {
	keys := make(map[string]struct{}, len(d.keys))
	var stamps [2]dirStamp
	// new/ before cur/: a reader moves files new -> cur, so a file moved
	// during the scan is seen in cur/ if it was missed in new/.
	for i, sub := range [2]string{"new", "cur"} {
		stamps[i] = d.stamp(sub)
		if err := scanNames(ctx, filepath.Join(d.dir, sub), func(name string) {
			if k, ok := keyFromName(name); ok {
				keys[k] = struct{}{}
			}
		}); err != nil {
			return fmt.Errorf("dest: maildir: %w", err)
		}
	}
	d.keys, d.scanned = keys, stamps
	return nil
}

// scanNames calls fn for each entry of dir, reading it in batches so a huge
// directory is never listed into memory at once.
func scanNames(ctx context.Context, dir string, fn func(string)) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		names, err := f.Readdirnames(1024)
		for _, n := range names {
			fn(n)
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("listing %s: %w", dir, err)
		}
	}
}

func (d *maildirDest) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	d.keys = nil
	return d.newSync.Close()
}

// syncDir fsyncs a directory, making the entries created or removed in it
// durable.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}

// moveNoReplace renames from to to, failing if to exists. Where the file
// system has no renameat2 it falls back to the spec's link and unlink.
func moveNoReplace(from, to string) error {
	err := unix.Renameat2(unix.AT_FDCWD, from, unix.AT_FDCWD, to, unix.RENAME_NOREPLACE)
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOSYS) {
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: err}
	}
	if err := os.Link(from, to); err != nil {
		return err
	}
	os.Remove(from) // a leftover tmp/ file is harmless (Maildir readers ignore tmp/)
	return nil
}
