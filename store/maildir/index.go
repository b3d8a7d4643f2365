package maildir

import (
	"bytes"
	"fmt"
	"hash/crc32"
	"strconv"
	"strings"

	"github.com/popbox/popbox/store"
)

// Index file format (popbox-index), one record per line, every line
// ending in a space, the CRC-32C of everything before that space as 8
// lower-case hex digits, and LF:
//
//	popbox-index 1 <epoch> <next> <crc>      first line: the header
//	m <key> <uidl> <size> <crc>              one per message
//	m <key> <uidl> <size> <literal> <crc>    one imported with a literal UIDL
//
// epoch and next are the counter (see counterState) as of the last full
// rewrite; records appended since carry their own uid. <key> is the file
// name key with bytes outside 0x21..0x7E and '%' written as %XX, so a
// record is always one line of printable ASCII. <uidl> is always popbox's
// own (uid, epoch); <literal>, escaped the same way (only '%' can need it),
// is the UIDL the message had on another server (Import) and is what POP3
// reports, even when it looks like popbox's own format. The fifth field
// came with Import and is the only change to the version-1 format, so an
// index without imported literals is still exactly what older popbox
// versions wrote and read.
const (
	indexMagic   = "popbox-index"
	indexVersion = "1"
	// maxIndexLine bounds one line: a key is at most 255 bytes, 765
	// escaped, plus the other fields.
	maxIndexLine = 1024
	// maxIndexBytes bounds the whole file (about 10 million messages); a
	// bigger file is treated as damaged rather than read.
	maxIndexBytes = 1 << 30
)

// record is one message in the index.
type record struct {
	key   string
	uid   uint32
	epoch uint32
	size  int64
	lit   string // the literal UIDL of an imported message, or ""
}

// uidl is the UIDL POP3 reports for the record.
func (r record) uidl() string {
	if r.lit != "" {
		return r.lit
	}
	return formatUIDL(r.uid, r.epoch)
}

// indexData is a parsed index. Parsing salvages: every line whose checksum
// and syntax are right is kept, anything else only sets damaged, and the
// caller rebuilds what is missing from a directory scan.
type indexData struct {
	header  bool // a valid header was the first line
	epoch   uint32
	next    uint64
	recs    []record
	damaged bool
}

func crc32c(b []byte) uint32 {
	return crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli))
}

// appendLine appends payload, its checksum and LF.
func appendLine(dst, payload []byte) []byte {
	dst = append(dst, payload...)
	dst = append(dst, ' ')
	dst = fmt.Appendf(dst, "%08x", crc32c(payload))
	return append(dst, '\n')
}

func appendHeader(dst []byte, epoch uint32, next uint64) []byte {
	p := fmt.Appendf(nil, "%s %s %d %d", indexMagic, indexVersion, epoch, next)
	return appendLine(dst, p)
}

func appendRecord(dst []byte, r record) []byte {
	p := make([]byte, 0, 64+len(r.key))
	p = append(p, "m "...)
	p = appendEscapedKey(p, r.key)
	p = append(p, ' ')
	p = append(p, formatUIDL(r.uid, r.epoch)...)
	p = append(p, ' ')
	p = strconv.AppendInt(p, r.size, 10)
	if r.lit != "" {
		p = append(p, ' ')
		p = appendEscapedKey(p, r.lit)
	}
	return appendLine(dst, p)
}

// parseIndex never fails and never panics on any input (FuzzParseIndex).
func parseIndex(data []byte) indexData {
	var d indexData
	if len(data) == 0 {
		d.damaged = true
		return d
	}
	if len(data) > maxIndexBytes {
		d.damaged = true
		return d
	}
	d.recs = make([]record, 0, bytes.Count(data, []byte{'\n'}))
	for n := 0; len(data) > 0; n++ {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			// A torn last line: a crash during an append.
			d.damaged = true
			break
		}
		var line []byte
		line, data = data[:i], data[i+1:]
		payload, ok := checkLine(line)
		if !ok {
			d.damaged = true
			continue
		}
		if n == 0 {
			if epoch, next, ok := parseHeader(payload); ok {
				d.header, d.epoch, d.next = true, epoch, next
				continue
			}
		}
		r, ok := parseRecord(payload)
		if !ok {
			d.damaged = true
			continue
		}
		d.recs = append(d.recs, r)
	}
	if !d.header {
		d.damaged = true
	}
	return d
}

// checkLine verifies the length bound and checksum and returns the payload.
func checkLine(line []byte) ([]byte, bool) {
	if len(line) > maxIndexLine || len(line) < 10 || line[len(line)-9] != ' ' {
		return nil, false
	}
	payload, sum := line[:len(line)-9], line[len(line)-8:]
	want, ok := parseHex32(sum)
	if !ok || crc32c(payload) != want {
		return nil, false
	}
	return payload, true
}

func parseHex32(b []byte) (uint32, bool) {
	var v uint32
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			v = v<<4 | uint32(c-'0')
		case c >= 'a' && c <= 'f':
			v = v<<4 | uint32(c-'a'+10)
		default:
			return 0, false
		}
	}
	return v, len(b) == 8
}

func parseHeader(p []byte) (epoch uint32, next uint64, ok bool) {
	f := strings.Split(string(p), " ")
	if len(f) != 4 || f[0] != indexMagic || f[1] != indexVersion {
		return 0, 0, false
	}
	e, ok1 := parseDecimal(f[2], 1<<32-1)
	nx, ok2 := parseDecimal(f[3], 1<<32)
	if !ok1 || !ok2 || nx == 0 {
		return 0, 0, false
	}
	return uint32(e), nx, true
}

func parseRecord(p []byte) (record, bool) {
	f := strings.Split(string(p), " ")
	if len(f) != 4 && len(f) != 5 || f[0] != "m" {
		return record{}, false
	}
	var lit string
	if len(f) == 5 {
		var ok bool
		if lit, ok = unescape(f[4]); !ok || !validUIDL(lit) {
			return record{}, false
		}
	}
	key, ok := unescapeKey(f[1])
	if !ok {
		return record{}, false
	}
	uid, epoch, ok := parseUIDL(f[2])
	if !ok {
		return record{}, false
	}
	size, ok := parseDecimal(f[3], maxMessageOctets)
	if !ok {
		return record{}, false
	}
	return record{key: key, uid: uid, epoch: epoch, size: int64(size), lit: lit}, true
}

func keyByteNeedsEscape(c byte) bool { return c <= 0x20 || c >= 0x7f || c == '%' }

func appendEscapedKey(dst []byte, key string) []byte {
	const hexdigits = "0123456789ABCDEF"
	for i := 0; i < len(key); i++ {
		c := key[i]
		if keyByteNeedsEscape(c) {
			dst = append(dst, '%', hexdigits[c>>4], hexdigits[c&15])
		} else {
			dst = append(dst, c)
		}
	}
	return dst
}

// unescapeKey accepts only the canonical escaping appendEscapedKey
// produces, and only keys that can be a Maildir base (1..255 bytes, no '/',
// NUL or ':').
func unescapeKey(s string) (string, bool) {
	b, ok := unescape(s)
	if !ok || len(b) == 0 || len(b) > 255 || strings.ContainsAny(b, "/:\x00") {
		return "", false
	}
	return b, true
}

// unescape is the strict inverse of appendEscapedKey.
func unescape(s string) (string, bool) {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '%' {
			if i+2 >= len(s) {
				return "", false
			}
			v, ok := unhexUpper(s[i+1], s[i+2])
			if !ok || !keyByteNeedsEscape(v) {
				return "", false
			}
			b = append(b, v)
			i += 2
			continue
		}
		if keyByteNeedsEscape(c) {
			return "", false
		}
		b = append(b, c)
	}
	return string(b), true
}

func unhexUpper(a, b byte) (byte, bool) {
	h := func(c byte) (byte, bool) {
		switch {
		case c >= '0' && c <= '9':
			return c - '0', true
		case c >= 'A' && c <= 'F':
			return c - 'A' + 10, true
		}
		return 0, false
	}
	x, ok1 := h(a)
	y, ok2 := h(b)
	return x<<4 | y, ok1 && ok2
}

// Counter file format (popbox-uidnext): one line of fixed length, so it can
// be overwritten in place; a torn write fails the checksum and the counter
// is then recovered (see recoverCounter).
//
//	popbox-uidnext 2 <epoch> <next> <floor> <messages> <octets> <crc>
//
// with every number zero-padded to a fixed width (10 digits, octets 20).
// Version 1, written before quotas, has only <epoch> and <next>; it is read
// as a counter whose accounting is unknown, which the next writer computes
// from the index (once) and then keeps up to date. Older popbox versions
// reject version 2 as damaged and recover the counter from the index
// header and the file names, which is safe.
const counterMagic = "popbox-uidnext"

// counterState is the UIDL allocator of one mailbox, the next uid to hand
// out within epoch (next may reach 1<<32, meaning the epoch is used up),
// and, because this file is rewritten and fsynced at every delivery
// anyway, the mailbox's running totals, which makes a quota check O(1).
type counterState struct {
	epoch uint32
	next  uint64
	// The fields below are valid only when acct is set (version 2).
	//
	// floor is the lowest epoch popbox itself has handed out a uid in:
	// Import may use a uid of an older epoch without fear of repeating one
	// of popbox's (see Import).
	floor uint32
	msgs  int64 // messages in new/ and cur/
	bytes int64 // sum of their wire sizes
	acct  bool
}

func (c counterState) usage() store.Usage { return store.Usage{Bytes: c.bytes, Messages: c.msgs} }

func formatCounter(c counterState) []byte {
	p := fmt.Appendf(nil, "%s 2 %010d %010d %010d %010d %020d", counterMagic, c.epoch, c.next, c.floor, c.msgs, c.bytes)
	return appendLine(nil, p)
}

func parseCounter(b []byte) (counterState, bool) {
	if len(b) == 0 || b[len(b)-1] != '\n' || bytes.Count(b, []byte{'\n'}) != 1 {
		return counterState{}, false
	}
	payload, ok := checkLine(b[:len(b)-1])
	if !ok {
		return counterState{}, false
	}
	f := strings.Split(string(payload), " ")
	if len(f) < 4 || f[0] != counterMagic || len(f[2]) != 10 || len(f[3]) != 10 {
		return counterState{}, false
	}
	// Fixed width means leading zeros; strip them for the canonical parse.
	e, ok1 := parseDecimal(trimZeros(f[2]), 1<<32-1)
	n, ok2 := parseDecimal(trimZeros(f[3]), 1<<32)
	if !ok1 || !ok2 || n == 0 {
		return counterState{}, false
	}
	c := counterState{epoch: uint32(e), next: n}
	switch {
	case f[1] == "1" && len(f) == 4:
		return c, true
	case f[1] == "2" && len(f) == 7 && len(f[4]) == 10 && len(f[5]) == 10 && len(f[6]) == 20:
		fl, ok1 := parseDecimal(trimZeros(f[4]), uint64(c.epoch))
		m, ok2 := parseDecimal(trimZeros(f[5]), 1e10-1)
		o, ok3 := parseDecimal(trimZeros(f[6]), 1<<62)
		if !ok1 || !ok2 || !ok3 {
			return counterState{}, false
		}
		c.floor, c.msgs, c.bytes, c.acct = uint32(fl), int64(m), int64(o), true
		return c, true
	}
	return counterState{}, false
}

func trimZeros(s string) string {
	t := strings.TrimLeft(s, "0")
	if t == "" {
		return "0"
	}
	return t
}
