/* test_onnx_write.c: the ONNX writer (src/onnx/write.c, kiln_tpb_encode_full).
 *
 * 1. Round trips: every ONNX test model and every model of the fuzz corpus, and a model
 *    built here in IR that holds every attribute type, every TypeProto kind, symbolic and
 *    unknown dims, denotations, doc strings, metadata, a function, sparse initializers and
 *    the sub-byte types with odd element counts. load(save(m)) must equal m field by field
 *    (deep comparison below), and save(load(save(m))) must give the same bytes.
 * 2. External data: tensors at or over the threshold go to "<model>.data" at 64-byte aligned
 *    offsets, the model reloads from the file with the same values, and the model alone is
 *    smaller than the threshold times the tensor count.
 * 3. Failures: a tensor over 2 GB inline is refused with KILN_E_LIMIT (before touching its
 *    data); a missing folder gives KILN_E_IO; every allocation failing in turn gives
 *    KILN_E_NOMEM and leaves no file behind (leaks are ASan's to find).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "onnx/onnx.h"
#include "onnx/pbwire.h"
#include "test_support.h"

/* ------------------------------------------------------------------ deep comparison */

static char where[512]; /* path of the first difference */
static bool differ;

#define SAME(cond, ...)                                                                                      \
    do {                                                                                                     \
        if (!differ && !(cond)) {                                                                            \
            differ = true;                                                                                   \
            snprintf(where, sizeof where, __VA_ARGS__);                                                      \
        }                                                                                                    \
    } while (0)

static bool str_eq(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") == 0;
}

static void cmp_tensor(const struct kiln_tensor *a, const struct kiln_tensor *b, const char *ctx)
{
    SAME(a->dtype == b->dtype, "%s: dtype %d vs %d", ctx, a->dtype, b->dtype);
    SAME(a->rank == b->rank, "%s: rank %d vs %d", ctx, a->rank, b->rank);
    if (differ) return;
    for (int i = 0; i < a->rank; i++) SAME(a->dims[i] == b->dims[i], "%s: dim %d", ctx, i);
    size_t n = kiln_tensor_numel(a);
    if (differ || !n) return;
    if (a->dtype == KILN_DTYPE_STRING) {
        for (size_t i = 0; i < n; i++)
            SAME(str_eq(((char **)a->data)[i], ((char **)b->data)[i]), "%s: string %zu", ctx, i);
        return;
    }
    SAME(memcmp(a->data, b->data, kiln_tensor_nbytes(a)) == 0, "%s: data", ctx);
}

static void cmp_sparse(const struct kiln_sparse_tensor *a, const struct kiln_sparse_tensor *b,
                       const char *ctx)
{
    char c[400];
    SAME(str_eq(a->name, b->name), "%s: name", ctx);
    SAME(a->rank == b->rank, "%s: rank", ctx);
    for (int i = 0; !differ && i < a->rank; i++) SAME(a->dims[i] == b->dims[i], "%s: dim", ctx);
    snprintf(c, sizeof c, "%s.values", ctx);
    cmp_tensor(&a->values, &b->values, c);
    snprintf(c, sizeof c, "%s.indices", ctx);
    cmp_tensor(&a->indices, &b->indices, c);
}

static void cmp_type(const struct kiln_type *a, const struct kiln_type *b, const char *ctx)
{
    SAME(a->kind == b->kind, "%s: kind %d vs %d", ctx, a->kind, b->kind);
    SAME(a->elem == b->elem, "%s: elem %d vs %d", ctx, a->elem, b->elem);
    SAME(str_eq(a->denotation, b->denotation), "%s: denotation", ctx);
    if (a->kind == KILN_TYPE_TENSOR || a->kind == KILN_TYPE_SPARSE_TENSOR) {
        SAME(a->rank == b->rank, "%s: rank %d vs %d", ctx, a->rank, b->rank);
        for (int i = 0; !differ && i < a->rank; i++) {
            SAME(a->dims[i].value == b->dims[i].value, "%s: dim %d value", ctx, i);
            SAME((a->dims[i].param == NULL) == (b->dims[i].param == NULL) &&
                     str_eq(a->dims[i].param, b->dims[i].param),
                 "%s: dim %d param", ctx, i);
        }
    }
    SAME((a->inner == NULL) == (b->inner == NULL), "%s: inner type present", ctx);
    if (!differ && a->inner) {
        char c[400];
        snprintf(c, sizeof c, "%s.inner", ctx);
        cmp_type(a->inner, b->inner, c);
    }
}

static void cmp_vi(const struct kiln_value_info *a, const struct kiln_value_info *b, const char *ctx)
{
    SAME(str_eq(a->name, b->name), "%s: name '%s' vs '%s'", ctx, a->name, b->name);
    SAME(str_eq(a->doc, b->doc), "%s: doc", ctx);
    cmp_type(&a->type, &b->type, ctx);
}

static void cmp_graph(const struct kiln_graph *a, const struct kiln_graph *b, const char *ctx);

static void cmp_node(const struct kiln_node *a, const struct kiln_node *b, const char *ctx)
{
    SAME(str_eq(a->name, b->name), "%s: name", ctx);
    SAME(str_eq(a->op_type, b->op_type), "%s: op_type", ctx);
    SAME(str_eq(a->domain, b->domain), "%s: domain", ctx);
    SAME(str_eq(a->doc, b->doc), "%s: doc", ctx);
    SAME(a->n_in == b->n_in && a->n_out == b->n_out && a->n_attr == b->n_attr, "%s: counts", ctx);
    if (differ) return;
    for (size_t i = 0; i < a->n_in; i++) SAME(str_eq(a->inputs[i], b->inputs[i]), "%s: in %zu", ctx, i);
    for (size_t i = 0; i < a->n_out; i++) SAME(str_eq(a->outputs[i], b->outputs[i]), "%s: out %zu", ctx, i);
    for (size_t k = 0; !differ && k < a->n_attr; k++) {
        const struct kiln_attr *x = &a->attrs[k], *y = &b->attrs[k];
        char c[400];
        snprintf(c, sizeof c, "%.300s.attr[%s]", ctx, x->name);
        SAME(str_eq(x->name, y->name), "%s: name", c);
        SAME(str_eq(x->doc, y->doc), "%s: doc", c);
        SAME(str_eq(x->ref_attr_name, y->ref_attr_name), "%s: ref", c);
        SAME(x->type == y->type, "%s: type %d vs %d", c, x->type, y->type);
        if (differ || x->ref_attr_name) continue;
        switch (x->type) {
        case KILN_ATTR_FLOAT:
            SAME(memcmp(&x->f, &y->f, 4) == 0, "%s: f", c);
            break;
        case KILN_ATTR_INT:
            SAME(x->i == y->i, "%s: i", c);
            break;
        case KILN_ATTR_STRING:
            SAME(x->s_len == y->s_len && !memcmp(x->s, y->s, x->s_len), "%s: s", c);
            break;
        case KILN_ATTR_TENSOR:
            SAME(str_eq(x->t_name, y->t_name), "%s: tensor name", c);
            cmp_tensor(x->t, y->t, c);
            break;
        case KILN_ATTR_GRAPH:
            cmp_graph(x->g, y->g, c);
            break;
        case KILN_ATTR_SPARSE_TENSOR:
            cmp_sparse(x->sp, y->sp, c);
            break;
        case KILN_ATTR_TYPE_PROTO:
            cmp_type(x->tp, y->tp, c);
            break;
        default:
            SAME(x->n == y->n, "%s: n %zu vs %zu", c, x->n, y->n);
            for (size_t i = 0; !differ && i < x->n; i++) {
                switch (x->type) {
                case KILN_ATTR_FLOATS:
                    SAME(!memcmp(&x->floats[i], &y->floats[i], 4), "%s[%zu]", c, i);
                    break;
                case KILN_ATTR_INTS:
                    SAME(x->ints[i] == y->ints[i], "%s[%zu]", c, i);
                    break;
                case KILN_ATTR_STRINGS:
                    SAME(x->string_lens[i] == y->string_lens[i] &&
                             !memcmp(x->strings[i], y->strings[i], x->string_lens[i]),
                         "%s[%zu]", c, i);
                    break;
                case KILN_ATTR_TENSORS:
                    cmp_tensor(&x->tensors[i], &y->tensors[i], c);
                    break;
                case KILN_ATTR_GRAPHS:
                    cmp_graph(x->graphs[i], y->graphs[i], c);
                    break;
                case KILN_ATTR_SPARSE_TENSORS:
                    cmp_sparse(&x->sparses[i], &y->sparses[i], c);
                    break;
                case KILN_ATTR_TYPE_PROTOS:
                    cmp_type(&x->types[i], &y->types[i], c);
                    break;
                default:
                    break;
                }
            }
        }
    }
}

static void cmp_graph(const struct kiln_graph *a, const struct kiln_graph *b, const char *ctx)
{
    char c[400];
    SAME(str_eq(a->name, b->name), "%s: graph name", ctx);
    SAME(str_eq(a->doc, b->doc), "%s: graph doc", ctx);
    SAME(a->n_nodes == b->n_nodes && a->n_inputs == b->n_inputs && a->n_outputs == b->n_outputs &&
             a->n_value_info == b->n_value_info && a->n_inits == b->n_inits &&
             a->n_sparse_inits == b->n_sparse_inits,
         "%s: counts", ctx);
    for (size_t i = 0; !differ && i < a->n_nodes; i++) {
        snprintf(c, sizeof c, "%.300s.node[%zu]", ctx, i);
        cmp_node(&a->nodes[i], &b->nodes[i], c);
    }
    for (size_t i = 0; !differ && i < a->n_inputs; i++) cmp_vi(&a->inputs[i], &b->inputs[i], ctx);
    for (size_t i = 0; !differ && i < a->n_outputs; i++) cmp_vi(&a->outputs[i], &b->outputs[i], ctx);
    for (size_t i = 0; !differ && i < a->n_value_info; i++) cmp_vi(&a->value_info[i], &b->value_info[i], ctx);
    for (size_t i = 0; !differ && i < a->n_inits; i++) {
        snprintf(c, sizeof c, "%.300s.init[%s]", ctx, a->inits[i].name);
        SAME(str_eq(a->inits[i].name, b->inits[i].name), "%s: name", c);
        SAME(str_eq(a->inits[i].doc, b->inits[i].doc), "%s: doc", c);
        cmp_tensor(&a->inits[i].t, &b->inits[i].t, c);
    }
    for (size_t i = 0; !differ && i < a->n_sparse_inits; i++)
        cmp_sparse(&a->sparse_inits[i], &b->sparse_inits[i], ctx);
}

/* True when a and b hold the same model; else `where` names the first difference. */
static bool same_model(const struct kiln_model *a, const struct kiln_model *b)
{
    differ = false;
    where[0] = 0;
    SAME(a->ir_version == b->ir_version, "ir_version");
    SAME(a->model_version == b->model_version, "model_version");
    SAME(str_eq(a->producer_name, b->producer_name), "producer_name");
    SAME(str_eq(a->producer_version, b->producer_version), "producer_version");
    SAME(str_eq(a->domain, b->domain), "domain");
    SAME(str_eq(a->doc, b->doc), "doc");
    SAME(a->n_opsets == b->n_opsets && a->n_meta == b->n_meta && a->n_functions == b->n_functions,
         "model counts");
    for (size_t i = 0; !differ && i < a->n_opsets; i++)
        SAME(str_eq(a->opsets[i].domain, b->opsets[i].domain) && a->opsets[i].version == b->opsets[i].version,
             "opset %zu", i);
    for (size_t i = 0; !differ && i < a->n_meta; i++)
        SAME(str_eq(a->meta[i].key, b->meta[i].key) && str_eq(a->meta[i].value, b->meta[i].value), "meta %zu",
             i);
    for (size_t i = 0; !differ && i < a->n_functions; i++) {
        const struct kiln_function *f = &a->functions[i], *g = &b->functions[i];
        SAME(str_eq(f->name, g->name) && str_eq(f->domain, g->domain) && str_eq(f->overload, g->overload) &&
                 str_eq(f->doc, g->doc),
             "function %zu header", i);
        SAME(f->n_in == g->n_in && f->n_out == g->n_out && f->n_attr_names == g->n_attr_names &&
                 f->n_nodes == g->n_nodes && f->n_opsets == g->n_opsets,
             "function %zu counts", i);
        for (size_t k = 0; !differ && k < f->n_in; k++) SAME(str_eq(f->inputs[k], g->inputs[k]), "fn in");
        for (size_t k = 0; !differ && k < f->n_out; k++) SAME(str_eq(f->outputs[k], g->outputs[k]), "fn out");
        for (size_t k = 0; !differ && k < f->n_attr_names; k++)
            SAME(str_eq(f->attr_names[k], g->attr_names[k]), "fn attr name");
        for (size_t k = 0; !differ && k < f->n_opsets; k++)
            SAME(str_eq(f->opsets[k].domain, g->opsets[k].domain) &&
                     f->opsets[k].version == g->opsets[k].version,
                 "fn opset");
        for (size_t k = 0; !differ && k < f->n_nodes; k++)
            cmp_node(&f->nodes[k], &g->nodes[k], "function node");
    }
    if (!differ) cmp_graph(a->graph, b->graph, "graph");
    return !differ;
}

/* ------------------------------------------------------------------ round trips */

/* save_buffer -> load_buffer -> compare -> save_buffer again: same bytes. */
static void round_trip(const struct kiln_model *m, const char *label)
{
    kiln_err err = {0};
    void *buf = NULL, *buf2 = NULL;
    size_t len = 0, len2 = 0;
    kiln_model *back = NULL;
    kiln_status st = kiln_model_save_buffer(m, &buf, &len, &err);
    CHECK(st == KILN_OK, "%s: save: %s", label, err.msg);
    if (st) return;
    st = kiln_model_load_buffer(buf, len, NULL, &back, &err);
    CHECK(st == KILN_OK, "%s: reload: %s", label, err.msg);
    if (st == KILN_OK) {
        CHECK(same_model(m, back), "%s: the reloaded model differs at %s", label, where);
        if (m->graph->linked)
            CHECK(back->n_link_errors == m->n_link_errors, "%s: link errors %zu vs %zu", label,
                  back->n_link_errors, m->n_link_errors);
        st = kiln_model_save_buffer(back, &buf2, &len2, &err);
        CHECK(st == KILN_OK && len2 == len && !memcmp(buf, buf2, len),
              "%s: saving the reloaded model gives other bytes (%zu vs %zu)", label, len2, len);
    }
    kiln_buffer_free(buf);
    kiln_buffer_free(buf2);
    kiln_model_free(back);
}

static void test_all_test_models(void)
{
    static const char *const subs[] = {"node", "simple", "pytorch-operator", "pytorch-converted"};
    size_t total = 0;
    for (size_t s = 0; s < sizeof subs / sizeof subs[0]; s++) {
        size_t n;
        char **names = list_cases(subs[s], &n);
        for (size_t i = 0; i < n; i++) {
            char path[4096], label[600];
            case_path(path, sizeof path, subs[s], names[i], "model.onnx");
            kiln_model *m = NULL;
            kiln_err err = {0};
            if (kiln_model_load_file(path, &m, &err)) continue; /* test_onnx_load's concern */
            snprintf(label, sizeof label, "%s/%s", subs[s], names[i]);
            round_trip(m, label);
            kiln_model_free(m);
            total++;
        }
        free_cases(names, n);
    }
    CHECK(total > 1000, "only %zu test models round-tripped", total);
}

static void test_corpus_models(void)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/tests/fuzz/corpus/load", KILN_SOURCE_DIR);
    DIR *d = opendir(dir);
    CHECK(d != NULL, "cannot open %s", dir);
    if (!d) return;
    struct dirent *e;
    size_t n = 0;
    while ((e = readdir(d))) {
        if (!strstr(e->d_name, ".onnx")) continue;
        char path[8192];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        kiln_model *m = NULL;
        kiln_err err = {0};
        if (kiln_model_load_file(path, &m, &err)) continue; /* some seeds are broken on purpose */
        round_trip(m, e->d_name);
        kiln_model_free(m);
        n++;
    }
    closedir(d);
    CHECK(n >= 20, "only %zu corpus models loaded", n);
}

/* ------------------------------------------------------------------ a model built in IR */

static struct kiln_arena *A;

static void *zalloc(size_t n)
{
    void *p = kiln_arena_alloc(A, n);
    if (!p) abort(); /* test scaffolding: the arena only fails on real OOM */
    return p;
}

static struct kiln_tensor mk_tensor(kiln_dtype dt, int rank, const int64_t *dims, const void *data)
{
    struct kiln_tensor t = {.dtype = dt, .rank = rank};
    for (int i = 0; i < rank; i++) t.dims[i] = dims[i];
    size_t n = kiln_tensor_nbytes(&t);
    t.data = zalloc(n ? n : 1);
    if (dt == KILN_DTYPE_STRING) {
        const char *const *s = data;
        for (size_t i = 0; i < kiln_tensor_numel(&t); i++) ((const char **)t.data)[i] = s[i];
    } else if (n) {
        memcpy(t.data, data, n);
    }
    return t;
}

static struct kiln_type tensor_type(kiln_dtype dt, int rank, const int64_t *dims, const char *const *params)
{
    struct kiln_type t = {.kind = KILN_TYPE_TENSOR, .elem = dt, .rank = rank};
    if (rank > 0) {
        t.dims = zalloc((size_t)rank * sizeof *t.dims);
        for (int i = 0; i < rank; i++) {
            t.dims[i].value = dims[i];
            t.dims[i].param = params && params[i] ? params[i] : NULL;
        }
    }
    return t;
}

static struct kiln_type *boxed(struct kiln_type t)
{
    struct kiln_type *p = zalloc(sizeof *p);
    *p = t;
    return p;
}

static struct kiln_sparse_tensor mk_sparse(const char *name)
{
    static const float vals[3] = {1.5f, -2, 7};
    static const int64_t idx[3] = {0, 4, 5};
    struct kiln_sparse_tensor sp = {.name = name, .rank = 2, .dims = {2, 3}};
    sp.values = mk_tensor(KILN_DTYPE_F32, 1, (const int64_t[]){3}, vals);
    sp.indices = mk_tensor(KILN_DTYPE_I64, 1, (const int64_t[]){3}, idx);
    return sp;
}

/* Graph "body": y = Identity(x); used as GRAPH and GRAPHS attribute values. */
static struct kiln_graph *mk_body(struct kiln_model *m, const char *name)
{
    struct kiln_graph *g = zalloc(sizeof *g);
    g->name = name;
    g->doc = "a subgraph";
    g->model = m;
    g->n_nodes = 1;
    g->nodes = zalloc(sizeof *g->nodes);
    g->nodes[0] = (struct kiln_node){
        .name = "id", .op_type = "Identity", .domain = "", .doc = "", .n_in = 1, .n_out = 1};
    g->nodes[0].inputs = zalloc(sizeof(char *));
    g->nodes[0].outputs = zalloc(sizeof(char *));
    g->nodes[0].inputs[0] = "outer";
    g->nodes[0].outputs[0] = "y";
    g->n_outputs = 1;
    g->outputs = zalloc(sizeof *g->outputs);
    g->outputs[0] =
        (struct kiln_value_info){.name = "y", .doc = "", .type = tensor_type(KILN_DTYPE_F32, -1, NULL, NULL)};
    return g;
}

static struct kiln_model *build_rich(void)
{
    struct kiln_model *m = kiln_calloc(1, sizeof *m);
    A = &m->arena;
    m->ir_version = 10;
    m->model_version = 42;
    m->producer_name = "kiln-test";
    m->producer_version = "1.2.3";
    m->domain = "org.kiln.test";
    m->doc = "every field the writer knows";
    m->n_opsets = 2;
    m->opsets = zalloc(2 * sizeof *m->opsets);
    m->opsets[0] = (struct kiln_opset){"", 21};
    m->opsets[1] = (struct kiln_opset){"org.kiln.fn", 1};
    m->n_meta = 2;
    m->meta = zalloc(2 * sizeof *m->meta);
    m->meta[0] = (struct kiln_kv){"author", "kiln"};
    m->meta[1] = (struct kiln_kv){"empty", ""};

    /* a function: out = Mul(a, a) with an attribute reference */
    m->n_functions = 1;
    struct kiln_function *f = m->functions = zalloc(sizeof *f);
    f->name = "Square";
    f->domain = "org.kiln.fn";
    f->overload = "v1";
    f->doc = "squares";
    f->n_in = f->n_out = f->n_attr_names = f->n_nodes = f->n_opsets = 1;
    f->inputs = zalloc(sizeof(char *));
    f->inputs[0] = "a";
    f->outputs = zalloc(sizeof(char *));
    f->outputs[0] = "out";
    f->attr_names = zalloc(sizeof(char *));
    f->attr_names[0] = "alpha";
    f->opsets = zalloc(sizeof *f->opsets);
    f->opsets[0] = (struct kiln_opset){"", 21};
    f->nodes = zalloc(sizeof *f->nodes);
    f->nodes[0] = (struct kiln_node){
        .name = "", .op_type = "LeakyRelu", .domain = "", .doc = "", .n_in = 1, .n_out = 1, .n_attr = 1};
    f->nodes[0].inputs = f->inputs;
    f->nodes[0].outputs = f->outputs;
    f->nodes[0].attrs = zalloc(sizeof(struct kiln_attr));
    f->nodes[0].attrs[0] =
        (struct kiln_attr){.name = "alpha", .doc = "", .ref_attr_name = "alpha", .type = KILN_ATTR_FLOAT};

    struct kiln_graph *g = m->graph = zalloc(sizeof *g);
    g->name = "rich";
    g->doc = "graph doc";
    g->model = m;

    /* inputs: every TypeProto kind */
    static const char *const params[3] = {"N", NULL, NULL};
    g->n_inputs = 6;
    g->inputs = zalloc(6 * sizeof *g->inputs);
    g->inputs[0] = (struct kiln_value_info){
        .name = "outer",
        .doc = "x doc",
        .type = tensor_type(KILN_DTYPE_F32, 3, (const int64_t[]){-1, 3, -1}, params)};
    g->inputs[0].type.denotation = "TENSOR";
    g->inputs[1] = (struct kiln_value_info){
        .name = "seq",
        .doc = "",
        .type = {.kind = KILN_TYPE_SEQUENCE,
                 .rank = -1,
                 .inner = boxed(tensor_type(KILN_DTYPE_I64, 1, (const int64_t[]){4}, NULL))}};
    g->inputs[2] =
        (struct kiln_value_info){.name = "map",
                                 .doc = "",
                                 .type = {.kind = KILN_TYPE_MAP,
                                          .elem = KILN_DTYPE_STRING,
                                          .rank = -1,
                                          .inner = boxed(tensor_type(KILN_DTYPE_F32, -1, NULL, NULL))}};
    g->inputs[3] = (struct kiln_value_info){
        .name = "opt",
        .doc = "",
        .type = {.kind = KILN_TYPE_OPTIONAL,
                 .rank = -1,
                 .inner =
                     boxed((struct kiln_type){.kind = KILN_TYPE_SEQUENCE,
                                              .rank = -1,
                                              .inner = boxed(tensor_type(KILN_DTYPE_F16, 0, NULL, NULL))})}};
    g->inputs[4] = (struct kiln_value_info){
        .name = "sparse", .doc = "", .type = tensor_type(KILN_DTYPE_F32, 2, (const int64_t[]){2, 3}, NULL)};
    g->inputs[4].type.kind = KILN_TYPE_SPARSE_TENSOR;
    g->inputs[5] = (struct kiln_value_info){.name = "untyped", .doc = "", .type = {.rank = -1}};

    /* initializers: sub-byte types with odd counts, strings, empty, doc */
    static const int8_t i4[5] = {-8, -1, 0, 7, 3};
    static const uint8_t u4[3] = {15, 0, 9};
    static const int8_t i2[7] = {-2, -1, 0, 1, 1, -2, 0};
    static const uint8_t u2[5] = {3, 2, 1, 0, 3};
    static const uint8_t f4[3] = {0x1, 0xf, 0x8};
    static const char *const strs[3] = {"", "hello", "wörld"};
    static const float big[300] = {1, 2, 3};
    g->n_inits = 8;
    g->inits = zalloc(8 * sizeof *g->inits);
    g->inits[0] =
        (struct kiln_initializer){"i4", "int4 doc", mk_tensor(KILN_DTYPE_I4, 1, (const int64_t[]){5}, i4)};
    g->inits[1] =
        (struct kiln_initializer){"u4", "", mk_tensor(KILN_DTYPE_U4, 2, (const int64_t[]){1, 3}, u4)};
    g->inits[2] = (struct kiln_initializer){"i2", "", mk_tensor(KILN_DTYPE_I2, 1, (const int64_t[]){7}, i2)};
    g->inits[3] = (struct kiln_initializer){"u2", "", mk_tensor(KILN_DTYPE_U2, 1, (const int64_t[]){5}, u2)};
    g->inits[4] =
        (struct kiln_initializer){"f4", "", mk_tensor(KILN_DTYPE_F4E2M1, 1, (const int64_t[]){3}, f4)};
    g->inits[5] =
        (struct kiln_initializer){"strs", "", mk_tensor(KILN_DTYPE_STRING, 1, (const int64_t[]){3}, strs)};
    g->inits[6] =
        (struct kiln_initializer){"empty", "", mk_tensor(KILN_DTYPE_F32, 2, (const int64_t[]){0, 4}, NULL)};
    g->inits[7] =
        (struct kiln_initializer){"big", "", mk_tensor(KILN_DTYPE_F32, 2, (const int64_t[]){10, 30}, big)};
    g->n_sparse_inits = 1;
    g->sparse_inits = zalloc(sizeof *g->sparse_inits);
    g->sparse_inits[0] = mk_sparse("sp_init");

    /* one node carrying every attribute type */
    static const float fl[3] = {0.5f, -0.0f, 1e30f};
    static const int64_t in[4] = {-1, 0, INT64_MAX, INT64_MIN};
    struct kiln_attr *at = zalloc(14 * sizeof *at);
    at[0] = (struct kiln_attr){.name = "f", .doc = "a float", .type = KILN_ATTR_FLOAT, .f = -2.5f};
    at[1] = (struct kiln_attr){.name = "i", .doc = "", .type = KILN_ATTR_INT, .i = -7};
    at[2] = (struct kiln_attr){.name = "s", .doc = "", .type = KILN_ATTR_STRING, .s = "a\0b", .s_len = 3};
    at[3] = (struct kiln_attr){.name = "t", .doc = "", .type = KILN_ATTR_TENSOR, .t_name = "tv"};
    at[3].t = zalloc(sizeof *at[3].t);
    *at[3].t = mk_tensor(KILN_DTYPE_I4, 1, (const int64_t[]){3}, i4);
    at[4] = (struct kiln_attr){.name = "g", .doc = "", .type = KILN_ATTR_GRAPH, .g = mk_body(m, "g1")};
    at[5] = (struct kiln_attr){
        .name = "floats", .doc = "", .type = KILN_ATTR_FLOATS, .n = 3, .floats = (float *)fl};
    at[6] =
        (struct kiln_attr){.name = "ints", .doc = "", .type = KILN_ATTR_INTS, .n = 4, .ints = (int64_t *)in};
    static const char *const ss[2] = {"x", ""};
    static size_t sl[2] = {1, 0};
    at[7] = (struct kiln_attr){.name = "strings",
                               .doc = "",
                               .type = KILN_ATTR_STRINGS,
                               .n = 2,
                               .strings = (const char **)ss,
                               .string_lens = sl};
    at[8] = (struct kiln_attr){.name = "tensors", .doc = "", .type = KILN_ATTR_TENSORS, .n = 2};
    at[8].tensors = zalloc(2 * sizeof *at[8].tensors);
    at[8].tensors[0] = mk_tensor(KILN_DTYPE_STRING, 1, (const int64_t[]){2}, strs);
    at[8].tensors[1] = mk_tensor(KILN_DTYPE_U2, 0, NULL, u2);
    at[9] = (struct kiln_attr){.name = "graphs", .doc = "", .type = KILN_ATTR_GRAPHS, .n = 2};
    at[9].graphs = zalloc(2 * sizeof *at[9].graphs);
    at[9].graphs[0] = mk_body(m, "g2");
    at[9].graphs[1] = mk_body(m, "g3");
    at[10] = (struct kiln_attr){.name = "sparse", .doc = "", .type = KILN_ATTR_SPARSE_TENSOR};
    at[10].sp = zalloc(sizeof *at[10].sp);
    *at[10].sp = mk_sparse("");
    at[11] = (struct kiln_attr){.name = "sparses", .doc = "", .type = KILN_ATTR_SPARSE_TENSORS, .n = 1};
    at[11].sparses = zalloc(sizeof *at[11].sparses);
    at[11].sparses[0] = mk_sparse("named");
    at[12] = (struct kiln_attr){
        .name = "tp", .doc = "", .type = KILN_ATTR_TYPE_PROTO, .tp = boxed(g->inputs[3].type)};
    at[13] = (struct kiln_attr){.name = "tps", .doc = "", .type = KILN_ATTR_TYPE_PROTOS, .n = 2};
    at[13].types = zalloc(2 * sizeof *at[13].types);
    at[13].types[0] = g->inputs[0].type;
    at[13].types[1] = g->inputs[2].type;

    g->n_nodes = 2;
    g->nodes = zalloc(2 * sizeof *g->nodes);
    /* A call of the function above: an op of a domain kiln does not know must be one, or be
     * declared by a loaded plugin, for the written model to load back (docs/plugins.md). */
    g->nodes[0] = (struct kiln_node){.name = "everything",
                                     .op_type = "Square",
                                     .domain = "org.kiln.fn",
                                     .doc = "node doc",
                                     .n_in = 3,
                                     .n_out = 2,
                                     .n_attr = 14,
                                     .attrs = at};
    g->nodes[0].inputs = zalloc(3 * sizeof(char *));
    g->nodes[0].inputs[0] = "outer";
    g->nodes[0].inputs[1] = "";
    g->nodes[0].inputs[2] = "i4";
    g->nodes[0].outputs = zalloc(2 * sizeof(char *));
    g->nodes[0].outputs[0] = "";
    g->nodes[0].outputs[1] = "mid";
    g->nodes[1] = (struct kiln_node){
        .name = "", .op_type = "Square", .domain = "org.kiln.fn", .doc = "", .n_in = 1, .n_out = 1};
    g->nodes[1].inputs = zalloc(sizeof(char *));
    g->nodes[1].inputs[0] = "mid";
    g->nodes[1].outputs = zalloc(sizeof(char *));
    g->nodes[1].outputs[0] = "z";
    g->n_outputs = 1;
    g->outputs = zalloc(sizeof *g->outputs);
    g->outputs[0] = (struct kiln_value_info){.name = "z",
                                             .doc = "",
                                             .type = tensor_type(KILN_DTYPE_F32, 2, (const int64_t[]){-1, 5},
                                                                 (const char *const[]){"batch", NULL})};
    g->n_value_info = 1;
    g->value_info = zalloc(sizeof *g->value_info);
    g->value_info[0] =
        (struct kiln_value_info){.name = "mid",
                                 .doc = "vi doc",
                                 .type = tensor_type(KILN_DTYPE_F32, 2, (const int64_t[]){-1, -1}, NULL)};
    return m;
}

static void test_rich_model(void)
{
    struct kiln_model *m = build_rich();
    round_trip(m, "rich model");
    /* the sub-byte initializers come back with their values (sign-extended) */
    void *buf;
    size_t len;
    kiln_err err = {0};
    kiln_model *back = NULL;
    if (kiln_model_save_buffer(m, &buf, &len, &err) == KILN_OK) {
        if (kiln_model_load_buffer(buf, len, NULL, &back, &err) == KILN_OK) {
            const int8_t *i4 = back->graph->inits[0].t.data;
            CHECK(i4[0] == -8 && i4[1] == -1 && i4[3] == 7 && i4[4] == 3, "int4 values");
            const char *const *s = back->graph->inits[5].t.data;
            CHECK(!strcmp(s[2], "wörld"), "string initializer");
        }
        kiln_model_free(back);
        kiln_buffer_free(buf);
    }
    kiln_model_free(m);
}

/* ------------------------------------------------------------------ files, external data */

static size_t count_files(const char *dir)
{
    DIR *d = opendir(dir);
    size_t n = 0;
    if (!d) return 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

static void rm_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char p[8192];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static void test_external(void)
{
    char dir[] = "/tmp/kiln_write_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    struct kiln_model *m = build_rich();
    char path[600], data[600];
    snprintf(path, sizeof path, "%s/m.onnx", dir);
    snprintf(data, sizeof data, "%s/m.onnx.data", dir);
    kiln_err err = {0};
    kiln_save_options so = {.external_data_threshold = 100};
    kiln_status st = kiln_model_save(m, path, &so, &err);
    CHECK(st == KILN_OK, "save with external data: %s", err.msg);
    struct stat sb;
    CHECK(stat(data, &sb) == 0, "no external data file %s", data);
    /* "big" (1200 bytes) and the sub-byte/other ones under 100 bytes stay inline */
    CHECK(sb.st_size == 1200, "external data file has %lld bytes; expected 1200", (long long)sb.st_size);
    kiln_model *back = NULL;
    st = kiln_model_load_file(path, &back, &err);
    CHECK(st == KILN_OK, "reload: %s", err.msg);
    if (st == KILN_OK) {
        CHECK(same_model(m, back), "external round trip differs at %s", where);
        CHECK(back->n_ext == 1, "%zu external files mapped", back->n_ext);
        const uint8_t *p = back->graph->inits[7].t.data;
        CHECK(back->n_ext == 1 && p >= back->ext[0].data && p < back->ext[0].data + back->ext[0].size,
              "the big initializer does not point into the data file");
    }
    kiln_model_free(back);
    CHECK(count_files(dir) == 2, "%zu files in the folder; expected model + data", count_files(dir));

    /* all tensors external, with a custom name: offsets aligned */
    so.external_data_threshold = 1;
    so.external_data_name = "weights.bin";
    st = kiln_model_save(m, path, &so, &err);
    CHECK(st == KILN_OK, "save all external: %s", err.msg);
    back = NULL;
    st = kiln_model_load_file(path, &back, &err);
    CHECK(st == KILN_OK, "reload all external: %s", err.msg);
    if (st == KILN_OK) {
        CHECK(same_model(m, back), "all-external round trip differs at %s", where);
        const uint8_t *big = back->graph->inits[7].t.data;
        CHECK(back->n_ext == 1 && (size_t)(big - back->ext[0].data) % 64 == 0,
              "external offset %td is not 64-byte aligned", big - back->ext[0].data);
    }
    kiln_model_free(back);
    snprintf(data, sizeof data, "%s/weights.bin", dir);
    CHECK(stat(data, &sb) == 0, "no weights.bin");

    /* bad names are refused before anything is written */
    size_t before = count_files(dir);
    so.external_data_name = "../escape.bin";
    CHECK(kiln_model_save(m, path, &so, &err) == KILN_E_INVALID_ARG && strstr(err.msg, ".."),
          "'..' in the data name: %s", err.msg);
    so.external_data_name = "/abs.bin";
    CHECK(kiln_model_save(m, path, &so, &err) == KILN_E_INVALID_ARG, "absolute data name");
    CHECK(count_files(dir) == before, "a refused save left files");

    /* a missing folder */
    char bad[700];
    snprintf(bad, sizeof bad, "%s/no/such/dir/m.onnx", dir);
    CHECK(kiln_model_save(m, bad, NULL, &err) == KILN_E_IO && strstr(err.msg, "no/such"),
          "missing folder: %s", err.msg);

    /* out of memory at every allocation: NOMEM, and no temporary file left behind */
    so.external_data_threshold = 100;
    so.external_data_name = NULL;
    char path2[700];
    snprintf(path2, sizeof path2, "%s/oom.onnx", dir);
    before = count_files(dir);
    for (long n = 1;; n++) {
        kiln_alloc_fail_after(n);
        st = kiln_model_save(m, path2, &so, &err);
        long used = kiln_alloc_fail_after(0);
        if (st == KILN_OK) {
            CHECK(used < n, "save succeeded although allocation %ld failed", n);
            break;
        }
        CHECK(st == KILN_E_NOMEM, "allocation %ld failing: %s (%s)", n, kiln_status_name(st), err.msg);
        CHECK(count_files(dir) == before, "allocation %ld failing left %zu files", n,
              count_files(dir) - before);
        if (n > 10000) break;
    }
    CHECK(count_files(dir) == before + 2, "the final save wrote %zu files", count_files(dir) - before);
    for (long n = 1;; n++) {
        void *buf = NULL;
        size_t len = 0;
        kiln_alloc_fail_after(n);
        st = kiln_model_save_buffer(m, &buf, &len, &err);
        long used = kiln_alloc_fail_after(0);
        kiln_buffer_free(buf);
        if (st == KILN_OK) {
            CHECK(used < n, "save_buffer succeeded although allocation %ld failed", n);
            break;
        }
        CHECK(st == KILN_E_NOMEM && buf == NULL, "save_buffer, allocation %ld failing: %s", n, err.msg);
        if (n > 10000) break;
    }
    kiln_model_free(m);
    rm_dir(dir);
}

/* A tensor over 2 GB inline is refused from its dims, without reading its data. */
static void test_too_big(void)
{
    struct kiln_model *m = build_rich();
    struct kiln_tensor *t = &m->graph->inits[7].t;
    t->rank = 1;
    t->dims[0] = (INT64_C(1) << 29) + 1; /* 2 GiB + 4 bytes of float32 */
    void *buf = NULL;
    size_t len = 0;
    kiln_err err = {0};
    kiln_status st = kiln_model_save_buffer(m, &buf, &len, &err);
    CHECK(st == KILN_E_LIMIT && strstr(err.msg, "'big'") && strstr(err.msg, "2 GB"),
          "2 GB tensor inline: %s (%s)", kiln_status_name(st), err.msg);
    CHECK(buf == NULL, "a buffer came back on failure");
    kiln_model_free(m);
}

int main(void)
{
    test_rich_model();
    test_too_big();
    test_external();
    test_corpus_models();
    test_all_test_models();
    return test_summary("test_onnx_write");
}
