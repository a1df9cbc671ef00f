/* src/cpu/ops/pool_nhwc.c: kiln.MaxPoolNhwc and kiln.AveragePoolNhwc, 2-D MaxPool /
 * AveragePool on channels-last tensors (docs/fused-ops.md). The optimizer's NHWC pass
 * (src/opt/pass_nhwc.c) rewrites pools inside channels-last regions to them.
 *
 *   MaxPoolNhwc (X [N, H, W, C]) -> Y [N, OH, OW, C]       (no Indices output)
 *   AveragePoolNhwc (X [N, H, W, C]) -> Y [N, OH, OW, C]
 *
 * Attributes are MaxPool's / AveragePool's (kernel_shape of 2, strides, pads, auto_pad,
 * dilations, ceil_mode; count_include_pad; storage_order is accepted and means nothing
 * without Indices), with the same geometry (cpu/pool_geom.h, shared with pool.c). Results
 * equal the NCHW pool's 2-D path bit for bit (cpu/pool_nhwc_isa.h says why); against the
 * generic window walk, which sums AveragePool in double, AveragePool differs by float32
 * rounding of the sum only. float32 only (the pass rewrites float32 pools only).
 *
 * Run: output rows (N * OH) are split over the session's threads; each row is one call of
 * the per-ISA row kernel (src/cpu/isa/pool_nhwc.c), vectorized over the C contiguous
 * channels. The per-column taps are computed once per run in scratch.
 */
#include <string.h>

#include "base/pool.h"
#include "cpu/pool_geom.h"
#include "cpu/pool_nhwc_isa.h"
#include "infer/infer.h"

struct pnhwc_state {
    struct pool_attrs a;
    bool is_max, include_pad;
};

static kiln_status pnhwc_decode(struct kiln_kctx *k, struct pnhwc_state *s)
{
    memset(s, 0, sizeof *s);
    KILN_TRY(kiln_pool_decode_window(k, &s->a));
    s->is_max = !strcmp(k->node->op_type, "MaxPoolNhwc");
    s->include_pad = !s->is_max && kiln_attr_i(k, "count_include_pad", 0) != 0;
    return KILN_OK;
}

KILN_PREPARE_WITH(pnhwc_prepare, struct pnhwc_state, pnhwc_decode)

struct pnhwc_job {
    const struct pool_geom *g;
    const struct pnhwc_state *st;
    const struct kiln_pool_nhwc_col *cols;
    const float *x;
    float *y;
    int64_t C;
};

static void pnhwc_rows(void *ctx, size_t r0, size_t r1, int worker)
{
    (void)worker;
    const struct pnhwc_job *j = ctx;
    const struct pool_geom *g = j->g;
    int64_t H = g->in[0], W = g->in[1], OH = g->out[0], OW = g->out[1], C = j->C;
    struct kiln_pool_nhwc_row r = {
        .C = C, .W = W, .OW = OW, .sx = g->s[1], .dx = g->d[1], .pbx = g->pb[1], .dy = g->d[0],
        .cols = j->cols, .is_max = j->st->is_max, .include_pad = j->st->include_pad,
    };
    for (size_t row = r0; row < r1; row++) {
        int64_t n = (int64_t)row / OH, oy = (int64_t)row % OH;
        kiln_pool_taps(g, 0, oy, &r.ky0, &r.ky1, &r.cy);
        r.iy0 = oy * g->s[0] - g->pb[0];
        r.x = j->x + n * H * W * C;
        r.y = j->y + (size_t)row * (size_t)(OW * C);
        KILN_ISA_DISPATCH(kiln_pool_nhwc_row_isa, (&r));
    }
}

static kiln_status pnhwc_run(struct kiln_kctx *k)
{
    struct pnhwc_state tmp;
    const struct pnhwc_state *st;
    KILN_STATE_OR_DECODE(k, pnhwc_decode, tmp, st);
    const struct kiln_tensor *x;
    KILN_TRY(kiln_in_req(k, 0, &x));
    if (x->dtype != KILN_DTYPE_F32)
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "input X is %s; expected float32",
                          kiln_dtype_name(x->dtype));
    if (x->rank != 4)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input X has rank %d; expected 4 (N, H, W, C)",
                          x->rank);
    int64_t nchw[4] = {x->dims[0], x->dims[3], x->dims[1], x->dims[2]};
    struct pool_geom g;
    KILN_TRY(kiln_pool_geom(k, &st->a, 4, nchw, &g));
    int64_t ydims[4] = {x->dims[0], g.out[0], g.out[1], x->dims[3]};
    struct kiln_tensor *y;
    KILN_TRY(kiln_out_tensor_raw(k, 0, KILN_DTYPE_F32, 4, ydims, &y));
    size_t rows = (size_t)ydims[0] * (size_t)ydims[1];
    if (!rows || !ydims[2] || !ydims[3]) return KILN_OK;
    struct kiln_pool_nhwc_col *cols;
    KILN_TRY(kiln_scratch(k, (size_t)g.out[1] * sizeof *cols, (void **)&cols));
    for (int64_t ox = 0; ox < g.out[1]; ox++)
        kiln_pool_taps(&g, 1, ox, &cols[ox].kx0, &cols[ox].kx1, &cols[ox].cnt);
    struct pnhwc_job job = {&g, st, cols, x->data, y->data, x->dims[3]};
    /* About 64k window taps per chunk: enough to pay for handing it to a thread. */
    size_t grain = kiln_pool_grain(g.os / (size_t)g.out[0] * g.ks * (size_t)x->dims[3], 65536);
    kiln_pool_for(k->pool, rows, grain, pnhwc_rows, &job);
    return KILN_OK;
}

const struct kiln_cpu_op kiln_cpu_ops_pool_nhwc[] = {
    {"MaxPoolNhwc", "kiln", 1, 0, pnhwc_run, pnhwc_prepare, 0},
    {"AveragePoolNhwc", "kiln", 1, 0, pnhwc_run, pnhwc_prepare, 0},
    {0},
};
