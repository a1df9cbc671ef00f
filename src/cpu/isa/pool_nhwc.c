/* src/cpu/isa/pool_nhwc.c: one output row of the channels-last MaxPool / AveragePool
 * (contract in cpu/pool_nhwc_isa.h). Plain C loops over the contiguous channels, which the
 * compiler vectorizes per level (max: x > m ? x : m is maxps with the operands in this order,
 * so equal values and NaN behave as in the scalar NCHW loops). Also kiln.SqueezeExcite's
 * loops (channel sums, channel scale, the small GEMVs; contracts in cpu/pool_nhwc_isa.h). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O3", "no-trapping-math")
#endif

#include <math.h>
#include <stdbool.h>

#include "cpu/pool_nhwc_isa.h"

static void row_init(float *restrict y, int64_t n, float v)
{
    for (int64_t c = 0; c < n; c++) y[c] = v;
}

static void row_max(float *restrict y, const float *restrict x, int64_t n)
{
    for (int64_t c = 0; c < n; c++) y[c] = x[c] > y[c] ? x[c] : y[c];
}

static void row_add(float *restrict y, const float *restrict x, int64_t n)
{
    for (int64_t c = 0; c < n; c++) y[c] += x[c];
}

static void row_div(float *restrict y, int64_t n, float d)
{
    for (int64_t c = 0; c < n; c++) y[c] /= d;
}

/* MaxPool's rule for an output left at -inf in channel c: NaN when the window has taps
 * inside the input and every one of them is NaN; -inf otherwise (a -inf tap, or padding
 * only). */
static float max_fixup(const struct kiln_pool_nhwc_row *r, const struct kiln_pool_nhwc_col *col,
                       int64_t ox, int64_t c)
{
    int64_t x0 = ox * r->sx - r->pbx;
    bool any = false;
    for (int64_t ky = r->ky0; ky < r->ky1; ky++) {
        const float *xr = r->x + (r->iy0 + ky * r->dy) * r->W * r->C;
        for (int64_t kx = col->kx0; kx < col->kx1; kx++) {
            if (!isnan(xr[(x0 + kx * r->dx) * r->C + c])) return -INFINITY;
            any = true;
        }
    }
    return any ? NAN : -INFINITY;
}

/* MaxPool's channels [0, CB * (C / CB)) of output column ox: the window's maximum kept in a
 * block of CB floats (registers) over all taps, stored once, instead of a pass over the
 * output row per tap (ResNet-50's 3x3 / 2 pool over 112x112x64: 0.45 -> 0.16 ms alone). The same
 * comparisons in the same order as row_max. */
#define CB 32
static void max_blocks(const struct kiln_pool_nhwc_row *r, const struct kiln_pool_nhwc_col *col, int64_t ox,
                       float *restrict yo)
{
    const int64_t C = r->C, WC = r->W * r->C, x0 = ox * r->sx - r->pbx;
    for (int64_t c0 = 0; c0 + CB <= C; c0 += CB) {
        float m[CB];
        for (int j = 0; j < CB; j++) m[j] = -INFINITY;
        for (int64_t ky = r->ky0; ky < r->ky1; ky++) {
            const float *xr = r->x + (r->iy0 + ky * r->dy) * WC + c0;
            for (int64_t kx = col->kx0; kx < col->kx1; kx++) {
                const float *restrict xs = xr + (x0 + kx * r->dx) * C;
                for (int j = 0; j < CB; j++) m[j] = xs[j] > m[j] ? xs[j] : m[j];
            }
        }
        int low = 0; /* a count, not a flag: the compiler vectorizes it */
        for (int j = 0; j < CB; j++) low += m[j] == -INFINITY;
        for (int j = 0; j < CB; j++) yo[c0 + j] = m[j];
        if (low)
            for (int j = 0; j < CB; j++)
                if (m[j] == -INFINITY) yo[c0 + j] = max_fixup(r, col, ox, c0 + j);
    }
}

void KILN_ISA_FN(kiln_pool_nhwc_row_isa)(const struct kiln_pool_nhwc_row *r)
{
    const int64_t C = r->C, WC = r->W * r->C;
    for (int64_t ox = 0; ox < r->OW; ox++) {
        const struct kiln_pool_nhwc_col *col = &r->cols[ox];
        float *yo = r->y + ox * C;
        int64_t x0 = ox * r->sx - r->pbx;
        /* MaxPool: whole blocks of CB channels in registers, the rest (and AveragePool) a
         * pass over the output per tap */
        int64_t c0 = r->is_max ? C / CB * CB : 0, n = C - c0;
        if (c0) max_blocks(r, col, ox, yo);
        if (!n) continue;
        float *yt = yo + c0;
        row_init(yt, n, r->is_max ? -INFINITY : 0.0f);
        for (int64_t ky = r->ky0; ky < r->ky1; ky++) {
            const float *xr = r->x + (r->iy0 + ky * r->dy) * WC + c0;
            for (int64_t kx = col->kx0; kx < col->kx1; kx++) {
                const float *xs = xr + (x0 + kx * r->dx) * C;
                if (r->is_max)
                    row_max(yt, xs, n);
                else
                    row_add(yt, xs, n);
            }
        }
        if (r->is_max) {
            for (int64_t c = c0; c < C; c++)
                if (yo[c] == -INFINITY) yo[c] = max_fixup(r, col, ox, c);
            continue;
        }
        int64_t cnt = r->include_pad ? r->cy * col->cnt : (r->ky1 - r->ky0) * (col->kx1 - col->kx0);
        if (cnt)
            row_div(yo, C, (float)cnt);
        else
            row_init(yo, C, NAN);
    }
}

/* ------------------------------------------------------------------ squeeze-excitation */

void KILN_ISA_FN(kiln_nhwc_chansum_isa)(const float *x, int64_t P, int64_t C, int64_t ld, float *sum)
{
    row_init(sum, C, 0.0f);
    int64_t p = 0;
    for (; p + 4 <= P; p += 4) {
        const float *restrict x0 = x + p * ld, *restrict x1 = x0 + ld, *restrict x2 = x1 + ld,
                              *restrict x3 = x2 + ld;
        float *restrict s = sum;
        for (int64_t c = 0; c < C; c++) s[c] += (x0[c] + x1[c]) + (x2[c] + x3[c]);
    }
    for (; p < P; p++) row_add(sum, x + p * ld, C);
}

void KILN_ISA_FN(kiln_nhwc_chanscale_isa)(const float *x, const float *g, float *y, int64_t P, int64_t C,
                                          int64_t ld)
{
    for (int64_t p = 0; p < P; p++) {
        const float *xp = x + p * ld; /* y may be x: no restrict on these two */
        float *yp = y + p * ld;
        for (int64_t c = 0; c < C; c++) yp[c] = xp[c] * g[c];
    }
}

void KILN_ISA_FN(kiln_se_gemv_isa)(const float *wt, int64_t ld, const float *x, int64_t K, int64_t N, float *y)
{
    row_init(y, N, 0.0f);
    int64_t k = 0;
    for (; k + 4 <= K; k += 4) {
        const float *restrict w0 = wt + k * ld, *restrict w1 = w0 + ld, *restrict w2 = w1 + ld,
                              *restrict w3 = w2 + ld;
        float a0 = x[k], a1 = x[k + 1], a2 = x[k + 2], a3 = x[k + 3];
        float *restrict yy = y;
        for (int64_t n = 0; n < N; n++) yy[n] += (a0 * w0[n] + a1 * w1[n]) + (a2 * w2[n] + a3 * w3[n]);
    }
    for (; k < K; k++) {
        const float *restrict w = wt + k * ld;
        float a = x[k];
        float *restrict yy = y;
        for (int64_t n = 0; n < N; n++) yy[n] += a * w[n];
    }
}
