package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/popbox/popbox/config"
	"github.com/popbox/popbox/internal/app"
	"github.com/popbox/popbox/internal/privdrop"
	"github.com/popbox/popbox/store/postgres"
	"github.com/popbox/popbox/tlsconf"
	"github.com/popbox/popbox/userdb"
)

// connectTimeout bounds check-config --connect: the check is run by hand
// or before a restart, where a hanging database should not hang it.
const connectTimeout = 15 * time.Second

func newCheckConfig(g *globals) *cobra.Command {
	var connect bool
	cmd := &cobra.Command{
		Use:   "check-config",
		Short: "Check the configuration without starting the server",
		Long: `Parse and validate the configuration (popbox -c FILE check-config), then
check what serve would need from the file system, changing nothing: the
certificate and key files load and match, the client CA file parses, the
data directory exists or could be created, process.user exists. A
PostgreSQL URL is only parsed, unless --connect is given: then check-config
connects and checks that the mail store's and the user database's schemas
are current, reading only.

It prints "configuration OK" and a summary, or every problem found and
exits 78 (EX_CONFIG). Run it before sending serve a SIGHUP or restarting it.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.load(cmd)
			if err != nil {
				return err
			}
			if err := cfg.Validate(); err != nil {
				return withCode(exitConfig, err)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), connectTimeout)
			defer cancel()
			problems := checkConfig(ctx, cfg, connect)
			if len(problems) > 0 {
				return withCode(exitConfig, errors.Join(problems...))
			}
			printSummary(cmd.OutOrStdout(), g.configFile, cfg, connect)
			return nil
		},
	}
	cmd.Flags().BoolVar(&connect, "connect", false, "connect to PostgreSQL and check the schema versions (read-only)")
	return cmd
}

// checkConfig runs the checks that need the file system (and, with
// connect, the database) on a valid configuration and returns every
// problem, each naming its key.
func checkConfig(ctx context.Context, cfg config.Config, connect bool) []error {
	var problems []error
	bad := func(key string, err error) { problems = append(problems, fmt.Errorf("%s: %w", key, err)) }

	if t := cfg.TLS; t.CertFile != "" {
		var extra []tlsconf.FilePair
		for i, f := range t.ExtraCertFiles {
			extra = append(extra, tlsconf.FilePair{CertFile: f, KeyFile: t.ExtraKeyFiles[i]})
		}
		if _, err := tlsconf.LoadCertificates(t.CertFile, t.KeyFile, extra...); err != nil {
			bad("tls.cert_file", err)
		}
	}
	if f := cfg.TLS.ClientCAFile; f != "" {
		if err := tlsconf.RequestClientCerts(&tls.Config{}, f); err != nil {
			bad("tls.client_ca_file", err)
		}
	}
	if _, err := app.NewTokenVerifier(cfg.OAuth); err != nil {
		bad("oauth", err)
	}
	if err := checkDataDir(cfg.DataDir); err != nil {
		bad("data_dir", err)
	}
	if u := cfg.Process.User; u != "" {
		if _, err := privdrop.Resolve(u, cfg.Process.Group); err != nil {
			bad("process.user", err)
		}
	}
	if !connect {
		return problems
	}
	if dsn := cfg.StoreDSN(); dsn != "" {
		// Open only reads: it connects and compares the schema version.
		st, err := postgres.Open(ctx, dsn, postgres.Options{})
		if err != nil {
			bad("store", fmt.Errorf("%s: %s", config.RedactDSN(dsn), config.ScrubDSN(err.Error(), dsn)))
		} else {
			st.Close()
		}
	}
	// A SQLite user database is not opened: opening it creates and
	// migrates it, a write that check-config must not make.
	if db := app.UsersDatabase(cfg); config.IsPostgresDSN(db) {
		users, err := userdb.Open(db, userdb.Options{})
		if err != nil {
			bad("users.database", fmt.Errorf("%s: %s", config.RedactDSN(db), config.ScrubDSN(err.Error(), db)))
		} else {
			users.Close()
		}
	}
	return problems
}

// checkDataDir reports whether serve could use dir: an existing directory
// it can write, or a missing one whose nearest existing parent it could
// create it in. It creates nothing.
func checkDataDir(dir string) error {
	fi, err := os.Stat(dir)
	switch {
	case err == nil && !fi.IsDir():
		return fmt.Errorf("%s is not a directory", dir)
	case err == nil:
		if err := unix.Access(dir, unix.R_OK|unix.W_OK|unix.X_OK); err != nil {
			return fmt.Errorf("%s is not writable by uid %d: %w", dir, os.Geteuid(), err)
		}
		return nil
	case !errors.Is(err, fs.ErrNotExist):
		return err
	}
	parent := filepath.Dir(filepath.Clean(dir))
	for {
		fi, err := os.Stat(parent)
		if err == nil {
			if !fi.IsDir() {
				return fmt.Errorf("%s does not exist and cannot be created: %s is not a directory", dir, parent)
			}
			if err := unix.Access(parent, unix.W_OK|unix.X_OK); err != nil {
				return fmt.Errorf("%s does not exist and uid %d cannot create it in %s: %w", dir, os.Geteuid(), parent, err)
			}
			return nil
		}
		if !errors.Is(err, fs.ErrNotExist) || parent == filepath.Dir(parent) {
			return fmt.Errorf("%s does not exist: %w", dir, err)
		}
		parent = filepath.Dir(parent)
	}
}

// printSummary is the success report: what serve would listen on and
// which stores it would use.
func printSummary(w io.Writer, file string, cfg config.Config, connected bool) {
	if file == "" {
		file = "built-in defaults"
	}
	fmt.Fprintf(w, "configuration OK (%s)\n", file)
	var ls []string
	for _, l := range []struct{ proto, addr string }{{"pop3", cfg.POP3.Listen}, {"pop3s", cfg.POP3.ListenTLS}, {"lmtp", cfg.LMTP.Listen}} {
		if l.addr != "" {
			ls = append(ls, l.proto+" "+l.addr)
		}
	}
	if s := cfg.LMTP.Socket; s != "" {
		if !filepath.IsAbs(s) {
			s = filepath.Join(cfg.DataDir, s)
		}
		ls = append(ls, "lmtp unix:"+s)
	}
	fmt.Fprintf(w, "  listeners: %s (unless systemd passes sockets)\n", strings.Join(ls, ", "))
	fmt.Fprintf(w, "  data directory: %s\n", cfg.DataDir)
	fmt.Fprintf(w, "  mail store: %s\n", app.DescribeStore(cfg))
	fmt.Fprintf(w, "  users database: %s\n", app.DescribeUsers(cfg))
	cert := "self-signed, in the data directory"
	if cfg.TLS.CertFile != "" {
		cert = cfg.TLS.CertFile
	}
	fmt.Fprintf(w, "  tls certificate: %s\n", cert)
	if app.UsersOnPostgres(cfg) || cfg.StoreDSN() != "" {
		if connected {
			fmt.Fprintln(w, "  postgresql: connected, schemas current")
		} else {
			fmt.Fprintln(w, "  postgresql: not connected (use --connect to check the schemas)")
		}
	}
}
