/* src/cpu/isa/pgemm.c: the register tiles of kiln's own float32 GEMM with a prepacked B
 * (contract and layout in cpu/pgemm_isa.h; the product, its threads and its blobs in
 * cpu/pgemm.c).
 *
 * Loop order of a block: K in blocks of at most KC_MAX (768: K = 3072 is four blocks; a
 * block's partial sums are added into C by the next), then groups of GROUP panels (2: 64
 * columns; GROUP_FEW = 4 when the rows make one tile), then tiles of at most MR rows (all of
 * nearly equal size: 128 rows are tiles of 13 and 12, not 9 of 14 and a slow tail of 2),
 * then the panels of the group. A group's panels (2 x 768 x 32 floats, 192 KiB) stay in L2
 * for all its row tiles; A (128 x 768 floats, 384 KiB) stays in L2; C's finished rows are
 * still in L1 for the activation.
 *
 * The weight stream. A model's run reads each weight once from memory (340-500 MB for the
 * transformers; nothing stays in cache from run to run). The arithmetic needs little of it
 * (128 rows at 200 GFLOP/s: 3.1 GB/s of B; one core streams ~15 GB/s), but when only the
 * first row tile of a group reads the group's B (the previous scheme), that tile asks for
 * ten times the average and stalls, and no prefetch within it helps (the data is not there
 * yet). So each group, while its tiles compute, prefetches the next group's B (the next
 * group of panels, or the first group of the next K block) into L2 with prefetcht1: tile t
 * of nt takes lines [t L / nt, (t + 1) L / nt) of each of the next group's chunks (L lines a
 * chunk), one every kc / lines k steps inside the tile's k loop (an outer loop over runs of
 * k steps with one prefetch each, so the FMA loop stays as it was). Every tile also
 * prefetches its own panel PF_DIST k steps ahead into L1 (from L2 now). Measured with B
 * streamed from 600 MB of distinct copies (bench/pgemm_cold.c; docs/notes-bigmm.md), 128 x
 * 3072 x 768 at one thread: the old scheme 0.82 of its warm speed, the next-group prefetch
 * with groups of 4 0.93-0.97, groups of 2 0.95-1.0 (oneDNN's brgemm 0.83-0.92). A product
 * whose rows make one tile (M <= 14) has no reuse to overlap with: it only streams B, which
 * the hardware prefetchers already do at full speed, and the extra prefetches measured
 * slower (8 x 3072 x 768 warm 66 against 98-108 GFLOP/s), so it keeps groups of 4 and no
 * software prefetch of the next group. Blocks of K of 384 or 256 measured no better.
 *
 * A lone row (M = 1: batch-1 MLPs, classifier heads) is a pure weight stream at 2 FMAs a k
 * step. The 1 x 32 tile with its L1 prefetch reached 58 GB/s of B from L3 on Zen 4 (a plain
 * read streams 88-95); row_pass reads RG = 2 panels side by side with no software prefetch
 * and reaches 80-85 GB/s (784 x 512: 28.9 -> 41.9 GFLOP/s; 1, 2 or 4 panels measured within
 * 5% of each other, the prefetch is what cost). AVX2 runs one panel as 4 ymm chains (the
 * 6 x 16 half tiles had 2): 24 -> 36-38 GFLOP/s on the same machine with KILN_CPU_ISA=avx2.
 * Same operations in the same order as the tiles,
 * so a row's result does not depend on the rows around it (test_pgemm `row_case`).
 *
 * The AVX-512 tile, 14 x 32, holds 28 zmm accumulators and does 28 FMAs per two loads of B
 * and 14 broadcasts of A (vbroadcastss straight from A's rows, no packing of A). 6 x 64,
 * 8 x 48 and 12 x 32 were measured too (docs/design.md, "kiln's own GEMM"): 14 x 32 was the
 * fastest here, 12 x 32 within noise. The AVX2 tile is 6 x 16 (12 ymm accumulators) over
 * each half of a panel.
 *
 * Each row count 1..MR is its own copy of the tile (a switch over always-inlined code), so
 * the accumulators stay in registers for the row tails too.
 */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O3", "no-trapping-math")
#endif
#include <string.h>

#include "cpu/pgemm_isa.h"

#if defined(__AVX2__)
#include <immintrin.h>
#endif

#ifndef NR
#define NR KILN_PGEMM_NR
#endif
#ifndef PF_ALL
#define PF_ALL 1 /* every row tile prefetches its panel PF_DIST k steps ahead into L1 (from L2) */
#endif
#ifndef PF_DIST
#define PF_DIST 24 /* k steps ahead that the first row tile of a group prefetches B (memory) */
#endif
#ifndef PF_HINT
#define PF_HINT _MM_HINT_T0 /* the hint of that prefetch */
#endif
#ifndef PF_FEW
#define PF_FEW 1 /* a single row tile prefetches its panel PF_DIST k steps ahead into L1 */
#endif
#ifndef PF_NEXT
#define PF_NEXT 1 /* prefetch the next group's B into L2, spread over this group's tiles */
#endif
#ifndef PREFETCH_L2 /* -D to measure other hints (prefetcht0: locality 3) */
#if defined(__GNUC__)
#define PREFETCH_L2(p) __builtin_prefetch((p), 0, 2) /* prefetcht1 */
#else
#define PREFETCH_L2(p) ((void)(p))
#endif
#endif
#ifndef GROUP
#define GROUP 2 /* panels per group when there are several row tiles: 64 columns */
#endif
#ifndef GROUP_FEW
#define GROUP_FEW 4 /* panels per group for one row tile (few rows; no next-group prefetch) */
#endif
#ifndef KC_MAX
#define KC_MAX 768 /* the longest K block: past it, even blocks of 384 to 768 */
#endif

#if defined(__GNUC__)
#define ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define ALWAYS_INLINE inline
#endif

#if defined(__AVX512F__)
#define NV (NR / 16) /* vectors of a panel row */
#ifndef MR
#define MR (NV == 2 ? 14 : NV == 3 ? 8 : 6)
#endif

/* One tile: rows [0, mr) of A (at lda, from the block's first k) times one panel's kc rows
 * (b, at the stride NR), into the first nc <= NR columns of C's mr rows; acc: add to C; bias
 * (at the tile's first column) and z (at the tile's first element, stride ldz) when not NULL.
 * pf: prefetch b PF_DIST k steps ahead into L1. */
static ALWAYS_INLINE void tile(const size_t mr, const bool pf, size_t kc, const float *a, size_t lda, const float *b,
                               float *c, size_t ldc, size_t nc, bool acc, const float *bias, const float *z,
                               size_t ldz, const char *nx, size_t nnx)
{
    __m512 cv[MR][NV];
#pragma GCC unroll 14
    for (size_t i = 0; i < mr; i++)
#pragma GCC unroll 4
        for (size_t v = 0; v < NV; v++) cv[i][v] = _mm512_setzero_ps();
#define STEP_(k)                                                                                            \
    do {                                                                                                    \
        if (pf)                                                                                             \
            for (size_t v = 0; v < NV; v++) _mm_prefetch((const char *)(b + ((k) + PF_DIST) * NR + 16 * v), PF_HINT); \
        __m512 bv[NV];                                                                                      \
        for (size_t v = 0; v < NV; v++) bv[v] = _mm512_loadu_ps(b + (k) * NR + 16 * v);                   \
        _Pragma("GCC unroll 14") for (size_t i = 0; i < mr; i++)                                            \
        {                                                                                                   \
            __m512 av = _mm512_set1_ps(a[i * lda + (k)]);                                                   \
            for (size_t v = 0; v < NV; v++) cv[i][v] = _mm512_fmadd_ps(av, bv[v], cv[i][v]);               \
        }                                                                                                   \
    } while (0)
    /* nnx lines at nx (B that a later tile reads from memory) into L2, one every `every` k
     * steps: the weight stream spread evenly over the arithmetic */
    size_t every = nnx ? kc / nnx : 0, k = 0;
    const char *nxe = nnx ? nx + 64 * nnx : nx; /* nx may be NULL (nothing to prefetch) */
    if (nnx && !every)
        for (; nx < nxe; nx += 64) PREFETCH_L2(nx);
    if (every)
        for (; nx < nxe; nx += 64) {
            PREFETCH_L2(nx);
            for (size_t e = k + every; k < e; k++) STEP_(k);
        }
    for (; k < kc; k++) STEP_(k);
#undef STEP_
    __mmask16 m[NV];
    __m512 bb[NV];
#pragma GCC unroll 4
    for (size_t v = 0; v < NV; v++) {
        size_t n = nc > 16 * v ? nc - 16 * v : 0;
        m[v] = n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1);
        bb[v] = bias ? _mm512_maskz_loadu_ps(m[v], bias + 16 * v) : _mm512_setzero_ps();
    }
#pragma GCC unroll 14
    for (size_t i = 0; i < mr; i++) {
        float *ci = c + i * ldc;
#pragma GCC unroll 4
        for (size_t v = 0; v < NV; v++) {
            __m512 x = cv[i][v];
            if (acc) x = _mm512_add_ps(_mm512_maskz_loadu_ps(m[v], ci + 16 * v), x);
            if (bias) x = _mm512_add_ps(x, bb[v]);
            if (z) x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(m[v], z + i * ldz + 16 * v));
            _mm512_mask_storeu_ps(ci + 16 * v, m[v], x);
        }
    }
}

/* A tile of mr rows against one panel (all NR columns of the panel at b). */
static void panel_tile(size_t mr, bool pf, size_t kc, const float *a, size_t lda, const float *b, float *c,
                       size_t ldc, size_t nc, bool acc, const float *bias, const float *z, size_t ldz,
                       const char *nx, size_t nnx)
{
#define T_(R)                                                                                  \
    case R:                                                                                    \
        if (pf) tile(R, true, kc, a, lda, b, c, ldc, nc, acc, bias, z, ldz, nx, nnx);          \
        else tile(R, false, kc, a, lda, b, c, ldc, nc, acc, bias, z, ldz, nx, nnx);            \
        break
    switch (mr) {
        T_(1); T_(2); T_(3); T_(4); T_(5); T_(6);
#if MR > 6
        T_(7); T_(8);
#endif
#if MR > 8
        T_(9); T_(10); T_(11); T_(12); T_(13); T_(14);
#endif
    default: break;
    }
#undef T_
}

#elif defined(__AVX2__)
#define MR 6

/* mask of the first n (<= 8) lanes */
static ALWAYS_INLINE __m256i lanes(size_t n)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* One 6 x 16 half of a panel: as the AVX-512 tile, with nc <= 16 and b at the half. */
static ALWAYS_INLINE void half_tile(const size_t mr, size_t kc, const float *a, size_t lda, const float *b,
                                    float *c, size_t ldc, size_t nc, bool acc, const float *bias,
                                    const float *z, size_t ldz, const char *nx, size_t nnx)
{
    __m256 c0[MR], c1[MR];
#pragma GCC unroll 6
    for (size_t i = 0; i < mr; i++) c0[i] = c1[i] = _mm256_setzero_ps();
    size_t every = nnx ? kc / nnx : 0, cnt = every; /* as the AVX-512 tile */
    const char *nxe = nnx ? nx + 64 * nnx : nx; /* nx may be NULL (nothing to prefetch) */
    if (nnx && !every) {
        for (; nx < nxe; nx += 64) PREFETCH_L2(nx);
    }
    for (size_t k = 0; k < kc; k++) {
        if (every && --cnt == 0) {
            cnt = every;
            if (nx < nxe) PREFETCH_L2(nx), nx += 64;
        }
        __m256 b0 = _mm256_loadu_ps(b + k * NR), b1 = _mm256_loadu_ps(b + k * NR + 8);
#pragma GCC unroll 6
        for (size_t i = 0; i < mr; i++) {
            __m256 av = _mm256_broadcast_ss(a + i * lda + k);
            c0[i] = _mm256_fmadd_ps(av, b0, c0[i]);
            c1[i] = _mm256_fmadd_ps(av, b1, c1[i]);
        }
    }
    if (nc >= 16) {
        __m256 bb0 = _mm256_setzero_ps(), bb1 = _mm256_setzero_ps();
        if (bias) bb0 = _mm256_loadu_ps(bias), bb1 = _mm256_loadu_ps(bias + 8);
#pragma GCC unroll 6
        for (size_t i = 0; i < mr; i++) {
            float *ci = c + i * ldc;
            __m256 v0 = c0[i], v1 = c1[i];
            if (acc) v0 = _mm256_add_ps(_mm256_loadu_ps(ci), v0), v1 = _mm256_add_ps(_mm256_loadu_ps(ci + 8), v1);
            if (bias) v0 = _mm256_add_ps(v0, bb0), v1 = _mm256_add_ps(v1, bb1);
            if (z) {
                v0 = _mm256_add_ps(v0, _mm256_loadu_ps(z + i * ldz));
                v1 = _mm256_add_ps(v1, _mm256_loadu_ps(z + i * ldz + 8));
            }
            _mm256_storeu_ps(ci, v0);
            _mm256_storeu_ps(ci + 8, v1);
        }
        return;
    }
    __m256i m0 = lanes(nc), m1 = lanes(nc > 8 ? nc - 8 : 0);
    __m256 bb0 = _mm256_setzero_ps(), bb1 = _mm256_setzero_ps();
    if (bias) bb0 = _mm256_maskload_ps(bias, m0), bb1 = _mm256_maskload_ps(bias + 8, m1);
#pragma GCC unroll 6 /* unrolled, or the accumulators live in memory through the k loop */
    for (size_t i = 0; i < mr; i++) {
        float *ci = c + i * ldc;
        __m256 v0 = c0[i], v1 = c1[i];
        if (acc) {
            v0 = _mm256_add_ps(_mm256_maskload_ps(ci, m0), v0);
            v1 = _mm256_add_ps(_mm256_maskload_ps(ci + 8, m1), v1);
        }
        if (bias) v0 = _mm256_add_ps(v0, bb0), v1 = _mm256_add_ps(v1, bb1);
        if (z) {
            v0 = _mm256_add_ps(v0, _mm256_maskload_ps(z + i * ldz, m0));
            v1 = _mm256_add_ps(v1, _mm256_maskload_ps(z + i * ldz + 8, m1));
        }
        _mm256_maskstore_ps(ci, m0, v0);
        _mm256_maskstore_ps(ci + 8, m1, v1);
    }
}

static void half_panel(size_t mr, size_t kc, const float *a, size_t lda, const float *b, float *c, size_t ldc,
                       size_t nc, bool acc, const float *bias, const float *z, size_t ldz, const char *nx,
                       size_t nnx)
{
#define T_(R)                                                                                  \
    case R: half_tile(R, kc, a, lda, b, c, ldc, nc, acc, bias, z, ldz, nx, nnx); break
    switch (mr) {
        T_(1); T_(2); T_(3); T_(4); T_(5); T_(6);
    default: break;
    }
#undef T_
}

static void panel_tile(size_t mr, bool pf, size_t kc, const float *a, size_t lda, const float *b, float *c,
                       size_t ldc, size_t nc, bool acc, const float *bias, const float *z, size_t ldz,
                       const char *nx, size_t nnx)
{
    (void)pf;
    size_t h0 = nc > 16 ? nnx / 2 : nnx; /* the lines to prefetch, split over the halves */
    for (size_t h = 0; h * 16 < nc; h++)
        half_panel(mr, kc, a, lda, b + 16 * h, c + 16 * h, ldc, nc - 16 * h < 16 ? nc - 16 * h : 16, acc,
                   bias ? bias + 16 * h : NULL, z ? z + 16 * h : NULL, ldz, h && nx ? nx + 64 * h0 : nx,
                   h ? nnx - h0 : h0);
}

#else
#define MR 4

/* Plain C: each element one sum over k in order, as the vector tiles. */
static void panel_tile(size_t mr, bool pf, size_t kc, const float *a, size_t lda, const float *b, float *c,
                       size_t ldc, size_t nc, bool acc, const float *bias, const float *z, size_t ldz,
                       const char *nx, size_t nnx)
{
    (void)pf, (void)nx, (void)nnx;
    float t[MR][NR];
    memset(t, 0, sizeof t);
    for (size_t k = 0; k < kc; k++)
        for (size_t i = 0; i < mr; i++) {
            float av = a[i * lda + k];
            for (size_t j = 0; j < NR; j++) t[i][j] += av * b[k * NR + j];
        }
    for (size_t i = 0; i < mr; i++)
        for (size_t j = 0; j < nc; j++) {
            float v = t[i][j];
            if (acc) v = c[i * ldc + j] + v;
            if (bias) v += bias[j];
            if (z) v += z[i * ldz + j];
            c[i * ldc + j] = v;
        }
}
#endif

#if defined(__AVX2__)
/* ------------------------------------------------------------------ one row */

#define ROW_PASS 1
#if defined(__AVX512F__)
typedef __m512 rvec;
#define RVW 16
#ifndef RG
#define RG 2 /* panels a one-row product reads side by side */
#endif
static ALWAYS_INLINE rvec rv_load_n(const float *p, size_t n)
{
    return _mm512_maskz_loadu_ps(n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1), p);
}
static ALWAYS_INLINE void rv_store_n(float *p, rvec v, size_t n)
{
    _mm512_mask_storeu_ps(p, n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1), v);
}
#define rv_zero      _mm512_setzero_ps
#define rv_set1      _mm512_set1_ps
#define rv_loadu     _mm512_loadu_ps
#define rv_fma       _mm512_fmadd_ps
#define rv_add       _mm512_add_ps
#else
typedef __m256 rvec;
#define RVW 8
#ifndef RG
#define RG 1 /* one panel: 4 ymm chains, and registers left for the totals */
#endif
static ALWAYS_INLINE rvec rv_load_n(const float *p, size_t n)
{
    return n >= 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, lanes(n));
}
static ALWAYS_INLINE void rv_store_n(float *p, rvec v, size_t n)
{
    if (n >= 8) _mm256_storeu_ps(p, v);
    else _mm256_maskstore_ps(p, lanes(n), v);
}
#define rv_zero      _mm256_setzero_ps
#define rv_set1      _mm256_set1_ps
#define rv_loadu     _mm256_loadu_ps
#define rv_fma       _mm256_fmadd_ps
#define rv_add       _mm256_add_ps
#endif
#define RNV (NR / RVW) /* vectors of a panel row */

/* One row of A (a, from column 0) against np <= RG panels (b: the first one's row 0, the
 * others K * NR floats apart), columns [0, nc) of the group, K in blocks of kcb from k0 to k1,
 * into c (the row's first column of the group). The same float operations in the same order
 * as the tiles (a block's sum from zero over k ascending, added to what the previous blocks
 * left: C + block; then + bias, + Z), so a row's result does not depend on how many rows the
 * product has; only the registers differ: RG panels side by side give RG * RNV independent
 * FMA chains (AVX-512: 4 instead of the tile's 2), which a lone row needs to keep up with the
 * weight stream (the 1 x 32 tile: 58 GB/s of B from L3 on Zen 4, this pass 80-85). B's
 * loads are whole vectors (a panel's columns past N are zero); C, bias and Z's are masked. */
static ALWAYS_INLINE void row_group(const size_t np, const float *a, const float *b, size_t K, size_t k0,
                                    size_t k1, size_t kcb, float *c, size_t nc, bool acc, const float *bias,
                                    const float *z)
{
    rvec tot[RG][RNV], blk[RG][RNV];
    size_t n[RG][RNV];
#pragma GCC unroll 4
    for (size_t p = 0; p < np; p++)
#pragma GCC unroll 4
        for (size_t v = 0; v < RNV; v++) {
            size_t col = p * NR + RVW * v;
            n[p][v] = nc > col ? nc - col : 0;
            tot[p][v] = rv_zero();
        }
    for (size_t kb = k0; kb < k1; kb += kcb) {
        size_t ke = k1 - kb > kcb ? kb + kcb : k1;
#pragma GCC unroll 4
        for (size_t p = 0; p < np; p++)
#pragma GCC unroll 4
            for (size_t v = 0; v < RNV; v++) blk[p][v] = rv_zero();
        for (size_t k = kb; k < ke; k++) {
            rvec av = rv_set1(a[k]);
#pragma GCC unroll 4
            for (size_t p = 0; p < np; p++)
#pragma GCC unroll 4
                for (size_t v = 0; v < RNV; v++)
                    blk[p][v] = rv_fma(av, rv_loadu(b + p * K * NR + k * NR + RVW * v), blk[p][v]);
        }
#pragma GCC unroll 4
        for (size_t p = 0; p < np; p++)
#pragma GCC unroll 4
            for (size_t v = 0; v < RNV; v++) {
                if (kb > k0) tot[p][v] = rv_add(tot[p][v], blk[p][v]);
                else if (acc || kb > 0) tot[p][v] = rv_add(rv_load_n(c + p * NR + RVW * v, n[p][v]), blk[p][v]);
                else tot[p][v] = blk[p][v];
            }
    }
#pragma GCC unroll 4
    for (size_t p = 0; p < np; p++)
#pragma GCC unroll 4
        for (size_t v = 0; v < RNV; v++) {
            rvec x = tot[p][v];
            size_t col = p * NR + RVW * v;
            if (!n[p][v]) continue;
            if (bias) x = rv_add(x, rv_load_n(bias + col, n[p][v]));
            if (z) x = rv_add(x, rv_load_n(z + col, n[p][v]));
            rv_store_n(c + col, x, n[p][v]);
        }
}

/* Row m of the product, columns [n0, n1), K [k0, k1) in blocks of kcb (k1 > k0). */
static void row_pass(const struct kiln_pgemm_args *g, size_t m, size_t n0, size_t n1, size_t k0, size_t k1,
                     size_t kcb)
{
    const float *a = g->A + m * g->lda;
    float *c = g->C + m * g->ldc;
    const struct kiln_act *act = g->act && g->act->kind != KILN_ACT_NONE ? g->act : NULL;
    const float *z = g->z ? g->z + m * g->ldz : NULL;
    for (size_t j0 = n0; j0 < n1; j0 += RG * NR) {
        size_t j1 = n1 - j0 > RG * NR ? j0 + RG * NR : n1, np = (j1 - j0 + NR - 1) / NR;
        const float *b = g->bp + (j0 / NR) * g->K * NR;
        const float *bias = g->bias ? g->bias + j0 : NULL, *zj = z ? z + j0 : NULL;
#define G_(P)                                                                                           \
    case P: row_group(P, a, b, g->K, k0, k1, kcb, c + j0, j1 - j0, g->acc, bias, zj); break
        switch (np) {
            G_(1);
#if RG > 1
            G_(2);
#endif
#if RG > 2
            G_(3); G_(4);
#endif
        default: break;
        }
#undef G_
        if (act) KILN_ISA_FN(kiln_act_apply_f32_isa)(act, c + j0, NULL, c + j0, j1 - j0);
    }
}

#endif

static inline size_t g1_of(size_t g0, size_t n1, size_t gp)
{
    return n1 - g0 > gp * NR ? g0 + gp * NR : n1;
}

/* The B a group reads: up to GROUP chunks (one per panel) of (ke - kb) * NR floats. */
struct unit {
    size_t g0, g1, kb, ke;
};

/* Columns [u.g0, u.g1) (at most GROUP panels) of rows [m0, m1), K block [u.kb, u.ke). The
 * first row tile, which reads the group's panels first, prefetches them PF_DIST k steps
 * ahead into L1. With PF_NEXT every tile also prefetches a share of the next unit's B
 * (*nx; NULL: none) into L2, spread evenly over the group's arithmetic, so that the weight
 * stream, which a model's run reads from memory once, overlaps the product instead of
 * stalling the first row tile of every group (docs/design.md, "kiln's own GEMM"). */
static void group(const struct kiln_pgemm_args *g, size_t m0, size_t m1, struct unit u, const struct unit *nx)
{
    size_t g0 = u.g0, g1 = u.g1, kb = u.kb, ke = u.ke;
    bool last = ke == g->K, acc = g->acc || kb > 0;
    const struct kiln_act *act = last && g->act && g->act->kind != KILN_ACT_NONE ? g->act : NULL;
    const float *bias = last ? g->bias : NULL, *z = last ? g->z : NULL;
    /* nt tiles of nearly equal rows (128 rows: 13 and 12 rather than 14 and a tail of 2) */
    size_t rows = m1 - m0, nt = (rows + MR - 1) / MR;
    size_t npc = (g1 - g0 + NR - 1) / NR, npn = 0, lines = 0; /* panels here, next; lines a chunk */
    if (PF_NEXT && nx) {
        npn = (nx->g1 - nx->g0 + NR - 1) / NR;
        lines = ((nx->ke - nx->kb) * NR * sizeof(float) + 63) / 64;
    }
    for (size_t t = 0; t < nt; t++) {
        size_t i = m0 + rows * t / nt, mr = m0 + rows * (t + 1) / nt - i;
        const float *a = g->A + i * g->lda + kb;
        float *c = g->C + i * g->ldc;
        size_t l0 = lines * t / nt, l1 = lines * (t + 1) / nt; /* this tile's share of each chunk */
        for (size_t j = g0, p = 0; j < g1; j += NR, p++) {
            size_t nc = g1 - j < NR ? g1 - j : NR;
            const char *pb = NULL;
            size_t pn = 0;
            for (size_t q = p; q < npn; q += npc) { /* chunk q of the next unit (p's; more for a short group) */
                const char *cb = (const char *)(g->bp + (nx->g0 / NR + q) * g->K * NR + nx->kb * NR);
                if (q == p) pb = cb + 64 * l0, pn = l1 - l0;
                else
                    for (size_t l = l0; l < l1; l++) PREFETCH_L2(cb + 64 * l);
            }
            panel_tile(mr, (nt > 1 || PF_FEW) && (PF_ALL || t == 0), ke - kb, a, g->lda, g->bp + (j / NR) * g->K * NR + kb * NR, c + j, g->ldc,
                       nc, acc, bias ? bias + j : NULL, z ? z + i * g->ldz + j : NULL, g->ldz, pb, pn);
        }
        if (act)
            for (size_t r = 0; r < mr; r++)
                KILN_ISA_FN(kiln_act_apply_f32_isa)(act, c + r * g->ldc + g0, NULL, c + r * g->ldc + g0, g1 - g0);
    }
}

void KILN_ISA_FN(kiln_pgemm_block_isa)(const struct kiln_pgemm_args *g, size_t m0, size_t m1, size_t n0,
                                       size_t n1, size_t k0, size_t k1)
{
    /* K in nkb even blocks of at most KC_MAX (one, possibly empty, when K is short) */
    size_t nkb = (k1 - k0 + KC_MAX - 1) / KC_MAX, kcb = nkb > 1 ? (k1 - k0 + nkb - 1) / nkb : k1 - k0;
    /* one row tile (few rows): a product that only streams B, which the hardware prefetchers
     * keep up with; wider groups, no software prefetch of the next one (measured faster) */
    bool few = m1 - m0 <= MR;
#ifdef ROW_PASS
    if (m1 - m0 == 1 && k1 > k0) {
        row_pass(g, m0, n0, n1, k0, k1, kcb);
        return;
    }
#endif
    size_t gp = few ? GROUP_FEW : GROUP;
    struct unit u = {n0, g1_of(n0, n1, gp), k0, k1 - k0 > kcb ? k0 + kcb : k1}, nx;
    for (;;) {
        bool more = true; /* the unit after u: the next group, else the first of the next K block */
        nx = u;
        if (u.g1 < n1) nx.g0 = u.g1, nx.g1 = g1_of(u.g1, n1, gp);
        else if (u.ke < k1) nx.g0 = n0, nx.g1 = g1_of(n0, n1, gp), nx.kb = u.ke, nx.ke = k1 - u.ke > kcb ? u.ke + kcb : k1;
        else more = false;
        group(g, m0, m1, u, more && !few ? &nx : NULL);
        if (!more) break;
        u = nx;
    }
}
