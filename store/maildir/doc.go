// Package maildir is the Maildir implementation of store.Store: one
// standard Maildir (https://cr.yp.to/proto/maildir.html) per user at
// root/<user>/Maildir, with new/, cur/ and tmp/ created 0700 on demand, and
// a few popbox files beside them, and popbox-trash/ for deleted mail kept
// for a while. Besides store.Store it implements store.Admin: quotas and
// usage, retention and restore of deleted mail, expiry, and import with
// given UIDLs.
//
// Implementation notes:
//
//   - Two locks per mailbox. The POP3 session lock (RFC 1939 §4) is taken
//     without waiting, so a second Open fails at once with store.ErrInUse,
//     and held until Commit or Close; it is a byte-range lock
//     (F_OFD_SETLK) on root/.popbox-session-locks at the inode number of
//     the Maildir directory, so all the sessions of a Store share one file
//     descriptor (sessionlock.go; a mailbox on another file system flocks
//     its own popbox-pop3.lock). popbox-index.lock guards the counter and
//     the index and is held only for a few fsyncs, with flock(2); Deliver
//     takes only this one, so delivery never waits for a session. Both
//     kinds belong to the open file description, so two Stores conflict as
//     two processes do, and the kernel drops them when the holder dies:
//     nothing stale is ever left to clean up.
//
//   - UIDL = %08X%08X of (uid, epoch), upper-case hex: 16 characters,
//     within RFC 1939 §7's 1..70 in 0x21..0x7E. (The shape of Dovecot's
//     default pop3_uidl_format %08Xu%08Xv, but Dovecot prints lower case,
//     so its default UIDLs never look like popbox's.) uid comes from a
//     per-mailbox counter (popbox-uidnext) that only grows; epoch is a
//     UIDVALIDITY-like 32-bit Unix time fixed when the counter was created. A uid is allocated under
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
//   - The counter file also keeps the mailbox's running totals (messages and
//     wire octets in new/ and cur/) and the import floor (below). It is
//     rewritten and fsynced at every delivery anyway, so keeping the totals
//     there costs no extra I/O, and a quota check is O(1): Deliver reads no
//     index and no directory. Every rewrite of the index (Open's
//     reconcile, Commit) recomputes the totals from what it lists and
//     rewrites the counter only if they changed, so a warm Open still
//     writes nothing; Deliver, Import and Restore add to them under the
//     index lock. Files other tools add or remove count from the next Open.
//     A version-1 counter (written before quotas) is read as one without
//     totals; the first writer computes them from the index, once.
//
//   - Quotas (Options.Quota, per user: octets and messages). Deliver checks
//     twice: before writing, against the totals read without the lock, so
//     a full mailbox refuses at once and a nearly full one stops reading a
//     message as soon as its wire size cannot fit (a 50 MB message to a
//     full mailbox is not written first); and exactly, under the index lock
//     before the rename, so two concurrent deliveries cannot both squeeze
//     in. A refusal wraps store.ErrQuota and leaves nothing behind. Deleted
//     mail kept for restoring does not count; Restore and Import are not
//     refused (administrator actions), but count afterwards.
//
//   - Deleted mail (Options.Retention > 0): Commit renames the files into
//     popbox-trash/ (no leading dot: Maildir++ readers such as Dovecot take
//     ".name" directories for folders and would show the mail again) instead
//     of unlinking them, under names that carry the deletion time, the UIDL
//     and the size (see trash.go), so the deletion time is as durable as
//     the rename itself. The trash is synced before new/ and cur/. Deleted
//     mail never reappears in POP3 (Open reads only new/ and cur/). Purge
//     removes what is older than the retention, logging each message;
//     Restore renames messages back into new/ under new unique names and
//     new UIDLs from the counter (clients download them again; old UIDLs
//     are never reused), under the index lock only, so it works while a
//     session is open (its snapshot does not change, and its Commit rereads
//     the index). Expire deletes by delivery time through the same Commit,
//     taking the session lock without waiting (store.ErrInUse if a client
//     has the maildrop).
//
//   - Import keeps a migrated message's UIDL, and lists imported messages
//     in import order after what the mailbox has. A UIDL is normally stored
//     as a literal: the message gets a uid of its own from the counter,
//     which orders it, and the literal goes into the index record and,
//     percent-encoded, into an ",L=" field of the file name
//     (<unique>,P=<uidl>,L=<literal>,R=<size>). That covers Dovecot's own
//     UIDLs too: its default %08Xu%08Xv prints lower-case hex
//     (000000016b09839a), which is not popbox's format. A UIDL in popbox's
//     own format (upper-case, e.g. an X-UIDL) must also never be handed out
//     later: above the counter (in a later epoch, or later in its epoch) the
//     counter moves past it and the message takes that (uid, epoch) itself,
//     which sorts last anyway; in an epoch below the floor, the lowest epoch
//     popbox itself ever allocated in (which the counter keeps), popbox
//     never allocates, and it is stored as a literal like any other, so an
//     old epoch does not move it to the front. Anything in between may have
//     been handed out and is refused (store.ErrUIDLPossiblyUsed). A literal
//     too long for the name (NAME_MAX) is kept by the index alone, as a
//     foreign file's UIDL is. UIDLs present in the mailbox are refused
//     (store.ErrUIDLConflict); the check reads the index once per mailbox
//     and then only what was appended since.
//
//   - Compatibility: mailboxes written before these features read
//     unchanged. The index format is the same version 1, with an optional
//     fifth field only on records of literal imports; file names gain ",L="
//     only for those; the counter is version 2 (older popbox versions treat
//     it as damaged and recover it safely from the index and the names).
//     Messages imported by versions that stored every popbox-format UIDL
//     as its (uid, epoch) keep their UIDLs and their place.
//
//   - Counter recovery. The newest epoch any source mentions wins; if the
//     counter file or the index header vouches for it, next = max(their
//     values, highest uid seen in index records and names + 1). If neither
//     does (both lost), the highest uid ever used in that epoch is
//     unknowable because its message may be gone, so a new epoch starts,
//     chosen above every epoch seen: existing UIDLs stay, none can recur.
//     Recovering plain max(uid)+1 instead would reuse the UIDL of a deleted
//     newest message, which makes clients that "leave mail on the server"
//     skip new mail. Recovery counts the uids of deleted messages in the
//     trash too, and takes the lowest epoch anything mentions as the
//     import floor.
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
//     lock checks the quota, allocates the uid, fsyncs the counter (with
//     the new totals), renames into new/, fsyncs new/ and appends to the
//     index. Any failure removes the file (and takes it out of the totals),
//     so no partial or half-recorded message is ever visible. A file in
//     new/ already carries its UIDL, so a crash after the rename loses
//     nothing. Tests stop every operation at each of its steps, as a crash
//     would, and fail each step, and check that nothing is lost, duplicated
//     or given a used UIDL (crash_test.go).
//
//   - A full disk stops delivery, not reading. Deliver, Import and Restore
//     fail (and leave nothing) when the counter, the message or its index
//     record cannot be written; an index append cut short is cut back off.
//     Commit succeeds once the deletions are durable (renamed into the trash
//     or unlinked, directories synced): failing to drop their index records
//     and totals afterwards is only logged, and the next Open drops the
//     stale records. Open serves the snapshot it computed even when it
//     cannot write the repaired index or counter back, logging a warning:
//     the names and the old index carry every UIDL it serves. It never
//     serves a uid it could not persist: a file needing a fresh uid is left
//     out (until an Open that can write) unless the counter was written and
//     the file's new name or the new index is durable too.
//
//   - Snapshots: Open fixes the list; a message delivered later is in the
//     index and new/ but not in the snapshot, and Commit rereads the index
//     under the lock before dropping the deleted records, so it survives.
//     Maildrop.Open and Commit find a file another tool moved or re-flagged
//     by its key when its old name is gone.
//
//   - Snapshot cache (snapcache.go): the snapshot of a mailbox of 256
//     messages or more is kept in memory and served again while the
//     mailbox's directories, index and counter are provably unchanged
//     (inode, times, size, the counter's bytes), unless a change was
//     recent enough to hide behind the file system's coarse clock. A login
//     to 100,000 unchanged messages then costs 0.04 ms instead of 260 ms.
//
//   - Only regular files are served (symlinks are skipped and opened with
//     O_NOFOLLOW): a symlink in a Maildir must not expose other files.
//     Names starting with '.' are ignored, tmp/ files older than 36 hours
//     are removed at Open, as the Maildir spec asks.
package maildir
