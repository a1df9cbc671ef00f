/* test_opt_extended.c: the extended optimizer passes (src/opt/pass_fuse_*.c,
 * pass_push_transpose.c) on small models written here, run on real data.
 *
 * Each case is a model in the small text form of support/test_text_model.h, encoded as
 * ModelProto bytes and loaded. The case runs the model on seeded random inputs, optimizes a second copy with
 * the pass list under test (level extended, kiln ops allowed unless the case says not), and
 * checks that
 *   - the optimized model passes kiln_model_check (every new node is well-formed),
 *   - its op histogram is what the fusion should give ("Conv=0 kiln.FusedConv=1"),
 *   - its outputs equal the original's within |a - b| <= tol * (1 + |b|) (tol per case,
 *     1e-5 for folds that only re-round weights, 1e-4 where a fused kernel computes in
 *     another order: normalizations in double, softmax with another exp),
 *   - optimizing it again changes nothing (a fixed point).
 * Negative cases check that a pattern that must not fuse (a value used twice, a
 * non-constant weight, a broadcasting residual, kiln ops not allowed) is left alone.
 *
 * With arguments, `test_opt_extended MODEL.onnx...` instead loads each model, optimizes it
 * at the extended level and prints node counts and op histograms before and after and the
 * largest output difference on random inputs (the figures of docs/optimizer.md).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/base.h"
#include "kiln.h"
#include "test_support.h"
#include "test_text_model.h"

/* ------------------------------------------------------------------ running */

struct run {
    size_t n_out;
    kiln_value *out[8];
};

/* Random inputs for m (float32 in [-1, 1]; int64 in [0, 100)), the same for every call
 * with the same seed. */
static size_t make_inputs(const kiln_model *m, uint64_t seed, kiln_value **in)
{
    size_t n = kiln_model_input_count(m);
    rng_seed(seed);
    for (size_t i = 0; i < n && i < 8; i++) {
        int rank = kiln_model_input_rank(m, i);
        int64_t dims[16];
        for (int d = 0; d < rank; d++) {
            dims[d] = kiln_model_input_dim(m, i, d, NULL);
            if (dims[d] < 0) dims[d] = 3; /* symbolic: any size binds */
        }
        kiln_dtype dt = kiln_model_input_dtype(m, i);
        kiln_err e;
        if (kiln_value_create_tensor(dt, rank, dims, &in[i], &e)) exit(1);
        size_t k = kiln_value_numel(in[i]);
        if (dt == KILN_DTYPE_F32)
            for (size_t j = 0; j < k; j++) ((float *)kiln_value_data(in[i]))[j] = rng_f32();
        else
            for (size_t j = 0; j < k; j++) ((int64_t *)kiln_value_data(in[i]))[j] = rng_int(100);
    }
    return n;
}

/* Runs m on the inputs of `seed`; false (a test failure) when it fails. */
static bool run_model(const kiln_model *m, uint64_t seed, struct run *r, const char *what)
{
    kiln_value *in[8] = {0};
    size_t n_in = make_inputs(m, seed, in);
    kiln_session *s = NULL;
    kiln_err e = {0};
    r->n_out = kiln_model_output_count(m);
    kiln_status st = kiln_session_create(m, NULL, &s, &e);
    if (!st) st = kiln_session_run(s, n_in, NULL, (const kiln_value *const *)in, r->n_out, r->out, &e);
    CHECK(st == KILN_OK, "%s: run failed: %s", what, e.msg);
    kiln_session_free(s);
    for (size_t i = 0; i < n_in; i++) kiln_value_free(in[i]);
    return st == KILN_OK;
}

static void free_run(struct run *r)
{
    for (size_t i = 0; i < r->n_out; i++) kiln_value_free(r->out[i]);
    r->n_out = 0;
}

/* Largest |a - b| / (1 + |b|) over the float32 outputs; -1 when shapes differ. */
static double max_diff(struct run *a, struct run *b)
{
    double worst = 0;
    for (size_t i = 0; i < a->n_out; i++) {
        size_t n = kiln_value_numel(a->out[i]);
        if (n != kiln_value_numel(b->out[i]) ||
            kiln_value_rank(a->out[i]) != kiln_value_rank(b->out[i]) ||
            memcmp(kiln_value_dims(a->out[i]), kiln_value_dims(b->out[i]),
                   (size_t)kiln_value_rank(a->out[i]) * sizeof(int64_t)))
            return -1;
        if (kiln_value_dtype(a->out[i]) != KILN_DTYPE_F32) continue;
        const float *x = kiln_value_data(a->out[i]), *y = kiln_value_data(b->out[i]);
        for (size_t j = 0; j < n; j++) {
            double d = fabs((double)x[j] - y[j]) / (1 + fabs((double)y[j]));
            if (!(d <= worst)) worst = isnan(d) ? INFINITY : d;
        }
    }
    return worst;
}

/* Count of main-graph nodes of "op" or "domain.op". */
static size_t count_op(const kiln_model *m, const char *spec)
{
    const char *dot = strchr(spec, '.');
    size_t c = 0;
    for (size_t i = 0; i < kiln_model_node_count(m); i++) {
        const char *name, *op, *dom;
        kiln_model_node(m, i, &name, &op, &dom);
        dom = dom ? dom : "";
        if (dot ? (strlen(dom) == (size_t)(dot - spec) && !strncmp(dom, spec, (size_t)(dot - spec)) &&
                   !strcmp(op, dot + 1))
                : (!dom[0] && !strcmp(op, spec)))
            c++;
    }
    return c;
}

static void print_problem(void *user, const char *msg)
{
    printf("  problem (%s): %s\n", (const char *)user, msg);
}

static kiln_status optimize(kiln_model *m, const char *passes, bool keep_fused, kiln_err *e)
{
    kiln_optimize_options opt = {.level = KILN_OPT_EXTENDED, .passes = passes,
                                 .keep_fused = keep_fused};
    return kiln_model_optimize(m, &opt, e);
}

/* The case runner: see the top of the file. expect: "Op=N kiln.Op=N ...". */
static void check_case(const char *what, const char *text, const char *passes, bool keep_fused,
                       const char *expect, double tol)
{
    struct buf b;
    parse_model(text, &b);
    kiln_model *m0 = NULL, *m1 = NULL;
    kiln_err e = {0};
    kiln_status st = kiln_model_load_buffer(b.p, b.len, NULL, &m0, &e);
    if (!st) st = kiln_model_load_buffer(b.p, b.len, NULL, &m1, &e);
    free(b.p);
    CHECK(st == KILN_OK, "%s: load: %s", what, e.msg);
    if (st) goto out;
    CHECK(kiln_model_check(m0, print_problem, (void *)what) == 0, "%s: the test model is invalid", what);
    st = optimize(m1, passes, keep_fused, &e);
    CHECK(st == KILN_OK, "%s: optimize: %s", what, e.msg);
    if (st) goto out;
    CHECK(kiln_model_check(m1, print_problem, (void *)what) == 0, "%s: optimized model invalid", what);
    char ex[512];
    snprintf(ex, sizeof ex, "%s", expect);
    char *items[32];
    size_t ni = split(ex, " ", items, 32);
    for (size_t i = 0; i < ni; i++) {
        char *eq = strchr(items[i], '=');
        if (!eq) continue;
        *eq = 0;
        size_t want = (size_t)strtoul(eq + 1, NULL, 10), got = count_op(m1, items[i]);
        CHECK(got == want, "%s: %zu %s nodes after %s; expected %zu", what, got, items[i], passes,
              want);
    }
    struct run r0 = {0}, r1 = {0};
    if (run_model(m0, 77, &r0, what) && run_model(m1, 77, &r1, what)) {
        double d = max_diff(&r1, &r0);
        CHECK(d >= 0 && d <= tol, "%s: outputs differ after %s by %.3g (tolerance %.1g)", what,
              passes, d, tol);
    }
    free_run(&r0);
    free_run(&r1);
    size_t before = kiln_model_node_count(m1);
    st = optimize(m1, passes, keep_fused, &e);
    CHECK(st == KILN_OK && kiln_model_node_count(m1) == before, "%s: a second run changed the graph",
          what);
out:
    kiln_model_free(m0);
    kiln_model_free(m1);
}

/* ------------------------------------------------------------------ BatchNormalization */

static void test_fuse_bn(void)
{
    check_case("Conv+BN", "opset 13\ninput x f32 2,3,7,6\ninit w f32 4,3,3,3 rand\n"
               "init b f32 4 rand\ninit s f32 4 rand\ninit t f32 4 rand\ninit mu f32 4 rand\n"
               "init var f32 4 pos\nnode Conv x,w,b -> c pads=ints:1,0,1,2 strides=ints:2,1\n"
               "node BatchNormalization c,s,t,mu,var -> y epsilon=float:0.001\noutput y\n",
               "fuse_bn,dce", false, "Conv=1 BatchNormalization=0", 1e-5);
    check_case("grouped Conv (no bias)+BN", "opset 9\ninput x f32 1,4,5,5\ninit w f32 6,2,3,3 rand\n"
               "init s f32 6 rand\ninit t f32 6 rand\ninit mu f32 6 rand\ninit var f32 6 pos\n"
               "node Conv x,w -> c group=int:2\nnode BatchNormalization c,s,t,mu,var -> y\noutput y\n",
               "fuse_bn,dce", false, "Conv=1 BatchNormalization=0", 1e-5);
    check_case("ConvTranspose+BN", "opset 13\ninput x f32 1,4,3,3\ninit w f32 4,3,3,3 rand\n"
               "init s f32 6 rand\ninit t f32 6 rand\ninit mu f32 6 rand\ninit var f32 6 pos\n"
               "node ConvTranspose x,w -> c group=int:2 strides=ints:2,2\n"
               "node BatchNormalization c,s,t,mu,var -> y\noutput y\n",
               "fuse_bn,dce", false, "ConvTranspose=1 BatchNormalization=0", 1e-5);
    check_case("ConvTranspose (bias, 1-D, output_padding, dilations)+BN",
               "opset 13\ninput x f32 2,6,5\ninit w f32 6,2,4 rand\ninit b f32 6 rand\n"
               "init s f32 6 rand\ninit t f32 6 rand\ninit mu f32 6 rand\ninit var f32 6 pos\n"
               "node ConvTranspose x,w,b -> c group=int:3 strides=ints:3 dilations=ints:2 "
               "pads=ints:1,2 output_padding=ints:1\n"
               "node BatchNormalization c,s,t,mu,var -> y epsilon=float:0.01\noutput y\n",
               "fuse_bn,dce", false, "ConvTranspose=1 BatchNormalization=0", 1e-5);
    check_case("Gemm+BN", "opset 13\ninput x f32 3,5\ninit w f32 4,5 rand\ninit c f32 4 rand\n"
               "init s f32 4 rand\ninit t f32 4 rand\ninit mu f32 4 rand\ninit var f32 4 pos\n"
               "node Gemm x,w,c -> g transB=int:1 beta=float:0.5 alpha=float:2\n"
               "node BatchNormalization g,s,t,mu,var -> y\noutput y\n",
               "fuse_bn,dce", false, "Gemm=1 BatchNormalization=0", 1e-5);
    check_case("MatMul+BN", "opset 13\ninput x f32 3,5\ninit w f32 5,4 rand\n"
               "init s f32 4 rand\ninit t f32 4 rand\ninit mu f32 4 rand\ninit var f32 4 pos\n"
               "node MatMul x,w -> g\nnode BatchNormalization g,s,t,mu,var -> y\noutput y\n",
               "fuse_bn,dce", false, "Gemm=1 MatMul=0 BatchNormalization=0", 1e-5);
    /* Not folded: the weights are an input; the Conv's output is also a graph output. */
    check_case("Conv(W input)+BN", "opset 13\ninput x f32 1,2,4,4\ninput w f32 2,2,1,1\n"
               "init s f32 2 rand\ninit t f32 2 rand\ninit mu f32 2 rand\ninit var f32 2 pos\n"
               "node Conv x,w -> c\nnode BatchNormalization c,s,t,mu,var -> y\noutput y\n",
               "fuse_bn,dce", false, "Conv=1 BatchNormalization=1", 0);
    check_case("Conv used twice+BN", "opset 13\ninput x f32 1,2,4,4\ninit w f32 2,2,1,1 rand\n"
               "init s f32 2 rand\ninit t f32 2 rand\ninit mu f32 2 rand\ninit var f32 2 pos\n"
               "node Conv x,w -> c\nnode BatchNormalization c,s,t,mu,var -> y\noutput y\noutput c\n",
               "fuse_bn,dce", false, "Conv=1 BatchNormalization=1", 0);
}

/* ------------------------------------------------------------------ activations */

static void test_fuse_activation(void)
{
    static const char *const acts[] = {
        "node Relu c -> y", "node LeakyRelu c -> y alpha=float:0.2", "node Sigmoid c -> y",
        "node Tanh c -> y", "node HardSigmoid c -> y alpha=float:0.3 beta=float:0.4",
        "node HardSwish c -> y", "node Clip c,lo,hi -> y", "node Clip c,_,hi -> y",
        "node Gelu c -> y approximate=string:tanh", "node Sigmoid c -> s\nnode Mul c,s -> y",
    };
    for (size_t i = 0; i < sizeof acts / sizeof acts[0]; i++) {
        char text[1024], what[128];
        snprintf(text, sizeof text,
                 "opset 20\ninput x f32 2,3,6,5\ninit w f32 4,3,3,3 rand\ninit b f32 4 rand\n"
                 "init lo f32 - = 0\ninit hi f32 - = 0.5\nnode Conv x,w,b -> c pads=ints:1,1,1,1\n%s\n"
                 "output y\n", acts[i]);
        snprintf(what, sizeof what, "Conv + %s", acts[i] + 5);
        check_case(what, text, "fuse_activation,dce", true, "Conv=0 kiln.FusedConv=1", 1e-6);
    }
    check_case("Conv + residual Add + Relu",
               "opset 13\ninput x f32 1,4,5,5\ninit w f32 4,4,3,3 rand\ninit w2 f32 4,4,1,1 rand\n"
               "node Conv x,w -> a pads=ints:1,1,1,1\nnode Conv x,w2 -> c\nnode Add a,c -> s\n"
               "node Relu s -> y\noutput y\n",
               "fuse_activation,dce", true, "Conv=1 kiln.FusedConv=1 Add=0 Relu=0", 1e-6);
    for (size_t i = 0; i + 1 < sizeof acts / sizeof acts[0]; i++) {
        char text[1024], what[128];
        snprintf(text, sizeof text,
                 "opset 20\ninput x f32 2,4,3,5\ninit w f32 4,3,4,4 rand\ninit b f32 3 rand\n"
                 "init lo f32 - = 0\ninit hi f32 - = 0.5\n"
                 "node ConvTranspose x,w,b -> c strides=ints:2,2 pads=ints:1,1,1,1\n%s\noutput y\n",
                 acts[i]);
        snprintf(what, sizeof what, "ConvTranspose + %s", acts[i] + 5);
        check_case(what, text, "fuse_activation,dce", true, "ConvTranspose=0 kiln.FusedConvTranspose=1", 1e-6);
    }
    check_case("ConvTranspose + SiLU",
               "opset 13\ninput x f32 1,2,3,3\ninit w f32 2,4,3,3 rand\n"
               "node ConvTranspose x,w -> c group=int:2\nnode Sigmoid c -> s\nnode Mul c,s -> y\noutput y\n",
               "fuse_activation,dce", true, "ConvTranspose=0 Sigmoid=0 Mul=0 kiln.FusedConvTranspose=1", 1e-6);
    /* DCGAN's chain: BatchNormalization folds into the ConvTranspose, the Relu fuses. */
    check_case("ConvTranspose + BN + Relu",
               "opset 13\ninput x f32 1,8,4,4\ninit w f32 8,4,4,4 rand\n"
               "init s f32 4 rand\ninit t f32 4 rand\ninit mu f32 4 rand\ninit var f32 4 pos\n"
               "node ConvTranspose x,w -> c strides=ints:2,2 pads=ints:1,1,1,1\n"
               "node BatchNormalization c,s,t,mu,var -> n\nnode Relu n -> y\noutput y\n",
               "fuse_bn,fuse_activation,dce", true,
               "ConvTranspose=0 BatchNormalization=0 Relu=0 kiln.FusedConvTranspose=1", 1e-5);
    /* Not fused: a residual Add (FusedConvTranspose has none) leaves the chain alone; kiln
     * ops not allowed. */
    check_case("ConvTranspose + Add + Relu",
               "opset 13\ninput x f32 1,2,3,3\ninput r f32 1,2,5,5\ninit w f32 2,2,3,3 rand\n"
               "node ConvTranspose x,w -> c\nnode Add c,r -> a\nnode Relu a -> y\noutput y\n",
               "fuse_activation,dce", true, "ConvTranspose=1 Add=1 Relu=1", 0);
    check_case("ConvTranspose + Relu, standard ops only",
               "opset 13\ninput x f32 1,2,3,3\ninit w f32 2,2,3,3 rand\nnode ConvTranspose x,w -> c\n"
               "node Relu c -> y\noutput y\n", "fuse_activation,dce", false, "ConvTranspose=1 Relu=1", 0);
    check_case("Gemm + Tanh", "opset 13\ninput x f32 3,5\ninit w f32 5,4 rand\ninit c f32 4 rand\n"
               "node Gemm x,w,c -> g\nnode Tanh g -> y\noutput y\n",
               "fuse_activation,dce", true, "Gemm=0 kiln.FusedGemm=1", 1e-6);
    check_case("MatMul + Add(bias) + Add(residual) + Relu",
               "opset 13\ninput x f32 2,3,5\ninput r f32 2,3,4\ninit w f32 5,4 rand\ninit b f32 4 rand\n"
               "node MatMul x,w -> m\nnode Add m,b -> a\nnode Add r,a -> s\nnode Relu s -> y\noutput y\n",
               "fuse_matmul_add,fuse_activation,dce", true,
               "MatMul=0 Add=0 Relu=0 kiln.FusedMatMul=1", 1e-6);
    /* Not fused: kiln ops not allowed; a broadcasting residual; the Conv output read twice. */
    check_case("Conv + Relu, standard ops only",
               "opset 13\ninput x f32 1,2,4,4\ninit w f32 2,2,1,1 rand\nnode Conv x,w -> c\n"
               "node Relu c -> y\noutput y\n", "fuse_activation,dce", false, "Conv=1 Relu=1", 0);
    check_case("Conv + broadcast Add",
               "opset 13\ninput x f32 1,2,4,4\ninput r f32 1,2,1,4\ninit w f32 2,2,1,1 rand\n"
               "node Conv x,w -> c\nnode Add c,r -> y\noutput y\n",
               "fuse_activation,dce", true, "Conv=1 Add=1", 0);
    check_case("Conv read twice + Relu",
               "opset 13\ninput x f32 1,2,4,4\ninit w f32 2,2,1,1 rand\nnode Conv x,w -> c\n"
               "node Relu c -> y\nnode Neg c -> z\noutput y\noutput z\n",
               "fuse_activation,dce", true, "Conv=1 Relu=1", 0);
}

/* ------------------------------------------------------------------ MatMul + Add */

static void test_fuse_matmul_add(void)
{
    check_case("2-D MatMul + Add -> Gemm",
               "opset 13\ninput x f32 3,5\ninit w f32 5,4 rand\ninit b f32 4 rand\n"
               "node MatMul x,w -> m\nnode Add b,m -> y\noutput y\n",
               "fuse_matmul_add,dce", false, "MatMul=0 Add=0 Gemm=1", 1e-6);
    check_case("3-D MatMul + Add -> FusedMatMul",
               "opset 13\ninput x f32 2,3,5\ninit w f32 5,4 rand\ninit b f32 1,1,4 rand\n"
               "node MatMul x,w -> m\nnode Add m,b -> y\noutput y\n",
               "fuse_matmul_add,dce", true, "MatMul=0 Add=0 kiln.FusedMatMul=1", 1e-6);
    check_case("3-D MatMul + Add, standard ops only",
               "opset 13\ninput x f32 2,3,5\ninit w f32 5,4 rand\ninit b f32 4 rand\n"
               "node MatMul x,w -> m\nnode Add m,b -> y\noutput y\n",
               "fuse_matmul_add,dce", false, "MatMul=1 Add=1", 0);
    check_case("MatMul + Add of a matrix",
               "opset 13\ninput x f32 3,5\ninit w f32 5,4 rand\ninit b f32 3,4 rand\n"
               "node MatMul x,w -> m\nnode Add m,b -> y\noutput y\n",
               "fuse_matmul_add,dce", true, "MatMul=1 Add=1", 0);
}


/* ------------------------------------------------------------------ GELU */

static void test_fuse_gelu(void)
{
    static const char *const forms[] = {
        /* PyTorch: (x * (1 + erf(x / sqrt2))) * 0.5 */
        "node Div x,sq2 -> a\nnode Erf a -> e\nnode Add e,one -> p\nnode Mul x,p -> m\n"
        "node Mul m,half -> y\n",
        /* (x * 0.5) * (1 + erf(x * 1/sqrt2)), constants first */
        "node Mul isq2,x -> a\nnode Erf a -> e\nnode Add one,e -> p\nnode Mul half,x -> h\n"
        "node Mul h,p -> y\n",
        /* x * ((1 + erf) * 0.5) */
        "node Div x,sq2 -> a\nnode Erf a -> e\nnode Add e,one -> p\nnode Mul p,half -> h\n"
        "node Mul x,h -> y\n",
        /* tanh form with Pow */
        "node Pow x,three -> c\nnode Mul c,k -> kc\nnode Add x,kc -> s\nnode Mul s,r -> a\n"
        "node Tanh a -> t\nnode Add t,one -> p\nnode Mul x,p -> m\nnode Mul m,half -> y\n",
        /* tanh form with x * x * x */
        "node Mul x,x -> x2\nnode Mul x2,x -> c\nnode Mul k,c -> kc\nnode Add kc,x -> s\n"
        "node Mul r,s -> a\nnode Tanh a -> t\nnode Add one,t -> p\nnode Mul half,x -> h\n"
        "node Mul h,p -> y\n",
    };
    static const char *consts =
        "init sq2 f32 - = 1.4142135\ninit isq2 f32 - = 0.70710677\ninit one f32 - = 1\n"
        "init half f32 - = 0.5\ninit three f32 - = 3\ninit k f32 - = 0.044715\n"
        "init r f32 - = 0.7978846\n";
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        for (int opset = 13; opset <= 20; opset += 7) {
            char text[2048], what[64];
            snprintf(text, sizeof text, "opset %d\ninput x f32 2,3,33\n%s%soutput y\n", opset,
                     consts, forms[i]);
            snprintf(what, sizeof what, "GELU form %zu, opset %d", i, opset);
            check_case(what, text, "fuse_gelu,dce", true,
                       opset >= 20 ? "Gelu=1 Erf=0 Tanh=0 Mul=0" : "kiln.Gelu=1 Erf=0 Tanh=0 Mul=0",
                       2e-6);
        }
    }
    check_case("GELU at opset 13, standard ops only",
               "opset 13\ninput x f32 5\ninit sq2 f32 - = 1.4142135\ninit one f32 - = 1\n"
               "init half f32 - = 0.5\n" "node Div x,sq2 -> a\nnode Erf a -> e\nnode Add e,one -> p\n"
               "node Mul x,p -> m\nnode Mul m,half -> y\noutput y\n",
               "fuse_gelu,dce", false, "Erf=1", 0);
    check_case("not GELU (0.6 instead of 0.5)",
               "opset 20\ninput x f32 5\ninit sq2 f32 - = 1.4142135\ninit one f32 - = 1\n"
               "init half f32 - = 0.6\n" "node Div x,sq2 -> a\nnode Erf a -> e\nnode Add e,one -> p\n"
               "node Mul x,p -> m\nnode Mul m,half -> y\noutput y\n",
               "fuse_gelu,dce", true, "Erf=1 Gelu=0", 0);
}

/* ------------------------------------------------------------------ LayerNorm, RMSNorm */

static void test_fuse_layernorm(void)
{
    static const char *ln =
        "init eps f32 - = 1e-5\ninit two f32 - = 2\ninit gamma f32 %s rand\ninit beta f32 %s rand\n"
        "node ReduceMean x -> m axes=ints:%s\nnode Sub x,m -> d\nnode %s -> q\n"
        "node ReduceMean q -> v axes=ints:%s\nnode Add v,eps -> ve\nnode Sqrt ve -> s\n%s"
        "node Mul gamma,n -> g\nnode Add g,beta -> y\n";
    static const struct {
        const char *pdims, *axes, *square, *norm;
    } v[] = {
        {"7", "-1", "Pow d,two", "node Div d,s -> n\n"},
        {"7", "2", "Mul d,d", "node Reciprocal s -> rs\nnode Mul rs,d -> n\n"},
        {"5,7", "-1,-2", "Pow d,two", "node Div d,s -> n\n"},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        for (int opset = 13; opset <= 17; opset += 4) {
            char body[1024], text[2048], what[64];
            snprintf(body, sizeof body, ln, v[i].pdims, v[i].pdims, v[i].axes, v[i].square,
                     v[i].axes, v[i].norm);
            snprintf(text, sizeof text, "opset %d\ninput x f32 2,5,7\n%soutput y\n", opset, body);
            snprintf(what, sizeof what, "LayerNorm form %zu, opset %d", i, opset);
            check_case(what, text, "fuse_layernorm,dce", true,
                       opset >= 17 ? "LayerNormalization=1 ReduceMean=0 Add=0"
                                   : "kiln.LayerNormalization=1 ReduceMean=0 Add=0",
                       2e-5);
        }
    check_case("LayerNorm without affine, axes input (opset 18)",
               "opset 18\ninput x f32 3,9\ninit ax i64 1 = -1\ninit eps f32 - = 1e-3\n"
               "init two f32 - = 2\nnode ReduceMean x,ax -> m\nnode Sub x,m -> d\n"
               "node Pow d,two -> q\nnode ReduceMean q,ax -> v\nnode Add eps,v -> ve\n"
               "node Sqrt ve -> s\nnode Div d,s -> y\noutput y\n",
               "fuse_layernorm,dce", true, "LayerNormalization=1 ReduceMean=0", 2e-5);
    check_case("TF / Keras LayerNorm",
               "opset 13\ninput x f32 2,3,8\ninit eps f32 - = 1e-3\ninit gamma f32 8 rand\n"
               "init beta f32 8 rand\nnode ReduceMean x -> m axes=ints:-1\nnode Sub x,m -> d\n"
               "node Mul d,d -> q\nnode ReduceMean q -> v axes=ints:-1\nnode Add v,eps -> ve\n"
               "node Sqrt ve -> s\nnode Reciprocal s -> r\nnode Mul r,gamma -> a\n"
               "node Mul x,a -> xa\nnode Mul a,m -> ma\nnode Sub beta,ma -> b2\n"
               "node Add xa,b2 -> y\noutput y\n",
               "fuse_layernorm,dce", true, "kiln.LayerNormalization=1 ReduceMean=0 Mul=0", 2e-5);
    check_case("RMSNorm (opset 17 -> kiln)",
               "opset 17\ninput x f32 2,4,6\ninit eps f32 - = 1e-6\ninit two f32 - = 2\n"
               "init gamma f32 6 rand\nnode Pow x,two -> q\nnode ReduceMean q -> v axes=ints:-1\n"
               "node Add v,eps -> ve\nnode Sqrt ve -> s\nnode Div x,s -> n\nnode Mul n,gamma -> y\n"
               "output y\n",
               "fuse_layernorm,dce", true, "kiln.RMSNormalization=1 ReduceMean=0", 2e-5);
    check_case("RMSNorm (opset 23)",
               "opset 23\ninput x f32 2,4,6\ninit ax i64 1 = -1\ninit eps f32 - = 1e-6\n"
               "init gamma f32 6 rand\nnode Mul x,x -> q\nnode ReduceMean q,ax -> v\n"
               "node Add v,eps -> ve\nnode Sqrt ve -> s\nnode Reciprocal s -> r\nnode Mul x,r -> n\n"
               "node Mul gamma,n -> y\noutput y\n",
               "fuse_layernorm,dce", true, "RMSNormalization=1 ReduceMean=0", 2e-5);
    check_case("not LayerNorm (reduces a middle axis)",
               "opset 17\ninput x f32 2,5,7\ninit eps f32 - = 1e-5\ninit two f32 - = 2\n"
               "node ReduceMean x -> m axes=ints:1\nnode Sub x,m -> d\nnode Pow d,two -> q\n"
               "node ReduceMean q -> v axes=ints:1\nnode Add v,eps -> ve\nnode Sqrt ve -> s\n"
               "node Div d,s -> y\noutput y\n",
               "fuse_layernorm,dce", true, "ReduceMean=2 LayerNormalization=0", 0);
}

/* ------------------------------------------------------------------ attention */

/* One attention block over x [B, S, 16] with H = 4 heads of D = 4; `kshape` and `extra`
 * vary the K path and the scale / mask. */
static void attention_case(const char *what, const char *inputs, const char *k_path,
                           const char *scores, const char *expect, const char *extra_out)
{
    char text[4096];
    snprintf(text, sizeof text,
             "opset 13\n%s"
             "init wq f32 16,16 rand\ninit wk f32 16,16 rand\ninit wv f32 16,16 rand\n"
             "init bq f32 16 rand\ninit shp i64 4 = 0,0,4,4\ninit back i64 3 = 0,0,16\n"
             "init c8 f32 - = 2\n"
             "node MatMul x,wq -> q0\nnode Add q0,bq -> q\nnode MatMul x,wk -> k\n"
             "node MatMul x,wv -> v\n"
             "node Reshape q,shp -> q3\nnode Transpose q3 -> q4 perm=ints:0,2,1,3\n"
             "node Reshape v,shp -> v3\n"
             "%s%s"
             "node Softmax sc -> p axis=int:-1\nnode MatMul p,vv -> o4\n"
             "node Transpose o4 -> o3 perm=ints:0,2,1,3\nnode Reshape o3,back -> y\noutput y\n%s",
             inputs, k_path, scores, extra_out);
    check_case(what, text, "fuse_attention,dce", true, expect, 2e-5);
}

static void test_fuse_attention(void)
{
    static const char *k_plain =
        "node Reshape k,shp -> k3\nnode Transpose k3 -> kt perm=ints:0,2,3,1\n"
        "node Transpose v3 -> vv perm=ints:0,2,1,3\n";
    static const char *k_double = /* BERT's export before transposes are merged */
        "node Reshape k,shp -> k3\nnode Transpose k3 -> k4 perm=ints:0,2,1,3\n"
        "node Transpose k4 -> kt perm=ints:0,1,3,2\nnode Transpose v3 -> vv perm=ints:0,2,1,3\n";
    attention_case("BERT-style attention (scale by Div)", "input x f32 2,5,16\n", k_double,
                   "node MatMul q4,kt -> s0\nnode Div s0,c8 -> sc\n",
                   "kiln.Attention=1 Softmax=0 Transpose=0 Reshape=0", "");
    attention_case("attention, scale on Q, padding mask", "input x f32 2,5,16\ninput mask f32 2,1,1,5\n",
                   k_plain, "node Mul q4,c8 -> qs\nnode MatMul qs,kt -> s0\nnode Add mask,s0 -> sc\n",
                   "kiln.Attention=1 Softmax=0", "");
    attention_case("attention without scale", "input x f32 1,3,16\n", k_plain,
                   "node MatMul q4,kt -> sc\n", "kiln.Attention=1 Softmax=0", "");
    /* GPT-2-style decoding step with a KV cache: past K/V [B, H, P, D], a causal additive
     * mask [S, P + S], present K/V as graph outputs. */
    static const char *k_cache =
        "node Reshape k,shp -> k3\nnode Transpose k3 -> kn perm=ints:0,2,1,3\n"
        "node Concat pk,kn -> present_k axis=int:2\n"
        "node Transpose present_k -> kt perm=ints:0,1,3,2\n"
        "node Transpose v3 -> v4 perm=ints:0,2,1,3\nnode Concat pv,v4 -> vv axis=int:2\n";
    attention_case("GPT-2 block with KV cache",
                   "input x f32 1,2,16\ninput pk f32 1,4,3,4\ninput pv f32 1,4,3,4\ninput mask f32 2,5\n",
                   k_cache, "node MatMul q4,kt -> s0\nnode Mul s0,c8 -> s1\nnode Add s1,mask -> sc\n",
                   "kiln.Attention=1 Concat=0 Softmax=0", "output present_k\noutput vv\n");
    /* As torch exports GPT-2 with dynamic axes: the head Reshapes' shape is computed
     * (Concat(Slice(Shape(x)), [H, D])) and the causal mask is Where(bool, scores, fill). */
    static const char *gpt2_dyn =
        "opset 13\ninput x f32 1,2,16\ninput pk f32 1,4,3,4\ninput pv f32 1,4,3,4\n"
        "input mask f32 2,5\n"
        "init wq f32 16,16 rand\ninit wk f32 16,16 rand\ninit wv f32 16,16 rand\n"
        "init bq f32 16 rand\ninit hd i64 2 = 4,4\ninit st i64 1 = 0\ninit en i64 1 = 2\n"
        "init back i64 3 = 0,0,16\ninit c8 f32 - = 2\ninit zero f32 - = 0\ninit fill f32 - = %s\n"
        "node Shape x -> xs\nnode Slice xs,st,en -> bs\nnode Concat bs,hd -> shp axis=int:0\n"
        "node MatMul x,wq -> q0\nnode Add q0,bq -> q\nnode MatMul x,wk -> k\n"
        "node MatMul x,wv -> v\n"
        "node Reshape q,shp -> q3\nnode Transpose q3 -> q4 perm=ints:0,2,1,3\n"
        "node Reshape v,shp -> v3\n"
        "node Reshape k,shp -> k3\nnode Transpose k3 -> kn perm=ints:0,2,1,3\n"
        "node Concat pk,kn -> present_k axis=int:2\n"
        "node Transpose present_k -> kt perm=ints:0,1,3,2\n"
        "node Transpose v3 -> v4 perm=ints:0,2,1,3\nnode Concat pv,v4 -> vv axis=int:2\n"
        "node Greater mask,zero -> mb\n"
        "node MatMul q4,kt -> s0\nnode Div s0,c8 -> s1\nnode Where mb,s1,fill -> sc\n"
        "node Softmax sc -> p axis=int:-1\nnode MatMul p,vv -> o4\n"
        "node Transpose o4 -> o3 perm=ints:0,2,1,3\nnode Reshape o3,back -> y\noutput y\n"
        "output present_k\noutput vv\n";
    char text[4096];
    snprintf(text, sizeof text, gpt2_dyn, "-3.4028234663852886e38");
    check_case("GPT-2 block, computed head shapes, Where mask", text, "fuse_attention,dce", true,
               "kiln.Attention=1 Softmax=0 Concat=0 Reshape=0 Where=1", 2e-5);
    snprintf(text, sizeof text, gpt2_dyn, "-1"); /* a fill that does not mask: left alone */
    check_case("Where fill -1 (not a mask)", text, "fuse_attention,dce", true,
               "kiln.Attention=0 Softmax=1", 0);
    /* Not fused: the probabilities are also an output; a mask that broadcasts the key axis. */
    attention_case("attention with probabilities read", "input x f32 1,3,16\n", k_plain,
                   "node MatMul q4,kt -> sc\n", "kiln.Attention=0 Softmax=1", "output p\n");
    attention_case("attention, mask broadcasting keys", "input x f32 1,3,16\ninput mask f32 1,1,3,1\n",
                   k_plain, "node MatMul q4,kt -> s0\nnode Add s0,mask -> sc\n",
                   "kiln.Attention=0 Softmax=1", "");
}


/* ------------------------------------------------------------------ bias / scale, Pad */

static void test_fuse_bias_scale(void)
{
    check_case("Conv + Add per channel + Mul scalar",
               "opset 13\ninput x f32 1,3,5,5\ninit w f32 4,3,3,3 rand\ninit b f32 4 rand\n"
               "init c f32 4,1,1 rand\ninit k f32 - = 0.5\nnode Conv x,w,b -> y0\n"
               "node Add c,y0 -> y1\nnode Mul y1,k -> y\noutput y\n",
               "fuse_bias_scale,dce", false, "Conv=1 Add=0 Mul=0", 1e-5);
    check_case("Conv (no bias) * per-channel [1,M,1,1]",
               "opset 13\ninput x f32 2,3,4,4\ninit w f32 4,3,1,1 rand\ninit c f32 1,4,1,1 rand\n"
               "node Conv x,w -> y0\nnode Mul y0,c -> y\noutput y\n",
               "fuse_bias_scale,dce", false, "Conv=1 Mul=0", 1e-5);
    check_case("Gemm (transB, beta) + Add [N] then * [1,N]",
               "opset 13\ninput x f32 3,5\ninit w f32 4,5 rand\ninit cc f32 4 rand\ninit a f32 4 rand\n"
               "init m f32 1,4 rand\nnode Gemm x,w,cc -> g transB=int:1 beta=float:0.5\n"
               "node Add g,a -> g1\nnode Mul g1,m -> y\noutput y\n",
               "fuse_bias_scale,dce", false, "Gemm=1 Add=0 Mul=0", 1e-5);
    check_case("Conv + Add of a spatial map (not per channel)",
               "opset 13\ninput x f32 1,2,4,4\ninit w f32 2,2,1,1 rand\ninit c f32 1,1,4,4 rand\n"
               "node Conv x,w -> y0\nnode Add y0,c -> y\noutput y\n",
               "fuse_bias_scale,dce", false, "Conv=1 Add=1", 0);
    /* MatMul forms: B constant [K, N], the constant along the output's last dim. */
    check_case("MatMul (3-D A) * [N]",
               "opset 13\ninput x f32 2,3,5\ninit w f32 5,4 rand\ninit c f32 4 rand\n"
               "node MatMul x,w -> y0\nnode Mul c,y0 -> y\noutput y\n",
               "fuse_bias_scale,dce", false, "MatMul=1 Mul=0", 1e-5);
    check_case("MatMul + bias, layer scale [1,1,N], residual Add (ConvNeXt's block end)",
               "opset 13\ninput x f32 1,6,5\ninput r f32 1,6,4\ninit w f32 5,4 rand\ninit b f32 4 rand\n"
               "init g f32 1,1,4 rand\nnode MatMul x,w -> m\nnode Add m,b -> y0\n"
               "node Mul y0,g -> y1\nnode Add y1,r -> y\noutput y\n",
               "fuse_matmul_add,fuse_bias_scale,fuse_activation,dce", true,
               "kiln.FusedMatMul=1 Mul=0 Add=0", 1e-5);
    check_case("FusedMatMul + Add of a constant [N] then * scalar",
               "opset 13\ninput x f32 2,3,5\ninit w f32 5,4 rand\ninit b f32 4 rand\ninit c f32 4 rand\n"
               "init k f32 - = 1.5\nnode MatMul x,w -> m\nnode Add m,b -> y0\n"
               "node Add y0,c -> y1\nnode Mul y1,k -> y\noutput y\n",
               "fuse_matmul_add,fuse_bias_scale,dce", true, "kiln.FusedMatMul=1 Mul=0 Add=0", 1e-5);
    check_case("MatMul * [N, 1] (not along the last dim)",
               "opset 13\ninput x f32 4,5\ninit w f32 5,4 rand\ninit c f32 4,1 rand\n"
               "node MatMul x,w -> y0\nnode Mul y0,c -> y\noutput y\n",
               "fuse_bias_scale,dce", false, "MatMul=1 Mul=1", 0);
    check_case("FusedMatMul with an activation, then * [N] (not folded past it)",
               "opset 13\ninput x f32 2,3,5\ninit w f32 5,4 rand\ninit b f32 4 rand\ninit c f32 4 rand\n"
               "node MatMul x,w -> m\nnode Add m,b -> y0\nnode Relu y0 -> y1\nnode Mul y1,c -> y\noutput y\n",
               "fuse_matmul_add,fuse_activation,fuse_bias_scale,dce", true,
               "kiln.FusedMatMul=1 Mul=1 Relu=0", 0);
}

static void test_fuse_pad(void)
{
    check_case("Pad + Conv",
               "opset 13\ninput x f32 1,3,6,5\ninit w f32 4,3,3,3 rand\ninit pads i64 8 = 0,0,1,2,0,0,2,0\n"
               "node Pad x,pads -> p\nnode Conv p,w -> y pads=ints:1,0,0,1\noutput y\n",
               "fuse_pad,dce", false, "Pad=0 Conv=1", 1e-6);
    check_case("Pad + AveragePool (count_include_pad)",
               "opset 13\ninput x f32 1,2,6,6\n"
               "init pads4 i64 8 = 0,0,1,1,0,0,1,1\n"
               "node Pad x,pads4 -> p\nnode AveragePool p -> y kernel_shape=ints:3,3\noutput y\n",
               "fuse_pad,dce", false, "Pad=0 AveragePool=1", 1e-6);
    check_case("Relu + Pad(0) + MaxPool",
               "opset 13\ninput x f32 1,2,6,6\ninit pads i64 8 = 0,0,1,1,0,0,1,1\n"
               "node Relu x -> r\nnode Pad r,pads -> p\n"
               "node MaxPool p -> y kernel_shape=ints:3,3 strides=ints:2,2\noutput y\n",
               "fuse_pad,dce", false, "Pad=0 MaxPool=1", 0);
    check_case("Pad(0) + MaxPool of a signed input",
               "opset 13\ninput x f32 1,2,6,6\ninit pads i64 8 = 0,0,1,1,0,0,1,1\n"
               "node Pad x,pads -> p\nnode MaxPool p -> y kernel_shape=ints:3,3\noutput y\n",
               "fuse_pad,dce", false, "Pad=1 MaxPool=1", 0);
    check_case("Pad of channels + Conv",
               "opset 13\ninput x f32 1,2,4,4\ninit w f32 2,3,1,1 rand\ninit pads i64 8 = 0,1,0,0,0,0,0,0\n"
               "node Pad x,pads -> p\nnode Conv p,w -> y\noutput y\n",
               "fuse_pad,dce", false, "Pad=1 Conv=1", 0);
}

/* ------------------------------------------------------------------ Conv taps */

/* check_case, then the parameter count after the pass: `params` floats (the sliced weights
 * plus the bias), or unchanged when params is 0. */
static void taps_case(const char *what, const char *text, uint64_t params)
{
    check_case(what, text, "conv_taps,dce", false, "Conv=1", 1e-5);
    kiln_model *m = load_text_model(text, what);
    if (!m) return;
    kiln_err e = {0};
    kiln_status st;
    uint64_t before, after, bytes;
    kiln_model_params(m, &before, &bytes);
    st = optimize(m, "conv_taps,dce", false, &e);
    CHECK(st == KILN_OK, "%s: optimize: %s", what, e.msg);
    kiln_model_params(m, &after, &bytes);
    CHECK(after == (params ? params : before), "%s: %llu parameters after conv_taps (before %llu); expected %llu",
          what, (unsigned long long)after, (unsigned long long)before,
          (unsigned long long)(params ? params : before));
    kiln_model_free(m);
}

/* split_matmul_slices: MatMul (+ bias Add) read only by last-axis Slices becomes one MatMul
 * (+ Add) per Slice; anything else reading the product, or a Slice of another axis, leaves it. */
static void test_split_matmul_slices(void)
{
    const char *head = "opset 17\ninput x f32 1,5,8\ninit w f32 8,12 rand\ninit b f32 12 rand\n"
                       "init s0 i64 1 = 0\ninit e0 i64 1 = 4\ninit s1 i64 1 = 4\ninit e1 i64 1 = 8\n"
                       "init s2 i64 1 = -4\ninit e2 i64 1 = 1000\ninit ax i64 1 = -1\ninit ax2 i64 1 = 2\n"
                       "init ax1 i64 1 = 1\ninit one i64 1 = 1\n";
    char text[2048];
    snprintf(text, sizeof text,
             "%snode MatMul x,w -> m\nnode Add b,m -> y\nnode Slice y,s0,e0,ax -> q\n"
             "node Slice y,s1,e1,ax2,one -> k\nnode Slice y,s2,e2,ax -> v\n"
             "node Relu q -> oq\nnode Relu k -> ok\nnode Relu v -> ov\noutput oq\noutput ok\noutput ov\n",
             head);
    check_case("in_proj + bias, three last-axis Slices", text, "split_matmul_slices,dce", false,
               "MatMul=3 Add=3 Slice=0", 1e-5);
    snprintf(text, sizeof text,
             "%snode MatMul x,w -> y\nnode Slice y,s0,e0,ax -> q\nnode Slice y,s2,e2,ax2 -> v\n"
             "node Relu q -> oq\nnode Relu v -> ov\noutput oq\noutput ov\n",
             head);
    check_case("MatMul without bias, two Slices (columns 4-7 not computed)", text, "split_matmul_slices,dce", false,
               "MatMul=2 Add=0 Slice=0", 1e-5);
    snprintf(text, sizeof text,
             "%snode MatMul x,w -> m\nnode Add m,b -> y\nnode Slice y,s0,e0,ax -> q\n"
             "node Slice y,s0,e0,ax1 -> k\nnode Relu q -> oq\nnode Relu k -> ok\noutput oq\noutput ok\n",
             head);
    check_case("a Slice of axis 1: unchanged", text, "split_matmul_slices,dce", false, "MatMul=1 Add=1 Slice=2", 0);
    snprintf(text, sizeof text,
             "%snode MatMul x,w -> y\nnode Slice y,s0,e0,ax -> q\nnode Relu y -> r\n"
             "node Relu q -> oq\noutput oq\noutput r\n",
             head);
    check_case("the product read by a Relu too: unchanged", text, "split_matmul_slices,dce", false,
               "MatMul=1 Slice=1", 0);
}

static void test_conv_taps(void)
{
    /* ASPP-like: dilation 6 on a 4x4 map, padding 6: only the centre tap reads the image */
    taps_case("dilated Conv, outer taps all padding -> 1x1",
              "opset 13\ninput x f32 1,3,4,4\ninit w f32 5,3,3,3 rand\ninit b f32 5 rand\n"
              "node Conv x,w,b -> y pads=ints:6,6,6,6 dilations=ints:6,6\noutput y\n",
              5 * 3 + 5);
    /* one side only: rows of tap 2 are all past the end pad's image */
    taps_case("dilated Conv, end taps only (H 4, d 3, pads 0 / 6)",
              "opset 13\ninput x f32 2,2,4,5\ninit w f32 3,2,3,3 rand\n"
              "node Conv x,w -> y pads=ints:0,0,6,0 dilations=ints:3,1\noutput y\n",
              3 * 2 * 2 * 3);
    taps_case("1-D grouped strided Conv with bias",
              "opset 13\ninput x f32 1,4,3\ninit w f32 6,2,5 rand\ninit b f32 6 rand\n"
              "node Conv x,w,b -> y group=int:2 pads=ints:8,8 dilations=ints:4 strides=ints:2\noutput y\n",
              6 * 2 * 1 + 6);
    /* every tap reads the image somewhere: unchanged */
    taps_case("dilated Conv whose taps all touch the image",
              "opset 13\ninput x f32 1,2,8,8\ninit w f32 2,2,3,3 rand\n"
              "node Conv x,w -> y pads=ints:2,2,2,2 dilations=ints:2,2\noutput y\n",
              0);
}

/* ------------------------------------------------------------------ Transposes */

static void test_push_transpose(void)
{
    check_case("Transpose -> Relu -> Add scalar -> inverse Transpose",
               "opset 13\ninput x f32 2,3,4\ninit one f32 - = 1\n"
               "node Transpose x -> t perm=ints:0,2,1\nnode Relu t -> r\nnode Add r,one -> a\n"
               "node Transpose a -> y perm=ints:0,2,1\noutput y\n",
               "push_transpose,dce", false, "Transpose=0 Relu=1 Add=1", 0);
    check_case("two transposed operands, non-inverse second Transpose",
               "opset 13\ninput x f32 2,3,4\ninput z f32 2,3,4\n"
               "node Transpose x -> t perm=ints:2,0,1\nnode Transpose z -> u perm=ints:2,0,1\n"
               "node Mul t,u -> m\nnode Sigmoid m -> s\nnode Transpose s -> y perm=ints:0,2,1\noutput y\n",
               "push_transpose,dce", false, "Transpose=1 Mul=1 Sigmoid=1", 0);
    check_case("Transpose -> Add of a tensor (not pushed)",
               "opset 13\ninput x f32 2,3\ninput z f32 3,2\n"
               "node Transpose x -> t perm=ints:1,0\nnode Add t,z -> a\n"
               "node Transpose a -> y perm=ints:1,0\noutput y\n",
               "push_transpose,dce", false, "Transpose=2", 0);
}

/* ------------------------------------------------------------------ out of memory */

/* Every allocation of an extended optimization of a model that exercises each fusion fails
 * in turn: the optimizer returns KILN_E_NOMEM and leaves the model as it was (it still runs
 * and gives the original outputs), or succeeds with the full result. Leaks show under ASan. */
static void test_oom(void)
{
    static const char *text =
        "opset 13\ninput x f32 1,3,6,6\ninput t f32 2,5,16\n"
        "init w f32 4,3,3,3 rand\ninit s f32 4 rand\ninit b f32 4 rand\ninit mu f32 4 rand\n"
        "init var f32 4 pos\nnode Conv x,w -> c pads=ints:1,1,1,1\n"
        "node BatchNormalization c,s,b,mu,var -> n\nnode Relu n -> y\noutput y\n"
        "init wq f32 16,16 rand\ninit wk f32 16,16 rand\ninit wv f32 16,16 rand\n"
        "init bq f32 16 rand\ninit shp i64 4 = 0,0,4,4\ninit back i64 3 = 0,0,16\n"
        "init c8 f32 - = 2\ninit sq2 f32 - = 1.4142135\ninit one f32 - = 1\ninit half f32 - = 0.5\n"
        "node MatMul t,wq -> q0\nnode Add q0,bq -> q\nnode MatMul t,wk -> k\nnode MatMul t,wv -> v\n"
        "node Reshape q,shp -> q3\nnode Transpose q3 -> q4 perm=ints:0,2,1,3\n"
        "node Reshape k,shp -> k3\nnode Transpose k3 -> kt perm=ints:0,2,3,1\n"
        "node Reshape v,shp -> v3\nnode Transpose v3 -> v4 perm=ints:0,2,1,3\n"
        "node MatMul q4,kt -> s0\nnode Div s0,c8 -> sc\nnode Softmax sc -> p axis=int:-1\n"
        "node MatMul p,v4 -> o4\nnode Transpose o4 -> o3 perm=ints:0,2,1,3\n"
        "node Reshape o3,back -> o\nnode Div o,sq2 -> ga\nnode Erf ga -> ge\n"
        "node Add ge,one -> gp\nnode Mul o,gp -> gm\nnode Mul gm,half -> z\noutput z\n";
    struct buf b;
    parse_model(text, &b);
    struct run r0 = {0};
    kiln_model *m0 = NULL;
    kiln_err e = {0};
    if (kiln_model_load_buffer(b.p, b.len, NULL, &m0, &e) || !run_model(m0, 9, &r0, "oom")) {
        CHECK(false, "oom model: %s", e.msg);
        free(b.p);
        kiln_model_free(m0);
        return;
    }
    size_t before = kiln_model_node_count(m0);
    int failures = 0;
    for (long n = 1; n < 100000; n++) {
        kiln_model *m = NULL;
        if (kiln_model_load_buffer(b.p, b.len, NULL, &m, &e)) break;
        kiln_alloc_fail_after(n);
        kiln_status st = optimize(m, NULL, true, &e);
        long used = kiln_alloc_fail_after(0);
        bool failed = used >= n;
        CHECK(st == KILN_OK || st == KILN_E_NOMEM, "allocation %ld failing: status %d (%s)", n, st, e.msg);
        if (st == KILN_E_NOMEM) {
            failures++;
            CHECK(kiln_model_node_count(m) == before, "allocation %ld failing: model changed", n);
        }
        if (n % 16 == 1 || !failed) { /* the model (restored or optimized) still runs right */
            struct run r1 = {0};
            if (run_model(m, 9, &r1, "oom")) {
                double d = max_diff(&r1, &r0);
                CHECK(d >= 0 && d <= 1e-5, "allocation %ld failing: outputs differ by %.3g", n, d);
            }
            free_run(&r1);
        }
        if (!failed) {
            CHECK(st == KILN_OK && kiln_model_node_count(m) < before, "optimization without failures");
            kiln_model_free(m);
            break;
        }
        kiln_model_free(m);
    }
    CHECK(failures > 10, "only %d allocation failures seen", failures);
    free_run(&r0);
    kiln_model_free(m0);
    free(b.p);
}

/* ------------------------------------------------------------------ bench models */

static void histogram(const kiln_model *m)
{
    struct {
        char op[64];
        size_t n;
    } h[128];
    size_t nh = 0;
    for (size_t i = 0; i < kiln_model_node_count(m); i++) {
        const char *name, *op, *dom;
        kiln_model_node(m, i, &name, &op, &dom);
        char key[64];
        snprintf(key, sizeof key, "%s%s%s", dom && dom[0] ? dom : "", dom && dom[0] ? "." : "", op);
        size_t j = 0;
        while (j < nh && strcmp(h[j].op, key)) j++;
        if (j == nh && nh < 128) {
            snprintf(h[nh].op, sizeof h[0].op, "%s", key);
            h[nh++].n = 0;
        }
        if (j < 128) h[j].n++;
    }
    for (size_t j = 0; j < nh; j++) printf(" %s=%zu", h[j].op, h[j].n);
    printf("\n");
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Times `reps` one-thread runs of m0 and m1 alternately (after one warm-up each) and prints
 * the minimum and median of each (KILN_OPT_BENCH_REPS, default 0: no timing). */
static void time_models(const kiln_model *m0, const kiln_model *m1, const char *what)
{
    const char *env = getenv("KILN_OPT_BENCH_REPS");
    int reps = env ? atoi(env) : 0;
    if (reps <= 0 || reps > 1000) return;
    const kiln_model *ms[2] = {m0, m1};
    kiln_session *s[2] = {0};
    kiln_value *in[8] = {0};
    size_t n_in = make_inputs(m0, 5, in), n_out = kiln_model_output_count(m0);
    kiln_session_options so = {.threads = 1};
    kiln_err e;
    double t[2][1000];
    for (int k = 0; k < 2; k++)
        if (kiln_session_create(ms[k], &so, &s[k], &e)) goto out;
    for (int r = -1; r < reps; r++)
        for (int k = 0; k < 2; k++) {
            kiln_value *outs[8] = {0};
            double t0 = now_ms();
            if (kiln_session_run(s[k], n_in, NULL, (const kiln_value *const *)in, n_out, outs, &e)) goto out;
            if (r >= 0) t[k][r] = now_ms() - t0;
            for (size_t i = 0; i < n_out; i++) kiln_value_free(outs[i]);
        }
    for (int k = 0; k < 2; k++) qsort(t[k], (size_t)reps, sizeof(double), cmp_d);
    printf("%s: 1 thread, %d runs each: original min %.1f ms median %.1f; extended min %.1f ms "
           "median %.1f\n", what, reps, t[0][0], t[0][reps / 2], t[1][0], t[1][reps / 2]);
out:
    for (int k = 0; k < 2; k++) kiln_session_free(s[k]);
    for (size_t i = 0; i < n_in; i++) kiln_value_free(in[i]);
}

static int bench_models(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        kiln_model *m0 = NULL, *m1 = NULL;
        kiln_err e = {0};
        if (kiln_model_load_file(argv[i], &m0, &e) || kiln_model_load_file(argv[i], &m1, &e)) {
            printf("%s: %s\n", argv[i], e.msg);
            return 1;
        }
        printf("%s: %zu nodes before:", argv[i], kiln_model_node_count(m0));
        histogram(m0);
        if (optimize(m1, NULL, true, &e)) {
            printf("optimize: %s\n", e.msg);
            return 1;
        }
        printf("%s: %zu nodes after extended:", argv[i], kiln_model_node_count(m1));
        histogram(m1);
        struct run r0 = {0}, r1 = {0};
        if (run_model(m0, 5, &r0, argv[i]) && run_model(m1, 5, &r1, argv[i]))
            printf("%s: largest output difference %.3g (relative to 1 + |x|)\n", argv[i],
                   max_diff(&r1, &r0));
        time_models(m0, m1, argv[i]);
        free_run(&r0);
        free_run(&r1);
        kiln_model_free(m0);
        kiln_model_free(m1);
    }
    return test_failures != 0;
}

int main(int argc, char **argv)
{
    if (argc > 1) return bench_models(argc, argv);
    test_fuse_bn();
    test_fuse_activation();
    test_fuse_matmul_add();
    test_fuse_gelu();
    test_fuse_layernorm();
    test_fuse_attention();
    test_fuse_bias_scale();
    test_fuse_pad();
    test_conv_taps();
    test_split_matmul_slices();
    test_push_transpose();
    test_oom();
    return test_summary("test_opt_extended");
}
