package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"
)

// client is a minimal POP3 client: enough for the benchmarks, lean on CPU
// so that the client (on the same 2 cores) disturbs the server little.
type client struct {
	c net.Conn
	r *bufio.Reader
	w *bufio.Writer
	o *opts
}

var errNeg = errors.New("-ERR")

func tlsConfig() *tls.Config {
	// The benchmark certificate is self-signed; verification would cost
	// the client, not the server, and is the same for both servers.
	return &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"} //nolint:gosec // benchmark client on loopback
}

// dial connects, reads the greeting and, for -tls stls, upgrades. rbuf is
// the read buffer size (small for the idle benchmark's thousands of
// connections).
func dial(o *opts, rbuf int) (*client, error) {
	d := net.Dialer{Timeout: o.timeout}
	c, err := d.Dial("tcp", o.addr)
	if err != nil {
		return nil, err
	}
	if o.tlsMode == "pop3s" {
		tc := tls.Client(c, tlsConfig())
		_ = tc.SetDeadline(time.Now().Add(o.timeout))
		if err := tc.Handshake(); err != nil {
			c.Close()
			return nil, fmt.Errorf("TLS handshake: %w", err)
		}
		c = tc
	}
	cl := &client{c: c, r: bufio.NewReaderSize(c, rbuf), w: bufio.NewWriterSize(c, 512), o: o}
	cl.deadline()
	if _, err := cl.resp(); err != nil {
		c.Close()
		return nil, fmt.Errorf("greeting: %w", err)
	}
	if o.tlsMode == "stls" {
		if _, err := cl.cmd("STLS"); err != nil {
			c.Close()
			return nil, fmt.Errorf("STLS: %w", err)
		}
		tc := tls.Client(c, tlsConfig())
		if err := tc.Handshake(); err != nil {
			c.Close()
			return nil, fmt.Errorf("TLS handshake: %w", err)
		}
		cl.c = tc
		cl.r = bufio.NewReaderSize(tc, rbuf)
		cl.w = bufio.NewWriterSize(tc, 512)
	}
	return cl, nil
}

func (cl *client) deadline() { _ = cl.c.SetDeadline(time.Now().Add(cl.o.timeout)) }

// line reads one line, however long.
func (cl *client) line() ([]byte, error) {
	l, err := cl.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		acc := append([]byte(nil), l...)
		for errors.Is(err, bufio.ErrBufferFull) {
			l, err = cl.r.ReadSlice('\n')
			acc = append(acc, l...)
		}
		return acc, err
	}
	return l, err
}

// resp reads a status line; -ERR is an error.
func (cl *client) resp() (string, error) {
	l, err := cl.line()
	if err != nil {
		return "", err
	}
	s := strings.TrimRight(string(l), "\r\n")
	if strings.HasPrefix(s, "+OK") {
		return s, nil
	}
	return s, fmt.Errorf("%w: %s", errNeg, s)
}

func (cl *client) send(cmd string) error {
	cl.deadline()
	_, _ = cl.w.WriteString(cmd)
	_, _ = cl.w.WriteString("\r\n")
	return cl.w.Flush()
}

func (cl *client) cmd(cmd string) (string, error) {
	if err := cl.send(cmd); err != nil {
		return "", err
	}
	return cl.resp()
}

// multi reads the body of a multi-line response up to its terminating
// ".CRLF" and returns its size as the user sees it: dot-unstuffed, with CRLF
// line ends. Every line is passed to each, if not nil, unstuffed and with
// its line end.
func (cl *client) multi(each func([]byte)) (int64, error) {
	if each == nil {
		return cl.skip()
	}
	var n int64
	for {
		l, err := cl.line()
		if err != nil {
			return n, err
		}
		if l[0] == '.' {
			if len(l) == 3 && l[1] == '\r' || len(l) == 2 && l[1] == '\n' {
				return n, nil
			}
			l = l[1:]
		}
		n += int64(len(l))
		if l[len(l)-1] == '\n' && (len(l) < 2 || l[len(l)-2] != '\r') {
			n++ // a bare LF from a lax server counts as CRLF
		}
		if each != nil {
			each(l)
		}
	}
}

// skip is multi without a per-line callback, for RETR. Only a dot at the
// start of a line matters (a stuffed dot, or the terminator), and dots are
// far rarer than line ends in mail, so it looks for dots with
// bytes.IndexByte instead of going line by line: the client, on the same
// cores as the server and on the critical path of a lock-step loop, then
// costs little. The size is multi's for CRLF input: the octets minus one
// per stuffed dot, without the terminating ".CRLF".
func (cl *client) skip() (int64, error) {
	var n int64
	bol := true // the first buffered byte begins a line
	for {
		if cl.r.Buffered() < 3 {
			// Enough to tell ".\r\n" from a stuffed line; a valid
			// response always has 3 more octets at a line start.
			if _, err := cl.r.Peek(3); err != nil {
				return n, err
			}
		}
		b, _ := cl.r.Peek(cl.r.Buffered())
		done, used, stuffed := scanDots(b, bol)
		n += int64(used - stuffed)
		if done {
			_, _ = cl.r.Discard(used + 3)
			return n, nil
		}
		_, _ = cl.r.Discard(used)
		bol = used == 0 && bol || used > 0 && b[used-1] == '\n'
	}
}

// scanDots scans b, whose first byte begins a line if bol, for the
// terminating ".CRLF" of a multi-line reply. done reports that it starts
// at b[used]; otherwise used octets can be consumed (short of a dot at a
// line start whose next two octets are not there yet). stuffed counts the
// stuffed dots in b[:used].
func scanDots(b []byte, bol bool) (done bool, used, stuffed int) {
	for i := 0; ; {
		j := bytes.IndexByte(b[i:], '.')
		if j < 0 {
			return false, len(b), stuffed
		}
		k := i + j
		i = k + 1
		if k == 0 && !bol || k > 0 && b[k-1] != '\n' {
			continue
		}
		if len(b)-k < 3 {
			return false, k, stuffed
		}
		if b[k+1] == '\r' && b[k+2] == '\n' {
			return true, k, stuffed
		}
		stuffed++
	}
}

func (cl *client) login(user string) error {
	if cl.o.auth == "plain" {
		tok := base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + cl.o.pass))
		_, err := cl.cmd("AUTH PLAIN " + tok)
		return err
	}
	if _, err := cl.cmd("USER " + user); err != nil {
		return err
	}
	_, err := cl.cmd("PASS " + cl.o.pass)
	return err
}

func (cl *client) quit() error {
	_, err := cl.cmd("QUIT")
	cl.c.Close()
	return err
}

// stat returns the message count and octets of STAT.
func (cl *client) stat() (int, int64, error) {
	s, err := cl.cmd("STAT")
	if err != nil {
		return 0, 0, err
	}
	f := strings.Fields(s)
	if len(f) < 3 {
		return 0, 0, fmt.Errorf("bad STAT reply %q", s)
	}
	n, err1 := strconv.Atoi(f[1])
	size, err2 := strconv.ParseInt(f[2], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("bad STAT reply %q", s)
	}
	return n, size, nil
}

// listing sends a multi-line command (LIST, UIDL) and returns its lines.
func (cl *client) listing(cmd string) (int, error) {
	if _, err := cl.cmd(cmd); err != nil {
		return 0, err
	}
	lines := 0
	_, err := cl.multi(func([]byte) { lines++ })
	return lines, err
}

// ---------------------------------------------------------------- helpers

// parseUsers expands "user1-user200,bulk" into the names.
func parseUsers(spec string) []string {
	var out []string
	for part := range strings.SplitSeq(spec, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if a, b, ok := strings.Cut(part, "-"); ok {
			pa, na := splitNum(a)
			pb, nb := splitNum(b)
			if pa == pb && na >= 0 && nb >= na {
				for i := na; i <= nb; i++ {
					out = append(out, pa+strconv.Itoa(i))
				}
				continue
			}
		}
		out = append(out, part)
	}
	return out
}

func splitNum(s string) (string, int) {
	i := len(s)
	for i > 0 && s[i-1] >= '0' && s[i-1] <= '9' {
		i--
	}
	if i == len(s) {
		return s, -1
	}
	n, _ := strconv.Atoi(s[i:])
	return s[:i], n
}

// pct returns the p-th quantile (0..1) of sorted durations, nearest rank.
func pct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	i := int(float64(len(d)-1)*p + 0.5)
	return d[i]
}

func sortDurations(d []time.Duration) { slices.Sort(d) }

func ms(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/1e6) }
