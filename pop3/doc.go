// Package pop3 holds the wire primitives that both ends of a POP3 connection
// share (RFC 1939, RFC 2449): a bounded line reader, command and response
// parsing, and the multi-line framing in both directions.
//
// Implementation notes:
//
//   - Stored messages keep whatever line ends they were delivered with. The
//     wire form is computed on the fly: every LF not already preceded by CR
//     becomes CRLF, a line starting with '.' gets one more '.' (RFC 1939 §3
//     byte-stuffing), and a message that does not end in a line end gets a
//     final CRLF before the terminating ".CRLF". WireCounter applies exactly
//     the same rules minus the stuffing, so a size computed at delivery time
//     equals the octets RETR later sends (RFC 1939 §5 STAT/LIST "exact size").
//   - DotWriter and DotReader stream: neither ever holds a whole message or
//     even a whole line, so a 100 MB message or a 1 MB line costs a fixed
//     buffer.
//   - DotEncoder is the same conversion appending to a byte slice, for a
//     reply prepared in memory. On amd64 with AVX2 both it and DotWriter
//     copy 32 bytes at a time between line ends (dotenc_amd64.s); a fuzz
//     test holds that path to the line-at-a-time Go code, which other CPUs
//     and the purego build tag use.
//   - LineReader is the only way commands and replies are read: it refuses a
//     line longer than its limit and skips the rest of that line, so the
//     session stays in step (textproto.Reader.ReadLine has no bound).
//   - This package never touches files or the network beyond the
//     io.Reader/io.Writer it is given.
package pop3
