/* src/cpu/ops/ml.c: the ai.onnx.ml operators (scikit-learn style models), ai.onnx.ml opsets
 * 1..5, following docs/Operators-ml.md and, where it is silent, the ONNX reference runtime
 * (onnx/reference/ops/aionnxml) and onnxruntime.
 *
 * Ops: ArrayFeatureExtractor, Binarizer, CategoryMapper, FeatureVectorizer, Imputer,
 * LabelEncoder (1, 2, 4), LinearClassifier, LinearRegressor, Normalizer, OneHotEncoder,
 * Scaler, SVMClassifier, SVMRegressor, TreeEnsembleClassifier and TreeEnsembleRegressor (1, 3)
 * and TreeEnsemble (5). ZipMap, DictVectorizer and CastMap (maps) are out of scope.
 *
 * Conventions shared by the model ops:
 * - X is [N, F] or [F] (read as [1, F]); numeric inputs are read as double. Scores are
 *   computed in double and stored as float32 unless the op says otherwise.
 * - post_transform: NONE; SOFTMAX (row-wise, max subtracted); LOGISTIC (1 / (1 + e^-x),
 *   element-wise); SOFTMAX_ZERO (like SOFTMAX but entries with |x| <= 1e-7 stay 0, and a
 *   row summing to 0 becomes 0.5 everywhere); PROBIT (sqrt(2) * erfinv(2x - 1) with the
 *   same closed-form erfinv approximation as the reference and onnxruntime).
 * - Classifier labels are argmax of the transformed scores (first maximum wins), mapped
 *   through classlabels_int64s / classlabels_ints or classlabels_strings (the output dtype
 *   follows which one is present; with neither, the class index is returned as int64).
 * - Normalizer follows the reference and scikit-learn: MAX divides by max |x|, L1 by sum |x|,
 *   L2 by sqrt(sum x^2) (sign kept); a zero divisor leaves the row unchanged.
 *
 * Trees: every ensemble is compiled into one flat node array (leaves included) which is
 * checked before any row is evaluated: child and feature indices in range, votes pointing
 * at existing leaves and target/class ids in range, and no cycle (Kahn's algorithm), so a
 * hostile model can neither read out of bounds nor loop. A NaN feature follows the true
 * branch when nodes_missing_value_tracks_true says so, else the plain IEEE comparison
 * (false except for BRANCH_NEQ). Thresholds and set members are rounded to the input's
 * precision (float unless X is double), as onnxruntime compares in the input type. MIN/MAX
 * aggregation leaves a target no leaf voted for at 0 (plus its base value).
 *
 * Prepare decodes every op's attributes once and does the work that depends on them alone:
 * the tree ensembles compile their forest (node and vote arrays, thresholds rounded both
 * to float and to double, the cycle check), LabelEncoder sorts its keys,
 * CategoryMapper, LabelEncoder-1 and OneHotEncoder build sorted lookup tables of their
 * categories, and the post transform, class labels and SVM kernel are parsed. What is
 * wrong with the attributes is reported by run, at the point and with the message it had
 * before (after the checks of X, and before or after the checks that need X's shape, as the
 * op had it); only running out of memory fails prepare itself.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/kernel.h"

#define ML_DOMAIN "ai.onnx.ml"

/* ------------------------------------------------------------------ shared helpers */

/* Sets string element i of t to a copy of s. */
static kiln_status set_str(struct kiln_kctx *k, struct kiln_tensor *t, size_t i, const char *s)
{
    size_t n = strlen(s);
    char *c = kiln_malloc(n + 1);
    if (!c) return kiln_kfail(k, KILN_E_NOMEM, "out of memory for a string of %zu bytes", n);
    memcpy(c, s, n + 1);
    ((char **)t->data)[i] = c;
    return KILN_OK;
}

static const char *str_at(const struct kiln_tensor *t, size_t i)
{
    const char *s = ((char *const *)t->data)[i];
    return s ? s : "";
}

static bool is_num_input(kiln_dtype dt)
{
    return dt == KILN_DTYPE_F32 || dt == KILN_DTYPE_F64 || dt == KILN_DTYPE_I64 || dt == KILN_DTYPE_I32;
}

/* Scratch array of count elements of size bytes each, overflow-checked. */
static kiln_status scratch_array(struct kiln_kctx *k, size_t count, size_t size, void **p)
{
    size_t bytes;
    if (!kiln_mul_size(count, size, &bytes) || !kiln_add_size(bytes, 16, &bytes))
        return kiln_kfail(k, KILN_E_LIMIT, "scratch array of %zu x %zu bytes overflows", count, size);
    return kiln_scratch(k, bytes, p);
}

/* Memory of prepare: kept (kiln_kprep_alloc, living as long as the engine) or temporary
 * (heap, freed by pm_free when prepare ends). */
struct pmem {
    struct kiln_kprep *p;
    void *tmp[8];
    int n_tmp;
};

/* An array of count elements of size bytes each (zeroed, overflow-checked; the message is
 * the one run's scratch arrays had). */
static kiln_status pm_array(struct pmem *m, size_t count, size_t size, bool keep, void **out)
{
    struct kiln_kctx *k = &m->p->kc;
    size_t bytes;
    *out = NULL;
    if (!kiln_mul_size(count, size, &bytes) || !kiln_add_size(bytes, 16, &bytes))
        return kiln_kfail(k, KILN_E_LIMIT, "scratch array of %zu x %zu bytes overflows", count, size);
    if (keep) return kiln_kprep_alloc(m->p, bytes, out);
    if (m->n_tmp == (int)(sizeof m->tmp / sizeof m->tmp[0]))
        return kiln_kfail(k, KILN_E_INTERNAL, "ml.c: too many temporary arrays in prepare");
    void *q = kiln_calloc(1, bytes);
    if (!q) return kiln_kfail(k, KILN_E_NOMEM, "out of memory preparing the kernel (%zu bytes)", bytes);
    m->tmp[m->n_tmp++] = q;
    *out = q;
    return KILN_OK;
}

static void pm_free(struct pmem *m)
{
    for (int i = 0; i < m->n_tmp; i++) kiln_free(m->tmp[i]);
    m->n_tmp = 0;
}

/* Checks of prepare whose failure run reports: between capture_begin and capture_end,
 * messages made through p->kc go to c->e instead of the caller's err. */
struct capture {
    kiln_err e;
    kiln_err *real;
};

static void capture_begin(struct kiln_kprep *p, struct capture *c)
{
    memset(&c->e, 0, sizeof c->e);
    c->real = p->kc.err;
    p->kc.err = &c->e;
}

/* Ends the capture of the checks that gave st: *kept = st with its message in *msg (a
 * failure to report at run); fails only when memory ran out. */
static kiln_status capture_end(struct kiln_kprep *p, struct capture *c, kiln_status st, kiln_status *kept,
                               const char **msg)
{
    p->kc.err = c->real;
    *kept = st;
    return kiln_cpu_prep_keep(p, st, &c->e, msg);
}

/* Reports a failure prepare kept (its message already names the node). */
static kiln_status kept_fail(struct kiln_kctx *k, kiln_status st, const char *msg)
{
    return kiln_err_set(k->err, st, "%s", msg);
}

/* Reads input 0 as an [N, F] matrix of doubles (rank 1 is [1, F]; rank > 2 keeps dim 0 as N
 * and flattens the rest). Refuses dtypes outside float/double/int64/int32 (and float16 when
 * allow_f16). On KILN_OK *out is scratch memory holding N * F values. */
static kiln_status read_matrix(struct kiln_kctx *k, const struct kiln_tensor *x, bool allow_f16,
                               size_t *n, size_t *f, double **out)
{
    if (!is_num_input(x->dtype) && !(allow_f16 && x->dtype == KILN_DTYPE_F16))
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "input X is %s; expected float, double, int64 or int32",
                          kiln_dtype_name(x->dtype));
    if (x->rank < 1)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input X is a scalar; expected [N, F] or [F]");
    size_t total = kiln_tensor_numel(x);
    if (x->rank == 1) {
        *n = 1;
        *f = (size_t)x->dims[0];
    } else {
        *n = (size_t)x->dims[0];
        size_t ff = 1;
        for (int i = 1; i < x->rank; i++) ff *= (size_t)x->dims[i]; /* numel bounds the product */
        *f = ff;
    }
    double *d;
    KILN_TRY(scratch_array(k, total, sizeof *d, (void **)&d));
    switch (x->dtype) {
    case KILN_DTYPE_F32:
        for (size_t i = 0; i < total; i++) d[i] = ((const float *)x->data)[i];
        break;
    case KILN_DTYPE_F64: if (total) memcpy(d, x->data, total * sizeof *d); break;
    default:
        for (size_t i = 0; i < total; i++) d[i] = kiln_tensor_get_f64(x, i);
        break;
    }
    *out = d;
    return KILN_OK;
}

/* Reads required input 0 through read_matrix (no float16) into *d ([*n, *f]); *x (when not
 * NULL) receives the tensor. */
static kiln_status read_x(struct kiln_kctx *k, const struct kiln_tensor **x, size_t *n, size_t *f,
                          double **d)
{
    const struct kiln_tensor *t;
    KILN_TRY(kiln_in_req(k, 0, &t));
    if (x) *x = t;
    return read_matrix(k, t, false, n, f, d);
}

/* A float list attribute, or its double tensor twin `<name>_as_tensor` (TreeEnsemble* v3)
 * when present, as doubles in m's memory (kept or not). *n = 0 and *out = NULL when neither
 * is set. */
static kiln_status attr_doubles(struct pmem *m, const char *name, bool keep, double **out, size_t *n)
{
    struct kiln_kctx *k = &m->p->kc;
    char tname[96];
    snprintf(tname, sizeof tname, "%s_as_tensor", name);
    const struct kiln_tensor *t = kiln_attr_t(k, tname);
    const float *fl;
    size_t cnt = t ? kiln_tensor_numel(t) : kiln_attr_floats(k, name, &fl);
    *out = NULL;
    *n = cnt;
    if (t && !(kiln_dtype_is_float(t->dtype) || kiln_dtype_is_int(t->dtype)))
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "attribute '%s' is a %s tensor; expected double",
                          tname, kiln_dtype_name(t->dtype));
    if (!cnt) return KILN_OK;
    double *d;
    KILN_TRY(pm_array(m, cnt, sizeof *d, keep, (void **)&d));
    for (size_t i = 0; i < cnt; i++) d[i] = t ? kiln_tensor_get_f64(t, i) : fl[i];
    *out = d;
    return KILN_OK;
}

/* ------------------------------------------------------------------ post transforms */

enum post { POST_NONE, POST_SOFTMAX, POST_LOGISTIC, POST_SOFTMAX_ZERO, POST_PROBIT };

static kiln_status post_parse(struct kiln_kctx *k, int *pt)
{
    static const char *const names[] = {"NONE", "SOFTMAX", "LOGISTIC", "SOFTMAX_ZERO", "PROBIT"};
    const char *s = kiln_attr_s(k, "post_transform", "NONE");
    for (int i = 0; i < 5; i++)
        if (strcmp(s, names[i]) == 0) {
            *pt = i;
            return KILN_OK;
        }
    return kiln_kfail(k, KILN_E_INVALID_MODEL,
                      "post_transform '%s'; expected NONE, SOFTMAX, LOGISTIC, SOFTMAX_ZERO or PROBIT", s);
}

static double logistic(double v)
{
    /* Split by sign so exp never overflows. */
    if (v >= 0) return 1.0 / (1.0 + exp(-v));
    double e = exp(v);
    return e / (1.0 + e);
}

/* The closed-form erfinv approximation (Winitzki, a = 0.147) the reference and onnxruntime
 * use, so PROBIT scores agree with theirs to float precision. */
static double erfinv_approx(double x)
{
    double sgn = x < 0 ? -1.0 : 1.0;
    x = (1.0 - x) * (1.0 + x);
    if (x == 0) return 0;
    double lg = log(x);
    double v = 2.0 / (3.14159265358979323846 * 0.147) + 0.5 * lg;
    double v2 = 1.0 / 0.147 * lg;
    return sgn * sqrt(-v + sqrt(v * v - v2));
}

static double probit(double v) { return 1.41421356 * erfinv_approx(v * 2 - 1); }

static void softmax_row(double *v, size_t n, bool zero)
{
    if (!n) return;
    double mx = v[0], s = 0;
    for (size_t i = 1; i < n; i++)
        if (v[i] > mx) mx = v[i];
    for (size_t i = 0; i < n; i++) {
        if (zero && v[i] <= 1e-7 && v[i] >= -1e-7) v[i] = 0;
        else v[i] = exp(v[i] - mx);
        s += v[i];
    }
    for (size_t i = 0; i < n; i++) v[i] = s == 0 ? 0.5 : v[i] / s;
}

/* Applies post transform pt to one row of n scores in place. */
static void post_apply(int pt, double *v, size_t n)
{
    switch (pt) {
    case POST_SOFTMAX: softmax_row(v, n, false); break;
    case POST_SOFTMAX_ZERO: softmax_row(v, n, true); break;
    case POST_LOGISTIC:
        for (size_t i = 0; i < n; i++) v[i] = logistic(v[i]);
        break;
    case POST_PROBIT:
        for (size_t i = 0; i < n; i++) v[i] = probit(v[i]);
        break;
    default: break;
    }
}

static size_t argmax(const double *v, size_t n)
{
    size_t b = 0;
    for (size_t i = 1; i < n; i++)
        if (v[i] > v[b]) b = i;
    return b;
}

/* ------------------------------------------------------------------ class labels */

struct labels {
    const int64_t *ints;
    const char *const *strs;
    size_t n;
    bool is_str;
};

/* Reads classlabels_<int_name> / classlabels_strings; at most one may be set. */
static kiln_status labels_read(struct kiln_kctx *k, const char *int_name, struct labels *l)
{
    char name[64];
    snprintf(name, sizeof name, "classlabels_%s", int_name);
    size_t ni = kiln_attr_ints(k, name, &l->ints);
    size_t ns = kiln_attr_strings(k, "classlabels_strings", &l->strs);
    if (ni && ns)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "both %s and classlabels_strings are set; expected one",
                          name);
    l->is_str = ns > 0;
    l->n = ns ? ns : ni;
    return KILN_OK;
}

/* Allocates the label output [n] (int64 or string per the labels). */
static kiln_status labels_out(struct kiln_kctx *k, const struct labels *l, size_t n, struct kiln_tensor **y)
{
    int64_t d[1] = {(int64_t)n};
    return kiln_out_tensor(k, 0, l->is_str ? KILN_DTYPE_STRING : KILN_DTYPE_I64, 1, d, y);
}

/* Writes label number `idx` (an index into the labels; with no labels, the index itself). */
static kiln_status labels_set(struct kiln_kctx *k, const struct labels *l, struct kiln_tensor *y,
                              size_t row, size_t idx)
{
    if (l->is_str) return set_str(k, y, row, idx < l->n ? l->strs[idx] : "");
    ((int64_t *)y->data)[row] = l->n ? (idx < l->n ? l->ints[idx] : 0) : (int64_t)idx;
    return KILN_OK;
}

/* Writes the label of a one-column decision to row `row`: the first class label when pos,
 * else "" or 0 (with no int labels, 1 or 0). */
static kiln_status labels_set_pos(struct kiln_kctx *k, const struct labels *l, struct kiln_tensor *y,
                                  size_t row, bool pos)
{
    if (l->is_str) return set_str(k, y, row, pos ? l->strs[0] : "");
    ((int64_t *)y->data)[row] = pos ? (l->n ? l->ints[0] : 1) : 0;
    return KILN_OK;
}

/* Stores rows x cols doubles into a new float32 output `i` of shape [rows, cols]. */
static kiln_status out_scores(struct kiln_kctx *k, size_t i, const double *v, size_t rows, size_t cols)
{
    if (!kiln_out_wanted(k, i)) return KILN_OK;
    int64_t d[2] = {(int64_t)rows, (int64_t)cols};
    struct kiln_tensor *z;
    KILN_TRY(kiln_out_tensor(k, i, KILN_DTYPE_F32, 2, d, &z));
    float *o = z->data;
    for (size_t j = 0; j < rows * cols; j++) o[j] = (float)v[j];
    return KILN_OK;
}

/* ------------------------------------------------------------------ lookup tables */

/* Tables from the values of a list attribute (strings or int64s) to the position of their
 * first occurrence in it: sorted, one entry per distinct value, searched by binary search.
 * They stand for the linear "first c with list[c] == v" scans run used to do. */
struct skey {
    const char *s;
    size_t i;
};
struct ikey {
    int64_t v;
    size_t i;
};
struct smap {
    struct skey *e;
    size_t n;
};
struct imap {
    struct ikey *e;
    size_t n;
};

static int skey_cmp(const void *a, const void *b)
{
    const struct skey *x = a, *y = b;
    int c = strcmp(x->s, y->s);
    return c ? c : (x->i > y->i) - (x->i < y->i);
}

static int ikey_cmp(const void *a, const void *b)
{
    const struct ikey *x = a, *y = b;
    if (x->v != y->v) return x->v < y->v ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i);
}

/* Builds the table of v[0..n) (a NULL string counts as ""), kept for the engine's life. */
static kiln_status smap_build(struct pmem *m, const char *const *v, size_t n, struct smap *map)
{
    map->n = 0;
    KILN_TRY(pm_array(m, n, sizeof *map->e, true, (void **)&map->e));
    for (size_t i = 0; i < n; i++) map->e[i] = (struct skey){v[i] ? v[i] : "", i};
    if (n) qsort(map->e, n, sizeof *map->e, skey_cmp);
    for (size_t i = 0; i < n; i++) /* keep the first (lowest position) of equal values */
        if (!map->n || strcmp(map->e[map->n - 1].s, map->e[i].s) != 0) map->e[map->n++] = map->e[i];
    return KILN_OK;
}

static kiln_status imap_build(struct pmem *m, const int64_t *v, size_t n, struct imap *map)
{
    map->n = 0;
    KILN_TRY(pm_array(m, n, sizeof *map->e, true, (void **)&map->e));
    for (size_t i = 0; i < n; i++) map->e[i] = (struct ikey){v[i], i};
    if (n) qsort(map->e, n, sizeof *map->e, ikey_cmp);
    for (size_t i = 0; i < n; i++)
        if (!map->n || map->e[map->n - 1].v != map->e[i].v) map->e[map->n++] = map->e[i];
    return KILN_OK;
}

/* The first position of s in the list, or SIZE_MAX. */
static size_t smap_find(const struct smap *map, const char *s)
{
    size_t lo = 0, hi = map->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(map->e[mid].s, s);
        if (c == 0) return map->e[mid].i;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return SIZE_MAX;
}

static size_t imap_find(const struct imap *map, int64_t v)
{
    size_t lo = 0, hi = map->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (map->e[mid].v == v) return map->e[mid].i;
        if (map->e[mid].v < v) lo = mid + 1;
        else hi = mid;
    }
    return SIZE_MAX;
}

/* ------------------------------------------------------------------ Binarizer */

struct binarizer_state {
    double threshold;
};

static kiln_status binarizer_prepare(struct kiln_kprep *p)
{
    struct binarizer_state *s;
    KILN_TRY(kiln_kprep_alloc(p, sizeof *s, (void **)&s));
    s->threshold = kiln_attr_f(&p->kc, "threshold", 0.0f);
    p->state = s;
    return KILN_OK;
}

static kiln_status binarizer_run(struct kiln_kctx *k)
{
    if (!k->state) return kiln_cpu_run_unprepared(k, binarizer_prepare, binarizer_run);
    const struct binarizer_state *bs = k->state;
    const struct kiln_tensor *x;
    KILN_TRY(kiln_in_req(k, 0, &x));
    if (!is_num_input(x->dtype))
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "input X is %s; expected float, double, int64 or int32",
                          kiln_dtype_name(x->dtype));
    double th = bs->threshold;
    struct kiln_tensor *y;
    KILN_TRY(kiln_out_tensor(k, 0, x->dtype, x->rank, x->dims, &y));
    size_t n = kiln_tensor_numel(x);
    /* NaN is not greater than the threshold, so it maps to 0 (as in the reference). */
    for (size_t i = 0; i < n; i++) kiln_tensor_set_f64(y, i, kiln_tensor_get_f64(x, i) > th ? 1.0 : 0.0);
    return KILN_OK;
}

/* ------------------------------------------------------------------ ArrayFeatureExtractor */

/* Z[..., j] = X[..., Y[j]] over the last axis of X; all of Y is read flat. A 1-D X gives
 * [1, len(Y)] as onnxruntime does. */
static kiln_status afe_run(struct kiln_kctx *k)
{
    const struct kiln_tensor *x, *ix;
    KILN_TRY(kiln_in_req(k, 0, &x));
    KILN_TRY(kiln_in_req(k, 1, &ix));
    if (!is_num_input(x->dtype) && x->dtype != KILN_DTYPE_STRING)
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "input X is %s; expected float, double, int64, int32 or string",
                          kiln_dtype_name(x->dtype));
    if (!kiln_dtype_is_int(ix->dtype))
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input Y is %s; expected int64", kiln_dtype_name(ix->dtype));
    if (x->rank < 1) return kiln_kfail(k, KILN_E_INVALID_ARG, "input X is a scalar; expected rank >= 1");
    size_t ni = kiln_tensor_numel(ix);
    int64_t last = x->dims[x->rank - 1];
    for (size_t j = 0; j < ni; j++) {
        int64_t v = kiln_tensor_get_i64(ix, j);
        if (v < 0 || v >= last)
            return kiln_kfail(k, KILN_E_INVALID_ARG, "index Y[%zu] = %lld out of range [0, %lld)", j,
                              (long long)v, (long long)last);
    }
    int64_t dims[KILN_MAX_RANK];
    int rank = x->rank < 2 ? 2 : x->rank;
    if (x->rank == 1) dims[0] = 1;
    else memcpy(dims, x->dims, sizeof(int64_t) * (size_t)(x->rank - 1));
    dims[rank - 1] = (int64_t)ni;
    struct kiln_tensor *z;
    KILN_TRY(kiln_out_tensor(k, 0, x->dtype, rank, dims, &z));
    size_t rows = last ? kiln_tensor_numel(x) / (size_t)last : 0, es = kiln_dtype_size(x->dtype);
    if (x->rank == 1) rows = 1;
    for (size_t r = 0; r < rows; r++)
        for (size_t j = 0; j < ni; j++) {
            size_t src = r * (size_t)last + (size_t)kiln_tensor_get_i64(ix, j), dst = r * ni + j;
            if (x->dtype == KILN_DTYPE_STRING) KILN_TRY(set_str(k, z, dst, str_at(x, src)));
            else memcpy((char *)z->data + dst * es, (const char *)x->data + src * es, es);
        }
    return KILN_OK;
}

/* ------------------------------------------------------------------ Scaler */

struct scaler_state {
    const float *offset, *scale;
    size_t n_offset, n_scale;
};

static kiln_status scaler_prepare(struct kiln_kprep *p)
{
    struct scaler_state *s;
    KILN_TRY(kiln_kprep_alloc(p, sizeof *s, (void **)&s));
    s->n_offset = kiln_attr_floats(&p->kc, "offset", &s->offset);
    s->n_scale = kiln_attr_floats(&p->kc, "scale", &s->scale);
    p->state = s;
    return KILN_OK;
}

/* Y = (X - offset) * scale over the last axis; offset and scale have 1 or C entries. */
static kiln_status scaler_run(struct kiln_kctx *k)
{
    if (!k->state) return kiln_cpu_run_unprepared(k, scaler_prepare, scaler_run);
    const struct scaler_state *ss = k->state;
    const struct kiln_tensor *x;
    KILN_TRY(kiln_in_req(k, 0, &x));
    if (!is_num_input(x->dtype))
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "input X is %s; expected float, double, int64 or int32",
                          kiln_dtype_name(x->dtype));
    const float *off = ss->offset, *sc = ss->scale;
    size_t noff = ss->n_offset, nsc = ss->n_scale;
    size_t c = x->rank ? (size_t)x->dims[x->rank - 1] : 1;
    if ((noff > 1 && noff != c) || (nsc > 1 && nsc != c))
        return kiln_kfail(k, KILN_E_INVALID_ARG,
                          "offset has %zu and scale %zu entries; each must be 1 or the last dim %zu", noff,
                          nsc, c);
    struct kiln_tensor *y;
    KILN_TRY(kiln_out_tensor(k, 0, KILN_DTYPE_F32, x->rank, x->dims, &y));
    size_t n = kiln_tensor_numel(x);
    float *o = y->data;
    for (size_t i = 0; i < n; i++) {
        size_t j = c ? i % c : 0;
        double a = noff ? off[noff == 1 ? 0 : j] : 0.0, b = nsc ? sc[nsc == 1 ? 0 : j] : 1.0;
        o[i] = (float)((kiln_tensor_get_f64(x, i) - a) * b);
    }
    return KILN_OK;
}

/* ------------------------------------------------------------------ Normalizer */

struct normalizer_state {
    const char *norm;
    int mode; /* 0 MAX, 1 L1, 2 L2, -1 none of them */
};

static kiln_status normalizer_prepare(struct kiln_kprep *p)
{
    struct normalizer_state *s;
    KILN_TRY(kiln_kprep_alloc(p, sizeof *s, (void **)&s));
    const char *norm = kiln_attr_s(&p->kc, "norm", "MAX");
    s->norm = norm;
    s->mode = strcmp(norm, "MAX") == 0 ? 0 : strcmp(norm, "L1") == 0 ? 1 : strcmp(norm, "L2") == 0 ? 2 : -1;
    p->state = s;
    return KILN_OK;
}

static kiln_status normalizer_run(struct kiln_kctx *k)
{
    if (!k->state) return kiln_cpu_run_unprepared(k, normalizer_prepare, normalizer_run);
    const struct normalizer_state *ns = k->state;
    const struct kiln_tensor *x;
    KILN_TRY(kiln_in_req(k, 0, &x));
    int mode = ns->mode;
    if (mode < 0) return kiln_kfail(k, KILN_E_INVALID_MODEL, "norm '%s'; expected MAX, L1 or L2", ns->norm);
    if (x->rank > 2)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input X has rank %d; expected [N, C] or [C]", x->rank);
    size_t n, f;
    double *d;
    KILN_TRY(read_matrix(k, x, false, &n, &f, &d));
    struct kiln_tensor *y;
    KILN_TRY(kiln_out_tensor(k, 0, KILN_DTYPE_F32, x->rank, x->dims, &y));
    float *o = y->data;
    for (size_t r = 0; r < n; r++) {
        double *row = d + r * f, s = 0;
        for (size_t j = 0; j < f; j++) {
            double a = fabs(row[j]);
            if (mode == 0) s = a > s ? a : s;
            else s += mode == 1 ? a : a * a;
        }
        if (mode == 2) s = sqrt(s);
        for (size_t j = 0; j < f; j++) o[r * f + j] = (float)(s != 0 ? row[j] / s : row[j]);
    }
    return KILN_OK;
}

/* ------------------------------------------------------------------ OneHotEncoder */

struct onehot_state {
    size_t ni, ns;     /* entries of cats_int64s, cats_strings */
    struct imap ints;  /* cats_int64s -> first position */
    struct smap strs;  /* cats_strings -> first position */
    bool zeros;
};

static kiln_status onehot_prepare(struct kiln_kprep *p)
{
    struct onehot_state *s;
    struct pmem m = {.p = p};
    KILN_TRY(kiln_kprep_alloc(p, sizeof *s, (void **)&s));
    const int64_t *ci;
    const char *const *cs;
    s->ni = kiln_attr_ints(&p->kc, "cats_int64s", &ci);
    s->ns = kiln_attr_strings(&p->kc, "cats_strings", &cs);
    s->zeros = kiln_attr_i(&p->kc, "zeros", 1) != 0;
    KILN_TRY(imap_build(&m, ci, s->ni, &s->ints));
    KILN_TRY(smap_build(&m, cs, s->ns, &s->strs));
    p->state = s;
    return KILN_OK;
}

/* Y = X.shape + [n_cats], float; numeric X is truncated to int64 and looked up in
 * cats_int64s, strings in cats_strings. A miss gives zeros, or an error when zeros == 0. */
static kiln_status onehot_run(struct kiln_kctx *k)
{
    if (!k->state) return kiln_cpu_run_unprepared(k, onehot_prepare, onehot_run);
    const struct onehot_state *os = k->state;
    const struct kiln_tensor *x;
    KILN_TRY(kiln_in_req(k, 0, &x));
    size_t ni = os->ni, ns = os->ns;
    bool zeros = os->zeros;
    bool str = x->dtype == KILN_DTYPE_STRING;
    if (!str && !is_num_input(x->dtype))
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "input X is %s; expected string, int64, int32, float or double",
                          kiln_dtype_name(x->dtype));
    if ((ni > 0) == (ns > 0))
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "exactly one of cats_int64s and cats_strings must be set");
    if (str != (ns > 0))
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input X is %s but the categories are %s",
                          kiln_dtype_name(x->dtype), ns ? "strings" : "int64s");
    size_t nc = str ? ns : ni;
    if (x->rank + 1 > KILN_MAX_RANK) return kiln_kfail(k, KILN_E_LIMIT, "input X has rank %d; too large", x->rank);
    int64_t dims[KILN_MAX_RANK];
    memcpy(dims, x->dims, sizeof(int64_t) * (size_t)x->rank);
    dims[x->rank] = (int64_t)nc;
    struct kiln_tensor *y;
    KILN_TRY(kiln_out_tensor(k, 0, KILN_DTYPE_F32, x->rank + 1, dims, &y));
    size_t n = kiln_tensor_numel(x);
    float *o = y->data;
    for (size_t i = 0; i < n; i++) {
        size_t hit; /* the first matching category, SIZE_MAX: none */
        if (str) {
            hit = smap_find(&os->strs, str_at(x, i));
        } else {
            double v = kiln_tensor_get_f64(x, i);
            int64_t iv = x->dtype == KILN_DTYPE_I64 ? ((const int64_t *)x->data)[i]
                         : (isnan(v) || fabs(v) >= 0x1p63) ? INT64_MIN : (int64_t)v;
            hit = imap_find(&os->ints, iv);
        }
        if (hit < nc) o[i * nc + hit] = 1.0f;
        else if (!zeros)
            return kiln_kfail(k, KILN_E_INVALID_ARG, "X element %zu is not a known category (zeros = 0)", i);
    }
    return KILN_OK;
}

/* ------------------------------------------------------------------ Imputer */

struct imputer_state {
    const float *vf;
    const int64_t *vi;
    size_t nf, ni;
    double rep_f;
    int64_t rep_i;
};

static kiln_status imputer_prepare(struct kiln_kprep *p)
{
    struct imputer_state *s;
    KILN_TRY(kiln_kprep_alloc(p, sizeof *s, (void **)&s));
    const struct kiln_kctx *k = &p->kc;
    s->nf = kiln_attr_floats(k, "imputed_value_floats", &s->vf);
    s->ni = kiln_attr_ints(k, "imputed_value_int64s", &s->vi);
    s->rep_f = kiln_attr_f(k, "replaced_value_float", 0.0f);
    s->rep_i = kiln_attr_i(k, "replaced_value_int64", 0);
    p->state = s;
    return KILN_OK;
}

/* Replaces elements equal to replaced_value_* (NaN matches NaN) by imputed_value_*[j] for
 * feature j of the last axis (one imputed value applies to every feature). */
static kiln_status imputer_run(struct kiln_kctx *k)
{
    if (!k->state) return kiln_cpu_run_unprepared(k, imputer_prepare, imputer_run);
    const struct imputer_state *is = k->state;
    const struct kiln_tensor *x;
    KILN_TRY(kiln_in_req(k, 0, &x));
    bool flt = x->dtype == KILN_DTYPE_F32 || x->dtype == KILN_DTYPE_F64;
    if (!is_num_input(x->dtype))
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "input X is %s; expected float, double, int64 or int32",
                          kiln_dtype_name(x->dtype));
    const float *vf = is->vf;
    const int64_t *vi = is->vi;
    size_t nf = is->nf, ni = is->ni;
    size_t nv = flt ? nf : ni;
    size_t c = x->rank ? (size_t)x->dims[x->rank - 1] : 1;
    if (nv == 0)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "input X is %s but imputed_value_%s is empty",
                          kiln_dtype_name(x->dtype), flt ? "floats" : "int64s");
    if (nv != 1 && nv != c)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "%zu imputed values; expected 1 or the last dim %zu", nv, c);
    struct kiln_tensor *y;
    KILN_TRY(kiln_out_tensor(k, 0, x->dtype, x->rank, x->dims, &y));
    size_t n = kiln_tensor_numel(x);
    if (n) memcpy(y->data, x->data, kiln_tensor_nbytes(x));
    if (flt) {
        double rep = is->rep_f;
        for (size_t i = 0; i < n; i++) {
            double v = kiln_tensor_get_f64(x, i);
            if (v == rep || (isnan(v) && isnan(rep))) kiln_tensor_set_f64(y, i, vf[nv == 1 ? 0 : i % c]);
        }
    } else {
        int64_t rep = is->rep_i;
        for (size_t i = 0; i < n; i++) {
            if (kiln_tensor_get_i64(x, i) != rep) continue;
            int64_t v = vi[nv == 1 ? 0 : i % c];
            if (x->dtype == KILN_DTYPE_I64) ((int64_t *)y->data)[i] = v;
            else ((int32_t *)y->data)[i] = (int32_t)v;
        }
    }
    return KILN_OK;
}

/* ------------------------------------------------------------------ FeatureVectorizer */

/* Concatenates the inputs along axis 1 into float [N, sum(inputdimensions)]. Input i is
 * [N, C_i] (1-D is [1, C_i], higher ranks flatten after dim 0); its first inputdimensions[i]
 * columns are used, zero-padded when C_i is smaller, as onnxruntime does. */
struct featvec_state {
    const int64_t *dims; /* inputdimensions */
    size_t n;
};

static kiln_status featvec_prepare(struct kiln_kprep *p)
{
    struct featvec_state *s;
    KILN_TRY(kiln_kprep_alloc(p, sizeof *s, (void **)&s));
    s->n = kiln_attr_ints(&p->kc, "inputdimensions", &s->dims);
    p->state = s;
    return KILN_OK;
}

static kiln_status featvec_run(struct kiln_kctx *k)
{
    if (!k->state) return kiln_cpu_run_unprepared(k, featvec_prepare, featvec_run);
    const struct featvec_state *fs = k->state;
    const int64_t *dimsz = fs->dims;
    size_t nd = fs->n;
    if (nd != k->n_in)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "inputdimensions has %zu entries; expected %zu (one per input)",
                          nd, k->n_in);
    size_t total = 0, n = 0;
    for (size_t i = 0; i < nd; i++) {
        if (dimsz[i] < 0 || dimsz[i] > (int64_t)KILN_MAX_NUMEL)
            return kiln_kfail(k, KILN_E_INVALID_MODEL, "inputdimensions[%zu] = %lld is invalid", i,
                              (long long)dimsz[i]);
        total += (size_t)dimsz[i];
        const struct kiln_tensor *x;
        KILN_TRY(kiln_in_req(k, i, &x));
        if (!is_num_input(x->dtype))
            return kiln_kfail(k, KILN_E_UNSUPPORTED, "input %zu is %s; expected float, double, int64 or int32", i,
                              kiln_dtype_name(x->dtype));
        size_t rows = x->rank >= 2 ? (size_t)x->dims[0] : 1;
        if (i == 0) n = rows;
        else if (rows != n)
            return kiln_kfail(k, KILN_E_INVALID_ARG, "input %zu has %zu rows; input 0 has %zu", i, rows, n);
    }
    int64_t od[2] = {(int64_t)n, (int64_t)total};
    struct kiln_tensor *y;
    KILN_TRY(kiln_out_tensor(k, 0, KILN_DTYPE_F32, 2, od, &y));
    float *o = y->data;
    size_t col = 0;
    for (size_t i = 0; i < nd; i++) {
        const struct kiln_tensor *x = kiln_in(k, i);
        size_t numel = kiln_tensor_numel(x), c = n ? numel / n : 0, want = (size_t)dimsz[i];
        for (size_t r = 0; r < n; r++)
            for (size_t j = 0; j < want && j < c; j++)
                o[r * total + col + j] = (float)kiln_tensor_get_f64(x, r * c + j);
        col += want;
    }
    return KILN_OK;
}

/* ------------------------------------------------------------------ CategoryMapper */

/* Output 0 (int64, X's shape) for string X: element i is ids[c] (c itself when ids is NULL)
 * for the first category c equal to X[i] (looked up in cats, the table of the categories),
 * else def. */
static kiln_status map_str_to_i64(struct kiln_kctx *k, const struct kiln_tensor *x, const struct smap *cats,
                                  const int64_t *ids, int64_t def)
{
    struct kiln_tensor *y;
    KILN_TRY(kiln_out_tensor(k, 0, KILN_DTYPE_I64, x->rank, x->dims, &y));
    size_t n = kiln_tensor_numel(x);
    for (size_t i = 0; i < n; i++) {
        size_t c = smap_find(cats, str_at(x, i));
        ((int64_t *)y->data)[i] = c == SIZE_MAX ? def : ids ? ids[c] : (int64_t)c;
    }
    return KILN_OK;
}

/* Output 0 (string, X's shape) for int64 X: element i is cats[c] for the first c with
 * ids[c] == X[i] (looked up in by_id, the table of ids; with by_id NULL, c = X[i] when in
 * [0, nc)), else def. */
static kiln_status map_i64_to_str(struct kiln_kctx *k, const struct kiln_tensor *x, const char *const *cats,
                                  const struct imap *by_id, size_t nc, const char *def)
{
    struct kiln_tensor *y;
    KILN_TRY(kiln_out_tensor(k, 0, KILN_DTYPE_STRING, x->rank, x->dims, &y));
    size_t n = kiln_tensor_numel(x);
    for (size_t i = 0; i < n; i++) {
        int64_t v = ((const int64_t *)x->data)[i];
        const char *s = def;
        if (!by_id) {
            if (v >= 0 && (uint64_t)v < nc) s = cats[v];
        } else {
            size_t c = imap_find(by_id, v);
            if (c != SIZE_MAX) s = cats[c];
        }
        KILN_TRY(set_str(k, y, i, s));
    }
    return KILN_OK;
}

struct catmap_state {
    const int64_t *ids;        /* cats_int64s */
    const char *const *cats;   /* cats_strings */
    size_t ni, ns;
    struct smap by_str;        /* cats_strings -> first position (when ni == ns) */
    struct imap by_id;         /* cats_int64s -> first position (when ni == ns) */
    int64_t def_i;
    const char *def_s;
};

static kiln_status catmap_prepare(struct kiln_kprep *p)
{
    struct catmap_state *s;
    struct pmem m = {.p = p};
    KILN_TRY(kiln_kprep_alloc(p, sizeof *s, (void **)&s));
    p->state = s;
    const struct kiln_kctx *k = &p->kc;
    s->ni = kiln_attr_ints(k, "cats_int64s", &s->ids);
    s->ns = kiln_attr_strings(k, "cats_strings", &s->cats);
    s->def_i = kiln_attr_i(k, "default_int64", -1);
    s->def_s = kiln_attr_s(k, "default_string", "_Unused");
    if (s->ni != s->ns) return KILN_OK; /* run fails */
    KILN_TRY(smap_build(&m, s->cats, s->ns, &s->by_str));
    return imap_build(&m, s->ids, s->ni, &s->by_id);
}

/* string -> int64 (default_int64) or int64 -> string (default_string), by the input dtype. */
static kiln_status catmap_run(struct kiln_kctx *k)
{
    if (!k->state) return kiln_cpu_run_unprepared(k, catmap_prepare, catmap_run);
    const struct catmap_state *cs = k->state;
    const struct kiln_tensor *x;
    KILN_TRY(kiln_in_req(k, 0, &x));
    size_t ni = cs->ni, ns = cs->ns;
    if (ni != ns)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "cats_int64s has %zu entries and cats_strings %zu; expected equal",
                          ni, ns);
    if (x->dtype == KILN_DTYPE_STRING) return map_str_to_i64(k, x, &cs->by_str, cs->ids, cs->def_i);
    if (x->dtype == KILN_DTYPE_I64) return map_i64_to_str(k, x, cs->cats, &cs->by_id, ni, cs->def_s);
    return kiln_kfail(k, KILN_E_UNSUPPORTED, "input X is %s; expected string or int64",
                      kiln_dtype_name(x->dtype));
}

/* ------------------------------------------------------------------ LabelEncoder */

/* One side (keys or values) of a LabelEncoder mapping, in one of three kinds. */
enum lkind { LK_STR, LK_INT, LK_FLT };

struct lcol {
    enum lkind kind;
    kiln_dtype dt; /* the tensor dtype this side stands for */
    size_t n;
    const char *const *s;
    int64_t *i;
    double *f;
};

static bool lkind_of(kiln_dtype dt, enum lkind *kind)
{
    switch (dt) {
    case KILN_DTYPE_STRING: *kind = LK_STR; return true;
    case KILN_DTYPE_I64: case KILN_DTYPE_I32: case KILN_DTYPE_I16: *kind = LK_INT; return true;
    case KILN_DTYPE_F32: case KILN_DTYPE_F64: *kind = LK_FLT; return true;
    default: return false;
    }
}

/* Reads <side>_strings / <side>_int64s / <side>_floats / (v4) <side>_tensor; exactly one
 * must be set. Numbers are copied into m's kept memory. */
static kiln_status lcol_read(struct pmem *m, const char *side, struct lcol *c)
{
    struct kiln_kctx *k = &m->p->kc;
    char ns[48], ni[48], nf[48], nt[48];
    snprintf(ns, sizeof ns, "%s_strings", side);
    snprintf(ni, sizeof ni, "%s_int64s", side);
    snprintf(nf, sizeof nf, "%s_floats", side);
    snprintf(nt, sizeof nt, "%s_tensor", side);
    const char *const *s;
    const int64_t *iv;
    const float *fv;
    bool hs = kiln_attr_has(k, ns), hi = kiln_attr_has(k, ni), hf = kiln_attr_has(k, nf);
    const struct kiln_tensor *t = k->opset >= 4 ? kiln_attr_t(k, nt) : NULL;
    if (hs + hi + hf + (t != NULL) != 1)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "exactly one of %s, %s, %s%s%s must be set", ns, ni, nf,
                          k->opset >= 4 ? " and " : "", k->opset >= 4 ? nt : "");
    memset(c, 0, sizeof *c);
    if (hs) {
        c->kind = LK_STR, c->dt = KILN_DTYPE_STRING;
        c->n = kiln_attr_strings(k, ns, &s);
        c->s = s;
        return KILN_OK;
    }
    if (t) {
        if (!lkind_of(t->dtype, &c->kind))
            return kiln_kfail(k, KILN_E_UNSUPPORTED, "attribute %s is a %s tensor; expected string, int64, "
                              "int32, int16, float or double", nt, kiln_dtype_name(t->dtype));
        c->dt = t->dtype;
        c->n = kiln_tensor_numel(t);
        if (c->kind == LK_STR) {
            c->s = (const char *const *)t->data;
            return KILN_OK;
        }
    } else if (hi) {
        c->kind = LK_INT, c->dt = KILN_DTYPE_I64;
        c->n = kiln_attr_ints(k, ni, &iv);
    } else {
        c->kind = LK_FLT, c->dt = KILN_DTYPE_F32;
        c->n = kiln_attr_floats(k, nf, &fv);
    }
    if (c->kind == LK_INT) {
        KILN_TRY(pm_array(m, c->n, sizeof *c->i, true, (void **)&c->i));
        for (size_t j = 0; j < c->n; j++) c->i[j] = t ? kiln_tensor_get_i64(t, j) : iv[j];
    } else {
        KILN_TRY(pm_array(m, c->n, sizeof *c->f, true, (void **)&c->f));
        for (size_t j = 0; j < c->n; j++) c->f[j] = t ? kiln_tensor_get_f64(t, j) : fv[j];
    }
    return KILN_OK;
}

/* A sorted key: the value and its position (ties sort by position, so the last of equal keys
 * is found by an upper-bound search: the spec's "last key takes precedence"). */
struct lkey {
    const char *s;
    int64_t i;
    double f;
    size_t pos;
};

static int cmp_pos(const struct lkey *a, const struct lkey *b) { return (a->pos > b->pos) - (a->pos < b->pos); }

/* NaN sorts after every number and equals every NaN (a NaN key matches any NaN input). */
static int cmp_f(double a, double b)
{
    if (isnan(a) || isnan(b)) return isnan(a) - isnan(b);
    return (a > b) - (a < b);
}

static int lkey_cmp_s(const void *x, const void *y)
{
    int c = strcmp(((const struct lkey *)x)->s, ((const struct lkey *)y)->s);
    return c ? c : cmp_pos(x, y);
}
static int lkey_cmp_i(const void *x, const void *y)
{
    const struct lkey *a = x, *b = y;
    int c = (a->i > b->i) - (a->i < b->i);
    return c ? c : cmp_pos(a, b);
}
static int lkey_cmp_f(const void *x, const void *y)
{
    int c = cmp_f(((const struct lkey *)x)->f, ((const struct lkey *)y)->f);
    return c ? c : cmp_pos(x, y);
}

/* Position of the last key equal to q among sorted keys, or SIZE_MAX. */
static size_t lkey_find(const struct lkey *keys, size_t n, enum lkind kind, const struct lkey *q)
{
    size_t lo = 0, hi = n; /* first index whose key is greater than q */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = kind == LK_STR ? strcmp(keys[mid].s, q->s)
                : kind == LK_INT ? (keys[mid].i > q->i) - (keys[mid].i < q->i)
                                 : cmp_f(keys[mid].f, q->f);
        if (c <= 0) lo = mid + 1;
        else hi = mid;
    }
    if (lo == 0) return SIZE_MAX;
    const struct lkey *e = &keys[lo - 1];
    bool eq = kind == LK_STR ? strcmp(e->s, q->s) == 0 : kind == LK_INT ? e->i == q->i : cmp_f(e->f, q->f) == 0;
    return eq ? e->pos : SIZE_MAX;
}

/* Writes value j of column v (or the default when j == SIZE_MAX) to element i of y. */
static kiln_status lcol_store(struct kiln_kctx *k, const struct lcol *v, size_t j, const char *ds, int64_t di,
                              double df, struct kiln_tensor *y, size_t i)
{
    switch (v->kind) {
    case LK_STR: return set_str(k, y, i, j == SIZE_MAX ? ds : v->s[j] ? v->s[j] : "");
    case LK_INT: {
        int64_t x = j == SIZE_MAX ? di : v->i[j];
        if (y->dtype == KILN_DTYPE_I64) ((int64_t *)y->data)[i] = x;
        else if (y->dtype == KILN_DTYPE_I32) ((int32_t *)y->data)[i] = (int32_t)x;
        else ((int16_t *)y->data)[i] = (int16_t)x;
        return KILN_OK;
    }
    default: kiln_tensor_set_f64(y, i, j == SIZE_MAX ? df : v->f[j]); return KILN_OK;
    }
}

/* LabelEncoder. Version 1: classes_strings maps string -> its index (default_int64) and
 * int64 -> classes_strings[x] (default_string). Versions 2 and 4: keys -> values, with the
 * keys sorted once here; what is wrong with the attributes is kept for run. */
struct lenc_state {
    /* version 1 */
    const char *const *cls;
    size_t ncls;
    struct smap cls_map; /* classes_strings -> first position */
    /* versions 2 and 4 */
    kiln_status st_cols; /* keys/values: not one kind each, or not as many keys as values */
    const char *msg_cols;
    struct lcol kc, vc;
    kiln_status st_def;  /* default_tensor does not match the values */
    const char *msg_def;
    struct lkey *keys;   /* sorted (value, then position) */
    /* defaults (both versions read default_string and default_int64) */
    const char *ds;
    int64_t di;
    double df;
};

static kiln_status lenc_prepare(struct kiln_kprep *p)
{
    struct lenc_state *s;
    struct pmem m = {.p = p};
    KILN_TRY(kiln_kprep_alloc(p, sizeof *s, (void **)&s));
    p->state = s;
    struct kiln_kctx *k = &p->kc;
    s->ds = kiln_attr_s(k, "default_string", "_Unused");
    s->di = kiln_attr_i(k, "default_int64", -1);
    if (k->opset < 2) {
        s->ncls = kiln_attr_strings(k, "classes_strings", &s->cls);
        return smap_build(&m, s->cls, s->ncls, &s->cls_map);
    }
    struct capture c;
    capture_begin(p, &c);
    kiln_status st = lcol_read(&m, "keys", &s->kc);
    if (!st) st = lcol_read(&m, "values", &s->vc);
    if (!st && s->kc.n != s->vc.n)
        st = kiln_kfail(k, KILN_E_INVALID_MODEL, "%zu keys but %zu values; expected equal lengths", s->kc.n,
                        s->vc.n);
    KILN_TRY(capture_end(p, &c, st, &s->st_cols, &s->msg_cols));
    if (st) return KILN_OK;
    /* Defaults: default_tensor (v4) wins, else the default_* attribute of the values' kind. */
    s->df = kiln_attr_has(k, "default_float") ? kiln_attr_f(k, "default_float", 0.0f) : -0.0;
    const struct kiln_tensor *dt = k->opset >= 4 ? kiln_attr_t(k, "default_tensor") : NULL;
    if (dt) {
        enum lkind dk;
        if (kiln_tensor_numel(dt) < 1 || !lkind_of(dt->dtype, &dk) || dk != s->vc.kind) {
            capture_begin(p, &c);
            st = kiln_kfail(k, KILN_E_INVALID_MODEL, "default_tensor (%s, %zu elements) does not match the "
                            "values (%s)", kiln_dtype_name(dt->dtype), kiln_tensor_numel(dt),
                            kiln_dtype_name(s->vc.dt));
            return capture_end(p, &c, st, &s->st_def, &s->msg_def);
        }
        if (dk == LK_STR) s->ds = str_at(dt, 0);
        else if (dk == LK_INT) s->di = kiln_tensor_get_i64(dt, 0);
        else s->df = kiln_tensor_get_f64(dt, 0);
    }
    const struct lcol *kc = &s->kc;
    KILN_TRY(pm_array(&m, kc->n, sizeof *s->keys, true, (void **)&s->keys));
    for (size_t j = 0; j < kc->n; j++) {
        s->keys[j].pos = j;
        if (kc->kind == LK_STR) s->keys[j].s = kc->s[j] ? kc->s[j] : "";
        else if (kc->kind == LK_INT) s->keys[j].i = kc->i[j];
        else s->keys[j].f = kc->f[j];
    }
    if (kc->n)
        qsort(s->keys, kc->n, sizeof *s->keys,
              kc->kind == LK_STR ? lkey_cmp_s : kc->kind == LK_INT ? lkey_cmp_i : lkey_cmp_f);
    return KILN_OK;
}

static kiln_status label_encoder_run(struct kiln_kctx *k)
{
    if (!k->state) return kiln_cpu_run_unprepared(k, lenc_prepare, label_encoder_run);
    const struct lenc_state *ls = k->state;
    const struct kiln_tensor *x;
    KILN_TRY(kiln_in_req(k, 0, &x));
    if (k->opset < 2) {
        if (x->dtype == KILN_DTYPE_STRING) return map_str_to_i64(k, x, &ls->cls_map, NULL, ls->di);
        if (x->dtype != KILN_DTYPE_I64)
            return kiln_kfail(k, KILN_E_UNSUPPORTED, "input X is %s; expected string or int64",
                              kiln_dtype_name(x->dtype));
        return map_i64_to_str(k, x, ls->cls, NULL, ls->ncls, ls->ds);
    }
    if (ls->st_cols) return kept_fail(k, ls->st_cols, ls->msg_cols);
    const struct lcol *kc = &ls->kc, *vc = &ls->vc;
    enum lkind xk;
    if (!lkind_of(x->dtype, &xk) || xk != kc->kind)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input X is %s but the keys are %s", kiln_dtype_name(x->dtype),
                          kiln_dtype_name(kc->dt));
    if (ls->st_def) return kept_fail(k, ls->st_def, ls->msg_def);
    struct kiln_tensor *y;
    KILN_TRY(kiln_out_tensor(k, 0, vc->dt, x->rank, x->dims, &y));
    size_t n = kiln_tensor_numel(x);
    for (size_t i = 0; i < n; i++) {
        struct lkey q = {0};
        if (xk == LK_STR) q.s = str_at(x, i);
        else if (xk == LK_INT) q.i = kiln_tensor_get_i64(x, i);
        else q.f = kiln_tensor_get_f64(x, i);
        KILN_TRY(lcol_store(k, vc, lkey_find(ls->keys, kc->n, kc->kind, &q), ls->ds, ls->di, ls->df, y, i));
    }
    return KILN_OK;
}

/* ------------------------------------------------------------------ LinearClassifier */

/* The linear model of LinearClassifier / LinearRegressor: nw coefficients w (rows of F) and
 * nb intercepts b (callers check the counts). */
struct linear {
    const float *w, *b;
    size_t nw, nb;
};

static void linear_read(const struct kiln_kctx *k, struct linear *lm)
{
    lm->nw = kiln_attr_floats(k, "coefficients", &lm->w);
    lm->nb = kiln_attr_floats(k, "intercepts", &lm->b);
}

/* One row of X W^T + b: out[c] = (nb ? b[c] : 0) + sum_j x[j] * w[c * f + j] for c < m. */
static void linear_row(const struct linear *lm, const double *x, size_t f, size_t m, double *out)
{
    for (size_t c = 0; c < m; c++) {
        double acc = lm->nb ? lm->b[c] : 0.0;
        for (size_t j = 0; j < f; j++) acc += x[j] * lm->w[c * f + j];
        out[c] = acc;
    }
}

enum { KERN_LINEAR, KERN_POLY, KERN_RBF, KERN_SIGMOID };

struct svm_kernel {
    int type;
    double gamma, coef0, degree;
};

static kiln_status svm_kernel_read(struct kiln_kctx *k, struct svm_kernel *sk)
{
    const char *t = kiln_attr_s(k, "kernel_type", "LINEAR");
    static const char *const names[] = {"LINEAR", "POLY", "RBF", "SIGMOID"};
    sk->type = -1;
    for (int i = 0; i < 4; i++)
        if (strcmp(t, names[i]) == 0) sk->type = i;
    if (sk->type < 0)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "kernel_type '%s'; expected LINEAR, POLY, RBF or SIGMOID", t);
    const float *p;
    size_t np = kiln_attr_floats(k, "kernel_params", &p);
    sk->gamma = np > 0 ? p[0] : 0.0;
    sk->coef0 = np > 1 ? p[1] : 0.0;
    sk->degree = np > 2 ? (double)(int64_t)p[2] : 0.0; /* the degree is an integer */
    return KILN_OK;
}

/* The decoded attributes of the linear and SVM models. st/msg: a problem with the class
 * labels, the kernel type or post_transform, reported by run right after reading X. */
struct model_state {
    kiln_status st;
    const char *msg;
    struct linear lm;
    struct labels l;
    struct svm_kernel sk;
    int pt;
    int64_t targets;                     /* LinearRegressor */
    const float *coef, *sv, *rho, *pa, *pb;
    size_t ncoef, nsv, nrho, na, nb;
    const int64_t *vpc;                  /* SVMClassifier: vectors_per_class */
    size_t nvpc;
    int64_t n_supports;                  /* SVMRegressor */
    bool one_class;
};

/* The model ops' prepare: labels (classifiers), kernel (SVMs), post_transform, then the
 * lists. */
static kiln_status model_prepare(struct kiln_kprep *p, bool labels, bool svm)
{
    struct model_state *s;
    KILN_TRY(kiln_kprep_alloc(p, sizeof *s, (void **)&s));
    p->state = s;
    struct kiln_kctx *k = &p->kc;
    s->pt = POST_NONE;
    struct capture c;
    capture_begin(p, &c);
    kiln_status st = labels ? labels_read(k, "ints", &s->l) : KILN_OK;
    if (!st && svm) st = svm_kernel_read(k, &s->sk);
    if (!st) st = post_parse(k, &s->pt);
    KILN_TRY(capture_end(p, &c, st, &s->st, &s->msg));
    linear_read(k, &s->lm);
    s->targets = kiln_attr_i(k, "targets", 1);
    s->ncoef = kiln_attr_floats(k, "coefficients", &s->coef);
    s->nsv = kiln_attr_floats(k, "support_vectors", &s->sv);
    s->nrho = kiln_attr_floats(k, "rho", &s->rho);
    s->na = kiln_attr_floats(k, "prob_a", &s->pa);
    s->nb = kiln_attr_floats(k, "prob_b", &s->pb);
    s->nvpc = kiln_attr_ints(k, "vectors_per_class", &s->vpc);
    s->n_supports = kiln_attr_i(k, "n_supports", 0);
    s->one_class = kiln_attr_i(k, "one_class", 0) != 0;
    return KILN_OK;
}

static kiln_status linclass_prepare(struct kiln_kprep *p) { return model_prepare(p, true, false); }
static kiln_status linreg_prepare(struct kiln_kprep *p) { return model_prepare(p, false, false); }
static kiln_status svmclass_prepare(struct kiln_kprep *p) { return model_prepare(p, true, true); }
static kiln_status svmreg_prepare(struct kiln_kprep *p) { return model_prepare(p, false, true); }

/* Scores [N, C] = X * W^T + b with C = len(coefficients) / F; with one coefficient row and
 * two class labels the scores become [-s, s] (the reference's binary convention). Labels:
 * argmax when there are several columns; with one column, label 0 (the first class label)
 * when the score reaches the threshold (0 for NONE, else 0.5), else 0 / "". */
static kiln_status linclass_run(struct kiln_kctx *k)
{
    if (!k->state) return kiln_cpu_run_unprepared(k, linclass_prepare, linclass_run);
    const struct model_state *ms = k->state;
    size_t n, f;
    double *d;
    KILN_TRY(read_x(k, NULL, &n, &f, &d));
    if (ms->st) return kept_fail(k, ms->st, ms->msg);
    const struct linear lm = ms->lm;
    const struct labels l = ms->l;
    const int pt = ms->pt;
    if (f == 0 || lm.nw == 0 || lm.nw % f)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "%zu coefficients do not split into rows of F = %zu features",
                          lm.nw, f);
    size_t nc = lm.nw / f, cols = nc == 1 && l.n == 2 ? 2 : nc;
    if (lm.nb && lm.nb != nc)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "%zu intercepts; expected %zu (one per class)", lm.nb, nc);
    if (cols > 1 && l.n && l.n != cols)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "%zu class labels; the coefficients give %zu classes", l.n, cols);
    double *s;
    KILN_TRY(scratch_array(k, n, cols * sizeof *s, (void **)&s));
    struct kiln_tensor *y;
    KILN_TRY(labels_out(k, &l, n, &y));
    for (size_t r = 0; r < n; r++) {
        double *row = s + r * cols;
        linear_row(&lm, d + r * f, f, nc, row);
        if (cols == 2 && nc == 1) row[1] = row[0], row[0] = -row[1];
        post_apply(pt, row, cols);
        if (cols > 1) {
            KILN_TRY(labels_set(k, &l, y, r, argmax(row, cols)));
        } else {
            KILN_TRY(labels_set_pos(k, &l, y, r, row[0] >= (pt == POST_NONE ? 0.0 : 0.5)));
        }
    }
    return out_scores(k, 1, s, n, cols);
}

/* ------------------------------------------------------------------ LinearRegressor */

static kiln_status linreg_run(struct kiln_kctx *k)
{
    if (!k->state) return kiln_cpu_run_unprepared(k, linreg_prepare, linreg_run);
    const struct model_state *ms = k->state;
    size_t n, f;
    double *d;
    KILN_TRY(read_x(k, NULL, &n, &f, &d));
    const struct linear lm = ms->lm;
    int64_t tg = ms->targets;
    if (ms->st) return kept_fail(k, ms->st, ms->msg);
    const int pt = ms->pt;
    size_t need;
    if (tg < 1 || !kiln_mul_size((size_t)tg, f, &need) || lm.nw != need)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "%zu coefficients; expected targets (%lld) x F (%zu)", lm.nw,
                          (long long)tg, f);
    size_t nt = (size_t)tg;
    if (lm.nb && lm.nb != nt)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "%zu intercepts; expected %zu (one per target)", lm.nb, nt);
    double *s;
    KILN_TRY(scratch_array(k, n, nt * sizeof *s, (void **)&s));
    for (size_t r = 0; r < n; r++) {
        linear_row(&lm, d + r * f, f, nt, s + r * nt);
        post_apply(pt, s + r * nt, nt);
    }
    return out_scores(k, 0, s, n, nt);
}

/* ------------------------------------------------------------------ SVM */

static double svm_kdot(const struct svm_kernel *sk, int type, const double *a, const float *b, size_t f)
{
    double s = 0;
    if (type == KERN_RBF) {
        for (size_t j = 0; j < f; j++) s += (a[j] - b[j]) * (a[j] - b[j]);
        return exp(-sk->gamma * s);
    }
    for (size_t j = 0; j < f; j++) s += a[j] * b[j];
    if (type == KERN_POLY) return pow(s * sk->gamma + sk->coef0, sk->degree);
    if (type == KERN_SIGMOID) return tanh(s * sk->gamma + sk->coef0);
    return s;
}

/* libsvm's pairwise coupling (multiclass_probability): class probabilities p[0..kc) from
 * the pairwise probabilities r[i * kc + j]. q is kc * kc scratch, qp kc scratch. */
static void svm_coupling(size_t kc, const double *r, double *q, double *qp, double *p)
{
    if (kc < 2) {
        if (kc) p[0] = 1;
        return;
    }
    size_t max_iter = kc > 100 ? kc : 100;
    double eps = 0.005 / (double)kc;
    for (size_t t = 0; t < kc; t++) {
        p[t] = 1.0 / (double)kc;
        q[t * kc + t] = 0;
        for (size_t j = 0; j < t; j++) {
            q[t * kc + t] += r[j * kc + t] * r[j * kc + t];
            q[t * kc + j] = q[j * kc + t];
        }
        for (size_t j = t + 1; j < kc; j++) {
            q[t * kc + t] += r[j * kc + t] * r[j * kc + t];
            q[t * kc + j] = -r[j * kc + t] * r[t * kc + j];
        }
    }
    for (size_t it = 0; it < max_iter; it++) {
        double pqp = 0, max_err = 0;
        for (size_t t = 0; t < kc; t++) {
            qp[t] = 0;
            for (size_t j = 0; j < kc; j++) qp[t] += q[t * kc + j] * p[j];
            pqp += p[t] * qp[t];
        }
        for (size_t t = 0; t < kc; t++) {
            double e = fabs(qp[t] - pqp);
            if (e > max_err) max_err = e;
        }
        if (max_err < eps) break;
        for (size_t t = 0; t < kc; t++) {
            double diff = (-qp[t] + pqp) / q[t * kc + t];
            p[t] += diff;
            pqp = (pqp + diff * (diff * q[t * kc + t] + 2 * qp[t])) / ((1 + diff) * (1 + diff));
            for (size_t j = 0; j < kc; j++) {
                qp[j] = (qp[j] + diff * q[t * kc + j]) / (1 + diff);
                p[j] /= 1 + diff;
            }
        }
    }
}

/* SVMClassifier as the reference runtime computes it. With vectors_per_class (SVC mode) the
 * one-vs-one scores rho[e] + sum coef * K(x, sv) vote for classes; with prob_a/prob_b they
 * are turned into class probabilities (Platt scaling + pairwise coupling), else the raw
 * pairwise scores are the output. Without support vectors (linear mode) score c is
 * rho[c] + x . coefficients[c] when rho has one value per class, else rho[0] + ... (the
 * reference reads rho[0] only). A single score with two class labels is written as two
 * columns (LOGISTIC/SOFTMAX/SOFTMAX_ZERO of [-s, s], or [-s, s] for NONE). */
static kiln_status svmclass_run(struct kiln_kctx *k)
{
    if (!k->state) return kiln_cpu_run_unprepared(k, svmclass_prepare, svmclass_run);
    const struct model_state *ms = k->state;
    size_t n, f;
    double *d;
    KILN_TRY(read_x(k, NULL, &n, &f, &d));
    if (ms->st) return kept_fail(k, ms->st, ms->msg);
    const struct labels l = ms->l;
    const struct svm_kernel sk = ms->sk;
    const int pt = ms->pt;
    const float *coef = ms->coef, *sv = ms->sv, *rho = ms->rho, *pa = ms->pa, *pb = ms->pb;
    const int64_t *vpc = ms->vpc;
    size_t ncoef = ms->ncoef, nsv = ms->nsv;
    size_t nrho = ms->nrho, na = ms->na;
    size_t nb = ms->nb, nvpc = ms->nvpc;
    size_t kc = l.n > 1 ? l.n : 1, nvec = 0;
    for (size_t i = 0; i < nvpc; i++) {
        if (vpc[i] < 0 || vpc[i] > (int64_t)KILN_MAX_NUMEL)
            return kiln_kfail(k, KILN_E_INVALID_MODEL, "vectors_per_class[%zu] = %lld is invalid", i, (long long)vpc[i]);
        nvec += (size_t)vpc[i];
    }
    bool svc = nvec > 0;
    size_t npairs = kc * (kc - 1) / 2, need;
    if (svc) {
        if (nvpc != kc)
            return kiln_kfail(k, KILN_E_INVALID_MODEL, "vectors_per_class has %zu entries; expected %zu (classes)",
                              nvpc, kc);
        if (!kiln_mul_size(nvec, f, &need) || nsv != need)
            return kiln_kfail(k, KILN_E_INVALID_MODEL, "%zu support_vectors values; expected %zu vectors x %zu features",
                              nsv, nvec, f);
        if (!kiln_mul_size(kc - 1, nvec, &need) || ncoef != need)
            return kiln_kfail(k, KILN_E_INVALID_MODEL, "%zu coefficients; expected (classes - 1) x vectors = %zu",
                              ncoef, need);
        if (nrho < npairs)
            return kiln_kfail(k, KILN_E_INVALID_MODEL, "%zu rho values; expected %zu (one per class pair)", nrho, npairs);
        if (na != nb || (na && na < npairs))
            return kiln_kfail(k, KILN_E_INVALID_MODEL, "prob_a (%zu) and prob_b (%zu) must match the %zu class pairs",
                              na, nb, npairs);
    } else {
        if (!kiln_mul_size(kc, f, &need) || ncoef != need)
            return kiln_kfail(k, KILN_E_INVALID_MODEL, "%zu coefficients; expected classes (%zu) x features (%zu)",
                              ncoef, kc, f);
        if (nrho < 1) return kiln_kfail(k, KILN_E_INVALID_MODEL, "rho is empty; expected at least 1 value");
    }
    bool proba = svc && na > 0, all_pos = true;
    for (size_t i = 0; i < ncoef; i++)
        if (coef[i] < 0) all_pos = false;
    size_t nraw = proba ? kc : svc ? npairs : kc;
    bool two_col = nraw == 1 && nrho == 1 && l.n == 2 && pt != POST_PROBIT;
    size_t cols = two_col ? 2 : nraw;

    double *kern = NULL, *votes = NULL, *raw, *out, *pr = NULL, *q = NULL, *qp = NULL;
    size_t *start = NULL;
    KILN_TRY(scratch_array(k, nraw + 1, sizeof *raw, (void **)&raw));
    KILN_TRY(scratch_array(k, n, cols * sizeof *out, (void **)&out));
    if (svc) {
        KILN_TRY(scratch_array(k, nvec, sizeof *kern, (void **)&kern));
        KILN_TRY(scratch_array(k, kc, sizeof *votes, (void **)&votes));
        KILN_TRY(scratch_array(k, kc, sizeof *start, (void **)&start));
        for (size_t i = 1; i < kc; i++) start[i] = start[i - 1] + (size_t)vpc[i - 1];
    }
    if (proba) {
        KILN_TRY(scratch_array(k, kc, kc * sizeof *pr, (void **)&pr));
        KILN_TRY(scratch_array(k, kc, kc * sizeof *q, (void **)&q));
        KILN_TRY(scratch_array(k, kc, sizeof *qp, (void **)&qp));
    }
    struct kiln_tensor *y;
    KILN_TRY(labels_out(k, &l, n, &y));
    for (size_t r = 0; r < n; r++) {
        const double *xr = d + r * f;
        double *sc = raw, max_w;
        size_t max_c;
        if (svc) {
            for (size_t v = 0; v < nvec; v++) kern[v] = svm_kdot(&sk, sk.type, xr, sv + v * f, f);
            memset(votes, 0, kc * sizeof *votes);
            size_t e = 0;
            for (size_t i = 0; i < kc; i++)
                for (size_t j = i + 1; j < kc; j++, e++) {
                    double s = rho[e];
                    for (size_t v = 0; v < (size_t)vpc[i]; v++) s += coef[(j - 1) * nvec + start[i] + v] * kern[start[i] + v];
                    for (size_t v = 0; v < (size_t)vpc[j]; v++) s += coef[i * nvec + start[j] + v] * kern[start[j] + v];
                    sc[e] = s;
                    votes[s > 0 ? i : j] += 1;
                }
            if (proba) {
                /* Platt scaling of each pair, clipped away from 0 and 1, then coupling. */
                e = 0;
                for (size_t i = 0; i < kc; i++)
                    for (size_t j = i + 1; j < kc; j++, e++) {
                        double p = logistic(-(sc[e] * pa[e] + pb[e]));
                        p = p < 1e-7 ? 1e-7 : p > 1 - 1e-7 ? 1 - 1e-7 : p;
                        pr[i * kc + j] = p;
                        pr[j * kc + i] = 1 - p;
                    }
                svm_coupling(kc, pr, q, qp, sc);
            }
            max_c = argmax(votes, kc);
            max_w = votes[max_c];
        } else {
            for (size_t c = 0; c < kc; c++)
                sc[c] = rho[nrho == kc ? c : 0] + svm_kdot(&sk, KERN_LINEAR, xr, coef + c * f, f);
            max_c = argmax(sc, kc);
            max_w = sc[max_c];
        }
        /* The label, as set_score_svm in the reference decides it. */
        if (nrho == 1 && l.n != 2) {
            size_t raw_label = max_w > 0 ? 1 : 0; /* a label value, not an index */
            if (l.is_str) KILN_TRY(labels_set(k, &l, y, r, raw_label));
            else ((int64_t *)y->data)[r] = (int64_t)raw_label;
        } else if (nrho == 1 && !proba && all_pos && max_w >= 0.5) {
            KILN_TRY(labels_set(k, &l, y, r, 1));
        } else {
            KILN_TRY(labels_set(k, &l, y, r, max_c));
        }
        double *o = out + r * cols;
        if (two_col) {
            o[0] = -sc[0], o[1] = sc[0];
            if (pt != POST_NONE) post_apply(pt, o, 2);
        } else {
            memcpy(o, sc, nraw * sizeof *o);
            post_apply(pt, o, nraw);
        }
    }
    return out_scores(k, 1, out, n, cols);
}

/* SVMRegressor: with n_supports > 0, y = rho[0] + sum_j coef[j] K(x, sv_j); else
 * y = rho[0] + x . coefficients. one_class maps y to +1 (y > 0) or -1. Output [N, 1]. */
static kiln_status svmreg_run(struct kiln_kctx *k)
{
    if (!k->state) return kiln_cpu_run_unprepared(k, svmreg_prepare, svmreg_run);
    const struct model_state *ms = k->state;
    size_t n, f;
    double *d;
    KILN_TRY(read_x(k, NULL, &n, &f, &d));
    if (ms->st) return kept_fail(k, ms->st, ms->msg);
    const struct svm_kernel sk = ms->sk;
    const int pt = ms->pt;
    const float *coef = ms->coef, *sv = ms->sv, *rho = ms->rho;
    size_t ncoef = ms->ncoef, nsv = ms->nsv;
    size_t nrho = ms->nrho, need;
    int64_t ns = ms->n_supports;
    bool one_class = ms->one_class;
    if (ns < 0 || ns > (int64_t)KILN_MAX_NUMEL)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "n_supports = %lld is invalid", (long long)ns);
    if (nrho < 1) return kiln_kfail(k, KILN_E_INVALID_MODEL, "rho is empty; expected at least 1 value");
    if (ns > 0) {
        if (!kiln_mul_size((size_t)ns, f, &need) || nsv != need || ncoef < (size_t)ns)
            return kiln_kfail(k, KILN_E_INVALID_MODEL, "%zu support_vectors values and %zu coefficients; expected "
                              "%lld x %zu and %lld", nsv, ncoef, (long long)ns, f, (long long)ns);
    } else if (ncoef != f) {
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "%zu coefficients; expected F = %zu (linear mode)", ncoef, f);
    }
    double *out;
    KILN_TRY(scratch_array(k, n + 1, sizeof *out, (void **)&out));
    for (size_t r = 0; r < n; r++) {
        const double *xr = d + r * f;
        double s = rho[0];
        if (ns > 0)
            for (size_t j = 0; j < (size_t)ns; j++) s += coef[j] * svm_kdot(&sk, sk.type, xr, sv + j * f, f);
        else
            s += svm_kdot(&sk, KERN_LINEAR, xr, coef, f);
        out[r] = one_class ? (s > 0 ? 1.0 : -1.0) : s;
        post_apply(pt, out + r, 1);
    }
    return out_scores(k, 0, out, n, 1);
}

/* ------------------------------------------------------------------ tree ensembles */

enum { TM_LEQ, TM_LT, TM_GTE, TM_GT, TM_EQ, TM_NEQ, TM_MEMBER, TM_LEAF, TM_ALWAYS };
enum { AGG_AVERAGE, AGG_SUM, AGG_MIN, AGG_MAX };

/* A compiled node. Interior: compare x[feature] with the threshold (split for double X,
 * split32, the threshold rounded to float, for other X: onnxruntime compares in the input's
 * type) or the member set members[off..off+len) (members32 likewise), go to nodes[t] or
 * nodes[f]. TM_ALWAYS (both branches the same) goes to t without reading x. Leaf:
 * votes[off..off+len). */
struct tnode {
    double split, split32;
    size_t feature, t, f, off, len;
    uint8_t mode, nan_true;
};

struct tvote {
    size_t target;
    double w;
};

/* A compiled ensemble, built once in prepare. */
struct forest {
    struct tnode *nodes;
    size_t n_nodes;
    size_t *roots;
    size_t n_roots;
    double *members, *members32;
    struct tvote *votes;
    size_t n_targets;
    bool reads;            /* some interior node reads a feature */
    size_t max_feature;    /* the largest feature one reads */
    kiln_status cycle_st;  /* the node graph has a cycle: run reports cycle_msg */
    const char *cycle_msg;
};

/* A threshold rounded to float precision. */
static double thr_f32(double v) { return (double)(float)v; }

/* What the builders cannot check, done once: the largest feature an interior node reads
 * (checked against X's F by forest_features at run), and that the node graph has no cycle
 * (Kahn's algorithm over all nodes), so evaluation always ends at a leaf; a cycle is kept
 * for run to report after the features, as the check did before. */
static kiln_status forest_finish(struct pmem *m, struct forest *fo)
{
    size_t n = fo->n_nodes, *indeg, *stack, top = 0, seen = 0;
    for (size_t i = 0; i < n; i++) {
        const struct tnode *nd = &fo->nodes[i];
        if (nd->mode == TM_LEAF || nd->mode == TM_ALWAYS) continue;
        if (!fo->reads || nd->feature > fo->max_feature) fo->max_feature = nd->feature;
        fo->reads = true;
    }
    KILN_TRY(pm_array(m, n, sizeof *indeg, false, (void **)&indeg));
    KILN_TRY(pm_array(m, n, sizeof *stack, false, (void **)&stack));
    for (size_t i = 0; i < n; i++)
        if (fo->nodes[i].mode != TM_LEAF) indeg[fo->nodes[i].t]++, indeg[fo->nodes[i].f]++;
    for (size_t i = 0; i < n; i++)
        if (!indeg[i]) stack[top++] = i;
    while (top) {
        const struct tnode *nd = &fo->nodes[stack[--top]];
        seen++;
        if (nd->mode == TM_LEAF) continue;
        if (--indeg[nd->t] == 0) stack[top++] = nd->t;
        if (--indeg[nd->f] == 0) stack[top++] = nd->f;
    }
    if (seen == n) return KILN_OK;
    struct capture c;
    capture_begin(m->p, &c);
    kiln_status st = kiln_kfail(&m->p->kc, KILN_E_INVALID_MODEL, "the tree nodes form a cycle (%zu of %zu "
                                "nodes are on or after one)", n - seen, n);
    return capture_end(m->p, &c, st, &fo->cycle_st, &fo->cycle_msg);
}

/* Run's part of the forest check: every interior node's feature is below F; then the cycle
 * prepare found, if any. */
static kiln_status forest_check(struct kiln_kctx *k, const struct forest *fo, size_t nfeat)
{
    if (fo->reads && fo->max_feature >= nfeat)
        for (size_t i = 0; i < fo->n_nodes; i++) {
            const struct tnode *nd = &fo->nodes[i];
            if (nd->mode != TM_LEAF && nd->mode != TM_ALWAYS && nd->feature >= nfeat)
                return kiln_kfail(k, KILN_E_INVALID_ARG, "tree node %zu reads feature %zu; X has %zu features", i,
                                  nd->feature, nfeat);
        }
    if (fo->cycle_st) return kept_fail(k, fo->cycle_st, fo->cycle_msg);
    return KILN_OK;
}

/* The leaf row x reaches from node `root`, comparing with the float-rounded thresholds when
 * f32. forest_check must have passed. */
static const struct tnode *forest_leaf(const struct forest *fo, size_t root, const double *x, bool f32)
{
    const double *members = f32 ? fo->members32 : fo->members;
    const struct tnode *nd = &fo->nodes[root];
    while (nd->mode != TM_LEAF) {
        bool go = true;
        if (nd->mode != TM_ALWAYS) {
            double v = x[nd->feature], s = f32 ? nd->split32 : nd->split;
            if (isnan(v) && nd->nan_true) go = true;
            else
                switch (nd->mode) {
                case TM_LEQ: go = v <= s; break;
                case TM_LT: go = v < s; break;
                case TM_GTE: go = v >= s; break;
                case TM_GT: go = v > s; break;
                case TM_EQ: go = v == s; break;
                case TM_NEQ: go = v != s; break;
                default: /* TM_MEMBER */
                    go = false;
                    for (size_t j = 0; j < nd->len && !go; j++) go = v == members[nd->off + j];
                    break;
                }
        }
        nd = &fo->nodes[go ? nd->t : nd->f];
    }
    return nd;
}

/* Aggregates the votes of every tree for row x into acc[0..n_targets) (has[] marks targets
 * that got a vote; both are reset here). AVERAGE divides by the number of trees; MIN/MAX
 * leave unvoted targets at 0. */
static void forest_row(const struct forest *fo, const double *x, bool f32, int agg, double *acc,
                       unsigned char *has)
{
    memset(acc, 0, fo->n_targets * sizeof *acc);
    memset(has, 0, fo->n_targets);
    for (size_t r = 0; r < fo->n_roots; r++) {
        const struct tnode *lf = forest_leaf(fo, fo->roots[r], x, f32);
        for (size_t j = 0; j < lf->len; j++) {
            const struct tvote *v = &fo->votes[lf->off + j];
            double *a = &acc[v->target];
            if (agg == AGG_SUM || agg == AGG_AVERAGE) *a += v->w;
            else if (!has[v->target]) *a = v->w;
            else if (agg == AGG_MIN ? v->w < *a : v->w > *a) *a = v->w;
            has[v->target] = 1;
        }
    }
    if (agg == AGG_AVERAGE && fo->n_roots)
        for (size_t t = 0; t < fo->n_targets; t++) acc[t] /= (double)fo->n_roots;
}

/* The state of the three tree ensemble ops. st/msg: what is wrong with the attributes, found
 * while building the forest (run reports it right after reading X); bv_st/bv_msg: a
 * base_values problem (reported after the forest check). */
struct te_state {
    kiln_status st;
    const char *msg;
    struct forest fo;
    int agg, pt;
    struct labels l;      /* TreeEnsembleClassifier */
    const int64_t *cids;  /* TreeEnsembleClassifier: class_ids */
    bool binary;
    size_t cols;
    kiln_status bv_st;
    const char *bv_msg;
    double *bv;           /* base_values (TreeEnsembleClassifier/Regressor) */
    size_t nb;
};

/* ---- TreeEnsemble (5) */

static kiln_status int_list(struct kiln_kctx *k, const char *name, size_t want, const int64_t **v)
{
    size_t n = kiln_attr_ints(k, name, v);
    if (n != want)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "attribute %s has %zu entries; expected %zu", name, n, want);
    return KILN_OK;
}

/* nodes_missing_value_tracks_true: absent (*mvt = NULL) or one entry per node (n). */
static kiln_status mvt_list(struct kiln_kctx *k, size_t n, const int64_t **mvt)
{
    if (kiln_attr_ints(k, "nodes_missing_value_tracks_true", mvt) == 0) {
        *mvt = NULL;
        return KILN_OK;
    }
    return int_list(k, "nodes_missing_value_tracks_true", n, mvt);
}

/* Node i's child: a leaf index (offset past the nn interior nodes) or an interior index. */
static kiln_status te5_child(struct kiln_kctx *k, size_t i, const char *side, int64_t is_leaf, int64_t id,
                             size_t nn, size_t nl, size_t *out)
{
    size_t lim = is_leaf ? nl : nn;
    if (id < 0 || (uint64_t)id >= lim)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "node %zu: %s %s id %lld out of range [0, %zu)", i, side,
                          is_leaf ? "leaf" : "node", (long long)id, lim);
    *out = is_leaf ? nn + (size_t)id : (size_t)id;
    return KILN_OK;
}

static kiln_status te5_build(struct pmem *m, struct forest *fo, int *agg, int *pt)
{
    struct kiln_kctx *k = &m->p->kc;
    const int64_t *feat, *tid, *tleaf, *fid, *fleaf, *mvt, *ltgt, *roots;
    size_t nn = kiln_attr_ints(k, "nodes_featureids", &feat);
    KILN_TRY(int_list(k, "nodes_truenodeids", nn, &tid));
    KILN_TRY(int_list(k, "nodes_trueleafs", nn, &tleaf));
    KILN_TRY(int_list(k, "nodes_falsenodeids", nn, &fid));
    KILN_TRY(int_list(k, "nodes_falseleafs", nn, &fleaf));
    KILN_TRY(mvt_list(k, nn, &mvt));
    const struct kiln_tensor *modes = kiln_attr_t(k, "nodes_modes"), *splits = kiln_attr_t(k, "nodes_splits");
    const struct kiln_tensor *lw = kiln_attr_t(k, "leaf_weights"), *mem = kiln_attr_t(k, "membership_values");
    if (!modes || !splits || !lw)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "attributes nodes_modes, nodes_splits and leaf_weights are required");
    if (kiln_tensor_numel(modes) != nn || kiln_tensor_numel(splits) != nn || !kiln_dtype_is_int(modes->dtype) ||
        !kiln_dtype_is_float(splits->dtype))
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "nodes_modes (%s, %zu) and nodes_splits (%s, %zu) must be "
                          "uint8 and float tensors of %zu entries", kiln_dtype_name(modes->dtype),
                          kiln_tensor_numel(modes), kiln_dtype_name(splits->dtype), kiln_tensor_numel(splits), nn);
    size_t nl = kiln_attr_ints(k, "leaf_targetids", &ltgt);
    if (kiln_tensor_numel(lw) != nl || !kiln_dtype_is_float(lw->dtype))
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "leaf_weights (%s, %zu) must be a float tensor of %zu entries "
                          "(leaf_targetids)", kiln_dtype_name(lw->dtype), kiln_tensor_numel(lw), nl);
    if (mem && !kiln_dtype_is_float(mem->dtype))
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "membership_values is %s; expected a float tensor",
                          kiln_dtype_name(mem->dtype));
    fo->n_roots = kiln_attr_ints(k, "tree_roots", &roots);
    int64_t nt = kiln_attr_i(k, "n_targets", -1);
    if (nt < 0) { /* absent: enough targets for every leaf */
        nt = 1;
        for (size_t j = 0; j < nl; j++)
            if (ltgt[j] >= nt && ltgt[j] < (int64_t)KILN_MAX_NUMEL) nt = ltgt[j] + 1;
    }
    if (nt < 1 || nt > (int64_t)KILN_MAX_NUMEL)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "n_targets = %lld; expected >= 1", (long long)nt);
    fo->n_targets = (size_t)nt;
    int64_t a = kiln_attr_i(k, "aggregate_function", 1), p = kiln_attr_i(k, "post_transform", 0);
    if (a < AGG_AVERAGE || a > AGG_MAX)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "aggregate_function = %lld; expected 0..3", (long long)a);
    *agg = (int)a;
    if (p < 0 || p > 4)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "post_transform = %lld; expected 0..4", (long long)p);
    *pt = (int)p;

    fo->n_nodes = nn + nl;
    size_t nmem = mem ? kiln_tensor_numel(mem) : 0, mcur = 0;
    KILN_TRY(pm_array(m, fo->n_nodes, sizeof *fo->nodes, true, (void **)&fo->nodes));
    KILN_TRY(pm_array(m, nl, sizeof *fo->votes, true, (void **)&fo->votes));
    KILN_TRY(pm_array(m, nmem, sizeof *fo->members, true, (void **)&fo->members));
    KILN_TRY(pm_array(m, nmem, sizeof *fo->members32, true, (void **)&fo->members32));
    KILN_TRY(pm_array(m, fo->n_roots, sizeof *fo->roots, true, (void **)&fo->roots));
    for (size_t j = 0; j < nmem; j++) {
        fo->members[j] = kiln_tensor_get_f64(mem, j);
        fo->members32[j] = thr_f32(fo->members[j]);
    }
    for (size_t i = 0; i < nn; i++) {
        struct tnode *nd = &fo->nodes[i];
        int64_t md = kiln_tensor_get_i64(modes, i);
        if (md < TM_LEQ || md > TM_MEMBER)
            return kiln_kfail(k, KILN_E_INVALID_MODEL, "node %zu: mode %lld; expected 0..6", i, (long long)md);
        if (feat[i] < 0) return kiln_kfail(k, KILN_E_INVALID_MODEL, "node %zu: negative feature id", i);
        nd->mode = (uint8_t)md;
        nd->feature = (size_t)feat[i];
        nd->split = kiln_tensor_get_f64(splits, i);
        nd->split32 = thr_f32(nd->split);
        nd->nan_true = mvt && mvt[i] != 0;
        KILN_TRY(te5_child(k, i, "true", tleaf[i], tid[i], nn, nl, &nd->t));
        KILN_TRY(te5_child(k, i, "false", fleaf[i], fid[i], nn, nl, &nd->f));
        if (md == TM_MEMBER) { /* the next NaN-terminated run of membership_values */
            nd->off = mcur;
            while (mcur < nmem && !isnan(fo->members[mcur])) mcur++;
            if (mcur == nmem)
                return kiln_kfail(k, KILN_E_INVALID_MODEL, "node %zu is BRANCH_MEMBER but membership_values has no "
                                  "NaN-terminated set left for it", i);
            nd->len = mcur++ - nd->off;
        }
        if (nd->t == nd->f) nd->mode = TM_ALWAYS;
    }
    for (size_t j = 0; j < nl; j++) {
        if (ltgt[j] < 0 || (uint64_t)ltgt[j] >= fo->n_targets)
            return kiln_kfail(k, KILN_E_INVALID_MODEL, "leaf %zu: target id %lld out of range [0, %zu)", j,
                              (long long)ltgt[j], fo->n_targets);
        fo->votes[j] = (struct tvote){(size_t)ltgt[j], kiln_tensor_get_f64(lw, j)};
        fo->nodes[nn + j] = (struct tnode){.mode = TM_LEAF, .off = j, .len = 1};
    }
    for (size_t r = 0; r < fo->n_roots; r++) {
        if (roots[r] < 0 || (uint64_t)roots[r] >= nn)
            return kiln_kfail(k, KILN_E_INVALID_MODEL, "tree_roots[%zu] = %lld out of range [0, %zu)", r,
                              (long long)roots[r], nn);
        fo->roots[r] = (size_t)roots[r];
    }
    return KILN_OK;
}

static kiln_status te5_prepare(struct kiln_kprep *p)
{
    struct te_state *s;
    struct pmem m = {.p = p};
    KILN_TRY(kiln_kprep_alloc(p, sizeof *s, (void **)&s));
    p->state = s;
    s->agg = AGG_SUM;
    s->pt = POST_NONE;
    struct capture c;
    capture_begin(p, &c);
    kiln_status st = te5_build(&m, &s->fo, &s->agg, &s->pt);
    st = capture_end(p, &c, st, &s->st, &s->msg);
    if (!st && !s->st) st = forest_finish(&m, &s->fo);
    pm_free(&m);
    return st;
}

static kiln_status tree_ensemble_run(struct kiln_kctx *k)
{
    if (!k->state) return kiln_cpu_run_unprepared(k, te5_prepare, tree_ensemble_run);
    const struct te_state *ts = k->state;
    const struct kiln_tensor *x;
    KILN_TRY(kiln_in_req(k, 0, &x));
    if (x->dtype != KILN_DTYPE_F32 && x->dtype != KILN_DTYPE_F64 && x->dtype != KILN_DTYPE_F16)
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "input X is %s; expected float, double or float16",
                          kiln_dtype_name(x->dtype));
    size_t n, f;
    double *d;
    KILN_TRY(read_matrix(k, x, true, &n, &f, &d));
    if (ts->st) return kept_fail(k, ts->st, ts->msg);
    const struct forest *fo = &ts->fo;
    KILN_TRY(forest_check(k, fo, f));
    const bool f32 = x->dtype != KILN_DTYPE_F64;
    double *acc;
    unsigned char *has;
    KILN_TRY(scratch_array(k, fo->n_targets, sizeof *acc, (void **)&acc));
    KILN_TRY(scratch_array(k, fo->n_targets, 1, (void **)&has));
    int64_t od[2] = {(int64_t)n, (int64_t)fo->n_targets};
    struct kiln_tensor *y;
    KILN_TRY(kiln_out_tensor(k, 0, x->dtype, 2, od, &y));
    for (size_t r = 0; r < n; r++) {
        forest_row(fo, d + r * f, f32, ts->agg, acc, has);
        post_apply(ts->pt, acc, fo->n_targets);
        for (size_t t = 0; t < fo->n_targets; t++) kiln_tensor_set_f64(y, r * fo->n_targets + t, acc[t]);
    }
    return KILN_OK;
}

/* ---- TreeEnsembleClassifier / TreeEnsembleRegressor (1, 3) */

struct key3 {
    int64_t a, b;
    size_t i;
};

static int key3_cmp(const void *x, const void *y)
{
    const struct key3 *p = x, *q = y;
    if (p->a != q->a) return p->a < q->a ? -1 : 1;
    if (p->b != q->b) return p->b < q->b ? -1 : 1;
    return (p->i > q->i) - (p->i < q->i);
}

/* Index of (tree, node) among the sorted keys, or SIZE_MAX. */
static size_t key3_find(const struct key3 *keys, size_t n, int64_t tree, int64_t node)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (keys[mid].a < tree || (keys[mid].a == tree && keys[mid].b < node)) lo = mid + 1;
        else hi = mid;
    }
    return lo < n && keys[lo].a == tree && keys[lo].b == node ? keys[lo].i : SIZE_MAX;
}

/* Builds the forest of a v1/v3 tree ensemble: nodes named by (treeid, nodeid), votes from the
 * `prefix`_treeids/_nodeids/_ids/_weights attributes (prefix "class" or "target"), targets
 * below n_targets. Each tree's root is its first node in attribute order. The key tables are
 * temporary; the forest is kept. */
static kiln_status te1_build(struct pmem *m, const char *prefix, size_t n_targets, struct forest *fo)
{
    struct kiln_kctx *k = &m->p->kc;
    const int64_t *tree, *node, *feat, *tid, *fid, *mvt;
    const char *const *modes;
    size_t n = kiln_attr_ints(k, "nodes_treeids", &tree), nv;
    KILN_TRY(int_list(k, "nodes_nodeids", n, &node));
    KILN_TRY(int_list(k, "nodes_featureids", n, &feat));
    KILN_TRY(int_list(k, "nodes_truenodeids", n, &tid));
    KILN_TRY(int_list(k, "nodes_falsenodeids", n, &fid));
    KILN_TRY(mvt_list(k, n, &mvt));
    if (kiln_attr_strings(k, "nodes_modes", &modes) != n)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "nodes_modes has %zu entries; expected %zu",
                          kiln_attr_strings(k, "nodes_modes", &modes), n);
    double *vals;
    KILN_TRY(attr_doubles(m, "nodes_values", false, &vals, &nv));
    if (nv != n) return kiln_kfail(k, KILN_E_INVALID_MODEL, "nodes_values has %zu entries; expected %zu", nv, n);

    struct key3 *keys;
    KILN_TRY(pm_array(m, n, sizeof *keys, false, (void **)&keys));
    for (size_t i = 0; i < n; i++) keys[i] = (struct key3){tree[i], node[i], i};
    qsort(keys, n, sizeof *keys, key3_cmp);
    size_t ntrees = 0;
    for (size_t i = 0; i < n; i++) {
        if (i && keys[i].a == keys[i - 1].a && keys[i].b == keys[i - 1].b)
            return kiln_kfail(k, KILN_E_INVALID_MODEL, "tree %lld has node id %lld twice", (long long)keys[i].a,
                              (long long)keys[i].b);
        if (!i || keys[i].a != keys[i - 1].a) ntrees++;
    }
    fo->n_nodes = n;
    fo->n_roots = ntrees;
    fo->n_targets = n_targets;
    KILN_TRY(pm_array(m, n, sizeof *fo->nodes, true, (void **)&fo->nodes));
    KILN_TRY(pm_array(m, ntrees, sizeof *fo->roots, true, (void **)&fo->roots));
    for (size_t i = 0, r = 0; i < n; i++) {
        if (i && keys[i].a == keys[i - 1].a) {
            if (keys[i].i < fo->roots[r - 1]) fo->roots[r - 1] = keys[i].i;
        } else {
            fo->roots[r++] = keys[i].i;
        }
    }
    static const char *const mnames[] = {"BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT",
                                          "BRANCH_EQ",  "BRANCH_NEQ", "BRANCH_MEMBER", "LEAF"};
    for (size_t i = 0; i < n; i++) {
        struct tnode *nd = &fo->nodes[i];
        int md = -1;
        for (int j = 0; j < 8; j++)
            if (j != TM_MEMBER && strcmp(modes[i], mnames[j]) == 0) md = j;
        if (md < 0)
            return kiln_kfail(k, KILN_E_INVALID_MODEL, "node %zu: mode '%s'; expected BRANCH_LEQ, BRANCH_LT, "
                              "BRANCH_GTE, BRANCH_GT, BRANCH_EQ, BRANCH_NEQ or LEAF", i, modes[i]);
        nd->mode = (uint8_t)md;
        if (md == TM_LEAF) continue;
        if (feat[i] < 0) return kiln_kfail(k, KILN_E_INVALID_MODEL, "node %zu: negative feature id", i);
        nd->feature = (size_t)feat[i];
        nd->split = vals[i];
        nd->split32 = thr_f32(vals[i]);
        nd->nan_true = mvt && mvt[i] != 0;
        nd->t = key3_find(keys, n, tree[i], tid[i]);
        nd->f = key3_find(keys, n, tree[i], fid[i]);
        if (nd->t == SIZE_MAX || nd->f == SIZE_MAX)
            return kiln_kfail(k, KILN_E_INVALID_MODEL, "node %zu (tree %lld): branch to node id %lld, which tree "
                              "%lld does not have", i, (long long)tree[i],
                              (long long)(nd->t == SIZE_MAX ? tid[i] : fid[i]), (long long)tree[i]);
        if (nd->t == nd->f) nd->mode = TM_ALWAYS;
    }

    /* Votes, grouped by the leaf they belong to. */
    char name[48];
    const int64_t *vt, *vn, *vid;
    snprintf(name, sizeof name, "%s_treeids", prefix);
    nv = kiln_attr_ints(k, name, &vt);
    snprintf(name, sizeof name, "%s_nodeids", prefix);
    KILN_TRY(int_list(k, name, nv, &vn));
    snprintf(name, sizeof name, "%s_ids", prefix);
    KILN_TRY(int_list(k, name, nv, &vid));
    double *vw;
    size_t nw;
    snprintf(name, sizeof name, "%s_weights", prefix);
    KILN_TRY(attr_doubles(m, name, false, &vw, &nw));
    if (nw != nv) return kiln_kfail(k, KILN_E_INVALID_MODEL, "%s has %zu entries; expected %zu", name, nw, nv);
    struct key3 *vk;
    KILN_TRY(pm_array(m, nv, sizeof *vk, false, (void **)&vk));
    KILN_TRY(pm_array(m, nv, sizeof *fo->votes, true, (void **)&fo->votes));
    for (size_t j = 0; j < nv; j++) {
        size_t at = key3_find(keys, n, vt[j], vn[j]);
        if (at == SIZE_MAX)
            return kiln_kfail(k, KILN_E_INVALID_MODEL, "%s vote %zu names node %lld of tree %lld, which does not exist",
                              prefix, j, (long long)vn[j], (long long)vt[j]);
        if (vid[j] < 0 || (uint64_t)vid[j] >= n_targets)
            return kiln_kfail(k, KILN_E_INVALID_MODEL, "%s vote %zu: id %lld out of range [0, %zu)", prefix, j,
                              (long long)vid[j], n_targets);
        vk[j] = (struct key3){(int64_t)at, 0, j};
    }
    qsort(vk, nv, sizeof *vk, key3_cmp);
    for (size_t j = 0; j < nv; j++) {
        size_t v = vk[j].i;
        struct tnode *nd = &fo->nodes[vk[j].a];
        fo->votes[j] = (struct tvote){(size_t)vid[v], vw[v]};
        if (nd->mode != TM_LEAF) continue; /* a vote on an interior node is never reached */
        if (!nd->len) nd->off = j;
        nd->len++;
    }
    return KILN_OK;
}

/* base_values: none, one (for every column) or one per column; kept in the state, a wrong
 * count kept for run to report. */
static kiln_status base_values(struct pmem *m, size_t cols, struct te_state *s)
{
    struct capture c;
    capture_begin(m->p, &c);
    kiln_status st = attr_doubles(m, "base_values", true, &s->bv, &s->nb);
    if (!st && s->nb > 1 && s->nb != cols)
        st = kiln_kfail(&m->p->kc, KILN_E_INVALID_MODEL, "base_values has %zu entries; expected 1 or %zu",
                        s->nb, cols);
    return capture_end(m->p, &c, st, &s->bv_st, &s->bv_msg);
}

static kiln_status te_regressor_build(struct pmem *m, struct te_state *s)
{
    struct kiln_kctx *k = &m->p->kc;
    KILN_TRY(post_parse(k, &s->pt));
    const char *aggs = kiln_attr_s(k, "aggregate_function", "SUM");
    static const char *const anames[] = {"AVERAGE", "SUM", "MIN", "MAX"};
    s->agg = -1;
    for (int i = 0; i < 4; i++)
        if (strcmp(aggs, anames[i]) == 0) s->agg = i;
    if (s->agg < 0)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "aggregate_function '%s'; expected AVERAGE, SUM, MIN or MAX", aggs);
    int64_t nt = kiln_attr_i(k, "n_targets", -1);
    if (nt < 0) { /* absent: enough targets for every vote */
        const int64_t *ids;
        size_t ni = kiln_attr_ints(k, "target_ids", &ids);
        nt = 1;
        for (size_t j = 0; j < ni; j++)
            if (ids[j] >= nt && ids[j] < (int64_t)KILN_MAX_NUMEL) nt = ids[j] + 1;
    }
    if (nt < 1 || nt > (int64_t)KILN_MAX_NUMEL)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "n_targets = %lld; expected >= 1", (long long)nt);
    return te1_build(m, "target", (size_t)nt, &s->fo);
}

static kiln_status te_classifier_build(struct pmem *m, struct te_state *s)
{
    struct kiln_kctx *k = &m->p->kc;
    KILN_TRY(labels_read(k, "int64s", &s->l));
    KILN_TRY(post_parse(k, &s->pt));
    if (!s->l.n) return kiln_kfail(k, KILN_E_INVALID_MODEL, "classlabels_int64s or classlabels_strings must be set");
    return te1_build(m, "class", s->l.n, &s->fo);
}

/* Prepare of TreeEnsembleClassifier (classifier) and TreeEnsembleRegressor. */
static kiln_status te1_prepare(struct kiln_kprep *p, bool classifier)
{
    struct te_state *s;
    struct pmem m = {.p = p};
    KILN_TRY(kiln_kprep_alloc(p, sizeof *s, (void **)&s));
    p->state = s;
    s->pt = POST_NONE;
    struct capture c;
    capture_begin(p, &c);
    kiln_status st = classifier ? te_classifier_build(&m, s) : te_regressor_build(&m, s);
    st = capture_end(p, &c, st, &s->st, &s->msg);
    if (!st && !s->st) st = forest_finish(&m, &s->fo);
    if (!st && !s->st && classifier) {
        size_t ncid = kiln_attr_ints(&p->kc, "class_ids", &s->cids);
        s->binary = ncid > 0 && s->l.n <= 2;
        for (size_t j = 1; j < ncid && s->binary; j++) s->binary = s->cids[j] == s->cids[0];
        s->cols = s->binary ? 2 : s->l.n;
    }
    if (!st && !s->st) st = base_values(&m, classifier ? s->l.n : s->fo.n_targets, s);
    pm_free(&m);
    return st;
}

static kiln_status te_regressor_prepare(struct kiln_kprep *p) { return te1_prepare(p, false); }
static kiln_status te_classifier_prepare(struct kiln_kprep *p) { return te1_prepare(p, true); }

static kiln_status te_regressor_run(struct kiln_kctx *k)
{
    if (!k->state) return kiln_cpu_run_unprepared(k, te_regressor_prepare, te_regressor_run);
    const struct te_state *ts = k->state;
    const struct kiln_tensor *x;
    size_t n, f;
    double *d;
    KILN_TRY(read_x(k, &x, &n, &f, &d));
    if (ts->st) return kept_fail(k, ts->st, ts->msg);
    const struct forest *fo = &ts->fo;
    KILN_TRY(forest_check(k, fo, f));
    if (ts->bv_st) return kept_fail(k, ts->bv_st, ts->bv_msg);
    const bool f32 = x->dtype != KILN_DTYPE_F64;
    const double *bv = ts->bv;
    size_t nb = ts->nb;
    double *acc;
    unsigned char *has;
    KILN_TRY(scratch_array(k, n, fo->n_targets * sizeof *acc, (void **)&acc));
    KILN_TRY(scratch_array(k, fo->n_targets, 1, (void **)&has));
    for (size_t r = 0; r < n; r++) {
        double *row = acc + r * fo->n_targets;
        forest_row(fo, d + r * f, f32, ts->agg, row, has);
        for (size_t t = 0; t < fo->n_targets && nb; t++) row[t] += bv[nb == 1 ? 0 : t];
        post_apply(ts->pt, row, fo->n_targets);
    }
    return out_scores(k, 0, acc, n, fo->n_targets);
}

/* Classifier: scores start at base_values and sum the class votes. When every vote names
 * the same class and there are at most two labels (the binary case), the score s of that
 * class becomes column 1 and column 0 is 1 - s (NONE, PROBIT) or -s (others), as in the
 * reference; with a single int label L the labels are L (column 1 wins) or 0. */
static kiln_status te_classifier_run(struct kiln_kctx *k)
{
    if (!k->state) return kiln_cpu_run_unprepared(k, te_classifier_prepare, te_classifier_run);
    const struct te_state *ts = k->state;
    const struct kiln_tensor *x;
    size_t n, f;
    double *d;
    KILN_TRY(read_x(k, &x, &n, &f, &d));
    if (ts->st) return kept_fail(k, ts->st, ts->msg);
    const struct labels *l = &ts->l;
    const int pt = ts->pt;
    const struct forest *fo = &ts->fo;
    KILN_TRY(forest_check(k, fo, f));
    if (ts->bv_st) return kept_fail(k, ts->bv_st, ts->bv_msg);
    const bool f32 = x->dtype != KILN_DTYPE_F64, binary = ts->binary;
    const int64_t *cids = ts->cids;
    size_t cols = ts->cols, nb = ts->nb;
    const double *bv = ts->bv;
    double *acc, *out;
    unsigned char *has;
    KILN_TRY(scratch_array(k, l->n, sizeof *acc, (void **)&acc));
    KILN_TRY(scratch_array(k, l->n, 1, (void **)&has));
    KILN_TRY(scratch_array(k, n, cols * sizeof *out, (void **)&out));
    struct kiln_tensor *y;
    KILN_TRY(labels_out(k, l, n, &y));
    for (size_t r = 0; r < n; r++) {
        double *row = out + r * cols;
        forest_row(fo, d + r * f, f32, AGG_SUM, acc, has);
        for (size_t c = 0; c < l->n; c++) acc[c] += nb ? bv[nb == 1 ? 0 : c] : 0.0;
        if (binary) {
            double s = acc[cids[0]];
            row[1] = s;
            row[0] = pt == POST_NONE || pt == POST_PROBIT ? 1 - s : -s;
        } else {
            memcpy(row, acc, l->n * sizeof *row);
        }
        post_apply(pt, row, cols);
        size_t best = argmax(row, cols);
        if (l->n == 1) /* binary with one label: column 1 is that label, column 0 "none" */
            KILN_TRY(labels_set_pos(k, l, y, r, best != 0));
        else
            KILN_TRY(labels_set(k, l, y, r, best));
    }
    return out_scores(k, 1, out, n, cols);
}

/* ------------------------------------------------------------------ table */

const struct kiln_cpu_op kiln_cpu_ops_ml[] = {
    {"ArrayFeatureExtractor", ML_DOMAIN, 1, 0, afe_run, NULL, 0},
    {"Binarizer", ML_DOMAIN, 1, 0, binarizer_run, binarizer_prepare, 0},
    {"CategoryMapper", ML_DOMAIN, 1, 0, catmap_run, catmap_prepare, 0},
    {"FeatureVectorizer", ML_DOMAIN, 1, 0, featvec_run, featvec_prepare, 0},
    {"Imputer", ML_DOMAIN, 1, 0, imputer_run, imputer_prepare, 0},
    {"LabelEncoder", ML_DOMAIN, 1, 0, label_encoder_run, lenc_prepare, 0},
    {"LinearClassifier", ML_DOMAIN, 1, 0, linclass_run, linclass_prepare, 0},
    {"LinearRegressor", ML_DOMAIN, 1, 0, linreg_run, linreg_prepare, 0},
    {"Normalizer", ML_DOMAIN, 1, 0, normalizer_run, normalizer_prepare, 0},
    {"OneHotEncoder", ML_DOMAIN, 1, 0, onehot_run, onehot_prepare, 0},
    {"Scaler", ML_DOMAIN, 1, 0, scaler_run, scaler_prepare, 0},
    {"SVMClassifier", ML_DOMAIN, 1, 0, svmclass_run, svmclass_prepare, 0},
    {"SVMRegressor", ML_DOMAIN, 1, 0, svmreg_run, svmreg_prepare, 0},
    {"TreeEnsemble", ML_DOMAIN, 5, 0, tree_ensemble_run, te5_prepare, 0},
    {"TreeEnsembleClassifier", ML_DOMAIN, 1, 4, te_classifier_run, te_classifier_prepare, 0},
    {"TreeEnsembleRegressor", ML_DOMAIN, 1, 4, te_regressor_run, te_regressor_prepare, 0},
    {0},
};
