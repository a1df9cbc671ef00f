/* dnnl_matmul.h: float32 products C = A * B with a constant B, prepacked once by oneDNN's
 * matmul primitive (Debian's libdnnl; docs/DEPENDENCIES.md), for MatMul, Gemm and their fused
 * forms when the shapes are known when the engine is prepared.
 *
 * Why: kiln_sgemm (dnnl_sgemm) repacks B on every call. For transformer-sized products
 * (M = 128 tokens, K x N = 768 x 3072 weights) that repacking is a large share of the work;
 * the matmul primitive takes B in its own blocked format, reordered once at prepare.
 *
 * kiln's threads split the columns: T slices of about N / T columns (multiples of 16), each
 * its own primitive and packed weights, run one per pool thread on one OpenMP thread
 * (dnnl_util.h: a scratchpad per thread, the memory objects of the arguments cached per
 * thread). A slice whose in-place primitive would keep B plain (oneDNN's gemm fallback, which
 * repacks B at every call: it declines some row strides of C, e.g. an odd N of 50257) writes
 * a dense per-thread buffer instead, copied into C. The packed format is oneDNN's choice for this CPU; the blob records it, and a
 * loaded engine packs again when it differs.
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
