/* pass_dce.c: dead-code elimination.
 *
 * A node is dead when none of its outputs is used: not read by a live node (directly or by
 * one of its subgraphs) and not a graph output. Nodes are visited in reverse topological
 * order, so a dead node's producers see it gone and whole dead chains go in one run.
 * Initializers nothing reads then go too, except those that are also graph inputs (a model's
 * interface; before IR version 4 every initializer is listed as an input and those go with
 * their input entry). Graph inputs and outputs are never removed; a subgraph's inputs and
 * outputs are its signature and stay too. ONNX ops have no side effects, so an unused node
 * can always go, subgraphs and all.
 */
#include <string.h>

#include "opt/opt.h"

/* Live uses of `name`: graph outputs, and consumers (direct or through subgraphs) that are
 * not removed. */
static bool used(const struct kiln_opt *o, const struct kiln_graph *g, const char *name)
{
    if (!name[0]) return false;
    if (kiln_opt_is_graph_output(g, name)) return true;
    int id = kiln_graph_find(g, name);
    if (id < 0) return false;
    const struct kiln_graph_value *v = &g->values[id];
    for (int c = 0; c < v->n_consumers; c++)
        if (kiln_opt_live(o, g, (size_t)v->consumers[c])) return true;
    return false;
}

static kiln_status run(struct kiln_opt *o, struct kiln_graph *g, bool *changed)
{
    const struct kiln_model *m = kiln_opt_model(o);
    for (size_t i = g->n_nodes; i-- > 0;) {
        if (!kiln_opt_live(o, g, i)) continue;
        const struct kiln_node *n = &g->nodes[i];
        bool any = false;
        for (size_t k = 0; k < n->n_out && !any; k++) any = used(o, g, n->outputs[k]);
        if (any) continue;
        kiln_opt_remove_node(o, g, i);
        *changed = true;
    }
    bool old_ir = !g->parent && m->ir_version > 0 && m->ir_version < 4;
    for (size_t i = 0; i < g->n_inits; i++) {
        const char *name = g->inits[i].name;
        if (used(o, g, name)) continue;
        if (!old_ir && kiln_opt_is_graph_input(g, name)) continue;
        kiln_opt_remove_init(o, g, i);
        *changed = true;
    }
    return KILN_OK;
}

const struct kiln_pass kiln_pass_dce = {
    .name = "dce",
    .level = KILN_OPT_BASIC,
    .doc = "removes nodes whose outputs nothing uses, and unused initializers",
    .run = run,
};
