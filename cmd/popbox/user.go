package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/popbox/popbox/userdb"
)

func newUser(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "user",
		Short: "Manage POP3 accounts",
	}
	var passwordStdin bool
	add := &cobra.Command{
		Use:   "add NAME",
		Short: "Create an account",
		Long: `Create an account. The password is prompted for on a terminal, and read
from the first line of standard input otherwise (or with --password-stdin).`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withUsers(g, cmd, true, func(db *userdb.DB) error {
				// Refuse a bad or taken name before asking for a password.
				switch _, err := db.Get(cmd.Context(), args[0]); {
				case err == nil:
					return fmt.Errorf("%w: %q", userdb.ErrExists, userdb.Canonical(args[0]))
				case !errors.Is(err, userdb.ErrNotFound):
					return err
				}
				pw, err := readPassword(cmd, passwordStdin)
				if err != nil {
					return err
				}
				if err := db.Add(cmd.Context(), args[0], pw); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "user %s added\n", userdb.Canonical(args[0]))
				return nil
			})
		},
	}
	add.Flags().BoolVar(&passwordStdin, "password-stdin", false, "read the password from standard input")
	passwd := &cobra.Command{
		Use:   "passwd NAME",
		Short: "Change an account's password",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withUsers(g, cmd, false, func(db *userdb.DB) error {
				// Refuse an unknown user before asking for a password.
				if _, err := db.Get(cmd.Context(), args[0]); err != nil {
					return err
				}
				pw, err := readPassword(cmd, passwordStdin)
				if err != nil {
					return err
				}
				if err := db.SetPassword(cmd.Context(), args[0], pw); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "password of %s changed\n", userdb.Canonical(args[0]))
				return nil
			})
		},
	}
	passwd.Flags().BoolVar(&passwordStdin, "password-stdin", false, "read the password from standard input")
	del := &cobra.Command{
		Use:   "del NAME",
		Short: "Delete an account (its mailbox is kept)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := g.load(cmd)
			if err != nil {
				return err
			}
			return withUsers(g, cmd, false, func(db *userdb.DB) error {
				if err := db.Delete(cmd.Context(), args[0]); err != nil {
					return err
				}
				where := "on disk"
				if cfg.StoreDSN() != "" {
					where = "in the database"
				}
				fmt.Fprintf(cmd.OutOrStdout(), "user %s deleted; mail kept %s\n", userdb.Canonical(args[0]), where)
				return nil
			})
		},
	}
	setDisabled := func(use, short string, disabled bool) *cobra.Command {
		return &cobra.Command{
			Use:   use + " NAME",
			Short: short,
			Args:  exactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				return withUsers(g, cmd, false, func(db *userdb.DB) error {
					if err := db.SetDisabled(cmd.Context(), args[0], disabled); err != nil {
						return err
					}
					fmt.Fprintf(cmd.OutOrStdout(), "user %s %sd\n", userdb.Canonical(args[0]), use)
					return nil
				})
			},
		}
	}
	disable := setDisabled("disable", "Stop an account from logging in (mail, passwords and history are kept)", true)
	enable := setDisabled("enable", "Let a disabled account log in again", false)
	list := &cobra.Command{
		Use:   "list",
		Short: "List accounts",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withUsers(g, cmd, false, func(db *userdb.DB) error {
				users, err := db.List(cmd.Context())
				if err != nil {
					return err
				}
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tCREATED\tPASSWORD\tSTATUS")
				for _, u := range users {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", u.Name, u.Created.Format("2006-01-02 15:04"), u.PasswordScheme, status(u))
				}
				return tw.Flush()
			})
		},
	}
	cmd.AddCommand(add, passwd, del, disable, enable, list, newUserShow(g), newUserSet(g), newAppPassword(g), newUserImport(g))
	groupOnly(cmd)
	return cmd
}

// How user commands print times, always in UTC: to the minute for dates of
// an account, to the second for logins.
const (
	dateFormat  = "2006-01-02 15:04"
	loginFormat = "2006-01-02 15:04:05"
)

func newUserShow(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "show NAME",
		Short: "Show an account: password scheme, app passwords and recent logins",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withUsers(g, cmd, false, func(db *userdb.DB) error {
				ctx := cmd.Context()
				u, err := db.Get(ctx, args[0])
				if err != nil {
					return err
				}
				apps, err := db.AppPasswords(ctx, u.Name)
				if err != nil {
					return err
				}
				hist, err := db.LoginHistory(ctx, u.Name)
				if err != nil {
					return err
				}
				cfg, err := g.load(cmd)
				if err != nil {
					return err
				}
				st, err := openMail(cmd, cfg, nil, nil)
				if err != nil {
					return err
				}
				defer st.Close()
				usage, err := st.Usage(ctx, u.Name)
				if err != nil {
					return err
				}
				w := cmd.OutOrStdout()
				fmt.Fprintf(w, "user:          %s\n", u.Name)
				fmt.Fprintf(w, "created:       %s UTC\n", u.Created.UTC().Format(dateFormat))
				fmt.Fprintf(w, "status:        %s\n", status(u))
				fmt.Fprintf(w, "quota:         %s, messages %s\n", describeLimit(u.QuotaBytes, true), describeLimit(u.QuotaMessages, false))
				fmt.Fprintf(w, "mailbox:       %d messages, %d octets\n", usage.Messages, usage.Bytes)
				fmt.Fprintf(w, "password:      %s\n", u.PasswordScheme)
				fmt.Fprintf(w, "app passwords: %d\n", len(apps))
				printLogins(w, "last logins", hist.Successes)
				printLogins(w, "recent failures", hist.Failures)
				return nil
			})
		},
	}
}

// status is "enabled" or "disabled".
func status(u userdb.User) string {
	if u.Disabled {
		return "disabled"
	}
	return "enabled"
}

func printLogins(w io.Writer, title string, events []userdb.LoginEvent) {
	fmt.Fprintf(w, "%s:\n", title)
	if len(events) == 0 {
		fmt.Fprintln(w, "  none")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, ev := range events {
		addr := ev.RemoteAddr
		if addr == "" {
			addr = "-"
		}
		// The server sets these fields, not the client; printable still
		// keeps a hand-edited database from forging output.
		fmt.Fprintf(tw, "  %s UTC\t%s\t%s\n", ev.Time.UTC().Format(loginFormat), printable(addr), printable(ev.Mechanism))
	}
	tw.Flush()
}

// printable replaces control characters, so that stored text cannot move
// the cursor or forge lines on the administrator's terminal.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return '?'
		}
		return r
	}, s)
}

func newAppPassword(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "app-password",
		Short: "Manage an account's app passwords (one per device, revocable)",
		Long: `App passwords let each device log in with its own generated password,
beside the account's main password. Revoking one (a lost phone, say) locks
out that device only.`,
	}
	add := &cobra.Command{
		Use:   "add NAME LABEL",
		Short: "Generate an app password labelled LABEL; it is shown only once",
		Args:  exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withUsers(g, cmd, false, func(db *userdb.DB) error {
				pw, err := db.AddAppPassword(cmd.Context(), args[0], args[1])
				if err != nil {
					return err
				}
				// The password alone on the last line, for scripts.
				fmt.Fprintf(cmd.OutOrStdout(), "app password %q for %s (shown only once; enter it in the device's mail client):\n%s\n",
					args[1], userdb.Canonical(args[0]), pw)
				return nil
			})
		},
	}
	list := &cobra.Command{
		Use:   "list NAME",
		Short: "List an account's app passwords",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withUsers(g, cmd, false, func(db *userdb.DB) error {
				apps, err := db.AppPasswords(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "LABEL\tCREATED\tLAST USED")
				for _, a := range apps {
					used := "never"
					if !a.LastUsed.IsZero() {
						used = a.LastUsed.UTC().Format(dateFormat)
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\n", printable(a.Label), a.Created.UTC().Format(dateFormat), used)
				}
				return tw.Flush()
			})
		},
	}
	revoke := &cobra.Command{
		Use:   "revoke NAME LABEL",
		Short: "Revoke an app password: logins with it fail from now on",
		Args:  exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withUsers(g, cmd, false, func(db *userdb.DB) error {
				err := db.RevokeAppPassword(cmd.Context(), args[0], args[1])
				if errors.Is(err, userdb.ErrNoAppPassword) {
					return withCode(exitUsage, err)
				}
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "app password %q of %s revoked\n", args[1], userdb.Canonical(args[0]))
				return nil
			})
		},
	}
	cmd.AddCommand(add, list, revoke)
	groupOnly(cmd)
	return cmd
}

// exactArgs is cobra.ExactArgs with the usage exit code.
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		return withCode(exitUsage, cobra.ExactArgs(n)(cmd, args))
	}
}

// withUsers opens the configured user database for f (see openUsers: only
// "user add" may create a SQLite file).
func withUsers(g *globals, cmd *cobra.Command, create bool, f func(*userdb.DB) error) error {
	cfg, err := g.load(cmd)
	if err != nil {
		return err
	}
	db, err := openUsers(cfg, userdb.Options{}, create)
	if err != nil {
		return err
	}
	defer db.Close()
	err = f(db)
	switch {
	case errors.Is(err, userdb.ErrNotFound):
		return withCode(exitNoUser, err)
	case errors.Is(err, userdb.ErrExists), errors.Is(err, userdb.ErrInvalidName), errors.Is(err, userdb.ErrInvalidPassword),
		errors.Is(err, userdb.ErrInvalidLabel), errors.Is(err, userdb.ErrTooManyPasswords):
		return withCode(exitUsage, err)
	}
	return err
}

// readPassword prompts twice on a terminal; otherwise it takes the first
// line of standard input, so scripts can pipe a password in.
func readPassword(cmd *cobra.Command, fromStdin bool) (string, error) {
	in := cmd.InOrStdin()
	if f, ok := in.(*os.File); ok && !fromStdin && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(cmd.ErrOrStderr(), "Password: ")
		a, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(cmd.ErrOrStderr())
		if err != nil {
			return "", err
		}
		fmt.Fprint(cmd.ErrOrStderr(), "Again: ")
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(cmd.ErrOrStderr())
		if err != nil {
			return "", err
		}
		if string(a) != string(b) {
			return "", withCode(exitUsage, errors.New("passwords do not match"))
		}
		return string(a), nil
	}
	// A password line longer than this is not a password.
	line, err := bufio.NewReaderSize(io.LimitReader(in, 4096), 4096).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("reading password: %w", err)
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		return "", withCode(exitUsage, errors.New("empty password on standard input"))
	}
	return pw, nil
}
