/* src/cpu/isa/eltwise.c: the float32 element-wise loops of cpu/eltwise.h, one plain loop per
 * op (and per broadcast case) that the compiler vectorizes at this copy's width.
 *
 * The op is switched on once per call, outside the loops. Binary ops take a 2-D tile (rows of
 * n elements) so a broadcast walk with short rows, such as x[N,C/16,H,W,16] * s[N,C/16,1,1,16]
 * (rows of 16 with s repeating every row), costs one call per tile, not per row.
 */
#if defined(__GNUC__) && !defined(__clang__)
/* As in vmath.c: -O3 vectorizes loops that need an alias check and an epilogue, and without
 * trapping math the float selects stay selects. Without errno, sqrtf is the vector
 * instruction (kiln never reads errno; the value is the same). */
#pragma GCC optimize("O3", "no-trapping-math", "no-math-errno")
#endif

#include <math.h>

#include "cpu/eltwise.h"
#include "cpu/isa/eltwise_core.h"
#include "cpu/isa/vmath_v.h"

#define UN_LOOP(E)                                                                             \
    for (size_t i = 0; i < n; i++) {                                                           \
        const float v = x[i];                                                                  \
        y[i] = (E);                                                                            \
    }                                                                                          \
    break

void KILN_ISA_FN(kiln_ew_unary_f32_isa)(int op, const float *x, float *y, size_t n, float alpha,
                                        float beta)
{
    switch ((enum kiln_ew_unary)op) {
    case KILN_EW_ABS: UN_LOOP(fabsf(v));
    case KILN_EW_NEG: UN_LOOP(-v);
    case KILN_EW_FLOOR: UN_LOOP(floorf(v));
    case KILN_EW_CEIL: UN_LOOP(ceilf(v));
    case KILN_EW_ROUND: UN_LOOP(nearbyintf(v)); /* default rounding: ties to even */
    case KILN_EW_SQRT: UN_LOOP(sqrtf(v));
    case KILN_EW_RECIPROCAL: UN_LOOP(1.0f / v);
    case KILN_EW_EXP: UN_LOOP(exp_core(v));
    case KILN_EW_TANH: UN_LOOP(tanh_core(v));
#if defined(__AVX512F__)
    case KILN_EW_SIGMOID: sigmoid_v_rows(x, NULL, y, n, false, 0.0f); break; /* vmath_v.h */
#else
    case KILN_EW_SIGMOID: UN_LOOP(sigmoid_core(v));
#endif
    case KILN_EW_ERF: UN_LOOP(erf_core(v));
    case KILN_EW_RELU: UN_LOOP(ew_relu(v));
    case KILN_EW_LEAKYRELU: UN_LOOP(ew_leakyrelu(v, alpha));
    case KILN_EW_CLIP: UN_LOOP(ew_clip(v, alpha, beta));
    case KILN_EW_HARDSIGMOID: UN_LOOP(ew_hardsigmoid(v, alpha, beta));
    case KILN_EW_HARDSWISH: UN_LOOP(ew_hardswish(v, alpha, beta));
#if defined(__AVX512F__)
    case KILN_EW_GELU: gelu_v_rows(x, NULL, y, n); break; /* the fused activation's bits (vmath_v.h) */
#else
    case KILN_EW_GELU: UN_LOOP(ew_gelu(v));
#endif
    case KILN_EW_GELU_TANH: UN_LOOP(ew_gelu_tanh(v));
#if defined(__AVX512F__)
    case KILN_EW_SILU: sigmoid_v_rows(x, NULL, y, n, true, alpha); break;
#else
    case KILN_EW_SILU: UN_LOOP(ew_silu(v, alpha));
#endif
    case KILN_EW_SOFTSIGN: UN_LOOP(v / (1.0f + fabsf(v)));
    case KILN_EW_THRESHOLDEDRELU: UN_LOOP(v > alpha ? v : 0.0f);
    case KILN_EW_SHRINK: UN_LOOP(v < -alpha ? v + beta : v > alpha ? v - beta : 0.0f);
    case KILN_EW_SIGN: UN_LOOP(v > 0.0f ? 1.0f : v < 0.0f ? -1.0f : v);
    case KILN_EW_SQUARE: UN_LOOP(v * v);
    /* sqrt(-0) is -0 and sqrt(-inf) NaN where pow(x, 0.5) gives +0 and +inf; adding +0
     * turns -0 into +0 and leaves every other value alone. */
    case KILN_EW_POW_HALF: UN_LOOP(v == -INFINITY ? INFINITY : sqrtf(v) + 0.0f);
    case KILN_EW_UNARY_COUNT: break;
    }
}

/* One tile, output type TY, element expression E of x (from a) and z (from b). The four
 * step cases are separate loops so each is a plain vectorizable one. */
#define BIN_TILE(TY, E)                                                                        \
    do {                                                                                       \
        TY *yt = y;                                                                            \
        for (size_t r = 0; r < rows; r++) {                                                    \
            const float *pa = a + r * ra, *pb = b + r * rb;                                    \
            TY *py = yt + r * n;                                                               \
            if (sa && sb) {                                                                    \
                for (size_t i = 0; i < n; i++) {                                               \
                    const float x = pa[i], z = pb[i];                                          \
                    py[i] = (TY)(E);                                                           \
                }                                                                              \
            } else if (sa) {                                                                   \
                const float z = pb[0];                                                         \
                for (size_t i = 0; i < n; i++) {                                               \
                    const float x = pa[i];                                                     \
                    py[i] = (TY)(E);                                                           \
                }                                                                              \
            } else if (sb) {                                                                   \
                const float x = pa[0];                                                         \
                for (size_t i = 0; i < n; i++) {                                               \
                    const float z = pb[i];                                                     \
                    py[i] = (TY)(E);                                                           \
                }                                                                              \
            } else {                                                                           \
                const float x = pa[0], z = pb[0];                                              \
                const TY v = (TY)(E);                                                          \
                for (size_t i = 0; i < n; i++) py[i] = v;                                      \
            }                                                                                  \
        }                                                                                      \
    } while (0);                                                                               \
    break

/* Max/Min: NaN in either operand gives NaN (x + z), as numpy's maximum/minimum. */
#define MAX_E (x != x || z != z ? x + z : x > z ? x : z)
#define MIN_E (x != x || z != z ? x + z : x < z ? x : z)

void KILN_ISA_FN(kiln_ew_binary_f32_isa)(int op, size_t rows, size_t n, const float *a,
                                         size_t ra, size_t sa, const float *b, size_t rb,
                                         size_t sb, void *y)
{
    switch ((enum kiln_ew_binary)op) {
    case KILN_EW_ADD: BIN_TILE(float, x + z);
    case KILN_EW_SUB: BIN_TILE(float, x - z);
    case KILN_EW_MUL: BIN_TILE(float, x * z);
    case KILN_EW_DIV: BIN_TILE(float, x / z);
    case KILN_EW_MAX: BIN_TILE(float, MAX_E);
    case KILN_EW_MIN: BIN_TILE(float, MIN_E);
    case KILN_EW_PRELU: BIN_TILE(float, x < 0.0f ? x * z : x);
    case KILN_EW_EQ: BIN_TILE(uint8_t, x == z);
    case KILN_EW_LT: BIN_TILE(uint8_t, x < z);
    case KILN_EW_GT: BIN_TILE(uint8_t, x > z);
    case KILN_EW_LE: BIN_TILE(uint8_t, x <= z);
    case KILN_EW_GE: BIN_TILE(uint8_t, x >= z);
    case KILN_EW_BINARY_COUNT: break;
    }
}
