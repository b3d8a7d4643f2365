package main

import (
	"context"
	"fmt"
	"io"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/popbox/popbox/config"
	"github.com/popbox/popbox/internal/app"
)

func newMigrate(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "migrate",
		Short: "Create or upgrade the PostgreSQL schema",
		Long: `Create or upgrade the schema of the PostgreSQL database the configuration
names (store, and users.database if that is another one), for this version
of popbox. popbox serve refuses to start on a database whose schema is not
current, so run it before the first start and after each upgrade of the
binary. Several may run at once, on several machines: each step is applied
once, in a transaction of its own. It never downgrades.

With mail in Maildirs and users in a SQLite file there is nothing to
migrate (popbox upgrades those itself); it says so and exits 0.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.load(cmd)
			if err != nil {
				return err
			}
			// Interrupted, a migration step rolls back: nothing is left
			// half done.
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			return migrate(ctx, cmd.OutOrStdout(), cfg)
		},
	}
}

func migrate(ctx context.Context, out io.Writer, cfg config.Config) error {
	done, err := app.Migrate(ctx, cfg)
	for _, line := range done {
		fmt.Fprintln(out, "migrated", line)
	}
	if err != nil {
		return err
	}
	if len(done) == 0 {
		fmt.Fprintf(out, "nothing to migrate: mail is in Maildirs under %s and users in %s, which popbox keeps current itself\n",
			app.DescribeStore(cfg), app.DescribeUsers(cfg))
	}
	return nil
}
