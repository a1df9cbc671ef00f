/* test_onnx_load.c: the ONNX model decoder (src/onnx/load.c, tensor_pb.c, pbwire.c).
 *
 * 1. Every ONNX node-test model loads and every test_data_set_*.pb decodes with the kind
 *    its graph input/output declares.
 * 2. Hostile and broken inputs give specific messages: truncated files, non-ONNX files,
 *    short initializers, external data that escapes its folder, is absolute or runs past
 *    the end of its file.
 * 3. External data larger than 2 GiB is mapped, not copied.
 * 4. Truncated and bit-flipped copies of real models return a status without crashing
 *    (run under ASan/UBSan).
 */
#define _GNU_SOURCE /* memmem */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "onnx/onnx.h"
#include "onnx/pbwire.h"
#include "test_support.h"

static kiln_value_kind kind_of(const struct kiln_type *t)
{
    switch (t->kind) {
    case KILN_TYPE_TENSOR: return KILN_VALUE_TENSOR;
    case KILN_TYPE_SEQUENCE: return KILN_VALUE_SEQUENCE;
    case KILN_TYPE_OPTIONAL: return KILN_VALUE_OPTIONAL;
    default: return 0;
    }
}

static bool is_init(const struct kiln_graph *g, const char *name)
{
    for (size_t i = 0; i < g->n_inits; i++)
        if (!strcmp(g->inits[i].name, name)) return true;
    return false;
}

/* Checks that a decoded value agrees with the declared type where both say something. */
static void check_value_type(const char *file, const struct kiln_value *v, const struct kiln_type *t)
{
    if (t->kind == KILN_TYPE_TENSOR && v->kind == KILN_VALUE_TENSOR) {
        CHECK(t->elem == 0 || v->t.dtype == t->elem, "%s: dtype %s, declared %s", file,
              kiln_dtype_name(v->t.dtype), kiln_dtype_name(t->elem));
        if (t->rank >= 0) {
            CHECK(v->t.rank == t->rank, "%s: rank %d, declared %d", file, v->t.rank, t->rank);
            for (int i = 0; i < t->rank && i < v->t.rank; i++)
                CHECK(t->dims[i].value < 0 || t->dims[i].value == v->t.dims[i],
                      "%s: dim %d is %lld, declared %lld", file, i, (long long)v->t.dims[i],
                      (long long)t->dims[i].value);
        }
    }
}


/* ------------------------------------------------------------------ hand-built models */

static void put_sub(struct kiln_buf *b, uint32_t num, struct kiln_buf *sub)
{
    kiln_pb_put_bytes(b, num, sub->data, sub->len);
    kiln_buf_free(sub);
}

static void put_kv(struct kiln_buf *b, uint32_t num, const char *k, const char *v)
{
    struct kiln_buf e = {0};
    pb_put_str(&e, 1, k);
    pb_put_str(&e, 2, v);
    put_sub(b, num, &e);
}

/* A float32 TensorProto named `name` with dims and either raw data (raw != NULL) or
 * external data (location != NULL). `pad` adds a doc_string of that many bytes before the
 * raw data, to move its offset in the file. */
static void put_tensor(struct kiln_buf *b, uint32_t num, const char *name, int rank,
                       const int64_t *dims, const float *raw, size_t n_raw, const char *location,
                       const char *offset, const char *length, size_t pad)
{
    struct kiln_buf t = {0};
    for (int i = 0; i < rank; i++) kiln_pb_put_uint(&t, 1, (uint64_t)dims[i]);
    kiln_pb_put_uint(&t, 2, KILN_DTYPE_F32);
    pb_put_str(&t, 8, name);
    if (pad) {
        char doc[64];
        memset(doc, 'x', pad);
        kiln_pb_put_bytes(&t, 12, doc, pad);
    }
    if (raw) kiln_pb_put_bytes(&t, 9, raw, n_raw * sizeof(float));
    if (location) {
        put_kv(&t, 13, "location", location);
        if (offset) put_kv(&t, 13, "offset", offset);
        if (length) put_kv(&t, 13, "length", length);
        kiln_pb_put_uint(&t, 14, 1);
    }
    put_sub(b, num, &t);
}

/* A model: graph "g" with the given initializer bytes and one Identity node w -> y. */
static void build_model(struct kiln_buf *out, struct kiln_buf *init)
{
    struct kiln_buf g = {0}, node = {0}, opset = {0}, vi = {0}, ty = {0}, tt = {0};
    pb_put_str(&node, 1, "w");
    pb_put_str(&node, 2, "y");
    pb_put_str(&node, 4, "Identity");
    put_sub(&g, 1, &node);
    pb_put_str(&g, 2, "g");
    kiln_buf_append(&g, init->data, init->len);
    kiln_buf_free(init);
    kiln_pb_put_uint(&tt, 1, KILN_DTYPE_F32);
    put_sub(&ty, 1, &tt);
    pb_put_str(&vi, 1, "y");
    put_sub(&vi, 2, &ty);
    put_sub(&g, 12, &vi);
    kiln_pb_put_uint(out, 1, 8);
    pb_put_str(out, 2, "kiln-test");
    put_sub(out, 7, &g);
    pb_put_str(&opset, 1, "ai.onnx");
    kiln_pb_put_uint(&opset, 2, 13);
    put_sub(out, 8, &opset);
}

static bool write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) return false;
    bool ok = fwrite(p, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}

static bool contains(const char *msg, const char *word) { return strstr(msg, word) != NULL; }

static void test_all_node_models(void)
{
    size_t n;
    char **cases = list_cases("node", &n);
    CHECK(n >= 1000, "expected the ONNX node tests under %s/node, found %zu cases", onnx_tests_dir(),
          n);
    size_t models = 0, values = 0;
    for (size_t i = 0; i < n; i++) {
        char path[4096];
        case_path(path, sizeof path, "node", cases[i], "model.onnx");
        kiln_model *m = NULL;
        kiln_err err = {0};
        kiln_status st = kiln_model_load_file(path, &m, &err);
        CHECK(st == KILN_OK, "%s: %s", cases[i], err.msg);
        if (st) {
            free(cases[i]);
            continue;
        }
        models++;
        const struct kiln_graph *g = m->graph;
        /* Graph inputs that are not initializers, in order: input_N.pb binds to the Nth. */
        const struct kiln_value_info *ins[256];
        size_t n_ins = 0;
        for (size_t k = 0; k < g->n_inputs && n_ins < 256; k++)
            if (!is_init(g, g->inputs[k].name)) ins[n_ins++] = &g->inputs[k];
        for (int set = 0;; set++) {
            char dir[4200];
            snprintf(dir, sizeof dir, "%s/node/%s/test_data_set_%d", onnx_tests_dir(), cases[i],
                     set);
            struct stat sb;
            if (stat(dir, &sb) != 0) break;
            for (int io = 0; io < 2; io++) {
                for (size_t k = 0;; k++) {
                    char file[4400];
                    snprintf(file, sizeof file, "%s/%s_%zu.pb", dir, io ? "output" : "input", k);
                    if (stat(file, &sb) != 0) break;
                    const struct kiln_value_info *vi =
                        io ? (k < g->n_outputs ? &g->outputs[k] : NULL)
                           : (k < n_ins ? ins[k] : NULL);
                    CHECK(vi != NULL, "%s: no graph %s for %s", cases[i], io ? "output" : "input",
                          file);
                    kiln_value *v = NULL;
                    st = kiln_value_read_file(file, vi ? kind_of(&vi->type) : 0, &v, &err);
                    CHECK(st == KILN_OK, "%s", err.msg);
                    if (st == KILN_OK) {
                        values++;
                        if (vi) check_value_type(file, v, &vi->type);
                    }
                    kiln_value_free(v);
                }
            }
        }
        kiln_model_free(m);
        free(cases[i]);
    }
    free(cases);
    printf("node models loaded: %zu/%zu, values decoded: %zu\n", models, n, values);
}


static kiln_model *load_buf(struct kiln_buf *b, const char *dir, kiln_status *st, kiln_err *err)
{
    kiln_model *m = NULL;
    *st = kiln_model_load_buffer(b->data, b->len, dir, &m, err);
    return m;
}

static void test_hand_model(void)
{
    static const float w[6] = {1.5f, -2, 3, 4.25f, 5, 6};
    const int64_t dims[2] = {2, 3};
    struct kiln_buf init = {0}, model = {0};
    put_tensor(&init, 5, "w", 2, dims, w, 6, NULL, NULL, NULL, 0);
    build_model(&model, &init);
    kiln_status st;
    kiln_err err = {0};
    kiln_model *m = load_buf(&model, NULL, &st, &err);
    CHECK(st == KILN_OK, "%s", err.msg);
    if (m) {
        CHECK(m->ir_version == 8, "ir_version %lld", (long long)m->ir_version);
        CHECK(!strcmp(m->producer_name, "kiln-test"), "producer '%s'", m->producer_name);
        CHECK(m->n_opsets == 1 && !strcmp(m->opsets[0].domain, "") && m->opsets[0].version == 13,
              "opset import 'ai.onnx' should normalise to ''");
        const struct kiln_graph *g = m->graph;
        CHECK(!strcmp(g->name, "g") && g->n_nodes == 1 && !strcmp(g->nodes[0].op_type, "Identity"),
              "graph");
        CHECK(g->n_inits == 1 && g->inits[0].t.rank == 2 && g->inits[0].t.dims[1] == 3 &&
                  g->inits[0].t.flags == 0,
              "initializer shape/flags");
        CHECK(!memcmp(g->inits[0].t.data, w, sizeof w), "initializer values");
        CHECK(g->n_outputs == 1 && g->outputs[0].type.kind == KILN_TYPE_TENSOR &&
                  g->outputs[0].type.rank == -1,
              "output without a shape has rank -1");
        CHECK(g->model == m && g->parent == NULL, "graph back pointers");
    }
    kiln_model_free(m);
    kiln_buf_free(&model);
}

/* Raw data aligned to 4 bytes in the buffer is borrowed; misaligned data is copied. */
/* Functions, metadata, attributes without `type` (old models), every TypeProto kind. */
static void test_rich_model(void)
{
    struct kiln_buf model = {0}, g = {0}, node = {0}, a = {0}, fn = {0}, fnode = {0}, op = {0};
    /* node with attributes: f (no type), ints packed (no type), strings, tensor */
    /* A call of the model-local function below: an op of a domain kiln does not know must be
     * one, or be declared by a loaded plugin, for the model to load (docs/plugins.md). */
    pb_put_str(&node, 4, "MyFn");
    pb_put_str(&node, 7, "com.example");
    pb_put_str(&node, 1, "x");
    pb_put_str(&node, 1, "");
    pb_put_str(&node, 2, "y");
    pb_put_str(&a, 1, "alpha");
    kiln_pb_put_key(&a, 2, PB_I32);
    float alpha = 0.25f;
    kiln_buf_append(&a, &alpha, 4);
    put_sub(&node, 5, &a);
    pb_put_str(&a, 1, "axes");
    struct kiln_buf packed = {0};
    kiln_pb_put_varint(&packed, 1);
    kiln_pb_put_varint(&packed, (uint64_t)-2);
    put_sub(&a, 8, &packed);
    kiln_pb_put_uint(&a, 8, 5); /* one more, unpacked */
    put_sub(&node, 5, &a);
    pb_put_str(&a, 1, "modes");
    pb_put_str(&a, 9, "up");
    kiln_pb_put_bytes(&a, 9, "a\0b", 3);
    kiln_pb_put_uint(&a, 20, KILN_ATTR_STRINGS);
    put_sub(&node, 5, &a);
    pb_put_str(&a, 1, "ref");
    pb_put_str(&a, 21, "outer_alpha");
    kiln_pb_put_uint(&a, 20, KILN_ATTR_FLOAT);
    put_sub(&node, 5, &a);
    put_sub(&g, 1, &node);
    /* inputs typed seq(float[N]), optional(int64[]) and map(string -> float) */
    static const int kinds[3] = {4, 9, 5};
    for (int i = 0; i < 3; i++) {
        struct kiln_buf vi = {0}, ty = {0}, inner = {0}, it = {0}, tt = {0}, shape = {0}, dim = {0};
        kiln_pb_put_uint(&tt, 1, i == 1 ? KILN_DTYPE_I64 : KILN_DTYPE_F32);
        if (i == 0) pb_put_str(&dim, 2, "N");
        if (i != 2) {
            if (i == 0) put_sub(&shape, 1, &dim);
            put_sub(&tt, 2, &shape);
        }
        put_sub(&it, 1, &tt);
        if (i == 2) {
            kiln_pb_put_uint(&inner, 1, KILN_DTYPE_STRING);
            put_sub(&inner, 2, &it);
        } else {
            put_sub(&inner, 1, &it);
        }
        put_sub(&ty, (uint32_t)kinds[i], &inner);
        pb_put_str(&ty, 6, "denoted");
        pb_put_str(&vi, 1, i == 0 ? "x" : i == 1 ? "o" : "mp");
        put_sub(&vi, 2, &ty);
        kiln_buf_free(&dim);
        kiln_buf_free(&shape);
        put_sub(&g, 11, &vi);
    }
    put_sub(&model, 7, &g);
    kiln_pb_put_uint(&model, 5, 42);
    pb_put_str(&model, 6, "a doc");
    put_kv(&model, 14, "author", "kiln");
    /* a local function */
    pb_put_str(&fn, 1, "MyFn");
    pb_put_str(&fn, 10, "com.example");
    pb_put_str(&fn, 4, "a");
    pb_put_str(&fn, 5, "b");
    pb_put_str(&fn, 6, "scale");
    pb_put_str(&fnode, 4, "Relu");
    pb_put_str(&fnode, 1, "a");
    pb_put_str(&fnode, 2, "b");
    put_sub(&fn, 7, &fnode);
    pb_put_str(&op, 1, "");
    kiln_pb_put_uint(&op, 2, 18);
    put_sub(&fn, 9, &op);
    put_sub(&model, 25, &fn);
    pb_put_str(&op, 1, "com.example");
    kiln_pb_put_uint(&op, 2, 1);
    put_sub(&model, 8, &op);

    kiln_err err = {0};
    kiln_status st;
    kiln_model *m = load_buf(&model, NULL, &st, &err);
    CHECK(st == KILN_OK, "%s", err.msg);
    if (m) {
        CHECK(m->model_version == 42 && !strcmp(m->doc, "a doc"), "model fields");
        CHECK(m->n_meta == 1 && !strcmp(m->meta[0].key, "author") &&
                  !strcmp(m->meta[0].value, "kiln"), "metadata_props");
        CHECK(m->n_functions == 1, "functions");
        if (m->n_functions) {
            const struct kiln_function *f = &m->functions[0];
            CHECK(!strcmp(f->name, "MyFn") && !strcmp(f->domain, "com.example") && f->n_in == 1 &&
                      f->n_out == 1 && f->n_attr_names == 1 && !strcmp(f->attr_names[0], "scale") &&
                      f->n_nodes == 1 && !strcmp(f->nodes[0].op_type, "Relu") &&
                      f->n_opsets == 1 && f->opsets[0].version == 18,
                  "function body");
        }
        const struct kiln_node *n = &m->graph->nodes[0];
        CHECK(!strcmp(n->domain, "com.example") && n->n_in == 2 && !strcmp(n->inputs[1], ""),
              "node inputs");
        CHECK(n->n_attr == 4, "attrs");
        if (n->n_attr == 4) {
            CHECK(n->attrs[0].type == KILN_ATTR_FLOAT && n->attrs[0].f == 0.25f, "implied FLOAT");
            CHECK(n->attrs[1].type == KILN_ATTR_INTS && n->attrs[1].n == 3 &&
                      n->attrs[1].ints[0] == 1 && n->attrs[1].ints[1] == -2 &&
                      n->attrs[1].ints[2] == 5, "implied INTS, packed + unpacked");
            CHECK(n->attrs[2].type == KILN_ATTR_STRINGS && n->attrs[2].n == 2 &&
                      !strcmp(n->attrs[2].strings[0], "up") && n->attrs[2].string_lens[1] == 3,
                  "STRINGS with lengths");
            CHECK(n->attrs[3].ref_attr_name && !strcmp(n->attrs[3].ref_attr_name, "outer_alpha"),
                  "ref_attr_name");
            CHECK(n->attrs[0].ref_attr_name == NULL, "no ref_attr_name");
        }
        const struct kiln_graph *g2 = m->graph;
        CHECK(g2->n_inputs == 3, "inputs");
        if (g2->n_inputs == 3) {
            const struct kiln_type *t0 = &g2->inputs[0].type, *t1 = &g2->inputs[1].type,
                                   *t2 = &g2->inputs[2].type;
            CHECK(t0->kind == KILN_TYPE_SEQUENCE && t0->inner &&
                      t0->inner->kind == KILN_TYPE_TENSOR && t0->inner->rank == 1 &&
                      t0->inner->dims[0].value == -1 && !strcmp(t0->inner->dims[0].param, "N") &&
                      t0->denotation && !strcmp(t0->denotation, "denoted"),
                  "seq(float[N])");
            CHECK(t1->kind == KILN_TYPE_OPTIONAL && t1->inner && t1->inner->elem == KILN_DTYPE_I64 &&
                      t1->inner->rank == 0, "optional(int64[])");
            CHECK(t2->kind == KILN_TYPE_MAP && t2->elem == KILN_DTYPE_STRING && t2->inner &&
                      t2->inner->elem == KILN_DTYPE_F32 && t2->inner->rank == -1,
                  "map(string, float)");
        }
    }
    kiln_model_free(m);
    kiln_buf_free(&model);
}

static void test_zero_copy(void)
{
    static const float w[4] = {1.0f / 3, 2.0f / 3, -7.0f / 9, 11.0f / 13};
    int borrowed = 0, copied = 0;
    for (size_t pad = 1; pad <= 4; pad++) {
        const int64_t dims[1] = {4};
        struct kiln_buf init = {0}, model = {0};
        put_tensor(&init, 5, "w", 1, dims, w, 4, NULL, NULL, NULL, pad);
        build_model(&model, &init);
        const uint8_t *at = memmem(model.data, model.len, w, sizeof w);
        size_t off = (size_t)(at - model.data);
        kiln_status st;
        kiln_err err = {0};
        kiln_model *m = load_buf(&model, NULL, &st, &err);
        CHECK(st == KILN_OK, "%s", err.msg);
        if (m) {
            const uint8_t *d = m->graph->inits[0].t.data;
            bool inside = d >= m->map.data && d < m->map.data + m->map.size;
            /* load_buffer copies into 16-byte aligned memory: alignment is off % 4 */
            CHECK(inside == (off % 4 == 0), "pad %zu: offset %zu, borrowed %d", pad, off, inside);
            if (inside) CHECK(d == m->map.data + off, "borrowed pointer is the raw_data");
            CHECK(!memcmp(d, w, sizeof w), "values");
            borrowed += inside;
            copied += !inside;
        }
        kiln_model_free(m);
        kiln_buf_free(&model);
    }
    CHECK(borrowed == 1 && copied == 3, "borrowed %d copied %d", borrowed, copied);
}

static void expect_fail(const char *what, kiln_status st, kiln_status want, const kiln_err *err,
                        const char *w1, const char *w2)
{
    CHECK(st == want, "%s: status %s, expected %s (%s)", what, kiln_status_name(st),
          kiln_status_name(want), err->msg);
    CHECK(contains(err->msg, w1) && (!w2 || contains(err->msg, w2)),
          "%s: message '%s' lacks '%s'/'%s'", what, err->msg, w1, w2 ? w2 : "");
    if (getenv("KILN_TEST_VERBOSE")) printf("%-18s %s\n", what, err->msg);
}

static void test_bad_files(void)
{
    char path[4096];
    case_path(path, sizeof path, "node", "test_abs", "model.onnx");
    struct kiln_mapping map;
    kiln_err err = {0};
    kiln_model *m = NULL;
    kiln_status st = kiln_map_file(path, &map, &err);
    CHECK(st == KILN_OK, "%s", err.msg);
    if (st) return;

    /* Truncated: a file cut in half, through the file API so the path is named. */
    char tmp[] = "/tmp/kiln_onnx_trunc_XXXXXX";
    int fd = mkstemp(tmp);
    CHECK(fd >= 0, "mkstemp");
    CHECK(write(fd, map.data, map.size / 2) == (ssize_t)(map.size / 2), "write");
    close(fd);
    st = kiln_model_load_file(tmp, &m, &err);
    expect_fail("truncated", st, KILN_E_INVALID_MODEL, &err, "past the end", tmp);
    CHECK(m == NULL, "no model on failure");
    unlink(tmp);

    /* Every prefix of a small model fails cleanly (or, at a field boundary, loads). */
    for (size_t n = 0; n < map.size; n++) {
        st = kiln_model_load_buffer(map.data, n, NULL, &m, &err);
        CHECK(st == KILN_OK || err.msg[0], "prefix %zu: failure without a message", n);
        kiln_model_free(m);
    }
    kiln_unmap(&map);

    static const char png[] = "\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
    st = kiln_model_load_buffer(png, sizeof png - 1, NULL, &m, &err);
    expect_fail("png", st, KILN_E_INVALID_MODEL, &err, "PNG", "not an ONNX model");
    static const char text[] = "hello, this is a text file and certainly not a model\n";
    st = kiln_model_load_buffer(text, sizeof text - 1, NULL, &m, &err);
    expect_fail("text", st, KILN_E_INVALID_MODEL, &err, "not an ONNX model", "ModelProto");
    st = kiln_model_load_buffer("", 0, NULL, &m, &err);
    expect_fail("empty", st, KILN_E_INVALID_MODEL, &err, "empty", NULL);
    st = kiln_model_load_file("/nonexistent/kiln/model.onnx", &m, &err);
    expect_fail("missing", st, KILN_E_IO, &err, "/nonexistent/kiln/model.onnx", "No such file");

    /* An initializer whose data is shorter than its dims. */
    static const float w[12] = {0};
    const int64_t dims[2] = {4, 4};
    struct kiln_buf init = {0}, model = {0};
    put_tensor(&init, 5, "w", 2, dims, w, 12, NULL, NULL, NULL, 0);
    build_model(&model, &init);
    m = load_buf(&model, NULL, &st, &err);
    expect_fail("short initializer", st, KILN_E_INVALID_MODEL, &err,
                "initializer 'w' has 12 float32 values; its dims [4,4] need 16",
                "ModelProto.graph.initializer[0]");
    kiln_buf_free(&model);

    /* A dims count past KILN_MAX_RANK and an element count past KILN_MAX_NUMEL. */
    const int64_t many[17] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    put_tensor(&init, 5, "w", 17, many, w, 1, NULL, NULL, NULL, 0);
    build_model(&model, &init);
    m = load_buf(&model, NULL, &st, &err);
    expect_fail("rank", st, KILN_E_LIMIT, &err, "17 dims", NULL);
    kiln_buf_free(&model);
    const int64_t huge[3] = {1 << 20, 1 << 20, 1 << 20};
    put_tensor(&init, 5, "w", 3, huge, w, 1, NULL, NULL, NULL, 0);
    build_model(&model, &init);
    m = load_buf(&model, NULL, &st, &err);
    expect_fail("numel", st, KILN_E_LIMIT, &err, "2^40", NULL);
    kiln_buf_free(&model);
}

/* Nodes nested through "then_branch" attributes, `levels` deep. */
static void nested_graph(struct kiln_buf *g, int levels)
{
    pb_put_str(g, 2, "g");
    if (!levels) return;
    struct kiln_buf node = {0}, attr = {0}, sub = {0};
    nested_graph(&sub, levels - 1);
    pb_put_str(&attr, 1, "then_branch");
    put_sub(&attr, 6, &sub);
    kiln_pb_put_uint(&attr, 20, KILN_ATTR_GRAPH);
    pb_put_str(&node, 4, "If");
    put_sub(&node, 5, &attr);
    put_sub(g, 1, &node);
}

static void test_wire_errors(void)
{
    kiln_err err = {0};
    kiln_model *m = NULL;
    kiln_status st;
    /* field 1 varint with 11 bytes */
    static const uint8_t long_varint[] = {0x08, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
                                          0x80, 0x80, 0x80, 0x80, 0x01};
    st = kiln_model_load_buffer(long_varint, sizeof long_varint, NULL, &m, &err);
    expect_fail("long varint", st, KILN_E_INVALID_MODEL, &err, "longer than 10 bytes", "field 1");
    static const uint8_t group[] = {0x0b, 0x0c}; /* field 1, wire type 3 */
    st = kiln_model_load_buffer(group, sizeof group, NULL, &m, &err);
    expect_fail("wire type", st, KILN_E_INVALID_MODEL, &err, "wire type 3", NULL);
    static const uint8_t zero_field[] = {0x00, 0x01};
    st = kiln_model_load_buffer(zero_field, sizeof zero_field, NULL, &m, &err);
    expect_fail("field 0", st, KILN_E_INVALID_MODEL, &err, "field number 0", NULL);

    /* A node attribute whose length runs past its graph: path names node and attribute. */
    struct kiln_buf model = {0}, g = {0}, node = {0};
    pb_put_str(&node, 4, "Relu");
    kiln_pb_put_key(&node, 5, PB_LEN);
    kiln_pb_put_varint(&node, 99);
    kiln_buf_append(&node, "\x0a\x01x", 3);
    put_sub(&g, 1, &node);
    put_sub(&model, 7, &g);
    st = kiln_model_load_buffer(model.data, model.len, NULL, &m, &err);
    expect_fail("attr length", st, KILN_E_INVALID_MODEL, &err,
                "ModelProto.graph.node[0] (NodeProto field 5): length 99 runs past the end", NULL);
    kiln_buf_free(&model);

    /* Nesting: 30 levels of If take 90 message levels, over the limit of 64. */
    nested_graph(&g, 30);
    put_sub(&model, 7, &g);
    st = kiln_model_load_buffer(model.data, model.len, NULL, &m, &err);
    expect_fail("depth", st, KILN_E_LIMIT, &err, "nest deeper than 64", NULL);
    kiln_buf_free(&model);
    /* ... and 15 levels are fine, with parent links. */
    nested_graph(&g, 15);
    put_sub(&model, 7, &g);
    st = kiln_model_load_buffer(model.data, model.len, NULL, &m, &err);
    CHECK(st == KILN_OK, "15 levels: %s", err.msg);
    if (m) {
        const struct kiln_graph *sub = m->graph->nodes[0].attrs[0].g;
        CHECK(sub && sub->parent == m->graph && sub->model == m, "subgraph parent/model");
        CHECK(m->graph->nodes[0].attrs[0].type == KILN_ATTR_GRAPH, "attr type");
    }
    kiln_model_free(m);
    kiln_buf_free(&model);

    /* Negative dim_value in a declared shape. */
    struct kiln_buf vi = {0}, ty = {0}, tt = {0}, shape = {0}, dim = {0};
    kiln_pb_put_uint(&dim, 1, (uint64_t)-3);
    put_sub(&shape, 1, &dim);
    kiln_pb_put_uint(&tt, 1, 1);
    put_sub(&tt, 2, &shape);
    put_sub(&ty, 1, &tt);
    pb_put_str(&vi, 1, "x");
    put_sub(&vi, 2, &ty);
    put_sub(&g, 11, &vi);
    put_sub(&model, 7, &g);
    st = kiln_model_load_buffer(model.data, model.len, NULL, &m, &err);
    expect_fail("neg dim", st, KILN_E_INVALID_MODEL, &err, "dim_value -3 is negative",
                "ModelProto.graph.input[0].type.tensor_type.shape.dim[0]");
    kiln_buf_free(&model);
}

/* A model in dir/model.onnx whose initializer "w" (float32, dims) lives in external data. */
static kiln_status ext_model(const char *dir, const char *location, const char *offset,
                             const char *length, int rank, const int64_t *dims, kiln_model **m,
                             kiln_err *err)
{
    char path[4096];
    struct kiln_buf init = {0}, model = {0};
    put_tensor(&init, 5, "w", rank, dims, NULL, 0, location, offset, length, 0);
    build_model(&model, &init);
    snprintf(path, sizeof path, "%s/model.onnx", dir);
    CHECK(write_file(path, model.data, model.len), "write %s", path);
    kiln_buf_free(&model);
    return kiln_model_load_file(path, m, err);
}

static void test_external(void)
{
    char root[] = "/tmp/kiln_onnx_ext_XXXXXX";
    CHECK(mkdtemp(root) != NULL, "mkdtemp");
    char dir[4200], p[4400], outside[4400];
    snprintf(dir, sizeof dir, "%s/model", root);
    mkdir(dir, 0755);
    float vals[16];
    for (int i = 0; i < 16; i++) vals[i] = (float)i * 0.5f;
    snprintf(p, sizeof p, "%s/data.bin", dir);
    CHECK(write_file(p, vals, sizeof vals), "data.bin");
    snprintf(outside, sizeof outside, "%s/secret.bin", root);
    CHECK(write_file(outside, vals, sizeof vals), "secret.bin");
    snprintf(p, sizeof p, "%s/link.bin", dir);
    CHECK(symlink(outside, p) == 0, "symlink");

    kiln_model *m = NULL;
    kiln_err err = {0};
    const int64_t d4[1] = {4}, d16[1] = {16};
    kiln_status st = ext_model(dir, "data.bin", "16", "16", 1, d4, &m, &err);
    CHECK(st == KILN_OK, "%s", err.msg);
    if (m) {
        const struct kiln_tensor *t = &m->graph->inits[0].t;
        CHECK(!memcmp(t->data, vals + 4, 16), "external values at offset 16");
        CHECK(m->n_ext == 1 && (const uint8_t *)t->data == m->ext[0].data + 16,
              "external data is borrowed from the mapping");
    }
    kiln_model_free(m);
    st = ext_model(dir, "/etc/passwd", NULL, NULL, 1, d4, &m, &err);
    expect_fail("absolute", st, KILN_E_INVALID_MODEL, &err, "absolute", "initializer 'w'");
    st = ext_model(dir, "../secret.bin", NULL, NULL, 1, d4, &m, &err);
    expect_fail("dotdot", st, KILN_E_INVALID_MODEL, &err, "escapes", "../secret.bin");
    st = ext_model(dir, "sub/../../secret.bin", NULL, NULL, 1, d4, &m, &err);
    expect_fail("dotdot inner", st, KILN_E_INVALID_MODEL, &err, "escapes", NULL);
    st = ext_model(dir, "link.bin", NULL, NULL, 1, d4, &m, &err);
    expect_fail("symlink out", st, KILN_E_INVALID_MODEL, &err, "outside the model's folder",
                "link.bin");
    st = ext_model(dir, "data.bin", "100", NULL, 1, d4, &m, &err);
    expect_fail("offset past end", st, KILN_E_INVALID_MODEL, &err, "offset 100 is past the end",
                "data.bin");
    st = ext_model(dir, "data.bin", "32", NULL, 1, d16, &m, &err);
    expect_fail("runs past end", st, KILN_E_INVALID_MODEL, &err, "runs past the end", "data.bin");
    st = ext_model(dir, "data.bin", "0", "12", 1, d4, &m, &err);
    expect_fail("length mismatch", st, KILN_E_INVALID_MODEL, &err, "length 12", "16 bytes");
    st = ext_model(dir, "nothere.bin", NULL, NULL, 1, d4, &m, &err);
    expect_fail("missing file", st, KILN_E_IO, &err, "nothere.bin", "initializer 'w'");
    st = ext_model(dir, "data.bin", "x1", NULL, 1, d4, &m, &err);
    expect_fail("bad offset", st, KILN_E_INVALID_MODEL, &err, "offset 'x1' is not a number", NULL);

    /* From memory without a folder, external data is refused. */
    struct kiln_buf init = {0}, model = {0};
    put_tensor(&init, 5, "w", 1, d4, NULL, 0, "data.bin", NULL, NULL, 0);
    build_model(&model, &init);
    st = kiln_model_load_buffer(model.data, model.len, NULL, &m, &err);
    expect_fail("no dir", st, KILN_E_INVALID_MODEL, &err, "no folder", NULL);
    /* ... and with one it loads. */
    st = kiln_model_load_buffer(model.data, model.len, dir, &m, &err);
    CHECK(st == KILN_OK, "load_buffer with dir: %s", err.msg);
    kiln_model_free(m);
    kiln_buf_free(&model);

    snprintf(p, sizeof p, "%s/link.bin", dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/data.bin", dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/model.onnx", dir);
    unlink(p);
    unlink(outside);
    rmdir(dir);
    rmdir(root);
}

/* External data over 2 GiB (a sparse file): mapped, not copied. */
static void test_external_over_2gb(void)
{
    char dir[] = "/tmp/kiln_onnx_big_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    char p[4096];
    snprintf(p, sizeof p, "%s/weights.bin", dir);
    const int64_t n = 600000000; /* 2.4e9 bytes */
    int fd = open(p, O_CREAT | O_WRONLY | O_TRUNC, 0644);
    CHECK(fd >= 0 && ftruncate(fd, (off_t)(n * 4)) == 0, "ftruncate");
    const int64_t where[4] = {0, 1, 123456789, n - 1};
    for (int i = 0; i < 4; i++) {
        float v = (float)(i + 1) * 1.25f;
        CHECK(pwrite(fd, &v, 4, (off_t)(where[i] * 4)) == 4, "pwrite");
    }
    close(fd);
    kiln_model *m = NULL;
    kiln_err err = {0};
    const int64_t dims[1] = {n};
    kiln_status st = ext_model(dir, "weights.bin", "0", NULL, 1, dims, &m, &err);
    CHECK(st == KILN_OK, "%s", err.msg);
    if (m) {
        const struct kiln_tensor *t = &m->graph->inits[0].t;
        const float *f = t->data;
        CHECK(t->dims[0] == n, "dims");
        CHECK(m->n_ext == 1 && m->ext[0].mapped && m->ext[0].size == (size_t)n * 4, "mapping");
        CHECK((const uint8_t *)f == m->ext[0].data, "data points into the mapping (no copy)");
        for (int i = 0; i < 4; i++)
            CHECK(f[where[i]] == (float)(i + 1) * 1.25f, "value at %lld", (long long)where[i]);
        CHECK(f[500000000] == 0.0f, "a hole reads as zero");
    }
    kiln_model_free(m);
    unlink(p);
    snprintf(p, sizeof p, "%s/model.onnx", dir);
    unlink(p);
    rmdir(dir);
}

/* Truncations of every node model and bit flips of a few: a status, never a crash. */
static void test_mutations(void)
{
    size_t n;
    char **cases = list_cases("node", &n);
    rng_seed(0x9e3779b97f4a7c15u);
    size_t ok = 0, failed = 0;
    for (size_t i = 0; i < n; i++) {
        char path[4096];
        case_path(path, sizeof path, "node", cases[i], "model.onnx");
        struct kiln_mapping map;
        kiln_err err = {0};
        if (kiln_map_file(path, &map, &err) == KILN_OK && map.size > 1) {
            for (int k = 0; k < 3; k++) {
                size_t cut = (size_t)(rng_u64() % map.size);
                kiln_model *m = NULL;
                kiln_status st = kiln_model_load_buffer(map.data, cut, NULL, &m, &err);
                if (st) CHECK(err.msg[0], "%s cut at %zu: failure without a message", cases[i], cut);
                st ? failed++ : ok++;
                kiln_model_free(m);
            }
        }
        kiln_unmap(&map);
        free(cases[i]);
    }
    free(cases);
    static const char *const flip_models[] = {"test_abs", "test_if", "test_loop11",
                                              "test_sequence_map_add_2_sequences",
                                              "test_constant", "test_optional_has_element_empty_optional_input"};
    for (size_t k = 0; k < sizeof flip_models / sizeof flip_models[0]; k++) {
        char path[4096];
        case_path(path, sizeof path, "node", flip_models[k], "model.onnx");
        struct kiln_mapping map;
        kiln_err err = {0};
        if (kiln_map_file(path, &map, &err) != KILN_OK) {
            CHECK(0, "%s", err.msg);
            continue;
        }
        uint8_t *copy = malloc(map.size);
        for (int it = 0; it < 200; it++) {
            memcpy(copy, map.data, map.size);
            int flips = 1 + (int)(rng_u64() % 4);
            for (int j = 0; j < flips; j++) {
                size_t pos = (size_t)(rng_u64() % map.size);
                if (rng_u64() % 2) copy[pos] ^= (uint8_t)(1u << (rng_u64() % 8));
                else copy[pos] = (uint8_t)rng_u64();
            }
            kiln_model *m = NULL;
            kiln_status st = kiln_model_load_buffer(copy, map.size, NULL, &m, &err);
            if (st) CHECK(err.msg[0], "%s mutation %d: failure without a message", flip_models[k], it);
            st ? failed++ : ok++;
            kiln_model_free(m);
        }
        free(copy);
        kiln_unmap(&map);
    }
    printf("mutations: %zu loaded, %zu refused\n", ok, failed);
    CHECK(failed > 0, "some mutations must be refused");
}

/* Out of memory at every allocation of a load: a clean KILN_E_NOMEM (LeakSanitizer checks
 * that nothing leaks), then success once no allocation fails. */
static void test_oom(void)
{
    static const char *const files[] = {
        "node/test_if/model.onnx", "node/test_loop11/model.onnx",
        "node/test_sequence_map_add_2_sequences/model.onnx",
        "node/test_sequence_map_add_2_sequences/test_data_set_0/input_0.pb",
        "node/test_optional_get_element_optional_sequence/test_data_set_0/input_0.pb",
        "node/test_strnormalizer_export_monday_casesensintive_lower/test_data_set_0/input_0.pb",
    };
    for (size_t k = 0; k < sizeof files / sizeof files[0]; k++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", onnx_tests_dir(), files[k]);
        bool model = strstr(path, "model.onnx") != NULL;
        for (long n = 1;; n++) {
            kiln_err err = {0};
            kiln_model *m = NULL;
            kiln_value *v = NULL;
            kiln_alloc_fail_after(n);
            kiln_status st = model ? kiln_model_load_file(path, &m, &err)
                                   : kiln_value_read_file(path, 0, &v, &err);
            long used = kiln_alloc_fail_after(0);
            kiln_model_free(m);
            kiln_value_free(v);
            if (st == KILN_OK) {
                CHECK(used < n, "%s: succeeded although allocation %ld failed", files[k], n);
                break;
            }
            CHECK(st == KILN_E_NOMEM, "%s, allocation %ld failing: %s (%s)", files[k], n,
                  kiln_status_name(st), err.msg);
            if (n > 100000) break;
        }
    }
}

int main(void)
{
    test_hand_model();
    test_rich_model();
    test_zero_copy();
    test_bad_files();
    test_wire_errors();
    test_external();
    test_external_over_2gb();
    test_mutations();
    test_oom();
    test_all_node_models();
    return test_summary("test_onnx_load");
}
