package dest

import (
	"fmt"
	"os"
	"sync"
)

// groupSync fsyncs one directory on behalf of many concurrent deliveries:
// a caller returns once an fsync that began after its call has completed,
// and callers that arrive while one runs share the next. The file system
// commits all their new entries in one go (group commit), so N deliveries
// at once cost about two directory fsyncs instead of N.
type groupSync struct {
	dir *os.File

	mu      sync.Mutex
	cond    *sync.Cond
	running bool
	started uint64 // generation of the last fsync begun
	done    uint64 // generation of the last fsync completed
	err     error  // result of generation done
}

func newGroupSync(path string) (*groupSync, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	g := &groupSync{dir: f}
	g.cond = sync.NewCond(&g.mu)
	return g, nil
}

// Sync makes durable every directory entry created before it was called.
func (g *groupSync) Sync() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	// An fsync already running may have begun before our entry was made,
	// so only one that starts after this point counts.
	target := g.started + 1
	for g.done < target {
		if g.running {
			g.cond.Wait()
			continue
		}
		g.running = true
		g.started++
		gen := g.started
		g.mu.Unlock()
		err := g.dir.Sync()
		g.mu.Lock()
		g.running = false
		g.done, g.err = gen, err
		g.cond.Broadcast()
	}
	// The newest completed fsync covers every entry made before it began.
	if g.err != nil {
		return fmt.Errorf("fsync %s: %w", g.dir.Name(), g.err)
	}
	return nil
}

func (g *groupSync) Close() error { return g.dir.Close() }
