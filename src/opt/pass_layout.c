/* pass_layout.c: marks where a blocked (NCHWc) or channels-last (NHWC) layout pays off, for
 * the engine builder (layout.h; docs/optimizer.md, "Layout"). An analysis pass: it reads the
 * graph with its inferred shapes and writes only g->layout, never the graph, so the ONNX that
 * `kiln optimize` writes is the same as at level extended.
 *
 * 1. Each live node is classified. Layout-friendly nodes are 2-D convolutions (Conv,
 *    ConvTranspose, kiln.FusedConv), pools (Max/Average/Lp, their Global forms),
 *    BatchNormalization, element-wise ops whose inputs are either the output's full shape or
 *    broadcast per channel ([C,1,1], [1,C,1,1], a scalar), Concat on axis 1 and Resize/
 *    Upsample that keep N and C; every tensor involved must be a 4-D float tensor with a
 *    known channel count. Anything else (Reshape, Flatten, Gemm, MatMul, Transpose, Softmax,
 *    a Concat on another axis, a MaxPool with indices, ops with subgraphs...) needs plain.
 * 2. Regions: the friendly nodes joined by the edges between them (union-find): maximal
 *    connected subgraphs in which a value never needs converting.
 * 3. A region pays off when it holds at least one "heavy" convolution (C >= 16 in and out,
 *    or a depthwise one with C >= 16; output spatial size >= 16 when known) and its heavy
 *    convolutions' work is at least LAYOUT_RATIO times the elements converted at its
 *    boundaries (each activation entering from outside, each value leaving it: read by a
 *    node outside, a subgraph or as a graph output). Unknown dims count as 1 on both sides.
 * 4. Its kind: blocked when every Concat input's channel count is a multiple of the block
 *    and zero-padding the channels to the block adds at most 1/8 of the region's elements
 *    (1/4 when the region has depthwise convolutions, which gain most from blocking);
 *    widths 8 and 16 are judged separately and both recorded. Otherwise channels-last.
 * 5. Every value produced by a node of a chosen region gets the region's mark.
 *
 * The report has one line per region (nodes, layout, conversions, why) and one per graph.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "opt/fuse_util.h"
#include "opt/layout.h"
#include "opt/opt.h"

#define LAYOUT_MIN_C 16          /* heavy conv: channels in and out */
#define LAYOUT_MIN_SPATIAL 16    /* heavy conv: output H*W, when known */
#define LAYOUT_RATIO 20.0        /* heavy conv MACs per converted element */

/* ------------------------------------------------------------------ the marks */

uint8_t kiln_opt_layout_of(const struct kiln_graph *g, int id)
{
    if (!g || !g->layout || id < 0 || (size_t)id >= g->n_values) return 0;
    return g->layout[id];
}

uint8_t kiln_opt_layout_by_name(const struct kiln_graph *g, const char *name)
{
    if (!g || !g->layout || !name) return 0;
    return kiln_opt_layout_of(g, kiln_graph_find(g, name));
}

int kiln_opt_layout_block(uint8_t mark, bool avx512)
{
    if ((mark & KILN_LAYOUT_KIND_MASK) != KILN_LAYOUT_BLOCKED) return 0;
    if (avx512 && (mark & KILN_LAYOUT_BLOCK16)) return 16;
    if (mark & KILN_LAYOUT_BLOCK8) return 8;
    return (mark & KILN_LAYOUT_BLOCK16) ? 16 : 0;
}

const char *kiln_opt_layout_name(uint8_t mark)
{
    switch (mark & KILN_LAYOUT_KIND_MASK) {
    case KILN_LAYOUT_NHWC: return "nhwc";
    case KILN_LAYOUT_BLOCKED:
        if ((mark & KILN_LAYOUT_BLOCK8) && (mark & KILN_LAYOUT_BLOCK16)) return "nchwc(8,16)";
        if (mark & KILN_LAYOUT_BLOCK16) return "nchwc(16)";
        return "nchwc(8)";
    default: return "nchw";
    }
}

/* ------------------------------------------------------------------ classifying nodes */

enum role { ROLE_PLAIN = 0, ROLE_CONV, ROLE_POOL, ROLE_ELTWISE, ROLE_CONCAT, ROLE_RESIZE };

/* Per input of a friendly node: a full activation (needs the region's layout), a per-channel
 * or scalar parameter (any layout reads it), or not a tensor of the image (weights, scales). */
enum { IN_OTHER = 0, IN_ACT = 1, IN_PARAM = 2 };
#define MAX_IN 16

struct ninfo {
    enum role role;
    bool depthwise, heavy;
    double macs; /* convolutions, unknown dims as 1 */
    uint8_t in_kind[MAX_IN];
};

/* A 4-D float tensor with a known channel count; d[] receives the dims (-1 unknown). */
static bool image4(const struct kiln_graph *g, const char *name, int64_t d[4])
{
    kiln_dtype dt;
    int rank;
    const struct kiln_dim *dims;
    if (!name || !name[0] || !kiln_opt_tensor_type(g, name, &dt, &rank, &dims)) return false;
    if (rank != 4 || !kiln_dtype_is_float(dt) || !kiln_dim_known(dims[1])) return false;
    for (int i = 0; i < 4; i++) d[i] = kiln_dim_known(dims[i]) ? dims[i].value : -1;
    return true;
}

static double dim1(int64_t d) { return d > 0 ? (double)d : 1.0; }
static double numel4(const int64_t d[4]) { return dim1(d[0]) * dim1(d[1]) * dim1(d[2]) * dim1(d[3]); }

/* Input broadcast per channel against an [N,C,H,W] output: every dim 1 except, at the
 * channel position, 1 or C. */
static bool per_channel(const struct kiln_graph *g, const char *name, int64_t c)
{
    kiln_dtype dt;
    int rank;
    const struct kiln_dim *dims;
    if (!kiln_opt_tensor_type(g, name, &dt, &rank, &dims) || rank > 4) return false;
    for (int i = 0; i < rank; i++) {
        int pos = 4 - rank + i; /* right-aligned */
        if (!kiln_dim_known(dims[i])) return false;
        if (dims[i].value == 1) continue;
        if (pos != 1 || dims[i].value != c) return false;
    }
    return true;
}

static bool one_output(const struct kiln_node *n)
{
    if (n->n_out < 1 || !n->outputs[0][0]) return false;
    for (size_t k = 1; k < n->n_out; k++)
        if (n->outputs[k][0]) return false;
    return true;
}

static bool is_any(const char *op, const char *const *list)
{
    for (; *list; list++)
        if (!strcmp(op, *list)) return true;
    return false;
}

static const char *const UNARY[] = {
    "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Clip", "HardSigmoid", "HardSwish", "Elu", "Selu",
    "Celu", "Softplus", "Softsign", "Mish", "Gelu", "Erf", "Abs", "Neg", "Exp", "Log", "Sqrt",
    "Reciprocal", "Floor", "Ceil", "Round", "Sign", "Identity", "Dropout", "ThresholdedRelu",
    "Cast", "BatchNormalization", NULL};
static const char *const BINARY[] = {"Add", "Sub", "Mul", "Div", "Max", "Min", "Pow", "PRelu",
                                     "Sum", "Mean", NULL};
static const char *const POOLS[] = {"MaxPool", "AveragePool", "LpPool", "GlobalAveragePool",
                                    "GlobalMaxPool", "GlobalLpPool", NULL};

static void classify(const struct kiln_opt *o, const struct kiln_graph *g, size_t i, struct ninfo *ni)
{
    memset(ni, 0, sizeof *ni);
    const struct kiln_node *n = &g->nodes[i];
    if (!kiln_opt_live(o, g, i) || !n->op_type || n->n_in > MAX_IN || kiln_opt_has_subgraph(n))
        return;
    const char *dom = n->domain ? n->domain : "", *op = n->op_type;
    int64_t x[4], y[4];
    if (!one_output(n) || !image4(g, n->outputs[0], y) || n->n_in < 1) return;
    bool std = !dom[0], kiln = !strcmp(dom, "kiln");

    if ((std && (!strcmp(op, "Conv") || !strcmp(op, "ConvTranspose"))) ||
        (kiln && !strcmp(op, "FusedConv"))) {
        if (!image4(g, n->inputs[0], x) || n->n_in < 2) return;
        int64_t w[4];
        kiln_dtype wdt;
        int wr;
        const struct kiln_dim *wd;
        if (!kiln_opt_tensor_type(g, n->inputs[1], &wdt, &wr, &wd) || wr != 4) return;
        for (int k = 0; k < 4; k++) w[k] = kiln_dim_known(wd[k]) ? wd[k].value : -1;
        int64_t group = kiln_opt_attr_i(n, "group", 1);
        if (group < 1) return;
        ni->role = ROLE_CONV;
        ni->in_kind[0] = IN_ACT;
        if (kiln && n->n_in > 3 && n->inputs[3][0]) { /* the residual Z: Y's shape */
            int64_t z[4];
            if (!image4(g, n->inputs[3], z)) {
                ni->role = ROLE_PLAIN;
                return;
            }
            ni->in_kind[3] = IN_ACT;
        }
        int64_t cin = x[1], cout = y[1];
        ni->depthwise = group > 1 && group == cin && cout % group == 0;
        bool big_c = ni->depthwise ? cin >= LAYOUT_MIN_C : cin >= LAYOUT_MIN_C && cout >= LAYOUT_MIN_C;
        bool big_hw = y[2] < 0 || y[3] < 0 || y[2] * y[3] >= LAYOUT_MIN_SPATIAL;
        ni->heavy = big_c && big_hw;
        double k_hw = dim1(w[2]) * dim1(w[3]);
        bool transposed = !strcmp(op, "ConvTranspose");
        ni->macs = transposed ? numel4(x) * (double)cout / (double)group * k_hw
                              : numel4(y) * (double)cin / (double)group * k_hw;
        return;
    }
    if (!std) return;
    if (is_any(op, POOLS)) {
        if (!image4(g, n->inputs[0], x) || x[1] != y[1]) return;
        ni->role = ROLE_POOL;
        ni->in_kind[0] = IN_ACT;
        return;
    }
    if (!strcmp(op, "Concat")) {
        int64_t axis = kiln_opt_attr_i(n, "axis", 0);
        if (axis != 1 && axis != -3) return;
        for (size_t k = 0; k < n->n_in; k++) {
            if (!image4(g, n->inputs[k], x)) return;
            ni->in_kind[k] = IN_ACT;
        }
        ni->role = ROLE_CONCAT;
        return;
    }
    if (!strcmp(op, "Resize") || !strcmp(op, "Upsample")) {
        if (!image4(g, n->inputs[0], x) || x[1] != y[1] || x[0] != y[0]) return;
        ni->role = ROLE_RESIZE;
        ni->in_kind[0] = IN_ACT;
        return;
    }
    bool unary = is_any(op, UNARY), binary = is_any(op, BINARY);
    if (!unary && !binary) return;
    /* Unary ops (BatchNormalization included) read input 0 as the image; their other inputs
     * (Clip's bounds, BN's per-channel statistics) must be per-channel or scalar. Binary and
     * variadic ops: each input is the full image or per-channel. */
    for (size_t k = 0; k < n->n_in; k++) {
        const char *in = n->inputs[k];
        if (!in[0]) continue;
        int64_t d[4];
        if (image4(g, in, d) && d[0] == y[0] && d[1] == y[1] && d[2] == y[2] && d[3] == y[3] &&
            (k == 0 || binary)) {
            ni->in_kind[k] = IN_ACT;
        } else if (k > 0 && per_channel(g, in, y[1])) {
            ni->in_kind[k] = IN_PARAM;
        } else if (k == 0 && binary && per_channel(g, in, y[1])) {
            ni->in_kind[k] = IN_PARAM;
        } else {
            memset(ni->in_kind, 0, sizeof ni->in_kind);
            return;
        }
    }
    if (!ni->in_kind[0] || (unary && ni->in_kind[0] != IN_ACT)) {
        memset(ni->in_kind, 0, sizeof ni->in_kind);
        return;
    }
    ni->role = ROLE_ELTWISE;
}

/* ------------------------------------------------------------------ regions */

struct region {
    size_t first, n_nodes, n_conv, n_heavy, n_dw, n_in, n_out;
    char in_names[96], out_names[96]; /* the converted values, for the report */
    size_t in_len, out_len;
    double heavy_macs, conv_elems, elems, pad8, pad16;
    bool concat_ok8, concat_ok16;
    uint8_t mark;
};

static void put(char *buf, size_t size, size_t *len, const char *fmt, ...) KILN_PRINTF(4, 5);
static void put(char *buf, size_t size, size_t *len, const char *fmt, ...)
{
    if (*len >= size) return;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(buf + *len, size - *len, fmt, ap);
    va_end(ap);
    if (k > 0) *len += (size_t)k;
    if (*len >= size) {
        *len = size;
        if (size > 4) memcpy(buf + size - 4, "...", 4);
    }
}

static const char *node_op(const struct kiln_node *n, char *buf, size_t size)
{
    snprintf(buf, size, "%s%s%s", n->domain && n->domain[0] ? n->domain : "",
             n->domain && n->domain[0] ? "." : "", n->op_type ? n->op_type : "?");
    return buf;
}

/* Whether value `name` (produced in region r) is read anywhere outside it: a node of another
 * region or none, a subgraph, a graph output. */
static bool leaves_region(const struct kiln_graph *g, const char *name, size_t *parent,
                          const struct ninfo *ni, size_t r)
{
    int uses = kiln_opt_uses(g, name), inside = 0;
    int id = kiln_graph_find(g, name);
    if (id < 0) return false;
    const struct kiln_graph_value *v = &g->values[id];
    int prev = -1;
    for (int c = 0; c < v->n_consumers; c++) {
        int j = v->consumers[c];
        if (j < 0 || (size_t)j >= g->n_nodes || j == prev) continue; /* a node listed twice */
        prev = j;
        const struct kiln_node *n = &g->nodes[j];
        bool in_r = ni[j].role != ROLE_PLAIN && fu_find(parent, (size_t)j) == r;
        for (size_t k = 0; k < n->n_in; k++)
            if (!strcmp(n->inputs[k], name)) {
                if (!in_r) return true;
                inside++;
            }
    }
    return uses > inside;
}

static kiln_status run(struct kiln_opt *o, struct kiln_graph *g, bool *changed)
{
    (void)changed; /* an analysis: the graph is never edited */
    struct kiln_model *m = kiln_opt_model(o);
    g->layout = NULL;
    if (!g->n_nodes || !g->n_values || !g->vtypes) return KILN_OK;
    kiln_status st = KILN_OK;
    uint8_t *marks = kiln_arena_array(&m->arena, g->n_values, 1);
    struct ninfo *ni = kiln_malloc(g->n_nodes * sizeof *ni);
    size_t *parent = kiln_malloc(g->n_nodes * sizeof *parent);
    struct region *rs = kiln_malloc(g->n_nodes * sizeof *rs);
    size_t *rid = kiln_malloc(g->n_nodes * sizeof *rid);
    size_t *seen = kiln_malloc(g->n_values * sizeof *seen);
    if (!marks || !ni || !parent || !rs || !rid || !seen) {
        st = kiln_err_set(kiln_opt_err(o), KILN_E_NOMEM, "out of memory in the layout pass");
        goto done;
    }
    memset(marks, 0, g->n_values);

    for (size_t i = 0; i < g->n_nodes; i++) {
        classify(o, g, i, &ni[i]);
        parent[i] = i;
    }
    /* Regions: friendly nodes joined through the values they pass to each other. */
    for (size_t j = 0; j < g->n_nodes; j++) {
        if (ni[j].role == ROLE_PLAIN) continue;
        for (size_t k = 0; k < g->nodes[j].n_in; k++) {
            if (!ni[j].in_kind[k]) continue;
            int p = kiln_opt_producer(g, g->nodes[j].inputs[k]);
            if (p < 0 || ni[p].role == ROLE_PLAIN) continue;
            size_t a = fu_find(parent, (size_t)p), b = fu_find(parent, j);
            if (a != b) parent[a] = b;
        }
    }
    size_t n_r = 0;
    for (size_t i = 0; i < g->n_nodes; i++) {
        rid[i] = SIZE_MAX;
        if (ni[i].role == ROLE_PLAIN || fu_find(parent, i) != i) continue;
        rid[i] = n_r;
        rs[n_r++] = (struct region){.first = SIZE_MAX, .concat_ok8 = true, .concat_ok16 = true};
    }
    for (size_t i = 0; i < g->n_nodes; i++)
        if (ni[i].role != ROLE_PLAIN) rid[i] = rid[fu_find(parent, i)];

    /* Per region: convolutions, padding, boundary conversions. */
    for (size_t i = 0; i < g->n_nodes; i++) {
        if (ni[i].role == ROLE_PLAIN) continue;
        struct region *r = &rs[rid[i]];
        const struct kiln_node *n = &g->nodes[i];
        if (!r->n_nodes++) r->first = i; /* nodes are in topological order */
        if (ni[i].role == ROLE_CONV) {
            r->n_conv++;
            r->n_dw += ni[i].depthwise;
            if (ni[i].heavy) {
                r->n_heavy++;
                r->heavy_macs += ni[i].macs;
            }
        }
        int64_t y[4];
        if (image4(g, n->outputs[0], y)) {
            double e = numel4(y), c = (double)y[1];
            double c8 = (double)((y[1] + 7) / 8 * 8), c16 = (double)((y[1] + 15) / 16 * 16);
            r->elems += e;
            if (c > 0) {
                r->pad8 += e * (c8 - c) / c;
                r->pad16 += e * (c16 - c) / c;
            }
        }
        if (ni[i].role == ROLE_CONCAT)
            for (size_t k = 0; k < n->n_in; k++) {
                int64_t x[4];
                if (!image4(g, n->inputs[k], x)) continue;
                if (x[1] % 8) r->concat_ok8 = false;
                if (x[1] % 16) r->concat_ok16 = false;
            }
    }
    /* Conversions in: activations read by a region's node but made outside it (one per value
     * and region; seen[id] holds the region index + 1 that counted it last). */
    memset(seen, 0, g->n_values * sizeof *seen);
    for (size_t j = 0; j < g->n_nodes; j++) {
        if (ni[j].role == ROLE_PLAIN) continue;
        struct region *r = &rs[rid[j]];
        const struct kiln_node *n = &g->nodes[j];
        for (size_t k = 0; k < n->n_in; k++) {
            if (ni[j].in_kind[k] != IN_ACT) continue;
            int p = kiln_opt_producer(g, n->inputs[k]);
            if (p >= 0 && ni[p].role != ROLE_PLAIN && rid[p] == rid[j]) continue;
            int id = n->in_ids ? n->in_ids[k] : kiln_graph_find(g, n->inputs[k]);
            if (id < 0 || (size_t)id >= g->n_values) continue;
            /* A value read by two regions is counted by each (nearly always: once). */
            if (seen[id] == rid[j] + 1) continue;
            seen[id] = rid[j] + 1;
            int64_t x[4];
            r->n_in++;
            put(r->in_names, sizeof r->in_names, &r->in_len, "%s'%s'", r->in_len ? ", " : "",
                n->inputs[k]);
            if (image4(g, n->inputs[k], x)) r->conv_elems += numel4(x);
        }
    }
    /* Conversions out: region values read outside it. */
    for (size_t i = 0; i < g->n_nodes; i++) {
        if (ni[i].role == ROLE_PLAIN) continue;
        const struct kiln_node *n = &g->nodes[i];
        if (!leaves_region(g, n->outputs[0], parent, ni, fu_find(parent, i))) continue;
        struct region *r = &rs[rid[i]];
        int64_t y[4];
        r->n_out++;
        put(r->out_names, sizeof r->out_names, &r->out_len, "%s'%s'", r->out_len ? ", " : "",
            n->outputs[0]);
        if (image4(g, n->outputs[0], y)) r->conv_elems += numel4(y);
    }

    /* Decide, mark and report. */
    size_t n_marked = 0, n_vals = 0, n_conv_total = 0;
    for (size_t ri = 0; ri < n_r; ri++) {
        struct region *r = &rs[ri];
        char why[256];
        bool pays = r->n_heavy > 0 && r->heavy_macs >= LAYOUT_RATIO * r->conv_elems;
        if (!r->n_conv)
            snprintf(why, sizeof why, "no convolution");
        else if (!r->n_heavy)
            snprintf(why, sizeof why, "%zu conv%s, none with C >= %d in and out and H*W >= %d",
                     r->n_conv, r->n_conv == 1 ? "" : "s", LAYOUT_MIN_C, LAYOUT_MIN_SPATIAL);
        else
            snprintf(why, sizeof why,
                     "%zu of %zu conv%s with C >= %d%s: %.3g MAC vs %.3g elements converted "
                     "(ratio %.3g %s %g)",
                     r->n_heavy, r->n_conv, r->n_conv == 1 ? "" : "s", LAYOUT_MIN_C,
                     r->n_dw ? " (depthwise among them)" : "", r->heavy_macs, r->conv_elems,
                     r->conv_elems > 0 ? r->heavy_macs / r->conv_elems : 0.0,
                     pays ? ">=" : "<", LAYOUT_RATIO);
        r->mark = KILN_LAYOUT_PLAIN;
        char kind_why[96] = "";
        if (pays) {
            double limit = r->elems * (r->n_dw ? 0.25 : 0.125);
            bool ok8 = r->concat_ok8 && r->pad8 <= limit, ok16 = r->concat_ok16 && r->pad16 <= limit;
            if (ok8 || ok16) {
                r->mark = (uint8_t)(KILN_LAYOUT_BLOCKED | (ok8 ? KILN_LAYOUT_BLOCK8 : 0) |
                                    (ok16 ? KILN_LAYOUT_BLOCK16 : 0));
                if (!ok16)
                    snprintf(kind_why, sizeof kind_why, "; not 16: %s",
                             r->concat_ok16 ? "channel padding" : "Concat inputs not multiples of 16");
            } else {
                r->mark = KILN_LAYOUT_NHWC;
                snprintf(kind_why, sizeof kind_why, "; not blocked: %s",
                         r->concat_ok8 ? "channel padding over 1/8" : "Concat inputs not multiples of 8");
            }
        }
        /* The node list: op counts in first-seen order. */
        char ops[512];
        size_t len = 0;
        for (size_t i = 0; i < g->n_nodes; i++) {
            if (ni[i].role == ROLE_PLAIN || rid[i] != ri) continue;
            bool first = true;
            for (size_t j = 0; j < i; j++)
                if (ni[j].role != ROLE_PLAIN && rid[j] == ri &&
                    !strcmp(g->nodes[j].op_type, g->nodes[i].op_type) &&
                    !strcmp(g->nodes[j].domain ? g->nodes[j].domain : "",
                            g->nodes[i].domain ? g->nodes[i].domain : "")) {
                    first = false;
                    break;
                }
            if (!first) continue;
            size_t count = 0;
            for (size_t j = i; j < g->n_nodes; j++)
                if (ni[j].role != ROLE_PLAIN && rid[j] == ri &&
                    !strcmp(g->nodes[j].op_type, g->nodes[i].op_type) &&
                    !strcmp(g->nodes[j].domain ? g->nodes[j].domain : "",
                            g->nodes[i].domain ? g->nodes[i].domain : ""))
                    count++;
            char ob[96];
            put(ops, sizeof ops, &len, "%s%s %zu", len ? ", " : "",
                node_op(&g->nodes[i], ob, sizeof ob), count);
        }
        if (!len) ops[0] = 0;
        char lb[128];
        kiln_node_label(&g->nodes[r->first], lb, sizeof lb);
        if (!r->mark) {
            kiln_opt_note(o, "graph '%s' region %zu: %zu node%s (%s) from %s, stays plain; %s",
                          g->name ? g->name : "", ri + 1, r->n_nodes, r->n_nodes == 1 ? "" : "s",
                          ops, lb, why);
            continue;
        }
        kiln_opt_note(o, "graph '%s' region %zu: %zu node%s (%s) from %s, %s, %zu conversion%s "
                      "(%zu in%s%s, %zu out%s%s); %s%s",
                      g->name ? g->name : "", ri + 1, r->n_nodes, r->n_nodes == 1 ? "" : "s", ops,
                      lb, kiln_opt_layout_name(r->mark), r->n_in + r->n_out,
                      r->n_in + r->n_out == 1 ? "" : "s", r->n_in, r->in_len ? ": " : "",
                      r->in_names, r->n_out, r->out_len ? ": " : "", r->out_names, why, kind_why);
        n_marked++;
        n_conv_total += r->n_in + r->n_out;
        for (size_t i = 0; i < g->n_nodes; i++) {
            if (ni[i].role == ROLE_PLAIN || rid[i] != ri) continue;
            const struct kiln_node *n = &g->nodes[i];
            int id = n->out_ids ? n->out_ids[0] : kiln_graph_find(g, n->outputs[0]);
            if (id >= 0 && (size_t)id < g->n_values) {
                marks[id] = r->mark;
                n_vals++;
            }
        }
    }
    if (n_r)
        kiln_opt_note(o, "graph '%s': %zu of %zu region%s marked, %zu value%s, %zu conversion%s",
                      g->name ? g->name : "", n_marked, n_r, n_r == 1 ? "" : "s", n_vals,
                      n_vals == 1 ? "" : "s", n_conv_total, n_conv_total == 1 ? "" : "s");
    g->layout = marks;
done:
    kiln_free(ni);
    kiln_free(parent);
    kiln_free(rs);
    kiln_free(rid);
    kiln_free(seen);
    return st;
}

const struct kiln_pass kiln_pass_layout = {
    .name = "layout", .level = KILN_OPT_LAYOUT, .analysis = true,
    .doc = "marks the values where a blocked (NCHWc) or channels-last layout pays off (g->layout)",
    .run = run,
};
