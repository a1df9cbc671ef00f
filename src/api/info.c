/* info.c: the model query functions of kiln.h (metadata, opsets, graph inputs/outputs,
 * nodes, parameter totals) over struct kiln_model (ir/ir.h).
 *
 * Follows onnx.proto's ModelProto/GraphProto: a graph input whose name is also an
 * initializer is a default value the caller may override (IR version >= 4 semantics), not
 * an input the caller must bind, so kiln.h's input list excludes it. Strings returned here
 * point into the model's arena and live as long as the model.
 */
#include <string.h>

#include "ir/ir.h"

static const char *nn(const char *s) { return s ? s : ""; }

int64_t kiln_model_ir_version(const kiln_model *m) { return m->ir_version; }
int64_t kiln_model_version(const kiln_model *m) { return m->model_version; }
const char *kiln_model_producer(const kiln_model *m) { return nn(m->producer_name); }
const char *kiln_model_producer_version(const kiln_model *m) { return nn(m->producer_version); }
const char *kiln_model_domain(const kiln_model *m) { return nn(m->domain); }
const char *kiln_model_doc(const kiln_model *m) { return nn(m->doc); }
const char *kiln_model_graph_name(const kiln_model *m) { return m->graph ? nn(m->graph->name) : ""; }

size_t kiln_model_opset_count(const kiln_model *m) { return m->n_opsets; }

/* Out-of-range i yields ("", -1) rather than reading past the array. */
void kiln_model_opset(const kiln_model *m, size_t i, const char **domain, int64_t *version)
{
    const char *d = "";
    int64_t v = -1;
    if (i < m->n_opsets) {
        d = nn(m->opsets[i].domain);
        v = m->opsets[i].version;
    }
    if (domain) *domain = d;
    if (version) *version = v;
}

size_t kiln_model_metadata_count(const kiln_model *m) { return m->n_meta; }

void kiln_model_metadata(const kiln_model *m, size_t i, const char **key, const char **value)
{
    const char *k = "", *v = "";
    if (i < m->n_meta) {
        k = nn(m->meta[i].key);
        v = nn(m->meta[i].value);
    }
    if (key) *key = k;
    if (value) *value = v;
}

/* ------------------------------------------------------------------ inputs and outputs */

/* The i-th graph input that is not an initializer; NULL when out of range. Linear in the
 * inputs (each initializer test is a hash lookup once the graph is linked, as it always is
 * after a load); fine for a query API, and needs no cache in the model. */
static const struct kiln_value_info *real_input(const kiln_model *m, size_t i)
{
    const struct kiln_graph *g = m->graph;
    if (!g) return NULL;
    if (g->n_inits == 0 && g->n_sparse_inits == 0) return i < g->n_inputs ? &g->inputs[i] : NULL;
    for (size_t k = 0; k < g->n_inputs; k++) {
        if (kiln_graph_is_initializer(g, g->inputs[k].name)) continue;
        if (i-- == 0) return &g->inputs[k];
    }
    return NULL;
}

static const struct kiln_value_info *output_at(const kiln_model *m, size_t i)
{
    const struct kiln_graph *g = m->graph;
    return g && i < g->n_outputs ? &g->outputs[i] : NULL;
}

size_t kiln_model_input_count(const kiln_model *m)
{
    const struct kiln_graph *g = m->graph;
    size_t n = 0;
    if (!g) return 0;
    for (size_t k = 0; k < g->n_inputs; k++) n += !kiln_graph_is_initializer(g, g->inputs[k].name);
    return n;
}

size_t kiln_model_output_count(const kiln_model *m) { return m->graph ? m->graph->n_outputs : 0; }

const char *kiln_model_input_name(const kiln_model *m, size_t i)
{
    const struct kiln_value_info *vi = real_input(m, i);
    return vi ? nn(vi->name) : "";
}

const char *kiln_model_output_name(const kiln_model *m, size_t i)
{
    const struct kiln_value_info *vi = output_at(m, i);
    return vi ? nn(vi->name) : "";
}

static kiln_value_kind kind_of(const struct kiln_value_info *vi)
{
    if (!vi) return 0;
    switch (vi->type.kind) {
    case KILN_TYPE_TENSOR: return KILN_VALUE_TENSOR;
    case KILN_TYPE_SEQUENCE: return KILN_VALUE_SEQUENCE;
    case KILN_TYPE_OPTIONAL: return KILN_VALUE_OPTIONAL;
    default: return 0; /* missing, map, sparse: no runtime value kind for these */
    }
}

kiln_value_kind kiln_model_input_kind(const kiln_model *m, size_t i) { return kind_of(real_input(m, i)); }
kiln_value_kind kiln_model_output_kind(const kiln_model *m, size_t i) { return kind_of(output_at(m, i)); }

static size_t type_text(const struct kiln_value_info *vi, char *buf, size_t size)
{
    if (vi) return kiln_type_str(&vi->type, buf, size);
    if (buf && size) buf[0] = 0;
    return 0;
}

size_t kiln_model_input_type(const kiln_model *m, size_t i, char *buf, size_t size)
{
    return type_text(real_input(m, i), buf, size);
}

size_t kiln_model_output_type(const kiln_model *m, size_t i, char *buf, size_t size)
{
    return type_text(output_at(m, i), buf, size);
}

/* The tensor type a declared type holds: itself, or what a sequence/optional wraps. */
static const struct kiln_type *tensor_type(const struct kiln_value_info *vi)
{
    const struct kiln_type *t = vi ? &vi->type : NULL;
    for (int depth = 0; t && depth < 64; depth++) {
        if (t->kind == KILN_TYPE_TENSOR) return t;
        if (t->kind != KILN_TYPE_SEQUENCE && t->kind != KILN_TYPE_OPTIONAL) return NULL;
        t = t->inner;
    }
    return NULL;
}

static kiln_dtype dtype_of(const struct kiln_value_info *vi)
{
    const struct kiln_type *t = tensor_type(vi);
    return t ? t->elem : KILN_DTYPE_UNDEFINED;
}

static int rank_of(const struct kiln_value_info *vi)
{
    const struct kiln_type *t = tensor_type(vi);
    return t ? t->rank : -1;
}

static int64_t dim_of(const struct kiln_value_info *vi, int d, const char **param)
{
    const struct kiln_type *t = tensor_type(vi);
    if (param) *param = "";
    if (!t || d < 0 || d >= t->rank) return -1;
    if (param && t->dims[d].param) *param = t->dims[d].param;
    return t->dims[d].value >= 0 ? t->dims[d].value : -1;
}

kiln_dtype kiln_model_input_dtype(const kiln_model *m, size_t i) { return dtype_of(real_input(m, i)); }
kiln_dtype kiln_model_output_dtype(const kiln_model *m, size_t i) { return dtype_of(output_at(m, i)); }
int kiln_model_input_rank(const kiln_model *m, size_t i) { return rank_of(real_input(m, i)); }
int kiln_model_output_rank(const kiln_model *m, size_t i) { return rank_of(output_at(m, i)); }

int64_t kiln_model_input_dim(const kiln_model *m, size_t i, int d, const char **param)
{
    return dim_of(real_input(m, i), d, param);
}

int64_t kiln_model_output_dim(const kiln_model *m, size_t i, int d, const char **param)
{
    return dim_of(output_at(m, i), d, param);
}

/* ------------------------------------------------------------------ nodes and parameters */

size_t kiln_model_node_count(const kiln_model *m) { return m->graph ? m->graph->n_nodes : 0; }

void kiln_model_node(const kiln_model *m, size_t i, const char **name, const char **op_type,
                     const char **domain)
{
    const struct kiln_node *n = m->graph && i < m->graph->n_nodes ? &m->graph->nodes[i] : NULL;
    if (name) *name = n ? nn(n->name) : "";
    if (op_type) *op_type = n ? nn(n->op_type) : "";
    if (domain) *domain = n ? nn(n->domain) : "";
}

/* Bytes a tensor takes in memory, counting string payloads too (a string tensor's data is
 * an array of pointers). Saturates instead of wrapping. */
static uint64_t tensor_bytes(const struct kiln_tensor *t)
{
    uint64_t n = kiln_tensor_numel(t), b;
    if (__builtin_mul_overflow(n, (uint64_t)kiln_dtype_size(t->dtype), &b)) return UINT64_MAX;
    if (t->dtype == KILN_DTYPE_STRING && t->data) {
        char *const *s = t->data;
        for (uint64_t k = 0; k < n; k++)
            if (s[k] && __builtin_add_overflow(b, (uint64_t)strlen(s[k]), &b)) return UINT64_MAX;
    }
    return b;
}

static uint64_t sat_add(uint64_t a, uint64_t b) { return a > UINT64_MAX - b ? UINT64_MAX : a + b; }

/* Dense initializers count every element; sparse ones count their stored (non-zero) values,
 * and their bytes include the indices, since that is what the model holds in memory. */
void kiln_model_params(const kiln_model *m, uint64_t *count, uint64_t *bytes)
{
    uint64_t c = 0, b = 0;
    const struct kiln_graph *g = m->graph;
    for (size_t i = 0; g && i < g->n_inits; i++) {
        c = sat_add(c, kiln_tensor_numel(&g->inits[i].t));
        b = sat_add(b, tensor_bytes(&g->inits[i].t));
    }
    for (size_t i = 0; g && i < g->n_sparse_inits; i++) {
        c = sat_add(c, kiln_tensor_numel(&g->sparse_inits[i].values));
        b = sat_add(b, tensor_bytes(&g->sparse_inits[i].values));
        b = sat_add(b, tensor_bytes(&g->sparse_inits[i].indices));
    }
    if (count) *count = c;
    if (bytes) *bytes = b;
}
