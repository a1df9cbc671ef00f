/* plugin.c: custom operators from plugins (include/kiln_plugin.h, docs/plugins.md): loading
 * (dlopen), the registry of declared ops, the function table plugins call, and the bridges
 * that make a declared op a kiln kernel (prepare/run trampolines) and give it shapes.
 *
 * The registry is process-wide and append-only. kiln_plugin_load holds one mutex from
 * dlopen to the end of registration; a plugin's declarations are checked as they come
 * (ABI version, names, range, no overlap with kiln's kernels or other plugins) and kept
 * aside, then published together, newest first, by a release store of the list head, so
 * the lookups (once per node when a session is built) take no lock. Entries are never
 * freed: they live, like the libraries, until the process exits.
 *
 * A declared op's kernel is an ordinary `struct kiln_cpu_op` inside its entry. Its prepare
 * (tramp_prepare) finds the entry again by (domain, op type, version), runs the plugin's
 * prepare, scratch and prepack hooks, and keeps the plugin's state in a `struct pstate`
 * allocated from the engine's arena, with an arena cleanup (kiln_kprep_on_free) that calls
 * the plugin's release when the engine goes. Its run (tramp_run) hands the plugin views of
 * the inputs and an output allocator, and turns the plugin's kiln_err into a kernel error
 * ("Swish node 'n3' (opset 1): <the plugin's message>").
 */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "kiln_plugin.h"

#include "base/pool.h"
#include "cpu/kernel.h"
#include "infer/infer.h"
#include "ops/schema.h"
#include "plugin/plugin.h"

/* The blob key of a node's prepacked data (kiln_kprep_blob): "PLUG". */
#define PREPACK_KEY 0x504c5547u

/* ------------------------------------------------------------------ the registry */

struct plugin_lib {
    struct plugin_lib *next; /* under the lock only */
    void *handle;
    char path[]; /* as given to kiln_plugin_load */
};

struct kiln_plugin_entry {
    struct kiln_plugin_entry *next; /* set before publication, then never changed */
    kiln_plugin_op op;              /* the plugin's declaration; strings below */
    const char *domain;             /* normalized: "" for ai.onnx */
    const char *op_type, *backend;
    const char *lib_path;   /* the library's path, for messages */
    const char *kernel;     /* "plugin <file name>": the kernel's variant name */
    struct kiln_cpu_op cpu; /* the kernel (backend "cpu") */
    char strings[];
};

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct plugin_lib *libs;                      /* under reg_lock */
static _Atomic(struct kiln_plugin_entry *) reg_head; /* newest first */

static const char *norm_domain(const char *d)
{
    return !d || strcmp(d, "ai.onnx") == 0 ? "" : d;
}

static const struct kiln_plugin_entry *first_entry(void)
{
    return atomic_load_explicit(&reg_head, memory_order_acquire);
}

static bool in_range(const kiln_plugin_op *op, int version)
{
    return version >= op->since && (op->until == 0 || version <= op->until);
}

static bool ranges_overlap(int s1, int u1, int s2, int u2)
{
    return (u2 == 0 || s1 <= u2) && (u1 == 0 || s2 <= u1);
}

/* The entry for (domain, op_type) at `version` for `backend` (NULL: any backend, the one
 * declared first). */
static const struct kiln_plugin_entry *find_entry(const char *domain, const char *op_type, int version,
                                                  const char *backend)
{
    const struct kiln_plugin_entry *found = NULL;
    domain = norm_domain(domain);
    for (const struct kiln_plugin_entry *e = first_entry(); e; e = e->next) {
        if (strcmp(e->op_type, op_type) != 0 || strcmp(e->domain, domain) != 0 || !in_range(&e->op, version))
            continue;
        if (backend && strcmp(e->backend, backend) != 0) continue;
        found = e; /* newest first: the last match is the first declared */
        if (backend) break;
    }
    return found;
}

const struct kiln_cpu_op *kiln_plugin_cpu_op(const char *domain, const char *op_type, int version)
{
    if (!op_type) return NULL;
    const struct kiln_plugin_entry *e = find_entry(domain, op_type, version, "cpu");
    return e ? &e->cpu : NULL;
}

bool kiln_plugin_declares(const char *domain, const char *op_type, const char *backend)
{
    if (!op_type) return false;
    domain = norm_domain(domain);
    for (const struct kiln_plugin_entry *e = first_entry(); e; e = e->next)
        if (strcmp(e->op_type, op_type) == 0 && strcmp(e->domain, domain) == 0 &&
            (!backend || strcmp(e->backend, backend) == 0))
            return true;
    return false;
}

/* ------------------------------------------------------------------ handles */

struct kiln_plugin_node {
    const struct kiln_node *n;
    int version;
};

struct kiln_plugin_prep {
    struct kiln_plugin_node node;
    struct kiln_kprep *p;
};

struct pstate; /* below */

struct kiln_plugin_kernel {
    struct kiln_plugin_node node;
    struct kiln_kctx *k;
    const struct pstate *ps;
    kiln_err *perr; /* the err the plugin's run received */
    bool kiln_fail; /* perr holds a message kiln wrote (already naming the node) */
};

/* ------------------------------------------------------------------ types and views */

/* Symbolic dims of one call, as the negative numbers plugins see (-2, -3, ...). */
#define MAX_SYMS 256
struct symtab {
    const char *param[MAX_SYMS];
    int n;
};

static int64_t sym_of(struct symtab *s, struct kiln_dim d)
{
    int64_t v;
    if (d.value >= 0) return d.value;
    if (!d.param || !d.param[0] || kiln_dim_int_value(d, &v)) return -1;
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->param[i], d.param) == 0) return -2 - i;
    if (s->n == MAX_SYMS) return -1;
    s->param[s->n] = d.param;
    return -2 - s->n++;
}

/* vt as a plugin type; false (and *t unknown) when vt is not a tensor type. */
static bool type_of(const struct kiln_vtype *vt, struct symtab *s, kiln_plugin_type *t)
{
    memset(t, 0, sizeof *t);
    t->dtype = KILN_DTYPE_UNDEFINED;
    t->rank = -1;
    if (!vt || vt->type.kind != KILN_TYPE_TENSOR) return false;
    t->dtype = vt->type.elem;
    if (vt->type.rank >= 0 && vt->type.rank <= KILN_PLUGIN_MAX_RANK && vt->type.dims) {
        t->rank = vt->type.rank;
        for (int d = 0; d < t->rank; d++) t->dims[d] = sym_of(s, vt->type.dims[d]);
    }
    return true;
}

static void view_of(const struct kiln_tensor *src, kiln_plugin_tensor *t)
{
    t->dtype = src->dtype;
    t->rank = src->rank;
    t->dims = src->dims;
    t->count = kiln_tensor_numel(src);
    t->data = src->data;
}

static bool dtype_valid(int dt)
{
    return dt > KILN_DTYPE_UNDEFINED && dt < KILN_DTYPE_COUNT_;
}

/* ------------------------------------------------------------------ the function table */

static kiln_status api_register_op(kiln_plugin_registry *r, const kiln_plugin_op *op);
static void api_registry_error(kiln_plugin_registry *r, const char *message);

static const char *api_node_name(const kiln_plugin_node *n)
{
    return n->n->name ? n->n->name : "";
}
static const char *api_node_op_type(const kiln_plugin_node *n)
{
    return n->n->op_type;
}
static const char *api_node_domain(const kiln_plugin_node *n)
{
    return norm_domain(n->n->domain);
}
static int api_node_version(const kiln_plugin_node *n)
{
    return n->version;
}
static size_t api_node_input_count(const kiln_plugin_node *n)
{
    return n->n->n_in;
}
static size_t api_node_output_count(const kiln_plugin_node *n)
{
    return n->n->n_out;
}

static const char *api_node_input_name(const kiln_plugin_node *n, size_t i)
{
    return i < n->n->n_in && n->n->inputs[i] ? n->n->inputs[i] : "";
}

static const char *api_node_output_name(const kiln_plugin_node *n, size_t i)
{
    return i < n->n->n_out && n->n->outputs[i] ? n->n->outputs[i] : "";
}

static const struct kiln_attr *attr_of(const kiln_plugin_node *n, const char *name, enum kiln_attr_type t)
{
    const struct kiln_attr *a = name ? kiln_node_attr(n->n, name) : NULL;
    return a && a->type == t ? a : NULL;
}

static int api_attr_type(const kiln_plugin_node *n, const char *name)
{
    const struct kiln_attr *a = name ? kiln_node_attr(n->n, name) : NULL;
    return a ? (int)a->type : 0;
}

static int64_t api_attr_int(const kiln_plugin_node *n, const char *name, int64_t def)
{
    const struct kiln_attr *a = attr_of(n, name, KILN_ATTR_INT);
    return a ? a->i : def;
}

static float api_attr_float(const kiln_plugin_node *n, const char *name, float def)
{
    const struct kiln_attr *a = attr_of(n, name, KILN_ATTR_FLOAT);
    return a ? a->f : def;
}

static const char *api_attr_string(const kiln_plugin_node *n, const char *name, const char *def)
{
    const struct kiln_attr *a = attr_of(n, name, KILN_ATTR_STRING);
    return a && a->s ? a->s : def;
}

static size_t api_attr_ints(const kiln_plugin_node *n, const char *name, const int64_t **v)
{
    const struct kiln_attr *a = attr_of(n, name, KILN_ATTR_INTS);
    *v = a ? a->ints : NULL;
    return a ? a->n : 0;
}

static size_t api_attr_floats(const kiln_plugin_node *n, const char *name, const float **v)
{
    const struct kiln_attr *a = attr_of(n, name, KILN_ATTR_FLOATS);
    *v = a ? a->floats : NULL;
    return a ? a->n : 0;
}

static size_t api_attr_strings(const kiln_plugin_node *n, const char *name, const char *const **v)
{
    const struct kiln_attr *a = attr_of(n, name, KILN_ATTR_STRINGS);
    *v = a ? a->strings : NULL;
    return a ? a->n : 0;
}

static int api_attr_tensor(const kiln_plugin_node *n, const char *name, kiln_plugin_tensor *t)
{
    const struct kiln_attr *a = attr_of(n, name, KILN_ATTR_TENSOR);
    memset(t, 0, sizeof *t);
    if (!a || !a->t) return 0;
    view_of(a->t, t);
    return 1;
}

static const kiln_plugin_node *api_prep_node(const kiln_plugin_prep *p)
{
    return &p->node;
}

static int prep_type(const struct kiln_vtype *const *types, size_t n, size_t i, kiln_plugin_type *t)
{
    struct symtab s = {.n = 0};
    if (!types || i >= n) {
        type_of(NULL, &s, t);
        return 0;
    }
    return type_of(types[i], &s, t) ? 1 : 0;
}

/* Symbols are numbered per call here: a plugin comparing dims across two calls sees
 * different numbers for one symbol (documented: equal values within one call). */
static int api_prep_input_type(const kiln_plugin_prep *p, size_t i, kiln_plugin_type *t)
{
    return prep_type(p->p->in, p->p->kc.n_in, i, t);
}

static int api_prep_output_type(const kiln_plugin_prep *p, size_t j, kiln_plugin_type *t)
{
    return prep_type(p->p->out, p->p->kc.n_out, j, t);
}

static int api_prep_const_input(const kiln_plugin_prep *p, size_t i, kiln_plugin_tensor *t)
{
    memset(t, 0, sizeof *t);
    const struct kiln_tensor *c = kiln_kprep_const(p->p, i);
    if (!c) return 0;
    view_of(c, t);
    return 1;
}

static int api_prep_threads(const kiln_plugin_prep *p)
{
    if (p->p->threads > 0) return p->p->threads;
    int n = kiln_cpus_available(); /* threads 0: one per CPU, as the pool will have */
    return n > 0 ? n : 1;
}

static const kiln_plugin_node *api_kernel_node(const kiln_plugin_kernel *k)
{
    return &k->node;
}

static int api_kernel_input(const kiln_plugin_kernel *k, size_t i, kiln_plugin_tensor *t)
{
    memset(t, 0, sizeof *t);
    const struct kiln_tensor *in = kiln_in(k->k, i);
    if (!in) return 0;
    view_of(in, t);
    return 1;
}

static int api_kernel_output_wanted(const kiln_plugin_kernel *k, size_t j)
{
    return kiln_out_wanted(k->k, j);
}

/* A failure of a table function during run: the message goes to k->err (naming the node,
 * as every kernel error does) and to the plugin's err, which run is expected to return. */
static kiln_status kernel_fail(kiln_plugin_kernel *kk, kiln_status st, const char *fmt, ...)
    KILN_PRINTF(3, 4);
static kiln_status kernel_fail(kiln_plugin_kernel *kk, kiln_status st, const char *fmt, ...)
{
    char msg[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    kiln_kfail(kk->k, st, "%s", msg);
    return st;
}

/* After a kiln call that failed with its message in k->err: copy it to the plugin's err. */
static kiln_status kernel_pass(kiln_plugin_kernel *kk, kiln_status st)
{
    if (kk->k->err) {
        kiln_err_set(kk->perr, st, "%s", kk->k->err->msg);
        kk->kiln_fail = true;
    }
    return st;
}

static kiln_status api_kernel_output(kiln_plugin_kernel *kk, size_t j, kiln_dtype dtype, int rank,
                                     const int64_t *dims, unsigned flags, kiln_plugin_tensor *t)
{
    struct kiln_kctx *k = kk->k;
    kiln_status st = KILN_OK;
    if (t) memset(t, 0, sizeof *t);
    if (!t)
        st = kernel_fail(kk, KILN_E_INVALID_ARG, "the plugin asked for output %zu without a view to fill", j);
    else if (!kiln_out_wanted(k, j))
        st = kernel_fail(kk, KILN_E_INVALID_ARG, "the plugin allocated output %zu, which the node %s", j,
                         j < k->n_out ? "does not want" : "does not have");
    else if (!dtype_valid((int)dtype))
        st = kernel_fail(kk, KILN_E_INVALID_ARG,
                         "the plugin gave output %zu element type %d, which is "
                         "not a kiln_dtype",
                         j, (int)dtype);
    else if (dtype == KILN_DTYPE_STRING)
        st = kernel_fail(kk, KILN_E_UNSUPPORTED, "output %zu: plugins cannot make string tensors", j);
    else if (rank < 0 || rank > KILN_PLUGIN_MAX_RANK || (rank > 0 && !dims))
        st = kernel_fail(kk, KILN_E_INVALID_ARG,
                         "the plugin gave output %zu rank %d; expected 0 to %d "
                         "with dims",
                         j, rank, KILN_PLUGIN_MAX_RANK);
    for (int d = 0; !st && d < rank; d++)
        if (dims[d] < 0)
            st = kernel_fail(kk, KILN_E_INVALID_ARG, "the plugin gave output %zu dim %d size %lld", j, d,
                             (long long)dims[d]);
    if (st) return kernel_pass(kk, st);
    struct kiln_tensor *out;
    st = (flags & KILN_PLUGIN_OUTPUT_UNINIT) ? kiln_out_tensor_raw(k, j, dtype, rank, dims, &out)
                                             : kiln_out_tensor(k, j, dtype, rank, dims, &out);
    if (st) return kernel_pass(kk, st);
    view_of(out, t);
    return KILN_OK;
}

static kiln_status api_kernel_scratch(kiln_plugin_kernel *kk, size_t bytes, void **p)
{
    kiln_status st = kiln_scratch(kk->k, bytes, p);
    return st ? kernel_pass(kk, st) : KILN_OK;
}

struct pstate {
    const struct kiln_plugin_entry *e;
    void *state;        /* the plugin's (NULL: none) */
    const void *packed; /* the prepacked blob (NULL: none) */
    size_t packed_bytes;
};

static const void *api_kernel_packed(const kiln_plugin_kernel *k, size_t *bytes)
{
    if (bytes) *bytes = k->ps->packed_bytes;
    return k->ps->packed;
}

static int api_kernel_threads(const kiln_plugin_kernel *k)
{
    return kiln_pool_threads(k->k->pool);
}

struct for_ctx {
    kiln_plugin_for_fn fn;
    void *ctx;
};

static void for_chunk(void *ctx, size_t begin, size_t end, int worker)
{
    const struct for_ctx *f = ctx;
    f->fn(f->ctx, begin, end, worker);
}

static void api_parallel_for(kiln_plugin_kernel *k, size_t n, size_t grain, kiln_plugin_for_fn fn, void *ctx)
{
    struct for_ctx f = {fn, ctx};
    if (fn && n) kiln_pool_for(k->k->pool, n, grain, for_chunk, &f);
}

static const kiln_plugin_api api = {
    .abi_version = KILN_PLUGIN_ABI_VERSION,
    .size = sizeof(kiln_plugin_api),
    .register_op = api_register_op,
    .registry_error = api_registry_error,
    .node_name = api_node_name,
    .node_op_type = api_node_op_type,
    .node_domain = api_node_domain,
    .node_version = api_node_version,
    .node_input_count = api_node_input_count,
    .node_output_count = api_node_output_count,
    .node_input_name = api_node_input_name,
    .node_output_name = api_node_output_name,
    .attr_type = api_attr_type,
    .attr_int = api_attr_int,
    .attr_float = api_attr_float,
    .attr_string = api_attr_string,
    .attr_ints = api_attr_ints,
    .attr_floats = api_attr_floats,
    .attr_strings = api_attr_strings,
    .attr_tensor = api_attr_tensor,
    .prep_node = api_prep_node,
    .prep_input_type = api_prep_input_type,
    .prep_output_type = api_prep_output_type,
    .prep_const_input = api_prep_const_input,
    .prep_threads = api_prep_threads,
    .kernel_node = api_kernel_node,
    .kernel_input = api_kernel_input,
    .kernel_output_wanted = api_kernel_output_wanted,
    .kernel_output = api_kernel_output,
    .kernel_scratch = api_kernel_scratch,
    .kernel_packed = api_kernel_packed,
    .kernel_threads = api_kernel_threads,
    .parallel_for = api_parallel_for,
};

/* ------------------------------------------------------------------ the kernel bridge */

/* A plugin's message as kiln promises messages: one line, NUL-terminated. */
static void one_line(kiln_err *perr)
{
    perr->msg[sizeof perr->msg - 1] = 0;
    for (char *c = perr->msg; *c; c++)
        if (*c == '\n' || *c == '\r') *c = ' ';
}

/* A plugin callback's failure as a kernel error: "<node> (opset N): <the plugin's message>". */
static kiln_status plugin_fail(struct kiln_kctx *k, kiln_status st, kiln_err *perr, const char *what)
{
    one_line(perr);
    if (st <= KILN_OK || st > KILN_E_CANCELLED)
        return kiln_kfail(k, KILN_E_INTERNAL, "the plugin's %s returned %d, which is not a kiln_status%s%s",
                          what, (int)st, perr->msg[0] ? ": " : "", perr->msg);
    if (!perr->msg[0])
        return kiln_kfail(k, st, "the plugin's %s failed (%s) without a message", what, kiln_status_name(st));
    return kiln_kfail(k, st, "%.*s", (int)sizeof perr->msg, perr->msg);
}

static void pstate_release(void *arg)
{
    struct pstate *ps = arg;
    if (ps->state && ps->e->op.release) ps->e->op.release(ps->e->op.user, ps->state);
    ps->state = NULL;
}

static kiln_status tramp_prepare(struct kiln_kprep *p)
{
    const struct kiln_node *n = p->kc.node;
    const struct kiln_plugin_entry *e = find_entry(n->domain, n->op_type, p->kc.opset, "cpu");
    if (!e) return kiln_kfail(&p->kc, KILN_E_INTERNAL, "no plugin declares this op at this version");
    const kiln_plugin_op *op = &e->op;
    struct pstate *ps;
    KILN_TRY(kiln_kprep_alloc(p, sizeof *ps, (void **)&ps));
    ps->e = e;
    /* Registered before the plugin's prepare runs, so that a state it makes is released
     * whatever fails later (prepack here, another node, the plan). */
    KILN_TRY(kiln_kprep_on_free(p, pstate_release, ps));
    struct kiln_plugin_prep pp = {.node = {n, p->kc.opset}, .p = p};
    kiln_err perr = {0};
    kiln_status st;
    if (op->prepare) {
        void *state = NULL;
        st = op->prepare(op->user, &pp, &state, &perr);
        if (st) return plugin_fail(&p->kc, st, &perr, "prepare");
        ps->state = state;
    }
    if (op->scratch_size) p->scratch_bytes = op->scratch_size(op->user, &pp, ps->state);
    if (op->prepack_size) {
        size_t bytes = 0;
        st = op->prepack_size(op->user, &pp, ps->state, &bytes, &perr);
        if (st) return plugin_fail(&p->kc, st, &perr, "prepack_size");
        if (bytes) {
            void *data;
            bool fill;
            KILN_TRY(kiln_kprep_blob(p, PREPACK_KEY, bytes, &data, &fill));
            if (fill) {
                st = op->prepack(op->user, &pp, ps->state, data, bytes, &perr);
                if (st) return plugin_fail(&p->kc, st, &perr, "prepack");
            }
            ps->packed = data;
            ps->packed_bytes = bytes;
        }
    }
    p->state = ps;
    p->kernel = e->kernel;
    p->chosen = 0;
    return KILN_OK;
}

static kiln_status tramp_run(struct kiln_kctx *k)
{
    const struct pstate *ps = k->state;
    struct pstate unprepared = {0};
    if (!ps) { /* a caller that skipped prepare */
        unprepared.e = find_entry(k->node->domain, k->node->op_type, k->opset, "cpu");
        if (!unprepared.e)
            return kiln_kfail(k, KILN_E_INTERNAL, "no plugin declares this op at this version");
        ps = &unprepared;
    }
    const kiln_plugin_op *op = &ps->e->op;
    kiln_err perr = {0};
    struct kiln_plugin_kernel kk = {.node = {k->node, k->opset}, .k = k, .ps = ps, .perr = &perr};
    kiln_status st = op->run(op->user, &kk, ps->state, &perr);
    if (st) {
        /* A message kiln wrote (a failed allocation) already names the node. */
        if (kk.kiln_fail && k->err && strncmp(perr.msg, k->err->msg, sizeof perr.msg) == 0 && st > KILN_OK &&
            st <= KILN_E_CANCELLED)
            return kiln_err_set(k->err, st, "%s", perr.msg);
        return plugin_fail(k, st, &perr, "run");
    }
    for (size_t j = 0; j < k->n_out; j++)
        if (kiln_out_wanted(k, j) && !k->out[j])
            return kiln_kfail(k, KILN_E_INTERNAL,
                              "the plugin's run succeeded without making output %zu ('%s')", j,
                              k->node->outputs[j]);
    return KILN_OK;
}

/* ------------------------------------------------------------------ shape inference */

kiln_status kiln_plugin_infer(struct kiln_ictx *c, bool *handled, kiln_err *err)
{
    *handled = false;
    const struct kiln_node *n = c->node;
    if (!first_entry() || !n->op_type) return KILN_OK;
    int64_t version = n->since > 0 ? n->since : c->m ? kiln_model_opset_for(c->m, n->domain) : -1;
    if (version <= 0 || version > INT32_MAX) return KILN_OK;
    const struct kiln_plugin_entry *e = find_entry(n->domain, n->op_type, (int)version, NULL);
    if (!e) return KILN_OK;
    *handled = true;
    kiln_plugin_type *in = kiln_calloc(c->n_in + 1, sizeof *in);
    kiln_plugin_type *out = kiln_calloc(c->n_out + 1, sizeof *out);
    struct symtab *syms = kiln_calloc(1, sizeof *syms);
    kiln_status st = KILN_OK;
    if (!in || !out || !syms) {
        st = kiln_err_set(err, KILN_E_NOMEM, "shape inference: out of memory");
        goto done;
    }
    for (size_t i = 0; i < c->n_in; i++) type_of(c->in[i], syms, &in[i]);
    for (size_t j = 0; j < c->n_out; j++) type_of(NULL, syms, &out[j]);
    kiln_err perr = {0};
    struct kiln_plugin_node pn = {n, (int)version};
    kiln_status pst = e->op.infer(e->op.user, &pn, c->n_in, in, c->n_out, out, &perr);
    if (pst) {
        one_line(&perr);
        if (perr.msg[0])
            kiln_ic_problem(c, "%.*s", (int)sizeof perr.msg, perr.msg);
        else
            kiln_ic_problem(c, "the plugin's shape function failed (status %d) without a message", (int)pst);
        goto done;
    }
    for (size_t j = 0; j < c->n_out; j++) {
        const kiln_plugin_type *t = &out[j];
        if (!c->out[j] || (t->dtype == KILN_DTYPE_UNDEFINED && t->rank == -1)) continue;
        if (t->dtype != KILN_DTYPE_UNDEFINED && !dtype_valid((int)t->dtype)) {
            kiln_ic_problem(c,
                            "the plugin's shape function gave output '%s' element type %d, which is "
                            "not a kiln_dtype",
                            n->outputs[j], (int)t->dtype);
            continue;
        }
        if (t->rank < -1 || t->rank > KILN_PLUGIN_MAX_RANK) {
            kiln_ic_problem(c,
                            "the plugin's shape function gave output '%s' rank %d; expected -1 "
                            "(unknown) to %d",
                            n->outputs[j], t->rank, KILN_PLUGIN_MAX_RANK);
            continue;
        }
        struct kiln_dim dims[KILN_PLUGIN_MAX_RANK];
        for (int d = 0; d < t->rank; d++) {
            int64_t v = t->dims[d];
            int s = v <= -2 && v >= -1 - (int64_t)syms->n ? (int)(-2 - v) : -1;
            dims[d] = v >= 0   ? kiln_dim_int(v)
                      : s >= 0 ? (struct kiln_dim){.value = -1, .param = syms->param[s]}
                               : kiln_dim_unknown();
        }
        st = kiln_ic_set_tensor(c, j, t->dtype, t->rank, dims);
        if (st) {
            st = kiln_err_set(err, KILN_E_NOMEM, "shape inference: out of memory");
            goto done;
        }
    }
done:
    kiln_free(in);
    kiln_free(out);
    kiln_free(syms);
    return st;
}

/* ------------------------------------------------------------------ known ops */

static bool local_function(const struct kiln_model *m, const char *domain, const char *op_type)
{
    for (size_t i = 0; i < m->n_functions; i++) {
        const struct kiln_function *f = &m->functions[i];
        if (f->name && strcmp(f->name, op_type) == 0 && strcmp(norm_domain(f->domain), domain) == 0)
            return true;
    }
    return false;
}

bool kiln_op_known(const struct kiln_model *m, const char *domain, const char *op_type)
{
    domain = norm_domain(domain);
    if (!op_type || !op_type[0]) return true; /* not an op at all: the checker's to report */
    /* Domains kiln knows keep their own rules: an op the schema lacks, removed or too new is
     * a checker problem, and one without a kernel fails at session creation, so that kiln
     * check and kiln info still work on such models. */
    if (kiln_schema_latest(domain) > 0) return true;
    return (m && local_function(m, domain, op_type)) || kiln_cpu_has_op(domain, op_type) ||
           kiln_plugin_declares(domain, op_type, NULL);
}

static kiln_status check_nodes(const struct kiln_model *m, const struct kiln_node *nodes, size_t n_nodes,
                               const char *where_kind, const char *where, int depth, const char *who,
                               kiln_err *err);

static kiln_status check_graph(const struct kiln_model *m, const struct kiln_graph *g, int depth,
                               const char *who, kiln_err *err)
{
    if (!g || depth > 256) return KILN_OK; /* the decoder bounds nesting long before this */
    return check_nodes(m, g->nodes, g->n_nodes, g->parent ? "subgraph" : NULL, g->name ? g->name : "", depth,
                       who, err);
}

static kiln_status check_nodes(const struct kiln_model *m, const struct kiln_node *nodes, size_t n_nodes,
                               const char *where_kind, const char *where, int depth, const char *who,
                               kiln_err *err)
{
    for (size_t i = 0; i < n_nodes; i++) {
        const struct kiln_node *n = &nodes[i];
        if (!kiln_op_known(m, n->domain, n->op_type)) {
            char name[300], in[400] = "";
            if (n->name && n->name[0])
                snprintf(name, sizeof name, "node '%s'", n->name);
            else
                snprintf(name, sizeof name, "node #%zu", i);
            if (where_kind) snprintf(in, sizeof in, " in %s '%s'", where_kind, where);
            return kiln_err_set(err, KILN_E_UNSUPPORTED,
                                "%s: %s (%s)%s: op '%s' of domain '%s' is not known to kiln and no loaded "
                                "plugin declares it (kiln --plugin LIB.so)",
                                who, name, n->op_type, in, n->op_type, n->domain);
        }
        for (size_t k = 0; k < n->n_attr; k++) {
            const struct kiln_attr *a = &n->attrs[k];
            if (a->type == KILN_ATTR_GRAPH) KILN_TRY(check_graph(m, a->g, depth + 1, who, err));
            if (a->type == KILN_ATTR_GRAPHS && a->graphs)
                for (size_t j = 0; j < a->n; j++) KILN_TRY(check_graph(m, a->graphs[j], depth + 1, who, err));
        }
    }
    return KILN_OK;
}

kiln_status kiln_plugin_check_ops(const struct kiln_model *m, const char *who, kiln_err *err)
{
    KILN_TRY(check_graph(m, m->graph, 0, who, err));
    for (size_t i = 0; i < m->n_functions; i++) {
        const struct kiln_function *f = &m->functions[i];
        KILN_TRY(check_nodes(m, f->nodes, f->n_nodes, "function", f->name ? f->name : "", 0, who, err));
    }
    return KILN_OK;
}

/* ------------------------------------------------------------------ registration */

struct kiln_plugin_registry {
    const struct plugin_lib *lib;
    const char *path;
    struct kiln_plugin_entry *pending, **tail; /* in declaration order */
    size_t n_decl;                             /* register_op calls so far */
    kiln_status st;                            /* the first failure */
    char msg[900];
};

static void reg_fail(kiln_plugin_registry *r, kiln_status st, const char *fmt, ...) KILN_PRINTF(3, 4);
static void reg_fail(kiln_plugin_registry *r, kiln_status st, const char *fmt, ...)
{
    if (r->st) return; /* the first failure is the one to report */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->msg, sizeof r->msg, fmt, ap);
    va_end(ap);
    r->st = st;
}

static void api_registry_error(kiln_plugin_registry *r, const char *message)
{
    if (r && message) reg_fail(r, KILN_E_UNSUPPORTED, "%s", message);
}

/* "versions 1..3", "versions 2 and later" into buf. */
static const char *range_str(int since, int until, char *buf, size_t size)
{
    if (until == 0)
        snprintf(buf, size, "versions %d and later", since);
    else if (until == since)
        snprintf(buf, size, "version %d", since);
    else
        snprintf(buf, size, "versions %d..%d", since, until);
    return buf;
}

static bool name_ok(const char *s, size_t max)
{
    if (!s || strlen(s) > max) return false;
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f) return false;
    return true;
}

static kiln_status api_register_op(kiln_plugin_registry *r, const kiln_plugin_op *op)
{
    if (!r) return KILN_E_INVALID_ARG;
    size_t k = ++r->n_decl;
    char rg[80], rg2[80];
    if (!op) {
        reg_fail(r, KILN_E_INVALID_ARG, "declaration #%zu is NULL", k);
        return KILN_E_INVALID_ARG;
    }
    /* Nothing past abi_version may be read before the version matches: the layout is the
     * version's. */
    if (op->abi_version != KILN_PLUGIN_ABI_VERSION) {
        reg_fail(r, KILN_E_UNSUPPORTED,
                 "declaration #%zu was built for plugin ABI version %u; this kiln "
                 "speaks ABI version %u (rebuild the plugin against this kiln's kiln_plugin.h)",
                 k, (unsigned)op->abi_version, (unsigned)KILN_PLUGIN_ABI_VERSION);
        return KILN_E_UNSUPPORTED;
    }
    if (!name_ok(op->op_type, 256) || !op->op_type[0] || !name_ok(op->domain, 256)) {
        reg_fail(r, KILN_E_INVALID_ARG, "declaration #%zu: %s", k,
                 !name_ok(op->op_type, 256) || !op->op_type[0]
                     ? "op_type must be a non-empty name (printable, at most 256 bytes)"
                     : "domain must be a name (\"\" or \"ai.onnx\" for the default domain; at most 256 "
                       "bytes)");
        return KILN_E_INVALID_ARG;
    }
    const char *domain = norm_domain(op->domain);
    const char *backend = op->backend ? op->backend : "cpu";
    const char *dshow = domain[0] ? domain : "ai.onnx";
    char what[700];
    snprintf(what, sizeof what, "op '%s' of domain '%s'", op->op_type, dshow);
    const char *problem = NULL;
    if (op->since < 1 || (op->until != 0 && op->until < op->since))
        problem = "its versions must be since >= 1 and until 0 (no limit) or >= since";
    else if (!op->infer || !op->run)
        problem = "it needs an infer (shape and type) function and a run function";
    else if (!op->prepack != !op->prepack_size)
        problem = "prepack and prepack_size come together";
    else if (op->flags & ~KILN_PLUGIN_OP_INPLACE)
        problem = "its flags have bits this kiln does not know";
    else if (!name_ok(backend, 64) || !backend[0])
        problem = "its backend must be a name such as \"cpu\"";
    if (problem) {
        reg_fail(r, KILN_E_INVALID_ARG, "declaration #%zu (%s): %s", k, what, problem);
        return KILN_E_INVALID_ARG;
    }
    if (kiln_schema_latest(domain) > 0 && !kiln_schema_find(domain, op->op_type)) {
        reg_fail(r, KILN_E_INVALID_ARG,
                 "declaration #%zu (%s): domain '%s' belongs to ONNX (or kiln), "
                 "whose schema has no such op; declare custom ops in a domain of your own, such as "
                 "'com.example'",
                 k, what, dshow);
        return KILN_E_INVALID_ARG;
    }
    range_str(op->since, op->until, rg, sizeof rg);
    if (strcmp(backend, "cpu") == 0 && kiln_cpu_builtin_overlaps(domain, op->op_type, op->since, op->until)) {
        reg_fail(r, KILN_E_INVALID_ARG, "duplicate op: %s at %s already has a kernel in kiln", what, rg);
        return KILN_E_INVALID_ARG;
    }
    for (const struct kiln_plugin_entry *e = first_entry(); e; e = e->next)
        if (!strcmp(e->op_type, op->op_type) && !strcmp(e->domain, domain) && !strcmp(e->backend, backend) &&
            ranges_overlap(op->since, op->until, e->op.since, e->op.until)) {
            reg_fail(r, KILN_E_INVALID_ARG,
                     "duplicate op: %s at %s (backend %s) is already declared, at "
                     "%s, by plugin '%s'",
                     what, rg, backend, range_str(e->op.since, e->op.until, rg2, sizeof rg2), e->lib_path);
            return KILN_E_INVALID_ARG;
        }
    for (const struct kiln_plugin_entry *e = r->pending; e; e = e->next)
        if (!strcmp(e->op_type, op->op_type) && !strcmp(e->domain, domain) && !strcmp(e->backend, backend) &&
            ranges_overlap(op->since, op->until, e->op.since, e->op.until)) {
            reg_fail(r, KILN_E_INVALID_ARG,
                     "duplicate op: %s at %s (backend %s) is declared twice by this "
                     "plugin",
                     what, rg, backend);
            return KILN_E_INVALID_ARG;
        }

    const char *file = strrchr(r->path, '/');
    file = file ? file + 1 : r->path;
    size_t ld = strlen(domain) + 1, lo = strlen(op->op_type) + 1, lb = strlen(backend) + 1;
    size_t lk = strlen("plugin ") + strlen(file) + 1;
    struct kiln_plugin_entry *e = kiln_calloc(1, sizeof *e + ld + lo + lb + lk);
    if (!e) {
        reg_fail(r, KILN_E_NOMEM, "out of memory registering %s", what);
        return KILN_E_NOMEM;
    }
    char *s = e->strings;
    e->domain = memcpy(s, domain, ld), s += ld;
    e->op_type = memcpy(s, op->op_type, lo), s += lo;
    e->backend = memcpy(s, backend, lb), s += lb;
    snprintf(s, lk, "plugin %s", file);
    e->kernel = s;
    e->lib_path = r->lib->path;
    e->op = *op;
    e->op.domain = e->domain;
    e->op.op_type = e->op_type;
    e->op.backend = e->backend;
    e->cpu = (struct kiln_cpu_op){
        .name = e->op_type,
        .domain = e->domain,
        .since = op->since,
        .until = op->until,
        .run = tramp_run,
        .prepare = tramp_prepare,
        .flags = (op->flags & KILN_PLUGIN_OP_INPLACE) ? KILN_OP_INPLACE : 0,
    };
    *r->tail = e;
    r->tail = &e->next;
    return KILN_OK;
}

static void free_pending(struct kiln_plugin_entry *e)
{
    while (e) {
        struct kiln_plugin_entry *next = e->next;
        kiln_free(e);
        e = next;
    }
}

/* Publishes r's entries (under reg_lock). Each is pushed at the head with a release store,
 * so a reader sees an entry only with everything written into it. */
static void publish(kiln_plugin_registry *r)
{
    struct kiln_plugin_entry *e = r->pending;
    while (e) {
        struct kiln_plugin_entry *next = e->next;
        e->next = atomic_load_explicit(&reg_head, memory_order_relaxed);
        atomic_store_explicit(&reg_head, e, memory_order_release);
        e = next;
    }
    r->pending = NULL;
}

/* Opens and registers the library (reg_lock held). */
static kiln_status load_locked(const char *path, kiln_err *err)
{
    /* dlopen searches the library path for a bare file name; a file of that name in the
     * current folder is what a user typing `--plugin libswish.so` means. */
    char local[4096];
    const char *open_path = path;
    if (!strchr(path, '/')) {
        if (access(path, F_OK) == 0) {
            snprintf(local, sizeof local, "./%s", path);
            open_path = local;
        }
    } else if (access(path, F_OK) != 0) {
        return kiln_err_set(err, KILN_E_IO, "plugin '%s': cannot open: %s", path, strerror(errno));
    }
    dlerror();
    void *h = dlopen(open_path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *why = dlerror();
        return kiln_err_set(err, KILN_E_INVALID_ARG, "plugin '%s': cannot load: %s", path,
                            why ? why : "dlopen failed");
    }
    for (const struct plugin_lib *l = libs; l; l = l->next)
        if (l->handle == h) {
            dlclose(h); /* drops this call's reference; the first one keeps it loaded */
            return KILN_OK;
        }
    void *sym = dlsym(h, KILN_PLUGIN_REGISTER_SYMBOL);
    if (!sym) {
        dlclose(h); /* none of its code has been called beyond its constructors */
        return kiln_err_set(err, KILN_E_INVALID_ARG,
                            "plugin '%s': the library exports no function %s, so it is not a kiln "
                            "plugin (see kiln_plugin.h)",
                            path, KILN_PLUGIN_REGISTER_SYMBOL);
    }
    size_t lp = strlen(path) + 1;
    struct plugin_lib *lib = kiln_calloc(1, sizeof *lib + lp);
    if (!lib) {
        dlclose(h);
        return kiln_err_set(err, KILN_E_NOMEM, "plugin '%s': out of memory", path);
    }
    memcpy(lib->path, path, lp);
    lib->handle = h;
    kiln_plugin_register_fn reg;
    memcpy(&reg, &sym, sizeof reg); /* POSIX: dlsym's object pointer is the function */
    kiln_plugin_registry r = {.lib = lib, .path = path};
    r.tail = &r.pending;
    int rc = reg(&r, &api);
    if (rc != 0 || r.st) {
        kiln_status st = r.st ? r.st : KILN_E_UNSUPPORTED;
        if (rc != 0 && !r.msg[0])
            snprintf(r.msg, sizeof r.msg, "%s returned %d", KILN_PLUGIN_REGISTER_SYMBOL, rc);
        free_pending(r.pending);
        kiln_free(lib);
        /* The library stays open: its register function ran and may have left threads or
         * handlers behind, so closing it would not be safe. */
        return kiln_err_set(err, st, "plugin '%s': %s", path, r.msg);
    }
    publish(&r);
    lib->next = libs;
    libs = lib;
    return KILN_OK;
}

kiln_status kiln_plugin_load(const char *path, kiln_err *err)
{
    if (!path || !path[0]) return kiln_err_set(err, KILN_E_INVALID_ARG, "plugin: no path given");
    if (strlen(path) >= 4000)
        return kiln_err_set(err, KILN_E_INVALID_ARG, "plugin: path of %zu bytes is too long", strlen(path));
    pthread_mutex_lock(&reg_lock);
    kiln_status st = load_locked(path, err);
    pthread_mutex_unlock(&reg_lock);
    return st;
}

kiln_status kiln_session_options_add_plugin(kiln_session_options *o, const char *path, kiln_err *err)
{
    (void)o; /* the registry is the process's: nothing is kept in the options */
    return kiln_plugin_load(path, err);
}
