//go:build !purego

#include "textflag.h"

// func encodeBlocksAVX2(dst, src []byte, prevCR bool) (nd, ns int)
//
// The fast path of DotEncoder.Append; see encodeBlocks in dotenc.go for the
// contract. Register use:
//	DI dst base, R8 room in dst (its len), SI src base, R9 len(src),
//	R10 prevCR, AX i (src offset), BX j (dst offset), Y1 32 x '\n'.
TEXT ·encodeBlocksAVX2(SB), NOSPLIT, $0-72
	MOVQ    dst_base+0(FP), DI
	MOVQ    dst_len+8(FP), R8
	MOVQ    src_base+24(FP), SI
	MOVQ    src_len+32(FP), R9
	MOVBQZX prevCR+48(FP), R10
	XORQ    AX, AX
	XORQ    BX, BX
	MOVQ    $0x0a, CX
	MOVQ    CX, X1
	VPBROADCASTB X1, Y1

loop:
	// A block is taken only with a byte of src after it (what follows a
	// line end decides its stuffing) and room in dst for the block and
	// the CR and dot a line end can add.
	LEAQ 33(AX), DX
	CMPQ DX, R9
	JA   done
	LEAQ 35(BX), DX
	CMPQ DX, R8
	JA   done
	VMOVDQU   (SI)(AX*1), Y0
	VMOVDQU   Y0, (DI)(BX*1)
	VPCMPEQB  Y1, Y0, Y2
	VPMOVMSKB Y2, DX
	TESTL     DX, DX
	JNZ       lineEnd
	ADDQ      $32, AX
	ADDQ      $32, BX
	JMP       loop

lineEnd:
	// The block's bytes before the first LF are in place; the rest of the
	// store is overwritten from here on.
	BSFL DX, DX
	ADDQ DX, AX
	ADDQ DX, BX
	TESTQ AX, AX
	JZ    atStart
	MOVB  -1(SI)(AX*1), CX
	CMPB  CX, $0x0d
	JEQ   haveCR
	JMP   addCR

atStart:
	TESTQ R10, R10
	JNZ   haveCR

addCR:
	MOVB $0x0d, (DI)(BX*1)
	INCQ BX

haveCR:
	MOVB $0x0a, (DI)(BX*1)
	INCQ BX
	INCQ AX
	// RFC 1939 §3: a line that starts with '.' gets another one.
	MOVB (SI)(AX*1), CX
	CMPB CX, $0x2e
	JNE  loop
	MOVB $0x2e, (DI)(BX*1)
	INCQ BX
	JMP  loop

done:
	VZEROUPPER
	MOVQ BX, nd+56(FP)
	MOVQ AX, ns+64(FP)
	RET
