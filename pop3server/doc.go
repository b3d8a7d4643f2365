// Package pop3server implements the server side of POP3 (RFC 1939) with the
// extension mechanism (RFC 2449), STLS (RFC 2595), response codes (RFC 3206),
// SASL authentication (RFC 5034), UTF-8 (RFC 6856) and implicit TLS
// (RFC 8314).
//
// The shape follows net/http: a Server value holds the configuration and the
// limits, Serve(l) runs the accept loop for a listener, Shutdown(ctx) stops
// gracefully. Storage and accounts are behind the Backend interface; this
// package never touches files.
//
// Implementation notes:
//
//   - One goroutine per connection reads a command, answers it, and only then
//     reads the next. Replies go into a bufio.Writer that is flushed only when
//     no further pipelined command is already buffered (RFC 2449 §6.6
//     PIPELINING), so a burst of commands becomes few writes. Because the
//     goroutine blocks in a write while the client is not reading, it stops
//     reading commands while output is backed up: a flood of commands costs
//     no memory beyond the two fixed buffers.
//   - Every read and every write has a deadline (Limits.IdleTimeout); a
//     command line over Limits.MaxLine gets -ERR and the session stays in
//     step (pop3.ReadLine discards the rest of the line).
//   - The maildrop is locked and snapshotted at login (store.Maildrop).
//     DELE only marks; the marks are applied by QUIT in the TRANSACTION state
//     and by nothing else (RFC 1939 §6). A dropped connection, a timeout or a
//     server shutdown closes the maildrop unchanged.
//   - STLS discards whatever the client sent after the STLS command and before
//     the handshake, so a command injected in plaintext cannot be executed as
//     if it came over TLS (the CVE-2011-0411 class of bugs).
//   - Unknown users and wrong passwords take the same path: the same reply,
//     after the same delay (Server.AuthFailureDelay).
package pop3server
