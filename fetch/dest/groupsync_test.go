package dest

import (
	"sync"
	"testing"
)

// TestGroupSyncShares: many concurrent callers all get a completed fsync,
// and share them: far fewer fsyncs run than there are callers.
func TestGroupSyncShares(t *testing.T) {
	g, err := newGroupSync(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	const callers = 64
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- g.Sync()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if g.done == 0 || g.done >= callers {
		t.Errorf("%d fsyncs for %d concurrent callers; want at least one and fewer than the callers", g.done, callers)
	}
	// A call after everything settled still runs an fsync of its own.
	before := g.done
	if err := g.Sync(); err != nil || g.done != before+1 {
		t.Errorf("lone Sync: err %v, fsyncs %d -> %d, want one more", err, before, g.done)
	}
}

// TestGroupSyncReportsError: a failed fsync is returned to its callers.
func TestGroupSyncReportsError(t *testing.T) {
	g, err := newGroupSync(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	g.Close() // fsync of a closed file fails
	if err := g.Sync(); err == nil {
		t.Error("Sync on a closed directory returned nil")
	}
}
