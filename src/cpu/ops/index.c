/* src/cpu/ops/index.c: ONNX Gather/Scatter family, every opset version, following onnx/onnx
 * docs/Operators.md: Gather, GatherElements, GatherND (batch_dims from 12), Scatter (9..10,
 * ScatterElements without reduction), ScatterElements and ScatterND (reduction add/mul from
 * 16, max/min from 18) and TensorScatter (24, linear and circular KV-cache writes).
 *
 * Indices may be int32 or int64 and negative (counting from the end of the axis). Every
 * index is checked before it is used: an out-of-range index fails the node with a message
 * naming the index, the axis and the valid range; no kernel here reads or writes outside a
 * tensor. Scatter with duplicate indices and reduction "none" keeps the last update in
 * index order, as the reference implementation does.
 *
 * Prepare decodes the attributes (axis, batch_dims, reduction, mode) once into struct
 * index_state; they are checked against the inputs at run time, where the ranks and types
 * are known.
 */
#include <string.h>

#include "cpu/ops/tensor_ops.h"

/* The attributes of the ops of this file, each with its default when absent (and where the
 * opset predates it). */
struct index_state {
    int64_t axis;          /* Gather*, Scatter, ScatterElements (0), TensorScatter (-2) */
    int64_t batch_dims;    /* GatherND: 0 before opset 12 */
    const char *reduction; /* ScatterElements, ScatterND: "none" before opset 16 */
    const char *mode;      /* TensorScatter: "linear" */
};

static kiln_status index_prepare_axis(struct kiln_kprep *p, int64_t axis_default)
{
    struct index_state *s;
    KILN_TRY(kiln_kprep_alloc(p, sizeof *s, (void **)&s));
    const struct kiln_kctx *k = &p->kc;
    s->axis = kiln_attr_i(k, "axis", axis_default);
    s->batch_dims = k->opset >= 12 ? kiln_attr_i(k, "batch_dims", 0) : 0;
    s->reduction = k->opset >= 16 ? kiln_attr_s(k, "reduction", "none") : "none";
    s->mode = kiln_attr_s(k, "mode", "linear");
    p->state = s;
    return KILN_OK;
}

static kiln_status index_prepare(struct kiln_kprep *p) { return index_prepare_axis(p, 0); }
static kiln_status tensor_scatter_prepare(struct kiln_kprep *p) { return index_prepare_axis(p, -2); }

/* Reads index j of an integer tensor, normalized into [0, dim); fails when out of range. */
static kiln_status get_index(struct kiln_kctx *k, const struct kiln_tensor *t, size_t j,
                             int64_t dim, int axis, int64_t *out)
{
    int64_t v = kiln_tensor_get_i64(t, j);
    if (v < -dim || v >= dim)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "index %lld out of range [%lld, %lld] on axis %d",
                          (long long)v, (long long)-dim, (long long)(dim - 1), axis);
    *out = v < 0 ? v + dim : v;
    return KILN_OK;
}

/* Resets a partly written STRING output (borrowed pointers) so it can be freed. */
static void drop_strings(struct kiln_tensor *o, char *ph)
{
    if (!ph) return;
    char **e = o->data;
    for (size_t i = 0, n = kiln_tensor_numel(o); i < n; i++) e[i] = ph;
}

static kiln_status check_index_type(struct kiln_kctx *k, const struct kiln_tensor *t)
{
    if (t->dtype != KILN_DTYPE_I32 && t->dtype != KILN_DTYPE_I64)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "'indices' is %s; expected int32 or int64",
                          kiln_dtype_name(t->dtype));
    return KILN_OK;
}

/* ------------------------------------------------------------------ element walks */

/* GatherElements / ScatterElements: walks the elements of `indices` (ix, x's rank) in order;
 * element i addresses the data element at its own position but with the `axis` coordinate
 * replaced by the index value. */
struct elem_walk {
    const struct kiln_tensor *x, *ix;
    int axis;
    int64_t xs[KILN_MAX_RANK], idx[KILN_MAX_RANK];
    int64_t base; /* offset in x of the current position with the axis coordinate 0 */
};

/* Checks the shapes (indices no larger than data off the axis; with `up`, updates shaped
 * like indices, checked dim by dim first) and starts the walk. */
static kiln_status elem_walk_init(struct kiln_kctx *k, struct elem_walk *w,
                                  const struct kiln_tensor *x, const struct kiln_tensor *ix,
                                  const struct kiln_tensor *up, int axis)
{
    for (int a = 0; a < x->rank; a++) {
        if (up && up->dims[a] != ix->dims[a])
            return kiln_kfail(k, KILN_E_INVALID_ARG, "'updates' and 'indices' differ in dim %d", a);
        if (a != axis && ix->dims[a] > x->dims[a])
            return kiln_kfail(k, KILN_E_INVALID_ARG,
                              "'indices' dim %d is %lld; 'data' has only %lld", a,
                              (long long)ix->dims[a], (long long)x->dims[a]);
    }
    memset(w, 0, sizeof *w);
    w->x = x, w->ix = ix, w->axis = axis;
    kiln_tops_strides(x->rank, x->dims, w->xs);
    return KILN_OK;
}

/* *off = the data element that indices element i (the walk's next one) addresses; then
 * steps. A bad index resets output o's strings (ph, see drop_strings) and fails. */
static kiln_status elem_walk_next(struct kiln_kctx *k, struct elem_walk *w, size_t i,
                                  struct kiln_tensor *o, char *ph, size_t *off)
{
    int64_t v = 0;
    int axis = w->axis;
    kiln_status st = get_index(k, w->ix, i, w->x->dims[axis], axis, &v);
    if (st) {
        drop_strings(o, ph);
        return st;
    }
    *off = (size_t)(w->base + v * w->xs[axis]);
    for (int a = w->x->rank - 1; a >= 0; a--) {
        if (a != axis) w->base += w->xs[a];
        if (++w->idx[a] < w->ix->dims[a]) break;
        if (a != axis) w->base -= w->xs[a] * w->ix->dims[a];
        w->idx[a] = 0;
    }
    return KILN_OK;
}

/* ------------------------------------------------------------------ Gather */

static kiln_status gather_run(struct kiln_kctx *k)
{
    if (!k->state) return kiln_cpu_run_unprepared(k, index_prepare, gather_run);
    const struct index_state *ps = k->state;
    const struct kiln_tensor *x, *ix;
    KILN_TRY(kiln_in_req(k, 0, &x));
    KILN_TRY(kiln_in_req(k, 1, &ix));
    KILN_TRY(check_index_type(k, ix));
    if (x->rank == 0) return kiln_kfail(k, KILN_E_INVALID_ARG, "'data' must have rank >= 1");
    int axis;
    KILN_TRY(kiln_norm_axis(k, ps->axis, x->rank, "axis", &axis));
    int r = x->rank - 1 + ix->rank;
    if (r > KILN_MAX_RANK) return kiln_kfail(k, KILN_E_LIMIT, "output rank %d is too large", r);
    int64_t od[KILN_MAX_RANK];
    int p = 0;
    for (int a = 0; a < axis; a++) od[p++] = x->dims[a];
    for (int a = 0; a < ix->rank; a++) od[p++] = ix->dims[a];
    for (int a = axis + 1; a < x->rank; a++) od[p++] = x->dims[a];
    size_t ni = kiln_tensor_numel(ix), outer = 1, inner = 1;
    int64_t D = x->dims[axis], *idx;
    for (int a = 0; a < axis; a++) outer *= (size_t)x->dims[a];
    for (int a = axis + 1; a < x->rank; a++) inner *= (size_t)x->dims[a];
    KILN_TRY(kiln_scratch(k, ni * sizeof *idx, (void **)&idx));
    for (size_t j = 0; j < ni; j++) KILN_TRY(get_index(k, ix, j, D, axis, &idx[j]));
    struct kiln_tensor *o;
    KILN_TRY(kiln_out_tensor(k, 0, x->dtype, r, od, &o));
    return kiln_take_slices(k, o, x, outer, (size_t)D, inner, idx, ni);
}

/* ------------------------------------------------------------------ GatherElements */

static kiln_status gather_elements_run(struct kiln_kctx *k)
{
    if (!k->state) return kiln_cpu_run_unprepared(k, index_prepare, gather_elements_run);
    const struct index_state *ps = k->state;
    const struct kiln_tensor *x, *ix;
    KILN_TRY(kiln_in_req(k, 0, &x));
    KILN_TRY(kiln_in_req(k, 1, &ix));
    KILN_TRY(check_index_type(k, ix));
    if (x->rank == 0 || ix->rank != x->rank)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "'indices' has rank %d; 'data' has rank %d",
                          ix->rank, x->rank);
    int axis;
    KILN_TRY(kiln_norm_axis(k, ps->axis, x->rank, "axis", &axis));
    struct elem_walk w;
    KILN_TRY(elem_walk_init(k, &w, x, ix, NULL, axis));
    struct kiln_tensor *o;
    KILN_TRY(kiln_out_tensor(k, 0, x->dtype, ix->rank, ix->dims, &o));
    size_t n = kiln_tensor_numel(o), esz = kiln_dtype_size(x->dtype);
    if (n == 0) return KILN_OK;
    char *ph = kiln_tops_placeholder(o);
    for (size_t i = 0; i < n; i++) {
        size_t off;
        KILN_TRY(elem_walk_next(k, &w, i, o, ph, &off));
        memcpy((unsigned char *)o->data + i * esz, (const unsigned char *)x->data + off * esz, esz);
    }
    return kiln_tops_own_strings(k, o, ph);
}

/* ------------------------------------------------------------------ GatherND */

static kiln_status gather_nd_run(struct kiln_kctx *k)
{
    if (!k->state) return kiln_cpu_run_unprepared(k, index_prepare, gather_nd_run);
    const struct index_state *ps = k->state;
    const struct kiln_tensor *x, *ix;
    KILN_TRY(kiln_in_req(k, 0, &x));
    KILN_TRY(kiln_in_req(k, 1, &ix));
    if (ix->dtype != KILN_DTYPE_I64 && ix->dtype != KILN_DTYPE_I32)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "'indices' is %s; expected int64",
                          kiln_dtype_name(ix->dtype));
    int64_t b = ps->batch_dims;
    if (ix->rank < 1 || x->rank < 1)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "'data' and 'indices' must have rank >= 1");
    int64_t m = ix->dims[ix->rank - 1];
    if (b < 0 || b >= ix->rank || b >= x->rank || m < 1 || b + m > x->rank)
        return kiln_kfail(k, KILN_E_INVALID_ARG,
                          "batch_dims %lld and index depth %lld do not fit data rank %d / indices "
                          "rank %d",
                          (long long)b, (long long)m, x->rank, ix->rank);
    for (int a = 0; a < b; a++)
        if (ix->dims[a] != x->dims[a])
            return kiln_kfail(k, KILN_E_INVALID_ARG,
                              "batch dim %d differs: indices %lld, data %lld", a,
                              (long long)ix->dims[a], (long long)x->dims[a]);
    int64_t od[KILN_MAX_RANK];
    int r = 0;
    for (int a = 0; a < ix->rank - 1; a++) od[r++] = ix->dims[a];
    for (int a = (int)(b + m); a < x->rank; a++) od[r++] = x->dims[a];
    if (r > KILN_MAX_RANK) return kiln_kfail(k, KILN_E_LIMIT, "output rank %d is too large", r);
    size_t esz = kiln_dtype_size(x->dtype), slice = esz, batches = 1, per = 1;
    for (int a = (int)(b + m); a < x->rank; a++) slice *= (size_t)x->dims[a];
    for (int a = 0; a < b; a++) batches *= (size_t)x->dims[a];
    for (int a = (int)b; a < ix->rank - 1; a++) per *= (size_t)ix->dims[a];
    int64_t xs[KILN_MAX_RANK];
    kiln_tops_strides(x->rank, x->dims, xs);
    size_t bstride = b ? (size_t)xs[b - 1] : 0;
    struct kiln_tensor *o;
    KILN_TRY(kiln_out_tensor(k, 0, x->dtype, r, od, &o));
    if (kiln_tensor_numel(o) == 0) return KILN_OK;
    char *ph = kiln_tops_placeholder(o);
    unsigned char *d = o->data;
    for (size_t bi = 0; bi < batches; bi++)
        for (size_t t = 0; t < per; t++, d += slice) {
            size_t off = bi * bstride, tuple = (bi * per + t) * (size_t)m;
            for (int j = 0; j < m; j++) {
                int64_t v = 0;
                int a = (int)b + j;
                kiln_status st = get_index(k, ix, tuple + (size_t)j, x->dims[a], a, &v);
                if (st) {
                    drop_strings(o, ph);
                    return st;
                }
                off += (size_t)(v * xs[a]);
            }
            memcpy(d, (const unsigned char *)x->data + off * esz, slice);
        }
    return kiln_tops_own_strings(k, o, ph);
}

/* ------------------------------------------------------------------ reductions */

enum { RED_NONE, RED_ADD, RED_MUL, RED_MAX, RED_MIN };

static kiln_status get_reduction(struct kiln_kctx *k, kiln_dtype dt, int *red)
{
    const char *s = ((const struct index_state *)k->state)->reduction;
    *red = strcmp(s, "none") == 0  ? RED_NONE
           : strcmp(s, "add") == 0 ? RED_ADD
           : strcmp(s, "mul") == 0 ? RED_MUL
           : strcmp(s, "max") == 0 && k->opset >= 18 ? RED_MAX
           : strcmp(s, "min") == 0 && k->opset >= 18 ? RED_MIN
                                                     : -1;
    if (*red < 0) return kiln_kfail(k, KILN_E_INVALID_MODEL, "reduction '%s' is not valid", s);
    if (*red != RED_NONE && (dt == KILN_DTYPE_STRING || dt == KILN_DTYPE_C64 ||
                             dt == KILN_DTYPE_C128 || kiln_dtype_size(dt) == 0))
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "reduction '%s' on %s", s, kiln_dtype_name(dt));
    return KILN_OK;
}

/* Inputs data, indices (int32 or int64) and updates of ScatterElements / ScatterND, and the
 * reduction attribute. */
static kiln_status scatter_inputs(struct kiln_kctx *k, const struct kiln_tensor **x,
                                  const struct kiln_tensor **ix, const struct kiln_tensor **up,
                                  int *red)
{
    KILN_TRY(kiln_in_req(k, 0, x));
    KILN_TRY(kiln_in_req(k, 1, ix));
    KILN_TRY(kiln_in_req(k, 2, up));
    KILN_TRY(check_index_type(k, *ix));
    return get_reduction(k, (*x)->dtype, red);
}

/* Output 0 of the scatters: a byte copy of data x. A STRING output borrows x's strings until
 * kiln_tops_own_strings; *ph is its placeholder (see drop_strings). */
static kiln_status out_copy(struct kiln_kctx *k, const struct kiln_tensor *x,
                            struct kiln_tensor **o, char **ph)
{
    KILN_TRY(kiln_out_tensor(k, 0, x->dtype, x->rank, x->dims, o));
    *ph = kiln_tops_placeholder(*o);
    if (kiln_tensor_numel(*o)) memcpy((*o)->data, x->data, kiln_tensor_nbytes(x));
    return KILN_OK;
}

#define RED_FLOAT(T)                                                                           \
    {                                                                                          \
        T x, y;                                                                                \
        memcpy(&x, d, sizeof x);                                                               \
        memcpy(&y, s, sizeof y);                                                               \
        x = red == RED_ADD ? x + y : red == RED_MUL ? x * y : red == RED_MAX ? (y > x ? y : x) \
                                                                             : (y < x ? y : x);  \
        memcpy(d, &x, sizeof x);                                                               \
        return;                                                                                \
    }
/* Integers add and multiply in the unsigned type: wrap-around instead of undefined overflow. */
#define RED_INT(T, U)                                                                          \
    {                                                                                          \
        T x, y;                                                                                \
        memcpy(&x, d, sizeof x);                                                               \
        memcpy(&y, s, sizeof y);                                                               \
        x = red == RED_ADD   ? (T)((U)x + (U)y)                                                \
            : red == RED_MUL ? (T)((U)x * (U)y)                                                \
            : red == RED_MAX ? (y > x ? y : x)                                                 \
                             : (y < x ? y : x);                                                \
        memcpy(d, &x, sizeof x);                                                               \
        return;                                                                                \
    }

/* d = d (red) s for one element of dtype dt. */
static void reduce_elem(kiln_dtype dt, size_t esz, int red, unsigned char *d,
                        const unsigned char *s)
{
    if (red == RED_NONE) {
        memcpy(d, s, esz);
        return;
    }
    switch (dt) {
    case KILN_DTYPE_F32: RED_FLOAT(float)
    case KILN_DTYPE_F64: RED_FLOAT(double)
    case KILN_DTYPE_I8: RED_INT(int8_t, uint8_t)
    case KILN_DTYPE_I16: RED_INT(int16_t, uint16_t)
    case KILN_DTYPE_I32: RED_INT(int32_t, uint32_t)
    case KILN_DTYPE_I64: RED_INT(int64_t, uint64_t)
    case KILN_DTYPE_U8: RED_INT(uint8_t, uint8_t)
    case KILN_DTYPE_U16: RED_INT(uint16_t, uint16_t)
    case KILN_DTYPE_U32: RED_INT(uint32_t, uint32_t)
    case KILN_DTYPE_U64: RED_INT(uint64_t, uint64_t)
    case KILN_DTYPE_BOOL: {
        bool x = *d != 0, y = *s != 0;
        *d = red == RED_ADD || red == RED_MAX ? (x || y) : (x && y);
        return;
    }
    default: {
        /* Narrow floats: compute in double through a one-element tensor view. */
        struct kiln_tensor td = {.dtype = dt, .data = d}, ts = {.dtype = dt, .data = (void *)s};
        double x = kiln_tensor_get_f64(&td, 0), y = kiln_tensor_get_f64(&ts, 0);
        x = red == RED_ADD ? x + y : red == RED_MUL ? x * y : red == RED_MAX ? (y > x ? y : x)
                                                                            : (y < x ? y : x);
        kiln_tensor_set_f64(&td, 0, x);
    }
    }
}

/* ------------------------------------------------------------------ Scatter / ScatterElements */

static kiln_status scatter_elements_run(struct kiln_kctx *k)
{
    if (!k->state) return kiln_cpu_run_unprepared(k, index_prepare, scatter_elements_run);
    const struct index_state *ps = k->state;
    const struct kiln_tensor *x, *ix, *up;
    int red;
    KILN_TRY(scatter_inputs(k, &x, &ix, &up, &red));
    if (x->rank == 0 || ix->rank != x->rank || up->rank != ix->rank || up->dtype != x->dtype)
        return kiln_kfail(k, KILN_E_INVALID_ARG,
                          "data, indices and updates must share rank >= 1 (got %d, %d, %d) and "
                          "updates the data type",
                          x->rank, ix->rank, up->rank);
    int axis;
    KILN_TRY(kiln_norm_axis(k, ps->axis, x->rank, "axis", &axis));
    struct elem_walk w;
    KILN_TRY(elem_walk_init(k, &w, x, ix, up, axis));
    struct kiln_tensor *o;
    char *ph;
    KILN_TRY(out_copy(k, x, &o, &ph));
    size_t n = kiln_tensor_numel(ix), esz = kiln_dtype_size(x->dtype);
    for (size_t i = 0; i < n; i++) {
        size_t off;
        KILN_TRY(elem_walk_next(k, &w, i, o, ph, &off));
        reduce_elem(x->dtype, esz, red, (unsigned char *)o->data + off * esz,
                    (const unsigned char *)up->data + i * esz);
    }
    return kiln_tops_own_strings(k, o, ph);
}

/* ------------------------------------------------------------------ ScatterND */

static kiln_status scatter_nd_run(struct kiln_kctx *k)
{
    if (!k->state) return kiln_cpu_run_unprepared(k, index_prepare, scatter_nd_run);
    const struct kiln_tensor *x, *ix, *up;
    int red;
    KILN_TRY(scatter_inputs(k, &x, &ix, &up, &red));
    if (x->rank < 1 || ix->rank < 1)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "'data' and 'indices' must have rank >= 1");
    int64_t m = ix->dims[ix->rank - 1];
    if (m < 1 || m > x->rank)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "index depth %lld must be in [1, %d]",
                          (long long)m, x->rank);
    /* updates shape = indices.shape[:-1] + data.shape[m:] */
    bool ok = up->dtype == x->dtype && up->rank == ix->rank - 1 + x->rank - (int)m;
    for (int a = 0; ok && a < ix->rank - 1; a++) ok = up->dims[a] == ix->dims[a];
    for (int a = (int)m; ok && a < x->rank; a++) ok = up->dims[ix->rank - 1 + a - m] == x->dims[a];
    if (!ok) {
        char sa[200];
        return kiln_kfail(k, KILN_E_INVALID_ARG,
                          "'updates' (%s, %s) must be indices.shape[:-1] + data.shape[%lld:] of "
                          "the data type",
                          kiln_shape_str(up->rank, up->dims, sa, sizeof sa),
                          kiln_dtype_name(up->dtype), (long long)m);
    }
    struct kiln_tensor *o;
    char *ph;
    KILN_TRY(out_copy(k, x, &o, &ph));
    size_t esz = kiln_dtype_size(x->dtype), slice = 1, tuples = 1;
    for (int a = (int)m; a < x->rank; a++) slice *= (size_t)x->dims[a];
    for (int a = 0; a < ix->rank - 1; a++) tuples *= (size_t)ix->dims[a];
    int64_t xs[KILN_MAX_RANK];
    kiln_tops_strides(x->rank, x->dims, xs);
    for (size_t t = 0; t < tuples; t++) {
        size_t off = 0;
        for (int j = 0; j < m; j++) {
            int64_t v = 0;
            kiln_status st = get_index(k, ix, t * (size_t)m + (size_t)j, x->dims[j], j, &v);
            if (st) {
                drop_strings(o, ph);
                return st;
            }
            off += (size_t)(v * xs[j]);
        }
        unsigned char *d = (unsigned char *)o->data + off * esz;
        const unsigned char *s = (const unsigned char *)up->data + t * slice * esz;
        if (red == RED_NONE)
            memcpy(d, s, slice * esz);
        else
            for (size_t e = 0; e < slice; e++) reduce_elem(x->dtype, esz, red, d + e * esz, s + e * esz);
    }
    return kiln_tops_own_strings(k, o, ph);
}

/* ------------------------------------------------------------------ TensorScatter */

static kiln_status tensor_scatter_run(struct kiln_kctx *k)
{
    if (!k->state) return kiln_cpu_run_unprepared(k, tensor_scatter_prepare, tensor_scatter_run);
    const struct index_state *ps = k->state;
    const struct kiln_tensor *x, *up, *wi = kiln_in(k, 2);
    KILN_TRY(kiln_in_req(k, 0, &x));
    KILN_TRY(kiln_in_req(k, 1, &up));
    if (x->rank < 2)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "'past_cache' has rank %d; expected >= 2",
                          x->rank);
    int axis;
    KILN_TRY(kiln_norm_axis(k, ps->axis, x->rank, "axis", &axis));
    if (axis == 0)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "axis must not be the batch axis 0");
    const char *mode = ps->mode;
    bool circ = strcmp(mode, "circular") == 0;
    if (!circ && strcmp(mode, "linear") != 0)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "mode '%s' is not linear or circular", mode);
    bool ok = up->rank == x->rank && up->dtype == x->dtype && up->dims[axis] <= x->dims[axis];
    for (int a = 0; ok && a < x->rank; a++) ok = a == axis || up->dims[a] == x->dims[a];
    if (!ok) {
        char sa[200], sb[200];
        return kiln_kfail(k, KILN_E_INVALID_ARG,
                          "'update' %s must match 'past_cache' %s except on axis %d",
                          kiln_shape_str(up->rank, up->dims, sa, sizeof sa),
                          kiln_shape_str(x->rank, x->dims, sb, sizeof sb), axis);
    }
    int64_t B = x->dims[0], maxs = x->dims[axis], seq = up->dims[axis];
    if (wi && (!kiln_dtype_is_int(wi->dtype) || kiln_tensor_numel(wi) != (size_t)B))
        return kiln_kfail(k, KILN_E_INVALID_ARG,
                          "'write_indices' must hold %lld integers (one per batch)", (long long)B);
    for (int64_t b = 0; wi && b < B; b++) {
        int64_t w = kiln_tensor_get_i64(wi, (size_t)b);
        if (w < 0 || (!circ && w + seq > maxs))
            return kiln_kfail(k, KILN_E_INVALID_ARG,
                              "write_indices[%lld] = %lld does not fit %lld updates in %lld slots",
                              (long long)b, (long long)w, (long long)seq, (long long)maxs);
    }
    struct kiln_tensor *o;
    char *ph;
    KILN_TRY(out_copy(k, x, &o, &ph));
    if (kiln_tensor_numel(o) == 0) return KILN_OK;
    size_t esz = kiln_dtype_size(x->dtype), inner = esz, outer = 1;
    for (int a = axis + 1; a < x->rank; a++) inner *= (size_t)x->dims[a];
    for (int a = 0; a < axis; a++) outer *= (size_t)x->dims[a];
    size_t per_batch = outer / (size_t)B;
    for (size_t p = 0; p < outer; p++) {
        int64_t b = (int64_t)(p / per_batch), w = wi ? kiln_tensor_get_i64(wi, (size_t)b) : 0;
        for (int64_t s = 0; s < seq; s++) {
            int64_t pos = circ ? (w + s) % maxs : w + s;
            memcpy((unsigned char *)o->data + (p * (size_t)maxs + (size_t)pos) * inner,
                   (const unsigned char *)up->data + (p * (size_t)seq + (size_t)s) * inner, inner);
        }
    }
    return kiln_tops_own_strings(k, o, ph);
}

const struct kiln_cpu_op kiln_cpu_ops_index[] = {
    {"Gather", "", 1, 0, gather_run, index_prepare, 0},
    {"GatherElements", "", 11, 0, gather_elements_run, index_prepare, 0},
    {"GatherND", "", 11, 0, gather_nd_run, index_prepare, 0},
    {"Scatter", "", 9, 10, scatter_elements_run, index_prepare, 0},
    {"ScatterElements", "", 11, 0, scatter_elements_run, index_prepare, 0},
    {"ScatterND", "", 11, 0, scatter_nd_run, index_prepare, 0},
    {"TensorScatter", "", 24, 0, tensor_scatter_run, tensor_scatter_prepare, 0},
    {0},
};
