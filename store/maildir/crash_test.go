package maildir

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/popbox/popbox/store"
)

// errInjected is the failure the hook injects.
var errInjected = errors.New("injected failure")

// runAt runs op in a goroutine of its own with a hook that acts at the
// k-th step (0-based): in crash mode it ends the goroutine there with
// runtime.Goexit, which runs deferred calls (so flocks are released, as
// the kernel releases them when a process dies) but none of the cleanup on
// error paths, leaving the disk as a crash before that step would; in fail
// mode the step fails. It reports op's error and whether op was stopped.
func runAt(s *Store, k int, crash bool, op func() error) (err error, crashed bool) {
	var n atomic.Int64
	s.hook = func(string) error {
		if n.Add(1)-1 != int64(k) {
			return nil
		}
		if crash {
			runtime.Goexit()
		}
		return errInjected
	}
	defer func() { s.hook = nil }()
	done := make(chan error, 1)
	stopped := true
	go func() {
		defer close(done)
		e := op()
		stopped = false
		done <- e
	}()
	err = <-done
	return err, stopped
}

// world is what a restarted server sees of a mailbox: the messages POP3
// lists, by body, and the bodies in the trash.
type world struct {
	listed  map[string]store.MessageInfo
	trashed map[string]string // body to UIDL
	usage   store.Usage
}

func observe(t *testing.T, root, user string) world {
	t.Helper()
	s, err := New(root, Options{NoFsync: true, Retention: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	w := world{listed: map[string]store.MessageInfo{}, trashed: map[string]string{}}
	msgs, bodies := snapshotOf(t, s, user)
	uidls := map[string]bool{}
	for i, m := range msgs {
		if _, dup := w.listed[bodies[i]]; dup {
			t.Errorf("message %q listed twice", bodies[i])
		}
		if uidls[m.UIDL] {
			t.Errorf("UIDL %s listed twice", m.UIDL)
		}
		if !validUIDL(m.UIDL) {
			t.Errorf("bad UIDL %q", m.UIDL)
		}
		uidls[m.UIDL] = true
		w.listed[bodies[i]] = m
	}
	mb := mdir(root, user)
	if isDir(mb.path(trashName)) {
		ents, junk, err := s.listTrash(mb)
		if err != nil || len(junk) > 0 {
			t.Fatalf("trash: %v, junk %v", err, junk)
		}
		for _, e := range ents {
			b := string(mustRead(t, mb.path(trashName, e.name)))
			if _, dup := w.trashed[b]; dup {
				t.Errorf("message %q in the trash twice", b)
			}
			w.trashed[b] = e.uidl()
		}
	}
	if w.usage, err = s.Usage(context.Background(), user); err != nil {
		t.Fatal(err)
	}
	if want := sumOf(msgs); w.usage != want {
		t.Errorf("usage %+v, listing %+v", w.usage, want)
	}
	return w
}

// uidlsIn is every UIDL the world shows.
func (w world) uidls() map[string]bool {
	out := map[string]bool{}
	for _, m := range w.listed {
		out[m.UIDL] = true
	}
	for _, u := range w.trashed {
		out[u] = true
	}
	return out
}

type crashCase struct {
	name  string
	opts  Options
	setup func(t *testing.T, s *Store, root string) world
	op    func(s *Store) error
	// check gets the world before and after; ok says op returned nil.
	check func(t *testing.T, before, after world, ok bool)
	// softFrom names the first step (of an undisturbed run) from which on
	// a failure may be logged rather than returned: the operation has
	// done what it reports once it gets there (Commit: the deletions are
	// durable), or can do without (Open: serving needs no write).
	softFrom string
}

// once checks that every body is in exactly one of listed and trashed.
func once(t *testing.T, w world, bodies ...string) {
	t.Helper()
	for _, b := range bodies {
		_, l := w.listed[b]
		_, tr := w.trashed[b]
		if l == tr {
			t.Errorf("message %q: listed %v, in the trash %v; want exactly one", b, l, tr)
		}
	}
}

// sameUIDL checks that the listed bodies kept the UIDLs they had.
func sameUIDL(t *testing.T, before, after world, bodies ...string) {
	t.Helper()
	for _, b := range bodies {
		if m, ok := after.listed[b]; !ok || m != before.listed[b] {
			t.Errorf("message %q: %+v (listed %v), was %+v", b, m, ok, before.listed[b])
		}
	}
}

// servedBy reads what a maildrop serves: body to UIDL.
func servedBy(m store.Maildrop) map[string]string {
	out := map[string]string{}
	for i, msg := range m.Messages() {
		r, err := m.Open(i)
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(r)
		r.Close()
		out[string(b)] = msg.UIDL
	}
	return out
}

func TestCrashAndFailure(t *testing.T) {
	ctx := context.Background()
	hour := time.Hour
	// served is what the last Open of an operation served (OpenForeign).
	var served map[string]string
	deliverABC := func(t *testing.T, s *Store, root string) world {
		for _, b := range []string{"a\n", "b\n", "c\n"} {
			deliver(t, s, "alice", b)
		}
		return observe(t, root, "alice")
	}
	trashAC := func(t *testing.T, s *Store, root string) world {
		deliverABC(t, s, root)
		deleteAll(t, s, "alice", 0, 2)
		return observe(t, root, "alice")
	}
	addsNew := func(uidl string) func(t *testing.T, before, after world, ok bool) {
		return func(t *testing.T, before, after world, ok bool) {
			sameUIDL(t, before, after, "a\n", "b\n", "c\n")
			m, listed := after.listed["new\n"]
			if ok && !listed {
				t.Error("operation succeeded, message not listed")
			}
			if listed && uidl != "" && m.UIDL != uidl {
				t.Errorf("imported message listed as %s, want %s", m.UIDL, uidl)
			}
			if len(after.trashed) != 0 {
				t.Errorf("trash: %v", after.trashed)
			}
		}
	}
	cases := []crashCase{
		{
			name:  "Deliver",
			setup: deliverABC,
			op: func(s *Store) error {
				_, err := s.Deliver(ctx, "alice", strings.NewReader("new\n"))
				return err
			},
			check: addsNew(""),
		},
		{
			name:  "DeliverQuota",
			opts:  Options{Quota: func(context.Context, string) (store.Quota, error) { return store.Quota{MaxMessages: 4}, nil }},
			setup: deliverABC,
			op: func(s *Store) error {
				_, err := s.Deliver(ctx, "alice", strings.NewReader("new\n"))
				return err
			},
			check: addsNew(""),
		},
		{
			name:  "ImportLiteral",
			setup: deliverABC,
			op: func(s *Store) error {
				_, err := s.Import(ctx, "alice", strings.NewReader("new\n"), "lit/1")
				return err
			},
			check: addsNew("lit/1"),
		},
		{
			name:  "ImportOwnFormat",
			setup: deliverABC,
			op: func(s *Store) error {
				_, err := s.Import(ctx, "alice", strings.NewReader("new\n"), "0000000712345678")
				return err
			},
			check: addsNew("0000000712345678"),
		},
		{
			name:     "Commit",
			opts:     Options{Retention: hour},
			softFrom: "write counter",
			setup:    deliverABC,
			op: func(s *Store) error {
				m, err := s.Open(ctx, "alice")
				if err != nil {
					return err
				}
				return m.Commit([]int{0, 2})
			},
			check: func(t *testing.T, before, after world, ok bool) {
				once(t, after, "a\n", "b\n", "c\n")
				sameUIDL(t, before, after, "b\n")
				for _, b := range []string{"a\n", "c\n"} {
					if m, listed := after.listed[b]; listed && m != before.listed[b] {
						t.Errorf("%q not deleted but changed: %+v", b, m)
					}
					if u, tr := after.trashed[b]; tr && u != before.listed[b].UIDL {
						t.Errorf("%q in the trash as %s, was %s", b, u, before.listed[b].UIDL)
					}
					if _, tr := after.trashed[b]; ok && !tr {
						t.Errorf("Commit succeeded, %q not in the trash", b)
					}
				}
			},
		},
		{
			name:     "CommitNoRetention",
			softFrom: "write counter",
			setup:    deliverABC,
			op: func(s *Store) error {
				m, err := s.Open(ctx, "alice")
				if err != nil {
					return err
				}
				return m.Commit([]int{0, 2})
			},
			check: func(t *testing.T, before, after world, ok bool) {
				sameUIDL(t, before, after, "b\n")
				if _, listed := after.listed["a\n"]; ok && listed {
					t.Error("Commit succeeded, a still listed")
				}
				if len(after.trashed) != 0 {
					t.Errorf("trash: %v", after.trashed)
				}
			},
		},
		{
			name:     "Expire",
			opts:     Options{Retention: hour},
			softFrom: "write counter",
			setup:    deliverABC,
			op: func(s *Store) error {
				_, err := s.Expire(ctx, "alice", time.Now().Add(time.Hour))
				return err
			},
			check: func(t *testing.T, before, after world, ok bool) {
				once(t, after, "a\n", "b\n", "c\n")
				if ok && len(after.listed) != 0 {
					t.Errorf("Expire succeeded, still listed: %v", after.listed)
				}
			},
		},
		{
			name:  "Restore",
			opts:  Options{Retention: hour},
			setup: trashAC,
			op: func(s *Store) error {
				_, err := s.Restore(ctx, "alice", store.RestoreOptions{})
				return err
			},
			check: func(t *testing.T, before, after world, ok bool) {
				once(t, after, "a\n", "b\n", "c\n")
				sameUIDL(t, before, after, "b\n")
				for _, b := range []string{"a\n", "c\n"} {
					if m, listed := after.listed[b]; listed && m.UIDL == before.trashed[b] {
						t.Errorf("%q restored with its old UIDL", b)
					}
					if _, listed := after.listed[b]; ok && !listed {
						t.Errorf("Restore succeeded, %q not listed", b)
					}
				}
			},
		},
		{
			name:  "Purge",
			opts:  Options{Retention: hour},
			setup: trashAC,
			op: func(s *Store) error {
				_, err := s.Purge(ctx, "alice", time.Now().Add(2*time.Hour))
				return err
			},
			check: func(t *testing.T, before, after world, ok bool) {
				sameUIDL(t, before, after, "b\n")
				if len(after.listed) != 1 || ok && len(after.trashed) != 0 {
					t.Errorf("after purge: listed %v, trash %v", after.listed, after.trashed)
				}
			},
		},
		{
			name:     "OpenForeign",
			softFrom: "write counter",
			setup: func(t *testing.T, s *Store, root string) world {
				w := deliverABC(t, s, root)
				mb := mdir(root, "alice")
				dropForeign(t, mb, "new", "1700000001.F1.other", "f1\n")
				dropForeign(t, mb, "cur", "1700000002.F2.other:2,S", "f2\n")
				return w
			},
			op: func(s *Store) error {
				m, err := s.Open(ctx, "alice")
				if err != nil {
					return err
				}
				served = servedBy(m)
				return m.Close()
			},
			check: func(t *testing.T, before, after world, ok bool) {
				sameUIDL(t, before, after, "a\n", "b\n", "c\n")
				if len(after.listed) != 5 {
					t.Errorf("listed %v", after.listed)
				}
				if ok && len(served) < 3 {
					t.Errorf("Open succeeded serving only %v", served)
				}
				// What a session saw stays: a UIDL served once is the
				// message's for good.
				for b, u := range served {
					if m, listed := after.listed[b]; !listed || m.UIDL != u {
						t.Errorf("%q served as %s, now %+v (listed %v)", b, u, m, listed)
					}
				}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fresh := func(t *testing.T) (*Store, string, world) {
				root := t.TempDir()
				opts := tc.opts
				opts.NoFsync = true
				s, err := New(root, opts)
				if err != nil {
					t.Fatal(err)
				}
				before := tc.setup(t, s, root)
				return s, root, before
			}
			// The steps of an undisturbed run.
			s, _, _ := fresh(t)
			var steps []string
			s.hook = func(step string) error { steps = append(steps, step); return nil }
			if err := tc.op(s); err != nil {
				t.Fatalf("undisturbed: %v", err)
			}
			if len(steps) == 0 {
				t.Fatal("no steps")
			}
			soft := len(steps)
			if tc.softFrom != "" {
				if soft = slices.Index(steps, tc.softFrom); soft < 0 {
					t.Fatalf("no step %q in %v", tc.softFrom, steps)
				}
			}
			for k, step := range steps {
				for _, crash := range []bool{true, false} {
					mode := "fail"
					if crash {
						mode = "crash"
					}
					t.Run(fmt.Sprintf("%s at %d %s", mode, k, step), func(t *testing.T) {
						s, root, before := fresh(t)
						served = nil
						err, stopped := runAt(s, k, crash, func() error { return tc.op(s) })
						if crash != stopped {
							t.Fatalf("stopped=%v err=%v", stopped, err)
						}
						if !crash && !errors.Is(err, errInjected) && !(k >= soft && err == nil) {
							t.Errorf("operation with a failing step: %v, want the failure", err)
						}
						after := observe(t, root, "alice")
						tc.check(t, before, after, err == nil && !stopped)
						if !crash && (strings.HasPrefix(tc.name, "Deliver") || strings.HasPrefix(tc.name, "Import")) {
							if n := names(t, mdir(root, "alice"), "tmp"); len(n) != 0 {
								t.Errorf("tmp/ after a failed delivery: %v", n)
							}
						}
						// Whatever happened, the next UIDL is new.
						s2, err := New(root, Options{NoFsync: true})
						if err != nil {
							t.Fatal(err)
						}
						next := deliver(t, s2, "alice", "after\n")
						seen := before.uidls()
						for u := range after.uidls() {
							seen[u] = true
						}
						for _, u := range served {
							seen[u] = true
						}
						if seen[next.UIDL] {
							t.Errorf("UIDL %s handed out again", next.UIDL)
						}
						// A retried import after a crash either finds its
						// UIDL present or stores the message.
						if strings.HasPrefix(tc.name, "Import") {
							err := tc.op(s2)
							_, listed := after.listed["new\n"]
							if listed && !errors.Is(err, store.ErrUIDLConflict) || !listed && err != nil {
								t.Errorf("retried import (listed before: %v): %v", listed, err)
							}
						}
					})
				}
			}
		})
	}
}
