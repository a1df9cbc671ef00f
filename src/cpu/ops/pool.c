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
 * dtypes: float32 natively; float16, bfloat16, float64, int8 and uint8 are staged through
 * float32 (exact for all but float64, which computes at float32 precision).
 */
#include <math.h>
#include <string.h>

#include "cpu/tensor_util.h"

/* ------------------------------------------------------------------ dtype staging */

static bool pool_dtype_ok(kiln_dtype dt, bool ints)
{
    return dt == KILN_DTYPE_F32 || dt == KILN_DTYPE_F16 || dt == KILN_DTYPE_BF16 ||
           dt == KILN_DTYPE_F64 || (ints && (dt == KILN_DTYPE_I8 || dt == KILN_DTYPE_U8));
}

/* ------------------------------------------------------------------ geometry */

struct pool_geom {
    int nd;
    int64_t in[KILN_MAX_RANK], out[KILN_MAX_RANK], k[KILN_MAX_RANK];
    int64_t s[KILN_MAX_RANK], d[KILN_MAX_RANK], pb[KILN_MAX_RANK], pe[KILN_MAX_RANK];
    size_t is, os, ks;
};


/* Reads the window attributes for an X of rank `rank` and derives the output sizes. */
static kiln_status pool_geom(struct kiln_kctx *k, const struct kiln_tensor *x, struct pool_geom *g)
{
    memset(g, 0, sizeof *g);
    if (x->rank < 3)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input X has rank %d; expected >= 3 (N, C, ...)",
                          x->rank);
    int nd = g->nd = x->rank - 2;
    const int64_t *ks, *v;
    size_t c = kiln_attr_ints(k, "kernel_shape", &ks);
    if (c != (size_t)nd)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "kernel_shape has %zu values; expected %d", c, nd);
    size_t cs = kiln_attr_ints(k, "strides", &v);
    if (cs && cs != (size_t)nd)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "strides has %zu values; expected %d", cs, nd);
    for (int i = 0; i < nd; i++) g->s[i] = cs ? v[i] : 1;
    size_t cd = kiln_attr_ints(k, "dilations", &v);
    if (cd && cd != (size_t)nd)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "dilations has %zu values; expected %d", cd, nd);
    for (int i = 0; i < nd; i++) g->d[i] = cd ? v[i] : 1;
    size_t cp = kiln_attr_ints(k, "pads", &v);
    if (cp && cp != 2 * (size_t)nd)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "pads has %zu values; expected %d", cp, 2 * nd);
    for (int i = 0; i < nd; i++) {
        g->pb[i] = cp ? v[i] : 0;
        g->pe[i] = cp ? v[nd + i] : 0;
    }
    bool ceil_mode = kiln_attr_i(k, "ceil_mode", 0) != 0;
    const char *ap = kiln_attr_s(k, "auto_pad", "NOTSET");
    bool upper = !strcmp(ap, "SAME_UPPER"), lower = !strcmp(ap, "SAME_LOWER");
    bool valid = !strcmp(ap, "VALID");
    if (!upper && !lower && !valid && strcmp(ap, "NOTSET"))
        return kiln_kfail(k, KILN_E_INVALID_MODEL,
                          "auto_pad '%s' is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID", ap);
    g->is = g->os = g->ks = 1;
    for (int i = 0; i < nd; i++) {
        g->in[i] = x->dims[2 + i];
        g->k[i] = ks[i];
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

/* Pools `planes` planes of x (each g->is elements) into y (each g->os). idx (may be NULL)
 * receives MaxPool indices. p is LpPool's exponent. */
static void pool_planes(const struct pool_geom *g, enum pool_kind kind, bool include_pad,
                        float p, bool col_major, size_t planes, const float *x, float *y,
                        int64_t *idx)
{
    int nd = g->nd;
    int64_t o[KILN_MAX_RANK], j[KILN_MAX_RANK], start[KILN_MAX_RANK];
    size_t cstride[KILN_MAX_RANK]; /* column-major strides of the spatial dims */
    size_t cst = 1;
    for (int d = 0; d < nd; d++) {
        cstride[d] = cst;
        cst *= (size_t)g->in[d];
    }
    for (size_t pl = 0; pl < planes; pl++) {
        const float *xp = x + pl * g->is;
        float *yp = y + pl * g->os;
        for (int d = 0; d < nd; d++) o[d] = 0;
        for (size_t oi = 0; oi < g->os; oi++) {
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
            if (kind == POOL_MAX) {
                yp[oi] = have ? best : (any ? NAN : -INFINITY);
                if (idx) idx[pl * g->os + oi] = (int64_t)(pl * g->is + best_at);
            } else if (kind == POOL_AVG) {
                yp[oi] = count ? (float)(acc / (double)count) : NAN;
            } else {
                yp[oi] = (float)(p == 2.0f ? sqrt(acc) : pow(acc, 1.0 / p));
            }
            for (int d = nd - 1; d >= 0; d--) {
                if (++o[d] < g->out[d]) break;
                o[d] = 0;
            }
        }
    }
}

/* Shared driver for the windowed pools. */
static kiln_status pool_run(struct kiln_kctx *k, enum pool_kind kind)
{
    const struct kiln_tensor *x;
    KILN_TRY(kiln_in_req(k, 0, &x));
    if (!pool_dtype_ok(x->dtype, kind == POOL_MAX))
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "input X is %s; expected a float type%s",
                          kiln_dtype_name(x->dtype), kind == POOL_MAX ? ", int8 or uint8" : "");
    struct pool_geom g;
    KILN_TRY(pool_geom(k, x, &g));
    float p = 2.0f;
    if (kind == POOL_LP) {
        p = k->opset < 2 ? kiln_attr_f(k, "p", 2.0f) : (float)kiln_attr_i(k, "p", 2);
        if (!(p > 0))
            return kiln_kfail(k, KILN_E_INVALID_MODEL, "p = %g; expected > 0", p);
    }
    bool include_pad = kind == POOL_AVG && kiln_attr_i(k, "count_include_pad", 0) != 0;
    bool col_major = kind == POOL_MAX && kiln_attr_i(k, "storage_order", 0) != 0;
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
    pool_planes(&g, kind, include_pad, p, col_major, planes, xf, yf, ind ? ind->data : NULL);
    kiln_unstage_f32(y, yf);
    return KILN_OK;
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
    if (kind == POOL_LP) p = k->opset < 2 ? kiln_attr_f(k, "p", 2.0f) : (float)kiln_attr_i(k, "p", 2);
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

/* Scatters X into a zero tensor of the inferred shape, (in - 1) * s + k - pb - pe per
 * spatial dim: U.flat[I[j]] = X[j]. With the output_shape input, U is then placed at the
 * origin of a zero tensor of that shape (which must be at least as large in every dim), as
 * the ONNX reference implementation does. */
static kiln_status maxunpool_run(struct kiln_kctx *k)
{
    const struct kiln_tensor *x, *ind, *shp = kiln_in(k, 2);
    KILN_TRY(kiln_in_req(k, 0, &x));
    KILN_TRY(kiln_in_req(k, 1, &ind));
    if (x->rank < 3)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input X has rank %d; expected >= 3", x->rank);
    if (!kiln_dtype_is_int(ind->dtype) || kiln_tensor_numel(ind) != kiln_tensor_numel(x))
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input I must be int64 with X's shape");
    int nd = x->rank - 2, rank = x->rank;
    int64_t udims[KILN_MAX_RANK] = {x->dims[0], x->dims[1]}, ydims[KILN_MAX_RANK];
    const int64_t *ks, *sv, *pv;
    size_t nk = kiln_attr_ints(k, "kernel_shape", &ks);
    size_t ns = kiln_attr_ints(k, "strides", &sv), np = kiln_attr_ints(k, "pads", &pv);
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
    {"MaxPool", "", 1, 0, maxpool_run},
    {"AveragePool", "", 1, 0, avgpool_run},
    {"LpPool", "", 1, 0, lppool_run},
    {"GlobalMaxPool", "", 1, 0, gmax_run},
    {"GlobalAveragePool", "", 1, 0, gavg_run},
    {"GlobalLpPool", "", 1, 0, glp_run},
    {"MaxUnpool", "", 1, 0, maxunpool_run},
    {0},
};
