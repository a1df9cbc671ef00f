/* test_engine.c: the engine runtime (kiln.h, "Engines"): builders, engines, contexts, events.
 *
 * Builder options are refused with messages that name the value and the rule (threads,
 * precisions, device, profile bounds, profiles that do not fit the model). A dynamic-batch
 * MLP (X [N,16] -> MatMul/Add/Relu/MatMul/Add/Tanh/Mul) built with profile min 1 / opt 8 /
 * max 32 runs batches 1, 5, 8 and 32 on one context without a new arena, equal to
 * kiln_session_run; batch 33 names the input, dim and bounds; a second profile admits what
 * the first does not. The builder's memory limit fails a build naming the profile; the
 * session limits (largest tensor, planned memory, subgraph depth) fail runs with
 * KILN_E_LIMIT. IO binding puts outputs into the caller's buffer. Asynchronous runs keep
 * their order, report failures through callbacks and events, and kiln_context_free drains a
 * queue. Eight contexts on one engine, one thread each, run 1000 inferences each with
 * results identical to a single-threaded run; one session run from several threads at once
 * gives the same results too; an engine freed before its contexts lives until the last one
 * is freed; a session keeps running after its model is inferred again; an engine file whose
 * tables ask for more than 1024 threads, or whose section lies in the header, is refused even
 * with matching checksums; and every
 * allocation of build, context, bound and enqueued runs may fail cleanly.
 *
 * Models are written in the text form of test_text_model.h (If/Loop ones with test_model.h).
 * CHECK is called from the main thread only: worker threads count their mismatches.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "exec/engine.h"
#include "kiln.h"
#include "test_model.h"
#include "test_support.h"
#include "test_text_model.h"

/* A dynamic-batch MLP: X [N,16] -> Y [N,16]. */
static const char *const MLP = "input X f32 N,16\n"
                               "init W1 f32 16,32 rand\n"
                               "init B1 f32 32 rand\n"
                               "init W2 f32 32,16 rand\n"
                               "init B2 f32 16 rand\n"
                               "node MatMul X,W1 -> H1\n"
                               "node Add H1,B1 -> H2\n"
                               "node Relu H2 -> H3\n"
                               "node MatMul H3,W2 -> H4\n"
                               "node Add H4,B2 -> H5\n"
                               "node Tanh H5 -> H6\n"
                               "node Mul H6,X -> Y\n"
                               "output Y\n";

/* A small model for the many-threads test: X [N,8] -> Y [N,8]. */
static const char *const SMALL = "input X f32 N,8\n"
                                 "init W f32 8,8 rand\n"
                                 "init B f32 8 rand\n"
                                 "node MatMul X,W -> H\n"
                                 "node Add H,B -> H2\n"
                                 "node Tanh H2 -> H3\n"
                                 "node Mul H3,X -> H4\n"
                                 "node Sigmoid H4 -> H5\n"
                                 "node Sub H5,H3 -> Y\n"
                                 "output Y\n";

/* Two convolutions for the many-threads test: X [N,8,16,16] -> Y [N,16,16,16]. At level
 * extended they run as kiln.ConvNhwc on oneDNN primitives shared by every context. */
static const char *const CONVS = "input X f32 N,8,16,16\n"
                                 "init W1 f32 16,8,3,3 rand\n"
                                 "init B1 f32 16 rand\n"
                                 "init W2 f32 16,16,3,3 rand\n"
                                 "node Conv X,W1,B1 -> H pads=ints:1,1,1,1\n"
                                 "node Relu H -> H2\n"
                                 "node Conv H2,W2 -> Y pads=ints:1,1,1,1\n"
                                 "output Y\n";

/* A product with a constant B, prepacked by oneDNN's matmul primitive: X [16,128] -> Y. */
static const char *const MATMUL = "input X f32 16,128\n"
                                  "init W f32 128,128 rand\n"
                                  "node MatMul X,W -> H\n"
                                  "node Relu H -> Y\n"
                                  "output Y\n";

/* The text model as a loaded model (random initializers drawn from seed). */
static kiln_model *load_text(const char *text, uint64_t seed)
{
    struct buf b = {0};
    rng_seed(seed);
    parse_model(text, &b);
    kiln_model *m = NULL;
    kiln_err err = {0};
    if (kiln_model_load_buffer(b.p, b.len, NULL, &m, &err)) {
        printf("FAIL: the test model does not load: %s\n", err.msg);
        exit(1);
    }
    free(b.p);
    return m;
}

static kiln_value *input_rows(int64_t rows, int64_t cols, uint64_t seed)
{
    int64_t dims[2] = {rows, cols};
    rng_seed(seed);
    return rand_tensor(2, dims);
}

/* a and b: float32 tensors of one shape, within tol * (1 + |b|) per element. */
static bool close_vals(const kiln_value *a, const kiln_value *b, double tol)
{
    if (!a || !b || kiln_value_rank(a) != kiln_value_rank(b) || kiln_value_numel(a) != kiln_value_numel(b))
        return false;
    for (int d = 0; d < kiln_value_rank(a); d++)
        if (kiln_value_dims(a)[d] != kiln_value_dims(b)[d]) return false;
    const float *x = kiln_value_data((kiln_value *)a), *y = kiln_value_data((kiln_value *)b);
    for (size_t i = 0; i < kiln_value_numel(a); i++)
        if (!(fabs((double)x[i] - y[i]) <= tol * (1 + fabs((double)y[i])))) return false;
    return true;
}

static bool same_bytes(const kiln_value *a, const kiln_value *b)
{
    if (!a || !b || kiln_value_rank(a) != kiln_value_rank(b) || kiln_value_numel(a) != kiln_value_numel(b))
        return false;
    for (int d = 0; d < kiln_value_rank(a); d++)
        if (kiln_value_dims(a)[d] != kiln_value_dims(b)[d]) return false;
    return memcmp(kiln_value_data((kiln_value *)a), kiln_value_data((kiln_value *)b), kiln_value_numel(a) * 4) == 0;
}

/* One input, one output. */
static kiln_status run1(kiln_context *c, const kiln_value *x, kiln_value **y, kiln_err *err)
{
    const kiln_value *in[1] = {x};
    return kiln_context_run(c, NULL, 1, NULL, in, 1, y, err);
}

static kiln_status srun1(kiln_session *s, const kiln_value *x, kiln_value **y, kiln_err *err)
{
    const kiln_value *in[1] = {x};
    return kiln_session_run(s, 1, NULL, in, 1, y, err);
}

#define EXPECT_ERR(expr, status, needle)                                                                   \
    do {                                                                                                   \
        kiln_err e_ = {0};                                                                                 \
        kiln_err *err_ = &e_;                                                                              \
        kiln_status st_ = (expr);                                                                          \
        CHECK(st_ == (status) && strstr(e_.msg, needle), "%s: got %s '%s'; expected %s with '%s'", #expr, \
              kiln_status_name(st_), e_.msg, kiln_status_name(status), needle);                            \
        (void)err_;                                                                                        \
    } while (0)

/* ------------------------------------------------------------------ builder options */

static void test_builder_options(void)
{
    kiln_builder *b = NULL;
    kiln_err err = {0};
    CHECK(kiln_builder_create(&b, &err) == KILN_OK, "%s", err.msg);
    if (!b) return;
    EXPECT_ERR(kiln_builder_set_threads(b, -1, err_), KILN_E_INVALID_ARG, "threads is -1; expected 0 (one per CPU) to 1024");
    EXPECT_ERR(kiln_builder_set_threads(b, 1025, err_), KILN_E_INVALID_ARG, "threads is 1025");
    CHECK(kiln_builder_set_threads(b, 1024, &err) == KILN_OK, "%s", err.msg);
    CHECK(kiln_builder_set_threads(b, 0, &err) == KILN_OK, "%s", err.msg);
    EXPECT_ERR(kiln_builder_set_precisions(b, 0, err_), KILN_E_UNSUPPORTED, "precisions 0x0 leave out fp32");
    EXPECT_ERR(kiln_builder_set_precisions(b, KILN_PRECISION_FP16 | KILN_PRECISION_INT8, err_), KILN_E_UNSUPPORTED,
               "precisions 0xa leave out fp32");
    EXPECT_ERR(kiln_builder_set_precisions(b, KILN_PRECISION_FP32 | 0x100, err_), KILN_E_INVALID_ARG,
               "unknown precision bits in 0x101");
    CHECK(kiln_builder_set_precisions(b, KILN_PRECISION_FP32 | KILN_PRECISION_FP16, &err) == KILN_OK, "%s", err.msg);
    EXPECT_ERR(kiln_builder_set_device(b, "cuda", err_), KILN_E_UNSUPPORTED,
               "device 'cuda' is not built into this kiln (it has: cpu");
    EXPECT_ERR(kiln_builder_set_device(b, NULL, err_), KILN_E_UNSUPPORTED, "device '(null)'");
    CHECK(kiln_builder_set_device(b, "cpu", &err) == KILN_OK, "%s", err.msg);

    /* Profile bounds */
    int64_t mn[2] = {4, 16}, op[2] = {2, 16}, mx[2] = {8, 16};
    EXPECT_ERR(kiln_builder_add_profile(b, "p", "X", 2, mn, op, mx, err_), KILN_E_INVALID_ARG,
               "profile 'p' input 'X' dim 0: min 4, opt 2, max 8; expected 0 <= min <= opt <= max");
    mn[0] = -1;
    EXPECT_ERR(kiln_builder_add_profile(b, "p", "X", 2, mn, op, mx, err_), KILN_E_INVALID_ARG, "dim 0: min -1");
    mn[0] = 1, op[0] = 9;
    EXPECT_ERR(kiln_builder_add_profile(b, "p", "X", 2, mn, op, mx, err_), KILN_E_INVALID_ARG, "opt 9, max 8");
    op[0] = 4;
    EXPECT_ERR(kiln_builder_add_profile(b, "p", "X", 17, mn, op, mx, err_), KILN_E_INVALID_ARG, "bad arguments (rank 17)");
    EXPECT_ERR(kiln_builder_add_profile(b, "p", "X", -1, mn, op, mx, err_), KILN_E_INVALID_ARG, "bad arguments (rank -1)");
    EXPECT_ERR(kiln_builder_add_profile(b, "p", "X", 2, NULL, op, mx, err_), KILN_E_INVALID_ARG, "bad arguments");
    EXPECT_ERR(kiln_builder_add_profile(b, NULL, "X", 2, mn, op, mx, err_), KILN_E_INVALID_ARG, "bad arguments");
    CHECK(kiln_builder_add_profile(b, "p", "X", 2, mn, op, mx, &err) == KILN_OK, "%s", err.msg);
    EXPECT_ERR(kiln_builder_add_profile(b, "p", "X", 2, mn, op, mx, err_), KILN_E_INVALID_ARG,
               "profile 'p' already bounds input 'X'");
    kiln_engine *e = NULL;
    EXPECT_ERR(kiln_builder_build(NULL, NULL, &e, err_), KILN_E_INVALID_ARG, "no builder or model");
    EXPECT_ERR(kiln_builder_build_file(b, "/nonexistent/model.onnx", &e, err_), KILN_E_IO, "/nonexistent/model.onnx");
    CHECK(e == NULL, "a failed build gave an engine");
    kiln_builder_free(b);

    /* Profiles checked against the model at build. */
    kiln_model *m = load_text(MLP, 1);
    struct {
        const char *input;
        int rank;
        int64_t lo1, hi1;
        const char *needle;
    } bad[] = {
        {"Q", 2, 16, 16, "build: profile 'p' bounds input 'Q', which the model lacks"},
        {"X", 3, 16, 16, "build: profile 'p' gives input 'X' rank 3; the model declares rank 2"},
        {"X", 2, 8, 16, "build: profile 'p' input 'X' dim 1 spans 8 to 16; the model fixes it at 16"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int64_t lo[3] = {1, bad[i].lo1, 1}, hi[3] = {8, bad[i].hi1, 1};
        CHECK(kiln_builder_create(&b, &err) == KILN_OK, "%s", err.msg);
        CHECK(kiln_builder_add_profile(b, "p", bad[i].input, bad[i].rank, lo, hi, hi, &err) == KILN_OK, "%s", err.msg);
        EXPECT_ERR(kiln_builder_build(b, m, &e, err_), KILN_E_INVALID_ARG, bad[i].needle);
        CHECK(e == NULL, "a failed build gave an engine");
        kiln_builder_free(b);
    }
    /* Limits: a negative depth is refused, as kiln_session_create does. */
    CHECK(kiln_builder_create(&b, &err) == KILN_OK, "%s", err.msg);
    kiln_builder_set_limits(b, 0, 0, -1);
    EXPECT_ERR(kiln_builder_build(b, m, &e, err_), KILN_E_INVALID_ARG, "max_depth is -1; expected 0 (64) or more");
    kiln_builder_free(b);
    kiln_model_free(m);
}

/* ------------------------------------------------------------------ dynamic batch, profiles */

/* The builder for MLP with profile `name` over X [lo..hi, 16] (opt `opt`), one thread. */
static kiln_builder *mlp_builder(const char *name, int64_t lo, int64_t opt, int64_t hi)
{
    kiln_builder *b = NULL;
    kiln_err err = {0};
    int64_t mn[2] = {lo, 16}, op[2] = {opt, 16}, mx[2] = {hi, 16};
    if (kiln_builder_create(&b, &err) || kiln_builder_set_threads(b, 1, &err) ||
        kiln_builder_add_profile(b, name, "X", 2, mn, op, mx, &err)) {
        printf("FAIL: builder: %s\n", err.msg);
        exit(1);
    }
    return b;
}

static void log_line(void *user, const char *msg)
{
    char *log = user;
    size_t l = strlen(log);
    snprintf(log + l, 4096 - l, "%s\n", msg);
}

static void test_dynamic_batch(void)
{
    kiln_model *m = load_text(MLP, 2);
    kiln_session *s = NULL;
    kiln_session_options so = {.threads = 1};
    kiln_err err = {0};
    CHECK(kiln_session_create(m, &so, &s, &err) == KILN_OK, "%s", err.msg);
    kiln_builder *b = mlp_builder("p", 1, 8, 32);
    static char log[4096];
    kiln_builder_set_log(b, log_line, log, 0);
    kiln_engine *e = NULL;
    CHECK(kiln_builder_build(b, m, &e, &err) == KILN_OK, "%s", err.msg);
    kiln_builder_free(b);
    if (!e || !s) goto done;
    CHECK(strstr(log, "profile 'p': planned arena") != NULL, "build log: %s", log);
    CHECK(kiln_engine_profile_count(e) == 1 && strcmp(kiln_engine_profile_name(e, 0), "p") == 0,
          "profiles: %zu", kiln_engine_profile_count(e));
    CHECK(kiln_engine_profile_name(e, 1) == NULL, "profile 1 has a name");
    uint64_t arena = 0, sum = 0;
    kiln_engine_profile_memory(e, 0, &arena, &sum);
    CHECK(arena > 0 && arena <= sum, "profile memory: arena %llu, sum %llu", (unsigned long long)arena,
          (unsigned long long)sum);
    CHECK(kiln_engine_threads(e) == 1, "threads %d", kiln_engine_threads(e));
    const char *be = NULL, *kern = NULL, *variant = NULL;
    kiln_engine_node_kernel(e, 0, &be, &kern, &variant);
    CHECK(be && !strcmp(be, "cpu") && kern, "node 0 runs on %s, kernel %s", be ? be : "(none)", kern ? kern : "(none)");
    kiln_engine_node_kernel(e, 1000, &be, &kern, &variant);
    CHECK(!be && !kern && !variant, "node 1000 has a kernel");
    CHECK(kiln_model_input_count(kiln_engine_model(e)) == 1, "the engine's model has %zu inputs",
          kiln_model_input_count(kiln_engine_model(e)));

    kiln_context *c = NULL;
    CHECK(kiln_context_create(e, &c, &err) == KILN_OK, "%s", err.msg);
    if (!c) goto done;
    /* The arena for the largest shapes is there from the start; no run replaces it. */
    uint8_t *arena0 = c->arena;
    CHECK(arena0 && c->arena_size == arena, "context arena %zu bytes, the profile's %llu", c->arena_size,
          (unsigned long long)arena);
    static const int64_t batches[] = {1, 5, 8, 32, 5, 1};
    for (size_t i = 0; i < sizeof batches / sizeof *batches; i++) {
        kiln_value *x = input_rows(batches[i], 16, 100 + i), *y = NULL, *want = NULL;
        CHECK(run1(c, x, &y, &err) == KILN_OK, "batch %lld: %s", (long long)batches[i], err.msg);
        CHECK(srun1(s, x, &want, &err) == KILN_OK, "session, batch %lld: %s", (long long)batches[i], err.msg);
        CHECK(close_vals(y, want, 1e-5), "batch %lld: the engine and kiln_session_run differ", (long long)batches[i]);
        CHECK(c->arena == arena0 && c->arena_size == arena, "batch %lld: the context's arena changed",
              (long long)batches[i]);
        CHECK(c->profile == 0, "batch %lld: profile %d", (long long)batches[i], c->profile);
        CHECK(kiln_context_arena_bytes(c) <= arena && kiln_context_arena_bytes(c) > 0, "arena of the run: %llu",
              (unsigned long long)kiln_context_arena_bytes(c));
        kiln_value_free(x), kiln_value_free(y), kiln_value_free(want);
    }
    /* Outside the profile */
    kiln_value *x = input_rows(33, 16, 7), *y = NULL;
    kiln_status st = run1(c, x, &y, &err);
    CHECK(st == KILN_E_INVALID_ARG && strstr(err.msg, "input 'X' dim 0 is 33") && strstr(err.msg, "profile 'p'") &&
              strstr(err.msg, "(1 to 32)"),
          "batch 33: %s '%s'", kiln_status_name(st), err.msg);
    CHECK(y == NULL, "a failed run left an output");
    kiln_value_free(x);
    x = input_rows(0, 16, 7);
    st = run1(c, x, &y, &err);
    CHECK(st == KILN_E_INVALID_ARG && strstr(err.msg, "dim 0 is 0"), "batch 0: %s '%s'", kiln_status_name(st), err.msg);
    kiln_value_free(x);
    x = input_rows(4, 8, 7);
    st = run1(c, x, &y, &err);
    CHECK(st == KILN_E_INVALID_ARG && strstr(err.msg, "input 'X'") && strstr(err.msg, "dim 1 is 8, expected 16"),
          "width 8: %s '%s'", kiln_status_name(st), err.msg);
    kiln_value_free(x);
    /* Wrong output count, no context */
    x = input_rows(4, 16, 7);
    const kiln_value *in[1] = {x};
    kiln_value *outs[2] = {0};
    EXPECT_ERR(kiln_context_run(c, NULL, 1, NULL, in, 2, outs, err_), KILN_E_INVALID_ARG, "2 output slots given");
    EXPECT_ERR(kiln_context_run(NULL, NULL, 1, NULL, in, 1, outs, err_), KILN_E_INVALID_ARG, "no context");
    /* And the context still runs. */
    CHECK(run1(c, x, &y, &err) == KILN_OK, "after errors: %s", err.msg);
    kiln_value_free(y);
    kiln_value_free(x);
    kiln_context_free(c);
done:
    kiln_engine_free(e);
    kiln_session_free(s);
    kiln_model_free(m);
}

static void test_two_profiles(void)
{
    kiln_model *m = load_text(MLP, 3);
    kiln_session *s = NULL;
    kiln_session_options so = {.threads = 1};
    kiln_err err = {0};
    CHECK(kiln_session_create(m, &so, &s, &err) == KILN_OK, "%s", err.msg);
    kiln_builder *b = mlp_builder("small", 1, 4, 8);
    int64_t mn[2] = {9, 16}, op[2] = {32, 16}, mx[2] = {64, 16};
    CHECK(kiln_builder_add_profile(b, "large", "X", 2, mn, op, mx, &err) == KILN_OK, "%s", err.msg);
    kiln_engine *e = NULL;
    CHECK(kiln_builder_build(b, m, &e, &err) == KILN_OK, "%s", err.msg);
    kiln_builder_free(b);
    kiln_context *c = NULL;
    if (e) CHECK(kiln_context_create(e, &c, &err) == KILN_OK, "%s", err.msg);
    if (!c || !s) goto done;
    CHECK(kiln_engine_profile_count(e) == 2 && !strcmp(kiln_engine_profile_name(e, 0), "small") &&
              !strcmp(kiln_engine_profile_name(e, 1), "large"),
          "profiles");
    uint64_t a0, s0, a1, s1;
    kiln_engine_profile_memory(e, 0, &a0, &s0);
    kiln_engine_profile_memory(e, 1, &a1, &s1);
    CHECK(a0 > 0 && a0 < a1 && a0 <= s0 && a1 <= s1, "profile memory: small %llu/%llu, large %llu/%llu",
          (unsigned long long)a0, (unsigned long long)s0, (unsigned long long)a1, (unsigned long long)s1);
    CHECK(c->arena_size == a1, "the context's arena (%zu) is not the largest profile's (%llu)", c->arena_size,
          (unsigned long long)a1);
    static const int64_t batches[] = {4, 40, 8, 9, 64, 1};
    static const int profile[] = {0, 1, 0, 1, 1, 0};
    for (size_t i = 0; i < 6; i++) {
        kiln_value *x = input_rows(batches[i], 16, 200 + i), *y = NULL, *want = NULL;
        CHECK(run1(c, x, &y, &err) == KILN_OK, "batch %lld: %s", (long long)batches[i], err.msg);
        CHECK(c->profile == profile[i], "batch %lld ran under profile %d", (long long)batches[i], c->profile);
        CHECK(srun1(s, x, &want, &err) == KILN_OK, "%s", err.msg);
        CHECK(close_vals(y, want, 1e-5), "batch %lld: the engine and the session differ", (long long)batches[i]);
        kiln_value_free(x), kiln_value_free(y), kiln_value_free(want);
    }
    kiln_value *x = input_rows(65, 16, 7), *y = NULL;
    kiln_status st = run1(c, x, &y, &err);
    CHECK(st == KILN_E_INVALID_ARG && strstr(err.msg, "input 'X' dim 0 is 65") && strstr(err.msg, "no other profile"),
          "batch 65: %s '%s'", kiln_status_name(st), err.msg);
    kiln_value_free(x);
done:
    kiln_context_free(c);
    kiln_engine_free(e);
    kiln_session_free(s);
    kiln_model_free(m);
}

/* One profile of one shape (min == max): the build fixes the model's input to it, so the
 * engine's graph is static (its model declares the dim; kernels prepare for it), runs that
 * shape as the session does and refuses others. */
static void test_single_shape_profile(void)
{
    kiln_model *m = load_text(MLP, 2);
    kiln_session *s = NULL;
    kiln_session_options so = {.threads = 1};
    kiln_err err = {0};
    CHECK(kiln_session_create(m, &so, &s, &err) == KILN_OK, "%s", err.msg);
    CHECK(kiln_model_input_dim(m, 0, 0, NULL) < 0, "the test model's batch dim should be symbolic");
    kiln_builder *b = mlp_builder("one", 6, 6, 6);
    kiln_engine *e = NULL;
    CHECK(kiln_builder_build(b, m, &e, &err) == KILN_OK, "%s", err.msg);
    kiln_builder_free(b);
    kiln_context *c = NULL;
    if (e) CHECK(kiln_context_create(e, &c, &err) == KILN_OK, "%s", err.msg);
    if (!c || !s) goto done;
    CHECK(kiln_model_input_dim(kiln_engine_model(e), 0, 0, NULL) == 6,
          "the engine's model declares batch %lld, expected the profile's 6",
          (long long)kiln_model_input_dim(kiln_engine_model(e), 0, 0, NULL));
    CHECK(kiln_model_input_dim(m, 0, 0, NULL) < 0, "building changed the caller's model");
    CHECK(kiln_engine_profile_count(e) == 1, "profiles: %zu", kiln_engine_profile_count(e));
    kiln_value *x = input_rows(6, 16, 300), *y = NULL, *want = NULL;
    CHECK(run1(c, x, &y, &err) == KILN_OK, "batch 6: %s", err.msg);
    CHECK(srun1(s, x, &want, &err) == KILN_OK, "%s", err.msg);
    CHECK(y && want && close_vals(y, want, 1e-5), "batch 6: the engine and the session differ");
    kiln_value_free(x), kiln_value_free(y), kiln_value_free(want);
    x = input_rows(5, 16, 301);
    y = NULL;
    kiln_status st = run1(c, x, &y, &err);
    CHECK(st == KILN_E_INVALID_ARG && strstr(err.msg, "input 'X'") && strstr(err.msg, "dim 0 is 5"),
          "batch 5: %s '%s'", kiln_status_name(st), err.msg);
    CHECK(y == NULL, "a failed run left an output");
    kiln_value_free(x);
done:
    kiln_context_free(c);
    kiln_engine_free(e);
    kiln_session_free(s);
    kiln_model_free(m);
}

static void test_memory_limit(void)
{
    kiln_model *m = load_text(MLP, 4);
    kiln_err err = {0};
    kiln_engine *e = NULL;
    /* Profile "big": X up to [1024,16]; H1..H3 alone take 128 KiB. */
    kiln_builder *b = mlp_builder("big", 1, 64, 1024);
    kiln_builder_set_memory_limit(b, 65536);
    kiln_status st = kiln_builder_build(b, m, &e, &err);
    CHECK(st == KILN_E_LIMIT && strstr(err.msg, "profile 'big' needs") && strstr(err.msg, "the memory limit is 65536 bytes"),
          "memory limit: %s '%s'", kiln_status_name(st), err.msg);
    CHECK(e == NULL, "a failed build gave an engine");
    kiln_builder_set_memory_limit(b, 1 << 20);
    CHECK(kiln_builder_build(b, m, &e, &err) == KILN_OK, "%s", err.msg);
    uint64_t arena = 0, sum = 0;
    kiln_engine_profile_memory(e, 0, &arena, &sum);
    CHECK(arena > 65536 && arena <= (1 << 20) && arena <= sum, "arena %llu, sum %llu", (unsigned long long)arena,
          (unsigned long long)sum);
    kiln_engine_free(e);
    e = NULL;
    kiln_builder_free(b);
    kiln_model_free(m);

    /* A static model: one unnamed plan. */
    m = load_text("input X f32 64,64\nnode Relu X -> A\nnode Sigmoid A -> B\nnode Tanh B -> Y\noutput Y\n", 5);
    CHECK(kiln_builder_create(&b, &err) == KILN_OK, "%s", err.msg);
    kiln_builder_set_memory_limit(b, 1000);
    st = kiln_builder_build(b, m, &e, &err);
    /* A and B (16 KiB each) share one block: Sigmoid runs in place over Relu's output. */
    CHECK(st == KILN_E_LIMIT && strstr(err.msg, "the plan needs 16384 bytes") && strstr(err.msg, "limit is 1000 bytes"),
          "static memory limit: %s '%s'", kiln_status_name(st), err.msg);
    kiln_builder_set_memory_limit(b, 0);
    CHECK(kiln_builder_build(b, m, &e, &err) == KILN_OK, "%s", err.msg);
    CHECK(kiln_engine_profile_count(e) == 1 && !strcmp(kiln_engine_profile_name(e, 0), ""), "static profiles");
    kiln_engine_profile_memory(e, 0, &arena, &sum);
    CHECK(arena == 16384 && sum == 32768, "static: arena %llu, sum %llu", (unsigned long long)arena,
          (unsigned long long)sum);
    kiln_engine_free(e);
    kiln_builder_free(b);
    kiln_model_free(m);
}

/* ------------------------------------------------------------------ session limits */

/* X [4,16] -> A [4,16] (256 B) -> B = Concat x4 [16,16] (1 KiB) -> C = Sigmoid(B) -> Y [16]. */
static const char *const WIDE = "input X f32 4,16\n"
                                "init AX i64 1 = 0\n"
                                "node Relu X -> A\n"
                                "node Concat A,A,A,A -> B axis=int:0\n"
                                "node Sigmoid B -> C\n"
                                "node ReduceSum C,AX -> Y keepdims=int:0\n"
                                "output Y\n";

static kiln_status run_wide(kiln_session *s, kiln_err *err)
{
    kiln_value *x = input_rows(4, 16, 3), *y = NULL;
    kiln_status st = srun1(s, x, &y, err);
    kiln_value_free(x);
    kiln_value_free(y);
    return st;
}

static void test_session_limits(void)
{
    kiln_model *m = load_text(WIDE, 6);
    kiln_err err = {0};
    kiln_session *s = NULL;
    /* The largest tensor: B and C take 1 KiB each (planned in the arena, still counted). */
    kiln_session_options so = {.threads = 1, .max_tensor_bytes = 512};
    CHECK(kiln_session_create(m, &so, &s, &err) == KILN_OK, "%s", err.msg);
    kiln_status st = s ? run_wide(s, &err) : KILN_E_INTERNAL;
    CHECK(st == KILN_E_LIMIT && strstr(err.msg, "Concat node 'n1'") && strstr(err.msg, "1024 bytes") &&
              strstr(err.msg, "limit for one tensor is 512 bytes"),
          "max_tensor_bytes 512: %s '%s'", kiln_status_name(st), err.msg);
    kiln_session_free(s);
    so.max_tensor_bytes = 1024;
    CHECK(kiln_session_create(m, &so, &s, &err) == KILN_OK, "%s", err.msg);
    CHECK(s && run_wide(s, &err) == KILN_OK, "max_tensor_bytes 1024: %s", err.msg);
    kiln_session_free(s);
    /* The output itself (from the heap) is over the limit too. */
    kiln_model *m2 = load_text("input X f32 4,16\nnode Relu X -> Y\noutput Y\n", 6);
    so.max_tensor_bytes = 255;
    CHECK(kiln_session_create(m2, &so, &s, &err) == KILN_OK, "%s", err.msg);
    st = s ? run_wide(s, &err) : KILN_E_INTERNAL;
    CHECK(st == KILN_E_LIMIT && strstr(err.msg, "Relu node 'n0'") && strstr(err.msg, "limit for one tensor is 255"),
          "output over max_tensor_bytes: %s '%s'", kiln_status_name(st), err.msg);
    kiln_session_free(s);
    kiln_model_free(m2);

    /* Planned memory: A 256 B, B and C 1 KiB, alive together in pairs: 2 KiB or more. */
    so = (kiln_session_options){.threads = 1, .max_memory_bytes = 1024};
    CHECK(kiln_session_create(m, &so, &s, &err) == KILN_OK, "%s", err.msg);
    st = s ? run_wide(s, &err) : KILN_E_INTERNAL;
    CHECK(st == KILN_E_LIMIT && strstr(err.msg, "the planned intermediates need") &&
              strstr(err.msg, "memory limit is 1024 bytes"),
          "max_memory_bytes 1024: %s '%s'", kiln_status_name(st), err.msg);
    kiln_session_free(s);
    so.max_memory_bytes = 1 << 20;
    CHECK(kiln_session_create(m, &so, &s, &err) == KILN_OK, "%s", err.msg);
    CHECK(s && run_wide(s, &err) == KILN_OK, "max_memory_bytes 1 MiB: %s", err.msg);
    kiln_session_free(s);

    /* The same limits through a builder: a context on the engine obeys them, and does not
     * take an arena above the memory limit when it is created. */
    kiln_builder *b = NULL;
    kiln_engine *e = NULL;
    kiln_context *c = NULL;
    CHECK(kiln_builder_create(&b, &err) == KILN_OK, "%s", err.msg);
    kiln_builder_set_opt_level(b, KILN_OPT_NONE);
    kiln_builder_set_limits(b, 512, 0, 0);
    CHECK(kiln_builder_build(b, m, &e, &err) == KILN_OK, "%s", err.msg);
    CHECK(e && kiln_context_create(e, &c, &err) == KILN_OK, "%s", err.msg);
    if (c) {
        kiln_value *x = input_rows(4, 16, 3), *y = NULL;
        st = run1(c, x, &y, &err);
        CHECK(st == KILN_E_LIMIT && strstr(err.msg, "limit for one tensor is 512 bytes"), "builder limits: %s '%s'",
              kiln_status_name(st), err.msg);
        kiln_value_free(x);
    }
    kiln_context_free(c);
    kiln_engine_free(e);
    c = NULL, e = NULL;
    kiln_builder_set_limits(b, 0, 1024, 0);
    CHECK(kiln_builder_build(b, m, &e, &err) == KILN_OK, "%s", err.msg);
    CHECK(e && kiln_context_create(e, &c, &err) == KILN_OK, "%s", err.msg);
    if (c) {
        CHECK(c->arena == NULL, "a context took an arena of %zu bytes over the 1024-byte limit", c->arena_size);
        kiln_value *x = input_rows(4, 16, 3), *y = NULL;
        st = run1(c, x, &y, &err);
        CHECK(st == KILN_E_LIMIT && strstr(err.msg, "memory limit is 1024 bytes"), "builder memory limit: %s '%s'",
              kiln_status_name(st), err.msg);
        kiln_value_free(x);
    }
    kiln_context_free(c);
    kiln_engine_free(e);
    kiln_builder_free(b);

    so = (kiln_session_options){.max_depth = -1};
    EXPECT_ERR(kiln_session_create(m, &so, &s, err_), KILN_E_INVALID_ARG, "max_depth is -1");
    kiln_model_free(m);
}

/* If(C) { If(C) { X + X } else { -X } } else { |X| }: two levels when C is true, one when
 * it is false. */
static kiln_model *nested_if_model(void)
{
    struct model inner_t = fresh(17), inner_e = fresh(17), outer_t = fresh(17), outer_e = fresh(17), m = fresh(17);
    end_node(&inner_t, node("Add", "X,X", "T"), NULL);
    output(&inner_t, "T");
    end_node(&inner_e, node("Neg", "X", "U"), NULL);
    output(&inner_e, "U");
    struct pb *n = node("If", "C", "V");
    at_g(n, "then_branch", &inner_t);
    at_g(n, "else_branch", &inner_e);
    end_node(&outer_t, n, NULL);
    output(&outer_t, "V");
    end_node(&outer_e, node("Abs", "X", "W"), NULL);
    output(&outer_e, "W");
    input(&m, "X", KILN_DTYPE_F32, "4");
    input(&m, "C", KILN_DTYPE_BOOL, "");
    n = node("If", "C", "Y");
    at_g(n, "then_branch", &outer_t);
    at_g(n, "else_branch", &outer_e);
    end_node(&m, n, NULL);
    output(&m, "Y");
    struct run r;
    if (!run(&m, &r)) exit(1);
    return r.km;
}

/* Loop 3 times { If(cond) { acc + X } else { acc - X } }: the If is two levels deep. */
static kiln_model *loop_if_model(void)
{
    struct model br_t = fresh(17), br_e = fresh(17), body = fresh(17), m = fresh(17);
    end_node(&br_t, node("Add", "acc,X", "T"), NULL);
    output(&br_t, "T");
    end_node(&br_e, node("Sub", "acc,X", "U"), NULL);
    output(&br_e, "U");
    input(&body, "i", KILN_DTYPE_I64, "");
    input(&body, "cin", KILN_DTYPE_BOOL, "");
    input(&body, "acc", KILN_DTYPE_F32, "4");
    end_node(&body, node("Identity", "cin", "cout"), NULL);
    struct pb *n = node("If", "cin", "acc2");
    at_g(n, "then_branch", &br_t);
    at_g(n, "else_branch", &br_e);
    end_node(&body, n, NULL);
    output(&body, "cout");
    output(&body, "acc2");
    int64_t three = 3;
    input(&m, "X", KILN_DTYPE_F32, "4");
    init_i64(&m, "M", -1, &three);
    n = node("Loop", "M,,X", "Y");
    at_g(n, "body", &body);
    end_node(&m, n, NULL);
    output(&m, "Y");
    struct run r;
    if (!run(&m, &r)) exit(1);
    return r.km;
}

static kiln_status run_depth(kiln_model *m, int max_depth, int cond, kiln_value **y, kiln_err *err)
{
    kiln_session_options so = {.threads = 1, .max_depth = max_depth};
    kiln_session *s = NULL;
    kiln_status st = kiln_session_create(m, &so, &s, err);
    if (st) return st;
    double xv[4] = {1, -2, 3, -4};
    kiln_value *x = vec_f64(KILN_DTYPE_F32, 4, xv), *c = scalar(KILN_DTYPE_BOOL, cond);
    const kiln_value *in[2] = {x, c};
    st = kiln_session_run(s, kiln_model_input_count(m), NULL, in, 1, y, err);
    kiln_value_free(x);
    kiln_value_free(c);
    kiln_session_free(s);
    return st;
}

static void test_max_depth(void)
{
    kiln_model *m = nested_if_model();
    kiln_err err = {0};
    kiln_value *y = NULL;
    kiln_status st = run_depth(m, 1, 1, &y, &err);
    CHECK(st == KILN_E_LIMIT && strstr(err.msg, "subgraphs nest deeper than 1 levels") && strstr(err.msg, "If node"),
          "nested If, max_depth 1: %s '%s'", kiln_status_name(st), err.msg);
    CHECK(y == NULL, "a failed run left an output");
    double two_x[4] = {2, -4, 6, -8}, abs_x[4] = {1, 2, 3, 4};
    CHECK(run_depth(m, 1, 0, &y, &err) == KILN_OK, "one level under max_depth 1: %s", err.msg);
    CHECK(close_to(y, abs_x, 4, 0, "|X|"), "else branch");
    kiln_value_free(y);
    y = NULL;
    CHECK(run_depth(m, 2, 1, &y, &err) == KILN_OK, "nested If, max_depth 2: %s", err.msg);
    CHECK(close_to(y, two_x, 4, 0, "X + X"), "nested then branch");
    kiln_value_free(y);
    y = NULL;
    CHECK(run_depth(m, 0, 1, &y, &err) == KILN_OK, "nested If, default depth: %s", err.msg);
    kiln_value_free(y);
    y = NULL;
    kiln_model_free(m);

    m = loop_if_model();
    st = run_depth(m, 1, 0, &y, &err);
    CHECK(st == KILN_E_LIMIT && strstr(err.msg, "subgraphs nest deeper than 1 levels"), "Loop { If }, max_depth 1: %s '%s'",
          kiln_status_name(st), err.msg);
    double four_x[4] = {4, -8, 12, -16};
    CHECK(run_depth(m, 2, 0, &y, &err) == KILN_OK, "Loop { If }, max_depth 2: %s", err.msg);
    CHECK(close_to(y, four_x, 4, 1e-6, "X + 3X"), "Loop { If } result");
    kiln_value_free(y);
    kiln_model_free(m);
}

/* ------------------------------------------------------------------ IO binding */

static kiln_engine *mlp_engine(uint64_t seed, int threads, kiln_model **model)
{
    kiln_model *m = load_text(MLP, seed);
    kiln_builder *b = mlp_builder("p", 1, 8, 32);
    kiln_err err = {0};
    kiln_engine *e = NULL;
    if (threads != 1 && kiln_builder_set_threads(b, threads, &err)) exit(1);
    CHECK(kiln_builder_build(b, m, &e, &err) == KILN_OK, "%s", err.msg);
    kiln_builder_free(b);
    if (model) *model = m;
    else kiln_model_free(m);
    return e;
}

static void test_io_binding(void)
{
    kiln_engine *e = mlp_engine(8, 1, NULL);
    kiln_context *c = NULL;
    kiln_err err = {0};
    if (!e || kiln_context_create(e, &c, &err)) {
        CHECK(0, "%s", err.msg);
        kiln_engine_free(e);
        return;
    }
    static float buf[8 * 16 + 16];
    for (size_t i = 0; i < sizeof buf / sizeof *buf; i++) buf[i] = -99.0f;
    kiln_value *x8 = input_rows(8, 16, 1), *x5 = input_rows(5, 16, 2), *x9 = input_rows(9, 16, 3);
    kiln_value *want8 = NULL, *want5 = NULL, *y = NULL;
    CHECK(run1(c, x8, &want8, &err) == KILN_OK, "%s", err.msg);
    CHECK(run1(c, x5, &want5, &err) == KILN_OK, "%s", err.msg);
    CHECK(kiln_context_bind_output(c, 0, buf, 8 * 16 * 4, &err) == KILN_OK, "%s", err.msg);
    CHECK(run1(c, x8, &y, &err) == KILN_OK, "bound run: %s", err.msg);
    CHECK(y && kiln_value_data(y) == (void *)buf, "the output does not view the bound buffer");
    CHECK(same_bytes(y, want8), "bound output differs");
    kiln_value_free(y);
    y = NULL;
    CHECK(memcmp(buf, kiln_value_data(want8), 8 * 16 * 4) == 0 && buf[8 * 16] == -99.0f,
          "the buffer after kiln_value_free");
    CHECK(run1(c, x5, &y, &err) == KILN_OK, "smaller output: %s", err.msg);
    CHECK(y && kiln_value_data(y) == (void *)buf && same_bytes(y, want5), "smaller output into the buffer");
    kiln_value_free(y);
    y = NULL;
    kiln_status st = run1(c, x9, &y, &err);
    CHECK(st == KILN_E_INVALID_ARG && strstr(err.msg, "output 'Y' takes 576 bytes; its bound buffer has 512"),
          "too small a buffer: %s '%s'", kiln_status_name(st), err.msg);
    CHECK(y == NULL, "a failed run left an output");
    EXPECT_ERR(kiln_context_bind_output(c, 1, buf, 4, err_), KILN_E_INVALID_ARG, "output 1 of 1");
    EXPECT_ERR(kiln_context_bind_output(NULL, 0, buf, 4, err_), KILN_E_INVALID_ARG, "no context");
    /* Asynchronous runs write into the bound buffer too. */
    kiln_event *ev = NULL;
    const kiln_value *in8[1] = {x8};
    CHECK(kiln_context_enqueue(c, NULL, 1, NULL, in8, 1, &y, NULL, NULL, &ev, &err) == KILN_OK, "%s", err.msg);
    CHECK(kiln_event_wait(ev, &err) == KILN_OK, "%s", err.msg);
    kiln_event_free(ev);
    CHECK(y && kiln_value_data(y) == (void *)buf && same_bytes(y, want8), "enqueued run into the buffer");
    kiln_value_free(y);
    y = NULL;
    /* Unbound: kiln's memory again. */
    CHECK(kiln_context_bind_output(c, 0, NULL, 0, &err) == KILN_OK, "%s", err.msg);
    CHECK(run1(c, x9, &y, &err) == KILN_OK, "%s", err.msg);
    CHECK(y && kiln_value_data(y) != (void *)buf, "an unbound output views the buffer");
    kiln_value_free(y);
    kiln_value_free(x8), kiln_value_free(x5), kiln_value_free(x9);
    kiln_value_free(want8), kiln_value_free(want5);
    kiln_context_free(c);
    kiln_engine_free(e);
}

/* ------------------------------------------------------------------ asynchronous runs */

struct async_log {
    pthread_mutex_t mu;
    int order[128];
    kiln_status status[128];
    char msg[128][1024];
    int n;
};

struct async_job {
    struct async_log *log;
    int id;
};

static void on_done(void *user, kiln_status st, const char *msg)
{
    struct async_job *j = user;
    struct async_log *l = j->log;
    pthread_mutex_lock(&l->mu);
    if (l->n < 128) {
        l->order[l->n] = j->id;
        l->status[j->id] = st;
        snprintf(l->msg[j->id], sizeof l->msg[j->id], "%s", msg ? msg : "(null)");
        l->n++;
    }
    pthread_mutex_unlock(&l->mu);
}

static void test_async(void)
{
    kiln_model *m = NULL;
    kiln_engine *e = mlp_engine(9, 1, &m);
    kiln_session *s = NULL;
    kiln_session_options so = {.threads = 1};
    kiln_context *c = NULL;
    kiln_err err = {0};
    CHECK(kiln_session_create(m, &so, &s, &err) == KILN_OK, "%s", err.msg);
    if (!e || !s || kiln_context_create(e, &c, &err)) {
        CHECK(0, "setup: %s", err.msg);
        goto done;
    }
    enum { N = 50 };
    static struct async_log log;
    static struct async_job jobs[N];
    static kiln_value *x[N], *y[N];
    static const kiln_value *in[N][1];
    static kiln_event *ev[N];
    pthread_mutex_init(&log.mu, NULL);
    log.n = 0;
    /* 50 runs; run 17 is outside the profile and fails. */
    for (int i = 0; i < N; i++) {
        x[i] = input_rows(i == 17 ? 33 : 1 + i % 32, 16, 300 + (uint64_t)i);
        in[i][0] = x[i];
        y[i] = NULL;
        jobs[i] = (struct async_job){&log, i};
        CHECK(kiln_context_enqueue(c, NULL, 1, NULL, in[i], 1, &y[i], on_done, &jobs[i], &ev[i], &err) == KILN_OK,
              "enqueue %d: %s", i, err.msg);
    }
    for (int i = N - 1; i >= 0; i--) {
        kiln_err e2 = {0};
        kiln_status st = ev[i] ? kiln_event_wait(ev[i], &e2) : KILN_E_INTERNAL;
        if (i == 17)
            CHECK(st == KILN_E_INVALID_ARG && strstr(e2.msg, "input 'X' dim 0 is 33"), "event of the failing run: %s '%s'",
                  kiln_status_name(st), e2.msg);
        else
            CHECK(st == KILN_OK, "event %d: %s", i, e2.msg);
        CHECK(kiln_event_done(ev[i]) == 1, "event %d not done after wait", i);
        kiln_event_free(ev[i]);
    }
    pthread_mutex_lock(&log.mu);
    CHECK(log.n == N, "%d callbacks", log.n);
    for (int i = 0; i < log.n; i++) CHECK(log.order[i] == i, "callback %d was run %d", i, log.order[i]);
    CHECK(log.status[17] == KILN_E_INVALID_ARG && strstr(log.msg[17], "dim 0 is 33"), "callback of the failing run: %s",
          log.msg[17]);
    pthread_mutex_unlock(&log.mu);
    for (int i = 0; i < N; i++) {
        if (i == 17) {
            CHECK(y[i] == NULL, "the failing run left an output");
            continue;
        }
        kiln_value *want = NULL;
        CHECK(srun1(s, x[i], &want, &err) == KILN_OK, "%s", err.msg);
        CHECK(close_vals(y[i], want, 1e-5), "enqueued run %d differs from the session", i);
        kiln_value_free(want);
        kiln_value_free(y[i]);
        y[i] = NULL;
    }

    /* kiln_context_free with runs still queued: it runs them all first; their events stay
     * usable after it. Some have no event, some neither event nor callback. */
    kiln_context *c2 = NULL;
    CHECK(kiln_context_create(e, &c2, &err) == KILN_OK, "%s", err.msg);
    log.n = 0;
    for (int i = 0; i < 30 && c2; i++) {
        jobs[i] = (struct async_job){&log, i};
        kiln_done_fn fn = i % 10 == 9 ? NULL : on_done;
        CHECK(kiln_context_enqueue(c2, NULL, 1, NULL, in[i == 17 ? 0 : i], 1, &y[i], fn, &jobs[i],
                                   i % 3 == 0 ? &ev[i] : NULL, &err) == KILN_OK,
              "enqueue %d: %s", i, err.msg);
    }
    kiln_context_free(c2);
    pthread_mutex_lock(&log.mu);
    CHECK(log.n == 27, "%d callbacks after kiln_context_free; expected 27", log.n);
    pthread_mutex_unlock(&log.mu);
    for (int i = 0; i < 30; i++) {
        if (i % 3 == 0) {
            CHECK(kiln_event_done(ev[i]) == 1 && kiln_event_wait(ev[i], &err) == KILN_OK, "event %d: %s", i, err.msg);
            kiln_event_free(ev[i]);
        }
        CHECK(y[i] != NULL, "queued run %d left no output", i);
        kiln_value_free(y[i]);
        y[i] = NULL;
    }
    /* An event freed before its run completes. */
    kiln_event *late = NULL;
    CHECK(kiln_context_enqueue(c, NULL, 1, NULL, in[31], 1, &y[0], NULL, NULL, &late, &err) == KILN_OK, "%s", err.msg);
    kiln_event_free(late);
    CHECK(y[0] != NULL, "kiln_event_free did not wait for the run");
    kiln_value_free(y[0]);
    y[0] = NULL;
    EXPECT_ERR(kiln_event_wait(NULL, err_), KILN_E_INVALID_ARG, "no event");
    EXPECT_ERR(kiln_context_enqueue(NULL, NULL, 1, NULL, in[0], 1, &y[0], NULL, NULL, NULL, err_), KILN_E_INVALID_ARG,
               "no context");
    for (int i = 0; i < N; i++) kiln_value_free(x[i]);
    pthread_mutex_destroy(&log.mu);
done:
    kiln_context_free(c);
    kiln_engine_free(e);
    kiln_session_free(s);
    kiln_model_free(m);
}

/* ------------------------------------------------------------------ many threads */

enum { N_INPUTS = 16 };

struct thread_work {
    kiln_engine *e;
    kiln_session *s; /* when set, run the session instead of a context of e */
    const kiln_value *const *x;
    const kiln_value *const *want;
    int runs, first;
    int errors, mismatches;
    char first_error[1024];
};

static void *worker_main(void *arg)
{
    struct thread_work *w = arg;
    kiln_context *c = NULL;
    kiln_err err = {0};
    if (!w->s && kiln_context_create(w->e, &c, &err)) {
        w->errors++;
        snprintf(w->first_error, sizeof w->first_error, "%s", err.msg);
        return NULL;
    }
    for (int i = 0; i < w->runs; i++) {
        int k = (w->first + i) % N_INPUTS;
        kiln_value *y = NULL;
        kiln_status st = w->s ? srun1(w->s, w->x[k], &y, &err) : run1(c, w->x[k], &y, &err);
        if (st) {
            if (!w->errors++) snprintf(w->first_error, sizeof w->first_error, "%s", err.msg);
        } else if (!same_bytes(y, w->want[k])) {
            w->mismatches++;
        }
        kiln_value_free(y);
    }
    kiln_context_free(c);
    return NULL;
}

/* n_threads threads, each with its own context on e (or all on session s), run `runs`
 * inferences on the inputs x[], cycling from different starts; every result must equal want[]
 * byte for byte. */
static void run_threads(kiln_engine *e, kiln_session *s, int n_threads, int runs, const kiln_value *const *x,
                        const kiln_value *const *want, const char *what)
{
    pthread_t tid[8];
    struct thread_work w[8];
    for (int t = 0; t < n_threads; t++) {
        w[t] = (struct thread_work){.e = e, .s = s, .x = x, .want = want, .runs = runs, .first = 3 * t};
        CHECK(pthread_create(&tid[t], NULL, worker_main, &w[t]) == 0, "pthread_create");
    }
    for (int t = 0; t < n_threads; t++) {
        pthread_join(tid[t], NULL);
        CHECK(w[t].errors == 0, "%s: thread %d: %d failed runs, the first: %s", what, t, w[t].errors, w[t].first_error);
        CHECK(w[t].mismatches == 0, "%s: thread %d: %d of %d results differ from the single-threaded run", what, t,
              w[t].mismatches, runs);
    }
}

static void test_many_contexts(void)
{
    kiln_model *m = load_text(SMALL, 10);
    kiln_value *x[N_INPUTS], *want[N_INPUTS];
    for (int k = 0; k < N_INPUTS; k++) x[k] = input_rows(1 + k % 4, 8, 400 + (uint64_t)k);
    for (int threads = 1; threads <= 2; threads++) {
        kiln_builder *b = NULL;
        kiln_engine *e = NULL;
        kiln_err err = {0};
        int64_t mn[2] = {1, 8}, op[2] = {2, 8}, mx[2] = {4, 8};
        CHECK(kiln_builder_create(&b, &err) == KILN_OK, "%s", err.msg);
        CHECK(kiln_builder_set_threads(b, threads, &err) == KILN_OK, "%s", err.msg);
        CHECK(kiln_builder_add_profile(b, "p", "X", 2, mn, op, mx, &err) == KILN_OK, "%s", err.msg);
        CHECK(kiln_builder_build(b, m, &e, &err) == KILN_OK, "%s", err.msg);
        kiln_builder_free(b);
        if (!e) continue;
        /* The single-threaded reference: one context, one thread. */
        kiln_context *c = NULL;
        CHECK(kiln_context_create(e, &c, &err) == KILN_OK, "%s", err.msg);
        for (int k = 0; k < N_INPUTS; k++) {
            want[k] = NULL;
            CHECK(c && run1(c, x[k], &want[k], &err) == KILN_OK, "%s", err.msg);
        }
        kiln_context_free(c);
        char what[64];
        snprintf(what, sizeof what, "8 contexts, %d thread(s) each", threads);
        run_threads(e, NULL, 8, threads == 1 ? 1000 : 100, (const kiln_value *const *)x,
                    (const kiln_value *const *)want, what);
        free_all(want, N_INPUTS);
        kiln_engine_free(e);
    }

    /* One session run from four threads at once (kiln.h allows it: the profiler and run
     * options are written for it). */
    kiln_session *s = NULL;
    kiln_session_options so = {.threads = 1};
    kiln_err err = {0};
    CHECK(kiln_session_create(m, &so, &s, &err) == KILN_OK, "%s", err.msg);
    for (int k = 0; k < N_INPUTS && s; k++) {
        want[k] = NULL;
        CHECK(srun1(s, x[k], &want[k], &err) == KILN_OK, "%s", err.msg);
    }
    if (s) run_threads(NULL, s, 4, 200, (const kiln_value *const *)x, (const kiln_value *const *)want,
                       "one session, 4 threads");
    if (s) free_all(want, N_INPUTS);
    kiln_session_free(s);
    free_all(x, N_INPUTS);
    kiln_model_free(m);
}

/* Eight contexts running one engine at once on different inputs: text (random weights),
 * inputs of shape dims, with dim 0 1 + k % batches when batches > 1. oneDNN's library-mode
 * scratchpad belongs to the thread that created the primitive, so contexts on other threads
 * shared one and corrupted each other's results (3% to 20% of runs) until conv_nhwc and
 * dnnl_matmul passed a scratchpad of each run's own. */
static void many_contexts_on(const char *text, int rank, const int64_t *dims, int batches, kiln_opt_level level,
                             const char *what)
{
    kiln_model *m = load_text(text, 11);
    kiln_value *x[N_INPUTS], *want[N_INPUTS];
    for (int k = 0; k < N_INPUTS; k++) {
        int64_t d[4];
        memcpy(d, dims, (size_t)rank * sizeof *d);
        if (batches > 1) d[0] = 1 + k % batches;
        rng_seed(500 + (uint64_t)k);
        x[k] = rand_tensor(rank, d);
    }
    kiln_builder *b = NULL;
    kiln_engine *e = NULL;
    kiln_context *c = NULL;
    kiln_err err = {0};
    CHECK(kiln_builder_create(&b, &err) == KILN_OK, "%s", err.msg);
    kiln_builder_set_opt_level(b, level);
    CHECK(kiln_builder_set_threads(b, 1, &err) == KILN_OK, "%s", err.msg);
    CHECK(kiln_builder_build(b, m, &e, &err) == KILN_OK, "%s", err.msg);
    kiln_builder_free(b);
    CHECK(e && kiln_context_create(e, &c, &err) == KILN_OK, "%s", err.msg);
    for (int k = 0; k < N_INPUTS; k++) {
        want[k] = NULL;
        CHECK(c && run1(c, x[k], &want[k], &err) == KILN_OK, "%s", err.msg);
    }
    kiln_context_free(c);
    if (e) run_threads(e, NULL, 8, 200, (const kiln_value *const *)x, (const kiln_value *const *)want, what);
    free_all(want, N_INPUTS);
    free_all(x, N_INPUTS);
    kiln_engine_free(e);
    kiln_model_free(m);
}

static void test_many_contexts_onednn(void)
{
    int64_t conv_dims[4] = {0, 8, 16, 16}, mm_dims[2] = {16, 128};
    many_contexts_on(CONVS, 4, conv_dims, 4, KILN_OPT_EXTENDED, "8 contexts on convolutions (NHWC)");
    many_contexts_on(MATMUL, 2, mm_dims, 1, KILN_OPT_NONE, "8 contexts on a prepacked MatMul");
}

/* ------------------------------------------------------------------ out of memory */

/* Build + context + bound run + enqueued run with the nth allocation failing, for every n
 * until all succeed: each must fail cleanly (a status and a message; no crash, and no leak
 * under the sanitizers). */
static void test_oom(void)
{
    kiln_model *m = load_text(MLP, 13);
    kiln_value *x = input_rows(5, 16, 1);
    const kiln_value *in[1] = {x};
    static float buf[5 * 16];
    long n = 1;
    for (;; n++) {
        kiln_err err = {0};
        kiln_builder *b = NULL;
        kiln_engine *e = NULL;
        kiln_context *c = NULL;
        kiln_event *ev = NULL;
        kiln_value *y = NULL, *y2 = NULL;
        int64_t mn[2] = {1, 16}, op[2] = {8, 16}, mx[2] = {32, 16};
        kiln_alloc_fail_after(n);
        kiln_status st = kiln_builder_create(&b, &err);
        if (!st) st = kiln_builder_set_threads(b, 1, &err);
        if (!st) st = kiln_builder_add_profile(b, "p", "X", 2, mn, op, mx, &err);
        if (!st) st = kiln_builder_build(b, m, &e, &err);
        if (!st) st = kiln_context_create(e, &c, &err);
        if (!st) st = kiln_context_bind_output(c, 0, buf, sizeof buf, &err);
        if (!st) st = run1(c, x, &y, &err);
        if (!st) st = kiln_context_enqueue(c, NULL, 1, NULL, in, 1, &y2, NULL, NULL, &ev, &err);
        if (!st) st = kiln_event_wait(ev, &err);
        long used = kiln_alloc_fail_after(0);
        kiln_event_free(ev);
        kiln_context_free(c);
        kiln_engine_free(e);
        kiln_builder_free(b);
        kiln_value_free(y);
        kiln_value_free(y2);
        if (st == KILN_OK) {
            CHECK(used < n, "succeeded although allocation %ld of %ld failed", n, used);
            break;
        }
        CHECK(err.msg[0] != 0, "allocation %ld failed with %s but no message", n, kiln_status_name(st));
        if (n > 200000) {
            CHECK(0, "no success after 200000 allocations");
            break;
        }
    }
    printf("oom: %ld allocation points of build, context, bound and enqueued runs all fail cleanly\n", n - 1);
    kiln_value_free(x);
    kiln_model_free(m);
}

/* ------------------------------------------------------------------ lifetimes */

static void test_engine_outlives(void)
{
    kiln_engine *e = mlp_engine(11, 1, NULL);
    kiln_context *c1 = NULL, *c2 = NULL;
    kiln_err err = {0};
    if (!e) return;
    CHECK(kiln_context_create(e, &c1, &err) == KILN_OK, "%s", err.msg);
    CHECK(kiln_context_create(e, &c2, &err) == KILN_OK, "%s", err.msg);
    kiln_context *none = NULL;
    EXPECT_ERR(kiln_context_create(NULL, &none, err_), KILN_E_INVALID_ARG, "no engine");
    CHECK(none == NULL, "a context without an engine");
    if (!c1 || !c2) return;
    CHECK(atomic_load(&e->refs) == 3, "refs %d with two contexts", atomic_load(&e->refs));
    kiln_value *x = input_rows(6, 16, 5), *y1 = NULL, *y2 = NULL;
    kiln_value *want = NULL;
    CHECK(run1(c1, x, &want, &err) == KILN_OK, "%s", err.msg);
    kiln_engine_free(e); /* the contexts keep it */
    CHECK(atomic_load(&c1->e->refs) == 2, "refs %d after kiln_engine_free", atomic_load(&c1->e->refs));
    CHECK(kiln_model_input_count(kiln_engine_model(c1->e)) == 1, "the engine's model after kiln_engine_free");
    CHECK(run1(c1, x, &y1, &err) == KILN_OK && same_bytes(y1, want), "context 1 after kiln_engine_free: %s", err.msg);
    kiln_context_free(c1);
    /* The last context: queued runs finish before it and the engine go. */
    const kiln_value *in[1] = {x};
    kiln_event *ev = NULL;
    CHECK(kiln_context_enqueue(c2, NULL, 1, NULL, in, 1, &y2, NULL, NULL, &ev, &err) == KILN_OK, "%s", err.msg);
    kiln_context_free(c2);
    CHECK(kiln_event_wait(ev, &err) == KILN_OK && same_bytes(y2, want), "the last context's queued run: %s", err.msg);
    kiln_event_free(ev);
    kiln_value_free(x), kiln_value_free(y1), kiln_value_free(y2), kiln_value_free(want);
}

/* An engine file's tables come from the file: a hostile one carries matching checksums
 * (kiln_engine_file_seal recomputes them, as tests/fuzz/fuzz_engine.c does), so the values
 * themselves are checked. The meta section starts with the thread count (u32; header: the
 * section table at byte 56, 24 bytes a section, meta the fourth). */
static kiln_status load_sealed(const char *path, uint8_t *img, size_t n, kiln_engine **out, kiln_err *err)
{
    kiln_engine_file_seal(img, n);
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(img, 1, n, f) == n, "write %s", path);
    if (f) fclose(f);
    return kiln_engine_load(path, out, err);
}

static kiln_status load_with_threads(const char *path, uint8_t *img, size_t n, uint32_t threads, kiln_engine **out,
                                     kiln_err *err)
{
    uint64_t meta;
    memcpy(&meta, img + 56 + 3 * 24, 8);
    memcpy(img + meta, &threads, 4);
    return load_sealed(path, img, n, out, err);
}

static void test_hostile_tables(void)
{
    kiln_engine *e = mlp_engine(12, 2, NULL), *e2 = NULL;
    kiln_err err = {0};
    char path[] = "/tmp/kiln_test_engine_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp");
    if (fd < 0 || !e) return;
    close(fd);
    CHECK(kiln_engine_save(e, path, &err) == KILN_OK, "%s", err.msg);
    kiln_engine_free(e);
    FILE *f = fopen(path, "rb");
    uint8_t *img = malloc(1 << 20);
    size_t n = f && img ? fread(img, 1, 1 << 20, f) : 0;
    if (f) fclose(f);
    CHECK(n > 4096 && n < (1 << 20), "engine file of %zu bytes", n);
    if (n > 4096 && n < (1 << 20)) {
        CHECK(load_with_threads(path, img, n, 2, &e2, &err) == KILN_OK && kiln_engine_threads(e2) == 2,
              "a sealed unchanged engine: %s", err.msg);
        kiln_engine_free(e2), e2 = NULL;
        EXPECT_ERR(load_with_threads(path, img, n, 5000, &e2, err_), KILN_E_INVALID_MODEL,
                   "tables give 5000 threads, tune 0, depth 0 (at most 1024 threads)");
        CHECK(e2 == NULL, "a refused engine was returned");
        EXPECT_ERR(load_with_threads(path, img, n, 0xffffffffu, &e2, err_), KILN_E_INVALID_MODEL,
                   "tables give 4294967295 threads");
        CHECK(load_with_threads(path, img, n, 1024, &e2, &err) == KILN_OK && kiln_engine_threads(e2) == 1024,
              "1024 threads, the builder's largest: %s", err.msg);
        kiln_engine_free(e2);
        e2 = NULL;
        /* A section inside the header: sealing would change its bytes after hashing them. */
        uint64_t in_header = 64;
        memcpy(img + 56 + 3 * 24, &in_header, 8);
        EXPECT_ERR(load_sealed(path, img, n, &e2, err_), KILN_E_INVALID_MODEL,
                   "its meta section lies outside the file or in its header");
        CHECK(e2 == NULL, "a refused engine was returned");
    }
    free(img);
    remove(path);
}

/* A session borrows its model: inferring the model again (kiln_model_check does) must not
 * pull the plan's sizes from under the session. */
static void test_session_after_reinfer(void)
{
    kiln_model *m = load_text(MLP, 12);
    kiln_session *s = NULL;
    kiln_session_options so = {.threads = 1};
    kiln_err err = {0};
    CHECK(kiln_session_create(m, &so, &s, &err) == KILN_OK, "%s", err.msg);
    if (!s) return;
    kiln_value *x2 = input_rows(2, 16, 1), *x3 = input_rows(3, 16, 2), *y = NULL, *want = NULL;
    CHECK(srun1(s, x2, &y, &err) == KILN_OK, "%s", err.msg);
    kiln_value_free(y);
    y = NULL;
    CHECK(kiln_model_infer_shapes(m, &err) == KILN_OK, "%s", err.msg);
    CHECK(kiln_model_check(m, NULL, NULL) == 0, "the model has problems");
    CHECK(srun1(s, x3, &y, &err) == KILN_OK, "a run after the model was inferred again: %s", err.msg);
    kiln_session *fresh_s = NULL;
    CHECK(kiln_session_create(m, &so, &fresh_s, &err) == KILN_OK, "%s", err.msg);
    CHECK(fresh_s && srun1(fresh_s, x3, &want, &err) == KILN_OK, "%s", err.msg);
    CHECK(same_bytes(y, want), "the session's result changed after the model was inferred again");
    kiln_session_free(fresh_s);
    kiln_value_free(x2), kiln_value_free(x3), kiln_value_free(y), kiln_value_free(want);
    kiln_session_free(s);
    kiln_model_free(m);
}

int main(void)
{
    test_builder_options();
    test_dynamic_batch();
    test_two_profiles();
    test_single_shape_profile();
    test_memory_limit();
    test_session_limits();
    test_max_depth();
    test_io_binding();
    test_async();
    test_many_contexts();
    test_many_contexts_onednn();
    test_engine_outlives();
    test_session_after_reinfer();
    test_hostile_tables();
    test_oom();
    return test_summary("test_engine");
}
