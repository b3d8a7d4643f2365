package oauth

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const (
	testClientID     = "pop box:1" // needs form encoding (RFC 6749 §2.3.1)
	testClientSecret = "s3cr=t&"
)

// introspectionEndpoint is a fake RFC 7662 endpoint whose answer depends
// on the token.
type introspectionEndpoint struct {
	t        *testing.T
	now      func() time.Time
	requests atomic.Int32
}

func (e *introspectionEndpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e.requests.Add(1)
	// RFC 6749 §2.3.1: Basic credentials of the form-encoded ID and secret.
	id, secret, ok := r.BasicAuth()
	if !ok || id != "pop+box%3A1" || secret != "s3cr%3Dt%26" {
		w.Header().Set("WWW-Authenticate", `Basic realm="introspection"`)
		http.Error(w, `{"error":"invalid_client"}`, http.StatusUnauthorized)
		return
	}
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
		e.t.Errorf("request %s with Content-Type %q", r.Method, r.Header.Get("Content-Type"))
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	if err := r.ParseForm(); err != nil || r.PostForm.Get("token_type_hint") != "access_token" {
		e.t.Errorf("form %v, %v", r.PostForm, err)
	}
	now := e.now().Unix()
	active := func(extra string) string {
		return fmt.Sprintf(`{"active":true,"username":"alice@example.com","scope":"pop3 openid","aud":["mail","web"],"exp":%d%s}`, now+3600, extra)
	}
	w.Header().Set("Content-Type", "application/json")
	switch tok := r.PostForm.Get("token"); tok {
	case "good", "good2":
		fmt.Fprint(w, active(""))
	case "short-lived":
		fmt.Fprintf(w, `{"active":true,"username":"alice@example.com","exp":%d}`, now+30)
	case "no-exp":
		fmt.Fprint(w, `{"active":true,"username":"alice@example.com"}`)
	case "refresh":
		fmt.Fprint(w, `{"active":true,"username":"alice@example.com","token_type":"refresh_token"}`)
	case "dpop":
		fmt.Fprint(w, `{"active":true,"username":"alice@example.com","token_type":"DPoP","cnf":{"jkt":"0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}}`)
	case "cnf":
		fmt.Fprint(w, `{"active":true,"username":"alice@example.com","token_type":"Bearer","cnf":{"x5t#S256":"bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}}`)
	case "bearer":
		fmt.Fprint(w, `{"active":true,"username":"alice@example.com","token_type":"bearer"}`)
	case "inactive":
		fmt.Fprint(w, `{"active":false}`)
	case "expired":
		fmt.Fprintf(w, `{"active":true,"username":"alice@example.com","exp":%d}`, now-3600)
	case "not-yet":
		fmt.Fprintf(w, `{"active":true,"username":"alice@example.com","nbf":%d}`, now+3600)
	case "other-aud":
		fmt.Fprint(w, `{"active":true,"username":"alice@example.com","aud":"web"}`)
	case "no-user":
		fmt.Fprint(w, `{"active":true,"sub":"12345"}`)
	case "no-active":
		fmt.Fprint(w, `{"username":"alice@example.com"}`)
	case "active-string":
		fmt.Fprint(w, `{"active":"true","username":"alice@example.com"}`)
	case "not-json":
		fmt.Fprint(w, `<html>Service Unavailable</html>`)
	case "huge":
		fmt.Fprint(w, active(`,"pad":"`+strings.Repeat("x", MaxIntrospectionResponse)+`"`))
	case "server-error":
		http.Error(w, "oops", http.StatusInternalServerError)
	case "redirect":
		http.Redirect(w, r, "/elsewhere", http.StatusFound)
	case "slow":
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
		fmt.Fprint(w, active(""))
	default:
		fmt.Fprint(w, `{"active":false}`)
	}
}

func newEndpoint(t *testing.T, now func() time.Time) (*introspectionEndpoint, *httptest.Server) {
	e := &introspectionEndpoint{t: t, now: now}
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return e, srv
}

func TestIntrospectionVerifier(t *testing.T) {
	_, srv := newEndpoint(t, testNow)
	alice := Identity{Username: "alice@example.com", Expiry: testNow().Add(time.Hour), Scopes: []string{"openid", "pop3"}}
	tests := []struct {
		name    string
		cfg     func(*IntrospectionConfig)
		token   string
		want    Identity
		invalid bool // the error must wrap ErrInvalidToken
		sysErr  bool // the error must not
	}{
		{name: "active", token: "good", want: alice},
		{name: "active without exp", token: "no-exp", want: Identity{Username: "alice@example.com"}},
		{name: "audience configured", cfg: func(c *IntrospectionConfig) { c.Audience = "mail" }, token: "good", want: alice},
		{name: "scope required", cfg: func(c *IntrospectionConfig) { c.RequiredScope = "pop3" }, token: "good", want: alice},
		{name: "other user claim", cfg: func(c *IntrospectionConfig) { c.UsernameClaim = "sub" }, token: "no-user",
			want: Identity{Username: "12345"}},

		{name: "token_type bearer", token: "bearer", want: Identity{Username: "alice@example.com"}},
		{name: "inactive", token: "inactive", invalid: true},
		{name: "refresh token", token: "refresh", invalid: true},
		{name: "DPoP token", token: "dpop", invalid: true},
		{name: "mTLS-bound token", token: "cnf", invalid: true},
		{name: "unknown token", token: "whatever", invalid: true},
		{name: "expired though active", token: "expired", invalid: true},
		{name: "not yet valid", token: "not-yet", invalid: true},
		{name: "wrong audience", cfg: func(c *IntrospectionConfig) { c.Audience = "mail" }, token: "other-aud", invalid: true},
		{name: "scope missing", cfg: func(c *IntrospectionConfig) { c.RequiredScope = "imap" }, token: "good", invalid: true},
		{name: "no user name", token: "no-user", invalid: true},
		{name: "empty token", token: "", invalid: true},
		{name: "token too long", token: strings.Repeat("a", MaxTokenLen+1), invalid: true},

		{name: "wrong client credentials", cfg: func(c *IntrospectionConfig) { c.ClientSecret = "wrong" }, token: "good", sysErr: true},
		{name: "server error", token: "server-error", sysErr: true},
		{name: "redirect not followed", token: "redirect", sysErr: true},
		{name: "no active member", token: "no-active", sysErr: true},
		{name: "active not a boolean", token: "active-string", sysErr: true},
		{name: "not JSON", token: "not-json", sysErr: true},
		{name: "huge body", token: "huge", sysErr: true},
		{name: "slow endpoint", cfg: func(c *IntrospectionConfig) { c.Timeout = 100 * time.Millisecond }, token: "slow", sysErr: true},
		{name: "slow endpoint, own client", cfg: func(c *IntrospectionConfig) {
			c.Timeout = 100 * time.Millisecond
			c.HTTPClient = &http.Client{}
		}, token: "slow", sysErr: true},
		{name: "endpoint down", cfg: func(c *IntrospectionConfig) { c.URL = "http://127.0.0.1:1/introspect" }, token: "good", sysErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := IntrospectionConfig{
				URL:          srv.URL + "/introspect",
				ClientID:     testClientID,
				ClientSecret: testClientSecret,
				Now:          testNow,
			}
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			v, err := NewIntrospectionVerifier(cfg)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			got, err := v.Verify(context.Background(), tt.token)
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("Verify took %v", d)
			}
			switch {
			case tt.invalid:
				if !errors.Is(err, ErrInvalidToken) {
					t.Fatalf("Verify = %+v, %v; want ErrInvalidToken", got, err)
				}
			case tt.sysErr:
				if err == nil || errors.Is(err, ErrInvalidToken) {
					t.Fatalf("Verify = %+v, %v; want a system error", got, err)
				}
			default:
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("Verify (-want +got):\n%s", diff)
				}
				return
			}
			t.Log(err)
			if tt.token != "" && strings.Contains(err.Error(), tt.token) && len(tt.token) > 8 {
				t.Errorf("error %q contains the token", err)
			}
		})
	}
}

func TestIntrospectionCanceled(t *testing.T) {
	_, srv := newEndpoint(t, testNow)
	v, err := NewIntrospectionVerifier(IntrospectionConfig{URL: srv.URL, ClientID: testClientID, ClientSecret: testClientSecret})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = v.Verify(ctx, "slow")
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrInvalidToken) {
		t.Errorf("Verify = %v, want the context's deadline only", err)
	}
}

// fakeClock is a settable time source for the cache tests.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestIntrospectionCache(t *testing.T) {
	type step struct {
		advance  time.Duration
		token    string
		ok       bool
		requests int32 // total so far
	}
	tests := []struct {
		name  string
		ttl   time.Duration
		steps []step
	}{
		{"no cache", 0, []step{
			{token: "good", ok: true, requests: 1},
			{token: "good", ok: true, requests: 2},
		}},
		{"cached for the TTL", 5 * time.Minute, []step{
			{token: "good", ok: true, requests: 1},
			{advance: time.Minute, token: "good", ok: true, requests: 1},
			{token: "good2", ok: true, requests: 2},
			{advance: 4 * time.Minute, token: "good", ok: true, requests: 3},
			{token: "good", ok: true, requests: 3},
		}},
		{"not beyond the token's expiry", 5 * time.Minute, []step{
			{token: "short-lived", ok: true, requests: 1},
			{advance: 29 * time.Second, token: "short-lived", ok: true, requests: 1},
			{advance: time.Second, token: "short-lived", ok: true, requests: 2},
		}},
		{"no expiry: TTL only", time.Minute, []step{
			{token: "no-exp", ok: true, requests: 1},
			{advance: 59 * time.Second, token: "no-exp", ok: true, requests: 1},
			{advance: time.Second, token: "no-exp", ok: true, requests: 2},
		}},
		{"inactive not cached", 5 * time.Minute, []step{
			{token: "inactive", requests: 1},
			{token: "inactive", requests: 2},
		}},
		{"rejected not cached", 5 * time.Minute, []step{
			{token: "no-user", requests: 1},
			{token: "no-user", requests: 2},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := &fakeClock{t: testNow()}
			e, srv := newEndpoint(t, clock.now)
			v, err := NewIntrospectionVerifier(IntrospectionConfig{
				URL: srv.URL, ClientID: testClientID, ClientSecret: testClientSecret,
				CacheTTL: tt.ttl, Now: clock.now,
			})
			if err != nil {
				t.Fatal(err)
			}
			for i, st := range tt.steps {
				clock.advance(st.advance)
				_, err := v.Verify(context.Background(), st.token)
				if (err == nil) != st.ok {
					t.Errorf("step %d: Verify(%q) = %v, want ok %v", i, st.token, err, st.ok)
				}
				if got := e.requests.Load(); got != st.requests {
					t.Errorf("step %d: %d requests, want %d", i, got, st.requests)
				}
			}
		})
	}
}

// A caller changing its Identity must not change what the cache returns
// next time.
func TestIntrospectionCacheCopies(t *testing.T) {
	_, srv := newEndpoint(t, testNow)
	v, err := NewIntrospectionVerifier(IntrospectionConfig{
		URL: srv.URL, ClientID: testClientID, ClientSecret: testClientSecret,
		CacheTTL: time.Minute, Now: testNow,
	})
	if err != nil {
		t.Fatal(err)
	}
	first, err := v.Verify(context.Background(), "good")
	if err != nil {
		t.Fatal(err)
	}
	first.Scopes[0] = "admin"
	second, err := v.Verify(context.Background(), "good")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"openid", "pop3"}, second.Scopes); diff != "" {
		t.Errorf("cached scopes (-want +got):\n%s", diff)
	}
}

func TestIntrospectionCacheBound(t *testing.T) {
	clock := &fakeClock{t: testNow()}
	v, err := NewIntrospectionVerifier(IntrospectionConfig{
		URL: "https://idp.example.com/introspect", ClientID: "x", CacheTTL: time.Minute, Now: clock.now,
	})
	if err != nil {
		t.Fatal(err)
	}
	id := Identity{Username: "alice"}
	for i := range MaxIntrospectionCacheEntries + 10 {
		v.store(sha256.Sum256(fmt.Appendf(nil, "token %d", i)), id, clock.now())
	}
	if n := len(v.cache); n != MaxIntrospectionCacheEntries {
		t.Errorf("%d cache entries, want %d", n, MaxIntrospectionCacheEntries)
	}
	// Once they have expired, a new entry sweeps them all out.
	clock.advance(time.Hour)
	v.store(sha256.Sum256([]byte("fresh")), id, clock.now())
	if n := len(v.cache); n != 1 {
		t.Errorf("%d cache entries after expiry, want 1", n)
	}
}

func TestIntrospectionConcurrent(t *testing.T) {
	_, srv := newEndpoint(t, testNow)
	v, err := NewIntrospectionVerifier(IntrospectionConfig{
		URL: srv.URL, ClientID: testClientID, ClientSecret: testClientSecret,
		CacheTTL: time.Minute, Now: testNow,
	})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			tok := []string{"good", "good2", "inactive"}[i%3]
			for range 10 {
				_, err := v.Verify(context.Background(), tok)
				if (err == nil) != (tok != "inactive") {
					t.Errorf("Verify(%q) = %v", tok, err)
				}
			}
		})
	}
	wg.Wait()
}

func TestNewIntrospectionVerifier(t *testing.T) {
	tests := []struct {
		url     string
		id      string
		wantErr bool
	}{
		{url: "https://idp.example.com/introspect", id: "pop"},
		{url: "http://127.0.0.1:8080/introspect", id: "pop"},
		{url: "http://[::1]:8080/introspect", id: "pop"},
		{url: "http://localhost/introspect", id: "pop"},
		{url: "http://idp.example.com/introspect", id: "pop", wantErr: true},
		{url: "http://10.0.0.1/introspect", id: "pop", wantErr: true},
		{url: "http://localhost.example.com/introspect", id: "pop", wantErr: true},
		{url: "https://user:pass@idp.example.com/introspect", id: "pop", wantErr: true},
		{url: "ftp://idp.example.com/introspect", id: "pop", wantErr: true},
		{url: "/introspect", id: "pop", wantErr: true},
		{url: "https://idp.example.com/introspect", id: "", wantErr: true},
		{url: "https://idp.example.com/%zz", id: "pop", wantErr: true},
	}
	for _, tt := range tests {
		_, err := NewIntrospectionVerifier(IntrospectionConfig{URL: tt.url, ClientID: tt.id})
		if (err != nil) != tt.wantErr {
			t.Errorf("NewIntrospectionVerifier(%q, %q) = %v, want error %v", tt.url, tt.id, err, tt.wantErr)
		}
	}
	if _, err := NewIntrospectionVerifier(IntrospectionConfig{URL: "https://idp.example.com/", ClientID: "pop", Timeout: -1}); err == nil {
		t.Error("negative Timeout accepted")
	}
}

// The request is what RFC 7662 §2.1 describes.
func TestIntrospectionRequest(t *testing.T) {
	var got http.Header
	var form map[string][]string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Clone()
		r.ParseForm()
		form = r.PostForm
		json.NewEncoder(w).Encode(map[string]any{"active": true, "username": "alice"})
	}))
	defer srv.Close()
	v, err := NewIntrospectionVerifier(IntrospectionConfig{URL: srv.URL, ClientID: "popbox", ClientSecret: "secret"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), "tok+en/="); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string][]string{"token": {"tok+en/="}, "token_type_hint": {"access_token"}}, form); diff != "" {
		t.Errorf("form (-want +got):\n%s", diff)
	}
	want := map[string]string{
		"Authorization": "Basic cG9wYm94OnNlY3JldA==",
		"Content-Type":  "application/x-www-form-urlencoded",
		"Accept":        "application/json",
	}
	for h, w := range want {
		if got.Get(h) != w {
			t.Errorf("%s: %q, want %q", h, got.Get(h), w)
		}
	}
}
