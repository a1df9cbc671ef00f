/* conv_taps.c: kiln.ConvNhwc's "pgemm-taps" variant (cpu/ops/conv_taps.h). */
#include <string.h>

#include "base/pool.h"
#include "cpu/ops/conv_taps.h"
#include "cpu/pgemm.h"

/* One tap: the rectangle of outputs [y0, y1) x [x0, x1) whose input lies in the image, the
 * input pixel of output (oy, ox) being (oy * s0 + iy, ox * s1 + ix), and its weights. lda:
 * the row stride of its gathered rows, 0 when they are read in place from X. */
struct tap {
    int64_t y0, y1, x0, x1, iy, ix;
    size_t lda;
    const struct kiln_pgemm *pg;
};

struct kiln_conv_taps {
    struct kiln_conv_taps_geom g;
    int n;           /* taps with outputs */
    bool first_full; /* t[0] covers every output (it writes Y; the others add) */
    size_t a_floats, p_floats; /* scratch: gathered rows, and a rectangle's products */
    struct tap t[];
};

/* Outputs o in [*lo, *hi) of `out` whose input o * s + off lies in [0, in). */
static void tap_range(int64_t out, int64_t in, int64_t s, int64_t off, int64_t *lo, int64_t *hi)
{
    int64_t l = off >= 0 ? 0 : (-off + s - 1) / s; /* o * s + off >= 0 */
    int64_t last = in - 1 - off;                   /* o * s <= in - 1 - off */
    int64_t h = last < 0 ? 0 : last / s + 1;
    *lo = l < out ? l : out;
    *hi = h < out ? h : out;
    if (*hi < *lo) *hi = *lo;
}

/* Whether tap a's input rows lie as the product's rows in X (lda C): stride 1, whole rows of
 * an output as wide as the input, no column shift. */
static bool in_place(const struct kiln_conv_taps_geom *g, const struct tap *a)
{
    return g->s[1] == 1 && g->s[0] == 1 && a->x0 == 0 && a->x1 == g->OW && g->OW == g->W && a->ix == 0;
}

double kiln_conv_taps_useful(const struct kiln_conv_taps_geom *g)
{
    double used = 0, all = (double)(g->kh * g->kw) * (double)(g->OH * g->OW);
    for (int64_t i = 0; i < g->kh; i++)
        for (int64_t j = 0; j < g->kw; j++) {
            int64_t y0, y1, x0, x1;
            tap_range(g->OH, g->H, g->s[0], i * g->d[0] - g->pt, &y0, &y1);
            tap_range(g->OW, g->W, g->s[1], j * g->d[1] - g->pl, &x0, &x1);
            used += (double)((y1 - y0) * (x1 - x0));
        }
    return all > 0 ? used / all : 1;
}

kiln_status kiln_conv_taps_prepare(struct kiln_kprep *p, const struct kiln_conv_taps_geom *g, const float *w,
                                   uint32_t key, const struct kiln_conv_taps **out)
{
    *out = NULL;
    if (!kiln_pgemm_available() || g->C <= 0 || g->M <= 0 || g->OH <= 0 || g->OW <= 0) return KILN_OK;
    size_t nt = (size_t)(g->kh * g->kw), C = (size_t)g->C, M = (size_t)g->M;
    struct kiln_conv_taps *t;
    KILN_TRY(kiln_kprep_alloc(p, sizeof *t + nt * sizeof t->t[0], (void **)&t));
    t->g = *g;
    float *tmp = kiln_malloc(C * M * sizeof *tmp);
    if (!tmp) return kiln_kfail(&p->kc, KILN_E_NOMEM, "out of memory packing W");
    kiln_status st = KILN_OK;
    bool none = false; /* kiln's GEMM declined a tap */
    for (int64_t i = 0; i < g->kh && !st && !none; i++)
        for (int64_t j = 0; j < g->kw && !st && !none; j++) {
            struct tap a;
            a.iy = i * g->d[0] - g->pt, a.ix = j * g->d[1] - g->pl;
            tap_range(g->OH, g->H, g->s[0], a.iy, &a.y0, &a.y1);
            tap_range(g->OW, g->W, g->s[1], a.ix, &a.x0, &a.x1);
            if (a.y0 == a.y1 || a.x0 == a.x1) continue; /* reads only padding */
            uint32_t kq = key + (uint32_t)(i * g->kw + j);
            size_t have;
            if (!kiln_kprep_loading(p) || !kiln_kprep_blob_peek(p, kq, &have)) /* W[m, c, i, j] as [c][m] */
                for (size_t c = 0; c < C; c++)
                    for (size_t m = 0; m < M; m++)
                        tmp[c * M + m] = w[((m * C + c) * (size_t)g->kh + (size_t)i) * (size_t)g->kw + (size_t)j];
            struct kiln_pgemm *pg;
            st = kiln_pgemm_prepare(p, kq, C, M, tmp, M, false, &pg);
            none = !st && !pg;
            if (st || none) break;
            a.pg = pg;
            size_t rows = (size_t)((a.y1 - a.y0) * (a.x1 - a.x0)), ld = kiln_pgemm_a_stride(pg, rows, C);
            a.lda = in_place(g, &a) ? 0 : ld ? ld : C;
            if (rows * a.lda > t->a_floats) t->a_floats = rows * a.lda;
            if (a.x0 || a.x1 != g->OW) /* not whole rows of Y: products into scratch, then added */
                if (rows * M > t->p_floats) t->p_floats = rows * M;
            bool full = a.y0 == 0 && a.y1 == g->OH && a.x0 == 0 && a.x1 == g->OW;
            if (full && !t->first_full) { /* the first full tap goes first */
                t->t[t->n++] = t->t[0];
                t->t[0] = a;
                t->first_full = true;
            } else {
                t->t[t->n++] = a;
            }
        }
    kiln_free(tmp);
    if (!st && !none) *out = t; /* no tap at all (every one reads padding): Y is B */
    return KILN_OK;
}

kiln_status kiln_conv_taps_run(struct kiln_kctx *k, const struct kiln_conv_taps *t, int64_t N, const float *x,
                               const float *b, const float *z, const struct kiln_act *act, float *y)
{
    const struct kiln_conv_taps_geom *g = &t->g;
    size_t C = (size_t)g->C, M = (size_t)g->M, plane = (size_t)(g->OH * g->OW) * M;
    float *abuf = NULL, *pbuf = NULL;
    if (t->a_floats) KILN_TRY(kiln_scratch_raw(k, t->a_floats * sizeof(float), (void **)&abuf));
    if (t->p_floats) KILN_TRY(kiln_scratch_raw(k, t->p_floats * sizeof(float), (void **)&pbuf));
    for (int64_t n = 0; n < N; n++) {
        const float *xi = x + (size_t)n * (size_t)(g->H * g->W) * C;
        float *yi = y + (size_t)n * plane;
        if (!t->first_full) /* Y starts at the bias (or 0); every tap adds */
            for (size_t r = 0; r < (size_t)(g->OH * g->OW); r++) {
                if (b)
                    memcpy(yi + r * M, b, M * sizeof *yi);
                else
                    memset(yi + r * M, 0, M * sizeof *yi);
            }
        for (int q = 0; q < t->n; q++) {
            const struct tap *a = &t->t[q];
            size_t h = (size_t)(a->y1 - a->y0), wd = (size_t)(a->x1 - a->x0), rows = h * wd;
            const float *A;
            size_t lda = a->lda ? a->lda : C;
            if (!a->lda) {
                A = xi + (size_t)(a->y0 + a->iy) * (size_t)g->W * C;
            } else { /* gather the rectangle's input pixels into rows */
                for (size_t r = 0; r < h; r++) {
                    int64_t oy = a->y0 + (int64_t)r, iy = oy * g->s[0] + a->iy;
                    for (size_t c = 0; c < wd; c++) {
                        int64_t ix = (a->x0 + (int64_t)c) * g->s[1] + a->ix;
                        memcpy(abuf + (r * wd + c) * lda, xi + (size_t)(iy * g->W + ix) * C, C * sizeof *abuf);
                    }
                }
                A = abuf;
            }
            float *rect = yi + (size_t)(a->y0 * g->OW + a->x0) * M;
            if (a->x0 == 0 && a->x1 == g->OW) { /* whole rows of Y: into Y directly */
                bool first = q == 0 && t->first_full;
                struct kiln_pgemm_epi epi = {.bias = b};
                kiln_pgemm_run(a->pg, k->pool, rows, A, lda, rect, M, !first, first && b ? &epi : NULL);
                continue;
            }
            kiln_pgemm_run(a->pg, k->pool, rows, A, lda, pbuf, M, false, NULL);
            for (size_t r = 0; r < h; r++) {
                float *yr = rect + r * (size_t)g->OW * M;
                const float *pr = pbuf + r * wd * M;
                for (size_t i = 0; i < wd * M; i++) yr[i] += pr[i];
            }
        }
    }
    if (z || (act && act->kind != KILN_ACT_NONE)) {
        struct kiln_act none = {.kind = KILN_ACT_NONE};
        kiln_act_apply_par(k->pool, act ? act : &none, y, z, y, (size_t)N * plane);
    }
    return KILN_OK;
}
