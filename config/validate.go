package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Bounds on sizes, so that no configuration lets a client make the server
// buffer without limit.
const (
	minMaxLine     = 64 // room for the longest command plus a useful argument
	maxMaxLine     = 64 << 10
	maxMaxAuthLine = 1 << 20
	maxAuthDelay   = time.Minute // longer only ties up connections
	// A login takes a few hundred octets; more than this before login is
	// no client's need.
	minMaxPreAuthBytes = 1024
	maxMaxPreAuthBytes = 16 << 20
)

// Validate checks values the types alone cannot: enumerations, addresses,
// ranges, and keys that only make sense together. It returns every problem,
// joined, each an *Error naming its key.
func (c Config) Validate() error {
	problems := c.check()
	errs := make([]error, len(problems))
	for i, e := range problems {
		errs[i] = e
	}
	return errors.Join(errs...)
}

func (c Config) check() []*Error {
	var errs []*Error
	bad := func(key, format string, args ...any) {
		errs = append(errs, &Error{Key: key, Msg: fmt.Sprintf(format, args...), Kind: ErrInvalidValue})
	}

	if c.DataDir == "" {
		bad("data_dir", "must not be empty")
	} else if strings.ContainsRune(c.DataDir, 0) {
		bad("data_dir", "must not contain a NUL byte")
	}

	switch {
	case c.Store == "" || c.Store == StoreMaildir:
	case IsPostgresDSN(c.Store):
		if msg := checkDSN(c.Store); msg != "" {
			bad("store", "%s", msg)
		}
	default:
		bad("store", "%q is neither %q nor a postgres:// or postgresql:// URL", RedactDSN(c.Store), StoreMaildir)
	}
	switch db := c.Users.Database; {
	case IsPostgresDSN(db):
		if msg := checkDSN(db); msg != "" {
			bad("users.database", "%s", msg)
		}
	case strings.ContainsRune(db, 0):
		bad("users.database", "must not contain a NUL byte")
	case strings.Contains(db, "://"):
		// A URL of another scheme would become a file of that name.
		bad("users.database", "%q is neither a file nor a postgres:// or postgresql:// URL", RedactDSN(db))
	}
	if d := c.Postgres.Lease.Duration; d < minLease || d > maxLease {
		bad("postgres.lease", "must be between %s and %s, not %s", minLease, maxLease, d)
	}
	if id := c.Postgres.NodeID; len(id) > maxNodeID || strings.ContainsFunc(id, func(r rune) bool { return r <= ' ' || r > '~' }) {
		bad("postgres.node_id", "%q: use at most %d printable ASCII characters without spaces", id, maxNodeID)
	}

	for _, f := range []struct{ key, v string }{{"process.user", c.Process.User}, {"process.group", c.Process.Group}} {
		if strings.ContainsFunc(f.v, func(r rune) bool { return r <= ' ' || r == 0x7f || r == ':' }) {
			bad(f.key, "%q is not a user or group name: no spaces, colons or control characters", f.v)
		}
	}
	if c.Process.Group != "" && c.Process.User == "" {
		bad("process.group", "needs process.user: the group is only changed together with the user")
	}

	p := c.POP3
	for _, l := range []struct{ key, addr string }{{"pop3.listen", p.Listen}, {"pop3.listen_tls", p.ListenTLS}} {
		if msg := checkListen(l.addr); msg != "" {
			bad(l.key, "%s", msg)
		}
	}
	switch {
	case p.Listen == "" && p.ListenTLS == "":
		bad("pop3.listen", "pop3.listen and pop3.listen_tls are both empty: no POP3 listener")
	case p.Listen == p.ListenTLS && !strings.HasSuffix(p.Listen, ":0"):
		bad("pop3.listen_tls", "same address as pop3.listen (%s)", p.Listen)
	}
	if msg := checkHostname(p.Hostname); msg != "" {
		bad("pop3.hostname", "%s", msg)
	}
	switch p.PlaintextAuth {
	case PlaintextNever, PlaintextLoopback, PlaintextAlways:
	default:
		bad("pop3.plaintext_auth", "must be one of %s, %s, %s, not %q", PlaintextNever, PlaintextLoopback, PlaintextAlways, p.PlaintextAuth)
	}

	// RFC 1939 §3: "If a session-timeout timer is used, it MUST be of at
	// least 10 minutes' duration."
	switch d := p.IdleTimeout.Duration; {
	case d <= 0:
		bad("pop3.idle_timeout", "must be positive")
	case d < MinIdleTimeout && !p.AllowShortIdleTimeout:
		bad("pop3.idle_timeout", "%s is below the %s minimum of RFC 1939 §3; set pop3.allow_short_idle_timeout = true to allow it", d, MinIdleTimeout)
	}

	// RFC 2449 §4: command lines are at most 255 octets including CRLF; a
	// larger bound tolerates sloppy clients, a much smaller one breaks
	// legitimate commands.
	if p.MaxLine < minMaxLine || p.MaxLine > maxMaxLine {
		bad("pop3.max_line", "must be between %d and %d, not %d", minMaxLine, maxMaxLine, p.MaxLine)
	}
	// A SASL response line (RFC 5034 §4) carries base64 and can be longer
	// than a command, never shorter.
	if p.MaxAuthLine < p.MaxLine || p.MaxAuthLine > maxMaxAuthLine {
		bad("pop3.max_auth_line", "must be between pop3.max_line (%d) and %d, not %d", p.MaxLine, maxMaxAuthLine, p.MaxAuthLine)
	}
	if p.MaxBadCommands < 1 {
		bad("pop3.max_bad_commands", "must be at least 1, not %d", p.MaxBadCommands)
	}
	if d := p.AuthFailureDelay.Duration; d < 0 || d > maxAuthDelay {
		bad("pop3.auth_failure_delay", "must be between 0s and %s, not %s", maxAuthDelay, d)
	}
	if d := p.AuthFailureDelayMax.Duration; d < 0 || d > maxAuthDelay {
		bad("pop3.auth_failure_delay_max", "must be between 0s and %s, not %s", maxAuthDelay, d)
	}
	if d := p.AuthTimeout.Duration; d <= 0 {
		bad("pop3.auth_timeout", "must be positive, not %s", d)
	}
	// The server raises a value below max_auth_line to it (a login needs
	// a whole SASL response line), so that one is not an error here.
	if p.MaxPreAuthBytes < minMaxPreAuthBytes || p.MaxPreAuthBytes > maxMaxPreAuthBytes {
		bad("pop3.max_preauth_bytes", "must be between %d and %d, not %d", minMaxPreAuthBytes, maxMaxPreAuthBytes, p.MaxPreAuthBytes)
	}
	if d := p.ShutdownGrace.Duration; d < 0 {
		bad("pop3.shutdown_grace", "must not be negative, not %s", d)
	}
	if p.MaxConnections < 1 {
		bad("pop3.max_connections", "must be at least 1, not %d", p.MaxConnections)
	}
	if p.MaxConnectionsPerIP < 1 {
		bad("pop3.max_connections_per_ip", "must be at least 1, not %d", p.MaxConnectionsPerIP)
	}
	if p.MaxUnauthenticatedPerIP < 1 {
		bad("pop3.max_unauthenticated_per_ip", "must be at least 1, not %d", p.MaxUnauthenticatedPerIP)
	}

	switch t := c.TLS; {
	case t.CertFile != "" && t.KeyFile == "":
		bad("tls.cert_file", "set without tls.key_file: set both, or neither for a self-signed certificate")
	case t.CertFile == "" && t.KeyFile != "":
		bad("tls.key_file", "set without tls.cert_file: set both, or neither for a self-signed certificate")
	}
	if t := c.TLS; len(t.ExtraCertFiles) != len(t.ExtraKeyFiles) {
		bad("tls.extra_key_files", "%d files for %d in tls.extra_cert_files: they go in pairs, by position", len(t.ExtraKeyFiles), len(t.ExtraCertFiles))
	}
	switch c.TLS.ClientCertUser {
	case "cn", "email":
	default:
		bad("tls.client_cert_user", "must be cn or email, not %q", c.TLS.ClientCertUser)
	}
	if d := p.LoginDelay.Duration; d < 0 {
		bad("pop3.login_delay", "must not be negative, not %s", d)
	}
	errs = append(errs, p.checkProxy()...)

	m := c.Mail
	for _, f := range []struct {
		key string
		v   int
	}{{"mail.quota_bytes", m.QuotaBytes}, {"mail.quota_messages", m.QuotaMessages}, {"mail.keep_deleted_days", m.KeepDeletedDays}, {"mail.expire_days", m.ExpireDays}} {
		if f.v < 0 {
			bad(f.key, "must not be negative, not %d", f.v)
		}
	}
	if d := m.MaintenanceInterval.Duration; d < time.Minute {
		bad("mail.maintenance_interval", "must be at least 1m, not %s", d)
	}

	l := c.LMTP
	if m, err := strconv.ParseUint(l.SocketMode, 8, 32); err != nil || m > 0o777 || m&0o200 == 0 {
		bad("lmtp.socket_mode", "%q is not an octal mode with owner write permission, such as \"0660\"", l.SocketMode)
	}
	if strings.ContainsRune(l.Socket, 0) {
		bad("lmtp.socket", "must not contain a NUL byte")
	}
	if l.Listen != "" {
		if msg := checkListen(l.Listen); msg != "" {
			bad("lmtp.listen", "%s", msg)
		} else if host, _, _ := net.SplitHostPort(l.Listen); host != "localhost" && !isLoopbackIP(host) {
			// LMTP has no authentication: anyone who can connect can
			// deliver to any user.
			bad("lmtp.listen", "%q is not a loopback address: LMTP has no authentication, use the socket (or a loopback address)", l.Listen)
		}
	}
	if l.MaxMessageSize < 1024 {
		bad("lmtp.max_message_size", "must be at least 1024, not %d", l.MaxMessageSize)
	}
	if l.MaxRecipients < 1 {
		bad("lmtp.max_recipients", "must be at least 1, not %d", l.MaxRecipients)
	}
	if l.MaxConnections < 1 {
		bad("lmtp.max_connections", "must be at least 1, not %d", l.MaxConnections)
	}
	if strings.ContainsFunc(l.RecipientDelimiter, func(r rune) bool { return r <= ' ' || r == '@' || r > '~' }) {
		bad("lmtp.recipient_delimiter", "%q: use printable ASCII characters other than '@', such as \"+\"", l.RecipientDelimiter)
	}

	o := c.OAuth
	if o.JWKSFile != "" && o.Issuer == "" {
		bad("oauth.issuer", "required with oauth.jwks_file: a token is accepted only from its issuer")
	}
	if o.IntrospectionURL != "" {
		if u, err := url.Parse(o.IntrospectionURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			bad("oauth.introspection_url", "%q is not an http(s) URL", o.IntrospectionURL)
		}
		if o.ClientID == "" || o.ClientSecretFile == "" {
			bad("oauth.client_id", "oauth.introspection_url needs oauth.client_id and oauth.client_secret_file (RFC 7662 §2.1: the endpoint authenticates its callers)")
		}
	}

	if msg := checkListen(c.Metrics.Listen); msg != "" {
		bad("metrics.listen", "%s", msg)
	}

	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "must be one of debug, info, warn, error, not %q", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		bad("log.format", "must be one of text, json, not %q", c.Log.Format)
	}
	return errs
}

func isLoopbackIP(host string) bool {
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// checkListen returns why addr is not a usable listen address, or "" when
// it is (or is empty, which disables the listener).
func checkListen(addr string) string {
	if addr == "" {
		return ""
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		why := err.Error()
		var ae *net.AddrError
		if errors.As(err, &ae) {
			why = ae.Err
		}
		return fmt.Sprintf("%q is not host:port (%s)", addr, why)
	}
	// Numeric only: a service name would depend on /etc/services, and the
	// POP3 ones name the standard ports, rarely what a test setup wants.
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Sprintf("%q: port must be a number from 0 to 65535", addr)
	}
	return ""
}

// checkHostname returns why h cannot be the greeting's host name, or "".
// RFC 1939 §4 puts it in the +OK greeting line, and an APOP timestamp
// (RFC 1939 §7) has the msg-id form <...@host>, so it must be one printable
// word.
func checkHostname(h string) string {
	const msg = "must be 1 to 253 printable ASCII characters, without spaces or angle brackets"
	if h == "" || len(h) > 253 {
		return msg
	}
	for i := range len(h) {
		if h[i] <= ' ' || h[i] > '~' || h[i] == '<' || h[i] == '>' {
			return msg
		}
	}
	return ""
}
