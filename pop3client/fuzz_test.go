package pop3client

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/popbox/popbox/pop3"
	popsasl "github.com/popbox/popbox/sasl"
)

// memConn is a net.Conn whose server side is a fixed byte string: reads
// come from it, writes are discarded. It makes the fuzz targets fast and
// deterministic.
type memConn struct {
	r io.Reader
}

func (c *memConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c *memConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c *memConn) Close() error                     { return nil }
func (c *memConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *memConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *memConn) SetDeadline(time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(time.Time) error { return nil }

func memClient(t *testing.T, server []byte, opts *Options) *Client {
	c, err := NewClient(&memConn{r: bytes.NewReader(server)}, opts)
	if err != nil {
		t.Fatalf("greeting: %v", err)
	}
	return c
}

// FuzzReply feeds arbitrary server bytes to the status, listing, CAPA and
// AUTH parsers through a client. Nothing may panic, every result must obey
// the grammar the parser claims to enforce, and a protocol error must be
// sticky.
func FuzzReply(f *testing.F) {
	for _, s := range []string{
		"+OK 2 320\r\n+OK\r\n1 120\r\n2 200\r\n.\r\n+OK\r\n1 abc\r\n2 def\r\n.\r\n+OK 1 120\r\n+OK 1 abc\r\n+OK\r\nTOP\r\nSASL PLAIN\r\n.\r\n",
		"-ERR [IN-USE] locked\r\n-ERR [SYS/TEMP\r\n-ERR\r\n-ERR [A/B/C] x\r\n",
		"+OK 1\r\n",
		"+OK\r\n1 -1\r\n.\r\n",
		"+OK\r\n..\r\n.\r\n",
		"+OK\r\n1 \xff\r\n.\r\n",
		"+ \r\n+ VXNlcm5hbWU6\r\n+OK\r\n",
		"+\r\n+ !!\r\n-ERR\r\n",
		"\x00\r\n",
		"+OK 99999999999999999999999 1\r\n",
		"+OK\r\n1 100",
	} {
		f.Add(byte(0), []byte(s))
		f.Add(byte(1), []byte(s))
	}
	f.Fuzz(func(t *testing.T, order byte, input []byte) {
		const maxListing = 50
		c := memClient(t, append([]byte("+OK fuzz\r\n"), input...), &Options{MaxLine: 512, MaxListing: maxListing})
		ctx := context.Background()
		protocolFailed := false
		check := func(err error) {
			if errors.Is(err, ErrProtocol) {
				protocolFailed = true
			} else if protocolFailed && err != nil && !errors.Is(err, ErrProtocol) {
				t.Fatalf("error after a protocol error does not wrap it: %v", err)
			}
			var e *Error
			if errors.As(err, &e) {
				// RFC 2449 §8: levels of printable characters but
				// "/" and "]", separated by "/".
				for level := range strings.SplitSeq(e.Code, "/") {
					if e.Code != "" && (level == "" || strings.ContainsFunc(level, func(r rune) bool {
						return r <= ' ' || r >= 0x7f || r == ']'
					})) {
						t.Errorf("bad response code %q", e.Code)
					}
				}
			}
		}
		checkList := func(list []MessageInfo, err error) {
			check(err)
			if len(list) > maxListing {
				t.Errorf("listing of %d entries, bound %d", len(list), maxListing)
			}
			for _, mi := range list {
				if mi.Num < 1 || mi.Size < 0 {
					t.Errorf("bad entry %+v", mi)
				}
				if strings.ContainsAny(mi.UIDL, " \t\r\n") {
					t.Errorf("unique-id %q with white space", mi.UIDL)
				}
			}
		}
		steps := []func(){
			func() {
				n, s, err := c.Stat(ctx)
				check(err)
				if n < 0 || s < 0 {
					t.Errorf("STAT %d %d", n, s)
				}
			},
			func() { checkList(c.List(ctx)) },
			func() { checkList(c.UIDL(ctx)) },
			func() {
				mi, err := c.ListOne(ctx, 1)
				check(err)
				if err == nil {
					checkList([]MessageInfo{mi}, nil)
					if mi.Num != 1 {
						t.Errorf("LIST 1 gave message %d", mi.Num)
					}
				}
			},
			func() {
				mi, err := c.UIDLOne(ctx, 1)
				check(err)
				if err == nil {
					checkList([]MessageInfo{mi}, nil)
				}
			},
			func() {
				caps, err := c.Capabilities(ctx)
				check(err)
				for name := range caps {
					if name != strings.ToUpper(name) || name == "" {
						t.Errorf("capability name %q", name)
					}
				}
			},
			func() { check(c.Auth(ctx, popsasl.NewLoginClient("u", "p"))) },
			func() { check(c.Noop(ctx)) },
		}
		if order&1 == 1 {
			// Authentication first, as a real session would.
			steps = append(steps[6:7], append(steps[:6], steps[7:]...)...)
		}
		for _, step := range steps {
			step()
		}
	})
}

// FuzzRetr feeds arbitrary server bytes after a RETR's +OK: the client must
// not panic and must return at most as many octets as it was sent. It also
// sends the input as a correctly encoded message (pop3.DotWriter) and
// checks that the client returns exactly the message with the server's
// line-end conversion, and stays in step for the next reply.
func FuzzRetr(f *testing.F) {
	for _, s := range []string{
		"", ".", ".\r\n", "..\r\n", ".\n", "a\r\n.\r\n", "a\n.\n", "x\r\n.\r",
		".x\r\n..\r\n...\r\n", "a\rb\r\n", "\r\n.\r\n\r\n", "no newline", "\x00\xff\r\n",
		strings.Repeat("long", 1000) + "\r\n.\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, input []byte) {
		// Arbitrary bytes: bounded output, no panic.
		c := memClient(t, append([]byte("+OK\r\n+OK\r\n"), input...), nil)
		rc, err := c.Retr(context.Background(), 1)
		if err != nil {
			t.Fatal(err)
		}
		n, err := io.Copy(io.Discard, rc)
		if n > int64(len(input)) {
			t.Errorf("read %d octets from %d", n, len(input))
		}
		if err != nil && !errors.Is(err, ErrProtocol) {
			t.Errorf("error %v, want nil or ErrProtocol", err)
		}
		rc.Close()

		// A correctly encoded message comes back exactly, and the next
		// reply is read as such.
		var wire bytes.Buffer
		bw := bufio.NewWriter(&wire)
		dw := pop3.NewDotWriter(bw)
		dw.Write(input)
		dw.Close()
		bw.Flush()
		server := append([]byte("+OK\r\n+OK\r\n"), wire.Bytes()...)
		server = append(server, "+OK after\r\n"...)
		c = memClient(t, server, nil)
		got, err := readBody(c.Retr(context.Background(), 1))
		if err != nil {
			t.Fatalf("RETR of a well-formed body: %v", err)
		}
		if want := crlf(input); got != want {
			t.Errorf("RETR returned %q, want %q", got, want)
		}
		if err := c.Noop(context.Background()); err != nil {
			t.Errorf("NOOP after the body: %v", err)
		}
	})
}

// crlf is what a POP3 server sends for a stored message, before stuffing:
// every LF not preceded by CR gets one, and a final CRLF is added when the
// message does not end with a line end.
func crlf(msg []byte) string {
	var b strings.Builder
	for i, c := range msg {
		if c == '\n' && (i == 0 || msg[i-1] != '\r') {
			b.WriteByte('\r')
		}
		b.WriteByte(c)
	}
	if len(msg) > 0 && msg[len(msg)-1] != '\n' {
		b.WriteString("\r\n")
	}
	return b.String()
}
