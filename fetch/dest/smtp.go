package dest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// Per-step time limits of RFC 5321 §4.5.3.2, used for LMTP too (RFC 2033
// sets none of its own). go-smtp applies commandTimeout to the greeting and
// to every command, submissionTimeout to the reply after the final dot;
// dataBlockTimeout is ours, per write of message data (§4.5.3.2.5), because
// go-smtp sets no deadline while DATA is being written. All are capped by
// ctx's deadline.
const (
	commandTimeout    = 5 * time.Minute  // §4.5.3.2.1-4: greeting, MAIL, RCPT
	dataBlockTimeout  = 3 * time.Minute  // §4.5.3.2.5
	submissionTimeout = 10 * time.Minute // §4.5.3.2.6: "DATA Termination"
)

// smtpDest hands each message to an LMTP or SMTP server over a connection
// of its own. Not keeping a connection between messages means no idle
// session times out while the next message downloads, and a failure
// always belongs to one message.
type smtpDest struct {
	lmtp    bool
	network string
	addr    string
	opts    Options

	mu     sync.Mutex
	closed bool
}

func (d *smtpDest) proto() string {
	if d.lmtp {
		return "lmtp"
	}
	return "smtp"
}

// Deliver: LHLO or EHLO, MAIL FROM, RCPT TO Recipient, DATA (go-smtp
// dot-stuffs, RFC 5321 §4.5.2; the message keeps its CRLF line ends), and
// success only on 250 for the recipient: in LMTP the per-recipient reply
// after the final dot (RFC 2033 §4.2), in SMTP the reply to DATA's end.
// 4xx replies and network failures are ErrTemporary, 5xx permanent.
//
// A connection lost after the final dot but before the reply is reported as
// temporary though the server may have taken the message: SMTP cannot tell
// (RFC 1047), and a duplicate beats a loss.
func (d *smtpDest) Deliver(ctx context.Context, r io.Reader, m Message) error {
	if err := checkKey(m.Key); err != nil {
		return err
	}
	d.mu.Lock()
	closed := d.closed
	d.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if m.Recipient == "" {
		return fmt.Errorf("dest: %s: message %s has no recipient", d.proto(), m.Key)
	}
	dialer := net.Dialer{Timeout: d.opts.DialTimeout}
	raw, err := dialer.DialContext(ctx, d.network, d.addr)
	if err != nil {
		return fmt.Errorf("%w: dest: %s: %w", ErrTemporary, d.proto(), err)
	}
	conn := newDeadlineConn(ctx, raw)
	defer conn.Close()
	stop := context.AfterFunc(ctx, conn.abort)
	defer stop()

	var c *smtp.Client
	if d.lmtp {
		c = smtp.NewClientLMTP(conn)
	} else {
		c = smtp.NewClient(conn)
	}
	c.CommandTimeout = commandTimeout
	c.SubmissionTimeout = submissionTimeout
	defer c.Close()

	if err := d.transaction(c, conn, r, m); err != nil {
		// The connection's deadline is ctx's, so its timeout may fire a hair
		// before ctx reports done: name the real cause either way.
		cause := context.Cause(ctx)
		if cause == nil && conn.pastHard() {
			cause = context.DeadlineExceeded
		}
		if cause != nil {
			return fmt.Errorf("%w: dest: %s %s: %w (%w)", ErrTemporary, d.proto(), d.addr, cause, err)
		}
		return d.classify(err)
	}
	// The message is the server's now; a failed QUIT changes nothing.
	_ = c.Quit()
	return nil
}

func (d *smtpDest) transaction(c *smtp.Client, conn *deadlineConn, r io.Reader, m Message) error {
	if err := c.Hello(d.opts.Hostname); err != nil {
		return fmt.Errorf("greeting: %w", err)
	}
	from := m.Sender
	if from == "" {
		from = d.opts.LMTPFrom
	}
	var mopts *smtp.MailOptions
	if !isASCII(from) || !isASCII(m.Recipient) {
		mopts = &smtp.MailOptions{UTF8: true} // RFC 6531
	}
	if err := c.Mail(from, mopts); err != nil {
		return fmt.Errorf("MAIL FROM:<%s>: %w", from, err)
	}
	if err := c.Rcpt(m.Recipient, nil); err != nil {
		return fmt.Errorf("RCPT TO:<%s>: %w", m.Recipient, err)
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	conn.dataPhase(true)
	lr := &limitReader{r: r, max: d.opts.MaxMessageSize}
	if _, err := io.Copy(w, lr); err != nil {
		// Never send the final dot for a message we did not read whole: the
		// server would deliver it. Closing the connection aborts DATA.
		return fmt.Errorf("sending message: %w", err)
	}
	conn.dataPhase(false)
	if d.lmtp {
		resp, err := w.CloseWithLMTPResponse()
		if err != nil {
			return fmt.Errorf("end of DATA: %w", err)
		}
		if _, ok := resp[m.Recipient]; !ok {
			return fmt.Errorf("end of DATA: no reply for <%s>", m.Recipient)
		}
		return nil
	}
	if _, err := w.CloseWithResponse(); err != nil {
		return fmt.Errorf("end of DATA: %w", err)
	}
	return nil
}

// classify wraps err with ErrTemporary unless the server said 5xx or the
// message itself is at fault.
func (d *smtpDest) classify(err error) error {
	wrapped := fmt.Errorf("dest: %s %s: %w", d.proto(), d.addr, err)
	var lmtpErr smtp.LMTPDataError
	if errors.As(err, &lmtpErr) {
		for _, e := range lmtpErr {
			if e.Code >= 500 {
				return wrapped
			}
		}
		return fmt.Errorf("%w: %w", ErrTemporary, wrapped)
	}
	var smtpErr *smtp.SMTPError
	if errors.As(err, &smtpErr) {
		if smtpErr.Code >= 400 && smtpErr.Code < 500 {
			return fmt.Errorf("%w: %w", ErrTemporary, wrapped)
		}
		return wrapped
	}
	if errors.Is(err, ErrTooLarge) {
		return wrapped
	}
	var netErr net.Error
	if errors.As(err, &netErr) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("%w: %w", ErrTemporary, wrapped)
	}
	// Anything else (a reader failing mid-message, a bad address) is not
	// cured by waiting.
	return wrapped
}

func (d *smtpDest) Has(ctx context.Context, key string) (bool, error) {
	return false, ErrUnknowable
}

func (d *smtpDest) Close() error {
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	return nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// deadlineConn keeps a deadline on every operation of the connection.
// go-smtp sets one around each command but clears it (SetDeadline of the
// zero time) between commands and while DATA is written; here a cleared
// deadline becomes dataBlockTimeout from each write, and no deadline is
// ever later than ctx's. Once aborted (ctx done) every deadline is in the
// past, so a blocked read or write returns at once and stays failed.
type deadlineConn struct {
	net.Conn
	hard time.Time // ctx's deadline, zero if none

	mu      sync.Mutex
	aborted bool
	inData  bool
}

func newDeadlineConn(ctx context.Context, c net.Conn) *deadlineConn {
	hard, _ := ctx.Deadline()
	d := &deadlineConn{Conn: c, hard: hard}
	d.Conn.SetDeadline(d.clamp(time.Now().Add(commandTimeout)))
	return d
}

// clamp returns t, made no later than the hard deadline.
func (d *deadlineConn) clamp(t time.Time) time.Time {
	if !d.hard.IsZero() && (t.IsZero() || t.After(d.hard)) {
		return d.hard
	}
	return t
}

// pastHard reports whether ctx's deadline has passed.
func (d *deadlineConn) pastHard() bool {
	return !d.hard.IsZero() && !time.Now().Before(d.hard)
}

func (d *deadlineConn) abort() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.aborted = true
	d.Conn.SetDeadline(time.Unix(1, 0))
}

func (d *deadlineConn) dataPhase(on bool) {
	d.mu.Lock()
	d.inData = on
	d.mu.Unlock()
}

func (d *deadlineConn) SetDeadline(t time.Time) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.aborted {
		return nil
	}
	if t.IsZero() {
		// Between commands: still bounded.
		t = time.Now().Add(commandTimeout)
	}
	return d.Conn.SetDeadline(d.clamp(t))
}

func (d *deadlineConn) Write(p []byte) (int, error) {
	d.mu.Lock()
	if !d.aborted && d.inData {
		d.Conn.SetWriteDeadline(d.clamp(time.Now().Add(dataBlockTimeout)))
	}
	d.mu.Unlock()
	return d.Conn.Write(p)
}
