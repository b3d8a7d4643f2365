package interop

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// ioTimeout bounds every command of the raw client, a 5 MiB RETR included.
const ioTimeout = 30 * time.Second

// popConn is a deliberately strict POP3 client: unlike the third-party
// ones it rejects any line not ending in CRLF and any line starting with an
// unstuffed '.', so it notices what lenient clients silently repair.
type popConn struct {
	conn net.Conn
	r    *bufio.Reader
}

func dialPOP(t *testing.T, addr string) *popConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	p := &popConn{conn: c, r: bufio.NewReaderSize(c, 64<<10)}
	c.SetDeadline(time.Now().Add(ioTimeout))
	greeting, err := p.readLine()
	if err != nil {
		t.Fatalf("greeting: %v", err)
	}
	if !strings.HasPrefix(string(greeting), "+OK") {
		t.Fatalf("greeting %q, want +OK", greeting)
	}
	return p
}

// readLine returns one line without its CRLF.
func (p *popConn) readLine() ([]byte, error) {
	line, err := p.r.ReadBytes('\n')
	if err != nil {
		return nil, fmt.Errorf("reading a line: %w (got %q)", err, line)
	}
	body, ok := bytes.CutSuffix(line, []byte("\r\n"))
	if !ok || bytes.ContainsAny(body, "\r\n") {
		return nil, fmt.Errorf("line %.80q does not end in CRLF alone (RFC 1939 §3)", line)
	}
	return body, nil
}

// cmd sends one command and returns its status line; -ERR is an error.
func (p *popConn) cmd(command string) (string, error) {
	p.conn.SetDeadline(time.Now().Add(ioTimeout))
	if _, err := p.conn.Write([]byte(command + "\r\n")); err != nil {
		return "", err
	}
	line, err := p.readLine()
	if err != nil {
		return "", fmt.Errorf("%s: %w", redact(command), err)
	}
	switch {
	case bytes.HasPrefix(line, []byte("+OK")):
		return string(line), nil
	case bytes.HasPrefix(line, []byte("-ERR")):
		return string(line), fmt.Errorf("%s: %s", redact(command), line)
	}
	return string(line), fmt.Errorf("%s: status line %q is neither +OK nor -ERR", redact(command), line)
}

// ok runs a command that must succeed and returns its status line.
func (p *popConn) ok(t *testing.T, command string) string {
	t.Helper()
	line, err := p.cmd(command)
	if err != nil {
		t.Fatal(err)
	}
	return line
}

// multi runs a command with a multi-line answer and returns the answer
// un-stuffed, every line ending in CRLF.
func (p *popConn) multi(t *testing.T, command string) []byte {
	t.Helper()
	p.ok(t, command)
	var b bytes.Buffer
	for {
		line, err := p.readLine()
		if err != nil {
			t.Fatalf("%s: %v", command, err)
		}
		if string(line) == "." {
			return b.Bytes()
		}
		if line, ok := bytes.CutPrefix(line, []byte(".")); ok {
			if !bytes.HasPrefix(line, []byte(".")) {
				t.Fatalf("%s: line %.80q starts with an unstuffed '.' (RFC 1939 §3)", command, "."+string(line))
			}
			b.Write(line)
		} else {
			b.Write(line)
		}
		b.WriteString("\r\n")
	}
}

// lines runs a multi-line command whose lines are "N VALUE" and returns them.
func (p *popConn) lines(t *testing.T, command string) map[int]string {
	t.Helper()
	m := map[int]string{}
	for l := range strings.Lines(string(p.multi(t, command))) {
		n, v, ok := strings.Cut(strings.TrimSuffix(l, "\r\n"), " ")
		num, err := strconv.Atoi(n)
		if !ok || err != nil || num < 1 {
			t.Fatalf("%s: bad line %q", command, l)
		}
		if _, dup := m[num]; dup {
			t.Fatalf("%s: message %d listed twice", command, num)
		}
		m[num] = v
	}
	return m
}

func (p *popConn) login(t *testing.T, user, password string) {
	t.Helper()
	p.ok(t, "USER "+user)
	p.ok(t, "PASS "+password)
}

func redact(command string) string {
	if strings.HasPrefix(strings.ToUpper(command), "PASS ") {
		return "PASS ****"
	}
	return command
}

// sizes parses LIST output into message number -> octets.
func sizes(t *testing.T, list map[int]string) map[int]int {
	t.Helper()
	s := map[int]int{}
	for n, v := range list {
		size, err := strconv.Atoi(v)
		if err != nil || size < 0 {
			t.Fatalf("LIST: message %d has size %q", n, v)
		}
		s[n] = size
	}
	return s
}

// stat parses "+OK count octets".
func stat(t *testing.T, p *popConn) (count, octets int) {
	t.Helper()
	line := p.ok(t, "STAT")
	if _, err := fmt.Sscanf(line, "+OK %d %d", &count, &octets); err != nil {
		t.Fatalf("STAT: %q: %v", line, err)
	}
	return count, octets
}

// firstDifference describes where got and want part, for messages too big
// to print whole.
func firstDifference(got, want []byte) string {
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	from := max(0, i-40)
	return fmt.Sprintf("got %d octets, want %d; first difference at offset %d:\n got: %q\nwant: %q",
		len(got), len(want), i, got[from:min(len(got), i+40)], want[from:min(len(want), i+40)])
}

var uidlSyntax = regexp.MustCompile(`^[\x21-\x7e]{1,70}$`)

// TestRawRetrieve fetches every test message with the strict client and
// checks it octet for octet, together with the sizes LIST and STAT claim.
func TestRawRetrieve(t *testing.T) {
	srv := startServer(t)
	const user, password = "raw", "Raw-pw-1725"
	srv.addUser(t, user, password)
	msgs := testMessages()
	for _, m := range msgs {
		srv.deliver(t, user, m)
	}

	p := dialPOP(t, srv.plain)
	capa := map[string][]string{}
	for l := range strings.Lines(string(p.multi(t, "CAPA"))) {
		f := strings.Fields(l)
		if len(f) > 0 {
			capa[strings.ToUpper(f[0])] = f[1:]
		}
	}
	for _, c := range []string{"TOP", "UIDL", "USER", "SASL", "RESP-CODES", "PIPELINING", "UTF8", "STLS"} {
		if _, ok := capa[c]; !ok {
			t.Errorf("CAPA lacks %s: %v", c, capa)
		}
	}
	if !slices.Contains(capa["SASL"], "PLAIN") {
		t.Errorf("CAPA SASL %v lacks PLAIN", capa["SASL"])
	}

	p.login(t, user, password)
	count, octets := stat(t, p)
	list := sizes(t, p.lines(t, "LIST"))
	uidl := p.lines(t, "UIDL")
	if count != len(msgs) {
		t.Errorf("STAT: %d messages, delivered %d", count, len(msgs))
	}
	total := 0
	for n := 1; n <= count; n++ {
		if _, ok := list[n]; !ok {
			t.Errorf("LIST lacks message %d of %d", n, count)
		}
		if _, ok := uidl[n]; !ok {
			t.Errorf("UIDL lacks message %d of %d", n, count)
		}
		total += list[n]
	}
	if len(list) != count || len(uidl) != count || total != octets {
		t.Errorf("STAT %d %d, but LIST has %d messages of %d octets and UIDL %d messages",
			count, octets, len(list), total, len(uidl))
	}
	seen := map[string]int{}
	for n, u := range uidl {
		if !uidlSyntax.MatchString(u) {
			t.Errorf("UIDL of message %d is %q: not 1-70 octets of 0x21-0x7E (RFC 1939 §7)", n, u)
		}
		if m, dup := seen[u]; dup {
			t.Errorf("messages %d and %d share UIDL %q", m, n, u)
		}
		seen[u] = n
	}
	if line := p.ok(t, "LIST 2"); line != fmt.Sprintf("+OK 2 %d", list[2]) {
		t.Errorf("LIST 2: %q, LIST said %d", line, list[2])
	}
	if line := p.ok(t, "UIDL 2"); line != "+OK 2 "+uidl[2] {
		t.Errorf("UIDL 2: %q, UIDL said %q", line, uidl[2])
	}

	got := map[int]bool{}
	for n := 1; n <= count; n++ {
		data := p.multi(t, fmt.Sprintf("RETR %d", n))
		seq := seqOf(data)
		if seq < 0 || seq >= len(msgs) || got[seq] {
			t.Errorf("RETR %d: %s %d is not one of the delivered messages, or came twice", n, seqHeader, seq)
			continue
		}
		got[seq] = true
		m := msgs[seq]
		want := wireForm(m.data)
		if !bytes.Equal(data, want) {
			t.Errorf("RETR %d (%s) differs from what was delivered: %s", n, m.name, firstDifference(data, want))
		}
		if list[n] != len(data) {
			t.Errorf("RETR %d (%s): LIST said %d octets, received %d", n, m.name, list[n], len(data))
		}
		head, _, ok := bytes.Cut(want, []byte("\r\n\r\n"))
		if !ok {
			continue // TOP of a message without a body is not well defined
		}
		top := p.multi(t, fmt.Sprintf("TOP %d 0", n))
		if wantTop := slices.Concat(head, []byte("\r\n\r\n")); !bytes.Equal(top, wantTop) {
			t.Errorf("TOP %d 0 (%s): %s", n, m.name, firstDifference(top, wantTop))
		}
	}
	p.ok(t, "QUIT")
}

// TestRawDelete checks the UPDATE state: DELE takes effect at QUIT and
// only then, the rest keep their UIDLs and content, and a session that
// ends without QUIT deletes nothing.
func TestRawDelete(t *testing.T) {
	srv := startServer(t)
	const user, password = "dele", "Dele-pw-1081"
	srv.addUser(t, user, password)
	msgs := testMessages()[:6]
	for _, m := range msgs {
		srv.deliver(t, user, m)
	}

	// content returns UIDL -> X-Interop-Seq of every message, from RETR.
	content := func(p *popConn) map[string]int {
		t.Helper()
		uidl := p.lines(t, "UIDL")
		c := map[string]int{}
		for n, u := range uidl {
			c[u] = seqOf(p.multi(t, fmt.Sprintf("RETR %d", n)))
		}
		return c
	}

	p := dialPOP(t, srv.plain)
	p.login(t, user, password)
	before := content(p)
	if len(before) != len(msgs) {
		t.Fatalf("UIDL lists %d distinct messages, delivered %d", len(before), len(msgs))
	}
	uidl := p.lines(t, "UIDL")
	p.ok(t, "DELE 2")
	p.ok(t, "DELE 5")
	if n, _ := stat(t, p); n != len(msgs)-2 {
		t.Errorf("STAT after two DELEs counts %d messages, want %d (RFC 1939 §5)", n, len(msgs)-2)
	}
	if _, err := p.cmd("RETR 2"); err == nil {
		t.Errorf("RETR of a message marked deleted succeeded")
	}
	if _, err := p.cmd("DELE 2"); err == nil {
		t.Errorf("DELE of a message already marked deleted succeeded")
	}
	p.ok(t, "QUIT")

	want := map[string]int{}
	for u, seq := range before {
		if u != uidl[2] && u != uidl[5] {
			want[u] = seq
		}
	}
	p = loginRetrying(t, srv.plain, user, password)
	after := content(p)
	if diff := cmp.Diff(want, after); diff != "" {
		t.Errorf("after DELE 2, DELE 5, QUIT: UIDL -> message (-want +got):\n%s", diff)
	}

	// A session that drops without QUIT must not enter the UPDATE state.
	p.ok(t, "DELE 1")
	p.conn.Close()
	p = loginRetrying(t, srv.plain, user, password)
	if diff := cmp.Diff(want, content(p)); diff != "" {
		t.Errorf("after DELE 1 and a dropped connection: UIDL -> message (-want +got):\n%s", diff)
	}
	p.ok(t, "QUIT")
}

// loginRetrying connects and logs in, allowing the server a moment to
// release the maildrop lock of a session that has just ended: RFC 1939 §4
// lets it refuse with [IN-USE] meanwhile (and maybe close the connection).
func loginRetrying(t *testing.T, addr, user, password string) *popConn {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		p := dialPOP(t, addr)
		p.ok(t, "USER "+user)
		line, err := p.cmd("PASS " + password)
		if err == nil {
			return p
		}
		if !strings.Contains(line, "[IN-USE]") || time.Now().After(deadline) {
			t.Fatal(err)
		}
		p.conn.Close()
		time.Sleep(100 * time.Millisecond)
	}
}

// TestRawAuth checks that wrong credentials are refused and that AUTH PLAIN,
// which curl prefers, works.
func TestRawAuth(t *testing.T) {
	srv := startServer(t)
	const user, password = "auth", "Auth-pw-4616"
	srv.addUser(t, user, password)
	srv.deliver(t, user, testMessages()[0])

	p := dialPOP(t, srv.plain)
	p.ok(t, "USER "+user)
	if _, err := p.cmd("PASS wrong-" + password); err == nil {
		t.Errorf("PASS with a wrong password succeeded")
	}
	p.ok(t, "QUIT")

	p = dialPOP(t, srv.plain)
	p.ok(t, "USER nosuchuser")
	if _, err := p.cmd("PASS " + password); err == nil {
		t.Errorf("PASS for an unknown user succeeded")
	}
	p.ok(t, "QUIT")

	p = dialPOP(t, srv.plain)
	resp := base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + password))
	p.ok(t, "AUTH PLAIN "+resp)
	if n, _ := stat(t, p); n != 1 {
		t.Errorf("after AUTH PLAIN, STAT counts %d messages, want 1", n)
	}
	p.ok(t, "QUIT")
}

// TestDeliverUnknownUser checks the exit status an MTA relies on to bounce
// mail (sysexits EX_NOUSER) instead of retrying it.
func TestDeliverUnknownUser(t *testing.T) {
	srv := startServer(t)
	srv.addUser(t, "someone", "Someone-pw-1") // so that only the user is missing
	out, code := srv.run(t, testMessages()[0].data, "deliver", "--data", srv.data, "nosuchuser")
	if code != 67 {
		t.Errorf("popbox deliver to an unknown user: exit %d, want 67\n%s", code, out)
	}
}
