package dovecot

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
)

// MaxXUIDLLen bounds the X-UIDL value ScanXUIDL returns. Any value longer
// than RFC 1939's 70 characters is unservable anyway; this only keeps a
// hostile header from filling memory.
const MaxXUIDLLen = 1024

// ErrXUIDLTooLong: the X-UIDL value is longer than MaxXUIDLLen.
var ErrXUIDLTooLong = errors.New("dovecot: X-UIDL value too long")

// ScanXUIDL returns the value of the message's first X-UIDL header field as
// Dovecot's mail_get_first_header gives it to pop3_get_uid when
// pop3_reuse_xuidl=yes, and whether there is one. It reads only the header.
//
// The rules are those of Dovecot's message_parse_header_next (lib-mail
// message-header-parser.c) with the flags index-mail-headers.c uses
// (SKIP_INITIAL_LWSP, DROP_CR), and of index_mail_get_parsed_header: the
// header ends at the first empty line (LF or CRLF) or at the end of the
// data; a line starting with a space or tab continues the field before it;
// the field name is everything before the first ':' with trailing blanks
// removed, compared without regard to ASCII case and cut at a NUL as a C
// string is; a line without ':' is no X-UIDL field even if it reads
// "X-UIDL"; the value starts after the ':' and all blanks after it, keeps
// trailing blanks, loses the CR of a CRLF, and joins continuation lines
// with "\n" (Dovecot does not unfold); a NUL in it becomes U+FFFD
// (message_header_strdup). An empty value is a value: Dovecot then serves
// an empty UIDL.
//
// A value longer than MaxXUIDLLen returns its first MaxXUIDLLen bytes, true
// and an error wrapping ErrXUIDLTooLong. Read errors are returned wrapped.
func ScanXUIDL(r io.Reader) (value string, ok bool, err error) {
	br := bufio.NewReaderSize(r, 4096)
	var (
		val      []byte
		matching bool // in the X-UIDL field, capturing its value
		tooLong  bool
		first    = true
	)
	add := func(b []byte, cut bool) {
		if room := MaxXUIDLLen - len(val); len(b) > room {
			b, cut = b[:room], true
		}
		val = append(val, b...)
		tooLong = tooLong || cut
	}
	result := func() (string, bool, error) {
		s := string(bytes.ReplaceAll(val, []byte{0}, []byte("\uFFFD")))
		if tooLong {
			return s, true, fmt.Errorf("%w: more than %d bytes", ErrXUIDLTooLong, MaxXUIDLLen)
		}
		return s, true, nil
	}
	for {
		line, err := readLine(br, lineKeep)
		if err != nil && !errors.Is(err, io.EOF) {
			return "", false, fmt.Errorf("dovecot: reading message header: %w", err)
		}
		atEOF := err != nil
		if atEOF && line.n == 0 {
			break // nothing more
		}
		continued := !first && line.startsBlank
		first = false
		if matching {
			if !continued {
				return result()
			}
			add([]byte{'\n'}, false)
			add(line.head, line.cut())
		} else if !continued {
			if line.n == 0 && !atEOF {
				break // the empty line ending the header
			}
			if v, isXUIDL := xuidlValue(line.head); isXUIDL {
				matching = true
				add(v, line.cut())
			}
		}
		if atEOF {
			break
		}
	}
	if matching {
		return result()
	}
	return "", false, nil
}

// lineKeep is how much of a header line ScanXUIDL looks at: enough for a
// name, its ':' and blanks, and MaxXUIDLLen bytes of value.
const lineKeep = 4096 + MaxXUIDLLen

// xuidlValue reports whether a header line (not a continuation) is an X-UIDL
// field with a ':', and returns its value with the blanks after the ':'
// removed.
func xuidlValue(line []byte) ([]byte, bool) {
	colon := bytes.IndexByte(line, ':')
	if colon < 0 {
		return nil, false
	}
	name := bytes.TrimRight(line[:colon], " \t")
	if nul := bytes.IndexByte(name, 0); nul >= 0 {
		name = name[:nul]
	}
	if !strings.EqualFold(string(name), "X-UIDL") {
		return nil, false
	}
	return bytes.TrimLeft(line[colon+1:], " \t"), true
}

// headerLine is one physical line without its line end.
type headerLine struct {
	head        []byte // the first bytes, at most the keep given to readLine
	n           int    // the whole length
	startsBlank bool   // begins with a space or tab
}

// cut reports whether head is shorter than the line.
func (l headerLine) cut() bool { return l.n > len(l.head) }

// readLine reads one line up to LF, keeping its first keep bytes and
// counting the rest, and drops one CR before the LF. At the end of the data
// it returns what there is with io.EOF; a CR there stays part of the line,
// as in Dovecot's "header ended unexpectedly" case.
func readLine(br *bufio.Reader, keep int) (headerLine, error) {
	var (
		l    headerLine
		last byte
	)
	for {
		chunk, err := br.ReadSlice('\n')
		lf := err == nil
		if lf {
			chunk = chunk[:len(chunk)-1]
		}
		if len(chunk) > 0 {
			if l.n == 0 {
				l.startsBlank = chunk[0] == ' ' || chunk[0] == '\t'
			}
			last = chunk[len(chunk)-1]
		}
		if room := keep - len(l.head); room > 0 {
			l.head = append(l.head, chunk[:min(room, len(chunk))]...)
		}
		l.n += len(chunk)
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if lf && l.n > 0 && last == '\r' {
			l.n--
			if len(l.head) > l.n {
				l.head = l.head[:l.n]
			}
		}
		return l, err
	}
}
