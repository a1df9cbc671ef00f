/* src/cpu/half_isa.h: bulk float16 <-> float32 conversion per instruction set
 * (src/cpu/isa/half.c, cpu/isa.h), behind kiln_half_load_f32 / kiln_half_store_f32
 * (cpu/tensor_util.h): the Casts at the edges of float16 regions (docs/optimizer.md) and
 * the float16 paths of the generic kernels.
 *
 * Every variant gives the bits of ir/half.h's scalar conversions: widening is exact;
 * narrowing rounds to nearest even, >= 65520 in magnitude gives Inf, float32 subnormals
 * give signed zero, NaN stays NaN (quiet, sign kept, payload truncated). The one difference:
 * F16C quiets a signalling float16 NaN when widening (the scalar path keeps the bits); it
 * stays a NaN of the same sign.
 */
#ifndef KILN_CPU_HALF_ISA_H
#define KILN_CPU_HALF_ISA_H

#include <stddef.h>
#include <stdint.h>

#include "cpu/isa.h"

KILN_ISA_DECLARE(void, kiln_f16_load_f32_isa, (const uint16_t *x, size_t n, float *y));
KILN_ISA_DECLARE(void, kiln_f16_store_f32_isa, (const float *x, size_t n, uint16_t *y));

#endif
