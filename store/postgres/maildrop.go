package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sync"

	"github.com/jackc/pgx/v5"

	"github.com/popbox/popbox/store"
)

// errClosed: the maildrop was already committed or closed.
var errClosed = errors.New("postgres: maildrop closed")

// Open implements store.Store: it takes the mailbox's lease without
// waiting (store.ErrInUse if another session, on any node, holds it), then
// reads the snapshot: the live messages in listing order, in one statement,
// so one consistent view of the table. Mail delivered or restored later
// is not in it, and Commit touches only what is.
func (s *Store) Open(ctx context.Context, user string) (store.Maildrop, error) {
	if err := validUser(user); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("postgres: open: %w", err)
	}
	id, _, err := s.mailboxID(ctx, s.pool, user, true)
	if err != nil {
		return nil, err
	}
	// RFC 1939 §4: the server acquires an exclusive-access lock on the
	// maildrop; RFC 2449 §8.1.2 [IN-USE] when it cannot.
	l, err := s.acquire(ctx, id, user)
	if err != nil {
		return nil, err
	}
	m := &maildrop{s: s, user: user, lease: l}
	m.ids, m.msgs, err = s.snapshot(ctx, id)
	if err != nil {
		_ = s.release(l)
		return nil, fmt.Errorf("postgres: open %s: %w", user, ctxErr(ctx, err))
	}
	return m, nil
}

// snapshot lists the live messages of mailbox in listing order, with
// their row ids.
func (s *Store) snapshot(ctx context.Context, mailbox int64) ([]int64, []store.MessageInfo, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, uidl, size FROM messages
		WHERE mailbox_id = $1 AND deleted_at IS NULL ORDER BY pos`, mailbox)
	if err != nil {
		return nil, nil, err
	}
	var ids []int64
	var msgs []store.MessageInfo
	var id int64
	var info store.MessageInfo
	_, err = pgx.ForEachRow(rows, []any{&id, &info.UIDL, &info.Size}, func() error {
		ids = append(ids, id)
		msgs = append(msgs, info)
		return nil
	})
	return ids, msgs, err
}

// maildrop is one POP3 session's view of a mailbox.
type maildrop struct {
	s     *Store
	user  string
	lease *lease
	ids   []int64 // messages.id of each snapshot entry
	msgs  []store.MessageInfo

	mu        sync.Mutex // Close may come from another goroutine at shutdown
	done      bool       // committed or closed: the lease is gone
	committed bool
}

var _ store.Maildrop = (*maildrop)(nil)

func (m *maildrop) Messages() []store.MessageInfo { return m.msgs }

// Open returns a reader that fetches the message's chunks one at a time
// (see chunkReader). A message deleted or purged since the snapshot (by
// whoever took over a lost lease) returns an error wrapping
// fs.ErrNotExist. The query is bounded by readTimeout.
func (m *maildrop) Open(i int) (io.ReadCloser, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.done {
		return nil, errClosed
	}
	if i < 0 || i >= len(m.ids) {
		return nil, fmt.Errorf("%w: %d", store.ErrNoSuchMessage, i)
	}
	ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
	defer cancel()
	r := &chunkReader{pool: m.s.pool, id: m.ids[i]}
	// The first chunk comes with the message's row: most mail fits in
	// one chunk, so a RETR costs one round trip to the database, not two
	// (bench/postgres.sh: lock-step RETR of 50 KB messages 158 -> 193
	// MB/s; pipelined RETR is bound by the database's CPU instead).
	var first bool
	err := m.s.pool.QueryRow(ctx, `SELECT m.chunks, m.stored_size, c.seq IS NOT NULL, c.data
		FROM messages m LEFT JOIN message_chunks c ON c.message_id = m.id AND c.seq = 0
		WHERE m.id = $1 AND m.deleted_at IS NULL`,
		r.id).Scan(&r.chunks, &r.stored, &first, &r.buf)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("postgres: message %d (%s) of %s: %w", i, m.msgs[i].UIDL, m.user, fs.ErrNotExist)
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: open message %d of %s: %w", i, m.user, err)
	}
	if r.chunks > 0 {
		if !first {
			return nil, fmt.Errorf("postgres: message %d of %s: chunk 0: %w", i, m.user, fs.ErrNotExist)
		}
		r.next, r.read, r.off = 1, int64(len(r.buf.b)), 0
	}
	return r, nil
}

// Commit implements RFC 1939 §6 (UPDATE state) in one transaction: verify
// that this session still holds the lease, locking its row (else
// ErrLeaseLost, and nothing is deleted); lock the mailbox row; mark the
// messages deleted (or, without retention, delete them and their chunks);
// take them out of the totals; drop the lease row. Messages already gone
// are not an error. Bad indexes fail the Commit before anything is done.
// The lease is given back whatever happens: the session is over. Bounded
// by commitTimeout.
func (m *maildrop) Commit(deleted []int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.done {
		if m.committed {
			return nil
		}
		return errClosed
	}
	m.done, m.committed = true, true
	s, l := m.s, m.lease
	s.forget(l)
	ids := make([]int64, 0, len(deleted))
	for _, i := range deleted {
		if i < 0 || i >= len(m.ids) {
			_ = s.release(l)
			return fmt.Errorf("%w: %d", store.ErrNoSuchMessage, i)
		}
		ids = append(ids, m.ids[i])
	}
	ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
	defer cancel()
	n, err := s.commit(ctx, l, ids)
	if err != nil {
		// Give the lease back (a no-op if it was lost), so the user can
		// log in again at once rather than after it expires.
		_ = s.release(l)
		return fmt.Errorf("postgres: commit %s: %w", m.user, err)
	}
	if n > 0 {
		s.log.Debug("postgres: deleted", "user", m.user, "count", n, "kept", s.retention > 0)
	}
	return nil
}

// commit is Commit's transaction; it returns how many messages it deleted.
func (s *Store) commit(ctx context.Context, l *lease, ids []int64) (int, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return 0, ctxErr(ctx, err)
	}
	defer rollback(tx)
	if err := verifyLease(ctx, tx, l); err != nil {
		return 0, err
	}
	n := 0
	if len(ids) > 0 {
		gone, err := s.removeMessages(ctx, tx, l.mailbox, "id = ANY($2)", ids)
		if err != nil {
			return 0, err
		}
		n = len(gone)
	}
	if _, err := tx.Exec(ctx, "DELETE FROM leases WHERE mailbox_id = $1 AND token = $2", l.mailbox, l.token); err != nil {
		return 0, ctxErr(ctx, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, ctxErr(ctx, err)
	}
	return n, nil
}

// Close releases the lease and changes nothing. The lease row is deleted
// within releaseTimeout; if the database cannot be reached the error says
// so, and the lease expires on its own.
func (m *maildrop) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.done {
		return nil
	}
	m.done = true
	return m.s.release(m.lease)
}

// chunkReader streams one message: it fetches chunk after chunk, each
// with its own query bounded by readTimeout, and holds one chunk at a
// time. Between chunks it holds no connection, so a slow client ties up
// none.
type chunkReader struct {
	pool interface {
		QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	}
	id     int64
	chunks int32 // how many the message has
	stored int64 // and their total length
	next   int32 // the next chunk to fetch
	read   int64 // octets fetched so far
	buf    chunkBuf
	off    int // unread data starts at buf.b[off]
	err    error
}

// chunkBuf receives a chunk's data into a buffer it reuses (pgx's
// BytesScanner), so reading a message allocates one chunk's worth, not the
// message's.
type chunkBuf struct{ b []byte }

func (c *chunkBuf) ScanBytes(v []byte) error {
	c.b = append(c.b[:0], v...)
	return nil
}

// fill fetches the next chunk into buf; at the end it returns io.EOF, or
// an error if the chunks did not add up to the stored size.
func (r *chunkReader) fill() error {
	if r.next >= r.chunks {
		if r.read != r.stored {
			return fmt.Errorf("postgres: message %d: %d octets in %d chunks, want %d", r.id, r.read, r.chunks, r.stored)
		}
		return io.EOF
	}
	ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
	defer cancel()
	err := r.pool.QueryRow(ctx, "SELECT data FROM message_chunks WHERE message_id = $1 AND seq = $2", r.id, r.next).Scan(&r.buf)
	if errors.Is(err, pgx.ErrNoRows) {
		// Purged while being read (only after a lost lease).
		return fmt.Errorf("postgres: message %d: chunk %d: %w", r.id, r.next, fs.ErrNotExist)
	}
	if err != nil {
		return fmt.Errorf("postgres: message %d: chunk %d: %w", r.id, r.next, err)
	}
	r.next++
	r.read += int64(len(r.buf.b))
	r.off = 0
	return nil
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, r.err
	}
	for r.err == nil && r.off >= len(r.buf.b) {
		r.err = r.fill()
	}
	if r.off >= len(r.buf.b) {
		return 0, r.err
	}
	n := copy(p, r.buf.b[r.off:])
	r.off += n
	return n, nil
}

// WriteTo hands each chunk to w whole, without a copy through io.Copy's
// buffer.
func (r *chunkReader) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for {
		if r.off < len(r.buf.b) {
			n, err := w.Write(r.buf.b[r.off:])
			r.off += n
			total += int64(n)
			if err != nil {
				return total, err
			}
		}
		if r.err == nil {
			r.err = r.fill()
		}
		if r.err == io.EOF && r.off >= len(r.buf.b) {
			return total, nil
		}
		if r.err != nil && r.err != io.EOF {
			return total, r.err
		}
	}
}

// Close drops the buffer; the reader holds nothing else.
func (r *chunkReader) Close() error {
	r.buf.b = nil
	r.off = 0
	if r.err == nil {
		r.err = errClosed
	}
	return nil
}
