package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// newFetch is a placeholder until the fetcher lands (issue 3).
func newFetch(_ *globals) *cobra.Command {
	return &cobra.Command{
		Use:    "fetch",
		Short:  "Download mail from POP3 servers (not yet available)",
		Hidden: true,
		RunE: func(*cobra.Command, []string) error {
			return errors.New("fetch is not implemented yet")
		},
	}
}
