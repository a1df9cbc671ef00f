/* pass_cse.c: common-subexpression elimination.
 *
 * Two nodes with the same op, domain, attributes (compared by value) and inputs, wanting the
 * same outputs, compute the same values: the later one's consumers read the earlier one's
 * outputs and the later one goes. Nodes are visited in topological order with current input
 * names, so chains of duplicates collapse in one run. Never merged: random ops (each draws
 * its own numbers), nodes with subgraphs, nodes without outputs, and ops of domains kiln does
 * not know (they may have effects). Duplicate constant initializers (same type, shape and
 * bytes, up to 64 KiB each) are merged the same way.
 */
#include <stdlib.h>
#include <string.h>

#include "opt/opt.h"

static bool mergeable(const struct kiln_node *n)
{
    static const char *const RANDOM[] = {
        "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
        "Multinomial",  "Bernoulli",     "Dropout",          NULL};
    if (!n->n_out || kiln_opt_has_subgraph(n)) return false;
    if (n->domain[0] && strcmp(n->domain, "ai.onnx.ml") != 0 && strcmp(n->domain, "kiln") != 0) return false;
    for (size_t i = 0; RANDOM[i]; i++)
        if (strcmp(n->op_type, RANDOM[i]) == 0) return false;
    bool any = false;
    for (size_t k = 0; k < n->n_out; k++) any |= n->outputs[k][0] != 0;
    return any;
}

static uint64_t mix(uint64_t h, const char *s)
{
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return (h ^ 0xff) * 1099511628211ull;
}

static uint64_t node_hash(const struct kiln_node *n)
{
    uint64_t h = mix(1469598103934665603ull, n->op_type);
    h = mix(h, n->domain);
    for (size_t k = 0; k < n->n_in; k++) h = mix(h, n->inputs[k]);
    return h ^ n->n_attr;
}

/* A chained hash table of node (or initializer) indices by hash. */
struct table {
    size_t cap;   /* power of two */
    size_t *head; /* index into ent + 1; 0 = empty */
    struct {
        uint64_t h;
        size_t idx, next;
    } * ent;
    size_t n;
};

static bool table_init(struct table *t, size_t n)
{
    t->cap = 16;
    while (t->cap < 2 * n + 2) t->cap *= 2;
    t->head = kiln_calloc(t->cap, sizeof *t->head);
    t->ent = kiln_malloc((n + 1) * sizeof *t->ent);
    t->n = 0;
    return t->head && t->ent;
}

static void table_free(struct table *t)
{
    kiln_free(t->head);
    kiln_free(t->ent);
}

static void table_add(struct table *t, uint64_t h, size_t idx)
{
    size_t b = h & (t->cap - 1);
    t->ent[t->n].h = h;
    t->ent[t->n].idx = idx;
    t->ent[t->n].next = t->head[b];
    t->head[b] = ++t->n;
}

/* Replaces every output of node `dup` by the same output of node `keep`. */
static kiln_status merge(struct kiln_opt *o, struct kiln_graph *g, size_t keep, size_t dup, bool *changed)
{
    struct kiln_node *a = &g->nodes[keep], *b = &g->nodes[dup];
    /* A graph output may take over the kept node's output name (it is renamed); keep it
     * simple: at most one such output, and the kept node's outputs are not graph outputs. */
    size_t renamed = 0;
    for (size_t k = 0; k < b->n_out; k++) {
        if (!b->outputs[k][0]) continue;
        if (!kiln_opt_can_replace(o, g, b->outputs[k], a->outputs[k])) return KILN_OK;
        if (kiln_opt_is_graph_output(g, b->outputs[k])) renamed++;
    }
    if (renamed > 1) return KILN_OK;
    for (size_t k = 0; k < b->n_out; k++)
        if (b->outputs[k][0]) KILN_TRY(kiln_opt_replace_uses(o, g, b->outputs[k], a->outputs[k]));
    size_t both[2] = {keep, dup};
    kiln_opt_note_fused(o, g, both, 2, a);
    kiln_opt_remove_node(o, g, dup);
    *changed = true;
    return KILN_OK;
}

static kiln_status cse_nodes(struct kiln_opt *o, struct kiln_graph *g, bool *changed)
{
    /* Hashes change as inputs are renamed, so nodes are hashed in topological order, one at
     * a time, with their current input names, against the earlier ones. */
    struct table t;
    kiln_status st = KILN_OK;
    if (!table_init(&t, g->n_nodes)) {
        table_free(&t);
        return kiln_err_set(kiln_opt_err(o), KILN_E_NOMEM, "out of memory in cse");
    }
    for (size_t i = 0; i < g->n_nodes; i++) {
        if (!kiln_opt_live(o, g, i) || !mergeable(&g->nodes[i])) continue;
        uint64_t h = node_hash(&g->nodes[i]);
        size_t found = SIZE_MAX;
        for (size_t e = t.head[h & (t.cap - 1)]; e; e = t.ent[e - 1].next) {
            size_t j = t.ent[e - 1].idx;
            if (t.ent[e - 1].h == h && kiln_opt_live(o, g, j) &&
                kiln_opt_same_node(&g->nodes[j], &g->nodes[i])) {
                found = j;
                break;
            }
        }
        if (found != SIZE_MAX) {
            st = merge(o, g, found, i, changed);
            if (st) break;
            if (!kiln_opt_live(o, g, i)) continue;
        }
        table_add(&t, h, i);
    }
    table_free(&t);
    return st;
}

#define MAX_INIT_BYTES ((size_t)64 << 10)

static uint64_t tensor_hash(const struct kiln_tensor *x)
{
    uint64_t h = 1469598103934665603ull ^ (uint64_t)x->dtype;
    for (int d = 0; d < x->rank; d++) h = (h ^ (uint64_t)x->dims[d]) * 1099511628211ull;
    const uint8_t *p = x->data;
    size_t nb = kiln_tensor_nbytes(x);
    for (size_t i = 0; p && i < nb; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

static bool tensor_same(const struct kiln_tensor *a, const struct kiln_tensor *b)
{
    if (a->dtype != b->dtype || a->rank != b->rank) return false;
    for (int d = 0; d < a->rank; d++)
        if (a->dims[d] != b->dims[d]) return false;
    size_t nb = kiln_tensor_nbytes(a);
    return !nb || (a->data && b->data && memcmp(a->data, b->data, nb) == 0);
}

static kiln_status cse_inits(struct kiln_opt *o, struct kiln_graph *g, bool *changed)
{
    struct table t;
    kiln_status st = KILN_OK;
    if (!table_init(&t, g->n_inits)) {
        table_free(&t);
        return kiln_err_set(kiln_opt_err(o), KILN_E_NOMEM, "out of memory in cse");
    }
    for (size_t i = 0; i < g->n_inits; i++) {
        const struct kiln_initializer *in = &g->inits[i];
        const struct kiln_tensor *x = &in->t;
        if (x->dtype == KILN_DTYPE_STRING || kiln_tensor_nbytes(x) > MAX_INIT_BYTES ||
            (kiln_tensor_numel(x) && !x->data) || kiln_opt_const(g, in->name) != x ||
            kiln_opt_is_graph_output(g, in->name))
            continue;
        uint64_t h = tensor_hash(x);
        size_t found = SIZE_MAX;
        for (size_t e = t.head[h & (t.cap - 1)]; e; e = t.ent[e - 1].next)
            if (t.ent[e - 1].h == h && tensor_same(&g->inits[t.ent[e - 1].idx].t, x)) {
                found = t.ent[e - 1].idx;
                break;
            }
        if (found == SIZE_MAX) {
            table_add(&t, h, i);
            continue;
        }
        if (!kiln_opt_can_replace(o, g, in->name, g->inits[found].name)) continue;
        st = kiln_opt_replace_uses(o, g, in->name, g->inits[found].name);
        if (st) break;
        kiln_opt_remove_init(o, g, i);
        *changed = true;
    }
    table_free(&t);
    return st;
}

static kiln_status run(struct kiln_opt *o, struct kiln_graph *g, bool *changed)
{
    KILN_TRY(cse_inits(o, g, changed));
    return cse_nodes(o, g, changed);
}

const struct kiln_pass kiln_pass_cse = {
    .name = "cse",
    .level = KILN_OPT_BASIC,
    .doc = "merges nodes that compute the same thing from the same inputs, and equal constants",
    .run = run,
};
