/* dnnl_qconv.h: the integer 2-D convolution of kiln.QConv (src/cpu/ops/qconv.c,
 * docs/fused-ops.md) on oneDNN's int8 convolution primitive (Debian's libdnnl 2.6):
 * channels-last uint8/int8 source and destination, int8 weights reordered into the
 * primitive's format when the engine is prepared, and the whole epilogue inside the
 * primitive: the source zero point (runtime, padding counts as the zero point: the
 * zero-point-shifted input is padded with 0, as the reference pads), int32 bias, per output
 * channel scales, ReLU / clip as an eltwise post-op and the destination zero point, rounded
 * half to even and saturated. What it computes, per output element (float32 operations in
 * this order; kiln_qconv_requant in qconv.c is the same formula, and the tests check the two
 * bit for bit):
 *
 *     acc = sum (x - x_zp) * w                      exact int32
 *     v   = ((float)acc + (float)bias[m]) * scale[m]
 *     v   = act(v)                                  max(v, 0) / min(max(v, lo), hi) / v
 *     y   = saturate(round_half_even(v + y_zp))
 *
 * Only where oneDNN's int8 kernels are exact (VNNI or AMX: no 16-bit saturating pair sums,
 * dnnl_int8.h) and not its reference implementation; otherwise prepare leaves *out NULL and
 * the caller runs its own loop.
 *
 * The implementation: oneDNN's first choice or its first without AMX, whichever ran faster
 * on the first slice when the engine was prepared (kiln_dnnl_qconv_kind).
 *
 * kiln's threads split the output rows: T slices, each its own primitive (the padding its
 * rows see) and packed weights, one per pool thread; N > 1 images run one after another in
 * every slice.
 */
#ifndef KILN_CPU_DNNL_QCONV_H
#define KILN_CPU_DNNL_QCONV_H

#include <stdbool.h>
#include <stdint.h>

#include "base/base.h"
#include "base/pool.h"

struct kiln_kprep;
struct kiln_dnnl_qconv;

/* The convolution: X [N, H, W, C] -> Y [N, OH, OW, M], weights [M, C/group, kh, kw] (int8,
 * OIHW), strides s, dilations d (ONNX's: 1 = none), begin / end padding pb / pe. */
struct kiln_qconv_geom {
    int64_t C, M, group, k[2], s[2], d[2], pb[2], pe[2];
    int64_t H, W, OH, OW;
};

/* The epilogue: zero points, per-channel scales (M floats), activation (0 none, 1 ReLU,
 * 2 clip to [lo, hi]). */
struct kiln_qconv_epi {
    bool x_signed, y_signed;
    int32_t x_zp, y_zp;
    const float *scale;
    int act;
    float lo, hi;
};

/* Prepares the oneDNN convolution for g and e with weights w and bias (NULL: none), split
 * over up to p->threads threads. *out NULL (KILN_OK) when oneDNN is not there, lacks
 * VNNI/AMX at the active instruction set, or declines; an error only for out of memory.
 * The primitives are released with the engine. */
KILN_NODISCARD kiln_status kiln_dnnl_qconv_prepare(struct kiln_kprep *p, const struct kiln_qconv_geom *g,
                                                   const struct kiln_qconv_epi *e, const int8_t *w,
                                                   const int32_t *bias, struct kiln_dnnl_qconv **out);

/* Y = QConv(X) for N images on the pool's threads; false when oneDNN fails. */
bool kiln_dnnl_qconv_run(const struct kiln_dnnl_qconv *qc, struct kiln_pool *pool, int64_t N, const void *x,
                         void *y);

/* The number of slices (threads) the convolution is split into. */
int kiln_dnnl_qconv_slices(const struct kiln_dnnl_qconv *qc);
/* The implementation kind: 0 oneDNN's first choice (AMX where the CPU has it), 1 its first
 * without AMX (AVX-512 VNNI). Prepare times both on the first slice and keeps the faster;
 * given p->variant (a loaded engine: the kind + 1) it takes that one without timing. Both
 * compute the same bits (the tests run both). */
int kiln_dnnl_qconv_kind(const struct kiln_dnnl_qconv *qc);

#endif
