/* attention_isa.h: the row pass of kiln.Attention's fast kernel (src/cpu/ops/nn_extra.c),
 * compiled per instruction-set level in src/cpu/isa/attention.c (cpu/isa.h).
 */
#ifndef KILN_CPU_ATTENTION_ISA_H
#define KILN_CPU_ATTENTION_ISA_H

#include <stddef.h>

#include "cpu/isa.h"

/* One row of attention scores x[0..T), already scaled: x[c] += m[c] for c < n (m NULL: no
 * mask), then x[0..n) becomes its softmax (the maximum subtracted first, exp from vmath's
 * core, <= 2 ulp) and x[n..T) zero: the keys at and past n are masked (causal limit, short
 * mask). A row whose maximum is -inf (every key masked, or n == 0) becomes all zeros, as the
 * reference kernel does. The max, sum and scale run over 16 lanes in a fixed order, so the
 * result depends only on the inputs (variants with FMA agree to rounding). */
KILN_ISA_DECLARE(void, kiln_attn_softmax_row_isa, (float *x, const float *m, size_t n, size_t T));

#endif
