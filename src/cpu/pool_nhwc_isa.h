/* pool_nhwc_isa.h: the inner loop of kiln's channels-last MaxPool / AveragePool
 * (src/cpu/ops/pool_nhwc.c), compiled per instruction-set level in src/cpu/isa/pool_nhwc.c
 * (cpu/isa.h): one output row [OW, C] of one image, vectorized over the contiguous channels.
 *
 * The taps of every window are visited in the NCHW 2-D path's order (kernel rows, then
 * kernel columns), so MaxPool's result equals pool.c's bit for bit (max = x > m ? x : m from
 * -inf, the first of equal values kept; NaN skipped; an output left at -inf is NaN when every
 * tap inside the input is NaN) and AveragePool's float32 sum, divided by the float count,
 * equals pool.c's 2-D path bit for bit too.
 */
#ifndef KILN_CPU_POOL_NHWC_ISA_H
#define KILN_CPU_POOL_NHWC_ISA_H

#include <stddef.h>
#include <stdint.h>

#include "cpu/isa.h"

/* Column taps of output column ox: kernel columns [kx0, kx1) fall inside the input, cnt of
 * them inside input + pads. */
struct kiln_pool_nhwc_col {
    int64_t kx0, kx1, cnt;
};

/* One output row. */
struct kiln_pool_nhwc_row {
    const float *x;     /* the image: [H, W, C] */
    float *y;           /* the output row: [OW, C] */
    int64_t C, W, OW;
    int64_t sx, dx, pbx; /* column stride, dilation, begin pad */
    int64_t dy;          /* row dilation */
    int64_t iy0;         /* input row of kernel row 0 (oy * sy - pby) */
    int64_t ky0, ky1;    /* kernel rows inside the input */
    int64_t cy;          /* kernel rows inside input + pads */
    const struct kiln_pool_nhwc_col *cols; /* [OW] */
    int is_max;          /* 1: MaxPool; 0: AveragePool */
    int include_pad;     /* AveragePool's count_include_pad */
};

KILN_ISA_DECLARE(void, kiln_pool_nhwc_row_isa, (const struct kiln_pool_nhwc_row *r));

/* The squeeze-excitation block's loops (kiln.SqueezeExcite, src/cpu/ops/se_block.c), over
 * P channels-last pixels of which C channels are taken, pixel p at x + p * ld (ld >= C):
 *   chansum:   sum[c] = the sum over the P pixels of x[p * ld + c], added four pixels at a
 *              time ((x0 + x1) + (x2 + x3), then into the sum), so not in the NCHW pool's
 *              order: float32 rounding differs from GlobalAveragePool's by a few ulp of the
 *              sum. P = 0 gives zeros.
 *   chanscale: y[p * ld + c] = x[p * ld + c] * g[c], rounded once as Mul is (bitwise equal
 *              to Mul); y may be x; other elements of y are not touched.
 *   gemv:      y[n] = sum over k < K of x[k] * wt[k * ld + n] for n < N (ld >= N), four k at
 *              a time; K = 0 gives zeros. May contract to FMA on AVX2 / AVX-512.
 * No over-read past the elements named; sum and y must not overlap x or wt except as stated. */
KILN_ISA_DECLARE(void, kiln_nhwc_chansum_isa, (const float *x, int64_t P, int64_t C, int64_t ld, float *sum));
KILN_ISA_DECLARE(void, kiln_nhwc_chanscale_isa,
                 (const float *x, const float *g, float *y, int64_t P, int64_t C, int64_t ld));
KILN_ISA_DECLARE(void, kiln_se_gemv_isa,
                 (const float *wt, int64_t ld, const float *x, int64_t K, int64_t N, float *y));

#endif
