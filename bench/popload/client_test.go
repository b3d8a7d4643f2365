package main

import (
	"bufio"
	"bytes"
	"io"
	"testing"

	"github.com/popbox/popbox/pop3"
)

// FuzzSkip: skip, the fast path for RETR bodies, must find the same end
// and size as multi's line-by-line reading, wherever the reads split the
// reply.
func FuzzSkip(f *testing.F) {
	for _, s := range []string{
		"", ".", "..", ".x", "a\n.\nb", "a.b.c\n.d\n..e\n", ".\r\n.\r\n", "x\r\n.",
		"Subject: a.b\n\n. leading dot\nend.\n",
	} {
		f.Add([]byte(s), uint8(0))
		f.Add([]byte(s), uint8(1))
		f.Add([]byte(s), uint8(5))
	}
	f.Fuzz(func(t *testing.T, msg []byte, chunk uint8) {
		enc := pop3.NewDotEncoder()
		wire := enc.Close(enc.Append(nil, msg))
		wire = append(wire, "+OK next\r\n"...)
		read := func(useSkip bool) (int64, string) {
			var src io.Reader = bytes.NewReader(wire)
			if chunk > 0 {
				src = &chunkReader{b: wire, n: int(chunk)}
			}
			cl := &client{r: bufio.NewReaderSize(src, 16)}
			var n int64
			var err error
			if useSkip {
				n, err = cl.skip()
			} else {
				n, err = cl.multi(func([]byte) {})
			}
			if err != nil {
				t.Fatalf("skip=%t on %q: %v", useSkip, wire, err)
			}
			rest, _ := io.ReadAll(cl.r)
			return n, string(rest)
		}
		n1, rest1 := read(true)
		n2, rest2 := read(false)
		if n1 != n2 || rest1 != rest2 {
			t.Fatalf("on %q: skip gives %d and leaves %q, multi %d and %q", wire, n1, rest1, n2, rest2)
		}
		if rest1 != "+OK next\r\n" {
			t.Fatalf("on %q: %q left after the body", wire, rest1)
		}
	})
}

// chunkReader returns at most n bytes per Read.
type chunkReader struct {
	b []byte
	n int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	k := copy(p[:min(len(p), r.n)], r.b)
	r.b = r.b[k:]
	return k, nil
}
