/* pass_fuse_channel_shuffle.c: ShuffleNet's channel shuffle, written by exporters as
 *
 *     Reshape(X [N, C, H, W] -> [N, g, C/g, H, W]) -> Transpose(perm 0,2,1,3,4)
 *       -> Reshape(-> [N, C, H, W])
 *
 * becomes one kiln.ChannelShuffle(X, group g, axis 1) (src/cpu/ops/shuffle.c): one pass over
 * memory instead of a 5-D transpose, and a node the nhwc pass can move to channels-last.
 *
 * Matched on the inferred shapes, so the Reshapes' shape inputs may be any form (constants
 * with -1 or 0, shape arithmetic): X is 4-D with a known C; the first Reshape's output is
 * [N, g, C/g, H, W] and the last one's [N, C, H, W] with the same N, H, W as X (known values,
 * or the same symbol); the Reshape and Transpose outputs in between have no other reader. A
 * row-major Reshape that keeps N and splits C into (g, C/g) can only be that split, so the
 * shapes pin the semantics. Bitwise exact (a copy). Needs kiln ops.
 */
#include <string.h>

#include "opt/fuse_util.h"

static bool dim_same(struct kiln_dim a, struct kiln_dim b)
{
    if (kiln_dim_known(a) || kiln_dim_known(b))
        return kiln_dim_known(a) && kiln_dim_known(b) && a.value == b.value;
    return a.param && b.param && !strcmp(a.param, b.param);
}

/* The shape of `name` when it is a tensor of rank r. */
static const struct kiln_dim *shape_r(const struct kiln_graph *g, const char *name, int r)
{
    kiln_dtype dt;
    int rank;
    const struct kiln_dim *d;
    return kiln_opt_tensor_type(g, name, &dt, &rank, &d) && rank == r ? d : NULL;
}

/* The group of the shuffle whose Transpose is node t (with Reshapes h before and r after),
 * or 0 when t is not the middle of one. */
static int64_t match(const struct kiln_opt *o, const struct kiln_graph *g, size_t t, size_t *h,
                     size_t *r)
{
    static const int64_t PERM[5] = {0, 2, 1, 3, 4};
    const struct kiln_node *tn = &g->nodes[t];
    const int64_t *perm;
    size_t np;
    if (!kiln_opt_is_op(o, g, t, "Transpose") || tn->n_in != 1 || tn->n_out != 1 ||
        !kiln_opt_attr_ints(tn, "perm", &perm, &np) || np != 5 || memcmp(perm, PERM, sizeof PERM))
        return 0;
    int hi = kiln_opt_input_from(o, g, t, 0, "Reshape"), ri = fu_next(o, g, t);
    if (hi < 0 || ri < 0 || !kiln_opt_is_op(o, g, (size_t)ri, "Reshape")) return 0;
    const struct kiln_node *hn = &g->nodes[hi], *rn = &g->nodes[ri];
    if (hn->n_out != 1 || rn->n_out != 1 || strcmp(rn->inputs[0], tn->outputs[0])) return 0;
    const struct kiln_dim *x = shape_r(g, hn->inputs[0], 4), *s = shape_r(g, hn->outputs[0], 5),
                          *y = shape_r(g, rn->outputs[0], 4);
    if (!x || !s || !y || !kiln_dim_known(x[1]) || !kiln_dim_known(s[1]) || !kiln_dim_known(s[2]))
        return 0;
    int64_t grp = s[1].value;
    if (grp < 1 || grp * s[2].value != x[1].value) return 0;
    if (!dim_same(s[0], x[0]) || !dim_same(s[3], x[2]) || !dim_same(s[4], x[3])) return 0;
    for (int i = 0; i < 4; i++)
        if (!dim_same(y[i], x[i])) return 0;
    *h = (size_t)hi;
    *r = (size_t)ri;
    return grp;
}

static kiln_status run(struct kiln_opt *o, struct kiln_graph *g, bool *changed)
{
    for (size_t t = 0; t < g->n_nodes; t++) {
        size_t h, r;
        int64_t grp = match(o, g, t, &h, &r);
        if (!grp) continue;
        const char *in = g->nodes[h].inputs[0], *out = g->nodes[r].outputs[0];
        size_t nodes[3] = {h, t, r};
        struct kiln_node *nn;
        KILN_TRY(fu_replace(o, g, nodes, 3, "ChannelShuffle", "kiln", 1, &in, 1, &out, NULL, &nn));
        KILN_TRY(kiln_opt_set_attr_i(o, nn, "group", grp));
        KILN_TRY(kiln_opt_set_attr_i(o, nn, "axis", 1));
        *changed = true;
    }
    return KILN_OK;
}

const struct kiln_pass kiln_pass_fuse_channel_shuffle = {
    .name = "fuse_channel_shuffle",
    .level = KILN_OPT_EXTENDED,
    .needs_kiln_ops = true,
    .doc = "Reshape -> Transpose(0,2,1,3,4) -> Reshape channel shuffle -> kiln.ChannelShuffle",
    .run = run,
};
