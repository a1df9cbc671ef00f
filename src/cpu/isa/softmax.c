/* src/cpu/isa/softmax.c: the Softmax/LogSoftmax row passes (contract in cpu/reduce_isa.h):
 * max, exp + sum, scale. Lanes as in cpu/isa/reduce.c: fixed order (variants with FMA may
 * fuse multiply-adds, so they agree to rounding); the exp is vmath's core (<= 2 ulp). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O3", "no-trapping-math")
#endif

#include <math.h>

#include "cpu/isa/vmath_core.h"
#include "cpu/reduce_isa.h"

#define LANES 16

float KILN_ISA_FN(kiln_sm_max_f32_isa)(const float *x, size_t n)
{
    float m[LANES];
    for (int l = 0; l < LANES; l++) m[l] = -INFINITY;
    size_t j = 0;
    for (; j + LANES <= n; j += LANES)
        for (int l = 0; l < LANES; l++) m[l] = x[j + l] > m[l] ? x[j + l] : m[l];
    float mx = -INFINITY;
    for (int l = 0; l < LANES; l++) mx = m[l] > mx ? m[l] : mx;
    for (; j < n; j++) mx = x[j] > mx ? x[j] : mx;
    return mx;
}

double KILN_ISA_FN(kiln_sm_expsum_f32_isa)(const float *x, float *e, size_t n, float shift)
{
    double s[LANES];
    for (int l = 0; l < LANES; l++) s[l] = 0;
    size_t j = 0;
    for (; j + LANES <= n; j += LANES)
        for (int l = 0; l < LANES; l++) {
            float v = exp_core(x[j + l] - shift);
            e[j + l] = v;
            s[l] += (double)v;
        }
    for (int w = LANES / 2; w >= 1; w /= 2)
        for (int l = 0; l < w; l++) s[l] += s[l + w];
    double sum = s[0];
    for (; j < n; j++) {
        float v = exp_core(x[j] - shift);
        e[j] = v;
        sum += (double)v;
    }
    return sum;
}

void KILN_ISA_FN(kiln_sm_scale_f32_isa)(const float *e, float *y, size_t n, double scale)
{
    for (size_t j = 0; j < n; j++) y[j] = (float)((double)e[j] * scale);
}

void KILN_ISA_FN(kiln_sm_sub_f32_isa)(const float *x, float *y, size_t n, double off)
{
    for (size_t j = 0; j < n; j++) y[j] = (float)((double)x[j] - off);
}
