/* pass_fuse_pad.c: a constant-mode Pad that pads only the spatial dims (not N, not C) with
 * non-negative amounts folds into the Conv, AveragePool or MaxPool it feeds, whose own pads
 * (explicit, auto_pad NOTSET or VALID) grow by the Pad's:
 *
 *   Conv          pad value 0 (Conv's padding is zeros)
 *   AveragePool   pad value 0; the pool counts padded zeros (count_include_pad 1), which
 *                 it must already do unless it had no padding of its own; ceil_mode 0
 *   MaxPool       pad value -inf, or 0 when the Pad's input is the output of Relu (so every
 *                 window's maximum is >= 0 anyway); ceil_mode 0, no Indices output, and
 *                 every total pad smaller than the (dilated) kernel so no window is all
 *                 padding
 *
 * The pads come from the opset 1 attribute or (opset 11+) a constant input (without the
 * axes input of opset 18); the value from the attribute / a constant input (absent: 0).
 * The Pad's output must have no other use.
 */
#include <math.h>
#include <string.h>

#include "opt/fuse_util.h"

/* The Pad's pads (2r values) and constant value; false when not a constant-mode Pad we fold. */
static bool pad_params(const struct kiln_opt *o, const struct kiln_graph *g,
                       const struct kiln_node *p, int r, int64_t *pads, double *value)
{
    if (strcmp(kiln_opt_attr_s(p, "mode", "constant"), "constant") != 0) return false;
    const int64_t *v;
    size_t n;
    *value = 0;
    if (p->since > 0 && p->since < 11) {
        if (!kiln_opt_attr_ints(p, "pads", &v, &n) && !kiln_opt_attr_ints(p, "paddings", &v, &n))
            return false;
        if (n != 2 * (size_t)r) return false;
        memcpy(pads, v, n * sizeof *v);
        *value = kiln_opt_attr_f(p, "value", 0.0f);
        return true;
    }
    if (p->n_in < 2 || p->n_in > 3) return false;
    const struct kiln_tensor *t = fu_const(o, g, p->inputs[1]);
    if (!t || t->dtype != KILN_DTYPE_I64 || kiln_tensor_numel(t) != 2 * (size_t)r) return false;
    memcpy(pads, t->data, 2 * (size_t)r * sizeof *pads);
    if (p->n_in == 3 && p->inputs[2][0]) {
        const struct kiln_tensor *c = fu_const_f32(o, g, p->inputs[2]);
        if (!c || kiln_tensor_numel(c) != 1) return false;
        *value = ((const float *)c->data)[0];
    }
    return true;
}

static kiln_status run(struct kiln_opt *o, struct kiln_graph *g, bool *changed)
{
    for (size_t i = 0; i < g->n_nodes; i++) {
        if (!kiln_opt_is_op(o, g, i, "Pad")) continue;
        const struct kiln_node *p = &g->nodes[i];
        int r;
        int64_t xd[KILN_MAX_RANK], pads[2 * KILN_MAX_RANK];
        double value;
        if (p->n_out != 1 || !kiln_opt_static_shape(g, p->inputs[0], &r, xd) || r < 3 ||
            !fu_is_f32(g, p->inputs[0]) || !pad_params(o, g, p, r, pads, &value))
            continue;
        bool ok = pads[0] == 0 && pads[1] == 0 && pads[r] == 0 && pads[r + 1] == 0;
        for (int d = 0; d < 2 * r; d++) ok = ok && pads[d] >= 0;
        int c = fu_next(o, g, i);
        if (!ok || c < 0) continue;
        const struct kiln_node *cn = &g->nodes[c];
        bool conv = kiln_opt_is_op(o, g, (size_t)c, "Conv");
        bool avg = kiln_opt_is_op(o, g, (size_t)c, "AveragePool");
        bool max = kiln_opt_is_op(o, g, (size_t)c, "MaxPool");
        if ((!conv && !avg && !max) || strcmp(cn->inputs[0], p->outputs[0])) continue;
        const char *ap = kiln_opt_attr_s(cn, "auto_pad", "NOTSET");
        if (strcmp(ap, "NOTSET") && strcmp(ap, "VALID")) continue;
        int nd = r - 2;
        int64_t own[2 * KILN_MAX_RANK] = {0};
        const int64_t *v;
        size_t n;
        if (strcmp(ap, "VALID") && kiln_opt_attr_ints(cn, "pads", &v, &n)) {
            if (n != 2 * (size_t)nd) continue;
            memcpy(own, v, n * sizeof *v);
        }
        bool own_zero = true;
        for (int d = 0; d < 2 * nd; d++) own_zero = own_zero && own[d] == 0;
        if (avg || max) {
            if (kiln_opt_attr_i(cn, "ceil_mode", 0) != 0) continue;
            if (max && cn->n_out > 1 && cn->outputs[1][0]) continue;
        }
        if (conv && value != 0) continue;
        if (avg && (value != 0 || (!own_zero && kiln_opt_attr_i(cn, "count_include_pad", 0) != 1)))
            continue;
        if (max) {
            int q = kiln_opt_producer(g, p->inputs[0]);
            bool nonneg = q >= 0 && fu_is(o, g, q, "", "Relu");
            if (!(value == -INFINITY || (value == 0 && nonneg))) continue;
        }
        int64_t np[2 * KILN_MAX_RANK];
        for (int d = 0; d < nd; d++) {
            np[d] = own[d] + pads[2 + d];
            np[nd + d] = own[nd + d] + pads[r + 2 + d];
        }
        if (max) { /* every window keeps at least one real element */
            const int64_t *ks, *dl;
            size_t nk, ndl;
            if (!kiln_opt_attr_ints(cn, "kernel_shape", &ks, &nk) || nk != (size_t)nd) continue;
            bool has_dl = kiln_opt_attr_ints(cn, "dilations", &dl, &ndl) && ndl == (size_t)nd;
            bool fits = true;
            for (int d = 0; d < nd; d++) {
                int64_t span = (ks[d] - 1) * (has_dl ? dl[d] : 1) + 1;
                fits = fits && np[d] < span && np[nd + d] < span;
            }
            if (!fits) continue;
        }
        const char *ins[3] = {p->inputs[0], cn->n_in > 1 ? cn->inputs[1] : "",
                              cn->n_in > 2 ? cn->inputs[2] : ""};
        const char *outs[2] = {cn->outputs[0], cn->n_out > 1 ? cn->outputs[1] : ""};
        size_t nodes[2] = {(size_t)c, i}; /* the new node keeps the consumer's name */
        struct kiln_node *nn;
        KILN_TRY(fu_replace(o, g, nodes, 2, cn->op_type, "", cn->n_in, ins, cn->n_out, outs, cn, &nn));
        kiln_opt_remove_attr(nn, "auto_pad");
        KILN_TRY(kiln_opt_set_attr_ints(o, nn, "pads", np, 2 * (size_t)nd));
        if (avg) KILN_TRY(kiln_opt_set_attr_i(o, nn, "count_include_pad", 1));
        *changed = true;
    }
    return KILN_OK;
}

const struct kiln_pass kiln_pass_fuse_pad = {
    .name = "fuse_pad",
    .level = KILN_OPT_EXTENDED,
    .doc = "constant spatial Pad -> the pads of the Conv / AveragePool / MaxPool it feeds",
    .run = run,
};
