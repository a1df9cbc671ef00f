/* builder.c: kiln_builder (kiln.h): optimize, infer shapes, assign backends, prepare
 * kernels, plan memory per profile.
 *
 * A build runs, in order: the optimizer at the configured level on the engine's own copy of
 * the model; shape inference (symbolic: one pass serves every profile); kiln_engine_prepare
 * (every node to a backend and kernel, prepare, the planner's view of the graph); then per
 * profile the memory plan at its largest shapes, checked against the memory limit. The
 * log gets the fallback nodes, the profiles' memory and, verbose, each node's kernel.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "base/pool.h"
#include "exec/engine.h"
#include "exec/profile.h"
#include "infer/infer.h"

struct bprofile {
    char *name;
    size_t n;                  /* inputs given */
    char **input;
    int *rank;
    int64_t (*min)[KILN_MAX_RANK], (*opt)[KILN_MAX_RANK], (*max)[KILN_MAX_RANK];
};

struct kiln_builder {
    const struct kiln_backend *device;
    unsigned precisions;
    kiln_opt_level level;
    int threads;
    uint64_t memory_limit;
    int tune;
    struct kiln_limits limits;
    kiln_problem_fn log;
    void *log_user;
    int verbose;
    size_t n_profiles;
    struct bprofile *profiles;
};

kiln_status kiln_builder_create(kiln_builder **out, kiln_err *err)
{
    *out = kiln_calloc(1, sizeof **out);
    if (!*out) return kiln_err_set(err, KILN_E_NOMEM, "out of memory creating a builder");
    (*out)->device = &kiln_cpu_backend;
    (*out)->precisions = KILN_PRECISION_FP32;
    (*out)->level = KILN_OPT_EXTENDED;
    return KILN_OK;
}

void kiln_builder_free(kiln_builder *b)
{
    if (!b) return;
    for (size_t i = 0; i < b->n_profiles; i++) {
        struct bprofile *p = &b->profiles[i];
        for (size_t j = 0; j < p->n; j++) kiln_free(p->input[j]);
        kiln_free(p->name), kiln_free(p->input), kiln_free(p->rank);
        kiln_free(p->min), kiln_free(p->opt), kiln_free(p->max);
    }
    kiln_free(b->profiles);
    kiln_free(b);
}

kiln_status kiln_builder_set_device(kiln_builder *b, const char *device, kiln_err *err)
{
    const struct kiln_backend *be = device ? kiln_backend_find(device) : NULL;
    if (!be) {
        char have[256] = "";
        size_t o = 0;
        const struct kiln_backend *const *list = kiln_backend_list();
        for (size_t i = 0; list[i] && o < sizeof have; i++)
            o += (size_t)snprintf(have + o, sizeof have - o, "%s%s", i ? ", " : "", list[i]->name);
        return kiln_err_set(err, KILN_E_UNSUPPORTED, "builder: device '%s' is not built into this kiln (it has: %s)",
                            device ? device : "(null)", have);
    }
    b->device = be;
    return KILN_OK;
}

kiln_status kiln_builder_set_precisions(kiln_builder *b, unsigned mask, kiln_err *err)
{
    if (!(mask & KILN_PRECISION_FP32))
        return kiln_err_set(err, KILN_E_UNSUPPORTED,
                            "builder: precisions 0x%x leave out fp32; kiln computes in fp32 today "
                            "(fp16, bf16 and int8 engines are to come)", mask);
    if (mask & ~(unsigned)(KILN_PRECISION_FP32 | KILN_PRECISION_FP16 | KILN_PRECISION_BF16 | KILN_PRECISION_INT8))
        return kiln_err_set(err, KILN_E_INVALID_ARG, "builder: unknown precision bits in 0x%x", mask);
    b->precisions = mask;
    return KILN_OK;
}

void kiln_builder_set_opt_level(kiln_builder *b, kiln_opt_level level)
{
    b->level = level;
}

kiln_status kiln_builder_set_threads(kiln_builder *b, int threads, kiln_err *err)
{
    if (threads < 0 || threads > 1024)
        return kiln_err_set(err, KILN_E_INVALID_ARG, "builder: threads is %d; expected 0 (one per CPU) to 1024",
                            threads);
    b->threads = threads;
    return KILN_OK;
}

void kiln_builder_set_memory_limit(kiln_builder *b, uint64_t bytes)
{
    b->memory_limit = bytes;
}

void kiln_builder_set_tune(kiln_builder *b, int tune)
{
    b->tune = tune;
}

void kiln_builder_set_limits(kiln_builder *b, uint64_t max_tensor_bytes, uint64_t max_memory_bytes,
                             int max_depth)
{
    b->limits = (struct kiln_limits){max_tensor_bytes, max_memory_bytes, max_depth};
}

void kiln_builder_set_log(kiln_builder *b, kiln_problem_fn log, void *user, int verbose)
{
    b->log = log;
    b->log_user = user;
    b->verbose = verbose;
}

kiln_status kiln_builder_add_profile(kiln_builder *b, const char *profile, const char *input, int rank,
                                     const int64_t *min, const int64_t *opt, const int64_t *max, kiln_err *err)
{
    if (!profile || !input || rank < 0 || rank > KILN_MAX_RANK || (rank && (!min || !opt || !max)))
        return kiln_err_set(err, KILN_E_INVALID_ARG, "builder: profile '%s' input '%s': bad arguments (rank %d)",
                            profile ? profile : "", input ? input : "", rank);
    for (int d = 0; d < rank; d++)
        if (min[d] < 0 || min[d] > opt[d] || opt[d] > max[d])
            return kiln_err_set(err, KILN_E_INVALID_ARG,
                                "builder: profile '%s' input '%s' dim %d: min %lld, opt %lld, max %lld; "
                                "expected 0 <= min <= opt <= max", profile, input, d, (long long)min[d],
                                (long long)opt[d], (long long)max[d]);
    struct bprofile *p = NULL;
    for (size_t i = 0; i < b->n_profiles; i++)
        if (strcmp(b->profiles[i].name, profile) == 0) p = &b->profiles[i];
    if (!p) {
        struct bprofile *np = kiln_realloc(b->profiles, (b->n_profiles + 1) * sizeof *np);
        if (!np) return kiln_err_set(err, KILN_E_NOMEM, "out of memory adding a profile");
        b->profiles = np;
        p = &b->profiles[b->n_profiles];
        memset(p, 0, sizeof *p);
        if (!(p->name = kiln_strdup(profile))) return kiln_err_set(err, KILN_E_NOMEM, "out of memory adding a profile");
        b->n_profiles++;
    }
    for (size_t j = 0; j < p->n; j++)
        if (strcmp(p->input[j], input) == 0)
            return kiln_err_set(err, KILN_E_INVALID_ARG, "builder: profile '%s' already bounds input '%s'",
                                profile, input);
    size_t n = p->n + 1;
    char **in = kiln_realloc(p->input, n * sizeof *in);
    if (in) p->input = in;
    int *rk = in ? kiln_realloc(p->rank, n * sizeof *rk) : NULL;
    if (rk) p->rank = rk;
    int64_t(*mn)[KILN_MAX_RANK] = rk ? kiln_realloc(p->min, n * sizeof *mn) : NULL;
    if (mn) p->min = mn;
    int64_t(*op)[KILN_MAX_RANK] = mn ? kiln_realloc(p->opt, n * sizeof *op) : NULL;
    if (op) p->opt = op;
    int64_t(*mx)[KILN_MAX_RANK] = op ? kiln_realloc(p->max, n * sizeof *mx) : NULL;
    if (mx) p->max = mx;
    char *name = mx ? kiln_strdup(input) : NULL;
    if (!name) return kiln_err_set(err, KILN_E_NOMEM, "out of memory adding a profile");
    p->input[p->n] = name;
    p->rank[p->n] = rank;
    for (int d = 0; d < rank; d++) {
        p->min[p->n][d] = min[d];
        p->opt[p->n][d] = opt[d];
        p->max[p->n][d] = max[d];
    }
    p->n = n;
    return KILN_OK;
}

/* ------------------------------------------------------------------ building */

static void blog(const kiln_builder *b, const char *fmt, ...) KILN_PRINTF(2, 3);
static void blog(const kiln_builder *b, const char *fmt, ...)
{
    if (!b || !b->log) return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    b->log(b->log_user, line);
}

/* The builder's profiles as the engine's, checked against the model's inputs. */
static kiln_status take_profiles(const kiln_builder *b, struct kiln_engine *e, kiln_err *err)
{
    const struct kiln_graph *g = e->model->graph;
    if (!b || !b->n_profiles) return KILN_OK;
    e->profiles = kiln_arena_array(&e->arena, b->n_profiles, sizeof *e->profiles);
    if (!e->profiles) return kiln_err_set(err, KILN_E_NOMEM, "out of memory building the engine");
    size_t ni = g->n_inputs;
    for (size_t p = 0; p < b->n_profiles; p++) {
        const struct bprofile *bp = &b->profiles[p];
        struct kiln_eprofile *ep = &e->profiles[p];
        memset(ep, 0, sizeof *ep);
        ep->name = kiln_arena_strndup(&e->arena, bp->name, strlen(bp->name));
        ep->n_inputs = ni;
        ep->rank = kiln_arena_array(&e->arena, ni + 1, sizeof *ep->rank);
        ep->min = kiln_arena_array(&e->arena, ni + 1, sizeof *ep->min);
        ep->opt = kiln_arena_array(&e->arena, ni + 1, sizeof *ep->opt);
        ep->max = kiln_arena_array(&e->arena, ni + 1, sizeof *ep->max);
        if (!ep->name || !ep->rank || !ep->min || !ep->opt || !ep->max)
            return kiln_err_set(err, KILN_E_NOMEM, "out of memory building the engine");
        for (size_t i = 0; i < ni; i++) ep->rank[i] = -1;
        for (size_t j = 0; j < bp->n; j++) {
            size_t i = 0;
            while (i < ni && strcmp(g->inputs[i].name, bp->input[j]) != 0) i++;
            if (i == ni)
                return kiln_err_set(err, KILN_E_INVALID_ARG, "build: profile '%s' bounds input '%s', which the model lacks",
                                    bp->name, bp->input[j]);
            const struct kiln_type *t = &g->inputs[i].type;
            if (t->kind == KILN_TYPE_TENSOR && t->rank >= 0 && t->rank != bp->rank[j])
                return kiln_err_set(err, KILN_E_INVALID_ARG,
                                    "build: profile '%s' gives input '%s' rank %d; the model declares rank %d",
                                    bp->name, bp->input[j], bp->rank[j], t->rank);
            for (int d = 0; t->kind == KILN_TYPE_TENSOR && d < t->rank && d < bp->rank[j]; d++) {
                int64_t fixed = t->dims[d].value;
                if (fixed >= 0 && (bp->min[j][d] != fixed || bp->max[j][d] != fixed))
                    return kiln_err_set(err, KILN_E_INVALID_ARG,
                                        "build: profile '%s' input '%s' dim %d spans %lld to %lld; the "
                                        "model fixes it at %lld", bp->name, bp->input[j], d,
                                        (long long)bp->min[j][d], (long long)bp->max[j][d], (long long)fixed);
            }
            ep->rank[i] = bp->rank[j];
            memcpy(ep->min[i], bp->min[j], sizeof ep->min[i]);
            memcpy(ep->opt[i], bp->opt[j], sizeof ep->opt[i]);
            memcpy(ep->max[i], bp->max[j], sizeof ep->max[i]);
        }
    }
    e->n_profiles = b->n_profiles;
    return KILN_OK;
}

/* Plans each profile at its largest shapes (or the fixed shapes when the graph has no
 * symbols), recording the arena sizes. */
static kiln_status plan_profiles(const kiln_builder *b, struct kiln_engine *e, kiln_err *err)
{
    const struct kiln_plan_info *pi = &e->pinfo;
    const struct kiln_graph *g = e->model->graph;
    int64_t *syms = kiln_calloc(pi->n_syms + 1, sizeof *syms);
    if (!syms) return kiln_err_set(err, KILN_E_NOMEM, "out of memory planning memory");
    kiln_status st = KILN_OK;
    uint64_t limit = b ? b->memory_limit : 0;
    for (size_t p = 0; p < e->n_profiles && !st; p++) {
        struct kiln_eprofile *ep = &e->profiles[p];
        /* Inputs the profile leaves out take their declared fixed dims. */
        int *rank = kiln_calloc(g->n_inputs + 1, sizeof *rank);
        int64_t(*dims)[KILN_MAX_RANK] = kiln_calloc(g->n_inputs + 1, sizeof *dims);
        if (!rank || !dims) {
            kiln_free(rank), kiln_free(dims);
            st = kiln_err_set(err, KILN_E_NOMEM, "out of memory planning memory");
            break;
        }
        for (size_t i = 0; i < g->n_inputs; i++) {
            rank[i] = ep->rank[i];
            if (rank[i] >= 0) {
                memcpy(dims[i], ep->max[i], sizeof dims[i]);
                continue;
            }
            const struct kiln_type *t = &g->inputs[i].type;
            rank[i] = t->kind == KILN_TYPE_TENSOR ? t->rank : -1;
            for (int d = 0; d < rank[i] && d < KILN_MAX_RANK; d++) dims[i][d] = t->dims[d].value;
        }
        bool bound = kiln_plan_bind_shapes(pi, rank, (const int64_t(*)[KILN_MAX_RANK])dims, syms);
        kiln_free(rank), kiln_free(dims);
        if (!bound) {
            blog(b, "profile '%s': its shapes do not bind every symbol of the inputs; memory is "
                    "planned at the first run", ep->name);
            continue;
        }
        struct kiln_plan plan;
        st = kiln_plan_make(pi, syms, &plan, err);
        if (st) break;
        ep->arena_bytes = plan.arena_bytes;
        ep->sum_bytes = plan.sum_bytes;
        kiln_plan_free(&plan);
        blog(b, "profile '%s': planned arena %.1f MiB for intermediates summing to %.1f MiB (%.0f%%)",
             ep->name, (double)ep->arena_bytes / 1048576.0, (double)ep->sum_bytes / 1048576.0,
             ep->sum_bytes ? 100.0 * (double)ep->arena_bytes / (double)ep->sum_bytes : 0.0);
        if (limit && ep->arena_bytes > limit)
            st = kiln_err_set(err, KILN_E_LIMIT,
                              "build: profile '%s' needs %zu bytes of intermediate tensors at its largest "
                              "shapes; the memory limit is %llu bytes", ep->name, ep->arena_bytes,
                              (unsigned long long)limit);
        if (ep->arena_bytes > e->arena_bytes) e->arena_bytes = ep->arena_bytes;
    }
    /* A graph without symbols: one plan, made now. */
    if (!st && !e->n_profiles && pi->n_syms == 0) {
        struct kiln_plan plan;
        st = kiln_plan_make(pi, syms, &plan, err);
        if (!st) {
            e->arena_bytes = plan.arena_bytes;
            e->static_sum_bytes = plan.sum_bytes;
            e->static_planned = true;
            kiln_plan_free(&plan);
            blog(b, "planned arena %.1f MiB for intermediates summing to %.1f MiB (%.0f%%)",
                 (double)e->arena_bytes / 1048576.0, (double)e->static_sum_bytes / 1048576.0,
                 e->static_sum_bytes ? 100.0 * (double)e->arena_bytes / (double)e->static_sum_bytes : 0.0);
            if (limit && e->arena_bytes > limit)
                st = kiln_err_set(err, KILN_E_LIMIT,
                                  "build: the plan needs %zu bytes of intermediate tensors; the memory "
                                  "limit is %llu bytes", e->arena_bytes, (unsigned long long)limit);
        }
    }
    kiln_free(syms);
    return st;
}

static void log_kernels(const kiln_builder *b, const struct kiln_engine *e)
{
    if (!b || !b->log) return;
    for (size_t gi = 0; gi < e->n_graphs; gi++) {
        const struct kiln_egraph *eg = &e->graphs[gi];
        for (size_t i = 0; i < eg->g->n_nodes; i++) {
            const struct kiln_enode *en = &eg->nodes[i];
            const struct kiln_node *n = &eg->g->nodes[i];
            char lb[300];
            if (en->be != b->device)
                blog(b, "fallback: %s runs on %s (%s has no kernel for it)", kiln_node_label(n, lb, sizeof lb),
                     en->be->name, b->device->name);
            else if (b->verbose)
                blog(b, "%s%s: %s %s%s%s", gi ? "  (subgraph) " : "", kiln_node_label(n, lb, sizeof lb),
                     en->be->name, en->op->name, en->kernel ? " / " : "", en->kernel ? en->kernel : "");
        }
    }
}

kiln_status kiln_engine_finish(const kiln_builder *b, struct kiln_engine *e, kiln_err *err)
{
    KILN_TRY(kiln_model_infer_shapes(e->model, err));
    KILN_TRY(take_profiles(b, e, err));
    e->device = b ? b->device : &kiln_cpu_backend;
    e->tune = b ? b->tune : 0;
    KILN_TRY(kiln_engine_prepare(e, err));
    log_kernels(b, e);
    return plan_profiles(b, e, err);
}

kiln_status kiln_engine_new(struct kiln_model *m, bool owns, int threads, struct kiln_engine **out, kiln_err *err)
{
    *out = NULL;
    struct kiln_engine *e = kiln_calloc(1, sizeof *e);
    if (!e) {
        if (owns) kiln_model_free(m);
        return kiln_err_set(err, KILN_E_NOMEM, "out of memory creating an engine");
    }
    e->model = m;
    e->owns_model = owns;
    e->threads = threads;
    e->store.arena = &e->arena;
    atomic_init(&e->refs, 1);
    *out = e;
    return KILN_OK;
}

/* An engine with one profile whose every bounded input has one shape (min == max) serves
 * exactly those shapes: the model's inputs are fixed to them before the optimizer runs, so
 * constant folding, shape inference and every kernel's prepare see a static graph (shape
 * arithmetic folded away, GEMMs prepacked for their row count, convolutions planned for
 * their sizes), as for a model declared with fixed shapes. */
static kiln_status fix_single_shape_profile(const kiln_builder *b, struct kiln_model *m, kiln_err *err)
{
    if (b->n_profiles != 1) return KILN_OK;
    const struct bprofile *bp = &b->profiles[0];
    for (size_t j = 0; j < bp->n; j++)
        for (int d = 0; d < bp->rank[j]; d++)
            if (bp->min[j][d] != bp->max[j][d]) return KILN_OK;
    for (size_t j = 0; j < bp->n; j++)
        KILN_TRY(kiln_model_set_input_shape(m, bp->input[j], bp->rank[j], bp->min[j], err));
    return KILN_OK;
}

static kiln_status build_owned(kiln_builder *b, struct kiln_model *m, kiln_engine **out, kiln_err *err)
{
    *out = NULL;
    if (b->limits.max_depth < 0) {
        kiln_model_free(m);
        return kiln_err_set(err, KILN_E_INVALID_ARG, "build: max_depth is %d; expected 0 (64) or more",
                            b->limits.max_depth);
    }
    if (m->n_link_errors) {
        kiln_status st = kiln_err_set(err, KILN_E_INVALID_MODEL, "build: %s%s", m->link_problems[0],
                                      m->n_link_errors > 1 ? " (and more: run `kiln check`)" : "");
        kiln_model_free(m);
        return st;
    }
    struct kiln_engine *e;
    KILN_TRY(kiln_engine_new(m, true, b->threads, &e, err));
    e->limits = b->limits;
    kiln_status st = fix_single_shape_profile(b, m, err);
    if (!st && b->level != KILN_OPT_NONE) {
        kiln_optimize_options oo = {.level = b->level, .keep_fused = 1};
        st = kiln_model_optimize(m, &oo, err);
    }
    if (!st) st = kiln_engine_finish(b, e, err);
    if (st) {
        kiln_engine_release(e);
        return st;
    }
    *out = e;
    return KILN_OK;
}

kiln_status kiln_builder_build(kiln_builder *b, const kiln_model *m, kiln_engine **out, kiln_err *err)
{
    *out = NULL;
    if (!b || !m || !m->graph) return kiln_err_set(err, KILN_E_INVALID_ARG, "build: no builder or model");
    void *buf;
    size_t len;
    KILN_TRY(kiln_model_save_buffer(m, &buf, &len, err));
    struct kiln_model *copy;
    kiln_status st = kiln_model_load_buffer(buf, len, m->dir, &copy, err);
    kiln_buffer_free(buf);
    if (st) return st;
    return build_owned(b, copy, out, err);
}

kiln_status kiln_builder_build_file(kiln_builder *b, const char *path, kiln_engine **out, kiln_err *err)
{
    *out = NULL;
    if (!b || !path) return kiln_err_set(err, KILN_E_INVALID_ARG, "build: no builder or path");
    struct kiln_model *m;
    KILN_TRY(kiln_model_load_file(path, &m, err));
    return build_owned(b, m, out, err);
}

/* ------------------------------------------------------------------ engine queries */

void kiln_engine_free(kiln_engine *e)
{
    kiln_engine_release(e);
}

const kiln_model *kiln_engine_model(const kiln_engine *e)
{
    return e ? e->model : NULL;
}

int kiln_engine_threads(const kiln_engine *e)
{
    return e ? (e->threads > 0 ? e->threads : kiln_cpus_available()) : 0;
}

size_t kiln_engine_profile_count(const kiln_engine *e)
{
    if (!e) return 0;
    return e->n_profiles ? e->n_profiles : e->static_planned ? 1 : 0;
}

const char *kiln_engine_profile_name(const kiln_engine *e, size_t i)
{
    if (!e) return NULL;
    if (!e->n_profiles) return e->static_planned && i == 0 ? "" : NULL;
    return i < e->n_profiles ? e->profiles[i].name : NULL;
}

void kiln_engine_profile_memory(const kiln_engine *e, size_t i, uint64_t *arena_bytes, uint64_t *sum_bytes)
{
    uint64_t a = 0, s = 0;
    if (e && e->n_profiles && i < e->n_profiles) {
        a = e->profiles[i].arena_bytes;
        s = e->profiles[i].sum_bytes;
    } else if (e && !e->n_profiles && e->static_planned && i == 0) {
        a = e->arena_bytes;
        s = e->static_sum_bytes;
    }
    if (arena_bytes) *arena_bytes = a;
    if (sum_bytes) *sum_bytes = s;
}

void kiln_engine_node_kernel(const kiln_engine *e, size_t i, const char **backend, const char **kernel,
                             const char **variant)
{
    *backend = *kernel = *variant = NULL;
    if (!e || !e->n_graphs || i >= e->graphs[0].g->n_nodes) return;
    const struct kiln_enode *en = &e->graphs[0].nodes[i];
    *backend = en->be ? en->be->name : NULL;
    *kernel = en->op ? en->op->name : NULL;
    *variant = en->kernel;
}
