/* src/cpu/isa/norm.c: the normalizations' row statistics and elementwise passes (contract
 * in cpu/reduce_isa.h), in double as the kernels always computed them, except the whole-row
 * Layer/RMS normalization (kiln_norm_row_f32_isa: float lanes, sums combined in double; explicit
 * vectors at AVX-512). Lanes as in cpu/isa/reduce.c: fixed order (variants with FMA may fuse
 * multiply-adds, so they agree to rounding, not always to the bit). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O3", "no-trapping-math")
#endif

#include <math.h>

#include "cpu/reduce_isa.h"

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

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

#if defined(__AVX512F__)
/* A float vector's lanes summed in double, in a fixed order (the halves, then a tree). */
static inline double hsum_f_pd(__m512 a)
{
    __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(a));
    __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1)));
    return _mm512_reduce_add_pd(_mm512_add_pd(lo, hi));
}

/* The same computation with explicit vectors: two accumulators a pass, the tail masked, the
 * lanes combined with vector instructions. A row of LayerNorm is often short (ConvNeXt's 96
 * to 768 channels a pixel), and the scalar combining of the lanes cost as much as the passes
 * (Zen 4, one core, rows of 96 from L3: 0.60 -> 0.39 ns an element; ConvNeXt-T's 23
 * LayerNorms 1.77 -> 1.22 ms a run). */
void KILN_ISA_FN(kiln_norm_row_f32_isa)(const float *x, float *y, size_t n, double eps, const float *s,
                                         const float *b, bool rms, double *mu, double *inv)
{
    size_t j;
    const size_t nv = n & ~(size_t)15;
    const __mmask16 mt = (__mmask16)((1u << (n - nv)) - 1);
    double m = 0;
    if (!rms) {
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
        for (j = 0; j + 32 <= n; j += 32) {
            a0 = _mm512_add_ps(a0, _mm512_loadu_ps(x + j));
            a1 = _mm512_add_ps(a1, _mm512_loadu_ps(x + j + 16));
        }
        if (j < nv) a0 = _mm512_add_ps(a0, _mm512_loadu_ps(x + j));
        if (mt) a1 = _mm512_add_ps(a1, _mm512_maskz_loadu_ps(mt, x + nv));
        m = hsum_f_pd(_mm512_add_ps(a0, a1)) / (double)n;
    }
    const float mf = (float)m;
    const __m512 mv = _mm512_set1_ps(mf);
    __m512 q0 = _mm512_setzero_ps(), q1 = _mm512_setzero_ps();
    for (j = 0; j + 32 <= n; j += 32) {
        __m512 d0 = _mm512_sub_ps(_mm512_loadu_ps(x + j), mv);
        __m512 d1 = _mm512_sub_ps(_mm512_loadu_ps(x + j + 16), mv);
        q0 = _mm512_fmadd_ps(d0, d0, q0);
        q1 = _mm512_fmadd_ps(d1, d1, q1);
    }
    if (j < nv) {
        __m512 d = _mm512_sub_ps(_mm512_loadu_ps(x + j), mv);
        q0 = _mm512_fmadd_ps(d, d, q0);
    }
    if (mt) {
        __m512 d = _mm512_maskz_sub_ps(mt, _mm512_maskz_loadu_ps(mt, x + nv), mv);
        q1 = _mm512_fmadd_ps(d, d, q1);
    }
    const double iv = 1.0 / sqrt(hsum_f_pd(_mm512_add_ps(q0, q1)) / (double)n + eps);
    const __m512 ivv = _mm512_set1_ps((float)iv);
    for (j = 0; j < n; j += 16) {
        __mmask16 k = n - j >= 16 ? (__mmask16)0xffff : mt;
        __m512 v = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + j), mv), ivv);
        v = b ? _mm512_fmadd_ps(v, _mm512_maskz_loadu_ps(k, s + j), _mm512_maskz_loadu_ps(k, b + j))
              : _mm512_mul_ps(v, _mm512_maskz_loadu_ps(k, s + j));
        _mm512_mask_storeu_ps(y + j, k, v);
    }
    *mu = m;
    *inv = iv;
}
#else
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
#endif
