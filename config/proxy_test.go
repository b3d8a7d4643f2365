package config

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestProxyTrusted(t *testing.T) {
	p := POP3{ProxyProtocolTrusted: []string{"10.0.0.0/8", "127.0.0.1", "2001:db8::/32", "::1", "192.0.2.7/32"}}
	got, err := p.ProxyTrusted()
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("127.0.0.1/32"),
		netip.MustParsePrefix("2001:db8::/32"), netip.MustParsePrefix("::1/128"),
		netip.MustParsePrefix("192.0.2.7/32"),
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("ProxyTrusted (-want +got):\n%s", diff)
	}
	if got, err := (POP3{}).ProxyTrusted(); err != nil || got != nil {
		t.Errorf("ProxyTrusted of an empty list = %v, %v; want nil, nil (off)", got, err)
	}
}

// TestProxyParseErrors: each bad entry is reported with the line of the
// key, and nothing that could widen or silently empty the trusted set is
// accepted.
func TestProxyParseErrors(t *testing.T) {
	tests := []struct {
		name string
		doc  []byte
		want string
	}{
		{"not an address",
			doc("[pop3]", `listen = "127.0.0.1:1110"`, `proxy_protocol_trusted = ["10.0.0.0/8", "haproxy.lan"]`),
			`popbox.toml:3: pop3.proxy_protocol_trusted: "haproxy.lan" is not an IP address or CIDR network such as "10.0.0.0/8"`},
		{"bad prefix length",
			doc("[pop3]", `proxy_protocol_trusted = ["10.0.0.0/33"]`),
			`popbox.toml:2: pop3.proxy_protocol_trusted: "10.0.0.0/33" is not an IP address or CIDR network such as "10.0.0.0/8"`},
		{"host bits",
			doc("[pop3]", `proxy_protocol_trusted = ["10.1.2.3/8"]`),
			`popbox.toml:2: pop3.proxy_protocol_trusted: "10.1.2.3/8" has bits set past the prefix length; did you mean "10.0.0.0/8"?`},
		{"mapped",
			doc("[pop3]", `proxy_protocol_trusted = ["::ffff:10.0.0.1"]`),
			`popbox.toml:2: pop3.proxy_protocol_trusted: "::ffff:10.0.0.1" is an IPv4-mapped IPv6 address: write IPv4 networks in IPv4 form`},
		{"zone",
			doc("[pop3]", `proxy_protocol_trusted = ["fe80::1%eth0"]`),
			`popbox.toml:2: pop3.proxy_protocol_trusted: "fe80::1%eth0": zones are not supported, give the address alone`},
		{"not a list",
			doc("[pop3]", `proxy_protocol_trusted = "10.0.0.0/8"`),
			`popbox.toml:2: pop3.proxy_protocol_trusted: expected an array of strings, found a string`},
		{"timeout zero",
			doc("", "[pop3]", `proxy_header_timeout = "0s"`),
			`popbox.toml:3: pop3.proxy_header_timeout: must be positive and at most 1m0s, not 0s`},
		{"timeout long",
			doc("[pop3]", `proxy_header_timeout = "2m"`),
			`popbox.toml:2: pop3.proxy_header_timeout: must be positive and at most 1m0s, not 2m0s`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.doc, "popbox.toml")
			if err == nil {
				t.Fatal("Parse succeeded")
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("Parse error\n got: %s\nwant: %s", got, tt.want)
			}
			var e *Error
			if !errors.As(err, &e) || e.Key == "" {
				t.Errorf("error %v is not an *Error with a key", err)
			}
		})
	}
}
