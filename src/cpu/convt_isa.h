/* convt_isa.h: the col2im of ConvTranspose's oneDNN variant (src/cpu/ops/conv.c), compiled
 * per instruction set (src/cpu/isa/convt.c).
 *
 * kiln_convt_col2im_cl_isa: the matmul left col [os][ks][nm]: for input position p (os of
 * them, row-major over in[]) and kernel position kidx (row-major over k[]), the nm output
 * channels' contributions, contiguous. It adds each such vector into P [is][nm] (channels
 * last; is = the output positions, row-major over out[]) at output position
 * o = p * s - pb + kidx * d (per dim; skipped when outside), in ascending (p, kidx) order,
 * then writes y[m][o] = P[o][m] + bias[m] (bias NULL: 0) for the nm planes of y (with few
 * channels, the planes start at the bias and take the adds directly, P unused: the same
 * sum, the bias added first). Geometry
 * of up to 3 spatial dims, leading dims padded with size 1. P: is * nm floats of scratch
 * (zeroed here); y, P and col do not overlap.
 */
#ifndef KILN_CPU_CONVT_ISA_H
#define KILN_CPU_CONVT_ISA_H

#include <stddef.h>
#include <stdint.h>

#include "cpu/isa.h"

struct kiln_convt_cl {
    int64_t in[3], out[3], k[3], s[3], d[3], pb[3];
    size_t nm, is, ks;
};

KILN_ISA_DECLARE(void, kiln_convt_col2im_cl_isa,
                 (const struct kiln_convt_cl *c, const float *col, const float *bias, float *P,
                  float *y));

#endif
