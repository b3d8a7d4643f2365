package dest

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// writeSplits feeds in to a fresh writer in every way the stream can be cut
// in two, plus byte by byte, and checks each gives want: the writers keep
// state across Write calls, and the cuts are where bugs live.
func writeSplits(t *testing.T, name, in, want string, run func(chunks []string) string) {
	t.Helper()
	var cuts [][]string
	for i := 0; i <= len(in); i++ {
		cuts = append(cuts, []string{in[:i], in[i:]})
	}
	var bytewise []string
	for i := range len(in) {
		bytewise = append(bytewise, in[i:i+1])
	}
	cuts = append(cuts, bytewise)
	for _, chunks := range cuts {
		if got := run(chunks); got != want {
			t.Errorf("%s: chunks %q:\n got %q\nwant %q", name, chunks, got, want)
			return
		}
	}
}

func TestLFWriter(t *testing.T) {
	tests := []struct {
		name, in, want string
		endsInNewline  bool
	}{
		{"empty", "", "", false},
		{"crlf", "a\r\nb\r\n", "a\nb\n", true},
		{"lf kept", "a\nb\n", "a\nb\n", true},
		{"no final newline", "a\r\nb", "a\nb", false},
		{"lone cr kept", "a\rb\r\n", "a\rb\n", true},
		{"final lone cr", "a\r", "a\r", false},
		{"cr cr lf", "a\r\r\n", "a\r\n", true},
		{"blank lines", "\r\n\r\n", "\n\n", true},
	}
	for _, tt := range tests {
		writeSplits(t, tt.name, tt.in, tt.want, func(chunks []string) string {
			var b bytes.Buffer
			lf := &lfWriter{w: &b}
			for _, c := range chunks {
				if n, err := lf.Write([]byte(c)); err != nil || n != len(c) {
					t.Fatalf("Write = %d, %v", n, err)
				}
			}
			if err := lf.Flush(); err != nil {
				t.Fatal(err)
			}
			if got := lf.endsInNewline(); got != tt.endsInNewline {
				t.Errorf("%s: endsInNewline = %v, want %v", tt.name, got, tt.endsInNewline)
			}
			return b.String()
		})
	}
}

// quote runs s through mboxrdWriter in the given chunks.
func quote(t testing.TB, chunks ...string) string {
	var b bytes.Buffer
	q := &mboxrdWriter{w: &b}
	for _, c := range chunks {
		if n, err := q.Write([]byte(c)); err != nil || n != len(c) {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	if err := q.Flush(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// unquoteMboxrd is the reader's side of mboxrd, written independently of
// the writer: drop one '>' from every line matching ^>+From .
func unquoteMboxrd(s string) string {
	lines := strings.SplitAfter(s, "\n")
	for i, l := range lines {
		rest := strings.TrimLeft(l, ">")
		if len(rest) < len(l) && strings.HasPrefix(rest, "From ") {
			lines[i] = l[1:]
		}
	}
	return strings.Join(lines, "")
}

func TestMboxrdQuoting(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"plain", "Subject: x\n\nhello\n", "Subject: x\n\nhello\n"},
		{"from line", "From me\n", ">From me\n"},
		{"quoted from", ">From me\n", ">>From me\n"},
		{"deep", ">>>From x\n", ">>>>From x\n"},
		{"from mid-line", "a From b\n", "a From b\n"},
		{"from without space", "From\nFrom:\nFromage\n", "From\nFrom:\nFromage\n"},
		{"gt only", ">>>\n>\n", ">>>\n>\n"},
		{"gt then text", ">> From\n", ">> From\n"},
		{"partial at end", "x\n>>Fro", "x\n>>Fro"},
		{"from at end without newline", "x\nFrom ", "x\n>From "},
		{"several", "From a\nb\n>From c\nFrom d", ">From a\nb\n>>From c\n>From d"},
		{"empty lines", "\n\nFrom \n", "\n\n>From \n"},
		{"gt gt from gt", ">F>From x\n", ">F>From x\n"},
	}
	for _, tt := range tests {
		writeSplits(t, tt.name, tt.in, tt.want, func(chunks []string) string {
			return quote(t, chunks...)
		})
		if got := unquoteMboxrd(tt.want); got != tt.in {
			t.Errorf("%s: unquote(%q) = %q, want %q", tt.name, tt.want, got, tt.in)
		}
	}
}

// A very long run of '>' is counted, not buffered.
func TestMboxrdLongPrefix(t *testing.T) {
	gt := strings.Repeat(">", 100_000)
	for _, tt := range []struct{ in, want string }{
		{gt + "From x\n", ">" + gt + "From x\n"},
		{gt + "x\n", gt + "x\n"},
	} {
		if diff := cmp.Diff(tt.want, quote(t, tt.in)); diff != "" {
			t.Errorf("quote (-want +got):\n%s", diff)
		}
	}
}

func FuzzMboxrdRoundTrip(f *testing.F) {
	for _, s := range []string{"", "From x\n", ">From y\n>>From z", "a\nFrom \n>\n>>Fro", "\n\n"} {
		f.Add(s, 3)
	}
	f.Fuzz(func(t *testing.T, s string, cut int) {
		if cut < 0 || cut > len(s) {
			cut = len(s) / 2
		}
		q := quote(t, s[:cut], s[cut:])
		if got := unquoteMboxrd(q); got != s {
			t.Fatalf("round trip of %q: quoted %q, unquoted %q", s, q, got)
		}
		// After quoting no line may start with "From ": that is what keeps
		// message boundaries unambiguous.
		if strings.HasPrefix(q, "From ") || strings.Contains(q, "\nFrom ") {
			t.Fatalf("quoted %q still has a From line", q)
		}
	})
}
