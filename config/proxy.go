package config

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// maxProxyHeaderTimeout bounds pop3.proxy_header_timeout: a load balancer
// sends its header as soon as it connects, and a longer wait only lets
// stuck connections from it pile up.
const maxProxyHeaderTimeout = time.Minute

// ProxyTrusted parses pop3.proxy_protocol_trusted: each entry is a CIDR
// network ("10.0.0.0/8") or a single address ("192.0.2.7", taken as /32 or
// /128). nil means the PROXY protocol is off.
func (p POP3) ProxyTrusted() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range p.ProxyProtocolTrusted {
		pfx, err := parseTrusted(s)
		if err != nil {
			return nil, err
		}
		out = append(out, pfx)
	}
	return out, nil
}

// parseTrusted is strict where a lenient reading would trust more or other
// peers than the administrator meant: host bits set ("10.0.0.1/8") are
// refused rather than masked, and IPv4-mapped IPv6 forms and zones, which
// proxyproto.Listener does not match against (it unmaps peers and ignores
// zones), are refused rather than left to match nothing.
func parseTrusted(s string) (netip.Prefix, error) {
	var pfx netip.Prefix
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR network such as \"10.0.0.0/8\"", s)
		}
		if p.Masked() != p {
			return netip.Prefix{}, fmt.Errorf("%q has bits set past the prefix length; did you mean %q?", s, p.Masked().String())
		}
		pfx = p
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR network such as \"10.0.0.0/8\"", s)
		}
		if a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q: zones are not supported, give the address alone", s)
		}
		pfx = netip.PrefixFrom(a, a.BitLen())
	}
	if pfx.Addr().Is4In6() {
		return netip.Prefix{}, fmt.Errorf("%q is an IPv4-mapped IPv6 address: write IPv4 networks in IPv4 form", s)
	}
	return pfx, nil
}

// checkProxy returns the problems of the PROXY protocol keys.
func (p POP3) checkProxy() []*Error {
	var errs []*Error
	for _, s := range p.ProxyProtocolTrusted {
		if _, err := parseTrusted(s); err != nil {
			errs = append(errs, &Error{Key: "pop3.proxy_protocol_trusted", Msg: err.Error(), Kind: ErrInvalidValue})
		}
	}
	if d := p.ProxyHeaderTimeout.Duration; d <= 0 || d > maxProxyHeaderTimeout {
		errs = append(errs, &Error{Key: "pop3.proxy_header_timeout",
			Msg: fmt.Sprintf("must be positive and at most %s, not %s", maxProxyHeaderTimeout, d), Kind: ErrInvalidValue})
	}
	return errs
}
