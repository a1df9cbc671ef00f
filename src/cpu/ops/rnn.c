/* src/cpu/ops/rnn.c: ONNX recurrent layers RNN (1, 7, 14), GRU (1, 3, 7, 14), LSTM (1, 7, 14).
 *
 * Follows the equations of the ONNX spec. Gate order in W/R/B: RNN i; GRU z, r, h; LSTM i, o,
 * f, c (peepholes P: i, o, f). direction forward / reverse / bidirectional; layout 0
 * (X [seq, batch, in], Y [seq, dirs, batch, hidden]) or 1 (batch first). sequence_lens
 * shortens a batch entry: its steps past the length leave Y at zero and Y_h/Y_c hold the
 * state after its last valid step. `clip` bounds gate pre-activations. Activations come from
 * the `activations` list (per direction) with activation_alpha/beta consumed in order by the
 * functions that take them. Computes in float32 (float64/float16 inputs are converted).
 *
 * Prepare decodes the attributes once, the activation list included (names resolved,
 * alpha/beta distributed); an unknown direction or activation is reported by run, where
 * it was found before.
 *
 * How it runs. The weights are repacked (struct pack): W^T as [in, Gp] with the gate columns
 * in block order (hidden units in blocks of KILN_RNN_U, the gates of a block side by side),
 * R as one contiguous panel per block (cpu/rnn_isa.h), the biases summed where the
 * equations let them (all but GRU's Rb_h under linear_before_reset), peepholes per block.
 * Constant float32 weights are packed by prepare (blob 0, kept in engine files); others are
 * packed by run into scratch. Run projects the inputs of all steps at once, one GEMM
 * [steps * batch, in] x [in, Gp] per direction on top of the folded bias (cut into fixed
 * tiles, split over the pool when big; at AVX2 on kiln's GEMM, cpu/pgemm.h, with W^T
 * prepacked for it), then per step only the recurrent product h . R^T,
 * block by block, each block followed by its gates' cell (vectorized for the default
 * activations, scalar for the others), so a block's hidden units are finished, and written
 * to Y, where their gates were computed.
 *
 * Threads. The steps of both directions run in one pool job (base/stages.h): a stage is a
 * step (GRU without linear_before_reset: each of its two sections), its items the blocks of
 * both directions side by side. The participants stay for the whole sequence and meet at a
 * spin wait per step, where a pool job per step cost a wake-up and a join each time; each
 * keeps to its own slice of blocks (bidirectional on two threads: one direction each), so
 * its share of R stays in its cache, and the blocks are visited in ascending order on one
 * step and descending on the next, so what a step read last is still cached at the start of
 * the next (the bench set's LSTM: 4 MiB of R per layer against 2 MiB of L2 per core, 21 ->
 * 14 ms of CPU per run on one thread; on two threads, each with half of R in its L2, 4.3 ms
 * when both cores are free, against 20 ms before, when a pool job per step paid only from
 * 4M multiply-adds a step and this model's steps ran on one thread; with the other core
 * busy with another process, the other participant takes the blocks of a descheduled one,
 * base/stages.h: 9.3-9.7 ms, against 10.7-11.0 when a stall made the call go on alone).
 * Steps of fewer than PAR_STEP multiply-adds (64K, a
 * few microseconds) stay on one thread: below that, the wait costs as much as the split
 * saves (measured on the 2-core development VM, RNN, GRU and LSTM at hidden 16..256, batch 1
 * and 4, best of 40 runs: 2 threads break even at 40K-55K a step, gain 8-18% at 64K and
 * 1.4x at 250K-1M; at 4K a step takes 2-3x as long, the wait costing ~0.4 us). A block's arithmetic does not depend on which thread runs it, and the projection's
 * tiles are fixed, so results do not depend on the thread count (tests compare 1, 2 and 3
 * threads bitwise). GRU without linear_before_reset needs r . h before its h gate: its z, r
 * gates and its h gate are two sections of blocks, two stages of a step.
 */
#include <math.h>
#include <string.h>
#include <strings.h>

#include "base/pool.h"
#include "base/stages.h"
#include "cpu/pgemm.h"
#include "cpu/rnn_isa.h"
#include "cpu/sgemm.h"
#include "cpu/tensor_util.h"
#include "infer/infer.h"

#define U KILN_RNN_U

enum rnn_kind { K_RNN, K_GRU, K_LSTM };

struct act {
    int fn; /* index in act_names */
    float alpha, beta;
};

static const char *const act_names[] = {"Relu", "Tanh", "Sigmoid", "Affine", "LeakyRelu", "ThresholdedRelu",
                                        "ScaledTanh", "HardSigmoid", "Elu", "Softsign", "Softplus"};

static float apply(const struct act *a, float x)
{
    switch (a->fn) {
    case 0: return x > 0 ? x : 0;
    case 1: return tanhf(x);
    case 2: return 1.0f / (1.0f + expf(-x));
    case 3: return a->alpha * x + a->beta;
    case 4: return x >= 0 ? x : a->alpha * x;
    case 5: return x > a->alpha ? x : 0;
    case 6: return a->alpha * tanhf(a->beta * x);
    case 7: return fmaxf(0, fminf(1, a->alpha * x + a->beta));
    case 8: return x >= 0 ? x : a->alpha * (expf(x) - 1);
    case 9: return x / (1 + fabsf(x));
    default: return log1pf(expf(x));
    }
}

/* Default alpha/beta per function, and how many of the lists' values it consumes. */
static int act_params(int fn, float *alpha, float *beta)
{
    switch (fn) {
    case 3: *alpha = 1, *beta = 0; return 2;
    case 4: *alpha = 0.01f; return 1;
    case 5: *alpha = 1; return 1;
    case 6: *alpha = 1, *beta = 1; return 2;
    case 7: *alpha = 0.2f, *beta = 0.5f; return 2;
    case 8: *alpha = 1; return 1;
    default: return 0;
    }
}

static float clipf(float x, float c) { return c > 0 ? fmaxf(-c, fminf(c, x)) : x; }

/* The decoded attributes of one RNN/GRU/LSTM node. */
struct rnn_state {
    const char *dir;       /* direction, for the message when it is not valid */
    int n_dir;             /* 1, or 2 for bidirectional */
    bool reverse_only;
    bool bad_dir;          /* direction is none of forward, reverse, bidirectional */
    int layout;
    float clip;
    bool lbr, input_forget;
    bool has_hidden;       /* hidden_size given (else R's last dim) */
    int64_t hidden_size;
    const char *bad_act;   /* the first unsupported activation name (NULL: none) */
    struct act acts[6];    /* n_act per direction, per direction in order */
    bool fast[2];          /* per direction: the default activations (vectorized cells) */
    /* Weights packed by prepare (NULL: packed by run), for hidden pk_h and input pk_i. */
    const float *packed;
    int64_t pk_h, pk_i;
    /* At AVX2, per direction: W^T of the pack prepacked for kiln's GEMM (blob 1 + d), which
     * runs the projection (NULL: kiln_sgemm on the pack). */
    struct kiln_pgemm *pg[2];
};

/* ------------------------------------------------------------------ packed weights */

/* Where things go for one node: G gates of hidden H (hp = H rounded up to blocks of U, nb
 * blocks), input I. The gates form one section of g0 gates, or for GRU without
 * linear_before_reset two (z, r; then h). Packed column of gate g, unit j: blocks of section
 * 0 (g0 * U columns each), then blocks of section 1. */
struct geom {
    enum rnn_kind kind;
    size_t H, I, hp, nb, gp; /* gp = G * hp columns */
    int g0, g1;
    bool fold_rbh;           /* Rb_h sums into the projection (all but GRU with lbr) */
    /* floats of one direction's pack, and its parts' offsets */
    size_t wt, rp, bias, rbh, peep, per_dir;
};

static bool geom_init(struct geom *g, enum rnn_kind kind, bool lbr, int64_t H, int64_t I)
{
    g->kind = kind;
    g->H = (size_t)H, g->I = (size_t)I;
    g->nb = (g->H + U - 1) / U;
    g->hp = g->nb * U;
    int G = kind == K_RNN ? 1 : kind == K_GRU ? 3 : 4;
    g->g0 = kind == K_GRU && !lbr ? 2 : G;
    g->g1 = G - g->g0;
    g->fold_rbh = !(kind == K_GRU && lbr);
    g->gp = (size_t)G * g->hp;
    size_t wtn, rpn, n = 0;
    if (!kiln_mul_size(g->I, g->gp, &wtn) || !kiln_mul_size(g->H, g->gp, &rpn)) return false;
    g->wt = n;
    if (!kiln_add_size(n, wtn, &n)) return false;
    g->rp = n;
    if (!kiln_add_size(n, rpn, &n)) return false;
    g->bias = n;
    g->rbh = n + g->gp;
    g->peep = g->rbh + g->hp;
    return kiln_add_size(g->peep, 3 * g->hp, &g->per_dir) && g->per_dir < SIZE_MAX / 4 / 2;
}

static size_t col_of(const struct geom *g, int gate, size_t j)
{
    size_t blk = j / U, u = j % U;
    if (gate < g->g0) return blk * (size_t)g->g0 * U + (size_t)gate * U + u;
    return g->nb * (size_t)g->g0 * U + blk * (size_t)g->g1 * U + (size_t)(gate - g->g0) * U + u;
}

/* Offset of the R panel of block blk of section sec (its row q, column c at + q * gs * U + c). */
static size_t panel_of(const struct geom *g, int sec, size_t blk)
{
    size_t w0 = (size_t)g->g0 * U * g->H;
    return sec == 0 ? blk * w0 : g->nb * w0 + blk * (size_t)g->g1 * U * g->H;
}

/* Packs one direction: w [G*H, I], r [G*H, H], b [2*G*H] or NULL, p [3*H] or NULL, into
 * dst (per_dir floats, which this zeroes first: padding units have zero weights). */
static void pack_dir(const struct geom *g, const float *w, const float *r, const float *b, const float *p,
                     float *dst)
{
    memset(dst, 0, g->per_dir * sizeof *dst);
    int G = g->g0 + g->g1;
    size_t H = g->H, I = g->I;
    for (int gate = 0; gate < G; gate++) {
        int sec = gate < g->g0 ? 0 : 1, gs = sec ? g->g1 : g->g0, gl = sec ? gate - g->g0 : gate;
        for (size_t j = 0; j < H; j++) {
            size_t row = (size_t)gate * H + j, col = col_of(g, gate, j);
            for (size_t q = 0; q < I; q++) dst[g->wt + q * g->gp + col] = w[row * I + q];
            float *pan = dst + g->rp + panel_of(g, sec, j / U) + (size_t)gl * U + j % U;
            for (size_t q = 0; q < H; q++) pan[q * (size_t)gs * U] = r[row * H + q];
            if (b) {
                bool fold = gate != 2 || g->fold_rbh || g->kind != K_GRU;
                dst[g->bias + col] = b[row] + (fold ? b[(size_t)G * H + row] : 0);
                if (!fold) dst[g->rbh + j] = b[(size_t)G * H + row];
            }
        }
    }
    if (p)
        for (int k = 0; k < 3; k++)
            for (size_t j = 0; j < H; j++) dst[g->peep + (j / U) * 3 * U + (size_t)k * U + j % U] = p[(size_t)k * H + j];
}

/* Input i of the node is absent (not given, or ""). */
static bool absent(const struct kiln_kprep *p, size_t i)
{
    return i >= p->kc.node->n_in || !p->kc.node->inputs[i][0];
}

/* A float32 constant with n elements (absent counts, as NULL with *ok true). */
static const float *const_f32(const struct kiln_kprep *p, size_t i, size_t n, bool *ok)
{
    if (absent(p, i)) return NULL;
    const struct kiln_tensor *t = kiln_kprep_const(p, i);
    if (!t || t->dtype != KILN_DTYPE_F32 || !t->data || kiln_tensor_numel(t) != n) *ok = false;
    return *ok ? t->data : NULL;
}

/* The scratch blocks run takes for S steps of batch B, in bytes: the pack (when not
 * prepacked), the projection, h twice, c, GRU's z and r . h, the lengths. */
enum { N_SCRATCH = 6 };
static bool scratch_sizes(const struct geom *g, int n_dir, bool packed, size_t S, size_t B, size_t *want)
{
    size_t sb, rows = 0;
    if (!kiln_mul_size(S, B, &sb) || !kiln_mul_size(sb, g->gp, &rows) || rows > SIZE_MAX / 8 ||
        B > SIZE_MAX / 16 / (g->hp + 1))
        return false;
    want[0] = packed ? 0 : (size_t)n_dir * g->per_dir * sizeof(float);
    size_t nd = (size_t)n_dir;
    want[1] = nd * rows * sizeof(float);
    want[2] = nd * 2 * B * g->hp * sizeof(float);
    want[3] = nd * B * g->hp * sizeof(float);
    want[4] = g->kind == K_GRU ? nd * 2 * B * g->hp * sizeof(float) : 0;
    want[5] = B * sizeof(int64_t);
    for (int i = 0; i < N_SCRATCH; i++) want[i] += 64; /* never 0 bytes */
    return true;
}

static size_t run_scratch(const struct geom *g, int n_dir, bool packed, size_t S, size_t B)
{
    size_t want[N_SCRATCH], n = 0;
    if (!scratch_sizes(g, n_dir, packed, S, B, want)) return 0;
    for (int i = 0; i < N_SCRATCH; i++) n += (want[i] + 63) & ~(size_t)63;
    return n;
}

static bool known_dims(const struct kiln_vtype *t, int rank, int64_t *dims)
{
    if (!t || t->type.kind != KILN_TYPE_TENSOR || t->type.rank != rank) return false;
    for (int d = 0; d < rank; d++)
        if ((dims[d] = t->type.dims[d].value) < 0) return false;
    return true;
}

/* Packs W, R, B, P once when they are float32 constants of the right shapes (anything else:
 * run packs, or reports the shape error), and sizes run's scratch when X's shape is known. */
static kiln_status prepack(struct kiln_kprep *p, struct rnn_state *s, enum rnn_kind kind)
{
    if (s->bad_act || p->kc.node->n_in < 3) return KILN_OK;
    const struct kiln_tensor *tw = kiln_kprep_const(p, 1), *tr = kiln_kprep_const(p, 2);
    int64_t xd[3], rd[3], H = -1, I = -1;
    if (s->has_hidden)
        H = s->hidden_size;
    else if (tr && tr->rank == 3)
        H = tr->dims[2];
    else if (p->in && known_dims(p->in[2], 3, rd))
        H = rd[2];
    bool xk = p->in && known_dims(p->in[0], 3, xd);
    if (xk)
        I = xd[2];
    else if (tw && tw->rank == 3)
        I = tw->dims[2];
    if (H < 0 || I < 0) return KILN_OK;
    struct geom g;
    if (!geom_init(&g, kind, s->lbr, H, I)) return KILN_OK;
    size_t G = (size_t)(g.g0 + g.g1), nd = (size_t)s->n_dir;
    bool ok = tw && tr && tw->rank == 3 && tr->rank == 3 && tw->dims[0] == s->n_dir &&
              tw->dims[1] == (int64_t)(G * g.H) && tw->dims[2] == I && tr->dims[0] == s->n_dir &&
              tr->dims[1] == (int64_t)(G * g.H) && tr->dims[2] == H;
    const float *w = ok ? const_f32(p, 1, nd * G * g.H * g.I, &ok) : NULL;
    const float *r = ok ? const_f32(p, 2, nd * G * g.H * g.H, &ok) : NULL;
    const float *b = ok ? const_f32(p, 3, nd * 2 * G * g.H, &ok) : NULL;
    const float *pp = ok && kind == K_LSTM ? const_f32(p, 7, nd * 3 * g.H, &ok) : NULL;
    if (ok && g.per_dir > 0) {
        void *data;
        bool fill;
        KILN_TRY(kiln_kprep_blob(p, 0, nd * g.per_dir * sizeof(float), &data, &fill));
        if (fill)
            for (size_t d = 0; d < nd; d++)
                pack_dir(&g, w + d * G * g.H * g.I, r + d * G * g.H * g.H, b ? b + d * 2 * G * g.H : NULL,
                         pp ? pp + d * 3 * g.H : NULL, (float *)data + d * g.per_dir);
        s->packed = data;
        s->pk_h = H;
        s->pk_i = I;
        /* The projection on kiln's GEMM at AVX2, where oneDNN's AVX2 sgemm ran the bench set's
         * LSTM's [64, 512] x [512, 2048] products at ~65 GFLOP/s (Zen 4, KILN_CPU_ISA=avx2):
         * the LSTM 11.7-12.1 -> 9.0-10.2 ms at one thread. At AVX-512 the two measured level
         * (9.6-9.9 against 9.0-9.8 ms), so oneDNN's stays there. */
        if (kiln_isa_active() == KILN_ISA_AVX2)
            for (size_t d = 0; d < nd; d++)
                KILN_TRY(kiln_pgemm_prepare(p, 1 + (uint32_t)d, g.I, g.gp, (const float *)data + d * g.per_dir + g.wt,
                                            g.gp, false, &s->pg[d]));
    }
    if (xk) {
        size_t S = (size_t)(s->layout ? xd[1] : xd[0]), B = (size_t)(s->layout ? xd[0] : xd[1]);
        p->scratch_bytes = run_scratch(&g, s->n_dir, s->packed != NULL, S, B);
    }
    return KILN_OK;
}

static kiln_status rnn_prepare_kind(struct kiln_kprep *p, enum rnn_kind kind)
{
    struct rnn_state *s;
    KILN_TRY(kiln_kprep_alloc(p, sizeof *s, (void **)&s));
    p->state = s;
    const struct kiln_kctx *k = &p->kc;
    s->dir = kiln_attr_s(k, "direction", "forward");
    s->n_dir = strcmp(s->dir, "bidirectional") == 0 ? 2 : 1;
    s->reverse_only = strcmp(s->dir, "reverse") == 0;
    s->bad_dir = s->n_dir == 1 && !s->reverse_only && strcmp(s->dir, "forward") != 0;
    s->layout = (int)kiln_attr_i(k, "layout", 0);
    s->clip = kiln_attr_f(k, "clip", 0);
    s->lbr = kiln_attr_i(k, "linear_before_reset", 0) != 0;
    s->input_forget = kiln_attr_i(k, "input_forget", 0) != 0;
    /* as kiln_attr_i(k, "hidden_size", R's last dim): only an int attribute counts */
    const struct kiln_attr *hs = kiln_node_attr(k->node, "hidden_size");
    s->has_hidden = hs && hs->type == KILN_ATTR_INT;
    s->hidden_size = s->has_hidden ? hs->i : 0;
    if (s->bad_dir) return KILN_OK; /* run fails before it reads the activations */

    /* Activations: n_act per direction. */
    int n_act = kind == K_RNN ? 1 : kind == K_GRU ? 2 : 3;
    const char *const *names = NULL;
    const float *alphas = NULL, *betas = NULL;
    size_t n_names = kiln_attr_strings(k, "activations", &names);
    size_t n_alpha = kiln_attr_floats(k, "activation_alpha", &alphas);
    size_t n_beta = kiln_attr_floats(k, "activation_beta", &betas);
    static const int defaults[3][3] = {{1}, {2, 1}, {2, 1, 1}};
    size_t ai = 0, bi = 0;
    for (int d = 0; d < s->n_dir; d++)
        for (int a = 0; a < n_act; a++) {
            struct act *ac = &s->acts[d * n_act + a];
            size_t idx = (size_t)(d * n_act + a);
            ac->fn = defaults[kind][a];
            ac->alpha = ac->beta = 0;
            if (idx < n_names) {
                ac->fn = -1;
                for (int f = 0; f < (int)(sizeof act_names / sizeof *act_names); f++)
                    if (strcasecmp(names[idx], act_names[f]) == 0) ac->fn = f;
                if (ac->fn < 0) {
                    s->bad_act = names[idx];
                    return KILN_OK;
                }
            }
            int np = act_params(ac->fn, &ac->alpha, &ac->beta);
            if (idx < n_names && np >= 1 && ai < n_alpha) ac->alpha = alphas[ai++];
            if (idx < n_names && np >= 2 && bi < n_beta) ac->beta = betas[bi++];
        }
    for (int d = 0; d < s->n_dir; d++) {
        s->fast[d] = true;
        for (int a = 0; a < n_act; a++) s->fast[d] &= s->acts[d * n_act + a].fn == defaults[kind][a];
    }
    return prepack(p, s, kind);
}

static kiln_status rnn_prepare(struct kiln_kprep *p) { return rnn_prepare_kind(p, K_RNN); }
static kiln_status gru_prepare(struct kiln_kprep *p) { return rnn_prepare_kind(p, K_GRU); }
static kiln_status lstm_prepare(struct kiln_kprep *p) { return rnn_prepare_kind(p, K_LSTM); }

/* ------------------------------------------------------------------ cells, generic activations */

/* The cells of cpu/rnn_isa.h for any activations (fa: this direction's), one block. */
static void lstm_generic(const float *px, const float *hr, const float *p, float clip, bool input_forget,
                         const struct act *fa, float *c, float *h)
{
    for (int u = 0; u < U; u++) {
        float cp = c[u];
        float xi = px[u] + hr[u] + (p ? p[u] * cp : 0);
        float xf = px[2 * U + u] + hr[2 * U + u] + (p ? p[2 * U + u] * cp : 0);
        float i = apply(&fa[0], clipf(xi, clip));
        float f = input_forget ? 1 - i : apply(&fa[0], clipf(xf, clip));
        float g = apply(&fa[1], clipf(px[3 * U + u] + hr[3 * U + u], clip));
        float cn = f * cp + i * g;
        float o = apply(&fa[0], clipf(px[U + u] + hr[U + u] + (p ? p[U + u] * cn : 0), clip));
        c[u] = cn;
        h[u] = o * apply(&fa[2], cn);
    }
}

static void gru_lbr_generic(const float *px, const float *hr, const float *rbh, float clip,
                            const struct act *fa, const float *hp, float *h)
{
    for (int u = 0; u < U; u++) {
        float z = apply(&fa[0], clipf(px[u] + hr[u], clip));
        float r = apply(&fa[0], clipf(px[U + u] + hr[U + u], clip));
        float n = apply(&fa[1], clipf(px[2 * U + u] + r * (hr[2 * U + u] + rbh[u]), clip));
        h[u] = (1 - z) * n + z * hp[u];
    }
}

static void gru_zr_generic(const float *px, const float *hr, float clip, const struct act *fa, const float *hp,
                           float *z, float *rh)
{
    for (int u = 0; u < U; u++) {
        z[u] = apply(&fa[0], clipf(px[u] + hr[u], clip));
        rh[u] = apply(&fa[0], clipf(px[U + u] + hr[U + u], clip)) * hp[u];
    }
}

static void gru_h_generic(const float *px, const float *hr, const float *z, float clip, const struct act *fa,
                          const float *hp, float *h)
{
    for (int u = 0; u < U; u++) {
        float n = apply(&fa[1], clipf(px[u] + hr[u], clip));
        h[u] = (1 - z[u]) * n + z[u] * hp[u];
    }
}

/* ------------------------------------------------------------------ run */

/* proj [M, gp] += x [M, I] . wt [I, gp], in fixed tiles (the same products whatever the
 * thread count), the tiles over the pool when there is enough work. */
enum { TILE_M = 128, TILE_N = 256 };
struct proj_ctx {
    size_t M, N, K, tn;
    const float *x, *wt;
    float *y;
};

static void proj_tiles(void *ctx, size_t begin, size_t end, int worker)
{
    (void)worker;
    const struct proj_ctx *c = ctx;
    for (size_t i = begin; i < end; i++) {
        size_t m0 = i / c->tn * TILE_M, n0 = i % c->tn * TILE_N;
        size_t m = c->M - m0 < TILE_M ? c->M - m0 : TILE_M, n = c->N - n0 < TILE_N ? c->N - n0 : TILE_N;
        kiln_sgemm(false, false, m, n, c->K, 1.0f, c->x + m0 * c->K, c->K, c->wt + n0, c->N, 1.0f,
                   c->y + m0 * c->N + n0, c->N);
    }
}

static void project(struct kiln_pool *pool, size_t M, size_t N, size_t K, const float *x, const float *wt,
                    float *y)
{
    if (M == 0 || N == 0 || K == 0) return;
    struct proj_ctx c = {M, N, K, (N + TILE_N - 1) / TILE_N, x, wt, y};
    size_t tiles = (M + TILE_M - 1) / TILE_M * c.tn;
    if (kiln_pool_threads(pool) > 1 && M * N * K >= ((size_t)1 << 20))
        kiln_pool_for(pool, tiles, 1, proj_tiles, &c);
    else
        proj_tiles(&c, 0, tiles, 0);
}

/* Multiply-adds of a step (all directions) from which its blocks are split over the pool. */
#define PAR_STEP 65536.0

typedef void (*gemv_fn)(const float *h, const float *panel, size_t K, int G, float *out);

/* Element `at` on of t = the n floats of src. */
static void put_row(struct kiln_tensor *t, size_t at, const float *src, size_t n)
{
    if (t->dtype == KILN_DTYPE_F32)
        memcpy((float *)t->data + at, src, n * sizeof *src);
    else
        for (size_t j = 0; j < n; j++) kiln_tensor_set_f64(t, at + j, src[j]);
}

/* One direction's run: its pack, projection and state (h[step % 2] the state before a
 * step, h[(step + 1) % 2] after it). */
struct dir_run {
    const float *pk, *proj;
    float *h[2], *c, *z, *rh;
    const struct act *fa;
    bool rev, fast;
};

/* The whole sequence: stage = step * phases + phase (phase 1: GRU's h section), item =
 * direction * nb + block. */
struct seq_ctx {
    const struct geom *g;
    struct dir_run dir[2];
    const int64_t *len;
    size_t B, S;
    int n_dir, phases, layout;
    bool peep, input_forget;
    float clip;
    gemv_fn gemv;
    struct kiln_tensor *ty; /* NULL: Y not wanted */
};

/* One block of hidden units of one direction in one stage, for every batch entry: its
 * recurrent product, its cell, and (last phase) its units of Y. */
static void seq_item(void *ctx, size_t stage, size_t item)
{
    const struct seq_ctx *sc = ctx;
    const struct geom *g = sc->g;
    size_t H = g->H, hp = g->hp, blk = item % g->nb, o = blk * U, d = item / g->nb;
    size_t step = stage / (size_t)sc->phases, nu = H - o < U ? H - o : U;
    int phase = (int)(stage % (size_t)sc->phases);
    bool last_phase = phase == sc->phases - 1;
    const struct dir_run *dr = &sc->dir[d];
    const float *hpv = dr->h[step & 1], *pk = dr->pk;
    float *hnv = dr->h[(step + 1) & 1];
    float hr[4 * U];
    for (size_t b = 0; b < sc->B; b++) {
        const float *hpb = hpv + b * hp;
        float *hnb = hnv + b * hp;
        int64_t len = sc->len[b];
        if ((int64_t)step >= len) { /* this entry is done: its state stays */
            if (last_phase) memcpy(hnb + o, hpb + o, U * sizeof *hnb);
            continue;
        }
        size_t t = dr->rev ? (size_t)len - 1 - step : step;
        const float *px = dr->proj + (sc->layout ? b * sc->S + t : t * sc->B + b) * g->gp;
        float *cb = dr->c + b * hp + o, *zb = dr->z + b * hp + o, *rhb = dr->rh + b * hp + o;
        switch (g->kind) {
        case K_LSTM: {
            const float *p = sc->peep ? pk + g->peep + blk * 3 * U : NULL;
            sc->gemv(hpb, pk + g->rp + panel_of(g, 0, blk), H, 4, hr);
            if (dr->fast)
                KILN_ISA_DISPATCH(kiln_rnn_lstm_cell_isa,
                                  (px + blk * 4 * U, hr, p, sc->clip, sc->input_forget, cb, hnb + o));
            else
                lstm_generic(px + blk * 4 * U, hr, p, sc->clip, sc->input_forget, dr->fa, cb, hnb + o);
            break;
        }
        case K_RNN:
            sc->gemv(hpb, pk + g->rp + panel_of(g, 0, blk), H, 1, hr);
            if (dr->fast)
                KILN_ISA_DISPATCH(kiln_rnn_rnn_cell_isa, (px + o, hr, sc->clip, hnb + o));
            else
                for (int u = 0; u < U; u++) hnb[o + u] = apply(&dr->fa[0], clipf(px[o + u] + hr[u], sc->clip));
            break;
        case K_GRU:
            if (g->g1 == 0) { /* linear_before_reset */
                const float *rbh = pk + g->rbh + o;
                sc->gemv(hpb, pk + g->rp + panel_of(g, 0, blk), H, 3, hr);
                if (dr->fast)
                    KILN_ISA_DISPATCH(kiln_rnn_gru_lbr_cell_isa,
                                      (px + blk * 3 * U, hr, rbh, sc->clip, hpb + o, hnb + o));
                else
                    gru_lbr_generic(px + blk * 3 * U, hr, rbh, sc->clip, dr->fa, hpb + o, hnb + o);
            } else if (phase == 0) {
                sc->gemv(hpb, pk + g->rp + panel_of(g, 0, blk), H, 2, hr);
                if (dr->fast)
                    KILN_ISA_DISPATCH(kiln_rnn_gru_zr_cell_isa, (px + blk * 2 * U, hr, sc->clip, hpb + o, zb, rhb));
                else
                    gru_zr_generic(px + blk * 2 * U, hr, sc->clip, dr->fa, hpb + o, zb, rhb);
            } else {
                const float *pxh = px + g->nb * 2 * U + o;
                sc->gemv(dr->rh + b * hp, pk + g->rp + panel_of(g, 1, blk), H, 1, hr);
                if (dr->fast)
                    KILN_ISA_DISPATCH(kiln_rnn_gru_h_cell_isa, (pxh, hr, zb, sc->clip, hpb + o, hnb + o));
                else
                    gru_h_generic(pxh, hr, zb, sc->clip, dr->fa, hpb + o, hnb + o);
            }
            break;
        }
        if (sc->ty && last_phase) {
            size_t nd = (size_t)sc->n_dir;
            size_t yi = sc->layout ? ((b * sc->S + t) * nd + d) * H : ((t * nd + d) * sc->B + b) * H;
            put_row(sc->ty, yi + o, hnb + o, nu);
        }
    }
}

static kiln_status rnn_common(struct kiln_kctx *k, enum rnn_kind kind)
{
    const struct rnn_state *rs = k->state;
    const int G = kind == K_RNN ? 1 : kind == K_GRU ? 3 : 4;
    const struct kiln_tensor *tx, *tw, *tr;
    KILN_TRY(kiln_in_req(k, 0, &tx));
    KILN_TRY(kiln_in_req(k, 1, &tw));
    KILN_TRY(kiln_in_req(k, 2, &tr));
    const struct kiln_tensor *tb = kiln_in(k, 3), *tlen = kiln_in(k, 4), *th0 = kiln_in(k, 5);
    const struct kiln_tensor *tc0 = kind == K_LSTM ? kiln_in(k, 6) : NULL;
    const struct kiln_tensor *tp = kind == K_LSTM ? kiln_in(k, 7) : NULL;
    int n_dir = rs->n_dir;
    if (rs->bad_dir)
        return kiln_kfail(k, KILN_E_INVALID_MODEL,
                          "direction '%s'; expected forward, reverse or bidirectional", rs->dir);
    int layout = rs->layout;
    if (tx->rank != 3 || tw->rank != 3 || tr->rank != 3)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "X, W and R must have rank 3");
    int64_t S = layout ? tx->dims[1] : tx->dims[0], Bn = layout ? tx->dims[0] : tx->dims[1], I = tx->dims[2];
    int64_t H = rs->has_hidden ? rs->hidden_size : tr->dims[2];
    if (H < 0 || tw->dims[0] != n_dir || tw->dims[1] != G * H || tw->dims[2] != I || tr->dims[0] != n_dir ||
        tr->dims[1] != G * H || tr->dims[2] != H)
        return kiln_kfail(k, KILN_E_INVALID_ARG,
                          "W/R shapes do not match %d directions, %d gates, hidden %lld, input %lld",
                          n_dir, G, (long long)H, (long long)I);
    if (tb && kiln_tensor_numel(tb) != (size_t)(n_dir * 2 * G * H))
        return kiln_kfail(k, KILN_E_INVALID_ARG, "B has %zu elements; expected %lld", kiln_tensor_numel(tb),
                          (long long)(n_dir * 2 * G * H));
    size_t state_n = (size_t)(n_dir * Bn * H);
    if ((th0 && kiln_tensor_numel(th0) != state_n) || (tc0 && kiln_tensor_numel(tc0) != state_n))
        return kiln_kfail(k, KILN_E_INVALID_ARG, "initial_h/initial_c must have %zu elements", state_n);
    if (tp && kiln_tensor_numel(tp) != (size_t)(n_dir * 3 * H))
        return kiln_kfail(k, KILN_E_INVALID_ARG, "P must have %lld elements", (long long)(n_dir * 3 * H));
    if (tlen && kiln_tensor_numel(tlen) != (size_t)Bn)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "sequence_lens must have %lld elements", (long long)Bn);
    if (rs->bad_act)
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "activation '%s' is not supported", rs->bad_act);

    struct geom g;
    bool packed = rs->packed && rs->pk_h == H && rs->pk_i == I;
    size_t want[N_SCRATCH];
    if (!geom_init(&g, kind, rs->lbr, H, I) || !scratch_sizes(&g, n_dir, packed, (size_t)S, (size_t)Bn, want))
        return kiln_kfail(k, KILN_E_LIMIT, "hidden %lld, input %lld, %lld steps of batch %lld is too large",
                          (long long)H, (long long)I, (long long)S, (long long)Bn);
    size_t B = (size_t)Bn, hp = g.hp;

    /* Every input as float32 (only read; NULL when absent); W, R, B, P only to pack them. */
    const struct kiln_tensor *const tin[7] = {tx, tw, tr, tb, th0, tc0, tp};
    const float *fin[7] = {0};
    for (int i = 0; i < 7; i++)
        if (tin[i] && (!packed || i == 0 || i == 4 || i == 5)) KILN_TRY(kiln_stage_f32(k, tin[i], &fin[i]));
    const float *x = fin[0], *h0 = fin[4], *c0 = fin[5];

    kiln_dtype dt = tx->dtype;
    struct kiln_tensor *ty = NULL, *tyh = NULL, *tyc = NULL;
    int64_t ydims[4], sdims[3];
    if (layout) {
        ydims[0] = Bn, ydims[1] = S, ydims[2] = n_dir, ydims[3] = H;
        sdims[0] = Bn, sdims[1] = n_dir, sdims[2] = H;
    } else {
        ydims[0] = S, ydims[1] = n_dir, ydims[2] = Bn, ydims[3] = H;
        sdims[0] = n_dir, sdims[1] = Bn, sdims[2] = H;
    }
    if (kiln_out_wanted(k, 0)) KILN_TRY(kiln_out_tensor(k, 0, dt, 4, ydims, &ty));
    if (kiln_out_wanted(k, 1)) KILN_TRY(kiln_out_tensor(k, 1, dt, 3, sdims, &tyh));
    if (kind == K_LSTM && kiln_out_wanted(k, 2)) KILN_TRY(kiln_out_tensor(k, 2, dt, 3, sdims, &tyc));

    void *sp[N_SCRATCH];
    for (int i = 0; i < N_SCRATCH; i++) KILN_TRY(kiln_scratch(k, want[i], &sp[i]));
    float *proj = sp[1], *hbuf = sp[2], *cbuf = sp[3], *zbuf = sp[4];
    int64_t *lens = sp[5], maxlen = 0;
    for (size_t b = 0; b < B; b++) {
        lens[b] = tlen ? kiln_tensor_get_i64(tlen, b) : S;
        if (lens[b] < 0 || lens[b] > S)
            return kiln_kfail(k, KILN_E_INVALID_ARG, "sequence_lens[%zu] = %lld outside [0, %lld]", b,
                              (long long)lens[b], (long long)S);
        if (lens[b] > maxlen) maxlen = lens[b];
    }
    const float *pack = rs->packed;
    if (!packed) {
        float *own = sp[0];
        size_t GH = (size_t)G * g.H;
        for (int d = 0; d < n_dir; d++)
            pack_dir(&g, fin[1] + (size_t)d * GH * g.I, fin[2] + (size_t)d * GH * g.H,
                     fin[3] ? fin[3] + (size_t)d * 2 * GH : NULL, fin[6] ? fin[6] + (size_t)d * 3 * g.H : NULL,
                     own + (size_t)d * g.per_dir);
        pack = own;
    }

    size_t M = (size_t)S * B, nd = (size_t)n_dir;
    struct seq_ctx sc = {
        .g = &g, .len = lens, .B = B, .S = (size_t)S, .n_dir = n_dir, .phases = g.g1 ? 2 : 1, .layout = layout,
        .peep = tp != NULL, .input_forget = rs->input_forget, .clip = rs->clip,
        .gemv = KILN_ISA_SELECT(kiln_rnn_gemv_isa), .ty = ty,
    };
    int n_act = kind == K_RNN ? 1 : kind == K_GRU ? 2 : 3;
    for (size_t d = 0; d < nd; d++) {
        struct dir_run *dr = &sc.dir[d];
        float *pj = proj + d * M * g.gp;
        dr->pk = pack + d * g.per_dir;
        dr->proj = pj;
        dr->h[0] = hbuf + d * 2 * B * hp;
        dr->h[1] = dr->h[0] + B * hp;
        dr->c = cbuf + d * B * hp;
        dr->z = zbuf + d * 2 * B * hp;
        dr->rh = dr->z + B * hp;
        dr->rev = rs->reverse_only || d == 1;
        dr->fast = rs->fast[d];
        dr->fa = &rs->acts[d * (size_t)n_act];
        for (size_t m = 0; m < M; m++) memcpy(pj + m * g.gp, dr->pk + g.bias, g.gp * sizeof *proj);
        if (packed && rs->pg[d])
            kiln_pgemm_run(rs->pg[d], k->pool, M, x, g.I, pj, g.gp, true, NULL);
        else
            project(k->pool, M, g.gp, g.I, x, dr->pk + g.wt, pj);
        memset(dr->h[0], 0, 2 * B * hp * sizeof *hbuf);
        memset(dr->c, 0, B * hp * sizeof *cbuf);
        for (size_t b = 0; b < B; b++) {
            size_t si = layout ? (b * nd + d) * g.H : (d * B + b) * g.H;
            if (h0) memcpy(dr->h[0] + b * hp, h0 + si, g.H * sizeof *h0);
            if (c0) memcpy(dr->c + b * hp, c0 + si, g.H * sizeof *c0);
        }
    }
    /* Every step, both directions side by side, in one pool job (base/stages.h): the
     * participants meet at a spin wait per step instead of a pool job per step, and each
     * keeps to its own slice of blocks (its share of R stays in its cache). Only steps of
     * PAR_STEP multiply-adds and more are split; see the header comment. */
    size_t stages = (size_t)maxlen * (size_t)sc.phases, items = nd * g.nb;
    double step_work = (double)nd * (double)B * (double)g.H * (double)g.gp / sc.phases;
    int threads = step_work >= PAR_STEP ? kiln_pool_threads(k->pool) : 1;
    kiln_pool_stages(k->pool, threads, stages, items, (size_t)sc.phases, seq_item, &sc);
    for (size_t d = 0; d < nd; d++) {
        const float *hl = sc.dir[d].h[(size_t)maxlen & 1];
        for (size_t b = 0; b < B; b++) {
            size_t si = layout ? (b * nd + d) * g.H : (d * B + b) * g.H;
            if (tyh) put_row(tyh, si, hl + b * hp, g.H);
            if (tyc) put_row(tyc, si, sc.dir[d].c + b * hp, g.H);
        }
    }
    return KILN_OK;
}

static kiln_status rnn_run(struct kiln_kctx *k)
{
    if (!k->state) return kiln_cpu_run_unprepared(k, rnn_prepare, rnn_run);
    return rnn_common(k, K_RNN);
}
static kiln_status gru_run(struct kiln_kctx *k)
{
    if (!k->state) return kiln_cpu_run_unprepared(k, gru_prepare, gru_run);
    return rnn_common(k, K_GRU);
}
static kiln_status lstm_run(struct kiln_kctx *k)
{
    if (!k->state) return kiln_cpu_run_unprepared(k, lstm_prepare, lstm_run);
    return rnn_common(k, K_LSTM);
}

const struct kiln_cpu_op kiln_cpu_ops_rnn[] = {
    {"RNN", "", 1, 0, rnn_run, rnn_prepare, 0},
    {"GRU", "", 1, 0, gru_run, gru_prepare, 0},
    {"LSTM", "", 1, 0, lstm_run, lstm_prepare, 0},
    {0},
};
