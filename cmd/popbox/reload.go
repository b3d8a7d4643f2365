package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/popbox/popbox/config"
	"github.com/popbox/popbox/internal/app"
	"github.com/popbox/popbox/lmtp"
	"github.com/popbox/popbox/pop3server"
	"github.com/popbox/popbox/tlsconf"
)

// isLiveKey reports whether a SIGHUP applies key to the running server.
// Every other key that changes is logged as needing a restart and keeps
// its value: the listeners are bound (and privileges dropped) once, the
// stores and the user database are opened once, and the remaining pop3
// and lmtp settings are fields their servers read without
// synchronisation. tls.client_ca_file is live as a different file; turning
// it on or off is not (mergeReload).
func isLiveKey(key string) bool {
	switch key {
	case "tls.cert_file", "tls.key_file", "tls.extra_cert_files", "tls.extra_key_files", "tls.client_ca_file",
		"pop3.idle_timeout", "pop3.allow_short_idle_timeout", "pop3.max_line", "pop3.max_auth_line",
		"pop3.max_bad_commands", "pop3.auth_failure_delay", "pop3.auth_failure_delay_max", "pop3.auth_timeout",
		"pop3.max_preauth_bytes", "pop3.shutdown_grace", "pop3.max_connections", "pop3.max_connections_per_ip",
		"pop3.max_unauthenticated_per_ip", "pop3.login_delay",
		"lmtp.max_connections",
		"log.level":
		return true
	}
	return false
}

// mergeReload returns the configuration to run with after a reload: old
// with the live keys that next changes, and the keys that changed but
// need a restart (keeping their old values).
func mergeReload(old, next config.Config) (config.Config, []string) {
	merged := old
	var restart []string
	oldKeys, nextKeys, mergedKeys := leaves(&old), leaves(&next), leaves(&merged)
	// Sorted so that the log lists them the same way each time.
	for _, key := range slices.Sorted(maps.Keys(oldKeys)) {
		a, b := oldKeys[key], nextKeys[key]
		if reflect.DeepEqual(a.Interface(), b.Interface()) {
			continue
		}
		live := isLiveKey(key)
		if key == "tls.client_ca_file" && (old.TLS.ClientCAFile == "") != (next.TLS.ClientCAFile == "") {
			// Whether EXTERNAL is offered is decided when the server
			// starts.
			live = false
		}
		if !live {
			restart = append(restart, key)
			continue
		}
		mergedKeys[key].Set(b)
	}
	return merged, restart
}

// leaves maps each dotted TOML key of the struct *v points to (as the
// config package names them) to its field.
func leaves(v any) map[string]reflect.Value {
	m := map[string]reflect.Value{}
	var walk func(prefix string, v reflect.Value)
	walk = func(prefix string, v reflect.Value) {
		t := v.Type()
		for i := range t.NumField() {
			name, _, _ := strings.Cut(t.Field(i).Tag.Get("toml"), ",")
			if name == "" || name == "-" {
				continue
			}
			f := v.Field(i)
			if f.Kind() == reflect.Struct && f.Type() != reflect.TypeFor[config.Duration]() {
				walk(prefix+name+".", f)
				continue
			}
			m[prefix+name] = f
		}
	}
	walk("", reflect.ValueOf(v).Elem())
	return m
}

// pop3Limits are the pop3server limits the configuration sets.
func pop3Limits(p config.POP3) pop3server.Limits {
	return pop3server.Limits{
		MaxLine:                 p.MaxLine,
		MaxAuthLine:             p.MaxAuthLine,
		IdleTimeout:             p.IdleTimeout.Duration,
		MaxBadCommands:          p.MaxBadCommands,
		MaxConnections:          p.MaxConnections,
		MaxConnectionsPerIP:     p.MaxConnectionsPerIP,
		MaxUnauthenticatedPerIP: p.MaxUnauthenticatedPerIP,
		AuthTimeout:             p.AuthTimeout.Duration,
		MaxPreAuthBytes:         int64(p.MaxPreAuthBytes),
	}
}

// authDelays translates the configured failure delays for pop3server, for
// which 0 means its default: a configured 0 means none (base) or a
// constant delay (ceiling), which pop3server spells as negative.
func authDelays(p config.POP3) (base, ceiling time.Duration) {
	base, ceiling = p.AuthFailureDelay.Duration, p.AuthFailureDelayMax.Duration
	if base == 0 {
		base = -1
	}
	if ceiling == 0 {
		ceiling = -1
	}
	return base, ceiling
}

// newLevelLogger is newLogger with a level a reload can change.
func newLevelLogger(cfg config.Log, w io.Writer) (*slog.Logger, *slog.LevelVar) {
	level := new(slog.LevelVar)
	level.UnmarshalText([]byte(cfg.Level)) // validated by config
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), level
	}
	return slog.New(slog.NewTextHandler(w, opts)), level
}

// tlsMaterial is what the tls section loads: the certificates and the
// configuration handshakes use.
type tlsMaterial struct {
	certs    *tlsconf.Certificates
	config   *tls.Config
	certFile string // the main certificate, generated one included
	keyFile  string
	// selfSigned: popbox made the pair (no tls.cert_file).
	selfSigned bool
}

// loadTLS loads the certificates and the client CA cfg names; with no
// cert_file, the self-signed pair in the data directory: that of prev when
// given (a reload re-reads the files as they are, as an administrator who
// replaced them expects), else made if missing or unfit.
func loadTLS(cfg config.Config, data app.DataDir, log *slog.Logger, prev *tlsMaterial) (*tlsMaterial, error) {
	certFile, keyFile := cfg.TLS.CertFile, cfg.TLS.KeyFile
	if certFile == "" && prev != nil && prev.selfSigned {
		certFile, keyFile = prev.certFile, prev.keyFile
	} else if certFile == "" {
		var created bool
		var err error
		certFile, keyFile, created, err = tlsconf.EnsureSelfSigned(string(data), []string{cfg.POP3.Hostname})
		if err != nil {
			return nil, dataDirError(fmt.Errorf("self-signed certificate: %w", err), cfg)
		}
		if created {
			log.Info("created self-signed certificate", "cert", certFile)
		}
	}
	var extra []tlsconf.FilePair
	for i, f := range cfg.TLS.ExtraCertFiles {
		extra = append(extra, tlsconf.FilePair{CertFile: f, KeyFile: cfg.TLS.ExtraKeyFiles[i]})
	}
	certs, err := tlsconf.LoadCertificates(certFile, keyFile, extra...)
	if err != nil {
		return nil, withCode(exitConfig, err)
	}
	tc := tlsconf.ServerConfig(certs)
	if cfg.TLS.ClientCAFile != "" {
		if err := tlsconf.RequestClientCerts(tc, cfg.TLS.ClientCAFile); err != nil {
			return nil, withCode(exitConfig, err)
		}
	}
	return &tlsMaterial{certs: certs, config: tc, certFile: certFile, keyFile: keyFile, selfSigned: cfg.TLS.CertFile == ""}, nil
}

// liveTLS hands each handshake the TLS configuration in force. The
// server's own TLSConfig stays the one it started with (its session
// ticket keys with it, so tickets survive a reload); its
// GetConfigForClient returns the current one.
type liveTLS struct{ cur atomic.Pointer[tlsMaterial] }

func newLiveTLS(m *tlsMaterial) (*liveTLS, *tls.Config) {
	l := &liveTLS{}
	l.cur.Store(m)
	tc := m.config.Clone()
	tc.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) { return l.cur.Load().config, nil }
	return l, tc
}

// reloader applies a re-read configuration to the running servers.
type reloader struct {
	load   func() (config.Config, error) // as serve loaded it: file, flags, environment
	cfg    atomic.Pointer[config.Config] // in force
	data   app.DataDir
	log    *slog.Logger
	level  *slog.LevelVar
	tls    *liveTLS
	srv    *pop3server.Server
	intake *lmtp.Server
	tokens *app.TokenVerifier
}

// current is the configuration in force.
func (r *reloader) current() config.Config { return *r.cfg.Load() }

// reload re-reads the configuration and applies what can change at run
// time. A configuration that does not load, validate, or whose
// certificates do not load, is refused whole with one error line: nothing
// of it is applied. It reports whether the new configuration was applied.
func (r *reloader) reload() bool {
	next, err := r.load()
	if err != nil {
		r.log.Error("reloading configuration failed, keeping the old one", "err", err)
		return false
	}
	merged, restart := mergeReload(r.current(), next)
	m, err := loadTLS(merged, r.data, r.log, r.tls.cur.Load())
	if err != nil {
		// The message the certificate-only reload of earlier versions
		// logged, which monitoring may match.
		r.log.Error("reloading certificate failed, keeping the old configuration", "err", err)
		return false
	}
	for _, key := range restart {
		r.log.Warn("configuration change needs a restart, keeping the old value", "key", key)
	}
	r.tls.cur.Store(m)
	r.srv.SetLimits(pop3Limits(merged.POP3))
	r.srv.SetAuthFailureDelay(authDelays(merged.POP3))
	r.srv.SetLoginDelay(merged.POP3.LoginDelay.Duration)
	r.intake.SetMaxConnections(merged.LMTP.MaxConnections)
	r.level.UnmarshalText([]byte(merged.Log.Level)) // validated by config
	r.cfg.Store(&merged)
	r.log.Info("certificate reloaded", "sha256", m.certs.Fingerprint())
	if r.tokens != nil {
		if err := r.tokens.Reload(); err != nil {
			r.log.Error("reloading oauth.jwks_file failed, keeping the old keys", "err", err)
		}
	}
	r.log.Info("configuration reloaded", "needs_restart", strings.Join(restart, ","),
		"max_connections", merged.POP3.MaxConnections, "max_connections_per_ip", merged.POP3.MaxConnectionsPerIP,
		"log_level", merged.Log.Level)
	return true
}

// clientCertUser is the SASL EXTERNAL mapping, nil without client_ca_file.
func clientCertUser(cfg config.Config) func(*x509.Certificate) (string, error) {
	if cfg.TLS.ClientCAFile == "" {
		return nil
	}
	return tlsconf.ClientCertUser(cfg.TLS.ClientCertUser)
}
