package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/popbox/popbox/pop3"
	"github.com/popbox/popbox/store"
)

// chunkSize is the size of a message_chunks row's data (the last chunk of
// a message is shorter). See the package doc for the choice.
const chunkSize = 256 << 10

// limited reports whether q limits anything.
func limited(q store.Quota) bool { return q.MaxBytes > 0 || q.MaxMessages > 0 }

// checkQuota returns an error wrapping store.ErrQuota if one more message
// of size octets would take usage u over q.
func checkQuota(q store.Quota, u store.Usage, size int64) error {
	if q.MaxMessages > 0 && u.Messages+1 > q.MaxMessages {
		return fmt.Errorf("%w: %d of %d messages", store.ErrQuota, u.Messages, q.MaxMessages)
	}
	if q.MaxBytes > 0 && u.Bytes+size > q.MaxBytes {
		return fmt.Errorf("%w: %d of %d octets used, message is %d", store.ErrQuota, u.Bytes, q.MaxBytes, size)
	}
	return nil
}

// Deliver implements store.Store. In one transaction it writes the message
// chunk by chunk as it reads it, counting the wire size on the way, then
// locks the mailbox row, checks the quota exactly, takes the next UIDL and
// position, inserts the message row and updates the totals. Nothing is
// visible before the commit, and a failure anywhere (the reader, the
// quota, the context, the database) leaves nothing. It never waits for a
// POP3 session: sessions hold a lease row, not the mailbox row.
func (s *Store) Deliver(ctx context.Context, user string, r io.Reader) (store.MessageInfo, error) {
	if err := validUser(user); err != nil {
		return store.MessageInfo{}, err
	}
	if err := ctx.Err(); err != nil {
		return store.MessageInfo{}, fmt.Errorf("postgres: deliver: %w", err)
	}
	var q store.Quota
	if s.quota != nil {
		var err error
		if q, err = s.quota(ctx, user); err != nil {
			return store.MessageInfo{}, fmt.Errorf("postgres: quota of %s: %w", user, err)
		}
	}
	id, _, err := s.mailboxID(ctx, s.pool, user, true)
	if err != nil {
		return store.MessageInfo{}, err
	}
	// The cheap check, without the lock: a full mailbox refuses at once,
	// and a nearly full one stops reading as soon as the message cannot
	// fit, so a 50 MB message is not stored only to be refused. The exact
	// check comes under the lock.
	room := int64(-1)
	if limited(q) {
		var u store.Usage
		if err := s.pool.QueryRow(ctx, "SELECT msgs, bytes FROM mailboxes WHERE id = $1", id).Scan(&u.Messages, &u.Bytes); err != nil {
			return store.MessageInfo{}, fmt.Errorf("postgres: usage of %s: %w", user, ctxErr(ctx, err))
		}
		if err := checkQuota(q, u, 0); err != nil {
			return store.MessageInfo{}, fmt.Errorf("%w (%s)", err, user)
		}
		if q.MaxBytes > 0 {
			room = q.MaxBytes - u.Bytes
		}
	}
	info, err := s.put(ctx, id, user, r, incoming{quota: q, room: room})
	if err != nil {
		return store.MessageInfo{}, err
	}
	s.log.Debug("postgres: delivered", "user", user, "uidl", info.UIDL, "size", info.Size)
	return info, nil
}

// Import implements store.Admin: it stores the message as Deliver does,
// with uidl, listed after everything the mailbox has. It follows
// store/maildir's rules, so a migration behaves the same into either
// backend: a UIDL in popbox's own format (formatUIDL) that the counter may
// produce later moves the counter past it (placeImported), one it may have
// produced already is refused with store.ErrUIDLPossiblyUsed, anything else
// is kept as a literal; a UIDL a live message has is refused with
// store.ErrUIDLConflict (checked under the mailbox lock, and enforced by a
// unique index besides). The quota does not refuse an import.
func (s *Store) Import(ctx context.Context, user string, r io.Reader, uidl string) (store.MessageInfo, error) {
	if err := store.CheckUIDL(uidl); err != nil {
		return store.MessageInfo{}, err
	}
	in := incoming{room: -1, uidl: uidl}
	if uid, epoch, ok := parseUIDL(uidl); ok {
		if epoch == 1<<32-1 {
			// Above every epoch popbox could move on to later.
			return store.MessageInfo{}, fmt.Errorf("%w: %s: epoch FFFFFFFF leaves no room for later mail", store.ErrInvalidUIDL, uidl)
		}
		in.own, in.uid, in.epoch = true, uid, epoch
	}
	if err := validUser(user); err != nil {
		return store.MessageInfo{}, err
	}
	if err := ctx.Err(); err != nil {
		return store.MessageInfo{}, fmt.Errorf("postgres: import: %w", err)
	}
	id, _, err := s.mailboxID(ctx, s.pool, user, true)
	if err != nil {
		return store.MessageInfo{}, err
	}
	info, err := s.put(ctx, id, user, r, in)
	if err != nil {
		return store.MessageInfo{}, err
	}
	s.log.Debug("postgres: imported", "user", user, "uidl", info.UIDL, "size", info.Size)
	return info, nil
}

// incoming describes how a new message is stored: delivered (against the
// quota) or imported (with its UIDL).
type incoming struct {
	quota store.Quota
	room  int64 // wire octets the quota leaves, or -1: stop reading beyond it
	// Import: the UIDL to keep, and, if it is in popbox's own format
	// (own), the (uid, epoch) it spells.
	uidl       string
	own        bool
	uid, epoch uint32
}

// put stores one message in one transaction (see Deliver).
func (s *Store) put(ctx context.Context, mailbox int64, user string, r io.Reader, in incoming) (store.MessageInfo, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return store.MessageInfo{}, fmt.Errorf("postgres: deliver: %w", ctxErr(ctx, err))
	}
	defer rollback(tx) // a no-op after Commit
	var msgID int64
	if err := tx.QueryRow(ctx, "SELECT nextval(pg_get_serial_sequence('messages', 'id'))").Scan(&msgID); err != nil {
		return store.MessageInfo{}, fmt.Errorf("postgres: deliver: %w", ctxErr(ctx, err))
	}
	stored, size, chunks, err := s.writeChunks(ctx, tx, msgID, r, in.room)
	if err != nil {
		if errors.Is(err, store.ErrQuota) {
			err = fmt.Errorf("%w (%s)", err, user)
		}
		return store.MessageInfo{}, err
	}

	mb, err := lockMailbox(ctx, tx, mailbox)
	if err != nil {
		return store.MessageInfo{}, err
	}
	if err := checkQuota(in.quota, store.Usage{Messages: mb.msgs, Bytes: mb.size}, size); err != nil {
		return store.MessageInfo{}, fmt.Errorf("%w (%s)", err, user)
	}
	uidl := in.uidl
	if uidl != "" {
		var present bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM messages
			WHERE mailbox_id = $1 AND uidl = $2 AND deleted_at IS NULL)`, mailbox, uidl).Scan(&present); err != nil {
			return store.MessageInfo{}, fmt.Errorf("postgres: import: %w", ctxErr(ctx, err))
		}
		if present {
			return store.MessageInfo{}, fmt.Errorf("%w: %s is in %s's mailbox", store.ErrUIDLConflict, uidl, user)
		}
		if in.own {
			next, _, err := placeImported(mb.ctr, in.uid, in.epoch)
			if err != nil {
				return store.MessageInfo{}, fmt.Errorf("%w (%s)", err, user)
			}
			mb.ctr = next
		}
	} else {
		var uid, epoch uint32
		uid, epoch, mb.ctr = mb.ctr.allocate(time.Now())
		uidl = formatUIDL(uid, epoch)
	}
	pos := mb.pos
	mb.pos++
	mb.msgs++
	mb.size += size
	if _, err := tx.Exec(ctx, `INSERT INTO messages (id, mailbox_id, pos, uidl, size, stored_size, chunks)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`, msgID, mailbox, pos, uidl, size, stored, chunks); err != nil {
		return store.MessageInfo{}, fmt.Errorf("postgres: deliver: %w", ctxErr(ctx, err))
	}
	if err := saveMailbox(ctx, tx, mailbox, mb); err != nil {
		return store.MessageInfo{}, err
	}
	if err := tx.Commit(ctx); err != nil {
		return store.MessageInfo{}, fmt.Errorf("postgres: deliver: commit: %w", ctxErr(ctx, err))
	}
	return store.MessageInfo{UIDL: uidl, Size: size}, nil
}

// writeChunks copies r into message_chunks rows of message msgID as it
// reads, one chunkSize buffer at a time, and returns the stored size, the
// wire size and the number of chunks. With room >= 0 it fails with
// store.ErrQuota as soon as the wire size must exceed room.
func (s *Store) writeChunks(ctx context.Context, tx pgx.Tx, msgID int64, r io.Reader, room int64) (stored, size int64, chunks int32, err error) {
	var wc pop3.WireCounter
	buf := make([]byte, chunkSize)
	for {
		if err := ctx.Err(); err != nil {
			return 0, 0, 0, fmt.Errorf("postgres: deliver: %w", err)
		}
		n, rerr := io.ReadFull(r, buf)
		if n > 0 {
			stored += int64(n)
			if s.maxSize > 0 && stored > s.maxSize {
				return 0, 0, 0, fmt.Errorf("%w: over %d octets", ErrTooLarge, s.maxSize)
			}
			wc.Write(buf[:n])
			// Size counts a final CRLF that later data may make
			// unnecessary; without those 2 octets it is a lower bound.
			if room >= 0 && wc.Size()-2 > room {
				return 0, 0, 0, fmt.Errorf("%w: message over the %d octets left", store.ErrQuota, room)
			}
			if _, err := tx.Exec(ctx, "INSERT INTO message_chunks (message_id, seq, data) VALUES ($1, $2, $3)",
				msgID, chunks, buf[:n]); err != nil {
				return 0, 0, 0, fmt.Errorf("postgres: deliver: store chunk: %w", ctxErr(ctx, err))
			}
			chunks++
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			return stored, wc.Size(), chunks, nil
		}
		if rerr != nil {
			return 0, 0, 0, fmt.Errorf("postgres: read message: %w", rerr)
		}
	}
}
