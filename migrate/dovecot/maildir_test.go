package dovecot

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// testMaildir makes a Maildir in a temporary directory with the given files
// (paths relative to it, "cur/..." or "new/...") and dovecot-uidlist
// content ("" for none).
func testMaildir(t *testing.T, uidlist string, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for _, sub := range []string{"new", "cur", "tmp"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for rel, content := range files {
		if err := os.WriteFile(filepath.Join(dir, rel), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if uidlist != "" {
		if err := os.WriteFile(filepath.Join(dir, UIDListName), []byte(uidlist), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// summary is a Message without what varies between runs.
type summary struct {
	Rel        string
	UID        uint32
	UIDL       string
	Source     UIDLSource
	Size       int64
	Unassigned bool
}

func summarize(dir string, msgs []Message) []summary {
	var out []summary
	for _, m := range msgs {
		rel, _ := filepath.Rel(dir, m.Path)
		out = append(out, summary{rel, m.UID, m.UIDL, m.Source, m.Size, m.Unassigned})
	}
	return out
}

func TestReadMaildir(t *testing.T) {
	const list = "3 V1000 N20 G0123456789abcdef0123456789abcdef\n" +
		"1 :1.M1.h\n" +
		"2 Psaved-uidl :2.M2.h\n" +
		"3 P :3.M3.h\n" +
		"4 O1 :4.M4.h\n" +
		"5 :5.M5.h\n" +
		"6 Gabcdef :6.M6.h\n" +
		"7 :gone.h\n"
	files := map[string]string{
		"cur/1.M1.h:2,S":  "X-UIDL: x-one\n\n1\n",
		"cur/2.M2.h:2,":   "X-UIDL: x-two\n\n2\n",
		"cur/3.M3.h:2,RS": "3\n",
		"cur/4.M4.h:2,S":  "X-UIDL: x-four\n\n4\n",
		"new/5.M5.h":      "5\n",
		"cur/5.M5.h:2,":   "5 in cur\n",
		"new/6.M6.h":      "6\n",
		"new/30.M1.h":     "X-UIDL: x-thirty\n\n30\n",
		"new/25.M9.h":     "25\n",
		"cur/25.M10.h:2,": "25 in cur\n",
		"new/.hidden":     "not mail\n",
		"tmp/8.M8.h":      "being delivered\n",
	}
	dir := testMaildir(t, list, files)
	tests := []struct {
		name string
		opts Options
		want []summary
	}{
		{
			name: "default format; P honoured; O first; new files sorted; cur wins",
			want: []summary{
				{"cur/4.M4.h:2,S", 4, "00000004000003e8", FromFormat, 0, false},
				{"cur/1.M1.h:2,S", 1, "00000001000003e8", FromFormat, 0, false},
				{"cur/2.M2.h:2,", 2, "saved-uidl", FromUIDList, 0, false},
				{"cur/3.M3.h:2,RS", 3, "3.M3.h", FromUIDList, 0, false},
				{"cur/5.M5.h:2,", 5, "00000005000003e8", FromFormat, 0, false},
				{"new/6.M6.h", 6, "00000006000003e8", FromFormat, 0, false},
				{"new/25.M9.h", 20, "00000014000003e8", FromFormat, 0, true},
				{"cur/25.M10.h:2,", 21, "00000015000003e8", FromFormat, 0, true},
				{"new/30.M1.h", 22, "00000016000003e8", FromFormat, 0, true},
			},
		},
		{
			name: "X-UIDL reuse and %g",
			opts: Options{ReuseXUIDL: true, UIDLFormat: "%g"},
			want: []summary{
				{"cur/4.M4.h:2,S", 4, "x-four", FromXUIDL, 0, false},
				{"cur/1.M1.h:2,S", 1, "x-one", FromXUIDL, 0, false},
				{"cur/2.M2.h:2,", 2, "saved-uidl", FromUIDList, 0, false},
				{"cur/3.M3.h:2,RS", 3, "3.M3.h", FromUIDList, 0, false},
				{"cur/5.M5.h:2,", 5, "5.M5.h", FromFormat, 0, false},
				{"new/6.M6.h", 6, "abcdef", FromFormat, 0, false},
				{"new/25.M9.h", 20, "25.M9.h", FromFormat, 0, true},
				{"cur/25.M10.h:2,", 21, "25.M10.h", FromFormat, 0, true},
				{"new/30.M1.h", 22, "x-thirty", FromXUIDL, 0, true},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i := range tt.want { // sizes are the files'
				tt.want[i].Size = int64(len(files[tt.want[i].Rel]))
			}
			msgs, err := ReadMaildir(dir, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, summarize(dir, msgs)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			for _, m := range msgs {
				if m.UIDValidity != 1000 {
					t.Errorf("%s: UIDVALIDITY %d", m.Path, m.UIDValidity)
				}
				f, err := m.Open()
				if err != nil {
					t.Fatal(err)
				}
				b, err := io.ReadAll(f)
				f.Close()
				if err != nil || int64(len(b)) != m.Size {
					t.Errorf("%s: read %d bytes, %v; size %d", m.Path, len(b), err, m.Size)
				}
			}
		})
	}
}

func TestReadMaildirProblems(t *testing.T) {
	dir := testMaildir(t, "3 V7 N5\n1 :a\n2 :b\n3 :c\n4 :d\n", map[string]string{
		"cur/a:2,": "X-UIDL: same\n\n",
		"cur/b:2,": "X-UIDL: same\n\n",
		"cur/c:2,": "X-UIDL: has space\n\n",
		"cur/d:2,": "X-UIDL: fine\n\n",
	})
	msgs, err := ReadMaildir(dir, Options{ReuseXUIDL: true})
	var probs *UIDLProblems
	if !errors.As(err, &probs) {
		t.Fatalf("ReadMaildir = %v, want *UIDLProblems", err)
	}
	if !errors.Is(err, ErrDuplicateUIDL) || !errors.Is(err, ErrInvalidUIDL) {
		t.Errorf("error %v does not wrap both kinds", err)
	}
	if got := []string{"same", "same", "has space", "fine"}; !cmp.Equal(got, uidls(msgs)) {
		t.Errorf("messages %q returned with the problems, want %q", uidls(msgs), got)
	}
	var bad []string
	for _, m := range msgs {
		if probs.Skip(m.Path) {
			bad = append(bad, filepath.Base(m.Path))
		}
	}
	if diff := cmp.Diff([]string{"b:2,", "c:2,"}, bad); diff != "" {
		t.Errorf("problem messages (-want +got):\n%s", diff)
	}
	if !strings.Contains(err.Error(), `"has space"`) {
		t.Errorf("error does not quote the UIDL: %v", err)
	}

	// pop3_uidl_duplicates=rename resolves the duplicate as Dovecot does.
	msgs, err = ReadMaildir(dir, Options{ReuseXUIDL: true, UIDLDuplicates: "rename"})
	if !errors.As(err, &probs) || len(probs.Problems) != 1 {
		t.Fatalf("with rename: %v", err)
	}
	if got := uidls(msgs); got[1] != "same-2" {
		t.Errorf("renamed UIDLs %q", got)
	}
}

func TestReadMaildirErrors(t *testing.T) {
	const list = "3 V7 N3\n1 :a\n2 :b\n"
	mail := map[string]string{"cur/a:2,": "a\n", "new/b": "b\n"}
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string)
		opts  Options
		list  string
		want  error
	}{
		{name: "no uidlist", list: "-", want: ErrNoUIDList},
		{name: "corrupt uidlist", list: "3 V7 N3\n2 :a\n1 :b\n", want: ErrCorruptUIDList},
		{name: "fresh lock", setup: func(t *testing.T, dir string) {
			touch(t, filepath.Join(dir, UIDListName+".lock"), time.Now())
		}, want: ErrLocked},
		{name: "not a Maildir", setup: func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, "tmp")); err != nil {
				t.Fatal(err)
			}
			if err := os.RemoveAll(filepath.Join(dir, "new")); err != nil {
				t.Fatal(err)
			}
		}, want: ErrNotMaildir},
		{name: "new/ is a link", setup: func(t *testing.T, dir string) {
			if err := os.RemoveAll(filepath.Join(dir, "new")); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("cur", filepath.Join(dir, "new")); err != nil {
				t.Fatal(err)
			}
		}, want: ErrNotMaildir},
		{name: "message is a link", setup: func(t *testing.T, dir string) {
			if err := os.Symlink("/etc/passwd", filepath.Join(dir, "cur", "c:2,")); err != nil {
				t.Fatal(err)
			}
		}, want: ErrNotRegular},
		{name: "message is a directory", setup: func(t *testing.T, dir string) {
			if err := os.Mkdir(filepath.Join(dir, "cur", "d"), 0o700); err != nil {
				t.Fatal(err)
			}
		}, want: ErrNotRegular},
		{name: "uidlist is a link", setup: func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, UIDListName))
			if err := os.Symlink("/etc/passwd", filepath.Join(dir, UIDListName)); err != nil {
				t.Fatal(err)
			}
		}, want: ErrNotRegular},
		{name: "duplicate base name", setup: func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, "cur", "a:2,S"), nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}, want: ErrDuplicateFile},
		{name: "empty base name", setup: func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, "cur", ":2,S"), nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}, want: ErrDuplicateFile},
		{name: "UID space", list: "3 V7 N4294967295\n1 :a\n", want: ErrUIDSpace},
		{name: "bad format", opts: Options{UIDLFormat: "%m"}, want: ErrUIDLFormat},
		{name: "bad duplicates option", opts: Options{UIDLDuplicates: "forbid"}},
		{name: "control dir elsewhere", opts: Options{ControlDir: "/nonexistent"}, want: ErrNoUIDList},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			list := list
			switch tt.list {
			case "-":
				list = ""
			case "":
			default:
				list = tt.list
			}
			dir := testMaildir(t, list, mail)
			if tt.setup != nil {
				tt.setup(t, dir)
			}
			msgs, err := ReadMaildir(dir, tt.opts)
			if err == nil || msgs != nil {
				t.Fatalf("ReadMaildir = %d messages, %v; want an error", len(msgs), err)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("error %v, want %v", err, tt.want)
			}
		})
	}
}

func touch(t *testing.T, path string, mtime time.Time) {
	t.Helper()
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

func TestReadMaildirStaleLockAndControlDir(t *testing.T) {
	dir := testMaildir(t, "", map[string]string{"cur/a:2,": "a\n"})
	control := t.TempDir()
	if err := os.WriteFile(filepath.Join(control, UIDListName), []byte("3 V7 N2\n1 :a\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Older than Dovecot's stale timeout: Dovecot would override it too.
	touch(t, filepath.Join(control, UIDListName+".lock"), time.Now().Add(-3*time.Minute))
	msgs, err := ReadMaildir(dir, Options{ControlDir: control})
	if err != nil {
		t.Fatal(err)
	}
	if got := uidls(msgs); !cmp.Equal(got, []string{"0000000100000007"}) {
		t.Errorf("UIDLs %q", got)
	}
}

func TestReadMaildirEmpty(t *testing.T) {
	msgs, err := ReadMaildir(testMaildir(t, "", nil), Options{})
	if err != nil || len(msgs) != 0 {
		t.Errorf("empty Maildir without uidlist: %v, %v", msgs, err)
	}
	msgs, err = ReadMaildir(testMaildir(t, "3 V1 N5\n1 :gone\n", nil), Options{})
	if err != nil || len(msgs) != 0 {
		t.Errorf("empty Maildir with uidlist: %v, %v", msgs, err)
	}
}

func TestMessageOpenRefusesSwaps(t *testing.T) {
	dir := testMaildir(t, "3 V7 N3\n1 :a\n2 :b\n", map[string]string{"cur/a:2,": "a\n", "cur/b:2,": "b\n"})
	msgs, err := ReadMaildir(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	// a is replaced by another file (made before the old one goes, so
	// it cannot get its inode), b by a link out of the Maildir.
	if err := os.WriteFile(msgs[0].Path+".tmp", []byte("other\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(msgs[0].Path+".tmp", msgs[0].Path); err != nil {
		t.Fatal(err)
	}
	if _, err := msgs[0].Open(); !errors.Is(err, ErrChanged) {
		t.Errorf("Open of a replaced file: %v, want ErrChanged", err)
	}
	if err := os.Remove(msgs[1].Path); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/passwd", msgs[1].Path); err != nil {
		t.Fatal(err)
	}
	if f, err := msgs[1].Open(); err == nil {
		f.Close()
		t.Error("Open followed a link out of the Maildir")
	}
	if err := os.Remove(msgs[1].Path); err != nil {
		t.Fatal(err)
	}
	if _, err := msgs[1].Open(); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open of a removed file: %v, want fs.ErrNotExist", err)
	}
}

func TestFilenameSortCmp(t *testing.T) {
	// Ascending, per maildir_filename_sort_cmp; the last pair shows that a
	// name ending where another goes on sorts after it once ":2," is
	// appended (':' > '.').
	sorted := []string{
		"99.x",
		"100.M5P1.h:2,",
		"100.M40P1.h:2,",
		"100.M500P1.h:2,",
		"100.Q:2,",
		"100:2,",
		"101.\xffhigh:2,",
		"101.a:2,",
	}
	for i := range sorted {
		for j := range sorted {
			got := filenameSortCmp(sorted[i], sorted[j])
			if (i < j && got >= 0) || (i > j && got <= 0) || (i == j && got != 0) {
				t.Errorf("filenameSortCmp(%q, %q) = %d", sorted[i], sorted[j], got)
			}
		}
	}
}

func TestUIDLSourceString(t *testing.T) {
	for s, want := range map[UIDLSource]string{FromFormat: "pop3_uidl_format", FromXUIDL: "X-UIDL", FromUIDList: "dovecot-uidlist", 9: "UIDLSource(9)"} {
		if got := s.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", s, got, want)
		}
	}
}

func TestValidUIDL(t *testing.T) {
	for _, tt := range []struct {
		uidl string
		ok   bool
	}{
		{"a", true}, {strings.Repeat("x", 70), true}, {"!~", true},
		{"", false}, {strings.Repeat("x", 71), false}, {"a b", false}, {"a\x7f", false}, {"é", false},
	} {
		if got := ValidUIDL(tt.uidl); got != tt.ok {
			t.Errorf("ValidUIDL(%q) = %v", tt.uidl, got)
		}
	}
}

// TestReadMaildirChanging: dovecot-uidlist changing between the read and
// the final check (Dovecot appending to it) makes ReadMaildir start over,
// and give up with ErrChanged if it never holds still; a lock appearing
// meanwhile is ErrLocked.
func TestReadMaildirChanging(t *testing.T) {
	const list = "3 V7 N3\n1 :a\n"
	dir := testMaildir(t, list, map[string]string{"cur/a:2,": "a\n", "new/b": "b\n"})
	newReader := func(afterScan func()) *reader {
		f, err := parseUIDLFormat(DefaultUIDLFormat)
		if err != nil {
			t.Fatal(err)
		}
		return &reader{maildir: dir, control: dir, format: f, now: time.Now, afterScan: afterScan}
	}
	appendB := func() {
		// Dovecot's sync assigns b UID 3 meanwhile.
		fh, err := os.OpenFile(filepath.Join(dir, UIDListName), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer fh.Close()
		if _, err := fh.WriteString("3 :b\n"); err != nil {
			t.Fatal(err)
		}
	}

	calls := 0
	msgs, err := newReader(func() {
		if calls++; calls == 1 {
			appendB()
		}
	}).readConsistent()
	if err != nil {
		t.Fatal(err)
	}
	if calls != 2 {
		t.Errorf("%d reads, want 2", calls)
	}
	if diff := cmp.Diff([]summary{
		{"cur/a:2,", 1, "0000000100000007", FromFormat, 2, false},
		{"new/b", 3, "0000000300000007", FromFormat, 2, false},
	}, summarize(dir, msgs)); diff != "" {
		t.Errorf("after a retry (-want +got):\n%s", diff)
	}

	n := 0
	_, err = newReader(func() {
		n++
		mtime := time.Now().Add(time.Duration(n) * time.Second)
		if err := os.Chtimes(filepath.Join(dir, UIDListName), mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}).readConsistent()
	if !errors.Is(err, ErrChanged) || n != readAttempts {
		t.Errorf("always changing: %v after %d reads, want ErrChanged after %d", err, n, readAttempts)
	}

	_, err = newReader(func() { touch(t, filepath.Join(dir, UIDListName+".lock"), time.Now()) }).readConsistent()
	if !errors.Is(err, ErrLocked) {
		t.Errorf("lock taken during the read: %v, want ErrLocked", err)
	}
}
