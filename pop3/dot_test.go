package pop3

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// dotWrite runs chunks through a DotWriter (one Write each), closes it and
// returns everything it emitted.
func dotWrite(t testing.TB, chunks ...[]byte) []byte {
	t.Helper()
	// Through a big buffer (lines converted in its free space) and a tiny
	// one (lines longer than the free space, written piece by piece): the
	// bytes must be the same.
	big := dotWriteSize(t, 4096, chunks...)
	if small := dotWriteSize(t, 16, chunks...); !bytes.Equal(small, big) {
		t.Fatalf("DotWriter output depends on the buffer: %q with 16 bytes, %q with 4096", small, big)
	}
	// DotEncoder is the same conversion into memory.
	enc := NewDotEncoder()
	var appended []byte
	for _, c := range chunks {
		appended = enc.Append(appended, c)
	}
	if appended = enc.Close(appended); !bytes.Equal(appended, big) {
		t.Fatalf("DotEncoder gives %q, DotWriter %q", appended, big)
	}
	return big
}

func dotWriteSize(t testing.TB, size int, chunks ...[]byte) []byte {
	t.Helper()
	var out bytes.Buffer
	bw := bufio.NewWriterSize(&out, size)
	dw := NewDotWriter(bw)
	for _, c := range chunks {
		n, err := dw.Write(c)
		if err != nil || n != len(c) {
			t.Fatalf("Write(%q) = %d, %v; want %d, nil", c, n, err, len(c))
		}
	}
	if err := dw.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func TestDotWriter(t *testing.T) {
	bigLine := strings.Repeat("x", 1<<20)
	tests := []struct {
		name   string
		chunks []string
		want   string
	}{
		{"empty message", nil, ".\r\n"},
		{"empty writes only", []string{"", ""}, ".\r\n"},
		{"single line CRLF kept", []string{"hello\r\n"}, "hello\r\n.\r\n"},
		{"bare LF to CRLF", []string{"a\nb\n"}, "a\r\nb\r\n.\r\n"},
		{"mixed line ends", []string{"a\r\nb\nc\r\n"}, "a\r\nb\r\nc\r\n.\r\n"},
		{"no final newline", []string{"a\r\nb"}, "a\r\nb\r\n.\r\n"},
		{"final bare CR gets CRLF", []string{"a\r"}, "a\r\r\n.\r\n"},
		{"bare CR mid-line kept", []string{"a\rb\n"}, "a\rb\r\n.\r\n"},
		{"empty lines", []string{"\n\r\n\n"}, "\r\n\r\n\r\n.\r\n"},
		{"dot line stuffed", []string{"a\r\n.\r\nb\r\n"}, "a\r\n..\r\nb\r\n.\r\n"},
		{"dotdot line stuffed", []string{"a\n..\n"}, "a\r\n...\r\n.\r\n"},
		{"dot-x line stuffed", []string{"a\n.x\n"}, "a\r\n..x\r\n.\r\n"},
		{"first line a dot", []string{".\n"}, "..\r\n.\r\n"},
		{"only a dot, no newline", []string{"."}, "..\r\n.\r\n"},
		{"dot not at line start", []string{"a.b\n x.\n"}, "a.b\r\n x.\r\n.\r\n"},
		{"dot after bare CR is mid-line", []string{"a\r.b\n"}, "a\r.b\r\n.\r\n"},
		{"1 MB line intact", []string{bigLine + "\n"}, bigLine + "\r\n.\r\n"},
		{"1 MB line no newline", []string{bigLine}, bigLine + "\r\n.\r\n"},
		{"split CR | LF", []string{"a\r", "\nb\r\n"}, "a\r\nb\r\n.\r\n"},
		{"split CR | empty | LF", []string{"a\r", "", "\n"}, "a\r\n.\r\n"},
		{"split CR | x LF", []string{"a\r", "x\n"}, "a\rx\r\n.\r\n"},
		{"split LF | dot", []string{"a\n", ".b\n"}, "a\r\n..b\r\n.\r\n"},
		{"split LF | empty | dot", []string{"a\n", "", "."}, "a\r\n..\r\n.\r\n"},
		{"split CR LF | dot", []string{"a\r\n", ".\r\n"}, "a\r\n..\r\n.\r\n"},
		{"split dot | dot", []string{".", ".", "\n"}, "...\r\n.\r\n"},
		{"split LF | LF", []string{"\n", "\n"}, "\r\n\r\n.\r\n"},
		{"byte at a time", []string{".", "\r", "\n", ".", "\n", "x"}, "..\r\n..\r\nx\r\n.\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			chunks := make([][]byte, len(tt.chunks))
			for i, c := range tt.chunks {
				chunks[i] = []byte(c)
			}
			got := string(dotWrite(t, chunks...))
			if got != tt.want {
				if len(got)+len(tt.want) > 4096 {
					t.Fatalf("output of %d bytes differs from the %d expected", len(got), len(tt.want))
				}
				t.Errorf("mismatch (-want +got):\n%s", cmp.Diff(tt.want, got))
			}
		})
	}
}

func TestDotWriterWriteAfterClose(t *testing.T) {
	var out bytes.Buffer
	bw := bufio.NewWriter(&out)
	dw := NewDotWriter(bw)
	if err := dw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := dw.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
	if n, err := dw.Write([]byte("x")); err == nil || n != 0 {
		t.Errorf("Write after Close = %d, %v; want 0, error", n, err)
	}
	bw.Flush()
	if got := out.String(); got != ".\r\n" {
		t.Errorf("output %q, want a single terminator", got)
	}
}

// failWriter accepts limit bytes then fails.
type failWriter struct {
	limit int
	err   error
}

func (w *failWriter) Write(p []byte) (int, error) {
	if len(p) > w.limit {
		n := w.limit
		w.limit = 0
		return n, w.err
	}
	w.limit -= len(p)
	return len(p), nil
}

func TestDotWriterPropagatesErrors(t *testing.T) {
	boom := errors.New("boom")
	// A 16-byte bufio.Writer forces the underlying writer to be used during
	// Write, not only at Flush.
	bw := bufio.NewWriterSize(&failWriter{limit: 20, err: boom}, 16)
	dw := NewDotWriter(bw)
	var err error
	for i := 0; i < 10 && err == nil; i++ {
		_, err = dw.Write([]byte(".line\n"))
	}
	if !errors.Is(err, boom) {
		t.Fatalf("Write error = %v, want %v", err, boom)
	}
	if err := dw.Close(); !errors.Is(err, boom) {
		t.Errorf("Close error = %v, want %v", err, boom)
	}
}

// chunkReader returns at most n bytes per Read, so that lines arrive in
// pieces.
type chunkReader struct {
	r io.Reader
	n int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(p) > c.n {
		p = p[:c.n]
	}
	return c.r.Read(p)
}

// readDot reads everything from a DotReader over in, using a bufio.Reader of
// bufSize, reads of at most pSize bytes and an underlying reader that hands
// out at most srcChunk bytes at a time. It returns the data, whatever was left
// unread after the terminator and the error that ended it (nil for io.EOF).
func readDot(in []byte, bufSize, pSize, srcChunk int) (data, rest []byte, err error) {
	br := bufio.NewReaderSize(&chunkReader{bytes.NewReader(in), srcChunk}, bufSize)
	dr := NewDotReader(br)
	p := make([]byte, pSize)
	for {
		n, rerr := dr.Read(p)
		if n < 0 || n > len(p) {
			panic("bad count")
		}
		data = append(data, p[:n]...)
		if rerr != nil {
			if rerr != io.EOF {
				err = rerr
			}
			break
		}
	}
	rest, _ = io.ReadAll(br)
	return data, rest, err
}

func TestDotReader(t *testing.T) {
	bigLine := strings.Repeat("y", 1<<20)
	tests := []struct {
		name string
		in   string
		want string
		err  error
		rest string // left in the bufio.Reader after the terminator (checked when err is nil)
	}{
		{name: "empty body", in: ".\r\n", want: ""},
		{name: "one line", in: "hello\r\n.\r\n", want: "hello\r\n"},
		{name: "unstuff dot line", in: "..\r\n.\r\n", want: ".\r\n"},
		{name: "unstuff dotdot line", in: "...\r\n.\r\n", want: "..\r\n"},
		{name: "unstuff dot-x line", in: "a\r\n..x\r\nb\r\n.\r\n", want: "a\r\n.x\r\nb\r\n"},
		{name: "unstuffed dot-x from sloppy server", in: ".x\r\n.\r\n", want: "x\r\n"},
		{name: "dot mid-line untouched", in: "a.b\r\n x.\r\n.\r\n", want: "a.b\r\n x.\r\n"},
		{name: "empty lines", in: "\r\n\r\n.\r\n", want: "\r\n\r\n"},
		{name: "line ends as received", in: "a\nb\r\n.\r\n", want: "a\nb\r\n"},
		{name: "sloppy terminator", in: "a\n.\n", want: "a\n"},
		{name: "sloppy terminator alone", in: ".\n", want: ""},
		{name: "data after terminator left unread", in: "a\r\n.\r\n+OK next\r\n", want: "a\r\n", rest: "+OK next\r\n"},
		{name: "dot CR is not a terminator", in: ".\rx\r\n.\r\n", want: "\rx\r\n"},
		{name: "terminator must start a line", in: "a.\r\n.\r\n", want: "a.\r\n"},
		{name: "1 MB line intact", in: bigLine + "\r\n.\r\n", want: bigLine + "\r\n"},
		{name: "1 MB stuffed line intact", in: "." + bigLine + "\r\n.\r\n", want: bigLine + "\r\n"},
		{name: "unterminated empty", in: "", err: ErrUnterminated},
		{name: "unterminated after line", in: "a\r\n", want: "a\r\n", err: ErrUnterminated},
		{name: "unterminated mid-line", in: "a\r\nbc", want: "a\r\nbc", err: ErrUnterminated},
		{name: "unterminated lone dot", in: "a\r\n.", want: "a\r\n", err: ErrUnterminated},
		{name: "unterminated dot CR", in: "a\r\n.\r", want: "a\r\n", err: ErrUnterminated},
		{name: "unterminated dot x", in: ".x", want: "x", err: ErrUnterminated},
	}
	readers := []struct {
		name                     string
		bufSize, pSize, srcChunk int
	}{
		{"defaults", 4096, 4096, 1 << 30},
		{"16-byte buffer", 16, 4096, 1 << 30},
		{"1-byte reads", 16, 1, 1 << 30},
		{"1-byte source", 16, 7, 1},
		{"3-byte source", 16, 5, 3},
	}
	for _, tt := range tests {
		for _, rd := range readers {
			t.Run(tt.name+"/"+rd.name, func(t *testing.T) {
				got, rest, err := readDot([]byte(tt.in), rd.bufSize, rd.pSize, rd.srcChunk)
				if !errors.Is(err, tt.err) || (err == nil) != (tt.err == nil) {
					t.Errorf("error = %v, want %v", err, tt.err)
				}
				if string(got) != tt.want {
					if len(got)+len(tt.want) > 4096 {
						t.Fatalf("read %d bytes, want %d", len(got), len(tt.want))
					}
					t.Errorf("data mismatch (-want +got):\n%s", cmp.Diff(tt.want, string(got)))
				}
				if tt.err == nil && string(rest) != tt.rest {
					t.Errorf("left unread %q, want %q", rest, tt.rest)
				}
			})
		}
	}
}

func TestDotReaderStickyError(t *testing.T) {
	dr := NewDotReader(bufio.NewReader(strings.NewReader("abc")))
	if _, err := io.ReadAll(dr); !errors.Is(err, ErrUnterminated) {
		t.Fatalf("ReadAll error = %v, want ErrUnterminated", err)
	}
	if n, err := dr.Read(make([]byte, 8)); n != 0 || !errors.Is(err, ErrUnterminated) {
		t.Errorf("Read after failure = %d, %v; want 0, ErrUnterminated", n, err)
	}
}

func TestDotReaderEOFIsSticky(t *testing.T) {
	dr := NewDotReader(bufio.NewReader(strings.NewReader("a\r\n.\r\nb\r\n.\r\n")))
	got, err := io.ReadAll(dr)
	if err != nil || string(got) != "a\r\n" {
		t.Fatalf("ReadAll = %q, %v; want %q, nil", got, err, "a\r\n")
	}
	if n, err := dr.Read(make([]byte, 8)); n != 0 || err != io.EOF {
		t.Errorf("Read after terminator = %d, %v; want 0, io.EOF", n, err)
	}
}

// dotRoundTripWant is what a DotWriter then DotReader pass must yield: the
// input with line ends normalised to CRLF and a final CRLF when missing.
func dotRoundTripWant(in []byte) []byte { return wireForm(in) }

func FuzzDotRoundTrip(f *testing.F) {
	for _, s := range []string{
		"", ".", "..", ".x", "\n", "\r", "\r\n", ".\n", ".\r\n", "..\r\n",
		"a", "a\n", "a\r", "a\r\n", "a\rb", "a\r.b\n",
		"a\n.\nb", "a\r\n.\r\nb\r\n", ".\r\n.\r\n", "\n.\n", "\r\n.", "\r.\n",
		"line1\nline2\r\nline3", "\x00\xff.\n.\r",
	} {
		f.Add([]byte(s), uint8(0), uint8(0))
		f.Add([]byte(s), uint8(1), uint8(1))
		f.Add([]byte(s), uint8(2), uint8(3))
	}
	f.Fuzz(func(t *testing.T, in []byte, wchunk, rchunk uint8) {
		// Write in chunks of wchunk bytes (0: one Write) so that CR|LF and
		// LF|dot boundaries fall between Write calls.
		var chunks [][]byte
		step := int(wchunk)
		if step == 0 {
			step = len(in) + 1
		}
		for rest := in; len(rest) > 0; {
			n := min(step, len(rest))
			chunks = append(chunks, rest[:n])
			rest = rest[n:]
		}
		wire := dotWrite(t, chunks...)

		if !bytes.HasSuffix(wire, []byte(".\r\n")) {
			t.Fatalf("output %q lacks the terminator", wire)
		}
		var counter WireCounter
		counter.Write(in)
		if got, want := int64(len(wire)-stuffingDots(in)-3), counter.Size(); got != want {
			t.Fatalf("DotWriter payload %d octets, WireCounter says %d", got, want)
		}

		got, rest, err := readDot(append(wire, "+OK"...), 16, 1+int(rchunk)%17, 1+int(rchunk)/17)
		if err != nil {
			t.Fatalf("DotReader on %q: %v", wire, err)
		}
		if want := dotRoundTripWant(in); !bytes.Equal(got, want) {
			t.Fatalf("round trip of %q via %q:\n got %q\nwant %q", in, wire, got, want)
		}
		if string(rest) != "+OK" {
			t.Fatalf("DotReader left %q unread, want %q", rest, "+OK")
		}
	})
}

// TestDotReaderDoesNotWaitForMoreInput: Read returns the data it has
// (io.Reader convention) instead of waiting to fill p, so a client can
// stream a message as it arrives.
func TestDotReaderDoesNotWaitForMoreInput(t *testing.T) {
	tests := []struct {
		name string
		sent string
		want string
	}{
		{"complete line", "line1\r\n", "line1\r\n"},
		{"two lines", "a\r\nb\r\n", "a\r\nb\r\n"},
		{"stuffed line", "..x\r\n", ".x\r\n"},
		{"partial line", "ab", "ab"},
		{"line then lone dot", "a\r\n.", "a\r\n"},
		{"line then dot CR", "a\r\n.\r", "a\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, end := openStream(t, tt.sent)
			dr := NewDotReader(bufio.NewReader(src))
			var got []byte
			var err error
			noWait(t, "DotReader.Read", end, func() {
				p := make([]byte, 100)
				for len(got) < len(tt.want) && err == nil {
					var n int
					n, err = dr.Read(p)
					got = append(got, p[:n]...)
				}
			})
			if err != nil {
				t.Errorf("Read error %v", err)
			}
			if string(got) != tt.want {
				t.Errorf("read %q, want %q", got, tt.want)
			}
		})
	}
}

// TestDotReaderSloppyTerminatorDoesNotWait: after ".LF" a server sends
// nothing until the next command, so the reader must end the body with two
// bytes in hand instead of waiting for a third.
func TestDotReaderSloppyTerminatorDoesNotWait(t *testing.T) {
	pr, pw := io.Pipe()
	go pw.Write([]byte("a\r\n.\n")) // and then nothing: the pipe stays open
	d := NewDotReader(bufio.NewReader(pr))
	done := make(chan error, 1)
	var got []byte
	go func() {
		var err error
		got, err = io.ReadAll(d)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil || string(got) != "a\r\n" {
			t.Fatalf("got %q, %v; want %q", got, err, "a\r\n")
		}
	case <-time.After(5 * time.Second):
		pr.Close()
		t.Fatal("DotReader waited for a third byte after a .LF terminator")
	}
}

// BenchmarkDotWriter: a 50 KB message of 72-character LF lines, as RETR
// sends it.
func BenchmarkDotWriter(b *testing.B) {
	line := strings.Repeat("x", 71) + "\n"
	msg := []byte(strings.Repeat(line, 50_000/len(line)))
	bw := bufio.NewWriterSize(io.Discard, 64<<10)
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		dw := NewDotWriter(bw)
		for p := msg; len(p) > 0; {
			n := min(len(p), 32<<10)
			dw.Write(p[:n])
			p = p[n:]
		}
		dw.Close()
		bw.Flush()
	}
}

func BenchmarkDotEncoder(b *testing.B) {
	line := strings.Repeat("x", 71) + "\n"
	msg := []byte(strings.Repeat(line, 50_000/len(line)))
	dst := make([]byte, 0, 64<<10)
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		enc := NewDotEncoder()
		dst = enc.Close(enc.Append(dst[:0], msg))
	}
}

// FuzzDotEncoderBlocks: the vector fast path (encodeBlocks, where the CPU
// has one) and the line-at-a-time conversion give the same bytes, however
// the input is split; the input is a unit repeated, so that it is long
// enough for the fast path and full of its edge cases (LF at a block's
// end, CR before a block, dots after LF).
func FuzzDotEncoderBlocks(f *testing.F) {
	for _, s := range []string{
		"a\n.b\r\n..\n\r\n.\n", "\n", ".", "\r", "\r\n", "x", ".\n.\r\n", strings.Repeat("y", 31) + "\n.",
		"Subject: x\n\n. leading\nna\u00efve caf\u00e9\r\n",
	} {
		f.Add([]byte(s), uint8(40), uint8(0))
		f.Add([]byte(s), uint8(200), uint8(37))
		f.Add([]byte(s), uint8(7), uint8(255))
	}
	f.Fuzz(func(t *testing.T, unit []byte, reps, chunk uint8) {
		in := bytes.Repeat(unit, int(reps)+1)
		if len(in) > 1<<16 {
			in = in[:1<<16]
		}
		step := len(in) + 1 // 0: one call
		if chunk > 0 {
			step = int(chunk)*4 + 1
		}
		fast, slow := NewDotEncoder(), NewDotEncoder()
		var got, want []byte
		for rest := in; len(rest) > 0; {
			n := min(step, len(rest))
			got = fast.Append(got, rest[:n])
			want = slow.appendLines(want, rest[:n])
			rest = rest[n:]
		}
		if got, want = fast.Close(got), slow.Close(want); !bytes.Equal(got, want) {
			i := 0
			for i < min(len(got), len(want)) && got[i] == want[i] {
				i++
			}
			t.Fatalf("%d bytes in %d-byte calls: fast path differs at %d: %q, line at a time %q",
				len(in), step, i, got[i:min(len(got), i+20)], want[i:min(len(want), i+20)])
		}
	})
}

func TestDotEncoderUsesBlocks(t *testing.T) {
	t.Logf("vector fast path: %t", haveBlockEncoder)
	if !haveBlockEncoder {
		t.Skip("no fast path on this CPU or architecture")
	}
	src := []byte(strings.Repeat("0123456789abcdef0123456789abcdef\n.x\r\n", 8))
	dst := make([]byte, 2*len(src))
	nd, ns := encodeBlocks(dst, src, false)
	if ns < len(src)/2 {
		t.Fatalf("encodeBlocks took %d of %d bytes", ns, len(src))
	}
	enc := NewDotEncoder()
	if want := enc.appendLines(nil, src[:ns]); !bytes.Equal(dst[:nd], want) {
		t.Fatalf("encodeBlocks gave %q, want %q", dst[:nd], want)
	}
}
