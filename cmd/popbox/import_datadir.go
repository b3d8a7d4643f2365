package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/popbox/popbox/config"
	"github.com/popbox/popbox/internal/app"
	"github.com/popbox/popbox/userdb"
)

func newImportDataDir(g *globals) *cobra.Command {
	var from string
	var skipUsers bool
	cmd := &cobra.Command{
		Use:   "datadir --from DIR",
		Short: "Move a popbox data directory's mail and users into the configured store",
		Long: `Copy every mailbox of the popbox data directory DIR (its Maildirs, DIR/mail)
into the store the configuration names, typically a PostgreSQL database
(store = "postgres://..."; run popbox migrate first), each message with the
UIDL DIR's server gave it, so that no client downloads anything again. The
accounts of DIR/users.db are copied too when the configuration keeps users
elsewhere: name, password hash (users keep their passwords), disabled flag
and quota overrides. SCRAM-SHA-256 credentials are made again at each
user's next login with a password (until then that user's SCRAM logins
fail; PLAIN and LOGIN work); app passwords and login history are not
copied: the command lists the users who had app passwords.

Stop popbox serve on DIR and mail delivery to it first. An interrupted run
can be run again: messages already copied (same UIDL) and accounts already
there are skipped, so nothing is copied twice. Once users fetch from the new
store, do not run it again: mail they deleted there would come back. Deleted
mail DIR keeps for restoring is not copied.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if from == "" {
				return withCode(exitUsage, errors.New("--from DIR is required: the data directory to import"))
			}
			cfg, err := g.load(cmd)
			if err != nil {
				return err
			}
			return importDataDir(cmd, cfg, app.DataDir(from), skipUsers)
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "the popbox data directory to import (its mail/ and users.db)")
	cmd.Flags().BoolVar(&skipUsers, "skip-users", false, "copy the mail only, not the accounts")
	return cmd
}

func importDataDir(cmd *cobra.Command, cfg config.Config, src app.DataDir, skipUsers bool) error {
	ctx := cmd.Context()
	out := cmd.OutOrStdout()
	if st, err := os.Stat(src.MailRoot()); err != nil || !st.IsDir() {
		return withCode(exitUsage, fmt.Errorf("%s is not a popbox data directory: no mail/ in it", src))
	}
	if cfg.StoreDSN() == "" && sameFile(src.MailRoot(), app.DataDir(cfg.DataDir).MailRoot()) {
		return withCode(exitUsage, fmt.Errorf("%s: %w: set store (-c FILE) to the store to import into", src, app.ErrSameStore))
	}
	log := newLogger(cfg.Log, cmd.ErrOrStderr())

	// The users first: a frontend started on the new store right after
	// knows everyone whose mail is there.
	copyUsers := !skipUsers && !sameFile(src.UsersPath(), app.UsersDatabase(cfg))
	users, err := openUsers(cfg, userdb.Options{Logger: log}, true)
	if err != nil {
		return err
	}
	defer users.Close()
	var errs []error
	if copyUsers {
		if err := importUsers(cmd, src, users); err != nil {
			errs = append(errs, err)
		}
	}

	st, err := openMail(cmd, cfg, log, users)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	defer st.Close()
	var imported, already, failed int
	err = app.ImportMailboxes(ctx, src, st, log, func(r app.MailboxImport) {
		imported += r.Imported
		already += r.Already
		fmt.Fprintf(out, "mailbox %s: %d message(s) imported, %d already there\n", r.User, r.Imported, r.Already)
		if r.Err != nil {
			failed++
			fmt.Fprintf(cmd.ErrOrStderr(), "popbox: mailbox %s: %v\n", r.User, r.Err)
		}
	})
	fmt.Fprintf(out, "%d message(s) imported into %s, %d already there", imported, app.DescribeStore(cfg), already)
	if failed > 0 {
		fmt.Fprintf(out, "; %d mailbox(es) not completely imported (see above): run the command again once fixed", failed)
	}
	fmt.Fprintln(out)
	if err != nil {
		errs = append(errs, errors.New("some mailboxes were not completely imported"))
	}
	return errors.Join(errs...)
}

// importUsers copies the accounts of src's users.db into users and
// reports each.
func importUsers(cmd *cobra.Command, src app.DataDir, users *userdb.DB) error {
	out, errOut := cmd.OutOrStdout(), cmd.ErrOrStderr()
	if _, err := os.Stat(src.UsersPath()); errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(out, "no %s: no accounts to copy\n", src.UsersPath())
		return nil
	}
	var copied, there, failed int
	var withApps []string
	err := app.CopyUsers(cmd.Context(), src.UsersPath(), users, func(r app.UserCopy) {
		switch {
		case r.Err != nil:
			failed++
			fmt.Fprintf(errOut, "popbox: user %s: %v\n", r.Name, r.Err)
		case r.Copied:
			copied++
			fmt.Fprintf(out, "user %s copied\n", r.Name)
			if r.AppPasswords > 0 {
				withApps = append(withApps, r.Name)
			}
		default:
			there++
		}
	})
	fmt.Fprintf(out, "%d user(s) copied, %d already there\n", copied, there)
	printAppPasswordNote(errOut, withApps)
	if err != nil {
		return err
	}
	if failed > 0 {
		return fmt.Errorf("%d user(s) could not be copied", failed)
	}
	return nil
}

func printAppPasswordNote(w io.Writer, users []string) {
	if len(users) == 0 {
		return
	}
	fmt.Fprintf(w, "popbox: app passwords are not copied; these users had some and need new ones (popbox user app-password add):\n")
	for _, u := range users {
		fmt.Fprintf(w, "  %s\n", u)
	}
}

// sameFile reports whether a and b name one existing file or directory.
func sameFile(a, b string) bool {
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}
