/* pgemm_isa.h: the micro-kernels of kiln's own float32 GEMM with a prepacked B (cpu/pgemm.h),
 * compiled per instruction set (src/cpu/isa/pgemm.c; cpu/isa.h).
 *
 *   C[m, n] (+)= sum_k A[m, k] * B[k, n]    then, once K is done, + bias[n], + Z[m, n],
 *                                          then the activation, per row (cpu/act.h)
 *
 * B is packed once into panels of KILN_PGEMM_NR = 32 columns: panel j holds columns
 * [32 j, 32 j + 32) as [K][32] (row k of the panel is B[k, 32 j .. 32 j + 31]), the columns
 * past N zero. The layout is the same at every level (the AVX2 kernel reads a panel as two
 * 16-column halves), so a packed blob does not depend on the CPU. A is read in place: rows
 * at the stride lda, each element broadcast (packing A measured no faster: the 14 rows of a
 * tile stream from L2 as fast as a packed copy would).
 *
 * Register tiles: AVX-512 14 x 32 (28 zmm accumulators, two zmm of B, one broadcast of A),
 * AVX2 6 x 16 (12 ymm accumulators), the portable copy plain C 4 x 32 left to the compiler.
 * Row tails run the same kernel with fewer rows (compiled per row count); the column tail of
 * the last panel computes all 32 columns (B is zero there) and stores the first nc with a
 * mask. Each element is a sum over k in ascending order in blocks of K fixed by K alone (at
 * most 768), each block's sum added to the previous ones in C; one FMA per k at the vector
 * levels (portable: a*b+c), so results do not depend on the row tiles or on how the caller
 * splits rows and columns over threads.
 *
 * Epilogue: on the last K block (k1 == K) a tile's store adds bias (a vector over the
 * columns) and then Z (a second [M, N] tensor at the stride ldz), each a float add, in that
 * order, then the activation runs on the finished rows of a group of panels (up to 128
 * columns, still in L1) through the same kiln_act_apply_f32 copy that kiln.FusedMatMul's
 * unfused pass runs: the same floats as MatMul, Add(bias), Add(Z), activation.
 */
#ifndef KILN_CPU_PGEMM_ISA_H
#define KILN_CPU_PGEMM_ISA_H

#include <stdbool.h>
#include <stddef.h>

#include "cpu/act.h"
#include "cpu/isa.h"

#ifndef KILN_PGEMM_NR /* -DKILN_PGEMM_NR=48/64 (with -DMR) builds the other tiles measured */
#define KILN_PGEMM_NR 32
#endif

/* One product: what the block function reads. */
struct kiln_pgemm_args {
    const float *A; /* rows of A at the stride lda (only K columns read) */
    size_t lda;
    const float *bp; /* packed B: panel j at bp + j * K * KILN_PGEMM_NR */
    size_t K, N;
    float *C; /* rows of C at the stride ldc */
    size_t ldc;
    bool acc;                  /* add the product to what C holds (else overwrite it) */
    const float *bias;         /* [N] or NULL */
    const float *z;            /* [M, N] at the stride ldz, or NULL */
    size_t ldz;
    const struct kiln_act *act; /* NULL or kind NONE: none */
};

/* C[m0:m1, n0:n1] (+)= A[m0:m1, k0:k1] * B[k0:k1, n0:n1]: overwritten when k0 == 0 and !acc,
 * else added to; the epilogue (bias, Z, activation) when k1 == K. n0 is a multiple of
 * KILN_PGEMM_NR and n1 one too or N; m0 < m1 <= M, k0 < k1 <= K. Writes only that block of C;
 * C must not overlap A, B, bias or Z (Z may be C itself: each element is read before it is
 * written). Never fails, never allocates. */
KILN_ISA_DECLARE(void, kiln_pgemm_block_isa,
                 (const struct kiln_pgemm_args *g, size_t m0, size_t m1, size_t n0, size_t n1, size_t k0,
                  size_t k1));

#endif
