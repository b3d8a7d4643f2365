package lmtp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/google/go-cmp/cmp"
)

// transaction runs MAIL, the RCPTs and, when one was accepted, DATA with
// data (the raw text after the 354, its final ".\r\n" included). It
// returns the code of each RCPT reply and, for each DATA reply, its code
// and the recipient it names.
func (rc *rawClient) transaction(from string, rcpts []string, data string) (rcptCodes, dataReplies []string) {
	rc.t.Helper()
	if got := rc.cmd("MAIL FROM:<" + from + ">"); code(last(got)) != "250 2.0.0" {
		rc.t.Fatalf("MAIL: %q", got)
	}
	accepted := 0
	for _, to := range rcpts {
		got := last(rc.cmd("RCPT TO:<" + to + ">"))
		rcptCodes = append(rcptCodes, code(got))
		if strings.HasPrefix(got, "250 ") {
			accepted++
		}
	}
	if accepted == 0 {
		return rcptCodes, nil
	}
	if got := rc.cmd("DATA"); !strings.HasPrefix(last(got), "354 ") {
		rc.t.Fatalf("DATA: %q", got)
	}
	rc.send(data)
	for range accepted {
		l := rc.line()
		f := strings.Fields(l)
		if len(f) >= 3 {
			l = f[0] + " " + f[1] + " " + f[2]
		}
		dataReplies = append(dataReplies, l)
	}
	return rcptCodes, dataReplies
}

func hdr(from, rcpt string) string {
	return "Return-Path: <" + from + ">\nDelivered-To: " + rcpt + "\n"
}

const sender = "sender@example.com"

func TestDelivery(t *testing.T) {
	tests := []struct {
		name      string
		configure func(*Server)
		setup     func(*memStore)
		from      string
		rcpts     []string
		data      string
		wantRcpt  []string
		wantData  []string
		wantStore map[string][]string
	}{{
		name:     "two recipients, one over quota",
		setup:    func(m *memStore) { m.quota["bob"] = true },
		rcpts:    []string{"alice@example.org", "bob@example.org"},
		data:     "Subject: hi\r\n\r\nHello\r\n.\r\n",
		wantRcpt: []string{"250 2.0.0", "250 2.0.0"},
		wantData: []string{"250 2.0.0 <alice@example.org>", "452 4.2.2 <bob@example.org>"},
		wantStore: map[string][]string{
			"alice": {hdr(sender, "alice@example.org") + "Subject: hi\n\nHello\n"},
		},
	}, {
		name:      "quota failure made permanent",
		configure: func(s *Server) { s.QuotaPermanent = true },
		setup:     func(m *memStore) { m.quota["bob"] = true },
		rcpts:     []string{"bob@example.org", "alice@example.org"},
		data:      "x\r\n.\r\n",
		wantRcpt:  []string{"250 2.0.0", "250 2.0.0"},
		wantData:  []string{"552 5.2.2 <bob@example.org>", "250 2.0.0 <alice@example.org>"},
		wantStore: map[string][]string{"alice": {hdr(sender, "alice@example.org") + "x\n"}},
	}, {
		name:      "store failure is temporary and stores nothing",
		setup:     func(m *memStore) { m.fail["carol"] = true },
		rcpts:     []string{"carol@example.org", "alice@example.org"},
		data:      "x\r\n.\r\n",
		wantRcpt:  []string{"250 2.0.0", "250 2.0.0"},
		wantData:  []string{"451 4.3.0 <carol@example.org>", "250 2.0.0 <alice@example.org>"},
		wantStore: map[string][]string{"alice": {hdr(sender, "alice@example.org") + "x\n"}},
	}, {
		name:      "full disk is 452 4.3.1",
		setup:     func(m *memStore) { m.full["carol"] = true },
		rcpts:     []string{"carol@example.org"},
		data:      "x\r\n.\r\n",
		wantRcpt:  []string{"250 2.0.0"},
		wantData:  []string{"452 4.3.1 <carol@example.org>"},
		wantStore: map[string][]string{},
	}, {
		name:      "unknown, malformed and unresolvable recipients refused at RCPT",
		rcpts:     []string{"nobody@example.org", "alice@example.org", "\"x\rz\"@example.org", "down@example.org", "bob"},
		data:      "x\r\n.\r\n",
		wantRcpt:  []string{"550 5.1.1", "250 2.0.0", "553 5.1.3", "451 4.3.0", "501 5.5.2"},
		wantData:  []string{"250 2.0.0 <alice@example.org>"},
		wantStore: map[string][]string{"alice": {hdr(sender, "alice@example.org") + "x\n"}},
	}, {
		name:     "no recipient accepted",
		rcpts:    []string{"nobody@example.org"},
		wantRcpt: []string{"550 5.1.1"},
	}, {
		name:      "dot-stuffed lines and a lone dot line",
		rcpts:     []string{"alice@example.org"},
		data:      "..\r\n...\r\n..foo\r\n.\r\n",
		wantRcpt:  []string{"250 2.0.0"},
		wantData:  []string{"250 2.0.0 <alice@example.org>"},
		wantStore: map[string][]string{"alice": {hdr(sender, "alice@example.org") + ".\n..\n.foo\n"}},
	}, {
		name:      "bare LF and lone CR are kept",
		rcpts:     []string{"alice@example.org"},
		data:      "a\nb\rc\r\n\r\r\nz\r\n.\r\n",
		wantRcpt:  []string{"250 2.0.0"},
		wantData:  []string{"250 2.0.0 <alice@example.org>"},
		wantStore: map[string][]string{"alice": {hdr(sender, "alice@example.org") + "a\nb\rc\n\r\nz\n"}},
	}, {
		// LF "." CRLF is not the end of the data (RFC 5321 §4.1.1.4), so
		// what follows is message text, not a smuggled command.
		name:     "bare LF dot does not end the message",
		rcpts:    []string{"alice@example.org"},
		data:     "x\n.\r\nMAIL FROM:<evil@example.com>\r\n.\r\n",
		wantRcpt: []string{"250 2.0.0"},
		wantData: []string{"250 2.0.0 <alice@example.org>"},
		wantStore: map[string][]string{"alice": {hdr(sender, "alice@example.org") +
			"x\n.\nMAIL FROM:<evil@example.com>\n"}},
	}, {
		name:      "8-bit data and NUL",
		rcpts:     []string{"alice@example.org"},
		data:      "Subject: \xc3\xa9t\xc3\xa9\r\n\r\n\x00\x80\xff\xfe\r\n.\r\n",
		wantRcpt:  []string{"250 2.0.0"},
		wantData:  []string{"250 2.0.0 <alice@example.org>"},
		wantStore: map[string][]string{"alice": {hdr(sender, "alice@example.org") + "Subject: \xc3\xa9t\xc3\xa9\n\n\x00\x80\xff\xfe\n"}},
	}, {
		name:      "empty message",
		rcpts:     []string{"alice@example.org"},
		data:      ".\r\n",
		wantRcpt:  []string{"250 2.0.0"},
		wantData:  []string{"250 2.0.0 <alice@example.org>"},
		wantStore: map[string][]string{"alice": {hdr(sender, "alice@example.org")}},
	}, {
		name:      "the same recipient twice gets one copy",
		rcpts:     []string{"alice@example.org", "alice@example.org"},
		data:      "x\r\n.\r\n",
		wantRcpt:  []string{"250 2.0.0", "250 2.0.0"},
		wantData:  []string{"250 2.0.0 <alice@example.org>", "250 2.0.0 <alice@example.org>"},
		wantStore: map[string][]string{"alice": {hdr(sender, "alice@example.org") + "x\n"}},
	}, {
		name:     "two addresses of one user get a copy each",
		rcpts:    []string{"alice@example.org", "Alice@Example.COM"},
		data:     "x\r\n.\r\n",
		wantRcpt: []string{"250 2.0.0", "250 2.0.0"},
		wantData: []string{"250 2.0.0 <alice@example.org>", "250 2.0.0 <Alice@Example.COM>"},
		wantStore: map[string][]string{"alice": {
			hdr(sender, "alice@example.org") + "x\n",
			hdr(sender, "Alice@Example.COM") + "x\n",
		}},
	}, {
		name:      "account named by a whole address",
		rcpts:     []string{"Dave@example.net"},
		data:      "x\r\n.\r\n",
		wantRcpt:  []string{"250 2.0.0"},
		wantData:  []string{"250 2.0.0 <Dave@example.net>"},
		wantStore: map[string][]string{"dave@example.net": {hdr(sender, "Dave@example.net") + "x\n"}},
	}, {
		name:      "null sender",
		from:      "<>",
		rcpts:     []string{"alice@example.org"},
		data:      "x\r\n.\r\n",
		wantRcpt:  []string{"250 2.0.0"},
		wantData:  []string{"250 2.0.0 <alice@example.org>"},
		wantStore: map[string][]string{"alice": {hdr("", "alice@example.org") + "x\n"}},
	}, {
		name:      "no delivery headers",
		configure: func(s *Server) { s.NoDeliveryHeaders = true },
		rcpts:     []string{"alice@example.org"},
		data:      "x\r\n.\r\n",
		wantRcpt:  []string{"250 2.0.0"},
		wantData:  []string{"250 2.0.0 <alice@example.org>"},
		wantStore: map[string][]string{"alice": {"x\n"}},
	}, {
		name:      "a message bigger than SpoolMemory goes through a file",
		configure: func(s *Server) { s.SpoolMemory = 10 },
		rcpts:     []string{"alice@example.org", "bob@example.org"},
		data:      strings.Repeat("0123456789abcdef\r\n", 1000) + ".\r\n",
		wantRcpt:  []string{"250 2.0.0", "250 2.0.0"},
		wantData:  []string{"250 2.0.0 <alice@example.org>", "250 2.0.0 <bob@example.org>"},
		wantStore: map[string][]string{
			"alice": {hdr(sender, "alice@example.org") + strings.Repeat("0123456789abcdef\n", 1000)},
			"bob":   {hdr(sender, "bob@example.org") + strings.Repeat("0123456789abcdef\n", 1000)},
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := newMemStore()
			if tt.setup != nil {
				tt.setup(st)
			}
			ts := newTestServer(t, st, tt.configure)
			rc := ts.hello(t)
			from := tt.from
			switch from {
			case "":
				from = sender
			case "<>":
				from = ""
			}
			gotRcpt, gotData := rc.transaction(from, tt.rcpts, tt.data)
			if diff := cmp.Diff(tt.wantRcpt, gotRcpt); diff != "" {
				t.Errorf("RCPT replies (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantData, gotData); diff != "" {
				t.Errorf("DATA replies (-want +got):\n%s", diff)
			}
			// The session goes on after the transaction.
			if got := rc.cmd("NOOP"); code(last(got)) != "250 2.0.0" {
				t.Errorf("NOOP after the transaction: %q", got)
			}
			want := tt.wantStore
			if want == nil {
				want = map[string][]string{}
			}
			if diff := cmp.Diff(want, st.contents()); diff != "" {
				t.Errorf("stored messages (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCommandRefusals(t *testing.T) {
	tests := []struct {
		name      string
		configure func(*Server)
		cmds      []string
		want      []string // the code of each reply
	}{{
		name: "EHLO and HELO are refused (RFC 2033 §4.1)",
		cmds: []string{"EHLO client.test", "HELO client.test"},
		want: []string{"500 5.5.1", "500 5.5.1"},
	}, {
		name: "sender with a control character",
		cmds: []string{"LHLO c", "MAIL FROM:<\"a\rb\"@example.com>"},
		want: []string{"250 ", "553 5.1.7"},
	}, {
		name: "nested MAIL",
		cmds: []string{"LHLO c", "MAIL FROM:<a@example.com>", "MAIL FROM:<b@example.com>"},
		want: []string{"250 ", "250 2.0.0", "503 5.5.1"},
	}, {
		name: "MAIL after RSET",
		cmds: []string{"LHLO c", "MAIL FROM:<a@example.com>", "RSET", "MAIL FROM:<b@example.com>"},
		want: []string{"250 ", "250 2.0.0", "250 2.0.0", "250 2.0.0"},
	}, {
		name:      "too many recipients",
		configure: func(s *Server) { s.MaxRecipients = 2 },
		cmds: []string{"LHLO c", "MAIL FROM:<a@example.com>", "RCPT TO:<alice@x>", "RCPT TO:<bob@x>",
			"RCPT TO:<carol@x>"},
		want: []string{"250 ", "250 2.0.0", "250 2.0.0", "250 2.0.0", "452 4.5.3"},
	}, {
		name:      "SIZE over the limit is refused at MAIL",
		configure: func(s *Server) { s.MaxMessageBytes = 1000 },
		cmds:      []string{"LHLO c", "MAIL FROM:<a@example.com> SIZE=1001", "MAIL FROM:<a@example.com> SIZE=1000"},
		want:      []string{"250 ", "552 5.3.4", "250 2.0.0"},
	}, {
		name: "over-long address",
		cmds: []string{"LHLO c", "MAIL FROM:<a@example.com>", "RCPT TO:<" + strings.Repeat("a", 250) + "@example.org>"},
		want: []string{"250 ", "250 2.0.0", "553 5.1.3"},
	}, {
		name: "DATA without recipients",
		cmds: []string{"LHLO c", "MAIL FROM:<a@example.com>", "DATA"},
		want: []string{"250 ", "250 2.0.0", "502 5.5.1"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := newTestServer(t, newMemStore(), tt.configure)
			rc := ts.dial(t)
			var got []string
			for i, c := range tt.cmds {
				r := last(rc.cmd(c))
				if i < len(tt.want) && strings.HasSuffix(tt.want[i], " ") {
					r = r[:4] // a multi-line LHLO reply: the code only
				} else {
					r = code(r)
				}
				got = append(got, r)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("replies (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLHLOAnnouncesLimits(t *testing.T) {
	ts := newTestServer(t, newMemStore(), func(s *Server) {
		s.MaxMessageBytes = 12345
		s.MaxRecipients = 7
	})
	rc := ts.dial(t)
	got := rc.cmd("LHLO client.test")
	for _, want := range []string{"250-PIPELINING", "250-8BITMIME", "250-ENHANCEDSTATUSCODES", "250-SMTPUTF8", "SIZE 12345", "LIMITS RCPTMAX=7"} {
		found := false
		for _, l := range got {
			found = found || strings.Contains(l, want)
		}
		if !found {
			t.Errorf("LHLO reply %q lacks %q", got, want)
		}
	}
}

func TestMessageTooBig(t *testing.T) {
	st := newMemStore()
	ts := newTestServer(t, st, func(s *Server) { s.MaxMessageBytes = 100 })
	rc := ts.hello(t)
	body := strings.Repeat("0123456789\r\n", 50) + ".\r\n"
	_, got := rc.transaction(sender, []string{"alice@example.org", "bob@example.org"}, body)
	want := []string{"552 5.3.4 <alice@example.org>", "552 5.3.4 <bob@example.org>"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("DATA replies (-want +got):\n%s", diff)
	}
	// The rest of the message was read and discarded: the session is in
	// step and a message within the limit goes through.
	_, got = rc.transaction(sender, []string{"alice@example.org"}, "small\r\n.\r\n")
	if diff := cmp.Diff([]string{"250 2.0.0 <alice@example.org>"}, got); diff != "" {
		t.Errorf("next transaction (-want +got):\n%s", diff)
	}
	want2 := map[string][]string{"alice": {hdr(sender, "alice@example.org") + "small\n"}}
	if diff := cmp.Diff(want2, st.contents()); diff != "" {
		t.Errorf("stored (-want +got):\n%s", diff)
	}
	if !strings.Contains(ts.logs.String(), `msg="message refused"`) {
		t.Errorf("no refusal logged:\n%s", ts.logs.String())
	}
}

func TestLineTooLong(t *testing.T) {
	st := newMemStore()
	ts := newTestServer(t, st, func(s *Server) { s.MaxLineLength = 100 })
	rc := ts.hello(t)
	_, got := rc.transaction(sender, []string{"alice@example.org"}, strings.Repeat("x", 200)+"\r\nMAIL FROM:<evil@example.com>\r\n.\r\n")
	if diff := cmp.Diff([]string{"552 5.3.4 <alice@example.org>"}, got); diff != "" {
		t.Errorf("DATA replies (-want +got):\n%s", diff)
	}
	// The stream cannot be trusted any more: the server closes it.
	rest := rc.expectClosed()
	if len(rest) != 1 || !strings.HasPrefix(rest[0], "500 ") {
		t.Errorf("after the long line: %q, want one 500 and the end", rest)
	}
	if got := st.contents(); len(got) != 0 {
		t.Errorf("stored %q, want nothing", got)
	}
}

func TestBDAT(t *testing.T) {
	st := newMemStore()
	st.quota["bob"] = true
	ts := newTestServer(t, st, nil)
	rc := ts.hello(t)
	for _, c := range []string{"MAIL FROM:<" + sender + ">", "RCPT TO:<alice@example.org>", "RCPT TO:<bob@example.org>"} {
		if got := code(last(rc.cmd(c))); got != "250 2.0.0" {
			t.Fatalf("%s: %s", c, got)
		}
	}
	// BDAT content is not dot-stuffed: ".\r\n" is just data here.
	chunk1 := "Subject: x\r\n\r\n.\r"
	chunk2 := "\n..\r\n"
	rc.send(fmt.Sprintf("BDAT %d\r\n%s", len(chunk1), chunk1))
	if got := code(last(rc.reply())); got != "250 2.0.0" {
		t.Fatalf("first chunk: %s", got)
	}
	rc.send(fmt.Sprintf("BDAT %d LAST\r\n%s", len(chunk2), chunk2))
	got := []string{code(rc.line()), code(rc.line())}
	if diff := cmp.Diff([]string{"250 2.0.0", "452 4.2.2"}, got); diff != "" {
		t.Errorf("BDAT LAST replies (-want +got):\n%s", diff)
	}
	want := map[string][]string{"alice": {hdr(sender, "alice@example.org") + "Subject: x\n\n.\n..\n"}}
	if diff := cmp.Diff(want, st.contents()); diff != "" {
		t.Errorf("stored (-want +got):\n%s", diff)
	}
}

func TestGoSMTPClient(t *testing.T) {
	st := newMemStore()
	st.quota["bob"] = true
	ts := newTestServer(t, st, nil)
	nc, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	c := smtp.NewClientLMTP(nc)
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	if size, ok := c.MaxMessageSize(); !ok || size != DefaultMaxMessageBytes {
		t.Errorf("SIZE = %d, %v; want %d", size, ok, DefaultMaxMessageBytes)
	}
	if err := c.Mail(sender, nil); err != nil {
		t.Fatal(err)
	}
	for _, to := range []string{"alice@example.org", "bob@example.org"} {
		if err := c.Rcpt(to, nil); err != nil {
			t.Fatal(err)
		}
	}
	var serr *smtp.SMTPError
	if err := c.Rcpt("nobody@example.org", nil); !errors.As(err, &serr) || serr.Code != 550 {
		t.Errorf("RCPT of an unknown user: %v, want 550", err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	const msg = "Subject: test\r\n\r\n.leading dot\r\n.\r\nend\r\n"
	if _, err := w.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	resp, err := w.CloseWithLMTPResponse()
	var lerr smtp.LMTPDataError
	if !errors.As(err, &lerr) {
		t.Fatalf("DATA: %v, want an LMTPDataError for bob", err)
	}
	if e := lerr["bob@example.org"]; e == nil || e.Code != 452 || e.EnhancedCode != (smtp.EnhancedCode{4, 2, 2}) {
		t.Errorf("bob: %v, want 452 4.2.2", e)
	}
	if r := resp["alice@example.org"]; r == nil || r.StatusText != "2.0.0 <alice@example.org> Saved, UIDL alice-1" {
		t.Errorf("alice: %+v, want Saved, UIDL alice-1", r)
	}
	if err := c.Quit(); err != nil {
		t.Errorf("QUIT: %v", err)
	}
	want := map[string][]string{"alice": {hdr(sender, "alice@example.org") + "Subject: test\n\n.leading dot\n.\nend\n"}}
	if diff := cmp.Diff(want, st.contents()); diff != "" {
		t.Errorf("stored (-want +got):\n%s", diff)
	}
	logs := ts.logs.String()
	for _, want := range []string{
		`msg=delivered session=1 remote=` + nc.LocalAddr().String() + ` lhlo=client.test user=alice rcpt=alice@example.org from=sender@example.com received=`,
		`uidl=alice-1 result="250 2.0.0"`,
		`level=INFO msg="delivery failed" session=1 remote=` + nc.LocalAddr().String() + ` lhlo=client.test user=bob rcpt=bob@example.org from=sender@example.com received=`,
		`result="452 4.2.2" err="memStore: bob: store: over quota"`,
		`msg="recipient refused" session=1 remote=` + nc.LocalAddr().String() + ` lhlo=client.test rcpt=nobody@example.org`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
}

func TestStalledClient(t *testing.T) {
	st := newMemStore()
	ts := newTestServer(t, st, func(s *Server) { s.ReadTimeout = 300 * time.Millisecond })

	t.Run("idle", func(t *testing.T) {
		rc := ts.hello(t)
		start := time.Now()
		rest := rc.expectClosed()
		if len(rest) != 1 || code(rest[0]) != "421 4.4.2" {
			t.Errorf("idle client got %q, want one 421 4.4.2", rest)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("closed after %v", d)
		}
	})
	t.Run("in DATA", func(t *testing.T) {
		rc := ts.hello(t)
		rc.cmd("MAIL FROM:<" + sender + ">")
		rc.cmd("RCPT TO:<alice@example.org>")
		rc.cmd("DATA")
		rc.send("Subject: stalled\r\n\r\npart of the body\r\n")
		// The client stalls past ReadTimeout: the recipient gets a
		// temporary failure and the connection is closed, without
		// reading what the client sends afterwards as commands.
		if got := code(rc.line()); got != "451 4.4.2" {
			t.Errorf("DATA reply after the stall: %q, want 451 4.4.2", got)
		}
		rc.c.Write([]byte("RSET\r\nMAIL FROM:<evil@example.com>\r\n"))
		// The server may have closed before these arrived, and the reset
		// that causes may swallow its 421; but nothing may be answered.
		for _, l := range rc.expectClosed() {
			if l != "" && code(l) != "421 4.4.2" {
				t.Errorf("after the stall: %q, want only 421 4.4.2", l)
			}
		}
	})
	if got := st.contents(); len(got) != 0 {
		t.Errorf("stored %q, want nothing", got)
	}
}

func TestMaxConnections(t *testing.T) {
	ts := newTestServer(t, newMemStore(), func(s *Server) { s.MaxConnections = 1 })
	first := ts.hello(t)
	c, err := net.DialTimeout("tcp", ts.addr, ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	second := &rawClient{t: t, c: c, r: bufio.NewReader(c)}
	if rest := second.expectClosed(); len(rest) != 1 || code(rest[0]) != "421 4.3.2" {
		t.Errorf("second connection got %q, want 421 4.3.2", rest)
	}
	if got := code(last(first.cmd("NOOP"))); got != "250 2.0.0" {
		t.Errorf("first connection: %q", got)
	}
	first.cmd("QUIT")
	first.expectClosed()
	// The slot is free again once the server has seen the QUIT through.
	deadline := time.Now().Add(ioTimeout)
	for {
		c, err := net.DialTimeout("tcp", ts.addr, ioTimeout)
		if err != nil {
			t.Fatal(err)
		}
		rc := &rawClient{t: t, c: c, r: bufio.NewReader(c)}
		greeting := rc.line()
		c.Close()
		if strings.HasPrefix(greeting, "220 ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no free slot after QUIT: %q", greeting)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestServeNeedsStoreAndUsers(t *testing.T) {
	for _, s := range []*Server{{Users: testUsers()}, {Store: newMemStore()}} {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Serve(l); err == nil || errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve = %v, want a configuration error", err)
		}
		l.Close()
	}
}

func TestServeAfterShutdown(t *testing.T) {
	s := &Server{Store: newMemStore(), Users: testUsers()}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(l); !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve after Shutdown = %v, want ErrServerClosed", err)
	}
	if _, err := net.DialTimeout("tcp", l.Addr().String(), time.Second); err == nil {
		t.Error("the listener is still open")
	}
}

// port25 is a listener that claims to be on the SMTP port.
type port25 struct{ net.Listener }

func (port25) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 25} }

func TestServeRefusesPort25(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	s := &Server{Store: newMemStore(), Users: testUsers()}
	if err := s.Serve(port25{l}); err == nil || errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve on port 25 = %v, want a refusal", err)
	}
}
