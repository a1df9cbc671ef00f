/* int8_gemm_isa.h: kiln's own exact 8-bit integer product, compiled per instruction set
 * (src/cpu/isa/int8_gemm.c; cpu/isa.h), for where oneDNN has no exact int8 kernel (no
 * VNNI/AMX at the active level, KILN_CPU_ISA=avx2, or no oneDNN at all).
 *
 *   C[m, n] = sum_k A[m, k] * B'[k, n]     (int32, exact: no saturation anywhere)
 *
 * A is uint8 or int8 (row-major, row stride lda); B' is int8 or int16 values packed once by
 * kiln_i8gemm_pack into int16 pairs: column blocks of KILN_I8GEMM_NB columns, each
 * [ceil(K/2)][NB][2] (k even, k odd), the columns past N and the row past an odd K zero.
 * A's pairs are widened to int16 (vpmovzxbw / vpmovsxbw) and broadcast; vpmaddwd multiplies
 * 16-bit pairs into exact 32-bit sums (|a| <= 255, |b| <= 255: a pair sums to at most
 * 130050, never the one saturating case -32768 * -32768 * 2), vpaddd accumulates. This
 * avoids vpmaddubsw, whose 16-bit pair sums saturate (255 * 127 * 2 > 32767). The int32
 * accumulation wraps only past 2^31, which needs K > 33000 of the extremes; the reference
 * wraps the same way (modular int32).
 */
#ifndef KILN_CPU_INT8_GEMM_ISA_H
#define KILN_CPU_INT8_GEMM_ISA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cpu/isa.h"

#define KILN_I8GEMM_NB 16

/* int16 elements of B' packed for K x N (the caller checks K * N for overflow first). */
static inline size_t kiln_i8gemm_packed_len(size_t K, size_t N)
{
    return (N + KILN_I8GEMM_NB - 1) / KILN_I8GEMM_NB * ((K + 1) / 2) * KILN_I8GEMM_NB * 2;
}

/* Packs B'[k, n] = b(k * N + n) into bp (kiln_i8gemm_packed_len elements), b int8 when
 * b_signed, else uint8 less `off` (the caller's shift, e.g. 128 for uint8 weights). */
static inline void kiln_i8gemm_pack(const void *b, bool b_signed, int32_t off, size_t K, size_t N,
                                    int16_t *bp)
{
    size_t K2 = (K + 1) / 2, NB = KILN_I8GEMM_NB;
    for (size_t jb = 0; jb * NB < N; jb++)
        for (size_t k2 = 0; k2 < K2; k2++)
            for (size_t j = 0; j < NB; j++)
                for (size_t h = 0; h < 2; h++) {
                    size_t k = 2 * k2 + h, n = jb * NB + j;
                    int32_t v = 0;
                    if (k < K && n < N)
                        v = b_signed ? ((const int8_t *)b)[k * N + n]
                                     : (int32_t)((const uint8_t *)b)[k * N + n] - off;
                    *bp++ = (int16_t)v;
                }
}

/* C[m, n] for m in [0, M), n in [nb0 * NB, min(nb1 * NB, N)): the columns of packed blocks
 * [nb0, nb1), C's rows at the stride ldc. A: M rows of K (uint8, int8 when a_signed) at the
 * stride lda; only A's first K columns are read. */
KILN_ISA_DECLARE(void, kiln_i8gemm_isa,
                 (const void *A, size_t lda, bool a_signed, size_t M, size_t K, const int16_t *bp, size_t N,
                  size_t nb0, size_t nb1, int32_t *C, size_t ldc));

/* kiln.QConv's requantization of one row of int32 accumulators (src/cpu/ops/qconv.c's
 * requant, bit for bit: float32 operations in its order, no contraction):
 *   v = ((float)acc[m] + (float)bias[m]) * S[m]; act 1: max(v, 0); act 2: clamp to [lo, hi];
 *   y[m] = saturate(nearbyintf(v + yz)) as int8 when y_signed, else uint8; bias NULL: 0. */
KILN_ISA_DECLARE(void, kiln_i8_requant_row_isa,
                 (const int32_t *acc, size_t n, const int32_t *bias, const float *S, int act, float lo,
                  float hi, int32_t yz, bool y_signed, void *y));

#endif
