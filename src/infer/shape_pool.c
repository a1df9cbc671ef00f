/* shape_pool.c: shape and type rules for pooling: MaxPool (1, 8, 10, 11, 12, 22),
 * AveragePool (1, 7, 10, 11, 19, 22), LpPool (1, 2, 11, 18, 22), GlobalMaxPool,
 * GlobalAveragePool, GlobalLpPool and MaxUnpool (9, 11, 22).
 *
 * Windowed pools: Y [N, C, o...] with o from shape_nn.h's kiln_infer_window_out (auto_pad,
 * strides, dilations, pads, ceil_mode with the drop of a last window that would start past
 * the input, as src/cpu/ops/pool.c does). MaxPool's second output (Indices, opset 8+) has
 * Y's shape and element type int64. Global pools: [N, C, 1, ..., 1].
 * MaxUnpool: Y's shape is the output_shape input when its values are known (a constant or
 * shape arithmetic), else [N, C, (in - 1) * s + k - pb - pe ...] (the spec's default size).
 */
#include "infer/shape_nn.h"

/* X's shape as [N, C, spatial...]: false (with a problem) for rank < 3; *rank -1 when
 * unknown. */
static bool pool_x(struct kiln_ictx *c, int *rank, const struct kiln_dim **x)
{
    *rank = -1;
    *x = NULL;
    if (kiln_infer_shape_of(c, 0, rank, x) && *rank < 3) {
        kiln_ic_problem(c, "input X has %d dims; expected at least 3 (N, C, spatial...)", *rank);
        return false;
    }
    return true;
}

static kiln_status pool_infer(struct kiln_ictx *c)
{
    kiln_dtype dt = kiln_ic_in_dtype(c, 0);
    int rank;
    const struct kiln_dim *x;
    if (!pool_x(c, &rank, &x)) return KILN_OK;
    bool indices = !strcmp(c->node->op_type, "MaxPool") && c->n_out > 1;
    if (rank < 0) {
        const int64_t *ks;
        size_t n = kiln_ic_attr_ints(c, "kernel_shape", &ks);
        if (n) rank = (int)n + 2; /* the rank follows from the kernel's */
    }
    if (rank < 0) {
        KILN_TRY(kiln_ic_set_tensor(c, 0, dt, -1, NULL));
        return indices ? kiln_ic_set_tensor(c, 1, KILN_DTYPE_I64, -1, NULL) : KILN_OK;
    }
    struct kiln_window w;
    if (!kiln_infer_window(c, rank - 2, NULL, &w)) return KILN_OK;
    struct kiln_dim y[KILN_MAX_RANK];
    y[0] = x ? x[0] : kiln_dim_unknown();
    y[1] = x ? x[1] : kiln_dim_unknown();
    for (int i = 0; i < rank - 2; i++)
        y[2 + i] = kiln_infer_window_out(c, &w, i, x ? x[2 + i] : kiln_dim_unknown());
    KILN_TRY(kiln_ic_set_tensor(c, 0, dt, rank, y));
    return indices ? kiln_ic_set_tensor(c, 1, KILN_DTYPE_I64, rank, y) : KILN_OK;
}

/* kiln.MaxPoolNhwc / AveragePoolNhwc: X [N, H, W, C] -> Y [N, OH, OW, C], OH and OW by the
 * window rule of MaxPool / AveragePool. */
kiln_status kiln_infer_pool_nhwc(struct kiln_ictx *c)
{
    kiln_dtype dt = kiln_ic_in_dtype(c, 0);
    int rank;
    const struct kiln_dim *x;
    if (!pool_x(c, &rank, &x)) return KILN_OK;
    if (rank >= 0 && rank != 4) {
        kiln_ic_problem(c, "input X has %d dims; expected 4 (N, H, W, C)", rank);
        return KILN_OK;
    }
    struct kiln_window w;
    if (!kiln_infer_window(c, 2, NULL, &w)) return KILN_OK;
    struct kiln_dim y[4];
    for (int i = 0; i < 4; i++) y[i] = x ? x[i] : kiln_dim_unknown();
    for (int i = 0; i < 2; i++) y[1 + i] = kiln_infer_window_out(c, &w, i, y[1 + i]);
    return kiln_ic_set_tensor(c, 0, dt, 4, y);
}

static kiln_status global_pool_infer(struct kiln_ictx *c)
{
    kiln_dtype dt = kiln_ic_in_dtype(c, 0);
    int rank;
    const struct kiln_dim *x;
    if (!pool_x(c, &rank, &x)) return KILN_OK;
    if (rank < 0) return kiln_ic_set_tensor(c, 0, dt, -1, NULL);
    struct kiln_dim y[KILN_MAX_RANK];
    y[0] = x[0];
    y[1] = x[1];
    for (int i = 2; i < rank; i++) y[i] = kiln_dim_int(1);
    return kiln_ic_set_tensor(c, 0, dt, rank, y);
}

static kiln_status maxunpool_infer(struct kiln_ictx *c)
{
    kiln_dtype dt = kiln_ic_in_dtype(c, 0);
    int rank, n;
    const struct kiln_dim *x, *os;
    if (!pool_x(c, &rank, &x)) return KILN_OK;
    if (c->n_in > 2 && kiln_ic_in(c, 2)) {
        if (kiln_ic_vals(c, 2, &n, &os)) {
            if (rank >= 0 && n != rank) {
                kiln_ic_problem(c, "output_shape has %d values; X has %d dims", n, rank);
                return KILN_OK;
            }
            return kiln_ic_set_tensor(c, 0, dt, n, os);
        }
        int r;
        const struct kiln_dim *d;
        if (rank < 0 && kiln_infer_shape_of(c, 2, &r, &d) && r == 1 && kiln_dim_known(d[0]))
            rank = (int)d[0].value;
        if (rank < 0 || rank > KILN_MAX_RANK) return kiln_ic_set_tensor(c, 0, dt, -1, NULL);
        struct kiln_dim y[KILN_MAX_RANK];
        for (int i = 0; i < rank; i++) y[i] = i < 2 && x ? x[i] : kiln_dim_unknown();
        return kiln_ic_set_tensor(c, 0, dt, rank, y);
    }
    if (rank < 0) return kiln_ic_set_tensor(c, 0, dt, -1, NULL);
    struct kiln_window w;
    if (!kiln_infer_window(c, rank - 2, NULL, &w)) return KILN_OK;
    struct kiln_dim y[KILN_MAX_RANK];
    y[0] = x[0];
    y[1] = x[1];
    for (int i = 0; i < rank - 2; i++) {
        struct kiln_dim t = kiln_sym_mul(c->inf, x[2 + i], kiln_dim_int(w.s[i]));
        y[2 + i] = kiln_infer_dim_plus(c->inf, t, w.k[i] - w.pb[i] - w.pe[i] - w.s[i]);
    }
    return kiln_ic_set_tensor(c, 0, dt, rank, y);
}

const struct kiln_infer_op kiln_infer_ops_pool[] = {
    {"MaxPool", "", 1, 0, pool_infer},
    {"AveragePool", "", 1, 0, pool_infer},
    {"LpPool", "", 1, 0, pool_infer},
    {"GlobalMaxPool", "", 1, 0, global_pool_infer},
    {"GlobalAveragePool", "", 1, 0, global_pool_infer},
    {"GlobalLpPool", "", 1, 0, global_pool_infer},
    {"MaxUnpool", "", 1, 0, maxunpool_infer}, /* the op exists from 9; the CPU table says 1 */
    {0},
};
