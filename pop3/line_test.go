package pop3

import (
	"bufio"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// lineResult is one ReadLine outcome.
type lineResult struct {
	Line string
	Err  string // "" for nil, else the error text
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestReadLine(t *testing.T) {
	const max = 16
	exact := strings.Repeat("a", max-2) // + CRLF = max octets
	over := strings.Repeat("b", max-1)  // + CRLF = max+1 octets
	huge := strings.Repeat("h", 100<<10)
	tooLong := lineResult{Err: ErrLineTooLong.Error()}
	eof := lineResult{Err: io.EOF.Error()}
	unexpectedEOF := lineResult{Err: io.ErrUnexpectedEOF.Error()}

	tests := []struct {
		name    string
		in      string
		max     int
		bufSize int
		want    []lineResult // successive ReadLine calls
	}{
		{name: "CRLF line", in: "USER bob\r\n", want: []lineResult{{Line: "USER bob"}, eof}},
		{name: "LF line", in: "USER bob\n", want: []lineResult{{Line: "USER bob"}, eof}},
		{name: "empty lines", in: "\r\n\n", want: []lineResult{{}, {}, eof}},
		{name: "only CR stripped once", in: "a\r\r\n", want: []lineResult{{Line: "a\r"}, eof}},
		{name: "bare CR mid-line kept", in: "a\rb\r\n", want: []lineResult{{Line: "a\rb"}, eof}},
		{name: "several lines", in: "USER bob\r\nPASS x\nQUIT\r\n", want: []lineResult{
			{Line: "USER bob"}, {Line: "PASS x"}, {Line: "QUIT"}, eof}},
		{name: "exactly max with CRLF", in: exact + "\r\nNOOP\r\n", want: []lineResult{
			{Line: exact}, {Line: "NOOP"}, eof}},
		{name: "exactly max with LF", in: exact + "a\nNOOP\r\n", want: []lineResult{
			{Line: exact + "a"}, {Line: "NOOP"}, eof}},
		{name: "max+1 with CRLF rejected, next line intact", in: over + "\r\nNOOP\r\n", want: []lineResult{
			tooLong, {Line: "NOOP"}, eof}},
		{name: "max+1 with LF rejected, next line intact", in: over + "b\nNOOP\r\n", want: []lineResult{
			tooLong, {Line: "NOOP"}, eof}},
		{name: "CR at max, LF at max+1", in: exact + "a\r\nNOOP\r\n", want: []lineResult{
			tooLong, {Line: "NOOP"}, eof}},
		{name: "two long lines in a row", in: over + "\r\n" + over + over + "\r\nSTAT\r\n", want: []lineResult{
			tooLong, tooLong, {Line: "STAT"}, eof}},
		{name: "100 KB line then a command", in: huge + "\r\nSTAT\r\n", max: MaxCommandLine, bufSize: 4096,
			want: []lineResult{tooLong, {Line: "STAT"}, eof}},
		{name: "100 KB LF line then a command", in: huge + "\nSTAT\r\n", max: MaxCommandLine, bufSize: 4096,
			want: []lineResult{tooLong, {Line: "STAT"}, eof}},
		{name: "limit equals buffer size", in: strings.Repeat("c", 14) + "\r\n" + strings.Repeat("c", 15) + "\r\nX\n",
			max: 16, bufSize: 16, want: []lineResult{{Line: strings.Repeat("c", 14)}, tooLong, {Line: "X"}, eof}},
		{name: "clean EOF", in: "", want: []lineResult{eof, eof}},
		{name: "EOF mid-line", in: "QUI", want: []lineResult{unexpectedEOF}},
		{name: "EOF mid-line after a line", in: "NOOP\r\nQUI", want: []lineResult{{Line: "NOOP"}, unexpectedEOF}},
		{name: "EOF after CR", in: "QUIT\r", want: []lineResult{unexpectedEOF}},
		{name: "EOF in overlong line", in: over + "b", want: []lineResult{unexpectedEOF}},
		{name: "EOF in overlong line, exactly max buffered", in: exact + "ab", want: []lineResult{unexpectedEOF}},
		{name: "EOF in 100 KB line", in: huge, max: MaxCommandLine, bufSize: 4096, want: []lineResult{unexpectedEOF}},
		{name: "EOF in 100 KB+1 line", in: huge + "z", max: MaxCommandLine, bufSize: 4096, want: []lineResult{unexpectedEOF}},
	}
	sources := []struct {
		name  string
		chunk int
	}{{"whole", 1 << 30}, {"1-byte reads", 1}, {"5-byte reads", 5}}
	for _, tt := range tests {
		for _, src := range sources {
			t.Run(tt.name+"/"+src.name, func(t *testing.T) {
				max, bufSize := tt.max, tt.bufSize
				if max == 0 {
					max = 16
				}
				if bufSize == 0 {
					bufSize = 64
				}
				r := bufio.NewReaderSize(&chunkReader{strings.NewReader(tt.in), src.chunk}, bufSize)
				var got []lineResult
				for range tt.want {
					line, err := ReadLine(r, max)
					if err != nil && line != nil {
						t.Errorf("ReadLine returned %q together with error %v", line, err)
					}
					got = append(got, lineResult{Line: string(line), Err: errText(err)})
				}
				if diff := cmp.Diff(tt.want, got); diff != "" {
					if len(diff) > 2000 {
						diff = diff[:2000] + "..."
					}
					t.Errorf("ReadLine results mismatch (-want +got):\n%s", diff)
				}
			})
		}
	}
}

func TestReadLineErrorsAreSentinels(t *testing.T) {
	r := bufio.NewReaderSize(strings.NewReader(strings.Repeat("x", 40)+"\r\n"), 16)
	if _, err := ReadLine(r, 16); !errors.Is(err, ErrLineTooLong) {
		t.Errorf("error = %v, want ErrLineTooLong", err)
	}
	r = bufio.NewReaderSize(strings.NewReader("abc"), 16)
	if _, err := ReadLine(r, 16); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("error = %v, want io.ErrUnexpectedEOF", err)
	}
}

func TestReadLineLimitOverBufferSize(t *testing.T) {
	tests := []struct {
		bufSize, max int
		wantErr      bool
	}{
		{16, 16, false},
		{16, 17, true},
		{4096, 4096, false},
		{4096, 4097, true},
		{4096, MaxResponseLine, false},
	}
	for _, tt := range tests {
		r := bufio.NewReaderSize(strings.NewReader("+OK\r\n"), tt.bufSize)
		line, err := ReadLine(r, tt.max)
		if (err != nil) != tt.wantErr {
			t.Errorf("buffer %d, max %d: err = %v, want error: %v", tt.bufSize, tt.max, err, tt.wantErr)
		}
		if !tt.wantErr && string(line) != "+OK" {
			t.Errorf("buffer %d, max %d: line = %q, want %q", tt.bufSize, tt.max, line, "+OK")
		}
		if tt.wantErr && r.Buffered() != 0 {
			t.Errorf("buffer %d, max %d: input consumed despite the error", tt.bufSize, tt.max)
		}
	}
}

// patternReader produces n bytes of 'x' then tail, without allocating.
type patternReader struct {
	n    int
	tail string
}

func (p *patternReader) Read(b []byte) (int, error) {
	if p.n > 0 {
		k := min(p.n, len(b))
		for i := range b[:k] {
			b[i] = 'x'
		}
		p.n -= k
		return k, nil
	}
	if p.tail == "" {
		return 0, io.EOF
	}
	k := copy(b, p.tail)
	p.tail = p.tail[k:]
	return k, nil
}

// TestReadLineMemoryBounded reads a 10 MB line through a 4096-byte buffer
// and checks that ReadLine allocates next to nothing while skipping it.
func TestReadLineMemoryBounded(t *testing.T) {
	const size = 10 << 20
	src := &patternReader{n: size, tail: "\r\nSTAT\r\n"}
	r := bufio.NewReaderSize(src, 4096)

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err1 := ReadLine(r, MaxCommandLine)
	line, err2 := ReadLine(r, MaxCommandLine)
	runtime.ReadMemStats(&after)

	if !errors.Is(err1, ErrLineTooLong) {
		t.Fatalf("first ReadLine error = %v, want ErrLineTooLong", err1)
	}
	if err2 != nil || string(line) != "STAT" {
		t.Fatalf("second ReadLine = %q, %v; want %q, nil", line, err2, "STAT")
	}
	const limit = 8 << 10
	if got := after.TotalAlloc - before.TotalAlloc; got > limit {
		t.Errorf("reading a %d-byte line allocated %d bytes, want at most %d", size, got, limit)
	}

	// The steady state allocates nothing at all.
	allocs := testing.AllocsPerRun(20, func() {
		src.n, src.tail = 1<<20, "\r\nSTAT\r\n"
		if _, err := ReadLine(r, MaxCommandLine); !errors.Is(err, ErrLineTooLong) {
			t.Fatalf("ReadLine error = %v, want ErrLineTooLong", err)
		}
		if l, err := ReadLine(r, MaxCommandLine); err != nil || string(l) != "STAT" {
			t.Fatalf("ReadLine = %q, %v", l, err)
		}
	})
	if allocs != 0 {
		t.Errorf("ReadLine allocated %v times per 1 MB line, want 0", allocs)
	}
}

// openStream returns a reader that has delivered data and then blocks, like
// a connection whose peer is waiting for our reply, and a function that
// ends the stream (also called at the end of the test).
func openStream(t *testing.T, data string) (io.Reader, func()) {
	t.Helper()
	pr, pw := io.Pipe()
	go pw.Write([]byte(data))
	t.Cleanup(func() { pw.Close() })
	return pr, func() { pw.Close() }
}

// noWait runs f and fails the test if it does not return within a generous
// bound: it must act on the data already delivered, not wait for more. On
// timeout it ends the stream so that f returns before the test does.
func noWait(t *testing.T, what string, end func(), f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		end()
		<-done
		t.Fatalf("%s waited for more input although it had enough", what)
	}
}

// TestReadLineDoesNotWaitForMoreInput: a client sends one command and waits
// for the reply; ReadLine must return that line without needing more bytes.
func TestReadLineDoesNotWaitForMoreInput(t *testing.T) {
	tests := []struct {
		name string
		sent string
		max  int
		want []string // lines or error texts
	}{
		{"one CRLF line", "STAT\r\n", MaxCommandLine, []string{"STAT"}},
		{"one LF line", "STAT\n", MaxCommandLine, []string{"STAT"}},
		{"pipelined", "USER bob\r\nPASS x\r\nSTAT\r\n", MaxCommandLine, []string{"USER bob", "PASS x", "STAT"}},
		{"exactly max", strings.Repeat("a", 14) + "\r\n", 16, []string{strings.Repeat("a", 14)}},
		{"over max then a command", strings.Repeat("a", 300) + "\r\nNOOP\r\n", MaxCommandLine,
			[]string{ErrLineTooLong.Error(), "NOOP"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, end := openStream(t, tt.sent)
			r := bufio.NewReaderSize(src, 4096)
			var got []string
			noWait(t, "ReadLine", end, func() {
				for range tt.want {
					line, err := ReadLine(r, tt.max)
					if err != nil {
						got = append(got, err.Error())
					} else {
						got = append(got, string(line))
					}
				}
			})
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
