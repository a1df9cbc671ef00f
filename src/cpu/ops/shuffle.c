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
 *
 *   ShuffleSplit (A [..., G], B [..., G]) -> Y1, Y2 [..., G]: Z = Concat(A, B) on the last
 *   axis, shuffled with group 2 on it (Z[..., 2i] = A[..., i], Z[..., 2i + 1] = B[..., i]),
 *   Split into halves: Y1 = Z[..., :G], Y2 = Z[..., G:]. ShuffleNetV2's unit boundary in
 *   channels-last (Concat -> shuffle -> two Slices) in one pass; fuse_channel_shuffle makes
 *   it after the nhwc pass. float32.
 */
#include <string.h>

#include "base/pool.h"
#include "cpu/kernel.h"
#include "cpu/shuffle_isa.h"

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
        if (ib == sizeof(unsigned) && g == 2) { /* the common case: interleave two halves */
            const unsigned *a = (const unsigned *)(const void *)x;
            KILN_ISA_DISPATCH(kiln_interleave2_u32_isa, ((unsigned *)(void *)y, a, a + per, per));
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

/* ShuffleSplit: Z = A and B interleaved along the last axis, Y1 / Y2 its halves. */
struct split_job { /* float32 handled as its bits */
    const unsigned *a, *b;
    unsigned *y1, *y2;
    size_t g;
};

static void split_chunk(void *ctx, size_t r0, size_t r1, int worker)
{
    (void)worker;
    const struct split_job *j = ctx;
    size_t g = j->g;
    size_t h = g / 2; /* Z = a0 b0 a1 b1 ...: Y1 = Z[0, g), Y2 = Z[g, 2g) */
    for (size_t r = r0; r < r1; r++) {
        const unsigned *a = j->a + r * g, *b = j->b + r * g;
        unsigned *y1 = j->y1 + r * g, *y2 = j->y2 + r * g;
        KILN_ISA_DISPATCH(kiln_interleave2_u32_isa, (y1, a, b, h));
        if (g % 2 == 0) {
            KILN_ISA_DISPATCH(kiln_interleave2_u32_isa, (y2, a + h, b + h, h));
        } else { /* Y1 ends with a[h], Y2 starts with b[h] */
            y1[g - 1] = a[h];
            y2[0] = b[h];
            KILN_ISA_DISPATCH(kiln_interleave2_u32_isa, (y2 + 1, a + h + 1, b + h + 1, h));
        }
    }
}

static kiln_status shuffle_split_run(struct kiln_kctx *k)
{
    const struct kiln_tensor *a, *b;
    KILN_TRY(kiln_in_req(k, 0, &a));
    KILN_TRY(kiln_in_req(k, 1, &b));
    if (a->dtype != KILN_DTYPE_F32 || b->dtype != KILN_DTYPE_F32)
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "inputs are %s and %s; expected float32",
                          kiln_dtype_name(a->dtype), kiln_dtype_name(b->dtype));
    if (a->rank < 1 || a->rank != b->rank || memcmp(a->dims, b->dims, (size_t)a->rank * sizeof *a->dims))
        return kiln_kfail(k, KILN_E_INVALID_ARG, "inputs A and B must have one shape of rank >= 1");
    struct kiln_tensor *y1, *y2;
    KILN_TRY(kiln_out_tensor_raw(k, 0, KILN_DTYPE_F32, a->rank, a->dims, &y1));
    KILN_TRY(kiln_out_tensor_raw(k, 1, KILN_DTYPE_F32, a->rank, a->dims, &y2));
    size_t n = kiln_tensor_numel(a), g = (size_t)a->dims[a->rank - 1];
    if (!n) return KILN_OK;
    struct split_job job = {a->data, b->data, y1->data, y2->data, g};
    kiln_pool_for(k->pool, n / g, kiln_pool_grain(2 * g, 65536), split_chunk, &job);
    return KILN_OK;
}

const struct kiln_cpu_op kiln_cpu_ops_shuffle[] = {
    {"ChannelShuffle", "kiln", 1, 0, shuffle_run, NULL, 0},
    {"ShuffleSplit", "kiln", 1, 0, shuffle_split_run, NULL, 0},
    {0},
};
