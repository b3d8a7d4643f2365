package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/popbox/popbox/userdb"
)

// maxPasswdFile bounds the passwd-file read: a million users are far less.
const maxPasswdFile = 256 << 20

func newUserImport(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "import",
		Short: "Import accounts from another server",
	}
	var skipInvalid bool
	passwd := &cobra.Command{
		Use:   "passwd-file FILE",
		Short: "Import users and password hashes from a Dovecot passwd-file",
		Long: `Import users and their password hashes from a Dovecot passwd-file
(user:{SCHEME}hash:uid:gid:gecos:home:shell:extra). {ARGON2ID}, {BLF-CRYPT},
{SHA512-CRYPT}, {SHA256-CRYPT} and bcrypt or SHA-crypt {CRYPT} hashes are
kept as they are: users log in with their old passwords, and each hash is
replaced by an argon2id one at its first login. Users with the nologin extra
field are imported disabled. Existing popbox users are left alone.

Lines popbox cannot import (other schemes such as {PLAIN} or MD5-CRYPT, bad
names) are listed and nothing is imported, unless --skip-invalid is given.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := os.Open(args[0])
			if err != nil {
				return withCode(exitUsage, err)
			}
			defer f.Close()
			entries, perr := userdb.ParsePasswdFile(io.LimitReader(f, maxPasswdFile))
			out, errOut := cmd.OutOrStdout(), cmd.ErrOrStderr()
			if perr != nil {
				fmt.Fprintf(errOut, "popbox: %s: lines that cannot be imported:\n%s\n", args[0], indent(perr.Error()))
				if !skipInvalid {
					return withCode(exitUsage, fmt.Errorf("%s: nothing imported (use --skip-invalid to import the other %d entries)", args[0], len(entries)))
				}
			}
			return withUsers(g, cmd, true, func(db *userdb.DB) error {
				results, err := db.ImportPasswdEntries(cmd.Context(), entries)
				imported, skipped, failed := 0, 0, 0
				for _, r := range results {
					e := r.Entry
					switch {
					case r.Err == nil:
						imported++
						note := ""
						if e.NoLogin {
							note = " (disabled: nologin)"
						}
						fmt.Fprintf(out, "imported %s (%s)%s\n", e.User, e.Scheme, note)
						var unused []string
						for _, x := range e.Extra {
							if x != "nologin" {
								unused = append(unused, x)
							}
						}
						if len(unused) > 0 {
							fmt.Fprintf(errOut, "popbox: line %d: %s: extra fields not used by popbox: %s\n", e.Line, e.User, strings.Join(unused, " "))
						}
					case errors.Is(r.Err, userdb.ErrExists):
						skipped++
						fmt.Fprintf(out, "skipped %s: already a popbox user\n", e.User)
					default:
						failed++
						fmt.Fprintf(errOut, "popbox: line %d: %s: %v\n", e.Line, e.User, r.Err)
					}
				}
				fmt.Fprintf(out, "%d imported, %d skipped, %d failed\n", imported, skipped, failed)
				if err != nil {
					return err
				}
				if failed > 0 {
					return withCode(exitUsage, fmt.Errorf("%d entries failed", failed))
				}
				return nil
			})
		},
	}
	passwd.Flags().BoolVar(&skipInvalid, "skip-invalid", false, "import the valid lines even if others cannot be imported")
	cmd.AddCommand(passwd)
	return cmd
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(s, "\n", "\n  ")
}
