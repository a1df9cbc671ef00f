/* test_check.c: the model checker (src/check/check.c, docs/checker.md).
 *
 * 1. Every model of the ONNX backend test data (node/, simple/, pytorch-operator/) is valid:
 *    the checker reports nothing (KNOWN_ODD lists deliberate exceptions, with a reason).
 * 2. Broken models, written here as ModelProto bytes with a tiny protobuf encoder (or made by
 *    changing a loaded model's IR in memory where the decoder would refuse the bytes), give
 *    the specific one-line messages: a cycle, an undefined input, a doubly defined value, an
 *    unknown op, a removed op, an op too new for the opset, wrong attribute type, missing
 *    required attribute, unknown and duplicate attributes, a domain not imported, an empty
 *    op_type, untyped graph inputs, duplicate outputs, bad sparse initializers, a problem
 *    inside a subgraph, a bad header.
 * 3. Every problem is reported (several in one model give several lines) and the return
 *    value counts them, with or without a callback.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"
#include "test_pb.h"
#include "test_support.h"

/* ------------------------------------------------------------------ collected problems */

struct problems {
    size_t n;
    char msg[64][1024];
};

static void collect(void *user, const char *message)
{
    struct problems *p = user;
    if (p->n < 64) snprintf(p->msg[p->n], sizeof p->msg[0], "%s", message);
    p->n++;
}

static bool has(const struct problems *p, const char *needle)
{
    for (size_t i = 0; i < p->n && i < 64; i++)
        if (strstr(p->msg[i], needle)) return true;
    return false;
}

static void dump(const struct problems *p)
{
    for (size_t i = 0; i < p->n && i < 64; i++) fprintf(stderr, "    | %s\n", p->msg[i]);
}

/* ------------------------------------------------------------------ 1. test data */

/* Test-data models that are deliberately not valid ONNX; none so far. */
static const struct {
    const char *name, *reason;
} KNOWN_ODD[] = {{NULL, NULL}};

static bool known_odd(const char *name)
{
    for (size_t i = 0; KNOWN_ODD[i].name; i++)
        if (strcmp(KNOWN_ODD[i].name, name) == 0) return true;
    return false;
}

static void check_folder(const char *sub, size_t *n_models)
{
    size_t n;
    char **cases = list_cases(sub, &n);
    if (!cases) {
        fprintf(stderr, "note: no test data at %s/%s\n", onnx_tests_dir(), sub);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        char path[4096];
        case_path(path, sizeof path, sub, cases[i], "model.onnx");
        kiln_model *m = NULL;
        kiln_err err = {0};
        if (kiln_model_load_file(path, &m, &err) != KILN_OK) {
            CHECK(0, "%s/%s does not load: %s", sub, cases[i], err.msg);
            continue;
        }
        struct problems p = {0};
        size_t np = kiln_model_check(m, collect, &p);
        CHECK(np == p.n, "%s: returned %zu, reported %zu", cases[i], np, p.n);
        if (!known_odd(cases[i])) {
            CHECK(np == 0, "%s/%s: %zu problems in a valid model", sub, cases[i], np);
            if (np) dump(&p);
        }
        (*n_models)++;
        kiln_model_free(m);
    }
    free_cases(cases, n);
}

static void test_valid_models(void)
{
    size_t n = 0;
    check_folder("node", &n);
    check_folder("simple", &n);
    check_folder("pytorch-operator", &n);
    fprintf(stderr, "checked %zu ONNX test models\n", n);
}

/* ------------------------------------------------------------------ model bytes (test_pb.h) */

/* ValueInfoProto of a float tensor [2] (elem_type 0 leaves the type without element type;
 * elem_type < 0 leaves the type out). */
static void value_info(struct pb *out, unsigned field, const char *name, int elem_type)
{
    struct pb vi = {0}, tp = {0}, tt = {0}, shape = {0}, dim = {0};
    pb_str(&vi, 1, name);
    if (elem_type >= 0) {
        if (elem_type) pb_int(&tt, 1, elem_type);
        pb_int(&dim, 1, 2);
        pb_msg(&shape, 1, &dim);
        pb_msg(&tt, 2, &shape);
        pb_msg(&tp, 1, &tt);
        pb_msg(&vi, 2, &tp);
    }
    pb_msg(out, field, &vi);
}

/* NodeProto with up to 2 inputs and 1 output; attrs is a pre-encoded list of AttributeProto
 * (field 5) entries or NULL. */
static void node(struct pb *g, const char *op, const char *in0, const char *in1, const char *out,
                 const char *name, const struct pb *attrs, const char *domain)
{
    struct pb n = {0};
    if (in0) pb_str(&n, 1, in0);
    if (in1) pb_str(&n, 1, in1);
    if (out) pb_str(&n, 2, out);
    if (name) pb_str(&n, 3, name);
    pb_str(&n, 4, op);
    if (attrs)
        for (size_t i = 0; i < attrs->len; i++) pb_byte(&n, attrs->data[i]);
    if (domain) pb_str(&n, 7, domain);
    pb_msg(g, 1, &n);
}

static void attr_int(struct pb *attrs, const char *name, int64_t v)
{
    struct pb a = {0};
    pb_str(&a, 1, name);
    pb_int(&a, 3, v);
    pb_int(&a, 20, KILN_ATTR_INT);
    pb_msg(attrs, 5, &a);
}

static void attr_float(struct pb *attrs, const char *name, float v)
{
    struct pb a = {0};
    pb_str(&a, 1, name);
    pb_float(&a, 2, v);
    pb_int(&a, 20, KILN_ATTR_FLOAT);
    pb_msg(attrs, 5, &a);
}

static void attr_graph(struct pb *attrs, const char *name, const struct pb *graph)
{
    struct pb a = {0};
    pb_str(&a, 1, name);
    pb_msg(&a, 6, graph);
    pb_int(&a, 20, KILN_ATTR_GRAPH);
    pb_msg(attrs, 5, &a);
}

/* ModelProto: ir_version (0 = absent), one opset import (opset 0 = none), graph. */
static void model(struct pb *out, int64_t ir_version, const char *domain, int64_t opset,
                  const struct pb *graph)
{
    memset(out, 0, sizeof *out);
    if (ir_version) pb_int(out, 1, ir_version);
    if (opset) {
        struct pb os = {0};
        pb_str(&os, 1, domain);
        pb_int(&os, 2, opset);
        pb_msg(out, 8, &os);
    }
    pb_msg(out, 7, graph);
}

/* Loads the model bytes and runs the checker into *p; returns the count (SIZE_MAX if the
 * bytes do not load). */
static size_t check_bytes(const struct pb *b, struct problems *p)
{
    kiln_model *m = NULL;
    kiln_err err = {0};
    memset(p, 0, sizeof *p);
    if (kiln_model_load_buffer(b->data, b->len, NULL, &m, &err) != KILN_OK) {
        CHECK(0, "test model does not load: %s", err.msg);
        return SIZE_MAX;
    }
    size_t n = kiln_model_check(m, collect, p);
    CHECK(n == p->n, "returned %zu, reported %zu", n, p->n);
    CHECK(kiln_model_check(m, NULL, NULL) == n, "count differs without a callback");
    for (size_t i = 0; i < p->n && i < 64; i++)
        CHECK(!strchr(p->msg[i], '\n'), "message is not one line: %s", p->msg[i]);
    kiln_model_free(m);
    return n;
}

/* Graph x -> [nodes] -> y with typed input x and output y, all float [2]. */
static void graph_begin(struct pb *g, const char *name)
{
    memset(g, 0, sizeof *g);
    pb_str(g, 2, name);
    value_info(g, 11, "x", 1);
    value_info(g, 12, "y", 1);
}

#define EXPECT(p, needle)                                                                      \
    do {                                                                                       \
        CHECK(has(p, needle), "no problem containing \"%s\"", needle);                        \
        if (!has(p, needle)) dump(p);                                                          \
    } while (0)

/* ------------------------------------------------------------------ 2. broken models */

static void test_good_model(void)
{
    struct pb g, m;
    struct problems p;
    graph_begin(&g, "good");
    struct pb attrs = {0};
    attr_int(&attrs, "to", 1);
    node(&g, "Relu", "x", NULL, "r", "relu", NULL, NULL);
    node(&g, "Cast", "r", NULL, "y", "cast", &attrs, NULL);
    model(&m, 8, "", 13, &g);
    CHECK(check_bytes(&m, &p) == 0, "a valid model has %zu problems", p.n);
    dump(&p);
}

static void test_structure(void)
{
    struct pb g, m;
    struct problems p;

    /* A cycle: a = Relu(b), b = Relu(a). */
    graph_begin(&g, "loopy");
    node(&g, "Relu", "b", NULL, "a", "ra", NULL, NULL);
    node(&g, "Relu", "a", NULL, "b", "rb", NULL, NULL);
    node(&g, "Add", "x", "b", "y", "add", NULL, NULL);
    model(&m, 8, "", 13, &g);
    check_bytes(&m, &p);
    EXPECT(&p, "graph 'loopy' has a cycle");
    EXPECT(&p, "Relu node 'ra'");

    /* An undefined input. */
    graph_begin(&g, "g");
    node(&g, "Relu", "nope", NULL, "y", "relu", NULL, NULL);
    model(&m, 8, "", 13, &g);
    CHECK(check_bytes(&m, &p) == 1, "expected 1 problem, got %zu", p.n);
    EXPECT(&p, "Relu node 'relu' input 0 'nope' is not defined");

    /* A value defined twice. */
    graph_begin(&g, "g");
    node(&g, "Relu", "x", NULL, "y", "first", NULL, NULL);
    node(&g, "Neg", "x", NULL, "y", "second", NULL, NULL);
    model(&m, 8, "", 13, &g);
    check_bytes(&m, &p);
    EXPECT(&p, "value 'y' is defined twice");
    EXPECT(&p, "Neg node 'second'");

    /* Duplicate graph output, untyped input, output without element type. */
    memset(&g, 0, sizeof g);
    pb_str(&g, 2, "decl");
    value_info(&g, 11, "x", -1);
    value_info(&g, 12, "y", 0);
    value_info(&g, 12, "y", 0);
    node(&g, "Relu", "x", NULL, "y", "relu", NULL, NULL);
    model(&m, 8, "", 13, &g);
    check_bytes(&m, &p);
    EXPECT(&p, "graph input 'x' has no type");
    EXPECT(&p, "graph output 'y' has no element type");
    EXPECT(&p, "graph 'decl' lists output 'y' twice");
}

static void test_ops(void)
{
    struct pb g, m;
    struct problems p;

    graph_begin(&g, "g");
    node(&g, "Foo", "x", NULL, "y", "foo", NULL, NULL);
    model(&m, 8, "", 13, &g);
    CHECK(check_bytes(&m, &p) == 1, "expected 1 problem, got %zu", p.n);
    EXPECT(&p, "Foo node 'foo': unknown op 'Foo' in domain '' at opset 13");

    graph_begin(&g, "g");
    node(&g, "Upsample", "x", "x", "y", "up", NULL, NULL);
    model(&m, 8, "", 10, &g);
    check_bytes(&m, &p);
    EXPECT(&p, "Upsample node 'up': op 'Upsample' was removed in opset 10");

    /* Upsample-9 is fine at opset 9. */
    model(&m, 8, "", 9, &g);
    CHECK(check_bytes(&m, &p) == 0, "Upsample at opset 9: %zu problems", p.n);

    graph_begin(&g, "g");
    node(&g, "Gelu", "x", NULL, "y", "gelu", NULL, NULL);
    model(&m, 8, "", 13, &g);
    check_bytes(&m, &p);
    EXPECT(&p, "op 'Gelu' does not exist in domain '' at opset 13 (it first appears in opset 20)");
    model(&m, 9, "", 20, &g);
    CHECK(check_bytes(&m, &p) == 0, "Gelu at opset 20: %zu problems", p.n);

    /* A domain without an import (one kiln knows: its ops load and the checker judges them). */
    graph_begin(&g, "g");
    node(&g, "Binarizer", "x", NULL, "y", "bin", NULL, "ai.onnx.ml");
    model(&m, 8, "", 13, &g);
    check_bytes(&m, &p);
    EXPECT(&p, "Binarizer node 'bin': domain 'ai.onnx.ml' is not imported");
    /* An op of a domain kiln does not know, that no loaded plugin declares, does not load at
     * all, imported or not (docs/plugins.md; test_swish loads one with its plugin). */
    graph_begin(&g, "g");
    node(&g, "Relu", "x", NULL, "y", "custom", NULL, "com.example");
    for (int imported = 0; imported < 2; imported++) {
        model(&m, 8, imported ? "com.example" : "", imported ? 1 : 13, &g);
        kiln_model *mm = NULL;
        kiln_err err = {0};
        kiln_status st = kiln_model_load_buffer(m.data, m.len, NULL, &mm, &err);
        CHECK(st == KILN_E_UNSUPPORTED && !mm &&
                  strstr(err.msg, "node 'custom' (Relu): op 'Relu' of domain 'com.example' is not "
                                  "known to kiln and no loaded plugin declares it"),
              "an unknown custom op (imported %d): %s '%s'", imported, kiln_status_name(st), err.msg);
        kiln_model_free(mm);
    }
}

static void test_attributes(void)
{
    struct pb g, m, attrs;
    struct problems p;

    /* Wrong type: Cast's `to` as a float. */
    graph_begin(&g, "g");
    memset(&attrs, 0, sizeof attrs);
    attr_float(&attrs, "to", 1.0f);
    node(&g, "Cast", "x", NULL, "y", "cast", &attrs, NULL);
    model(&m, 8, "", 13, &g);
    CHECK(check_bytes(&m, &p) == 1, "expected 1 problem, got %zu", p.n);
    EXPECT(&p, "Cast node 'cast': attribute 'to' is float; Cast-13 expects int");

    /* Missing required attribute. */
    graph_begin(&g, "g");
    node(&g, "Cast", "x", NULL, "y", "cast", NULL, NULL);
    model(&m, 8, "", 19, &g);
    CHECK(check_bytes(&m, &p) == 1, "expected 1 problem, got %zu", p.n);
    EXPECT(&p, "Cast node 'cast': required attribute 'to' of Cast-19 is missing");

    /* Unknown and duplicate attributes; the same name is known at another version. */
    graph_begin(&g, "g");
    memset(&attrs, 0, sizeof attrs);
    attr_int(&attrs, "axis", 1);
    attr_int(&attrs, "axis", 2);
    attr_int(&attrs, "bogus", 2);
    node(&g, "Softmax", "x", NULL, "y", "sm", &attrs, NULL);
    model(&m, 8, "", 13, &g);
    CHECK(check_bytes(&m, &p) == 2, "expected 2 problems, got %zu", p.n);
    EXPECT(&p, "Softmax node 'sm': attribute 'axis' is given twice");
    EXPECT(&p, "unknown attribute 'bogus' for Softmax-13");

    /* ReduceMean lost `axes` (an attribute) at opset 18, where it became an input. */
    graph_begin(&g, "g");
    memset(&attrs, 0, sizeof attrs);
    attr_int(&attrs, "keepdims", 1);
    struct pb axes = {0};
    pb_str(&axes, 1, "axes");
    pb_int(&axes, 8, 0);
    pb_int(&axes, 20, KILN_ATTR_INTS);
    pb_msg(&attrs, 5, &axes);
    node(&g, "ReduceMean", "x", NULL, "y", "rm", &attrs, NULL);
    model(&m, 8, "", 13, &g);
    /* The attribute is fine; shape inference then finds that reducing x[2] over axis 0
     * with keepdims gives [1], not the declared [2]. */
    CHECK(check_bytes(&m, &p) == 1, "ReduceMean-13 with axes: %zu problems", p.n);
    EXPECT(&p, "ReduceMean node 'rm': output 'y' declared float32[2], inferred float32[1]");
    model(&m, 8, "", 18, &g);
    check_bytes(&m, &p);
    EXPECT(&p, "unknown attribute 'axes' for ReduceMean-18");

    /* Constant needs exactly one value attribute. */
    graph_begin(&g, "g");
    memset(&attrs, 0, sizeof attrs);
    attr_int(&attrs, "value_int", 1);
    attr_float(&attrs, "value_float", 1.0f);
    node(&g, "Constant", NULL, NULL, "y", "k", &attrs, NULL);
    model(&m, 8, "", 13, &g);
    check_bytes(&m, &p);
    EXPECT(&p, "Constant node 'k': Constant needs exactly one value attribute");

    /* ai.onnx.ml attributes are checked too. */
    graph_begin(&g, "g");
    memset(&attrs, 0, sizeof attrs);
    attr_int(&attrs, "threshold", 1);
    node(&g, "Binarizer", "x", NULL, "y", "bin", &attrs, "ai.onnx.ml");
    model(&m, 8, "ai.onnx.ml", 1, &g);
    check_bytes(&m, &p);
    EXPECT(&p, "attribute 'threshold' is int; Binarizer-1 expects float");
}

static void test_subgraph(void)
{
    struct pb g, m, then_g, else_g, attrs;
    struct problems p;
    memset(&then_g, 0, sizeof then_g);
    pb_str(&then_g, 2, "then");
    value_info(&then_g, 12, "t", 1);
    node(&then_g, "Frobnicate", "x", NULL, "t", "inner", NULL, NULL);
    memset(&else_g, 0, sizeof else_g);
    pb_str(&else_g, 2, "else");
    value_info(&else_g, 12, "e", -1); /* subgraph outputs may be untyped */
    node(&else_g, "Identity", "x", NULL, "e", "id", NULL, NULL);

    memset(&g, 0, sizeof g);
    pb_str(&g, 2, "g");
    value_info(&g, 11, "x", 1);
    value_info(&g, 11, "c", 9);
    value_info(&g, 12, "y", 1);
    memset(&attrs, 0, sizeof attrs);
    attr_graph(&attrs, "then_branch", &then_g);
    attr_graph(&attrs, "else_branch", &else_g);
    node(&g, "If", "c", NULL, "y", "branch", &attrs, NULL);
    model(&m, 8, "", 13, &g);
    CHECK(check_bytes(&m, &p) == 1, "expected 1 problem, got %zu", p.n);
    EXPECT(&p, "Frobnicate node 'inner' in subgraph 'then': unknown op 'Frobnicate'");

    /* If without else_branch. */
    memset(&g, 0, sizeof g);
    pb_str(&g, 2, "g");
    value_info(&g, 11, "x", 1);
    value_info(&g, 11, "c", 9);
    value_info(&g, 12, "y", 1);
    memset(&attrs, 0, sizeof attrs);
    attr_graph(&attrs, "then_branch", &then_g);
    node(&g, "If", "c", NULL, "y", "branch", &attrs, NULL);
    model(&m, 8, "", 13, &g);
    check_bytes(&m, &p);
    EXPECT(&p, "If node 'branch': required attribute 'else_branch' of If-13 is missing");
}

static void test_header(void)
{
    struct pb g, m;
    struct problems p;
    graph_begin(&g, "g");
    node(&g, "Relu", "x", NULL, "y", "relu", NULL, NULL);

    model(&m, 0, "", 13, &g);
    check_bytes(&m, &p);
    EXPECT(&p, "model has no ir_version");

    model(&m, 99, "", 13, &g);
    check_bytes(&m, &p);
    EXPECT(&p, "model ir_version 99 is newer than kiln supports");

    model(&m, 8, "", 0, &g);
    check_bytes(&m, &p);
    EXPECT(&p, "model imports no opset");
    EXPECT(&p, "domain '' is not imported");

    /* An opset newer than kiln knows never gets to the checker: loading refuses it. */
    model(&m, 8, "", 99, &g);
    kiln_model *mm = NULL;
    kiln_err err = {0};
    kiln_status st = kiln_model_load_buffer(m.data, m.len, NULL, &mm, &err);
    CHECK(st == KILN_E_UNSUPPORTED, "opset 99 loads with %s", kiln_status_name(st));
    CHECK(!mm, "a refused model is still returned");
    const char *want = "model (from memory) imports opset ai.onnx 99; kiln knows ai.onnx up to ";
    CHECK(strncmp(err.msg, want, strlen(want)) == 0 && atoi(err.msg + strlen(want)) >= 24,
          "message is '%s'", err.msg);
    static const char *const doms[] = {"ai.onnx.ml", "ai.onnx.preview.training"};
    for (size_t i = 0; i < sizeof doms / sizeof doms[0]; i++) {
        model(&m, 8, doms[i], 999, &g);
        st = kiln_model_load_buffer(m.data, m.len, NULL, &mm, &err);
        CHECK(st == KILN_E_UNSUPPORTED && strstr(err.msg, "imports opset ") &&
                  strstr(err.msg, doms[i]),
              "domain %s opset 999: %s '%s'", doms[i], kiln_status_name(st), err.msg);
        kiln_model_free(mm);
        mm = NULL;
    }
    /* A domain kiln does not know is not judged. */
    model(&m, 8, "com.example", 999, &g);
    st = kiln_model_load_buffer(m.data, m.len, NULL, &mm, &err);
    CHECK(st == KILN_OK, "an unknown domain at 999 does not load: %s", err.msg);
    kiln_model_free(mm);
}

/* Problems the decoder would refuse as bytes or that need IR surgery: an empty op_type, an
 * inconsistent sparse initializer, initializers outside the inputs before IR 4. Several
 * problems in one model are all reported. */
static void test_mutated(void)
{
    struct pb g, m;
    struct problems p;
    graph_begin(&g, "g");
    node(&g, "Relu", "x", NULL, "r", "relu", NULL, NULL);
    node(&g, "Neg", "r", NULL, "y", "neg", NULL, NULL);
    model(&m, 8, "", 13, &g);
    kiln_model *km = NULL;
    kiln_err err = {0};
    if (kiln_model_load_buffer(m.data, m.len, NULL, &km, &err) != KILN_OK) {
        CHECK(0, "does not load: %s", err.msg);
        return;
    }
    struct kiln_model *im = km;
    CHECK(kiln_model_check(km, NULL, NULL) == 0, "unmodified model has problems");

    im->graph->nodes[1].op_type = "";
    static int64_t idx[2] = {7, 1};
    static float vals[2] = {1, 2};
    struct kiln_sparse_tensor sp = {.name = "sp", .rank = 1, .dims = {4}};
    sp.values = (struct kiln_tensor){.dtype = KILN_DTYPE_F32, .rank = 1, .dims = {2}, .data = vals};
    sp.indices = (struct kiln_tensor){.dtype = KILN_DTYPE_I64, .rank = 1, .dims = {2}, .data = idx};
    im->graph->sparse_inits = &sp;
    im->graph->n_sparse_inits = 1;
    memset(&p, 0, sizeof p);
    size_t n = kiln_model_check(km, collect, &p);
    CHECK(n == 2, "expected 2 problems, got %zu", n);
    EXPECT(&p, "node #1 has an empty op_type");
    EXPECT(&p, "sparse initializer 'sp': sparse tensor index 7 at position 0 is out of range [0, 4)");

    idx[0] = 3; /* in range, but not increasing */
    memset(&p, 0, sizeof p);
    kiln_model_check(km, collect, &p);
    EXPECT(&p, "sparse tensor indices are not strictly increasing at position 1");

    sp.indices.dims[0] = 1;
    memset(&p, 0, sizeof p);
    kiln_model_check(km, collect, &p);
    EXPECT(&p, "sparse tensor has 2 values but 1 linear indices");

    im->graph->n_sparse_inits = 0;
    im->graph->sparse_inits = NULL;
    im->graph->nodes[1].op_type = "Neg";
    im->ir_version = 3;
    struct kiln_initializer init = {.name = "w", .t = {.dtype = KILN_DTYPE_F32, .rank = 1, .dims = {2}, .data = vals}};
    im->graph->inits = &init;
    im->graph->n_inits = 1;
    memset(&p, 0, sizeof p);
    kiln_model_check(km, collect, &p);
    EXPECT(&p, "initializer 'w' is not a graph input (required for ir_version 3 < 4)");
    im->graph->inits = NULL;
    im->graph->n_inits = 0;

    /* Link problems come first, verbatim. */
    const char *lp[1] = {"value 'q' is defined twice (again as graph input #1)"};
    im->link_problems = lp;
    im->n_link_problems = 1;
    im->ir_version = 0;
    memset(&p, 0, sizeof p);
    n = kiln_model_check(km, collect, &p);
    CHECK(n == 2 && strcmp(p.msg[0], lp[0]) == 0 && strstr(p.msg[1], "no ir_version"),
          "link problem not first (%zu problems)", n);
    im->link_problems = NULL;
    im->n_link_problems = 0;
    kiln_model_free(km);

    CHECK(kiln_model_check(NULL, collect, &p) == 0, "NULL model");
}

int main(void)
{
    test_good_model();
    test_structure();
    test_ops();
    test_attributes();
    test_subgraph();
    test_header();
    test_mutated();
    test_valid_models();
    return test_summary("test_check");
}
