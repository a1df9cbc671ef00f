/* test_opt_nhwc.c: the optimizer's nhwc pass (src/opt/pass_nhwc.c; docs/optimizer.md,
 * "nhwc"): convolutional regions rewritten to channels-last with kiln.ConvNhwc.
 *
 * Each model is written in the small text form of support/test_text_model.h, loaded, and
 * optimized at level extended with kiln ops (the fusions first, then this pass). Checked:
 *   - structure: which nodes became kiln.ConvNhwc, one Transpose(0,2,3,1) per entering value
 *     (shared by its readers), one Transpose(0,3,1,2) per leaving value writing the original
 *     name, constants re-laid ([C] for per-channel ones, permuted 4-D otherwise), inference
 *     BatchNormalization (+ the activation after it) as kiln.ScaleBias by [C] constants,
 *     Concat on axis 3, GlobalAveragePool as kiln.AveragePoolNhwc of one H x W window (H and
 *     W known) or ReduceMean over [1, 2] (axes attribute before
 *     opset 18, an input from 18), MaxPool / AveragePool as kiln.MaxPoolNhwc /
 *     AveragePoolNhwc, the channel shuffle (fused to kiln.ChannelShuffle) on axis 3,
 *     Concat -> shuffle -> half Slices as kiln.ShuffleSplit, Slice on channels with axes [3]
 *     (an input or, Slice-1, an attribute); an image of at most 4 channels read by group-1
 *     convolutions only as their planar X (x_nchw 1, no entry Transpose), and the Transpose
 *     kept for 5 channels, a grouped first convolution, or the image read by another region
 *     node too;
 *   - inferred shapes: NHWC values are [N, H, W, C]; graph outputs keep their names and
 *     NCHW shapes (a symbolic batch included);
 *   - regions whose conv work is small against their conversions, regions without a conv,
 *     convs with non-constant weights and runs without kiln ops are left alone;
 *   - the result passes kiln_model_check, is a fixed point of the optimizer, survives a
 *     save to ONNX and a load back, and gives the original model's outputs on random inputs
 *     within |a - b| <= 1e-5 + 1e-4 |b| (the NHWC convolution sums in another order; BN as
 *     ScaleBias rounds its scale and shift once) for a ResNet-like, an SE, a DenseNet-like, a
 *     ShuffleNet-like (static and symbolic batch) and a MobileNet-like block;
 *   - every allocation failing in turn leaves the model as it was.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "infer/infer.h"
#include "ir/ir.h"
#include "kiln.h"
#include "test_support.h"
#include "test_text_model.h"

#define RTOL 1e-4
#define ATOL 1e-5

/* ------------------------------------------------------------------ loading, optimizing */

static kiln_model *load_text(const char *text, uint64_t seed)
{
    struct buf b;
    rng_seed(seed); /* the same random weights for every copy */
    parse_model(text, &b);
    kiln_model *m = NULL;
    kiln_err e = {0};
    kiln_status st = kiln_model_load_buffer(b.p, b.len, NULL, &m, &e);
    free(b.p);
    CHECK(st == KILN_OK, "load: %s", e.msg);
    return st ? NULL : m;
}

static void print_problem(void *user, const char *msg)
{
    printf("  problem (%s): %s\n", (const char *)user, msg);
}

static void print_note(void *user, const char *msg)
{
    (void)user;
    if (getenv("KILN_TEST_VERBOSE")) printf("  %s\n", msg);
}

static bool optimize(kiln_model *m, bool keep_fused, const char *what)
{
    kiln_optimize_options o = {.level = KILN_OPT_EXTENDED, .keep_fused = keep_fused,
                               .report = print_note};
    kiln_err e = {0};
    kiln_status st = kiln_model_optimize(m, &o, &e);
    CHECK(st == KILN_OK, "%s: optimize: %s", what, e.msg);
    return st == KILN_OK;
}

/* ------------------------------------------------------------------ reading the graph */

static bool is_op(const struct kiln_node *n, const char *spec)
{
    const char *dot = strchr(spec, '.'), *dom = n->domain ? n->domain : "";
    if (!dot) return !dom[0] && !strcmp(n->op_type, spec);
    return strlen(dom) == (size_t)(dot - spec) && !strncmp(dom, spec, (size_t)(dot - spec)) &&
           !strcmp(n->op_type, dot + 1);
}

/* Nodes of the main graph of op "Op" or "domain.Op". */
static size_t count_op(const kiln_model *m, const char *spec)
{
    size_t c = 0;
    for (size_t i = 0; i < m->graph->n_nodes; i++) c += is_op(&m->graph->nodes[i], spec);
    return c;
}

/* The node writing `name`, or NULL. */
static const struct kiln_node *producer(const kiln_model *m, const char *name)
{
    for (size_t i = 0; i < m->graph->n_nodes; i++) {
        const struct kiln_node *n = &m->graph->nodes[i];
        for (size_t k = 0; k < n->n_out; k++)
            if (!strcmp(n->outputs[k], name)) return n;
    }
    return NULL;
}

/* The k-th node (in graph order) of op spec, or NULL. */
static const struct kiln_node *nth_op(const kiln_model *m, const char *spec, size_t k)
{
    for (size_t i = 0; i < m->graph->n_nodes; i++)
        if (is_op(&m->graph->nodes[i], spec) && k-- == 0) return &m->graph->nodes[i];
    return NULL;
}

/* How many node inputs of the main graph read `name`. */
static size_t readers(const kiln_model *m, const char *name)
{
    size_t c = 0;
    for (size_t i = 0; i < m->graph->n_nodes; i++)
        for (size_t k = 0; k < m->graph->nodes[i].n_in; k++) c += !strcmp(m->graph->nodes[i].inputs[k], name);
    return c;
}

static bool has_perm(const struct kiln_node *n, int64_t a, int64_t b, int64_t c, int64_t d)
{
    const struct kiln_attr *p = n ? kiln_node_attr(n, "perm") : NULL;
    return p && p->type == KILN_ATTR_INTS && p->n == 4 && p->ints[0] == a && p->ints[1] == b &&
           p->ints[2] == c && p->ints[3] == d;
}

static int64_t attr_int(const struct kiln_node *n, const char *name, int64_t def)
{
    const struct kiln_attr *a = kiln_node_attr(n, name);
    return a && a->type == KILN_ATTR_INT ? a->i : def;
}

/* The inferred shape of `name` as text, "1,12,10,16" ("N" for a symbolic dim, "?" unknown);
 * "" when the value or its type is unknown. */
static const char *shape(const kiln_model *m, const char *name, char *buf, size_t size)
{
    const struct kiln_graph *g = m->graph;
    buf[0] = 0;
    int id = kiln_graph_find(g, name);
    if (id < 0 || !g->vtypes) return buf;
    const struct kiln_type *t = &g->vtypes[id].type;
    if (t->kind != KILN_TYPE_TENSOR || t->rank < 0) return buf;
    size_t len = 0;
    for (int d = 0; d < t->rank && len < size; d++) {
        const struct kiln_dim *x = &t->dims[d];
        int k = x->value >= 0 ? snprintf(buf + len, size - len, "%s%lld", d ? "," : "", (long long)x->value)
                              : snprintf(buf + len, size - len, "%s%s", d ? "," : "",
                                         x->param && x->param[0] ? x->param : "?");
        if (k < 0) break;
        len += (size_t)k;
    }
    return buf;
}

static void check_shape(const kiln_model *m, const char *name, const char *want, const char *what)
{
    char buf[128];
    shape(m, name, buf, sizeof buf);
    CHECK(!strcmp(buf, want), "%s: '%s' has shape [%s], expected [%s]", what, name, buf, want);
}

/* The constant initializer `name` of the main graph, or NULL. */
static const struct kiln_tensor *init_of(const kiln_model *m, const char *name)
{
    for (size_t i = 0; i < m->graph->n_inits; i++)
        if (!strcmp(m->graph->inits[i].name, name)) return &m->graph->inits[i].t;
    return NULL;
}

/* ------------------------------------------------------------------ running */

struct run {
    size_t n_out;
    kiln_value *out[8];
};

/* Runs m on seeded random float32 inputs (symbolic dims bound to 3). */
static bool run_model(const kiln_model *m, uint64_t seed, struct run *r, const char *what)
{
    kiln_value *in[8] = {0};
    size_t n_in = kiln_model_input_count(m);
    rng_seed(seed);
    for (size_t i = 0; i < n_in && i < 8; i++) {
        int rank = kiln_model_input_rank(m, i);
        int64_t dims[8];
        for (int d = 0; d < rank; d++) {
            dims[d] = kiln_model_input_dim(m, i, d, NULL);
            if (dims[d] < 0) dims[d] = 3;
        }
        kiln_err e;
        if (kiln_value_create_tensor(KILN_DTYPE_F32, rank, dims, &in[i], &e)) exit(1);
        float *p = kiln_value_data(in[i]);
        for (size_t j = 0; j < kiln_value_numel(in[i]); j++) p[j] = rng_f32();
    }
    kiln_session *s = NULL;
    kiln_err e = {0};
    r->n_out = kiln_model_output_count(m);
    kiln_status st = kiln_session_create(m, NULL, &s, &e);
    if (!st) st = kiln_session_run(s, n_in, NULL, (const kiln_value *const *)in, r->n_out, r->out, &e);
    CHECK(st == KILN_OK, "%s: run failed: %s", what, e.msg);
    if (st) r->n_out = 0;
    kiln_session_free(s);
    for (size_t i = 0; i < n_in; i++) kiln_value_free(in[i]);
    return st == KILN_OK;
}

static void free_run(struct run *r)
{
    for (size_t i = 0; i < r->n_out; i++) kiln_value_free(r->out[i]);
    r->n_out = 0;
}

/* Outputs of `got` equal those of `want` (shapes exactly, values within ATOL + RTOL|b|). */
static void same_outputs(const kiln_model *want, const kiln_model *got, const char *what)
{
    struct run a = {0}, b = {0};
    if (run_model(want, 99, &a, what) && run_model(got, 99, &b, what)) {
        CHECK(a.n_out == b.n_out, "%s: %zu outputs vs %zu", what, b.n_out, a.n_out);
        for (size_t i = 0; i < a.n_out && i < b.n_out; i++) {
            int rank = kiln_value_rank(a.out[i]);
            bool same = rank == kiln_value_rank(b.out[i]) &&
                        !memcmp(kiln_value_dims(a.out[i]), kiln_value_dims(b.out[i]),
                                (size_t)rank * sizeof(int64_t));
            CHECK(same, "%s: output %zu has another shape", what, i);
            if (!same) continue;
            const float *x = kiln_value_data(a.out[i]), *y = kiln_value_data(b.out[i]);
            size_t n = kiln_value_numel(a.out[i]), bad = 0;
            double worst = 0;
            for (size_t j = 0; j < n; j++) {
                double d = fabs((double)y[j] - x[j]), lim = ATOL + RTOL * fabs((double)x[j]);
                if (!(d <= lim)) {
                    if (!bad++) worst = d;
                }
            }
            CHECK(bad == 0, "%s: output %zu: %zu of %zu elements off (first by %.3g)", what, i, bad,
                  n, worst);
        }
    }
    free_run(&a);
    free_run(&b);
}

/* The common checks: valid, a fixed point, written and read back, same outputs as the
 * original model. */
static void check_model(const char *text, uint64_t seed, const kiln_model *m, const char *what)
{
    CHECK(kiln_model_check(m, print_problem, (void *)what) == 0, "%s: optimized model invalid", what);
    kiln_model *orig = load_text(text, seed);
    if (orig) same_outputs(orig, m, what);

    /* Written as ONNX and loaded back: the same graph, the same results. */
    void *p = NULL;
    size_t len = 0;
    kiln_err e = {0};
    kiln_model *back = NULL;
    kiln_status st = kiln_model_save_buffer(m, &p, &len, &e);
    CHECK(st == KILN_OK, "%s: save: %s", what, e.msg);
    if (!st) st = kiln_model_load_buffer(p, len, NULL, &back, &e);
    CHECK(st == KILN_OK, "%s: load back: %s", what, e.msg);
    kiln_buffer_free(p);
    if (back) {
        CHECK(kiln_model_check(back, print_problem, (void *)what) == 0, "%s: reloaded model invalid",
              what);
        CHECK(count_op(back, "kiln.ConvNhwc") == count_op(m, "kiln.ConvNhwc"),
              "%s: reloaded model lost ConvNhwc nodes", what);
        if (orig) same_outputs(orig, back, what);
        /* A fixed point: optimizing the result again changes nothing. */
        size_t before = back->graph->n_nodes, tr = count_op(back, "Transpose");
        if (optimize(back, true, what))
            CHECK(back->graph->n_nodes == before && count_op(back, "Transpose") == tr,
                  "%s: a second optimization changed the graph (%zu -> %zu nodes)", what, before,
                  back->graph->n_nodes);
    }
    kiln_model_free(back);
    kiln_model_free(orig);
}

/* Loads and optimizes text (extended, kiln ops). */
static kiln_model *optimized(const char *text, uint64_t seed, bool keep_fused, const char *what)
{
    kiln_model *m = load_text(text, seed);
    if (m && !optimize(m, keep_fused, what)) {
        kiln_model_free(m);
        return NULL;
    }
    return m;
}

/* ------------------------------------------------------------------ ResNet-like */

/* Conv+BN+Relu, Conv + residual Add + Relu (FusedConv with Z after the fusions), then a
 * MaxPool (kiln.MaxPoolNhwc in the region). Non-square spatial dims, so NHWC shapes differ
 * from NCHW ones. */
static const char *RESNET =
    "opset 13\n"
    "input x f32 1,16,12,10\n"
    "init w1 f32 16,16,3,3 rand\ninit b1 f32 16 rand\n"
    "init s f32 16 pos\ninit t f32 16 rand\ninit mu f32 16 rand\ninit var f32 16 pos\n"
    "node Conv x,w1,b1 -> c1 pads=ints:1,1,1,1\n"
    "node BatchNormalization c1,s,t,mu,var -> bn1\n"
    "node Relu bn1 -> r1\n"
    "init w2 f32 16,16,3,3 rand\n"
    "node Conv r1,w2 -> c2 pads=ints:1,1,1,1\n"
    "node Add c2,x -> a2\n"
    "node Relu a2 -> r2\n"
    "node MaxPool r2 -> y kernel_shape=ints:2,2 strides=ints:2,2\n"
    "output y\n";

static void test_resnet(void)
{
    const char *what = "resnet block";
    kiln_model *m = optimized(RESNET, 1, true, what);
    if (!m) return;
    CHECK(count_op(m, "kiln.ConvNhwc") == 2 && count_op(m, "kiln.FusedConv") == 0 &&
              count_op(m, "Conv") == 0,
          "%s: %zu ConvNhwc, %zu FusedConv, %zu Conv", what, count_op(m, "kiln.ConvNhwc"),
          count_op(m, "kiln.FusedConv"), count_op(m, "Conv"));
    CHECK(count_op(m, "Transpose") == 2, "%s: %zu Transposes, expected 2 (x in, y out)", what,
          count_op(m, "Transpose"));
    const struct kiln_node *c1 = nth_op(m, "kiln.ConvNhwc", 0), *c2 = nth_op(m, "kiln.ConvNhwc", 1);
    if (c1 && c2) {
        const struct kiln_node *tin = producer(m, c1->inputs[0]);
        CHECK(tin && is_op(tin, "Transpose") && !strcmp(tin->inputs[0], "x") && has_perm(tin, 0, 2, 3, 1),
              "%s: the first ConvNhwc does not read Transpose(x, 0,2,3,1)", what);
        CHECK(readers(m, "x") == 1, "%s: x read %zu times; its one Transpose is shared", what,
              readers(m, "x"));
        /* The residual Z of the second conv is the same NHWC x. */
        CHECK(c2->n_in == 4 && !strcmp(c2->inputs[3], c1->inputs[0]),
              "%s: the second ConvNhwc's residual is not the shared NHWC x", what);
        CHECK(!strcmp(c2->inputs[0], c1->outputs[0]), "%s: ConvNhwc 2 does not read ConvNhwc 1", what);
        CHECK(!strcmp(c2->inputs[1], "w2"), "%s: W must stay the OIHW initializer", what);
        const struct kiln_attr *act = kiln_node_attr(c2, "activation");
        CHECK(act && act->type == KILN_ATTR_STRING && !strcmp(act->s, "Relu"),
              "%s: the activation attribute was not kept", what);
        const struct kiln_attr *pads = kiln_node_attr(c1, "pads");
        CHECK(pads && pads->n == 4, "%s: Conv attributes not copied", what);
        check_shape(m, c1->inputs[0], "1,12,10,16", what);
        check_shape(m, c1->outputs[0], "1,12,10,16", what);
        /* The MaxPool reads ConvNhwc 2 in the region; y leaves it under its own name. */
        const struct kiln_node *mp = nth_op(m, "kiln.MaxPoolNhwc", 0);
        CHECK(mp && !strcmp(mp->inputs[0], c2->outputs[0]), "%s: MaxPoolNhwc does not read ConvNhwc 2",
              what);
        const struct kiln_node *tout = producer(m, "y");
        CHECK(tout && mp && is_op(tout, "Transpose") && has_perm(tout, 0, 3, 1, 2) &&
                  !strcmp(tout->inputs[0], mp->outputs[0]),
              "%s: y is not Transpose(MaxPoolNhwc, 0,3,1,2)", what);
        if (mp) check_shape(m, mp->outputs[0], "1,6,5,16", what);
    }
    check_shape(m, "y", "1,16,6,5", what);
    CHECK(count_op(m, "MaxPool") == 0 && count_op(m, "kiln.MaxPoolNhwc") == 1,
          "%s: MaxPool not converted", what);
    check_model(RESNET, 1, m, what);
    kiln_model_free(m);

    /* Without kiln ops the pass does not run. */
    m = optimized(RESNET, 1, false, "resnet, no kiln ops");
    if (m) {
        CHECK(count_op(m, "kiln.ConvNhwc") == 0 && count_op(m, "Transpose") == 0,
              "resnet without kiln ops: the nhwc pass ran");
        kiln_model_free(m);
    }
}

/* A symbolic batch; the region's value r1 is also a graph output (read inside and out). */
static const char *SYMBOLIC =
    "opset 13\n"
    "input x f32 N,8,9,11\n"
    "init w1 f32 24,8,3,3 rand\n"
    "node Conv x,w1 -> c1 pads=ints:1,1,1,1\n"
    "node Relu c1 -> r1\n"
    "init w2 f32 24,24,3,3 rand\n"
    "node Conv r1,w2 -> c2 pads=ints:1,1,1,1 strides=ints:2,2\n"
    "node Sigmoid c2 -> y\n"
    "output y\noutput r1\n";

static void test_symbolic_and_outputs(void)
{
    const char *what = "symbolic batch";
    kiln_model *m = optimized(SYMBOLIC, 2, true, what);
    if (!m) return;
    CHECK(count_op(m, "kiln.ConvNhwc") == 2, "%s: %zu ConvNhwc", what, count_op(m, "kiln.ConvNhwc"));
    CHECK(count_op(m, "Transpose") == 3, "%s: %zu Transposes, expected 3 (x in, r1 and y out)", what,
          count_op(m, "Transpose"));
    CHECK(kiln_model_output_count(m) == 2 && !strcmp(kiln_model_output_name(m, 0), "y") &&
              !strcmp(kiln_model_output_name(m, 1), "r1"),
          "%s: graph outputs renamed", what);
    const struct kiln_node *ty = producer(m, "y"), *tr = producer(m, "r1");
    CHECK(ty && is_op(ty, "Transpose") && has_perm(ty, 0, 3, 1, 2), "%s: y not from a Transpose", what);
    CHECK(tr && is_op(tr, "Transpose") && has_perm(tr, 0, 3, 1, 2), "%s: r1 not from a Transpose", what);
    check_shape(m, "y", "N,24,5,6", what);
    check_shape(m, "r1", "N,24,9,11", what);
    if (ty) check_shape(m, ty->inputs[0], "N,5,6,24", what);
    check_model(SYMBOLIC, 2, m, what);
    kiln_model_free(m);
}

/* ------------------------------------------------------------------ SE block */

/* Conv+Relu, squeeze-excitation (GlobalAveragePool, 1x1 Conv, Relu, 1x1 Conv, Sigmoid, Mul
 * of [N,C,1,1] with the image), 1x1 Conv, then GlobalAveragePool + Flatten (outside). */
static const char *SE_FMT =
    "opset %d\n"
    "input x f32 2,16,%s\n"
    "init w1 f32 32,16,3,3 rand\ninit b1 f32 32 rand\n"
    "node Conv x,w1,b1 -> c1 pads=ints:1,1,1,1\n"
    "node Relu c1 -> r1\n"
    "node GlobalAveragePool r1 -> sq\n"
    "init wa f32 8,32,1,1 rand\ninit ba f32 8 rand\n"
    "node Conv sq,wa,ba -> e1\n"
    "node Relu e1 -> e2\n"
    "init wb f32 32,8,1,1 rand\ninit bb f32 32 rand\n"
    "node Conv e2,wb,bb -> e3\n"
    "node Sigmoid e3 -> e4\n"
    "node Mul r1,e4 -> se\n"
    "init w3 f32 32,32,1,1 rand\n"
    "node Conv se,w3 -> c3\n"
    "node GlobalMaxPool c3 -> gp\n"
    "node Flatten gp -> y\n"
    "output y\n";

/* sym: H and W symbolic, so the global pools become ReduceMean / ReduceMax; known, they
 * become kiln.AveragePoolNhwc / MaxPoolNhwc with one 10 x 9 window. */
static void test_se(int opset, bool sym)
{
    char text[2048], what[64];
    snprintf(text, sizeof text, SE_FMT, opset, sym ? "h,w" : "10,9");
    snprintf(what, sizeof what, "SE block (opset %d, %s H and W)", opset, sym ? "symbolic" : "known");
    kiln_model *m = optimized(text, 3, true, what);
    if (!m) return;
    /* Known H and W: the fuse_se pass after this one makes the channels-last excitation
     * (pool, both 1x1 ConvNhwc, Mul) one kiln.SqueezeExcite (tests/unit/test_se_block.c). */
    CHECK(count_op(m, "kiln.ConvNhwc") == (sym ? 4u : 2u) && count_op(m, "kiln.SqueezeExcite") == !sym,
          "%s: %zu ConvNhwc, %zu SqueezeExcite", what, count_op(m, "kiln.ConvNhwc"),
          count_op(m, "kiln.SqueezeExcite"));
    CHECK(count_op(m, "GlobalAveragePool") == 0 && count_op(m, "GlobalMaxPool") == 0 &&
              count_op(m, "ReduceMean") == sym && count_op(m, "ReduceMax") == sym &&
              count_op(m, "kiln.AveragePoolNhwc") == 0 && count_op(m, "kiln.MaxPoolNhwc") == !sym,
          "%s: global pools not rewritten", what);
    /* gp's [N, 1, 1, C] -> [N, C, 1, 1] moves only dims of size 1: a Reshape (transpose_reshape) */
    CHECK(count_op(m, "Transpose") == 1, "%s: %zu Transposes, expected 1 (x in)", what, count_op(m, "Transpose"));
    for (int k = 1; k < 2 && !sym; k++) {
        const struct kiln_node *gp = nth_op(m, k ? "kiln.MaxPoolNhwc" : "kiln.AveragePoolNhwc", 0);
        const struct kiln_attr *ks = gp ? kiln_node_attr(gp, "kernel_shape") : NULL;
        CHECK(ks && ks->type == KILN_ATTR_INTS && ks->n == 2 && ks->ints[0] == 10 && ks->ints[1] == 9,
              "%s: the global pool needs kernel_shape [10, 9]", what);
        if (gp) check_shape(m, gp->outputs[0], "2,1,1,32", what);
    }
    const struct kiln_node *rm = nth_op(m, "ReduceMean", 0);
    if (rm) {
        CHECK(attr_int(rm, "keepdims", 0) == 1, "%s: ReduceMean keepdims", what);
        const struct kiln_attr *ax = kiln_node_attr(rm, "axes");
        if (opset < 18) {
            CHECK(rm->n_in == 1 && ax && ax->type == KILN_ATTR_INTS && ax->n == 2 && ax->ints[0] == 1 &&
                      ax->ints[1] == 2,
                  "%s: ReduceMean needs axes=[1,2] as an attribute", what);
        } else {
            const struct kiln_tensor *t = rm->n_in == 2 ? init_of(m, rm->inputs[1]) : NULL;
            CHECK(!ax && t && t->dtype == KILN_DTYPE_I64 && kiln_tensor_numel(t) == 2 &&
                      ((const int64_t *)t->data)[0] == 1 && ((const int64_t *)t->data)[1] == 2,
                  "%s: ReduceMean needs axes [1,2] as a constant input", what);
        }
        check_shape(m, rm->outputs[0], "2,1,1,32", what);
    }
    /* The excitation multiplies [N,H,W,C] by [N,1,1,C]. */
    const struct kiln_node *mul = nth_op(m, "Mul", 0);
    if (mul) {
        check_shape(m, mul->inputs[1], "2,1,1,32", what);
        if (!sym) check_shape(m, mul->outputs[0], "2,10,9,32", what);
    }
    const struct kiln_node *tg = producer(m, "gp");
    CHECK(tg && is_op(tg, "Reshape"), "%s: gp not from a Reshape", what);
    check_shape(m, "gp", "2,32,1,1", what);
    check_model(text, 3, m, what);
    kiln_model_free(m);
}

/* ------------------------------------------------------------------ DenseNet-like */

/* Pre-activation BN + Relu on the block input (not after a conv: stays a BN until this
 * pass), 1x1 Conv, BN + Relu (folded), 3x3 Conv, Concat on channels with the input, a
 * second BN + Relu, 1x1 transition Conv, AveragePool (kiln.AveragePoolNhwc). */
static const char *DENSE =
    "opset 13\n"
    "input x f32 1,16,8,12\n"
    "init s0 f32 16 pos\ninit t0 f32 16 rand\ninit m0 f32 16 rand\ninit v0 f32 16 pos\n"
    "node BatchNormalization x,s0,t0,m0,v0 -> n0 epsilon=float:0.001\n"
    "node Relu n0 -> r0\n"
    "init w1 f32 32,16,1,1 rand\n"
    "node Conv r0,w1 -> c1\n"
    "init s1 f32 32 pos\ninit t1 f32 32 rand\ninit m1 f32 32 rand\ninit v1 f32 32 pos\n"
    "node BatchNormalization c1,s1,t1,m1,v1 -> n1\n"
    "node Relu n1 -> r1\n"
    "init w2 f32 8,32,3,3 rand\n"
    "node Conv r1,w2 -> c2 pads=ints:1,1,1,1\n"
    "node Concat x,c2 -> cat axis=int:1\n"
    "init s2 f32 24 pos\ninit t2 f32 24 rand\ninit m2 f32 24 rand\ninit v2 f32 24 pos\n"
    "node BatchNormalization cat,s2,t2,m2,v2 -> n2\n"
    "node Relu n2 -> r2\n"
    "init w3 f32 16,24,1,1 rand\n"
    "node Conv r2,w3 -> c3\n"
    "node AveragePool c3 -> y kernel_shape=ints:2,2 strides=ints:2,2\n"
    "output y\n";

static void test_dense(void)
{
    const char *what = "densenet block";
    kiln_model *m = optimized(DENSE, 4, true, what);
    if (!m) return;
    CHECK(count_op(m, "kiln.ConvNhwc") == 3, "%s: %zu ConvNhwc", what, count_op(m, "kiln.ConvNhwc"));
    CHECK(count_op(m, "BatchNormalization") == 0, "%s: a BatchNormalization is left", what);
    /* The second BN + Relu reads the Concat alone: fuse_concat_sb makes the two one
     * kiln.ConcatScaleBias (test_concat_sb.c). */
    CHECK(count_op(m, "kiln.ScaleBias") == 1 && count_op(m, "kiln.ConcatScaleBias") == 1 &&
              count_op(m, "Relu") == 0 && count_op(m, "Mul") == 0 && count_op(m, "Add") == 0,
          "%s: %zu ScaleBias, %zu ConcatScaleBias, %zu Relu (2 BN + Relu: one ScaleBias, one with the Concat)",
          what, count_op(m, "kiln.ScaleBias"), count_op(m, "kiln.ConcatScaleBias"), count_op(m, "Relu"));
    CHECK(count_op(m, "Transpose") == 2, "%s: %zu Transposes, expected 2 (x in, y out)", what,
          count_op(m, "Transpose"));
    CHECK(readers(m, "x") == 1, "%s: x read %zu times (BN and Concat share one Transpose)", what,
          readers(m, "x"));
    /* The first BN + Relu: ScaleBias(x_nhwc, scale[16], shift[16]) activation Relu, the
     * constants in double. */
    const struct kiln_node *sb = nth_op(m, "kiln.ScaleBias", 0);
    const struct kiln_tensor *sc = sb && sb->n_in == 3 ? init_of(m, sb->inputs[1]) : NULL;
    const struct kiln_tensor *sh = sb && sb->n_in == 3 ? init_of(m, sb->inputs[2]) : NULL;
    const struct kiln_attr *act = sb ? kiln_node_attr(sb, "activation") : NULL;
    kiln_model *orig = load_text(DENSE, 4);
    CHECK(sc && sh && sc->rank == 1 && sc->dims[0] == 16 && sh->rank == 1 && sh->dims[0] == 16 && act &&
              act->type == KILN_ATTR_STRING && !strcmp(act->s, "Relu"),
          "%s: BN + Relu not as ScaleBias(x, [16], [16]) with Relu", what);
    if (sc && sh && orig && sc->rank == 1 && sc->dims[0] == 16) {
        const float *g = init_of(orig, "s0")->data, *b = init_of(orig, "t0")->data;
        const float *mu = init_of(orig, "m0")->data, *v = init_of(orig, "v0")->data;
        int bad = 0;
        for (int c = 0; c < 16; c++) {
            double s = g[c] / sqrt((double)v[c] + (double)0.001f);
            bad += ((const float *)sc->data)[c] != (float)s ||
                   ((const float *)sh->data)[c] != (float)(b[c] - mu[c] * s);
        }
        CHECK(bad == 0, "%s: %d BN scale/shift values differ from float(double math)", what, bad);
    }
    kiln_model_free(orig);
    const struct kiln_node *cat = nth_op(m, "kiln.ConcatScaleBias", 0);
    CHECK(cat && cat->n_in == 4 && count_op(m, "Concat") == 0, "%s: no ConcatScaleBias(s, t, x, c2)", what);
    if (cat) check_shape(m, cat->outputs[0], "1,8,12,24", what);
    const struct kiln_node *ty = producer(m, "y"), *ap = nth_op(m, "kiln.AveragePoolNhwc", 0);
    CHECK(ty && ap && is_op(ty, "Transpose") && has_perm(ty, 0, 3, 1, 2) &&
              !strcmp(ty->inputs[0], ap->outputs[0]),
          "%s: y not Transpose(AveragePoolNhwc)", what);
    CHECK(count_op(m, "AveragePool") == 0, "%s: AveragePool not converted", what);
    if (ap) check_shape(m, ap->outputs[0], "1,4,6,16", what);
    check_model(DENSE, 4, m, what);
    kiln_model_free(m);
}

/* ------------------------------------------------------------------ ShuffleNet-like */

/* Conv + Relu, MaxPool (ceil_mode, pads), the channel shuffle as exporters write it
 * (Reshape -> Transpose(0,2,1,3,4) -> Reshape), a Slice into two channel halves (axes 1 and
 * -3), a 1x1 Conv on one half, Concat with the other, AveragePool with count_include_pad.
 * %s: the batch dim ("1" or a symbol "N"); %s: the Reshapes' batch entry ("1" or "0", copy). */
static const char *SHUFFLE_FMT =
    "opset 13\n"
    "input x f32 %s,8,22,18\n"
    "init w0 f32 16,8,3,3 rand\ninit b0 f32 16 rand\n"
    "node Conv x,w0,b0 -> c0 pads=ints:1,1,1,1\n"
    "node Relu c0 -> r0\n"
    "node MaxPool r0 -> p0 kernel_shape=ints:3,3 strides=ints:2,2 pads=ints:1,1,1,1 ceil_mode=int:1\n"
    "init s5 i64 5 = %s,2,8,12,10\ninit s4 i64 4 = %s,-1,12,10\n"
    "node Reshape p0,s5 -> rs\n"
    "node Transpose rs -> tr perm=ints:0,2,1,3,4\n"
    "node Reshape tr,s4 -> sh\n"
    "init st0 i64 1 = 0\ninit en0 i64 1 = 8\ninit ax0 i64 1 = 1\n"
    "init st1 i64 1 = 8\ninit en1 i64 1 = 16\ninit ax1 i64 1 = -3\n"
    "node Slice sh,st0,en0,ax0 -> a\n"
    "node Slice sh,st1,en1,ax1 -> b\n"
    "init w1 f32 8,8,1,1 rand\n"
    "node Conv b,w1 -> cb\n"
    "node Relu cb -> rb\n"
    "node Concat a,rb -> cat axis=int:1\n"
    "node AveragePool cat -> y kernel_shape=ints:3,3 strides=ints:2,2 pads=ints:1,1,1,1 "
    "count_include_pad=int:1\n"
    "output y\n";

static void test_shuffle(bool symbolic)
{
    const char *what = symbolic ? "shufflenet block, symbolic batch" : "shufflenet block";
    char text[2048];
    snprintf(text, sizeof text, SHUFFLE_FMT, symbolic ? "N" : "1", symbolic ? "0" : "1",
             symbolic ? "0" : "1");
    kiln_model *m = optimized(text, 5, true, what);
    if (!m) return;
    CHECK(count_op(m, "kiln.ConvNhwc") == 2 && count_op(m, "kiln.MaxPoolNhwc") == 1 &&
              count_op(m, "kiln.AveragePoolNhwc") == 1 && count_op(m, "kiln.ChannelShuffle") == 1 &&
              count_op(m, "Reshape") == 0 && count_op(m, "Slice") == 2,
          "%s: %zu ConvNhwc, %zu MaxPoolNhwc, %zu AveragePoolNhwc, %zu ChannelShuffle, %zu Reshape, "
          "%zu Slice",
          what, count_op(m, "kiln.ConvNhwc"), count_op(m, "kiln.MaxPoolNhwc"),
          count_op(m, "kiln.AveragePoolNhwc"), count_op(m, "kiln.ChannelShuffle"), count_op(m, "Reshape"),
          count_op(m, "Slice"));
    CHECK(count_op(m, "Transpose") == 2, "%s: %zu Transposes, expected 2 (x in, y out)", what,
          count_op(m, "Transpose"));
    const struct kiln_node *cs = nth_op(m, "kiln.ChannelShuffle", 0);
    CHECK(cs && attr_int(cs, "axis", 1) == 3 && attr_int(cs, "group", 0) == 2,
          "%s: ChannelShuffle not on axis 3 with group 2", what);
    const struct kiln_node *mp = nth_op(m, "kiln.MaxPoolNhwc", 0);
    CHECK(mp && cs && !strcmp(cs->inputs[0], mp->outputs[0]), "%s: the shuffle does not read the pool",
          what);
    if (mp) check_shape(m, mp->outputs[0], symbolic ? "N,12,10,16" : "1,12,10,16", what);
    for (size_t k = 0; k < 2; k++) {
        const struct kiln_node *sl = nth_op(m, "Slice", k);
        const struct kiln_tensor *ax = sl && sl->n_in > 3 ? init_of(m, sl->inputs[3]) : NULL;
        int64_t v = !ax ? -1 : ax->dtype == KILN_DTYPE_I64 ? ((const int64_t *)ax->data)[0]
                                                           : ((const int32_t *)ax->data)[0];
        CHECK(ax && kiln_tensor_numel(ax) == 1 && v == 3,
              "%s: Slice %zu axes not the constant [3]", what, k);
        if (sl && cs) CHECK(!strcmp(sl->inputs[0], cs->outputs[0]), "%s: Slice %zu does not read the shuffle", what, k);
        if (sl) check_shape(m, sl->outputs[0], symbolic ? "N,12,10,8" : "1,12,10,8", what);
    }
    const struct kiln_node *ty = producer(m, "y"), *ap = nth_op(m, "kiln.AveragePoolNhwc", 0);
    CHECK(ty && ap && is_op(ty, "Transpose") && has_perm(ty, 0, 3, 1, 2) && !strcmp(ty->inputs[0], ap->outputs[0]),
          "%s: y not Transpose(AveragePoolNhwc)", what);
    check_shape(m, "y", symbolic ? "N,16,6,5" : "1,16,6,5", what);
    check_model(text, 5, m, what);
    kiln_model_free(m);

    /* Without kiln ops: nothing changes (not even the shuffle, which needs a kiln op). */
    m = optimized(text, 5, false, what);
    if (m) {
        CHECK(count_op(m, "Reshape") == 2 && count_op(m, "kiln.ChannelShuffle") == 0 &&
                  count_op(m, "MaxPool") == 1,
              "%s, no kiln ops: the graph changed", what);
        kiln_model_free(m);
    }
}

/* Slice-1 (opset 9: starts, ends, axes as attributes) on channels. */
static void test_slice_attrs(void)
{
    const char *what = "Slice-1 on channels";
    const char *text = "opset 9\ninput x f32 1,8,10,10\ninit w0 f32 16,8,3,3 rand\n"
                       "node Conv x,w0 -> c0 pads=ints:1,1,1,1\n"
                       "node Slice c0 -> s starts=ints:4 ends=ints:12 axes=ints:1\n"
                       "init w1 f32 8,8,3,3 rand\nnode Conv s,w1 -> y pads=ints:1,1,1,1\noutput y\n";
    kiln_model *m = optimized(text, 6, true, what);
    if (!m) return;
    const struct kiln_node *sl = nth_op(m, "Slice", 0);
    const int64_t *axes = NULL;
    const struct kiln_attr *a = sl ? kiln_node_attr(sl, "axes") : NULL;
    if (a && a->type == KILN_ATTR_INTS && a->n == 1) axes = a->ints;
    CHECK(axes && axes[0] == 3 && count_op(m, "Transpose") == 2 && count_op(m, "kiln.ConvNhwc") == 2,
          "%s: not converted (axes %lld, %zu Transposes)", what, axes ? (long long)axes[0] : -1LL,
          count_op(m, "Transpose"));
    check_model(text, 6, m, what);
    kiln_model_free(m);
}

/* fuse_channel_shuffle alone (no convolution, so the graph stays NCHW): the shuffle becomes
 * kiln.ChannelShuffle on axis 1 with the same outputs; look-alikes stay. */
static void test_shuffle_fusion_only(void)
{
    const char *what = "shuffle, NCHW";
    const char *text = "opset 13\ninput x f32 2,12,4,6\n"
                       "init s5 i64 5 = 2,3,4,4,6\ninit s4 i64 4 = 2,12,4,6\n"
                       "node Reshape x,s5 -> a\nnode Transpose a -> b perm=ints:0,2,1,3,4\n"
                       "node Reshape b,s4 -> y\noutput y\n";
    kiln_model *m = optimized(text, 9, true, what);
    if (m) {
        const struct kiln_node *cs = nth_op(m, "kiln.ChannelShuffle", 0);
        CHECK(cs && attr_int(cs, "group", 0) == 3 && attr_int(cs, "axis", 0) == 1 &&
                  count_op(m, "Reshape") == 0 && count_op(m, "Transpose") == 0,
              "%s: not one ChannelShuffle(group 3, axis 1)", what);
        check_model(text, 9, m, what);
        kiln_model_free(m);
    }
    /* Another permutation (the last two dims swapped), and a last Reshape that is not back
     * to [N, C, H, W]: not a channel shuffle. */
    const char *others[] = {
        "opset 13\ninput x f32 1,8,4,6\ninit s5 i64 5 = 1,2,4,4,6\ninit s4 i64 4 = 1,8,4,6\n"
        "node Reshape x,s5 -> a\nnode Transpose a -> b perm=ints:0,1,2,4,3\n"
        "node Reshape b,s4 -> y\noutput y\n",
        "opset 13\ninput x f32 1,8,4,6\ninit s5 i64 5 = 1,2,4,4,6\ninit s3 i64 3 = 1,32,6\n"
        "node Reshape x,s5 -> a\nnode Transpose a -> b perm=ints:0,2,1,3,4\n"
        "node Reshape b,s3 -> y\noutput y\n",
        /* The transposed value is read twice. */
        "opset 13\ninput x f32 1,8,4,6\ninit s5 i64 5 = 1,2,4,4,6\ninit s4 i64 4 = 1,8,4,6\n"
        "node Reshape x,s5 -> a\nnode Transpose a -> b perm=ints:0,2,1,3,4\n"
        "node Reshape b,s4 -> y\nnode Relu b -> z\noutput y\noutput z\n",
    };
    for (size_t i = 0; i < sizeof others / sizeof *others; i++) {
        char w[64];
        snprintf(w, sizeof w, "shuffle look-alike %zu", i);
        m = optimized(others[i], 9, true, w);
        if (!m) continue;
        CHECK(count_op(m, "kiln.ChannelShuffle") == 0 && count_op(m, "Reshape") == 2,
              "%s: fused (%zu ChannelShuffle)", w, count_op(m, "kiln.ChannelShuffle"));
        kiln_model_free(m);
    }
}

/* A ShuffleNetV2 unit boundary in a region: Concat of two branches, the shuffle, two half
 * Slices (the high one with an end past the dim, clamped): kiln.ShuffleSplit once the
 * region is channels-last. */
static void test_shuffle_split(void)
{
    const char *what = "shuffle split";
    const char *text = "opset 13\ninput x f32 1,16,8,10\n"
                       "init w0 f32 16,16,3,3 rand\nnode Conv x,w0 -> c0 pads=ints:1,1,1,1\n"
                       "init w1 f32 16,16,1,1 rand\nnode Conv x,w1 -> c1\n"
                       "node Concat c0,c1 -> cat axis=int:1\n"
                       "init s5 i64 5 = 1,2,16,8,10\ninit s4 i64 4 = 1,32,8,10\n"
                       "node Reshape cat,s5 -> rs\nnode Transpose rs -> tr perm=ints:0,2,1,3,4\n"
                       "node Reshape tr,s4 -> sh\n"
                       "init z i64 1 = 0\ninit h i64 1 = 16\ninit big i64 1 = 1000\ninit ax i64 1 = 1\n"
                       "node Slice sh,z,h,ax -> lo\nnode Slice sh,h,big,ax -> hi\n"
                       "init w2 f32 16,16,3,3 rand\nnode Conv lo,w2 -> a pads=ints:1,1,1,1\n"
                       "node Relu hi -> b\nnode Concat a,b -> y axis=int:1\noutput y\n";
    kiln_model *m = optimized(text, 10, true, what);
    if (!m) return;
    CHECK(count_op(m, "kiln.ShuffleSplit") == 1 && count_op(m, "kiln.ChannelShuffle") == 0 &&
              count_op(m, "Slice") == 0 && count_op(m, "Concat") == 1 && count_op(m, "Transpose") == 2,
          "%s: %zu ShuffleSplit, %zu ChannelShuffle, %zu Slice, %zu Concat, %zu Transpose", what,
          count_op(m, "kiln.ShuffleSplit"), count_op(m, "kiln.ChannelShuffle"), count_op(m, "Slice"),
          count_op(m, "Concat"), count_op(m, "Transpose"));
    const struct kiln_node *ss = nth_op(m, "kiln.ShuffleSplit", 0);
    if (ss) {
        check_shape(m, ss->outputs[0], "1,8,10,16", what);
        check_shape(m, ss->outputs[1], "1,8,10,16", what);
    }
    check_model(text, 10, m, what);
    kiln_model_free(m);
}

/* ------------------------------------------------------------------ MobileNet-like */

/* Expand 1x1 + Relu6, Mul by a per-channel constant [64,1,1], Add of a scalar, depthwise 3x3
 * + Relu6, project 1x1, a [16,H,W] constant Sub (re-laid as [1,H,W,16]), residual Add. */
static const char *MOBILE =
    "opset 13\n"
    "input x f32 1,16,10,14\n"
    "init lo f32 - = 0\ninit hi f32 - = 6\n"
    "init we f32 64,16,1,1 rand\ninit be f32 64 rand\n"
    "node Conv x,we,be -> e\n"
    "node Clip e,lo,hi -> e6\n"
    "init ch f32 64,1,1 pos\n"
    "node Mul e6,ch -> em\n"
    "init k f32 1 = 0.25\n"
    "node Add em,k -> ea\n"
    "init wd f32 64,1,3,3 rand\ninit bd f32 64 rand\n"
    "node Conv ea,wd,bd -> d pads=ints:1,1,1,1 group=int:64\n"
    "node Clip d,lo,hi -> d6\n"
    "init wp f32 16,64,1,1 rand\n"
    "node Conv d6,wp -> p\n"
    "init full f32 16,10,14 rand\n"
    "node Sub p,full -> ps\n"
    "node Add ps,x -> y\n"
    "output y\n";

static void test_mobile(void)
{
    const char *what = "mobilenet block";
    kiln_model *m = optimized(MOBILE, 5, true, what);
    if (!m) return;
    CHECK(count_op(m, "kiln.ConvNhwc") == 3, "%s: %zu ConvNhwc", what, count_op(m, "kiln.ConvNhwc"));
    CHECK(count_op(m, "Transpose") == 2, "%s: %zu Transposes, expected 2", what, count_op(m, "Transpose"));
    const struct kiln_node *dw = nth_op(m, "kiln.ConvNhwc", 1);
    CHECK(dw && attr_int(dw, "group", 1) == 64, "%s: the depthwise conv lost its group", what);
    const struct kiln_node *mul = nth_op(m, "Mul", 0);
    const struct kiln_tensor *ch = mul ? init_of(m, mul->inputs[1]) : NULL;
    const kiln_model *mm = m;
    kiln_model *orig = load_text(MOBILE, 5);
    const struct kiln_tensor *och = orig ? init_of(orig, "ch") : NULL;
    CHECK(ch && ch->rank == 1 && ch->dims[0] == 64 && och &&
              !memcmp(ch->data, och->data, 64 * sizeof(float)),
          "%s: the [64,1,1] constant not re-laid as [64]", what);
    const struct kiln_node *add = nth_op(m, "Add", 0);
    CHECK(add && !strcmp(add->inputs[1], "k"), "%s: the scalar constant must be kept", what);
    const struct kiln_node *sub = nth_op(m, "Sub", 0);
    const struct kiln_tensor *full = sub ? init_of(mm, sub->inputs[1]) : NULL;
    const struct kiln_tensor *ofull = orig ? init_of(orig, "full") : NULL;
    bool ok = full && ofull && full->rank == 4 && full->dims[0] == 1 && full->dims[1] == 10 &&
              full->dims[2] == 14 && full->dims[3] == 16;
    CHECK(ok, "%s: the [16,10,14] constant not re-laid as [1,10,14,16]", what);
    if (ok) {
        int bad = 0;
        for (int c = 0; c < 16; c++)
            for (int h = 0; h < 10; h++)
                for (int w = 0; w < 14; w++)
                    bad += ((const float *)full->data)[(h * 14 + w) * 16 + c] !=
                           ((const float *)ofull->data)[(c * 10 + h) * 14 + w];
        CHECK(bad == 0, "%s: %d re-laid elements misplaced", what, bad);
    }
    kiln_model_free(orig);
    check_shape(m, "y", "1,16,10,14", what);
    check_model(MOBILE, 5, m, what);
    kiln_model_free(m);
}

/* ------------------------------------------------------------------ first convolution */

/* A CNN's stem: a 3-channel image read by a strided Conv (+ BN + Relu), then a residual 3x3
 * and a MaxPool. FIRST_FMT's %s is the batch ("1" or "N"); %d the image's channels, the first
 * conv's input channels and its group. */
static const char *FIRST_FMT =
    "opset 13\n"
    "input x f32 %s,%d,23,20\n"
    "init w1 f32 16,%d,3,3 rand\ninit b1 f32 16 rand\n"
    "init s f32 16 pos\ninit t f32 16 rand\ninit mu f32 16 rand\ninit var f32 16 pos\n"
    "node Conv x,w1,b1 -> c1 pads=ints:1,1,1,1 strides=ints:2,2 group=int:%d\n"
    "node BatchNormalization c1,s,t,mu,var -> bn1\n"
    "node Relu bn1 -> r1\n"
    "init w2 f32 16,16,3,3 rand\n"
    "node Conv r1,w2 -> c2 pads=ints:1,1,1,1\n"
    "node Add c2,r1 -> a2\n"
    "node MaxPool a2 -> y kernel_shape=ints:2,2 strides=ints:2,2\n"
    "output y\n";

/* The first convolution reads the planar image itself (x_nchw 1, no entry Transpose) when
 * the image has at most 4 channels and every reader of it in the region is a group-1
 * convolution's X; else the Transpose stays (5 channels; a grouped first convolution; the
 * image also read by an element-wise node of the region: test_two_first_convs). Outputs
 * equal the original's. */
static void test_first_conv(void)
{
    char text[2048], what[96];
    for (int sym = 0; sym < 2; sym++)
        for (int kind = 0; kind < 3; kind++) { /* 0: 3 channels; 1: 5 channels; 2: 4, group 2 */
            int ch = kind == 0 ? 3 : kind == 1 ? 5 : 4, group = kind == 2 ? 2 : 1;
            snprintf(text, sizeof text, FIRST_FMT, sym ? "N" : "1", ch, ch / group, group);
            snprintf(what, sizeof what, "first conv, %d channels, group %d, %s batch", ch, group,
                     sym ? "symbolic" : "static");
            kiln_model *m = optimized(text, 11, true, what);
            if (!m) continue;
            const struct kiln_node *c1 = nth_op(m, "kiln.ConvNhwc", 0);
            bool planar = kind == 0;
            CHECK(count_op(m, "kiln.ConvNhwc") == 2, "%s: %zu ConvNhwc", what, count_op(m, "kiln.ConvNhwc"));
            CHECK(count_op(m, "Transpose") == (planar ? 1u : 2u), "%s: %zu Transposes, expected %d", what,
                  count_op(m, "Transpose"), planar ? 1 : 2);
            if (c1) {
                CHECK(attr_int(c1, "x_nchw", 0) == (planar ? 1 : 0), "%s: x_nchw %lld", what,
                      (long long)attr_int(c1, "x_nchw", 0));
                const struct kiln_node *tin = producer(m, c1->inputs[0]);
                CHECK(planar ? !strcmp(c1->inputs[0], "x")
                             : tin && is_op(tin, "Transpose") && has_perm(tin, 0, 2, 3, 1),
                      "%s: the first ConvNhwc reads '%s'", what, c1->inputs[0]);
                check_shape(m, c1->outputs[0], sym ? "N,12,10,16" : "1,12,10,16", what);
            }
            check_shape(m, "y", sym ? "N,16,6,5" : "1,16,6,5", what);
            check_model(text, 11, m, what);
            kiln_model_free(m);
        }
}

/* A first convolution larger than 3x3 (ResNet's stem is 7x7; 5x5 here keeps the sums short
 * for the tolerance) reads the image planar too (the kernel runs oneDNN on transposed row
 * slices there at AVX-512). */
static void test_first_conv_7x7(void)
{
    const char *what = "first conv 5x5";
    const char *text = "opset 13\ninput x f32 1,3,30,30\ninit w f32 16,3,5,5 rand\n"
                       "node Conv x,w -> c pads=ints:2,2,2,2 strides=ints:2,2\nnode Relu c -> r\n"
                       "init w2 f32 16,16,3,3 rand\nnode Conv r,w2 -> y pads=ints:1,1,1,1\noutput y\n";
    kiln_model *m = optimized(text, 13, true, what);
    if (!m) return;
    const struct kiln_node *c1 = nth_op(m, "kiln.ConvNhwc", 0);
    CHECK(c1 && attr_int(c1, "x_nchw", 0) == 1 && count_op(m, "Transpose") == 1,
          "%s: x_nchw %lld, %zu Transposes (expected 1 and 1)", what,
          c1 ? (long long)attr_int(c1, "x_nchw", 0) : -1LL, count_op(m, "Transpose"));
    check_model(text, 13, m, what);
    kiln_model_free(m);
}

/* Two branches from the image: two first convolutions (3x3 and 1x1, both stride 2) read it
 * planar; the same image also read by a Mul in the region keeps the Transpose for all. */
static const char *TWO_FIRST_FMT = "opset 13\n"
                                   "input x f32 1,3,16,16\n"
                                   "init wa f32 16,3,3,3 rand\ninit wb f32 16,3,1,1 rand\n"
                                   "node Conv x,wa -> a pads=ints:1,1,1,1 strides=ints:2,2\n"
                                   "node Conv %s,wb -> b strides=ints:2,2\n"
                                   "node Add a,b -> s\n"
                                   "init w2 f32 16,16,3,3 rand\n"
                                   "node Conv s,w2 -> y pads=ints:1,1,1,1\n"
                                   "%s"
                                   "output y\n";

static void test_two_first_convs(void)
{
    char text[1024];
    for (int mul = 0; mul < 2; mul++) {
        const char *what = mul ? "two first convs, image also read by a Mul" : "two first convs";
        snprintf(text, sizeof text, TWO_FIRST_FMT, mul ? "xm" : "x",
                 mul ? "init k f32 1 = 0.5\nnode Mul x,k -> xm\n" : "");
        kiln_model *m = optimized(text, 12, true, what);
        if (!m) continue;
        size_t planar = 0;
        for (size_t k = 0; k < count_op(m, "kiln.ConvNhwc"); k++)
            planar += attr_int(nth_op(m, "kiln.ConvNhwc", k), "x_nchw", 0) == 1;
        CHECK(count_op(m, "kiln.ConvNhwc") == 3 && planar == (mul ? 0u : 2u),
              "%s: %zu ConvNhwc, %zu with x_nchw", what, count_op(m, "kiln.ConvNhwc"), planar);
        CHECK(count_op(m, "Transpose") == (mul ? 2u : 1u), "%s: %zu Transposes", what,
              count_op(m, "Transpose"));
        check_model(text, 12, m, what);
        kiln_model_free(m);
    }
}

/* ------------------------------------------------------------------ left alone */

static void unchanged(const char *text, const char *what)
{
    kiln_model *m = optimized(text, 6, true, what);
    if (!m) return;
    CHECK(count_op(m, "kiln.ConvNhwc") == 0 && count_op(m, "Transpose") == 0,
          "%s: converted (%zu ConvNhwc, %zu Transpose)", what, count_op(m, "kiln.ConvNhwc"),
          count_op(m, "Transpose"));
    kiln_model_free(m);
}

static void test_left_alone(void)
{
    /* 4 channels, 3x3: 4*9 = 36 MAC per output element against 2 converted elements per
     * output element (in and out): ratio 18 < 20. */
    unchanged("opset 13\ninput x f32 1,4,16,16\ninit w f32 4,4,3,3 rand\n"
              "node Conv x,w -> c pads=ints:1,1,1,1\nnode Relu c -> y\noutput y\n",
              "narrow conv");
    /* Depthwise 3x3 on 8 channels: 9 MAC per output element, counted 4 times (grouped
     * MACs: GROUPED_MAC_WEIGHT), against 2 converted elements: ratio 18 < 20. */
    unchanged("opset 13\ninput x f32 1,8,10,10\ninit w f32 8,1,3,3 rand\n"
              "node Conv x,w -> y pads=ints:1,1,1,1 group=int:8\noutput y\n",
              "narrow depthwise conv");
    /* No conv: element-wise ops and a global pool only. */
    unchanged("opset 13\ninput x f32 1,16,16,16\ninput z f32 1,16,16,16\n"
              "node Relu x -> r\nnode Add r,z -> a\nnode GlobalAveragePool a -> y\noutput y\n",
              "no conv");
    /* Weights that are a graph input. */
    unchanged("opset 13\ninput x f32 1,32,16,16\ninput w f32 32,32,3,3\n"
              "node Conv x,w -> y pads=ints:1,1,1,1\noutput y\n",
              "conv weights not constant");
    /* A 1-D conv and a 3-D conv: 2-D only. */
    unchanged("opset 13\ninput x f32 1,32,64\ninit w f32 32,32,3 rand\n"
              "node Conv x,w -> y pads=ints:1,1\noutput y\n",
              "1-D conv");
    unchanged("opset 13\ninput x f32 1,32,8,8,8\ninit w f32 32,32,3,3,3 rand\n"
              "node Conv x,w -> y pads=ints:1,1,1,1,1,1\noutput y\n",
              "3-D conv");
    /* The ratio counts the conversions of every region separately: two convs split by an
     * LpPool (no NHWC form) each pay for themselves, the narrow one next to them does not. */
    const char *text = "opset 13\ninput x f32 1,32,16,16\ninit w1 f32 32,32,3,3 rand\n"
                       "node Conv x,w1 -> c1 pads=ints:1,1,1,1\n"
                       "node LpPool c1 -> p kernel_shape=ints:2,2 strides=ints:2,2\n"
                       "init w2 f32 2,32,1,1 rand\nnode Conv p,w2 -> c2\n"
                       "node Relu c2 -> y\noutput y\n";
    kiln_model *m = optimized(text, 7, true, "two regions");
    if (m) {
        CHECK(count_op(m, "kiln.ConvNhwc") == 1 && count_op(m, "kiln.FusedConv") == 1,
              "two regions: the first only should convert (%zu ConvNhwc)", count_op(m, "kiln.ConvNhwc"));
        check_model(text, 7, m, "two regions");
        kiln_model_free(m);
    }
}

/* Depthwise 5x5 on 8 channels: 25 MAC per output element against 2 converted elements,
 * ratio 12.5 as dense MACs (which would stay NCHW), 50 with grouped MACs counted 4 times
 * (ConvNeXt's 7x7 depthwise layers: kiln's NCHW depthwise kernel is the slow one). */
static void test_depthwise_weight(void)
{
    const char *text = "opset 13\ninput x f32 1,8,10,10\ninit w f32 8,1,5,5 rand\n"
                       "node Conv x,w -> y pads=ints:2,2,2,2 group=int:8\noutput y\n";
    kiln_model *m = optimized(text, 5, true, "depthwise 5x5");
    if (!m) return;
    CHECK(count_op(m, "kiln.ConvNhwc") == 1 && count_op(m, "Conv") == 0,
          "depthwise 5x5: should convert (%zu ConvNhwc)", count_op(m, "kiln.ConvNhwc"));
    check_model(text, 5, m, "depthwise 5x5");
    kiln_model_free(m);
}

/* Every allocation of the optimizer run fails in turn (the SE block: every kind of rewrite
 * but BN): KILN_E_NOMEM with the model as it was, or success with the regions converted. */
static void test_nomem(void)
{
    char text[2048];
    snprintf(text, sizeof text, SE_FMT, 18, "10,9");
    struct buf b;
    rng_seed(8);
    parse_model(text, &b);
    size_t failures = 0;
    bool done = false;
    for (long n = 1; n < 200000 && !done; n++) {
        kiln_model *m = NULL;
        kiln_err e = {0};
        if (kiln_model_load_buffer(b.p, b.len, NULL, &m, &e) != KILN_OK) break;
        size_t nodes = m->graph->n_nodes;
        kiln_optimize_options o = {.level = KILN_OPT_EXTENDED, .keep_fused = 1};
        kiln_alloc_fail_after(n);
        kiln_status st = kiln_model_optimize(m, &o, &e);
        kiln_alloc_fail_after(0);
        if (st == KILN_OK) {
            CHECK(count_op(m, "kiln.ConvNhwc") == 2 && count_op(m, "kiln.SqueezeExcite") == 1,
                  "nomem: %zu ConvNhwc, %zu SqueezeExcite after success", count_op(m, "kiln.ConvNhwc"),
                  count_op(m, "kiln.SqueezeExcite"));
            done = true;
        } else {
            failures++;
            CHECK(st == KILN_E_NOMEM, "allocation %ld: status %d (%s)", n, st, e.msg);
            CHECK(m->graph->n_nodes == nodes && count_op(m, "kiln.ConvNhwc") == 0 &&
                      count_op(m, "Conv") == 4,
                  "allocation %ld: model changed (%zu nodes)", n, m->graph->n_nodes);
        }
        kiln_model_free(m);
    }
    CHECK(done && failures > 0, "nomem: %zu failures, success %d", failures, done);
    free(b.p);
}

int main(void)
{
    rng_seed(20261);
    test_resnet();
    test_symbolic_and_outputs();
    test_se(13, false);
    test_se(18, false);
    test_se(13, true);
    test_se(18, true);
    test_dense();
    test_shuffle(false);
    test_shuffle(true);
    test_slice_attrs();
    test_shuffle_fusion_only();
    test_shuffle_split();
    test_mobile();
    test_first_conv();
    test_first_conv_7x7();
    test_two_first_convs();
    test_left_alone();
    test_depthwise_weight();
    test_nomem();
    return test_summary("test_opt_nhwc");
}
