package pop3server

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestSetLimitsWhileServing changes the limits, the failure delays and the
// login delay over and over while sessions come and go (run it with -race:
// that is most of its point), then checks that a new cap applies to the
// next connection while a logged-in session carries on.
func TestSetLimitsWhileServing(t *testing.T) {
	ts := newTestServer(t, fixtureBackend(), serverOpts{})
	held := ts.dial(t)
	held.login("alice", alicePass)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				if err := churn(ts.addr, i%2 == 0); err != nil {
					t.Errorf("client %d, round %d: %v", i, n, err)
					return
				}
			}
		})
	}
	for i := range 200 {
		ts.srv.SetLimits(Limits{
			IdleTimeout:         time.Duration(20+i%5) * time.Second,
			MaxConnectionsPerIP: 20 + i%3,
			MaxBadCommands:      5 + i%2,
			HandshakeTimeout:    ioTimeout,
		})
		ts.srv.SetAuthFailureDelay(-1, -1)
		ts.srv.SetLoginDelay(time.Duration(i%2) * time.Second)
		if i%20 == 0 {
			if got := held.cmd("NOOP"); got != "+OK" {
				t.Fatalf("held session, NOOP: %q", got)
			}
		}
		// Long enough for the clients to run sessions under each value.
		time.Sleep(time.Millisecond)
	}
	close(stop)
	wg.Wait()
	// The churning clients have hung up, but their sessions may not have
	// ended on the server side yet; the checks below count connections.
	for deadline := time.Now().Add(ioTimeout); ts.srv.nconns.Load() > 1; {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections still counted after the clients left, want 1 (the held session)", ts.srv.nconns.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}

	ts.srv.SetLimits(Limits{MaxConnectionsPerIP: 1, IdleTimeout: 30 * time.Second})
	over := ts.dialRaw(t)
	if got, want := over.line(), "-ERR [SYS/TEMP] too many connections from your address"; got != want {
		t.Fatalf("connection over the new per-address cap: %q, want %q", got, want)
	}
	over.expectClosed()
	if got, want := held.cmd("STAT"), fmt.Sprintf("+OK 4 %d", fixtureTotal()); got != want {
		t.Errorf("held session after SetLimits: %q, want %q", got, want)
	}

	ts.srv.SetLimits(Limits{MaxConnectionsPerIP: 2, IdleTimeout: 30 * time.Second})
	again := ts.dial(t)
	again.login("bob", bobPass)
	for _, c := range []*testClient{held, again} {
		if got := c.cmd("QUIT"); !strings.HasPrefix(got, "+OK") {
			t.Errorf("QUIT: %q", got)
		}
		c.expectClosed()
	}
}

// churn is one short session: greeting, CAPA, a failed login (with
// badLogin) or a bob login, QUIT. A refusal at a per-address cap, which
// the changing limits may cause, is not an error.
func churn(addr string, badLogin bool) error {
	c, err := net.DialTimeout("tcp", addr, ioTimeout)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(ioTimeout))
	r := bufio.NewReader(c)
	line := func() (string, error) {
		l, err := r.ReadString('\n')
		return strings.TrimRight(l, "\r\n"), err
	}
	greeting, err := line()
	if err != nil {
		return fmt.Errorf("greeting: %w", err)
	}
	if strings.HasPrefix(greeting, "-ERR [SYS/TEMP]") {
		return nil
	}
	user, pass := "nobody", "wrong"
	if !badLogin {
		user, pass = "bob", bobPass
	}
	fmt.Fprintf(c, "CAPA\r\nUSER %s\r\nPASS %s\r\nQUIT\r\n", user, pass)
	var got []string
	for {
		l, err := line()
		if err != nil {
			return fmt.Errorf("after %q: %w", got, err)
		}
		got = append(got, l)
		if strings.HasPrefix(l, "+OK popbox signing off") {
			return nil
		}
	}
}
