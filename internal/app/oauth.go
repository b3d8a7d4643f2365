package app

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/popbox/popbox/config"
	"github.com/popbox/popbox/oauth"
	"github.com/popbox/popbox/pop3server"
)

// TokenVerifier checks OAuth bearer tokens for pop3server with the
// configured verifiers in turn: the JWKS file first (local and cheap), then
// the introspection endpoint, which also knows opaque tokens.
type TokenVerifier struct {
	JWKS          *oauth.JWKSVerifier          // nil if not configured
	Introspection *oauth.IntrospectionVerifier // nil if not configured
}

var _ pop3server.TokenVerifier = (*TokenVerifier)(nil)

// NewTokenVerifier builds the verifiers [oauth] configures, or returns nil
// when it configures none (OAuth is then not offered).
func NewTokenVerifier(c config.OAuth) (*TokenVerifier, error) {
	var t TokenVerifier
	if c.JWKSFile != "" {
		v, err := oauth.NewJWKSVerifier(oauth.JWKSConfig{File: c.JWKSFile, Issuer: c.Issuer, Audience: c.Audience,
			UsernameClaim: c.UsernameClaim, RequiredScope: c.RequiredScope})
		if err != nil {
			return nil, fmt.Errorf("oauth.jwks_file: %w", err)
		}
		t.JWKS = v
	}
	if c.IntrospectionURL != "" {
		secret, err := readSecret(c.ClientSecretFile)
		if err != nil {
			return nil, fmt.Errorf("oauth.client_secret_file: %w", err)
		}
		v, err := oauth.NewIntrospectionVerifier(oauth.IntrospectionConfig{URL: c.IntrospectionURL, ClientID: c.ClientID,
			ClientSecret: secret, UsernameClaim: c.UsernameClaim, Audience: c.Audience, RequiredScope: c.RequiredScope})
		if err != nil {
			return nil, fmt.Errorf("oauth.introspection_url: %w", err)
		}
		t.Introspection = v
	}
	if t.JWKS == nil && t.Introspection == nil {
		return nil, nil
	}
	return &t, nil
}

// VerifyToken implements pop3server.TokenVerifier. A token every verifier
// refuses wraps pop3server.ErrAuthFailed; an introspection endpoint that
// cannot answer is a system error, so the client hears "try later" rather
// than "bad token".
func (t *TokenVerifier) VerifyToken(ctx context.Context, token string) (string, error) {
	var verifiers []oauth.Verifier
	if t.JWKS != nil {
		verifiers = append(verifiers, t.JWKS)
	}
	if t.Introspection != nil {
		verifiers = append(verifiers, t.Introspection)
	}
	refused := errors.New("no token verifier configured")
	for _, v := range verifiers {
		id, err := v.Verify(ctx, token)
		if err == nil {
			return id.Username, nil
		}
		if !errors.Is(err, oauth.ErrInvalidToken) {
			return "", err
		}
		refused = err
	}
	return "", fmt.Errorf("%w: %w", pop3server.ErrAuthFailed, refused)
}

// Reload re-reads the JWKS file (on SIGHUP), keeping the old keys if the
// new file is bad.
func (t *TokenVerifier) Reload() error {
	if t == nil || t.JWKS == nil {
		return nil
	}
	return t.JWKS.Reload()
}

// readSecret reads a secret from a small file, without the final newline.
func readSecret(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	const max = 4096
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return "", err
	}
	if len(b) > max {
		return "", fmt.Errorf("%s: longer than %d bytes", path, max)
	}
	b = bytes.TrimRight(b, "\r\n")
	if len(b) == 0 {
		return "", fmt.Errorf("%s is empty", path)
	}
	return string(b), nil
}
