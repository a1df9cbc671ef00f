/* shape_ml.c: shape and type rules for the ai.onnx.ml ops kiln runs (src/cpu/ops/ml.c).
 *
 * The model ops read X as [N, F] ([F] is one row; higher ranks keep dim 0 as N), so N is
 * X[0] for rank >= 2 and 1 for rank 1. Outputs, as the kernels make them:
 *   ArrayFeatureExtractor  X's dims with the last replaced by len(Y) (1-D X: [1, len(Y)])
 *   Binarizer, Imputer     like X
 *   Scaler, Normalizer     float32, X's shape
 *   OneHotEncoder          float32 X.shape + [number of categories]
 *   CategoryMapper         X's shape; string in gives int64, int64 in gives string
 *   LabelEncoder           X's shape; opset 1 as CategoryMapper, 2+ the values_* type
 *   FeatureVectorizer      float32 [N, sum(inputdimensions)]
 *   LinearRegressor        float32 [N, targets]; SVMRegressor float32 [N, 1]
 *   TreeEnsembleRegressor  float32 [N, n_targets]; TreeEnsemble (5): X's type [N, n_targets]
 *   *Classifier            labels [N] (string with classlabels_strings, else int64) and
 *                          float32 scores [N, classes], with the column counts of the
 *                          kernels' binary conventions (one score row and two labels give 2).
 */
#include "infer/shape_nn.h"

#define ML "ai.onnx.ml"

/* Number of entries of a list attribute (0 when absent). */
static size_t attr_count(const struct kiln_ictx *c, const char *name)
{
    const struct kiln_attr *a = kiln_node_attr(c->node, name);
    return a ? a->n : 0;
}

/* N, the row count of X (unknown when X's rank is). */
static struct kiln_dim ml_rows(const struct kiln_ictx *c)
{
    int r;
    const struct kiln_dim *x;
    if (!kiln_infer_shape_of(c, 0, &r, &x)) return kiln_dim_unknown();
    return r >= 2 ? x[0] : kiln_dim_int(1);
}

/* F, the feature count of X (known only when every dim after the first is). */
static int64_t ml_features(const struct kiln_ictx *c)
{
    int r;
    const struct kiln_dim *x;
    if (!kiln_infer_shape_of(c, 0, &r, &x) || r < 1) return -1;
    if (r == 1) return kiln_dim_known(x[0]) ? x[0].value : -1;
    int64_t f = 1;
    for (int i = 1; i < r; i++) {
        if (!kiln_dim_known(x[i]) || __builtin_mul_overflow(f, x[i].value, &f)) return -1;
    }
    return f;
}

static kiln_status ml_like(struct kiln_ictx *c, kiln_dtype dt)
{
    int r;
    const struct kiln_dim *x;
    if (dt == KILN_DTYPE_UNDEFINED) dt = kiln_ic_in_dtype(c, 0);
    if (!kiln_infer_shape_of(c, 0, &r, &x)) return kiln_ic_set_tensor(c, 0, dt, -1, NULL);
    return kiln_ic_set_tensor(c, 0, dt, r, x);
}

static kiln_status same_infer(struct kiln_ictx *c)
{
    return ml_like(c, KILN_DTYPE_UNDEFINED);
}
static kiln_status float_infer(struct kiln_ictx *c)
{
    return ml_like(c, KILN_DTYPE_F32);
}

/* 2-D output o: [N, cols] of dt (cols < 0: unknown). */
static kiln_status ml_matrix(struct kiln_ictx *c, size_t o, kiln_dtype dt, int64_t cols)
{
    struct kiln_dim y[2] = {ml_rows(c), cols >= 0 ? kiln_dim_int(cols) : kiln_dim_unknown()};
    return o < c->n_out ? kiln_ic_set_tensor(c, o, dt, 2, y) : KILN_OK;
}

static kiln_status afe_infer(struct kiln_ictx *c)
{
    kiln_dtype dt = kiln_ic_in_dtype(c, 0);
    int r, ri;
    const struct kiln_dim *x, *ix;
    if (!kiln_infer_shape_of(c, 0, &r, &x)) return kiln_ic_set_tensor(c, 0, dt, -1, NULL);
    if (r < 1) {
        kiln_ic_problem(c, "input X is a scalar; expected rank >= 1");
        return KILN_OK;
    }
    struct kiln_dim n = kiln_dim_unknown(), y[KILN_MAX_RANK];
    if (kiln_infer_shape_of(c, 1, &ri, &ix)) {
        n = kiln_dim_int(1);
        for (int i = 0; i < ri; i++) n = kiln_sym_mul(c->inf, n, ix[i]);
    }
    int rank = r < 2 ? 2 : r;
    if (r == 1)
        y[0] = kiln_dim_int(1);
    else
        memcpy(y, x, (size_t)(r - 1) * sizeof *y);
    y[rank - 1] = n;
    return kiln_ic_set_tensor(c, 0, dt, rank, y);
}

static kiln_status onehot_infer(struct kiln_ictx *c)
{
    int r;
    const struct kiln_dim *x;
    const int64_t *ci;
    const struct kiln_attr *cs = kiln_node_attr(c->node, "cats_strings");
    size_t n = kiln_ic_attr_ints(c, "cats_int64s", &ci);
    if (!n && cs) n = cs->n;
    if (!kiln_infer_shape_of(c, 0, &r, &x)) return kiln_ic_set_tensor(c, 0, KILN_DTYPE_F32, -1, NULL);
    if (r + 1 > KILN_MAX_RANK) return KILN_OK;
    struct kiln_dim y[KILN_MAX_RANK];
    if (r > 0) memcpy(y, x, (size_t)r * sizeof *y);
    y[r] = kiln_dim_int((int64_t)n);
    return kiln_ic_set_tensor(c, 0, KILN_DTYPE_F32, r + 1, y);
}

/* string <-> int64 mapping (CategoryMapper, LabelEncoder 1). */
static kiln_status strmap_infer(struct kiln_ictx *c)
{
    kiln_dtype in = kiln_ic_in_dtype(c, 0);
    kiln_dtype out = in == KILN_DTYPE_STRING ? KILN_DTYPE_I64
                     : in == KILN_DTYPE_I64  ? KILN_DTYPE_STRING
                                             : KILN_DTYPE_UNDEFINED;
    if (in != KILN_DTYPE_UNDEFINED && out == KILN_DTYPE_UNDEFINED) {
        kiln_ic_problem(c, "input X must be string or int64");
        return KILN_OK;
    }
    return ml_like(c, out);
}

static kiln_status label_encoder_infer(struct kiln_ictx *c)
{
    if (c->opset < 2) return strmap_infer(c);
    kiln_dtype dt = KILN_DTYPE_UNDEFINED;
    const struct kiln_attr *t = c->opset >= 4 ? kiln_node_attr(c->node, "values_tensor") : NULL;
    if (kiln_ic_attr_has(c, "values_strings"))
        dt = KILN_DTYPE_STRING;
    else if (kiln_ic_attr_has(c, "values_int64s"))
        dt = KILN_DTYPE_I64;
    else if (kiln_ic_attr_has(c, "values_floats"))
        dt = KILN_DTYPE_F32;
    else if (t && t->t)
        dt = t->t->dtype;
    return ml_like(c, dt);
}

static kiln_status featvec_infer(struct kiln_ictx *c)
{
    const int64_t *d;
    size_t n = kiln_ic_attr_ints(c, "inputdimensions", &d);
    int64_t total = 0;
    for (size_t i = 0; i < n; i++)
        if (d[i] < 0 || __builtin_add_overflow(total, d[i], &total)) total = INT64_MIN / 2;
    if (total < 0) total = -1;
    return ml_matrix(c, 0, KILN_DTYPE_F32, n == c->n_in ? total : -1);
}

static kiln_status linreg_infer(struct kiln_ictx *c)
{
    return ml_matrix(c, 0, KILN_DTYPE_F32, kiln_ic_attr_i(c, "targets", 1));
}

static kiln_status svmreg_infer(struct kiln_ictx *c)
{
    return ml_matrix(c, 0, KILN_DTYPE_F32, 1);
}

static kiln_status tereg_infer(struct kiln_ictx *c)
{
    int64_t nt = kiln_ic_attr_i(c, "n_targets", -1);
    /* TreeEnsembleRegressor gives float32; TreeEnsemble (5) X's type */
    kiln_dtype dt = strcmp(c->node->op_type, "TreeEnsemble") ? KILN_DTYPE_F32 : kiln_ic_in_dtype(c, 0);
    return ml_matrix(c, 0, dt, nt >= 1 ? nt : -1);
}

/* Class labels: their count and the label element type. */
static size_t ml_labels(const struct kiln_ictx *c, const char *int_name, kiln_dtype *dt)
{
    const int64_t *v;
    const struct kiln_attr *s = kiln_node_attr(c->node, "classlabels_strings");
    if (s && s->n) {
        *dt = KILN_DTYPE_STRING;
        return s->n;
    }
    *dt = KILN_DTYPE_I64;
    return kiln_ic_attr_ints(c, int_name, &v);
}

static kiln_status ml_classifier_out(struct kiln_ictx *c, kiln_dtype lt, int64_t cols)
{
    struct kiln_dim n = ml_rows(c);
    KILN_TRY(kiln_ic_set_tensor(c, 0, lt, 1, &n));
    return ml_matrix(c, 1, KILN_DTYPE_F32, cols);
}

static kiln_status linclass_infer(struct kiln_ictx *c)
{
    kiln_dtype lt;
    size_t nl = ml_labels(c, "classlabels_ints", &lt);
    size_t nw = attr_count(c, "coefficients"), nb = attr_count(c, "intercepts");
    int64_t f = ml_features(c), nc = nb ? (int64_t)nb : f > 0 && nw % (size_t)f == 0 ? (int64_t)nw / f : -1;
    int64_t cols = nc == 1 && nl == 2 ? 2 : nc;
    return ml_classifier_out(c, lt, cols);
}

static kiln_status svmclass_infer(struct kiln_ictx *c)
{
    kiln_dtype lt;
    size_t nl = ml_labels(c, "classlabels_ints", &lt);
    const int64_t *vpc;
    size_t nvpc = kiln_ic_attr_ints(c, "vectors_per_class", &vpc), nvec = 0;
    for (size_t i = 0; i < nvpc; i++) nvec += vpc[i] > 0 ? (size_t)vpc[i] : 0;
    size_t kc = nl > 1 ? nl : 1, npairs = kc * (kc - 1) / 2;
    size_t nrho = attr_count(c, "rho"), na = attr_count(c, "prob_a");
    bool svc = nvec > 0, proba = svc && na > 0;
    size_t nraw = proba ? kc : svc ? npairs : kc;
    bool probit = !strcmp(kiln_ic_attr_s(c, "post_transform", "NONE"), "PROBIT");
    bool two_col = nraw == 1 && nrho == 1 && nl == 2 && !probit;
    return ml_classifier_out(c, lt, two_col ? 2 : (int64_t)nraw);
}

static kiln_status teclass_infer(struct kiln_ictx *c)
{
    kiln_dtype lt;
    size_t nl = ml_labels(c, "classlabels_int64s", &lt);
    const int64_t *cids;
    size_t ncid = kiln_ic_attr_ints(c, "class_ids", &cids);
    bool binary = ncid > 0 && nl <= 2;
    for (size_t j = 1; j < ncid && binary; j++) binary = cids[j] == cids[0];
    return ml_classifier_out(c, lt, binary ? 2 : (int64_t)nl);
}

const struct kiln_infer_op kiln_infer_ops_ml[] = {
    {"ArrayFeatureExtractor", ML, 1, 0, afe_infer},
    {"Binarizer", ML, 1, 0, same_infer},
    {"CategoryMapper", ML, 1, 0, strmap_infer},
    {"FeatureVectorizer", ML, 1, 0, featvec_infer},
    {"Imputer", ML, 1, 0, same_infer},
    {"LabelEncoder", ML, 1, 0, label_encoder_infer},
    {"LinearClassifier", ML, 1, 0, linclass_infer},
    {"LinearRegressor", ML, 1, 0, linreg_infer},
    {"Normalizer", ML, 1, 0, float_infer},
    {"OneHotEncoder", ML, 1, 0, onehot_infer},
    {"Scaler", ML, 1, 0, float_infer},
    {"SVMClassifier", ML, 1, 0, svmclass_infer},
    {"SVMRegressor", ML, 1, 0, svmreg_infer},
    {"TreeEnsemble", ML, 5, 0, tereg_infer},
    {"TreeEnsembleClassifier", ML, 1, 4, teclass_infer},
    {"TreeEnsembleRegressor", ML, 1, 4, tereg_infer},
    {0},
};
