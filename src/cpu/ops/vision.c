/* src/cpu/ops/vision.c: ONNX AffineGrid (20), RoiAlign (10, 16, 22), MaxRoiPool (1, 22) and
 * DeformConv (19, 22).
 *
 * Semantics follow the ONNX operator docs and the reference implementation
 * (onnx/reference/ops/op_{affine_grid,roi_align,max_roi_pool,deform_conv}.py):
 *
 * AffineGrid: theta [N, 2, 3] with size (N, C, H, W), or theta [N, 3, 4] with size
 *   (N, C, D, H, W). grid[n, (d,) h, w] = theta[n] @ (x_w, y_h, (z_d,) 1), the base
 *   coordinates spanning [-1, 1]: align_corners = 1 gives -1 + 2i / (n - 1), else
 *   -1 + (2i + 1) / n (pixel centers). A size-1 axis gives 0 in both modes (torch's
 *   linspace_from_neg_one; the reference divides by zero there).
 * RoiAlign: X [N, C, H, W], rois [R, 4] (x1, y1, x2, y2), batch_indices [R]. Each output bin
 *   averages (mode "avg") or maxes ("max") a grid of bilinear samples, sampling_ratio per
 *   side or ceil(roi_size / output_size) when 0. coordinate_transformation_mode
 *   "half_pixel" (the default since 16) shifts the scaled roi by -0.5 and lets it be
 *   smaller than one pixel; "output_half_pixel" (opset 10's only behaviour) forces rois to
 *   at least 1x1. Samples outside [-1, H] x [-1, W] contribute 0; coordinates in [-1, 0)
 *   clamp to 0. Max mode takes the max of the four weighted corner values per sample,
 *   as the reference (and ONNX Runtime) do, not the max of interpolated values.
 * MaxRoiPool: rois [R, 5] (batch, x1, y1, x2, y2), coordinates scaled and rounded half away
 *   from zero; each bin is the max over its integer window, 0 when the window is empty.
 * DeformConv: X [N, C, *in], W [M, C/group, *k], offset [N, og*K*nd, *out] laid out as
 *   (og, k..., dim), optional B [M] and mask [N, og*K, *out] (K = prod k, og =
 *   offset_group). Each kernel tap samples X at out*stride - pad_begin + tap*dilation +
 *   offset with multilinear interpolation, corners outside the input counting as 0 (the
 *   reference's GridSample with align_corners=1 and zero padding), times the mask; then a
 *   grouped convolution sum. Any number of spatial dims from 1 to 3 (the reference stops
 *   at 2); lowered to sampled columns + kiln_sgemm per (image, group).
 *
 * dtypes: float32 natively; float16, bfloat16 and float64 are staged through float32.
 *
 * Prepare decodes every op's attributes once (struct vision_state); they are checked at
 * run time, where the inputs' ranks and shapes are known, with the same messages as before.
 */
#include <math.h>
#include <string.h>

#include "cpu/sgemm.h"
#include "cpu/tensor_util.h"

/* One ints attribute as the node has it (NULL and 0 when absent). */
struct ints_attr {
    const int64_t *v;
    size_t n;
};

/* The attributes of this file's ops, each with its default (an op reads its own). */
struct vision_state {
    bool align_corners;            /* AffineGrid */
    const char *mode;              /* RoiAlign: "avg" */
    const char *ctm;               /* RoiAlign 16+: coordinate_transformation_mode */
    int64_t output_height, output_width, sampling_ratio;
    double spatial_scale;          /* RoiAlign, MaxRoiPool */
    struct ints_attr pooled_shape; /* MaxRoiPool */
    int64_t group, offset_group;   /* DeformConv */
    struct ints_attr kernel_shape, strides, dilations, pads;
};

static kiln_status vision_prepare(struct kiln_kprep *p)
{
    struct vision_state *s;
    KILN_TRY(kiln_kprep_alloc(p, sizeof *s, (void **)&s));
    const struct kiln_kctx *k = &p->kc;
    s->align_corners = kiln_attr_i(k, "align_corners", 0) != 0;
    s->mode = kiln_attr_s(k, "mode", "avg");
    s->ctm = kiln_attr_s(k, "coordinate_transformation_mode", "half_pixel");
    s->output_height = kiln_attr_i(k, "output_height", 1);
    s->output_width = kiln_attr_i(k, "output_width", 1);
    s->sampling_ratio = kiln_attr_i(k, "sampling_ratio", 0);
    s->spatial_scale = kiln_attr_f(k, "spatial_scale", 1.0f);
    s->pooled_shape.n = kiln_attr_ints(k, "pooled_shape", &s->pooled_shape.v);
    s->group = kiln_attr_i(k, "group", 1);
    s->offset_group = kiln_attr_i(k, "offset_group", 1);
    s->kernel_shape.n = kiln_attr_ints(k, "kernel_shape", &s->kernel_shape.v);
    s->strides.n = kiln_attr_ints(k, "strides", &s->strides.v);
    s->dilations.n = kiln_attr_ints(k, "dilations", &s->dilations.v);
    s->pads.n = kiln_attr_ints(k, "pads", &s->pads.v);
    p->state = s;
    return KILN_OK;
}

/* ------------------------------------------------------------------ dtype checks */

static kiln_status need_float(struct kiln_kctx *k, const struct kiln_tensor *t, const char *name)
{
    if (!kiln_dtype_is_real_float(t->dtype))
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "input %s is %s; expected a float type", name,
                          kiln_dtype_name(t->dtype));
    return KILN_OK;
}

/* ------------------------------------------------------------------ AffineGrid */

/* Base coordinate i of an axis of n points in [-1, 1] (see the file comment). */
static double grid_coord(int64_t i, int64_t n, bool align)
{
    if (n <= 1) return 0.0;
    if (align) return -1.0 + 2.0 * (double)i / (double)(n - 1);
    return -1.0 + (2.0 * (double)i + 1.0) / (double)n;
}

static kiln_status affine_grid_run(struct kiln_kctx *k)
{
    if (!k->state) return kiln_cpu_run_unprepared(k, vision_prepare, affine_grid_run);
    const struct vision_state *vs = k->state;
    const struct kiln_tensor *theta, *size;
    KILN_TRY(kiln_in_req(k, 0, &theta));
    KILN_TRY(kiln_in_req(k, 1, &size));
    KILN_TRY(need_float(k, theta, "theta"));
    if (!kiln_dtype_is_int(size->dtype) || size->rank != 1 ||
        (size->dims[0] != 4 && size->dims[0] != 5))
        return kiln_kfail(k, KILN_E_INVALID_ARG,
                          "input size must be 4 or 5 integers (N, C, [D,] H, W); got %s rank %d",
                          kiln_dtype_name(size->dtype), size->rank);
    int nd = (int)size->dims[0] - 2;
    int64_t sz[5];
    for (int i = 0; i < nd + 2; i++) {
        sz[i] = kiln_tensor_get_i64(size, (size_t)i);
        if (sz[i] < 0)
            return kiln_kfail(k, KILN_E_INVALID_ARG, "size[%d] = %lld; expected >= 0", i,
                              (long long)sz[i]);
    }
    if (theta->rank != 3 || theta->dims[0] != sz[0] || theta->dims[1] != nd ||
        theta->dims[2] != nd + 1) {
        char buf[64];
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input theta is %s; expected [%lld, %d, %d]",
                          kiln_shape_str(theta->rank, theta->dims, buf, sizeof buf),
                          (long long)sz[0], nd, nd + 1);
    }
    bool align = vs->align_corners;
    int64_t od[5];
    od[0] = sz[0];
    for (int i = 0; i < nd; i++) od[1 + i] = sz[2 + i];
    od[1 + nd] = nd;
    struct kiln_tensor *y;
    KILN_TRY(kiln_out_tensor(k, 0, theta->dtype, nd + 2, od, &y));
    if (kiln_tensor_numel(y) == 0) return KILN_OK;
    const float *th;
    float *yf;
    KILN_TRY(kiln_stage_f32(k, theta, &th));
    KILN_TRY(kiln_stage_out_f32(k, y, &yf));
    /* Spatial sizes in (D,) H, W order; the homogeneous vector is (x, y, (z,) 1). */
    int64_t D = nd == 3 ? sz[2] : 1, H = sz[nd == 3 ? 3 : 2], W = sz[nd == 3 ? 4 : 3];
    size_t o = 0;
    for (int64_t n = 0; n < sz[0]; n++) {
        const float *t = th + (size_t)n * (size_t)(nd * (nd + 1));
        for (int64_t d = 0; d < D; d++) {
            double z = grid_coord(d, D, align);
            for (int64_t h = 0; h < H; h++) {
                double yy = grid_coord(h, H, align);
                for (int64_t w = 0; w < W; w++) {
                    double v[4] = {grid_coord(w, W, align), yy, z, 1.0};
                    if (nd == 2) v[2] = 1.0;
                    for (int r = 0; r < nd; r++) {
                        double acc = 0;
                        for (int c = 0; c <= nd; c++) acc += (double)t[r * (nd + 1) + c] * v[c];
                        yf[o++] = (float)acc;
                    }
                }
            }
        }
    }
    kiln_unstage_f32(y, yf);
    return KILN_OK;
}

/* ------------------------------------------------------------------ RoiAlign */

/* One bilinear sample: four flat positions into an H x W plane and their weights. */
struct roi_sample {
    size_t pos[4];
    float w[4];
};

/* Fills the samples of one bin row/column grid as the reference's pre_calc does. */
static void roi_sample_at(double y, double x, int64_t H, int64_t W, struct roi_sample *s)
{
    if (!(y >= -1.0 && y <= (double)H && x >= -1.0 && x <= (double)W)) {
        memset(s, 0, sizeof *s);
        return;
    }
    if (y < 0) y = 0;
    if (x < 0) x = 0;
    int64_t yl = (int64_t)y, xl = (int64_t)x, yh, xh;
    if (yl >= H - 1) {
        yh = yl = H - 1;
        y = (double)yl;
    } else {
        yh = yl + 1;
    }
    if (xl >= W - 1) {
        xh = xl = W - 1;
        x = (double)xl;
    } else {
        xh = xl + 1;
    }
    double ly = y - (double)yl, lx = x - (double)xl, hy = 1.0 - ly, hx = 1.0 - lx;
    s->pos[0] = (size_t)(yl * W + xl);
    s->pos[1] = (size_t)(yl * W + xh);
    s->pos[2] = (size_t)(yh * W + xl);
    s->pos[3] = (size_t)(yh * W + xh);
    s->w[0] = (float)(hy * hx);
    s->w[1] = (float)(hy * lx);
    s->w[2] = (float)(ly * hx);
    s->w[3] = (float)(ly * lx);
}

/* Inputs X [N, C, H, W] and rois [num_rois, cols] of RoiAlign (cols 4, with batch_indices
 * input 2 read into *bi) and MaxRoiPool (cols 5, bi NULL); X and rois of a float type. */
static kiln_status roi_inputs(struct kiln_kctx *k, int64_t cols, const struct kiln_tensor **x,
                              const struct kiln_tensor **rois, const struct kiln_tensor **bi)
{
    KILN_TRY(kiln_in_req(k, 0, x));
    KILN_TRY(kiln_in_req(k, 1, rois));
    if (bi) KILN_TRY(kiln_in_req(k, 2, bi));
    KILN_TRY(need_float(k, *x, "X"));
    KILN_TRY(need_float(k, *rois, "rois"));
    const struct kiln_tensor *r = *rois;
    char buf[64];
    if ((*x)->rank != 4)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input X has rank %d; expected 4 (N, C, H, W)",
                          (*x)->rank);
    if (r->rank != 2 || r->dims[1] != cols)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input rois is %s; expected [num_rois, %lld]",
                          kiln_shape_str(r->rank, r->dims, buf, sizeof buf), (long long)cols);
    return KILN_OK;
}

static kiln_status roi_align_run(struct kiln_kctx *k)
{
    if (!k->state) return kiln_cpu_run_unprepared(k, vision_prepare, roi_align_run);
    const struct vision_state *vs = k->state;
    const struct kiln_tensor *x, *rois, *bi;
    KILN_TRY(roi_inputs(k, 4, &x, &rois, &bi));
    char buf[64];
    if (!kiln_dtype_is_int(bi->dtype) || bi->rank != 1 || bi->dims[0] != rois->dims[0])
        return kiln_kfail(k, KILN_E_INVALID_ARG,
                          "input batch_indices is %s %s; expected integers [%lld]",
                          kiln_dtype_name(bi->dtype),
                          kiln_shape_str(bi->rank, bi->dims, buf, sizeof buf),
                          (long long)rois->dims[0]);
    const char *mode = vs->mode;
    bool max_mode = strcmp(mode, "max") == 0;
    if (!max_mode && strcmp(mode, "avg") != 0)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "mode '%s' is not avg or max", mode);
    bool half = false;
    if (k->opset >= 16) {
        const char *ctm = vs->ctm;
        half = strcmp(ctm, "half_pixel") == 0;
        if (!half && strcmp(ctm, "output_half_pixel") != 0)
            return kiln_kfail(k, KILN_E_INVALID_MODEL,
                              "coordinate_transformation_mode '%s' is not half_pixel or "
                              "output_half_pixel", ctm);
    }
    int64_t oh = vs->output_height, ow = vs->output_width;
    int64_t sr = vs->sampling_ratio;
    double scale = vs->spatial_scale;
    if (oh < 1 || ow < 1 || sr < 0)
        return kiln_kfail(k, KILN_E_INVALID_MODEL,
                          "output_height %lld / output_width %lld must be >= 1 and "
                          "sampling_ratio %lld >= 0", (long long)oh, (long long)ow, (long long)sr);
    int64_t N = x->dims[0], C = x->dims[1], H = x->dims[2], W = x->dims[3], R = rois->dims[0];
    int64_t yd[4] = {R, C, oh, ow};
    struct kiln_tensor *y;
    KILN_TRY(kiln_out_tensor(k, 0, x->dtype, 4, yd, &y));
    if (kiln_tensor_numel(y) == 0) return KILN_OK;
    if (H == 0 || W == 0)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input X has an empty plane (%lld x %lld)",
                          (long long)H, (long long)W);
    const float *xf, *rf;
    float *yf;
    KILN_TRY(kiln_stage_f32(k, x, &xf));
    KILN_TRY(kiln_stage_f32(k, rois, &rf));
    KILN_TRY(kiln_stage_out_f32(k, y, &yf));
    size_t plane = (size_t)(H * W), bins = (size_t)(oh * ow);
    for (int64_t r = 0; r < R; r++) {
        int64_t b = kiln_tensor_get_i64(bi, (size_t)r);
        if (b < 0 || b >= N)
            return kiln_kfail(k, KILN_E_INVALID_ARG,
                              "batch_indices[%lld] = %lld out of range [0, %lld)", (long long)r,
                              (long long)b, (long long)N);
        const float *rr = rf + 4 * r;
        double off = half ? 0.5 : 0.0;
        double x0 = rr[0] * scale - off, y0 = rr[1] * scale - off;
        double x1 = rr[2] * scale - off, y1 = rr[3] * scale - off;
        double rw = x1 - x0, rh = y1 - y0;
        if (!half) {
            if (rw < 1.0) rw = 1.0;
            if (rh < 1.0) rh = 1.0;
        }
        double bh = rh / (double)oh, bw = rw / (double)ow;
        double gh_d = sr > 0 ? (double)sr : ceil(rh / (double)oh);
        double gw_d = sr > 0 ? (double)sr : ceil(rw / (double)ow);
        /* A non-finite or huge roi would ask for absurd sample grids; cap like a limit. */
        if (!(gh_d < 1e6 && gw_d < 1e6))
            return kiln_kfail(k, KILN_E_LIMIT, "roi %lld needs a %g x %g sample grid per bin",
                              (long long)r, gh_d, gw_d);
        int64_t gh = gh_d > 0 ? (int64_t)gh_d : 0, gw = gw_d > 0 ? (int64_t)gw_d : 0;
        size_t ns;
        if (!kiln_mul_size(bins, (size_t)(gh * gw), &ns) || ns > ((size_t)1 << 30))
            return kiln_kfail(k, KILN_E_LIMIT, "roi %lld needs too many samples", (long long)r);
        double count = gh * gw > 1 ? (double)(gh * gw) : 1.0;
        struct roi_sample *smp;
        KILN_TRY(kiln_scratch(k, ns * sizeof *smp + 1, (void **)&smp));
        size_t si = 0;
        for (int64_t ph = 0; ph < oh; ph++)
            for (int64_t pw = 0; pw < ow; pw++)
                for (int64_t iy = 0; iy < gh; iy++) {
                    double yy = y0 + (double)ph * bh + ((double)iy + 0.5) * bh / (double)gh;
                    for (int64_t ix = 0; ix < gw; ix++) {
                        double xx = x0 + (double)pw * bw + ((double)ix + 0.5) * bw / (double)gw;
                        roi_sample_at(yy, xx, H, W, &smp[si++]);
                    }
                }
        size_t per = (size_t)(gh * gw);
        for (int64_t c = 0; c < C; c++) {
            const float *xp = xf + ((size_t)b * (size_t)C + (size_t)c) * plane;
            float *yp = yf + ((size_t)r * (size_t)C + (size_t)c) * bins;
            for (size_t bin = 0; bin < bins; bin++) {
                const struct roi_sample *s = smp + bin * per;
                double acc = 0;
                if (!max_mode) {
                    for (size_t j = 0; j < per; j++)
                        acc += s[j].w[0] * xp[s[j].pos[0]] + s[j].w[1] * xp[s[j].pos[1]] +
                               s[j].w[2] * xp[s[j].pos[2]] + s[j].w[3] * xp[s[j].pos[3]];
                    acc /= count;
                } else {
                    for (size_t j = 0; j < per; j++) {
                        double v = s[j].w[0] * xp[s[j].pos[0]];
                        for (int q = 1; q < 4; q++) {
                            double u = s[j].w[q] * xp[s[j].pos[q]];
                            if (u > v) v = u;
                        }
                        if (j == 0 || v > acc) acc = v;
                    }
                }
                yp[bin] = (float)acc;
            }
        }
    }
    kiln_unstage_f32(y, yf);
    return KILN_OK;
}

/* ------------------------------------------------------------------ MaxRoiPool */

/* C's round(): half away from zero. */
static double round_half_away(double v)
{
    return v < 0 ? -floor(-v + 0.5) : floor(v + 0.5);
}

static int64_t clamp_i64(double v, int64_t lo, int64_t hi)
{
    if (!(v >= (double)lo)) return lo; /* NaN clamps low */
    if (v >= (double)hi) return hi;
    return (int64_t)v;
}

static kiln_status max_roi_pool_run(struct kiln_kctx *k)
{
    if (!k->state) return kiln_cpu_run_unprepared(k, vision_prepare, max_roi_pool_run);
    const struct vision_state *vs = k->state;
    const struct kiln_tensor *x, *rois;
    KILN_TRY(roi_inputs(k, 5, &x, &rois, NULL));
    const int64_t *ps = vs->pooled_shape.v;
    if (vs->pooled_shape.n != 2 || ps[0] < 1 || ps[1] < 1)
        return kiln_kfail(k, KILN_E_INVALID_MODEL,
                          "pooled_shape must be two positive integers (height, width)");
    double scale = vs->spatial_scale;
    int64_t N = x->dims[0], C = x->dims[1], H = x->dims[2], W = x->dims[3], R = rois->dims[0];
    int64_t PH = ps[0], PW = ps[1];
    int64_t yd[4] = {R, C, PH, PW};
    struct kiln_tensor *y;
    KILN_TRY(kiln_out_tensor(k, 0, x->dtype, 4, yd, &y));
    if (kiln_tensor_numel(y) == 0) return KILN_OK;
    const float *xf, *rf;
    float *yf;
    KILN_TRY(kiln_stage_f32(k, x, &xf));
    KILN_TRY(kiln_stage_f32(k, rois, &rf));
    KILN_TRY(kiln_stage_out_f32(k, y, &yf));
    size_t plane = (size_t)(H * W);
    for (int64_t r = 0; r < R; r++) {
        const float *rr = rf + 5 * r;
        double bd = rr[0];
        if (!(bd >= 0 && bd < (double)N))
            return kiln_kfail(k, KILN_E_INVALID_ARG, "rois[%lld] batch index %g out of range [0, %lld)",
                              (long long)r, bd, (long long)N);
        int64_t b = (int64_t)bd;
        double sw = round_half_away(rr[1] * scale), sh = round_half_away(rr[2] * scale);
        double ew = round_half_away(rr[3] * scale), eh = round_half_away(rr[4] * scale);
        double rw = fmax(ew - sw + 1, 1), rh = fmax(eh - sh + 1, 1);
        double bh = rh / (double)PH, bw = rw / (double)PW;
        for (int64_t ph = 0; ph < PH; ph++) {
            int64_t h0 = clamp_i64(floor((double)ph * bh) + sh, 0, H);
            int64_t h1 = clamp_i64(ceil((double)(ph + 1) * bh) + sh, 0, H);
            for (int64_t pw = 0; pw < PW; pw++) {
                int64_t w0 = clamp_i64(floor((double)pw * bw) + sw, 0, W);
                int64_t w1 = clamp_i64(ceil((double)(pw + 1) * bw) + sw, 0, W);
                bool empty = h1 <= h0 || w1 <= w0;
                for (int64_t c = 0; c < C; c++) {
                    const float *xp = xf + ((size_t)b * (size_t)C + (size_t)c) * plane;
                    float m = 0;
                    if (!empty) {
                        m = xp[h0 * W + w0];
                        for (int64_t h = h0; h < h1; h++)
                            for (int64_t w = w0; w < w1; w++)
                                if (xp[h * W + w] > m) m = xp[h * W + w];
                    }
                    yf[(((size_t)r * (size_t)C + (size_t)c) * (size_t)PH + (size_t)ph) * (size_t)PW +
                       (size_t)pw] = m;
                }
            }
        }
    }
    kiln_unstage_f32(y, yf);
    return KILN_OK;
}

/* ------------------------------------------------------------------ DeformConv */

#define DEFORM_MAX_ND 3

struct deform_geom {
    int nd;
    int64_t in[DEFORM_MAX_ND], out[DEFORM_MAX_ND], k[DEFORM_MAX_ND];
    int64_t s[DEFORM_MAX_ND], d[DEFORM_MAX_ND], pb[DEFORM_MAX_ND];
    size_t ks, is, os; /* products of k, in, out */
};

/* Reads an nd-value ints attribute `name` (its decoded list ia; default def) into v, each
 * >= lo. */
static kiln_status deform_ints(struct kiln_kctx *k, const char *name, const struct ints_attr *ia,
                               int nd, int64_t def, int64_t lo, int64_t *v)
{
    const int64_t *a = ia->v;
    size_t c = ia->n;
    if (c && c != (size_t)nd)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "%s has %zu values; expected %d", name, c, nd);
    for (int i = 0; i < nd; i++) {
        v[i] = c ? a[i] : def;
        if (v[i] < lo)
            return kiln_kfail(k, KILN_E_INVALID_MODEL, "%s[%d] = %lld; expected >= %lld", name, i,
                              (long long)v[i], (long long)lo);
    }
    return KILN_OK;
}

/* Value of plane xp (sizes g->in) at fractional position p, multilinear over the 2^nd
 * neighbours; neighbours outside the plane count as 0. */
static float deform_sample(const struct deform_geom *g, const float *xp, const double *p)
{
    int64_t lo[DEFORM_MAX_ND];
    double fr[DEFORM_MAX_ND];
    for (int i = 0; i < g->nd; i++) {
        /* Also rejects NaN; past these bounds every neighbour is outside. */
        if (!(p[i] > -1.0 && p[i] < (double)g->in[i])) return 0.0f;
        double f = floor(p[i]);
        lo[i] = (int64_t)f;
        fr[i] = p[i] - f;
    }
    double acc = 0;
    for (unsigned corner = 0; corner < (1u << g->nd); corner++) {
        double w = 1;
        size_t off = 0;
        bool inside = true;
        for (int i = 0; i < g->nd; i++) {
            bool hi = (corner >> i) & 1u;
            int64_t c = lo[i] + (hi ? 1 : 0);
            if (c < 0 || c >= g->in[i]) {
                inside = false;
                break;
            }
            w *= hi ? fr[i] : 1.0 - fr[i];
            off = off * (size_t)g->in[i] + (size_t)c;
        }
        if (inside && w != 0) acc += w * xp[off];
    }
    return (float)acc;
}

static kiln_status deform_conv_run(struct kiln_kctx *k)
{
    if (!k->state) return kiln_cpu_run_unprepared(k, vision_prepare, deform_conv_run);
    const struct vision_state *vs = k->state;
    const struct kiln_tensor *x, *w, *offset, *bias = kiln_in(k, 3), *mask = kiln_in(k, 4);
    KILN_TRY(kiln_in_req(k, 0, &x));
    KILN_TRY(kiln_in_req(k, 1, &w));
    KILN_TRY(kiln_in_req(k, 2, &offset));
    KILN_TRY(need_float(k, x, "X"));
    if (w->dtype != x->dtype || offset->dtype != x->dtype || (bias && bias->dtype != x->dtype) ||
        (mask && mask->dtype != x->dtype))
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "W/offset/B/mask dtypes must match X (%s)",
                          kiln_dtype_name(x->dtype));
    char buf[96], buf2[96];
    if (x->rank < 3)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input X has rank %d; expected >= 3 (N, C, ...)",
                          x->rank);
    struct deform_geom g = {.nd = x->rank - 2};
    if (g.nd > DEFORM_MAX_ND)
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "input X has %d spatial dims; at most %d supported",
                          g.nd, DEFORM_MAX_ND);
    if (w->rank != x->rank)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input W has rank %d; expected %d like X",
                          w->rank, x->rank);
    int64_t group = vs->group, og = vs->offset_group;
    if (group < 1 || og < 1)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "group %lld and offset_group %lld must be >= 1",
                          (long long)group, (long long)og);
    int64_t N = x->dims[0], C = x->dims[1], M = w->dims[0];
    if (w->dims[1] * group != C || M % group)
        return kiln_kfail(k, KILN_E_INVALID_ARG,
                          "W is %s; with group %lld expected [multiple of %lld, %lld, ...] for X "
                          "with %lld channels",
                          kiln_shape_str(w->rank, w->dims, buf, sizeof buf), (long long)group,
                          (long long)group, (long long)(C / group), (long long)C);
    if (C % og)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "X has %lld channels, not a multiple of "
                          "offset_group %lld", (long long)C, (long long)og);
    const int64_t *ksa = vs->kernel_shape.v;
    size_t nk = vs->kernel_shape.n;
    if (nk && nk != (size_t)g.nd)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "kernel_shape has %zu values; expected %d", nk,
                          g.nd);
    for (int i = 0; i < g.nd; i++) {
        g.k[i] = w->dims[2 + i];
        if (nk && ksa[i] != g.k[i])
            return kiln_kfail(k, KILN_E_INVALID_ARG, "kernel_shape[%d] = %lld but W has %lld", i,
                              (long long)ksa[i], (long long)g.k[i]);
        g.in[i] = x->dims[2 + i];
    }
    KILN_TRY(deform_ints(k, "strides", &vs->strides, g.nd, 1, 1, g.s));
    KILN_TRY(deform_ints(k, "dilations", &vs->dilations, g.nd, 1, 1, g.d));
    const int64_t *pa = vs->pads.v;
    size_t np = vs->pads.n;
    if (np && np != 2 * (size_t)g.nd)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "pads has %zu values; expected %d", np, 2 * g.nd);
    g.ks = g.is = g.os = 1;
    for (int i = 0; i < g.nd; i++) {
        int64_t pb = np ? pa[i] : 0, pe = np ? pa[g.nd + i] : 0;
        if (pb < 0 || pe < 0)
            return kiln_kfail(k, KILN_E_INVALID_MODEL, "pads must be >= 0; got %lld, %lld at dim %d",
                              (long long)pb, (long long)pe, i);
        g.pb[i] = pb;
        int64_t dk = (g.k[i] - 1) * g.d[i] + 1;
        int64_t span = g.in[i] + pb + pe - dk;
        if (g.k[i] < 1 || span < 0)
            return kiln_kfail(k, KILN_E_INVALID_ARG,
                              "spatial dim %d: input %lld with pads %lld+%lld is smaller than the "
                              "dilated kernel %lld", i, (long long)g.in[i], (long long)pb,
                              (long long)pe, (long long)dk);
        g.out[i] = span / g.s[i] + 1;
        g.ks *= (size_t)g.k[i];
        g.is *= (size_t)g.in[i];
        g.os *= (size_t)g.out[i];
    }
    /* offset [N, og * K * nd, *out]; mask [N, og * K, *out]. */
    int64_t want[2 + DEFORM_MAX_ND];
    want[0] = N;
    want[1] = og * (int64_t)g.ks * g.nd;
    for (int i = 0; i < g.nd; i++) want[2 + i] = g.out[i];
    if (offset->rank != x->rank || memcmp(offset->dims, want, (size_t)x->rank * sizeof *want))
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input offset is %s; expected %s",
                          kiln_shape_str(offset->rank, offset->dims, buf, sizeof buf),
                          kiln_shape_str(x->rank, want, buf2, sizeof buf2));
    want[1] = og * (int64_t)g.ks;
    if (mask && (mask->rank != x->rank || memcmp(mask->dims, want, (size_t)x->rank * sizeof *want)))
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input mask is %s; expected %s",
                          kiln_shape_str(mask->rank, mask->dims, buf, sizeof buf),
                          kiln_shape_str(x->rank, want, buf2, sizeof buf2));
    if (bias && (bias->rank != 1 || bias->dims[0] != M))
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input B is %s; expected [%lld]",
                          kiln_shape_str(bias->rank, bias->dims, buf, sizeof buf), (long long)M);

    int64_t yd[2 + DEFORM_MAX_ND];
    yd[0] = N, yd[1] = M;
    for (int i = 0; i < g.nd; i++) yd[2 + i] = g.out[i];
    struct kiln_tensor *y;
    KILN_TRY(kiln_out_tensor(k, 0, x->dtype, x->rank, yd, &y));
    if (kiln_tensor_numel(y) == 0) return KILN_OK;

    const float *xf, *wf, *of, *bf = NULL, *mf = NULL;
    float *yf, *col;
    KILN_TRY(kiln_stage_f32(k, x, &xf));
    KILN_TRY(kiln_stage_f32(k, w, &wf));
    KILN_TRY(kiln_stage_f32(k, offset, &of));
    if (bias) KILN_TRY(kiln_stage_f32(k, bias, &bf));
    if (mask) KILN_TRY(kiln_stage_f32(k, mask, &mf));
    KILN_TRY(kiln_stage_out_f32(k, y, &yf));
    size_t ck, colsz;
    if (!kiln_mul_size((size_t)C, g.ks, &ck) || !kiln_mul_size(ck, g.os, &colsz) ||
        !kiln_mul_size(colsz, sizeof(float), &colsz))
        return kiln_kfail(k, KILN_E_LIMIT, "sampled column buffer size overflows");
    KILN_TRY(kiln_scratch(k, colsz + 1, (void **)&col));

    size_t cpo = (size_t)(C / og), cg = (size_t)(C / group), mg = (size_t)(M / group);
    size_t K = g.ks, O = g.os, nd = (size_t)g.nd;
    for (int64_t n = 0; n < N; n++) {
        const float *xn = xf + (size_t)n * (size_t)C * g.is;
        const float *on = of + (size_t)n * (size_t)og * K * nd * O;
        const float *mn = mf ? mf + (size_t)n * (size_t)og * K * O : NULL;
        for (size_t o_g = 0; o_g < (size_t)og; o_g++)
            for (size_t kq = 0; kq < K; kq++) {
                int64_t ki[DEFORM_MAX_ND];
                size_t r = kq;
                for (int i = g.nd - 1; i >= 0; i--) ki[i] = (int64_t)(r % (size_t)g.k[i]), r /= (size_t)g.k[i];
                const float *offk = on + (o_g * K + kq) * nd * O;
                for (size_t o = 0; o < O; o++) {
                    int64_t oi[DEFORM_MAX_ND];
                    size_t rr = o;
                    for (int i = g.nd - 1; i >= 0; i--)
                        oi[i] = (int64_t)(rr % (size_t)g.out[i]), rr /= (size_t)g.out[i];
                    double p[DEFORM_MAX_ND];
                    for (int i = 0; i < g.nd; i++)
                        p[i] = (double)(oi[i] * g.s[i] - g.pb[i] + ki[i] * g.d[i]) +
                               offk[(size_t)i * O + o];
                    float m = mn ? mn[(o_g * K + kq) * O + o] : 1.0f;
                    for (size_t c = o_g * cpo; c < (o_g + 1) * cpo; c++)
                        col[(c * K + kq) * O + o] = m * deform_sample(&g, xn + c * g.is, p);
                }
            }
        float *yn = yf + (size_t)n * (size_t)M * O;
        for (size_t gi = 0; gi < (size_t)group; gi++)
            kiln_sgemm_par(k->pool, false, false, mg, O, cg * K, 1.0f, wf + gi * mg * cg * K, cg * K,
                           col + gi * cg * K * O, O, 0.0f, yn + gi * mg * O, O);
        if (bf)
            for (size_t m = 0; m < (size_t)M; m++)
                for (size_t o = 0; o < O; o++) yn[m * O + o] += bf[m];
    }
    kiln_unstage_f32(y, yf);
    return KILN_OK;
}

const struct kiln_cpu_op kiln_cpu_ops_vision[] = {
    {"AffineGrid", "", 20, 0, affine_grid_run, vision_prepare, 0},
    {"RoiAlign", "", 10, 0, roi_align_run, vision_prepare, 0},
    {"MaxRoiPool", "", 1, 0, max_roi_pool_run, vision_prepare, 0},
    {"DeformConv", "", 19, 0, deform_conv_run, vision_prepare, 0},
    {0},
};
