/* exec.c: the graph executor and the public session API.
 *
 * A session resolves every node (of the main graph and of all subgraphs) to a CPU kernel
 * once. A run executes a graph in the linker's topological order inside a frame: one slot
 * per graph value. Graph inputs, initializers and outer-scope values are borrowed; node
 * outputs are owned by the frame and freed as soon as their last consumer has run. Graph
 * outputs move to the caller (borrowed ones are cloned).
 */
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "base/bcache.h"
#include "base/pool.h"
#include "cpu/kernel.h"
#include "ops/schema.h"
#include "exec/profile.h"

/* Recycled intermediate memory a session may hold between runs. */
#define KILN_SESSION_CACHE_LIMIT ((size_t)4 << 30)

struct graph_kernels {
    const struct kiln_graph *g;
    const struct kiln_cpu_op **ops; /* per node */
    size_t *prof_ids;               /* per node: its profile entry; NULL when profiling is off */
};

struct kiln_session {
    const struct kiln_model *model;
    size_t n_graphs, cap_graphs;
    struct graph_kernels *graphs;
    int threads;
    struct kiln_pool *pool; /* NULL when threads == 1 */
    struct kiln_bcache *cache; /* intermediate tensors' memory, kept between nodes and runs */
    struct kiln_prof *prof;    /* NULL unless options.profile (exec/profile.c) */
};

struct kiln_exec {
    struct kiln_session *s;
    kiln_err *err;
    int depth;
    const struct kiln_run_options *ro; /* NULL: no timeout, no cancel */
    double deadline;                   /* monotonic seconds; 0 = none */
};

/* kiln.h's run options. `cancelled` is the only field written during a run. */
struct kiln_run_options {
    atomic_int cancelled;
    double timeout_s; /* 0 = none */
};

struct frame {
    const struct kiln_graph *g;
    struct kiln_value **slots; /* per value id */
    bool *owned;
    int *remaining;            /* consumers still to run */
    const struct frame *parent;
};

/* ------------------------------------------------------------------ session creation */

/* prefix and depth name the nodes' profile entries (exec/profile.h). */
static kiln_status resolve_graph(struct kiln_session *s, const struct kiln_graph *g, const char *prefix,
                                 int depth, kiln_err *err)
{
    if (s->n_graphs == s->cap_graphs) {
        size_t cap = s->cap_graphs ? s->cap_graphs * 2 : 8;
        struct graph_kernels *p = kiln_realloc(s->graphs, cap * sizeof *p);
        if (!p) return kiln_err_set(err, KILN_E_NOMEM, "out of memory creating the session");
        s->graphs = p;
        s->cap_graphs = cap;
    }
    /* Index, not pointer: resolving subgraphs below may move s->graphs. */
    size_t gi = s->n_graphs;
    const struct kiln_cpu_op **ops = kiln_calloc(g->n_nodes + 1, sizeof *ops);
    if (!ops) return kiln_err_set(err, KILN_E_NOMEM, "out of memory creating the session");
    s->graphs[gi] = (struct graph_kernels){.g = g, .ops = ops};
    s->n_graphs++;
    if (s->prof && !(s->graphs[gi].prof_ids = kiln_calloc(g->n_nodes + 1, sizeof(size_t))))
        return kiln_err_set(err, KILN_E_NOMEM, "out of memory creating the session");
    for (size_t i = 0; i < g->n_nodes; i++) {
        const struct kiln_node *n = &g->nodes[i];
        char lb[300];
        int version = n->since;
        if (version <= 0) {
            int64_t opset = kiln_model_opset_for(s->model, n->domain);
            if (opset < 0)
                return kiln_err_set(err, KILN_E_INVALID_MODEL,
                                    "%s: domain '%s' is not imported by the model",
                                    kiln_node_label(n, lb, sizeof lb), n->domain);
            version = (int)opset;
        }
        const struct kiln_cpu_op *op = kiln_cpu_find_op(n->domain, n->op_type, version);
        if (!op) {
            if (kiln_cpu_has_op(n->domain, n->op_type))
                return kiln_err_set(err, KILN_E_UNSUPPORTED,
                                    "%s: no CPU kernel for op '%s' version %d (domain '%s')",
                                    kiln_node_label(n, lb, sizeof lb), n->op_type, version,
                                    n->domain);
            return kiln_err_set(err, KILN_E_UNSUPPORTED,
                                "%s: unsupported op '%s' (domain '%s', version %d)",
                                kiln_node_label(n, lb, sizeof lb), n->op_type,
                                n->domain[0] ? n->domain : "ai.onnx", version);
        }
        s->graphs[gi].ops[i] = op;
        const char *name = "";
        if (s->prof) {
            KILN_TRY(kiln_prof_add(s->prof, prefix, depth, n, i, op, &s->graphs[gi].prof_ids[i], err));
            name = kiln_prof_name(s->prof, s->graphs[gi].prof_ids[i]);
        }
        for (size_t k = 0; k < n->n_attr; k++) {
            const struct kiln_attr *a = &n->attrs[k];
            if (a->type == KILN_ATTR_GRAPH && a->g) KILN_TRY(resolve_graph(s, a->g, name, depth + 1, err));
            if (a->type == KILN_ATTR_GRAPHS)
                for (size_t j = 0; j < a->n; j++)
                    if (a->graphs[j]) KILN_TRY(resolve_graph(s, a->graphs[j], name, depth + 1, err));
        }
    }
    return KILN_OK;
}

int kiln_session_threads(const kiln_session *s)
{
    return s ? s->threads : 0;
}

void kiln_session_free(kiln_session *s)
{
    if (!s) return;
    for (size_t i = 0; i < s->n_graphs; i++) {
        kiln_free(s->graphs[i].ops);
        kiln_free(s->graphs[i].prof_ids);
    }
    kiln_prof_free(s->prof);
    kiln_free(s->graphs);
    kiln_pool_free(s->pool);
    kiln_bcache_free(s->cache);
    kiln_free(s);
}

kiln_status kiln_session_create(const kiln_model *m, const kiln_session_options *opt,
                                kiln_session **out, kiln_err *err)
{
    *out = NULL;
    if (!m || !m->graph) return kiln_err_set(err, KILN_E_INVALID_ARG, "session: model has no graph");
    if (m->n_link_errors)
        return kiln_err_set(err, KILN_E_INVALID_MODEL, "%s%s", m->link_problems[0],
                            m->n_link_errors > 1 ? " (and more: run `kiln check`)" : "");
    /* The loader already refuses these; kept here for models changed through the API. */
    for (size_t i = 0; i < m->n_opsets; i++)
        KILN_TRY(kiln_schema_check_import("session: model", m->opsets[i].domain,
                                          m->opsets[i].version, err));
    int threads = opt ? opt->threads : 0;
    if (threads < 0 || threads > 1024)
        return kiln_err_set(err, KILN_E_INVALID_ARG, "session: threads is %d; expected 0 (one per CPU) to 1024",
                            threads);
    if (threads == 0) threads = kiln_cpus_available();
    struct kiln_session *s = kiln_calloc(1, sizeof *s);
    if (!s) return kiln_err_set(err, KILN_E_NOMEM, "out of memory creating the session");
    s->model = m;
    s->threads = threads;
    s->cache = kiln_bcache_create(KILN_SESSION_CACHE_LIMIT);
    kiln_status st = s->cache ? KILN_OK : kiln_err_set(err, KILN_E_NOMEM, "out of memory creating the session");
    if (!st && threads > 1) st = kiln_pool_create(threads, &s->pool, err);
    if (!st && opt && opt->profile && !(s->prof = kiln_prof_create()))
        st = kiln_err_set(err, KILN_E_NOMEM, "out of memory creating the session");
    if (!st) st = resolve_graph(s, m->graph, "", 0, err);
    if (st) {
        kiln_session_free(s);
        return st;
    }
    *out = s;
    return KILN_OK;
}

/* ------------------------------------------------------------------ frames */

static const struct graph_kernels *kernels_of(const struct kiln_session *s, const struct kiln_graph *g)
{
    for (size_t i = 0; i < s->n_graphs; i++)
        if (s->graphs[i].g == g) return &s->graphs[i];
    return NULL;
}

struct kiln_prof *kiln_session_prof(const kiln_session *s); /* for exec/profile.c */
struct kiln_prof *kiln_session_prof(const kiln_session *s)
{
    return s->prof;
}

/* Frees the frame and the values it owns, their tensor memory going to `cache` (may be NULL). */
static void frame_free(struct frame *f, struct kiln_bcache *cache)
{
    if (f->slots && f->owned)
        for (size_t v = 0; v < f->g->n_values; v++)
            if (f->owned[v]) kiln_value_release(f->slots[v], cache);
    kiln_free(f->slots);
    kiln_free(f->owned);
    kiln_free(f->remaining);
}

/* Dense tensor from a sparse initializer (indices linear [NNZ] or coordinates [NNZ,rank]). */
static kiln_status densify(const struct kiln_sparse_tensor *sp, struct kiln_value **out, kiln_err *err)
{
    KILN_TRY(kiln_value_new_tensor(sp->values.dtype, sp->rank, sp->dims, out, err));
    struct kiln_tensor *t = &(*out)->t;
    size_t nnz = kiln_tensor_numel(&sp->values), numel = kiln_tensor_numel(t);
    size_t es = kiln_dtype_size(t->dtype);
    bool coords = sp->indices.rank == 2;
    for (size_t i = 0; i < nnz; i++) {
        int64_t lin = 0;
        if (coords) {
            for (int d = 0; d < sp->rank; d++)
                lin = lin * sp->dims[d] + kiln_tensor_get_i64(&sp->indices, i * (size_t)sp->rank + (size_t)d);
        } else {
            lin = kiln_tensor_get_i64(&sp->indices, i);
        }
        if (lin < 0 || (size_t)lin >= numel || t->dtype == KILN_DTYPE_STRING) {
            kiln_value_free(*out);
            *out = NULL;
            return kiln_err_set(err, KILN_E_INVALID_MODEL,
                                "sparse initializer '%s': index %lld out of range (%zu elements)",
                                sp->name ? sp->name : "", (long long)lin, numel);
        }
        memcpy((char *)t->data + (size_t)lin * es, (const char *)sp->values.data + i * es, es);
    }
    return KILN_OK;
}

static const struct kiln_value *lookup_outer(const struct frame *f, const char *name)
{
    for (const struct frame *p = f->parent; p; p = p->parent) {
        int id = kiln_graph_find(p->g, name);
        if (id >= 0 && p->slots[id]) return p->slots[id];
    }
    return NULL;
}

/* Prepares a frame: borrowed inputs (bound[i] for g->inputs[i], NULL = use initializer),
 * initializers and outer values. */
static kiln_status frame_init(struct frame *f, const struct kiln_graph *g, const struct frame *parent,
                              const struct kiln_value *const *bound, size_t n_bound, kiln_err *err)
{
    memset(f, 0, sizeof *f);
    f->g = g;
    f->parent = parent;
    size_t nv = g->n_values;
    f->slots = kiln_calloc(nv + 1, sizeof *f->slots);
    f->owned = kiln_calloc(nv + 1, sizeof *f->owned);
    f->remaining = kiln_calloc(nv + 1, sizeof *f->remaining);
    if (!f->slots || !f->owned || !f->remaining) {
        frame_free(f, NULL);
        return kiln_err_set(err, KILN_E_NOMEM, "out of memory starting a graph run");
    }
    for (size_t v = 0; v < nv; v++) f->remaining[v] = g->values[v].n_consumers;
    /* Initializers: wrap the borrowed tensors (flags 0: freeing the wrapper keeps the data).
     * The linker recorded each initializer value's index, so this is one pass. */
    for (size_t v = 0; v < nv; v++) {
        const struct kiln_graph_value *gv = &g->values[v];
        if (gv->def != KILN_DEF_INIT || gv->producer < 0) continue;
        struct kiln_value *w = kiln_value_new(KILN_VALUE_TENSOR);
        if (!w) {
            frame_free(f, NULL);
            return kiln_err_set(err, KILN_E_NOMEM, "out of memory starting a graph run");
        }
        w->t = g->inits[gv->producer].t;
        w->t.flags = 0;
        f->slots[v] = w;
        f->owned[v] = true;
    }
    for (size_t i = 0; i < g->n_sparse_inits; i++) {
        int id = g->sparse_inits[i].name ? kiln_graph_find(g, g->sparse_inits[i].name) : -1;
        if (id < 0) continue;
        struct kiln_value *d;
        kiln_status st = densify(&g->sparse_inits[i], &d, err);
        if (st) {
            frame_free(f, NULL);
            return st;
        }
        f->slots[id] = d;
        f->owned[id] = true;
    }
    for (size_t i = 0; i < g->n_inputs && i < n_bound; i++) {
        int id = kiln_graph_find(g, g->inputs[i].name);
        if (id < 0 || !bound[i]) continue;
        if (f->owned[id]) kiln_value_free(f->slots[id]); /* caller overrides the default */
        f->slots[id] = (struct kiln_value *)bound[i];
        f->owned[id] = false;
    }
    for (size_t v = 0; v < nv; v++)
        if (g->values[v].def == KILN_DEF_OUTER) {
            f->slots[v] = (struct kiln_value *)lookup_outer(f, g->values[v].name);
            f->owned[v] = false;
        }
    return KILN_OK;
}

static kiln_status run_frame(struct kiln_exec *ex, struct frame *f);

/* ------------------------------------------------------------------ run options */

kiln_status kiln_run_options_create(kiln_run_options **out, kiln_err *err)
{
    *out = kiln_calloc(1, sizeof **out);
    if (!*out) return kiln_err_set(err, KILN_E_NOMEM, "out of memory creating run options");
    atomic_init(&(*out)->cancelled, 0);
    return KILN_OK;
}

void kiln_run_options_free(kiln_run_options *ro)
{
    kiln_free(ro);
}

kiln_status kiln_run_options_set_timeout(kiln_run_options *ro, double seconds, kiln_err *err)
{
    if (!(seconds >= 0) || isinf(seconds))
        return kiln_err_set(err, KILN_E_INVALID_ARG,
                            "run options: timeout %g s; expected 0 (none) or a finite number of "
                            "seconds", seconds);
    ro->timeout_s = seconds;
    return KILN_OK;
}

void kiln_run_options_cancel(kiln_run_options *ro)
{
    if (ro) atomic_store(&ro->cancelled, 1);
}

void kiln_run_options_reset(kiln_run_options *ro)
{
    if (ro) atomic_store(&ro->cancelled, 0);
}

int kiln_run_options_cancelled(const kiln_run_options *ro)
{
    /* C11's atomic_load takes a non-const pointer; reading does not modify. */
    return ro ? atomic_load((atomic_int *)&ro->cancelled) : 0;
}

static double monotonic_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The run's cancel flag and deadline, before node n (iteration < 0) or before iteration
 * `iteration` of n's subgraph. */
static kiln_status exec_check(const struct kiln_exec *ex, const struct kiln_node *n,
                              int64_t iteration, kiln_err *err)
{
    if (!ex || !ex->ro) return KILN_OK;
    bool cancelled = kiln_run_options_cancelled(ex->ro);
    if (!cancelled && (ex->deadline <= 0 || monotonic_s() < ex->deadline)) return KILN_OK;
    char where[600] = "";
    if (n && iteration >= 0)
        snprintf(where, sizeof where, " at %s node '%s' iteration %lld", n->op_type,
                 n->name ? n->name : "", (long long)iteration);
    else if (n)
        snprintf(where, sizeof where, " at %s node '%s'", n->op_type, n->name ? n->name : "");
    if (cancelled) return kiln_err_set(err, KILN_E_CANCELLED, "run cancelled%s", where);
    return kiln_err_set(err, KILN_E_LIMIT, "run exceeded its timeout of %g s%s", ex->ro->timeout_s,
                        where);
}

kiln_status kiln_kctx_check_cancel(struct kiln_kctx *k, int64_t iteration)
{
    return exec_check(k->exec, k->node, iteration, k->err);
}

kiln_status kiln_run_subgraph(struct kiln_kctx *k, const struct kiln_graph *g, size_t n_in,
                              struct kiln_value *const *inputs, struct kiln_value **outputs)
{
    struct kiln_exec *ex = k->exec;
    struct frame *parent = (struct frame *)k->frame;
    if (ex->depth > 64)
        return kiln_kfail(k, KILN_E_LIMIT, "subgraphs nest deeper than 64 levels");
    if (n_in != g->n_inputs)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "subgraph '%s' declares %zu inputs; %zu given",
                          g->name ? g->name : "", g->n_inputs, n_in);
    struct frame f;
    KILN_TRY(frame_init(&f, g, parent, (const struct kiln_value *const *)inputs, n_in, k->err));
    ex->depth++;
    kiln_status st = run_frame(ex, &f);
    ex->depth--;
    for (size_t i = 0; i < g->n_outputs; i++) outputs[i] = NULL;
    for (size_t i = 0; st == KILN_OK && i < g->n_outputs; i++) {
        int id = kiln_graph_find(g, g->outputs[i].name);
        struct kiln_value *v = id >= 0 ? f.slots[id] : NULL;
        if (!v) {
            st = kiln_kfail(k, KILN_E_INVALID_MODEL, "subgraph '%s' did not produce output '%s'",
                            g->name ? g->name : "", g->outputs[i].name);
            break;
        }
        if (f.owned[id]) {
            /* Move; a value listed twice as output is cloned the second time. */
            outputs[i] = v;
            f.slots[id] = NULL;
            f.owned[id] = false;
            for (size_t j = i + 1; j < g->n_outputs; j++)
                if (strcmp(g->outputs[j].name, g->outputs[i].name) == 0) {
                    st = kiln_value_clone(v, &outputs[j], k->err);
                    if (st) break;
                }
        } else if (!outputs[i]) {
            st = kiln_value_clone(v, &outputs[i], k->err);
        }
    }
    if (st)
        for (size_t i = 0; i < g->n_outputs; i++) {
            kiln_value_free(outputs[i]);
            outputs[i] = NULL;
        }
    frame_free(&f, k->cache);
    return st;
}

static kiln_status run_frame(struct kiln_exec *ex, struct frame *f)
{
    const struct kiln_graph *g = f->g;
    const struct graph_kernels *gk = kernels_of(ex->s, g);
    if (!gk) return kiln_err_set(ex->err, KILN_E_INTERNAL, "graph '%s' has no resolved kernels", g->name);
    struct kiln_value *in_small[16], *out_small[16];
    for (size_t oi = 0; oi < g->n_nodes; oi++) {
        const struct kiln_node *n = &g->nodes[g->order[oi]];
        KILN_TRY(exec_check(ex, n, -1, ex->err));
        struct kiln_value **in = in_small, **out = out_small;
        if (n->n_in > 16 || n->n_out > 16) {
            in = kiln_calloc(n->n_in + 1, sizeof *in);
            out = kiln_calloc(n->n_out + 1, sizeof *out);
            if (!in || !out) {
                if (in != in_small) kiln_free(in);
                if (out != out_small) kiln_free(out);
                return kiln_err_set(ex->err, KILN_E_NOMEM, "out of memory running the graph");
            }
        }
        for (size_t k = 0; k < n->n_in; k++) in[k] = n->in_ids[k] >= 0 ? f->slots[n->in_ids[k]] : NULL;
        for (size_t k = 0; k < n->n_out; k++) out[k] = NULL;
        struct kiln_kctx k = {
            .node = n, .n_in = n->n_in, .n_out = n->n_out, .in = in, .out = out,
            .err = ex->err, .exec = ex, .frame = f, .pool = ex->s->pool,
            .cache = ex->s->cache,
        };
        k.opset = n->since > 0 ? n->since : (int)kiln_model_opset_for(g->model, n->domain);
        const struct kiln_cpu_op *op = gk->ops[g->order[oi]];
        kiln_status st = gk->prof_ids ? kiln_prof_run(ex->s->prof, gk->prof_ids[g->order[oi]], op, &k)
                                      : op->run(&k);
        kiln_kctx_free_scratch(&k);
        for (size_t j = 0; j < n->n_out; j++) {
            int id = n->out_ids[j];
            if (st == KILN_OK && id >= 0 && g->values[id].producer == g->order[oi] && !f->slots[id]) {
                f->slots[id] = out[j];
                f->owned[id] = true;
            } else {
                kiln_value_release(out[j], ex->s->cache);
            }
        }
        if (in != in_small) kiln_free(in);
        if (out != out_small) kiln_free(out);
        if (st) return st;
        /* Free values whose last consumer this was (graph outputs are kept). */
        for (size_t j = 0; j < n->n_in + n->n_implicit; j++) {
            int id = j < n->n_in ? n->in_ids[j] : n->implicit_ids[j - n->n_in];
            if (id < 0 || --f->remaining[id] > 0 || !f->owned[id]) continue;
            if (g->values[id].def != KILN_DEF_NODE) continue;
            bool is_output = false;
            for (size_t o = 0; o < g->n_outputs && !is_output; o++)
                is_output = strcmp(g->outputs[o].name, g->values[id].name) == 0;
            if (is_output) continue;
            kiln_value_release(f->slots[id], ex->s->cache);
            f->slots[id] = NULL;
            f->owned[id] = false;
        }
    }
    return KILN_OK;
}

/* ------------------------------------------------------------------ input validation */

static kiln_status check_input(const struct kiln_value_info *vi, const struct kiln_value *v, kiln_err *err)
{
    const struct kiln_type *t = &vi->type;
    char want[256], got[256];
    if (t->kind == KILN_TYPE_NONE) return KILN_OK;
    kiln_value_kind want_kind = t->kind == KILN_TYPE_TENSOR ? KILN_VALUE_TENSOR
                                : t->kind == KILN_TYPE_SEQUENCE ? KILN_VALUE_SEQUENCE
                                : t->kind == KILN_TYPE_OPTIONAL ? KILN_VALUE_OPTIONAL : 0;
    if (want_kind && v->kind != want_kind) {
        kiln_type_str(t, want, sizeof want);
        return kiln_err_set(err, KILN_E_INVALID_ARG, "input '%s': expected %s, got a %s", vi->name,
                            want, v->kind == KILN_VALUE_TENSOR ? "tensor"
                                  : v->kind == KILN_VALUE_SEQUENCE ? "sequence" : "optional");
    }
    if (t->kind != KILN_TYPE_TENSOR) return KILN_OK;
    if (t->elem && v->t.dtype != t->elem)
        return kiln_err_set(err, KILN_E_INVALID_ARG, "input '%s': expected element type %s, got %s",
                            vi->name, kiln_dtype_name(t->elem), kiln_dtype_name(v->t.dtype));
    if (t->rank < 0) return KILN_OK;
    bool bad = t->rank != v->t.rank;
    int bad_dim = -1;
    for (int d = 0; !bad && d < t->rank; d++)
        if (t->dims[d].value >= 0 && t->dims[d].value != v->t.dims[d]) bad = true, bad_dim = d;
    if (!bad) return KILN_OK;
    kiln_type_str(t, want, sizeof want);
    kiln_shape_str(v->t.rank, v->t.dims, got, sizeof got);
    if (bad_dim >= 0)
        return kiln_err_set(err, KILN_E_INVALID_ARG,
                            "input '%s': expected shape %s, got %s (dim %d is %lld, expected %lld)",
                            vi->name, want, got, bad_dim, (long long)v->t.dims[bad_dim],
                            (long long)t->dims[bad_dim].value);
    return kiln_err_set(err, KILN_E_INVALID_ARG, "input '%s': expected shape %s (rank %d), got %s (rank %d)",
                        vi->name, want, t->rank, got, v->t.rank);
}

kiln_status kiln_session_run(kiln_session *s, size_t n_in, const char *const *names,
                             const kiln_value *const *inputs, size_t n_out, kiln_value **outputs,
                             kiln_err *err)
{
    return kiln_session_run_with_options(s, NULL, n_in, names, inputs, n_out, outputs, err);
}

kiln_status kiln_session_run_with_options(kiln_session *s, const kiln_run_options *ro, size_t n_in,
                                          const char *const *names, const kiln_value *const *inputs,
                                          size_t n_out, kiln_value **outputs, kiln_err *err)
{
    double deadline = ro && ro->timeout_s > 0 ? monotonic_s() + ro->timeout_s : 0;
    const struct kiln_graph *g = s->model->graph;
    if (n_out != g->n_outputs)
        return kiln_err_set(err, KILN_E_INVALID_ARG, "run: %zu output slots given; the model has %zu outputs",
                            n_out, g->n_outputs);
    for (size_t i = 0; i < n_out; i++) outputs[i] = NULL;
    const struct kiln_value **bound = kiln_calloc(g->n_inputs + 1, sizeof *bound);
    if (!bound) return kiln_err_set(err, KILN_E_NOMEM, "out of memory binding inputs");
    kiln_status st = KILN_OK;
    /* Bind: by name, or by position over the non-initializer inputs. */
    size_t pos = 0;
    for (size_t i = 0; i < n_in && !st; i++) {
        if (!inputs[i]) {
            st = kiln_err_set(err, KILN_E_INVALID_ARG, "run: input %zu is NULL", i);
            break;
        }
        size_t slot = g->n_inputs;
        if (names && names[i]) {
            for (size_t j = 0; j < g->n_inputs; j++)
                if (strcmp(g->inputs[j].name, names[i]) == 0) slot = j;
            if (slot == g->n_inputs)
                st = kiln_err_set(err, KILN_E_INVALID_ARG, "run: the model has no input named '%s'", names[i]);
        } else {
            while (pos < g->n_inputs && kiln_graph_is_initializer(g, g->inputs[pos].name)) pos++;
            slot = pos++;
            if (slot >= g->n_inputs)
                st = kiln_err_set(err, KILN_E_INVALID_ARG, "run: %zu inputs given; the model takes fewer", n_in);
        }
        if (st) break;
        if (bound[slot]) {
            st = kiln_err_set(err, KILN_E_INVALID_ARG, "run: input '%s' is bound twice", g->inputs[slot].name);
            break;
        }
        st = check_input(&g->inputs[slot], inputs[i], err);
        bound[slot] = inputs[i];
    }
    for (size_t j = 0; j < g->n_inputs && !st; j++)
        if (!bound[j] && !kiln_graph_is_initializer(g, g->inputs[j].name))
            st = kiln_err_set(err, KILN_E_INVALID_ARG, "run: input '%s' is missing", g->inputs[j].name);
    struct frame f = {0};
    if (!st) st = frame_init(&f, g, NULL, bound, g->n_inputs, err);
    if (!st) {
        struct kiln_exec ex = {.s = s, .err = err, .ro = ro, .deadline = deadline};
        st = run_frame(&ex, &f);
        for (size_t i = 0; !st && i < n_out; i++) {
            int id = kiln_graph_find(g, g->outputs[i].name);
            struct kiln_value *v = id >= 0 ? f.slots[id] : NULL;
            if (!v) {
                st = kiln_err_set(err, KILN_E_INTERNAL, "run: output '%s' was not produced", g->outputs[i].name);
                break;
            }
            if (f.owned[id] && g->values[id].def == KILN_DEF_NODE) {
                outputs[i] = v;
                f.slots[id] = NULL;
                f.owned[id] = false;
                /* the same value listed again as a later output gets a copy */
                for (size_t j = i + 1; j < n_out && !st; j++)
                    if (strcmp(g->outputs[j].name, g->outputs[i].name) == 0)
                        st = kiln_value_clone(v, &outputs[j], err);
            } else if (!outputs[i]) {
                st = kiln_value_clone(v, &outputs[i], err);
            }
        }
        frame_free(&f, s->cache);
    }
    kiln_free(bound);
    if (st)
        for (size_t i = 0; i < n_out; i++) {
            kiln_value_free(outputs[i]);
            outputs[i] = NULL;
        }
    return st;
}

/* ------------------------------------------------------------------ one node (eval.h) */

static int node_version(const struct kiln_model *m, const struct kiln_node *n)
{
    return n->since > 0 ? n->since : (int)kiln_model_opset_for(m, n->domain);
}

static bool is_random_op(const struct kiln_node *n)
{
    static const char *const random_ops[] = {"RandomNormal", "RandomNormalLike", "RandomUniform",
                                             "RandomUniformLike", "Multinomial", "Bernoulli",
                                             "Dropout", NULL};
    if (n->domain[0]) return false;
    for (size_t i = 0; random_ops[i]; i++)
        if (strcmp(n->op_type, random_ops[i]) == 0) return true;
    return false;
}

bool kiln_eval_can(const struct kiln_model *m, const struct kiln_node *n)
{
    if (is_random_op(n)) return false;
    for (size_t k = 0; k < n->n_attr; k++)
        if (n->attrs[k].type == KILN_ATTR_GRAPH || n->attrs[k].type == KILN_ATTR_GRAPHS) return false;
    return kiln_cpu_find_op(n->domain, n->op_type, node_version(m, n)) != NULL;
}

kiln_status kiln_eval_node(const struct kiln_model *m, const struct kiln_node *n,
                           const struct kiln_value *const *in, struct kiln_value **out, kiln_err *err)
{
    char lb[300];
    for (size_t j = 0; j < n->n_out; j++) out[j] = NULL;
    if (!kiln_eval_can(m, n))
        return kiln_err_set(err, KILN_E_UNSUPPORTED, "%s: cannot be evaluated ahead of time",
                            kiln_node_label(n, lb, sizeof lb));
    const struct kiln_cpu_op *op = kiln_cpu_find_op(n->domain, n->op_type, node_version(m, n));
    struct kiln_kctx k = {
        .node = n, .opset = node_version(m, n), .n_in = n->n_in, .n_out = n->n_out,
        .in = (struct kiln_value *const *)in, .out = out, .err = err,
    };
    kiln_status st = op->run(&k);
    kiln_kctx_free_scratch(&k);
    if (st)
        for (size_t j = 0; j < n->n_out; j++) {
            kiln_value_free(out[j]);
            out[j] = NULL;
        }
    return st;
}
