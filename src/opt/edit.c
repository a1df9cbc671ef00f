/* edit.c: the optimizer's graph queries and edits (opt.h), and the commit that turns pending
 * edits into the graph: compaction, relinking, topological sorting and shape inference. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "opt/opt_priv.h"

/* ------------------------------------------------------------------ name set */

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

bool opt_nameset_has(const struct opt_nameset *s, const char *name)
{
    if (!s->cap) return false;
    for (size_t i = hash_str(name) & (s->cap - 1);; i = (i + 1) & (s->cap - 1)) {
        if (!s->slots[i]) return false;
        if (strcmp(s->slots[i], name) == 0) return true;
    }
}

static void nameset_put(const char **slots, size_t cap, const char *name)
{
    size_t i = hash_str(name) & (cap - 1);
    while (slots[i]) i = (i + 1) & (cap - 1);
    slots[i] = name;
}

bool opt_nameset_add(struct opt_nameset *s, const char *name)
{
    if (opt_nameset_has(s, name)) return true;
    if (2 * (s->n + 1) > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        const char **slots = kiln_calloc(cap, sizeof *slots);
        if (!slots) return false;
        for (size_t i = 0; i < s->cap; i++)
            if (s->slots[i]) nameset_put(slots, cap, s->slots[i]);
        kiln_free(s->slots);
        s->slots = slots;
        s->cap = cap;
    }
    nameset_put(s->slots, s->cap, name);
    s->n++;
    return true;
}

void opt_nameset_free(struct opt_nameset *s)
{
    kiln_free(s->slots);
    *s = (struct opt_nameset){0};
}

static kiln_status nomem(struct kiln_opt *o)
{
    return kiln_err_set(o->err, KILN_E_NOMEM, "out of memory optimizing the model");
}

static const char *arena_str(struct kiln_opt *o, const char *s)
{
    return kiln_arena_strndup(&o->m->arena, s, strlen(s));
}

/* ------------------------------------------------------------------ the run */

struct kiln_model *kiln_opt_model(const struct kiln_opt *o)
{
    return o->m;
}
bool kiln_opt_keep_fused(const struct kiln_opt *o)
{
    return o->opt.keep_fused != 0;
}
size_t kiln_opt_fold_limit(const struct kiln_opt *o)
{
    return o->fold_limit;
}
kiln_err *kiln_opt_err(struct kiln_opt *o)
{
    return o->err;
}

void kiln_opt_note(struct kiln_opt *o, const char *fmt, ...)
{
    if (!o->opt.report) return;
    char msg[1024];
    int n = snprintf(msg, sizeof msg, "%s: ", o->pass ? o->pass->name : "optimize");
    if (n < 0) n = 0;
    if ((size_t)n >= sizeof msg) n = (int)sizeof msg - 1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg + n, sizeof msg - (size_t)n, fmt, ap);
    va_end(ap);
    o->n_notes++;
    o->opt.report(o->opt.report_user, msg);
}

static size_t node_desc(const struct kiln_node *n, char *buf, size_t size)
{
    int k;
    const char *dom = n->domain && n->domain[0] ? n->domain : NULL;
    if (n->name && n->name[0])
        k = snprintf(buf, size, "%s%s%s '%s'", dom ? dom : "", dom ? "." : "", n->op_type, n->name);
    else
        k = snprintf(buf, size, "%s%s%s (-> '%s')", dom ? dom : "", dom ? "." : "", n->op_type,
                     n->n_out ? n->outputs[0] : "");
    return k < 0 ? 0 : (size_t)k < size ? (size_t)k : size - 1;
}

void kiln_opt_note_fused(struct kiln_opt *o, const struct kiln_graph *g, const size_t *nodes, size_t n,
                         const struct kiln_node *into)
{
    if (!o->opt.report) return;
    char buf[900];
    size_t len = 0;
    for (size_t i = 0; i < n && len + 4 < sizeof buf; i++) {
        if (nodes[i] >= g->n_nodes) continue;
        if (i) len += (size_t)snprintf(buf + len, sizeof buf - len, " + ");
        if (len < sizeof buf) len += node_desc(&g->nodes[nodes[i]], buf + len, sizeof buf - len);
    }
    char dst[300];
    node_desc(into, dst, sizeof dst);
    kiln_opt_note(o, "fused %s -> %s", buf, dst);
}

/* ------------------------------------------------------------------ queries */

bool kiln_opt_live(const struct kiln_opt *o, const struct kiln_graph *g, size_t i)
{
    if (i >= g->n_nodes) return false;
    if (o->pend.g != g || !o->pend.node_removed || i >= o->pend.n_nodes) return true;
    return !o->pend.node_removed[i];
}

static const struct kiln_graph_value *value_of(const struct kiln_graph *g, const char *name)
{
    if (!name || !name[0] || !g->values) return NULL;
    int id = kiln_graph_find(g, name);
    return id >= 0 ? &g->values[id] : NULL;
}

int kiln_opt_producer(const struct kiln_graph *g, const char *name)
{
    const struct kiln_graph_value *v = value_of(g, name);
    return v && v->def == KILN_DEF_NODE && v->producer >= 0 && (size_t)v->producer < g->n_nodes ? v->producer
                                                                                                : -1;
}

bool kiln_opt_is_graph_output(const struct kiln_graph *g, const char *name)
{
    for (size_t i = 0; i < g->n_outputs; i++)
        if (g->outputs[i].name && strcmp(g->outputs[i].name, name) == 0) return true;
    return false;
}

bool kiln_opt_is_graph_input(const struct kiln_graph *g, const char *name)
{
    for (size_t i = 0; i < g->n_inputs; i++)
        if (g->inputs[i].name && strcmp(g->inputs[i].name, name) == 0) return true;
    return false;
}

int kiln_opt_uses(const struct kiln_graph *g, const char *name)
{
    if (!name || !name[0]) return 0;
    int n = 0;
    const struct kiln_graph_value *v = value_of(g, name);
    if (v) n += v->n_consumers;
    for (size_t i = 0; i < g->n_outputs; i++)
        if (g->outputs[i].name && strcmp(g->outputs[i].name, name) == 0) n++;
    return n;
}

int kiln_opt_single_consumer(const struct kiln_graph *g, const char *name)
{
    const struct kiln_graph_value *v = value_of(g, name);
    if (!v || v->n_consumers != 1 || kiln_opt_is_graph_output(g, name)) return -1;
    int c = v->consumers[0];
    if (c < 0 || (size_t)c >= g->n_nodes) return -1;
    const struct kiln_node *n = &g->nodes[c];
    for (size_t k = 0; k < n->n_implicit; k++)
        if (n->implicit_ids[k] == (int)(v - g->values)) return -1;
    for (size_t k = 0; k < n->n_in; k++)
        if (strcmp(n->inputs[k], name) == 0) return c;
    return -1;
}

/* Initializers that are also graph inputs are defaults a caller may override, except in
 * models before IR version 4, where every initializer had to be listed as an input (ONNX
 * Runtime treats those as constants too). */
static bool init_is_constant(const struct kiln_graph *g, const char *name)
{
    if (!kiln_opt_is_graph_input(g, name)) return true;
    const struct kiln_model *m = g->model;
    return !g->parent && m && m->ir_version > 0 && m->ir_version < 4;
}

const struct kiln_tensor *kiln_opt_const(const struct kiln_graph *g, const char *name)
{
    if (!name || !name[0]) return NULL;
    for (; g; g = g->parent) {
        const struct kiln_graph_value *v = value_of(g, name);
        if (!v) return NULL;
        if (v->def == KILN_DEF_OUTER) continue;
        if (v->def != KILN_DEF_INIT || v->producer < 0 || (size_t)v->producer >= g->n_inits) return NULL;
        if (!init_is_constant(g, name)) return NULL;
        return &g->inits[v->producer].t;
    }
    return NULL;
}

static bool elem_as_double(const struct kiln_tensor *t, size_t i, double *out)
{
    const void *p = (const char *)t->data + i * kiln_dtype_size(t->dtype);
    switch (t->dtype) {
    case KILN_DTYPE_F32:
        *out = *(const float *)p;
        return true;
    case KILN_DTYPE_F64:
        *out = *(const double *)p;
        return true;
    case KILN_DTYPE_F16:
        *out = kiln_f16_to_f32(*(const uint16_t *)p);
        return true;
    case KILN_DTYPE_BF16:
        *out = kiln_bf16_to_f32(*(const uint16_t *)p);
        return true;
    case KILN_DTYPE_I8:
        *out = *(const int8_t *)p;
        return true;
    case KILN_DTYPE_U8:
        *out = *(const uint8_t *)p;
        return true;
    case KILN_DTYPE_BOOL:
        *out = *(const uint8_t *)p != 0;
        return true;
    case KILN_DTYPE_I16:
        *out = *(const int16_t *)p;
        return true;
    case KILN_DTYPE_U16:
        *out = *(const uint16_t *)p;
        return true;
    case KILN_DTYPE_I32:
        *out = *(const int32_t *)p;
        return true;
    case KILN_DTYPE_U32:
        *out = *(const uint32_t *)p;
        return true;
    case KILN_DTYPE_I64:
        *out = (double)*(const int64_t *)p;
        return true;
    case KILN_DTYPE_U64:
        *out = (double)*(const uint64_t *)p;
        return true;
    default:
        return false;
    }
}

bool kiln_opt_const_scalar(const struct kiln_graph *g, const char *name, double *out)
{
    const struct kiln_tensor *t = kiln_opt_const(g, name);
    if (!t || kiln_tensor_numel(t) != 1 || !t->data) return false;
    return elem_as_double(t, 0, out);
}

const struct kiln_vtype *kiln_opt_vtype(const struct kiln_graph *g, const char *name)
{
    if (!name || !name[0]) return NULL;
    return kiln_infer_lookup(g, name);
}

bool kiln_opt_tensor_type(const struct kiln_graph *g, const char *name, kiln_dtype *dt, int *rank,
                          const struct kiln_dim **dims)
{
    const struct kiln_vtype *v = kiln_opt_vtype(g, name);
    if (!v || v->type.kind != KILN_TYPE_TENSOR || v->type.rank < 0 || v->type.rank > KILN_MAX_RANK ||
        v->type.elem == KILN_DTYPE_UNDEFINED)
        return false;
    if (v->type.rank > 0 && !v->type.dims) return false;
    if (dt) *dt = v->type.elem;
    if (rank) *rank = v->type.rank;
    if (dims) *dims = v->type.dims;
    return true;
}

bool kiln_opt_static_shape(const struct kiln_graph *g, const char *name, int *rank,
                           int64_t dims[KILN_MAX_RANK])
{
    int r;
    const struct kiln_dim *d;
    if (!kiln_opt_tensor_type(g, name, NULL, &r, &d)) return false;
    for (int i = 0; i < r; i++) {
        if (!kiln_dim_known(d[i])) return false;
        dims[i] = d[i].value;
    }
    *rank = r;
    return true;
}

static bool str_eq(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") == 0;
}

static bool tensor_eq(const struct kiln_tensor *a, const struct kiln_tensor *b)
{
    if (a->dtype != b->dtype || a->rank != b->rank) return false;
    for (int i = 0; i < a->rank; i++)
        if (a->dims[i] != b->dims[i]) return false;
    size_t n = kiln_tensor_numel(a);
    if (!n) return true;
    if (!a->data || !b->data) return false;
    if (a->dtype == KILN_DTYPE_STRING) {
        const char *const *x = a->data, *const *y = b->data;
        for (size_t i = 0; i < n; i++)
            if (!str_eq(x[i], y[i])) return false;
        return true;
    }
    return memcmp(a->data, b->data, kiln_tensor_nbytes(a)) == 0;
}

static bool attr_eq(const struct kiln_attr *a, const struct kiln_attr *b)
{
    if (a->type != b->type || a->ref_attr_name || b->ref_attr_name) return false;
    switch (a->type) {
    case KILN_ATTR_FLOAT:
        return memcmp(&a->f, &b->f, sizeof a->f) == 0;
    case KILN_ATTR_INT:
        return a->i == b->i;
    case KILN_ATTR_STRING:
        return a->s_len == b->s_len && (!a->s_len || memcmp(a->s, b->s, a->s_len) == 0);
    case KILN_ATTR_TENSOR:
        return a->t && b->t && tensor_eq(a->t, b->t);
    case KILN_ATTR_FLOATS:
        return a->n == b->n && (!a->n || memcmp(a->floats, b->floats, a->n * sizeof(float)) == 0);
    case KILN_ATTR_INTS:
        return a->n == b->n && (!a->n || memcmp(a->ints, b->ints, a->n * sizeof(int64_t)) == 0);
    case KILN_ATTR_STRINGS:
        if (a->n != b->n) return false;
        for (size_t i = 0; i < a->n; i++) {
            size_t la = a->string_lens ? a->string_lens[i] : strlen(a->strings[i]);
            size_t lb = b->string_lens ? b->string_lens[i] : strlen(b->strings[i]);
            if (la != lb || (la && memcmp(a->strings[i], b->strings[i], la) != 0)) return false;
        }
        return true;
    case KILN_ATTR_TENSORS:
        if (a->n != b->n) return false;
        for (size_t i = 0; i < a->n; i++)
            if (!tensor_eq(&a->tensors[i], &b->tensors[i])) return false;
        return true;
    default:
        return false; /* graphs, sparse tensors, type protos: never merged */
    }
}

bool kiln_opt_same_node(const struct kiln_node *a, const struct kiln_node *b)
{
    if (!str_eq(a->op_type, b->op_type) || !str_eq(a->domain, b->domain)) return false;
    if (a->n_in != b->n_in || a->n_out != b->n_out || a->n_attr != b->n_attr) return false;
    for (size_t k = 0; k < a->n_in; k++)
        if (!str_eq(a->inputs[k], b->inputs[k])) return false;
    for (size_t k = 0; k < a->n_out; k++) /* the same outputs wanted */
        if (!a->outputs[k][0] != !b->outputs[k][0]) return false;
    for (size_t k = 0; k < a->n_attr; k++) {
        const struct kiln_attr *x = &a->attrs[k];
        const struct kiln_attr *y = x->name ? kiln_node_attr(b, x->name) : NULL;
        if (!y || !attr_eq(x, y)) return false;
    }
    return true;
}

bool kiln_opt_is_op(const struct kiln_opt *o, const struct kiln_graph *g, size_t n, const char *op)
{
    if (!kiln_opt_live(o, g, n)) return false;
    const struct kiln_node *nd = &g->nodes[n];
    return nd->domain && !nd->domain[0] && nd->op_type && strcmp(nd->op_type, op) == 0;
}

bool kiln_opt_match_chain(const struct kiln_opt *o, const struct kiln_graph *g, size_t first,
                          const char *const *ops, size_t *idx)
{
    if (!ops[0] || !kiln_opt_is_op(o, g, first, ops[0])) return false;
    idx[0] = first;
    for (size_t k = 1; ops[k]; k++) {
        const struct kiln_node *prev = &g->nodes[idx[k - 1]];
        if (prev->n_out < 1 || !prev->outputs[0][0]) return false;
        int c = kiln_opt_single_consumer(g, prev->outputs[0]);
        if (c < 0 || !kiln_opt_is_op(o, g, (size_t)c, ops[k])) return false;
        idx[k] = (size_t)c;
    }
    return true;
}

int kiln_opt_input_from(const struct kiln_opt *o, const struct kiln_graph *g, size_t n, size_t k,
                        const char *op)
{
    if (n >= g->n_nodes || k >= g->nodes[n].n_in) return -1;
    const char *name = g->nodes[n].inputs[k];
    int p = kiln_opt_producer(g, name);
    if (p < 0 || !kiln_opt_live(o, g, (size_t)p)) return -1;
    if (op && !kiln_opt_is_op(o, g, (size_t)p, op)) return -1;
    if (kiln_opt_single_consumer(g, name) != (int)n) return -1;
    return p;
}

static const struct kiln_attr *attr_typed(const struct kiln_node *n, const char *name,
                                          enum kiln_attr_type type)
{
    const struct kiln_attr *a = kiln_node_attr(n, name);
    return a && a->type == type && !a->ref_attr_name ? a : NULL;
}

int64_t kiln_opt_attr_i(const struct kiln_node *n, const char *name, int64_t def)
{
    const struct kiln_attr *a = attr_typed(n, name, KILN_ATTR_INT);
    return a ? a->i : def;
}

float kiln_opt_attr_f(const struct kiln_node *n, const char *name, float def)
{
    const struct kiln_attr *a = attr_typed(n, name, KILN_ATTR_FLOAT);
    return a ? a->f : def;
}

const char *kiln_opt_attr_s(const struct kiln_node *n, const char *name, const char *def)
{
    const struct kiln_attr *a = attr_typed(n, name, KILN_ATTR_STRING);
    return a && a->s ? a->s : def;
}

bool kiln_opt_attr_ints(const struct kiln_node *n, const char *name, const int64_t **v, size_t *count)
{
    const struct kiln_attr *a = attr_typed(n, name, KILN_ATTR_INTS);
    if (!a || (a->n && !a->ints)) return false;
    *v = a->ints;
    *count = a->n;
    return true;
}

bool kiln_opt_attr_floats(const struct kiln_node *n, const char *name, const float **v, size_t *count)
{
    const struct kiln_attr *a = attr_typed(n, name, KILN_ATTR_FLOATS);
    if (!a || (a->n && !a->floats)) return false;
    *v = a->floats;
    *count = a->n;
    return true;
}

bool kiln_opt_has_subgraph(const struct kiln_node *n)
{
    for (size_t k = 0; k < n->n_attr; k++) {
        const struct kiln_attr *a = &n->attrs[k];
        if ((a->type == KILN_ATTR_GRAPH && a->g) || (a->type == KILN_ATTR_GRAPHS && a->n)) return true;
    }
    return false;
}

/* ------------------------------------------------------------------ names */

static kiln_status add_name(struct kiln_opt *o, const char *name)
{
    if (name && name[0] && !opt_nameset_add(&o->names, name)) return nomem(o);
    return KILN_OK;
}

static kiln_status collect_graph_names(struct kiln_opt *o, const struct kiln_graph *g)
{
    for (size_t i = 0; i < g->n_inputs; i++) KILN_TRY(add_name(o, g->inputs[i].name));
    for (size_t i = 0; i < g->n_outputs; i++) KILN_TRY(add_name(o, g->outputs[i].name));
    for (size_t i = 0; i < g->n_inits; i++) KILN_TRY(add_name(o, g->inits[i].name));
    for (size_t i = 0; i < g->n_sparse_inits; i++) KILN_TRY(add_name(o, g->sparse_inits[i].name));
    for (size_t i = 0; i < g->n_nodes; i++) {
        const struct kiln_node *n = &g->nodes[i];
        KILN_TRY(add_name(o, n->name));
        for (size_t k = 0; k < n->n_out; k++) KILN_TRY(add_name(o, n->outputs[k]));
        for (size_t k = 0; k < n->n_in; k++) KILN_TRY(add_name(o, n->inputs[k]));
        for (size_t k = 0; k < n->n_attr; k++) {
            const struct kiln_attr *a = &n->attrs[k];
            if (a->type == KILN_ATTR_GRAPH && a->g) KILN_TRY(collect_graph_names(o, a->g));
            if (a->type == KILN_ATTR_GRAPHS)
                for (size_t j = 0; j < a->n; j++)
                    if (a->graphs[j]) KILN_TRY(collect_graph_names(o, a->graphs[j]));
        }
    }
    return KILN_OK;
}

kiln_status opt_collect_names(struct kiln_opt *o)
{
    return o->m->graph ? collect_graph_names(o, o->m->graph) : KILN_OK;
}

kiln_status kiln_opt_unique_name(struct kiln_opt *o, const char *base, const char **out)
{
    if (!base || !base[0]) base = "opt";
    char buf[256];
    const char *cand = base;
    size_t blen = strlen(base);
    if (blen > 200) blen = 200;
    for (unsigned long tries = 0; opt_nameset_has(&o->names, cand); tries++) {
        if (tries > 1000000) return kiln_err_set(o->err, KILN_E_INTERNAL, "no free name for '%s'", base);
        snprintf(buf, sizeof buf, "%.*s_%lu", (int)blen, base, ++o->name_counter);
        cand = buf;
    }
    const char *s = arena_str(o, cand);
    if (!s) return nomem(o);
    if (!opt_nameset_add(&o->names, s)) return nomem(o);
    *out = s;
    return KILN_OK;
}

/* ------------------------------------------------------------------ pending edits */

void opt_pending_free(struct opt_pending *p)
{
    kiln_free(p->node_removed);
    kiln_free(p->init_removed);
    kiln_free(p->new_nodes);
    kiln_free(p->new_inits);
    *p = (struct opt_pending){0};
}

kiln_status opt_begin(struct kiln_opt *o, struct kiln_graph *g)
{
    struct opt_pending *p = &o->pend;
    if (p->g == g && p->node_removed) return KILN_OK;
    opt_pending_free(p);
    p->g = g;
    p->n_nodes = g->n_nodes;
    p->n_inits = g->n_inits;
    p->node_removed = kiln_calloc(g->n_nodes + 1, 1);
    p->init_removed = kiln_calloc(g->n_inits + 1, 1);
    if (!p->node_removed || !p->init_removed) {
        opt_pending_free(p);
        return nomem(o);
    }
    return KILN_OK;
}

bool kiln_opt_pending(const struct kiln_opt *o, const struct kiln_graph *g)
{
    const struct opt_pending *p = &o->pend;
    return p->g == g &&
           (p->n_node_removed || p->n_init_removed || p->n_new || p->n_new_inits || p->renamed || p->misuse);
}

static bool editing(struct kiln_opt *o, const struct kiln_graph *g)
{
    if (o->pend.g == g && o->pend.node_removed) return true;
    o->pend.misuse = true;
    return false;
}

void kiln_opt_remove_node(struct kiln_opt *o, struct kiln_graph *g, size_t i)
{
    if (!editing(o, g) || i >= o->pend.n_nodes || o->pend.node_removed[i]) return;
    o->pend.node_removed[i] = 1;
    o->pend.n_node_removed++;
}

void kiln_opt_remove_init(struct kiln_opt *o, struct kiln_graph *g, size_t i)
{
    if (!editing(o, g) || i >= o->pend.n_inits || o->pend.init_removed[i]) return;
    o->pend.init_removed[i] = 1;
    o->pend.n_init_removed++;
}

static const char **copy_names(struct kiln_opt *o, size_t n, const char *const *names)
{
    const char **a = kiln_arena_array(&o->m->arena, n + 1, sizeof *a);
    if (!a) return NULL;
    for (size_t i = 0; i < n; i++) {
        a[i] = arena_str(o, names && names[i] ? names[i] : "");
        if (!a[i]) return NULL;
    }
    return a;
}

kiln_status kiln_opt_add_node(struct kiln_opt *o, struct kiln_graph *g, const char *op_type,
                              const char *domain, const char *name, size_t n_in, const char *const *inputs,
                              size_t n_out, const char *const *outputs, struct kiln_node **out)
{
    if (out) *out = NULL;
    if (!editing(o, g))
        return kiln_err_set(o->err, KILN_E_INTERNAL, "pass '%s' adds a node to a graph it is not editing",
                            o->pass ? o->pass->name : "?");
    struct opt_pending *p = &o->pend;
    if (p->n_new == p->cap_new) {
        size_t cap = p->cap_new ? 2 * p->cap_new : 16;
        struct kiln_node **nn = kiln_realloc(p->new_nodes, cap * sizeof *nn);
        if (!nn) return nomem(o);
        p->new_nodes = nn;
        p->cap_new = cap;
    }
    struct kiln_node *n = kiln_arena_alloc(&o->m->arena, sizeof *n);
    if (!n) return nomem(o);
    n->op_type = arena_str(o, op_type);
    n->domain = arena_str(o, domain ? domain : "");
    n->doc = "";
    if (name) {
        n->name = arena_str(o, name);
        if (n->name) KILN_TRY(add_name(o, n->name));
    } else {
        KILN_TRY(kiln_opt_unique_name(o, op_type, &n->name));
    }
    n->inputs = copy_names(o, n_in, inputs);
    n->outputs = copy_names(o, n_out, outputs);
    if (!n->op_type || !n->domain || !n->name || !n->inputs || !n->outputs) return nomem(o);
    n->n_in = n_in;
    n->n_out = n_out;
    for (size_t k = 0; k < n_out; k++) KILN_TRY(add_name(o, n->outputs[k]));
    p->new_nodes[p->n_new++] = n;
    if (out) *out = n;
    return KILN_OK;
}

kiln_status kiln_opt_new_tensor(struct kiln_opt *o, kiln_dtype dt, int rank, const int64_t *dims,
                                struct kiln_tensor *out)
{
    *out = (struct kiln_tensor){.dtype = dt};
    if (rank < 0 || rank > KILN_MAX_RANK || !kiln_dtype_valid((int)dt))
        return kiln_err_set(o->err, KILN_E_INTERNAL, "new tensor: bad rank %d or type %d", rank, (int)dt);
    size_t numel = 1;
    for (int i = 0; i < rank; i++) {
        if (dims[i] < 0 || !kiln_mul_size(numel, (size_t)dims[i], &numel))
            return kiln_err_set(o->err, KILN_E_LIMIT, "new tensor: bad shape");
        out->dims[i] = dims[i];
    }
    out->rank = rank;
    size_t nbytes;
    if (numel > KILN_MAX_NUMEL || !kiln_mul_size(numel, kiln_dtype_size(dt), &nbytes))
        return kiln_err_set(o->err, KILN_E_LIMIT, "new tensor: too large");
    out->data = kiln_arena_alloc(&o->m->arena, nbytes ? nbytes : 1);
    if (!out->data) return nomem(o);
    if (dt == KILN_DTYPE_STRING) {
        const char **s = out->data;
        for (size_t i = 0; i < numel; i++) s[i] = "";
    }
    return KILN_OK;
}

static kiln_status copy_tensor(struct kiln_opt *o, const struct kiln_tensor *t, struct kiln_tensor *out)
{
    KILN_TRY(kiln_opt_new_tensor(o, t->dtype, t->rank, t->dims, out));
    size_t numel = kiln_tensor_numel(out);
    if (!numel) return KILN_OK;
    if (!t->data) return kiln_err_set(o->err, KILN_E_INTERNAL, "tensor without data");
    if (t->dtype == KILN_DTYPE_STRING) {
        const char *const *src = t->data;
        const char **dst = out->data;
        for (size_t i = 0; i < numel; i++) {
            dst[i] = arena_str(o, src[i] ? src[i] : "");
            if (!dst[i]) return nomem(o);
        }
    } else {
        memcpy(out->data, t->data, kiln_tensor_nbytes(out));
    }
    return KILN_OK;
}

kiln_status kiln_opt_add_init(struct kiln_opt *o, struct kiln_graph *g, const char *name,
                              const struct kiln_tensor *t, const char **out_name)
{
    if (!editing(o, g))
        return kiln_err_set(o->err, KILN_E_INTERNAL,
                            "pass '%s' adds an initializer to a graph it is not editing",
                            o->pass ? o->pass->name : "?");
    struct opt_pending *p = &o->pend;
    if (p->n_new_inits == p->cap_new_inits) {
        size_t cap = p->cap_new_inits ? 2 * p->cap_new_inits : 16;
        struct kiln_initializer *ni = kiln_realloc(p->new_inits, cap * sizeof *ni);
        if (!ni) return nomem(o);
        p->new_inits = ni;
        p->cap_new_inits = cap;
    }
    struct kiln_initializer in = {.doc = ""};
    KILN_TRY(kiln_opt_unique_name(o, name && name[0] ? name : "const", &in.name));
    KILN_TRY(copy_tensor(o, t, &in.t));
    p->new_inits[p->n_new_inits++] = in;
    if (out_name) *out_name = in.name;
    return KILN_OK;
}

const struct kiln_tensor *kiln_opt_const_pending(const struct kiln_opt *o, const struct kiln_graph *g,
                                                 const char *name)
{
    if (!name || !name[0]) return NULL;
    if (o->pend.g == g)
        for (size_t i = o->pend.n_new_inits; i-- > 0;)
            if (strcmp(o->pend.new_inits[i].name, name) == 0) return &o->pend.new_inits[i].t;
    return kiln_opt_const(g, name);
}

/* ------------------------------------------------------------------ renaming */

static bool subgraph_defines(const struct kiln_graph *sg, const char *name)
{
    if (sg->values) {
        int id = kiln_graph_find(sg, name);
        return id >= 0 && sg->values[id].def != KILN_DEF_OUTER && sg->values[id].def != KILN_DEF_NONE;
    }
    return false;
}

static void rename_in_node_subgraphs(struct kiln_node *n, const char *from, const char *to);

/* Renames uses of `from` in sg (a subgraph reading it from outside) and deeper. */
static void rename_in_subgraph(struct kiln_graph *sg, const char *from, const char *to)
{
    if (subgraph_defines(sg, from)) return; /* shadowed: not our value */
    for (size_t i = 0; i < sg->n_nodes; i++) {
        struct kiln_node *n = &sg->nodes[i];
        for (size_t k = 0; k < n->n_in; k++)
            if (strcmp(n->inputs[k], from) == 0) n->inputs[k] = to;
        rename_in_node_subgraphs(n, from, to);
    }
    for (size_t i = 0; i < sg->n_outputs; i++)
        if (sg->outputs[i].name && strcmp(sg->outputs[i].name, from) == 0) sg->outputs[i].name = to;
}

static void rename_in_node_subgraphs(struct kiln_node *n, const char *from, const char *to)
{
    for (size_t k = 0; k < n->n_attr; k++) {
        struct kiln_attr *a = &n->attrs[k];
        if (a->type == KILN_ATTR_GRAPH && a->g) rename_in_subgraph(a->g, from, to);
        if (a->type == KILN_ATTR_GRAPHS)
            for (size_t j = 0; j < a->n; j++)
                if (a->graphs[j]) rename_in_subgraph(a->graphs[j], from, to);
    }
}

/* Every use of `from` in g's nodes (existing and queued) and their subgraphs reads `to`. */
static void rename_uses(struct kiln_opt *o, struct kiln_graph *g, const char *from, const char *to)
{
    for (size_t i = 0; i < g->n_nodes; i++) {
        struct kiln_node *n = &g->nodes[i];
        for (size_t k = 0; k < n->n_in; k++)
            if (strcmp(n->inputs[k], from) == 0) n->inputs[k] = to;
        rename_in_node_subgraphs(n, from, to);
    }
    for (size_t i = 0; i < o->pend.n_new; i++) {
        struct kiln_node *n = o->pend.new_nodes[i];
        for (size_t k = 0; k < n->n_in; k++)
            if (strcmp(n->inputs[k], from) == 0) n->inputs[k] = to;
        rename_in_node_subgraphs(n, from, to);
    }
    o->pend.renamed = true;
}

/* Where `name` is defined in g by something that can be renamed: a live node output
 * (*node, *slot), an initializer (*init) or a queued initializer (*qinit). */
struct def_site {
    struct kiln_node *node;
    size_t slot;
    struct kiln_initializer *init;
};

static bool find_def(struct kiln_opt *o, const struct kiln_graph *g, const char *name, struct def_site *d)
{
    *d = (struct def_site){0};
    if (!name[0] || kiln_opt_is_graph_input(g, name) || kiln_opt_is_graph_output(g, name)) return false;
    for (size_t i = 0; i < g->n_nodes; i++) {
        if (!kiln_opt_live(o, g, i)) continue;
        struct kiln_node *n = &g->nodes[i];
        for (size_t k = 0; k < n->n_out; k++)
            if (strcmp(n->outputs[k], name) == 0) {
                d->node = n;
                d->slot = k;
                return true;
            }
    }
    if (o->pend.g == g) {
        for (size_t i = 0; i < o->pend.n_new; i++) {
            struct kiln_node *n = o->pend.new_nodes[i];
            for (size_t k = 0; k < n->n_out; k++)
                if (strcmp(n->outputs[k], name) == 0) {
                    d->node = n;
                    d->slot = k;
                    return true;
                }
        }
        for (size_t i = 0; i < o->pend.n_new_inits; i++)
            if (strcmp(o->pend.new_inits[i].name, name) == 0) {
                d->init = &o->pend.new_inits[i];
                return true;
            }
    }
    for (size_t i = 0; i < g->n_inits; i++) {
        if (o->pend.g == g && i < o->pend.n_inits && o->pend.init_removed[i]) continue;
        if (strcmp(g->inits[i].name, name) == 0) {
            d->init = &g->inits[i];
            return true;
        }
    }
    return false;
}

static bool captured_in_node(const struct kiln_node *n, const char *from, const char *to);

/* Whether renaming `from` to `to` in subgraph sg (which reads `from` from outside) would bind
 * to a value `to` that sg (or a subgraph in it) defines itself: a model whose subgraph names
 * shadow outer ones (ONNX forbids it; kiln's linker allows it). */
static bool captured(const struct kiln_graph *sg, const char *from, const char *to)
{
    if (subgraph_defines(sg, from)) return false;
    if (subgraph_defines(sg, to)) return true;
    for (size_t i = 0; i < sg->n_nodes; i++)
        if (captured_in_node(&sg->nodes[i], from, to)) return true;
    return false;
}

static bool captured_in_node(const struct kiln_node *n, const char *from, const char *to)
{
    for (size_t k = 0; k < n->n_attr; k++) {
        const struct kiln_attr *a = &n->attrs[k];
        if (a->type == KILN_ATTR_GRAPH && a->g && captured(a->g, from, to)) return true;
        if (a->type == KILN_ATTR_GRAPHS)
            for (size_t j = 0; j < a->n; j++)
                if (a->graphs[j] && captured(a->graphs[j], from, to)) return true;
    }
    return false;
}

static bool captured_in_graph(const struct kiln_graph *g, const char *from, const char *to)
{
    for (size_t i = 0; i < g->n_nodes; i++)
        if (kiln_opt_has_subgraph(&g->nodes[i]) && captured_in_node(&g->nodes[i], from, to)) return true;
    return false;
}

bool kiln_opt_can_replace(const struct kiln_opt *o, const struct kiln_graph *g, const char *old_name,
                          const char *new_name)
{
    if (!old_name[0] || !new_name[0]) return false;
    if (strcmp(old_name, new_name) == 0) return true;
    if (!kiln_opt_is_graph_output(g, old_name)) return !captured_in_graph(g, old_name, new_name);
    struct def_site d;
    return find_def((struct kiln_opt *)o, g, new_name, &d) && !captured_in_graph(g, new_name, old_name);
}

kiln_status kiln_opt_replace_uses(struct kiln_opt *o, struct kiln_graph *g, const char *old_name,
                                  const char *new_name)
{
    if (!editing(o, g))
        return kiln_err_set(o->err, KILN_E_INTERNAL, "pass '%s' renames in a graph it is not editing",
                            o->pass ? o->pass->name : "?");
    if (strcmp(old_name, new_name) == 0) return KILN_OK;
    if (!old_name[0] || !new_name[0])
        return kiln_err_set(o->err, KILN_E_INTERNAL, "pass '%s' replaces an empty name",
                            o->pass ? o->pass->name : "?");
    /* Both strings must outlive the pass: take arena copies. */
    const char *from = arena_str(o, old_name), *to = arena_str(o, new_name);
    if (!from || !to) return nomem(o);
    bool out = kiln_opt_is_graph_output(g, from);
    if (out ? captured_in_graph(g, to, from) : captured_in_graph(g, from, to))
        return kiln_err_set(o->err, KILN_E_INVALID_MODEL,
                            "a subgraph defines '%s' again, shadowing the value of its enclosing graph (ONNX "
                            "forbids it); cannot rewire '%s'",
                            out ? from : to, out ? to : from);
    if (!out) {
        rename_uses(o, g, from, to);
        return KILN_OK;
    }
    struct def_site d;
    if (!find_def(o, g, to, &d))
        return kiln_err_set(o->err, KILN_E_INTERNAL,
                            "pass '%s': cannot replace graph output '%s' by '%s' (not defined by a node or "
                            "initializer of the graph)",
                            o->pass ? o->pass->name : "?", from, to);
    if (d.node)
        d.node->outputs[d.slot] = from;
    else
        d.init->name = from;
    rename_uses(o, g, to, from);
    return KILN_OK;
}

kiln_status kiln_opt_set_input(struct kiln_opt *o, struct kiln_node *node, size_t k, const char *name)
{
    if (k >= node->n_in)
        return kiln_err_set(o->err, KILN_E_INTERNAL, "set_input: node has %zu inputs, not %zu", node->n_in,
                            k + 1);
    const char *s = arena_str(o, name);
    if (!s) return nomem(o);
    node->inputs[k] = s;
    o->pend.renamed = true;
    return KILN_OK;
}

/* ------------------------------------------------------------------ attributes */

static kiln_status put_attr(struct kiln_opt *o, struct kiln_node *n, struct kiln_attr a)
{
    size_t idx = n->n_attr;
    for (size_t k = 0; k < n->n_attr; k++)
        if (n->attrs[k].name && strcmp(n->attrs[k].name, a.name) == 0) idx = k;
    size_t cnt = idx == n->n_attr ? n->n_attr + 1 : n->n_attr;
    struct kiln_attr *arr = kiln_arena_array(&o->m->arena, cnt, sizeof *arr);
    if (!arr) return nomem(o);
    if (n->n_attr) memcpy(arr, n->attrs, n->n_attr * sizeof *arr);
    a.name = arena_str(o, a.name);
    if (!a.name) return nomem(o);
    arr[idx] = a;
    n->attrs = arr;
    n->n_attr = cnt;
    return KILN_OK;
}

kiln_status kiln_opt_set_attr_i(struct kiln_opt *o, struct kiln_node *n, const char *name, int64_t v)
{
    return put_attr(o, n, (struct kiln_attr){.name = name, .type = KILN_ATTR_INT, .i = v});
}

kiln_status kiln_opt_set_attr_f(struct kiln_opt *o, struct kiln_node *n, const char *name, float v)
{
    return put_attr(o, n, (struct kiln_attr){.name = name, .type = KILN_ATTR_FLOAT, .f = v});
}

kiln_status kiln_opt_set_attr_s(struct kiln_opt *o, struct kiln_node *n, const char *name, const char *v)
{
    const char *s = arena_str(o, v);
    if (!s) return nomem(o);
    return put_attr(o, n,
                    (struct kiln_attr){.name = name, .type = KILN_ATTR_STRING, .s = s, .s_len = strlen(s)});
}

kiln_status kiln_opt_set_attr_ints(struct kiln_opt *o, struct kiln_node *n, const char *name,
                                   const int64_t *v, size_t count)
{
    int64_t *a = kiln_arena_array(&o->m->arena, count + 1, sizeof *a);
    if (!a) return nomem(o);
    if (count) memcpy(a, v, count * sizeof *a);
    return put_attr(o, n, (struct kiln_attr){.name = name, .type = KILN_ATTR_INTS, .n = count, .ints = a});
}

kiln_status kiln_opt_set_attr_floats(struct kiln_opt *o, struct kiln_node *n, const char *name,
                                     const float *v, size_t count)
{
    float *a = kiln_arena_array(&o->m->arena, count + 1, sizeof *a);
    if (!a) return nomem(o);
    if (count) memcpy(a, v, count * sizeof *a);
    return put_attr(o, n,
                    (struct kiln_attr){.name = name, .type = KILN_ATTR_FLOATS, .n = count, .floats = a});
}

kiln_status kiln_opt_set_attr_t(struct kiln_opt *o, struct kiln_node *n, const char *name,
                                const struct kiln_tensor *t)
{
    struct kiln_tensor *c = kiln_arena_alloc(&o->m->arena, sizeof *c);
    if (!c) return nomem(o);
    KILN_TRY(copy_tensor(o, t, c));
    return put_attr(o, n, (struct kiln_attr){.name = name, .type = KILN_ATTR_TENSOR, .t = c});
}

kiln_status kiln_opt_copy_attrs(struct kiln_opt *o, struct kiln_node *n, const struct kiln_node *src)
{
    for (size_t k = 0; k < src->n_attr; k++)
        if (src->attrs[k].name) KILN_TRY(put_attr(o, n, src->attrs[k]));
    return KILN_OK;
}

void kiln_opt_remove_attr(struct kiln_node *n, const char *name)
{
    for (size_t k = 0; k < n->n_attr; k++)
        if (n->attrs[k].name && strcmp(n->attrs[k].name, name) == 0) {
            memmove(&n->attrs[k], &n->attrs[k + 1], (n->n_attr - k - 1) * sizeof *n->attrs);
            n->n_attr--;
            return;
        }
}

kiln_status kiln_opt_require_opset(struct kiln_opt *o, const char *domain, int64_t version)
{
    struct kiln_model *m = o->m;
    int64_t have = kiln_model_opset_for(m, domain);
    if (have >= version) return KILN_OK;
    struct kiln_opset *ops = kiln_arena_array(&m->arena, m->n_opsets + 1, sizeof *ops);
    if (!ops) return nomem(o);
    if (m->n_opsets) memcpy(ops, m->opsets, m->n_opsets * sizeof *ops);
    size_t n = m->n_opsets;
    if (have >= 0) {
        for (size_t i = 0; i < m->n_opsets; i++) {
            const char *d = ops[i].domain ? ops[i].domain : "";
            if (strcmp(d, "ai.onnx") == 0) d = "";
            if (strcmp(d, domain && strcmp(domain, "ai.onnx") ? domain : "") == 0) ops[i].version = version;
        }
    } else {
        ops[n].domain = arena_str(o, domain);
        if (!ops[n].domain) return nomem(o);
        ops[n].version = version;
        n++;
    }
    m->opsets = ops;
    m->n_opsets = n;
    return KILN_OK;
}

/* ------------------------------------------------------------------ commit */

static void problem_first(void *user, const char *msg)
{
    char *first = user;
    if (!first[0]) snprintf(first, 512, "%s", msg);
}

/* Reorders the nodes of g (and its subgraphs) topologically where linking found them out of
 * order; *changed when it did. */
static kiln_status sort_graphs(struct kiln_opt *o, struct kiln_graph *g, bool *changed)
{
    if (g->linked && g->acyclic && !g->sorted && g->n_nodes) {
        struct kiln_node *nodes = kiln_arena_array(&o->m->arena, g->n_nodes, sizeof *nodes);
        if (!nodes) return nomem(o);
        for (size_t i = 0; i < g->n_nodes; i++) nodes[i] = g->nodes[g->order[i]];
        g->nodes = nodes;
        *changed = true;
    }
    for (size_t i = 0; i < g->n_nodes; i++) {
        struct kiln_node *n = &g->nodes[i];
        for (size_t k = 0; k < n->n_attr; k++) {
            struct kiln_attr *a = &n->attrs[k];
            if (a->type == KILN_ATTR_GRAPH && a->g) KILN_TRY(sort_graphs(o, a->g, changed));
            if (a->type == KILN_ATTR_GRAPHS)
                for (size_t j = 0; j < a->n; j++)
                    if (a->graphs[j]) KILN_TRY(sort_graphs(o, a->graphs[j], changed));
        }
    }
    return KILN_OK;
}

/* kiln_graph_link appends a node's implicit inputs to those it already has (a node may hold
 * several subgraphs), so a relink starts from none. */
static void clear_implicit(struct kiln_graph *g)
{
    for (size_t i = 0; i < g->n_nodes; i++) {
        struct kiln_node *n = &g->nodes[i];
        n->n_implicit = 0;
        n->implicit_ids = NULL;
        for (size_t k = 0; k < n->n_attr; k++) {
            struct kiln_attr *a = &n->attrs[k];
            if (a->type == KILN_ATTR_GRAPH && a->g) clear_implicit(a->g);
            if (a->type == KILN_ATTR_GRAPHS)
                for (size_t j = 0; j < a->n; j++)
                    if (a->graphs[j]) clear_implicit(a->graphs[j]);
        }
    }
}

kiln_status opt_relink(struct kiln_opt *o)
{
    struct kiln_model *m = o->m;
    for (int pass = 0; pass < 2; pass++) {
        clear_implicit(m->graph);
        m->n_link_problems = 0;
        m->link_problems = NULL;
        m->n_link_errors = 0;
        KILN_TRY(kiln_model_link(m, o->err));
        if (m->n_link_errors) {
            char first[512] = "";
            for (size_t i = 0; i < m->n_link_problems && !first[0]; i++)
                problem_first(first, m->link_problems[i]);
            return kiln_err_set(o->err, KILN_E_INTERNAL, "optimizer pass '%s' broke the graph: %s",
                                o->pass ? o->pass->name : "?", first);
        }
        bool resorted = false;
        if (pass == 0) KILN_TRY(sort_graphs(o, m->graph, &resorted));
        if (!resorted) break;
    }
    return kiln_infer_model(m, NULL, NULL, NULL, o->err);
}

kiln_status kiln_opt_commit(struct kiln_opt *o, struct kiln_graph *g)
{
    struct opt_pending *p = &o->pend;
    if (p->g != g) return KILN_OK;
    if (p->misuse)
        return kiln_err_set(o->err, KILN_E_INTERNAL, "optimizer pass '%s' edited a graph it was not given",
                            o->pass ? o->pass->name : "?");
    if (!kiln_opt_pending(o, g)) return KILN_OK;
    struct kiln_arena *a = &o->m->arena;
    kiln_status st = KILN_OK;
    struct opt_nameset defined = {0};

    /* Nodes: the live ones in order, then the queued ones. */
    size_t nn = 0;
    struct kiln_node *nodes =
        kiln_arena_array(a, p->n_nodes - p->n_node_removed + p->n_new + 1, sizeof *nodes);
    if (!nodes) goto oom;
    for (size_t i = 0; i < g->n_nodes; i++)
        if (i >= p->n_nodes || !p->node_removed[i]) nodes[nn++] = g->nodes[i];
    for (size_t i = 0; i < p->n_new; i++) nodes[nn++] = *p->new_nodes[i];

    size_t ni = 0;
    struct kiln_initializer *inits =
        kiln_arena_array(a, p->n_inits - p->n_init_removed + p->n_new_inits + 1, sizeof *inits);
    if (!inits) goto oom;
    for (size_t i = 0; i < g->n_inits; i++)
        if (i >= p->n_inits || !p->init_removed[i]) inits[ni++] = g->inits[i];
    for (size_t i = 0; i < p->n_new_inits; i++) inits[ni++] = p->new_inits[i];

    /* Names the graph still defines: value_info of vanished values is dropped. */
    for (size_t i = 0; i < g->n_inputs; i++)
        if (g->inputs[i].name && !opt_nameset_add(&defined, g->inputs[i].name)) goto oom;
    for (size_t i = 0; i < ni; i++)
        if (!opt_nameset_add(&defined, inits[i].name)) goto oom;
    for (size_t i = 0; i < nn; i++)
        for (size_t k = 0; k < nodes[i].n_out; k++)
            if (nodes[i].outputs[k][0] && !opt_nameset_add(&defined, nodes[i].outputs[k])) goto oom;
    size_t nvi = 0;
    struct kiln_value_info *vi = kiln_arena_array(a, g->n_value_info + 1, sizeof *vi);
    if (!vi) goto oom;
    for (size_t i = 0; i < g->n_value_info; i++)
        if (g->value_info[i].name && opt_nameset_has(&defined, g->value_info[i].name))
            vi[nvi++] = g->value_info[i];

    /* Before IR version 4 every initializer of the main graph is also a graph input: inputs
     * whose initializer went away go too, new initializers get one. */
    struct kiln_value_info *ins = g->inputs;
    size_t nin = g->n_inputs;
    const struct kiln_model *m = o->m;
    if (!g->parent && m->ir_version > 0 && m->ir_version < 4) {
        struct opt_nameset live_inits = {0}, removed_inits = {0};
        ins = kiln_arena_array(a, g->n_inputs + p->n_new_inits + 1, sizeof *ins);
        bool ok = ins != NULL;
        for (size_t i = 0; ok && i < ni; i++) ok = opt_nameset_add(&live_inits, inits[i].name);
        for (size_t i = 0; ok && i < g->n_inits && i < p->n_inits; i++)
            if (p->init_removed[i]) ok = opt_nameset_add(&removed_inits, g->inits[i].name);
        nin = 0;
        for (size_t i = 0; ok && i < g->n_inputs; i++) {
            const char *nm = g->inputs[i].name ? g->inputs[i].name : "";
            if (opt_nameset_has(&removed_inits, nm) && !opt_nameset_has(&live_inits, nm)) continue;
            ins[nin++] = g->inputs[i];
        }
        for (size_t i = 0; ok && i < p->n_new_inits; i++) {
            const struct kiln_initializer *in = &p->new_inits[i];
            struct kiln_value_info v = {.name = in->name, .doc = ""};
            v.type.kind = KILN_TYPE_TENSOR;
            v.type.elem = in->t.dtype;
            v.type.rank = in->t.rank;
            v.type.dims = kiln_arena_array(a, (size_t)in->t.rank + 1, sizeof *v.type.dims);
            if (!v.type.dims) {
                ok = false;
                break;
            }
            for (int d = 0; d < in->t.rank; d++) v.type.dims[d].value = in->t.dims[d];
            ins[nin++] = v;
        }
        opt_nameset_free(&live_inits);
        opt_nameset_free(&removed_inits);
        if (!ok) goto oom;
    }

    g->nodes = nodes;
    g->n_nodes = nn;
    g->inits = inits;
    g->n_inits = ni;
    g->value_info = vi;
    g->n_value_info = nvi;
    g->inputs = ins;
    g->n_inputs = nin;
    opt_nameset_free(&defined);
    opt_pending_free(p);
    KILN_TRY(opt_relink(o));
    return opt_begin(o, g); /* the pass may go on editing the committed graph */
oom:
    st = nomem(o);
    opt_nameset_free(&defined);
    return st;
}
