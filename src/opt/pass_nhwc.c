/* pass_nhwc.c: runs the convolutional regions of a CNN in channels-last layout (NHWC), with
 * one Transpose at each boundary, so that kiln.ConvNhwc (oneDNN's NHWC kernels) needs no
 * conversion around every convolution (docs/optimizer.md, "nhwc").
 *
 * Runs after the fusion passes, so Conv + BatchNormalization + activation + residual Add are
 * kiln.FusedConv already.
 *
 * 1. Candidates. Every tensor a candidate moves is a 4-D float32 tensor with a known channel
 *    count (batch and spatial dims may be symbolic):
 *      Conv / kiln.FusedConv with a 4-D constant W (an initializer) and constant B
 *        -> kiln.ConvNhwc(X, W, B, Z) (W stays OIHW; the attributes are copied);
 *      unary element-wise ops (Relu, Clip with constant bounds, Sigmoid, Gelu, Exp, ...)
 *        -> the same op;
 *      Add, Sub, Mul, Div, Max, Min, Pow, PRelu with two inputs, each a 4-D tensor (any
 *        broadcast: the same permutation of both operands keeps it), a one-element
 *        constant (kept) or a float32 constant of rank <= 4 (re-laid: a per-channel one as
 *        [C], another one permuted to NHWC, in a new initializer) -> the same op;
 *      inference BatchNormalization with constant parameters -> kiln.ScaleBias(x, s, t):
 *        x * s + t, s = gamma / sqrt(var + eps), t = beta - mean * s per channel ([C]
 *        initializers, computed in double, rounded to float once), with the activation that
 *        is the BN's only reader (Relu, Clip, ...: fu_activation) when it is in the region;
 *      Concat on axis 1 (-3), up to MAX_IN inputs -> axis 3;
 *      GlobalAveragePool / GlobalMaxPool -> kiln.AveragePoolNhwc / kiln.MaxPoolNhwc with
 *        kernel_shape [H, W] when H and W are known, else ReduceMean / ReduceMax over axes
 *        [1, 2], keepdims 1 (axes as an attribute below opset 18, a constant input from 18);
 *      2-D MaxPool (Indices unread) / AveragePool, any attributes -> kiln.MaxPoolNhwc /
 *        kiln.AveragePoolNhwc, the attributes copied;
 *      kiln.ChannelShuffle on axis 1 (-3) (pass_fuse_channel_shuffle.c makes it from
 *        ShuffleNet's Reshape -> Transpose -> Reshape, just before this pass) -> axis 3;
 *      Slice with constant axes (an int32/int64 input 3, or Slice-1's attribute) -> the same
 *        with each axis moved to its NHWC place (0 -> 0, 1 -> 3, 2 -> 1, 3 -> 2) in a new
 *        constant of the same type (starts / ends / steps are kept: they index the same
 *        dims).
 *    Everything else (LpPool, Split, Resize, Reshape, Flatten, Gemm, ...) stays NCHW.
 * 2. Regions: candidates joined through the activations they pass to each other
 *    (union-find), so a value needs converting only at a region's boundary: each activation
 *    entering it from outside, each region value read outside it (a node outside, a
 *    subgraph, a graph output).
 * 3. A region is converted when it has a convolution and its convolutions' multiply-adds
 *    are at least NHWC_RATIO times the elements converted at its boundary (unknown dims
 *    count as 1 on both sides). A transpose costs a few ns per element; the NHWC kernels
 *    save a fraction of the conv's time, a few hundredths of a ns per MAC (grouped and
 *    depthwise MACs count GROUPED_MAC_WEIGHT times: they save several times more).
 * 4. Rewrite: each entering value gets one Transpose(perm [0, 2, 3, 1]), shared by all its
 *    readers in regions; region nodes are replaced by their NHWC forms writing new values
 *    ("<name>_nhwc"); each value leaving a region is made by Transpose(perm [0, 3, 1, 2])
 *    under its ORIGINAL name, so readers outside, graph outputs and their declared shapes
 *    stay as they were. The commit infers the new values' shapes.
 *
 * Numerics: element-wise ops, Concat, Slice and the shuffle compute the same values in
 * another order of memory (bitwise equal), and so do the NHWC pools (each window in the
 * NCHW 2-D kernel's order); ConvNhwc sums in another order than the NCHW Conv;
 * BatchNormalization as ScaleBias rounds the scale and shift to float (a few ulp). Regions
 * never contain a converted node, so the pass reaches a fixed point: a converted region
 * holds no Conv any more, and the NHWC ops left in it (element-wise, Slice on axis 3) never
 * form a region with one. Needs kiln ops.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "opt/fuse_util.h"

/* Convolution MACs per converted element a region needs to be converted. */
#define NHWC_RATIO 20.0
/* A grouped or depthwise multiply-add counts this many times: kiln's NCHW depthwise kernel
 * (conv.c) runs ConvNeXt-T's 7x7 depthwise layers at 56x56x96 in 4.4x the time of ConvNhwc
 * (oneDNN's depthwise JIT): 0.15 ns saved per MAC, against a few hundredths for a dense
 * convolution. */
#define GROUPED_MAC_WEIGHT 4.0
#define MAX_IN 64 /* DenseNet concatenates up to 25 feature maps; more stays NCHW */
/* A group-1 convolution reading a value that enters its region with at most FIRST_MAX_C
 * channels (a model's RGB image) reads it planar (kiln.ConvNhwc x_nchw 1) instead of through
 * a Transpose, when every reader of the value in the region is such a convolution. The kernel
 * then runs kiln's planar kernel (AVX-512, up to 3x3: as fast as oneDNN's NHWC one on
 * MobileNetV2's 3 -> 32 layer), or oneDNN's on row slices each transposed into its thread's
 * buffer (the Transpose's work, split over the threads and read back from L2); either way the
 * Transpose node (70-85 us a run on a 224x224 image) goes (docs/notes-firstconv.md). */
#define FIRST_MAX_C 4

enum role { R_NONE = 0, R_CONV, R_EW, R_BN, R_CONCAT, R_GPOOL, R_POOL, R_SLICE, R_SHUFFLE };
/* Per input: an activation in the region's layout, a constant re-laid to NHWC, or kept as
 * it is (a one-element constant, an absent optional input, W and B of a conv). */
enum { IN_KEEP = 0, IN_ACT, IN_CONST };

struct ninfo {
    uint8_t role;
    bool absorbed; /* an activation a BN's kiln.ScaleBias applies (written there) */
    bool x_nchw;   /* a convolution reading its entering X planar (FIRST_MAX_C) */
    uint8_t in_kind[MAX_IN];
    double macs;
};

/* A 4-D float32 tensor with a known channel count; d[] receives the dims (-1 unknown). */
static bool image4(const struct kiln_graph *g, const char *name, int64_t d[4])
{
    kiln_dtype dt;
    int rank;
    const struct kiln_dim *dims;
    if (!name || !name[0] || !kiln_opt_tensor_type(g, name, &dt, &rank, &dims)) return false;
    if (rank != 4 || dt != KILN_DTYPE_F32 || !kiln_dim_known(dims[1])) return false;
    for (int i = 0; i < 4; i++) d[i] = kiln_dim_known(dims[i]) ? dims[i].value : -1;
    return true;
}

static double dim1(int64_t d) { return d > 0 ? (double)d : 1.0; }
static double numel4(const int64_t d[4]) { return dim1(d[0]) * dim1(d[1]) * dim1(d[2]) * dim1(d[3]); }

static bool is_any(const char *op, const char *const *list)
{
    for (; *list; list++)
        if (!strcmp(op, *list)) return true;
    return false;
}

static const char *const UNARY[] = {
    "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Clip", "HardSigmoid", "HardSwish", "Elu", "Selu",
    "Celu", "Softplus", "Softsign", "Mish", "Gelu", "Erf", "Abs", "Neg", "Exp", "Log", "Sqrt",
    "Reciprocal", "Floor", "Ceil", "Round", "Sign", "Identity", "ThresholdedRelu", NULL};
static const char *const BINARY[] = {"Add", "Sub", "Mul", "Div", "Max", "Min", "Pow", "PRelu", NULL};

/* A constant initializer (not an overridable graph input) of g or an enclosing graph. */
static const struct kiln_tensor *init_f32(const struct kiln_opt *o, const struct kiln_graph *g,
                                          const char *name)
{
    const struct kiln_tensor *t = kiln_opt_const_pending(o, g, name);
    return t && t->dtype == KILN_DTYPE_F32 && t->data ? t : NULL;
}

/* Whether n has exactly one output in use, output 0 (BatchNormalization's statistics
 * outputs may be named but must be unread). */
static bool one_output(const struct kiln_graph *g, const struct kiln_node *n)
{
    if (n->n_out < 1 || !n->outputs[0][0]) return false;
    for (size_t k = 1; k < n->n_out; k++)
        if (n->outputs[k][0] && kiln_opt_uses(g, n->outputs[k]) > 0) return false;
    return true;
}

static void classify_conv(const struct kiln_opt *o, const struct kiln_graph *g,
                          const struct kiln_node *n, bool fused, struct ninfo *ni)
{
    int64_t x[4], y[4], z[4];
    if (n->n_in < 2 || n->n_in > (fused ? 4u : 3u) || n->n_out != 1) return;
    if (!image4(g, n->inputs[0], x) || !image4(g, n->outputs[0], y)) return;
    const struct kiln_tensor *w = init_f32(o, g, n->inputs[1]);
    if (!w || w->rank != 4) return;
    int64_t group = kiln_opt_attr_i(n, "group", 1), m = w->dims[0];
    if (group < 1 || w->dims[1] * group != x[1] || m != y[1]) return;
    const int64_t *ks;
    size_t nks;
    if (kiln_opt_attr_ints(n, "kernel_shape", &ks, &nks) && nks != 2) return;
    if (n->n_in > 2 && n->inputs[2][0]) {
        const struct kiln_tensor *b = init_f32(o, g, n->inputs[2]);
        if (!b || kiln_tensor_numel(b) != (size_t)m) return;
    }
    if (n->n_in > 3 && n->inputs[3][0]) {
        if (!image4(g, n->inputs[3], z)) return;
        ni->in_kind[3] = IN_ACT;
    }
    ni->in_kind[0] = IN_ACT;
    ni->macs = numel4(y) * (double)w->dims[1] * (double)w->dims[2] * (double)w->dims[3];
    if (group > 1) ni->macs *= GROUPED_MAC_WEIGHT;
    ni->role = R_CONV;
}

/* Inference-mode BatchNormalization with constant float32 [C] parameters. */
static bool bn_ok(const struct kiln_opt *o, const struct kiln_graph *g, const struct kiln_node *bn,
                  int64_t c)
{
    if (bn->n_in != 5 || kiln_opt_attr_i(bn, "training_mode", 0) != 0) return false;
    if (bn->since > 0 && bn->since < 9 && kiln_opt_attr_i(bn, "spatial", 1) != 1) return false;
    if (bn->since > 0 && bn->since < 7 && kiln_opt_attr_i(bn, "is_test", 1) != 1) return false;
    for (int i = 1; i < 5; i++) {
        const struct kiln_tensor *p = fu_const_f32(o, g, bn->inputs[i]);
        if (!p || !p->data || p->rank != 1 || p->dims[0] != c) return false;
    }
    return true;
}

/* Binary operand k: a 4-D activation, a one-element constant, or a float32 constant of rank
 * <= 4 to re-lay; false for anything else. */
static bool operand(const struct kiln_opt *o, const struct kiln_graph *g, const char *name,
                    uint8_t *kind)
{
    int64_t d[4];
    const struct kiln_tensor *t = fu_const(o, g, name);
    if (t) {
        if (t->rank > 4) return false;
        if (kiln_tensor_numel(t) == 1) {
            *kind = IN_KEEP;
            return true;
        }
        if (t->dtype != KILN_DTYPE_F32 || !t->data) return false;
        *kind = IN_CONST;
        return true;
    }
    if (!image4(g, name, d)) return false;
    *kind = IN_ACT;
    return true;
}

static bool chan_axis(int64_t axis) { return axis == 1 || axis == -3; }

/* Slice on a 4-D image: its axes, from the attribute (opset < 10) or a constant int32/int64
 * input 3 (10+), every one in [-4, 4). *axes / *n receive them when not NULL. False when
 * the axes are absent (all leading axes) or not constant. */
static bool slice_axes(const struct kiln_opt *o, const struct kiln_graph *g, const struct kiln_node *n,
                       int64_t *axes, size_t *n_axes)
{
    int64_t tmp[4];
    size_t cnt = 0;
    if (n->since > 0 && n->since < 10) {
        const int64_t *v;
        if (n->n_in != 1 || !kiln_opt_attr_ints(n, "axes", &v, &cnt) || cnt < 1 || cnt > 4) return false;
        memcpy(tmp, v, cnt * sizeof *v);
    } else {
        if (n->n_in < 4 || n->n_in > 5 || !n->inputs[3][0]) return false;
        const struct kiln_tensor *t = fu_const(o, g, n->inputs[3]);
        if (!t || !t->data || t->rank != 1 || (t->dtype != KILN_DTYPE_I64 && t->dtype != KILN_DTYPE_I32))
            return false;
        cnt = kiln_tensor_numel(t);
        if (cnt < 1 || cnt > 4) return false;
        for (size_t k = 0; k < cnt; k++)
            tmp[k] = t->dtype == KILN_DTYPE_I64 ? ((const int64_t *)t->data)[k] : ((const int32_t *)t->data)[k];
    }
    for (size_t k = 0; k < cnt; k++)
        if (tmp[k] < -4 || tmp[k] > 3) return false;
    if (axes) memcpy(axes, tmp, cnt * sizeof *tmp);
    if (n_axes) *n_axes = cnt;
    return true;
}

static void classify(const struct kiln_opt *o, const struct kiln_graph *g, size_t i, struct ninfo *ni)
{
    memset(ni, 0, sizeof *ni);
    const struct kiln_node *n = &g->nodes[i];
    if (!kiln_opt_live(o, g, i) || !n->op_type || n->n_in < 1 || n->n_in > MAX_IN ||
        kiln_opt_has_subgraph(n) || !one_output(g, n))
        return;
    const char *dom = n->domain ? n->domain : "", *op = n->op_type;
    int64_t x[4], y[4];
    if (!image4(g, n->outputs[0], y)) return;
    if (!strcmp(dom, "kiln")) {
        if (!strcmp(op, "FusedConv")) classify_conv(o, g, n, true, ni);
        if (!strcmp(op, "Gelu") && n->n_in == 1 && n->n_out == 1 && image4(g, n->inputs[0], x)) {
            ni->in_kind[0] = IN_ACT;
            ni->role = R_EW;
        }
        if (!strcmp(op, "ChannelShuffle") && n->n_in == 1 && n->n_out == 1 &&
            image4(g, n->inputs[0], x) && chan_axis(kiln_opt_attr_i(n, "axis", 1))) {
            ni->in_kind[0] = IN_ACT;
            ni->role = R_SHUFFLE;
        }
        return;
    }
    if (dom[0]) return;
    if (!strcmp(op, "Conv")) {
        classify_conv(o, g, n, false, ni);
        return;
    }
    if (!strcmp(op, "BatchNormalization")) {
        if (image4(g, n->inputs[0], x) && bn_ok(o, g, n, y[1])) {
            ni->in_kind[0] = IN_ACT;
            ni->role = R_BN;
        }
        return;
    }
    if (!strcmp(op, "MaxPool") || !strcmp(op, "AveragePool")) {
        const int64_t *ks;
        size_t nks;
        if (n->n_in == 1 && image4(g, n->inputs[0], x) && kiln_opt_attr_ints(n, "kernel_shape", &ks, &nks) &&
            nks == 2) {
            ni->in_kind[0] = IN_ACT;
            ni->role = R_POOL;
        }
        return;
    }
    if (n->n_out != 1) return;
    if (!strcmp(op, "Slice")) {
        if (image4(g, n->inputs[0], x) && slice_axes(o, g, n, NULL, NULL)) {
            ni->in_kind[0] = IN_ACT;
            ni->role = R_SLICE;
        }
        return;
    }
    if (!strcmp(op, "GlobalAveragePool") || !strcmp(op, "GlobalMaxPool")) {
        if (n->n_in == 1 && image4(g, n->inputs[0], x)) {
            ni->in_kind[0] = IN_ACT;
            ni->role = R_GPOOL;
        }
        return;
    }
    if (!strcmp(op, "Concat")) {
        int64_t axis = kiln_opt_attr_i(n, "axis", 0);
        if (axis != 1 && axis != -3) return;
        for (size_t k = 0; k < n->n_in; k++) {
            if (fu_const(o, g, n->inputs[k]) || !image4(g, n->inputs[k], x)) return;
            ni->in_kind[k] = IN_ACT;
        }
        ni->role = R_CONCAT;
        return;
    }
    if (is_any(op, UNARY)) {
        if (!image4(g, n->inputs[0], x)) return;
        /* Extra inputs (Clip's bounds) must be one-element constants. */
        for (size_t k = 1; k < n->n_in; k++) {
            const struct kiln_tensor *t = fu_const(o, g, n->inputs[k]);
            if (n->inputs[k][0] && (!t || kiln_tensor_numel(t) != 1)) return;
        }
        ni->in_kind[0] = IN_ACT;
        ni->role = R_EW;
        return;
    }
    if (is_any(op, BINARY)) {
        if (n->n_in != 2) return;
        uint8_t k0, k1;
        if (!operand(o, g, n->inputs[0], &k0) || !operand(o, g, n->inputs[1], &k1)) return;
        if (k0 != IN_ACT && k1 != IN_ACT) return;
        if (!strcmp(op, "PRelu") && k0 != IN_ACT) return;
        ni->in_kind[0] = k0;
        ni->in_kind[1] = k1;
        ni->role = R_EW;
    }
}

/* ------------------------------------------------------------------ regions */

struct region {
    size_t first, n_nodes, n_conv, n_in, n_out;
    double macs, conv_elems;
    bool chosen;
};

/* The run's working state. */
struct nhwc {
    struct kiln_opt *o;
    struct kiln_graph *g;
    struct ninfo *ni;
    size_t *parent, *rid;
    struct region *rs;
    const char **out_nhwc; /* per node of a chosen region: its output's NHWC name */
    /* Values entering chosen regions (by name) and their NHWC Transpose's output; constants
     * already re-laid (original name -> new initializer). */
    const char **enter_from, **enter_to, **const_from, **const_to;
    size_t n_enter, n_const;
    const char *axes12; /* the [1, 2] axes initializer of ReduceMean/Max, opset 18+ */
};

/* Whether node i's input k is an activation made by a node of the same region. */
static bool from_region(const struct nhwc *s, size_t i, size_t k)
{
    int p = kiln_opt_producer(s->g, s->g->nodes[i].inputs[k]);
    return p >= 0 && s->ni[p].role != R_NONE && s->rid[p] == s->rid[i];
}

/* How many inputs of region r's nodes read `name` as an activation. */
static int uses_inside(const struct nhwc *s, const char *name, size_t r)
{
    const struct kiln_graph *g = s->g;
    int id = kiln_graph_find(g, name), count = 0;
    if (id < 0) return 0;
    const struct kiln_graph_value *v = &g->values[id];
    int prev = -1;
    for (int c = 0; c < v->n_consumers; c++) {
        int j = v->consumers[c];
        if (j < 0 || (size_t)j >= g->n_nodes || j == prev) continue; /* listed twice */
        prev = j;
        if (s->ni[j].role == R_NONE || s->rid[j] != r) continue;
        const struct kiln_node *n = &g->nodes[j];
        for (size_t k = 0; k < n->n_in && k < MAX_IN; k++)
            if (s->ni[j].in_kind[k] == IN_ACT && !strcmp(n->inputs[k], name)) count++;
    }
    return count;
}

static bool leaves(const struct nhwc *s, size_t i)
{
    const char *v = s->g->nodes[i].outputs[0];
    return kiln_opt_uses(s->g, v) > uses_inside(s, v, s->rid[i]);
}

/* Whether region node i is a group-1 convolution whose X enters the region with at most
 * FIRST_MAX_C channels and is read in the region by such convolutions' X only: it then reads
 * X planar (x_nchw 1; src/cpu/ops/conv_nhwc.c) and the entry Transpose goes (70-85 us a run
 * for a [1, 3, 224, 224] image, and the NHWC copy's write and read). */
static bool first_conv(const struct nhwc *s, size_t i)
{
    const struct kiln_graph *g = s->g;
    const struct kiln_node *n = &g->nodes[i];
    int64_t x[4];
    if (s->ni[i].role != R_CONV || from_region(s, i, 0) || kiln_opt_attr_i(n, "group", 1) != 1 ||
        !image4(g, n->inputs[0], x) || x[1] > FIRST_MAX_C)
        return false;
    /* Every reader in the region: a convolution like this one, reading it as X only. */
    size_t r = s->rid[i];
    int id = kiln_graph_find(g, n->inputs[0]), count = 0;
    if (id < 0) return false;
    const struct kiln_graph_value *v = &g->values[id];
    int prev = -1;
    for (int c = 0; c < v->n_consumers; c++) {
        int j = v->consumers[c];
        if (j < 0 || (size_t)j >= g->n_nodes || j == prev) continue;
        prev = j;
        if (s->ni[j].role == R_NONE || s->rid[j] != r) continue;
        const struct kiln_node *m = &g->nodes[j];
        const struct kiln_tensor *w = init_f32(s->o, g, m->inputs[1]);
        if (s->ni[j].role != R_CONV || kiln_opt_attr_i(m, "group", 1) != 1 || !w || w->rank != 4)
            return false;
        for (size_t k = 1; k < m->n_in && k < MAX_IN; k++)
            if (s->ni[j].in_kind[k] == IN_ACT && !strcmp(m->inputs[k], n->inputs[0])) return false;
        count += s->ni[j].in_kind[0] == IN_ACT && !strcmp(m->inputs[0], n->inputs[0]);
    }
    return count > 0 && count == uses_inside(s, n->inputs[0], r);
}

/* ------------------------------------------------------------------ rewriting */

static kiln_status add_transpose(struct nhwc *s, const char *in, const char *out, bool to_nhwc)
{
    static const int64_t TO_NHWC[4] = {0, 2, 3, 1}, TO_NCHW[4] = {0, 3, 1, 2};
    struct kiln_node *t;
    KILN_TRY(kiln_opt_add_node(s->o, s->g, "Transpose", "", NULL, 1, &in, 1, &out, &t));
    return kiln_opt_set_attr_ints(s->o, t, "perm", to_nhwc ? TO_NHWC : TO_NCHW, 4);
}

/* The NHWC name of activation input k of region node i: the producer's new output, or the
 * output of the Transpose made for an entering value (made on first use). */
static kiln_status act_name(struct nhwc *s, size_t i, size_t k, const char **out)
{
    const char *v = s->g->nodes[i].inputs[k];
    if (from_region(s, i, k)) {
        *out = s->out_nhwc[kiln_opt_producer(s->g, v)];
        return KILN_OK;
    }
    for (size_t e = 0; e < s->n_enter; e++)
        if (!strcmp(s->enter_from[e], v)) {
            *out = s->enter_to[e];
            return KILN_OK;
        }
    char base[256];
    snprintf(base, sizeof base, "%s_nhwc", v);
    KILN_TRY(kiln_opt_unique_name(s->o, base, out));
    KILN_TRY(add_transpose(s, v, *out, true));
    s->enter_from[s->n_enter] = v;
    s->enter_to[s->n_enter++] = *out;
    return KILN_OK;
}

/* A float32 constant operand re-laid for an NHWC operand: per channel ([C], [C,1,1],
 * [1,C,1,1]) as [C]; anything else right-aligned to 4-D and permuted to [N, H, W, C]. */
static kiln_status relaid_const(struct nhwc *s, const char *name, const char **out)
{
    for (size_t e = 0; e < s->n_const; e++)
        if (!strcmp(s->const_from[e], name)) {
            *out = s->const_to[e];
            return KILN_OK;
        }
    const struct kiln_tensor *t = fu_const(s->o, s->g, name);
    int64_t d[4] = {1, 1, 1, 1};
    for (int i = 0; i < t->rank; i++) d[4 - t->rank + i] = t->dims[i];
    size_t n = kiln_tensor_numel(t);
    float *p = kiln_malloc((n ? n : 1) * sizeof *p);
    if (!p) return fu_nomem(s->o);
    const float *src = t->data;
    kiln_status st;
    char base[256];
    snprintf(base, sizeof base, "%s_nhwc", name);
    if (d[0] == 1 && d[2] == 1 && d[3] == 1) {
        memcpy(p, src, n * sizeof *p);
        st = fu_add_f32(s->o, s->g, base, 1, &d[1], p, out);
    } else {
        size_t i = 0;
        for (int64_t a = 0; a < d[0]; a++)
            for (int64_t h = 0; h < d[2]; h++)
                for (int64_t w = 0; w < d[3]; w++)
                    for (int64_t c = 0; c < d[1]; c++)
                        p[i++] = src[((a * d[1] + c) * d[2] + h) * d[3] + w];
        int64_t nd[4] = {d[0], d[2], d[3], d[1]};
        st = fu_add_f32(s->o, s->g, base, 4, nd, p, out);
    }
    kiln_free(p);
    if (st) return st;
    s->const_from[s->n_const] = name;
    s->const_to[s->n_const++] = *out;
    return KILN_OK;
}

/* Queues n's replacement: op in domain, the inputs mapped (activations to NHWC names,
 * constants re-laid), n's attributes copied, output `out`. */
static kiln_status replace_node(struct nhwc *s, size_t i, const char *op, const char *domain,
                                const char *out, struct kiln_node **nn)
{
    const struct kiln_node *n = &s->g->nodes[i];
    const char *ins[MAX_IN];
    size_t n_in = n->n_in;
    for (size_t k = 0; k < n_in; k++) {
        ins[k] = n->inputs[k];
        if (!ins[k][0]) continue;
        if (s->ni[i].in_kind[k] == IN_ACT) KILN_TRY(act_name(s, i, k, &ins[k]));
        if (s->ni[i].in_kind[k] == IN_CONST) KILN_TRY(relaid_const(s, n->inputs[k], &ins[k]));
    }
    while (n_in > 1 && !ins[n_in - 1][0]) n_in--;
    const char *doc = n->doc; /* "fused: Conv + Relu" stays readable on the new node */
    KILN_TRY(kiln_opt_add_node(s->o, s->g, op, domain, n->name && n->name[0] ? n->name : NULL, n_in,
                               ins, 1, &out, nn));
    if (doc && doc[0]) (*nn)->doc = doc;
    return kiln_opt_copy_attrs(s->o, *nn, n);
}

/* The activation node that is the only reader of BN node i's output, in i's region and
 * one kiln.ScaleBias can apply (fu_activation); -1 when there is none. */
static int bn_activation(const struct nhwc *s, size_t i, struct fu_act *a)
{
    const char *v = s->g->nodes[i].outputs[0];
    int j = kiln_opt_single_consumer(s->g, v);
    if (j < 0 || s->ni[j].role != R_EW || s->rid[j] != s->rid[i]) return -1;
    return fu_activation(s->o, s->g, (size_t)j, v, a) ? j : -1;
}

/* BatchNormalization -> kiln.ScaleBias(x, s, t) with per-channel [C] constants
 * s = gamma / sqrt(var + eps), t = beta - mean * s (Mul then Add, one pass), taking the
 * activation that alone reads it along (DenseNet's BN + Relu before each convolution). */
static kiln_status rewrite_bn(struct nhwc *s, size_t i, const char *out)
{
    const struct kiln_node *n = &s->g->nodes[i];
    const struct kiln_tensor *p[4];
    for (int k = 0; k < 4; k++) p[k] = fu_const_f32(s->o, s->g, n->inputs[1 + k]);
    size_t c = (size_t)p[0]->dims[0];
    float *st = kiln_malloc(2 * (c ? c : 1) * sizeof *st);
    if (!st) return fu_nomem(s->o);
    double eps = kiln_opt_attr_f(n, "epsilon", 1e-5f);
    const float *gamma = p[0]->data, *beta = p[1]->data, *mean = p[2]->data, *var = p[3]->data;
    for (size_t j = 0; j < c; j++) {
        double sc = gamma[j] / sqrt((double)var[j] + eps);
        st[j] = (float)sc;
        st[c + j] = (float)(beta[j] - mean[j] * sc);
    }
    const char *ins[3];
    int64_t dims[1] = {(int64_t)c};
    char base[256];
    kiln_status rc = act_name(s, i, 0, &ins[0]);
    snprintf(base, sizeof base, "%s_scale", n->name && n->name[0] ? n->name : "bn");
    if (!rc) rc = fu_add_f32(s->o, s->g, base, 1, dims, st, &ins[1]);
    snprintf(base, sizeof base, "%s_shift", n->name && n->name[0] ? n->name : "bn");
    if (!rc) rc = fu_add_f32(s->o, s->g, base, 1, dims, st + c, &ins[2]);
    kiln_free(st);
    KILN_TRY(rc);
    struct fu_act a = {.name = ""};
    int j = bn_activation(s, i, &a);
    if (j >= 0) {
        out = s->out_nhwc[j];
        s->ni[j].absorbed = true;
    }
    struct kiln_node *nn;
    KILN_TRY(kiln_opt_add_node(s->o, s->g, "ScaleBias", "kiln", n->name && n->name[0] ? n->name : NULL, 3,
                               ins, 1, &out, &nn));
    return fu_set_act(s->o, nn, &a);
}

/* GlobalAveragePool / GlobalMaxPool -> kiln.AveragePoolNhwc / MaxPoolNhwc of one H x W
 * window when H and W are known (its row kernel sums float32 vectors of channels in one
 * pass: 2.5-3x faster than ReduceMean's generic walk on EfficientNet-B0's squeeze-excitation
 * pools, [1, 112, 112, 32] in 0.036 ms against 0.10, one thread); else ReduceMean /
 * ReduceMax over H and W, keepdims. */
static kiln_status rewrite_gpool(struct nhwc *s, size_t i, const char *out)
{
    static const int64_t AXES[2] = {1, 2};
    const struct kiln_node *n = &s->g->nodes[i];
    bool avg = !strcmp(n->op_type, "GlobalAveragePool");
    const char *op = avg ? "ReduceMean" : "ReduceMax";
    const char *ins[2];
    int64_t d[4];
    struct kiln_node *nn;
    if (image4(s->g, n->inputs[0], d) && d[2] > 0 && d[3] > 0) {
        int64_t ks[2] = {d[2], d[3]};
        KILN_TRY(replace_node(s, i, avg ? "AveragePoolNhwc" : "MaxPoolNhwc", "kiln", out, &nn));
        return kiln_opt_set_attr_ints(s->o, nn, "kernel_shape", ks, 2);
    }
    KILN_TRY(act_name(s, i, 0, &ins[0]));
    bool axes_input = fu_opset(s->o) >= 18;
    if (axes_input && !s->axes12) {
        struct kiln_tensor t = {.dtype = KILN_DTYPE_I64, .rank = 1, .dims = {2}, .data = (void *)AXES};
        KILN_TRY(kiln_opt_add_init(s->o, s->g, "nhwc_axes_hw", &t, &s->axes12));
    }
    ins[1] = s->axes12;
    KILN_TRY(kiln_opt_add_node(s->o, s->g, op, "", n->name && n->name[0] ? n->name : NULL,
                               axes_input ? 2 : 1, ins, 1, &out, &nn));
    if (!axes_input) KILN_TRY(kiln_opt_set_attr_ints(s->o, nn, "axes", AXES, 2));
    return kiln_opt_set_attr_i(s->o, nn, "keepdims", 1);
}

/* Slice: the same node with each axis moved to its NHWC place (N 0, C 3, H 1, W 2). */
static kiln_status rewrite_slice(struct nhwc *s, size_t i, const char *out)
{
    static const int64_t TO_NHWC[4] = {0, 3, 1, 2};
    const struct kiln_node *n = &s->g->nodes[i];
    int64_t axes[4];
    size_t cnt;
    struct kiln_node *nn;
    if (!slice_axes(s->o, s->g, n, axes, &cnt)) return KILN_OK; /* checked by classify */
    for (size_t k = 0; k < cnt; k++) axes[k] = TO_NHWC[axes[k] < 0 ? axes[k] + 4 : axes[k]];
    KILN_TRY(replace_node(s, i, "Slice", "", out, &nn));
    if (n->since > 0 && n->since < 10) return kiln_opt_set_attr_ints(s->o, nn, "axes", axes, cnt);
    const struct kiln_tensor *old = fu_const(s->o, s->g, n->inputs[3]);
    int32_t a32[4];
    for (size_t k = 0; k < cnt; k++) a32[k] = (int32_t)axes[k];
    struct kiln_tensor t = {.dtype = old->dtype, .rank = 1, .dims = {(int64_t)cnt},
                            .data = old->dtype == KILN_DTYPE_I32 ? (void *)a32 : (void *)axes};
    char base[256];
    snprintf(base, sizeof base, "%s_nhwc", n->inputs[3]);
    return kiln_opt_add_init(s->o, s->g, base, &t, &nn->inputs[3]);
}

static kiln_status rewrite_node(struct nhwc *s, size_t i)
{
    const struct kiln_node *n = &s->g->nodes[i];
    const char *out = s->out_nhwc[i];
    struct kiln_node *nn;
    if (s->ni[i].absorbed) return KILN_OK; /* written by its BN's ScaleBias */
    switch (s->ni[i].role) {
    case R_CONV:
        KILN_TRY(replace_node(s, i, "ConvNhwc", "kiln", out, &nn));
        return s->ni[i].x_nchw ? kiln_opt_set_attr_i(s->o, nn, "x_nchw", 1) : KILN_OK;
    case R_EW:
        return replace_node(s, i, n->op_type, n->domain ? n->domain : "", out, &nn);
    case R_CONCAT:
        KILN_TRY(replace_node(s, i, "Concat", "", out, &nn));
        return kiln_opt_set_attr_i(s->o, nn, "axis", 3);
    case R_POOL:
        return replace_node(s, i, strcmp(n->op_type, "MaxPool") ? "AveragePoolNhwc" : "MaxPoolNhwc",
                            "kiln", out, &nn);
    case R_SHUFFLE:
        KILN_TRY(replace_node(s, i, "ChannelShuffle", "kiln", out, &nn));
        return kiln_opt_set_attr_i(s->o, nn, "axis", 3);
    case R_SLICE: return rewrite_slice(s, i, out);
    case R_BN: return rewrite_bn(s, i, out);
    case R_GPOOL: return rewrite_gpool(s, i, out);
    default: return KILN_OK;
    }
}

/* "Conv 2, Relu 2, Add 1": the op counts of region r, in first-seen order. */
static void region_ops(const struct nhwc *s, size_t r, char *buf, size_t size)
{
    size_t len = 0;
    buf[0] = 0;
    const struct kiln_graph *g = s->g;
    for (size_t i = 0; i < g->n_nodes && len < size; i++) {
        if (s->ni[i].role == R_NONE || s->rid[i] != r) continue;
        const struct kiln_node *n = &g->nodes[i];
        const char *d = n->domain ? n->domain : "";
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = s->ni[j].role != R_NONE && s->rid[j] == r && !strcmp(g->nodes[j].op_type, n->op_type) &&
                   !strcmp(g->nodes[j].domain ? g->nodes[j].domain : "", d);
        if (seen) continue;
        size_t count = 0;
        for (size_t j = i; j < g->n_nodes; j++)
            count += s->ni[j].role != R_NONE && s->rid[j] == r &&
                     !strcmp(g->nodes[j].op_type, n->op_type) &&
                     !strcmp(g->nodes[j].domain ? g->nodes[j].domain : "", d);
        int k = snprintf(buf + len, size - len, "%s%s%s%s %zu", len ? ", " : "", d, d[0] ? "." : "",
                         n->op_type, count);
        if (k < 0) break;
        len += (size_t)k;
    }
    if (len >= size && size > 4) memcpy(buf + size - 4, "...", 4);
}

static kiln_status run(struct kiln_opt *o, struct kiln_graph *g, bool *changed)
{
    if (!g->n_nodes || !g->vtypes) return KILN_OK;
    size_t nn = g->n_nodes;
    struct nhwc s = {.o = o, .g = g};
    s.ni = kiln_malloc(nn * sizeof *s.ni);
    s.parent = kiln_malloc(nn * sizeof *s.parent);
    s.rid = kiln_malloc(nn * sizeof *s.rid);
    s.rs = kiln_malloc(nn * sizeof *s.rs);
    s.out_nhwc = kiln_calloc(nn, sizeof *s.out_nhwc);
    /* At most one entering value or re-laid constant per node input. */
    size_t n_ins = 1;
    for (size_t i = 0; i < nn; i++) n_ins += g->nodes[i].n_in;
    s.enter_from = kiln_malloc(n_ins * sizeof *s.enter_from);
    s.enter_to = kiln_malloc(n_ins * sizeof *s.enter_to);
    s.const_from = kiln_malloc(n_ins * sizeof *s.const_from);
    s.const_to = kiln_malloc(n_ins * sizeof *s.const_to);
    kiln_status st = KILN_OK;
    if (!s.ni || !s.parent || !s.rid || !s.rs || !s.out_nhwc || !s.enter_from || !s.enter_to ||
        !s.const_from || !s.const_to) {
        st = fu_nomem(o);
        goto done;
    }

    for (size_t i = 0; i < nn; i++) {
        classify(o, g, i, &s.ni[i]);
        s.parent[i] = i;
    }
    for (size_t j = 0; j < nn; j++) {
        if (s.ni[j].role == R_NONE) continue;
        for (size_t k = 0; k < g->nodes[j].n_in; k++) {
            if (s.ni[j].in_kind[k] != IN_ACT) continue;
            int p = kiln_opt_producer(g, g->nodes[j].inputs[k]);
            if (p < 0 || s.ni[p].role == R_NONE) continue;
            size_t a = fu_find(s.parent, (size_t)p), b = fu_find(s.parent, j);
            if (a != b) s.parent[a] = b;
        }
    }
    size_t n_r = 0;
    for (size_t i = 0; i < nn; i++) {
        s.rid[i] = SIZE_MAX;
        if (s.ni[i].role == R_NONE || fu_find(s.parent, i) != i) continue;
        s.rid[i] = n_r;
        s.rs[n_r++] = (struct region){.first = SIZE_MAX};
    }
    for (size_t i = 0; i < nn; i++)
        if (s.ni[i].role != R_NONE) s.rid[i] = s.rid[fu_find(s.parent, i)];

    /* Work and conversions per region. An entering value is counted once per region: at its
     * first reader (nodes are in topological order; a value read twice by one node once). */
    for (size_t i = 0; i < nn; i++) {
        if (s.ni[i].role == R_NONE) continue;
        struct region *r = &s.rs[s.rid[i]];
        const struct kiln_node *n = &g->nodes[i];
        if (!r->n_nodes++) r->first = i;
        if (s.ni[i].role == R_CONV) {
            r->n_conv++;
            r->macs += s.ni[i].macs;
        }
        for (size_t k = 0; k < n->n_in; k++) {
            if (s.ni[i].in_kind[k] != IN_ACT || from_region(&s, i, k)) continue;
            bool counted = false;
            for (size_t j = r->first; j <= i && !counted; j++) {
                if (s.ni[j].role == R_NONE || s.rid[j] != s.rid[i]) continue;
                for (size_t q = 0; q < g->nodes[j].n_in && !counted; q++) {
                    if (j == i && q >= k) break;
                    counted = s.ni[j].in_kind[q] == IN_ACT && !strcmp(g->nodes[j].inputs[q], n->inputs[k]);
                }
            }
            int64_t d[4];
            if (counted) continue;
            r->n_in++;
            if (image4(g, n->inputs[k], d)) r->conv_elems += numel4(d);
        }
        int64_t y[4];
        if (leaves(&s, i) && image4(g, n->outputs[0], y)) {
            r->conv_elems += numel4(y);
            r->n_out++;
        }
    }

    /* Choose, then name every chosen node's NHWC output before rewriting any reader. */
    size_t n_chosen = 0;
    for (size_t r = 0; r < n_r; r++) {
        struct region *rg = &s.rs[r];
        rg->chosen = rg->n_conv > 0 && rg->macs >= NHWC_RATIO * rg->conv_elems;
        if (!rg->n_conv) continue;
        char ops[512], lb[128];
        region_ops(&s, r, ops, sizeof ops);
        kiln_node_label(&g->nodes[rg->first], lb, sizeof lb);
        kiln_opt_note(o, "graph '%s': region of %zu node%s (%s) from %s, %zu in, %zu out: %.3g MAC "
                      "vs %.3g elements converted (ratio %.3g %s %g)%s",
                      g->name ? g->name : "", rg->n_nodes, rg->n_nodes == 1 ? "" : "s", ops, lb,
                      rg->n_in, rg->n_out, rg->macs, rg->conv_elems, rg->conv_elems > 0 ? rg->macs / rg->conv_elems : 0.0,
                      rg->chosen ? ">=" : "<", NHWC_RATIO, rg->chosen ? ", to NHWC" : ", stays NCHW");
        n_chosen += rg->chosen;
    }
    if (!n_chosen) goto done;
    st = kiln_opt_require_opset(o, "kiln", 1);
    if (st) goto done;
    for (size_t i = 0; i < nn; i++)
        if (s.ni[i].role != R_NONE && s.rs[s.rid[i]].chosen) s.ni[i].x_nchw = first_conv(&s, i);
    for (size_t i = 0; i < nn; i++) {
        if (s.ni[i].x_nchw) s.ni[i].in_kind[0] = IN_KEEP; /* X read as it is, no Transpose */
        if (s.ni[i].role == R_NONE || !s.rs[s.rid[i]].chosen) {
            s.ni[i].role = R_NONE; /* from here on: candidates of chosen regions only */
            continue;
        }
        char base[256];
        snprintf(base, sizeof base, "%s_nhwc", g->nodes[i].outputs[0]);
        st = kiln_opt_unique_name(o, base, &s.out_nhwc[i]);
        if (st) goto done;
    }
    for (size_t i = 0; i < nn && !st; i++) {
        if (s.ni[i].role == R_NONE) continue;
        st = rewrite_node(&s, i);
        if (!st && leaves(&s, i)) st = add_transpose(&s, s.out_nhwc[i], g->nodes[i].outputs[0], false);
        if (!st) kiln_opt_remove_node(o, g, i);
    }
    if (!st) *changed = true;
done:
    kiln_free(s.ni);
    kiln_free(s.parent);
    kiln_free(s.rid);
    kiln_free(s.rs);
    kiln_free(s.out_nhwc);
    kiln_free(s.enter_from);
    kiln_free(s.enter_to);
    kiln_free(s.const_from);
    kiln_free(s.const_to);
    return st;
}

const struct kiln_pass kiln_pass_nhwc = {
    .name = "nhwc",
    .level = KILN_OPT_EXTENDED,
    .needs_kiln_ops = true,
    .doc = "runs convolutional regions channels-last: kiln.ConvNhwc, Transposes at the boundaries",
    .run = run,
};
