/* pass_fuse_gelu.c: GELU written out with Erf or Tanh becomes one Gelu node:
 *
 *   erf form   x * 0.5 * (1 + Erf(x / sqrt 2))      (x / 1.41421 or x * 0.707107)
 *   tanh form  x * 0.5 * (1 + Tanh(sqrt(2/pi) * (x + 0.044715 * x^3)))
 *              (x^3 as Pow(x, 3) or x * x * x; the inner sum as x + 0.044715 x^3 or
 *              x + x^3 * 0.044715, in either operand order)
 *
 * in the product orders exporters use: (x * (1 + E)) * 0.5, (x * 0.5) * (1 + E) and
 * x * ((1 + E) * 0.5), each product and sum in either operand order. The result is Gelu
 * (opset 20+, approximate "none" or "tanh") or else kiln.Gelu (needs kiln ops). Constants
 * match within a relative 1e-4 (they are float32 spellings of irrational numbers); every
 * intermediate must have no other use. The fused kernel computes the same formula in float32.
 */
#include <string.h>

#include "opt/fuse_util.h"

#define TOL 1e-4

struct gelu_match {
    size_t nodes[12];
    size_t n;
    const char *x;
};

/* Node i of default-domain op `op` with output 0 used only once, by a live node; adds it. */
static bool take(const struct kiln_opt *o, const struct kiln_graph *g, int i, const char *op,
                 struct gelu_match *m)
{
    if (!fu_is(o, g, i, "", op) || m->n >= 12) return false;
    m->nodes[m->n++] = (size_t)i;
    return true;
}

/* The binary node producing `name` (op, single use): its operand that is the constant c
 * (within TOL) and its other operand. */
static bool const_operand(const struct kiln_opt *o, const struct kiln_graph *g, const char *name,
                          const char *op, double c, const char **other, struct gelu_match *m)
{
    int p = kiln_opt_producer(g, name);
    if (p < 0 || kiln_opt_single_consumer(g, name) < 0 || !fu_is(o, g, p, "", op)) return false;
    const struct kiln_node *n = &g->nodes[p];
    if (n->n_in != 2) return false;
    for (int k = 0; k < 2; k++)
        if (fu_const_all(o, g, n->inputs[k], c, TOL) && !(op[0] == 'D' && k == 0)) {
            *other = n->inputs[1 - k];
            return take(o, g, p, op, m);
        }
    return false;
}

/* Whether `name` is x^3 (Pow(x, 3), x * (x * x) or (x * x) * x), taking its nodes. */
static bool cube_of(const struct kiln_opt *o, const struct kiln_graph *g, const char *name,
                    const char *x, struct gelu_match *m)
{
    int p = kiln_opt_producer(g, name);
    if (p < 0 || kiln_opt_single_consumer(g, name) < 0) return false;
    const struct kiln_node *n = &g->nodes[p];
    if (n->n_in != 2) return false;
    if (fu_is(o, g, p, "", "Pow"))
        return !strcmp(n->inputs[0], x) && fu_const_all(o, g, n->inputs[1], 3, 0) && take(o, g, p, "Pow", m);
    if (!fu_is(o, g, p, "", "Mul")) return false;
    int k = fu_other(n, x);
    if (k < 0) return false;
    int q = kiln_opt_producer(g, n->inputs[k]);
    if (q < 0 || kiln_opt_single_consumer(g, n->inputs[k]) < 0 || !fu_is(o, g, q, "", "Mul")) return false;
    const struct kiln_node *sq = &g->nodes[q];
    if (sq->n_in != 2 || strcmp(sq->inputs[0], x) || strcmp(sq->inputs[1], x)) return false;
    return take(o, g, p, "Mul", m) && take(o, g, q, "Mul", m);
}

/* The argument of the Erf/Tanh node e: sets m->x and takes the nodes computing it. */
static bool gelu_arg(const struct kiln_opt *o, const struct kiln_graph *g, const struct kiln_node *e,
                     bool tanh_form, struct gelu_match *m)
{
    const char *in = e->inputs[0], *x;
    if (!tanh_form) {
        if (const_operand(o, g, in, "Div", 1.41421356237, &x, m) ||
            const_operand(o, g, in, "Mul", 0.70710678118, &x, m)) {
            m->x = x;
            return true;
        }
        return false;
    }
    const char *sum;
    if (!const_operand(o, g, in, "Mul", 0.79788456080, &sum, m)) return false;
    int a = kiln_opt_producer(g, sum);
    if (a < 0 || kiln_opt_single_consumer(g, sum) < 0 || !take(o, g, a, "Add", m)) return false;
    const struct kiln_node *an = &g->nodes[a];
    if (an->n_in != 2) return false;
    for (int k = 0; k < 2; k++) {
        const char *cube;
        size_t save = m->n;
        if (const_operand(o, g, an->inputs[1 - k], "Mul", 0.044715, &cube, m) &&
            cube_of(o, g, cube, an->inputs[k], m)) {
            m->x = an->inputs[k];
            return true;
        }
        m->n = save;
    }
    return false;
}

/* From Erf/Tanh node ei: the 1 + E, the products with x and 0.5; *out the result. */
static bool gelu_tail(const struct kiln_opt *o, const struct kiln_graph *g, size_t ei,
                      struct gelu_match *m, const char **out)
{
    int a = fu_next(o, g, ei);
    if (a < 0 || !take(o, g, a, "Add", m)) return false;
    const struct kiln_node *an = &g->nodes[a];
    int k = fu_other(an, g->nodes[ei].outputs[0]);
    if (k < 0 || !fu_const_all(o, g, an->inputs[k], 1, 0)) return false;
    int p = fu_next(o, g, (size_t)a);
    if (p < 0 || !take(o, g, p, "Mul", m)) return false;
    const struct kiln_node *pn = &g->nodes[p];
    k = fu_other(pn, an->outputs[0]);
    if (k < 0) return false;
    const char *f = pn->inputs[k];
    if (!strcmp(f, m->x)) { /* (x * (1 + E)) * 0.5 */
        int h = fu_next(o, g, (size_t)p);
        if (h < 0 || !take(o, g, h, "Mul", m)) return false;
        int j = fu_other(&g->nodes[h], pn->outputs[0]);
        if (j < 0 || !fu_const_all(o, g, g->nodes[h].inputs[j], 0.5, 0)) return false;
        *out = g->nodes[h].outputs[0];
        return true;
    }
    if (fu_const_all(o, g, f, 0.5, 0)) { /* x * ((1 + E) * 0.5) */
        int h = fu_next(o, g, (size_t)p);
        if (h < 0 || !take(o, g, h, "Mul", m)) return false;
        int j = fu_other(&g->nodes[h], pn->outputs[0]);
        if (j < 0 || strcmp(g->nodes[h].inputs[j], m->x)) return false;
        *out = g->nodes[h].outputs[0];
        return true;
    }
    const char *xx; /* (x * 0.5) * (1 + E) */
    if (!const_operand(o, g, f, "Mul", 0.5, &xx, m) || strcmp(xx, m->x)) return false;
    *out = pn->outputs[0];
    return true;
}

static kiln_status run(struct kiln_opt *o, struct kiln_graph *g, bool *changed)
{
    bool std_gelu = fu_opset(o) >= 20;
    if (!std_gelu && !kiln_opt_keep_fused(o)) return KILN_OK;
    for (size_t i = 0; i < g->n_nodes; i++) {
        bool erf = kiln_opt_is_op(o, g, i, "Erf"), th = kiln_opt_is_op(o, g, i, "Tanh");
        if (!erf && !th) continue;
        const struct kiln_node *e = &g->nodes[i];
        if (e->n_in != 1 || e->n_out != 1) continue;
        struct gelu_match m = {.nodes = {i}, .n = 1};
        const char *out;
        if (!gelu_arg(o, g, e, th, &m) || !gelu_tail(o, g, i, &m, &out)) continue;
        /* x feeds the argument and the product: two uses inside the pattern. */
        if (!fu_is_f32(g, m.x)) continue;
        bool dup = false;
        for (size_t a = 0; a < m.n; a++)
            for (size_t b = a + 1; b < m.n; b++) dup = dup || m.nodes[a] == m.nodes[b];
        const char *keep[1] = {out};
        if (dup || !fu_closed(g, m.nodes, m.n, keep, 1)) continue;
        const char *ins[1] = {m.x}, *outs[1] = {out};
        struct kiln_node *nn;
        KILN_TRY(fu_replace(o, g, m.nodes, m.n, "Gelu", std_gelu ? "" : "kiln", 1, ins, 1, outs,
                            NULL, &nn));
        if (th) KILN_TRY(kiln_opt_set_attr_s(o, nn, "approximate", "tanh"));
        *changed = true;
    }
    return KILN_OK;
}

const struct kiln_pass kiln_pass_fuse_gelu = {
    .name = "fuse_gelu",
    .level = KILN_OPT_EXTENDED,
    .doc = "x*0.5*(1+Erf(x/sqrt2)) and the Tanh form -> Gelu (opset 20+) or kiln.Gelu",
    .run = run,
};
