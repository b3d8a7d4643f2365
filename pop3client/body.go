package pop3client

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/popbox/popbox/pop3"
)

// Retr retrieves message n (RETR, RFC 1939 §5) as a stream: byte-stuffing
// removed, line ends as the server sent them (CRLF from a correct server),
// lines of any length intact, the terminating line not included. Until the
// stream is closed every other command fails with ErrBusy; Close reads what
// is left of the message so that the session stays in step. The context
// governs the reads of the stream too: cancelling it while the message is
// still arriving leaves the Client unusable.
func (c *Client) Retr(ctx context.Context, n int) (io.ReadCloser, error) {
	return c.fetch(ctx, "RETR "+strconv.Itoa(n), n)
}

// Top retrieves the header of message n and the first lines lines of its
// body (TOP, RFC 1939 §7), as a stream like Retr's.
func (c *Client) Top(ctx context.Context, n, lines int) (io.ReadCloser, error) {
	line := "TOP " + strconv.Itoa(n) + " " + strconv.Itoa(lines)
	if lines < 0 {
		return nil, fmt.Errorf("pop3client: %s: negative line count", line)
	}
	return c.fetch(ctx, line, n)
}

func (c *Client) fetch(ctx context.Context, line string, n int) (io.ReadCloser, error) {
	if err := checkNum(line, n); err != nil {
		return nil, err
	}
	o, err := c.begin(ctx, line)
	if err != nil {
		return nil, err
	}
	if err := o.send(line, ""); err != nil {
		o.end()
		return nil, err
	}
	ok, text, err := o.status()
	if err != nil {
		o.end()
		return nil, err
	}
	if !ok {
		o.end()
		return nil, parseError(line, text)
	}
	c.setBusy(true)
	return &body{o: o, dr: pop3.NewDotReader(c.r), owner: true}, nil
}

// errBodyClosed is returned by a body's Read after Close.
var errBodyClosed = errors.New("pop3client: read from a closed message body")

// body is the stream of one multi-line message reply.
type body struct {
	o      *op
	dr     *pop3.DotReader
	owner  bool // Close ends the command (Retr, Top); RetrMany ends its own
	done   bool // the terminating line has been read
	closed bool
	err    error // the failure that ended the stream
}

func (b *body) Read(p []byte) (int, error) {
	switch {
	case b.closed:
		return 0, errBodyClosed
	case b.err != nil:
		return 0, b.err
	case b.done:
		return 0, io.EOF
	}
	b.o.refresh()
	n, err := b.dr.Read(p)
	switch {
	case err == nil:
	case errors.Is(err, io.EOF):
		b.done = true
	case errors.Is(err, pop3.ErrUnterminated):
		b.err = b.o.protocol("message not terminated: %w", err)
		err = b.err
	default:
		b.err = b.o.fail(err)
		err = b.err
	}
	return n, err
}

// Close reads and discards the rest of the message, up to and including
// the terminating line, and ends the command. It returns the error that
// ended the stream, if any.
func (b *body) Close() error {
	if b.closed {
		return nil
	}
	err := b.drain()
	b.closed = true
	if b.owner {
		b.o.end()
		b.o.c.setBusy(false)
	}
	return err
}

func (b *body) drain() error {
	if b.done || b.err != nil {
		return b.err
	}
	// io.Discard reads in pooled chunks: draining costs no allocation
	// whatever the size of the rest.
	_, err := io.Copy(io.Discard, onlyReader{b})
	return err
}

// onlyReader hides a body's Close from RetrMany's callback: RetrMany drains
// and retires each body itself.
type onlyReader struct{ io.Reader }

// emptyReader is the body passed to RetrMany's callback with an -ERR.
type emptyReader struct{}

func (emptyReader) Read([]byte) (int, error) { return 0, io.EOF }

// clampWindow keeps a pipelining window between 1 (lock-step) and maxWindow.
func clampWindow(w int) int {
	return min(max(w, 1), maxWindow)
}

// RetrMany retrieves the messages nums in order, pipelined (RFC 2449 §6.6)
// with up to window RETR commands in flight when window > 1; pass 1 unless
// the server announced PIPELINING, which gives lock-step. Windows above 128
// count as 128.
//
// fn is called once per message, in order, with the message as a stream
// (see Retr), and must consume what it needs before returning: whatever it
// leaves is read and discarded, and the stream is unusable after fn
// returns. An -ERR for one message (say, deleted by another client) is
// passed to fn as err, an *Error, with an empty body, and the others go on.
// An error returned by fn stops the loop: no more commands are sent, the
// replies in flight are read and discarded, and RetrMany returns fn's
// error. No other command may be issued from within fn (ErrBusy).
func (c *Client) RetrMany(ctx context.Context, nums []int, window int, fn func(n int, body io.Reader, err error) error) error {
	for _, n := range nums {
		if err := checkNum("RETR", n); err != nil {
			return err
		}
	}
	if len(nums) == 0 {
		return nil
	}
	if fn == nil {
		return errors.New("pop3client: RetrMany: nil callback")
	}
	window = clampWindow(window)
	o, err := c.begin(ctx, "RETR")
	if err != nil {
		return err
	}
	defer o.end()
	c.setBusy(true)
	defer c.setBusy(false)

	sent := 0
	for sent < len(nums) && sent < window {
		o.write("RETR "+strconv.Itoa(nums[sent]), "")
		sent++
	}
	if err := o.flush(); err != nil {
		return err
	}
	var fnErr error
	for i := 0; i < sent; i++ {
		n := nums[i]
		o.name = "RETR " + strconv.Itoa(n)
		ok, text, err := o.status()
		if err != nil {
			return err
		}
		if !ok {
			if fnErr == nil {
				fnErr = fn(n, emptyReader{}, parseError(o.name, text))
			}
		} else {
			b := &body{o: o, dr: pop3.NewDotReader(c.r)}
			if fnErr == nil {
				fnErr = fn(n, onlyReader{b}, nil)
			}
			if err := b.Close(); err != nil {
				// The connection is gone. fn's error, if it has one, is
				// usually this one passed on with context.
				if fnErr == nil || errors.Is(fnErr, err) {
					return cmp.Or(fnErr, err)
				}
				return errors.Join(fnErr, err)
			}
		}
		// Send the next command only now that this reply has been read
		// whole: the window counts commands whose replies are unread.
		if fnErr == nil && sent < len(nums) {
			o.write("RETR "+strconv.Itoa(nums[sent]), "")
			sent++
			if err := o.flush(); err != nil {
				return err
			}
		}
	}
	return fnErr
}

// DeleMany marks the messages nums for deletion (DELE, RFC 1939 §5),
// pipelined like RetrMany with up to window commands in flight. Every
// command is answered; the -ERR replies are returned together (each an
// *Error; errors.As finds the first).
func (c *Client) DeleMany(ctx context.Context, nums []int, window int) error {
	for _, n := range nums {
		if err := checkNum("DELE", n); err != nil {
			return err
		}
	}
	if len(nums) == 0 {
		return nil
	}
	window = clampWindow(window)
	o, err := c.begin(ctx, "DELE")
	if err != nil {
		return err
	}
	defer o.end()

	sent := 0
	for sent < len(nums) && sent < window {
		o.write("DELE "+strconv.Itoa(nums[sent]), "")
		sent++
	}
	var errs []error
	for i := 0; i < len(nums); i++ {
		// Flush only before waiting for input: while replies are already
		// buffered, the commands they free up collect into one write.
		if c.w.Buffered() > 0 && c.r.Buffered() == 0 {
			if err := o.flush(); err != nil {
				return err
			}
		}
		o.name = "DELE " + strconv.Itoa(nums[i])
		ok, text, err := o.status()
		if err != nil {
			return err
		}
		if !ok {
			errs = append(errs, parseError(o.name, text))
		}
		if sent < len(nums) {
			o.write("DELE "+strconv.Itoa(nums[sent]), "")
			sent++
		}
	}
	return errors.Join(errs...)
}
