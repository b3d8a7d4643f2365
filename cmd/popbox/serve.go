package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/popbox/popbox/config"
	"github.com/popbox/popbox/internal/app"
	"github.com/popbox/popbox/internal/privdrop"
	"github.com/popbox/popbox/lmtp"
	"github.com/popbox/popbox/pop3server"
	"github.com/popbox/popbox/store"
	"github.com/popbox/popbox/userdb"
)

func newServe(g *globals) *cobra.Command {
	var listen, listenTLS string
	var allowRoot bool
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the POP3 server",
		Long: `Run the POP3 server on the data directory, with mail in Maildirs there
or, with store = "postgres://...", in a PostgreSQL database that any number
of serve processes share (run popbox migrate first: serve refuses a
database whose schema is not current).

With no configuration it listens on 127.0.0.1:1110 (POP3 with STLS) and
127.0.0.1:1995 (POP3S), makes a self-signed certificate and, on an empty user
database, a user "demo" whose password it prints once.

Started as root (to bind ports 110 and 995) it binds its listeners, then
becomes process.user and process.group before it opens the data directory.
It refuses to run as root without process.user unless given --allow-root
(process.allow_root = true), except on loopback-only, unprivileged ports
(the defaults: a local trial), where it warns instead.

SIGTERM or SIGINT stops it gracefully. SIGHUP re-reads the configuration
and applies certificates, pop3 limits and timeouts, lmtp.max_connections
and log.level without dropping sessions; other changed keys are logged as
needing a restart. Started by systemd with sockets (LISTEN_FDS), it serves
on those instead of binding, and reports its state with sd_notify.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			// load is run again on SIGHUP, so that a reload sees the
			// file with the same flags and environment on top.
			load := func() (config.Config, error) {
				cfg, err := g.load(cmd)
				if err != nil {
					return cfg, err
				}
				if cmd.Flags().Changed("listen") {
					cfg.POP3.Listen = listen
				}
				if cmd.Flags().Changed("listen-tls") {
					cfg.POP3.ListenTLS = listenTLS
				}
				if allowRoot {
					cfg.Process.AllowRoot = true
				}
				if err := cfg.Validate(); err != nil {
					return cfg, withCode(exitConfig, err)
				}
				return cfg, nil
			}
			cfg, err := load()
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			return serve(ctx, cfg, load, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:1110", `address for POP3 with STLS ("" disables)`)
	cmd.Flags().StringVar(&listenTLS, "listen-tls", "127.0.0.1:1995", `address for POP3 over implicit TLS ("" disables)`)
	cmd.Flags().BoolVar(&allowRoot, "allow-root", false, "run as root when process.user is not set (sets process.allow_root)")
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

func serve(ctx context.Context, cfg config.Config, load func() (config.Config, error), stdout, stderr io.Writer) error {
	log, logLevel := newLevelLogger(cfg.Log, stderr)
	// Packages that log through slog's default (userdb's hash upgrades,
	// for one) log in the configured format too.
	slog.SetDefault(log)
	// Decided before anything is bound or created, so that a refusal
	// leaves no trace.
	dropTo, err := planPrivileges(os.Geteuid(), os.Getegid(), cfg.Process, loopbackTrial(cfg.POP3))
	if err != nil {
		return withCode(exitConfig, err)
	}
	proxyTrusted, err := cfg.POP3.ProxyTrusted() // validated already
	if err != nil {
		return withCode(exitConfig, err)
	}

	// The listeners are bound first, as the starting user: binding ports
	// below 1024 is what root is needed for. Everything after runs as
	// dropTo, so that the data directory is only ever touched by it.
	// Under socket activation systemd has bound the sockets, and popbox
	// binds no TCP socket of its own (see contrib/systemd).
	activated, err := activatedListeners()
	if err != nil {
		return withCode(exitConfig, err)
	}
	var ls []listener
	serving := false
	defer func() {
		if !serving {
			for _, l := range ls {
				l.l.Close()
			}
		}
	}()
	for _, spec := range []struct{ proto, addr string }{{"pop3", cfg.POP3.Listen}, {"pop3s", cfg.POP3.ListenTLS}} {
		if activated != nil {
			for _, l := range activated[spec.proto] {
				ls = append(ls, listener{spec.proto, l})
			}
			continue
		}
		if spec.addr == "" {
			continue
		}
		l, err := net.Listen("tcp", spec.addr)
		if err != nil {
			return fmt.Errorf("listening for %s: %w", spec.proto, err)
		}
		ls = append(ls, listener{spec.proto, l})
	}
	if len(ls) == 0 && activated != nil {
		return withCode(exitConfig, errors.New("socket activation passed no socket named pop3 or pop3s"))
	}
	if len(ls) == 0 {
		return withCode(exitConfig, errors.New("no listener configured (pop3.listen and pop3.listen_tls are both empty)"))
	}
	// LMTP over TCP is bound here too (its port, 24, is privileged); its
	// Unix socket is made later, by the user that owns the data directory.
	var lmtpListeners []net.Listener
	defer func() {
		if !serving {
			for _, l := range lmtpListeners {
				l.Close()
			}
		}
	}()
	if activated != nil {
		lmtpListeners = append(lmtpListeners, activated[socketLMTP]...)
	} else if cfg.LMTP.Listen != "" {
		l, err := net.Listen("tcp", cfg.LMTP.Listen)
		if err != nil {
			return fmt.Errorf("listening for lmtp: %w", err)
		}
		lmtpListeners = append(lmtpListeners, l)
	}
	mx, err := listenMetrics(cfg.Metrics) // metrics.go; nil when off
	if err != nil {
		return err
	}
	defer mx.stop()

	switch {
	case dropTo != "":
		c, err := privdrop.Drop(cfg.Process.User, cfg.Process.Group)
		if err != nil {
			return fmt.Errorf("dropping root privileges to process.user %q: %w", cfg.Process.User, err)
		}
		log.Info("dropped root privileges", "user", c.User, "uid", c.UID, "group", c.Group, "gid", c.GID)
	case os.Geteuid() == 0 && cfg.Process.AllowRoot:
		log.Warn("running as root (allow_root is set); set process.user to drop privileges after binding")
	case os.Geteuid() == 0:
		log.Warn("running as root on loopback-only, unprivileged ports (a local trial); " +
			"any other listener needs process.user (or --allow-root)")
	}

	data := app.DataDir(cfg.DataDir)
	if err := data.Create(); err != nil {
		return dataDirError(err, cfg)
	}
	// A PostgreSQL database whose schema is not this binary's is refused
	// here, before anything listens, naming `popbox migrate`: serve never
	// migrates a shared database itself, since an upgrade should be one
	// deliberate step for all frontends, not whichever starts first.
	users, err := openUsers(cfg, userdb.Options{Logger: log, KeepHashes: !cfg.Users.UpgradeHashes}, true)
	if err != nil {
		return dataDirError(err, cfg)
	}
	defer users.Close()
	st, err := app.OpenMail(ctx, cfg, log, users, mx.mailOptions()...)
	if app.IsSchemaError(err) {
		return withCode(exitConfig, err)
	}
	if err != nil {
		return dataDirError(err, cfg)
	}
	defer st.Close()
	log.Info("storage", "mail", app.DescribeStore(cfg), "users", app.DescribeUsers(cfg))

	tlsMat, err := loadTLS(cfg, data, log, nil)
	if err != nil {
		return err
	}
	certFile := tlsMat.certFile
	// Handshakes take the TLS configuration in force, which SIGHUP replaces.
	liveCerts, tlsConfig := newLiveTLS(tlsMat)
	certUser := clientCertUser(cfg)
	log.Info("tls certificate", "cert", certFile, "sha256", tlsMat.certs.Fingerprint())
	if err := users.PrepareDummyHash(); err != nil {
		return err
	}
	tokens, err := app.NewTokenVerifier(cfg.OAuth)
	if err != nil {
		return withCode(exitConfig, err)
	}
	scramSecret, err := data.SCRAMSecret()
	if err != nil {
		return dataDirError(err, cfg)
	}

	srv := &pop3server.Server{
		SCRAMSecret:         scramSecret,
		Backend:             app.Backend{Users: users, Store: mx.wrap(st)},
		Events:              mx.pop3Events(),
		TLSConfig:           tlsConfig,
		ClientCertUser:      certUser,
		LoginDelay:          cfg.POP3.LoginDelay.Duration,
		ExpireDays:          cfg.Mail.ExpireDays,
		TokenVerifier:       tokenVerifier(tokens),
		Hostname:            cfg.POP3.Hostname,
		Implementation:      "popbox-" + version(),
		Plaintext:           plaintextPolicy(cfg.POP3.PlaintextAuth),
		AuthFailureDelay:    cfg.POP3.AuthFailureDelay.Duration,
		AuthFailureDelayMax: cfg.POP3.AuthFailureDelayMax.Duration,
		Limits:              pop3Limits(cfg.POP3), // reload.go, shared with SIGHUP
		Logger:              log,
	}
	srv.AuthFailureDelay, srv.AuthFailureDelayMax = authDelays(cfg.POP3) // configured 0s mean none

	intake := &lmtp.Server{
		Store:             mx.wrap(st),
		Events:            mx.lmtpEvents(),
		Users:             lmtp.AddressResolver{Delimiters: cfg.LMTP.RecipientDelimiter, Lookup: app.RecipientLookup(users)},
		Hostname:          cfg.POP3.Hostname,
		MaxMessageBytes:   int64(cfg.LMTP.MaxMessageSize),
		MaxRecipients:     cfg.LMTP.MaxRecipients,
		MaxConnections:    cfg.LMTP.MaxConnections,
		QuotaPermanent:    cfg.LMTP.QuotaPermanent,
		NoDeliveryHeaders: !cfg.LMTP.DeliveryHeaders,
		Logger:            log.With("proto", "lmtp"),
	}
	if cfg.LMTP.Socket != "" && len(activated[socketLMTP]) == 0 {
		path := cfg.LMTP.Socket
		if !filepath.IsAbs(path) {
			path = filepath.Join(string(data), path)
		}
		mode, _ := strconv.ParseUint(cfg.LMTP.SocketMode, 8, 32) // validated by config
		l, err := lmtp.ListenUnix(path, lmtp.SocketOptions{Mode: fs.FileMode(mode), Group: cfg.LMTP.SocketGroup})
		if err != nil {
			return withCode(exitConfig, fmt.Errorf("lmtp.socket: %w", err))
		}
		lmtpListeners = append(lmtpListeners, l)
	}

	// Not on a PostgreSQL user database: frontends starting together
	// would race to create the demo user, and its password would be
	// printed by whichever won. Such an installation is set up with
	// `popbox user add`.
	if !app.UsersOnPostgres(cfg) {
		password, err := app.Bootstrap(ctx, users, st)
		if err != nil {
			return err
		}
		if password != "" {
			printWelcome(stdout, password, certFile, ls)
		}
	}

	// SIGHUP is caught before the "listening" lines announce that the server
	// is up: until then its default action kills the process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	serving = true // from here srv closes the listeners
	errc := make(chan error, len(ls))
	for _, l := range ls {
		log.Info("listening", "proto", l.proto, "addr", l.l.Addr().String())
		serveOn := srv.Serve
		if l.proto == "pop3s" {
			serveOn = srv.ServeTLS
		}
		pl := proxyListener(l.l, proxyTrusted, cfg.POP3.ProxyHeaderTimeout.Duration)
		go func() { errc <- serveOn(pl) }()
	}
	maintCtx, stopMaint := context.WithCancel(context.Background())
	maintDone := make(chan struct{})
	go func() {
		defer close(maintDone)
		maintain(maintCtx, st, cfg.Mail, log)
	}()
	defer func() { stopMaint(); <-maintDone }()
	lmtpErrc := make(chan error, len(lmtpListeners))
	for _, l := range lmtpListeners {
		log.Info("listening", "proto", "lmtp", "addr", l.Addr().String())
		go func() { lmtpErrc <- intake.Serve(l) }()
	}
	mx.start(log, readiness(users, st))

	rl := &reloader{load: load, data: data, log: log, level: logLevel, tls: liveCerts, srv: srv, intake: intake, tokens: tokens}
	rl.cfg.Store(&cfg)
	sd := notifier{log: log}
	sd.ready()
	watchdog, stopWatchdog := sd.watchdog()
	defer stopWatchdog()
	for {
		select {
		case <-hup:
			sd.reloading()
			rl.reload()
			// READY=1 after a refused reload too: the old
			// configuration is still serving.
			sd.ready()
		case <-watchdog:
			sd.ping()
		case err := <-errc:
			if !errors.Is(err, pop3server.ErrServerClosed) {
				srv.Close()
				intake.Close()
				return err
			}
		case err := <-lmtpErrc:
			if !errors.Is(err, lmtp.ErrServerClosed) {
				srv.Close()
				intake.Close()
				return fmt.Errorf("lmtp: %w", err)
			}
		case <-ctx.Done():
			// A second SIGTERM or Ctrl-C during the grace period ends the
			// process at once (uncommitted deletions are never applied).
			signal.Reset(syscall.SIGTERM, syscall.SIGINT)
			sd.stopping()
			// /readyz answers 503 while the sessions finish.
			mx.setReady(false)
			grace := rl.current().POP3.ShutdownGrace.Duration // reloadable
			log.Info("shutting down", "grace", grace)
			sctx, cancel := context.WithTimeout(context.Background(), grace)
			defer cancel()
			// Intake stops with the POP3 side: a delivery in progress
			// finishes and is answered, new ones get 421 and are retried
			// by the MTA.
			intakeDone := make(chan error, 1)
			go func() { intakeDone <- intake.Shutdown(sctx) }()
			if err := srv.Shutdown(sctx); err != nil {
				log.Warn("grace period over, remaining sessions closed without applying deletions")
			}
			if err := <-intakeDone; err != nil {
				log.Warn("grace period over, remaining LMTP sessions closed", "err", err)
			}
			log.Info("stopped")
			return nil
		}
	}
}

// maintain runs the mail store's periodic work until ctx ends: purging
// deleted mail whose keep_deleted_days are over and, with expire_days,
// expiring old mail (mailboxes in use are caught at the next run).
func maintain(ctx context.Context, st store.Admin, mail config.Mail, log *slog.Logger) {
	t := time.NewTicker(mail.MaintenanceInterval.Duration)
	defer t.Stop()
	for {
		now := time.Now()
		if mail.ExpireDays > 0 {
			n, busy, err := st.ExpireAll(ctx, now.Add(-time.Duration(mail.ExpireDays)*24*time.Hour))
			if n > 0 || len(busy) > 0 {
				log.Info("expired old mail", "messages", n, "days", mail.ExpireDays, "mailboxes_in_use", len(busy))
			}
			if err != nil && ctx.Err() == nil {
				log.Error("expiring old mail", "err", err)
			}
		}
		n, err := st.PurgeAll(ctx, now)
		if n > 0 {
			log.Info("purged deleted mail", "messages", n, "kept_days", mail.KeepDeletedDays)
		}
		if err != nil && ctx.Err() == nil {
			log.Error("purging deleted mail", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// tokenVerifier keeps a nil *app.TokenVerifier from becoming a non-nil
// interface, which would offer OAuth with nothing to check tokens.
func tokenVerifier(t *app.TokenVerifier) pop3server.TokenVerifier {
	if t == nil {
		return nil
	}
	return t
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

// planPrivileges decides which user serve runs as, given its effective ids:
// the user to drop to after binding ("" for none), or why it must not start.
// It resolves the names now, so that a typo fails before anything is bound.
func planPrivileges(euid, egid int, p config.Process, trial bool) (dropTo string, err error) {
	if p.User == "" {
		// The embedded defaults (loopback addresses, ports above 1023) are
		// a local trial: nothing there needs root or is reachable from the
		// network, and the README's first command must work on a machine
		// where the newcomer is root. Anything else is refused.
		if euid == 0 && !p.AllowRoot && !trial {
			return "", errors.New("refusing to serve as root: set user under [process] in the configuration file " +
				"(popbox -c FILE) to an unprivileged account that owns the data directory, and popbox drops to it after binding; " +
				"or run popbox as a normal user; or pass --allow-root (process.allow_root = true) to serve as root anyway")
		}
		return "", nil
	}
	c, err := privdrop.Resolve(p.User, p.Group)
	if err != nil {
		return "", fmt.Errorf("process.user: %w", err)
	}
	if c.UID == 0 {
		return "", fmt.Errorf("process.user %q is root; to serve as root leave it empty and set process.allow_root = true", p.User)
	}
	if euid == 0 {
		return p.User, nil
	}
	// Not root: switching user is impossible, but naming the user popbox
	// already runs as is fine (one configuration for both ways of starting).
	if c.UID != euid {
		return "", fmt.Errorf("process.user is %q (uid %d) but popbox runs as uid %d and only root can switch user: "+
			"start it as root, or as that user", p.User, c.UID, euid)
	}
	if p.Group != "" && c.GID != egid {
		return "", fmt.Errorf("process.group is %q (gid %d) but popbox runs as gid %d and only root can switch group: "+
			"start it as root, or with that group", p.Group, c.GID, egid)
	}
	return "", nil
}

// loopbackTrial reports whether every listener is on a loopback address
// and an unprivileged port, as the embedded defaults are.
func loopbackTrial(c config.POP3) bool {
	for _, addr := range []string{c.Listen, c.ListenTLS} {
		if addr == "" {
			continue
		}
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return false
		}
		ip := net.ParseIP(host)
		if (ip == nil || !ip.IsLoopback()) && host != "localhost" {
			return false
		}
		if n, err := strconv.Atoi(port); err != nil || (n != 0 && n < 1024) {
			return false
		}
	}
	return true
}

// dataDirError adds to a permission error on the data directory the user
// it was accessed as, since after a privilege drop that user, not the one
// who started popbox, must own it. popbox does not chown it: changing the
// owner of files an administrator named is a decision for the
// administrator, and the drop happens before the directory is touched.
func dataDirError(err error, cfg config.Config) error {
	if !errors.Is(err, fs.ErrPermission) {
		return err
	}
	who := fmt.Sprintf("uid %d", os.Geteuid())
	if cfg.Process.User != "" {
		who = fmt.Sprintf("process.user %q (uid %d, gid %d)", cfg.Process.User, os.Geteuid(), os.Getegid())
	}
	return fmt.Errorf("%w; popbox accesses data directory %s as %s, which must be able to read and write it (e.g. chown -R %s %s)",
		err, cfg.DataDir, who, chownOwner(cfg.Process), shellQuote(cfg.DataDir))
}

func chownOwner(p config.Process) string {
	if p.User == "" {
		return strconv.Itoa(os.Geteuid())
	}
	if p.Group == "" {
		return p.User + ":"
	}
	return p.User + ":" + p.Group
}
