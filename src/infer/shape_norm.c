/* shape_norm.c: shape-inference rules for src/cpu/ops/softmax.c and norm.c (family `norm`).
 *
 * Softmax, LogSoftmax, Hardmax (1, 11, 13), InstanceNormalization, GroupNormalization,
 * RMSNormalization, MeanVarianceNormalization, LRN, LpNormalization: Y has X's type (the axis
 * is checked against X's rank). BatchNormalization: Y like X; outputs 1..4 (running
 * mean/var, saved mean/var; opset 14+ has only running mean/var) take the shape and type of
 * input mean (outputs 1, 3) and var (outputs 2, 4). LayerNormalization (17): Y like X; Mean
 * and InvStdDev are X.dims[:axis] + [1] * (rank - axis) of the `stash_type` type (default
 * float). Dropout: output like X; the mask is bool from opset 10, X's type before. Also
 * checked: InstanceNormalization's scale/B length against X's channels, and
 * GroupNormalization's num_groups dividing them.
 *
 * NegativeLogLikelihoodLoss (12+) and SoftmaxCrossEntropyLoss (12+): input/scores (N, C,
 * d1..dk), target/labels (N, d1..dk); the loss is the target's shape with reduction "none",
 * a scalar with "mean" (default) or "sum", of the input's type; SoftmaxCrossEntropyLoss's
 * log_prob (output 1) has the scores' type and shape.
 */
#include "infer/rule_util.h"

static kiln_status rule_like_x(struct kiln_ictx *c)
{
    return ru_like(c, 0, 0, KILN_DTYPE_UNDEFINED);
}

/* Y like X after checking attribute `name` (default def) as an axis of X. */
static kiln_status like_x_axis(struct kiln_ictx *c, const char *name, int64_t def)
{
    int r = kiln_ic_in_rank(c, 0), a;
    if (r >= 1 && !kiln_ic_axis(c, kiln_ic_attr_i(c, name, def), r, &a)) return KILN_OK;
    return ru_like(c, 0, 0, KILN_DTYPE_UNDEFINED);
}

static kiln_status rule_softmax(struct kiln_ictx *c)
{
    /* before 13 the axis only splits X into 2-D (it may equal the rank): not checked */
    if (c->opset < 13 || kiln_ic_in_rank(c, 0) == 0) return ru_like(c, 0, 0, KILN_DTYPE_UNDEFINED);
    return like_x_axis(c, "axis", -1);
}

static kiln_status rule_lpnorm(struct kiln_ictx *c)
{
    return like_x_axis(c, "axis", -1);
}

/* X's channel count (dim 1) when known; -1 otherwise. */
static int64_t channels(const struct kiln_ictx *c)
{
    int r;
    const struct kiln_dim *d;
    if (!ru_shape(c, 0, &r, &d) || r < 2 || !kiln_dim_known(d[1])) return -1;
    return d[1].value;
}

/* InstanceNormalization: scale and B hold one value per channel. */
static kiln_status rule_instnorm(struct kiln_ictx *c)
{
    int64_t ch = channels(c);
    for (size_t i = 1; i < 3 && i < c->n_in; i++) {
        int r;
        const struct kiln_dim *d;
        if (ch >= 0 && ru_shape(c, i, &r, &d) && r == 1 && kiln_dim_known(d[0]) && d[0].value != ch) {
            kiln_ic_problem(c, "input %zu has %lld values for %lld channels", i, (long long)d[0].value,
                            (long long)ch);
            return KILN_OK;
        }
    }
    return ru_like(c, 0, 0, KILN_DTYPE_UNDEFINED);
}

/* GroupNormalization: num_groups divides the channels. */
static kiln_status rule_groupnorm(struct kiln_ictx *c)
{
    int64_t g = kiln_ic_attr_i(c, "num_groups", 0), ch = channels(c);
    if (g < 1 || (ch >= 0 && ch % g != 0)) {
        kiln_ic_problem(c, "num_groups %lld does not divide %lld channels", (long long)g, (long long)ch);
        return KILN_OK;
    }
    return ru_like(c, 0, 0, KILN_DTYPE_UNDEFINED);
}

static kiln_status rule_batchnorm(struct kiln_ictx *c)
{
    KILN_TRY(ru_like(c, 0, 0, KILN_DTYPE_UNDEFINED));
    for (size_t o = 1; o < c->n_out && o <= 4; o++) {
        size_t like = o == 1 || o == 3 ? 3 : 4;
        if (like < c->n_in && kiln_ic_in(c, like)) KILN_TRY(ru_like(c, o, like, KILN_DTYPE_UNDEFINED));
    }
    return KILN_OK;
}

static kiln_status rule_layernorm(struct kiln_ictx *c)
{
    int r;
    const struct kiln_dim *d;
    bool dd = false;
    int64_t stash = kiln_ic_attr_i(c, "stash_type", KILN_DTYPE_F32);
    kiln_dtype sdt =
        kiln_dtype_valid((int)stash) && stash == (int)stash ? (kiln_dtype)stash : KILN_DTYPE_UNDEFINED;
    if (!ru_shape(c, 0, &r, &d)) {
        KILN_TRY(ru_like(c, 0, 0, KILN_DTYPE_UNDEFINED));
        for (size_t o = 1; o < c->n_out && o <= 2; o++)
            if (sdt != KILN_DTYPE_UNDEFINED) KILN_TRY(ru_set(c, o, sdt, -1, NULL, dd));
        return KILN_OK;
    }
    int axis;
    if (!kiln_ic_axis(c, kiln_ic_attr_i(c, "axis", -1), r, &axis)) return KILN_OK;
    KILN_TRY(ru_like(c, 0, 0, KILN_DTYPE_UNDEFINED));
    struct kiln_dim s[KILN_MAX_RANK];
    for (int k = 0; k < r; k++) s[k] = k < axis ? d[k] : kiln_dim_int(1);
    for (size_t o = 1; o < c->n_out && o <= 2; o++) KILN_TRY(ru_set(c, o, sdt, r, s, dd));
    return KILN_OK;
}

static kiln_status rule_rmsnorm(struct kiln_ictx *c)
{
    return like_x_axis(c, "axis", -1);
}

static kiln_status rule_dropout(struct kiln_ictx *c)
{
    KILN_TRY(ru_like(c, 0, 0, KILN_DTYPE_UNDEFINED));
    if (c->n_out > 1) KILN_TRY(ru_like(c, 1, 0, c->opset >= 10 ? KILN_DTYPE_BOOL : KILN_DTYPE_UNDEFINED));
    return KILN_OK;
}

/* The losses: loss (output 0) and, for SoftmaxCrossEntropyLoss, log_prob (output 1). */
static kiln_status rule_loss(struct kiln_ictx *c)
{
    const char *red = kiln_ic_attr_s(c, "reduction", "mean");
    bool none = strcmp(red, "none") == 0;
    if (!none && strcmp(red, "mean") != 0 && strcmp(red, "sum") != 0) {
        kiln_ic_problem(c, "attribute 'reduction' is \"%s\"; expected none, sum or mean", red);
        return KILN_OK;
    }
    kiln_dtype dt = kiln_ic_in_dtype(c, 0);
    int rx = -1, rt = -1;
    const struct kiln_dim *dx = NULL, *dt_dims = NULL;
    bool hx = ru_shape(c, 0, &rx, &dx), ht = ru_shape(c, 1, &rt, &dt_dims);
    if (hx && ht) {
        bool bad = rx < 2 || rt != rx - 1 || kiln_dim_ne(dx[0], dt_dims[0]);
        for (int k = 2; !bad && k < rx; k++) bad = kiln_dim_ne(dx[k], dt_dims[k - 1]);
        if (bad) {
            kiln_ic_problem(c, "target's shape does not match input's (N, C, d1..dk) less C");
            return KILN_OK;
        }
    }
    if (c->n_out > 1 && kiln_ic_in(c, 0)) KILN_TRY(ru_like(c, 1, 0, KILN_DTYPE_UNDEFINED));
    if (!none) return dt == KILN_DTYPE_UNDEFINED ? KILN_OK : ru_set(c, 0, dt, 0, NULL, false);
    if (ht) {
        /* the target's dims, refined by the input's where the target's are not known */
        struct kiln_dim out[KILN_MAX_RANK];
        for (int k = 0; k < rt; k++) {
            out[k] = dt_dims[k];
            int kx = k == 0 ? 0 : k + 1;
            if (!kiln_dim_defined(out[k]) && hx && kx < rx) out[k] = dx[kx];
        }
        return ru_set(c, 0, dt, rt, out, false);
    }
    if (hx && rx >= 2) {
        struct kiln_dim out[KILN_MAX_RANK];
        out[0] = dx[0];
        for (int k = 2; k < rx; k++) out[k - 1] = dx[k];
        return ru_set(c, 0, dt, rx - 1, out, false);
    }
    return dt == KILN_DTYPE_UNDEFINED ? KILN_OK : ru_set(c, 0, dt, -1, NULL, false);
}

const struct kiln_infer_op kiln_infer_ops_norm[] = {
    /* softmax.c */
    {"Softmax", "", 1, 0, rule_softmax},
    {"LogSoftmax", "", 1, 0, rule_softmax},
    {"Hardmax", "", 1, 0, rule_softmax},
    {"NegativeLogLikelihoodLoss", "", 12, 0, rule_loss},
    {"SoftmaxCrossEntropyLoss", "", 12, 0, rule_loss},
    /* norm.c */
    {"BatchNormalization", "", 1, 0, rule_batchnorm},
    {"InstanceNormalization", "", 1, 0, rule_instnorm},
    {"LayerNormalization", "", 1, 0, rule_layernorm},
    {"RMSNormalization", "", 1, 0, rule_rmsnorm},
    {"GroupNormalization", "", 1, 0, rule_groupnorm},
    {"MeanVarianceNormalization", "", 1, 0, rule_like_x},
    {"LRN", "", 1, 0, rule_like_x},
    {"LpNormalization", "", 1, 0, rule_lpnorm},
    {"Dropout", "", 1, 0, rule_dropout},
    {NULL, NULL, 0, 0, NULL},
};
