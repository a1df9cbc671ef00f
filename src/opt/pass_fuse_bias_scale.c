/* pass_fuse_bias_scale.c: an Add or Mul of a constant after a Conv or Gemm with constant
 * weights folds into the producer:
 *
 *   Conv(X, W, B) + c  => Conv(X, W, B + c)        c per output channel: shape [M, 1, ..],
 *                                                  [1, M, 1, ..] (trailing 1s to the
 *                                                  output's rank) or one element
 *   Conv(X, W, B) * c  => Conv(X, W * c, B * c)    the same shapes of c
 *   Gemm(A, B, C) + c  => Gemm(A, B, beta * C + c), beta 1    c of shape [N], [1, N] or one
 *   Gemm(A, B, C) * c  => Gemm(A, B * c, beta * C * c), beta 1   element; C likewise
 *   MatMul(A, B) * c   => MatMul(A, B * c)                  B constant [K, N]; c of shape
 *   kiln.FusedMatMul(A, B, bias) * c                         [N], [1, .., 1, N] (at most
 *                      => kiln.FusedMatMul(A, B * c, bias * c)    the output's rank) or one
 *   kiln.FusedMatMul(A, B, bias) + c                         element; FusedMatMul without
 *                      => kiln.FusedMatMul(A, B, bias + c)        Z or activation
 *
 * (either operand order). The producer's output must have no other use. The new weights
 * and bias are float32 initializers; each product or sum is rounded once, as the unfused
 * graph rounds it (the bias sum is associated differently: (y + B) + c vs y + (B + c)).
 * (MatMul + Add of a bias is fuse_matmul_add's.) The MatMul forms take ConvNeXt's layer
 * scale, a Mul by a per-channel gamma after each block's second Linear, into its weights;
 * the residual Add then fuses into the product as its Z (fuse_activation).
 */
#include <string.h>

#include "opt/fuse_util.h"

/* The per-channel values of constant c for M channels on an output of rank r whose channel
 * dim is `axis`: *step 1 (one per channel) or 0 (one for all); false when c has another
 * shape. */
static bool per_channel(const struct kiln_tensor *c, size_t M, int r, int axis, size_t *step)
{
    size_t n = kiln_tensor_numel(c);
    if (n == 1 && c->rank <= r) {
        *step = 0;
        return true;
    }
    if (n != M || c->rank > r) return false;
    int off = r - c->rank; /* c's dim i lines up with output dim off + i */
    for (int i = 0; i < c->rank; i++)
        if (c->dims[i] != (off + i == axis ? (int64_t)M : 1)) return false;
    *step = 1;
    return true;
}

/* Producer pi (Conv or Gemm), consumer ci (Add or Mul) with the constant cst. */
static kiln_status fold(struct kiln_opt *o, struct kiln_graph *g, size_t pi, size_t ci,
                        const struct kiln_tensor *cst, bool *done)
{
    const struct kiln_node *p = &g->nodes[pi], *c = &g->nodes[ci];
    bool conv = !strcmp(p->op_type, "Conv"), mul = !strcmp(c->op_type, "Mul");
    bool mm = !strcmp(p->op_type, "MatMul") || !strcmp(p->op_type, "FusedMatMul");
    if (p->n_in < 2 || p->n_in > 3) return KILN_OK;
    if (!strcmp(p->op_type, "MatMul") && !mul) return KILN_OK; /* fuse_matmul_add's */
    const struct kiln_tensor *w = fu_const_f32(o, g, p->inputs[1]);
    const char *bname = p->n_in == 3 ? p->inputs[2] : "";
    const struct kiln_tensor *b = bname[0] ? fu_const_f32(o, g, bname) : NULL;
    if (!w || (bname[0] && !b)) return KILN_OK;
    size_t M, step, K = 0;
    bool tB = false;
    float beta = 1.0f;
    if (conv) {
        if (w->rank < 3) return KILN_OK;
        M = (size_t)w->dims[0];
        if (!per_channel(cst, M, w->rank, 1, &step)) return KILN_OK;
        if (b && (b->rank != 1 || (size_t)b->dims[0] != M)) return KILN_OK;
    } else if (mm) {
        kiln_dtype dt;
        int ry;
        const struct kiln_dim *dy;
        if (w->rank != 2 || !kiln_opt_tensor_type(g, p->outputs[0], &dt, &ry, &dy) || ry < 1) return KILN_OK;
        M = (size_t)w->dims[1];
        K = (size_t)w->dims[0];
        if (!per_channel(cst, M, ry, ry - 1, &step)) return KILN_OK;
        if (b && (b->rank < 1 || kiln_tensor_numel(b) != M || b->dims[b->rank - 1] != (int64_t)M)) return KILN_OK;
    } else {
        if (w->rank != 2) return KILN_OK;
        tB = kiln_opt_attr_i(p, "transB", 0) != 0;
        M = (size_t)w->dims[tB ? 0 : 1];
        K = (size_t)w->dims[tB ? 1 : 0];
        beta = kiln_opt_attr_f(p, "beta", 1.0f);
        if (!per_channel(cst, M, 2, 1, &step)) return KILN_OK;
        size_t bn = b ? kiln_tensor_numel(b) : 0;
        if (b && !(bn == 1 || (bn == M && b->dims[b->rank - 1] == (int64_t)M && b->rank <= 2)))
            return KILN_OK;
    }
    const float *cv = cst->data;
    float *nb = kiln_malloc((M ? M : 1) * sizeof *nb), *nw = NULL;
    if (!nb) return fu_nomem(o);
    for (size_t m = 0; m < M; m++) {
        float bv = b ? ((const float *)b->data)[kiln_tensor_numel(b) == 1 ? 0 : m] * beta : 0.0f;
        nb[m] = mul ? bv * cv[m * step] : bv + cv[m * step];
    }
    kiln_status rc = KILN_OK;
    const char *wn = p->inputs[1], *bn;
    if (mul) {
        nw = fu_copy_f32(o, w);
        if (!nw) {
            kiln_free(nb);
            return KILN_E_NOMEM;
        }
        size_t per = kiln_tensor_numel(w) / (M ? M : 1);
        for (size_t m = 0; m < M; m++)
            for (size_t i = 0; i < per; i++) {
                size_t at = conv ? m * per + i : tB ? m * K + i : i * M + m;
                nw[at] *= cv[m * step];
            }
        rc = fu_add_f32(o, g, p->inputs[1], w->rank, w->dims, nw, &wn);
    }
    int64_t bd[1] = {(int64_t)M};
    bool with_bias = !mm || b || !mul; /* a MatMul without bias scaled keeps none */
    if (!rc && with_bias) rc = fu_add_f32(o, g, "bias", 1, bd, nb, &bn);
    if (!rc) {
        const char *ins[3] = {p->inputs[0], wn, with_bias ? bn : ""}, *outs[1] = {c->outputs[0]};
        size_t nodes[2] = {pi, ci};
        struct kiln_node *nn;
        /* The producer keeps its op: a MatMul folds only a Mul, so it never gains a bias. */
        rc = fu_replace(o, g, nodes, 2, p->op_type, p->domain, with_bias ? 3 : 2, ins, 1, outs, p, &nn);
        if (!rc && !conv && !mm) rc = kiln_opt_set_attr_f(o, nn, "beta", 1.0f);
        *done = rc == KILN_OK;
    }
    kiln_free(nb);
    kiln_free(nw);
    return rc;
}

static kiln_status run(struct kiln_opt *o, struct kiln_graph *g, bool *changed)
{
    for (size_t i = 0; i < g->n_nodes; i++) {
        bool fmm = fu_is(o, g, (int)i, "kiln", "FusedMatMul");
        if (!kiln_opt_is_op(o, g, i, "Conv") && !kiln_opt_is_op(o, g, i, "Gemm") &&
            !kiln_opt_is_op(o, g, i, "MatMul") && !fmm)
            continue;
        const struct kiln_node *p = &g->nodes[i];
        if (p->n_out != 1 || !fu_is_f32(g, p->outputs[0])) continue;
        /* a FusedMatMul's Z and activation come after the bias: nothing folds past them */
        if (fmm && ((p->n_in > 3 && p->inputs[3][0]) || kiln_opt_attr_s(p, "activation", "")[0])) continue;
        int c = fu_next(o, g, i);
        if (c < 0 || !(kiln_opt_is_op(o, g, (size_t)c, "Add") || kiln_opt_is_op(o, g, (size_t)c, "Mul")))
            continue;
        int k = fu_other(&g->nodes[c], p->outputs[0]);
        const struct kiln_tensor *cst = k >= 0 ? fu_const_f32(o, g, g->nodes[c].inputs[k]) : NULL;
        if (!cst || g->nodes[c].n_out != 1) continue;
        bool done = false;
        KILN_TRY(fold(o, g, i, (size_t)c, cst, &done));
        if (done) *changed = true;
    }
    return KILN_OK;
}

const struct kiln_pass kiln_pass_fuse_bias_scale = {
    .name = "fuse_bias_scale",
    .level = KILN_OPT_EXTENDED,
    .doc = "Conv/Gemm/MatMul/FusedMatMul + Add or Mul of a per-channel constant -> new bias/weights",
    .run = run,
};
