package oauth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"time"
)

// DefaultJWTUsernameClaim is the claim a JWKSVerifier takes the user name
// from unless configured otherwise. "sub" rather than "email": RFC 7519
// §4.1.2 makes sub unique and (in practice) stable per issuer, while email
// is at many providers a profile field the user can edit, so trusting it
// by default would let a user log in as whatever address they typed. An
// operator whose provider controls the address sets UsernameClaim to
// "email" (or "preferred_username", "upn"...) explicitly.
const DefaultJWTUsernameClaim = "sub"

// JWKSConfig configures a JWKSVerifier.
type JWKSConfig struct {
	// File is the JWK Set (RFC 7517 §5) holding the issuer's public keys,
	// as served at its jwks_uri. At most MaxJWKSSize bytes.
	File string
	// Issuer must equal the token's "iss" claim exactly (RFC 7519 §4.1.1).
	// Required: without it any issuer whose key is in the set would do,
	// and key sets are easily merged by mistake.
	Issuer string
	// Audience, if set, must be among the token's "aud" values. If unset, a
	// token that names any audience is refused: RFC 7519 §4.1.3 requires
	// rejecting a token whose aud does not identify the recipient, and
	// otherwise a token the provider issued for some other service would
	// open mailboxes.
	Audience string
	// UsernameClaim names the claim holding the user name;
	// DefaultJWTUsernameClaim when empty. With "email", a token that says
	// "email_verified": false is refused (OpenID Connect Core §5.1).
	UsernameClaim string
	// RequiredScope, if set, must be among the token's scopes ("scope" or
	// "scp" claim).
	RequiredScope string
	// Leeway is the clock skew tolerated on exp, nbf and iat;
	// DefaultLeeway when zero.
	Leeway time.Duration
	// Now returns the current time; time.Now when nil.
	Now func() time.Time
}

// JWKSVerifier verifies JWT access tokens signed by a key of a local JWK
// Set file. Accepted algorithms: RS256, RS384, RS512, PS256, PS384, PS512,
// ES256, ES384, ES512, EdDSA (Ed25519). It is safe for concurrent use,
// including Verify during Reload.
type JWKSVerifier struct {
	cfg  JWKSConfig
	keys atomic.Pointer[keySet]
}

var _ Verifier = (*JWKSVerifier)(nil)

// NewJWKSVerifier checks cfg and loads the key set.
func NewJWKSVerifier(cfg JWKSConfig) (*JWKSVerifier, error) {
	if cfg.File == "" {
		return nil, errors.New("oauth: JWKS verifier needs a key set file")
	}
	if cfg.Issuer == "" {
		return nil, errors.New("oauth: JWKS verifier needs the issuer")
	}
	if cfg.Leeway < 0 {
		return nil, errors.New("oauth: negative leeway")
	}
	if cfg.Leeway == 0 {
		cfg.Leeway = DefaultLeeway
	}
	if cfg.UsernameClaim == "" {
		cfg.UsernameClaim = DefaultJWTUsernameClaim
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	v := &JWKSVerifier{cfg: cfg}
	if err := v.Reload(); err != nil {
		return nil, err
	}
	return v, nil
}

// Reload re-reads the key set file and, if it parses, replaces the keys in
// use at once; on error the previous keys stay in use. Key rotation is
// then: add the new key to the file, Reload, let the provider sign with
// it, and remove the old key once its tokens have expired.
func (v *JWKSVerifier) Reload() error {
	b, err := readFileMax(v.cfg.File, MaxJWKSSize)
	if err != nil {
		return fmt.Errorf("oauth: JWKS: %w", err)
	}
	set, err := parseJWKS(b)
	if err != nil {
		return fmt.Errorf("oauth: JWKS %s: %w", v.cfg.File, err)
	}
	v.keys.Store(set)
	return nil
}

// readFileMax reads a file of at most max bytes; larger is an error rather
// than a truncated read that might still parse.
func readFileMax(name string, max int64) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s is larger than %d bytes", name, max)
	}
	return b, nil
}

// Verify checks the token's signature and claims. Errors that are the
// token's fault wrap ErrInvalidToken; the only other error is ctx's.
func (v *JWKSVerifier) Verify(ctx context.Context, token string) (Identity, error) {
	if err := ctx.Err(); err != nil {
		return Identity{}, err
	}
	t, err := parseJWT(token)
	if err != nil {
		return Identity{}, err
	}
	alg, ok := lookupAlg(t.alg)
	if !ok {
		return Identity{}, invalidf("algorithm %q not accepted", clip(t.alg))
	}
	keys := v.keys.Load().candidates(t.kid, t.alg, alg)
	if len(keys) == 0 {
		if t.kid == "" {
			return Identity{}, invalidf("no kid, and no single %s key to use", t.alg)
		}
		return Identity{}, invalidf("no %s key with kid %q", t.alg, clip(t.kid))
	}
	verified := false
	for _, k := range keys {
		if verifySignature(alg, k.pub, []byte(t.signingInput), t.sig) == nil {
			verified = true
			break
		}
	}
	if !verified {
		return Identity{}, invalidf("%v", errBadSignature)
	}
	return v.checkClaims(t.payload)
}

func (v *JWKSVerifier) checkClaims(payload []byte) (Identity, error) {
	obj, err := parseObject(payload)
	if err != nil {
		return Identity{}, invalidf("claims: %v", err)
	}
	c := claims(obj)
	iss, _, err := c.str("iss")
	if err != nil {
		return Identity{}, invalidf("%v", err)
	}
	if iss != v.cfg.Issuer {
		return Identity{}, invalidf("issuer %q is not %q", clip(iss), v.cfg.Issuer)
	}
	if v.cfg.Audience == "" {
		if _, ok := obj["aud"]; ok {
			return Identity{}, invalidf("token names an audience and none is configured")
		}
	}
	if v.cfg.UsernameClaim == "email" {
		// Some providers (Cognito) send the boolean as a string.
		if raw, ok := obj["email_verified"]; ok && (string(raw) == "false" || string(raw) == `"false"`) {
			return Identity{}, invalidf("email address not verified")
		}
	}
	return c.identity(v.cfg.Now(), v.cfg.Leeway, true, v.cfg.Audience, v.cfg.RequiredScope, v.cfg.UsernameClaim)
}
