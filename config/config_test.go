package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/google/go-cmp/cmp"
)

// doc joins lines into a TOML document, so that tests can count lines.
func doc(lines ...string) []byte {
	return []byte(strings.Join(lines, "\n") + "\n")
}

func TestDefaultIsValid(t *testing.T) {
	if err := Default().Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v", err)
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		doc  []byte
		want func(*Config) // applied to Default()
	}{
		{"empty", nil, func(*Config) {}},
		{"comments only", doc("# nothing", "   ", "\t# here"), func(*Config) {}},
		{"top level", doc(`data_dir = "/var/lib/popbox"`), func(c *Config) { c.DataDir = "/var/lib/popbox" }},
		{"relative data_dir kept", doc(`data_dir = "data"`), func(c *Config) { c.DataDir = "data" }},
		{
			"every pop3 key",
			doc(
				"[pop3]",
				`listen = "0.0.0.0:110"`,
				`listen_tls = "[::]:995"`,
				`hostname = "mail.example.org"`,
				`plaintext_auth = "never"`,
				`idle_timeout = "30s"`,
				`allow_short_idle_timeout = true`,
				`max_line = 1024`,
				`max_auth_line = 4096`,
				`max_bad_commands = 3`,
				`auth_failure_delay = "0s"`,
				`auth_failure_delay_max = "5s"`,
				`auth_timeout = "20s"`,
				`max_preauth_bytes = 4096`,
				`shutdown_grace = "1m30s"`,
				`max_connections = 5`,
				`max_connections_per_ip = 4`,
				`max_unauthenticated_per_ip = 2`,
				`proxy_protocol_trusted = ["10.0.0.0/8", "192.0.2.7", "2001:db8::/32"]`,
				`proxy_header_timeout = "2s"`,
			),
			func(c *Config) {
				c.POP3 = POP3{
					Listen: "0.0.0.0:110", ListenTLS: "[::]:995", Hostname: "mail.example.org",
					PlaintextAuth: "never", IdleTimeout: Duration{30 * time.Second}, AllowShortIdleTimeout: true,
					MaxLine: 1024, MaxAuthLine: 4096, MaxBadCommands: 3, AuthFailureDelay: Duration{0},
					AuthFailureDelayMax: Duration{5 * time.Second}, AuthTimeout: Duration{20 * time.Second},
					MaxPreAuthBytes: 4096, ShutdownGrace: Duration{90 * time.Second}, MaxConnections: 5,
					MaxConnectionsPerIP: 4, MaxUnauthenticatedPerIP: 2,
					ProxyProtocolTrusted: []string{"10.0.0.0/8", "192.0.2.7", "2001:db8::/32"},
					ProxyHeaderTimeout:   Duration{2 * time.Second},
				}
			},
		},
		{"listen disabled", doc("[pop3]", `listen = ""`), func(c *Config) { c.POP3.Listen = "" }},
		{"listen_tls disabled", doc("[pop3]", `listen_tls = ""`), func(c *Config) { c.POP3.ListenTLS = "" }},
		{"port 0 twice", doc("[pop3]", `listen = "127.0.0.1:0"`, `listen_tls = "127.0.0.1:0"`), func(c *Config) {
			c.POP3.Listen, c.POP3.ListenTLS = "127.0.0.1:0", "127.0.0.1:0"
		}},
		{"idle timeout at minimum", doc("[pop3]", `idle_timeout = "10m"`), func(*Config) {}},
		{"idle timeout long", doc("[pop3]", `idle_timeout = "1h"`), func(c *Config) { c.POP3.IdleTimeout.Duration = time.Hour }},
		{"dotted keys", doc(`pop3.plaintext_auth = "always"`, `log.level = "debug"`), func(c *Config) {
			c.POP3.PlaintextAuth, c.Log.Level = "always", "debug"
		}},
		{"inline table", doc(`tls = { cert_file = "c.pem", key_file = "k.pem" }`), func(c *Config) {
			c.TLS.CertFile, c.TLS.KeyFile = "c.pem", "k.pem"
		}},
		{"log", doc("[log]", `level = "error"`, `format = "json"`), func(c *Config) { c.Log = Log{Level: "error", Format: "json"} }},
		{"string arrays", doc("[tls]", `extra_cert_files = ["a.pem", "b.pem"]`, `extra_key_files = ["a.key", "b.key"]`), func(c *Config) {
			c.TLS.ExtraCertFiles, c.TLS.ExtraKeyFiles = []string{"a.pem", "b.pem"}, []string{"a.key", "b.key"}
		}},
		{"CRLF", []byte("[log]\r\nlevel = \"warn\"\r\n"), func(c *Config) { c.Log.Level = "warn" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.doc, "popbox.toml")
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			want := Default()
			tt.want(&want)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Parse (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		doc  []byte
		want string // the whole message
		kind error
		line int // of the first *Error
		key  string
	}{
		{
			"syntax",
			doc("[pop3]", `listen = "x`),
			"popbox.toml:2: invalid TOML: strings cannot contain newlines", ErrSyntax, 2, "",
		},
		{
			"unknown top-level key",
			doc("# c", `data_dir = "d"`, `datadir = "d"`),
			"popbox.toml:3: datadir: unknown key", ErrUnknownKey, 3, "datadir",
		},
		{
			"unknown key in table",
			doc("[pop3]", `listen = "127.0.0.1:1"`, "", `idel_timeout = "10m"`),
			"popbox.toml:4: pop3.idel_timeout: unknown key", ErrUnknownKey, 4, "pop3.idel_timeout",
		},
		{
			"keys are case-sensitive",
			doc("[pop3]", `LISTEN = "127.0.0.1:1"`),
			"popbox.toml:2: pop3.LISTEN: unknown key", ErrUnknownKey, 2, "pop3.LISTEN",
		},
		{
			"unknown table reported once",
			doc(`data_dir = "d"`, "[smtp]", `listen = "x"`, "[smtp.tls]", `a = 1`),
			"popbox.toml:2: smtp: unknown key", ErrUnknownKey, 2, "smtp",
		},
		{
			"string for a string array",
			doc("[tls]", `extra_cert_files = "a.pem"`),
			"popbox.toml:2: tls.extra_cert_files: expected an array of strings, found a string", ErrWrongType, 2, "tls.extra_cert_files",
		},
		{
			"number in a string array",
			doc("[tls]", `extra_cert_files = ["a.pem", 1]`),
			"popbox.toml:2: tls.extra_cert_files: expected an array of strings, found an array", ErrWrongType, 2, "tls.extra_cert_files",
		},
		{
			"unknown key in inline table",
			doc(`log = {`, `  level = "info",`, `  colour = true,`, `}`),
			"popbox.toml:3: log.colour: unknown key", ErrUnknownKey, 3, "log.colour",
		},
		{
			"unknown dotted key",
			doc(`pop3.tls.cert = "x"`),
			"popbox.toml:1: pop3.tls.cert: unknown key", ErrUnknownKey, 1, "pop3.tls.cert",
		},
		{
			"line after multi-line string",
			doc(`# x`, `[log]`, `level = "info"`, `[pop3]`, `hostname = """`, `[not.a.table]`, `x = 1"""`, `bogus = 1`),
			"popbox.toml:8: pop3.bogus: unknown key", ErrUnknownKey, 8, "pop3.bogus",
		},
		{
			"integer for string",
			doc(`data_dir = 1`),
			"popbox.toml:1: data_dir: expected a string, found an integer", ErrWrongType, 1, "data_dir",
		},
		{
			"string for integer",
			doc("[pop3]", `max_line = "255"`),
			"popbox.toml:2: pop3.max_line: expected an integer, found a string", ErrWrongType, 2, "pop3.max_line",
		},
		{
			"float for integer",
			doc("[pop3]", `max_connections = 1.5`),
			"popbox.toml:2: pop3.max_connections: expected an integer, found a float", ErrWrongType, 2, "pop3.max_connections",
		},
		{
			"string for boolean",
			doc("[pop3]", `allow_short_idle_timeout = "yes"`),
			"popbox.toml:2: pop3.allow_short_idle_timeout: expected true or false, found a string", ErrWrongType, 2, "pop3.allow_short_idle_timeout",
		},
		{
			"integer for duration",
			doc("[pop3]", `idle_timeout = 600`),
			`popbox.toml:2: pop3.idle_timeout: expected a duration string such as "10m", found an integer`, ErrWrongType, 2, "pop3.idle_timeout",
		},
		{
			"value for table",
			doc(`pop3 = "127.0.0.1:110"`),
			"popbox.toml:1: pop3: expected a table, found a string", ErrWrongType, 1, "pop3",
		},
		{
			"array of tables for table",
			doc("[[pop3]]", `listen = "x"`, "[[pop3]]", `listen = "y"`),
			"popbox.toml:1: pop3: expected a table, found an array of tables", ErrWrongType, 1, "pop3",
		},
		{
			"array for string",
			doc(`data_dir = [`, `  "a",`, `  "b",`, `]`),
			"popbox.toml:1: data_dir: expected a string, found an array", ErrWrongType, 1, "data_dir",
		},
		{
			"bad duration",
			doc("# popbox", "", `data_dir = "d"`, "", "[pop3]", `listen = "127.0.0.1:1110"`, `idle_timeout = "5x"`),
			`popbox.toml:7: pop3.idle_timeout: "5x" is not a duration`, ErrInvalidValue, 7, "pop3.idle_timeout",
		},
		{
			"plaintext_auth",
			doc("[pop3]", `plaintext_auth = "sometimes"`),
			`popbox.toml:2: pop3.plaintext_auth: must be one of never, loopback, always, not "sometimes"`, ErrInvalidValue, 2, "pop3.plaintext_auth",
		},
		{
			"idle timeout below RFC 1939 minimum",
			doc("[pop3]", `idle_timeout = "5m"`),
			"popbox.toml:2: pop3.idle_timeout: 5m0s is below the 10m0s minimum of RFC 1939 §3; set pop3.allow_short_idle_timeout = true to allow it",
			ErrInvalidValue, 2, "pop3.idle_timeout",
		},
		{
			"idle timeout zero even if short allowed",
			doc("[pop3]", `allow_short_idle_timeout = true`, `idle_timeout = "0s"`),
			"popbox.toml:3: pop3.idle_timeout: must be positive", ErrInvalidValue, 3, "pop3.idle_timeout",
		},
		{
			"max_line too small",
			doc("[pop3]", `max_line = 63`),
			"popbox.toml:2: pop3.max_line: must be between 64 and 65536, not 63", ErrInvalidValue, 2, "pop3.max_line",
		},
		{
			"max_line raises above default max_auth_line: error on a key the file does not set",
			doc("[pop3]", `max_line = 9000`),
			"popbox.toml: pop3.max_auth_line: must be between pop3.max_line (9000) and 1048576, not 8192", ErrInvalidValue, 0, "pop3.max_auth_line",
		},
		{
			"max_auth_line too large",
			doc("[pop3]", `max_auth_line = 2000000`),
			"popbox.toml:2: pop3.max_auth_line: must be between pop3.max_line (255) and 1048576, not 2000000", ErrInvalidValue, 2, "pop3.max_auth_line",
		},
		{
			"max_bad_commands",
			doc("[pop3]", `max_bad_commands = 0`),
			"popbox.toml:2: pop3.max_bad_commands: must be at least 1, not 0", ErrInvalidValue, 2, "pop3.max_bad_commands",
		},
		{
			"max_connections",
			doc("[pop3]", `max_connections = -1`),
			"popbox.toml:2: pop3.max_connections: must be at least 1, not -1", ErrInvalidValue, 2, "pop3.max_connections",
		},
		{
			"auth_failure_delay",
			doc("[pop3]", `auth_failure_delay = "2m"`),
			"popbox.toml:2: pop3.auth_failure_delay: must be between 0s and 1m0s, not 2m0s", ErrInvalidValue, 2, "pop3.auth_failure_delay",
		},
		{
			"auth_failure_delay_max",
			doc("[pop3]", `auth_failure_delay_max = "61s"`),
			"popbox.toml:2: pop3.auth_failure_delay_max: must be between 0s and 1m0s, not 1m1s", ErrInvalidValue, 2, "pop3.auth_failure_delay_max",
		},
		{
			"auth_timeout",
			doc("[pop3]", `auth_timeout = "0s"`),
			"popbox.toml:2: pop3.auth_timeout: must be positive, not 0s", ErrInvalidValue, 2, "pop3.auth_timeout",
		},
		{
			"max_preauth_bytes",
			doc("[pop3]", `max_preauth_bytes = 1023`),
			"popbox.toml:2: pop3.max_preauth_bytes: must be between 1024 and 16777216, not 1023", ErrInvalidValue, 2, "pop3.max_preauth_bytes",
		},
		{
			"max_connections_per_ip",
			doc("[pop3]", `max_connections_per_ip = 0`),
			"popbox.toml:2: pop3.max_connections_per_ip: must be at least 1, not 0", ErrInvalidValue, 2, "pop3.max_connections_per_ip",
		},
		{
			"max_unauthenticated_per_ip",
			doc("[pop3]", `max_unauthenticated_per_ip = -3`),
			"popbox.toml:2: pop3.max_unauthenticated_per_ip: must be at least 1, not -3", ErrInvalidValue, 2, "pop3.max_unauthenticated_per_ip",
		},
		{
			"shutdown_grace",
			doc("[pop3]", `shutdown_grace = "-1s"`),
			"popbox.toml:2: pop3.shutdown_grace: must not be negative, not -1s", ErrInvalidValue, 2, "pop3.shutdown_grace",
		},
		{
			"listen without port",
			doc("[pop3]", `listen = "localhost"`),
			`popbox.toml:2: pop3.listen: "localhost" is not host:port (missing port in address)`, ErrInvalidValue, 2, "pop3.listen",
		},
		{
			"listen with service name",
			doc("[pop3]", `listen_tls = "localhost:pop3s"`),
			`popbox.toml:2: pop3.listen_tls: "localhost:pop3s": port must be a number from 0 to 65535`, ErrInvalidValue, 2, "pop3.listen_tls",
		},
		{
			"listen port out of range",
			doc("[pop3]", `listen = ":70000"`),
			`popbox.toml:2: pop3.listen: ":70000": port must be a number from 0 to 65535`, ErrInvalidValue, 2, "pop3.listen",
		},
		{
			"no listener",
			doc("[pop3]", `listen = ""`, `listen_tls = ""`),
			"popbox.toml:2: pop3.listen: pop3.listen and pop3.listen_tls are both empty: no POP3 listener", ErrInvalidValue, 2, "pop3.listen",
		},
		{
			"same address twice",
			doc("[pop3]", `listen = "127.0.0.1:1995"`),
			"popbox.toml: pop3.listen_tls: same address as pop3.listen (127.0.0.1:1995)", ErrInvalidValue, 0, "pop3.listen_tls",
		},
		{
			"hostname with space",
			doc("[pop3]", `hostname = "mail example"`),
			"popbox.toml:2: pop3.hostname: must be 1 to 253 printable ASCII characters, without spaces or angle brackets", ErrInvalidValue, 2, "pop3.hostname",
		},
		{
			"empty hostname",
			doc("[pop3]", `hostname = ""`),
			"popbox.toml:2: pop3.hostname: must be 1 to 253 printable ASCII characters, without spaces or angle brackets", ErrInvalidValue, 2, "pop3.hostname",
		},
		{
			"cert without key",
			doc("[tls]", `cert_file = "c.pem"`),
			"popbox.toml:2: tls.cert_file: set without tls.key_file: set both, or neither for a self-signed certificate", ErrInvalidValue, 2, "tls.cert_file",
		},
		{
			"key without cert",
			doc("[tls]", "", `key_file = "k.pem"`),
			"popbox.toml:3: tls.key_file: set without tls.cert_file: set both, or neither for a self-signed certificate", ErrInvalidValue, 3, "tls.key_file",
		},
		{
			"log level",
			doc("[log]", `level = "verbose"`),
			`popbox.toml:2: log.level: must be one of debug, info, warn, error, not "verbose"`, ErrInvalidValue, 2, "log.level",
		},
		{
			"log format",
			doc("[log]", `format = "xml"`),
			`popbox.toml:2: log.format: must be one of text, json, not "xml"`, ErrInvalidValue, 2, "log.format",
		},
		{
			"empty data_dir",
			doc(`data_dir = ""`),
			"popbox.toml:1: data_dir: must not be empty", ErrInvalidValue, 1, "data_dir",
		},
		{
			"decode errors all reported, in document order",
			doc(`data_dir = 1`, "[pop3]", `max_line = "x"`, `idle_timeout = "soon"`, `nope = 1`),
			"popbox.toml:1: data_dir: expected a string, found an integer\n" +
				"popbox.toml:3: pop3.max_line: expected an integer, found a string\n" +
				`popbox.toml:4: pop3.idle_timeout: "soon" is not a duration` + "\n" +
				"popbox.toml:5: pop3.nope: unknown key",
			ErrWrongType, 1, "data_dir",
		},
		{
			"validation errors all reported, in document order",
			doc("[log]", `format = "xml"`, "[pop3]", `max_bad_commands = 0`, `plaintext_auth = "x"`),
			"popbox.toml:2: log.format: must be one of text, json, not \"xml\"\n" +
				"popbox.toml:4: pop3.max_bad_commands: must be at least 1, not 0\n" +
				`popbox.toml:5: pop3.plaintext_auth: must be one of never, loopback, always, not "x"`,
			ErrInvalidValue, 2, "log.format",
		},
		{
			"at most 20 problems",
			manyUnknown(25),
			manyUnknownWant(20) + "popbox.toml: 5 more problems not shown",
			ErrUnknownKey, 1, "k1",
		},
		{
			"too large",
			[]byte(strings.Repeat("#", MaxFileSize+1)),
			"popbox.toml: larger than 1048576 bytes", ErrTooLarge, 0, "",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.doc, "popbox.toml")
			if err == nil {
				t.Fatalf("Parse succeeded with %+v", got)
			}
			if diff := cmp.Diff(tt.want, err.Error()); diff != "" {
				t.Errorf("error message (-want +got):\n%s", diff)
			}
			if !errors.Is(err, tt.kind) {
				t.Errorf("errors.Is(err, %v) = false", tt.kind)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("errors.As(%T, *Error) = false", err)
			}
			if diff := cmp.Diff([]any{"popbox.toml", tt.line, tt.key}, []any{e.File, e.Line, e.Key}); diff != "" {
				t.Errorf("first *Error file, line, key (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(Config{}, got); diff != "" {
				t.Errorf("Config on error is not zero:\n%s", diff)
			}
		})
	}
}

// manyUnknown is a document of n unknown keys k1..kn on lines 1..n.
func manyUnknown(n int) []byte {
	var b strings.Builder
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "k%d = 1\n", i)
	}
	return []byte(b.String())
}

func manyUnknownWant(n int) string {
	var b strings.Builder
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "popbox.toml:%d: k%d: unknown key\n", i, i)
	}
	return b.String()
}

func TestSyntaxErrorWrapsParseError(t *testing.T) {
	_, err := Parse(doc("a = = 1"), "x.toml")
	var pe toml.ParseError
	if !errors.As(err, &pe) || !errors.Is(err, ErrSyntax) {
		t.Fatalf("err = %v, want ErrSyntax wrapping toml.ParseError", err)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
		want   string
	}{
		{"default", func(*Config) {}, ""},
		{"extra certificates in pairs", func(c *Config) {
			c.TLS.ExtraCertFiles, c.TLS.ExtraKeyFiles = []string{"a.pem", "b.pem"}, []string{"a.key", "b.key"}
		}, ""},
		{"extra certificate without key", func(c *Config) { c.TLS.ExtraCertFiles = []string{"a.pem"} },
			"tls.extra_key_files: 0 files for 1 in tls.extra_cert_files: they go in pairs, by position"},
		{"client_cert_user", func(c *Config) { c.TLS.ClientCertUser = "uid" }, `tls.client_cert_user: must be cn or email, not "uid"`},
		{"lmtp on loopback", func(c *Config) { c.LMTP.Listen = "127.0.0.1:2424" }, ""},
		{"lmtp on the network", func(c *Config) { c.LMTP.Listen = "0.0.0.0:24" },
			`lmtp.listen: "0.0.0.0:24" is not a loopback address: LMTP has no authentication, use the socket (or a loopback address)`},
		{"lmtp socket mode", func(c *Config) { c.LMTP.SocketMode = "0440" },
			`lmtp.socket_mode: "0440" is not an octal mode with owner write permission, such as "0660"`},
		{"lmtp delimiter", func(c *Config) { c.LMTP.RecipientDelimiter = "@" },
			`lmtp.recipient_delimiter: "@": use printable ASCII characters other than '@', such as "+"`},
		{"negative login delay", func(c *Config) { c.POP3.LoginDelay.Duration = -time.Second }, "pop3.login_delay: must not be negative, not -1s"},
		{"jwks without issuer", func(c *Config) { c.OAuth.JWKSFile = "k.json" },
			"oauth.issuer: required with oauth.jwks_file: a token is accepted only from its issuer"},
		{"introspection", func(c *Config) {
			c.OAuth.IntrospectionURL, c.OAuth.ClientID, c.OAuth.ClientSecretFile = "https://idp.example/introspect", "popbox", "secret"
		}, ""},
		{"introspection not a URL", func(c *Config) {
			c.OAuth.IntrospectionURL, c.OAuth.ClientID, c.OAuth.ClientSecretFile = "idp.example/introspect", "popbox", "secret"
		}, `oauth.introspection_url: "idp.example/introspect" is not an http(s) URL`},
		{"introspection without client", func(c *Config) { c.OAuth.IntrospectionURL = "https://idp.example/introspect" },
			"oauth.client_id: oauth.introspection_url needs oauth.client_id and oauth.client_secret_file (RFC 7662 §2.1: the endpoint authenticates its callers)"},
		{"short idle timeout allowed", func(c *Config) {
			c.POP3.IdleTimeout.Duration, c.POP3.AllowShortIdleTimeout = time.Second, true
		}, ""},
		{"short idle timeout", func(c *Config) { c.POP3.IdleTimeout.Duration = 9*time.Minute + 59*time.Second },
			"pop3.idle_timeout: 9m59s is below the 10m0s minimum of RFC 1939 §3; set pop3.allow_short_idle_timeout = true to allow it"},
		{"NUL in data_dir", func(c *Config) { c.DataDir = "a\x00b" }, "data_dir: must not contain a NUL byte"},
		{"process user and group", func(c *Config) { c.Process.User, c.Process.Group = "popbox", "mail" }, ""},
		{"process numeric user", func(c *Config) { c.Process.User = "65534" }, ""},
		{"process group without user", func(c *Config) { c.Process.Group = "mail" },
			"process.group: needs process.user: the group is only changed together with the user"},
		{"process user with space", func(c *Config) { c.Process.User = "pop box" },
			`process.user: "pop box" is not a user or group name: no spaces, colons or control characters`},
		{"process group with colon", func(c *Config) { c.Process.User, c.Process.Group = "popbox", "a:b" },
			`process.group: "a:b" is not a user or group name: no spaces, colons or control characters`},
		{"hostname with angle bracket", func(c *Config) { c.POP3.Hostname = "a>b" },
			"pop3.hostname: must be 1 to 253 printable ASCII characters, without spaces or angle brackets"},
		{"hostname too long", func(c *Config) { c.POP3.Hostname = strings.Repeat("a", 254) },
			"pop3.hostname: must be 1 to 253 printable ASCII characters, without spaces or angle brackets"},
		{"hostname non-ASCII", func(c *Config) { c.POP3.Hostname = "bücher.example" },
			"pop3.hostname: must be 1 to 253 printable ASCII characters, without spaces or angle brackets"},
		{"zero value: every problem", func(c *Config) { *c = Config{} }, strings.Join([]string{
			"data_dir: must not be empty",
			"postgres.lease: must be between 1s and 1h0m0s, not 0s",
			"pop3.listen: pop3.listen and pop3.listen_tls are both empty: no POP3 listener",
			"pop3.hostname: must be 1 to 253 printable ASCII characters, without spaces or angle brackets",
			`pop3.plaintext_auth: must be one of never, loopback, always, not ""`,
			"pop3.idle_timeout: must be positive",
			"pop3.max_line: must be between 64 and 65536, not 0",
			"pop3.max_bad_commands: must be at least 1, not 0",
			"pop3.auth_timeout: must be positive, not 0s",
			"pop3.max_preauth_bytes: must be between 1024 and 16777216, not 0",
			"pop3.max_connections: must be at least 1, not 0",
			"pop3.max_connections_per_ip: must be at least 1, not 0",
			"pop3.max_unauthenticated_per_ip: must be at least 1, not 0",
			`tls.client_cert_user: must be cn or email, not ""`,
			"pop3.proxy_header_timeout: must be positive and at most 1m0s, not 0s",
			"mail.maintenance_interval: must be at least 1m, not 0s",
			`lmtp.socket_mode: "" is not an octal mode with owner write permission, such as "0660"`,
			"lmtp.max_message_size: must be at least 1024, not 0",
			"lmtp.max_recipients: must be at least 1, not 0",
			"lmtp.max_connections: must be at least 1, not 0",
			`log.level: must be one of debug, info, warn, error, not ""`,
			`log.format: must be one of text, json, not ""`,
		}, "\n")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.change(&c)
			got := ""
			if err := c.Validate(); err != nil {
				got = err.Error()
				if !errors.Is(err, ErrInvalidValue) {
					t.Errorf("errors.Is(err, ErrInvalidValue) = false")
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Validate (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.toml")
	if err := os.WriteFile(good, doc("[pop3]", `max_connections = 7`), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(bad, doc("", "[pop3]", `max_connections = "7"`), 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.toml")
	if err := os.WriteFile(big, make([]byte, MaxFileSize+1), 0o600); err != nil {
		t.Fatal(err)
	}

	c, err := Load(good)
	if err != nil {
		t.Fatalf("Load(good): %v", err)
	}
	if c.POP3.MaxConnections != 7 {
		t.Errorf("MaxConnections = %d, want 7", c.POP3.MaxConnections)
	}

	tests := []struct {
		path string
		kind error
		want string
	}{
		{bad, ErrWrongType, bad + ":3: pop3.max_connections: expected an integer, found a string"},
		{big, ErrTooLarge, big + ": larger than 1048576 bytes"},
		{filepath.Join(dir, "missing.toml"), fs.ErrNotExist, "config: open " + filepath.Join(dir, "missing.toml") + ": no such file or directory"},
	}
	for _, tt := range tests {
		_, err := Load(tt.path)
		if !errors.Is(err, tt.kind) {
			t.Errorf("Load(%s) = %v, want %v", tt.path, err, tt.kind)
		}
		if err != nil && err.Error() != tt.want {
			t.Errorf("Load(%s) = %q, want %q", tt.path, err, tt.want)
		}
	}
}

func TestDurationText(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr string
	}{
		{"10m", 10 * time.Minute, ""},
		{"1h30m", 90 * time.Minute, ""},
		{"250ms", 250 * time.Millisecond, ""},
		{"0s", 0, ""},
		{"5x", 0, `"5x" is not a duration`},
		{"10", 0, `"10" is not a duration`},
		{"", 0, `"" is not a duration`},
	}
	for _, tt := range tests {
		var d Duration
		err := d.UnmarshalText([]byte(tt.in))
		gotErr := ""
		if err != nil {
			gotErr = err.Error()
		}
		if d.Duration != tt.want || gotErr != tt.wantErr {
			t.Errorf("UnmarshalText(%q) = %v, %q; want %v, %q", tt.in, d.Duration, gotErr, tt.want, tt.wantErr)
		}
		if tt.wantErr != "" {
			continue
		}
		text, err := d.MarshalText()
		var back Duration
		if err != nil || back.UnmarshalText(text) != nil || back != d {
			t.Errorf("MarshalText round trip of %v: %q, %v -> %v", d, text, err, back)
		}
	}
}

// tomlKeys walks the toml tags of t, independently of schema(), and
// returns every dotted key.
func tomlKeys(t reflect.Type, prefix string) []string {
	var keys []string
	for i := range t.NumField() {
		f := t.Field(i)
		name := f.Tag.Get("toml")
		if name == "" {
			continue
		}
		keys = append(keys, prefix+name)
		if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeFor[Duration]() {
			keys = append(keys, tomlKeys(f.Type, prefix+name+".")...)
		}
	}
	return keys
}

func TestSchemaMatchesStruct(t *testing.T) {
	var got []string
	for k := range schema() {
		got = append(got, k)
	}
	want := tomlKeys(reflect.TypeFor[Config](), "")
	slices.Sort(got)
	slices.Sort(want)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("schema keys (-want +got):\n%s", diff)
	}
}

const examplePath = "../popbox.example.toml"

func TestExampleFileIsDefault(t *testing.T) {
	data, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse(data, "popbox.example.toml")
	if err != nil {
		t.Fatalf("Parse(example): %v", err)
	}
	if diff := cmp.Diff(Default(), got); diff != "" {
		t.Errorf("example differs from Default() (-default +example):\n%s", diff)
	}
}

// commentedSetting matches a commented-out setting such as
// `# hostname = "mail.example.org"`, which the example uses for keys whose
// default cannot be written down.
var commentedSetting = regexp.MustCompile(`(?m)^#\s*([a-z_]+\s*=)`)

// settingLine matches a setting, commented out or not.
var settingLine = regexp.MustCompile(`^(#\s*)?[a-z_]+\s*=`)

func TestExampleFileMentionsEveryKey(t *testing.T) {
	data, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	// Uncomment the commented-out settings: the result must still be TOML,
	// and must set every key of Config.
	uncommented := commentedSetting.ReplaceAll(data, []byte("$1"))
	var raw map[string]any
	md, err := toml.Decode(string(uncommented), &raw)
	if err != nil {
		t.Fatalf("example with settings uncommented: %v", err)
	}
	var got []string
	for _, k := range md.Keys() {
		got = append(got, k.String())
	}
	want := tomlKeys(reflect.TypeFor[Config](), "")
	slices.Sort(got)
	slices.Sort(want)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("keys in the example (-Config +example):\n%s", diff)
	}
	// Each setting has a "# Default:" line in the comment block above it
	// (settings on consecutive lines share one block).
	sawDefault := false
	for i, line := range strings.Split(string(data), "\n") {
		switch {
		case strings.TrimSpace(line) == "" || strings.HasPrefix(line, "["):
			sawDefault = false
		case strings.HasPrefix(line, "# Default:"):
			sawDefault = true
		case settingLine.MatchString(line) && !sawDefault:
			t.Errorf("example line %d: %q has no \"# Default:\" comment above it", i+1, line)
		}
	}
	if _, err := Parse(uncommented, "uncommented.toml"); err != nil {
		t.Errorf("example with settings uncommented does not validate: %v", err)
	}
}

func TestKeyLines(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want map[string]int
	}{
		{"empty", "", map[string]int{}},
		{
			"tables and keys",
			"a = 1\n\n[t]\n# c = 2\nb = 'x' # d = 3\n[t.u]\nc = 2\n",
			map[string]int{"a": 1, "t": 3, "t.b": 5, "t.u": 6, "t.u.c": 7},
		},
		{
			"dotted and quoted keys",
			"a.b.c = 1\n\"q.k\" = 2\n'lit' . x = 3\n\"esc\\u0041\\t\" = 4\n[ s . \"t\" ]\n",
			map[string]int{"a": 1, "a.b": 1, "a.b.c": 1, `"q.k"`: 2, "lit": 3, "lit.x": 3, `"escA\t"`: 4, "s": 5, "s.t": 5},
		},
		{
			"multi-line strings hide their content",
			"a = \"\"\"\n[x]\nb = 1\\\"\"\"\"\nc = '''\n''\nd = 2'''\ne = \"\"\"\\\n  \"\"\"\nf = 1\n",
			map[string]int{"a": 1, "c": 4, "e": 7, "f": 9},
		},
		{
			"strings with delimiters",
			"a = \"x = [ { # \\\" \"\nb = 'y ] } #'\nc = 1\n",
			map[string]int{"a": 1, "b": 2, "c": 3},
		},
		{
			"arrays over lines",
			"a = [\n  1, # ]\n  [2, 3],\n  \"]\",\n]\nb = 1\n",
			map[string]int{"a": 1, "b": 6},
		},
		{
			"inline tables",
			"t = { a = 1, b.c = { d = [ { e = 1 } ] } }\nu = {\n  f = 1,\n  g = 2, # x\n}\n",
			map[string]int{"t": 1, "t.a": 1, "t.b": 1, "t.b.c": 1, "t.b.c.d": 1, "t.b.c.d.e": 1, "u": 2, "u.f": 3, "u.g": 4},
		},
		{
			"arrays of tables",
			"[[p]]\nk = 1\n[[p]]\nk = 2\nm = 3\n",
			map[string]int{"p": 1, "p.k": 2, "p.m": 5},
		},
		{
			"dates and CRLF",
			"d = 1979-05-27 07:32:00Z\r\ne = 07:32:00\r\n[t]\r\nf = true\r\n",
			map[string]int{"d": 1, "e": 2, "t": 3, "t.f": 4},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The scanner only runs on valid TOML, and must find what toml finds.
			var raw map[string]any
			md, err := toml.Decode(tt.doc, &raw)
			if err != nil {
				t.Fatalf("test document is not TOML: %v", err)
			}
			got, serr := scan([]byte(tt.doc))
			if serr != nil {
				t.Fatal(serr)
			}
			for _, k := range md.Keys() {
				if _, ok := got[k.String()]; !ok {
					t.Errorf("toml key %s not found", k)
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("keyLines (-want +got):\n%s", diff)
			}
		})
	}
}

// TestComplexityBounds feeds the shapes on which the toml parser is slow, at
// the largest size Parse accepts; they must be refused quickly, while the
// same shapes within the bounds parse.
func TestComplexityBounds(t *testing.T) {
	fill := func(prefix, unit, middle, closing string) []byte {
		n := (MaxFileSize - len(prefix) - len(middle) - 1) / (len(unit) + len(closing))
		return []byte(prefix + strings.Repeat(unit, n) + middle + strings.Repeat(closing, n) + "\n")
	}
	tests := []struct {
		name string
		doc  []byte
		want string
	}{
		{"nested inline tables", fill("# x\na = ", "{b=", "1", "}"), "popbox.toml:2: key with more than 32 parts"},
		{"nested inline tables in array", fill("a = ", "[{b=", "1", "}]"), "popbox.toml:1: arrays or inline tables nested more than 32 deep"},
		{"nested arrays", fill("a = ", "[", "", "]"), "popbox.toml:1: arrays or inline tables nested more than 32 deep"},
		{"dotted key", fill("", "a.", "a = 1", ""), "popbox.toml:1: key with more than 32 parts"},
		{"table header", fill("\n\n[", "a.", "a]", ""), "popbox.toml:3: key with more than 32 parts"},
		{"key parts add up", doc("[a.b.c.d.e.f.g.h]", "i.j.k.l.m.n.o.p = { q.r.s.t.u.v.w.x = { y.z.A.B.C.D.E.F.G = 1 } }"),
			"popbox.toml:2: key with more than 32 parts"},
		{"bad string does not hide nesting", []byte("a = \"\nb = " + strings.Repeat("[", 40) + strings.Repeat("]", 40) + "\n"),
			"popbox.toml:2: arrays or inline tables nested more than 32 deep"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			_, err := Parse(tt.doc, "popbox.toml")
			if !errors.Is(err, ErrTooLarge) || err.Error() != tt.want {
				t.Errorf("Parse = %v, want %s", err, tt.want)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("Parse took %v", d)
			}
		})
	}

	// At the bounds: unknown keys, but parsed (no ErrTooLarge).
	for _, d := range []string{
		"a = " + strings.Repeat("[", 32) + strings.Repeat("]", 32) + "\n",
		strings.Repeat("a.", 31) + "a = 1\n",
	} {
		if _, err := Parse([]byte(d), "x"); !errors.Is(err, ErrUnknownKey) || errors.Is(err, ErrTooLarge) {
			t.Errorf("Parse(%.40q...) = %v, want ErrUnknownKey only", d, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	if data, err := os.ReadFile(examplePath); err == nil {
		f.Add(data)
	}
	for _, s := range []string{
		"", "[pop3]\nidle_timeout = \"5x\"\n", "a.b.c = 1\n[x]\ny = [{z = 1}]\n",
		"t = {\n a = 1,\n}\n", "s = \"\"\"\n[x]\"\"\"\"\n", "[[pop3]]\nlisten = 1\n",
		"pop3 = { listen = \"\", listen_tls = \"\" }\n", "\"\\u00e9\" = 1\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, parseErr := Parse(data, "f.toml")
		if err := parseErr; err == nil {
			if verr := cfg.Validate(); verr != nil {
				t.Fatalf("Parse accepted a Config that Validate rejects: %v", verr)
			}
		} else {
			var e *Error
			if !errors.As(err, &e) || e.File != "f.toml" {
				t.Fatalf("error %q is not an *Error naming the file", err)
			}
		}

		var raw map[string]any
		md, err := toml.Decode(string(data), &raw)
		if err != nil {
			return
		}
		lines, serr := scan(data)
		if serr != nil {
			if !errors.Is(parseErr, ErrTooLarge) {
				t.Fatalf("scan refuses the document (%v), Parse says %v", serr, parseErr)
			}
			return
		}
		nlines := strings.Count(string(data), "\n") + 1
		for _, k := range md.Keys() {
			line, ok := lines[k.String()]
			if !ok || line < 1 || line > nlines {
				t.Fatalf("key %s: line %d, found %v (document has %d lines)", k, line, ok, nlines)
			}
		}
	})
}

func Example() {
	cfg, err := Parse([]byte(`
data_dir = "/var/lib/popbox"

[pop3]
listen = ""
idle_timeout = "15m"
`), "popbox.toml")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(cfg.DataDir, cfg.POP3.Listen == "", cfg.POP3.ListenTLS, cfg.POP3.IdleTimeout)

	_, err = Parse([]byte("[pop3]\nplaintext_auth = \"sometimes\"\n"), "popbox.toml")
	fmt.Println(err)
	// Output:
	// /var/lib/popbox true 127.0.0.1:1995 15m0s
	// popbox.toml:2: pop3.plaintext_auth: must be one of never, loopback, always, not "sometimes"
}
