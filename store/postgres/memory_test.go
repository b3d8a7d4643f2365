package postgres

import (
	"crypto/sha256"
	"io"
	"runtime"
	"sync"
	"testing"
	"time"
)

// genReader produces n octets of text, 64-octet lines ending in LF, made
// as they are read: the test never holds the message either.
type genReader struct {
	n, off int64
	line   [64]byte
}

const genLine = 64

func newGenReader(n int64) *genReader {
	g := &genReader{n: n}
	for i := range g.line {
		g.line[i] = '.'
	}
	copy(g.line[:], "line 00000000 of a big message, streamed in chunks")
	g.line[genLine-1] = '\n'
	return g
}

func (g *genReader) Read(p []byte) (int, error) {
	if g.off >= g.n {
		return 0, io.EOF
	}
	k := 0
	for k < len(p) && g.off < g.n {
		in := int(g.off % genLine)
		if in == 0 {
			// Number the line, in decimal, in place.
			v := g.off / genLine
			for i := 12; i >= 5; i-- {
				g.line[i] = byte('0' + v%10)
				v /= 10
			}
		}
		c := copy(p[k:], g.line[in:])
		c = int(min(int64(c), g.n-g.off))
		k += c
		g.off += int64(c)
	}
	return k, nil
}

// heapPeak samples HeapInuse until stopped, and reports the highest value.
type heapPeak struct {
	stop chan struct{}
	done sync.WaitGroup
	peak uint64
}

func watchHeap() *heapPeak {
	h := &heapPeak{stop: make(chan struct{})}
	h.done.Go(func() {
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			h.peak = max(h.peak, ms.HeapInuse)
			select {
			case <-h.stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	})
	return h
}

func (h *heapPeak) Stop() uint64 {
	close(h.stop)
	h.done.Wait()
	return h.peak
}

// TestLargeMessageMemory delivers and reads a 50 MB message and checks that
// neither direction holds it in memory: the heap in use never grows by more
// than a fraction of the message.
func TestLargeMessageMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("50 MB through the database")
	}
	const size = 50 << 20
	const lines = size / genLine
	s := openStore(t, newDatabase(t), Options{})

	want := sha256.New()
	if _, err := io.Copy(want, newGenReader(size)); err != nil {
		t.Fatal(err)
	}

	// Warm up the pool's connections and pgx's buffers, so that what
	// follows measures the message, not the first use of the store.
	mustDeliver(t, s, "warmup", string(make([]byte, 2*chunkSize)))
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	h := watchHeap()
	start := time.Now()
	info, err := s.Deliver(tctx(t), "alice", newGenReader(size))
	if err != nil {
		t.Fatal(err)
	}
	deliverTime := time.Since(start)
	if info.Size != size+lines { // every LF becomes CRLF on the wire
		t.Errorf("wire size %d, want %d", info.Size, size+lines)
	}
	peakDeliver := h.Stop()
	var mid runtime.MemStats
	runtime.ReadMemStats(&mid)

	runtime.GC()
	var beforeRead runtime.MemStats
	runtime.ReadMemStats(&beforeRead)
	h = watchHeap()
	start = time.Now()
	m := mustOpen(t, s, "alice")
	defer m.Close()
	rc, err := m.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	got := sha256.New()
	n, err := io.Copy(got, rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	readTime := time.Since(start)
	peakRead := h.Stop()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)

	if n != size || string(got.Sum(nil)) != string(want.Sum(nil)) {
		t.Fatalf("read %d octets, content differs: %v", n, string(got.Sum(nil)) != string(want.Sum(nil)))
	}
	const bound = 16 << 20 // a third of the message; a whole copy would be 50 MiB
	growD := int64(peakDeliver) - int64(before.HeapInuse)
	growR := int64(peakRead) - int64(beforeRead.HeapInuse)
	allocD := float64(mid.TotalAlloc-before.TotalAlloc) / size
	allocR := float64(after.TotalAlloc-beforeRead.TotalAlloc) / size
	t.Logf("deliver: %v, heap in use grew by at most %.1f MiB, allocated %.2f octets per message octet",
		deliverTime.Round(time.Millisecond), float64(growD)/(1<<20), allocD)
	t.Logf("read: %v, heap in use grew by at most %.1f MiB, allocated %.2f octets per message octet",
		readTime.Round(time.Millisecond), float64(growR)/(1<<20), allocR)
	if growD > bound {
		t.Errorf("Deliver: heap in use grew by %d MiB for a %d MiB message", growD>>20, size>>20)
	}
	if growR > bound {
		t.Errorf("read: heap in use grew by %d MiB for a %d MiB message", growR>>20, size>>20)
	}
}
