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
//   - A lock-step download (RETR, wait for the reply, RETR the next) is
//     helped along by prefetch.go: once a RETR's reply is out and no command
//     waits, the session prepares the reply to RETR of the next message in
//     memory while the client takes in the last one. Stored messages and
//     the snapshot do not change within a session, so the prepared bytes are
//     the ones RETR would send; memory is bounded per message (64 KiB), per
//     server (256 sessions) and in time (dropped after 2 s of silence).
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
//     after the same delay, counted and logged the same way.
//   - Server.Events (events.go), when set, is told of connections, logins,
//     commands and messages for metrics, through an interface so that
//     this package does not depend on a metrics library. Every name it is
//     given comes from this package's own tables (CommandNames,
//     LoginMechanisms), never from what a client typed, and a nil Events
//     costs one comparison per command.
//
// Defence against password guessing and abuse (penalty.go):
//
//   - A failed login is answered after a delay that doubles with each
//     consecutive failure, from Server.AuthFailureDelay up to
//     Server.AuthFailureDelayMax (defaults 2 s and 15 s: 2, 4, 8, 15, 15 s,
//     as Dovecot's auth_penalty). Failures are counted per remote address
//     and per (user, remote address); the delay is the larger of the two
//     counts for the address the attempt comes from. A guesser is slowed
//     down; the same user logging in from another address is not. A
//     successful login resets its address's count and that user's count
//     from that address. The counts live in a table owned by the Server,
//     bounded to 100,000 entries (least recently failed forgotten first),
//     each forgotten after 15 minutes without a failure.
//   - Per remote address: at most Limits.MaxConnectionsPerIP sessions
//     (default 50), at most Limits.MaxUnauthenticatedPerIP of them not yet
//     logged in (default 10). Over either cap a connection gets
//     "-ERR [SYS/TEMP] too many connections from your address" (RFC 3206
//     §4) and is closed; sessions already open are not touched.
//   - Before login a session has Limits.AuthTimeout from connect (default
//     60 s, TLS handshake included) and Limits.MaxPreAuthBytes octets
//     (default 64 KiB); past either it is told why with -ERR and closed.
//
// Every failed login is logged once, at level INFO, with the message
// "login failed" and these attributes in this order, a format kept stable
// for fail2ban (contrib/fail2ban/popbox.conf matches it). With
// slog.TextHandler:
//
//	time=2026-11-27T11:30:00.123Z level=INFO msg="login failed" remote=192.0.2.7:51234 remote_ip=192.0.2.7 user=alice mechanism=USER failures=1 delay=2s
//
// remote_ip is the address the penalty counts; user the name as the client
// gave it ("" if none); mechanism USER for USER/PASS or the SASL mechanism;
// failures the count that set delay. The handler quotes any value with a
// space, '=' or '"', so a user name cannot forge the remote_ip part.
package pop3server
