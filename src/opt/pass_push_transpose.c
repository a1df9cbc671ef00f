/* pass_push_transpose.c: moves a Transpose down through element-wise ops to the next
 * Transpose and merges the two, removing both when they cancel:
 *
 *   Transpose(x, p) -> e1 -> ... -> ek -> Transpose(., q)  =>  e1' -> ... -> ek' -> Transpose(., p o q)
 *
 * (no Transpose at all when p o q is the identity). Each ei is a unary element-wise op
 * (Relu, Sigmoid, Tanh, Neg, Abs, Exp, Log, Sqrt, Erf, LeakyRelu, Gelu, ...) or a binary
 * one (Add, Sub, Mul, Div, Pow) whose other operand is a one-element constant or a
 * Transpose with the same p (which is removed too). Element-wise ops commute with a
 * permutation of their operands, so the outputs are bitwise the same. Every value of the
 * chain must have one use and no declared value_info (its shape changes), and k >= 1
 * (adjacent Transposes are merge_transposes' job).
 */
#include <string.h>

#include "opt/fuse_util.h"

static bool is_unary_ew(const char *op)
{
    static const char *const ops[] = {"Relu", "Sigmoid", "Tanh", "Neg", "Abs", "Exp", "Log",
                                      "Sqrt", "Reciprocal", "Erf", "LeakyRelu", "Gelu",
                                      "HardSigmoid", "HardSwish", "Softplus", "Elu", "Selu",
                                      "Floor", "Ceil", "Round", "Sin", "Cos", "Identity", NULL};
    for (size_t i = 0; ops[i]; i++)
        if (!strcmp(op, ops[i])) return true;
    return false;
}

static bool is_binary_ew(const char *op)
{
    return !strcmp(op, "Add") || !strcmp(op, "Sub") || !strcmp(op, "Mul") || !strcmp(op, "Div") ||
           !strcmp(op, "Pow");
}

static bool get_perm(const struct kiln_node *t, int64_t *p, size_t *n)
{
    const int64_t *v;
    if (!kiln_opt_attr_ints(t, "perm", &v, n) || *n > KILN_MAX_RANK) return false;
    memcpy(p, v, *n * sizeof *v);
    return true;
}

static bool declared(const struct kiln_graph *g, const char *name)
{
    for (size_t i = 0; i < g->n_value_info; i++)
        if (g->value_info[i].name && !strcmp(g->value_info[i].name, name)) return true;
    return false;
}

struct chain {
    size_t nodes[16];
    size_t n;
    int side[16];     /* the other operand's Transpose node (-1: none) */
    size_t side_in[16];
};

static kiln_status rewrite(struct kiln_opt *o, struct kiln_graph *g, size_t ti, const struct chain *c,
                           size_t t2, const int64_t *p, size_t n)
{
    const struct kiln_node *t = &g->nodes[ti];
    struct kiln_node *first = &g->nodes[c->nodes[0]];
    for (size_t k = 0; k < first->n_in; k++)
        if (!strcmp(first->inputs[k], t->outputs[0])) KILN_TRY(kiln_opt_set_input(o, first, k, t->inputs[0]));
    for (size_t i = 0; i < c->n; i++)
        if (c->side[i] >= 0) {
            struct kiln_node *e = &g->nodes[c->nodes[i]];
            KILN_TRY(kiln_opt_set_input(o, e, c->side_in[i], g->nodes[c->side[i]].inputs[0]));
            kiln_opt_remove_node(o, g, (size_t)c->side[i]);
        }
    kiln_opt_remove_node(o, g, ti);
    struct kiln_node *tn = &g->nodes[t2];
    int64_t q[KILN_MAX_RANK], comp[KILN_MAX_RANK];
    size_t nq;
    get_perm(tn, q, &nq);
    bool ident = true;
    for (size_t i = 0; i < n; i++) {
        comp[i] = p[q[i]];
        ident = ident && comp[i] == (int64_t)i;
    }
    const char *end = g->nodes[c->nodes[c->n - 1]].outputs[0];
    if (ident && kiln_opt_can_replace(o, g, tn->outputs[0], end)) {
        KILN_TRY(kiln_opt_replace_uses(o, g, tn->outputs[0], end));
        kiln_opt_remove_node(o, g, t2);
    } else {
        KILN_TRY(kiln_opt_set_attr_ints(o, tn, "perm", comp, n));
    }
    kiln_opt_note(o, "moved Transpose '%s' down %zu element-wise nodes to '%s'%s",
                  t->name ? t->name : "", c->n, tn->name ? tn->name : "",
                  ident ? "; both removed" : "");
    return KILN_OK;
}

static kiln_status run(struct kiln_opt *o, struct kiln_graph *g, bool *changed)
{
    for (size_t i = 0; i < g->n_nodes; i++) {
        if (!kiln_opt_is_op(o, g, i, "Transpose")) continue;
        const struct kiln_node *t = &g->nodes[i];
        int64_t p[KILN_MAX_RANK];
        size_t n;
        if (t->n_in != 1 || t->n_out != 1 || !get_perm(t, p, &n) || n == 0) continue;
        struct chain c = {.n = 0};
        const char *cur = t->outputs[0];
        if (declared(g, cur)) continue;
        int next = fu_next(o, g, i), t2 = -1;
        bool ok = true;
        while (ok && next >= 0) {
            const struct kiln_node *e = &g->nodes[next];
            const char *d = e->domain ? e->domain : "";
            if (d[0] || e->n_out != 1 || !e->outputs[0][0]) break;
            if (!strcmp(e->op_type, "Transpose")) {
                int64_t q[KILN_MAX_RANK];
                size_t nq;
                if (get_perm(e, q, &nq) && nq == n) t2 = next;
                break;
            }
            if (c.n == 16) break;
            c.side[c.n] = -1;
            if (is_unary_ew(e->op_type)) {
                if (e->n_in < 1 || strcmp(e->inputs[0], cur)) break;
                for (size_t k = 1; k < e->n_in; k++) { /* Clip-like bounds must be scalars */
                    const struct kiln_tensor *b = fu_const(o, g, e->inputs[k]);
                    if (e->inputs[k][0] && (!b || kiln_tensor_numel(b) != 1)) ok = false;
                }
            } else if (is_binary_ew(e->op_type)) {
                int k = fu_other(e, cur);
                if (k < 0) break;
                const struct kiln_tensor *b = fu_const(o, g, e->inputs[k]);
                int s = kiln_opt_producer(g, e->inputs[k]);
                int64_t q[KILN_MAX_RANK];
                size_t nq;
                if (b && kiln_tensor_numel(b) == 1 && b->rank <= (int)n) {
                    /* a one-element constant broadcasts the same either way */
                } else if (s >= 0 && fu_is(o, g, s, "", "Transpose") &&
                           kiln_opt_single_consumer(g, e->inputs[k]) == next &&
                           get_perm(&g->nodes[s], q, &nq) && nq == n && !memcmp(q, p, n * sizeof *p) &&
                           !declared(g, e->inputs[k])) {
                    c.side[c.n] = s;
                    c.side_in[c.n] = (size_t)k;
                } else {
                    break;
                }
            } else {
                break;
            }
            if (!ok) break;
            c.nodes[c.n++] = (size_t)next;
            cur = e->outputs[0];
            if (declared(g, cur)) ok = false;
            next = fu_next(o, g, (size_t)next);
        }
        if (!ok || t2 < 0 || c.n == 0) continue;
        KILN_TRY(rewrite(o, g, i, &c, (size_t)t2, p, n));
        *changed = true;
    }
    return KILN_OK;
}

const struct kiln_pass kiln_pass_push_transpose = {
    .name = "push_transpose",
    .level = KILN_OPT_EXTENDED,
    .doc = "moves Transposes down through element-wise ops and merges / cancels them",
    .run = run,
};
