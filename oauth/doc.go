// Package oauth verifies the OAuth 2.0 bearer tokens (RFC 6750) that mail
// clients present over SASL OAUTHBEARER (RFC 7628) or XOAUTH2, and maps
// each to the user it was issued for.
//
// Two Verifiers are provided:
//
//   - JWKSVerifier checks self-contained JWT access tokens (RFC 7519,
//     RFC 9068) against a local JWK Set file (RFC 7517). It fetches
//     nothing: the operator, or a cron job, keeps the file current and the
//     server calls Reload, so a login never waits on the identity provider.
//   - IntrospectionVerifier asks the authorization server about each token
//     (RFC 7662), which also covers opaque tokens and revocation, at the
//     price of one HTTPS request per login (or a short cache).
//
// Errors are split in two so that a POP3 server can answer correctly: every
// problem with the token itself wraps ErrInvalidToken (-ERR [AUTH]); any
// other error is a problem of the system, such as an unreachable
// introspection endpoint (-ERR [SYS/TEMP], RFC 3206), and the client should
// try again later rather than throw its token away.
//
// Implementation notes:
//
//   - JWS parsing is our own and small: compact serialization only, strict
//     unpadded base64url, JSON objects with duplicate member names refused
//     (RFC 7515 §5.2 allows either refusing or taking the last; refusing
//     leaves no room for two parsers to disagree). Signature algorithms are
//     a fixed list of asymmetric ones; "none" and the HMAC family are never
//     accepted, since the verification key is public.
//   - The header's "jku", "jwk", "x5u" and "x5c" are ignored: keys come only
//     from the configured set, never from the token.
//   - Inputs are bounded: MaxTokenLen for tokens, MaxJWKSSize for the key
//     file, MaxIntrospectionResponse for the endpoint's answer.
//   - No error ever contains the token.
package oauth
