package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/popbox/popbox/fetch"
)

// Exit codes of popbox fetch. 0 and 1 follow fetchmail (new mail / none);
// the failures have one code per kind so that scripts and cron wrappers can
// react (retry a network error, page someone for an authentication error).
const (
	fetchExitNewMail  = 0
	fetchExitNoMail   = 1
	fetchExitNetwork  = 2
	fetchExitAuth     = 3
	fetchExitProtocol = 4
	fetchExitTLS      = 5
	fetchExitDelivery = 6
	fetchExitBusy     = 7
)

const fetchLong = `Download mail from POP3 servers into local Maildirs, mbox files, an MDA
or an LMTP server, as fetchmail, getmail and mpop do.

Accounts are read from the TOML file given with -c, by default
$XDG_CONFIG_HOME/popbox/fetch.toml (~/.config/popbox/fetch.toml). Every
account runs in parallel. A journal per account (in state_dir, by default
$XDG_STATE_HOME/popbox/fetch) makes a run safe to kill at any moment: the
next run neither loses a message nor stores one twice (for maildir and mbox;
mda and lmtp may deliver a message twice after a crash, never lose it).

On a terminal a progress bar is shown per account; otherwise log lines.
SIGTERM or SIGINT finishes the message in hand and ends the session cleanly
(a second signal aborts at once; nothing is lost either way).

Exit status:
  0   new mail was fetched
  1   no new mail
  2   network error (connect, timeout, connection lost)
  3   authentication failed (or no acceptable mechanism)
  4   protocol error (the server's replies are not POP3)
  5   TLS error (handshake, certificate, fingerprint, STLS not offered)
  6   local delivery failed (destination or state directory)
  7   mailbox busy (another fetch of the account runs, or the server says
      IN-USE, LOGIN-DELAY or SYS/TEMP)
  64  usage error
  78  configuration error
When accounts end differently, the most severe status wins, in the order
78, 6, 3, 5, 4, 2, 7, 0, 1. With --daemon the status is 0 after a stop by
signal, or 78 if the account file cannot be used at start.`

// fetchFlags are the options of popbox fetch and popbox fetch status.
type fetchFlags struct {
	configFile string
	accounts   []string
	dryRun     bool
	quiet      bool
	verbose    bool
	daemon     bool
	interval   time.Duration
}

func newFetch(_ *globals) *cobra.Command {
	f := &fetchFlags{}
	cmd := &cobra.Command{
		Use:   "fetch [-c FILE] [--account NAME]... [--dry-run] [-q] [--daemon --interval D]",
		Short: "Download mail from POP3 servers into local mailboxes",
		Long:  fetchLong,
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runFetch(cmd, f)
		},
	}
	// -c names the account file here, not the server's configuration: the
	// local flag shadows the root's persistent one.
	cmd.PersistentFlags().StringVarP(&f.configFile, "config", "c", "", "account file (default $XDG_CONFIG_HOME/popbox/fetch.toml)")
	cmd.PersistentFlags().StringSliceVar(&f.accounts, "account", nil, "only this account (repeatable)")
	cmd.Flags().BoolVar(&f.dryRun, "dry-run", false, "connect and report what would be fetched and deleted; change nothing")
	cmd.Flags().BoolVarP(&f.quiet, "quiet", "q", false, "print only warnings and errors")
	cmd.Flags().BoolVarP(&f.verbose, "verbose", "v", false, "log the POP3 exchanges (passwords redacted)")
	cmd.Flags().BoolVar(&f.daemon, "daemon", false, "keep running, fetching every --interval, until SIGTERM or SIGINT")
	cmd.Flags().DurationVar(&f.interval, "interval", 5*time.Minute, "time between fetches with --daemon")
	cmd.AddCommand(newFetchStatus(f))
	return cmd
}

func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return withCode(exitUsage, fmt.Errorf("unexpected argument %q for %q", args[0], cmd.CommandPath()))
	}
	return nil
}

func newFetchStatus(f *fetchFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "status [-c FILE] [--account NAME]...",
		Short: "Show per account the last run and what the server holds that would be fetched",
		Long: `For every account: the time and result of the last run (from the journal),
and, from a dry-run connection, the messages and bytes a fetch would download
and the messages it would delete. The exit status is that of popbox fetch
--dry-run: 0 when there is mail to fetch, 1 when there is none, else the
error's code.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runFetchStatus(cmd, f)
		},
	}
}

// loadAccounts reads the account file and selects the accounts asked for.
func loadAccounts(f *fetchFlags, log *slog.Logger) ([]*fetch.Account, error) {
	path := f.configFile
	if path == "" {
		var err error
		if path, err = fetch.DefaultConfigPath(); err != nil {
			return nil, withCode(exitConfig, err)
		}
	}
	cfg, err := fetch.LoadConfig(path)
	if err != nil {
		return nil, withCode(exitConfig, err)
	}
	for _, w := range cfg.Warnings {
		log.Warn(w)
	}
	if len(f.accounts) == 0 {
		return cfg.Accounts, nil
	}
	var out []*fetch.Account
	for _, name := range f.accounts {
		a, ok := cfg.Account(name)
		if !ok {
			return nil, withCode(exitUsage, fmt.Errorf("no account %q in %s", name, path))
		}
		out = append(out, a)
	}
	return out, nil
}

// passwords resolves each account's password once per cycle: the
// password key, password_command (run every cycle, since it may hand out
// short-lived OAuth tokens), or a prompt on the terminal (asked once and
// remembered for the life of the process).
type passwords struct {
	in       io.Reader
	prompt   io.Writer
	prompted map[string]string
}

func (p *passwords) get(ctx context.Context, a *fetch.Account) (string, error) {
	if pw, err := fetch.ResolvePassword(ctx, a); err != nil || pw != "" {
		return pw, err
	}
	if pw, ok := p.prompted[a.Name]; ok {
		return pw, nil
	}
	f, ok := p.in.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return "", fmt.Errorf("%w: account %q: no password: set password_command, or run on a terminal to be asked", fetch.ErrConfig, a.Name)
	}
	fmt.Fprintf(p.prompt, "Password for %s at %s (account %s): ", a.User, a.Server, a.Name)
	b, err := term.ReadPassword(int(f.Fd()))
	fmt.Fprintln(p.prompt)
	if err != nil {
		return "", fmt.Errorf("%w: reading the password: %w", fetch.ErrConfig, err)
	}
	p.prompted[a.Name] = string(b)
	return string(b), nil
}

// resolve returns copies of the accounts with their passwords set;
// accounts whose password cannot be had get a result with the error.
func (p *passwords) resolve(ctx context.Context, accts []*fetch.Account) ([]*fetch.Account, []*fetch.Result) {
	var ready []*fetch.Account
	var failed []*fetch.Result
	for _, a := range accts {
		pw, err := p.get(ctx, a)
		if err != nil {
			failed = append(failed, &fetch.Result{Account: a.Name, Err: &fetch.Error{Account: a.Name, Op: "password", Kind: fetch.ErrConfig, Err: err}})
			continue
		}
		c := *a
		c.Password = pw
		ready = append(ready, &c)
	}
	return ready, failed
}

// newFetchLogger logs to w: info and up, warnings only with -q, and the
// POP3 traces with -v.
func newFetchLogger(f *fetchFlags, w io.Writer) *slog.Logger {
	level := slog.LevelInfo
	switch {
	case f.verbose:
		level = slog.LevelDebug
	case f.quiet:
		level = slog.LevelWarn
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func runFetch(cmd *cobra.Command, f *fetchFlags) error {
	if cmd.Flags().Changed("interval") && !f.daemon {
		return withCode(exitUsage, errors.New("--interval needs --daemon"))
	}
	if f.daemon && f.interval < time.Second {
		return withCode(exitUsage, fmt.Errorf("--interval %v is too short", f.interval))
	}
	if f.daemon && f.dryRun {
		return withCode(exitUsage, errors.New("--daemon and --dry-run exclude each other"))
	}
	stderr := cmd.ErrOrStderr()
	var bars *barSet
	if !f.quiet && !f.daemon && !f.dryRun && !f.verbose && isTerminal(stderr) {
		bars = newBarSet(stderr)
		stderr = bars // log lines go above the bars
	}
	log := newFetchLogger(f, stderr)
	if bars != nil {
		// The bars show progress; only problems are worth a line.
		log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	accts, err := loadAccounts(f, log)
	if err != nil {
		return err
	}

	ctx, stop := stopOnSignal(cmd.Context(), log)
	defer stop()
	pw := &passwords{in: cmd.InOrStdin(), prompt: cmd.ErrOrStderr(), prompted: map[string]string{}}
	for {
		results := fetchCycle(ctx, accts, f, pw, log, bars)
		if f.dryRun {
			printDryRun(cmd.OutOrStdout(), results)
		}
		if !f.daemon {
			return fetchOutcome(results, f.dryRun)
		}
		if ctx.Err() != nil {
			log.Info("stopped")
			return nil
		}
		select {
		case <-ctx.Done():
			log.Info("stopped")
			return nil
		case <-time.After(f.interval):
		}
	}
}

// stopOnSignal returns a context cancelled by the first SIGTERM or SIGINT:
// the runs then finish the message in hand and end their sessions. A
// second signal exits at once; the journal makes that safe too.
func stopOnSignal(parent context.Context, log *slog.Logger) (context.Context, func()) {
	if parent == nil {
		parent = context.Background()
	}
	ctx, cancel := context.WithCancel(parent)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	done := make(chan struct{})
	go func() {
		select {
		case sig := <-sigs:
			log.Info("signal received: finishing the messages in hand (send it again to abort)", "signal", sig)
			cancel()
		case <-done:
			return
		}
		select {
		case sig := <-sigs:
			log.Warn("second signal: aborting", "signal", sig)
			os.Exit(128 + int(sig.(syscall.Signal)))
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(sigs)
		close(done)
		cancel()
	}
}

// fetchCycle runs every account once, in parallel.
func fetchCycle(ctx context.Context, accts []*fetch.Account, f *fetchFlags, pw *passwords, log *slog.Logger, bars *barSet) []*fetch.Result {
	ready, results := pw.resolve(ctx, accts)
	for _, r := range results {
		log.Error("account skipped", "account", r.Account, "err", r.Err)
	}
	out := make([]*fetch.Result, len(ready))
	var wg sync.WaitGroup
	for i, a := range ready {
		o := fetch.Options{Logger: log, DryRun: f.dryRun}
		var bar *accountBar
		if bars != nil {
			bar = bars.add(a.Name)
			o.Progress = bar
		}
		wg.Go(func() {
			out[i] = fetch.Fetch(ctx, a, o)
			logResult(log, out[i], f.dryRun)
			if bar != nil && out[i].Err != nil {
				bar.set.setLine(bar.idx, fmt.Sprintf("%s: failed after %d messages: %s", a.Name, out[i].Fetched, fetch.ResultText(out[i])))
			}
		})
	}
	wg.Wait()
	if bars != nil {
		bars.finish()
	}
	return append(results, out...)
}

func logResult(log *slog.Logger, r *fetch.Result, dry bool) {
	if dry {
		return
	}
	attrs := []any{"account", r.Account, "fetched", r.Fetched, "bytes", r.Bytes, "deleted", r.Deleted,
		"duration", r.End.Sub(r.Start).Round(time.Millisecond)}
	if r.Skipped > 0 {
		attrs = append(attrs, "skipped_oversize", r.Skipped)
	}
	if r.Deferred > 0 {
		attrs = append(attrs, "left_for_later", r.Deferred)
	}
	if r.Err != nil {
		log.Error("fetch failed", append(attrs, "err", r.Err)...)
		return
	}
	log.Info("fetch done", attrs...)
}

func printDryRun(w io.Writer, results []*fetch.Result) {
	for _, r := range results {
		if r.Err != nil {
			fmt.Fprintf(w, "%s: error: %v\n", r.Account, r.Err)
			continue
		}
		fmt.Fprintf(w, "%s: would fetch %d messages (%s), would delete %d", r.Account, r.Planned, humanBytes(r.PlannedBytes), r.PlannedDeletes)
		if r.Skipped > 0 {
			fmt.Fprintf(w, ", %d over max_size skipped", r.Skipped)
		}
		if r.Deferred > 0 {
			fmt.Fprintf(w, ", %d left for later runs", r.Deferred)
		}
		fmt.Fprintln(w)
	}
}

// resultCode is the exit status one account's outcome calls for.
func resultCode(r *fetch.Result, dry bool) int {
	if r.Err == nil {
		if r.Fetched > 0 || dry && r.Planned > 0 {
			return fetchExitNewMail
		}
		return fetchExitNoMail
	}
	for _, k := range []struct {
		kind error
		code int
	}{
		{fetch.ErrConfig, exitConfig}, {fetch.ErrDelivery, fetchExitDelivery}, {fetch.ErrAuth, fetchExitAuth},
		{fetch.ErrTLS, fetchExitTLS}, {fetch.ErrProtocol, fetchExitProtocol}, {fetch.ErrNetwork, fetchExitNetwork},
		{fetch.ErrBusy, fetchExitBusy},
	} {
		if errors.Is(r.Err, k.kind) {
			return k.code
		}
	}
	return exitSoftware
}

// severity orders the outcomes; with several accounts the most severe one
// is the exit status. Problems that need a person come first
// (configuration, the local store, credentials, certificates), then those
// that usually pass by themselves (a broken server, the network, a lock).
func severity(code int) int {
	switch code {
	case exitConfig:
		return 10
	case exitSoftware:
		return 9
	case fetchExitDelivery:
		return 8
	case fetchExitAuth:
		return 7
	case fetchExitTLS:
		return 6
	case fetchExitProtocol:
		return 5
	case fetchExitNetwork:
		return 4
	case fetchExitBusy:
		return 3
	case fetchExitNewMail:
		return 2
	}
	return 1 // fetchExitNoMail
}

// fetchOutcome turns the results into the command's error and status.
func fetchOutcome(results []*fetch.Result, dry bool) error {
	code := fetchExitNoMail
	var errs []error
	for _, r := range results {
		c := resultCode(r, dry)
		if severity(c) > severity(code) {
			code = c
		}
		if r.Err != nil {
			errs = append(errs, r.Err)
		}
	}
	switch {
	case code == fetchExitNewMail:
		return nil
	case code == fetchExitNoMail:
		return withCode(fetchExitNoMail, errors.New("no new mail"))
	}
	return withCode(code, errors.Join(errs...))
}

func runFetchStatus(cmd *cobra.Command, f *fetchFlags) error {
	log := newFetchLogger(&fetchFlags{quiet: true}, cmd.ErrOrStderr())
	accts, err := loadAccounts(f, log)
	if err != nil {
		return err
	}
	ctx, stop := stopOnSignal(cmd.Context(), log)
	defer stop()
	pw := &passwords{in: cmd.InOrStdin(), prompt: cmd.ErrOrStderr(), prompted: map[string]string{}}
	results := fetchCycle(ctx, accts, &fetchFlags{dryRun: true}, pw, log, nil)
	byName := map[string]*fetch.Result{}
	for _, r := range results {
		byName[r.Account] = r
	}
	w := cmd.OutOrStdout()
	for _, a := range accts {
		fmt.Fprintf(w, "%s (%s@%s, %s)\n", a.Name, a.User, a.Addr(), a.Deliver)
		dir := a.StateDir
		if dir == "" {
			dir, _ = fetch.DefaultStateDir()
		}
		j, jerr := fetch.ReadJournal(dir, a.JournalBase(), log)
		switch {
		case jerr != nil:
			fmt.Fprintf(w, "  journal:    %v\n", jerr)
		case j.LastRun().Time.IsZero():
			fmt.Fprintf(w, "  last run:   never\n")
		default:
			lr := j.LastRun()
			fmt.Fprintf(w, "  last run:   %s (%s ago): %s, %d messages, %s\n", lr.Time.Format("2006-01-02 15:04:05"),
				time.Since(lr.Time).Round(time.Second), lr.Result, lr.Fetched, humanBytes(lr.Bytes))
			if lr.Message != "" {
				fmt.Fprintf(w, "              %s\n", lr.Message)
			}
			counts := map[fetch.State]int{}
			for _, e := range j.Entries() {
				counts[e.State]++
			}
			fmt.Fprintf(w, "  journal:    %d delivered and still on the server, %d pending\n",
				counts[fetch.StateDelivered], counts[fetch.StatePending])
		}
		r := byName[a.Name]
		if r == nil {
			continue
		}
		if r.Err != nil {
			fmt.Fprintf(w, "  server:     %v\n", r.Err)
			continue
		}
		fmt.Fprintf(w, "  server:     %d messages to fetch (%s), %d to delete", r.Planned, humanBytes(r.PlannedBytes), r.PlannedDeletes)
		if r.Skipped > 0 {
			fmt.Fprintf(w, ", %d over max_size", r.Skipped)
		}
		if r.Deferred > 0 {
			fmt.Fprintf(w, ", %d beyond this run's limits", r.Deferred)
		}
		fmt.Fprintln(w)
	}
	return fetchOutcome(results, true)
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// barSet draws one progress bar per account on a terminal: each bar owns
// a line of a block at the bottom; a log line is printed above the block,
// which is then drawn again.
type barSet struct {
	mu    sync.Mutex
	w     io.Writer
	lines []string
	drawn int // lines of the block currently on the screen
}

func newBarSet(w io.Writer) *barSet { return &barSet{w: w} }

// accountBar is one account's bar: bytes with rate and ETA, and messages
// in the description.
type accountBar struct {
	set     *barSet
	idx     int
	name    string
	bar     *progressbar.ProgressBar
	mu      sync.Mutex
	done    int
	planned int
}

func (b *barSet) add(name string) *accountBar {
	b.mu.Lock()
	idx := len(b.lines)
	b.lines = append(b.lines, name+": connecting")
	b.mu.Unlock()
	b.redraw()
	return &accountBar{set: b, idx: idx, name: name}
}

func (a *accountBar) Planned(messages int, n int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.planned = messages
	a.bar = progressbar.NewOptions64(max(n, 1),
		progressbar.OptionSetWriter(lineWriter{a.set, a.idx}),
		progressbar.OptionSetDescription(a.describe()),
		progressbar.OptionShowBytes(true),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionSetWidth(24),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSetRenderBlankState(true),
	)
	if messages == 0 {
		a.set.setLine(a.idx, a.name+": no new mail")
	}
}

func (a *accountBar) describe() string {
	return fmt.Sprintf("%s %d/%d msgs", a.name, a.done, a.planned)
}

func (a *accountBar) Retrieved(n int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.bar != nil {
		a.bar.Add64(n)
	}
}

func (a *accountBar) Delivered(int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.done++
	if a.bar != nil {
		a.bar.Describe(a.describe())
	}
}

// lineWriter receives a bar's renderings ("\r" and the bar) for one line.
type lineWriter struct {
	set *barSet
	idx int
}

func (l lineWriter) Write(p []byte) (int, error) {
	s := string(p)
	if i := strings.LastIndexByte(s, '\r'); i >= 0 {
		s = s[i+1:]
	}
	s = strings.TrimRight(s, " \n")
	if s != "" {
		l.set.setLine(l.idx, s)
	}
	return len(p), nil
}

func (b *barSet) setLine(i int, s string) {
	b.mu.Lock()
	b.lines[i] = s
	b.mu.Unlock()
	b.redraw()
}

// redraw moves the cursor up over the block and writes it again.
func (b *barSet) redraw() {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out bytes.Buffer
	if b.drawn > 0 {
		fmt.Fprintf(&out, "\x1b[%dA", b.drawn)
	}
	for _, l := range b.lines {
		out.WriteString("\r\x1b[2K" + l + "\n")
	}
	b.drawn = len(b.lines)
	b.w.Write(out.Bytes())
}

// Write prints a log line above the block.
func (b *barSet) Write(p []byte) (int, error) {
	b.mu.Lock()
	var out bytes.Buffer
	if b.drawn > 0 {
		fmt.Fprintf(&out, "\x1b[%dA\x1b[J", b.drawn)
	}
	out.Write(p)
	b.drawn = 0
	b.w.Write(out.Bytes())
	b.mu.Unlock()
	b.redraw()
	return len(p), nil
}

// finish leaves the final state of the bars on the screen.
func (b *barSet) finish() {
	b.redraw()
	b.mu.Lock()
	b.lines, b.drawn = nil, 0
	b.mu.Unlock()
}
