/* shape_conv.c: shape and type rules for the convolutions: Conv (1, 11, 22), ConvTranspose
 * (1, 11, 22), DeformConv (19, 22) and Col2Im (18).
 *
 * Conv / DeformConv: Y [N, M, o...] with M = W[0] and, per spatial dim, o = ceil(in / s) for
 * auto_pad SAME_*, else floor((in + pb + pe - dk) / s) + 1 with dk = (k - 1) * d + 1 (VALID:
 * pads 0); k from kernel_shape, else from W's dims. Symbolic in gives a symbolic o.
 * ConvTranspose: Y [N, W[1] * group, o...] with o = output_shape[i] when given (spatial
 * values, or N and C first as some exporters write them), in * s for SAME_*, else
 * s * (in - 1) + output_padding + dk - pb - pe (src/cpu/ops/conv.c computes the same).
 * Contradictions reported: ranks of X and W, X's channels vs W[1] * group (Conv) or W[0]
 * (ConvTranspose), group not dividing them, bias length vs M.
 * The element type is X's (W's when X's is unknown).
 * Col2Im (18), im2col's inverse, lives here too: [N, C, image_shape...] with
 * C = input dim 1 / prod(block_shape).
 */
#include "infer/shape_nn.h"

/* Ranks of X (input 0) and W (input 1) agree; the common rank into *rank (-1 unknown). */
static bool conv_rank(struct kiln_ictx *c, int *rank, const struct kiln_dim **x, const struct kiln_dim **w)
{
    int rx = -1, rw = -1;
    *x = *w = NULL;
    if (kiln_infer_shape_of(c, 0, &rx, x) && rx < 3) {
        kiln_ic_problem(c, "input X has %d dims; expected at least 3 (N, C, spatial...)", rx);
        return false;
    }
    if (kiln_infer_shape_of(c, 1, &rw, w) && rw < 3) {
        kiln_ic_problem(c, "input W has %d dims; expected at least 3", rw);
        return false;
    }
    if (rx >= 0 && rw >= 0 && rx != rw) {
        kiln_ic_problem(c, "input X has %d dims but W has %d; expected the same", rx, rw);
        return false;
    }
    *rank = rx >= 0 ? rx : rw;
    return true;
}

/* nhwc: Y is channels-last ([N, spatial..., C], kiln.ConvNhwc), and so is X unless the node
 * says x_nchw 1 (the first convolution reading the planar image itself); W stays [M, C/g, k...]. */
static kiln_status conv_common(struct kiln_ictx *c, bool transpose, bool nhwc)
{
    static const size_t dt_in[] = {0, 1};
    kiln_dtype dt = kiln_infer_dtype_of(c, 2, dt_in);
    int rank;
    const struct kiln_dim *x, *w;
    if (!conv_rank(c, &rank, &x, &w)) return KILN_OK;
    struct kiln_dim xt[KILN_MAX_RANK];
    if (nhwc && x && !kiln_ic_attr_i(c, "x_nchw", 0)) { /* read X as [N, C, spatial...] */
        xt[0] = x[0];
        xt[1] = x[rank - 1];
        for (int i = 2; i < rank; i++) xt[i] = x[i - 1];
        x = xt;
    }
    if (rank < 0) return kiln_ic_set_tensor(c, 0, dt, -1, NULL);
    int nd = rank - 2;
    int64_t group;
    struct kiln_window win;
    if (!kiln_infer_conv_window(c, nd, w, &group, &win)) return KILN_OK;

    struct kiln_dim y[KILN_MAX_RANK];
    struct kiln_infer *inf = c->inf;
    y[0] = x ? x[0] : kiln_dim_unknown();
    struct kiln_dim cx = x ? x[1] : kiln_dim_unknown();
    if (!transpose) {
        y[1] = w ? w[0] : kiln_dim_unknown();
        if (w && kiln_dim_known(cx) && kiln_dim_known(w[1]) && cx.value != w[1].value * group) {
            kiln_ic_problem(c, "input X has %lld channels but W[1] * group is %lld * %lld",
                            (long long)cx.value, (long long)w[1].value, (long long)group);
            return KILN_OK;
        }
    } else {
        y[1] = w ? kiln_sym_mul(inf, w[1], kiln_dim_int(group)) : kiln_dim_unknown();
        if (w && kiln_dim_known(cx) && kiln_dim_known(w[0]) && cx.value != w[0].value) {
            kiln_ic_problem(c, "input X has %lld channels but W[0] is %lld", (long long)cx.value,
                            (long long)w[0].value);
            return KILN_OK;
        }
    }
    if (kiln_dim_known(y[1]) && y[1].value % group) {
        kiln_ic_problem(c, "%lld output channels are not a multiple of group %lld", (long long)y[1].value,
                        (long long)group);
        return KILN_OK;
    }
    if (kiln_dim_known(cx) && cx.value % group) {
        kiln_ic_problem(c, "%lld input channels are not a multiple of group %lld", (long long)cx.value,
                        (long long)group);
        return KILN_OK;
    }
    /* Bias [M]. */
    int rb;
    const struct kiln_dim *b;
    size_t bias = transpose || strcmp(c->node->op_type, "DeformConv") ? 2 : 3;
    if (bias < c->n_in && kiln_infer_shape_of(c, bias, &rb, &b)) {
        if (rb != 1)
            kiln_ic_problem(c, "input B has %d dims; expected 1", rb);
        else if (kiln_dim_ne(b[0], y[1]))
            kiln_ic_problem(c, "input B has %lld values; expected %lld (output channels)",
                            (long long)b[0].value, (long long)y[1].value);
    }

    const int64_t *os = NULL;
    size_t nos = transpose ? kiln_ic_attr_ints(c, "output_shape", &os) : 0;
    if (nos == (size_t)nd + 2) os += 2, nos -= 2;
    if (nos && nos != (size_t)nd) {
        kiln_ic_problem(c, "output_shape has %zu values; expected %d", nos, nd);
        return KILN_OK;
    }
    const int64_t *op = NULL;
    size_t nop = transpose ? kiln_ic_attr_ints(c, "output_padding", &op) : 0;
    if (nop && nop != (size_t)nd) {
        kiln_ic_problem(c, "output_padding has %zu values; expected %d", nop, nd);
        return KILN_OK;
    }
    for (size_t i = 0; i < nos + nop; i++) {
        int64_t v = i < nos ? os[i] : op[i - nos];
        if (v < 0 || v > (INT64_C(1) << 40)) {
            kiln_ic_problem(c, "%s value %lld out of range", i < nos ? "output_shape" : "output_padding",
                            (long long)v);
            return KILN_OK;
        }
    }
    for (int i = 0; i < nd; i++) {
        struct kiln_dim in = x ? x[2 + i] : kiln_dim_unknown();
        if (!transpose) {
            y[2 + i] = kiln_infer_window_out(c, &win, i, in);
        } else if (nos) {
            y[2 + i] = kiln_dim_int(os[i]);
        } else if (win.ap == KILN_AUTOPAD_SAME_UPPER || win.ap == KILN_AUTOPAD_SAME_LOWER) {
            y[2 + i] = kiln_sym_mul(inf, in, kiln_dim_int(win.s[i]));
        } else if (win.k[i] < 0) {
            y[2 + i] = kiln_dim_unknown();
        } else {
            int64_t dk = (win.k[i] - 1) * win.d[i] + 1;
            int64_t add = (nop ? op[i] : 0) + dk - win.pb[i] - win.pe[i] - win.s[i];
            y[2 + i] = kiln_infer_dim_plus(inf, kiln_sym_mul(inf, in, kiln_dim_int(win.s[i])), add);
        }
    }
    if (nhwc) { /* [N, M, spatial...] -> [N, spatial..., M] */
        struct kiln_dim m = y[1];
        for (int i = 1; i < rank - 1; i++) y[i] = y[i + 1];
        y[rank - 1] = m;
    }
    return kiln_ic_set_tensor(c, 0, dt, rank, y);
}

/* Col2Im (18): input [N, C * prod(block_shape), L] with image_shape and block_shape (n
 * values each) gives [N, C, image_shape...]. */
static kiln_status col2im_infer(struct kiln_ictx *c)
{
    kiln_dtype dt = kiln_ic_in_dtype(c, 0);
    int rx = -1, n_img = -1, n_blk = -1, rs;
    const struct kiln_dim *x = NULL, *img = NULL, *blk = NULL, *sd;
    struct kiln_dim u = kiln_dim_unknown();
    if (kiln_infer_shape_of(c, 0, &rx, &x) && rx != 3) {
        kiln_ic_problem(c, "input has %d dims; expected 3 (N, C * prod(block_shape), L)", rx);
        return KILN_OK;
    }
    if (!kiln_ic_vals(c, 1, &n_img, &img)) {
        img = NULL;
        n_img =
            kiln_infer_shape_of(c, 1, &rs, &sd) && rs == 1 && kiln_dim_known(sd[0]) ? (int)sd[0].value : -1;
    }
    if (!kiln_ic_vals(c, 2, &n_blk, &blk)) blk = NULL;
    if (n_img < 0 && blk) n_img = n_blk;
    if (n_img < 0 || n_img + 2 > KILN_MAX_RANK) return kiln_ic_set_tensor(c, 0, dt, -1, NULL);
    if (blk && n_blk != n_img) {
        kiln_ic_problem(c, "image_shape has %d values but block_shape %d", n_img, n_blk);
        return KILN_OK;
    }
    struct kiln_dim y[KILN_MAX_RANK];
    y[0] = x ? x[0] : u;
    y[1] = u;
    if (x && blk) {
        struct kiln_dim prod = kiln_dim_int(1);
        for (int i = 0; i < n_blk; i++) prod = kiln_sym_mul(c->inf, prod, blk[i]);
        if (kiln_dim_known(prod) && kiln_dim_known(x[1]) && (prod.value == 0 || x[1].value % prod.value)) {
            kiln_ic_problem(c, "input dim 1 (%lld) is not a multiple of prod(block_shape) = %lld",
                            (long long)x[1].value, (long long)prod.value);
            return KILN_OK;
        }
        if (kiln_dim_known(prod) && prod.value > 0) y[1] = kiln_sym_floordiv(c->inf, x[1], prod);
    }
    for (int i = 0; i < n_img; i++) y[2 + i] = img ? img[i] : u;
    return kiln_ic_set_tensor(c, 0, dt, n_img + 2, y);
}

static kiln_status conv_infer(struct kiln_ictx *c)
{
    return conv_common(c, false, false);
}
kiln_status kiln_infer_conv_nhwc(struct kiln_ictx *c) { return conv_common(c, false, true); }

static kiln_status convt_infer(struct kiln_ictx *c)
{
    return conv_common(c, true, false);
}

const struct kiln_infer_op kiln_infer_ops_conv[] = {
    {"Conv", "", 1, 0, conv_infer},
    {"ConvTranspose", "", 1, 0, convt_infer},
    {"DeformConv", "", 19, 0, conv_infer},
    {"Col2Im", "", 18, 0, col2im_infer},
    {0},
};
