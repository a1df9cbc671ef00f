/* dnnl_matmul.h: float32 products C = A * B with a constant B, prepacked once by oneDNN's
 * matmul primitive (Debian's libdnnl; docs/DEPENDENCIES.md), for MatMul, Gemm and their fused
 * forms when the shapes are known when the engine is prepared.
 *
 * Why: kiln_sgemm (dnnl_sgemm) repacks B on every call. For transformer-sized products
 * (M = 128 tokens, K x N = 768 x 3072 weights) that repacking is a large share of the work;
 * the matmul primitive takes B in its own blocked format, reordered once at prepare.
 *
 * kiln's threads split the product into T slices, each its own primitive, run one per pool
 * thread on one OpenMP thread (dnnl_util.h: a scratchpad per thread, the memory objects of
 * the arguments cached per thread). Mostly by columns: slices of about N / T columns
 * (multiples of 16), each with its own packed share of B. For float32 oneDNN 2.6 gives a
 * strided column block of C its brgemm kernels (a one-row slice its gemv on plain B, which
 * streams B as fast), and a column slice streams only its share of B; row slices
 * (each streaming all of B) measured no faster on the bench models' shapes and up to 2x
 * slower (unlike int8, dnnl_int8.c, whose strided column blocks fall to gemm:jit). A product
 * too narrow for 16 columns a thread but with at least 16 rows a thread (N < 16 T <= M)
 * splits by rows instead: slices of whole dense rows of C, all sharing one packed B (a
 * shorter last block packs its own when oneDNN picks another layout for it). A column slice
 * whose in-place primitive would keep B plain (oneDNN's gemm fallback, which repacks B at
 * every call: it declines some row strides of C, e.g. an odd N of 50257) writes a dense
 * per-thread buffer instead, copied into C. The packed format is oneDNN's choice for this
 * CPU; the blob records it, and a loaded engine packs again when it differs. A result does
 * not depend on the split beyond summation order (each element is one dot product over K;
 * oneDNN may block K differently per primitive shape): results are deterministic for an
 * engine; engines built for different thread counts can differ in the last bits (as the
 * convolutions', docs/fused-ops.md).
 */
#ifndef KILN_CPU_DNNL_MATMUL_H
#define KILN_CPU_DNNL_MATMUL_H

#include <stdbool.h>
#include <stddef.h>

#include "base/base.h"
#include "base/pool.h"

struct kiln_kprep;
struct kiln_dnnl_mm;

/* Prepares C[M, N] = A[M, K] * op(B) for the constant B: op(B) = B ([K, N], row stride ldb)
 * or, with transB, B^T (B [N, K], row stride ldb). Memory comes from kiln_kprep_alloc and
 * the primitives are released with the engine. *out NULL (and KILN_OK) when oneDNN is not
 * there, the instruction set is portable, or oneDNN declines; an error only for out of
 * memory. */
kiln_status kiln_dnnl_mm_prepare(struct kiln_kprep *p, size_t M, size_t K, size_t N, const float *B,
                         size_t ldb, bool transB, struct kiln_dnnl_mm **out);
/* C (row stride N) = A (row stride K) * op(B), over the pool. False if oneDNN failed (C is
 * then undefined; the caller falls back to kiln_sgemm). */
bool kiln_dnnl_mm_run(const struct kiln_dnnl_mm *mm, struct kiln_pool *pool, const float *A, float *C);
/* M, K, N it was prepared for. */
void kiln_dnnl_mm_dims(const struct kiln_dnnl_mm *mm, size_t *M, size_t *K, size_t *N);
/* How it splits over the threads: the number of slices, *by_rows whether they are blocks of
 * rows (else of columns). */
int kiln_dnnl_mm_slices(const struct kiln_dnnl_mm *mm, bool *by_rows);

#endif
