/* qdq_isa.h: kiln.QAdd's element-wise loop (src/cpu/ops/qconv.c), compiled per instruction
 * set (src/cpu/isa/qdq.c; cpu/isa.h).
 *
 * y = saturate(round_half_even(((float)a - az) * as + ((float)b - bz) * bs) / ys) + yz):
 * DequantizeLinear of both operands, their float32 sum and QuantizeLinear, each operation
 * rounded to float32 as the unfused nodes round it (no fused multiply-add: the vector code
 * multiplies and adds separately; the division is a true division, not a multiplication by
 * 1 / ys). The zero points are integral, held as floats.
 */
#ifndef KILN_CPU_QDQ_ISA_H
#define KILN_CPU_QDQ_ISA_H

#include <stddef.h>
#include <stdint.h>

#include "cpu/isa.h"

struct kiln_qadd_params {
    float as, az, bs, bz, ys, yz;
};

KILN_ISA_DECLARE(void, kiln_qadd_u8_isa,
                 (const uint8_t *a, const uint8_t *b, uint8_t *y, size_t n, const struct kiln_qadd_params *p));

/* The int8 form (scalar; no QDQ model of the bench set has int8 activations). */
void kiln_qadd_i8(const int8_t *a, const int8_t *b, int8_t *y, size_t n, const struct kiln_qadd_params *p);

#endif
