/* src/cpu/ops/scale_bias.c: kiln.ScaleBias, a per-channel affine map and an activation in one
 * pass over memory (docs/fused-ops.md). The optimizer's NHWC pass (src/opt/pass_nhwc.c)
 * writes an inference BatchNormalization of a channels-last region as one, with the
 * activation that follows it (DenseNet's pre-activation BN + Relu before each convolution).
 *
 *   ScaleBias (X [..., C], S [C], B [C]) -> Y [..., C] = act(X * S + B)
 *
 * The activation attributes are kiln.FusedConv's (activation, activation_params,
 * approximate; cpu/act.h). Each product is rounded to float, then the sum, then the
 * activation applied: exactly Mul, then Add, then the activation op (bitwise; the AVX2 /
 * AVX-512 activation loops may contract inside Sigmoid-like functions as those ops do).
 * float32 only. Rows of C are split over the session's threads.
 *
 *   ConcatScaleBias (S [C], B [C], X0 [..., C0], X1 [..., C1], ...) -> Y [..., C]
 *       = act(Concat(X0, X1, ..., axis = -1) * S + B),  C = C0 + C1 + ...
 *
 * The optimizer's fuse_concat_sb pass (src/opt/pass_fuse_concat_sb.c) writes a channels-last
 * Concat whose only reader is a ScaleBias as one: DenseNet concatenates every earlier
 * layer's features before each pre-activation BN, and the fused op reads the pieces once and
 * writes the normalized result once, where Concat then ScaleBias wrote and read the whole
 * concatenation in between (DenseNet-121: the two took 13% of a run). Same arithmetic as
 * ScaleBias, bit for bit. The inputs' leading dims must agree.
 */
#include <string.h>

#include "base/pool.h"
#include "cpu/act.h"
#include "cpu/kernel.h"

struct sb_state {
    struct kiln_act act;
};

static kiln_status sb_decode(struct kiln_kctx *k, struct sb_state *s)
{
    memset(s, 0, sizeof *s);
    return kiln_attr_act(k, &s->act);
}

KILN_PREPARE_WITH(sb_prepare, struct sb_state, sb_decode)

/* S and B are 1-D of c values (c: `what`). */
static kiln_status check_params(struct kiln_kctx *k, const struct kiln_tensor *s, const struct kiln_tensor *b,
                                int64_t c, const char *what)
{
    if (s->rank == 1 && b->rank == 1 && s->dims[0] == c && b->dims[0] == c) return KILN_OK;
    return kiln_kfail(k, KILN_E_INVALID_ARG,
                      "inputs S and B have %lld and %lld values (ranks %d, %d); expected 1-D of %s %lld",
                      (long long)(s->rank ? s->dims[0] : 1), (long long)(b->rank ? b->dims[0] : 1), s->rank,
                      b->rank, what, (long long)c);
}

struct sb_job {
    const struct kiln_act *act;
    const float *x, *s, *b;
    float *y;
    size_t c;
};

static void sb_rows(void *ctx, size_t r0, size_t r1, int worker)
{
    (void)worker;
    const struct sb_job *j = ctx;
    size_t c = j->c;
    for (size_t r = r0; r < r1; r++) {
        const float *x = j->x + r * c;
        float *y = j->y + r * c;
        for (size_t i = 0; i < c; i++) y[i] = x[i] * j->s[i];
        kiln_act_apply_f32(j->act, y, j->b, y, c); /* act(round(x * s) + b) */
    }
}

static kiln_status sb_run(struct kiln_kctx *k)
{
    struct sb_state tmp;
    const struct sb_state *st;
    KILN_STATE_OR_DECODE(k, sb_decode, tmp, st);
    const struct kiln_tensor *x, *s, *b;
    KILN_TRY(kiln_in_req(k, 0, &x));
    KILN_TRY(kiln_in_req(k, 1, &s));
    KILN_TRY(kiln_in_req(k, 2, &b));
    if (x->dtype != KILN_DTYPE_F32 || s->dtype != KILN_DTYPE_F32 || b->dtype != KILN_DTYPE_F32)
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "inputs are %s, %s, %s; expected float32",
                          kiln_dtype_name(x->dtype), kiln_dtype_name(s->dtype), kiln_dtype_name(b->dtype));
    if (x->rank < 1)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input X is a scalar; expected rank >= 1");
    int64_t c = x->dims[x->rank - 1];
    KILN_TRY(check_params(k, s, b, c, "X's last dim"));
    struct kiln_tensor *y;
    KILN_TRY(kiln_out_tensor_raw(k, 0, KILN_DTYPE_F32, x->rank, x->dims, &y));
    size_t n = kiln_tensor_numel(x);
    if (!n) return KILN_OK;
    struct sb_job job = {&st->act, x->data, s->data, b->data, y->data, (size_t)c};
    size_t rows = n / (size_t)c;
    kiln_pool_for(k->pool, rows, kiln_pool_grain((size_t)c, 16384), sb_rows, &job);
    return KILN_OK;
}

/* ------------------------------------------------------------------ ConcatScaleBias */

#define CSB_MAX_INPUTS 4096

struct csb_job {
    const struct kiln_kctx *k; /* the pieces are its inputs 2.. */
    const struct kiln_act *act;
    const float *s, *b;
    float *y;
    size_t c, n_x;
};

static void csb_rows(void *ctx, size_t r0, size_t r1, int worker)
{
    (void)worker;
    const struct csb_job *j = ctx;
    for (size_t r = r0; r < r1; r++) {
        float *y = j->y + r * j->c;
        size_t off = 0;
        for (size_t i = 0; i < j->n_x; i++) {
            const struct kiln_tensor *t = kiln_in(j->k, 2 + i);
            size_t ci = (size_t)t->dims[t->rank - 1];
            const float *x = (const float *)t->data + r * ci, *s = j->s + off;
            float *yi = y + off;
            for (size_t q = 0; q < ci; q++) yi[q] = x[q] * s[q];
            off += ci;
        }
        kiln_act_apply_f32(j->act, y, j->b, y, j->c); /* act(round(x * s) + b) */
    }
}

static kiln_status csb_run(struct kiln_kctx *k)
{
    struct sb_state tmp;
    const struct sb_state *st;
    KILN_STATE_OR_DECODE(k, sb_decode, tmp, st);
    const struct kiln_tensor *s, *b, *x0;
    KILN_TRY(kiln_in_req(k, 0, &s));
    KILN_TRY(kiln_in_req(k, 1, &b));
    if (k->n_in < 3 || k->n_in - 2 > CSB_MAX_INPUTS)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "has %zu inputs; expected S, B and 1 to %d pieces", k->n_in,
                          CSB_MAX_INPUTS);
    KILN_TRY(kiln_in_req(k, 2, &x0));
    if (s->dtype != KILN_DTYPE_F32 || b->dtype != KILN_DTYPE_F32)
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "inputs S and B are %s, %s; expected float32",
                          kiln_dtype_name(s->dtype), kiln_dtype_name(b->dtype));
    if (x0->rank < 1) return kiln_kfail(k, KILN_E_INVALID_ARG, "input 2 is a scalar; expected rank >= 1");
    size_t n_x = k->n_in - 2, c = 0;
    for (size_t i = 0; i < n_x; i++) {
        const struct kiln_tensor *x;
        KILN_TRY(kiln_in_req(k, 2 + i, &x));
        if (x->dtype != KILN_DTYPE_F32)
            return kiln_kfail(k, KILN_E_UNSUPPORTED, "input %zu is %s; expected float32", 2 + i,
                              kiln_dtype_name(x->dtype));
        bool same = x->rank == x0->rank;
        for (int d = 0; same && d < x->rank - 1; d++) same = x->dims[d] == x0->dims[d];
        if (!same) {
            char a[96], e[96];
            return kiln_kfail(k, KILN_E_INVALID_ARG, "input %zu has shape %s; expected %s but for the last dim",
                              2 + i, kiln_shape_str(x->rank, x->dims, a, sizeof a),
                              kiln_shape_str(x0->rank, x0->dims, e, sizeof e));
        }
        c += (size_t)x->dims[x->rank - 1];
    }
    KILN_TRY(check_params(k, s, b, (int64_t)c, "the pieces' total last dim"));
    int64_t yd[KILN_MAX_RANK];
    memcpy(yd, x0->dims, (size_t)x0->rank * sizeof *yd);
    yd[x0->rank - 1] = (int64_t)c;
    struct kiln_tensor *y;
    KILN_TRY(kiln_out_tensor_raw(k, 0, KILN_DTYPE_F32, x0->rank, yd, &y));
    size_t n = kiln_tensor_numel(y);
    if (!n) return KILN_OK;
    struct csb_job job = {k, &st->act, s->data, b->data, y->data, c, n_x};
    kiln_pool_for(k->pool, n / c, kiln_pool_grain(c, 16384), csb_rows, &job);
    return KILN_OK;
}

const struct kiln_cpu_op kiln_cpu_ops_scale_bias[] = {
    {"ScaleBias", "kiln", 1, 0, sb_run, sb_prepare, KILN_OP_INPLACE},
    {"ConcatScaleBias", "kiln", 1, 0, csb_run, sb_prepare, 0},
    {0},
};
