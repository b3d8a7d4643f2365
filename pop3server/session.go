package pop3server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/popbox/popbox/pop3"
	popsasl "github.com/popbox/popbox/sasl"
	"github.com/popbox/popbox/store"
)

type state int

// RFC 1939 §3: a session passes through AUTHORIZATION, TRANSACTION and, on
// QUIT, UPDATE. UPDATE is not a state a command can arrive in, so it has no
// value here: it is the Commit call in cmdQuit.
const (
	stateAuthorization state = 1 << iota
	stateTransaction
)

const (
	readBufferSize  = 4096
	writeBufferSize = 64 * 1024
	// smallWriteBufferSize is a session's own write buffer: enough for
	// every one-line reply and CAPA, so that an idle session, logged in
	// or not, is cheap; big replies borrow a writeBufferSize one.
	smallWriteBufferSize = 1024
	copyBufferSize       = 64 * 1024
)

// errCloseSession ends a session after its last reply has been written.
var errCloseSession = errors.New("close session")

type session struct {
	srv         *Server
	log         *slog.Logger
	implicitTLS bool
	started     time.Time
	ip          netip.Addr // what penalties and per-address caps count
	preAuthRead int64      // octets read before login, for MaxPreAuthBytes
	// loopback: the client is on this host, for PlaintextLoopback; for a
	// relayed connection clientOnLoopback (proxy.go) decides.
	loopback bool
	// lim is the server's Limits when the session started: a reload
	// (SetLimits) applies to later sessions only.
	lim *Limits

	mu          sync.Mutex // guards conn against interrupt
	conn        net.Conn   // a *tls.Conn after STLS or with implicit TLS
	interrupted atomic.Bool
	loggedIn    atomic.Bool

	r   *bufio.Reader
	w   *bufio.Writer
	tls *tls.ConnectionState
	// endPoint is the tls-server-end-point channel binding (RFC 5929 §4)
	// of this connection's certificate, for SCRAM-SHA-256-PLUS: set when
	// the handshake picks the certificate, or from the session ticket of a
	// resumed session (tlsconn.go).
	endPoint atomic.Pointer[[]byte]

	state   state
	user    string // from USER, until PASS
	utf8    bool
	badCmds int
	// lastWords: the session is over and writes its last reply under a
	// short deadline of its own.
	lastWords bool

	authUser string
	drop     store.Maildrop
	msgs     []store.MessageInfo
	deleted  []bool
	// small is the session's own 1 KiB writer; while a large reply goes
	// out, s.w is instead big's writer, borrowed from the server's pool
	// (bigBuffers) and given back once the replies are flushed.
	small *bufio.Writer
	big   *bigBuffer
	// prepared is the reply to the next RETR made ready while the client
	// took in the last one, and prefetchNext the message (index+1) to
	// prepare once the session next waits (prefetch.go).
	prepared     *preparedReply
	prefetchNext int

	// For the session-end log line.
	retrieved      int
	bytesSent      int64
	deletedApplied int
	ending         string

	// For Events.Command: the command being run ("" until the line is
	// known to name one) and whether its last reply was +OK.
	cmdName string
	lastOK  bool
}

func newSession(srv *Server, c net.Conn, implicitTLS bool) *session {
	s := &session{
		srv:         srv,
		conn:        c,
		implicitTLS: implicitTLS,
		started:     time.Now(),
		state:       stateAuthorization,
		ip:          remoteIP(c.RemoteAddr()),
		loopback:    clientOnLoopback(c),
		lim:         srv.limits(),
	}
	s.log = srv.Logger.With("remote", c.RemoteAddr().String())
	if proxy := proxiedBy(c); proxy != nil {
		// For following a session into the load balancer's logs.
		s.log = s.log.With("proxy", proxy.String())
	}
	return s
}

// deadlineWriter sets a fresh write deadline before each write so that a
// client that stops reading is dropped after IdleTimeout, even mid-RETR.
type deadlineWriter struct{ s *session }

func (d deadlineWriter) Write(p []byte) (int, error) {
	c := d.s.currentConn()
	d.s.setDeadline(c.SetWriteDeadline)
	return c.Write(p)
}

func (s *session) currentConn() net.Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conn
}

// errPreAuthBytes ends a session that sent more than MaxPreAuthBytes before
// logging in.
var errPreAuthBytes = errors.New("too much data before login")

// connReader is what the session's bufio.Reader reads from: the current
// connection (TLS after STLS), counting what arrives before login against
// MaxPreAuthBytes. Reading stops exactly at the limit, so a flood costs no
// more than that.
type connReader struct{ s *session }

func (r connReader) Read(p []byte) (int, error) {
	s := r.s
	if s.loggedIn.Load() {
		return s.currentConn().Read(p)
	}
	left := s.lim.MaxPreAuthBytes - s.preAuthRead
	if left <= 0 {
		return 0, errPreAuthBytes
	}
	if int64(len(p)) > left {
		p = p[:left]
	}
	n, err := s.currentConn().Read(p)
	s.preAuthRead += int64(n)
	return n, err
}

// setDeadline arms a read or write deadline unless the session has been
// interrupted, in which case it keeps the deadline in the past. Before login
// the deadline is also no later than AuthTimeout after connect.
func (s *session) setDeadline(set func(time.Time) error) {
	s.armDeadline(set, s.deadline())
}

// deadline is the deadline of the next read or write.
func (s *session) deadline() time.Time {
	d := time.Now().Add(s.lim.IdleTimeout)
	if a := s.authDeadline(); !s.loggedIn.Load() && a.Before(d) {
		d = a
	}
	if s.lastWords {
		d = time.Now().Add(time.Second)
	}
	return d
}

// armDeadline sets deadline d, or one in the past once the session has been
// interrupted.
func (s *session) armDeadline(set func(time.Time) error, d time.Time) {
	set(d)
	if s.interrupted.Load() {
		set(time.Now())
	}
}

func (s *session) authDeadline() time.Time {
	return s.started.Add(s.lim.AuthTimeout)
}

// interrupt makes the session's pending and future I/O fail at once.
func (s *session) interrupt() {
	s.interrupted.Store(true)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.conn.SetDeadline(time.Now())
}

func (s *session) serve() {
	if ev := s.srv.Events; ev != nil {
		ev.ConnAccepted(listenerName(s.implicitTLS))
		ev.SessionStarted()
		defer ev.SessionEnded()
	}
	defer s.finish()
	if s.implicitTLS {
		// The TLS handshake counts against the time to log in.
		if err := s.handshake(min(s.lim.HandshakeTimeout, time.Until(s.authDeadline()))); err != nil {
			s.ending = "tls handshake failed"
			s.log.Debug("tls handshake failed", "err", err)
			return
		}
	}
	s.r = bufio.NewReaderSize(connReader{s}, max(readBufferSize, s.lim.MaxAuthLine))
	// Before login only short lines go out (CAPA is the longest reply), so
	// a small buffer keeps an idle unauthenticated connection cheap; the
	// large one comes with the login (openMaildrop).
	s.small = bufio.NewWriterSize(deadlineWriter{s}, smallWriteBufferSize)
	s.w = s.small
	if err := s.reply(true, "", s.srv.Hostname+" POP3 server ready"); err != nil {
		s.ending = "write error"
		return
	}
	for {
		// Before login an AUTH line may carry an initial response up to
		// MaxAuthLine. RFC 5034 §4 tells clients not to send one that makes
		// the command longer than 255 octets, but clients do (mpop with an
		// OAuth token), and the bytes count against MaxPreAuthBytes anyway.
		max := s.lim.MaxLine
		if !s.loggedIn.Load() {
			max = s.lim.MaxAuthLine
		}
		line, err := s.readLine(max)
		if err == nil && len(line)+len("\r\n") > s.lim.MaxLine && !isAuthCommand(line) {
			err = pop3.ErrLineTooLong
		}
		if err == nil && !s.loggedIn.Load() && !time.Now().Before(s.authDeadline()) {
			// Commands already buffered (pipelined) need no read, so the
			// read deadline alone would not stop them.
			err = os.ErrDeadlineExceeded
		}
		if errors.Is(err, pop3.ErrLineTooLong) {
			err = s.replyBad("line too long")
		} else if err == nil {
			err = s.dispatch(line)
		}
		if err == nil && s.badCmds >= s.lim.MaxBadCommands {
			s.reply(false, "", "too many errors, closing connection")
			s.w.Flush()
			s.ending = "too many errors"
			return
		}
		if err != nil && !s.loggedIn.Load() {
			if code, notice, ending := s.preAuthLimit(err); notice != "" {
				s.log.Info("session closed before login", "reason", ending, "remote_ip", s.ip.String())
				s.closingNotice(code, notice)
				s.ending = ending
				return
			}
		}
		if err != nil {
			if errors.Is(err, errCloseSession) {
				s.w.Flush()
				if s.ending == "" {
					s.ending = "quit"
				}
				return
			}
			s.ending = s.describeEnd(err)
			return
		}
	}
}

// isAuthCommand reports whether line is an AUTH command.
func isAuthCommand(line []byte) bool {
	line = bytes.TrimLeft(line, " ")
	return len(line) >= 5 && bytes.EqualFold(line[:5], []byte("AUTH "))
}

// preAuthLimit tells whether err comes from a limit on sessions that have
// not logged in, and if so gives the last words for the client and the
// ending for the log.
func (s *session) preAuthLimit(err error) (code, notice, ending string) {
	var ne net.Error
	switch {
	case errors.Is(err, errPreAuthBytes):
		return "", "too much data before login, closing connection", "pre-auth byte limit"
	case errors.As(err, &ne) && ne.Timeout() && !s.interrupted.Load() && !time.Now().Before(s.authDeadline()):
		// RFC 3206 §4 SYS/TEMP: the client may simply try again.
		return pop3.CodeSysTemp, "time limit for login reached, closing connection", "auth timeout"
	}
	return "", "", ""
}

// closingNotice writes the replies still buffered and a last -ERR line,
// under a short deadline of its own: the session's deadlines have run out,
// and a client that does not read must not keep the session alive.
func (s *session) closingNotice(code, text string) {
	s.lastWords = true
	s.reply(false, code, text)
	s.w.Flush()
}

func (s *session) describeEnd(err error) string {
	var ne net.Error
	switch {
	case s.interrupted.Load():
		return "shutdown"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		return "disconnected"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	default:
		return "error: " + err.Error()
	}
}

// finish releases the maildrop without applying deletions, unless QUIT has
// already committed it, and logs the one line per session.
func (s *session) finish() {
	s.dropPrepared()
	if s.drop != nil {
		if err := s.drop.Close(); err != nil {
			s.log.Error("closing maildrop", "user", s.authUser, "err", err)
		}
	}
	if tc, ok := s.conn.(*tls.Conn); ok && s.interrupted.Load() {
		// tls.Conn.Close sends close_notify under its own 5 s write
		// deadline; Close and Shutdown must not wait for a client that has
		// stopped reading.
		tc.NetConn().Close()
	} else {
		s.conn.Close()
	}
	tlsName := "none"
	if s.tls != nil {
		tlsName = tls.VersionName(s.tls.Version)
	}
	s.log.Info("session end", "user", s.authUser, "tls", tlsName,
		"retrieved", s.retrieved, "bytes", s.bytesSent, "deleted", s.deletedApplied,
		"ending", s.ending, "duration", time.Since(s.started).Round(time.Millisecond))
}

func (s *session) handshake(timeout time.Duration) error {
	// The wrapper lets the server's GetConfigForClient find this session.
	tc := tls.Server(sessionConn{s.conn, s}, s.srv.tlsBase)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		return err
	}
	st := tc.ConnectionState()
	s.mu.Lock()
	s.conn = tc
	s.mu.Unlock()
	s.tls = &st
	if s.interrupted.Load() {
		tc.SetDeadline(time.Now())
	}
	return nil
}

// channelBinding returns this connection's channel binding data of a type
// for SCRAM-SHA-256-PLUS.
func (s *session) channelBinding(typ string) ([]byte, error) {
	if s.tls == nil {
		return nil, errors.New("no TLS")
	}
	switch typ {
	case popsasl.TLSExporter:
		// RFC 9266 §2; crypto/tls refuses TLS 1.2 without the extended
		// master secret, where the exporter would not be unique.
		return s.tls.ExportKeyingMaterial("EXPORTER-Channel-Binding", nil, 32)
	case popsasl.TLSServerEndPoint:
		h := s.endPoint.Load()
		if h == nil {
			return nil, errors.New("no tls-server-end-point binding for this certificate")
		}
		return *h, nil
	}
	return nil, fmt.Errorf("unsupported channel binding type %q", typ)
}

// bigBuffer is what a large reply needs: a 64 KiB writer (few, large
// writes to the connection) and a 64 KiB copy buffer. Sessions borrow one
// for a burst of large replies (a pipelined run of RETRs is one burst) and
// give it back when they next wait for the client, so that thousands of
// idle sessions do not hold 128 KiB each.
type bigBuffer struct {
	w    *bufio.Writer
	copy []byte
}

func newBigBuffer() any {
	return &bigBuffer{w: bufio.NewWriterSize(nil, writeBufferSize), copy: make([]byte, copyBufferSize)}
}

// borrowBig switches s.w to a large writer, keeping the order of what the
// small one holds.
func (s *session) borrowBig() {
	if s.big != nil {
		return
	}
	if s.small.Buffered() > 0 {
		// Rare (a pipelined small reply before this big one); one extra
		// write keeps the order.
		s.small.Flush()
	}
	s.big = s.srv.bigBuffers.Get().(*bigBuffer)
	s.big.w.Reset(deadlineWriter{s})
	s.w = s.big.w
}

// returnBig gives the large writer back; s.w must have been flushed.
func (s *session) returnBig() {
	if s.big == nil {
		return
	}
	s.big.w.Reset(nil)
	s.srv.bigBuffers.Put(s.big)
	s.big = nil
	s.w = s.small
}

// readLine flushes pending replies unless another pipelined command is
// already waiting, then reads one line under the idle deadline. Only a
// complete line counts: a client may wait for this reply before it finishes
// the line it has begun.
func (s *session) readLine(max int) ([]byte, error) {
	if b, _ := s.r.Peek(s.r.Buffered()); bytes.IndexByte(b, '\n') < 0 {
		if err := s.w.Flush(); err != nil {
			return nil, err
		}
		if s.prefetchNext > 0 {
			s.prefetch()
		}
		s.returnBig()
	}
	d := s.deadline()
	if err := s.awaitCommand(d); err != nil {
		return nil, err
	}
	// A line already buffered needs no read, so no deadline.
	if b, _ := s.r.Peek(s.r.Buffered()); bytes.IndexByte(b, '\n') < 0 {
		s.armDeadline(s.currentConn().SetReadDeadline, d)
	}
	return pop3.ReadLine(s.r, max)
}

// reply writes a one-line reply (RFC 1939 §3: "+OK" or "-ERR", optional
// text; RFC 2449 §8: an optional [CODE] after -ERR).
func (s *session) reply(ok bool, code, text string) error {
	s.lastOK = ok
	if ok {
		s.badCmds = 0
		s.w.WriteString("+OK")
	} else {
		s.badCmds++
		s.w.WriteString("-ERR")
		if code != "" {
			s.w.WriteString(" [")
			s.w.WriteString(code)
			s.w.WriteString("]")
		}
	}
	if text != "" {
		s.w.WriteByte(' ')
		s.w.WriteString(text)
	}
	_, err := s.w.WriteString("\r\n")
	return err
}

func (s *session) ok(format string, args ...any) error {
	return s.reply(true, "", fmt.Sprintf(format, args...))
}

// replyOKLine writes line, a +OK reply made elsewhere, with what follows
// it if it is the start of a multi-line reply.
func (s *session) replyOKLine(line []byte) error {
	s.lastOK, s.badCmds = true, 0
	_, err := s.w.Write(line)
	return err
}

func (s *session) replyBad(text string) error { return s.reply(false, "", text) }

type command struct {
	states state
	run    func(s *session, cmd pop3.Command, line []byte) error
}

// commands is the dispatch table: which states each command is valid in
// (RFC 1939 §4-§7, RFC 2449 §5, RFC 2595 §4, RFC 5034 §4, RFC 6856 §3).
var commands = map[string]command{
	"CAPA": {stateAuthorization | stateTransaction, cmdCapa},
	"USER": {stateAuthorization, cmdUser},
	"PASS": {stateAuthorization, cmdPass},
	"AUTH": {stateAuthorization, cmdAuth},
	"STLS": {stateAuthorization, cmdSTLS},
	"UTF8": {stateAuthorization, cmdUTF8},
	"QUIT": {stateAuthorization | stateTransaction, cmdQuit},
	"STAT": {stateTransaction, cmdStat},
	"LIST": {stateTransaction, cmdList},
	"UIDL": {stateTransaction, cmdUIDL},
	"RETR": {stateTransaction, cmdRetr},
	"TOP":  {stateTransaction, cmdTop},
	"DELE": {stateTransaction, cmdDele},
	"NOOP": {stateTransaction, cmdNoop},
	"RSET": {stateTransaction, cmdRset},
}

// dispatch runs one command line and reports it to Events.
func (s *session) dispatch(line []byte) error {
	s.cmdName, s.lastOK = "", false
	err := s.runCommand(line)
	if ev := s.srv.Events; ev != nil {
		ev.Command(s.cmdName, s.lastOK)
	}
	return err
}

func (s *session) runCommand(line []byte) error {
	cmd, err := pop3.ParseCommand(line)
	if err != nil {
		switch {
		case errors.Is(err, pop3.ErrEmptyCommand):
			return s.replyBad("empty command")
		case errors.Is(err, pop3.ErrTooManyArgs):
			return s.replyBad("too many arguments")
		default:
			return s.replyBad("invalid command syntax")
		}
	}
	c, found := commands[cmd.Name]
	if !found {
		return s.replyBad("unknown command")
	}
	s.cmdName = cmd.Name // from the table: a client cannot add names to the metrics
	if c.states&s.state == 0 {
		if s.state == stateAuthorization {
			return s.replyBad(cmd.Name + " not valid before login")
		}
		return s.replyBad(cmd.Name + " not valid after login")
	}
	s.log.Debug("command", "cmd", cmd.Name)
	return c.run(s, cmd, line)
}

func cmdNoop(s *session, cmd pop3.Command, _ []byte) error {
	if len(cmd.Args) != 0 {
		return s.replyBad("NOOP takes no arguments")
	}
	return s.ok("")
}

func cmdQuit(s *session, cmd pop3.Command, _ []byte) error {
	if s.state == stateAuthorization {
		s.ok("popbox signing off")
		return errCloseSession
	}
	// RFC 1939 §6: QUIT in TRANSACTION enters UPDATE: remove the marked
	// messages. If that fails the reply is -ERR and the maildrop is left
	// as it was, as far as the store can guarantee.
	var del []int
	for i, d := range s.deleted {
		if d {
			del = append(del, i)
		}
	}
	drop := s.drop
	s.drop = nil // committed or not, finish must not Close it again
	if err := drop.Commit(del); err != nil {
		// The lock may still be held; Close after Commit is harmless.
		drop.Close()
		s.log.Error("commit failed", "user", s.authUser, "err", err)
		s.ending = "quit, commit failed"
		s.reply(false, pop3.CodeSysTemp, "some deleted messages not removed")
		return errCloseSession
	}
	s.deletedApplied = len(del)
	if ev := s.srv.Events; ev != nil && len(del) > 0 {
		ev.MessagesDeleted(len(del))
	}
	s.ok("popbox signing off (%d messages left)", len(s.msgs)-len(del))
	return errCloseSession
}

// message resolves a message-number argument (RFC 1939 §5: numbers start
// at 1, and a message marked as deleted may not be referred to).
func (s *session) message(arg string) (int, bool, error) {
	n, err := pop3.ParseNumber(arg)
	if err != nil || n < 1 || n > len(s.msgs) {
		return 0, false, s.replyBad("no such message")
	}
	if s.deleted[n-1] {
		return 0, false, s.replyBad("message " + strconv.Itoa(n) + " already deleted")
	}
	return n - 1, true, nil
}

func (s *session) totals() (count int, size int64) {
	for i, m := range s.msgs {
		if !s.deleted[i] {
			count++
			size += m.Size
		}
	}
	return count, size
}

func cmdStat(s *session, cmd pop3.Command, _ []byte) error {
	if len(cmd.Args) != 0 {
		return s.replyBad("STAT takes no arguments")
	}
	n, size := s.totals()
	return s.ok("%d %d", n, size)
}

// listing writes LIST or UIDL: one message, or every undeleted message as a
// multi-line reply.
func (s *session) listing(cmd pop3.Command, value func(i int) string) error {
	switch len(cmd.Args) {
	case 0:
		n, size := s.totals()
		if cmd.Name == "LIST" {
			s.ok("%d messages (%d octets)", n, size)
		} else {
			s.ok("")
		}
		s.borrowBig()
		var buf []byte
		for i := range s.msgs {
			if s.deleted[i] {
				continue
			}
			buf = strconv.AppendInt(buf[:0], int64(i+1), 10)
			buf = append(buf, ' ')
			buf = append(buf, value(i)...)
			buf = append(buf, '\r', '\n')
			if _, err := s.w.Write(buf); err != nil {
				return err
			}
		}
		_, err := s.w.WriteString(".\r\n")
		return err
	case 1:
		i, ok, err := s.message(cmd.Args[0])
		if !ok {
			return err
		}
		return s.ok("%d %s", i+1, value(i))
	default:
		return s.replyBad("too many arguments")
	}
}

func cmdList(s *session, cmd pop3.Command, _ []byte) error {
	return s.listing(cmd, func(i int) string { return strconv.FormatInt(s.msgs[i].Size, 10) })
}

func cmdUIDL(s *session, cmd pop3.Command, _ []byte) error {
	return s.listing(cmd, func(i int) string { return s.msgs[i].UIDL })
}

func cmdDele(s *session, cmd pop3.Command, _ []byte) error {
	if len(cmd.Args) != 1 {
		return s.replyBad("usage: DELE msg")
	}
	i, ok, err := s.message(cmd.Args[0])
	if !ok {
		return err
	}
	s.deleted[i] = true // RFC 1939 §5: only marked; QUIT applies it
	return s.ok("message %d deleted", i+1)
}

func cmdRset(s *session, cmd pop3.Command, _ []byte) error {
	if len(cmd.Args) != 0 {
		return s.replyBad("RSET takes no arguments")
	}
	clear(s.deleted)
	n, size := s.totals()
	return s.ok("maildrop has %d messages (%d octets)", n, size)
}

func cmdRetr(s *session, cmd pop3.Command, _ []byte) error {
	if len(cmd.Args) != 1 {
		return s.replyBad("usage: RETR msg")
	}
	i, ok, err := s.message(cmd.Args[0])
	if !ok {
		return err
	}
	if sent, err := s.sendPrepared(i); sent {
		if err == nil {
			s.messageSent(i, -1)
		}
		return err
	}
	// A client that skips around gets no help from the prepared reply;
	// the memory is better given back.
	s.dropPrepared()
	return s.sendMessage(i, -1)
}

func cmdTop(s *session, cmd pop3.Command, _ []byte) error {
	if len(cmd.Args) != 2 {
		return s.replyBad("usage: TOP msg lines")
	}
	i, ok, err := s.message(cmd.Args[0])
	if !ok {
		return err
	}
	lines, err := pop3.ParseNumber(cmd.Args[1])
	if err != nil {
		return s.replyBad("invalid line count")
	}
	return s.sendMessage(i, lines)
}

// sendMessage streams message i as a multi-line reply: the whole message, or
// for TOP (bodyLines >= 0) the header, the blank line and that many body
// lines (RFC 1939 §7).
func (s *session) sendMessage(i, bodyLines int) error {
	rc, err := s.drop.Open(i)
	if err != nil {
		s.log.Error("opening message", "user", s.authUser, "msg", i+1, "err", err)
		if errors.Is(err, fs.ErrNotExist) {
			return s.reply(false, pop3.CodeSysTemp, "message "+strconv.Itoa(i+1)+" is no longer available")
		}
		return s.reply(false, pop3.CodeSysTemp, "message "+strconv.Itoa(i+1)+" cannot be read")
	}
	defer rc.Close()
	// Before the +OK line, so that it goes out in the same write as the
	// message: flushing it alone would cost a syscall and wake the client
	// for a few bytes.
	s.borrowBig()
	if bodyLines < 0 {
		s.replyOKLine(appendRetrOK(s.w.AvailableBuffer(), s.msgs[i].Size))
	} else {
		s.ok("top of message follows")
	}
	dw := pop3.NewDotWriter(s.w)
	var dst io.Writer = dw
	if bodyLines >= 0 {
		dst = &topWriter{w: dw, bodyLines: bodyLines, lineStart: true}
	}
	// The reader is wrapped so io.CopyBuffer uses our buffer instead of a
	// ReaderFrom/WriterTo path that allocates its own.
	_, err = io.CopyBuffer(dst, struct{ io.Reader }{rc}, s.big.copy)
	if err != nil && !errors.Is(err, errTopDone) {
		// "+OK" is out and part of the message may be: the only honest
		// thing left is to drop the connection, so the client sees a
		// truncated reply rather than a wrong one.
		s.log.Error("reading message", "user", s.authUser, "msg", i+1, "err", err)
		return fmt.Errorf("streaming message %d: %w", i+1, err)
	}
	if err := dw.Close(); err != nil {
		return err
	}
	if tw, ok := dst.(*topWriter); ok {
		s.messageSent(i, tw.sent)
	} else {
		s.messageSent(i, -1)
	}
	return nil
}

// messageSent accounts for message i sent by RETR (topSent < 0) or by TOP
// (topSent octets of it), and for RETR asks for the next message to be
// prepared (prefetch.go).
func (s *session) messageSent(i int, topSent int64) {
	if topSent < 0 {
		s.retrieved++
		s.bytesSent += s.msgs[i].Size // wire size, as LIST reports it
		s.prefetchNext = i + 2
	}
	if ev := s.srv.Events; ev != nil {
		if topSent >= 0 {
			ev.MessageSent(true, topSent)
		} else {
			ev.MessageSent(false, s.msgs[i].Size)
		}
	}
}

var errTopDone = errors.New("top: enough lines")

// topWriter passes the header, the empty line that ends it, and bodyLines
// lines of the body, then stops the copy with errTopDone.
type topWriter struct {
	w         io.Writer
	sent      int64 // octets passed on, for Events.MessageSent
	inBody    bool
	bodyLines int
	lineStart bool // at the start of a line
	lineEmpty bool // the current line so far is empty or a lone CR
}

func (t *topWriter) Write(p []byte) (int, error) {
	for i, c := range p {
		if t.inBody && t.lineStart && t.bodyLines == 0 {
			if _, err := t.w.Write(p[:i]); err != nil {
				return 0, err
			}
			t.sent += int64(i)
			return i, errTopDone
		}
		if t.lineStart {
			t.lineEmpty = true
		}
		t.lineStart = false
		switch c {
		case '\n':
			if t.inBody {
				t.bodyLines--
			} else if t.lineEmpty {
				t.inBody = true
			}
			t.lineStart = true
		case '\r':
		default:
			t.lineEmpty = false
		}
	}
	if _, err := t.w.Write(p); err != nil {
		return 0, err
	}
	t.sent += int64(len(p))
	return len(p), nil
}
