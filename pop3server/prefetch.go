package pop3server

import (
	"errors"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/popbox/popbox/pop3"
)

// Prefetch. Most clients download in lock-step: RETR, wait for the whole
// reply, RETR the next. Between two RETRs the server waits a round trip
// while the client takes in the message, and then has to open, read and
// convert the next one while the client waits in turn. A session that has
// just sent message i by RETR, and has no command waiting, uses its own
// wait to prepare the reply to RETR i+1 in memory; if that is the next
// RETR, the reply goes out in one write and the store is not touched on
// the client's time.
//
// A prepared reply stays right for the whole session: the session's
// message list is a snapshot (store.Maildrop.Messages), stored messages do
// not change, and Open has no side effects, so reading ahead changes
// nothing a client can see. A DELE of the prepared message does not matter
// either: RETR of a deleted message is refused before the prepared reply
// is looked at.
//
// Memory is what it costs, so it is bounded three ways: only messages up
// to maxPrefetchSize are prepared, at most maxPrefetching sessions of a
// server hold a prepared reply at once, and a session drops its reply when
// the client has been silent for prefetchHold (it is not downloading any
// more) or asks for another message.
const (
	maxPrefetchSize = 64 << 10
	// prefetchCap is a reply buffer's capacity: the message with its
	// line ends as LIST counts them, up to one stuffed dot per line that
	// starts with one, the +OK line and the terminator. A message with
	// more dots than that is sent the usual way.
	prefetchCap    = maxPrefetchSize + 4<<10
	maxPrefetching = 256 // 256 x 68 KiB: 17 MiB at most per server
	prefetchHold   = 2 * time.Second
)

// preparedReply is the whole reply to RETR of message msg (an index): the
// +OK line, the converted message and ".CRLF".
type preparedReply struct {
	msg   int
	reply []byte
}

func newPreparedReply() any { return &preparedReply{reply: make([]byte, 0, prefetchCap)} }

// prefetch prepares the reply to RETR of message s.prefetchNext-1 when
// there is one to prepare and room for it. It is called with nothing to
// send and no command waiting.
func (s *session) prefetch() {
	i := s.prefetchNext - 1
	s.prefetchNext = 0
	if i < 0 || i >= len(s.msgs) || s.deleted[i] || s.msgs[i].Size > maxPrefetchSize {
		return
	}
	if s.prepared != nil {
		if s.prepared.msg == i {
			return
		}
		s.dropPrepared()
	}
	if s.srv.prefetching.Add(1) > s.srv.prefetchLimit {
		s.srv.prefetching.Add(-1)
		return
	}
	p := s.srv.preparedReplies.Get().(*preparedReply)
	if !s.prepare(p, i) {
		s.srv.preparedReplies.Put(p)
		s.srv.prefetching.Add(-1)
		return
	}
	s.prepared = p
}

// prepare fills p with the reply to RETR of message i. Any failure leaves
// the message to the RETR itself, which reports it to the client and the
// log.
func (s *session) prepare(p *preparedReply, i int) bool {
	rc, err := s.drop.Open(i)
	if err != nil {
		return false
	}
	defer rc.Close()
	buf := s.copyBuffer()
	out := appendRetrOK(p.reply[:0], s.msgs[i].Size)
	enc := pop3.NewDotEncoder()
	for {
		n, err := rc.Read(buf)
		out = enc.Append(out, buf[:n])
		if len(out) > prefetchCap {
			return false
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return false
		}
	}
	if out = enc.Close(out); len(out) > prefetchCap {
		return false
	}
	p.msg, p.reply = i, out
	return true
}

// copyBuffer is the large copy buffer: the session's own while it holds
// one (just after a RETR), else one lent until the session next waits.
func (s *session) copyBuffer() []byte {
	s.borrowBig()
	return s.big.copy
}

// sendPrepared sends the prepared reply if it is the one to RETR of
// message i, and reports whether it was.
func (s *session) sendPrepared(i int) (bool, error) {
	p := s.prepared
	if p == nil || p.msg != i {
		return false, nil
	}
	// The write buffer is usually empty here, and then bufio hands a
	// reply this large straight to the connection: one write.
	err := s.replyOKLine(p.reply)
	s.dropPrepared()
	return true, err
}

// dropPrepared releases the prepared reply, if any.
func (s *session) dropPrepared() {
	if s.prepared == nil {
		return
	}
	s.prepared.reply = s.prepared.reply[:0]
	s.srv.preparedReplies.Put(s.prepared)
	s.prepared = nil
	s.srv.prefetching.Add(-1)
}

// awaitCommand waits up to the server's prefetchHold (and no later than deadline) for
// the client's next command while the session holds a prepared reply, and
// drops the reply if the client stays silent. It only peeks, so a line
// being received is kept whole. A non-nil error ends the wait for the
// command: the connection failed, the session was interrupted, or
// deadline passed.
func (s *session) awaitCommand(deadline time.Time) error {
	if s.prepared == nil || s.r.Buffered() > 0 {
		return nil
	}
	hold := time.Now().Add(s.srv.prefetchHold)
	if deadline.Before(hold) {
		hold = deadline
	}
	s.armDeadline(s.currentConn().SetReadDeadline, hold)
	_, err := s.r.Peek(1)
	if err == nil {
		return nil
	}
	if errors.Is(err, os.ErrDeadlineExceeded) && !s.interrupted.Load() && time.Now().Before(deadline) {
		s.dropPrepared()
		return nil
	}
	return err
}

// appendRetrOK appends the +OK line of a RETR reply (RFC 1939 §7: the
// size in octets, as LIST gives it).
func appendRetrOK(dst []byte, size int64) []byte {
	dst = append(dst, "+OK "...)
	dst = strconv.AppendInt(dst, size, 10)
	return append(dst, " octets\r\n"...)
}
