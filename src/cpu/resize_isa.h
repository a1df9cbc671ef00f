/* resize_isa.h: the row loops of Resize's 4-D fast path (src/cpu/isa/resize.c), per
 * instruction set. Both write dst[0..n).
 *
 * kiln_resize_hrow_isa: dst[j] = sum over t < nt of w[j * nt + t] * src[idx[j * nt + t]]
 * (nt 1, 2 or 4): one input row resized along the width.
 * kiln_resize_vrow_isa: dst[j] = sum over t < nt of w[t] * rows[t][j] (nt 1..4): one output
 * row as a weighted sum of width-resized input rows.
 */
#ifndef KILN_CPU_RESIZE_ISA_H
#define KILN_CPU_RESIZE_ISA_H

#include <stddef.h>
#include <stdint.h>

#include "cpu/isa.h"

KILN_ISA_DECLARE(void, kiln_resize_hrow_isa,
                 (const float *src, float *dst, const int32_t *idx, const float *w, int nt, size_t n));
KILN_ISA_DECLARE(void, kiln_resize_vrow_isa,
                 (float *dst, const float *const *rows, const float *w, int nt, size_t n));

#endif
