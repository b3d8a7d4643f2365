package fetch

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/popbox/popbox/config"
)

// issueExample is the account file from the product issue, verbatim but
// for a valid fingerprint.
const issueExample = `[[account]]
name = "home"
server = "mail.example.org"
port = 995
tls = "implicit"                  # implicit (default) | starttls | none
ca_file = "/etc/ssl/my-ca.pem"    # optional; system roots otherwise
fingerprint = "sha256:ab:cd:ef:01:23:45:67:89:ab:cd:ef:01:23:45:67:89:ab:cd:ef:01:23:45:67:89:ab:cd:ef:01:23:45:67:89"
user = "alice"
password_command = "pass show mail/home"
auth = "auto"                     # auto | plain | login | scram-sha-256 | oauthbearer | xoauth2 | user
deliver = "maildir:~/Mail/home"   # maildir:PATH | mbox:PATH | mda:COMMAND | lmtp:ADDRESS
keep = true                       # false: delete after the local copy is durable
delete_after = "30d"              # with keep = true
`

func TestParseConfig(t *testing.T) {
	home, err := os.UserHomeDir()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseConfig([]byte(issueExample), "fetch.toml")
	if err != nil {
		t.Fatal(err)
	}
	want := &Account{
		Name: "home", Server: "mail.example.org", Port: 995, TLS: TLSImplicit,
		CAFile:          "/etc/ssl/my-ca.pem",
		Fingerprint:     "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89",
		User:            "alice",
		PasswordCommand: "pass show mail/home", Auth: AuthAuto,
		Deliver: "maildir:" + filepath.Join(home, "Mail/home"), Recipient: "alice",
		Keep: true, DeleteAfter: 30 * 24 * time.Hour, Oversize: OversizeSkip, ReceivedHeader: true,
		Timeout: 60 * time.Second, Keepalive: 60 * time.Second, Line: 1,
	}
	if diff := cmp.Diff([]*Account{want}, cfg.Accounts); diff != "" {
		t.Errorf("accounts (-want +got):\n%s", diff)
	}

	// Top-level keys are defaults; ports follow the TLS mode.
	cfg, err = ParseConfig([]byte(`
keep = false
max_size = "10M"
pipeline = 8
[[account]]
name = "a"
server = "s"
user = "u"
deliver = "mbox:/tmp/x"
tls = "starttls"
[[account]]
name = "b"
server = "s"
user = "u"
deliver = "mda:procmail"
keep = true
max_messages = 5
max_bytes = 1000
oversize = "delete"
received_header = false
timeout = "90s"
recipient = "me"
`), "f")
	if err != nil {
		t.Fatal(err)
	}
	type sum struct {
		Name                string
		Port                int
		Keep, Received      bool
		MaxSize, MaxBytes   int64
		MaxMessages, Pipe   int
		Oversize, Recipient string
		Timeout             time.Duration
	}
	var got []sum
	for _, a := range cfg.Accounts {
		got = append(got, sum{a.Name, a.Port, a.Keep, a.ReceivedHeader, a.MaxSize, a.MaxBytes, a.MaxMessages, a.Pipeline, a.Oversize, a.Recipient, a.Timeout})
	}
	if diff := cmp.Diff([]sum{
		{"a", 110, false, true, 10 << 20, 0, 0, 8, "skip", "u", time.Minute},
		{"b", 995, true, false, 10 << 20, 1000, 5, 8, "delete", "me", 90 * time.Second},
	}, got); diff != "" {
		t.Errorf("accounts (-want +got):\n%s", diff)
	}
}

// TestParseConfigErrors: every problem names the file, its line and the
// key, and has the kind package config uses.
func TestParseConfigErrors(t *testing.T) {
	const base = "[[account]]\nname = \"a\"\nserver = \"s\"\nuser = \"u\"\ndeliver = \"maildir:/m\"\n"
	for _, tc := range []struct {
		name, doc string
		kind      error
		want      string
	}{
		{"unknown key", base + "pasword = \"x\"\n", config.ErrUnknownKey, "f.toml:6: pasword: [[account]] 1: unknown key"},
		{"unknown key in second account", base + strings.Replace(base, `"a"`, `"b"`, 1) + "\nbogus = 1\n", config.ErrUnknownKey, "f.toml:12: bogus: [[account]] 2: unknown key"},
		{"unknown top-level key", "colour = \"red\"\n" + base, config.ErrUnknownKey, "f.toml:1: colour: unknown key"},
		{"unknown table", base + "[options]\nx = 1\n", config.ErrUnknownKey, "f.toml:6: options: unknown key"},
		{"wrong type", base + "port = \"995\"\n", config.ErrWrongType, "f.toml:6: port: [[account]] 1: expected a non-negative integer, found a string"},
		{"bad tls", base + "tls = \"ssl\"\n", config.ErrInvalidValue, `f.toml:6: tls: account "a": "ssl": expected implicit, starttls or none`},
		{"bad duration", base + "delete_after = \"30 days\"\n", config.ErrInvalidValue, `f.toml:6: delete_after: [[account]] 1: "30 days" is not a duration (like "30d", "2w", "12h")`},
		{"bad fingerprint", base + "fingerprint = \"sha256:AB\"\n", config.ErrInvalidValue, `f.toml:6: fingerprint: [[account]] 1: "sha256:AB" is not a SHA-256 fingerprint (sha256: and 32 hex pairs)`},
		{"missing server", "[[account]]\nname = \"a\"\nuser = \"u\"\ndeliver = \"maildir:/m\"\n", config.ErrInvalidValue, `f.toml:1: server: account "a": server is required`},
		{"bad deliver", base + "deliver = \"imap:x\"\n", config.ErrSyntax, ""}, // duplicate key: TOML error
		{"bad deliver scheme", strings.Replace(base, "maildir:/m", "imap:x", 1), config.ErrInvalidValue, `f.toml:5: deliver: account "a": "imap:x": expected maildir:PATH, mbox:PATH, mda:COMMAND, lmtp:ADDRESS or smtp:ADDRESS`},
		{"duplicate name", base + base, config.ErrInvalidValue, `f.toml:7: name: account "a" already defined on line 1`},
		{"bad name", strings.Replace(base, `"a"`, `"a/b"`, 1), config.ErrInvalidValue, `f.toml:2: name: account "a/b": name must be 1-64 of A-Z a-z 0-9 . _ - (it names the journal file)`},
		{"delete_after without keep", base + "keep = false\ndelete_after = \"1d\"\n", config.ErrInvalidValue, `f.toml:7: delete_after: account "a": delete_after only applies with keep = true (keep = false deletes at once)`},
		{"pin without TLS", base + "tls = \"none\"\nfingerprint = \"" + strings.Repeat("00", 32) + "\"\n", config.ErrInvalidValue, `f.toml:6: tls: account "a": ca_file and fingerprint need TLS, but tls = "none"`},
		{"syntax", base + "port = = 1\n", config.ErrSyntax, ""},
		{"no accounts", "keep = true\n", config.ErrInvalidValue, "f.toml: no [[account]] defined"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.doc), "f.toml")
			if !errors.Is(err, ErrConfig) || !errors.Is(err, tc.kind) {
				t.Fatalf("error %v, want ErrConfig and %v", err, tc.kind)
			}
			if tc.want == "" {
				return
			}
			if got := strings.TrimPrefix(err.Error(), ErrConfig.Error()+": "); got != tc.want {
				t.Errorf("error\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}

// TestLoadConfigPasswordWarning: a password in a file others can read is
// a warning, not an error; mode 0600 gives none.
func TestLoadConfigPasswordWarning(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fetch.toml")
	writeFile(t, path, "[[account]]\nname = \"a\"\nserver = \"s\"\nuser = \"u\"\npassword = \"pw\"\ndeliver = \"maildir:/m\"\n")
	for _, tc := range []struct {
		mode os.FileMode
		want int
	}{{0o600, 0}, {0o640, 1}, {0o644, 1}} {
		if err := os.Chmod(path, tc.mode); err != nil {
			t.Fatal(err)
		}
		cfg, err := LoadConfig(path)
		if err != nil {
			t.Fatal(err)
		}
		if len(cfg.Warnings) != tc.want {
			t.Errorf("mode %04o: warnings %q, want %d", tc.mode, cfg.Warnings, tc.want)
		}
		if tc.want > 0 && !strings.Contains(cfg.Warnings[0], "password_command") {
			t.Errorf("warning %q does not suggest password_command", cfg.Warnings[0])
		}
	}
}

func TestDefaultPaths(t *testing.T) {
	for _, tc := range []struct {
		xdgConfig, xdgState, home string
		config, state             string
	}{
		{"/x/conf", "/x/state", "/home/u", "/x/conf/popbox/fetch.toml", "/x/state/popbox/fetch"},
		{"", "", "/home/u", "/home/u/.config/popbox/fetch.toml", "/home/u/.local/state/popbox/fetch"},
		{"relative", "relative", "/home/u", "/home/u/.config/popbox/fetch.toml", "/home/u/.local/state/popbox/fetch"},
	} {
		t.Setenv("XDG_CONFIG_HOME", tc.xdgConfig)
		t.Setenv("XDG_STATE_HOME", tc.xdgState)
		t.Setenv("HOME", tc.home)
		c, err1 := DefaultConfigPath()
		s, err2 := DefaultStateDir()
		if err := errors.Join(err1, err2); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{tc.config, tc.state}, []string{c, s}); diff != "" {
			t.Errorf("XDG %q %q (-want +got):\n%s", tc.xdgConfig, tc.xdgState, diff)
		}
	}
}

func TestParseSizeAndAge(t *testing.T) {
	for _, tc := range []struct {
		in   any
		want int64
	}{{int64(10), 10}, {"10", 10}, {"4K", 4096}, {"10M", 10 << 20}, {"1g", 1 << 30}, {"2MB", 2 << 20}, {"x", -1}, {int64(-1), -1}, {1.5, -1}} {
		got, err := parseSize(tc.in)
		if err != nil {
			got = -1
		}
		if got != tc.want {
			t.Errorf("parseSize(%v) = %d, want %d", tc.in, got, tc.want)
		}
	}
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{{"30d", 30 * 24 * time.Hour}, {"2w", 14 * 24 * time.Hour}, {"12h", 12 * time.Hour}, {"90s", 90 * time.Second}, {"d", -1}, {"3y", -1}} {
		got, err := parseAge(tc.in)
		if err != nil {
			got = -1
		}
		if got != tc.want {
			t.Errorf("parseAge(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

// TestExampleConfig: the shipped example parses and means what it says.
func TestExampleConfig(t *testing.T) {
	cfg, err := LoadConfig("fetch.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range cfg.Accounts {
		got = append(got, fmt.Sprintf("%s %s:%d tls=%s auth=%s keep=%v delete_after=%v", a.Name, a.Server, a.Port, a.TLS, a.Auth, a.Keep, a.DeleteAfter))
	}
	want := []string{
		"home mail.example.org:995 tls=implicit auth=auto keep=true delete_after=720h0m0s",
		"work pop.example.com:110 tls=starttls auth=xoauth2 keep=false delete_after=0s",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("accounts (-want +got):\n%s", diff)
	}
}
