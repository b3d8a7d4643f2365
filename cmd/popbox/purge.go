package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/popbox/popbox/config"
	"github.com/popbox/popbox/internal/app"
	"github.com/popbox/popbox/userdb"
)

func newPurge(g *globals) *cobra.Command {
	var user string
	var allKept bool
	cmd := &cobra.Command{
		Use:   "purge [--user NAME] [--all-kept]",
		Short: "Remove deleted mail for good",
		Long: `Remove deleted mail whose mail.keep_deleted_days are over, as the server does
every mail.maintenance_interval, for one user or all of them. With
--all-kept, remove all deleted mail now, however recently deleted: to free
disk space at once (restore can then no longer bring it back).`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.load(cmd)
			if err != nil {
				return err
			}
			now := time.Now()
			if allKept {
				// Purge removes what was deleted keep_deleted_days before
				// "now": moving now that far ahead takes everything.
				now = now.Add(time.Duration(cfg.Mail.KeepDeletedDays)*24*time.Hour + time.Minute)
			}
			if user != "" {
				return withMailStore(g, cmd, user, func(_ config.Config, _ *userdb.DB, st app.Mail, name string) error {
					n, err := st.Purge(cmd.Context(), name, now)
					fmt.Fprintf(cmd.OutOrStdout(), "%d deleted message(s) purged for %s\n", n, name)
					return err
				})
			}
			st, err := openMail(cmd, cfg, newLogger(cfg.Log, cmd.ErrOrStderr()), nil)
			if err != nil {
				return err
			}
			defer st.Close()
			n, err := st.PurgeAll(cmd.Context(), now)
			fmt.Fprintf(cmd.OutOrStdout(), "%d deleted message(s) purged\n", n)
			return err
		},
	}
	cmd.Flags().StringVar(&user, "user", "", "only this user's deleted mail")
	cmd.Flags().BoolVar(&allKept, "all-kept", false, "remove all kept deleted mail now")
	return cmd
}
