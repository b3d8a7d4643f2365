package dest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// logBuffer collects what a Destination logs, for tests that expect a
// warning (or none).
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func openLoggedMbox(t *testing.T, path string) (*mboxDest, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	d, err := Open("mbox:"+path, Options{Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d.(*mboxDest), logs
}

// recoverTime is the From_ line date of the recovery tests' messages, fixed
// so that delivering a message again writes the very same octets.
var recoverTime = time.Date(2025, time.March, 7, 9, 5, 3, 0, time.UTC)

const oldMbox = "From someone@example.org Mon Jan  1 00:00:00 2024\nSubject: old\n\nbody\n\n"

// recoverMessage is a 300 kB message (longer than the 64 KiB chunks the
// append writes, so a kill can land inside it) with lines mboxrd quotes.
func recoverMessage(key string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Subject: %s\r\n\r\n", key)
	for i := 0; b.Len() < 300_000; i++ {
		if i%100 == 0 {
			b.WriteString("From the middle\r\n\r\n")
		}
		fmt.Fprintf(&b, "%s line %d of a message long enough to be cut\r\n", key, i)
	}
	return b.String()
}

func deliverRecover(ctx context.Context, d Destination, key string) error {
	return d.Deliver(ctx, strings.NewReader(recoverMessage(key)), Message{Key: key, Sender: "s@example.org", Time: recoverTime})
}

// recoverBase makes an mbox holding oldMbox, then k1, then k2 appended by
// Deliver, and returns its path, where k2's entry starts and the whole
// content.
func recoverBase(t *testing.T) (path string, off int64, full string) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "mbox")
	if err := os.WriteFile(path, []byte(oldMbox), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := Open("mbox:"+path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := deliverRecover(context.Background(), d, "k1"); err != nil {
		t.Fatal(err)
	}
	off = int64(len(readFile(t, path)))
	if err := deliverRecover(context.Background(), d, "k2"); err != nil {
		t.Fatal(err)
	}
	return path, off, readFile(t, path)
}

// separatorFor is what an mboxrd append puts before a From_ line after s.
func separatorFor(s string) string {
	switch {
	case s == "" || strings.HasSuffix(s, "\n\n"):
		return ""
	case strings.HasSuffix(s, "\n"):
		return "\n"
	}
	return "\n\n"
}

// A process killed in the middle of an append leaves the start of its
// entry at the end of the mbox and its intent record last in the sidecar.
// The next Deliver cuts that start off before appending, so the mbox ends
// up as if the append had never been interrupted, but only when the torn
// tail is provably ours; otherwise nothing is cut (a duplicate at worst,
// never a loss of someone else's mail).
func TestMboxRecoverInterruptedAppend(t *testing.T) {
	_, off, full := recoverBase(t)
	end := int64(len(full))
	entry := full[off:]
	fromEnd := off + int64(strings.IndexByte(entry, '\n')) + 1
	hdrEnd := fromEnd + int64(len(keyHeader+"k2\n"))
	mid := off + (end-off)/2
	// midLine is a cut in the middle of a body line.
	midLine := mid
	for full[midLine-1] == '\n' || full[midLine] == '\n' {
		midLine++
	}
	// midBlank is a cut right after a blank line of the body.
	midBlank := off + int64(strings.Index(entry[len(entry)/2:], "\n\n")) + int64(len(entry)/2) + 2

	const foreign = "From other@example.org Mon Jan  1 00:00:00 2024\nSubject: foreign\n\nnot ours\n\n"
	tests := []struct {
		name   string
		cut    int64                        // truncate the mbox to this size
		then   func(t *testing.T, p string) // further damage, or nil
		extra  string                       // then appended
		cutOff bool                         // recovery must cut back to off
		log    string                       // in the log, "" for no warning at all
	}{
		{name: "cut in the body", cut: mid, cutOff: true, log: "cut off the incomplete end"},
		{name: "cut after a blank body line", cut: midBlank, cutOff: true, log: "cut off the incomplete end"},
		{name: "cut one octet short", cut: end - 1, cutOff: true, log: "cut off the incomplete end"},
		{name: "cut in the From_ line", cut: off + 3, cutOff: true, log: "cut off the incomplete end"},
		{name: "cut after the From_ line", cut: fromEnd, cutOff: true, log: "cut off the incomplete end"},
		{name: "cut in the key header", cut: fromEnd + 8, cutOff: true, log: "cut off the incomplete end"},
		{name: "cut after the key header", cut: hdrEnd, cutOff: true, log: "cut off the incomplete end"},
		{name: "append never began", cut: off},
		{name: "complete", cut: end},
		// Another program (locking with fcntl only, which the killed
		// process no longer held) appended after the torn entry.
		{name: "foreign append at a line start", cut: mid, extra: "\n" + foreign, log: "not only ours"},
		{name: "foreign append glued mid-line", cut: midLine, extra: strings.Replace(foreign, "org ", "org  ", 1), log: "not only ours"},
		{name: "foreign append, no blank line", cut: midLine, extra: "\n" + foreign, log: "not only ours"},
		{name: "another key at OFFSET", cut: mid, then: func(t *testing.T, p string) {
			overwrite(t, p, fromEnd, keyHeader+"k3\n")
		}, log: "not only ours"},
		{name: "no From_ line at OFFSET", cut: mid, then: func(t *testing.T, p string) {
			overwrite(t, p, off, "X")
		}, log: "not only ours"},
		// At or past OFFSET+LENGTH nothing is cut, whatever is there.
		{name: "complete entry changed", cut: end, then: func(t *testing.T, p string) {
			overwrite(t, p, mid, "#")
		}, log: "does not verify"},
		{name: "foreign append after a complete entry", cut: end, extra: foreign},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path, _, _ := recoverBase(t)
			if err := os.Truncate(path, tt.cut); err != nil {
				t.Fatal(err)
			}
			if tt.then != nil {
				tt.then(t, path)
			}
			if tt.extra != "" {
				appendTo(t, path, tt.extra)
			}
			before := readFile(t, path)
			d, logs := openLoggedMbox(t, path)
			if err := deliverRecover(context.Background(), d, "k2"); err != nil {
				t.Fatal(err)
			}
			want := before + separatorFor(before) + entry
			if tt.cutOff {
				want = full
			}
			if got := readFile(t, path); got != want {
				t.Errorf("mbox is %d octets, want %d (cut back: %v); it differs from octet %d", len(got), len(want), tt.cutOff, firstDiff(got, want))
			}
			l := logs.String()
			if tt.log == "" && l != "" {
				t.Errorf("logged %q, want nothing", l)
			}
			if tt.log != "" && !strings.Contains(l, tt.log) {
				t.Errorf("logged %q, want %q", l, tt.log)
			}
			d2, _ := openLoggedMbox(t, path)
			if has, err := d2.Has(context.Background(), "k2"); err != nil || !has {
				t.Errorf("Has(k2) = %v, %v", has, err)
			}
		})
	}
}

func firstDiff(a, b string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func overwrite(t *testing.T, path string, off int64, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte(s), off); err != nil {
		t.Fatal(err)
	}
}

// Recovery looks at the last record only: damage before it (an older
// entry changed) is neither cut nor reported, and a complete last entry
// raises no warning.
func TestMboxRecoverOnlyLastRecord(t *testing.T) {
	path, off, full := recoverBase(t)
	// An older record's append, torn long ago and then followed by k2, is
	// not the last: nothing before k2 is touched.
	overwrite(t, path, off-10, "#")
	damaged := readFile(t, path)
	d, logs := openLoggedMbox(t, path)
	for _, k := range []string{"k3", "k4"} {
		if err := deliverRecover(context.Background(), d, k); err != nil {
			t.Fatal(err)
		}
	}
	if got := readFile(t, path); !strings.HasPrefix(got, damaged) || len(got) <= len(full) {
		t.Errorf("the mbox before the last record changed")
	}
	if l := logs.String(); l != "" {
		t.Errorf("logged %q", l)
	}
}

// A crash while the intent record was written leaves a line without its
// newline; the next record must still be a line of its own.
func TestMboxTornIntentLine(t *testing.T) {
	ctx := context.Background()
	d, path := openTestMbox(t, "")
	if err := d.Deliver(ctx, strings.NewReader("Subject: a\r\n\r\n"), Message{Key: "k1"}); err != nil {
		t.Fatal(err)
	}
	appendTo(t, path+keysSuffix, "D k6 123 45")
	if err := d.Deliver(ctx, strings.NewReader("Subject: b\r\n\r\n"), Message{Key: "k7"}); err != nil {
		t.Fatal(err)
	}
	d2, err := Open("mbox:"+path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	for key, want := range map[string]bool{"k1": true, "k6": false, "k7": true} {
		if has, err := d2.Has(ctx, key); err != nil || has != want {
			t.Errorf("Has(%s) = %v, %v; want %v", key, has, err, want)
		}
	}
	if keys := readFile(t, path+keysSuffix); !strings.Contains(keys, "D k6 123 45\nD k7 ") {
		t.Errorf("sidecar %q: the torn line was not ended before the next record", keys)
	}
}

// Without a sidecar nothing records how long an entry was to be: a torn
// last entry is neither cut off nor counted as delivered, whether Has
// scans the mbox or Deliver rebuilds the sidecar from such a scan.
func TestMboxNoSidecarTornEntry(t *testing.T) {
	ctx := context.Background()
	path, off, full := recoverBase(t)
	torn := full[:off+(int64(len(full))-off)/2]
	for _, tt := range []struct {
		name    string
		content string
		k2      bool
	}{
		{"torn mid-line", torn[:strings.LastIndexByte(torn, '\n')-3], false},
		{"torn at a line end", torn[:strings.LastIndexByte(torn, '\n')+1], false},
		{"complete", full, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(path + keysSuffix); err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Fatal(err)
			}
			d, _ := openLoggedMbox(t, path)
			for key, want := range map[string]bool{"k1": true, "k2": tt.k2} {
				if has, err := d.Has(ctx, key); err != nil || has != want {
					t.Errorf("Has(%s) by scan = %v, %v; want %v", key, has, err, want)
				}
			}
			if err := d.Deliver(ctx, strings.NewReader("Subject: k3\r\n\r\n"), Message{Key: "k3"}); err != nil {
				t.Fatal(err)
			}
			if got := readFile(t, path); !strings.HasPrefix(got, tt.content) {
				t.Errorf("the mbox was cut without a record")
			}
			keys := readFile(t, path+keysSuffix)
			if strings.Contains(keys, "I k2\n") != tt.k2 || !strings.Contains(keys, "I k1\n") {
				t.Errorf("rebuilt sidecar %q: want I k1, and I k2 %v", keys, tt.k2)
			}
		})
	}
}

// killedAppendHelper is the child of TestMboxKilledMidAppend: it delivers
// k2 and, once 100 kB of it are in the mbox, says so and waits to be
// SIGKILLed, holding both locks.
func killedAppendHelper() int {
	d, err := Open("mbox:"+os.Getenv("POPBOX_DEST_MBOX"), Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	d.(*mboxDest).appendFault = func(written int64) error {
		if written >= 100_000 {
			fmt.Println("appending")
			select {}
		}
		return nil
	}
	err = deliverRecover(context.Background(), d, "k2")
	fmt.Fprintln(os.Stderr, "delivered after all:", err)
	return 1
}

// The kill test of the fetch engine, in small: a process SIGKILLed in the
// middle of an append leaves a torn entry and its dot-lock. The next
// Deliver must neither wait five minutes for the lock to age (its owner is
// dead) nor keep the torn entry before the full one.
func TestMboxKilledMidAppend(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	path, off, full := recoverBase(t)
	if err := os.Truncate(path, off); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "POPBOX_DEST_HELPER=killed-append", "POPBOX_DEST_MBOX="+path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	said := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		said <- line
	}()
	select {
	case line := <-said:
		if line != "appending\n" {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("helper said %q: %s", line, stderr.String())
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("helper did not start appending: %s", stderr.String())
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, out)
	cmd.Wait()
	if _, err := os.Stat(path + ".lock"); err != nil {
		t.Fatalf("the killed helper left no dot-lock: %v", err)
	}
	if size := int64(len(readFile(t, path))); size <= off || size >= int64(len(full)) {
		t.Fatalf("after the kill the mbox is %d octets, want a torn entry between %d and %d", size, off, len(full))
	}

	d, logs := openLoggedMbox(t, path)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	if err := deliverRecover(ctx, d, "k2"); err != nil {
		t.Fatalf("Deliver after the kill: %v (log: %s)", err, logs)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("Deliver after the kill took %v", el)
	}
	if got := readFile(t, path); got != full {
		t.Errorf("mbox is %d octets, want %d: the torn entry was kept", len(got), len(full))
	}
	for _, want := range []string{"removed stale dot-lock", "cut off the incomplete end"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log %q lacks %q", logs, want)
		}
	}
}

// foreignEntryIn finds another writer's From_ line wherever it falls,
// across its 64 KiB chunks too, and nothing in our own mboxrd text.
func TestForeignEntryIn(t *testing.T) {
	filler := func(n int) string { return strings.Repeat("abcdefghi\n", n/10+1)[:n] }
	const chunk = 64 << 10
	var positions []int
	for _, base := range []int{0, 1, 100, chunk, 2 * chunk, 3 * chunk} {
		for d := -12; d <= 12; d++ {
			if base+d >= 0 {
				positions = append(positions, base+d)
			}
		}
	}
	for _, at := range positions {
		for _, tt := range []struct {
			insert  string
			foreign bool
		}{
			{"\nFrom other@example.org Mon Jan  1 00:00:00 2024\n", true},
			{"xFrom other@example.org  Tue Jan  1 00:00:00 2024\n", true},
			{"\n>From other@example.org Mon Jan  1 00:00:00 2024\n", true}, // mid-line From_ after '>'
			{"\n>From the middle\n", false},
			{"\nSent From my phone\n", false},
			{"\nFrom:", false},
		} {
			s := filler(at) + tt.insert + filler(200)
			got, err := foreignEntryIn(context.Background(), strings.NewReader(s))
			if err != nil || got != tt.foreign {
				t.Errorf("%q at %d: foreignEntryIn = %v, %v; want %v", tt.insert, at, got, err, tt.foreign)
			}
		}
	}
	// The octet before the reader is taken to be mid-line.
	if got, _ := foreignEntryIn(context.Background(), strings.NewReader("From x\n")); got {
		t.Error(`"From " at the very start counted as a line start`)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := foreignEntryIn(ctx, strings.NewReader(filler(1000))); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled: %v", err)
	}
}
