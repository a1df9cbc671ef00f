/* test_rnn_fast.c: RNN, GRU (linear_before_reset 0 and 1) and LSTM of src/cpu/ops/rnn.c
 * (prepacked weights, one projection GEMM, blocked recurrent product with fused cells)
 * against a float64 reference of the ONNX equations written here, and the hot loops of
 * src/cpu/isa/rnn.c, every variant up to kiln_isa_best(), against float64 too.
 *
 * Random shapes: hidden 1..40 (odd, below, at and above the 16-unit block) and some of
 * 80..200 with input 1..140 and batch 1..4 (big enough that the steps, and from input ~100
 * the projection, split over the pool), and named big cases (hidden 512 and 600 at batch 4;
 * GRU both ways, RNN and LSTM at odd hidden sizes, bidirectional, with lengths, batch first);
 * input 1..20, batch 1..3, 1..6 steps; forward, reverse, bidirectional; layout 0 and 1;
 * with and without B, initial_h, initial_c, sequence_lens (0..steps, so some entries stop
 * early or never start), peepholes, clip, input_forget; the default activations (vectorized
 * cells) and other ones (HardSigmoid with alpha/beta, Softsign, Relu: the scalar cells).
 * Weights are in [-0.5, 0.5] (R beyond hidden 40 scaled down, see run_case), inputs in [-1, 1]. Tolerance: |got - want| <= 1e-5 * (1 +
 * |want|) per element (float32 sums of at most ~160 terms, 1e-6 relative sigmoid/tanh,
 * over at most 7 steps). Every case runs inline and with pools of 2 and 3 threads; the three
 * results must be bitwise identical.
 * Those cases feed W, R and B as inputs, so the run packs them; with constant weights
 * (initializers) prepare packs them instead, and at AVX2 the input projection runs on kiln's
 * GEMM with W^T prepacked for it: prepacked_cases runs such models (forward and
 * bidirectional) on sessions of 1 and 2 threads (ctest runs this test at AVX-512, AVX2 and
 * portable) against the same reference.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/pool.h"
#include "cpu/isa.h"
#include "cpu/kernel.h"
#include "cpu/rnn_isa.h"
#include "test_support.h"
#include "test_text_model.h"

enum { RNN, GRU, LSTM };
#define TOL 1e-5

struct rcase {
    int kind, H, I, B, S, n_dir, layout;
    bool rev, lbr, has_b, has_h0, has_c0, has_len, has_p, input_forget, other_acts;
    float clip;
};

static double sigm(double x) { return 1 / (1 + exp(-x)); }

/* act 0: f (gates), 1: g, 2: h, as the test's activations lists give them. */
static double act(const struct rcase *c, int a, double x)
{
    if (!c->other_acts) return a == 0 ? (c->kind == RNN ? tanh(x) : sigm(x)) : tanh(x);
    if (c->kind == RNN) return x / (1 + fabs(x)); /* Softsign */
    if (a == 0) return fmax(0, fmin(1, 0.3 * x + 0.4)); /* HardSigmoid(0.3, 0.4) */
    if (a == 1) return x / (1 + fabs(x));
    return x > 0 ? x : 0; /* Relu */
}

static double clipd(const struct rcase *c, double x)
{
    return c->clip > 0 ? fmax(-c->clip, fmin(c->clip, x)) : x;
}

static float rnd(double lo, double hi) { return (float)rng_range(lo, hi); }

static void fill(float *v, size_t n, double lo, double hi)
{
    for (size_t i = 0; i < n; i++) v[i] = rnd(lo, hi);
}

/* The ONNX equations in double; y [S, dirs, B, H] (or [B, S, dirs, H]), yh/yc [dirs, B, H]
 * (or [B, dirs, H]); entries of y past a sequence's length stay 0. */
static void reference(const struct rcase *c, const float *x, const float *w, const float *r, const float *b,
                      const float *h0, const float *c0, const int32_t *lens, const float *p, double *y,
                      double *yh, double *yc)
{
    int G = c->kind == RNN ? 1 : c->kind == GRU ? 3 : 4, H = c->H, I = c->I, B = c->B, S = c->S;
    double *h = calloc((size_t)H, sizeof *h), *cs = calloc((size_t)H, sizeof *cs);
    double *gt = calloc((size_t)(G * H), sizeof *gt), *hn = calloc((size_t)H, sizeof *hn);
    for (int d = 0; d < c->n_dir; d++) {
        bool rev = c->rev || d == 1;
        const float *W = w + (size_t)d * G * H * I, *R = r + (size_t)d * G * H * H;
        const float *Wb = b ? b + (size_t)d * 2 * G * H : NULL, *Rb = Wb ? Wb + G * H : NULL;
        const float *P = p ? p + (size_t)d * 3 * H : NULL;
        for (int bt = 0; bt < B; bt++) {
            int len = lens ? lens[bt] : S;
            size_t si = (size_t)(c->layout ? (bt * c->n_dir + d) * H : (d * B + bt) * H);
            for (int j = 0; j < H; j++) {
                h[j] = h0 ? h0[si + (size_t)j] : 0;
                cs[j] = c0 ? c0[si + (size_t)j] : 0;
            }
            for (int step = 0; step < len; step++) {
                int t = rev ? len - 1 - step : step;
                const float *xt = x + (size_t)(c->layout ? bt * S + t : t * B + bt) * I;
                for (int g = 0; g < G * H; g++) {
                    double a = Wb ? Wb[g] : 0;
                    for (int q = 0; q < I; q++) a += (double)xt[q] * W[(size_t)g * I + q];
                    gt[g] = a;
                }
                if (c->kind == RNN) {
                    for (int j = 0; j < H; j++) {
                        double a = gt[j] + (Rb ? Rb[j] : 0);
                        for (int q = 0; q < H; q++) a += h[q] * R[(size_t)j * H + q];
                        hn[j] = act(c, 0, clipd(c, a));
                    }
                } else if (c->kind == GRU) {
                    double *z = calloc((size_t)H, sizeof *z), *rg = calloc((size_t)H, sizeof *rg);
                    for (int j = 0; j < H; j++) {
                        double az = gt[j] + (Rb ? Rb[j] : 0), ar = gt[H + j] + (Rb ? Rb[H + j] : 0);
                        for (int q = 0; q < H; q++) {
                            az += h[q] * R[(size_t)j * H + q];
                            ar += h[q] * R[(size_t)(H + j) * H + q];
                        }
                        z[j] = act(c, 0, clipd(c, az));
                        rg[j] = act(c, 0, clipd(c, ar));
                    }
                    for (int j = 0; j < H; j++) {
                        double a = 0, rbh = Rb ? Rb[2 * H + j] : 0;
                        const float *Rh = R + (size_t)(2 * H + j) * H;
                        if (c->lbr) {
                            for (int q = 0; q < H; q++) a += h[q] * Rh[q];
                            a = rg[j] * (a + rbh);
                        } else {
                            for (int q = 0; q < H; q++) a += rg[q] * h[q] * Rh[q];
                            a += rbh;
                        }
                        double n = act(c, 1, clipd(c, gt[2 * H + j] + a));
                        hn[j] = (1 - z[j]) * n + z[j] * h[j];
                    }
                    free(z);
                    free(rg);
                } else {
                    for (int g = 0; g < G * H; g++) {
                        double a = Rb ? Rb[g] : 0;
                        for (int q = 0; q < H; q++) a += h[q] * R[(size_t)g * H + q];
                        gt[g] += a;
                    }
                    for (int j = 0; j < H; j++) {
                        double i = act(c, 0, clipd(c, gt[j] + (P ? P[j] * cs[j] : 0)));
                        double f = c->input_forget ? 1 - i
                                                   : act(c, 0, clipd(c, gt[2 * H + j] + (P ? P[2 * H + j] * cs[j] : 0)));
                        double g = act(c, 1, clipd(c, gt[3 * H + j]));
                        cs[j] = f * cs[j] + i * g;
                        double o = act(c, 0, clipd(c, gt[H + j] + (P ? P[H + j] * cs[j] : 0)));
                        hn[j] = o * act(c, 2, cs[j]);
                    }
                }
                memcpy(h, hn, (size_t)H * sizeof *h);
                for (int j = 0; j < H; j++) {
                    size_t yi = (size_t)(c->layout ? ((bt * S + t) * c->n_dir + d) * H + j
                                                   : ((t * c->n_dir + d) * B + bt) * H + j);
                    y[yi] = h[j];
                }
            }
            for (int j = 0; j < H; j++) {
                yh[si + (size_t)j] = h[j];
                yc[si + (size_t)j] = cs[j];
            }
        }
    }
    free(h);
    free(cs);
    free(gt);
    free(hn);
}

static int check_close(const struct kiln_value *v, const double *want, size_t n, const char *what, int t)
{
    const float *got = v->t.data;
    for (size_t i = 0; i < n; i++)
        if (!(fabs((double)got[i] - want[i]) <= TOL * (1 + fabs(want[i])))) {
            CHECK(false, "case %d %s[%zu] = %.9g, want %.9g", t, what, i, got[i], want[i]);
            return 1;
        }
    return 0;
}

/* pools[0] NULL (inline), then pools of 2 and 3 threads: every output bitwise the same. */
enum { N_RUNS = 3 };
static void run_case(const struct rcase *c, struct kiln_pool *const *pools, int t)
{
    int G = c->kind == RNN ? 1 : c->kind == GRU ? 3 : 4, H = c->H, I = c->I, B = c->B, S = c->S, nd = c->n_dir;
    int64_t xd[3] = {c->layout ? B : S, c->layout ? S : B, I};
    int64_t wd[3] = {nd, G * H, I}, rd[3] = {nd, G * H, H}, bd[2] = {nd, 2 * G * H};
    int64_t sd[3] = {c->layout ? B : nd, c->layout ? nd : B, H}, pd[2] = {nd, 3 * H}, ld[1] = {B};
    size_t nx = (size_t)(S * B * I), nw = (size_t)(nd * G * H * I), nr = (size_t)(nd * G * H * H);
    size_t nb = (size_t)(nd * 2 * G * H), ns = (size_t)(nd * B * H), np = (size_t)(nd * 3 * H);
    size_t ny = (size_t)S * ns;
    float *x = malloc(nx * 4 + 4), *w = malloc(nw * 4 + 4), *r = malloc(nr * 4 + 4), *b = malloc(nb * 4 + 4);
    float *h0 = malloc(ns * 4 + 4), *c0 = malloc(ns * 4 + 4), *p = malloc(np * 4 + 4);
    int32_t *lens = malloc((size_t)B * 4 + 4);
    fill(x, nx, -1, 1);
    fill(w, nw, -0.5, 0.5);
    /* R at hidden H > 40 in [-0.5, 0.5] * sqrt(40 / H): the recurrence's gain stays as at 40
     * (at full range, the float32 and float64 states drift apart by more than TOL in a few
     * steps, the rounding amplified step by step) */
    double rs = H > 40 ? 0.5 * sqrt(40.0 / H) : 0.5;
    fill(r, nr, -rs, rs);
    fill(b, nb, -0.5, 0.5);
    fill(h0, ns, -1, 1);
    fill(c0, ns, -1, 1);
    fill(p, np, -0.5, 0.5);
    for (int i = 0; i < B; i++) lens[i] = i == 0 ? S : rng_int(S + 1);

    struct attrs at = {0};
    add_i(&at, "hidden_size", H);
    add_s(&at, "direction", nd == 2 ? "bidirectional" : c->rev ? "reverse" : "forward");
    if (c->layout) add_i(&at, "layout", 1);
    if (c->clip > 0) add_f(&at, "clip", c->clip);
    if (c->kind == GRU) add_i(&at, "linear_before_reset", c->lbr);
    if (c->kind == LSTM && c->input_forget) add_i(&at, "input_forget", 1);
    static const char *const acts[3][6] = {
        {"Softsign", "Softsign"},
        {"HardSigmoid", "Softsign", "HardSigmoid", "Softsign"},
        {"HardSigmoid", "Softsign", "Relu", "HardSigmoid", "Softsign", "Relu"},
    };
    static const float alphas[2] = {0.3f, 0.3f}, betas[2] = {0.4f, 0.4f};
    if (c->other_acts) {
        at.a[at.n++] = attr_strs("activations", acts[c->kind], (size_t)(nd * (c->kind == RNN ? 1 : c->kind == GRU ? 2 : 3)));
        at.a[at.n++] = attr_floats("activation_alpha", alphas, (size_t)nd);
        at.a[at.n++] = attr_floats("activation_beta", betas, (size_t)nd);
    }
    int opset = c->layout ? 14 : 7;

    double *y = calloc(ny + 1, sizeof *y), *yh = calloc(ns + 1, sizeof *yh), *yc = calloc(ns + 1, sizeof *yc);
    reference(c, x, w, r, c->has_b ? b : NULL, c->has_h0 ? h0 : NULL, c->has_c0 ? c0 : NULL,
              c->has_len ? lens : NULL, c->has_p ? p : NULL, y, yh, yc);

    int n_out = c->kind == LSTM ? 3 : 2;
    struct kiln_value *outs[N_RUNS][3] = {{0}};
    for (int run = 0; run < N_RUNS; run++) {
        struct kiln_value *in[8] = {
            tensor_of(KILN_DTYPE_F32, 3, xd, x), tensor_of(KILN_DTYPE_F32, 3, wd, w),
            tensor_of(KILN_DTYPE_F32, 3, rd, r), c->has_b ? tensor_of(KILN_DTYPE_F32, 2, bd, b) : NULL,
            c->has_len ? tensor_of(KILN_DTYPE_I32, 1, ld, lens) : NULL,
            c->has_h0 ? tensor_of(KILN_DTYPE_F32, 3, sd, h0) : NULL,
            c->kind == LSTM && c->has_c0 ? tensor_of(KILN_DTYPE_F32, 3, sd, c0) : NULL,
            c->kind == LSTM && c->has_p ? tensor_of(KILN_DTYPE_F32, 2, pd, p) : NULL,
        };
        size_t n_in = c->kind == LSTM ? 8 : 6;
        kiln_err err = {0};
        const char *op = c->kind == RNN ? "RNN" : c->kind == GRU ? "GRU" : "LSTM";
        kiln_status st = run_op_pool(pools[run], op, opset, at.a, at.n, in, n_in, outs[run],
                                     (size_t)n_out, &err);
        CHECK(st == KILN_OK, "case %d: %s", t, err.msg);
        free_all(in, 8);
        if (st) goto done;
    }
    int bad = check_close(outs[0][0], y, ny, "Y", t) + check_close(outs[0][1], yh, ns, "Y_h", t);
    if (c->kind == LSTM) bad += check_close(outs[0][2], yc, ns, "Y_c", t);
    for (int run = 1; run < N_RUNS; run++)
        for (int o = 0; o < n_out; o++)
            CHECK(memcmp(outs[0][o]->t.data, outs[run][o]->t.data, (o ? ns : ny) * sizeof(float)) == 0,
                  "case %d output %d differs between 1 and %d threads", t, o, kiln_pool_threads(pools[run]));
    if (bad)
        printf("  case %d: kind %d H %d I %d B %d S %d dirs %d rev %d layout %d lbr %d b %d h0 %d c0 %d len %d "
               "p %d if %d acts %d clip %g\n",
               t, c->kind, H, I, B, S, nd, c->rev, c->layout, c->lbr, c->has_b, c->has_h0, c->has_c0,
               c->has_len, c->has_p, c->input_forget, c->other_acts, c->clip);
done:
    for (int run = 0; run < N_RUNS; run++) free_all(outs[run], 3);
    free(x), free(w), free(r), free(b), free(h0), free(c0), free(p), free(lens);
    free(y), free(yh), free(yc);
}

static void test_ops(void)
{
    struct kiln_pool *pools[N_RUNS] = {NULL};
    kiln_err err = {0};
    for (int i = 1; i < N_RUNS; i++) CHECK(kiln_pool_create(i + 1, &pools[i], &err) == KILN_OK, "%s", err.msg);
    static const int small_h[] = {1, 3, 15, 16, 17, 31, 33, 40};
    for (int t = 0; t < 240; t++) {
        struct rcase c = {0};
        c.kind = t % 3;
        /* every 4th: hidden 80..200 (steps of 64K multiply-adds and more split over the pool,
         * the projection too from input ~100 on) */
        bool big = t % 4 == 3;
        c.H = big ? 80 + rng_int(121) : small_h[rng_int(8)];
        c.I = big ? 1 + rng_int(140) : 1 + rng_int(20);
        c.B = 1 + rng_int(big ? 4 : 3);
        c.S = big ? 2 + rng_int(5) : 1 + rng_int(6);
        c.n_dir = rng_int(3) == 0 ? 2 : 1;
        c.rev = c.n_dir == 1 && rng_int(2);
        c.layout = rng_int(2);
        c.lbr = rng_int(2);
        c.has_b = rng_int(4) != 0;
        c.has_h0 = rng_int(2);
        c.has_c0 = rng_int(2);
        c.has_len = rng_int(3) == 0;
        c.has_p = rng_int(2);
        c.input_forget = rng_int(4) == 0;
        c.other_acts = rng_int(5) == 0;
        c.clip = rng_int(4) == 0 ? 0.7f : 0;
        run_case(&c, pools, t);
    }
    /* big steps, and every split path named: GRU both ways bidirectional with lengths,
     * batch first, odd hidden sizes */
    struct rcase big[] = {
        {.kind = LSTM, .H = 512, .I = 33, .B = 4, .S = 3, .n_dir = 2, .has_b = true, .has_h0 = true,
         .has_c0 = true, .has_len = true, .has_p = true},
        {.kind = GRU, .H = 600, .I = 7, .B = 4, .S = 2, .n_dir = 1, .rev = true, .layout = 1, .has_b = true,
         .has_h0 = true, .clip = 0.9f},
        {.kind = GRU, .H = 161, .I = 45, .B = 3, .S = 5, .n_dir = 2, .layout = 1, .has_b = true, .has_h0 = true,
         .has_len = true},
        {.kind = GRU, .H = 161, .I = 45, .B = 3, .S = 5, .n_dir = 2, .lbr = true, .has_b = true, .has_len = true},
        {.kind = RNN, .H = 257, .I = 130, .B = 2, .S = 4, .n_dir = 2, .has_b = true, .has_h0 = true,
         .has_len = true},
        {.kind = LSTM, .H = 129, .I = 256, .B = 1, .S = 7, .n_dir = 1, .layout = 1, .has_b = true,
         .other_acts = true},
    };
    for (int i = 0; i < (int)(sizeof big / sizeof *big); i++) run_case(&big[i], pools, 1000 + i);
    for (int i = 1; i < N_RUNS; i++) kiln_pool_free(pools[i]);
}

/* A model of c's op with W, R and B as listed initializers (X the input; forward, or
 * bidirectional for n_dir 2; no initial state, lengths or peepholes), run on sessions of 1
 * and 2 threads: Y against the float64 reference within TOL, and the same bits at both
 * thread counts. */
static void prepacked_case(const struct rcase *c, int t)
{
    int G = c->kind == RNN ? 1 : c->kind == GRU ? 3 : 4, H = c->H, I = c->I, B = c->B, S = c->S, D = c->n_dir;
    size_t nx = (size_t)(S * B * I), nw = (size_t)(D * G * H * I), nr = (size_t)(D * G * H * H);
    size_t nb = (size_t)(D * 2 * G * H), ny = (size_t)(S * D * B * H);
    float *x = malloc(nx * 4), *w = malloc(nw * 4), *r = malloc(nr * 4), *b = malloc(nb * 4);
    double *y = calloc(ny, sizeof *y), *yh = calloc((size_t)(D * B * H), sizeof *yh);
    double *yc = calloc((size_t)(D * B * H), sizeof *yc);
    if (!x || !w || !r || !b || !y || !yh || !yc) exit(1);
    fill(x, nx, -1, 1);
    fill(w, nw, -0.5, 0.5);
    double rs = H > 40 ? 0.5 * sqrt(40.0 / H) : 0.5;
    fill(r, nr, -rs, rs);
    fill(b, nb, -0.5, 0.5);
    reference(c, x, w, r, b, NULL, NULL, NULL, NULL, y, yh, yc);
    const char *op = c->kind == RNN ? "RNN" : c->kind == GRU ? "GRU" : "LSTM";
    model_text_reset();
    model_text_add("opset 14\ninput X f32 %d,%d,%d\noutput Y\ninit W f32 %d,%d,%d", S, B, I, D, G * H, I);
    model_text_floats(w, nw);
    model_text_add("\ninit R f32 %d,%d,%d", D, G * H, H);
    model_text_floats(r, nr);
    model_text_add("\ninit Bb f32 %d,%d", D, 2 * G * H);
    model_text_floats(b, nb);
    model_text_add("\nnode %s X,W,R,Bb -> Y hidden_size=int:%d%s%s\n", op, H,
                   c->kind == GRU ? (c->lbr ? " linear_before_reset=int:1" : " linear_before_reset=int:0") : "",
                   D == 2 ? " direction=string:bidirectional" : "");
    int64_t xd[3] = {S, B, I};
    kiln_value *in = (kiln_value *)tensor_of(KILN_DTYPE_F32, 3, xd, x);
    const char *names[1] = {"X"};
    char what[96];
    kiln_value *got[2] = {NULL, NULL};
    for (int th = 1; th <= 2; th++) {
        snprintf(what, sizeof what, "prepacked case %d (%s H %d I %d B %d S %d), %d threads", t, op, H, I, B, S, th);
        got[th - 1] = run_text_model(model_text(), 1, names, &in, th, what);
        if (!got[th - 1]) continue;
        const float *g = got[th - 1]->t.data;
        for (size_t i = 0; i < ny; i++)
            if (!(fabs((double)g[i] - y[i]) <= TOL * (1 + fabs(y[i])))) {
                CHECK(false, "%s: Y[%zu] = %.9g, want %.9g", what, i, g[i], y[i]);
                break;
            }
    }
    if (got[0] && got[1])
        CHECK(!memcmp(got[0]->t.data, got[1]->t.data, ny * sizeof(float)), "prepacked case %d: 1 and 2 threads differ",
              t);
    kiln_value_free(got[0]), kiln_value_free(got[1]), kiln_value_free(in);
    free(x), free(w), free(r), free(b), free(y), free(yh), free(yc);
}

/* Shapes of the bench set's LSTM (smaller), odd ones, and the projection big enough to
 * split over 2 threads. */
static void prepacked_cases(void)
{
    struct rcase cs[] = {
        {.kind = LSTM, .H = 64, .I = 48, .B = 1, .S = 9, .n_dir = 1, .has_b = true},
        {.kind = LSTM, .H = 33, .I = 7, .B = 2, .S = 3, .n_dir = 1, .has_b = true},
        {.kind = GRU, .H = 40, .I = 130, .B = 3, .S = 4, .n_dir = 1, .has_b = true},
        {.kind = GRU, .H = 17, .I = 1, .B = 1, .S = 5, .n_dir = 1, .lbr = true, .has_b = true},
        {.kind = RNN, .H = 100, .I = 200, .B = 2, .S = 6, .n_dir = 1, .has_b = true},
        /* more than one 256-column tile of the projection (448 and 288 packed columns), and
         * both directions packed by prepare */
        {.kind = LSTM, .H = 100, .I = 60, .B = 2, .S = 5, .n_dir = 1, .has_b = true},
        {.kind = GRU, .H = 90, .I = 33, .B = 1, .S = 4, .n_dir = 2, .has_b = true},
        {.kind = LSTM, .H = 70, .I = 20, .B = 3, .S = 3, .n_dir = 2, .has_b = true},
    };
    for (int i = 0; i < (int)(sizeof cs / sizeof *cs); i++) prepacked_case(&cs[i], i);
}

/* ------------------------------------------------------------------ the ISA loops */

static void test_isa(void)
{
    enum { U_ = KILN_RNN_U };
    for (int isa = 0; isa <= (int)kiln_isa_best(); isa++) {
        for (int G = 1; G <= 4; G++)
            for (size_t K = 0; K <= 37; K += 1 + K / 3) {
                size_t W = (size_t)G * U_;
                float h[40], *pan = malloc((K * W + 1) * sizeof *pan), out[4 * U_];
                fill(h, 40, -1, 1);
                fill(pan, K * W, -1, 1);
                KILN_ISA_VARIANT(kiln_rnn_gemv_isa, isa)(h, pan, K, G, out);
                for (size_t j = 0; j < W; j++) {
                    double want = 0, mag = 0;
                    for (size_t q = 0; q < K; q++) want += (double)h[q] * pan[q * W + j], mag += fabs((double)h[q] * pan[q * W + j]);
                    CHECK(fabs(out[j] - want) <= 1e-6 * (1 + mag), "%s gemv G %d K %zu [%zu]: %g want %g",
                          kiln_isa_name((enum kiln_isa)isa), G, K, j, out[j], want);
                }
                free(pan);
            }
        for (int rep = 0; rep < 20; rep++) {
            float px[4 * U_], hr[4 * U_], pp[3 * U_], c[U_], c2[U_], hp[U_], h[U_], z[U_], rh[U_], rbh[U_];
            fill(px, 4 * U_, -4, 4);
            fill(hr, 4 * U_, -4, 4);
            fill(pp, 3 * U_, -1, 1);
            fill(c, U_, -2, 2);
            fill(hp, U_, -1, 1);
            fill(rbh, U_, -1, 1);
            float clip = rep % 3 == 0 ? 1.5f : 0;
            bool inf = rep % 4 == 1, peep = rep % 2 == 0;
            const char *name = kiln_isa_name((enum kiln_isa)isa);
#define CL(v) (clip > 0 ? fmax(-clip, fmin(clip, (v))) : (v))
            memcpy(c2, c, sizeof c);
            KILN_ISA_VARIANT(kiln_rnn_lstm_cell_isa, isa)(px, hr, peep ? pp : NULL, clip, inf, c2, h);
            for (int u = 0; u < U_; u++) {
                double pi = peep ? pp[u] : 0, po = peep ? pp[U_ + u] : 0, pf = peep ? pp[2 * U_ + u] : 0;
                double i = sigm(CL(px[u] + hr[u] + pi * c[u]));
                double f = inf ? 1 - i : sigm(CL(px[2 * U_ + u] + hr[2 * U_ + u] + pf * c[u]));
                double cn = f * c[u] + i * tanh(CL(px[3 * U_ + u] + hr[3 * U_ + u]));
                double o = sigm(CL(px[U_ + u] + hr[U_ + u] + po * cn));
                CHECK(fabs(c2[u] - cn) <= TOL * (1 + fabs(cn)), "%s lstm c[%d]", name, u);
                CHECK(fabs(h[u] - o * tanh(cn)) <= TOL * (1 + fabs(o * tanh(cn))), "%s lstm h[%d]", name, u);
            }
            KILN_ISA_VARIANT(kiln_rnn_gru_lbr_cell_isa, isa)(px, hr, rbh, clip, hp, h);
            for (int u = 0; u < U_; u++) {
                double zz = sigm(CL(px[u] + hr[u])), r = sigm(CL(px[U_ + u] + hr[U_ + u]));
                double n = tanh(CL(px[2 * U_ + u] + r * (hr[2 * U_ + u] + rbh[u])));
                double want = (1 - zz) * n + zz * hp[u];
                CHECK(fabs(h[u] - want) <= TOL * (1 + fabs(want)), "%s gru lbr h[%d]", name, u);
            }
            KILN_ISA_VARIANT(kiln_rnn_gru_zr_cell_isa, isa)(px, hr, clip, hp, z, rh);
            KILN_ISA_VARIANT(kiln_rnn_gru_h_cell_isa, isa)(px + 2 * U_, hr + 2 * U_, z, clip, hp, h);
            for (int u = 0; u < U_; u++) {
                double zz = sigm(CL(px[u] + hr[u])), r = sigm(CL(px[U_ + u] + hr[U_ + u]));
                CHECK(fabs(z[u] - zz) <= TOL * (1 + zz), "%s gru z[%d]", name, u);
                CHECK(fabs(rh[u] - r * hp[u]) <= TOL, "%s gru r.h[%d]", name, u);
                double n = tanh(CL(px[2 * U_ + u] + hr[2 * U_ + u]));
                double want = (1 - z[u]) * n + z[u] * hp[u];
                CHECK(fabs(h[u] - want) <= TOL * (1 + fabs(want)), "%s gru h[%d]", name, u);
            }
            KILN_ISA_VARIANT(kiln_rnn_rnn_cell_isa, isa)(px, hr, clip, h);
            for (int u = 0; u < U_; u++) {
                double want = tanh(CL(px[u] + hr[u]));
                CHECK(fabs(h[u] - want) <= TOL * (1 + fabs(want)), "%s rnn h[%d]", name, u);
            }
#undef CL
        }
    }
}

int main(void)
{
    rng_seed(20261202);
    test_isa();
    test_ops();
    prepacked_cases();
    return test_summary("rnn_fast");
}
