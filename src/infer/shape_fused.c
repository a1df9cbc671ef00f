/* shape_fused.c: shape and type rules for kiln's own ops (domain "kiln", version 1; see
 * docs/fused-ops.md and src/cpu/ops/fused.c).
 *
 * FusedConv, FusedConvTranspose, FusedGemm and FusedMatMul have the shape of Conv-11,
 * ConvTranspose-11, Gemm-13 and MatMul-13 on their first inputs (the bias and residual do
 * not change it); Gelu, ChannelShuffle and ScaleBias keep their input's type, ShuffleSplit's
 * two outputs have its first input's; MaxPoolNhwc / AveragePoolNhwc are the 2-D pool rule
 * channels-last (shape_pool.c); LayerNormalization and RMSNormalization are the rules of
 * LayerNormalization-17 and RMSNormalization-23. Attention: Y has Q's shape with V's last dim; present_key and
 * present_value are [B, H, P + S, D] (P = past length, 0 without a past; D = hidden / H).
 */
#include <string.h>
#include "infer/shape_nn.h"
#include "infer/rule_util.h"

/* Runs the rule of standard op `op` at `version` on the first n_in inputs of c's node. */
static kiln_status as_op(struct kiln_ictx *c, const char *op, int version, size_t n_in)
{
    const struct kiln_infer_op *r = kiln_infer_find_op("", op, version);
    if (!r) return KILN_OK;
    struct kiln_ictx cc = *c;
    cc.opset = version;
    if (cc.n_in > n_in) cc.n_in = n_in;
    return r->infer(&cc);
}

static kiln_status fused_conv_infer(struct kiln_ictx *c) { return as_op(c, "Conv", 11, 3); }
static kiln_status fused_convt_infer(struct kiln_ictx *c) { return as_op(c, "ConvTranspose", 11, 3); }
static kiln_status fused_gemm_infer(struct kiln_ictx *c) { return as_op(c, "Gemm", 13, 3); }
static kiln_status fused_matmul_infer(struct kiln_ictx *c) { return as_op(c, "MatMul", 13, 2); }
/* kiln.DynQuantMatMul(x, W, ...): float32, x's shape with the last dim W's columns. */
static kiln_status dynquant_matmul_infer(struct kiln_ictx *c)
{
    kiln_dtype dx, dw;
    int rx, rw;
    const struct kiln_dim *x, *w;
    if (!kiln_ic_in_tensor(c, 0, &dx, &rx, &x) || !kiln_ic_in_tensor(c, 1, &dw, &rw, &w) || rx < 1 || rw != 2)
        return kiln_ic_set_tensor(c, 0, KILN_DTYPE_F32, -1, NULL);
    struct kiln_dim d[KILN_MAX_RANK];
    memcpy(d, x, sizeof *d * (size_t)rx);
    d[rx - 1] = w[1];
    return kiln_ic_set_tensor(c, 0, KILN_DTYPE_F32, rx, d);
}
/* kiln.QConv(X, W, ...): ConvNhwc's shape on X and W; Y has X's type (uint8 or int8). */
static kiln_status qconv_infer(struct kiln_ictx *c)
{
    struct kiln_ictx cc = *c;
    if (cc.n_in > 2) cc.n_in = 2;
    return kiln_infer_conv_nhwc(&cc);
}
/* kiln.QuantizeU8(x, scale, zero_point): uint8 of x's shape ([N, H, W, C] for a 4-D
 * [N, C, H, W] x with nhwc 1). */
static kiln_status quantize_u8_infer(struct kiln_ictx *c)
{
    kiln_dtype dt;
    int r;
    const struct kiln_dim *x;
    if (!kiln_ic_attr_i(c, "nhwc", 0)) return ru_like(c, 0, 0, KILN_DTYPE_U8);
    if (!kiln_ic_in_tensor(c, 0, &dt, &r, &x) || r != 4) return kiln_ic_set_tensor(c, 0, KILN_DTYPE_U8, 4, NULL);
    struct kiln_dim y[4] = {x[0], x[2], x[3], x[1]};
    return kiln_ic_set_tensor(c, 0, KILN_DTYPE_U8, 4, y);
}
/* kiln.DequantizeU8(x, scale, zero_point): float32 of x's shape. */
static kiln_status dequantize_u8_infer(struct kiln_ictx *c) { return ru_like(c, 0, 0, KILN_DTYPE_F32); }
/* kiln.DequantMatMul(x, W, ...): MatMul's shape, x's type (float32). */
static kiln_status dequant_matmul_infer(struct kiln_ictx *c) { return as_op(c, "MatMul", 13, 2); }
/* kiln.DynQuantConv(x, W, ...): Conv's shape, x's type (float32). */
static kiln_status dynquant_conv_infer(struct kiln_ictx *c) { return as_op(c, "Conv", 11, 2); }
static kiln_status layernorm_infer(struct kiln_ictx *c)
{
    return as_op(c, "LayerNormalization", 17, 3);
}
static kiln_status rmsnorm_infer(struct kiln_ictx *c) { return as_op(c, "RMSNormalization", 23, 2); }
static kiln_status gelu_infer(struct kiln_ictx *c) { return ru_like(c, 0, 0, KILN_DTYPE_UNDEFINED); }
static kiln_status shuffle_split_infer(struct kiln_ictx *c)
{
    KILN_TRY(ru_like(c, 0, 0, KILN_DTYPE_UNDEFINED));
    return c->n_out > 1 ? ru_like(c, 1, 0, KILN_DTYPE_UNDEFINED) : KILN_OK;
}

/* ConcatScaleBias (S [C], B [C], X0, X1, ...): X0's shape with the last dim C (the sum of
 * the inputs' last dims, which S's length is). */
static kiln_status concat_sb_infer(struct kiln_ictx *c)
{
    int rx, rs;
    const struct kiln_dim *x, *s;
    kiln_dtype dt = kiln_ic_in_dtype(c, 2);
    if (c->n_in < 3 || !ru_shape(c, 2, &rx, &x) || rx < 1 || rx > KILN_MAX_RANK) return ru_like(c, 0, 2, dt);
    struct kiln_dim y[KILN_MAX_RANK];
    memcpy(y, x, (size_t)rx * sizeof *y);
    y[rx - 1] = ru_shape(c, 0, &rs, &s) && rs == 1 ? s[0] : kiln_dim_unknown();
    return kiln_ic_set_tensor(c, 0, dt, rx, y);
}

static kiln_status attention_infer(struct kiln_ictx *c)
{
    int rq, rv, rk, rp;
    const struct kiln_dim *q, *v, *k, *p;
    kiln_dtype dt = kiln_ic_in_dtype(c, 0);
    if (!ru_shape(c, 0, &rq, &q) || rq != 3) return ru_like(c, 0, 0, dt);
    struct kiln_dim y[3] = {q[0], q[1], q[2]};
    if (ru_shape(c, 2, &rv, &v) && rv == 3) y[2] = v[2];
    KILN_TRY(kiln_ic_set_tensor(c, 0, dt, 3, y));
    int64_t H = kiln_ic_attr_i(c, "num_heads", 0);
    if (H < 1 || c->n_out < 2) return KILN_OK;
    for (size_t o = 1; o < 3 && o < c->n_out; o++) {
        if (!ru_shape(c, o, &rk, &k) || rk != 3) continue;
        struct kiln_dim d[4] = {k[0], kiln_dim_int(H), k[1], kiln_dim_unknown()};
        if (kiln_dim_known(k[2]) && k[2].value % H == 0) d[3] = kiln_dim_int(k[2].value / H);
        if (c->n_in > 3 + o && ru_shape(c, 3 + o, &rp, &p) && rp == 4) {
            d[2] = kiln_sym_add(c->inf, p[2], k[1]);
            d[3] = p[3];
        }
        KILN_TRY(kiln_ic_set_tensor(c, o, dt, 4, d));
    }
    return KILN_OK;
}

kiln_status kiln_infer_mbconv(struct kiln_ictx *c); /* shape_mbconv.c */

const struct kiln_infer_op kiln_infer_ops_fused[] = {
    {"ConvNhwc", "kiln", 1, 0, kiln_infer_conv_nhwc},
    {"ConcatScaleBias", "kiln", 1, 0, concat_sb_infer},
    {"MaxPoolNhwc", "kiln", 1, 0, kiln_infer_pool_nhwc},
    {"AveragePoolNhwc", "kiln", 1, 0, kiln_infer_pool_nhwc},
    {"ChannelShuffle", "kiln", 1, 0, gelu_infer},
    {"ScaleBias", "kiln", 1, 0, gelu_infer},
    {"ShuffleSplit", "kiln", 1, 0, shuffle_split_infer},
    {"SqueezeExcite", "kiln", 1, 0, gelu_infer},
    {"MBConv", "kiln", 1, 0, kiln_infer_mbconv}, /* shape_mbconv.c */
    {"DynQuantMatMul", "kiln", 1, 0, dynquant_matmul_infer},
    {"QConv", "kiln", 1, 0, qconv_infer},
    {"QAdd", "kiln", 1, 0, gelu_infer},
    {"QMaxPool", "kiln", 1, 0, kiln_infer_pool_nhwc},
    {"QuantizeU8", "kiln", 1, 0, quantize_u8_infer},
    {"DequantizeU8", "kiln", 1, 0, dequantize_u8_infer},
    {"DynQuantConv", "kiln", 1, 0, dynquant_conv_infer},
    {"DequantMatMul", "kiln", 1, 0, dequant_matmul_infer},
    {"FusedConv", "kiln", 1, 0, fused_conv_infer},
    {"FusedConvTranspose", "kiln", 1, 0, fused_convt_infer},
    {"FusedGemm", "kiln", 1, 0, fused_gemm_infer},
    {"FusedMatMul", "kiln", 1, 0, fused_matmul_infer},
    {"Gelu", "kiln", 1, 0, gelu_infer},
    {"LayerNormalization", "kiln", 1, 0, layernorm_infer},
    {"RMSNormalization", "kiln", 1, 0, rmsnorm_infer},
    {"Attention", "kiln", 1, 0, attention_infer},
    {0},
};
