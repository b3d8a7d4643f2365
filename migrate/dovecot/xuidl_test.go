package dovecot

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestScanXUIDL(t *testing.T) {
	long := strings.Repeat("a", MaxXUIDLLen+10)
	tests := []struct {
		name, msg string
		want      string
		found     bool
		tooLong   bool
	}{
		// The cases checked against Dovecot 2.3.19 in dovecot_test.go.
		{"plain", "X-UIDL: abc\nSubject: x\n\nbody\n", "abc", true, false},
		{"trailing blanks kept", "X-UIDL: abc  \n\n", "abc  ", true, false},
		{"tab and lower case", "x-uidl:\tTabbed\n\n", "Tabbed", true, false},
		{"blank before colon", "X-UIDL : spaced\n\n", "spaced", true, false},
		{"folded, not unfolded", "X-UIDL: fold\n more\n\tand more\nSubject: s\n\n", "fold\n more\n\tand more", true, false},
		{"in the body", "Subject: b\n\nX-UIDL: inbody\n", "", false, false},
		{"empty value wins", "X-UIDL:\nX-UIDL: second\n\n", "", true, false},
		{"CRLF", "X-UIDL: crlf\r\nSubject: c\r\n\r\nbody\r\n", "crlf", true, false},
		{"line without colon", "X-UIDL\nX-UIDL: after\n\n", "after", true, false},
		{"all blanks", "X-UIDL:   \n\n", "", true, false},
		{"first of several", "A: 1\nX-UIDL: one\nX-UIDL: two\n\n", "one", true, false},
		{"no newline at all", "X-UIDL: end", "end", true, false},
		// Further corners of message_parse_header_next.
		{"empty message", "", "", false, false},
		{"header ends at once", "\nX-UIDL: body\n", "", false, false},
		{"CRLF header end", "A: b\r\n\r\nX-UIDL: body\n", "", false, false},
		{"continuation of another field", "Subject: x\n X-UIDL: not a field\n\n", "", false, false},
		{"leading blank on the first line", " X-UIDL: indented\n\n", "", false, false},
		{"blank line is a continuation", "X-UIDL: a\n \nB: c\n\n", "a\n ", true, false},
		{"all blanks then continuation", "X-UIDL:  \n cont\n\n", "\n cont", true, false},
		{"CR inside kept", "X-UIDL: a\rb\n\n", "a\rb", true, false},
		{"CR at the very end kept", "X-UIDL: a\r", "a\r", true, false},
		{"two CRs", "X-UIDL: a\r\r\n\n", "a\r", true, false},
		{"NUL in the name", "X-UIDL\x00junk: nul-name\n\n", "nul-name", true, false},
		{"NUL in the value", "X-UIDL: a\x00b\n\n", "a\uFFFDb", true, false},
		{"colon in the value", "X-UIDL: a:b\n\n", "a:b", true, false},
		{"other name", "X-UIDLS: no\nX-UID: no\n\n", "", false, false},
		{"continued at the end of data", "X-UIDL: a\n b", "a\n b", true, false},
		{"long value", "X-UIDL: " + long + "\n\n", long[:MaxXUIDLLen], true, true},
		{"long continuation", "X-UIDL: a\n " + long + "\n\n", ("a\n " + long)[:MaxXUIDLLen], true, true},
		{"long other field first", "Subject: " + strings.Repeat("s", 20000) + "\nX-UIDL: after-long\n\n", "after-long", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, r := range []io.Reader{strings.NewReader(tt.msg), iotest.OneByteReader(strings.NewReader(tt.msg))} {
				got, found, err := ScanXUIDL(r)
				if got != tt.want || found != tt.found {
					t.Errorf("ScanXUIDL = %q, %v; want %q, %v", got, found, tt.want, tt.found)
				}
				if tooLong := errors.Is(err, ErrXUIDLTooLong); tooLong != tt.tooLong || (err != nil && !tooLong) {
					t.Errorf("error %v, want too long: %v", err, tt.tooLong)
				}
			}
		})
	}
}

func TestScanXUIDLReadError(t *testing.T) {
	boom := errors.New("boom")
	_, _, err := ScanXUIDL(io.MultiReader(strings.NewReader("Subject: x\n"), iotest.ErrReader(boom)))
	if !errors.Is(err, boom) {
		t.Errorf("read error: %v", err)
	}
}

// refXUIDL is a plain, whole-message model of Dovecot's header parsing for
// the X-UIDL lookup, for differential fuzzing of the streaming ScanXUIDL.
// It returns the raw value (before the NUL replacement and the cap).
func refXUIDL(msg []byte) ([]byte, bool) {
	type line struct {
		text []byte
	}
	var lines []line
	for len(msg) > 0 {
		i := bytes.IndexByte(msg, '\n')
		if i < 0 {
			lines = append(lines, line{msg}) // no LF: a CR stays
			break
		}
		l := msg[:i]
		if len(l) > 0 && l[len(l)-1] == '\r' {
			l = l[:len(l)-1]
		}
		lines = append(lines, line{l})
		msg = msg[i+1:]
	}
	var value []byte
	matching := false
	for i, l := range lines {
		continued := i > 0 && len(l.text) > 0 && (l.text[0] == ' ' || l.text[0] == '\t')
		if matching {
			if !continued {
				return value, true
			}
			value = append(append(value, '\n'), l.text...)
			continue
		}
		if continued {
			continue
		}
		if len(l.text) == 0 {
			return nil, false
		}
		name, rest, ok := bytes.Cut(l.text, []byte(":"))
		if !ok {
			continue
		}
		name = bytes.TrimRight(name, " \t")
		if n, _, cut := bytes.Cut(name, []byte{0}); cut {
			name = n
		}
		if strings.EqualFold(string(name), "x-uidl") {
			matching = true
			value = append([]byte{}, bytes.TrimLeft(rest, " \t")...)
		}
	}
	return value, matching
}

// FuzzScanXUIDL checks ScanXUIDL against refXUIDL on any message (with
// lines up to 4000 bytes, beyond which neither models Dovecot's buffer
// splitting), read whole and one byte at a time.
func FuzzScanXUIDL(f *testing.F) {
	for _, s := range []string{
		"X-UIDL: abc\nSubject: x\n\nbody\n",
		"x-uidl :\t a b \r\n c\r\n\r\n",
		"X-UIDL\nX-UIDL:\n\n",
		"A: b\n X-UIDL: c\nX-UIDL\x00: d\n",
		"X-UIDL: a\r",
		"\r\nX-UIDL: x\n",
		"X-UIDL: " + strings.Repeat("z", MaxXUIDLLen+1),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		for _, l := range bytes.Split(msg, []byte("\n")) {
			if len(l) > 4000 {
				return
			}
		}
		raw, wantFound := refXUIDL(msg)
		want := raw
		wantTooLong := len(raw) > MaxXUIDLLen
		if wantTooLong {
			want = raw[:MaxXUIDLLen]
		}
		wantStr := string(bytes.ReplaceAll(want, []byte{0}, []byte("\uFFFD")))
		for _, r := range []io.Reader{bytes.NewReader(msg), iotest.OneByteReader(bytes.NewReader(msg))} {
			got, found, err := ScanXUIDL(r)
			if got != wantStr || found != wantFound {
				t.Fatalf("ScanXUIDL = %q, %v; model says %q, %v", got, found, wantStr, wantFound)
			}
			if errors.Is(err, ErrXUIDLTooLong) != wantTooLong || (err != nil && !wantTooLong) {
				t.Fatalf("error %v, model says too long: %v", err, wantTooLong)
			}
		}
	})
}
