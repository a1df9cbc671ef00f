/* dnnl_int8.h: exact int32 integer products Y = (A - a_zp) * (B - b_zp) with a constant
 * 8-bit B, prepacked once by oneDNN's int8 matmul primitive (Debian's libdnnl 2.6;
 * docs/DEPENDENCIES.md, docs/quantization.md), for MatMulInteger when the shapes are known
 * when the engine is prepared.
 *
 * oneDNN computes only the raw product D = A * B' with B' = B - off in int8 (off = 128 for a
 * uint8 B, 0 for int8), A as stored (uint8 or int8), int32 accumulation and destination, no
 * scales: its VNNI (vpdpbusd) and AMX kernels accumulate without saturation, so D is exact.
 * The zero points are folded in afterwards, in wrapping int32 arithmetic like the reference:
 *   Y[m, n] = D[m, n] - a_zp * colsum(B')[n] + (off - b_zp[n]) * (rowsum(A)[m] - K * a_zp)
 * with colsum(B') computed at prepare. oneDNN runs D only where it has VNNI or AMX (its
 * effective instruction set, after kiln's cap): without them its kernels go through
 * vpmaddubsw, whose 16-bit pair sums saturate, and the result would not be exact. There
 * (KILN_CPU_ISA=avx2, an AVX2-only CPU, any level below AVX2) and in builds without oneDNN,
 * or when oneDNN declines, D comes from kiln's own exact kernel (cpu/int8_gemm_isa.h: B'
 * widened to int16 pairs at prepare, vpmaddwd), with the same correction afterwards; A's
 * row stride is then K itself. Its threads take panels of 48 rows, and the 16-column blocks
 * too when the panels are fewer than twice the threads.
 *
 * kiln's threads split the product into T slices, each its own primitive, run one per pool
 * thread; each slice applies the correction to its part of Y. The rows are split when each
 * slice gets at least 16 (the slices share one packed B and write dense rows, which oneDNN's
 * brgemm AMX / VNNI kernels need); fewer rows split the columns like dnnl_matmul.h, each
 * slice with its own packed columns (oneDNN then runs gemm:jit on the strided output).
 */
#ifndef KILN_CPU_DNNL_INT8_H
#define KILN_CPU_DNNL_INT8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"
#include "base/pool.h"

struct kiln_kprep;
struct kiln_dnnl_imm;

/* Prepares Y[M, N] = (A[M, K] - a_zp) * (B[K, N] - b_zp) for the constant B (row-major,
 * int8 when b_signed, else uint8) and its constant zero point bzp (nbzp 0: none, 1: per
 * tensor, N: per column); A is int8 when a_signed, else uint8, and its zero point (per
 * tensor) is given at run. M 0: the rows are known only at run (a symbolic batch or
 * sequence); the product then runs in blocks of 256, 64, 16, 4 and 1 rows, each its own
 * primitive on the one packed B. Memory comes from kiln_kprep_alloc; the primitives are released
 * with the engine. Without oneDNN's exact kernels, kiln's own (above). *out NULL (KILN_OK)
 * only for K or N 0; an error for out of memory. */
KILN_NODISCARD kiln_status kiln_dnnl_imm_prepare(struct kiln_kprep *p, size_t M, size_t K, size_t N,
                                                 bool a_signed, const void *B, bool b_signed,
                                                 const int32_t *bzp, size_t nbzp,
                                                 struct kiln_dnnl_imm **out);

/* Y = (A - a_zp) * (B - b_zp) (int32, row-major [M, N]) on the pool's threads, A's rows at
 * the stride kiln_dnnl_imm_lda with zeros past K; M the
 * prepared one unless that was 0. False when oneDNN fails or M is not the prepared (the
 * caller then takes its reference loop). kiln's own kernel never fails. */
bool kiln_dnnl_imm_run(const struct kiln_dnnl_imm *mm, struct kiln_pool *pool, const void *A, size_t M,
                       int32_t a_zp, int32_t *Y);

/* A's row stride: K rounded up to a multiple of 4, the columns past K zero. oneDNN 2.6's AMX
 * int8 matmul faults (SIGILL) on some shapes with a K tail (K 125..127 with M >= 65 and N not
 * a multiple of 16, found by test_int8_fast), so kiln never gives it one: B gets zero rows,
 * A zero columns, which add nothing. */
size_t kiln_dnnl_imm_lda(const struct kiln_dnnl_imm *mm);

/* colsum(B') [N] when the correction needs no row sums (every b_zp[n] equals off: int8 B
 * without a zero point, uint8 B with 128), else NULL: then running with a_zp 0 and taking
 * Y - a_zp * colsum afterwards (wrapping) gives the same Y, which lets a caller fold the
 * correction into its own pass over Y. */
const int32_t *kiln_dnnl_imm_colsum(const struct kiln_dnnl_imm *mm);

/* The kernel that runs the product: "onednn-int8", or kiln's own "kiln-int8-avx512",
 * "kiln-int8-avx2", "kiln-int8-portable". */
const char *kiln_dnnl_imm_kernel(const struct kiln_dnnl_imm *mm);

/* The prepared M (0: given at run), K, N. */
void kiln_dnnl_imm_dims(const struct kiln_dnnl_imm *mm, size_t *M, size_t *K, size_t *N);

#endif
