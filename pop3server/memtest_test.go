package pop3server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/popbox/popbox/pop3"
	"github.com/popbox/popbox/store"
)

// memBackend is an in-memory Backend for the tests: accounts with
// passwords, one message list per user, an exclusive lock per user, and a
// record of how every maildrop ended (committed with which deletions, or
// closed without commit). It is safe for concurrent use.
type memBackend struct {
	mu      sync.Mutex
	users   map[string]string // name -> password
	boxes   map[string][]memMessage
	locked  map[string]bool
	events  []memEvent
	infos   []ConnInfo // one per Authenticate call
	nextUID int
	readers int // message readers opened and not yet closed
	opens   int // Open calls that returned a reader

	// Fault injection; zero values mean none.
	authErr   error // Authenticate returns it (a system failure, not bad credentials)
	openErr   error // Open returns it
	commitErr error // Commit returns it, changes nothing and keeps the lock
	readErr   error // message readers fail with it after readErrAfter bytes
	readAfter int
}

type memMessage struct {
	uidl string
	data []byte
	size int64 // pop3.WireSize of data
}

// memEvent records the end of one maildrop.
type memEvent struct {
	User    string
	Kind    string   // "commit" or "close" (closed without commit)
	Deleted []string // the UIDLs a commit removed
}

func newMemBackend() *memBackend {
	return &memBackend{
		users:  make(map[string]string),
		boxes:  make(map[string][]memMessage),
		locked: make(map[string]bool),
	}
}

func (b *memBackend) addUser(name, password string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.users[name] = password
}

// add delivers a message to user's mailbox and returns its UIDL. It never
// waits for the maildrop lock, like store.Store.Deliver.
func (b *memBackend) add(user, data string) string {
	size, err := pop3.WireSize(bytes.NewReader([]byte(data)))
	if err != nil {
		panic(err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.nextUID++
	m := memMessage{uidl: fmt.Sprintf("uid-%d", b.nextUID), data: []byte(data), size: size}
	b.boxes[user] = append(b.boxes[user], m)
	return m.uidl
}

// remove deletes a message behind the store's back (as another process
// tampering with the mail directory would).
func (b *memBackend) remove(user, uidl string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.boxes[user] = slices.DeleteFunc(b.boxes[user], func(m memMessage) bool { return m.uidl == uidl })
}

// uidls lists the UIDLs currently in user's mailbox.
func (b *memBackend) uidls(user string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, m := range b.boxes[user] {
		out = append(out, m.uidl)
	}
	return out
}

func (b *memBackend) isLocked(user string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.locked[user]
}

// openCount is the number of message readers opened so far.
func (b *memBackend) openCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.opens
}

func (b *memBackend) openReaders() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.readers
}

func (b *memBackend) connInfos() []ConnInfo {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.infos)
}

func (b *memBackend) setFault(f func(b *memBackend)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	f(b)
}

// eventList returns a copy of the events recorded so far.
func (b *memBackend) eventList() []memEvent {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.events)
}

// waitEvents waits until at least n events have been recorded and returns
// them all.
func (b *memBackend) waitEvents(t testing.TB, n int) []memEvent {
	t.Helper()
	deadline := time.Now().Add(ioTimeout)
	for {
		ev := b.eventList()
		if len(ev) >= n {
			return ev
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %d maildrop events, have %+v", ioTimeout, n, ev)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (b *memBackend) Authenticate(_ context.Context, info ConnInfo, user, password string) (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.infos = append(b.infos, info)
	if b.authErr != nil {
		return "", b.authErr
	}
	pw, ok := b.users[user]
	if !ok {
		return "", fmt.Errorf("no user %q: %w", user, ErrAuthFailed)
	}
	if pw != password {
		return "", fmt.Errorf("wrong password for %q: %w", user, ErrAuthFailed)
	}
	return user, nil
}

func (b *memBackend) Open(_ context.Context, user string) (store.Maildrop, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.openErr != nil {
		return nil, b.openErr
	}
	if b.locked[user] {
		return nil, store.ErrInUse
	}
	b.locked[user] = true
	snap := slices.Clone(b.boxes[user])
	infos := make([]store.MessageInfo, len(snap))
	for i, m := range snap {
		infos[i] = store.MessageInfo{UIDL: m.uidl, Size: m.size}
	}
	return &memMaildrop{b: b, user: user, snap: snap, infos: infos}, nil
}

// memMaildrop is one locked snapshot.
type memMaildrop struct {
	b     *memBackend
	user  string
	snap  []memMessage
	infos []store.MessageInfo
	done  bool // committed or closed: the lock is released
}

func (d *memMaildrop) Messages() []store.MessageInfo { return d.infos }

func (d *memMaildrop) Open(i int) (io.ReadCloser, error) {
	if i < 0 || i >= len(d.snap) {
		return nil, store.ErrNoSuchMessage
	}
	b := d.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if d.done {
		return nil, errors.New("memMaildrop: Open after Commit or Close")
	}
	m := d.snap[i]
	if !slices.ContainsFunc(b.boxes[d.user], func(x memMessage) bool { return x.uidl == m.uidl }) {
		return nil, fmt.Errorf("message %s: %w", m.uidl, fs.ErrNotExist)
	}
	b.readers++
	b.opens++
	var r io.Reader = bytes.NewReader(m.data)
	if b.readErr != nil {
		r = io.MultiReader(io.LimitReader(r, int64(b.readAfter)), errReader{b.readErr})
	}
	return &memReader{Reader: r, b: b}, nil
}

func (d *memMaildrop) Commit(deleted []int) error {
	b := d.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if d.done {
		return errors.New("memMaildrop: Commit after Commit or Close")
	}
	if b.commitErr != nil {
		return b.commitErr // the lock stays held until Close
	}
	gone := make([]string, 0, len(deleted))
	for _, i := range deleted {
		if i < 0 || i >= len(d.snap) {
			return fmt.Errorf("memMaildrop: Commit index %d out of range", i)
		}
		gone = append(gone, d.snap[i].uidl)
	}
	b.boxes[d.user] = slices.DeleteFunc(b.boxes[d.user], func(m memMessage) bool { return slices.Contains(gone, m.uidl) })
	b.events = append(b.events, memEvent{User: d.user, Kind: "commit", Deleted: gone})
	b.locked[d.user] = false
	d.done = true
	return nil
}

func (d *memMaildrop) Close() error {
	b := d.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if d.done {
		return nil
	}
	b.events = append(b.events, memEvent{User: d.user, Kind: "close"})
	b.locked[d.user] = false
	d.done = true
	return nil
}

type memReader struct {
	io.Reader
	b      *memBackend
	closed bool
}

func (r *memReader) Close() error {
	r.b.mu.Lock()
	defer r.b.mu.Unlock()
	if !r.closed {
		r.closed = true
		r.b.readers--
	}
	return nil
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

// The fixture mailbox: alice's four messages as stored and as RETR must
// send them (line ends converted, final CRLF added, before byte-stuffing).
var fixture = []struct{ stored, wire string }{
	{
		"From: a@example.org\r\nSubject: one\r\n\r\nHello, world.\r\n",
		"From: a@example.org\r\nSubject: one\r\n\r\nHello, world.\r\n",
	},
	{ // bare LFs, lines that need stuffing, no final line end
		"From: b@example.org\nSubject: two\n\n.leading dot\nline 2\n..two dots\n.\nlast line",
		"From: b@example.org\r\nSubject: two\r\n\r\n.leading dot\r\nline 2\r\n..two dots\r\n.\r\nlast line\r\n",
	},
	{ // header only, no blank line, no body
		"From: c@example.org\r\nSubject: header only\r\n",
		"From: c@example.org\r\nSubject: header only\r\n",
	},
	{
		"Subject: four\r\n\r\nbody 1\r\nbody 2\r\nbody 3\r\n",
		"Subject: four\r\n\r\nbody 1\r\nbody 2\r\nbody 3\r\n",
	},
}

// Fixture accounts.
const (
	alicePass = "secret"
	bobPass   = "pass word with  spaces "
)

// fixtureBackend returns a backend with alice (the four fixture messages,
// UIDLs uid-1 to uid-4) and bob (empty mailbox).
func fixtureBackend() *memBackend {
	b := newMemBackend()
	b.addUser("alice", alicePass)
	b.addUser("bob", bobPass)
	for _, m := range fixture {
		b.add("alice", m.stored)
	}
	return b
}

// fixtureSize is the wire size of fixture message n (1-based).
func fixtureSize(n int) int { return len(fixture[n-1].wire) }

func fixtureTotal() int {
	t := 0
	for i := range fixture {
		t += fixtureSize(i + 1)
	}
	return t
}

func TestMemBackend(t *testing.T) {
	// The backend is the oracle of the other tests; pin its contract down.
	ctx := context.Background()
	b := fixtureBackend()
	if _, err := b.Authenticate(ctx, ConnInfo{}, "alice", "wrong"); !errors.Is(err, ErrAuthFailed) {
		t.Errorf("wrong password: err = %v, want ErrAuthFailed", err)
	}
	if _, err := b.Authenticate(ctx, ConnInfo{}, "nobody", "x"); !errors.Is(err, ErrAuthFailed) {
		t.Errorf("unknown user: err = %v, want ErrAuthFailed", err)
	}
	d, err := b.Open(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Open(ctx, "alice"); !errors.Is(err, store.ErrInUse) {
		t.Errorf("second Open: err = %v, want ErrInUse", err)
	}
	var sizes []int64
	for _, m := range d.Messages() {
		sizes = append(sizes, m.Size)
	}
	for i, m := range fixture {
		if sizes[i] != int64(len(m.wire)) {
			t.Errorf("message %d: size %d, want %d", i+1, sizes[i], len(m.wire))
		}
		rc, err := d.Open(i)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(rc)
		rc.Close()
		if string(got) != m.stored {
			t.Errorf("message %d: read %q, want %q", i+1, got, m.stored)
		}
	}
	b.add("alice", "new\r\n")
	if n := len(d.Messages()); n != 4 {
		t.Errorf("snapshot has %d messages after a delivery, want 4", n)
	}
	if err := d.Commit([]int{0, 2}); err != nil {
		t.Fatal(err)
	}
	d.Close()
	want := []memEvent{{User: "alice", Kind: "commit", Deleted: []string{"uid-1", "uid-3"}}}
	if diff := cmp.Diff(want, b.eventList()); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"uid-2", "uid-4", "uid-5"}, b.uidls("alice")); diff != "" {
		t.Errorf("mailbox after commit (-want +got):\n%s", diff)
	}
	d, err = b.Open(ctx, "alice")
	if err != nil {
		t.Fatalf("Open after Commit: %v", err)
	}
	d.Close()
	d.Close()
	if got := b.eventList(); len(got) != 2 || got[1].Kind != "close" {
		t.Errorf("events after Close twice = %+v, want one close added", got)
	}
	if n := b.openReaders(); n != 0 {
		t.Errorf("%d readers left open", n)
	}
}
