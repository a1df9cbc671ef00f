/* test_opt_layout.c: the optimizer's layout level (src/opt/pass_layout.c, layout.h;
 * docs/optimizer.md, "Layout").
 *
 * Models are written in test_opt_extended.c's small text form (copied below), encoded as
 * ModelProto bytes and loaded. Checked:
 *   - a small CNN (Conv+Relu, MaxPool, Conv, residual Add, Relu, GlobalAveragePool, Flatten,
 *     Gemm) gets one blocked region ending at Flatten, with its two conversions (the input
 *     image in, the pooled vector out), with and without kiln's fused ops;
 *   - a region whose convolutions are too narrow stays plain; channel counts that pad badly
 *     give channels-last, unless depthwise; a Concat of 8 + 24 channels allows block 8 only;
 *   - a transformer-like graph (MatMul, Transpose, Softmax, a mask Add) gets no marks;
 *   - the ONNX written after level layout is byte-identical to the one after extended;
 *   - a relink (another optimizer run) drops the marks;
 *   - every allocation failing in turn leaves the model as it was, without marks.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "ir/ir.h"
#include "kiln.h"
#include "opt/layout.h"
#include "test_support.h"

/* ------------------------------------------------------------------ protobuf bytes */

struct buf {
    uint8_t *p;
    size_t len, cap;
};

static void put(struct buf *b, const void *src, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n) cap *= 2;
        uint8_t *q = realloc(b->p, cap);
        if (!q) {
            printf("FAIL: out of memory\n");
            exit(1);
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, src, n);
    b->len += n;
}

static void put_var(struct buf *b, uint64_t v)
{
    uint8_t t[10];
    size_t n = 0;
    do {
        t[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    put(b, t, n);
}

static void f_int(struct buf *b, unsigned field, int64_t v)
{
    put_var(b, field << 3);
    put_var(b, (uint64_t)v);
}

static void f_len(struct buf *b, unsigned field, const void *p, size_t n)
{
    put_var(b, field << 3 | 2);
    put_var(b, n);
    put(b, p, n);
}

static void f_str(struct buf *b, unsigned field, const char *s) { f_len(b, field, s, strlen(s)); }

/* Appends sub as a length-delimited field and frees it. */
static void f_sub(struct buf *b, unsigned field, struct buf *sub)
{
    f_len(b, field, sub->p, sub->len);
    free(sub->p);
    *sub = (struct buf){0};
}

static void f_f32(struct buf *b, unsigned field, float v)
{
    put_var(b, field << 3 | 5);
    put(b, &v, 4); /* little-endian hosts only, as kiln itself */
}

/* ------------------------------------------------------------------ the text form
 *
 * One statement per line; '#' starts a comment.
 *   opset N [kiln]                   ai.onnx opset (and the kiln domain at version 1)
 *   input NAME f32|i64 D0,D1,...     a graph input (dims "-" for a scalar)
 *   output NAME                      a graph output (float32, shape left open)
 *   init NAME f32|i64 DIMS rand|pos|= v,v,...
 *                                    an initializer: random in [-1, 1], random in
 *                                    [0.5, 1.5] (pos), or the values listed
 *   node OP IN,IN,... -> OUT,... [attr=type:value ...]
 *                                    OP may be "kiln.Op"; "" inputs as "_"; types int,
 *                                    float, ints, floats, string
 */

/* Splits s at any of `sep` into at most cap pieces (s is modified). */
static size_t split(char *s, const char *sep, char **out, size_t cap)
{
    size_t n = 0;
    for (char *t = strtok(s, sep); t && n < cap; t = strtok(NULL, sep)) out[n++] = t;
    return n;
}

/* Comma-separated numbers into v; returns the count. */
static size_t numbers(const char *s, double *v, size_t cap)
{
    size_t n = 0;
    while (*s && n < cap) {
        char *end;
        v[n++] = strtod(s, &end);
        if (end == s) break;
        s = *end == ',' ? end + 1 : end;
    }
    return n;
}

static void value_info(struct buf *g, unsigned field, const char *name, int elem, const char *dims)
{
    struct buf vi = {0}, tp = {0}, tt = {0}, shape = {0};
    f_str(&vi, 1, name);
    f_int(&tt, 1, elem);
    if (dims) {
        double d[16];
        size_t nd = strcmp(dims, "-") ? numbers(dims, d, 16) : 0;
        for (size_t i = 0; i < nd; i++) {
            struct buf dim = {0};
            f_int(&dim, 1, (int64_t)d[i]);
            f_sub(&shape, 1, &dim);
        }
        f_len(&tt, 2, shape.p, shape.len);
        free(shape.p);
    }
    f_sub(&tp, 1, &tt);
    f_sub(&vi, 2, &tp);
    f_sub(g, field, &vi);
}

static void initializer(struct buf *g, char *name, char *type, char *dims, char *how, char *vals)
{
    struct buf t = {0};
    double d[16];
    size_t nd = strcmp(dims, "-") ? numbers(dims, d, 16) : 0, n = 1;
    for (size_t i = 0; i < nd; i++) {
        f_int(&t, 1, (int64_t)d[i]);
        n *= (size_t)d[i];
    }
    bool f32 = !strcmp(type, "f32");
    f_int(&t, 2, f32 ? 1 : 7);
    f_str(&t, 8, name);
    size_t es = f32 ? 4 : 8;
    uint8_t *raw = calloc(n ? n : 1, es);
    double *lst = calloc(n ? n : 1, sizeof *lst);
    if (!raw || !lst) exit(1);
    if (!strcmp(how, "=")) {
        size_t got = numbers(vals, lst, n);
        CHECK(got == n, "initializer %s lists %zu values; shape holds %zu", name, got, n);
    }
    for (size_t i = 0; i < n; i++) {
        double v = !strcmp(how, "rand") ? rng_range(-1, 1) : !strcmp(how, "pos") ? rng_range(0.5, 1.5) : lst[i];
        if (f32) {
            float f = (float)v;
            memcpy(raw + 4 * i, &f, 4);
        } else {
            int64_t x = (int64_t)v;
            memcpy(raw + 8 * i, &x, 8);
        }
    }
    f_len(&t, 9, raw, n * es);
    free(raw);
    free(lst);
    f_sub(g, 5, &t);
}

static void attribute(struct buf *nd, char *spec)
{
    char *eq = strchr(spec, '='), *colon = eq ? strchr(eq, ':') : NULL;
    if (!eq || !colon) {
        CHECK(false, "bad attribute '%s'", spec);
        return;
    }
    *eq = *colon = 0;
    const char *type = eq + 1, *val = colon + 1;
    struct buf a = {0};
    f_str(&a, 1, spec);
    double v[64];
    if (!strcmp(type, "int")) {
        f_int(&a, 3, strtoll(val, NULL, 10));
        f_int(&a, 20, 2);
    } else if (!strcmp(type, "float")) {
        f_f32(&a, 2, strtof(val, NULL));
        f_int(&a, 20, 1);
    } else if (!strcmp(type, "string")) {
        f_str(&a, 4, strcmp(val, "_") ? val : "");
        f_int(&a, 20, 3);
    } else if (!strcmp(type, "ints")) {
        size_t n = numbers(val, v, 64);
        for (size_t i = 0; i < n; i++) f_int(&a, 8, (int64_t)v[i]);
        f_int(&a, 20, 7);
    } else if (!strcmp(type, "floats")) {
        size_t n = numbers(val, v, 64);
        for (size_t i = 0; i < n; i++) f_f32(&a, 7, (float)v[i]);
        f_int(&a, 20, 6);
    } else {
        CHECK(false, "bad attribute type '%s'", type);
    }
    f_sub(nd, 5, &a);
}

/* ModelProto bytes of the text model (the caller frees b->p). */
static void parse_model(const char *text, struct buf *out)
{
    struct buf g = {0};
    char *copy = strdup(text), *save = NULL;
    int64_t opset = 17;
    bool kiln_dom = false;
    int node_no = 0;
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *hash = strchr(line, '#');
        if (hash) *hash = 0;
        char *w[48];
        size_t n = split(line, " \t", w, 48);
        if (n == 0) continue;
        if (!strcmp(w[0], "opset")) {
            opset = strtoll(w[1], NULL, 10);
            kiln_dom = n > 2 && !strcmp(w[2], "kiln");
        } else if (!strcmp(w[0], "input") && n == 4) {
            value_info(&g, 11, w[1], !strcmp(w[2], "f32") ? 1 : 7, w[3]);
        } else if (!strcmp(w[0], "output") && n == 2) {
            value_info(&g, 12, w[1], 1, NULL);
        } else if (!strcmp(w[0], "init") && n >= 5) {
            initializer(&g, w[1], w[2], w[3], w[4], n > 5 ? w[5] : "");
        } else if (!strcmp(w[0], "node") && n >= 5 && !strcmp(w[3], "->")) {
            struct buf nd = {0};
            char *ins[16], *outs[8], name[32];
            size_t ni = split(w[2], ",", ins, 16);
            for (size_t i = 0; i < ni; i++) f_str(&nd, 1, strcmp(ins[i], "_") ? ins[i] : "");
            size_t no = split(w[4], ",", outs, 8);
            for (size_t i = 0; i < no; i++) f_str(&nd, 2, outs[i]);
            snprintf(name, sizeof name, "n%d", node_no++);
            f_str(&nd, 3, name);
            const char *op = w[1];
            if (!strncmp(op, "kiln.", 5)) {
                f_str(&nd, 7, "kiln");
                op += 5;
            }
            f_str(&nd, 4, op);
            for (size_t i = 5; i < n; i++) attribute(&nd, w[i]);
            f_sub(&g, 1, &nd);
        } else {
            CHECK(false, "bad model line starting '%s'", w[0]);
        }
    }
    free(copy);
    f_str(&g, 2, "g");
    struct buf m = {0}, os = {0};
    f_int(&m, 1, 8);
    f_int(&os, 2, opset);
    f_sub(&m, 8, &os);
    if (kiln_dom) {
        f_str(&os, 1, "kiln");
        f_int(&os, 2, 1);
        f_sub(&m, 8, &os);
    }
    f_sub(&m, 7, &g);
    *out = m;
}


/* ------------------------------------------------------------------ running the level */

struct lines {
    char *l[64];
    size_t n;
};

static void keep_line(void *user, const char *msg)
{
    struct lines *ls = user;
    if (getenv("KILN_TEST_VERBOSE")) printf("  %s\n", msg);
    if (strncmp(msg, "layout: ", 8) || ls->n == 64) return;
    ls->l[ls->n++] = strdup(msg + 8);
}

static void free_lines(struct lines *ls)
{
    for (size_t i = 0; i < ls->n; i++) free(ls->l[i]);
    ls->n = 0;
}

/* How many of the report lines contain `s`. */
static size_t lines_with(const struct lines *ls, const char *s)
{
    size_t c = 0;
    for (size_t i = 0; i < ls->n; i++)
        if (strstr(ls->l[i], s)) c++;
    return c;
}

static kiln_model *load_text(const char *text)
{
    struct buf b;
    parse_model(text, &b);
    kiln_model *m = NULL;
    kiln_err e = {0};
    kiln_status st = kiln_model_load_buffer(b.p, b.len, NULL, &m, &e);
    free(b.p);
    CHECK(st == KILN_OK, "load: %s", e.msg);
    return st ? NULL : m;
}

/* Loads `text` and optimizes it at `level` (report lines into ls when not NULL). */
static kiln_model *optimized(const char *text, kiln_opt_level level, bool keep_fused,
                             struct lines *ls)
{
    kiln_model *m = load_text(text);
    if (!m) return NULL;
    kiln_optimize_options o = {.level = level, .keep_fused = keep_fused,
                               .report = ls ? keep_line : NULL, .report_user = ls};
    kiln_err e = {0};
    kiln_status st = kiln_model_optimize(m, &o, &e);
    CHECK(st == KILN_OK, "optimize: %s", e.msg);
    if (st) {
        kiln_model_free(m);
        return NULL;
    }
    return m;
}

static uint8_t mark(const kiln_model *m, const char *name)
{
    return kiln_opt_layout_by_name(m->graph, name);
}

/* Marks of every value of the main graph: how many are not plain. */
static size_t n_marked(const kiln_model *m)
{
    size_t c = 0;
    for (size_t i = 0; i < m->graph->n_values; i++) c += kiln_opt_layout_of(m->graph, (int)i) != 0;
    return c;
}

/* The same text at levels extended and layout writes the same bytes. */
static void same_bytes(const char *what, const char *text, bool keep_fused)
{
    rng_seed(7); /* the same random weights in both */
    kiln_model *a = optimized(text, KILN_OPT_EXTENDED, keep_fused, NULL);
    rng_seed(7);
    kiln_model *b = optimized(text, KILN_OPT_LAYOUT, keep_fused, NULL);
    void *pa = NULL, *pb = NULL;
    size_t la = 0, lb = 0;
    kiln_err e = {0};
    if (a && b) {
        CHECK(kiln_model_save_buffer(a, &pa, &la, &e) == KILN_OK, "%s: save: %s", what, e.msg);
        CHECK(kiln_model_save_buffer(b, &pb, &lb, &e) == KILN_OK, "%s: save: %s", what, e.msg);
        CHECK(pa && pb && la == lb && !memcmp(pa, pb, la),
              "%s (keep_fused %d): level layout wrote %zu bytes unlike extended's %zu", what,
              keep_fused, lb, la);
        CHECK(b->graph->layout != NULL && a->graph->layout == NULL,
              "%s: marks only at level layout", what);
    }
    kiln_buffer_free(pa);
    kiln_buffer_free(pb);
    kiln_model_free(a);
    kiln_model_free(b);
}

/* ------------------------------------------------------------------ the models */

static const char *CNN =
    "opset 13\n"
    "input x f32 1,3,32,32\n"
    "init w1 f32 16,3,3,3 rand\ninit b1 f32 16 rand\n"
    "node Conv x,w1,b1 -> c1 pads=ints:1,1,1,1\n"
    "node Relu c1 -> r1\n"
    "node MaxPool r1 -> p1 kernel_shape=ints:2,2 strides=ints:2,2\n"
    "init w2 f32 16,16,3,3 rand\ninit b2 f32 16 rand\n"
    "node Conv p1,w2,b2 -> c2 pads=ints:1,1,1,1\n"
    "node Add c2,p1 -> a2\n"
    "node Relu a2 -> r2\n"
    "node GlobalAveragePool r2 -> gap\n"
    "node Flatten gap -> f\n"
    "init wf f32 10,16 rand\ninit bf f32 10 rand\n"
    "node Gemm f,wf,bf -> y transB=int:1\n"
    "output y\n";

/* The CNN with 4 channels: nothing pays for a conversion. */
static const char *NARROW =
    "opset 13\n"
    "input x f32 1,3,32,32\n"
    "init w1 f32 4,3,3,3 rand\n"
    "node Conv x,w1 -> c1 pads=ints:1,1,1,1\n"
    "node Relu c1 -> r1\n"
    "init w2 f32 4,4,3,3 rand\n"
    "node Conv r1,w2 -> c2 pads=ints:1,1,1,1\n"
    "node Add c2,r1 -> a2\n"
    "node GlobalAveragePool a2 -> gap\n"
    "node Flatten gap -> y\n"
    "output y\n";

/* 20 channels pad to 24 (20% more): channels-last. */
static const char *PAD20 =
    "opset 13\n"
    "input x f32 1,20,16,16\n"
    "init w1 f32 20,20,3,3 rand\n"
    "node Conv x,w1 -> c1 pads=ints:1,1,1,1\n"
    "node Relu c1 -> r1\n"
    "init w2 f32 20,20,3,3 rand\n"
    "node Conv r1,w2 -> y pads=ints:1,1,1,1\n"
    "output y\n";

/* The same with a depthwise Conv: blocked (8) after all. */
static const char *DW20 =
    "opset 13\n"
    "input x f32 1,20,16,16\n"
    "init w1 f32 20,1,3,3 rand\n"
    "node Conv x,w1 -> c1 pads=ints:1,1,1,1 group=int:20\n"
    "node Relu c1 -> r1\n"
    "init w2 f32 20,20,3,3 rand\n"
    "node Conv r1,w2 -> y pads=ints:1,1,1,1\n"
    "output y\n";

/* Concat of 8 + 24 channels on axis 1: block 8 only. A Transpose after it forces plain. */
static const char *CONCAT =
    "opset 13\n"
    "input x f32 1,16,16,16\n"
    "init wa f32 8,16,1,1 rand\n"
    "init wb f32 24,16,3,3 rand\n"
    "node Conv x,wa -> a\n"
    "node Conv x,wb -> b pads=ints:1,1,1,1\n"
    "node Concat a,b -> cat axis=int:1\n"
    "init wc f32 32,32,3,3 rand\n"
    "node Conv cat,wc -> c pads=ints:1,1,1,1\n"
    "init s f32 32,1,1 pos\n"
    "node Mul c,s -> cs\n"
    "node Transpose cs -> y perm=ints:0,2,3,1\n"
    "output y\n";

/* Attention over 4-D heads: MatMul, Transpose, a [1,1,8,8] mask Add, Softmax. */
static const char *ATTN =
    "opset 17\n"
    "input x f32 1,8,32\n"
    "input mask f32 1,1,8,8\n"
    "init wq f32 32,32 rand\ninit wk f32 32,32 rand\ninit wv f32 32,32 rand\n"
    "init shp i64 4 = 1,8,4,8\ninit back i64 3 = 1,8,32\n"
    "node MatMul x,wq -> q0\nnode Reshape q0,shp -> q1\nnode Transpose q1 -> q perm=ints:0,2,1,3\n"
    "node MatMul x,wk -> k0\nnode Reshape k0,shp -> k1\nnode Transpose k1 -> kt perm=ints:0,2,3,1\n"
    "node MatMul x,wv -> v0\nnode Reshape v0,shp -> v1\nnode Transpose v1 -> v perm=ints:0,2,1,3\n"
    "node MatMul q,kt -> s0\n"
    "node Add s0,mask -> s1\n"
    "node Softmax s1 -> p axis=int:-1\n"
    "node MatMul p,v -> o0\n"
    "node Transpose o0 -> o1 perm=ints:0,2,1,3\n"
    "node Reshape o1,back -> o\n"
    "node Add o,x -> r\n"
    "node Relu r -> y\n"
    "output y\n";

/* ------------------------------------------------------------------ tests */

static void test_cnn(void)
{
    for (int fused = 0; fused <= 1; fused++) {
        struct lines ls = {0};
        kiln_model *m = optimized(CNN, KILN_OPT_LAYOUT, fused, &ls);
        if (!m) continue;
        CHECK(m->graph->layout != NULL, "cnn: no marks");
        CHECK(lines_with(&ls, "' region ") == 1, "cnn (fused %d): %zu region lines; expected 1", fused,
              lines_with(&ls, "' region "));
        CHECK(fused || lines_with(&ls, "region 1: 7 nodes (Conv 2, Relu 2, MaxPool 1, Add 1, "
                                       "GlobalAveragePool 1) from Conv node 'n0'") == 1,
              "cnn: region nodes: %s", ls.n ? ls.l[0] : "(no report)");
        CHECK(lines_with(&ls, "nchwc(8,16), 2 conversions (1 in: 'x', 1 out: 'gap')") == 1,
              "cnn (fused %d): expected one blocked region with 2 conversions: %s", fused,
              ls.n ? ls.l[0] : "(no report)");
        CHECK(lines_with(&ls, "1 of 1 region marked") == 1, "cnn: summary line missing");
        /* The image is converted in, gap out; Flatten, Gemm and the interface stay plain. */
        CHECK(mark(m, "x") == 0 && mark(m, "f") == 0 && mark(m, "y") == 0,
              "cnn: x, f, y should be plain (%u %u %u)", mark(m, "x"), mark(m, "f"), mark(m, "y"));
        static const char *const blocked[] = {"p1", "gap"};
        for (size_t i = 0; i < 2; i++) {
            uint8_t k = mark(m, blocked[i]);
            CHECK((k & KILN_LAYOUT_KIND_MASK) == KILN_LAYOUT_BLOCKED && (k & KILN_LAYOUT_BLOCK8) &&
                      (k & KILN_LAYOUT_BLOCK16),
                  "cnn: %s marked %s; expected nchwc(8,16)", blocked[i], kiln_opt_layout_name(k));
            CHECK(kiln_opt_layout_block(k, true) == 16 && kiln_opt_layout_block(k, false) == 8,
                  "cnn: block widths");
        }
        /* Every node output but Flatten's and Gemm's is blocked. */
        size_t want = fused ? 4 : 7;
        CHECK(n_marked(m) == want, "cnn (fused %d): %zu values marked; expected %zu", fused,
              n_marked(m), want);
        for (size_t i = 0; i < m->graph->n_nodes; i++) {
            const struct kiln_node *n = &m->graph->nodes[i];
            bool plain = !strcmp(n->op_type, "Flatten") || !strcmp(n->op_type, "Gemm");
            CHECK(!mark(m, n->outputs[0]) == plain, "cnn: %s output '%s' marked %s", n->op_type,
                  n->outputs[0], kiln_opt_layout_name(mark(m, n->outputs[0])));
        }
        /* Another run relinks: the marks go (extended), or come back (layout). */
        kiln_optimize_options o = {.level = KILN_OPT_EXTENDED, .keep_fused = fused};
        kiln_err e = {0};
        CHECK(kiln_model_optimize(m, &o, &e) == KILN_OK && m->graph->layout == NULL,
              "cnn: marks survived a relink");
        o.level = KILN_OPT_LAYOUT;
        CHECK(kiln_model_optimize(m, &o, &e) == KILN_OK && n_marked(m) == want,
              "cnn: a second layout run marks the same");
        kiln_model_free(m);
        free_lines(&ls);
    }
    same_bytes("cnn", CNN, false);
    same_bytes("cnn", CNN, true);
}

static void test_kinds(void)
{
    struct lines ls = {0};
    kiln_model *m = optimized(NARROW, KILN_OPT_LAYOUT, false, &ls);
    if (m) {
        CHECK(n_marked(m) == 0, "narrow: %zu values marked", n_marked(m));
        CHECK(lines_with(&ls, "stays plain; 2 convs, none with C >= 16") == 1,
              "narrow: expected one plain region: %s", ls.n ? ls.l[0] : "(no report)");
    }
    kiln_model_free(m);
    free_lines(&ls);

    m = optimized(PAD20, KILN_OPT_LAYOUT, false, &ls);
    if (m) {
        CHECK(mark(m, "r1") == KILN_LAYOUT_NHWC && mark(m, "y") == KILN_LAYOUT_NHWC &&
                  mark(m, "x") == 0,
              "pad20: r1 %s, y %s; expected nhwc", kiln_opt_layout_name(mark(m, "r1")),
              kiln_opt_layout_name(mark(m, "y")));
        CHECK(lines_with(&ls, "nhwc, 2 conversions") == 1, "pad20: report: %s",
              ls.n ? ls.l[0] : "(no report)");
    }
    kiln_model_free(m);
    free_lines(&ls);

    m = optimized(DW20, KILN_OPT_LAYOUT, false, &ls);
    if (m) {
        uint8_t k = mark(m, "r1");
        CHECK(k == (KILN_LAYOUT_BLOCKED | KILN_LAYOUT_BLOCK8), "dw20: r1 %s; expected nchwc(8)",
              kiln_opt_layout_name(k));
        CHECK(kiln_opt_layout_block(k, true) == 8, "dw20: AVX-512 still uses 8");
    }
    kiln_model_free(m);
    free_lines(&ls);

    m = optimized(CONCAT, KILN_OPT_LAYOUT, false, &ls);
    if (m) {
        /* The Mul folds into the last Conv (fuse_bias_scale), whose output becomes cs. */
        static const char *const in_region[] = {"a", "b", "cat", "cs"};
        for (size_t i = 0; i < 4; i++)
            CHECK(mark(m, in_region[i]) == (KILN_LAYOUT_BLOCKED | KILN_LAYOUT_BLOCK8),
                  "concat: %s marked %s; expected nchwc(8)", in_region[i],
                  kiln_opt_layout_name(mark(m, in_region[i])));
        CHECK(mark(m, "y") == 0, "concat: the Transpose's output is plain");
        CHECK(lines_with(&ls, "4 nodes (Conv 3, Concat 1)") == 1 && lines_with(&ls, "2 conversions (1 in: 'x', 1 out: 'cs')") == 1,
              "concat: report: %s", ls.n ? ls.l[0] : "(no report)");
    }
    kiln_model_free(m);
    free_lines(&ls);
    same_bytes("concat", CONCAT, false);
}

static void test_transformer(void)
{
    struct lines ls = {0};
    for (int fused = 0; fused <= 1; fused++) {
        kiln_model *m = optimized(ATTN, KILN_OPT_LAYOUT, fused, &ls);
        if (!m) continue;
        CHECK(m->graph->layout != NULL, "attention: the pass did not run");
        CHECK(n_marked(m) == 0, "attention (fused %d): %zu values marked", fused, n_marked(m));
        CHECK(lines_with(&ls, "nchwc") == 0 && lines_with(&ls, "nhwc") == 0,
              "attention: a region was marked");
        kiln_model_free(m);
        free_lines(&ls);
        same_bytes("attention", ATTN, fused);
    }
}

/* Every allocation of a layout-level run fails in turn: NOMEM with the model as it was (no
 * marks), or success with the marks. */
static void test_nomem(void)
{
    struct buf b;
    rng_seed(3);
    parse_model(CNN, &b);
    size_t failures = 0;
    for (long n = 1; n < 200000; n++) {
        kiln_model *m = NULL;
        kiln_err e = {0};
        if (kiln_model_load_buffer(b.p, b.len, NULL, &m, &e) != KILN_OK) break;
        size_t nodes = m->graph->n_nodes;
        kiln_optimize_options o = {.level = KILN_OPT_LAYOUT, .keep_fused = 1};
        kiln_alloc_fail_after(n);
        kiln_status st = kiln_model_optimize(m, &o, &e);
        kiln_alloc_fail_after(0);
        if (st == KILN_OK) {
            CHECK(n_marked(m) == 4, "nomem: %zu values marked after success", n_marked(m));
            kiln_model_free(m);
            break;
        }
        failures++;
        CHECK(st == KILN_E_NOMEM, "allocation %ld: status %d (%s)", n, st, e.msg);
        CHECK(m->graph->n_nodes == nodes && m->graph->layout == NULL,
              "allocation %ld: model changed (%zu nodes)", n, m->graph->n_nodes);
        kiln_model_free(m);
    }
    CHECK(failures > 0, "nomem: no allocation failed");
    free(b.p);
}

int main(void)
{
    rng_seed(1);
    test_cnn();
    test_kinds();
    test_transformer();
    test_nomem();
    return test_summary("test_opt_layout");
}
