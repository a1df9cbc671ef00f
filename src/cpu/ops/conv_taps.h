/* conv_taps.h: a channels-last convolution computed tap by tap on kiln's GEMM, each tap only
 * over the outputs whose input lies inside the image ("pgemm-taps", a variant of
 * kiln.ConvNhwc, src/cpu/ops/conv_nhwc.c).
 *
 * A convolution is the sum over its kernel taps (i, j) of 1x1 products: for tap (i, j),
 * Y[oy, ox] += X[oy * s - pt + i * d, ox * s - pl + j * d] * W[:, :, i, j]^T. With a large
 * dilation on a small image most (tap, output) pairs read padding: DeepLabV3's ASPP 3x3 at
 * dilation 12 on a 16x16 map reads the image in a quarter of them. A kernel that multiplies
 * the zeros too (oneDNN's AVX2 direct convolution) does four times the work; here each tap
 * runs over its rectangle of outputs only: its input pixels gathered into rows (or read in
 * place when they already lie as the product's rows), one product on the tap's weights
 * prepacked as [C, M] panels, the result added into Y (or accumulated there directly when the
 * rectangle is whole rows of Y).
 */
#ifndef KILN_CPU_OPS_CONV_TAPS_H
#define KILN_CPU_OPS_CONV_TAPS_H

#include <stdint.h>

#include "cpu/act.h"
#include "cpu/kernel.h"

struct kiln_conv_taps;

/* The convolution: X [N, H, W, C] -> Y [N, OH, OW, M], group 1, kernel kh x kw, strides s,
 * dilations d, leading pads pt (top) and pl (left). */
struct kiln_conv_taps_geom {
    int64_t H, W, C, M, OH, OW, kh, kw, s[2], d[2], pt, pl;
};

/* The share of (tap, output) pairs that read inside the image (1: no padding read). */
double kiln_conv_taps_useful(const struct kiln_conv_taps_geom *g);

/* Prepares the variant for W [M, C, kh, kw] (float32, constant): each tap's weights packed
 * for kiln's GEMM as blobs of the node (keys from `key`, one a tap). *out NULL when kiln's
 * GEMM is not available at this instruction set; an error only for out of memory. */
kiln_status kiln_conv_taps_prepare(struct kiln_kprep *p, const struct kiln_conv_taps_geom *g, const float *w,
                                   uint32_t key, const struct kiln_conv_taps **out);

/* Y = act(conv(X, W) + B + Z) for N images (B, Z may be NULL; act NULL or NONE: none; Z may
 * not be Y). Products over k's pool; the scratch is k's. */
kiln_status kiln_conv_taps_run(struct kiln_kctx *k, const struct kiln_conv_taps *t, int64_t N, const float *x,
                               const float *b, const float *z, const struct kiln_act *act, float *y);

#endif
