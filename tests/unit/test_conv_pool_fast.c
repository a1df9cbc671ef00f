/* test_conv_pool_fast.c: the fast paths of src/cpu/ops/pool.c (2-D MaxPool / AveragePool,
 * row by row with an unchecked interior) and src/cpu/ops/conv.c (direct depthwise Conv over
 * a padded, stride-phase-split plane) against naive references in double.
 *
 * Random odd shapes: kernels 1..5, strides 1..3, asymmetric pads, dilations 1..2 (pools and
 * depthwise), planes as small as 1x1 and 2x3 and planes smaller than the kernel (with enough
 * padding), ceil_mode and count_include_pad both ways, MaxPool Indices in both storage
 * orders, channel multipliers 1..3 and 3x3 kernels (the fused 3x3 loop). MaxPool also sees
 * NaN and -inf (all-NaN windows give NaN, all-padding windows -inf, Indices the first maximum
 * or, with no number, the first position); its other cases hold few distinct values, so ties
 * are common and Indices must name the first maximum. Tolerance per element: 1e-5 *
 * sum|terms| (float32 accumulation with margin); max is exact. Every other case, and the
 * ResNet-50 / MobileNetV2 sized ones, run with a session pool of 3 threads (the kernels'
 * kiln_pool_for split over planes), built here as the executor would hand it to the kernel.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/pool.h"
#include "cpu/kernel.h"
#include "test_support.h"

/* Whether got[i] is within tol[i] of want[i] (NaN matches NaN, infinities match exactly). */
static bool near(float got, double want, double tol)
{
    if (isnan(want)) return isnan(got);
    if (isinf(want)) return got == (float)want;
    return fabs((double)got - want) <= tol;
}

/* ------------------------------------------------------------------ pools */

struct pcase {
    int64_t N, C, H, W, k[2], s[2], d[2], pb[2], pe[2];
    bool ceil_mode, include_pad, col_major, avg, special;
};

/* Output size along dim i, as the spec (and pool.c's header) gives it. */
static int64_t pool_out(const struct pcase *c, int i, int64_t in)
{
    int64_t span = in + c->pb[i] + c->pe[i] - (c->k[i] - 1) * c->d[i] - 1;
    int64_t o = (c->ceil_mode ? (span + c->s[i] - 1) / c->s[i] : span / c->s[i]) + 1;
    if (c->ceil_mode && (o - 1) * c->s[i] >= in + c->pb[i]) o--;
    return o;
}

static void check_pool(const struct pcase *c, struct kiln_pool *pool, int t)
{
    int64_t OH = pool_out(c, 0, c->H), OW = pool_out(c, 1, c->W);
    int64_t xd[4] = {c->N, c->C, c->H, c->W};
    size_t nx = (size_t)(c->N * c->C * c->H * c->W), ny = (size_t)(c->N * c->C * OH * OW);
    struct kiln_value *in[1] = {rand_tensor(4, xd)};
    float *x = in[0]->t.data;
    if (!c->avg && !c->special) /* few distinct values: ties, so Indices must take the first */
        for (size_t i = 0; i < nx; i++) x[i] = floorf(x[i] * 2.0f) / 2.0f;
    if (c->special) /* some NaN and -inf, and whole NaN stretches */
        for (size_t i = 0; i < nx; i++) {
            int r = rng_int(6);
            if (r == 0) x[i] = NAN;
            else if (r == 1) x[i] = -INFINITY;
            else if (r == 2 && i + 3 < nx) x[i] = x[i + 1] = x[i + 2] = NAN;
        }
    struct attrs at = {0};
    int64_t pads[4] = {c->pb[0], c->pb[1], c->pe[0], c->pe[1]};
    add_ints(&at, "kernel_shape", c->k, 2);
    add_ints(&at, "strides", c->s, 2);
    add_ints(&at, "dilations", c->d, 2);
    add_ints(&at, "pads", pads, 4);
    add_i(&at, "ceil_mode", c->ceil_mode);
    if (c->avg) add_i(&at, "count_include_pad", c->include_pad);
    else add_i(&at, "storage_order", c->col_major);
    bool want_idx = !c->avg && (t % 2 == 0);
    struct kiln_value *out[2] = {0};
    kiln_err err = {0};
    kiln_status st = run_op_pool(pool, c->avg ? "AveragePool" : "MaxPool", c->avg ? 19 : 12, at.a,
                              at.n, in, 1, out, want_idx ? 2 : 1, &err);
    CHECK(st == KILN_OK, "case %d: %s", t, err.msg);
    if (st) {
        free_all(in, 1);
        return;
    }
    int64_t yd[4] = {c->N, c->C, OH, OW};
    CHECK(same_shape(&out[0]->t, 4, yd), "case %d: Y shape", t);
    const float *y = out[0]->t.data;
    const int64_t *idx = want_idx ? out[1]->t.data : NULL;
    int bad = 0;
    for (size_t o = 0; o < ny && bad < 3; o++) {
        int64_t ox = (int64_t)o % OW, oy = (int64_t)(o / (size_t)OW) % OH;
        size_t pl = o / (size_t)(OH * OW);
        const float *xp = x + pl * (size_t)(c->H * c->W);
        double acc = 0, abs_sum = 0, best = -INFINITY;
        int64_t count = 0, best_at = -1, first = -1;
        bool num = false;
        for (int64_t ky = 0; ky < c->k[0]; ky++)
            for (int64_t kx = 0; kx < c->k[1]; kx++) {
                int64_t iy = oy * c->s[0] - c->pb[0] + ky * c->d[0];
                int64_t ix = ox * c->s[1] - c->pb[1] + kx * c->d[1];
                bool inside = iy >= 0 && iy < c->H && ix >= 0 && ix < c->W;
                bool padded = iy < c->H + c->pe[0] && ix < c->W + c->pe[1];
                if (!inside) {
                    if (padded && c->include_pad) count++;
                    continue;
                }
                double v = xp[iy * c->W + ix];
                int64_t at_ = c->col_major ? ix * c->H + iy : iy * c->W + ix;
                if (first < 0) first = at_;
                acc += v;
                abs_sum += fabs(v);
                count++;
                if (!isnan(v) && (!num || v > best)) best = v, best_at = at_, num = true;
            }
        double want;
        int64_t want_at = (int64_t)(pl * (size_t)(c->H * c->W));
        if (c->avg) {
            want = count ? acc / (double)count : NAN;
        } else {
            want = num ? best : (first >= 0 ? NAN : -INFINITY);
            want_at += num ? best_at : (first >= 0 ? first : 0);
        }
        double tol = c->avg && count ? 1e-5 * abs_sum / (double)count : 0;
        if (!near(y[o], want, tol)) {
            bad++;
            CHECK(false, "case %d (%s, %dx%d k%lldx%lld s%lldx%lld): Y[%zu] = %.9g, want %.9g", t,
                  c->avg ? "avg" : "max", (int)c->H, (int)c->W, (long long)c->k[0],
                  (long long)c->k[1], (long long)c->s[0], (long long)c->s[1], o, y[o], want);
        }
        if (idx && idx[o] != want_at) {
            bad++;
            CHECK(false, "case %d: Indices[%zu] = %lld, want %lld", t, o, (long long)idx[o],
                  (long long)want_at);
        }
    }
    free_all(in, 1);
    free_all(out, 2);
}

static struct pcase random_pool(int t)
{
    struct pcase c = {.N = 1 + rng_int(2), .C = 1 + rng_int(3)};
    c.avg = t % 3 == 1;
    c.special = !c.avg && t % 3 == 2;
    c.ceil_mode = rng_int(2);
    c.include_pad = rng_int(2);
    c.col_major = rng_int(2);
    int64_t dims[2];
    for (int i = 0; i < 2; i++) {
        c.k[i] = 1 + rng_int(5);
        c.s[i] = 1 + rng_int(3);
        c.d[i] = rng_int(4) ? 1 : 2;
        int64_t dk = (c.k[i] - 1) * c.d[i] + 1;
        c.pb[i] = rng_int((int)c.k[i]); /* pads < kernel, as the spec requires */
        c.pe[i] = rng_int((int)c.k[i]);
        int shape = rng_int(5);
        if (shape == 0) dims[i] = 1;                      /* tiny */
        else if (shape == 1) dims[i] = 2 + i;             /* 2x3 */
        else if (shape == 2) dims[i] = 1 + rng_int(4);    /* often smaller than the kernel */
        else dims[i] = dk + rng_int(14);
        /* The padded input must hold one window. */
        if (dims[i] + c.pb[i] + c.pe[i] < dk) c.pe[i] = dk - dims[i] - c.pb[i];
    }
    c.H = dims[0];
    c.W = dims[1];
    return c;
}

static void test_pools(struct kiln_pool *pool)
{
    for (int t = 0; t < 600; t++) {
        struct pcase c = random_pool(t);
        check_pool(&c, t % 2 ? pool : NULL, t);
    }
    /* ResNet's stem pool, threaded and not. */
    struct pcase r = {.N = 1, .C = 8, .H = 112, .W = 112, .k = {3, 3}, .s = {2, 2}, .d = {1, 1},
                      .pb = {1, 1}, .pe = {1, 1}};
    check_pool(&r, NULL, 1000);
    check_pool(&r, pool, 1002);
    r.avg = r.include_pad = true;
    check_pool(&r, pool, 1003);
}

/* ------------------------------------------------------------------ depthwise Conv */

static void check_dw(struct kiln_pool *pool, int t, int64_t N, int64_t C, int64_t mult,
                     const int64_t *hw, const int64_t *k, const int64_t *s, const int64_t *d,
                     const int64_t *pads, bool bias)
{
    int64_t M = C * mult, out[2];
    for (int i = 0; i < 2; i++) {
        int64_t span = hw[i] + pads[i] + pads[2 + i] - (k[i] - 1) * d[i] - 1;
        out[i] = span < 0 ? 0 : span / s[i] + 1;
    }
    int64_t xd[4] = {N, C, hw[0], hw[1]}, wd[4] = {M, 1, k[0], k[1]};
    struct kiln_value *in[3] = {rand_tensor(4, xd), rand_tensor(4, wd),
                                bias ? rand_tensor(1, &M) : NULL};
    struct attrs at = {0};
    add_i(&at, "group", C);
    add_ints(&at, "kernel_shape", k, 2);
    add_ints(&at, "strides", s, 2);
    add_ints(&at, "dilations", d, 2);
    add_ints(&at, "pads", pads, 4);
    struct kiln_value *y = NULL;
    kiln_err err = {0};
    kiln_status st = run_op_pool(pool, "Conv", 11, at.a, at.n, in, 3, &y, 1, &err);
    CHECK(st == KILN_OK, "dw case %d: %s", t, err.msg);
    if (st) {
        free_all(in, 3);
        return;
    }
    int64_t yd[4] = {N, M, out[0], out[1]};
    CHECK(same_shape(&y->t, 4, yd), "dw case %d: Y shape", t);
    const float *x = in[0]->t.data, *w = in[1]->t.data, *b = bias ? in[2]->t.data : NULL;
    const float *yv = y->t.data;
    int bad = 0;
    for (int64_t n = 0; n < N; n++)
        for (int64_t m = 0; m < M; m++)
            for (int64_t oy = 0; oy < out[0]; oy++)
                for (int64_t ox = 0; ox < out[1] && bad < 3; ox++) {
                    const float *xp = x + (n * C + m / mult) * hw[0] * hw[1];
                    double acc = b ? b[m] : 0, abs_sum = fabs(acc);
                    for (int64_t ky = 0; ky < k[0]; ky++)
                        for (int64_t kx = 0; kx < k[1]; kx++) {
                            int64_t iy = oy * s[0] - pads[0] + ky * d[0];
                            int64_t ix = ox * s[1] - pads[1] + kx * d[1];
                            if (iy < 0 || iy >= hw[0] || ix < 0 || ix >= hw[1]) continue;
                            double term = (double)w[(m * k[0] + ky) * k[1] + kx] * xp[iy * hw[1] + ix];
                            acc += term;
                            abs_sum += fabs(term);
                        }
                    float got = yv[((n * M + m) * out[0] + oy) * out[1] + ox];
                    if (fabs(got - acc) > 1e-5 * abs_sum + 1e-30) {
                        bad++;
                        CHECK(false,
                              "dw case %d (%lldx%lld k%lldx%lld s%lldx%lld d%lldx%lld x%lld): "
                              "Y[%lld,%lld,%lld,%lld] = %.9g, want %.9g",
                              t, (long long)hw[0], (long long)hw[1], (long long)k[0],
                              (long long)k[1], (long long)s[0], (long long)s[1], (long long)d[0],
                              (long long)d[1], (long long)mult, (long long)n, (long long)m,
                              (long long)oy, (long long)ox, got, acc);
                    }
                }
    free_all(in, 3);
    kiln_value_free(y);
}

static void test_depthwise(struct kiln_pool *pool)
{
    for (int t = 0; t < 500; t++) {
        int64_t hw[2], k[2], s[2], d[2], pads[4];
        for (int i = 0; i < 2; i++) {
            k[i] = t % 4 == 0 ? 3 : 1 + rng_int(5);
            s[i] = 1 + rng_int(3);
            d[i] = 1 + rng_int(2);
            pads[i] = rng_int(4);
            pads[2 + i] = rng_int(4);
            int64_t dk = (k[i] - 1) * d[i] + 1;
            int shape = rng_int(5);
            hw[i] = shape == 0 ? 1 : shape == 1 ? 2 + i : shape == 2 ? 1 + rng_int(4) : dk + rng_int(14);
            /* At least one output: the padded input holds one window. */
            if (hw[i] + pads[i] + pads[2 + i] < dk) pads[2 + i] = dk - hw[i] - pads[i];
        }
        int64_t N = 1 + rng_int(2), C = 1 + rng_int(4), mult = 1 + (rng_int(3) == 0) * rng_int(3);
        check_dw(t % 2 ? pool : NULL, t, N, C, mult, hw, k, s, d, pads, rng_int(4) != 0);
    }
    /* MobileNetV2's shapes, threaded and not. */
    const int64_t one[2] = {1, 1}, two[2] = {2, 2}, k3[2] = {3, 3}, p1[4] = {1, 1, 1, 1};
    const int64_t big[2] = {56, 56}, odd[2] = {57, 31};
    const int64_t p01[4] = {0, 0, 1, 1};
    check_dw(NULL, 1000, 1, 24, 1, big, k3, one, one, p1, true);
    check_dw(pool, 1001, 1, 24, 1, big, k3, one, one, p1, true);
    check_dw(pool, 1002, 1, 16, 1, big, k3, two, one, p1, true);
    check_dw(pool, 1003, 1, 7, 1, odd, k3, two, one, p01, false);
    check_dw(pool, 1004, 2, 5, 2, odd, k3, one, two, p1, true);
}

int main(void)
{
    rng_seed(0x5eedc0de2dULL);
    struct kiln_pool *pool = NULL;
    kiln_err err = {0};
    CHECK(kiln_pool_create(3, &pool, &err) == KILN_OK, "pool: %s", err.msg);
    test_pools(pool);
    test_depthwise(pool);
    kiln_pool_free(pool);
    return test_summary("test_conv_pool_fast");
}
