/* pass_fp16_compute.c: computes float16 regions in float32 (docs/optimizer.md, "float16").
 *
 * kiln's fast kernels (sgemm convolutions, fused ops, vector math) are float32; float16
 * tensors go through generic paths that widen per call. So, as ONNX Runtime's CPU provider
 * does, this pass moves float16 computation to float32:
 *   - a node is eligible when it is an op of ELIGIBLE below (default domain, no subgraph),
 *     has a float16 input or output, every input and output has a known type, and no other
 *     float type appears except where ONNX types it independently (Resize's roi and scales,
 *     LayerNormalization's mean / inv_std_dev outputs);
 *   - eligible nodes joined by float16 values form regions; a region with no arithmetic
 *     (only data movement: Reshape, Transpose, Concat, ...) is left alone, since it would
 *     only gain Casts;
 *   - in a region, float16 outputs become float32 in place (value_info entries re-typed);
 *     a float16 constant initializer read by the region is replaced by a float32 copy
 *     (exact widening); any other float16 value entering the region (graph input, output of
 *     a node outside, overridable initializer, outer-scope value) goes through one
 *     Cast(to=float) per value; a region value read outside the region (by another node,
 *     a subgraph or as a graph output) keeps its name and float16 type: its producer now
 *     writes NAME_f32 and a Cast(to=float16) makes NAME from it.
 * The meaning is the model's up to rounding: each op computes in float32 and rounds once at
 * the region's edge instead of after every op, which is at least as accurate as float16
 * arithmetic (and cannot overflow inside the region where float16 would). Casts already in
 * the model stay: Cast(float->float16) then the region's Cast(float16->float) is the
 * model's rounding of its input, kept so that results stay those of the float16 model.
 * Runs before the fusion passes, so the float32 Conv + BatchNormalization + Relu fuse after.
 */
#include <string.h>

#include "ir/half.h"
#include "opt/fuse_util.h"

/* Ops whose float16 computation means the same in float32 (every float16 input and output
 * is the op's one type parameter T, or T-typed data that widens exactly). `move`: data
 * movement only, no arithmetic. */
static const struct {
    const char *op;
    bool move;
} ELIGIBLE[] = {
    {"Conv", 0}, {"ConvTranspose", 0}, {"MatMul", 0}, {"Gemm", 0}, {"BatchNormalization", 0},
    {"InstanceNormalization", 0}, {"LayerNormalization", 0}, {"Add", 0}, {"Sub", 0}, {"Mul", 0},
    {"Div", 0}, {"Pow", 0}, {"Sqrt", 0}, {"Reciprocal", 0}, {"Neg", 0}, {"Abs", 0}, {"Exp", 0},
    {"Log", 0}, {"Erf", 0}, {"Tanh", 0}, {"Sigmoid", 0}, {"Relu", 0}, {"LeakyRelu", 0},
    {"PRelu", 0}, {"Clip", 0}, {"HardSigmoid", 0}, {"HardSwish", 0}, {"Elu", 0}, {"Selu", 0},
    {"Gelu", 0}, {"Softplus", 0}, {"Min", 0}, {"Max", 0}, {"Sum", 0}, {"Mean", 0}, {"Where", 0},
    {"MaxPool", 0}, {"AveragePool", 0}, {"GlobalAveragePool", 0}, {"GlobalMaxPool", 0},
    {"Softmax", 0}, {"LogSoftmax", 0}, {"ReduceMean", 0}, {"ReduceSum", 0}, {"ReduceMax", 0},
    {"ReduceMin", 0}, {"Resize", 0}, {"Concat", 1}, {"Reshape", 1}, {"Flatten", 1},
    {"Transpose", 1}, {"Squeeze", 1}, {"Unsqueeze", 1}, {"Slice", 1}, {"Gather", 1}, {"Split", 1},
    {"Expand", 1}, {"Tile", 1}, {"Pad", 1}, {"Identity", 1}, {"DepthToSpace", 1},
    {"SpaceToDepth", 1}, {"Shape", 1}, {"Size", 1},
};

/* Index in ELIGIBLE of node n's op, or -1. */
static int eligible_op(const struct kiln_node *n)
{
    if (n->domain && n->domain[0]) return -1;
    for (size_t i = 0; i < sizeof ELIGIBLE / sizeof ELIGIBLE[0]; i++)
        if (!strcmp(ELIGIBLE[i].op, n->op_type)) return (int)i;
    return -1;
}

/* The inferred element type of `name`, KILN_DTYPE_UNDEFINED when not a tensor of known type. */
static kiln_dtype elem_of(const struct kiln_graph *g, const char *name)
{
    const struct kiln_vtype *vt = kiln_opt_vtype(g, name);
    if (!vt || vt->type.kind != KILN_TYPE_TENSOR || !kiln_dtype_valid((int)vt->type.elem))
        return KILN_DTYPE_UNDEFINED;
    return vt->type.elem;
}

static bool is_f16(const struct kiln_graph *g, const char *name)
{
    return name[0] && elem_of(g, name) == KILN_DTYPE_F16;
}

/* Whether node i can join a float16 region (see the top of the file). */
static bool eligible(const struct kiln_opt *o, const struct kiln_graph *g, size_t i)
{
    const struct kiln_node *n = &g->nodes[i];
    if (!kiln_opt_live(o, g, i) || eligible_op(n) < 0 || kiln_opt_has_subgraph(n)) return false;
    bool any = false;
    for (size_t k = 0; k < n->n_in + n->n_out; k++) {
        bool in = k < n->n_in;
        const char *v = in ? n->inputs[k] : n->outputs[k - n->n_in];
        if (!v[0]) continue;
        kiln_dtype dt = elem_of(g, v);
        if (dt == KILN_DTYPE_UNDEFINED) return false;
        if (dt == KILN_DTYPE_F16) {
            any = true;
        } else if (kiln_dtype_is_float(dt)) {
            size_t slot = in ? k : k - n->n_in;
            bool indep = (in && slot >= 1 && !strcmp(n->op_type, "Resize")) ||
                         (!in && slot >= 1 && !strcmp(n->op_type, "LayerNormalization"));
            if (!indep) return false;
        }
    }
    return any;
}

static size_t uf_find(size_t *p, size_t i)
{
    while (p[i] != i) i = p[i] = p[p[i]];
    return i;
}

/* "name_f32", kiln_malloc'd (NULL on NOMEM, the error set). */
static char *f32_base(struct kiln_opt *o, const char *name)
{
    size_t len = strlen(name);
    char *base = kiln_malloc(len + 5);
    if (!base) {
        fu_nomem(o);
        return NULL;
    }
    memcpy(base, name, len);
    memcpy(base + len, "_f32", 5);
    return base;
}

/* "name_f32" made unique in the model. */
static kiln_status f32_name(struct kiln_opt *o, const char *name, const char **out)
{
    char *base = f32_base(o, name);
    if (!base) return KILN_E_NOMEM;
    kiln_status rc = kiln_opt_unique_name(o, base, out);
    kiln_free(base);
    return rc;
}

/* Float16 values entering the region and their float32 replacements. */
struct entry {
    const char *from, *to;
};
struct entries {
    struct entry *v;
    size_t n, cap;
};

static const char *entry_find(const struct entries *e, const char *name)
{
    for (size_t i = 0; i < e->n; i++)
        if (!strcmp(e->v[i].from, name)) return e->v[i].to;
    return NULL;
}

static kiln_status entry_add(struct kiln_opt *o, struct entries *e, const char *from, const char *to)
{
    if (e->n == e->cap) {
        size_t cap = e->cap ? 2 * e->cap : 16;
        struct entry *v = kiln_realloc(e->v, cap * sizeof *v);
        if (!v) return fu_nomem(o);
        e->v = v;
        e->cap = cap;
    }
    e->v[e->n++] = (struct entry){from, to};
    return KILN_OK;
}

/* The float32 name for float16 value x entering the region: a widened copy of a constant
 * initializer, else the output of a new Cast(to=float). Made once per value. */
static kiln_status entering(struct kiln_opt *o, struct kiln_graph *g, struct entries *e, const char *x,
                            const char **out)
{
    if ((*out = entry_find(e, x))) return KILN_OK;
    const struct kiln_tensor *t = kiln_opt_const(g, x);
    const char *name;
    if (t && t->dtype == KILN_DTYPE_F16) {
        size_t n = kiln_tensor_numel(t);
        float *w = kiln_malloc((n ? n : 1) * sizeof *w);
        char *base = f32_base(o, x);
        kiln_status rc = w && base ? KILN_OK : fu_nomem(o);
        if (!rc) {
            const uint16_t *h = t->data;
            for (size_t i = 0; i < n; i++) w[i] = kiln_half_f16_to_f32(h[i]);
            rc = fu_add_f32(o, g, base, t->rank, t->dims, w, &name);
        }
        kiln_free(w);
        kiln_free(base);
        KILN_TRY(rc);
    } else {
        struct kiln_node *c;
        KILN_TRY(f32_name(o, x, &name));
        KILN_TRY(kiln_opt_add_node(o, g, "Cast", "", NULL, 1, &x, 1, &name, &c));
        KILN_TRY(kiln_opt_set_attr_i(o, c, "to", KILN_DTYPE_F32));
    }
    *out = name;
    return entry_add(o, e, x, name);
}

/* Retypes the declared value_info of `name` (an internal region value) to float32. */
static void retype_value_info(struct kiln_graph *g, const char *name)
{
    for (size_t i = 0; i < g->n_value_info; i++) {
        struct kiln_value_info *vi = &g->value_info[i];
        if (vi->name && !strcmp(vi->name, name) && vi->type.kind == KILN_TYPE_TENSOR &&
            vi->type.elem == KILN_DTYPE_F16)
            vi->type.elem = KILN_DTYPE_F32;
    }
}

static kiln_status convert(struct kiln_opt *o, struct kiln_graph *g, const uint8_t *in_region,
                           size_t *n_converted)
{
    size_t n = g->n_nodes;
    struct entries e = {0};
    kiln_status rc = KILN_OK;
    /* 1. Outputs: retype in place, or rename and Cast back where read outside the region.
     * Uses by region nodes are rewired in step 2 through the producer's new output name. */
    for (size_t i = 0; i < n && !rc; i++) {
        if (!in_region[i]) continue;
        struct kiln_node *nd = &g->nodes[i];
        for (size_t k = 0; k < nd->n_out && !rc; k++) {
            const char *v = nd->outputs[k];
            if (!is_f16(g, v)) continue;
            /* consumers lists a node once per use (implicit subgraph reads included) */
            int id = kiln_graph_find(g, v), uses = kiln_opt_uses(g, v), in_uses = 0;
            const struct kiln_graph_value *gv = id >= 0 ? &g->values[id] : NULL;
            for (int c = 0; gv && c < gv->n_consumers; c++) in_uses += in_region[gv->consumers[c]] != 0;
            if (uses <= in_uses) {
                retype_value_info(g, v);
                continue;
            }
            const char *v32;
            struct kiln_node *c;
            rc = f32_name(o, v, &v32);
            if (!rc) rc = kiln_opt_add_node(o, g, "Cast", "", NULL, 1, &v32, 1, &v, &c);
            if (!rc) rc = kiln_opt_set_attr_i(o, c, "to", KILN_DTYPE_F16);
            if (!rc) rc = entry_add(o, &e, v, v32); /* region readers of v read v32 */
            if (!rc) nd->outputs[k] = v32;
        }
    }
    /* 2. Inputs: region values by their (possibly new) names, others through entering(). */
    for (size_t i = 0; i < n && !rc; i++) {
        if (!in_region[i]) continue;
        struct kiln_node *nd = &g->nodes[i];
        for (size_t k = 0; k < nd->n_in && !rc; k++) {
            const char *x = nd->inputs[k];
            if (!is_f16(g, x)) continue;
            int p = kiln_opt_producer(g, x);
            const char *to = NULL;
            if (p >= 0 && in_region[p]) {
                to = entry_find(&e, x); /* renamed boundary output; else kept as is */
                if (!to) continue;
            } else {
                rc = entering(o, g, &e, x, &to);
            }
            if (!rc) rc = kiln_opt_set_input(o, nd, k, to);
        }
        ++*n_converted;
    }
    kiln_free(e.v);
    return rc;
}

static kiln_status run(struct kiln_opt *o, struct kiln_graph *g, bool *changed)
{
    size_t n = g->n_nodes;
    if (!n) return KILN_OK;
    uint8_t *elig = kiln_malloc(2 * n), *region = elig ? elig + n : NULL;
    size_t *parent = kiln_malloc(n * sizeof *parent);
    if (!elig || !parent) {
        kiln_free(elig);
        kiln_free(parent);
        return fu_nomem(o);
    }
    for (size_t i = 0; i < n; i++) {
        elig[i] = eligible(o, g, i);
        parent[i] = i;
    }
    /* Regions: eligible nodes joined through float16 values. */
    for (size_t i = 0; i < n; i++) {
        if (!elig[i]) continue;
        const struct kiln_node *nd = &g->nodes[i];
        for (size_t k = 0; k < nd->n_in; k++) {
            if (!is_f16(g, nd->inputs[k])) continue;
            int p = kiln_opt_producer(g, nd->inputs[k]);
            if (p >= 0 && elig[p]) parent[uf_find(parent, i)] = uf_find(parent, (size_t)p);
        }
    }
    /* A region converts when it computes something (region[root] marks it). */
    memset(region, 0, n);
    for (size_t i = 0; i < n; i++)
        if (elig[i] && !ELIGIBLE[eligible_op(&g->nodes[i])].move) region[uf_find(parent, i)] = 1;
    bool any = false;
    for (size_t i = 0; i < n; i++) {
        elig[i] = elig[i] && region[uf_find(parent, i)];
        any |= elig[i];
    }
    kiln_status rc = KILN_OK;
    if (any) {
        size_t count = 0;
        rc = convert(o, g, elig, &count);
        if (!rc) {
            kiln_opt_note(o, "%zu float16 nodes compute in float32", count);
            *changed = true;
        }
    }
    kiln_free(elig);
    kiln_free(parent);
    return rc;
}

const struct kiln_pass kiln_pass_fp16_compute = {
    .name = "fp16_compute",
    .level = KILN_OPT_EXTENDED,
    .doc = "computes float16 regions in float32 (Casts at the region's edges)",
    .run = run,
};
