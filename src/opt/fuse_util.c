/* fuse_util.c: helpers of the fusion passes (fuse_util.h). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "opt/fuse_util.h"

const struct kiln_tensor *fu_const(const struct kiln_opt *o, const struct kiln_graph *g,
                                   const char *name)
{
    const struct kiln_tensor *t = kiln_opt_const_pending(o, g, name);
    if (t || !name || !name[0]) return t;
    const struct kiln_vtype *v = kiln_opt_vtype(g, name);
    return v ? v->konst : NULL;
}

const struct kiln_tensor *fu_const_f32(const struct kiln_opt *o, const struct kiln_graph *g,
                                       const char *name)
{
    const struct kiln_tensor *t = fu_const(o, g, name);
    return t && t->dtype == KILN_DTYPE_F32 && (t->data || kiln_tensor_numel(t) == 0) ? t : NULL;
}

bool fu_const_all(const struct kiln_opt *o, const struct kiln_graph *g, const char *name,
                  double v, double tol)
{
    const struct kiln_tensor *t = fu_const(o, g, name);
    if (!t || !t->data) return false;
    size_t n = kiln_tensor_numel(t);
    if (n == 0 || !(kiln_dtype_is_float(t->dtype) || kiln_dtype_is_int(t->dtype))) return false;
    for (size_t i = 0; i < n; i++) {
        double x;
        switch (t->dtype) {
        case KILN_DTYPE_F32: x = ((const float *)t->data)[i]; break;
        case KILN_DTYPE_F64: x = ((const double *)t->data)[i]; break;
        case KILN_DTYPE_F16: x = kiln_f16_to_f32(((const uint16_t *)t->data)[i]); break;
        case KILN_DTYPE_BF16: x = kiln_bf16_to_f32(((const uint16_t *)t->data)[i]); break;
        case KILN_DTYPE_I64: x = (double)((const int64_t *)t->data)[i]; break;
        case KILN_DTYPE_I32: x = ((const int32_t *)t->data)[i]; break;
        default: return false;
        }
        if (!(fabs(x - v) <= tol * fabs(v))) return false;
    }
    return true;
}

kiln_status fu_add_f32(struct kiln_opt *o, struct kiln_graph *g, const char *base, int rank,
                       const int64_t *dims, const float *data, const char **name)
{
    struct kiln_tensor t = {.dtype = KILN_DTYPE_F32, .rank = rank, .data = (void *)data};
    for (int i = 0; i < rank; i++) t.dims[i] = dims[i];
    return kiln_opt_add_init(o, g, base, &t, name);
}

kiln_status fu_nomem(struct kiln_opt *o)
{
    return kiln_err_set(kiln_opt_err(o), KILN_E_NOMEM, "out of memory optimizing the model");
}

float *fu_copy_f32(struct kiln_opt *o, const struct kiln_tensor *t)
{
    size_t n = kiln_tensor_numel(t);
    float *p = kiln_malloc((n ? n : 1) * sizeof *p);
    if (!p) {
        fu_nomem(o);
        return NULL;
    }
    if (n) memcpy(p, t->data, n * sizeof *p);
    return p;
}

int fu_other(const struct kiln_node *n, const char *x)
{
    if (n->n_in != 2) return -1;
    bool a = strcmp(n->inputs[0], x) == 0, b = strcmp(n->inputs[1], x) == 0;
    return a == b ? -1 : a ? 1 : 0;
}

int64_t fu_opset(const struct kiln_opt *o)
{
    return kiln_model_opset_for(kiln_opt_model(o), "");
}

bool fu_is(const struct kiln_opt *o, const struct kiln_graph *g, int i, const char *domain,
           const char *op)
{
    if (i < 0 || (size_t)i >= g->n_nodes || !kiln_opt_live(o, g, (size_t)i)) return false;
    const struct kiln_node *n = &g->nodes[i];
    const char *d = n->domain ? n->domain : "";
    return strcmp(d, domain) == 0 && n->op_type && strcmp(n->op_type, op) == 0;
}

bool fu_is_f32(const struct kiln_graph *g, const char *name)
{
    kiln_dtype dt;
    int rank;
    const struct kiln_dim *dims;
    return kiln_opt_tensor_type(g, name, &dt, &rank, &dims) && dt == KILN_DTYPE_F32;
}

int fu_next(const struct kiln_opt *o, const struct kiln_graph *g, size_t i)
{
    const struct kiln_node *n = &g->nodes[i];
    if (n->n_out < 1 || !n->outputs[0][0]) return -1;
    int c = kiln_opt_single_consumer(g, n->outputs[0]);
    return c >= 0 && kiln_opt_live(o, g, (size_t)c) ? c : -1;
}

/* Constant bound input k of a Clip-11+ node into *v (absent: keeps *v). */
static bool clip_bound(const struct kiln_opt *o, const struct kiln_graph *g,
                       const struct kiln_node *n, size_t k, float *v)
{
    if (n->n_in <= k || !n->inputs[k][0]) return true;
    const struct kiln_tensor *t = fu_const_f32(o, g, n->inputs[k]);
    if (!t || kiln_tensor_numel(t) != 1) return false;
    *v = ((const float *)t->data)[0];
    return true;
}

/* fu_activation's work; *a may be written also when it returns false. */
static bool activation_of(const struct kiln_opt *o, const struct kiln_graph *g, size_t i,
                          const char *x, struct fu_act *a)
{
    if (!kiln_opt_live(o, g, i)) return false;
    const struct kiln_node *n = &g->nodes[i];
    const char *d = n->domain ? n->domain : "";
    if (n->n_in < 1 || strcmp(n->inputs[0], x) != 0 || n->n_out != 1 || !n->outputs[0][0])
        return false;
    *a = (struct fu_act){.name = n->op_type};
    if (!strcmp(d, "kiln")) {
        if (strcmp(n->op_type, "Gelu")) return false;
        a->approx = kiln_opt_attr_s(n, "approximate", "none");
        return n->n_in == 1;
    }
    if (d[0]) return false;
    const char *op = n->op_type;
    if (!strcmp(op, "Relu") || !strcmp(op, "Sigmoid") || !strcmp(op, "Tanh") ||
        !strcmp(op, "HardSwish"))
        return n->n_in == 1;
    if (!strcmp(op, "LeakyRelu")) {
        a->p[0] = kiln_opt_attr_f(n, "alpha", 0.01f);
        a->np = 1;
        return n->n_in == 1;
    }
    if (!strcmp(op, "HardSigmoid")) {
        a->p[0] = kiln_opt_attr_f(n, "alpha", 0.2f);
        a->p[1] = kiln_opt_attr_f(n, "beta", 0.5f);
        a->np = 2;
        return n->n_in == 1;
    }
    if (!strcmp(op, "Gelu")) {
        a->approx = kiln_opt_attr_s(n, "approximate", "none");
        return n->n_in == 1 && (!strcmp(a->approx, "none") || !strcmp(a->approx, "tanh"));
    }
    if (!strcmp(op, "Clip")) {
        a->np = 2;
        if (n->since > 0 && n->since < 11) {
            a->p[0] = kiln_opt_attr_f(n, "min", -3.402823466e38f);
            a->p[1] = kiln_opt_attr_f(n, "max", 3.402823466e38f);
            return n->n_in == 1;
        }
        a->p[0] = -INFINITY;
        a->p[1] = INFINITY;
        return n->n_in <= 3 && clip_bound(o, g, n, 1, &a->p[0]) && clip_bound(o, g, n, 2, &a->p[1]);
    }
    return false;
}

bool fu_activation(const struct kiln_opt *o, const struct kiln_graph *g, size_t i, const char *x,
                   struct fu_act *a)
{
    struct fu_act t;
    if (!activation_of(o, g, i, x, &t)) return false;
    *a = t;
    return true;
}

bool fu_match_silu(const struct kiln_opt *o, const struct kiln_graph *g, const char *x,
                   size_t *sig, size_t *mul)
{
    if (kiln_opt_uses(g, x) != 2 || kiln_opt_is_graph_output(g, x)) return false;
    for (size_t i = 0; i < g->n_nodes; i++) {
        if (!kiln_opt_is_op(o, g, i, "Sigmoid")) continue;
        const struct kiln_node *s = &g->nodes[i];
        if (s->n_in != 1 || strcmp(s->inputs[0], x) || s->n_out != 1) continue;
        int m = kiln_opt_single_consumer(g, s->outputs[0]);
        if (m < 0 || !kiln_opt_is_op(o, g, (size_t)m, "Mul")) return false;
        const struct kiln_node *mn = &g->nodes[m];
        int other = fu_other(mn, s->outputs[0]);
        if (other < 0 || strcmp(mn->inputs[other], x) != 0 || mn->n_out != 1) return false;
        *sig = i;
        *mul = (size_t)m;
        return true;
    }
    return false;
}

bool fu_closed(const struct kiln_graph *g, const size_t *nodes, size_t n, const char *const *keep,
               size_t n_keep)
{
    for (size_t a = 0; a < n; a++) {
        const struct kiln_node *p = &g->nodes[nodes[a]];
        for (size_t j = 0; j < p->n_out; j++) {
            const char *v = p->outputs[j];
            bool kept = !v[0];
            for (size_t k = 0; k < n_keep && !kept; k++) kept = keep[k] && !strcmp(keep[k], v);
            if (kept) continue;
            if (kiln_opt_is_graph_output(g, v)) return false;
            int inside = 0;
            for (size_t b = 0; b < n; b++) {
                const struct kiln_node *c = &g->nodes[nodes[b]];
                for (size_t i = 0; i < c->n_in; i++) inside += !strcmp(c->inputs[i], v);
            }
            if (kiln_opt_uses(g, v) != inside) return false;
        }
    }
    return true;
}

/* The new node's doc string names the ops it stands for, "fused: Conv + BatchNormalization
 * + Relu" (a fused node's own list is expanded), so that `kiln graph` and readers of the
 * written ONNX see what went into it. */
static kiln_status fused_doc(struct kiln_opt *o, const struct kiln_graph *g, const size_t *nodes,
                             size_t n, struct kiln_node *nn)
{
    static const char prefix[] = "fused: ";
    char buf[512];
    size_t len = 0;
    for (size_t i = 0; i < n && len < sizeof buf; i++) {
        const struct kiln_node *x = &g->nodes[nodes[i]];
        const char *part = x->op_type;
        if (x->doc && strncmp(x->doc, prefix, sizeof prefix - 1) == 0) part = x->doc + sizeof prefix - 1;
        int k = snprintf(buf + len, sizeof buf - len, "%s%s", i ? " + " : "", part);
        if (k < 0) break;
        len += (size_t)k;
    }
    if (len >= sizeof buf) len = sizeof buf - 1;
    struct kiln_model *m = kiln_opt_model(o);
    char *doc = kiln_arena_alloc(&m->arena, sizeof prefix + len);
    if (!doc) return kiln_err_set(kiln_opt_err(o), KILN_E_NOMEM, "out of memory fusing nodes");
    memcpy(doc, prefix, sizeof prefix - 1);
    memcpy(doc + sizeof prefix - 1, buf, len);
    doc[sizeof prefix - 1 + len] = 0;
    nn->doc = doc;
    return KILN_OK;
}

kiln_status fu_replace(struct kiln_opt *o, struct kiln_graph *g, const size_t *nodes, size_t n,
                       const char *op, const char *domain, size_t n_in, const char *const *ins,
                       size_t n_out, const char *const *outs, const struct kiln_node *src,
                       struct kiln_node **out)
{
    if (!strcmp(domain, "kiln")) KILN_TRY(kiln_opt_require_opset(o, "kiln", 1));
    const char *name = g->nodes[nodes[0]].name;
    struct kiln_node *nn;
    KILN_TRY(kiln_opt_add_node(o, g, op, domain, name && name[0] ? name : NULL, n_in, ins, n_out,
                               outs, &nn));
    if (src) KILN_TRY(kiln_opt_copy_attrs(o, nn, src));
    KILN_TRY(fused_doc(o, g, nodes, n, nn));
    kiln_opt_note_fused(o, g, nodes, n, nn);
    for (size_t i = 0; i < n; i++) kiln_opt_remove_node(o, g, nodes[i]);
    if (out) *out = nn;
    return KILN_OK;
}

kiln_status fu_set_act(struct kiln_opt *o, struct kiln_node *n, const struct fu_act *a)
{
    if (!a->name || !a->name[0]) return KILN_OK;
    KILN_TRY(kiln_opt_set_attr_s(o, n, "activation", a->name));
    if (a->np) KILN_TRY(kiln_opt_set_attr_floats(o, n, "activation_params", a->p, a->np));
    if (a->approx && strcmp(a->approx, "none")) KILN_TRY(kiln_opt_set_attr_s(o, n, "approximate", a->approx));
    return KILN_OK;
}

size_t fu_find(size_t *p, size_t i)
{
    while (p[i] != i) {
        p[i] = p[p[i]];
        i = p[i];
    }
    return i;
}

void fu_node_act(const struct kiln_node *n, struct fu_act *a)
{
    memset(a, 0, sizeof *a);
    a->name = kiln_opt_attr_s(n, "activation", "");
    const float *p;
    size_t np;
    if (kiln_opt_attr_floats(n, "activation_params", &p, &np) && np <= 2) {
        memcpy(a->p, p, np * sizeof *p);
        a->np = np;
    }
    a->approx = kiln_opt_attr_s(n, "approximate", "none");
}

bool fu_ints_all(const struct kiln_node *n, const char *name, int64_t v)
{
    const int64_t *p;
    size_t c;
    if (!kiln_opt_attr_ints(n, name, &p, &c)) return true;
    for (size_t i = 0; i < c; i++)
        if (p[i] != v) return false;
    return true;
}

bool fu_shape4(const struct kiln_graph *g, const char *name, int64_t d[4])
{
    int r;
    int64_t dims[KILN_MAX_RANK];
    if (!fu_is_f32(g, name) || !kiln_opt_static_shape(g, name, &r, dims) || r != 4) return false;
    memcpy(d, dims, 4 * sizeof *d);
    return true;
}

/* The node's permutation, validated (a permutation of 0..rank-1). */
bool fu_transpose_perm(const struct kiln_graph *g, const struct kiln_node *n, int64_t *perm, size_t *rank)
{
    const int64_t *v;
    size_t cnt;
    if (kiln_opt_attr_ints(n, "perm", &v, &cnt)) {
        if (cnt > KILN_MAX_RANK) return false;
        memcpy(perm, v, cnt * sizeof *perm);
    } else {
        if (kiln_node_attr(n, "perm")) return false; /* wrong type */
        int r;
        if (!kiln_opt_tensor_type(g, n->inputs[0], NULL, &r, NULL)) return false;
        cnt = (size_t)r;
        for (size_t i = 0; i < cnt; i++) perm[i] = (int64_t)(cnt - 1 - i);
    }
    bool seen[KILN_MAX_RANK] = {0};
    for (size_t i = 0; i < cnt; i++) {
        if (perm[i] < 0 || perm[i] >= (int64_t)cnt || seen[perm[i]]) return false;
        seen[perm[i]] = true;
    }
    *rank = cnt;
    return true;
}
