/* src/cpu/isa/attention.c: kiln.Attention's masked softmax row (contract in
 * cpu/attention_isa.h). AVX-512: explicit vectors, the row's last partial vector masked
 * (the compiler's loop left n % 16 elements a row to scalar exp_core: 5 of ViT's 197), exp
 * from vmath_v.h's exp_nonpos_v16. Other levels: plain loops over 16 lanes that the
 * compiler vectorizes; the exp is vmath's core. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O3", "no-trapping-math")
#endif

#include <math.h>
#include <string.h>

#include "cpu/attention_isa.h"
#include "cpu/isa/vmath_core.h"
#include "cpu/isa/vmath_v.h"

#if defined(__AVX2__)
#include <immintrin.h>
#endif

#define LANES 16

#if defined(__AVX512F__)
/* Lanes [0, r) of a vector, r < 16. */
static inline __mmask16 head(size_t r)
{
    return (__mmask16)((1u << r) - 1u);
}

void KILN_ISA_FN(kiln_attn_softmax_row_isa)(float *x, const float *m, size_t n, size_t T)
{
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    __m512 mx = ninf;
    size_t j = 0, r = n % 16;
    /* max(v, mx) keeps mx for a NaN v, as the other levels' v > mx ? v : mx */
    for (; j + 16 <= n; j += 16) {
        __m512 v = _mm512_loadu_ps(x + j);
        if (m) {
            v = _mm512_add_ps(v, _mm512_loadu_ps(m + j));
            _mm512_storeu_ps(x + j, v);
        }
        mx = _mm512_max_ps(v, mx);
    }
    if (r) {
        __m512 v = _mm512_mask_loadu_ps(ninf, head(r), x + j);
        if (m) {
            v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(head(r), m + j));
            _mm512_mask_storeu_ps(x + j, head(r), v);
        }
        mx = _mm512_max_ps(v, mx);
    }
    float top = _mm512_reduce_max_ps(mx);
    if (top == -INFINITY) { /* every key masked (or none): zeros, see the header */
        memset(x, 0, T * sizeof *x);
        return;
    }
    const __m512 vt = _mm512_set1_ps(top), lo = _mm512_set1_ps(EXP_LO);
    __m512 s = _mm512_setzero_ps();
    for (j = 0; j + 16 <= n; j += 16) {
        __m512 e = exp_nonpos_v16(_mm512_max_ps(lo, _mm512_sub_ps(_mm512_loadu_ps(x + j), vt)));
        _mm512_storeu_ps(x + j, e);
        s = _mm512_add_ps(s, e);
    }
    if (r) {
        __m512 v = _mm512_maskz_loadu_ps(head(r), x + j);
        __m512 e = _mm512_maskz_mov_ps(head(r), exp_nonpos_v16(_mm512_max_ps(lo, _mm512_sub_ps(v, vt))));
        _mm512_mask_storeu_ps(x + j, head(r), e);
        s = _mm512_add_ps(s, e);
    }
    const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(s));
    for (j = 0; j + 16 <= n; j += 16) _mm512_storeu_ps(x + j, _mm512_mul_ps(_mm512_loadu_ps(x + j), inv));
    if (r) _mm512_mask_storeu_ps(x + j, head(r), _mm512_mul_ps(_mm512_maskz_loadu_ps(head(r), x + j), inv));
    if (T > n) memset(x + n, 0, (T - n) * sizeof *x);
}
#else

void KILN_ISA_FN(kiln_attn_softmax_row_isa)(float *x, const float *m, size_t n, size_t T)
{
    float mx[LANES];
    size_t j = 0;
#if defined(__AVX2__)
    /* The max pass with explicit vectors (gcc left it scalar): max(x, m) is x > m ? x : m,
     * as the loops below. */
    __m256 v0 = _mm256_set1_ps(-INFINITY), v1 = v0;
#define STEP_(p)                                                                              \
    (v0 = _mm256_max_ps(_mm256_loadu_ps(p), v0), v1 = _mm256_max_ps(_mm256_loadu_ps((p) + 8), v1))
    if (m) {
        for (; j + LANES <= n; j += LANES) {
            for (int l = 0; l < LANES; l++) x[j + l] += m[j + l];
            STEP_(x + j);
        }
    } else {
        for (; j + LANES <= n; j += LANES) STEP_(x + j);
    }
#undef STEP_
    _mm256_storeu_ps(mx, v0);
    _mm256_storeu_ps(mx + 8, v1);
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
#endif
