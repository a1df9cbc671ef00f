/* shape_misc.c: shape-inference rules for src/cpu/ops/misc.c (NonMaxSuppression; BitCast is
 * in shape_elementwise.c), training.c, random.c and text.c (family `misc`).
 *
 * NonMaxSuppression (10, 11): selected_indices int64 [k, 3], k a fresh data-dependent symbol.
 * Adagrad, Momentum, Adam (ai.onnx.preview.training 1): inputs R, T, X[n], G[n] and one
 *   (Adagrad: H; Momentum: V) or two (Adam: V, H) state groups; outputs X_new[n] then each
 *   state group's new values, each with its X's shape and its own input's type.
 * RandomUniform/RandomNormal: `shape`, `dtype` (default float). The *Like ops and Bernoulli:
 *   input 0's shape, `dtype` when given, else input 0's type. Multinomial: [batch,
 *   sample_size] of `dtype` (default int32).
 * StringNormalizer (10): [C] or [1, C] string; without stopwords C is kept, else the count
 *   is data-dependent (a fresh symbol). StringConcat (20): the broadcast of X and Y, string.
 *   StringSplit (20): Y string X.dims + [k] (k data-dependent), Z int64 X's shape.
 *   RegexFullMatch (20): bool of X's shape. TfIdfVectorizer (9): float [max(ngram_indexes)
 *   + 1] or [N, that].
 */
#include "infer/rule_util.h"

/* ------------------------------------------------------------------ misc.c */

static kiln_status rule_nms(struct kiln_ictx *c)
{
    struct kiln_dim d[2] = {kiln_sym_fresh(c->inf, "NonMaxSuppression"), kiln_dim_int(3)};
    return ru_set(c, 0, KILN_DTYPE_I64, 2, d, true);
}

/* ------------------------------------------------------------------ training.c */

static kiln_status optimizer(struct kiln_ictx *c, size_t ns)
{
    if (c->n_in < 2 || (c->n_in - 2) % (2 + ns) != 0) {
        kiln_ic_problem(c, "%zu inputs; expected R, T and %zu groups of n tensors", c->n_in, 2 + ns);
        return KILN_OK;
    }
    size_t n = (c->n_in - 2) / (2 + ns);
    if (c->n_out != (1 + ns) * n) {
        kiln_ic_problem(c, "%zu outputs; expected %zu for %zu tensors", c->n_out, (1 + ns) * n, n);
        return KILN_OK;
    }
    for (size_t g = 0; g < n; g++) {
        KILN_TRY(ru_like(c, g, 2 + g, KILN_DTYPE_UNDEFINED));
        for (size_t s = 0; s < ns; s++) {
            size_t in = 2 + (2 + s) * n + g, o = (1 + s) * n + g;
            int r;
            const struct kiln_dim *d;
            kiln_dtype dt = kiln_ic_in_dtype(c, in);
            /* the state's new value has X's shape (they must agree) and the state's type */
            if (ru_shape(c, 2 + g, &r, &d))
                KILN_TRY(ru_set(c, o, dt, r, d, false));
            else
                KILN_TRY(ru_like(c, o, in, KILN_DTYPE_UNDEFINED));
        }
    }
    return KILN_OK;
}

static kiln_status rule_adagrad(struct kiln_ictx *c)
{
    return optimizer(c, 1);
}
static kiln_status rule_momentum(struct kiln_ictx *c)
{
    return optimizer(c, 1);
}
static kiln_status rule_adam(struct kiln_ictx *c)
{
    return optimizer(c, 2);
}

/* ------------------------------------------------------------------ random.c */

/* The `dtype` attribute, or def when absent; UNDEFINED (with a problem) when invalid. */
static kiln_dtype dtype_attr(struct kiln_ictx *c, kiln_dtype def)
{
    if (!kiln_ic_attr_has(c, "dtype")) return def;
    int64_t v = kiln_ic_attr_i(c, "dtype", 0);
    if (v != (int)v || !kiln_dtype_valid((int)v)) {
        kiln_ic_problem(c, "dtype %lld is not a data type", (long long)v);
        return KILN_DTYPE_UNDEFINED;
    }
    return (kiln_dtype)v;
}

static kiln_status rule_random(struct kiln_ictx *c)
{
    kiln_dtype dt = dtype_attr(c, KILN_DTYPE_F32);
    const int64_t *s;
    size_t n = kiln_ic_attr_ints(c, "shape", &s);
    if (dt == KILN_DTYPE_UNDEFINED) return KILN_OK;
    if (!kiln_ic_attr_has(c, "shape")) {
        kiln_ic_problem(c, "attribute 'shape' is required");
        return KILN_OK;
    }
    if (n > KILN_MAX_RANK) {
        kiln_ic_problem(c, "shape has %zu dims; at most %d are supported", n, KILN_MAX_RANK);
        return KILN_OK;
    }
    struct kiln_dim d[KILN_MAX_RANK];
    for (size_t i = 0; i < n; i++) {
        if (s[i] < 0) {
            kiln_ic_problem(c, "shape[%zu] is %lld", i, (long long)s[i]);
            return KILN_OK;
        }
        d[i] = kiln_dim_int(s[i]);
    }
    return ru_set(c, 0, dt, (int)n, d, false);
}

static kiln_status rule_random_like(struct kiln_ictx *c)
{
    kiln_dtype dt = dtype_attr(c, kiln_ic_in_dtype(c, 0));
    if (kiln_ic_attr_has(c, "dtype") && dt == KILN_DTYPE_UNDEFINED) return KILN_OK;
    return ru_like_dt(c, 0, 0, dt);
}

static kiln_status rule_multinomial(struct kiln_ictx *c)
{
    kiln_dtype dt = dtype_attr(c, KILN_DTYPE_I32);
    if (dt == KILN_DTYPE_UNDEFINED) return KILN_OK;
    int64_t ns = kiln_ic_attr_i(c, "sample_size", 1);
    int r;
    const struct kiln_dim *d;
    struct kiln_dim out[2] = {kiln_dim_unknown(), kiln_dim_int(ns >= 0 ? ns : 0)};
    if (ru_shape(c, 0, &r, &d)) {
        if (r != 2) {
            kiln_ic_problem(c, "input has %d dims; expected 2 (batch_size, class_size)", r);
            return KILN_OK;
        }
        out[0] = d[0];
    }
    if (ns < 1) {
        kiln_ic_problem(c, "sample_size is %lld; expected >= 1", (long long)ns);
        return KILN_OK;
    }
    return ru_set(c, 0, dt, 2, out, false);
}

/* ------------------------------------------------------------------ text.c */

static kiln_status rule_strnorm(struct kiln_ictx *c)
{
    int r;
    const struct kiln_dim *d;
    if (!ru_shape(c, 0, &r, &d)) return ru_set(c, 0, KILN_DTYPE_STRING, -1, NULL, false);
    if (!(r == 1 || (r == 2 && !kiln_dim_ne(d[0], kiln_dim_int(1))))) {
        kiln_ic_problem(c, "input X must be [C] or [1, C]; got rank %d", r);
        return KILN_OK;
    }
    const struct kiln_attr *a = kiln_node_attr(c->node, "stopwords");
    struct kiln_dim out[2] = {kiln_dim_int(1), d[r - 1]};
    bool dd = false;
    if (a && a->n > 0) {
        out[1] = kiln_sym_fresh(c->inf, "StringNormalizer");
        dd = true;
    } else if (kiln_dim_known(d[r - 1]) && d[r - 1].value == 0) {
        out[1] = kiln_dim_int(1); /* nothing left: one empty string */
    }
    return ru_set(c, 0, KILN_DTYPE_STRING, r, r == 2 ? out : out + 1, dd);
}

static kiln_status rule_strconcat(struct kiln_ictx *c)
{
    int ra, rb, r;
    const struct kiln_dim *a, *b;
    struct kiln_dim out[KILN_MAX_RANK];
    bool dd = false;
    if (!ru_shape(c, 0, &ra, &a) || !ru_shape(c, 1, &rb, &b))
        return ru_set(c, 0, KILN_DTYPE_STRING, -1, NULL, dd);
    if (!ru_bcast(c, "X and Y", ra, a, rb, b, &r, out)) return KILN_OK;
    return ru_set(c, 0, KILN_DTYPE_STRING, r, out, dd);
}

static kiln_status rule_strsplit(struct kiln_ictx *c)
{
    int r;
    const struct kiln_dim *d;
    if (!ru_shape(c, 0, &r, &d)) {
        KILN_TRY(ru_set(c, 0, KILN_DTYPE_STRING, -1, NULL, true));
        if (c->n_out > 1) KILN_TRY(ru_set(c, 1, KILN_DTYPE_I64, -1, NULL, false));
        return KILN_OK;
    }
    if (r >= KILN_MAX_RANK) return KILN_OK;
    struct kiln_dim out[KILN_MAX_RANK];
    if (r > 0) memcpy(out, d, (size_t)r * sizeof *out);
    out[r] = kiln_sym_fresh(c->inf, "StringSplit");
    KILN_TRY(ru_set(c, 0, KILN_DTYPE_STRING, r + 1, out, true));
    if (c->n_out > 1) KILN_TRY(ru_like(c, 1, 0, KILN_DTYPE_I64));
    return KILN_OK;
}

static kiln_status rule_regex(struct kiln_ictx *c)
{
    return ru_like(c, 0, 0, KILN_DTYPE_BOOL);
}

static kiln_status rule_tfidf(struct kiln_ictx *c)
{
    const int64_t *idx;
    size_t n = kiln_ic_attr_ints(c, "ngram_indexes", &idx);
    int64_t len = 0;
    for (size_t i = 0; i < n; i++) {
        if (idx[i] < 0 || idx[i] >= (int64_t)KILN_MAX_NUMEL) {
            kiln_ic_problem(c, "ngram_indexes[%zu] is %lld", i, (long long)idx[i]);
            return KILN_OK;
        }
        if (idx[i] + 1 > len) len = idx[i] + 1;
    }
    int r;
    const struct kiln_dim *d;
    if (!ru_shape(c, 0, &r, &d)) return ru_set(c, 0, KILN_DTYPE_F32, -1, NULL, false);
    if (r != 1 && r != 2) {
        kiln_ic_problem(c, "input has %d dims; expected 1 or 2", r);
        return KILN_OK;
    }
    struct kiln_dim out[2] = {r == 2 ? d[0] : kiln_dim_int(len), kiln_dim_int(len)};
    return ru_set(c, 0, KILN_DTYPE_F32, r, out, false);
}

#define TRAINING "ai.onnx.preview.training"

const struct kiln_infer_op kiln_infer_ops_misc[] = {
    {"NonMaxSuppression", "", 10, 0, rule_nms},
    /* training.c */
    {"Adagrad", TRAINING, 1, 0, rule_adagrad},
    {"Momentum", TRAINING, 1, 0, rule_momentum},
    {"Adam", TRAINING, 1, 0, rule_adam},
    /* random.c */
    {"RandomUniform", "", 1, 0, rule_random},
    {"RandomNormal", "", 1, 0, rule_random},
    {"RandomUniformLike", "", 1, 0, rule_random_like},
    {"RandomNormalLike", "", 1, 0, rule_random_like},
    {"Bernoulli", "", 15, 0, rule_random_like},
    {"Multinomial", "", 7, 0, rule_multinomial},
    /* text.c */
    {"StringNormalizer", "", 10, 0, rule_strnorm},
    {"StringConcat", "", 20, 0, rule_strconcat},
    {"StringSplit", "", 20, 0, rule_strsplit},
    {"RegexFullMatch", "", 20, 0, rule_regex},
    {"TfIdfVectorizer", "", 9, 0, rule_tfidf},
    {NULL, NULL, 0, 0, NULL},
};
