package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/popbox/popbox/config"
	"github.com/popbox/popbox/internal/app"
	"github.com/popbox/popbox/pop3server"
	"github.com/popbox/popbox/tlsconf"
)

func newServe(g *globals) *cobra.Command {
	var listen, listenTLS string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the POP3 server",
		Long: `Run the POP3 server on the data directory.

With no configuration it listens on 127.0.0.1:1110 (POP3 with STLS) and
127.0.0.1:1995 (POP3S), makes a self-signed certificate and, on an empty user
database, a user "demo" whose password it prints once.

SIGTERM or SIGINT stops it gracefully; SIGHUP reloads the certificate.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.load(cmd)
			if err != nil {
				return err
			}
			if cmd.Flags().Changed("listen") {
				cfg.POP3.Listen = listen
			}
			if cmd.Flags().Changed("listen-tls") {
				cfg.POP3.ListenTLS = listenTLS
			}
			if err := cfg.Validate(); err != nil {
				return withCode(exitConfig, err)
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			return serve(ctx, cfg, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:1110", `address for POP3 with STLS ("" disables)`)
	cmd.Flags().StringVar(&listenTLS, "listen-tls", "127.0.0.1:1995", `address for POP3 over implicit TLS ("" disables)`)
	return cmd
}

func newLogger(cfg config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(cfg.Level)) // validated by config
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func serve(ctx context.Context, cfg config.Config, stdout, stderr io.Writer) error {
	log := newLogger(cfg.Log, stderr)
	data := app.DataDir(cfg.DataDir)
	if err := data.Create(); err != nil {
		return err
	}
	users, err := data.OpenUsers()
	if err != nil {
		return err
	}
	defer users.Close()
	st, err := data.OpenStore(log)
	if err != nil {
		return err
	}

	certFile, keyFile := cfg.TLS.CertFile, cfg.TLS.KeyFile
	if certFile == "" {
		var created bool
		certFile, keyFile, created, err = tlsconf.EnsureSelfSigned(string(data), []string{cfg.POP3.Hostname})
		if err != nil {
			return fmt.Errorf("self-signed certificate: %w", err)
		}
		if created {
			log.Info("created self-signed certificate", "cert", certFile)
		}
	}
	certs, err := tlsconf.LoadCertificates(certFile, keyFile)
	if err != nil {
		return withCode(exitConfig, err)
	}
	log.Info("tls certificate", "cert", certFile, "sha256", certs.Fingerprint())

	srv := &pop3server.Server{
		Backend:             app.Backend{Users: users, Store: st},
		TLSConfig:           tlsconf.ServerConfig(certs),
		Hostname:            cfg.POP3.Hostname,
		Implementation:      "popbox-" + version(),
		Plaintext:           plaintextPolicy(cfg.POP3.PlaintextAuth),
		AuthFailureDelay:    cfg.POP3.AuthFailureDelay.Duration,
		AuthFailureDelayMax: cfg.POP3.AuthFailureDelayMax.Duration,
		Limits: pop3server.Limits{
			MaxLine:                 cfg.POP3.MaxLine,
			MaxAuthLine:             cfg.POP3.MaxAuthLine,
			IdleTimeout:             cfg.POP3.IdleTimeout.Duration,
			MaxBadCommands:          cfg.POP3.MaxBadCommands,
			MaxConnections:          cfg.POP3.MaxConnections,
			MaxConnectionsPerIP:     cfg.POP3.MaxConnectionsPerIP,
			MaxUnauthenticatedPerIP: cfg.POP3.MaxUnauthenticatedPerIP,
			AuthTimeout:             cfg.POP3.AuthTimeout.Duration,
			MaxPreAuthBytes:         int64(cfg.POP3.MaxPreAuthBytes),
		},
		Logger: log,
	}
	if srv.AuthFailureDelay == 0 {
		srv.AuthFailureDelay = -1 // configured as 0: no delay
	}
	if srv.AuthFailureDelayMax == 0 {
		srv.AuthFailureDelayMax = -1 // configured as 0: a constant delay
	}

	var ls []listener
	closeAll := func() {
		for _, l := range ls {
			l.l.Close()
		}
	}
	for _, spec := range []struct {
		proto, addr string
		serve       func(net.Listener) error
	}{{"pop3", cfg.POP3.Listen, srv.Serve}, {"pop3s", cfg.POP3.ListenTLS, srv.ServeTLS}} {
		if spec.addr == "" {
			continue
		}
		l, err := net.Listen("tcp", spec.addr)
		if err != nil {
			closeAll()
			return fmt.Errorf("listening for %s: %w", spec.proto, err)
		}
		ls = append(ls, listener{spec.proto, l, spec.serve})
	}
	if len(ls) == 0 {
		return withCode(exitConfig, errors.New("no listener configured (pop3.listen and pop3.listen_tls are both empty)"))
	}

	password, err := app.Bootstrap(ctx, users, st)
	if err != nil {
		closeAll()
		return err
	}
	if password != "" {
		printWelcome(stdout, password, certFile, ls)
	}

	// SIGHUP is caught before the "listening" lines announce that the server
	// is up: until then its default action kills the process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	errc := make(chan error, len(ls))
	for _, l := range ls {
		log.Info("listening", "proto", l.proto, "addr", l.l.Addr().String())
		go func() { errc <- l.serve(l.l) }()
	}

	for {
		select {
		case <-hup:
			if err := certs.Reload(); err != nil {
				log.Error("reloading certificate failed, keeping the old one", "err", err)
			} else {
				log.Info("certificate reloaded", "sha256", certs.Fingerprint())
			}
		case err := <-errc:
			if !errors.Is(err, pop3server.ErrServerClosed) {
				srv.Close()
				return err
			}
		case <-ctx.Done():
			// A second SIGTERM or Ctrl-C during the grace period ends the
			// process at once (uncommitted deletions are never applied).
			signal.Reset(syscall.SIGTERM, syscall.SIGINT)
			log.Info("shutting down", "grace", cfg.POP3.ShutdownGrace.Duration)
			sctx, cancel := context.WithTimeout(context.Background(), cfg.POP3.ShutdownGrace.Duration)
			defer cancel()
			if err := srv.Shutdown(sctx); err != nil {
				log.Warn("grace period over, remaining sessions closed without applying deletions")
			}
			log.Info("stopped")
			return nil
		}
	}
}

func plaintextPolicy(s string) pop3server.PlaintextPolicy {
	switch s {
	case config.PlaintextNever:
		return pop3server.PlaintextNever
	case config.PlaintextAlways:
		return pop3server.PlaintextAlways
	}
	return pop3server.PlaintextLoopback
}

type listener struct {
	proto string
	l     net.Listener
	serve func(net.Listener) error
}

// printWelcome shows the first-run password once, with a command that
// proves the server works.
func printWelcome(w io.Writer, password, certFile string, ls []listener) {
	l := ls[0]
	for _, x := range ls {
		if x.proto == "pop3s" {
			l = x
		}
	}
	fmt.Fprintf(w, "popbox: created user %q with password %s\n", app.DemoUser, password)
	fmt.Fprintf(w, "popbox: this password is shown only once; change it with: popbox user passwd %s\n", app.DemoUser)
	fmt.Fprintf(w, "popbox: list the demo mailbox with:\n  %s\n", curlCommand(l.proto, l.l.Addr(), password, certFile))
}

func curlCommand(proto string, addr net.Addr, password, certFile string) string {
	host, port, _ := net.SplitHostPort(addr.String())
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() || ip.IsLoopback() {
		host = "localhost"
	}
	if proto == "pop3s" {
		return fmt.Sprintf("curl -sS --cacert %s -u %s:%s pop3s://%s:%s/", shellQuote(certFile), app.DemoUser, password, host, port)
	}
	return fmt.Sprintf("curl -sS -u %s:%s pop3://%s:%s/", app.DemoUser, password, host, port)
}

// shellQuote returns s as one sh(1) word, so that the printed command can
// be pasted whatever the data directory is called.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-+=.,:/@%") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
