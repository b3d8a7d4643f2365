package lmtp

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/popbox/popbox/pop3"
	"github.com/popbox/popbox/store"
)

// ioTimeout bounds every wait in the tests, so a bug fails a test instead
// of hanging it.
const ioTimeout = 10 * time.Second

// memStore is a store.Store in memory. Users in quota are over quota;
// users in fail fail after reading half the message, users in full as on a
// full disk; while block is
// non-nil, Deliver waits for it to close or for its context to end.
type memStore struct {
	mu      sync.Mutex
	msgs    map[string][]string
	quota   map[string]bool
	fail    map[string]bool
	full    map[string]bool
	block   chan struct{}
	started chan string // if non-nil, Deliver sends the user name when called
	ctxErrs []error     // the context errors blocked deliveries saw
}

func newMemStore() *memStore {
	return &memStore{msgs: map[string][]string{}, quota: map[string]bool{}, fail: map[string]bool{}, full: map[string]bool{}}
}

func (m *memStore) Open(context.Context, string) (store.Maildrop, error) {
	return nil, errors.New("memStore: Open not supported")
}

func (m *memStore) Deliver(ctx context.Context, user string, r io.Reader) (store.MessageInfo, error) {
	if m.started != nil {
		m.started <- user
	}
	m.mu.Lock()
	block, quota, fail, full := m.block, m.quota[user], m.fail[user], m.full[user]
	m.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			m.mu.Lock()
			m.ctxErrs = append(m.ctxErrs, ctx.Err())
			m.mu.Unlock()
			return store.MessageInfo{}, fmt.Errorf("memStore: %w", ctx.Err())
		}
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return store.MessageInfo{}, err
	}
	switch {
	case quota:
		return store.MessageInfo{}, fmt.Errorf("memStore: %s: %w", user, store.ErrQuota)
	case fail:
		return store.MessageInfo{}, errors.New("memStore: disk on fire")
	case full:
		return store.MessageInfo{}, fmt.Errorf("memStore: write: %w", syscall.ENOSPC)
	}
	size, _ := pop3.WireSize(bytes.NewReader(b))
	m.mu.Lock()
	defer m.mu.Unlock()
	m.msgs[user] = append(m.msgs[user], string(b))
	return store.MessageInfo{UIDL: fmt.Sprintf("%s-%d", user, len(m.msgs[user])), Size: size}, nil
}

func (m *memStore) contents() map[string][]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string][]string{}
	for u, msgs := range m.msgs {
		out[u] = append([]string(nil), msgs...)
	}
	return out
}

// testUsers knows alice, bob and carol; "down" makes the lookup fail as a
// database that is unreachable would.
func testUsers() AddressResolver {
	known := map[string]bool{"alice": true, "bob": true, "carol": true, "dave@example.net": true}
	return AddressResolver{Lookup: func(ctx context.Context, name string) (string, error) {
		switch {
		case name == "down" || strings.HasPrefix(name, "down@"):
			return "", errors.New("user database unreachable")
		case known[name]:
			return name, nil
		}
		return "", fmt.Errorf("%w: %q", ErrUnknownRecipient, name)
	}}
}

// syncBuffer collects log output from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type testServer struct {
	srv   *Server
	addr  string
	logs  *syncBuffer
	serve chan error

	serveOnce sync.Once
	serveErr  error
}

// served waits for Serve to return and returns its error.
func (ts *testServer) served(t *testing.T) error {
	t.Helper()
	ts.serveOnce.Do(func() {
		select {
		case ts.serveErr = <-ts.serve:
		case <-time.After(ioTimeout):
			ts.serveErr = errors.New("Serve did not return")
		}
	})
	return ts.serveErr
}

// newTestServer serves st on a loopback TCP port; configure may change the
// Server before it starts. The server is closed when the test ends.
func newTestServer(t *testing.T, st store.Store, configure func(*Server)) *testServer {
	t.Helper()
	logs := &syncBuffer{}
	srv := &Server{
		Store:    st,
		Users:    testUsers(),
		Hostname: "mx.test",
		Logger:   slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if configure != nil {
		configure(srv)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{srv: srv, addr: l.Addr().String(), logs: logs, serve: make(chan error, 1)}
	go func() { ts.serve <- srv.Serve(l) }()
	t.Cleanup(func() {
		srv.Close()
		if err := ts.served(t); !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	return ts
}

// rawClient speaks LMTP by hand, for what go-smtp's client will not send.
type rawClient struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func (ts *testServer) dial(t *testing.T) *rawClient {
	t.Helper()
	c, err := net.DialTimeout("tcp", ts.addr, ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	rc := &rawClient{t: t, c: c, r: bufio.NewReader(c)}
	if got := rc.reply(); !strings.HasPrefix(got[0], "220 ") {
		t.Fatalf("greeting %q", got)
	}
	return rc
}

// hello dials and sends LHLO.
func (ts *testServer) hello(t *testing.T) *rawClient {
	t.Helper()
	rc := ts.dial(t)
	if got := rc.cmd("LHLO client.test"); !strings.HasPrefix(last(got), "250 ") {
		t.Fatalf("LHLO: %q", got)
	}
	return rc
}

func (rc *rawClient) send(s string) {
	rc.t.Helper()
	rc.c.SetWriteDeadline(time.Now().Add(ioTimeout))
	if _, err := io.WriteString(rc.c, s); err != nil {
		rc.t.Fatalf("send %q: %v", s, err)
	}
}

// line reads one reply line without its CRLF.
func (rc *rawClient) line() string {
	rc.t.Helper()
	rc.c.SetReadDeadline(time.Now().Add(ioTimeout))
	s, err := rc.r.ReadString('\n')
	if err != nil {
		rc.t.Fatalf("reading a reply: %v (got %q)", err, s)
	}
	return strings.TrimSuffix(s, "\r\n")
}

// reply reads one reply, all of its lines.
func (rc *rawClient) reply() []string {
	rc.t.Helper()
	var lines []string
	for {
		l := rc.line()
		lines = append(lines, l)
		if len(l) < 4 || l[3] != '-' {
			return lines
		}
	}
}

// cmd sends one command line and returns its reply.
func (rc *rawClient) cmd(s string) []string {
	rc.t.Helper()
	rc.send(s + "\r\n")
	return rc.reply()
}

// expectClosed checks that the server closes the connection, returning
// what it said before.
func (rc *rawClient) expectClosed() []string {
	rc.t.Helper()
	rc.c.SetReadDeadline(time.Now().Add(ioTimeout))
	rest, err := io.ReadAll(rc.r)
	// A server that closes with client data unread makes the kernel reset
	// the connection; that is closed too.
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		rc.t.Errorf("waiting for the server to close: %v (got %q)", err, rest)
	}
	return strings.Split(strings.TrimSuffix(string(rest), "\r\n"), "\r\n")
}

func last(lines []string) string { return lines[len(lines)-1] }

// code returns a reply's first line up to the enhanced code: "250 2.0.0".
func code(line string) string {
	f := strings.Fields(line)
	if len(f) < 2 {
		return line
	}
	return f[0] + " " + f[1]
}
