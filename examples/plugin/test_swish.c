/* test_swish.c: the example plugin (swish.c) end to end, through the public API.
 *
 * The model, built here with tests/unit/support/test_model.h:
 *
 *     x: float32[N,5] -> Swish(beta = 1.5, domain com.example) -> h -> Add(h, x) -> y: float32[N,5]
 *
 * Checks: without the plugin the model does not load (KILN_E_UNSUPPORTED, naming the node, op
 * and domain); with it, it checks clean, infers h as float32[N,5] (the symbol kept), and a
 * session (1 and 4 threads) and an engine give y = x * sigmoid(1.5 x) + x computed in float64,
 * within |y - ref| <= 1e-6 + 1e-6 * |ref|. Float32 evaluation rounds beta*x, exp, the
 * division and the add, each within half an ulp (6e-8 relative), and exp scales the rounding
 * of beta*x by |beta*x| (at most 15 here): about 1e-6 relative at worst; the test prints the
 * largest error seen.
 *
 *     test_swish                 run the checks (the plugin's path is compiled in)
 *     test_swish --write DIR     write DIR/swish.onnx, DIR/x.pb (x: [3,5]) and DIR/y_ref.pb
 *                                (the float64 reference, rounded to float32) for the CLI test
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kiln.h"
#include "test_model.h"
#include "test_pb.h"
#include "test_support.h"

#ifndef SWISH_PLUGIN
#error "SWISH_PLUGIN: the path of libswish.so (examples/examples.cmake)"
#endif

static const float BETA = 1.5f;

/* A float attribute (AttributeProto: name 1, f 2, type 20). */
static void at_f(struct pb *n, const char *name, float v)
{
    struct pb a = {0};
    pb_str(&a, 1, name);
    pb_float(&a, 2, v);
    pb_int(&a, 20, 1 /* FLOAT */);
    pb_msg(n, 5, &a);
}

/* A graph output declared float32[N,5] (ValueInfoProto, as test_model's input()). */
static void output_f32_n5(struct model *m, const char *name)
{
    struct pb vi = {0}, tp = {0}, tt = {0}, sh = {0}, d0 = {0}, d1 = {0};
    pb_str(&vi, 1, name);
    pb_int(&tt, 1, KILN_DTYPE_F32);
    pb_str(&d0, 2, "N");
    pb_int(&d1, 1, 5);
    pb_msg(&sh, 1, &d0);
    pb_msg(&sh, 1, &d1);
    pb_msg(&tt, 2, &sh);
    pb_msg(&tp, 1, &tt);
    pb_msg(&vi, 2, &tp);
    pb_msg(&m->graph, 12, &vi);
}

/* The model's ModelProto bytes into *out (ir_version 8; opsets ai.onnx 13, com.example 1). */
static void build_model(struct pb *out)
{
    static struct model m; /* struct pb is 16 KiB: keep it off the stack */
    m = fresh(13);
    input(&m, "x", KILN_DTYPE_F32, "N,5");
    struct pb *n = &m.graph; /* NodeProto: input 1, output 2, name 3, op_type 4, attribute 5, domain 7 */
    struct pb sw = {0};
    pb_str(&sw, 1, "x");
    pb_str(&sw, 2, "h");
    pb_str(&sw, 3, "swish0");
    pb_str(&sw, 4, "Swish");
    at_f(&sw, "beta", BETA);
    pb_str(&sw, 7, "com.example");
    pb_msg(n, 1, &sw);
    end_node(&m, node("Add", "h,x", "y"), NULL);
    output_f32_n5(&m, "y");
    pb_str(&m.graph, 2, "swish_example");

    struct pb op = {0}, op2 = {0};
    memset(out, 0, sizeof *out);
    pb_int(out, 1, 8); /* ir_version */
    pb_str(out, 2, "kiln test_swish");
    pb_msg(out, 7, &m.graph);
    pb_int(&op, 2, 13);
    pb_msg(out, 8, &op);
    pb_str(&op2, 1, "com.example");
    pb_int(&op2, 2, 1);
    pb_msg(out, 8, &op2);
}

static double reference(float x)
{
    double xd = x;
    return xd / (1.0 + exp(-(double)BETA * xd)) + xd;
}

/* n values of x: a sweep of [-10, 10] with the edge cases first. */
static void fill_x(float *x, size_t n)
{
    static const float edges[] = {0.0f, -0.0f, 1e-30f, -1e-30f, 1.0f, -1.0f, 10.0f, -10.0f};
    for (size_t i = 0; i < n; i++)
        x[i] = i < sizeof edges / sizeof edges[0] ? edges[i] : -10.0f + 20.0f * (float)i / (float)n;
}

static kiln_value *make_x(int64_t rows)
{
    int64_t dims[2] = {rows, 5};
    kiln_value *v = NULL;
    kiln_err err = {0};
    if (kiln_value_create_tensor(KILN_DTYPE_F32, 2, dims, &v, &err) != KILN_OK) {
        printf("cannot make x: %s\n", err.msg);
        exit(1);
    }
    fill_x(kiln_value_data(v), (size_t)rows * 5);
    return v;
}

static double max_err; /* the largest |y - ref| / (1e-6 + 1e-6 |ref|) seen */

/* y against the reference of x. */
static void expect_ref(const char *what, kiln_value *x, kiln_value *y)
{
    CHECK(y && kiln_value_dtype(y) == KILN_DTYPE_F32 && kiln_value_rank(y) == 2, "%s: y is not float32 2-D",
          what);
    if (!y || kiln_value_numel(y) != kiln_value_numel(x)) return;
    const float *xs = kiln_value_data(x), *ys = kiln_value_data(y);
    size_t bad = 0;
    for (size_t i = 0; i < kiln_value_numel(x); i++) {
        double ref = reference(xs[i]), tol = 1e-6 + 1e-6 * fabs(ref), e = fabs(ys[i] - ref);
        if (e / tol > max_err) max_err = e / tol;
        if (!(e <= tol) && bad++ < 3)
            CHECK(0, "%s: x=%.9g y=%.9g, reference %.17g (error %.3g > %.3g)", what, xs[i], ys[i], ref, e,
                  tol);
    }
    CHECK(bad == 0, "%s: %zu elements out of tolerance", what, bad);
}

static void run_session(const kiln_model *m, int threads, int64_t rows)
{
    kiln_session_options o = {.threads = threads};
    kiln_session *s = NULL;
    kiln_err err = {0};
    kiln_status st = kiln_session_create(m, &o, &s, &err);
    CHECK(st == KILN_OK, "session (%d threads): %s", threads, err.msg);
    if (st) return;
    kiln_value *x = make_x(rows), *y = NULL;
    const kiln_value *in[1] = {x};
    st = kiln_session_run(s, 1, NULL, in, 1, &y, &err);
    CHECK(st == KILN_OK, "run (%d threads, %lld rows): %s", threads, (long long)rows, err.msg);
    char what[64];
    snprintf(what, sizeof what, "session, %d threads, %lld rows", threads, (long long)rows);
    if (!st) expect_ref(what, x, y);
    kiln_value_free(y);
    kiln_value_free(x);
    kiln_session_free(s);
}

static void run_engine(const kiln_model *m)
{
    kiln_builder *b = NULL;
    kiln_engine *e = NULL;
    kiln_context *c = NULL;
    kiln_err err = {0};
    CHECK(kiln_builder_create(&b, &err) == KILN_OK, "builder: %s", err.msg);
    if (!b) return;
    CHECK(kiln_builder_set_threads(b, 2, &err) == KILN_OK, "threads: %s", err.msg);
    kiln_status st = kiln_builder_build(b, m, &e, &err);
    CHECK(st == KILN_OK, "engine: %s", err.msg);
    if (!st) {
        /* The engine's optimized model may renumber nodes: find Swish by op type. */
        const kiln_model *em = kiln_engine_model(e);
        bool found = false;
        for (size_t i = 0; i < kiln_model_node_count(em); i++) {
            const char *name, *op, *dom, *be, *kern, *var;
            kiln_model_node(em, i, &name, &op, &dom);
            if (strcmp(op, "Swish") != 0) continue;
            found = true;
            kiln_engine_node_kernel(e, i, &be, &kern, &var);
            CHECK(be && !strcmp(be, "cpu") && kern && !strcmp(kern, "Swish") && var &&
                      strstr(var, "plugin ") && strstr(var, "swish"),
                  "Swish's kernel: %s / %s / %s", be ? be : "-", kern ? kern : "-", var ? var : "-");
        }
        CHECK(found, "the engine's model has no Swish node");
        CHECK(kiln_context_create(e, &c, &err) == KILN_OK, "context: %s", err.msg);
    }
    if (c) {
        kiln_value *x = make_x(64), *y = NULL;
        const kiln_value *in[1] = {x};
        st = kiln_context_run(c, NULL, 1, NULL, in, 1, &y, &err);
        CHECK(st == KILN_OK, "engine run: %s", err.msg);
        if (!st) expect_ref("engine", x, y);
        kiln_value_free(y);
        kiln_value_free(x);
    }
    kiln_context_free(c);
    kiln_engine_free(e);
    kiln_builder_free(b);
}

static void on_problem(void *user, const char *msg)
{
    (void)user;
    printf("  problem: %s\n", msg);
}

static void test_swish(const char *dir)
{
    static struct pb bytes;
    build_model(&bytes);
    kiln_model *m = NULL;
    kiln_err err = {0};

    /* Without the plugin: refused at load, from memory and from a file. */
    const char *want = "node 'swish0' (Swish): op 'Swish' of domain 'com.example' is not known to kiln and "
                       "no loaded plugin declares it (kiln --plugin LIB.so)";
    kiln_status st = kiln_model_load_buffer(bytes.data, bytes.len, NULL, &m, &err);
    CHECK(st == KILN_E_UNSUPPORTED && !m, "without the plugin: %s '%s'", kiln_status_name(st), err.msg);
    CHECK(strstr(err.msg, want) && !strncmp(err.msg, "model (from memory): ", 21), "message: '%s'", err.msg);
    kiln_model_free(m);
    m = NULL;
    char path[4096];
    snprintf(path, sizeof path, "%s/swish_test_%ld.onnx", dir, (long)getpid());
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(bytes.data, 1, bytes.len, f) == bytes.len && fclose(f) == 0, "cannot write %s", path);
    st = kiln_model_load_file(path, &m, &err);
    CHECK(st == KILN_E_UNSUPPORTED && strstr(err.msg, want) && strstr(err.msg, "swish_test_"),
          "file without the plugin: %s '%s'", kiln_status_name(st), err.msg);
    kiln_model_free(m);
    m = NULL;
    remove(path);

    /* With it (twice: the second load is a no-op). */
    st = kiln_plugin_load(SWISH_PLUGIN, &err);
    CHECK(st == KILN_OK, "loading %s: %s", SWISH_PLUGIN, err.msg);
    kiln_session_options o = {0};
    st = kiln_session_options_add_plugin(&o, SWISH_PLUGIN, &err);
    CHECK(st == KILN_OK, "loading %s again: %s", SWISH_PLUGIN, err.msg);

    st = kiln_model_load_buffer(bytes.data, bytes.len, NULL, &m, &err);
    CHECK(st == KILN_OK, "with the plugin: %s", err.msg);
    if (!m) return;
    CHECK(kiln_model_check(m, on_problem, NULL) == 0, "the model has problems (printed above)");
    CHECK(kiln_model_infer_shapes(m, &err) == KILN_OK, "infer: %s", err.msg);
    bool seen = false;
    for (size_t i = 0; i < kiln_model_value_count(m); i++) {
        if (strcmp(kiln_model_value_name(m, i), "h") != 0) continue;
        char t[128];
        kiln_model_value_type(m, i, t, sizeof t);
        CHECK(!strcmp(t, "float32[N,5]"), "h inferred as %s; expected float32[N,5]", t);
        seen = true;
    }
    CHECK(seen, "no value 'h'");

    run_session(m, 1, 3);
    run_session(m, 4, 4099); /* 20495 elements: more than one 16384-element chunk */
    run_engine(m);
    printf("largest error: %.3f of the tolerance\n", max_err);
    kiln_model_free(m);
}

/* --write DIR: the model and data of the CLI test. */
static int write_files(const char *dir)
{
    static struct pb bytes;
    build_model(&bytes);
    char path[4096];
    snprintf(path, sizeof path, "%s/swish.onnx", dir);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(bytes.data, 1, bytes.len, f) != bytes.len || fclose(f) != 0) {
        printf("cannot write %s\n", path);
        return 1;
    }
    kiln_value *x = make_x(3), *y = NULL;
    int64_t dims[2] = {3, 5};
    kiln_err err = {0};
    int rc = 1;
    if (kiln_value_create_tensor(KILN_DTYPE_F32, 2, dims, &y, &err) == KILN_OK) {
        const float *xs = kiln_value_data(x);
        float *ys = kiln_value_data(y);
        for (size_t i = 0; i < 15; i++) ys[i] = (float)reference(xs[i]);
        char px[4096], py[4096];
        snprintf(px, sizeof px, "%s/x.pb", dir);
        snprintf(py, sizeof py, "%s/y_ref.pb", dir);
        if (kiln_value_write_pb(x, "x", px, &err) == KILN_OK &&
            kiln_value_write_pb(y, "y", py, &err) == KILN_OK)
            rc = 0;
    }
    if (rc) printf("cannot write the data: %s\n", err.msg);
    kiln_value_free(x);
    kiln_value_free(y);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--write") == 0) return write_files(argv[2]);
    const char *tmp = getenv("TMPDIR");
    test_swish(tmp && tmp[0] ? tmp : "/tmp");
    return test_summary("test_swish");
}
