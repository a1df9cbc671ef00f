/* exec.c: the runtime: engines (kernels resolved and prepared once) and execution contexts
 * (one planned arena each) running a graph.
 *
 * kiln_engine_prepare resolves every node of every graph to a kernel of a backend and runs
 * the kernel's prepare once (cpu/kernel.h). A run executes the main graph in the linker's
 * topological order inside a frame: one slot per graph value. Graph inputs, initializers and
 * outer-scope values are borrowed; planned intermediates sit in the context's arena
 * (exec/plan.h) with value wrappers from the context's store, so running a planned graph
 * allocates nothing; unplanned tensors (graph outputs, data-dependent sizes, subgraphs)
 * come from the heap through the context's block cache and are freed after their last
 * consumer. Graph outputs move to the caller (borrowed ones are cloned). Subgraphs (If, Loop,
 * Scan) run in child frames through kiln_run_subgraph, which kernels reach through their
 * kiln_kctx.
 */
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "base/bcache.h"
#include "base/pool.h"
#include "exec/engine.h"
#include "exec/eval.h"
#include "exec/profile.h"
#include "infer/infer.h"
#include "ops/schema.h"

/* Recycled heap tensor memory a context may hold between runs. */
#define KILN_CONTEXT_CACHE_LIMIT ((size_t)4 << 30)

struct kiln_exec {
    struct kiln_context *c;
    const struct kiln_engine *e;
    kiln_err *err;
    int depth;
    const struct kiln_run_options *ro; /* NULL: no timeout, no cancel */
    double deadline;                   /* monotonic seconds; 0 = none */
};

struct frame {
    const struct kiln_graph *g;
    const struct kiln_egraph *eg;
    struct kiln_value **slots; /* per value id */
    bool *owned;
    int *remaining;            /* consumers still to run */
    const struct frame *parent;
    /* Planned (main graph of a context with a plan): */
    const struct kiln_plan *plan;
    uint8_t *arena;
    struct kiln_value *vstore; /* wrappers of planned values, per value id */
};

/* ------------------------------------------------------------------ engines */

static int node_version(const struct kiln_model *m, const struct kiln_node *n)
{
    return n->since > 0 ? n->since : (int)kiln_model_opset_for(m, n->domain);
}

void kiln_engine_retain(struct kiln_engine *e)
{
    atomic_fetch_add(&e->refs, 1);
}

static void engine_free(struct kiln_engine *e)
{
    for (size_t i = 0; i < e->store.n_blobs; i++)
        if (e->store.blobs[i].owned) kiln_aligned_free(e->store.blobs[i].data);
    kiln_free(e->store.blobs);
    kiln_aligned_free(e->blob_copy);
    kiln_free(e->graphs);
    if (e->owns_model) kiln_model_free(e->model);
    kiln_unmap(&e->file);
    kiln_arena_free(&e->arena);
    kiln_free(e);
}

void kiln_engine_release(struct kiln_engine *e)
{
    if (e && atomic_fetch_sub(&e->refs, 1) == 1) engine_free(e);
}

/* The configured device's kernel for n, else the first backend's that has one (the CPU is
 * last); the build log lists the nodes that fell back. */
static kiln_status find_kernel(const struct kiln_engine *e, const struct kiln_node *n, int version,
                               const struct kiln_backend **be_out, const struct kiln_cpu_op **op_out,
                               kiln_err *err)
{
    char lb[300];
    kiln_dtype dt = KILN_DTYPE_UNDEFINED;
    const struct kiln_backend *const *list = kiln_backend_list();
    const struct kiln_backend *dev = e->device ? e->device : &kiln_cpu_backend;
    const struct kiln_cpu_op *op = dev->find_op(n->domain, n->op_type, version, dt);
    if (op) {
        *be_out = dev;
        *op_out = op;
        return KILN_OK;
    }
    for (size_t b = 0; list[b]; b++) {
        if (list[b] == dev || !(op = list[b]->find_op(n->domain, n->op_type, version, dt))) continue;
        *be_out = list[b];
        *op_out = op;
        return KILN_OK;
    }
    if (kiln_cpu_has_op(n->domain, n->op_type))
        return kiln_err_set(err, KILN_E_UNSUPPORTED, "%s: no CPU kernel for op '%s' version %d (domain '%s')",
                            kiln_node_label(n, lb, sizeof lb), n->op_type, version, n->domain);
    return kiln_err_set(err, KILN_E_UNSUPPORTED, "%s: unsupported op '%s' (domain '%s', version %d)",
                        kiln_node_label(n, lb, sizeof lb), n->op_type,
                        n->domain[0] ? n->domain : "ai.onnx", version);
}

/* Runs op's prepare for node n of g (vtypes from inference when g has them). */
static kiln_status prepare_node(struct kiln_engine *e, const struct kiln_graph *g, const struct kiln_node *n,
                                int version, struct kiln_enode *en, kiln_err *err)
{
    en->state = NULL;
    en->kernel = NULL;
    if (!en->op->prepare) {
        en->variant = 0;
        return KILN_OK;
    }
    const struct kiln_vtype *small_in[16], *small_out[16];
    const struct kiln_vtype **in = small_in, **out = small_out;
    if (n->n_in > 16) in = kiln_calloc(n->n_in, sizeof *in);
    if (n->n_out > 16) out = kiln_calloc(n->n_out, sizeof *out);
    kiln_status st = KILN_OK;
    if (!in || !out) {
        st = kiln_err_set(err, KILN_E_NOMEM, "out of memory preparing the engine");
        goto done;
    }
    for (size_t i = 0; i < n->n_in; i++) {
        const struct kiln_vtype *t = n->in_ids[i] >= 0 ? kiln_infer_value(g, n->in_ids[i]) : NULL;
        in[i] = t && t->type.kind != KILN_TYPE_NONE ? t : NULL;
    }
    for (size_t i = 0; i < n->n_out; i++) {
        const struct kiln_vtype *t = n->out_ids[i] >= 0 ? kiln_infer_value(g, n->out_ids[i]) : NULL;
        out[i] = t && t->type.kind != KILN_TYPE_NONE ? t : NULL;
    }
    struct kiln_kprep p = {
        .kc = {.node = n, .opset = version, .n_in = n->n_in, .n_out = n->n_out, .err = err},
        .in = in, .out = out, .threads = e->threads, .variant = en->variant, .tune = e->tune,
        .store = &e->store,
    };
    st = en->op->prepare(&p);
    if (!st) {
        en->state = p.state;
        en->kernel = p.kernel;
        en->variant = p.chosen;
        if (p.scratch_bytes > e->scratch_bytes) e->scratch_bytes = p.scratch_bytes;
        e->cpu_features |= p.cpu_features;
    }
done:
    if (in && in != small_in) kiln_free(in);
    if (out && out != small_out) kiln_free(out);
    return st;
}

static kiln_status prepare_graph(struct kiln_engine *e, const struct kiln_graph *g, size_t *cap, kiln_err *err)
{
    if (e->n_graphs == *cap) {
        size_t nc = *cap ? *cap * 2 : 8;
        struct kiln_egraph *p = kiln_realloc(e->graphs, nc * sizeof *p);
        if (!p) return kiln_err_set(err, KILN_E_NOMEM, "out of memory preparing the engine");
        e->graphs = p;
        *cap = nc;
    }
    size_t gi = e->n_graphs;
    struct kiln_enode *nodes = kiln_arena_array(&e->arena, g->n_nodes + 1, sizeof *nodes);
    if (!nodes) return kiln_err_set(err, KILN_E_NOMEM, "out of memory preparing the engine");
    memset(nodes, 0, (g->n_nodes + 1) * sizeof *nodes);
    e->graphs[gi] = (struct kiln_egraph){.g = g, .nodes = nodes};
    e->n_graphs++;
    for (size_t i = 0; i < g->n_nodes; i++) {
        const struct kiln_node *n = &g->nodes[i];
        char lb[300];
        int version = n->since;
        if (version <= 0) {
            int64_t opset = kiln_model_opset_for(e->model, n->domain);
            if (opset < 0)
                return kiln_err_set(err, KILN_E_INVALID_MODEL, "%s: domain '%s' is not imported by the model",
                                    kiln_node_label(n, lb, sizeof lb), n->domain);
            version = (int)opset;
        }
        struct kiln_enode *en = &nodes[i];
        KILN_TRY(find_kernel(e, n, version, &en->be, &en->op, err));
        en->variant = -1;
        if (e->load_variants) {
            if (e->next_variant >= e->n_load_variants)
                return kiln_err_set(err, KILN_E_INVALID_MODEL, "engine: the kernel table has fewer nodes than the graph");
            en->variant = e->load_variants[e->next_variant++];
        }
        e->store.graph = (uint32_t)gi;
        e->store.node = (uint32_t)i;
        KILN_TRY(prepare_node(e, g, n, version, en, err));
        en->prof_id = e->n_nodes_all++; /* profile entries follow this order (prof_graph) */
        for (size_t k = 0; k < n->n_attr; k++) {
            const struct kiln_attr *a = &n->attrs[k];
            if (a->type == KILN_ATTR_GRAPH && a->g) KILN_TRY(prepare_graph(e, a->g, cap, err));
            if (a->type == KILN_ATTR_GRAPHS)
                for (size_t j = 0; j < a->n; j++)
                    if (a->graphs[j]) KILN_TRY(prepare_graph(e, a->graphs[j], cap, err));
        }
    }
    return KILN_OK;
}

kiln_status kiln_engine_prepare(struct kiln_engine *e, kiln_err *err)
{
    size_t cap = 0;
    e->n_graphs = 0;
    e->next_variant = 0;
    e->n_nodes_all = 0;
    kiln_status st = prepare_graph(e, e->model->graph, &cap, err);
    if (!st) st = kiln_plan_info_init(&e->pinfo, &e->arena, &e->graphs[0], err);
    return st;
}

static const struct kiln_egraph *egraph_of(const struct kiln_engine *e, const struct kiln_graph *g)
{
    for (size_t i = 0; i < e->n_graphs; i++)
        if (e->graphs[i].g == g) return &e->graphs[i];
    return NULL;
}

/* ------------------------------------------------------------------ frames */

static bool in_store(const struct frame *f, const struct kiln_value *v)
{
    return f->vstore && v >= f->vstore && v < f->vstore + f->g->n_values;
}

/* Frees v unless it is one of the context's planned wrappers (whose memory is the arena's). */
static void slot_release(const struct frame *f, struct kiln_value *v, struct kiln_bcache *cache)
{
    if (!v) return;
    if (in_store(f, v)) {
        memset(v, 0, sizeof *v);
        return;
    }
    kiln_value_release(v, cache);
}

/* Frees the frame and the values it owns, their tensor memory going to `cache` (may be NULL). */
static void frame_free(struct frame *f, struct kiln_bcache *cache)
{
    if (f->slots && f->owned)
        for (size_t v = 0; v < f->g->n_values; v++)
            if (f->owned[v]) slot_release(f, f->slots[v], cache);
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
static kiln_status frame_init(struct frame *f, const struct kiln_graph *g, const struct kiln_egraph *eg,
                              const struct frame *parent, const struct kiln_value *const *bound,
                              size_t n_bound, kiln_err *err)
{
    memset(f, 0, sizeof *f);
    f->g = g;
    f->eg = eg;
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
    if (!ex) return kiln_kfail(k, KILN_E_INTERNAL, "subgraphs run only inside an engine");
    int max_depth = ex->e->limits.max_depth > 0 ? ex->e->limits.max_depth : KILN_DEFAULT_MAX_DEPTH;
    if (ex->depth >= max_depth)
        return kiln_kfail(k, KILN_E_LIMIT, "subgraphs nest deeper than %d levels (the session's limit)",
                          max_depth);
    if (n_in != g->n_inputs)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "subgraph '%s' declares %zu inputs; %zu given",
                          g->name ? g->name : "", g->n_inputs, n_in);
    const struct kiln_egraph *eg = egraph_of(ex->e, g);
    if (!eg) return kiln_kfail(k, KILN_E_INTERNAL, "subgraph '%s' has no prepared kernels", g->name);
    struct frame f;
    KILN_TRY(frame_init(&f, g, eg, parent, (const struct kiln_value *const *)inputs, n_in, k->err));
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

/* Node n's planned outputs: arena place, capacity, alias and wrapper per output. An output
 * planned larger than the largest tensor allowed gets none: it takes the heap path, where
 * kiln_out_tensor refuses it with the limit's message (its planned size is its size). */
static void plan_outputs(const struct frame *f, const struct kiln_node *n, uint64_t max_tensor_bytes, void **mem,
                         size_t *cap, int *alias, struct kiln_value **vals)
{
    const struct kiln_plan *p = f->plan;
    for (size_t j = 0; j < n->n_out; j++) {
        int id = n->out_ids[j];
        mem[j] = NULL;
        cap[j] = 0;
        alias[j] = -1;
        vals[j] = NULL;
        if (id < 0 || !p->cap[id] || (max_tensor_bytes && p->cap[id] > max_tensor_bytes)) continue;
        mem[j] = f->arena + p->off[id];
        cap[j] = p->cap[id];
        alias[j] = p->alias[id];
        vals[j] = &f->vstore[id];
    }
}

static kiln_status run_frame(struct kiln_exec *ex, struct frame *f)
{
    const struct kiln_graph *g = f->g;
    const struct kiln_egraph *eg = f->eg;
    struct kiln_context *c = ex->c;
    struct kiln_value *in_small[16], *out_small[16], *vals_small[16];
    void *mem_small[16];
    size_t cap_small[16];
    int alias_small[16];
    for (size_t oi = 0; oi < g->n_nodes; oi++) {
        const struct kiln_node *n = &g->nodes[g->order[oi]];
        const struct kiln_enode *en = &eg->nodes[g->order[oi]];
        KILN_TRY(exec_check(ex, n, -1, ex->err));
        struct kiln_value **in = in_small, **out = out_small, **vals = vals_small;
        void **mem = mem_small;
        size_t *cap = cap_small;
        int *alias = alias_small;
        bool big = n->n_in > 16 || n->n_out > 16;
        if (big) {
            in = kiln_calloc(n->n_in + 1, sizeof *in);
            out = kiln_calloc(n->n_out + 1, sizeof *out);
            vals = kiln_calloc(n->n_out + 1, sizeof *vals);
            mem = kiln_calloc(n->n_out + 1, sizeof *mem);
            cap = kiln_calloc(n->n_out + 1, sizeof *cap);
            alias = kiln_calloc(n->n_out + 1, sizeof *alias);
            if (!in || !out || !vals || !mem || !cap || !alias) {
                kiln_free(in), kiln_free(out), kiln_free(vals);
                kiln_free(mem), kiln_free(cap), kiln_free(alias);
                return kiln_err_set(ex->err, KILN_E_NOMEM, "out of memory running the graph");
            }
        }
        for (size_t k = 0; k < n->n_in; k++) in[k] = n->in_ids[k] >= 0 ? f->slots[n->in_ids[k]] : NULL;
        for (size_t k = 0; k < n->n_out; k++) out[k] = NULL;
        struct kiln_kctx k = {
            .node = n, .n_in = n->n_in, .n_out = n->n_out, .in = in, .out = out,
            .err = ex->err, .exec = ex, .frame = f, .pool = c->pool, .cache = c->cache,
            .state = en->state, .scratch_arena = &c->scratch, .limits = &ex->e->limits,
        };
        if (f->plan) {
            plan_outputs(f, n, ex->e->limits.max_tensor_bytes, mem, cap, alias, vals);
            k.out_mem = mem;
            k.out_cap = cap;
            k.out_alias = (en->op->flags & KILN_OP_INPLACE) ? alias : NULL;
            k.out_vals = vals;
        }
        k.opset = node_version(g->model, n);
        kiln_status st = c->prof ? kiln_prof_run(c->prof, en->prof_id, en->op, &k) : en->op->run(&k);
        kiln_kctx_free_scratch(&k);
        for (size_t j = 0; j < n->n_out; j++) {
            int id = n->out_ids[j];
            if (st == KILN_OK && id >= 0 && g->values[id].producer == g->order[oi] && !f->slots[id]) {
                f->slots[id] = out[j];
                f->owned[id] = true;
            } else {
                slot_release(f, out[j], c->cache);
            }
        }
        if (big) {
            kiln_free(in), kiln_free(out), kiln_free(vals);
            kiln_free(mem), kiln_free(cap), kiln_free(alias);
        }
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
            slot_release(f, f->slots[id], c->cache);
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

/* Makes c's plan fit the symbol values of this run's inputs; false: run unplanned. */
static kiln_status context_plan(struct kiln_context *c, const struct kiln_value *const *bound, bool *planned,
                                kiln_err *err)
{
    const struct kiln_engine *e = c->e;
    const struct kiln_plan_info *pi = &e->pinfo;
    *planned = false;
    int64_t small[32], *syms = small;
    if (pi->n_syms > 32 && !(syms = kiln_calloc(pi->n_syms, sizeof *syms)))
        return kiln_err_set(err, KILN_E_NOMEM, "out of memory planning the run");
    kiln_status st = KILN_OK;
    if (!kiln_plan_bind(pi, e->model->graph, bound, syms)) goto done;
    bool same = c->plan_valid;
    for (size_t i = 0; same && i < pi->n_syms; i++) same = c->bound[i] == syms[i];
    if (!same) {
        struct kiln_plan np;
        st = kiln_plan_make(pi, syms, &np, err);
        if (st) goto done;
        if (e->limits.max_memory_bytes && np.arena_bytes > e->limits.max_memory_bytes) {
            st = kiln_err_set(err, KILN_E_LIMIT,
                              "run: the planned intermediates need %zu bytes; the session's memory "
                              "limit is %llu bytes", np.arena_bytes,
                              (unsigned long long)e->limits.max_memory_bytes);
            kiln_plan_free(&np);
            goto done;
        }
        if (np.arena_bytes > c->arena_size) {
            uint8_t *a = kiln_aligned_alloc(4096, np.arena_bytes);
            if (!a) {
                kiln_plan_free(&np);
                st = kiln_err_set(err, KILN_E_NOMEM, "out of memory for the context's arena (%zu bytes)",
                                  np.arena_bytes);
                goto done;
            }
            kiln_aligned_free(c->arena);
            c->arena = a;
            c->arena_size = np.arena_bytes;
        }
        kiln_plan_free(&c->plan);
        c->plan = np;
        c->plan_valid = true;
        for (size_t i = 0; i < pi->n_syms; i++) c->bound[i] = syms[i];
    }
    *planned = c->plan.n_planned > 0;
done:
    if (syms != small) kiln_free(syms);
    return st;
}

/* Grows the scratch arena to what the last run asked for. */
static kiln_status context_scratch(struct kiln_context *c, kiln_err *err)
{
    struct kiln_scratch_arena *sa = &c->scratch;
    sa->used = 0;
    if (sa->want <= sa->size) return KILN_OK;
    uint8_t *b = kiln_aligned_alloc(64, sa->want);
    if (!b) return kiln_err_set(err, KILN_E_NOMEM, "out of memory for %zu bytes of scratch", sa->want);
    kiln_aligned_free(sa->base);
    sa->base = b;
    sa->size = sa->want;
    return KILN_OK;
}

kiln_status kiln_context_run_graph(struct kiln_context *c, const struct kiln_run_options *ro, size_t n_in,
                                   const char *const *names, const struct kiln_value *const *inputs,
                                   size_t n_out, struct kiln_value **outputs, kiln_err *err)
{
    double deadline = ro && ro->timeout_s > 0 ? monotonic_s() + ro->timeout_s : 0;
    const struct kiln_engine *e = c->e;
    const struct kiln_graph *g = e->model->graph;
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
    if (!st) st = kiln_engine_check_profiles(e, bound, &c->profile, err);
    bool planned = false;
    if (!st) st = context_plan(c, bound, &planned, err);
    if (!st) st = context_scratch(c, err);
    struct frame f = {0};
    if (!st) st = frame_init(&f, g, &e->graphs[0], NULL, bound, g->n_inputs, err);
    if (!st) {
        if (planned) {
            f.plan = &c->plan;
            f.arena = c->arena;
            f.vstore = c->vstore;
        }
        struct kiln_exec ex = {.c = c, .e = e, .err = err, .ro = ro, .deadline = deadline};
        st = run_frame(&ex, &f);
        for (size_t i = 0; !st && i < n_out; i++) {
            int id = kiln_graph_find(g, g->outputs[i].name);
            struct kiln_value *v = id >= 0 ? f.slots[id] : NULL;
            if (!v) {
                st = kiln_err_set(err, KILN_E_INTERNAL, "run: output '%s' was not produced", g->outputs[i].name);
                break;
            }
            if (f.owned[id] && g->values[id].def == KILN_DEF_NODE && !in_store(&f, v)) {
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
        frame_free(&f, c->cache);
    }
    kiln_free(bound);
    if (st)
        for (size_t i = 0; i < n_out; i++) {
            kiln_value_free(outputs[i]);
            outputs[i] = NULL;
        }
    return st;
}

/* ------------------------------------------------------------------ contexts */

kiln_status kiln_context_new(struct kiln_engine *e, struct kiln_context **out, kiln_err *err)
{
    *out = NULL;
    struct kiln_context *c = kiln_calloc(1, sizeof *c);
    if (!c) return kiln_err_set(err, KILN_E_NOMEM, "out of memory creating a context");
    c->e = e;
    kiln_engine_retain(e);
    c->profile = -1;
    kiln_status st = KILN_OK;
    int threads = e->threads > 0 ? e->threads : kiln_cpus_available();
    c->cache = kiln_bcache_create(KILN_CONTEXT_CACHE_LIMIT);
    size_t nv = e->model->graph->n_values;
    c->vstore = kiln_calloc(nv + 1, sizeof *c->vstore);
    c->bound = kiln_calloc(e->pinfo.n_syms + 1, sizeof *c->bound);
    if (!c->cache || !c->vstore || !c->bound)
        st = kiln_err_set(err, KILN_E_NOMEM, "out of memory creating a context");
    if (!st && threads > 1) st = kiln_pool_create(threads, &c->pool, err);
    /* The arena for the largest profile now, so that runs within the profiles allocate
     * nothing; dynamic models without profiles size it at their first run, and so does an
     * engine whose plan is over its memory limit (that run fails, naming the limit). */
    if (!st && e->arena_bytes && (!e->limits.max_memory_bytes || e->arena_bytes <= e->limits.max_memory_bytes)) {
        c->arena = kiln_aligned_alloc(4096, e->arena_bytes);
        if (!c->arena) st = kiln_err_set(err, KILN_E_NOMEM, "out of memory for the context's arena (%zu bytes)",
                                         e->arena_bytes);
        else c->arena_size = e->arena_bytes;
    }
    if (!st && e->scratch_bytes) c->scratch.want = e->scratch_bytes;
    if (st) {
        kiln_context_delete(c);
        return st;
    }
    *out = c;
    return KILN_OK;
}

/* Profile entries for g's nodes in prepare_graph's order, so entry i is node prof_id i. */
static kiln_status prof_graph(struct kiln_prof *p, const struct kiln_engine *e, const struct kiln_graph *g,
                              const char *prefix, int depth, kiln_err *err)
{
    const struct kiln_egraph *eg = egraph_of(e, g);
    if (!eg) return kiln_err_set(err, KILN_E_INTERNAL, "profile: graph '%s' was not prepared", g->name);
    for (size_t i = 0; i < g->n_nodes; i++) {
        const struct kiln_node *n = &g->nodes[i];
        const struct kiln_enode *en = &eg->nodes[i];
        size_t id;
        KILN_TRY(kiln_prof_add(p, prefix, depth, n, i, en->op, en->be->name, en->kernel, &id, err));
        if (id != en->prof_id) return kiln_err_set(err, KILN_E_INTERNAL, "profile entries out of order");
        const char *name = kiln_prof_name(p, id);
        for (size_t k = 0; k < n->n_attr; k++) {
            const struct kiln_attr *a = &n->attrs[k];
            if (a->type == KILN_ATTR_GRAPH && a->g) KILN_TRY(prof_graph(p, e, a->g, name, depth + 1, err));
            if (a->type == KILN_ATTR_GRAPHS)
                for (size_t j = 0; j < a->n; j++)
                    if (a->graphs[j]) KILN_TRY(prof_graph(p, e, a->graphs[j], name, depth + 1, err));
        }
    }
    return KILN_OK;
}

kiln_status kiln_context_profile_on(struct kiln_context *c, kiln_err *err)
{
    if (c->prof) return KILN_OK;
    if (!(c->prof = kiln_prof_create())) return kiln_err_set(err, KILN_E_NOMEM, "out of memory creating the profile");
    kiln_status st = prof_graph(c->prof, c->e, c->e->model->graph, "", 0, err);
    if (st) {
        kiln_prof_free(c->prof);
        c->prof = NULL;
    }
    return st;
}

void kiln_context_delete(struct kiln_context *c)
{
    if (!c) return;
    if (!c->prof_borrowed) kiln_prof_free(c->prof);
    kiln_plan_free(&c->plan);
    kiln_aligned_free(c->arena);
    kiln_aligned_free(c->scratch.base);
    kiln_free(c->vstore);
    kiln_free(c->bound);
    kiln_pool_free(c->pool);
    kiln_bcache_free(c->cache);
    struct kiln_engine *e = c->e;
    kiln_free(c);
    kiln_engine_release(e);
}

/* ------------------------------------------------------------------ profiles */

kiln_status kiln_engine_check_profiles(const struct kiln_engine *e, const struct kiln_value *const *bound,
                                       int *profile, kiln_err *err)
{
    *profile = -1;
    if (!e->n_profiles) return KILN_OK;
    const struct kiln_graph *g = e->model->graph;
    /* The first profile that admits every input; else name what the first one refuses. */
    for (size_t p = 0; p < e->n_profiles; p++) {
        const struct kiln_eprofile *pr = &e->profiles[p];
        bool ok = true;
        for (size_t i = 0; ok && i < pr->n_inputs && i < g->n_inputs; i++) {
            const struct kiln_value *v = bound[i];
            if (pr->rank[i] < 0 || !v || v->kind != KILN_VALUE_TENSOR) continue;
            ok = v->t.rank == pr->rank[i];
            for (int d = 0; ok && d < pr->rank[i]; d++)
                ok = v->t.dims[d] >= pr->min[i][d] && v->t.dims[d] <= pr->max[i][d];
        }
        if (ok) {
            *profile = (int)p;
            return KILN_OK;
        }
    }
    const struct kiln_eprofile *pr = &e->profiles[0];
    for (size_t i = 0; i < pr->n_inputs && i < g->n_inputs; i++) {
        const struct kiln_value *v = bound[i];
        if (pr->rank[i] < 0 || !v || v->kind != KILN_VALUE_TENSOR) continue;
        if (v->t.rank != pr->rank[i])
            return kiln_err_set(err, KILN_E_INVALID_ARG,
                                "run: input '%s' has rank %d; profile '%s' expects rank %d",
                                g->inputs[i].name, v->t.rank, pr->name, pr->rank[i]);
        for (int d = 0; d < pr->rank[i]; d++)
            if (v->t.dims[d] < pr->min[i][d] || v->t.dims[d] > pr->max[i][d])
                return kiln_err_set(err, KILN_E_INVALID_ARG,
                                    "run: input '%s' dim %d is %lld, outside profile '%s' (%lld to %lld)%s",
                                    g->inputs[i].name, d, (long long)v->t.dims[d], pr->name,
                                    (long long)pr->min[i][d], (long long)pr->max[i][d],
                                    e->n_profiles > 1 ? "; no other profile admits the inputs" : "");
    }
    return kiln_err_set(err, KILN_E_INVALID_ARG, "run: no profile admits these input shapes");
}

/* ------------------------------------------------------------------ one node (eval.h) */

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

/* The vtype of a concrete value (for prepare outside an engine). */
static void vtype_of(const struct kiln_value *v, struct kiln_vtype *t, struct kiln_dim *dims)
{
    memset(t, 0, sizeof *t);
    t->n_vals = -1;
    if (!v || v->kind != KILN_VALUE_TENSOR) return;
    t->type.kind = KILN_TYPE_TENSOR;
    t->type.elem = v->t.dtype;
    t->type.rank = v->t.rank;
    for (int d = 0; d < v->t.rank; d++) dims[d] = (struct kiln_dim){.value = v->t.dims[d]};
    t->type.dims = dims;
    t->konst = &v->t;
}

kiln_status kiln_eval_kernel(const struct kiln_cpu_op *op, const struct kiln_node *n, int opset,
                             const struct kiln_value *const *in, struct kiln_value **out, struct kiln_pool *pool,
                             kiln_err *err)
{
    for (size_t j = 0; j < n->n_out; j++) out[j] = NULL;
    struct kiln_kctx k = {
        .node = n, .opset = opset, .n_in = n->n_in, .n_out = n->n_out,
        .in = (struct kiln_value *const *)in, .out = out, .err = err, .pool = pool,
    };
    /* prepare, with the inputs' concrete types and every input a constant */
    struct kiln_arena arena = {0};
    struct kiln_prep_store store = {.arena = &arena};
    kiln_status st = KILN_OK;
    if (op->prepare) {
        struct kiln_vtype *vt = kiln_calloc(n->n_in + 1, sizeof *vt);
        struct kiln_dim *dims = kiln_calloc((n->n_in + 1) * KILN_MAX_RANK, sizeof *dims);
        const struct kiln_vtype **vin = kiln_calloc(n->n_in + 1, sizeof *vin);
        const struct kiln_vtype **vout = kiln_calloc(n->n_out + 1, sizeof *vout);
        if (!vt || !dims || !vin || !vout) {
            st = kiln_err_set(err, KILN_E_NOMEM, "out of memory evaluating a node");
        } else {
            for (size_t i = 0; i < n->n_in; i++) {
                vtype_of(in[i], &vt[i], dims + i * KILN_MAX_RANK);
                vin[i] = in[i] && in[i]->kind == KILN_VALUE_TENSOR ? &vt[i] : NULL;
            }
            struct kiln_kprep p = {.kc = k, .in = vin, .out = vout, .threads = 1, .variant = -1,
                                   .store = &store};
            st = op->prepare(&p);
            k.state = p.state;
        }
        kiln_free(vt);
        kiln_free(dims);
        kiln_free(vin);
        kiln_free(vout);
    }
    if (!st) st = op->run(&k);
    kiln_kctx_free_scratch(&k);
    for (size_t i = 0; i < store.n_blobs; i++) kiln_aligned_free(store.blobs[i].data);
    kiln_free(store.blobs);
    kiln_arena_free(&arena);
    if (st)
        for (size_t j = 0; j < n->n_out; j++) {
            kiln_value_free(out[j]);
            out[j] = NULL;
        }
    return st;
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
    return kiln_eval_kernel(op, n, node_version(m, n), in, out, NULL, err);
}
