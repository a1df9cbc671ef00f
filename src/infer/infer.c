/* infer.c: the shape-inference driver, the rule registry and the kiln_ic_* helpers
 * (infer.h; docs/shape-inference.md).
 *
 * One run walks the main graph in topological order. Graph inputs take their declared
 * types (dim_params canonicalized by kiln_sym_declared), initializers their tensors' types
 * and contents (konst, and vals for small integer tensors), outer-scope values the types of
 * the enclosing graphs. Each node then gets, in this order:
 *   1. its rule (op_table.def), which sets its outputs' types;
 *   2. constant evaluation (exec/eval.h) when every input is a known constant, the inputs
 *      take at most KILN_INFER_FOLD_LIMIT bytes, and the outputs are predicted small (the
 *      rule gave complete shapes within the limit), depend on the data (NonZero, Unique:
 *      bounded by the inputs), or the op has no rule; the results replace the outputs'
 *      types and become konst/vals;
 *   3. the merge with the declared type (value_info, graph outputs) unless the run ignores
 *      them: the inferred type wins where known, a declared dim fills an unknown one, and a
 *      contradiction (element type, rank, two different known dims) is a problem naming the
 *      node and the value;
 *   4. inference of the subgraphs the rule did not infer (with their declared input types),
 *      so that every graph gets types.
 * Results live in the model's inference arena (m->infer_arena, replaced by each run);
 * g->vtypes[id] holds them. Hostile input is bounded:
 * ranks above KILN_MAX_RANK become unknown ranks, subgraph nesting beyond 64 is left
 * untyped, symbolic arithmetic is capped (sym.c), and evaluation is size-limited.
 */
#include <stdio.h>
#include <string.h>

#include "exec/eval.h"
#include "infer/infer_priv.h"
#include "plugin/plugin.h"

#define INFER_MAX_DEPTH 64

/* ------------------------------------------------------------------ registry */

#define X(name) extern const struct kiln_infer_op kiln_infer_ops_##name[];
#include "infer/op_table.def"
#undef X

static const struct kiln_infer_op *const families[] = {
#define X(name) kiln_infer_ops_##name,
#include "infer/op_table.def"
#undef X
};

static const char *dom_norm(const char *d)
{
    return !d || strcmp(d, "ai.onnx") == 0 ? "" : d;
}

const struct kiln_infer_op *kiln_infer_find_op(const char *domain, const char *op_type, int version)
{
    if (!op_type || version <= 0) return NULL;
    domain = dom_norm(domain);
    for (size_t f = 0; f < sizeof families / sizeof families[0]; f++)
        for (const struct kiln_infer_op *o = families[f]; o->name; o++) {
            if (o->name[0] != op_type[0] || strcmp(o->name, op_type) != 0) continue;
            if (strcmp(dom_norm(o->domain), domain) != 0) continue;
            if (version >= o->since && (o->until == 0 || version <= o->until)) return o;
        }
    return NULL;
}

/* ------------------------------------------------------------------ run state */

void kiln_infer_init(struct kiln_infer *inf, struct kiln_model *m)
{
    memset(inf, 0, sizeof *inf);
    inf->m = m;
    inf->arena = m ? &m->arena : NULL;
}

void kiln_infer_fini(struct kiln_infer *inf)
{
    kiln_free(inf->intern);
    inf->intern = NULL;
    inf->n_intern = inf->cap_intern = 0;
    kiln_free(inf->seen);
    inf->seen = NULL;
    inf->n_seen = inf->cap_seen = 0;
}

static void *arena_array(struct kiln_infer *inf, size_t count, size_t size)
{
    void *p = kiln_arena_array(inf->arena, count ? count : 1, size);
    if (!p) inf->nomem = true;
    return p;
}

/* Reports msg once per run (duplicates come from subgraphs inferred more than once). */
static void problem(struct kiln_infer *inf, const char *msg)
{
    uint64_t h = 1469598103934665603ull;
    for (const char *p = msg; *p; p++) h = (h ^ (uint8_t)*p) * 1099511628211ull;
    h |= 1; /* 0 marks an empty slot */
    if (inf->n_seen * 2 >= inf->cap_seen) {
        size_t cap = inf->cap_seen ? inf->cap_seen * 2 : 64;
        uint64_t *t = kiln_calloc(cap, sizeof *t);
        if (t) {
            for (size_t i = 0; i < inf->cap_seen; i++) {
                if (!inf->seen[i]) continue;
                size_t j = inf->seen[i] & (cap - 1);
                while (t[j]) j = (j + 1) & (cap - 1);
                t[j] = inf->seen[i];
            }
            kiln_free(inf->seen);
            inf->seen = t;
            inf->cap_seen = cap;
        }
    }
    if (inf->n_seen * 2 < inf->cap_seen) { /* else (NOMEM): report without deduplicating */
        size_t j = h & (inf->cap_seen - 1);
        for (; inf->seen[j]; j = (j + 1) & (inf->cap_seen - 1))
            if (inf->seen[j] == h) return;
        inf->seen[j] = h;
        inf->n_seen++;
    }
    inf->n_problems++;
    if (inf->problem) inf->problem(inf->user, msg);
}

static void vtype_clear(struct kiln_vtype *v)
{
    memset(v, 0, sizeof *v);
    v->n_vals = -1;
    v->type.rank = -1;
}

/* ------------------------------------------------------------------ types */

/* Deep copy of src into *dst (arena). canon: dim_params go through kiln_sym_declared (for
 * declared types). Depth-limited. */
static void type_copy(struct kiln_infer *inf, struct kiln_type *dst, const struct kiln_type *src,
                      bool canon, int depth)
{
    memset(dst, 0, sizeof *dst);
    dst->rank = -1;
    if (!src || depth > INFER_MAX_DEPTH) return;
    dst->kind = src->kind;
    dst->elem = src->elem;
    dst->denotation = src->denotation;
    if (src->kind == KILN_TYPE_TENSOR || src->kind == KILN_TYPE_SPARSE_TENSOR) {
        if (src->rank > KILN_MAX_RANK || src->rank < 0 || (src->rank > 0 && !src->dims)) return;
        struct kiln_dim *d = arena_array(inf, (size_t)src->rank, sizeof *d);
        if (!d) return;
        for (int i = 0; i < src->rank; i++) {
            d[i] = src->dims[i];
            if (d[i].value < 0) d[i] = canon ? kiln_sym_declared(inf, src->dims[i].param)
                                             : (struct kiln_dim){-1, src->dims[i].param};
        }
        dst->rank = src->rank;
        dst->dims = d;
    }
    if (src->inner) {
        struct kiln_type *in = arena_array(inf, 1, sizeof *in);
        if (!in) return;
        type_copy(inf, in, src->inner, canon, depth + 1);
        dst->inner = in;
    }
}

static bool type_str_eq(const struct kiln_type *a, const struct kiln_type *b)
{
    char x[512], y[512];
    kiln_type_str(a, x, sizeof x);
    kiln_type_str(b, y, sizeof y);
    return strcmp(x, y) == 0;
}

/* Merges declared type d into inferred type t (in place; t's arrays are replaced, never
 * written). Returns false on a contradiction (t unchanged where it contradicts). */
static bool type_merge(struct kiln_infer *inf, struct kiln_type *t, const struct kiln_type *d,
                       int depth)
{
    if (!d || d->kind == KILN_TYPE_NONE || depth > INFER_MAX_DEPTH) return true;
    if (t->kind == KILN_TYPE_NONE) {
        type_copy(inf, t, d, true, depth);
        return true;
    }
    if (t->kind != d->kind) return false;
    bool ok = true;
    if (t->kind == KILN_TYPE_TENSOR || t->kind == KILN_TYPE_SPARSE_TENSOR ||
        t->kind == KILN_TYPE_MAP) {
        if (t->elem == KILN_DTYPE_UNDEFINED) t->elem = d->elem;
        else if (d->elem != KILN_DTYPE_UNDEFINED && d->elem != t->elem) ok = false;
    }
    if ((t->kind == KILN_TYPE_TENSOR || t->kind == KILN_TYPE_SPARSE_TENSOR) && d->rank >= 0 &&
        d->rank <= KILN_MAX_RANK && (d->rank == 0 || d->dims)) {
        if (t->rank < 0) {
            struct kiln_type tmp;
            type_copy(inf, &tmp, d, true, depth);
            t->rank = tmp.rank;
            t->dims = tmp.dims;
        } else if (t->rank != d->rank) {
            ok = false;
        } else {
            bool fill = false;
            for (int i = 0; i < t->rank; i++) {
                if (d->dims[i].value >= 0 && t->dims[i].value >= 0 && d->dims[i].value != t->dims[i].value)
                    ok = false;
                if (!kiln_dim_defined(t->dims[i]) &&
                    (d->dims[i].value >= 0 || (d->dims[i].param && d->dims[i].param[0])))
                    fill = true;
            }
            if (fill && ok) {
                struct kiln_dim *nd = arena_array(inf, (size_t)t->rank, sizeof *nd);
                if (nd) {
                    for (int i = 0; i < t->rank; i++) {
                        nd[i] = t->dims[i];
                        if (!kiln_dim_defined(nd[i]))
                            nd[i] = d->dims[i].value >= 0 ? d->dims[i]
                                                          : kiln_sym_declared(inf, d->dims[i].param);
                    }
                    t->dims = nd;
                }
            }
        }
    }
    if (ok && d->inner && t->kind != KILN_TYPE_TENSOR) {
        if (!t->inner) {
            struct kiln_type *in = arena_array(inf, 1, sizeof *in);
            if (in) type_copy(inf, in, d->inner, true, depth + 1);
            t->inner = in;
        } else {
            struct kiln_type *in = arena_array(inf, 1, sizeof *in);
            if (!in) return ok;
            *in = *t->inner;
            ok = type_merge(inf, in, d->inner, depth + 1);
            t->inner = in;
        }
    }
    return ok;
}

size_t kiln_vtype_str(const struct kiln_vtype *t, char *buf, size_t size)
{
    if (buf && size) buf[0] = 0;
    if (!t) return kiln_type_str(NULL, buf, size);
    size_t n = kiln_type_str(&t->type, buf, size);
    if (t->data_dependent) {
        const char *s = " (data-dependent)";
        size_t l = strlen(s);
        if (buf && n < size) snprintf(buf + n, size - n, "%s", s);
        n += l;
    }
    return n;
}

/* ------------------------------------------------------------------ constants */

static bool vals_dtype(kiln_dtype dt)
{
    return kiln_dtype_is_int(dt);
}

/* Element i of an integer tensor as int64; false for u64 beyond int64. */
static bool tensor_int(const struct kiln_tensor *t, size_t i, int64_t *v)
{
    const void *d = t->data;
    switch (t->dtype) {
    case KILN_DTYPE_I64: *v = ((const int64_t *)d)[i]; return true;
    case KILN_DTYPE_I32: *v = ((const int32_t *)d)[i]; return true;
    case KILN_DTYPE_I16: *v = ((const int16_t *)d)[i]; return true;
    case KILN_DTYPE_I8: case KILN_DTYPE_I4: case KILN_DTYPE_I2: *v = ((const int8_t *)d)[i]; return true;
    case KILN_DTYPE_U8: case KILN_DTYPE_U4: case KILN_DTYPE_U2: *v = ((const uint8_t *)d)[i]; return true;
    case KILN_DTYPE_U16: *v = ((const uint16_t *)d)[i]; return true;
    case KILN_DTYPE_U32: *v = ((const uint32_t *)d)[i]; return true;
    case KILN_DTYPE_U64: {
        uint64_t u = ((const uint64_t *)d)[i];
        if (u > INT64_MAX) return false;
        *v = (int64_t)u;
        return true;
    }
    default: return false;
    }
}

/* Sets vt to the constant t (borrowed: it must outlive the run's results): its type, konst
 * and, for small integer tensors, vals. */
static void set_konst(struct kiln_infer *inf, struct kiln_vtype *vt, const struct kiln_tensor *t)
{
    vtype_clear(vt);
    if (t->rank < 0 || t->rank > KILN_MAX_RANK) return;
    vt->type.kind = KILN_TYPE_TENSOR;
    vt->type.elem = t->dtype;
    struct kiln_dim *d = arena_array(inf, (size_t)t->rank, sizeof *d);
    if (!d) return;
    for (int i = 0; i < t->rank; i++) d[i] = t->dims[i] >= 0 ? kiln_dim_int(t->dims[i]) : kiln_dim_unknown();
    vt->type.rank = t->rank;
    vt->type.dims = d;
    vt->konst = t;
    size_t n = kiln_tensor_numel(t);
    if (t->rank <= 1 && vals_dtype(t->dtype) && n <= KILN_INFER_MAX_VALS && (t->data || n == 0)) {
        struct kiln_dim *v = arena_array(inf, n, sizeof *v);
        if (!v) return;
        for (size_t i = 0; i < n; i++) {
            int64_t x;
            v[i] = tensor_int(t, i, &x) ? kiln_sym_int(inf, x) : kiln_dim_unknown();
        }
        vt->vals = v;
        vt->n_vals = (int)n;
    }
}

/* A copy of tensor src in the arena (strings too); NULL on NOMEM. */
static struct kiln_tensor *tensor_to_arena(struct kiln_infer *inf, const struct kiln_tensor *src)
{
    struct kiln_tensor *t = arena_array(inf, 1, sizeof *t);
    if (!t) return NULL;
    *t = *src;
    t->flags = 0;
    size_t nb = kiln_tensor_nbytes(src);
    t->data = arena_array(inf, nb, 1);
    if (!t->data) return NULL;
    if (src->dtype == KILN_DTYPE_STRING) {
        size_t n = kiln_tensor_numel(src);
        for (size_t i = 0; i < n; i++) {
            const char *s = ((char *const *)src->data)[i];
            char *c = kiln_arena_strndup(inf->arena, s ? s : "", s ? strlen(s) : 0);
            if (!c) {
                inf->nomem = true;
                return NULL;
            }
            ((char **)t->data)[i] = c;
        }
    } else if (nb) {
        memcpy(t->data, src->data, nb);
    }
    return t;
}

/* Type of a runtime value (tensor, sequence, optional) into t. */
static void type_of_value(struct kiln_infer *inf, struct kiln_type *t, const struct kiln_value *v,
                          int depth)
{
    memset(t, 0, sizeof *t);
    t->rank = -1;
    if (!v || depth > INFER_MAX_DEPTH) return;
    if (v->kind == KILN_VALUE_TENSOR) {
        t->kind = KILN_TYPE_TENSOR;
        t->elem = v->t.dtype;
        if (v->t.rank < 0 || v->t.rank > KILN_MAX_RANK) return;
        struct kiln_dim *d = arena_array(inf, (size_t)v->t.rank, sizeof *d);
        if (!d) return;
        for (int i = 0; i < v->t.rank; i++) d[i] = kiln_dim_int(v->t.dims[i]);
        t->rank = v->t.rank;
        t->dims = d;
        return;
    }
    t->kind = v->kind == KILN_VALUE_SEQUENCE ? KILN_TYPE_SEQUENCE : KILN_TYPE_OPTIONAL;
    struct kiln_type *in = arena_array(inf, 1, sizeof *in);
    if (!in) return;
    t->inner = in;
    if (v->kind == KILN_VALUE_SEQUENCE) {
        /* element shapes may differ: keep the first's rank only when all agree */
        memset(in, 0, sizeof *in);
        in->kind = KILN_TYPE_TENSOR;
        in->elem = v->elem_dtype;
        in->rank = -1;
        if (v->count > 0 && v->items[0]->kind == KILN_VALUE_TENSOR) {
            type_of_value(inf, in, v->items[0], depth + 1);
            for (size_t i = 1; i < v->count && in->rank >= 0; i++) {
                const struct kiln_value *it = v->items[i];
                if (it->kind != KILN_VALUE_TENSOR || it->t.rank != in->rank) {
                    in->rank = -1;
                    in->dims = NULL;
                    break;
                }
                struct kiln_dim *nd = arena_array(inf, (size_t)in->rank, sizeof *nd);
                if (!nd) break;
                for (int d = 0; d < in->rank; d++)
                    nd[d] = in->dims[d].value == it->t.dims[d] ? in->dims[d] : kiln_dim_unknown();
                in->dims = nd;
            }
        }
    } else {
        if (v->count == 1) type_of_value(inf, in, v->items[0], depth + 1);
        else {
            memset(in, 0, sizeof *in);
            in->kind = v->elem_kind == KILN_VALUE_SEQUENCE ? KILN_TYPE_SEQUENCE : KILN_TYPE_TENSOR;
            in->elem = v->elem_dtype;
            in->rank = -1;
        }
    }
}

/* Bytes a fully known tensor type takes; false when unknown or beyond the limits. */
static bool type_bytes(const struct kiln_type *t, size_t *bytes)
{
    if (t->kind != KILN_TYPE_TENSOR || t->rank < 0 || t->elem == KILN_DTYPE_UNDEFINED) return false;
    uint64_t n = 1;
    for (int i = 0; i < t->rank; i++) {
        if (t->dims[i].value < 0) return false;
        if (__builtin_mul_overflow(n, (uint64_t)t->dims[i].value, &n) || n > KILN_MAX_NUMEL) return false;
    }
    size_t es = kiln_dtype_size(t->elem);
    if (es == 0 || n > SIZE_MAX / es) return false;
    *bytes = (size_t)n * es;
    return true;
}

/* ------------------------------------------------------------------ graphs */

static kiln_status infer_graph(struct kiln_infer *inf, struct kiln_graph *g, const struct kiln_node *owner,
                               size_t n_in, const struct kiln_type *const *in_types, kiln_err *err);

/* Forgets every graph's types (results of an earlier run), so that step 4 knows which
 * subgraphs this run has not reached yet. */
static void clear_vtypes(struct kiln_graph *g, int depth)
{
    if (!g || depth > INFER_MAX_DEPTH) return;
    g->vtypes = NULL;
    g->vorder = NULL;
    g->n_vorder = 0;
    for (size_t i = 0; i < g->n_nodes; i++)
        for (size_t k = 0; k < g->nodes[i].n_attr; k++) {
            const struct kiln_attr *a = &g->nodes[i].attrs[k];
            if (a->type == KILN_ATTR_GRAPH) clear_vtypes(a->g, depth + 1);
            if (a->type == KILN_ATTR_GRAPHS && a->graphs)
                for (size_t j = 0; j < a->n; j++) clear_vtypes(a->graphs[j], depth + 1);
        }
}

static const char *node_where(const struct kiln_ictx *c, char *buf, size_t size)
{
    char lb[300];
    kiln_node_label(c->node, lb, sizeof lb);
    if (c->g && c->g->parent)
        snprintf(buf, size, "%s in subgraph '%s'", lb, c->g->name ? c->g->name : "");
    else
        snprintf(buf, size, "%s", lb);
    return buf;
}

void kiln_ic_problem(struct kiln_ictx *c, const char *fmt, ...)
{
    char where[400], msg[1024], full[1500];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(full, sizeof full, "%s: %s", node_where(c, where, sizeof where), msg);
    problem(c->inf, full);
}

/* All evaluations of one run together touch at most this many bytes (inputs and
 * outputs), so a hostile model of many small constant nodes cannot make inference slow or
 * fill the arena; beyond it, nodes get only their types. */
#define INFER_EVAL_BUDGET ((size_t)64 << 20)
/* Ops whose work grows faster than their inputs and outputs (a Conv of 64 KiB in and out
 * can take 10^8 multiply-adds) are evaluated only when their inputs are this small. */
#define INFER_EVAL_SMALL ((size_t)4096)

static bool superlinear(const struct kiln_node *n)
{
    static const char *const ops[] = {
        "Conv", "ConvTranspose", "ConvInteger", "QLinearConv", "DeformConv", "MatMul",
        "MatMulInteger", "QLinearMatMul", "Gemm", "Einsum", "RNN", "GRU", "LSTM", "Attention",
        "MaxPool", "AveragePool", "LpPool", "MaxRoiPool", "RoiAlign", "NonMaxSuppression",
        "DFT", "STFT", "Det", "Col2Im", "TfIdfVectorizer", "MelWeightMatrix", "Resize",
        "Upsample", "GridSample", "TreeEnsembleClassifier", "TreeEnsembleRegressor",
        "TreeEnsemble", "SVMClassifier", "SVMRegressor", "LRN", "CumSum", "CumProd",
    };
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        if (strcmp(n->op_type, ops[i]) == 0) return true;
    return n->domain && n->domain[0] && strcmp(n->domain, "ai.onnx.ml") != 0; /* unknown cost */
}

/* Step 2: evaluates node c->node on its constant inputs. */
static kiln_status evaluate(struct kiln_ictx *c, bool has_rule, kiln_err *err)
{
    struct kiln_infer *inf = c->inf;
    const struct kiln_node *n = c->node;
    if (!kiln_eval_can(c->m, n)) return KILN_OK;
    size_t in_bytes = 0;
    for (size_t i = 0; i < c->n_in; i++) {
        if (!c->in[i]) continue;
        if (!c->in[i]->konst) return KILN_OK;
        size_t b = kiln_tensor_nbytes(c->in[i]->konst);
        if (!kiln_add_size(in_bytes, b, &in_bytes) || in_bytes > KILN_INFER_FOLD_LIMIT) return KILN_OK;
    }
    bool small = true, dd = false, any = false;
    size_t out_bytes = 0;
    for (size_t j = 0; j < c->n_out; j++) {
        if (!c->out[j]) continue;
        any = true;
        size_t b;
        dd = dd || c->out[j]->data_dependent;
        if (!type_bytes(&c->out[j]->type, &b) || !kiln_add_size(out_bytes, b, &out_bytes))
            small = false;
    }
    if (!any) return KILN_OK;
    bool all_known = true; /* Constant: the rule borrowed the attribute's tensor */
    for (size_t j = 0; j < c->n_out; j++) all_known = all_known && (!c->out[j] || c->out[j]->konst);
    if (all_known) return KILN_OK;
    if (superlinear(n) && in_bytes > INFER_EVAL_SMALL) return KILN_OK;
    size_t cost = in_bytes + (small ? out_bytes : KILN_INFER_FOLD_LIMIT);
    if (inf->eval_bytes + cost > INFER_EVAL_BUDGET) return KILN_OK;
    inf->eval_bytes += cost;
    if (small && out_bytes > KILN_INFER_FOLD_LIMIT) return KILN_OK;
    if (!small && has_rule && !dd) return KILN_OK;

    struct kiln_value *vin = kiln_calloc(c->n_in + 1, sizeof *vin);
    const struct kiln_value **pin = kiln_calloc(c->n_in + 1, sizeof *pin);
    struct kiln_value **pout = kiln_calloc(c->n_out + 1, sizeof *pout);
    if (!vin || !pin || !pout) {
        kiln_free(vin);
        kiln_free(pin);
        kiln_free(pout);
        return kiln_err_set(err, KILN_E_NOMEM, "shape inference: out of memory");
    }
    for (size_t i = 0; i < c->n_in; i++) {
        if (!c->in[i]) continue;
        vin[i].kind = KILN_VALUE_TENSOR;
        vin[i].t = *c->in[i]->konst;
        vin[i].t.flags = 0; /* borrowed: never freed here */
        pin[i] = &vin[i];
    }
    kiln_err e = {0};
    kiln_status st = kiln_eval_node(c->m, n, pin, pout, &e);
    kiln_status rc = KILN_OK;
    if (st == KILN_E_NOMEM) {
        rc = kiln_err_set(err, KILN_E_NOMEM, "%s", e.msg);
    } else if (st == KILN_E_INVALID_MODEL || st == KILN_E_INVALID_ARG) {
        problem(inf, e.msg);
    } else if (st == KILN_OK) {
        for (size_t j = 0; j < c->n_out; j++) {
            struct kiln_vtype *vt = c->out[j];
            if (!vt || !pout[j]) continue;
            const struct kiln_value *v = pout[j];
            if (v->kind == KILN_VALUE_TENSOR && kiln_tensor_nbytes(&v->t) <= KILN_INFER_FOLD_LIMIT) {
                struct kiln_tensor *t = tensor_to_arena(inf, &v->t);
                if (t) set_konst(inf, vt, t);
            } else {
                vtype_clear(vt);
                type_of_value(inf, &vt->type, v, 0);
            }
        }
    }
    for (size_t j = 0; j < c->n_out; j++) kiln_value_free(pout[j]);
    kiln_free(vin);
    kiln_free(pin);
    kiln_free(pout);
    return rc;
}

/* Small int64/int32 outputs whose every element is known (Shape of a known shape, and
 * the arithmetic after it) become constants too, so that any op downstream can be
 * evaluated by its kernel. */
static void vals_to_konst(struct kiln_infer *inf, struct kiln_vtype *vt)
{
    const struct kiln_type *t = &vt->type;
    if (vt->konst || vt->n_vals < 0 || t->kind != KILN_TYPE_TENSOR || t->rank < 0 || t->rank > 1)
        return;
    if (t->elem != KILN_DTYPE_I64 && t->elem != KILN_DTYPE_I32) return;
    if (t->rank == 1 ? t->dims[0].value != vt->n_vals : vt->n_vals != 1) return;
    int64_t v[KILN_INFER_MAX_VALS];
    for (int i = 0; i < vt->n_vals; i++) {
        if (!kiln_dim_int_value(vt->vals[i], &v[i])) return;
        if (t->elem == KILN_DTYPE_I32 && (v[i] < INT32_MIN || v[i] > INT32_MAX)) return;
    }
    struct kiln_tensor *k = arena_array(inf, 1, sizeof *k);
    if (!k) return;
    k->dtype = t->elem;
    k->rank = t->rank;
    if (t->rank) k->dims[0] = vt->n_vals;
    k->data = arena_array(inf, (size_t)vt->n_vals, 8);
    if (!k->data) return;
    for (int i = 0; i < vt->n_vals; i++) {
        if (t->elem == KILN_DTYPE_I64) ((int64_t *)k->data)[i] = v[i];
        else ((int32_t *)k->data)[i] = (int32_t)v[i];
    }
    vt->konst = k;
}

/* Step 3: merges value id's declared type into its inferred one. */
static void merge_declared(struct kiln_ictx *c, int id)
{
    struct kiln_infer *inf = c->inf;
    const struct kiln_graph_value *gv = &c->g->values[id];
    if (!gv->info || (inf->flags & KILN_INFER_IGNORE_DECLARED)) return;
    struct kiln_vtype *vt = &c->g->vtypes[id];
    struct kiln_type t = vt->type;
    if (type_merge(inf, &t, &gv->info->type, 0)) {
        vt->type = t;
        return;
    }
    char d[512], i[512];
    kiln_type_str(&gv->info->type, d, sizeof d);
    kiln_type_str(&vt->type, i, sizeof i);
    if (strcmp(d, i) == 0) return;
    kiln_ic_problem(c, "output '%s' declared %s, inferred %s", gv->name, d, i);
}

/* Infers subgraph attributes of node n that no rule reached (declared input types). */
static kiln_status infer_leftover_subgraphs(struct kiln_infer *inf, struct kiln_node *n, kiln_err *err)
{
    for (size_t k = 0; k < n->n_attr; k++) {
        const struct kiln_attr *a = &n->attrs[k];
        if (a->type == KILN_ATTR_GRAPH && a->g && !a->g->vtypes)
            KILN_TRY(infer_graph(inf, a->g, n, 0, NULL, err));
        if (a->type == KILN_ATTR_GRAPHS && a->graphs)
            for (size_t j = 0; j < a->n; j++)
                if (a->graphs[j] && !a->graphs[j]->vtypes)
                    KILN_TRY(infer_graph(inf, a->graphs[j], n, 0, NULL, err));
    }
    return KILN_OK;
}

static kiln_status infer_node(struct kiln_infer *inf, struct kiln_graph *g, struct kiln_node *n,
                              kiln_err *err)
{
    const struct kiln_vtype *in_small[16];
    struct kiln_vtype *out_small[16];
    const struct kiln_vtype **in = n->n_in <= 16 ? in_small : kiln_calloc(n->n_in, sizeof *in);
    struct kiln_vtype **out = n->n_out <= 16 ? out_small : kiln_calloc(n->n_out, sizeof *out);
    kiln_status st = KILN_OK;
    if (!in || !out) {
        st = kiln_err_set(err, KILN_E_NOMEM, "shape inference: out of memory");
        goto done;
    }
    bool dd_in = false;
    for (size_t i = 0; i < n->n_in; i++) {
        int id = n->in_ids ? n->in_ids[i] : -1;
        in[i] = id >= 0 && (size_t)id < g->n_values ? &g->vtypes[id] : NULL;
        dd_in = dd_in || (in[i] && in[i]->data_dependent);
    }
    for (size_t j = 0; j < n->n_out; j++) {
        int id = n->out_ids ? n->out_ids[j] : -1;
        out[j] = id >= 0 && (size_t)id < g->n_values ? &g->vtypes[id] : NULL;
        if (out[j]) vtype_clear(out[j]);
    }
    struct kiln_ictx c = {
        .inf = inf, .m = inf->m, .g = g, .node = n, .opset = n->since, .n_in = n->n_in,
        .n_out = n->n_out, .in = in, .out = out,
    };
    const struct kiln_infer_op *rule = kiln_infer_find_op(n->domain, n->op_type, n->since);
    bool typed = rule != NULL;
    if (rule) {
        st = rule->infer(&c);
        if (st == KILN_E_NOMEM || inf->nomem) {
            st = kiln_err_set(err, KILN_E_NOMEM, "shape inference: out of memory");
            goto done;
        }
        st = KILN_OK; /* a rule's other failures are its problems, already reported */
    } else {
        /* Plugin hook: no rule of kiln's own, but a loaded plugin may declare the op; its
         * shape function types the outputs (src/plugin/plugin.c). */
        st = kiln_plugin_infer(&c, &typed, err);
        if (st == KILN_OK && inf->nomem) st = kiln_err_set(err, KILN_E_NOMEM, "shape inference: out of memory");
        if (st) goto done;
    }
    /* Inputs whose dims depend on the data make outputs with undetermined dims so too. */
    for (size_t j = 0; dd_in && j < n->n_out; j++) {
        if (!out[j] || out[j]->type.kind == KILN_TYPE_NONE) continue;
        bool open = out[j]->type.kind == KILN_TYPE_TENSOR && out[j]->type.rank < 0;
        for (int d = 0; out[j]->type.kind == KILN_TYPE_TENSOR && d < out[j]->type.rank; d++)
            open = open || out[j]->type.dims[d].value < 0;
        if (open) out[j]->data_dependent = true;
    }
    for (size_t j = 0; j < n->n_out; j++)
        if (out[j]) vals_to_konst(inf, out[j]);
    st = evaluate(&c, typed, err);
    if (st) goto done;
    for (size_t j = 0; j < n->n_out; j++)
        if (out[j]) merge_declared(&c, n->out_ids[j]);
    st = infer_leftover_subgraphs(inf, n, err);
done:
    if (in != in_small) kiln_free(in);
    if (out != out_small) kiln_free(out);
    return st;
}

/* Infers graph g; owner: the node whose attribute g is (NULL for the main graph), named in
 * problems with g's inputs; in_types[0..n_in): the types its rule gives g's inputs. */
static kiln_status infer_graph(struct kiln_infer *inf, struct kiln_graph *g, const struct kiln_node *owner,
                               size_t n_in, const struct kiln_type *const *in_types, kiln_err *err)
{
    if (inf->depth > INFER_MAX_DEPTH) return KILN_OK; /* left untyped */
    if (!g->linked || (g->n_values && !g->values))
        return kiln_err_set(err, KILN_E_INVALID_MODEL, "graph '%s' is not linked", g->name ? g->name : "");
    if (!g->acyclic)
        return kiln_err_set(err, KILN_E_INVALID_MODEL, "graph '%s' has a cycle; cannot infer shapes",
                            g->name ? g->name : "");
    struct kiln_vtype *vt = arena_array(inf, g->n_values, sizeof *vt);
    if (!vt) return kiln_err_set(err, KILN_E_NOMEM, "shape inference: out of memory");
    for (size_t i = 0; i < g->n_values; i++) vtype_clear(&vt[i]);
    g->vtypes = vt;
    const struct kiln_model *m = inf->m;
    for (size_t id = 0; id < g->n_values; id++) {
        const struct kiln_graph_value *gv = &g->values[id];
        switch (gv->def) {
        case KILN_DEF_INPUT: {
            const struct kiln_type *decl = gv->info ? &gv->info->type : NULL;
            const struct kiln_type *given = gv->producer >= 0 && (size_t)gv->producer < n_in && in_types
                                                ? in_types[gv->producer] : NULL;
            if (given) {
                type_copy(inf, &vt[id].type, given, false, 0);
                if (decl && !type_merge(inf, &vt[id].type, decl, 0) && !type_str_eq(decl, given)) {
                    char d[512], i[512], msg[1600], lb[300] = "";
                    kiln_type_str(decl, d, sizeof d);
                    kiln_type_str(given, i, sizeof i);
                    if (owner) kiln_node_label(owner, lb, sizeof lb);
                    snprintf(msg, sizeof msg, "%s%ssubgraph '%s': input '%s' declared %s, inferred %s", lb,
                             owner ? ": " : "", g->name ? g->name : "", gv->name, d, i);
                    problem(inf, msg);
                }
            } else {
                type_copy(inf, &vt[id].type, decl, true, 0);
            }
            for (size_t k = 0; !owner && k < inf->n_values; k++) {
                const struct kiln_value *v = inf->values[k];
                if (!v || v->kind != KILN_VALUE_TENSOR || !inf->value_names[k] ||
                    strcmp(inf->value_names[k], gv->name) != 0 ||
                    kiln_tensor_nbytes(&v->t) > KILN_INFER_FOLD_LIMIT)
                    continue;
                struct kiln_tensor *t = tensor_to_arena(inf, &v->t);
                if (t) set_konst(inf, &vt[id], t);
            }
            break;
        }
        case KILN_DEF_INIT: {
            if (gv->producer < 0 || (size_t)gv->producer >= g->n_inits) break;
            const struct kiln_tensor *t = &g->inits[gv->producer].t;
            const struct kiln_value_info *vi = gv->info;
            bool overridable = vi && vi >= g->inputs && vi < g->inputs + g->n_inputs && !g->parent &&
                               m->ir_version >= 4;
            set_konst(inf, &vt[id], t);
            if (overridable) { /* a default the caller may replace: only its declared type */
                struct kiln_type ty = vt[id].type;
                vtype_clear(&vt[id]);
                if (vi->type.kind == KILN_TYPE_TENSOR && vi->type.rank >= 0)
                    type_copy(inf, &vt[id].type, &vi->type, true, 0);
                else
                    vt[id].type = ty;
            }
            break;
        }
        case KILN_DEF_OUTER: {
            const struct kiln_vtype *o = g->parent ? kiln_infer_lookup(g->parent, gv->name) : NULL;
            if (o) vt[id] = *o;
            break;
        }
        default: break;
        }
    }
    /* Sparse initializers: their dense type. */
    for (size_t i = 0; i < g->n_sparse_inits; i++) {
        const struct kiln_sparse_tensor *sp = &g->sparse_inits[i];
        int id = sp->name ? kiln_graph_find(g, sp->name) : -1;
        if (id < 0 || sp->rank < 0 || sp->rank > KILN_MAX_RANK || vt[id].type.kind) continue;
        struct kiln_dim *d = arena_array(inf, (size_t)sp->rank, sizeof *d);
        if (!d) break;
        for (int k = 0; k < sp->rank; k++) d[k] = sp->dims[k] >= 0 ? kiln_dim_int(sp->dims[k]) : kiln_dim_unknown();
        vt[id].type = (struct kiln_type){.kind = KILN_TYPE_TENSOR, .elem = sp->values.dtype,
                                         .rank = sp->rank, .dims = d};
    }
    /* The listing order: inputs, initializers, then node outputs in topological order. */
    g->vorder = arena_array(inf, g->n_values, sizeof *g->vorder);
    g->n_vorder = 0;
    if (g->vorder) {
        for (size_t i = 0; i < g->n_inputs; i++) {
            int id = g->inputs[i].name ? kiln_graph_find(g, g->inputs[i].name) : -1;
            if (id >= 0 && g->values[id].def == KILN_DEF_INPUT) g->vorder[g->n_vorder++] = id;
        }
        for (size_t i = 0; i < g->n_inits; i++) {
            int id = g->inits[i].name ? kiln_graph_find(g, g->inits[i].name) : -1;
            if (id >= 0 && g->values[id].def == KILN_DEF_INIT && g->values[id].producer == (int)i)
                g->vorder[g->n_vorder++] = id;
        }
        for (size_t i = 0; i < g->n_sparse_inits; i++) {
            int id = g->sparse_inits[i].name ? kiln_graph_find(g, g->sparse_inits[i].name) : -1;
            if (id >= 0 && g->values[id].def == KILN_DEF_INIT && g->values[id].producer < 0 &&
                g->n_vorder < g->n_values)
                g->vorder[g->n_vorder++] = id;
        }
        for (size_t k = 0; k < g->n_nodes; k++) {
            int ni = g->order ? g->order[k] : (int)k;
            const struct kiln_node *n = &g->nodes[ni];
            for (size_t j = 0; j < n->n_out; j++) {
                int id = n->out_ids ? n->out_ids[j] : -1;
                if (id >= 0 && g->values[id].def == KILN_DEF_NODE && g->values[id].producer == ni &&
                    g->n_vorder < g->n_values)
                    g->vorder[g->n_vorder++] = id;
            }
        }
    }
    if (inf->nomem) return kiln_err_set(err, KILN_E_NOMEM, "shape inference: out of memory");
    inf->depth++;
    kiln_status st = KILN_OK;
    for (size_t k = 0; k < g->n_nodes && !st; k++) {
        int ni = g->order ? g->order[k] : (int)k;
        if (ni < 0 || (size_t)ni >= g->n_nodes) continue;
        st = infer_node(inf, g, &g->nodes[ni], err);
        if (!st && inf->nomem) st = kiln_err_set(err, KILN_E_NOMEM, "shape inference: out of memory");
    }
    inf->depth--;
    return st;
}

/* ------------------------------------------------------------------ running it */

kiln_status kiln_infer_model_ex(struct kiln_model *m, unsigned flags, kiln_problem_fn prob,
                                void *user, size_t *n_problems, kiln_err *err)
{
    return kiln_infer_model_values(m, flags, 0, NULL, NULL, prob, user, n_problems, err);
}

kiln_status kiln_infer_model_values(struct kiln_model *m, unsigned flags, size_t n_values,
                                    const char *const *names, const struct kiln_value *const *values,
                                    kiln_problem_fn prob, void *user, size_t *n_problems, kiln_err *err)
{
    if (n_problems) *n_problems = 0;
    if (!m || !m->graph) return kiln_err_set(err, KILN_E_INVALID_MODEL, "model has no graph");
    struct kiln_infer inf;
    struct kiln_arena fresh = {0};
    kiln_infer_init(&inf, m);
    inf.arena = &fresh; /* this run's results; the last run's go once nothing points there */
    inf.flags = flags;
    inf.n_values = names && values ? n_values : 0;
    inf.value_names = names;
    inf.values = values;
    inf.problem = prob;
    inf.user = user;
    clear_vtypes(m->graph, 0);
    kiln_arena_free(&m->infer_arena);
    kiln_status st = infer_graph(&inf, m->graph, NULL, 0, NULL, err);
    if (!st && inf.nomem) st = kiln_err_set(err, KILN_E_NOMEM, "shape inference: out of memory");
    if (st) { /* no half results */
        clear_vtypes(m->graph, 0);
        kiln_arena_free(&fresh);
    } else {
        m->infer_arena = fresh;
    }
    if (n_problems) *n_problems = inf.n_problems;
    kiln_infer_fini(&inf);
    return st;
}

kiln_status kiln_infer_model(struct kiln_model *m, kiln_problem_fn problem, void *user,
                             size_t *n_problems, kiln_err *err)
{
    return kiln_infer_model_ex(m, 0, problem, user, n_problems, err);
}

const struct kiln_vtype *kiln_infer_value(const struct kiln_graph *g, int id)
{
    if (!g || !g->vtypes || id < 0 || (size_t)id >= g->n_values) return NULL;
    return &g->vtypes[id];
}

const struct kiln_vtype *kiln_infer_lookup(const struct kiln_graph *g, const char *name)
{
    for (int depth = 0; g && name && depth <= INFER_MAX_DEPTH; depth++, g = g->parent) {
        int id = kiln_graph_find(g, name);
        if (id < 0) continue;
        if (g->values[id].def == KILN_DEF_OUTER && g->parent) continue;
        return kiln_infer_value(g, id);
    }
    return NULL;
}

/* ------------------------------------------------------------------ helpers for rules */

const struct kiln_vtype *kiln_ic_in(const struct kiln_ictx *c, size_t i)
{
    return i < c->n_in ? c->in[i] : NULL;
}

bool kiln_ic_in_tensor(const struct kiln_ictx *c, size_t i, kiln_dtype *dt, int *rank,
                       const struct kiln_dim **dims)
{
    const struct kiln_vtype *v = kiln_ic_in(c, i);
    if (!v || v->type.kind != KILN_TYPE_TENSOR || v->type.elem == KILN_DTYPE_UNDEFINED ||
        v->type.rank < 0)
        return false;
    if (dt) *dt = v->type.elem;
    if (rank) *rank = v->type.rank;
    if (dims) *dims = v->type.dims;
    return true;
}

kiln_dtype kiln_ic_in_dtype(const struct kiln_ictx *c, size_t i)
{
    const struct kiln_vtype *v = kiln_ic_in(c, i);
    return v && v->type.kind == KILN_TYPE_TENSOR ? v->type.elem : KILN_DTYPE_UNDEFINED;
}

int kiln_ic_in_rank(const struct kiln_ictx *c, size_t i)
{
    const struct kiln_vtype *v = kiln_ic_in(c, i);
    return v && v->type.kind == KILN_TYPE_TENSOR ? v->type.rank : -1;
}

const struct kiln_tensor *kiln_ic_const(const struct kiln_ictx *c, size_t i)
{
    const struct kiln_vtype *v = kiln_ic_in(c, i);
    return v ? v->konst : NULL;
}

bool kiln_ic_vals(const struct kiln_ictx *c, size_t i, int *n, const struct kiln_dim **vals)
{
    const struct kiln_vtype *v = kiln_ic_in(c, i);
    if (!v || v->n_vals < 0 || (v->n_vals > 0 && !v->vals)) return false;
    *n = v->n_vals;
    *vals = v->vals;
    return true;
}

bool kiln_ic_ints(const struct kiln_ictx *c, size_t i, int64_t *v, size_t cap, size_t *n)
{
    const struct kiln_vtype *vt = kiln_ic_in(c, i);
    if (!vt) return false;
    if (vt->konst && vals_dtype(vt->konst->dtype)) {
        size_t k = kiln_tensor_numel(vt->konst);
        if (k > cap || (k && !vt->konst->data)) return false;
        for (size_t j = 0; j < k; j++)
            if (!tensor_int(vt->konst, j, &v[j])) return false;
        *n = k;
        return true;
    }
    if (vt->n_vals < 0 || (size_t)vt->n_vals > cap) return false;
    for (int j = 0; j < vt->n_vals; j++)
        if (!kiln_dim_int_value(vt->vals[j], &v[j])) return false;
    *n = (size_t)vt->n_vals;
    return true;
}

int64_t kiln_ic_attr_i(const struct kiln_ictx *c, const char *name, int64_t def)
{
    const struct kiln_attr *a = kiln_node_attr(c->node, name);
    return a && a->type == KILN_ATTR_INT ? a->i : def;
}

float kiln_ic_attr_f(const struct kiln_ictx *c, const char *name, float def)
{
    const struct kiln_attr *a = kiln_node_attr(c->node, name);
    return a && a->type == KILN_ATTR_FLOAT ? a->f : def;
}

const char *kiln_ic_attr_s(const struct kiln_ictx *c, const char *name, const char *def)
{
    const struct kiln_attr *a = kiln_node_attr(c->node, name);
    return a && a->type == KILN_ATTR_STRING && a->s ? a->s : def;
}

size_t kiln_ic_attr_ints(const struct kiln_ictx *c, const char *name, const int64_t **v)
{
    const struct kiln_attr *a = kiln_node_attr(c->node, name);
    if (!a || a->type != KILN_ATTR_INTS || (a->n && !a->ints)) {
        *v = NULL;
        return 0;
    }
    *v = a->ints;
    return a->n;
}

bool kiln_ic_attr_has(const struct kiln_ictx *c, const char *name)
{
    return kiln_node_attr(c->node, name) != NULL;
}

kiln_status kiln_ic_set_tensor(struct kiln_ictx *c, size_t i, kiln_dtype dt, int rank,
                               const struct kiln_dim *dims)
{
    if (i >= c->n_out || !c->out[i]) return KILN_OK;
    struct kiln_vtype *vt = c->out[i];
    vt->type = (struct kiln_type){.kind = KILN_TYPE_TENSOR, .elem = dt, .rank = -1};
    if (rank > KILN_MAX_RANK) {
        kiln_ic_problem(c, "output '%s' would have rank %d; kiln's limit is %d", c->node->outputs[i],
                        rank, KILN_MAX_RANK);
        return KILN_OK;
    }
    if (rank < 0 || (rank > 0 && !dims)) return KILN_OK;
    struct kiln_dim *d = arena_array(c->inf, (size_t)rank, sizeof *d);
    if (!d) return KILN_E_NOMEM;
    for (int k = 0; k < rank; k++) {
        d[k] = dims[k];
        int64_t v;
        if (d[k].value < -1 || (d[k].value < 0 && kiln_dim_int_value(d[k], &v))) d[k] = kiln_dim_unknown();
        if (d[k].value < 0 && d[k].param && !d[k].param[0]) d[k] = kiln_dim_unknown();
    }
    vt->type.rank = rank;
    vt->type.dims = d;
    return KILN_OK;
}

kiln_status kiln_ic_set_like(struct kiln_ictx *c, size_t i, size_t j)
{
    const struct kiln_vtype *src = kiln_ic_in(c, j);
    if (i >= c->n_out || !c->out[i] || !src) return KILN_OK;
    c->out[i]->type = src->type; /* types are never written in place: sharing is safe */
    return KILN_OK;
}

kiln_status kiln_ic_set_type(struct kiln_ictx *c, size_t i, const struct kiln_type *t)
{
    if (i >= c->n_out || !c->out[i] || !t) return KILN_OK;
    type_copy(c->inf, &c->out[i]->type, t, false, 0);
    return c->inf->nomem ? KILN_E_NOMEM : KILN_OK;
}

kiln_status kiln_ic_set_vals(struct kiln_ictx *c, size_t i, int n, const struct kiln_dim *vals)
{
    if (i >= c->n_out || !c->out[i] || n < 0 || n > KILN_INFER_MAX_VALS || (n && !vals)) return KILN_OK;
    struct kiln_dim *v = arena_array(c->inf, (size_t)n, sizeof *v);
    if (!v) return KILN_E_NOMEM;
    memcpy(v, vals, (size_t)n * sizeof *v);
    c->out[i]->vals = v;
    c->out[i]->n_vals = n;
    return KILN_OK;
}

void kiln_ic_data_dependent(struct kiln_ictx *c, size_t i)
{
    if (i < c->n_out && c->out[i]) c->out[i]->data_dependent = true;
}

bool kiln_ic_broadcast(struct kiln_ictx *c, size_t n, const size_t *inputs, int *rank,
                       struct kiln_dim *out)
{
    int r = 0;
    const struct kiln_type *ts[64];
    size_t m = 0;
    for (size_t k = 0; k < n && m < 64; k++) {
        const struct kiln_vtype *v = kiln_ic_in(c, inputs[k]);
        if (!v) continue; /* absent optional input */
        if (v->type.kind != KILN_TYPE_TENSOR || v->type.rank < 0 || v->type.rank > KILN_MAX_RANK)
            return false;
        ts[m++] = &v->type;
        if (v->type.rank > r) r = v->type.rank;
    }
    if (m == 0) return false;
    for (int d = 0; d < r; d++) {
        struct kiln_dim res = kiln_dim_int(1), sym = {0};
        bool have_known = false, unknown = false, sym_conflict = false;
        for (size_t k = 0; k < m; k++) {
            int off = d - (r - ts[k]->rank);
            if (off < 0) continue;
            struct kiln_dim x = ts[k]->dims[off];
            if (x.value == 1) continue;
            if (x.value >= 0) {
                if (have_known && res.value != x.value) {
                    char a[64], b[64];
                    snprintf(a, sizeof a, "%lld", (long long)res.value);
                    snprintf(b, sizeof b, "%lld", (long long)x.value);
                    kiln_ic_problem(c, "inputs cannot broadcast: dimension %d is %s in one input and "
                                       "%s in another", d, a, b);
                    return false;
                }
                res = x;
                have_known = true;
            } else if (x.param) {
                if (sym.param && !kiln_dim_eq(sym, x)) sym_conflict = true;
                sym = x;
            } else {
                unknown = true;
            }
        }
        if (have_known) out[d] = res;
        else if (unknown || sym_conflict) out[d] = kiln_dim_unknown();
        else if (sym.param) out[d] = sym;
        else out[d] = kiln_dim_int(1);
    }
    *rank = r;
    return true;
}

kiln_status kiln_ic_subgraph(struct kiln_ictx *c, struct kiln_graph *sg, size_t n_in,
                             const struct kiln_type *const *in_types)
{
    if (!sg) return KILN_OK;
    kiln_err e = {0};
    kiln_status st = infer_graph(c->inf, sg, c->node, n_in, in_types, &e);
    if (st == KILN_E_NOMEM) return st;
    if (st) problem(c->inf, e.msg);
    return KILN_OK;
}

bool kiln_ic_axis(struct kiln_ictx *c, int64_t axis, int rank, int *out)
{
    if (axis < -(int64_t)rank || axis >= rank) {
        kiln_ic_problem(c, "axis %lld is out of range for rank %d", (long long)axis, rank);
        return false;
    }
    *out = (int)(axis < 0 ? axis + rank : axis);
    return true;
}
