package fetch

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// BenchmarkFetchMaildir fetches 1,000 messages of 50 KB from an in-process
// popbox server over loopback into a Maildir (with fsync), keep mode, a
// fresh journal and Maildir each time: the fetcher's own cost per message,
// which over a slow link must hide behind the network.
func BenchmarkFetchMaildir(b *testing.B) {
	ts := startServer(b, serverOpts{})
	body := strings.Repeat(strings.Repeat("x", 76)+"\n", 50000/77)
	var msgs []string
	for i := range 1000 {
		msgs = append(msgs, fmt.Sprintf("Subject: message %d\n\n%s", i, body))
	}
	ts.deliver(b, msgs...)
	b.SetBytes(int64(len(msgs) * len(msgs[0])))
	b.ResetTimer()
	for i := range b.N {
		dir := filepath.Join(b.TempDir(), fmt.Sprint(i))
		a := plainAccount(b, ts, "maildir:"+dir)
		r := mustRun(b, a, Options{})
		if r.Fetched != len(msgs) {
			b.Fatalf("fetched %d, want %d", r.Fetched, len(msgs))
		}
		b.StopTimer()
		os.RemoveAll(dir)
		b.StartTimer()
	}
}
