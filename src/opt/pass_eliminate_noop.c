/* pass_eliminate_noop.c: removes nodes that return their first input unchanged.
 *
 *   Cast       `to` is the input's element type (inferred)
 *   CastLike   both inputs have the same element type
 *   Reshape    the inferred output shape equals the input's (dims known or the same symbols)
 *   Expand     the same
 *   Transpose  perm is 0, 1, ..., r-1 (or absent with rank <= 1)
 *   Pad        every pad is 0 (attribute before opset 11, constant input after)
 *   Slice      every step is 1 (or absent) and the output shape equals the input's
 *   Concat     one input
 *   Unsqueeze  an empty axes list (attribute or constant input)
 *
 * Shapes come from shape inference; a node whose shapes are not known stays. As with
 * Identity, a node connecting a graph input to a graph output stays.
 */
#include <string.h>

#include "opt/opt.h"

static bool same_dtype(const struct kiln_graph *g, const char *a, const char *b)
{
    kiln_dtype da, db;
    return kiln_opt_tensor_type(g, a, &da, NULL, NULL) && kiln_opt_tensor_type(g, b, &db, NULL, NULL) &&
           da == db;
}

static bool same_shape(const struct kiln_graph *g, const char *a, const char *b)
{
    kiln_dtype da, db;
    int ra, rb;
    const struct kiln_dim *xa, *xb;
    if (!kiln_opt_tensor_type(g, a, &da, &ra, &xa) || !kiln_opt_tensor_type(g, b, &db, &rb, &xb))
        return false;
    if (da != db || ra != rb) return false;
    for (int i = 0; i < ra; i++)
        if (!kiln_dim_eq(xa[i], xb[i])) return false;
    return true;
}

/* Every element of constant `name` equals v (integer tensors); false when not constant. */
static bool const_all(const struct kiln_graph *g, const char *name, int64_t v)
{
    const struct kiln_tensor *t = kiln_opt_const(g, name);
    if (!t) return false;
    size_t n = kiln_tensor_numel(t);
    if (n && !t->data) return false;
    for (size_t i = 0; i < n; i++) {
        int64_t x;
        if (t->dtype == KILN_DTYPE_I64)
            x = ((const int64_t *)t->data)[i];
        else if (t->dtype == KILN_DTYPE_I32)
            x = ((const int32_t *)t->data)[i];
        else
            return false;
        if (x != v) return false;
    }
    return true;
}

static bool ints_all(const int64_t *v, size_t n, int64_t x)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] != x) return false;
    return true;
}

static bool is_noop(const struct kiln_graph *g, const struct kiln_node *n)
{
    const char *op = n->op_type, *in = n->inputs[0], *out = n->outputs[0];
    const int64_t *v;
    size_t cnt;
    if (strcmp(op, "Cast") == 0) {
        kiln_dtype dt;
        const struct kiln_attr *to = kiln_node_attr(n, "to");
        return n->n_in == 1 && to && to->type == KILN_ATTR_INT &&
               kiln_opt_tensor_type(g, in, &dt, NULL, NULL) && (int64_t)dt == to->i;
    }
    if (strcmp(op, "CastLike") == 0)
        return n->n_in == 2 && n->inputs[1][0] && same_dtype(g, in, n->inputs[1]);
    if (strcmp(op, "Reshape") == 0 || strcmp(op, "Expand") == 0)
        return n->n_in == 2 && same_shape(g, in, out);
    if (strcmp(op, "Transpose") == 0) {
        if (n->n_in != 1) return false;
        int rank;
        if (!kiln_node_attr(n, "perm")) return kiln_opt_tensor_type(g, in, NULL, &rank, NULL) && rank <= 1;
        if (!kiln_opt_attr_ints(n, "perm", &v, &cnt)) return false;
        for (size_t i = 0; i < cnt; i++)
            if (v[i] != (int64_t)i) return false;
        return true;
    }
    if (strcmp(op, "Pad") == 0) {
        if (n->since > 0 && n->since < 11)
            return kiln_opt_attr_ints(n, "pads", &v, &cnt) && ints_all(v, cnt, 0);
        return n->n_in >= 2 && n->inputs[1][0] && const_all(g, n->inputs[1], 0);
    }
    if (strcmp(op, "Slice") == 0) {
        if (n->since >= 10 && n->n_in >= 5 && n->inputs[4][0] && !const_all(g, n->inputs[4], 1)) return false;
        return same_shape(g, in, out);
    }
    if (strcmp(op, "Concat") == 0) return n->n_in == 1;
    if (strcmp(op, "Unsqueeze") == 0) {
        /* Not Squeeze: there, empty axes means "every 1-dim" to some runtimes. */
        if (n->since > 0 && n->since < 13) return kiln_opt_attr_ints(n, "axes", &v, &cnt) && cnt == 0;
        if (n->n_in < 2 || !n->inputs[1][0]) return false;
        const struct kiln_tensor *t = kiln_opt_const(g, n->inputs[1]);
        return t && kiln_tensor_numel(t) == 0;
    }
    return false;
}

static kiln_status run(struct kiln_opt *o, struct kiln_graph *g, bool *changed)
{
    for (size_t i = 0; i < g->n_nodes; i++) {
        if (!kiln_opt_live(o, g, i)) continue;
        struct kiln_node *n = &g->nodes[i];
        if (n->domain[0] || n->n_in < 1 || n->n_out != 1 || !n->inputs[0][0]) continue;
        if (!n->outputs[0][0] || !is_noop(g, n)) continue;
        if (!kiln_opt_can_replace(o, g, n->outputs[0], n->inputs[0])) continue;
        KILN_TRY(kiln_opt_replace_uses(o, g, n->outputs[0], n->inputs[0]));
        kiln_opt_remove_node(o, g, i);
        *changed = true;
    }
    return KILN_OK;
}

const struct kiln_pass kiln_pass_eliminate_noop = {
    .name = "eliminate_noop",
    .level = KILN_OPT_BASIC,
    .doc = "removes Cast, Reshape, Expand, Transpose, Pad, Slice, Concat and Unsqueeze that change nothing",
    .run = run,
};
