package pop3client

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"

	gosasl "github.com/emersion/go-sasl"
)

func plainClient(user, pass string) gosasl.Client {
	return gosasl.NewPlainClient("", user, pass)
}

// TestMalformedReplies feeds replies that break the grammar. Each must give
// ErrProtocol, never a panic or a wrong result, and leave the client
// unusable: the next command fails without being sent (the script ends
// after the bad reply, so a command sent would fail the test).
func TestMalformedReplies(t *testing.T) {
	stat := func(ctx context.Context, c *Client) error { _, _, err := c.Stat(ctx); return err }
	list := func(ctx context.Context, c *Client) error { _, err := c.List(ctx); return err }
	uidl := func(ctx context.Context, c *Client) error { _, err := c.UIDL(ctx); return err }
	capa := func(ctx context.Context, c *Client) error { _, err := c.Capabilities(ctx); return err }
	listOne := func(ctx context.Context, c *Client) error { _, err := c.ListOne(ctx, 2); return err }
	uidlOne := func(ctx context.Context, c *Client) error { _, err := c.UIDLOne(ctx, 2); return err }
	retr := func(ctx context.Context, c *Client) error { _, err := readBody(c.Retr(ctx, 1)); return err }
	tests := []struct {
		name  string
		recv  string
		reply string
		run   func(context.Context, *Client) error
	}{
		{"no status", "STAT\r\n", "hello\r\n", stat},
		{"garbage", "STAT\r\n", "\xff\xfe\xfd\r\n", stat},
		{"+OK missing", "STAT\r\n", "OK 1 2\r\n", stat},
		{"+OKAY", "STAT\r\n", "+OKAY 1 2\r\n", stat},
		{"lower case", "STAT\r\n", "+ok 1 2\r\n", stat},
		{"-ERRor", "STAT\r\n", "-ERRor\r\n", stat},
		{"empty line", "STAT\r\n", "\r\n", stat},
		{"challenge", "STAT\r\n", "+ \r\n", stat},
		{"NUL in status", "STAT\r\n", "+OK 1\x00 2\r\n", stat},
		{"escape in -ERR", "NOOP\r\n", "-ERR \x1b[2Jgotcha\r\n", func(ctx context.Context, c *Client) error { return c.Noop(ctx) }},
		{"CR inside line", "STAT\r\n", "+OK 1\r2\r\n", stat},
		{"STAT non-numeric", "STAT\r\n", "+OK one 2\r\n", stat},
		{"STAT negative", "STAT\r\n", "+OK -1 2\r\n", stat},
		{"STAT plus sign", "STAT\r\n", "+OK +1 2\r\n", stat},
		{"STAT one field", "STAT\r\n", "+OK 1\r\n", stat},
		{"STAT overflow", "STAT\r\n", "+OK 1 99999999999999999999\r\n", stat},
		{"STAT hex", "STAT\r\n", "+OK 0x10 2\r\n", stat},
		{"LIST size non-numeric", "LIST\r\n", "+OK\r\n1 big\r\n.\r\n", list},
		{"LIST negative number", "LIST\r\n", "+OK\r\n-1 100\r\n.\r\n", list},
		{"LIST zero number", "LIST\r\n", "+OK\r\n0 100\r\n.\r\n", list},
		{"LIST negative size", "LIST\r\n", "+OK\r\n1 -100\r\n.\r\n", list},
		{"LIST missing size", "LIST\r\n", "+OK\r\n1\r\n.\r\n", list},
		{"LIST NUL", "LIST\r\n", "+OK\r\n1 1\x0000\r\n.\r\n", list},
		{"LIST n wrong message", "LIST 2\r\n", "+OK 3 100\r\n", listOne},
		{"LIST n no size", "LIST 2\r\n", "+OK 2\r\n", listOne},
		{"UIDL one field", "UIDL\r\n", "+OK\r\n1\r\n.\r\n", uidl},
		{"UIDL three fields", "UIDL\r\n", "+OK\r\n1 abc def\r\n.\r\n", uidl},
		{"UIDL non-numeric", "UIDL\r\n", "+OK\r\nx abc\r\n.\r\n", uidl},
		{"UIDL n wrong message", "UIDL 2\r\n", "+OK 1 abc\r\n", uidlOne},
		{"UIDL n empty", "UIDL 2\r\n", "+OK\r\n", uidlOne},
		{"CAPA NUL", "CAPA\r\n", "+OK\r\nTOP\x00\r\n.\r\n", capa},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := dialFake(t, greet, []step{{recv: tt.recv, send: tt.reply}}, nil)
			checkProtocolError(t, c, tt.run(testCtx(t), c))
		})
	}

	// Multi-line replies cut short by the server closing.
	cut := []struct {
		name  string
		recv  string
		reply string
		run   func(context.Context, *Client) error
	}{
		{"LIST then EOF", "LIST\r\n", "+OK\r\n1 100\r\n2 200\r\n", list},
		{"UIDL then EOF mid-line", "UIDL\r\n", "+OK\r\n1 abc\r\n2 de", uidl},
		{"CAPA then EOF", "CAPA\r\n", "+OK\r\nTOP\r\n", capa},
		{"RETR then EOF", "RETR 1\r\n", "+OK\r\nSubject: x\r\n\r\nbody\r\n", retr},
		{"RETR then EOF mid-line", "RETR 1\r\n", "+OK\r\nSubject: x\r\n\r\nbo", retr},
		{"RETR then EOF after dot", "RETR 1\r\n", "+OK\r\nx\r\n.", retr},
	}
	for _, tt := range cut {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := dialFake(t, greet, []step{{recv: tt.recv, send: tt.reply, hangUp: true}}, nil)
			err := tt.run(testCtx(t), c)
			if !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) && !strings.Contains(err.Error(), "not terminated") {
				t.Errorf("error %v does not say the reply was cut short", err)
			}
			checkProtocolError(t, c, err)
		})
	}

	// A server closing between replies is not a malformed reply, but the
	// connection is just as unusable.
	t.Run("EOF instead of status", func(t *testing.T) {
		t.Parallel()
		c := dialFake(t, greet, []step{{recv: "NOOP\r\n", hangUp: true}}, nil)
		ctx := testCtx(t)
		err := c.Noop(ctx)
		if !errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, ErrProtocol) {
			t.Errorf("NOOP: %v, want io.ErrUnexpectedEOF and not ErrProtocol", err)
		}
		if err := c.Noop(ctx); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("second NOOP: %v, want the first failure again", err)
		}
	})
}

func checkProtocolError(t *testing.T, c *Client, err error) {
	t.Helper()
	if !errors.Is(err, ErrProtocol) {
		t.Fatalf("error %v, want ErrProtocol", err)
	}
	if strings.ContainsAny(err.Error(), "\x00\x1b\r\n") {
		t.Errorf("error %q carries control characters from the reply", err)
	}
	if err := c.Noop(testCtx(t)); !errors.Is(err, ErrProtocol) {
		t.Errorf("NOOP after a protocol error: %v, want ErrProtocol again", err)
	}
}

// heapGrowth runs fn and returns how many bytes it allocated in total. The
// test must not be parallel, so that little else runs meanwhile.
func heapGrowth(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// writeRepeated writes prefix, then chunk n times (n < 0: until the client
// goes away), then suffix. It never holds more than chunk in memory.
func writeRepeated(prefix string, chunk []byte, n int, suffix string) func(net.Conn, *bufio.Reader) (net.Conn, *bufio.Reader, error) {
	return func(conn net.Conn, r *bufio.Reader) (net.Conn, *bufio.Reader, error) {
		if _, err := io.WriteString(conn, prefix); err != nil {
			return conn, r, nil
		}
		for i := 0; n < 0 || i < n; i++ {
			if _, err := conn.Write(chunk); err != nil {
				return conn, r, nil // the client closed, as it should
			}
		}
		io.WriteString(conn, suffix)
		return conn, r, nil
	}
}

// TestBoundedMemory: a server sending a 10 MB status line or a listing
// that never ends costs the client a fixed amount of memory, and is a
// protocol error.
func TestBoundedMemory(t *testing.T) {
	const limit = 2 << 20 // far below what storing the input would take
	chunk := bytes.Repeat([]byte("a"), 64<<10)
	lines := bytes.Repeat([]byte("1 100\r\n"), 10<<10)

	t.Run("10 MB status line", func(t *testing.T) {
		c := dialFake(t, greet, []step{{recv: "STAT\r\n", do: writeRepeated("+OK ", chunk, 160, "\r\n")}}, nil)
		var err error
		grew := heapGrowth(func() { _, _, err = c.Stat(testCtx(t)) })
		if !errors.Is(err, ErrProtocol) {
			t.Errorf("STAT: %v, want ErrProtocol", err)
		}
		if grew > limit {
			t.Errorf("reading a 10 MB line allocated %d bytes", grew)
		}
	})
	t.Run("10 MB listing line", func(t *testing.T) {
		c := dialFake(t, greet, []step{{recv: "UIDL\r\n", do: writeRepeated("+OK\r\n1 ", chunk, 160, "\r\n.\r\n")}}, nil)
		var err error
		grew := heapGrowth(func() { _, err = c.UIDL(testCtx(t)) })
		if !errors.Is(err, ErrProtocol) {
			t.Errorf("UIDL: %v, want ErrProtocol", err)
		}
		if grew > limit {
			t.Errorf("reading a 10 MB line allocated %d bytes", grew)
		}
	})
	t.Run("endless listing", func(t *testing.T) {
		c := dialFake(t, greet, []step{{recv: "LIST\r\n", do: writeRepeated("+OK\r\n", lines, -1, "")}},
			&Options{MaxListing: 1000})
		_, err := c.List(testCtx(t))
		if !errors.Is(err, ErrProtocol) {
			t.Errorf("LIST: %v, want ErrProtocol", err)
		}
	})
	t.Run("endless CAPA", func(t *testing.T) {
		c := dialFake(t, greet, []step{{recv: "CAPA\r\n", do: writeRepeated("+OK\r\n", []byte("X-FILLER\r\n"), -1, "")}}, nil)
		_, err := c.Capabilities(testCtx(t))
		if !errors.Is(err, ErrProtocol) {
			t.Errorf("CAPA: %v, want ErrProtocol", err)
		}
	})
	t.Run("long lines within MaxLine", func(t *testing.T) {
		// A 20000-octet listing line is fine when MaxLine allows it.
		uid := strings.Repeat("u", 20000)
		c := dialFake(t, greet, []step{{recv: "UIDL 1\r\n", send: "+OK 1 " + uid + "\r\n"}}, &Options{MaxLine: 32768})
		mi, err := c.UIDLOne(testCtx(t), 1)
		if err != nil || mi.UIDL != uid {
			t.Errorf("UIDL 1: %d-octet id, %v", len(mi.UIDL), err)
		}
	})
}
