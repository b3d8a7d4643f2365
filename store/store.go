// Package store defines the seam between the POP3 protocol and mail storage.
//
// The protocol layer (pop3server) and the intake paths (popbox deliver, LMTP)
// see storage only through the interfaces here; store/maildir implements them
// on the local file system, and later backends (PostgreSQL) implement the same
// contract, checked by the shared tests in store/storetest.
//
// Sizes are wire sizes: the octets RETR sends for a message after converting
// every line end to CRLF and adding a final CRLF when the stored message lacks
// one, but before byte-stuffing and without the terminating ".CRLF"
// (RFC 1939 §11 "exact size"). pop3.WireSize computes it.
package store

import (
	"context"
	"errors"
	"io"
	"time"
)

// Errors a Store returns; callers test them with errors.Is.
var (
	// ErrInUse: another session (in this or another process) holds the
	// maildrop lock. POP3 answers -ERR [IN-USE] (RFC 2449 §8.1.2).
	ErrInUse = errors.New("store: maildrop in use")
	// ErrNoSuchMessage: a message index outside the snapshot.
	ErrNoSuchMessage = errors.New("store: no such message")
	// ErrQuota: delivery refused because the message would take the mailbox
	// over its byte or message limit (see Quota). Intake paths report it as
	// a temporary failure (LMTP 452, RFC 3463 4.2.2 "mailbox full"): the
	// sender retries while the user reads and deletes mail.
	ErrQuota = errors.New("store: over quota")
	// ErrInvalidUser: the user name cannot name a mailbox (empty, path
	// separators, dot names, control characters, too long).
	ErrInvalidUser = errors.New("store: invalid user name")
	// ErrInvalidUIDL: an imported UIDL is not 1 to 70 characters in
	// 0x21..0x7E (RFC 1939 §7).
	ErrInvalidUIDL = errors.New("store: invalid UIDL")
	// ErrUIDLConflict: Import refused a UIDL that a message in the mailbox
	// has. A migration run twice meets it for every message already
	// imported and may skip those.
	ErrUIDLConflict = errors.New("store: UIDL already used")
	// ErrUIDLPossiblyUsed: Import refused a UIDL that no message in the
	// mailbox has, but that the store may have handed out before (to a
	// message since deleted) or may hand out later; accepting it could make
	// a client that has seen it skip a message it has never seen. The
	// message is not stored: unlike ErrUIDLConflict, this is no reason to
	// skip it silently.
	ErrUIDLPossiblyUsed = errors.New("store: UIDL possibly used by the store before")
)

// MessageInfo describes one message of a maildrop snapshot.
type MessageInfo struct {
	// UIDL is the unique-id listing (RFC 1939 §7): 1 to 70 characters in
	// 0x21..0x7E, unique in the mailbox, never changed and never reused.
	UIDL string
	// Size is the wire size in octets (see the package doc).
	Size int64
}

// Store opens maildrops and delivers mail into them.
type Store interface {
	// Open locks user's maildrop exclusively (across processes) and returns
	// a snapshot of its messages. It returns ErrInUse at once, without
	// waiting, when another session holds the lock. A mailbox that does not
	// exist yet is created empty.
	Open(ctx context.Context, user string) (Maildrop, error)
	// Deliver stores one message for user. It returns only after the message
	// is durable (file and directory synced) and its UIDL and size are
	// recorded, so a POP3 session opened afterwards sees it. It never waits
	// for a POP3 session's lock. On error no partial message is visible.
	Deliver(ctx context.Context, user string, r io.Reader) (MessageInfo, error)
}

// Maildrop is a locked snapshot of one mailbox, for one POP3 session. Message
// indexes are 0-based positions in Messages(); the POP3 message number n is
// index n-1. Mail delivered after Open is not part of the snapshot.
// A Maildrop is used by one goroutine at a time.
type Maildrop interface {
	// Messages is the snapshot taken by Open; it never changes.
	Messages() []MessageInfo
	// Open returns the stored bytes of message i as delivered (line ends as
	// stored); the caller converts them to the wire form. The reader streams
	// from storage and must be closed. A message removed behind the store's
	// back returns an error wrapping fs.ErrNotExist.
	Open(i int) (io.ReadCloser, error)
	// Commit deletes the given messages (RFC 1939 §6, UPDATE state), durably,
	// and releases the lock. Messages already gone are not an error. A store
	// may keep deleted messages for a while (Admin.Restore); they never
	// appear in a snapshot again.
	Commit(deleted []int) error
	// Close releases the lock and changes nothing. Calling Close after
	// Commit, or twice, is harmless.
	Close() error
}

// Quota limits one user's mailbox: the sum of the wire sizes of its
// messages and their number. Zero (or negative) means no limit. Deleted mail
// kept for restoring does not count.
type Quota struct {
	MaxBytes    int64
	MaxMessages int64
}

// Usage is what a mailbox's messages take: their number and the sum of their
// wire sizes, as POP3 STAT would report them. Deleted mail kept for
// restoring is not included.
type Usage struct {
	Bytes    int64
	Messages int64
}

// RestoreOptions selects deleted messages to put back. The zero value selects
// every message still kept.
type RestoreOptions struct {
	// Since selects messages deleted within this long before now; 0 means
	// no time limit.
	Since time.Duration
	// UIDL selects only the message that had this UIDL when it was deleted;
	// "" selects any.
	UIDL string
}

// Admin is the administrative side of a store: quota accounting, deleted
// mail kept for a retention period and restored on request, server-side
// expiry (RFC 2449 §6.7 EXPIRE), and migration with the UIDLs clients
// already know. The contract is checked by storetest.RunAdmin.
type Admin interface {
	Store
	// Usage reports what user's messages take now. A mailbox that does not
	// exist has zero usage and is not created.
	Usage(ctx context.Context, user string) (Usage, error)
	// Purge removes user's deleted messages whose retention period ended
	// at or before now, for good, and returns how many it removed.
	Purge(ctx context.Context, user string, now time.Time) (int, error)
	// PurgeAll runs Purge for every mailbox. It goes on past a failing
	// mailbox and returns the total and every error, joined.
	PurgeAll(ctx context.Context, now time.Time) (int, error)
	// Restore puts deleted messages that are still kept back into user's
	// mailbox, with new UIDLs (so clients download them again), and
	// returns them in their new form. Quota does not refuse a restore.
	// It does not wait for a POP3 session: an open session's snapshot does
	// not change, and its Commit keeps the restored messages.
	Restore(ctx context.Context, user string, opts RestoreOptions) ([]MessageInfo, error)
	// Expire deletes user's messages delivered before olderThan, as if a
	// client had deleted them (they are kept for the retention period like
	// any deleted message), and returns how many. It returns ErrInUse,
	// changing nothing, while a POP3 session holds the maildrop.
	Expire(ctx context.Context, user string, olderThan time.Time) (int, error)
	// ExpireAll runs Expire for every mailbox, skipping (and listing in
	// busy) those a session holds. It goes on past a failing mailbox and
	// returns the total and every other error, joined.
	ExpireAll(ctx context.Context, olderThan time.Time) (n int, busy []string, err error)
	// Import stores one message like Deliver, but with the given UIDL (a
	// migration from another server, so that clients do not download
	// their mail again). Imported messages are listed after those already
	// in the mailbox, in the order of the imports, each with exactly the
	// UIDL given, and no UIDL the store hands out later equals it. It
	// returns ErrInvalidUIDL for a malformed UIDL, ErrUIDLConflict for one a
	// message in the mailbox has, and ErrUIDLPossiblyUsed for one the store
	// may have handed out before. Quota does not refuse an import.
	Import(ctx context.Context, user string, r io.Reader, uidl string) (MessageInfo, error)
}
