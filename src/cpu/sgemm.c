/* sgemm.c: portable blocked float32 GEMM (see sgemm.h for the contract).
 *
 * GotoBLAS structure: C is updated in NC-column slabs; for each KC-deep slice of K, the
 * slice of op(B) is packed into NR-wide column panels and each MC-row block of op(A) into
 * MR-tall row panels, zero-padded at the edges, so the micro-kernel always runs a full
 * MR x NR tile with unit-stride reads. The micro-kernel is plain C with fixed trip counts,
 * which gcc and clang turn into SIMD multiply-adds on whatever ISA the build targets.
 * Accumulation is in float, in K order within a KC slice (as most BLAS libraries do).
 */
#if defined(__GNUC__) && !defined(__clang__)
/* The micro-kernel needs full unrolling and vectorization, which -O2 of gcc 12 does not
 * always give; this file is the hot loop of every Conv/MatMul, so ask for -O3 here. */
#pragma GCC optimize("O3")
#endif

#include "cpu/sgemm.h"

#include <string.h>

#include "base/base.h"

/* Register tile. 2x16 keeps 8 SSE accumulators live and measured ~25-30 GFLOP/s at 256^3
 * with both gcc 12 and clang 14 on the baseline x86-64 ISA; 4x16 and 8x8 spill with one
 * compiler or the other (down to ~5 GFLOP/s). -D overrides are for tuning experiments. */
#ifndef SG_MR
#define SG_MR 2
#endif
#ifndef SG_NR
#define SG_NR 16
#endif
#define SG_MC 96   /* multiple of SG_MR */
#define SG_KC 256
#define SG_NC 1024 /* multiple of SG_NR */

/* op(A)(i, p) and op(B)(p, j). */
static inline float sg_a(bool t, const float *A, size_t lda, size_t i, size_t p)
{
    return t ? A[p * lda + i] : A[i * lda + p];
}
static inline float sg_b(bool t, const float *B, size_t ldb, size_t p, size_t j)
{
    return t ? B[j * ldb + p] : B[p * ldb + j];
}

/* Packs op(A)[i0 .. i0+mc, p0 .. p0+kc) into MR-row panels: panel r, step p holds the MR
 * values of column p, rows r*MR .. r*MR+MR (zero past mc). */
static void sg_pack_a(bool t, const float *A, size_t lda, size_t i0, size_t mc, size_t p0,
                      size_t kc, float *restrict dst)
{
    for (size_t r = 0; r < mc; r += SG_MR) {
        size_t rows = mc - r < SG_MR ? mc - r : SG_MR;
        if (!t) {
            for (size_t i = 0; i < SG_MR; i++) {
                if (i < rows) {
                    const float *src = A + (i0 + r + i) * lda + p0;
                    for (size_t p = 0; p < kc; p++) dst[p * SG_MR + i] = src[p];
                } else {
                    for (size_t p = 0; p < kc; p++) dst[p * SG_MR + i] = 0.0f;
                }
            }
        } else {
            for (size_t p = 0; p < kc; p++) {
                const float *src = A + (p0 + p) * lda + i0 + r;
                size_t i = 0;
                for (; i < rows; i++) dst[p * SG_MR + i] = src[i];
                for (; i < SG_MR; i++) dst[p * SG_MR + i] = 0.0f;
            }
        }
        dst += SG_MR * kc;
    }
}

/* Packs op(B)[p0 .. p0+kc, j0 .. j0+nc) into NR-column panels (zero past nc). */
static void sg_pack_b(bool t, const float *B, size_t ldb, size_t p0, size_t kc, size_t j0,
                      size_t nc, float *restrict dst)
{
    for (size_t s = 0; s < nc; s += SG_NR) {
        size_t cols = nc - s < SG_NR ? nc - s : SG_NR;
        if (!t) {
            for (size_t p = 0; p < kc; p++) {
                const float *src = B + (p0 + p) * ldb + j0 + s;
                size_t j = 0;
                for (; j < cols; j++) dst[p * SG_NR + j] = src[j];
                for (; j < SG_NR; j++) dst[p * SG_NR + j] = 0.0f;
            }
        } else {
            for (size_t j = 0; j < SG_NR; j++) {
                if (j < cols) {
                    const float *src = B + (j0 + s + j) * ldb + p0;
                    for (size_t p = 0; p < kc; p++) dst[p * SG_NR + j] = src[p];
                } else {
                    for (size_t p = 0; p < kc; p++) dst[p * SG_NR + j] = 0.0f;
                }
            }
        }
        dst += SG_NR * kc;
    }
}

/* acc = a_panel * b_panel over kc steps; then C[0..rows, 0..cols) += alpha * acc. */
static void sg_micro(size_t kc, const float *restrict a, const float *restrict b, float alpha,
                     float *restrict C, size_t ldc, size_t rows, size_t cols)
{
    float acc[SG_MR][SG_NR];
    for (int i = 0; i < SG_MR; i++)
        for (int j = 0; j < SG_NR; j++) acc[i][j] = 0.0f;
    for (size_t p = 0; p < kc; p++) {
        const float *bp = b + p * SG_NR;
        const float *ap = a + p * SG_MR;
        for (int i = 0; i < SG_MR; i++) {
            float ai = ap[i];
            for (int j = 0; j < SG_NR; j++) acc[i][j] += ai * bp[j];
        }
    }
    if (rows == SG_MR && cols == SG_NR) {
        for (int i = 0; i < SG_MR; i++) {
            float *c = C + (size_t)i * ldc;
            for (int j = 0; j < SG_NR; j++) c[j] += alpha * acc[i][j];
        }
    } else {
        for (size_t i = 0; i < rows; i++) {
            float *c = C + i * ldc;
            for (size_t j = 0; j < cols; j++) c[j] += alpha * acc[i][j];
        }
    }
}

/* Unpacked fallback for when packing buffers cannot be allocated (C already scaled). */
static void sg_naive(bool tA, bool tB, size_t M, size_t N, size_t K, float alpha,
                     const float *A, size_t lda, const float *B, size_t ldb, float *C, size_t ldc)
{
    for (size_t i = 0; i < M; i++)
        for (size_t p = 0; p < K; p++) {
            float a = alpha * sg_a(tA, A, lda, i, p);
            float *c = C + i * ldc;
            for (size_t j = 0; j < N; j++) c[j] += a * sg_b(tB, B, ldb, p, j);
        }
}

void kiln_sgemm_portable(bool transA, bool transB, size_t M, size_t N, size_t K, float alpha,
                const float *A, size_t lda, const float *B, size_t ldb, float beta, float *C,
                size_t ldc)
{
    if (M == 0 || N == 0) return;
    for (size_t i = 0; i < M; i++) {
        float *c = C + i * ldc;
        if (beta == 0.0f)
            memset(c, 0, N * sizeof *c);
        else if (beta != 1.0f)
            for (size_t j = 0; j < N; j++) c[j] *= beta;
    }
    if (K == 0 || alpha == 0.0f) return;

    /* Small problems: packing costs more than it saves. */
    if (M * N * K <= 512) {
        sg_naive(transA, transB, M, N, K, alpha, A, lda, B, ldb, C, ldc);
        return;
    }

    size_t kc_max = K < SG_KC ? K : SG_KC;
    size_t nc_max = N < SG_NC ? N : SG_NC;
    size_t mc_max = M < SG_MC ? M : SG_MC;
    size_t nc_pad = (nc_max + SG_NR - 1) / SG_NR * SG_NR;
    size_t mc_pad = (mc_max + SG_MR - 1) / SG_MR * SG_MR;
    float *pb = kiln_malloc((nc_pad * kc_max + mc_pad * kc_max) * sizeof(float));
    if (!pb) {
        sg_naive(transA, transB, M, N, K, alpha, A, lda, B, ldb, C, ldc);
        return;
    }
    float *pa = pb + nc_pad * kc_max;

    for (size_t jc = 0; jc < N; jc += SG_NC) {
        size_t nc = N - jc < SG_NC ? N - jc : SG_NC;
        for (size_t pc = 0; pc < K; pc += SG_KC) {
            size_t kc = K - pc < SG_KC ? K - pc : SG_KC;
            sg_pack_b(transB, B, ldb, pc, kc, jc, nc, pb);
            for (size_t ic = 0; ic < M; ic += SG_MC) {
                size_t mc = M - ic < SG_MC ? M - ic : SG_MC;
                sg_pack_a(transA, A, lda, ic, mc, pc, kc, pa);
                for (size_t jr = 0; jr < nc; jr += SG_NR) {
                    size_t cols = nc - jr < SG_NR ? nc - jr : SG_NR;
                    const float *bpan = pb + jr * kc;
                    for (size_t ir = 0; ir < mc; ir += SG_MR) {
                        size_t rows = mc - ir < SG_MR ? mc - ir : SG_MR;
                        sg_micro(kc, pa + ir * kc, bpan, alpha, C + (ic + ir) * ldc + jc + jr,
                                 ldc, rows, cols);
                    }
                }
            }
        }
    }
    kiln_free(pb);
}

#ifdef KILN_HAVE_DNNL
#include "cpu/dnnl_util.h"
#include "cpu/isa.h"

/* oneDNN's sgemm (row-major, like ours) where it is available: about 4x the portable code
 * on one core of the development machine (docs/DEPENDENCIES.md). Empty products and any
 * oneDNN failure take the portable path, so kiln_sgemm still never fails. */
void kiln_sgemm(bool transA, bool transB, size_t M, size_t N, size_t K, float alpha,
                const float *A, size_t lda, const float *B, size_t ldb, float beta, float *C,
                size_t ldc)
{
    /* KILN_CPU_ISA=portable means kiln's own C code, GEMM included. */
    if (M && N && K && kiln_isa_active() != KILN_ISA_PORTABLE) {
        int prev = kiln_dnnl_threads_begin(); /* one OpenMP thread: see dnnl_util.h */
        dnnl_status_t st = dnnl_sgemm(transA ? 'T' : 'N', transB ? 'T' : 'N', (dnnl_dim_t)M,
                                      (dnnl_dim_t)N, (dnnl_dim_t)K, alpha, A, (dnnl_dim_t)lda, B,
                                      (dnnl_dim_t)ldb, beta, C, (dnnl_dim_t)ldc);
        kiln_dnnl_threads_end(prev);
        if (st == dnnl_success) return;
    }
    kiln_sgemm_portable(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
#else
void kiln_sgemm(bool transA, bool transB, size_t M, size_t N, size_t K, float alpha,
                const float *A, size_t lda, const float *B, size_t ldb, float beta, float *C,
                size_t ldc)
{
    kiln_sgemm_portable(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
#endif

/* ------------------------------------------------------------------ parallel */

struct sg_par {
    bool tA, tB, by_rows;
    size_t M, N, K, lda, ldb, ldc, block;
    float alpha, beta;
    const float *A, *B;
    float *C;
};

static void sg_par_chunk(void *ctx, size_t begin, size_t end, int worker)
{
    (void)worker;
    const struct sg_par *g = ctx;
    size_t lo = begin * g->block, hi = end * g->block;
    if (g->by_rows) {
        if (hi > g->M) hi = g->M;
        const float *a = g->tA ? g->A + lo : g->A + lo * g->lda;
        kiln_sgemm(g->tA, g->tB, hi - lo, g->N, g->K, g->alpha, a, g->lda, g->B, g->ldb, g->beta,
                   g->C + lo * g->ldc, g->ldc);
    } else {
        if (hi > g->N) hi = g->N;
        const float *b = g->tB ? g->B + lo * g->ldb : g->B + lo;
        kiln_sgemm(g->tA, g->tB, g->M, hi - lo, g->K, g->alpha, g->A, g->lda, b, g->ldb, g->beta,
                   g->C + lo, g->ldc);
    }
}

bool kiln_sgemm_par_splits(struct kiln_pool *pool, size_t M, size_t N, size_t K)
{
    size_t t = (size_t)kiln_pool_threads(pool);
    /* Below ~2 MFLOP per thread the split costs more than it saves. */
    double flops = 2.0 * (double)M * (double)N * (double)K;
    return t > 1 && flops >= 2e6 * (double)t && !(M < 32 && N < 32);
}

void kiln_sgemm_par(struct kiln_pool *pool, bool transA, bool transB, size_t M, size_t N,
                    size_t K, float alpha, const float *A, size_t lda, const float *B, size_t ldb,
                    float beta, float *C, size_t ldc)
{
    size_t t = (size_t)kiln_pool_threads(pool);
    if (!kiln_sgemm_par_splits(pool, M, N, K)) {
        kiln_sgemm(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    /* Split the larger of M and N into about 2 blocks per thread (room for imbalance), each
     * a multiple of 16 so that GEMM tiles stay whole. */
    struct sg_par g = {transA, transB, M >= N, M, N, K, lda, ldb, ldc, 0, alpha, beta, A, B, C};
    size_t len = g.by_rows ? M : N, want = 2 * t;
    size_t block = (len + want - 1) / want;
    block = (block + 15) / 16 * 16;
    g.block = block;
    kiln_pool_for(pool, (len + block - 1) / block, 1, sg_par_chunk, &g);
}
