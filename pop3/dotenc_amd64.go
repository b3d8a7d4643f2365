//go:build !purego

package pop3

import "golang.org/x/sys/cpu"

// haveBlockEncoder: encodeBlocks has a vector implementation here.
var haveBlockEncoder = cpu.X86.HasAVX2

//go:noescape
func encodeBlocksAVX2(dst, src []byte, prevCR bool) (nd, ns int)

func encodeBlocks(dst, src []byte, prevCR bool) (nd, ns int) {
	return encodeBlocksAVX2(dst, src, prevCR)
}
