package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/popbox/popbox/config"
	"github.com/popbox/popbox/internal/app"
	"github.com/popbox/popbox/lmtp"
	"github.com/popbox/popbox/metrics"
	"github.com/popbox/popbox/pop3server"
	"github.com/popbox/popbox/store"
	"github.com/popbox/popbox/userdb"
)

// metricsEndpoint is serve's [metrics] listener with the metrics it serves;
// nil when metrics.listen is empty. Every method works on nil, doing
// nothing, so that serve needs no checks and, with metrics off, neither
// the servers' hooks nor the store wrapper cost anything.
type metricsEndpoint struct {
	m       *metrics.Metrics
	l       net.Listener
	srv     *metrics.Server
	started bool
	done    chan struct{}
}

// listenMetrics binds metrics.listen, before privileges are dropped like
// the other listeners (the address may name a privileged port).
func listenMetrics(cfg config.Metrics) (*metricsEndpoint, error) {
	if cfg.Listen == "" {
		return nil, nil
	}
	l, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listening for metrics: %w", err)
	}
	return &metricsEndpoint{m: metrics.New(), l: l, done: make(chan struct{})}, nil
}

// pop3Events returns the POP3 server's Events: an untyped nil when off,
// since a nil pointer in the interface would be called.
func (e *metricsEndpoint) pop3Events() pop3server.Events {
	if e == nil {
		return nil
	}
	return e.m.POP3()
}

func (e *metricsEndpoint) lmtpEvents() lmtp.Events {
	if e == nil {
		return nil
	}
	return e.m.LMTP()
}

// mailOptions has the store report its lock waits.
func (e *metricsEndpoint) mailOptions() []app.MailOption {
	if e == nil {
		return nil
	}
	return []app.MailOption{app.WithLockWait(e.m.LockWait)}
}

// wrap returns st with its calls timed.
func (e *metricsEndpoint) wrap(st store.Admin) store.Admin {
	if e == nil {
		return st
	}
	return e.m.Admin(st)
}

// start serves the endpoint and reports ready: serve calls it once the
// POP3 and LMTP listeners serve.
func (e *metricsEndpoint) start(log *slog.Logger, check func(context.Context) error) {
	if e == nil {
		return
	}
	e.srv = e.m.NewServer(check, log.With("proto", "metrics"))
	e.started = true
	// Ready before the listening line: whoever waits for that line may
	// probe /readyz at once.
	e.srv.SetReady(true)
	log.Info("listening", "proto", "metrics", "addr", e.l.Addr().String())
	go func() {
		defer close(e.done)
		// A failing metrics listener is no reason to stop serving mail.
		if err := e.srv.Serve(e.l); err != nil {
			log.Error("metrics listener failed", "err", err)
		}
	}()
}

// setReady(false) makes /readyz answer 503 from the start of a shutdown,
// while sessions finish and /metrics still answers.
func (e *metricsEndpoint) setReady(ready bool) {
	if e != nil && e.srv != nil {
		e.srv.SetReady(ready)
	}
}

// metricsShutdownGrace bounds the wait for scrapes in progress when serve
// ends; a scraper retries at its next interval anyway.
const metricsShutdownGrace = 5 * time.Second

// stop ends the endpoint: the listener alone if serve never got to
// start it, else the HTTP server after the scrapes in progress.
func (e *metricsEndpoint) stop() {
	if e == nil {
		return
	}
	if !e.started {
		e.l.Close()
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), metricsShutdownGrace)
	defer cancel()
	e.srv.Shutdown(ctx)
	<-e.done
}

// readinessProbeUser is a name looked up by the readiness check. Whether
// it exists does not matter: the lookup proves the database answers.
const readinessProbeUser = "popbox-readiness-probe"

// readiness is /readyz's check: one indexed lookup in the user database
// and one in the store (a Maildir's directory, a PostgreSQL row), cheap
// enough for a probe every few seconds.
func readiness(users *userdb.DB, st store.Admin) func(context.Context) error {
	return func(ctx context.Context) error {
		if _, err := users.Get(ctx, readinessProbeUser); err != nil && !errors.Is(err, userdb.ErrNotFound) {
			return fmt.Errorf("user database: %w", err)
		}
		if _, err := st.Usage(ctx, readinessProbeUser); err != nil {
			return fmt.Errorf("store: %w", err)
		}
		return nil
	}
}
