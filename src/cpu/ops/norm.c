/* src/cpu/ops/norm.c: ONNX normalization ops and Dropout.
 *
 * BatchNormalization (1, 6, 7, 9, 14, 15): y = scale * (x - mean) / sqrt(var + eps) + B per
 *   channel; opset < 9 with spatial = 0 takes per-activation parameters of shape [C, D...].
 *   training_mode (14+) normalizes with the batch statistics (population variance) and
 *   outputs running_mean/var = input * momentum + batch * (1 - momentum).
 * InstanceNormalization (1, 6, 22): per (n, c) statistics over the spatial dims.
 * LayerNormalization (17): statistics over dims [axis, rank); Scale/B broadcast to those
 *   dims; optional Mean and InvStdDev outputs of shape X.dims[:axis] + [1]*(rank - axis)
 *   in the stash_type dtype.
 * GroupNormalization (18, 21): statistics per (n, group); scale/bias per channel (21) or,
 *   as opset 18 declared them, per group (told apart by their length).
 * RMSNormalization (23): y = x / sqrt(mean(x^2) + eps) * scale over dims [axis, rank).
 * MeanVarianceNormalization (1, 9, 13): (x - mean) / (sqrt(var) + 1e-9) over `axes`
 *   (default [0, 2, 3]), as the spec's function body.
 * LRN (1, 13): x / (bias + alpha / size * sum of x^2 over channels [c - floor((size-1)/2),
 *   c + ceil((size-1)/2)]) ^ beta.
 * LpNormalization (1, 22): x / ||x||_p along `axis` (p = 1 or 2); a zero norm gives 0.
 * Dropout (1, 6, 7, 10, 12, 13, 22): identity outside training (and with ratio 0); the
 *   mask is all true (bool from opset 10, ones of X's type before). Training with
 *   ratio > 0 draws from a xorshift generator seeded by `seed` (outputs are not expected
 *   to match other runtimes bit for bit; the spec leaves the generator open).
 *
 * Statistics accumulate in double; inputs other than float32 are staged through float32. The
 * per-row statistics and elementwise passes of Batch/Instance/Layer/Group/RMS normalization
 * are vectorized (cpu/isa/norm.c, still in double) and rows are split over threads. The
 * exception is Layer/RMS normalization with a Scale (and B) of the whole row, the
 * transformers' and ConvNeXt's case: each row in float lanes whose partial sums combine in
 * double (kiln_norm_row_f32_isa, cpu/reduce_isa.h; within a few float roundings of the double
 * computation, tests/unit/test_norm_fast.c), 1.9x faster on ConvNeXt-T's 96- to 768-channel
 * rows (2.05 -> 1.11 ms of its 23 LayerNormalizations a run, one thread).
 *
 * Prepared kernels (cpu/kernel.h): prepare decodes each op's attributes into its own struct
 * (refusing LRN size < 1 and LpNormalization p other than 1 or 2 there); run reads it as
 * k->state. A kernel run without prepare (k->state NULL: the unit tests call run directly)
 * decodes through the same function at run time. kiln_cpu_layernorm_run and
 * kiln_cpu_rmsnorm_run, which fused.c's kiln-domain ops call with their own nodes, always
 * decode at run time: another family's k->state is not ours to read.
 *
 * In place (KILN_OP_INPLACE): every op but LRN computes each row, plane or group from input
 * 0 alone (statistics first, then the elements in order, each read before it is written), so
 * output 0 may occupy input 0's memory. LRN reads the neighbouring channels of the element it
 * writes, which an in-place run would already have overwritten: not marked.
 */
#include <math.h>
#include <string.h>

#include "base/pool.h"
#include "cpu/ops/fused.h"
#include "cpu/reduce_isa.h"
#include "cpu/tensor_util.h"

/* Checks X's dtype and returns it staged. */
static kiln_status x_in(struct kiln_kctx *k, const struct kiln_tensor **x, const float **xf)
{
    KILN_TRY(kiln_in_req(k, 0, x));
    if (!kiln_dtype_is_real_float((*x)->dtype))
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "input X is %s; expected a float type",
                          kiln_dtype_name((*x)->dtype));
    return kiln_stage_f32(k, *x, xf);
}

/* Output Y of X's dtype and shape, with its float32 buffer *yf (kiln_unstage_f32 finishes). */
static kiln_status y_out(struct kiln_kctx *k, const struct kiln_tensor *x, struct kiln_tensor **y,
                         float **yf)
{
    KILN_TRY(kiln_out_tensor(k, 0, x->dtype, x->rank, x->dims, y));
    return kiln_stage_out_f32(k, *y, yf);
}

/* Product of dims 2.. of x: the size of one (n, c) plane. */
static size_t plane_of(const struct kiln_tensor *x)
{
    size_t plane = 1;
    for (int i = 2; i < x->rank; i++) plane *= (size_t)x->dims[i];
    return plane;
}

static int norm_axis(int64_t axis, int rank)
{
    return (int)(axis < 0 ? axis + rank : axis);
}

/* Attribute `axis` value a of a rank-`rank` X, normalized to [0, rank). */
static kiln_status axis_check(struct kiln_kctx *k, int64_t a, int rank, int *axis)
{
    *axis = norm_axis(a, rank);
    if (*axis < 0 || *axis >= rank)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "axis %lld is out of range for rank %d",
                          (long long)a, rank);
    return KILN_OK;
}

/* A small parameter vector as double (scratch); NULL t gives `def` everywhere. */
static kiln_status param_f64(struct kiln_kctx *k, const struct kiln_tensor *t, size_t n,
                             double def, const char *what, double **out)
{
    double *p;
    KILN_TRY(kiln_scratch(k, n * sizeof *p + 1, (void **)&p));
    if (t && kiln_tensor_numel(t) != n)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input %s has %zu elements; expected %zu", what,
                          kiln_tensor_numel(t), n);
    for (size_t i = 0; i < n; i++) p[i] = t ? kiln_tensor_get_f64(t, i) : def;
    *out = p;
    return KILN_OK;
}

/* For a parameter tensor p broadcast (numpy rules, right-aligned) to the `nd` dims `dims`,
 * fills map[i] = p's element for the i-th (row-major) position of dims. */
static kiln_status bcast_map(struct kiln_kctx *k, const struct kiln_tensor *p, int nd,
                             const int64_t *dims, size_t n, const char *what, size_t **out)
{
    size_t *map;
    KILN_TRY(kiln_scratch(k, n * sizeof *map + 1, (void **)&map));
    if (p->rank > nd)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input %s has rank %d; expected <= %d", what,
                          p->rank, nd);
    size_t st[KILN_MAX_RANK] = {0}, s = 1;
    for (int d = p->rank - 1; d >= 0; d--) {
        int od = nd - p->rank + d;
        if (p->dims[d] != 1 && p->dims[d] != dims[od]) {
            char a[200], b[200];
            return kiln_kfail(k, KILN_E_INVALID_ARG, "input %s %s does not broadcast to %s", what,
                              kiln_shape_str(p->rank, p->dims, a, sizeof a),
                              kiln_shape_str(nd, dims, b, sizeof b));
        }
        st[od] = p->dims[d] == 1 ? 0 : s;
        s *= (size_t)p->dims[d];
    }
    int64_t idx[KILN_MAX_RANK] = {0};
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        map[i] = off;
        for (int d = nd - 1; d >= 0; d--) {
            off += st[d];
            if (++idx[d] < dims[d]) break;
            off -= st[d] * (size_t)dims[d];
            idx[d] = 0;
        }
    }
    *out = map;
    return KILN_OK;
}

/* Mean and population variance of n contiguous floats (two passes in double, vectorized:
 * cpu/isa/norm.c); 0 and 0 for n == 0. */
static void stats(const float *x, size_t n, double *mean, double *var)
{
    if (!n) {
        *mean = *var = 0;
        return;
    }
    KILN_ISA_DISPATCH(kiln_norm_stats_f32_isa, (x, n, mean, var));
}

/* y[i] = (float)(a * x[i] + c) for i < n, vectorized. */
static void affine(const float *x, float *y, size_t n, double a, double c)
{
    KILN_ISA_DISPATCH(kiln_norm_affine_f32_isa, (x, y, n, a, c));
}

/* Rows (or planes) of `elems` elements each are split over the session's threads in chunks
 * of >= ~16K elements; smaller tensors run inline. Each row is computed alone by the same
 * code as with one thread, so results do not depend on the thread count. */
static size_t grain_of(size_t elems)
{
    return kiln_pool_grain(elems, 16384);
}

/* ------------------------------------------------------------------ BatchNormalization */

/* BatchNormalization's y = a * x + off over planes [begin, end) of N * np planes of `inner`
 * elements (plane p has the parameters of p % np). */
struct bn_job {
    const float *x;
    float *y;
    const double *s, *b, *m, *v;
    double eps;
    size_t np, inner;
};

static void bn_chunk(void *ctx, size_t begin, size_t end, int worker)
{
    const struct bn_job *j = ctx;
    (void)worker;
    for (size_t p = begin; p < end; p++) {
        size_t c = p % j->np;
        double a = j->s[c] / sqrt(j->v[c] + j->eps), off = j->b[c] - a * j->m[c];
        const float *xp = j->x + p * j->inner;
        float *yp = j->y + p * j->inner;
        affine(xp, yp, j->inner, a, off);
    }
}

/* BatchNormalization: epsilon, momentum, whether it trains (batch statistics and running
 * outputs) and whether the parameters are per activation (opset < 9, spatial = 0). */
struct bn_state {
    double eps, mom;
    bool training, per_act;
};

static kiln_status decode_batchnorm(struct kiln_kctx *k, struct bn_state *s)
{
    s->eps = kiln_attr_f(k, "epsilon", 1e-5f);
    s->mom = kiln_attr_f(k, "momentum", 0.9f);
    bool training = k->opset >= 14 && kiln_attr_i(k, "training_mode", 0) != 0;
    /* Before opset 7, is_test = 0 asked for training; from 7 to 13 the op is inference
     * only unless extra outputs are requested. */
    if (k->opset < 7 && !kiln_attr_i(k, "is_test", 0) && kiln_out_wanted(k, 1)) training = true;
    if (k->opset >= 7 && k->opset < 14 && kiln_out_wanted(k, 1)) training = true;
    s->training = training;
    s->per_act = k->opset < 9 && kiln_attr_i(k, "spatial", 1) == 0;
    return KILN_OK;
}

KILN_PREPARE_WITH(batchnorm_prepare, struct bn_state, decode_batchnorm)

static kiln_status batchnorm_run(struct kiln_kctx *k)
{
    struct bn_state dec;
    const struct bn_state *bs;
    KILN_STATE_OR_DECODE(k, decode_batchnorm, dec, bs);
    const struct kiln_tensor *x, *sc, *bi, *mn, *vr;
    const float *xf;
    KILN_TRY(x_in(k, &x, &xf));
    KILN_TRY(kiln_in_req(k, 1, &sc));
    KILN_TRY(kiln_in_req(k, 2, &bi));
    KILN_TRY(kiln_in_req(k, 3, &mn));
    KILN_TRY(kiln_in_req(k, 4, &vr));
    if (x->rank < 2)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input X has rank %d; expected >= 2", x->rank);
    const double eps = bs->eps, mom = bs->mom;
    const bool training = bs->training, per_act = bs->per_act;

    size_t N = (size_t)x->dims[0], C = (size_t)x->dims[1], plane = plane_of(x);
    size_t np = per_act ? C * plane : C; /* parameters per sample */
    size_t inner = per_act ? 1 : plane;   /* elements sharing one parameter, per sample */
    double *s, *b, *m, *v;
    KILN_TRY(param_f64(k, sc, np, 1, "scale", &s));
    KILN_TRY(param_f64(k, bi, np, 0, "B", &b));
    KILN_TRY(param_f64(k, mn, np, 0, "mean", &m));
    KILN_TRY(param_f64(k, vr, np, 1, "var", &v));

    struct kiln_tensor *y;
    float *yf;
    KILN_TRY(y_out(k, x, &y, &yf));

    double *bm = m, *bv = v;
    if (training) {
        KILN_TRY(kiln_scratch(k, 2 * np * sizeof(double) + 1, (void **)&bm));
        bv = bm + np;
        for (size_t c = 0; c < np; c++) {
            double sum = 0, sq = 0;
            for (size_t n = 0; n < N; n++)
                for (size_t i = 0; i < inner; i++) sum += xf[(n * np + c) * inner + i];
            double cnt = (double)(N * inner), mu = cnt > 0 ? sum / cnt : 0;
            for (size_t n = 0; n < N; n++)
                for (size_t i = 0; i < inner; i++) {
                    double d = xf[(n * np + c) * inner + i] - mu;
                    sq += d * d;
                }
            bm[c] = mu;
            bv[c] = cnt > 0 ? sq / cnt : 0;
        }
    }
    struct bn_job j = {xf, yf, s, b, bm, bv, eps, np, inner};
    kiln_pool_for(k->pool, N * np, grain_of(inner), bn_chunk, &j);
    kiln_unstage_f32(y, yf);

    if (training) {
        /* Opset 14+: outputs 1, 2 are the running mean/var. Before 14: 1, 2 are running
         * mean/var and 3, 4 the saved (batch) mean/var. */
        for (size_t o = 1; o < k->n_out && o <= 4; o++) {
            if (!kiln_out_wanted(k, o)) continue;
            const struct kiln_tensor *like = o == 1 || o == 3 ? mn : vr;
            struct kiln_tensor *t;
            KILN_TRY(kiln_out_tensor(k, o, like->dtype, like->rank, like->dims, &t));
            for (size_t c = 0; c < np; c++) {
                double val = o == 1   ? m[c] * mom + bm[c] * (1 - mom)
                             : o == 2 ? v[c] * mom + bv[c] * (1 - mom)
                             : o == 3 ? bm[c]
                                      : bv[c];
                kiln_tensor_set_f64(t, c, val);
            }
        }
    }
    return KILN_OK;
}

/* ------------------------------------------------------------------ InstanceNormalization */

/* InstanceNormalization of planes [begin, end) of N * C. */
struct in_job {
    const float *x;
    float *y;
    const double *s, *b;
    double eps;
    size_t C, plane;
};

static void in_chunk(void *ctx, size_t begin, size_t end, int worker)
{
    const struct in_job *j = ctx;
    (void)worker;
    for (size_t p = begin; p < end; p++) {
        size_t c = p % j->C;
        const float *xp = j->x + p * j->plane;
        float *yp = j->y + p * j->plane;
        double mu, var;
        stats(xp, j->plane, &mu, &var);
        double a = j->s[c] / sqrt(var + j->eps), off = j->b[c] - a * mu;
        affine(xp, yp, j->plane, a, off);
    }
}

/* An op whose only attribute is epsilon (InstanceNormalization). */
struct eps_state {
    double eps;
};

static kiln_status decode_eps(struct kiln_kctx *k, struct eps_state *s)
{
    s->eps = kiln_attr_f(k, "epsilon", 1e-5f);
    return KILN_OK;
}

KILN_PREPARE_WITH(eps_prepare, struct eps_state, decode_eps)

static kiln_status instnorm_run(struct kiln_kctx *k)
{
    struct eps_state dec;
    const struct eps_state *es;
    KILN_STATE_OR_DECODE(k, decode_eps, dec, es);
    const struct kiln_tensor *x, *sc, *bi;
    const float *xf;
    KILN_TRY(x_in(k, &x, &xf));
    KILN_TRY(kiln_in_req(k, 1, &sc));
    KILN_TRY(kiln_in_req(k, 2, &bi));
    if (x->rank < 3)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input X has rank %d; expected >= 3", x->rank);
    double eps = es->eps;
    size_t N = (size_t)x->dims[0], C = (size_t)x->dims[1], plane = plane_of(x);
    double *s, *b;
    KILN_TRY(param_f64(k, sc, C, 1, "scale", &s));
    KILN_TRY(param_f64(k, bi, C, 0, "B", &b));
    struct kiln_tensor *y;
    float *yf;
    KILN_TRY(y_out(k, x, &y, &yf));
    struct in_job j = {xf, yf, s, b, eps, C, plane};
    kiln_pool_for(k->pool, N * C, grain_of(plane), in_chunk, &j);
    kiln_unstage_f32(y, yf);
    return KILN_OK;
}

/* ------------------------------------------------------------------ Layer / RMS norm */

/* Layer/RMS normalization of rows [begin, end) of D elements; tm/ti (may be NULL) get each
 * row's mean and inverse standard deviation (one element per row). */
struct ln_job {
    const float *x;
    float *y;
    const float *sf, *bf; /* bf NULL: no bias */
    const size_t *smap, *bmap;
    struct kiln_tensor *tm, *ti;
    double eps;
    size_t D;
    bool rms;
    bool dense; /* Scale (and B) hold D elements each: element i is parameter i */
};

static void ln_chunk(void *ctx, size_t begin, size_t end, int worker)
{
    const struct ln_job *j = ctx;
    const size_t D = j->D;
    (void)worker;
    for (size_t o = begin; o < end; o++) {
        const float *xp = j->x + o * D;
        float *yp = j->y + o * D;
        double mu = 0, var;
        if (j->dense && D) {
            /* Scale and B cover the whole row (no broadcast maps): the row in float lanes. */
            double inv;
            KILN_ISA_DISPATCH(kiln_norm_row_f32_isa, (xp, yp, D, j->eps, j->sf, j->bf, j->rms, &mu, &inv));
            if (j->tm) kiln_tensor_set_f64(j->tm, o, mu);
            if (j->ti) kiln_tensor_set_f64(j->ti, o, inv);
            continue;
        }
        if (j->rms) {
            var = D ? KILN_ISA_SELECT(kiln_norm_meansq_f32_isa)(xp, D) : 0;
        } else {
            stats(xp, D, &mu, &var);
        }
        double inv = 1.0 / sqrt(var + j->eps);
        for (size_t i = 0; i < D; i++) {
            double v = (xp[i] - mu) * inv * j->sf[j->smap[i]];
            if (j->bf) v += j->bf[j->bmap[i]];
            yp[i] = (float)v;
        }
        if (j->tm) kiln_tensor_set_f64(j->tm, o, mu);
        if (j->ti) kiln_tensor_set_f64(j->ti, o, inv);
    }
}

/* LayerNormalization / RMSNormalization: axis as written, epsilon, stash_type. */
struct ln_state {
    int64_t axis, stash;
    double eps;
};

static kiln_status decode_layernorm(struct kiln_kctx *k, struct ln_state *s)
{
    s->axis = kiln_attr_i(k, "axis", -1);
    s->eps = kiln_attr_f(k, "epsilon", 1e-5f);
    s->stash = kiln_attr_i(k, "stash_type", 1);
    return KILN_OK;
}

KILN_PREPARE_WITH(layernorm_prepare, struct ln_state, decode_layernorm)

/* rms: RMSNormalization (no mean subtraction, no bias). */
static kiln_status layernorm_common(struct kiln_kctx *k, const struct ln_state *ls, bool rms)
{
    const struct kiln_tensor *x, *sc, *bi = rms ? NULL : kiln_in(k, 2);
    const float *xf;
    KILN_TRY(x_in(k, &x, &xf));
    KILN_TRY(kiln_in_req(k, 1, &sc));
    int axis;
    KILN_TRY(axis_check(k, ls->axis, x->rank, &axis));
    double eps = ls->eps;
    int64_t stash = ls->stash;
    size_t outer = 1, D = 1;
    for (int i = 0; i < axis; i++) outer *= (size_t)x->dims[i];
    for (int i = axis; i < x->rank; i++) D *= (size_t)x->dims[i];
    int nd = x->rank - axis;
    size_t *smap, *bmap = NULL;
    KILN_TRY(bcast_map(k, sc, nd, x->dims + axis, D, "Scale", &smap));
    if (bi) KILN_TRY(bcast_map(k, bi, nd, x->dims + axis, D, "B", &bmap));
    const float *sf, *bf = NULL;
    KILN_TRY(kiln_stage_f32(k, sc, &sf));
    if (bi) KILN_TRY(kiln_stage_f32(k, bi, &bf));

    struct kiln_tensor *y, *tm = NULL, *ti = NULL;
    float *yf;
    KILN_TRY(y_out(k, x, &y, &yf));
    int64_t sdims[KILN_MAX_RANK];
    for (int i = 0; i < x->rank; i++) sdims[i] = i < axis ? x->dims[i] : 1;
    kiln_dtype sdt = kiln_dtype_valid((int)stash) && kiln_dtype_is_float((kiln_dtype)stash)
                         ? (kiln_dtype)stash
                         : KILN_DTYPE_F32;
    if (!rms && kiln_out_wanted(k, 1)) KILN_TRY(kiln_out_tensor(k, 1, sdt, x->rank, sdims, &tm));
    if (!rms && kiln_out_wanted(k, 2)) KILN_TRY(kiln_out_tensor(k, 2, sdt, x->rank, sdims, &ti));
    const bool dense = kiln_tensor_numel(sc) == D && (!bi || kiln_tensor_numel(bi) == D);
    struct ln_job j = {xf, yf, sf, bf, smap, bmap, tm, ti, eps, D, rms, dense};
    kiln_pool_for(k->pool, outer, grain_of(D), ln_chunk, &j);
    kiln_unstage_f32(y, yf);
    return KILN_OK;
}

static kiln_status layernorm_run(struct kiln_kctx *k)
{
    struct ln_state dec;
    const struct ln_state *ls;
    KILN_STATE_OR_DECODE(k, decode_layernorm, dec, ls);
    return layernorm_common(k, ls, false);
}

static kiln_status rmsnorm_run(struct kiln_kctx *k)
{
    struct ln_state dec;
    const struct ln_state *ls;
    KILN_STATE_OR_DECODE(k, decode_layernorm, dec, ls);
    return layernorm_common(k, ls, true);
}

/* For fused.c (fused.h): decodes the node's attributes now, whatever k->state holds. */
kiln_status kiln_cpu_layernorm_run(struct kiln_kctx *k)
{
    struct ln_state ls;
    KILN_TRY(decode_layernorm(k, &ls));
    return layernorm_common(k, &ls, false);
}

kiln_status kiln_cpu_rmsnorm_run(struct kiln_kctx *k)
{
    struct ln_state ls;
    KILN_TRY(decode_layernorm(k, &ls));
    return layernorm_common(k, &ls, true);
}

/* ------------------------------------------------------------------ GroupNormalization */

/* GroupNormalization of groups [begin, end) of N * G, each cpg planes of `plane`. */
struct gn_job {
    const float *x;
    float *y;
    const double *s, *b;
    double eps;
    size_t G, cpg, plane;
    bool per_group;
};

static void gn_chunk(void *ctx, size_t begin, size_t end, int worker)
{
    const struct gn_job *j = ctx;
    const size_t cpg = j->cpg, plane = j->plane;
    (void)worker;
    for (size_t ng = begin; ng < end; ng++) {
        size_t g = ng % j->G, base = ng * cpg * plane;
        double mu, var;
        stats(j->x + base, cpg * plane, &mu, &var);
        double inv = 1.0 / sqrt(var + j->eps);
        for (size_t c = 0; c < cpg; c++) {
            size_t pi = j->per_group ? g : g * cpg + c;
            double a = j->s[pi] * inv, off = j->b[pi] - a * mu;
            const float *xp = j->x + base + c * plane;
            float *yp = j->y + base + c * plane;
            affine(xp, yp, plane, a, off);
        }
    }
}

/* GroupNormalization: num_groups (checked against the channels at run) and epsilon. */
struct gn_state {
    int64_t groups;
    double eps;
};

static kiln_status decode_groupnorm(struct kiln_kctx *k, struct gn_state *s)
{
    s->groups = kiln_attr_i(k, "num_groups", 0);
    s->eps = kiln_attr_f(k, "epsilon", 1e-5f);
    return KILN_OK;
}

KILN_PREPARE_WITH(groupnorm_prepare, struct gn_state, decode_groupnorm)

static kiln_status groupnorm_run(struct kiln_kctx *k)
{
    struct gn_state dec;
    const struct gn_state *gs;
    KILN_STATE_OR_DECODE(k, decode_groupnorm, dec, gs);
    const struct kiln_tensor *x, *sc, *bi;
    const float *xf;
    KILN_TRY(x_in(k, &x, &xf));
    KILN_TRY(kiln_in_req(k, 1, &sc));
    KILN_TRY(kiln_in_req(k, 2, &bi));
    if (x->rank < 2)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input X has rank %d; expected >= 2", x->rank);
    int64_t G = gs->groups;
    double eps = gs->eps;
    size_t N = (size_t)x->dims[0], C = (size_t)x->dims[1], plane = plane_of(x);
    if (G < 1 || C % (size_t)G)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "num_groups = %lld must divide the %zu channels",
                          (long long)G, C);
    size_t cpg = C / (size_t)G;
    bool per_group = kiln_tensor_numel(sc) == (size_t)G && (size_t)G != C;
    double *s, *b;
    KILN_TRY(param_f64(k, sc, per_group ? (size_t)G : C, 1, "scale", &s));
    KILN_TRY(param_f64(k, bi, per_group ? (size_t)G : C, 0, "bias", &b));
    struct kiln_tensor *y;
    float *yf;
    KILN_TRY(y_out(k, x, &y, &yf));
    size_t gsz = cpg * plane;
    struct gn_job j = {xf, yf, s, b, eps, (size_t)G, cpg, plane, per_group};
    kiln_pool_for(k->pool, N * (size_t)G, grain_of(gsz), gn_chunk, &j);
    kiln_unstage_f32(y, yf);
    return KILN_OK;
}

/* ------------------------------------------------------------------ MeanVarianceNormalization */

/* MeanVarianceNormalization's axes (default [0, 2, 3]). */
struct mvn_state {
    const int64_t *axes;
    size_t na;
};

static kiln_status decode_mvn(struct kiln_kctx *k, struct mvn_state *s)
{
    static const int64_t def_axes[] = {0, 2, 3};
    s->na = kiln_attr_ints(k, "axes", &s->axes);
    if (!kiln_attr_has(k, "axes")) s->axes = def_axes, s->na = 3;
    return KILN_OK;
}

KILN_PREPARE_WITH(mvn_prepare, struct mvn_state, decode_mvn)

static kiln_status mvn_run(struct kiln_kctx *k)
{
    struct mvn_state dec;
    const struct mvn_state *ms;
    KILN_STATE_OR_DECODE(k, decode_mvn, dec, ms);
    const struct kiln_tensor *x;
    const float *xf;
    KILN_TRY(x_in(k, &x, &xf));
    const int64_t *axes = ms->axes;
    size_t na = ms->na;
    bool red[KILN_MAX_RANK] = {0};
    for (size_t i = 0; i < na; i++) {
        int a = norm_axis(axes[i], x->rank);
        if (a < 0 || a >= x->rank)
            return kiln_kfail(k, KILN_E_INVALID_MODEL, "axes[%zu] = %lld is out of range for rank %d",
                              i, (long long)axes[i], x->rank);
        red[a] = true;
    }
    /* Statistics index of each element: its position with reduced dims dropped. */
    size_t n = kiln_tensor_numel(x), ns = 1;
    for (int d = 0; d < x->rank; d++)
        if (!red[d]) ns *= (size_t)x->dims[d];
    double *acc;
    KILN_TRY(kiln_scratch(k, 2 * ns * sizeof *acc + 1, (void **)&acc));
    double *sq = acc + ns;
    size_t *sidx;
    KILN_TRY(kiln_scratch(k, n * sizeof *sidx + 1, (void **)&sidx));
    int64_t idx[KILN_MAX_RANK] = {0};
    for (size_t i = 0; i < n; i++) {
        size_t si = 0;
        for (int d = 0; d < x->rank; d++)
            if (!red[d]) si = si * (size_t)x->dims[d] + (size_t)idx[d];
        sidx[i] = si;
        for (int d = x->rank - 1; d >= 0; d--) {
            if (++idx[d] < x->dims[d]) break;
            idx[d] = 0;
        }
    }
    double per = ns ? (double)n / (double)ns : 1;
    for (size_t i = 0; i < n; i++) acc[sidx[i]] += xf[i];
    for (size_t j = 0; j < ns; j++) acc[j] /= per;
    for (size_t i = 0; i < n; i++) {
        double d = xf[i] - acc[sidx[i]];
        sq[sidx[i]] += d * d;
    }
    for (size_t j = 0; j < ns; j++) sq[j] = sqrt(sq[j] / per) + 1e-9;
    struct kiln_tensor *y;
    float *yf;
    KILN_TRY(y_out(k, x, &y, &yf));
    for (size_t i = 0; i < n; i++) yf[i] = (float)((xf[i] - acc[sidx[i]]) / sq[sidx[i]]);
    kiln_unstage_f32(y, yf);
    return KILN_OK;
}

/* ------------------------------------------------------------------ LRN */

/* LRN of planes [begin, end) of N * C. */
struct lrn_job {
    const float *x;
    float *y;
    double alpha, beta, bias;
    int64_t size, lo, hi;
    size_t C, plane;
};

static void lrn_chunk(void *ctx, size_t begin, size_t end, int worker)
{
    const struct lrn_job *j = ctx;
    const size_t C = j->C, plane = j->plane;
    (void)worker;
    for (size_t p = begin; p < end; p++) {
        size_t n = p / C, c = p % C;
        int64_t c0 = (int64_t)c - j->lo, c1 = (int64_t)c + j->hi;
        if (c0 < 0) c0 = 0;
        if (c1 > (int64_t)C - 1) c1 = (int64_t)C - 1;
        for (size_t i = 0; i < plane; i++) {
            double s = 0;
            for (int64_t cc = c0; cc <= c1; cc++) {
                double v = j->x[(n * C + (size_t)cc) * plane + i];
                s += v * v;
            }
            size_t at = p * plane + i;
            j->y[at] = (float)(j->x[at] / pow(j->bias + j->alpha / (double)j->size * s, j->beta));
        }
    }
}

/* LRN: size (>= 1), alpha, beta, bias. */
struct lrn_state {
    int64_t size;
    double alpha, beta, bias;
};

static kiln_status decode_lrn(struct kiln_kctx *k, struct lrn_state *s)
{
    s->size = kiln_attr_i(k, "size", 0);
    s->alpha = kiln_attr_f(k, "alpha", 1e-4f);
    s->beta = kiln_attr_f(k, "beta", 0.75f);
    s->bias = kiln_attr_f(k, "bias", 1.0f);
    if (s->size < 1)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "size = %lld; expected >= 1",
                          (long long)s->size);
    return KILN_OK;
}

KILN_PREPARE_WITH(lrn_prepare, struct lrn_state, decode_lrn)

static kiln_status lrn_run(struct kiln_kctx *k)
{
    struct lrn_state dec;
    const struct lrn_state *ls;
    KILN_STATE_OR_DECODE(k, decode_lrn, dec, ls);
    const struct kiln_tensor *x;
    const float *xf;
    KILN_TRY(x_in(k, &x, &xf));
    if (x->rank < 3)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input X has rank %d; expected >= 3", x->rank);
    const int64_t size = ls->size;
    const double alpha = ls->alpha, beta = ls->beta, bias = ls->bias;
    size_t N = (size_t)x->dims[0], C = (size_t)x->dims[1], plane = plane_of(x);
    int64_t lo = (size - 1) / 2, hi = size - 1 - lo;
    struct kiln_tensor *y;
    float *yf;
    KILN_TRY(y_out(k, x, &y, &yf));
    struct lrn_job j = {xf, yf, alpha, beta, bias, size, lo, hi, C, plane};
    kiln_pool_for(k->pool, N * C, grain_of(plane * (size_t)size), lrn_chunk, &j);
    kiln_unstage_f32(y, yf);
    return KILN_OK;
}

/* ------------------------------------------------------------------ LpNormalization */

/* LpNormalization of lines [begin, end) of outer * inner, each `len` elements `inner` apart. */
struct lp_job {
    const float *x;
    float *y;
    int64_t p;
    size_t len, inner;
};

static void lp_chunk(void *ctx, size_t begin, size_t end, int worker)
{
    const struct lp_job *jb = ctx;
    const size_t len = jb->len, inner = jb->inner;
    const int64_t p = jb->p;
    (void)worker;
    for (size_t r = begin; r < end; r++) {
        size_t o = r / inner, i = r % inner;
        const float *xp = jb->x + o * len * inner + i;
        float *yp = jb->y + o * len * inner + i;
        double s = 0;
        for (size_t j = 0; j < len; j++)
            s += p == 1 ? fabs(xp[j * inner]) : (double)xp[j * inner] * xp[j * inner];
        double nrm = p == 1 ? s : sqrt(s);
        for (size_t j = 0; j < len; j++)
            yp[j * inner] = nrm != 0 ? (float)(xp[j * inner] / nrm) : 0.0f;
    }
}

/* LpNormalization: p (1 or 2) and axis as written. */
struct lp_state {
    int64_t p, axis;
};

static kiln_status decode_lpnorm(struct kiln_kctx *k, struct lp_state *s)
{
    s->p = kiln_attr_i(k, "p", 2);
    s->axis = kiln_attr_i(k, "axis", -1);
    if (s->p != 1 && s->p != 2)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "p = %lld; expected 1 or 2", (long long)s->p);
    return KILN_OK;
}

KILN_PREPARE_WITH(lpnorm_prepare, struct lp_state, decode_lpnorm)

static kiln_status lpnorm_run(struct kiln_kctx *k)
{
    struct lp_state dec;
    const struct lp_state *ls;
    KILN_STATE_OR_DECODE(k, decode_lpnorm, dec, ls);
    const struct kiln_tensor *x;
    const float *xf;
    KILN_TRY(x_in(k, &x, &xf));
    const int64_t p = ls->p;
    if (x->rank == 0) return kiln_kfail(k, KILN_E_INVALID_ARG, "input X must have rank >= 1");
    int axis;
    KILN_TRY(axis_check(k, ls->axis, x->rank, &axis));
    size_t outer = 1, len = (size_t)x->dims[axis], inner = 1;
    for (int i = 0; i < axis; i++) outer *= (size_t)x->dims[i];
    for (int i = axis + 1; i < x->rank; i++) inner *= (size_t)x->dims[i];
    struct kiln_tensor *y;
    float *yf;
    KILN_TRY(y_out(k, x, &y, &yf));
    struct lp_job j = {xf, yf, p, len, inner};
    kiln_pool_for(k->pool, outer * inner, grain_of(len), lp_chunk, &j);
    kiln_unstage_f32(y, yf);
    return KILN_OK;
}

/* ------------------------------------------------------------------ Dropout */

/* Dropout: the `ratio` attribute (before 12; inputs from 12), is_test (before 7), seed. */
struct dropout_state {
    double ratio;
    bool is_test;
    int64_t seed;
};

static kiln_status decode_dropout(struct kiln_kctx *k, struct dropout_state *s)
{
    s->ratio = kiln_attr_f(k, "ratio", 0.5f);
    s->is_test = kiln_attr_i(k, "is_test", 0) != 0;
    s->seed = kiln_attr_i(k, "seed", 0);
    return KILN_OK;
}

KILN_PREPARE_WITH(dropout_prepare, struct dropout_state, decode_dropout)

static kiln_status dropout_run(struct kiln_kctx *k)
{
    struct dropout_state dec;
    const struct dropout_state *ds;
    KILN_STATE_OR_DECODE(k, decode_dropout, dec, ds);
    const struct kiln_tensor *x;
    KILN_TRY(kiln_in_req(k, 0, &x));
    double ratio = ds->ratio;
    bool training = false;
    if (k->opset >= 12) {
        const struct kiln_tensor *r = kiln_in(k, 1), *t = kiln_in(k, 2);
        if (r && kiln_tensor_numel(r) == 1) ratio = kiln_tensor_get_f64(r, 0);
        if (t && kiln_tensor_numel(t) == 1) training = kiln_tensor_get_f64(t, 0) != 0;
    } else if (k->opset < 7) {
        training = !ds->is_test;
    }
    if (!(ratio >= 0 && ratio < 1))
        return kiln_kfail(k, KILN_E_INVALID_ARG, "ratio = %g; expected [0, 1)", ratio);
    if (training && ratio > 0 && !kiln_dtype_is_real_float(x->dtype))
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "training dropout of %s",
                          kiln_dtype_name(x->dtype));
    struct kiln_tensor *y, *mask = NULL;
    KILN_TRY(kiln_out_tensor(k, 0, x->dtype, x->rank, x->dims, &y));
    kiln_dtype mdt = k->opset >= 10 ? KILN_DTYPE_BOOL : x->dtype;
    if (kiln_out_wanted(k, 1)) KILN_TRY(kiln_out_tensor(k, 1, mdt, x->rank, x->dims, &mask));
    size_t n = kiln_tensor_numel(x);
    if (!(training && ratio > 0)) {
        /* In place the data is already there. */
        if (n && y->data != x->data) memcpy(y->data, x->data, kiln_tensor_nbytes(x));
        for (size_t i = 0; mask && i < n; i++) kiln_tensor_set_f64(mask, i, 1.0);
        return KILN_OK;
    }
    uint64_t st = (uint64_t)ds->seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull;
    double scale = 1.0 / (1.0 - ratio);
    for (size_t i = 0; i < n; i++) {
        st ^= st << 13, st ^= st >> 7, st ^= st << 17;
        double u = (double)(st >> 11) * (1.0 / 9007199254740992.0);
        bool keep = u >= ratio;
        kiln_tensor_set_f64(y, i, keep ? kiln_tensor_get_f64(x, i) * scale : 0.0);
        if (mask) kiln_tensor_set_f64(mask, i, keep ? 1.0 : 0.0);
    }
    return KILN_OK;
}

const struct kiln_cpu_op kiln_cpu_ops_norm[] = {
    {"BatchNormalization", "", 1, 0, batchnorm_run, batchnorm_prepare, KILN_OP_INPLACE},
    {"InstanceNormalization", "", 1, 0, instnorm_run, eps_prepare, KILN_OP_INPLACE},
    {"LayerNormalization", "", 1, 0, layernorm_run, layernorm_prepare, KILN_OP_INPLACE},
    {"RMSNormalization", "", 1, 0, rmsnorm_run, layernorm_prepare, KILN_OP_INPLACE},
    {"GroupNormalization", "", 1, 0, groupnorm_run, groupnorm_prepare, KILN_OP_INPLACE},
    {"MeanVarianceNormalization", "", 1, 0, mvn_run, mvn_prepare, KILN_OP_INPLACE},
    {"LRN", "", 1, 0, lrn_run, lrn_prepare, 0},
    {"LpNormalization", "", 1, 0, lpnorm_run, lpnorm_prepare, KILN_OP_INPLACE},
    {"Dropout", "", 1, 0, dropout_run, dropout_prepare, KILN_OP_INPLACE},
    {0},
};
