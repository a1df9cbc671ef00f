/* src/cpu/isa/conv_first.c: one output row of a convolution read straight from a planar
 * (NCHW) image, written channels-last (contract in cpu/conv_first_isa.h).
 *
 * AVX-512 / AVX2: output channels in chunks of up to 4 / 2 vectors (64 / 16 channels); for each
 * chunk the row's interior columns (every tap inside the image) go in blocks of PB pixels,
 * PB * MV accumulators in registers (AVX-512: 16 / 12 / 8 / 6 pixels for 1-4 vectors of 16;
 * AVX2: 12 / 6 pixels for 1-2 vectors of 8, its 16 registers), the tap's MV weight vectors
 * loaded once per block and each pixel's input value broadcast from its plane (column strides
 * 1 and 2 compiled as constants). The interior's last pixels short of a block go as one more
 * block ending at the interior's end, overlapping the one before (a row narrower than a block
 * takes them one by one). Columns whose window reaches into the padding take the per-pixel
 * path that tests each tap. Portable: the same sums, scalar.
 */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O3", "no-trapping-math")
#endif

#include "cpu/conv_first_isa.h"

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>

#if defined(__AVX512F__)
#define VW 16
typedef __m512 vf;
#define VLOAD(p)      _mm512_loadu_ps(p)
#define VBCAST(p)     _mm512_set1_ps(*(p))
#define VFMA(a, b, c) _mm512_fmadd_ps((a), (b), (c))
/* min(hi, max(lo, v)) with v second: a NaN v comes through */
#define VCLAMP(v, lo, hi) _mm512_min_ps((hi), _mm512_max_ps((lo), (v)))
#define VSET1(f) _mm512_set1_ps(f)
static inline void vstore_n(float *p, vf v, int64_t n)
{
    if (n >= VW)
        _mm512_storeu_ps(p, v);
    else
        _mm512_mask_storeu_ps(p, (__mmask16)((1u << n) - 1u), v);
}
#define PB1  16
#define PB2  12
#define PB3  8
#define PB4  6
#define CAPV 4
#else
#define VW            8
typedef __m256 vf;
#define VLOAD(p)      _mm256_loadu_ps(p)
#define VBCAST(p)     _mm256_broadcast_ss(p)
#define VFMA(a, b, c) _mm256_fmadd_ps((a), (b), (c))
#define VCLAMP(v, lo, hi) _mm256_min_ps((hi), _mm256_max_ps((lo), (v)))
#define VSET1(f) _mm256_set1_ps(f)
static inline void vstore_n(float *p, vf v, int64_t n)
{
    if (n >= VW) {
        _mm256_storeu_ps(p, v);
        return;
    }
    __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    _mm256_maskstore_ps(p, _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), lane), v);
}
/* 16 registers: chunks of at most 2 vectors (3 and 4 leave too few accumulators to hide
 * the FMA latency: 4 x 8 channels as 2 pixels ran at 60% of oneDNN's speed). */
#define PB1           12
#define PB2           6
#define PB3           3
#define PB4           2
#define CAPV          2
#endif
#define MAXV 4

/* Kernel rows [*ky0, *ky1) that fall inside the image for this output row. */
static void row_taps(const struct kiln_conv_first_row *r, int64_t *ky0, int64_t *ky1)
{
    int64_t a = 0, b = r->kh;
    while (a < b && r->iy0 + a * r->dy < 0) a++;
    while (b > a && r->iy0 + (b - 1) * r->dy >= r->H) b--;
    *ky0 = a;
    *ky1 = b;
}

/* PB pixels from column ow0 (every tap inside the image), channels [m0, m0 + MV * VW) of
 * which the last vector has `last` valid lanes. SX: the column stride when it is a constant
 * (1, 2: the pixels' offsets are then immediates, which leaves the general registers free),
 * 0 to read it from r; KW likewise the kernel width (3: the column taps unrolled, 8-10%
 * faster on MobileNetV2's first layer; 7 measured no gain). */
#define DEF_BLOCK(NAME, MV, PB, SX, KW)                                                                      \
    static void NAME(const struct kiln_conv_first_row *r, int64_t ky0, int64_t ky1, int64_t ow0, int64_t m0, \
                     int64_t last)                                                                           \
    {                                                                                                        \
        vf acc[PB][MV], wv[MV];                                                                              \
        _Pragma("GCC unroll 16") for (int p = 0; p < PB; p++)                                                \
            _Pragma("GCC unroll 4") for (int j = 0; j < MV; j++) acc[p][j] = VLOAD(r->b + m0 + j * VW);      \
        const int64_t sx = SX ? SX : r->sx, x0 = ow0 * sx - r->pl;                                           \
        for (int64_t c = 0; c < r->C; c++)                                                                   \
            for (int64_t ky = ky0; ky < ky1; ky++) {                                                         \
                const float *xr = r->x + (c * r->H + r->iy0 + ky * r->dy) * r->W + x0;                       \
                const float *wr = r->w + (c * r->kh + ky) * r->kw * r->Mp + m0;                              \
                _Pragma("GCC unroll 4") for (int64_t kx = 0; kx < (KW ? KW : r->kw); kx++)                   \
                {                                                                                            \
                    const float *xp = xr + kx * r->dx;                                                       \
                    _Pragma("GCC unroll 4") for (int j = 0; j < MV; j++) wv[j] =                             \
                        VLOAD(wr + kx * r->Mp + j * VW);                                                     \
                    _Pragma("GCC unroll 16") for (int p = 0; p < PB; p++)                                    \
                    {                                                                                        \
                        vf bx = VBCAST(xp + p * sx);                                                         \
                        _Pragma("GCC unroll 4") for (int j = 0; j < MV; j++) acc[p][j] =                     \
                            VFMA(bx, wv[j], acc[p][j]);                                                      \
                    }                                                                                        \
                }                                                                                            \
            }                                                                                                \
        if (r->clamp) {                                                                                      \
            const vf lo = VSET1(r->lo), hi = VSET1(r->hi);                                                   \
            _Pragma("GCC unroll 16") for (int p = 0; p < PB; p++)                                            \
                _Pragma("GCC unroll 4") for (int j = 0; j < MV; j++) acc[p][j] = VCLAMP(acc[p][j], lo, hi);  \
        }                                                                                                    \
        _Pragma("GCC unroll 16") for (int p = 0; p < PB; p++)                                                \
        {                                                                                                    \
            float *yp = r->y + (ow0 + p) * r->M + m0;                                                        \
            _Pragma("GCC unroll 4") for (int j = 0; j < MV; j++)                                             \
                vstore_n(yp + j * VW, acc[p][j], j == MV - 1 ? last : VW);                                   \
        }                                                                                                    \
    }

DEF_BLOCK(block1, 1, PB1, 0, 0)
DEF_BLOCK(block2, 2, PB2, 0, 0)
DEF_BLOCK(block3, 3, PB3, 0, 0)
DEF_BLOCK(block4, 4, PB4, 0, 0)
DEF_BLOCK(block1_k3, 1, PB1, 0, 3)
DEF_BLOCK(block2_k3, 2, PB2, 0, 3)
DEF_BLOCK(block3_k3, 3, PB3, 0, 3)
DEF_BLOCK(block4_k3, 4, PB4, 0, 3)
DEF_BLOCK(block1_s1, 1, PB1, 1, 0)
DEF_BLOCK(block2_s1, 2, PB2, 1, 0)
DEF_BLOCK(block3_s1, 3, PB3, 1, 0)
DEF_BLOCK(block4_s1, 4, PB4, 1, 0)
DEF_BLOCK(block1_s1_k3, 1, PB1, 1, 3)
DEF_BLOCK(block2_s1_k3, 2, PB2, 1, 3)
DEF_BLOCK(block3_s1_k3, 3, PB3, 1, 3)
DEF_BLOCK(block4_s1_k3, 4, PB4, 1, 3)
DEF_BLOCK(block1_s2, 1, PB1, 2, 0)
DEF_BLOCK(block2_s2, 2, PB2, 2, 0)
DEF_BLOCK(block3_s2, 3, PB3, 2, 0)
DEF_BLOCK(block4_s2, 4, PB4, 2, 0)
DEF_BLOCK(block1_s2_k3, 1, PB1, 2, 3)
DEF_BLOCK(block2_s2_k3, 2, PB2, 2, 3)
DEF_BLOCK(block3_s2_k3, 3, PB3, 2, 3)
DEF_BLOCK(block4_s2_k3, 4, PB4, 2, 3)
DEF_BLOCK(pixel1, 1, 1, 0, 0)
DEF_BLOCK(pixel2, 2, 1, 0, 0)
DEF_BLOCK(pixel3, 3, 1, 0, 0)
DEF_BLOCK(pixel4, 4, 1, 0, 0)

typedef void block_fn(const struct kiln_conv_first_row *, int64_t, int64_t, int64_t, int64_t, int64_t);
/* [column stride 0 (any), 1, 2][kernel width any, 3][vectors] */
static block_fn *const BLOCK[3][2][MAXV + 1] = {
    {{NULL, block1, block2, block3, block4}, {NULL, block1_k3, block2_k3, block3_k3, block4_k3}},
    {{NULL, block1_s1, block2_s1, block3_s1, block4_s1},
     {NULL, block1_s1_k3, block2_s1_k3, block3_s1_k3, block4_s1_k3}},
    {{NULL, block1_s2, block2_s2, block3_s2, block4_s2},
     {NULL, block1_s2_k3, block2_s2_k3, block3_s2_k3, block4_s2_k3}}};
static block_fn *const PIXEL[MAXV + 1] = {NULL, pixel1, pixel2, pixel3, pixel4};
static const int64_t PBS[MAXV + 1] = {0, PB1, PB2, PB3, PB4};

/* Output column ow whose window reaches into the padding: each tap tested. */
static void edge_pixel(const struct kiln_conv_first_row *r, int64_t ky0, int64_t ky1, int64_t ow, int64_t m0,
                       int64_t nv, int64_t last)
{
    vf acc[MAXV];
    for (int64_t j = 0; j < nv; j++) acc[j] = VLOAD(r->b + m0 + j * VW);
    int64_t x0 = ow * r->sx - r->pl;
    for (int64_t c = 0; c < r->C; c++)
        for (int64_t ky = ky0; ky < ky1; ky++) {
            const float *xr = r->x + (c * r->H + r->iy0 + ky * r->dy) * r->W;
            const float *wr = r->w + (c * r->kh + ky) * r->kw * r->Mp + m0;
            for (int64_t kx = 0; kx < r->kw; kx++) {
                int64_t ix = x0 + kx * r->dx;
                if (ix < 0 || ix >= r->W) continue;
                vf bx = VBCAST(xr + ix);
                for (int64_t j = 0; j < nv; j++) acc[j] = VFMA(bx, VLOAD(wr + kx * r->Mp + j * VW), acc[j]);
            }
        }
    float *yp = r->y + ow * r->M + m0;
    for (int64_t j = 0; j < nv; j++) {
        if (r->clamp) acc[j] = VCLAMP(acc[j], VSET1(r->lo), VSET1(r->hi));
        vstore_n(yp + j * VW, acc[j], j == nv - 1 ? last : VW);
    }
}

void KILN_ISA_FN(kiln_conv_first_row_isa)(const struct kiln_conv_first_row *r)
{
    int64_t ky0, ky1;
    row_taps(r, &ky0, &ky1);
    /* Interior columns [a, b): ow * sx - pl >= 0 and ow * sx - pl + (kw - 1) * dx < W. */
    int64_t a = (r->pl + r->sx - 1) / r->sx, span = r->W - 1 - (r->kw - 1) * r->dx + r->pl;
    int64_t b = span < 0 ? 0 : span / r->sx + 1;
    if (b > r->OW) b = r->OW;
    if (a > b) a = b;
    int64_t nv = 0;
    for (int64_t m0 = 0; m0 < r->M; m0 += nv * VW) {
        int64_t rest = r->M - m0;
        nv = (rest + VW - 1) / VW;
        if (nv > CAPV) nv = CAPV;
        int64_t last = rest - (nv - 1) * VW;
        if (last > VW) last = VW;
        int64_t pb = PBS[nv], ow = 0;
        block_fn *blk = BLOCK[r->sx <= 2 ? r->sx : 0][r->kw == 3][nv];
        for (; ow < a; ow++) edge_pixel(r, ky0, ky1, ow, m0, nv, last);
        for (; ow + pb <= b; ow += pb) blk(r, ky0, ky1, ow, m0, last);
        /* The interior's last pixels short of a block: one more block ending at b, over
         * pixels already written (the same sums in the same order: the same values). */
        if (ow < b && b - a >= pb) blk(r, ky0, ky1, b - pb, m0, last), ow = b;
        for (; ow < b; ow++) PIXEL[nv](r, ky0, ky1, ow, m0, last);
        for (; ow < r->OW; ow++) edge_pixel(r, ky0, ky1, ow, m0, nv, last);
    }
}

#else /* portable */

void KILN_ISA_FN(kiln_conv_first_row_isa)(const struct kiln_conv_first_row *r)
{
    for (int64_t ow = 0; ow < r->OW; ow++) {
        float *yp = r->y + ow * r->M;
        for (int64_t m = 0; m < r->M; m++) yp[m] = r->b[m];
        for (int64_t c = 0; c < r->C; c++)
            for (int64_t ky = 0; ky < r->kh; ky++) {
                int64_t iy = r->iy0 + ky * r->dy;
                if (iy < 0 || iy >= r->H) continue;
                const float *xr = r->x + (c * r->H + iy) * r->W;
                const float *wr = r->w + (c * r->kh + ky) * r->kw * r->Mp;
                for (int64_t kx = 0; kx < r->kw; kx++) {
                    int64_t ix = ow * r->sx - r->pl + kx * r->dx;
                    if (ix < 0 || ix >= r->W) continue;
                    float xv = xr[ix];
                    const float *wk = wr + kx * r->Mp;
                    for (int64_t m = 0; m < r->M; m++) yp[m] += xv * wk[m];
                }
            }
        if (r->clamp)
            for (int64_t m = 0; m < r->M; m++) {
                float v = yp[m] < r->lo ? r->lo : yp[m]; /* NaN stays NaN */
                yp[m] = v > r->hi ? r->hi : v;
            }
    }
}

#endif
