package proxyproto

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	trustedIP   = "127.0.0.1"
	untrustedIP = "127.0.0.2"
)

// lockedBuffer collects log output written from connection goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// newListener listens on 127.0.0.1 and trusts that address only, so that
// dialling from 127.0.0.2 makes an untrusted peer.
func newListener(t *testing.T, timeout time.Duration) (*Listener, *lockedBuffer) {
	t.Helper()
	ln, err := net.Listen("tcp", trustedIP+":0")
	if err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	l := &Listener{
		Listener:      ln,
		Trusted:       []netip.Prefix{netip.MustParsePrefix(trustedIP + "/32")},
		HeaderTimeout: timeout,
		Logger:        slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	t.Cleanup(func() { l.Close() })
	return l, logs
}

func dialFrom(t *testing.T, from string, l net.Listener) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatalf("dial from %s: %v", from, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// accept fails the test instead of hanging when Accept does not return.
func accept(t *testing.T, l *Listener) *Conn {
	t.Helper()
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		c, err := l.Accept()
		ch <- result{c, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("Accept: %v", r.err)
		}
		t.Cleanup(func() { r.c.Close() })
		return r.c.(*Conn)
	case <-time.After(5 * time.Second):
		t.Fatal("Accept did not return")
	}
	return nil
}

func mustWrite(t *testing.T, c net.Conn, b []byte) {
	t.Helper()
	if _, err := c.Write(b); err != nil {
		t.Fatalf("write: %v", err)
	}
}

func TestListenerTrustedPeer(t *testing.T) {
	tests := []struct {
		name             string
		header           []byte
		remote, local    string // "" for the real endpoints
		wantHeaderFields Command
	}{
		{"v1 TCP4", []byte("PROXY TCP4 192.0.2.1 198.51.100.2 56324 995\r\n"), "192.0.2.1:56324", "198.51.100.2:995", CommandProxy},
		{"v1 TCP6", []byte("PROXY TCP6 2001:db8::1 2001:db8::2 1 995\r\n"), "[2001:db8::1]:1", "[2001:db8::2]:995", CommandProxy},
		{"v1 UNKNOWN", []byte("PROXY UNKNOWN\r\n"), "", "", CommandProxy},
		{"v2 TCP4", v2(0x21, 0x11, ip4("192.0.2.1"), ip4("198.51.100.2"), port(56324), port(995)),
			"192.0.2.1:56324", "198.51.100.2:995", CommandProxy},
		{"v2 TCP6 IPv4-mapped", v2(0x21, 0x21, ip6("::ffff:192.0.2.1"), ip6("::ffff:198.51.100.2"), port(1), port(2)),
			"192.0.2.1:1", "198.51.100.2:2", CommandProxy},
		{"v2 LOCAL", v2(0x20, 0x00), "", "", CommandLocal},
		{"v2 UDP", v2(0x21, 0x12, ip4("192.0.2.1"), ip4("198.51.100.2"), port(1), port(2)), "", "", CommandProxy},
		{"v2 UNSPEC", v2(0x21, 0x00), "", "", CommandProxy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, _ := newListener(t, 0)
			client := dialFrom(t, trustedIP, l)
			mustWrite(t, client, append(bytes.Clone(tt.header), "CAPA\r\n"...))
			c := accept(t, l)

			wantRemote, wantLocal := tt.remote, tt.local
			if wantRemote == "" {
				wantRemote, wantLocal = client.LocalAddr().String(), client.RemoteAddr().String()
			}
			if got := c.RemoteAddr(); got.String() != wantRemote {
				t.Errorf("RemoteAddr() = %v, want %v", got, wantRemote)
			} else if _, ok := got.(*net.TCPAddr); !ok {
				t.Errorf("RemoteAddr() is a %T, want *net.TCPAddr", got)
			}
			if got := c.LocalAddr().String(); got != wantLocal {
				t.Errorf("LocalAddr() = %v, want %v", got, wantLocal)
			}
			if got := c.NetConn().RemoteAddr().String(); got != client.LocalAddr().String() {
				t.Errorf("NetConn().RemoteAddr() = %v, want the real peer %v", got, client.LocalAddr())
			}
			h, err := c.ProxyHeader()
			if err != nil || h == nil || h.Command != tt.wantHeaderFields {
				t.Errorf("ProxyHeader() = %+v, %v; want a %v header", h, err, tt.wantHeaderFields)
			}
			buf := make([]byte, 6)
			if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "CAPA\r\n" {
				t.Errorf("read %q, %v; want the bytes after the header", buf, err)
			}
			mustWrite(t, c, []byte("+OK\r\n"))
			if _, err := io.ReadFull(client, buf[:5]); err != nil || string(buf[:5]) != "+OK\r\n" {
				t.Errorf("client read %q, %v", buf[:5], err)
			}
		})
	}
}

// An untrusted peer's header is just data: it cannot choose its address.
func TestListenerUntrustedPeer(t *testing.T) {
	l, logs := newListener(t, 0)
	client := dialFrom(t, untrustedIP, l)
	sent := "PROXY TCP4 192.0.2.1 198.51.100.2 56324 995\r\nCAPA\r\n"
	mustWrite(t, client, []byte(sent))
	client.(*net.TCPConn).CloseWrite()
	c := accept(t, l)

	if got, want := c.RemoteAddr().String(), client.LocalAddr().String(); got != want {
		t.Errorf("RemoteAddr() = %v, want the real peer %v", got, want)
	}
	if got, want := c.LocalAddr().String(), client.RemoteAddr().String(); got != want {
		t.Errorf("LocalAddr() = %v, want %v", got, want)
	}
	if h, err := c.ProxyHeader(); h != nil || err != nil {
		t.Errorf("ProxyHeader() = %+v, %v; want nil, nil", h, err)
	}
	if err := c.Handshake(); err != nil {
		t.Errorf("Handshake() = %v", err)
	}
	got, err := io.ReadAll(c)
	if err != nil || string(got) != sent {
		t.Errorf("read %q, %v; want %q", got, err, sent)
	}
	if logs.String() != "" {
		t.Errorf("logged for an untrusted peer: %s", logs)
	}
}

// A trusted peer must send a valid header; without one the connection fails.
func TestListenerHeaderRequired(t *testing.T) {
	tests := []struct {
		name    string
		send    string
		want    error
		wantLog string
	}{
		{"POP3 without header", "USER alice\r\n", ErrNoHeader, "level=WARN"},
		{"invalid header", "PROXY TCP4 192.0.2.1 198.51.100.2 056324 995\r\nUSER alice\r\n", ErrInvalidHeader, "level=WARN"},
		{"truncated header", "PROXY TCP4 192.0.2.1", io.ErrUnexpectedEOF, "level=WARN"},
		{"closed at once", "", io.EOF, "level=DEBUG"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, logs := newListener(t, 0)
			client := dialFrom(t, trustedIP, l)
			mustWrite(t, client, []byte(tt.send))
			client.(*net.TCPConn).CloseWrite()
			c := accept(t, l)

			_, err := c.Read(make([]byte, 10))
			if !errors.Is(err, tt.want) {
				t.Fatalf("Read: %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), client.LocalAddr().String()) {
				t.Errorf("error %q does not name the peer", err)
			}
			if _, err2 := c.Write([]byte("+OK\r\n")); !errors.Is(err2, tt.want) {
				t.Errorf("Write after a failed header: %v, want %v", err2, tt.want)
			}
			if err2 := c.Handshake(); err2 != err {
				t.Errorf("Handshake() = %v, want the same error %v", err2, err)
			}
			if h, err2 := c.ProxyHeader(); h != nil || err2 != err {
				t.Errorf("ProxyHeader() = %v, %v", h, err2)
			}
			if got, want := c.RemoteAddr().String(), client.LocalAddr().String(); got != want {
				t.Errorf("RemoteAddr() = %v, want the real peer %v", got, want)
			}
			if log := logs.String(); !strings.Contains(log, tt.wantLog) || !strings.Contains(log, "rejected") {
				t.Errorf("log %q, want %s", log, tt.wantLog)
			}
		})
	}
}

// A trusted peer that sends nothing fails after HeaderTimeout, and meanwhile
// other connections are accepted and served.
func TestListenerHeaderTimeout(t *testing.T) {
	const timeout = time.Second
	l, _ := newListener(t, timeout)
	dialFrom(t, trustedIP, l) // silent
	start := time.Now()
	slow := accept(t, l)
	if d := time.Since(start); d > timeout/2 {
		t.Errorf("Accept took %v on a silent trusted peer", d)
	}
	slowDone := make(chan error, 1)
	go func() { slowDone <- slow.Handshake() }()

	client := dialFrom(t, trustedIP, l)
	mustWrite(t, client, []byte("PROXY TCP4 192.0.2.1 198.51.100.2 56324 995\r\n"))
	fast := accept(t, l)
	if got := fast.RemoteAddr().String(); got != "192.0.2.1:56324" {
		t.Errorf("second connection RemoteAddr() = %v", got)
	}
	select {
	case err := <-slowDone:
		t.Fatalf("the silent connection finished (%v) before the second was served", err)
	default:
	}

	err := <-slowDone
	elapsed := time.Since(start)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("silent peer: %v, want a deadline error", err)
	}
	if elapsed < timeout-100*time.Millisecond || elapsed > timeout+3*time.Second {
		t.Errorf("silent peer failed after %v, want about %v", elapsed, timeout)
	}
}

// The header's deadline is lifted once the header is in, and the caller's
// deadline, set before, applies during the header read and after it.
func TestConnDeadlines(t *testing.T) {
	const headerTimeout = 200 * time.Millisecond
	header := []byte("PROXY TCP4 192.0.2.1 198.51.100.2 56324 995\r\n")

	t.Run("header deadline lifted", func(t *testing.T) {
		l, _ := newListener(t, headerTimeout)
		client := dialFrom(t, trustedIP, l)
		mustWrite(t, client, header)
		c := accept(t, l)
		if err := c.Handshake(); err != nil {
			t.Fatal(err)
		}
		go func() {
			time.Sleep(3 * headerTimeout)
			client.Write([]byte("late"))
		}()
		buf := make([]byte, 4)
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Errorf("read after HeaderTimeout: %v", err)
		}
	})

	t.Run("caller deadline kept", func(t *testing.T) {
		l, _ := newListener(t, headerTimeout)
		client := dialFrom(t, trustedIP, l)
		c := accept(t, l)
		start := time.Now()
		deadline := start.Add(5 * headerTimeout)
		if err := c.SetReadDeadline(deadline); err != nil {
			t.Fatal(err)
		}
		mustWrite(t, client, header)
		go func() {
			time.Sleep(2 * headerTimeout)
			client.Write([]byte("late"))
		}()
		buf := make([]byte, 4)
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatalf("read after HeaderTimeout, before the caller's deadline: %v", err)
		}
		_, err := c.Read(buf)
		if !errors.Is(err, os.ErrDeadlineExceeded) || time.Now().Before(deadline) {
			t.Errorf("Read = %v after %v, want a timeout at the caller's deadline", err, time.Since(start))
		}
	})

	t.Run("caller deadline earlier than the header's", func(t *testing.T) {
		l, _ := newListener(t, time.Minute)
		dialFrom(t, trustedIP, l)
		c := accept(t, l)
		start := time.Now()
		c.SetDeadline(start.Add(headerTimeout))
		err := c.Handshake()
		if !errors.Is(err, os.ErrDeadlineExceeded) || time.Since(start) > 10*headerTimeout {
			t.Errorf("Handshake() = %v after %v, want a timeout at the caller's deadline", err, time.Since(start))
		}
	})

	t.Run("interrupted during the header", func(t *testing.T) {
		l, _ := newListener(t, time.Minute)
		dialFrom(t, trustedIP, l)
		c := accept(t, l)
		done := make(chan error, 1)
		go func() { done <- c.Handshake() }()
		time.Sleep(headerTimeout)
		// As pop3server's session.interrupt does.
		c.SetDeadline(time.Now())
		select {
		case err := <-done:
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Errorf("Handshake() = %v, want a deadline error", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("SetDeadline did not interrupt the header read")
		}
	})

	t.Run("closed during the header", func(t *testing.T) {
		l, _ := newListener(t, time.Minute)
		dialFrom(t, trustedIP, l)
		c := accept(t, l)
		done := make(chan error, 1)
		go func() { done <- c.Handshake() }()
		time.Sleep(headerTimeout / 2)
		c.Close()
		if err := <-done; !errors.Is(err, net.ErrClosed) {
			t.Errorf("Handshake() = %v, want net.ErrClosed", err)
		}
	})

	t.Run("no header timeout", func(t *testing.T) {
		l, _ := newListener(t, -1)
		client := dialFrom(t, trustedIP, l)
		c := accept(t, l)
		go func() {
			time.Sleep(2 * headerTimeout)
			client.Write(header)
		}()
		if err := c.Handshake(); err != nil {
			t.Errorf("Handshake() = %v", err)
		}
		// Deadlines pass straight through once the header is in.
		c.SetReadDeadline(time.Now().Add(-time.Second))
		if _, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("Read past the deadline: %v", err)
		}
		c.SetDeadline(time.Time{})
		c.SetWriteDeadline(time.Now().Add(-time.Second))
		if _, err := c.Write([]byte("x")); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("Write past the deadline: %v", err)
		}
	})
}

// Bytes that arrive with the header are returned first, in order, however
// small the reads.
func TestConnBufferedBytes(t *testing.T) {
	l, _ := newListener(t, 0)
	client := dialFrom(t, trustedIP, l)
	data := bytes.Repeat([]byte("0123456789abcdefghijklmnopqrstuvwxyz"), 200)
	mustWrite(t, client, append(v2(0x21, 0x11, ip4("192.0.2.1"), ip4("198.51.100.2"), port(1), port(2)), data...))
	client.(*net.TCPConn).CloseWrite()
	c := accept(t, l)
	var got []byte
	buf := make([]byte, 7)
	for {
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(got, data) {
		t.Errorf("read %d bytes, want the %d sent after the header", len(got), len(data))
	}
}

// Concurrent first uses all wait for the one header read.
func TestConnConcurrentFirstUse(t *testing.T) {
	l, _ := newListener(t, 0)
	client := dialFrom(t, trustedIP, l)
	c := accept(t, l)
	var wg sync.WaitGroup
	addrs := make([]string, 8)
	for i := range addrs {
		wg.Go(func() {
			switch i % 3 {
			case 0:
				addrs[i] = c.RemoteAddr().String()
			case 1:
				addrs[i] = c.LocalAddr().String()
			default:
				h, _ := c.ProxyHeader()
				addrs[i] = h.Source.String()
			}
		})
	}
	time.Sleep(50 * time.Millisecond)
	mustWrite(t, client, []byte("PROXY TCP4 192.0.2.1 198.51.100.2 56324 995\r\n"))
	wg.Wait()
	for i, a := range addrs {
		want := "192.0.2.1:56324"
		if i%3 == 1 {
			want = "198.51.100.2:995"
		}
		if a != want {
			t.Errorf("goroutine %d saw %s, want %s", i, a, want)
		}
	}
}

func testCertificate(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "pop.example.org"},
		DNSNames:              []string{"pop.example.org"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pool
}

// prefixConn sends its prefix in the same write as the first data, so that
// the header and the ClientHello arrive together and the header read takes
// in part of the ClientHello.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Write(p []byte) (int, error) {
	if c.prefix != nil {
		b := append(c.prefix, p...)
		c.prefix = nil
		n, err := c.Conn.Write(b)
		return max(n-(len(b)-len(p)), 0), err
	}
	return c.Conn.Write(p)
}

// Implicit TLS behind a proxy: the header comes before the ClientHello.
func TestConnTLS(t *testing.T) {
	cert, pool := testCertificate(t)
	for _, together := range []bool{false, true} {
		name := "header then ClientHello"
		if together {
			name = "header and ClientHello in one segment"
		}
		t.Run(name, func(t *testing.T) {
			l, _ := newListener(t, 0)
			raw := dialFrom(t, trustedIP, l)
			header := v2(0x21, 0x11, ip4("192.0.2.1"), ip4("198.51.100.2"), port(56324), port(995),
				tlv(0x02, "pop.example.org"))
			var conn net.Conn = raw
			if together {
				conn = &prefixConn{Conn: raw, prefix: header}
			} else {
				mustWrite(t, raw, header)
			}
			clientErr := make(chan error, 1)
			go func() {
				tc := tls.Client(conn, &tls.Config{ServerName: "pop.example.org", RootCAs: pool})
				if _, err := tc.Write([]byte("hello")); err != nil {
					clientErr <- err
					return
				}
				buf := make([]byte, 5)
				_, err := io.ReadFull(tc, buf)
				if err == nil && string(buf) != "world" {
					err = errors.New("client read " + string(buf))
				}
				clientErr <- err
			}()

			c := accept(t, l)
			tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}})
			tc.SetDeadline(time.Now().Add(10 * time.Second))
			if err := tc.Handshake(); err != nil {
				t.Fatalf("server handshake: %v", err)
			}
			if got := tc.RemoteAddr().String(); got != "192.0.2.1:56324" {
				t.Errorf("tls.Conn RemoteAddr() = %v", got)
			}
			h, _ := c.ProxyHeader()
			if a, _ := h.Authority(); a != tc.ConnectionState().ServerName {
				t.Errorf("authority %q, SNI %q", a, tc.ConnectionState().ServerName)
			}
			buf := make([]byte, 5)
			if _, err := io.ReadFull(tc, buf); err != nil || string(buf) != "hello" {
				t.Fatalf("server read %q, %v", buf, err)
			}
			mustWrite(t, tc, []byte("world"))
			if err := <-clientErr; err != nil {
				t.Errorf("client: %v", err)
			}
		})
	}
}

type fakeAddr string

func (a fakeAddr) Network() string { return "fake" }
func (a fakeAddr) String() string  { return string(a) }

func TestListenerTrusts(t *testing.T) {
	l := &Listener{Trusted: []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("fe80::/10"),
		netip.MustParsePrefix("192.0.2.7/24"), // not masked
	}}
	tests := []struct {
		addr net.Addr
		want bool
	}{
		{&net.TCPAddr{IP: net.ParseIP("10.1.2.3"), Port: 1}, true},
		{&net.TCPAddr{IP: net.ParseIP("::ffff:10.1.2.3"), Port: 1}, true},
		{&net.TCPAddr{IP: net.ParseIP("192.0.2.200"), Port: 1}, true},
		{&net.TCPAddr{IP: net.ParseIP("fe80::1"), Port: 1, Zone: "eth0"}, true},
		{&net.TCPAddr{IP: net.ParseIP("11.0.0.1"), Port: 1}, false},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 1}, false},
		{fakeAddr("10.0.0.1:25"), true},
		{fakeAddr("pipe"), false},
		{&net.UnixAddr{Name: "/run/popbox.sock", Net: "unix"}, false},
		{nil, false},
	}
	for _, tt := range tests {
		if got := l.trusts(tt.addr); got != tt.want {
			t.Errorf("trusts(%v) = %v, want %v", tt.addr, got, tt.want)
		}
	}
	if (&Listener{}).trusts(&net.TCPAddr{IP: net.ParseIP("127.0.0.1")}) {
		t.Error("an empty Trusted list trusts 127.0.0.1")
	}
}

func TestListenerAcceptError(t *testing.T) {
	l, _ := newListener(t, 0)
	l.Close()
	if c, err := l.Accept(); err == nil || c != nil {
		t.Errorf("Accept on a closed listener = %v, %v", c, err)
	}
}
