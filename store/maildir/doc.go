// Package maildir is the Maildir implementation of store.Store: one
// standard Maildir (https://cr.yp.to/proto/maildir.html) per user at
// root/<user>/Maildir, with new/, cur/ and tmp/ created 0700 on demand, and
// a few popbox files beside them.
//
// Implementation notes:
//
//   - Two flock(2) locks per mailbox, on files that are never removed.
//     popbox-pop3.lock is the POP3 session lock (RFC 1939 §4), taken with
//     LOCK_NB so a second Open fails at once with store.ErrInUse and held
//     until Commit or Close. popbox-index.lock guards the counter and the
//     index and is held only for a few fsyncs; Deliver takes only this one,
//     so delivery never waits for a session. flock belongs to the open file
//     description and every lock attempt opens the file anew, so two Opens
//     in one process conflict just as two processes do; the kernel drops the
//     lock when the holder dies, so nothing stale is ever left to clean up.
//
//   - UIDL = Dovecot's %08X%08X of (uid, epoch): 16 characters, within RFC
//     1939 §7's 1..70 in 0x21..0x7E. uid comes from a per-mailbox counter
//     (popbox-uidnext) that only grows; epoch is a UIDVALIDITY-like 32-bit
//     Unix time fixed when the counter was created. A uid is allocated under
//     the index lock and the counter fsynced before the uid is used, so a
//     UIDL is never handed out twice, even after the message with the
//     highest one is deleted.
//
//   - Every UIDL is kept in three places, so any one can be lost: the
//     counter, the index, and the file name. Deliver names a file
//     <unique>,P=<uidl>,R=<wire size> (":2,<flags>" follows once another
//     tool moves it to cur/), and the first Open that sees a foreign file
//     (another MDA's delivery into new/, or a file put into cur/) measures
//     it once and renames it the same way in its directory. Maildir tools
//     change only the directory and the part after ':', so the name keeps
//     both fields, and the key identifying a message is the part before ':'
//     with popbox's fields removed. The field letters are not Dovecot's W=
//     (its virtual size adds no final CRLF, so it would disagree with ours
//     by 2) nor mbsync's U= (its own IMAP UID).
//
//   - Counter recovery. The newest epoch any source mentions wins; if the
//     counter file or the index header vouches for it, next = max(their
//     values, highest uid seen in index records and names + 1). If neither
//     does (both lost), the highest uid ever used in that epoch is
//     unknowable because its message may be gone, so a new epoch starts,
//     chosen above every epoch seen: existing UIDLs stay, none can recur.
//     Recovering plain max(uid)+1 instead would reuse the UIDL of a deleted
//     newest message, which makes clients that "leave mail on the server"
//     skip new mail.
//
//   - Index (popbox-index): a header (epoch, next) and one line per message
//     (key, UIDL, wire size), each line with its own CRC-32C. Deliver
//     appends one line (O(1) per delivery, one fsync); the file is rewritten
//     whole (temp file, fsync, rename, directory fsync) only when Open finds
//     it out of step with the directories or Commit deletes, both O(n) anyway.
//     A rewrite after every delivery would make filling a mailbox O(n²); an
//     append-only log with separate compaction would need its own policy,
//     while here the log only ever holds live messages plus what the next
//     rewrite removes. The parser is strict and salvages: lines failing
//     the checksum or syntax, a torn last line, duplicates or a missing
//     header mark the index damaged, the good lines are still used, and the
//     rest is rebuilt from names (no reading) or, for foreign files never
//     indexed, by measuring the file.
//
//   - Open on a warm mailbox reads the counter, the index and the two
//     directories (names and types from readdir, no stat, no message file)
//     and writes nothing: O(n) with small constants, sorted by (epoch, uid),
//     which is delivery order since epochs only grow.
//
//   - Deliver writes tmp/<unique> counting the wire size in the same pass
//     (pop3.WireCounter via io.MultiWriter), fsyncs it, and under the index
//     lock allocates the uid, fsyncs the counter, renames into new/, fsyncs
//     new/ and appends to the index. Any failure removes the file, so no
//     partial or half-recorded message is ever visible. A file in new/
//     already carries its UIDL, so a crash after the rename loses nothing.
//
//   - Snapshots: Open fixes the list; a message delivered later is in the
//     index and new/ but not in the snapshot, and Commit rereads the index
//     under the lock before dropping the deleted records, so it survives.
//     Maildrop.Open and Commit find a file another tool moved or re-flagged
//     by its key when its old name is gone.
//
//   - Only regular files are served (symlinks are skipped and opened with
//     O_NOFOLLOW): a symlink in a Maildir must not expose other files.
//     Names starting with '.' are ignored, tmp/ files older than 36 hours
//     are removed at Open, as the Maildir spec asks.
package maildir
