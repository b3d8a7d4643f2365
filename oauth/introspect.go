package oauth

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// Defaults of IntrospectionConfig.
const (
	DefaultIntrospectionUsernameClaim = "username" // RFC 7662 §2.2
	DefaultIntrospectionTimeout       = 10 * time.Second
	// MaxIntrospectionCacheEntries bounds the cache of active tokens.
	MaxIntrospectionCacheEntries = 10000
)

// IntrospectionConfig configures an IntrospectionVerifier.
type IntrospectionConfig struct {
	// URL is the introspection endpoint (RFC 7662 §2). It must be https,
	// except on a loopback host, because the request carries both the
	// token and the client secret.
	URL string
	// ClientID and ClientSecret authenticate this server to the endpoint
	// with HTTP Basic (RFC 7662 §2.1, RFC 6749 §2.3.1). ClientID is
	// required: an endpoint open to anyone is a token-scanning oracle.
	ClientID, ClientSecret string
	// UsernameClaim names the response member holding the user name;
	// DefaultIntrospectionUsernameClaim when empty.
	UsernameClaim string
	// Audience, if set, must be among the response's "aud" values.
	Audience string
	// RequiredScope, if set, must be among the response's scopes.
	RequiredScope string
	// Timeout bounds one introspection request, connection included;
	// DefaultIntrospectionTimeout when zero.
	Timeout time.Duration
	// HTTPClient sends the requests; when nil, a client with Timeout that
	// does not follow redirects (an endpoint that redirects is
	// misconfigured, and following would resend the token elsewhere).
	HTTPClient *http.Client
	// CacheTTL, if positive, caches active tokens for that long, or until
	// their expiry if sooner, so that a client polling every minute does
	// not cost a request each time. A token revoked meanwhile still works
	// until its entry expires. Inactive tokens are never cached.
	CacheTTL time.Duration
	// Leeway is the clock skew tolerated on exp and nbf; DefaultLeeway
	// when zero.
	Leeway time.Duration
	// Now returns the current time; time.Now when nil.
	Now func() time.Time
}

// IntrospectionVerifier verifies tokens by asking the authorization server
// (RFC 7662). It is safe for concurrent use.
type IntrospectionVerifier struct {
	cfg    IntrospectionConfig
	client *http.Client
	auth   string // the Authorization header

	mu    sync.Mutex
	cache map[[sha256.Size]byte]cacheEntry
}

// cacheEntry is keyed by the token's SHA-256, so the cache holds no usable
// token and its keys have a fixed size.
type cacheEntry struct {
	id    Identity
	until time.Time
}

var _ Verifier = (*IntrospectionVerifier)(nil)

// NewIntrospectionVerifier checks cfg.
func NewIntrospectionVerifier(cfg IntrospectionConfig) (*IntrospectionVerifier, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("oauth: introspection URL: %w", err)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("oauth: introspection URL %q has no host", cfg.URL)
	}
	if u.User != nil {
		// It would end up in logs with the URL; use ClientSecret.
		return nil, errors.New("oauth: introspection URL must not contain credentials")
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && isLoopback(u.Hostname()):
	default:
		return nil, fmt.Errorf("oauth: introspection URL %q is not https", cfg.URL)
	}
	if cfg.ClientID == "" {
		return nil, errors.New("oauth: introspection needs a client ID")
	}
	if cfg.Timeout < 0 || cfg.Leeway < 0 || cfg.CacheTTL < 0 {
		return nil, errors.New("oauth: negative duration in introspection configuration")
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultIntrospectionTimeout
	}
	if cfg.Leeway == 0 {
		cfg.Leeway = DefaultLeeway
	}
	if cfg.UsernameClaim == "" {
		cfg.UsernameClaim = DefaultIntrospectionUsernameClaim
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	client := cfg.HTTPClient
	if client == nil {
		client = &http.Client{
			Timeout: cfg.Timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		}
	}
	// RFC 6749 §2.3.1: client ID and secret are form-encoded before they
	// go into the Basic credentials (which net/http's SetBasicAuth does
	// not do).
	cred := url.QueryEscape(cfg.ClientID) + ":" + url.QueryEscape(cfg.ClientSecret)
	v := &IntrospectionVerifier{
		cfg:    cfg,
		client: client,
		auth:   "Basic " + base64.StdEncoding.EncodeToString([]byte(cred)),
	}
	if cfg.CacheTTL > 0 {
		v.cache = make(map[[sha256.Size]byte]cacheEntry)
	}
	return v, nil
}

// isLoopback reports whether host is this machine, where plain http cannot
// be overheard.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Verify asks the endpoint about token. An inactive, expired or otherwise
// unacceptable token is an error wrapping ErrInvalidToken; a failed
// request, an HTTP status other than 200 (including 401: our client
// credentials were refused, which is no fault of the token) or a
// malformed response is an error that does not.
func (v *IntrospectionVerifier) Verify(ctx context.Context, token string) (Identity, error) {
	if token == "" || len(token) > MaxTokenLen {
		return Identity{}, invalidf("token empty or longer than %d bytes", MaxTokenLen)
	}
	var key [sha256.Size]byte
	if v.cache != nil {
		key = sha256.Sum256([]byte(token))
		if id, ok := v.cached(key); ok {
			return id, nil
		}
	}
	c, err := v.introspect(ctx, token)
	if err != nil {
		return Identity{}, err
	}
	now := v.cfg.Now()
	id, err := v.judge(c, now)
	if err != nil {
		return Identity{}, err
	}
	if v.cache != nil {
		v.store(key, id, now)
	}
	return id, nil
}

// judge turns an introspection response into an Identity.
func (v *IntrospectionVerifier) judge(c claims, now time.Time) (Identity, error) {
	// RFC 7662 §2.2: "active" is the only required member, and a boolean.
	var active *bool
	if raw, ok := c["active"]; !ok || json.Unmarshal(raw, &active) != nil || active == nil {
		return Identity{}, errors.New(`oauth: introspection response has no boolean "active"`)
	}
	if !*active {
		return Identity{}, invalidf("token not active")
	}
	// token_type (RFC 7662 §2.2) is informational, but a refresh token
	// must not open a mailbox, and a DPoP token needs a proof SASL cannot
	// carry (RFC 9449 §6.2).
	if tt, _, _ := c.str("token_type"); strings.EqualFold(tt, "refresh_token") || strings.EqualFold(tt, "DPoP") {
		return Identity{}, invalidf("token_type %q is not a bearer access token", clip(tt))
	}
	// exp is optional here: the endpoint has already judged the token
	// active, and the checks only guard against a confused endpoint.
	return c.identity(now, v.cfg.Leeway, false, v.cfg.Audience, v.cfg.RequiredScope, v.cfg.UsernameClaim)
}

// introspect sends the request of RFC 7662 §2.1 and decodes the response.
func (v *IntrospectionVerifier) introspect(ctx context.Context, token string) (claims, error) {
	// The client's own Timeout covers only our default client; this covers
	// a caller-supplied one too.
	ctx, cancel := context.WithTimeout(ctx, v.cfg.Timeout)
	defer cancel()
	form := url.Values{"token": {token}, "token_type_hint": {"access_token"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, v.cfg.URL, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, fmt.Errorf("oauth: introspection: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", v.auth)
	resp, err := v.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("oauth: introspection: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("oauth: introspection endpoint answered %d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxIntrospectionResponse+1))
	if err != nil {
		return nil, fmt.Errorf("oauth: introspection response: %w", err)
	}
	if len(body) > MaxIntrospectionResponse {
		return nil, fmt.Errorf("oauth: introspection response larger than %d bytes", MaxIntrospectionResponse)
	}
	c, err := parseIntrospection(body)
	if err != nil {
		return nil, fmt.Errorf("oauth: introspection response: %w", err)
	}
	return c, nil
}

// parseIntrospection decodes the endpoint's JSON object (RFC 7662 §2.2).
// Its errors are the endpoint's fault, not the token's.
func parseIntrospection(body []byte) (claims, error) {
	obj, err := parseObject(body)
	if err != nil {
		return nil, err
	}
	return claims(obj), nil
}

func (v *IntrospectionVerifier) cached(key [sha256.Size]byte) (Identity, bool) {
	now := v.cfg.Now()
	v.mu.Lock()
	defer v.mu.Unlock()
	e, ok := v.cache[key]
	if !ok {
		return Identity{}, false
	}
	if !now.Before(e.until) {
		delete(v.cache, key)
		return Identity{}, false
	}
	id := e.id
	id.Scopes = slices.Clone(id.Scopes) // callers may modify theirs
	return id, true
}

func (v *IntrospectionVerifier) store(key [sha256.Size]byte, id Identity, now time.Time) {
	until := now.Add(v.cfg.CacheTTL)
	if !id.Expiry.IsZero() && id.Expiry.Before(until) {
		until = id.Expiry
	}
	if !now.Before(until) {
		return // accepted within the leeway only; not worth keeping
	}
	id.Scopes = slices.Clone(id.Scopes)
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.cache) >= MaxIntrospectionCacheEntries {
		for k, e := range v.cache {
			if !now.Before(e.until) {
				delete(v.cache, k)
			}
		}
	}
	if len(v.cache) >= MaxIntrospectionCacheEntries {
		// Still full of live entries: drop an arbitrary one (map order is
		// random), which costs its token one more request at worst.
		for k := range v.cache {
			delete(v.cache, k)
			break
		}
	}
	v.cache[key] = cacheEntry{id: id, until: until}
}
