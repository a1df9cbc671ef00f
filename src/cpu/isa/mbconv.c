/* src/cpu/isa/mbconv.c: kiln.MBConv's inner loops (contracts in cpu/mbconv_isa.h), compiled
 * once per instruction-set level. Both use a GCC vector type as wide as the level's
 * registers (16 floats at AVX-512, 8 at AVX2, 4 portable: SSE2, or plain C elsewhere), the
 * compiler contracting a * b + c into FMA where the level has it, and Relu / Clip as
 * maxps(lo, v) / minps(hi, v) (NaN stays, as kiln's activation loop).
 *
 * Depthwise row: a channel block walks the whole row with its taps' weights loaded once
 * (3x3 and 5x5 unrolled, so they stay in registers; edge pixels check each tap), other
 * windows through a generic loop. Channels past the last whole vector: the last VL channels
 * again (overlapping: the same bits), scalar below VL.
 *
 * 1x1 product: register tiles of MR rows x NV vectors (AVX-512 12 x 2, AVX2 6 x 2, portable
 * 2 x 4), the tile's row count and width constants in each inlined copy (a switch over the
 * row tail), the epilogue on locals: with the struct's fields read through the pointer (C's
 * stores may alias them) and rolled loops GCC kept all 24 accumulators on the stack (107
 * against 150 GFLOP/s at K 16, N 96).
 */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O3", "no-trapping-math")
#endif

#include <stdbool.h>

#if defined(__SSE__)
#include <immintrin.h>
#endif

#include "cpu/act.h"
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
static inline __attribute__((unused)) vf vsel(vi m, vf a, vf b) { return (vf)(((vi)a & m) | ((vi)b & ~m)); } /* m ? a : b */

/* v < lo ? lo : v and v > hi ? hi : v (NaN stays): maxps(lo, v) and minps(hi, v), whose
 * second operand is what an unordered compare returns. */
#if VL == 16
static inline vf vmaxlo(vf lo, vf v) { return (vf)_mm512_max_ps((__m512)lo, (__m512)v); }
static inline vf vminhi(vf hi, vf v) { return (vf)_mm512_min_ps((__m512)hi, (__m512)v); }
#elif VL == 8
static inline vf vmaxlo(vf lo, vf v) { return (vf)_mm256_max_ps((__m256)lo, (__m256)v); }
static inline vf vminhi(vf hi, vf v) { return (vf)_mm256_min_ps((__m256)hi, (__m256)v); }
#elif defined(__SSE__)
static inline vf vmaxlo(vf lo, vf v) { return (vf)_mm_max_ps((__m128)lo, (__m128)v); }
static inline vf vminhi(vf hi, vf v) { return (vf)_mm_min_ps((__m128)hi, (__m128)v); }
#else
static inline vf vmaxlo(vf lo, vf v) { return vsel(v < lo, lo, v); }
static inline vf vminhi(vf hi, vf v) { return vsel(v > hi, hi, v); }
#endif

/* The row's clamp (cpu/mbconv_isa.h) on v: v < lo ? lo : v, then > hi ? hi : v. */
static inline vf clampv(const struct kiln_mbconv_dw *d, vf v)
{
    if (!d->clamp) return v;
    vf lo = (vf){0} + d->lo, hi = (vf){0} + d->hi;
    return vminhi(hi, vmaxlo(lo, v));
}

static inline float clamps(const struct kiln_mbconv_dw *d, float v)
{
    if (!d->clamp) return v;
    v = v < d->lo ? d->lo : v;
    return v > d->hi ? d->hi : v;
}

/* Interior output pixels computed side by side in inner_k: each pixel's sum is a chain of
 * K * K dependent multiply-adds, so one pixel at a time waits on the FMA latency (4 cycles
 * on Zen 4: 36 cycles a vector for 3x3); PIX independent chains keep the FMA units busy. The
 * register file holds the K * K weights, PIX accumulators and a load at AVX-512 for 3x3
 * (9 + 8) and 5x5 (25 + 4); at AVX2 the 3x3 weights and 4 accumulators fit, 5x5's weights
 * come from L1. Each pixel's taps are still added in (ky, kx) order onto the bias: the same
 * bits as one pixel at a time. */
#if VL == 16
#define PIX(K) ((K) == 3 ? 8 : 4)
#else
#define PIX(K) 4
#endif

/* Channels [c, c + VL) of every output pixel, a K x K window (K a constant after inlining):
 * the weights loaded once into registers; pixels in [lo, hi) have their whole window inside
 * the row, PIX(K) at a time, the others (the edges) check each tap. */
static inline __attribute__((always_inline)) void inner_k(const struct kiln_mbconv_dw *d, int64_t c, int64_t lo,
                                                          int64_t hi, const int K)
{
    const int64_t E = d->E, W = d->W, sw = d->sw, pl = d->pl;
    vf w[25], b = {0};
    for (int t = 0; t < K * K; t++) w[t] = vld(d->w + t * E + c);
    if (d->bias) b = vld(d->bias + c);
    const float *rows[5];
    for (int ky = 0; ky < K; ky++) rows[ky] = d->rows[ky];
    const int P = PIX(K); /* a constant after inlining */
    for (int64_t ow = 0; ow < d->OW; ow++) {
        if (ow >= lo && ow + P <= hi) { /* PIX(K) interior pixels */
            vf acc[8];
#pragma GCC unroll 8
            for (int p = 0; p < P; p++) acc[p] = b;
            const int64_t off = (ow * sw - pl) * E + c, step = sw * E;
#pragma GCC unroll 5
            for (int ky = 0; ky < K; ky++) {
                const float *r = rows[ky];
                if (!r) continue;
                r += off;
#pragma GCC unroll 5
                for (int kx = 0; kx < K; kx++) {
                    const vf wv = w[ky * K + kx];
#pragma GCC unroll 8
                    for (int p = 0; p < P; p++) acc[p] += vld(r + p * step + kx * E) * wv;
                }
            }
#pragma GCC unroll 8
            for (int p = 0; p < P; p++) vst(d->y + (ow + p) * E + c, clampv(d, acc[p]));
            ow += P - 1;
            continue;
        }
        vf acc = b;
        int64_t x0 = ow * sw - pl, off = x0 * E + c;
        if (ow >= lo && ow < hi) {
            for (int ky = 0; ky < K; ky++) {
                const float *r = rows[ky];
                if (!r) continue;
                r += off;
                for (int kx = 0; kx < K; kx++) acc += vld(r + kx * E) * w[ky * K + kx];
            }
        } else {
            for (int ky = 0; ky < K; ky++) {
                const float *r = rows[ky];
                if (!r) continue;
                for (int kx = 0; kx < K; kx++)
                    if (x0 + kx >= 0 && x0 + kx < W) acc += vld(r + (x0 + kx) * E + c) * w[ky * K + kx];
            }
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
    /* Channels past the last whole vector: the vector ending at E again, overlapping the
     * one before (its channels come out the same bits: each channel's sum does not depend
     * on the block); scalar only when E < VL. */
    for (int64_t c = 0; c < cv + (cv < E && E >= VL ? VL : 0); c += VL) {
        int64_t cc = c < cv ? c : E - VL;
        if (fast && d->kh == 3)
            inner_k(d, cc, lo, hi, 3);
        else if (fast)
            inner_k(d, cc, lo, hi, 5);
        else
            edge_vec(d, cc, 0, OW);
    }
    if (E < VL) tail_scalar(d, 0);
}

/* ------------------------------------------------------------------ 1x1 products */

#if defined(__AVX512F__)
#define MR 12 /* rows of a register tile */
#define NV 2  /* vectors (of VL columns) of a register tile */
#elif defined(__AVX2__)
#define MR 6
#define NV 2
#else
#define MR 2
#define NV 4
#endif
#define NRP KILN_MBCONV_NR
#define PV  (NRP / VL) /* vectors in a panel */

static inline __attribute__((unused)) vf gclamp(const struct kiln_mbconv_gemm *g, vf v)
{
    if (!g->clamp) return v;
    vf lo = (vf){0} + g->lo, hi = (vf){0} + g->hi;
    return vminhi(hi, vmaxlo(lo, v));
}

/* Rows [m0, m0 + mr), vectors [v0, v0 + nv) of the columns (vector v: columns [v VL,
 * (v + 1) VL)): the sums, then the epilogue. tail: the last vector reaches past N, its
 * columns inside N stored through a scalar copy. mr, nv and tail are constants after
 * inlining, so the accumulators stay in registers. */
static inline __attribute__((always_inline)) void gtile(const struct kiln_mbconv_gemm *g, int64_t m0, const int mr,
                                                        int64_t v0, const int nv, const int tail)
{
    vf acc[MR][NV];
#pragma GCC unroll 16
    for (int r = 0; r < mr; r++)
#pragma GCC unroll 4
        for (int j = 0; j < nv; j++) acc[r][j] = (vf){0};
    const float *bq[NV];
    for (int j = 0; j < nv; j++) bq[j] = g->bp + ((v0 + j) / PV) * g->K * NRP + ((v0 + j) % PV) * VL;
    const float *a = g->A + m0 * g->lda;
    const int64_t lda = g->lda;
    for (int64_t k = 0; k < g->K; k++) {
        vf b[NV];
#pragma GCC unroll 4
        for (int j = 0; j < nv; j++) b[j] = vld(bq[j] + k * NRP);
#pragma GCC unroll 16
        for (int r = 0; r < mr; r++) {
            float x = a[r * lda + k]; /* broadcast by the vector-scalar product */
#pragma GCC unroll 4
            for (int j = 0; j < nv; j++) acc[r][j] += b[j] * x;
        }
    }
    const int64_t n0 = v0 * VL;
    /* g's fields in locals (stores to C could alias them otherwise) and the loops unrolled,
     * so that the accumulators are not spilled */
    const float *z = g->z ? g->z + m0 * g->ldz + n0 : NULL;
    float *c = g->C + m0 * g->ldc + n0;
    const int64_t ldz = g->ldz, ldc = g->ldc;
    const int clamp = g->clamp;
    const vf lo = (vf){0} + g->lo, hi = (vf){0} + g->hi;
#pragma GCC unroll 4
    for (int j = 0; j < nv - tail; j++) {
        vf bias = g->bias ? vld(g->bias + n0 + j * VL) : (vf){0};
#pragma GCC unroll 16
        for (int r = 0; r < mr; r++) {
            vf v = acc[r][j] + bias;
            if (z) v += vld(z + r * ldz + j * VL);
            if (clamp) v = vminhi(hi, vmaxlo(lo, v));
            vst(c + r * ldc + j * VL, v);
        }
    }
    if (!tail) return;
    const int64_t nt = n0 + (nv - 1) * VL; /* the partial vector: N - nt < VL columns */
    for (int r = 0; r < mr; r++) {
        float t[VL];
        vst(t, acc[r][nv - 1]);
        for (int64_t n = nt; n < g->N; n++) {
            float v = t[n - nt];
            if (g->bias) v += g->bias[n];
            if (g->z) v += g->z[(m0 + r) * g->ldz + n];
            if (g->clamp) {
                v = v < g->lo ? g->lo : v;
                v = v > g->hi ? g->hi : v;
            }
            g->C[(m0 + r) * g->ldc + n] = v;
        }
    }
}

/* Rows [m0, m0 + mr) over every column: tiles of NV vectors, the last one with the partial
 * vector (columns past N) when there is one, then a non-clamp activation on the finished
 * rows (in L1). */
static inline __attribute__((always_inline)) void grows(const struct kiln_mbconv_gemm *g, int64_t m0, const int mr)
{
    int64_t nvec = (g->N + VL - 1) / VL, v = 0;
    bool part = g->N % VL != 0;
    for (; v + NV <= nvec; v += NV) {
        if (part && v + NV == nvec)
            gtile(g, m0, mr, v, NV, 1);
        else
            gtile(g, m0, mr, v, NV, 0);
    }
    for (; v < nvec; v++) {
        if (part && v + 1 == nvec)
            gtile(g, m0, mr, v, 1, 1);
        else
            gtile(g, m0, mr, v, 1, 0);
    }
    if (g->act && !g->clamp)
        for (int r = 0; r < mr; r++) {
            float *c = g->C + (m0 + r) * g->ldc;
            kiln_act_apply_f32(g->act, c, NULL, c, (size_t)g->N);
        }
}

void KILN_ISA_FN(kiln_mbconv_gemm_isa)(const struct kiln_mbconv_gemm *g)
{
    int64_t m = 0;
    for (; m + MR <= g->M; m += MR) grows(g, m, MR);
    switch (g->M - m) {
#if MR > 11
    case 11: grows(g, m, 11); break;
    case 10: grows(g, m, 10); break;
    case 9: grows(g, m, 9); break;
    case 8: grows(g, m, 8); break;
    case 7: grows(g, m, 7); break;
    case 6: grows(g, m, 6); break;
#endif
#if MR > 5
    case 5: grows(g, m, 5); break;
    case 4: grows(g, m, 4); break;
    case 3: grows(g, m, 3); break;
    case 2: grows(g, m, 2); break;
#endif
    case 1: grows(g, m, 1); break;
    default: break;
    }
}
