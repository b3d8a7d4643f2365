package fetch

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestFetchPopbox moves the corpus from popbox's server into a Maildir and
// an mbox, over TLS and without, and compares every message byte for byte
// (after normalising line ends and removing the Received header added).
// keep = true: a second run fetches nothing.
func TestFetchPopbox(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		tls  bool
		kind string
	}{
		{"maildir-tls", true, "maildir"},
		{"mbox-tls", true, "mbox"},
		{"maildir-plain", false, "maildir"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ts := startServer(t, serverOpts{})
			msgs := corpus()
			ts.deliver(t, msgs...)
			spec := tc.kind + ":" + filepath.Join(t.TempDir(), "local")
			var a *Account
			if tc.tls {
				a = tlsAccount(t, ts, spec)
			} else {
				a = plainAccount(t, ts, spec)
			}
			r := mustRun(t, a, Options{})
			if r.Fetched != len(msgs) || r.Deleted != 0 {
				t.Errorf("first run: fetched %d deleted %d, want %d and 0", r.Fetched, r.Deleted, len(msgs))
			}
			sameMessages(t, "local store after the first run", msgs, local(t, spec))
			r = mustRun(t, a, Options{})
			if r.Fetched != 0 || r.Planned != 0 {
				t.Errorf("second run: fetched %d planned %d, want nothing", r.Fetched, r.Planned)
			}
			if got := ResultText(r); got != "no new mail" {
				t.Errorf("second run result %q, want \"no new mail\"", got)
			}
			sameMessages(t, "local store after the second run", msgs, local(t, spec))
			sameMessages(t, "server (keep = true)", msgs, ts.messages(t))

			// A new message is fetched alone.
			ts.deliver(t, "Subject: later\n\nnew\n")
			if r := mustRun(t, a, Options{}); r.Fetched != 1 {
				t.Errorf("third run fetched %d, want 1", r.Fetched)
			}
			sameMessages(t, "local store after the third run", append(msgs, "Subject: later\n\nnew\n"), local(t, spec))
		})
	}
}

// TestReceivedHeader: the header has the documented form and is the first
// line of the stored message; received_header = false adds none.
func TestReceivedHeader(t *testing.T) {
	t.Parallel()
	ts := startServer(t, serverOpts{})
	ts.deliver(t, "Subject: x\n\nbody\n")
	dir := filepath.Join(t.TempDir(), "md")
	a := plainAccount(t, ts, "maildir:"+dir)
	mustRun(t, a, Options{Hostname: "here.example"})
	raw := readOne(t, dir)
	re := regexp.MustCompile(`^Received: from 127\.0\.0\.1\n\tby here\.example \(popbox fetch\) with POP3\n\tid ([a-z2-7]{26});\n\t[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d [-+]\d{4}\nSubject: x\n\nbody\n$`)
	m := re.FindStringSubmatch(raw)
	if m == nil {
		t.Fatalf("stored message:\n%s\ndoes not match %s", raw, re)
	}
	if !strings.Contains(raw, m[1]) || !strings.Contains(filepath.Base(findOne(t, dir)), m[1]) {
		t.Errorf("key %s is not in the file name %s", m[1], findOne(t, dir))
	}

	ts2 := startServer(t, serverOpts{})
	ts2.deliver(t, "Subject: y\n\nbody\n")
	dir2 := filepath.Join(t.TempDir(), "md")
	mustRun(t, plainAccount(t, ts2, "maildir:"+dir2, "received_header = false"), Options{})
	if got := readOne(t, dir2); got != "Subject: y\n\nbody\n" {
		t.Errorf("with received_header = false stored %q", got)
	}
}

func findOne(t *testing.T, dir string) string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "new", "*"))
	if err != nil || len(m) != 1 {
		t.Fatalf("want one message in %s/new, found %v (%v)", dir, m, err)
	}
	return m[0]
}

func readOne(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(findOne(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestDeleteMode: keep = false empties the server once the local copies
// are durable; the local store has everything exactly once.
func TestDeleteMode(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{"maildir", "mbox"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ts := startServer(t, serverOpts{})
			msgs := corpus()
			ts.deliver(t, msgs...)
			spec := kind + ":" + filepath.Join(t.TempDir(), "local")
			a := tlsAccount(t, ts, spec, "keep = false")
			r := mustRun(t, a, Options{})
			if r.Fetched != len(msgs) || r.Deleted != len(msgs) {
				t.Errorf("fetched %d deleted %d, want %d each", r.Fetched, r.Deleted, len(msgs))
			}
			if got := ts.messages(t); len(got) != 0 {
				t.Errorf("server still has %d messages", len(got))
			}
			sameMessages(t, "local store", msgs, local(t, spec))
			r = mustRun(t, a, Options{})
			if r.Fetched != 0 || r.Deleted != 0 {
				t.Errorf("second run: fetched %d deleted %d", r.Fetched, r.Deleted)
			}
			// The journal recorded the deletions.
			j, err := ReadJournal(a.StateDir, a.JournalBase(), nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range j.Entries() {
				if e.State != StateGone {
					t.Errorf("journal: %s is %v, want gone", e.UIDL, e.State)
				}
			}
		})
	}
}

// TestDeleteAfter: with keep = true and delete_after = "30d", messages
// first seen more than 30 days ago (the journal backdated) are deleted from
// the server, newer ones stay, and the local store has all of them.
func TestDeleteAfter(t *testing.T) {
	t.Parallel()
	ts := startServer(t, serverOpts{})
	old := []string{"Subject: old 1\n\na\n", "Subject: old 2\n\nb\n"}
	ts.deliver(t, old...)
	spec := "maildir:" + filepath.Join(t.TempDir(), "md")
	a := plainAccount(t, ts, spec, `delete_after = "30d"`)
	if r := mustRun(t, a, Options{}); r.Fetched != 2 || r.Deleted != 0 {
		t.Fatalf("first run: fetched %d deleted %d, want 2 and 0", r.Fetched, r.Deleted)
	}
	backdate(t, a, 31*24*time.Hour)
	recent := []string{"Subject: new 1\n\nc\n"}
	ts.deliver(t, recent...)
	r := mustRun(t, a, Options{})
	if r.Fetched != 1 || r.Deleted != 2 {
		t.Errorf("second run: fetched %d deleted %d, want 1 and 2", r.Fetched, r.Deleted)
	}
	sameMessages(t, "server", recent, ts.messages(t))
	sameMessages(t, "local store", append(old, recent...), local(t, spec))
}

// backdate moves the first-seen time of every journal entry back by d.
func backdate(t *testing.T, a *Account, d time.Duration) {
	t.Helper()
	j, err := OpenJournal(a.StateDir, a.JournalBase(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	for _, e := range j.Entries() {
		e.FirstSeen = e.FirstSeen.Add(-d)
	}
	if err := j.Compact(); err != nil {
		t.Fatal(err)
	}
}

// TestOversizeAndLimits: max_size with skip and delete, max_messages and
// max_bytes per run.
func TestOversizeAndLimits(t *testing.T) {
	t.Parallel()
	small := []string{"Subject: s1\n\n1\n", "Subject: s2\n\n2\n", "Subject: s3\n\n3\n"}
	bigMsg := "Subject: big\n\n" + strings.Repeat("z", 10000) + "\n"
	for _, tc := range []struct {
		name                    string
		lines                   []string
		fetched, deleted, skip  int
		deferred                int
		serverAfter, localAfter []string
	}{
		{"skip", []string{"max_size = 5000"}, 3, 0, 1, 0, append(small, bigMsg), small},
		{"skip-suffix", []string{`max_size = "4K"`, `oversize = "skip"`}, 3, 0, 1, 0, append(small, bigMsg), small},
		{"delete", []string{"max_size = 5000", `oversize = "delete"`}, 3, 1, 0, 0, small, small},
		{"max_messages", []string{"max_messages = 2"}, 2, 0, 0, 2, append(small, bigMsg), small[:2]},
		{"max_bytes", []string{"max_bytes = 40"}, 2, 0, 0, 2, append(small, bigMsg), small[:2]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ts := startServer(t, serverOpts{})
			ts.deliver(t, append(small, bigMsg)...)
			spec := "maildir:" + filepath.Join(t.TempDir(), "md")
			r := mustRun(t, plainAccount(t, ts, spec, tc.lines...), Options{})
			got := []int{r.Fetched, r.Deleted, r.Skipped, r.Deferred}
			if diff := cmp.Diff([]int{tc.fetched, tc.deleted, tc.skip, tc.deferred}, got); diff != "" {
				t.Errorf("fetched, deleted, skipped, deferred (-want +got):\n%s", diff)
			}
			sameMessages(t, "server", tc.serverAfter, ts.messages(t))
			sameMessages(t, "local", tc.localAfter, local(t, spec))
		})
	}
}

// TestDryRun: a dry run reports what it would do and changes nothing.
func TestDryRun(t *testing.T) {
	t.Parallel()
	ts := startServer(t, serverOpts{})
	msgs := []string{"Subject: a\n\n1\n", "Subject: b\n\n2\n"}
	ts.deliver(t, msgs...)
	dir := filepath.Join(t.TempDir(), "md")
	a := plainAccount(t, ts, "maildir:"+dir, "keep = false")
	r := mustRun(t, a, Options{DryRun: true})
	if r.Planned != 2 || r.PlannedDeletes != 2 || r.Fetched != 0 {
		t.Errorf("dry run: planned %d deletes %d fetched %d, want 2 2 0", r.Planned, r.PlannedDeletes, r.Fetched)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dry run created the destination: %v", err)
	}
	if _, err := os.Stat(JournalPath(a.StateDir, a.JournalBase())); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dry run wrote a journal: %v", err)
	}
	sameMessages(t, "server", msgs, ts.messages(t))
}

// TestRecoverPending: a crash between the pending and delivered records
// is resolved by asking the destination: messages it has are not stored
// again, messages it lacks are. Simulated by turning every entry back to
// pending and removing half of the local copies.
func TestRecoverPending(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{"maildir", "mbox"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ts := startServer(t, serverOpts{})
			var msgs []string
			for i := range 6 {
				msgs = append(msgs, fmt.Sprintf("Subject: m%d\n\nbody %d\n", i, i))
			}
			ts.deliver(t, msgs...)
			path := filepath.Join(t.TempDir(), "local")
			a := plainAccount(t, ts, kind+":"+path)
			mustRun(t, a, Options{})

			j, err := OpenJournal(a.StateDir, a.JournalBase(), nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range j.Entries() {
				e.State = StatePending
			}
			if err := j.Compact(); err != nil {
				t.Fatal(err)
			}
			j.Close()
			if kind == "maildir" {
				files, _ := filepath.Glob(filepath.Join(path, "new", "*"))
				for _, f := range files[:3] {
					os.Remove(f)
				}
			}
			r := mustRun(t, a, Options{})
			want := 0
			if kind == "maildir" {
				want = 3
			}
			if r.Fetched != want {
				t.Errorf("fetched %d after the simulated crash, want %d", r.Fetched, want)
			}
			sameMessages(t, "local store", msgs, local(t, kind+":"+path))
		})
	}
}

// TestUIDLReuse: a UIDL the journal saw deleted, or one that now names a
// message of another size, is a new message with a new key: downloaded,
// not taken for the old one.
func TestUIDLReuse(t *testing.T) {
	t.Parallel()
	ts := startServer(t, serverOpts{})
	msgs := []string{"Subject: a\n\n1\n", "Subject: b\n\n2\n"}
	ts.deliver(t, msgs...)
	spec := "maildir:" + filepath.Join(t.TempDir(), "md")
	a := plainAccount(t, ts, spec)
	mustRun(t, a, Options{})

	j, err := OpenJournal(a.StateDir, a.JournalBase(), nil)
	if err != nil {
		t.Fatal(err)
	}
	es := j.Entries()
	oldKeys := map[string]string{}
	for _, e := range es {
		oldKeys[e.UIDL] = messageKey(a, e.UIDL, e.Gen)
	}
	// First as if the server had deleted a, then reused its UIDL; and as
	// if b's UIDL now named a message of another size.
	if err := j.Gone(es[:1]); err != nil {
		t.Fatal(err)
	}
	es[1].Size += 7
	if err := j.Compact(); err != nil { // drops the gone entry, raising the floor
		t.Fatal(err)
	}
	j.Close()

	r := mustRun(t, a, Options{})
	if r.Fetched != 2 {
		t.Errorf("fetched %d, want both again", r.Fetched)
	}
	j, err = ReadJournal(a.StateDir, a.JournalBase(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range j.Entries() {
		if k := messageKey(a, e.UIDL, e.Gen); k == oldKeys[e.UIDL] || e.Gen == 0 {
			t.Errorf("%s: generation %d, key %s unchanged", e.UIDL, e.Gen, k)
		}
	}
	if got := len(local(t, spec)); got != 4 {
		t.Errorf("local store has %d messages, want 4 (two generations of each)", got)
	}
}

// TestSlowDestination: a destination slower than the server's idle timeout
// does not lose the session: NOOPs keep it alive, and in delete mode the
// messages are deleted at the end.
func TestSlowDestination(t *testing.T) {
	t.Parallel()
	ts := startServer(t, serverOpts{idleTimeout: time.Second})
	msgs := []string{"Subject: a\n\n1\n", "Subject: b\n\n2\n"}
	ts.deliver(t, msgs...)
	out := filepath.Join(t.TempDir(), "out")
	if err := os.MkdirAll(out, 0o700); err != nil {
		t.Fatal(err)
	}
	// The mda takes 2.5 s per message, over twice the server's timeout.
	cmd := fmt.Sprintf(`sleep 2.5; cat > %s/"$POPBOX_KEY"`, out)
	a := plainAccount(t, ts, "mda:"+cmd, "keep = false", `keepalive = "200ms"`)
	r := mustRun(t, a, Options{})
	if r.Fetched != 2 || r.Deleted != 2 {
		t.Errorf("fetched %d deleted %d, want 2 and 2", r.Fetched, r.Deleted)
	}
	if got := ts.messages(t); len(got) != 0 {
		t.Errorf("server still has %d messages: the session did not survive", len(got))
	}
	ents, _ := os.ReadDir(out)
	if len(ents) != 2 {
		t.Errorf("mda stored %d messages, want 2", len(ents))
	}
}

// TestLockedAccount: a second fetch of the same account while one runs is
// refused with ErrBusy, and nothing happens.
func TestLockedAccount(t *testing.T) {
	t.Parallel()
	ts := startServer(t, serverOpts{})
	ts.deliver(t, "Subject: a\n\n1\n")
	a := plainAccount(t, ts, "maildir:"+filepath.Join(t.TempDir(), "md"))
	j, err := OpenJournal(a.StateDir, a.JournalBase(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	r := run(t, a, Options{})
	if !errors.Is(r.Err, ErrBusy) || r.Fetched != 0 {
		t.Errorf("second fetch: %v, fetched %d; want ErrBusy", r.Err, r.Fetched)
	}
}

// TestSlowDestinationPausesPipeline: with the spool full and a destination
// slower than the server's idle timeout, the RETR stream pauses, NOOPs keep
// the session alive, and every message arrives once.
func TestSlowDestinationPausesPipeline(t *testing.T) {
	t.Parallel()
	ts := startServer(t, serverOpts{idleTimeout: time.Second})
	msgs := []string{"Subject: a\n\n1\n", "Subject: b\n\n2\n", "Subject: c\n\n3\n"}
	ts.deliver(t, msgs...)
	out := filepath.Join(t.TempDir(), "out")
	if err := os.MkdirAll(out, 0o700); err != nil {
		t.Fatal(err)
	}
	cmd := fmt.Sprintf(`sleep 1.5; cat > %s/"$POPBOX_KEY"`, out)
	a := plainAccount(t, ts, "mda:"+cmd, "keep = false", `keepalive = "200ms"`)
	// One message in the spool at a time: the second RETR must wait for
	// the first delivery, longer than the server's 1 s idle timeout.
	r := mustRun(t, a, Options{SpoolBudget: 1})
	if r.Fetched != 3 || r.Deleted != 3 {
		t.Errorf("fetched %d deleted %d, want 3 and 3 (err %v)", r.Fetched, r.Deleted, r.Err)
	}
	if got := ts.messages(t); len(got) != 0 {
		t.Errorf("server still has %d messages: the session did not survive", len(got))
	}
	if ents, _ := os.ReadDir(out); len(ents) != 3 {
		t.Errorf("mda stored %d messages, want 3", len(ents))
	}
}
