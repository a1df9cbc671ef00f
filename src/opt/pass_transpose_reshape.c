/* pass_transpose_reshape.c: a Transpose that moves only dims of size 1 (the other dims keep
 * their order) leaves the elements in memory order: it becomes a Reshape to its output's
 * static shape (opset 5 and later), which copies nothing. PyTorch's sequence-first attention
 * transposes [1, S, D] -> [S, 1, D] around every layer (ViT-B/16: two 600 KB copies a layer,
 * 0.3 ms at 2 threads on a Zen 4). Runs after the layout passes, and leaves a Transpose
 * next to another Transpose alone, so that merge_transposes and push_transpose still cancel
 * pairs (the boundaries of fuse_qdq's and nhwc's channels-last chains).
 */
#include <string.h>

#include "opt/fuse_util.h"
#include "opt/opt.h"

/* Whether a node that reads `name` is a Transpose. */
static bool read_by_transpose(const struct kiln_opt *o, const struct kiln_graph *g, const char *name)
{
    for (size_t j = 0; j < g->n_nodes; j++)
        if (kiln_opt_is_op(o, g, j, "Transpose") && g->nodes[j].n_in && !strcmp(g->nodes[j].inputs[0], name))
            return true;
    return false;
}

/* Transpose node i as a Reshape when it moves only dims of size 1 of a static shape and no
 * Transpose is next to it (merge_transposes' to fuse). */
static kiln_status unit_moves(struct kiln_opt *o, struct kiln_graph *g, size_t i, bool *changed)
{
    struct kiln_node *t = &g->nodes[i];
    int64_t perm[KILN_MAX_RANK], dims[KILN_MAX_RANK], od[KILN_MAX_RANK];
    size_t r;
    int rank;
    if (fu_opset(o) < 5 || !fu_transpose_perm(g, t, perm, &r) ||
        !kiln_opt_static_shape(g, t->inputs[0], &rank, dims) || (size_t)rank != r || r < 2)
        return KILN_OK;
    int64_t last = -1;
    for (size_t k = 0; k < r; k++) {
        if (dims[perm[k]] < 1) return KILN_OK; /* an empty tensor: a 0 in Reshape's shape copies a dim */
        od[k] = dims[perm[k]];
        if (dims[perm[k]] == 1) continue;
        if (perm[k] < last) return KILN_OK; /* two dims of size > 1 swap: a real transpose */
        last = perm[k];
    }
    struct kiln_tensor shp;
    int64_t sd[1] = {(int64_t)r};
    const char *sname, *ins[2];
    KILN_TRY(kiln_opt_new_tensor(o, KILN_DTYPE_I64, 1, sd, &shp));
    memcpy(shp.data, od, r * sizeof *od);
    KILN_TRY(kiln_opt_add_init(o, g, "transpose_shape", &shp, &sname));
    t = &g->nodes[i];
    ins[0] = t->inputs[0], ins[1] = sname;
    KILN_TRY(
        kiln_opt_add_node(o, g, "Reshape", "", t->name, 2, ins, 1, (const char *const *)t->outputs, NULL));
    kiln_opt_remove_node(o, g, i);
    *changed = true;
    return KILN_OK;
}

static kiln_status run(struct kiln_opt *o, struct kiln_graph *g, bool *changed)
{
    for (size_t i = 0; i < g->n_nodes; i++) {
        if (!kiln_opt_is_op(o, g, i, "Transpose")) continue;
        const struct kiln_node *t = &g->nodes[i];
        if (t->n_in != 1 || t->n_out != 1 || !t->inputs[0][0] || !t->outputs[0][0]) continue;
        int p = kiln_opt_producer(g, t->inputs[0]);
        if ((p >= 0 && kiln_opt_is_op(o, g, (size_t)p, "Transpose")) ||
            read_by_transpose(o, g, t->outputs[0]))
            continue;
        KILN_TRY(unit_moves(o, g, i, changed));
    }
    return KILN_OK;
}

const struct kiln_pass kiln_pass_transpose_reshape = {
    .name = "transpose_reshape",
    .level = KILN_OPT_BASIC,
    .doc = "a Transpose that moves only dims of size 1 becomes a Reshape",
    .run = run,
};
