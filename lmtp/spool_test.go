package lmtp

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestLFWriter(t *testing.T) {
	tests := []struct {
		name   string
		writes []string
		want   string
	}{
		{"CRLF", []string{"a\r\nb\r\n"}, "a\nb\n"},
		{"CRLF split", []string{"a\r", "\nb"}, "a\nb"},
		{"lone CR split", []string{"a\r", "b"}, "a\rb"},
		{"CR at the end", []string{"a\r"}, "a\r"},
		{"CR CR LF", []string{"\r\r\n"}, "\r\n"},
		{"CR then empty write then LF", []string{"a\r", "", "\n"}, "a\n"},
		{"CR alone in writes", []string{"\r", "\r", "\n", "\r"}, "\r\n\r"},
		{"bare LF", []string{"a\nb"}, "a\nb"},
		{"nothing", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			lw := &lfWriter{w: &out}
			for _, w := range tt.writes {
				n, err := lw.Write([]byte(w))
				if err != nil || n != len(w) {
					t.Fatalf("Write(%q) = %d, %v", w, n, err)
				}
			}
			if err := lw.Flush(); err != nil {
				t.Fatal(err)
			}
			if got := out.String(); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// FuzzLFWriter checks that however the input is cut into writes, the
// output is the input with every CRLF replaced by LF.
func FuzzLFWriter(f *testing.F) {
	f.Add([]byte("a\r\nb\r\r\n\r"), []byte{1, 2, 3})
	f.Add([]byte("\r\n\r\n"), []byte{1})
	f.Fuzz(func(t *testing.T, data, cuts []byte) {
		var out bytes.Buffer
		lw := &lfWriter{w: &out}
		rest := data
		for _, c := range cuts {
			n := min(int(c)%8, len(rest))
			if _, err := lw.Write(rest[:n]); err != nil {
				t.Fatal(err)
			}
			rest = rest[n:]
		}
		lw.Write(rest)
		lw.Flush()
		if want := bytes.ReplaceAll(data, []byte("\r\n"), []byte("\n")); !bytes.Equal(out.Bytes(), want) {
			t.Errorf("%q cut by %v: got %q, want %q", data, cuts, out.Bytes(), want)
		}
	})
}

func TestSpool(t *testing.T) {
	for _, memMax := range []int{0, 4, 10, 100} {
		dir := t.TempDir()
		sp := &spool{dir: dir, memMax: memMax}
		for _, w := range []string{"012", "3456", "", "789"} {
			if n, err := sp.Write([]byte(w)); err != nil || n != len(w) {
				t.Fatalf("memMax %d: Write(%q) = %d, %v", memMax, w, n, err)
			}
		}
		if sp.Size() != 10 {
			t.Errorf("memMax %d: Size = %d", memMax, sp.Size())
		}
		if (sp.file != nil) != (memMax < 10) {
			t.Errorf("memMax %d: file used: %v", memMax, sp.file != nil)
		}
		// Readers are independent and each sees everything.
		r1, r2 := sp.Reader(), sp.Reader()
		a, _ := io.ReadAll(io.LimitReader(r1, 5))
		b, _ := io.ReadAll(r2)
		c, _ := io.ReadAll(r1)
		if diff := cmp.Diff([]string{"01234", "0123456789", "56789"}, []string{string(a), string(b), string(c)}); diff != "" {
			t.Errorf("memMax %d: reads (-want +got):\n%s", memMax, diff)
		}
		// The spool file has no name in dir.
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Errorf("memMax %d: %d files left in the spool directory", memMax, len(ents))
		}
		if err := sp.Close(); err != nil {
			t.Error(err)
		}
	}
}

func TestCreateUnlinked(t *testing.T) {
	dir := t.TempDir()
	f, err := createUnlinked(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("data"); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("%d files left", len(ents))
	}
}

func TestSpoolFailure(t *testing.T) {
	st := newMemStore()
	missing := filepath.Join(t.TempDir(), "missing")
	ts := newTestServer(t, st, func(s *Server) {
		s.SpoolDir = missing
		s.SpoolMemory = 10
	})
	rc := ts.hello(t)
	_, got := rc.transaction(sender, []string{"alice@example.org"}, strings.Repeat("spill to disk\r\n", 100)+".\r\n")
	if diff := cmp.Diff([]string{"451 4.3.0 <alice@example.org>"}, got); diff != "" {
		t.Errorf("DATA replies (-want +got):\n%s", diff)
	}
	// The rest of the message was consumed; the session is in step.
	_, got = rc.transaction(sender, []string{"alice@example.org"}, "short\r\n.\r\n")
	if diff := cmp.Diff([]string{"250 2.0.0 <alice@example.org>"}, got); diff != "" {
		t.Errorf("next transaction (-want +got):\n%s", diff)
	}
	if n := len(st.contents()["alice"]); n != 1 {
		t.Errorf("%d messages stored, want 1", n)
	}
	if !strings.Contains(ts.logs.String(), `level=WARN msg="message refused"`) {
		t.Errorf("spool failure not logged as a warning:\n%s", ts.logs.String())
	}
}
