/* src/cpu/ops/pool.c: ONNX pooling: MaxPool (1, 8, 10, 11, 12, 22), AveragePool (1, 7, 10,
 * 11, 19, 22), LpPool (1, 2, 11, 18, 22), GlobalAveragePool, GlobalMaxPool, GlobalLpPool
 * and MaxUnpool (9, 11, 22).
 *
 * Windows: output position o along a dim covers input positions o*s - pb + j*d for
 * j < k. Output sizes: NOTSET/VALID: floor or (ceil_mode) ceil of (in + pb + pe - dk) / s,
 * plus 1, where dk = (k - 1) * d + 1; in ceil mode a last window that would start past the
 * input and the begin pad is dropped (as PyTorch and the opset 19+ reference do).
 * SAME_UPPER/LOWER: out = ceil(in / s), total pad max(0, (out - 1) * s + dk - in), odd one
 * at the end (UPPER) or beginning (LOWER).
 *
 * AveragePool divides by the number of window positions inside the input, or with
 * count_include_pad by those inside input + pads (never positions past the end pad that a
 * ceil-mode window may reach). MaxPool ignores NaN unless the whole window is NaN, returns
 * the lowest value for a window entirely in padding, and its Indices output is the first
 * maximum's flat index into X (row-major, or column-major over the spatial dims when
 * storage_order = 1), counting the batch and channel planes. LpPool sums |x|^p over the
 * window (padding adds 0) and takes the p-th root.
 *
 * 2-D MaxPool and AveragePool take a fast path (pool_plane2d: per output row, an interior of
 * columns without bounds checks and a clipped border): MaxPool's results are the same as the
 * generic window walk's, AveragePool's differ by rounding only (float32 sums, not double).
 * LpPool and other ranks walk the windows generically. Planes are split over the session's
 * threads.
 *
 * dtypes: float32 natively; float16, bfloat16, float64, int8 and uint8 are staged through
 * float32 (exact for all but float64, which computes at float32 precision).
 *
 * Prepare (kernel.h) decodes the attributes once and refuses the values that are wrong
 * whatever the input (an unknown auto_pad, LpPool's p <= 0); list lengths and per-dim values
 * are checked at run against X's rank. MaxPool and AveragePool have two variants, numbered
 * as engine files keep them: 1 "generic" (the window walk, any rank) and 2 "2d" (the 2-D
 * fast path, rank 4 only). Prepare picks "2d" for rank 4 and "generic" otherwise when X's
 * rank is known (with tuning and a static shape, the faster of the two on random data, timed
 * on one thread), else leaves 0, decided per run. Nothing is prepacked (pools have no
 * weights).
 */
#include <math.h>
#include <string.h>
#include <time.h>

#include "base/pool.h"
#include "cpu/pool_geom.h"
#include "cpu/tensor_util.h"
#include "infer/infer.h"

/* ------------------------------------------------------------------ dtype staging */

static bool pool_dtype_ok(kiln_dtype dt, bool ints)
{
    return dt == KILN_DTYPE_F32 || dt == KILN_DTYPE_F16 || dt == KILN_DTYPE_BF16 ||
           dt == KILN_DTYPE_F64 || (ints && (dt == KILN_DTYPE_I8 || dt == KILN_DTYPE_U8));
}

/* ------------------------------------------------------------------ geometry (cpu/pool_geom.h) */

/* Decodes the window attributes; fails only on an auto_pad that is not one of the four. */
kiln_status kiln_pool_decode_window(struct kiln_kctx *k, struct pool_attrs *a)
{
    a->n_k = kiln_attr_ints(k, "kernel_shape", &a->k);
    a->n_s = kiln_attr_ints(k, "strides", &a->s);
    a->n_d = kiln_attr_ints(k, "dilations", &a->d);
    a->n_p = kiln_attr_ints(k, "pads", &a->p);
    a->ceil_mode = kiln_attr_i(k, "ceil_mode", 0) != 0;
    const char *ap = kiln_attr_s(k, "auto_pad", "NOTSET");
    if (!strcmp(ap, "NOTSET"))
        a->pad = POOL_PAD_NOTSET;
    else if (!strcmp(ap, "SAME_UPPER"))
        a->pad = POOL_PAD_SAME_UPPER;
    else if (!strcmp(ap, "SAME_LOWER"))
        a->pad = POOL_PAD_SAME_LOWER;
    else if (!strcmp(ap, "VALID"))
        a->pad = POOL_PAD_VALID;
    else
        return kiln_kfail(k, KILN_E_INVALID_MODEL,
                          "auto_pad '%s' is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID", ap);
    return KILN_OK;
}

/* Checks the window attributes a against an X of rank `rank` and dims `dims` and derives
 * the output sizes. */
kiln_status kiln_pool_geom(struct kiln_kctx *k, const struct pool_attrs *a, int rank,
                             const int64_t *dims, struct pool_geom *g)
{
    memset(g, 0, sizeof *g);
    if (rank < 3)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input X has rank %d; expected >= 3 (N, C, ...)",
                          rank);
    int nd = g->nd = rank - 2;
    size_t c = a->n_k;
    if (c != (size_t)nd)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "kernel_shape has %zu values; expected %d", c, nd);
    size_t cs = a->n_s;
    if (cs && cs != (size_t)nd)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "strides has %zu values; expected %d", cs, nd);
    for (int i = 0; i < nd; i++) g->s[i] = cs ? a->s[i] : 1;
    size_t cd = a->n_d;
    if (cd && cd != (size_t)nd)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "dilations has %zu values; expected %d", cd, nd);
    for (int i = 0; i < nd; i++) g->d[i] = cd ? a->d[i] : 1;
    size_t cp = a->n_p;
    if (cp && cp != 2 * (size_t)nd)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "pads has %zu values; expected %d", cp, 2 * nd);
    for (int i = 0; i < nd; i++) {
        g->pb[i] = cp ? a->p[i] : 0;
        g->pe[i] = cp ? a->p[nd + i] : 0;
    }
    bool ceil_mode = a->ceil_mode;
    bool upper = a->pad == POOL_PAD_SAME_UPPER, lower = a->pad == POOL_PAD_SAME_LOWER;
    bool valid = a->pad == POOL_PAD_VALID;
    g->is = g->os = g->ks = 1;
    for (int i = 0; i < nd; i++) {
        g->in[i] = dims[2 + i];
        g->k[i] = a->k[i];
        if (g->k[i] < 1 || g->s[i] < 1 || g->d[i] < 1 || g->pb[i] < 0 || g->pe[i] < 0)
            return kiln_kfail(k, KILN_E_INVALID_MODEL,
                              "dim %d: kernel %lld, stride %lld, dilation %lld must be >= 1 and "
                              "pads %lld, %lld >= 0",
                              i, (long long)g->k[i], (long long)g->s[i], (long long)g->d[i],
                              (long long)g->pb[i], (long long)g->pe[i]);
        int64_t dk = (g->k[i] - 1) * g->d[i] + 1;
        if (upper || lower) {
            g->out[i] = kiln_div_ceil(g->in[i], g->s[i]);
            int64_t tot = (g->out[i] - 1) * g->s[i] + dk - g->in[i];
            if (tot < 0) tot = 0;
            g->pb[i] = upper ? tot / 2 : tot - tot / 2;
            g->pe[i] = tot - g->pb[i];
        } else {
            if (valid) g->pb[i] = g->pe[i] = 0;
            int64_t span = g->in[i] + g->pb[i] + g->pe[i] - dk;
            if (span < 0)
                return kiln_kfail(k, KILN_E_INVALID_ARG,
                                  "dim %d: window %lld is larger than the padded input %lld", i,
                                  (long long)dk, (long long)(g->in[i] + g->pb[i] + g->pe[i]));
            g->out[i] = (ceil_mode ? kiln_div_ceil(span, g->s[i]) : kiln_div_floor(span, g->s[i])) + 1;
            if (ceil_mode && (g->out[i] - 1) * g->s[i] >= g->in[i] + g->pb[i]) g->out[i]--;
        }
        g->is *= (size_t)g->in[i];
        g->os *= (size_t)g->out[i];
        g->ks *= (size_t)g->k[i];
    }
    return KILN_OK;
}

enum pool_kind { POOL_MAX, POOL_AVG, POOL_LP };

/* One output of the generic pool: the window of output position o[0..nd) over plane xp.
 * *at receives MaxPool's index of the first maximum within the plane (col_major: over the
 * column-major spatial layout, cstride its strides). */
static float pool_one(const struct pool_geom *g, enum pool_kind kind, bool include_pad, float p,
                      bool col_major, const size_t *cstride, const float *xp, const int64_t *o,
                      size_t *at)
{
    int nd = g->nd;
    int64_t j[KILN_MAX_RANK], start[KILN_MAX_RANK];
    for (int d = 0; d < nd; d++) {
        start[d] = o[d] * g->s[d] - g->pb[d];
        j[d] = 0;
    }
    double acc = 0;
    float best = -INFINITY;
    bool have = false; /* a non-NaN value seen (MaxPool) */
    bool any = false;  /* any in-bounds value seen */
    size_t best_at = 0, count = 0;
    for (size_t ki = 0; ki < g->ks; ki++) {
        bool in = true, padded = true;
        size_t lin = 0, clin = 0;
        for (int d = 0; d < nd; d++) {
            int64_t ix = start[d] + j[d] * g->d[d];
            if (ix < 0 || ix >= g->in[d]) {
                in = false;
                if (ix < -g->pb[d] || ix >= g->in[d] + g->pe[d]) padded = false;
            } else {
                lin = lin * (size_t)g->in[d] + (size_t)ix;
                clin += (size_t)ix * cstride[d];
            }
        }
        if (in) {
            float v = xp[lin];
            if (kind == POOL_MAX) {
                /* An all-NaN window reports its first position. */
                if ((!isnan(v) && (!have || v > best)) || !any) {
                    best = v;
                    best_at = col_major ? clin : lin;
                    have = !isnan(v);
                }
            } else if (kind == POOL_AVG) {
                acc += v;
                count++;
            } else {
                acc += p == 2.0f ? (double)v * v : pow(fabs(v), p);
            }
            any = true;
        } else if (padded && include_pad) {
            count++;
        }
        for (int d = nd - 1; d >= 0; d--) {
            if (++j[d] < g->k[d]) break;
            j[d] = 0;
        }
    }
    *at = best_at;
    if (kind == POOL_MAX) return have ? best : (any ? NAN : -INFINITY);
    if (kind == POOL_AVG) return count ? (float)(acc / (double)count) : NAN;
    return (float)(p == 2.0f ? sqrt(acc) : pow(acc, 1.0 / p));
}

/* Column-major strides of the spatial dims (for storage_order = 1 indices). */
static void pool_cstrides(const struct pool_geom *g, size_t *cstride)
{
    size_t cst = 1;
    for (int d = 0; d < g->nd; d++) {
        cstride[d] = cst;
        cst *= (size_t)g->in[d];
    }
}

/* The generic pool over planes [p0, p1) of x (each g->is elements) into y (each g->os). idx
 * (may be NULL) receives MaxPool indices. p is LpPool's exponent. */
static void pool_planes(const struct pool_geom *g, enum pool_kind kind, bool include_pad,
                        float p, bool col_major, size_t p0, size_t p1, const float *x, float *y,
                        int64_t *idx)
{
    int nd = g->nd;
    int64_t o[KILN_MAX_RANK];
    size_t cstride[KILN_MAX_RANK];
    pool_cstrides(g, cstride);
    for (size_t pl = p0; pl < p1; pl++) {
        const float *xp = x + pl * g->is;
        float *yp = y + pl * g->os;
        for (int d = 0; d < nd; d++) o[d] = 0;
        for (size_t oi = 0; oi < g->os; oi++) {
            size_t at;
            yp[oi] = pool_one(g, kind, include_pad, p, col_major, cstride, xp, o, &at);
            if (idx) idx[pl * g->os + oi] = (int64_t)(pl * g->is + at);
            for (int d = nd - 1; d >= 0; d--) {
                if (++o[d] < g->out[d]) break;
                o[d] = 0;
            }
        }
    }
}

/* ------------------------------------------------------------------ 2-D fast path */

void kiln_pool_taps(const struct pool_geom *g, int dim, int64_t o, int64_t *lo, int64_t *hi,
                    int64_t *cnt)
{
    int64_t st = o * g->s[dim] - g->pb[dim], d = g->d[dim], k = g->k[dim], in = g->in[dim];
    int64_t l = st >= 0 ? 0 : kiln_div_ceil(-st, d);
    int64_t h = in - st <= 0 ? 0 : kiln_div_ceil(in - st, d);
    int64_t hp = in + g->pe[dim] - st <= 0 ? 0 : kiln_div_ceil(in + g->pe[dim] - st, d);
    int64_t lp = st >= -g->pb[dim] ? 0 : kiln_div_ceil(-g->pb[dim] - st, d);
    if (h > k) h = k;
    if (l > h) l = h;
    if (hp > k) hp = k;
    *lo = l;
    *hi = h;
    *cnt = hp > lp ? hp - lp : 0;
}

/* The output columns [*c0, *c1) whose windows along dim lie wholly inside the input. */
static void pool_inner_cols(int64_t in, int64_t k, int64_t s, int64_t d, int64_t pb, int64_t out,
                            int64_t *c0, int64_t *c1)
{
    int64_t a = kiln_div_ceil(pb, s);
    int64_t last = in - 1 - (k - 1) * d + pb; /* o * s <= last */
    int64_t b = last < 0 ? 0 : last / s + 1;
    if (b > out) b = out;
    if (a > b) a = b;
    *c0 = a;
    *c1 = b;
}

/* y[i] = max(y[i], x[i * s]) for i < n; NaN in x is skipped. */
static void row_max(float *restrict y, const float *restrict x, int64_t n, int64_t s)
{
    if (s == 1) {
        for (int64_t i = 0; i < n; i++) y[i] = x[i] > y[i] ? x[i] : y[i];
    } else {
        for (int64_t i = 0; i < n; i++) y[i] = x[i * s] > y[i] ? x[i * s] : y[i];
    }
}

/* y[i] += x[i * s] for i < n. */
static void row_add(float *restrict y, const float *restrict x, int64_t n, int64_t s)
{
    if (s == 1) {
        for (int64_t i = 0; i < n; i++) y[i] += x[i];
    } else {
        for (int64_t i = 0; i < n; i++) y[i] += x[i * s];
    }
}

/* MaxPool / AveragePool of one H x W plane, row by row: per output row the window rows
 * inside the input are known, and the columns whose windows lie inside the input (the
 * interior) take every kernel column in a plain loop over x; the border columns clip their
 * kernel columns. Max skips NaN; an output left at -inf (a window of -inf, NaN or padding
 * only) is recomputed by pool_one, which sorts those cases out as the generic path does.
 * Indices (idx, may be NULL) are the first maximum's position within the plane. */
static void pool_plane2d(const struct pool_geom *g, enum pool_kind kind, bool include_pad,
                         bool col_major, const float *xp, float *yp, int64_t *idx,
                         int64_t plane_base)
{
    int64_t H = g->in[0], W = g->in[1], OH = g->out[0], OW = g->out[1];
    int64_t KW = g->k[1], sy = g->s[0], sx = g->s[1], dy = g->d[0], dx = g->d[1];
    int64_t c0, c1;
    pool_inner_cols(W, KW, sx, dx, g->pb[1], OW, &c0, &c1);
    size_t cstride[KILN_MAX_RANK];
    pool_cstrides(g, cstride);
    bool is_max = kind == POOL_MAX;
    for (int64_t oy = 0; oy < OH; oy++) {
        int64_t ky0, ky1, cy;
        kiln_pool_taps(g, 0, oy, &ky0, &ky1, &cy);
        int64_t y0 = oy * sy - g->pb[0];
        float *yr = yp + oy * OW;
        int64_t *ir = idx ? idx + oy * OW : NULL;
        /* Interior columns. */
        if (c1 > c0) {
            int64_t n = c1 - c0;
            float *yi = yr + c0;
            for (int64_t i = 0; i < n; i++) yi[i] = is_max ? -INFINITY : 0.0f;
            if (ir) {
                for (int64_t i = 0; i < n; i++) {
                    int64_t ix = (c0 + i) * sx - g->pb[1], iy = y0 + ky0 * dy;
                    ir[c0 + i] = col_major ? ix * H + iy : iy * W + ix;
                }
            }
            for (int64_t ky = ky0; ky < ky1; ky++) {
                int64_t iy = y0 + ky * dy;
                const float *xr = xp + iy * W + c0 * sx - g->pb[1];
                for (int64_t kx = 0; kx < KW; kx++) {
                    const float *xs = xr + kx * dx;
                    if (!is_max) {
                        row_add(yi, xs, n, sx);
                    } else if (!ir) {
                        row_max(yi, xs, n, sx);
                    } else {
                        for (int64_t i = 0; i < n; i++) {
                            float v = xs[i * sx];
                            if (v > yi[i]) {
                                yi[i] = v;
                                int64_t ix = (c0 + i) * sx - g->pb[1] + kx * dx;
                                ir[c0 + i] = col_major ? ix * H + iy : iy * W + ix;
                            }
                        }
                    }
                }
            }
            if (!is_max) {
                /* Interior columns have every kernel column inside the input. */
                int64_t cnt = (include_pad ? cy : ky1 - ky0) * KW;
                if (cnt) {
                    float c = (float)cnt;
                    for (int64_t i = 0; i < n; i++) yi[i] /= c;
                } else {
                    for (int64_t i = 0; i < n; i++) yi[i] = NAN;
                }
            }
        }
        /* Border columns, and max outputs that need the careful rules. */
        for (int64_t ox = 0; ox < OW; ox++) {
            bool inner = ox >= c0 && ox < c1;
            if (inner && !(is_max && yr[ox] == -INFINITY)) continue;
            if (is_max && (inner || ky0 == ky1)) {
                int64_t o[2] = {oy, ox};
                size_t at;
                yr[ox] = pool_one(g, kind, include_pad, 2.0f, col_major, cstride, xp, o, &at);
                if (ir) ir[ox] = (int64_t)at;
                continue;
            }
            int64_t kx0, kx1, cx;
            kiln_pool_taps(g, 1, ox, &kx0, &kx1, &cx);
            int64_t x0 = ox * sx - g->pb[1];
            if (is_max) {
                float best = -INFINITY;
                int64_t at = -1;
                for (int64_t ky = ky0; ky < ky1; ky++) {
                    const float *xr = xp + (y0 + ky * dy) * W;
                    for (int64_t kx = kx0; kx < kx1; kx++) {
                        float v = xr[x0 + kx * dx];
                        if (v > best) {
                            best = v;
                            int64_t iy = y0 + ky * dy, ix = x0 + kx * dx;
                            at = col_major ? ix * H + iy : iy * W + ix;
                        }
                    }
                }
                if (best == -INFINITY) { /* NaN / -inf only: the generic rules */
                    int64_t o[2] = {oy, ox};
                    size_t a;
                    best = pool_one(g, kind, include_pad, 2.0f, col_major, cstride, xp, o, &a);
                    at = (int64_t)a;
                }
                yr[ox] = best;
                if (ir) ir[ox] = at;
            } else {
                float acc = 0.0f;
                for (int64_t ky = ky0; ky < ky1; ky++) {
                    const float *xr = xp + (y0 + ky * dy) * W;
                    for (int64_t kx = kx0; kx < kx1; kx++) acc += xr[x0 + kx * dx];
                }
                int64_t cnt = include_pad ? cy * cx : (ky1 - ky0) * (kx1 - kx0);
                yr[ox] = cnt ? acc / (float)cnt : NAN;
            }
        }
        if (ir)
            for (int64_t ox = 0; ox < OW; ox++) ir[ox] += plane_base;
    }
}

/* One windowed pool run, split over planes by kiln_pool_for. */
struct pool_job {
    const struct pool_geom *g;
    enum pool_kind kind;
    bool include_pad, col_major, fast;
    float p;
    const float *x;
    float *y;
    int64_t *idx;
};

static void pool_chunk(void *ctx, size_t p0, size_t p1, int worker)
{
    (void)worker;
    const struct pool_job *j = ctx;
    const struct pool_geom *g = j->g;
    if (!j->fast) {
        pool_planes(g, j->kind, j->include_pad, j->p, j->col_major, p0, p1, j->x, j->y, j->idx);
        return;
    }
    for (size_t pl = p0; pl < p1; pl++)
        pool_plane2d(g, j->kind, j->include_pad, j->col_major, j->x + pl * g->is, j->y + pl * g->os,
                     j->idx ? j->idx + pl * g->os : NULL, (int64_t)(pl * g->is));
}

/* ------------------------------------------------------------------ windowed pools */

enum pool_variant {
    POOL_AUTO = 0,    /* chosen per run (X's rank unknown at prepare) */
    POOL_GENERIC = 1, /* the window walk: any rank, any kind */
    POOL_2D = 2,      /* pool_plane2d: rank 4 MaxPool / AveragePool */
    POOL_VARIANTS
};

static const char *const pool_variant_name[POOL_VARIANTS] = {NULL, "generic", "2d"};

/* What a windowed pool's prepare makes (k->state of pool_run). */
struct pool_state {
    struct pool_attrs a;
    float p;          /* LpPool's exponent (> 0) */
    bool include_pad; /* AveragePool's count_include_pad */
    bool col_major;   /* MaxPool's storage_order = 1 */
    int variant;      /* enum pool_variant */
};

/* Decodes the attributes of a `kind` pool node into st (variant POOL_AUTO). */
static kiln_status pool_decode(struct kiln_kctx *k, enum pool_kind kind, struct pool_state *st)
{
    memset(st, 0, sizeof *st);
    KILN_TRY(kiln_pool_decode_window(k, &st->a));
    st->p = 2.0f;
    if (kind == POOL_LP) {
        st->p = k->opset < 2 ? kiln_attr_f(k, "p", 2.0f) : (float)kiln_attr_i(k, "p", 2);
        if (!(st->p > 0))
            return kiln_kfail(k, KILN_E_INVALID_MODEL, "p = %g; expected > 0", st->p);
    }
    st->include_pad = kind == POOL_AVG && kiln_attr_i(k, "count_include_pad", 0) != 0;
    st->col_major = kind == POOL_MAX && kiln_attr_i(k, "storage_order", 0) != 0;
    st->variant = POOL_AUTO;
    return KILN_OK;
}

/* Variant `want` when it applies to a `kind` pool of nd spatial dims, else the default: "2d"
 * where it applies, else "generic". */
static int pool_pick(int want, enum pool_kind kind, int nd)
{
    bool fast_ok = kind != POOL_LP && nd == 2;
    if (want == POOL_GENERIC || (want == POOL_2D && fast_ok)) return want;
    return fast_ok ? POOL_2D : POOL_GENERIC;
}

static double pool_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Times the generic walk and the 2-D path on random data of a static X [N, C, H, W] (one
 * thread); returns the faster, or POOL_AUTO when the shape is invalid or memory lacks. */
static int pool_tune(struct kiln_kprep *p, enum pool_kind kind, const struct pool_state *st,
                     const int64_t *dims)
{
    kiln_err geom_err;
    struct kiln_kctx kc = p->kc;
    kc.err = &geom_err;
    struct pool_geom g;
    if (kiln_pool_geom(&kc, &st->a, 4, dims, &g)) return POOL_AUTO;
    size_t planes, nx, ny, bytes;
    if (!kiln_mul_size((size_t)dims[0], (size_t)dims[1], &planes) || !planes || !g.os ||
        !kiln_mul_size(planes, g.is, &nx) || !kiln_mul_size(planes, g.os, &ny) ||
        !kiln_add_size(nx, ny, &bytes) || !kiln_mul_size(bytes, sizeof(float), &bytes))
        return POOL_AUTO;
    float *x = kiln_aligned_alloc(64, bytes);
    if (!x) return POOL_AUTO;
    float *y = x + nx;
    uint64_t seed = 12345;
    for (size_t i = 0; i < nx; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((double)(seed >> 40) / (double)(1ull << 23)) - 1.0f;
    }
    int best = POOL_AUTO;
    double best_t = 0;
    for (int v = POOL_GENERIC; v < POOL_VARIANTS; v++) {
        struct pool_job job = {&g, kind, st->include_pad, st->col_major, v == POOL_2D, st->p,
                               x, y, NULL};
        pool_chunk(&job, 0, planes, 0); /* warm caches and pages */
        double t = 0;
        for (int r = 0; r < 3; r++) {
            double t0 = pool_now();
            pool_chunk(&job, 0, planes, 0);
            double d = pool_now() - t0;
            if (r == 0 || d < t) t = d;
        }
        if (best == POOL_AUTO || t < best_t) best = v, best_t = t;
    }
    kiln_aligned_free(x);
    return best;
}

/* Prepare of a windowed pool: the attributes, and the variant when X's rank is known. */
static kiln_status pool_prepare(struct kiln_kprep *p, enum pool_kind kind)
{
    struct pool_state *st;
    KILN_TRY(kiln_kprep_alloc(p, sizeof *st, (void **)&st));
    KILN_TRY(pool_decode(&p->kc, kind, st));
    p->state = st;
    if (kind == POOL_LP) return KILN_OK; /* one implementation */
    int want = p->variant > POOL_AUTO && p->variant < POOL_VARIANTS ? p->variant : POOL_AUTO;
    const struct kiln_vtype *xt = p->in[0];
    int rank = xt && xt->type.kind == KILN_TYPE_TENSOR ? xt->type.rank : -1;
    if (rank < 3 || rank > KILN_MAX_RANK) {
        st->variant = want; /* the run checks that it applies */
    } else if (p->variant >= 0) {
        st->variant = want == POOL_AUTO ? POOL_AUTO : pool_pick(want, kind, rank - 2);
    } else {
        st->variant = pool_pick(POOL_AUTO, kind, rank - 2);
        bool fixed = rank == 4;
        int64_t dims[4];
        for (int d = 0; fixed && d < 4; d++) fixed = (dims[d] = xt->type.dims[d].value) >= 0;
        if (p->tune == 1 && fixed) {
            int v = pool_tune(p, kind, st, dims);
            if (v != POOL_AUTO) st->variant = v;
        }
    }
    p->chosen = st->variant;
    p->kernel = pool_variant_name[st->variant];
    return KILN_OK;
}

/* Shared driver for the windowed pools. */
static kiln_status pool_run(struct kiln_kctx *k, enum pool_kind kind)
{
    struct pool_state own;
    const struct pool_state *st = k->state;
    if (!st) { /* called without prepare (kernel tests): decode the attributes now */
        KILN_TRY(pool_decode(k, kind, &own));
        st = &own;
    }
    const struct kiln_tensor *x;
    KILN_TRY(kiln_in_req(k, 0, &x));
    if (!pool_dtype_ok(x->dtype, kind == POOL_MAX))
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "input X is %s; expected a float type%s",
                          kiln_dtype_name(x->dtype), kind == POOL_MAX ? ", int8 or uint8" : "");
    struct pool_geom g;
    KILN_TRY(kiln_pool_geom(k, &st->a, x->rank, x->dims, &g));
    int64_t ydims[KILN_MAX_RANK] = {x->dims[0], x->dims[1]};
    for (int i = 0; i < g.nd; i++) ydims[2 + i] = g.out[i];
    struct kiln_tensor *y, *ind = NULL;
    KILN_TRY(kiln_out_tensor(k, 0, x->dtype, x->rank, ydims, &y));
    if (kind == POOL_MAX && kiln_out_wanted(k, 1))
        KILN_TRY(kiln_out_tensor(k, 1, KILN_DTYPE_I64, x->rank, ydims, &ind));
    size_t planes = (size_t)x->dims[0] * (size_t)x->dims[1];
    if (planes == 0 || g.os == 0) return KILN_OK;
    const float *xf;
    float *yf;
    KILN_TRY(kiln_stage_f32(k, x, &xf));
    KILN_TRY(kiln_stage_out_f32(k, y, &yf));
    bool fast = pool_pick(st->variant, kind, g.nd) == POOL_2D;
    struct pool_job job = {&g, kind, st->include_pad, st->col_major, fast, st->p,
                           xf, yf, ind ? ind->data : NULL};
    /* About 64k window taps per chunk: enough to pay for handing it to a thread. */
    size_t grain = kiln_pool_grain(g.os * g.ks, 65536);
    kiln_pool_for(k->pool, planes, grain, pool_chunk, &job);
    kiln_unstage_f32(y, yf);
    return KILN_OK;
}

static kiln_status maxpool_prepare(struct kiln_kprep *p)
{
    return pool_prepare(p, POOL_MAX);
}
static kiln_status avgpool_prepare(struct kiln_kprep *p)
{
    return pool_prepare(p, POOL_AVG);
}
static kiln_status lppool_prepare(struct kiln_kprep *p)
{
    return pool_prepare(p, POOL_LP);
}
static kiln_status maxpool_run(struct kiln_kctx *k)
{
    return pool_run(k, POOL_MAX);
}
static kiln_status avgpool_run(struct kiln_kctx *k)
{
    return pool_run(k, POOL_AVG);
}
static kiln_status lppool_run(struct kiln_kctx *k)
{
    return pool_run(k, POOL_LP);
}

/* ------------------------------------------------------------------ global pools */

/* GlobalLpPool's p (GlobalMaxPool and GlobalAveragePool have no attributes, no prepare). */
static float glp_decode(struct kiln_kctx *k)
{
    return k->opset < 2 ? kiln_attr_f(k, "p", 2.0f) : (float)kiln_attr_i(k, "p", 2);
}

static kiln_status glp_prepare(struct kiln_kprep *p)
{
    float *pv;
    KILN_TRY(kiln_kprep_alloc(p, sizeof *pv, (void **)&pv));
    *pv = glp_decode(&p->kc);
    p->state = pv;
    return KILN_OK;
}

static kiln_status global_run(struct kiln_kctx *k, enum pool_kind kind)
{
    const struct kiln_tensor *x;
    KILN_TRY(kiln_in_req(k, 0, &x));
    if (!pool_dtype_ok(x->dtype, false))
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "input X is %s; expected a float type",
                          kiln_dtype_name(x->dtype));
    if (x->rank < 2)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input X has rank %d; expected >= 2", x->rank);
    float p = 2.0f;
    if (kind == POOL_LP) p = k->state ? *(const float *)k->state : glp_decode(k);
    int64_t ydims[KILN_MAX_RANK] = {x->dims[0], x->dims[1]};
    size_t plane = 1;
    for (int i = 2; i < x->rank; i++) {
        ydims[i] = 1;
        plane *= (size_t)x->dims[i];
    }
    struct kiln_tensor *y;
    KILN_TRY(kiln_out_tensor(k, 0, x->dtype, x->rank, ydims, &y));
    size_t planes = (size_t)x->dims[0] * (size_t)x->dims[1];
    if (planes == 0) return KILN_OK;
    const float *xf;
    float *yf;
    KILN_TRY(kiln_stage_f32(k, x, &xf));
    KILN_TRY(kiln_stage_out_f32(k, y, &yf));
    for (size_t pl = 0; pl < planes; pl++) {
        const float *xp = xf + pl * plane;
        if (kind == POOL_MAX) {
            float best = -INFINITY;
            bool nan = plane > 0;
            for (size_t i = 0; i < plane; i++) {
                if (!isnan(xp[i])) nan = false;
                if (xp[i] > best) best = xp[i];
            }
            yf[pl] = nan ? NAN : best;
        } else {
            double acc = 0;
            for (size_t i = 0; i < plane; i++)
                acc += kind == POOL_AVG ? xp[i] : (p == 2.0f ? (double)xp[i] * xp[i] : pow(fabs(xp[i]), p));
            yf[pl] = kind == POOL_AVG ? (float)(acc / (double)plane)
                                      : (float)(p == 2.0f ? sqrt(acc) : pow(acc, 1.0 / p));
        }
    }
    kiln_unstage_f32(y, yf);
    return KILN_OK;
}

static kiln_status gmax_run(struct kiln_kctx *k)
{
    return global_run(k, POOL_MAX);
}
static kiln_status gavg_run(struct kiln_kctx *k)
{
    return global_run(k, POOL_AVG);
}
static kiln_status glp_run(struct kiln_kctx *k)
{
    return global_run(k, POOL_LP);
}

/* ------------------------------------------------------------------ MaxUnpool */

/* MaxUnpool's attributes (lists borrowed from the node; lengths checked at run). */
struct unpool_attrs {
    size_t nk, ns, np;
    const int64_t *ks, *sv, *pv;
};

static void unpool_decode(struct kiln_kctx *k, struct unpool_attrs *a)
{
    a->nk = kiln_attr_ints(k, "kernel_shape", &a->ks);
    a->ns = kiln_attr_ints(k, "strides", &a->sv);
    a->np = kiln_attr_ints(k, "pads", &a->pv);
}

static kiln_status maxunpool_prepare(struct kiln_kprep *p)
{
    struct unpool_attrs *a;
    KILN_TRY(kiln_kprep_alloc(p, sizeof *a, (void **)&a));
    unpool_decode(&p->kc, a);
    p->state = a;
    return KILN_OK;
}

/* Scatters X into a zero tensor of the inferred shape, (in - 1) * s + k - pb - pe per
 * spatial dim: U.flat[I[j]] = X[j]. With the output_shape input, U is then placed at the
 * origin of a zero tensor of that shape (which must be at least as large in every dim), as
 * the ONNX reference implementation does. */
static kiln_status maxunpool_run(struct kiln_kctx *k)
{
    struct unpool_attrs own;
    const struct unpool_attrs *a = k->state;
    if (!a) { /* called without prepare (kernel tests) */
        unpool_decode(k, &own);
        a = &own;
    }
    const struct kiln_tensor *x, *ind, *shp = kiln_in(k, 2);
    KILN_TRY(kiln_in_req(k, 0, &x));
    KILN_TRY(kiln_in_req(k, 1, &ind));
    if (x->rank < 3)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input X has rank %d; expected >= 3", x->rank);
    if (!kiln_dtype_is_int(ind->dtype) || kiln_tensor_numel(ind) != kiln_tensor_numel(x))
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input I must be int64 with X's shape");
    int nd = x->rank - 2, rank = x->rank;
    int64_t udims[KILN_MAX_RANK] = {x->dims[0], x->dims[1]}, ydims[KILN_MAX_RANK];
    const int64_t *ks = a->ks, *sv = a->sv, *pv = a->pv;
    size_t nk = a->nk, ns = a->ns, np = a->np;
    if (nk != (size_t)nd || (ns && ns != (size_t)nd) || (np && np != 2 * (size_t)nd))
        return kiln_kfail(k, KILN_E_INVALID_MODEL,
                          "kernel_shape/strides/pads sizes (%zu, %zu, %zu) do not fit %d dims", nk,
                          ns, np, nd);
    for (int i = 0; i < nd; i++) {
        udims[2 + i] = (x->dims[2 + i] - 1) * (ns ? sv[i] : 1) + ks[i] -
                       (np ? pv[i] + pv[nd + i] : 0);
        if (udims[2 + i] < 0)
            return kiln_kfail(k, KILN_E_INVALID_ARG, "inferred output dim %d is negative", 2 + i);
    }
    memcpy(ydims, udims, sizeof ydims);
    if (shp) {
        if (shp->rank != 1 || shp->dims[0] != rank)
            return kiln_kfail(k, KILN_E_INVALID_ARG, "output_shape must have %d values", rank);
        for (int i = 0; i < rank; i++) {
            ydims[i] = kiln_tensor_get_i64(shp, (size_t)i);
            if (ydims[i] < udims[i])
                return kiln_kfail(k, KILN_E_INVALID_ARG,
                                  "output_shape[%d] = %lld is smaller than the inferred %lld", i,
                                  (long long)ydims[i], (long long)udims[i]);
        }
    }
    struct kiln_tensor *y;
    KILN_TRY(kiln_out_tensor(k, 0, x->dtype, rank, ydims, &y));
    size_t n = kiln_tensor_numel(x), nu = 1, es = kiln_dtype_size(x->dtype);
    for (int i = 0; i < rank; i++) nu *= (size_t)udims[i];
    bool same = memcmp(udims, ydims, (size_t)rank * sizeof *udims) == 0;
    char *u = y->data;
    if (!same) KILN_TRY(kiln_scratch(k, nu * es + 1, (void **)&u));
    for (size_t i = 0; i < n; i++) {
        int64_t at = kiln_tensor_get_i64(ind, i);
        if (at < 0 || (uint64_t)at >= nu)
            return kiln_kfail(k, KILN_E_INVALID_ARG, "index %lld out of range [0, %zu)",
                              (long long)at, nu);
        memcpy(u + (size_t)at * es, (const char *)x->data + i * es, es);
    }
    if (same || nu == 0) return KILN_OK;
    /* Copy U's rows (last dim) into Y at the same multi-index. */
    size_t row = (size_t)udims[rank - 1], rows = nu / row;
    int64_t idx[KILN_MAX_RANK] = {0};
    for (size_t r = 0; r < rows; r++) {
        size_t yo = 0;
        for (int d = 0; d < rank - 1; d++) yo = yo * (size_t)ydims[d] + (size_t)idx[d];
        yo *= (size_t)ydims[rank - 1];
        memcpy((char *)y->data + yo * es, u + r * row * es, row * es);
        for (int d = rank - 2; d >= 0; d--) {
            if (++idx[d] < udims[d]) break;
            idx[d] = 0;
        }
    }
    return KILN_OK;
}

const struct kiln_cpu_op kiln_cpu_ops_pool[] = {
    {"MaxPool", "", 1, 0, maxpool_run, maxpool_prepare, 0},
    {"AveragePool", "", 1, 0, avgpool_run, avgpool_prepare, 0},
    {"LpPool", "", 1, 0, lppool_run, lppool_prepare, 0},
    {"GlobalMaxPool", "", 1, 0, gmax_run, NULL, 0},
    {"GlobalAveragePool", "", 1, 0, gavg_run, NULL, 0},
    {"GlobalLpPool", "", 1, 0, glp_run, glp_prepare, 0},
    {"MaxUnpool", "", 1, 0, maxunpool_run, maxunpool_prepare, 0},
    {0},
};
