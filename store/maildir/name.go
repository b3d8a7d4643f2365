package maildir

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Fields popbox adds to the base of a file name (before the ":2," info).
// Not Dovecot's ,W= (its "virtual size" adds no final CRLF, so it would be
// off by 2 for a message without a final newline and mislead Dovecot) and
// not ,U= (mbsync keeps its own decimal IMAP UID there).
const (
	fieldUIDL = ",P=" // the UIDL: 16 upper-case hex digits
	fieldSize = ",R=" // the wire size in decimal: what RETR sends
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
	fn.uid, fn.epoch, fn.size = uid, epoch, int64(size)
	return fn
}

// withFields is the name a file gets once popbox has given it a UIDL: same
// key, same info, popbox's fields appended to the base.
func withFields(key string, uid, epoch uint32, size int64, info string, hasInfo bool) string {
	var b strings.Builder
	b.Grow(len(key) + 48 + len(info))
	b.WriteString(key)
	b.WriteString(fieldUIDL)
	b.WriteString(formatUIDL(uid, epoch))
	b.WriteString(fieldSize)
	b.WriteString(strconv.FormatInt(size, 10))
	if hasInfo {
		b.WriteByte(':')
		b.WriteString(info)
	}
	return b.String()
}

// formatUIDL is Dovecot's POP3 UIDL format %08X%08X of (uid, uidvalidity):
// fixed width, so distinct (uid, epoch) pairs give distinct strings, and
// RFC 1939 §7 syntax (1..70 octets in 0x21..0x7E) by construction.
func formatUIDL(uid, epoch uint32) string {
	return fmt.Sprintf("%08X%08X", uid, epoch)
}

// parseUIDL is the strict inverse of formatUIDL; uid 0 is never assigned.
func parseUIDL(s string) (uid, epoch uint32, ok bool) {
	if len(s) != 16 {
		return 0, 0, false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'A' || c > 'F') {
			return 0, 0, false
		}
	}
	u, err1 := strconv.ParseUint(s[:8], 16, 32)
	e, err2 := strconv.ParseUint(s[8:], 16, 32)
	if err1 != nil || err2 != nil || u == 0 {
		return 0, 0, false
	}
	return uint32(u), uint32(e), true
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
