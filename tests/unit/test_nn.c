/* test_nn.c: the CPU kernels of src/cpu/ops/{conv,pool,norm,gemm,nn_extra}.c against naive
 * references written from the ONNX definitions.
 *
 * Conv: 200 random cases (1-D..3-D, groups, strides, dilations, asymmetric pads, auto_pad,
 * with and without bias) against a direct convolution in double. ConvTranspose: 120 random
 * cases against the scatter definition y[o*s - pb + j*d] += x[o] * w[j]. MatMul: batched
 * broadcasting and 1-D promotion against a naive loop. Pooling: MaxPool with Indices
 * (both storage orders) and AveragePool with count_include_pad and ceil_mode against a
 * window walk. LayerNormalization against a two-pass reference. Plus the error paths
 * (message names the problem, status is not OK).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/kernel.h"
#include "test_support.h"

/* ------------------------------------------------------------------ Conv */

static void test_conv(void)
{
    for (int t = 0; t < 200; t++) {
        int nd = 1 + rng_int(3);
        int64_t N = 1 + rng_int(2), G = 1 + rng_int(3), cg = 1 + rng_int(3), mg = 1 + rng_int(3);
        int64_t C = G * cg, M = G * mg;
        int64_t in[3], kk[3], s[3], d[3], pads[6], out[3];
        const char *ap = rng_int(4) == 0 ? (rng_int(2) ? "SAME_UPPER" : "SAME_LOWER") : "NOTSET";
        bool same = strcmp(ap, "NOTSET") != 0;
        for (int i = 0; i < nd; i++) {
            kk[i] = 1 + rng_int(3);
            s[i] = 1 + rng_int(2);
            d[i] = 1 + rng_int(2);
            pads[i] = rng_int(3);
            pads[nd + i] = rng_int(3);
            int64_t dk = (kk[i] - 1) * d[i] + 1;
            in[i] = dk + rng_int(5);
        }
        struct attrs at = {.n = 0};
        add_ints(&at, "strides", s, (size_t)nd);
        add_ints(&at, "dilations", d, (size_t)nd);
        add_i(&at, "group", G);
        if (same) add_s(&at, "auto_pad", ap);
        else add_ints(&at, "pads", pads, 2 * (size_t)nd);
        size_t os = 1;
        for (int i = 0; i < nd; i++) {
            int64_t dk = (kk[i] - 1) * d[i] + 1;
            if (same) {
                out[i] = (in[i] + s[i] - 1) / s[i];
                int64_t tot = (out[i] - 1) * s[i] + dk - in[i];
                if (tot < 0) tot = 0;
                pads[i] = strcmp(ap, "SAME_UPPER") == 0 ? tot / 2 : tot - tot / 2;
            } else {
                out[i] = (in[i] + pads[i] + pads[nd + i] - dk) / s[i] + 1;
            }
            os *= (size_t)out[i];
        }
        int64_t xd[5] = {N, C}, wd[5] = {M, cg}, bd[1] = {M};
        for (int i = 0; i < nd; i++) xd[2 + i] = in[i], wd[2 + i] = kk[i];
        bool bias = rng_int(2);
        struct kiln_value *in_v[3] = {rand_tensor(nd + 2, xd), rand_tensor(nd + 2, wd),
                                      bias ? rand_tensor(1, bd) : NULL};
        const float *x = in_v[0]->t.data, *w = in_v[1]->t.data;
        const float *b = bias ? in_v[2]->t.data : NULL;
        size_t ny = (size_t)(N * M) * os, ks = 1, is = 1;
        for (int i = 0; i < nd; i++) ks *= (size_t)kk[i], is *= (size_t)in[i];
        double *want = calloc(ny, sizeof *want);
        /* Direct convolution. */
        for (int64_t n = 0; n < N; n++)
            for (int64_t m = 0; m < M; m++)
                for (size_t o = 0; o < os; o++) {
                    int64_t oi[3];
                    size_t r = o;
                    for (int i = nd - 1; i >= 0; i--) oi[i] = (int64_t)(r % (size_t)out[i]), r /= (size_t)out[i];
                    double acc = b ? b[m] : 0;
                    int64_t g = m / mg;
                    for (int64_t c = 0; c < cg; c++)
                        for (size_t kq = 0; kq < ks; kq++) {
                            int64_t ki[3];
                            size_t rr = kq;
                            for (int i = nd - 1; i >= 0; i--) ki[i] = (int64_t)(rr % (size_t)kk[i]), rr /= (size_t)kk[i];
                            size_t xo = 0;
                            bool ok = true;
                            for (int i = 0; i < nd; i++) {
                                int64_t ix = oi[i] * s[i] - pads[i] + ki[i] * d[i];
                                if (ix < 0 || ix >= in[i]) ok = false;
                                xo = xo * (size_t)in[i] + (size_t)ix;
                            }
                            if (!ok) continue;
                            acc += (double)x[(size_t)(n * C + g * cg + c) * is + xo] *
                                   w[(size_t)(m * cg + c) * ks + kq];
                        }
                    want[(size_t)(n * M + m) * os + o] = acc;
                }
        struct kiln_value *y = NULL;
        kiln_err e;
        kiln_status st = run_node("", "Conv", 11, at.a, at.n, in_v, 3, &y, 1, &e);
        CHECK(st == KILN_OK, "Conv case %d: %s", t, e.msg);
        if (st == KILN_OK) {
            char what[64];
            snprintf(what, sizeof what, "Conv case %d (nd %d, %s)", t, nd, ap);
            close_to(y, want, ny, 1e-4, what);
        }
        kiln_value_free(y);
        for (int i = 0; i < 3; i++) kiln_value_free(in_v[i]);
        free(want);
    }
    /* Mismatched channels: a clean error naming them. */
    int64_t xd[4] = {1, 3, 4, 4}, wd[4] = {2, 2, 3, 3};
    struct kiln_value *in_v[2] = {rand_tensor(4, xd), rand_tensor(4, wd)}, *y = NULL;
    kiln_err e;
    kiln_status st = run_node("", "Conv", 11, NULL, 0, in_v, 2, &y, 1, &e);
    CHECK(st == KILN_E_INVALID_ARG && strstr(e.msg, "channels"), "Conv bad channels: %d %s", st,
          st ? e.msg : "");
    for (int i = 0; i < 2; i++) kiln_value_free(in_v[i]);
}

/* ------------------------------------------------------------------ ConvTranspose */

static void test_convtranspose(void)
{
    for (int t = 0; t < 120; t++) {
        int nd = 1 + rng_int(2);
        int64_t N = 1 + rng_int(2), G = 1 + rng_int(2), cg = 1 + rng_int(3), mg = 1 + rng_int(3);
        int64_t C = G * cg, M = G * mg;
        int64_t in[2], kk[2], s[2], d[2], pads[4], opad[2], out[2];
        for (int i = 0; i < nd; i++) {
            kk[i] = 1 + rng_int(3);
            s[i] = 1 + rng_int(3);
            d[i] = 1 + rng_int(2);
            in[i] = 1 + rng_int(4);
            opad[i] = rng_int((int)(s[i] > d[i] ? s[i] : d[i]));
            int64_t dk = (kk[i] - 1) * d[i] + 1, full = s[i] * (in[i] - 1) + opad[i] + dk;
            pads[i] = rng_int((int)(full / 2) + 1);
            pads[nd + i] = rng_int((int)(full / 2) + 1);
            out[i] = full - pads[i] - pads[nd + i];
        }
        struct attrs at = {.n = 0};
        add_ints(&at, "strides", s, (size_t)nd);
        add_ints(&at, "dilations", d, (size_t)nd);
        add_ints(&at, "pads", pads, 2 * (size_t)nd);
        add_ints(&at, "output_padding", opad, (size_t)nd);
        add_i(&at, "group", G);
        int64_t xd[4] = {N, C}, wd[4] = {C, mg}, bd[1] = {M};
        size_t is = 1, ks = 1, os = 1;
        for (int i = 0; i < nd; i++) {
            xd[2 + i] = in[i], wd[2 + i] = kk[i];
            is *= (size_t)in[i], ks *= (size_t)kk[i], os *= (size_t)out[i];
        }
        struct kiln_value *in_v[3] = {rand_tensor(nd + 2, xd), rand_tensor(nd + 2, wd),
                                      rand_tensor(1, bd)};
        const float *x = in_v[0]->t.data, *w = in_v[1]->t.data, *b = in_v[2]->t.data;
        size_t ny = (size_t)(N * M) * os;
        double *want = calloc(ny + 1, sizeof *want);
        for (int64_t n = 0; n < N; n++)
            for (int64_t m = 0; m < M; m++)
                for (size_t o = 0; o < os; o++) want[(size_t)(n * M + m) * os + o] = b[m];
        for (int64_t n = 0; n < N; n++)
            for (int64_t c = 0; c < C; c++)
                for (size_t p = 0; p < is; p++)
                    for (int64_t j = 0; j < mg; j++)
                        for (size_t kq = 0; kq < ks; kq++) {
                            int64_t pi[2], ki[2];
                            pi[nd - 1] = (int64_t)(p % (size_t)in[nd - 1]);
                            if (nd == 2) pi[0] = (int64_t)(p / (size_t)in[1]);
                            ki[nd - 1] = (int64_t)(kq % (size_t)kk[nd - 1]);
                            if (nd == 2) ki[0] = (int64_t)(kq / (size_t)kk[1]);
                            size_t yo = 0;
                            bool ok = true;
                            for (int i = 0; i < nd; i++) {
                                int64_t oy = pi[i] * s[i] - pads[i] + ki[i] * d[i];
                                if (oy < 0 || oy >= out[i]) ok = false;
                                yo = yo * (size_t)out[i] + (size_t)oy;
                            }
                            if (!ok) continue;
                            int64_t m = (c / cg) * mg + j;
                            want[(size_t)(n * M + m) * os + yo] +=
                                (double)x[(size_t)(n * C + c) * is + p] * w[(size_t)(c * mg + j) * ks + kq];
                        }
        struct kiln_value *y = NULL;
        kiln_err e;
        kiln_status st = run_node("", "ConvTranspose", 11, at.a, at.n, in_v, 3, &y, 1, &e);
        CHECK(st == KILN_OK, "ConvTranspose case %d: %s", t, e.msg);
        if (st == KILN_OK) {
            char what[64];
            snprintf(what, sizeof what, "ConvTranspose case %d (nd %d)", t, nd);
            close_to(y, want, ny, 1e-4, what);
        }
        kiln_value_free(y);
        for (int i = 0; i < 3; i++) kiln_value_free(in_v[i]);
        free(want);
    }
}

/* ------------------------------------------------------------------ MatMul */

static void test_matmul(void)
{
    static const struct {
        int ra, rb;
        int64_t a[4], b[4];
    } cases[] = {
        {1, 1, {5}, {5}},
        {1, 3, {4}, {2, 4, 3}},
        {3, 1, {2, 3, 4}, {4}},
        {2, 2, {7, 17}, {17, 9}},
        {3, 2, {3, 5, 6}, {6, 2}},       /* shared B: folded into one tall product */
        {4, 3, {2, 1, 3, 4}, {3, 4, 5}}, /* both broadcast */
        {3, 3, {1, 2, 3}, {4, 3, 2}},
        {2, 2, {0, 3}, {3, 4}},          /* empty */
    };
    for (size_t t = 0; t < sizeof cases / sizeof *cases; t++) {
        int ra = cases[t].ra, rb = cases[t].rb;
        struct kiln_value *in_v[2] = {rand_tensor(ra, cases[t].a), rand_tensor(rb, cases[t].b)};
        /* Promote to 4-D views for the reference. */
        int64_t A[4] = {1, 1, 1, 1}, Bd[4] = {1, 1, 1, 1};
        if (ra == 1) A[3] = cases[t].a[0];
        else for (int i = 0; i < ra; i++) A[4 - ra + i] = cases[t].a[i];
        if (rb == 1) Bd[2] = cases[t].b[0];
        else for (int i = 0; i < rb; i++) Bd[4 - rb + i] = cases[t].b[i];
        int64_t b0 = A[0] > Bd[0] ? A[0] : Bd[0], b1 = A[1] > Bd[1] ? A[1] : Bd[1];
        int64_t M = A[2], K = A[3], N = Bd[3];
        size_t ny = (size_t)(b0 * b1 * M * N);
        double *want = calloc(ny + 1, sizeof *want);
        const float *a = in_v[0]->t.data, *b = in_v[1]->t.data;
        for (int64_t i0 = 0; i0 < b0; i0++)
            for (int64_t i1 = 0; i1 < b1; i1++)
                for (int64_t i = 0; i < M; i++)
                    for (int64_t j = 0; j < N; j++) {
                        double s = 0;
                        size_t ao = (size_t)(((A[0] > 1 ? i0 : 0) * A[1] + (A[1] > 1 ? i1 : 0)) * M * K);
                        size_t bo = (size_t)(((Bd[0] > 1 ? i0 : 0) * Bd[1] + (Bd[1] > 1 ? i1 : 0)) * K * N);
                        for (int64_t p = 0; p < K; p++)
                            s += (double)a[ao + (size_t)(i * K + p)] * b[bo + (size_t)(p * N + j)];
                        want[(size_t)(((i0 * b1 + i1) * M + i) * N + j)] = s;
                    }
        struct kiln_value *y = NULL;
        kiln_err e;
        kiln_status st = run_node("", "MatMul", 13, NULL, 0, in_v, 2, &y, 1, &e);
        CHECK(st == KILN_OK, "MatMul case %zu: %s", t, e.msg);
        if (st == KILN_OK) {
            int want_rank = (ra > rb ? ra : rb);
            if (ra == 1 && rb == 1) want_rank = 0;
            else if (ra == 1 || rb == 1) want_rank = (ra > rb ? ra : rb) - 1;
            CHECK(y->t.rank == want_rank, "MatMul case %zu: rank %d, want %d", t, y->t.rank, want_rank);
            close_to(y, want, ny, 1e-4, "MatMul");
        }
        kiln_value_free(y);
        kiln_value_free(in_v[0]);
        kiln_value_free(in_v[1]);
        free(want);
    }
    int64_t ad[2] = {2, 3}, bd[2] = {4, 2};
    struct kiln_value *in_v[2] = {rand_tensor(2, ad), rand_tensor(2, bd)}, *y = NULL;
    kiln_err e;
    kiln_status st = run_node("", "MatMul", 13, NULL, 0, in_v, 2, &y, 1, &e);
    CHECK(st == KILN_E_INVALID_ARG && strstr(e.msg, "3 vs 4"), "MatMul mismatch: %s", st ? e.msg : "ok");
    kiln_value_free(in_v[0]);
    kiln_value_free(in_v[1]);
}

/* ------------------------------------------------------------------ pooling */

static void test_pool(void)
{
    for (int t = 0; t < 100; t++) {
        int64_t H = 1 + rng_int(7), W = 1 + rng_int(7), kh = 1 + rng_int(3), kw = 1 + rng_int(3);
        int64_t s[2] = {1 + rng_int(2), 1 + rng_int(3)}, pads[4];
        for (int i = 0; i < 4; i++) pads[i] = rng_int(2);
        if (pads[0] >= kh) pads[0] = kh - 1;
        if (pads[2] >= kh) pads[2] = kh - 1;
        if (pads[1] >= kw) pads[1] = kw - 1;
        if (pads[3] >= kw) pads[3] = kw - 1;
        if (H + pads[0] + pads[2] < kh || W + pads[1] + pads[3] < kw) continue;
        bool ceil_mode = rng_int(2), incl = rng_int(2), col = rng_int(2);
        int64_t ksz[2] = {kh, kw};
        int64_t sp[2] = {H, W};
        int64_t out[2];
        for (int i = 0; i < 2; i++) {
            int64_t span = sp[i] + pads[i] + pads[2 + i] - ksz[i];
            out[i] = (ceil_mode ? (span + s[i] - 1) / s[i] : span / s[i]) + 1;
            if (ceil_mode && (out[i] - 1) * s[i] >= sp[i] + pads[i]) out[i]--;
        }
        int64_t xd[4] = {2, 3, H, W};
        struct kiln_value *x = rand_tensor(4, xd);
        const float *xv = x->t.data;
        size_t ny = (size_t)(6 * out[0] * out[1]);
        double *wmax = calloc(ny, sizeof *wmax), *wavg = calloc(ny, sizeof *wavg);
        int64_t *widx = calloc(ny, sizeof *widx);
        for (int64_t pl = 0; pl < 6; pl++)
            for (int64_t oh = 0; oh < out[0]; oh++)
                for (int64_t ow = 0; ow < out[1]; ow++) {
                    double mx = -INFINITY, sum = 0;
                    int64_t at = -1, cnt = 0;
                    for (int64_t i = 0; i < kh; i++)
                        for (int64_t j = 0; j < kw; j++) {
                            int64_t h = oh * s[0] - pads[0] + i, w = ow * s[1] - pads[1] + j;
                            bool in = h >= 0 && h < H && w >= 0 && w < W;
                            bool padded = h >= -pads[0] && h < H + pads[2] && w >= -pads[1] &&
                                          w < W + pads[3];
                            if (in) {
                                double v = xv[(pl * H + h) * W + w];
                                if (v > mx) mx = v, at = pl * H * W + (col ? w * H + h : h * W + w);
                                sum += v;
                                cnt++;
                            } else if (padded && incl) {
                                cnt++;
                            }
                        }
                    size_t o = (size_t)((pl * out[0] + oh) * out[1] + ow);
                    wmax[o] = mx, widx[o] = at, wavg[o] = sum / (double)cnt;
                }
        struct attrs at = {.n = 0};
        add_ints(&at, "kernel_shape", ksz, 2);
        add_ints(&at, "strides", s, 2);
        add_ints(&at, "pads", pads, 4);
        add_i(&at, "ceil_mode", ceil_mode);
        add_i(&at, "storage_order", col);
        struct kiln_value *y[2] = {NULL, NULL};
        kiln_err e;
        kiln_status st = run_node("", "MaxPool", 12, at.a, at.n, &x, 1, y, 2, &e);
        CHECK(st == KILN_OK, "MaxPool case %d: %s", t, e.msg);
        if (st == KILN_OK) {
            close_to(y[0], wmax, ny, 1e-4, "MaxPool");
            const int64_t *gi = y[1]->t.data;
            for (size_t i = 0; i < ny; i++)
                if (gi[i] != widx[i]) {
                    CHECK(false, "MaxPool case %d index %zu: %lld, want %lld", t, i,
                          (long long)gi[i], (long long)widx[i]);
                    break;
                }
        }
        kiln_value_free(y[0]);
        kiln_value_free(y[1]);
        at.n = 4; /* drop storage_order */
        add_i(&at, "count_include_pad", incl);
        st = run_node("", "AveragePool", 19, at.a, at.n, &x, 1, y, 1, &e);
        CHECK(st == KILN_OK, "AveragePool case %d: %s", t, e.msg);
        if (st == KILN_OK) close_to(y[0], wavg, ny, 1e-4, "AveragePool");
        kiln_value_free(y[0]);
        kiln_value_free(x);
        free(wmax), free(wavg), free(widx);
    }
}

/* ------------------------------------------------------------------ LayerNormalization */

static void test_layernorm(void)
{
    int64_t xd[3] = {3, 4, 5};
    for (int axis = -3; axis < 3; axis++) {
        int a = axis < 0 ? axis + 3 : axis;
        int64_t sd[3];
        size_t D = 1, outer = 1;
        for (int i = a; i < 3; i++) sd[i - a] = xd[i], D *= (size_t)xd[i];
        for (int i = 0; i < a; i++) outer *= (size_t)xd[i];
        struct kiln_value *in_v[3] = {rand_tensor(3, xd), rand_tensor(3 - a, sd), rand_tensor(3 - a, sd)};
        const float *x = in_v[0]->t.data, *sc = in_v[1]->t.data, *b = in_v[2]->t.data;
        double *want = calloc(outer * D, sizeof *want), *wm = calloc(outer, sizeof *wm);
        for (size_t o = 0; o < outer; o++) {
            double m = 0, v = 0;
            for (size_t i = 0; i < D; i++) m += x[o * D + i];
            m /= (double)D;
            for (size_t i = 0; i < D; i++) v += (x[o * D + i] - m) * (x[o * D + i] - m);
            v /= (double)D;
            wm[o] = m;
            for (size_t i = 0; i < D; i++)
                want[o * D + i] = (x[o * D + i] - m) / sqrt(v + 1e-5) * sc[i] + b[i];
        }
        struct attrs at = {.n = 0};
        add_i(&at, "axis", axis);
        struct kiln_value *y[2] = {NULL, NULL};
        kiln_err e;
        kiln_status st = run_node("", "LayerNormalization", 17, at.a, at.n, in_v, 3, y, 2, &e);
        CHECK(st == KILN_OK, "LayerNormalization axis %d: %s", axis, e.msg);
        if (st == KILN_OK) {
            close_to(y[0], want, outer * D, 1e-4, "LayerNormalization Y");
            close_to(y[1], wm, outer, 1e-4, "LayerNormalization Mean");
            CHECK(y[1]->t.rank == 3, "Mean rank %d", y[1]->t.rank);
        }
        kiln_value_free(y[0]);
        kiln_value_free(y[1]);
        for (int i = 0; i < 3; i++) kiln_value_free(in_v[i]);
        free(want), free(wm);
    }
}

int main(void)
{
    rng_seed(0x13198A2E03707344ull);
    test_conv();
    test_convtranspose();
    test_matmul();
    test_pool();
    test_layernorm();
    return test_summary("test_nn");
}
