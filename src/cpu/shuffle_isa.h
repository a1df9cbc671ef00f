/* shuffle_isa.h: the interleave at the heart of the channel shuffle ops (src/cpu/ops/
 * shuffle.c), compiled per instruction-set level in src/cpu/isa/shuffle.c (cpu/isa.h).
 */
#ifndef KILN_CPU_SHUFFLE_ISA_H
#define KILN_CPU_SHUFFLE_ISA_H

#include <stddef.h>

#include "cpu/isa.h"

/* y[2i] = a[i], y[2i + 1] = b[i] for i < n (32-bit elements; a copy, bitwise exact). */
KILN_ISA_DECLARE(void, kiln_interleave2_u32_isa,
                 (unsigned *restrict y, const unsigned *restrict a, const unsigned *restrict b, size_t n));

#endif
