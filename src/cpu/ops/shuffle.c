/* src/cpu/ops/shuffle.c: kiln.ChannelShuffle, the channel shuffle of ShuffleNet in one pass
 * (docs/fused-ops.md). The optimizer's fuse_channel_shuffle pass (src/opt/
 * pass_fuse_channel_shuffle.c) makes it from Reshape -> Transpose -> Reshape, and the NHWC
 * pass moves its axis to the channels-last one.
 *
 *   ChannelShuffle (X) -> Y, same shape and type; attributes group (>= 1, dividing the axis),
 *   axis (default 1, negative counts from the end)
 *
 * With C = X.shape[axis] and G = C / group, Y[..., i * group + k, ...] = X[..., k * G + i, ...]
 * for i < G, k < group: the result of Reshape [.., group, G, ..] -> swap those two ->
 * Reshape back. Any numeric element type (a copy of bytes); bitwise exact.
 */
#include <string.h>

#include "base/pool.h"
#include "cpu/kernel.h"

struct shuffle_job {
    const char *x;
    char *y;
    size_t group, per, inner_bytes; /* per = C / group */
};

/* Copies outer slices [o0, o1), each C * inner_bytes bytes. */
static void shuffle_chunk(void *ctx, size_t o0, size_t o1, int worker)
{
    (void)worker;
    const struct shuffle_job *j = ctx;
    size_t g = j->group, per = j->per, ib = j->inner_bytes, slice = g * per * ib;
    for (size_t o = o0; o < o1; o++) {
        const char *x = j->x + o * slice;
        char *y = j->y + o * slice;
        if (ib == sizeof(float) && g == 2) { /* the common case: interleave two halves */
            const float *a = (const float *)(const void *)x, *b = a + per;
            float *yf = (float *)(void *)y;
            for (size_t i = 0; i < per; i++) {
                yf[2 * i] = a[i];
                yf[2 * i + 1] = b[i];
            }
            continue;
        }
        for (size_t i = 0; i < per; i++)
            for (size_t k = 0; k < g; k++) memcpy(y + (i * g + k) * ib, x + (k * per + i) * ib, ib);
    }
}

static kiln_status shuffle_run(struct kiln_kctx *k)
{
    const struct kiln_tensor *x;
    KILN_TRY(kiln_in_req(k, 0, &x));
    int64_t axis = kiln_attr_i(k, "axis", 1), group = kiln_attr_i(k, "group", 0);
    if (axis < -x->rank || axis >= x->rank)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "axis %lld is out of range for rank %d",
                          (long long)axis, x->rank);
    if (axis < 0) axis += x->rank;
    int64_t c = x->dims[axis];
    if (group < 1 || c % group)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "group %lld does not divide the %lld channels of axis %lld",
                          (long long)group, (long long)c, (long long)axis);
    if (kiln_dtype_size(x->dtype) == 0 || x->dtype == KILN_DTYPE_STRING)
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "input X is %s; expected a numeric type",
                          kiln_dtype_name(x->dtype));
    struct kiln_tensor *y;
    KILN_TRY(kiln_out_tensor_raw(k, 0, x->dtype, x->rank, x->dims, &y));
    size_t outer = 1, inner = 1;
    for (int64_t i = 0; i < axis; i++) outer *= (size_t)x->dims[i];
    for (int64_t i = axis + 1; i < x->rank; i++) inner *= (size_t)x->dims[i];
    if (!outer || !inner || !c) return KILN_OK;
    struct shuffle_job job = {x->data, y->data, (size_t)group, (size_t)(c / group),
                              inner * kiln_dtype_size(x->dtype)};
    kiln_pool_for(k->pool, outer, kiln_pool_grain((size_t)c * job.inner_bytes, 65536), shuffle_chunk, &job);
    return KILN_OK;
}

const struct kiln_cpu_op kiln_cpu_ops_shuffle[] = {
    {"ChannelShuffle", "kiln", 1, 0, shuffle_run, NULL, 0},
    {0},
};
