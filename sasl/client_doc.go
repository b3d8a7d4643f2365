// Package sasl holds popbox's SASL mechanisms (RFC 4422), so that callers
// find every mechanism in one package. The client side (files client_*.go)
// is what pop3client.Client.Auth drives: PLAIN (RFC 4616), LOGIN
// (draft-murchison-sasl-login), OAUTHBEARER (RFC 7628), Google's XOAUTH2,
// and SCRAM-SHA-256 with and without channel binding (RFC 5802, RFC 7677,
// RFC 9266, RFC 5929). Strongest picks a mechanism from a server's offer.
//
// The server side (files server_*.go) is what pop3server offers: LOGIN,
// SCRAM-SHA-256 and SCRAM-SHA-256-PLUS (both channel binding types the
// client may name), OAUTHBEARER and XOAUTH2 (with RFC 7628's JSON error
// challenge), and EXTERNAL; PLAIN is go-sasl's. A server mechanism decides
// nothing about accounts itself: it calls back into the protocol server,
// which asks its backend. Every server step has a fuzz test.
//
// Every client implements github.com/emersion/go-sasl's Client interface
// (aliased here as Client), so they work with any go-sasl based protocol
// client too.
//
// Implementation notes:
//
//   - PLAIN and OAUTHBEARER build on go-sasl; LOGIN is our own because
//     go-sasl's sends the user name as an initial response and insists on the
//     exact challenge "Password:", which many POP3 servers do not send.
//   - SCRAM uses github.com/xdg-go/scram (SASLprep, nonce, proofs) behind a
//     wrapper that bounds what a hostile server can ask for: the iteration
//     count is capped at MaxSCRAMIterations, because PBKDF2 runs that many
//     rounds on the client before the server has proved anything.
//   - Mechanisms whose server reports a failure inside the exchange
//     (OAUTHBEARER, XOAUTH2) answer the error challenge as their
//     specifications require, so that the server ends the exchange with its
//     own failure reply, and keep the decoded reason for Failure.
//   - SCRAM's server signature arrives as the last challenge (RFC 5034 §4:
//     POP3 has no "additional data with success"). ServerVerified reports
//     whether it was seen and checked; a protocol client must call it after
//     the server's success reply, or it accepts a server that never proved
//     it knows the password.
//   - No client ever logs or formats a password or token into an error.
package sasl
