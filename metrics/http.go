package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Timeouts of the HTTP listener. Scrapers and probes send small requests
// and read small answers; the bounds keep a slow or idle client from
// holding a connection (and its goroutine) for long.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	// writeTimeout leaves room for a scrape of a busy process.
	writeTimeout = 30 * time.Second
	idleTimeout  = 2 * time.Minute
	// CheckTimeout bounds the readiness check of one /readyz request: a
	// probe expects an answer within seconds, and a database slower than
	// this is not ready anyway.
	CheckTimeout = 2 * time.Second
	// maxScrapes in flight: more get 503 instead of piling up gathers.
	maxScrapes = 4
)

// Server serves /metrics, /healthz and /readyz for a Metrics. Create it
// with NewServer; it is ready for Serve at once and reports ready only
// after SetReady(true).
type Server struct {
	http  *http.Server
	check func(context.Context) error
	log   *slog.Logger
	ready atomic.Bool
	// failing remembers the last check's outcome, so that a failing
	// dependency is logged when it starts and stops failing, not at every
	// probe.
	failing atomic.Bool
}

// NewServer returns the HTTP server of m. check is the readiness check
// (nil for none): a cheap call to each dependency, such as the store and
// the user database, that fails when one does not answer. log receives
// the HTTP server's own errors and changes of readiness.
func (m *Metrics) NewServer(check func(context.Context) error, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &Server{check: check, log: log}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:            promLogger{log},
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: maxScrapes,
		Timeout:             writeTimeout - time.Second,
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	s.http = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return s
}

// Handler is the server's handler, for tests and for mounting elsewhere.
func (s *Server) Handler() http.Handler { return s.http.Handler }

// SetReady makes /readyz answer from the readiness check (true) or 503
// (false): true once the listeners serve, false when shutdown begins.
func (s *Server) SetReady(ready bool) { s.ready.Store(ready) }

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if !s.ready.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, "not ready: starting or shutting down\n")
		return
	}
	if s.check != nil {
		ctx, cancel := context.WithTimeout(r.Context(), CheckTimeout)
		defer cancel()
		if err := s.check(ctx); err != nil {
			if !s.failing.Swap(true) {
				s.log.Warn("readiness check failing", "err", err)
			}
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "not ready: %v\n", err)
			return
		}
		if s.failing.Swap(false) {
			s.log.Info("readiness check passing again")
		}
	}
	io.WriteString(w, "ok\n")
}

// Serve answers HTTP requests on l until Shutdown; then it returns nil.
func (s *Server) Serve(l net.Listener) error {
	if err := s.http.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics: %w", err)
	}
	return nil
}

// Shutdown closes the listener and waits for requests in progress until
// ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	s.SetReady(false)
	if err := s.http.Shutdown(ctx); err != nil {
		return fmt.Errorf("metrics: shutdown: %w", err)
	}
	return nil
}

// promLogger passes promhttp's errors (a collector failing, a client gone
// mid-scrape) to slog.
type promLogger struct{ log *slog.Logger }

func (p promLogger) Println(v ...any) {
	p.log.Warn("metrics: " + fmt.Sprint(v...))
}
