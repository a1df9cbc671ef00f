/* test_nms_fast.c: NonMaxSuppression (src/cpu/ops/misc.c) and its overlap test
 * (src/cpu/isa/nms.c) against a straightforward reference NMS written here: per batch and
 * class, candidates above score_threshold sorted by descending score (ties: lower index),
 * each compared with every box selected so far through the scalar IoU the kernel always
 * used (corners with fminf / fmaxf, areas, inter / union in float32).
 *
 * Exact comparison (the selected rows must be identical, in order): random boxes on a coarse
 * grid, so identical, zero-area, touching and flipped boxes are common; scores from a few
 * values, so ties are common; both box encodings; thresholds including 0, 1, negative and
 * absent; max_output_boxes_per_class absent, 0, small, large; B up to 3 and C up to 4; and a
 * 3000-box batched-NMS case like SSD's. Every ISA variant of the overlap test is compared
 * with the scalar IoU on random columns with NaN, infinities and zero areas, n across the
 * 64-box blocks.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/isa.h"
#include "cpu/kernel.h"
#include "cpu/nms_isa.h"
#include "test_support.h"

/* ------------------------------------------------------------------ the reference */

static void ref_corners(const float *b, int center, float *y1, float *x1, float *y2, float *x2)
{
    if (center) {
        *x1 = b[0] - b[2] / 2;
        *x2 = b[0] + b[2] / 2;
        *y1 = b[1] - b[3] / 2;
        *y2 = b[1] + b[3] / 2;
    } else {
        *y1 = fminf(b[0], b[2]);
        *y2 = fmaxf(b[0], b[2]);
        *x1 = fminf(b[1], b[3]);
        *x2 = fmaxf(b[1], b[3]);
    }
}

static float ref_iou(const float *a, const float *b, int center)
{
    float ay1, ax1, ay2, ax2, by1, bx1, by2, bx2;
    ref_corners(a, center, &ay1, &ax1, &ay2, &ax2);
    ref_corners(b, center, &by1, &bx1, &by2, &bx2);
    float ih = fminf(ay2, by2) - fmaxf(ay1, by1), iw = fminf(ax2, bx2) - fmaxf(ax1, bx1);
    if (ih <= 0 || iw <= 0) return 0;
    float inter = ih * iw;
    float uni = (ay2 - ay1) * (ax2 - ax1) + (by2 - by1) * (bx2 - bx1) - inter;
    return uni > 0 ? inter / uni : 0;
}

/* Rows [b, c, i] into rows (3 * cap entries); returns the count. */
static size_t ref_nms(const float *bx, const float *sc, size_t B, size_t C, size_t N, int center,
                      int64_t max_out, float iou_th, bool has_st, float st, int64_t *rows)
{
    size_t n = 0, *cand = malloc((N + 1) * sizeof *cand), *sel = malloc((N + 1) * sizeof *sel);
    for (size_t b = 0; b < B; b++)
        for (size_t c = 0; c < C; c++) {
            const float *s = sc + (b * C + c) * N;
            size_t nc = 0, ns = 0;
            for (size_t i = 0; i < N; i++)
                if (!has_st || s[i] > st) cand[nc++] = i;
            /* insertion sort: descending score, then ascending index (stable) */
            for (size_t i = 1; i < nc; i++) {
                size_t v = cand[i], j = i;
                while (j > 0 && s[cand[j - 1]] < s[v]) {
                    cand[j] = cand[j - 1];
                    j--;
                }
                cand[j] = v;
            }
            for (size_t i = 0; i < nc && (int64_t)ns < max_out; i++) {
                bool keep = true;
                for (size_t j = 0; j < ns && keep; j++)
                    keep = ref_iou(bx + (b * N + cand[i]) * 4, bx + (b * N + sel[j]) * 4, center) <= iou_th;
                if (!keep) continue;
                sel[ns++] = cand[i];
                rows[n * 3] = (int64_t)b;
                rows[n * 3 + 1] = (int64_t)c;
                rows[n * 3 + 2] = (int64_t)cand[i];
                n++;
            }
        }
    free(cand);
    free(sel);
    return n;
}

/* ------------------------------------------------------------------ the op */

struct ncase {
    size_t B, C, N;
    int center;
    int64_t max_out; /* < 0: input absent */
    bool has_iou, has_st;
    float iou_th, st;
};

static void check_case(const struct ncase *c, const float *bx, const float *sc, const char *what)
{
    int64_t bd[3] = {(int64_t)c->B, (int64_t)c->N, 4}, sd[3] = {(int64_t)c->B, (int64_t)c->C, (int64_t)c->N};
    struct kiln_value *in[5] = {tensor_of(KILN_DTYPE_F32, 3, bd, bx), tensor_of(KILN_DTYPE_F32, 3, sd, sc)};
    if (c->max_out >= 0 || c->has_iou || c->has_st) in[2] = scalar(KILN_DTYPE_I64, (double)(c->max_out < 0 ? 0 : c->max_out));
    if (c->has_iou || c->has_st) in[3] = vec_f64(KILN_DTYPE_F32, 1, (double[]){c->iou_th});
    if (c->has_st) in[4] = vec_f64(KILN_DTYPE_F32, 1, (double[]){c->st});
    struct attrs at = {0};
    add_i(&at, "center_point_box", c->center);
    struct kiln_value *out[1] = {0};
    kiln_err err = {0};
    kiln_status st = run_op("NonMaxSuppression", 11, at.a, at.n, in, 5, out, &err);
    CHECK(st == KILN_OK, "%s: %s", what, err.msg);
    if (st == KILN_OK) {
        size_t cap = c->B * c->C * c->N + 1;
        int64_t *want = malloc(cap * 3 * sizeof *want);
        int64_t max_out = c->max_out < 0 ? 0 : c->max_out;
        float iou_th = c->has_iou || c->has_st ? c->iou_th : 0.0f;
        size_t n = ref_nms(bx, sc, c->B, c->C, c->N, c->center, max_out, iou_th, c->has_st, c->st, want);
        const struct kiln_tensor *y = &out[0]->t;
        CHECK(y->dtype == KILN_DTYPE_I64 && y->rank == 2 && y->dims[0] == (int64_t)n && y->dims[1] == 3,
              "%s: got %lld rows, want %zu", what, (long long)y->dims[0], n);
        if (y->dims[0] == (int64_t)n && n)
            CHECK(memcmp(y->data, want, n * 3 * sizeof *want) == 0, "%s: selected rows differ", what);
        free(want);
    }
    free_all(out, 1);
    free_all(in, 5);
}

/* Coordinates on a grid of step 0.25 in [0, 4]: equal, touching and zero-area boxes. */
static float grid(void)
{
    return (float)rng_int(17) * 0.25f;
}

static void test_random(void)
{
    static const float ious[] = {0.0f, 0.3f, 0.5f, 0.7f, 1.0f, -0.1f};
    for (int t = 0; t < 400; t++) {
        struct ncase c = {.B = 1 + (size_t)rng_int(3), .C = 1 + (size_t)rng_int(4),
                          .N = (size_t)rng_int_low(t % 10 == 0 ? 300 : 40), .center = rng_int(2)};
        int m = rng_int(5);
        c.max_out = m == 0 ? -1 : m == 1 ? 0 : m == 2 ? 1 + rng_int(3) : m == 3 ? 1000 : rng_int(20);
        c.has_iou = rng_int(6) != 0;
        c.iou_th = rng_int(3) ? ious[rng_int(6)] : (float)rng_unit();
        c.has_st = c.has_iou && rng_int(2);
        c.st = (float)rng_int(5) * 0.25f - 0.25f;
        size_t nb = c.B * c.N * 4, ns = c.B * c.C * c.N;
        float *bx = malloc((nb + 1) * sizeof *bx), *sc = malloc((ns + 1) * sizeof *sc);
        for (size_t i = 0; i < nb; i++) bx[i] = grid();
        if (c.center) /* widths and heights, sometimes zero */
            for (size_t i = 0; i < nb; i += 4) {
                bx[i + 2] *= 0.5f;
                bx[i + 3] *= 0.5f;
            }
        int levels = 1 + rng_int(8);
        for (size_t i = 0; i < ns; i++) sc[i] = (float)rng_int(levels) / (float)levels;
        char what[96];
        snprintf(what, sizeof what, "case %d (B %zu C %zu N %zu center %d)", t, c.B, c.C, c.N, c.center);
        check_case(&c, bx, sc, what);
        free(bx);
        free(sc);
    }
}

/* SSD's batched NMS: 3000 boxes in one class, shifted apart by class, no score threshold,
 * no output limit; and the same with continuous random values. */
static void test_large(void)
{
    for (int t = 0; t < 4; t++) {
        struct ncase c = {.B = 1, .C = 1, .N = 3000, .center = t & 1, .max_out = INT64_MAX / 2,
                          .has_iou = true, .iou_th = t < 2 ? 0.45f : 0.6f};
        float *bx = malloc(c.N * 4 * sizeof *bx), *sc = malloc(c.N * sizeof *sc);
        for (size_t i = 0; i < c.N; i++) {
            float off = (float)rng_int(20) * 5.0f, *b = bx + i * 4;
            for (int j = 0; j < 4; j++) b[j] = (float)rng_unit() * 2.0f + (j < 2 || c.center ? off : off + 2.0f);
            if (c.center) b[2] = b[3] = (float)rng_unit();
            sc[i] = t < 2 ? (float)rng_unit() : (float)rng_int(50) / 50.0f;
        }
        check_case(&c, bx, sc, t & 1 ? "3000 boxes (center)" : "3000 boxes");
        free(bx);
        free(sc);
    }
}

/* ------------------------------------------------------------------ the overlap test per ISA */

static float special(void)
{
    switch (rng_int(12)) {
    case 0: return NAN;
    case 1: return INFINITY;
    case 2: return -INFINITY;
    case 3: return -0.0f;
    default: return (float)rng_int(9) * 0.5f;
    }
}

static void test_variants(void)
{
    enum kiln_isa best = kiln_isa_best();
    for (int isa = 0; isa <= (int)best; isa++) {
        int (*fn)(float, float, float, float, float, const float *, const float *, const float *, const float *,
                  const float *, size_t, float) = KILN_ISA_VARIANT(kiln_nms_overlaps_isa, isa);
        for (int t = 0; t < 3000; t++) {
            size_t n = (size_t)rng_int_low(200);
            float *col = malloc((5 * n + 5) * sizeof *col), *y1 = col, *x1 = col + n, *y2 = col + 2 * n,
                  *x2 = col + 3 * n, *ar = col + 4 * n, a[4];
            float ths[] = {0.0f, 0.5f, 1.0f, -0.5f, NAN, (float)rng_unit()};
            float th = ths[rng_int(6)];
            bool sp = rng_int(4) == 0;
            for (int k = 0; k < 4; k++) a[k] = sp ? special() : grid();
            float ay1 = fminf(a[0], a[2]), ay2 = fmaxf(a[0], a[2]), ax1 = fminf(a[1], a[3]), ax2 = fmaxf(a[1], a[3]);
            float aa = (ay2 - ay1) * (ax2 - ax1);
            float box_a[4] = {ay1, ax1, ay2, ax2};
            int want = 0;
            for (size_t j = 0; j < n; j++) {
                float b[4];
                for (int k = 0; k < 4; k++) b[k] = sp && rng_int(3) == 0 ? special() : grid();
                y1[j] = fminf(b[0], b[2]);
                y2[j] = fmaxf(b[0], b[2]);
                x1[j] = fminf(b[1], b[3]);
                x2[j] = fmaxf(b[1], b[3]);
                ar[j] = (y2[j] - y1[j]) * (x2[j] - x1[j]);
                float box_b[4] = {y1[j], x1[j], y2[j], x2[j]};
                if (!(ref_iou(box_a, box_b, 0) <= th)) want = 1;
            }
            int got = fn(ay1, ax1, ay2, ax2, aa, y1, x1, y2, x2, ar, n, th);
            CHECK(got == want, "%s overlap test, n %zu, th %g: got %d, want %d", kiln_isa_name((enum kiln_isa)isa),
                  n, (double)th, got, want);
            free(col);
        }
    }
}

/* Bad inputs fail cleanly. */
static void test_errors(void)
{
    int64_t bd[3] = {1, 2, 4}, sd[3] = {1, 1, 3};
    struct kiln_value *in[5] = {new_tensor(KILN_DTYPE_F32, 3, bd), new_tensor(KILN_DTYPE_F32, 3, sd)};
    struct kiln_value *out[1] = {0};
    kiln_err err = {0};
    kiln_status st = run_op("NonMaxSuppression", 11, NULL, 0, in, 5, out, &err);
    CHECK(st != KILN_OK && strstr(err.msg, "boxes must be"), "mismatched N: %s", err.msg);
    free_all(out, 1);
    free_all(in, 5);
}

int main(void)
{
    rng_seed(0x4e4d53f457ULL);
    test_random();
    test_large();
    test_variants();
    test_errors();
    return test_summary("test_nms_fast");
}
