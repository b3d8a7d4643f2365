package dest

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/google/go-cmp/cmp"
)

// recorded is one message a test server accepted.
type recorded struct {
	Hello, From, To, Data string
}

// testBackend is an in-test LMTP/SMTP server's backend: it records what it
// accepts and fails on demand.
type testBackend struct {
	rcptErr error // returned by RCPT
	dataErr error // returned after the data was read (LMTP: the recipient's status)

	mu   sync.Mutex
	msgs []recorded
}

func (b *testBackend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	return &testSession{b: b, hello: c.Hostname()}, nil
}

func (b *testBackend) messages() []recorded {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]recorded(nil), b.msgs...)
}

type testSession struct {
	b        *testBackend
	hello    string
	from, to string
}

func (s *testSession) Reset()        {}
func (s *testSession) Logout() error { return nil }
func (s *testSession) Mail(from string, _ *smtp.MailOptions) error {
	s.from = from
	return nil
}

func (s *testSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if s.b.rcptErr != nil {
		return s.b.rcptErr
	}
	s.to = to
	return nil
}

func (s *testSession) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if s.b.dataErr != nil {
		return s.b.dataErr
	}
	s.b.mu.Lock()
	s.b.msgs = append(s.b.msgs, recorded{Hello: s.hello, From: s.from, To: s.to, Data: string(data)})
	s.b.mu.Unlock()
	return nil
}

// startServer runs a go-smtp server in LMTP or SMTP mode on a unix socket
// (LMTP, as Dovecot and Postfix usually offer it) or on loopback TCP, and
// returns the destination spec for it.
func startServer(t *testing.T, lmtp bool, be *testBackend) string {
	t.Helper()
	s := smtp.NewServer(be)
	s.LMTP = lmtp
	s.Domain = "test.example"
	s.ReadTimeout, s.WriteTimeout = 10*time.Second, 10*time.Second
	s.MaxMessageBytes = 64 << 20
	s.ErrorLog = log.New(io.Discard, "", 0)
	var l net.Listener
	var err error
	var spec string
	if lmtp {
		sock := filepath.Join(t.TempDir(), "lmtp.sock")
		l, err = net.Listen("unix", sock)
		spec = "lmtp:unix:" + sock
	} else {
		l, err = net.Listen("tcp", "127.0.0.1:0")
		if err == nil {
			spec = "smtp:" + l.Addr().String()
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(l)
	t.Cleanup(func() { s.Close() })
	return spec
}

// onWire is what the server must receive for a message given to Deliver:
// the same octets (dot-stuffing undone by the server), with a final CRLF
// added when missing.
func onWire(in string) string {
	if strings.HasSuffix(in, "\r\n") {
		return in
	}
	return in + "\r\n"
}

func TestSMTPDeliver(t *testing.T) {
	crlf, _ := bigMessage()
	cases := append(testMessages[:len(testMessages):len(testMessages)], struct{ name, in, lf string }{"5 MB", crlf, ""})
	for _, lmtp := range []bool{true, false} {
		name := map[bool]string{true: "lmtp", false: "smtp"}[lmtp]
		t.Run(name, func(t *testing.T) {
			be := &testBackend{}
			spec := startServer(t, lmtp, be)
			d, err := Open(spec, Options{Hostname: "fetcher.example", LMTPFrom: "popbox@fetcher.example"})
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			var want []recorded
			for i, tt := range cases {
				if strings.Contains(tt.in, "\r") && strings.Contains(strings.ReplaceAll(tt.in, "\r\n", ""), "\r") {
					continue // a lone CR is not valid SMTP data (RFC 5321 §2.3.8)
				}
				m := Message{Key: "k", Recipient: "bob@local"}
				from := "popbox@fetcher.example"
				if i%2 == 1 {
					m.Sender, from = "alice@example.org", "alice@example.org"
				}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				err := d.Deliver(ctx, strings.NewReader(tt.in), m)
				cancel()
				if err != nil {
					t.Fatalf("%s: %v", tt.name, err)
				}
				want = append(want, recorded{Hello: "fetcher.example", From: from, To: "bob@local", Data: onWire(tt.in)})
			}
			got := be.messages()
			if len(got) != len(want) {
				t.Fatalf("server got %d messages, want %d", len(got), len(want))
			}
			for i := range want {
				if diff := cmp.Diff(want[i], got[i]); diff != "" {
					t.Errorf("message %d (-want +got):\n%.2000s", i, diff)
				}
			}
			if has, err := d.Has(context.Background(), "k"); has || !errors.Is(err, ErrUnknowable) {
				t.Errorf("Has = %v, %v; want false, ErrUnknowable", has, err)
			}
		})
	}
}

func TestSMTPErrors(t *testing.T) {
	tempErr := &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "Mailbox full, try later"}
	permErr := &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user"}
	tests := []struct {
		name      string
		be        *testBackend
		temporary bool
		wantInErr string
	}{
		{"rcpt 452", &testBackend{rcptErr: tempErr}, true, "Mailbox full"},
		{"rcpt 550", &testBackend{rcptErr: permErr}, false, "No such user"},
		{"data 452", &testBackend{dataErr: tempErr}, true, "Mailbox full"},
		{"data 550", &testBackend{dataErr: permErr}, false, "No such user"},
	}
	for _, lmtp := range []bool{true, false} {
		for _, tt := range tests {
			name := map[bool]string{true: "lmtp ", false: "smtp "}[lmtp] + tt.name
			t.Run(name, func(t *testing.T) {
				d, err := Open(startServer(t, lmtp, tt.be), Options{})
				if err != nil {
					t.Fatal(err)
				}
				defer d.Close()
				err = d.Deliver(context.Background(), strings.NewReader("Subject: x\r\n\r\nhi\r\n"), Message{Key: "k", Recipient: "bob@local"})
				if err == nil {
					t.Fatal("Deliver succeeded")
				}
				if got := errors.Is(err, ErrTemporary); got != tt.temporary {
					t.Errorf("temporary = %v, want %v (err %v)", got, tt.temporary, err)
				}
				if !strings.Contains(err.Error(), tt.wantInErr) {
					t.Errorf("error %q lacks %q", err, tt.wantInErr)
				}
				if n := len(tt.be.messages()); n != 0 {
					t.Errorf("server kept %d messages", n)
				}
			})
		}
	}
}

// A source failing mid-message must not end DATA with the final dot: the
// server would deliver the truncated message.
func TestSMTPReaderFailure(t *testing.T) {
	for _, lmtp := range []bool{true, false} {
		be := &testBackend{}
		d, err := Open(startServer(t, lmtp, be), Options{})
		if err != nil {
			t.Fatal(err)
		}
		err = d.Deliver(context.Background(), newFailingReader(), Message{Key: "k", Recipient: "bob@local"})
		if !errors.Is(err, errDropped) {
			t.Errorf("lmtp=%v: Deliver = %v, want %v", lmtp, err, errDropped)
		}
		time.Sleep(50 * time.Millisecond) // let the server notice the drop
		if n := len(be.messages()); n != 0 {
			t.Errorf("lmtp=%v: server delivered %d truncated messages", lmtp, n)
		}
		d.Close()
	}
}

// Nothing listening, a server that never greets, and no recipient.
func TestSMTPConnectionFailures(t *testing.T) {
	// A port that was just free: connection refused.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := l.Addr().String()
	l.Close()

	// A server that accepts and says nothing.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	var conns sync.WaitGroup
	conns.Add(1)
	go func() {
		defer conns.Done()
		c, err := silent.Accept()
		if err != nil {
			return
		}
		io.Copy(io.Discard, c) // until the client gives up
		c.Close()
	}()
	defer conns.Wait()

	// A server that accepts the transaction and then stops reading in the
	// middle of DATA: the client's writes block once the socket buffers
	// fill, and only a write deadline gets it out.
	stalled, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	release := make(chan struct{})
	defer close(release)
	conns.Add(1)
	go func() {
		defer conns.Done()
		c, err := stalled.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		io.WriteString(c, "220 stalled\r\n")
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			if strings.HasPrefix(line, "DATA") {
				io.WriteString(c, "354 go ahead\r\n")
				<-release
				return
			}
			io.WriteString(c, "250 ok\r\n")
		}
	}()

	tests := []struct {
		name      string
		spec      string
		m         Message
		temporary bool
		want      string
	}{
		{"refused", "lmtp:" + refused, Message{Key: "k", Recipient: "bob@local"}, true, "refused"},
		{"silent server", "smtp:" + silent.Addr().String(), Message{Key: "k", Recipient: "bob@local"}, true, "deadline exceeded"},
		{"stalled in DATA", "smtp:" + stalled.Addr().String(), Message{Key: "k", Recipient: "bob@local"}, true, "deadline exceeded"},
		{"no recipient", "lmtp:" + refused, Message{Key: "k"}, false, "no recipient"},
	}
	big, _ := bigMessage()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := Open(tt.spec, Options{DialTimeout: 2 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			defer cancel()
			start := time.Now()
			err = d.Deliver(ctx, strings.NewReader(big), tt.m)
			if err == nil {
				t.Fatal("Deliver succeeded")
			}
			if got := errors.Is(err, ErrTemporary); got != tt.temporary {
				t.Errorf("temporary = %v, want %v (err %v)", got, tt.temporary, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q lacks %q", err, tt.want)
			}
			if el := time.Since(start); el > 5*time.Second {
				t.Errorf("took %v despite a 500ms deadline", el)
			}
		})
	}
}
