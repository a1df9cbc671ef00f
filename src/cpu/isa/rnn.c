/* src/cpu/isa/rnn.c: the recurrent product and the fused gate cells of RNN/GRU/LSTM
 * (contract in cpu/rnn_isa.h).
 *
 * The product is memory-bound at batch 1 (each step streams all of R once), so it reads each
 * panel row once, unit stride, into G (AVX-512) or 2G (AVX2) vector accumulators; a second
 * set for odd rows, where the registers allow (up to 4 vectors a row), keeps enough
 * independent FMA chains in flight when G is small. The cells are plain loops of KILN_RNN_U over the branch-free cores of vmath_core.h,
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

#if defined(__AVX2__) || defined(__AVX512F__)
#if defined(__AVX512F__)
typedef __m512 vec;
#define VL 16
#define VZERO() _mm512_setzero_ps()
#define VSET1(x) _mm512_set1_ps(x)
#define VLOAD(p) _mm512_loadu_ps(p)
#define VFMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define VADD(a, b) _mm512_add_ps(a, b)
#define VSTORE(p, v) _mm512_storeu_ps(p, v)
#else
typedef __m256 vec;
#define VL 8
#define VZERO() _mm256_setzero_ps()
#define VSET1(x) _mm256_set1_ps(x)
#define VLOAD(p) _mm256_loadu_ps(p)
#define VFMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define VADD(a, b) _mm256_add_ps(a, b)
#define VSTORE(p, v) _mm256_storeu_ps(p, v)
#endif

/* NV vectors per panel row (named accumulators: arrays indexed in loops were spilled);
 * two sets, even and odd rows, when NV is small enough to keep both in registers. */
#define GEMV_BODY(NV)                                                                          \
    do {                                                                                       \
        const size_t W = (size_t)(NV) * VL;                                                    \
        vec a0 = VZERO(), a1 = VZERO(), a2 = VZERO(), a3 = VZERO();                            \
        vec a4 = VZERO(), a5 = VZERO(), a6 = VZERO(), a7 = VZERO();                            \
        size_t q = 0;                                                                          \
        if ((NV) <= 4)                                                                         \
            for (; q + 2 <= K; q += 2) {                                                       \
                vec h0 = VSET1(h[q]), h1 = VSET1(h[q + 1]);                                    \
                const float *r0 = p + q * W, *r1 = r0 + W;                                     \
                a0 = VFMA(h0, VLOAD(r0), a0);                                                  \
                a4 = VFMA(h1, VLOAD(r1), a4);                                                  \
                if ((NV) > 1) a1 = VFMA(h0, VLOAD(r0 + VL), a1), a5 = VFMA(h1, VLOAD(r1 + VL), a5); \
                if ((NV) > 2) a2 = VFMA(h0, VLOAD(r0 + 2 * VL), a2), a6 = VFMA(h1, VLOAD(r1 + 2 * VL), a6); \
                if ((NV) > 3) a3 = VFMA(h0, VLOAD(r0 + 3 * VL), a3), a7 = VFMA(h1, VLOAD(r1 + 3 * VL), a7); \
            }                                                                                  \
        for (; q < K; q++) {                                                                   \
            vec h0 = VSET1(h[q]);                                                              \
            const float *r0 = p + q * W;                                                       \
            a0 = VFMA(h0, VLOAD(r0), a0);                                                      \
            if ((NV) > 1) a1 = VFMA(h0, VLOAD(r0 + VL), a1);                                   \
            if ((NV) > 2) a2 = VFMA(h0, VLOAD(r0 + 2 * VL), a2);                               \
            if ((NV) > 3) a3 = VFMA(h0, VLOAD(r0 + 3 * VL), a3);                               \
            if ((NV) > 4) a4 = VFMA(h0, VLOAD(r0 + 4 * VL), a4);                               \
            if ((NV) > 5) a5 = VFMA(h0, VLOAD(r0 + 5 * VL), a5);                               \
            if ((NV) > 6) a6 = VFMA(h0, VLOAD(r0 + 6 * VL), a6);                               \
            if ((NV) > 7) a7 = VFMA(h0, VLOAD(r0 + 7 * VL), a7);                               \
        }                                                                                      \
        if ((NV) <= 4) {                                                                       \
            VSTORE(out, VADD(a0, a4));                                                         \
            if ((NV) > 1) VSTORE(out + VL, VADD(a1, a5));                                      \
            if ((NV) > 2) VSTORE(out + 2 * VL, VADD(a2, a6));                                  \
            if ((NV) > 3) VSTORE(out + 3 * VL, VADD(a3, a7));                                  \
        } else {                                                                               \
            VSTORE(out, a0), VSTORE(out + VL, a1), VSTORE(out + 2 * VL, a2);                   \
            VSTORE(out + 3 * VL, a3), VSTORE(out + 4 * VL, a4);                                \
            if ((NV) > 5) VSTORE(out + 5 * VL, a5);                                            \
            if ((NV) > 6) VSTORE(out + 6 * VL, a6);                                            \
            if ((NV) > 7) VSTORE(out + 7 * VL, a7);                                            \
        }                                                                                      \
    } while (0)

void KILN_ISA_FN(kiln_rnn_gemv_isa)(const float *h, const float *p, size_t K, int G, float *out)
{
    switch (G * U / VL) {
    case 1: GEMV_BODY(1); break;
    case 2: GEMV_BODY(2); break;
    case 3: GEMV_BODY(3); break;
    case 4: GEMV_BODY(4); break;
    case 6: GEMV_BODY(6); break;
    default: GEMV_BODY(8); break;
    }
}
#else
void KILN_ISA_FN(kiln_rnn_gemv_isa)(const float *h, const float *p, size_t K, int G, float *out)
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


/* ------------------------------------------------------------------ cells */

/* x clamped to [-c, c]; c = +inf leaves every x (NaN included) as it is. */
static inline float clampc(float x, float c)
{
    float y = x < -c ? -c : x;
    return y > c ? c : y;
}

static inline float bound(float clip) { return clip > 0 ? clip : INFINITY; }

static inline __attribute__((always_inline)) void lstm_body(const float *restrict px, const float *restrict hr, const float *restrict p,
                                                            float cl, bool input_forget, float *restrict c, float *restrict h,
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

void KILN_ISA_FN(kiln_rnn_lstm_cell_isa)(const float *restrict px, const float *restrict hr, const float *restrict p, float clip,
                                         bool input_forget, float *restrict c, float *restrict h)
{
    float cl = bound(clip);
    /* constant flags per copy: a select on a runtime bool kept gcc from vectorizing */
    if (p && input_forget)
        lstm_body(px, hr, p, cl, true, c, h, true);
    else if (p)
        lstm_body(px, hr, p, cl, false, c, h, true);
    else if (input_forget)
        lstm_body(px, hr, p, cl, true, c, h, false);
    else
        lstm_body(px, hr, p, cl, false, c, h, false);
}

void KILN_ISA_FN(kiln_rnn_gru_lbr_cell_isa)(const float *restrict px, const float *restrict hr, const float *restrict rbh, float clip,
                                            const float *restrict hp, float *restrict h)
{
    float cl = bound(clip);
    for (int u = 0; u < U; u++) {
        float z = sigmoid_core(clampc(px[u] + hr[u], cl));
        float r = sigmoid_core(clampc(px[U + u] + hr[U + u], cl));
        float n = tanh_core(clampc(px[2 * U + u] + r * (hr[2 * U + u] + rbh[u]), cl));
        h[u] = (1 - z) * n + z * hp[u];
    }
}

void KILN_ISA_FN(kiln_rnn_gru_zr_cell_isa)(const float *restrict px, const float *restrict hr, float clip, const float *restrict hp,
                                           float *restrict z, float *restrict rh)
{
    float cl = bound(clip);
    for (int u = 0; u < U; u++) {
        z[u] = sigmoid_core(clampc(px[u] + hr[u], cl));
        rh[u] = sigmoid_core(clampc(px[U + u] + hr[U + u], cl)) * hp[u];
    }
}

void KILN_ISA_FN(kiln_rnn_gru_h_cell_isa)(const float *restrict px, const float *restrict hr, const float *restrict z, float clip,
                                          const float *restrict hp, float *restrict h)
{
    float cl = bound(clip);
    for (int u = 0; u < U; u++) {
        float n = tanh_core(clampc(px[u] + hr[u], cl));
        h[u] = (1 - z[u]) * n + z[u] * hp[u];
    }
}

void KILN_ISA_FN(kiln_rnn_rnn_cell_isa)(const float *restrict px, const float *restrict hr, float clip, float *restrict h)
{
    float cl = bound(clip);
    for (int u = 0; u < U; u++) h[u] = tanh_core(clampc(px[u] + hr[u], cl));
}
