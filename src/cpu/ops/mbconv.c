/* src/cpu/ops/mbconv.c: kiln.MBConv, a whole inverted-residual block (MobileNetV2's, and
 * EfficientNet's "MBConv" without its squeeze-excitation) on channels-last tensors in one
 * node (docs/fused-ops.md). The optimizer's fuse_mbconv pass (src/opt/pass_fuse_mbconv.c)
 * writes the chain of kiln.ConvNhwc the nhwc pass leaves,
 *
 *     1x1 expand (+ act1) -> depthwise kh x kw, any stride and pads (+ act2) -> 1x1 project (+ Z, act3)
 *
 * as one:
 *
 *   MBConv (X [N, H, W, C], W1? [E, C, 1, 1], B1? [E], W2 [E, 1, kh, kw], B2? [E],
 *           W3? [M, E, 1, 1], B3? [M], Z? [N, OH, OW, M])
 *       -> Y [N, OH, OW, M]  = act3(W3 . act2(dw(act1(W1 . X + B1), W2) + B2) + B3 + Z)
 *
 * W1 absent: no expand (the depthwise reads X, E = C: MobileNetV2's first block). W3 absent:
 * no project, Y is the depthwise's [N, OH, OW, E] (EfficientNet's form, whose
 * squeeze-excitation sits between depthwise and project); Z needs W3. Attributes: `strides`,
 * `pads` (the depthwise's; no dilation, no auto_pad), `activation`, `activation_params`,
 * `approximate` (act1, as kiln.FusedConv's), `dw_activation`, `dw_activation_params` (act2),
 * `project_activation`, `project_activation_params` (act3); absent activations are the
 * identity. float32 only. Y must not share X's or Z's memory (no in-place flag: a thread's
 * halo rows are read after another thread wrote its output rows).
 *
 * Why: unfused, the expanded tensor (MobileNetV2's features.2: 112x112x96, 4.8 MB) is written
 * by the expand convolution and read back by the depthwise, and the depthwise's output
 * again by the project, from beyond L2 when they are large. Here each thread walks its
 * output rows in bands: for a band it expands only the input rows the band's windows need
 * that it has not expanded yet into a ring of rows in its scratch (the rows shared with the
 * previous band stay), runs the depthwise on the ring into a band buffer, then the project
 * into Y. The ring and the band buffer stay within a budget (below) that keeps them in L2:
 * the expanded tensor never goes to memory.
 *
 * Kernels (cpu/mbconv_isa.h, src/cpu/isa/mbconv.c, per instruction-set level): the 1x1
 * products are MBConv's own register-tiled GEMM with bias, Z and Relu/Clip in the registers
 * before the store (other activations on each finished row tile, in L1), on weights packed
 * at prepare into 16-column panels (engine blobs 0x6d620001 and 0x6d620003, the same layout
 * at every level); the depthwise is a row kernel with channels in vector lanes and
 * Relu/Clip in the registers. (kiln's pgemm, cpu/pgemm.h, was the first choice: on these
 * shapes, K 16-32 or N 16-24, its separate activation pass and 32-column panels made the
 * expand and project 10-40% slower than oneDNN's 1x1 convolutions, and the fused block lost;
 * docs/notes-mbconv.md.)
 *
 * Threads: the output rows of each image are cut into ranges (T threads: T ranges of one
 * image, whole images when N >= T), fewer when a range would get under ~1 MFLOP; a range
 * recomputes the expand of the input rows its first band shares with the previous range
 * (the halo: kh - sh rows). Each element is computed by one thread in an order fixed by the
 * shape (sums over k in order, taps in (ky, kx) order), so results do not depend on the
 * thread count or the bands. Against the unfused graph (oneDNN's convolutions) results
 * differ by float32 rounding (tests/unit/test_mbconv.c: within 1e-4 (1 + |r|)).
 *
 * Scratch per thread: ring rows min(H, (B - 1) * sh + kh) of [W, E] plus, with a project, the
 * band's [B * OW, E], B the most output rows that keep both within the budget (128 KB, which
 * measured as fast as 96-384 KB at 1 thread and keeps kiln_scratch's zero-fill small; the
 * environment variable KILN_MBCONV_BUDGET=BYTES overrides it, for measurements), at least
 * one. From the context's scratch arena (declared at prepare when H and W are known): no
 * allocation on the run path. Weights that were not constant at prepare are packed into
 * scratch at each run.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/pool.h"
#include "cpu/act.h"
#include "cpu/kernel.h"
#include "cpu/mbconv_isa.h"
#include "infer/infer.h"

#define MB_BUDGET   (128u * 1024u) /* bytes of ring + band buffer a thread aims to keep in L2 */
#define MB_MAX_K    64             /* kernel rows the row pointers have room for */
#define MB_MIN_WORK 1e6            /* FLOPs of a thread's share below which fewer threads run */
#define MB_MIN_PIXELS 48           /* output pixels a band has at least (budget or not) */

struct mb_state {
    struct kiln_act act[3]; /* expand, depthwise, project */
    int64_t s[2], pb[2], pe[2];
    size_t budget;
    /* Weights prepared from constants (wdw NULL when they were not constant at prepare). */
    int64_t C, E, M, kh, kw;
    bool expand, project;
    const float *p1, *p3; /* W1, W3 packed (pack_w); NULL without expand, project */
    const float *wdw;     /* [kh][kw][E] */
};

/* Activation `name` with its parameters `params` into *a. */
static kiln_status mb_act(struct kiln_kctx *k, const char *name, const char *params, struct kiln_act *a)
{
    const char *n = kiln_attr_s(k, name, "");
    const float *p;
    size_t np = kiln_attr_floats(k, params, &p);
    if (!kiln_act_parse(n, p, np, "none", a))
        return kiln_kfail(k, KILN_E_INVALID_MODEL,
                          "%s '%s' with %zu parameters is not one kiln knows (see docs/fused-ops.md)", name, n, np);
    return KILN_OK;
}

static kiln_status mb_decode(struct kiln_kctx *k, struct mb_state *s)
{
    memset(s, 0, sizeof *s);
    KILN_TRY(kiln_attr_pair(k, "strides", 1, 1, s->s));
    const int64_t *p;
    size_t np = kiln_attr_ints(k, "pads", &p);
    if (np && np != 4) return kiln_kfail(k, KILN_E_INVALID_MODEL, "pads has %zu values; expected 4", np);
    for (int i = 0; i < 2; i++) {
        s->pb[i] = np ? p[i] : 0;
        s->pe[i] = np ? p[2 + i] : 0;
        if (s->pb[i] < 0 || s->pe[i] < 0 || s->pb[i] > (1 << 30) || s->pe[i] > (1 << 30))
            return kiln_kfail(k, KILN_E_INVALID_MODEL, "pads must be in [0, 2^30]");
    }
    KILN_TRY(kiln_attr_act(k, &s->act[0]));
    KILN_TRY(mb_act(k, "dw_activation", "dw_activation_params", &s->act[1]));
    KILN_TRY(mb_act(k, "project_activation", "project_activation_params", &s->act[2]));
    const char *e = getenv("KILN_MBCONV_BUDGET");
    long v = e ? strtol(e, NULL, 10) : 0;
    s->budget = v > 0 ? (size_t)v : MB_BUDGET;
    return KILN_OK;
}

/* Whether t is a float32 [a, b, kh, kw] tensor (kh, kw 1 when k is NULL); *a, *b its dims. */
static bool w_shape(const struct kiln_tensor *t, int64_t *a, int64_t *b, int64_t *k)
{
    if (!t || t->dtype != KILN_DTYPE_F32 || t->rank != 4 || (!k && (t->dims[2] != 1 || t->dims[3] != 1)))
        return false;
    *a = t->dims[0], *b = t->dims[1];
    if (k) k[0] = t->dims[2], k[1] = t->dims[3];
    return true;
}

/* The depthwise weights [E, 1, kh, kw] as [kh][kw][E]. */
static void relay_dw(const float *w, int64_t E, int64_t kk, float *wt)
{
    for (int64_t e = 0; e < E; e++)
        for (int64_t t = 0; t < kk; t++) wt[t * E + e] = w[e * kk + t];
}

/* Floats of the 1x1 weights [N, K] packed into panels of 16 columns (cpu/mbconv_isa.h); 0
 * on overflow. */
static size_t pack_len(size_t K, size_t N)
{
    size_t n = (N + KILN_MBCONV_NR - 1) / KILN_MBCONV_NR * KILN_MBCONV_NR, len;
    if (!kiln_mul_size(n, K, &len) || !kiln_add_size(len, 16, &len) || !kiln_mul_size(len, sizeof(float), &n))
        return 0;
    return len;
}

/* Packs the 1x1 weights W [N, K] (B = W^T) into panels of 16 columns, [K][16] each, columns
 * past N zero: bp holds pack_len(K, N) floats. */
static void pack_w(const float *w, int64_t K, int64_t N, float *bp)
{
    const int64_t R = KILN_MBCONV_NR;
    for (int64_t n0 = 0; n0 < N; n0 += R) {
        float *d = bp + n0 * K;
        for (int64_t k = 0; k < K; k++)
            for (int64_t j = 0; j < R; j++) d[k * R + j] = n0 + j < N ? w[(n0 + j) * K + k] : 0.0f;
    }
}

/* The packed W [N, K] of an engine: blob `key` (computed at build, read back at load; a
 * loaded engine without it packs into prepare's memory). */
static kiln_status prep_pack(struct kiln_kprep *p, uint32_t key, const float *w, int64_t K, int64_t N,
                             const float **out)
{
    size_t len = pack_len((size_t)K, (size_t)N), have;
    if (!len) return kiln_kfail(&p->kc, KILN_E_LIMIT, "a %lld x %lld product is too large", (long long)K, (long long)N);
    void *bp;
    bool fill = true;
    if (!kiln_kprep_loading(p) || (kiln_kprep_blob_peek(p, key, &have) && have == len * sizeof(float)))
        KILN_TRY(kiln_kprep_blob(p, key, len * sizeof(float), &bp, &fill));
    else
        KILN_TRY(kiln_kprep_alloc(p, len * sizeof(float), &bp));
    if (fill) pack_w(w, K, N, bp);
    *out = bp;
    return KILN_OK;
}

static bool present(const struct kiln_kctx *k, size_t i)
{
    return k->n_in > i && k->node->inputs[i] && k->node->inputs[i][0];
}

/* Band rows and scratch floats per thread for the geometry. */
static void band_geom(const struct mb_state *s, int64_t H, int64_t W, int64_t OH, int64_t OW, int64_t E,
                      int64_t kh, bool expand, bool project, int64_t *B, int64_t *ring, size_t *per)
{
    double row = 4.0 * (double)(W * E), orow = project ? 4.0 * (double)(OW * E) : 0.0;
    int64_t b = 1;
    while (b < OH) {
        int64_t r = (b * s->s[0] + kh < H ? b * s->s[0] + kh : H); /* ring rows of b + 1 output rows */
        if ((expand ? (double)r * row : 0.0) + (double)(b + 1) * orow > (double)s->budget) break;
        b++;
    }
    while (b < OH && b * OW < MB_MIN_PIXELS) b++; /* products of a few rows waste the GEMM's tiles */
    int64_t r = (b - 1) * s->s[0] + kh;
    if (r > H) r = H;
    if (r < 1) r = 1;
    *B = b;
    *ring = expand ? r : 0;
    size_t f = (size_t)(*ring * W * E) + (project ? (size_t)(b * OW * E) : 0);
    *per = (f + 15) / 16 * 16 + 16;
}

static kiln_status mb_prepare(struct kiln_kprep *p)
{
    struct mb_state *s;
    KILN_TRY(kiln_kprep_alloc(p, sizeof *s, (void **)&s));
    KILN_TRY(mb_decode(&p->kc, s));
    p->state = s;
    p->kernel = "kiln-mbconv";
    struct kiln_kctx *k = &p->kc;
    s->expand = present(k, 1);
    s->project = present(k, 5);
    const struct kiln_tensor *w1 = s->expand ? kiln_kprep_const(p, 1) : NULL, *w2 = kiln_kprep_const(p, 3),
                             *w3 = s->project ? kiln_kprep_const(p, 5) : NULL;
    int64_t E, one, kk[2], C, E1, M = 0, E3;
    if (!w_shape(w2, &E, &one, kk) || one != 1 || E < 1 || kk[0] < 1 || kk[1] < 1 || kk[0] > MB_MAX_K)
        return KILN_OK; /* run reports it */
    if (s->expand && (!w_shape(w1, &E1, &C, NULL) || E1 != E)) return KILN_OK;
    if (!s->expand) C = E;
    if (s->project && (!w_shape(w3, &M, &E3, NULL) || E3 != E)) return KILN_OK;
    float *wdw;
    KILN_TRY(kiln_kprep_alloc(p, (size_t)(E * kk[0] * kk[1]) * sizeof(float), (void **)&wdw));
    relay_dw(w2->data, E, kk[0] * kk[1], wdw);
    if (s->expand) KILN_TRY(prep_pack(p, 0x6d620001u, w1->data, C, E, &s->p1));
    if (s->project) KILN_TRY(prep_pack(p, 0x6d620003u, w3->data, E, M, &s->p3));
    s->wdw = wdw;
    s->C = C, s->E = E, s->M = M, s->kh = kk[0], s->kw = kk[1];
    /* The scratch a run takes, when the image size is known. */
    const struct kiln_type *xt = p->in[0] ? &p->in[0]->type : NULL;
    if (xt && xt->kind == KILN_TYPE_TENSOR && xt->rank == 4 && xt->dims[1].value > 0 && xt->dims[2].value > 0) {
        int64_t H = xt->dims[1].value, W = xt->dims[2].value;
        int64_t OH = (H + s->pb[0] + s->pe[0] - kk[0]) / s->s[0] + 1, OW = (W + s->pb[1] + s->pe[1] - kk[1]) / s->s[1] + 1;
        if (OH > 0 && OW > 0 && (double)(W > OW ? W : OW) * (double)E * (double)(kk[0] + 1) <= 1e14) {
            int64_t B, ring;
            size_t per;
            band_geom(s, H, W, OH, OW, E, kk[0], s->expand, s->project, &B, &ring, &per);
            p->scratch_bytes = (size_t)(p->threads < 1 ? 1 : p->threads) * per * sizeof(float) + 64;
        }
    }
    return KILN_OK;
}

/* Relu and Clip as the kernels' in-register clamp (cpu/mbconv_isa.h); other kinds: *on 0. */
static void act_clamp(const struct kiln_act *a, int *on, float *lo, float *hi)
{
    *on = a->kind == KILN_ACT_RELU || a->kind == KILN_ACT_CLIP;
    *lo = a->kind == KILN_ACT_CLIP ? a->a : 0.0f;
    *hi = a->kind == KILN_ACT_CLIP ? a->b : INFINITY;
}

struct mb_job {
    const struct mb_state *s;
    const float *p1, *p3; /* packed W1, W3; NULL: no expand, no project */
    const float *x, *wdw, *b1, *b2, *b3, *z;
    float *y, *scratch;
    int64_t H, W, C, E, M, OH, OW, kh, kw;
    int64_t nsplit, B, ring;
    size_t per;
};

/* Output rows [o0, o1) of image n on thread `worker`'s scratch. */
static void mb_range(const struct mb_job *j, int64_t n, int64_t o0, int64_t o1, int worker)
{
    const struct mb_state *s = j->s;
    const int64_t H = j->H, W = j->W, C = j->C, E = j->E, OW = j->OW, sh = s->s[0], pt = s->pb[0];
    const int64_t Mo = j->p3 ? j->M : E;
    const float *x = j->x + n * H * W * C;
    float *y = j->y + n * j->OH * OW * Mo;
    const float *z = j->z ? j->z + n * j->OH * OW * Mo : NULL;
    float *ring = j->scratch + (size_t)worker * j->per, *band = ring + j->ring * W * E;
    int64_t have = 0; /* input rows [have_lo, have) are in the ring */
    bool started = false;
    const float *rows[MB_MAX_K];
    for (int64_t b0 = o0; b0 < o1; b0 += j->B) {
        int64_t b1 = b0 + j->B < o1 ? b0 + j->B : o1;
        int64_t lo = b0 * sh - pt, hi = (b1 - 1) * sh - pt + j->kh;
        if (lo < 0) lo = 0;
        if (hi > H) hi = H;
        if (j->p1 && lo < hi) {
            int64_t r = started && have > lo ? have : lo;
            while (r < hi) { /* rows [r, hi) into the ring, in runs of consecutive slots */
                int64_t slot = r % j->ring, cnt = hi - r < j->ring - slot ? hi - r : j->ring - slot;
                struct kiln_mbconv_gemm ge = {x + r * W * C, C, j->p1, j->b1, NULL, 0, ring + slot * W * E, E,
                                              cnt * W, C, E, 0, 0.0f, 0.0f, &s->act[0]};
                act_clamp(&s->act[0], &ge.clamp, &ge.lo, &ge.hi);
                KILN_ISA_DISPATCH(kiln_mbconv_gemm_isa, (&ge));
                r += cnt;
            }
            have = hi;
            started = true;
        }
        for (int64_t oh = b0; oh < b1; oh++) {
            for (int64_t ky = 0; ky < j->kh; ky++) {
                int64_t ih = oh * sh - pt + ky;
                rows[ky] = ih < 0 || ih >= H ? NULL : j->p1 ? ring + (ih % j->ring) * W * E : x + ih * W * C;
            }
            float *out = j->p3 ? band + (oh - b0) * OW * E : y + oh * OW * E;
            struct kiln_mbconv_dw d = {rows, j->wdw, j->b2, out, W, E, OW, j->kh, j->kw, s->s[1], s->pb[1], 0, 0, 0};
            act_clamp(&s->act[1], &d.clamp, &d.lo, &d.hi);
            KILN_ISA_DISPATCH(kiln_mbconv_dw_row_isa, (&d));
            if (s->act[1].kind != KILN_ACT_NONE && !d.clamp) kiln_act_apply_f32(&s->act[1], out, NULL, out, (size_t)(OW * E));
        }
        if (j->p3) {
            struct kiln_mbconv_gemm gp = {band, E, j->p3, j->b3, z ? z + b0 * OW * Mo : NULL, Mo, y + b0 * OW * Mo, Mo,
                                          (b1 - b0) * OW, E, Mo, 0, 0.0f, 0.0f, &s->act[2]};
            act_clamp(&s->act[2], &gp.clamp, &gp.lo, &gp.hi);
            KILN_ISA_DISPATCH(kiln_mbconv_gemm_isa, (&gp));
        }
    }
}

static void mb_items(void *ctx, size_t i0, size_t i1, int worker)
{
    const struct mb_job *j = ctx;
    for (size_t i = i0; i < i1; i++) {
        int64_t n = (int64_t)i / j->nsplit, r = (int64_t)i % j->nsplit;
        mb_range(j, n, j->OH * r / j->nsplit, j->OH * (r + 1) / j->nsplit, worker);
    }
}

static kiln_status mb_run(struct kiln_kctx *k)
{
    const struct mb_state *s = k->state;
    if (!s) return kiln_cpu_run_unprepared(k, mb_prepare, mb_run);
    const struct kiln_tensor *x, *w2, *w1 = kiln_in(k, 1), *b1 = k->n_in > 2 ? kiln_in(k, 2) : NULL,
                                      *b2 = k->n_in > 4 ? kiln_in(k, 4) : NULL, *w3 = k->n_in > 5 ? kiln_in(k, 5) : NULL,
                                      *b3 = k->n_in > 6 ? kiln_in(k, 6) : NULL, *z = k->n_in > 7 ? kiln_in(k, 7) : NULL;
    if (k->n_in < 2) w1 = NULL;
    KILN_TRY(kiln_in_req(k, 0, &x));
    KILN_TRY(kiln_in_req(k, 3, &w2));
    if (x->dtype != KILN_DTYPE_F32 || x->rank != 4)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input X is %s of rank %d; expected float32 [N, H, W, C]",
                          kiln_dtype_name(x->dtype), x->rank);
    int64_t N = x->dims[0], H = x->dims[1], W = x->dims[2], C = x->dims[3], E, one, kk[2], E1, C1, M = 0, E3;
    if (!w_shape(w2, &E, &one, kk) || one != 1 || kk[0] < 1 || kk[1] < 1 || kk[0] > MB_MAX_K)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "W2 must be float32 [E, 1, kh, kw] (a depthwise kernel, kh <= %d)",
                          MB_MAX_K);
    if (w1 && (!w_shape(w1, &E1, &C1, NULL) || E1 != E || C1 != C))
        return kiln_kfail(k, KILN_E_INVALID_ARG, "W1 must be float32 [%lld, %lld, 1, 1] (W2's channels, X's channels)",
                          (long long)E, (long long)C);
    if (!w1 && C != E)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "without W1, X's channels (%lld) must be W2's (%lld)", (long long)C,
                          (long long)E);
    if (w3 && (!w_shape(w3, &M, &E3, NULL) || E3 != E))
        return kiln_kfail(k, KILN_E_INVALID_ARG, "W3 must be float32 [M, %lld, 1, 1]", (long long)E);
    if ((b1 && (!w1 || b1->dtype != KILN_DTYPE_F32 || b1->rank != 1 || b1->dims[0] != E)) ||
        (b2 && (b2->dtype != KILN_DTYPE_F32 || b2->rank != 1 || b2->dims[0] != E)) ||
        (b3 && (!w3 || b3->dtype != KILN_DTYPE_F32 || b3->rank != 1 || b3->dims[0] != M)))
        return kiln_kfail(k, KILN_E_INVALID_ARG, "B1, B2 and B3 must be float32 [%lld], [%lld] and [M] (B1 with W1, "
                          "B3 with W3)", (long long)E, (long long)E);
    int64_t sh = s->s[0], sw = s->s[1];
    int64_t span_h = H + s->pb[0] + s->pe[0] - kk[0], span_w = W + s->pb[1] + s->pe[1] - kk[1];
    int64_t OH = span_h < 0 ? 0 : span_h / sh + 1, OW = span_w < 0 ? 0 : span_w / sw + 1;
    int64_t Mo = w3 ? M : E, yd[4] = {N, OH, OW, Mo};
    if (z && (!w3 || z->dtype != KILN_DTYPE_F32 || z->rank != 4 || memcmp(z->dims, yd, sizeof yd)))
        return kiln_kfail(k, KILN_E_INVALID_ARG, "Z must be float32 [%lld, %lld, %lld, %lld], Y's shape, and needs W3",
                          (long long)N, (long long)OH, (long long)OW, (long long)Mo);
    if ((double)(W > OW ? W : OW) * (double)E * (double)(kk[0] + 1) > 1e14)
        return kiln_kfail(k, KILN_E_LIMIT, "rows of %lld x %lld are too large for MBConv's buffers", (long long)W,
                          (long long)E);
    struct kiln_tensor *y;
    KILN_TRY(kiln_out_tensor_raw(k, 0, KILN_DTYPE_F32, 4, yd, &y));
    if (!kiln_tensor_numel(y)) return KILN_OK;
    int64_t B, ring;
    size_t per;
    band_geom(s, H, W, OH, OW, E, kk[0], w1 != NULL, w3 != NULL, &B, &ring, &per);
    /* Threads: ranges of output rows, each worth ~1 MFLOP. */
    double flops = 2.0 * (double)N * ((double)(OH * OW) * (double)(E * (kk[0] * kk[1] + M)) + (w1 ? (double)(H * W) * (double)(C * E) : 0.0));
    int64_t T = kiln_pool_threads(k->pool);
    while (T > 1 && flops / (double)T < MB_MIN_WORK) T--;
    int64_t nsplit = N >= T ? 1 : (T + N - 1) / N;
    if (nsplit > OH) nsplit = OH;
    /* Weights: prepared, or packed into scratch now. */
    bool prepped = s->wdw && s->E == E && s->C == C && s->M == M && s->kh == kk[0] && s->kw == kk[1] &&
                   s->expand == (w1 != NULL) && s->project == (w3 != NULL);
    size_t extra = 0, l1 = 0, l3 = 0;
    if (!prepped) {
        l1 = w1 ? pack_len((size_t)C, (size_t)E) : 0;
        l3 = w3 ? pack_len((size_t)E, (size_t)M) : 0;
        if ((w1 && !l1) || (w3 && !l3)) return kiln_kfail(k, KILN_E_LIMIT, "the 1x1 weights are too large");
        extra = l1 + l3 + (size_t)(E * kk[0] * kk[1]) + 16;
    }
    int threads = kiln_pool_threads(k->pool);
    size_t fl;
    if (!kiln_mul_size((size_t)threads, per, &fl) || !kiln_add_size(fl, extra, &fl) ||
        !kiln_mul_size(fl, sizeof(float), &fl))
        return kiln_kfail(k, KILN_E_LIMIT, "scratch for %lld x %lld x %lld is too large", (long long)H, (long long)W,
                          (long long)E);
    float *sc;
    KILN_TRY(kiln_scratch_raw(k, fl, (void **)&sc));
    struct mb_job j = {s, s->p1, s->p3, x->data, s->wdw, b1 ? b1->data : NULL, b2 ? b2->data : NULL,
                       b3 ? b3->data : NULL, z ? z->data : NULL, y->data, sc, H, W, C, E, M, OH, OW, kk[0], kk[1],
                       nsplit, B, ring, per};
    if (!prepped) {
        float *p1 = sc + (size_t)threads * per, *p3 = p1 + l1, *wd = p3 + l3;
        if (w1) pack_w(w1->data, C, E, p1);
        if (w3) pack_w(w3->data, E, M, p3);
        relay_dw(w2->data, E, kk[0] * kk[1], wd);
        j.p1 = w1 ? p1 : NULL, j.p3 = w3 ? p3 : NULL, j.wdw = wd;
    }
    kiln_pool_for(k->pool, (size_t)(N * nsplit), 1, mb_items, &j);
    return KILN_OK;
}

const struct kiln_cpu_op kiln_cpu_ops_mbconv[] = {
    {"MBConv", "kiln", 1, 0, mb_run, mb_prepare, 0},
    {0},
};
