package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/popbox/popbox/config"
	"github.com/popbox/popbox/internal/app"
	"github.com/popbox/popbox/migrate/dovecot"
	"github.com/popbox/popbox/store"
	"github.com/popbox/popbox/userdb"
)

// withMailStore opens the user database (which must exist) and the store
// as configured, and checks that user exists; f gets the canonical name.
func withMailStore(g *globals, cmd *cobra.Command, user string, f func(cfg config.Config, users *userdb.DB, st app.Mail, name string) error) error {
	cfg, err := g.load(cmd)
	if err != nil {
		return err
	}
	users, err := openUsers(cfg, userdb.Options{}, false)
	if err != nil {
		return err
	}
	defer users.Close()
	u, err := users.Get(cmd.Context(), user)
	if errors.Is(err, userdb.ErrNotFound) || errors.Is(err, userdb.ErrInvalidName) {
		return withCode(exitNoUser, fmt.Errorf("no such user %q", user))
	}
	if err != nil {
		return err
	}
	st, err := openMail(cmd, cfg, newLogger(cfg.Log, cmd.ErrOrStderr()), users)
	if err != nil {
		return err
	}
	defer st.Close()
	return f(cfg, users, st, u.Name)
}

func newRestore(g *globals) *cobra.Command {
	var since time.Duration
	var uidl string
	var all bool
	cmd := &cobra.Command{
		Use:   "restore USER (--since DURATION | --uidl UIDL | --all)",
		Short: "Put deleted mail back into a mailbox",
		Long: `Put back messages the user deleted (or the server expired) that are still
kept (mail.keep_deleted_days, 7 by default). They get new UIDLs, so the
user's mail client downloads them again. Choose them with --since (deleted
within that long, e.g. 2h or 72h), --uidl (the one message that had this
UIDL), both, or --all. Works while the user is connected; their session
sees the messages from their next login.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if since == 0 && uidl == "" && !all {
				return withCode(exitUsage, errors.New("choose what to restore: --since DURATION, --uidl UIDL or --all"))
			}
			if since < 0 {
				return withCode(exitUsage, errors.New("--since must be positive"))
			}
			return withMailStore(g, cmd, args[0], func(_ config.Config, _ *userdb.DB, st app.Mail, name string) error {
				msgs, err := st.Restore(cmd.Context(), name, store.RestoreOptions{Since: since, UIDL: uidl})
				if err != nil {
					return err
				}
				out := cmd.OutOrStdout()
				for _, m := range msgs {
					fmt.Fprintf(out, "restored %s (%d octets)\n", m.UIDL, m.Size)
				}
				fmt.Fprintf(out, "%d message(s) restored for %s\n", len(msgs), name)
				return nil
			})
		},
	}
	cmd.Flags().DurationVar(&since, "since", 0, "restore messages deleted within this long (e.g. 24h)")
	cmd.Flags().StringVar(&uidl, "uidl", "", "restore the message that had this UIDL")
	cmd.Flags().BoolVar(&all, "all", false, "restore every message still kept")
	return cmd
}

func newImport(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "import",
		Short: "Import mail from another server",
	}
	var user string
	var opts dovecot.Options
	var skip bool
	md := &cobra.Command{
		Use:   "maildir --user NAME PATH",
		Short: "Import a Dovecot Maildir with the UIDLs Dovecot served",
		Long: `Import the messages of a Dovecot Maildir (its INBOX: new/ and cur/) into a
popbox user's mailbox, each with the UIDL Dovecot's POP3 served for it, so
that no client downloads anything again. UIDLs come from dovecot-uidlist and
the flags below, which must match the Dovecot configuration that served
the mailbox. Messages are imported in Dovecot's POP3 order and listed in
that order, after any mail the user has in popbox already. Stop Dovecot and
mail delivery for the user first. Importing the same Maildir again skips the
messages already there (same UIDL), so an interrupted import can be run
again. A UIDL popbox may have given to a message before (deleted since)
cannot be imported: the command stops there and names the message.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if user == "" {
				return withCode(exitUsage, errors.New("--user NAME is required"))
			}
			msgs, rerr := dovecot.ReadMaildir(args[0], opts)
			var probs *dovecot.UIDLProblems
			switch {
			case errors.As(rerr, &probs) && skip:
				fmt.Fprintf(cmd.ErrOrStderr(), "popbox: skipping: %v\n", rerr)
			case rerr != nil:
				return withCode(exitUsage, fmt.Errorf("%s: %w", args[0], rerr))
			}
			// In Dovecot's POP3 order (ReadMaildir's): the store lists
			// imported messages in the order they are imported.
			return withMailStore(g, cmd, user, func(_ config.Config, _ *userdb.DB, st app.Mail, name string) error {
				out := cmd.OutOrStdout()
				imported, already := 0, 0
				for _, m := range msgs {
					if probs != nil && probs.Skip(m.Path) {
						continue
					}
					f, err := m.Open()
					if err != nil {
						return fmt.Errorf("%s: %w", m.Path, err)
					}
					_, err = st.Import(cmd.Context(), name, f, m.UIDL)
					f.Close()
					switch {
					case errors.Is(err, store.ErrUIDLConflict):
						// A message with this UIDL is in the mailbox: this
						// one, imported before.
						already++
						continue
					case errors.Is(err, store.ErrUIDLPossiblyUsed):
						// Not in the mailbox, but popbox may have served
						// this UIDL for another message: a client that saw
						// it would never download this one. Skipping it
						// would lose it from the migration.
						return fmt.Errorf("cannot import %s (UIDL %s) with its UIDL: %w; "+
							"%d imported so far, %d already there, the rest not imported", m.Path, m.UIDL, err, imported, already)
					case err != nil:
						return fmt.Errorf("importing %s (UIDL %s): %w; %d imported so far", m.Path, m.UIDL, err, imported)
					}
					imported++
				}
				fmt.Fprintf(out, "%d message(s) imported for %s", imported, name)
				if already > 0 {
					fmt.Fprintf(out, ", %d already there (same UIDL) and skipped", already)
				}
				fmt.Fprintln(out)
				return nil
			})
		},
	}
	md.Flags().StringVar(&user, "user", "", "the popbox user to import into")
	md.Flags().StringVar(&opts.UIDLFormat, "uidl-format", "", "Dovecot's pop3_uidl_format (default %08Xu%08Xv)")
	md.Flags().BoolVar(&opts.ReuseXUIDL, "reuse-xuidl", false, "Dovecot's pop3_reuse_xuidl = yes: X-UIDL headers are UIDLs")
	md.Flags().StringVar(&opts.UIDLDuplicates, "uidl-duplicates", "", "Dovecot's pop3_uidl_duplicates (allow or rename)")
	md.Flags().StringVar(&opts.ControlDir, "control-dir", "", "where dovecot-uidlist is, if mail_location has CONTROL=")
	md.Flags().BoolVar(&skip, "skip-unservable", false, "skip messages whose UIDL popbox cannot serve unchanged, instead of refusing")
	cmd.AddCommand(md, newImportDataDir(g))
	return cmd
}
