/* src/cpu/isa/reduce.c: the reductions' row and column folds (contract and error bound in
 * cpu/reduce_isa.h).
 *
 * Row folds keep 32 independent double lanes (lane l takes elements j with j % 32 == l, in
 * order) and combine them pairwise, then fold the tail in order: a fixed order, so gcc's
 * SLP vectorization of the lane loop (no reassociation needed) gives the same bits on every
 * instruction set (up to FMA fusion of SQSUM). MAX/MIN keep float lanes for float input (exact) and let a NaN stick.
 */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O3", "no-trapping-math")
#endif

#include <math.h>

#include "cpu/reduce_isa.h"

#define LANES 32

/* The max/min step with NaN sticking: v wins when it is larger (smaller) or NaN. */
#define MAXSTEP(a, v) (((v) > (a) || (v) != (v)) ? (v) : (a))
#define MINSTEP(a, v) (((v) < (a) || (v) != (v)) ? (v) : (a))

/* Sums lanes a[0..LANES) pairwise. */
static inline double lanes_sum(double *a)
{
    for (int w = LANES / 2; w >= 1; w /= 2)
        for (int l = 0; l < w; l++) a[l] += a[l + w];
    return a[0];
}

static inline double lanes_prod(double *a)
{
    for (int w = LANES / 2; w >= 1; w /= 2)
        for (int l = 0; l < w; l++) a[l] *= a[l + w];
    return a[0];
}

#define DEFINE_ROW(NAME, T, FABS)                                                              \
    void KILN_ISA_FN(NAME)(const T *x, size_t n, int op, double ref, double *acc)              \
    {                                                                                          \
        double a[LANES];                                                                       \
        size_t j = 0;                                                                          \
        double r;                                                                              \
        switch (op) {                                                                          \
        case KILN_RED_SUM:                                                                     \
        case KILN_RED_ASUM:                                                                    \
        case KILN_RED_SQSUM:                                                                   \
            for (int l = 0; l < LANES; l++) a[l] = 0;                                          \
            if (op == KILN_RED_SUM) {                                                          \
                for (; j + LANES <= n; j += LANES)                                             \
                    for (int l = 0; l < LANES; l++) a[l] += (double)x[j + l];                  \
                r = lanes_sum(a);                                                              \
                for (; j < n; j++) r += (double)x[j];                                          \
            } else if (op == KILN_RED_ASUM) {                                                  \
                for (; j + LANES <= n; j += LANES)                                             \
                    for (int l = 0; l < LANES; l++) a[l] += (double)FABS(x[j + l]);            \
                r = lanes_sum(a);                                                              \
                for (; j < n; j++) r += (double)FABS(x[j]);                                    \
            } else {                                                                           \
                for (; j + LANES <= n; j += LANES)                                             \
                    for (int l = 0; l < LANES; l++) {                                          \
                        double v = (double)x[j + l];                                           \
                        a[l] += v * v;                                                         \
                    }                                                                          \
                r = lanes_sum(a);                                                              \
                for (; j < n; j++) r += (double)x[j] * (double)x[j];                           \
            }                                                                                  \
            *acc += r;                                                                         \
            break;                                                                             \
        case KILN_RED_PROD:                                                                    \
            for (int l = 0; l < LANES; l++) a[l] = 1;                                          \
            for (; j + LANES <= n; j += LANES)                                                 \
                for (int l = 0; l < LANES; l++) a[l] *= (double)x[j + l];                      \
            r = lanes_prod(a);                                                                 \
            for (; j < n; j++) r *= (double)x[j];                                              \
            *acc *= r;                                                                         \
            break;                                                                             \
        case KILN_RED_MAX:                                                                     \
        case KILN_RED_MIN: {                                                                   \
            const int mx = op == KILN_RED_MAX;                                                 \
            T m[LANES];                                                                        \
            for (int l = 0; l < LANES; l++) m[l] = (T)(mx ? -INFINITY : INFINITY);             \
            if (mx) {                                                                          \
                for (; j + LANES <= n; j += LANES)                                             \
                    for (int l = 0; l < LANES; l++) m[l] = MAXSTEP(m[l], x[j + l]);            \
            } else {                                                                           \
                for (; j + LANES <= n; j += LANES)                                             \
                    for (int l = 0; l < LANES; l++) m[l] = MINSTEP(m[l], x[j + l]);            \
            }                                                                                  \
            double t = *acc;                                                                   \
            for (int l = 0; l < LANES; l++)                                                    \
                t = mx ? MAXSTEP(t, (double)m[l]) : MINSTEP(t, (double)m[l]);                  \
            for (; j < n; j++)                                                                 \
                t = mx ? MAXSTEP(t, (double)x[j]) : MINSTEP(t, (double)x[j]);                  \
            *acc = t;                                                                          \
            break;                                                                             \
        }                                                                                      \
        case KILN_RED_EXPSUM:                                                                  \
            for (int l = 0; l < LANES; l++) a[l] = 0;                                          \
            for (; j + LANES <= n; j += LANES)                                                 \
                for (int l = 0; l < LANES; l++) a[l] += exp((double)x[j + l] - ref);           \
            r = lanes_sum(a);                                                                  \
            for (; j < n; j++) r += exp((double)x[j] - ref);                                   \
            *acc += r;                                                                         \
            break;                                                                             \
        default: break;                                                                        \
        }                                                                                      \
    }

#define DEFINE_COL(NAME, T, FABS)                                                              \
    void KILN_ISA_FN(NAME)(const T *x, size_t n, int op, const double *ref, double *acc)       \
    {                                                                                          \
        switch (op) {                                                                          \
        case KILN_RED_SUM:                                                                     \
            for (size_t j = 0; j < n; j++) acc[j] += (double)x[j];                             \
            break;                                                                             \
        case KILN_RED_ASUM:                                                                    \
            for (size_t j = 0; j < n; j++) acc[j] += (double)FABS(x[j]);                       \
            break;                                                                             \
        case KILN_RED_SQSUM:                                                                   \
            for (size_t j = 0; j < n; j++) acc[j] += (double)x[j] * (double)x[j];              \
            break;                                                                             \
        case KILN_RED_PROD:                                                                    \
            for (size_t j = 0; j < n; j++) acc[j] *= (double)x[j];                             \
            break;                                                                             \
        case KILN_RED_MAX:                                                                     \
            for (size_t j = 0; j < n; j++) acc[j] = MAXSTEP(acc[j], (double)x[j]);             \
            break;                                                                             \
        case KILN_RED_MIN:                                                                     \
            for (size_t j = 0; j < n; j++) acc[j] = MINSTEP(acc[j], (double)x[j]);             \
            break;                                                                             \
        case KILN_RED_EXPSUM:                                                                  \
            for (size_t j = 0; j < n; j++) acc[j] += exp((double)x[j] - ref[j]);               \
            break;                                                                             \
        default: break;                                                                        \
        }                                                                                      \
    }

DEFINE_ROW(kiln_red_row_f32_isa, float, fabsf)
DEFINE_ROW(kiln_red_row_f64_isa, double, fabs)
DEFINE_COL(kiln_red_col_f32_isa, float, fabsf)
DEFINE_COL(kiln_red_col_f64_isa, double, fabs)
