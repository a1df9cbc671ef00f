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
 */
#include <math.h>
#include <string.h>
#include <strings.h>

#include "cpu/tensor_util.h"

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
};

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
    return KILN_OK;
}

static kiln_status rnn_prepare(struct kiln_kprep *p) { return rnn_prepare_kind(p, K_RNN); }
static kiln_status gru_prepare(struct kiln_kprep *p) { return rnn_prepare_kind(p, K_GRU); }
static kiln_status lstm_prepare(struct kiln_kprep *p) { return rnn_prepare_kind(p, K_LSTM); }

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
    bool reverse_only = rs->reverse_only;
    if (rs->bad_dir)
        return kiln_kfail(k, KILN_E_INVALID_MODEL,
                          "direction '%s'; expected forward, reverse or bidirectional", rs->dir);
    int layout = rs->layout;
    float clip = rs->clip;
    bool lbr = rs->lbr;
    bool input_forget = rs->input_forget;
    if (tx->rank != 3 || tw->rank != 3 || tr->rank != 3)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "X, W and R must have rank 3");
    int64_t S = layout ? tx->dims[1] : tx->dims[0], Bn = layout ? tx->dims[0] : tx->dims[1], I = tx->dims[2];
    int64_t H = rs->has_hidden ? rs->hidden_size : tr->dims[2];
    if (tw->dims[0] != n_dir || tw->dims[1] != G * H || tw->dims[2] != I || tr->dims[0] != n_dir ||
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

    /* Activations: n_act per direction, resolved in prepare. */
    int n_act = kind == K_RNN ? 1 : kind == K_GRU ? 2 : 3;
    if (rs->bad_act)
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "activation '%s' is not supported", rs->bad_act);
    const struct act *acts = rs->acts;

    /* Every input as float32 (only read; NULL when absent). */
    const struct kiln_tensor *const tin[7] = {tx, tw, tr, tb, th0, tc0, tp};
    const float *fin[7] = {0};
    for (int i = 0; i < 7; i++)
        if (tin[i]) KILN_TRY(kiln_stage_f32(k, tin[i], &fin[i]));
    const float *x = fin[0], *w = fin[1], *r = fin[2], *b = fin[3], *h0 = fin[4], *c0 = fin[5],
                *p = fin[6];

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

    float *h, *c, *gates, *hr;
    KILN_TRY(kiln_scratch(k, (size_t)(H + 1) * sizeof(float), (void **)&h));
    KILN_TRY(kiln_scratch(k, (size_t)(H + 1) * sizeof(float), (void **)&c));
    KILN_TRY(kiln_scratch(k, (size_t)(G * H + 1) * sizeof(float), (void **)&gates));
    KILN_TRY(kiln_scratch(k, (size_t)(H + 1) * sizeof(float), (void **)&hr));

    for (int d = 0; d < n_dir; d++) {
        bool rev = reverse_only || d == 1;
        const float *W = w + (size_t)d * (size_t)(G * H * I), *R = r + (size_t)d * (size_t)(G * H * H);
        const float *Wb = b ? b + (size_t)d * (size_t)(2 * G * H) : NULL;
        const float *Rb = Wb ? Wb + G * H : NULL;
        const float *P = p ? p + (size_t)d * (size_t)(3 * H) : NULL;
        const struct act *fa = &acts[d * n_act];
        for (int64_t bt = 0; bt < Bn; bt++) {
            int64_t len = tlen ? kiln_tensor_get_i64(tlen, (size_t)bt) : S;
            if (len < 0 || len > S)
                return kiln_kfail(k, KILN_E_INVALID_ARG, "sequence_lens[%lld] = %lld outside [0, %lld]",
                                  (long long)bt, (long long)len, (long long)S);
            for (int64_t j = 0; j < H; j++) {
                size_t si = (size_t)((d * Bn + bt) * H + j);
                h[j] = h0 ? h0[si] : 0;
                c[j] = c0 ? c0[si] : 0;
            }
            for (int64_t step = 0; step < len; step++) {
                int64_t t = rev ? len - 1 - step : step;
                const float *xt = x + (size_t)((layout ? bt * S + t : t * Bn + bt) * I);
                /* gates = X W^T + Wb (+ H R^T + Rb, except GRU's h gate) */
                for (int64_t g = 0; g < G * H; g++) {
                    float acc = Wb ? Wb[g] : 0;
                    const float *wr = W + g * I;
                    for (int64_t q = 0; q < I; q++) acc += xt[q] * wr[q];
                    bool gru_h = kind == K_GRU && g >= 2 * H;
                    if (!gru_h) {
                        const float *rr = R + g * H;
                        float acc2 = Rb ? Rb[g] : 0;
                        for (int64_t q = 0; q < H; q++) acc2 += h[q] * rr[q];
                        acc += acc2;
                    }
                    gates[g] = acc;
                }
                if (kind == K_RNN) {
                    for (int64_t j = 0; j < H; j++) h[j] = apply(&fa[0], clipf(gates[j], clip));
                } else if (kind == K_GRU) {
                    float *z = gates, *rg = gates + H, *hh = gates + 2 * H;
                    for (int64_t j = 0; j < H; j++) {
                        z[j] = apply(&fa[0], clipf(z[j], clip));
                        rg[j] = apply(&fa[0], clipf(rg[j], clip));
                    }
                    const float *Rh = R + 2 * H * H;
                    for (int64_t j = 0; j < H; j++) {
                        float acc = 0;
                        if (lbr) {
                            for (int64_t q = 0; q < H; q++) acc += h[q] * Rh[j * H + q];
                            acc = rg[j] * (acc + (Rb ? Rb[2 * H + j] : 0));
                        } else {
                            for (int64_t q = 0; q < H; q++) acc += rg[q] * h[q] * Rh[j * H + q];
                            acc += Rb ? Rb[2 * H + j] : 0;
                        }
                        hr[j] = apply(&fa[1], clipf(hh[j] + acc, clip));
                    }
                    for (int64_t j = 0; j < H; j++) h[j] = (1 - z[j]) * hr[j] + z[j] * h[j];
                } else {
                    float *gi = gates, *go = gates + H, *gf = gates + 2 * H, *gc = gates + 3 * H;
                    for (int64_t j = 0; j < H; j++) {
                        float i_ = apply(&fa[0], clipf(gi[j] + (P ? P[j] * c[j] : 0), clip));
                        float f_ = input_forget ? 1 - i_ : apply(&fa[0], clipf(gf[j] + (P ? P[2 * H + j] * c[j] : 0), clip));
                        float c_ = apply(&fa[1], clipf(gc[j], clip));
                        c[j] = f_ * c[j] + i_ * c_;
                        float o_ = apply(&fa[0], clipf(go[j] + (P ? P[H + j] * c[j] : 0), clip));
                        h[j] = o_ * apply(&fa[2], c[j]);
                    }
                }
                if (ty)
                    for (int64_t j = 0; j < H; j++) {
                        size_t yi = (size_t)(layout ? ((bt * S + t) * n_dir + d) * H + j
                                                    : ((t * n_dir + d) * Bn + bt) * H + j);
                        kiln_tensor_set_f64(ty, yi, h[j]);
                    }
            }
            for (int64_t j = 0; j < H; j++) {
                size_t si = (size_t)(layout ? (bt * n_dir + d) * H + j : (d * Bn + bt) * H + j);
                if (tyh) kiln_tensor_set_f64(tyh, si, h[j]);
                if (tyc) kiln_tensor_set_f64(tyc, si, c[j]);
            }
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
