package proxyproto

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"net/netip"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

var cmpOpts = cmp.Options{cmpopts.EquateComparable(netip.AddrPort{}), cmpopts.EquateEmpty()}

// v2 builds a version 2 header with a correct length field.
func v2(verCmd, fam byte, parts ...[]byte) []byte {
	body := bytes.Join(parts, nil)
	b := append([]byte(sigV2), verCmd, fam)
	b = binary.BigEndian.AppendUint16(b, uint16(len(body)))
	return append(b, body...)
}

func tlv(t byte, v string) []byte {
	b := []byte{t}
	b = binary.BigEndian.AppendUint16(b, uint16(len(v)))
	return append(b, v...)
}

func ip4(s string) []byte        { a := netip.MustParseAddr(s).As4(); return a[:] }
func ip6(s string) []byte        { a := netip.MustParseAddr(s).As16(); return a[:] }
func port(p uint16) []byte       { return binary.BigEndian.AppendUint16(nil, p) }
func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// withCRC fills in a CRC32C TLV that ends the header and holds zeros,
// computed here independently of the package's code.
func withCRC(b []byte) []byte {
	sum := crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli))
	binary.BigEndian.PutUint32(b[len(b)-4:], sum)
	return b
}

var sslValue = string([]byte{0x07, 0, 0, 0, 0}) +
	string(tlv(0x21, "TLSv1.3")) + string(tlv(0x22, "alice")) + string(tlv(0x23, "TLS_AES_128_GCM_SHA256")) +
	string(tlv(0x24, "SHA256")) + string(tlv(0x25, "EC256")) + string(tlv(0x7f, "ignored"))

var validHeaders = []struct {
	name string
	in   []byte
	want *Header
}{
	{"v1 TCP4", []byte("PROXY TCP4 192.0.2.1 198.51.100.2 56324 995\r\n"),
		&Header{Version: 1, Command: CommandProxy, Source: ap("192.0.2.1:56324"), Destination: ap("198.51.100.2:995")}},
	{"v1 TCP6", []byte("PROXY TCP6 2001:db8::1 2001:DB8::2 0 65535\r\n"),
		&Header{Version: 1, Command: CommandProxy, Source: ap("[2001:db8::1]:0"), Destination: ap("[2001:db8::2]:65535")}},
	{"v1 TCP6 IPv4-mapped", []byte("PROXY TCP6 ::ffff:192.0.2.1 ::1 1 2\r\n"),
		&Header{Version: 1, Command: CommandProxy, Source: ap("[::ffff:192.0.2.1]:1"), Destination: ap("[::1]:2")}},
	{"v1 UNKNOWN", []byte("PROXY UNKNOWN\r\n"), &Header{Version: 1, Command: CommandProxy}},
	{"v1 UNKNOWN with addresses", []byte("PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"),
		&Header{Version: 1, Command: CommandProxy}},
	{"v1 UNKNOWN with junk", []byte("PROXY UNKNOWN \x00\r anything\r\n"), &Header{Version: 1, Command: CommandProxy}},
	{"v2 TCP4", v2(0x21, 0x11, ip4("192.0.2.1"), ip4("198.51.100.2"), port(56324), port(995)),
		&Header{Version: 2, Command: CommandProxy, Source: ap("192.0.2.1:56324"), Destination: ap("198.51.100.2:995")}},
	{"v2 TCP6", v2(0x21, 0x21, ip6("2001:db8::1"), ip6("2001:db8::2"), port(1), port(110)),
		&Header{Version: 2, Command: CommandProxy, Source: ap("[2001:db8::1]:1"), Destination: ap("[2001:db8::2]:110")}},
	{"v2 TCP6 IPv4-mapped", v2(0x21, 0x21, ip6("::ffff:192.0.2.1"), ip6("::ffff:192.0.2.2"), port(1), port(110)),
		&Header{Version: 2, Command: CommandProxy, Source: ap("[::ffff:192.0.2.1]:1"), Destination: ap("[::ffff:192.0.2.2]:110")}},
	{"v2 LOCAL", v2(0x20, 0x00), &Header{Version: 2, Command: CommandLocal}},
	{"v2 LOCAL ignores family and block", v2(0x20, 0xff, []byte("anything at all, even \x00\xff")),
		&Header{Version: 2, Command: CommandLocal}},
	{"v2 LOCAL with TCP4 addresses and TLVs", v2(0x20, 0x11, ip4("10.0.0.1"), ip4("10.0.0.2"), port(1), port(2), tlv(0x02, "x")),
		&Header{Version: 2, Command: CommandLocal}},
	{"v2 PROXY UNSPEC", v2(0x21, 0x00), &Header{Version: 2, Command: CommandProxy}},
	{"v2 PROXY UNSPEC with TLV", v2(0x21, 0x00, tlv(0x05, "id-1")),
		&Header{Version: 2, Command: CommandProxy, TLVs: []TLV{{TypeUniqueID, []byte("id-1")}}}},
	{"v2 UDP4", v2(0x21, 0x12, ip4("192.0.2.1"), ip4("198.51.100.2"), port(53), port(53)),
		&Header{Version: 2, Command: CommandProxy}},
	{"v2 UDP6", v2(0x21, 0x22, ip6("2001:db8::1"), ip6("2001:db8::2"), port(53), port(53)),
		&Header{Version: 2, Command: CommandProxy}},
	{"v2 UNIX stream", v2(0x21, 0x31, make([]byte, 216)), &Header{Version: 2, Command: CommandProxy}},
	{"v2 UNIX datagram with TLV", v2(0x21, 0x32, make([]byte, 216), tlv(0x02, "pop.example.org")),
		&Header{Version: 2, Command: CommandProxy, TLVs: []TLV{{TypeAuthority, []byte("pop.example.org")}}}},
	{"v2 TLVs", v2(0x21, 0x11, ip4("192.0.2.1"), ip4("198.51.100.2"), port(56324), port(995),
		tlv(0x01, "pop3"), tlv(0x02, "pop.example.org"), tlv(0x04, ""), tlv(0x20, sslValue), tlv(0xe0, "custom"), tlv(0x30, "ns")),
		&Header{Version: 2, Command: CommandProxy, Source: ap("192.0.2.1:56324"), Destination: ap("198.51.100.2:995"),
			TLVs: []TLV{
				{TypeALPN, []byte("pop3")}, {TypeAuthority, []byte("pop.example.org")}, {TypeNoop, nil},
				{TypeSSL, []byte(sslValue)}, {0xe0, []byte("custom")}, {TypeNetNS, []byte("ns")},
			}}},
	{"v2 CRC32C", withCRC(v2(0x21, 0x11, ip4("192.0.2.1"), ip4("198.51.100.2"), port(56324), port(995),
		tlv(0x02, "pop.example.org"), tlv(0x03, "\x00\x00\x00\x00"))),
		nil}, // TLVs filled in by init, the CRC value being computed
	{"v2 largest length", v2(0x21, 0x00, tlv(0x04, strings.Repeat("x", MaxV2Length-3))),
		&Header{Version: 2, Command: CommandProxy, TLVs: []TLV{{TypeNoop, []byte(strings.Repeat("x", MaxV2Length-3))}}}},
}

func init() {
	for i := range validHeaders {
		if validHeaders[i].want == nil {
			in := validHeaders[i].in
			validHeaders[i].want = &Header{Version: 2, Command: CommandProxy,
				Source: ap("192.0.2.1:56324"), Destination: ap("198.51.100.2:995"),
				TLVs: []TLV{{TypeAuthority, []byte("pop.example.org")}, {TypeCRC32C, in[len(in)-4:]}}}
		}
	}
}

func TestReadHeaderValid(t *testing.T) {
	const after = "+rest\r\nof the stream"
	for _, tt := range validHeaders {
		t.Run(tt.name, func(t *testing.T) {
			for _, small := range []bool{false, true} {
				var src io.Reader = bytes.NewReader(append(bytes.Clone(tt.in), after...))
				r := bufio.NewReader(src)
				if small {
					// The smallest bufio.Reader, fed a byte at a time.
					r = bufio.NewReaderSize(iotest.OneByteReader(src), 16)
				}
				got, err := ReadHeader(r)
				if err != nil {
					t.Fatalf("ReadHeader(%q): %v", tt.in, err)
				}
				if diff := cmp.Diff(tt.want, got, cmpOpts); diff != "" {
					t.Errorf("ReadHeader(%q) mismatch (-want +got):\n%s", tt.in, diff)
				}
				rest, _ := io.ReadAll(r)
				if string(rest) != after {
					t.Errorf("after the header: %q, want %q", rest, after)
				}
			}
		})
	}
}

// Every strict prefix of a valid header is a truncated one.
func TestReadHeaderTruncated(t *testing.T) {
	for _, tt := range validHeaders {
		t.Run(tt.name, func(t *testing.T) {
			for n := range len(tt.in) {
				_, err := ReadHeader(bufio.NewReader(bytes.NewReader(tt.in[:n])))
				want := io.ErrUnexpectedEOF
				wantKind := ErrInvalidHeader
				if n == 0 {
					want, wantKind = io.EOF, ErrNoHeader
				}
				if !errors.Is(err, want) || !errors.Is(err, wantKind) {
					t.Fatalf("ReadHeader(%q) = %v, want %v and %v", tt.in[:n], err, wantKind, want)
				}
			}
		})
	}
}

func TestReadHeaderInvalid(t *testing.T) {
	tcp4 := [][]byte{ip4("192.0.2.1"), ip4("198.51.100.2"), port(1), port(2)}
	tcp4With := func(extra ...[]byte) [][]byte { return append(append([][]byte(nil), tcp4...), extra...) }
	badCRC := withCRC(v2(0x21, 0x11, tcp4With(tlv(0x03, "\x00\x00\x00\x00"))...))
	badCRC[20] ^= 1
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"POP3 command", []byte("USER alice\r\n"), ErrNoHeader},
		{"TLS ClientHello", []byte("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"), ErrNoHeader},
		{"v1 signature off by one", []byte("PROXZ TCP4 1.2.3.4 5.6.7.8 1 2\r\n"), ErrNoHeader},
		{"lower-case v1", []byte("proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n"), ErrNoHeader},
		{"v2 signature off by one", []byte("\r\n\r\n\x00\r\nQUIX\n\x21\x11\x00\x00"), ErrNoHeader},
		{"CRLF only", []byte("\r\n\r\nUSER"), ErrNoHeader},

		{"v1 no space after PROXY", []byte("PROXYTCP4 1.2.3.4 5.6.7.8 1 2\r\n"), ErrInvalidHeader},
		{"v1 oversized line", []byte("PROXY UNKNOWN " + strings.Repeat("x", 200) + "\r\n"), ErrInvalidHeader},
		{"v1 CRLF at byte 108", []byte("PROXY UNKNOWN " + strings.Repeat("x", 92) + "\r\n"), ErrInvalidHeader},
		{"v1 bare LF", []byte("PROXY UNKNOWN\n"), ErrInvalidHeader},
		{"v1 TCP4 bare LF", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"), ErrInvalidHeader},
		{"v1 CR without LF", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX\r\n"), ErrInvalidHeader},
		{"v1 UNKNOWNX", []byte("PROXY UNKNOWNX\r\n"), ErrInvalidHeader},
		{"v1 unknown protocol", []byte("PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n"), ErrInvalidHeader},
		{"v1 double space", []byte("PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n"), ErrInvalidHeader},
		{"v1 trailing space", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n"), ErrInvalidHeader},
		{"v1 missing field", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"), ErrInvalidHeader},
		{"v1 extra field", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n"), ErrInvalidHeader},
		{"v1 port leading zero", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 0110 2\r\n"), ErrInvalidHeader},
		{"v1 port too big", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n"), ErrInvalidHeader},
		{"v1 port signed", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n"), ErrInvalidHeader},
		{"v1 port empty", []byte("PROXY TCP4 1.2.3.4 5.6.7.8  2\r\n"), ErrInvalidHeader},
		{"v1 port six digits", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 100000 2\r\n"), ErrInvalidHeader},
		{"v1 port hex", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 0x10 2\r\n"), ErrInvalidHeader},
		{"v1 IPv4 leading zero", []byte("PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n"), ErrInvalidHeader},
		{"v1 TCP4 with IPv6", []byte("PROXY TCP4 ::1 ::2 1 2\r\n"), ErrInvalidHeader},
		{"v1 TCP6 with IPv4", []byte("PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n"), ErrInvalidHeader},
		{"v1 mixed families", []byte("PROXY TCP6 ::1 5.6.7.8 1 2\r\n"), ErrInvalidHeader},
		{"v1 zone", []byte("PROXY TCP6 fe80::1%eth0 ::2 1 2\r\n"), ErrInvalidHeader},
		{"v1 host name", []byte("PROXY TCP4 localhost 5.6.7.8 1 2\r\n"), ErrInvalidHeader},

		{"v2 version 1", v2(0x11, 0x11, tcp4...), ErrInvalidHeader},
		{"v2 version 3", v2(0x31, 0x11, tcp4...), ErrInvalidHeader},
		{"v2 command 2", v2(0x22, 0x11, tcp4...), ErrInvalidHeader},
		{"v2 command 15", v2(0x2f, 0x11, tcp4...), ErrInvalidHeader},
		{"v2 family 4", v2(0x21, 0x41, tcp4...), ErrInvalidHeader},
		{"v2 transport 3", v2(0x21, 0x13, tcp4...), ErrInvalidHeader},
		{"v2 INET with UNSPEC transport", v2(0x21, 0x10, tcp4...), ErrInvalidHeader},
		{"v2 UNSPEC with STREAM", v2(0x21, 0x01), ErrInvalidHeader},
		{"v2 length over the limit", append([]byte(sigV2), 0x21, 0x00, 0x10, 0x01), ErrInvalidHeader},
		{"v2 length 65535", append([]byte(sigV2), 0x20, 0x00, 0xff, 0xff), ErrInvalidHeader},
		{"v2 TCP4 block too short", v2(0x21, 0x11, ip4("1.2.3.4"), ip4("5.6.7.8"), port(1), []byte{0}), ErrInvalidHeader},
		{"v2 TCP6 block of TCP4 size", v2(0x21, 0x21, tcp4...), ErrInvalidHeader},
		{"v2 UNIX block too short", v2(0x21, 0x31, make([]byte, 215)), ErrInvalidHeader},
		{"v2 one stray byte after TLVs", v2(0x21, 0x11, tcp4With(tlv(0x02, "a"), []byte{0x02})...), ErrInvalidHeader},
		{"v2 two stray bytes after TLVs", v2(0x21, 0x11, tcp4With([]byte{0x02, 0x00})...), ErrInvalidHeader},
		{"v2 TLV overruns by one", v2(0x21, 0x11, tcp4With([]byte{0x02, 0x00, 0x02, 'a'})...), ErrInvalidHeader},
		{"v2 TLV length 65535", v2(0x21, 0x11, tcp4With([]byte{0x02, 0xff, 0xff, 'a'})...), ErrInvalidHeader},
		{"v2 TLV in UNSPEC overruns", v2(0x21, 0x00, []byte{0xe0, 0x00, 0x09, 'a'}), ErrInvalidHeader},
		{"v2 CRC32C mismatch", badCRC, ErrInvalidHeader},
		{"v2 CRC32C of length 3", v2(0x21, 0x11, tcp4With(tlv(0x03, "abc"))...), ErrInvalidHeader},
		{"v2 CRC32C of length 5", v2(0x21, 0x11, tcp4With(tlv(0x03, "abcde"))...), ErrInvalidHeader},
		{"v2 two CRC32C", v2(0x21, 0x11, tcp4With(tlv(0x03, "abcd"), tlv(0x03, "abcd"))...), ErrInvalidHeader},
		{"v2 SSL TLV too short", v2(0x21, 0x11, tcp4With(tlv(0x20, "\x01\x00\x00\x00"))...), ErrInvalidHeader},
		{"v2 SSL sub-TLV overruns", v2(0x21, 0x11, tcp4With(tlv(0x20, "\x01\x00\x00\x00\x00\x21\x00\x05TLS"))...), ErrInvalidHeader},
		{"v2 SSL stray byte", v2(0x21, 0x11, tcp4With(tlv(0x20, "\x01\x00\x00\x00\x00\x21"))...), ErrInvalidHeader},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := bufio.NewReader(bytes.NewReader(tt.in))
			h, err := ReadHeader(r)
			if !errors.Is(err, tt.want) {
				t.Fatalf("ReadHeader(%q) = %+v, %v; want %v", tt.in, h, err, tt.want)
			}
			if errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("ReadHeader(%q) = %v, a truncation", tt.in, err)
			}
			if tt.want == ErrNoHeader {
				// Nothing consumed: a caller could still serve the bytes.
				rest, _ := io.ReadAll(r)
				if !bytes.Equal(rest, tt.in) {
					t.Errorf("after ErrNoHeader the reader holds %q, want %q", rest, tt.in)
				}
			}
		})
	}
}

// The v1 line is bounded: whatever follows, no more than 107 bytes are
// consumed.
func TestReadHeaderV1Bound(t *testing.T) {
	in := "PROXY UNKNOWN " + strings.Repeat("x", 1000)
	br := bytes.NewReader([]byte(in))
	r := bufio.NewReaderSize(br, 16)
	if _, err := ReadHeader(r); !errors.Is(err, ErrInvalidHeader) {
		t.Fatalf("ReadHeader = %v, want ErrInvalidHeader", err)
	}
	if consumed := len(in) - br.Len() - r.Buffered(); consumed != MaxV1Length {
		t.Errorf("consumed %d bytes, want %d", consumed, MaxV1Length)
	}
}

// A read error other than the end of input is passed on, not disguised as
// a malformed header.
func TestReadHeaderReadError(t *testing.T) {
	boom := errors.New("boom")
	for _, in := range []string{"", "PRO", "PROXY TCP4", sigV2, sigV2 + "\x21\x11\x00\x0c\x01"} {
		r := bufio.NewReader(io.MultiReader(strings.NewReader(in), iotest.ErrReader(boom)))
		_, err := ReadHeader(r)
		if !errors.Is(err, boom) || errors.Is(err, ErrInvalidHeader) || errors.Is(err, ErrNoHeader) {
			t.Errorf("ReadHeader(%q then an error) = %v, want boom alone", in, err)
		}
	}
}

func TestFormat(t *testing.T) {
	tests := []struct {
		name    string
		h       Header
		version int
		want    []byte
	}{
		{"v1 TCP4", Header{Command: CommandProxy, Source: ap("192.0.2.1:56324"), Destination: ap("198.51.100.2:995")}, 1,
			[]byte("PROXY TCP4 192.0.2.1 198.51.100.2 56324 995\r\n")},
		{"v1 TCP6", Header{Command: CommandProxy, Source: ap("[2001:db8:0:0::1]:1"), Destination: ap("[::ffff:1.2.3.4]:2")}, 1,
			[]byte("PROXY TCP6 2001:db8::1 ::ffff:1.2.3.4 1 2\r\n")},
		{"v1 UNKNOWN", Header{Version: 2, Command: CommandProxy}, 1, []byte("PROXY UNKNOWN\r\n")},
		{"v2 TCP4", Header{Command: CommandProxy, Source: ap("192.0.2.1:56324"), Destination: ap("198.51.100.2:995")}, 2,
			v2(0x21, 0x11, ip4("192.0.2.1"), ip4("198.51.100.2"), port(56324), port(995))},
		{"v2 TCP6", Header{Command: CommandProxy, Source: ap("[2001:db8::1]:1"), Destination: ap("[2001:db8::2]:2")}, 2,
			v2(0x21, 0x21, ip6("2001:db8::1"), ip6("2001:db8::2"), port(1), port(2))},
		{"v2 LOCAL", Header{Version: 1}, 2, v2(0x20, 0x00)},
		{"v2 UNSPEC with TLV", Header{Command: CommandProxy, TLVs: []TLV{{TypeAuthority, []byte("a")}}}, 2,
			v2(0x21, 0x00, tlv(0x02, "a"))},
		{"v2 CRC32C", Header{Command: CommandProxy, Source: ap("192.0.2.1:56324"), Destination: ap("198.51.100.2:995"),
			TLVs: []TLV{{TypeAuthority, []byte("pop.example.org")}, {TypeCRC32C, []byte("junk")}}}, 2,
			withCRC(v2(0x21, 0x11, ip4("192.0.2.1"), ip4("198.51.100.2"), port(56324), port(995),
				tlv(0x02, "pop.example.org"), tlv(0x03, "\x00\x00\x00\x00")))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.h.Format(tt.version)
			if err != nil {
				t.Fatalf("Format: %v", err)
			}
			if !bytes.Equal(got, tt.want) {
				t.Errorf("Format = %q, want %q", got, tt.want)
			}
		})
	}
}

// Format's output reads back as the header it was made from.
func TestFormatRoundTrip(t *testing.T) {
	for _, tt := range validHeaders {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tt.want.Format(tt.want.Version)
			if err != nil {
				t.Fatalf("Format: %v", err)
			}
			got, err := ReadHeader(bufio.NewReader(bytes.NewReader(b)))
			if err != nil {
				t.Fatalf("ReadHeader(%q): %v", b, err)
			}
			if diff := cmp.Diff(tt.want, got, cmpOpts); diff != "" {
				t.Errorf("round trip mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFormatErrors(t *testing.T) {
	src, dst := ap("192.0.2.1:1"), ap("198.51.100.2:2")
	tests := []struct {
		name    string
		h       Header
		version int
	}{
		{"version 0", Header{Command: CommandProxy}, 0},
		{"version 3", Header{Command: CommandProxy}, 3},
		{"v1 LOCAL", Header{Command: CommandLocal}, 1},
		{"v1 TLVs", Header{Command: CommandProxy, TLVs: []TLV{{TypeNoop, nil}}}, 1},
		{"only source", Header{Command: CommandProxy, Source: src}, 2},
		{"only destination", Header{Command: CommandProxy, Destination: dst}, 1},
		{"port without address", Header{Command: CommandProxy, Source: netip.AddrPortFrom(netip.Addr{}, 5)}, 2},
		{"mixed families", Header{Command: CommandProxy, Source: src, Destination: ap("[::1]:2")}, 2},
		{"IPv4 and IPv4-mapped", Header{Command: CommandProxy, Source: src, Destination: ap("[::ffff:1.2.3.4]:2")}, 1},
		{"zone", Header{Command: CommandProxy, Source: ap("[fe80::1%eth0]:1"), Destination: ap("[::1]:2")}, 2},
		{"LOCAL with addresses", Header{Command: CommandLocal, Source: src, Destination: dst}, 2},
		{"LOCAL with TLVs", Header{Command: CommandLocal, TLVs: []TLV{{TypeNoop, nil}}}, 2},
		{"command 2", Header{Command: 2}, 2},
		{"TLV too long", Header{Command: CommandProxy, TLVs: []TLV{{TypeNoop, make([]byte, 1<<16)}}}, 2},
		{"over MaxV2Length", Header{Command: CommandProxy, Source: src, Destination: dst,
			TLVs: []TLV{{TypeNoop, make([]byte, MaxV2Length-12-3+1)}}}, 2},
		{"CRC32C of length 2", Header{Command: CommandProxy, TLVs: []TLV{{TypeCRC32C, []byte("ab")}}}, 2},
		{"two CRC32C", Header{Command: CommandProxy, TLVs: []TLV{{TypeCRC32C, []byte("abcd")}, {TypeCRC32C, []byte("abcd")}}}, 2},
		{"bad SSL", Header{Command: CommandProxy, TLVs: []TLV{{TypeSSL, []byte{1}}}}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tt.h.Format(tt.version)
			if !errors.Is(err, ErrInvalidHeader) {
				t.Errorf("Format(%d) = %q, %v; want ErrInvalidHeader", tt.version, b, err)
			}
		})
	}
}

func TestHeaderTLVAccessors(t *testing.T) {
	h, err := ReadHeader(bufio.NewReader(bytes.NewReader(v2(0x21, 0x00,
		tlv(0x02, "pop.example.org"), tlv(0x20, sslValue), tlv(0x02, "second")))))
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := h.Authority(); !ok || got != "pop.example.org" {
		t.Errorf("Authority() = %q, %v", got, ok)
	}
	s, ok := h.SSL()
	want := SSL{Client: ClientSSL | ClientCertConn | ClientCertSess, Verify: 0,
		Version: "TLSv1.3", CN: "alice", Cipher: "TLS_AES_128_GCM_SHA256", SigAlg: "SHA256", KeyAlg: "EC256"}
	if !ok || s != want {
		t.Errorf("SSL() = %+v, %v; want %+v", s, ok, want)
	}
	if !s.TLS() || !s.CertVerified() {
		t.Errorf("TLS() = %v, CertVerified() = %v; want both", s.TLS(), s.CertVerified())
	}
	if _, ok := h.TLV(TypeALPN); ok {
		t.Error("TLV(TypeALPN) found one")
	}

	none := &Header{Command: CommandProxy}
	if _, ok := none.Authority(); ok {
		t.Error("Authority() on a header without TLVs")
	}
	if _, ok := none.SSL(); ok {
		t.Error("SSL() on a header without TLVs")
	}
	bad := &Header{TLVs: []TLV{{TypeSSL, []byte{1, 2}}}}
	if _, ok := bad.SSL(); ok {
		t.Error("SSL() on a malformed TLV")
	}
	unverified := SSL{Client: ClientSSL | ClientCertConn, Verify: 20}
	if !unverified.TLS() || unverified.CertVerified() {
		t.Errorf("unverified certificate: TLS() = %v, CertVerified() = %v", unverified.TLS(), unverified.CertVerified())
	}
	if (SSL{Client: ClientSSL}).CertVerified() {
		t.Error("CertVerified() without a certificate")
	}
}

// The checksum is the standard CRC32C (RFC 4960 Appendix B), as HAProxy
// computes it: check the table against the algorithm's known check value.
func TestCRC32CCheckValue(t *testing.T) {
	in := []byte("123456789abcd")
	if got := headerCRC(in, 9); got != crc32.Checksum([]byte("123456789\x00\x00\x00\x00"), crc32.MakeTable(crc32.Castagnoli)) {
		t.Errorf("headerCRC does not zero its field: 0x%08x", got)
	}
	if got := crc32.Checksum([]byte("123456789"), crc32.MakeTable(crc32.Castagnoli)); got != 0xe3069283 {
		t.Errorf("CRC32C check value 0x%08x, want 0xe3069283", got)
	}
}

func TestCommandString(t *testing.T) {
	for c, want := range map[Command]string{CommandLocal: "LOCAL", CommandProxy: "PROXY", 7: "Command(7)"} {
		if got := c.String(); got != want {
			t.Errorf("Command(%d).String() = %q, want %q", uint8(c), got, want)
		}
	}
}
