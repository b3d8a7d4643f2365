// Package postgres is the PostgreSQL implementation of store.Store and
// store.Admin: mailboxes, message bodies and session locks live in one
// database, through pgx v5 (pgxpool), so that any number of popbox
// frontends on any number of machines can serve the same users. It passes
// the same contract tests as store/maildir (store/storetest.Run and
// RunAdmin) and follows store/maildir's rules wherever the contract leaves
// a choice: user names, UIDL format, import placement, sizes.
//
// Open(ctx, dsn, Options) connects and checks the schema; Migrate(ctx, dsn)
// creates or upgrades it (the `popbox migrate` step). Close stops the
// store.
//
// Implementation notes:
//
//   - Schema (migrations/0001_init.sql): mailboxes (one row per user: the
//     UIDL counter, the next listing position and the totals of live
//     messages), messages (one row per message: position, UIDL, wire size,
//     stored size, number of chunks, delivery time, deletion time),
//     message_chunks (the body, chunk by chunk) and leases (session locks).
//     A deleted message kept for Restore is the same row with deleted_at
//     set, so deleting and restoring move no data, and Purge is one DELETE
//     whose foreign keys cascade to the chunks. Partial unique indexes make
//     UIDLs and positions unique among live messages only: a deleted
//     message keeps its old UIDL (Restore can select by it) while a new one
//     may be imported with it.
//
//   - The mailbox row is the mailbox's write lock (SELECT ... FOR NO KEY
//     UPDATE, taken by Deliver, Import, Commit, Restore and Expire, for
//     the last statements of their transactions only). Under it the quota
//     is checked against the totals and the counter is advanced, so quotas
//     are exact under any concurrency, from any number of frontends, and
//     no UIDL is handed out twice. The totals are kept in the row, in the
//     same transactions that change the messages, so a quota check and
//     Usage read one row instead of summing a mailbox. NO KEY: rows that
//     merely reference the mailbox (foreign-key checks) do not wait.
//
//   - UIDL = %08X%08X of (uid, epoch), exactly store/maildir's format, from
//     the per-mailbox counter, which only grows; epoch is the database's
//     time when the mailbox row was created, so a mailbox deleted and
//     created again does not hand out its old UIDLs again. The counter is
//     transactional, so unlike the Maildir's it never needs recovering.
//     Import keeps a given UIDL with store/maildir's rules (placeImported),
//     so a mailbox moves from one backend to the other keeping its UIDLs
//     and the counter can never produce one of them later; positions, not
//     UIDLs, order the listing, so imported messages are listed in import
//     order whatever their UIDLs.
//
//   - Sizes are wire sizes (store's package doc), counted with
//     pop3.WireCounter in the same pass that stores the chunks, and kept in
//     the row: STAT, LIST and UIDL read no body.
//
//   - Bodies are stored in chunks of chunkSize (256 KiB) as bytea rows,
//     written while Deliver reads the message and read one at a time by the
//     reader Maildrop.Open returns, into one reused buffer (pgx's
//     BytesScanner), so neither direction holds a message whole: the test
//     moves 50 MB through a few MiB of heap. 256 KiB makes the per-row
//     costs (a round trip, a tuple header, a TOAST pointer) negligible next
//     to the data, while a reader holds little, and it stays far below
//     bytea's and the protocol's limits. One large object per message
//     (lo_*) was the alternative: it streams too, but large objects live
//     outside the tables, are not removed by ON DELETE CASCADE (orphans
//     need vacuumlo) and are awkward to back up selectively. The reader
//     fetches each chunk by (message_id, seq) on a connection it holds only
//     for that query, so a slow POP3 client ties up no connection, and it
//     checks the chunks add up to the stored size, so a damaged message
//     fails instead of arriving truncated. The column keeps PostgreSQL's
//     default storage: TOAST compression saves space on text mail and
//     gives up within the first kilobyte of data that does not compress,
//     such as base64 attachments.
//
//   - Deliver is one transaction: the chunks first (as the message is
//     read; the foreign key from a chunk to its message is DEFERRABLE
//     INITIALLY DEFERRED, so the message row, whose UIDL is not known yet,
//     comes last), then the mailbox lock, the exact quota check, the UIDL,
//     the message row and the totals, then COMMIT. Nothing is visible
//     before the commit; a failing reader, a refusal, a cancelled context
//     or a lost connection rolls everything back, and a crashed client
//     leaves nothing to clean up. The cost is a transaction open for as long
//     as the message takes to arrive; it holds no lock another delivery or
//     session waits for until its last few statements. As in store/maildir
//     a cheap quota check before reading refuses a full mailbox at once and
//     stops reading as soon as the message cannot fit.
//
//   - Session lock: a lease row per mailbox (holder, fencing token,
//     expires_at), since a lock held by a connection (an advisory lock or
//     an open transaction) would pin one connection per idle POP3 session
//     and would not say which node holds it. Open takes the lease in one
//     INSERT ... ON CONFLICT DO UPDATE ... WHERE expires_at <= now(): it
//     succeeds if there is no lease or the holder let it expire, else
//     returns store.ErrInUse at once ([IN-USE], RFC 2449 §8.1.2). Expiry is
//     computed by the database's clock alone (now() + LeaseDuration), so
//     the frontends' clocks do not matter. Each grant takes a new token
//     from a sequence: the fencing token.
//
//   - Renewal: one goroutine per Store renews every lease the node holds in
//     a single UPDATE every LeaseDuration/3 (10,000 idle sessions cost one
//     statement, not 10,000), on a connection pool of its own, so that
//     renewals never queue behind deliveries. A lease is only extended
//     while unexpired; one found expired or taken over is lost for good,
//     logged, and its session's Commit will fail. A node that dies, is
//     paused or loses the database stops renewing, and another node can
//     open the mailbox at most LeaseDuration (default 30 s) after the last
//     renewal.
//
//   - Fencing: Commit is one transaction that first locks the lease row
//     where mailbox, token and an unexpired expires_at all match. If none
//     does (the lease expired, or another node took it over while this one
//     was paused or cut off), Commit applies no deletion and returns
//     ErrLeaseLost. If it does, nobody can take the lease over until the
//     transaction ends (that needs the row), so the deletions are made by
//     the holder however long they take; the same transaction deletes the
//     lease row. Close deletes the lease row by token (a no-op if it was
//     lost), so it can never release someone else's lease. Expire takes and
//     drops the lease inside its own transaction, so it needs no renewal
//     and cannot leave a lease behind.
//
//   - Snapshots: Open reads the live messages of the mailbox in one
//     statement after taking the lease and keeps their row ids; mail
//     delivered or restored later is not in the snapshot (and appears at
//     the next Open), and Commit deletes by those ids only. A message
//     deleted or purged behind the session's back (possible only after its
//     lease was lost) reads as fs.ErrNotExist.
//
//   - Deleted mail (Options.Retention > 0) keeps its row and chunks with
//     deleted_at set; Usage and quotas ignore it; Restore makes it live
//     again with a new UIDL, a new position and a new delivery time under
//     the mailbox lock only, so it works during a session; Purge deletes
//     what was deleted Retention or more ago. With Retention 0, Commit
//     deletes rows and chunks at once.
//
//   - Schema versions: numbered SQL files embedded in the binary
//     (migrations/NNNN_name.sql, 1, 2, ... without gaps) and a
//     schema_migrations table. Migrate applies the missing ones, each in a
//     transaction with its row, under pg_advisory_lock, so frontends
//     migrating at once apply each migration exactly once; it refuses a
//     schema newer than the binary. Open refuses any database whose
//     version is not exactly the binary's (ErrSchemaVersion, naming `popbox
//     migrate` when the database is older): a frontend must not write to a
//     schema it was not built for.
//
//   - Timeouts. Operations with a context (Open, Deliver, Import, the Admin
//     methods, Migrate) are bounded by it. Those without one use internal
//     bounds: Maildrop.Open and each chunk fetch of its reader readTimeout
//     (30 s), Maildrop.Commit commitTimeout (60 s), Maildrop.Close and
//     rollbacks releaseTimeout (10 s), a lease renewal LeaseDuration/3. A
//     connection attempt is bounded by the DSN's connect_timeout, else
//     connectTimeout (10 s). Pool sizes come from the DSN (pool_max_conns;
//     pgx's default is max(4, CPUs)); a delivery holds one connection for
//     as long as its message takes to arrive, a session holds none between
//     queries.
package postgres
