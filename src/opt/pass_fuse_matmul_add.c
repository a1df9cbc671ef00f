/* pass_fuse_matmul_add.c: MatMul followed by an Add of a bias along the last dim becomes
 *   Gemm(A, B, bias)              when A and B are 2-D (a standard op), or
 *   kiln.FusedMatMul(A, B, bias)  for other ranks (needs kiln ops).
 * The bias is the Add's other operand: a float32 value whose inferred shape is [N] or
 * [1, ..., 1, N] (N = the MatMul's last output dim), so it broadcasts along the last dim
 * only and adding it inside the product's kernel changes nothing. The MatMul's output must
 * have no other use. Gemm computes A*B + C with C added after the product, as Add did.
 */
#include <string.h>

#include "opt/fuse_util.h"

/* Whether `bias` is a float32 vector along the last dim of the MatMul output y: returns the
 * bias length through *n when y's last dim is known. */
static bool bias_ok(const struct kiln_graph *g, const char *y, const char *bias)
{
    kiln_dtype dt;
    int rb, ry;
    const struct kiln_dim *db, *dy;
    if (!kiln_opt_tensor_type(g, bias, &dt, &rb, &db) || dt != KILN_DTYPE_F32 || rb < 1) return false;
    if (!kiln_opt_tensor_type(g, y, &dt, &ry, &dy) || dt != KILN_DTYPE_F32 || ry < rb) return false;
    for (int i = 0; i < rb - 1; i++)
        if (!kiln_dim_known(db[i]) || db[i].value != 1) return false;
    return kiln_dim_known(db[rb - 1]) && kiln_dim_known(dy[ry - 1]) &&
           db[rb - 1].value == dy[ry - 1].value;
}

static bool rank_is(const struct kiln_graph *g, const char *name, int want)
{
    kiln_dtype dt;
    int r;
    const struct kiln_dim *d;
    return kiln_opt_tensor_type(g, name, &dt, &r, &d) && r == want;
}

static kiln_status run(struct kiln_opt *o, struct kiln_graph *g, bool *changed)
{
    for (size_t i = 0; i < g->n_nodes; i++) {
        if (!kiln_opt_is_op(o, g, i, "MatMul")) continue;
        const struct kiln_node *m = &g->nodes[i];
        if (m->n_in != 2 || m->n_out != 1 || !m->outputs[0][0]) continue;
        int c = fu_next(o, g, i);
        if (c < 0 || !kiln_opt_is_op(o, g, (size_t)c, "Add")) continue;
        const struct kiln_node *a = &g->nodes[c];
        int k = fu_other(a, m->outputs[0]);
        if (k < 0 || a->n_out != 1 || !bias_ok(g, m->outputs[0], a->inputs[k])) continue;
        bool gemm = rank_is(g, m->inputs[0], 2) && rank_is(g, m->inputs[1], 2) &&
                    rank_is(g, a->inputs[k], 1);
        if (!gemm && !kiln_opt_keep_fused(o)) continue;
        const char *ins[3] = {m->inputs[0], m->inputs[1], a->inputs[k]}, *outs[1] = {a->outputs[0]};
        size_t nodes[2] = {i, (size_t)c};
        KILN_TRY(fu_replace(o, g, nodes, 2, gemm ? "Gemm" : "FusedMatMul", gemm ? "" : "kiln", 3,
                            ins, 1, outs, NULL, NULL));
        *changed = true;
    }
    return KILN_OK;
}

const struct kiln_pass kiln_pass_fuse_matmul_add = {
    .name = "fuse_matmul_add",
    .level = KILN_OPT_EXTENDED,
    .doc = "MatMul + Add(bias) -> Gemm (2-D) or kiln.FusedMatMul (N-D, with kiln ops)",
    .run = run,
};
