package interop

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// message is one test mail as handed to `popbox deliver`.
type message struct {
	name string // what it exercises; shown in failures and in the manifest
	data []byte
}

// seqHeader numbers every message so that a fetched copy can be matched to
// its original without relying on the order the server lists them in.
const seqHeader = "X-Interop-Seq"

// eol says how a message's lines end.
type eol int

const (
	lf    eol = iota
	crlf      // every line
	mixed     // CRLF and LF alternate, as in mail assembled from several sources
)

// render joins lines with the given line ends. Without finalNewline the last
// line has none, which the server must make up for on the wire.
func render(lines []string, style eol, finalNewline bool) []byte {
	var b bytes.Buffer
	for i, l := range lines {
		b.WriteString(l)
		if i == len(lines)-1 && !finalNewline {
			break
		}
		if style == crlf || (style == mixed && i%2 == 0) {
			b.WriteString("\r\n")
		} else {
			b.WriteString("\n")
		}
	}
	return b.Bytes()
}

// wireForm is what a client must get from RETR once it has removed the
// byte-stuffing: every bare LF turned into CRLF and a final CRLF added when
// the message lacks one. LIST must report exactly its length.
func wireForm(data []byte) []byte {
	var b bytes.Buffer
	b.Grow(len(data) + len(data)/16 + 2)
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			b.Write(data)
			b.WriteString("\r\n")
			break
		}
		b.Write(bytes.TrimSuffix(data[:i], []byte("\r")))
		b.WriteString("\r\n")
		data = data[i+1:]
	}
	return b.Bytes()
}

// normalised is maildigest.py's normal form, in which the client scripts
// compare messages: LF line ends and a final LF.
func normalised(data []byte) []byte {
	n := bytes.ReplaceAll(data, []byte("\r\n"), []byte("\n"))
	if !bytes.HasSuffix(n, []byte("\n")) {
		n = append(n, '\n')
	}
	return n
}

// writeManifest writes msgs in the manifest format of maildigest.py. The
// wire_octets column is popbox's exact LIST size, which poplib_fetch.py
// compares with what LIST reports. stored, if not nil, turns a message into
// the form the client is known to store it in.
func writeManifest(path string, msgs []message, stored func([]byte) []byte) error {
	var b strings.Builder
	b.WriteString("# pop3-harness manifest v1: sha256(normalised)\tnorm_bytes\twire_octets\tfile_bytes\tname\n")
	for i, m := range msgs {
		n := normalised(m.data)
		if stored != nil {
			n = normalised(stored(m.data))
		}
		sum := sha256.Sum256(n)
		fmt.Fprintf(&b, "%s\t%d\t%d\t%d\t%d-%s\n", hex.EncodeToString(sum[:]), len(n),
			len(wireForm(m.data)), len(m.data), i, m.name)
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// withBodySeparator adds the empty line that ends a header to a message
// that has none. fetchmail and getmail6 store a message that is all header
// that way; RFC 5322 makes the two forms the same message with an empty body.
func withBodySeparator(data []byte) []byte {
	if bytes.Contains(normalised(data), []byte("\n\n")) {
		return data
	}
	return append(normalised(data), '\n')
}

// seqOf returns the X-Interop-Seq number in a message's header, or -1.
func seqOf(data []byte) int {
	for line := range bytes.Lines(data) {
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break // end of the header
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if ok && strings.EqualFold(string(name), seqHeader) {
			n, err := strconv.Atoi(string(bytes.TrimSpace(value)))
			if err == nil {
				return n
			}
		}
	}
	return -1
}

// wordList is what the generated prose is made of.
const wordList = `the of and to in is that for it as was with be by on not this are
	or from at which but have an they you were her she there been one all we
	their has would when if so no will more out up about into them can only
	other new some could time these two may then do first any my now such like
	our over even most made after also did many before must through back years
	where much your way well down should because each just those people server
	mailbox message octet retrieve protocol session maildrop transaction`

// header returns the header lines of message seq. Every line is at most 78
// octets: getmail6 re-folds longer ones, which would break the comparison.
func header(seq int, subject string) []string {
	t := time.Unix(1700000000+int64(seq)*37, 0).UTC()
	senders := [...]string{"Alice Example", "Bob Tester", "Carol Nguyen", "Dmitri Ivanov",
		"Frank O'Neil", "Grace Hopper", "Heidi Schmidt", "Judy Chen"}
	from := senders[seq%len(senders)]
	addr := strings.ToLower(strings.Fields(from)[0]) + "@example.org"
	mx := seq%9 + 1
	return []string{
		"Return-Path: <" + addr + ">",
		fmt.Sprintf("Received: from mx%d.example.org (mx%d.example.org [192.0.2.%d])", mx, mx, mx),
		fmt.Sprintf("\tby mail.example.test (Postfix) with ESMTPS id %08X", seq*7919+4099),
		"\tfor <test@example.test>; " + t.Format(time.RFC1123Z),
		"Date: " + t.Add(-5*time.Second).Format(time.RFC1123Z),
		fmt.Sprintf("From: %q <%s>", from, addr),
		"To: Interop Test <test@example.test>",
		"Subject: " + subject,
		fmt.Sprintf("Message-ID: <%d.%d@interop.example.org>", t.Unix(), seq),
		"MIME-Version: 1.0",
		"Content-Type: text/plain; charset=utf-8",
		"Content-Transfer-Encoding: 8bit",
		fmt.Sprintf("%s: %d", seqHeader, seq),
	}
}

// textLine returns prose of about width octets.
func textLine(rng *rand.Rand, words []string, width int) string {
	var b strings.Builder
	for b.Len() < width {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(words[rng.IntN(len(words))])
	}
	return b.String()
}

// testMessages returns the test mail, identical on every call. Message i
// carries X-Interop-Seq i.
func testMessages() []message {
	rng := rand.New(rand.NewPCG(1939, 6856))
	words := strings.Fields(wordList)
	utf8Lines := []string{
		"Grüße aus Köln – naïve café façade, déjà vu.",
		"Ελληνικά κείμενα και русский текст для проверки.",
		"日本語のテキストも含まれています。絵文字 🙂 も。",
	}
	// the lines a server must byte-stuff, and a neighbour that it must not
	dotLines := []string{".", "..", "...", ". leading dot then space", ".signature follows",
		"..double dot line", ".\t(tab after dot)", "a line ending in a dot."}
	var msgs []message
	addSubject := func(subject, name string, body []string, style eol, finalNewline bool) {
		seq := len(msgs)
		if subject == "" {
			subject = fmt.Sprintf("Interop #%d: %s", seq, name)
		}
		lines := header(seq, subject)
		if body != nil {
			lines = append(append(lines, ""), body...)
		}
		msgs = append(msgs, message{name, render(lines, style, finalNewline)})
	}
	add := func(name string, body []string, style eol, finalNewline bool) {
		addSubject("", name, body, style, finalNewline)
	}
	prose := func(n int) []string {
		var l []string
		for range n {
			l = append(l, textLine(rng, words, 20+rng.IntN(57)))
		}
		return l
	}

	add("dot-lines", append(append([]string{"Dots:"}, dotLines...), prose(3)...), lf, true)
	add("dot-lines-crlf", append(prose(2), dotLines...), crlf, true)
	add("lone-dot-first-and-last", []string{".", "between two lone dots", "."}, lf, true)
	add("lone-dot-last-no-final-newline", []string{".", "the last line is a dot without LF", "."}, lf, false)
	add("bare-lf", prose(12), lf, true)
	add("crlf", prose(12), crlf, true)
	add("mixed-line-ends", append(prose(6), dotLines...), mixed, true)
	add("no-final-newline-lf", prose(5), lf, false)
	add("no-final-newline-crlf", prose(5), crlf, false)
	add("utf8-8bit", append(append([]string{}, utf8Lines...), prose(2)...), lf, true)
	add("line-5000-octets", []string{"before", strings.Repeat("0123456789", 500), "after"}, lf, true)
	add("headers-only", nil, lf, true)
	add("empty-body", []string{}, lf, true)
	add("whitespace-and-from", []string{
		"From the desk of the tester: mbox writers would quote this line.",
		"trailing spaces   ", "\tindented with a tab", "   ", "", "", "text after blank lines",
	}, lf, true)
	add("trailing-blank-lines", append(prose(2), "", "", ""), lf, true)

	// A 5 MiB message, with dot lines scattered so that some land on the
	// boundaries of whatever buffers the server writes through.
	big := make([]string, 0, 80000)
	size := 0
	for i := 0; size < 5<<20; i++ {
		var l string
		if i%997 == 0 {
			l = dotLines[i%len(dotLines)]
		} else {
			l = fmt.Sprintf("%06d %s", i, textLine(rng, words, 50+i%20))
		}
		big = append(big, l)
		size += len(l) + 1
	}
	add("big-5mib", big, lf, true)

	// Ordinary mail of varied sizes and forms.
	for i := range 40 {
		style := lf
		switch {
		case i%5 == 3:
			style = crlf
		case i%7 == 2:
			style = mixed
		}
		var body []string
		if i%4 == 0 {
			body = append(body, utf8Lines[i%len(utf8Lines)])
		}
		if i%3 == 0 {
			body = append(body, dotLines[i%len(dotLines)], dotLines[(i+3)%len(dotLines)])
		}
		body = append(body, prose((i+1)*(i+1))...) // one line to about 80 KB
		if i%6 == 1 {
			body = append(body, "", "-- ", "Grace Hopper")
		}
		if i%8 == 5 {
			body = append(body, attachment(rng, 200+i*50)...)
		}
		subject := ""
		if i%2 == 1 {
			// RFC 2047, as non-ASCII subjects travel in real mail
			subject = "=?UTF-8?B?" + base64.StdEncoding.EncodeToString(
				fmt.Appendf(nil, "Grüße – Nachricht %d", i)) + "?="
		}
		addSubject(subject, fmt.Sprintf("ordinary-%02d", i), body, style, i%13 != 12)
	}
	return msgs
}

// attachment returns base64 lines of n random octets, as a MIME part would carry.
func attachment(rng *rand.Rand, n int) []string {
	raw := make([]byte, n)
	for i := range raw {
		raw[i] = byte(rng.Uint32())
	}
	enc := base64.StdEncoding.EncodeToString(raw)
	lines := []string{"", "Attached data:"}
	for len(enc) > 76 {
		lines = append(lines, enc[:76])
		enc = enc[76:]
	}
	return append(lines, enc)
}

// TestMessages checks the generator itself, since every other test trusts it.
func TestMessages(t *testing.T) {
	msgs := testMessages()
	if again := testMessages(); len(again) != len(msgs) {
		t.Fatalf("testMessages is not deterministic: %d then %d messages", len(msgs), len(again))
	} else {
		for i := range msgs {
			if !bytes.Equal(msgs[i].data, again[i].data) {
				t.Errorf("testMessages is not deterministic: message %d (%s) differs", i, msgs[i].name)
			}
		}
	}
	var big, long, noFinal, headerOnly bool
	for i, m := range msgs {
		if got := seqOf(m.data); got != i {
			t.Errorf("message %d (%s): %s is %d", i, m.name, seqHeader, got)
		}
		head, _, _ := bytes.Cut(normalised(m.data), []byte("\n\n"))
		for line := range bytes.Lines(head) {
			if n := len(bytes.TrimRight(line, "\r\n")); n > 78 {
				t.Errorf("message %d (%s): header line of %d octets: %q", i, m.name, n, line)
			}
		}
		big = big || len(m.data) >= 5<<20
		headerOnly = headerOnly || !bytes.Equal(withBodySeparator(m.data), m.data)
		noFinal = noFinal || !bytes.HasSuffix(m.data, []byte("\n"))
		for line := range bytes.Lines(m.data) {
			long = long || len(line) > 4000
		}
	}
	if !big || !long || !noFinal || !headerOnly {
		t.Errorf("missing edge cases: 5 MiB message %v, long line %v, no final newline %v, header only %v",
			big, long, noFinal, headerOnly)
	}
}

func TestWireForm(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"a\nb\n", "a\r\nb\r\n"},
		{"a\r\nb\r\n", "a\r\nb\r\n"},
		{"a\r\nb\nc", "a\r\nb\r\nc\r\n"},
		{"a\n.", "a\r\n.\r\n"},
		{"a\n\n\n", "a\r\n\r\n\r\n"},
	} {
		if got := string(wireForm([]byte(tc.in))); got != tc.want {
			t.Errorf("wireForm(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
