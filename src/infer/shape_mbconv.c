/* shape_mbconv.c: the shape rule of kiln.MBConv (src/cpu/ops/mbconv.c, docs/fused-ops.md):
 * Y [N, OH, OW, M] from X [N, H, W, C], the depthwise W2 [E, 1, kh, kw] with the node's
 * strides and pads (ConvNhwc's window rule), M = W3's dim 0 (E without W3). Y has X's type.
 */
#include "infer/rule_util.h"
#include "infer/shape_nn.h"

kiln_status kiln_infer_mbconv(struct kiln_ictx *c);

kiln_status kiln_infer_mbconv(struct kiln_ictx *c)
{
    kiln_dtype dt = kiln_ic_in_dtype(c, 0), d2, d3;
    int rx, r2, r3;
    const struct kiln_dim *x, *w2, *w3;
    if (!kiln_ic_in_tensor(c, 0, &dt, &rx, &x) || rx != 4 || !kiln_ic_in_tensor(c, 3, &d2, &r2, &w2) || r2 != 4)
        return kiln_ic_set_tensor(c, 0, dt, 4, NULL);
    int64_t ks[2] = {kiln_dim_known(w2[2]) ? w2[2].value : -1, kiln_dim_known(w2[3]) ? w2[3].value : -1};
    struct kiln_window win;
    if (!kiln_infer_window(c, 2, ks, &win)) return KILN_OK;
    struct kiln_dim y[4] = {x[0], kiln_infer_window_out(c, &win, 0, x[1]), kiln_infer_window_out(c, &win, 1, x[2]),
                            w2[0]};
    if (c->n_in > 5 && kiln_ic_in_tensor(c, 5, &d3, &r3, &w3) && r3 == 4) y[3] = w3[0];
    return kiln_ic_set_tensor(c, 0, dt, 4, y);
}
