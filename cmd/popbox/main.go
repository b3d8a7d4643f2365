// Command popbox is the POP3 mail system: the server (serve), local delivery
// (deliver) and account management (user). It only wires flags to the
// packages that do the work.
package main

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/popbox/popbox/config"
	"github.com/popbox/popbox/internal/app"
)

// Exit codes from sysexits.h, which MTAs interpret (a mailbox_command that
// exits 75 is retried later, 67 bounces).
const (
	exitUsage    = 64 // EX_USAGE
	exitNoUser   = 67 // EX_NOUSER
	exitSoftware = 70 // EX_SOFTWARE
	exitTempFail = 75 // EX_TEMPFAIL
	exitConfig   = 78 // EX_CONFIG
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

func (g *globals) data(cmd *cobra.Command) (app.DataDir, error) {
	cfg, err := g.load(cmd)
	if err != nil {
		return "", err
	}
	return app.DataDir(cfg.DataDir), nil
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
	root.AddCommand(newServe(g), newUser(g), newDeliver(g), &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "popbox", version())
		},
	})
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return withCode(exitUsage, err) })
	return root
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	root := newRoot()
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return 0
	}
	fmt.Fprintln(os.Stderr, "popbox:", err)
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return 1
}
