/* src/cpu/isa/rnn.c: the recurrent product and the fused gate cells of RNN/GRU/LSTM
 * (contract in cpu/rnn_isa.h).
 *
 * The product is memory-bound at batch 1 (each step streams all of R once), so it reads each
 * panel row once, unit stride, into G (AVX-512) or 2G (AVX2) vector accumulators; two
 * accumulator sets (even/odd rows) keep enough independent FMA chains in flight when G is
 * small. The cells are plain loops of KILN_RNN_U over the branch-free cores of vmath_core.h,
 * which the compiler vectorizes (see isa/vmath.c).
 */
#if defined(__GNUC__) && !defined(__clang__)
/* As isa/vmath.c: -O3 so gcc vectorizes the cell loops, no trapping math so it keeps the
 * float selects branch-free (only FP exception flags depend on it, which kiln never reads). */
#pragma GCC optimize("O3", "no-trapping-math")
#endif

#include <math.h>

#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "cpu/isa/vmath_core.h"
#include "cpu/rnn_isa.h"

#define U KILN_RNN_U

/* ------------------------------------------------------------------ product */

#if defined(__AVX512F__)
static inline __attribute__((always_inline)) void gemv_v(const float *h, const float *p, size_t K, int G,
                                                         float *out)
{
    const size_t W = (size_t)G * U;
    __m512 a[4], b[4];
    for (int g = 0; g < G; g++) a[g] = b[g] = _mm512_setzero_ps();
    size_t q = 0;
    for (; q + 2 <= K; q += 2) {
        __m512 h0 = _mm512_set1_ps(h[q]), h1 = _mm512_set1_ps(h[q + 1]);
        const float *r0 = p + q * W, *r1 = r0 + W;
        for (int g = 0; g < G; g++) {
            a[g] = _mm512_fmadd_ps(h0, _mm512_loadu_ps(r0 + g * U), a[g]);
            b[g] = _mm512_fmadd_ps(h1, _mm512_loadu_ps(r1 + g * U), b[g]);
        }
    }
    if (q < K) {
        __m512 h0 = _mm512_set1_ps(h[q]);
        for (int g = 0; g < G; g++) a[g] = _mm512_fmadd_ps(h0, _mm512_loadu_ps(p + q * W + g * U), a[g]);
    }
    for (int g = 0; g < G; g++) _mm512_storeu_ps(out + g * U, _mm512_add_ps(a[g], b[g]));
}
#elif defined(__AVX2__)
static inline __attribute__((always_inline)) void gemv_v(const float *h, const float *p, size_t K, int G,
                                                         float *out)
{
    const size_t W = (size_t)G * U;
    const int V = 2 * G; /* 8-float vectors per row */
    __m256 a[8], b[8];
    for (int v = 0; v < V; v++) a[v] = b[v] = _mm256_setzero_ps();
    size_t q = 0;
    for (; q + 2 <= K; q += 2) {
        __m256 h0 = _mm256_set1_ps(h[q]), h1 = _mm256_set1_ps(h[q + 1]);
        const float *r0 = p + q * W, *r1 = r0 + W;
        for (int v = 0; v < V; v++) {
            a[v] = _mm256_fmadd_ps(h0, _mm256_loadu_ps(r0 + v * 8), a[v]);
            b[v] = _mm256_fmadd_ps(h1, _mm256_loadu_ps(r1 + v * 8), b[v]);
        }
    }
    if (q < K) {
        __m256 h0 = _mm256_set1_ps(h[q]);
        for (int v = 0; v < V; v++) a[v] = _mm256_fmadd_ps(h0, _mm256_loadu_ps(p + q * W + v * 8), a[v]);
    }
    for (int v = 0; v < V; v++) _mm256_storeu_ps(out + v * 8, _mm256_add_ps(a[v], b[v]));
}
#else
static inline void gemv_v(const float *h, const float *p, size_t K, int G, float *out)
{
    const size_t W = (size_t)G * U;
    float a[4 * U] = {0}, b[4 * U] = {0};
    size_t q = 0;
    for (; q + 2 <= K; q += 2) {
        float h0 = h[q], h1 = h[q + 1];
        const float *r0 = p + q * W, *r1 = r0 + W;
        for (size_t j = 0; j < W; j++) {
            a[j] += h0 * r0[j];
            b[j] += h1 * r1[j];
        }
    }
    if (q < K)
        for (size_t j = 0; j < W; j++) a[j] += h[q] * p[q * W + j];
    for (size_t j = 0; j < W; j++) out[j] = a[j] + b[j];
}
#endif

void KILN_ISA_FN(kiln_rnn_gemv_isa)(const float *h, const float *panel, size_t K, int G, float *out)
{
    /* constant G per call, so each copy keeps its accumulators in registers */
    switch (G) {
    case 1: gemv_v(h, panel, K, 1, out); break;
    case 2: gemv_v(h, panel, K, 2, out); break;
    case 3: gemv_v(h, panel, K, 3, out); break;
    default: gemv_v(h, panel, K, 4, out); break;
    }
}

/* ------------------------------------------------------------------ cells */

/* x clamped to [-c, c]; c = +inf leaves every x (NaN included) as it is. */
static inline float clampc(float x, float c)
{
    float y = x < -c ? -c : x;
    return y > c ? c : y;
}

static inline float bound(float clip) { return clip > 0 ? clip : INFINITY; }

static inline __attribute__((always_inline)) void lstm_body(const float *px, const float *hr, const float *p,
                                                            float cl, bool input_forget, float *c, float *h,
                                                            bool peep)
{
    for (int u = 0; u < U; u++) {
        float cp = c[u];
        float xi = px[u] + hr[u], xo = px[U + u] + hr[U + u];
        float xf = px[2 * U + u] + hr[2 * U + u], xc = px[3 * U + u] + hr[3 * U + u];
        if (peep) {
            xi += p[u] * cp;
            xf += p[2 * U + u] * cp;
        }
        float i = sigmoid_core(clampc(xi, cl));
        float f = sigmoid_core(clampc(xf, cl));
        f = input_forget ? 1 - i : f;
        float g = tanh_core(clampc(xc, cl));
        float cn = f * cp + i * g;
        if (peep) xo += p[U + u] * cn;
        float o = sigmoid_core(clampc(xo, cl));
        c[u] = cn;
        h[u] = o * tanh_core(cn);
    }
}

void KILN_ISA_FN(kiln_rnn_lstm_cell_isa)(const float *px, const float *hr, const float *p, float clip,
                                         bool input_forget, float *c, float *h)
{
    float cl = bound(clip);
    if (p)
        lstm_body(px, hr, p, cl, input_forget, c, h, true);
    else
        lstm_body(px, hr, p, cl, input_forget, c, h, false);
}

void KILN_ISA_FN(kiln_rnn_gru_lbr_cell_isa)(const float *px, const float *hr, const float *rbh, float clip,
                                            const float *hp, float *h)
{
    float cl = bound(clip);
    for (int u = 0; u < U; u++) {
        float z = sigmoid_core(clampc(px[u] + hr[u], cl));
        float r = sigmoid_core(clampc(px[U + u] + hr[U + u], cl));
        float n = tanh_core(clampc(px[2 * U + u] + r * (hr[2 * U + u] + rbh[u]), cl));
        h[u] = (1 - z) * n + z * hp[u];
    }
}

void KILN_ISA_FN(kiln_rnn_gru_zr_cell_isa)(const float *px, const float *hr, float clip, const float *hp,
                                           float *z, float *rh)
{
    float cl = bound(clip);
    for (int u = 0; u < U; u++) {
        z[u] = sigmoid_core(clampc(px[u] + hr[u], cl));
        rh[u] = sigmoid_core(clampc(px[U + u] + hr[U + u], cl)) * hp[u];
    }
}

void KILN_ISA_FN(kiln_rnn_gru_h_cell_isa)(const float *px, const float *hr, const float *z, float clip,
                                          const float *hp, float *h)
{
    float cl = bound(clip);
    for (int u = 0; u < U; u++) {
        float n = tanh_core(clampc(px[u] + hr[u], cl));
        h[u] = (1 - z[u]) * n + z[u] * hp[u];
    }
}

void KILN_ISA_FN(kiln_rnn_rnn_cell_isa)(const float *px, const float *hr, float clip, float *h)
{
    float cl = bound(clip);
    for (int u = 0; u < U; u++) h[u] = tanh_core(clampc(px[u] + hr[u], cl));
}
