package pop3client

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/emersion/go-sasl"

	"github.com/popbox/popbox/pop3"
)

// Capabilities is a CAPA reply (RFC 2449 §5): upper-case capability name ->
// its arguments.
type Capabilities map[string][]string

// Has reports whether the server announced the capability (any case).
func (c Capabilities) Has(name string) bool {
	_, ok := c[strings.ToUpper(name)]
	return ok
}

// SASL returns the mechanisms of the SASL capability (RFC 5034 §6).
func (c Capabilities) SASL() []string { return c[pop3.CapSASL] }

// MessageInfo describes a message in a listing. LIST fills Num and Size,
// UIDL fills Num and UIDL.
type MessageInfo struct {
	Num  int
	Size int64
	UIDL string
}

// Capabilities returns the server's capabilities (CAPA, RFC 2449 §5). The
// reply is cached until STLS or a login, after which the server may announce
// different ones. A server without CAPA answers -ERR, returned as *Error.
func (c *Client) Capabilities(ctx context.Context) (Capabilities, error) {
	if c.caps != nil {
		if err := c.check("CAPA"); err != nil {
			return nil, err
		}
		return cloneCaps(c.caps), nil
	}
	o, err := c.begin(ctx, "CAPA")
	if err != nil {
		return nil, err
	}
	defer o.end()
	if err := o.send("CAPA", ""); err != nil {
		return nil, err
	}
	ok, text, err := o.status()
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, parseError("CAPA", text)
	}
	caps := Capabilities{}
	err = o.listing(maxCapaLines, func(line string) error {
		f := fields(line)
		if len(f) == 0 {
			return nil // a blank line announces nothing
		}
		name := strings.ToUpper(f[0])
		args := caps[name]
		if args == nil {
			args = []string{} // non-nil even without arguments
		}
		caps[name] = append(args, f[1:]...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	c.caps = caps
	c.mu.Lock()
	c.pipelining = caps.Has("PIPELINING")
	c.mu.Unlock()
	return cloneCaps(caps), nil
}

func cloneCaps(c Capabilities) Capabilities {
	r := maps.Clone(c)
	for k, v := range r {
		r[k] = slices.Clone(v)
	}
	return r
}

// StartTLS upgrades the connection to TLS (STLS, RFC 2595 §4). A nil cfg,
// or one without ServerName, checks the certificate against the host given
// to Dial. An -ERR reply is returned as *Error and the session goes on in
// plain text; a failed handshake leaves the Client unusable.
func (c *Client) StartTLS(ctx context.Context, cfg *tls.Config) error {
	if _, ok := c.TLSConnectionState(); ok {
		return errors.New("pop3client: STLS: connection already uses TLS")
	}
	if cfg == nil {
		cfg = &tls.Config{}
	} else {
		cfg = cfg.Clone()
	}
	if cfg.ServerName == "" && !cfg.InsecureSkipVerify {
		if c.host == "" {
			return errors.New("pop3client: STLS: tls.Config.ServerName needed (server name unknown)")
		}
		cfg.ServerName = c.host
	}
	o, err := c.begin(ctx, "STLS")
	if err != nil {
		return err
	}
	defer o.end()
	if err := o.send("STLS", ""); err != nil {
		return err
	}
	ok, text, err := o.status()
	if err != nil {
		return err
	}
	if !ok {
		return parseError("STLS", text)
	}
	// Bytes already here came in plain text after the +OK; reading them as
	// if they had come over TLS is the CVE-2011-0411 class of injection.
	// The server must send nothing until the client's handshake begins.
	if n := o.c.r.Buffered(); n > 0 {
		return o.protocol("%d octets sent after the STLS reply, before the TLS handshake", n)
	}
	c.mu.Lock()
	raw := c.conn
	c.mu.Unlock()
	tc := tls.Client(raw, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		return o.fail(fmt.Errorf("TLS handshake: %w", err))
	}
	c.mu.Lock()
	c.conn = tc
	c.mu.Unlock()
	c.r.Reset(tc)
	c.w.Reset(tc)
	// RFC 2595 §4: the client MUST discard cached capabilities.
	c.caps = nil
	c.mu.Lock()
	c.pipelining = false
	c.mu.Unlock()
	return nil
}

// checkArg refuses a command argument that would end the command line early
// or smuggle in a second command.
func checkArg(cmd, what, s string) error {
	if strings.ContainsAny(s, "\r\n\x00") {
		return fmt.Errorf("pop3client: %s: %s contains CR, LF or NUL", cmd, what)
	}
	return nil
}

// User sends the user name (USER, RFC 1939 §7).
func (c *Client) User(ctx context.Context, name string) error {
	if err := checkArg("USER", "user name", name); err != nil {
		return err
	}
	if name == "" || strings.ContainsAny(name, " \t") {
		return errors.New("pop3client: USER: user name empty or containing spaces")
	}
	_, err := c.simple(ctx, "USER "+name, "")
	return err
}

// Pass sends the password (PASS, RFC 1939 §7) after User. A -ERR reply is an
// *Error, usually with Code "AUTH" (bad credentials, RFC 3206 §5), "IN-USE"
// or "SYS/TEMP".
func (c *Client) Pass(ctx context.Context, password string) error {
	if err := checkArg("PASS", "password", password); err != nil {
		return err
	}
	if _, err := c.simple(ctx, "PASS "+password, "PASS"); err != nil {
		return err
	}
	c.caps = nil // RFC 2449 §5: capabilities may change after login
	return nil
}

// Auth authenticates with a SASL mechanism (AUTH, RFC 5034 §4). The initial
// response goes on the command line ("=" when empty) unless that would make
// the line longer than the 255 octets RFC 2449 §4 allows, in which case it
// answers the server's first, empty challenge. Challenges are base64; one
// that is not, or that the mechanism refuses, cancels the exchange with "*".
//
// Mechanisms may implement two optional methods (see package
// github.com/popbox/popbox/sasl): ServerVerified() error is called after the
// server's +OK, and an error (the server never proved it knows the password)
// closes the connection; Failure() error, after an -ERR, adds the reason the
// server gave inside the exchange to the returned error.
func (c *Client) Auth(ctx context.Context, m sasl.Client) error {
	mech, ir, err := m.Start()
	if err != nil {
		return fmt.Errorf("pop3client: AUTH: %w", err)
	}
	if !validMechanism(mech) {
		return fmt.Errorf("pop3client: AUTH: invalid mechanism name %s", strconv.Quote(mech))
	}
	name := "AUTH " + mech
	o, err := c.begin(ctx, name)
	if err != nil {
		return err
	}
	defer o.end()

	line, pending := name, false
	if ir != nil {
		enc := "=" // RFC 5034 §4: a zero-length initial response
		if len(ir) > 0 {
			enc = base64.StdEncoding.EncodeToString(ir)
		}
		if len(line)+1+len(enc)+2 <= pop3.MaxCommandLine {
			line += " " + enc
		} else {
			pending = true // RFC 5034 §4: send it after the empty challenge
		}
	}
	if err := o.send(line, name+" [initial response]"); err != nil {
		return err
	}
	for round := 0; ; round++ {
		raw, err := o.readLine(false)
		if err != nil {
			return err
		}
		if ok, text, err := parseStatus(raw); err == nil {
			o.c.log.Debug("pop3 recv", "line", string(raw))
			if !ok {
				e := parseError(name, text)
				if fr, is := m.(interface{ Failure() error }); is {
					if f := fr.Failure(); f != nil {
						return fmt.Errorf("%w (%w)", e, f)
					}
				}
				return e
			}
			c.caps = nil // RFC 2449 §5
			if mv, is := m.(interface{ ServerVerified() error }); is {
				if err := mv.ServerVerified(); err != nil {
					return o.fail(err)
				}
			}
			return nil
		}
		// RFC 5034 §4: a challenge is "+" SP base64; some servers send a
		// bare "+" for an empty one.
		if len(raw) == 0 || raw[0] != '+' || len(raw) > 1 && raw[1] != ' ' {
			return o.protocol("AUTH reply %s is neither a challenge nor a status", quote(raw))
		}
		o.c.log.Debug("pop3 recv", "line", "+ [challenge]")
		if round >= maxAuthRounds {
			return o.protocol("more than %d challenges", maxAuthRounds)
		}
		challenge, err := decodeBase64(strings.Trim(string(raw[1:]), " "))
		if err != nil {
			// RFC 5034 §4: the client MUST cancel with "*".
			return o.cancelAuth(fmt.Errorf("server challenge is not base64: %w", err))
		}
		var resp []byte
		if pending {
			pending = false
			resp = ir
		} else if resp, err = m.Next(challenge); err != nil {
			return o.cancelAuth(err)
		}
		if err := o.send(base64.StdEncoding.EncodeToString(resp), "[response]"); err != nil {
			return err
		}
	}
}

// cancelAuth ends an AUTH exchange with "*" (RFC 5034 §4) and reads the
// server's -ERR, so that the session stays in step.
func (o *op) cancelAuth(cause error) error {
	if err := o.send("*", ""); err != nil {
		return err
	}
	ok, text, err := o.status()
	if err != nil {
		return err
	}
	if ok {
		// Logged in after all, on an exchange we refused: do not use it.
		return o.protocol("server accepted a cancelled AUTH (%w)", cause)
	}
	return fmt.Errorf("pop3client: %s: cancelled: %w (%w)", o.name, cause, parseError(o.name, text))
}

// validMechanism checks RFC 4422 §3.1: 1 to 20 of A-Z 0-9 - _.
func validMechanism(m string) bool {
	if m == "" || len(m) > 20 {
		return false
	}
	for i := 0; i < len(m); i++ {
		c := m[i]
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// decodeBase64 accepts padded base64, and unpadded from sloppy servers.
func decodeBase64(s string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		if b2, err2 := base64.RawStdEncoding.DecodeString(s); err2 == nil {
			return b2, nil
		}
	}
	return b, err
}

// Stat returns the number of messages and their total size in octets
// (STAT, RFC 1939 §5).
func (c *Client) Stat(ctx context.Context) (count int, size int64, err error) {
	o, err := c.begin(ctx, "STAT")
	if err != nil {
		return 0, 0, err
	}
	defer o.end()
	if err := o.send("STAT", ""); err != nil {
		return 0, 0, err
	}
	ok, text, err := o.status()
	if err != nil {
		return 0, 0, err
	}
	if !ok {
		return 0, 0, parseError("STAT", text)
	}
	count, size, err = parseStat(text)
	if err != nil {
		return 0, 0, o.protocol("%w", err)
	}
	return count, size, nil
}

// List returns every message's number and size (LIST, RFC 1939 §5).
func (c *Client) List(ctx context.Context) ([]MessageInfo, error) {
	var list []MessageInfo
	err := c.multi(ctx, "LIST", func(line string) error {
		mi, err := parseScan(line)
		if err != nil {
			return err
		}
		list = append(list, mi)
		return nil
	})
	return list, err
}

// UIDL returns every message's number and unique-id (UIDL, RFC 1939 §7).
// Unique-ids outside the RFC's syntax (1-70 characters 0x21-0x7E) are
// accepted and noted in the log.
func (c *Client) UIDL(ctx context.Context) ([]MessageInfo, error) {
	var list []MessageInfo
	odd := 0
	err := c.multi(ctx, "UIDL", func(line string) error {
		mi, isOdd, err := parseUIDL(line)
		if err != nil {
			return err
		}
		if isOdd {
			if odd == 0 {
				c.log.Warn("pop3 UIDL outside RFC 1939 §7 syntax", "num", mi.Num, "uidl", quote([]byte(mi.UIDL)))
			}
			odd++
		}
		list = append(list, mi)
		return nil
	})
	if odd > 1 {
		c.log.Warn("pop3 UIDLs outside RFC 1939 §7 syntax", "count", odd)
	}
	return list, err
}

// multi runs a command with a multi-line listing reply, bounded by
// MaxListing entries.
func (c *Client) multi(ctx context.Context, cmd string, fn func(string) error) error {
	o, err := c.begin(ctx, cmd)
	if err != nil {
		return err
	}
	defer o.end()
	if err := o.send(cmd, ""); err != nil {
		return err
	}
	ok, text, err := o.status()
	if err != nil {
		return err
	}
	if !ok {
		return parseError(cmd, text)
	}
	return o.listing(c.opts.MaxListing, fn)
}

// ListOne returns the size of message n (LIST n, RFC 1939 §5).
func (c *Client) ListOne(ctx context.Context, n int) (MessageInfo, error) {
	var mi MessageInfo
	err := c.one(ctx, "LIST", n, func(text string) (err error) {
		mi, err = parseScan(text)
		return err
	}, &mi.Num)
	return mi, err
}

// UIDLOne returns the unique-id of message n (UIDL n, RFC 1939 §7).
func (c *Client) UIDLOne(ctx context.Context, n int) (MessageInfo, error) {
	var mi MessageInfo
	err := c.one(ctx, "UIDL", n, func(text string) (err error) {
		mi, _, err = parseUIDL(text)
		return err
	}, &mi.Num)
	return mi, err
}

// one runs "CMD n" whose +OK text is a listing line for message n; a line
// for another message is a protocol error.
func (c *Client) one(ctx context.Context, cmd string, n int, parse func(string) error, got *int) error {
	line := cmd + " " + strconv.Itoa(n)
	if err := checkNum(line, n); err != nil {
		return err
	}
	o, err := c.begin(ctx, line)
	if err != nil {
		return err
	}
	defer o.end()
	if err := o.send(line, ""); err != nil {
		return err
	}
	ok, text, err := o.status()
	if err != nil {
		return err
	}
	if !ok {
		return parseError(line, text)
	}
	if err := parse(text); err != nil {
		return o.protocol("%w", err)
	}
	if *got != n {
		return o.protocol("reply is about message %d", *got)
	}
	return nil
}

// checkNum refuses a message number that no server can have (RFC 1939 §3:
// they start at 1) before anything is sent.
func checkNum(cmd string, n int) error {
	if n < 1 {
		return fmt.Errorf("pop3client: %s: message numbers start at 1", cmd)
	}
	return nil
}

// Dele marks message n for deletion (DELE, RFC 1939 §5). Only Quit applies
// the marks; Rset or Close drops them.
func (c *Client) Dele(ctx context.Context, n int) error {
	line := "DELE " + strconv.Itoa(n)
	if err := checkNum(line, n); err != nil {
		return err
	}
	_, err := c.simple(ctx, line, "")
	return err
}

// Rset unmarks every message marked for deletion (RSET, RFC 1939 §5).
func (c *Client) Rset(ctx context.Context) error {
	_, err := c.simple(ctx, "RSET", "")
	return err
}

// Noop does nothing but check that the server answers (NOOP, RFC 1939 §5).
func (c *Client) Noop(ctx context.Context) error {
	_, err := c.simple(ctx, "NOOP", "")
	return err
}

// Quit ends the session (QUIT, RFC 1939 §6): the server deletes the marked
// messages and answers. An -ERR reply (an *Error) means the deletions
// failed, and some or all of the marked messages are still there. The
// connection is closed in every case but one: with a message body still
// open, Quit returns ErrBusy and leaves the session alone, so that the body
// can be closed and Quit tried again.
func (c *Client) Quit(ctx context.Context) error {
	_, err := c.simple(ctx, "QUIT", "")
	if errors.Is(err, ErrBusy) {
		return err
	}
	if cerr := c.Close(); err == nil && cerr != nil {
		err = cerr
	}
	return err
}
