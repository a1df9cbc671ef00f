/* test_conv_wino_channels.c: kiln.ConvNhwc's "onednn-winograd-channels" variant
 * (src/cpu/ops/conv_nhwc.c): a 3x3 stride-1 convolution whose output channels are split over
 * the threads, each slice oneDNN's F(2x2, 3x3) Winograd kernel on the whole image (staging
 * after the slice's dense output in the thread's buffer), its channels then copied into Y.
 *
 * Each case is a model X [N, H, W, C] -> ConvNhwc(W [M, C, 3, 3], B, pads, activation) -> Y
 * run through kiln_session with 2 and 3 threads, the variant taken by the rule (ResNet-50's
 * stage-3 shape, 14x14x256 -> 256) or forced (KILN_CONV_NHWC_SPLIT=winograd-channels) on odd
 * shapes: channel counts no multiple of 16 (M 70, 100: a short last slice), non-square
 * images, left and right pads that differ, N of 2 and 3 (the whole-image primitive for
 * batches), Relu and no activation; forced where it does not go (top and bottom pads that
 * differ, too little work to split), where the other splits must run. The engine's variant
 * name is checked. The reference is float64 from the ONNX definition; inputs and weights lie
 * on a 1/16 grid. Winograd's transforms round, so |got - want| <= 2e-6 (1 + S), S the sum
 * of the magnitudes of the terms (|b| + sum |x w|), as test_conv_nhwc.c holds Winograd to.
 * Without AVX-512 or oneDNN the variant does not apply and the cases check the fallback.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln.h"
#include "test_support.h"
#include "test_text_model.h"

#define WINO_TOL 2e-6

#define tf model_text_add

static float grid(void) { return (float)(rng_int(33) - 16) / 16.0f; }

struct wcase {
    int64_t N, H, W, C, M, pt, pl, pb, pr;
    bool relu, forced;
    bool takes; /* the variant must be winograd-channels (at AVX-512 with oneDNN) */
};

static void wcase_run(const struct wcase *c)
{
    int64_t OH = c->H + c->pt + c->pb - 2, OW = c->W + c->pl + c->pr - 2;
    size_t nx = (size_t)(c->N * c->H * c->W * c->C), nw = (size_t)(c->M * c->C * 9);
    float *x = malloc(nx * sizeof *x), *w = malloc(nw * sizeof *w), *b = malloc((size_t)c->M * sizeof *b);
    if (!x || !w || !b) exit(1);
    for (size_t i = 0; i < nx; i++) x[i] = grid();
    for (size_t i = 0; i < nw; i++) w[i] = grid();
    for (int64_t m = 0; m < c->M; m++) b[m] = grid();
    model_text_reset();
    tf("opset 17 kiln\ninput X f32 %lld,%lld,%lld,%lld\noutput Y\n", (long long)c->N, (long long)c->H,
       (long long)c->W, (long long)c->C);
    tf("init Wt f32 %lld,%lld,3,3", (long long)c->M, (long long)c->C);
    model_text_floats(w, nw);
    tf("\ninit B f32 %lld", (long long)c->M);
    model_text_floats(b, (size_t)c->M);
    tf("\nnode kiln.ConvNhwc X,Wt,B -> Y kernel_shape=ints:3,3 pads=ints:%lld,%lld,%lld,%lld%s\n",
       (long long)c->pt, (long long)c->pl, (long long)c->pb, (long long)c->pr,
       c->relu ? " activation=string:Relu" : "");
    if (c->forced)
        setenv("KILN_CONV_NHWC_SPLIT", "winograd-channels", 1);
    else
        unsetenv("KILN_CONV_NHWC_SPLIT");
    int64_t d[4] = {c->N, c->H, c->W, c->C};
    /* The variant an engine for 2 threads takes: this one where oneDNN runs at AVX-512. */
    kiln_engine *e = build_text_model(model_text(), 2, "variant");
    if (e) {
        const char *be, *kernel, *variant;
        kiln_engine_node_kernel(e, 0, &be, &kernel, &variant);
        bool avx512 = !strcmp(kiln_cpu_isa(), "avx512");
#ifndef KILN_HAVE_DNNL
        avx512 = false;
#endif
        CHECK(!avx512 || !c->takes || (variant && !strcmp(variant, "onednn-winograd-channels")),
              "%lldx%lldx%lldx%lld -> %lld: variant '%s' at %s", (long long)c->N, (long long)c->H,
              (long long)c->W, (long long)c->C, (long long)c->M, variant ? variant : "(none)", kiln_cpu_isa());
        kiln_engine_free(e);
    }
    for (int t = 2; t <= 3; t++) {
        char what[160];
        snprintf(what, sizeof what, "%s %lldx%lldx%lldx%lld -> %lld, pads %lld,%lld,%lld,%lld%s, %d threads",
                 c->forced ? "forced" : "rule", (long long)c->N, (long long)c->H, (long long)c->W,
                 (long long)c->C, (long long)c->M, (long long)c->pt, (long long)c->pl, (long long)c->pb,
                 (long long)c->pr, c->relu ? ", Relu" : "", t);
        kiln_value *in = tensor_of(KILN_DTYPE_F32, 4, d, x);
        const char *names[1] = {"X"};
        kiln_value *y = run_text_model(model_text(), 1, names, &in, t, what);
        kiln_value_free(in);
        if (!y) continue;
        const float *got = kiln_value_data(y);
        size_t bad = 0;
        double worst = 0;
        for (int64_t n = 0; n < c->N; n++)
            for (int64_t oh = 0; oh < OH; oh++)
                for (int64_t ow = 0; ow < OW; ow++)
                    for (int64_t m = 0; m < c->M; m++) {
                        double acc = b[m], mag = fabs(b[m]);
                        for (int64_t ky = 0; ky < 3; ky++)
                            for (int64_t kx = 0; kx < 3; kx++) {
                                int64_t ih = oh - c->pt + ky, iw = ow - c->pl + kx;
                                if (ih < 0 || ih >= c->H || iw < 0 || iw >= c->W) continue;
                                const float *xp = x + ((n * c->H + ih) * c->W + iw) * c->C;
                                for (int64_t ci = 0; ci < c->C; ci++) {
                                    double p = (double)xp[ci] * w[((m * c->C + ci) * 3 + ky) * 3 + kx];
                                    acc += p;
                                    mag += fabs(p);
                                }
                            }
                        if (c->relu && acc < 0) acc = 0;
                        double g = got[((n * OH + oh) * OW + ow) * c->M + m];
                        double err = fabs(g - acc) / (1 + mag);
                        if (err > worst) worst = err;
                        bad += !(err <= WINO_TOL);
                    }
        CHECK(kiln_value_numel(y) == (size_t)(c->N * OH * OW * c->M) && bad == 0,
              "%s: %zu outputs differ (worst %g (1 + S))", what, bad, worst);
        kiln_value_free(y);
    }
    unsetenv("KILN_CONV_NHWC_SPLIT");
    free(x);
    free(w);
    free(b);
}

int main(void)
{
    rng_seed(4242);
    static const struct wcase cases[] = {
        {1, 14, 14, 256, 256, 1, 1, 1, 1, true, false, true}, /* ResNet-50 stage 3: the rule */
        {2, 9, 11, 40, 70, 1, 1, 1, 1, false, true, true},
        {1, 12, 10, 24, 100, 1, 1, 1, 1, true, true, true},
        {3, 8, 8, 32, 64, 1, 0, 1, 1, false, true, true},
        /* forced where it does not go: unequal top and bottom pads (oneDNN's F(2x2, 3x3)
         * declines them), too little work for two slices; the split chosen otherwise runs */
        {1, 16, 15, 48, 130, 0, 1, 2, 1, true, true, false},
        {1, 3, 3, 17, 33, 1, 1, 1, 1, true, true, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) wcase_run(&cases[i]);
    return test_summary("test_conv_wino_channels");
}
