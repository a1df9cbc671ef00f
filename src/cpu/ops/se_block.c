/* src/cpu/ops/se_block.c: kiln.SqueezeExcite, a whole squeeze-excitation block on a
 * channels-last tensor in one node (docs/fused-ops.md). The optimizer's fuse_se pass
 * (src/opt/pass_fuse_se.c) writes EfficientNet's and MobileNetV3's
 *
 *     GlobalAveragePool(X) -> 1x1 conv (fc1) + act -> 1x1 conv (fc2) + gate act -> Mul(X, .)
 *
 * as one, once the nhwc pass has made it channels-last:
 *
 *   SqueezeExcite (X [N, H, W, C], W1 [R, C, 1, 1], B1? [R], W2 [C, R, 1, 1], B2? [C])
 *       -> Y [N, H, W, C] = X * gate(W2 act(W1 mean_hw(X) + B1) + B2)
 *
 * (W1 and W2 may also be [R, C] and [C, R].) Attributes: `activation`, `activation_params`,
 * `approximate` (fc1's, cpu/act.h, as kiln.FusedConv's) and `gate_activation`,
 * `gate_activation_params` (fc2's; usually Sigmoid or HardSigmoid). Absent activations are
 * the identity. float32 only.
 *
 * Why: in the unfused graph the block is five nodes, four of them tiny (a pool to [1, C], two
 * GEMVs of a few thousand to 110 thousand multiply-adds, the broadcast Mul), each a hand-off
 * to the threads, and the pool ran on one thread over a tensor the previous convolution had
 * written half on each core. Here the run is two passes over X split by rows over the
 * threads around a short middle; how it splits is fixed by the shape and the session's
 * threads T, never by timing:
 *   pass 1: the image's rows in nb fixed blocks (nb = T, 1 when the image has under 32768
 *      elements; never more blocks than rows), each block's per-channel sums into its own
 *      row of scratch (cpu/pool_nhwc_isa.h's chansum). Row blocks, not channel blocks: the
 *      caller claims block 0 first and the worker block 1, as with the convolution's row
 *      slices before, so the data mostly stays in the core's L2 that wrote it. Split by channels, each core
 *      read half the image from the other core's cache and wrote it back there: EfficientNet's
 *      14x14x672 blocks took 47 us on 2 threads against 19 us on 1.
 *   middle: the blocks' sums added in block order and divided by H * W (as
 *      GlobalAveragePool divides); fc1 as a GEMV on W1 transposed to [C, R] at prepare, its
 *      activation (bias added first, as the convolution does); fc2 likewise on W2 as [R, C],
 *      the gate activation. On the calling thread, or, when the two weights are over 64 KB
 *      (EfficientNet's 7x7x1152 blocks: 442 KB, its 14x14x672 ones 150 KB, read from beyond
 *      L2 at every run) and each thread gets 32 channels or more, split by channel blocks (a
 *      multiple of 16): fc1's shares W1[:, c0:c1] mean[c0:c1] on the threads, added in block
 *      order on the caller, then fc2's rows [c0, c1) and the gate on the threads: two
 *      hand-offs more, half the weight reads each.
 *   pass 2: Y = X * g per channel, in the same row blocks.
 * Numerics: the sums are in another order than GlobalAveragePool's (four pixels at a time,
 * then the blocks) and the GEMVs in another order than oneDNN's 1x1 convolution, so g
 * differs from the unfused graph's by float32 rounding (tests/unit/test_se_block.c: within
 * 1e-5 relative). Results depend on the thread count only through nb, never on timing. Y may
 * be X (in place: every element is read in pass 1 before pass 2 writes it).
 */
#include <string.h>

#include "base/pool.h"
#include "cpu/act.h"
#include "cpu/kernel.h"
#include "cpu/pool_nhwc_isa.h"

#define SE_SPLIT_MIN 32768 /* elements of an image below which it is not split */

struct se_state {
    struct kiln_act act, gate;
    int64_t R, C;           /* 0 when the weights were not constant at prepare */
    const float *w1t, *w2t; /* [C, R], [R, C] */
};

static kiln_status se_decode(struct kiln_kctx *k, struct se_state *s)
{
    memset(s, 0, sizeof *s);
    KILN_TRY(kiln_attr_act(k, &s->act));
    const char *name = kiln_attr_s(k, "gate_activation", "");
    const float *p;
    size_t np = kiln_attr_floats(k, "gate_activation_params", &p);
    if (!kiln_act_parse(name, p, np, "none", &s->gate))
        return kiln_kfail(k, KILN_E_INVALID_MODEL,
                          "gate_activation '%s' with %zu parameters is not one kiln knows (see "
                          "docs/fused-ops.md)", name, np);
    return KILN_OK;
}

/* W ([A, B, 1, 1] or [A, B]) as [B, A]. */
static void transpose_w(const float *w, int64_t A, int64_t B, float *wt)
{
    for (int64_t a = 0; a < A; a++)
        for (int64_t b = 0; b < B; b++) wt[b * A + a] = w[a * B + b];
}

/* Whether t is a float32 [A, B, 1, 1] or [A, B] tensor; *a, *b its A and B. */
static bool fc_shape(const struct kiln_tensor *t, int64_t *a, int64_t *b)
{
    if (!t || t->dtype != KILN_DTYPE_F32 || (t->rank != 4 && t->rank != 2)) return false;
    if (t->rank == 4 && (t->dims[2] != 1 || t->dims[3] != 1)) return false;
    *a = t->dims[0];
    *b = t->dims[1];
    return true;
}

static kiln_status se_prepare(struct kiln_kprep *p)
{
    struct se_state *s;
    KILN_TRY(kiln_kprep_alloc(p, sizeof *s, (void **)&s));
    KILN_TRY(se_decode(&p->kc, s));
    p->state = s;
    const struct kiln_tensor *w1 = p->kc.n_in > 1 ? kiln_kprep_const(p, 1) : NULL;
    const struct kiln_tensor *w2 = p->kc.n_in > 3 ? kiln_kprep_const(p, 3) : NULL;
    int64_t R, C, C2, R2;
    if (!fc_shape(w1, &R, &C) || !fc_shape(w2, &C2, &R2) || R != R2 || C != C2 || R < 1 || C < 1)
        return KILN_OK; /* run transposes them, or reports the problem */
    float *w1t, *w2t;
    KILN_TRY(kiln_kprep_alloc(p, (size_t)(R * C) * sizeof(float), (void **)&w1t));
    KILN_TRY(kiln_kprep_alloc(p, (size_t)(R * C) * sizeof(float), (void **)&w2t));
    transpose_w(w1->data, R, C, w1t);
    transpose_w(w2->data, C, R, w2t);
    s->w1t = w1t;
    s->w2t = w2t;
    s->R = R;
    s->C = C;
    return KILN_OK;
}

struct se_job {
    const struct se_state *s;
    const float *x, *w1t, *w2t, *b2;
    float *y, *part, *mean, *h, *hpart, *g;
    int64_t H, W, C, R;
    int64_t nb, rows; /* row blocks of an image, rows of a block */
    int64_t ncb, cper; /* the split GEMVs: channel blocks of an image, channels of a block */
};

/* The pixels of row block i (image i / nb, rows [r0, r0 + rows) clipped to H); *off its
 * first element. */
static int64_t row_block(const struct se_job *j, size_t i, int64_t *off)
{
    int64_t n = (int64_t)i / j->nb, r0 = ((int64_t)i % j->nb) * j->rows;
    int64_t r1 = r0 + j->rows < j->H ? r0 + j->rows : j->H;
    *off = (n * j->H + r0) * j->W * j->C;
    return r1 > r0 ? (r1 - r0) * j->W : 0;
}

static void row_sums(void *ctx, size_t b, size_t e, int worker)
{
    (void)worker;
    const struct se_job *j = ctx;
    for (size_t i = b; i < e; i++) {
        int64_t off, P = row_block(j, i, &off);
        KILN_ISA_DISPATCH(kiln_nhwc_chansum_isa, (j->x + off, P, j->C, j->C, j->part + (int64_t)i * j->C));
    }
}

static void row_scale(void *ctx, size_t b, size_t e, int worker)
{
    (void)worker;
    const struct se_job *j = ctx;
    for (size_t i = b; i < e; i++) {
        int64_t off, P = row_block(j, i, &off);
        const float *g = j->g + ((int64_t)i / j->nb) * j->C;
        KILN_ISA_DISPATCH(kiln_nhwc_chanscale_isa, (j->x + off, g, j->y + off, P, j->C, j->C));
    }
}

/* Channel block i of the split GEMVs: image *n = i / ncb, channels [*c0, *c0 + count). */
static int64_t chan_block(const struct se_job *j, size_t i, int64_t *n, int64_t *c0)
{
    *n = (int64_t)i / j->ncb;
    *c0 = ((int64_t)i % j->ncb) * j->cper;
    return *c0 + j->cper < j->C ? j->cper : j->C - *c0;
}

/* fc1's share of channel block i: hpart[i] = W1[:, c0:c1] mean[c0:c1] ([R]). */
static void fc1_part(void *ctx, size_t b, size_t e, int worker)
{
    (void)worker;
    const struct se_job *j = ctx;
    for (size_t i = b; i < e; i++) {
        int64_t n, c0, nc = chan_block(j, i, &n, &c0);
        KILN_ISA_DISPATCH(kiln_se_gemv_isa, (j->w1t + c0 * j->R, j->R, j->mean + n * j->C + c0, nc, j->R,
                                             j->hpart + (int64_t)i * j->R));
    }
}

/* fc2's rows [c0, c1) of channel block i and the gate activation: g[n, c0:c1]. */
static void fc2_part(void *ctx, size_t b, size_t e, int worker)
{
    (void)worker;
    const struct se_job *j = ctx;
    for (size_t i = b; i < e; i++) {
        int64_t n, c0, nc = chan_block(j, i, &n, &c0);
        float *g = j->g + n * j->C + c0;
        KILN_ISA_DISPATCH(kiln_se_gemv_isa, (j->w2t + c0, j->C, j->h + n * j->R, j->R, nc, g));
        kiln_act_apply_f32(&j->s->gate, g, j->b2 ? j->b2 + c0 : NULL, g, (size_t)nc);
    }
}

/* The GEMVs split over the threads by channels when their weights are over 64 KB (they come
 * from beyond L2 at every run: EfficientNet's 7x7x1152 blocks have 442 KB, its 14x14x672
 * ones 150 KB) and every thread gets at least 32 channels: two hand-offs more, half the
 * weight reads each. */
static bool split_gemv(int64_t T, int64_t C, int64_t R)
{
    return T > 1 && C >= 32 * T && 2 * R * C * 4 > 65536;
}

static kiln_status se_run(struct kiln_kctx *k)
{
    struct se_state tmp;
    const struct se_state *s;
    KILN_STATE_OR_DECODE(k, se_decode, tmp, s);
    const struct kiln_tensor *x, *w1, *w2, *b1 = k->n_in > 2 ? kiln_in(k, 2) : NULL,
                                           *b2 = k->n_in > 4 ? kiln_in(k, 4) : NULL;
    KILN_TRY(kiln_in_req(k, 0, &x));
    KILN_TRY(kiln_in_req(k, 1, &w1));
    KILN_TRY(kiln_in_req(k, 3, &w2));
    if (x->dtype != KILN_DTYPE_F32 || x->rank != 4)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input X is %s of rank %d; expected float32 [N, H, W, C]",
                          kiln_dtype_name(x->dtype), x->rank);
    int64_t N = x->dims[0], H = x->dims[1], W = x->dims[2], C = x->dims[3], R, C1, C2, R2;
    if (!fc_shape(w1, &R, &C1) || !fc_shape(w2, &C2, &R2) || C1 != C || C2 != C || R2 != R)
        return kiln_kfail(k, KILN_E_INVALID_ARG,
                          "W1 and W2 must be float32 [R, %lld, 1, 1] and [%lld, R, 1, 1] (or [R, %lld] "
                          "and [%lld, R]) for X's %lld channels", (long long)C, (long long)C,
                          (long long)C, (long long)C, (long long)C);
    if ((b1 && (b1->dtype != KILN_DTYPE_F32 || kiln_tensor_numel(b1) != (size_t)R || b1->rank != 1)) ||
        (b2 && (b2->dtype != KILN_DTYPE_F32 || kiln_tensor_numel(b2) != (size_t)C || b2->rank != 1)))
        return kiln_kfail(k, KILN_E_INVALID_ARG, "B1 and B2 must be float32 [%lld] and [%lld]", (long long)R,
                          (long long)C);
    struct kiln_tensor *y;
    KILN_TRY(kiln_out_tensor_raw(k, 0, KILN_DTYPE_F32, 4, x->dims, &y));
    if (!kiln_tensor_numel(x)) return KILN_OK;
    int64_t T = kiln_pool_threads(k->pool), HW = H * W;
    int64_t nb = HW * C < SE_SPLIT_MIN || T < 2 ? 1 : T < H ? T : H;
    int64_t rows = (H + nb - 1) / nb;
    nb = (H + rows - 1) / rows; /* no empty block */
    bool split = split_gemv(T, C, R);
    int64_t cper = split ? ((C + T - 1) / T + 15) / 16 * 16 : C;
    int64_t ncb = (C + cper - 1) / cper;
    /* scratch: row blocks' sums [N * nb, C], mean [N, C], h [N, R], fc1's shares [N * ncb, R],
     * g [N, C], and the weights transposed when they were not prepared */
    bool prepped = s->w1t && s->R == R && s->C == C;
    size_t fl = (size_t)(N * nb * C + N * C + N * R + N * ncb * R + N * C) + (prepped ? 0 : (size_t)(2 * R * C));
    float *part;
    KILN_TRY(kiln_scratch(k, fl * sizeof(float), (void **)&part));
    float *mean = part + N * nb * C, *h = mean + N * C, *hpart = h + N * R, *g = hpart + N * ncb * R;
    const float *w1t = s->w1t, *w2t = s->w2t;
    if (!prepped) {
        float *t1 = g + N * C, *t2 = t1 + R * C;
        transpose_w(w1->data, R, C, t1);
        transpose_w(w2->data, C, R, t2);
        w1t = t1, w2t = t2;
    }
    struct se_job j = {s, x->data, w1t, w2t, b2 ? b2->data : NULL, y->data, part, mean, h, hpart, g,
                       H, W, C, R, nb, rows, ncb, cper};
    const float *bias1 = b1 ? b1->data : NULL;
    kiln_pool_for(k->pool, (size_t)(N * nb), 1, row_sums, &j);
    float cnt = (float)HW;
    for (int64_t n = 0; n < N; n++) { /* the blocks' sums in block order, the mean */
        const float *pn = part + n * nb * C;
        float *mn = mean + n * C;
        memcpy(mn, pn, (size_t)C * sizeof *mn);
        for (int64_t b = 1; b < nb; b++)
            for (int64_t c = 0; c < C; c++) mn[c] += pn[b * C + c];
        for (int64_t c = 0; c < C; c++) mn[c] /= cnt;
    }
    if (split) {
        kiln_pool_for(k->pool, (size_t)(N * ncb), 1, fc1_part, &j);
        for (int64_t n = 0; n < N; n++) { /* fc1's shares in block order, its activation */
            float *hn = h + n * R;
            memcpy(hn, hpart + n * ncb * R, (size_t)R * sizeof *hn);
            for (int64_t b = 1; b < ncb; b++)
                for (int64_t r = 0; r < R; r++) hn[r] += hpart[(n * ncb + b) * R + r];
            kiln_act_apply_f32(&s->act, hn, bias1, hn, (size_t)R);
        }
        kiln_pool_for(k->pool, (size_t)(N * ncb), 1, fc2_part, &j);
    } else {
        for (int64_t n = 0; n < N; n++) {
            float *hn = h + n * R, *gn = g + n * C;
            KILN_ISA_DISPATCH(kiln_se_gemv_isa, (w1t, R, mean + n * C, C, R, hn));
            kiln_act_apply_f32(&s->act, hn, bias1, hn, (size_t)R);
            KILN_ISA_DISPATCH(kiln_se_gemv_isa, (w2t, C, hn, R, C, gn));
            kiln_act_apply_f32(&s->gate, gn, b2 ? b2->data : NULL, gn, (size_t)C);
        }
    }
    kiln_pool_for(k->pool, (size_t)(N * nb), 1, row_scale, &j);
    return KILN_OK;
}

const struct kiln_cpu_op kiln_cpu_ops_se_block[] = {
    {"SqueezeExcite", "kiln", 1, 0, se_run, se_prepare, KILN_OP_INPLACE},
    {0},
};
