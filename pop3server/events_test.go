package pop3server

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// eventLog is an Events that counts each call by a key naming it and its
// arguments, e.g. "Command RETR true".
type eventLog struct {
	mu     sync.Mutex
	counts map[string]int
	sent   map[bool]int64
}

func newEventLog() *eventLog { return &eventLog{counts: map[string]int{}, sent: map[bool]int64{}} }

func (e *eventLog) add(format string, args ...any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.counts[fmt.Sprintf(format, args...)]++
}

func (e *eventLog) ConnAccepted(listener string)        { e.add("ConnAccepted %s", listener) }
func (e *eventLog) ConnRefused(listener, reason string) { e.add("ConnRefused %s %s", listener, reason) }
func (e *eventLog) SessionStarted()                     { e.add("SessionStarted") }
func (e *eventLog) SessionEnded()                       { e.add("SessionEnded") }
func (e *eventLog) Login(mech string, ok bool)          { e.add("Login %s %v", mech, ok) }
func (e *eventLog) Command(name string, ok bool)        { e.add("Command %s %v", name, ok) }
func (e *eventLog) MessagesDeleted(n int)               { e.add("MessagesDeleted %d", n) }
func (e *eventLog) InUse()                              { e.add("InUse") }

func (e *eventLog) MessageSent(top bool, n int64) {
	e.add("MessageSent %v", top)
	e.mu.Lock()
	e.sent[top] += n
	e.mu.Unlock()
}

func (e *eventLog) count(key string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.counts[key]
}

// waitCount waits until key has been counted want times.
func (e *eventLog) waitCount(t *testing.T, key string, want int) {
	t.Helper()
	deadline := time.Now().Add(ioTimeout)
	for e.count(key) != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s counted %d times, want %d", key, e.count(key), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestEvents: a session's connection, logins, commands and messages
// reach Events, each once, with the listener, mechanism and command names
// the package defines.
func TestEvents(t *testing.T) {
	ev := newEventLog()
	ts := newTestServer(t, fixtureBackend(), serverOpts{configure: func(s *Server) { s.Events = ev }})

	c := ts.dial(t)
	c.cmd("USER alice")
	if got := c.cmd("PASS wrong"); !strings.HasPrefix(got, "-ERR [AUTH]") {
		t.Fatalf("wrong password: %q", got)
	}
	c.login("alice", alicePass)
	c.cmd("XYZZY")
	c.cmd("NOOP extra")
	c.cmd("STAT")
	if got := c.cmd("TOP 1 0"); !strings.HasPrefix(got, "+OK") {
		t.Fatalf("TOP: %q", got)
	}
	top := c.body()
	if got := c.cmd("RETR 1"); !strings.HasPrefix(got, "+OK") {
		t.Fatalf("RETR: %q", got)
	}
	c.body()
	c.cmd("DELE 1")
	c.cmd("DELE 2")

	// A second login while alice's maildrop is held.
	c2 := ts.dialTLS(t)
	c2.cmd("USER alice")
	if got := c2.cmd("PASS " + alicePass); !strings.HasPrefix(got, "-ERR [IN-USE]") {
		t.Fatalf("second login: %q", got)
	}
	c.cmd("QUIT")
	c.expectClosed()
	c2.close()
	ev.waitCount(t, "SessionEnded", 2)

	for key, want := range map[string]int{
		"ConnAccepted pop3":   1,
		"ConnAccepted pop3s":  1,
		"SessionStarted":      2,
		"Login USER false":    1,
		"Login USER true":     1,
		"InUse":               1,
		"Command USER true":   3,
		"Command PASS false":  2, // the wrong password and IN-USE
		"Command PASS true":   1,
		"Command  false":      1, // XYZZY: no name, so no label for it
		"Command NOOP false":  1,
		"Command STAT true":   1,
		"Command TOP true":    1,
		"Command RETR true":   1,
		"Command DELE true":   2,
		"Command QUIT true":   1,
		"MessageSent false":   1,
		"MessageSent true":    1,
		"MessagesDeleted 2":   1,
		"Command XYZZY false": 0,
		"SessionEnded":        2,
		"Command RETR false":  0,
		"Command STAT false":  0,
	} {
		if got := ev.count(key); got != want {
			t.Errorf("%q counted %d times, want %d", key, got, want)
		}
	}
	if got, want := ev.sent[false], int64(fixtureSize(1)); got != want {
		t.Errorf("RETR sent %d octets by Events, want the wire size %d", got, want)
	}
	// TOP n 0 sends the header and the blank line: stored octets, so
	// at most the wire octets (CRLF line ends) the client read.
	wire := int64(len(top))
	if got := ev.sent[true]; got <= 0 || got > wire {
		t.Errorf("TOP sent %d octets by Events, want 1 to %d", got, wire)
	}
}

// TestEventsRefusals: connections over a limit are reported with the
// reason, and never as sessions.
func TestEventsRefusals(t *testing.T) {
	ev := newEventLog()
	ts := newTestServer(t, fixtureBackend(), serverOpts{configure: func(s *Server) {
		s.Events = ev
		s.Limits.MaxUnauthenticatedPerIP = 1
	}})
	first := ts.dial(t)
	second := ts.dialRaw(t)
	if got := second.line(); !strings.HasPrefix(got, "-ERR [SYS/TEMP] too many connections from your address") {
		t.Fatalf("second connection: %q", got)
	}
	if got := ev.count("ConnRefused pop3 per_address"); got != 1 {
		t.Errorf("per-address refusals: %d, want 1", got)
	}
	first.close()
	ev.waitCount(t, "SessionEnded", 1)

	ev = newEventLog()
	ts = newTestServer(t, fixtureBackend(), serverOpts{configure: func(s *Server) {
		s.Events = ev
		s.Limits.MaxConnections = 1
	}})
	first = ts.dial(t)
	second = ts.dialRaw(t)
	if got := second.line(); !strings.HasPrefix(got, "-ERR [SYS/TEMP]") {
		t.Fatalf("connection over MaxConnections: %q", got)
	}
	if got := ev.count("ConnRefused pop3 max_connections"); got != 1 {
		t.Errorf("max-connections refusals: %d, want 1", got)
	}
	if got := ev.count("ConnAccepted pop3"); got != 1 {
		t.Errorf("accepted: %d, want 1 (refused connections are not sessions)", got)
	}
	first.close()
}

// TestEventNames: the names Events is given are the package's own, so
// that an implementation can resolve every label in advance.
func TestEventNames(t *testing.T) {
	names := CommandNames()
	if !slices.IsSorted(names) || len(names) != len(commands) {
		t.Errorf("CommandNames() = %v: want the %d commands sorted", names, len(commands))
	}
	mechs := LoginMechanisms()
	// Every mechanism a session may offer, whatever the configuration, is
	// listed.
	b := fixtureBackend()
	ts := newTestServer(t, b, serverOpts{})
	s := &session{srv: ts.srv}
	for _, m := range s.mechanisms() {
		if !slices.Contains(mechs, m.name) {
			t.Errorf("mechanism %s not in LoginMechanisms() %v", m.name, mechs)
		}
	}
}
