package proxyproto

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func FuzzReadHeader(f *testing.F) {
	for _, tt := range validHeaders {
		f.Add(tt.in)
		f.Add(append(bytes.Clone(tt.in), "USER alice\r\n"...))
	}
	f.Add([]byte("USER alice\r\n"))
	f.Add([]byte("PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n"))
	f.Add(v2(0x21, 0x00, tlv(0x20, "\x01\x00\x00\x00\x00\x21\x00\x05TLS")))
	f.Fuzz(func(t *testing.T, data []byte) {
		src := bytes.NewReader(data)
		r := bufio.NewReader(src)
		h, err := ReadHeader(r)
		consumed := len(data) - src.Len() - r.Buffered()
		if err != nil {
			if !errors.Is(err, ErrNoHeader) && !errors.Is(err, ErrInvalidHeader) {
				t.Fatalf("ReadHeader(%q): unclassified error %v", data, err)
			}
			if errors.Is(err, ErrNoHeader) && consumed != 0 {
				t.Fatalf("ReadHeader(%q): ErrNoHeader after consuming %d bytes", data, consumed)
			}
			if consumed > 16+MaxV2Length {
				t.Fatalf("ReadHeader(%q): consumed %d bytes before failing", data, consumed)
			}
			return
		}

		// Exactly the header is consumed: the v1 line up to its CRLF, the
		// v2 header by its length field.
		hdr := data[:consumed]
		switch h.Version {
		case 1:
			if consumed > MaxV1Length || !bytes.HasSuffix(hdr, []byte("\r\n")) || bytes.IndexByte(hdr, '\n') != consumed-1 {
				t.Fatalf("ReadHeader(%q): v1 header of %d bytes %q", data, consumed, hdr)
			}
		case 2:
			if consumed < 16 || consumed != 16+int(binary.BigEndian.Uint16(data[14:16])) {
				t.Fatalf("ReadHeader(%q): v2 header of %d bytes", data, consumed)
			}
		default:
			t.Fatalf("ReadHeader(%q): version %d", data, h.Version)
		}
		// ... and is all that is needed: the header alone reads the same,
		// and one byte less does not read.
		alone, err := ReadHeader(bufio.NewReader(bytes.NewReader(hdr)))
		if err != nil {
			t.Fatalf("ReadHeader(%q) alone: %v", hdr, err)
		}
		if diff := cmp.Diff(h, alone, cmpOpts); diff != "" {
			t.Fatalf("ReadHeader(%q) alone differs (-with rest +alone):\n%s", hdr, diff)
		}
		if _, err := ReadHeader(bufio.NewReader(bytes.NewReader(hdr[:consumed-1]))); !errors.Is(err, ErrInvalidHeader) {
			t.Fatalf("ReadHeader(%q) without its last byte: %v", hdr, err)
		}

		// Format accepts whatever ReadHeader returns and gives it back.
		b, err := h.Format(h.Version)
		if err != nil {
			t.Fatalf("Format(%+v) of ReadHeader(%q): %v", h, data, err)
		}
		src2 := bytes.NewReader(b)
		r2 := bufio.NewReader(src2)
		h2, err := ReadHeader(r2)
		if err != nil {
			t.Fatalf("ReadHeader(Format = %q): %v", b, err)
		}
		if diff := cmp.Diff(h, h2, cmpOpts); diff != "" {
			t.Fatalf("round trip of %q through %q (-read +reread):\n%s", data, b, diff)
		}
		if n := src2.Len() + r2.Buffered(); n != 0 {
			t.Fatalf("ReadHeader(Format = %q) left %d bytes", b, n)
		}
	})
}
