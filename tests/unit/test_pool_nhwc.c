/* test_pool_nhwc.c: the kiln ops of the NHWC pass other than ConvNhwc: the channels-last
 * pools, the channel shuffle and ScaleBias (src/cpu/ops/pool_nhwc.c, src/cpu/isa/pool_nhwc.c,
 * src/cpu/ops/shuffle.c, src/cpu/ops/scale_bias.c).
 *
 * Each case is one model in the text form of support/test_text_model.h, run through
 * kiln_session (no optimization) with 1, 2 and 3 threads: the reference NCHW op on X and the
 * kiln op on Transpose(X, 0,2,3,1), both graph outputs.
 *   - kiln.MaxPoolNhwc / AveragePoolNhwc against MaxPool / AveragePool (opset 19) on random,
 *     odd and tiny shapes (1x1 images, one channel, channel counts that are no multiple of a
 *     vector), kernels 1..4, strides 1..3, dilations 1..2, asymmetric pads, every auto_pad,
 *     ceil_mode, count_include_pad, global windows. MaxPool inputs hold NaN and -inf
 *     (sometimes whole
 *     windows of NaN). MaxPool must match bit for bit; AveragePool within
 *     1e-6 * (1 + |want|) (both sum float32 in the same order, so it matches exactly today;
 *     the tolerance allows for the NCHW kernel's generic double walk);
 *   - kiln.ChannelShuffle, axis 1 against Reshape -> Transpose(0,2,1,3,4) -> Reshape and
 *     axis -1 on NHWC data against the same permuted, bit for bit (groups 1..4, any C they
 *     divide);
 *   - kiln.ShuffleSplit against Concat -> ChannelShuffle(group 2) -> two half Slices, bit for
 *     bit (G even and odd);
 *   - kiln.ScaleBias against Mul -> Add -> Relu / LeakyRelu / Clip / nothing, bit for bit, on
 *     random and tiny shapes;
 *   - bad input: a group that does not divide C, an X of rank 3, fail with a message.
 * ctest also runs it with KILN_CPU_ISA=portable and =avx2 (tests/tests.cmake), so each
 * compiled row kernel is checked.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln.h"
#include "test_support.h"
#include "test_text_model.h"

#define AVG_TOL 1e-6

/* The model text being built (support/test_text_model.h). */
#define tf model_text_add

struct pcase {
    bool max;
    int64_t N, C, H, W, k[2], s[2], d[2], p[4];
    int auto_pad, ceil_mode, include_pad, nan_rate;
};

static int64_t span(const struct pcase *c, int i) { return (c->k[i] - 1) * c->d[i] + 1; }

/* A window that fits the padded input along both dims (the pool's own requirement). */
static bool pcase_ok(const struct pcase *c)
{
    int64_t in[2] = {c->H, c->W};
    for (int i = 0; i < 2; i++) {
        int64_t padded = c->auto_pad == 0 ? in[i] + c->p[i] + c->p[2 + i] : in[i];
        if (c->auto_pad == 0 || c->auto_pad == 3) {
            if (span(c, i) > padded) return false;
        }
    }
    return true;
}

static void pool_case(const struct pcase *c, const char *what)
{
    static const char *const aps[] = {"NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"};
    char attrs[512];
    int len = snprintf(attrs, sizeof attrs, "kernel_shape=ints:%lld,%lld strides=ints:%lld,%lld "
                       "dilations=ints:%lld,%lld ceil_mode=int:%d",
                       (long long)c->k[0], (long long)c->k[1], (long long)c->s[0], (long long)c->s[1],
                       (long long)c->d[0], (long long)c->d[1], c->ceil_mode);
    if (c->auto_pad)
        len += snprintf(attrs + len, sizeof attrs - (size_t)len, " auto_pad=string:%s", aps[c->auto_pad]);
    else
        len += snprintf(attrs + len, sizeof attrs - (size_t)len, " pads=ints:%lld,%lld,%lld,%lld",
                        (long long)c->p[0], (long long)c->p[1], (long long)c->p[2], (long long)c->p[3]);
    if (!c->max)
        snprintf(attrs + len, sizeof attrs - (size_t)len, " count_include_pad=int:%d", c->include_pad);
    const char *op = c->max ? "MaxPool" : "AveragePool";
    model_text_reset();
    tf("opset 19 kiln\ninput X f32 %lld,%lld,%lld,%lld\noutput R\noutput Y\n", (long long)c->N,
       (long long)c->C, (long long)c->H, (long long)c->W);
    tf("node %s X -> R %s\n", op, attrs);
    tf("node Transpose X -> XT perm=ints:0,2,3,1\n");
    tf("node kiln.%sNhwc XT -> Y %s\n", op, attrs);
    int64_t d[4] = {c->N, c->C, c->H, c->W};
    size_t n = (size_t)(c->N * c->C * c->H * c->W);
    float *x = malloc((n + 1) * sizeof *x);
    if (!x) exit(1);
    for (size_t i = 0; i < n; i++) {
        x[i] = (float)(rng_int(33) - 16) / 16.0f;
        if (c->nan_rate && rng_int(100) < c->nan_rate) x[i] = rng_int(4) ? NAN : -INFINITY;
    }
    for (int t = 1; t <= 3; t++) {
        char w2[400];
        snprintf(w2, sizeof w2, "%s, %d threads", what, t);
        kiln_value *out[2];
        if (model_text_run_x(x, d, t, out, false, NULL, 0, w2)) nhwc_equal(out[0], out[1], c->max ? -1 : AVG_TOL, w2);
        kiln_value_free(out[0]);
        kiln_value_free(out[1]);
    }
    free(x);
}

static void describe(const struct pcase *c, char *buf, size_t size)
{
    snprintf(buf, size,
             "%s X %lld,%lld,%lld,%lld k %lld,%lld s %lld,%lld d %lld,%lld p %lld,%lld,%lld,%lld "
             "auto_pad %d ceil %d include_pad %d nan %d%%",
             c->max ? "MaxPool" : "AveragePool", (long long)c->N, (long long)c->C, (long long)c->H,
             (long long)c->W, (long long)c->k[0], (long long)c->k[1], (long long)c->s[0], (long long)c->s[1],
             (long long)c->d[0], (long long)c->d[1], (long long)c->p[0], (long long)c->p[1],
             (long long)c->p[2], (long long)c->p[3], c->auto_pad, c->ceil_mode, c->include_pad, c->nan_rate);
}

static void random_pools(int count)
{
    static const int64_t CS[] = {1, 2, 3, 5, 8, 16, 17, 24, 33, 64, 70}; /* past 32: the max kernel's blocks of 32 */
    for (int done = 0; done < count;) {
        struct pcase c = {
            .max = rng_int(2) == 0, .N = 1 + rng_int(2), .C = CS[rng_int(11)],
            .H = 1 + rng_int(13), .W = 1 + rng_int(13),
            .k = {1 + rng_int(4), 1 + rng_int(4)}, .s = {1 + rng_int(3), 1 + rng_int(3)},
            .d = {1 + rng_int(2), 1 + rng_int(2)},
            .auto_pad = rng_int(3) ? 0 : rng_int(4), .ceil_mode = rng_int(2), .include_pad = rng_int(2),
        };
        for (int i = 0; i < 4; i++) c.p[i] = rng_int((int)c.k[i % 2]);
        c.nan_rate = c.max ? (rng_int(3) == 0 ? 60 : rng_int(3) == 0 ? 10 : 0) : 0;
        if (!pcase_ok(&c)) continue;
        char what[300];
        describe(&c, what, sizeof what);
        pool_case(&c, what);
        done++;
    }
}

/* The shapes of the models this exists for, and edge cases picked by hand. */
static void fixed_pools(void)
{
    const struct pcase cases[] = {
        /* ShuffleNet / ResNet stem: 3x3 s2 p1 over 112x112; DenseNet transition 2x2 s2. */
        {true, 1, 24, 112, 112, {3, 3}, {2, 2}, {1, 1}, {1, 1, 1, 1}, 0, 0, 0, 0},
        {false, 1, 128, 28, 28, {2, 2}, {2, 2}, {1, 1}, {0, 0, 0, 0}, 0, 0, 0, 0},
        /* A 1x1 image, one channel, a 1x1 window. */
        {true, 1, 1, 1, 1, {1, 1}, {1, 1}, {1, 1}, {0, 0, 0, 0}, 0, 0, 0, 0},
        {false, 1, 1, 1, 1, {1, 1}, {1, 1}, {1, 1}, {0, 0, 0, 0}, 0, 0, 1, 0},
        /* Windows that reach past the end pad in ceil mode; windows all padding. */
        {false, 2, 7, 5, 6, {3, 2}, {2, 3}, {1, 1}, {2, 1, 2, 1}, 0, 1, 1, 0},
        {true, 1, 9, 4, 4, {3, 3}, {1, 1}, {1, 1}, {2, 2, 2, 2}, 0, 1, 0, 0},
        {false, 1, 9, 4, 4, {3, 3}, {1, 1}, {1, 1}, {2, 2, 2, 2}, 0, 0, 0, 0},
        /* Every element NaN, every element -inf. */
        {true, 1, 5, 6, 7, {2, 3}, {1, 2}, {2, 1}, {1, 0, 1, 1}, 0, 0, 0, 100},
        /* SAME_LOWER with dilations, a large odd channel count. */
        {true, 1, 67, 9, 10, {3, 2}, {2, 1}, {2, 2}, {0, 0, 0, 0}, 2, 0, 0, 5},
        {false, 1, 67, 9, 10, {3, 2}, {2, 1}, {2, 2}, {0, 0, 0, 0}, 1, 0, 1, 0},
        /* Global pools (the NHWC pass's GlobalAveragePool / GlobalMaxPool): one window of
         * the whole image, fewer images than threads, C not a multiple of a vector. */
        {false, 1, 100, 28, 28, {28, 28}, {1, 1}, {1, 1}, {0, 0, 0, 0}, 0, 0, 0, 0},
        {true, 1, 100, 28, 28, {28, 28}, {1, 1}, {1, 1}, {0, 0, 0, 0}, 0, 0, 0, 3},
        {false, 2, 48, 40, 40, {40, 40}, {1, 1}, {1, 1}, {0, 0, 0, 0}, 0, 0, 0, 0},
        {false, 1, 33, 50, 50, {50, 50}, {1, 1}, {1, 1}, {0, 0, 0, 0}, 0, 0, 0, 0},
        {true, 1, 33, 50, 50, {50, 50}, {1, 1}, {1, 1}, {0, 0, 0, 0}, 0, 0, 0, 100},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char what[300];
        describe(&cases[i], what, sizeof what);
        pool_case(&cases[i], what);
    }
}

/* ------------------------------------------------------------------ ChannelShuffle */

static void shuffle_case(int64_t N, int64_t g, int64_t per, int64_t H, int64_t W)
{
    int64_t C = g * per;
    model_text_reset();
    tf("opset 17 kiln\ninput X f32 %lld,%lld,%lld,%lld\noutput R\noutput Y\n", (long long)N,
       (long long)C, (long long)H, (long long)W);
    tf("init s5 i64 5 = %lld,%lld,%lld,%lld,%lld\n", (long long)N, (long long)g, (long long)per,
       (long long)H, (long long)W);
    tf("init s4 i64 4 = %lld,%lld,%lld,%lld\n", (long long)N, (long long)C, (long long)H, (long long)W);
    tf("node Reshape X,s5 -> a\nnode Transpose a -> b perm=ints:0,2,1,3,4\nnode Reshape b,s4 -> R\n");
    tf("node Transpose X -> XT perm=ints:0,2,3,1\n");
    tf("node kiln.ChannelShuffle XT -> Y group=int:%lld axis=int:-1\n", (long long)g);
    int64_t d[4] = {N, C, H, W};
    size_t n = (size_t)(N * C * H * W);
    float *x = malloc((n + 1) * sizeof *x);
    if (!x) exit(1);
    for (size_t i = 0; i < n; i++) x[i] = rng_f32();
    char what[200];
    for (int t = 1; t <= 3; t++) {
        snprintf(what, sizeof what, "ChannelShuffle N %lld group %lld C %lld %lldx%lld, %d threads",
                 (long long)N, (long long)g, (long long)C, (long long)H, (long long)W, t);
        kiln_value *out[2];
        if (model_text_run_x(x, d, t, out, false, NULL, 0, what)) nhwc_equal(out[0], out[1], -1, what);
        kiln_value_free(out[0]);
        kiln_value_free(out[1]);
    }
    /* Axis 1 against the reference, same layout. */
    model_text_reset();
    tf("opset 17 kiln\ninput X f32 %lld,%lld,%lld,%lld\noutput R\noutput Z\n", (long long)N, (long long)C,
       (long long)H, (long long)W);
    tf("init s5 i64 5 = %lld,%lld,%lld,%lld,%lld\n", (long long)N, (long long)g, (long long)per,
       (long long)H, (long long)W);
    tf("init s4 i64 4 = %lld,%lld,%lld,%lld\n", (long long)N, (long long)C, (long long)H, (long long)W);
    tf("node Reshape X,s5 -> a\nnode Transpose a -> b perm=ints:0,2,1,3,4\nnode Reshape b,s4 -> R\n");
    tf("node kiln.ChannelShuffle X -> Z group=int:%lld axis=int:1\n", (long long)g);
    kiln_value *out[2];
    snprintf(what, sizeof what, "ChannelShuffle axis 1, group %lld C %lld", (long long)g, (long long)C);
    if (model_text_run_x(x, d, 2, out, false, NULL, 0, what))
        CHECK(kiln_value_numel(out[0]) == kiln_value_numel(out[1]) &&
                  !memcmp(kiln_value_data(out[0]), kiln_value_data(out[1]), n * sizeof(float)),
              "%s: differs from Reshape/Transpose/Reshape", what);
    kiln_value_free(out[0]);
    kiln_value_free(out[1]);
    free(x);
}

/* kiln.ShuffleSplit(A, B) against Concat(A, B) -> ChannelShuffle(group 2) -> Slices [0, G)
 * and [G, 2G) on the last axis, bit for bit (G even and odd). */
static void shuffle_split_case(int64_t N, int64_t H, int64_t W, int64_t G)
{
    model_text_reset();
    tf("opset 17 kiln\ninput X f32 %lld,%lld,%lld,%lld\noutput R1\noutput R2\noutput Y1\noutput Y2\n",
       (long long)N, (long long)H, (long long)W, (long long)(2 * G));
    tf("init z i64 1 = 0\ninit g i64 1 = %lld\ninit g2 i64 1 = %lld\ninit ax i64 1 = -1\n", (long long)G,
       (long long)(2 * G));
    /* A and B: the two halves of X, negated for B so that they differ. */
    tf("node Slice X,z,g,ax -> A\nnode Slice X,g,g2,ax -> Bp\nnode Neg Bp -> B\n");
    tf("node Concat A,B -> c axis=int:3\nnode kiln.ChannelShuffle c -> s group=int:2 axis=int:3\n");
    tf("node Slice s,z,g,ax -> R1\nnode Slice s,g,g2,ax -> R2\n");
    tf("node kiln.ShuffleSplit A,B -> Y1,Y2\n");
    struct buf mb = {0};
    parse_model(model_text(), &mb);
    int64_t d[4] = {N, H, W, 2 * G};
    size_t n = (size_t)(N * H * W * 2 * G), half = n / 2;
    float *x = malloc((n + 1) * sizeof *x);
    if (!x) exit(1);
    for (size_t i = 0; i < n; i++) x[i] = rng_f32();
    char what[200];
    snprintf(what, sizeof what, "ShuffleSplit %lldx%lldx%lld G %lld", (long long)N, (long long)H, (long long)W,
             (long long)G);
    for (int t = 1; t <= 3; t++) {
        kiln_model *m = NULL;
        kiln_session *se = NULL;
        kiln_err e = {0};
        kiln_session_options o = {.threads = t};
        kiln_value *in = tensor_of(KILN_DTYPE_F32, 4, d, x), *out[4] = {0};
        const char *names[1] = {"X"};
        kiln_status st = kiln_model_load_buffer(mb.p, mb.len, NULL, &m, &e);
        if (!st) st = kiln_session_create(m, &o, &se, &e);
        if (!st) st = kiln_session_run(se, 1, names, (const kiln_value *const *)&in, 4, out, &e);
        CHECK(st == KILN_OK, "%s: %s", what, e.msg);
        if (!st)
            for (int k = 0; k < 2; k++)
                CHECK(kiln_value_numel(out[2 + k]) == half && kiln_value_numel(out[k]) == half &&
                          !memcmp(kiln_value_data(out[k]), kiln_value_data(out[2 + k]), half * sizeof(float)),
                      "%s, %d threads: Y%d differs from Concat -> shuffle -> Slice", what, t, k + 1);
        free_all(out, 4);
        kiln_value_free(in);
        kiln_session_free(se);
        kiln_model_free(m);
    }
    free(mb.p);
    free(x);
}

static void shuffles(void)
{
    shuffle_split_case(1, 28, 28, 58); /* ShuffleNetV2 stage 2 */
    shuffle_split_case(1, 1, 1, 1);
    shuffle_split_case(2, 3, 2, 7);
    for (int i = 0; i < 6; i++) shuffle_split_case(1 + rng_int(2), 1 + rng_int(5), 1 + rng_int(5), 1 + rng_int(40));
    shuffle_case(1, 2, 58, 28, 28); /* ShuffleNetV2 stage 2 */
    shuffle_case(1, 1, 3, 2, 2);
    shuffle_case(2, 3, 5, 3, 1);
    shuffle_case(1, 4, 1, 1, 1);
    for (int i = 0; i < 10; i++)
        shuffle_case(1 + rng_int(2), 1 + rng_int(4), 1 + rng_int(9), 1 + rng_int(6), 1 + rng_int(6));
}

/* ------------------------------------------------------------------ ScaleBias */

/* kiln.ScaleBias(X, S, B) with activation `act` (attrs as written) against Mul -> Add ->
 * the activation op (`op`, NULL for none), bit for bit. */
static void scale_bias_case(int64_t N, int64_t H, int64_t W, int64_t C, const char *op, const char *op_attrs,
                            const char *act_attrs)
{
    model_text_reset();
    tf("opset 17 kiln\ninput X f32 %lld,%lld,%lld,%lld\noutput R\noutput Y\n", (long long)N, (long long)H,
       (long long)W, (long long)C);
    tf("init S f32 %lld rand\ninit B f32 %lld rand\n", (long long)C, (long long)C);
    tf("node Mul X,S -> m\nnode Add m,B -> %s\n", op ? "a" : "R");
    if (op) tf("node %s a -> R %s\n", op, op_attrs);
    tf("node kiln.ScaleBias X,S,B -> Y %s\n", act_attrs);
    int64_t d[4] = {N, H, W, C};
    size_t n = (size_t)(N * H * W * C);
    float *x = malloc((n + 1) * sizeof *x);
    if (!x) exit(1);
    for (size_t i = 0; i < n; i++) x[i] = 4 * rng_f32();
    for (int t = 1; t <= 3; t++) {
        char what[200];
        snprintf(what, sizeof what, "ScaleBias %lldx%lldx%lldx%lld %s, %d threads", (long long)N, (long long)H,
                 (long long)W, (long long)C, op ? op : "(none)", t);
        kiln_value *out[2];
        if (model_text_run_x(x, d, t, out, false, NULL, 0, what))
            CHECK(kiln_value_numel(out[1]) == n &&
                      !memcmp(kiln_value_data(out[0]), kiln_value_data(out[1]), n * sizeof(float)),
                  "%s: differs from Mul -> Add -> activation", what);
        kiln_value_free(out[0]);
        kiln_value_free(out[1]);
    }
    free(x);
}

static void scale_bias(void)
{
    scale_bias_case(1, 56, 56, 64, "Relu", "", "activation=string:Relu"); /* DenseNet block 1 */
    scale_bias_case(1, 1, 1, 1, "Relu", "", "activation=string:Relu");
    scale_bias_case(2, 3, 5, 17, NULL, "", "");
    scale_bias_case(1, 7, 3, 33, "LeakyRelu", "alpha=float:0.25",
                    "activation=string:LeakyRelu activation_params=floats:0.25");
    scale_bias_case(1, 4, 4, 100, "Clip", "", "activation=string:Clip");
    for (int i = 0; i < 6; i++)
        scale_bias_case(1 + rng_int(2), 1 + rng_int(9), 1 + rng_int(9), 1 + rng_int(70), "Relu", "",
                        "activation=string:Relu");
}

/* ------------------------------------------------------------------ bad input */

static void bad_input(void)
{
    char msg[1024];
    kiln_value *out[2];
    float x[4 * 3 * 3] = {0};
    int64_t d[4] = {1, 4, 3, 3};
    model_text_reset();
    tf("opset 17 kiln\ninput X f32 1,4,3,3\noutput R\noutput Y\n"
       "node Relu X -> R\nnode kiln.ChannelShuffle X -> Y group=int:3\n");
    bool ok = model_text_run_x(x, d, 1, out, true, msg, sizeof msg, "bad group");
    CHECK(!ok && strstr(msg, "ChannelShuffle") && strstr(msg, "does not divide"),
          "group 3 of 4 channels: ok %d, '%s'", ok, msg);
    kiln_value_free(out[0]);
    kiln_value_free(out[1]);
    /* A rank-3 X (the model declares none, so the check is the kernel's). */
    model_text_reset();
    tf("opset 17 kiln\ninput X f32 1,4,3,3\noutput R\noutput Y\n"
       "init s i64 3 = 4,3,3\nnode Reshape X,s -> R\n"
       "node kiln.MaxPoolNhwc R -> Y kernel_shape=ints:2,2\n");
    ok = model_text_run_x(x, d, 1, out, true, msg, sizeof msg, "rank 3");
    CHECK(!ok && strstr(msg, "MaxPoolNhwc") && (strstr(msg, "rank 3") || strstr(msg, "3 dims")),
          "MaxPoolNhwc of rank 3: ok %d, '%s'", ok, msg);
    kiln_value_free(out[0]);
    kiln_value_free(out[1]);
}

int main(void)
{
    rng_seed(7171);
    fixed_pools();
    random_pools(150);
    shuffles();
    scale_bias();
    bad_input();
    return test_summary("test_pool_nhwc");
}
