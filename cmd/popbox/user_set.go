package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/popbox/popbox/userdb"
)

func newUserSet(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "set NAME KEY=VALUE...",
		Short: "Change an account's settings: quota=SIZE, messages=N",
		Long: `Change an account's settings. Keys:

  quota=SIZE     most octets the mailbox may hold: a number with an optional
                 K, M, G or T suffix (powers of 1024), "unlimited", or
                 "default" for mail.quota_bytes from the configuration
  messages=N     most messages the mailbox may hold; "unlimited" or "default"
                 (mail.quota_messages)

A running server applies the change to the next delivery.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 2 {
				return withCode(exitUsage, errors.New("usage: popbox user set NAME KEY=VALUE [KEY=VALUE]"))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			var bytes, messages **int64
			for _, kv := range args[1:] {
				k, v, ok := strings.Cut(kv, "=")
				var err error
				var p *int64
				switch {
				case !ok:
					err = errors.New("want KEY=VALUE")
				case k == "quota":
					p, err = parseLimit(v, true)
					bytes = &p
				case k == "messages":
					p, err = parseLimit(v, false)
					messages = &p
				default:
					err = errors.New("unknown key (quota, messages)")
				}
				if err != nil {
					return withCode(exitUsage, fmt.Errorf("%q: %w", kv, err))
				}
			}
			return withUsers(g, cmd, false, func(db *userdb.DB) error {
				ctx := cmd.Context()
				u, err := db.Get(ctx, name)
				if err != nil {
					return err
				}
				b, m := u.QuotaBytes, u.QuotaMessages
				if bytes != nil {
					b = *bytes
				}
				if messages != nil {
					m = *messages
				}
				if err := db.SetQuota(ctx, u.Name, b, m); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "user %s: quota %s, messages %s\n", u.Name, describeLimit(b, true), describeLimit(m, false))
				return nil
			})
		},
	}
}

// parseLimit reads a quota value: nil for "default", 0 for "unlimited".
func parseLimit(v string, size bool) (*int64, error) {
	switch v {
	case "default":
		return nil, nil
	case "unlimited":
		n := int64(0)
		return &n, nil
	}
	mult := int64(1)
	if size && v != "" {
		if i := strings.IndexByte("KMGT", v[len(v)-1]&^0x20); i >= 0 {
			mult = 1 << (10 * (i + 1))
			v = v[:len(v)-1]
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		if size {
			return nil, errors.New(`want a size such as 500M or 2G, "unlimited" or "default"`)
		}
		return nil, errors.New(`want a number, "unlimited" or "default"`)
	}
	n *= mult
	return &n, nil
}

func describeLimit(p *int64, size bool) string {
	switch {
	case p == nil:
		return "default"
	case *p == 0:
		return "unlimited"
	case size:
		return formatSize(*p)
	}
	return strconv.FormatInt(*p, 10)
}

// formatSize writes n octets with the largest binary unit that divides it.
func formatSize(n int64) string {
	for i, unit := range []string{"T", "G", "M", "K"} {
		if m := int64(1) << (10 * (4 - i)); n >= m && n%m == 0 {
			return strconv.FormatInt(n/m, 10) + unit
		}
	}
	return strconv.FormatInt(n, 10)
}
