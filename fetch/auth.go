package fetch

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	gosasl "github.com/emersion/go-sasl"

	"github.com/popbox/popbox/pop3client"
	"github.com/popbox/popbox/sasl"
)

// passwordCommandTimeout bounds password_command: a pass(1) or gpg
// pinentry prompt may wait for a person, but not for ever.
const passwordCommandTimeout = 2 * time.Minute

// maxPasswordOutput bounds what password_command may print.
const maxPasswordOutput = 64 << 10

// ResolvePassword returns the account's password: the password key, or the
// first line password_command prints (run by /bin/sh, like mpop's
// passwordeval). It returns "" when neither is set; the caller may prompt.
func ResolvePassword(ctx context.Context, a *Account) (string, error) {
	if a.Password != "" || a.PasswordCommand == "" {
		return a.Password, nil
	}
	ctx, cancel := context.WithTimeout(ctx, passwordCommandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", a.PasswordCommand)
	cmd.Stdin = os.Stdin // gpg and pass may need the terminal
	cmd.Stderr = os.Stderr
	cmd.WaitDelay = time.Second
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", fmt.Errorf("%w: password_command: %w", ErrConfig, err)
	}
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("%w: password_command: %w", ErrConfig, err)
	}
	b, rerr := io.ReadAll(io.LimitReader(out, maxPasswordOutput))
	werr := cmd.Wait()
	if err := errors.Join(rerr, werr); err != nil {
		return "", fmt.Errorf("%w: password_command %q failed: %w", ErrConfig, a.PasswordCommand, err)
	}
	pw, _, _ := strings.Cut(string(b), "\n")
	pw = strings.TrimSuffix(pw, "\r")
	if pw == "" {
		return "", fmt.Errorf("%w: password_command %q printed an empty password", ErrConfig, a.PasswordCommand)
	}
	return pw, nil
}

// ReadPasswordLine reads one line (a password given on standard input
// when it is not a terminal), bounded.
func ReadPasswordLine(r io.Reader) (string, error) {
	s, err := bufio.NewReader(io.LimitReader(r, maxPasswordOutput)).ReadString('\n')
	if err != nil && !(errors.Is(err, io.EOF) && s != "") {
		return "", err
	}
	return strings.TrimRight(s, "\r\n"), nil
}

// mechanism is one way of logging in.
type mechanism struct {
	name   string // SASL name, or "USER" for USER/PASS
	secret bool   // sends the password or a bearer token as such
}

// chooseMechanism picks how to log in. With auth = "auto" it takes the
// strongest the server offers in this order: SCRAM-SHA-256-PLUS (RFC 7677,
// RFC 5802 §6 channel binding, only over TLS), SCRAM-SHA-256, PLAIN
// (RFC 4616), USER/PASS (RFC 1939 §7). PLAIN and USER/PASS send the
// password itself, so they are only chosen over TLS or when tls = "none"
// was written explicitly; the same holds for explicitly chosen mechanisms
// that send a password or a token.
func chooseMechanism(a *Account, caps pop3client.Capabilities, tlsActive bool) (mechanism, error) {
	offered := make([]string, 0, len(caps.SASL()))
	for _, m := range caps.SASL() {
		offered = append(offered, strings.ToUpper(m))
	}
	has := func(m string) bool { return slices.Contains(offered, m) }
	clearOK := tlsActive || a.TLS == TLSNone
	refuse := func(m string) error {
		return fmt.Errorf("%w: %s would send the password in clear; use TLS (tls = \"implicit\" or \"starttls\") or set tls = \"none\" explicitly", ErrAuth, m)
	}
	switch a.Auth {
	case AuthAuto:
		switch {
		case tlsActive && has("SCRAM-SHA-256-PLUS"):
			return mechanism{name: "SCRAM-SHA-256-PLUS"}, nil
		case has("SCRAM-SHA-256"):
			return mechanism{name: "SCRAM-SHA-256"}, nil
		case !clearOK:
			return mechanism{}, fmt.Errorf("%w: the server offers no mechanism that protects the password (SASL: %s) and the connection has no TLS",
				ErrAuth, strings.Join(offered, " "))
		case has("PLAIN"):
			return mechanism{name: "PLAIN", secret: true}, nil
		}
		// RFC 2449 §6.8: USER in CAPA. A server without CAPA at all may
		// still take USER/PASS (RFC 1939 makes it optional but common).
		return mechanism{name: "USER", secret: true}, nil
	case AuthUser:
		if !clearOK {
			return mechanism{}, refuse("USER/PASS")
		}
		return mechanism{name: "USER", secret: true}, nil
	case AuthSCRAM:
		if tlsActive && has("SCRAM-SHA-256-PLUS") {
			return mechanism{name: "SCRAM-SHA-256-PLUS"}, nil
		}
		if !has("SCRAM-SHA-256") {
			return mechanism{}, fmt.Errorf("%w: auth = %q but the server does not offer SCRAM-SHA-256 (SASL: %s)", ErrAuth, a.Auth, strings.Join(offered, " "))
		}
		return mechanism{name: "SCRAM-SHA-256"}, nil
	}
	name := map[string]string{AuthPlain: "PLAIN", AuthLogin: "LOGIN", AuthOAuthBearer: "OAUTHBEARER", AuthXOAuth2: "XOAUTH2"}[a.Auth]
	if !has(name) {
		return mechanism{}, fmt.Errorf("%w: auth = %q but the server does not offer SASL %s (SASL: %s)", ErrAuth, a.Auth, name, strings.Join(offered, " "))
	}
	if !clearOK {
		return mechanism{}, refuse(name)
	}
	return mechanism{name: name, secret: true}, nil
}

// saslClient makes the client side of the chosen SASL mechanism.
func saslClient(m mechanism, a *Account, password string, state tls.ConnectionState) (gosasl.Client, error) {
	switch m.name {
	case "SCRAM-SHA-256-PLUS":
		// "": RFC 9266 tls-exporter where the connection allows it, else
		// RFC 5929 tls-server-end-point.
		cb, err := sasl.ChannelBindingFromTLS(state, "")
		if err != nil {
			return nil, fmt.Errorf("%w: channel binding: %w", ErrAuth, err)
		}
		return sasl.NewSCRAMSHA256Client(a.User, password, cb), nil
	case "SCRAM-SHA-256":
		return sasl.NewSCRAMSHA256Client(a.User, password, nil), nil
	case "PLAIN":
		return sasl.NewPlainClient("", a.User, password), nil
	case "LOGIN":
		return sasl.NewLoginClient(a.User, password), nil
	case "OAUTHBEARER":
		return sasl.NewOAuthBearerClient(&sasl.OAuthBearerOptions{Username: a.User, Token: password}), nil
	case "XOAUTH2":
		return sasl.NewXOAUTH2Client(a.User, password), nil
	}
	return nil, fmt.Errorf("%w: no client for %s", ErrAuth, m.name)
}
