/* api.c: kiln.h's shape-inference functions (compile stage, part 1):
 * kiln_model_set_input_shape, kiln_model_infer_shapes and the value listing.
 */
#include <stdio.h>
#include <string.h>

#include "infer/infer_priv.h"

kiln_status kiln_model_set_input_shape(kiln_model *m, const char *name, int rank,
                                       const int64_t *dims, kiln_err *err)
{
    if (!m || !m->graph || !name)
        return kiln_err_set(err, KILN_E_INVALID_ARG, "kiln_model_set_input_shape: no model or name");
    struct kiln_graph *g = m->graph;
    struct kiln_value_info *vi = NULL;
    for (size_t i = 0; i < g->n_inputs && !vi; i++)
        if (g->inputs[i].name && strcmp(g->inputs[i].name, name) == 0) vi = &g->inputs[i];
    if (!vi) return kiln_err_set(err, KILN_E_INVALID_ARG, "model has no input '%s'", name);
    if (rank < 0 || rank > KILN_MAX_RANK || (rank > 0 && !dims))
        return kiln_err_set(err, KILN_E_INVALID_ARG, "input '%s': rank %d is out of range [0, %d]",
                            name, rank, KILN_MAX_RANK);
    uint64_t numel = 1;
    for (int i = 0; i < rank; i++) {
        if (dims[i] < 0)
            return kiln_err_set(err, KILN_E_INVALID_ARG, "input '%s': dim %d is negative (%lld)",
                                name, i, (long long)dims[i]);
        if (__builtin_mul_overflow(numel, (uint64_t)dims[i], &numel) || numel > KILN_MAX_NUMEL)
            return kiln_err_set(err, KILN_E_LIMIT, "input '%s': shape has more than 2^40 elements",
                                name);
    }
    struct kiln_type *t = &vi->type;
    if (t->kind != KILN_TYPE_TENSOR && t->kind != KILN_TYPE_NONE)
        return kiln_err_set(err, KILN_E_INVALID_ARG, "input '%s' is not a tensor", name);
    char dbuf[512];
    if (t->kind == KILN_TYPE_TENSOR && t->rank >= 0) {
        kiln_type_str(t, dbuf, sizeof dbuf);
        if (t->rank != rank)
            return kiln_err_set(err, KILN_E_INVALID_ARG, "input '%s' is declared %s (rank %d); got rank %d",
                                name, dbuf, t->rank, rank);
        for (int i = 0; i < rank; i++)
            if (t->dims[i].value >= 0 && t->dims[i].value != dims[i])
                return kiln_err_set(err, KILN_E_INVALID_ARG,
                                    "input '%s' is declared %s; dim %d cannot be %lld", name, dbuf,
                                    i, (long long)dims[i]);
    }
    struct kiln_dim *nd = kiln_arena_array(&m->arena, rank ? (size_t)rank : 1, sizeof *nd);
    if (!nd) return kiln_err_set(err, KILN_E_NOMEM, "out of memory");
    for (int i = 0; i < rank; i++) nd[i] = (struct kiln_dim){.value = dims[i]};
    t->kind = KILN_TYPE_TENSOR;
    t->rank = rank;
    t->dims = nd;
    g->vtypes = NULL; /* earlier results are stale */
    g->layout = NULL; /* layout marks too */
    g->vorder = NULL;
    g->n_vorder = 0;
    return KILN_OK;
}

kiln_status kiln_model_infer_shapes(kiln_model *m, kiln_err *err)
{
    if (!m || !m->graph) return kiln_err_set(err, KILN_E_INVALID_MODEL, "model has no graph");
    if (m->n_link_errors)
        return kiln_err_set(err, KILN_E_INVALID_MODEL, "model does not link: %s",
                            m->n_link_problems && m->link_problems[0] ? m->link_problems[0] : "?");
    return kiln_infer_model(m, NULL, NULL, NULL, err);
}

size_t kiln_model_value_count(const kiln_model *m)
{
    return m && m->graph && m->graph->vtypes && m->graph->vorder ? m->graph->n_vorder : 0;
}

const char *kiln_model_value_name(const kiln_model *m, size_t i)
{
    if (i >= kiln_model_value_count(m)) return "";
    const char *s = m->graph->values[m->graph->vorder[i]].name;
    return s ? s : "";
}

size_t kiln_model_value_type(const kiln_model *m, size_t i, char *buf, size_t size)
{
    if (i >= kiln_model_value_count(m)) return kiln_vtype_str(NULL, buf, size);
    return kiln_vtype_str(&m->graph->vtypes[m->graph->vorder[i]], buf, size);
}
