// Package dest is the local side of `popbox fetch`: where a message
// downloaded from a POP3 server is stored, as fetchmail, getmail and mpop
// do it. Open parses a destination spec (maildir:PATH, mbox:PATH,
// mda:COMMAND, lmtp:ADDR, smtp:ADDR) and every Destination offers Deliver,
// durable when it returns nil, and Has, which tells the fetch engine after
// a crash whether a delivery its journal left pending did happen, so that a
// message is delivered neither twice nor never.
//
// Implementation notes:
//
//   - Messages arrive as the POP3 client returns them: dot-unstuffed with
//     CRLF line ends. maildir, mbox and mda store or pipe Unix line ends
//     (CRLF becomes LF, a lone CR stays), like the other fetchers; lmtp and
//     smtp send CRLF, dot-stuffed by go-smtp. Every path streams through
//     fixed buffers; no message is ever held in memory. Deliver reads at
//     most Options.MaxMessageSize octets from the remote side and fails
//     (ErrTooLarge) rather than store a truncated message.
//
//   - maildir (https://cr.yp.to/proto/maildir.html): the message is
//     written to tmp/, fsynced, linked into new/ (link never replaces),
//     new/ fsynced, the tmp/ name removed and tmp/ fsynced. Any failure
//     before new/ is fsynced removes both names, so an error always means
//     "not delivered". The file name <sec>.M<usec>P<pid>Q<seq>R<rand>_<key>.<host>
//     carries the key (its '.' written as ','), and mail readers keep the
//     part before ':' when they move a file to cur/ and add ":2,FLAGS", so
//     Has finds a key by listing new/ and cur/: once, then from a cache
//     that Deliver keeps current and that is refreshed on a miss only when
//     a directory's mtime moved.
//
//   - mbox is mboxrd: a line matching "^>*From " gets one more '>', which a
//     reader removes again, so every message round-trips exactly (unlike
//     mboxo, which cannot tell a quoted ">From " from an original one).
//     Each entry is "From SENDER asctime-date", the message, a line end if
//     it lacked one, and a blank line. The entry is first spooled to an
//     unnamed temporary file next to the mbox, so the mbox is locked only
//     for a local copy and never for the duration of a slow download.
//
//   - mbox locking: the dot-lock PATH.lock (O_EXCL; one older than five
//     minutes is stale and broken, a holder refreshes its own every minute)
//     and then a write lock through fcntl, the order of procmail and
//     Dovecot. Postfix and mutt lock in the other order, so neither lock is
//     ever waited for while holding the other: both are tried without
//     blocking and the pair retried with back-off until ctx ends (at most
//     two minutes), then ErrTemporary. The fcntl lock is an OFD lock
//     (F_OFD_SETLK): it conflicts with the classic fcntl locks of other
//     programs like one of them, but also between two Destinations in one
//     process, and closing an unrelated descriptor does not drop it. If the
//     directory refuses the dot-lock (a /var/mail this user cannot write),
//     fcntl alone is used, as mutt and procmail then do.
//
//   - mbox append: with both locks held, an intent record is appended to
//     the sidecar PATH.popbox-keys and fsynced, then the entry is written
//     at the end of the mbox and the mbox fsynced; any failure truncates
//     the mbox back to its old size (and fsyncs that). The record is
//     "D KEY OFFSET LENGTH CRC32C" of the entry, and the entry's first
//     header is "X-Popbox-Key: KEY".
//
//   - Why this mbox key record. Writing the sidecar after the mbox fsync
//     would lose the key to a crash between the two, and a header alone
//     would make Has scan the whole mbox and, worse, count an entry torn by
//     a crash as delivered. With the intent fsynced first, a key without a
//     record was never appended; a key with one is stored exactly when the
//     recorded region still starts with its From_ line and key header and
//     has the recorded CRC, which a torn entry or one cut back lacks. So
//     Has is right across a crash at any point, reads only the sidecar (the
//     part appended since its last call) and the entries recorded for the
//     key asked about, and caches what it proved. The sidecar is created by scanning the mbox
//     for key headers (I records), so deleting it loses nothing; without
//     one Has falls back to such a scan itself. If a mail reader rewrites
//     the mbox (deleting older mail moves offsets), verification fails and
//     Has answers false: the engine then delivers again, a duplicate, never
//     a loss.
//
//   - mda: /bin/sh -c COMMAND in its own process group, message on stdin,
//     POPBOX_KEY, POPBOX_SENDER and POPBOX_RECIPIENT in the environment
//     (never interpolated into the command, so nothing from the server
//     meets the shell). Success is exit 0 after reading the whole message;
//     exit 75 (EX_TEMPFAIL) is ErrTemporary; other failures quote the last
//     lines of its output (a 4 KiB tail). After MDATimeout, on ctx's end or
//     when reading the message fails, the whole group is SIGKILLed before
//     stdin is closed, so no MDA ever sees a truncated message end cleanly.
//
//   - lmtp (RFC 2033) and smtp (RFC 5321) use go-smtp's client, one
//     connection per message. Success is the recipient's 250 after the
//     final dot; 4xx and network failures are ErrTemporary, 5xx permanent.
//     Every read and write has a deadline: go-smtp's per-command limits set
//     to RFC 5321 §4.5.3.2's values, one per data write (go-smtp has none
//     there), all capped by ctx, which also aborts a blocked operation.
//
//   - mda, lmtp and smtp keep no record, so their Has returns ErrUnknowable.
package dest
