package fetch

import (
	"errors"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// states summarises a journal as UIDL -> "state/gen/size".
func states(j *Journal) map[string]string {
	out := map[string]string{}
	for _, e := range j.Entries() {
		out[e.UIDL] = e.State.String() + "/" + strconv.Itoa(e.Gen) + "/" + strconv.Itoa(int(e.Size))
	}
	return out
}

func TestJournalRecords(t *testing.T) {
	dir := t.TempDir()
	j, err := OpenJournal(dir, "acct", nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1700000000, 0)
	es := []*Entry{
		{UIDL: "a", Size: 10, FirstSeen: now},
		{UIDL: "b", Size: 20, FirstSeen: now},
		{UIDL: "c", Size: 30, FirstSeen: now},
		{UIDL: "d", Size: 40, FirstSeen: now},
	}
	steps := []error{
		j.Seen(es),
		j.Pending(es[0]), j.Delivered(es[0], 10),
		j.Pending(es[1]),
		j.Pending(es[3]), j.Delivered(es[3], 40), j.Gone(es[3:]),
		j.Run(RunRecord{Time: now, Result: "fetched", Fetched: 1, Bytes: 10, Message: "a \"quoted\" message"}),
	}
	if err := errors.Join(steps...); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"a": "delivered/0/10", "b": "pending/0/20", "c": "seen/0/30", "d": "gone/0/40"}
	if diff := cmp.Diff(want, states(j)); diff != "" {
		t.Errorf("in memory (-want +got):\n%s", diff)
	}
	j.Close()

	r, err := ReadJournal(dir, "acct", nil)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, states(r)); diff != "" {
		t.Errorf("reloaded (-want +got):\n%s", diff)
	}
	wantRun := RunRecord{Time: now, Result: "fetched", Fetched: 1, Bytes: 10, Message: "a \"quoted\" message"}
	if diff := cmp.Diff(wantRun, r.LastRun()); diff != "" {
		t.Errorf("last run (-want +got):\n%s", diff)
	}
	if got := r.Entry("a").FirstSeen; !got.Equal(now) {
		t.Errorf("first seen %v, want %v", got, now)
	}

	// Every line is "CRC32 record" and the file starts with the magic.
	b, err := os.ReadFile(JournalPath(dir, "acct"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if lines[0] != journalMagic {
		t.Errorf("first line %q", lines[0])
	}
	re := regexp.MustCompile(`^[0-9a-f]{8} (seen|pend|dlvd|gone|run|floor) `)
	for _, l := range lines[1:] {
		if !re.MatchString(l) {
			t.Errorf("journal line %q", l)
		}
	}

	// Compaction keeps the live state, drops gone entries and raises
	// the floor past them, so that d comes back as generation 1.
	j, err = OpenJournal(dir, "acct", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Compact(); err != nil {
		t.Fatal(err)
	}
	j.Close()
	r, err = ReadJournal(dir, "acct", nil)
	if err != nil {
		t.Fatal(err)
	}
	delete(want, "d")
	if diff := cmp.Diff(want, states(r)); diff != "" {
		t.Errorf("after compaction (-want +got):\n%s", diff)
	}
	if got := r.NextGen("d"); got != 1 {
		t.Errorf("NextGen of a forgotten UIDL after compaction = %d, want 1", got)
	}
	if got := r.NextGen("a"); got != 1 {
		t.Errorf("NextGen(a) = %d, want 1", got)
	}
	if diff := cmp.Diff(wantRun, r.LastRun()); diff != "" {
		t.Errorf("last run after compaction (-want +got):\n%s", diff)
	}
	if _, err := os.Stat(JournalPath(dir, "acct") + ".tmp"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("compaction left its temporary file: %v", err)
	}
}

// TestJournalTornWrites: a crash can leave a last line without its newline
// or with a wrong checksum; loading ignores it (and OpenJournal cuts it
// off, so the next record starts on its own line). Damage in the middle
// skips only the damaged record.
func TestJournalTornWrites(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mangle func(string) string
		want   map[string]string
	}{
		{"no newline", func(s string) string { return s + "0badc0de dlvd b 0 20" }, map[string]string{"a": "delivered/0/10", "b": "pending/0/20"}},
		{"half a line", func(s string) string { return s[:len(s)-6] }, map[string]string{"a": "delivered/0/10", "b": "seen/0/20"}},
		{"bad checksum last", func(s string) string { return s + "00000000 dlvd b 0 20\n" }, map[string]string{"a": "delivered/0/10", "b": "pending/0/20"}},
		{"bad checksum middle", func(s string) string {
			i := strings.Index(s, " dlvd a")
			return s[:i-8] + "ffffffff" + s[i:]
		}, map[string]string{"a": "pending/0/10", "b": "pending/0/20"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			j, err := OpenJournal(dir, "x", nil)
			if err != nil {
				t.Fatal(err)
			}
			a := &Entry{UIDL: "a", Size: 10, FirstSeen: time.Unix(1, 0)}
			b := &Entry{UIDL: "b", Size: 20, FirstSeen: time.Unix(1, 0)}
			if err := errors.Join(j.Seen([]*Entry{a, b}), j.Pending(a), j.Delivered(a, 10), j.Pending(b)); err != nil {
				t.Fatal(err)
			}
			j.Close()
			path := JournalPath(dir, "x")
			data, _ := os.ReadFile(path)
			writeFile(t, path, tc.mangle(string(data)))

			j, err = OpenJournal(dir, "x", nil)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, states(j)); diff != "" {
				t.Errorf("loaded (-want +got):\n%s", diff)
			}
			// Appending after the repair must give a readable journal.
			if err := j.Delivered(j.Entry("b"), 20); err != nil {
				t.Fatal(err)
			}
			j.Close()
			r, err := ReadJournal(dir, "x", nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := states(r)["b"]; got != "delivered/0/20" {
				t.Errorf("b after an append following the repair: %s", got)
			}
		})
	}
}

func TestJournalNotAJournal(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, JournalPath(dir, "x"), "something else\n")
	if _, err := OpenJournal(dir, "x", nil); err == nil || !strings.Contains(err.Error(), "not a popbox fetch journal") {
		t.Errorf("OpenJournal on another file: %v", err)
	}
}

func TestJournalLock(t *testing.T) {
	dir := t.TempDir()
	j, err := OpenJournal(dir, "x", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenJournal(dir, "x", nil); !errors.Is(err, ErrBusy) {
		t.Errorf("second OpenJournal: %v, want ErrBusy", err)
	}
	j.Close()
	j, err = OpenJournal(dir, "x", nil)
	if err != nil {
		t.Fatalf("OpenJournal after Close: %v", err)
	}
	j.Close()
}

func TestMessageKey(t *testing.T) {
	a := &Account{Name: "home", Server: "Mail.Example.org", User: "alice"}
	k := messageKey(a, "00000001abc", 0)
	if !regexp.MustCompile(`^[a-z2-7]{26}$`).MatchString(k) {
		t.Errorf("key %q", k)
	}
	same := &Account{Name: "home", Server: "mail.example.org", User: "alice"}
	if messageKey(same, "00000001abc", 0) != k {
		t.Error("the server name's case changed the key")
	}
	others := []string{
		messageKey(a, "00000001abc", 1),
		messageKey(a, "00000001abd", 0),
		messageKey(&Account{Name: "work", Server: a.Server, User: "alice"}, "00000001abc", 0),
		messageKey(&Account{Name: "home", Server: "other.example.org", User: "alice"}, "00000001abc", 0),
		messageKey(&Account{Name: "home", Server: a.Server, User: "bob"}, "00000001abc", 0),
	}
	for i, o := range others {
		if o == k {
			t.Errorf("variant %d has the same key", i)
		}
	}
}
