package lmtp

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Errors a UserResolver returns; the server tests them with errors.Is.
var (
	// ErrUnknownRecipient: no account receives mail for the address.
	// RCPT is refused with 550 5.1.1 (RFC 3463 §3.2, "bad destination
	// mailbox address") and the MTA bounces.
	ErrUnknownRecipient = errors.New("lmtp: unknown recipient")
	// ErrBadAddress: the address is one no account can have (empty local
	// part, control characters, longer than RFC 5321 allows). RCPT is
	// refused with 553 5.1.3 and MAIL with 553 5.1.7.
	ErrBadAddress = errors.New("lmtp: bad address syntax")
)

// UserResolver maps an envelope recipient to the user whose mailbox
// receives the message.
type UserResolver interface {
	// ResolveRecipient returns the user name for addr, the RCPT TO address
	// as go-smtp parsed it ("local@domain", a quoted local part already
	// unquoted). An error wrapping ErrUnknownRecipient or ErrBadAddress
	// refuses the recipient for good; any other error refuses it for now
	// (451), so that a user database that is down makes the MTA retry
	// rather than bounce.
	ResolveRecipient(ctx context.Context, addr string) (user string, err error)
}

// AddressResolver is the UserResolver popbox uses: it tries a few user
// names derived from the address, most specific first, and returns the
// first one Lookup knows.
//
// For "Alice+news@Example.org" with Delimiters "+" the names tried are
// "alice+news@example.org", "alice+news", "alice@example.org", "alice".
// Without Delimiters (the default) only the first two: `popbox deliver`
// takes its user name verbatim and strips nothing, and LMTP does the same
// unless told otherwise. The whole address comes first because popbox
// user names may be addresses (userdb admits '@'); a site that names
// users by local part is served by the second. ASCII letters are
// lower-cased, as userdb.Canonical does; RFC 5321 §2.4 lets the receiving
// host decide how to treat the case of local parts.
type AddressResolver struct {
	// Lookup returns the canonical name of the account called name, or an
	// error wrapping ErrUnknownRecipient when there is none (for
	// userdb: ErrNotFound and ErrInvalidName). Other errors are temporary.
	Lookup func(ctx context.Context, name string) (user string, err error)
	// Delimiters is a set of characters that each start an address
	// extension, as Postfix's recipient_delimiter: with "+-", "bob-lists"
	// and "bob+x" both reach "bob" when no account has the longer name.
	// Empty: no extension is stripped.
	Delimiters string
}

// ResolveRecipient implements UserResolver.
func (r AddressResolver) ResolveRecipient(ctx context.Context, addr string) (string, error) {
	names, err := recipientNames(addr, r.Delimiters)
	if err != nil {
		return "", err
	}
	for _, name := range names {
		user, err := r.Lookup(ctx, name)
		if err == nil {
			return user, nil
		}
		if !errors.Is(err, ErrUnknownRecipient) {
			return "", fmt.Errorf("looking up %q: %w", name, err)
		}
	}
	return "", fmt.Errorf("%w: <%s>", ErrUnknownRecipient, addr)
}

// maxPath is RFC 5321 §4.5.3.1.3's limit on a reverse- or forward-path,
// 256 octets with the angle brackets, so 254 without.
const maxPath = 254

// checkAddress refuses what no account can be named after and what must
// not reach a header field: Return-Path and Delivered-To carry these
// addresses into the stored message, so a CR or LF (go-smtp's parser lets
// a quoted local part carry any byte but LF) would let a client forge
// header lines.
func checkAddress(addr string) error {
	if len(addr) > maxPath {
		return fmt.Errorf("%w: longer than %d octets", ErrBadAddress, maxPath)
	}
	for i := 0; i < len(addr); i++ {
		if c := addr[i]; c < 0x20 || c == 0x7f {
			return fmt.Errorf("%w: control character %#02x", ErrBadAddress, c)
		}
	}
	return nil
}

// recipientNames returns the user names to look up for addr, most specific
// first, without duplicates. The local part is everything before the last
// '@' (an unquoted local part may itself contain '@'); an address without
// '@' is a bare local part.
func recipientNames(addr, delimiters string) ([]string, error) {
	if err := checkAddress(addr); err != nil {
		return nil, err
	}
	addr = lowerASCII(addr)
	local, domain := addr, ""
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		local, domain = addr[:i], addr[i+1:]
	}
	if local == "" {
		return nil, fmt.Errorf("%w: empty local part", ErrBadAddress)
	}
	if domain == "" && len(local) < len(addr) {
		return nil, fmt.Errorf("%w: empty domain", ErrBadAddress)
	}
	var names []string
	add := func(local string) {
		for _, n := range []string{local + "@" + domain, local} {
			// A delimiter of '@' could repeat a name; an empty domain has
			// only the bare local part.
			if !slices.Contains(names, n) && (domain != "" || n == local) {
				names = append(names, n)
			}
		}
	}
	add(local)
	// An extension needs a base before it: "+x" is a name, not an
	// extension of "" (Postfix reads it the same way).
	if i := strings.IndexAny(local, delimiters); delimiters != "" && i > 0 {
		add(local[:i])
	}
	return names, nil
}

// lowerASCII lower-cases ASCII letters only, like userdb.Canonical:
// Unicode case mapping would let "\u212A" (KELVIN SIGN) reach "k".
func lowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
