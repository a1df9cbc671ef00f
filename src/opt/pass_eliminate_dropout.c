/* pass_eliminate_dropout.c: removes Dropout in inference mode, which passes its input
 * through unchanged (the ratio is then ignored).
 *
 * Inference mode: opset 12+ without a training_mode input, or with a constant false one;
 * opsets 7-11 always (no training mode there); opsets 1 and 6 when is_test is 1. The mask
 * output (all true in inference mode) must be unused: a node whose mask is read stays.
 */
#include <string.h>

#include "opt/opt.h"

static bool inference_mode(const struct kiln_graph *g, const struct kiln_node *n)
{
    if (n->since > 0 && n->since < 7) return kiln_opt_attr_i(n, "is_test", 0) != 0;
    if (n->n_in < 3 || !n->inputs[2][0]) return true;
    double v;
    return kiln_opt_const_scalar(g, n->inputs[2], &v) && v == 0;
}

static kiln_status run(struct kiln_opt *o, struct kiln_graph *g, bool *changed)
{
    for (size_t i = 0; i < g->n_nodes; i++) {
        if (!kiln_opt_is_op(o, g, i, "Dropout")) continue;
        struct kiln_node *n = &g->nodes[i];
        if (n->n_in < 1 || n->n_out < 1 || n->n_out > 2 || !n->inputs[0][0]) continue;
        if (!inference_mode(g, n)) continue;
        if (n->n_out == 2 && n->outputs[1][0] && kiln_opt_uses(g, n->outputs[1]) > 0) continue;
        const char *in = n->inputs[0], *out = n->outputs[0];
        if (out[0]) {
            if (!kiln_opt_can_replace(o, g, out, in)) continue;
            KILN_TRY(kiln_opt_replace_uses(o, g, out, in));
        }
        kiln_opt_remove_node(o, g, i);
        *changed = true;
    }
    return KILN_OK;
}

const struct kiln_pass kiln_pass_eliminate_dropout = {
    .name = "eliminate_dropout",
    .level = KILN_OPT_BASIC,
    .doc = "removes inference-mode Dropout whose mask is unused",
    .run = run,
};
