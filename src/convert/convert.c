/* convert.c: upward opset conversion of the default ONNX domain (kiln_model_convert_opset).
 *
 * Follows the operator changelog of onnx/onnx (docs/Changelog.md) and the op versions of
 * src/ops/schema_table.def. For each node of the default domain, in the main graph, every
 * subgraph and every model function, the schema version the old opset selects is compared
 * with the one the new opset selects. Equal: nothing to do. Different: the rule for the op
 * below rewrites the node (attributes that became inputs, renamed or removed attributes,
 * changed defaults made explicit, replaced ops) or refuses with KILN_E_UNSUPPORTED naming the
 * node, the op and why. Ops without a rule changed only additively between the versions
 * crossed (new types, new attributes whose defaults keep the old behaviour), so their
 * version is bumped by the new opset_import alone. docs/convert.md lists the rules.
 *
 * Nothing is changed until every node has been converted: each graph gets new node and
 * initializer arrays (in the model's arena), which replace the old ones only at the end, so
 * a refusal or an out-of-memory leaves the model as it was (apart from unreachable arena
 * memory). New constant inputs become initializers of the graph holding the node, or
 * Constant nodes inside function bodies (which have no initializers). The model is relinked
 * afterwards.
 */
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "ir/ir.h"
#include "ops/schema.h"

/* One graph (or function body) being rebuilt. */
struct gbuild {
    struct kiln_graph *g; /* NULL for a function body */
    struct kiln_function *fn;
    struct kiln_node *nodes; /* kiln_malloc'd, grows */
    size_t n_nodes, cap_nodes;
    struct kiln_initializer *inits; /* kiln_malloc'd, grows; starts as a copy of g's */
    size_t n_inits, cap_inits;
    bool in_arena; /* nodes and inits were moved into the arena (the swap is next) */
    /* what the swap replaced, to undo it when the relink fails */
    struct kiln_node *old_nodes;
    size_t old_n_nodes, old_n_inits;
    struct kiln_initializer *old_inits;
};

struct conv {
    struct kiln_model *m;
    struct kiln_arena *a;
    kiln_err *err;
    int64_t from, to;
    unsigned serial;     /* for fresh value names */
    struct gbuild *done; /* graphs converted, waiting for the swap */
    size_t n_done, cap_done;
    size_t n_rewritten;
};

/* The node being converted, for messages. */
struct nctx {
    struct conv *c;
    struct gbuild *b;
    const struct kiln_node *old;
    struct kiln_node n; /* the copy being rewritten */
    int v_from, v_to;   /* schema versions selected before and after */
};

static kiln_status nomem(struct conv *c)
{
    return kiln_err_set(c->err, KILN_E_NOMEM, "out of memory converting the model");
}

static kiln_status refuse(struct nctx *x, const char *fmt, ...) KILN_PRINTF(2, 3);
static kiln_status refuse(struct nctx *x, const char *fmt, ...)
{
    char why[700], lb[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    return kiln_err_set(x->c->err, KILN_E_UNSUPPORTED, "%s (opset %lld -> %lld): cannot convert: %s",
                        kiln_node_label(x->old, lb, sizeof lb), (long long)x->c->from, (long long)x->c->to,
                        why);
}

/* ------------------------------------------------------------------ node editing */

static const struct kiln_attr *attr(const struct kiln_node *n, const char *name)
{
    return kiln_node_attr(n, name);
}

static int64_t attr_i(const struct kiln_node *n, const char *name, int64_t dflt)
{
    const struct kiln_attr *a = attr(n, name);
    return a && a->type == KILN_ATTR_INT ? a->i : dflt;
}

/* Removes attribute `name` from x->n (a fresh attrs array). */
static kiln_status drop_attr(struct nctx *x, const char *name)
{
    if (!attr(&x->n, name)) return KILN_OK;
    struct kiln_attr *na = x->n.n_attr > 1 ? kiln_arena_array(x->c->a, x->n.n_attr - 1, sizeof *na) : NULL;
    if (x->n.n_attr > 1 && !na) return nomem(x->c);
    size_t k = 0;
    for (size_t i = 0; i < x->n.n_attr; i++)
        if (strcmp(x->n.attrs[i].name, name) != 0) na[k++] = x->n.attrs[i];
    x->n.attrs = na;
    x->n.n_attr = k;
    return KILN_OK;
}

/* Sets (adds or replaces) an attribute. */
static kiln_status set_attr(struct nctx *x, struct kiln_attr a)
{
    KILN_TRY(drop_attr(x, a.name));
    struct kiln_attr *na = kiln_arena_array(x->c->a, x->n.n_attr + 1, sizeof *na);
    if (!na) return nomem(x->c);
    if (x->n.n_attr) memcpy(na, x->n.attrs, x->n.n_attr * sizeof *na);
    if (!a.doc) a.doc = "";
    na[x->n.n_attr++] = a;
    x->n.attrs = na;
    return KILN_OK;
}

static kiln_status set_attr_s(struct nctx *x, const char *name, const char *v)
{
    return set_attr(x,
                    (struct kiln_attr){.name = name, .type = KILN_ATTR_STRING, .s = v, .s_len = strlen(v)});
}

static kiln_status set_attr_i(struct nctx *x, const char *name, int64_t v)
{
    return set_attr(x, (struct kiln_attr){.name = name, .type = KILN_ATTR_INT, .i = v});
}

/* Sets input i of x->n (growing the list with absent inputs ""). */
static kiln_status set_input(struct nctx *x, size_t i, const char *name)
{
    size_t n = x->n.n_in > i + 1 ? x->n.n_in : i + 1;
    const char **in = kiln_arena_array(x->c->a, n, sizeof *in);
    if (!in) return nomem(x->c);
    for (size_t k = 0; k < n; k++) in[k] = k < x->n.n_in ? x->n.inputs[k] : "";
    in[i] = name;
    x->n.inputs = in;
    x->n.n_in = n;
    return KILN_OK;
}

/* A fresh value name derived from `base`, not used in the graph or its enclosing graphs. */
static const char *fresh_name(struct nctx *x, const char *base)
{
    char buf[300];
    for (;;) {
        snprintf(buf, sizeof buf, "%.200s_kcv%u", base[0] ? base : "v", x->c->serial++);
        bool used = false;
        for (const struct kiln_graph *g = x->b->g; g && !used; g = g->parent)
            used = g->linked && kiln_graph_find(g, buf) >= 0;
        if (!used) break;
    }
    return kiln_arena_strndup(x->c->a, buf, strlen(buf));
}

static kiln_status push_node(struct conv *c, struct gbuild *b, const struct kiln_node *n)
{
    if (b->n_nodes == b->cap_nodes) {
        size_t cap = b->cap_nodes ? 2 * b->cap_nodes : 16;
        struct kiln_node *nn = kiln_realloc(b->nodes, cap * sizeof *nn);
        if (!nn) return nomem(c);
        b->nodes = nn;
        b->cap_nodes = cap;
    }
    b->nodes[b->n_nodes++] = *n;
    return KILN_OK;
}

/* A new node with one output; inputs/attrs copied into the arena. */
static kiln_status emit(struct nctx *x, const char *op, size_t n_in, const char *const *in, const char *out,
                        size_t n_attr, const struct kiln_attr *attrs)
{
    struct conv *c = x->c;
    struct kiln_node n = {.name = fresh_name(x, x->old->name[0] ? x->old->name : op),
                          .op_type = op,
                          .domain = "",
                          .doc = "",
                          .n_in = n_in,
                          .n_out = 1,
                          .n_attr = n_attr};
    n.inputs = kiln_arena_array(c->a, n_in ? n_in : 1, sizeof *n.inputs);
    n.outputs = kiln_arena_array(c->a, 1, sizeof *n.outputs);
    n.attrs = n_attr ? kiln_arena_array(c->a, n_attr, sizeof *n.attrs) : NULL;
    if (!n.name || !n.inputs || !n.outputs || (n_attr && !n.attrs)) return nomem(c);
    for (size_t i = 0; i < n_in; i++) n.inputs[i] = in[i];
    n.outputs[0] = out;
    for (size_t i = 0; i < n_attr; i++) {
        n.attrs[i] = attrs[i];
        if (!n.attrs[i].doc) n.attrs[i].doc = "";
    }
    return push_node(c, x->b, &n);
}

/* A new constant tensor value: an initializer of the graph, or a Constant node in a
 * function body. `data` holds numel elements of dt. Returns its name in *out. */
static kiln_status new_const(struct nctx *x, const char *what, kiln_dtype dt, int rank, const int64_t *dims,
                             const void *data, const char **out)
{
    struct conv *c = x->c;
    struct kiln_tensor t = {.dtype = dt, .rank = rank};
    for (int i = 0; i < rank; i++) t.dims[i] = dims[i];
    size_t nb = kiln_tensor_nbytes(&t);
    t.data = kiln_arena_alloc(c->a, nb ? nb : 1);
    if (!t.data) return nomem(c);
    if (nb) memcpy(t.data, data, nb);
    char base[260];
    snprintf(base, sizeof base, "%.200s_%s",
             x->old->n_out && x->old->outputs[0][0] ? x->old->outputs[0] : x->old->op_type, what);
    const char *name = fresh_name(x, base);
    if (!name) return nomem(c);
    struct gbuild *b = x->b;
    if (b->g) {
        if (b->n_inits == b->cap_inits) {
            size_t cap = b->cap_inits ? 2 * b->cap_inits : 8;
            struct kiln_initializer *ni = kiln_realloc(b->inits, cap * sizeof *ni);
            if (!ni) return nomem(c);
            b->inits = ni;
            b->cap_inits = cap;
        }
        b->inits[b->n_inits++] = (struct kiln_initializer){.name = name, .doc = "", .t = t};
    } else {
        struct kiln_tensor *tp = kiln_arena_alloc(c->a, sizeof *tp);
        if (!tp) return nomem(c);
        *tp = t;
        struct kiln_attr v = {.name = "value", .type = KILN_ATTR_TENSOR, .t = tp};
        KILN_TRY(emit(x, "Constant", 0, NULL, name, 1, &v));
    }
    *out = name;
    return KILN_OK;
}

static kiln_status const_i64s(struct nctx *x, const char *what, const int64_t *v, size_t n, const char **out)
{
    int64_t d = (int64_t)n;
    return new_const(x, what, KILN_DTYPE_I64, 1, &d, v, out);
}

/* The attribute `name` (INTS) of x->n moved to input `idx` as an int64 tensor; absent
 * attribute: the input stays absent. `scalar`: a rank-0 tensor of the first element. */
static kiln_status ints_to_input(struct nctx *x, const char *name, size_t idx)
{
    const struct kiln_attr *a = attr(&x->n, name);
    if (!a) return KILN_OK;
    if (a->type != KILN_ATTR_INTS) return refuse(x, "attribute '%s' is not a list of ints", name);
    const char *v;
    KILN_TRY(const_i64s(x, name, a->ints, a->n, &v));
    KILN_TRY(drop_attr(x, name));
    return set_input(x, idx, v);
}

/* ------------------------------------------------------------------ declared types */

/* The declared type of `name` seen from graph g (g, then enclosing graphs); NULL when
 * unknown. Initializers give a synthetic tensor type in *tmp. */
static const struct kiln_type *declared(const struct kiln_graph *g, const char *name, struct kiln_type *tmp)
{
    for (; g; g = g->parent) {
        for (size_t i = 0; i < g->n_inputs; i++)
            if (!strcmp(g->inputs[i].name, name)) return &g->inputs[i].type;
        for (size_t i = 0; i < g->n_outputs; i++)
            if (!strcmp(g->outputs[i].name, name)) return &g->outputs[i].type;
        for (size_t i = 0; i < g->n_value_info; i++)
            if (!strcmp(g->value_info[i].name, name)) return &g->value_info[i].type;
        for (size_t i = 0; i < g->n_inits; i++)
            if (!strcmp(g->inits[i].name, name)) {
                memset(tmp, 0, sizeof *tmp);
                tmp->kind = KILN_TYPE_TENSOR;
                tmp->elem = g->inits[i].t.dtype;
                tmp->rank = g->inits[i].t.rank;
                return tmp;
            }
    }
    return NULL;
}

static int value_rank(const struct nctx *x, const char *name)
{
    struct kiln_type tmp;
    const struct kiln_type *t = declared(x->b->g, name, &tmp);
    return t && t->kind == KILN_TYPE_TENSOR ? t->rank : -1;
}

static kiln_dtype value_dtype(const struct nctx *x, const char *name)
{
    struct kiln_type tmp;
    const struct kiln_type *t = declared(x->b->g, name, &tmp);
    return t && t->kind == KILN_TYPE_TENSOR ? t->elem : KILN_DTYPE_UNDEFINED;
}

/* A scalar constant of input `like`'s element type holding v (float types and the common
 * integer types); when that type is unknown, a float32 constant cast with CastLike (opset
 * 15+). */
static kiln_status const_like(struct nctx *x, const char *what, double v, const char *like, const char **out)
{
    kiln_dtype dt = value_dtype(x, like);
    union {
        float f;
        double d;
        uint16_t h;
        int8_t i8;
        uint8_t u8;
        int32_t i32;
        int64_t i64;
    } u;
    switch (dt) {
    case KILN_DTYPE_F32:
        u.f = (float)v;
        break;
    case KILN_DTYPE_F64:
        u.d = v;
        break;
    case KILN_DTYPE_F16:
        u.h = kiln_f32_to_f16((float)v);
        break;
    case KILN_DTYPE_BF16:
        u.h = kiln_f32_to_bf16((float)v);
        break;
    case KILN_DTYPE_I8:
        u.i8 = (int8_t)v;
        break;
    case KILN_DTYPE_U8:
        u.u8 = (uint8_t)v;
        break;
    case KILN_DTYPE_I32:
        u.i32 = (int32_t)v;
        break;
    case KILN_DTYPE_I64:
        u.i64 = (int64_t)v;
        break;
    default:
        if (x->c->to < 15)
            return refuse(x,
                          "the element type of '%s' is not declared, so the %s constant "
                          "cannot be typed (CastLike needs opset 15)",
                          like, what);
        {
            float f = (float)v;
            const char *fv, *ins[2];
            KILN_TRY(new_const(x, what, KILN_DTYPE_F32, 0, NULL, &f, &fv));
            const char *cast = fresh_name(x, fv);
            if (!cast) return nomem(x->c);
            ins[0] = fv;
            ins[1] = like;
            KILN_TRY(emit(x, "CastLike", 2, ins, cast, 0, NULL));
            *out = cast;
            return KILN_OK;
        }
    }
    return new_const(x, what, dt, 0, NULL, &u, out);
}

/* ------------------------------------------------------------------ rules */

static bool crosses(const struct nctx *x, int v)
{
    return x->c->from < v && x->c->to >= v;
}

/* Add/Sub/Mul/Div/Pow/And/Or/Xor/Equal/Greater/Less before 7: `broadcast` / `axis`
 * (unidirectional, B aligned at axis) become numpy broadcasting. */
static kiln_status rule_legacy_broadcast(struct nctx *x)
{
    if (!crosses(x, 7)) return KILN_OK;
    int64_t bc = attr_i(&x->n, "broadcast", 0);
    const struct kiln_attr *ax = attr(&x->n, "axis");
    KILN_TRY(drop_attr(x, "broadcast"));
    KILN_TRY(drop_attr(x, "axis"));
    if (!bc || !ax || x->n.n_in < 2) return KILN_OK; /* equal shapes, or B a suffix of A */
    int ra = value_rank(x, x->n.inputs[0]), rb = value_rank(x, x->n.inputs[1]);
    if (ra < 0 || rb < 0)
        return refuse(x,
                      "broadcast with axis=%lld needs the ranks of '%s' and '%s', which are "
                      "not declared",
                      (long long)ax->i, x->n.inputs[0], x->n.inputs[1]);
    int64_t axis = ax->i < 0 ? ax->i + ra : ax->i;
    if (axis < 0 || axis + rb > ra)
        return refuse(x, "broadcast axis %lld does not fit ranks %d and %d", (long long)ax->i, ra, rb);
    int64_t k = ra - axis - rb; /* trailing ones B needs */
    if (k == 0) return KILN_OK;
    int64_t axes[KILN_MAX_RANK];
    for (int64_t i = 0; i < k; i++) axes[i] = rb + i;
    const char *out = fresh_name(x, x->n.inputs[1]);
    if (!out) return nomem(x->c);
    if (x->c->to >= 13) {
        const char *av, *ins[2] = {x->n.inputs[1], NULL};
        KILN_TRY(const_i64s(x, "axes", axes, (size_t)k, &av));
        ins[1] = av;
        KILN_TRY(emit(x, "Unsqueeze", 2, ins, out, 0, NULL));
    } else {
        struct kiln_attr a = {.name = "axes", .type = KILN_ATTR_INTS, .n = (size_t)k};
        a.ints = kiln_arena_array(x->c->a, (size_t)k, sizeof *a.ints);
        if (!a.ints) return nomem(x->c);
        memcpy(a.ints, axes, (size_t)k * sizeof *axes);
        KILN_TRY(emit(x, "Unsqueeze", 1, &x->n.inputs[1], out, 1, &a));
    }
    return set_input(x, 1, out);
}

static kiln_status rule_gemm(struct nctx *x)
{
    /* Gemm-7 broadcasts C unidirectionally whatever `broadcast` said: a superset. */
    if (crosses(x, 7)) KILN_TRY(drop_attr(x, "broadcast"));
    return KILN_OK;
}

static kiln_status rule_cast(struct nctx *x)
{
    if (!crosses(x, 6)) return KILN_OK;
    const struct kiln_attr *a = attr(&x->n, "to");
    if (!a || a->type != KILN_ATTR_STRING) return KILN_OK;
    static const char *const names[] = {"UNDEFINED", "FLOAT",  "UINT8",     "INT8",       "UINT16",  "INT16",
                                        "INT32",     "INT64",  "STRING",    "BOOL",       "FLOAT16", "DOUBLE",
                                        "UINT32",    "UINT64", "COMPLEX64", "COMPLEX128", "BFLOAT16"};
    for (int i = 1; i < (int)(sizeof names / sizeof names[0]); i++)
        if (!strcasecmp(a->s, names[i])) return set_attr_i(x, "to", i);
    return refuse(x, "attribute to='%s' names no ONNX type", a->s);
}

static kiln_status rule_clip(struct nctx *x)
{
    if (!crosses(x, 11)) return KILN_OK;
    const struct kiln_attr *lo = attr(&x->n, "min"), *hi = attr(&x->n, "max");
    const char *in0 = x->n.inputs[0];
    /* Clip-6's absent bounds are -FLT_MAX / FLT_MAX (so infinities clip); make them explicit
     * for float32, where the new version's absent bounds would not clip infinities. */
    bool f32 = value_dtype(x, in0) == KILN_DTYPE_F32;
    double vlo = lo ? lo->f : -FLT_MAX, vhi = hi ? hi->f : FLT_MAX;
    KILN_TRY(drop_attr(x, "min"));
    KILN_TRY(drop_attr(x, "max"));
    const char *v;
    if (lo || f32) {
        KILN_TRY(const_like(x, "min", vlo, in0, &v));
        KILN_TRY(set_input(x, 1, v));
    }
    if (hi || f32) {
        KILN_TRY(const_like(x, "max", vhi, in0, &v));
        KILN_TRY(set_input(x, 2, v));
    }
    return KILN_OK;
}

static kiln_status rule_concat(struct nctx *x)
{
    if (crosses(x, 4) && !attr(&x->n, "axis")) return set_attr_i(x, "axis", 1); /* old default */
    return KILN_OK;
}

static kiln_status rule_reshape(struct nctx *x)
{
    if (!crosses(x, 5)) return KILN_OK;
    if (!attr(&x->n, "shape")) return refuse(x, "no 'shape' attribute");
    return ints_to_input(x, "shape", 1);
}

static kiln_status rule_tile(struct nctx *x)
{
    if (crosses(x, 6))
        return refuse(x, "Tile-1's (tiles, axis) inputs need the input's rank to "
                         "become a repeats vector; kiln does not rewrite them");
    return KILN_OK;
}

/* true when output i is named (wanted) */
static bool out_wanted(const struct kiln_node *n, size_t i)
{
    return i < n->n_out && n->outputs[i][0];
}

/* Drops trailing outputs from `first` on, which must be unnamed or unused. */
static kiln_status drop_outputs(struct nctx *x, size_t first, const char *why)
{
    if (x->n.n_out <= first) return KILN_OK;
    for (size_t i = first; i < x->n.n_out; i++) {
        if (!out_wanted(&x->n, i)) continue;
        const struct kiln_graph *g = x->b->g;
        int id = g && g->linked ? kiln_graph_find(g, x->n.outputs[i]) : -1;
        bool used = !g || id < 0 || g->values[id].n_consumers > 0;
        for (size_t k = 0; g && !used && k < g->n_outputs; k++)
            used = !strcmp(g->outputs[k].name, x->n.outputs[i]);
        if (used) return refuse(x, "output %zu ('%s') is used, but %s", i, x->n.outputs[i], why);
    }
    x->n.n_out = first;
    return KILN_OK;
}

static kiln_status rule_dropout(struct nctx *x)
{
    int64_t is_test = attr_i(&x->n, "is_test", 0);
    bool had_is_test = attr(&x->n, "is_test") != NULL;
    if (crosses(x, 7)) {
        KILN_TRY(drop_attr(x, "is_test"));
        if (had_is_test && !is_test && x->c->to < 12)
            return refuse(x, "is_test=0 (training) cannot be expressed before opset 12");
    }
    if (crosses(x, 10)) KILN_TRY(drop_outputs(x, 1, "the mask changed type from T to bool at opset 10"));
    if (crosses(x, 12)) {
        const struct kiln_attr *r = attr(&x->n, "ratio");
        if (r) {
            float f = r->f;
            const char *v;
            KILN_TRY(new_const(x, "ratio", KILN_DTYPE_F32, 0, NULL, &f, &v));
            KILN_TRY(drop_attr(x, "ratio"));
            KILN_TRY(set_input(x, 1, v));
        }
        if (had_is_test && !is_test && x->c->from < 7) {
            bool yes = true;
            const char *v;
            KILN_TRY(new_const(x, "training_mode", KILN_DTYPE_BOOL, 0, NULL, &yes, &v));
            KILN_TRY(set_input(x, 2, v));
        }
    }
    return KILN_OK;
}

static kiln_status rule_batchnorm(struct nctx *x)
{
    if (crosses(x, 9) || crosses(x, 7)) {
        if (attr_i(&x->n, "spatial", 1) != 1)
            return refuse(x, "spatial=0 (per-activation statistics) has no equivalent after "
                             "opset 8");
        KILN_TRY(drop_attr(x, "spatial"));
    }
    if (crosses(x, 7)) KILN_TRY(drop_attr(x, "is_test"));
    if (crosses(x, 14))
        KILN_TRY(drop_outputs(x, 1,
                              "the training outputs (mean, var, saved mean/var) changed "
                              "meaning at opset 14"));
    return KILN_OK;
}

static kiln_status rule_slice(struct nctx *x)
{
    if (!crosses(x, 10)) return KILN_OK;
    if (!attr(&x->n, "starts") || !attr(&x->n, "ends"))
        return refuse(x, "attributes 'starts' and 'ends' are required");
    KILN_TRY(ints_to_input(x, "starts", 1));
    KILN_TRY(ints_to_input(x, "ends", 2));
    return ints_to_input(x, "axes", 3);
}

static kiln_status rule_axes_input(struct nctx *x, int at)
{
    if (!crosses(x, at)) return KILN_OK;
    return ints_to_input(x, "axes", 1);
}

static kiln_status rule_split(struct nctx *x)
{
    /* Split-1 could take `split` as a second input; 2..12 only as an attribute */
    if (x->c->from < 2 && x->c->to < 13 && x->n.n_in > 1 && x->n.inputs[1][0])
        return refuse(x, "Split-1's 'split' input has no form between opsets 2 and 12 "
                         "(convert to 13 or later)");
    if (crosses(x, 13)) KILN_TRY(ints_to_input(x, "split", 1));
    /* Split-18 needs the split input or num_outputs. */
    if (crosses(x, 18) && (x->n.n_in < 2 || !x->n.inputs[1][0]) && !attr(&x->n, "num_outputs"))
        KILN_TRY(set_attr_i(x, "num_outputs", (int64_t)x->n.n_out));
    return KILN_OK;
}

static kiln_status rule_pad(struct nctx *x)
{
    if (crosses(x, 2)) {
        const struct kiln_attr *p = attr(&x->n, "paddings");
        if (p) {
            struct kiln_attr a = *p;
            a.name = "pads";
            KILN_TRY(drop_attr(x, "paddings"));
            KILN_TRY(set_attr(x, a));
        }
    }
    if (!crosses(x, 11)) return KILN_OK;
    if (!attr(&x->n, "pads")) return refuse(x, "no 'pads' attribute");
    const struct kiln_attr *v = attr(&x->n, "value");
    float value = v ? v->f : 0.0f;
    KILN_TRY(ints_to_input(x, "pads", 1));
    KILN_TRY(drop_attr(x, "value"));
    if (value != 0.0f) {
        const char *cv;
        KILN_TRY(const_like(x, "value", value, x->n.inputs[0], &cv));
        KILN_TRY(set_input(x, 2, cv));
    }
    return KILN_OK;
}

static kiln_status rule_topk(struct nctx *x)
{
    if (!crosses(x, 10)) return KILN_OK;
    const struct kiln_attr *k = attr(&x->n, "k");
    if (!k) return refuse(x, "no 'k' attribute");
    const char *v;
    KILN_TRY(const_i64s(x, "k", &k->i, 1, &v));
    KILN_TRY(drop_attr(x, "k"));
    return set_input(x, 1, v);
}

/* Resize-10 and Upsample sample asymmetrically, nearest rounding down. */
static kiln_status resize_legacy_modes(struct nctx *x)
{
    const struct kiln_attr *mode = attr(&x->n, "mode");
    KILN_TRY(set_attr_s(x, "coordinate_transformation_mode", "asymmetric"));
    if (!mode || !strcmp(mode->s, "nearest")) KILN_TRY(set_attr_s(x, "nearest_mode", "floor"));
    return KILN_OK;
}

/* Resize-11/12 take roi as a required input: an empty float tensor. */
static kiln_status resize_roi(struct nctx *x)
{
    if (x->c->to >= 13) return set_input(x, 1, x->n.n_in > 1 ? x->n.inputs[1] : "");
    const char *roi;
    int64_t zero = 0;
    float none = 0;
    KILN_TRY(new_const(x, "roi", KILN_DTYPE_F32, 1, &zero, &none, &roi));
    return set_input(x, 1, roi);
}

static kiln_status rule_upsample(struct nctx *x)
{
    if (x->c->from < 7)
        return refuse(x, "Upsample-1 (experimental: width_scale/height_scale) is not converted");
    const struct kiln_attr *mode = attr(&x->n, "mode");
    if (mode && strcmp(mode->s, "nearest") && strcmp(mode->s, "linear"))
        return refuse(x, "mode '%s' is not nearest or linear", mode->s);
    const char *scales = x->n.n_in > 1 ? x->n.inputs[1] : "";
    if (crosses(x, 9)) {
        const struct kiln_attr *s = attr(&x->n, "scales");
        if (!s) return refuse(x, "no 'scales' attribute");
        int64_t n = (int64_t)s->n;
        KILN_TRY(new_const(x, "scales", KILN_DTYPE_F32, 1, &n, s->floats, &scales));
        KILN_TRY(drop_attr(x, "scales"));
        KILN_TRY(set_input(x, 1, scales));
    }
    if (x->c->to < 10) return KILN_OK;
    /* Upsample is deprecated at 10: Resize with the same sampling. */
    x->n.op_type = "Resize";
    if (x->c->to == 10) return KILN_OK; /* Resize-10 is Upsample-9 renamed */
    KILN_TRY(resize_legacy_modes(x));
    KILN_TRY(resize_roi(x));
    return set_input(x, 2, scales);
}

static kiln_status rule_resize(struct nctx *x)
{
    if (crosses(x, 11)) {
        const char *scales = x->n.n_in > 1 ? x->n.inputs[1] : "";
        KILN_TRY(resize_legacy_modes(x));
        KILN_TRY(resize_roi(x));
        KILN_TRY(set_input(x, 2, scales));
    }
    if (crosses(x, 13)) {
        const struct kiln_attr *ct = attr(&x->n, "coordinate_transformation_mode");
        if (ct && !strcmp(ct->s, "tf_half_pixel_for_nn"))
            return refuse(x, "coordinate_transformation_mode 'tf_half_pixel_for_nn' was removed "
                             "at opset 13");
    }
    return KILN_OK;
}

static kiln_status rule_scatter(struct nctx *x)
{
    if (x->c->to >= 11) x->n.op_type = "ScatterElements"; /* same inputs, axis, semantics */
    return KILN_OK;
}

static kiln_status rule_lppool(struct nctx *x)
{
    if (!crosses(x, 2)) return KILN_OK;
    const struct kiln_attr *p = attr(&x->n, "p");
    if (!p) return KILN_OK;
    if (p->type == KILN_ATTR_FLOAT) {
        if (p->f != floorf(p->f) || p->f < 1)
            return refuse(x, "p=%g is not a positive integer, which p must be from opset 2", p->f);
        return set_attr_i(x, "p", (int64_t)p->f);
    }
    return KILN_OK;
}

/* Softmax, LogSoftmax, Hardmax: before 13 the input is coerced to 2-D at `axis` (default
 * 1); from 13 the op works along one axis (default -1). */
static kiln_status rule_softmax(struct nctx *x)
{
    if (!crosses(x, 13)) return KILN_OK;
    int64_t axis = attr_i(&x->n, "axis", 1);
    const char *in = x->n.inputs[0];
    int r = value_rank(x, in);
    int64_t na = axis < 0 && r >= 0 ? axis + r : axis;
    /* the last axis: flattening there changes nothing, whatever the rank */
    if (axis == -1 || (r >= 0 && na == r - 1)) return set_attr_i(x, "axis", -1);
    if (r >= 0 && (na < 0 || na > r))
        return refuse(x, "axis %lld is out of range for rank %d", (long long)axis, r);
    /* Shape(X) -> s; Flatten(X, axis) -> f; op(f, axis=-1) -> y2; Reshape(y2, s) -> y */
    if (!out_wanted(&x->n, 0)) return set_attr_i(x, "axis", -1);
    const char *shape = fresh_name(x, in), *flat = fresh_name(x, in);
    const char *y2 = fresh_name(x, x->n.outputs[0]);
    if (!shape || !flat || !y2) return nomem(x->c);
    KILN_TRY(emit(x, "Shape", 1, &in, shape, 0, NULL));
    struct kiln_attr fa = {.name = "axis", .type = KILN_ATTR_INT, .i = axis};
    KILN_TRY(emit(x, "Flatten", 1, &in, flat, 1, &fa));
    const char *y = x->n.outputs[0];
    KILN_TRY(set_attr_i(x, "axis", -1));
    KILN_TRY(set_input(x, 0, flat));
    const char **outs = kiln_arena_array(x->c->a, 1, sizeof *outs);
    if (!outs) return nomem(x->c);
    outs[0] = y2;
    x->n.outputs = outs;
    x->n.n_out = 1;
    KILN_TRY(push_node(x->c, x->b, &x->n));
    const char *ins[2] = {y2, shape};
    KILN_TRY(emit(x, "Reshape", 2, ins, y, 0, NULL));
    x->n.op_type = NULL; /* already emitted */
    return KILN_OK;
}

static kiln_status rule_rnn(struct nctx *x)
{
    if (crosses(x, 7)) KILN_TRY(drop_attr(x, "output_sequence")); /* Y is optional from 7 */
    return KILN_OK;
}

static kiln_status rule_roialign(struct nctx *x)
{
    /* RoiAlign-10 sampled like the later 'output_half_pixel'; 16's default is half_pixel. */
    if (crosses(x, 16) && !attr(&x->n, "coordinate_transformation_mode"))
        return set_attr_s(x, "coordinate_transformation_mode", "output_half_pixel");
    return KILN_OK;
}

static kiln_status rule_gridsample(struct nctx *x)
{
    if (!crosses(x, 20)) return KILN_OK;
    const struct kiln_attr *m = attr(&x->n, "mode");
    if (m && !strcmp(m->s, "bilinear")) return set_attr_s(x, "mode", "linear");
    if (m && !strcmp(m->s, "bicubic")) return set_attr_s(x, "mode", "cubic");
    if (!m) return set_attr_s(x, "mode", "linear"); /* 16's default was bilinear */
    return KILN_OK;
}

static kiln_status rule_dft(struct nctx *x)
{
    if (!crosses(x, 20)) return KILN_OK;
    int64_t axis = attr_i(&x->n, "axis", 1); /* DFT-17's default; 20's input default is -2 */
    const char *v;
    KILN_TRY(new_const(x, "axis", KILN_DTYPE_I64, 0, NULL, &axis, &v));
    KILN_TRY(drop_attr(x, "axis"));
    return set_input(x, 2, v);
}

static kiln_status rule_scan(struct nctx *x)
{
    if (crosses(x, 9)) return refuse(x, "Scan-8 has a batch axis and sequence_lens, which Scan-9 dropped");
    return KILN_OK;
}

static kiln_status rule_groupnorm(struct nctx *x)
{
    if (crosses(x, 21))
        return refuse(x, "scale and bias are per group before opset 21 and per channel after; "
                         "kiln does not expand them");
    return KILN_OK;
}

struct rule {
    const char *op;
    kiln_status (*fn)(struct nctx *x);
};

static kiln_status rule_axes13(struct nctx *x)
{
    return rule_axes_input(x, 13);
}
static kiln_status rule_axes18(struct nctx *x)
{
    return rule_axes_input(x, 18);
}

static const struct rule rules[] = {
    {"Add", rule_legacy_broadcast},
    {"Sub", rule_legacy_broadcast},
    {"Mul", rule_legacy_broadcast},
    {"Div", rule_legacy_broadcast},
    {"Pow", rule_legacy_broadcast},
    {"And", rule_legacy_broadcast},
    {"Or", rule_legacy_broadcast},
    {"Xor", rule_legacy_broadcast},
    {"Equal", rule_legacy_broadcast},
    {"Greater", rule_legacy_broadcast},
    {"Less", rule_legacy_broadcast},
    {"Gemm", rule_gemm},
    {"Cast", rule_cast},
    {"Clip", rule_clip},
    {"Concat", rule_concat},
    {"Reshape", rule_reshape},
    {"Tile", rule_tile},
    {"Dropout", rule_dropout},
    {"BatchNormalization", rule_batchnorm},
    {"Slice", rule_slice},
    {"Squeeze", rule_axes13},
    {"Unsqueeze", rule_axes13},
    {"ReduceSum", rule_axes13},
    {"ReduceMax", rule_axes18},
    {"ReduceMin", rule_axes18},
    {"ReduceMean", rule_axes18},
    {"ReduceProd", rule_axes18},
    {"ReduceL1", rule_axes18},
    {"ReduceL2", rule_axes18},
    {"ReduceLogSum", rule_axes18},
    {"ReduceLogSumExp", rule_axes18},
    {"ReduceSumSquare", rule_axes18},
    {"Split", rule_split},
    {"Pad", rule_pad},
    {"TopK", rule_topk},
    {"Upsample", rule_upsample},
    {"Resize", rule_resize},
    {"Scatter", rule_scatter},
    {"LpPool", rule_lppool},
    {"GlobalLpPool", rule_lppool},
    {"Softmax", rule_softmax},
    {"LogSoftmax", rule_softmax},
    {"Hardmax", rule_softmax},
    {"RNN", rule_rnn},
    {"GRU", rule_rnn},
    {"LSTM", rule_rnn},
    {"RoiAlign", rule_roialign},
    {"GridSample", rule_gridsample},
    {"DFT", rule_dft},
    {"Scan", rule_scan},
    {"GroupNormalization", rule_groupnorm},
};

/* ------------------------------------------------------------------ graphs */

static kiln_status convert_graph(struct conv *c, struct kiln_graph *g);

/* Converts one node of b into b (appending it and any helper nodes). */
static kiln_status convert_node(struct conv *c, struct gbuild *b, const struct kiln_node *old)
{
    struct nctx x = {.c = c, .b = b, .old = old, .n = *old};
    /* subgraphs first (their arrays are swapped at the end like everything else) */
    for (size_t i = 0; i < old->n_attr; i++) {
        const struct kiln_attr *a = &old->attrs[i];
        if (a->type == KILN_ATTR_GRAPH && a->g) KILN_TRY(convert_graph(c, a->g));
        for (size_t k = 0; a->type == KILN_ATTR_GRAPHS && k < a->n; k++)
            KILN_TRY(convert_graph(c, a->graphs[k]));
    }
    if (old->domain[0]) return push_node(c, b, old);
    int vf = kiln_schema_resolve("", old->op_type, c->from);
    int vt = kiln_schema_resolve("", old->op_type, c->to);
    x.v_from = vf;
    x.v_to = vt;
    if (vf == vt) return push_node(c, b, old);
    if (vf < 0) return refuse(&x, "the op is deprecated at the model's opset already");
    if (vf == 0) return push_node(c, b, old); /* unknown to kiln: left as it is */
    /* consumed_inputs (a memory hint of opsets 1-5) is gone from every op at 6 */
    if (c->from < 6) KILN_TRY(drop_attr(&x, "consumed_inputs"));
    for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++) {
        if (strcmp(rules[i].op, old->op_type) != 0) continue;
        KILN_TRY(rules[i].fn(&x));
        break;
    }
    if (kiln_schema_resolve("", x.n.op_type ? x.n.op_type : old->op_type, c->to) < 0) {
        char lb[300];
        return kiln_err_set(c->err, KILN_E_UNSUPPORTED,
                            "%s (opset %lld -> %lld): cannot convert: the op is deprecated at "
                            "opset %lld and kiln knows no replacement",
                            kiln_node_label(old, lb, sizeof lb), (long long)c->from, (long long)c->to,
                            (long long)c->to);
    }
    c->n_rewritten++;
    if (!x.n.op_type) return KILN_OK; /* the rule emitted it */
    return push_node(c, b, &x.n);
}

static kiln_status done_push(struct conv *c, struct gbuild *b)
{
    if (c->n_done == c->cap_done) {
        size_t cap = c->cap_done ? 2 * c->cap_done : 8;
        struct gbuild *d = kiln_realloc(c->done, cap * sizeof *d);
        if (!d) return nomem(c);
        c->done = d;
        c->cap_done = cap;
    }
    c->done[c->n_done++] = *b;
    return KILN_OK;
}

static void gbuild_free(struct gbuild *b)
{
    kiln_free(b->nodes);
    kiln_free(b->inits);
}

static kiln_status convert_body(struct conv *c, struct gbuild *b, size_t n, const struct kiln_node *nodes)
{
    for (size_t i = 0; i < n; i++) {
        kiln_status st = convert_node(c, b, &nodes[i]);
        if (st) return st;
    }
    return KILN_OK;
}

static kiln_status convert_graph(struct conv *c, struct kiln_graph *g)
{
    struct gbuild b = {.g = g};
    if (g->n_inits) {
        b.inits = kiln_malloc(g->n_inits * sizeof *b.inits);
        if (!b.inits) return nomem(c);
        memcpy(b.inits, g->inits, g->n_inits * sizeof *b.inits);
        b.n_inits = b.cap_inits = g->n_inits;
    }
    kiln_status st = convert_body(c, &b, g->n_nodes, g->nodes);
    if (!st) st = done_push(c, &b);
    if (st) gbuild_free(&b);
    return st;
}

static kiln_status convert_function(struct conv *c, struct kiln_function *f)
{
    int64_t fv = -1;
    for (size_t i = 0; i < f->n_opsets; i++)
        if (!f->opsets[i].domain[0]) fv = f->opsets[i].version;
    if (fv < 0 || fv >= c->to) return KILN_OK;
    /* the body's nodes resolve against the function's own import */
    int64_t model_from = c->from;
    c->from = fv;
    struct gbuild b = {.fn = f};
    kiln_status st = convert_body(c, &b, f->n_nodes, f->nodes);
    c->from = model_from;
    if (!st) st = done_push(c, &b);
    if (st) gbuild_free(&b);
    return st;
}

/* Moves a kiln_malloc'd array into the arena (the IR's home). */
static void *to_arena(struct conv *c, const void *p, size_t n, size_t size)
{
    if (!n) return NULL;
    void *q = kiln_arena_array(c->a, n, size);
    if (q) memcpy(q, p, n * size);
    return q;
}

kiln_status kiln_model_convert_opset(kiln_model *m, int64_t opset, kiln_err *err)
{
    int latest = kiln_schema_latest("");
    int64_t from = kiln_model_opset_for(m, "");
    if (from < 0)
        return kiln_err_set(err, KILN_E_INVALID_ARG,
                            "the model imports no default-domain "
                            "opset; nothing to convert");
    if (opset < 7 || opset > latest)
        return kiln_err_set(err, KILN_E_UNSUPPORTED,
                            "target opset %lld is outside 7..%d, the "
                            "range kiln converts to",
                            (long long)opset, latest);
    if (opset < from)
        return kiln_err_set(err, KILN_E_UNSUPPORTED,
                            "the model is at opset %lld; kiln converts "
                            "upward only (to %lld asked)",
                            (long long)from, (long long)opset);
    if (opset == from) return KILN_OK;
    struct conv c = {.m = m, .a = &m->arena, .err = err, .from = from, .to = opset};
    kiln_status st = convert_graph(&c, m->graph);
    for (size_t i = 0; !st && i < m->n_functions; i++) st = convert_function(&c, &m->functions[i]);
    /* Arena copies of every new array, then the swap (which cannot fail). */
    struct kiln_opset *ops = NULL;
    if (!st) {
        ops = kiln_arena_array(c.a, m->n_opsets, sizeof *ops);
        if (!ops)
            st = nomem(&c);
        else
            memcpy(ops, m->opsets, m->n_opsets * sizeof *ops);
    }
    for (size_t i = 0; !st && i < c.n_done; i++) {
        struct gbuild *b = &c.done[i];
        struct kiln_node *nodes = to_arena(&c, b->nodes, b->n_nodes, sizeof *nodes);
        struct kiln_initializer *inits = to_arena(&c, b->inits, b->n_inits, sizeof *inits);
        if ((b->n_nodes && !nodes) || (b->n_inits && !inits)) {
            st = nomem(&c);
            break;
        }
        kiln_free(b->nodes);
        kiln_free(b->inits);
        b->nodes = nodes;
        b->inits = inits;
        b->in_arena = true;
    }
    if (st) {
        for (size_t i = 0; i < c.n_done; i++)
            if (!c.done[i].in_arena) gbuild_free(&c.done[i]);
        kiln_free(c.done);
        return st;
    }
    for (size_t i = 0; i < c.n_done; i++) {
        struct gbuild *b = &c.done[i];
        if (b->g) {
            b->old_nodes = b->g->nodes;
            b->old_n_nodes = b->g->n_nodes;
            b->old_inits = b->g->inits;
            b->old_n_inits = b->g->n_inits;
            b->g->nodes = b->nodes;
            b->g->n_nodes = b->n_nodes;
            b->g->inits = b->inits;
            b->g->n_inits = b->n_inits;
        } else {
            b->old_nodes = b->fn->nodes;
            b->old_n_nodes = b->fn->n_nodes;
            b->fn->nodes = b->nodes;
            b->fn->n_nodes = b->n_nodes;
        }
    }
    struct kiln_opset *old_ops = m->opsets;
    int64_t old_ir = m->ir_version;
    for (size_t i = 0; i < m->n_opsets; i++)
        if (!ops[i].domain[0] || !strcmp(ops[i].domain, "ai.onnx")) ops[i].version = opset;
    m->opsets = ops;
    /* An IR version too old for the new opset would make checkers refuse the model. */
    static const int64_t ir_for[] = {0, 3, 3, 3, 3, 3, 3, 3, 3,  4,  5,  6, 7,
                                     7, 7, 8, 8, 8, 8, 9, 9, 10, 10, 11, 11};
    int64_t need = opset < (int64_t)(sizeof ir_for / sizeof ir_for[0]) ? ir_for[opset] : 11;
    if (m->ir_version < need) m->ir_version = need;
    st = kiln_model_link(m, err);
    if (st) {
        /* Undo the swap; relinking the old graph allocates too, but a second failure in a
         * row leaves at worst an unlinked model, which sessions refuse. */
        for (size_t i = 0; i < c.n_done; i++) {
            struct gbuild *b = &c.done[i];
            if (b->g) {
                b->g->nodes = b->old_nodes;
                b->g->n_nodes = b->old_n_nodes;
                b->g->inits = b->old_inits;
                b->g->n_inits = b->old_n_inits;
            } else {
                b->fn->nodes = b->old_nodes;
                b->fn->n_nodes = b->old_n_nodes;
            }
        }
        m->opsets = old_ops;
        m->ir_version = old_ir;
        kiln_err e2;
        if (kiln_model_link(m, &e2) != KILN_OK) m->graph->linked = false;
        kiln_free(c.done);
        return st;
    }
    for (size_t i = 0; i < c.n_done; i++) {
        struct gbuild *b = &c.done[i];
        if (!b->g)
            for (size_t k = 0; k < b->fn->n_opsets; k++)
                if (!b->fn->opsets[k].domain[0]) b->fn->opsets[k].version = opset;
    }
    kiln_free(c.done);
    return KILN_OK;
}
