// Package lmtp is popbox's mail intake: an LMTP server (RFC 2033) that
// delivers each message into a store.Store, for an MTA such as Postfix
// (lmtp:unix:/path/to/lmtp.sock) to hand local mail to. The protocol is
// github.com/emersion/go-smtp in LMTP mode; this package is its backend,
// plus the connection handling go-smtp leaves out.
//
// A transaction goes: LHLO, MAIL FROM, one RCPT TO per recipient (each
// resolved to a user at once through a UserResolver; unknown ones are
// refused there with 550 5.1.1), DATA or BDAT, then one reply per accepted
// recipient, in RCPT order (RFC 2033 §4.2). A recipient is told 250 only
// after Store.Deliver has returned for it, that is, once its copy is
// durable and indexed, so a 250 is a promise the MTA may drop its copy on.
//
// Implementation notes:
//
//   - The message is read once, to its end, into a spool (Server.SpoolMemory
//     in memory, the rest in a temporary file that has no name) and then
//     delivered to each recipient from there. A message that is too big
//     (552 5.3.4 for every recipient), cut short or timed out reaches no
//     mailbox. Deliveries are sequential; each recipient's reply goes out
//     as soon as its Deliver returns.
//   - Replies to DATA: 250 2.0.0 stored; 452 4.2.2 mailbox full
//     (store.ErrQuota; 552 5.2.2 with Server.QuotaPermanent); 451 4.3.0 any
//     other store error, logged. The store promises that a failed Deliver
//     leaves nothing visible, so a retry by the MTA cannot duplicate.
//   - Recipient addresses: see AddressResolver. `popbox deliver USER` takes
//     the user name verbatim; LMTP gets addresses, so the resolver tries
//     the whole address, then its local part, lower-cased, and strips a
//     +extension only when told which delimiters to use. go-smtp refuses a
//     path without a domain (RFC 5321 §4.1.1.3 asks servers to take
//     "<Postmaster>"), with 501.
//   - Storage form: CRLF becomes LF (the Maildir convention, and what
//     `popbox deliver` stores when an MTA pipes a message into it); every
//     other byte is kept, 8-bit data, NUL, a lone CR or LF included. The
//     store counts the wire size (CRLF line ends) as it writes, so POP3
//     RETR sends back the message as received, up to line-end form. Each
//     copy starts with "Return-Path: <sender>" and "Delivered-To:
//     recipient" unless Server.NoDeliveryHeaders is set.
//   - Bounds: a message is at most MaxMessageBytes (announced as SIZE, RFC
//     1870, so a conforming MTA never sends a bigger one), a line
//     MaxLineLength, a transaction MaxRecipients RCPTs, the server
//     MaxConnections connections. go-smtp sets the read deadline when it
//     reads a command, so ReadTimeout bounds each command line and the
//     whole of a DATA transfer; each reply has WriteTimeout, each lookup
//     and each delivery DeliverTimeout.
//   - After a read error (a timeout in the middle of DATA, say) every later
//     read of the connection fails too: the client's next bytes would be
//     message text, and go-smtp would read them as commands (the
//     SMTP-smuggling class of bug). A bare "\n.\r\n" does not end DATA in
//     go-smtp, only CRLF "." CRLF does.
//   - Shutdown is graceful per transaction: a connection waiting for a
//     command outside a transaction gets 421 and is closed at once, one
//     inside (MAIL given, DATA not yet answered) finishes and gets its
//     replies first. go-smtp's own Shutdown would wait for every idle
//     connection to time out, and its Close cuts deliveries short, so
//     Server tracks connections itself. A delivery cut short by Close has
//     not been answered 250, so the MTA still holds the message.
//   - LMTP must not run on port 25 (RFC 2033 §5); a Unix socket is the
//     usual transport, and ListenUnix makes one with the right permissions
//     and replaces a stale one only when nothing answers on it.
//
// Logging: one line per delivery ("delivered" or "delivery failed", with
// user, rcpt, from, size, uidl, result) and per refusal ("recipient
// refused", "sender refused", "message refused"), each with the session
// number.
//
// Metrics: Server.Events (events.go), when set, is told of each accepted
// and refused connection and of each recipient's final reply after DATA,
// classified as delivered, temporary, permanent or over quota.
package lmtp
