package pop3server

import (
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/popbox/popbox/pop3"
)

// BenchmarkRETR: one session retrieves a 50 KB message over and over.
func BenchmarkRETR(b *testing.B) {
	be := newMemBackend()
	be.addUser("u", "p")
	msg := strings.Repeat("Lorem ipsum dolor sit amet, consectetur adipiscing.\n.dot\n", 50<<10/58)
	be.add("u", msg)
	ts := newTestServer(b, be, serverOpts{})
	c := ts.dial(b)
	c.login("u", "p")
	want := fmt.Sprintf("+OK %d octets", len(strings.ReplaceAll(msg, "\n", "\r\n")))
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if got := c.cmd("RETR 1"); got != want {
			b.Fatalf("RETR 1: %q, want %q", got, want)
		}
		if _, err := io.Copy(io.Discard, pop3.NewDotReader(c.r)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRETRNext: lock-step RETR of 50 KB messages in turn, as a
// fetcher downloads a mailbox: each reply after the first of a pass is
// prepared while the client reads the one before (prefetch.go).
func BenchmarkRETRNext(b *testing.B) {
	const n = 64
	be := newMemBackend()
	be.addUser("u", "p")
	msg := strings.Repeat("Lorem ipsum dolor sit amet, consectetur adipiscing.\n.dot\n", 50<<10/58)
	for range n {
		be.add("u", msg)
	}
	ts := newTestServer(b, be, serverOpts{})
	c := ts.dial(b)
	c.login("u", "p")
	want := fmt.Sprintf("+OK %d octets", len(strings.ReplaceAll(msg, "\n", "\r\n")))
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if got := c.cmd(fmt.Sprintf("RETR %d", i%n+1)); got != want {
			b.Fatalf("RETR %d: %q, want %q", i%n+1, got, want)
		}
		if _, err := io.Copy(io.Discard, pop3.NewDotReader(c.r)); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkSTATUIDL10k: STAT and UIDL on a 10,000-message mailbox.
func BenchmarkSTATUIDL10k(b *testing.B) {
	const n = 10_000
	be := newMemBackend()
	be.addUser("u", "p")
	for i := 0; i < n; i++ {
		be.add("u", fmt.Sprintf("Subject: %d\r\n\r\nbody\r\n", i))
	}
	ts := newTestServer(b, be, serverOpts{})
	c := ts.dial(b)
	c.login("u", "p")
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if got := c.cmd("STAT"); !strings.HasPrefix(got, fmt.Sprintf("+OK %d ", n)) {
			b.Fatalf("STAT: %q", got)
		}
		if got := c.cmd("UIDL"); got != "+OK" {
			b.Fatalf("UIDL: %q", got)
		}
		lines := strings.Count(c.body(), "\r\n")
		if lines != n {
			b.Fatalf("UIDL listed %d messages, want %d", lines, n)
		}
	}
}
