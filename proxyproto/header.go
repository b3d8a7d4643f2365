package proxyproto

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/netip"
	"strconv"
	"strings"
)

// ErrNoHeader is returned (wrapped) by ReadHeader when the input starts with
// neither protocol signature. Nothing has been consumed from the reader then.
var ErrNoHeader = errors.New("proxyproto: no PROXY protocol header")

// ErrInvalidHeader is returned (wrapped) by ReadHeader for a header that
// starts with a signature but is malformed or truncated (then it also wraps
// io.ErrUnexpectedEOF), and by Header.Format for a header it cannot encode.
var ErrInvalidHeader = errors.New("proxyproto: invalid PROXY protocol header")

const (
	// MaxV1Length is the longest version 1 line, CRLF included (§2.1).
	MaxV1Length = 107
	// MaxV2Length is the largest version 2 length field ReadHeader accepts:
	// the addresses and TLVs after the 16 fixed bytes. The spec allows
	// 65535. A header from HAProxy with every SSL sub-TLV, a unique ID and
	// an authority stays under 1 KiB; only trusted peers' headers are read,
	// so a generous bound costs little, while rejecting a legitimate one
	// would fail every connection from that proxy.
	MaxV2Length = 4096
)

const (
	sigV1       = "PROXY"
	sigV2       = "\r\n\r\n\x00\r\nQUIT\n"
	v2FixedLen  = 16
	tlvFixedLen = 3
	sslFixedLen = 5 // client flags and verify result before the sub-TLVs
)

// Version 2 address family and transport bytes (§2.2, the 14th byte).
const (
	famUnspec     = 0x00
	famTCP4       = 0x11
	famUDP4       = 0x12
	famTCP6       = 0x21
	famUDP6       = 0x22
	famUnixStream = 0x31
	famUnixDgram  = 0x32
)

// Command is the version 2 command (§2.2, the low nibble of the 13th byte).
// Version 1 headers always carry CommandProxy.
type Command uint8

const (
	// CommandLocal marks a connection the proxy made on its own behalf,
	// such as a health check: the real peer is the client.
	CommandLocal Command = 0x0
	// CommandProxy marks a relayed connection: the header's addresses (if
	// any) are the original client's.
	CommandProxy Command = 0x1
)

func (c Command) String() string {
	switch c {
	case CommandLocal:
		return "LOCAL"
	case CommandProxy:
		return "PROXY"
	}
	return "Command(" + strconv.Itoa(int(c)) + ")"
}

// TLVType is the type of a version 2 TLV (§2.2).
type TLVType uint8

// Registered TLV types (§2.2.1 to §2.2.7) and SSL sub-TLV types (§2.2.6).
const (
	TypeALPN      TLVType = 0x01
	TypeAuthority TLVType = 0x02
	TypeCRC32C    TLVType = 0x03
	TypeNoop      TLVType = 0x04
	TypeUniqueID  TLVType = 0x05
	TypeSSL       TLVType = 0x20
	TypeNetNS     TLVType = 0x30

	SubtypeSSLVersion TLVType = 0x21
	SubtypeSSLCN      TLVType = 0x22
	SubtypeSSLCipher  TLVType = 0x23
	SubtypeSSLSigAlg  TLVType = 0x24
	SubtypeSSLKeyAlg  TLVType = 0x25
)

// TLV is one type-length-value field of a version 2 header.
type TLV struct {
	Type  TLVType
	Value []byte
}

// Header is a PROXY protocol header.
type Header struct {
	// Version is 1 (text) or 2 (binary), as read.
	Version int
	Command Command
	// Source and Destination are the original client's and the address it
	// connected to. Both are valid only for TCP over IPv4 or IPv6 with
	// CommandProxy; otherwise both are the zero AddrPort, and the
	// connection's own endpoints are the ones to use.
	Source, Destination netip.AddrPort
	// TLVs are the version 2 TLVs in wire order, unknown types included.
	// Each Value aliases the header's buffer only, never the reader's.
	TLVs []TLV
}

// ReadHeader reads one PROXY protocol header, version 1 or 2, from r. It
// consumes exactly the header, no byte more, so r can go on to serve the
// protocol that follows; and it consumes at most MaxV1Length bytes for
// version 1 and 16+MaxV2Length for version 2.
//
// It returns an error wrapping ErrNoHeader (having consumed nothing) when r
// starts with neither signature, one wrapping ErrInvalidHeader for a
// malformed or truncated header, and read errors (such as a deadline)
// wrapped as they are.
func ReadHeader(r *bufio.Reader) (*Header, error) {
	version, err := detect(r)
	if err != nil {
		return nil, err
	}
	if version == 1 {
		return readV1(r)
	}
	return readV2(r)
}

// detect peeks at the signature byte by byte, so a connection that is not
// proxied is recognised from its first byte even if it then waits (a POP3
// client waits for the greeting), and nothing is consumed before the
// version is known. The v1 signature is the 5 letters §2.2 says identify it.
func detect(r *bufio.Reader) (int, error) {
	first, err := r.Peek(1)
	if len(first) == 0 {
		if errors.Is(err, io.EOF) {
			return 0, fmt.Errorf("%w: %w", ErrNoHeader, io.EOF)
		}
		return 0, readError(err)
	}
	sig, version := sigV1, 1
	if first[0] == sigV2[0] {
		sig, version = sigV2, 2
	}
	for n := 1; n <= len(sig); n++ {
		b, err := r.Peek(n)
		if len(b) < n {
			return 0, readError(err)
		}
		if b[n-1] != sig[n-1] {
			return 0, fmt.Errorf("%w: input starts with %q", ErrNoHeader, b)
		}
	}
	return version, nil
}

// readError classifies an error met inside a header: the end of input is a
// truncated header, anything else (a deadline, a closed connection) is kept
// for the caller to recognise.
func readError(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: truncated: %w", ErrInvalidHeader, io.ErrUnexpectedEOF)
	}
	return fmt.Errorf("proxyproto: reading header: %w", err)
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidHeader}, args...)...)
}

// readV1 reads the line byte by byte: the CRLF is its only delimiter (§2.1),
// and stopping right after it is how no byte past the header is consumed.
func readV1(r *bufio.Reader) (*Header, error) {
	var line [MaxV1Length]byte
	n := 0
	for n == 0 || line[n-1] != '\n' {
		if n == MaxV1Length {
			// §2.1: no CRLF within 107 characters makes the line invalid.
			return nil, invalid("v1 line without CRLF in %d bytes", MaxV1Length)
		}
		c, err := r.ReadByte()
		if err != nil {
			return nil, readError(err)
		}
		line[n] = c
		n++
	}
	// §2.1: a lone LF must not be taken for the end of the line.
	if n < 2 || line[n-2] != '\r' {
		return nil, invalid("v1 line ends in LF without CR")
	}
	return parseV1(string(line[:n-2]))
}

func parseV1(line string) (*Header, error) {
	rest, ok := strings.CutPrefix(line, sigV1+" ")
	if !ok {
		return nil, invalid("v1 line %q: no space after PROXY", line)
	}
	h := &Header{Version: 1, Command: CommandProxy}
	// §2.1: after UNKNOWN the receiver ignores everything up to the CRLF.
	if rest == "UNKNOWN" || strings.HasPrefix(rest, "UNKNOWN ") {
		return h, nil
	}
	// Exactly one space between fields (§2.1): Split turns any other
	// spacing into an empty field, which fails to parse.
	f := strings.Split(rest, " ")
	if len(f) != 5 {
		return nil, invalid("v1 line %q: want 6 fields", line)
	}
	var want4 bool
	switch f[0] {
	case "TCP4":
		want4 = true
	case "TCP6":
	default:
		return nil, invalid("v1 line %q: unknown protocol", line)
	}
	src, err1 := parseV1Addr(f[1], want4)
	dst, err2 := parseV1Addr(f[2], want4)
	sport, err3 := parseV1Port(f[3])
	dport, err4 := parseV1Port(f[4])
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return nil, invalid("v1 line %q: %w", line, err)
	}
	h.Source = netip.AddrPortFrom(src, sport)
	h.Destination = netip.AddrPortFrom(dst, dport)
	return h, nil
}

// parseV1Addr insists on the family the protocol field announces (§2.1).
// netip.ParseAddr already refuses IPv4 octets with leading zeros, which §2.1
// forbids for fear of octal.
func parseV1Addr(s string, want4 bool) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	switch {
	case err != nil:
		return netip.Addr{}, err
	case a.Zone() != "":
		return netip.Addr{}, fmt.Errorf("address %q has a zone", s)
	case want4 && !a.Is4(), !want4 && !a.Is6():
		return netip.Addr{}, fmt.Errorf("address %q of the wrong family", s)
	}
	return a, nil
}

// parseV1Port refuses signs and leading zeros (§2.1), which strconv alone
// would accept.
func parseV1Port(s string) (uint16, error) {
	if s == "" || len(s) > 5 || (s[0] == '0' && len(s) > 1) || strings.Trim(s, "0123456789") != "" {
		return 0, fmt.Errorf("bad port %q", s)
	}
	p, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("bad port %q", s)
	}
	return uint16(p), nil
}

// v2AddrLen is the size of the address block for a family byte, or -1 for
// the values §2.2 says receivers must reject.
func v2AddrLen(fam byte) int {
	switch fam {
	case famUnspec:
		return 0
	case famTCP4, famUDP4:
		return 12
	case famTCP6, famUDP6:
		return 36
	case famUnixStream, famUnixDgram:
		return 216
	}
	return -1
}

// readV2 reads the 16 fixed bytes, checks them before reading further (so
// a bad header is refused early and a huge length is never allocated), then
// reads exactly the announced length.
func readV2(r *bufio.Reader) (*Header, error) {
	var fixed [v2FixedLen]byte
	if _, err := io.ReadFull(r, fixed[:]); err != nil {
		return nil, readError(err)
	}
	// §2.2: the receiver must only accept version 2 ...
	if v := fixed[12] >> 4; v != 2 {
		return nil, invalid("v2 signature with version %d", v)
	}
	// ... and must drop connections with unassigned commands.
	cmd := Command(fixed[12] & 0x0f)
	if cmd != CommandLocal && cmd != CommandProxy {
		return nil, invalid("unknown command %#x", uint8(cmd))
	}
	fam := fixed[13]
	length := int(binary.BigEndian.Uint16(fixed[14:]))
	if length > MaxV2Length {
		return nil, invalid("length %d over the limit of %d", length, MaxV2Length)
	}
	addrLen := 0
	if cmd == CommandProxy {
		// For LOCAL the family "is ignored" (§2.2), whatever its value.
		if addrLen = v2AddrLen(fam); addrLen < 0 {
			return nil, invalid("address family and transport 0x%02x", fam)
		}
		if length < addrLen {
			return nil, invalid("length %d too short for family 0x%02x", length, fam)
		}
	}
	buf := make([]byte, v2FixedLen+length)
	copy(buf, fixed[:])
	// §2.2: the length field always says how much to skip, LOCAL included.
	if _, err := io.ReadFull(r, buf[v2FixedLen:]); err != nil {
		return nil, readError(err)
	}
	h := &Header{Version: 2, Command: cmd}
	if cmd == CommandLocal {
		// §2.2: LOCAL uses the real endpoints and discards the block;
		// without a family its TLVs cannot even be located.
		return h, nil
	}
	block := buf[v2FixedLen:]
	switch fam {
	case famTCP4:
		h.Source = netip.AddrPortFrom(netip.AddrFrom4([4]byte(block[0:4])), binary.BigEndian.Uint16(block[8:]))
		h.Destination = netip.AddrPortFrom(netip.AddrFrom4([4]byte(block[4:8])), binary.BigEndian.Uint16(block[10:]))
	case famTCP6:
		h.Source = netip.AddrPortFrom(netip.AddrFrom16([16]byte(block[0:16])), binary.BigEndian.Uint16(block[32:]))
		h.Destination = netip.AddrPortFrom(netip.AddrFrom16([16]byte(block[16:32])), binary.BigEndian.Uint16(block[34:]))
	}
	// UDP and UNIX addresses are skipped: this package serves TCP streams,
	// and §2.2 lets a receiver fall back to UNSPEC for the families it does
	// not support, keeping the real endpoints.
	tlvs, err := splitTLVs(block[addrLen:], "TLV")
	if err == nil {
		err = checkTLVs(tlvs)
	}
	if err != nil {
		return nil, err
	}
	off := v2FixedLen + addrLen
	for _, t := range tlvs {
		off += tlvFixedLen
		if t.Type == TypeCRC32C {
			if err := checkCRC(buf, off); err != nil {
				return nil, err
			}
		}
		off += len(t.Value)
	}
	h.TLVs = tlvs
	return h, nil
}

// splitTLVs splits b into TLVs (or SSL sub-TLVs), refusing any that
// overruns b. Values are capped slices, so that appending to one cannot
// overwrite the next.
func splitTLVs(b []byte, what string) ([]TLV, error) {
	var tlvs []TLV
	for off := 0; off < len(b); {
		if len(b)-off < tlvFixedLen {
			return nil, invalid("%d stray bytes after the last %s", len(b)-off, what)
		}
		t := TLVType(b[off])
		n := int(binary.BigEndian.Uint16(b[off+1:]))
		start := off + tlvFixedLen
		if n > len(b)-start {
			return nil, invalid("%s 0x%02x of length %d overruns by %d bytes", what, t, n, n-(len(b)-start))
		}
		tlvs = append(tlvs, TLV{Type: t, Value: b[start : start+n : start+n]})
		off = start + n
	}
	return tlvs, nil
}

// checkTLVs holds the rules shared by reading and Format, so that every
// header Format accepts reads back the same. Types without a structure
// of their own (custom ones included) are not looked into.
func checkTLVs(tlvs []TLV) error {
	crcs := 0
	for _, t := range tlvs {
		if len(t.Value) > 0xffff {
			return invalid("TLV 0x%02x of length %d", t.Type, len(t.Value))
		}
		switch t.Type {
		case TypeCRC32C:
			// §2.2.3: one 32-bit value; two would make "the" checksum
			// field ambiguous.
			if crcs++; crcs > 1 || len(t.Value) != 4 {
				return invalid("CRC32C TLV of length %d, or more than one", len(t.Value))
			}
		case TypeSSL:
			if _, err := parseSSL(t.Value); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkCRC applies §2.2.3: the checksum covers the whole header with its own
// field zeroed, and a mismatch makes the connection invalid.
func checkCRC(hdr []byte, at int) error {
	want := binary.BigEndian.Uint32(hdr[at:])
	if got := headerCRC(hdr, at); got != want {
		return invalid("CRC32C 0x%08x, computed 0x%08x", want, got)
	}
	return nil
}

// headerCRC is the CRC32C (Castagnoli, RFC 4960 Appendix B, as §2.2.3
// cites) of hdr with the four bytes at 'at' taken as zeros, without
// modifying hdr.
func headerCRC(hdr []byte, at int) uint32 {
	tab := crc32.MakeTable(crc32.Castagnoli) // the package caches this table
	crc := crc32.Update(0, tab, hdr[:at])
	crc = crc32.Update(crc, tab, []byte{0, 0, 0, 0})
	return crc32.Update(crc, tab, hdr[at+4:])
}

// SSLClient is the client field of a PP2_TYPE_SSL TLV (§2.2.6), a bit set.
type SSLClient uint8

const (
	// ClientSSL: the client connected over SSL/TLS.
	ClientSSL SSLClient = 0x01
	// ClientCertConn: the client presented a certificate on this connection.
	ClientCertConn SSLClient = 0x02
	// ClientCertSess: the client presented a certificate at least once in
	// the TLS session this connection belongs to.
	ClientCertSess SSLClient = 0x04
)

// SSL is the content of a PP2_TYPE_SSL TLV (§2.2.6): what the proxy knows of
// the TLS connection it terminated.
type SSL struct {
	Client SSLClient
	// Verify is zero when the client presented a certificate and it was
	// verified, non-zero otherwise.
	Verify uint32
	// The sub-TLVs, empty when absent.
	Version, CN, Cipher, SigAlg, KeyAlg string
}

// TLS reports whether the client spoke TLS to the proxy.
func (s SSL) TLS() bool { return s.Client&ClientSSL != 0 }

// CertVerified reports whether the client presented a certificate that the
// proxy verified.
func (s SSL) CertVerified() bool {
	return s.Client&(ClientCertConn|ClientCertSess) != 0 && s.Verify == 0
}

func parseSSL(v []byte) (SSL, error) {
	if len(v) < sslFixedLen {
		return SSL{}, invalid("SSL TLV of length %d, want at least %d", len(v), sslFixedLen)
	}
	s := SSL{Client: SSLClient(v[0]), Verify: binary.BigEndian.Uint32(v[1:])}
	sub, err := splitTLVs(v[sslFixedLen:], "SSL sub-TLV")
	if err != nil {
		return SSL{}, err
	}
	for _, t := range sub {
		// The first of each kind wins; a repeated one is not worth failing
		// the connection for.
		var dst *string
		switch t.Type {
		case SubtypeSSLVersion:
			dst = &s.Version
		case SubtypeSSLCN:
			dst = &s.CN
		case SubtypeSSLCipher:
			dst = &s.Cipher
		case SubtypeSSLSigAlg:
			dst = &s.SigAlg
		case SubtypeSSLKeyAlg:
			dst = &s.KeyAlg
		default:
			continue
		}
		if *dst == "" {
			*dst = string(t.Value)
		}
	}
	return s, nil
}

// TLV returns the value of the first TLV of type t.
func (h *Header) TLV(t TLVType) ([]byte, bool) {
	for _, tlv := range h.TLVs {
		if tlv.Type == t {
			return tlv.Value, true
		}
	}
	return nil, false
}

// Authority returns the PP2_TYPE_AUTHORITY TLV (§2.2.2): the host name the
// client asked for, its TLS SNI when it used TLS.
func (h *Header) Authority() (string, bool) {
	v, ok := h.TLV(TypeAuthority)
	return string(v), ok
}

// SSL returns the PP2_TYPE_SSL TLV (§2.2.6); ok is false when the header has
// none (or, for a header not made by ReadHeader, a malformed one).
func (h *Header) SSL() (s SSL, ok bool) {
	v, ok := h.TLV(TypeSSL)
	if !ok {
		return SSL{}, false
	}
	s, err := parseSSL(v)
	return s, err == nil
}

// addrFamily says how Source and Destination can be encoded: 0 for neither
// set, 4 or 6 for both of that family.
func (h *Header) addrFamily() (int, error) {
	s, d := h.Source, h.Destination
	switch {
	case !s.IsValid() && !d.IsValid():
		if s.Port() != 0 || d.Port() != 0 {
			return 0, invalid("port without an address")
		}
		return 0, nil
	case !s.IsValid() || !d.IsValid():
		return 0, invalid("only one of source and destination set")
	case s.Addr().Zone() != "" || d.Addr().Zone() != "":
		return 0, invalid("address with a zone")
	case s.Addr().Is4() && d.Addr().Is4():
		return 4, nil
	case s.Addr().Is6() && d.Addr().Is6():
		return 6, nil
	}
	return 0, invalid("source %v and destination %v of different families", s, d)
}

// Format encodes h as a header of the given version (1 or 2), whatever
// h.Version says. It refuses, with an error wrapping ErrInvalidHeader, what
// ReadHeader would not give back unchanged: version 1 carries neither LOCAL
// nor TLVs, a LOCAL header carries no addresses or TLVs, and the addresses
// must be both set, of one family and without zone. It fills in the value
// of a PP2_TYPE_CRC32C TLV, which must be 4 bytes long.
func (h *Header) Format(version int) ([]byte, error) {
	fam, err := h.addrFamily()
	if err != nil {
		return nil, err
	}
	switch version {
	case 1:
		return h.formatV1(fam)
	case 2:
		return h.formatV2(fam)
	}
	return nil, invalid("version %d", version)
}

func (h *Header) formatV1(fam int) ([]byte, error) {
	if h.Command != CommandProxy {
		return nil, invalid("version 1 has no command %v", h.Command)
	}
	if len(h.TLVs) > 0 {
		return nil, invalid("version 1 has no TLVs")
	}
	if fam == 0 {
		return []byte("PROXY UNKNOWN\r\n"), nil
	}
	return fmt.Appendf(nil, "PROXY TCP%d %s %s %d %d\r\n",
		fam, h.Source.Addr(), h.Destination.Addr(), h.Source.Port(), h.Destination.Port()), nil
}

func (h *Header) formatV2(fam int) ([]byte, error) {
	var famByte byte
	var addrLen int
	switch h.Command {
	case CommandLocal:
		if fam != 0 || len(h.TLVs) > 0 {
			return nil, invalid("LOCAL header with addresses or TLVs")
		}
	case CommandProxy:
		switch fam {
		case 4:
			famByte, addrLen = famTCP4, 12
		case 6:
			famByte, addrLen = famTCP6, 36
		}
	default:
		return nil, invalid("command %v", h.Command)
	}
	if err := checkTLVs(h.TLVs); err != nil {
		return nil, err
	}
	length := addrLen
	for _, t := range h.TLVs {
		length += tlvFixedLen + len(t.Value)
	}
	if length > MaxV2Length {
		return nil, invalid("length %d over the limit of %d", length, MaxV2Length)
	}
	b := make([]byte, 0, v2FixedLen+length)
	b = append(b, sigV2...)
	b = append(b, 0x20|byte(h.Command), famByte)
	b = binary.BigEndian.AppendUint16(b, uint16(length))
	src, dst := h.Source.Addr(), h.Destination.Addr()
	switch fam {
	case 4:
		b = append(b, src.AsSlice()...)
		b = append(b, dst.AsSlice()...)
	case 6:
		s16, d16 := src.As16(), dst.As16()
		b = append(b, s16[:]...)
		b = append(b, d16[:]...)
	}
	if fam != 0 {
		b = binary.BigEndian.AppendUint16(b, h.Source.Port())
		b = binary.BigEndian.AppendUint16(b, h.Destination.Port())
	}
	crcAt := -1
	for _, t := range h.TLVs {
		b = append(b, byte(t.Type))
		b = binary.BigEndian.AppendUint16(b, uint16(len(t.Value)))
		if t.Type == TypeCRC32C {
			crcAt = len(b)
		}
		b = append(b, t.Value...)
	}
	if crcAt >= 0 {
		binary.BigEndian.PutUint32(b[crcAt:], headerCRC(b, crcAt))
	}
	return b, nil
}
