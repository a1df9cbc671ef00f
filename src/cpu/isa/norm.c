/* src/cpu/isa/norm.c: the normalizations' row statistics and elementwise passes (contract
 * in cpu/reduce_isa.h), in double as the kernels always computed them. Lanes as in
 * cpu/isa/reduce.c: fixed order (variants with FMA may fuse
 * multiply-adds, so they agree to rounding, not always to the bit). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O3", "no-trapping-math")
#endif

#include "cpu/reduce_isa.h"

#define LANES 16

static inline double lanes_sum(double *a)
{
    for (int w = LANES / 2; w >= 1; w /= 2)
        for (int l = 0; l < w; l++) a[l] += a[l + w];
    return a[0];
}

void KILN_ISA_FN(kiln_norm_stats_f32_isa)(const float *x, size_t n, double *mean, double *var)
{
    double a[LANES];
    size_t j = 0;
    for (int l = 0; l < LANES; l++) a[l] = 0;
    for (; j + LANES <= n; j += LANES)
        for (int l = 0; l < LANES; l++) a[l] += (double)x[j + l];
    double s = lanes_sum(a);
    for (; j < n; j++) s += (double)x[j];
    const double m = s / (double)n;
    for (int l = 0; l < LANES; l++) a[l] = 0;
    for (j = 0; j + LANES <= n; j += LANES)
        for (int l = 0; l < LANES; l++) {
            double d = (double)x[j + l] - m;
            a[l] += d * d;
        }
    double q = lanes_sum(a);
    for (; j < n; j++) {
        double d = (double)x[j] - m;
        q += d * d;
    }
    *mean = m;
    *var = q / (double)n;
}

double KILN_ISA_FN(kiln_norm_meansq_f32_isa)(const float *x, size_t n)
{
    double a[LANES];
    size_t j = 0;
    for (int l = 0; l < LANES; l++) a[l] = 0;
    for (; j + LANES <= n; j += LANES)
        for (int l = 0; l < LANES; l++) a[l] += (double)x[j + l] * (double)x[j + l];
    double q = lanes_sum(a);
    for (; j < n; j++) q += (double)x[j] * (double)x[j];
    return q / (double)n;
}

void KILN_ISA_FN(kiln_norm_apply_f32_isa)(const float *x, float *y, size_t n, double mu,
                                           double inv, const float *s, const float *b)
{
    if (b)
        for (size_t j = 0; j < n; j++)
            y[j] = (float)(((double)x[j] - mu) * inv * (double)s[j] + (double)b[j]);
    else
        for (size_t j = 0; j < n; j++) y[j] = (float)(((double)x[j] - mu) * inv * (double)s[j]);
}

void KILN_ISA_FN(kiln_norm_affine_f32_isa)(const float *x, float *y, size_t n, double a, double c)
{
    for (size_t j = 0; j < n; j++) y[j] = (float)(a * (double)x[j] + c);
}
