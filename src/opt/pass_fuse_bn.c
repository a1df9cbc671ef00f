/* pass_fuse_bn.c: folds an inference-mode BatchNormalization into the Conv, ConvTranspose,
 * Gemm or MatMul that produces its input, when that producer's weights are constant.
 *
 * BatchNormalization(y) = y * s + t per channel (dim 1), s = scale / sqrt(var + eps),
 * t = bias - mean * s. For a producer y = W * x + b whose output channel c depends only on
 * weight slice c, W' = W * s (per output channel) and b' = b * s + t give the same result;
 * the new weights and bias are new initializers (the old ones stay for other users; dce
 * removes them when unused).
 *   Conv: W [M, C/group, k...], output channel m is W[m]. ConvTranspose: W [C, M/group, k...],
 *   output channel g * (M/group) + j is W[:, j] within group g's rows. Gemm: output [M, N],
 *   channel n is column n of op(B); C (absent, scalar, [N] or [1, N]) becomes beta * C * s + t
 *   and beta 1. MatMul with a 2-D first input and constant 2-D B becomes Gemm(A, B', t').
 * Only float32 weights and BatchNormalization parameters; training mode and a read mean/var
 * output leave the node alone. Rounding: W * s and b * s + t are rounded once to float, so
 * outputs move by about one ulp of each term.
 */
#include <math.h>
#include <string.h>

#include "opt/fuse_util.h"

/* The per-channel s and t of BatchNormalization node bn for C channels (kiln_malloc'd,
 * 2*C floats: s then t); NULL when the parameters are not constant float32 of C elements
 * (or on NOMEM, with the error set: *nomem). */
static float *bn_affine(struct kiln_opt *o, const struct kiln_graph *g, const struct kiln_node *bn,
                        size_t C, bool *nomem)
{
    *nomem = false;
    if (bn->n_in != 5) return NULL;
    const struct kiln_tensor *p[4];
    for (int i = 0; i < 4; i++) {
        p[i] = fu_const_f32(o, g, bn->inputs[1 + i]);
        if (!p[i] || kiln_tensor_numel(p[i]) != C || p[i]->rank != 1) return NULL;
    }
    float *st = kiln_malloc(2 * (C ? C : 1) * sizeof *st);
    if (!st) {
        *nomem = true;
        fu_nomem(o);
        return NULL;
    }
    double eps = kiln_opt_attr_f(bn, "epsilon", 1e-5f);
    const float *scale = p[0]->data, *bias = p[1]->data, *mean = p[2]->data, *var = p[3]->data;
    for (size_t c = 0; c < C; c++) {
        double s = scale[c] / sqrt((double)var[c] + eps);
        st[c] = (float)s;
        st[C + c] = (float)(bias[c] - mean[c] * s);
    }
    return st;
}

/* Whether bn runs in inference mode with only output 0 read. */
static bool bn_inference(const struct kiln_graph *g, const struct kiln_node *bn)
{
    if (kiln_opt_attr_i(bn, "training_mode", 0) != 0) return false;
    if (bn->since > 0 && bn->since < 9 && kiln_opt_attr_i(bn, "spatial", 1) != 1) return false;
    for (size_t i = 1; i < bn->n_out; i++)
        if (bn->outputs[i][0] && kiln_opt_uses(g, bn->outputs[i]) > 0) return false;
    return bn->n_out >= 1 && bn->outputs[0][0];
}

/* Conv / ConvTranspose: new weights and bias. */
static kiln_status fold_conv(struct kiln_opt *o, struct kiln_graph *g, size_t pi, size_t bi,
                             bool *done)
{
    const struct kiln_node *p = &g->nodes[pi], *bn = &g->nodes[bi];
    bool transpose = !strcmp(p->op_type, "ConvTranspose");
    if (p->n_in < 2 || p->n_in > 3) return KILN_OK;
    const struct kiln_tensor *w = fu_const_f32(o, g, p->inputs[1]);
    const struct kiln_tensor *b = p->n_in == 3 && p->inputs[2][0] ? fu_const_f32(o, g, p->inputs[2]) : NULL;
    if (!w || w->rank < 3 || (p->n_in == 3 && p->inputs[2][0] && !b)) return KILN_OK;
    int64_t group = kiln_opt_attr_i(p, "group", 1);
    if (group < 1 || (transpose && w->dims[0] % group)) return KILN_OK;
    size_t M = transpose ? (size_t)(w->dims[1] * group) : (size_t)w->dims[0];
    if (b && (b->rank != 1 || (size_t)b->dims[0] != M)) return KILN_OK;
    bool nomem;
    float *st = bn_affine(o, g, bn, M, &nomem);
    if (!st) return nomem ? KILN_E_NOMEM : KILN_OK;
    float *nw = fu_copy_f32(o, w), *nb = kiln_malloc((M ? M : 1) * sizeof *nb);
    kiln_status rc = KILN_OK;
    if (!nw || !nb) {
        rc = fu_nomem(o);
        goto out;
    }
    size_t inner = 1;
    for (int d = 2; d < w->rank; d++) inner *= (size_t)w->dims[d];
    if (!transpose) {
        size_t per = kiln_tensor_numel(w) / (M ? M : 1);
        for (size_t m = 0; m < M; m++)
            for (size_t i = 0; i < per; i++) nw[m * per + i] *= st[m];
    } else {
        size_t C = (size_t)w->dims[0], mg = (size_t)w->dims[1], cg = C / (size_t)group;
        for (size_t c = 0; c < C; c++)
            for (size_t j = 0; j < mg; j++)
                for (size_t i = 0; i < inner; i++)
                    nw[(c * mg + j) * inner + i] *= st[(c / cg) * mg + j];
    }
    for (size_t m = 0; m < M; m++) nb[m] = (b ? ((const float *)b->data)[m] : 0.0f) * st[m] + st[M + m];
    const char *wn, *bname;
    int64_t bd[1] = {(int64_t)M};
    rc = fu_add_f32(o, g, p->inputs[1], w->rank, w->dims, nw, &wn);
    if (!rc) rc = fu_add_f32(o, g, b ? p->inputs[2] : "bias", 1, bd, nb, &bname);
    if (!rc) {
        const char *ins[3] = {p->inputs[0], wn, bname}, *outs[1] = {bn->outputs[0]};
        size_t nodes[2] = {pi, bi};
        rc = fu_replace(o, g, nodes, 2, p->op_type, "", 3, ins, 1, outs, p, NULL);
        *done = rc == KILN_OK;
    }
out:
    kiln_free(st);
    kiln_free(nw);
    kiln_free(nb);
    return rc;
}

/* Gemm, or a 2-D MatMul with constant B (becomes Gemm). */
static kiln_status fold_gemm(struct kiln_opt *o, struct kiln_graph *g, size_t pi, size_t bi,
                             bool *done)
{
    const struct kiln_node *p = &g->nodes[pi], *bn = &g->nodes[bi];
    bool mm = !strcmp(p->op_type, "MatMul");
    if (p->n_in < 2 || p->n_in > (mm ? 2u : 3u)) return KILN_OK;
    const struct kiln_tensor *w = fu_const_f32(o, g, p->inputs[1]);
    if (!w || w->rank != 2) return KILN_OK;
    if (mm) {
        kiln_dtype dt;
        int rank;
        const struct kiln_dim *dims;
        if (!kiln_opt_tensor_type(g, p->inputs[0], &dt, &rank, &dims) || rank != 2) return KILN_OK;
    }
    bool tB = !mm && kiln_opt_attr_i(p, "transB", 0) != 0;
    size_t N = (size_t)w->dims[tB ? 0 : 1], K = (size_t)w->dims[tB ? 1 : 0];
    float beta = mm ? 1.0f : kiln_opt_attr_f(p, "beta", 1.0f);
    const struct kiln_tensor *c = NULL;
    if (!mm && p->n_in == 3 && p->inputs[2][0]) {
        c = fu_const_f32(o, g, p->inputs[2]);
        size_t cn = c ? kiln_tensor_numel(c) : 0;
        if (!c || !(cn == 1 || (cn == N && c->dims[c->rank - 1] == (int64_t)N && c->rank <= 2)))
            return KILN_OK;
    }
    bool nomem;
    float *st = bn_affine(o, g, bn, N, &nomem);
    if (!st) return nomem ? KILN_E_NOMEM : KILN_OK;
    float *nw = fu_copy_f32(o, w), *nc = kiln_malloc((N ? N : 1) * sizeof *nc);
    kiln_status rc = KILN_OK;
    if (!nw || !nc) {
        rc = fu_nomem(o);
        goto out;
    }
    for (size_t n = 0; n < N; n++)
        for (size_t k = 0; k < K; k++) nw[tB ? n * K + k : k * N + n] *= st[n];
    for (size_t n = 0; n < N; n++) {
        float cv = c ? ((const float *)c->data)[kiln_tensor_numel(c) == 1 ? 0 : n] * beta : 0.0f;
        nc[n] = cv * st[n] + st[N + n];
    }
    const char *wn, *cname;
    int64_t cd[1] = {(int64_t)N};
    rc = fu_add_f32(o, g, p->inputs[1], 2, w->dims, nw, &wn);
    if (!rc) rc = fu_add_f32(o, g, "bias", 1, cd, nc, &cname);
    if (!rc) {
        const char *ins[3] = {p->inputs[0], wn, cname}, *outs[1] = {bn->outputs[0]};
        size_t nodes[2] = {pi, bi};
        struct kiln_node *nn;
        rc = fu_replace(o, g, nodes, 2, "Gemm", "", 3, ins, 1, outs, mm ? NULL : p, &nn);
        if (!rc) rc = kiln_opt_set_attr_f(o, nn, "beta", 1.0f);
        *done = rc == KILN_OK;
    }
out:
    kiln_free(st);
    kiln_free(nw);
    kiln_free(nc);
    return rc;
}

static kiln_status run(struct kiln_opt *o, struct kiln_graph *g, bool *changed)
{
    for (size_t i = 0; i < g->n_nodes; i++) {
        if (!kiln_opt_is_op(o, g, i, "BatchNormalization")) continue;
        const struct kiln_node *bn = &g->nodes[i];
        if (bn->n_in != 5 || !bn_inference(g, bn)) continue;
        int pi = kiln_opt_input_from(o, g, i, 0, NULL);
        if (pi < 0 || !kiln_opt_live(o, g, (size_t)pi)) continue;
        const struct kiln_node *p = &g->nodes[pi];
        if (p->domain && p->domain[0]) continue;
        if (p->n_out != 1 || kiln_opt_has_subgraph(p)) continue;
        bool done = false;
        if (!strcmp(p->op_type, "Conv") || !strcmp(p->op_type, "ConvTranspose"))
            KILN_TRY(fold_conv(o, g, (size_t)pi, i, &done));
        else if (!strcmp(p->op_type, "Gemm") || !strcmp(p->op_type, "MatMul"))
            KILN_TRY(fold_gemm(o, g, (size_t)pi, i, &done));
        if (done) *changed = true;
    }
    return KILN_OK;
}

const struct kiln_pass kiln_pass_fuse_bn = {
    .name = "fuse_bn",
    .level = KILN_OPT_EXTENDED,
    .doc = "folds inference BatchNormalization into the Conv/ConvTranspose/Gemm/MatMul before it",
    .run = run,
};
