package pop3client

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/popbox/popbox/internal/app"
	"github.com/popbox/popbox/pop3server"
	popsasl "github.com/popbox/popbox/sasl"
)

const alicePass = "correct horse battery staple"

// popbox is popbox's own server, in process, on loopback: a plain listener
// offering STLS and an implicit-TLS one, over a fresh data directory.
type popbox struct {
	addr, tlsAddr string
	clientTLS     *tls.Config
	want          []string // alice's messages as RETR must return them, in order
}

// startPopbox starts the server with n messages for alice.
func startPopbox(t *testing.T, n int) *popbox {
	t.Helper()
	ctx := testCtx(t)
	d := app.DataDir(t.TempDir())
	users, err := d.OpenUsers()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { users.Close() })
	st, err := d.OpenStore(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := users.Add(ctx, "alice", alicePass); err != nil {
		t.Fatal(err)
	}
	p := &popbox{}
	for i := 1; i <= n; i++ {
		stored, want := testMessage(i)
		if _, err := st.Deliver(ctx, "alice", strings.NewReader(stored)); err != nil {
			t.Fatalf("delivering message %d: %v", i, err)
		}
		p.want = append(p.want, want)
	}
	serverTLS, clientTLS := testTLS(t)
	p.clientTLS = clientTLS
	srv := &pop3server.Server{
		Backend:          app.Backend{Users: users, Store: st},
		TLSConfig:        serverTLS,
		Hostname:         "localhost",
		AuthFailureDelay: -1,
	}
	done := make(chan error, 2)
	for _, serve := range []func(net.Listener) error{srv.Serve, srv.ServeTLS} {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		if p.addr == "" {
			p.addr = l.Addr().String()
		} else {
			p.tlsAddr = l.Addr().String()
		}
		go func() { done <- serve(l) }()
	}
	t.Cleanup(func() {
		srv.Close()
		for range 2 {
			if err := <-done; !errors.Is(err, pop3server.ErrServerClosed) {
				t.Errorf("Serve: %v", err)
			}
		}
	})
	return p
}

// testMessage returns message i as delivered and as RETR must return it.
// They cover what breaks naive clients: lines that are or start with dots,
// long lines, 8-bit and NUL octets, and LF line ends (which the server
// sends as CRLF).
func testMessage(i int) (stored, want string) {
	var b strings.Builder
	fmt.Fprintf(&b, "From: sender%d@example.com\r\nSubject: message %d\r\nMessage-ID: <%d@popbox.test>\r\n\r\n", i, i, i)
	switch i % 5 {
	case 0:
		b.WriteString(".\r\n..\r\n.leading dot\r\n...\r\n")
	case 1:
		b.WriteString(strings.Repeat("L", 20000+i) + "\r\n")
	case 2:
		b.WriteString("caf\xc3\xa9 \xff\x80 and a NUL \x00 here\r\n")
	case 3:
		for j := range i * 10 {
			fmt.Fprintf(&b, "line %d of message %d\r\n", j, i)
		}
	case 4:
		b.WriteString("ends with a dot.\r\n.\r\n")
	}
	b.WriteString("end\r\n")
	want = b.String()
	if i%7 == 0 {
		return strings.ReplaceAll(want, "\r\n", "\n"), want
	}
	return want, want
}

func TestIntegration(t *testing.T) {
	const n = 200
	p := startPopbox(t, n)
	ctx := testCtx(t)

	t.Run("STLS, AUTH PLAIN, RetrMany pipelined", func(t *testing.T) {
		c, err := Dial(ctx, p.addr, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		caps, err := c.Capabilities(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !caps.Has("STLS") {
			t.Fatalf("no STLS in %v", caps)
		}
		if err := c.StartTLS(ctx, p.clientTLS); err != nil {
			t.Fatal(err)
		}
		caps, err = c.Capabilities(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if caps.Has("STLS") || !caps.Has("PIPELINING") {
			t.Errorf("capabilities after STLS: %v", caps)
		}
		// On TLS the server offers the channel-bound variant too.
		mech := popsasl.Strongest(caps.SASL(), nil)
		if mech != popsasl.SCRAMSHA256Plus {
			t.Fatalf("Strongest(%v) = %q, want SCRAM-SHA-256-PLUS", caps.SASL(), mech)
		}
		if err := c.Auth(ctx, popsasl.NewPlainClient("", "alice", alicePass)); err != nil {
			t.Fatal(err)
		}
		count, size, err := c.Stat(ctx)
		if err != nil {
			t.Fatal(err)
		}
		list, err := c.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		uidls, err := c.UIDL(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if count != n || len(list) != n || len(uidls) != n {
			t.Fatalf("STAT %d, LIST %d, UIDL %d entries, want %d", count, len(list), len(uidls), n)
		}
		var total int64
		nums := make([]int, n)
		for i, mi := range list {
			total += mi.Size
			nums[i] = mi.Num
		}
		if total != size {
			t.Errorf("LIST sizes add up to %d, STAT says %d", total, size)
		}
		window := 1
		if caps.Has("PIPELINING") {
			window = 16
		}
		var got []int
		err = c.RetrMany(ctx, nums, window, func(num int, body io.Reader, err error) error {
			if err != nil {
				return err
			}
			b, err := io.ReadAll(body)
			if err != nil {
				return err
			}
			got = append(got, num)
			if string(b) != p.want[num-1] {
				t.Errorf("message %d differs:\n%s", num, cmp.Diff(p.want[num-1], string(b)))
			}
			if int64(len(b)) != list[num-1].Size {
				t.Errorf("message %d: %d octets, LIST said %d", num, len(b), list[num-1].Size)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(nums, got); diff != "" {
			t.Errorf("order (-want +got):\n%s", diff)
		}
		if err := c.Quit(ctx); err != nil {
			t.Error(err)
		}
	})

	t.Run("implicit TLS, USER PASS, TOP, RETR", func(t *testing.T) {
		c, err := DialTLS(ctx, p.tlsAddr, p.clientTLS, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.User(ctx, "alice"); err != nil {
			t.Fatal(err)
		}
		if err := c.Pass(ctx, alicePass); err != nil {
			t.Fatal(err)
		}
		top, err := readBody(c.Top(ctx, 5, 0))
		if err != nil {
			t.Fatal(err)
		}
		header, _, _ := strings.Cut(p.want[4], "\r\n\r\n")
		if diff := cmp.Diff(header+"\r\n\r\n", top); diff != "" {
			t.Errorf("TOP 5 0 (-want +got):\n%s", diff)
		}
		for _, num := range []int{1, 2, 7, n} {
			body, err := readBody(c.Retr(ctx, num))
			if err != nil {
				t.Fatal(err)
			}
			if body != p.want[num-1] {
				t.Errorf("RETR %d differs:\n%s", num, cmp.Diff(p.want[num-1], body))
			}
		}
		mi, err := c.ListOne(ctx, 3)
		if err != nil || mi.Num != 3 || mi.Size != int64(len(p.want[2])) {
			t.Errorf("LIST 3: %+v, %v", mi, err)
		}
		_, err = c.Retr(ctx, n+1)
		var e *Error
		if !errors.As(err, &e) {
			t.Errorf("RETR of a message that does not exist: %v, want *Error", err)
		}
		if err := c.Quit(ctx); err != nil {
			t.Error(err)
		}
	})

	// SCRAM-SHA-256-PLUS with each channel binding type, end to end
	// through the server's SASL, backend and user database.
	for _, typ := range []string{popsasl.TLSExporter, popsasl.TLSServerEndPoint} {
		t.Run("implicit TLS, SCRAM-SHA-256-PLUS "+typ, func(t *testing.T) {
			c, err := DialTLS(ctx, p.tlsAddr, p.clientTLS, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			st, _ := c.TLSConnectionState()
			cb, err := popsasl.ChannelBindingFromTLS(st, typ)
			if err != nil {
				t.Fatal(err)
			}
			m := popsasl.NewSCRAMSHA256Client("alice", alicePass, cb)
			if err := c.Auth(ctx, m); err != nil {
				t.Fatalf("AUTH %s with %s: %v", popsasl.SCRAMSHA256Plus, typ, err)
			}
			if err := m.(popsasl.MutualAuthenticator).ServerVerified(); err != nil {
				t.Error(err)
			}
			if count, _, err := c.Stat(ctx); err != nil || count != n {
				t.Errorf("STAT = %d, %v; want %d", count, err, n)
			}
			if err := c.Quit(ctx); err != nil {
				t.Error(err)
			}
		})
	}

	t.Run("wrong password", func(t *testing.T) {
		c, err := Dial(ctx, p.addr, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.User(ctx, "alice"); err != nil {
			t.Fatal(err)
		}
		err = c.Pass(ctx, "wrong")
		var e *Error
		if !errors.As(err, &e) || e.Code != "AUTH" || e.Temporary() {
			t.Errorf("PASS with a wrong password: %v, want -ERR [AUTH]", err)
		}
	})

	t.Run("IN-USE, and Close deletes nothing", func(t *testing.T) {
		c1 := login(t, p)
		if err := c1.Dele(ctx, 1); err != nil {
			t.Fatal(err)
		}
		c2, err := Dial(ctx, p.addr, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c2.Close()
		err = c2.Auth(ctx, popsasl.NewPlainClient("", "alice", alicePass))
		var e *Error
		if !errors.As(err, &e) || e.Code != "IN-USE" || !e.Temporary() {
			t.Errorf("second login: %v, want -ERR [IN-USE]", err)
		}
		c1.Close()
		c3 := login(t, p)
		defer c3.Close()
		if count, _, err := c3.Stat(ctx); err != nil || count != n {
			t.Errorf("STAT after Close without QUIT: %d, %v; want %d", count, err, n)
		}
	})

	t.Run("DeleMany, QUIT", func(t *testing.T) {
		c := login(t, p)
		before, err := c.UIDL(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var nums []int
		for i := 1; i <= 50; i++ {
			nums = append(nums, i)
		}
		if err := c.DeleMany(ctx, nums, 8); err != nil {
			t.Fatal(err)
		}
		// RFC 1939 §5: a deleted message is gone from listings already.
		_, err = c.ListOne(ctx, 1)
		var e *Error
		if !errors.As(err, &e) {
			t.Errorf("LIST of a deleted message: %v, want *Error", err)
		}
		if err := c.Quit(ctx); err != nil {
			t.Fatal(err)
		}
		c = login(t, p)
		defer c.Quit(ctx)
		after, err := c.UIDL(ctx)
		if err != nil {
			t.Fatal(err)
		}
		uids := func(l []MessageInfo) []string {
			var s []string
			for _, mi := range l {
				s = append(s, mi.UIDL)
			}
			return s
		}
		if diff := cmp.Diff(uids(before[50:]), uids(after)); diff != "" {
			t.Errorf("UIDLs after deleting the first 50 (-want +got):\n%s", diff)
		}
	})
}

// login opens an implicit-TLS session as alice.
func login(t *testing.T, p *popbox) *Client {
	t.Helper()
	ctx := testCtx(t)
	c, err := DialTLS(ctx, p.tlsAddr, p.clientTLS, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Auth(ctx, popsasl.NewPlainClient("", "alice", alicePass)); err != nil {
		t.Fatal(err)
	}
	return c
}
