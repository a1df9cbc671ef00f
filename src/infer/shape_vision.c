/* shape_vision.c: shape and type rules for the vision ops of src/cpu/ops/vision.c and
 * image.c: AffineGrid (20), RoiAlign (10, 16, 22), MaxRoiPool (1, 22), ImageDecoder (20).
 *
 * AffineGrid: theta [N, 2, 3] with size [N, C, H, W] gives grid [N, H, W, 2]; theta
 *   [N, 3, 4] with size [N, C, D, H, W] gives [N, D, H, W, 3]; sizes from the size input's
 *   values (a constant or shape arithmetic), theta's element type.
 * RoiAlign: [num_rois, C, output_height, output_width] (defaults 1), X's element type.
 * MaxRoiPool: [num_rois, C, pooled_shape[0], pooled_shape[1]].
 * ImageDecoder: uint8 [H, W, 3] (RGB, BGR) or [H, W, 1] (Grayscale); H and W come from the
 *   encoded data, so they are fresh data-dependent symbols.
 */
#include "infer/shape_nn.h"

static kiln_status affine_grid_infer(struct kiln_ictx *c)
{
    kiln_dtype dt = kiln_ic_in_dtype(c, 0);
    int rt = -1, n = -1, rs;
    const struct kiln_dim *th = NULL, *sz = NULL, *sd;
    struct kiln_dim u = kiln_dim_unknown();
    kiln_infer_shape_of(c, 0, &rt, &th);
    if (th && rt != 3) {
        kiln_ic_problem(c, "input theta has %d dims; expected 3", rt);
        return KILN_OK;
    }
    if (!kiln_ic_vals(c, 1, &n, &sz)) {
        n = -1;
        if (kiln_infer_shape_of(c, 1, &rs, &sd) && rs == 1 && kiln_dim_known(sd[0])) n = (int)sd[0].value;
    }
    if (n < 0 && th && kiln_dim_known(th[1])) n = th[1].value == 2 ? 4 : th[1].value == 3 ? 5 : -1;
    if (n < 0) return kiln_ic_set_tensor(c, 0, dt, -1, NULL);
    if (n != 4 && n != 5) {
        kiln_ic_problem(c, "input size has %d values; expected 4 (N, C, H, W) or 5 (N, C, D, H, W)", n);
        return KILN_OK;
    }
    struct kiln_dim g[5];
    g[0] = sz ? sz[0] : th ? th[0] : u;
    if (sz && th && kiln_dim_ne(sz[0], th[0])) {
        kiln_ic_problem(c, "size gives N = %lld but theta has %lld", (long long)sz[0].value,
                        (long long)th[0].value);
        return KILN_OK;
    }
    if (!kiln_dim_defined(g[0]) && th) g[0] = th[0];
    for (int i = 2; i < n; i++) g[i - 1] = sz ? sz[i] : u;
    g[n - 1] = kiln_dim_int(n - 2);
    return kiln_ic_set_tensor(c, 0, dt, n, g);
}

/* X [N, C, H, W] and rois [num_rois, cols]: the output [num_rois, C, oh, ow]. */
static kiln_status roi_common(struct kiln_ictx *c, struct kiln_dim oh, struct kiln_dim ow)
{
    kiln_dtype dt = kiln_ic_in_dtype(c, 0);
    int rx = -1, rr = -1;
    const struct kiln_dim *x = NULL, *r = NULL;
    struct kiln_dim u = kiln_dim_unknown();
    kiln_infer_shape_of(c, 0, &rx, &x);
    kiln_infer_shape_of(c, 1, &rr, &r);
    if ((x && rx != 4) || (r && rr != 2)) {
        kiln_ic_problem(c, "inputs X and rois have %d and %d dims; expected 4 and 2", rx, rr);
        return KILN_OK;
    }
    struct kiln_dim nr = r ? r[0] : u;
    int rb;
    const struct kiln_dim *bi;
    if (c->n_in > 2 && kiln_infer_shape_of(c, 2, &rb, &bi) && rb == 1) {
        if (kiln_dim_ne(bi[0], nr)) {
            kiln_ic_problem(c, "batch_indices has %lld entries but rois has %lld", (long long)bi[0].value,
                            (long long)nr.value);
            return KILN_OK;
        }
        if (!kiln_dim_defined(nr)) nr = bi[0];
    }
    struct kiln_dim y[4] = {nr, x ? x[1] : u, oh, ow};
    return kiln_ic_set_tensor(c, 0, dt, 4, y);
}

static kiln_status roi_align_infer(struct kiln_ictx *c)
{
    return roi_common(c, kiln_dim_int(kiln_ic_attr_i(c, "output_height", 1)),
                      kiln_dim_int(kiln_ic_attr_i(c, "output_width", 1)));
}

static kiln_status max_roi_pool_infer(struct kiln_ictx *c)
{
    const int64_t *ps;
    if (kiln_ic_attr_ints(c, "pooled_shape", &ps) != 2 || ps[0] < 0 || ps[1] < 0) {
        kiln_ic_problem(c, "attribute pooled_shape must hold 2 sizes");
        return KILN_OK;
    }
    return roi_common(c, kiln_dim_int(ps[0]), kiln_dim_int(ps[1]));
}

static kiln_status image_decoder_infer(struct kiln_ictx *c)
{
    const char *pf = kiln_ic_attr_s(c, "pixel_format", "RGB");
    struct kiln_dim y[3] = {kiln_sym_fresh(c->inf, "ImageDecoder_h"),
                            kiln_sym_fresh(c->inf, "ImageDecoder_w"),
                            kiln_dim_int(!strcmp(pf, "Grayscale") ? 1 : 3)};
    KILN_TRY(kiln_ic_set_tensor(c, 0, KILN_DTYPE_U8, 3, y));
    kiln_ic_data_dependent(c, 0);
    return KILN_OK;
}

const struct kiln_infer_op kiln_infer_ops_vision[] = {
    {"AffineGrid", "", 20, 0, affine_grid_infer},
    {"RoiAlign", "", 10, 0, roi_align_infer},
    {"MaxRoiPool", "", 1, 0, max_roi_pool_infer},
    {"ImageDecoder", "", 20, 0, image_decoder_infer},
    {0},
};
