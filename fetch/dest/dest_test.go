package dest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// testMessages are the cases every storing destination is run through:
// what the POP3 client hands over (CRLF) and what a Unix-line-end store
// must hold.
var testMessages = []struct {
	name string
	in   string // as the POP3 client returns it
	lf   string // CRLF -> LF
}{
	{"crlf", "Subject: a\r\n\r\nline 1\r\nline 2\r\n", "Subject: a\n\nline 1\nline 2\n"},
	{"no final newline", "Subject: b\r\n\r\nno end", "Subject: b\n\nno end"},
	{"from lines", "Subject: c\r\n\r\nFrom here\r\n>From there\r\n>>From x\r\nFrom\r\n", "Subject: c\n\nFrom here\n>From there\n>>From x\nFrom\n"},
	{"lone cr", "Subject: d\r\n\r\na\rb\r\n", "Subject: d\n\na\rb\n"},
	{"dot lines", "Subject: e\r\n\r\n.\r\n..x\r\n", "Subject: e\n\n.\n..x\n"},
	{"empty body", "Subject: f\r\n\r\n", "Subject: f\n\n"},
}

// bigMessage is a 5 MB message with CRLF line ends, and its LF form.
func bigMessage() (crlf, lf string) {
	var b strings.Builder
	b.WriteString("Subject: big\r\n\r\n")
	line := strings.Repeat("0123456789", 7) + "\r\n"
	for i := 0; b.Len() < 5<<20; i++ {
		if i%1000 == 0 {
			b.WriteString("From the middle of a big message\r\n")
		}
		b.WriteString(line)
	}
	crlf = b.String()
	return crlf, strings.ReplaceAll(crlf, "\r\n", "\n")
}

// failingReader returns good data, then an error, as a POP3 connection
// dropping mid-RETR does.
type failingReader struct {
	data string
	err  error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.data == "" {
		return 0, f.err
	}
	n := copy(p, f.data)
	f.data = f.data[n:]
	return n, nil
}

var errDropped = errors.New("connection dropped")

func newFailingReader() io.Reader {
	return &failingReader{data: "Subject: x\r\n\r\n" + strings.Repeat("partial line\r\n", 20000), err: errDropped}
}

func TestOpen(t *testing.T) {
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOME", home)
	tests := []struct {
		spec    string
		want    string // description of the result
		wantErr string // substring of the error
	}{
		{spec: "maildir:" + dir + "/Maildir", want: "maildir " + dir + "/Maildir"},
		{spec: "mbox:" + dir + "/mbox", want: "mbox " + dir + "/mbox"},
		{spec: "mbox:~/mbox", want: "mbox " + filepath.Join(home, "mbox")},
		{spec: "maildir:~", want: "maildir " + home},
		{spec: "mda:procmail -d bob", want: "mda procmail -d bob"},
		{spec: "lmtp:127.0.0.1:24", want: "lmtp tcp 127.0.0.1:24"},
		{spec: "lmtp:unix:/run/dovecot/lmtp", want: "lmtp unix /run/dovecot/lmtp"},
		{spec: "lmtp:/run/dovecot/lmtp", want: "lmtp unix /run/dovecot/lmtp"},
		{spec: "smtp:[::1]:2525", want: "smtp tcp [::1]:2525"},
		{spec: "smtp:mail.example", want: "smtp tcp mail.example:25"},
		{spec: "smtp:[::1]", want: "smtp tcp [::1]:25"},
		{spec: "lmtp:localhost", wantErr: "want host:port"},
		{spec: "lmtp:unix:relative", wantErr: "not absolute"},
		{spec: "lmtp:", wantErr: "empty address"},
		{spec: "maildir:", wantErr: "empty path"},
		{spec: "mbox:", wantErr: "empty path"},
		{spec: "mda:  ", wantErr: "empty command"},
		{spec: "mbox:" + dir + "/missing/mbox", wantErr: "no such file"},
		{spec: "imap:foo", wantErr: `unknown scheme "imap"`},
		{spec: "/var/mail/bob", wantErr: "want SCHEME:ARGUMENT"},
	}
	for _, tt := range tests {
		d, err := Open(tt.spec, Options{})
		var got, gotErr string
		if err != nil {
			gotErr = err.Error()
		} else {
			got = describe(d)
			d.Close()
		}
		if tt.wantErr != "" {
			if !strings.Contains(gotErr, tt.wantErr) {
				t.Errorf("Open(%q) error = %q, want it to contain %q", tt.spec, gotErr, tt.wantErr)
			}
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" || gotErr != "" {
			t.Errorf("Open(%q) (-want +got):\n%s error %s", tt.spec, diff, gotErr)
		}
	}
}

// Open's error returns carry a nil interface, not a nil pointer wrapped in
// one: `if d != nil { d.Close() }` after a failed Open must not call a
// method on a nil *maildirDest or *mboxDest.
func TestOpenErrorNilDestination(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, spec := range []string{
		"maildir:" + file + "/Maildir",  // openMaildir fails
		"mbox:" + dir + "/missing/mbox", // openMbox fails
		"mbox:" + file + "/mbox",
		"mbox:" + dir, // a directory
		"maildir:",
		"mda:",
		"lmtp:",
		"nonsense",
	} {
		d, err := Open(spec, Options{})
		if err == nil {
			d.Close()
			t.Errorf("Open(%q) succeeded", spec)
			continue
		}
		if d != nil {
			t.Errorf("Open(%q) = %#v (a non-nil Destination) with error %v", spec, d, err)
		}
	}
}

func describe(d Destination) string {
	switch d := d.(type) {
	case *maildirDest:
		return "maildir " + d.dir
	case *mboxDest:
		return "mbox " + d.path
	case *mdaDest:
		return "mda " + d.command
	case *smtpDest:
		return fmt.Sprintf("%s %s %s", d.proto(), d.network, d.addr)
	}
	return fmt.Sprintf("%T", d)
}

func TestCheckKey(t *testing.T) {
	tests := []struct {
		key string
		ok  bool
	}{
		{"a", true},
		{"acct-1.pop.example_0123ABC", true},
		{strings.Repeat("k", MaxKeyLen), true},
		{strings.Repeat("k", MaxKeyLen+1), false},
		{"", false},
		{"a/b", false},
		{"a:2,S", false},
		{"a b", false},
		{"a\nX-Evil: 1", false},
		{"ключ", false},
	}
	for _, tt := range tests {
		if err := checkKey(tt.key); (err == nil) != tt.ok {
			t.Errorf("checkKey(%q) = %v, want ok %v", tt.key, err, tt.ok)
		}
	}
}

func TestTemporaryIO(t *testing.T) {
	tests := []struct {
		err  error
		temp bool
	}{
		{&os.PathError{Op: "write", Path: "x", Err: syscall.ENOSPC}, true},
		{&os.PathError{Op: "write", Path: "x", Err: syscall.EDQUOT}, true},
		{&os.PathError{Op: "open", Path: "x", Err: syscall.EACCES}, false},
		{errDropped, false},
	}
	for _, tt := range tests {
		got := temporaryIO(tt.err)
		if errors.Is(got, ErrTemporary) != tt.temp || !errors.Is(got, tt.err) {
			t.Errorf("temporaryIO(%v) = %v, want temporary %v and wrapping", tt.err, got, tt.temp)
		}
	}
	if temporaryIO(nil) != nil {
		t.Error("temporaryIO(nil) != nil")
	}
}

// Every destination refuses a bad key before touching anything, and a
// closed one refuses work.
func TestDeliverChecks(t *testing.T) {
	dir := t.TempDir()
	for _, spec := range []string{"maildir:" + dir + "/md", "mbox:" + dir + "/mb", "mda:cat >/dev/null", "lmtp:127.0.0.1:1", "smtp:127.0.0.1:1"} {
		d, err := Open(spec, Options{})
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		if err := d.Deliver(ctx, strings.NewReader("x\r\n"), Message{Key: "../evil"}); err == nil {
			t.Errorf("%s: Deliver with key ../evil succeeded", spec)
		}
		d.Close()
		if err := d.Deliver(ctx, strings.NewReader("x\r\n"), Message{Key: "k", Recipient: "r"}); !errors.Is(err, ErrClosed) {
			t.Errorf("%s: Deliver after Close = %v, want ErrClosed", spec, err)
		}
	}
}

// A message bigger than MaxMessageSize is refused, not stored truncated.
func TestMaxMessageSize(t *testing.T) {
	dir := t.TempDir()
	for _, spec := range []string{"maildir:" + dir + "/md", "mbox:" + dir + "/mb", "mda:cat >" + dir + "/out"} {
		d, err := Open(spec, Options{MaxMessageSize: 1000})
		if err != nil {
			t.Fatal(err)
		}
		err = d.Deliver(context.Background(), strings.NewReader(strings.Repeat("x", 1001)), Message{Key: "big"})
		if !errors.Is(err, ErrTooLarge) {
			t.Errorf("%s: Deliver of 1001 octets = %v, want ErrTooLarge", spec, err)
		}
		if err := d.Deliver(context.Background(), strings.NewReader(strings.Repeat("x", 1000)), Message{Key: "fits"}); err != nil {
			t.Errorf("%s: Deliver of 1000 octets: %v", spec, err)
		}
		d.Close()
	}
}
