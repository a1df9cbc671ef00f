/* kernel.c: the kernel context helpers (inputs, attributes, outputs, scratch, errors) and
 * the CPU op registry built from op_table.def. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cpu/act.h"
#include "cpu/kernel.h"
#include "exec/engine.h"
#include "infer/infer.h"
#include "plugin/plugin.h"

/* ------------------------------------------------------------------ registry */

#define KILN_CPU_FAMILY(f) extern const struct kiln_cpu_op kiln_cpu_ops_##f[];
#include "cpu/op_table.def"
#undef KILN_CPU_FAMILY

static const struct kiln_cpu_op *const families[] = {
#define KILN_CPU_FAMILY(f) kiln_cpu_ops_##f,
#include "cpu/op_table.def"
#undef KILN_CPU_FAMILY
};

static bool same_domain(const char *a, const char *b)
{
    if (!a || strcmp(a, "ai.onnx") == 0) a = "";
    if (!b || strcmp(b, "ai.onnx") == 0) b = "";
    return strcmp(a, b) == 0;
}

const struct kiln_cpu_op *kiln_cpu_find_op(const char *domain, const char *op_type, int version)
{
    for (size_t f = 0; f < sizeof families / sizeof families[0]; f++)
        for (const struct kiln_cpu_op *op = families[f]; op->name; op++)
            if (strcmp(op->name, op_type) == 0 && same_domain(op->domain, domain) &&
                version >= op->since && (op->until == 0 || version <= op->until))
                return op;
    /* Plugin hook: an op none of kiln's kernels runs may be declared by a loaded plugin
     * (src/plugin/plugin.c). Its kernel is a kiln_cpu_op like these, whose prepare and run
     * call the plugin's functions. Registration refuses declarations that overlap the
     * table above, so kiln's own kernel always wins. */
    return kiln_plugin_cpu_op(domain, op_type, version);
}

bool kiln_cpu_has_op(const char *domain, const char *op_type)
{
    for (size_t f = 0; f < sizeof families / sizeof families[0]; f++)
        for (const struct kiln_cpu_op *op = families[f]; op->name; op++)
            if (strcmp(op->name, op_type) == 0 && same_domain(op->domain, domain)) return true;
    return kiln_plugin_declares(domain, op_type, "cpu"); /* plugin hook, as above */
}

bool kiln_cpu_builtin_overlaps(const char *domain, const char *op_type, int since, int until)
{
    for (size_t f = 0; f < sizeof families / sizeof families[0]; f++)
        for (const struct kiln_cpu_op *op = families[f]; op->name; op++)
            if (strcmp(op->name, op_type) == 0 && same_domain(op->domain, domain) &&
                (until == 0 || op->since <= until) && (op->until == 0 || since <= op->until))
                return true;
    return false;
}

/* ------------------------------------------------------------------ errors */

kiln_status kiln_kfail(struct kiln_kctx *k, kiln_status st, const char *fmt, ...)
{
    char lb[300], msg[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return kiln_err_set(k->err, st, "%s (opset %d): %s", kiln_node_label(k->node, lb, sizeof lb),
                        k->opset, msg);
}

/* ------------------------------------------------------------------ inputs */

const struct kiln_value *kiln_in_value(const struct kiln_kctx *k, size_t i)
{
    return i < k->n_in ? k->in[i] : NULL;
}

const struct kiln_tensor *kiln_in(const struct kiln_kctx *k, size_t i)
{
    const struct kiln_value *v = kiln_in_value(k, i);
    return v && v->kind == KILN_VALUE_TENSOR ? &v->t : NULL;
}

kiln_status kiln_in_req(struct kiln_kctx *k, size_t i, const struct kiln_tensor **t)
{
    const struct kiln_value *v = kiln_in_value(k, i);
    *t = NULL;
    if (!v) return kiln_kfail(k, KILN_E_INVALID_MODEL, "required input %zu is missing", i);
    if (v->kind != KILN_VALUE_TENSOR)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input %zu ('%s') is a %s; expected a tensor", i,
                          i < k->node->n_in ? k->node->inputs[i] : "",
                          v->kind == KILN_VALUE_SEQUENCE ? "sequence" : "optional");
    *t = &v->t;
    return KILN_OK;
}

int64_t kiln_tensor_get_i64(const struct kiln_tensor *t, size_t j)
{
    const void *d = t->data;
    switch (t->dtype) {
    case KILN_DTYPE_I64: return ((const int64_t *)d)[j];
    case KILN_DTYPE_I32: return ((const int32_t *)d)[j];
    case KILN_DTYPE_I16: return ((const int16_t *)d)[j];
    case KILN_DTYPE_I8: case KILN_DTYPE_I4: case KILN_DTYPE_I2: return ((const int8_t *)d)[j];
    case KILN_DTYPE_U64: return (int64_t)((const uint64_t *)d)[j];
    case KILN_DTYPE_U32: return ((const uint32_t *)d)[j];
    case KILN_DTYPE_U16: return ((const uint16_t *)d)[j];
    case KILN_DTYPE_U8: case KILN_DTYPE_U4: case KILN_DTYPE_U2: case KILN_DTYPE_BOOL:
        return ((const uint8_t *)d)[j];
    default: {
        /* Float to int64 out of range (or NaN) is undefined behaviour in C; a hostile model
         * can feed any float where an op reads integers, so saturate and map NaN to 0. */
        double v = kiln_tensor_get_f64(t, j);
        if (v != v) return 0;
        if (v >= 9223372036854775808.0) return INT64_MAX;
        if (v < -9223372036854775808.0) return INT64_MIN;
        return (int64_t)v;
    }
    }
}

double kiln_tensor_get_f64(const struct kiln_tensor *t, size_t j)
{
    const void *d = t->data;
    switch (t->dtype) {
    case KILN_DTYPE_F32: return ((const float *)d)[j];
    case KILN_DTYPE_F64: return ((const double *)d)[j];
    case KILN_DTYPE_F16: return kiln_f16_to_f32(((const uint16_t *)d)[j]);
    case KILN_DTYPE_BF16: return kiln_bf16_to_f32(((const uint16_t *)d)[j]);
    case KILN_DTYPE_U64: return (double)((const uint64_t *)d)[j];
    default:
        if (kiln_dtype_is_int(t->dtype) || t->dtype == KILN_DTYPE_BOOL)
            return (double)kiln_tensor_get_i64(t, j);
        return NAN;
    }
}

static int64_t sat_i64(double v, double lo, double hi)
{
    if (isnan(v)) return 0;
    if (v <= lo) return (int64_t)lo;
    if (v >= hi) return (int64_t)hi;
    return (int64_t)v;
}

void kiln_tensor_set_f64(struct kiln_tensor *t, size_t j, double v)
{
    void *d = t->data;
    switch (t->dtype) {
    case KILN_DTYPE_F32: ((float *)d)[j] = (float)v; break;
    case KILN_DTYPE_F64: ((double *)d)[j] = v; break;
    case KILN_DTYPE_F16: ((uint16_t *)d)[j] = kiln_f32_to_f16((float)v); break;
    case KILN_DTYPE_BF16: ((uint16_t *)d)[j] = kiln_f32_to_bf16((float)v); break;
    case KILN_DTYPE_I64: ((int64_t *)d)[j] = sat_i64(v, -0x1p63, 0x1p63 - 1024); break;
    case KILN_DTYPE_I32: ((int32_t *)d)[j] = (int32_t)sat_i64(v, INT32_MIN, INT32_MAX); break;
    case KILN_DTYPE_I16: ((int16_t *)d)[j] = (int16_t)sat_i64(v, INT16_MIN, INT16_MAX); break;
    case KILN_DTYPE_I8: ((int8_t *)d)[j] = (int8_t)sat_i64(v, INT8_MIN, INT8_MAX); break;
    case KILN_DTYPE_I4: ((int8_t *)d)[j] = (int8_t)sat_i64(v, -8, 7); break;
    case KILN_DTYPE_I2: ((int8_t *)d)[j] = (int8_t)sat_i64(v, -2, 1); break;
    case KILN_DTYPE_U64:
        ((uint64_t *)d)[j] = isnan(v) || v <= 0 ? 0 : v >= 0x1p64 ? UINT64_MAX : (uint64_t)v;
        break;
    case KILN_DTYPE_U32: ((uint32_t *)d)[j] = (uint32_t)sat_i64(v, 0, UINT32_MAX); break;
    case KILN_DTYPE_U16: ((uint16_t *)d)[j] = (uint16_t)sat_i64(v, 0, UINT16_MAX); break;
    case KILN_DTYPE_U8: ((uint8_t *)d)[j] = (uint8_t)sat_i64(v, 0, UINT8_MAX); break;
    case KILN_DTYPE_U4: ((uint8_t *)d)[j] = (uint8_t)sat_i64(v, 0, 15); break;
    case KILN_DTYPE_U2: ((uint8_t *)d)[j] = (uint8_t)sat_i64(v, 0, 3); break;
    case KILN_DTYPE_BOOL: ((uint8_t *)d)[j] = v != 0; break;
    default: break;
    }
}

/* ------------------------------------------------------------------ attributes */

static const struct kiln_attr *attr_of(const struct kiln_kctx *k, const char *name,
                                       enum kiln_attr_type type)
{
    const struct kiln_attr *a = kiln_node_attr(k->node, name);
    return a && a->type == type ? a : NULL;
}

bool kiln_attr_has(const struct kiln_kctx *k, const char *name)
{
    return kiln_node_attr(k->node, name) != NULL;
}

int64_t kiln_attr_i(const struct kiln_kctx *k, const char *name, int64_t def)
{
    const struct kiln_attr *a = attr_of(k, name, KILN_ATTR_INT);
    return a ? a->i : def;
}

float kiln_attr_f(const struct kiln_kctx *k, const char *name, float def)
{
    const struct kiln_attr *a = attr_of(k, name, KILN_ATTR_FLOAT);
    return a ? a->f : def;
}

const char *kiln_attr_s(const struct kiln_kctx *k, const char *name, const char *def)
{
    const struct kiln_attr *a = attr_of(k, name, KILN_ATTR_STRING);
    return a && a->s ? a->s : def;
}

size_t kiln_attr_ints(const struct kiln_kctx *k, const char *name, const int64_t **v)
{
    const struct kiln_attr *a = attr_of(k, name, KILN_ATTR_INTS);
    *v = a ? a->ints : NULL;
    return a ? a->n : 0;
}

kiln_status kiln_attr_pair(struct kiln_kctx *k, const char *name, int64_t def, int64_t min, int64_t out[2])
{
    const int64_t *v;
    size_t n = kiln_attr_ints(k, name, &v);
    if (n && n != 2) return kiln_kfail(k, KILN_E_INVALID_MODEL, "%s has %zu values; expected 2", name, n);
    for (int i = 0; i < 2; i++) {
        out[i] = n ? v[i] : def;
        if (out[i] < min)
            return kiln_kfail(k, KILN_E_INVALID_MODEL, "%s[%d] = %lld; expected >= %lld", name, i,
                              (long long)out[i], (long long)min);
    }
    return KILN_OK;
}

kiln_status kiln_attr_act(struct kiln_kctx *k, struct kiln_act *act)
{
    const char *name = kiln_attr_s(k, "activation", "");
    const float *p;
    size_t np = kiln_attr_floats(k, "activation_params", &p);
    const char *approx = kiln_attr_s(k, "approximate", "none");
    if (!kiln_act_parse(name, p, np, approx, act))
        return kiln_kfail(k, KILN_E_INVALID_MODEL,
                          "activation '%s' with %zu parameters (approximate '%s') is not one kiln "
                          "knows (see docs/fused-ops.md)", name, np, approx);
    return KILN_OK;
}

size_t kiln_attr_floats(const struct kiln_kctx *k, const char *name, const float **v)
{
    const struct kiln_attr *a = attr_of(k, name, KILN_ATTR_FLOATS);
    *v = a ? a->floats : NULL;
    return a ? a->n : 0;
}

size_t kiln_attr_strings(const struct kiln_kctx *k, const char *name, const char *const **v)
{
    const struct kiln_attr *a = attr_of(k, name, KILN_ATTR_STRINGS);
    *v = a ? a->strings : NULL;
    return a ? a->n : 0;
}

const struct kiln_tensor *kiln_attr_t(const struct kiln_kctx *k, const char *name)
{
    const struct kiln_attr *a = attr_of(k, name, KILN_ATTR_TENSOR);
    return a ? a->t : NULL;
}

const struct kiln_graph *kiln_attr_g(const struct kiln_kctx *k, const char *name)
{
    const struct kiln_attr *a = attr_of(k, name, KILN_ATTR_GRAPH);
    return a ? a->g : NULL;
}

/* ------------------------------------------------------------------ outputs */

bool kiln_out_wanted(const struct kiln_kctx *k, size_t i)
{
    return i < k->n_out && k->node->outputs[i][0] != 0;
}

kiln_status kiln_out_value(struct kiln_kctx *k, size_t i, struct kiln_value *v)
{
    if (i >= k->n_out) {
        kiln_value_free(v);
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "output %zu is not declared (node has %zu)", i,
                          k->n_out);
    }
    kiln_value_free(k->out[i]);
    k->out[i] = v;
    return KILN_OK;
}

/* Output i in its planned place: the arena block the planner gave it, when the tensor fits
 * (and, for an in-place output, when the input it overwrites is really there with the same
 * size). False: take the heap path. */
static bool out_planned(struct kiln_kctx *k, size_t i, kiln_dtype dt, int rank, const int64_t *dims,
                        bool zero, struct kiln_tensor **t)
{
    if (!k->out_mem || !k->out_mem[i] || dt == KILN_DTYPE_STRING || dt == KILN_DTYPE_UNDEFINED ||
        rank < 0 || rank > KILN_MAX_RANK)
        return false;
    size_t n = 1;
    for (int d = 0; d < rank; d++)
        if (dims[d] < 0 || !kiln_mul_size(n, (size_t)dims[d], &n)) return false;
    size_t bytes;
    if (!kiln_mul_size(n, kiln_dtype_size(dt), &bytes) || bytes > k->out_cap[i]) return false;
    bool aliased = false;
    int a = k->out_alias ? k->out_alias[i] : -1;
    if (a >= 0) {
        const struct kiln_tensor *src = kiln_in(k, (size_t)a);
        if (src && src->data == k->out_mem[i]) {
            if (kiln_tensor_nbytes(src) != bytes || kiln_dtype_size(src->dtype) != kiln_dtype_size(dt)) return false;
            aliased = true;
        }
    }
    struct kiln_value *v = k->out_vals[i];
    kiln_value_release(k->out[i], k->cache);
    memset(v, 0, sizeof *v);
    v->kind = KILN_VALUE_TENSOR;
    v->t.dtype = dt;
    v->t.rank = rank;
    for (int d = 0; d < rank; d++) v->t.dims[d] = dims[d];
    v->t.data = k->out_mem[i];
    v->t.flags = 0; /* the arena's */
    if (!aliased) {
        if (zero) memset(v->t.data, 0, bytes);
#ifdef KILN_SANITIZE
        else memset(v->t.data, 0xFF, bytes);
#endif
    }
    k->out[i] = v;
    *t = &v->t;
    return true;
}

static kiln_status out_tensor(struct kiln_kctx *k, size_t i, kiln_dtype dt, int rank, const int64_t *dims,
                              bool zero, struct kiln_tensor **t)
{
    *t = NULL;
    if (i >= k->n_out)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "output %zu is not declared (node has %zu)", i,
                          k->n_out);
    if (out_planned(k, i, dt, rank, dims, zero, t)) return KILN_OK;
    if (k->limits && k->limits->max_tensor_bytes && dt != KILN_DTYPE_STRING && rank >= 0 &&
        rank <= KILN_MAX_RANK) {
        size_t n = kiln_dtype_size(dt);
        bool over = false;
        for (int d = 0; d < rank && !over; d++)
            over = dims[d] < 0 || !kiln_mul_size(n, (size_t)dims[d], &n);
        if (over || n > k->limits->max_tensor_bytes)
            return kiln_kfail(k, KILN_E_LIMIT,
                              "output %zu would take %zu bytes; the session's limit for one tensor "
                              "is %llu bytes", i, n, (unsigned long long)k->limits->max_tensor_bytes);
    }
    struct kiln_value *v;
    kiln_err e;
    kiln_status st = kiln_value_new_tensor_cached(dt, rank, dims, k->cache, zero, &v, &e);
    if (st) return kiln_kfail(k, st, "output %zu: %s", i, e.msg);
    kiln_value_release(k->out[i], k->cache);
    k->out[i] = v;
    *t = &v->t;
    return KILN_OK;
}

kiln_status kiln_out_tensor(struct kiln_kctx *k, size_t i, kiln_dtype dt, int rank,
                            const int64_t *dims, struct kiln_tensor **t)
{
    return out_tensor(k, i, dt, rank, dims, true, t);
}

kiln_status kiln_out_tensor_raw(struct kiln_kctx *k, size_t i, kiln_dtype dt, int rank,
                                const int64_t *dims, struct kiln_tensor **t)
{
    return out_tensor(k, i, dt, rank, dims, false, t);
}

/* ------------------------------------------------------------------ scratch */

struct scratch_block {
    struct scratch_block *next;
    void *raw;                                /* what to free */
};

static kiln_status scratch_get(struct kiln_kctx *k, size_t bytes, void **p, bool zero)
{
    *p = NULL;
    size_t need;
    if (!kiln_add_size(bytes, 63, &need))
        return kiln_kfail(k, KILN_E_LIMIT, "scratch request of %zu bytes is too large", bytes);
    need &= ~(size_t)63;
    struct kiln_scratch_arena *sa = k->scratch_arena;
    if (sa) {
        /* Count every request, so the context's next arena holds them all. */
        size_t want;
        if (kiln_add_size(sa->used, need, &want)) {
            if (want > sa->want) sa->want = want;
            if (want <= sa->size) {
                *p = sa->base + sa->used;
                sa->used = want;
                if (zero) memset(*p, 0, bytes);
                return KILN_OK;
            }
            sa->used = want; /* heap this time; the arena grows before the next run */
        }
    }
    size_t total;
    if (!kiln_add_size(sizeof(struct scratch_block) + 64, bytes, &total))
        return kiln_kfail(k, KILN_E_LIMIT, "scratch request of %zu bytes is too large", bytes);
    unsigned char *raw = zero ? kiln_calloc(1, total) : kiln_malloc(total);
    if (!raw) return kiln_kfail(k, KILN_E_NOMEM, "out of memory for %zu bytes of scratch", bytes);
    uintptr_t at = ((uintptr_t)raw + sizeof(struct scratch_block) + 63) & ~(uintptr_t)63;
    struct scratch_block *b = (struct scratch_block *)(at - sizeof(struct scratch_block));
    b->raw = raw;
    b->next = k->scratch;
    k->scratch = b;
    *p = (void *)at;
    return KILN_OK;
}

kiln_status kiln_scratch(struct kiln_kctx *k, size_t bytes, void **p)
{
    return scratch_get(k, bytes, p, true);
}

kiln_status kiln_scratch_raw(struct kiln_kctx *k, size_t bytes, void **p)
{
    return scratch_get(k, bytes, p, false);
}

/* Frees every scratch block of k (called by the executor after run). */
void kiln_kctx_free_scratch(struct kiln_kctx *k)
{
    struct scratch_block *b = k->scratch;
    while (b) {
        struct scratch_block *next = b->next;
        kiln_free(b->raw);
        b = next;
    }
    k->scratch = NULL;
    if (k->scratch_arena) k->scratch_arena->used = 0;
}

/* ------------------------------------------------------------------ prepare */

const struct kiln_tensor *kiln_kprep_const(const struct kiln_kprep *p, size_t i)
{
    if (i >= p->kc.n_in || !p->in || !p->in[i]) return NULL;
    return p->in[i]->konst;
}

kiln_status kiln_kprep_alloc(struct kiln_kprep *p, size_t bytes, void **out)
{
    *out = NULL;
    void *m = p->store ? kiln_arena_alloc(p->store->arena, bytes ? bytes : 1) : NULL;
    if (!m) return kiln_kfail(&p->kc, KILN_E_NOMEM, "out of memory preparing the kernel (%zu bytes)", bytes);
    memset(m, 0, bytes);
    *out = m;
    return KILN_OK;
}

kiln_status kiln_kprep_on_free(struct kiln_kprep *p, void (*fn)(void *arg), void *arg)
{
    if (!p->store || !kiln_arena_on_free(p->store->arena, fn, arg))
        return kiln_kfail(&p->kc, KILN_E_NOMEM, "out of memory preparing the kernel");
    return KILN_OK;
}

kiln_status kiln_kprep_blob(struct kiln_kprep *p, uint32_t key, size_t bytes, void **data, bool *fill)
{
    *data = NULL;
    *fill = false;
    struct kiln_prep_store *s = p->store;
    if (!s) return kiln_kfail(&p->kc, KILN_E_INTERNAL, "prepacking outside an engine");
    for (size_t i = 0; i < s->n_blobs; i++) {
        struct kiln_eblob *b = &s->blobs[i];
        if (b->graph != s->graph || b->node != s->node || b->key != key) continue;
        if (b->bytes != bytes)
            return kiln_kfail(&p->kc, KILN_E_INVALID_MODEL,
                              "prepacked blob %u holds %zu bytes; the kernel needs %zu (engine "
                              "built by another kernel version?)", key, b->bytes, bytes);
        if (s->fetch) s->fetch(s->fetch_ctx, b);
        *data = b->data;
        return KILN_OK;
    }
    if (s->loading)
        return kiln_kfail(&p->kc, KILN_E_INVALID_MODEL, "the engine file lacks prepacked blob %u", key);
    if (s->n_blobs == s->cap_blobs) {
        size_t cap = s->cap_blobs ? s->cap_blobs * 2 : 16;
        struct kiln_eblob *nb = kiln_realloc(s->blobs, cap * sizeof *nb);
        if (!nb) return kiln_kfail(&p->kc, KILN_E_NOMEM, "out of memory prepacking");
        s->blobs = nb;
        s->cap_blobs = cap;
    }
    void *m = kiln_aligned_alloc(64, bytes ? bytes : 1);
    if (!m) return kiln_kfail(&p->kc, KILN_E_NOMEM, "out of memory prepacking %zu bytes", bytes);
    memset(m, 0, bytes);
    s->blobs[s->n_blobs++] = (struct kiln_eblob){.graph = s->graph, .node = s->node, .key = key,
                                                 .bytes = bytes, .data = m, .owned = true};
    *data = m;
    *fill = true;
    return KILN_OK;
}

bool kiln_kprep_blob_peek(const struct kiln_kprep *p, uint32_t key, size_t *bytes)
{
    const struct kiln_prep_store *s = p->store;
    for (size_t i = 0; s && i < s->n_blobs; i++) {
        const struct kiln_eblob *b = &s->blobs[i];
        if (b->graph == s->graph && b->node == s->node && b->key == key) {
            *bytes = b->bytes;
            return true;
        }
    }
    return false;
}

bool kiln_kprep_loading(const struct kiln_kprep *p)
{
    return p->store && p->store->loading;
}

/* ------------------------------------------------------------------ run without prepare */

/* Runs `prepare` for k's node on the spot (no inferred types, no constant inputs: prepare
 * sees only the node, its opset and its attributes) into memory that lives for this one
 * call, then `run` with the state it made. For callers that drive a kernel's run directly
 * without preparing it first (the unit tests' run_node); the engine and kiln_eval_node
 * always prepare, so there k->state is set and this is never reached. Errors of prepare are
 * reported as run's would be (same k->err, same message prefix). */
kiln_status kiln_cpu_run_unprepared(struct kiln_kctx *k, kiln_status (*prepare)(struct kiln_kprep *),
                                    kiln_status (*run)(struct kiln_kctx *))
{
    struct kiln_arena arena = {0};
    struct kiln_prep_store store = {.arena = &arena};
    struct kiln_kprep p = {
        .kc = {.node = k->node, .opset = k->opset, .n_in = k->n_in, .n_out = k->n_out, .err = k->err},
        .threads = 1, .variant = -1, .store = &store,
    };
    kiln_status st = prepare(&p);
    if (!st && !p.state)
        st = kiln_kfail(k, KILN_E_INTERNAL, "prepare made no state (kiln_cpu_run_unprepared)");
    if (!st) {
        k->state = p.state;
        st = run(k);
        k->state = NULL;
    }
    for (size_t i = 0; i < store.n_blobs; i++) kiln_aligned_free(store.blobs[i].data);
    kiln_free(store.blobs);
    kiln_arena_free(&arena);
    return st;
}

/* Keeps a check of prepare that failed with status st and message e->msg (written through
 * a kiln_kctx whose err was e) for run to report, as the kernel did before it had prepare:
 * *msg becomes a copy of the message in prepare's memory and KILN_OK is returned. Out of
 * memory is not kept but is prepare's own failure: it is copied into p->kc.err and
 * returned. st KILN_OK leaves *msg NULL. Run reports a kept failure with
 * kiln_err_set(k->err, st, "%s", msg): the message already names the node. */
kiln_status kiln_cpu_prep_keep(struct kiln_kprep *p, kiln_status st, const kiln_err *e, const char **msg)
{
    *msg = NULL;
    if (st == KILN_OK) return KILN_OK;
    if (st == KILN_E_NOMEM) return kiln_err_set(p->kc.err, st, "%s", e->msg);
    size_t n = strlen(e->msg);
    char *m;
    KILN_TRY(kiln_kprep_alloc(p, n + 1, (void **)&m));
    memcpy(m, e->msg, n + 1);
    *msg = m;
    return KILN_OK;
}
