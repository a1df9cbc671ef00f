/* pass_fuse_qdq.c: a statically quantized (QDQ) CNN's quantized nodes to integer kernels
 * (docs/quantization.md "Static QDQ models", docs/fused-ops.md). What quantize_static
 * (QuantFormat.QDQ) writes, matched per node:
 *
 *   Conv  DequantizeLinear(xq, xs, xz) -> Conv(., DequantizeLinear(W int8 const, ws, 0),
 *         [DequantizeLinear(B int32 const, bs, 0)]) [-> Relu | Clip(const)] ->
 *         QuantizeLinear(ys, yz)
 *     -> Transpose(xq, NHWC) -> kiln.QConv(., W, B, xs, xz, ws, ys, yz) -> Transpose(NCHW)
 *        writing the QuantizeLinear's output. xs, xz, ys, yz constant scalars, xz and yz of
 *        one 8-bit type; ws a constant scalar or [M] (axis 0); W's zero point absent or all
 *        0; the bias scale exactly float32(xs * ws[m]) for every m (what quantize_static
 *        writes), so that B adds in the accumulator's units; 2-D, 4-D tensors.
 *   Add   DequantizeLinear(aq, as, az) + DequantizeLinear(bq, bs, bz) -> QuantizeLinear(ys,
 *         yz), A and B of one known shape -> kiln.QAdd(aq, as, az, bq, bs, bz, ys, yz)
 *         (between the same Transposes when 4-D: it is element-wise, so it runs on the
 *         channels-last data of the convolutions around it).
 *   Gemm  DequantizeLinear(A [R, K]) -> Gemm(transB 1, DequantizeLinear(W int8 [N, K]), B) ->
 *         QuantizeLinear: a 1x1 kiln.QConv between Reshapes.
 *   Reshape, Flatten, Transpose, Squeeze, Unsqueeze, Concat between DequantizeLinear and
 *         QuantizeLinear of one scale and zero point: the op on the 8-bit data (exact).
 *   QuantizeLinear / DequantizeLinear per tensor, uint8, of activations: kiln.QuantizeU8 /
 *         DequantizeU8 (the same values, vectorized); QuantizeU8 then takes the Transpose
 *         to NHWC after it.
 *   MaxPool  DequantizeLinear(xq, s, z) -> MaxPool -> QuantizeLinear(s, z) (the same scale
 *         and zero point, s > 0) -> MaxPool(xq) on the 8-bit data: DequantizeLinear is
 *         increasing, so the maximum commutes with it, and QuantizeLinear(DequantizeLinear(v))
 *         is v again (|(v - z) * s / s - (v - z)| stays far below one half): kiln.QMaxPool,
 *         channels-last.
 *
 * The Transposes of consecutive quantized nodes cancel in merge_transposes (Transpose to
 * NCHW then back to NHWC is the identity), so a chain of QConv / QAdd hands its channels-last
 * 8-bit tensors from one node to the next; what is left is a Transpose at the chain's end
 * (before the head's DequantizeLinear); the one at its start goes into kiln.QuantizeU8.
 *
 * The residual Add is not folded into the convolution before it as a sum post-op: the
 * graph rounds that convolution's output to 8 bits (QuantizeLinear -> DequantizeLinear)
 * before the Add, which a post-op would skip; kiln.QAdd keeps that rounding and is exact.
 *
 * Numerics. QAdd and the MaxPool rewrite give exactly what the unfused nodes give. QConv
 * does not, and cannot: the unfused graph sums float32 products of dequantized values in
 * some order and rounds the sum to float32, where QConv sums exactly in int32 and
 * requantizes once (docs/fused-ops.md gives its formula); the two differ where the float32
 * sum's rounding error, or the different rounding of the scale product, moves a value
 * across a rounding boundary of QuantizeLinear: by one unit of y, rarely (measured on the
 * bench models in docs/quantization.md). onnxruntime's own QDQ -> QLinearConv fusion has
 * the same property.
 *
 * Runs first in the pass list, before fold_constants would turn DequantizeLinear(W) into a
 * float32 initializer. Needs kiln ops.
 */
#include <stdio.h>
#include <string.h>

#include "opt/fuse_util.h"

/* A constant scalar float32 (rank 0 or [1]). */
static bool scalar_f32(const struct kiln_opt *o, const struct kiln_graph *g, const char *name, float *v)
{
    const struct kiln_tensor *t = name && name[0] ? fu_const_f32(o, g, name) : NULL;
    if (!t || !t->data || t->rank > 1 || kiln_tensor_numel(t) != 1) return false;
    *v = *(const float *)t->data;
    return true;
}

/* A constant scalar zero point of an 8-bit type: *dt its type. */
static bool scalar_zp(const struct kiln_opt *o, const struct kiln_graph *g, const char *name, kiln_dtype *dt)
{
    const struct kiln_tensor *t = name && name[0] ? fu_const(o, g, name) : NULL;
    if (!t || !t->data || t->rank > 1 || kiln_tensor_numel(t) != 1) return false;
    if (t->dtype != KILN_DTYPE_U8 && t->dtype != KILN_DTYPE_I8) return false;
    *dt = t->dtype;
    return true;
}

/* Node index of a DequantizeLinear producing `name` with constant scalar scale and zero
 * point (the per-tensor form of an activation); -1 otherwise. */
static int dq_act(const struct kiln_opt *o, const struct kiln_graph *g, const char *name, kiln_dtype *zdt, float *s)
{
    int d = kiln_opt_producer(g, name);
    if (d < 0 || !fu_is(o, g, d, "", "DequantizeLinear")) return -1;
    const struct kiln_node *n = &g->nodes[d];
    if (n->n_in != 3 || n->n_out != 1 || !scalar_f32(o, g, n->inputs[1], s) || !scalar_zp(o, g, n->inputs[2], zdt))
        return -1;
    return d;
}

/* The QuantizeLinear node reading `name` as its only reader, per tensor, zero point of type
 * zdt; -1 otherwise. */
static int q_after(const struct kiln_opt *o, const struct kiln_graph *g, size_t i, kiln_dtype zdt, float *ys)
{
    int q = fu_next(o, g, i);
    if (q < 0 || !fu_is(o, g, q, "", "QuantizeLinear")) return -1;
    const struct kiln_node *n = &g->nodes[q];
    kiln_dtype dt;
    if (n->n_in != 3 || n->n_out != 1 || !scalar_f32(o, g, n->inputs[1], ys) || !scalar_zp(o, g, n->inputs[2], &dt) ||
        dt != zdt || kiln_opt_attr_i(n, "saturate", 1) != 1)
        return -1;
    return q;
}

/* A constant integer tensor whose elements are all 0 (a symmetric zero point). */
static bool all_zero(const struct kiln_opt *o, const struct kiln_graph *g, const char *name)
{
    const struct kiln_tensor *t = fu_const(o, g, name);
    if (!t || !t->data || !kiln_dtype_is_int(t->dtype)) return false;
    size_t bytes = kiln_tensor_numel(t) * kiln_dtype_size(t->dtype);
    for (size_t i = 0; i < bytes; i++)
        if (((const uint8_t *)t->data)[i]) return false;
    return true;
}

static bool rank4(const struct kiln_graph *g, const char *name)
{
    int r;
    kiln_dtype dt;
    return kiln_opt_tensor_type(g, name, &dt, &r, NULL) && r == 4;
}

/* DequantizeLinear of a constant int8 W [M, ...] with zero point absent or 0 and scale a
 * scalar or [M] on axis 0: W's, the scale's names. */
static bool dq_weights(const struct kiln_opt *o, const struct kiln_graph *g, const char *name, int rank, const char **w,
                       const char **ws, const struct kiln_tensor **wt, const struct kiln_tensor **st)
{
    int d = kiln_opt_producer(g, name);
    if (d < 0 || !fu_is(o, g, d, "", "DequantizeLinear")) return false;
    const struct kiln_node *n = &g->nodes[d];
    if (n->n_in < 2 || n->n_out != 1) return false;
    const struct kiln_tensor *t = fu_const(o, g, n->inputs[0]), *s = fu_const_f32(o, g, n->inputs[1]);
    if (!t || !t->data || t->dtype != KILN_DTYPE_I8 || t->rank != rank || !s || !s->data) return false;
    size_t ns = kiln_tensor_numel(s);
    if (!(ns == 1 && s->rank <= 1) &&
        !(s->rank == 1 && s->dims[0] == t->dims[0] && kiln_opt_attr_i(n, "axis", 1) == 0))
        return false;
    if (n->n_in > 2 && n->inputs[2][0] && !all_zero(o, g, n->inputs[2])) return false;
    if (kiln_opt_attr_i(n, "block_size", 0) != 0) return false;
    *w = n->inputs[0], *ws = n->inputs[1], *wt = t, *st = s;
    return true;
}

/* DequantizeLinear of a constant int32 bias [M] whose scale is exactly float32(xs * ws[m])
 * and zero point absent or 0: the bias's name. */
static bool dq_bias(const struct kiln_opt *o, const struct kiln_graph *g, const char *name, float xs,
                    const struct kiln_tensor *ws, int64_t M, const char **b)
{
    int d = kiln_opt_producer(g, name);
    if (d < 0 || !fu_is(o, g, d, "", "DequantizeLinear")) return false;
    const struct kiln_node *n = &g->nodes[d];
    if (n->n_in < 2 || n->n_out != 1) return false;
    const struct kiln_tensor *t = fu_const(o, g, n->inputs[0]), *s = fu_const_f32(o, g, n->inputs[1]);
    if (!t || !t->data || t->dtype != KILN_DTYPE_I32 || t->rank != 1 || t->dims[0] != M || !s || !s->data) return false;
    size_t ns = kiln_tensor_numel(s), nw = kiln_tensor_numel(ws);
    if (ns != 1 && ns != (size_t)M) return false;
    if (ns != 1 && kiln_opt_attr_i(n, "axis", 1) != 0) return false;
    if (n->n_in > 2 && n->inputs[2][0] && !all_zero(o, g, n->inputs[2])) return false;
    const float *sv = s->data, *wv = ws->data;
    for (int64_t m = 0; m < M; m++) {
        float want = xs * wv[nw == 1 ? 0 : m], have = sv[ns == 1 ? 0 : m];
        if (memcmp(&want, &have, sizeof want)) return false;
    }
    *b = n->inputs[0];
    return true;
}

static kiln_status transpose(struct kiln_opt *o, struct kiln_graph *g, const char *in, const char *out, bool to_nhwc)
{
    static const int64_t TO_NHWC[4] = {0, 2, 3, 1}, TO_NCHW[4] = {0, 3, 1, 2};
    struct kiln_node *t;
    KILN_TRY(kiln_opt_add_node(o, g, "Transpose", "", NULL, 1, &in, 1, &out, &t));
    return kiln_opt_set_attr_ints(o, t, "perm", to_nhwc ? TO_NHWC : TO_NCHW, 4);
}

/* A fresh name made from base + suffix. */
static kiln_status fresh(struct kiln_opt *o, const char *base, const char *suffix, const char **out)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s%s", base, suffix);
    return kiln_opt_unique_name(o, buf, out);
}

/* Queues op (domain kiln) on the NHWC forms of ins[k] (k in act[]) writing `out` in NCHW:
 * Transposes in front of each activation input and behind the output. *nn the new node. */
static kiln_status nhwc_node(struct kiln_opt *o, struct kiln_graph *g, const char *op, const char *name,
                             size_t n_in, const char **ins, const size_t *act, size_t n_act, const char *out,
                             struct kiln_node **nn)
{
    for (size_t k = 0; k < n_act; k++) {
        const char *t;
        KILN_TRY(fresh(o, ins[act[k]], "_nhwc", &t));
        KILN_TRY(transpose(o, g, ins[act[k]], t, true));
        ins[act[k]] = t;
    }
    const char *y;
    KILN_TRY(fresh(o, out, "_nhwc", &y));
    KILN_TRY(kiln_opt_add_node(o, g, op, "kiln", name, n_in, ins, 1, &y, nn));
    return transpose(o, g, y, out, false);
}

static kiln_status fuse_conv(struct kiln_opt *o, struct kiln_graph *g, size_t i, bool *changed)
{
    const struct kiln_node *c = &g->nodes[i];
    if (c->n_in < 2 || c->n_in > 3 || c->n_out != 1 || !rank4(g, c->inputs[0]) || !rank4(g, c->outputs[0]))
        return KILN_OK;
    const int64_t *ks;
    size_t nks;
    if (kiln_opt_attr_ints(c, "kernel_shape", &ks, &nks) && nks != 2) return KILN_OK;
    kiln_dtype zdt;
    float xs, ys;
    int dx = dq_act(o, g, c->inputs[0], &zdt, &xs);
    if (dx < 0) return KILN_OK;
    const char *w, *ws, *b = "";
    const struct kiln_tensor *wt, *st;
    if (!dq_weights(o, g, c->inputs[1], 4, &w, &ws, &wt, &st)) return KILN_OK;
    if (c->n_in > 2 && c->inputs[2][0] && !dq_bias(o, g, c->inputs[2], xs, st, wt->dims[0], &b)) return KILN_OK;
    size_t nodes[3] = {i}, n = 1;
    struct fu_act a = {.name = ""};
    size_t last = i;
    int j = fu_next(o, g, i);
    if (j >= 0 && fu_activation(o, g, (size_t)j, c->outputs[0], &a)) {
        if (strcmp(a.name, "Relu") && strcmp(a.name, "Clip")) return KILN_OK;
        nodes[n++] = last = (size_t)j;
    } else {
        a.name = "";
    }
    int q = q_after(o, g, last, zdt, &ys);
    if (q < 0) return KILN_OK;
    nodes[n++] = (size_t)q;
    const struct kiln_node *dn = &g->nodes[dx], *qn = &g->nodes[q];
    const char *ins[8] = {dn->inputs[0], w, b, dn->inputs[1], dn->inputs[2], ws, qn->inputs[1], qn->inputs[2]};
    const size_t act[1] = {0};
    KILN_TRY(kiln_opt_require_opset(o, "kiln", 1));
    struct kiln_node *nn;
    KILN_TRY(nhwc_node(o, g, "QConv", c->name && c->name[0] ? c->name : NULL, 8, ins, act, 1, qn->outputs[0], &nn));
    KILN_TRY(kiln_opt_copy_attrs(o, nn, c));
    KILN_TRY(fu_set_act(o, nn, &a));
    kiln_opt_note_fused(o, g, nodes, n, nn);
    for (size_t k = 0; k < n; k++) kiln_opt_remove_node(o, g, nodes[k]);
    *changed = true;
    return KILN_OK;
}

/* A constant int64 vector initializer made from base. */
static kiln_status add_i64(struct kiln_opt *o, struct kiln_graph *g, const char *base, const int64_t *v, int64_t n,
                           const char **name)
{
    struct kiln_tensor t = {.dtype = KILN_DTYPE_I64, .rank = 1, .dims = {n}, .data = (void *)v};
    return kiln_opt_add_init(o, g, base, &t, name);
}

/* DequantizeLinear(A [R, K]) -> Gemm(., DequantizeLinear(W int8 [N, K]), DequantizeLinear(B))
 * (transB 1, alpha 1, beta 1) -> QuantizeLinear: a 1x1 kiln.QConv on R images of one pixel,
 * between Reshapes ([R, 1, 1, K] in, [R, N] out); the weights re-shaped [N, K, 1, 1]. */
static kiln_status fuse_gemm(struct kiln_opt *o, struct kiln_graph *g, size_t i, bool *changed)
{
    const struct kiln_node *gm = &g->nodes[i];
    if (gm->n_in < 2 || gm->n_in > 3 || gm->n_out != 1 || kiln_opt_attr_i(gm, "transA", 0) ||
        kiln_opt_attr_i(gm, "transB", 0) != 1 || kiln_opt_attr_f(gm, "alpha", 1.0f) != 1.0f ||
        kiln_opt_attr_f(gm, "beta", 1.0f) != 1.0f)
        return KILN_OK;
    kiln_dtype zdt, adt;
    float xs, ys;
    int rank;
    const struct kiln_dim *ad;
    int dx = dq_act(o, g, gm->inputs[0], &zdt, &xs);
    if (dx < 0 || !kiln_opt_tensor_type(g, gm->inputs[0], &adt, &rank, &ad) || rank != 2 || !kiln_dim_known(ad[1]))
        return KILN_OK;
    const char *w, *ws, *b = "";
    const struct kiln_tensor *wt, *st;
    if (!dq_weights(o, g, gm->inputs[1], 2, &w, &ws, &wt, &st) || wt->dims[1] != ad[1].value) return KILN_OK;
    int64_t N = wt->dims[0], K = wt->dims[1];
    if (gm->n_in > 2 && gm->inputs[2][0] && !dq_bias(o, g, gm->inputs[2], xs, st, N, &b)) return KILN_OK;
    int q = q_after(o, g, i, zdt, &ys);
    if (q < 0) return KILN_OK;
    const struct kiln_node *dn = &g->nodes[dx], *qn = &g->nodes[q];
    KILN_TRY(kiln_opt_require_opset(o, "kiln", 1));
    struct kiln_tensor w4 = *wt;
    w4.rank = 4, w4.dims[2] = 1, w4.dims[3] = 1;
    const char *w4n, *sin, *sout, *a4, *y4;
    const int64_t in_shape[4] = {-1, 1, 1, K}, out_shape[2] = {-1, N}, one[2] = {1, 1};
    KILN_TRY(kiln_opt_add_init(o, g, w, &w4, &w4n));
    KILN_TRY(add_i64(o, g, "qgemm_in_shape", in_shape, 4, &sin));
    KILN_TRY(add_i64(o, g, "qgemm_out_shape", out_shape, 2, &sout));
    KILN_TRY(fresh(o, dn->inputs[0], "_1x1", &a4));
    KILN_TRY(fresh(o, qn->outputs[0], "_1x1", &y4));
    const char *rin[2] = {dn->inputs[0], sin}, *rout[2] = {y4, sout};
    struct kiln_node *nn;
    KILN_TRY(kiln_opt_add_node(o, g, "Reshape", "", NULL, 2, rin, 1, &a4, NULL));
    const char *ins[8] = {a4, w4n, b, dn->inputs[1], dn->inputs[2], ws, qn->inputs[1], qn->inputs[2]};
    KILN_TRY(kiln_opt_add_node(o, g, "QConv", "kiln", gm->name && gm->name[0] ? gm->name : NULL, 8, ins, 1, &y4, &nn));
    KILN_TRY(kiln_opt_set_attr_ints(o, nn, "kernel_shape", one, 2));
    size_t nodes[2] = {i, (size_t)q};
    kiln_opt_note_fused(o, g, nodes, 2, nn);
    KILN_TRY(kiln_opt_add_node(o, g, "Reshape", "", NULL, 2, rout, 1, &qn->outputs[0], NULL));
    kiln_opt_remove_node(o, g, i);
    kiln_opt_remove_node(o, g, (size_t)q);
    *changed = true;
    return KILN_OK;
}

static kiln_status fuse_add(struct kiln_opt *o, struct kiln_graph *g, size_t i, bool *changed)
{
    const struct kiln_node *ad = &g->nodes[i];
    if (ad->n_in != 2 || ad->n_out != 1) return KILN_OK;
    kiln_dtype za, zb;
    float as, bs, ys;
    int da = dq_act(o, g, ad->inputs[0], &za, &as), db = dq_act(o, g, ad->inputs[1], &zb, &bs);
    if (da < 0 || db < 0 || za != zb) return KILN_OK;
    int ra, rb;
    int64_t sa[KILN_MAX_RANK], sb[KILN_MAX_RANK];
    if (!kiln_opt_static_shape(g, ad->inputs[0], &ra, sa) || !kiln_opt_static_shape(g, ad->inputs[1], &rb, sb) ||
        ra != rb || memcmp(sa, sb, sizeof *sa * (size_t)ra))
        return KILN_OK;
    int q = q_after(o, g, i, za, &ys);
    if (q < 0) return KILN_OK;
    const struct kiln_node *a = &g->nodes[da], *b = &g->nodes[db], *qn = &g->nodes[q];
    const char *ins[8] = {a->inputs[0], a->inputs[1], a->inputs[2], b->inputs[0],
                          b->inputs[1], b->inputs[2], qn->inputs[1], qn->inputs[2]};
    size_t nodes[2] = {i, (size_t)q};
    KILN_TRY(kiln_opt_require_opset(o, "kiln", 1));
    struct kiln_node *nn;
    const char *name = ad->name && ad->name[0] ? ad->name : NULL;
    if (ra == 4) {
        const size_t act[2] = {0, 3};
        KILN_TRY(nhwc_node(o, g, "QAdd", name, 8, ins, act, 2, qn->outputs[0], &nn));
    } else {
        KILN_TRY(kiln_opt_add_node(o, g, "QAdd", "kiln", name, 8, ins, 1, &qn->outputs[0], &nn));
    }
    kiln_opt_note_fused(o, g, nodes, 2, nn);
    kiln_opt_remove_node(o, g, i);
    kiln_opt_remove_node(o, g, (size_t)q);
    *changed = true;
    return KILN_OK;
}

static kiln_status fuse_maxpool(struct kiln_opt *o, struct kiln_graph *g, size_t i, bool *changed)
{
    const struct kiln_node *mp = &g->nodes[i];
    if (mp->n_in != 1 || mp->n_out != 1 || !rank4(g, mp->inputs[0])) return KILN_OK; /* Indices: not this */
    const int64_t *ks;
    size_t nks;
    if (!kiln_opt_attr_ints(mp, "kernel_shape", &ks, &nks) || nks != 2) return KILN_OK;
    if (kiln_opt_attr_i(mp, "ceil_mode", 0) || kiln_opt_attr_i(mp, "storage_order", 0) ||
        strcmp(kiln_opt_attr_s(mp, "auto_pad", "NOTSET"), "NOTSET"))
        return KILN_OK;
    kiln_dtype zdt;
    float xs, ys;
    int d = dq_act(o, g, mp->inputs[0], &zdt, &xs);
    if (d < 0 || !(xs > 0.0f)) return KILN_OK;
    int q = q_after(o, g, i, zdt, &ys);
    if (q < 0 || memcmp(&xs, &ys, sizeof xs)) return KILN_OK;
    const struct kiln_tensor *z1 = fu_const(o, g, g->nodes[d].inputs[2]), *z2 = fu_const(o, g, g->nodes[q].inputs[2]);
    if (memcmp(z1->data, z2->data, 1)) return KILN_OK;
    size_t nodes[2] = {i, (size_t)q};
    KILN_TRY(kiln_opt_require_opset(o, "kiln", 1));
    struct kiln_node *nn;
    const char *ins[1] = {g->nodes[d].inputs[0]};
    const size_t act[1] = {0};
    KILN_TRY(nhwc_node(o, g, "QMaxPool", mp->name && mp->name[0] ? mp->name : NULL, 1, ins, act, 1,
                       g->nodes[q].outputs[0], &nn));
    KILN_TRY(kiln_opt_copy_attrs(o, nn, mp));
    kiln_opt_remove_attr(nn, "ceil_mode");
    kiln_opt_remove_attr(nn, "storage_order");
    kiln_opt_remove_attr(nn, "auto_pad");
    kiln_opt_note_fused(o, g, nodes, 2, nn);
    kiln_opt_remove_node(o, g, i);
    kiln_opt_remove_node(o, g, (size_t)q);
    *changed = true;
    return KILN_OK;
}

/* Whether DequantizeLinear d and QuantizeLinear q use the same scale and zero point (by
 * value; the scale > 0, so that Q(DQ(v)) = v). */
static bool same_params(const struct kiln_opt *o, const struct kiln_graph *g, int d, int q)
{
    kiln_dtype zd, zq;
    float sd, sq;
    if (!scalar_f32(o, g, g->nodes[d].inputs[1], &sd) || !scalar_f32(o, g, g->nodes[q].inputs[1], &sq) ||
        !scalar_zp(o, g, g->nodes[d].inputs[2], &zd) || !scalar_zp(o, g, g->nodes[q].inputs[2], &zq))
        return false;
    const struct kiln_tensor *a = fu_const(o, g, g->nodes[d].inputs[2]), *b = fu_const(o, g, g->nodes[q].inputs[2]);
    return zd == zq && sd > 0.0f && !memcmp(&sd, &sq, sizeof sd) && !memcmp(a->data, b->data, 1);
}

/* Data movement between a DequantizeLinear and a QuantizeLinear of the same parameters
 * (quantize_static's QDQDirect8BitOp: Reshape, Flatten, Transpose, Squeeze, Unsqueeze; and
 * Concat whose every input is such a DequantizeLinear): the op on the 8-bit data, which
 * moves the same values (Q(DQ(v)) = v for v of the type, scale > 0). Concat on the channels
 * of 4-D tensors runs channels-last (axis 3, between Transposes), so that a chain of QConvs
 * through it stays NHWC. */
static kiln_status fuse_move(struct kiln_opt *o, struct kiln_graph *g, size_t i, bool *changed)
{
    const struct kiln_node *n = &g->nodes[i];
    bool concat = fu_is(o, g, (int)i, "", "Concat");
    if (n->n_in < 1 || n->n_out != 1 || n->n_in > 64) return KILN_OK;
    kiln_dtype zdt;
    float s;
    int d0 = dq_act(o, g, n->inputs[0], &zdt, &s);
    if (d0 < 0) return KILN_OK;
    float ys;
    int q = q_after(o, g, i, zdt, &ys);
    if (q < 0 || !same_params(o, g, d0, q)) return KILN_OK;
    const char *ins[64];
    for (size_t k = 0; k < n->n_in; k++) {
        ins[k] = n->inputs[k];
        if (k > 0 && !concat) continue; /* shapes, perms, axes: kept */
        int d = dq_act(o, g, n->inputs[k], &zdt, &s);
        if (d < 0 || !same_params(o, g, d, q)) return KILN_OK;
        ins[k] = g->nodes[d].inputs[0];
    }
    size_t nodes[2] = {i, (size_t)q};
    struct kiln_node *nn;
    const char *name = n->name && n->name[0] ? n->name : NULL;
    int64_t axis = kiln_opt_attr_i(n, "axis", 0);
    bool nhwc = concat && (axis == 1 || axis == -3);
    for (size_t k = 0; k < n->n_in && nhwc; k++) nhwc = rank4(g, n->inputs[k]);
    if (nhwc) {
        const char *y;
        for (size_t k = 0; k < n->n_in; k++) {
            const char *t;
            KILN_TRY(fresh(o, ins[k], "_nhwc", &t));
            KILN_TRY(transpose(o, g, ins[k], t, true));
            ins[k] = t;
        }
        KILN_TRY(fresh(o, g->nodes[q].outputs[0], "_nhwc", &y));
        KILN_TRY(kiln_opt_add_node(o, g, "Concat", "", name, n->n_in, ins, 1, &y, &nn));
        KILN_TRY(kiln_opt_set_attr_i(o, nn, "axis", 3));
        KILN_TRY(transpose(o, g, y, g->nodes[q].outputs[0], false));
    } else {
        KILN_TRY(kiln_opt_add_node(o, g, n->op_type, "", name, n->n_in, ins, 1, &g->nodes[q].outputs[0], &nn));
        KILN_TRY(kiln_opt_copy_attrs(o, nn, n));
    }
    kiln_opt_note_fused(o, g, nodes, 2, nn);
    kiln_opt_remove_node(o, g, i);
    kiln_opt_remove_node(o, g, (size_t)q);
    *changed = true;
    return KILN_OK;
}

/* QuantizeLinear of float32 x with a constant scalar scale and uint8 zero point (and no
 * opset-21+ extras) -> kiln.QuantizeU8: the same values, vectorized. */
static kiln_status fuse_quantize(struct kiln_opt *o, struct kiln_graph *g, size_t i, bool *changed)
{
    const struct kiln_node *n = &g->nodes[i];
    float s;
    kiln_dtype zdt;
    if (n->n_in != 3 || n->n_out != 1 || !fu_is_f32(g, n->inputs[0]) || !scalar_f32(o, g, n->inputs[1], &s) ||
        !scalar_zp(o, g, n->inputs[2], &zdt) || zdt != KILN_DTYPE_U8 || kiln_opt_attr_i(n, "saturate", 1) != 1 ||
        kiln_opt_attr_i(n, "precision", 0) != 0 || kiln_opt_attr_i(n, "output_dtype", 0) != 0)
        return KILN_OK;
    KILN_TRY(kiln_opt_require_opset(o, "kiln", 1));
    struct kiln_node *nn;
    KILN_TRY(kiln_opt_add_node(o, g, "QuantizeU8", "kiln", n->name && n->name[0] ? n->name : NULL, 3, n->inputs, 1,
                               n->outputs, &nn));
    kiln_opt_note_fused(o, g, &i, 1, nn);
    kiln_opt_remove_node(o, g, i);
    *changed = true;
    return KILN_OK;
}

/* Whether a reader of DequantizeLinear node i's output is a Conv, Add or MaxPool (the
 * fusions above read the DequantizeLinear itself: it must stay one). */
static bool any_fusable_reader(const struct kiln_opt *o, const struct kiln_graph *g, size_t i)
{
    const char *v = g->nodes[i].outputs[0];
    for (size_t j = 0; j < g->n_nodes; j++) {
        if (!kiln_opt_live(o, g, j)) continue;
        const struct kiln_node *r = &g->nodes[j];
        bool reads = false;
        for (size_t k = 0; k < r->n_in; k++) reads |= !strcmp(r->inputs[k], v);
        if (reads && (fu_is(o, g, (int)j, "", "Conv") || fu_is(o, g, (int)j, "", "Add") ||
                      fu_is(o, g, (int)j, "", "MaxPool")))
            return true;
    }
    return false;
}

/* DequantizeLinear of a uint8 activation (not a constant) with a constant scalar scale and
 * uint8 zero point -> kiln.DequantizeU8: the same values, vectorized. */
static kiln_status fuse_dequantize(struct kiln_opt *o, struct kiln_graph *g, size_t i, bool *changed)
{
    const struct kiln_node *n = &g->nodes[i];
    kiln_dtype zdt, xdt;
    float s;
    int rank;
    if (dq_act(o, g, n->outputs[0], &zdt, &s) != (int)i || zdt != KILN_DTYPE_U8 || fu_const(o, g, n->inputs[0]) ||
        !kiln_opt_tensor_type(g, n->inputs[0], &xdt, &rank, NULL) || xdt != KILN_DTYPE_U8 ||
        kiln_opt_attr_i(n, "output_dtype", 0) != 0)
        return KILN_OK;
    KILN_TRY(kiln_opt_require_opset(o, "kiln", 1));
    struct kiln_node *nn;
    KILN_TRY(kiln_opt_add_node(o, g, "DequantizeU8", "kiln", n->name && n->name[0] ? n->name : NULL, 3, n->inputs, 1,
                               n->outputs, &nn));
    kiln_opt_note_fused(o, g, &i, 1, nn);
    kiln_opt_remove_node(o, g, i);
    *changed = true;
    return KILN_OK;
}

/* kiln.QuantizeU8 read only by a Transpose to NHWC (the one in front of the first QConv):
 * one kiln.QuantizeU8 with nhwc 1 writing the Transpose's output. */
static kiln_status fuse_quantize_nhwc(struct kiln_opt *o, struct kiln_graph *g, size_t i, bool *changed)
{
    const struct kiln_node *n = &g->nodes[i];
    if (n->n_in != 3 || n->n_out != 1 || kiln_opt_attr_i(n, "nhwc", 0) || !rank4(g, n->inputs[0])) return KILN_OK;
    int t = fu_next(o, g, i);
    if (t < 0 || !fu_is(o, g, t, "", "Transpose")) return KILN_OK;
    const int64_t *perm;
    size_t np;
    static const int64_t TO_NHWC[4] = {0, 2, 3, 1};
    if (!kiln_opt_attr_ints(&g->nodes[t], "perm", &perm, &np) || np != 4 || memcmp(perm, TO_NHWC, sizeof TO_NHWC))
        return KILN_OK;
    struct kiln_node *nn;
    KILN_TRY(kiln_opt_add_node(o, g, "QuantizeU8", "kiln", n->name && n->name[0] ? n->name : NULL, 3, n->inputs, 1,
                               g->nodes[t].outputs, &nn));
    KILN_TRY(kiln_opt_set_attr_i(o, nn, "nhwc", 1));
    size_t nodes[2] = {i, (size_t)t};
    kiln_opt_note_fused(o, g, nodes, 2, nn);
    kiln_opt_remove_node(o, g, i);
    kiln_opt_remove_node(o, g, (size_t)t);
    *changed = true;
    return KILN_OK;
}

static kiln_status run(struct kiln_opt *o, struct kiln_graph *g, bool *changed)
{
    if (!kiln_opt_keep_fused(o) || !g->vtypes) return KILN_OK;
    size_t nn = g->n_nodes;
    for (size_t i = 0; i < nn; i++) {
        if (!kiln_opt_live(o, g, i)) continue;
        if (fu_is(o, g, (int)i, "", "Conv")) KILN_TRY(fuse_conv(o, g, i, changed));
        else if (fu_is(o, g, (int)i, "", "Add")) KILN_TRY(fuse_add(o, g, i, changed));
        else if (fu_is(o, g, (int)i, "", "MaxPool")) KILN_TRY(fuse_maxpool(o, g, i, changed));
        else if (fu_is(o, g, (int)i, "", "Gemm")) KILN_TRY(fuse_gemm(o, g, i, changed));
        else if (fu_is(o, g, (int)i, "", "Concat") || fu_is(o, g, (int)i, "", "Reshape") ||
                 fu_is(o, g, (int)i, "", "Flatten") || fu_is(o, g, (int)i, "", "Transpose") ||
                 fu_is(o, g, (int)i, "", "Squeeze") || fu_is(o, g, (int)i, "", "Unsqueeze"))
            KILN_TRY(fuse_move(o, g, i, changed));
        else if (fu_is(o, g, (int)i, "kiln", "QuantizeU8")) KILN_TRY(fuse_quantize_nhwc(o, g, i, changed));
    }
    /* After the fusions above (whose QuantizeLinear nodes they take). */
    for (size_t i = 0; i < nn; i++) {
        if (kiln_opt_live(o, g, i) && fu_is(o, g, (int)i, "", "QuantizeLinear")) KILN_TRY(fuse_quantize(o, g, i, changed));
        if (kiln_opt_live(o, g, i) && fu_is(o, g, (int)i, "", "DequantizeLinear") && !any_fusable_reader(o, g, i))
            KILN_TRY(fuse_dequantize(o, g, i, changed));
    }
    return KILN_OK;
}

const struct kiln_pass kiln_pass_fuse_qdq = {
    .name = "fuse_qdq",
    .level = KILN_OPT_EXTENDED,
    .needs_kiln_ops = true,
    .doc = "QDQ CNNs to integer kernels: DQ -> Conv [-> Relu/Clip] -> Q to kiln.QConv (channels-last), "
           "DQ + DQ -> Add -> Q to kiln.QAdd, DQ -> MaxPool -> Q to MaxPool on the 8-bit data",
    .run = run,
};
