/* test_concat_sb.c: kiln.ConcatScaleBias (src/cpu/ops/scale_bias.c) and the fuse_concat_sb
 * pass that writes it (src/opt/pass_fuse_concat_sb.c).
 *
 *   - The op against Concat(axis = last) then kiln.ScaleBias, both in one model run with 1, 2
 *     and 3 threads, bit for bit (the same products, sums and activation): pieces sliced from
 *     the input with odd channel counts (1, 17, 33, a whole 40) and the input itself, a single
 *     piece, images of 1x1 up to 30x20 (split over the threads by rows), batch 1 and 2, no
 *     activation, Relu, Clip(0, 6) and Sigmoid.
 *   - The pass on an NCHW DenseNet-style model (Conv, Concat of the Conv's input and output,
 *     BatchNormalization, Relu, Conv), extended level with kiln ops: one kiln.ConcatScaleBias,
 *     no Concat left, outputs within 1e-5 + 1e-4 |a| of the unoptimized model's (the NHWC
 *     convolutions sum in another order); the Concat's output also read by another node: no
 *     fusion; a Concat on an axis other than the channels: no fusion.
 *   - Bad input: pieces whose leading dims differ, and S of the wrong length, fail with a
 *     message naming the op and what was expected.
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

#define tf model_text_add

static const char *const acts[] = {NULL, "Relu", "Clip", "Sigmoid"};

static void act_attr(int a)
{
    if (!acts[a]) return;
    tf(" activation=string:%s", acts[a]);
    if (!strcmp(acts[a], "Clip")) tf(" activation_params=floats:0,6");
}

/* Input X [N, H, W, 40]; pieces: 1 piece (X) or 5 (slices of 1, 17, 33 channels, X, a slice
 * of 1 again). */
static void op_case(int64_t N, int64_t H, int64_t W, bool many, int a)
{
    const int64_t C0 = 40, C = many ? 1 + 17 + 33 + 40 + 1 : 40;
    model_text_reset();
    tf("opset 17 kiln\ninput X f32 %lld,%lld,%lld,%lld\noutput R\noutput Y\n", (long long)N, (long long)H,
       (long long)W, (long long)C0);
    tf("init S f32 %lld rand\ninit B f32 %lld rand\n", (long long)C, (long long)C);
    const char *pieces = "X";
    if (many) {
        tf("init ax i64 1 = 3\n"
           "init s0 i64 1 = 0\ninit e0 i64 1 = 1\ninit s1 i64 1 = 2\ninit e1 i64 1 = 19\n"
           "init s2 i64 1 = 5\ninit e2 i64 1 = 38\ninit s3 i64 1 = 39\ninit e3 i64 1 = 40\n"
           "node Slice X,s0,e0,ax -> p0\nnode Slice X,s1,e1,ax -> p1\nnode Slice X,s2,e2,ax -> p2\n"
           "node Slice X,s3,e3,ax -> p3\n");
        pieces = "p0,p1,p2,X,p3";
    }
    tf("node Concat %s -> cat axis=int:3\nnode kiln.ScaleBias cat,S,B -> R", pieces);
    act_attr(a);
    tf("\nnode kiln.ConcatScaleBias S,B,%s -> Y", pieces);
    act_attr(a);
    tf("\n");
    int64_t d[4] = {N, H, W, C0};
    size_t n = (size_t)(N * H * W * C0);
    float *x = malloc((n + 1) * sizeof *x);
    if (!x) exit(1);
    for (size_t i = 0; i < n; i++) x[i] = 8 * rng_f32();
    for (int t = 1; t <= 3; t++) {
        char what[160];
        snprintf(what, sizeof what, "ConcatScaleBias %lldx%lldx%lld, %s, %s, %d threads", (long long)N,
                 (long long)H, (long long)W, many ? "5 pieces" : "1 piece", acts[a] ? acts[a] : "no act", t);
        kiln_value *out[2];
        if (model_text_run_x(x, d, t, out, false, NULL, 0, what)) {
            size_t nr = kiln_value_numel(out[0]), ny = kiln_value_numel(out[1]);
            CHECK(nr == (size_t)(N * H * W * C) && ny == nr, "%s: %zu and %zu elements, expected %lld", what, nr,
                  ny, (long long)(N * H * W * C));
            if (ny == nr)
                CHECK(!memcmp(kiln_value_data(out[0]), kiln_value_data(out[1]), nr * sizeof(float)),
                      "%s: not bit for bit the unfused result", what);
            kiln_value_free(out[0]);
            kiln_value_free(out[1]);
        }
    }
    free(x);
}

static void op_cases(void)
{
    op_case(1, 1, 1, true, 1);
    op_case(1, 1, 1, false, 0);
    op_case(2, 30, 20, true, 2);
    op_case(1, 7, 3, true, 3);
    op_case(1, 56, 4, false, 1);
    for (int i = 0; i < 6; i++) op_case(1 + rng_int(2), 1 + rng_int(16), 1 + rng_int(16), rng_int(3) != 0, rng_int(4));
}

/* ------------------------------------------------------------------ the pass */

/* kind 0: fuses; 1: the Concat's output read twice; 2: Concat on the height axis. */
static void pass_case(int kind)
{
    static const char *const names[] = {"dense layer", "concat read twice", "concat on H"};
    const char *what = names[kind];
    model_text_reset();
    tf("opset 17\ninput X f32 1,8,12,10\noutput y\n");
    tf("init w0 f32 16,8,3,3 rand\ninit b0 f32 16 rand\n"
       "node Conv X,w0,b0 -> c0 pads=ints:1,1,1,1\nnode Relu c0 -> a0\n"
       "init w1 f32 %d,16,3,3 rand\nnode Conv a0,w1 -> c1 pads=ints:1,1,1,1\n", kind == 2 ? 16 : 8);
    tf("node Concat a0,c1 -> cat axis=int:%d\n", kind == 2 ? 2 : 1);
    int64_t cc = kind == 2 ? 16 : 24;
    tf("init g f32 %lld pos\ninit bb f32 %lld rand\ninit mu f32 %lld rand\ninit var f32 %lld pos\n",
       (long long)cc, (long long)cc, (long long)cc, (long long)cc);
    tf("node BatchNormalization cat,g,bb,mu,var -> bn\nnode Relu bn -> r\n");
    tf("init w2 f32 12,%lld,1,1 rand\nnode Conv r,w2 -> c2\n", (long long)cc);
    if (kind == 1)
        tf("init w3 f32 12,24,1,1 rand\nnode Conv cat,w3 -> c3\nnode Add c2,c3 -> s\nnode GlobalAveragePool s -> gp\n");
    else
        tf("node GlobalAveragePool c2 -> gp\n");
    tf("node Flatten gp -> y\n");
    int64_t d[4] = {1, 8, 12, 10};
    float x[960];
    for (size_t i = 0; i < 960; i++) x[i] = 2 * rng_f32();
    kiln_model *m = optimized_matches(x, d, 12, 1e-5, 1e-4, what);
    if (!m) return;
    size_t csb = model_count_op(m, "kiln", "ConcatScaleBias"), cat = model_count_op(m, "", "Concat");
    if (kind == 0)
        CHECK(csb == 1 && cat == 0, "%s: %zu ConcatScaleBias and %zu Concat, expected 1 and 0", what, csb, cat);
    else
        CHECK(csb == 0 && cat == 1, "%s: %zu ConcatScaleBias and %zu Concat, expected 0 and 1", what, csb, cat);
    kiln_model_free(m);
}

/* ------------------------------------------------------------------ bad input */

static void bad_case(const char *text, const char *want, const char *what)
{
    char msg[1024];
    kiln_value *out[2] = {NULL, NULL};
    float x[2 * 4 * 3 * 3] = {0};
    int64_t d[4] = {2, 3, 3, 4};
    model_text_reset();
    tf("%s", text);
    bool ok = model_text_run_x(x, d, 1, out, true, msg, sizeof msg, what);
    CHECK(!ok && strstr(msg, "ConcatScaleBias") && strstr(msg, want), "%s: ok %d, '%s'", what, ok, msg);
    kiln_value_free(out[0]);
    kiln_value_free(out[1]);
}

static void bad_input(void)
{
    bad_case("opset 17 kiln\ninput X f32 2,3,3,4\noutput R\noutput Y\n"
             "init S f32 8 rand\ninit B f32 8 rand\ninit P f32 1,3,3,4 rand\n"
             "node Relu X -> R\nnode kiln.ConcatScaleBias S,B,X,P -> Y\n",
             "but for the last dim", "pieces of different batch");
    bad_case("opset 17 kiln\ninput X f32 2,3,3,4\noutput R\noutput Y\n"
             "init S f32 7 rand\ninit B f32 7 rand\n"
             "node Relu X -> R\nnode kiln.ConcatScaleBias S,B,X,X -> Y\n",
             "total last dim 8", "S of 7 for 8 channels");
}

int main(void)
{
    rng_seed(1618);
    op_cases();
    pass_case(0);
    pass_case(1);
    pass_case(2);
    bad_input();
    return test_summary("test_concat_sb");
}
