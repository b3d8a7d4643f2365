package pop3client

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const greet = "+OK popbox fake ready\r\n"

// readBody reads a body whole and closes it.
func readBody(rc io.ReadCloser, err error) (string, error) {
	if err != nil {
		return "", err
	}
	b, err := io.ReadAll(rc)
	if cerr := rc.Close(); err == nil {
		err = cerr
	}
	return string(b), err
}

func TestGreeting(t *testing.T) {
	tests := []struct {
		name     string
		greeting string
		want     string // Greeting()
		wantErr  error  // *Error, or a sentinel for errors.Is
	}{
		{"plain", "+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n", "POP3 server ready <1896.697170952@dbc.mtview.ca.us>", nil},
		{"bare LF", "+OK ready\n", "ready", nil},
		{"no text", "+OK\r\n", "", nil},
		{"refused", "-ERR [SYS/TEMP] too busy\r\n", "", &Error{Command: "greeting", Code: "SYS/TEMP", Text: "too busy"}},
		{"garbage", "220 smtp.example ESMTP\r\n", "", ErrProtocol},
		{"NUL", "+OK \x00\r\n", "", ErrProtocol},
		{"closed", "", "", io.ErrUnexpectedEOF},
		{"unterminated", "+OK hi", "", io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := startFake(t, tt.greeting, []step{{hangUp: true}})
			c, err := Dial(testCtx(t), f.addr, nil)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				if diff := cmp.Diff(tt.want, c.Greeting()); diff != "" {
					t.Errorf("Greeting (-want +got):\n%s", diff)
				}
				return
			}
			var want *Error
			if errors.As(tt.wantErr, &want) {
				var got *Error
				if !errors.As(err, &got) {
					t.Fatalf("Dial error %v, want *Error", err)
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("error (-want +got):\n%s", diff)
				}
				if !got.Temporary() {
					t.Errorf("SYS/TEMP greeting not Temporary")
				}
			} else if !errors.Is(err, tt.wantErr) {
				t.Errorf("Dial error %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// TestCommands runs every command against a scripted server and checks
// both what the client sent (byte-exact, by the script) and what it made of
// the replies.
func TestCommands(t *testing.T) {
	type statResult struct {
		Count int
		Size  int64
	}
	tests := []struct {
		name   string
		script []step
		run    func(ctx context.Context, c *Client) (any, error)
		want   any
	}{{
		name:   "STAT",
		script: []step{{recv: "STAT\r\n", send: "+OK 2 320\r\n"}},
		run: func(ctx context.Context, c *Client) (any, error) {
			n, s, err := c.Stat(ctx)
			return statResult{n, s}, err
		},
		want: statResult{2, 320},
	}, {
		// RFC 1939 §5: nothing is required of what follows the size.
		name:   "STAT with trailing text, bare LF",
		script: []step{{recv: "STAT\r\n", send: "+OK 0 0 empty maildrop\n"}},
		run: func(ctx context.Context, c *Client) (any, error) {
			n, s, err := c.Stat(ctx)
			return statResult{n, s}, err
		},
		want: statResult{0, 0},
	}, {
		name:   "STAT large",
		script: []step{{recv: "STAT\r\n", send: "+OK 3000000 9223372036854775807\r\n"}},
		run: func(ctx context.Context, c *Client) (any, error) {
			n, s, err := c.Stat(ctx)
			return statResult{n, s}, err
		},
		want: statResult{3000000, 9223372036854775807},
	}, {
		name:   "LIST",
		script: []step{{recv: "LIST\r\n", send: "+OK 3 messages (520 octets)\r\n1 120\r\n2 200 extra info\r\n7  200\r\n.\r\n"}},
		run: func(ctx context.Context, c *Client) (any, error) {
			return c.List(ctx)
		},
		want: []MessageInfo{{Num: 1, Size: 120}, {Num: 2, Size: 200}, {Num: 7, Size: 200}},
	}, {
		name:   "LIST empty",
		script: []step{{recv: "LIST\r\n", send: "+OK\r\n.\r\n"}},
		run: func(ctx context.Context, c *Client) (any, error) {
			return c.List(ctx)
		},
		want: []MessageInfo(nil),
	}, {
		name:   "LIST n",
		script: []step{{recv: "LIST 2\r\n", send: "+OK 2 200\r\n"}},
		run: func(ctx context.Context, c *Client) (any, error) {
			return c.ListOne(ctx, 2)
		},
		want: MessageInfo{Num: 2, Size: 200},
	}, {
		name:   "UIDL",
		script: []step{{recv: "UIDL\r\n", send: "+OK\r\n1 whqtswO00WBw418f9t5JxYwZ\r\n2 QhdPYR:00WBw1Ph7x7\r\n.\r\n"}},
		run: func(ctx context.Context, c *Client) (any, error) {
			return c.UIDL(ctx)
		},
		want: []MessageInfo{{Num: 1, UIDL: "whqtswO00WBw418f9t5JxYwZ"}, {Num: 2, UIDL: "QhdPYR:00WBw1Ph7x7"}},
	}, {
		// RFC 1939 §7 allows 1-70 characters 0x21-0x7E; real servers
		// send more, and the mailbox must stay readable.
		name: "UIDL out of spec accepted",
		script: []step{{recv: "UIDL\r\n", send: "+OK\r\n1 " + strings.Repeat("u", 71) +
			"\r\n2 \xc3\xa9t\xc3\xa9\r\n3 a\xa0b\r\n.\r\n"}},
		run: func(ctx context.Context, c *Client) (any, error) {
			return c.UIDL(ctx)
		},
		want: []MessageInfo{{Num: 1, UIDL: strings.Repeat("u", 71)}, {Num: 2, UIDL: "\xc3\xa9t\xc3\xa9"}, {Num: 3, UIDL: "a\xa0b"}},
	}, {
		name:   "UIDL n",
		script: []step{{recv: "UIDL 2\r\n", send: "+OK 2 QhdPYR:00WBw1Ph7x7\r\n"}},
		run: func(ctx context.Context, c *Client) (any, error) {
			return c.UIDLOne(ctx, 2)
		},
		want: MessageInfo{Num: 2, UIDL: "QhdPYR:00WBw1Ph7x7"},
	}, {
		name:   "RETR",
		script: []step{{recv: "RETR 1\r\n", send: "+OK 26 octets\r\nSubject: hi\r\n\r\n..dot\r\nend\r\n.\r\n"}},
		run: func(ctx context.Context, c *Client) (any, error) {
			return readBody(c.Retr(ctx, 1))
		},
		want: "Subject: hi\r\n\r\n.dot\r\nend\r\n",
	}, {
		name:   "TOP",
		script: []step{{recv: "TOP 10 0\r\n", send: "+OK\r\nSubject: hi\r\n\r\n.\r\n"}},
		run: func(ctx context.Context, c *Client) (any, error) {
			return readBody(c.Top(ctx, 10, 0))
		},
		want: "Subject: hi\r\n\r\n",
	}, {
		name:   "DELE",
		script: []step{{recv: "DELE 1\r\n", send: "+OK message 1 deleted\r\n"}},
		run: func(ctx context.Context, c *Client) (any, error) {
			return nil, c.Dele(ctx, 1)
		},
	}, {
		name:   "RSET",
		script: []step{{recv: "RSET\r\n", send: "+OK\r\n"}},
		run: func(ctx context.Context, c *Client) (any, error) {
			return nil, c.Rset(ctx)
		},
	}, {
		name:   "NOOP",
		script: []step{{recv: "NOOP\r\n", send: "+OK\r\n"}},
		run: func(ctx context.Context, c *Client) (any, error) {
			return nil, c.Noop(ctx)
		},
	}, {
		// RFC 1939 §7: the password is the rest of the line, spaces too.
		name: "USER PASS",
		script: []step{
			{recv: "USER alice\r\n", send: "+OK send PASS\r\n"},
			{recv: "PASS correct horse battery\r\n", send: "+OK maildrop locked\r\n"},
		},
		run: func(ctx context.Context, c *Client) (any, error) {
			if err := c.User(ctx, "alice"); err != nil {
				return nil, err
			}
			return nil, c.Pass(ctx, "correct horse battery")
		},
	}, {
		name: "CAPA",
		script: []step{{recv: "CAPA\r\n", send: "+OK Capability list follows\r\n" +
			"TOP\r\nUSER\r\nSASL PLAIN SCRAM-SHA-256\r\nresp-codes\r\nPIPELINING\r\nEXPIRE NEVER\r\n" +
			"IMPLEMENTATION popbox 1.0\r\n\r\nSTLS\r\n.\r\n"}},
		run: func(ctx context.Context, c *Client) (any, error) {
			caps, err := c.Capabilities(ctx)
			if err != nil {
				return nil, err
			}
			// Cached: a second call sends nothing (the script would fail).
			again, err := c.Capabilities(ctx)
			if diff := cmp.Diff(caps, again); diff != "" {
				t.Errorf("cached capabilities differ:\n%s", diff)
			}
			if !caps.Has("pipelining") || !caps.Has("RESP-CODES") || caps.Has("UIDL") {
				t.Errorf("Has: wrong answers for %v", caps)
			}
			return caps, err
		},
		want: Capabilities{
			"TOP": {}, "USER": {}, "SASL": {"PLAIN", "SCRAM-SHA-256"}, "RESP-CODES": {},
			"PIPELINING": {}, "EXPIRE": {"NEVER"}, "IMPLEMENTATION": {"popbox", "1.0"}, "STLS": {},
		},
	}, {
		name: "capabilities forgotten after login",
		script: []step{
			{recv: "CAPA\r\n", send: "+OK\r\nUSER\r\n.\r\n"},
			{recv: "USER u\r\n", send: "+OK\r\n"},
			{recv: "PASS p\r\n", send: "+OK\r\n"},
			{recv: "CAPA\r\n", send: "+OK\r\nTOP\r\nUIDL\r\n.\r\n"},
		},
		run: func(ctx context.Context, c *Client) (any, error) {
			if _, err := c.Capabilities(ctx); err != nil {
				return nil, err
			}
			if err := c.User(ctx, "u"); err != nil {
				return nil, err
			}
			if err := c.Pass(ctx, "p"); err != nil {
				return nil, err
			}
			return c.Capabilities(ctx)
		},
		want: Capabilities{"TOP": {}, "UIDL": {}},
	}, {
		name:   "QUIT",
		script: []step{{recv: "QUIT\r\n", send: "+OK bye\r\n"}},
		run: func(ctx context.Context, c *Client) (any, error) {
			if err := c.Quit(ctx); err != nil {
				return nil, err
			}
			// Closed now: nothing more is sent.
			err := c.Noop(ctx)
			if !errors.Is(err, net.ErrClosed) {
				t.Errorf("NOOP after QUIT: %v, want net.ErrClosed", err)
			}
			return nil, nil
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := dialFake(t, greet, tt.script, nil)
			got, err := tt.run(testCtx(t), c)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("result (-want +got):\n%s", diff)
			}
		})
	}
}

// TestErrorReplies checks that an -ERR becomes an *Error with its response
// code, and that the session stays usable after it.
func TestErrorReplies(t *testing.T) {
	tests := []struct {
		name  string
		recv  string
		reply string
		run   func(ctx context.Context, c *Client) error
		want  *Error
	}{
		{"STAT", "STAT\r\n", "-ERR [SYS/TEMP] index rebuilding\r\n",
			func(ctx context.Context, c *Client) error { _, _, err := c.Stat(ctx); return err },
			&Error{Command: "STAT", Code: "SYS/TEMP", Text: "index rebuilding"}},
		{"LIST", "LIST\r\n", "-ERR\r\n",
			func(ctx context.Context, c *Client) error { _, err := c.List(ctx); return err },
			&Error{Command: "LIST"}},
		{"LIST n", "LIST 9\r\n", "-ERR no such message, only 2 messages in maildrop\r\n",
			func(ctx context.Context, c *Client) error { _, err := c.ListOne(ctx, 9); return err },
			&Error{Command: "LIST 9", Text: "no such message, only 2 messages in maildrop"}},
		{"UIDL", "UIDL\r\n", "-ERR [SYS/PERM] broken\r\n",
			func(ctx context.Context, c *Client) error { _, err := c.UIDL(ctx); return err },
			&Error{Command: "UIDL", Code: "SYS/PERM", Text: "broken"}},
		{"UIDL n", "UIDL 3\r\n", "-ERR message 3 deleted\r\n",
			func(ctx context.Context, c *Client) error { _, err := c.UIDLOne(ctx, 3); return err },
			&Error{Command: "UIDL 3", Text: "message 3 deleted"}},
		{"RETR", "RETR 3\r\n", "-ERR [broken code\r\n",
			func(ctx context.Context, c *Client) error { _, err := c.Retr(ctx, 3); return err },
			&Error{Command: "RETR 3", Text: "[broken code"}},
		{"TOP", "TOP 3 5\r\n", "-ERR [] empty code\r\n",
			func(ctx context.Context, c *Client) error { _, err := c.Top(ctx, 3, 5); return err },
			&Error{Command: "TOP 3 5", Text: "[] empty code"}},
		{"DELE", "DELE 1\r\n", "-ERR [A//B] not a code\r\n",
			func(ctx context.Context, c *Client) error { return c.Dele(ctx, 1) },
			&Error{Command: "DELE 1", Text: "[A//B] not a code"}},
		{"RSET", "RSET\r\n", "-ERR [SYS/TEMP/SLOW]\r\n",
			func(ctx context.Context, c *Client) error { return c.Rset(ctx) },
			&Error{Command: "RSET", Code: "SYS/TEMP/SLOW"}},
		{"NOOP", "NOOP\r\n", "-ERR no\r\n",
			func(ctx context.Context, c *Client) error { return c.Noop(ctx) },
			&Error{Command: "NOOP", Text: "no"}},
		{"USER", "USER bob\r\n", "-ERR [AUTH] plaintext authentication disallowed\r\n",
			func(ctx context.Context, c *Client) error { return c.User(ctx, "bob") },
			&Error{Command: "USER bob", Code: "AUTH", Text: "plaintext authentication disallowed"}},
		{"PASS hides the password", "PASS hunter2\r\n", "-ERR [IN-USE] maildrop locked\r\n",
			func(ctx context.Context, c *Client) error { return c.Pass(ctx, "hunter2") },
			&Error{Command: "PASS", Code: "IN-USE", Text: "maildrop locked"}},
		{"CAPA", "CAPA\r\n", "-ERR unknown command\r\n",
			func(ctx context.Context, c *Client) error { _, err := c.Capabilities(ctx); return err },
			&Error{Command: "CAPA", Text: "unknown command"}},
		{"STLS", "STLS\r\n", "-ERR [SYS/PERM] no certificate\r\n",
			func(ctx context.Context, c *Client) error { return c.StartTLS(ctx, nil) },
			&Error{Command: "STLS", Code: "SYS/PERM", Text: "no certificate"}},
		{"AUTH", "AUTH PLAIN AHUAcA==\r\n", "-ERR [AUTH] invalid credentials\r\n",
			func(ctx context.Context, c *Client) error { return c.Auth(ctx, plainClient("u", "p")) },
			&Error{Command: "AUTH PLAIN", Code: "AUTH", Text: "invalid credentials"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := dialFake(t, greet, []step{
				{recv: tt.recv, send: tt.reply},
				{recv: "NOOP\r\n", send: "+OK\r\n"},
			}, nil)
			ctx := testCtx(t)
			err := tt.run(ctx, c)
			var got *Error
			if !errors.As(err, &got) {
				t.Fatalf("error %v, want *Error", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error %q shows the password", err)
			}
			if err := c.Noop(ctx); err != nil {
				t.Errorf("NOOP after -ERR: %v", err)
			}
		})
	}
}

func TestErrorTemporary(t *testing.T) {
	tests := []struct {
		code string
		want bool
	}{
		{"", false},
		{"IN-USE", true},
		{"LOGIN-DELAY", true},
		{"SYS/TEMP", true},
		{"sys/temp", true},
		{"SYS/TEMP/DISK", true},
		{"SYS/PERM", false},
		{"SYS", false},
		{"AUTH", false},
		{"UTF8", false},
	}
	for _, tt := range tests {
		if got := (&Error{Code: tt.code}).Temporary(); got != tt.want {
			t.Errorf("Temporary() for code %q = %v, want %v", tt.code, got, tt.want)
		}
	}
}

func TestErrorString(t *testing.T) {
	tests := []struct {
		err  *Error
		want string
	}{
		{&Error{Command: "RETR 1", Code: "SYS/TEMP", Text: "later"}, "pop3client: RETR 1: -ERR [SYS/TEMP] later"},
		{&Error{Command: "NOOP"}, "pop3client: NOOP: -ERR"},
		{&Error{Command: "PASS", Text: "bad"}, "pop3client: PASS: -ERR bad"},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, tt.err.Error()); diff != "" {
			t.Errorf("Error() (-want +got):\n%s", diff)
		}
	}
}

// TestArgumentChecks: arguments that would corrupt the command stream are
// refused before anything is sent (the script has no steps, so any byte
// sent fails the test), and the client stays usable.
func TestArgumentChecks(t *testing.T) {
	c := dialFake(t, greet, []step{{recv: "NOOP\r\n", send: "+OK\r\n"}}, nil)
	ctx := testCtx(t)
	checks := []struct {
		name string
		err  error
	}{
		{"USER injection", c.User(ctx, "alice\r\nDELE 1")},
		{"USER space", c.User(ctx, "a b")},
		{"USER empty", c.User(ctx, "")},
		{"PASS injection", c.Pass(ctx, "pw\nQUIT")},
		{"PASS NUL", c.Pass(ctx, "pw\x00")},
		{"DELE 0", c.Dele(ctx, 0)},
		{"DELE -1", c.DeleMany(ctx, []int{1, -1}, 2)},
		{"RETR 0", func() error { _, err := c.Retr(ctx, 0); return err }()},
		{"RetrMany 0", c.RetrMany(ctx, []int{0}, 1, nil)},
		{"TOP -1 lines", func() error { _, err := c.Top(ctx, 1, -1); return err }()},
		{"LIST 0", func() error { _, err := c.ListOne(ctx, 0); return err }()},
		{"UIDL -5", func() error { _, err := c.UIDLOne(ctx, -5); return err }()},
		{"AUTH bad mechanism name", c.Auth(ctx, badNameMech{})},
	}
	for _, ch := range checks {
		if ch.err == nil {
			t.Errorf("%s: no error", ch.name)
		}
	}
	if err := c.RetrMany(ctx, nil, 4, nil); err != nil {
		t.Errorf("RetrMany with no messages: %v", err)
	}
	if err := c.DeleMany(ctx, nil, 4); err != nil {
		t.Errorf("DeleMany with no messages: %v", err)
	}
	if err := c.Noop(ctx); err != nil {
		t.Errorf("NOOP: %v", err)
	}
}

type badNameMech struct{}

func (badNameMech) Start() (string, []byte, error) { return "PLAIN x", nil, nil }
func (badNameMech) Next([]byte) ([]byte, error)    { return nil, nil }
