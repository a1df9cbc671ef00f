/* src/cpu/isa/attention.c: kiln.Attention's masked softmax row (contract in
 * cpu/attention_isa.h). Plain loops over 16 lanes that the compiler vectorizes per ISA
 * level; the exp is vmath's core. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O3", "no-trapping-math")
#endif

#include <math.h>
#include <string.h>

#include "cpu/attention_isa.h"
#include "cpu/isa/vmath_core.h"

#if defined(__AVX2__)
#include <immintrin.h>
#endif

#define LANES 16

void KILN_ISA_FN(kiln_attn_softmax_row_isa)(float *x, const float *m, size_t n, size_t T)
{
    float mx[LANES];
    size_t j = 0;
#if defined(__AVX512F__) || defined(__AVX2__)
    /* The max pass with explicit vectors (gcc left it scalar): max(x, m) is x > m ? x : m,
     * as the loops below. */
#if defined(__AVX512F__)
    __m512 v0 = _mm512_set1_ps(-INFINITY);
#define STEP_(p)                                                                              \
    v0 = _mm512_max_ps(_mm512_loadu_ps(p), v0)
#else
    __m256 v0 = _mm256_set1_ps(-INFINITY), v1 = v0;
#define STEP_(p)                                                                              \
    (v0 = _mm256_max_ps(_mm256_loadu_ps(p), v0), v1 = _mm256_max_ps(_mm256_loadu_ps((p) + 8), v1))
#endif
    if (m) {
        for (; j + LANES <= n; j += LANES) {
            for (int l = 0; l < LANES; l++) x[j + l] += m[j + l];
            STEP_(x + j);
        }
    } else {
        for (; j + LANES <= n; j += LANES) STEP_(x + j);
    }
#undef STEP_
#if defined(__AVX512F__)
    _mm512_storeu_ps(mx, v0);
#else
    _mm256_storeu_ps(mx, v0);
    _mm256_storeu_ps(mx + 8, v1);
#endif
    if (m)
        for (; j < n; j++) {
            float v = x[j] + m[j];
            x[j] = v;
            mx[0] = v > mx[0] ? v : mx[0];
        }
    else
        for (; j < n; j++) mx[0] = x[j] > mx[0] ? x[j] : mx[0];
#else
    for (int l = 0; l < LANES; l++) mx[l] = -INFINITY;
    if (m) {
        for (; j + LANES <= n; j += LANES)
            for (int l = 0; l < LANES; l++) {
                float v = x[j + l] + m[j + l];
                x[j + l] = v;
                mx[l] = v > mx[l] ? v : mx[l];
            }
        for (; j < n; j++) {
            float v = x[j] + m[j];
            x[j] = v;
            mx[0] = v > mx[0] ? v : mx[0];
        }
    } else {
        for (; j + LANES <= n; j += LANES)
            for (int l = 0; l < LANES; l++) mx[l] = x[j + l] > mx[l] ? x[j + l] : mx[l];
        for (; j < n; j++) mx[0] = x[j] > mx[0] ? x[j] : mx[0];
    }
#endif
    float top = -INFINITY;
    for (int l = 0; l < LANES; l++) top = mx[l] > top ? mx[l] : top;
    if (top == -INFINITY) { /* every key masked (or none): zeros, see the header */
        memset(x, 0, T * sizeof *x);
        return;
    }
    float s[LANES];
    for (int l = 0; l < LANES; l++) s[l] = 0;
    j = 0;
    for (; j + LANES <= n; j += LANES)
        for (int l = 0; l < LANES; l++) {
            float e = exp_core(x[j + l] - top);
            x[j + l] = e;
            s[l] += e;
        }
    for (; j < n; j++) {
        float e = exp_core(x[j] - top);
        x[j] = e;
        s[0] += e;
    }
    for (int w = LANES / 2; w >= 1; w /= 2)
        for (int l = 0; l < w; l++) s[l] += s[l + w];
    float inv = 1.0f / s[0];
    for (j = 0; j < n; j++) x[j] *= inv;
    if (T > n) memset(x + n, 0, (T - n) * sizeof *x);
}
