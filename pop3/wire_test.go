package pop3

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// wireForm is an independent model of the line-end conversion described in
// the package doc: every LF not preceded by CR becomes CRLF, and non-empty
// data that does not end in LF gets a final CRLF. No stuffing, no terminator.
func wireForm(in []byte) []byte {
	var out []byte
	for i, c := range in {
		if c == '\n' && (i == 0 || in[i-1] != '\r') {
			out = append(out, '\r')
		}
		out = append(out, c)
	}
	if len(in) > 0 && in[len(in)-1] != '\n' {
		out = append(out, '\r', '\n')
	}
	return out
}

// stuffingDots counts the lines of in that start with '.', i.e. the dots a
// DotWriter adds: lines begin at offset 0 and after every LF.
func stuffingDots(in []byte) int {
	n := 0
	for i, c := range in {
		if c == '.' && (i == 0 || in[i-1] == '\n') {
			n++
		}
	}
	return n
}

// writeChunks writes data to w in the given chunk sizes (cycled); a size of
// 0 produces an empty Write. At least one size must be positive.
func writeChunks(t testing.TB, w io.Writer, data []byte, sizes []int) {
	t.Helper()
	if slices.Max(sizes) <= 0 {
		t.Fatalf("writeChunks: no positive chunk size in %v", sizes)
	}
	for k := 0; len(data) > 0; k++ {
		n := min(sizes[k%len(sizes)], len(data))
		got, err := w.Write(data[:n])
		if err != nil || got != n {
			t.Fatalf("Write(%q) = %d, %v; want %d, nil", data[:n], got, err, n)
		}
		data = data[n:]
	}
}

func TestWireCounter(t *testing.T) {
	tests := []struct {
		name   string
		chunks []string // written one Write each
		want   int64
	}{
		{"empty", nil, 0},
		{"empty write", []string{""}, 0},
		{"a", []string{"a"}, 3},                       // a CRLF
		{"a LF", []string{"a\n"}, 3},                  // a CRLF
		{"a CRLF", []string{"a\r\n"}, 3},              // kept
		{"a CR", []string{"a\r"}, 4},                  // bare CR kept, CRLF added
		{"bare CR mid-line", []string{"a\rb\r\n"}, 5}, // CR is data
		{"bare CR then LF line", []string{"a\rb\n"}, 5},
		{"only LF", []string{"\n"}, 2},
		{"only CRLF", []string{"\r\n"}, 2},
		{"LF LF", []string{"\n\n"}, 4},
		{"mixed LF CRLF", []string{"a\nb\r\nc\n"}, 9},
		{"mixed no final newline", []string{"a\r\nb\nc"}, 9},
		{"CR | LF split", []string{"a\r", "\n"}, 3},
		{"CR | empty | LF split", []string{"a\r", "", "\n"}, 3},
		{"LF | LF split", []string{"a\n", "\n"}, 5},
		{"CR | x LF split", []string{"a\r", "x\n"}, 5},
		{"no final newline", []string{"line1\r\nline2"}, 14},
		{"dot lines not stuffed", []string{".\r\n..\n"}, 7},
		{"one byte at a time", []string{"a", "\r", "\n", "\n", "b"}, 8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c WireCounter
			for _, s := range tt.chunks {
				if n, err := c.Write([]byte(s)); n != len(s) || err != nil {
					t.Fatalf("Write(%q) = %d, %v", s, n, err)
				}
			}
			if got := c.Size(); got != tt.want {
				t.Errorf("Size() = %d, want %d", got, tt.want)
			}
			all := strings.Join(tt.chunks, "")
			if got, want := int64(len(wireForm([]byte(all)))), tt.want; got != want {
				t.Errorf("model disagrees with table: wireForm(%q) has %d octets, table says %d", all, got, want)
			}
			got, err := WireSize(strings.NewReader(all))
			if err != nil || got != tt.want {
				t.Errorf("WireSize(%q) = %d, %v; want %d, nil", all, got, err, tt.want)
			}
		})
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

func TestWireSizeReadError(t *testing.T) {
	boom := errors.New("boom")
	n, err := WireSize(errReader{boom})
	if !errors.Is(err, boom) || n != 0 {
		t.Errorf("WireSize(failing reader) = %d, %v; want 0, %v", n, err, boom)
	}
}

// randomMessage returns data rich in the bytes that matter here.
func randomMessage(r *rand.Rand, max int) []byte {
	const alphabet = "\r\n.a\r\n.\x00 "
	b := make([]byte, r.IntN(max+1))
	for i := range b {
		b[i] = alphabet[r.IntN(len(alphabet))]
	}
	return b
}

func randomSizes(r *rand.Rand) []int {
	s := make([]int, 1+r.IntN(5))
	for i := range s {
		s[i] = r.IntN(8) // includes 0: empty writes
	}
	s[0] = 1 + r.IntN(7) // guarantees progress
	return s
}

// TestWireSizeMatchesDotWriter checks that the counter and the writer agree:
// the size announced by STAT/LIST is what RETR sends, minus stuffing and the
// terminator, whatever the chunking on either side.
func TestWireSizeMatchesDotWriter(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for iter := 0; iter < 3000; iter++ {
		msg := randomMessage(r, 64)

		var c WireCounter
		writeChunks(t, &c, msg, randomSizes(r))

		var out bytes.Buffer
		bw := bufio.NewWriter(&out)
		dw := NewDotWriter(bw)
		writeChunks(t, dw, msg, randomSizes(r))
		if err := dw.Close(); err != nil {
			t.Fatal(err)
		}
		if err := bw.Flush(); err != nil {
			t.Fatal(err)
		}

		whole, err := WireSize(bytes.NewReader(msg))
		if err != nil {
			t.Fatal(err)
		}
		emitted := int64(out.Len() - stuffingDots(msg) - len(".\r\n"))
		if c.Size() != emitted || whole != emitted {
			t.Fatalf("input %q: chunked counter %d, WireSize %d, DotWriter payload %d (output %q)",
				msg, c.Size(), whole, emitted, out.Bytes())
		}
		if want := int64(len(wireForm(msg))); whole != want {
			t.Fatalf("WireSize(%q) = %d, model says %d", msg, whole, want)
		}
	}
}

func TestWireFormModel(t *testing.T) {
	// The helpers above are the oracle for several tests; pin them down.
	tests := []struct{ in, want string }{
		{"", ""},
		{"a", "a\r\n"},
		{"a\n\r\n\r", "a\r\n\r\n\r\r\n"},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, string(wireForm([]byte(tt.in)))); diff != "" {
			t.Errorf("wireForm(%q) mismatch (-want +got):\n%s", tt.in, diff)
		}
	}
	if got := stuffingDots([]byte(".a\n.\r\n\n..\nx.")); got != 3 {
		t.Errorf("stuffingDots = %d, want 3", got)
	}
}
