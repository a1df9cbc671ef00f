/* pass_cancel_unsqueeze_squeeze.c: Squeeze(Unsqueeze(x, A), B) is x when A and B name the
 * same axes (both normalized against the rank of Unsqueeze's output); likewise
 * Unsqueeze(Squeeze(x, A), B) is x when the axes agree (against x's rank; the squeezed dims
 * are 1, or the Squeeze would fail). The second node's consumers read x; the first node stays
 * while something else reads it (dce removes it otherwise). Axes come from the attribute
 * (before opset 13) or a constant input; a Squeeze without axes is left alone.
 */
#include <stdlib.h>
#include <string.h>

#include "opt/opt.h"

/* The node's axes, sorted and normalized against `rank` (-1: unknown, then negative axes
 * fail). */
static bool node_axes(const struct kiln_graph *g, const struct kiln_node *n, int rank, int64_t *out,
                      size_t *count)
{
    const int64_t *v = NULL;
    size_t cnt = 0;
    int64_t buf[KILN_MAX_RANK];
    if (n->since > 0 && n->since < 13) {
        if (!kiln_opt_attr_ints(n, "axes", &v, &cnt)) return false;
    } else {
        if (n->n_in < 2 || !n->inputs[1][0]) return false;
        const struct kiln_tensor *t = kiln_opt_const(g, n->inputs[1]);
        if (!t || (t->dtype != KILN_DTYPE_I64) || (kiln_tensor_numel(t) && !t->data)) return false;
        cnt = kiln_tensor_numel(t);
        if (cnt > KILN_MAX_RANK) return false;
        memcpy(buf, t->data, cnt * sizeof *buf);
        v = buf;
    }
    if (cnt == 0 || cnt > KILN_MAX_RANK) return false;
    for (size_t i = 0; i < cnt; i++) {
        int64_t a = v[i];
        if (a < 0) {
            if (rank < 0) return false;
            a += rank;
        }
        if (a < 0 || (rank >= 0 && a >= rank)) return false;
        /* sorted insert; duplicates make the node invalid: leave it */
        size_t j = i;
        while (j > 0 && out[j - 1] > a) {
            out[j] = out[j - 1];
            j--;
        }
        if (j > 0 && out[j - 1] == a) return false;
        out[j] = a;
    }
    *count = cnt;
    return true;
}

static int rank_of(const struct kiln_graph *g, const char *name)
{
    int r;
    return kiln_opt_tensor_type(g, name, NULL, &r, NULL) ? r : -1;
}

static kiln_status run(struct kiln_opt *o, struct kiln_graph *g, bool *changed)
{
    for (size_t i = 0; i < g->n_nodes; i++) {
        bool sq = kiln_opt_is_op(o, g, i, "Squeeze"), unsq = kiln_opt_is_op(o, g, i, "Unsqueeze");
        if (!sq && !unsq) continue;
        struct kiln_node *second = &g->nodes[i];
        if (second->n_in < 1 || second->n_out != 1 || !second->outputs[0][0]) continue;
        int p = kiln_opt_producer(g, second->inputs[0]);
        if (p < 0 || !kiln_opt_is_op(o, g, (size_t)p, sq ? "Unsqueeze" : "Squeeze")) continue;
        const struct kiln_node *first = &g->nodes[p];
        if (first->n_in < 1 || !first->inputs[0][0] || first->n_out != 1) continue;
        const char *x = first->inputs[0];
        /* Both axis lists refer to the bigger rank: Unsqueeze's output / Squeeze's input. */
        int big = rank_of(g, sq ? second->inputs[0] : x);
        int64_t a[KILN_MAX_RANK], b[KILN_MAX_RANK];
        size_t na, nb;
        if (!node_axes(g, first, big, a, &na) || !node_axes(g, second, big, b, &nb)) continue;
        if (na != nb || memcmp(a, b, na * sizeof *a) != 0) continue;
        if (!kiln_opt_can_replace(o, g, second->outputs[0], x)) continue;
        KILN_TRY(kiln_opt_replace_uses(o, g, second->outputs[0], x));
        kiln_opt_remove_node(o, g, i);
        *changed = true;
    }
    return KILN_OK;
}

const struct kiln_pass kiln_pass_cancel_unsqueeze_squeeze = {
    .name = "cancel_unsqueeze_squeeze",
    .level = KILN_OPT_BASIC,
    .doc = "removes Unsqueeze -> Squeeze (and Squeeze -> Unsqueeze) pairs over the same axes",
    .run = run,
};
