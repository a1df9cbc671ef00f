/* test_opt_layout.c: the optimizer's layout level (src/opt/pass_layout.c, layout.h;
 * docs/optimizer.md, "Layout").
 *
 * Models are written in the small text form of support/test_text_model.h, encoded as
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
 * Runs with kiln ops leave out the nhwc pass, which would turn these CNNs channels-last
 * (kiln.ConvNhwc) before this analysis sees them (test_opt_nhwc covers that pass).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "ir/ir.h"
#include "kiln.h"
#include "opt/layout.h"
#include "opt/opt.h"
#include "test_support.h"
#include "test_text_model.h"

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

/* The passes of `level` but nhwc, as a --passes list (NULL without kiln ops: the level's
 * own list, which skips nhwc then). */
static const char *passes_but_nhwc(kiln_opt_level level, bool keep_fused)
{
    static char buf[3][1024];
    if (!keep_fused) return NULL;
    char *b = buf[level % 3];
    size_t n, len = 0;
    const struct kiln_pass *const *ps = kiln_opt_passes(&n);
    b[0] = 0;
    for (size_t i = 0; i < n; i++)
        if ((int)ps[i]->level <= (int)level && strcmp(ps[i]->name, "nhwc"))
            len += (size_t)snprintf(b + len, 1024 - len, "%s%s", len ? "," : "", ps[i]->name);
    return b;
}

/* Loads `text` and optimizes it at `level` (report lines into ls when not NULL). */
static kiln_model *optimized(const char *text, kiln_opt_level level, bool keep_fused,
                             struct lines *ls)
{
    kiln_model *m = load_text_model(text, "layout");
    if (!m) return NULL;
    kiln_optimize_options o = {.level = level, .keep_fused = keep_fused,
                               .passes = passes_but_nhwc(level, keep_fused),
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
        kiln_optimize_options o = {.level = KILN_OPT_EXTENDED, .keep_fused = fused,
                                   .passes = passes_but_nhwc(KILN_OPT_EXTENDED, fused)};
        kiln_err e = {0};
        CHECK(kiln_model_optimize(m, &o, &e) == KILN_OK && m->graph->layout == NULL,
              "cnn: marks survived a relink");
        o.level = KILN_OPT_LAYOUT;
        o.passes = passes_but_nhwc(KILN_OPT_LAYOUT, fused);
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
        kiln_optimize_options o = {.level = KILN_OPT_LAYOUT, .keep_fused = 1,
                                   .passes = passes_but_nhwc(KILN_OPT_LAYOUT, true)};
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
