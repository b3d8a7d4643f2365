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
)

// Errors a Store returns; callers test them with errors.Is.
var (
	// ErrInUse: another session (in this or another process) holds the
	// maildrop lock. POP3 answers -ERR [IN-USE] (RFC 2449 §8.1.2).
	ErrInUse = errors.New("store: maildrop in use")
	// ErrNoSuchMessage: a message index outside the snapshot.
	ErrNoSuchMessage = errors.New("store: no such message")
	// ErrQuota: delivery refused because the mailbox is full.
	ErrQuota = errors.New("store: over quota")
	// ErrInvalidUser: the user name cannot name a mailbox (empty, path
	// separators, dot names, control characters, too long).
	ErrInvalidUser = errors.New("store: invalid user name")
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
	// and releases the lock. Messages already gone are not an error.
	Commit(deleted []int) error
	// Close releases the lock and changes nothing. Calling Close after
	// Commit, or twice, is harmless.
	Close() error
}
