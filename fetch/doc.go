// Package fetch downloads mail from POP3 servers into local destinations
// (package fetch/dest): the engine behind `popbox fetch`. It reads the
// account file, runs one account at a time per call to Fetch, and keeps,
// per account, a journal that makes a run safe to kill at any instant.
//
// The promise: after a kill at any point (SIGKILL included) the next run
// neither loses a message nor stores one twice (for maildir and mbox; mda,
// lmtp and smtp are at-least-once, see below).
//
// Implementation notes:
//
//   - Journal. One append-only file per account (Journal) of records
//     "CRC32 TYPE FIELDS", each written and fsynced before the run goes on:
//     seen (a UIDL listed for the first time, with its size, generation and
//     the time first seen), pend (a delivery is about to start), dlvd (the
//     destination said the message is durable), gone (no longer on the
//     server: QUIT answered +OK after our DELE, or it vanished from the
//     listing). A torn last line is ignored. Compaction rewrites the live
//     state through a temporary file, fsync, rename and directory fsync. A
//     flock on a side file keeps two fetches of one account apart.
//   - Keys. Each message gets a destination key, a 26-character base32
//     SHA-256 of account, server, user, UIDL and generation. The
//     generation changes when a UIDL comes back after it was gone or names
//     a message of another size, so a server that reuses ids (against
//     RFC 1939 §7) gets a new key and loses nothing. A UIDL the journal
//     does not know is new, so a server that renumbered everything is
//     downloaded again: duplicates, never a loss.
//   - Crash recovery. A message whose last record is pend was perhaps
//     delivered: the destination's Has(key) decides. maildir and mbox can
//     tell; mda, lmtp and smtp cannot (dest.ErrUnknowable) and the message
//     is delivered again, so those destinations are at-least-once.
//   - Deletion. DELE is sent only for messages the journal records as
//     durable (dlvd), or on purpose for messages over max_size with
//     oversize = "delete". Deletions take effect only with QUIT's +OK
//     (RFC 1939 §6), so after any failure the session is closed without
//     QUIT and the server keeps everything; the next run deletes what is
//     durable. With keep = true and delete_after, age counts from the seen
//     record, the first time this fetcher saw the message.
//   - Streaming. RETRs are pipelined (RFC 2449 §6.6) with a window of 32
//     when the server offers PIPELINING, else lock-step. Each message is
//     read completely into a spool (memory up to 256 KiB, then an unlinked
//     file in the state directory) before the destination sees it: a
//     broken connection can never hand a partial message to a destination,
//     and a slow destination never leaves a half-read reply on the wire.
//     Deliveries run in a second goroutine; the network side reads ahead
//     up to 32 MiB and, while waiting for the destination, sends NOOP
//     every keepalive interval so that the server's autologout timer
//     (RFC 1939 §3) does not end the session.
//   - Deadlines. Every command has the account's timeout; for listings and
//     bodies pop3client renews it as data arrives, so it bounds a stall, not
//     a transfer. A stop request (context cancelled) takes effect between
//     messages: the message in hand is finished and delivered, then the
//     session QUITs if it is still in step.
//   - TLS. Implicit TLS by default (RFC 8314); starttls refuses to go on
//     when CAPA lacks STLS (RFC 2595 §4); plaintext only with tls = "none".
//     Verification is done in VerifyConnection so that errors show what the
//     server presented; a fingerprint pins the leaf certificate's SHA-256.
//   - Authentication. auth = "auto" takes SCRAM-SHA-256-PLUS, then
//     SCRAM-SHA-256, then PLAIN, then USER/PASS; the last two send the
//     password itself and are used only over TLS or with tls = "none".
//   - Untrusted input is bounded: the account file (1 MiB), the journal
//     (256 MiB), each message body (twice its LIST size plus 64 KiB), and
//     everything pop3client reads.
package fetch
