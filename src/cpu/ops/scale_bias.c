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
    if (s->rank != 1 || b->rank != 1 || s->dims[0] != c || b->dims[0] != c)
        return kiln_kfail(k, KILN_E_INVALID_ARG,
                          "inputs S and B have %lld and %lld values (ranks %d, %d); expected 1-D of "
                          "X's last dim %lld",
                          (long long)(s->rank ? s->dims[0] : 1), (long long)(b->rank ? b->dims[0] : 1),
                          s->rank, b->rank, (long long)c);
    struct kiln_tensor *y;
    KILN_TRY(kiln_out_tensor_raw(k, 0, KILN_DTYPE_F32, x->rank, x->dims, &y));
    size_t n = kiln_tensor_numel(x);
    if (!n) return KILN_OK;
    struct sb_job job = {&st->act, x->data, s->data, b->data, y->data, (size_t)c};
    size_t rows = n / (size_t)c;
    kiln_pool_for(k->pool, rows, kiln_pool_grain((size_t)c, 16384), sb_rows, &job);
    return KILN_OK;
}

const struct kiln_cpu_op kiln_cpu_ops_scale_bias[] = {
    {"ScaleBias", "kiln", 1, 0, sb_run, sb_prepare, KILN_OP_INPLACE},
    {0},
};
