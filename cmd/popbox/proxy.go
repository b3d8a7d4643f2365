package main

import (
	"net"
	"net/netip"
	"time"

	"github.com/popbox/popbox/proxyproto"
)

// proxyListener puts l behind the PROXY protocol when pop3.proxy_protocol_trusted
// names load balancers, and returns it unchanged otherwise. For POP3S the
// header precedes the TLS ClientHello, which proxyproto.Conn handles; the
// server reads the header off its accept loop (pop3server/proxy.go).
// The Listener's own Logger stays unset: the server logs each failed
// header itself, once, with the proxy as peer.
func proxyListener(l net.Listener, trusted []netip.Prefix, headerTimeout time.Duration) net.Listener {
	if len(trusted) == 0 {
		return l
	}
	return &proxyproto.Listener{Listener: l, Trusted: trusted, HeaderTimeout: headerTimeout}
}
