/* pgemm.h: kiln's own float32 GEMM for a constant B, prepacked once ("kiln-pgemm"):
 *
 *   C[M, N] (+)= A[M, K] * op(B)  [+ bias[N]]  [+ Z[M, N]]  [then an activation, cpu/act.h]
 *
 * for MatMul, Gemm and kiln.FusedMatMul / FusedGemm (src/cpu/ops/gemm.c) where it measures
 * faster than oneDNN 2.6's matmul primitive (dnnl_matmul.h), and for any caller with A and C
 * as rows at a stride (a 1x1 NHWC convolution: A = [pixels, C_in] at the row stride of its
 * input, C = [pixels, C_out] at its output's).
 *
 * Prepare packs op(B) (B [K, N], or B^T from B [N, K]) into panels of 32 columns
 * (cpu/pgemm_isa.h), a layout that does not depend on the CPU: it is a blob of the engine
 * (kiln_kprep_blob), saved in engine files and mapped back at load. M is not fixed at
 * prepare: one packed B serves any number of rows.
 *
 * Run splits the product over kiln's pool: mostly by columns (slices of whole 32-column
 * panels, each streaming only its share of B, as dnnl_matmul.c splits), by rows when there
 * are fewer panels than threads (a narrow N) and rows enough. It never allocates and never
 * fails. Each element of C is computed by exactly one thread in an order fixed by K alone
 * (cpu/pgemm_isa.h): results do not depend on the thread count (unlike oneDNN's, which may block K
 * differently per slice shape).
 *
 * Available where the active instruction set is AVX2 or AVX-512 (kiln_pgemm_available);
 * the portable copy of the kernel exists (tests, the link) but callers keep oneDNN or
 * kiln_sgemm there.
 */
#ifndef KILN_CPU_PGEMM_H
#define KILN_CPU_PGEMM_H

#include <stdbool.h>
#include <stddef.h>

#include "base/base.h"
#include "base/pool.h"
#include "cpu/isa.h"
#include "cpu/pgemm_isa.h"

struct kiln_kprep;

struct kiln_pgemm {
    size_t K, N;
    const float *bp; /* kiln_pgemm_packed_len(K, N) floats */
    enum kiln_isa isa; /* the kernel's level */
    void (*block)(const struct kiln_pgemm_args *g, size_t m0, size_t m1, size_t n0, size_t n1, size_t k0,
                  size_t k1); /* the kernel level's kiln_pgemm_block_isa */
};

/* What run adds after the product; zeros: nothing. */
struct kiln_pgemm_epi {
    const float *bias;          /* [N] or NULL */
    const float *z;             /* [M, N] at the stride ldz, or NULL; may be C (ldz == ldc) */
    size_t ldz;
    const struct kiln_act *act; /* NULL or kind NONE: none */
};

/* Whether the active instruction set has a pgemm kernel (AVX2 or AVX-512). */
bool kiln_pgemm_available(void);

/* Floats of a packed K x N B (0 when that overflows size_t). */
size_t kiln_pgemm_packed_len(size_t K, size_t N);

/* Packs op(B) into bp (kiln_pgemm_packed_len(K, N) floats): B [K, N] at the row stride ldb,
 * or with transB B [N, K] at the row stride ldb. */
void kiln_pgemm_pack(const float *B, size_t ldb, bool transB, size_t K, size_t N, float *bp);

/* Fills g for an already packed bp, with instruction-set level isa's kernel (tests and
 * benchmarks call each level; kiln_isa_active() for the rest). */
void kiln_pgemm_init(struct kiln_pgemm *g, size_t K, size_t N, const float *bp, enum kiln_isa isa);

/* Prepares the product with the constant op(B) for an engine: packs it into blob `key` of the
 * node (or reads that blob from the engine file being loaded; a file without it is packed
 * again into prepare's memory) and fills *out (memory of kiln_kprep_alloc). *out NULL (and
 * KILN_OK) when pgemm is not available or a dim is 0; an error only for out of memory. */
kiln_status kiln_pgemm_prepare(struct kiln_kprep *p, uint32_t key, size_t K, size_t N, const float *B,
                               size_t ldb, bool transB, struct kiln_pgemm **out);

/* C[M, N] (row stride ldc) = A[M, K] (row stride lda, >= K) * op(B), or += with acc, then the
 * epilogue epi (NULL: none) when given, over the pool (NULL: the caller alone). C must not
 * overlap A. M may be 0. */
void kiln_pgemm_run(const struct kiln_pgemm *g, struct kiln_pool *pool, size_t M, const float *A, size_t lda,
                    float *C, size_t ldc, bool acc, const struct kiln_pgemm_epi *epi);

/* The row stride (in floats) that A should be copied to before run, 0 when A's rows are fine
 * at lda. Rows at a stride of a multiple of 2 KiB (contiguous rows of K = 512, 1024, 3072)
 * fall into one or two of L1's 64 sets; the AVX-512 tile's 14 rows do not fit in their ways
 * (8 on Zen 4) and every broadcast of A comes from L2: 128 x 768 x 3072 at 67 against 98
 * GFLOP/s with the rows copied (Zen 4, one thread). The stride returned is an odd number of
 * cache lines. */
size_t kiln_pgemm_a_stride(const struct kiln_pgemm *g, size_t M, size_t lda);

/* Copies A's M rows (K floats each, at lda) to dst at the stride ld, over the pool. */
void kiln_pgemm_copy_a(const struct kiln_pgemm *g, struct kiln_pool *pool, size_t M, const float *A, size_t lda,
                       float *dst, size_t ld);

/* Tests: the least work of a slice (defaults 1e6 flops, 131072 bytes of B; below 1e6 flops
 * also a row slice of a single row), so that small products split too. Not thread-safe. */
void kiln_pgemm_set_min_work(double flops, double wbytes);

/* How run splits M rows over `threads` threads: the number of slices and whether by rows. */
int kiln_pgemm_slices(const struct kiln_pgemm *g, size_t M, int threads, bool *by_rows);

#endif
