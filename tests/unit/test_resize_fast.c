/* test_resize_fast.c: Resize's 4-D fast path (src/cpu/ops/tensor_resize.c, rz_fast: N and C
 * kept, H and W resized, float32 row loops in src/cpu/isa/resize.c) against the generic path.
 *
 * The generic path is reached with the same data as a 5-D tensor [N, C, H, 1, W] whose
 * extra axis is kept (scale 1, roi 0..1): the fast path takes rank-4 inputs only, and that
 * axis is an exact identity in the generic path, so its result is the generic result for the
 * 4-D case. Random cases: nearest (every nearest_mode), linear and cubic (cubic_coeff_a,
 * exclude_outside), every coordinate_transformation_mode, tf_crop_and_resize with random
 * (also flipped) roi and extrapolation_value, scales up and down or sizes, odd sizes and
 * 1x1 planes, one axis kept; opsets 10, 11, 13, 18, 19, and Upsample 9. Tolerance per
 * element: 1e-6 + 1e-6 * |generic| (float32 against float64 accumulation; nearest is
 * exact). Cases also run on a pool of 3 threads and must give the same bytes as without.
 * Every ISA variant of the row loops is checked against a float64 sum (tolerance 1e-6
 * absolute on values and weights in [-1, 1]).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/pool.h"
#include "cpu/isa.h"
#include "cpu/kernel.h"
#include "cpu/resize_isa.h"
#include "test_support.h"

static const char *const cts[] = {"half_pixel", "half_pixel_symmetric", "pytorch_half_pixel",
                                  "align_corners", "asymmetric", "tf_crop_and_resize"};
static const char *const nms[] = {"round_prefer_floor", "round_prefer_ceil", "floor", "ceil"};
static const char *const modes[] = {"nearest", "linear", "cubic"};

struct rcase {
    int opset, mode, ct, nm;
    bool exclude, use_sizes, upsample;
    float A, extrap;
    int64_t N, C, H, W, OH, OW;
    double sh, sw, roi[4]; /* roi: y0, x0, y1, x1 */
};

/* Runs the case at rank 4 (rank5 false) or as [N, C, H, 1, W]; NULL on failure. */
static struct kiln_value *run_case(const struct rcase *c, const float *x, bool rank5, struct kiln_pool *pool)
{
    int r = rank5 ? 5 : 4;
    int64_t xd[5] = {c->N, c->C, c->H, c->W}, sz[5] = {c->N, c->C, c->OH, c->OW};
    double sc[5] = {1, 1, c->sh, c->sw}, roi[10] = {0, 0, c->roi[0], c->roi[1], 1, 1, c->roi[2], c->roi[3]};
    if (rank5) {
        int64_t xd5[5] = {c->N, c->C, c->H, 1, c->W}, sz5[5] = {c->N, c->C, c->OH, 1, c->OW};
        double sc5[5] = {1, 1, c->sh, 1, c->sw}, roi5[10] = {0, 0, c->roi[0], 0, c->roi[1], 1, 1, c->roi[2], 1, c->roi[3]};
        memcpy(xd, xd5, sizeof xd);
        memcpy(sz, sz5, sizeof sz);
        memcpy(sc, sc5, sizeof sc);
        memcpy(roi, roi5, sizeof roi);
    }
    struct kiln_value *in[4] = {tensor_of(KILN_DTYPE_F32, r, xd, x)};
    struct attrs at = {0};
    add_s(&at, "mode", modes[c->mode]);
    size_t n_in;
    const char *op = c->upsample ? "Upsample" : "Resize";
    if (c->upsample || c->opset < 11) {
        in[1] = vec_f64(KILN_DTYPE_F32, (size_t)r, sc);
        n_in = 2;
    } else {
        add_s(&at, "coordinate_transformation_mode", cts[c->ct]);
        add_s(&at, "nearest_mode", nms[c->nm]);
        add_f(&at, "cubic_coeff_a", c->A);
        add_i(&at, "exclude_outside", c->exclude);
        add_f(&at, "extrapolation_value", c->extrap);
        in[1] = vec_f64(KILN_DTYPE_F32, c->ct == 5 ? (size_t)(2 * r) : 0, roi);
        if (c->use_sizes) in[3] = vec_of(KILN_DTYPE_I64, (size_t)r, sz);
        else in[2] = vec_f64(KILN_DTYPE_F32, (size_t)r, sc);
        n_in = 4;
    }
    struct kiln_value *out[1] = {0};
    kiln_err err = {0};
    kiln_status st = run_op_pool(pool, op, c->opset, at.a, at.n, in, n_in, out, 1, &err);
    CHECK(st == KILN_OK, "%s-%d rank %d: %s", op, c->opset, r, err.msg);
    free_all(in, 4);
    return st == KILN_OK ? out[0] : NULL;
}

static int64_t pick_size(void)
{
    static const int64_t s[] = {1, 1, 2, 3, 4, 5, 7, 8, 13, 16};
    return s[rng_int(10)];
}

static void test_random(struct kiln_pool *pool)
{
    static const double scales[] = {0.25, 0.5, 0.6, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 8.0};
    static const int opsets[] = {10, 11, 13, 18, 19};
    int fails = 0;
    for (int t = 0; t < 1500 && fails < 10; t++) {
        struct rcase c = {.opset = opsets[rng_int(5)], .mode = rng_int(3), .ct = rng_int(6), .nm = rng_int(4),
                          .exclude = rng_int(3) == 0, .use_sizes = rng_int(3) == 0,
                          .A = rng_int(2) ? -0.75f : -0.5f, .extrap = (float)rng_range(-2, 2),
                          .N = 1 + rng_int(2), .C = 1 + rng_int(3), .H = pick_size(), .W = pick_size()};
        if (c.opset == 10 && c.mode == 2) c.mode = 1; /* cubic from 11 */
        if (c.opset < 19 && c.ct == 1) c.ct = 0;
        c.upsample = c.opset == 10 && rng_int(3) == 0;
        if (c.upsample) c.opset = 9, c.mode = rng_int(2);
        c.sh = scales[rng_int(10)];
        c.sw = rng_int(5) == 0 ? 1.0 : scales[rng_int(10)];
        if (c.use_sizes && c.opset >= 11) {
            c.OH = 1 + rng_int(12);
            c.OW = rng_int(5) == 0 ? c.W : 1 + rng_int(12);
            c.sh = (double)c.OH / (double)c.H;
            c.sw = (double)c.OW / (double)c.W;
        } else {
            c.OH = (int64_t)floor(c.sh * (double)c.H);
            c.OW = (int64_t)floor(c.sw * (double)c.W);
            if (c.OH == 0 || c.OW == 0) continue;
        }
        for (int i = 0; i < 4; i++) c.roi[i] = rng_int(4) == 0 ? rng_range(-0.5, 1.5) : (i < 2 ? 0.2 : 0.8);
        if (rng_int(8) == 0) { /* flipped */
            double y = c.roi[0];
            c.roi[0] = c.roi[2];
            c.roi[2] = y;
        }
        int64_t xd[4] = {c.N, c.C, c.H, c.W};
        struct kiln_value *xv = rand_tensor(4, xd);
        struct kiln_value *fast = run_case(&c, xv->t.data, false, NULL);
        struct kiln_value *gen = run_case(&c, xv->t.data, true, NULL);
        struct kiln_value *par = run_case(&c, xv->t.data, false, pool);
        char what[160];
        snprintf(what, sizeof what, "case %d: %s-%d %s ct %s nm %s excl %d [%lld,%lld,%lld,%lld] -> %lldx%lld", t,
                 c.upsample ? "Upsample" : "Resize", c.opset, modes[c.mode], cts[c.ct], nms[c.nm], c.exclude,
                 (long long)c.N, (long long)c.C, (long long)c.H, (long long)c.W, (long long)c.OH, (long long)c.OW);
        if (fast && gen && par) {
            const struct kiln_tensor *f = &fast->t, *g = &gen->t;
            size_t n = kiln_tensor_numel(f);
            bool shape_ok = f->rank == 4 && f->dims[2] == g->dims[2] && f->dims[3] == g->dims[4] && g->dims[3] == 1 &&
                            n == kiln_tensor_numel(g);
            CHECK(shape_ok, "%s: shapes differ", what);
            if (shape_ok) {
                const float *a = f->data, *b = g->data;
                size_t bad = n;
                for (size_t i = 0; i < n && bad == n; i++) {
                    double tol = c.mode == 0 ? 0 : 1e-6 + 1e-6 * fabs((double)b[i]);
                    if (!(fabs((double)a[i] - (double)b[i]) <= tol)) bad = i;
                }
                CHECK(bad == n, "%s: element %zu is %.9g, generic %.9g", what, bad, bad < n ? (double)a[bad] : 0.0,
                      bad < n ? (double)b[bad] : 0.0);
                fails += bad != n;
                CHECK(memcmp(par->t.data, a, n * sizeof *a) == 0, "%s: 3 threads differ from 1", what);
            }
        }
        kiln_value_free(fast);
        kiln_value_free(gen);
        kiln_value_free(par);
        kiln_value_free(xv);
    }
}

/* DeepLabV3's two Resizes (sizes, half_pixel linear) on a pool, against the generic path. */
static void test_deeplab(struct kiln_pool *pool)
{
    struct rcase cs[2] = {{.opset = 13, .mode = 1, .use_sizes = true, .N = 1, .C = 256, .H = 1, .W = 1, .OH = 16, .OW = 16},
                          {.opset = 13, .mode = 1, .use_sizes = true, .N = 1, .C = 21, .H = 16, .W = 16, .OH = 256, .OW = 256}};
    for (int i = 0; i < 2; i++) {
        struct rcase c = cs[i];
        c.nm = 2;
        c.A = -0.75f;
        int64_t xd[4] = {c.N, c.C, c.H, c.W};
        struct kiln_value *xv = rand_tensor(4, xd);
        struct kiln_value *fast = run_case(&c, xv->t.data, false, pool), *gen = run_case(&c, xv->t.data, true, NULL);
        if (fast && gen) {
            size_t n = kiln_tensor_numel(&fast->t), bad = n;
            const float *a = fast->t.data, *b = gen->t.data;
            for (size_t j = 0; j < n && bad == n; j++)
                if (!(fabs((double)a[j] - (double)b[j]) <= 1e-6 + 1e-6 * fabs((double)b[j]))) bad = j;
            CHECK(bad == n, "deeplab resize %d: element %zu differs", i, bad);
        }
        kiln_value_free(fast);
        kiln_value_free(gen);
        kiln_value_free(xv);
    }
}

/* The row loops of every ISA variant against float64 sums. */
static void test_variants(void)
{
    enum kiln_isa best = kiln_isa_best();
    for (int isa = 0; isa <= (int)best; isa++) {
        void (*hrow)(const float *, float *, const int32_t *, const float *, int, size_t) =
            KILN_ISA_VARIANT(kiln_resize_hrow_isa, isa);
        void (*vrow)(float *, const float *const *, const float *, int, size_t) =
            KILN_ISA_VARIANT(kiln_resize_vrow_isa, isa);
        for (int t = 0; t < 300; t++) {
            size_t n = (size_t)rng_int(70), W = 1 + (size_t)rng_int(40);
            int nt = 1 << rng_int(3), nv = 1 + rng_int(4);
            float *src = malloc(W * sizeof *src), *dst = malloc((n + 1) * sizeof *dst), *w = malloc((n * 4 + 1) * sizeof *w);
            int32_t *idx = malloc((n * 4 + 1) * sizeof *idx);
            float *rows[4], wv[4];
            for (size_t i = 0; i < W; i++) src[i] = rng_f32();
            for (size_t i = 0; i < n * (size_t)nt; i++) {
                idx[i] = (int32_t)rng_int((int)W);
                w[i] = rng_f32();
            }
            hrow(src, dst, idx, w, nt, n);
            for (size_t j = 0; j < n; j++) {
                double want = 0;
                for (int k = 0; k < nt; k++) want += (double)w[j * (size_t)nt + (size_t)k] * src[idx[j * (size_t)nt + (size_t)k]];
                CHECK(fabs(dst[j] - want) <= 1e-6, "%s hrow nt %d: %g vs %g", kiln_isa_name((enum kiln_isa)isa), nt,
                      (double)dst[j], want);
            }
            for (int k = 0; k < 4; k++) {
                rows[k] = malloc((n + 1) * sizeof *rows[k]);
                for (size_t j = 0; j < n; j++) rows[k][j] = rng_f32();
                wv[k] = rng_f32();
            }
            vrow(dst, (const float *const *)rows, wv, nv, n);
            for (size_t j = 0; j < n; j++) {
                double want = 0;
                for (int k = 0; k < nv; k++) want += (double)wv[k] * rows[k][j];
                CHECK(fabs(dst[j] - want) <= 1e-6, "%s vrow nt %d: %g vs %g", kiln_isa_name((enum kiln_isa)isa), nv,
                      (double)dst[j], want);
            }
            for (int k = 0; k < 4; k++) free(rows[k]);
            free(src);
            free(dst);
            free(w);
            free(idx);
        }
    }
}

int main(void)
{
    rng_seed(0x7265733133ULL);
    struct kiln_pool *pool = NULL;
    kiln_err err = {0};
    CHECK(kiln_pool_create(3, &pool, &err) == KILN_OK, "pool: %s", err.msg);
    test_variants();
    test_random(pool);
    test_deeplab(pool);
    kiln_pool_free(pool);
    return test_summary("test_resize_fast");
}
