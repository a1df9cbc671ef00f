/* reduce_isa.h: the vectorized inner loops of the reductions (src/cpu/ops/reduce.c), of
 * Softmax/LogSoftmax (src/cpu/ops/softmax.c) and of the normalizations (src/cpu/ops/norm.c),
 * compiled per instruction-set level in src/cpu/isa/{reduce,softmax,norm}.c (cpu/isa.h).
 *
 * Reduction folds take float32 or float64 input and accumulate in double. A row fold folds
 * x[0..n) into one accumulator; a column fold updates acc[j] for each j < n. Every fold has a
 * fixed association order (32 independent lanes combined pairwise), written in plain C: the
 * order depends on nothing but n (a variant with FMA may fuse x*x + acc, so variants agree
 * to rounding, not always to the bit; one variant is always bit-reproducible).
 *
 * Sum error (row folds): each lane adds at most ceil(n/32) terms and the lanes combine in 5
 * levels, so |computed - exact| <= (n/32 + 6) * 2^-53 * sum |x_i|; the caller's final rounding
 * to float32 adds 2^-24 relative. Column folds add one term per call per accumulator, so
 * their bound is the same with n the number of rows folded.
 */
#ifndef KILN_CPU_REDUCE_ISA_H
#define KILN_CPU_REDUCE_ISA_H

#include <stdbool.h>
#include <stddef.h>

#include "cpu/isa.h"

/* What a fold does with each element v: */
enum kiln_red_fold {
    KILN_RED_SUM,    /* acc += v */
    KILN_RED_ASUM,   /* acc += |v| */
    KILN_RED_SQSUM,  /* acc += v^2 */
    KILN_RED_PROD,   /* acc *= v */
    KILN_RED_MAX,    /* acc = max(acc, v); NaN wins (sticks) */
    KILN_RED_MIN,    /* acc = min(acc, v); NaN wins */
    KILN_RED_EXPSUM, /* acc += exp(v - ref) (double exp) */
};

/* *acc = *acc (op) fold of x[0..n); ref is the shift of KILN_RED_EXPSUM. */
KILN_ISA_DECLARE(void, kiln_red_row_f32_isa,
                 (const float *x, size_t n, int op, double ref, double *acc));
KILN_ISA_DECLARE(void, kiln_red_row_f64_isa,
                 (const double *x, size_t n, int op, double ref, double *acc));
/* acc[j] = acc[j] (op) x[j] for j < n; ref[j] the shifts of KILN_RED_EXPSUM (else unused). */
KILN_ISA_DECLARE(void, kiln_red_col_f32_isa,
                 (const float *x, size_t n, int op, const double *ref, double *acc));
KILN_ISA_DECLARE(void, kiln_red_col_f64_isa,
                 (const double *x, size_t n, int op, const double *ref, double *acc));

/* ------------------------------------------------------------------ softmax rows */

/* One contiguous float32 row x[0..n) (n >= 1): its max, NaN skipped as `x > m` does (an
 * all-NaN or all -inf row gives -inf). */
KILN_ISA_DECLARE(float, kiln_sm_max_f32_isa, (const float *x, size_t n));
/* e[j] = exp(x[j] - shift) (vmath's exp core, <= 2 ulp); returns sum e[j] accumulated in
 * double, in a fixed order. e may be x. */
KILN_ISA_DECLARE(double, kiln_sm_expsum_f32_isa,
                 (const float *x, float *e, size_t n, float shift));
/* y[j] = (float)(e[j] * scale) (Softmax), y may be e. */
KILN_ISA_DECLARE(void, kiln_sm_scale_f32_isa, (const float *e, float *y, size_t n, double scale));
/* y[j] = (float)((double)x[j] - off) (LogSoftmax), y may be x. */
KILN_ISA_DECLARE(void, kiln_sm_sub_f32_isa, (const float *x, float *y, size_t n, double off));

/* ------------------------------------------------------------------ normalization rows */

/* Mean and population variance of x[0..n) (n >= 1), two passes in double over the row. */
KILN_ISA_DECLARE(void, kiln_norm_stats_f32_isa,
                 (const float *x, size_t n, double *mean, double *var));
/* Mean of x[j]^2 over x[0..n) (n >= 1), in double. */
KILN_ISA_DECLARE(double, kiln_norm_meansq_f32_isa, (const float *x, size_t n));
/* Layer normalization (rms false) or RMS normalization (rms true) of one row x[0..n)
 * (n >= 1) into y (y may be x), in float lanes: the row's sum (LayerNorm only) and then its
 * sum of squared deviations from the mean rounded to float (RMS: of squares) as LANES float
 * partial sums, combined in double; inv = 1 / sqrt(var + eps) in double; then
 * y[j] = (x[j] - mu) * inv * s[j] + b[j] with mu and inv rounded to float (b NULL: no bias).
 * A few float roundings from the double computation (kiln_norm_stats/apply), about 4x
 * faster on short rows (ConvNeXt's 96 channels). *mu and *inv get the statistics (mu 0 for
 * RMS) in double. */
KILN_ISA_DECLARE(void, kiln_norm_row_f32_isa,
                 (const float *x, float *y, size_t n, double eps, const float *s, const float *b,
                  bool rms, double *mu, double *inv));
/* y[j] = (float)(a * x[j] + c), in double. y may be x. */
KILN_ISA_DECLARE(void, kiln_norm_affine_f32_isa,
                 (const float *x, float *y, size_t n, double a, double c));

#endif
