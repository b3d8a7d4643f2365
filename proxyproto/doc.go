// Package proxyproto implements the receiving side of HAProxy's PROXY
// protocol, versions 1 and 2, for servers behind a load balancer, and
// writes headers for tests and clients.
//
// The specification is "The PROXY protocol, Versions 1 & 2",
// https://www.haproxy.org/download/2.6/doc/proxy-protocol.txt; section
// numbers (§) in this package refer to it.
//
// A Listener wraps a net.Listener. Connections from its Trusted networks
// must start with a header; their RemoteAddr is then the original client's.
// Connections from anywhere else are passed through untouched:
//
//	ln, _ := net.Listen("tcp", ":995")
//	pl := &proxyproto.Listener{
//		Listener: ln,
//		Trusted:  []netip.Prefix{netip.MustParsePrefix("10.0.0.5/32")},
//	}
//	srv.ServeTLS(pl) // the server should call Handshake off its accept loop
//
// ReadHeader reads one header from a bufio.Reader, and Header.Format
// encodes one.
//
// # Implementation notes
//
// Which connections carry a header is configuration, never guessed from
// the bytes (§5): a header from an untrusted peer is data, so that no
// client can make itself look like another address, and a trusted peer
// that sends none is refused rather than taken at its word.
//
// The header is read lazily, by Conn.Handshake, which Read, Write,
// RemoteAddr, LocalAddr and ProxyHeader call. Listener.Accept therefore
// returns at once and a proxy connection that is slow to send its header
// holds up only its own goroutine, provided the server calls Handshake (or
// RemoteAddr) there and not in its accept loop. The read runs under
// Listener.HeaderTimeout as a read deadline, combined with any deadline the
// caller has set, which is restored afterwards.
//
// ReadHeader consumes exactly the header: the v1 line byte by byte up to
// its CRLF, the v2 header by its length field. The Conn reads the header
// through a bufio.Reader of its own, and returns the bytes that reader took
// in past the header (pipelined POP3 commands, a TLS ClientHello) before
// reading the connection again.
//
// Version 1 (§2.1) is parsed strictly: single spaces, no leading zeros in
// ports (nor, by netip.ParseAddr, in IPv4 octets), addresses of the family
// the protocol field names, CRLF within 107 bytes and never a lone LF. For
// UNKNOWN the rest of the line is ignored, as §2.1 requires.
//
// Version 2 (§2.2): the version nibble must be 2 and the command LOCAL or
// PROXY; other values are refused, as are family bytes other than the seven
// §2.2 lists. The length field is capped at MaxV2Length. For LOCAL the
// family is ignored and the whole block discarded, as §2.2 requires, so a
// LOCAL header yields no addresses and no TLVs. For PROXY, TCP over IPv4
// and IPv6 give the addresses; UDP and UNIX addresses are skipped, falling
// back to the real endpoints as §2.2 allows a receiver that does not
// support a family (this package serves TCP streams); UNSPEC has no
// address block, and its TLVs start right after the 16 fixed bytes.
//
// TLVs (§2.2) are split with bounds checks: each must fit in the header,
// and no stray bytes may follow the last. Unknown types, custom ones
// (§2.2.8) included, are kept in Header.TLVs but otherwise ignored.
// PP2_TYPE_SSL (§2.2.6) must hold its 5 fixed bytes and well-formed
// sub-TLVs. PP2_TYPE_CRC32C (§2.2.3) must be 4 bytes, at most once, and is
// verified: CRC32C of the whole header with the field zeroed, in network
// byte order, and a mismatch refuses the header. Header.Format fills it in.
//
// Header.Format refuses what ReadHeader would not read back unchanged: for
// every h that Format(v) accepts, ReadHeader gives back h with Version v
// (and the CRC32C value Format computed), and Format succeeds on every
// header ReadHeader returns. FuzzReadHeader checks the latter.
package proxyproto
