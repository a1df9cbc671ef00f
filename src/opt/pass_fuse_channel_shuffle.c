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
 *
 * Second, after the nhwc pass has made a ShuffleNetV2 unit boundary channels-last:
 *
 *     Concat(A, B on the last axis) -> kiln.ChannelShuffle(group 2, last axis)
 *       -> Slice [0, G) and Slice [G, 2G) of the last axis (its only two readers)
 *
 * with A and B float32 of one shape (last dim G known) becomes kiln.ShuffleSplit(A, B) ->
 * (low, high) (src/cpu/ops/shuffle.c): one pass instead of three copies. The Slices are
 * opset 10+ with one-element constant starts / ends / axes and step 1 (negative and
 * out-of-range starts / ends clamped as Slice does).
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

/* ---------------------------------------------------------------- ShuffleSplit (NHWC) */

/* A one-element int32/int64 constant, as *v. */
static bool const_i1(const struct kiln_opt *o, const struct kiln_graph *g, const char *name, int64_t *v)
{
    const struct kiln_tensor *t = fu_const(o, g, name);
    if (!t || !t->data || kiln_tensor_numel(t) != 1) return false;
    if (t->dtype == KILN_DTYPE_I64) *v = ((const int64_t *)t->data)[0];
    else if (t->dtype == KILN_DTYPE_I32) *v = ((const int32_t *)t->data)[0];
    else return false;
    return true;
}

/* Node i is a Slice (opset 10+) of the last axis (rank r, length len) with step 1; *lo, *hi
 * its clamped range. */
static bool last_axis_slice(const struct kiln_opt *o, const struct kiln_graph *g, size_t i, int r,
                            int64_t len, int64_t *lo, int64_t *hi)
{
    const struct kiln_node *n = &g->nodes[i];
    int64_t st, en, ax, step = 1;
    if (!kiln_opt_is_op(o, g, i, "Slice") || (n->since > 0 && n->since < 10) || n->n_in < 4 ||
        n->n_in > 5 || n->n_out != 1 || !const_i1(o, g, n->inputs[1], &st) ||
        !const_i1(o, g, n->inputs[2], &en) || !const_i1(o, g, n->inputs[3], &ax))
        return false;
    if (n->n_in == 5 && n->inputs[4][0] && !const_i1(o, g, n->inputs[4], &step)) return false;
    if (step != 1 || (ax != r - 1 && ax != -1)) return false;
    if (st < 0) st += len;
    if (en < 0) en += len;
    *lo = st < 0 ? 0 : st > len ? len : st;
    *hi = en < 0 ? 0 : en > len ? len : en;
    return true;
}

/* kiln.ChannelShuffle node c (group 2, last axis) reading Concat(A, B) on the last axis (A
 * and B of one shape, last dim G) and read by exactly two Slices taking [0, G) and [G, 2G):
 * nodes[0..4) = Concat, shuffle, low Slice, high Slice. */
static bool match_split(const struct kiln_opt *o, const struct kiln_graph *g, size_t c, size_t *nodes)
{
    const struct kiln_node *cn = &g->nodes[c];
    if (!fu_is(o, g, (int)c, "kiln", "ChannelShuffle") || cn->n_in != 1 || cn->n_out != 1 ||
        kiln_opt_attr_i(cn, "group", 0) != 2)
        return false;
    int cat = kiln_opt_input_from(o, g, c, 0, "Concat");
    if (cat < 0 || g->nodes[cat].n_in != 2 || g->nodes[cat].n_out != 1) return false;
    const struct kiln_node *kn = &g->nodes[cat];
    kiln_dtype dt;
    int r, rb;
    const struct kiln_dim *a, *b;
    if (!kiln_opt_tensor_type(g, kn->inputs[0], &dt, &r, &a) || dt != KILN_DTYPE_F32 || r < 1 ||
        !kiln_opt_tensor_type(g, kn->inputs[1], &dt, &rb, &b) || dt != KILN_DTYPE_F32 || rb != r ||
        !kiln_dim_known(a[r - 1]))
        return false;
    for (int i = 0; i < r; i++)
        if (!dim_same(a[i], b[i])) return false;
    int64_t ax = kiln_opt_attr_i(cn, "axis", 1), cax = kiln_opt_attr_i(kn, "axis", 0);
    if ((ax != r - 1 && ax != -1) || (cax != r - 1 && cax != -1)) return false;
    int64_t G = a[r - 1].value;
    const char *v = cn->outputs[0];
    int id = kiln_graph_find(g, v);
    if (id < 0 || kiln_opt_is_graph_output(g, v) || kiln_opt_uses(g, v) != 2) return false;
    const struct kiln_graph_value *gv = &g->values[id];
    if (gv->n_consumers != 2 || gv->consumers[0] == gv->consumers[1]) return false;
    int found = 0;
    for (int k = 0; k < 2; k++) {
        size_t s = (size_t)gv->consumers[k];
        int64_t lo, hi;
        if (strcmp(g->nodes[s].inputs[0], v) || !last_axis_slice(o, g, s, r, 2 * G, &lo, &hi)) return false;
        if (lo == 0 && hi == G) nodes[2] = s, found |= 1;
        else if (lo == G && hi == 2 * G) nodes[3] = s, found |= 2;
    }
    nodes[0] = (size_t)cat;
    nodes[1] = c;
    return found == 3;
}

/* Concat -> ChannelShuffle -> two Slices (nodes[0..4), match_split) -> ShuffleSplit. */
static kiln_status fuse_split(struct kiln_opt *o, struct kiln_graph *g, const size_t *nodes, bool *changed)
{
    const char *keep[2] = {g->nodes[nodes[2]].outputs[0], g->nodes[nodes[3]].outputs[0]};
    if (!fu_closed(g, nodes, 4, keep, 2)) return KILN_OK;
    const char *ins[2] = {g->nodes[nodes[0]].inputs[0], g->nodes[nodes[0]].inputs[1]};
    KILN_TRY(fu_replace(o, g, nodes, 4, "ShuffleSplit", "kiln", 2, ins, 2, keep, NULL, NULL));
    *changed = true;
    return KILN_OK;
}

static kiln_status run(struct kiln_opt *o, struct kiln_graph *g, bool *changed)
{
    for (size_t t = 0; t < g->n_nodes; t++) {
        size_t h, r, nodes[4];
        if (match_split(o, g, t, nodes)) {
            KILN_TRY(fuse_split(o, g, nodes, changed));
            continue;
        }
        int64_t grp = match(o, g, t, &h, &r);
        if (!grp) continue;
        const char *in = g->nodes[h].inputs[0], *out = g->nodes[r].outputs[0];
        size_t chain[3] = {h, t, r};
        struct kiln_node *nn;
        KILN_TRY(fu_replace(o, g, chain, 3, "ChannelShuffle", "kiln", 1, &in, 1, &out, NULL, &nn));
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
    .doc = "Reshape -> Transpose(0,2,1,3,4) -> Reshape channel shuffle -> kiln.ChannelShuffle; "
           "channels-last Concat -> shuffle -> two half Slices -> kiln.ShuffleSplit",
    .run = run,
};
