package app

import (
	"bufio"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/popbox/popbox/pop3"
	"github.com/popbox/popbox/pop3server"
)

// bigMessage generates a message of about size bytes line by line, so the
// test itself never holds it whole either.
type bigMessage struct {
	remaining int
	line      int
	buf       []byte
	store     []byte // reused, so the generator makes no garbage to blur the heap figures
}

var xs = strings.Repeat("x", 90)

func (b *bigMessage) Read(p []byte) (int, error) {
	for len(b.buf) == 0 {
		if b.remaining <= 0 {
			return 0, io.EOF
		}
		if b.line == 0 {
			b.buf = []byte("Subject: big\n\n")
		} else {
			// Every 7th line starts with a dot so stuffing is exercised.
			prefix := ""
			if b.line%7 == 0 {
				prefix = "."
			}
			b.buf = fmt.Appendf(b.store[:0], "%sline %d %s\n", prefix, b.line, xs)
		}
		b.line++
		b.remaining -= len(b.buf)
	}
	n := copy(p, b.buf)
	b.buf = b.buf[n:]
	return n, nil
}

// TestLargeMessageStreams delivers a 100 MB message through the Maildir
// store and retrieves it with RETR through the real server, checking that
// the heap stays far below the message size on both paths, and that the
// bytes received are exactly the LIST size and the stored content.
func TestLargeMessageStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("100 MB transfer; run without -short")
	}
	const size = 100 << 20
	ctx := context.Background()
	data := DataDir(t.TempDir())
	users, err := data.OpenUsers()
	if err != nil {
		t.Fatal(err)
	}
	defer users.Close()
	if err := users.Add(ctx, "big", "secret-password"); err != nil {
		t.Fatal(err)
	}
	st, err := data.OpenStore(nil)
	if err != nil {
		t.Fatal(err)
	}

	before := heapInuse()
	peak := watchHeap(t)
	// What RETR must send, unstuffed: the generated text with CRLF ends.
	want := sha256.New()
	if _, err := io.Copy(&crlfWriter{w: want}, &bigMessage{remaining: size}); err != nil {
		t.Fatal(err)
	}
	info, err := st.Deliver(ctx, "big", &bigMessage{remaining: size})
	if err != nil {
		t.Fatal(err)
	}
	checkGrowth(t, "delivering", before, peak(), size)

	srv := &pop3server.Server{Backend: Backend{Users: users, Store: st}, AuthFailureDelay: -1}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	defer srv.Close()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	r := bufio.NewReader(c)
	send := func(cmd string) string {
		t.Helper()
		if cmd != "" {
			fmt.Fprintf(c, "%s\r\n", cmd)
		}
		line, err := pop3.ReadLine(r, 512)
		if err != nil || !strings.HasPrefix(string(line), "+OK") {
			t.Fatalf("%s: %q %v", cmd, line, err)
		}
		return string(line)
	}
	send("")
	send("USER big")
	send("PASS secret-password")
	// The password check (argon2id, 19 MiB) is not what is measured here.
	before = heapInuse()
	peak = watchHeap(t)
	if got, wantList := send("LIST 1"), fmt.Sprintf("+OK 1 %d", info.Size); got != wantList {
		t.Fatalf("LIST 1 = %q, want %q", got, wantList)
	}
	send("RETR 1")
	got := sha256.New()
	n, err := io.Copy(got, pop3.NewDotReader(r))
	if err != nil {
		t.Fatal(err)
	}
	send("QUIT")
	if n != info.Size {
		t.Errorf("received %d octets, LIST said %d", n, info.Size)
	}
	if fmt.Sprintf("%x", got.Sum(nil)) != fmt.Sprintf("%x", want.Sum(nil)) {
		t.Error("retrieved message differs from the delivered one")
	}
	checkGrowth(t, "retrieving", before, peak(), size)
}

func heapInuse() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

func checkGrowth(t *testing.T, what string, before, peak uint64, size int) {
	t.Helper()
	grown := int64(peak) - int64(before)
	t.Logf("%s %d MB: heap grew by %.1f MB", what, size>>20, float64(grown)/(1<<20))
	if grown > 16<<20 {
		t.Errorf("heap grew by %d MB while %s a %d MB message; it is not streamed", grown>>20, what, size>>20)
	}
}

// watchHeap samples HeapInuse until the returned function is called, and
// returns the peak.
func watchHeap(t *testing.T) func() uint64 {
	done := make(chan struct{})
	result := make(chan uint64)
	go func() {
		var peak uint64
		var m runtime.MemStats
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			runtime.ReadMemStats(&m)
			peak = max(peak, m.HeapInuse)
			select {
			case <-done:
				result <- peak
				return
			case <-tick.C:
			}
		}
	}()
	return func() uint64 { close(done); return <-result }
}

// crlfWriter turns LF into CRLF, as RETR does for the generated text
// (which has no CR of its own and ends in LF).
type crlfWriter struct {
	w   io.Writer
	buf []byte
}

func (c *crlfWriter) Write(p []byte) (int, error) {
	c.buf = c.buf[:0]
	for _, b := range p {
		if b == '\n' {
			c.buf = append(c.buf, '\r')
		}
		c.buf = append(c.buf, b)
	}
	_, err := c.w.Write(c.buf)
	return len(p), err
}
