/* tensor_misc.c: ONNX ops that create or select tensor data, every opset version, following
 * onnx/onnx docs/Operators.md: Constant (value, sparse_value densified, value_float(s),
 * value_int(s), value_string(s)), ConstantOfShape, Range, OneHot, Trilu, EyeLike, Compress,
 * NonZero, ReverseSequence and Unique. Listed in tensor.c's table (see tensor_ops.h).
 * Attributes are decoded by prepare (tensor_ops.h, "Prepared kernels"); none of these ops runs
 * in place (they change the shape, or rely on a zero-filled output, as Trilu does).
 */
#include <math.h>
#include <string.h>

#include "cpu/ops/tensor_ops.h"

/* ------------------------------------------------------------------ Constant */

/* Densifies a SparseTensorProto into output 0. Indices are [NNZ] linear or [NNZ, rank]
 * coordinates; anything outside the dense shape is an error, never a wild write. */
static kiln_status constant_sparse(struct kiln_kctx *k, const struct kiln_sparse_tensor *sp)
{
    const struct kiln_tensor *v = &sp->values, *ix = &sp->indices;
    struct kiln_tensor *o;
    KILN_TRY(kiln_out_tensor(k, 0, v->dtype, sp->rank, sp->dims, &o));
    size_t n = kiln_tensor_numel(o), nnz = kiln_tensor_numel(v), esz = kiln_dtype_size(v->dtype);
    char *ph = kiln_tops_placeholder(o);
    bool coords = ix->rank == 2;
    if (!kiln_dtype_is_int(ix->dtype) || (ix->rank != 1 && ix->rank != 2) ||
        (size_t)ix->dims[0] != nnz || (coords && ix->dims[1] != sp->rank))
        return kiln_kfail(k, KILN_E_INVALID_MODEL,
                          "sparse_value indices must be [%zu] or [%zu, %d] integers", nnz, nnz,
                          sp->rank);
    int64_t st[KILN_MAX_RANK];
    kiln_tops_strides(sp->rank, sp->dims, st);
    for (size_t i = 0; i < nnz; i++) {
        int64_t lin = 0;
        if (coords) {
            for (int a = 0; a < sp->rank; a++) {
                int64_t c = kiln_tensor_get_i64(ix, i * (size_t)sp->rank + (size_t)a);
                if (c < 0 || c >= sp->dims[a]) goto bad;
                lin += c * st[a];
            }
        } else {
            lin = kiln_tensor_get_i64(ix, i);
            if (lin < 0 || (uint64_t)lin >= n) goto bad;
        }
        memcpy((unsigned char *)o->data + (size_t)lin * esz,
               (const unsigned char *)v->data + i * esz, esz);
    }
    return kiln_tops_own_strings(k, o, ph);
bad:
    if (ph) { /* entries may hold borrowed pointers: reset before failing */
        char **e = o->data;
        for (size_t i = 0; i < n; i++) e[i] = ph;
    }
    return kiln_kfail(k, KILN_E_INVALID_MODEL, "sparse_value index outside the dense shape");
}

/* Constant: its one value attribute (checked in decode to be one of the value kinds). */
struct constant_state {
    const struct kiln_attr *a;
};

static bool constant_kind(const struct kiln_attr *a)
{
    return (strcmp(a->name, "value") == 0 && a->type == KILN_ATTR_TENSOR && a->t) ||
           (strcmp(a->name, "sparse_value") == 0 && a->type == KILN_ATTR_SPARSE_TENSOR && a->sp) ||
           (strcmp(a->name, "value_float") == 0 && a->type == KILN_ATTR_FLOAT) ||
           (strcmp(a->name, "value_floats") == 0 && a->type == KILN_ATTR_FLOATS) ||
           (strcmp(a->name, "value_int") == 0 && a->type == KILN_ATTR_INT) ||
           (strcmp(a->name, "value_ints") == 0 && a->type == KILN_ATTR_INTS) ||
           (strcmp(a->name, "value_string") == 0 && a->type == KILN_ATTR_STRING) ||
           (strcmp(a->name, "value_strings") == 0 && a->type == KILN_ATTR_STRINGS);
}

static kiln_status decode_constant(struct kiln_kctx *k, struct constant_state *s)
{
    const struct kiln_attr *a = NULL;
    for (size_t i = 0; i < k->node->n_attr; i++)
        if (!k->node->attrs[i].ref_attr_name) a = &k->node->attrs[i];
    s->a = a;
    if (!a || k->node->n_attr != 1)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "needs exactly one value attribute; has %zu",
                          k->node->n_attr);
    if (!constant_kind(a))
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "attribute '%s' (type %d) is not a Constant value",
                          a->name, (int)a->type);
    return KILN_OK;
}

KILN_PREPARE_WITH(constant_prepare, struct constant_state, decode_constant)

kiln_status kiln_tops_constant_prepare(struct kiln_kprep *p)
{
    return constant_prepare(p);
}

kiln_status kiln_tops_constant(struct kiln_kctx *k)
{
    struct constant_state dec;
    const struct constant_state *cs;
    KILN_STATE_OR_DECODE(k, decode_constant, dec, cs);
    const struct kiln_attr *a = cs->a;
    struct kiln_tensor *o;
    int64_t n = (int64_t)a->n;
    if (strcmp(a->name, "value") == 0 && a->type == KILN_ATTR_TENSOR && a->t)
        return kiln_tops_out_copy(k, 0, a->t, a->t->rank, a->t->dims);
    if (strcmp(a->name, "sparse_value") == 0 && a->type == KILN_ATTR_SPARSE_TENSOR && a->sp)
        return constant_sparse(k, a->sp);
    if (strcmp(a->name, "value_float") == 0 && a->type == KILN_ATTR_FLOAT) {
        KILN_TRY(kiln_out_tensor(k, 0, KILN_DTYPE_F32, 0, NULL, &o));
        *(float *)o->data = a->f;
        return KILN_OK;
    }
    if (strcmp(a->name, "value_floats") == 0 && a->type == KILN_ATTR_FLOATS) {
        KILN_TRY(kiln_out_tensor(k, 0, KILN_DTYPE_F32, 1, &n, &o));
        if (n) memcpy(o->data, a->floats, a->n * sizeof(float));
        return KILN_OK;
    }
    if (strcmp(a->name, "value_int") == 0 && a->type == KILN_ATTR_INT) {
        KILN_TRY(kiln_out_tensor(k, 0, KILN_DTYPE_I64, 0, NULL, &o));
        *(int64_t *)o->data = a->i;
        return KILN_OK;
    }
    if (strcmp(a->name, "value_ints") == 0 && a->type == KILN_ATTR_INTS) {
        KILN_TRY(kiln_out_tensor(k, 0, KILN_DTYPE_I64, 1, &n, &o));
        if (n) memcpy(o->data, a->ints, a->n * sizeof(int64_t));
        return KILN_OK;
    }
    if (strcmp(a->name, "value_string") == 0 && a->type == KILN_ATTR_STRING) {
        KILN_TRY(kiln_out_tensor(k, 0, KILN_DTYPE_STRING, 0, NULL, &o));
        char *ph = kiln_tops_placeholder(o);
        ((const char **)o->data)[0] = a->s ? a->s : "";
        return kiln_tops_own_strings(k, o, ph);
    }
    if (strcmp(a->name, "value_strings") == 0 && a->type == KILN_ATTR_STRINGS) {
        KILN_TRY(kiln_out_tensor(k, 0, KILN_DTYPE_STRING, 1, &n, &o));
        char *ph = kiln_tops_placeholder(o);
        for (size_t i = 0; i < a->n; i++) ((const char **)o->data)[i] = a->strings[i];
        return kiln_tops_own_strings(k, o, ph);
    }
    return kiln_kfail(k, KILN_E_UNSUPPORTED, "attribute '%s' (type %d) is not a Constant value",
                      a->name, (int)a->type);
}

/* ------------------------------------------------------------------ ConstantOfShape */

/* ConstantOfShape: the one-element `value` (NULL: float32 zeros). */
struct cos_state {
    const struct kiln_tensor *v;
};

static kiln_status decode_constant_of_shape(struct kiln_kctx *k, struct cos_state *s)
{
    s->v = kiln_attr_t(k, "value");
    if (s->v && kiln_tensor_numel(s->v) != 1)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "attribute 'value' has %zu elements; expected 1",
                          kiln_tensor_numel(s->v));
    return KILN_OK;
}

KILN_PREPARE_WITH(cos_prepare, struct cos_state, decode_constant_of_shape)

kiln_status kiln_tops_constant_of_shape_prepare(struct kiln_kprep *p)
{
    return cos_prepare(p);
}

kiln_status kiln_tops_constant_of_shape(struct kiln_kctx *k)
{
    struct cos_state dec;
    const struct cos_state *cs;
    KILN_STATE_OR_DECODE(k, decode_constant_of_shape, dec, cs);
    const struct kiln_tensor *s, *v = cs->v;
    KILN_TRY(kiln_in_req(k, 0, &s));
    int64_t dims[KILN_MAX_RANK];
    size_t n;
    KILN_TRY(kiln_tops_read_ints(k, s, "input", dims, KILN_MAX_RANK, &n));
    struct kiln_tensor *o;
    KILN_TRY(kiln_out_tensor(k, 0, v ? v->dtype : KILN_DTYPE_F32, (int)n, dims, &o));
    size_t cnt = kiln_tensor_numel(o), esz = kiln_dtype_size(o->dtype);
    if (!v || cnt == 0) return KILN_OK;
    char *ph = kiln_tops_placeholder(o);
    unsigned char *d = o->data;
    for (size_t i = 0; i < cnt; i++) memcpy(d + i * esz, v->data, esz);
    return kiln_tops_own_strings(k, o, ph);
}

/* ------------------------------------------------------------------ Range */

kiln_status kiln_tops_range(struct kiln_kctx *k)
{
    const struct kiln_tensor *ts, *tl, *td;
    KILN_TRY(kiln_in_req(k, 0, &ts));
    KILN_TRY(kiln_in_req(k, 1, &tl));
    KILN_TRY(kiln_in_req(k, 2, &td));
    if (kiln_tensor_numel(ts) != 1 || kiln_tensor_numel(tl) != 1 || kiln_tensor_numel(td) != 1)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "start, limit and delta must be scalars");
    if (ts->dtype != tl->dtype || ts->dtype != td->dtype)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "start, limit and delta types differ");
    kiln_dtype dt = ts->dtype;
    int64_t n;
    struct kiln_tensor *o;
    if (kiln_dtype_is_int(dt)) {
        int64_t a = kiln_tensor_get_i64(ts, 0), b = kiln_tensor_get_i64(tl, 0),
                d = kiln_tensor_get_i64(td, 0);
        if (d == 0) return kiln_kfail(k, KILN_E_INVALID_ARG, "delta is 0");
        double nd = ceil(((double)b - (double)a) / (double)d);
        if (nd > (double)KILN_MAX_NUMEL)
            return kiln_kfail(k, KILN_E_LIMIT, "range of %.0f elements is too large", nd);
        /* Exact count in 128-bit integers (the double above only guards the size). */
        __int128 span = (__int128)b - a, dd = d;
        __int128 c = dd > 0 ? (span > 0 ? (span + dd - 1) / dd : 0)
                            : (span < 0 ? (-span + -dd - 1) / -dd : 0);
        n = (int64_t)c;
        KILN_TRY(kiln_out_tensor(k, 0, dt, 1, &n, &o));
        for (int64_t i = 0; i < n; i++) {
            int64_t v = (int64_t)((__int128)a + (__int128)i * d);
            switch (dt) {
            case KILN_DTYPE_I64: ((int64_t *)o->data)[i] = v; break;
            case KILN_DTYPE_I32: ((int32_t *)o->data)[i] = (int32_t)v; break;
            case KILN_DTYPE_I16: ((int16_t *)o->data)[i] = (int16_t)v; break;
            default: kiln_tensor_set_f64(o, (size_t)i, (double)v);
            }
        }
        return KILN_OK;
    }
    if (!kiln_dtype_is_float(dt))
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "inputs are %s; expected a number type",
                          kiln_dtype_name(dt));
    double a = kiln_tensor_get_f64(ts, 0), b = kiln_tensor_get_f64(tl, 0),
           d = kiln_tensor_get_f64(td, 0);
    if (d == 0 || isnan(a) || isnan(b) || isnan(d))
        return kiln_kfail(k, KILN_E_INVALID_ARG, "delta is 0 or an input is NaN");
    double nd = ceil((b - a) / d);
    if (nd > (double)KILN_MAX_NUMEL)
        return kiln_kfail(k, KILN_E_LIMIT, "range of %g elements is too large", nd);
    n = nd > 0 ? (int64_t)nd : 0;
    KILN_TRY(kiln_out_tensor(k, 0, dt, 1, &n, &o));
    for (int64_t i = 0; i < n; i++) kiln_tensor_set_f64(o, (size_t)i, a + (double)i * d);
    return KILN_OK;
}

/* ------------------------------------------------------------------ OneHot */

/* An integer attribute as written (OneHot's axis, Trilu's upper). */
struct int_state {
    int64_t v;
};

static kiln_status decode_onehot(struct kiln_kctx *k, struct int_state *s)
{
    s->v = kiln_attr_i(k, "axis", -1);
    return KILN_OK;
}

KILN_PREPARE_WITH(onehot_prepare, struct int_state, decode_onehot)

kiln_status kiln_tops_onehot_prepare(struct kiln_kprep *p)
{
    return onehot_prepare(p);
}

kiln_status kiln_tops_onehot(struct kiln_kctx *k)
{
    struct int_state dec;
    const struct int_state *as;
    KILN_STATE_OR_DECODE(k, decode_onehot, dec, as);
    const struct kiln_tensor *ix, *dt, *vals;
    KILN_TRY(kiln_in_req(k, 0, &ix));
    KILN_TRY(kiln_in_req(k, 1, &dt));
    KILN_TRY(kiln_in_req(k, 2, &vals));
    if (kiln_tensor_numel(dt) != 1)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "'depth' must have one element");
    if (kiln_tensor_numel(vals) != 2)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "'values' has %zu elements; expected 2",
                          kiln_tensor_numel(vals));
    double dd = kiln_tensor_get_f64(dt, 0);
    if (!(dd >= 1) || dd > (double)KILN_MAX_NUMEL)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "depth %g must be >= 1", dd);
    int64_t depth = (int64_t)dd;
    int r = ix->rank + 1;
    if (r > KILN_MAX_RANK) return kiln_kfail(k, KILN_E_LIMIT, "output rank %d is too large", r);
    int axis;
    KILN_TRY(kiln_norm_axis(k, as->v, r, "axis", &axis));
    int64_t od[KILN_MAX_RANK];
    size_t outer = 1, inner = 1;
    for (int a = 0, j = 0; a < r; a++) {
        od[a] = a == axis ? depth : ix->dims[j++];
        if (a < axis) outer *= (size_t)od[a];
        if (a > axis) inner *= (size_t)od[a];
    }
    struct kiln_tensor *o;
    KILN_TRY(kiln_out_tensor(k, 0, vals->dtype, r, od, &o));
    size_t n = kiln_tensor_numel(o), esz = kiln_dtype_size(vals->dtype);
    if (n == 0) return KILN_OK;
    char *ph = kiln_tops_placeholder(o);
    const unsigned char *off = vals->data, *on = off + esz;
    unsigned char *d = o->data;
    for (size_t i = 0; i < n; i++) memcpy(d + i * esz, off, esz);
    bool fl = kiln_dtype_is_float(ix->dtype);
    for (size_t a = 0; a < outer; a++)
        for (size_t b = 0; b < inner; b++) {
            size_t j = a * inner + b;
            int64_t v = fl ? (int64_t)kiln_tensor_get_f64(ix, j) : kiln_tensor_get_i64(ix, j);
            if (v < 0) v += depth;
            if (v < 0 || v >= depth) continue; /* out of range: all off, as the spec says */
            memcpy(d + ((a * (size_t)depth + (size_t)v) * inner + b) * esz, on, esz);
        }
    return kiln_tops_own_strings(k, o, ph);
}

/* ------------------------------------------------------------------ Trilu / EyeLike */

static kiln_status decode_trilu(struct kiln_kctx *k, struct int_state *s)
{
    s->v = kiln_attr_i(k, "upper", 1) != 0;
    return KILN_OK;
}

KILN_PREPARE_WITH(trilu_prepare, struct int_state, decode_trilu)

kiln_status kiln_tops_trilu_prepare(struct kiln_kprep *p)
{
    return trilu_prepare(p);
}

kiln_status kiln_tops_trilu(struct kiln_kctx *k)
{
    struct int_state dec;
    const struct int_state *us;
    KILN_STATE_OR_DECODE(k, decode_trilu, dec, us);
    const struct kiln_tensor *x, *kt = kiln_in(k, 1);
    KILN_TRY(kiln_in_req(k, 0, &x));
    if (x->rank < 2)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input has rank %d; expected >= 2", x->rank);
    int64_t kk = 0;
    if (kt) {
        size_t c;
        KILN_TRY(kiln_tops_read_ints(k, kt, "k", &kk, 1, &c));
        if (c != 1) return kiln_kfail(k, KILN_E_INVALID_ARG, "'k' must have one element");
    }
    bool upper = us->v != 0;
    struct kiln_tensor *o;
    KILN_TRY(kiln_out_tensor(k, 0, x->dtype, x->rank, x->dims, &o));
    size_t n = kiln_tensor_numel(o), esz = kiln_dtype_size(x->dtype);
    if (n == 0) return KILN_OK;
    char *ph = kiln_tops_placeholder(o);
    int64_t R = x->dims[x->rank - 2], C = x->dims[x->rank - 1];
    size_t mats = n / (size_t)(R * C);
    for (size_t m = 0; m < mats; m++)
        for (int64_t i = 0; i < R; i++)
            for (int64_t j = 0; j < C; j++) {
                bool keep = upper ? j - i >= kk : j - i <= kk;
                size_t at = (m * (size_t)R + (size_t)i) * (size_t)C + (size_t)j;
                if (keep)
                    memcpy((unsigned char *)o->data + at * esz,
                           (const unsigned char *)x->data + at * esz, esz);
            }
    return kiln_tops_own_strings(k, o, ph);
}

/* EyeLike: the `dtype` attribute when given (else input 0's) and the diagonal k. */
struct eyelike_state {
    bool has_dtype;
    int64_t dtype, k;
};

static kiln_status decode_eyelike(struct kiln_kctx *k, struct eyelike_state *s)
{
    const struct kiln_attr *a = kiln_node_attr(k->node, "dtype");
    s->has_dtype = a && a->type == KILN_ATTR_INT;
    s->dtype = s->has_dtype ? a->i : 0;
    s->k = kiln_attr_i(k, "k", 0);
    return KILN_OK;
}

KILN_PREPARE_WITH(eyelike_prepare, struct eyelike_state, decode_eyelike)

kiln_status kiln_tops_eyelike_prepare(struct kiln_kprep *p)
{
    return eyelike_prepare(p);
}

kiln_status kiln_tops_eyelike(struct kiln_kctx *k)
{
    struct eyelike_state dec;
    const struct eyelike_state *es;
    KILN_STATE_OR_DECODE(k, decode_eyelike, dec, es);
    const struct kiln_tensor *x;
    KILN_TRY(kiln_in_req(k, 0, &x));
    if (x->rank != 2)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input has rank %d; expected 2", x->rank);
    int64_t dt = es->has_dtype ? es->dtype : (int64_t)x->dtype, kk = es->k;
    if (!kiln_dtype_valid((int)dt) || dt == KILN_DTYPE_STRING)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "dtype %lld is not a numeric type",
                          (long long)dt);
    struct kiln_tensor *o;
    KILN_TRY(kiln_out_tensor(k, 0, (kiln_dtype)dt, 2, x->dims, &o));
    for (int64_t i = 0; i < x->dims[0]; i++) {
        if (kk < -x->dims[1] || kk > x->dims[1]) break;
        int64_t j = i + kk;
        if (j >= 0 && j < x->dims[1]) kiln_tensor_set_f64(o, (size_t)(i * x->dims[1] + j), 1.0);
    }
    return KILN_OK;
}

/* ------------------------------------------------------------------ Compress */

/* An optional `axis` (Compress, Unique: absent means flatten) and Unique's `sorted`. */
struct opt_axis_state {
    bool has_axis, sorted;
    int64_t axis;
};

static kiln_status decode_opt_axis(struct kiln_kctx *k, struct opt_axis_state *s)
{
    s->has_axis = kiln_attr_has(k, "axis");
    s->axis = kiln_attr_i(k, "axis", 0);
    s->sorted = kiln_attr_i(k, "sorted", 1) != 0;
    return KILN_OK;
}

KILN_PREPARE_WITH(opt_axis_prepare, struct opt_axis_state, decode_opt_axis)

kiln_status kiln_tops_compress_prepare(struct kiln_kprep *p)
{
    return opt_axis_prepare(p);
}

kiln_status kiln_tops_unique_prepare(struct kiln_kprep *p)
{
    return opt_axis_prepare(p);
}

kiln_status kiln_tops_compress(struct kiln_kctx *k)
{
    struct opt_axis_state dec;
    const struct opt_axis_state *as;
    KILN_STATE_OR_DECODE(k, decode_opt_axis, dec, as);
    const struct kiln_tensor *x, *c;
    KILN_TRY(kiln_in_req(k, 0, &x));
    KILN_TRY(kiln_in_req(k, 1, &c));
    if (c->rank != 1)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "'condition' has rank %d; expected 1", c->rank);
    bool flat = !as->has_axis;
    int axis = 0;
    if (!flat) KILN_TRY(kiln_norm_axis(k, as->axis, x->rank, "axis", &axis));
    int64_t dim = flat ? (int64_t)kiln_tensor_numel(x) : x->dims[axis], *sel;
    size_t nc = kiln_tensor_numel(c), cnt = 0;
    KILN_TRY(kiln_scratch(k, nc * sizeof *sel + 1, (void **)&sel));
    for (size_t i = 0; i < nc; i++) {
        if (kiln_tensor_get_f64(c, i) == 0) continue;
        if ((int64_t)i >= dim)
            return kiln_kfail(k, KILN_E_INVALID_ARG,
                              "'condition' selects index %zu but the axis has dim %lld", i,
                              (long long)dim);
        sel[cnt++] = (int64_t)i;
    }
    int64_t od[KILN_MAX_RANK];
    int r = flat ? 1 : x->rank;
    size_t outer = 1, inner = 1;
    if (flat) {
        od[0] = (int64_t)cnt;
    } else {
        memcpy(od, x->dims, sizeof od);
        od[axis] = (int64_t)cnt;
        for (int a = 0; a < axis; a++) outer *= (size_t)x->dims[a];
        for (int a = axis + 1; a < x->rank; a++) inner *= (size_t)x->dims[a];
    }
    struct kiln_tensor *o;
    KILN_TRY(kiln_out_tensor(k, 0, x->dtype, r, od, &o));
    return kiln_take_slices(k, o, x, outer, (size_t)dim, inner, sel, cnt);
}

/* ------------------------------------------------------------------ NonZero */

/* Whether element i of t is nonzero (NaN counts; -0.0 does not; strings: non-empty). */
static bool is_nonzero(const struct kiln_tensor *t, size_t i)
{
    const unsigned char *p = (const unsigned char *)t->data + i * kiln_dtype_size(t->dtype);
    switch (t->dtype) {
    case KILN_DTYPE_F32: return *(const float *)p != 0;
    case KILN_DTYPE_F64: return *(const double *)p != 0;
    case KILN_DTYPE_C64: return ((const float *)p)[0] != 0 || ((const float *)p)[1] != 0;
    case KILN_DTYPE_C128: return ((const double *)p)[0] != 0 || ((const double *)p)[1] != 0;
    case KILN_DTYPE_F16: case KILN_DTYPE_BF16: return (*(const uint16_t *)p & 0x7fff) != 0;
    case KILN_DTYPE_F8E4M3FN: case KILN_DTYPE_F8E5M2: return (*p & 0x7f) != 0;
    case KILN_DTYPE_F4E2M1: return (*p & 0x7) != 0;
    case KILN_DTYPE_F8E8M0: return true; /* no zero in this format */
    case KILN_DTYPE_STRING: {
        const char *s = *(char *const *)p;
        return s && s[0];
    }
    default:
        for (size_t b = 0; b < kiln_dtype_size(t->dtype); b++)
            if (p[b]) return true;
        return false;
    }
}

kiln_status kiln_tops_nonzero(struct kiln_kctx *k)
{
    const struct kiln_tensor *x;
    KILN_TRY(kiln_in_req(k, 0, &x));
    size_t n = kiln_tensor_numel(x), nnz = 0;
    for (size_t i = 0; i < n; i++) nnz += is_nonzero(x, i);
    /* A scalar counts as shape [1], as numpy.nonzero does. */
    int r = x->rank ? x->rank : 1;
    int64_t dims[KILN_MAX_RANK] = {1}, od[2] = {r, (int64_t)nnz};
    if (x->rank) memcpy(dims, x->dims, sizeof dims);
    struct kiln_tensor *o;
    KILN_TRY(kiln_out_tensor(k, 0, KILN_DTYPE_I64, 2, od, &o));
    int64_t *d = o->data, idx[KILN_MAX_RANK] = {0};
    for (size_t i = 0, j = 0; i < n; i++) {
        if (is_nonzero(x, i)) {
            for (int a = 0; a < r; a++) d[(size_t)a * nnz + j] = idx[a];
            j++;
        }
        for (int a = r - 1; a >= 0; a--) {
            if (++idx[a] < dims[a]) break;
            idx[a] = 0;
        }
    }
    return KILN_OK;
}

/* ------------------------------------------------------------------ ReverseSequence */

/* ReverseSequence's batch_axis and time_axis as written. */
struct revseq_state {
    int64_t batch_axis, time_axis;
};

static kiln_status decode_revseq(struct kiln_kctx *k, struct revseq_state *s)
{
    s->batch_axis = kiln_attr_i(k, "batch_axis", 1);
    s->time_axis = kiln_attr_i(k, "time_axis", 0);
    return KILN_OK;
}

KILN_PREPARE_WITH(revseq_prepare, struct revseq_state, decode_revseq)

kiln_status kiln_tops_reverse_sequence_prepare(struct kiln_kprep *p)
{
    return revseq_prepare(p);
}

kiln_status kiln_tops_reverse_sequence(struct kiln_kctx *k)
{
    struct revseq_state dec;
    const struct revseq_state *rs;
    KILN_STATE_OR_DECODE(k, decode_revseq, dec, rs);
    const struct kiln_tensor *x, *sl;
    KILN_TRY(kiln_in_req(k, 0, &x));
    KILN_TRY(kiln_in_req(k, 1, &sl));
    if (x->rank < 2)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input has rank %d; expected >= 2", x->rank);
    int ba, ta;
    KILN_TRY(kiln_norm_axis(k, rs->batch_axis, x->rank, "batch_axis", &ba));
    KILN_TRY(kiln_norm_axis(k, rs->time_axis, x->rank, "time_axis", &ta));
    if (ba == ta || ba > 1 || ta > 1)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "batch_axis and time_axis must be 0 and 1");
    if (!kiln_dtype_is_int(sl->dtype) || sl->rank != 1 || sl->dims[0] != x->dims[ba])
        return kiln_kfail(k, KILN_E_INVALID_ARG,
                          "'sequence_lens' must be 1-D integers of the batch size %lld",
                          (long long)x->dims[ba]);
    int64_t T = x->dims[ta];
    for (int64_t b = 0; b < x->dims[ba]; b++) {
        int64_t L = kiln_tensor_get_i64(sl, (size_t)b);
        if (L < 0 || L > T)
            return kiln_kfail(k, KILN_E_INVALID_ARG, "sequence_lens[%lld] = %lld is outside [0, %lld]",
                              (long long)b, (long long)L, (long long)T);
    }
    struct kiln_tensor *o;
    KILN_TRY(kiln_out_tensor(k, 0, x->dtype, x->rank, x->dims, &o));
    size_t n = kiln_tensor_numel(o), esz = kiln_dtype_size(x->dtype);
    if (n == 0) return KILN_OK;
    char *ph = kiln_tops_placeholder(o);
    int64_t xs[KILN_MAX_RANK], idx[KILN_MAX_RANK] = {0};
    kiln_tops_strides(x->rank, x->dims, xs);
    for (size_t i = 0; i < n; i++) {
        int64_t t = idx[ta], L = kiln_tensor_get_i64(sl, (size_t)idx[ba]);
        int64_t src = t < L ? (int64_t)i + (L - 1 - 2 * t) * xs[ta] : (int64_t)i;
        memcpy((unsigned char *)o->data + i * esz, (const unsigned char *)x->data + (size_t)src * esz,
               esz);
        for (int a = x->rank - 1; a >= 0; a--) {
            if (++idx[a] < x->dims[a]) break;
            idx[a] = 0;
        }
    }
    return kiln_tops_own_strings(k, o, ph);
}

/* ------------------------------------------------------------------ Unique */

struct uniq_ctx {
    kiln_dtype dt;
    size_t esz, len;          /* elements per row */
    const unsigned char *rows; /* rows[m][len] */
};

static int elem_cmp(kiln_dtype dt, const unsigned char *a, const unsigned char *b)
{
    switch (dt) {
    case KILN_DTYPE_F32: {
        float x = *(const float *)a, y = *(const float *)b;
        return x < y ? -1 : x > y;
    }
    case KILN_DTYPE_F64: {
        double x = *(const double *)a, y = *(const double *)b;
        return x < y ? -1 : x > y;
    }
    case KILN_DTYPE_F16: case KILN_DTYPE_BF16: {
        uint16_t u = *(const uint16_t *)a, v = *(const uint16_t *)b;
        float x = dt == KILN_DTYPE_F16 ? kiln_f16_to_f32(u) : kiln_bf16_to_f32(u);
        float y = dt == KILN_DTYPE_F16 ? kiln_f16_to_f32(v) : kiln_bf16_to_f32(v);
        return x < y ? -1 : x > y;
    }
    case KILN_DTYPE_I8: case KILN_DTYPE_I4: case KILN_DTYPE_I2:
        return *(const int8_t *)a < *(const int8_t *)b ? -1 : *(const int8_t *)a > *(const int8_t *)b;
    case KILN_DTYPE_I16: {
        int16_t x = *(const int16_t *)a, y = *(const int16_t *)b;
        return x < y ? -1 : x > y;
    }
    case KILN_DTYPE_I32: {
        int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
        return x < y ? -1 : x > y;
    }
    case KILN_DTYPE_I64: {
        int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
        return x < y ? -1 : x > y;
    }
    case KILN_DTYPE_U16: {
        uint16_t x = *(const uint16_t *)a, y = *(const uint16_t *)b;
        return x < y ? -1 : x > y;
    }
    case KILN_DTYPE_U32: {
        uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
        return x < y ? -1 : x > y;
    }
    case KILN_DTYPE_U64: {
        uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
        return x < y ? -1 : x > y;
    }
    case KILN_DTYPE_STRING: {
        const char *x = *(char *const *)a, *y = *(char *const *)b;
        int c = strcmp(x ? x : "", y ? y : "");
        return c < 0 ? -1 : c > 0;
    }
    default: {
        int c = memcmp(a, b, kiln_dtype_size(dt));
        return c < 0 ? -1 : c > 0;
    }
    }
}

static int row_cmp(const struct uniq_ctx *c, int64_t i, int64_t j)
{
    const unsigned char *a = c->rows + (size_t)i * c->len * c->esz,
                        *b = c->rows + (size_t)j * c->len * c->esz;
    for (size_t e = 0; e < c->len; e++) {
        int r = elem_cmp(c->dt, a + e * c->esz, b + e * c->esz);
        if (r) return r;
    }
    return 0;
}

/* Stable bottom-up merge sort of p[0..m) by row; tmp has m entries. */
static void sort_rows(const struct uniq_ctx *c, int64_t *p, int64_t *tmp, size_t m)
{
    for (size_t w = 1; w < m; w *= 2) {
        for (size_t lo = 0; lo < m; lo += 2 * w) {
            size_t mid = lo + w < m ? lo + w : m, hi = lo + 2 * w < m ? lo + 2 * w : m;
            size_t i = lo, j = mid, o = lo;
            while (i < mid && j < hi) tmp[o++] = row_cmp(c, p[j], p[i]) < 0 ? p[j++] : p[i++];
            while (i < mid) tmp[o++] = p[i++];
            while (j < hi) tmp[o++] = p[j++];
        }
        memcpy(p, tmp, m * sizeof *p);
    }
}

kiln_status kiln_tops_unique(struct kiln_kctx *k)
{
    struct opt_axis_state dec;
    const struct opt_axis_state *as;
    KILN_STATE_OR_DECODE(k, decode_opt_axis, dec, as);
    const struct kiln_tensor *x;
    KILN_TRY(kiln_in_req(k, 0, &x));
    bool sorted = as->sorted, flat = !as->has_axis;
    int axis = 0;
    if (!flat) KILN_TRY(kiln_norm_axis(k, as->axis, x->rank, "axis", &axis));
    size_t esz = kiln_dtype_size(x->dtype), n = kiln_tensor_numel(x), m, outer = 1, inner = 1;
    if (flat) {
        m = n;
    } else {
        m = (size_t)x->dims[axis];
        for (int a = 0; a < axis; a++) outer *= (size_t)x->dims[a];
        for (int a = axis + 1; a < x->rank; a++) inner *= (size_t)x->dims[a];
    }
    /* rows[i] = the i-th slice along the axis, contiguous (outer x inner elements). */
    struct uniq_ctx c = {.dt = x->dtype, .esz = esz, .len = flat ? 1 : outer * inner};
    unsigned char *rows = NULL;
    int64_t *perm, *tmp, *grp, *first, *count, *order;
    size_t words;
    if (!kiln_mul_size(m, 6 * sizeof(int64_t), &words))
        return kiln_kfail(k, KILN_E_LIMIT, "input too large");
    KILN_TRY(kiln_scratch(k, words, (void **)&perm));
    tmp = perm + m, grp = tmp + m, first = grp + m, count = first + m, order = count + m;
    if (flat || n == 0) {
        c.rows = x->data;
    } else {
        KILN_TRY(kiln_scratch(k, n * esz, (void **)&rows));
        int64_t d[3] = {(int64_t)m, (int64_t)outer, (int64_t)inner},
                s[3] = {(int64_t)inner, (int64_t)(m * inner), 1};
        kiln_tops_strided_copy(rows, x->data, esz, 3, d, s);
        c.rows = rows;
    }
    for (size_t i = 0; i < m; i++) perm[i] = (int64_t)i;
    if (c.len > 0) sort_rows(&c, perm, tmp, m);
    /* Groups of equal rows, in sorted order; stability makes perm[start] the first occurrence. */
    size_t u = 0;
    for (size_t p = 0; p < m; p++) {
        if (p == 0 || (c.len > 0 && row_cmp(&c, perm[p - 1], perm[p]) != 0)) {
            first[u] = perm[p];
            count[u] = 0;
            u++;
        }
        grp[perm[p]] = (int64_t)u - 1;
        count[u - 1]++;
    }
    /* order[g] = output position of group g. */
    if (sorted) {
        for (size_t g = 0; g < u; g++) order[g] = (int64_t)g;
    } else {
        int64_t *pos = tmp, next = 0; /* tmp is free now: pos[i] marks group firsts */
        for (size_t i = 0; i < m; i++) pos[i] = -1;
        for (size_t g = 0; g < u; g++) pos[first[g]] = (int64_t)g;
        for (size_t i = 0; i < m; i++)
            if (pos[i] >= 0) order[pos[i]] = next++;
    }
    int64_t od[KILN_MAX_RANK], nu = (int64_t)u, nm = (int64_t)m;
    struct kiln_tensor *o;
    if (flat) {
        od[0] = nu;
        KILN_TRY(kiln_out_tensor(k, 0, x->dtype, 1, od, &o));
    } else {
        memcpy(od, x->dims, sizeof od);
        od[axis] = nu;
        KILN_TRY(kiln_out_tensor(k, 0, x->dtype, x->rank, od, &o));
    }
    char *ph = kiln_tops_placeholder(o);
    unsigned char *yd = o->data;
    const unsigned char *xd = x->data;
    for (size_t g = 0; g < u; g++) {
        size_t q = (size_t)order[g], src = (size_t)first[g];
        if (flat) {
            memcpy(yd + q * esz, xd + src * esz, esz);
            continue;
        }
        for (size_t a = 0; a < outer; a++)
            memcpy(yd + (a * u + q) * inner * esz, xd + (a * m + src) * inner * esz, inner * esz);
    }
    KILN_TRY(kiln_tops_own_strings(k, o, ph));
    if (kiln_out_wanted(k, 1)) {
        KILN_TRY(kiln_out_tensor(k, 1, KILN_DTYPE_I64, 1, &nu, &o));
        for (size_t g = 0; g < u; g++) ((int64_t *)o->data)[order[g]] = first[g];
    }
    if (kiln_out_wanted(k, 2)) {
        KILN_TRY(kiln_out_tensor(k, 2, KILN_DTYPE_I64, 1, &nm, &o));
        for (size_t i = 0; i < m; i++) ((int64_t *)o->data)[i] = order[grp[i]];
    }
    if (kiln_out_wanted(k, 3)) {
        KILN_TRY(kiln_out_tensor(k, 3, KILN_DTYPE_I64, 1, &nu, &o));
        for (size_t g = 0; g < u; g++) ((int64_t *)o->data)[order[g]] = count[g];
    }
    return KILN_OK;
}
