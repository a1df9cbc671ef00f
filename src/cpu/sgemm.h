/* sgemm.h: single-precision general matrix multiply, BLAS-style, row-major.
 *
 * C = alpha * op(A) * op(B) + beta * C, where op(X) is X or its transpose. Row-major
 * means element (i, j) of an R x S matrix X with leading dimension ldx lives at
 * X[i * ldx + j]. op(A) is M x K: A is stored M x K (lda >= K) when !transA, else K x M
 * (lda >= M). op(B) is K x N: B is stored K x N (ldb >= N) when !transB, else N x K
 * (ldb >= K). C is M x N (ldc >= N).
 *
 * kiln_sgemm calls oneDNN's dnnl_sgemm when kiln is built with it (KILN_HAVE_DNNL), else
 * kiln_sgemm_portable: a blocked implementation (packing + a register-tile micro-kernel that
 * compilers auto-vectorize). Both follow the same contract; tests check both.
 */
#ifndef KILN_CPU_SGEMM_H
#define KILN_CPU_SGEMM_H

#include <stdbool.h>
#include <stddef.h>

#include "base/pool.h"

/* Contract: any of M, N, K may be 0 (K == 0 gives C = beta * C). beta == 0 overwrites C
 * without reading it (NaN/garbage in C does not propagate), as BLAS does. C must not
 * overlap A or B. Never fails: when scratch memory for packing cannot be allocated it
 * falls back to an unpacked loop. Single-threaded (oneDNN is held to one thread too);
 * reentrant. */
void kiln_sgemm(bool transA, bool transB, size_t M, size_t N, size_t K, float alpha,
                const float *A, size_t lda, const float *B, size_t ldb, float beta, float *C,
                size_t ldc);
void kiln_sgemm_portable(bool transA, bool transB, size_t M, size_t N, size_t K, float alpha,
                         const float *A, size_t lda, const float *B, size_t ldb, float beta,
                         float *C, size_t ldc);

/* kiln_sgemm split over the pool's threads: the larger of M and N is cut into blocks, each
 * block one kiln_sgemm. Same contract; each element of C is computed by exactly one call,
 * in K order. (Bit-identical results across thread counts are not promised: a library may
 * pick another kernel for a narrower block.) Small products run on the caller alone. */
/* Whether kiln_sgemm_par splits an M x N x K product over the pool; when false it runs one
 * kiln_sgemm on the caller (kernels use this to run such small products side by side). */
bool kiln_sgemm_par_splits(struct kiln_pool *pool, size_t M, size_t N, size_t K);
void kiln_sgemm_par(struct kiln_pool *pool, bool transA, bool transB, size_t M, size_t N,
                    size_t K, float alpha, const float *A, size_t lda, const float *B, size_t ldb,
                    float beta, float *C, size_t ldc);

#endif
