/* test_plugin.c: plugins of custom operators (src/plugin, include/kiln_plugin.h) with the test
 * plugins of tests/plugin/kp_test.c.
 *
 * Loading: every refusal names the plugin and says why (missing file, not a library, no
 * register function, another ABI, a declined load, bad, duplicate or partial declarations)
 * and registers nothing; a failed load can be retried; loading twice is a no-op; loads from
 * many threads at once; out of memory at every allocation of a load. Running: a plugin op
 * with every hook (prepare/release, scratch, prepack, in place, parallel_for) gives the
 * expected values in sessions and engines, and in constant folding during inference; every
 * state prepare made is released once, also when a later node fails; the plugin's failures
 * (infer, prepare, run, a missing output, a bad allocation, a status that is not one)
 * become messages naming the node; engine files keep the prepacked data (prepack is not
 * called again when one is loaded); symbolic dims pass through shape functions;
 * declarations for another backend and for a version range the model does not import.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kiln.h"
#include "plugin/plugin.h"
#include "test_model.h"
#include "test_pb.h"
#include "test_support.h"

/* ------------------------------------------------------------------ models */

static void at_f(struct pb *n, const char *name, float v)
{
    struct pb a = {0};
    pb_str(&a, 1, name);
    pb_float(&a, 2, v);
    pb_int(&a, 20, KILN_ATTR_FLOAT);
    pb_msg(n, 5, &a);
}

/* A float32 initializer. */
static void init_f32(struct model *m, const char *name, int rank, const int64_t *dims, const float *v)
{
    struct pb t = {0};
    size_t n = 1;
    for (int d = 0; d < rank; d++) {
        pb_int(&t, 1, dims[d]);
        n *= (size_t)dims[d];
    }
    pb_int(&t, 2, KILN_DTYPE_F32);
    for (size_t i = 0; i < n; i++) pb_float(&t, 4, v[i]);
    pb_str(&t, 8, name);
    pb_msg(&m->graph, 5, &t);
}

/* A graph output of element type float32 (no shape). */
static void out_f32(struct model *m, const char *name)
{
    struct pb vi = {0}, tp = {0}, tt = {0};
    pb_str(&vi, 1, name);
    pb_int(&tt, 1, KILN_DTYPE_F32);
    pb_msg(&tp, 1, &tt);
    pb_msg(&vi, 2, &tp);
    pb_msg(&m->graph, 12, &vi);
}

/* A node (NodeProto: input 1, output 2, name 3, op_type 4, attribute 5, domain 7), inputs
 * and outputs comma-separated; attrs may be NULL. */
static void pnode(struct model *m, const char *name, const char *op, const char *domain, const char *ins,
                  const char *outs, const struct pb *attrs)
{
    struct pb n = {0};
    const char *lists[2] = {ins, outs};
    for (int l = 0; l < 2; l++)
        for (const char *s = lists[l]; s && *s;) {
            const char *e = strchr(s, ',');
            size_t len = e ? (size_t)(e - s) : strlen(s);
            pb_bytes(&n, l == 0 ? 1 : 2, s, len);
            if (!e) break;
            s = e + 1;
        }
    pb_str(&n, 3, name);
    pb_str(&n, 4, op);
    if (attrs)
        for (size_t i = 0; i < attrs->len; i++) pb_byte(&n, attrs->data[i]);
    if (domain) pb_str(&n, 7, domain);
    pb_msg(&m->graph, 1, &n);
}

/* ModelProto bytes of m: ir 8, ai.onnx 13 and `domain` at `opset` (NULL: none). */
static void model_bytes(struct model *m, const char *domain, int opset, struct pb *out)
{
    struct pb op = {0}, op2 = {0};
    memset(out, 0, sizeof *out);
    pb_int(out, 1, 8);
    pb_str(&m->graph, 2, "g");
    pb_msg(out, 7, &m->graph);
    pb_int(&op, 2, 13);
    pb_msg(out, 8, &op);
    if (domain) {
        pb_str(&op2, 1, domain);
        pb_int(&op2, 2, opset);
        pb_msg(out, 8, &op2);
    }
}

static kiln_model *load(struct model *m, const char *domain, int opset, kiln_status *st, kiln_err *err)
{
    static struct pb b;
    kiln_model *km = NULL;
    model_bytes(m, domain, opset, &b);
    *st = kiln_model_load_buffer(b.data, b.len, NULL, &km, err);
    return km;
}

static void on_problem(void *user, const char *msg)
{
    char *buf = user;
    size_t l = strlen(buf);
    snprintf(buf + l, 2048 - l, "%s%s", l ? " | " : "", msg);
}

/* Value `name`'s inferred type after kiln_model_infer_shapes. */
static const char *type_text(const kiln_model *m, const char *name)
{
    static char buf[256];
    for (size_t i = 0; i < kiln_model_value_count(m); i++)
        if (!strcmp(kiln_model_value_name(m, i), name)) {
            kiln_model_value_type(m, i, buf, sizeof buf);
            return buf;
        }
    return "(none)";
}

/* ------------------------------------------------------------------ the plugin's counters */

static void counts(int *prepare, int *release, int *prepack, int *scratch, int *run)
{
    void *h = dlopen(KP_LIB_OK, RTLD_NOW | RTLD_NOLOAD);
    void *sym = h ? dlsym(h, "kp_counts") : NULL;
    void (*fn)(int *, int *, int *, int *, int *);
    *prepare = *release = *prepack = *scratch = *run = -1;
    if (!sym) return;
    memcpy(&fn, &sym, sizeof fn);
    fn(prepare, release, prepack, scratch, run);
    dlclose(h); /* the NOLOAD reference */
}

/* ------------------------------------------------------------------ loading */

static void expect_load_fails(const char *path, kiln_status want, const char *needle)
{
    kiln_err err = {0};
    kiln_status st = kiln_plugin_load(path, &err);
    CHECK(st == want && strstr(err.msg, needle), "%s: %s '%s'; expected %s with '%s'", path,
          kiln_status_name(st), err.msg, kiln_status_name(want), needle);
    char prefix[4200];
    snprintf(prefix, sizeof prefix, "plugin '%s': ", path);
    CHECK(st == KILN_OK || !strncmp(err.msg, prefix, strlen(prefix)),
          "message does not start with the plugin: '%s'", err.msg);
}

static void test_refusals(void)
{
    kiln_err err = {0};
    CHECK(kiln_plugin_load(NULL, &err) == KILN_E_INVALID_ARG, "NULL path");
    CHECK(kiln_plugin_load("", &err) == KILN_E_INVALID_ARG, "empty path");
    expect_load_fails("/nonexistent/libnothing.so", KILN_E_IO, "cannot open: No such file or directory");
    char garbage[64];
    snprintf(garbage, sizeof garbage, "/tmp/kiln_test_plugin_%ld.so", (long)getpid());
    FILE *f = fopen(garbage, "w");
    CHECK(f && fputs("not a library\n", f) >= 0 && fclose(f) == 0, "cannot write %s", garbage);
    expect_load_fails(garbage, KILN_E_INVALID_ARG, "cannot load: ");
    remove(garbage);
    expect_load_fails(KP_LIB_NOSYM, KILN_E_INVALID_ARG,
                      "the library exports no function kiln_plugin_register, so it is not a kiln plugin");
    expect_load_fails(KP_LIB_ABI, KILN_E_UNSUPPORTED,
                      "declaration #1 was built for plugin ABI version 999; this kiln speaks ABI version 1");
    expect_load_fails(KP_LIB_DECLINE, KILN_E_UNSUPPORTED, "this plugin needs a CPU with AVX-9000");
    expect_load_fails(KP_LIB_DUP_BUILTIN, KILN_E_INVALID_ARG,
                      "duplicate op: op 'Relu' of domain 'ai.onnx' at versions 1 and later already has a "
                      "kernel in kiln");
    expect_load_fails(KP_LIB_BAD_SCHEMA, KILN_E_INVALID_ARG,
                      "declaration #1 (op 'NotAnOnnxOp' of domain 'ai.onnx'): domain 'ai.onnx' belongs to "
                      "ONNX (or kiln), whose schema has no such op");
    expect_load_fails(KP_LIB_TWICE, KILN_E_INVALID_ARG,
                      "duplicate op: op 'Op' of domain 'test.twice' at versions 4 and later (backend cpu) is "
                      "declared twice by this plugin");
    expect_load_fails(
        KP_LIB_PARTIAL, KILN_E_INVALID_ARG,
        "declaration #2 (op 'Bad' of domain 'test.partial'): it needs an infer (shape and type) "
        "function and a run function");
    expect_load_fails(KP_LIB_IGNORED, KILN_E_INVALID_ARG,
                      "declaration #2 (op 'Backwards' of domain 'test.ignored'): its versions must be");
    /* None of their ops is registered: not even the good ones declared first. */
    CHECK(!kiln_plugin_declares("test.partial", "Good", NULL), "a failed load registered 'Good'");
    CHECK(!kiln_plugin_declares("test.ignored", "Fine", NULL), "a failed load registered 'Fine'");
    CHECK(!kiln_plugin_declares("test.twice", "Op", NULL), "a failed load registered 'Op'");
    static struct model m;
    m = fresh(13);
    input(&m, "x", KILN_DTYPE_F32, "2");
    pnode(&m, "g", "Good", "test.partial", "x", "y", NULL);
    out_f32(&m, "y");
    kiln_status st;
    kiln_model *km = load(&m, "test.partial", 1, &st, &err);
    CHECK(st == KILN_E_UNSUPPORTED &&
              strstr(err.msg, "node 'g' (Good): op 'Good' of domain 'test.partial' is not "
                              "known to kiln and no loaded plugin declares it"),
          "a model using the partial plugin's op: %s '%s'", kiln_status_name(st), err.msg);
    kiln_model_free(km);
}

/* ------------------------------------------------------------------ Affine */

static const float W[4] = {1.0f, -2.0f, 0.5f, 3.0f};

/* x: float32[N,4] -> Affine(x, w; bias) -> y; w an initializer, or a graph input. */
static kiln_model *affine_model(bool w_const, const char *fail, int opset, kiln_status *st, kiln_err *err)
{
    static struct model m;
    m = fresh(13);
    input(&m, "x", KILN_DTYPE_F32, "N,4");
    if (w_const)
        init_f32(&m, "w", 1, (const int64_t[]){4}, W);
    else
        input(&m, "w", KILN_DTYPE_F32, "4");
    struct pb attrs = {0};
    at_f(&attrs, "bias", 0.5f);
    if (fail) at_s(&attrs, "fail", fail);
    pnode(&m, "a", "Affine", "test.kiln", "x,w", "y", &attrs);
    out_f32(&m, "y");
    return load(&m, "test.kiln", opset, st, err);
}

/* Runs m on x = [rows, 4] (and w when it is an input); checks y = x * W + 0.5. */
static void run_affine(const kiln_model *m, int threads, int64_t rows, bool w_input)
{
    kiln_session_options o = {.threads = threads};
    kiln_session *s = NULL;
    kiln_err err = {0};
    CHECK(kiln_session_create(m, &o, &s, &err) == KILN_OK, "session: %s", err.msg);
    if (!s) return;
    kiln_value *x = NULL, *w = NULL, *y = NULL;
    CHECK(kiln_value_create_tensor(KILN_DTYPE_F32, 2, (const int64_t[]){rows, 4}, &x, &err) == KILN_OK, "x");
    CHECK(kiln_value_create_tensor(KILN_DTYPE_F32, 1, (const int64_t[]){4}, &w, &err) == KILN_OK, "w");
    float *xs = kiln_value_data(x);
    for (int64_t i = 0; i < rows * 4; i++) xs[i] = (float)(i % 13) - 6.0f;
    memcpy(kiln_value_data(w), W, sizeof W);
    const kiln_value *in[2] = {x, w};
    kiln_status st = kiln_session_run(s, w_input ? 2 : 1, NULL, in, 1, &y, &err);
    CHECK(st == KILN_OK, "run: %s", err.msg);
    if (!st) {
        const float *ys = kiln_value_data(y);
        size_t bad = 0;
        for (int64_t i = 0; i < rows * 4; i++) bad += ys[i] != xs[i] * W[i % 4] + 0.5f;
        CHECK(bad == 0, "%zu of %lld values differ (threads %d, w %s)", bad, (long long)(rows * 4), threads,
              w_input ? "input" : "constant");
    }
    kiln_value_free(x);
    kiln_value_free(w);
    kiln_value_free(y);
    kiln_session_free(s);
}

static void test_affine(void)
{
    kiln_err err = {0};
    CHECK(kiln_plugin_load(KP_LIB_OK, &err) == KILN_OK, "loading kp_ok: %s", err.msg);
    CHECK(kiln_plugin_load(KP_LIB_OK, &err) == KILN_OK, "loading kp_ok again: %s", err.msg);
    /* Another plugin's declaration of the same op, backend and versions. */
    char want[4200];
    snprintf(want, sizeof want,
             "duplicate op: op 'Affine' of domain 'test.kiln' at version 2 (backend cpu) is "
             "already declared, at versions 1..2, by plugin '%s'",
             KP_LIB_OK);
    expect_load_fails(KP_LIB_DUP_PLUGIN, KILN_E_INVALID_ARG, want);

    kiln_status st;
    int p0, r0, k0, s0, n0, p1, r1, k1, s1, n1;
    counts(&p0, &r0, &k0, &s0, &n0);
    CHECK(p0 == r0, "before: %d prepares, %d releases", p0, r0);
    kiln_model *m = affine_model(true, NULL, 1, &st, &err);
    CHECK(st == KILN_OK, "Affine model: %s", err.msg);
    if (m) {
        char problems[2048] = "";
        CHECK(kiln_model_check(m, on_problem, problems) == 0, "problems: %s", problems);
        CHECK(!strcmp(type_text(m, "y"), "float32[N,4]"), "y is %s", type_text(m, "y"));
        run_affine(m, 1, 3, false);
        run_affine(m, 4, 1000, false);
        counts(&p1, &r1, &k1, &s1, &n1);
        CHECK(p1 - p0 == 2 && r1 - r0 == 2 && k1 - k0 == 2 && s1 - s0 == 2 && n1 - n0 == 2,
              "hooks per session: %d prepares, %d releases, %d prepacks, %d scratch sizes, %d runs", p1 - p0,
              r1 - r0, k1 - k0, s1 - s0, n1 - n0);
        kiln_model_free(m);
    }
    /* W as an input: no prepack, scratch at run. */
    m = affine_model(false, NULL, 2, &st, &err);
    CHECK(st == KILN_OK, "Affine model, w an input: %s", err.msg);
    if (m) {
        counts(&p0, &r0, &k0, &s0, &n0);
        run_affine(m, 2, 33, true);
        counts(&p1, &r1, &k1, &s1, &n1);
        CHECK(k1 == k0 && p1 - p0 == 1 && r1 - r0 == 1, "w an input: %d prepacks, %d prepares, %d releases",
              k1 - k0, p1 - p0, r1 - r0);
        kiln_model_free(m);
    }
    /* An engine: built (prepacked), then run from a context. */
    m = affine_model(true, NULL, 1, &st, &err);
    if (m) {
        kiln_builder *b = NULL;
        kiln_engine *e = NULL;
        kiln_context *c = NULL;
        CHECK(kiln_builder_create(&b, &err) == KILN_OK, "builder: %s", err.msg);
        CHECK(b && kiln_builder_build(b, m, &e, &err) == KILN_OK, "engine: %s", err.msg);
        CHECK(e && kiln_context_create(e, &c, &err) == KILN_OK, "context: %s", err.msg);
        if (c) {
            kiln_value *x = NULL, *y = NULL;
            CHECK(kiln_value_create_tensor(KILN_DTYPE_F32, 2, (const int64_t[]){2, 4}, &x, &err) == KILN_OK,
                  "x");
            float *xs = kiln_value_data(x);
            for (int i = 0; i < 8; i++) xs[i] = (float)i;
            const kiln_value *in[1] = {x};
            CHECK(kiln_context_run(c, NULL, 1, NULL, in, 1, &y, &err) == KILN_OK, "engine run: %s", err.msg);
            for (int i = 0; y && i < 8; i++)
                CHECK(((float *)kiln_value_data(y))[i] == xs[i] * W[i % 4] + 0.5f, "engine y[%d]", i);
            kiln_value_free(x);
            kiln_value_free(y);
        }
        kiln_context_free(c);
        kiln_engine_free(e);
        kiln_builder_free(b);
        kiln_model_free(m);
    }
    counts(&p1, &r1, &k1, &s1, &n1);
    CHECK(p1 == r1, "after the engine: %d prepares, %d releases", p1, r1);
}

/* An engine file: built (prepack runs), saved, loaded back (prepare runs, prepack does not:
 * its data comes from the file), run. */
static void test_engine_file(void)
{
    kiln_err err = {0};
    kiln_status st;
    kiln_model *m = affine_model(true, NULL, 1, &st, &err);
    CHECK(st == KILN_OK, "Affine model: %s", err.msg);
    if (!m) return;
    char path[64];
    snprintf(path, sizeof path, "/tmp/kiln_test_plugin_%ld.kiln", (long)getpid());
    kiln_builder *b = NULL;
    kiln_engine *e = NULL, *e2 = NULL;
    kiln_context *c = NULL;
    int p0, r0, k0, s0, n0, p1, r1, k1, s1, n1;
    CHECK(kiln_builder_create(&b, &err) == KILN_OK, "builder: %s", err.msg);
    CHECK(b && kiln_builder_build(b, m, &e, &err) == KILN_OK, "engine: %s", err.msg);
    CHECK(e && kiln_engine_save(e, path, &err) == KILN_OK, "save: %s", err.msg);
    kiln_engine_free(e);
    counts(&p0, &r0, &k0, &s0, &n0);
    st = kiln_engine_load(path, &e2, &err);
    CHECK(st == KILN_OK, "load: %s", err.msg);
    counts(&p1, &r1, &k1, &s1, &n1);
    CHECK(st || (p1 - p0 == 1 && k1 == k0), "loading: %d prepares, %d prepacks", p1 - p0, k1 - k0);
    CHECK(!e2 || kiln_context_create(e2, &c, &err) == KILN_OK, "context: %s", err.msg);
    if (c) {
        kiln_value *x = NULL, *y = NULL;
        CHECK(kiln_value_create_tensor(KILN_DTYPE_F32, 2, (const int64_t[]){3, 4}, &x, &err) == KILN_OK, "x");
        float *xs = kiln_value_data(x);
        for (int i = 0; i < 12; i++) xs[i] = (float)(i - 5);
        const kiln_value *in[1] = {x};
        CHECK(kiln_context_run(c, NULL, 1, NULL, in, 1, &y, &err) == KILN_OK, "loaded engine run: %s",
              err.msg);
        for (int i = 0; y && i < 12; i++)
            CHECK(((float *)kiln_value_data(y))[i] == xs[i] * W[i % 4] + 0.5f, "loaded engine y[%d]", i);
        kiln_value_free(x);
        kiln_value_free(y);
    }
    kiln_context_free(c);
    kiln_engine_free(e2);
    kiln_builder_free(b);
    kiln_model_free(m);
    remove(path);
    counts(&p1, &r1, &k1, &s1, &n1);
    CHECK(p1 == r1, "after the engine file: %d prepares, %d releases", p1, r1);
}

/* Constant inputs: shape inference evaluates the plugin's op ahead of time (prepare, run,
 * release), so y is known as a constant. */
static void test_folded(void)
{
    static struct model m;
    m = fresh(13);
    init_f32(&m, "x", 2, (const int64_t[]){1, 4}, (const float[]){1, 2, 3, 4});
    init_f32(&m, "w", 1, (const int64_t[]){4}, W);
    struct pb attrs = {0};
    at_f(&attrs, "bias", 0.5f);
    pnode(&m, "a", "Affine", "test.kiln", "x,w", "y", &attrs);
    out_f32(&m, "y");
    kiln_err err = {0};
    kiln_status st;
    kiln_model *km = load(&m, "test.kiln", 1, &st, &err);
    CHECK(st == KILN_OK, "folded model: %s", err.msg);
    if (!km) return;
    int p0, r0, k0, s0, n0, p1, r1, k1, s1, n1;
    counts(&p0, &r0, &k0, &s0, &n0);
    CHECK(kiln_model_infer_shapes(km, &err) == KILN_OK, "infer: %s", err.msg);
    counts(&p1, &r1, &k1, &s1, &n1);
    CHECK(n1 - n0 == 1 && p1 - p0 == 1 && r1 - r0 == 1,
          "evaluated ahead of time: %d runs, %d prepares, %d releases", n1 - n0, p1 - p0, r1 - r0);
    CHECK(!strcmp(type_text(km, "y"), "float32[1,4]"), "y is %s", type_text(km, "y"));
    kiln_model_free(km);
}

/* One failing step: the message names the node and carries the plugin's words. */
static void test_plugin_failures(void)
{
    kiln_err err = {0};
    kiln_status st;
    int p0, r0, k0, s0, n0, p1, r1, k1, s1, n1;
    counts(&p0, &r0, &k0, &s0, &n0);

    kiln_model *m = affine_model(true, "infer", 1, &st, &err);
    if (m) {
        char problems[2048] = "";
        CHECK(kiln_model_check(m, on_problem, problems) == 1 &&
                  strstr(problems, "Affine node 'a': infer failed as asked"),
              "infer failure as a problem: '%s'", problems);
        CHECK(!strcmp(type_text(m, "y"), "unknown") || strstr(type_text(m, "y"), "float32"),
              "y after a failed shape function: %s", type_text(m, "y"));
        kiln_model_free(m);
    }
    static const struct {
        const char *fail;
        bool at_create;
        kiln_status st;
        const char *msg;
    } cases[] = {
        {"prepare", true, KILN_E_INVALID_MODEL, "Affine node 'a' (opset 1): prepare failed as asked"},
        {"run", false, KILN_E_INVALID_ARG, "Affine node 'a' (opset 1): run failed as asked"},
        {"lines", false, KILN_E_INVALID_ARG, "Affine node 'a' (opset 1): first line second line"},
        {"nooutput", false, KILN_E_INTERNAL,
         "Affine node 'a' (opset 1): the plugin's run succeeded without making output 0 ('y')"},
        {"baddims", false, KILN_E_INVALID_ARG,
         "Affine node 'a' (opset 1): the plugin gave output 0 dim 0 size -3"},
        {"status", false, KILN_E_INTERNAL,
         "Affine node 'a' (opset 1): the plugin's run returned 77, which is not a kiln_status: a status of "
         "my own"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        m = affine_model(true, cases[i].fail, 1, &st, &err);
        if (!m) continue;
        kiln_session *s = NULL;
        st = kiln_session_create(m, NULL, &s, &err);
        if (!cases[i].at_create && st == KILN_OK) {
            kiln_value *x = NULL, *y = NULL;
            CHECK(kiln_value_create_tensor(KILN_DTYPE_F32, 2, (const int64_t[]){2, 4}, &x, &err) == KILN_OK,
                  "x");
            const kiln_value *in[1] = {x};
            st = kiln_session_run(s, 1, NULL, in, 1, &y, &err);
            CHECK(!y, "%s: an output after a failed run", cases[i].fail);
            kiln_value_free(x);
        }
        CHECK(st == cases[i].st && !strcmp(err.msg, cases[i].msg), "fail=%s: %s '%s'; expected %s '%s'",
              cases[i].fail, kiln_status_name(st), err.msg, kiln_status_name(cases[i].st), cases[i].msg);
        kiln_session_free(s);
        kiln_model_free(m);
    }

    /* A later node failing its prepare: the first node's state is released all the same. */
    static struct model mm;
    mm = fresh(13);
    input(&mm, "x", KILN_DTYPE_F32, "N,4");
    init_f32(&mm, "w", 1, (const int64_t[]){4}, W);
    struct pb fa = {0};
    at_s(&fa, "fail", "prepare");
    pnode(&mm, "first", "Affine", "test.kiln", "x,w", "h", NULL);
    pnode(&mm, "second", "Affine", "test.kiln", "h,w", "y", &fa);
    out_f32(&mm, "y");
    m = load(&mm, "test.kiln", 1, &st, &err);
    if (m) {
        kiln_session *s = NULL;
        st = kiln_session_create(m, NULL, &s, &err);
        CHECK(st == KILN_E_INVALID_MODEL && strstr(err.msg, "node 'second'"), "second fails: %s '%s'",
              kiln_status_name(st), err.msg);
        kiln_session_free(s);
        kiln_model_free(m);
    }
    counts(&p1, &r1, &k1, &s1, &n1);
    CHECK(p1 - p0 == r1 - r0 && p1 > p0, "after the failures: %d prepares, %d releases", p1 - p0, r1 - r0);
}

/* Symbolic dims through a shape function; the other declarations. */
static void test_shapes_and_others(void)
{
    static struct model m;
    kiln_err err = {0};
    kiln_status st;
    m = fresh(13);
    input(&m, "a", KILN_DTYPE_F32, "N,3");
    input(&m, "b", KILN_DTYPE_F32, "N,4");
    input(&m, "c", KILN_DTYPE_F32, "M,?");
    pnode(&m, "c1", "Concat2", "test.kiln", "a,b", "ab", NULL);
    pnode(&m, "c2", "Concat2", "test.kiln", "a,c", "ac", NULL);
    out_f32(&m, "ab");
    out_f32(&m, "ac");
    kiln_model *km = load(&m, "test.kiln", 5, &st, &err);
    CHECK(st == KILN_OK, "Concat2 model: %s", err.msg);
    if (km) {
        CHECK(kiln_model_infer_shapes(km, &err) == KILN_OK, "infer: %s", err.msg);
        CHECK(!strcmp(type_text(km, "ab"), "float32[N,7]"), "ab is %s", type_text(km, "ab"));
        CHECK(!strcmp(type_text(km, "ac"), "float32[N,?]"), "ac is %s", type_text(km, "ac"));
        kiln_session *s = NULL;
        CHECK(kiln_session_create(km, NULL, &s, &err) == KILN_OK, "Concat2 session: %s", err.msg);
        kiln_session_free(s);
        kiln_model_free(km);
    }

    /* A standard op kiln has no kernel for: a plugin may fill it in. */
    CHECK(kiln_cpu_find_op("ai.onnx.preview.training", "Gradient", 1) != NULL,
          "Gradient's kernel from kp_ok");
    CHECK(kiln_cpu_has_op("ai.onnx.preview.training", "Gradient"), "Gradient is not a CPU op");
    /* Declared for CUDA only: known (the model loads and checks), no CPU kernel. */
    m = fresh(13);
    input(&m, "x", KILN_DTYPE_F32, "2");
    pnode(&m, "oc", "OnlyCuda", "test.kiln", "x", "y", NULL);
    out_f32(&m, "y");
    km = load(&m, "test.kiln", 1, &st, &err);
    CHECK(st == KILN_OK, "OnlyCuda model: %s", err.msg);
    CHECK(!kiln_cpu_has_op("test.kiln", "OnlyCuda") && kiln_plugin_declares("test.kiln", "OnlyCuda", "cuda"),
          "OnlyCuda's declarations");
    if (km) {
        char problems[2048] = "";
        CHECK(kiln_model_check(km, on_problem, problems) == 0, "OnlyCuda problems: %s", problems);
        kiln_session *s = NULL;
        st = kiln_session_create(km, NULL, &s, &err);
        CHECK(st == KILN_E_UNSUPPORTED && strstr(err.msg, "unsupported op 'OnlyCuda'"),
              "OnlyCuda session: %s '%s'", kiln_status_name(st), err.msg);
        kiln_session_free(s);
        kiln_model_free(km);
    }
    /* Affine is declared for versions 1..2: at 3 the model loads, and has no kernel. */
    km = affine_model(true, NULL, 3, &st, &err);
    CHECK(st == KILN_OK, "Affine at 3 loads: %s", err.msg);
    if (km) {
        kiln_session *s = NULL;
        st = kiln_session_create(km, NULL, &s, &err);
        CHECK(st == KILN_E_UNSUPPORTED && strstr(err.msg, "no CPU kernel for op 'Affine' version 3 (domain "
                                                          "'test.kiln')"),
              "Affine at 3: %s '%s'", kiln_status_name(st), err.msg);
        kiln_session_free(s);
        kiln_model_free(km);
    }
}

/* ------------------------------------------------------------------ threads, memory */

static void *load_second(void *arg)
{
    kiln_err err = {0};
    *(kiln_status *)arg = kiln_plugin_load(KP_LIB_SECOND, &err);
    return NULL;
}

static void *look_up(void *arg)
{
    int *found = arg;
    for (int i = 0; i < 20000 && !*found; i++)
        if (kiln_cpu_find_op("test.second", "Twice", 1)) *found = 1;
    return NULL;
}

static void test_threads(void)
{
    enum { N = 8 };
    pthread_t t[N + 2];
    kiln_status st[N];
    int found[2] = {0, 0};
    for (int i = 0; i < 2; i++) CHECK(pthread_create(&t[N + i], NULL, look_up, &found[i]) == 0, "thread");
    for (int i = 0; i < N; i++) CHECK(pthread_create(&t[i], NULL, load_second, &st[i]) == 0, "thread");
    for (int i = 0; i < N + 2; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < N; i++) CHECK(st[i] == KILN_OK, "thread %d: %s", i, kiln_status_name(st[i]));
    CHECK(kiln_cpu_find_op("test.second", "Twice", 1) != NULL, "Twice after the concurrent loads");
}

/* Every allocation of a load fails in turn: a clean KILN_E_NOMEM each time, nothing
 * registered, and a later attempt succeeds. */
static void test_oom(void)
{
    kiln_err err = {0};
    kiln_status st = KILN_E_NOMEM;
    int n;
    for (n = 1; n < 100 && st == KILN_E_NOMEM; n++) {
        kiln_alloc_fail_after(n);
        st = kiln_plugin_load(KP_LIB_OOM, &err);
        kiln_alloc_fail_after(0);
        if (st == KILN_E_NOMEM)
            CHECK(!kiln_plugin_declares("test.oom", "Same", NULL),
                  "allocation %d failed, but 'Same' is registered", n);
    }
    CHECK(st == KILN_OK && n > 2, "after %d failing allocations: %s '%s'", n - 1, kiln_status_name(st),
          err.msg);
    CHECK(kiln_plugin_declares("test.oom", "Same", "cpu"), "Same is not registered");
}

int main(void)
{
    test_refusals();
    test_affine();
    test_engine_file();
    test_folded();
    test_plugin_failures();
    test_shapes_and_others();
    test_threads();
    test_oom();
    return test_summary("test_plugin");
}
