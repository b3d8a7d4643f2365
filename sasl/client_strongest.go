package sasl

import "strings"

// Strongest returns the strongest mechanism that the server offered and the
// caller allows, in canonical upper case, or "" when there is none. Names
// are compared case-insensitively (RFC 4422 §3.1 names are upper case, but
// servers vary). offered is typically Capabilities.SASL() from the server;
// allowed lists what the caller can use (say, no -PLUS without TLS, no
// OAUTHBEARER without a token); nil allows every mechanism this package
// implements. Mechanisms this package does not implement are never chosen.
func Strongest(offered []string, allowed []string) string {
	in := func(list []string, name string) bool {
		for _, s := range list {
			if strings.EqualFold(s, name) {
				return true
			}
		}
		return false
	}
	// Strongest first. SCRAM-PLUS proves the password and binds the
	// exchange to the TLS session; SCRAM never sends the password; the
	// bearer-token mechanisms send a revocable, scoped token; PLAIN and
	// LOGIN send the password itself, LOGIN in a non-standard exchange.
	strength := [...]string{SCRAMSHA256Plus, SCRAMSHA256, OAuthBearer, XOAuth2, Plain, Login}
	for _, m := range strength {
		if in(offered, m) && (allowed == nil || in(allowed, m)) {
			return m
		}
	}
	return ""
}
