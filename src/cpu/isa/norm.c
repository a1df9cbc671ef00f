/* src/cpu/isa/norm.c: the normalizations' row statistics and elementwise passes (contract
 * in cpu/reduce_isa.h), in double as the kernels always computed them, except the whole-row
 * Layer/RMS normalization (kiln_norm_row_f32_isa: float lanes, sums combined in double). Lanes as in
 * cpu/isa/reduce.c: fixed order (variants with FMA may fuse
 * multiply-adds, so they agree to rounding, not always to the bit). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O3", "no-trapping-math")
#endif

#include <math.h>

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

void KILN_ISA_FN(kiln_norm_affine_f32_isa)(const float *x, float *y, size_t n, double a, double c)
{
    for (size_t j = 0; j < n; j++) y[j] = (float)(a * (double)x[j] + c);
}

/* The float lanes' sum, combined in double in a fixed order. */
static inline double lanes_sum_f(const float *a)
{
    double d[LANES];
    for (int l = 0; l < LANES; l++) d[l] = (double)a[l];
    return lanes_sum(d);
}

void KILN_ISA_FN(kiln_norm_row_f32_isa)(const float *x, float *y, size_t n, double eps, const float *s,
                                         const float *b, bool rms, double *mu, double *inv)
{
    float a[LANES];
    size_t j;
    double m = 0;
    if (!rms) {
        for (int l = 0; l < LANES; l++) a[l] = 0;
        for (j = 0; j + LANES <= n; j += LANES)
            for (int l = 0; l < LANES; l++) a[l] += x[j + l];
        double sum = lanes_sum_f(a);
        for (; j < n; j++) sum += (double)x[j];
        m = sum / (double)n;
    }
    const float mf = (float)m;
    for (int l = 0; l < LANES; l++) a[l] = 0;
    for (j = 0; j + LANES <= n; j += LANES)
        for (int l = 0; l < LANES; l++) {
            float d = x[j + l] - mf;
            a[l] += d * d;
        }
    double q = lanes_sum_f(a);
    for (; j < n; j++) {
        double d = (double)x[j] - (double)mf;
        q += d * d;
    }
    const double iv = 1.0 / sqrt(q / (double)n + eps);
    const float ivf = (float)iv;
    if (b)
        for (j = 0; j < n; j++) y[j] = (x[j] - mf) * ivf * s[j] + b[j];
    else
        for (j = 0; j < n; j++) y[j] = (x[j] - mf) * ivf * s[j];
    *mu = m;
    *inv = iv;
}
