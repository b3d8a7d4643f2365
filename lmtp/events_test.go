package lmtp

import (
	"bufio"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// eventLog is an Events that counts the calls.
type eventLog struct {
	mu         sync.Mutex
	accepted   int
	refused    map[string]int
	deliveries map[DeliveryResult]int
}

func newEventLog() *eventLog {
	return &eventLog{refused: map[string]int{}, deliveries: map[DeliveryResult]int{}}
}

func (e *eventLog) ConnAccepted() { e.mu.Lock(); e.accepted++; e.mu.Unlock() }
func (e *eventLog) ConnRefused(reason string) {
	e.mu.Lock()
	e.refused[reason]++
	e.mu.Unlock()
}
func (e *eventLog) Delivery(r DeliveryResult) {
	e.mu.Lock()
	e.deliveries[r]++
	e.mu.Unlock()
}

func (e *eventLog) snapshot() (int, map[string]int, map[DeliveryResult]int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	r, d := map[string]int{}, map[DeliveryResult]int{}
	for k, v := range e.refused {
		r[k] = v
	}
	for k, v := range e.deliveries {
		d[k] = v
	}
	return e.accepted, r, d
}

// TestEvents: every recipient's final reply is reported once, classified
// as the reply says (a full mailbox apart), and so are connections.
func TestEvents(t *testing.T) {
	ev := newEventLog()
	st := newMemStore()
	st.quota["bob"] = true
	st.fail["carol"] = true
	ts := newTestServer(t, st, func(s *Server) {
		s.Events = ev
		s.MaxMessageBytes = 1024
	})
	c := ts.hello(t)
	c.cmd("MAIL FROM:<s@example.org>")
	for _, r := range []string{"alice", "bob", "carol", "nobody"} {
		c.cmd("RCPT TO:<" + r + "@example.org>")
	}
	c.cmd("DATA")
	c.send("Subject: hi\r\n\r\nhello\r\n.\r\n")
	for range 3 { // nobody was refused at RCPT: no reply after DATA
		c.reply()
	}
	// Too big: every recipient gets 552.
	c.cmd("MAIL FROM:<s@example.org>")
	c.cmd("RCPT TO:<alice@example.org>")
	c.cmd("RCPT TO:<alice@example.org>")
	c.cmd("DATA")
	c.send(strings.Repeat("x", 2000) + "\r\n.\r\n")
	for range 2 {
		if got := c.reply(); !strings.HasPrefix(got[0], "552") {
			t.Errorf("too big: %q, want 552", got)
		}
	}
	c.cmd("QUIT")

	accepted, refused, deliveries := ev.snapshot()
	if accepted != 1 || len(refused) != 0 {
		t.Errorf("accepted %d, refused %v; want 1 and none", accepted, refused)
	}
	want := map[DeliveryResult]int{Delivered: 1, DeliveryOverQuota: 1, DeliveryTempFail: 1, DeliveryPermFail: 2}
	for r, n := range want {
		if deliveries[r] != n {
			t.Errorf("%s deliveries: %d, want %d (all: %v)", r, deliveries[r], n, deliveries)
		}
	}
}

func TestEventsRefused(t *testing.T) {
	ev := newEventLog()
	ts := newTestServer(t, newMemStore(), func(s *Server) {
		s.Events = ev
		s.MaxConnections = 1
	})
	ts.hello(t)
	c, err := net.DialTimeout("tcp", ts.addr, ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	second := &rawClient{t: t, c: c, r: bufio.NewReader(c)}
	if rest := second.expectClosed(); code(rest[0]) != "421 4.3.2" {
		t.Fatalf("second connection: %q, want 421", rest)
	}
	deadline := time.Now().Add(ioTimeout)
	for {
		accepted, refused, _ := ev.snapshot()
		if accepted == 1 && refused[RefusedMaxConnections] == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("accepted %d, refused %v; want 1 and 1 max_connections", accepted, refused)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
