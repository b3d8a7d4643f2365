package maildir

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/popbox/popbox/store"
)

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count descriptors: %v", err)
	}
	return len(ents)
}

// TestSessionLocksShareOneDescriptor: 200 sessions on 200 mailboxes hold
// one descriptor between them, each still excludes a second session, and
// the descriptor goes with the last session.
func TestSessionLocksShareOneDescriptor(t *testing.T) {
	s, _ := testStore(t, false)
	ctx := context.Background()
	const n = 200
	for i := range n {
		deliver(t, s, fmt.Sprintf("user%d", i), "x\n")
	}
	before := openFDs(t)
	var drops []store.Maildrop
	for i := range n {
		m, err := s.Open(ctx, fmt.Sprintf("user%d", i))
		if err != nil {
			t.Fatal(err)
		}
		drops = append(drops, m)
	}
	if d := openFDs(t) - before; d > 1 {
		t.Errorf("%d sessions hold %d descriptors, want 1", n, d)
	}
	for i := range n {
		if _, err := s.Open(ctx, fmt.Sprintf("user%d", i)); !errors.Is(err, store.ErrInUse) {
			t.Fatalf("second Open of user%d = %v, want ErrInUse", i, err)
		}
	}
	for i, m := range drops {
		if i%2 == 0 {
			m.Close()
		} else if err := m.Commit(nil); err != nil {
			t.Fatal(err)
		}
	}
	if d := openFDs(t) - before; d != 0 {
		t.Errorf("%d descriptors left after every session ended", d)
	}
	m, err := s.Open(ctx, "user7")
	if err != nil {
		t.Fatalf("Open after the sessions ended: %v", err)
	}
	m.Close()
}

// TestSessionLockOtherFileSystem: a mailbox on another file system than
// the root (here a symlinked home on /dev/shm) uses its own lock file, and
// still excludes a second session, in this Store and in another.
func TestSessionLockOtherFileSystem(t *testing.T) {
	s, root := testStore(t, false)
	var rootSt, shmSt os.FileInfo
	var err error
	if rootSt, err = os.Stat(root); err != nil {
		t.Fatal(err)
	}
	if shmSt, err = os.Stat("/dev/shm"); err != nil {
		t.Skip("no /dev/shm")
	}
	if devOf(rootSt) == devOf(shmSt) {
		t.Skip("/dev/shm is on the root's file system")
	}
	home, err := os.MkdirTemp("/dev/shm", "popbox-test-")
	if err != nil {
		t.Skip(err)
	}
	t.Cleanup(func() { os.RemoveAll(home) })
	for _, d := range []string{"tmp", "new", "cur"} {
		if err := os.MkdirAll(filepath.Join(home, "Maildir", d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(home, filepath.Join(root, "alice")); err != nil {
		t.Fatal(err)
	}
	deliver(t, s, "alice", "x\n")
	s2, err := New(root, Options{NoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	m, err := s.Open(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(home, "Maildir", sessionLockName)); err != nil {
		t.Errorf("no per-mailbox lock file on the other file system: %v", err)
	}
	for _, st := range []*Store{s, s2} {
		if _, err := st.Open(ctx, "alice"); !errors.Is(err, store.ErrInUse) {
			t.Errorf("second Open = %v, want ErrInUse", err)
		}
	}
	m.Close()
	m, err = s2.Open(ctx, "alice")
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	m.Close()
}

func devOf(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Dev
	}
	return 0
}
