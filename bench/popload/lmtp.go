package main

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// lmtpConn is one LMTP client connection (RFC 2033).
type lmtpConn struct {
	c net.Conn
	r *bufio.Reader
	w *bufio.Writer
	o *opts
}

func dialLMTP(o *opts) (*lmtpConn, error) {
	network, addr := "tcp", o.addr
	if p, ok := strings.CutPrefix(o.addr, "unix:"); ok {
		network, addr = "unix", p
	}
	c, err := net.DialTimeout(network, addr, o.timeout)
	if err != nil {
		return nil, err
	}
	l := &lmtpConn{c: c, r: bufio.NewReader(c), w: bufio.NewWriterSize(c, 16<<10), o: o}
	_ = c.SetDeadline(time.Now().Add(o.timeout))
	if err := l.reply(220); err != nil {
		c.Close()
		return nil, fmt.Errorf("greeting: %w", err)
	}
	_, _ = l.w.WriteString("LHLO popload.example\r\n")
	if err := l.w.Flush(); err != nil {
		c.Close()
		return nil, err
	}
	if err := l.reply(250); err != nil {
		c.Close()
		return nil, fmt.Errorf("LHLO: %w", err)
	}
	return l, nil
}

// reply reads one (possibly multi-line) reply and checks its code.
func (l *lmtpConn) reply(want int) error {
	for {
		s, err := l.r.ReadString('\n')
		if err != nil {
			return err
		}
		if len(s) < 4 {
			return fmt.Errorf("short reply %q", s)
		}
		if s[3] == '-' {
			continue
		}
		var code int
		if _, err := fmt.Sscanf(s[:3], "%d", &code); err != nil || code != want {
			return fmt.Errorf("expected %d, got %q", want, strings.TrimSpace(s))
		}
		return nil
	}
}

// deliver sends one message to rcpts, pipelined (both servers offer
// PIPELINING), and reads a reply for MAIL, each RCPT, DATA, and one per
// recipient after the data.
func (l *lmtpConn) deliver(rcpts []string, body []byte) error {
	_ = l.c.SetDeadline(time.Now().Add(l.o.timeout))
	_, _ = l.w.WriteString("MAIL FROM:<bench@popload.example>\r\n")
	for _, r := range rcpts {
		_, _ = l.w.WriteString("RCPT TO:<" + r + ">\r\n")
	}
	_, _ = l.w.WriteString("DATA\r\n")
	if err := l.w.Flush(); err != nil {
		return err
	}
	if err := l.reply(250); err != nil {
		return fmt.Errorf("MAIL: %w", err)
	}
	for _, r := range rcpts {
		if err := l.reply(250); err != nil {
			return fmt.Errorf("RCPT %s: %w", r, err)
		}
	}
	if err := l.reply(354); err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	_, _ = l.w.Write(body)
	_, _ = l.w.WriteString(".\r\n")
	if err := l.w.Flush(); err != nil {
		return err
	}
	for _, r := range rcpts {
		if err := l.reply(250); err != nil {
			return fmt.Errorf("delivery to %s: %w", r, err)
		}
	}
	return nil
}

// lmtpMessage is a dot-stuffed CRLF message of about size octets.
func lmtpMessage(size int, seed uint64) []byte {
	raw := genMessage(rand.New(rand.NewPCG(seed, 99)), int(seed), size, "bench")
	var b bytes.Buffer
	for line := range bytes.SplitSeq(bytes.TrimSuffix(raw, []byte("\n")), []byte("\n")) {
		if len(line) > 0 && line[0] == '.' {
			b.WriteByte('.')
		}
		b.Write(line)
		b.WriteString("\r\n")
	}
	return b.Bytes()
}

// modeLMTP: -c connections deliver messages of -size octets for -duration;
// each message goes to -rcpts recipients taken in turn from -users (so with
// 1 recipient and 100 users, consecutive messages go to different
// mailboxes). A delivery is one copy in one mailbox.
func modeLMTP(o *opts) error {
	users := parseUsers(o.users)
	if o.rcpts > len(users) {
		return fmt.Errorf("-rcpts %d > %d users", o.rcpts, len(users))
	}
	body := lmtpMessage(o.size, 1)
	var next atomic.Int64
	pick := func() []string {
		k := int(next.Add(int64(o.rcpts))) - o.rcpts
		out := make([]string, o.rcpts)
		for i := range out {
			out[i] = users[(k+i)%len(users)] + "@" + o.domain
		}
		return out
	}
	conns := make([]*lmtpConn, o.conc)
	for i := range conns {
		l, err := dialLMTP(o)
		if err != nil {
			for _, c := range conns[:i] {
				c.c.Close()
			}
			return err
		}
		conns[i] = l
		if o.warmup {
			if err := l.deliver(pick(), body); err != nil {
				return fmt.Errorf("warm-up delivery: %w", err)
			}
		}
	}
	res := &loadResult{}
	cm := markCPU(o)
	start := time.Now()
	deadline := start.Add(o.duration)
	var wg sync.WaitGroup
	for _, l := range conns {
		wg.Go(func() {
			var lat []time.Duration
			for time.Now().Before(deadline) {
				t := time.Now()
				if err := l.deliver(pick(), body); err != nil {
					res.addErr(err)
					return
				}
				lat = append(lat, time.Since(t))
			}
			res.mu.Lock()
			res.lat = append(res.lat, lat...)
			res.mu.Unlock()
		})
	}
	wg.Wait()
	el := time.Since(start).Seconds()
	sortDurations(res.lat)
	msgs := len(res.lat)
	deliveries := msgs * o.rcpts
	for _, l := range conns {
		_ = l.c.SetDeadline(time.Now().Add(o.timeout))
		_, _ = l.w.WriteString("QUIT\r\n")
		_ = l.w.Flush()
		_ = l.reply(221)
		l.c.Close()
	}
	result(o, "mode=lmtp conns=%d rcpts=%d mailboxes=%d size=%d secs=%.2f messages=%d deliveries=%d deliveries_per_s=%.1f p50_ms=%s p99_ms=%s errors=%d %s",
		o.conc, o.rcpts, len(users), len(body), el, msgs, deliveries, float64(deliveries)/el,
		ms(pct(res.lat, .5)), ms(pct(res.lat, .99)), res.errs, cpuSince(o, cm, deliveries, "delivery"))
	res.printErrs()
	if res.errs > 0 {
		fmt.Fprintln(os.Stderr, "popload lmtp: some deliveries failed")
	}
	return nil
}
