/* mbconv_isa.h: the depthwise inner loop of kiln.MBConv (src/cpu/ops/mbconv.c), compiled per
 * instruction-set level in src/cpu/isa/mbconv.c (cpu/isa.h).
 *
 * One output row of a depthwise convolution on channels-last rows:
 *
 *   y[ow, c] = (bias ? bias[c] : 0) + sum over ky < kh with rows[ky] != NULL, kx < kw with
 *              0 <= ow * sw - pl + kx < W  of  rows[ky][(ow * sw - pl + kx) * E + c] * w[(ky * kw + kx) * E + c]
 *
 * for ow < OW, c < E. rows[ky] is input row ky of the window ([W, E], pixels at the stride E),
 * NULL for a row of padding (its taps are skipped); w holds the taps as [kh][kw][E] (channels
 * contiguous, as the vector lanes take them). The taps are added in (ky, kx) order onto the
 * bias, one multiply-add each (an FMA at AVX2 / AVX-512: the compiler contracts it), so the
 * result differs from oneDNN's depthwise kernel by float32 rounding only. Channels run in
 * vector lanes (16 at AVX-512, 8 at AVX2, 4 portable; the remainder as the last whole vector again,
 * overlapping, or a scalar loop when E is below a vector);
 * 3x3 and 5x5 windows have unrolled copies with the weights held in registers and interior
 * pixels computed several side by side (independent FMA chains: MobileNetV2's four MBConv
 * blocks at one thread on a Zen 4, 2.42 -> 2.22 ms a run). With clamp,
 * Relu / Clip (ReLU6) in the registers before the store, as kiln's activation loop computes
 * them (v < lo ? lo : v, then > hi ? hi : v); other activations the caller applies while
 * the row is in L1. y must not overlap the rows.
 * Never fails, never allocates.
 */
#ifndef KILN_CPU_MBCONV_ISA_H
#define KILN_CPU_MBCONV_ISA_H

#include <stddef.h>
#include <stdint.h>

#include "cpu/isa.h"

struct kiln_mbconv_dw {
    const float *const *rows; /* [kh], NULL: padding */
    const float *w;           /* [kh][kw][E] */
    const float *bias;        /* [E] or NULL */
    float *y;                 /* [OW][E] */
    int64_t W, E, OW;
    int64_t kh, kw, sw, pl;
    int clamp;                /* 1: y = min(max(y, lo), hi) as Clip / Relu do (NaN stays) */
    float lo, hi;
};

KILN_ISA_DECLARE(void, kiln_mbconv_dw_row_isa, (const struct kiln_mbconv_dw *d));

/* The 1x1 products (expand, project) on one thread, with their epilogue in the registers:
 *
 *   C[m, n] = act(sum over k < K of A[m * lda + k] * B[k, n] + bias[n] + Z[m * ldz + n])
 *
 * for m < M, n < N; each sum in ascending k onto zero, one multiply-add each (FMA at AVX2 /
 * AVX-512), then + bias, + Z (each a float add), then the clamp (Relu / Clip as in
 * kiln_mbconv_dw) or, for another activation, act applied to each finished row tile
 * through kiln_act_apply_f32. B is packed once (mbconv.c's pack_w) into panels of 16 columns,
 * [K][16] each, columns past N zero: the same layout at every level, so it is an engine
 * blob. Register tiles: AVX-512 12 rows x 32 columns, AVX2 6 x 16, portable 2 x 16; row and
 * column tails compute whole vectors (B's padding is zero) and store only what is inside.
 * C must not overlap A, B, bias or Z. Never fails, never allocates. */
#define KILN_MBCONV_NR 16
struct kiln_act;
struct kiln_mbconv_gemm {
    const float *A;
    int64_t lda;
    const float *bp;   /* ceil(N / 16) panels of [K][16] */
    const float *bias; /* [N] or NULL */
    const float *z;    /* rows at the stride ldz, or NULL */
    int64_t ldz;
    float *C;
    int64_t ldc, M, K, N;
    int clamp;
    float lo, hi;
    const struct kiln_act *act; /* applied after the tiles when not NULL (and not clamp) */
};

KILN_ISA_DECLARE(void, kiln_mbconv_gemm_isa, (const struct kiln_mbconv_gemm *g));

#endif
