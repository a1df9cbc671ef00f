/* test_inplace.c: kernels that write output 0 over input 0 (KILN_OP_INPLACE, cpu/kernel.h)
 * give the right answers, and the memory planner (exec/plan.h) really puts them in place.
 *
 * Each case is a small model whose intermediates die at in-place nodes: chains of
 * element-wise ops, activations, normalizations and softmaxes behind a MatMul; broadcasting
 * binary ops with the big operand first (in place) and second (not); the view-like ops
 * Reshape, Flatten, Squeeze, Unsqueeze, Identity, Dropout; Cast between types of one size
 * (float32 <-> int32, int64 <-> float64); bool ops and Where. Each is run through
 * kiln_session_run (which plans memory and applies in place), with one thread and with
 * four (so the element-wise kernels split their ranges), and through an engine context, and
 * compared with a float64 reference computed here from the same inputs and weights:
 * |got - want| <= tol * (1 + |want|), tol 1e-4 where float32 arithmetic (a 256-term dot
 * product, vmath's exp/tanh) is involved, 1e-5 for the plain element-wise case, and 0
 * (exact) for the integer-valued Cast chain. Graph inputs must come back unchanged.
 *
 * That in place happened is checked on the plan: an engine built at KILN_OPT_NONE reports
 * (kiln_engine_profile_memory) its arena and the sum of its planned intermediates. For a
 * chain whose intermediates all have one size and each dies at an in-place node, the whole
 * chain shares one block, so the arena is one tensor (64-byte rounded) while the sum is the
 * chain's length times that; without in place, neighbours would need two blocks. A model
 * with a symbolic batch dim is planned per run: the context's arena follows the bound size.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln.h"
#include "test_model.h"
#include "test_support.h"
#include "test_text_model.h"

#define MAX_IO 4

/* ------------------------------------------------------------------ running */

/* A model from the text form (random initializers drawn after rng_seed(seed)). */
static kiln_model *load_text(const char *text, uint64_t seed)
{
    struct buf b = {0};
    rng_seed(seed);
    parse_model(text, &b);
    kiln_model *m = NULL;
    kiln_err err = {0};
    kiln_status st = kiln_model_load_buffer(b.p, b.len, NULL, &m, &err);
    free(b.p);
    CHECK(st == KILN_OK, "model does not load: %s", err.msg);
    return st == KILN_OK ? m : NULL;
}

/* A float32 input of shape dims with values v (numel entries, converted to float). */
static kiln_value *input_f32(int rank, const int64_t *dims, const double *v)
{
    kiln_value *x = NULL;
    kiln_err err;
    if (kiln_value_create_tensor(KILN_DTYPE_F32, rank, dims, &x, &err)) {
        printf("FAIL: %s\n", err.msg);
        exit(1);
    }
    float *d = kiln_value_data(x);
    for (size_t i = 0; i < kiln_value_numel(x); i++) d[i] = (float)v[i];
    return x;
}

/* Runs m through a session of `threads` threads; outputs into out[0..n_out). */
static bool run_session(const kiln_model *m, int threads, size_t n_in, kiln_value **in,
                        size_t n_out, kiln_value **out, const char *what)
{
    kiln_session_options opt = {0};
    opt.threads = threads;
    kiln_session *s = NULL;
    kiln_err err = {0};
    for (size_t i = 0; i < n_out; i++) out[i] = NULL;
    kiln_status st = kiln_session_create(m, &opt, &s, &err);
    if (!st) st = kiln_session_run(s, n_in, NULL, (const kiln_value *const *)in, n_out, out, &err);
    CHECK(st == KILN_OK, "%s (%d threads): %s", what, threads, err.msg);
    kiln_session_free(s);
    return st == KILN_OK;
}

/* An engine of m at KILN_OPT_NONE (the graph as written) with one thread; NULL on failure. */
static kiln_engine *build_engine(const kiln_model *m, const char *what)
{
    kiln_builder *b = NULL;
    kiln_engine *e = NULL;
    kiln_err err = {0};
    kiln_status st = kiln_builder_create(&b, &err);
    if (!st) {
        kiln_builder_set_opt_level(b, KILN_OPT_NONE);
        st = kiln_builder_set_threads(b, 1, &err);
    }
    if (!st) st = kiln_builder_build(b, m, &e, &err);
    CHECK(st == KILN_OK, "%s: engine build failed: %s", what, err.msg);
    kiln_builder_free(b);
    return st ? NULL : e;
}

/* The planned arena and the sum of the planned intermediates of static model m. */
static bool plan_of(const kiln_model *m, uint64_t *arena, uint64_t *sum, const char *what)
{
    *arena = *sum = 0;
    kiln_engine *e = build_engine(m, what);
    if (!e) return false;
    bool ok = kiln_engine_profile_count(e) == 1;
    CHECK(ok, "%s: a static model reports one plan, not %zu", what, kiln_engine_profile_count(e));
    if (ok) kiln_engine_profile_memory(e, 0, arena, sum);
    kiln_engine_free(e);
    return ok;
}

/* Runs m through an engine context; also gives the context's arena after the run. */
static bool run_context(kiln_engine *e, size_t n_in, kiln_value **in, size_t n_out,
                        kiln_value **out, uint64_t *arena, const char *what)
{
    kiln_context *c = NULL;
    kiln_err err = {0};
    for (size_t i = 0; i < n_out; i++) out[i] = NULL;
    kiln_status st = kiln_context_create(e, &c, &err);
    if (!st)
        st = kiln_context_run(c, NULL, n_in, NULL, (const kiln_value *const *)in, n_out, out, &err);
    CHECK(st == KILN_OK, "%s (context): %s", what, err.msg);
    if (arena) *arena = c ? kiln_context_arena_bytes(c) : 0;
    kiln_context_free(c);
    return st == KILN_OK;
}

/* Runs m with 1 and 4 threads and through an engine context, comparing each output o with
 * want[o] (numel[o] values) within tol; checks the inputs are left as they were. */
static void check_runs(const kiln_model *m, size_t n_in, kiln_value **in, size_t n_out,
                       const double *const *want, const size_t *numel, double tol,
                       const char *what)
{
    float *before[MAX_IO] = {0};
    for (size_t i = 0; i < n_in; i++) {
        size_t bytes = kiln_value_numel(in[i]) * sizeof(float);
        before[i] = malloc(bytes ? bytes : 1);
        if (!before[i]) exit(1);
        memcpy(before[i], kiln_value_data(in[i]), bytes);
    }
    kiln_value *out[MAX_IO];
    char label[160];
    static const int threads[] = {1, 4};
    for (int t = 0; t < 2; t++) {
        if (!run_session(m, threads[t], n_in, in, n_out, out, what)) continue;
        for (size_t o = 0; o < n_out; o++) {
            snprintf(label, sizeof label, "%s, %d threads, output %zu", what, threads[t], o);
            close_to(out[o], want[o], numel[o], tol, label);
            kiln_value_free(out[o]);
        }
    }
    kiln_engine *e = build_engine(m, what);
    if (e && run_context(e, n_in, in, n_out, out, NULL, what)) {
        for (size_t o = 0; o < n_out; o++) {
            snprintf(label, sizeof label, "%s, engine context, output %zu", what, o);
            close_to(out[o], want[o], numel[o], tol, label);
            kiln_value_free(out[o]);
        }
    }
    kiln_engine_free(e);
    for (size_t i = 0; i < n_in; i++) {
        size_t bytes = kiln_value_numel(in[i]) * sizeof(float);
        CHECK(memcmp(before[i], kiln_value_data(in[i]), bytes) == 0, "%s: input %zu was modified",
              what, i);
        free(before[i]);
    }
}

/* Bytes of a tensor rounded up as the planner places them (KILN_PLAN_ALIGN, 64). */
static uint64_t block(uint64_t bytes)
{
    return (bytes + 63) & ~(uint64_t)63;
}

/* Values the text model's `rand` / `pos` initializers got, drawn again in the same order. */
static void redraw(double *v, size_t n, double lo, double hi)
{
    for (size_t i = 0; i < n; i++) v[i] = (float)rng_range(lo, hi);
}

static double *alloc_doubles(size_t n)
{
    double *p = calloc(n ? n : 1, sizeof *p);
    if (!p) {
        printf("FAIL: out of memory\n");
        exit(1);
    }
    return p;
}

/* ------------------------------------------------------------------ MatMul -> ... chain */

/* MatMul, then every node in place on one 128 KiB block: Add (bias, big operand first),
 * LayerNormalization, Relu, Reshape, Sigmoid, Softmax along a strided axis, LogSoftmax
 * along the last, Flatten; Tanh makes the graph output (outputs are never planned). */
static const char *const chain_model =
    "opset 17\n"
    "input X f32 128,256\n"
    "init W f32 256,256 rand\n"
    "init b f32 256 rand\n"
    "init g f32 256 pos\n"
    "init bb f32 256 rand\n"
    "init shp i64 3 = 128,16,16\n"
    "node MatMul X,W -> t1\n"
    "node Add t1,b -> t2\n"
    "node LayerNormalization t2,g,bb -> t3 axis=int:-1\n"
    "node Relu t3 -> t4\n"
    "node Reshape t4,shp -> t5\n"
    "node Sigmoid t5 -> t6\n"
    "node Softmax t6 -> t7 axis=int:1\n"
    "node LogSoftmax t7 -> t8 axis=int:2\n"
    "node Flatten t8 -> t9 axis=int:1\n"
    "node Tanh t9 -> Y\n"
    "output Y\n";

static void test_chain(void)
{
    enum { R = 128, C = 256, G = 16 };
    const uint64_t seed = 0x1a2b3c;
    kiln_model *m = load_text(chain_model, seed);
    if (!m) return;
    /* The initializers as parse_model drew them: W, b, g (pos), bb. */
    double *W = alloc_doubles(C * C), b[C], g[C], bb[C];
    rng_seed(seed);
    redraw(W, C * C, -1, 1);
    redraw(b, C, -1, 1);
    redraw(g, C, 0.5, 1.5);
    redraw(bb, C, -1, 1);
    double *x = alloc_doubles(R * C), *t = alloc_doubles(R * C), *u = alloc_doubles(R * C);
    rng_seed(7);
    for (size_t i = 0; i < R * C; i++) x[i] = (float)rng_range(-1, 1);

    /* t = LayerNorm(x W + b) per row, then relu and sigmoid. */
    const double eps = (double)1e-5f;
    for (int i = 0; i < R; i++) {
        double *row = t + (size_t)i * C, mean = 0, var = 0;
        for (int j = 0; j < C; j++) {
            double s = 0;
            for (int k = 0; k < C; k++) s += x[(size_t)i * C + k] * W[(size_t)k * C + j];
            row[j] = s + b[j];
            mean += row[j];
        }
        mean /= C;
        for (int j = 0; j < C; j++) var += (row[j] - mean) * (row[j] - mean);
        var /= C;
        for (int j = 0; j < C; j++) {
            double v = (row[j] - mean) / sqrt(var + eps) * g[j] + bb[j];
            v = v < 0 ? 0 : v;
            row[j] = 1 / (1 + exp(-v));
        }
    }
    /* As [128, 16, 16]: softmax along axis 1, then log-softmax along axis 2, then tanh. */
    for (int i = 0; i < R; i++) {
        for (int q = 0; q < G; q++) {
            double mx = -INFINITY, sum = 0;
            for (int p = 0; p < G; p++) mx = fmax(mx, t[((size_t)i * G + p) * G + q]);
            for (int p = 0; p < G; p++) sum += exp(t[((size_t)i * G + p) * G + q] - mx);
            for (int p = 0; p < G; p++)
                u[((size_t)i * G + p) * G + q] = exp(t[((size_t)i * G + p) * G + q] - mx) / sum;
        }
        for (int p = 0; p < G; p++) {
            double *row = u + ((size_t)i * G + p) * G, mx = -INFINITY, sum = 0;
            for (int q = 0; q < G; q++) mx = fmax(mx, row[q]);
            for (int q = 0; q < G; q++) sum += exp(row[q] - mx);
            for (int q = 0; q < G; q++) t[((size_t)i * G + p) * G + q] = tanh(row[q] - mx - log(sum));
        }
    }

    int64_t dims[2] = {R, C};
    kiln_value *in = input_f32(2, dims, x);
    const double *want[1] = {t};
    size_t numel[1] = {R * C};
    check_runs(m, 1, &in, 1, want, numel, 1e-4, "MatMul chain");

    /* Nine intermediates t1..t9 of 128 KiB, all in one block. */
    uint64_t arena, sum, one = block((uint64_t)R * C * sizeof(float));
    if (plan_of(m, &arena, &sum, "MatMul chain")) {
        CHECK(sum == 9 * one, "MatMul chain: planned sum %llu; expected 9 x %llu",
              (unsigned long long)sum, (unsigned long long)one);
        CHECK(arena < sum && arena == one,
              "MatMul chain: arena %llu bytes; in place should make it one block of %llu "
              "(sum of intermediates %llu)",
              (unsigned long long)arena, (unsigned long long)one, (unsigned long long)sum);
    }
    kiln_value_free(in);
    kiln_model_free(m);
    free(W), free(x), free(t), free(u);
}

/* ------------------------------------------------------------------ broadcasting */

/* Binary ops with the big operand first (in place) and second (not: the output is larger
 * than input 0), variadic Max/Sum, PRelu, and bool ops ending in Where. */
static const char *const bcast_model =
    "opset 17\n"
    "input X f32 64,512\n"
    "input V f32 512\n"
    "init P f32 512 pos\n"
    "init S f32 512 rand\n"
    "node Abs X -> a\n"
    "node Sub a,V -> b\n"
    "node Sub V,b -> c\n"
    "node Mul c,V -> d\n"
    "node Div d,P -> e\n"
    "node Max e,V,P -> f\n"
    "node Sum V,f -> h\n"
    "node PRelu h,S -> k\n"
    "node Neg k -> Y1\n"
    "node Greater X,V -> g1\n"
    "node Less X,P -> g2\n"
    "node Not g1 -> g3\n"
    "node Xor g3,g2 -> g4\n"
    "node Where g4,g2,g1 -> g5\n"
    "node Where g5,X,V -> w\n"
    "node Neg w -> Y2\n"
    "output Y1\n"
    "output Y2\n";

static void test_broadcast(void)
{
    enum { R = 64, C = 512 };
    const uint64_t seed = 0x5eed;
    kiln_model *m = load_text(bcast_model, seed);
    if (!m) return;
    double P[C], S[C], v[C];
    rng_seed(seed);
    redraw(P, C, 0.5, 1.5);
    redraw(S, C, -1, 1);
    double *x = alloc_doubles(R * C), *y1 = alloc_doubles(R * C), *y2 = alloc_doubles(R * C);
    rng_seed(11);
    for (size_t i = 0; i < R * C; i++) x[i] = (float)rng_range(-2, 2);
    for (int j = 0; j < C; j++) v[j] = (float)rng_range(-1, 1);
    for (int i = 0; i < R; i++)
        for (int j = 0; j < C; j++) {
            size_t at = (size_t)i * C + j;
            double a = fabs(x[at]), b = a - v[j], c = v[j] - b, d = c * v[j], e = d / P[j];
            double f = fmax(fmax(e, v[j]), P[j]), h = v[j] + f, k = h < 0 ? h * S[j] : h;
            y1[at] = -k;
            bool g1 = x[at] > v[j], g2 = x[at] < P[j], g3 = !g1, g4 = g3 != g2;
            bool g5 = g4 ? g2 : g1;
            y2[at] = -(g5 ? x[at] : v[j]);
        }
    int64_t dx[2] = {R, C}, dv[1] = {C};
    kiln_value *in[2] = {input_f32(2, dx, x), input_f32(1, dv, v)};
    const double *want[2] = {y1, y2};
    size_t numel[2] = {R * C, R * C};
    check_runs(m, 2, in, 2, want, numel, 1e-5, "broadcasting ops");

    uint64_t arena, sum;
    if (plan_of(m, &arena, &sum, "broadcasting ops"))
        CHECK(arena < sum, "broadcasting ops: arena %llu is not below the sum %llu",
              (unsigned long long)arena, (unsigned long long)sum);
    kiln_value_free(in[0]);
    kiln_value_free(in[1]);
    kiln_model_free(m);
    free(x), free(y1), free(y2);
}

/* The small operand first: Add(b, t1) is 4x the size of b, so it cannot go in place, and t1
 * and its sum need two blocks; the Relu after it goes over the sum. */
static const char *const small_first_model =
    "opset 17\n"
    "input X f32 4,256\n"
    "init b f32 256 rand\n"
    "node Neg X -> t1\n"
    "node Add b,t1 -> t2\n"
    "node Relu t2 -> t3\n"
    "node Exp t3 -> Y\n"
    "output Y\n";

static void test_small_first(void)
{
    enum { R = 4, C = 256 };
    const uint64_t seed = 99;
    kiln_model *m = load_text(small_first_model, seed);
    if (!m) return;
    double b[C], x[R * C], y[R * C];
    rng_seed(seed);
    redraw(b, C, -1, 1);
    rng_seed(12);
    for (int i = 0; i < R * C; i++) x[i] = (float)rng_range(-1, 1);
    for (int i = 0; i < R * C; i++) {
        double s = b[i % C] + -x[i];
        y[i] = exp(s < 0 ? 0 : s);
    }
    int64_t dims[2] = {R, C};
    kiln_value *in = input_f32(2, dims, x);
    const double *want[1] = {y};
    size_t numel[1] = {R * C};
    check_runs(m, 1, &in, 1, want, numel, 1e-5, "small operand first");
    uint64_t arena, sum, one = block(R * C * sizeof(float));
    if (plan_of(m, &arena, &sum, "small operand first"))
        CHECK(sum == 3 * one && arena == 2 * one,
              "small operand first: arena %llu, sum %llu; expected %llu and %llu",
              (unsigned long long)arena, (unsigned long long)sum, (unsigned long long)(2 * one),
              (unsigned long long)(3 * one));
    kiln_value_free(in);
    kiln_model_free(m);
}

/* A comparison of float32 input 0 [8] broadcast against [4, 8]: its bool output has as
 * many bytes as input 0 (32), so the planner lets it take input 0's block though the walk
 * visits input 0 four times; the kernel must not read what it has overwritten. */
static const char *const wide_compare_model =
    "opset 17\n"
    "input A f32 8\n"
    "input B f32 4,8\n"
    "node Neg A -> a\n"
    "node Less a,B -> g\n"
    "node Not g -> h\n"
    "node Cast h -> Y to=int:1\n"
    "output Y\n";

static void test_wide_compare(void)
{
    enum { C = 8, R = 4 };
    kiln_model *m = load_text(wide_compare_model, 1);
    if (!m) return;
    double a[C], b[R * C], y[R * C];
    rng_seed(16);
    for (int j = 0; j < C; j++) a[j] = (float)rng_range(-1, 1);
    for (int i = 0; i < R * C; i++) b[i] = (float)rng_range(-1, 1);
    for (int i = 0; i < R * C; i++) y[i] = !(-a[i % C] < b[i]);
    int64_t da[1] = {C}, db[2] = {R, C};
    kiln_value *in[2] = {input_f32(1, da, a), input_f32(2, db, b)};
    const double *want[1] = {y};
    size_t numel[1] = {R * C};
    check_runs(m, 2, in, 1, want, numel, 0, "wide comparison");
    uint64_t arena, sum;
    if (plan_of(m, &arena, &sum, "wide comparison"))
        /* Neg's float output and Less's bool output have equal bytes but not equal element
         * counts, so the planner does not share them (plan.c); Not shares Less's block. */
        CHECK(sum == 3 * 32 && arena == 128,
              "wide comparison: arena %llu, sum %llu; expected two 64-byte blocks for 3 x 32",
              (unsigned long long)arena, (unsigned long long)sum);
    kiln_value_free(in[0]);
    kiln_value_free(in[1]);
    kiln_model_free(m);
}

/* ------------------------------------------------------------------ views */

/* Reshape, Unsqueeze, Flatten, Squeeze, Identity, Dropout (inference: a copy) and Reshape
 * with -1 on one 480-byte block. */
static const char *const view_model =
    "opset 13\n"
    "input X f32 2,3,4,5\n"
    "init s1 i64 2 = 6,20\n"
    "init ax1 i64 1 = 1\n"
    "init ax2 i64 1 = 2\n"
    "init s2 i64 1 = -1\n"
    "node Neg X -> r0\n"
    "node Reshape r0,s1 -> r1\n"
    "node Unsqueeze r1,ax1 -> r2\n"
    "node Flatten r2 -> r3 axis=int:2\n"
    "node Unsqueeze r3,ax2 -> r4\n"
    "node Squeeze r4,ax2 -> r5\n"
    "node Identity r5 -> r6\n"
    "node Dropout r6 -> r7\n"
    "node Reshape r7,s2 -> r8\n"
    "node Sigmoid r8 -> Y\n"
    "output Y\n";

static void test_views(void)
{
    enum { N = 120 };
    kiln_model *m = load_text(view_model, 1);
    if (!m) return;
    double x[N], y[N];
    rng_seed(13);
    for (int i = 0; i < N; i++) x[i] = (float)rng_range(-3, 3);
    for (int i = 0; i < N; i++) y[i] = 1 / (1 + exp(x[i]));
    int64_t dims[4] = {2, 3, 4, 5};
    kiln_value *in = input_f32(4, dims, x);
    const double *want[1] = {y};
    size_t numel[1] = {N};
    check_runs(m, 1, &in, 1, want, numel, 1e-5, "view chain");
    uint64_t arena, sum, one = block(N * sizeof(float));
    if (plan_of(m, &arena, &sum, "view chain")) {
        CHECK(sum == 9 * N * sizeof(float), "view chain: planned sum %llu; expected 9 x %d",
              (unsigned long long)sum, (int)(N * sizeof(float)));
        CHECK(arena == one, "view chain: arena %llu bytes; in place should make it one block of %llu",
              (unsigned long long)arena, (unsigned long long)one);
    }
    kiln_value_free(in);
    kiln_model_free(m);
}

/* ------------------------------------------------------------------ Cast */

/* Casts between types of one size go in place: float32 -> int32 -> float32 over one block,
 * int64 -> float64 over another; the size-changing casts cannot. */
static const char *const cast_model =
    "opset 13\n"
    "input X f32 4,1000\n"
    "node Abs X -> t0\n"
    "node Cast t0 -> t1 to=int:6\n"
    "node Neg t1 -> t2\n"
    "node Cast t2 -> t3 to=int:1\n"
    "node Cast t3 -> t4 to=int:7\n"
    "node Cast t4 -> t5 to=int:11\n"
    "node Neg t5 -> t6\n"
    "node Cast t6 -> t7 to=int:1\n"
    "node Mul t7,X -> Y\n"
    "output Y\n";

static void test_cast(void)
{
    enum { N = 4000 };
    kiln_model *m = load_text(cast_model, 1);
    if (!m) return;
    double *x = alloc_doubles(N), *y = alloc_doubles(N);
    rng_seed(14);
    for (int i = 0; i < N; i++) x[i] = (double)(rng_int(101) - 50); /* exact in every type */
    for (int i = 0; i < N; i++) y[i] = fabs(x[i]) * x[i];            /* -(-|x|) * x */
    int64_t dims[2] = {4, 1000};
    kiln_value *in = input_f32(2, dims, x);
    const double *want[1] = {y};
    size_t numel[1] = {N};
    check_runs(m, 1, &in, 1, want, numel, 0, "Cast chain");
    /* Blocks: t0..t3 (16000 bytes), t4..t6 (32000), t7 (16000, may reuse t0's place). Without
     * in place t4 and t5 alone would need 64000. */
    uint64_t arena, sum;
    if (plan_of(m, &arena, &sum, "Cast chain")) {
        CHECK(sum == 4 * 16000 + 3 * 32000 + 16000, "Cast chain: planned sum %llu",
              (unsigned long long)sum);
        CHECK(arena <= 48000, "Cast chain: arena %llu bytes; in place needs at most 48000",
              (unsigned long long)arena);
    }
    kiln_value_free(in);
    kiln_model_free(m);
    free(x), free(y);
}

/* ------------------------------------------------------------------ symbolic batch */

/* X [N, 512]: the plan is made per run from the bound N; the in-place chain takes one block
 * of N * 512 floats. */
static void test_symbolic(void)
{
    enum { C = 512 };
    struct model md = fresh(17);
    input(&md, "X", KILN_DTYPE_F32, "N,512");
    input(&md, "V", KILN_DTYPE_F32, "512");
    struct pb *n;
    n = node("Abs", "X", "a");
    end_node(&md, n, NULL);
    n = node("Sub", "a,V", "b");
    end_node(&md, n, NULL);
    n = node("Relu", "b", "c");
    end_node(&md, n, NULL);
    n = node("Sigmoid", "c", "d");
    end_node(&md, n, NULL);
    n = node("Softmax", "d", "e");
    end_node(&md, n, NULL);
    n = node("Neg", "e", "Y");
    end_node(&md, n, NULL);
    output(&md, "Y");
    struct run r;
    if (!run(&md, &r)) return;
    kiln_engine *e = build_engine(r.km, "symbolic batch");
    double v[C];
    rng_seed(15);
    for (int j = 0; j < C; j++) v[j] = (float)rng_range(-1, 1);
    static const int64_t batches[] = {64, 16};
    for (int t = 0; t < 2; t++) {
        int64_t N = batches[t], dx[2] = {N, C}, dv[1] = {C};
        double *x = alloc_doubles((size_t)N * C), *y = alloc_doubles((size_t)N * C);
        for (size_t i = 0; i < (size_t)N * C; i++) x[i] = (float)rng_range(-2, 2);
        for (int64_t i = 0; i < N; i++) {
            double *row = y + (size_t)i * C, mx = -INFINITY, sum = 0;
            for (int j = 0; j < C; j++) {
                double b = fabs(x[(size_t)i * C + j]) - v[j];
                row[j] = 1 / (1 + exp(-(b < 0 ? 0 : b)));
                mx = fmax(mx, row[j]);
            }
            for (int j = 0; j < C; j++) sum += exp(row[j] - mx);
            for (int j = 0; j < C; j++) row[j] = -exp(row[j] - mx) / sum;
        }
        kiln_value *in[2] = {input_f32(2, dx, x), input_f32(1, dv, v)};
        const double *want[1] = {y};
        size_t numel[1] = {(size_t)N * C};
        char what[64];
        snprintf(what, sizeof what, "symbolic batch N=%lld", (long long)N);
        check_runs(r.km, 2, in, 1, want, numel, 1e-5, what);
        kiln_value *out[1];
        uint64_t arena = 0;
        if (e && run_context(e, 2, in, 1, out, &arena, what)) {
            kiln_value_free(out[0]);
            uint64_t one = block((uint64_t)N * C * sizeof(float));
            CHECK(arena == one, "%s: context arena %llu bytes; in place should make it %llu", what,
                  (unsigned long long)arena, (unsigned long long)one);
        }
        kiln_value_free(in[0]);
        kiln_value_free(in[1]);
        free(x), free(y);
    }
    kiln_engine_free(e);
    done(&r);
}

int main(void)
{
    test_chain();
    test_broadcast();
    test_small_first();
    test_wide_compare();
    test_views();
    test_cast();
    test_symbolic();
    return test_summary("test_inplace");
}
