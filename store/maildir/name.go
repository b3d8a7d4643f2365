package maildir

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/popbox/popbox/store"
)

// Fields popbox adds to the base of a file name (before the ":2," info).
// Not Dovecot's ,W= (its "virtual size" adds no final CRLF, so it would be
// off by 2 for a message without a final newline and mislead Dovecot) and
// not ,U= (mbsync keeps its own decimal IMAP UID there).
//
// A message imported with a literal UIDL carries it in a third field between
// the two, percent-encoded (see encodeNameLiteral):
// <key>,P=<uid/epoch>,L=<literal>,R=<size>. Its ,P= is still a uid popbox
// allocated, which orders it among the others and identifies it. The
// literal may itself look like popbox's format (see Import): what POP3
// reports is the literal, never its spelling taken as a (uid, epoch).
const (
	fieldUIDL    = ",P=" // the UIDL: 16 upper-case hex digits
	fieldLiteral = ",L=" // an imported literal UIDL, percent-encoded
	fieldSize    = ",R=" // the wire size in decimal: what RETR sends
)

// maxMessageOctets bounds sizes read back from names and the index, so
// arithmetic on them cannot overflow.
const maxMessageOctets = 1 << 50

// fileName is a Maildir file name taken apart. The key is what identifies the
// message for its whole life: the base (before ':') without popbox's fields.
// Other tools change only the info part (flags) or the directory, never the
// base (Maildir spec: "the part before the colon is the unique name").
type fileName struct {
	key       string
	info      string // after ':', e.g. "2,S"
	hasInfo   bool
	hasFields bool
	uid       uint32
	epoch     uint32
	size      int64
	lit       string // imported literal UIDL, or ""
}

// parseFileName never fails: a name without popbox's fields (or with
// malformed ones) is a foreign name whose whole base is the key.
func parseFileName(name string) fileName {
	base, info, hasInfo := strings.Cut(name, ":")
	fn := fileName{key: base, info: info, hasInfo: hasInfo}
	i := strings.LastIndex(base, fieldSize)
	if i < 0 {
		return fn
	}
	size, ok := parseDecimal(base[i+len(fieldSize):], maxMessageOctets)
	if !ok {
		return fn
	}
	rest := base[:i]
	// The literal's encoding has no ',', so the last ",L=" is the field if
	// there is one; anything that does not decode is left in the key.
	var lit string
	if j := strings.LastIndex(rest, fieldLiteral); j >= 0 {
		if l, ok := decodeNameLiteral(rest[j+len(fieldLiteral):]); ok {
			lit, rest = l, rest[:j]
		}
	}
	const tail = len(fieldUIDL) + 16
	if len(rest) <= tail || rest[len(rest)-tail:len(rest)-16] != fieldUIDL {
		return fn
	}
	uid, epoch, ok := parseUIDL(rest[len(rest)-16:])
	if !ok {
		return fn
	}
	fn.key = rest[:len(rest)-tail]
	fn.hasFields = true
	fn.uid, fn.epoch, fn.size, fn.lit = uid, epoch, int64(size), lit
	return fn
}

// withFields is the name a file gets once popbox has given it a UIDL: same
// key, same info, popbox's fields appended to the base.
func withFields(key string, uid, epoch uint32, size int64, lit, info string, hasInfo bool) string {
	var b strings.Builder
	b.Grow(len(key) + 48 + len(lit) + len(info))
	b.WriteString(key)
	b.WriteString(fieldUIDL)
	b.WriteString(formatUIDL(uid, epoch))
	if lit != "" {
		b.WriteString(fieldLiteral)
		b.WriteString(encodeNameLiteral(lit))
	}
	b.WriteString(fieldSize)
	b.WriteString(strconv.FormatInt(size, 10))
	if hasInfo {
		b.WriteByte(':')
		b.WriteString(info)
	}
	return b.String()
}

func formatUIDL(uid, epoch uint32) string { return store.FormatUIDL(uid, epoch) }

func parseUIDL(s string) (uid, epoch uint32, ok bool) { return store.ParseUIDL(s) }

func validUIDL(s string) bool { return store.ValidUIDL(s) }

// nameLiteralEscape: bytes a literal UIDL cannot carry verbatim in a file
// name: '/' (path), ':' (Maildir info), ',' (field separator, also for
// Dovecot and mbsync), and '%' itself.
func nameLiteralEscape(c byte) bool { return c == '/' || c == ':' || c == ',' || c == '%' }

// encodeNameLiteral percent-encodes the bytes nameLiteralEscape names, with
// upper-case hex; everything else in 0x21..0x7E stays readable.
func encodeNameLiteral(lit string) string {
	const hexdigits = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(lit) + 8)
	for i := 0; i < len(lit); i++ {
		c := lit[i]
		if nameLiteralEscape(c) {
			b.WriteByte('%')
			b.WriteByte(hexdigits[c>>4])
			b.WriteByte(hexdigits[c&15])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// decodeNameLiteral is the strict inverse of encodeNameLiteral: only the
// canonical encoding of a literal UIDL is accepted.
func decodeNameLiteral(s string) (string, bool) {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '%':
			if i+2 >= len(s) {
				return "", false
			}
			v, ok := unhexUpper(s[i+1], s[i+2])
			if !ok || !nameLiteralEscape(v) {
				return "", false
			}
			b = append(b, v)
			i += 2
		case nameLiteralEscape(c) || c < 0x21 || c > 0x7e:
			return "", false
		default:
			b = append(b, c)
		}
	}
	if !validUIDL(string(b)) {
		return "", false
	}
	return string(b), true
}

// keyTime is the delivery time a Maildir unique name starts with: the
// spec's "<seconds>." prefix, which popbox and most MDAs write.
func keyTime(key string) (time.Time, bool) {
	secs, _, found := strings.Cut(key, ".")
	if !found {
		return time.Time{}, false
	}
	v, ok := parseDecimal(secs, 1<<40)
	if !ok {
		return time.Time{}, false
	}
	return time.Unix(int64(v), 0), true
}

// parseDecimal accepts only canonical decimal (no sign, no leading zeros)
// not above max, so each value has exactly one spelling.
func parseDecimal(s string, max uint64) (uint64, bool) {
	if s == "" || len(s) > 20 || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil || v > max {
		return 0, false
	}
	return v, true
}

// uniqueBase makes a Maildir unique name as the spec
// (https://cr.yp.to/proto/maildir.html) describes: seconds, then
// M<microseconds>P<pid>Q<per-process counter>R<random>, then the host name.
func uniqueBase(now time.Time, pid int, seq uint64, host string) (string, error) {
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return "", fmt.Errorf("maildir: random: %w", err)
	}
	return fmt.Sprintf("%d.M%dP%dQ%dR%s.%s", now.Unix(), now.Nanosecond()/1000, pid, seq,
		hex.EncodeToString(rnd[:]), host), nil
}

// sanitizeHost makes a host name safe inside a Maildir base: the spec
// replaces '/' by \057 and ':' by \072; ',' (\054) is escaped too because
// popbox and Dovecot read ",X=" fields from the base.
func sanitizeHost(h string) string {
	var b strings.Builder
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case c == '/' || c == ':' || c == ',' || c == '\\' || c <= 0x20 || c >= 0x7f:
			fmt.Fprintf(&b, `\%03o`, c)
		default:
			b.WriteByte(c)
		}
	}
	if b.Len() == 0 {
		return "localhost"
	}
	return b.String()
}
