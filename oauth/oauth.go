package oauth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Verifier checks a bearer token and returns the user it was issued for.
// Implementations are safe for concurrent use.
type Verifier interface {
	Verify(ctx context.Context, token string) (Identity, error)
}

// Identity is what a verified token establishes.
type Identity struct {
	Username string    // from the configured claim
	Expiry   time.Time // zero if unknown
	Scopes   []string
}

// ErrInvalidToken is wrapped by every error that is the token's fault: bad
// signature, expired or not yet valid, wrong issuer or audience, inactive,
// missing scope or user name, malformed. Any other error from a Verifier is
// a problem of the system, not a reason to reject the token.
var ErrInvalidToken = errors.New("oauth: invalid token")

// Bounds on untrusted input.
const (
	// MaxTokenLen is the longest token accepted. JWT access tokens are
	// usually 1 to 2 KiB; 16 KiB leaves room for large claim sets while
	// bounding the work one login can cause.
	MaxTokenLen = 16 << 10
	// MaxJWKSSize bounds the JWK Set file.
	MaxJWKSSize = 1 << 20
	// MaxIntrospectionResponse bounds the introspection endpoint's answer.
	MaxIntrospectionResponse = 64 << 10
	// maxUsernameLen bounds the user name a token may carry: RFC 5321
	// §4.5.3.1.3 limits an address path to 256 octets, and the name ends up
	// in logs and database lookups.
	maxUsernameLen = 256
)

// DefaultLeeway is the clock skew tolerated on exp, nbf and iat when a
// configuration leaves Leeway zero.
const DefaultLeeway = 60 * time.Second

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidToken}, args...)...)
}

// clip shortens an attacker-chosen string for an error message; callers
// format it with %q, so control characters cannot reach a log line raw.
func clip(s string) string {
	const max = 40
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}

// parseObject decodes a JSON object into its members, refusing duplicate
// member names (RFC 7515 §5.2, RFC 7519 §4: a JWT with duplicate claim
// names may be rejected) and anything after the object. Keys are matched
// exactly later on, unlike encoding/json's case-insensitive struct fields,
// so "ISS" is never taken for "iss".
func parseObject(b []byte) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	t, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := t.(json.Delim); !ok || d != '{' {
		return nil, errors.New("not a JSON object")
	}
	m := map[string]json.RawMessage{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, ok := t.(string)
		if !ok {
			return nil, errors.New("malformed JSON object")
		}
		if _, dup := m[key]; dup {
			return nil, fmt.Errorf("duplicate member %q", clip(key))
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		m[key] = v
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON object")
	}
	return m, nil
}

// claims are the members of a JWT claims set or an introspection response
// (RFC 7662 §2.2 reuses the JWT claim names). Its methods report type
// errors as plain errors; callers decide whose fault they are.
type claims map[string]json.RawMessage

func isNull(raw json.RawMessage) bool {
	return string(bytes.TrimSpace(raw)) == "null"
}

// str returns a string member. null is a type error, not absence: the
// issuer wrote the member, and a checker must not mistake it for "".
func (c claims) str(name string) (s string, ok bool, err error) {
	raw, ok := c[name]
	if !ok {
		return "", false, nil
	}
	// encoding/json silently replaces invalid UTF-8; refuse it instead, so
	// that two different byte strings never compare equal.
	if isNull(raw) || !utf8.Valid(raw) || json.Unmarshal(raw, &s) != nil {
		return "", true, fmt.Errorf("%q is not a string", name)
	}
	return s, true, nil
}

// latestNumericDate is 9999-12-31T23:59:59Z: far enough, and small enough
// that the conversion to int64 nanoseconds cannot overflow.
const latestNumericDate = 253402300799

// numericDate returns a NumericDate member (RFC 7519 §2: seconds since the
// epoch, possibly fractional).
func (c claims) numericDate(name string) (t time.Time, ok bool, err error) {
	raw, ok := c[name]
	if !ok {
		return time.Time{}, false, nil
	}
	var f float64
	if isNull(raw) || json.Unmarshal(raw, &f) != nil || math.IsNaN(f) || f < 0 || f > latestNumericDate {
		return time.Time{}, true, fmt.Errorf("%q is not a NumericDate", name)
	}
	sec := math.Floor(f)
	return time.Unix(int64(sec), int64((f-sec)*1e9)).UTC(), true, nil
}

// strings returns a member that is a string or an array of strings, the
// two forms RFC 7519 §4.1.3 allows for "aud".
func (c claims) strings(name string) ([]string, error) {
	raw, ok := c[name]
	if !ok {
		return nil, nil
	}
	if !utf8.Valid(raw) || isNull(raw) {
		return nil, fmt.Errorf("%q is neither a string nor an array of strings", name)
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return []string{s}, nil
	}
	var list []*string // pointers, to tell null elements from ""
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, fmt.Errorf("%q is neither a string nor an array of strings", name)
	}
	out := make([]string, 0, len(list))
	for _, p := range list {
		if p == nil {
			return nil, fmt.Errorf("%q holds a null", name)
		}
		out = append(out, *p)
	}
	return out, nil
}

// scopes returns the token's scopes: "scope" is a space-separated string
// (RFC 8693 §4.2, RFC 7662 §2.2, RFC 9068 §2.2.3); "scp", a string or an
// array, is what Azure AD and Okta send instead.
func (c claims) scopes() ([]string, error) {
	var out []string
	s, _, err := c.str("scope")
	if err != nil {
		return nil, err
	}
	out = append(out, strings.Fields(s)...)
	scp, err := c.strings("scp")
	if err != nil {
		return nil, err
	}
	for _, s := range scp {
		out = append(out, strings.Fields(s)...)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// checkTimes applies exp, nbf and iat (RFC 7519 §4.1.4-4.1.6) with leeway
// for clock skew. exp is required when needExp.
func (c claims) checkTimes(now time.Time, leeway time.Duration, needExp bool) (exp time.Time, err error) {
	exp, ok, err := c.numericDate("exp")
	if err != nil {
		return time.Time{}, invalidf("%v", err)
	}
	if !ok && needExp {
		return time.Time{}, invalidf("no exp claim")
	}
	// RFC 7519 §4.1.4: the current time must be before exp.
	if ok && !now.Before(exp.Add(leeway)) {
		return time.Time{}, invalidf("expired at %s", exp.Format(time.RFC3339))
	}
	nbf, ok, err := c.numericDate("nbf")
	if err != nil {
		return time.Time{}, invalidf("%v", err)
	}
	if ok && now.Add(leeway).Before(nbf) {
		return time.Time{}, invalidf("not valid before %s", nbf.Format(time.RFC3339))
	}
	// A token issued in the future comes from a broken clock or a forger;
	// RFC 7519 §4.1.6 leaves the check to the application.
	iat, ok, err := c.numericDate("iat")
	if err != nil {
		return time.Time{}, invalidf("%v", err)
	}
	if ok && now.Add(leeway).Before(iat) {
		return time.Time{}, invalidf("issued in the future (%s)", iat.Format(time.RFC3339))
	}
	return exp, nil
}

// checkAudience requires want among the token's audiences (RFC 7519
// §4.1.3, RFC 7662 §2.2).
func (c claims) checkAudience(want string) error {
	aud, err := c.strings("aud")
	if err != nil {
		return invalidf("%v", err)
	}
	if !slices.Contains(aud, want) {
		return invalidf("audience does not include %q", want)
	}
	return nil
}

// username returns the user claim, refusing what cannot be a mailbox user
// name and would be dangerous in a log line or a later protocol layer.
func (c claims) username(name string) (string, error) {
	u, ok, err := c.str(name)
	if err != nil {
		return "", invalidf("%v", err)
	}
	if !ok || u == "" {
		return "", invalidf("no %q claim", name)
	}
	if len(u) > maxUsernameLen {
		return "", invalidf("claim %q longer than %d bytes", name, maxUsernameLen)
	}
	if strings.ContainsFunc(u, unicode.IsControl) {
		return "", invalidf("claim %q contains control characters", name)
	}
	return u, nil
}

// identity runs the checks common to both verifiers after the token's
// origin is established: times, audience, scope and user name.
func (c claims) identity(now time.Time, leeway time.Duration, needExp bool, audience, requiredScope, usernameClaim string) (Identity, error) {
	// RFC 7800 §3.1 "cnf" binds the token to a key the client must prove
	// it holds (DPoP, RFC 9449; mTLS, RFC 8705). SASL carries no such
	// proof, so accepting it as a bearer token would throw away the
	// protection the binding gives against a stolen token.
	if _, ok := c["cnf"]; ok {
		return Identity{}, invalidf("token is bound to a key (cnf)")
	}
	exp, err := c.checkTimes(now, leeway, needExp)
	if err != nil {
		return Identity{}, err
	}
	if audience != "" {
		if err := c.checkAudience(audience); err != nil {
			return Identity{}, err
		}
	}
	scopes, err := c.scopes()
	if err != nil {
		return Identity{}, invalidf("%v", err)
	}
	if requiredScope != "" && !slices.Contains(scopes, requiredScope) {
		return Identity{}, invalidf("scope %q not granted", requiredScope)
	}
	user, err := c.username(usernameClaim)
	if err != nil {
		return Identity{}, err
	}
	return Identity{Username: user, Expiry: exp, Scopes: scopes}, nil
}
