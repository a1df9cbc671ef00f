/* shape_quant.c: shape-inference rules for src/cpu/ops/quant.c (family `quant`).
 *
 * QuantizeLinear (10..25): y has x's shape; its type is the zero point's when given, else
 *   `output_dtype` (21+) when set, else uint8 (output_dtype differing from the zero point's
 *   type is reported).
 * DequantizeLinear (10..25): y has x's shape; its type is `output_dtype` (23+) when set,
 *   else x_scale's (float32 only before 19). The zero point must have x's type.
 * DynamicQuantizeLinear (11): y uint8 with x's shape; y_scale float32 and y_zero_point uint8
 *   scalars.
 * MatMulInteger (10): int32, numpy matmul shape of A and B. QLinearMatMul (10, 21): the
 *   matmul shape, of y_zero_point's type (input 7).
 * ConvInteger (10): int32; QLinearConv (10): y_zero_point's type; both with the Conv shape
 *   [N, W[0], o...] of shape_nn.h's window arithmetic (x is input 0 / W input 1 for
 *   ConvInteger, x input 0 / w input 3 for QLinearConv).
 */
#include "infer/rule_util.h"
#include "infer/shape_nn.h"

static kiln_status rule_quantize(struct kiln_ictx *c)
{
    kiln_dtype dt = KILN_DTYPE_U8;
    int64_t attr = c->opset >= 21 ? kiln_ic_attr_i(c, "output_dtype", 0) : 0;
    if (attr && (attr != (int)attr || !kiln_dtype_valid((int)attr))) {
        kiln_ic_problem(c, "output_dtype %lld is not a data type", (long long)attr);
        return KILN_OK;
    }
    if (c->n_in > 2 && kiln_ic_in(c, 2)) {
        dt = kiln_ic_in_dtype(c, 2);
        if (attr && dt != KILN_DTYPE_UNDEFINED && dt != (kiln_dtype)attr) {
            kiln_ic_problem(c, "output_dtype %s differs from the zero point's type %s",
                            kiln_dtype_name((kiln_dtype)attr), kiln_dtype_name(dt));
            return KILN_OK;
        }
        if (dt == KILN_DTYPE_UNDEFINED && attr) dt = (kiln_dtype)attr;
    } else if (attr) {
        dt = (kiln_dtype)attr;
    }
    return ru_like_dt(c, 0, 0, dt);
}

static kiln_status rule_dequantize(struct kiln_ictx *c)
{
    kiln_dtype x = kiln_ic_in_dtype(c, 0), zp = c->n_in > 2 ? kiln_ic_in_dtype(c, 2) : KILN_DTYPE_UNDEFINED;
    if (x != KILN_DTYPE_UNDEFINED && zp != KILN_DTYPE_UNDEFINED && x != zp) {
        kiln_ic_problem(c, "zero point is %s; expected %s like x", kiln_dtype_name(zp), kiln_dtype_name(x));
        return KILN_OK;
    }
    int64_t attr = c->opset >= 23 ? kiln_ic_attr_i(c, "output_dtype", 0) : 0;
    kiln_dtype dt;
    if (attr) {
        if (attr != (int)attr || !kiln_dtype_valid((int)attr) || !kiln_dtype_is_float((kiln_dtype)attr)) {
            kiln_ic_problem(c, "output_dtype %lld is not a float type", (long long)attr);
            return KILN_OK;
        }
        dt = (kiln_dtype)attr;
    } else if (c->opset < 19) {
        dt = KILN_DTYPE_F32;
    } else {
        dt = kiln_ic_in_dtype(c, 1);
    }
    return ru_like_dt(c, 0, 0, dt);
}

static kiln_status rule_dynamic_quantize(struct kiln_ictx *c)
{
    KILN_TRY(ru_like(c, 0, 0, KILN_DTYPE_U8));
    if (c->n_out > 1) KILN_TRY(ru_set(c, 1, KILN_DTYPE_F32, 0, NULL, false));
    if (c->n_out > 2) KILN_TRY(ru_set(c, 2, KILN_DTYPE_U8, 0, NULL, false));
    return KILN_OK;
}

/* Output 0 of type dt with the matmul shape of inputs a and b. */
static kiln_status matmul_like(struct kiln_ictx *c, size_t a, size_t b, kiln_dtype dt)
{
    int ra, rb, r;
    const struct kiln_dim *da, *db;
    struct kiln_dim out[KILN_MAX_RANK];
    bool dd = false;
    if (!ru_shape(c, a, &ra, &da) || !ru_shape(c, b, &rb, &db))
        return dt == KILN_DTYPE_UNDEFINED ? KILN_OK : ru_set(c, 0, dt, -1, NULL, dd);
    if (ra > KILN_MAX_RANK || rb > KILN_MAX_RANK) return KILN_OK;
    if (!ru_matmul_shape(c, ra, da, rb, db, &r, out)) return KILN_OK;
    return ru_set(c, 0, dt, r, out, dd);
}

static kiln_status rule_matmul_integer(struct kiln_ictx *c)
{
    return matmul_like(c, 0, 1, KILN_DTYPE_I32);
}

static kiln_status rule_qlinear_matmul(struct kiln_ictx *c)
{
    return matmul_like(c, 0, 3, c->n_in > 7 ? kiln_ic_in_dtype(c, 7) : KILN_DTYPE_UNDEFINED);
}

/* Output 0 of type dt with the Conv shape of x (input xi) and w (input wi). */
static kiln_status conv_like(struct kiln_ictx *c, size_t xi, size_t wi, kiln_dtype dt)
{
    int rx = -1, rw = -1;
    const struct kiln_dim *x = NULL, *w = NULL;
    bool hx = ru_shape(c, xi, &rx, &x), hw = ru_shape(c, wi, &rw, &w);
    bool dd = false;
    if ((hx && rx < 3) || (hw && rw < 3) || (hx && hw && rx != rw)) {
        kiln_ic_problem(c, "x has %d dims and w %d; expected the same number, at least 3", rx, rw);
        return KILN_OK;
    }
    int rank = hx ? rx : rw;
    if (rank < 0) return dt == KILN_DTYPE_UNDEFINED ? KILN_OK : ru_set(c, 0, dt, -1, NULL, dd);
    int nd = rank - 2;
    int64_t group;
    struct kiln_window win;
    if (!kiln_infer_conv_window(c, nd, w, &group, &win)) return KILN_OK;
    if (x && w && kiln_dim_known(x[1]) && kiln_dim_known(w[1]) && x[1].value != w[1].value * group) {
        kiln_ic_problem(c, "x has %lld channels but w[1] * group is %lld * %lld", (long long)x[1].value,
                        (long long)w[1].value, (long long)group);
        return KILN_OK;
    }
    struct kiln_dim y[KILN_MAX_RANK];
    y[0] = x ? x[0] : kiln_dim_unknown();
    y[1] = w ? w[0] : kiln_dim_unknown();
    for (int i = 0; i < nd; i++)
        y[2 + i] = x ? kiln_infer_window_out(c, &win, i, x[2 + i]) : kiln_dim_unknown();
    return ru_set(c, 0, dt, rank, y, dd);
}

static kiln_status rule_conv_integer(struct kiln_ictx *c)
{
    return conv_like(c, 0, 1, KILN_DTYPE_I32);
}

static kiln_status rule_qlinear_conv(struct kiln_ictx *c)
{
    return conv_like(c, 0, 3, c->n_in > 7 ? kiln_ic_in_dtype(c, 7) : KILN_DTYPE_UNDEFINED);
}

const struct kiln_infer_op kiln_infer_ops_quant[] = {
    {"QuantizeLinear", "", 10, 0, rule_quantize},
    {"DequantizeLinear", "", 10, 0, rule_dequantize},
    {"DynamicQuantizeLinear", "", 11, 0, rule_dynamic_quantize},
    {"MatMulInteger", "", 10, 0, rule_matmul_integer},
    {"QLinearMatMul", "", 10, 0, rule_qlinear_matmul},
    {"ConvInteger", "", 10, 0, rule_conv_integer},
    {"QLinearConv", "", 10, 0, rule_qlinear_conv},
    {NULL, NULL, 0, 0, NULL},
};
