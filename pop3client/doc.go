// Package pop3client is the device side of POP3: a client for RFC 1939 with
// the extension mechanism (RFC 2449: CAPA, PIPELINING, RESP-CODES), STLS
// (RFC 2595), SASL AUTH (RFC 5034), the SYS and AUTH response codes
// (RFC 3206) and implicit TLS (RFC 8314).
//
// A Client is one connection: Dial or DialTLS, log in with User+Pass or Auth,
// list and fetch with Stat, List, UIDL, Retr, Top or the pipelined RetrMany,
// mark with Dele or DeleMany, and end with Quit (deletions applied) or Close
// (nothing deleted, RFC 1939 §6).
//
// Implementation notes:
//
//   - Mail is delivered byte for byte: Retr returns a stream that removes the
//     RFC 1939 §3 byte-stuffing and stops at the terminating line, keeping the
//     line ends the server sent and lines of any length. It never holds a
//     message, or even a line of one, in memory (pop3.DotReader, shared
//     with the server's tests; it also accepts a sloppy ".LF" terminator).
//   - Every read of server data has a bound: status and listing lines are
//     limited to Options.MaxLine (pop3.ReadLine drops the excess without
//     storing it), LIST/UIDL listings to Options.MaxListing entries, CAPA to
//     a fixed number of lines, AUTH to a fixed number of challenges. What
//     exceeds a bound is ErrProtocol.
//   - A reply that breaks the grammar (no +OK/-ERR, control characters,
//     fields that are not numbers, a listing cut short) is ErrProtocol: the
//     connection is closed and the Client refuses further commands, because
//     nothing read after a malformed reply can be trusted to be in step. An
//     -ERR reply is an *Error and leaves the session usable.
//   - Deadlines: each command gets the context's deadline or, without one,
//     Options.Timeout. Bodies and listings, which may be long, refresh the
//     Timeout as data arrives, so it limits a stall rather than a transfer.
//     Cancelling the context sets a deadline in the past on the connection
//     (context.AfterFunc), which interrupts a blocked read or write at once;
//     the connection is then closed, since the session is out of step.
//   - Pipelining (RFC 2449 §6.6) keeps at most the given window of commands
//     unanswered, and sends the next only when a reply (and its body) has
//     been read entirely, so the number of commands in flight is exact and
//     the commands always fit in the socket buffers.
//   - STLS refuses to go on if the server sent anything after its +OK before
//     the TLS handshake: such bytes would otherwise be read as if they had
//     come over TLS (the CVE-2011-0411 class of injection). Cached
//     capabilities are forgotten after STLS and after login (RFC 2595 §4,
//     RFC 2449 §5).
//   - Passwords and SASL responses never appear in errors or logs.
//   - A Client is used by one goroutine at a time; Close may be called from
//     any goroutine to abort.
package pop3client
