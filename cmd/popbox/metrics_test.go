package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// httpGet fetches url and returns the status code and body.
func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	client := &http.Client{Timeout: ioTimeout}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading the body: %v", url, err)
	}
	return resp.StatusCode, string(body)
}

// scrape returns the samples of a Prometheus text exposition by series,
// `name{label="value",...}` exactly as written.
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	code, body := httpGet(t, url)
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d\n%s", url, code, body)
	}
	samples := map[string]float64{}
	for _, line := range strings.Split(body, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if i < 0 || err != nil {
			t.Fatalf("bad sample line %q", line)
		}
		samples[line[:i]] = v
	}
	return samples
}

// lmtpDeliver sends one message to rcpt over LMTP (RFC 2033) and wants
// 250 for it.
func lmtpDeliver(t *testing.T, addr, rcpt, msg string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, ioTimeout)
	if err != nil {
		t.Fatalf("dial lmtp %s: %v", addr, err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(4 * ioTimeout))
	r := bufio.NewReader(conn)
	// reply reads a (possibly multi-line) reply and wants its code.
	reply := func(want string) {
		t.Helper()
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("lmtp: reading a reply: %v", err)
			}
			if !strings.HasPrefix(line, want) {
				t.Fatalf("lmtp: reply %q, want %s", line, want)
			}
			if len(line) < 4 || line[3] != '-' {
				return
			}
		}
	}
	send := func(line, want string) {
		t.Helper()
		fmt.Fprintf(conn, "%s\r\n", line)
		reply(want)
	}
	reply("220")
	send("LHLO test.example", "250")
	send("MAIL FROM:<sender@example.org>", "250")
	send("RCPT TO:<"+rcpt+">", "250")
	send("DATA", "354")
	send(strings.ReplaceAll(msg, "\n", "\r\n")+".", "250")
	send("QUIT", "221")
}

// TestServeMetrics: with [metrics] listen set, serve answers /healthz,
// /readyz and /metrics, and the counters follow what clients did: a
// failed and a successful login, commands (an unknown one among them),
// a RETR and its octets, an LMTP delivery, and the store calls behind
// them.
func TestServeMetrics(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	addUser(t, data, "alice", "alice-pw")
	deliverMsg(t, data, "alice", "Subject: first\n\nHello.\n")
	cfg := testConfig(t, "[lmtp]\nsocket = \"\"\nlisten = \"127.0.0.1:0\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n")
	p := startServe(t, binOpts{}, append([]string{"-c", cfg, "--data", data}, listenArgs...)...)
	lmtpAddr := p.waitLog(startTimeout, "msg=listening proto=lmtp", func(r logRecord) bool {
		return r["msg"] == "listening" && r["proto"] == "lmtp"
	})["addr"]
	base := "http://" + p.waitLog(startTimeout, "msg=listening proto=metrics", func(r logRecord) bool {
		return r["msg"] == "listening" && r["proto"] == "metrics"
	})["addr"]

	for _, path := range []string{"/healthz", "/readyz"} {
		if code, body := httpGet(t, base+path); code != http.StatusOK {
			t.Errorf("GET %s: %d %q, want 200", path, code, body)
		}
	}

	c := dialPOP3(t, p.plain)
	c.cmd("USER alice")
	if got := c.cmd("PASS wrong"); !strings.HasPrefix(got, "-ERR [AUTH]") {
		t.Fatalf("PASS with a wrong password: %q", got)
	}
	c.login("alice", "alice-pw")
	if got := c.cmd("XYZZY"); !strings.HasPrefix(got, "-ERR") {
		t.Errorf("unknown command: %q", got)
	}
	retr := c.cmd("RETR 1")
	var size int
	if _, err := fmt.Sscanf(retr, "+OK %d octets", &size); err != nil {
		t.Fatalf("RETR 1: %q", retr)
	}
	c.body()
	if got := c.cmd("QUIT"); !strings.HasPrefix(got, "+OK") {
		t.Errorf("QUIT: %q", got)
	}
	lmtpDeliver(t, lmtpAddr, "alice@example.org", "Subject: second\n\nHello again.\n")

	got := scrape(t, base+"/metrics")
	for series, want := range map[string]float64{
		`popbox_pop3_logins_total{mechanism="USER",result="failure"}`:             1,
		`popbox_pop3_logins_total{mechanism="USER",result="success"}`:             1,
		`popbox_pop3_logins_total{mechanism="PLAIN",result="success"}`:            0,
		`popbox_pop3_commands_total{command="USER",result="ok"}`:                  2,
		`popbox_pop3_commands_total{command="PASS",result="err"}`:                 1,
		`popbox_pop3_commands_total{command="PASS",result="ok"}`:                  1,
		`popbox_pop3_commands_total{command="RETR",result="ok"}`:                  1,
		`popbox_pop3_commands_total{command="QUIT",result="ok"}`:                  1,
		`popbox_pop3_commands_total{command="unknown",result="err"}`:              1,
		`popbox_pop3_sent_bytes_total{command="RETR"}`:                            float64(size),
		`popbox_pop3_messages_retrieved_total`:                                    1,
		`popbox_pop3_messages_deleted_total`:                                      0,
		`popbox_connections_accepted_total{listener="pop3"}`:                      1,
		`popbox_connections_accepted_total{listener="lmtp"}`:                      1,
		`popbox_lmtp_deliveries_total{result="ok"}`:                               1,
		`popbox_lmtp_deliveries_total{result="temp"}`:                             0,
		`popbox_store_operation_duration_seconds_count{operation="open"}`:         1,
		`popbox_store_operation_duration_seconds_count{operation="message_open"}`: 1,
		`popbox_store_operation_duration_seconds_count{operation="commit"}`:       1,
		`popbox_store_operation_duration_seconds_count{operation="deliver"}`:      1,
	} {
		if v, ok := got[series]; !ok || v != want {
			t.Errorf("%s = %v (present: %v), want %v", series, v, ok, want)
		}
	}
	// The login's snapshot and the delivery each take the index lock (the
	// readiness probe's Usage may add more).
	if v := got[`popbox_store_lock_wait_seconds_count{lock="index"}`]; v < 2 {
		t.Errorf("popbox_store_lock_wait_seconds_count = %v, want at least 2 (login and delivery)", v)
	}
	if _, ok := got["go_goroutines"]; !ok {
		t.Error("no go_goroutines: the Go collector is missing")
	}
	if _, ok := got["process_open_fds"]; !ok {
		t.Error("no process_open_fds: the process collector is missing")
	}
	for series := range got {
		if strings.Contains(series, "XYZZY") {
			t.Errorf("a client's command name became a label: %s", series)
		}
	}
	if code, _ := httpGet(t, base+"/readyz"); code != http.StatusOK {
		t.Errorf("GET /readyz after the traffic: %d, want 200", code)
	}
	p.stop()
}

// TestServeMetricsOff: without [metrics] listen nothing more listens.
func TestServeMetricsOff(t *testing.T) {
	t.Parallel()
	p := startServe(t, binOpts{}, append([]string{"-c", testConfig(t, ""), "--data", t.TempDir()}, listenArgs...)...)
	p.stop()
	if strings.Contains(p.stderr.String(), "proto=metrics") {
		t.Errorf("serve without metrics.listen started a metrics listener:\n%s", p.stderr)
	}
}
