// Command popbox is the POP3 mail system: the server (serve), local delivery
// (deliver), account management (user), the mail store's maintenance
// (restore, purge, import, migrate) and the fetcher (fetch). It only wires
// flags to the packages that do the work; which store (Maildir or
// PostgreSQL) and which user database a command uses is internal/app's
// choice, from the configuration.
package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/popbox/popbox/config"
	"github.com/popbox/popbox/internal/app"
	"github.com/popbox/popbox/userdb"
)

// Exit codes from sysexits.h, which MTAs interpret (a mailbox_command that
// exits 75 is retried later, 67 bounces).
const (
	exitUsage     = 64 // EX_USAGE
	exitNoUser    = 67 // EX_NOUSER
	exitSoftware  = 70 // EX_SOFTWARE
	exitCantCreat = 73 // EX_CANTCREAT: deliver, mailbox over quota (permanent)
	exitTempFail  = 75 // EX_TEMPFAIL
	exitConfig    = 78 // EX_CONFIG
)

// exitError carries a process exit code with the error to print.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func withCode(code int, err error) error {
	if err == nil {
		return nil
	}
	return &exitError{code: code, err: err}
}

// globals are the flags every command shares.
type globals struct {
	configFile string
	dataDir    string
}

// load reads the configuration file (if any) and applies --data and
// POPBOX_DATA, in that order of precedence over the file.
func (g *globals) load(cmd *cobra.Command) (config.Config, error) {
	cfg := config.Default()
	if g.configFile != "" {
		var err error
		if cfg, err = config.Load(g.configFile); err != nil {
			return cfg, withCode(exitConfig, err)
		}
	}
	if cmd.Flags().Changed("data") {
		cfg.DataDir = g.dataDir
	} else if env := os.Getenv("POPBOX_DATA"); env != "" {
		cfg.DataDir = env
	}
	return cfg, nil
}

// openUsers opens the user database the configuration names (a SQLite
// file in the data directory, or PostgreSQL). Only create (user add)
// may create a SQLite file: the other commands on a missing one report the
// (likely wrong) data directory instead of leaving an empty database
// behind. A missing file, or a PostgreSQL schema that is not current, is a
// configuration error (exitConfig) naming the way out.
func openUsers(cfg config.Config, opts userdb.Options, create bool) (*userdb.DB, error) {
	db, err := app.OpenUsersConfig(cfg, opts, create)
	if errors.Is(err, app.ErrNoUserDB) || app.IsSchemaError(err) {
		return nil, withCode(exitConfig, err)
	}
	return db, err
}

// openMail opens the configured mail store (see app.OpenMail); a
// PostgreSQL schema that is not current is a configuration error.
func openMail(cmd *cobra.Command, cfg config.Config, log *slog.Logger, users *userdb.DB) (app.Mail, error) {
	st, err := app.OpenMail(cmd.Context(), cfg, log, users)
	if app.IsSchemaError(err) {
		return nil, withCode(exitConfig, err)
	}
	return st, err
}

func version() string {
	v := "devel"
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v = bi.Main.Version
	}
	return v
}

func newRoot() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "popbox",
		Short:         "popbox: a POP3 mail server, delivery agent and fetcher",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVarP(&g.configFile, "config", "c", "", "configuration file (TOML; see popbox.example.toml)")
	root.PersistentFlags().StringVar(&g.dataDir, "data", "./popbox-data", "data directory (or $POPBOX_DATA)")
	root.AddCommand(newServe(g), newCheckConfig(g), newMigrate(g), newUser(g), newDeliver(g), newFetch(g), newRestore(g), newPurge(g), newImport(g), &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  exactArgs(0),
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "popbox", version())
		},
	})
	groupOnly(root)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return withCode(exitUsage, err) })
	return root
}

// groupOnly makes cmd, which only groups subcommands, print its help when
// called alone and fail with exitUsage on an unknown subcommand. Left to
// cobra, "popbox bogus" exits 1 and "popbox user ad x" prints help and exits
// 0, so a typo in a script looks like success.
func groupOnly(cmd *cobra.Command) {
	cmd.Args = func(cmd *cobra.Command, args []string) error {
		if len(args) > 0 {
			return withCode(exitUsage, fmt.Errorf("unknown command %q for %q", args[0], cmd.CommandPath()))
		}
		return nil
	}
	cmd.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run executes the command line args with the given standard streams and
// returns the process exit status.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if args == nil {
		args = []string{} // nil would make cobra read os.Args
	}
	root := newRoot()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.Execute()
	if err == nil {
		return 0
	}
	fmt.Fprintln(stderr, "popbox:", err)
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return 1
}
