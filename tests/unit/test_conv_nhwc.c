/* test_conv_nhwc.c: kiln.ConvNhwc (src/cpu/ops/conv_nhwc.c), the channels-last convolution.
 *
 * Small models in the text form of support/test_text_model.h run through kiln_session with
 * 1, 2 and 3 threads: X [N, H, W, C] a graph input (static shapes: the "onednn-*" variants
 * where kiln has oneDNN; H and W symbolic: the "direct" variant), W and B initializers, Z a
 * second graph input. Every static case runs with each split of the oneDNN variant forced
 * (KILN_CONV_NHWC_SPLIT=rows, channels, pixels; one that does not apply leaves the choice to
 * the cost estimate), with the "pgemm-taps" variant forced (=taps: group 1, at AVX2 and
 * AVX-512; unforced, the rule takes it at AVX2 for large dilations on small maps) and
 * unforced. Shapes: random, odd and tiny (1x1 images, one channel,
 * more slices than rows, channel counts that are not multiples of 16), groups, depthwise,
 * 1x1, 3x3, 5x5, 7x7, strides, dilations, asymmetric pads, every auto_pad, N of 1 to 4 (whole
 * images per thread); every activation kiln fuses (oneDNN post-ops after Z's sum post-op),
 * with and without Z. Also: the variant names, four contexts of one engine running at once on
 * their own threads (byte-equal results: the per-thread oneDNN scratchpads, memory objects
 * and staging buffers of cpu/dnnl_util.c), and an engine saved and loaded again.
 *
 * The reference is a float64 convolution written here from the ONNX definition. Inputs and
 * weights lie on a 1/16 grid in [-1, 1] and activation parameters are dyadic, so float32
 * products and sums are exact in any order: |got - want| <= 1e-5 * (1 + |want|) then catches
 * indexing, padding and slicing mistakes, never rounding (the transcendental activations add
 * a few ulp of oneDNN's or kiln's exp, erf and tanh, far below it).
 * ctest also runs this test with KILN_CPU_ISA=portable, where every case takes "direct".
 *
 * Winograd (KILN_CONV_NHWC_SPLIT=winograd forces it where it applies: 3x3, stride 1, no
 * dilation, one group, no Z, AVX-512; unforced, the rule of conv_nhwc.c may take it) is not
 * exact: its transforms round. Cases that may run it are held to |got - want| <=
 * WINO_TOL * (1 + S), S the sum of the magnitudes of the terms (|b| + sum |x w|), instead
 * (measured worst here: 7.6e-7 * (1 + S)).
 */
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cpu/conv_first_isa.h"
#include "cpu/isa.h"
#include "kiln.h"
#include "test_support.h"
#include "test_text_model.h"

#define TOL 1e-5
#define WINO_TOL 2e-6

/* The model text being built (support/test_text_model.h). */
#define tf model_text_add

static double grid(void) { return (double)(rng_int(33) - 16) / 16.0; }

enum act {
    ACT_NONE, ACT_RELU, ACT_LEAKY, ACT_CLIP, ACT_SIGMOID, ACT_TANH, ACT_HARDSIGMOID, ACT_HARDSWISH,
    ACT_SILU, ACT_GELU, ACT_GELU_TANH, ACT_COUNT
};

static double act_apply(enum act a, double v)
{
    switch (a) {
    case ACT_RELU: return v < 0 ? 0 : v;
    case ACT_LEAKY: return v < 0 ? 0.125 * v : v;
    case ACT_CLIP: return v < -0.5 ? -0.5 : v > 0.75 ? 0.75 : v;
    case ACT_SIGMOID: return 1.0 / (1.0 + exp(-v));
    case ACT_TANH: return tanh(v);
    case ACT_HARDSIGMOID: { double h = 0.25 * v + 0.5; return h < 0 ? 0 : h > 1 ? 1 : h; }
    case ACT_HARDSWISH: { double h = v / 6 + 0.5; return v * (h < 0 ? 0 : h > 1 ? 1 : h); }
    case ACT_SILU: return v / (1.0 + exp(-0.5 * v));
    case ACT_GELU: return 0.5 * v * (1.0 + erf(v / sqrt(2.0)));
    case ACT_GELU_TANH: return 0.5 * v * (1.0 + tanh(sqrt(2.0 / 3.14159265358979323846) * (v + 0.044715 * v * v * v)));
    default: return v;
    }
}

static const char *act_attrs(enum act a)
{
    switch (a) {
    case ACT_RELU: return " activation=string:Relu";
    case ACT_LEAKY: return " activation=string:LeakyRelu activation_params=floats:0.125";
    case ACT_CLIP: return " activation=string:Clip activation_params=floats:-0.5,0.75";
    case ACT_SIGMOID: return " activation=string:Sigmoid";
    case ACT_TANH: return " activation=string:Tanh";
    case ACT_HARDSIGMOID: return " activation=string:HardSigmoid activation_params=floats:0.25,0.5";
    case ACT_HARDSWISH: return " activation=string:HardSwish";
    case ACT_SILU: return " activation=string:SiLU activation_params=floats:0.5";
    case ACT_GELU: return " activation=string:Gelu";
    case ACT_GELU_TANH: return " activation=string:Gelu approximate=string:tanh";
    default: return "";
    }
}

struct cfg {
    int64_t N, H, W, C, M, G, kh, kw, sh, sw, dh, dw, pt, pl, pb, pr;
    int auto_pad; /* 0 NOTSET, 1 SAME_UPPER, 2 SAME_LOWER, 3 VALID */
    bool bias, z, symbolic;
    enum act act;
    bool nchw; /* X is [N, C, H, W] (x_nchw 1) */
};

static void out_dim(const struct cfg *c, int i, int64_t *out, int64_t *pb)
{
    int64_t in = i ? c->W : c->H, k = i ? c->kw : c->kh, s = i ? c->sw : c->sh, d = i ? c->dw : c->dh;
    int64_t dk = (k - 1) * d + 1;
    if (c->auto_pad == 1 || c->auto_pad == 2) {
        *out = (in + s - 1) / s;
        int64_t tot = (*out - 1) * s + dk - in;
        if (tot < 0) tot = 0;
        *pb = c->auto_pad == 1 ? tot / 2 : tot - tot / 2;
        return;
    }
    int64_t b = c->auto_pad == 3 ? 0 : (i ? c->pl : c->pt), e = c->auto_pad == 3 ? 0 : (i ? c->pr : c->pb);
    *pb = b;
    int64_t span = in + b + e - dk;
    *out = span < 0 ? 0 : span / s + 1;
}

/* The splits of the oneDNN variant a case runs under (KILN_CONV_NHWC_SPLIT; NULL: the cost
 * estimate chooses). A split that does not apply (channels with groups, pixels unless 1x1,
 * stride 1, no padding) leaves the choice to the estimate. */
static const char *const splits[] = {NULL, "rows", "channels", "pixels", "winograd", "taps"};
#define N_SPLITS (sizeof splits / sizeof splits[0])

static void set_split(const char *split)
{
    if (split)
        setenv("KILN_CONV_NHWC_SPLIT", split, 1);
    else
        unsetenv("KILN_CONV_NHWC_SPLIT");
}

/* Whether the case may run on Winograd: forced by split or chosen by the rule. */
static bool wino_possible(const struct cfg *c, const char *split)
{
    return c->kh == 3 && c->kw == 3 && c->sh == 1 && c->sw == 1 && c->dh == 1 && c->dw == 1 && c->G == 1 &&
           !c->z && !c->symbolic && !c->nchw && (!split || !strcmp(split, "winograd"));
}

/* Winograd's check: each got[i] within WINO_TOL * (1 + mag[i]) of want[i]. */
static void wino_close(const kiln_value *got, const double *want, const double *mag, size_t n, const char *what)
{
    const float *g = got->t.data;
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs(g[i] - want[i]) / (1 + mag[i]);
        if (e > worst) worst = e;
        if (!(e <= WINO_TOL)) {
            CHECK(false, "%s: element %zu is %.7g, want %.7g (terms' magnitude %g)", what, i, g[i], want[i],
                  mag[i]);
            return;
        }
    }
    if (getenv("KILN_TEST_VERBOSE")) fprintf(stderr, "%s: worst |got - want| / (1 + S) %.3g\n", what, worst);
}

static void run_case(const struct cfg *c, int threads, const char *split, const char *what)
{
    set_split(split);
    int64_t OH, OW, pt, pl;
    out_dim(c, 0, &OH, &pt);
    out_dim(c, 1, &OW, &pl);
    int64_t Cg = c->C / c->G, Mg = c->M / c->G;
    size_t nx = (size_t)(c->N * c->H * c->W * c->C), nw = (size_t)(c->M * Cg * c->kh * c->kw);
    size_t ny = (size_t)(c->N * OH * OW * c->M);
    double *x = malloc((nx + 1) * sizeof *x), *w = malloc((nw + 1) * sizeof *w);
    double *b = malloc((size_t)(c->M + 1) * sizeof *b), *z = malloc((ny + 1) * sizeof *z);
    double *want = malloc((ny + 1) * sizeof *want), *mag = malloc((ny + 1) * sizeof *mag);
    if (!x || !w || !b || !z || !want || !mag) exit(1);
    for (size_t i = 0; i < nx; i++) x[i] = grid();
    for (size_t i = 0; i < nw; i++) w[i] = grid();
    for (int64_t i = 0; i < c->M; i++) b[i] = c->bias ? grid() : 0;
    for (size_t i = 0; i < ny; i++) z[i] = c->z ? grid() : 0;
    for (int64_t n = 0; n < c->N; n++)
        for (int64_t oh = 0; oh < OH; oh++)
            for (int64_t ow = 0; ow < OW; ow++)
                for (int64_t m = 0; m < c->M; m++) {
                    int64_t g = m / Mg;
                    double acc = b[m], sum = fabs(b[m]);
                    for (int64_t ci = 0; ci < Cg; ci++)
                        for (int64_t ky = 0; ky < c->kh; ky++)
                            for (int64_t kx = 0; kx < c->kw; kx++) {
                                int64_t ih = oh * c->sh - pt + ky * c->dh, iw = ow * c->sw - pl + kx * c->dw;
                                if (ih < 0 || ih >= c->H || iw < 0 || iw >= c->W) continue;
                                int64_t xi = c->nchw ? ((n * c->C + g * Cg + ci) * c->H + ih) * c->W + iw
                                                     : ((n * c->H + ih) * c->W + iw) * c->C + g * Cg + ci;
                                double t = x[xi] * w[((m * Cg + ci) * c->kh + ky) * c->kw + kx];
                                acc += t;
                                sum += fabs(t);
                            }
                    size_t o = (size_t)(((n * OH + oh) * OW + ow) * c->M + m);
                    want[o] = act_apply(c->act, acc + z[o]);
                    mag[o] = sum + fabs(z[o]);
                }

    model_text_reset();
    tf("opset 17 kiln\n");
    if (c->symbolic && c->nchw)
        tf("input X f32 %lld,%lld,h,w\n", (long long)c->N, (long long)c->C);
    else if (c->nchw)
        tf("input X f32 %lld,%lld,%lld,%lld\n", (long long)c->N, (long long)c->C, (long long)c->H,
           (long long)c->W);
    else if (c->symbolic)
        tf("input X f32 %lld,h,w,%lld\n", (long long)c->N, (long long)c->C);
    else
        tf("input X f32 %lld,%lld,%lld,%lld\n", (long long)c->N, (long long)c->H, (long long)c->W,
           (long long)c->C);
    if (c->z) tf("input Z f32 %lld,%lld,%lld,%lld\n", (long long)c->N, (long long)OH, (long long)OW, (long long)c->M);
    tf("init W f32 %lld,%lld,%lld,%lld =", (long long)c->M, (long long)Cg, (long long)c->kh, (long long)c->kw);
    for (size_t i = 0; i < nw; i++) tf("%s%g", i ? "," : " ", w[i]);
    tf("\n");
    if (c->bias) {
        tf("init B f32 %lld =", (long long)c->M);
        for (int64_t i = 0; i < c->M; i++) tf("%s%g", i ? "," : " ", b[i]);
        tf("\n");
    }
    tf("output Y\n");
    tf("node kiln.ConvNhwc X,W,%s%s -> Y group=int:%lld strides=ints:%lld,%lld dilations=ints:%lld,%lld",
       c->bias ? "B" : "_", c->z ? ",Z" : "", (long long)c->G, (long long)c->sh, (long long)c->sw,
       (long long)c->dh, (long long)c->dw);
    static const char *const aps[] = {"NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"};
    if (c->auto_pad)
        tf(" auto_pad=string:%s", aps[c->auto_pad]);
    else
        tf(" pads=ints:%lld,%lld,%lld,%lld", (long long)c->pt, (long long)c->pl, (long long)c->pb,
           (long long)c->pr);
    if (rng_int(2)) tf(" kernel_shape=ints:%lld,%lld", (long long)c->kh, (long long)c->kw);
    if (c->nchw) tf(" x_nchw=int:1");
    tf("%s\n", act_attrs(c->act));

    kiln_value *in[2] = {NULL, NULL};
    const char *names[2] = {"X", "Z"};
    float *xf = malloc((nx + ny + 1) * sizeof *xf);
    if (!xf) exit(1);
    for (size_t i = 0; i < nx; i++) xf[i] = (float)x[i];
    int64_t xd[4] = {c->N, c->H, c->W, c->C}, zd[4] = {c->N, OH, OW, c->M};
    if (c->nchw) xd[1] = c->C, xd[2] = c->H, xd[3] = c->W;
    in[0] = tensor_of(KILN_DTYPE_F32, 4, xd, xf);
    if (c->z) {
        for (size_t i = 0; i < ny; i++) xf[i] = (float)z[i];
        in[1] = tensor_of(KILN_DTYPE_F32, 4, zd, xf);
    }
    kiln_value *out = run_text_model(model_text(), c->z ? 2 : 1, names, in, threads, what);
    if (out) {
        int64_t yd[4] = {c->N, OH, OW, c->M};
        CHECK(same_shape(&out->t, 4, yd), "%s: output shape", what);
        if (wino_possible(c, split) && kiln_tensor_numel(&out->t) == ny)
            wino_close(out, want, mag, ny, what);
        else
            close_to(out, want, ny, TOL, what);
    }
    kiln_value_free(out);
    kiln_value_free(in[0]);
    kiln_value_free(in[1]);
    free(xf);
    free(x), free(w), free(b), free(z), free(want), free(mag);
}

/* The rest of a random case once its sizes, kernel and strides are drawn: dilations,
 * padding, bias, Z (one case in z_one_in), symbolic shapes, activation. False when the
 * output would be empty. */
static bool random_rest(struct cfg *c, int z_one_in)
{
    c->dh = rng_int(5) ? 1 : 2, c->dw = rng_int(5) ? 1 : 2;
    c->auto_pad = rng_int(5) == 0 ? 1 + rng_int(3) : 0;
    c->pt = rng_int(c->kh), c->pb = rng_int(c->kh), c->pl = rng_int(c->kw), c->pr = rng_int(c->kw);
    c->bias = rng_int(3) != 0;
    c->z = rng_int(z_one_in) == 0;
    c->symbolic = rng_int(5) == 0;
    c->act = (enum act)rng_int(ACT_COUNT);
    int64_t oh, ow, p;
    out_dim(c, 0, &oh, &p);
    out_dim(c, 1, &ow, &p);
    return oh >= 1 && ow >= 1;
}

/* "case I: N.. H.. ... T threads" for a case's messages, then `tail` (may be ""). */
static void case_name(char *what, size_t size, const char *kind, int i, const struct cfg *c, int t, const char *tail)
{
    snprintf(what, size,
             "%scase %d: N%lld H%lld W%lld C%lld M%lld G%lld k%lldx%lld s%lldx%lld d%lldx%lld pads "
             "%lld,%lld,%lld,%lld auto_pad %d bias %d z %d act %d sym %d, %d threads%s",
             kind, i, (long long)c->N, (long long)c->H, (long long)c->W, (long long)c->C, (long long)c->M,
             (long long)c->G, (long long)c->kh, (long long)c->kw, (long long)c->sh, (long long)c->sw,
             (long long)c->dh, (long long)c->dw, (long long)c->pt, (long long)c->pl, (long long)c->pb,
             (long long)c->pr, c->auto_pad, c->bias, c->z, c->act, c->symbolic, t, tail);
}

static void random_cases(int count)
{
    static const int ks[] = {1, 1, 3, 3, 3, 5, 7};
    for (int i = 0; i < count; i++) {
        struct cfg c = {0};
        c.N = 1 + rng_int(2);
        c.H = 1 + rng_int(14);
        c.W = 1 + rng_int(14);
        int kind = rng_int(4); /* 0 dense, 1 grouped, 2 depthwise, 3 dense wide */
        c.G = kind == 1 ? 1 + rng_int(3) : 1;
        c.C = c.G * (1 + rng_int(kind == 3 ? 40 : 9));
        if (kind == 2) c.G = c.C = 1 + rng_int(24);
        c.M = kind == 2 ? c.C : c.G * (1 + rng_int(kind == 3 ? 40 : 9));
        c.kh = ks[rng_int(7)];
        c.kw = rng_int(4) ? c.kh : ks[rng_int(7)];
        c.sh = 1 + rng_int(2), c.sw = rng_int(3) ? c.sh : 1 + rng_int(2);
        if (!random_rest(&c, 3)) continue;
        char what[512];
        for (int t = 1; t <= 3; t++)
            for (size_t sp = 0; sp < (c.symbolic ? 1 : N_SPLITS); sp++) {
                char tail[40];
                snprintf(tail, sizeof tail, ", split %s", splits[sp] ? splits[sp] : "auto");
                case_name(what, sizeof what, "", i, &c, t, tail);
                run_case(&c, t, splits[sp], what);
            }
    }
}

/* Shapes of the CNNs that take this kernel, big enough to be split into row slices. */
static void model_shapes(void)
{
    struct cfg cs[] = {
        {1, 28, 28, 64, 64, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 0, true, false, false, ACT_RELU, false},
        {1, 28, 28, 64, 128, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, true, true, false, ACT_RELU, false},
        {1, 29, 29, 32, 32, 32, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 0, true, false, false, ACT_CLIP, false},
        {1, 14, 14, 48, 48, 48, 5, 5, 1, 1, 1, 1, 2, 2, 2, 2, 0, true, false, false, ACT_SIGMOID, false},
        {1, 56, 56, 3, 16, 1, 7, 7, 2, 2, 1, 1, 3, 3, 3, 3, 0, false, false, false, ACT_NONE, false},
        {1, 16, 16, 24, 24, 1, 3, 3, 1, 1, 2, 2, 2, 2, 2, 2, 0, true, true, false, ACT_LEAKY, false},
        /* late ResNet / EfficientNet layers: few rows, many channels (the channel split) */
        {1, 7, 7, 64, 80, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 0, true, true, false, ACT_RELU, false},
        {2, 7, 7, 48, 50, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, true, true, false, ACT_HARDSWISH, false},
        {1, 14, 14, 32, 96, 1, 1, 1, 2, 2, 1, 1, 0, 0, 0, 0, 0, false, true, false, ACT_SILU, false},
        {1, 5, 5, 40, 33, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 0, true, false, false, ACT_GELU, false},
        /* N > 1: whole images per thread where that balances better than the slices */
        {2, 7, 7, 64, 64, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 0, false, true, false, ACT_RELU, false},
        {4, 6, 6, 64, 72, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 0, true, false, false, ACT_SIGMOID, false},
        /* Winograd by the rule: ResNet's 3x3 layers (smaller), odd sizes, asymmetric pads */
        {1, 16, 16, 64, 64, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 0, true, false, false, ACT_RELU, false},
        {1, 17, 15, 40, 36, 1, 3, 3, 1, 1, 1, 1, 1, 0, 1, 2, 0, false, false, false, ACT_NONE, false},
        {2, 15, 9, 33, 48, 1, 3, 3, 1, 1, 1, 1, 0, 1, 2, 1, 0, true, false, false, ACT_GELU, false},
        /* Winograd's F(4x4, 3x3) on 14- and 28-row slices (two 28-row ones even on one thread) */
        {1, 28, 20, 32, 48, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 0, true, false, false, ACT_RELU, false},
        {1, 56, 9, 32, 40, 1, 3, 3, 1, 1, 1, 1, 1, 0, 1, 2, 0, false, false, false, ACT_NONE, false},
        /* DeepLabV3's ASPP (dilation 12 on 16x16: a quarter of the taps' reads inside; the
         * pgemm-taps rule at AVX2), and strided, unequal dilations and pads */
        {1, 16, 16, 40, 36, 1, 3, 3, 1, 1, 12, 12, 12, 12, 12, 12, 0, true, true, false, ACT_RELU, false},
        {2, 13, 11, 24, 40, 1, 3, 3, 2, 1, 6, 5, 6, 5, 4, 7, 0, false, false, false, ACT_NONE, false},
    };
    char what[96];
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++)
        for (int t = 1; t <= 3; t++)
            for (size_t sp = 0; sp < N_SPLITS; sp++) {
                snprintf(what, sizeof what, "model shape %zu, %d threads, split %s", i, t,
                         splits[sp] ? splits[sp] : "auto");
                run_case(&cs[i], t, splits[sp], what);
            }
}

/* The variant an engine picks: "onednn-*" for static shapes when kiln has oneDNN and runs at
 * AVX2 or better ("onednn-<split>" when KILN_CONV_NHWC_SPLIT forces a split that applies),
 * "direct" for symbolic H and W or the portable path. */
static void check_variant(int sym, size_t sp, int one)
{
    set_split(splits[sp]);
    model_text_reset();
    tf("opset 17 kiln\ninput X f32 1,%s,16\ninit W f32 32,16,%s rand\noutput Y\n"
       "node kiln.ConvNhwc X,W -> Y pads=ints:%s\n", sym ? "h,w" : "12,12", one ? "1,1" : "3,3",
       one ? "0,0,0,0" : "1,1,1,1");
    kiln_engine *e = build_text_model(model_text(), 2, "variants");
    if (e) {
        const char *be, *kernel, *variant;
        kiln_engine_node_kernel(e, 0, &be, &kernel, &variant);
#ifdef KILN_HAVE_DNNL
        bool dnnl = true;
#else
        bool dnnl = false;
#endif
        bool onednn = !sym && dnnl && strcmp(kiln_cpu_isa(), "portable");
        bool taps = splits[sp] && !strcmp(splits[sp], "taps"); /* kiln's GEMM: AVX2 and up */
        char want[64];
        /* pixels only for the 1x1 convolution, winograd only for the 3x3 at AVX-512;
         * otherwise the estimate's choice */
        bool avx512 = !strcmp(kiln_cpu_isa(), "avx512");
        bool forced = splits[sp] && (!strcmp(splits[sp], "pixels") ? one
                                     : !strcmp(splits[sp], "winograd") ? !one && avx512
                                                                        : true);
        snprintf(want, sizeof want, "%s%s", onednn ? "onednn-" : "direct",
                 onednn ? (forced ? splits[sp] : "") : "");
        if (taps && !sym && strcmp(kiln_cpu_isa(), "portable"))
            snprintf(want, sizeof want, "pgemm-taps");
        else if (taps)
            forced = false;
        CHECK(variant && (forced || !onednn ? !strcmp(variant, want) : !strncmp(variant, want, 7)),
              "%s shapes, %s, split %s: variant %s, expected %s%s", sym ? "symbolic" : "static",
              one ? "1x1" : "3x3", splits[sp] ? splits[sp] : "auto", variant ? variant : "(none)",
              want, forced || !onednn ? "" : "*");
    }
    kiln_engine_free(e);
}

static void variants(void)
{
    for (int sym = 0; sym < 2; sym++)
        for (size_t sp = 0; sp < (sym ? 1 : N_SPLITS); sp++)
            for (int one = 0; one < 2; one++) check_variant(sym, sp, one);
    set_split(NULL);
}

/* ------------------------------------------------------------------ contexts on threads */

/* Four contexts of one engine (2 threads each), each on its own thread, run a chain of
 * ConvNhwc nodes (channel split with Z, rows, pixels, depthwise) 40 times: every result must
 * equal the first context's byte for byte. The oneDNN memory objects and staging buffers are
 * cached per thread (cpu/dnnl_util.c): this is the test that they are not shared (run under
 * TSan by scripts/test.sh). */
enum { CTX_THREADS = 4, CTX_RUNS = 40 };

struct ctx_work {
    kiln_engine *e;
    const kiln_value *x, *want;
    int errors, mismatches;
    char msg[1024];
};

static void *ctx_main(void *arg)
{
    struct ctx_work *w = arg;
    kiln_context *c = NULL;
    kiln_err err = {0};
    if (kiln_context_create(w->e, &c, &err)) {
        w->errors++;
        snprintf(w->msg, sizeof w->msg, "%s", err.msg);
        return NULL;
    }
    for (int i = 0; i < CTX_RUNS; i++) {
        const kiln_value *in[1] = {w->x};
        kiln_value *y = NULL;
        if (kiln_context_run(c, NULL, 1, NULL, in, 1, &y, &err)) {
            if (!w->errors++) snprintf(w->msg, sizeof w->msg, "%s", err.msg);
        } else if (y->t.dtype != w->want->t.dtype ||
                   memcmp(y->t.data, w->want->t.data, (size_t)kiln_tensor_numel(&y->t) * sizeof(float))) {
            w->mismatches++;
        }
        kiln_value_free(y);
    }
    kiln_context_free(c);
    return NULL;
}

static void contexts_on_threads(void)
{
    model_text_reset();
    tf("opset 17 kiln\ninput X f32 1,7,7,64\n"
       "init W1 f32 96,64,3,3 rand\ninit B1 f32 96 rand\ninit W2 f32 96,96,1,1 rand\n"
       "init W3 f32 96,1,3,3 rand\ninit W4 f32 40,96,3,3 rand\noutput Y\n"
       "node kiln.ConvNhwc X,W1,B1 -> A pads=ints:1,1,1,1 activation=string:Relu\n"
       "node kiln.ConvNhwc A,W2,_,A -> Bq activation=string:HardSwish\n"
       "node kiln.ConvNhwc Bq,W3 -> Cq group=int:96 pads=ints:1,1,1,1 activation=string:Clip "
       "activation_params=floats:0,6\n"
       "node kiln.ConvNhwc Cq,W4,_,_ -> Y strides=ints:2,2\n");
    struct buf mb = {0};
    parse_model(model_text(), &mb);
    kiln_model *m = NULL;
    kiln_builder *b = NULL;
    kiln_engine *e = NULL;
    kiln_context *c = NULL;
    kiln_value *want = NULL, *x = NULL;
    kiln_err err = {0};
    for (int split = 0; split < 4; split++) { /* auto, channels, pixels, winograd where they apply */
        static const char *const forced[] = {NULL, "channels", "pixels", "winograd"};
        set_split(forced[split]);
        kiln_status st = kiln_model_load_buffer(mb.p, mb.len, NULL, &m, &err);
        if (!st) st = kiln_builder_create(&b, &err);
        if (!st) st = kiln_builder_set_threads(b, 2, &err);
        if (!st) st = kiln_builder_build(b, m, &e, &err);
        if (!st) st = kiln_context_create(e, &c, &err);
        float *xf = malloc(7 * 7 * 64 * sizeof *xf);
        if (!xf) exit(1);
        for (int i = 0; i < 7 * 7 * 64; i++) xf[i] = (float)grid();
        int64_t xd[4] = {1, 7, 7, 64};
        x = tensor_of(KILN_DTYPE_F32, 4, xd, xf);
        free(xf);
        const kiln_value *in[1] = {x};
        if (!st) st = kiln_context_run(c, NULL, 1, NULL, in, 1, &want, &err);
        CHECK(st == KILN_OK, "contexts on threads: %s", err.msg);
        if (!st) {
            pthread_t tid[CTX_THREADS];
            struct ctx_work w[CTX_THREADS];
            for (int t = 0; t < CTX_THREADS; t++) {
                w[t] = (struct ctx_work){.e = e, .x = x, .want = want};
                CHECK(pthread_create(&tid[t], NULL, ctx_main, &w[t]) == 0, "pthread_create");
            }
            for (int t = 0; t < CTX_THREADS; t++) {
                pthread_join(tid[t], NULL);
                CHECK(w[t].errors == 0, "contexts on threads, split %d: thread %d: %d failed runs: %s", split, t,
                      w[t].errors, w[t].msg);
                CHECK(w[t].mismatches == 0, "contexts on threads, split %d: thread %d: %d of %d results differ",
                      split, t, w[t].mismatches, CTX_RUNS);
            }
        }
        kiln_value_free(want), want = NULL;
        kiln_value_free(x), x = NULL;
        kiln_context_free(c), c = NULL;
        kiln_engine_free(e), e = NULL;
        kiln_builder_free(b), b = NULL;
        kiln_model_free(m), m = NULL;
    }
    set_split(NULL);
    free(mb.p);
}

/* An engine saved and loaded again (its packed weights mapped read-only from the file) runs
 * the split it was built with and gives the same bytes: channel slices of 32, 32 and 8 output
 * channels (the last padded to oneDNN's block of 16 in the packed format) at 3 threads,
 * Winograd row slices (weights in oneDNN's Winograd format; no Z), or pgemm-taps (a blob of
 * packed panels a tap). */
static void saved_engine(const char *split)
{
    bool wino = !strcmp(split, "winograd");
    model_text_reset();
    tf("opset 17 kiln\ninput X f32 1,6,6,64\ninit W f32 72,64,3,3 rand\ninit B f32 72 rand\n"
       "%soutput Y\nnode kiln.ConvNhwc X,W,B%s -> Y pads=ints:1,1,1,1 activation=string:Relu\n",
       wino ? "" : "input Z f32 1,6,6,72\n", wino ? "" : ",Z");
    struct buf mb = {0};
    parse_model(model_text(), &mb);
    kiln_model *m = NULL;
    kiln_builder *b = NULL;
    kiln_engine *e = NULL, *e2 = NULL;
    kiln_context *c = NULL, *c2 = NULL;
    kiln_value *y = NULL, *y2 = NULL, *in[2] = {NULL, NULL};
    kiln_err err = {0};
    char path[] = "/tmp/kiln_test_conv_nhwc_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp");
    if (fd < 0) return;
    close(fd);
    set_split(split);
    kiln_status st = kiln_model_load_buffer(mb.p, mb.len, NULL, &m, &err);
    if (!st) st = kiln_builder_create(&b, &err);
    if (!st) st = kiln_builder_set_threads(b, 3, &err);
    if (!st) st = kiln_builder_build(b, m, &e, &err);
    set_split(NULL); /* the loaded engine must keep the split on its own */
    if (!st) st = kiln_engine_save(e, path, &err);
    if (!st) st = kiln_engine_load(path, &e2, &err);
    if (!st) st = kiln_context_create(e, &c, &err);
    if (!st) st = kiln_context_create(e2, &c2, &err);
    int64_t xd[4] = {1, 6, 6, 64}, zd[4] = {1, 6, 6, 72};
    in[0] = rand_tensor(4, xd);
    in[1] = rand_tensor(4, zd);
    const char *names[2] = {"X", "Z"};
    size_t n_in = wino ? 1 : 2;
    if (!st) st = kiln_context_run(c, NULL, n_in, names, (const kiln_value *const *)in, 1, &y, &err);
    if (!st) st = kiln_context_run(c2, NULL, n_in, names, (const kiln_value *const *)in, 1, &y2, &err);
    CHECK(st == KILN_OK, "saved engine, %s: %s", split, err.msg);
    if (!st) {
        const char *be, *kernel, *variant = NULL;
        kiln_engine_node_kernel(e2, 0, &be, &kernel, &variant);
        if (strcmp(kiln_cpu_isa(), "portable")) {
            char want[32];
            snprintf(want, sizeof want, strcmp(split, "taps") ? "onednn-%s" : "pgemm-%s", split);
#ifndef KILN_HAVE_DNNL
            if (strcmp(split, "taps")) want[0] = 0;
#endif
            if (want[0] && (!wino || !strcmp(kiln_cpu_isa(), "avx512")))
                CHECK(variant && !strcmp(variant, want), "saved engine: variant %s, expected %s",
                      variant ? variant : "(none)", want);
        }
        CHECK(!memcmp(y->t.data, y2->t.data, 6 * 6 * 72 * sizeof(float)),
              "saved engine, %s: the loaded engine's output differs", split);
        /* Loaded again with its blobs copied out of the mapping (engine/file.c; the spare
         * whole-convolution blob of the channel split stays mapped). */
        kiln_engine *e3 = NULL;
        kiln_context *c3 = NULL;
        kiln_value *y3 = NULL;
        setenv("KILN_ENGINE_BLOBS", "copy", 1);
        st = kiln_engine_load(path, &e3, &err);
        unsetenv("KILN_ENGINE_BLOBS");
        if (!st) st = kiln_context_create(e3, &c3, &err);
        if (!st) st = kiln_context_run(c3, NULL, n_in, names, (const kiln_value *const *)in, 1, &y3, &err);
        CHECK(st == KILN_OK, "saved engine, blobs copied, %s: %s", split, err.msg);
        if (!st)
            CHECK(!memcmp(y->t.data, y3->t.data, 6 * 6 * 72 * sizeof(float)),
                  "saved engine, %s: the output differs with the blobs copied", split);
        kiln_value_free(y3);
        kiln_context_free(c3);
        kiln_engine_free(e3);
    }
    kiln_value_free(y), kiln_value_free(y2), kiln_value_free(in[0]), kiln_value_free(in[1]);
    kiln_context_free(c), kiln_context_free(c2);
    kiln_engine_free(e), kiln_engine_free(e2);
    kiln_builder_free(b);
    kiln_model_free(m);
    free(mb.p);
    remove(path);
}

/* ------------------------------------------------------------------ x_nchw */

/* kiln.ConvNhwc with x_nchw 1 (X planar [N, C, H, W], the first convolution of a CNN):
 * random, odd and tiny shapes with 1 to 8 input channels, output channels across the
 * kernel's chunks of 1 to 4 vectors and beyond 64, every kernel size, stride, dilation, pad
 * and auto_pad, images narrower than the kernel (no interior column), N of 1 to 3, Z and every
 * activation; 1, 2 and 3 threads; static and symbolic H and W. Variants: "nchw-first" (AVX-512
 * up to 3x3; symbolic shapes), "onednn-rows" on transposed row slices (larger kernels at
 * AVX-512, static shapes at AVX2: ctest runs this test under KILN_CPU_ISA=avx2 too), "direct"
 * (KILN_CPU_ISA=portable, grouped). Exact on the 1/16 grid: TOL. */
static void nchw_cases(int count)
{
    static const int ks[] = {1, 2, 3, 3, 3, 5, 7, 7};
    for (int i = 0; i < count; i++) {
        struct cfg c = {0};
        c.nchw = true;
        c.N = 1 + rng_int(3);
        c.H = 1 + rng_int(i < count / 2 ? 12 : 40);
        c.W = 1 + rng_int(i < count / 2 ? 12 : 40);
        c.G = 1;
        c.C = 1 + rng_int(rng_int(4) ? 4 : 8);
        c.M = 1 + rng_int(rng_int(3) ? 70 : 140);
        c.kh = ks[rng_int(8)];
        c.kw = rng_int(4) ? c.kh : ks[rng_int(8)];
        c.sh = 1 + rng_int(3), c.sw = rng_int(3) ? c.sh : 1 + rng_int(3);
        if (!random_rest(&c, 4)) continue;
        char what[512];
        for (int t = 1; t <= 3; t++) {
            case_name(what, sizeof what, "nchw ", i, &c, t, "");
            run_case(&c, t, NULL, what);
        }
    }
    /* The model set's first layers: MobileNetV2 / EfficientNet-B0 (3 -> 32, 3x3 s2),
     * ShuffleNetV2 (3 -> 24), ResNet-50 (3 -> 64, 7x7 s2 p3), smaller images. */
    struct cfg cs[] = {
        {1, 64, 64, 3, 32, 1, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 0, true, false, false, ACT_CLIP, true},
        {1, 57, 61, 3, 24, 1, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 0, true, false, false, ACT_RELU, true},
        {1, 45, 50, 3, 64, 1, 7, 7, 2, 2, 1, 1, 3, 3, 3, 3, 0, true, false, false, ACT_RELU, true},
        {2, 33, 33, 3, 40, 1, 3, 3, 2, 2, 1, 1, 0, 0, 1, 1, 0, false, true, false, ACT_SILU, true},
    };
    char what[96];
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++)
        for (int t = 1; t <= 3; t++) {
            snprintf(what, sizeof what, "nchw model shape %zu, %d threads", i, t);
            run_case(&cs[i], t, NULL, what);
        }
}

/* The variant of an x_nchw ConvNhwc: "nchw-first" at AVX-512 (3x3) and for symbolic H, W at
 * AVX2 and up, "onednn-rows" (row slices transposed in the thread's buffer) for static shapes
 * at AVX2 when kiln has oneDNN, "direct" at portable; grouped ones "direct". */
static void nchw_variant(void)
{
    for (int sym = 0; sym < 2; sym++)
        for (int grouped = 0; grouped < 2; grouped++) {
            model_text_reset();
            tf("opset 17 kiln\ninput X f32 1,4,%s\ninit W f32 8,%d,3,3 rand\noutput Y\n"
               "node kiln.ConvNhwc X,W -> Y pads=ints:1,1,1,1 x_nchw=int:1 group=int:%d\n",
               sym ? "h,w" : "12,12", grouped ? 2 : 4, grouped ? 2 : 1);
            kiln_engine *e = build_text_model(model_text(), 2, "nchw variant");
            if (e) {
                const char *be, *kernel, *variant;
                kiln_engine_node_kernel(e, 0, &be, &kernel, &variant);
#ifdef KILN_HAVE_DNNL
                bool dnnl = true;
#else
                bool dnnl = false;
#endif
                const char *isa = kiln_cpu_isa();
                const char *want = grouped || !strcmp(isa, "portable")    ? "direct"
                                   : !sym && dnnl && !strcmp(isa, "avx2") ? "onednn-rows"
                                                                          : "nchw-first";
                CHECK(variant && !strcmp(variant, want), "x_nchw, %s, group %d: variant %s, expected %s",
                      sym ? "symbolic" : "static", grouped ? 2 : 1, variant ? variant : "(none)", want);
            }
            kiln_engine_free(e);
        }
    /* x_nchw must be 0 or 1. */
    model_text_reset();
    tf("opset 17 kiln\ninput X f32 1,4,6,6\ninit W f32 8,4,3,3 rand\noutput Y\n"
       "node kiln.ConvNhwc X,W -> Y x_nchw=int:2\n");
    float xf[144] = {0};
    int64_t xd[4] = {1, 4, 6, 6};
    kiln_value *out[2] = {NULL, NULL};
    char msg[256] = "";
    CHECK(!model_text_run_x(xf, xd, 1, out, true, msg, sizeof msg, "x_nchw 2") && strstr(msg, "x_nchw"),
          "x_nchw 2 is refused: '%s'", msg);
    kiln_value_free(out[0]);
    kiln_value_free(out[1]);
}

/* An x_nchw engine saved and loaded again (3x3: nchw-first at AVX-512; 7x7: onednn-rows on
 * transposed slices when kiln has oneDNN): the loaded engine keeps the variant and gives the
 * same bytes. */
static void saved_engine_nchw(int k)
{
    model_text_reset();
    tf("opset 17 kiln\ninput X f32 1,3,20,22\ninit W f32 24,3,%d,%d rand\ninit B f32 24 rand\noutput Y\n"
       "node kiln.ConvNhwc X,W,B -> Y pads=ints:%d,%d,%d,%d strides=ints:2,2 x_nchw=int:1 "
       "activation=string:Relu\n",
       k, k, k / 2, k / 2, k / 2, k / 2);
    struct buf mb = {0};
    parse_model(model_text(), &mb);
    kiln_model *m = NULL;
    kiln_builder *b = NULL;
    kiln_engine *e = NULL, *e2 = NULL;
    kiln_context *c = NULL, *c2 = NULL;
    kiln_value *y = NULL, *y2 = NULL, *in = NULL;
    kiln_err err = {0};
    char path[] = "/tmp/kiln_test_conv_nhwc_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp");
    if (fd < 0) return;
    close(fd);
    kiln_status st = kiln_model_load_buffer(mb.p, mb.len, NULL, &m, &err);
    if (!st) st = kiln_builder_create(&b, &err);
    if (!st) st = kiln_builder_set_threads(b, 2, &err);
    if (!st) st = kiln_builder_build(b, m, &e, &err);
    if (!st) st = kiln_engine_save(e, path, &err);
    if (!st) st = kiln_engine_load(path, &e2, &err);
    if (!st) st = kiln_context_create(e, &c, &err);
    if (!st) st = kiln_context_create(e2, &c2, &err);
    int64_t xd[4] = {1, 3, 20, 22};
    in = rand_tensor(4, xd);
    const char *names[1] = {"X"};
    if (!st) st = kiln_context_run(c, NULL, 1, names, (const kiln_value *const *)&in, 1, &y, &err);
    if (!st) st = kiln_context_run(c2, NULL, 1, names, (const kiln_value *const *)&in, 1, &y2, &err);
    CHECK(st == KILN_OK, "saved x_nchw engine, %dx%d: %s", k, k, err.msg);
    if (!st) {
        const char *be, *kernel, *v1 = NULL, *v2 = NULL;
        kiln_engine_node_kernel(e, 0, &be, &kernel, &v1);
        kiln_engine_node_kernel(e2, 0, &be, &kernel, &v2);
        CHECK(v1 && v2 && !strcmp(v1, v2), "saved x_nchw engine, %dx%d: variant %s, loaded %s", k, k,
              v1 ? v1 : "(none)", v2 ? v2 : "(none)");
        CHECK(!memcmp(y->t.data, y2->t.data, 10 * 11 * 24 * sizeof(float)),
              "saved x_nchw engine, %dx%d: the loaded engine's output differs", k, k);
    }
    kiln_value_free(y), kiln_value_free(y2), kiln_value_free(in);
    kiln_context_free(c), kiln_context_free(c2);
    kiln_engine_free(e), kiln_engine_free(e2);
    kiln_builder_free(b);
    kiln_model_free(m);
    free(mb.p);
    remove(path);
}

/* Each compiled variant of the row kernel (cpu/conv_first_isa.h) up to kiln_isa_best(),
 * called directly on rows of random shapes (W of 1 to 40 so that some rows have no interior
 * column, M of 1 to 150: every chunk size and lane tail), against a float64 sum. Exact on the
 * 1/16 grid with at most 8 x 7 x 7 terms: |got - want| <= 1e-6 * (1 + |want|). A third of the
 * rows clamp at the store (Relu's [0, inf), Clip's [-0.5, 0.75] and mixes). Also that it
 * writes exactly [OW, M] (a guard after the row). */
static void row_kernel_isa(int count)
{
    for (int i = 0; i < count; i++) {
        int64_t C = 1 + rng_int(5), M = 1 + rng_int(i % 3 ? 70 : 150), kh = 1 + rng_int(7),
                kw = 1 + rng_int(7);
        int64_t H = 1 + rng_int(20), W = 1 + rng_int(40), sx = 1 + rng_int(3), dy = 1 + rng_int(2),
                dx = 1 + rng_int(2);
        int64_t pl = rng_int(kw), pr = rng_int(kw), dk = (kw - 1) * dx + 1;
        int64_t OW = (W + pl + pr - dk) < 0 ? 0 : (W + pl + pr - dk) / sx + 1;
        int64_t iy0 = rng_int((int)(H + kh)) - kh + 1;
        int clamp = rng_int(3) == 0;
        float lo = rng_int(2) ? 0.0f : -0.5f, hi = rng_int(2) ? INFINITY : 0.75f;
        if (OW < 1) continue;
        int64_t Mp = (M + KILN_CONV_FIRST_MBLOCK - 1) / KILN_CONV_FIRST_MBLOCK * KILN_CONV_FIRST_MBLOCK;
        size_t nx = (size_t)(C * H * W), nw = (size_t)(C * kh * kw * Mp), ny = (size_t)(OW * M);
        float *x = malloc(nx * sizeof *x), *w = calloc(nw, sizeof *w), *b = calloc((size_t)Mp, sizeof *b);
        float *y = malloc((ny + 16) * sizeof *y);
        double *want = malloc(ny * sizeof *want);
        if (!x || !w || !b || !y || !want) exit(1);
        for (size_t k = 0; k < nx; k++) x[k] = (float)grid();
        for (int64_t m = 0; m < M; m++) {
            b[m] = (float)grid();
            for (int64_t t = 0; t < C * kh * kw; t++) w[t * Mp + m] = (float)grid();
        }
        for (int64_t ow = 0; ow < OW; ow++)
            for (int64_t m = 0; m < M; m++) {
                double acc = b[m];
                for (int64_t c = 0; c < C; c++)
                    for (int64_t ky = 0; ky < kh; ky++)
                        for (int64_t kx = 0; kx < kw; kx++) {
                            int64_t iy = iy0 + ky * dy, ix = ow * sx - pl + kx * dx;
                            if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                            acc += (double)x[(c * H + iy) * W + ix] * w[((c * kh + ky) * kw + kx) * Mp + m];
                        }
                want[ow * M + m] = clamp ? (acc < lo ? lo : acc > hi ? hi : acc) : acc;
            }
        for (int isa = 0; isa <= (int)kiln_isa_best(); isa++) {
            for (size_t k = 0; k < ny + 16; k++) y[k] = -777.0f;
            struct kiln_conv_first_row r = {x, w, b, y, C, H, W, M, Mp, OW, kh, kw, sx, dy, dx, iy0, pl, clamp, lo, hi};
            KILN_ISA_VARIANT(kiln_conv_first_row_isa, (enum kiln_isa)isa)(&r);
            double worst = 0;
            size_t at = 0;
            for (size_t k = 0; k < ny; k++) {
                double e = fabs(y[k] - want[k]) / (1 + fabs(want[k]));
                if (e > worst) worst = e, at = k;
            }
            bool guard = true;
            for (size_t k = ny; k < ny + 16; k++) guard = guard && y[k] == -777.0f;
            CHECK(worst <= 1e-6 && guard,
                  "row kernel %s: C%lld M%lld H%lld W%lld k%lldx%lld sx%lld d%lldx%lld pl%lld iy0 %lld: "
                  "error %g at %zu, guard %s",
                  kiln_isa_name((enum kiln_isa)isa), (long long)C, (long long)M, (long long)H, (long long)W,
                  (long long)kh, (long long)kw, (long long)sx, (long long)dy, (long long)dx, (long long)pl,
                  (long long)iy0, worst, at, guard ? "kept" : "overwritten");
        }
        free(x), free(w), free(b), free(y), free(want);
    }
}

int main(void)
{
    rng_seed(77);
    row_kernel_isa(300);
    nchw_variant();
    saved_engine_nchw(3);
    saved_engine_nchw(7);
    nchw_cases(60);
    variants();
    contexts_on_threads();
    saved_engine("channels");
    saved_engine("winograd");
    saved_engine("taps");
    model_shapes();
    random_cases(60);
    return test_summary("test_conv_nhwc");
}
