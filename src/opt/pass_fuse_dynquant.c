/* pass_fuse_dynquant.c: the dynamic quantization pattern onnxruntime's quantize_dynamic
 * writes around every MatMul,
 *
 *   (xq, xs, xz) = DynamicQuantizeLinear(x)
 *   y = Cast<float>(MatMulInteger(xq, W, xz, Wz)) * Mul(xs, ws)   [+ bias]
 *
 * becomes kiln.DynQuantMatMul(x, W, Wz, ws[, bias]) (docs/fused-ops.md), one kernel that
 * quantizes x, runs the integer product and applies the float epilogue in the same float32
 * operations, in the same order, as the nodes it replaces (bit-identical results). The same
 * pattern around ConvInteger, where quantize_dynamic adds the bias as Add(y, Reshape(b,
 * [1, -1, 1, 1])), becomes kiln.DynQuantConv(x, W, Wz, ws[, bias[, Z]]) with ConvInteger's
 * attributes (ws a scalar; bias the M values, per output channel), taking along a following
 * residual Add (Z: a float32 of the output's static shape) and Relu or Clip (constant
 * bounds) as its `activation` (exact: no multiplication, so the same floats as the nodes).
 *
 * Weight-only quantization, y = MatMul(x, DequantizeLinear(Wq, scale[, zp])) with Wq a
 * constant 8- or 4-bit [K, N] and scale / zp constants, becomes kiln.DequantMatMul(x, Wq,
 * scale[, zp]) with the DequantizeLinear's axis and block_size; so does kiln.FusedMatMul
 * (fuse_matmul_add's MatMul + Add, which runs first) with a bias and no activation or
 * residual, the bias then the fused op's input 4 (its output float32, read by
 * that MatMul only; x float32 of rank >= 2 and not itself a DequantizeLinear's output, which
 * is static QDQ and left to its own pass). Its kernel dequantizes W tile by tile as it
 * multiplies (not bit-identical: the float32 sums may run in another order).
 *
 * Conditions: W a constant 8-bit [K, N]; Wz absent or a constant; ws a float32 constant,
 * scalar or [N]; bias (optional) a float32 constant [N] added after the Mul; x float32 of
 * rank >= 2; the MatMulInteger, Cast and Mul outputs each used once, by the next node. The
 * DynamicQuantizeLinear stays when its outputs have other readers (another MatMulInteger of
 * the same activation fuses the same way and recomputes the quantization; dce removes the
 * node once nothing reads it), and so does the scale Mul.
 */
#include <string.h>

#include "opt/fuse_util.h"

static bool is_8bit_const(const struct kiln_opt *o, const struct kiln_graph *g, const char *name, int rank)
{
    const struct kiln_tensor *t = fu_const(o, g, name);
    return t && (t->dtype == KILN_DTYPE_U8 || t->dtype == KILN_DTYPE_I8) && (rank < 0 || t->rank == rank);
}

/* A float32 constant of one element or [n] (trailing vector), n the product's columns. */
static bool vec_const(const struct kiln_opt *o, const struct kiln_graph *g, const char *name, int64_t n,
                      bool scalar_ok)
{
    const struct kiln_tensor *t = fu_const_f32(o, g, name);
    if (!t) return false;
    size_t c = kiln_tensor_numel(t);
    if (c == 1 && scalar_ok && t->rank <= 1) return true;
    return t->rank == 1 && t->dims[0] == n;
}

/* The per-channel bias of a convolution with m output channels: a float32 constant of m
 * elements shaped [m, 1, ...] or [1, m, 1, ...] (as many trailing ones as spatial dims), or
 * the output of a Reshape of an m-element float32 constant to such a shape; *name: the
 * constant's name. */
static bool conv_bias(const struct kiln_opt *o, const struct kiln_graph *g, const char *b, int64_t m, int sp,
                      const char **name)
{
    const struct kiln_tensor *t = fu_const_f32(o, g, b);
    *name = b;
    if (!t) {
        int r = kiln_opt_producer(g, b);
        if (r < 0 || !kiln_opt_is_op(o, g, (size_t)r, "Reshape") || g->nodes[r].n_in < 1) return false;
        *name = g->nodes[r].inputs[0];
        const struct kiln_tensor *raw = fu_const_f32(o, g, *name);
        kiln_dtype dt;
        int rank;
        const struct kiln_dim *d;
        if (!raw || kiln_tensor_numel(raw) != (size_t)m || !kiln_opt_tensor_type(g, b, &dt, &rank, &d)) return false;
        for (int j = 0; j < rank; j++)
            if (!kiln_dim_known(d[j]) || d[j].value != (j == rank - sp - 1 ? m : 1)) return false;
        return rank >= sp + 1;
    }
    if (kiln_tensor_numel(t) != (size_t)m || t->rank < sp + 1) return false;
    for (int j = 0; j < t->rank; j++)
        if (t->dims[j] != (j == t->rank - sp - 1 ? m : 1)) return false;
    return true;
}

/* The pattern around MatMulInteger / ConvInteger node i (conv: the latter); fills nodes
 * (removed), their count and the fused node's inputs. */
static bool match(const struct kiln_opt *o, const struct kiln_graph *g, size_t i, bool conv, size_t *nodes,
                  size_t *n_nodes, const char **ins, size_t *n_ins, const char **out)
{
    const struct kiln_node *mi = &g->nodes[i];
    if (mi->n_in < 3 || mi->n_out != 1 || !mi->outputs[0][0]) return false;
    int d = kiln_opt_producer(g, mi->inputs[0]);
    if (d < 0 || !kiln_opt_is_op(o, g, (size_t)d, "DynamicQuantizeLinear")) return false;
    const struct kiln_node *dq = &g->nodes[d];
    if (dq->n_out < 3 || strcmp(dq->outputs[0], mi->inputs[0]) || strcmp(dq->outputs[2], mi->inputs[2]) ||
        !fu_is_f32(g, dq->inputs[0]))
        return false;
    kiln_dtype dt;
    int rx;
    const struct kiln_dim *dx;
    if (!kiln_opt_tensor_type(g, dq->inputs[0], &dt, &rx, &dx) || rx < (conv ? 3 : 2)) return false;
    if (!is_8bit_const(o, g, mi->inputs[1], conv ? rx : 2)) return false;
    const char *wz = mi->n_in > 3 ? mi->inputs[3] : "";
    if (wz[0] && !is_8bit_const(o, g, wz, -1)) return false;
    const struct kiln_tensor *w = fu_const(o, g, mi->inputs[1]);
    int64_t N = conv ? w->dims[0] : w->dims[1];
    int c = fu_next(o, g, i);
    if (c < 0 || !kiln_opt_is_op(o, g, (size_t)c, "Cast") ||
        kiln_opt_attr_i(&g->nodes[c], "to", 0) != KILN_DTYPE_F32)
        return false;
    int m1 = fu_next(o, g, (size_t)c);
    if (m1 < 0 || !kiln_opt_is_op(o, g, (size_t)m1, "Mul")) return false;
    int k = fu_other(&g->nodes[m1], g->nodes[c].outputs[0]);
    if (k < 0) return false;
    int m0 = kiln_opt_producer(g, g->nodes[m1].inputs[k]);
    if (m0 < 0 || !kiln_opt_is_op(o, g, (size_t)m0, "Mul")) return false;
    int ks = fu_other(&g->nodes[m0], dq->outputs[1]);
    if (ks < 0 || !vec_const(o, g, g->nodes[m0].inputs[ks], conv ? 0 : N, true)) return false;
    size_t n = 0;
    nodes[n++] = i, nodes[n++] = (size_t)c, nodes[n++] = (size_t)m1;
    if (kiln_opt_uses(g, g->nodes[m0].outputs[0]) == 1) nodes[n++] = (size_t)m0;
    ins[0] = dq->inputs[0], ins[1] = mi->inputs[1], ins[2] = wz, ins[3] = g->nodes[m0].inputs[ks];
    *n_ins = 4;
    *out = g->nodes[m1].outputs[0];
    int a = fu_next(o, g, (size_t)m1);
    if (a >= 0 && kiln_opt_is_op(o, g, (size_t)a, "Add") && g->nodes[a].n_out == 1) {
        int kb = fu_other(&g->nodes[a], g->nodes[m1].outputs[0]);
        const char *bn = kb >= 0 ? g->nodes[a].inputs[kb] : "";
        if (kb >= 0 && (conv ? conv_bias(o, g, bn, N, rx - 2, &bn) : vec_const(o, g, bn, N, false))) {
            nodes[n++] = (size_t)a;
            ins[(*n_ins)++] = bn;
            *out = g->nodes[a].outputs[0];
        }
    }
    *n_nodes = n;
    return true;
}

static bool is_wo_weight(const struct kiln_opt *o, const struct kiln_graph *g, const char *name)
{
    const struct kiln_tensor *t = fu_const(o, g, name);
    return t && t->rank == 2 && (t->dtype == KILN_DTYPE_U8 || t->dtype == KILN_DTYPE_I8 || t->dtype == KILN_DTYPE_U4 ||
                                 t->dtype == KILN_DTYPE_I4);
}

/* Weight-only MatMul node i (module comment); fills the DequantizeLinear's index and the
 * fused node's inputs. */
static bool match_wo(const struct kiln_opt *o, const struct kiln_graph *g, size_t i, size_t *dq_at,
                     const char **ins, size_t *n_ins)
{
    const struct kiln_node *mm = &g->nodes[i];
    bool fused = fu_is(o, g, (int)i, "kiln", "FusedMatMul");
    if (!(fused ? mm->n_in <= 3 && !kiln_opt_attr_s(mm, "activation", "")[0] : mm->n_in == 2) || mm->n_out != 1 ||
        !fu_is_f32(g, mm->inputs[0]))
        return false;
    int a = kiln_opt_producer(g, mm->inputs[0]), d = kiln_opt_producer(g, mm->inputs[1]);
    if ((a >= 0 && kiln_opt_is_op(o, g, (size_t)a, "DequantizeLinear")) || d < 0 ||
        !kiln_opt_is_op(o, g, (size_t)d, "DequantizeLinear") || kiln_opt_uses(g, mm->inputs[1]) != 1)
        return false;
    const struct kiln_node *dq = &g->nodes[d];
    kiln_dtype dt;
    int rx;
    const struct kiln_dim *dx;
    if (dq->n_in < 2 || dq->n_out != 1 || !kiln_opt_tensor_type(g, mm->inputs[0], &dt, &rx, &dx) || rx < 2 ||
        !is_wo_weight(o, g, dq->inputs[0]) || !fu_const_f32(o, g, dq->inputs[1]))
        return false;
    const char *zp = dq->n_in > 2 ? dq->inputs[2] : "";
    if (zp[0] && (!fu_const(o, g, zp) || fu_const(o, g, zp)->dtype != fu_const(o, g, dq->inputs[0])->dtype))
        return false;
    int64_t odt = kiln_opt_attr_i(dq, "output_dtype", 0);
    if ((odt && odt != KILN_DTYPE_F32) || (fu_opset(o) < 21 && kiln_opt_attr_i(dq, "block_size", 0) != 0))
        return false;
    *dq_at = (size_t)d;
    ins[0] = mm->inputs[0], ins[1] = dq->inputs[0], ins[2] = dq->inputs[1];
    *n_ins = 3;
    if (zp[0] || (fused && mm->n_in == 3 && mm->inputs[2][0])) ins[(*n_ins)++] = zp;
    if (fused && mm->n_in == 3 && mm->inputs[2][0]) ins[(*n_ins)++] = mm->inputs[2];
    return true;
}

/* After kiln.DynQuantConv's last matched node (output *out): a residual Add (Z into ins[5],
 * the bias slot ins[4] "" when absent) and a Relu / Clip; appends the nodes and moves *out. */
static void match_conv_tail(const struct kiln_opt *o, const struct kiln_graph *g, size_t last, size_t *nodes,
                            size_t *n_nodes, const char **ins, size_t *n_ins, const char **out, struct fu_act *act)
{
    int c = fu_next(o, g, last);
    if (c >= 0 && kiln_opt_is_op(o, g, (size_t)c, "Add") && g->nodes[c].n_out == 1) {
        const struct kiln_node *a = &g->nodes[c];
        int k = fu_other(a, *out);
        int ry, rz;
        int64_t dy[KILN_MAX_RANK], dz[KILN_MAX_RANK];
        if (k >= 0 && fu_is_f32(g, *out) && fu_is_f32(g, a->inputs[k]) && !fu_const(o, g, a->inputs[k]) &&
            kiln_opt_static_shape(g, *out, &ry, dy) && kiln_opt_static_shape(g, a->inputs[k], &rz, dz) && ry == rz &&
            !memcmp(dy, dz, (size_t)ry * sizeof *dy)) {
            if (*n_ins == 4) ins[(*n_ins)++] = "";
            ins[(*n_ins)++] = a->inputs[k];
            nodes[(*n_nodes)++] = (size_t)c;
            *out = a->outputs[0];
            c = fu_next(o, g, (size_t)c);
        }
    }
    struct fu_act a = {.name = ""};
    if (c >= 0 && fu_activation(o, g, (size_t)c, *out, &a) && (!strcmp(a.name, "Relu") || !strcmp(a.name, "Clip"))) {
        nodes[(*n_nodes)++] = (size_t)c;
        *out = g->nodes[c].outputs[0];
        *act = a;
    }
}

static kiln_status run(struct kiln_opt *o, struct kiln_graph *g, bool *changed)
{
    if (!kiln_opt_keep_fused(o)) return KILN_OK;
    for (size_t i = 0; i < g->n_nodes; i++) {
        size_t d, n_wo;
        const char *wins[5];
        if ((kiln_opt_is_op(o, g, i, "MatMul") || fu_is(o, g, (int)i, "kiln", "FusedMatMul")) &&
            match_wo(o, g, i, &d, wins, &n_wo)) {
            size_t nodes[2] = {d, i};
            const char *outs[1] = {g->nodes[i].outputs[0]};
            KILN_TRY(fu_replace(o, g, nodes, 2, "DequantMatMul", "kiln", n_wo, wins, 1, outs, &g->nodes[d], NULL));
            *changed = true;
            continue;
        }
        bool conv = kiln_opt_is_op(o, g, i, "ConvInteger");
        if (!conv && !kiln_opt_is_op(o, g, i, "MatMulInteger")) continue;
        size_t nodes[7], n_nodes, n_ins;
        const char *ins[6], *out;
        if (!match(o, g, i, conv, nodes, &n_nodes, ins, &n_ins, &out)) continue;
        struct fu_act act = {.name = ""};
        if (conv) match_conv_tail(o, g, (size_t)kiln_opt_producer(g, out), nodes, &n_nodes, ins, &n_ins, &out, &act);
        const char *outs[1] = {out};
        struct kiln_node *f;
        KILN_TRY(fu_replace(o, g, nodes, n_nodes, conv ? "DynQuantConv" : "DynQuantMatMul", "kiln", n_ins, ins, 1,
                            outs, conv ? &g->nodes[i] : NULL, &f));
        if (act.name[0]) KILN_TRY(fu_set_act(o, f, &act));
        *changed = true;
    }
    return KILN_OK;
}

const struct kiln_pass kiln_pass_fuse_dynquant = {
    .name = "fuse_dynquant",
    .level = KILN_OPT_EXTENDED,
    .doc = "DynamicQuantizeLinear -> MatMulInteger / ConvInteger -> Cast -> Mul(scales) [-> Add(bias)] -> "
           "kiln.DynQuantMatMul / kiln.DynQuantConv; MatMul(x, DequantizeLinear(constant 8/4-bit W)) -> "
           "kiln.DequantMatMul",
    .run = run,
};
