/* link.c: resolves a graph's value names into ids, producer/consumer links, outer-scope
 * references of subgraphs, each node's op version, and a topological order.
 *
 * ONNX scoping (IR.md "Names Within a Graph"): a name is defined once per graph, by a graph
 * input, an initializer or a node output; an initializer may share its name with a graph
 * input (the initializer is then the input's default). A subgraph may read any value of its
 * enclosing graphs. Nodes should be stored in topological order; kiln sorts them anyway and
 * reports an unsorted file only through the checker.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"
#include "ops/schema.h"

/* ------------------------------------------------------------------ name table */

struct name_table {
    size_t cap; /* power of two */
    int *slots; /* value id + 1; 0 = empty */
    const struct kiln_graph_value *values;
};

static uint64_t hash_name(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static int table_find(const struct name_table *t, const char *name)
{
    if (!t->cap) return -1;
    for (size_t i = hash_name(name) & (t->cap - 1);; i = (i + 1) & (t->cap - 1)) {
        int s = t->slots[i];
        if (!s) return -1;
        if (strcmp(t->values[s - 1].name, name) == 0) return s - 1;
    }
}

static void table_insert(struct name_table *t, const char *name, int id)
{
    size_t i = hash_name(name) & (t->cap - 1);
    while (t->slots[i]) i = (i + 1) & (t->cap - 1);
    t->slots[i] = id + 1;
}

/* A linked graph's values array lives in one arena block right after its name table, so that
 * kiln_graph_find can hash (struct kiln_graph has no field for the table; link_graph is the
 * only place that sets g->values). */
struct linked_values {
    struct name_table tab;
    struct kiln_graph_value vals[];
};

/* ------------------------------------------------------------------ helpers */

int64_t kiln_model_opset_for(const struct kiln_model *m, const char *domain)
{
    if (!domain || strcmp(domain, "ai.onnx") == 0) domain = "";
    for (size_t i = 0; i < m->n_opsets; i++) {
        const char *d = m->opsets[i].domain ? m->opsets[i].domain : "";
        if (strcmp(d, "ai.onnx") == 0) d = "";
        if (strcmp(d, domain) == 0) return m->opsets[i].version;
    }
    return -1;
}

const struct kiln_attr *kiln_node_attr(const struct kiln_node *n, const char *name)
{
    for (size_t i = 0; i < n->n_attr; i++)
        if (n->attrs[i].name && strcmp(n->attrs[i].name, name) == 0) return &n->attrs[i];
    return NULL;
}

const char *kiln_node_label(const struct kiln_node *n, char *buf, size_t size)
{
    const char *op = n->op_type && n->op_type[0] ? n->op_type : "(no op_type)";
    if (n->name && n->name[0])
        snprintf(buf, size, "%s node '%s'", op, n->name);
    else if (n->n_out && n->outputs[0][0])
        snprintf(buf, size, "%s node (output '%s')", op, n->outputs[0]);
    else
        snprintf(buf, size, "%s node", op);
    return buf;
}

struct link_ctx {
    struct kiln_arena *arena;
    kiln_problem_fn problem;
    void *user;
    size_t n_problems, n_errors;
    kiln_err *err;
};

static void report(struct link_ctx *c, bool blocking, const char *fmt, ...) KILN_PRINTF(3, 4);
static void report(struct link_ctx *c, bool blocking, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    c->n_problems++;
    if (blocking) c->n_errors++;
    if (c->problem) c->problem(c->user, msg);
}

/* Hashed: the executor looks names up per frame (every Loop iteration) and the linker per
 * outer reference, so a linear scan made large graphs quadratic. */
int kiln_graph_find(const struct kiln_graph *g, const char *name)
{
    if (!g->values) return -1;
    const struct linked_values *lv =
        (const struct linked_values *)(const void *)((const char *)g->values -
                                                     offsetof(struct linked_values, vals));
    int id = table_find(&lv->tab, name);
    return id >= 0 && (size_t)id < g->n_values ? id : -1;
}

/* Whether `name` is visible in g's enclosing graphs. */
static bool outer_defines(const struct kiln_graph *g, const char *name)
{
    for (const struct kiln_graph *p = g->parent; p; p = p->parent) {
        int id = kiln_graph_find(p, name);
        if (id >= 0 && p->values[id].def != KILN_DEF_NONE && p->values[id].def != KILN_DEF_OUTER)
            return true;
    }
    return false;
}

static kiln_status nomem(struct link_ctx *c)
{
    return kiln_err_set(c->err, KILN_E_NOMEM, "out of memory linking the graph");
}

static kiln_status link_graph(struct kiln_graph *g, struct link_ctx *c);

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* Collects the outer-scope names that subgraph sg (and its own subgraphs) read into
 * node->implicit_ids: first those g defines, then those from beyond g, which become OUTER
 * values of g (while vals has room: *nv < cap) so that they propagate up. Runs after sg is
 * linked. One allocation per subgraph and a sorted lookup, so that a subgraph reading
 * thousands of outer names costs neither quadratic time nor quadratic arena memory. */
static kiln_status add_implicit(struct kiln_node *node, const struct kiln_graph *sg,
                                struct name_table *tab, struct kiln_graph_value *vals,
                                size_t *nv, size_t cap, struct link_ctx *c)
{
    size_t n_old = node->n_implicit, n_new = 0;
    int *sorted = kiln_malloc((n_old + 1) * sizeof *sorted);
    int *add = kiln_malloc((sg->n_values + 1) * sizeof *add);
    kiln_status st = KILN_OK;
    if (!sorted || !add) {
        st = nomem(c);
        goto done;
    }
    if (n_old) memcpy(sorted, node->implicit_ids, n_old * sizeof *sorted);
    qsort(sorted, n_old, sizeof *sorted, cmp_int);
    /* sg's names are distinct, so its ids are too: only the node's earlier ids can repeat. */
    for (int beyond = 0; beyond < 2; beyond++)
        for (size_t v = 0; v < sg->n_values; v++) {
            if (sg->values[v].def != KILN_DEF_OUTER) continue;
            const char *nm = sg->values[v].name;
            int id = table_find(tab, nm);
            if (!beyond) {
                if (id < 0 || (n_old && bsearch(&id, sorted, n_old, sizeof *sorted, cmp_int)))
                    continue;
            } else {
                if (id >= 0 || *nv >= cap) continue;
                vals[*nv] = (struct kiln_graph_value){
                    .name = nm, .def = KILN_DEF_OUTER, .producer = -1};
                table_insert(tab, nm, (int)*nv);
                id = (int)(*nv)++;
            }
            add[n_new++] = id;
        }
    if (n_new) {
        int *ids = kiln_arena_array(c->arena, n_old + n_new, sizeof *ids);
        if (!ids) {
            st = nomem(c);
            goto done;
        }
        if (n_old) memcpy(ids, node->implicit_ids, n_old * sizeof *ids);
        memcpy(ids + n_old, add, n_new * sizeof *ids);
        node->implicit_ids = ids;
        node->n_implicit = n_old + n_new;
    }
done:
    kiln_free(sorted);
    kiln_free(add);
    return st;
}

/* Outer references of nested subgraphs that resolve beyond sg's own scope must also be
 * visible as OUTER values of sg, so that they propagate up. */
static kiln_status link_graph(struct kiln_graph *g, struct link_ctx *c)
{
    struct kiln_arena *a = c->arena;
    /* Upper bound on distinct names: inputs + inits + every node input/output + outputs. */
    size_t cap_names = g->n_inputs + g->n_inits + g->n_outputs + g->n_sparse_inits;
    for (size_t i = 0; i < g->n_nodes; i++) {
        cap_names += g->nodes[i].n_in + g->nodes[i].n_out;
        for (size_t k = 0; k < g->nodes[i].n_attr; k++) {
            /* subgraph outer refs are added as OUTER values below; bound them generously */
            const struct kiln_attr *at = &g->nodes[i].attrs[k];
            if (at->type == KILN_ATTR_GRAPH && at->g) cap_names += 64;
            if (at->type == KILN_ATTR_GRAPHS) cap_names += 64 * at->n;
        }
    }
    size_t lv_bytes;
    if (!kiln_mul_size(cap_names + 1, sizeof(struct kiln_graph_value), &lv_bytes) ||
        !kiln_add_size(lv_bytes, sizeof(struct linked_values), &lv_bytes))
        return nomem(c);
    struct linked_values *lv = kiln_arena_alloc(a, lv_bytes);
    struct kiln_graph_value *vals = lv ? lv->vals : NULL;
    struct name_table tab = {0};
    tab.cap = 16;
    while (tab.cap < 2 * (cap_names + 1)) tab.cap *= 2;
    tab.slots = kiln_arena_array(a, tab.cap, sizeof *tab.slots);
    if (!vals || !tab.slots) return nomem(c);
    tab.values = vals;
    lv->tab = tab; /* shares the slots: later inserts are visible to kiln_graph_find */
    size_t nv = 0;
    size_t cap_total = cap_names + 1;

#define DEFINE(nm, kind, idx, label_fmt, ...)                                                  \
    do {                                                                                       \
        int id_ = table_find(&tab, (nm));                                                      \
        if (id_ < 0) {                                                                         \
            vals[nv] = (struct kiln_graph_value){.name = (nm), .def = (kind), .producer = (idx)}; \
            table_insert(&tab, (nm), (int)nv);                                                 \
            nv++;                                                                              \
        } else if (vals[id_].def == KILN_DEF_INPUT && (kind) == KILN_DEF_INIT) {               \
            vals[id_].def = KILN_DEF_INIT; /* initializer as the input's default */            \
            vals[id_].producer = (idx);                                                        \
        } else {                                                                               \
            report(c, true, "value '%s' is defined twice (" label_fmt ")", (nm), __VA_ARGS__); \
        }                                                                                      \
    } while (0)

    for (size_t i = 0; i < g->n_inputs; i++) {
        const char *nm = g->inputs[i].name ? g->inputs[i].name : "";
        if (!nm[0]) {
            report(c, true, "graph '%s' input #%zu has an empty name", g->name ? g->name : "",
                   i);
            continue;
        }
        DEFINE(nm, KILN_DEF_INPUT, (int)i, "again as graph input #%zu", i);
    }
    for (size_t i = 0; i < g->n_inits; i++) {
        const char *nm = g->inits[i].name ? g->inits[i].name : "";
        if (!nm[0]) {
            report(c, true, "initializer #%zu has an empty name", i);
            continue;
        }
        DEFINE(nm, KILN_DEF_INIT, (int)i, "again as initializer #%zu", i);
    }
    for (size_t i = 0; i < g->n_sparse_inits; i++) {
        const char *nm = g->sparse_inits[i].name ? g->sparse_inits[i].name : "";
        if (!nm[0]) continue;
        DEFINE(nm, KILN_DEF_INIT, -1, "again as sparse initializer #%zu", i);
    }
    for (size_t i = 0; i < g->n_nodes; i++) {
        struct kiln_node *n = &g->nodes[i];
        char lb[300];
        for (size_t k = 0; k < n->n_out; k++) {
            const char *nm = n->outputs[k];
            if (!nm[0]) continue;
            DEFINE(nm, KILN_DEF_NODE, (int)i, "again as output %zu of %s", k,
                   kiln_node_label(n, lb, sizeof lb));
        }
    }
#undef DEFINE

    /* Resolve uses. */
    for (size_t i = 0; i < g->n_nodes; i++) {
        struct kiln_node *n = &g->nodes[i];
        n->in_ids = kiln_arena_array(a, n->n_in + 1, sizeof(int));
        n->out_ids = kiln_arena_array(a, n->n_out + 1, sizeof(int));
        if (!n->in_ids || !n->out_ids) return nomem(c);
        for (size_t k = 0; k < n->n_out; k++)
            n->out_ids[k] = n->outputs[k][0] ? table_find(&tab, n->outputs[k]) : -1;
        for (size_t k = 0; k < n->n_in; k++) {
            const char *nm = n->inputs[k];
            n->in_ids[k] = -1;
            if (!nm[0]) continue;
            int id = table_find(&tab, nm);
            if (id < 0) {
                bool outer = outer_defines(g, nm);
                if (!outer) {
                    char lb[300];
                    report(c, true, "%s input %zu '%s' is not defined by any node, initializer or graph input",
                           kiln_node_label(n, lb, sizeof lb), k, nm);
                }
                if (nv >= cap_total) return kiln_err_set(c->err, KILN_E_INTERNAL, "link: name table overflow");
                vals[nv] = (struct kiln_graph_value){
                    .name = nm, .def = outer ? KILN_DEF_OUTER : KILN_DEF_NONE, .producer = -1};
                table_insert(&tab, nm, (int)nv);
                id = (int)nv++;
            }
            n->in_ids[k] = id;
        }
        /* Op version. */
        int64_t opset = g->model ? kiln_model_opset_for(g->model, n->domain) : -1;
        n->since = opset > 0 ? kiln_schema_resolve(n->domain, n->op_type, opset) : 0;
        if (n->since < 0) n->since = 0;
    }
    for (size_t i = 0; i < g->n_outputs; i++) {
        const char *nm = g->outputs[i].name ? g->outputs[i].name : "";
        int id = table_find(&tab, nm);
        if (id < 0) {
            bool outer = nm[0] && outer_defines(g, nm);
            if (!outer)
                report(c, true, "graph output '%s' is not produced by any node, initializer or graph input", nm);
            if (nv >= cap_total) return kiln_err_set(c->err, KILN_E_INTERNAL, "link: name table overflow");
            vals[nv] = (struct kiln_graph_value){
                .name = nm, .def = outer ? KILN_DEF_OUTER : KILN_DEF_NONE, .producer = -1};
            table_insert(&tab, nm, (int)nv);
            nv++;
        }
    }
    g->values = vals;
    g->n_values = nv;

    /* Subgraphs: link them (they see g's values), then record their outer references. */
    for (size_t i = 0; i < g->n_nodes; i++) {
        struct kiln_node *n = &g->nodes[i];
        for (size_t k = 0; k < n->n_attr; k++) {
            struct kiln_attr *at = &n->attrs[k];
            size_t cnt = at->type == KILN_ATTR_GRAPH ? (at->g ? 1 : 0)
                         : at->type == KILN_ATTR_GRAPHS ? at->n : 0;
            for (size_t j = 0; j < cnt; j++) {
                struct kiln_graph *sg = at->type == KILN_ATTR_GRAPH ? at->g : at->graphs[j];
                if (!sg) continue;
                sg->parent = g;
                if (!sg->model) sg->model = g->model;
                KILN_TRY(link_graph(sg, c));
                KILN_TRY(add_implicit(n, sg, &tab, vals, &nv, cap_total, c));
            }
        }
    }
    g->n_values = nv;

    /* Consumers (counted, then filled). */
    for (size_t i = 0; i < g->n_nodes; i++) {
        const struct kiln_node *n = &g->nodes[i];
        for (size_t k = 0; k < n->n_in; k++)
            if (n->in_ids[k] >= 0) vals[n->in_ids[k]].n_consumers++;
        for (size_t k = 0; k < n->n_implicit; k++) vals[n->implicit_ids[k]].n_consumers++;
    }
    for (size_t v = 0; v < nv; v++) {
        vals[v].consumers = kiln_arena_array(a, (size_t)vals[v].n_consumers + 1, sizeof(int));
        if (!vals[v].consumers) return nomem(c);
        vals[v].n_consumers = 0;
    }
    for (size_t i = 0; i < g->n_nodes; i++) {
        const struct kiln_node *n = &g->nodes[i];
        for (size_t k = 0; k < n->n_in; k++)
            if (n->in_ids[k] >= 0) {
                struct kiln_graph_value *gv = &vals[n->in_ids[k]];
                gv->consumers[gv->n_consumers++] = (int)i;
            }
        for (size_t k = 0; k < n->n_implicit; k++) {
            struct kiln_graph_value *gv = &vals[n->implicit_ids[k]];
            gv->consumers[gv->n_consumers++] = (int)i;
        }
    }

    /* Declared types: inputs, then value_info, then outputs. */
    for (size_t i = 0; i < g->n_inputs; i++) {
        int id = g->inputs[i].name ? table_find(&tab, g->inputs[i].name) : -1;
        if (id >= 0) vals[id].info = &g->inputs[i];
    }
    for (size_t i = 0; i < g->n_value_info; i++) {
        int id = g->value_info[i].name ? table_find(&tab, g->value_info[i].name) : -1;
        if (id >= 0 && !vals[id].info) vals[id].info = &g->value_info[i];
    }
    for (size_t i = 0; i < g->n_outputs; i++) {
        int id = g->outputs[i].name ? table_find(&tab, g->outputs[i].name) : -1;
        if (id >= 0 && !vals[id].info) vals[id].info = &g->outputs[i];
    }

    /* Topological order (Kahn, FIFO in file order for stability). */
    int *pending = kiln_arena_array(a, g->n_nodes + 1, sizeof(int));
    int *order = kiln_arena_array(a, g->n_nodes + 1, sizeof(int));
    if (!pending || !order) return nomem(c);
    size_t head = 0, tail = 0;
    g->sorted = true;
    for (size_t i = 0; i < g->n_nodes; i++) {
        const struct kiln_node *n = &g->nodes[i];
        int deps = 0;
        for (size_t k = 0; k < n->n_in + n->n_implicit; k++) {
            int id = k < n->n_in ? n->in_ids[k] : n->implicit_ids[k - n->n_in];
            if (id >= 0 && vals[id].def == KILN_DEF_NODE) {
                deps++;
                if (vals[id].producer >= (int)i) g->sorted = false;
            }
        }
        pending[i] = deps;
        if (deps == 0) order[tail++] = (int)i;
    }
    while (head < tail) {
        const struct kiln_node *n = &g->nodes[order[head++]];
        for (size_t k = 0; k < n->n_out; k++) {
            int id = n->out_ids[k];
            if (id < 0 || vals[id].def != KILN_DEF_NODE || vals[id].producer != (int)(n - g->nodes))
                continue;
            for (int j = 0; j < vals[id].n_consumers; j++)
                if (--pending[vals[id].consumers[j]] == 0) order[tail++] = vals[id].consumers[j];
        }
    }
    g->order = order;
    g->acyclic = tail == g->n_nodes;
    if (!g->acyclic) {
        /* Name the nodes left waiting: they are on, or behind, a cycle. */
        char names[600] = "";
        size_t o = 0, shown = 0, left = 0;
        for (size_t i = 0; i < g->n_nodes; i++) {
            if (pending[i] <= 0) continue;
            left++;
            if (shown < 4 && o < sizeof names) {
                char lb[300];
                o += (size_t)snprintf(names + o, sizeof names - o, "%s%s", shown ? ", " : "",
                                      kiln_node_label(&g->nodes[i], lb, sizeof lb));
                shown++;
            }
        }
        report(c, true, "graph '%s' has a cycle: %zu nodes wait on each other (%s%s)",
               g->name ? g->name : "", left, names, left > shown ? ", ..." : "");
    } else if (!g->sorted) {
        report(c, false, "graph '%s' nodes are not in topological order (kiln sorts them; onnx.checker refuses this)",
               g->name ? g->name : "");
    }
    g->linked = true;
    g->vtypes = NULL; /* ids changed: inferred types are stale */
    g->layout = NULL; /* and so are the layout marks */
    return KILN_OK;
}

kiln_status kiln_graph_link(struct kiln_graph *g, kiln_problem_fn problem, void *user,
                            size_t *n_problems, kiln_err *err)
{
    struct link_ctx c = {.arena = &g->model->arena, .problem = problem, .user = user, .err = err};
    kiln_status st = link_graph(g, &c);
    if (n_problems) *n_problems = c.n_problems;
    return st;
}

/* ------------------------------------------------------------------ model */

struct collect {
    struct kiln_model *m;
    size_t cap;
    bool nomem;
};

static void collect_problem(void *user, const char *msg)
{
    struct collect *cl = user;
    struct kiln_model *m = cl->m;
    if (cl->nomem) return;
    if (m->n_link_problems == cl->cap) {
        size_t cap = cl->cap ? cl->cap * 2 : 8;
        const char **p = kiln_arena_array(&m->arena, cap, sizeof *p);
        if (!p) {
            cl->nomem = true;
            return;
        }
        if (m->n_link_problems) memcpy(p, m->link_problems, m->n_link_problems * sizeof *p);
        m->link_problems = p;
        cl->cap = cap;
    }
    const char *s = kiln_arena_strndup(&m->arena, msg, strlen(msg));
    if (!s) {
        cl->nomem = true;
        return;
    }
    m->link_problems[m->n_link_problems++] = s;
}

kiln_status kiln_model_link(struct kiln_model *m, kiln_err *err)
{
    if (!m->graph) return KILN_OK;
    struct collect cl = {.m = m};
    m->n_link_problems = 0; /* a relink (after a rewrite) starts a fresh list */
    m->link_problems = NULL;
    struct link_ctx c = {.arena = &m->arena, .problem = collect_problem, .user = &cl, .err = err};
    m->graph->model = m;
    kiln_status st = link_graph(m->graph, &c);
    if (st) return st;
    if (cl.nomem) return kiln_err_set(err, KILN_E_NOMEM, "out of memory linking the graph");
    m->n_link_errors = c.n_errors;
    return KILN_OK;
}

bool kiln_graph_is_initializer(const struct kiln_graph *g, const char *name)
{
    if (g->values && name[0]) {
        int id = kiln_graph_find(g, name);
        return id >= 0 && g->values[id].def == KILN_DEF_INIT;
    }
    for (size_t i = 0; i < g->n_inits; i++)
        if (strcmp(g->inits[i].name, name) == 0) return true;
    for (size_t i = 0; i < g->n_sparse_inits; i++)
        if (g->sparse_inits[i].name && strcmp(g->sparse_inits[i].name, name) == 0) return true;
    return false;
}
