/* pass_fuse_concat_sb.c: a channels-last Concat read only by a kiln.ScaleBias,
 *
 *     Concat(X0, X1, ..., axis = last) -> [..., C] -> kiln.ScaleBias(., S, B) + activation
 *
 * becomes one kiln.ConcatScaleBias(S, B, X0, X1, ...) with the ScaleBias's activation
 * (src/cpu/ops/scale_bias.c): the pieces are read once and the normalized concatenation
 * written once, where the two nodes wrote the concatenation and read it back. DenseNet's
 * dense layers are this (every earlier layer's features concatenated before the
 * pre-activation BatchNormalization, which the nhwc pass writes as kiln.ScaleBias with its
 * Relu): DenseNet-121's Concats and ScaleBiases took 13% of a run. Same arithmetic, bit for
 * bit.
 *
 * Matched when the Concat's output has a known rank r, its axis is r - 1 (or -1), every
 * piece is float32, and the ScaleBias is the output's only reader (no graph output). Needs
 * kiln ops; runs after nhwc, which makes the ScaleBias.
 */
#include <string.h>

#include "opt/fuse_util.h"

static kiln_status run(struct kiln_opt *o, struct kiln_graph *g, bool *changed)
{
    for (size_t t = 0; t < g->n_nodes; t++) {
        if (!fu_is(o, g, (int)t, "", "Concat")) continue;
        const struct kiln_node *c = &g->nodes[t];
        int r;
        int64_t dims[KILN_MAX_RANK];
        if (c->n_in < 1 || !kiln_opt_static_shape(g, c->outputs[0], &r, dims) || r < 1) continue;
        int64_t axis = kiln_opt_attr_i(c, "axis", 0);
        if (axis != r - 1 && axis != -1) continue;
        bool f32 = true;
        for (size_t i = 0; i < c->n_in && f32; i++) f32 = c->inputs[i][0] && fu_is_f32(g, c->inputs[i]);
        if (!f32) continue;
        int s = fu_next(o, g, t);
        if (s < 0 || !fu_is(o, g, s, "kiln", "ScaleBias")) continue;
        const struct kiln_node *sb = &g->nodes[s];
        if (sb->n_in != 3 || strcmp(sb->inputs[0], c->outputs[0])) continue;
        size_t n_in = 2 + c->n_in;
        const char **ins = kiln_malloc(n_in * sizeof *ins);
        if (!ins) return fu_nomem(o);
        ins[0] = sb->inputs[1];
        ins[1] = sb->inputs[2];
        for (size_t i = 0; i < c->n_in; i++) ins[2 + i] = c->inputs[i];
        size_t nodes[2] = {t, (size_t)s};
        const char *out = sb->outputs[0];
        struct kiln_node *nn;
        kiln_status st = fu_replace(o, g, nodes, 2, "ConcatScaleBias", "kiln", n_in, ins, 1, &out, sb, &nn);
        kiln_free(ins);
        KILN_TRY(st);
        *changed = true;
    }
    return KILN_OK;
}

const struct kiln_pass kiln_pass_fuse_concat_sb = {
    .name = "fuse_concat_sb",
    .level = KILN_OPT_EXTENDED,
    .needs_kiln_ops = true,
    .doc = "channels-last Concat read only by a kiln.ScaleBias -> kiln.ConcatScaleBias",
    .run = run,
};
