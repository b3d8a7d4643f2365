package maildir

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/popbox/popbox/store"
)

// fullDisk makes every step that needs free space fail with ENOSPC, as a
// full file system would: writing a message, the counter, the index (a
// rewrite's temp file or an append). Renames, unlinks and directory syncs
// need none and still work. Each step it fails is recorded.
type fullDisk struct {
	mu      sync.Mutex
	failed  []string
	extra   []string // further steps to fail
	counter bool     // the counter is written in place and still fits
}

func (d *fullDisk) hook(step string) error {
	switch step {
	case "fsync tmp/ file", "fsync " + indexTmpName, "append index":
	case "write counter":
		if d.counter {
			return nil
		}
	default:
		if !slices.Contains(d.extra, step) {
			return nil
		}
	}
	d.mu.Lock()
	d.failed = append(d.failed, step)
	d.mu.Unlock()
	return syscall.ENOSPC
}

// logBuffer is a Logger that keeps what it logs.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func loggedStore(t *testing.T, opts Options) (*Store, string, *logBuffer) {
	t.Helper()
	var lb logBuffer
	opts.Logger = slog.New(slog.NewTextHandler(&lb, nil))
	s, root, _ := adminStore(t, opts)
	return s, root, &lb
}

// TestFullDiskCommit: with retention, DELE + QUIT on a full disk moves the
// messages into the trash and succeeds although the index rewrite fails;
// the mailbox still opens and serves what is left, with the same UIDLs;
// delivery fails cleanly; once there is room, the next Open drops the
// stale records.
func TestFullDiskCommit(t *testing.T) {
	for _, retention := range []time.Duration{time.Hour, 0} {
		t.Run("retention "+retention.String(), func(t *testing.T) {
			ctx := context.Background()
			s, root, lb := loggedStore(t, Options{Retention: retention})
			mb := mdir(root, "alice")
			a := deliver(t, s, "alice", "a\n")
			deliver(t, s, "alice", "b\n")
			c := deliver(t, s, "alice", "c\n")
			m, err := s.Open(ctx, "alice")
			if err != nil {
				t.Fatal(err)
			}
			disk := &fullDisk{}
			s.hook = disk.hook
			if err := m.Commit([]int{1}); err != nil {
				t.Fatalf("Commit on a full disk: %v; want success, the deletion is durable", err)
			}
			if !slices.Contains(disk.failed, "write counter") && !slices.Contains(disk.failed, "fsync "+indexTmpName) {
				t.Fatalf("the index update did not fail (%v): the test tests nothing", disk.failed)
			}
			if !strings.Contains(lb.String(), "the next Open drops them") {
				t.Errorf("the failed index update was not logged:\n%s", lb)
			}
			if retention > 0 {
				if n := len(names(t, mb, trashName)); n != 1 {
					t.Errorf("%d files in the trash, want 1", n)
				}
			}
			// Still full: the mailbox opens, and serves what is there.
			for round := range 2 {
				msgs, bodies := snapshotOf(t, s, "alice")
				if diff := cmp.Diff([]store.MessageInfo{a, c}, msgs); diff != "" || !slices.Equal(bodies, []string{"a\n", "c\n"}) {
					t.Errorf("round %d on a full disk: %v (-want +got):\n%s", round, bodies, diff)
				}
			}
			if !strings.Contains(lb.String(), "serving the mailbox as it is") {
				t.Errorf("the failed repair at Open was not logged:\n%s", lb)
			}
			if _, err := s.Deliver(ctx, "alice", strings.NewReader("d\n")); !errors.Is(err, syscall.ENOSPC) {
				t.Errorf("Deliver on a full disk = %v, want ENOSPC", err)
			}
			if n := names(t, mb, "tmp"); len(n) != 0 {
				t.Errorf("tmp/ after a failed delivery: %v", n)
			}
			if _, err := os.Stat(mb.path(indexTmpName)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the failed index rewrite left %s: %v", indexTmpName, err)
			}
			// Room again: the next Open repairs the index and the totals.
			s.hook = nil
			msgs, _ := snapshotOf(t, s, "alice")
			if diff := cmp.Diff([]store.MessageInfo{a, c}, msgs); diff != "" {
				t.Errorf("with room again (-want +got):\n%s", diff)
			}
			idx := parseIndex(mustRead(t, mb.path(indexName)))
			if idx.damaged || len(idx.recs) != 2 {
				t.Errorf("index after the repair: %+v", idx)
			}
			if u, err := s.Usage(ctx, "alice"); err != nil || u != sumOf(msgs) {
				t.Errorf("Usage = %+v, %v; want %+v", u, err, sumOf(msgs))
			}
			d := deliver(t, s, "alice", "d\n")
			for _, old := range []store.MessageInfo{a, c} {
				if d.UIDL == old.UIDL {
					t.Errorf("UIDL %s handed out again", d.UIDL)
				}
			}
		})
	}
}

// TestFullDiskOpenForeign: a file another MDA dropped needs a fresh uid,
// which Open may serve only once it is durable. On a full disk the file
// waits; the rest is served.
func TestFullDiskOpenForeign(t *testing.T) {
	tests := []struct {
		name    string
		counter bool     // the counter can be written
		extra   []string // steps failing besides those that need space
		// served: whether the foreign file can be served.
		served bool
	}{
		// The counter cannot be written: no fresh uid at all.
		{name: "full", served: false},
		// Counter written, but neither the new name nor the index.
		{name: "counter only", counter: true, extra: []string{"rename in new/"}, served: false},
		// The counter and the name are durable: the name keeps the uid.
		{name: "name", counter: true, served: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, root, _ := loggedStore(t, Options{})
			mb := mdir(root, "alice")
			a := deliver(t, s, "alice", "a\n")
			dropForeign(t, mb, "new", "1700000001.F1.other", "foreign\n")
			disk := &fullDisk{extra: tc.extra, counter: tc.counter}
			s.hook = disk.hook
			m, err := s.Open(context.Background(), "alice")
			if err != nil {
				t.Fatalf("Open on a full disk: %v", err)
			}
			served := servedBy(m)
			m.Close()
			want := map[string]string{"a\n": a.UIDL}
			if u, ok := served["foreign\n"]; ok != tc.served {
				t.Errorf("foreign file served %v (%s), want %v", ok, u, tc.served)
			} else if ok {
				want["foreign\n"] = u
			}
			if diff := cmp.Diff(want, served); diff != "" {
				t.Errorf("served on a full disk (-want +got):\n%s", diff)
			}
			// Room again: whatever was served keeps its UIDL, the foreign
			// file is listed, and no UIDL comes back.
			s.hook = nil
			m, err = s.Open(context.Background(), "alice")
			if err != nil {
				t.Fatal(err)
			}
			after := servedBy(m)
			m.Close()
			for b, u := range served {
				if after[b] != u {
					t.Errorf("%q served as %s, then as %s", b, u, after[b])
				}
			}
			if _, ok := after["foreign\n"]; !ok || len(after) != 2 {
				t.Errorf("with room again: %v", after)
			}
			d := deliver(t, s, "alice", "d\n")
			for _, u := range after {
				if d.UIDL == u {
					t.Errorf("UIDL %s handed out again", u)
				}
			}
		})
	}
}

// TestFullDiskDeliverCounter: a delivery whose counter cannot be written
// fails, leaves nothing, and hands out no UIDL.
func TestFullDiskDeliverCounter(t *testing.T) {
	s, root, _ := adminStore(t, Options{})
	mb := mdir(root, "alice")
	a := deliver(t, s, "alice", "a\n")
	s.hook = func(step string) error {
		if step == "write counter" {
			return syscall.ENOSPC
		}
		return nil
	}
	if _, err := s.Deliver(context.Background(), "alice", strings.NewReader("b\n")); !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("Deliver = %v, want ENOSPC", err)
	}
	if _, err := s.Import(context.Background(), "alice", strings.NewReader("c\n"), "x-1"); !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("Import = %v, want ENOSPC", err)
	}
	s.hook = nil
	if n := names(t, mb, "tmp"); len(n) != 0 {
		t.Errorf("tmp/: %v", n)
	}
	msgs, _ := snapshotOf(t, s, "alice")
	if diff := cmp.Diff([]store.MessageInfo{a}, msgs); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// TestFullDiskTornAppend: an index append that the full disk cuts short
// (part of the record written, then ENOSPC) is cut back off: the index is
// as before, the delivery fails and leaves nothing.
func TestFullDiskTornAppend(t *testing.T) {
	s, root, _ := adminStore(t, Options{})
	mb := mdir(root, "alice")
	a := deliver(t, s, "alice", "a\n")
	before := mustRead(t, mb.path(indexName))
	s.hook = func(step string) error {
		if step != "append index" {
			return nil
		}
		// What the write got onto the disk before the space ran out.
		f, err := os.OpenFile(mb.path(indexName), os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Error(err)
			return err
		}
		defer f.Close()
		if _, err := f.WriteString("m 1750000000.M1P1Q9Rpartial 00000002"); err != nil {
			t.Error(err)
		}
		return syscall.ENOSPC
	}
	_, err := s.Deliver(context.Background(), "alice", strings.NewReader("b\n"))
	s.hook = nil
	if !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("Deliver = %v, want ENOSPC", err)
	}
	if after := mustRead(t, mb.path(indexName)); !bytes.Equal(after, before) {
		t.Errorf("index after the failed append:\n%s\nwant as before:\n%s", after, before)
	}
	for _, sub := range []string{"tmp", "new"} {
		if n := names(t, mb, sub); len(n) != map[string]int{"tmp": 0, "new": 1}[sub] {
			t.Errorf("%s/: %v", sub, n)
		}
	}
	b := deliver(t, s, "alice", "b\n")
	if parseIndex(mustRead(t, mb.path(indexName))).damaged {
		t.Error("index damaged")
	}
	msgs, _ := snapshotOf(t, s, "alice")
	if diff := cmp.Diff([]store.MessageInfo{a, b}, msgs); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
