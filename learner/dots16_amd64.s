//go:build amd64 && !purego

#include "textflag.h"

// func dots16(q []float32, v *[16]float32, bias []float32, out []float32)
//
// out[i] = bias[i] + v·q[16i:16i+16]. Lane j of the accumulator sums
// v[j]q[j], v[j+4]q[j+4], v[j+8]q[j+8], v[j+12]q[j+12] in that order, and
// the lanes are combined as (l0+l1)+(l2+l3): dot32's partial sums, in its
// order, so the scores are bit-identical to the scalar code (no FMA).
TEXT ·dots16(SB), NOSPLIT, $0-80
	MOVQ q_base+0(FP), SI
	MOVQ v+24(FP), DX
	MOVQ bias_base+32(FP), BX
	MOVQ out_base+56(FP), DI
	MOVQ out_len+64(FP), CX
	MOVUPS 0(DX), X8
	MOVUPS 16(DX), X9
	MOVUPS 32(DX), X10
	MOVUPS 48(DX), X11
	TESTQ CX, CX
	JEQ done

loop:
	MOVUPS 0(SI), X0
	MULPS X8, X0
	MOVUPS 16(SI), X1
	MULPS X9, X1
	ADDPS X1, X0
	MOVUPS 32(SI), X2
	MULPS X10, X2
	ADDPS X2, X0
	MOVUPS 48(SI), X3
	MULPS X11, X3
	ADDPS X3, X0
	MOVAPS X0, X1
	SHUFPS $0xB1, X1, X1
	ADDPS X1, X0
	MOVHLPS X0, X1
	ADDSS X1, X0
	MOVSS 0(BX), X2
	ADDSS X0, X2
	MOVSS X2, 0(DI)
	ADDQ $64, SI
	ADDQ $4, BX
	ADDQ $4, DI
	DECQ CX
	JNE loop

done:
	RET
