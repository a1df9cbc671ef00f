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

#define LANES 16

void KILN_ISA_FN(kiln_attn_softmax_row_isa)(float *x, const float *m, size_t n, size_t T)
{
    float mx[LANES];
    for (int l = 0; l < LANES; l++) mx[l] = -INFINITY;
    size_t j = 0;
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
