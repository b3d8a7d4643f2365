package dovecot

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Errors returned by ReadMaildir; test with errors.Is.
var (
	// ErrNotMaildir: the path has no new/ and cur/ directories.
	ErrNotMaildir = errors.New("dovecot: not a Maildir")
	// ErrNoUIDList: the Maildir has messages but no dovecot-uidlist, so
	// Dovecot has never served it and there are no UIDLs to keep.
	ErrNoUIDList = errors.New("dovecot: no dovecot-uidlist")
	// ErrLocked: Dovecot holds dovecot-uidlist.lock (younger than its
	// stale timeout), i.e. is changing the file right now.
	ErrLocked = errors.New("dovecot: dovecot-uidlist is locked")
	// ErrChanged: dovecot-uidlist or a message changed while being read
	// (Dovecot or a delivery is still running).
	ErrChanged = errors.New("dovecot: Maildir changed while being read")
	// ErrNotRegular: a message entry is a symbolic link, directory or
	// other non-regular file.
	ErrNotRegular = errors.New("dovecot: not a regular file")
	// ErrDuplicateFile: two files in one directory share a base name.
	ErrDuplicateFile = errors.New("dovecot: two files with one base name")
	// ErrUIDSpace: no UID is left for a message not yet in
	// dovecot-uidlist.
	ErrUIDSpace = errors.New("dovecot: UID space exhausted")
	// ErrInvalidUIDL and ErrDuplicateUIDL are the kinds of UIDLProblem.
	ErrInvalidUIDL   = errors.New("dovecot: UIDL not servable (RFC 1939 §7: 1 to 70 characters in 0x21..0x7E)")
	ErrDuplicateUIDL = errors.New("dovecot: UIDL not unique in the mailbox")
)

// lockStaleTimeout is MAILDIR_UIDLIST_LOCK_STALE_TIMEOUT (maildir-uidlist.h).
const lockStaleTimeout = 120 * time.Second

// readAttempts is how often ReadMaildir starts over when dovecot-uidlist
// changes under it.
const readAttempts = 3

// Options are the Dovecot settings that decide the UIDLs. The zero value is
// Dovecot's default configuration.
type Options struct {
	// UIDLFormat is pop3_uidl_format; "" means DefaultUIDLFormat.
	UIDLFormat string
	// ReuseXUIDL is pop3_reuse_xuidl: a message's X-UIDL header is its
	// UIDL.
	ReuseXUIDL bool
	// UIDLDuplicates is pop3_uidl_duplicates: "" or "allow" (the
	// default), or "rename".
	UIDLDuplicates string
	// ControlDir is where dovecot-uidlist is: mail_location's CONTROL=
	// directory for the INBOX; "" means the Maildir itself (Dovecot's
	// default).
	ControlDir string
}

// UIDLSource says where a message's UIDL came from.
type UIDLSource int

const (
	// FromFormat: pop3_uidl_format.
	FromFormat UIDLSource = iota
	// FromXUIDL: the X-UIDL header (pop3_reuse_xuidl).
	FromXUIDL
	// FromUIDList: the record's 'P' extension in dovecot-uidlist.
	FromUIDList
)

func (s UIDLSource) String() string {
	switch s {
	case FromFormat:
		return "pop3_uidl_format"
	case FromXUIDL:
		return "X-UIDL"
	case FromUIDList:
		return "dovecot-uidlist"
	}
	return "UIDLSource(" + strconv.Itoa(int(s)) + ")"
}

// Message is one message as Dovecot's POP3 server lists it.
type Message struct {
	// Path is the message file.
	Path string
	// UID and UIDValidity are its IMAP UID and the mailbox's UIDVALIDITY.
	UID, UIDValidity uint32
	// UIDL is what Dovecot's UIDL command answers for it, byte for byte.
	UIDL string
	// Source is where UIDL came from.
	Source UIDLSource
	// Size is the file size.
	Size int64
	// Unassigned: the file is not in dovecot-uidlist yet; UID is the one
	// Dovecot would give it at its next sync. No client has seen its UIDL.
	Unassigned bool

	maildir, rel string // Path is maildir/rel
	dev, ino     uint64
}

// Open opens the message file for reading. It refuses, with an error
// wrapping ErrChanged or ErrNotRegular, anything but the regular file that
// ReadMaildir saw (same device and inode), and never leaves the Maildir
// through a symbolic link (os.Root). A file renamed or removed since (by
// Dovecot, which renames files to change their flags) gives an error
// wrapping fs.ErrNotExist.
func (m Message) Open() (*os.File, error) {
	root, err := os.OpenRoot(m.maildir)
	if err != nil {
		return nil, fmt.Errorf("dovecot: %w", err)
	}
	defer root.Close()
	return m.openIn(root)
}

func (m Message) openIn(root *os.Root) (*os.File, error) {
	// O_NONBLOCK: a FIFO swapped in must not block the open; it is then
	// refused as not regular. It makes no difference to a regular file.
	f, err := root.OpenFile(m.rel, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("dovecot: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("dovecot: %w", err)
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%w: %s", ErrNotRegular, m.Path)
	}
	if dev, ino := devIno(st); dev != m.dev || ino != m.ino {
		f.Close()
		return nil, fmt.Errorf("%w: %s is another file now", ErrChanged, m.Path)
	}
	return f, nil
}

func devIno(st fs.FileInfo) (dev, ino uint64) {
	sys := st.Sys().(*syscall.Stat_t)
	return uint64(sys.Dev), sys.Ino
}

// UIDLProblem is one message whose UIDL popbox cannot serve unchanged.
type UIDLProblem struct {
	Message Message
	// Err wraps ErrInvalidUIDL or ErrDuplicateUIDL.
	Err error
}

// UIDLProblems is ReadMaildir's error when some UIDLs cannot be kept. The
// messages are returned with it, so a caller may, on the administrator's
// word, import the others.
type UIDLProblems struct {
	Problems []UIDLProblem
}

func (p *UIDLProblems) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "dovecot: %d message(s) have UIDLs popbox cannot serve unchanged:", len(p.Problems))
	for i, q := range p.Problems {
		if i == 10 {
			fmt.Fprintf(&b, "; and %d more", len(p.Problems)-i)
			break
		}
		fmt.Fprintf(&b, "; %s (UID %d, UIDL %s from %s): %v", q.Message.Path, q.Message.UID, excerpt(q.Message.UIDL), q.Message.Source, q.Err)
	}
	return b.String()
}

// Unwrap lets errors.Is find ErrInvalidUIDL and ErrDuplicateUIDL.
func (p *UIDLProblems) Unwrap() []error {
	errs := make([]error, len(p.Problems))
	for i, q := range p.Problems {
		errs[i] = q.Err
	}
	return errs
}

// Skip reports whether the message with this path is one of the problems.
func (p *UIDLProblems) Skip(path string) bool {
	for _, q := range p.Problems {
		if q.Message.Path == path {
			return true
		}
	}
	return false
}

// ValidUIDL reports whether popbox can serve uidl: RFC 1939 §7 allows 1 to
// 70 characters in 0x21..0x7E.
func ValidUIDL(uidl string) bool {
	if len(uidl) < 1 || len(uidl) > 70 {
		return false
	}
	for i := 0; i < len(uidl); i++ {
		if uidl[i] < 0x21 || uidl[i] > 0x7e {
			return false
		}
	}
	return true
}

// ReadMaildir lists the INBOX Maildir at path as Dovecot's POP3 server
// would: in POP3 order, with each message's UIDL. See the package
// documentation for the rules. It fails if the Maildir cannot be read
// consistently (ErrLocked, ErrChanged, ErrCorruptUIDList, ErrNoUIDList,
// ErrNotRegular, ErrDuplicateFile, ErrUIDLFormat, ...). If only some UIDLs
// cannot be served by popbox it returns all messages and a *UIDLProblems.
func ReadMaildir(path string, opts Options) ([]Message, error) {
	format := opts.UIDLFormat
	if format == "" {
		format = DefaultUIDLFormat
	}
	f, err := parseUIDLFormat(format)
	if err != nil {
		return nil, err
	}
	rename := false
	switch opts.UIDLDuplicates {
	case "", "allow":
	case "rename":
		rename = true
	default:
		return nil, fmt.Errorf("dovecot: pop3_uidl_duplicates %q: want allow or rename", opts.UIDLDuplicates)
	}
	control := opts.ControlDir
	if control == "" {
		control = path
	}
	r := &reader{maildir: path, control: control, format: f, reuseXUIDL: opts.ReuseXUIDL, rename: rename, now: time.Now}
	return r.readConsistent()
}

// readConsistent repeats read until dovecot-uidlist stays the same through
// it, or gives up.
func (r *reader) readConsistent() ([]Message, error) {
	for attempt := 1; ; attempt++ {
		msgs, err := r.read()
		if errors.Is(err, errRetry) {
			if attempt < readAttempts {
				time.Sleep(time.Duration(attempt) * 100 * time.Millisecond)
				continue
			}
			return nil, fmt.Errorf("%w: %s kept changing; stop Dovecot and mail delivery first", ErrChanged, filepath.Join(r.control, UIDListName))
		}
		if err != nil {
			return nil, err
		}
		return msgs, check(msgs)
	}
}

var errRetry = errors.New("retry")

type reader struct {
	maildir, control string
	format           *uidlFormat
	reuseXUIDL       bool
	rename           bool
	now              func() time.Time

	root *os.Root // the Maildir, during read
	// afterScan, if set, runs between the scan and the final check; tests
	// use it to change the Maildir at the worst moment.
	afterScan func()
}

// file is one message file found in new/ or cur/.
type file struct {
	rel      string // "new/<name>" or "cur/<name>"
	base     string
	size     int64
	dev, ino uint64
	// sortName is the name Dovecot's uidlist record will have when it
	// sorts new files: the name in cur/, where its next POP3 login
	// (pop3_no_flag_updates=no) moves files from new/, adding ":2," to a
	// name without ':' (maildir_scan_dir).
	sortName string
}

func (r *reader) read() ([]Message, error) {
	root, err := os.OpenRoot(r.maildir)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotMaildir, err)
	}
	defer root.Close()
	r.root = root
	for _, sub := range []string{"new", "cur"} {
		if st, err := root.Lstat(sub); err != nil || !st.IsDir() {
			return nil, fmt.Errorf("%w: %s has no %s/ directory", ErrNotMaildir, r.maildir, sub)
		}
	}
	if err := r.checkLock(); err != nil {
		return nil, err
	}
	listPath := filepath.Join(r.control, UIDListName)
	list, before, err := readUIDList(listPath)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	files, err := r.scan()
	if err != nil {
		return nil, err
	}
	if list == nil {
		if len(files) == 0 {
			return nil, nil
		}
		return nil, fmt.Errorf("%w in %s: Dovecot has never opened this mailbox, so no client has UIDLs to keep; import the mail as new mail, or log in once through Dovecot first", ErrNoUIDList, r.control)
	}

	msgs, err := r.assign(list, files)
	if err != nil {
		return nil, err
	}
	for i := range msgs {
		if err := r.uidl(&msgs[i], list); err != nil {
			return nil, err
		}
	}
	if r.rename {
		renameDuplicates(msgs)
	}
	pop3Order(msgs, list)

	if r.afterScan != nil {
		r.afterScan()
	}
	// The same file, unlocked, still: otherwise Dovecot was at work.
	if err := r.checkLock(); err != nil {
		return nil, err
	}
	after, err := os.Lstat(listPath)
	if err != nil || !sameFile(before, after) {
		return nil, errRetry
	}
	return msgs, nil
}

// checkLock fails if dovecot-uidlist.lock exists and is not stale.
func (r *reader) checkLock() error {
	lock := filepath.Join(r.control, UIDListName+".lock")
	st, err := os.Lstat(lock)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("dovecot: %w", err)
	}
	if age := r.now().Sub(st.ModTime()); age < lockStaleTimeout {
		return fmt.Errorf("%w: %s is %v old; Dovecot is updating the mailbox (stop it first, or retry)", ErrLocked, lock, age.Round(time.Second))
	}
	return nil
}

// readUIDList opens dovecot-uidlist without following a link and parses it.
// It returns the file's identity for the later check.
func readUIDList(path string) (*UIDList, fs.FileInfo, error) {
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, nil, fmt.Errorf("%w: %s is a symbolic link", ErrNotRegular, path)
		}
		return nil, nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, nil, fmt.Errorf("dovecot: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("%w: %s", ErrNotRegular, path)
	}
	if err := syscall.SetNonblock(fd, false); err != nil {
		return nil, nil, &fs.PathError{Op: "fcntl", Path: path, Err: err}
	}
	list, err := ParseUIDList(f)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return list, st, nil
}

func sameFile(a, b fs.FileInfo) bool {
	return os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

// scan lists new/ and then cur/ (maildir_scan_dir).
func (r *reader) scan() (map[string]file, error) {
	files := map[string]file{}
	for _, sub := range []string{"new", "cur"} {
		d, err := r.root.Open(sub)
		if err != nil {
			return nil, fmt.Errorf("dovecot: %w", err)
		}
		ents, err := d.ReadDir(-1)
		d.Close()
		if err != nil {
			return nil, fmt.Errorf("dovecot: %w", err)
		}
		inDir := map[string]string{}
		for _, e := range ents {
			name := e.Name()
			if name[0] == '.' || strings.ContainsAny(name, "\r\n") {
				continue
			}
			if name[0] == ':' {
				// maildir_rename_empty_basename: Dovecot renames it
				// and gives it a new UID.
				return nil, fmt.Errorf("%w: %s has an empty base name; Dovecot would rename it, rename it first", ErrDuplicateFile, filepath.Join(r.maildir, sub, name))
			}
			rel := sub + "/" + name
			st, err := r.root.Lstat(rel)
			if errors.Is(err, fs.ErrNotExist) {
				// Renamed or expunged since ReadDir: Dovecot at work.
				return nil, errRetry
			}
			if err != nil {
				return nil, fmt.Errorf("dovecot: %w", err)
			}
			if !st.Mode().IsRegular() {
				return nil, fmt.Errorf("%w: %s (%s)", ErrNotRegular, filepath.Join(r.maildir, rel), st.Mode().Type())
			}
			base := baseName(name)
			if other, dup := inDir[base]; dup {
				return nil, fmt.Errorf("%w: %s and %s in %s; Dovecot would give one of them a new name and UID, remove or rename one", ErrDuplicateFile, other, name, filepath.Join(r.maildir, sub))
			}
			inDir[base] = name
			dev, ino := devIno(st)
			sortName := name
			if sub == "new" && !strings.Contains(name, ":") {
				sortName += ":2,"
			}
			// cur/ is scanned second and wins over new/: a message
			// caught between its link into cur/ and its unlink from new/.
			files[base] = file{rel: rel, base: base, size: st.Size(), dev: dev, ino: ino, sortName: sortName}
		}
	}
	return files, nil
}

// assign pairs files with uidlist records and gives the files without one
// the UIDs Dovecot would (maildir_uidlist_assign_uids). The result is in
// UID order.
func (r *reader) assign(list *UIDList, files map[string]file) ([]Message, error) {
	msgs := make([]Message, 0, len(files))
	known := make(map[string]bool, len(list.Records))
	for _, rec := range list.Records {
		known[rec.Name] = true
		f, ok := files[rec.Name]
		if !ok {
			continue // expunged
		}
		msgs = append(msgs, r.message(f, rec.UID, list.UIDValidity))
	}
	var fresh []file
	for base, f := range files {
		if !known[base] {
			fresh = append(fresh, f)
		}
	}
	slices.SortFunc(fresh, func(a, b file) int { return filenameSortCmp(a.sortName, b.sortName) })
	next := list.NextUID
	for _, f := range fresh {
		if next == 1<<32-1 {
			return nil, fmt.Errorf("%w: %d new messages after UID %d", ErrUIDSpace, len(fresh), list.NextUID-1)
		}
		m := r.message(f, next, list.UIDValidity)
		m.Unassigned = true
		msgs = append(msgs, m)
		next++
	}
	return msgs, nil
}

func (r *reader) message(f file, uid, uidValidity uint32) Message {
	return Message{
		Path: filepath.Join(r.maildir, f.rel), UID: uid, UIDValidity: uidValidity, Size: f.size,
		maildir: r.maildir, rel: f.rel, dev: f.dev, ino: f.ino,
	}
}

// uidl computes m's UIDL as pop3_get_uid does.
func (r *reader) uidl(m *Message, list *UIDList) error {
	base := baseName(filepath.Base(m.Path))
	rec, hasRec := findRecord(list, m.UID)
	if hasRec && !m.Unassigned {
		if p, ok := rec.Lookup(ExtPOP3UIDL); ok {
			m.UIDL, m.Source = p, FromUIDList
			if p == "" {
				m.UIDL = base // MAIL_FETCH_UIDL_BACKEND: the storage ID
			}
			return nil
		}
	}
	if r.reuseXUIDL {
		v, found, err := r.scanXUIDL(*m)
		if err != nil && !errors.Is(err, ErrXUIDLTooLong) {
			return err
		}
		if found {
			// A value too long keeps its first MaxXUIDLLen bytes, which
			// the check below refuses anyway.
			m.UIDL, m.Source = v, FromXUIDL
			return nil
		}
	}
	guid := base
	if hasRec && !m.Unassigned {
		if g, ok := rec.Lookup(ExtGUID); ok && g != "" {
			guid = g
		}
	}
	u, err := r.format.expand(formatVars{uid: m.UID, uidValidity: m.UIDValidity, fileName: base, guid: guid})
	if err != nil {
		return err
	}
	m.UIDL, m.Source = u, FromFormat
	return nil
}

func (r *reader) scanXUIDL(m Message) (string, bool, error) {
	f, err := m.openIn(r.root)
	if errors.Is(err, fs.ErrNotExist) {
		return "", false, errRetry
	}
	if err != nil {
		return "", false, err
	}
	defer f.Close()
	v, found, err := ScanXUIDL(f)
	if err != nil && !errors.Is(err, ErrXUIDLTooLong) {
		return "", false, fmt.Errorf("%s: %w", m.Path, err)
	}
	return v, found, err
}

func findRecord(list *UIDList, uid uint32) (Record, bool) {
	i, ok := slices.BinarySearchFunc(list.Records, uid, func(r Record, uid uint32) int {
		switch {
		case r.UID < uid:
			return -1
		case r.UID > uid:
			return 1
		}
		return 0
	})
	if !ok {
		return Record{}, false
	}
	return list.Records[i], true
}

// renameDuplicates is pop3_uidl_duplicates=rename (uidl_rename_duplicate),
// over the messages in UID order.
func renameDuplicates(msgs []Message) {
	counts := map[string]int{}
	for i := range msgs {
		u := msgs[i].UIDL
		for {
			n, dup := counts[u]
			if !dup {
				break
			}
			counts[u] = n + 1
			u += "-" + strconv.Itoa(n+1)
		}
		msgs[i].UIDL = u
		counts[u] = 1
	}
}

// pop3Order sorts msgs (in UID order) by the 'O' extension as Dovecot's
// MAIL_SORT_POP3_ORDER does: missing or unparsable counts as 2^32-1, ties
// stay in UID order.
func pop3Order(msgs []Message, list *UIDList) {
	order := make(map[uint32]uint64, len(msgs))
	ordered := false
	for _, m := range msgs {
		o := uint64(1<<32 - 1)
		if rec, ok := findRecord(list, m.UID); ok && !m.Unassigned {
			if v, ok := rec.Lookup(ExtPOP3Order); ok {
				if n, err := strconv.ParseUint(v, 10, 64); err == nil {
					o, ordered = n, true
				}
			}
		}
		order[m.UID] = o
	}
	if !ordered {
		return
	}
	slices.SortStableFunc(msgs, func(a, b Message) int {
		oa, ob := order[a.UID], order[b.UID]
		switch {
		case oa < ob:
			return -1
		case oa > ob:
			return 1
		}
		return 0
	})
}

// check reports the UIDLs popbox cannot serve.
func check(msgs []Message) error {
	var probs []UIDLProblem
	seen := make(map[string]int, len(msgs))
	for i, m := range msgs {
		if !ValidUIDL(m.UIDL) {
			probs = append(probs, UIDLProblem{Message: m, Err: ErrInvalidUIDL})
			continue
		}
		if j, dup := seen[m.UIDL]; dup {
			probs = append(probs, UIDLProblem{Message: m, Err: fmt.Errorf("%w: also message %d, %s", ErrDuplicateUIDL, j+1, msgs[j].Path)})
			continue
		}
		seen[m.UIDL] = i
	}
	if len(probs) > 0 {
		return &UIDLProblems{Problems: probs}
	}
	return nil
}

// filenameSortCmp is maildir_filename_sort_cmp: by the leading decimal
// seconds, then the microseconds after 'M' in the second dot-separated part
// if both names have them, then the rest of the base name byte by byte.
func filenameSortCmp(a, b string) int {
	secsA, restA := leadingSecs(a)
	secsB, restB := leadingSecs(b)
	if secsA != secsB {
		if secsA < secsB {
			return -1
		}
		return 1
	}
	ua, okA := fnameUsecs(restA)
	ub, okB := fnameUsecs(restB)
	if okA && okB && ua != ub {
		if ua < ub {
			return -1
		}
		return 1
	}
	return baseCmp(restA, restB)
}

// baseCmp is maildir_filename_base_cmp: byte by byte up to ':' or the end,
// bytes compared as C's (signed, on Dovecot's platforms) char.
func baseCmp(a, b string) int {
	at := func(s string, i int) byte {
		if i < len(s) {
			return s[i]
		}
		return 0
	}
	i := 0
	for at(a, i) == at(b, i) && at(a, i) != ':' && at(a, i) != 0 {
		i++
	}
	ca, cb := at(a, i), at(b, i)
	if (ca == 0 || ca == ':') && (cb == 0 || cb == ':') {
		return 0
	}
	return int(int8(ca)) - int(int8(cb))
}

// leadingSecs parses the leading digits as Dovecot does into a time_t; it
// saturates instead of overflowing, which only matters for absurd names.
func leadingSecs(s string) (uint64, string) {
	var n uint64
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		if n < 1<<60 {
			n = n*10 + uint64(s[i]-'0')
		}
		i++
	}
	return n, s[i:]
}

// fnameUsecs is maildir_fname_get_usecs on what follows the seconds:
// ".<uniqueness>.<host>", the microseconds being the digits after the first
// 'M' in <uniqueness>.
func fnameUsecs(s string) (uint64, bool) {
	if s == "" || s[0] != '.' {
		return 0, false
	}
	for i := 1; i < len(s) && s[i] != '.' && s[i] != ':'; i++ {
		if s[i] == 'M' {
			var n uint64
			for j := i + 1; j < len(s) && s[j] >= '0' && s[j] <= '9'; j++ {
				if n < 1<<60 {
					n = n*10 + uint64(s[j]-'0')
				}
			}
			return n, true
		}
	}
	return 0, false
}
