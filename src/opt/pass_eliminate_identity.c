/* pass_eliminate_identity.c: removes Identity nodes (any value kind: tensors, sequences,
 * optionals), their consumers reading the input directly. An Identity that connects a graph
 * input (or an outer value, or another graph output) to a graph output stays: the output's
 * name is the graph's interface and nothing else could take it. */
#include <string.h>

#include "opt/opt.h"

static kiln_status run(struct kiln_opt *o, struct kiln_graph *g, bool *changed)
{
    for (size_t i = 0; i < g->n_nodes; i++) {
        if (!kiln_opt_is_op(o, g, i, "Identity")) continue;
        struct kiln_node *n = &g->nodes[i];
        if (n->n_in != 1 || n->n_out != 1 || !n->inputs[0][0]) continue;
        const char *in = n->inputs[0], *out = n->outputs[0];
        if (!out[0]) {
            kiln_opt_remove_node(o, g, i);
            *changed = true;
            continue;
        }
        if (!kiln_opt_can_replace(o, g, out, in)) continue;
        KILN_TRY(kiln_opt_replace_uses(o, g, out, in));
        kiln_opt_remove_node(o, g, i);
        *changed = true;
    }
    return KILN_OK;
}

const struct kiln_pass kiln_pass_eliminate_identity = {
    .name = "eliminate_identity",
    .level = KILN_OPT_BASIC,
    .doc = "removes Identity nodes",
    .run = run,
};
