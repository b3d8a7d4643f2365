package fetch

import (
	"bytes"
	"errors"
	"io"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fault is what the proxy does to the first connection once the client has
// sent its first RETR.
type fault int

const (
	faultCut     fault = iota // close both sides after cutAfter bytes of replies
	faultStall                // after cutAfter bytes, stop passing replies on but keep the connection
	faultGarbage              // answer the RETR with a line that is not POP3
)

// faultProxy forwards TCP to a POP3 server and breaks the first connection
// in the chosen way. Later connections pass untouched.
type faultProxy struct {
	addr     string
	upstream string
	fault    fault
	cutAfter int64
	conns    atomic.Int32
	done     chan struct{} // closed at the end of the test
	mu       sync.Mutex
	open     []net.Conn
}

func startProxy(t *testing.T, upstream string, f fault, cutAfter int64) *faultProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{addr: l.Addr().String(), upstream: upstream, fault: f, cutAfter: cutAfter, done: make(chan struct{})}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go p.serve(c, p.conns.Add(1) == 1)
		}
	}()
	t.Cleanup(func() {
		close(p.done)
		l.Close()
		p.mu.Lock()
		for _, c := range p.open {
			c.Close()
		}
		p.mu.Unlock()
	})
	return p
}

func (p *faultProxy) serve(client net.Conn, faulty bool) {
	server, err := net.DialTimeout("tcp", p.upstream, 5*time.Second)
	if err != nil {
		client.Close()
		return
	}
	p.mu.Lock()
	p.open = append(p.open, client, server)
	p.mu.Unlock()
	var retrSeen atomic.Bool
	// client -> server, watching for the first RETR.
	go func() {
		defer server.Close()
		buf := make([]byte, 32<<10)
		var tail []byte
		for {
			n, err := client.Read(buf)
			if n > 0 {
				tail = append(tail, buf[:n]...)
				if faulty && !retrSeen.Load() && bytes.Contains(tail, []byte("RETR ")) {
					retrSeen.Store(true)
					if p.fault == faultGarbage {
						// The server never sees the RETR, so its side
						// is idle: the reply comes from here.
						client.Write([]byte("\x16\x03 this is not POP3 \x00\r\n"))
					}
				}
				if len(tail) > 16 {
					tail = tail[len(tail)-16:]
				}
				if faulty && p.fault == faultGarbage && retrSeen.Load() {
					continue // the server never sees it
				}
				if _, err := server.Write(buf[:n]); err != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	// server -> client.
	defer client.Close()
	buf := make([]byte, 32<<10)
	var after int64
	for {
		n, err := server.Read(buf)
		if n > 0 {
			out := buf[:n]
			if faulty && retrSeen.Load() {
				switch p.fault {
				case faultCut:
					if after+int64(n) > p.cutAfter {
						client.Write(out[:p.cutAfter-after])
						server.Close()
						return
					}
					after += int64(n)
				case faultStall:
					if after+int64(n) > p.cutAfter {
						client.Write(out[:p.cutAfter-after])
						io.Copy(io.Discard, server) // swallow everything from now on
						<-p.done                    // and never answer
						return
					}
					after += int64(n)
				}
			}
			if _, err := client.Write(out); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// TestNetworkFaults: a connection cut in the middle of a RETR, a server
// that stops sending, and a reply that is not POP3 each end the run with a
// clear error of the right kind; the server keeps everything (no QUIT), and
// the next clean run fetches every message exactly once and deletes them.
func TestNetworkFaults(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		fault    fault
		kind     error
		contains string
	}{
		{"cut mid-RETR", faultCut, ErrNetwork, "not terminated"},
		{"stall", faultStall, ErrNetwork, "timeout"},
		{"garbage", faultGarbage, ErrProtocol, "protocol"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ts := startServer(t, serverOpts{})
			msgs := corpus()
			ts.deliver(t, msgs...)
			// Cut 1 MB into the replies: several small messages are
			// delivered, the 5 MB one is not.
			proxy := startProxy(t, ts.Plain, tc.fault, 1<<20)
			spec := "maildir:" + filepath.Join(t.TempDir(), "md")
			host, port, _ := net.SplitHostPort(proxy.addr)
			a := account(t, "server = "+quote(host), "port = "+port, `tls = "none"`, "deliver = "+quote(spec),
				"keep = false", `timeout = "1s"`)
			start := time.Now()
			r := run(t, a, Options{})
			if !errors.Is(r.Err, tc.kind) {
				t.Fatalf("Fetch error %v, want %v", r.Err, tc.kind)
			}
			if !strings.Contains(r.Err.Error(), tc.contains) {
				t.Errorf("error %q does not mention %q", r.Err, tc.contains)
			}
			if d := time.Since(start); d > 20*time.Second {
				t.Errorf("the failed run took %v", d)
			}
			t.Logf("faulty run: %v; fetched %d", r.Err, r.Fetched)
			if r.Deleted != 0 {
				t.Errorf("deleted %d in the faulty run", r.Deleted)
			}
			sameMessages(t, "server after the faulty run", msgs, ts.messages(t))
			partial := local(t, spec)
			if len(partial) != r.Fetched {
				t.Errorf("local store has %d messages, the run reported %d", len(partial), r.Fetched)
			}

			clean := *a
			_, cport, _ := net.SplitHostPort(ts.Plain)
			clean.Port, _ = strconv.Atoi(cport)
			clean.Timeout = runTimeout // only the faulty run needs a short one
			// The faulty session's server side ends when the server sees
			// the proxy close; until then the maildrop is [IN-USE], which
			// the clean run would rightly report as busy.
			r2 := run(t, &clean, Options{})
			for deadline := time.Now().Add(10 * time.Second); errors.Is(r2.Err, ErrBusy) && time.Now().Before(deadline); {
				time.Sleep(50 * time.Millisecond)
				r2 = run(t, &clean, Options{})
			}
			if r2.Err != nil {
				t.Fatalf("clean run: %v", r2.Err)
			}
			if r2.Fetched != len(msgs)-r.Fetched || r2.Deleted != len(msgs) {
				t.Errorf("clean run fetched %d deleted %d, want %d and %d", r2.Fetched, r2.Deleted, len(msgs)-r.Fetched, len(msgs))
			}
			sameMessages(t, "local store after the clean run", msgs, local(t, spec))
			if got := ts.messages(t); len(got) != 0 {
				t.Errorf("server still has %d messages", len(got))
			}
		})
	}
}
