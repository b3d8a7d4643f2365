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
//   - mbox locking: the dot-lock PATH.lock and then a write lock through
//     fcntl, the order of procmail and Dovecot. Postfix and mutt lock in
//     the other order, so neither lock is ever waited for while holding the
//     other: both are tried without blocking and the pair retried with
//     back-off until ctx ends (at most two minutes), then ErrTemporary. The
//     fcntl lock is an OFD lock (F_OFD_SETLK): it conflicts with the classic
//     fcntl locks of other programs like one of them, but also between two
//     Destinations in one process, and closing an unrelated descriptor does
//     not drop it. If the directory refuses the dot-lock (a /var/mail this
//     user cannot write), fcntl alone is used, as mutt and procmail then do.
//
//   - The dot-lock holds "PID:HOST", as Dovecot's do, and appears whole:
//     written to an O_TMPFILE file, then linked to its name (link never
//     replaces), so a kill cannot leave an empty one (O_EXCL and then a
//     write where O_TMPFILE is missing, as on NFS). It is stale when it
//     names this host and a PID that kill(pid, 0) reports gone (ESRCH), so
//     a SIGKILLed holder blocks nobody, and else when older than five
//     minutes (a holder refreshes its own every minute), the only rule for
//     locks from other hosts or without "PID:HOST". A stale lock is renamed
//     aside, judged again and put back (link never replaces) if it turned
//     out fresh, so a lock someone else made meanwhile is never removed.
//
//   - mbox append: with both locks held, an intent record is appended to
//     the sidecar PATH.popbox-keys and fsynced, then the entry is written
//     at the end of the mbox and the mbox fsynced; any failure truncates
//     the mbox back to its old size (and fsyncs that). The record is
//     "D KEY OFFSET LENGTH CRC32C" of the entry, and the entry's first
//     header is "X-Popbox-Key: KEY". A sidecar whose last line lacks its
//     newline (an intent torn by a crash) gets one before the next record.
//
//   - mbox recovery: a process killed in the middle of an append cannot cut
//     back, so every Deliver, locks held, first looks at the sidecar's last
//     D record (the only one whose append can be unfinished, since each
//     Deliver does this first). If the mbox ends past OFFSET but short of
//     OFFSET+LENGTH, the tail is cut back to OFFSET (and fsynced) when it
//     is all ours: a prefix of our From_ line and key header, and no other
//     writer's From_ line in it. A program locking with fcntl alone may
//     have appended after the torn entry; its mail is never cut, the torn
//     copy then stays (a duplicate, not a loss). An mbox at or past
//     OFFSET+LENGTH is never truncated, since what follows OFFSET may be
//     someone else's: a region there that fails to verify is only logged.
//     Without a sidecar there is no record to tell where an append began
//     or how long it was to be, so nothing is cut; the scan that stands in
//     for the sidecar (Has's, or the one that rebuilds it) does not count
//     the last entry's key unless the mbox ends with the blank line every
//     entry of ours ends with, so a torn entry is not taken for a delivery.
//     An entry cut right after a blank line of its body still looks whole
//     to such a scan: only the sidecar's LENGTH and CRC tell.
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
//     key asked about, and caches what it proved. The sidecar is created
//     by scanning the mbox for key headers (I records), so deleting it
//     loses nothing but the proof against torn entries (see mbox
//     recovery); without one Has falls back to such a scan itself. If a
//     mail reader rewrites the mbox (deleting older mail moves offsets),
//     verification fails and Has answers false: the engine then delivers
//     again, a duplicate, never a loss.
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
