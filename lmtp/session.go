package lmtp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/popbox/popbox/store"
)

// reply makes the SMTP reply go-smtp writes for an error (or, with a 2xx
// code, a success) returned by a session method or given to SetStatus.
func reply(code, class, subject, detail int, text string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: smtp.EnhancedCode{class, subject, detail}, Message: text}
}

// session is one connection's transaction state. go-smtp calls its methods
// from the connection's goroutine, except LMTPData, which runs in a
// goroutine of its own (for BDAT, concurrently with the connection reading
// chunks and possibly a RSET); mu guards what both see.
type session struct {
	srv  *Server
	conn *conn // nil only for a connection Serve did not accept
	log  *slog.Logger

	mu    sync.Mutex
	inTxn bool
	from  string
	rcpts []recipient
}

// recipient is an accepted RCPT: the address as the client gave it and
// the user it resolved to.
type recipient struct{ addr, user string }

func (s *Server) newSession(c *smtp.Conn) (smtp.Session, error) {
	ss := &session{srv: s}
	attrs := []any{}
	if tc, ok := c.Conn().(*conn); ok {
		ss.conn = tc
		attrs = append(attrs, "session", tc.id)
	}
	if r := remoteString(c.Conn()); r != "" && r != "@" {
		attrs = append(attrs, "remote", r)
	}
	attrs = append(attrs, "lhlo", c.Hostname())
	ss.log = s.log.With(attrs...)
	return ss, nil
}

// endTxn forgets the transaction.
func (ss *session) endTxn() {
	ss.mu.Lock()
	ss.inTxn, ss.from, ss.rcpts = false, "", nil
	ss.mu.Unlock()
	if ss.conn != nil {
		ss.conn.setTxn(false)
	}
}

// Reset implements smtp.Session: RSET, a new LHLO, and the end of DATA.
func (ss *session) Reset() { ss.endTxn() }

// Logout implements smtp.Session.
func (ss *session) Logout() error {
	ss.endTxn()
	return nil
}

// Mail implements smtp.Session.
func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	if ss.srv.draining() {
		return reply(421, 4, 3, 2, "Service shutting down, try again later")
	}
	// go-smtp does not check this itself. It keeps the recipients of the
	// first MAIL, so a nested one must not start a transaction of its own.
	ss.mu.Lock()
	nested := ss.inTxn
	ss.mu.Unlock()
	if nested {
		return reply(503, 5, 5, 1, "Nested MAIL command") // RFC 5321 §4.1.4
	}
	if err := checkAddress(from); err != nil {
		ss.log.Info("sender refused", "from", from, "err", err)
		return reply(553, 5, 1, 7, "Bad sender address syntax")
	}
	ss.mu.Lock()
	ss.inTxn, ss.from = true, from
	ss.mu.Unlock()
	if ss.conn != nil {
		ss.conn.setTxn(true)
	}
	return nil
}

// Rcpt implements smtp.Session. Unknown recipients are refused here, not
// after DATA, so the MTA bounces them without sending the message (and
// RFC 2033 §4.2 wants one DATA reply per accepted RCPT only).
func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if err := checkAddress(to); err != nil {
		ss.log.Info("recipient refused", "rcpt", to, "err", err)
		return reply(553, 5, 1, 3, "Bad recipient address syntax")
	}
	ctx, cancel := context.WithTimeout(ss.srv.ctx, ss.srv.lim.deliverTimeout)
	defer cancel()
	user, err := ss.srv.Users.ResolveRecipient(ctx, to)
	if err == nil && user == "" {
		err = errors.New("resolver returned an empty user name")
	}
	switch {
	case errors.Is(err, ErrUnknownRecipient):
		ss.log.Info("recipient refused", "rcpt", to, "err", err)
		return reply(550, 5, 1, 1, "No such user here")
	case errors.Is(err, ErrBadAddress):
		ss.log.Info("recipient refused", "rcpt", to, "err", err)
		return reply(553, 5, 1, 3, "Bad recipient address syntax")
	case err != nil:
		// The user database is down or slow: the MTA must retry, not
		// bounce, as `popbox deliver` exits EX_TEMPFAIL.
		ss.log.Warn("recipient lookup failed", "rcpt", to, "err", err)
		return reply(451, 4, 3, 0, "Temporary failure looking up the recipient, try again later")
	}
	ss.mu.Lock()
	ss.rcpts = append(ss.rcpts, recipient{addr: to, user: user})
	ss.mu.Unlock()
	return nil
}

// Data implements smtp.Session. In LMTP mode go-smtp calls LMTPData
// instead, so this is never reached; it refuses rather than guess.
func (ss *session) Data(io.Reader) error {
	return reply(451, 4, 3, 0, "Internal error: DATA without per-recipient status")
}

// LMTPData implements smtp.LMTPSession for DATA and BDAT alike. The message
// is read to its end into a spool before anything is delivered, so a
// message cut short or too big reaches no mailbox. Then it is delivered
// to each recipient in turn, and each status is set as soon as that
// recipient's Deliver returns; go-smtp writes the replies in RCPT order
// (RFC 2033 §4.2, and §4.3 for BDAT LAST), each one as soon as it and
// those before it are known.
func (ss *session) LMTPData(r io.Reader, status smtp.StatusCollector) error {
	ss.mu.Lock()
	from, rcpts := ss.from, slices.Clone(ss.rcpts)
	ss.mu.Unlock()

	sp := &spool{dir: ss.srv.SpoolDir, memMax: ss.srv.lim.spoolMemory}
	defer sp.Close()
	received, err := receive(r, sp)
	if err != nil {
		rep, level := ss.srv.dataError(err)
		ss.log.Log(context.Background(), level, "message refused",
			"from", from, "rcpts", len(rcpts), "received", received,
			"result", replyString(rep), "err", err)
		for range rcpts {
			ss.srv.delivered(failureResult(rep.Code))
		}
		return rep
	}

	// The same recipient given twice gets one copy and the same reply
	// twice; two addresses of one user get a copy each, since their
	// Delivered-To lines differ.
	done := make(map[recipient]error, len(rcpts))
	for _, rc := range rcpts {
		res, ok := done[rc]
		if !ok {
			res = ss.deliver(from, rc, sp, received)
			done[rc] = res
		}
		status.SetStatus(rc.addr, res)
	}
	// go-smtp uses this for any recipient given no status above; there is
	// none, but if go-smtp's list and ours ever differ, such a recipient
	// must not be told 250.
	return reply(451, 4, 3, 0, "Internal error: recipient not delivered, try again later")
}

// deliver stores one copy and returns the recipient's status. received is
// the message's size as it came in, for the log; a delivered one is logged
// with its wire size as the store recorded it (what POP3 LIST shows).
func (ss *session) deliver(from string, rc recipient, sp *spool, received int64) error {
	srv := ss.srv
	ctx, cancel := context.WithTimeout(srv.ctx, srv.lim.deliverTimeout)
	defer cancel()
	msg := sp.Reader()
	if !srv.NoDeliveryHeaders {
		msg = io.MultiReader(strings.NewReader(deliveryHeaders(from, rc.addr)), msg)
	}
	start := time.Now()
	info, err := srv.Store.Deliver(ctx, rc.user, msg)
	attrs := []any{"user", rc.user, "rcpt", rc.addr, "from", from, "received", received}
	var rep *smtp.SMTPError
	switch {
	case err == nil:
		rep = reply(250, 2, 0, 0, "Saved, UIDL "+info.UIDL)
		ss.log.Info("delivered", append(attrs, "size", info.Size, "uidl", info.UIDL,
			"result", replyString(rep), "took", time.Since(start).Round(time.Millisecond))...)
		srv.delivered(Delivered)
		return rep
	case errors.Is(err, store.ErrQuota) && srv.QuotaPermanent:
		rep = reply(552, 5, 2, 2, "Mailbox full")
	case errors.Is(err, store.ErrQuota):
		// As `popbox deliver`: temporary, the owner may make room.
		rep = reply(452, 4, 2, 2, "Mailbox full, try again later")
	case errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT):
		// RFC 3463 4.3.1 "mail system full": the disk, not the mailbox.
		rep = reply(452, 4, 3, 1, "Mail system full, try again later")
	default:
		// Anything else (including store.ErrInvalidUser, which means the
		// resolver and the store disagree) is the server's problem: the
		// MTA keeps the message and retries.
		rep = reply(451, 4, 3, 0, "Temporary failure storing the message, try again later")
	}
	level := slog.LevelWarn
	if errors.Is(err, store.ErrQuota) {
		level = slog.LevelInfo
		srv.delivered(DeliveryOverQuota)
	} else {
		srv.delivered(failureResult(rep.Code))
	}
	ss.log.Log(context.Background(), level, "delivery failed",
		append(attrs, "result", replyString(rep), "err", err)...)
	return rep
}

// deliveryHeaders are put in front of each copy: Return-Path (RFC 5321
// §4.4; "<>" for a null sender) and Delivered-To, which Postfix and
// Dovecot add and which lets a mail loop through forwarding be detected.
// LF line ends, as the spooled message (see receive). Both addresses passed
// checkAddress, so neither can break the header.
func deliveryHeaders(from, rcpt string) string {
	return "Return-Path: <" + from + ">\nDelivered-To: " + rcpt + "\n"
}

// receive reads the message to its end into sp with CRLF turned into LF,
// the Maildir convention and what `popbox deliver` is given by an MTA;
// the store computes the wire size (CRLF again) as it writes. go-smtp has
// already undone the dot-stuffing. A lone CR or LF is kept as it is.
//
// If the spool fails, the rest of the message is still read, so the
// session stays in step with the client. It returns the number of octets
// received.
func receive(r io.Reader, sp *spool) (int64, error) {
	cr := &countingReader{r: r}
	lw := &lfWriter{w: sp}
	_, err := io.Copy(lw, cr)
	if err == nil {
		err = lw.Flush()
	}
	if err != nil && cr.err == nil {
		if _, derr := io.Copy(io.Discard, cr); derr != nil {
			err = errors.Join(err, derr)
		}
	}
	return cr.n, err
}

type countingReader struct {
	r   io.Reader
	n   int64
	err error // the first read error other than io.EOF
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if err != nil && err != io.EOF && c.err == nil {
		c.err = err
	}
	return n, err
}

// dataError maps a failure to receive a message to the reply every
// recipient gets, and the level to log it at.
func (s *Server) dataError(err error) (*smtp.SMTPError, slog.Level) {
	var ne net.Error
	switch {
	case errors.Is(err, smtp.ErrDataTooLarge):
		return reply(552, 5, 3, 4, fmt.Sprintf("Message too big, the limit is %d octets", s.lim.maxMessage)), slog.LevelInfo
	case errors.Is(err, smtp.ErrTooLongLine):
		// The connection cannot continue: go-smtp closes it after these
		// replies.
		return reply(552, 5, 3, 4, fmt.Sprintf("Line too long, the limit is %d octets", s.smtp.MaxLineLength)), slog.LevelInfo
	case errors.As(err, &ne) && ne.Timeout():
		return reply(451, 4, 4, 2, "Timeout reading the message"), slog.LevelInfo
	case errors.Is(err, smtp.ErrDataReset), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		// The client went away or sent RSET in the middle of BDAT; nobody
		// reads this reply.
		return reply(451, 4, 4, 0, "Message transfer aborted"), slog.LevelInfo
	default:
		return reply(451, 4, 3, 0, "Temporary failure receiving the message, try again later"), slog.LevelWarn
	}
}

func replyString(r *smtp.SMTPError) string {
	e := r.EnhancedCode
	return fmt.Sprintf("%d %d.%d.%d", r.Code, e[0], e[1], e[2])
}
