package dest

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// An MDA that stores stdin in $DIR/$POPBOX_KEY atomically (via a temporary
// name, as real MDAs do) and records its environment.
const storingMDA = `cat > "$DIR/tmp.$POPBOX_KEY" && mv "$DIR/tmp.$POPBOX_KEY" "$DIR/msg.$POPBOX_KEY" && printf '%s|%s' "$POPBOX_SENDER" "$POPBOX_RECIPIENT" > "$DIR/env.$POPBOX_KEY"`

func TestMDADeliver(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("DIR", dir)
	t.Setenv("POPBOX_KEY", "inherited-must-not-show")
	d, err := Open("mda:"+storingMDA, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	crlf, lf := bigMessage()
	cases := append(testMessages[:len(testMessages):len(testMessages)], struct{ name, in, lf string }{"5 MB", crlf, lf})
	for i, tt := range cases {
		key := "k" + strconv.Itoa(i)
		m := Message{Key: key, Sender: "a@example.org", Recipient: "bob"}
		if err := d.Deliver(context.Background(), strings.NewReader(tt.in), m); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if got := readFile(t, filepath.Join(dir, "msg."+key)); got != tt.lf {
			t.Errorf("%s: MDA got %d octets:\n%s", tt.name, len(got), cmp.Diff(tt.lf, got))
		}
		if got := readFile(t, filepath.Join(dir, "env."+key)); got != "a@example.org|bob" {
			t.Errorf("%s: MDA environment %q", tt.name, got)
		}
	}
	if has, err := d.Has(context.Background(), "k0"); has || !errors.Is(err, ErrUnknowable) {
		t.Errorf("Has = %v, %v; want false, ErrUnknowable", has, err)
	}
}

func TestMDAFailures(t *testing.T) {
	tests := []struct {
		name      string
		command   string
		timeout   time.Duration
		temporary bool
		wantInErr []string
	}{
		{name: "exit 1", command: `cat >/dev/null; echo "first line" >&2; echo "mailbox full for bob" >&2; exit 1`,
			wantInErr: []string{"exited with 1", "first line | mailbox full for bob"}},
		{name: "exit 75", command: `cat >/dev/null; echo "try later" >&2; exit 75`, temporary: true,
			wantInErr: []string{"EX_TEMPFAIL", "try later"}},
		{name: "killed by signal", command: `cat >/dev/null; kill -TERM $$`, wantInErr: []string{"signal"}},
		{name: "timeout", command: `cat >/dev/null; sleep 30`, timeout: 300 * time.Millisecond, temporary: true,
			wantInErr: []string{"deadline exceeded"}},
		{name: "exit 0 without reading", command: `exit 0`, wantInErr: []string{"without reading the whole message"}},
		{name: "not found", command: `/nonexistent/mda`, wantInErr: []string{"exited with 127", "not found"}},
		{name: "much output", command: `cat >/dev/null; yes "spam spam spam" | head -n 60000 >&2; echo LAST >&2; exit 1`,
			wantInErr: []string{"spam spam spam | LAST"}},
	}
	crlf, _ := bigMessage()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := Open("mda:"+tt.command, Options{MDATimeout: tt.timeout})
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			start := time.Now()
			err = d.Deliver(context.Background(), strings.NewReader(crlf), Message{Key: "k"})
			if err == nil {
				t.Fatal("Deliver succeeded")
			}
			if got := errors.Is(err, ErrTemporary); got != tt.temporary {
				t.Errorf("temporary = %v, want %v (err %v)", got, tt.temporary, err)
			}
			for _, w := range tt.wantInErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if len(err.Error()) > 2*mdaTailBytes {
				t.Errorf("error is %d octets long", len(err.Error()))
			}
			if el := time.Since(start); el > 10*time.Second {
				t.Errorf("took %v", el)
			}
		})
	}
}

// On timeout the whole process group dies, not only the shell: a
// grandchild left running would hold the mailbox or deliver later.
func TestMDATimeoutKillsGroup(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pid")
	d, err := Open(`mda:sleep 60 & echo $! > `+pidFile+`; cat >/dev/null; wait`, Options{MDATimeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	err = d.Deliver(context.Background(), strings.NewReader("S: x\r\n\r\n"), Message{Key: "k"})
	if !errors.Is(err, ErrTemporary) {
		t.Fatalf("Deliver = %v, want ErrTemporary", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(readFile(t, pidFile)))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for processAlive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("grandchild %d still running after the timeout", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// processAlive: the process exists and is not a zombie waiting for a
// parent (in a container PID 1 may never reap it).
func processAlive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	_, after, _ := strings.Cut(string(b), ") ")
	return !strings.HasPrefix(after, "Z") && !strings.HasPrefix(after, "X")
}

// A message the source could not deliver whole never reaches the MDA's
// mailbox: the MDA is killed before it sees end of input.
func TestMDAReaderFailure(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("DIR", dir)
	d, err := Open("mda:"+storingMDA, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	err = d.Deliver(context.Background(), newFailingReader(), Message{Key: "k"})
	if !errors.Is(err, errDropped) {
		t.Fatalf("Deliver = %v, want %v", err, errDropped)
	}
	if _, err := os.Stat(filepath.Join(dir, "msg.k")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("partial message delivered: %v", err)
	}
}

// A cancelled fetch stops the MDA too.
func TestMDAContextCancel(t *testing.T) {
	d, err := Open("mda:sleep 30", Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = d.Deliver(ctx, strings.NewReader("S: x\r\n\r\n"), Message{Key: "k"})
	if !errors.Is(err, ErrTemporary) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Deliver = %v, want ErrTemporary and DeadlineExceeded", err)
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Errorf("took %v", el)
	}
}

func TestTailBuffer(t *testing.T) {
	tests := []struct {
		name   string
		writes []string
		want   string
	}{
		{"nothing", nil, ""},
		{"blank", []string{"\n\n"}, ""},
		{"few lines", []string{"a\nb\n"}, ": a | b"},
		{"last five", []string{"1\n2\n3\n4\n5\n6\n7\n"}, ": 3 | 4 | 5 | 6 | 7"},
		{"cut fragment dropped", []string{strings.Repeat("x", 5000) + "\nend\n"}, ": end"},
		{"many writes", []string{strings.Repeat("y\n", 3000), "z\n"}, ": y | y | y | y | z"},
	}
	for _, tt := range tests {
		b := &tailBuffer{max: mdaTailBytes}
		for _, w := range tt.writes {
			b.Write([]byte(w))
		}
		if got := b.suffix(); got != tt.want {
			t.Errorf("%s: suffix = %q, want %q", tt.name, got, tt.want)
		}
		if len(b.buf) > mdaTailBytes {
			t.Errorf("%s: kept %d octets", tt.name, len(b.buf))
		}
	}
}
