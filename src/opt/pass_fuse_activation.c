/* pass_fuse_activation.c: a Conv, Gemm or MatMul (or a kiln fused op without an activation
 * yet) followed by a residual Add and/or an activation becomes one kiln fused op:
 *
 *   Conv -> [Add(., Z)] -> [act]          => kiln.FusedConv(X, W, B, Z) activation=act
 *   Gemm -> [Add(., Z)] -> [act]          => kiln.FusedGemm(A, B, C, Z)
 *   MatMul -> [Add(., Z)] -> [act]        => kiln.FusedMatMul(A, B, "", Z)
 *   kiln.FusedMatMul(A, B, bias) -> ...   => kiln.FusedMatMul(A, B, bias, Z)
 *   ConvTranspose -> act                  => kiln.FusedConvTranspose(X, W, B) activation=act
 *   kiln.DynQuantMatMul(...) -> act       => kiln.DynQuantMatMul(...) activation=act
 *
 * act is any activation of fu_activation (Relu, Clip, LeakyRelu, Sigmoid, Tanh,
 * HardSigmoid, HardSwish, Gelu) or SiLU written as Mul(x, Sigmoid(x)). Z, the residual, is
 * the Add's other operand when its inferred shape is statically the producer's output shape
 * (so no broadcasting is involved) and it is float32; a Conv's output feeding an Add whose
 * other operand is the output of another Conv picks the Add's first such operand. At least
 * one of the two must be there. ConvTranspose and kiln.DynQuantMatMul take the activation
 * only (their fused ops have no residual input). The kernels compute (y + Z) then the activation in float32
 * exactly as the unfused ops do (docs/fused-ops.md). Needs kiln ops.
 */
#include <string.h>

#include "opt/fuse_util.h"

/* The fused op for producer node p, or NULL when p cannot take an activation. */
static const char *fused_op(const struct kiln_node *p, bool *has_act)
{
    const char *d = p->domain ? p->domain : "";
    *has_act = false;
    if (!d[0]) {
        if (!strcmp(p->op_type, "Conv")) return "FusedConv";
        if (!strcmp(p->op_type, "ConvTranspose")) return "FusedConvTranspose";
        if (!strcmp(p->op_type, "Gemm")) return "FusedGemm";
        if (!strcmp(p->op_type, "MatMul")) return "FusedMatMul";
        return NULL;
    }
    if (strcmp(d, "kiln")) return NULL;
    if (strcmp(p->op_type, "FusedConv") && strcmp(p->op_type, "FusedGemm") &&
        strcmp(p->op_type, "FusedMatMul") && strcmp(p->op_type, "FusedConvTranspose") &&
        strcmp(p->op_type, "DynQuantMatMul"))
        return NULL;
    const char *a = kiln_opt_attr_s(p, "activation", "");
    *has_act = a[0] != 0;
    return p->op_type;
}

/* Whether `z` can be the residual of producer output y: same static shape, float32. */
static bool residual_ok(const struct kiln_graph *g, const char *y, const char *z)
{
    int ry, rz;
    int64_t dy[KILN_MAX_RANK], dz[KILN_MAX_RANK];
    if (!fu_is_f32(g, y) || !fu_is_f32(g, z)) return false;
    if (!kiln_opt_static_shape(g, y, &ry, dy) || !kiln_opt_static_shape(g, z, &rz, dz)) return false;
    return ry == rz && !memcmp(dy, dz, (size_t)ry * sizeof *dy);
}

/* Tries producer node pi; *done when it rewrote. */
static kiln_status try_fuse(struct kiln_opt *o, struct kiln_graph *g, size_t pi, bool *done)
{
    const struct kiln_node *p = &g->nodes[pi];
    bool has_act;
    const char *op = fused_op(p, &has_act);
    if (!op || has_act || p->n_out != 1 || !p->outputs[0][0]) return KILN_OK;
    bool dynquant = !strcmp(op, "DynQuantMatMul"); /* activation only, its inputs as they are */
    if (!dynquant && (p->n_in > 4 || (p->n_in == 4 && p->inputs[3][0]))) return KILN_OK; /* has Z already */
    if (!strcmp(p->op_type, "MatMul") && p->n_in != 2) return KILN_OK;
    const char *y = p->outputs[0];
    if (!fu_is_f32(g, y)) return KILN_OK;

    size_t nodes[4] = {pi};
    size_t nn = 1;
    const char *z = NULL, *cur = y;
    int c = fu_next(o, g, pi);
    bool takes_z = strcmp(op, "FusedConvTranspose") != 0 && !dynquant;
    if (takes_z && c >= 0 && kiln_opt_is_op(o, g, (size_t)c, "Add")) {
        const struct kiln_node *a = &g->nodes[c];
        int k = fu_other(a, y);
        if (k >= 0 && a->n_out == 1 && residual_ok(g, y, a->inputs[k])) {
            z = a->inputs[k];
            cur = a->outputs[0];
            nodes[nn++] = (size_t)c;
            c = fu_next(o, g, (size_t)c);
        }
    }
    struct fu_act act = {.name = ""};
    size_t sig, mul;
    if (c >= 0 && fu_activation(o, g, (size_t)c, cur, &act)) {
        nodes[nn++] = (size_t)c;
        cur = g->nodes[c].outputs[0];
    } else if (fu_match_silu(o, g, cur, &sig, &mul)) {
        act = (struct fu_act){.name = "SiLU"};
        nodes[nn++] = sig;
        nodes[nn++] = mul;
        cur = g->nodes[mul].outputs[0];
    }
    if (nn == 1) return KILN_OK;
    const char *ins[5] = {"", "", "", "", ""};
    size_t n_in;
    if (dynquant) {
        n_in = p->n_in > 5 ? 5 : p->n_in;
        for (size_t i = 0; i < n_in; i++) ins[i] = p->inputs[i];
    } else {
        for (size_t i = 0; i < p->n_in && i < 3; i++) ins[i] = p->inputs[i];
        ins[3] = z ? z : "";
        n_in = z ? 4 : (p->n_in > 3 ? 3 : p->n_in);
    }
    const char *outs[1] = {cur};
    struct kiln_node *f;
    KILN_TRY(fu_replace(o, g, nodes, nn, op, "kiln", n_in, ins, 1, outs, p, &f));
    KILN_TRY(fu_set_act(o, f, &act));
    *done = true;
    return KILN_OK;
}

static kiln_status run(struct kiln_opt *o, struct kiln_graph *g, bool *changed)
{
    for (size_t i = 0; i < g->n_nodes; i++) {
        if (!kiln_opt_live(o, g, i)) continue;
        bool done = false;
        KILN_TRY(try_fuse(o, g, i, &done));
        if (done) *changed = true;
    }
    return KILN_OK;
}

const struct kiln_pass kiln_pass_fuse_activation = {
    .name = "fuse_activation",
    .level = KILN_OPT_EXTENDED,
    .needs_kiln_ops = true,
    .doc = "Conv/Gemm/MatMul + residual Add + activation -> kiln.FusedConv/FusedGemm/FusedMatMul; "
           "ConvTranspose + activation -> kiln.FusedConvTranspose; kiln.DynQuantMatMul + activation",
    .run = run,
};
