package pop3

// The conversion of a message to the wire form (DotEncoder) is most of
// what RETR costs the server, so on amd64 with AVX2 it has a vector fast
// path, encodeBlocks, written in assembly (dotenc_amd64.s). It copies the
// message 32 bytes at a time and stops only at line ends, where it puts the
// CR and the stuffed dot; the byte-at-a-time questions stay in Go.
//
// encodeBlocks(dst, src, prevCR) converts a prefix src[:ns] into dst[:nd]
// (dst is free space: its length is the room there is):
//   - an LF not preceded by CR (the byte before it in src, or prevCR for
//     src[0]) becomes CRLF;
//   - a '.' right after an LF is doubled. The caller has already stuffed
//     src[0] if it starts a line.
//
// It takes 32-byte blocks while src has 33 more bytes and dst 35 more
// bytes of room, so it may convert nothing. After it, src[ns] never needs
// stuffing (its line start was handled), and the state to go on with is
// lastCR = src[ns-1] == '\r'.

// minBlockInput is the input below which the fast path is not tried.
const minBlockInput = 128

// appendBlocks converts as much of p as the fast path takes, into dst's
// free space grown as needed, and returns dst and the rest of p. It is
// called with e.lineStart false (p[0]'s stuffing done).
func (e *DotEncoder) appendBlocks(dst, p []byte) ([]byte, []byte) {
	for len(p) >= minBlockInput {
		// Room for the input and one CR per 32 bytes; more lines than that
		// take another round.
		if need := len(p) + len(p)/32 + 64; cap(dst)-len(dst) < need {
			dst = append(dst[:cap(dst)], make([]byte, need)...)[:len(dst)]
		}
		nd, ns := encodeBlocks(dst[len(dst):cap(dst)], p, e.lastCR)
		if ns == 0 {
			break
		}
		dst = dst[:len(dst)+nd]
		e.lastCR = p[ns-1] == '\r'
		p = p[ns:]
	}
	return dst, p
}
