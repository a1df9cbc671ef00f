/* pass_merge_transposes.c: Transpose(Transpose(x, p1), p2) is Transpose(x, q) with
 * q[i] = p1[p2[i]]; when q is the identity it is x itself. The second node is rewritten in
 * place (input x, perm q) or removed; the first stays while something else reads it. An
 * absent perm (reverse the dims) needs the rank, from shape inference.

 */
#include <string.h>

#include "opt/fuse_util.h"
#include "opt/opt.h"

static kiln_status run(struct kiln_opt *o, struct kiln_graph *g, bool *changed)
{
    for (size_t i = 0; i < g->n_nodes; i++) {
        if (!kiln_opt_is_op(o, g, i, "Transpose")) continue;
        struct kiln_node *t2 = &g->nodes[i];
        if (t2->n_in != 1 || t2->n_out != 1 || !t2->inputs[0][0] || !t2->outputs[0][0]) continue;
        int p = kiln_opt_producer(g, t2->inputs[0]);
        if (p < 0 || (size_t)p == i || !kiln_opt_is_op(o, g, (size_t)p, "Transpose")) continue;
        const struct kiln_node *t1 = &g->nodes[p];
        if (t1->n_in != 1 || !t1->inputs[0][0]) continue;
        int64_t p1[KILN_MAX_RANK], p2[KILN_MAX_RANK], q[KILN_MAX_RANK];
        size_t r1, r2;
        if (!fu_transpose_perm(g, t1, p1, &r1) || !fu_transpose_perm(g, t2, p2, &r2) || r1 != r2) continue;
        bool identity = true;
        for (size_t k = 0; k < r1; k++) {
            q[k] = p1[p2[k]];
            if (q[k] != (int64_t)k) identity = false;
        }
        const char *x = t1->inputs[0];
        if (identity) {
            if (!kiln_opt_can_replace(o, g, t2->outputs[0], x)) continue;
            KILN_TRY(kiln_opt_replace_uses(o, g, t2->outputs[0], x));
            kiln_opt_remove_node(o, g, i);
        } else {
            KILN_TRY(kiln_opt_set_input(o, t2, 0, x));
            KILN_TRY(kiln_opt_set_attr_ints(o, t2, "perm", q, r1));
        }
        *changed = true;
    }
    return KILN_OK;
}

const struct kiln_pass kiln_pass_merge_transposes = {
    .name = "merge_transposes",
    .level = KILN_OPT_BASIC,
    .doc = "merges consecutive Transposes into one, or removes them when they cancel",
    .run = run,
};
