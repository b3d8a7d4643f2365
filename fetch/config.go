package fetch

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/popbox/popbox/config"
)

// MaxConfigSize bounds the account file Load reads: a wrong path (a log, a
// device) must not be read whole into memory.
const MaxConfigSize = 1 << 20

// TLS modes (the tls key).
const (
	TLSImplicit = "implicit" // RFC 8314 §3.3: TLS from the first byte, port 995
	TLSStartTLS = "starttls" // RFC 2595 §4: STLS, refused if not offered
	TLSNone     = "none"     // plaintext; only when written explicitly
)

// Authentication choices (the auth key).
const (
	AuthAuto        = "auto"
	AuthPlain       = "plain"
	AuthLogin       = "login"
	AuthSCRAM       = "scram-sha-256"
	AuthOAuthBearer = "oauthbearer"
	AuthXOAuth2     = "xoauth2"
	AuthUser        = "user" // USER/PASS, RFC 1939 §7
)

// Oversize policies.
const (
	OversizeSkip   = "skip"
	OversizeDelete = "delete"
)

// Account is one [[account]] of the file, with defaults applied and paths
// expanded.
type Account struct {
	Name   string
	Server string
	Port   int
	// TLS is TLSImplicit, TLSStartTLS or TLSNone.
	TLS string
	// CAFile, if set, replaces the system roots for verifying the server.
	CAFile string
	// Fingerprint is the pinned SHA-256 of the server's leaf certificate,
	// normalised to upper-case hex pairs joined by colons; "" for none.
	Fingerprint string
	// TLSServerName is the name the certificate must carry; Server by
	// default.
	TLSServerName string

	User            string
	Password        string
	PasswordCommand string
	// Auth is one of the Auth* values.
	Auth string

	// Deliver is the destination spec given to dest.Open ("maildir:PATH").
	Deliver string
	// Recipient and Sender are the envelope given to the destination
	// (LMTP and SMTP need a recipient).
	Recipient string
	Sender    string

	Keep        bool
	DeleteAfter time.Duration // 0: never (with Keep)

	MaxSize     int64  // 0: no limit
	Oversize    string // OversizeSkip or OversizeDelete
	MaxMessages int    // per run; 0: no limit
	MaxBytes    int64  // per run; 0: no limit

	ReceivedHeader bool
	// Pipeline is the number of RETRs kept in flight when the server offers
	// PIPELINING (RFC 2449 §6.6); 0 means the default, 32.
	Pipeline int
	// Timeout bounds every network operation: a connect, a handshake, and
	// each read or write of a reply (so a slow but moving transfer is fine).
	Timeout time.Duration
	// Keepalive is how often a NOOP is sent while the connection waits for
	// the destination (RFC 1939 §3 lets servers log out idle clients after
	// 10 minutes).
	Keepalive time.Duration
	StateDir  string

	// Line is where the [[account]] starts in the file, for messages.
	Line int
	// PasswordInFile is set when the file gave Password.
	PasswordInFile bool
}

// Addr is server:port.
func (a *Account) Addr() string {
	return netJoin(a.Server, a.Port)
}

func netJoin(host string, port int) string {
	if strings.Contains(host, ":") {
		return "[" + host + "]:" + strconv.Itoa(port)
	}
	return host + ":" + strconv.Itoa(port)
}

// JournalBase is the file name stem of the account's journal. It carries a
// hash of server and user beside the name so that pointing an account at
// another mailbox starts a new journal: UIDLs are unique only within one
// maildrop (RFC 1939 §7), and another server's "00000001" must not be
// mistaken for a message already delivered.
func (a *Account) JournalBase() string {
	h := sha256.Sum256([]byte(strings.ToLower(a.Server) + "\x00" + a.User))
	return a.Name + "-" + hex.EncodeToString(h[:4])
}

// Config is the whole account file.
type Config struct {
	File     string
	Accounts []*Account
	// Warnings are problems that do not stop a run (a password in a file
	// others can read).
	Warnings []string
}

// Account returns the account called name.
func (c *Config) Account(name string) (*Account, bool) {
	for _, a := range c.Accounts {
		if a.Name == name {
			return a, true
		}
	}
	return nil, false
}

// DefaultConfigPath is $XDG_CONFIG_HOME/popbox/fetch.toml, else
// ~/.config/popbox/fetch.toml (XDG Base Directory Specification).
func DefaultConfigPath() (string, error) {
	if d := os.Getenv("XDG_CONFIG_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, "popbox", "fetch.toml"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("%w: no home directory for the default configuration: %w", ErrConfig, err)
	}
	return filepath.Join(home, ".config", "popbox", "fetch.toml"), nil
}

// DefaultStateDir is $XDG_STATE_HOME/popbox/fetch, else
// ~/.local/state/popbox/fetch.
func DefaultStateDir() (string, error) {
	if d := os.Getenv("XDG_STATE_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, "popbox", "fetch"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("%w: no home directory for the journal: %w", ErrConfig, err)
	}
	return filepath.Join(home, ".local", "state", "popbox", "fetch"), nil
}

// LoadConfig reads and checks the account file at path. Errors wrap
// ErrConfig and, per problem, *config.Error with the file, line and key
// (errors.Is(err, config.ErrUnknownKey) for a typo).
func LoadConfig(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxConfigSize+1))
	if err != nil {
		return nil, fmt.Errorf("%w: reading %s: %w", ErrConfig, path, err)
	}
	cfg, err := ParseConfig(data, path)
	if err != nil {
		return nil, err
	}
	if fi, err := f.Stat(); err == nil && fi.Mode().Perm()&0o044 != 0 {
		for _, a := range cfg.Accounts {
			if a.PasswordInFile {
				cfg.Warnings = append(cfg.Warnings, fmt.Sprintf(
					"%s:%d: account %q has a password in a file others can read (mode %04o); use password_command or chmod 600",
					path, a.Line, a.Name, fi.Mode().Perm()))
			}
		}
	}
	return cfg, nil
}

// ParseConfig parses an account file; name is used in messages.
//
// The file is decoded into a generic map and copied into Accounts here
// rather than by toml's struct decoding, for the reasons package config
// gives: exact-case keys and every problem reported with its line. Keys at
// the top level are defaults for every account.
func ParseConfig(data []byte, name string) (*Config, error) {
	if len(data) > MaxConfigSize {
		return nil, fmt.Errorf("%w: %w", ErrConfig, &config.Error{File: name, Msg: fmt.Sprintf("larger than %d bytes", MaxConfigSize), Kind: config.ErrTooLarge})
	}
	var raw map[string]any
	if _, err := toml.Decode(string(data), &raw); err != nil {
		e := &config.Error{File: name, Msg: "invalid TOML: " + err.Error(), Kind: config.ErrSyntax, Err: err}
		var pe toml.ParseError
		if errors.As(err, &pe) {
			e.Line, e.Msg = pe.Position.Line, "invalid TOML: "+pe.Message
		}
		return nil, fmt.Errorf("%w: %w", ErrConfig, e)
	}
	lines := keyLines(data)
	var errs []error
	bad := func(section int, key string, kind error, format string, args ...any) {
		errs = append(errs, &config.Error{File: name, Line: lines.at(section, key), Key: key, Msg: fmt.Sprintf(format, args...), Kind: kind})
	}

	defaults := newAccount()
	var list []map[string]any
	for _, k := range sortedKeys(raw, lines, -1) {
		v := raw[k]
		if k == "account" {
			switch t := v.(type) {
			case []map[string]any:
				list = t
			default:
				bad(-1, k, config.ErrWrongType, "expected [[account]] tables, found %s", describe(v))
			}
			continue
		}
		if k == "name" {
			bad(-1, k, config.ErrUnknownKey, "name belongs in an [[account]]")
			continue
		}
		if msg, kind := setKey(defaults, k, v); msg != "" {
			bad(-1, k, kind, "%s", msg)
		}
	}
	cfg := &Config{File: name}
	seen := map[string]int{}
	for i, m := range list {
		a := *defaults
		a.Line = lines.sections[i]
		for _, k := range sortedKeys(m, lines, i) {
			if msg, kind := setKey(&a, k, m[k]); msg != "" {
				bad(i, k, kind, "[[account]] %d: %s", i+1, msg)
			}
		}
		a.PasswordInFile = a.Password != ""
		for _, p := range a.check() {
			bad(i, p.key, config.ErrInvalidValue, "account %q: %s", a.Name, p.msg)
		}
		if a.Name != "" {
			if prev, dup := seen[a.Name]; dup {
				bad(i, "name", config.ErrInvalidValue, "account %q already defined on line %d", a.Name, prev)
			}
			seen[a.Name] = a.Line
		}
		cfg.Accounts = append(cfg.Accounts, &a)
	}
	if len(list) == 0 && len(errs) == 0 {
		errs = append(errs, &config.Error{File: name, Msg: "no [[account]] defined", Kind: config.ErrInvalidValue})
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %w", ErrConfig, errors.Join(errs...))
	}
	return cfg, nil
}

// newAccount returns an account with every default set.
func newAccount() *Account {
	return &Account{
		TLS:            TLSImplicit,
		Auth:           AuthAuto,
		Keep:           true,
		Oversize:       OversizeSkip,
		ReceivedHeader: true,
		Timeout:        60 * time.Second,
		Keepalive:      60 * time.Second,
	}
}

type problem struct{ key, msg string }

var accountName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// check validates one account after decoding and fills the defaults that
// depend on other keys.
func (a *Account) check() []problem {
	var ps []problem
	bad := func(key, format string, args ...any) {
		ps = append(ps, problem{key, fmt.Sprintf(format, args...)})
	}
	if !accountName.MatchString(a.Name) {
		bad("name", "name must be 1-64 of A-Z a-z 0-9 . _ - (it names the journal file)")
	}
	if a.Server == "" {
		bad("server", "server is required")
	}
	if a.User == "" {
		bad("user", "user is required")
	}
	if a.Deliver == "" {
		bad("deliver", "deliver is required (maildir:PATH, mbox:PATH, mda:COMMAND, lmtp:ADDRESS)")
	} else if kind, _, ok := strings.Cut(a.Deliver, ":"); !ok || !slices.Contains([]string{"maildir", "mbox", "mda", "lmtp", "smtp"}, kind) {
		bad("deliver", "%q: expected maildir:PATH, mbox:PATH, mda:COMMAND, lmtp:ADDRESS or smtp:ADDRESS", a.Deliver)
	}
	if !slices.Contains([]string{TLSImplicit, TLSStartTLS, TLSNone}, a.TLS) {
		bad("tls", "%q: expected implicit, starttls or none", a.TLS)
	}
	if !slices.Contains([]string{AuthAuto, AuthPlain, AuthLogin, AuthSCRAM, AuthOAuthBearer, AuthXOAuth2, AuthUser}, a.Auth) {
		bad("auth", "%q: expected auto, plain, login, scram-sha-256, oauthbearer, xoauth2 or user", a.Auth)
	}
	if a.TLS == TLSNone && (a.CAFile != "" || a.Fingerprint != "") {
		bad("tls", "ca_file and fingerprint need TLS, but tls = \"none\"")
	}
	if a.Port == 0 {
		a.Port = 995
		if a.TLS != TLSImplicit {
			a.Port = 110
		}
	}
	if a.Port < 1 || a.Port > 65535 {
		bad("port", "%d is not a TCP port", a.Port)
	}
	if a.Password != "" && a.PasswordCommand != "" {
		bad("password_command", "set password or password_command, not both")
	}
	if !slices.Contains([]string{OversizeSkip, OversizeDelete}, a.Oversize) {
		bad("oversize", "%q: expected skip or delete", a.Oversize)
	}
	if a.Oversize == OversizeDelete && a.MaxSize == 0 {
		bad("oversize", "oversize = \"delete\" needs max_size")
	}
	if a.MaxSize < 0 || a.MaxBytes < 0 || a.MaxMessages < 0 || a.Pipeline < 0 || a.DeleteAfter < 0 {
		bad("max_size", "sizes, counts and durations must not be negative")
	}
	if !a.Keep && a.DeleteAfter > 0 {
		bad("delete_after", "delete_after only applies with keep = true (keep = false deletes at once)")
	}
	if a.Timeout <= 0 {
		bad("timeout", "must be positive")
	}
	if a.Keepalive <= 0 {
		bad("keepalive", "must be positive")
	}
	if a.Recipient == "" {
		a.Recipient = a.User
	}
	return ps
}

// setKey stores one raw TOML value. It returns a message and a kind
// (config.ErrUnknownKey, ErrWrongType or ErrInvalidValue) on error.
func setKey(a *Account, key string, v any) (string, error) {
	str := func(dst *string) (string, error) {
		s, ok := v.(string)
		if !ok {
			return fmt.Sprintf("expected a string, found %s", describe(v)), config.ErrWrongType
		}
		*dst = s
		return "", nil
	}
	path := func(dst *string) (string, error) {
		if msg, kind := str(dst); msg != "" {
			return msg, kind
		}
		p, err := expandHome(*dst)
		if err != nil {
			return err.Error(), config.ErrInvalidValue
		}
		*dst = p
		return "", nil
	}
	boolean := func(dst *bool) (string, error) {
		b, ok := v.(bool)
		if !ok {
			return fmt.Sprintf("expected true or false, found %s", describe(v)), config.ErrWrongType
		}
		*dst = b
		return "", nil
	}
	integer := func(dst *int) (string, error) {
		n, ok := v.(int64)
		if !ok || n < 0 || n > 1<<31 {
			return fmt.Sprintf("expected a non-negative integer, found %s", describe(v)), config.ErrWrongType
		}
		*dst = int(n)
		return "", nil
	}
	size := func(dst *int64) (string, error) {
		n, err := parseSize(v)
		if err != nil {
			return err.Error(), config.ErrInvalidValue
		}
		*dst = n
		return "", nil
	}
	duration := func(dst *time.Duration) (string, error) {
		s, ok := v.(string)
		if !ok {
			return fmt.Sprintf("expected a duration string (\"30d\", \"90s\"), found %s", describe(v)), config.ErrWrongType
		}
		d, err := parseAge(s)
		if err != nil {
			return err.Error(), config.ErrInvalidValue
		}
		*dst = d
		return "", nil
	}
	switch key {
	case "name":
		return str(&a.Name)
	case "server":
		return str(&a.Server)
	case "port":
		return integer(&a.Port)
	case "tls":
		return str(&a.TLS)
	case "ca_file":
		return path(&a.CAFile)
	case "fingerprint":
		var s string
		if msg, kind := str(&s); msg != "" {
			return msg, kind
		}
		fp, err := ParseFingerprint(s)
		if err != nil {
			return err.Error(), config.ErrInvalidValue
		}
		a.Fingerprint = fp
		return "", nil
	case "tls_server_name":
		return str(&a.TLSServerName)
	case "user":
		return str(&a.User)
	case "password":
		return str(&a.Password)
	case "password_command":
		return str(&a.PasswordCommand)
	case "auth":
		return str(&a.Auth)
	case "deliver":
		if msg, kind := str(&a.Deliver); msg != "" {
			return msg, kind
		}
		// Only file destinations take a path; an mda command keeps its ~.
		if kind, p, ok := strings.Cut(a.Deliver, ":"); ok && (kind == "maildir" || kind == "mbox") {
			p, err := expandHome(p)
			if err != nil {
				return err.Error(), config.ErrInvalidValue
			}
			a.Deliver = kind + ":" + p
		}
		return "", nil
	case "recipient":
		return str(&a.Recipient)
	case "sender":
		return str(&a.Sender)
	case "keep":
		return boolean(&a.Keep)
	case "delete_after":
		return duration(&a.DeleteAfter)
	case "max_size":
		return size(&a.MaxSize)
	case "oversize":
		return str(&a.Oversize)
	case "max_messages":
		return integer(&a.MaxMessages)
	case "max_bytes":
		return size(&a.MaxBytes)
	case "received_header":
		return boolean(&a.ReceivedHeader)
	case "pipeline":
		return integer(&a.Pipeline)
	case "timeout":
		return duration(&a.Timeout)
	case "keepalive":
		return duration(&a.Keepalive)
	case "state_dir":
		return path(&a.StateDir)
	}
	return "unknown key", config.ErrUnknownKey
}

// expandHome turns a leading "~/" into the home directory; shells do this
// for command lines but nothing does it for a configuration file.
func expandHome(p string) (string, error) {
	if p != "~" && !strings.HasPrefix(p, "~/") {
		return p, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("cannot expand ~: %w", err)
	}
	return filepath.Join(home, strings.TrimPrefix(p, "~")), nil
}

// parseAge reads a duration with the units people use for mail age: "30d",
// "2w", "12h", "90s", or anything time.ParseDuration accepts.
func parseAge(s string) (time.Duration, error) {
	for suffix, unit := range map[string]time.Duration{"d": 24 * time.Hour, "w": 7 * 24 * time.Hour} {
		if n, ok := strings.CutSuffix(s, suffix); ok {
			v, err := strconv.ParseUint(n, 10, 16)
			if err != nil {
				return 0, fmt.Errorf("%q is not a duration (like \"30d\", \"2w\", \"12h\")", s)
			}
			return time.Duration(v) * unit, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (like \"30d\", \"2w\", \"12h\")", s)
	}
	return d, nil
}

// parseSize reads a byte count: an integer, or a string with a K, M or G
// suffix (powers of 1024).
func parseSize(v any) (int64, error) {
	switch t := v.(type) {
	case int64:
		if t < 0 {
			return 0, fmt.Errorf("%d is negative", t)
		}
		return t, nil
	case string:
		s := strings.TrimSuffix(strings.ToUpper(strings.TrimSpace(t)), "B")
		mult := int64(1)
		for suffix, m := range map[string]int64{"K": 1 << 10, "M": 1 << 20, "G": 1 << 30} {
			if n, ok := strings.CutSuffix(s, suffix); ok {
				s, mult = n, m
			}
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 || n > (1<<50)/mult {
			return 0, fmt.Errorf("%q is not a size (like 10485760 or \"10M\")", t)
		}
		return n * mult, nil
	}
	return 0, fmt.Errorf("expected a size (an integer or a string like \"10M\"), found %s", describe(v))
}

// ParseFingerprint accepts a SHA-256 fingerprint as "sha256:AB:CD:...",
// "AB:CD:..." or plain hex, in either case, and returns it as upper-case hex
// pairs joined by colons (the form popbox serve logs and TLS errors show).
func ParseFingerprint(s string) (string, error) {
	h := strings.TrimPrefix(strings.ToLower(strings.TrimSpace(s)), "sha256:")
	h = strings.ReplaceAll(h, ":", "")
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != sha256.Size {
		return "", fmt.Errorf("%q is not a SHA-256 fingerprint (sha256: and 32 hex pairs)", s)
	}
	return formatFingerprint(b), nil
}

func formatFingerprint(sum []byte) string {
	h := strings.ToUpper(hex.EncodeToString(sum))
	pairs := make([]string, 0, len(sum))
	for i := 0; i < len(h); i += 2 {
		pairs = append(pairs, h[i:i+2])
	}
	return strings.Join(pairs, ":")
}

func describe(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case []any, []map[string]any:
		return "an array"
	case map[string]any:
		return "a table"
	case time.Time:
		return "a date/time"
	}
	return fmt.Sprintf("%T", v)
}

// lineIndex maps the keys of the top level (section -1) and of each
// [[account]] (section i) to their lines.
type lineIndex struct {
	keys     map[int]map[string]int
	sections []int // line of each [[account]] header
}

func (l lineIndex) at(section int, key string) int {
	if n := l.keys[section][key]; n > 0 {
		return n
	}
	if section >= 0 && section < len(l.sections) {
		return l.sections[section]
	}
	return 0
}

// sortedKeys returns m's keys in document order (unknown lines last), so
// errors come out in the order of the file.
func sortedKeys(m map[string]any, l lineIndex, section int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		la, lb := l.at(section, a), l.at(section, b)
		if la != lb {
			return la - lb
		}
		return strings.Compare(a, b)
	})
	return keys
}

var (
	sectionRe = regexp.MustCompile(`^\s*\[\[\s*account\s*\]\]`)
	tableRe   = regexp.MustCompile(`^\s*\[`)
	keyRe     = regexp.MustCompile(`^\s*([A-Za-z0-9_-]+|"[^"]*")\s*=`)
)

// keyLines finds the line of every simple key. The account file is flat
// (keys and [[account]] headers), so a line scan is enough; toml v1.6.0
// keeps key positions private. It skips the insides of multi-line strings
// so that their lines are not taken for keys. Anything it misreads only
// loses a line number in a message: decoding is toml's.
func keyLines(data []byte) lineIndex {
	l := lineIndex{keys: map[int]map[string]int{}}
	section := -1
	inMulti := ""
	for i, line := range strings.Split(string(data), "\n") {
		n := i + 1
		if inMulti != "" {
			if strings.Count(line, inMulti)%2 == 1 {
				inMulti = ""
			}
			continue
		}
		switch {
		case sectionRe.MatchString(line):
			l.sections = append(l.sections, n)
			section = len(l.sections) - 1
		case tableRe.MatchString(line):
			// A table the file format does not have: note where, for the
			// unknown-key message, and ignore its keys.
			name := strings.Trim(strings.TrimSpace(line), "[] ")
			if l.keys[-1] == nil {
				l.keys[-1] = map[string]int{}
			}
			if _, ok := l.keys[-1][name]; !ok {
				l.keys[-1][name] = n
			}
			section = -2
		default:
			m := keyRe.FindStringSubmatch(line)
			if m == nil {
				continue
			}
			if l.keys[section] == nil {
				l.keys[section] = map[string]int{}
			}
			k := strings.Trim(m[1], `"`)
			if _, ok := l.keys[section][k]; !ok {
				l.keys[section][k] = n
			}
			for _, q := range []string{`"""`, `'''`} {
				if strings.Count(line, q)%2 == 1 {
					inMulti = q
				}
			}
		}
	}
	return l
}
