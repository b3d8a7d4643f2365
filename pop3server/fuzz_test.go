package pop3server

import (
	"bytes"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

const fuzzSessionTimeout = 5 * time.Second

// FuzzSession feeds arbitrary bytes to a server as a client's command
// stream, then half-closes. The session must end (no hang), the server must
// not panic, the first line must be the greeting, and a commit may only
// follow a QUIT.
func FuzzSession(f *testing.F) {
	login := "USER alice\r\nPASS " + alicePass + "\r\n"
	for _, s := range []string{
		"",
		"QUIT\r\n",
		"CAPA\r\n" + login + "STAT\r\nLIST\r\nUIDL\r\nRETR 1\r\nRETR 2\r\nTOP 2 1\r\nTOP 3 0\r\nDELE 1\r\nRSET\r\nNOOP\r\nDELE 2\r\nQUIT\r\n",
		login + "LIST 1\r\nUIDL 4\r\nDELE 4\r\nDELE 4\r\nRETR 4\r\nQUIT\r\n",
		"AUTH\r\nAUTH PLAIN " + b64("\x00alice\x00"+alicePass) + "\r\nSTAT\r\nQUIT\r\n",
		"AUTH PLAIN\r\n" + b64("\x00bob\x00"+bobPass) + "\r\nLIST\r\nQUIT\r\n",
		"AUTH PLAIN\r\n*\r\nAUTH PLAIN =\r\nAUTH PLAIN !!\r\nAUTH X\r\n",
		"AUTH LOGIN\r\n" + b64("alice") + "\r\n" + b64(alicePass) + "\r\nSTAT\r\nQUIT\r\n",
		"AUTH LOGIN " + b64("bob") + "\r\n*\r\nAUTH LOGIN =\r\n=\r\nAUTH LOGIN\r\n!!\r\n",
		"UTF8\r\nUSER jörg\r\nPASS x\r\nUSER alice\r\nPASS " + alicePass + "\r\nUIDL\r\nQUIT\r\n",
		"STLS\r\nCAPA\r\n",
		"STLS\r\n\x16\x03\x01\x00\x05hello",
		"user alice\npass " + alicePass + "\nretr 1\nquit\n",
		login + "RETR 0\r\nRETR -1\r\nRETR 99999999999999999999\r\nRETR\r\nRETR 1 2\r\nTOP 1\r\nTOP 1 x\r\nQUIT\r\n",
		"NO\x00OP\r\n\xff\xfe\r\nLIST \xc3\x28\r\n\r\n   \r\n",
		strings.Repeat("x", 1000) + "\r\nCAPA\r\n",
		strings.Repeat("BAD\r\n", 30),
		login + "QUIT",
		login + "DELE 1\r\nQUI",
		"PASS x\r\nSTAT\r\nQUIT\r\nQUIT\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, input []byte) {
		b := fixtureBackend()
		ts := newTestServer(t, b, serverOpts{configure: func(s *Server) {
			// Far above the client's deadline: a session must end because
			// the input ended, not because a timer saved it.
			s.Limits.IdleTimeout = time.Minute
			s.Limits.HandshakeTimeout = time.Minute
		}})
		conn, err := net.DialTimeout("tcp", ts.addr, ioTimeout)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(fuzzSessionTimeout))
		go func() {
			// The server may close first; errors do not matter here.
			conn.Write(input)
			conn.(*net.TCPConn).CloseWrite()
		}()
		var out bytes.Buffer
		_, err = out.ReadFrom(conn)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("session did not end within %v of the input; output so far %.300q", fuzzSessionTimeout, out.Bytes())
		}
		if !bytes.HasPrefix(out.Bytes(), []byte("+OK mail.test POP3 server ready\r\n")) {
			t.Fatalf("output does not start with the greeting: %.300q", out.Bytes())
		}
		ts.srv.Close()
		for _, ev := range b.eventList() {
			if ev.Kind == "commit" && !bytes.Contains(bytes.ToUpper(input), []byte("QUIT")) {
				t.Fatalf("committed %+v without a QUIT in the input", ev)
			}
		}
		if b.isLocked("alice") || b.isLocked("bob") {
			t.Fatal("a maildrop is still locked after the session")
		}
	})
}
