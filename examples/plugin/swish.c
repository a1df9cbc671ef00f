/* swish.c: an example kiln plugin (docs/plugins.md walks through it).
 *
 * Declares op "Swish" of domain "com.example", version 1 and later:
 *
 *     Y = X * sigmoid(beta * X) = X / (1 + exp(-beta * X))
 *
 * X: float32 or float64, any shape; Y: the same type and shape. Attribute beta (float,
 * default 1.0; beta = 1 is SiLU). Computed in X's precision; NaN in gives NaN out; for large
 * |beta * X| exp overflows to inf and Y becomes -0 or X, as the formula gives.
 *
 * Built as libswish.so, linked against nothing of kiln's: every kiln function it uses comes
 * from the kiln_plugin_api table given to kiln_plugin_register.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "kiln_plugin.h"

static const kiln_plugin_api *K; /* kiln's functions; valid for the life of the process */

struct swish_state {
    float beta;
};

static int is_float_type(kiln_dtype dt)
{
    return dt == KILN_DTYPE_F32 || dt == KILN_DTYPE_F64;
}

/* Shape and type: one input, one output of the input's type and shape (dims copied, so a
 * symbolic batch size stays symbolic). */
static kiln_status swish_infer(void *user, const kiln_plugin_node *node, size_t n_in,
                               const kiln_plugin_type *in, size_t n_out, kiln_plugin_type *out, kiln_err *err)
{
    (void)user, (void)node;
    if (n_in != 1 || n_out != 1) {
        snprintf(err->msg, sizeof err->msg, "Swish takes 1 input and 1 output; the node has %zu and %zu",
                 n_in, n_out);
        return KILN_E_INVALID_MODEL;
    }
    if (in[0].dtype != KILN_DTYPE_UNDEFINED && !is_float_type(in[0].dtype)) {
        snprintf(err->msg, sizeof err->msg, "input X is element type %d; Swish takes float32 or float64",
                 (int)in[0].dtype);
        return KILN_E_INVALID_MODEL;
    }
    out[0] = in[0];
    return KILN_OK;
}

/* Prepare: decode beta once; check the input type when inference knows it. */
static kiln_status swish_prepare(void *user, const kiln_plugin_prep *p, void **state, kiln_err *err)
{
    (void)user;
    const kiln_plugin_node *node = K->prep_node(p);
    int at = K->attr_type(node, "beta");
    if (at != 0 && at != 1 /* FLOAT */) {
        snprintf(err->msg, sizeof err->msg, "attribute 'beta' has attribute type %d; expected a float (1)",
                 at);
        return KILN_E_INVALID_MODEL;
    }
    kiln_plugin_type t;
    if (K->prep_input_type(p, 0, &t) && t.dtype != KILN_DTYPE_UNDEFINED && !is_float_type(t.dtype)) {
        snprintf(err->msg, sizeof err->msg,
                 "input X is element type %d; this kernel takes float32 or "
                 "float64",
                 (int)t.dtype);
        return KILN_E_UNSUPPORTED;
    }
    struct swish_state *st = malloc(sizeof *st);
    if (!st) {
        snprintf(err->msg, sizeof err->msg, "out of memory");
        return KILN_E_NOMEM;
    }
    st->beta = K->attr_float(node, "beta", 1.0f);
    *state = st;
    return KILN_OK;
}

static void swish_release(void *user, void *state)
{
    (void)user;
    free(state);
}

/* One chunk of elements [begin, end), on any of the session's threads. In place is fine:
 * element i is read before it is written. */
struct chunk {
    const void *x;
    void *y;
    kiln_dtype dt;
    double beta;
};

static void swish_chunk(void *ctx, size_t begin, size_t end, int worker)
{
    const struct chunk *c = ctx;
    (void)worker;
    if (c->dt == KILN_DTYPE_F32) {
        const float *x = c->x;
        float *y = c->y, beta = (float)c->beta;
        for (size_t i = begin; i < end; i++) y[i] = x[i] / (1.0f + expf(-beta * x[i]));
    } else {
        const double *x = c->x;
        double *y = c->y;
        for (size_t i = begin; i < end; i++) y[i] = x[i] / (1.0 + exp(-c->beta * x[i]));
    }
}

static kiln_status swish_run(void *user, kiln_plugin_kernel *k, const void *state, kiln_err *err)
{
    (void)user;
    const struct swish_state *st = state;
    kiln_plugin_tensor x, y;
    if (!K->kernel_input(k, 0, &x)) {
        snprintf(err->msg, sizeof err->msg, "input X is missing or not a tensor");
        return KILN_E_INVALID_ARG;
    }
    if (!is_float_type(x.dtype)) {
        snprintf(err->msg, sizeof err->msg,
                 "input X is element type %d; this kernel takes float32 or "
                 "float64",
                 (int)x.dtype);
        return KILN_E_INVALID_ARG;
    }
    /* Every element is written below, so the output need not be zeroed first. */
    kiln_status s = K->kernel_output(k, 0, x.dtype, x.rank, x.dims, KILN_PLUGIN_OUTPUT_UNINIT, &y);
    if (s != KILN_OK) return s; /* kiln wrote the message into err */
    struct chunk c = {x.data, y.data, x.dtype, st->beta};
    K->parallel_for(k, x.count, 16384, swish_chunk, &c);
    return KILN_OK;
}

static const kiln_plugin_op swish_op = {
    .abi_version = KILN_PLUGIN_ABI_VERSION,
    .domain = "com.example",
    .op_type = "Swish",
    .since = 1,
    .until = 0,
    .backend = "cpu",
    .infer = swish_infer,
    .prepare = swish_prepare,
    .release = swish_release,
    .run = swish_run,
    .flags = KILN_PLUGIN_OP_INPLACE,
};

KILN_PLUGIN_EXPORT int KILN_PLUGIN_REGISTER(kiln_plugin_registry *r, const kiln_plugin_api *api)
{
    if (api->abi_version != KILN_PLUGIN_ABI_VERSION) {
        /* register_op would refuse us too; this says it in our words. */
        api->registry_error(r, "libswish was built for another kiln plugin ABI");
        return 1;
    }
    K = api;
    return api->register_op(r, &swish_op) == KILN_OK ? 0 : 1;
}
