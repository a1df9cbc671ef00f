/* test_se_block.c: kiln.SqueezeExcite (src/cpu/ops/se_block.c, its loops in
 * src/cpu/isa/pool_nhwc.c) and the fuse_se pass that writes it (src/opt/pass_fuse_se.c).
 *
 *   - The op on Transpose(X, 0,2,3,1) against the unfused NCHW block on X, both outputs of
 *     one model run with 1, 2 and 3 threads: GlobalAveragePool -> Conv 1x1 (+ bias) ->
 *     activation (SiLU as Sigmoid + Mul, Relu, none) -> Conv 1x1 -> gate (Sigmoid,
 *     HardSigmoid) -> Mul(X, gate). Random, odd and tiny shapes: one channel, R = 1, 1x1
 *     images, channel counts that are no multiple of a vector, images large enough to be
 *     split over the threads by rows (56x56x32, EfficientNet's first block), GEMVs split by
 *     channels (7x7x1152, 14x14x672, 3x3x100 with R 160 in blocks of 48, 48 and 4 at 3 threads), batch
 *     2 and 3, no
 *     biases, weights as [R, C] (rank 2), weights not constant at prepare (an Identity in
 *     between). Tolerance: |y - r| <= 1e-5 (1 + |r|) (the sums and the GEMVs add in another
 *     order than the pool and oneDNN's convolution: float32 rounding only).
 *   - The fuse_se pass on an NCHW model with an SE block between convolutions (extended
 *     level, kiln ops): one kiln.SqueezeExcite, no Mul or AveragePoolNhwc left, outputs
 *     within 1e-5 + 1e-4 |b| of the unoptimized model's (the NHWC convolutions sum in another
 *     order too); a block that must not fuse (X read by a third node) stays as it was; a 3x3
 *     excitation conv with padding 1 fuses (pass conv_taps makes it 1x1 on the 1x1 map).
 *   - Bad input: W2 of the wrong shape fails with a message naming the op.
 * ctest also runs it with KILN_CPU_ISA=portable and =avx2 (tests/tests.cmake).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln.h"
#include "ir/ir.h"
#include "test_support.h"
#include "test_text_model.h"

#define TOL 1e-5

#define tf model_text_add

struct se_case {
    int64_t N, C, H, W, R;
    const char *act;  /* fc1: "SiLU", "Relu" or NULL */
    const char *gate; /* "Sigmoid" or "HardSigmoid" */
    bool bias, rank2, dyn_w;
};

static void se_case(const struct se_case *c)
{
    long long N = c->N, C = c->C, H = c->H, W = c->W, R = c->R;
    model_text_reset();
    tf("opset 17 kiln\ninput X f32 %lld,%lld,%lld,%lld\noutput R\noutput Y\n", N, C, H, W);
    tf("init W1 f32 %lld,%lld,1,1 rand\ninit W2 f32 %lld,%lld,1,1 rand\n", R, C, C, R);
    tf("init B1 f32 %lld rand\ninit B2 f32 %lld rand\n", R, C);
    if (c->rank2) tf("init s1 i64 2 = %lld,%lld\ninit s2 i64 2 = %lld,%lld\n", R, C, C, R);
    /* reference, NCHW */
    tf("node GlobalAveragePool X -> p\n");
    tf("node Conv p,W1%s -> f1\n", c->bias ? ",B1" : "");
    if (c->act && !strcmp(c->act, "SiLU"))
        tf("node Sigmoid f1 -> f1s\nnode Mul f1,f1s -> a1\n");
    else if (c->act)
        tf("node %s f1 -> a1\n", c->act);
    else
        tf("node Identity f1 -> a1\n");
    tf("node Conv a1,W2%s -> f2\n", c->bias ? ",B2" : "");
    if (!strcmp(c->gate, "HardSigmoid"))
        tf("node HardSigmoid f2 -> g alpha=float:0.25 beta=float:0.5\n");
    else
        tf("node Sigmoid f2 -> g\n");
    tf("node Mul X,g -> R\n");
    /* the fused op on NHWC */
    tf("node Transpose X -> xt perm=ints:0,2,3,1\n");
    const char *w1 = "W1", *w2 = "W2";
    if (c->rank2) {
        tf("node Reshape W1,s1 -> W1r\nnode Reshape W2,s2 -> W2r\n");
        w1 = "W1r", w2 = "W2r";
    }
    if (c->dyn_w) {
        tf("node Identity %s -> W1d\nnode Identity %s -> W2d\n", w1, w2);
        w1 = "W1d", w2 = "W2d";
    }
    tf("node kiln.SqueezeExcite xt,%s,%s,%s,%s -> Y", w1, c->bias ? "B1" : "_", w2, c->bias ? "B2" : "_");
    if (c->act) tf(" activation=string:%s", c->act);
    if (!strcmp(c->gate, "HardSigmoid"))
        tf(" gate_activation=string:HardSigmoid gate_activation_params=floats:0.25,0.5\n");
    else
        tf(" gate_activation=string:Sigmoid\n");
    int64_t d[4] = {c->N, c->C, c->H, c->W};
    size_t n = (size_t)(N * C * H * W);
    float *x = malloc((n + 1) * sizeof *x);
    if (!x) exit(1);
    for (size_t i = 0; i < n; i++) x[i] = 4 * rng_f32();
    for (int t = 1; t <= 3; t++) {
        char what[200];
        snprintf(what, sizeof what, "SE %lldx%lldx%lldx%lld R %lld, %s, %s%s%s%s, %d threads", N, C, H, W, R,
                 c->act ? c->act : "no act", c->gate, c->bias ? "" : ", no bias", c->rank2 ? ", rank-2 W" : "",
                 c->dyn_w ? ", W not constant" : "", t);
        kiln_value *out[2];
        if (model_text_run_x(x, d, t, out, false, NULL, 0, what)) nhwc_equal(out[0], out[1], TOL, what);
        kiln_value_free(out[0]);
        kiln_value_free(out[1]);
    }
    free(x);
}

static void kernel_cases(void)
{
    static const struct se_case fixed[] = {
        {1, 32, 56, 56, 8, "SiLU", "Sigmoid", true, false, false},   /* EfficientNet block 1 */
        {1, 1152, 7, 7, 48, "SiLU", "Sigmoid", true, false, false},  /* its last stage */
        {1, 1, 1, 1, 1, "SiLU", "Sigmoid", true, false, false},
        {2, 17, 3, 5, 3, "Relu", "HardSigmoid", true, false, false}, /* MobileNetV3's form */
        {3, 40, 9, 2, 5, NULL, "Sigmoid", false, false, false},
        {1, 33, 40, 30, 7, "SiLU", "Sigmoid", true, true, false},
        {2, 24, 13, 11, 6, "Relu", "Sigmoid", true, false, true},
        {2, 100, 3, 3, 160, "SiLU", "Sigmoid", false, false, false}, /* GEMVs split, odd blocks */
        {1, 672, 14, 14, 28, "SiLU", "Sigmoid", true, false, true},  /* GEMVs split, W not prepared */
    };
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) se_case(&fixed[i]);
    for (int i = 0; i < 10; i++) {
        struct se_case c = {1 + rng_int(2), 1 + rng_int(70), 1 + rng_int(20), 1 + rng_int(20), 1 + rng_int(9),
                            rng_int(3) == 0 ? "Relu" : "SiLU", rng_int(2) ? "Sigmoid" : "HardSigmoid",
                            rng_int(4) != 0, rng_int(4) == 0, rng_int(5) == 0};
        se_case(&c);
    }
}

/* ------------------------------------------------------------------ the pass */

/* Conv 3x3 + SiLU, an SE block (excitation kernel ek x ek; a third reader of the image when
 * extra: an Add of the block's output and its input), Conv 1x1, then Flatten(GlobalAveragePool) out. */
static void pass_case(int ek, bool extra, size_t want_se)
{
    char what[100];
    snprintf(what, sizeof what, "fuse_se, excitation %dx%d%s", ek, ek, extra ? ", image read thrice" : "");
    model_text_reset();
    tf("opset 17\ninput X f32 1,8,12,10\noutput y\n");
    tf("init w0 f32 24,8,3,3 rand\ninit b0 f32 24 rand\n"
       "node Conv X,w0,b0 -> c0 pads=ints:1,1,1,1\nnode Sigmoid c0 -> c0s\nnode Mul c0,c0s -> a\n"
       "node GlobalAveragePool a -> p\n");
    tf("init w1 f32 6,24,%d,%d rand\ninit b1 f32 6 rand\n", ek, ek);
    tf("node Conv p,w1,b1 -> f1 pads=ints:%d,%d,%d,%d\n", ek / 2, ek / 2, ek / 2, ek / 2);
    tf("node Sigmoid f1 -> f1s\nnode Mul f1,f1s -> f1a\n"
       "init w2 f32 24,6,1,1 rand\ninit b2 f32 24 rand\n"
       "node Conv f1a,w2,b2 -> f2\nnode Sigmoid f2 -> g\nnode Mul a,g -> se\n"
       "init w3 f32 16,24,1,1 rand\nnode Conv %s,w3 -> c3\nnode GlobalAveragePool c3 -> gp\n"
       "node Flatten gp -> y\n", extra ? "se2" : "se");
    if (extra) tf("node Add se,a -> se2\n");
    int64_t d[4] = {1, 8, 12, 10};
    float x[960];
    for (size_t i = 0; i < 960; i++) x[i] = 2 * rng_f32();
    kiln_model *m = optimized_matches(x, d, 16, 1e-5, 1e-4, what);
    if (!m) return;
    size_t se = model_count_op(m, "kiln", "SqueezeExcite");
    CHECK(se == want_se, "%s: %zu SqueezeExcite, expected %zu", what, se, want_se);
    if (want_se)
        CHECK(model_count_op(m, "", "Mul") == 0 && model_count_op(m, "kiln", "AveragePoolNhwc") == 1,
              "%s: %zu Mul, %zu AveragePoolNhwc left (expected 0 and the final pool's 1)", what,
              model_count_op(m, "", "Mul"), model_count_op(m, "kiln", "AveragePoolNhwc"));
    kiln_model_free(m);
}

/* ------------------------------------------------------------------ bad input */

static void bad_input(void)
{
    char msg[1024];
    kiln_value *out[2];
    float x[2 * 4 * 3 * 3] = {0};
    int64_t d[4] = {2, 4, 3, 3};
    model_text_reset();
    tf("opset 17 kiln\ninput X f32 2,4,3,3\noutput R\noutput Y\n"
       "init W1 f32 2,4,1,1 rand\ninit W2 f32 3,2,1,1 rand\n"
       "node Relu X -> R\nnode kiln.SqueezeExcite X,W1,_,W2,_ -> Y\n");
    bool ok = model_text_run_x(x, d, 1, out, true, msg, sizeof msg, "bad W2");
    CHECK(!ok && strstr(msg, "SqueezeExcite") && strstr(msg, "W1 and W2"), "W2 [3, 2] for 3 channels... : ok %d, '%s'",
          ok, msg);
    kiln_value_free(out[0]);
    kiln_value_free(out[1]);
}

int main(void)
{
    rng_seed(2718);
    kernel_cases();
    pass_case(1, false, 1);
    pass_case(1, true, 0);
    /* a 3x3 excitation conv (padding 1) on the pooled 1x1 map reads the image with its
     * centre tap only: conv_taps makes it 1x1 first, and the block fuses */
    pass_case(3, false, 1);
    bad_input();
    return test_summary("test_se_block");
}
