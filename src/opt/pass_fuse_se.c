/* pass_fuse_se.c: a channels-last squeeze-excitation block (EfficientNet, MobileNetV3,
 * RegNetY), as the nhwc pass leaves it,
 *
 *     kiln.AveragePoolNhwc(X [N, H, W, C], kernel_shape [H, W]) -> [N, 1, 1, C]
 *       -> kiln.ConvNhwc(W1 [R, C, 1, 1], B1?) + activation a1     -> [N, 1, 1, R]
 *       -> kiln.ConvNhwc(W2 [C, R, 1, 1], B2?) + activation a2     -> [N, 1, 1, C]
 *       -> Mul(X, that) (either order)                             -> [N, H, W, C]
 *
 * becomes one kiln.SqueezeExcite(X, W1, B1, W2, B2) with activation a1 and gate_activation
 * a2 (src/cpu/ops/se_block.c): two passes over X split over the threads instead of five
 * nodes, four of them too small to split well (docs/fused-ops.md).
 *
 * Matched on known shapes: X float32 with every dim known; the pool global (kernel [H, W],
 * no pads, dilations 1, auto_pad NOTSET or VALID, output [N, 1, 1, C]); each convolution
 * group 1, a constant float32 1x1 W, a constant B or none, no Z, no pads, auto_pad NOTSET or
 * VALID, output [N, 1, 1, R] and [N, 1, 1, C]; each link the only reader of the one before;
 * X read by the pool and the Mul only (and no graph output), so the five nodes can go. The
 * gate differs from the unfused graph's by float32 rounding (another summation order). Needs
 * kiln ops; runs after nhwc.
 */
#include <string.h>

#include "opt/fuse_util.h"

static bool no_auto_pad(const struct kiln_node *n)
{
    const char *ap = kiln_opt_attr_s(n, "auto_pad", "NOTSET");
    return !strcmp(ap, "NOTSET") || !strcmp(ap, "VALID");
}

/* Node i is a ConvNhwc fit for an SE block reading `in`: 1x1, group 1, constant W [out_c,
 * in_c, 1, 1], constant B or none, no Z, no pads; output [N, 1, 1, out_c]. */
static bool se_conv(const struct kiln_opt *o, const struct kiln_graph *g, int i, const char *in, int64_t N,
                    int64_t in_c, int64_t out_c)
{
    if (i < 0 || !fu_is(o, g, i, "kiln", "ConvNhwc")) return false;
    const struct kiln_node *n = &g->nodes[i];
    if (n->n_in < 2 || strcmp(n->inputs[0], in) || (n->n_in > 3 && n->inputs[3][0])) return false;
    if (kiln_opt_attr_i(n, "group", 1) != 1 || !fu_ints_all(n, "pads", 0) || !no_auto_pad(n)) return false;
    const struct kiln_tensor *w = fu_const_f32(o, g, n->inputs[1]);
    if (!w || w->rank != 4 || w->dims[0] != out_c || w->dims[1] != in_c || w->dims[2] != 1 || w->dims[3] != 1)
        return false;
    if (n->n_in > 2 && n->inputs[2][0]) {
        const struct kiln_tensor *b = fu_const_f32(o, g, n->inputs[2]);
        if (!b || b->rank != 1 || b->dims[0] != out_c) return false;
    }
    int64_t d[4];
    return fu_shape4(g, n->outputs[0], d) && d[0] == N && d[1] == 1 && d[2] == 1 && d[3] == out_c;
}

/* nodes[0..4): the pool at t, fc1, fc2, the Mul. */
static bool match(const struct kiln_opt *o, const struct kiln_graph *g, size_t t, size_t nodes[4])
{
    if (!fu_is(o, g, (int)t, "kiln", "AveragePoolNhwc")) return false;
    const struct kiln_node *p = &g->nodes[t];
    const char *x = p->inputs[0];
    int64_t xd[4], pd[4];
    const int64_t *k;
    size_t nk;
    if (!fu_shape4(g, x, xd) || !fu_shape4(g, p->outputs[0], pd) || pd[0] != xd[0] || pd[1] != 1 || pd[2] != 1 ||
        pd[3] != xd[3])
        return false;
    if (!kiln_opt_attr_ints(p, "kernel_shape", &k, &nk) || nk != 2 || k[0] != xd[1] || k[1] != xd[2] ||
        !fu_ints_all(p, "pads", 0) || !fu_ints_all(p, "dilations", 1) || !no_auto_pad(p))
        return false;
    int c1 = fu_next(o, g, t);
    if (c1 < 0) return false;
    int64_t R = 0;
    const struct kiln_tensor *w1 = g->nodes[c1].n_in > 1 ? fu_const_f32(o, g, g->nodes[c1].inputs[1]) : NULL;
    if (w1 && w1->rank == 4) R = w1->dims[0];
    if (R < 1 || !se_conv(o, g, c1, p->outputs[0], xd[0], xd[3], R)) return false;
    int c2 = fu_next(o, g, (size_t)c1);
    if (!se_conv(o, g, c2, g->nodes[c1].outputs[0], xd[0], R, xd[3]) ||
        strcmp(kiln_opt_attr_s(&g->nodes[c2], "approximate", "none"), "none"))
        return false;
    int m = fu_next(o, g, (size_t)c2);
    if (m < 0 || !fu_is(o, g, m, "", "Mul")) return false;
    int other = fu_other(&g->nodes[m], g->nodes[c2].outputs[0]);
    int64_t md[4];
    if (other < 0 || strcmp(g->nodes[m].inputs[other], x) || !fu_shape4(g, g->nodes[m].outputs[0], md) ||
        memcmp(md, xd, sizeof md))
        return false;
    if (kiln_opt_is_graph_output(g, x) || kiln_opt_uses(g, x) != 2) return false;
    nodes[0] = t, nodes[1] = (size_t)c1, nodes[2] = (size_t)c2, nodes[3] = (size_t)m;
    const char *keep = g->nodes[m].outputs[0];
    return fu_closed(g, nodes, 4, &keep, 1);
}

static kiln_status run(struct kiln_opt *o, struct kiln_graph *g, bool *changed)
{
    for (size_t t = 0; t < g->n_nodes; t++) {
        size_t nodes[4];
        if (!match(o, g, t, nodes)) continue;
        const struct kiln_node *c1 = &g->nodes[nodes[1]], *c2 = &g->nodes[nodes[2]];
        const char *ins[5] = {g->nodes[t].inputs[0], c1->inputs[1], c1->n_in > 2 ? c1->inputs[2] : "",
                              c2->inputs[1], c2->n_in > 2 ? c2->inputs[2] : ""};
        const char *out = g->nodes[nodes[3]].outputs[0];
        struct fu_act a1, a2;
        fu_node_act(c1, &a1);
        fu_node_act(c2, &a2);
        struct kiln_node *nn;
        KILN_TRY(fu_replace(o, g, nodes, 4, "SqueezeExcite", "kiln", 5, ins, 1, &out, NULL, &nn));
        KILN_TRY(fu_set_act(o, nn, &a1));
        if (a2.name[0]) {
            KILN_TRY(kiln_opt_set_attr_s(o, nn, "gate_activation", a2.name));
            if (a2.np) KILN_TRY(kiln_opt_set_attr_floats(o, nn, "gate_activation_params", a2.p, a2.np));
        }
        *changed = true;
    }
    return KILN_OK;
}

const struct kiln_pass kiln_pass_fuse_se = {
    .name = "fuse_se",
    .level = KILN_OPT_EXTENDED,
    .needs_kiln_ops = true,
    .doc = "channels-last squeeze-excitation (global pool -> 1x1 conv -> 1x1 conv -> Mul) -> "
           "kiln.SqueezeExcite",
    .run = run,
};
