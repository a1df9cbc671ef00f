/* src/cpu/isa/mbconv.c: one output row of kiln.MBConv's depthwise convolution (contract in
 * cpu/mbconv_isa.h), compiled once per instruction-set level. Channels run in the lanes of a
 * GCC vector type as wide as the level's registers (16 floats at AVX-512, 8 at AVX2, 4
 * portable: SSE2, or plain C elsewhere); a channel block walks the whole row with its taps'
 * weights loaded once (3x3 and 5x5 unrolled, so they stay in registers), the pixels whose
 * window lies inside the row without bounds checks, the edge pixels with them. Channels
 * past the last whole vector take a scalar loop.
 */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O3", "no-trapping-math")
#endif

#include <stdbool.h>

#include "cpu/mbconv_isa.h"

#if defined(__AVX512F__)
#define VL 16
#elif defined(__AVX2__)
#define VL 8
#else
#define VL 4
#endif

/* VL floats, loads and stores at any float alignment. */
typedef float vf __attribute__((vector_size(VL * sizeof(float)), aligned(sizeof(float)), may_alias));

typedef int32_t vi __attribute__((vector_size(VL * sizeof(float))));

static inline vf vld(const float *p) { return *(const vf *)p; }
static inline void vst(float *p, vf v) { *(vf *)p = v; }
static inline vf vsel(vi m, vf a, vf b) { return (vf)(((vi)a & m) | ((vi)b & ~m)); } /* m ? a : b */

/* The row's clamp (cpu/mbconv_isa.h) on v: v < lo ? lo : v, then > hi ? hi : v. */
static inline vf clampv(const struct kiln_mbconv_dw *d, vf v)
{
    if (!d->clamp) return v;
    vf lo = (vf){0} + d->lo, hi = (vf){0} + d->hi;
    v = vsel(v < lo, lo, v);
    return vsel(v > hi, hi, v);
}

static inline float clamps(const struct kiln_mbconv_dw *d, float v)
{
    if (!d->clamp) return v;
    v = v < d->lo ? d->lo : v;
    return v > d->hi ? d->hi : v;
}

/* Channels [c, c + VL), output pixels [ow0, ow1) whose windows lie inside the row: a K x K
 * window (K a constant after inlining). */
static inline __attribute__((always_inline)) void inner_k(const struct kiln_mbconv_dw *d, int64_t c, int64_t ow0,
                                                          int64_t ow1, const int K)
{
    const int64_t E = d->E;
    vf w[25], b = {0};
    for (int t = 0; t < K * K; t++) w[t] = vld(d->w + t * E + c);
    if (d->bias) b = vld(d->bias + c);
    for (int64_t ow = ow0; ow < ow1; ow++) {
        vf acc = b;
        int64_t off = (ow * d->sw - d->pl) * E + c;
        for (int ky = 0; ky < K; ky++) {
            const float *r = d->rows[ky];
            if (!r) continue;
            r += off;
            for (int kx = 0; kx < K; kx++) acc += vld(r + kx * E) * w[ky * K + kx];
        }
        vst(d->y + ow * E + c, clampv(d, acc));
    }
}

/* Channels [c, c + VL), output pixels [ow0, ow1), any window, taps outside the row skipped. */
static void edge_vec(const struct kiln_mbconv_dw *d, int64_t c, int64_t ow0, int64_t ow1)
{
    const int64_t E = d->E;
    for (int64_t ow = ow0; ow < ow1; ow++) {
        vf acc = {0};
        if (d->bias) acc = vld(d->bias + c);
        int64_t x0 = ow * d->sw - d->pl;
        for (int64_t ky = 0; ky < d->kh; ky++) {
            const float *r = d->rows[ky];
            if (!r) continue;
            for (int64_t kx = 0; kx < d->kw; kx++) {
                int64_t ix = x0 + kx;
                if (ix < 0 || ix >= d->W) continue;
                acc += vld(r + ix * E + c) * vld(d->w + (ky * d->kw + kx) * E + c);
            }
        }
        vst(d->y + ow * E + c, clampv(d, acc));
    }
}

/* Channels [c0, E) one at a time, every output pixel. */
static void tail_scalar(const struct kiln_mbconv_dw *d, int64_t c0)
{
    const int64_t E = d->E;
    for (int64_t ow = 0; ow < d->OW; ow++) {
        int64_t x0 = ow * d->sw - d->pl;
        for (int64_t c = c0; c < E; c++) {
            float acc = d->bias ? d->bias[c] : 0.0f;
            for (int64_t ky = 0; ky < d->kh; ky++) {
                const float *r = d->rows[ky];
                if (!r) continue;
                for (int64_t kx = 0; kx < d->kw; kx++) {
                    int64_t ix = x0 + kx;
                    if (ix >= 0 && ix < d->W) acc += r[ix * E + c] * d->w[(ky * d->kw + kx) * E + c];
                }
            }
            d->y[ow * E + c] = clamps(d, acc);
        }
    }
}

void KILN_ISA_FN(kiln_mbconv_dw_row_isa)(const struct kiln_mbconv_dw *d)
{
    const int64_t E = d->E, OW = d->OW;
    /* Interior pixels: ow * sw - pl >= 0 and ow * sw - pl + kw <= W. */
    int64_t lo = (d->pl + d->sw - 1) / d->sw, hi = d->W - d->kw + d->pl >= 0 ? (d->W - d->kw + d->pl) / d->sw + 1 : 0;
    if (lo > OW) lo = OW;
    if (hi > OW) hi = OW;
    if (hi < lo) hi = lo;
    int64_t cv = E / VL * VL;
    bool fast = d->kh == d->kw && (d->kh == 3 || d->kh == 5);
    for (int64_t c = 0; c < cv; c += VL) {
        edge_vec(d, c, 0, lo);
        if (fast && d->kh == 3)
            inner_k(d, c, lo, hi, 3);
        else if (fast)
            inner_k(d, c, lo, hi, 5);
        else
            edge_vec(d, c, lo, hi);
        edge_vec(d, c, hi, OW);
    }
    if (cv < E) tail_scalar(d, cv);
}
