/* tensor_util.h: helpers the CPU kernels (src/cpu/ops) share: reading tensors of any
 * numeric dtype as float32/double/int64 arrays and writing results back, float16/bfloat16
 * chunk conversions, axis normalization, integer division that rounds up or down, slice
 * selection along an axis and string copies. Not a public interface.
 *
 * Two ways to get a converted copy, by who frees it:
 * - kiln_stage_f32 / kiln_stage_out_f32 / kiln_unstage_f32 use the run's scratch memory
 *   (freed after the kernel returns) and skip the copy for float32 tensors;
 * - kiln_load_f64 / kiln_load_i64 always copy into kiln_malloc'd arrays the caller frees.
 * Conversions follow kiln's scalar rules: float16/bfloat16 widen exactly and round to
 * nearest even through float32 (ir/half.h); other stores go through kiln_tensor_set_f64.
 */
#ifndef KILN_CPU_TENSOR_UTIL_H
#define KILN_CPU_TENSOR_UTIL_H

#include "cpu/kernel.h"
#include "ir/half.h"

/* ------------------------------------------------------------------ dtype classes */

/* float32, float64, float16 and bfloat16: the "real" float types most math ops take (not
 * the float8/float4 family). */
static inline bool kiln_dtype_is_real_float(kiln_dtype dt)
{
    return dt == KILN_DTYPE_F32 || dt == KILN_DTYPE_F64 || dt == KILN_DTYPE_F16 ||
           dt == KILN_DTYPE_BF16;
}

/* ------------------------------------------------------------------ float32 staging */

/* *out = t's elements as float32: t's own data when t is float32, else a converted copy in
 * scratch memory (float16/bfloat16/int8/uint8 exactly, float64 rounded; any numeric dtype
 * converts through kiln_tensor_get_f64). Fails only for lack of memory. */
KILN_NODISCARD kiln_status kiln_stage_f32(struct kiln_kctx *k, const struct kiln_tensor *t,
                                          const float **out);

/* A float32 buffer of numel(t) elements for computing output t: t's own data when t is
 * float32, else scratch memory that kiln_unstage_f32 then converts into t. */
KILN_NODISCARD kiln_status kiln_stage_out_f32(struct kiln_kctx *k, struct kiln_tensor *t,
                                              float **out);

/* Stores src[0..numel(t)) into t, rounding to t's dtype (integers saturate, see
 * kiln_tensor_set_f64). Does nothing when src is t's own data (a float32 output). */
void kiln_unstage_f32(struct kiln_tensor *t, const float *src);

/* n float16 (dt = F16) or bfloat16 (dt = BF16) values to float32 and back, in bulk. x and y
 * may not overlap. */
void kiln_half_load_f32(kiln_dtype dt, const uint16_t *x, size_t n, float *y);
void kiln_half_store_f32(kiln_dtype dt, const float *x, size_t n, uint16_t *y);

/* ------------------------------------------------------------------ double / int64 copies */

/* Converts elements x[i0 .. i0+n) of dtype dt to double: every float type (the float8/float4
 * family through kiln_f8_to_f32), integers of any width (int64/uint64 beyond 2^53 round),
 * bool as 0/1. Other dtypes give NaN. */
void kiln_to_f64_n(kiln_dtype dt, const void *x, size_t i0, size_t n, double *d);

/* Converts elements x[i0 .. i0+n) of an integer or bool dtype to int64 bit patterns: signed
 * types sign-extend (int4/int2 are stored sign-extended in a byte), unsigned ones zero-extend,
 * uint64 keeps its bits. Other dtypes give 0. */
void kiln_to_i64_n(kiln_dtype dt, const void *x, size_t i0, size_t n, int64_t *d);

/* Copies t's elements into a new double array (*out; at least one element so that empty
 * tensors work too; free with kiln_free). Takes float32/float64/float16/bfloat16, integers and
 * bool; anything else fails with KILN_E_UNSUPPORTED ("input '<what>' is <dtype>; expected a
 * numeric type"). */
KILN_NODISCARD kiln_status kiln_load_f64(struct kiln_kctx *k, const struct kiln_tensor *t,
                                         const char *what, double **out);

/* Copies an integer or bool tensor into a new int64 array (as kiln_to_i64_n; free with
 * kiln_free). Other dtypes fail with KILN_E_UNSUPPORTED naming `what`. */
KILN_NODISCARD kiln_status kiln_load_i64(struct kiln_kctx *k, const struct kiln_tensor *t,
                                         const char *what, int64_t **out);

/* Stores d[0..n) into the first n elements of numeric tensor t: float32/float64 directly,
 * float16/bfloat16 rounded through float32, other dtypes by kiln_tensor_set_f64 (integers
 * truncate and saturate). */
void kiln_store_f64(struct kiln_tensor *t, const double *d, size_t n);

/* Stores int64 values d[0..n) into an integer or bool tensor t, keeping the low bits of its
 * storage (8/16/32/64 bits: two's complement wrap-around); bool gets d != 0. Sub-byte types
 * (int4, uint2, ...) keep the low 8 bits, not re-wrapped to their width. Other dtypes are
 * left untouched. */
void kiln_store_i64(struct kiln_tensor *t, const int64_t *d, size_t n);

/* ------------------------------------------------------------------ axes and arithmetic */

/* Normalizes `axis` of a rank-`rank` tensor from [-rank, rank-1] to [0, rank). Fails with
 * KILN_E_INVALID_ARG, "<what> is <axis>, out of range [-rank, rank-1] for rank <rank>";
 * `what` names the attribute or input ("attribute 'axis'", "axes entry"). */
KILN_NODISCARD kiln_status kiln_norm_axis(struct kiln_kctx *k, int64_t axis, int rank,
                                          const char *what, int *out);

/* a / b rounded up and down (b > 0, a any sign), as Python's -(-a // b) and a // b. */
static inline int64_t kiln_div_ceil(int64_t a, int64_t b)
{
    return a >= 0 ? (a + b - 1) / b : -((-a) / b);
}

static inline int64_t kiln_div_floor(int64_t a, int64_t b)
{
    return a >= 0 ? a / b : -((-a + b - 1) / b);
}

/* ------------------------------------------------------------------ slices */

/* Fills o (x's dtype; outer * n * inner elements) with slices of x viewed as
 * [outer, dim, inner]: for each outer block in turn, the slices sel[0..n), each in
 * [0, dim) (Gather along an axis, Compress). STRING elements are copied as kiln_copy_strings
 * does, so o must be fresh; that copy is the only way this fails (NOMEM, o stays safe to
 * free). */
KILN_NODISCARD kiln_status kiln_take_slices(struct kiln_kctx *k, struct kiln_tensor *o,
                                            const struct kiln_tensor *x, size_t outer, size_t dim,
                                            size_t inner, const int64_t *sel, size_t n);

/* ------------------------------------------------------------------ strings */

/* Copies strings src[0..n) into dst[0..n) of a STRING tensor whose entries still hold the
 * shared "" placeholder of a fresh tensor: each non-empty source gets an owned copy; NULL or
 * empty sources leave the placeholder. On NOMEM the entries copied so far stay owned (the
 * tensor remains safe to free) and the node fails with a message. */
KILN_NODISCARD kiln_status kiln_copy_strings(struct kiln_kctx *k, char **dst,
                                             const char *const *src, size_t n);

#endif
