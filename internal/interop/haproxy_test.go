package interop

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The client's address in TestHAProxy: loopback, so that it needs no
// network, but not HAProxy's own 127.0.0.1, so that popbox logging it
// proves the address came from the PROXY header and not from the socket.
// fakeIP connects to popbox directly, from an address it does not trust,
// and claims spoofedIP in a header of its own.
const (
	haClientIP = "127.0.0.5"
	fakeIP     = "127.0.0.6"
	spoofedIP  = "203.0.113.9"
)

// TestHAProxy runs popbox behind Debian's HAProxy, as issue 7 deploys it:
// two `popbox serve` frontends on one data directory (the Maildir store
// supports several processes on one root), HAProxy balancing POP3 and
// POP3S over both round-robin with send-proxy-v2, and curl as the client.
// Every login must be logged with the client's address, not HAProxy's;
// mail must come through byte for byte; and a client talking to popbox
// directly must not be able to claim another address with a header.
func TestHAProxy(t *testing.T) {
	requireTool(t, tool{"haproxy", "haproxy"})
	requireTool(t, tool{"curl", "curl"})

	// Only HAProxy, connecting from 127.0.0.1, is trusted. No LMTP socket:
	// two servers cannot share one, and mail goes in with popbox deliver.
	const config = `[pop3]
proxy_protocol_trusted = ["127.0.0.1/32"]
proxy_header_timeout = "5s"

[lmtp]
socket = ""
`
	data := t.TempDir()
	// Started one after the other: the first creates the certificate and
	// the SCRAM secret in the data directory, the second reads them.
	a := startServerConfig(t, data, config)
	b := startServerConfig(t, data, config)
	const user, password = "proxied", "Proxied-pw-7"
	a.addUser(t, user, password)
	msg := message{name: "through haproxy", data: []byte("From: a@example.org\r\nTo: proxied@example.org\r\n" +
		"Subject: behind a load balancer\r\n\r\n.a line that starts with a dot\r\n..two\r\n.\r\n" +
		"8-bit: gr\xc3\xbc\xc3\x9fe\r\nno final newline")}
	a.deliver(t, user, msg)
	wire := wireForm(msg.data)

	ha := startHAProxy(t, []*server{a, b})

	// Four sessions per frontend: round-robin gives each popbox two of
	// each. pop3:// runs STLS (--ssl-reqd), as a client elsewhere would
	// have to. HAProxy passes TLS through, so curl checks popbox's own
	// certificate.
	urls := []struct{ name, url string }{
		{"pop3 STLS", "pop3://127.0.0.1:" + ha.pop3},
		{"pop3s", "pop3s://127.0.0.1:" + ha.pop3s},
	}
	sessions := 0
	for _, u := range urls {
		for i := range 2 {
			list := runCurl(t, a.cafile, user, password, u.url+"/")
			if want := fmt.Sprintf("1 %d\r\n", len(wire)); list != want {
				t.Errorf("%s LIST #%d: %q, want %q", u.name, i+1, list, want)
			}
			got := runCurl(t, a.cafile, user, password, u.url+"/1")
			if !bytes.Equal([]byte(got), wire) {
				t.Errorf("%s RETR 1 #%d: got %d octets %.200q, want %d octets %.200q", u.name, i+1, len(got), got, len(wire), wire)
			}
			sessions += 2
		}
	}

	// A client that is not HAProxy, with a header of its own: popbox reads
	// it as a (bad) command and goes on knowing the client as 127.0.0.6.
	fakeHeader(t, a.plain, user, password)

	// Every login is logged by the popbox that served it once the reply
	// is on its way; the log reaches the test through a pipe.
	var counts [2]int
	waitLog(t, "login lines from both frontends", func() bool {
		for i, s := range []*server{a, b} {
			counts[i] = 0
			for _, line := range strings.Split(s.log.String(), "\n") {
				if !strings.Contains(line, " msg=login ") {
					continue
				}
				ip, proxy := logAttr(line, "remote_ip"), logAttr(line, "proxy")
				if ip == fakeIP && proxy == "" {
					continue // fakeHeader's, below
				}
				if ip != haClientIP || !strings.HasPrefix(proxy, "127.0.0.1:") {
					t.Fatalf("popbox %c logged a relayed login as remote_ip=%s proxy=%s, want remote_ip=%s proxy=127.0.0.1:port\n%s",
						'A'+i, ip, proxy, haClientIP, line)
				}
				counts[i]++
			}
		}
		return counts[0]+counts[1] == sessions
	})
	if counts[0] == 0 || counts[1] == 0 {
		t.Errorf("logins per popbox: %v; round-robin over two servers should reach both", counts)
	}
	t.Logf("%d sessions through HAProxy, logins per popbox %v", sessions, counts)

	waitLog(t, "the direct client's login", func() bool {
		return strings.Contains(a.log.String(), "msg=login remote="+fakeIP+":")
	})
	for i, s := range []*server{a, b} {
		if l := s.log.String(); strings.Contains(l, spoofedIP) {
			t.Errorf("popbox %c logged the spoofed address %s:\n%s", 'A'+i, spoofedIP, l)
		}
	}
	if t.Failed() {
		t.Logf("haproxy log:\n%s", ha.log.String())
	}
}

// haproxy is a running HAProxy and its frontends' ports.
type haproxy struct {
	pop3, pop3s string
	log         *syncBuffer
}

// startHAProxy runs HAProxy in the foreground (-db) with a configuration
// of its own in a temporary directory: no daemon, no chroot, no user
// switch, no stats, no logging but its start-up errors on stderr. It is
// killed when the test ends.
func startHAProxy(t *testing.T, backends []*server) *haproxy {
	t.Helper()
	ha := &haproxy{pop3: strconv.Itoa(freePort(t)), pop3s: strconv.Itoa(freePort(t)), log: &syncBuffer{}}
	var cfg strings.Builder
	fmt.Fprintf(&cfg, `global
    maxconn 200
    nbthread 1

defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s

frontend pop3
    bind 127.0.0.1:%s
    default_backend popbox_pop3

frontend pop3s
    bind 127.0.0.1:%s
    default_backend popbox_pop3s
`, ha.pop3, ha.pop3s)
	// No health checks: they would add sessions of their own to the logs.
	for _, be := range []string{"pop3", "pop3s"} {
		fmt.Fprintf(&cfg, "\nbackend popbox_%s\n    balance roundrobin\n", be)
		for i, s := range backends {
			addr := s.plain
			if be == "pop3s" {
				addr = s.tls
			}
			fmt.Fprintf(&cfg, "    server popbox%d %s send-proxy-v2\n", i+1, addr)
		}
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(file, []byte(cfg.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("haproxy", "-c", "-f", file).CombinedOutput(); err != nil {
		t.Fatalf("haproxy -c: %v\n%s\nconfiguration:\n%s", err, out, cfg.String())
	}

	cmd := exec.Command("haproxy", "-f", file, "-db")
	cmd.Dir = dir
	cmd.Stdout = ha.log
	cmd.Stderr = ha.log
	cmd.WaitDelay = stopTimeout
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting haproxy: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("haproxy configuration:\n%s", cfg.String())
		}
	})
	// Readiness is read from the kernel's socket table rather than probed
	// with a connection, which HAProxy would relay to a popbox as a
	// session of its own.
	deadline := time.Now().Add(startTimeout)
	for !tcpListening(t, ha.pop3) || !tcpListening(t, ha.pop3s) {
		select {
		case err := <-exited:
			t.Fatalf("haproxy exited during start-up (%v):\n%s", err, ha.log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("haproxy does not listen on ports %s and %s after %v:\n%s", ha.pop3, ha.pop3s, startTimeout, ha.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return ha
}

// tcpListening reports whether a socket listens on 127.0.0.1:port, from
// /proc/net/tcp (lines "sl local_address rem_address st ...", addresses in
// hex, state 0A for LISTEN).
func tcpListening(t *testing.T, port string) bool {
	t.Helper()
	table, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("0100007F:%04X", n)
	for _, line := range strings.Split(string(table), "\n") {
		f := strings.Fields(line)
		if len(f) > 3 && f[1] == want && f[3] == "0A" {
			return true
		}
	}
	return false
}

// runCurl runs one curl session from haClientIP and returns its output.
// --ssl-reqd makes a pop3:// URL use STLS, and fail without it.
func runCurl(t *testing.T, cafile, user, password, url string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), clientTimeout)
	defer cancel()
	cfg := filepath.Join(t.TempDir(), "curl.cfg")
	// The password stays off the command line, as in testdata/curl.sh.
	if err := os.WriteFile(cfg, fmt.Appendf(nil, "user = \"%s:%s\"\n", user, password), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, "curl", "-sS", "--ssl-reqd", "--cacert", cafile,
		"--interface", haClientIP, "-K", cfg, url)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("curl %s: %v\n%s", url, err, stderr.String())
	}
	return string(out)
}

// fakeHeader connects to popbox directly from fakeIP, which it does not
// trust, sends a PROXY header claiming spoofedIP after the greeting, and
// logs in.
func fakeHeader(t *testing.T, addr, user, password string) {
	t.Helper()
	d := net.Dialer{Timeout: ioTimeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(fakeIP)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Sent before the greeting, as a proxy would: an untrusted peer gets
	// it back as a bad command once greeted.
	c.SetDeadline(time.Now().Add(ioTimeout))
	if _, err := fmt.Fprintf(c, "PROXY TCP4 %s 127.0.0.1 40000 110\r\n", spoofedIP); err != nil {
		t.Fatal(err)
	}
	p := &popConn{conn: c, r: bufio.NewReader(c)}
	if g, err := p.readLine(); err != nil || !bytes.HasPrefix(g, []byte("+OK")) {
		t.Fatalf("greeting to a direct client: %q, %v", g, err)
	}
	if line, err := p.readLine(); err != nil || !bytes.HasPrefix(line, []byte("-ERR")) {
		t.Fatalf("PROXY line from an untrusted client: %q, %v; want -ERR", line, err)
	}
	// Plaintext is allowed: the client really is on loopback.
	p.ok(t, "USER "+user)
	p.ok(t, "PASS "+password)
	p.ok(t, "QUIT")
}

// logAttr returns the value of key in a slog text line, or "".
func logAttr(line, key string) string {
	for _, f := range strings.Fields(line) {
		if v, ok := strings.CutPrefix(f, key+"="); ok {
			return v
		}
	}
	return ""
}

// waitLog polls cond, which reads server logs, until it holds.
func waitLog(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s in the server logs within 10s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// syncBuffer is a bytes.Buffer for a child's output, read while it runs.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
