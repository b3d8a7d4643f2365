// Package dovecot reads a Dovecot Maildir the way Dovecot's POP3 server
// (2.3, Debian's dovecot-pop3d) presents it, so that "popbox import maildir"
// can keep every message's UIDL exactly as Dovecot served it and no POP3
// client downloads its mail a second time.
//
// ReadMaildir lists the INBOX of a Maildir (its new/ and cur/; Maildir++
// subfolders are not POP3-visible) in Dovecot's POP3 order, each message
// with its file, its IMAP UID and UIDVALIDITY from dovecot-uidlist, and the
// UIDL Dovecot's UIDL command would answer.
//
// Implementation notes (the Dovecot sources cited are dovecot/core 2.3):
//
//   - dovecot-uidlist (src/lib-storage/index/maildir/maildir-uidlist.c,
//     maildir-uidlist.h). Version 1 (also Courier's courierimapuiddb):
//     header "1 <uidvalidity> <nextuid>", records "<uid> <filename>".
//     Version 3: header "3 V<uidvalidity> N<nextuid> G<guid> [<key><value>
//     ...]", records "<uid> [<key><value> ...] :<base filename>". Record
//     keys are one letter A-Z: S physical size, W virtual size, P POP3 UIDL,
//     O POP3 order, G message GUID; others are kept but unused. Version 2,
//     written only by development versions, is refused as Dovecot refuses
//     it. ParseUIDList follows maildir_uidlist_read_header and
//     maildir_uidlist_next: UIDs must be non-zero and strictly ascending, a
//     version 3 record needs its ':', a file name may not contain '/', an
//     extension with a key outside A-Z is dropped, a later record for the
//     same base name replaces an earlier one, a final line without a line
//     feed is ignored (it is an append in progress), CR before LF and
//     anything after a NUL are dropped, and the next UID is at least one
//     more than the highest UID read. Where Dovecot would declare the file
//     broken (and then delete it and renumber the messages after the broken
//     line, so their UIDLs change anyway) ParseUIDList returns
//     ErrCorruptUIDList; it is also stricter than Dovecot's strtoul and
//     sscanf on numbers that do not fit 32 bits or carry junk, refusing
//     rather than guessing.
//   - Which files are messages (maildir-sync.c maildir_scan_dir): every
//     entry of new/ and cur/ whose name does not start with '.' and holds
//     no CR or LF, identified by its base name, the part before the first
//     ':' (maildir_filename_base_cmp). Records whose file is gone are
//     expunged messages and are skipped. Entries that are not regular files
//     (symbolic links above all: the importer runs as root, Dovecot as the
//     user) are refused with ErrNotRegular, as are two files with one base
//     name in one directory (ErrDuplicateFile: Dovecot would rename one and
//     give it a new UID, and which one depends on readdir order), and a
//     name with an empty base name (":2,S", which Dovecot renames). A base
//     name in both new/ and cur/ is one message, read from cur/: that is a
//     rename from new/ to cur/ caught half way, which Dovecot treats the
//     same way (maildir_uidlist_sync_next_uid).
//   - Files not in dovecot-uidlist yet (delivered since Dovecot last looked)
//     get the UIDs Dovecot would give them at its next POP3 login
//     (maildir_uidlist_assign_uids): the next UID onwards, in
//     maildir_filename_sort_cmp order of the names they will have in cur/
//     by then (the login moves files from new/ to cur/, adding ":2," to a
//     name without ':'; maildir_scan_dir): by the seconds before the first
//     '.', then the microseconds after 'M' in the second part if both names
//     have them, then the rest of the name up to ':' byte by byte (as signed
//     chars), a name that ends there sorting after longer ones. No client
//     can have seen their UIDLs, so this cannot cause a download twice; it
//     is chosen over refusing because it is exactly what the next Dovecot
//     login would show (the real-Dovecot test checks the prediction), and
//     such messages are marked Message.Unassigned. It assumes
//     pop3_no_flag_updates=no (the default), which is what moves the files,
//     and that dovecot.index does not remember a higher next UID than
//     dovecot-uidlist (it can only after dovecot-uidlist was lost); if it
//     does, Dovecot would number these files higher, which is harmless
//     here for the same reason.
//     Without a dovecot-uidlist at all ReadMaildir refuses (ErrNoUIDList):
//     Dovecot has never served the mailbox, the UIDVALIDITY it would pick
//     is unknowable, and the mail can be imported as new mail instead. An
//     empty Maildir without one is simply empty.
//   - The UIDL (src/pop3/pop3-commands.c pop3_get_uid): a 'P' record
//     extension wins (pop3_save_uidl=yes, or a migration tool, wrote it);
//     an empty 'P' means the base file name (maildir-mail.c,
//     MAIL_FETCH_UIDL_BACKEND). Otherwise, with pop3_reuse_xuidl=yes, the
//     value of the message's first X-UIDL header field that has a colon
//     (ScanXUIDL). Otherwise pop3_uidl_format, expanded by Dovecot 2.3's
//     var_expand rules (lib/var-expand.c; format.go): %u the UID, %v the
//     UIDVALIDITY, %f the base file name, %g the 'G' GUID or else the base
//     file name, with [<offset>.]<width> and the modifiers L U X R T. The
//     format must pass Dovecot's own configuration check
//     (mail_storage_settings_check: only %v %u %m %f %g %%, no %{...}, at
//     least one variable); %m (header MD5) is refused because Dovecot's
//     Maildir storage has none either. The default %08Xu%08Xv gives
//     lower-case hex, since var_expand's X modifier prints with "%llx".
//   - With pop3_uidl_duplicates=rename, repeated UIDLs get "-2", "-3"...
//     appended in UID order (uidl_rename_duplicate).
//   - POP3 order (pop3-client.c pop3_sort_program, index-sort.c): by the
//     'O' record extension as an unsigned number, messages without one (or
//     with one that is not a number) counting as 4294967295, ties in UID
//     order. Without any 'O' that is UID order.
//   - UIDLs popbox cannot serve, and so cannot import unchanged, are
//     reported together in a *UIDLProblems error: RFC 1939 §7 allows 1 to
//     70 characters in 0x21..0x7E, unique in the mailbox. Dovecot serves
//     whatever it computed (an X-UIDL value with trailing blanks, folded,
//     or empty, is sent as is), so such messages need the administrator's
//     decision; ReadMaildir still returns all messages with that error.
//   - Consistency. Dovecot appends to dovecot-uidlist in place while
//     holding dovecot-uidlist.lock, so a lock younger than Dovecot's own
//     stale timeout (120 s, MAILDIR_UIDLIST_LOCK_STALE_TIMEOUT) makes
//     ReadMaildir fail with ErrLocked. The file is read, the directories
//     scanned, and the file checked again; if it changed in between the
//     whole read is repeated a few times, then ErrChanged. Stop Dovecot and
//     mail delivery for the user before importing: anything delivered or
//     expunged through Dovecot afterwards is not seen.
//   - Message.Open opens the very file that was scanned (same device and
//     inode) through an os.Root of the Maildir, so no symbolic link, not
//     even one swapped in between the scan and the import, leads out of the
//     Maildir to be read with root's rights. The Maildir path itself is
//     trusted. dovecot-uidlist is opened with O_NOFOLLOW.
//   - Sizes. Message.Size is the file size. Dovecot's LIST shows the
//     virtual size (LF counted as CRLF) and, unlike popbox's wire size
//     (pop3.WireSize), does not count the CRLF it adds after a message that
//     does not end with a line end; the two agree for every message that
//     does. Dovecot also takes the virtual size from a W record or a ,W=
//     in the file name whenever there is one, right or not; popbox
//     measures the file.
//   - The rules were read from the sources and are checked against a real
//     Dovecot 2.3.19 (dovecot_test.go): default and other formats, X-UIDL
//     edge cases, duplicates renamed, 'P' and 'O' records, versions 1 and
//     3 of a hand-written dovecot-uidlist with its oddities, and the UIDs
//     predicted for new files.
//
// Not supported: Dovecot 2.4's new variable syntax in pop3_uidl_format
// ("%{uid | hex(8)}"), pop3_deleted_flag (such messages would be listed),
// and mbox or sdbox/mdbox storage.
package dovecot
