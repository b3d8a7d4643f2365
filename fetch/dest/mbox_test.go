package dest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

// TestMain lets the test binary serve as the second process of
// TestMboxConcurrentProcesses, TestMboxKilledMidAppend and
// TestMboxKilledCreatingDotLock: re-executed with POPBOX_DEST_HELPER set,
// it delivers and exits, or is killed, instead of running tests.
func TestMain(m *testing.M) {
	switch os.Getenv("POPBOX_DEST_HELPER") {
	case "mbox-writer":
		os.Exit(mboxWriterHelper())
	case "killed-append":
		os.Exit(killedAppendHelper())
	case "dotlock-killed":
		os.Exit(dotLockKilledHelper())
	}
	os.Exit(m.Run())
}

func mboxWriterHelper() int {
	path, prefix := os.Getenv("POPBOX_DEST_MBOX"), os.Getenv("POPBOX_DEST_PREFIX")
	n, _ := strconv.Atoi(os.Getenv("POPBOX_DEST_COUNT"))
	if err := appendNumbered(path, prefix, n); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// numbered is message i of writer prefix: sizes vary, and every body has
// lines an mbox must quote.
func numbered(prefix string, i int) (crlf, lf string) {
	var b strings.Builder
	fmt.Fprintf(&b, "Subject: %s %d\r\n\r\n", prefix, i)
	for j := range 20 + i*37 {
		fmt.Fprintf(&b, "From %s line %d of %d\r\n>From quoted\r\n", prefix, j, i)
	}
	crlf = b.String()
	return crlf, strings.ReplaceAll(crlf, "\r\n", "\n")
}

func appendNumbered(path, prefix string, n int) error {
	d, err := Open("mbox:"+path, Options{})
	if err != nil {
		return err
	}
	defer d.Close()
	for i := range n {
		crlf, _ := numbered(prefix, i)
		key := fmt.Sprintf("%s-%d", prefix, i)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := d.Deliver(ctx, strings.NewReader(crlf), Message{Key: key, Sender: prefix + "@example.org"})
		cancel()
		if err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
	}
	return nil
}

// mboxEntry is one message parsed back from an mbox.
type mboxEntry struct {
	From string // the From_ line without "From " and "\n"
	Key  string // from our X-Popbox-Key header, which is removed from Body
	Body string // unquoted
}

// parseMbox is an mboxrd reader written for the tests, independent of the
// writer: a message starts at a "From " line at the start of the file or
// after a blank line, ends with a blank line, and ^>+From  loses one '>'.
func parseMbox(t *testing.T, data string) []mboxEntry {
	t.Helper()
	var out []mboxEntry
	lines := strings.SplitAfter(data, "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	var cur *mboxEntry
	var body []string
	finish := func() {
		if cur == nil {
			return
		}
		if len(body) == 0 || body[len(body)-1] != "\n" {
			t.Fatalf("message %q does not end with a blank line: %q", cur.From, body)
		}
		body = body[:len(body)-1]
		if len(body) > 0 && strings.HasPrefix(body[0], keyHeader) {
			cur.Key = strings.TrimSuffix(strings.TrimPrefix(body[0], keyHeader), "\n")
			body = body[1:]
		}
		cur.Body = unquoteMboxrd(strings.Join(body, ""))
		out = append(out, *cur)
	}
	for i, l := range lines {
		if strings.HasPrefix(l, "From ") {
			if i > 0 && lines[i-1] != "\n" {
				t.Fatalf("line %d: From_ line not after a blank line", i)
			}
			finish()
			cur, body = &mboxEntry{From: strings.TrimSuffix(l[5:], "\n")}, nil
			continue
		}
		if cur == nil {
			t.Fatalf("mbox does not start with a From_ line: %q", l)
		}
		body = append(body, l)
	}
	finish()
	return out
}

func openTestMbox(t *testing.T, initial string) (*mboxDest, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "mbox")
	if initial != "" {
		if err := os.WriteFile(path, []byte(initial), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	d, err := Open("mbox:"+path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d.(*mboxDest), path
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// withFinalNewline is what a message reads back as from an mbox, which has
// no way to store "no final newline".
func withFinalNewline(s string) string {
	if strings.HasSuffix(s, "\n") {
		return s
	}
	return s + "\n"
}

func TestMboxDeliverRoundTrip(t *testing.T) {
	// An existing mbox whose last message lacks the blank separator line.
	const old = "From someone@example.org Mon Jan  1 00:00:00 2024\nSubject: old\n\n>From is quoted\n"
	d, path := openTestMbox(t, old)
	crlf5, lf5 := bigMessage()
	cases := append(testMessages[:len(testMessages):len(testMessages)], struct{ name, in, lf string }{"5 MB", crlf5, lf5})
	when := time.Date(2025, time.March, 7, 9, 5, 3, 0, time.UTC)
	senders := []string{"", "bob@example.org", "two words\tand\ncontrols"}
	want := []mboxEntry{{From: "someone@example.org Mon Jan  1 00:00:00 2024", Body: "Subject: old\n\nFrom is quoted\n"}}
	wantSender := []string{"MAILER-DAEMON", "bob@example.org", "two_words_and_controls"}
	for i, tt := range cases {
		key := fmt.Sprintf("k%d", i)
		m := Message{Key: key, Sender: senders[i%len(senders)], Time: when}
		if err := d.Deliver(context.Background(), strings.NewReader(tt.in), m); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		want = append(want, mboxEntry{From: wantSender[i%len(senders)] + " Fri Mar  7 09:05:03 2025", Key: key, Body: withFinalNewline(tt.lf)})
	}
	got := parseMbox(t, readFile(t, path))
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("mbox (-want +got):\n%s", diff)
	}
	if _, err := os.Stat(path + ".lock"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dot-lock left behind: %v", err)
	}
}

func TestMboxCreatedPrivate(t *testing.T) {
	d, path := openTestMbox(t, "")
	if err := d.Deliver(context.Background(), strings.NewReader("S: x\r\n\r\nhi\r\n"), Message{Key: "k"}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, path + keysSuffix} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", p, fi.Mode().Perm())
		}
	}
	fromRE := regexp.MustCompile(`^From MAILER-DAEMON [A-Z][a-z]{2} [A-Z][a-z]{2} [ 0-9]\d \d\d:\d\d:\d\d \d{4}\n`)
	if got := readFile(t, path); !fromRE.MatchString(got) {
		t.Errorf("From_ line of %q is not asctime", got)
	}
}

// Failures leave the mbox as it was: a reader failing mid-message (before
// the mbox is touched, thanks to the spool), and a write failing in the
// middle of the append (cut back).
func TestMboxFailureTruncatesBack(t *testing.T) {
	const old = "From a Mon Jan  1 00:00:00 2024\nSubject: old\n\nbody\n\n"
	tests := []struct {
		name    string
		reader  func() *failingReader
		fault   func(int64) error
		wantErr error
	}{
		{name: "reader fails", reader: func() *failingReader { return newFailingReader().(*failingReader) }, wantErr: errDropped},
		{name: "write fails after 100 KB", reader: func() *failingReader {
			return &failingReader{data: strings.Repeat("line of text\r\n", 100000)}
		}, fault: func(n int64) error {
			if n > 100_000 {
				return errDropped
			}
			return nil
		}, wantErr: errDropped},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, path := openTestMbox(t, old)
			d.appendFault = tt.fault
			r := tt.reader()
			if r.err == nil {
				r.err = io.EOF
			}
			err := d.Deliver(context.Background(), r, Message{Key: "k"})
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Deliver = %v, want %v", err, tt.wantErr)
			}
			if got := readFile(t, path); got != old {
				t.Errorf("mbox changed: %d octets, want %d", len(got), len(old))
			}
			if _, err := os.Stat(path + ".lock"); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("dot-lock left behind: %v", err)
			}
			if has, err := d.Has(context.Background(), "k"); err != nil || has {
				t.Errorf("Has(k) = %v, %v after a failed delivery", has, err)
			}
			// The retry succeeds and is then found, despite the stale intent.
			d.appendFault = nil
			if err := d.Deliver(context.Background(), strings.NewReader("S: r\r\n\r\nretry\r\n"), Message{Key: "k"}); err != nil {
				t.Fatal(err)
			}
			d2, _ := Open("mbox:"+path, Options{})
			defer d2.Close()
			if has, err := d2.Has(context.Background(), "k"); err != nil || !has {
				t.Errorf("Has(k) = %v, %v after the retry", has, err)
			}
			if n := len(parseMbox(t, readFile(t, path))); n != 2 {
				t.Errorf("%d messages, want 2", n)
			}
		})
	}
}

func TestMboxHas(t *testing.T) {
	ctx := context.Background()
	d, path := openTestMbox(t, "")
	for _, k := range []string{"k1", "k2", "k3"} {
		if err := d.Deliver(ctx, strings.NewReader("Subject: "+k+"\r\n\r\nFrom x\r\n"), Message{Key: k}); err != nil {
			t.Fatal(err)
		}
	}
	has := func(want map[string]bool) {
		t.Helper()
		// A fresh Destination each time: the answer must come from disk.
		d, err := Open("mbox:"+path, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		got := map[string]bool{}
		for k := range want {
			ok, err := d.Has(ctx, k)
			if err != nil {
				t.Fatalf("Has(%s): %v", k, err)
			}
			got[k] = ok
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Has (-want +got):\n%s", diff)
		}
	}
	has(map[string]bool{"k1": true, "k2": true, "k3": true, "k4": false})
	// The Destination that delivered knows without verifying.
	if ok, err := d.Has(ctx, "k3"); err != nil || !ok {
		t.Errorf("Has(k3) on the delivering Destination = %v, %v", ok, err)
	}

	// Crash after the intent was fsynced, before the append: not delivered.
	size := int64(len(readFile(t, path)))
	appendTo(t, path+keysSuffix, fmt.Sprintf("D k4 %d 300 0badc0de\n", size))
	has(map[string]bool{"k3": true, "k4": false})

	// Crash in the middle of the append: the torn entry is not a delivery.
	if err := d.Deliver(ctx, strings.NewReader("Subject: k5\r\n\r\n"+strings.Repeat("body\r\n", 1000)), Message{Key: "k5"}); err != nil {
		t.Fatal(err)
	}
	has(map[string]bool{"k5": true})
	full := readFile(t, path)
	if err := os.Truncate(path, int64(len(full)-100)); err != nil {
		t.Fatal(err)
	}
	has(map[string]bool{"k1": true, "k5": false})
	if err := os.WriteFile(path, []byte(full), 0o600); err != nil {
		t.Fatal(err)
	}

	// A torn record line at the end of the sidecar (crash while writing the
	// intent, so the append never began) is ignored.
	appendTo(t, path+keysSuffix, "D k6 12")
	has(map[string]bool{"k5": true, "k6": false})

	// The sidecar is deleted: Has scans the mbox, and the next delivery
	// recreates the sidecar from that scan.
	if err := os.Remove(path + keysSuffix); err != nil {
		t.Fatal(err)
	}
	has(map[string]bool{"k1": true, "k5": true, "k7": false})
	d2, err := Open("mbox:"+path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	if err := d2.Deliver(ctx, strings.NewReader("Subject: k7\r\n\r\n"), Message{Key: "k7"}); err != nil {
		t.Fatal(err)
	}
	keys := readFile(t, path+keysSuffix)
	for _, want := range []string{keysMagic + "\n", "I k1\n", "I k5\n", "D k7 "} {
		if !strings.Contains(keys, want) {
			t.Errorf("recreated sidecar %q lacks %q", keys, want)
		}
	}
	has(map[string]bool{"k1": true, "k5": true, "k7": true, "k8": false})
}

func appendTo(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

// Two processes append 50 messages each to one mbox through separate
// Destinations, and a goroutine in this process with a third Destination
// does the same: every message arrives intact and is found by Has.
func TestMboxConcurrentProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	path := filepath.Join(t.TempDir(), "mbox")
	const n = 50
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "POPBOX_DEST_HELPER=mbox-writer", "POPBOX_DEST_MBOX="+path, "POPBOX_DEST_PREFIX=proc", "POPBOX_DEST_COUNT="+strconv.Itoa(n))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 2)
	for _, prefix := range []string{"gor1", "gor2"} {
		go func() { done <- appendNumbered(path, prefix, n) }()
	}
	for range 2 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("helper process: %v: %s", err, stderr.String())
	}

	entries := parseMbox(t, readFile(t, path))
	got := map[string]mboxEntry{}
	for _, e := range entries {
		got[e.Key] = e
	}
	if len(entries) != 3*n || len(got) != 3*n {
		t.Fatalf("%d messages, %d distinct keys; want %d", len(entries), len(got), 3*n)
	}
	d, err := Open("mbox:"+path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for _, prefix := range []string{"proc", "gor1", "gor2"} {
		for i := range n {
			key := fmt.Sprintf("%s-%d", prefix, i)
			_, lf := numbered(prefix, i)
			if e := got[key]; e.Body != lf || !strings.HasPrefix(e.From, prefix+"@example.org ") {
				t.Errorf("%s: message differs: from %q, %d octets, want %d", key, e.From, len(e.Body), len(lf))
			}
			if ok, err := d.Has(context.Background(), key); err != nil || !ok {
				t.Errorf("Has(%s) = %v, %v", key, ok, err)
			}
		}
	}
}

func TestMboxLocking(t *testing.T) {
	msg := "Subject: x\r\n\r\nhi\r\n"
	t.Run("stale dot-lock is removed", func(t *testing.T) {
		d, path := openTestMbox(t, "")
		if err := os.WriteFile(path+".lock", []byte("12345\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		old := time.Now().Add(-10 * time.Minute)
		if err := os.Chtimes(path+".lock", old, old); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := d.Deliver(ctx, strings.NewReader(msg), Message{Key: "k"}); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(path + ".lock"); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("dot-lock still there: %v", err)
		}
		if n := len(parseMbox(t, readFile(t, path))); n != 1 {
			t.Errorf("%d messages, want 1", n)
		}
		if stale, _ := filepath.Glob(path + ".lock.*"); len(stale) != 0 {
			t.Errorf("leftovers of breaking the lock: %q", stale)
		}
	})
	t.Run("fresh dot-lock is respected", func(t *testing.T) {
		d, path := openTestMbox(t, "")
		if err := os.WriteFile(path+".lock", nil, 0o600); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := d.Deliver(ctx, strings.NewReader(msg), Message{Key: "k"})
		if !errors.Is(err, ErrTemporary) || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Deliver = %v, want ErrTemporary and DeadlineExceeded", err)
		}
		if el := time.Since(start); el > 5*time.Second {
			t.Errorf("Deliver took %v to give up", el)
		}
		if _, err := os.Stat(path + ".lock"); err != nil {
			t.Errorf("someone else's dot-lock was removed: %v", err)
		}
		if got := readFile(t, path); got != "" {
			t.Errorf("mbox written while locked: %q", got)
		}
	})
	t.Run("fcntl lock is waited for", func(t *testing.T) {
		d, path := openTestMbox(t, "")
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		// A classic (process-owned) fcntl lock, like postfix or mutt take,
		// would not exclude this process; the OFD lock stands in for it and
		// conflicts the same way.
		lk := unix.Flock_t{Type: unix.F_WRLCK}
		if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk); err != nil {
			t.Fatal(err)
		}
		const hold = 300 * time.Millisecond
		unlocked := make(chan struct{})
		defer func() { <-unlocked }()
		go func() {
			defer close(unlocked)
			time.Sleep(hold)
			unlock := unix.Flock_t{Type: unix.F_UNLCK}
			unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &unlock)
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		start := time.Now()
		if err := d.Deliver(ctx, strings.NewReader(msg), Message{Key: "k"}); err != nil {
			t.Fatal(err)
		}
		if el := time.Since(start); el < hold {
			t.Errorf("delivered after %v, while the fcntl lock was still held", el)
		}
		// Waiting for fcntl must not have kept the dot-lock (deadlock with
		// fcntl-first programs); it is gone after delivery too.
		if _, err := os.Stat(path + ".lock"); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("dot-lock left behind: %v", err)
		}
	})
}
