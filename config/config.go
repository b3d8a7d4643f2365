// Package config reads and checks the popbox server's TOML configuration.
//
// Implementation notes:
//
//   - A file only overrides: Parse starts from Default() and sets the keys the
//     file names, so an empty file is a working configuration and
//     popbox.example.toml (which shows every key at its default) parses to
//     exactly Default().
//   - Errors point at the file, the line and the key ("popbox.toml:7:
//     pop3.idle_timeout: "5x" is not a duration"), because a config error is
//     read by an administrator at a terminal, not by code. Code tells the kinds
//     apart with errors.Is against ErrSyntax, ErrUnknownKey, ErrWrongType and
//     ErrInvalidValue, and gets the parts from *Error with errors.As.
//   - The toml package is used only to parse the document into a generic map;
//     the values are then copied into Config here, walking the struct's toml
//     tags. Letting toml decode into the struct would be shorter, but it
//     matches keys case-insensitively ("LISTEN" would silently set listen),
//     reports type errors only as text, and stops at the first of them in map
//     order. Doing it here gives exact-case keys, every problem in document
//     order, and the same message format for all of them.
//   - toml v1.6.0 keeps the position of keys private (MetaData.keyInfo), so
//     scan reads the document first to map every key to the line that
//     defines it. The same pass bounds nesting depth and key length, on which
//     the toml parser spends quadratic time. FuzzParse checks that the scanner
//     finds every key toml reports.
//   - Semantic checks (Validate) are separate from decoding so that code that
//     builds a Config by hand (tests, the command line) gets the same checks;
//     Parse adds the file and line to the errors Validate returns.
//   - Relative paths (data_dir) are kept as written: resolving them is the
//     caller's choice (relative to the working directory or to the file).
//   - Input is bounded: Load and Parse refuse documents over MaxFileSize, and
//     Parse those nested deeper than 32 levels or with keys of more than 32
//     parts.
//   - store and users.database may hold a PostgreSQL URL, password
//     included. Validate checks it with pgxpool.ParseConfig, the parser
//     store/postgres and userdb use, so that a DSN the server would refuse
//     is reported with its line like any other bad value; that is why this
//     package imports pgx. No message, here or from the callers that use
//     RedactDSN and ScrubDSN, shows the password.
package config

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// MaxFileSize bounds the configuration file Load and Parse accept. A real
// configuration is a few kilobytes; the bound keeps a wrong path (a log file, a
// device) from being read whole into memory.
const MaxFileSize = 1 << 20

// Values of POP3.PlaintextAuth.
const (
	// PlaintextNever refuses USER/PASS and AUTH PLAIN until TLS is active.
	PlaintextNever = "never"
	// PlaintextLoopback allows them without TLS only on loopback connections
	// (local tests, a stunnel or proxy on the same host).
	PlaintextLoopback = "loopback"
	// PlaintextAlways allows them everywhere; passwords then cross the
	// network in the clear.
	PlaintextAlways = "always"
)

// MinIdleTimeout is the shortest idle timeout allowed without
// allow_short_idle_timeout. RFC 1939 §3: the server's inactivity autologout
// timer "MUST be of at least 10 minutes' duration".
const MinIdleTimeout = 10 * time.Minute

// Config is the server configuration. Its zero value is not useful: start
// from Default() or Parse.
type Config struct {
	// DataDir holds mailboxes, the user database and generated TLS
	// certificates. A relative path is kept relative.
	DataDir string `toml:"data_dir"`
	// Store is where mail lives: "" or StoreMaildir for Maildirs under
	// DataDir, or a postgres:// (postgresql://) URL for a PostgreSQL
	// database shared by any number of frontends, which then holds the
	// users too unless Users.Database says otherwise.
	Store    string   `toml:"store"`
	POP3     POP3     `toml:"pop3"`
	TLS      TLS      `toml:"tls"`
	OAuth    OAuth    `toml:"oauth"`
	LMTP     LMTP     `toml:"lmtp"`
	Mail     Mail     `toml:"mail"`
	Users    Users    `toml:"users"`
	Postgres Postgres `toml:"postgres"`
	Log      Log      `toml:"log"`
	Process  Process  `toml:"process"`
	Metrics  Metrics  `toml:"metrics"`
}

// StoreMaildir is the value of Config.Store for Maildirs under DataDir,
// the same as "".
const StoreMaildir = "maildir"

// Postgres tunes the PostgreSQL store (Config.Store); it is ignored with
// Maildirs.
type Postgres struct {
	// Lease is how long a POP3 session's mailbox lock outlives the last
	// renewal by its frontend: after a frontend dies, its users can log
	// in on another one at most this long later. Holders renew every
	// Lease/3.
	Lease Duration `toml:"lease"`
	// NodeID names this frontend in lease rows, logs and
	// pg_stat_activity; "" is hostname/pid/random, unique per process.
	NodeID string `toml:"node_id"`
}

// Process sets whose privileges `popbox serve` runs with. Started as root
// (to bind ports 110 and 995) it binds its listeners and then becomes User
// and Group, so that a flaw in the protocol code does not hand out root.
type Process struct {
	// User is the account (name or numeric id) to run as after binding;
	// "" keeps the starting user, which as root is refused unless
	// AllowRoot is set.
	User string `toml:"user"`
	// Group is the group (name or numeric id) to run as after binding;
	// "" is User's primary group. It needs User.
	Group string `toml:"group"`
	// AllowRoot lets the server run as root when User is "".
	AllowRoot bool `toml:"allow_root"`
}

// POP3 configures the POP3 listeners and sessions.
type POP3 struct {
	// Listen is the address for POP3 with STLS (RFC 2595 §4); "" disables it.
	Listen string `toml:"listen"`
	// ListenTLS is the address for POP3 over implicit TLS (RFC 8314 §3.3,
	// "pop3s"); "" disables it.
	ListenTLS string `toml:"listen_tls"`
	// Hostname is the name the server gives in its greeting.
	Hostname string `toml:"hostname"`
	// PlaintextAuth is PlaintextNever, PlaintextLoopback or PlaintextAlways.
	PlaintextAuth string `toml:"plaintext_auth"`
	// IdleTimeout closes a session that sends nothing for this long.
	IdleTimeout Duration `toml:"idle_timeout"`
	// AllowShortIdleTimeout permits IdleTimeout below MinIdleTimeout
	// (tests, hostile networks), against RFC 1939 §3.
	AllowShortIdleTimeout bool `toml:"allow_short_idle_timeout"`
	// MaxLine bounds a command line in octets, CRLF included.
	MaxLine int `toml:"max_line"`
	// MaxAuthLine bounds a SASL continuation line in octets.
	MaxAuthLine int `toml:"max_auth_line"`
	// MaxBadCommands closes a session after this many consecutive errors.
	MaxBadCommands int `toml:"max_bad_commands"`
	// AuthFailureDelay is waited before answering a failed authentication;
	// it doubles with each consecutive failure from the same address.
	AuthFailureDelay Duration `toml:"auth_failure_delay"`
	// AuthFailureDelayMax caps that growing delay.
	AuthFailureDelayMax Duration `toml:"auth_failure_delay_max"`
	// AuthTimeout is how long a client has from connect to log in.
	AuthTimeout Duration `toml:"auth_timeout"`
	// MaxPreAuthBytes bounds what a client may send before logging in.
	MaxPreAuthBytes int `toml:"max_preauth_bytes"`
	// ShutdownGrace is how long shutdown waits for sessions to end.
	ShutdownGrace Duration `toml:"shutdown_grace"`
	// MaxConnections bounds concurrent sessions over all listeners.
	MaxConnections int `toml:"max_connections"`
	// MaxConnectionsPerIP bounds concurrent sessions from one address.
	MaxConnectionsPerIP int `toml:"max_connections_per_ip"`
	// MaxUnauthenticatedPerIP bounds the sessions from one address that
	// have not logged in yet.
	MaxUnauthenticatedPerIP int `toml:"max_unauthenticated_per_ip"`
	// LoginDelay is RFC 2449's LOGIN-DELAY: the least time between two
	// logins of a user; 0 for none.
	LoginDelay Duration `toml:"login_delay"`
	// ProxyProtocolTrusted are the load balancers (CIDR networks or single
	// addresses) whose connections must start with a PROXY protocol
	// header giving the client's address; empty turns the protocol off.
	// See ProxyTrusted.
	ProxyProtocolTrusted []string `toml:"proxy_protocol_trusted"`
	// ProxyHeaderTimeout bounds the wait for a trusted peer's header.
	ProxyHeaderTimeout Duration `toml:"proxy_header_timeout"`
}

// TLS names the certificate. With both fields empty a self-signed
// certificate is generated in DataDir.
type TLS struct {
	CertFile string `toml:"cert_file"`
	KeyFile  string `toml:"key_file"`
	// ExtraCertFiles and ExtraKeyFiles are further pairs, by position,
	// for other host names: the client's SNI picks among all.
	ExtraCertFiles []string `toml:"extra_cert_files"`
	ExtraKeyFiles  []string `toml:"extra_key_files"`
	// ClientCAFile enables client certificates (SASL EXTERNAL): those
	// these CAs issued are verified; others fail the handshake.
	ClientCAFile string `toml:"client_ca_file"`
	// ClientCertUser is how a client certificate names its user: "cn" or
	// "email".
	ClientCertUser string `toml:"client_cert_user"`
}

// Users configures the user database.
type Users struct {
	// Database is where the accounts live: "" for the default (users.db
	// in DataDir, or the Store database when that is PostgreSQL), a
	// SQLite file (relative to DataDir unless absolute), or a
	// postgres:// URL.
	Database string `toml:"database"`
	// UpgradeHashes replaces imported password hashes with argon2id at
	// each user's next login.
	UpgradeHashes bool `toml:"upgrade_hashes"`
}

// Mail configures what is kept: quotas, deleted mail kept for restoring,
// and server-side expiry.
type Mail struct {
	// QuotaBytes and QuotaMessages are the default per-user limits (0:
	// none); `popbox user set` overrides them per user.
	QuotaBytes    int `toml:"quota_bytes"`
	QuotaMessages int `toml:"quota_messages"`
	// KeepDeletedDays is how long deleted messages stay restorable.
	KeepDeletedDays int `toml:"keep_deleted_days"`
	// ExpireDays deletes messages older than this server-side (RFC 2449
	// EXPIRE); 0 never.
	ExpireDays int `toml:"expire_days"`
	// MaintenanceInterval is how often the purge and expiry job runs.
	MaintenanceInterval Duration `toml:"maintenance_interval"`
}

// LMTP configures mail intake from an MTA (RFC 2033).
type LMTP struct {
	// Socket is the Unix socket path, relative to DataDir unless
	// absolute; "" disables it.
	Socket string `toml:"socket"`
	// SocketMode is the socket's permission bits, in octal ("0660").
	SocketMode string `toml:"socket_mode"`
	// SocketGroup becomes the socket's group (e.g. "postfix").
	SocketGroup string `toml:"socket_group"`
	// Listen is an optional TCP address, loopback only.
	Listen             string `toml:"listen"`
	MaxMessageSize     int    `toml:"max_message_size"`
	MaxRecipients      int    `toml:"max_recipients"`
	MaxConnections     int    `toml:"max_connections"`
	RecipientDelimiter string `toml:"recipient_delimiter"`
	QuotaPermanent     bool   `toml:"quota_permanent"`
	DeliveryHeaders    bool   `toml:"delivery_headers"`
}

// OAuth configures OAUTHBEARER and XOAUTH2: bearer tokens checked against
// a JWKS file or an RFC 7662 introspection endpoint.
type OAuth struct {
	JWKSFile         string `toml:"jwks_file"`
	Issuer           string `toml:"issuer"`
	Audience         string `toml:"audience"`
	UsernameClaim    string `toml:"username_claim"`
	RequiredScope    string `toml:"required_scope"`
	IntrospectionURL string `toml:"introspection_url"`
	ClientID         string `toml:"client_id"`
	ClientSecretFile string `toml:"client_secret_file"`
}

// Metrics configures the HTTP listener for Prometheus metrics, /healthz and
// /readyz (package metrics).
type Metrics struct {
	// Listen is its host:port; "" (the default) disables it. It has no
	// authentication: bind it to loopback or a private network.
	Listen string `toml:"listen"`
}

// Log configures logging.
type Log struct {
	// Level is debug, info, warn or error.
	Level string `toml:"level"`
	// Format is text or json.
	Format string `toml:"format"`
}

// Duration is a time.Duration written in TOML as a string in
// time.ParseDuration syntax ("10m", "30s", "1h30m").
type Duration struct{ time.Duration }

// UnmarshalText parses s as in time.ParseDuration.
func (d *Duration) UnmarshalText(s []byte) error {
	v, err := parseDuration(string(s))
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// MarshalText writes d as time.Duration.String does ("10m0s"), which
// UnmarshalText reads back.
func (d Duration) MarshalText() ([]byte, error) {
	return []byte(d.Duration.String()), nil
}

func parseDuration(s string) (time.Duration, error) {
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration", s)
	}
	return v, nil
}

// Default returns the configuration used for every key a file leaves out.
func Default() Config {
	return Config{
		DataDir: "./popbox-data",
		Store:   StoreMaildir,
		POP3: POP3{
			Listen:           "127.0.0.1:1110",
			ListenTLS:        "127.0.0.1:1995",
			Hostname:         defaultHostname(),
			PlaintextAuth:    PlaintextLoopback,
			IdleTimeout:      Duration{MinIdleTimeout},
			MaxLine:          255, // RFC 2449 §4: 255 octets including CRLF
			MaxAuthLine:      8192,
			MaxBadCommands:   20,
			AuthFailureDelay: Duration{2 * time.Second},
			// Dovecot's auth_penalty: 2, 4, 8, 15 s.
			AuthFailureDelayMax:     Duration{15 * time.Second},
			AuthTimeout:             Duration{time.Minute},
			MaxPreAuthBytes:         64 << 10,
			ShutdownGrace:           Duration{30 * time.Second},
			MaxConnections:          1000,
			MaxConnectionsPerIP:     50,
			MaxUnauthenticatedPerIP: 10,
			ProxyHeaderTimeout:      Duration{5 * time.Second}, // proxyproto.DefaultHeaderTimeout
		},
		TLS:   TLS{ClientCertUser: "cn"},
		Mail:  Mail{KeepDeletedDays: 7, MaintenanceInterval: Duration{time.Hour}},
		Users: Users{UpgradeHashes: true},
		// store/postgres's default: long enough that a frontend paused by
		// a slow disk or a GC does not lose its sessions, short enough
		// that a dead one's users wait half a minute at most.
		Postgres: Postgres{Lease: Duration{30 * time.Second}},
		LMTP: LMTP{
			Socket:          "lmtp.sock",
			SocketMode:      "0660",
			MaxMessageSize:  50 << 20,
			MaxRecipients:   100,
			MaxConnections:  100,
			DeliveryHeaders: true,
		},
		Log: Log{Level: "info", Format: "text"},
	}
}

// defaultHostname is os.Hostname when that is usable in a greeting, else
// "localhost", so that Default() always passes Validate.
func defaultHostname() string {
	h, err := os.Hostname()
	if err != nil || checkHostname(h) != "" {
		return "localhost"
	}
	return h
}

// Load reads the file at path and parses it as Parse does, naming the file
// by path in errors. A missing file is an error (errors.Is(err,
// fs.ErrNotExist)); the caller decides whether to fall back to Default().
func Load(path string) (Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return Config{}, fmt.Errorf("config: reading %s: %w", path, err)
	}
	return Parse(data, path)
}

// Parse decodes a TOML document over Default() and validates the result.
// name is the file name used in error messages. On error it returns the zero
// Config and an error listing every problem (errors.Join of *Error), each with
// name, line and key where known.
func Parse(data []byte, name string) (Config, error) {
	if len(data) > MaxFileSize {
		return Config{}, &Error{File: name, Msg: fmt.Sprintf("larger than %d bytes", MaxFileSize), Kind: ErrTooLarge}
	}
	lines, serr := scan(data)
	if serr != nil {
		serr.File = name
		return Config{}, serr
	}
	var raw map[string]any
	md, err := toml.Decode(string(data), &raw)
	if err != nil {
		e := &Error{File: name, Msg: "invalid TOML: " + err.Error(), Kind: ErrSyntax, Err: err}
		var pe toml.ParseError
		if errors.As(err, &pe) {
			e.Line, e.Msg = pe.Position.Line, "invalid TOML: "+pe.Message
		}
		return Config{}, e
	}

	at := func(e *Error) *Error {
		e.File = name
		if e.Key != "" {
			e.Line = lines[e.Key]
		}
		return e
	}

	cfg := Default()
	fields := schema()
	var errs []error
	// Keys already reported: their sub-keys, and their repetitions in
	// arrays of tables, would only be noise.
	bad := map[string]bool{}
	for _, k := range md.Keys() {
		key := k.String()
		if bad[key] || underBad(k, bad) {
			continue
		}
		f, ok := fields[key]
		if !ok {
			bad[key] = true
			errs = append(errs, at(&Error{Key: key, Msg: "unknown key", Kind: ErrUnknownKey}))
			continue
		}
		if e := f.set(&cfg, lookup(raw, k)); e != nil {
			bad[key] = true
			e.Key = key
			errs = append(errs, at(e))
		}
	}
	if len(errs) > 0 {
		return Config{}, errors.Join(truncate(errs)...)
	}
	if problems := cfg.check(); len(problems) > 0 {
		for _, e := range problems {
			at(e)
		}
		// Document order; problems with keys the file does not set last.
		slices.SortStableFunc(problems, func(a, b *Error) int {
			return cmp.Compare(lineOrMax(a.Line), lineOrMax(b.Line))
		})
		for _, e := range problems {
			errs = append(errs, e)
		}
		return Config{}, errors.Join(errs...)
	}
	return cfg, nil
}

// maxErrors bounds the problems reported at once: a wrong file (not a
// configuration at all) could otherwise make an error of megabytes.
const maxErrors = 20

// truncate keeps the first maxErrors errors and says how many it dropped.
func truncate(errs []error) []error {
	if len(errs) <= maxErrors {
		return errs
	}
	first := errs[maxErrors].(*Error)
	more := &Error{File: first.File, Msg: fmt.Sprintf("%d more problems not shown", len(errs)-maxErrors), Kind: first.Kind}
	return append(errs[:maxErrors:maxErrors], more)
}

func lineOrMax(n int) int {
	if n == 0 {
		return math.MaxInt
	}
	return n
}

// underBad reports whether a proper prefix of k is in bad.
func underBad(k toml.Key, bad map[string]bool) bool {
	for i := 1; i < len(k); i++ {
		if bad[k[:i].String()] {
			return true
		}
	}
	return false
}

// lookup returns the raw value at key path k, or nil.
func lookup(raw map[string]any, k toml.Key) any {
	var v any = raw
	for _, part := range k {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[part]
	}
	return v
}

// field is one key of Config: where it lives and what TOML type it takes.
type field struct {
	index []int
	kind  fieldKind
}

type fieldKind int

const (
	kindTable fieldKind = iota
	kindString
	kindInt
	kindBool
	kindDuration
	kindStrings
)

var durationType = reflect.TypeFor[Duration]()

// schema maps every key of Config (tables included), in toml.Key.String
// form, to its field. It is rebuilt per call: it is cheap and the package
// keeps no mutable state.
func schema() map[string]field {
	m := map[string]field{}
	var walk func(t reflect.Type, prefix toml.Key, index []int)
	walk = func(t reflect.Type, prefix toml.Key, index []int) {
		for i := range t.NumField() {
			sf := t.Field(i)
			name := strings.Split(sf.Tag.Get("toml"), ",")[0]
			if name == "" || name == "-" {
				continue
			}
			key := append(prefix[:len(prefix):len(prefix)], name)
			idx := append(index[:len(index):len(index)], i)
			var kind fieldKind
			switch {
			case sf.Type == durationType:
				kind = kindDuration
			case sf.Type.Kind() == reflect.Struct:
				kind = kindTable
				walk(sf.Type, key, idx)
			case sf.Type.Kind() == reflect.String:
				kind = kindString
			case sf.Type.Kind() == reflect.Int:
				kind = kindInt
			case sf.Type.Kind() == reflect.Bool:
				kind = kindBool
			case sf.Type == reflect.TypeFor[[]string]():
				kind = kindStrings
			default:
				panic("config: no TOML mapping for field " + sf.Name) // programming error, caught by the tests
			}
			m[key.String()] = field{index: idx, kind: kind}
		}
	}
	walk(reflect.TypeFor[Config](), nil, nil)
	return m
}

// set stores the raw TOML value v into the field of cfg. The returned error
// lacks Key, File and Line; the caller fills them.
func (f field) set(cfg *Config, v any) *Error {
	dst := reflect.ValueOf(cfg).Elem().FieldByIndex(f.index)
	wrong := func(want string) *Error {
		return &Error{Msg: fmt.Sprintf("expected %s, found %s", want, describe(v)), Kind: ErrWrongType}
	}
	switch f.kind {
	case kindTable:
		if _, ok := v.(map[string]any); !ok {
			return wrong("a table")
		}
	case kindString:
		s, ok := v.(string)
		if !ok {
			return wrong("a string")
		}
		dst.SetString(s)
	case kindInt:
		n, ok := v.(int64)
		if !ok {
			return wrong("an integer")
		}
		if dst.OverflowInt(n) {
			return &Error{Msg: strconv.FormatInt(n, 10) + " is out of range", Kind: ErrInvalidValue}
		}
		dst.SetInt(n)
	case kindBool:
		b, ok := v.(bool)
		if !ok {
			return wrong("true or false")
		}
		dst.SetBool(b)
	case kindStrings:
		list, ok := v.([]any)
		if !ok {
			return wrong("an array of strings")
		}
		out := make([]string, len(list))
		for i, e := range list {
			if out[i], ok = e.(string); !ok {
				return wrong("an array of strings")
			}
		}
		dst.Set(reflect.ValueOf(out))
	case kindDuration:
		s, ok := v.(string)
		if !ok {
			return wrong(`a duration string such as "10m"`)
		}
		d, err := parseDuration(s)
		if err != nil {
			return &Error{Msg: err.Error(), Kind: ErrInvalidValue}
		}
		dst.Set(reflect.ValueOf(Duration{d}))
	}
	return nil
}

// describe names the TOML type of a value the toml package decoded into an
// interface.
func describe(v any) string {
	switch v.(type) {
	case nil:
		return "no value"
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case time.Time:
		return "a date-time"
	case map[string]any:
		return "a table"
	case []map[string]any:
		return "an array of tables"
	case []any:
		return "an array"
	}
	return fmt.Sprintf("a %T", v)
}
