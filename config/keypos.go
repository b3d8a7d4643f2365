package config

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// Bounds on a document's structure. The toml parser's cost grows with the
// square of nesting depth and of dotted-key length (4000 nested inline
// tables take over a second), and a configuration needs neither, so Parse
// refuses documents beyond these before toml sees them.
const (
	maxNesting  = 32 // arrays and inline tables inside each other
	maxKeyParts = 32 // parts of a full key path: table, dotted key, inline tables
)

// scan maps every key a TOML document defines, in toml.Key.String form
// ("pop3.idle_timeout", `a."b.c"`), to the 1-based line of its first
// definition. Implicit parent tables (a and a.b for "a.b.c = 1") get the line
// that implies them. It stops at the first construct beyond maxNesting or
// maxKeyParts and returns an error naming its line.
//
// It exists because toml v1.6.0 keeps key positions private. It recognises
// TOML's structure (table headers, dotted and quoted keys, strings of all four
// kinds, arrays, inline tables over several lines as TOML 1.1 allows) but does
// not check it; what it cannot make sense of it steps over, one byte at a
// time. On valid TOML, and so on the valid prefix of any document (where the
// toml parser does its work before it meets an error), it sees the structure
// toml sees, which makes its bounds hold for toml too. FuzzParse checks that
// it finds every key toml reports.
func scan(doc []byte) (map[string]int, *Error) {
	s := &scanner{doc: doc, line: 1, lines: map[string]int{}}
	s.document()
	return s.lines, s.err
}

type scanner struct {
	doc   []byte
	pos   int
	line  int
	depth int
	lines map[string]int
	err   *Error // a bound was exceeded; the scan stopped
}

// fail records a bound exceeded and ends the scan.
func (s *scanner) fail(format string, args ...any) {
	if s.err == nil {
		s.err = &Error{Line: s.line, Msg: fmt.Sprintf(format, args...), Kind: ErrTooLarge}
	}
	s.pos = len(s.doc)
}

func (s *scanner) eof() bool { return s.pos >= len(s.doc) }

func (s *scanner) peek() byte {
	if s.eof() {
		return 0
	}
	return s.doc[s.pos]
}

func (s *scanner) next() {
	if s.eof() {
		return
	}
	if s.doc[s.pos] == '\n' {
		s.line++
	}
	s.pos++
}

func (s *scanner) hasPrefix(p string) bool {
	return strings.HasPrefix(string(s.doc[s.pos:min(s.pos+len(p), len(s.doc))]), p)
}

// skipSpace skips blanks within a line.
func (s *scanner) skipSpace() {
	for c := s.peek(); c == ' ' || c == '\t'; c = s.peek() {
		s.pos++
	}
}

// skipBlank skips blanks, line ends and comments.
func (s *scanner) skipBlank() {
	for !s.eof() {
		switch s.peek() {
		case ' ', '\t', '\r', '\n':
			s.next()
		case '#':
			for !s.eof() && s.peek() != '\n' {
				s.pos++
			}
		default:
			return
		}
	}
}

func (s *scanner) record(path []string) {
	if len(path) > maxKeyParts {
		s.fail("key with more than %d parts", maxKeyParts)
		return
	}
	for i := 1; i <= len(path); i++ {
		k := toml.Key(path[:i]).String()
		if _, ok := s.lines[k]; !ok {
			s.lines[k] = s.line
		}
	}
}

func join(a, b []string) []string {
	return append(a[:len(a):len(a)], b...)
}

func (s *scanner) document() {
	var table []string
	for s.err == nil {
		s.skipBlank()
		if s.eof() {
			return
		}
		start := s.pos
		if s.peek() == '[' { // [table] or [[array.of.tables]]
			s.pos++
			if s.peek() == '[' {
				s.pos++
			}
			table = s.keyPath()
			s.record(table)
			s.skipSpace()
			for s.peek() == ']' {
				s.pos++
			}
		} else if key := s.keyPath(); len(key) > 0 && s.peek() == '=' {
			s.pos++
			full := join(table, key)
			s.record(full)
			s.value(full)
		}
		if s.pos == start {
			s.next()
		}
	}
}

// keyPath reads a dotted key and the blanks after it.
func (s *scanner) keyPath() []string {
	var path []string
	for {
		s.skipSpace()
		part, ok := s.keyPart()
		if !ok {
			return path
		}
		path = append(path, part)
		if len(path) > maxKeyParts {
			s.fail("key with more than %d parts", maxKeyParts)
			return path
		}
		s.skipSpace()
		if s.peek() != '.' {
			return path
		}
		s.pos++
	}
}

func (s *scanner) keyPart() (string, bool) {
	switch c := s.peek(); {
	case c == '"':
		return s.basicString(), true
	case c == '\'':
		return s.literalString(), true
	case isBare(c):
		start := s.pos
		for isBare(s.peek()) {
			s.pos++
		}
		return string(s.doc[start:s.pos]), true
	}
	return "", false
}

func isBare(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// value steps over one value, recording the keys of inline tables in it
// (also inside arrays: toml reports a = [{b = 1}] as key a.b).
func (s *scanner) value(path []string) {
	s.skipSpace()
	switch {
	case s.hasPrefix(`"""`):
		s.multiline('"')
	case s.hasPrefix(`'''`):
		s.multiline('\'')
	case s.peek() == '"':
		s.basicString()
	case s.peek() == '\'':
		s.literalString()
	case s.peek() == '[' || s.peek() == '{':
		if s.depth >= maxNesting {
			s.fail("arrays or inline tables nested more than %d deep", maxNesting)
			return
		}
		s.depth++
		defer func() { s.depth-- }()
		if s.peek() == '[' {
			s.array(path)
		} else {
			s.inlineTable(path)
		}
	default: // number, boolean, date-time (which may contain a space)
		for !s.eof() && !strings.ContainsRune(",]}#\r\n", rune(s.peek())) {
			s.pos++
		}
	}
}

func (s *scanner) array(path []string) {
	s.pos++ // [
	for !s.eof() {
		s.skipBlank()
		if s.peek() == ']' {
			s.pos++
			return
		}
		start := s.pos
		s.value(path)
		s.skipBlank()
		if s.peek() == ',' {
			s.pos++
		}
		if s.pos == start {
			s.next()
		}
	}
}

func (s *scanner) inlineTable(path []string) {
	s.pos++ // {
	for !s.eof() {
		s.skipBlank() // TOML 1.1 allows line ends and comments here
		if s.peek() == '}' {
			s.pos++
			return
		}
		start := s.pos
		if key := s.keyPath(); len(key) > 0 && s.peek() == '=' {
			s.pos++
			full := join(path, key)
			s.record(full)
			s.value(full)
		}
		s.skipBlank()
		if s.peek() == ',' {
			s.pos++
		}
		if s.pos == start {
			s.next()
		}
	}
}

// basicString reads a one-line "..." string and returns its value.
func (s *scanner) basicString() string {
	s.pos++ // "
	var b strings.Builder
	for !s.eof() {
		c := s.peek()
		switch c {
		case '"':
			s.pos++
			return b.String()
		case '\n':
			return b.String()
		case '\\':
			s.pos++
			s.escape(&b)
			continue
		}
		b.WriteByte(c)
		s.pos++
	}
	return b.String()
}

// escape decodes the escape sequence after a backslash (TOML 1.1 adds \e
// and \xHH, which toml v1.6.0 accepts).
func (s *scanner) escape(b *strings.Builder) {
	c := s.peek()
	s.pos++
	hex := 0
	switch c {
	case 'b':
		b.WriteByte('\b')
	case 't':
		b.WriteByte('\t')
	case 'n':
		b.WriteByte('\n')
	case 'f':
		b.WriteByte('\f')
	case 'r':
		b.WriteByte('\r')
	case 'e':
		b.WriteByte(0x1b)
	case 'x':
		hex = 2
	case 'u':
		hex = 4
	case 'U':
		hex = 8
	default: // '"', '\\'
		b.WriteByte(c)
	}
	if hex > 0 {
		end := min(s.pos+hex, len(s.doc))
		r, err := strconv.ParseUint(string(s.doc[s.pos:end]), 16, 32)
		if err == nil {
			b.WriteRune(rune(r))
		}
		s.pos = end
	}
}

// literalString reads a one-line '...' string and returns its value.
func (s *scanner) literalString() string {
	s.pos++ // '
	start := s.pos
	for !s.eof() && s.peek() != '\'' && s.peek() != '\n' {
		s.pos++
	}
	v := string(s.doc[start:s.pos])
	if s.peek() == '\'' {
		s.pos++
	}
	return v
}

// multiline steps over a """...""" or ”'...”' string. The closing
// delimiter (three quotes) may be preceded by up to two quotes of the
// content, so the whole run of quotes ends the string.
func (s *scanner) multiline(q byte) {
	s.pos += 3
	for !s.eof() {
		c := s.peek()
		switch {
		case c == '\\' && q == '"':
			s.next()
			s.next()
		case c == q && s.hasPrefix(strings.Repeat(string(q), 3)):
			for s.peek() == q {
				s.pos++
			}
			return
		default:
			s.next()
		}
	}
}
