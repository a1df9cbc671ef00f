/* test_opt_basic.c: the optimizer framework (src/opt/optimize.c, edit.c) and the basic
 * passes (src/opt/pass_*.c), docs/optimizer.md.
 *
 * Models are written here as ModelProto bytes with a small protobuf encoder, loaded twice,
 * one copy optimized; then
 *   - the structure is what the pass promises (nodes gone, merged, rewired; initializers
 *     added or dropped; graph output names kept),
 *   - the optimized model passes kiln_model_check,
 *   - both copies run on the same pseudo-random inputs and give the same outputs.
 * Also: nodes that must stay (graph input wired to a graph output, random ops, Dropout whose
 * mask is read, Slice with negative steps, folds beyond the size cap), subgraphs (renames
 * reach into them, passes run inside them), the pass list and its errors, the report, the
 * fixed point (a second optimize changes nothing), out-of-memory at every allocation
 * leaving the model unchanged, and the fuzz corpus passing through optimize without harm.
 */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"
#include "opt/opt.h"
#include "opt/opt_priv.h"
#include "test_support.h"

/* ------------------------------------------------------------------ protobuf encoder */

struct pb {
    uint8_t *data;
    size_t len, cap;
};

static void pb_put(struct pb *b, const void *p, size_t n)
{
    if (!n) return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n) cap *= 2;
        b->data = realloc(b->data, cap);
        if (!b->data) abort();
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static void pb_free(struct pb *b)
{
    free(b->data);
    *b = (struct pb){0};
}

static void pb_varint(struct pb *b, uint64_t v)
{
    uint8_t buf[10];
    size_t n = 0;
    while (v >= 0x80) {
        buf[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    buf[n++] = (uint8_t)v;
    pb_put(b, buf, n);
}

static void pb_int(struct pb *b, unsigned field, int64_t v)
{
    pb_varint(b, (uint64_t)field << 3);
    pb_varint(b, (uint64_t)v);
}

static void pb_bytes(struct pb *b, unsigned field, const void *p, size_t n)
{
    pb_varint(b, (uint64_t)field << 3 | 2);
    pb_varint(b, n);
    pb_put(b, p, n);
}

static void pb_str(struct pb *b, unsigned field, const char *s)
{
    pb_bytes(b, field, s, strlen(s));
}

/* Appends m as a length-delimited field and frees it. */
static void pb_msg(struct pb *b, unsigned field, struct pb *m)
{
    pb_bytes(b, field, m->data, m->len);
    pb_free(m);
}

/* ------------------------------------------------------------------ model builder */

/* "2x3" -> dims; "" -> rank 0; tokens that are not numbers are symbolic. */
static void put_shape(struct pb *tt, const char *dims)
{
    struct pb shape = {0};
    const char *p = dims;
    while (*p) {
        const char *e = strchr(p, 'x');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        char tok[64];
        snprintf(tok, sizeof tok, "%.*s", (int)len, p);
        struct pb dim = {0};
        char *end;
        long v = strtol(tok, &end, 10);
        if (*end == 0 && len)
            pb_int(&dim, 1, v);
        else
            pb_str(&dim, 2, tok);
        pb_msg(&shape, 1, &dim);
        if (!e) break;
        p = e + 1;
    }
    pb_varint(tt, 2 << 3 | 2); /* shape, even when empty (rank 0) */
    pb_varint(tt, shape.len);
    pb_put(tt, shape.data, shape.len);
    pb_free(&shape);
}

/* ValueInfoProto of a tensor; dims NULL: no shape. */
static void value_info(struct pb *g, unsigned field, const char *name, kiln_dtype dt, const char *dims)
{
    struct pb vi = {0}, tp = {0}, tt = {0};
    pb_int(&tt, 1, dt);
    if (dims) put_shape(&tt, dims);
    pb_msg(&tp, 1, &tt);
    pb_str(&vi, 1, name);
    pb_msg(&vi, 2, &tp);
    pb_msg(g, field, &vi);
}

static void input(struct pb *g, const char *name, kiln_dtype dt, const char *dims)
{
    value_info(g, 11, name, dt, dims);
}

static void output(struct pb *g, const char *name, kiln_dtype dt, const char *dims)
{
    value_info(g, 12, name, dt, dims);
}

static void put_csv(struct pb *b, unsigned field, const char *csv)
{
    if (!csv) return;
    const char *p = csv;
    for (;;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        pb_bytes(b, field, p, len);
        if (!e) break;
        p = e + 1;
    }
}

/* A node; attrs: AttributeProto entries made by the attr_* helpers (may be NULL; freed). */
static void node(struct pb *g, const char *op, const char *ins, const char *outs, struct pb *attrs)
{
    struct pb n = {0};
    put_csv(&n, 1, ins && ins[0] ? ins : NULL);
    put_csv(&n, 2, outs);
    pb_str(&n, 4, op);
    if (attrs) {
        pb_put(&n, attrs->data, attrs->len);
        pb_free(attrs);
    }
    pb_msg(g, 1, &n);
}

static void pb_attr_i(struct pb *a, const char *name, int64_t v)
{
    struct pb at = {0};
    pb_str(&at, 1, name);
    pb_int(&at, 3, v);
    pb_int(&at, 20, KILN_ATTR_INT);
    pb_msg(a, 5, &at);
}

static void pb_attr_ints(struct pb *a, const char *name, const int64_t *v, size_t n)
{
    struct pb at = {0};
    pb_str(&at, 1, name);
    for (size_t i = 0; i < n; i++) pb_int(&at, 8, v[i]);
    pb_int(&at, 20, KILN_ATTR_INTS);
    pb_msg(a, 5, &at);
}

/* TensorProto with raw data. */
static void tensor_msg(struct pb *t, const char *name, kiln_dtype dt, const char *dims, const void *data,
                       size_t nbytes)
{
    const char *p = dims;
    while (*p) {
        char *end;
        pb_int(t, 1, strtol(p, &end, 10));
        p = *end == 'x' ? end + 1 : end;
    }
    pb_int(t, 2, dt);
    if (name) pb_str(t, 8, name);
    pb_bytes(t, 9, data, nbytes);
}

static void pb_attr_tensor(struct pb *a, const char *name, kiln_dtype dt, const char *dims, const void *data,
                           size_t nbytes)
{
    struct pb at = {0}, t = {0};
    pb_str(&at, 1, name);
    tensor_msg(&t, NULL, dt, dims, data, nbytes);
    pb_msg(&at, 5, &t);
    pb_int(&at, 20, KILN_ATTR_TENSOR);
    pb_msg(a, 5, &at);
}

static void pb_attr_graph(struct pb *a, const char *name, struct pb *g)
{
    struct pb at = {0};
    pb_str(&at, 1, name);
    pb_msg(&at, 6, g);
    pb_int(&at, 20, KILN_ATTR_GRAPH);
    pb_msg(a, 5, &at);
}

static void init(struct pb *g, const char *name, kiln_dtype dt, const char *dims, const void *data,
                 size_t nbytes)
{
    struct pb t = {0};
    tensor_msg(&t, name, dt, dims, data, nbytes);
    pb_msg(g, 5, &t);
}

static void init_i64(struct pb *g, const char *name, const char *dims, const int64_t *v, size_t n)
{
    init(g, name, KILN_DTYPE_I64, dims, v, n * sizeof *v);
}

static void init_f32(struct pb *g, const char *name, const char *dims, const float *v, size_t n)
{
    init(g, name, KILN_DTYPE_F32, dims, v, n * sizeof *v);
}

/* The model around graph g (freed): IR version 8, opset `opset`. */
static struct pb model_of(struct pb *g, int opset, int ir_version)
{
    struct pb m = {0}, os = {0};
    pb_int(&m, 1, ir_version);
    pb_str(&m, 2, "test_opt_basic");
    pb_str(g, 2, "g");
    pb_msg(&m, 7, g);
    pb_int(&os, 2, opset);
    pb_msg(&m, 8, &os);
    return m;
}

static kiln_model *load(const struct pb *m)
{
    kiln_model *km = NULL;
    kiln_err err = {0};
    if (kiln_model_load_buffer(m->data, m->len, NULL, &km, &err) != KILN_OK) {
        test_fail(__FILE__, __LINE__, NULL, "load: %s", err.msg);
        return NULL;
    }
    return km;
}

/* ------------------------------------------------------------------ running and comparing */

static size_t count_op(const struct kiln_graph *g, const char *op)
{
    size_t n = 0;
    for (size_t i = 0; i < g->n_nodes; i++) n += strcmp(g->nodes[i].op_type, op) == 0;
    return n;
}

static const struct kiln_node *find_op(const struct kiln_graph *g, const char *op)
{
    for (size_t i = 0; i < g->n_nodes; i++)
        if (strcmp(g->nodes[i].op_type, op) == 0) return &g->nodes[i];
    return NULL;
}

/* Inputs from the declared types (fixed dims only): floats in [-2, 2), int64 in [0, 4). */
static kiln_value **make_inputs(const kiln_model *m, uint64_t seed)
{
    size_t n = kiln_model_input_count(m);
    kiln_value **v = calloc(n + 1, sizeof *v);
    rng_seed(seed);
    for (size_t i = 0; i < n; i++) {
        int rank = kiln_model_input_rank(m, i);
        kiln_dtype dt = kiln_model_input_dtype(m, i);
        int64_t dims[KILN_MAX_RANK];
        for (int d = 0; d < rank; d++) dims[d] = kiln_model_input_dim(m, i, d, NULL);
        kiln_err err;
        if (kiln_value_create_tensor(dt, rank, dims, &v[i], &err) != KILN_OK) continue;
        size_t numel = kiln_value_numel(v[i]);
        void *data = kiln_value_data(v[i]);
        for (size_t k = 0; k < numel; k++) {
            if (dt == KILN_DTYPE_F32)
                ((float *)data)[k] = (float)rng_range(-2, 2);
            else if (dt == KILN_DTYPE_I64)
                ((int64_t *)data)[k] = rng_int(4);
            else if (dt == KILN_DTYPE_BOOL)
                ((uint8_t *)data)[k] = (uint8_t)rng_int(2);
        }
    }
    return v;
}

static bool run_model(const kiln_model *m, kiln_value **in, kiln_value **out, size_t n_out)
{
    kiln_session *s = NULL;
    kiln_err err = {0};
    if (kiln_session_create(m, NULL, &s, &err) != KILN_OK) {
        test_fail(__FILE__, __LINE__, NULL, "session: %s", err.msg);
        return false;
    }
    kiln_status st =
        kiln_session_run(s, kiln_model_input_count(m), NULL, (const kiln_value *const *)in, n_out, out, &err);
    kiln_session_free(s);
    if (st != KILN_OK) test_fail(__FILE__, __LINE__, NULL, "run: %s", err.msg);
    return st == KILN_OK;
}

static bool same_values(const kiln_value *a, const kiln_value *b)
{
    if (kiln_value_kind_of(a) != kiln_value_kind_of(b)) return false;
    if (kiln_value_kind_of(a) != KILN_VALUE_TENSOR) return true;
    if (kiln_value_dtype(a) != kiln_value_dtype(b) || kiln_value_rank(a) != kiln_value_rank(b)) return false;
    for (int d = 0; d < kiln_value_rank(a); d++)
        if (kiln_value_dims(a)[d] != kiln_value_dims(b)[d]) return false;
    size_t n = kiln_value_numel(a);
    if (kiln_value_dtype(a) == KILN_DTYPE_F32) {
        const float *x = kiln_value_data((kiln_value *)a), *y = kiln_value_data((kiln_value *)b);
        for (size_t i = 0; i < n; i++)
            if (!(fabsf(x[i] - y[i]) <= 1e-5f * (1 + fabsf(y[i]))) && !(isnan(x[i]) && isnan(y[i])))
                return false;
        return true;
    }
    size_t es = kiln_value_dtype(a) == KILN_DTYPE_I64 ? 8 : kiln_value_dtype(a) == KILN_DTYPE_BOOL ? 1 : 4;
    return n == 0 || memcmp(kiln_value_data((kiln_value *)a), kiln_value_data((kiln_value *)b), n * es) == 0;
}

static void collect_line(void *user, const char *msg)
{
    struct pb *lines = user;
    pb_put(lines, msg, strlen(msg));
    pb_put(lines, "\n", 1);
}

/* Loads bytes twice, optimizes one copy with `opt` (NULL: basic, keep_fused), checks it, runs
 * both on the same inputs and compares. Returns the optimized model (caller frees). */
static kiln_model *opt_equiv(const struct pb *bytes, const kiln_optimize_options *opt, int line)
{
    kiln_optimize_options basic = {.level = KILN_OPT_BASIC, .keep_fused = 1};
    kiln_model *a = load(bytes), *b = load(bytes);
    kiln_err err = {0};
    if (!a || !b) goto fail;
    CHECK(kiln_model_check(a, NULL, NULL) == 0, "line %d: the test model itself is invalid", line);
    kiln_status st = kiln_model_optimize(b, opt ? opt : &basic, &err);
    CHECK(st == KILN_OK, "line %d: optimize: %s", line, err.msg);
    if (st) goto fail;
    struct pb problems = {0};
    size_t np = kiln_model_check(b, collect_line, &problems);
    CHECK(np == 0, "line %d: optimized model has %zu problems: %.*s", line, np, (int)problems.len,
          problems.len ? (const char *)problems.data : "");
    pb_free(&problems);
    /* A second run finds nothing left to do. */
    size_t before = b->graph->n_nodes, inits = b->graph->n_inits;
    CHECK(kiln_model_optimize(b, opt ? opt : &basic, &err) == KILN_OK, "line %d: %s", line, err.msg);
    CHECK(b->graph->n_nodes == before && b->graph->n_inits == inits,
          "line %d: not a fixed point: %zu -> %zu nodes", line, before, b->graph->n_nodes);
    size_t n_out = kiln_model_output_count(a);
    CHECK(kiln_model_output_count(b) == n_out, "line %d: output count", line);
    for (size_t i = 0; i < n_out; i++)
        CHECK(!strcmp(kiln_model_output_name(a, i), kiln_model_output_name(b, i)),
              "line %d: output %zu renamed to '%s'", line, i, kiln_model_output_name(b, i));
    for (uint64_t seed = 1; seed <= 2; seed++) {
        kiln_value **in = make_inputs(a, seed);
        kiln_value *oa[8] = {0}, *ob[8] = {0};
        if (n_out <= 8 && run_model(a, in, oa, n_out) && run_model(b, in, ob, n_out))
            for (size_t i = 0; i < n_out; i++)
                CHECK(same_values(oa[i], ob[i]), "line %d: output %zu differs", line, i);
        for (size_t i = 0; i < n_out && i < 8; i++) {
            kiln_value_free(oa[i]);
            kiln_value_free(ob[i]);
        }
        for (size_t i = 0; i < kiln_model_input_count(a); i++) kiln_value_free(in[i]);
        free(in);
    }
    kiln_model_free(a);
    return b;
fail:
    kiln_model_free(a);
    kiln_model_free(b);
    return NULL;
}

#define OPT_EQUIV(bytes, opt) opt_equiv(bytes, opt, __LINE__)
#define F32                   KILN_DTYPE_F32
#define I64                   KILN_DTYPE_I64

/* ------------------------------------------------------------------ passes */

static void test_fold_constants(void)
{
    /* y = x * (c1 + Constant c2): Add folds, the Constant becomes an initializer. */
    struct pb g = {0}, a = {0};
    float c1[3] = {1, 2, 3}, c2[3] = {10, 20, 30};
    input(&g, "x", F32, "2x3");
    init_f32(&g, "c1", "3", c1, 3);
    pb_attr_tensor(&a, "value", F32, "3", c2, sizeof c2);
    node(&g, "Constant", "", "c2", &a);
    node(&g, "Add", "c1,c2", "s", NULL);
    node(&g, "Mul", "x,s", "y", NULL);
    output(&g, "y", F32, "2x3");
    struct pb m = model_of(&g, 17, 8);
    kiln_model *o = OPT_EQUIV(&m, NULL);
    if (o) {
        const struct kiln_graph *gr = o->graph;
        CHECK(gr->n_nodes == 1 && count_op(gr, "Mul") == 1, "%zu nodes left", gr->n_nodes);
        CHECK(gr->n_inits == 1, "%zu initializers (c1 and c2 unused, s folded)", gr->n_inits);
        const struct kiln_node *mul = find_op(gr, "Mul");
        const struct kiln_tensor *t = gr->n_inits ? &gr->inits[0].t : NULL;
        CHECK(mul && gr->n_inits && !strcmp(mul->inputs[1], gr->inits[0].name), "Mul reads the fold");
        CHECK(t && t->dtype == F32 && kiln_tensor_numel(t) == 3 && ((float *)t->data)[2] == 33,
              "folded value");
    }
    kiln_model_free(o);
    pb_free(&m);

    /* A folded value that is a graph output keeps the output's name. */
    g = (struct pb){0};
    input(&g, "x", F32, "3");
    init_f32(&g, "c1", "3", c1, 3);
    node(&g, "Neg", "c1", "y", NULL);
    node(&g, "Relu", "x", "z", NULL);
    output(&g, "y", F32, "3");
    output(&g, "z", F32, "3");
    m = model_of(&g, 17, 8);
    o = OPT_EQUIV(&m, NULL);
    if (o) {
        CHECK(o->graph->n_nodes == 1 && count_op(o->graph, "Neg") == 0, "Neg folded");
        CHECK(o->graph->n_inits == 1 && !strcmp(o->graph->inits[0].name, "y"),
              "initializer named after the output: '%s'", o->graph->n_inits ? o->graph->inits[0].name : "");
    }
    kiln_model_free(o);
    pb_free(&m);
}

static void test_fold_limit(void)
{
    /* ConstantOfShape [512, 1024] float = 2 MiB: beyond the default 1 MiB, kept; with a
     * 4 MiB limit it folds. */
    for (int big = 0; big < 2; big++) {
        struct pb g = {0};
        int64_t shape[2] = {512, 1024};
        input(&g, "x", F32, "512x1024");
        init_i64(&g, "shape", "2", shape, 2);
        node(&g, "ConstantOfShape", "shape", "c", NULL);
        node(&g, "Add", "x,c", "y", NULL);
        output(&g, "y", F32, "512x1024");
        struct pb m = model_of(&g, 17, 8);
        kiln_optimize_options opt = {.level = KILN_OPT_BASIC, .fold_limit_bytes = big ? 4u << 20 : 0};
        kiln_model *o = OPT_EQUIV(&m, &opt);
        if (o)
            CHECK(count_op(o->graph, "ConstantOfShape") == (big ? 0u : 1u),
                  "limit %d MiB: ConstantOfShape %s", big ? 4 : 1, big ? "kept" : "folded");
        kiln_model_free(o);
        pb_free(&m);
    }
}

static void test_dce(void)
{
    struct pb g = {0};
    float w[2] = {1, 2}, unused[2] = {3, 4};
    input(&g, "x", F32, "2");
    init_f32(&g, "w", "2", w, 2);
    init_f32(&g, "unused", "2", unused, 2);
    node(&g, "Add", "x,w", "a", NULL);
    node(&g, "Relu", "a", "dead1", NULL); /* dead chain */
    node(&g, "Neg", "dead1", "dead2", NULL);
    node(&g, "Sigmoid", "a", "y", NULL);
    output(&g, "y", F32, "2");
    struct pb m = model_of(&g, 17, 8);
    kiln_model *o = OPT_EQUIV(&m, NULL);
    if (o) {
        CHECK(o->graph->n_nodes == 2 && !count_op(o->graph, "Relu") && !count_op(o->graph, "Neg"),
              "dead chain removed (%zu nodes)", o->graph->n_nodes);
        CHECK(o->graph->n_inits == 1 && !strcmp(o->graph->inits[0].name, "w"), "unused init removed");
    }
    kiln_model_free(o);
    pb_free(&m);

    /* An unused initializer that is also a graph input stays (it is the model's interface). */
    g = (struct pb){0};
    input(&g, "x", F32, "2");
    input(&g, "opt_in", F32, "2");
    init_f32(&g, "opt_in", "2", unused, 2);
    node(&g, "Relu", "x", "y", NULL);
    output(&g, "y", F32, "2");
    m = model_of(&g, 17, 8);
    kiln_model *b = load(&m);
    kiln_err err;
    kiln_optimize_options opt = {.level = KILN_OPT_BASIC};
    if (b) {
        CHECK(kiln_model_optimize(b, &opt, &err) == KILN_OK, "%s", err.msg);
        CHECK(b->graph->n_inits == 1 && b->graph->n_inputs == 2, "input default kept");
    }
    kiln_model_free(b);
    pb_free(&m);
}

static void test_cse(void)
{
    struct pb g = {0}, a1 = {0}, a2 = {0}, a3 = {0};
    input(&g, "x", F32, "2x3");
    node(&g, "Relu", "x", "r1", NULL);
    node(&g, "Relu", "x", "r2", NULL);
    node(&g, "Exp", "r1", "e1", NULL);
    node(&g, "Exp", "r2", "e2", NULL); /* duplicate once r2 is r1 */
    pb_attr_i(&a1, "axis", 1);
    node(&g, "Softmax", "e1", "s1", &a1);
    pb_attr_i(&a2, "axis", 0);
    node(&g, "Softmax", "e2", "s2", &a2); /* other attribute: not merged */
    node(&g, "Add", "s1,s2", "t", NULL);
    node(&g, "Add", "e1,e2", "y2", NULL);
    pb_attr_ints(&a3, "shape", (const int64_t[]){2, 3}, 2);
    node(&g, "RandomNormalLike", "x", "n1", NULL);
    node(&g, "RandomNormalLike", "x", "n2", NULL); /* random: never merged */
    node(&g, "Sub", "n1,n2", "d", NULL);
    node(&g, "Mul", "d,t", "y", NULL);
    pb_free(&a3);
    output(&g, "y", F32, "2x3");
    output(&g, "y2", F32, "2x3");
    struct pb m = model_of(&g, 17, 8);
    kiln_model *b = load(&m);
    kiln_err err;
    kiln_optimize_options opt = {.level = KILN_OPT_BASIC};
    if (b) {
        CHECK(kiln_model_optimize(b, &opt, &err) == KILN_OK, "%s", err.msg);
        const struct kiln_graph *gr = b->graph;
        CHECK(count_op(gr, "Relu") == 1 && count_op(gr, "Exp") == 1, "duplicates merged");
        CHECK(count_op(gr, "Softmax") == 2, "different attributes kept apart");
        CHECK(count_op(gr, "RandomNormalLike") == 2, "random ops kept apart");
        const struct kiln_node *add = NULL;
        for (size_t i = 0; i < gr->n_nodes; i++)
            if (!strcmp(gr->nodes[i].op_type, "Add") && !strcmp(gr->nodes[i].outputs[0], "y2"))
                add = &gr->nodes[i];
        CHECK(add && !strcmp(add->inputs[0], add->inputs[1]), "Add reads one value twice");
    }
    kiln_model_free(b);
    pb_free(&m);

    /* Deterministic version for the output comparison; the duplicate feeds a graph output,
     * which keeps its name. */
    g = (struct pb){0};
    input(&g, "x", F32, "2x3");
    node(&g, "Tanh", "x", "t1", NULL);
    node(&g, "Tanh", "x", "t2", NULL);
    node(&g, "Add", "t1,t2", "y", NULL);
    output(&g, "y", F32, "2x3");
    output(&g, "t2", F32, "2x3");
    m = model_of(&g, 17, 8);
    kiln_model *o = OPT_EQUIV(&m, NULL);
    if (o) CHECK(count_op(o->graph, "Tanh") == 1, "merged into the graph output");
    kiln_model_free(o);
    pb_free(&m);
}

static void test_identity_dropout(void)
{
    struct pb g = {0}, a = {0};
    input(&g, "x", F32, "2x3");
    node(&g, "Identity", "x", "i1", NULL);
    node(&g, "Identity", "i1", "i2", NULL);
    node(&g, "Relu", "i2", "r", NULL);
    node(&g, "Identity", "r", "y", NULL);  /* graph output: Relu takes the name */
    node(&g, "Identity", "x", "y2", NULL); /* graph input to graph output: stays */
    node(&g, "Dropout", "r", "d1", NULL);  /* inference mode: goes */
    float ratio = 0.5f;
    uint8_t yes = 1;
    init_f32(&g, "ratio", "", &ratio, 1);
    init(&g, "train", KILN_DTYPE_BOOL, "", &yes, 1);
    node(&g, "Dropout", "d1,ratio,train", "d2", NULL); /* training: stays */
    node(&g, "Dropout", "r,ratio", "d3,mask", NULL);   /* mask read: stays */
    node(&g, "Cast", "mask", "maskf", (pb_attr_i(&a, "to", F32), &a));
    node(&g, "Add", "d1,maskf", "y3", NULL);
    output(&g, "y", F32, "2x3");
    output(&g, "y2", F32, "2x3");
    output(&g, "y3", F32, "2x3");
    output(&g, "d2", F32, "2x3");
    struct pb m = model_of(&g, 13, 8);
    kiln_model *b = load(&m);
    kiln_err err;
    kiln_optimize_options opt = {.level = KILN_OPT_BASIC};
    if (b) {
        CHECK(kiln_model_optimize(b, &opt, &err) == KILN_OK, "%s", err.msg);
        const struct kiln_graph *gr = b->graph;
        CHECK(count_op(gr, "Identity") == 1, "%zu Identity left", count_op(gr, "Identity"));
        const struct kiln_node *relu = find_op(gr, "Relu");
        CHECK(relu && !strcmp(relu->inputs[0], "x") && !strcmp(relu->outputs[0], "y"),
              "Relu reads x and writes the graph output y");
        CHECK(count_op(gr, "Dropout") == 2, "%zu Dropout left", count_op(gr, "Dropout"));
        CHECK(kiln_model_check(b, NULL, NULL) == 0, "valid");
    }
    kiln_model_free(b);
    pb_free(&m);

    /* Outputs (no random Dropout this time). */
    g = (struct pb){0};
    input(&g, "x", F32, "2x3");
    node(&g, "Identity", "x", "i1", NULL);
    node(&g, "Dropout", "i1", "d", NULL);
    node(&g, "Sigmoid", "d", "s", NULL);
    node(&g, "Identity", "s", "y", NULL);
    node(&g, "Identity", "x", "y2", NULL);
    output(&g, "y", F32, "2x3");
    output(&g, "y2", F32, "2x3");
    m = model_of(&g, 13, 8);
    kiln_model *o = OPT_EQUIV(&m, NULL);
    if (o) CHECK(o->graph->n_nodes == 2, "%zu nodes left (Sigmoid, Identity to y2)", o->graph->n_nodes);
    kiln_model_free(o);
    pb_free(&m);
}

static void test_noops(void)
{
    struct pb g = {0}, a[8] = {{0}};
    int64_t shape[2] = {2, 3}, zeros[4] = {0, 0, 0, 0}, st[2] = {0, 0}, en[2] = {2, 3}, ax[2] = {0, 1},
            one[2] = {1, 1}, neg[2] = {1, -1}, en2[2] = {2, INT64_MIN}, st2[2] = {0, INT64_MAX};
    input(&g, "x", F32, "2x3");
    init_i64(&g, "shape", "2", shape, 2);
    init_i64(&g, "pads", "4", zeros, 4);
    init_i64(&g, "st", "2", st, 2);
    init_i64(&g, "en", "2", en, 2);
    init_i64(&g, "ax", "2", ax, 2);
    init_i64(&g, "one", "2", one, 2);
    init_i64(&g, "neg", "2", neg, 2);
    init_i64(&g, "en2", "2", en2, 2);
    init_i64(&g, "st2", "2", st2, 2);
    pb_attr_i(&a[0], "to", F32);
    node(&g, "Cast", "x", "c", &a[0]);
    node(&g, "Reshape", "c,shape", "r", NULL);
    pb_attr_ints(&a[1], "perm", (const int64_t[]){0, 1}, 2);
    node(&g, "Transpose", "r", "t", &a[1]);
    node(&g, "Pad", "t,pads", "p", NULL);
    node(&g, "Slice", "p,st,en,ax,one", "s", NULL);
    node(&g, "Expand", "s,shape", "e", NULL);
    pb_attr_i(&a[2], "axis", 0);
    node(&g, "Concat", "e", "k", &a[2]);
    node(&g, "Relu", "k", "y", NULL);
    /* Not no-ops: a reversing Slice and a real Cast. */
    node(&g, "Slice", "x,st2,en2,ax,neg", "rev", NULL);
    pb_attr_i(&a[3], "to", KILN_DTYPE_I64);
    node(&g, "Cast", "rev", "ci", &a[3]);
    output(&g, "y", F32, "2x3");
    output(&g, "ci", I64, "2x3");
    struct pb m = model_of(&g, 17, 8);
    kiln_model *o = OPT_EQUIV(&m, NULL);
    if (o) {
        const struct kiln_graph *gr = o->graph;
        CHECK(count_op(gr, "Reshape") == 0 && count_op(gr, "Transpose") == 0 && count_op(gr, "Pad") == 0 &&
                  count_op(gr, "Expand") == 0 && count_op(gr, "Concat") == 0,
              "no-ops removed");
        CHECK(count_op(gr, "Slice") == 1 && count_op(gr, "Cast") == 1, "real Slice and Cast kept");
        const struct kiln_node *relu = find_op(gr, "Relu");
        CHECK(relu && !strcmp(relu->inputs[0], "x"), "Relu reads x");
    }
    kiln_model_free(o);
    pb_free(&m);
}

static void test_unsqueeze_squeeze_transpose(void)
{
    struct pb g = {0}, a[4] = {{0}};
    int64_t axes[2] = {0, -1};
    input(&g, "x", F32, "2x3x4");
    init_i64(&g, "axes", "2", axes, 2);
    node(&g, "Unsqueeze", "x,axes", "u", NULL);
    node(&g, "Squeeze", "u,axes", "s", NULL);
    pb_attr_ints(&a[0], "perm", (const int64_t[]){0, 2, 1}, 3);
    node(&g, "Transpose", "s", "t1", &a[0]);
    pb_attr_ints(&a[1], "perm", (const int64_t[]){1, 0, 2}, 3);
    node(&g, "Transpose", "t1", "t2", &a[1]); /* merged: perm {2, 0, 1} */
    pb_attr_ints(&a[2], "perm", (const int64_t[]){1, 2, 0}, 3);
    node(&g, "Transpose", "t2", "t3", &a[2]); /* cancels the merged one */
    node(&g, "Relu", "t3", "y", NULL);
    output(&g, "y", F32, "2x3x4");
    struct pb m = model_of(&g, 17, 8);
    kiln_model *o = OPT_EQUIV(&m, NULL);
    if (o) {
        const struct kiln_graph *gr = o->graph;
        CHECK(gr->n_nodes == 1 && count_op(gr, "Relu") == 1, "%zu nodes left", gr->n_nodes);
        CHECK(gr->n_nodes && !strcmp(gr->nodes[0].inputs[0], "x"), "Relu reads x");
    }
    kiln_model_free(o);
    pb_free(&m);

    /* Two Transposes that do not cancel become one. */
    g = (struct pb){0};
    input(&g, "x", F32, "2x3x4");
    pb_attr_ints(&a[0], "perm", (const int64_t[]){0, 2, 1}, 3);
    node(&g, "Transpose", "x", "t1", &a[0]);
    pb_attr_ints(&a[1], "perm", (const int64_t[]){1, 0, 2}, 3);
    node(&g, "Transpose", "t1", "y", &a[1]);
    output(&g, "y", F32, "4x2x3");
    m = model_of(&g, 17, 8);
    o = OPT_EQUIV(&m, NULL);
    if (o) {
        const struct kiln_node *t = find_op(o->graph, "Transpose");
        const int64_t *p = NULL;
        size_t n = 0;
        CHECK(o->graph->n_nodes == 1 && t && kiln_opt_attr_ints(t, "perm", &p, &n) && n == 3 && p[0] == 2 &&
                  p[1] == 0 && p[2] == 1,
              "one Transpose with perm {2, 0, 1}");
    }
    kiln_model_free(o);
    pb_free(&m);
    pb_free(&a[3]);
}

/* A Transpose that moves only dims of size 1 becomes a Reshape (opset 5 on); one that swaps
 * two dims of size > 1 stays, as does any Transpose at opset 4 (no Reshape with a shape input). */
static void test_transpose_unit_dims(void)
{
    const struct {
        const char *in, *out;
        int64_t perm[4];
        int opset;
        bool reshape;
    } cases[] = {
        {"1x5x3", "5x1x3", {1, 0, 2}, 17, true},       /* sequence-first attention */
        {"2x1x3x1", "2x1x1x3", {0, 3, 1, 2}, 13, true}, /* size-1 dims anywhere */
        {"3x1x2", "2x1x3", {2, 1, 0}, 17, false},       /* 3 and 2 swap */
        {"1x5x3", "5x1x3", {1, 0, 2}, 4, false},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        struct pb g = {0}, a = {0};
        int rank = (int)(strlen(cases[c].in) + 1) / 2;
        input(&g, "x", F32, cases[c].in);
        pb_attr_ints(&a, "perm", cases[c].perm, (size_t)rank);
        node(&g, "Transpose", "x", "t", &a);
        node(&g, "Relu", "t", "y", NULL);
        output(&g, "y", F32, cases[c].out);
        struct pb m = model_of(&g, cases[c].opset, 8);
        kiln_model *o = OPT_EQUIV(&m, NULL);
        if (o) {
            const struct kiln_graph *gr = o->graph;
            CHECK(count_op(gr, "Transpose") == !cases[c].reshape && count_op(gr, "Reshape") == cases[c].reshape,
                  "case %zu: %zu Transpose, %zu Reshape", c, count_op(gr, "Transpose"), count_op(gr, "Reshape"));
        }
        kiln_model_free(o);
        pb_free(&m);
        pb_free(&a);
    }
}

static void test_subgraphs(void)
{
    /* Main: i = Identity(x); c = Constant(true); If(c) then: Relu(i) + folded const, else:
     * Neg(i). The rename of i reaches into both branches; the branches are optimized too. */
    struct pb then_g = {0}, else_g = {0}, g = {0}, at = {0}, ac = {0};
    float two[1] = {2};
    init_f32(&then_g, "two", "1", two, 1);
    node(&then_g, "Neg", "two", "mtwo", NULL);
    node(&then_g, "Relu", "i", "tr", NULL);
    node(&then_g, "Mul", "tr,mtwo", "to", NULL);
    node(&then_g, "Identity", "to", "then_out", NULL);
    output(&then_g, "then_out", F32, "2x3");
    pb_str(&then_g, 2, "then");
    node(&else_g, "Neg", "i", "else_out", NULL);
    output(&else_g, "else_out", F32, "2x3");
    pb_str(&else_g, 2, "else");

    uint8_t yes = 1;
    input(&g, "x", F32, "2x3");
    node(&g, "Identity", "x", "i", NULL);
    pb_attr_tensor(&ac, "value", KILN_DTYPE_BOOL, "", &yes, 1);
    node(&g, "Constant", "", "c", &ac);
    pb_attr_graph(&at, "then_branch", &then_g);
    pb_attr_graph(&at, "else_branch", &else_g);
    node(&g, "If", "c", "y", &at);
    output(&g, "y", F32, "2x3");
    struct pb m = model_of(&g, 17, 8);
    kiln_model *o = OPT_EQUIV(&m, NULL);
    if (o) {
        const struct kiln_graph *gr = o->graph;
        CHECK(count_op(gr, "Identity") == 0 && count_op(gr, "Constant") == 0, "main graph cleaned");
        const struct kiln_node *ifn = find_op(gr, "If");
        const struct kiln_graph *tg = ifn ? kiln_node_attr(ifn, "then_branch")->g : NULL;
        CHECK(tg && count_op(tg, "Neg") == 0 && tg->n_nodes == 2, "then branch folded (%zu nodes)",
              tg ? tg->n_nodes : 0);
        const struct kiln_node *relu = tg ? find_op(tg, "Relu") : NULL;
        CHECK(relu && !strcmp(relu->inputs[0], "x"), "subgraph reads x after the rename");
    }
    kiln_model_free(o);
    pb_free(&m);
}

/* A subgraph that defines a name of its enclosing graph again (ONNX forbids it; kiln's
 * linker lets it through): merging b into a would make the branch read its own 'a'. */
static void test_shadowing(void)
{
    struct pb then_g = {0}, else_g = {0}, g = {0}, at = {0};
    node(&then_g, "Neg", "x", "a", NULL); /* shadows the outer 'a' */
    node(&then_g, "Add", "a,b", "then_out", NULL);
    output(&then_g, "then_out", F32, "3");
    pb_str(&then_g, 2, "then");
    node(&else_g, "Sub", "a,b", "else_out", NULL);
    output(&else_g, "else_out", F32, "3");
    pb_str(&else_g, 2, "else");
    input(&g, "x", F32, "3");
    input(&g, "c", KILN_DTYPE_BOOL, "");
    node(&g, "Relu", "x", "a", NULL);
    node(&g, "Relu", "x", "b", NULL);
    pb_attr_graph(&at, "then_branch", &then_g);
    pb_attr_graph(&at, "else_branch", &else_g);
    node(&g, "If", "c", "y", &at);
    output(&g, "y", F32, "3");
    struct pb m = model_of(&g, 17, 8);
    kiln_model *a = load(&m), *b = load(&m);
    kiln_err err = {0};
    kiln_optimize_options opt = {.level = KILN_OPT_EXTENDED, .keep_fused = 1};
    if (a && b) {
        CHECK(kiln_model_optimize(b, &opt, &err) == KILN_OK, "%s", err.msg);
        CHECK(count_op(b->graph, "Relu") == 2, "shadowed value: no merge");
        for (int cond = 0; cond < 2; cond++) {
            kiln_value **in = make_inputs(a, 5);
            *(uint8_t *)kiln_value_data(in[1]) = (uint8_t)cond;
            kiln_value *oa[1] = {0}, *ob[1] = {0};
            if (run_model(a, in, oa, 1) && run_model(b, in, ob, 1))
                CHECK(same_values(oa[0], ob[0]), "cond %d: outputs differ", cond);
            kiln_value_free(oa[0]);
            kiln_value_free(ob[0]);
            kiln_value_free(in[0]);
            kiln_value_free(in[1]);
            free(in);
        }
    }
    kiln_model_free(a);
    kiln_model_free(b);
    pb_free(&m);
}

/* The editing API directly (as a pass sees it): queries, chains, a node added and wired in,
 * a commit. */
static void test_edit_api(void)
{
    struct pb g = {0};
    float w[4] = {1, 2, 3, 4}, bias[2] = {1, -1};
    input(&g, "x", F32, "1x2");
    init_f32(&g, "w", "2x2", w, 4);
    init_f32(&g, "bias", "2", bias, 2);
    node(&g, "MatMul", "x,w", "mm", NULL);
    node(&g, "Add", "mm,bias", "a", NULL);
    node(&g, "Relu", "a", "r", NULL);
    node(&g, "Sigmoid", "a", "s", NULL); /* a has two consumers */
    node(&g, "Mul", "r,s", "y", NULL);
    output(&g, "y", F32, "1x2");
    struct pb m = model_of(&g, 17, 8);
    kiln_model *km = load(&m);
    if (!km) return;
    kiln_err err = {0};
    struct kiln_opt o = {.m = km, .err = &err, .fold_limit = KILN_OPT_FOLD_LIMIT_DEFAULT};
    o.opt.keep_fused = 1;
    struct kiln_graph *gr = km->graph;
    CHECK(opt_collect_names(&o) == KILN_OK && opt_relink(&o) == KILN_OK && opt_begin(&o, gr) == KILN_OK,
          "setup: %s", err.msg);
    size_t idx[3];
    CHECK(kiln_opt_match_chain(&o, gr, 0, (const char *const[]){"MatMul", "Add", NULL}, idx) && idx[0] == 0 &&
              idx[1] == 1,
          "MatMul -> Add");
    CHECK(!kiln_opt_match_chain(&o, gr, 0, (const char *const[]){"MatMul", "Add", "Relu", NULL}, idx),
          "a has two consumers: no chain through it");
    CHECK(kiln_opt_input_from(&o, gr, 1, 0, "MatMul") == 0 && kiln_opt_input_from(&o, gr, 1, 0, "Conv") < 0,
          "input_from");
    CHECK(kiln_opt_input_from(&o, gr, 2, 0, NULL) < 0, "Add's output feeds two nodes");
    CHECK(kiln_opt_single_consumer(gr, "mm") == 1 && kiln_opt_single_consumer(gr, "a") < 0 &&
              kiln_opt_single_consumer(gr, "y") < 0,
          "single_consumer");
    CHECK(kiln_opt_uses(gr, "a") == 2 && kiln_opt_uses(gr, "y") == 1 && kiln_opt_uses(gr, "nope") == 0,
          "uses");
    CHECK(kiln_opt_producer(gr, "a") == 1 && kiln_opt_producer(gr, "x") < 0 && kiln_opt_producer(gr, "w") < 0,
          "producer");
    const struct kiln_tensor *t = kiln_opt_const(gr, "w");
    double v;
    CHECK(t && kiln_tensor_numel(t) == 4 && !kiln_opt_const(gr, "x") && !kiln_opt_const(gr, "a"), "const");
    CHECK(!kiln_opt_const_scalar(gr, "w", &v), "w is not a scalar");
    int rank;
    int64_t dims[KILN_MAX_RANK];
    CHECK(kiln_opt_static_shape(gr, "a", &rank, dims) && rank == 2 && dims[0] == 1 && dims[1] == 2,
          "inferred shape of a");
    const char *n1 = NULL, *n2 = NULL;
    CHECK(kiln_opt_unique_name(&o, "a", &n1) == KILN_OK && kiln_opt_unique_name(&o, "a", &n2) == KILN_OK &&
              n1 && n2 && strcmp(n1, "a") && strcmp(n2, "a") && strcmp(n1, n2),
          "unique names: %s %s", n1 ? n1 : "", n2 ? n2 : "");
    const char *fresh = NULL;
    CHECK(kiln_opt_unique_name(&o, "brand_new", &fresh) == KILN_OK && fresh && !strcmp(fresh, "brand_new"),
          "a free name is kept");

    /* Replace Relu(a) by Clip(a, 0, inf-ish) through a new node and a new initializer. */
    struct kiln_tensor lo;
    CHECK(kiln_opt_new_tensor(&o, F32, 0, NULL, &lo) == KILN_OK, "new tensor");
    const char *lo_name = NULL;
    CHECK(kiln_opt_add_init(&o, gr, "lo", &lo, &lo_name) == KILN_OK && lo_name, "add init");
    CHECK(kiln_opt_const_pending(&o, gr, lo_name) != NULL && kiln_opt_const(gr, lo_name) == NULL,
          "queued initializer visible as pending only");
    struct kiln_node *clip = NULL;
    const char *ins[2] = {"a", lo_name}, *outs[1] = {"clipped"};
    CHECK(kiln_opt_add_node(&o, gr, "Clip", "", NULL, 2, ins, 1, outs, &clip) == KILN_OK && clip, "add node");
    CHECK(kiln_opt_set_attr_i(&o, clip, "unused_attr", 3) == KILN_OK &&
              kiln_opt_attr_i(clip, "unused_attr", 0) == 3,
          "attribute on a new node");
    kiln_opt_remove_attr(clip, "unused_attr");
    CHECK(clip->n_attr == 0, "attribute removed");
    CHECK(kiln_opt_can_replace(&o, gr, "r", "clipped"), "can replace");
    CHECK(kiln_opt_replace_uses(&o, gr, "r", "clipped") == KILN_OK, "replace: %s", err.msg);
    kiln_opt_remove_node(&o, gr, 2);
    CHECK(!kiln_opt_live(&o, gr, 2) && kiln_opt_pending(&o, gr), "pending removal");
    CHECK(kiln_opt_commit(&o, gr) == KILN_OK, "commit: %s", err.msg);
    CHECK(count_op(gr, "Relu") == 0 && count_op(gr, "Clip") == 1 && gr->n_nodes == 5, "committed");
    const struct kiln_node *mul = find_op(gr, "Mul");
    CHECK(mul && !strcmp(mul->inputs[0], "clipped"), "Mul reads the Clip");
    /* Topological order after the commit: Clip before Mul. */
    int ci = -1, mi = -1;
    for (size_t i = 0; i < gr->n_nodes; i++) {
        if (!strcmp(gr->nodes[i].op_type, "Clip")) ci = (int)i;
        if (!strcmp(gr->nodes[i].op_type, "Mul")) mi = (int)i;
    }
    CHECK(ci >= 0 && ci < mi && gr->sorted, "sorted after the commit");
    CHECK(kiln_model_check(km, NULL, NULL) == 0, "valid after the commit");
    CHECK(kiln_opt_require_opset(&o, "kiln", 1) == KILN_OK && kiln_model_opset_for(km, "kiln") == 1 &&
              kiln_model_opset_for(km, "") == 17,
          "opset import added");
    /* Editing a graph the pass was not given is a misuse the commit reports. */
    struct kiln_graph other = {0};
    kiln_opt_remove_node(&o, &other, 0);
    CHECK(kiln_opt_commit(&o, gr) == KILN_E_INTERNAL, "misuse reported");
    opt_pending_free(&o.pend);
    opt_nameset_free(&o.names);
    kiln_model_free(km);
    pb_free(&m);
}

/* ------------------------------------------------------------------ framework */

static struct pb sample_model(void)
{
    struct pb g = {0};
    float c[3] = {1, 2, 3};
    input(&g, "x", F32, "3");
    init_f32(&g, "c", "3", c, 3);
    node(&g, "Neg", "c", "nc", NULL);
    node(&g, "Identity", "x", "i", NULL);
    node(&g, "Add", "i,nc", "a", NULL);
    node(&g, "Add", "i,nc", "b", NULL);
    node(&g, "Mul", "a,b", "y", NULL);
    node(&g, "Relu", "a", "unused", NULL);
    output(&g, "y", F32, "3");
    return model_of(&g, 17, 8);
}

static void test_pass_list_and_report(void)
{
    struct pb m = sample_model();
    kiln_model *b = load(&m);
    kiln_err err = {0};
    if (!b) return;
    kiln_optimize_options opt = {.level = KILN_OPT_BASIC, .passes = "dce, nonexistent"};
    CHECK(kiln_model_optimize(b, &opt, &err) == KILN_E_INVALID_ARG && strstr(err.msg, "'nonexistent'") &&
              strstr(err.msg, "fold_constants"),
          "unknown pass named: %s", err.msg);
    CHECK(b->graph->n_nodes == 6, "nothing changed");

    struct pb lines = {0};
    opt = (kiln_optimize_options){.passes = "dce", .report = collect_line, .report_user = &lines};
    CHECK(kiln_model_optimize(b, &opt, &err) == KILN_OK, "%s", err.msg);
    CHECK(b->graph->n_nodes == 5 && count_op(b->graph, "Relu") == 0, "only dce ran");
    pb_put(&lines, "", 1);
    const char *text = (const char *)lines.data;
    CHECK(strstr(text, "pass dce (round 1): 6 -> 5 nodes; Relu 1 -> 0"), "report: %s", text);
    CHECK(strstr(text, "optimized: 6 -> 5 nodes, 1 -> 1 initializers in 2 rounds") &&
              strstr(text, "ops after: Add 2, Identity 1"),
          "summary: %s", text);
    pb_free(&lines);

    opt = (kiln_optimize_options){.level = KILN_OPT_BASIC, .report = collect_line, .report_user = &lines};
    CHECK(kiln_model_optimize(b, &opt, &err) == KILN_OK, "%s", err.msg);
    pb_put(&lines, "", 1);
    text = (const char *)lines.data;
    CHECK(strstr(text, "cse: fused Add") != NULL, "cse note: %s", text);
    CHECK(b->graph->n_nodes == 2, "%zu nodes: Add, Mul", b->graph->n_nodes);
    pb_free(&lines);

    /* Level none: nothing. */
    kiln_model *c = load(&m);
    opt = (kiln_optimize_options){.level = KILN_OPT_NONE};
    CHECK(c && kiln_model_optimize(c, &opt, &err) == KILN_OK && c->graph->n_nodes == 6, "level none");
    opt.level = (kiln_opt_level)7;
    CHECK(c && kiln_model_optimize(c, &opt, &err) == KILN_E_INVALID_ARG, "bad level");
    kiln_model_free(c);
    kiln_model_free(b);
    pb_free(&m);

    /* The table: unique names, a doc line each, findable. */
    size_t n;
    const struct kiln_pass *const *p = kiln_opt_passes(&n);
    for (size_t i = 0; i < n; i++) {
        CHECK(p[i]->name && p[i]->doc && p[i]->run && kiln_opt_find_pass(p[i]->name) == p[i], "pass %zu", i);
    }
}

/* Every allocation of an optimize run fails in turn: the run reports NOMEM and the model is
 * exactly as before (same nodes, same outputs), or it succeeds. */
static void test_nomem(void)
{
    struct pb m = sample_model();
    kiln_model *ref = load(&m);
    size_t failures = 0;
    for (long n = 1; n < 100000; n++) {
        kiln_model *b = load(&m);
        if (!b) break;
        kiln_err err = {0};
        kiln_optimize_options opt = {.level = KILN_OPT_EXTENDED, .keep_fused = 1};
        kiln_alloc_fail_after(n);
        kiln_status st = kiln_model_optimize(b, &opt, &err);
        kiln_alloc_fail_after(0);
        if (st == KILN_OK) {
            CHECK(b->graph->n_nodes == 2, "after %ld: %zu nodes", n, b->graph->n_nodes);
            kiln_model_free(b);
            break;
        }
        failures++;
        CHECK(st == KILN_E_NOMEM, "allocation %ld: status %d (%s)", n, st, err.msg);
        CHECK(b->graph->n_nodes == ref->graph->n_nodes && b->graph->n_inits == ref->graph->n_inits,
              "allocation %ld: model changed (%zu nodes)", n, b->graph->n_nodes);
        bool same = b->graph->n_nodes == ref->graph->n_nodes;
        for (size_t i = 0; same && i < b->graph->n_nodes; i++) {
            const struct kiln_node *x = &b->graph->nodes[i], *y = &ref->graph->nodes[i];
            same = !strcmp(x->op_type, y->op_type) && x->n_in == y->n_in &&
                   !strcmp(x->outputs[0], y->outputs[0]);
            for (size_t k = 0; same && k < x->n_in; k++) same = !strcmp(x->inputs[k], y->inputs[k]);
        }
        CHECK(same, "allocation %ld: nodes differ after the failed run", n);
        CHECK(kiln_model_check(b, NULL, NULL) == 0, "allocation %ld: restored model invalid", n);
        kiln_value **in = make_inputs(b, 3);
        kiln_value *out[1] = {0};
        if (run_model(b, in, out, 1)) {
            const float *y = kiln_value_data(out[0]), *x = kiln_value_data(in[0]);
            CHECK(fabsf(y[0] - (x[0] - 1) * (x[0] - 1)) < 1e-5f, "allocation %ld: output", n);
        }
        kiln_value_free(out[0]);
        kiln_value_free(in[0]);
        free(in);
        kiln_model_free(b);
    }
    CHECK(failures > 10, "only %zu allocations failed", failures);
    kiln_model_free(ref);
    pb_free(&m);
}

/* The fuzz corpus: whatever loads goes through check and optimize (both levels) without a
 * crash; a model that optimizes stays valid when it was. */
static void test_fuzz_corpus(void)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/tests/fuzz/corpus/load", KILN_SOURCE_DIR);
    DIR *d = opendir(dir);
    CHECK(d != NULL, "no corpus at %s", dir);
    if (!d) return;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[8192];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        for (int level = KILN_OPT_BASIC; level <= KILN_OPT_EXTENDED; level++) {
            kiln_model *m = NULL;
            kiln_err err = {0};
            if (kiln_model_load_file(path, &m, &err) != KILN_OK) break;
            size_t problems = kiln_model_check(m, NULL, NULL);
            kiln_optimize_options opt = {.level = (kiln_opt_level)level, .keep_fused = 1};
            kiln_status st = kiln_model_optimize(m, &opt, &err);
            CHECK(st == KILN_OK || err.msg[0], "%s: failure without a message", e->d_name);
            CHECK(st != KILN_E_INTERNAL, "%s: %s", e->d_name, err.msg);
            if (st == KILN_OK && problems == 0)
                CHECK(kiln_model_check(m, NULL, NULL) == 0, "%s: optimized model invalid", e->d_name);
            kiln_model_free(m);
            n++;
        }
    }
    closedir(d);
    CHECK(n > 0, "no corpus model loaded");
}

/* Each pass alone (every pass of the table, basic and extended) on ONNX test cases that
 * exercise it: the optimized model must still give the expected outputs (ONNX's backend
 * tolerance). Running them together, as the conformance tests do, could hide a pass whose
 * damage a later pass happens to undo. */
static const char *const PASS_CASES[] = {"test_affine_grid_2d_expanded",
                                         "test_layer_normalization_4d_axis0_expanded",
                                         "test_layer_normalization_2d_axis1_expanded_ver18",
                                         "test_gelu_tanh_2_expanded",
                                         "test_gelu_default_2_expanded",
                                         "test_softmax_axis_1_expanded",
                                         "test_range_float_type_positive_delta_expanded",
                                         "test_dropout_default_old",
                                         "test_dropout_default_mask",
                                         "test_identity",
                                         "test_identity_sequence",
                                         "test_if_seq",
                                         "test_group_normalization_example_expanded",
                                         "test_center_crop_pad_crop_and_pad_expanded",
                                         "test_linear_attention_delta_expanded",
                                         "test_attention_4d_expanded",
                                         "test_attention_3d_gqa_causal_expanded",
                                         "test_hardswish_expanded",
                                         "test_celu_expanded",
                                         "test_mvn_expanded",
                                         "test_shrink_soft_expanded",
                                         "test_expand_dim_unchanged",
                                         "test_transpose_default",
                                         "test_squeeze",
                                         "test_unsqueeze_axis_0",
                                         "test_reshape_reordered_all_dims",
                                         "test_slice_default_axes",
                                         "test_concat_1d_axis_0",
                                         "test_cast_FLOAT_to_DOUBLE",
                                         "test_batchnorm_example",
                                         "test_conv_with_strides_padding",
                                         "test_matmul_2d",
                                         "test_gemm_default_vector_bias",
                                         "test_convtranspose_pad",
                                         NULL};

static bool close_enough(const kiln_value *got, const kiln_value *exp)
{
    if (kiln_value_kind_of(got) != kiln_value_kind_of(exp)) return false;
    if (kiln_value_kind_of(got) != KILN_VALUE_TENSOR) {
        if (kiln_value_count(got) != kiln_value_count(exp)) return false;
        for (size_t i = 0; i < kiln_value_count(got); i++)
            if (!close_enough(kiln_value_item(got, i), kiln_value_item(exp, i))) return false;
        return true;
    }
    kiln_dtype dt = kiln_value_dtype(got);
    if (dt != kiln_value_dtype(exp) || kiln_value_rank(got) != kiln_value_rank(exp)) return false;
    for (int d = 0; d < kiln_value_rank(got); d++)
        if (kiln_value_dims(got)[d] != kiln_value_dims(exp)[d]) return false;
    size_t n = kiln_value_numel(got);
    const void *x = kiln_value_data((kiln_value *)got), *y = kiln_value_data((kiln_value *)exp);
    if (dt == KILN_DTYPE_F32 || dt == KILN_DTYPE_F64) {
        for (size_t i = 0; i < n; i++) {
            double a = dt == KILN_DTYPE_F32 ? ((const float *)x)[i] : ((const double *)x)[i];
            double b = dt == KILN_DTYPE_F32 ? ((const float *)y)[i] : ((const double *)y)[i];
            if (a == b || (isnan(a) && isnan(b))) continue;
            if (!(fabs(a - b) <= 1e-7 + 1e-3 * fabs(b))) return false;
        }
        return true;
    }
    if (dt == KILN_DTYPE_STRING) return true;
    size_t es = dt == KILN_DTYPE_I64 ? 8 : dt == KILN_DTYPE_I32 ? 4 : dt == KILN_DTYPE_F16 ? 2 : 1;
    return n == 0 || memcmp(x, y, n * es) == 0;
}

static void test_each_pass_on_cases(void)
{
    size_t n_pass;
    const struct kiln_pass *const *passes = kiln_opt_passes(&n_pass);
    size_t ran = 0;
    for (size_t c = 0; PASS_CASES[c]; c++) {
        char path[4096], data[4096];
        case_path(path, sizeof path, "node", PASS_CASES[c], "model.onnx");
        FILE *f = fopen(path, "rb");
        if (!f) continue; /* not in this copy of the test data */
        fclose(f);
        /* p == n_pass: the whole extended level without kiln's ops. */
        for (size_t p = 0; p <= n_pass; p++) {
            kiln_model *m = NULL;
            kiln_err err = {0};
            if (kiln_model_load_file(path, &m, &err) != KILN_OK) {
                test_fail(__FILE__, __LINE__, NULL, "%s: %s", PASS_CASES[c], err.msg);
                break;
            }
            kiln_optimize_options opt = {.passes = p < n_pass ? passes[p]->name : NULL,
                                         .level = KILN_OPT_EXTENDED,
                                         .keep_fused = p < n_pass};
            const char *what = p < n_pass ? passes[p]->name : "extended without kiln ops";
            kiln_status st = kiln_model_optimize(m, &opt, &err);
            CHECK(st == KILN_OK, "%s, pass %s: %s", PASS_CASES[c], what, err.msg);
            if (p == n_pass)
                for (size_t i = 0; i < m->graph->n_nodes; i++)
                    CHECK(strcmp(m->graph->nodes[i].domain, "kiln") != 0,
                          "%s: keep_fused 0 left a kiln op %s", PASS_CASES[c], m->graph->nodes[i].op_type);
            size_t n_in = kiln_model_input_count(m), n_out = kiln_model_output_count(m);
            kiln_value *in[16] = {0}, *out[16] = {0}, *exp[16] = {0};
            bool ok = st == KILN_OK && n_in <= 16 && n_out <= 16;
            for (size_t i = 0; ok && i < n_in; i++) {
                char file[64];
                snprintf(file, sizeof file, "test_data_set_0/input_%zu.pb", i);
                case_path(data, sizeof data, "node", PASS_CASES[c], file);
                kiln_value_kind k = kiln_model_input_kind(m, i);
                ok = kiln_value_read_file(data, k, &in[i], &err) == KILN_OK;
            }
            for (size_t i = 0; ok && i < n_out; i++) {
                char file[64];
                snprintf(file, sizeof file, "test_data_set_0/output_%zu.pb", i);
                case_path(data, sizeof data, "node", PASS_CASES[c], file);
                ok = kiln_value_read_file(data, kiln_model_output_kind(m, i), &exp[i], &err) == KILN_OK;
            }
            CHECK(ok || st != KILN_OK, "%s: test data: %s", PASS_CASES[c], err.msg);
            if (ok && run_model(m, in, out, n_out)) {
                for (size_t i = 0; i < n_out; i++)
                    CHECK(close_enough(out[i], exp[i]), "%s, pass %s: output %zu differs", PASS_CASES[c],
                          what, i);
                ran++;
            }
            for (size_t i = 0; i < 16; i++) {
                kiln_value_free(in[i]);
                kiln_value_free(out[i]);
                kiln_value_free(exp[i]);
            }
            kiln_model_free(m);
        }
    }
    CHECK(ran > 0, "no test case found under %s", onnx_tests_dir());
}

int main(void)
{
    test_fold_constants();
    test_fold_limit();
    test_dce();
    test_cse();
    test_identity_dropout();
    test_noops();
    test_unsqueeze_squeeze_transpose();
    test_transpose_unit_dims();
    test_subgraphs();
    test_shadowing();
    test_edit_api();
    test_pass_list_and_report();
    test_nomem();
    test_fuzz_corpus();
    test_each_pass_on_cases();
    return test_summary("test_opt_basic");
}
