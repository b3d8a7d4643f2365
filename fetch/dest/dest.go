package dest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Message describes one downloaded message.
type Message struct {
	// Key is a stable unique key for this message (the engine derives it
	// from account + server + UIDL); characters [A-Za-z0-9._-], at most
	// MaxKeyLen of them. maildir and mbox record it so Has can answer.
	Key string
	// Recipient is the local recipient for lmtp/smtp destinations (e.g. the
	// account's local user).
	Recipient string
	// Sender is the envelope sender: the mbox "From " line and LMTP/SMTP
	// MAIL FROM. "" means "MAILER-DAEMON" in the From_ line and Options.LMTPFrom
	// (by default the null path <>) in MAIL FROM.
	Sender string
	// Time is the delivery time written in the mbox From_ line; zero means now.
	Time time.Time
}

// Destination stores downloaded messages. Its methods are safe for
// concurrent use.
type Destination interface {
	// Deliver reads the whole message from r (as the POP3 client returns
	// it: dot-unstuffed, CRLF line ends) and stores it, returning nil only
	// when it is durable. On error no partial message is visible (or, for
	// mbox, the file is truncated back).
	Deliver(ctx context.Context, r io.Reader, m Message) error
	// Has reports whether a message with this key was durably stored
	// earlier. The engine asks it after a crash left a delivery pending in
	// its journal, to deliver neither twice nor never. Destinations that
	// cannot tell (mda, lmtp, smtp) return false, ErrUnknowable.
	Has(ctx context.Context, key string) (bool, error)
	// Close releases the destination; Deliver and Has fail afterwards.
	Close() error
}

var (
	// ErrUnknowable is what Has returns for destinations that hand the
	// message to another program and keep no record (mda, lmtp, smtp).
	ErrUnknowable = errors.New("dest: this destination cannot tell whether a message was delivered")
	// ErrTemporary marks failures worth retrying later: MDA exit 75
	// (EX_TEMPFAIL), an LMTP/SMTP 4xx reply or a network failure, a full
	// disk, a lock that could not be had in time. The engine keeps the
	// message on the server and tries again on the next run.
	ErrTemporary = errors.New("dest: temporary failure")
	// ErrTooLarge: the message exceeded Options.MaxMessageSize. Permanent.
	ErrTooLarge = errors.New("dest: message too large")
	// ErrClosed: the Destination was used after Close.
	ErrClosed = errors.New("dest: destination closed")
)

// MaxKeyLen bounds Message.Key: it must fit in a Maildir file name (255
// bytes on every common file system) with room to spare.
const MaxKeyLen = 64

// Defaults for the zero Options.
const (
	DefaultMDATimeout     = 5 * time.Minute
	DefaultDialTimeout    = 30 * time.Second
	DefaultMaxMessageSize = 1 << 30
)

// Options configures a Destination. The zero value is usable.
type Options struct {
	// Logger receives warnings (a stale dot-lock removed, a truncation that
	// failed); nil discards them.
	Logger *slog.Logger
	// MDATimeout bounds one run of the mda command; 0 means
	// DefaultMDATimeout. The whole process group is killed when it expires.
	MDATimeout time.Duration
	// DialTimeout bounds connecting to an lmtp/smtp server; 0 means
	// DefaultDialTimeout.
	DialTimeout time.Duration
	// LMTPFrom is the MAIL FROM address for lmtp/smtp when Message.Sender is
	// empty; "" is the null reverse-path <>.
	LMTPFrom string
	// Hostname is the name used in LHLO/EHLO and in Maildir file names; ""
	// means os.Hostname().
	Hostname string
	// MaxMessageSize bounds the octets Deliver reads from r: the source is
	// a remote server and must not be able to fill the disk. 0 means
	// DefaultMaxMessageSize, negative means no bound.
	MaxMessageSize int64
}

// withDefaults fills in the zero fields.
func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MDATimeout <= 0 {
		o.MDATimeout = DefaultMDATimeout
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	if o.Hostname == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "localhost"
		}
		o.Hostname = h
	}
	if o.MaxMessageSize == 0 {
		o.MaxMessageSize = DefaultMaxMessageSize
	}
	return o
}

// Open parses a destination spec and returns the Destination:
//
//	maildir:PATH    a Maildir, created (new/, cur/, tmp/, mode 0700) if missing
//	mbox:PATH       an mboxrd file, created 0600 if missing
//	mda:COMMAND     a program run by /bin/sh -c with the message on stdin
//	lmtp:ADDR       an LMTP server (RFC 2033)
//	smtp:ADDR       an SMTP server (RFC 5321); port 25 if ADDR has none
//
// ADDR is host:port, unix:/path or an absolute socket path. A leading ~/ in
// PATH is the user's home directory. With an error the Destination is a
// nil interface, so callers may test either result.
func Open(spec string, opts Options) (Destination, error) {
	scheme, rest, ok := strings.Cut(spec, ":")
	if !ok {
		return nil, fmt.Errorf("dest: %q: want SCHEME:ARGUMENT with scheme maildir, mbox, mda, lmtp or smtp", spec)
	}
	opts = opts.withDefaults()
	switch scheme {
	case "maildir", "mbox":
		path, err := expandPath(rest)
		if err != nil {
			return nil, fmt.Errorf("dest: %s: %w", spec, err)
		}
		// Each constructor's *T result goes through a nil check: returning
		// it directly would turn a nil *T into a non-nil Destination that
		// comes with the error (the typed-nil trap, Go FAQ "Why is my nil
		// error value not equal to nil?").
		if scheme == "maildir" {
			md, err := openMaildir(path, opts)
			if err != nil {
				return nil, err
			}
			return md, nil
		}
		mb, err := openMbox(path, opts)
		if err != nil {
			return nil, err
		}
		return mb, nil
	case "mda":
		if strings.TrimSpace(rest) == "" {
			return nil, fmt.Errorf("dest: %q: empty command", spec)
		}
		return &mdaDest{command: rest, opts: opts}, nil
	case "lmtp", "smtp":
		network, addr, err := parseAddr(rest, scheme == "smtp")
		if err != nil {
			return nil, fmt.Errorf("dest: %q: %w", spec, err)
		}
		return &smtpDest{lmtp: scheme == "lmtp", network: network, addr: addr, opts: opts}, nil
	default:
		return nil, fmt.Errorf("dest: %q: unknown scheme %q (want maildir, mbox, mda, lmtp or smtp)", spec, scheme)
	}
}

// expandPath expands a leading ~/ and makes the path absolute, so that a
// later change of working directory cannot redirect mail.
func expandPath(p string) (string, error) {
	if p == "" {
		return "", errors.New("empty path")
	}
	if p == "~" || strings.HasPrefix(p, "~/") {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("expanding ~: %w", err)
		}
		p = filepath.Join(home, p[1:])
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", fmt.Errorf("making %q absolute: %w", p, err)
	}
	return abs, nil
}

// parseAddr turns ADDR into a network and address for net.Dialer.
func parseAddr(a string, defaultPort25 bool) (network, addr string, err error) {
	switch {
	case a == "":
		return "", "", errors.New("empty address")
	case strings.HasPrefix(a, "unix:"):
		p := strings.TrimPrefix(a, "unix:")
		if !filepath.IsAbs(p) {
			return "", "", fmt.Errorf("unix socket path %q is not absolute", p)
		}
		return "unix", p, nil
	case strings.HasPrefix(a, "/"):
		return "unix", a, nil
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		if !defaultPort25 {
			return "", "", fmt.Errorf("want host:port, unix:/path or /path: %w", err)
		}
		// No port: RFC 5321 §4.5.4.2 / IANA, SMTP is port 25. LMTP has no
		// standard port (RFC 2033 §5 forbids 25), so it needs one.
		host, port = strings.TrimSuffix(strings.TrimPrefix(a, "["), "]"), "25"
	}
	if host == "" {
		return "", "", fmt.Errorf("no host in %q", a)
	}
	return "tcp", net.JoinHostPort(host, port), nil
}

// checkKey enforces Message.Key's contract: keys go into file names and
// headers, so anything else could escape the directory or forge a header.
func checkKey(key string) error {
	if key == "" || len(key) > MaxKeyLen {
		return fmt.Errorf("dest: key %q: want 1..%d characters", key, MaxKeyLen)
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("dest: key %q: character %q not in [A-Za-z0-9._-]", key, c)
		}
	}
	return nil
}

// limitReader fails (instead of pretending EOF like io.LimitReader) once
// more than max octets were read, so a truncated message is never stored
// as if complete.
type limitReader struct {
	r   io.Reader
	max int64 // negative: no limit
	n   int64
}

func (l *limitReader) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	l.n += int64(n)
	if l.max >= 0 && l.n > l.max {
		return 0, fmt.Errorf("%w: more than %d octets", ErrTooLarge, l.max)
	}
	return n, err
}
