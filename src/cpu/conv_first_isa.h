/* conv_first_isa.h: the first convolution of a CNN straight from its NCHW input, for
 * kiln.ConvNhwc with x_nchw 1 (src/cpu/ops/conv_nhwc.c, variant "nchw-first"), compiled per
 * instruction-set level in src/cpu/isa/conv_first.c (cpu/isa.h).
 *
 * A model's input image [N, 3, H, W] is planar; the convolutions after it run channels-last.
 * Rather than a Transpose of the whole image followed by oneDNN's NHWC kernel (oneDNN 2.6 has
 * no fast kernel reading nchw and writing nhwc: it picks ref:any), this kernel reads each
 * tap's pixel from its plane with a broadcast and multiplies it into a vector of output
 * channels: with C of 1 to 4 input channels an output pixel is C * kh * kw vector FMAs per 16
 * output channels, weights held in registers, a block of pixels per pass so that the FMA
 * chains are independent. Group 1 only.
 *
 * One call computes one output row of one image (all output channels). The sum for an output
 * value runs over c, then kernel rows, then kernel columns (each one FMA, the bias first):
 * every level computes the same order, so the vector levels equal the portable one up to FMA
 * contraction (one rounding per product-add instead of two).
 */
#ifndef KILN_CPU_CONV_FIRST_ISA_H
#define KILN_CPU_CONV_FIRST_ISA_H

#include <stddef.h>
#include <stdint.h>

#include "cpu/isa.h"

/* Output channels the packed weights and bias are padded to (a multiple of every level's
 * vector width). */
#define KILN_CONV_FIRST_MBLOCK 16

/* One output row. Reads x within [0, C*H*W) only (taps outside the image are padding,
 * skipped); writes y[ow * M + m] for ow < OW, m < M exactly. */
struct kiln_conv_first_row {
    const float *x; /* the image, planar: [C, H, W] */
    const float *w; /* packed: [C][kh][kw][Mp], Mp = M rounded up to KILN_CONV_FIRST_MBLOCK, the
                       padding zero */
    const float *b; /* [Mp] (the padding zero), never NULL: zeros without a bias */
    float *y;       /* the output row: [OW, M] */
    int64_t C, H, W, M, Mp, OW;
    int64_t kh, kw, sx, dy, dx;
    int64_t iy0; /* input row of kernel row 0: oy * sy - pad_top (may be < 0) */
    int64_t pl;  /* left padding */
    int clamp;        /* 1: y = min(hi, max(lo, sum)) at the store (Relu, Clip; NaN stays NaN) */
    float lo, hi;
};

KILN_ISA_DECLARE(void, kiln_conv_first_row_isa, (const struct kiln_conv_first_row *r));

#endif
