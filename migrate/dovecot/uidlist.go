package dovecot

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// UIDListName is the file Dovecot keeps a Maildir's UIDs in, in the
// mailbox's control directory (by default the Maildir itself).
const UIDListName = "dovecot-uidlist"

// Bounds on what ParseUIDList reads: a record is a UID, a few short
// extensions and a file name (at most 255 bytes on Linux), so a line of
// MaxUIDListLine is already absurd; MaxUIDListSize admits millions of
// messages.
const (
	MaxUIDListLine = 64 << 10
	MaxUIDListSize = 1 << 30
)

// ErrCorruptUIDList: dovecot-uidlist is malformed where Dovecot would
// declare it broken, or exceeds the bounds above.
var ErrCorruptUIDList = errors.New("dovecot: corrupt dovecot-uidlist")

// UIDList is a parsed dovecot-uidlist.
type UIDList struct {
	// Version is 1 or 3.
	Version int
	// UIDValidity is the mailbox's UIDVALIDITY (the V header field).
	UIDValidity uint32
	// NextUID is the UID the next new message gets: the N header field,
	// raised to one more than the highest record's UID if it was lower
	// (as maildir_uidlist_update_read does).
	NextUID uint32
	// GUID is the mailbox GUID (G header field, 32 hex digits); empty in
	// version 1.
	GUID string
	// HeaderExt are the other version 3 header fields, "<key><value>",
	// e.g. "P%08Xu%08Xv" (a POP3 UIDL format Dovecot 2.3 declares but
	// never reads).
	HeaderExt []string
	// Records are the messages, in ascending UID order, at most one per
	// base name.
	Records []Record
}

// Record is one message of a UIDList.
type Record struct {
	UID uint32
	// Name is the base file name: the file name up to its first ':'.
	Name string
	// Ext are the record's extensions ("<key><value>" with key A-Z) in
	// file order; see Lookup.
	Ext []string
}

// Record extension keys (maildir-uidlist.h enum maildir_uidlist_rec_ext_key).
const (
	ExtPhysicalSize = 'S'
	ExtVirtualSize  = 'W'
	ExtPOP3UIDL     = 'P'
	ExtPOP3Order    = 'O'
	ExtGUID         = 'G'
)

// Lookup returns the value of the first extension with key, as
// maildir_uidlist_lookup_ext does, and whether there is one. An extension
// may be present with an empty value (an empty 'P' means "the base file
// name").
func (r Record) Lookup(key byte) (string, bool) {
	for _, e := range r.Ext {
		if e[0] == key {
			return e[1:], true
		}
	}
	return "", false
}

// ParseUIDList parses a dovecot-uidlist. Errors other than read errors wrap
// ErrCorruptUIDList and name the line; they quote at most a few bytes of it.
func ParseUIDList(r io.Reader) (*UIDList, error) {
	return parseUIDList(r, MaxUIDListSize)
}

// parseUIDList is ParseUIDList with the size bound as a parameter, for tests.
func parseUIDList(r io.Reader, maxSize int64) (*UIDList, error) {
	sc := bufio.NewScanner(&boundedReader{r: r, left: maxSize})
	sc.Buffer(make([]byte, 0, 4096), MaxUIDListLine+1)
	sc.Split(scanLFLines)
	var (
		l       UIDList
		lineNum int
		prevUID uint32
		byName  = map[string]int{} // base name -> index in l.Records
	)
	corrupt := func(format string, args ...any) error {
		return fmt.Errorf("%w: line %d: %s", ErrCorruptUIDList, lineNum, fmt.Sprintf(format, args...))
	}
	for sc.Scan() {
		lineNum++
		line := cLine(sc.Bytes())
		if lineNum == 1 {
			if err := l.parseHeader(line); err != nil {
				return nil, corrupt("%v", err)
			}
			continue
		}
		rec, err := parseRecord(line, l.Version)
		if err != nil {
			return nil, corrupt("%v", err)
		}
		if rec.UID <= prevUID {
			return nil, corrupt("UIDs not ascending (%d after %d)", rec.UID, prevUID)
		}
		prevUID = rec.UID
		if l.Version == 1 && rec.UID >= l.NextUID {
			return nil, corrupt("UID %d not below the header's next UID %d", rec.UID, l.NextUID)
		}
		if i, dup := byName[rec.Name]; dup {
			// maildir_uidlist_next: "Duplicate file entry": the old UID
			// is deleted and the later line stands.
			l.Records[i].Name = "" // tombstone, removed below
		}
		byName[rec.Name] = len(l.Records)
		l.Records = append(l.Records, rec)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("%w: line %d longer than %d bytes", ErrCorruptUIDList, lineNum+1, MaxUIDListLine)
		}
		if errors.Is(err, errTooLarge) {
			return nil, fmt.Errorf("%w: larger than %d bytes", ErrCorruptUIDList, maxSize)
		}
		return nil, fmt.Errorf("dovecot: reading dovecot-uidlist: %w", err)
	}
	if lineNum == 0 {
		return nil, fmt.Errorf("%w: empty", ErrCorruptUIDList)
	}
	if len(byName) != len(l.Records) {
		kept := l.Records[:0]
		for _, r := range l.Records {
			if r.Name != "" {
				kept = append(kept, r)
			}
		}
		l.Records = kept
	}
	if prevUID >= l.NextUID {
		l.NextUID = prevUID + 1
	}
	return &l, nil
}

// scanLFLines splits at LF and drops one CR before it, like Dovecot's
// i_stream_next_line. A final line without LF is dropped, not returned:
// Dovecot does not read it either (it is an append in progress).
func scanLFLines(data []byte, atEOF bool) (advance int, token []byte, err error) {
	if i := bytes.IndexByte(data, '\n'); i >= 0 {
		return i + 1, bytes.TrimSuffix(data[:i], []byte{'\r'}), nil
	}
	if atEOF {
		return len(data), nil, nil
	}
	return 0, nil, nil
}

var errTooLarge = errors.New("too large")

// boundedReader fails with errTooLarge once more than left bytes were read.
type boundedReader struct {
	r    io.Reader
	left int64
}

func (b *boundedReader) Read(p []byte) (int, error) {
	if b.left < 0 {
		return 0, errTooLarge
	}
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	if b.left < 0 {
		return n, errTooLarge
	}
	return n, err
}

// cLine is the line as Dovecot's C string functions see it: up to the first
// NUL.
func cLine(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// parseHeader follows maildir_uidlist_read_header.
func (l *UIDList) parseHeader(line string) error {
	if len(line) < 2 || line[0] < '0' || line[0] > '9' || line[1] != ' ' {
		return errors.New("header without a version number")
	}
	l.Version = int(line[0] - '0')
	rest := line[2:]
	switch l.Version {
	case 1:
		f := strings.Fields(rest)
		if len(f) < 2 {
			return errors.New("version 1 header needs UIDVALIDITY and next UID")
		}
		var err error
		if l.UIDValidity, err = parseUint32(f[0]); err != nil {
			return fmt.Errorf("version 1 header: UIDVALIDITY: %w", err)
		}
		if l.NextUID, err = parseUint32(f[1]); err != nil {
			return fmt.Errorf("version 1 header: next UID: %w", err)
		}
	case 3:
		for _, f := range strings.Split(rest, " ") {
			if f == "" {
				continue
			}
			var err error
			switch key, value := f[0], f[1:]; key {
			case 'V':
				l.UIDValidity, err = parseUint32(value)
			case 'N':
				l.NextUID, err = parseUint32(value)
			case 'G':
				l.GUID, err = parseGUID(value)
			default:
				l.HeaderExt = append(l.HeaderExt, f)
			}
			if err != nil {
				return fmt.Errorf("header field %c: %w", f[0], err)
			}
		}
	default:
		return fmt.Errorf("unsupported version %d", l.Version)
	}
	if l.UIDValidity == 0 || l.NextUID == 0 {
		return fmt.Errorf("header with UIDVALIDITY %d and next UID %d", l.UIDValidity, l.NextUID)
	}
	return nil
}

// parseRecord follows maildir_uidlist_next and
// maildir_uidlist_read_extended.
func parseRecord(line string, version int) (Record, error) {
	var rec Record
	i := 0
	for i < len(line) && line[i] >= '0' && line[i] <= '9' {
		i++
	}
	if i == 0 || i == len(line) || line[i] != ' ' {
		return rec, fmt.Errorf("record does not start with a UID and a space: %s", excerpt(line))
	}
	uid, err := parseUint32(line[:i])
	if err != nil || uid == 0 || uid == 1<<32-1 {
		return rec, fmt.Errorf("invalid UID %s", excerpt(line[:i]))
	}
	rec.UID = uid
	rest := strings.TrimLeft(line[i:], " ")
	if version == 3 {
		for rest != "" && rest[0] != ':' {
			end := strings.IndexByte(rest, ' ')
			if end < 0 {
				end = len(rest)
			}
			// Keys outside A-Z are dropped ("Invalid extension record,
			// removing"), the line is not rejected for them.
			if f := rest[:end]; f[0] >= 'A' && f[0] <= 'Z' {
				rec.Ext = append(rec.Ext, f)
			}
			rest = strings.TrimLeft(rest[end:], " ")
		}
		rest = strings.TrimPrefix(rest, ":")
	}
	if rest == "" {
		return rec, fmt.Errorf("record for UID %d without a file name", uid)
	}
	if strings.IndexByte(rest, '/') >= 0 {
		return rec, fmt.Errorf("record for UID %d: file name contains '/'", uid)
	}
	// Version 1 may carry the full name with its flags; Dovecot matches
	// files by the base name in either version.
	rec.Name = baseName(rest)
	if rec.Name == "" {
		return rec, fmt.Errorf("record for UID %d: empty base file name", uid)
	}
	return rec, nil
}

// parseUint32 accepts 1 to 10 decimal digits fitting 32 bits, nothing else.
func parseUint32(s string) (uint32, error) {
	if s == "" || len(s) > 10 || strings.TrimLeft(s, "0123456789") != "" {
		return 0, fmt.Errorf("not a 32-bit decimal number: %s", excerpt(s))
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("not a 32-bit decimal number: %s", excerpt(s))
	}
	return uint32(n), nil
}

// parseGUID accepts what guid_128_from_string accepts: 32 hex digits, or
// the 36-character UUID form with dashes. It returns the 32 digits in lower
// case.
func parseGUID(s string) (string, error) {
	h := s
	if len(s) == 36 && s[8] == '-' && s[13] == '-' && s[18] == '-' && s[23] == '-' {
		h = s[:8] + s[9:13] + s[14:18] + s[19:23] + s[24:]
	}
	if len(h) != 32 {
		return "", fmt.Errorf("not a GUID: %s", excerpt(s))
	}
	for i := 0; i < len(h); i++ {
		if !isHex(h[i]) {
			return "", fmt.Errorf("not a GUID: %s", excerpt(s))
		}
	}
	return strings.ToLower(h), nil
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// baseName is the part of a Maildir file name before the first ':'.
func baseName(name string) string {
	if i := strings.IndexByte(name, ':'); i >= 0 {
		return name[:i]
	}
	return name
}

// excerpt quotes at most 40 bytes of s for an error message.
func excerpt(s string) string {
	const max = 40
	if len(s) > max {
		return strconv.Quote(s[:max]) + "..."
	}
	return strconv.Quote(s)
}
