/* test_convert.c: opset conversion (src/convert/convert.c, kiln_model_convert_opset).
 *
 * Each rewrite is checked by behaviour: a one-node model at an old opset runs on random (or
 * given) inputs, is converted, written and reloaded (so the result is valid ONNX bytes), runs
 * again, and the outputs must be equal; the converted node must have the new signature
 * (attributes moved to inputs, renamed op, ...) and the model the new opset_import.
 * Refusals name the node, the op and the reason, and leave the model byte-for-byte as it
 * was; so does an out-of-memory at any allocation.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onnx/onnx.h"
#include "test_support.h"

/* ------------------------------------------------------------------ model builder */

#define CAP 8

struct mb {
    struct kiln_model *m;
    struct kiln_graph *g;
};

static void *az(struct kiln_model *m, size_t n)
{
    void *p = kiln_arena_alloc(&m->arena, n);
    if (!p) abort();
    return p;
}

static struct mb mb_new(int64_t opset)
{
    struct mb b;
    b.m = kiln_calloc(1, sizeof *b.m);
    if (!b.m) abort();
    struct kiln_model *m = b.m;
    m->ir_version = 3;
    m->producer_name = m->producer_version = m->domain = m->doc = "";
    m->n_opsets = 1;
    m->opsets = az(m, sizeof *m->opsets);
    m->opsets[0] = (struct kiln_opset){"", opset};
    b.g = m->graph = az(m, sizeof *b.g);
    b.g->name = "t";
    b.g->doc = "";
    b.g->model = m;
    b.g->nodes = az(m, CAP * sizeof *b.g->nodes);
    b.g->inputs = az(m, CAP * sizeof *b.g->inputs);
    b.g->outputs = az(m, CAP * sizeof *b.g->outputs);
    b.g->inits = az(m, CAP * sizeof *b.g->inits);
    return b;
}

/* rank -1: no shape declared; dims NULL with rank >= 0: every dim unknown. */
static void mb_input(struct mb *b, const char *name, kiln_dtype dt, int rank, const int64_t *dims)
{
    struct kiln_value_info *vi = &b->g->inputs[b->g->n_inputs++];
    vi->name = name;
    vi->doc = "";
    vi->type = (struct kiln_type){.kind = KILN_TYPE_TENSOR, .elem = dt, .rank = rank};
    if (rank > 0) {
        vi->type.dims = az(b->m, (size_t)rank * sizeof *vi->type.dims);
        for (int i = 0; i < rank; i++) vi->type.dims[i].value = dims ? dims[i] : -1;
    }
}

static void mb_output(struct mb *b, const char *name, kiln_dtype dt)
{
    struct kiln_value_info *vi = &b->g->outputs[b->g->n_outputs++];
    vi->name = name;
    vi->doc = "";
    vi->type = (struct kiln_type){.kind = KILN_TYPE_TENSOR, .elem = dt, .rank = -1};
}

static void mb_init(struct mb *b, const char *name, kiln_dtype dt, int rank, const int64_t *dims,
                    const void *data)
{
    struct kiln_initializer *in = &b->g->inits[b->g->n_inits++];
    in->name = name;
    in->doc = "";
    in->t = (struct kiln_tensor){.dtype = dt, .rank = rank};
    for (int i = 0; i < rank; i++) in->t.dims[i] = dims[i];
    size_t n = kiln_tensor_nbytes(&in->t);
    in->t.data = az(b->m, n ? n : 1);
    memcpy(in->t.data, data, n);
}

/* Adds a node; ins/outs are NULL-terminated lists. */
static struct kiln_node *mb_node(struct mb *b, const char *op, const char *const *ins,
                                 const char *const *outs, const struct attrs *at)
{
    struct kiln_node *n = &b->g->nodes[b->g->n_nodes++];
    n->name = op;
    n->op_type = op;
    n->domain = "";
    n->doc = "";
    while (ins[n->n_in]) n->n_in++;
    while (outs[n->n_out]) n->n_out++;
    n->inputs = az(b->m, (n->n_in + 1) * sizeof *n->inputs);
    n->outputs = az(b->m, (n->n_out + 1) * sizeof *n->outputs);
    memcpy(n->inputs, ins, n->n_in * sizeof *ins);
    memcpy(n->outputs, outs, n->n_out * sizeof *outs);
    if (at && at->n) {
        n->n_attr = at->n;
        n->attrs = az(b->m, at->n * sizeof *n->attrs);
        for (size_t i = 0; i < at->n; i++) {
            n->attrs[i] = at->a[i];
            n->attrs[i].doc = "";
            if (at->a[i].type == KILN_ATTR_INTS) {
                n->attrs[i].ints = az(b->m, at->a[i].n * sizeof(int64_t) + 1);
                memcpy(n->attrs[i].ints, at->a[i].ints, at->a[i].n * sizeof(int64_t));
            }
            if (at->a[i].type == KILN_ATTR_FLOATS) {
                n->attrs[i].floats = az(b->m, at->a[i].n * sizeof(float) + 1);
                memcpy(n->attrs[i].floats, at->a[i].floats, at->a[i].n * sizeof(float));
            }
        }
    }
    return n;
}

/* Writes the built IR to bytes and loads it back: a linked model as a file would give. */
static kiln_model *mb_finish(struct mb *b)
{
    void *buf = NULL;
    size_t len = 0;
    kiln_err err = {0};
    kiln_model *m = NULL;
    kiln_status st = kiln_model_save_buffer(b->m, &buf, &len, &err);
    if (!st) st = kiln_model_load_buffer(buf, len, NULL, &m, &err);
    CHECK(st == KILN_OK, "building a test model: %s", err.msg);
    kiln_buffer_free(buf);
    kiln_model_free(b->m);
    return m;
}

static kiln_model *reload(kiln_model *m)
{
    void *buf = NULL;
    size_t len = 0;
    kiln_err err = {0};
    kiln_model *back = NULL;
    kiln_status st = kiln_model_save_buffer(m, &buf, &len, &err);
    if (!st) st = kiln_model_load_buffer(buf, len, NULL, &back, &err);
    CHECK(st == KILN_OK, "writing/reloading the converted model: %s", err.msg);
    kiln_buffer_free(buf);
    kiln_model_free(m);
    return back;
}

/* Runs m on ins; outs receive the outputs (caller frees). */
static bool run(kiln_model *m, kiln_value **ins, size_t n_in, kiln_value **outs, size_t n_out,
                const char *what)
{
    kiln_err err = {0};
    kiln_session *s = NULL;
    kiln_status st = kiln_session_create(m, NULL, &s, &err);
    if (!st) st = kiln_session_run(s, n_in, NULL, (const kiln_value *const *)ins, n_out, outs, &err);
    kiln_session_free(s);
    CHECK(st == KILN_OK, "%s: run: %s", what, err.msg);
    return st == KILN_OK;
}

static bool same_value(kiln_value *a, kiln_value *b, double tol)
{
    if (kiln_value_dtype(a) != kiln_value_dtype(b) || kiln_value_rank(a) != kiln_value_rank(b)) return false;
    for (int i = 0; i < kiln_value_rank(a); i++)
        if (kiln_value_dims(a)[i] != kiln_value_dims(b)[i]) return false;
    size_t n = kiln_value_numel(a);
    if (kiln_value_dtype(a) == KILN_DTYPE_F32 && tol > 0) {
        const float *x = kiln_value_data(a), *y = kiln_value_data(b);
        for (size_t i = 0; i < n; i++)
            if (fabs((double)x[i] - y[i]) > tol * (1 + fabs((double)y[i]))) return false;
        return true;
    }
    return !n || !memcmp(kiln_value_data(a), kiln_value_data(b), kiln_tensor_nbytes(&a->t));
}

static const struct kiln_node *node_of(const kiln_model *m, const char *op)
{
    const struct kiln_graph *g = m->graph;
    for (size_t i = 0; i < g->n_nodes; i++)
        if (!strcmp(g->nodes[i].op_type, op)) return &g->nodes[i];
    return NULL;
}

/* Runs m, converts it to `to`, reloads, runs again: outputs equal. Returns the converted
 * model (caller frees) or NULL. */
static kiln_model *check_same(kiln_model *m, int64_t to, kiln_value **ins, size_t n_in, size_t n_out,
                              double tol, const char *what)
{
    kiln_value *before[4] = {0}, *after[4] = {0};
    kiln_err err = {0};
    if (!m || !run(m, ins, n_in, before, n_out, what)) {
        kiln_model_free(m);
        return NULL;
    }
    kiln_status st = kiln_model_convert_opset(m, to, &err);
    CHECK(st == KILN_OK, "%s: convert to %lld: %s", what, (long long)to, err.msg);
    if (st) {
        free_all(before, n_out);
        kiln_model_free(m);
        return NULL;
    }
    m = reload(m);
    CHECK(m && kiln_model_opset_for(m, "") == to, "%s: opset_import is not %lld", what, (long long)to);
    if (m && run(m, ins, n_in, after, n_out, what))
        for (size_t i = 0; i < n_out; i++)
            CHECK(same_value(before[i], after[i], tol), "%s: output %zu differs after conversion", what, i);
    free_all(before, n_out);
    free_all(after, n_out);
    return m;
}

static kiln_value *iota(int rank, const int64_t *dims)
{
    kiln_value *v = new_tensor(KILN_DTYPE_F32, rank, dims);
    float *p = kiln_value_data(v);
    for (size_t i = 0; i < kiln_value_numel(v); i++) p[i] = (float)i * 0.5f - 3;
    return v;
}

/* ------------------------------------------------------------------ rewrites */

static void test_slice1(void)
{
    static const int64_t d[3] = {3, 4, 5};
    struct mb b = mb_new(9);
    mb_input(&b, "x", KILN_DTYPE_F32, 3, d);
    mb_output(&b, "y", KILN_DTYPE_F32);
    struct attrs at = {0};
    add_ints(&at, "starts", (const int64_t[]){1, -4}, 2);
    add_ints(&at, "ends", (const int64_t[]){INT64_MAX, 4}, 2);
    add_ints(&at, "axes", (const int64_t[]){0, 2}, 2);
    mb_node(&b, "Slice", (const char *[]){"x", NULL}, (const char *[]){"y", NULL}, &at);
    kiln_value *x = iota(3, d);
    kiln_model *m = check_same(mb_finish(&b), 18, &x, 1, 1, 0, "Slice-1 -> 18");
    const struct kiln_node *n = m ? node_of(m, "Slice") : NULL;
    CHECK(n && n->n_in == 4 && n->n_attr == 0 && n->since == 13,
          "Slice-1 became Slice-13 with starts/ends/axes inputs");
    if (n) {
        const struct kiln_initializer *in = NULL;
        for (size_t i = 0; i < m->graph->n_inits; i++)
            if (!strcmp(m->graph->inits[i].name, n->inputs[2])) in = &m->graph->inits[i];
        CHECK(in && in->t.dtype == KILN_DTYPE_I64 && in->t.rank == 1 && in->t.dims[0] == 2 &&
                  ((int64_t *)in->t.data)[0] == INT64_MAX,
              "the ends initializer holds the old attribute");
    }
    kiln_value_free(x);
    kiln_model_free(m);
}

static void test_axes_inputs(void)
{
    static const int64_t d[3] = {2, 1, 3};
    static const struct {
        const char *op;
        int from, since;
    } cases[] = {
        {"Squeeze", 11, 13},    {"Unsqueeze", 11, 13}, {"ReduceSum", 11, 13},
        {"ReduceMean", 13, 18}, {"ReduceMax", 1, 18},  {"ReduceLogSumExp", 11, 18},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        struct mb b = mb_new(cases[k].from);
        mb_input(&b, "x", KILN_DTYPE_F32, 3, d);
        mb_output(&b, "y", KILN_DTYPE_F32);
        struct attrs at = {0};
        add_ints(&at, "axes", (const int64_t[]){1}, 1);
        if (!strncmp(cases[k].op, "Reduce", 6)) add_i(&at, "keepdims", 0);
        mb_node(&b, cases[k].op, (const char *[]){"x", NULL}, (const char *[]){"y", NULL}, &at);
        kiln_value *x = iota(3, d);
        char what[100];
        snprintf(what, sizeof what, "%s-%d -> 18", cases[k].op, cases[k].from);
        kiln_model *m = check_same(mb_finish(&b), 18, &x, 1, 1, 1e-6, what);
        const struct kiln_node *n = m ? node_of(m, cases[k].op) : NULL;
        CHECK(n && n->n_in == 2 && !kiln_node_attr(n, "axes") && n->since == cases[k].since,
              "%s: axes moved to input 1", what);
        kiln_value_free(x);
        kiln_model_free(m);
    }
}

static void test_pad_clip_topk(void)
{
    static const int64_t d[2] = {2, 3};
    /* Pad-2: pads and a non-zero value */
    struct mb b = mb_new(2);
    mb_input(&b, "x", KILN_DTYPE_F32, 2, d);
    mb_output(&b, "y", KILN_DTYPE_F32);
    struct attrs at = {0};
    add_ints(&at, "pads", (const int64_t[]){1, 0, 0, 2}, 4);
    add_f(&at, "value", 1.5f);
    mb_node(&b, "Pad", (const char *[]){"x", NULL}, (const char *[]){"y", NULL}, &at);
    kiln_value *x = iota(2, d);
    kiln_model *m = check_same(mb_finish(&b), 18, &x, 1, 1, 0, "Pad-2 -> 18");
    const struct kiln_node *n = m ? node_of(m, "Pad") : NULL;
    CHECK(n && n->n_in == 3 && n->n_attr == 0, "Pad: pads and value became inputs");
    kiln_model_free(m);

    /* Clip-6 with one bound, float32: the absent one becomes FLT_MAX (infinities clip) */
    b = mb_new(6);
    mb_input(&b, "x", KILN_DTYPE_F32, 2, d);
    mb_output(&b, "y", KILN_DTYPE_F32);
    at = (struct attrs){0};
    add_f(&at, "min", -1.0f);
    mb_node(&b, "Clip", (const char *[]){"x", NULL}, (const char *[]){"y", NULL}, &at);
    ((float *)kiln_value_data(x))[5] = INFINITY;
    m = check_same(mb_finish(&b), 18, &x, 1, 1, 0, "Clip-6 -> 18");
    n = m ? node_of(m, "Clip") : NULL;
    CHECK(n && n->n_in == 3 && n->n_attr == 0, "Clip: min and max inputs");
    kiln_model_free(m);

    /* TopK-1: k */
    b = mb_new(9);
    mb_input(&b, "x", KILN_DTYPE_F32, 2, d);
    mb_output(&b, "v", KILN_DTYPE_F32);
    mb_output(&b, "i", KILN_DTYPE_I64);
    at = (struct attrs){0};
    add_i(&at, "k", 2);
    mb_node(&b, "TopK", (const char *[]){"x", NULL}, (const char *[]){"v", "i", NULL}, &at);
    m = check_same(mb_finish(&b), 18, &x, 1, 2, 0, "TopK-1 -> 18");
    n = m ? node_of(m, "TopK") : NULL;
    CHECK(n && n->n_in == 2 && !kiln_node_attr(n, "k"), "TopK: k became an input");
    kiln_model_free(m);
    kiln_value_free(x);
}

static void test_split(void)
{
    static const int64_t d[1] = {6};
    kiln_value *x = iota(1, d);
    /* Split-2 with `split` */
    struct mb b = mb_new(2);
    mb_input(&b, "x", KILN_DTYPE_F32, 1, d);
    mb_output(&b, "a", KILN_DTYPE_F32);
    mb_output(&b, "b", KILN_DTYPE_F32);
    struct attrs at = {0};
    add_ints(&at, "split", (const int64_t[]){4, 2}, 2);
    mb_node(&b, "Split", (const char *[]){"x", NULL}, (const char *[]){"a", "b", NULL}, &at);
    kiln_model *m = check_same(mb_finish(&b), 18, &x, 1, 2, 0, "Split-2 -> 18");
    const struct kiln_node *n = m ? node_of(m, "Split") : NULL;
    CHECK(n && n->n_in == 2 && !kiln_node_attr(n, "split"), "Split: split became an input");
    kiln_model_free(m);
    /* Split-13 without split: 18 needs num_outputs */
    b = mb_new(13);
    mb_input(&b, "x", KILN_DTYPE_F32, 1, d);
    mb_output(&b, "a", KILN_DTYPE_F32);
    mb_output(&b, "b", KILN_DTYPE_F32);
    mb_output(&b, "c", KILN_DTYPE_F32);
    mb_node(&b, "Split", (const char *[]){"x", NULL}, (const char *[]){"a", "b", "c", NULL}, NULL);
    m = check_same(mb_finish(&b), 18, &x, 1, 3, 0, "Split-13 -> 18");
    n = m ? node_of(m, "Split") : NULL;
    const struct kiln_attr *no = n ? kiln_node_attr(n, "num_outputs") : NULL;
    CHECK(no && no->i == 3, "Split-18 got num_outputs=3");
    kiln_model_free(m);
    kiln_value_free(x);
}

/* Softmax before 13 flattens at axis; both paths: rank known (axis == rank-1 rewrites the
 * attribute) and a rank-3 input with axis 1 (Flatten/Softmax/Reshape). */
static void test_softmax(void)
{
    static const int64_t d[3] = {2, 3, 4};
    kiln_value *x = rand_tensor(3, d);
    static const struct {
        const char *op;
        int64_t axis;
        int rank;
    } cases[] = {
        {"Softmax", 1, 3}, {"LogSoftmax", 1, -1}, {"Hardmax", 0, 3}, {"Softmax", 2, 3}, {"Softmax", -1, -1},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        struct mb b = mb_new(11);
        mb_input(&b, "x", KILN_DTYPE_F32, cases[k].rank, cases[k].rank > 0 ? d : NULL);
        mb_output(&b, "y", KILN_DTYPE_F32);
        struct attrs at = {0};
        add_i(&at, "axis", cases[k].axis);
        mb_node(&b, cases[k].op, (const char *[]){"x", NULL}, (const char *[]){"y", NULL}, &at);
        char what[100];
        snprintf(what, sizeof what, "%s-11 axis %lld (rank %d) -> 13", cases[k].op, (long long)cases[k].axis,
                 cases[k].rank);
        kiln_model *m = check_same(mb_finish(&b), 13, &x, 1, 1, 1e-6, what);
        bool simple = cases[k].axis == 2 || cases[k].axis == -1;
        CHECK(m && (simple ? m->graph->n_nodes == 1 : m->graph->n_nodes == 4), "%s: %zu nodes", what,
              m ? m->graph->n_nodes : 0);
        kiln_model_free(m);
    }
    kiln_value_free(x);
}

static void test_legacy_broadcast(void)
{
    static const int64_t da[3] = {2, 3, 4}, db[1] = {3};
    kiln_value *in[2] = {iota(3, da), iota(1, db)};
    struct mb b = mb_new(6);
    mb_input(&b, "a", KILN_DTYPE_F32, 3, da);
    mb_input(&b, "b", KILN_DTYPE_F32, 1, db);
    mb_output(&b, "y", KILN_DTYPE_F32);
    struct attrs at = {0};
    add_i(&at, "broadcast", 1);
    add_i(&at, "axis", 1);
    mb_node(&b, "Add", (const char *[]){"a", "b", NULL}, (const char *[]){"y", NULL}, &at);
    kiln_model *m = check_same(mb_finish(&b), 18, in, 2, 1, 0, "Add-6 broadcast axis=1 -> 18");
    CHECK(m && m->graph->n_nodes == 2 && node_of(m, "Unsqueeze"), "Add: B unsqueezed to [3,1]");
    kiln_model_free(m);
    free_all(in, 2);
}

static void test_upsample_dropout_bn(void)
{
    static const int64_t d[4] = {1, 1, 2, 2};
    kiln_value *x = iota(4, d);
    /* Upsample-7 (scales attribute) -> Resize-18 */
    struct mb b = mb_new(7);
    mb_input(&b, "x", KILN_DTYPE_F32, 4, d);
    mb_output(&b, "y", KILN_DTYPE_F32);
    struct attrs at = {0};
    static const float sc[4] = {1, 1, 2, 3};
    at.a[at.n++] = attr_floats("scales", sc, 4);
    add_s(&at, "mode", "nearest");
    mb_node(&b, "Upsample", (const char *[]){"x", NULL}, (const char *[]){"y", NULL}, &at);
    kiln_model *m = check_same(mb_finish(&b), 18, &x, 1, 1, 0, "Upsample-7 -> Resize-18");
    CHECK(m && node_of(m, "Resize") && node_of(m, "Resize")->n_in == 3, "Upsample became Resize");
    kiln_model_free(m);

    /* Dropout-6 is_test with an unused mask output, ratio -> input */
    b = mb_new(6);
    mb_input(&b, "x", KILN_DTYPE_F32, 4, d);
    mb_output(&b, "y", KILN_DTYPE_F32);
    at = (struct attrs){0};
    add_i(&at, "is_test", 1);
    add_f(&at, "ratio", 0.25f);
    mb_node(&b, "Dropout", (const char *[]){"x", NULL}, (const char *[]){"y", "mask", NULL}, &at);
    m = check_same(mb_finish(&b), 18, &x, 1, 1, 0, "Dropout-6 -> 18");
    const struct kiln_node *n = m ? node_of(m, "Dropout") : NULL;
    CHECK(n && n->n_in == 2 && n->n_out == 1 && n->n_attr == 0, "Dropout: ratio input, mask dropped");
    kiln_model_free(m);

    /* BatchNormalization-6: consumed_inputs, is_test, spatial dropped */
    static const float ones[1] = {2}, zeros[1] = {0.5f};
    b = mb_new(6);
    mb_input(&b, "x", KILN_DTYPE_F32, 4, d);
    mb_output(&b, "y", KILN_DTYPE_F32);
    static const int64_t one = 1;
    mb_init(&b, "s", KILN_DTYPE_F32, 1, &one, ones);
    mb_init(&b, "bias", KILN_DTYPE_F32, 1, &one, zeros);
    mb_init(&b, "mean", KILN_DTYPE_F32, 1, &one, zeros);
    mb_init(&b, "var", KILN_DTYPE_F32, 1, &one, ones);
    at = (struct attrs){0};
    add_i(&at, "is_test", 1);
    add_i(&at, "spatial", 1);
    mb_node(&b, "BatchNormalization", (const char *[]){"x", "s", "bias", "mean", "var", NULL},
            (const char *[]){"y", NULL}, &at);
    m = check_same(mb_finish(&b), 18, &x, 1, 1, 1e-6, "BatchNormalization-6 -> 18");
    n = m ? node_of(m, "BatchNormalization") : NULL;
    CHECK(n && n->n_attr == 0, "BatchNormalization: old attributes dropped");
    kiln_model_free(m);

    /* Relu-1: consumed_inputs (a memory hint of opsets 1-5) goes */
    b = mb_new(1);
    mb_input(&b, "x", KILN_DTYPE_F32, 4, d);
    mb_output(&b, "y", KILN_DTYPE_F32);
    at = (struct attrs){0};
    add_ints(&at, "consumed_inputs", (const int64_t[]){1}, 1);
    mb_node(&b, "Relu", (const char *[]){"x", NULL}, (const char *[]){"y", NULL}, &at);
    m = mb_finish(&b);
    kiln_err err = {0};
    CHECK(m && kiln_model_convert_opset(m, 18, &err) == KILN_OK, "Relu-1: %s", err.msg);
    n = m ? node_of(m, "Relu") : NULL;
    CHECK(n && n->n_attr == 0 && n->since == 14, "Relu-1 -> Relu-14 without consumed_inputs");
    kiln_model_free(m);
    kiln_value_free(x);
}

static void test_scatter_concat_cast(void)
{
    static const int64_t d[2] = {2, 3};
    kiln_value *x = iota(2, d);
    /* Scatter-9 -> ScatterElements */
    struct mb b = mb_new(9);
    mb_input(&b, "x", KILN_DTYPE_F32, 2, d);
    mb_output(&b, "y", KILN_DTYPE_F32);
    static const int64_t id[2] = {1, 1}, idx[2] = {1, 0};
    static const float up[2] = {10, 20};
    mb_init(&b, "idx", KILN_DTYPE_I64, 2, (const int64_t[]){1, 2}, idx);
    mb_init(&b, "up", KILN_DTYPE_F32, 2, (const int64_t[]){1, 2}, up);
    (void)id;
    struct attrs at = {0};
    add_i(&at, "axis", 1);
    mb_node(&b, "Scatter", (const char *[]){"x", "idx", "up", NULL}, (const char *[]){"y", NULL}, &at);
    kiln_model *m = check_same(mb_finish(&b), 18, &x, 1, 1, 0, "Scatter-9 -> ScatterElements");
    CHECK(m && node_of(m, "ScatterElements"), "Scatter renamed");
    kiln_model_free(m);

    /* Concat-1 without axis concatenates on axis 1 */
    b = mb_new(1);
    mb_input(&b, "x", KILN_DTYPE_F32, 2, d);
    mb_output(&b, "y", KILN_DTYPE_F32);
    mb_node(&b, "Concat", (const char *[]){"x", "x", NULL}, (const char *[]){"y", NULL}, NULL);
    kiln_model *c = mb_finish(&b);
    kiln_err err = {0};
    CHECK(c && kiln_model_convert_opset(c, 18, &err) == KILN_OK, "Concat-1: %s", err.msg);
    const struct kiln_node *n = c ? node_of(c, "Concat") : NULL;
    const struct kiln_attr *ax = n ? kiln_node_attr(n, "axis") : NULL;
    CHECK(ax && ax->i == 1, "Concat-1 got axis=1");
    kiln_model_free(c);

    /* Cast-1 names its target type */
    b = mb_new(1);
    mb_input(&b, "x", KILN_DTYPE_F32, 2, d);
    mb_output(&b, "y", KILN_DTYPE_I64);
    at = (struct attrs){0};
    add_s(&at, "to", "INT64");
    mb_node(&b, "Cast", (const char *[]){"x", NULL}, (const char *[]){"y", NULL}, &at);
    c = mb_finish(&b);
    CHECK(c && kiln_model_convert_opset(c, 18, &err) == KILN_OK, "Cast-1: %s", err.msg);
    n = c ? node_of(c, "Cast") : NULL;
    ax = n ? kiln_node_attr(n, "to") : NULL;
    CHECK(ax && ax->type == KILN_ATTR_INT && ax->i == KILN_DTYPE_I64, "Cast-1 to='INT64' -> 7");
    kiln_value *out[1] = {0};
    if (c && run(c, &x, 1, out, 1, "Cast converted"))
        CHECK(((int64_t *)kiln_value_data(out[0]))[5] == 0, "Cast ran: %lld",
              (long long)((int64_t *)kiln_value_data(out[0]))[5]);
    free_all(out, 1);
    kiln_model_free(c);
    kiln_value_free(x);
}

/* A Slice-1 inside an If branch: the new inputs become initializers of the branch. */
static void test_subgraph(void)
{
    static const int64_t d[1] = {5};
    struct mb b = mb_new(9);
    mb_input(&b, "c", KILN_DTYPE_BOOL, 0, NULL);
    mb_input(&b, "x", KILN_DTYPE_F32, 1, d);
    mb_output(&b, "y", KILN_DTYPE_F32);
    struct kiln_graph *br[2];
    for (int k = 0; k < 2; k++) {
        struct kiln_graph *g = br[k] = az(b.m, sizeof *g);
        g->name = k ? "else" : "then";
        g->doc = "";
        g->model = b.m;
        g->parent = b.g;
        g->n_nodes = 1;
        g->nodes = az(b.m, sizeof *g->nodes);
        struct kiln_node *n = &g->nodes[0];
        *n = (struct kiln_node){
            .name = "s", .op_type = "Slice", .domain = "", .doc = "", .n_in = 1, .n_out = 1, .n_attr = 2};
        n->inputs = az(b.m, sizeof(char *));
        n->inputs[0] = "x";
        n->outputs = az(b.m, sizeof(char *));
        n->outputs[0] = k ? "ye" : "yt";
        n->attrs = az(b.m, 2 * sizeof *n->attrs);
        n->attrs[0] = attr_ints("starts", (const int64_t[]){k}, 1);
        n->attrs[1] = attr_ints("ends", (const int64_t[]){3}, 1);
        for (int a = 0; a < 2; a++) {
            int64_t *v = az(b.m, sizeof *v);
            *v = n->attrs[a].ints[0];
            n->attrs[a].ints = v;
            n->attrs[a].doc = "";
        }
        g->n_outputs = 1;
        g->outputs = az(b.m, sizeof *g->outputs);
        g->outputs[0] =
            (struct kiln_value_info){.name = n->outputs[0],
                                     .doc = "",
                                     .type = {.kind = KILN_TYPE_TENSOR, .elem = KILN_DTYPE_F32, .rank = -1}};
    }
    struct attrs at = {0};
    struct kiln_node *n = mb_node(&b, "If", (const char *[]){"c", NULL}, (const char *[]){"y", NULL}, &at);
    n->n_attr = 2;
    n->attrs = az(b.m, 2 * sizeof *n->attrs);
    n->attrs[0] = (struct kiln_attr){.name = "then_branch", .doc = "", .type = KILN_ATTR_GRAPH, .g = br[0]};
    n->attrs[1] = (struct kiln_attr){.name = "else_branch", .doc = "", .type = KILN_ATTR_GRAPH, .g = br[1]};
    bool yes = false;
    kiln_value *in[2] = {tensor_of(KILN_DTYPE_BOOL, 0, NULL, &yes), iota(1, d)};
    kiln_model *m = check_same(mb_finish(&b), 18, in, 2, 1, 0, "If with Slice-1 branches");
    const struct kiln_graph *eb = m ? kiln_node_attr(node_of(m, "If"), "else_branch")->g : NULL;
    CHECK(eb && eb->n_inits == 2 && eb->nodes[0].n_in == 3, "the else branch got its own inputs");
    kiln_model_free(m);
    free_all(in, 2);
}

/* A model function whose body imports the default domain: converted too, with the new
 * constant inputs as Constant nodes (function bodies have no initializers). */
static void test_function(void)
{
    static const int64_t d[2] = {2, 3};
    struct mb b = mb_new(11);
    struct kiln_model *mm = b.m;
    mm->opsets = az(mm, 2 * sizeof *mm->opsets);
    mm->n_opsets = 2;
    mm->opsets[0] = (struct kiln_opset){"", 11};
    mm->opsets[1] = (struct kiln_opset){"local", 1};
    mm->n_functions = 1;
    struct kiln_function *f = mm->functions = az(mm, sizeof *f);
    f->name = "AddDim";
    f->domain = "local";
    f->overload = f->doc = "";
    f->n_in = f->n_out = f->n_nodes = f->n_opsets = 1;
    f->inputs = az(mm, sizeof(char *));
    f->inputs[0] = "a";
    f->outputs = az(mm, sizeof(char *));
    f->outputs[0] = "out";
    f->opsets = az(mm, sizeof *f->opsets);
    f->opsets[0] = (struct kiln_opset){"", 11};
    f->nodes = az(mm, sizeof *f->nodes);
    struct kiln_node *n = &f->nodes[0];
    *n = (struct kiln_node){.name = "u",
                            .op_type = "Unsqueeze",
                            .domain = "",
                            .doc = "",
                            .n_in = 1,
                            .n_out = 1,
                            .n_attr = 1,
                            .inputs = f->inputs,
                            .outputs = f->outputs};
    n->attrs = az(mm, sizeof *n->attrs);
    int64_t *ax = az(mm, sizeof *ax);
    *ax = 0;
    n->attrs[0] = (struct kiln_attr){.name = "axes", .doc = "", .type = KILN_ATTR_INTS, .n = 1, .ints = ax};
    mb_input(&b, "x", KILN_DTYPE_F32, 2, d);
    mb_output(&b, "y", KILN_DTYPE_F32);
    struct kiln_node *call =
        mb_node(&b, "AddDim", (const char *[]){"x", NULL}, (const char *[]){"y", NULL}, NULL);
    call->domain = "local";
    /* kiln does not run model functions yet: the check is structural */
    kiln_model *m = mb_finish(&b);
    kiln_err err = {0};
    CHECK(m && kiln_model_convert_opset(m, 13, &err) == KILN_OK, "function: %s", err.msg);
    m = m ? reload(m) : NULL;
    const struct kiln_function *g = m ? &m->functions[0] : NULL;
    CHECK(g && g->n_nodes == 2 && !strcmp(g->nodes[0].op_type, "Constant") && g->nodes[1].n_in == 2 &&
              g->opsets[0].version == 13,
          "the function body got a Constant axes input and imports opset 13");
    kiln_model_free(m);
}

/* ------------------------------------------------------------------ refusals */

static void expect_refused(kiln_model *m, int64_t to, kiln_status want, const char *const *words,
                           const char *what)
{
    void *before = NULL, *after = NULL;
    size_t nb = 0, na = 0;
    kiln_err err = {0};
    CHECK(kiln_model_save_buffer(m, &before, &nb, &err) == KILN_OK, "%s: save", what);
    kiln_status st = kiln_model_convert_opset(m, to, &err);
    CHECK(st == want, "%s: got %s (%s)", what, kiln_status_name(st), err.msg);
    for (size_t i = 0; words[i]; i++)
        CHECK(strstr(err.msg, words[i]), "%s: message lacks '%s': %s", what, words[i], err.msg);
    CHECK(!strchr(err.msg, '\n'), "%s: the message is not one line", what);
    CHECK(kiln_model_save_buffer(m, &after, &na, &err) == KILN_OK && na == nb && !memcmp(before, after, nb),
          "%s: the refused model changed", what);
    kiln_buffer_free(before);
    kiln_buffer_free(after);
}

static void test_refusals(void)
{
    /* Add-6 with axis and undeclared ranks; the first node converts, the second cannot: the
     * model must stay unchanged all the same */
    struct mb b = mb_new(6);
    mb_input(&b, "a", KILN_DTYPE_F32, -1, NULL);
    mb_input(&b, "b", KILN_DTYPE_F32, -1, NULL);
    mb_output(&b, "y", KILN_DTYPE_F32);
    struct attrs at = {0};
    add_ints(&at, "starts", (const int64_t[]){0}, 1);
    add_ints(&at, "ends", (const int64_t[]){1}, 1);
    mb_node(&b, "Slice", (const char *[]){"a", NULL}, (const char *[]){"s", NULL}, &at);
    at = (struct attrs){0};
    add_i(&at, "broadcast", 1);
    add_i(&at, "axis", 1);
    struct kiln_node *n =
        mb_node(&b, "Add", (const char *[]){"s", "b", NULL}, (const char *[]){"y", NULL}, &at);
    n->name = "add_axis";
    kiln_model *m = mb_finish(&b);
    expect_refused(m, 18, KILN_E_UNSUPPORTED,
                   (const char *[]){"Add node 'add_axis'", "opset 6 -> 18", "rank", NULL},
                   "Add-6 axis, unknown ranks");
    /* downward, too new, too old */
    expect_refused(m, 5, KILN_E_UNSUPPORTED, (const char *[]){"5", NULL}, "target below 7");
    expect_refused(m, 1000, KILN_E_UNSUPPORTED, (const char *[]){"1000", NULL}, "target too new");
    kiln_model_free(m);

    b = mb_new(13);
    mb_input(&b, "x", KILN_DTYPE_F32, -1, NULL);
    mb_output(&b, "y", KILN_DTYPE_F32);
    mb_node(&b, "Relu", (const char *[]){"x", NULL}, (const char *[]){"y", NULL}, NULL);
    m = mb_finish(&b);
    expect_refused(m, 11, KILN_E_UNSUPPORTED, (const char *[]){"upward", NULL}, "downward");
    kiln_model_free(m);

    /* BatchNormalization spatial=0 */
    b = mb_new(7);
    mb_input(&b, "x", KILN_DTYPE_F32, -1, NULL);
    mb_output(&b, "y", KILN_DTYPE_F32);
    at = (struct attrs){0};
    add_i(&at, "spatial", 0);
    mb_node(&b, "BatchNormalization", (const char *[]){"x", "x", "x", "x", "x", NULL},
            (const char *[]){"y", NULL}, &at);
    m = mb_finish(&b);
    expect_refused(m, 18, KILN_E_UNSUPPORTED, (const char *[]){"BatchNormalization node", "spatial=0", NULL},
                   "BN spatial=0");
    kiln_model_free(m);

    /* Dropout-7 whose mask is a graph output: its type changes at 10 */
    b = mb_new(7);
    mb_input(&b, "x", KILN_DTYPE_F32, -1, NULL);
    mb_output(&b, "y", KILN_DTYPE_F32);
    mb_output(&b, "mask", KILN_DTYPE_F32);
    mb_node(&b, "Dropout", (const char *[]){"x", NULL}, (const char *[]){"y", "mask", NULL}, NULL);
    m = mb_finish(&b);
    expect_refused(m, 18, KILN_E_UNSUPPORTED, (const char *[]){"'mask'", "bool", NULL}, "Dropout mask used");
    kiln_model_free(m);

    /* Scan-8 from the ONNX tests */
    char path[4096];
    case_path(path, sizeof path, "node", "test_scan_sum", "model.onnx");
    kiln_err err = {0};
    m = NULL;
    if (kiln_model_load_file(path, &m, &err) == KILN_OK) {
        expect_refused(m, 18, KILN_E_UNSUPPORTED, (const char *[]){"Scan node", "batch", NULL}, "Scan-8");
        kiln_model_free(m);
    }
}

/* Every allocation failing in turn: NOMEM, the model unchanged, no leak (ASan). */
static void test_oom(void)
{
    static const int64_t d[3] = {2, 3, 4};
    struct mb b = mb_new(9);
    mb_input(&b, "x", KILN_DTYPE_F32, 3, d);
    mb_output(&b, "y", KILN_DTYPE_F32);
    struct attrs at = {0};
    add_ints(&at, "starts", (const int64_t[]){0}, 1);
    add_ints(&at, "ends", (const int64_t[]){1}, 1);
    mb_node(&b, "Slice", (const char *[]){"x", NULL}, (const char *[]){"s", NULL}, &at);
    at = (struct attrs){0};
    add_i(&at, "axis", 1);
    mb_node(&b, "Softmax", (const char *[]){"s", NULL}, (const char *[]){"y", NULL}, &at);
    kiln_model *orig = mb_finish(&b);
    void *want = NULL;
    size_t want_len = 0;
    kiln_err err = {0};
    if (!orig || kiln_model_save_buffer(orig, &want, &want_len, &err)) return;
    kiln_model_free(orig);
    for (long n = 1;; n++) {
        kiln_model *m = NULL;
        if (kiln_model_load_buffer(want, want_len, NULL, &m, &err)) break;
        kiln_alloc_fail_after(n);
        kiln_status st = kiln_model_convert_opset(m, 18, &err);
        long used = kiln_alloc_fail_after(0);
        if (st == KILN_OK) {
            CHECK(used < n, "convert succeeded although allocation %ld failed", n);
            kiln_model_free(m);
            break;
        }
        CHECK(st == KILN_E_NOMEM, "allocation %ld failing: %s (%s)", n, kiln_status_name(st), err.msg);
        void *got = NULL;
        size_t len = 0;
        CHECK(kiln_model_save_buffer(m, &got, &len, &err) == KILN_OK && len == want_len &&
                  !memcmp(got, want, len),
              "allocation %ld failing changed the model", n);
        kiln_buffer_free(got);
        kiln_model_free(m);
        if (n > 10000) break;
    }
    kiln_buffer_free(want);
}

int main(void)
{
    test_slice1();
    test_axes_inputs();
    test_pad_clip_topk();
    test_split();
    test_softmax();
    test_legacy_broadcast();
    test_upsample_dropout_bn();
    test_scatter_concat_cast();
    test_subgraph();
    test_function();
    test_refusals();
    test_oom();
    return test_summary("test_convert");
}
