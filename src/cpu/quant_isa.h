/* quant_isa.h: DynamicQuantizeLinear's two passes, compiled per instruction set
 * (src/cpu/isa/quant.c; cpu/isa.h).
 *
 * Both give exactly the reference's results (src/cpu/ops/quant.c, the ONNX definition in
 * float32): the range starts at [0, 0] and grows with every non-NaN element (NaN is
 * skipped); each element quantizes to saturate(round_half_even(x / scale) + zp) in float32
 * (a true division, never a multiplication by 1/scale), NaN to zp. Vector max/min return
 * their second operand for NaN and for equal operands, so the accumulator never takes a NaN
 * or a -0, as the scalar comparisons never do; vroundps / vrndscaleps round half to even
 * like nearbyintf in the default rounding mode.
 */
#ifndef KILN_CPU_QUANT_ISA_H
#define KILN_CPU_QUANT_ISA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cpu/isa.h"

/* *mn = min(0, x...), *mx = max(0, x...) over the non-NaN elements of x[0..n). */
KILN_ISA_DECLARE(void, kiln_dql_range_isa, (const float *x, size_t n, float *mn, float *mx));
/* y[j] = saturate_u8(nearbyintf(x[j] / scale) + zp), NaN -> zp (zp integral in [0, 255]). */
KILN_ISA_DECLARE(void, kiln_dql_quantize_isa, (const float *x, size_t n, float scale, float zp, uint8_t *y));

/* The zero-point correction of one row of an int8 product (dnnl_int8.h), wrapping int32:
 * y[n] += corr[n] * r - a * colsum[n] for n in [0, n). */
KILN_ISA_DECLARE(void, kiln_imm_fold_row_isa,
                 (int32_t *y, size_t n, const int32_t *corr, const int32_t *colsum, uint32_t r, uint32_t a));

/* One tap of a depthwise integer convolution over c channels, wrapping int32:
 * acc[j] += (x[j] - zp) * w[j], x uint8 (int8 when x_signed). */
KILN_ISA_DECLARE(void, kiln_qdw_tap_isa,
                 (uint32_t *acc, const uint8_t *x, bool x_signed, int32_t zp, const int32_t *w, size_t c));

/* kiln.DynQuantConv's epilogue on a tile, channels-last to channels-first:
 * y[m * ys + p] = float(acc[p * as + m]) * scale [+ bias[m]] for p < np, m < nm, the product
 * and the sum each rounded to float32 (no fused multiply-add), as the Mul and Add nodes. */
KILN_ISA_DECLARE(void, kiln_qconv_epilogue_isa,
                 (float *y, size_t ys, const int32_t *acc, size_t as, size_t np, size_t nm, float scale,
                  const float *bias));

/* DynamicQuantizeLinear's quantization of a tile to channels-last: y[p * ys + c] =
 * quantize(x[c * xs + p]) (as kiln_dql_quantize_isa) for p < np, c < nc. */
KILN_ISA_DECLARE(void, kiln_dql_quantize_nhwc_isa,
                 (const float *x, size_t xs, size_t np, size_t nc, float scale, float zp, uint8_t *y, size_t ys));

/* QuantizeLinear, float32 x and scale, an integer target of 1 or 2 bytes (4-bit types are
 * stored a byte each): y[j] = clamp(nearbyintf(x[j] / s) + z, lo, hi), NaN -> z, with s
 * and z (NULL: 0) the parameters s[0], z[0], or s[j], z[j] when per_elem; the division and
 * the rounding in float32, which equals the ONNX reference's double arithmetic on float32
 * operands (a double quotient of two floats rounds to the same float). */
KILN_ISA_DECLARE(void, kiln_q_f32_isa,
                 (const float *x, size_t n, const float *s, const float *z, bool per_elem, float lo, float hi,
                  void *y, int bytes));

/* DequantizeLinear to float32: y[j] = (float(x[j]) - z) * s (z NULL: no subtraction), the
 * parameters as for kiln_q_f32_isa; x of kind KILN_DQ_*. */
enum { KILN_DQ_U8, KILN_DQ_I8, KILN_DQ_U16, KILN_DQ_I16, KILN_DQ_I32 };
KILN_ISA_DECLARE(void, kiln_dq_f32_isa,
                 (const void *x, int kind, size_t n, const float *s, const float *z, bool per_elem, float *y));

/* kiln.DequantMatMul's few-row product: acc[n] += sum_k x[k] * float(w[k * ldw + n] - z[n])
 * for k < kb, n < nw (z NULL: 0); w uint8 (int8 when w_signed), the difference exact in
 * int32, the sum in float32 (fused multiply-adds where the instruction set has them: not
 * bit-identical to DequantizeLinear -> MatMul, whose sums run in another order anyway). */
KILN_ISA_DECLARE(void, kiln_wo_rows_isa,
                 (float *acc, const float *x, const uint8_t *w, size_t ldw, bool w_signed, const int32_t *z,
                  size_t kb, size_t nw));

/* kiln.DynQuantMatMul's epilogue on one row, in place: the int32 v = y[c] (less a * colsum[c],
 * wrapping, when colsum is not NULL: the A zero point's correction, dnnl_int8.h), then
 * y[c] = float(v) * scale[c] [+ bias[c]] as float32, the product and the sum rounded apart. */
KILN_ISA_DECLARE(void, kiln_dqmm_epilogue_isa,
                 (void *y, size_t n, const float *scale, const float *bias, uint32_t a, const int32_t *colsum));

#endif
