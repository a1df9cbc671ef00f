/* test_mbconv.c: kiln.MBConv (src/cpu/ops/mbconv.c, its depthwise loop in
 * src/cpu/isa/mbconv.c) and the fuse_mbconv pass that writes it (src/opt/pass_fuse_mbconv.c).
 *
 *   - The op on Transpose(X, 0,2,3,1) against the unfused NCHW block on X, both outputs of
 *     one model run with 1, 2 and 3 threads: Conv 1x1 (+ bias) -> act1 (Clip 0..6, SiLU as
 *     Sigmoid + Mul, Relu, none) -> depthwise Conv k x k (k 3, 5, also 1x3 and 2x2), stride 1
 *     or 2, pads symmetric, asymmetric or none (+ bias) -> act2 -> Conv 1x1 (+ bias) [+ X,
 *     the residual, as Z]. The forms without expand (W1 absent) and without project (W3
 *     absent). Random, odd and tiny shapes: 1x1 images, one channel, channel counts that are
 *     no multiple of a vector (the scalar tail), images of more rows than one band (bands
 *     and ring wrap-around: a small KILN_MBCONV_BUDGET too), batch 2 and 3, weights not
 *     constant at prepare (an Identity in between: packed at run). Tolerance: |y - r| <=
 *     1e-4 (1 + |r|) (kiln's GEMM and the depthwise add in another order than the NCHW
 *     convolutions: float32 rounding only; sums of up to ~200 products of magnitude ~4).
 *     ctest also runs it with KILN_CPU_ISA=portable and =avx2 (tests/tests.cmake), so every
 *     compiled level of the row kernel and of the GEMM is checked.
 *   - The fuse_mbconv pass on NCHW models (extended level, kiln ops): a MobileNetV2 block
 *     with its residual becomes one kiln.MBConv with Z, outputs within 1e-4 (1 + |r|) of the
 *     unoptimized model's; an expand whose output has a second reader stays a ConvNhwc
 *     (the depthwise -> project form fuses without it); a depthwise whose output has a
 *     second reader fuses nothing (with KILN_MBCONV=2 the expand -> depthwise form); with
 *     KILN_MBCONV=0 nothing fuses. The pass tests set KILN_MBCONV=1 (on at every level).
 *   - The depthwise row kernel alone (kiln_mbconv_dw_row), every compiled level, against a
 *     float64 sum: 3x3 and 5x5 (whose interior pixels run several side by side) and 2x3,
 *     strides 1 and 2, left padding 0 to 2, rows of padding, output rows of 1 to 37 pixels
 *     (every remainder of the side-by-side groups), channels 1, 5, 16, 19, 40, bias or none,
 *     the clamp. Tolerance 1e-6 (1 + sum |terms|) (float32 sums of at most 26 terms).
 *   - Bad input: W2 not depthwise-shaped, W1 of the wrong channels: failures naming the op.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/isa.h"
#include "cpu/mbconv_isa.h"
#include "kiln.h"
#include "ir/ir.h"
#include "test_support.h"
#include "test_text_model.h"

#define TOL 1e-4

#define tf model_text_add

struct mb_case {
    int64_t N, C, H, W, E, M, kh, kw, s, pt, pl, pb, pr;
    const char *a1, *a2;      /* "Clip", "SiLU", "Relu" or NULL */
    bool expand, project, res, bias, dyn_w;
};

/* The activation `a` on `in` as NCHW nodes into `out`. */
static void ref_act(const char *a, const char *in, const char *out)
{
    if (!a)
        tf("node Identity %s -> %s\n", in, out);
    else if (!strcmp(a, "Clip"))
        tf("node Clip %s,c0,c6 -> %s\n", in, out);
    else if (!strcmp(a, "SiLU"))
        tf("node Sigmoid %s -> %s_s\nnode Mul %s,%s_s -> %s\n", in, in, in, in, out);
    else
        tf("node %s %s -> %s\n", a, in, out);
}

/* The activation attributes of `prefix` (activation, dw_activation) for a. */
static void fused_act(const char *prefix, const char *a)
{
    if (!a) return;
    if (!strcmp(a, "Clip"))
        tf(" %sactivation=string:Clip %sactivation_params=floats:0,6", prefix, prefix);
    else
        tf(" %sactivation=string:%s", prefix, a);
}

static void mb_case(const struct mb_case *c)
{
    long long N = c->N, C = c->C, H = c->H, W = c->W, E = c->expand ? c->E : c->C, M = c->M;
    model_text_reset();
    tf("opset 17 kiln\ninput X f32 %lld,%lld,%lld,%lld\noutput R\noutput Y\n", N, C, H, W);
    tf("init c0 f32 - = 0\ninit c6 f32 - = 6\n");
    tf("init W1 f32 %lld,%lld,1,1 rand\ninit B1 f32 %lld rand\n", E, C, E);
    tf("init W2 f32 %lld,1,%lld,%lld rand\ninit B2 f32 %lld rand\n", E, (long long)c->kh, (long long)c->kw, E);
    tf("init W3 f32 %lld,%lld,1,1 rand\ninit B3 f32 %lld rand\n", M, E, M);
    /* reference, NCHW */
    const char *x = "X";
    if (c->expand) {
        tf("node Conv X,W1%s -> e\n", c->bias ? ",B1" : "");
        ref_act(c->a1, "e", "ea");
        x = "ea";
    }
    tf("node Conv %s,W2%s -> d group=int:%lld strides=ints:%lld,%lld pads=ints:%lld,%lld,%lld,%lld\n", x,
       c->bias ? ",B2" : "", E, (long long)c->s, (long long)c->s, (long long)c->pt, (long long)c->pl,
       (long long)c->pb, (long long)c->pr);
    ref_act(c->a2, "d", c->project ? "da" : (c->res ? "R0" : "R"));
    if (c->project) {
        tf("node Conv da,W3%s -> %s\n", c->bias ? ",B3" : "", c->res ? "p" : "R");
        if (c->res) tf("node Add p,X -> R\n");
    }
    /* the fused op on NHWC */
    tf("node Transpose X -> xt perm=ints:0,2,3,1\n");
    const char *w1 = "W1", *w2 = "W2", *w3 = "W3";
    if (c->dyn_w) {
        tf("node Identity W1 -> W1d\nnode Identity W2 -> W2d\nnode Identity W3 -> W3d\n");
        w1 = "W1d", w2 = "W2d", w3 = "W3d";
    }
    tf("node kiln.MBConv xt,%s,%s,%s,%s", c->expand ? w1 : "_", c->expand && c->bias ? "B1" : "_", w2,
       c->bias ? "B2" : "_");
    if (c->project) tf(",%s,%s%s", w3, c->bias ? "B3" : "_", c->res ? ",xt" : "");
    tf(" -> Y strides=ints:%lld,%lld pads=ints:%lld,%lld,%lld,%lld", (long long)c->s, (long long)c->s,
       (long long)c->pt, (long long)c->pl, (long long)c->pb, (long long)c->pr);
    if (c->expand) fused_act("", c->a1);
    fused_act("dw_", c->a2);
    tf("\n");
    int64_t d[4] = {c->N, c->C, c->H, c->W};
    size_t n = (size_t)(N * C * H * W);
    float *xv = malloc((n + 1) * sizeof *xv);
    if (!xv) exit(1);
    for (size_t i = 0; i < n; i++) xv[i] = 4 * rng_f32();
    for (int t = 1; t <= 3; t++) {
        char what[300];
        snprintf(what, sizeof what,
                 "MBConv %lldx%lldx%lldx%lld E %lld M %lld k %lldx%lld s %lld pads %lld,%lld,%lld,%lld %s/%s%s%s%s%s%s, "
                 "%d threads", N, C, H, W, E, M, (long long)c->kh, (long long)c->kw, (long long)c->s,
                 (long long)c->pt, (long long)c->pl, (long long)c->pb, (long long)c->pr, c->a1 ? c->a1 : "-",
                 c->a2 ? c->a2 : "-", c->expand ? "" : ", no expand", c->project ? "" : ", no project",
                 c->res ? ", residual" : "", c->bias ? "" : ", no bias", c->dyn_w ? ", W not constant" : "", t);
        kiln_value *out[2];
        if (model_text_run_x(xv, d, t, out, false, NULL, 0, what)) nhwc_equal(out[0], out[1], TOL, what);
        kiln_value_free(out[0]);
        kiln_value_free(out[1]);
    }
    free(xv);
}

static void kernel_cases(void)
{
    /* N C H W E M kh kw s pt pl pb pr a1 a2 expand project res bias dyn_w */
    static const struct mb_case fixed[] = {
        {1, 16, 28, 28, 96, 24, 3, 3, 2, 0, 0, 1, 1, "Clip", "Clip", true, true, false, true, false}, /* torchvision s2 */
        {1, 24, 20, 20, 144, 24, 3, 3, 1, 1, 1, 1, 1, "Clip", "Clip", true, true, true, true, false}, /* residual */
        {1, 32, 17, 9, 32, 16, 3, 3, 1, 1, 1, 1, 1, NULL, "Clip", false, true, false, true, false},   /* no expand */
        {1, 16, 15, 15, 96, 24, 3, 3, 2, 1, 1, 1, 1, "SiLU", "SiLU", true, false, false, true, false}, /* no project */
        {1, 40, 14, 14, 240, 40, 5, 5, 1, 2, 2, 2, 2, "SiLU", "SiLU", true, true, true, true, false},  /* EfficientNet 5x5 */
        {1, 24, 13, 13, 144, 40, 5, 5, 2, 1, 1, 2, 2, "SiLU", NULL, true, true, false, true, false},   /* TF-style pads */
        {1, 1, 1, 1, 1, 1, 3, 3, 1, 1, 1, 1, 1, "Relu", "Relu", true, true, true, true, false},       /* all ones */
        {2, 3, 5, 4, 7, 5, 3, 3, 2, 1, 1, 1, 1, "Clip", "Relu", true, true, false, false, false},      /* tails */
        {3, 5, 6, 7, 19, 5, 3, 3, 1, 1, 1, 1, 1, NULL, NULL, true, true, true, true, true},            /* W at run */
        {1, 8, 9, 11, 33, 12, 1, 3, 1, 0, 1, 0, 1, "Relu", "Clip", true, true, false, true, false},    /* 1x3 */
        {1, 8, 9, 11, 17, 12, 2, 2, 2, 0, 0, 0, 0, "Relu", "Clip", true, true, false, true, false},    /* 2x2, no pads */
        {1, 6, 3, 3, 12, 6, 5, 5, 1, 2, 2, 2, 2, "Clip", "Clip", true, true, true, true, false},       /* window > image */
        {1, 16, 64, 40, 64, 16, 3, 3, 1, 1, 1, 1, 1, "Clip", "Clip", true, true, true, true, false},   /* many bands */
        {1, 16, 40, 3, 48, 16, 3, 3, 2, 1, 1, 1, 1, "Clip", "Clip", false, true, false, true, false},  /* tall, no expand */
    };
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) mb_case(&fixed[i]);
    for (int i = 0; i < 12; i++) {
        int k = rng_int(2) ? 3 : 5, s = 1 + rng_int(2), p = rng_int(4) == 0 ? 0 : k / 2;
        struct mb_case c = {1 + rng_int(2), 1 + rng_int(40), 1 + rng_int(20), 1 + rng_int(20), 1 + rng_int(100),
                            1 + rng_int(40), k, k, s, p, p, p, p,
                            rng_int(3) == 0 ? "Relu" : rng_int(2) ? "SiLU" : "Clip",
                            rng_int(4) == 0 ? NULL : rng_int(2) ? "SiLU" : "Clip", rng_int(5) != 0, rng_int(5) != 0,
                            false, rng_int(4) != 0, rng_int(6) == 0};
        if (c.H + 2 * p < k) c.H = k;
        if (c.W + 2 * p < k) c.W = k;
        if (!c.expand) c.E = c.C;
        c.res = c.project && s == 1 && 2 * p == k - 1 && c.M == c.C && rng_int(2);
        mb_case(&c);
    }
    /* bands of one or two rows: the ring wraps at every band */
    setenv("KILN_MBCONV_BUDGET", "4096", 1);
    static const struct mb_case small[] = {
        {1, 8, 23, 10, 24, 8, 3, 3, 1, 1, 1, 1, 1, "Clip", "Clip", true, true, true, true, false},
        {1, 8, 23, 10, 24, 12, 5, 5, 2, 2, 2, 2, 2, "SiLU", "SiLU", true, true, false, true, false},
        {2, 8, 19, 6, 20, 8, 3, 3, 2, 1, 1, 1, 1, "Clip", NULL, true, false, false, true, false},
    };
    for (size_t i = 0; i < sizeof small / sizeof small[0]; i++) mb_case(&small[i]);
    unsetenv("KILN_MBCONV_BUDGET");
}

/* ------------------------------------------------------------------ the pass */

/* A stem conv, one inverted-residual block 16 -> 64 -> 16 with its residual, a head; extra: 1
 * the expand's output also pooled into a second output, 2 the depthwise's. */
static void pass_case(int extra, size_t want_mb, size_t want_conv)
{
    char what[100];
    snprintf(what, sizeof what, "fuse_mbconv%s", extra == 1 ? ", expand read twice" : extra == 2 ? ", depthwise read twice" : "");
    model_text_reset();
    tf("opset 17\ninput X f32 1,3,24,20\noutput y\n%s", extra ? "output y2\n" : "");
    tf("init c0 f32 - = 0\ninit c6 f32 - = 6\n"
       "init w0 f32 16,3,3,3 rand\ninit b0 f32 16 rand\n"
       "node Conv X,w0,b0 -> s pads=ints:1,1,1,1\nnode Clip s,c0,c6 -> a\n"
       "init w1 f32 64,16,1,1 rand\ninit b1 f32 64 rand\nnode Conv a,w1,b1 -> e\nnode Clip e,c0,c6 -> ea\n"
       "init w2 f32 64,1,3,3 rand\ninit b2 f32 64 rand\n"
       "node Conv ea,w2,b2 -> d group=int:64 pads=ints:1,1,1,1\nnode Clip d,c0,c6 -> da\n"
       "init w3 f32 16,64,1,1 rand\ninit b3 f32 16 rand\nnode Conv da,w3,b3 -> p\nnode Add p,a -> r\n"
       "node GlobalAveragePool r -> gp\nnode Flatten gp -> y\n");
    if (extra) tf("node GlobalAveragePool %s -> gp2\nnode Flatten gp2 -> y2\n", extra == 1 ? "ea" : "da");
    int64_t d[4] = {1, 3, 24, 20};
    float x[1440];
    for (size_t i = 0; i < 1440; i++) x[i] = 2 * rng_f32();
    static const size_t want_numel[2] = {16, 64};
    kiln_model *m = optimized_matches_n(x, d, extra ? 2 : 1, want_numel, TOL, TOL, what);
    if (!m) return;
    size_t nmb = model_count_op(m, "kiln", "MBConv"), nconv = model_count_op(m, "kiln", "ConvNhwc");
    CHECK(nmb == want_mb && nconv == want_conv, "%s: %zu MBConv and %zu ConvNhwc, expected %zu and %zu", what, nmb,
          nconv, want_mb, want_conv);
    kiln_model_free(m);
}

/* ------------------------------------------------------------------ bad input */

static void bad_input(void)
{
    static const struct {
        const char *w2, *w1, *want;
    } cases[] = {
        {"4,2,3,3", "4,3,1,1", "W2 must be"},
        {"4,1,3,3", "4,5,1,1", "W1 must be"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char msg[1024];
        kiln_value *out[2];
        float x[2 * 3 * 5 * 5] = {0};
        int64_t d[4] = {2, 5, 5, 3};
        model_text_reset();
        tf("opset 17 kiln\ninput X f32 2,5,5,3\noutput R\noutput Y\n"
           "init W1 f32 %s rand\ninit W2 f32 %s rand\n"
           "node Relu X -> R\nnode kiln.MBConv X,W1,_,W2 -> Y pads=ints:1,1,1,1\n", cases[i].w1, cases[i].w2);
        bool ok = model_text_run_x(x, d, 1, out, true, msg, sizeof msg, "bad MBConv");
        CHECK(!ok && strstr(msg, "MBConv") && strstr(msg, cases[i].want), "W1 %s, W2 %s: ok %d, '%s'", cases[i].w1,
              cases[i].w2, ok, msg);
        kiln_value_free(out[0]);
        kiln_value_free(out[1]);
    }
}

/* kiln_mbconv_dw_row at every level against a float64 sum of the same taps. */
static void dw_row_cases(void)
{
    static const int64_t ks[][2] = {{3, 3}, {5, 5}, {2, 3}};
    static const int64_t Es[] = {1, 5, 16, 19, 40};
    enum { MAXW = 80, MAXE = 40 };
    float *rows_mem = malloc(sizeof(float) * 5 * MAXW * MAXE), *w = malloc(sizeof(float) * 25 * MAXE);
    float *bias = malloc(sizeof(float) * MAXE), *y = malloc(sizeof(float) * (MAXW + 1) * MAXE);
    if (!rows_mem || !w || !bias || !y) {
        CHECK(false, "out of memory");
        goto out;
    }
    for (int isa = KILN_ISA_PORTABLE; isa <= (int)kiln_isa_best(); isa++) {
        void (*fn)(const struct kiln_mbconv_dw *) = KILN_ISA_VARIANT(kiln_mbconv_dw_row_isa, (enum kiln_isa)isa);
        size_t bad = 0, cases = 0;
        for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++)
            for (size_t ei = 0; ei < sizeof Es / sizeof Es[0]; ei++)
                for (int64_t sw = 1; sw <= 2; sw++)
                    for (int64_t pl = 0; pl <= 2; pl++)
                        for (int64_t OW = 1; OW <= 37; OW += (OW < 20 ? 1 : 5)) {
                            int64_t kh = ks[ki][0], kw = ks[ki][1], E = Es[ei];
                            int64_t W = (OW - 1) * sw + kw - pl - rng_int(2); /* right padding 0 or 1 */
                            if (W < 1 || W > MAXW) continue;
                            for (int64_t i = 0; i < 5 * W * E; i++) rows_mem[i] = rng_f32();
                            for (int64_t i = 0; i < kh * kw * E; i++) w[i] = rng_f32();
                            for (int64_t i = 0; i < E; i++) bias[i] = rng_f32();
                            const float *rows[5];
                            for (int64_t r = 0; r < kh; r++) rows[r] = rng_int(6) ? rows_mem + r * W * E : NULL;
                            bool with_bias = rng_int(2), clamp = rng_int(3) == 0;
                            y[OW * E] = 12345.0f;
                            struct kiln_mbconv_dw d = {.rows = rows, .w = w, .bias = with_bias ? bias : NULL,
                                                       .y = y, .W = W, .E = E, .OW = OW, .kh = kh, .kw = kw,
                                                       .sw = sw, .pl = pl, .clamp = clamp, .lo = 0.0f, .hi = 1.5f};
                            fn(&d);
                            cases++;
                            for (int64_t ow = 0; ow < OW; ow++)
                                for (int64_t c = 0; c < E; c++) {
                                    double acc = with_bias ? bias[c] : 0.0, mag = fabs(acc);
                                    for (int64_t ky = 0; ky < kh; ky++) {
                                        if (!rows[ky]) continue;
                                        for (int64_t kx = 0; kx < kw; kx++) {
                                            int64_t ix = ow * sw - pl + kx;
                                            if (ix < 0 || ix >= W) continue;
                                            double t = (double)rows[ky][ix * E + c] * w[(ky * kw + kx) * E + c];
                                            acc += t;
                                            mag += fabs(t);
                                        }
                                    }
                                    if (clamp) acc = acc < 0 ? 0 : acc > 1.5 ? 1.5 : acc;
                                    bad += !(fabs(y[ow * E + c] - acc) <= 1e-6 * (1 + mag));
                                }
                            bad += y[OW * E] != 12345.0f; /* nothing written past the row */
                        }
        CHECK(bad == 0 && cases > 500, "%s depthwise row kernel: %zu wrong values in %zu rows",
              kiln_isa_name((enum kiln_isa)isa), bad, cases);
    }
out:
    free(rows_mem);
    free(w);
    free(bias);
    free(y);
}

int main(void)
{
    rng_seed(1618);
    dw_row_cases();
    kernel_cases();
    setenv("KILN_MBCONV_MIN", "0", 1); /* the pass's size rule off: these images are small */
    setenv("KILN_MBCONV", "1", 1);     /* and on at every instruction-set level */
    pass_case(0, 1, 1);
    pass_case(1, 1, 2);
    pass_case(2, 0, 4); /* the project cannot join: nothing fuses (expand -> depthwise is not made) */
    setenv("KILN_MBCONV", "2", 1);
    pass_case(2, 1, 2); /* unless asked for: then expand -> depthwise, its output the node's Y */
    setenv("KILN_MBCONV", "0", 1);
    pass_case(0, 0, 4); /* the pass off */
    bad_input();
    return test_summary("test_mbconv");
}
