package metrics

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/popbox/popbox/pop3"
	"github.com/popbox/popbox/pop3server"
	"github.com/popbox/popbox/store"
)

// memBackend is a pop3server.Backend with one user and one message in
// memory, so that the benchmark measures the server and the hooks, not a
// disk.
type memBackend struct{ st store.Store }

func (memBackend) Authenticate(_ context.Context, _ pop3server.ConnInfo, user, _ string) (string, error) {
	return user, nil
}

func (b memBackend) Open(ctx context.Context, user string) (store.Maildrop, error) {
	return b.st.Open(ctx, user)
}

type memStore struct{ msg string }

func (s memStore) Open(context.Context, string) (store.Maildrop, error) { return memDrop(s), nil }
func (memStore) Deliver(context.Context, string, io.Reader) (store.MessageInfo, error) {
	return store.MessageInfo{}, nil
}

type memDrop struct{ msg string }

func (d memDrop) Messages() []store.MessageInfo {
	return []store.MessageInfo{{UIDL: "1", Size: int64(len(d.msg) + strings.Count(d.msg, "\n"))}}
}
func (d memDrop) Open(int) (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(d.msg)), nil }
func (memDrop) Commit([]int) error                { return nil }
func (memDrop) Close() error                      { return nil }

// benchmarkRETR is pop3server's BenchmarkRETR (a 50 KB message retrieved
// over and over by one session on loopback) with the server's Events and
// store wrapper set by withMetrics.
func benchmarkRETR(b *testing.B, withMetrics bool) {
	msg := strings.Repeat("Lorem ipsum dolor sit amet, consectetur adipiscing.\n.dot\n", 50<<10/58)
	var st store.Store = memStore{msg}
	srv := &pop3server.Server{Plaintext: pop3server.PlaintextAlways, AuthFailureDelay: -1,
		Limits: pop3server.Limits{IdleTimeout: 30 * time.Second}}
	m := New()
	if withMetrics {
		st = m.Store(st)
		srv.Events = m.POP3()
	}
	srv.Backend = memBackend{st}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	defer func() { srv.Close(); <-done }()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	cmd := func(line string) string {
		if line != "" {
			fmt.Fprintf(c, "%s\r\n", line)
		}
		s, err := r.ReadString('\n')
		if err != nil {
			b.Fatal(err)
		}
		return strings.TrimRight(s, "\r\n")
	}
	cmd("") // greeting
	cmd("USER u")
	if got := cmd("PASS p"); !strings.HasPrefix(got, "+OK") {
		b.Fatalf("PASS: %q", got)
	}
	want := fmt.Sprintf("+OK %d octets", len(strings.ReplaceAll(msg, "\n", "\r\n")))
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if got := cmd("RETR 1"); got != want {
			b.Fatalf("RETR 1: %q, want %q", got, want)
		}
		if _, err := io.Copy(io.Discard, pop3.NewDotReader(r)); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if withMetrics && value(b, m, "popbox_pop3_commands_total", "command=RETR", "result=ok") < 1 {
		b.Error("RETR not counted")
	}
}

// BenchmarkRETR compares RETR with and without metrics: the difference
// is the cost of the hooks and the store wrapper on the hot path.
func BenchmarkRETR(b *testing.B) {
	b.Run("plain", func(b *testing.B) { benchmarkRETR(b, false) })
	b.Run("metrics", func(b *testing.B) { benchmarkRETR(b, true) })
}
