/* kp_test.c: the plugins of test_plugin.c, one source compiled once per variant
 * (tests/plugin/plugins.cmake defines one KP_* macro per library).
 *
 * KP_OK (libkp_ok.so), domain "test.kiln":
 *   Affine  versions 1..2: Y = X * W + bias, W (float32[C]) broadcast along X's last dim,
 *           attribute bias (float, 0). Every hook: prepare (a malloc'd state), release,
 *           scratch_size (C floats, used by run), prepack (W doubled when W is constant; run
 *           halves it, exactly), INPLACE. Attribute fail = "infer" | "prepare" | "run" |
 *           "lines" | "nooutput" | "baddims" | "status" makes that step fail. kp_counts() reports
 *           how often each hook ran.
 *   Concat2 version 1+: [N,a] and [N,b] float32 -> [N,a+b] (the symbol of X's N kept).
 *   Affine  for backend "cuda": accepted and never run.
 *   OnlyCuda version 1+, backend "cuda" only: known to kiln, but no CPU kernel.
 *   ai.onnx.preview.training Gradient: a standard op kiln has no kernel for (run fails).
 * KP_SECOND: test.second "Twice" (Y = 2X), for the concurrent loads.
 * KP_OOM:    test.oom "Same" (Y = X), loaded under failing allocations.
 * KP_PARTIAL: test.partial "Good", then a declaration without run: nothing is registered.
 * KP_IGNORED: a bad declaration whose status the plugin ignores (returns 0).
 * KP_TWICE:  test.twice "Op" declared twice, overlapping.
 * KP_DUP_BUILTIN: "" Relu (kiln has it). KP_DUP_PLUGIN: test.kiln Affine 2..2 (libkp_ok has it).
 * KP_BAD_SCHEMA: "" "NotAnOnnxOp". KP_ABI: ABI version 999. KP_DECLINE: declines with a
 * message. KP_NOSYM: exports no register function.
 */
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln_plugin.h"

static const kiln_plugin_api *K;

/* Each variant uses some of the helpers below. */
#define KP_UNUSED __attribute__((unused))

KP_UNUSED static kiln_status fail(kiln_err *err, kiln_status st, const char *msg)
{
    snprintf(err->msg, sizeof err->msg, "%s", msg);
    return st;
}

/* Output 0 = input 0's type (shape functions of the simple ops). */
KP_UNUSED static kiln_status same_infer(void *user, const kiln_plugin_node *node, size_t n_in,
                                        const kiln_plugin_type *in, size_t n_out, kiln_plugin_type *out,
                                        kiln_err *err)
{
    (void)user, (void)node, (void)err;
    if (n_in >= 1 && n_out >= 1) out[0] = in[0];
    return KILN_OK;
}

/* Y = scale * X for float32 X. */
KP_UNUSED static kiln_status scale_run(kiln_plugin_kernel *k, float scale, kiln_err *err)
{
    kiln_plugin_tensor x, y;
    if (!K->kernel_input(k, 0, &x) || x.dtype != KILN_DTYPE_F32)
        return fail(err, KILN_E_INVALID_ARG, "X must be float32");
    kiln_status st = K->kernel_output(k, 0, x.dtype, x.rank, x.dims, 0, &y);
    if (st) return st;
    for (size_t i = 0; i < x.count; i++) ((float *)y.data)[i] = scale * ((const float *)x.data)[i];
    return KILN_OK;
}

#ifdef KP_OK
/* ------------------------------------------------------------------ Affine */

static atomic_int n_prepare, n_release, n_prepack, n_scratch, n_run;

KILN_PLUGIN_EXPORT void kp_counts(int *prepare, int *release, int *prepack, int *scratch, int *run)
{
    *prepare = atomic_load(&n_prepare);
    *release = atomic_load(&n_release);
    *prepack = atomic_load(&n_prepack);
    *scratch = atomic_load(&n_scratch);
    *run = atomic_load(&n_run);
}

struct affine {
    float bias;
    char fail[16];
};

static int wants_fail(const kiln_plugin_node *n, const char *step)
{
    return strcmp(K->attr_string(n, "fail", ""), step) == 0;
}

static kiln_status affine_infer(void *user, const kiln_plugin_node *node, size_t n_in,
                                const kiln_plugin_type *in, size_t n_out, kiln_plugin_type *out,
                                kiln_err *err)
{
    (void)user;
    if (wants_fail(node, "infer")) return fail(err, KILN_E_INVALID_MODEL, "infer failed as asked");
    if (n_in != 2 || n_out != 1) return fail(err, KILN_E_INVALID_MODEL, "Affine takes X and W and makes Y");
    if (in[0].dtype != KILN_DTYPE_UNDEFINED && in[0].dtype != KILN_DTYPE_F32)
        return fail(err, KILN_E_INVALID_MODEL, "X must be float32");
    out[0] = in[0];
    return KILN_OK;
}

static kiln_status affine_prepare(void *user, const kiln_plugin_prep *p, void **state, kiln_err *err)
{
    (void)user;
    const kiln_plugin_node *n = K->prep_node(p);
    if (wants_fail(n, "prepare")) return fail(err, KILN_E_INVALID_MODEL, "prepare failed as asked");
    struct affine *a = calloc(1, sizeof *a);
    if (!a) return fail(err, KILN_E_NOMEM, "out of memory");
    a->bias = K->attr_float(n, "bias", 0.0f);
    snprintf(a->fail, sizeof a->fail, "%s", K->attr_string(n, "fail", ""));
    atomic_fetch_add(&n_prepare, 1);
    *state = a;
    return KILN_OK;
}

static void affine_release(void *user, void *state)
{
    (void)user;
    atomic_fetch_add(&n_release, 1);
    free(state);
}

static size_t channels(const kiln_plugin_prep *p)
{
    kiln_plugin_type w;
    return K->prep_input_type(p, 1, &w) && w.rank == 1 && w.dims[0] >= 0 ? (size_t)w.dims[0] : 0;
}

static size_t affine_scratch(void *user, const kiln_plugin_prep *p, const void *state)
{
    (void)user, (void)state;
    atomic_fetch_add(&n_scratch, 1);
    return channels(p) * sizeof(float);
}

static kiln_status affine_prepack_size(void *user, const kiln_plugin_prep *p, const void *state,
                                       size_t *bytes, kiln_err *err)
{
    (void)user, (void)state, (void)err;
    kiln_plugin_tensor w;
    *bytes = K->prep_const_input(p, 1, &w) && w.dtype == KILN_DTYPE_F32 ? w.count * sizeof(float) : 0;
    return KILN_OK;
}

static kiln_status affine_prepack(void *user, const kiln_plugin_prep *p, const void *state, void *dst,
                                  size_t bytes, kiln_err *err)
{
    (void)user, (void)state;
    kiln_plugin_tensor w;
    if (!K->prep_const_input(p, 1, &w) || w.count * sizeof(float) != bytes)
        return fail(err, KILN_E_INTERNAL, "prepack without its constant");
    for (size_t i = 0; i < w.count; i++) ((float *)dst)[i] = 2.0f * ((const float *)w.data)[i];
    atomic_fetch_add(&n_prepack, 1);
    return KILN_OK;
}

struct rows {
    const float *x, *w;
    float *y;
    size_t c;
    float wscale, bias;
};

static void affine_rows(void *ctx, size_t begin, size_t end, int worker)
{
    const struct rows *r = ctx;
    (void)worker;
    for (size_t i = begin; i < end; i++)
        for (size_t j = 0; j < r->c; j++)
            r->y[i * r->c + j] = r->x[i * r->c + j] * r->w[j] * r->wscale + r->bias;
}

static kiln_status affine_run(void *user, kiln_plugin_kernel *k, const void *state, kiln_err *err)
{
    (void)user;
    const struct affine *a = state;
    atomic_fetch_add(&n_run, 1);
    if (!a) return fail(err, KILN_E_INTERNAL, "run without prepare");
    if (!strcmp(a->fail, "run")) return fail(err, KILN_E_INVALID_ARG, "run failed as asked");
    if (!strcmp(a->fail, "lines")) return fail(err, KILN_E_INVALID_ARG, "first line\nsecond line");
    if (!strcmp(a->fail, "nooutput")) return KILN_OK;
    if (!strcmp(a->fail, "status")) return fail(err, (kiln_status)77, "a status of my own");
    kiln_plugin_tensor x, w, y;
    if (!K->kernel_input(k, 0, &x) || !K->kernel_input(k, 1, &w) || x.dtype != KILN_DTYPE_F32 ||
        w.dtype != KILN_DTYPE_F32 || x.rank < 1 || w.rank != 1 || w.dims[0] != x.dims[x.rank - 1])
        return fail(err, KILN_E_INVALID_ARG, "X must be float32 [..., C] and W float32 [C]");
    if (!strcmp(a->fail, "baddims")) {
        int64_t bad[1] = {-3};
        return K->kernel_output(k, 0, KILN_DTYPE_F32, 1, bad, 0, &y);
    }
    kiln_status st = K->kernel_output(k, 0, x.dtype, x.rank, x.dims, KILN_PLUGIN_OUTPUT_UNINIT, &y);
    if (st) return st;
    size_t c = (size_t)w.dims[0];
    /* W through scratch (as a kernel would repack it), or the prepacked, doubled copy. */
    size_t packed_bytes;
    const float *packed = K->kernel_packed(k, &packed_bytes);
    struct rows r = {x.data, NULL, y.data, c, 1.0f, a->bias};
    if (packed) {
        if (packed_bytes != c * sizeof(float))
            return fail(err, KILN_E_INTERNAL, "prepacked data of the wrong size");
        r.w = packed;
        r.wscale = 0.5f;
    } else {
        float *tmp;
        st = K->kernel_scratch(k, c * sizeof(float), (void **)&tmp);
        if (st) return st;
        memcpy(tmp, w.data, c * sizeof(float));
        r.w = tmp;
    }
    if (c) K->parallel_for(k, x.count / c, 1, affine_rows, &r);
    return KILN_OK;
}

/* ------------------------------------------------------------------ Concat2 */

static kiln_status concat2_infer(void *user, const kiln_plugin_node *node, size_t n_in,
                                 const kiln_plugin_type *in, size_t n_out, kiln_plugin_type *out,
                                 kiln_err *err)
{
    (void)user, (void)node;
    if (n_in != 2 || n_out != 1) return fail(err, KILN_E_INVALID_MODEL, "Concat2 takes 2 inputs");
    out[0].dtype = KILN_DTYPE_F32;
    if (in[0].rank != 2) return KILN_OK; /* rank unknown: leave the shape unknown */
    out[0].rank = 2;
    out[0].dims[0] = in[0].dims[0]; /* a symbol stays a symbol */
    out[0].dims[1] =
        in[1].rank == 2 && in[0].dims[1] >= 0 && in[1].dims[1] >= 0 ? in[0].dims[1] + in[1].dims[1] : -1;
    return KILN_OK;
}

static kiln_status concat2_run(void *user, kiln_plugin_kernel *k, const void *state, kiln_err *err)
{
    (void)user, (void)state;
    kiln_plugin_tensor a, b, y;
    if (!K->kernel_input(k, 0, &a) || !K->kernel_input(k, 1, &b) || a.rank != 2 || b.rank != 2 ||
        a.dims[0] != b.dims[0] || a.dtype != KILN_DTYPE_F32 || b.dtype != KILN_DTYPE_F32)
        return fail(err, KILN_E_INVALID_ARG, "Concat2 takes float32 [N,a] and [N,b]");
    int64_t dims[2] = {a.dims[0], a.dims[1] + b.dims[1]};
    kiln_status st = K->kernel_output(k, 0, KILN_DTYPE_F32, 2, dims, 0, &y);
    if (st) return st;
    float *o = y.data;
    for (int64_t i = 0; i < dims[0]; i++) {
        memcpy(o, (const float *)a.data + i * a.dims[1], (size_t)a.dims[1] * sizeof(float));
        o += a.dims[1];
        memcpy(o, (const float *)b.data + i * b.dims[1], (size_t)b.dims[1] * sizeof(float));
        o += b.dims[1];
    }
    return KILN_OK;
}

static kiln_status no_run(void *user, kiln_plugin_kernel *k, const void *state, kiln_err *err)
{
    (void)user, (void)k, (void)state;
    return fail(err, KILN_E_UNSUPPORTED, "not implemented");
}

static const kiln_plugin_op ops[] = {
    {.abi_version = KILN_PLUGIN_ABI_VERSION,
     .domain = "test.kiln",
     .op_type = "Affine",
     .since = 1,
     .until = 2,
     .infer = affine_infer,
     .prepare = affine_prepare,
     .release = affine_release,
     .run = affine_run,
     .scratch_size = affine_scratch,
     .prepack_size = affine_prepack_size,
     .prepack = affine_prepack,
     .flags = KILN_PLUGIN_OP_INPLACE},
    {.abi_version = KILN_PLUGIN_ABI_VERSION,
     .domain = "test.kiln",
     .op_type = "Concat2",
     .since = 1,
     .backend = "cpu",
     .infer = concat2_infer,
     .run = concat2_run},
    {.abi_version = KILN_PLUGIN_ABI_VERSION,
     .domain = "test.kiln",
     .op_type = "Affine",
     .since = 1,
     .backend = "cuda",
     .infer = affine_infer,
     .run = no_run},
    {.abi_version = KILN_PLUGIN_ABI_VERSION,
     .domain = "test.kiln",
     .op_type = "OnlyCuda",
     .since = 1,
     .backend = "cuda",
     .infer = same_infer,
     .run = no_run},
    {.abi_version = KILN_PLUGIN_ABI_VERSION,
     .domain = "ai.onnx.preview.training",
     .op_type = "Gradient",
     .since = 1,
     .infer = same_infer,
     .run = no_run},
};

KILN_PLUGIN_EXPORT int KILN_PLUGIN_REGISTER(kiln_plugin_registry *r, const kiln_plugin_api *api)
{
    K = api;
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        if (api->register_op(r, &ops[i]) != KILN_OK) return 1;
    return 0;
}
#endif

#if defined(KP_SECOND) || defined(KP_OOM)
static kiln_status twice_run(void *user, kiln_plugin_kernel *k, const void *state, kiln_err *err)
{
    (void)state;
    return scale_run(k, *(const float *)user, err);
}

#ifdef KP_SECOND
static const float two = 2.0f;
#else
static const float one = 1.0f;
#endif
static const kiln_plugin_op op = {.abi_version = KILN_PLUGIN_ABI_VERSION,
#ifdef KP_SECOND
                                  .domain = "test.second",
                                  .op_type = "Twice",
                                  .user = (void *)&two,
#else
                                  .domain = "test.oom",
                                  .op_type = "Same",
                                  .user = (void *)&one,
#endif
                                  .since = 1,
                                  .infer = same_infer,
                                  .run = twice_run};

KILN_PLUGIN_EXPORT int KILN_PLUGIN_REGISTER(kiln_plugin_registry *r, const kiln_plugin_api *api)
{
    K = api;
    return api->register_op(r, &op) == KILN_OK ? 0 : 1;
}
#endif

#if defined(KP_PARTIAL) || defined(KP_IGNORED) || defined(KP_TWICE) || defined(KP_DUP_BUILTIN) ||            \
    defined(KP_DUP_PLUGIN) || defined(KP_BAD_SCHEMA) || defined(KP_ABI)
static kiln_status id_run(void *user, kiln_plugin_kernel *k, const void *state, kiln_err *err)
{
    (void)user, (void)state;
    return scale_run(k, 1.0f, err);
}

#define OP(dom, name, s, u)                                                                                  \
    {                                                                                                        \
        .abi_version = KILN_PLUGIN_ABI_VERSION, .domain = dom, .op_type = name, .since = s, .until = u,      \
        .infer = same_infer, .run = id_run                                                                   \
    }
static const kiln_plugin_op decl[] = {
#if defined(KP_PARTIAL)
    OP("test.partial", "Good", 1, 0),
    {.abi_version = KILN_PLUGIN_ABI_VERSION,
     .domain = "test.partial",
     .op_type = "Bad",
     .since = 1,
     .infer = same_infer},
#elif defined(KP_IGNORED)
    OP("test.ignored", "Fine", 1, 0),
    OP("test.ignored", "Backwards", 3, 2),
#elif defined(KP_TWICE)
    OP("test.twice", "Op", 1, 4),
    OP("test.twice", "Op", 4, 0),
#elif defined(KP_DUP_BUILTIN)
    OP("", "Relu", 1, 0),
#elif defined(KP_DUP_PLUGIN)
    OP("test.kiln", "Affine", 2, 2),
#elif defined(KP_BAD_SCHEMA)
    OP("ai.onnx", "NotAnOnnxOp", 1, 0),
#elif defined(KP_ABI)
    {.abi_version = 999,
     .domain = "test.abi",
     .op_type = "Op",
     .since = 1,
     .infer = same_infer,
     .run = id_run},
#endif
};

KILN_PLUGIN_EXPORT int KILN_PLUGIN_REGISTER(kiln_plugin_registry *r, const kiln_plugin_api *api)
{
    K = api;
    int rc = 0;
    for (size_t i = 0; i < sizeof decl / sizeof decl[0]; i++)
        if (api->register_op(r, &decl[i]) != KILN_OK) rc = 1;
#ifdef KP_IGNORED
    rc = 0; /* a plugin that does not look: the load fails all the same */
#endif
    return rc;
}
#endif

#ifdef KP_DECLINE
KILN_PLUGIN_EXPORT int KILN_PLUGIN_REGISTER(kiln_plugin_registry *r, const kiln_plugin_api *api)
{
    api->registry_error(r, "this plugin needs a CPU with AVX-9000");
    return 3;
}
#endif

#ifdef KP_NOSYM
KILN_PLUGIN_EXPORT int kiln_plugin_registr(void) /* misspelt */
{
    return 0;
}
#endif
