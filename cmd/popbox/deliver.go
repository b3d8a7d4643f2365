package main

import (
	"bufio"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/popbox/popbox/internal/app"
	"github.com/popbox/popbox/store"
	"github.com/popbox/popbox/userdb"
)

func newDeliver(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "deliver USER < message",
		Short: "Deliver one message from standard input to a local mailbox",
		Long: `Deliver one message from standard input, for an MTA's mailbox_command or
a script. It exits 0 only once the message is durable: on disk (file and
directory synced), or committed to PostgreSQL. Exit codes follow sysexits.h: 67 unknown user (the MTA bounces),
75 temporary failure (the MTA retries later), 73 mailbox over quota when
lmtp.quota_permanent is set (75 otherwise), 64 usage, 78 configuration.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := g.load(cmd)
			if err != nil {
				return err
			}
			// Without a user database every recipient would be unknown and
			// bounce: a wrong --data, an unmounted volume, an unreachable
			// or not yet migrated PostgreSQL must make the MTA retry
			// instead, and must not create an empty database.
			users, err := app.OpenUsersConfig(cfg, userdb.Options{}, false)
			if err != nil {
				return withCode(exitTempFail, err)
			}
			defer users.Close()
			u, err := users.Get(cmd.Context(), args[0])
			if errors.Is(err, userdb.ErrNotFound) || errors.Is(err, userdb.ErrInvalidName) {
				return withCode(exitNoUser, fmt.Errorf("no such user %q", args[0]))
			}
			if err != nil {
				return withCode(exitTempFail, err)
			}
			st, err := app.OpenMail(cmd.Context(), cfg, nil, users)
			if err != nil {
				return withCode(exitTempFail, err)
			}
			defer st.Close()
			in := bufio.NewReaderSize(cmd.InOrStdin(), 64*1024)
			_, err = st.Deliver(cmd.Context(), u.Name, in)
			switch {
			case errors.Is(err, store.ErrQuota) && cfg.LMTP.QuotaPermanent:
				return withCode(exitCantCreat, fmt.Errorf("delivery to %s: %w", u.Name, err))
			case errors.Is(err, store.ErrQuota):
				return withCode(exitTempFail, fmt.Errorf("delivery to %s: %w", u.Name, err))
			case err != nil:
				return withCode(exitTempFail, fmt.Errorf("delivery to %s failed, message not stored: %w", u.Name, err))
			}
			return nil
		},
	}
}
