/* test_vision.c: the kernels of src/cpu/ops/vision.c (AffineGrid, RoiAlign, MaxRoiPool,
 * DeformConv) and the newer ops of src/cpu/ops/nn_extra.c (SwiGLU, LinearAttention,
 * CausalConvWithState, FlexAttention) against naive references written from the ONNX
 * definitions, on random small shapes, plus their error paths.
 *
 * The references are formulated differently from the kernels where that is possible, so a
 * shared misreading is less likely: bilinear sampling is the sum over every pixel of
 * max(0, 1 - |dy|) * max(0, 1 - |dx|) * x (zero outside), DeformConv with zero offsets must
 * equal a direct convolution, and linear attention (rule "linear") is checked against its
 * non-recurrent form o_t = scale * (q_t S0 + sum_{s <= t} (q_t . k_s) v_s).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/kernel.h"
#include "test_support.h"

/* Expects st != OK and the message to contain `needle`. */
static void expect_fail(kiln_status st, const kiln_err *err, const char *needle, const char *what)
{
    CHECK(st != KILN_OK, "%s: expected a failure", what);
    CHECK(st == KILN_OK || strstr(err->msg, needle) != NULL, "%s: message '%s' lacks '%s'", what,
          err->msg, needle);
}

/* Bilinear value of plane x (H x W) at (y, xx) by definition: every pixel weighted by the
 * tent function; pixels outside do not exist (count as 0). */
static double tent2(const float *x, int64_t H, int64_t W, double y, double xx)
{
    double acc = 0;
    for (int64_t i = 0; i < H; i++) {
        double wy = 1 - fabs(y - (double)i);
        if (wy <= 0) continue;
        for (int64_t j = 0; j < W; j++) {
            double wx = 1 - fabs(xx - (double)j);
            if (wx > 0) acc += wy * wx * x[i * W + j];
        }
    }
    return acc;
}

/* ------------------------------------------------------------------ AffineGrid */

static double lin(int64_t i, int64_t n, bool align)
{
    if (n == 1) return 0;
    return align ? -1 + 2.0 * (double)i / (double)(n - 1) : (2.0 * (double)i + 1) / (double)n - 1;
}

static void test_affine_grid(void)
{
    for (int t = 0; t < 40; t++) {
        int nd = 2 + rng_int(2);
        bool align = rng_int(2);
        int64_t N = 1 + rng_int(3), sz[5] = {N, 1 + rng_int(3)};
        for (int i = 0; i < nd; i++) sz[2 + i] = 1 + rng_int(5);
        int64_t td[3] = {N, nd, nd + 1}, sd[1] = {nd + 2};
        struct kiln_value *in[2] = {rand_tensor(3, td), new_tensor(KILN_DTYPE_I64, 1, sd)};
        memcpy(in[1]->t.data, sz, (size_t)(nd + 2) * sizeof *sz);
        struct attrs at = {.n = 0};
        add_i(&at, "align_corners", align);
        struct kiln_value *out[1] = {0};
        kiln_err err = {0};
        kiln_status st = run_node("", "AffineGrid", 20, at.a, at.n, in, 2, out, 1, &err);
        CHECK(st == KILN_OK, "AffineGrid: %s", err.msg);
        if (st == KILN_OK) {
            int64_t D = nd == 3 ? sz[2] : 1, H = sz[nd == 3 ? 3 : 2], W = sz[nd == 3 ? 4 : 3];
            size_t n = (size_t)(N * D * H * W * nd), o = 0;
            double *want = calloc(n, sizeof *want);
            const float *th = in[0]->t.data;
            for (int64_t b = 0; b < N; b++)
                for (int64_t d = 0; d < D; d++)
                    for (int64_t h = 0; h < H; h++)
                        for (int64_t w = 0; w < W; w++) {
                            /* Coordinates listed x (width) first. */
                            double c[3] = {lin(w, W, align), lin(h, H, align), lin(d, D, align)};
                            for (int r = 0; r < nd; r++) {
                                const float *row = th + (b * nd + r) * (nd + 1);
                                double acc = row[nd];
                                for (int q = 0; q < nd; q++) acc += row[q] * c[q];
                                want[o++] = acc;
                            }
                        }
            CHECK(out[0]->t.rank == nd + 2 && out[0]->t.dims[nd + 1] == nd, "AffineGrid rank");
            close_to(out[0], want, n, 1e-4, "AffineGrid");
            free(want);
            kiln_value_free(out[0]);
        }
        free_all(in, 2);
    }
    /* Errors: theta that does not match size. */
    int64_t td[3] = {2, 2, 3}, sd[1] = {4};
    struct kiln_value *in[2] = {rand_tensor(3, td), new_tensor(KILN_DTYPE_I64, 1, sd)};
    int64_t sz[4] = {3, 1, 4, 4};
    memcpy(in[1]->t.data, sz, sizeof sz);
    struct kiln_value *out[1] = {0};
    kiln_err err = {0};
    expect_fail(run_node("", "AffineGrid", 20, NULL, 0, in, 2, out, 1, &err), &err, "input theta",
                "AffineGrid batch mismatch");
    free_all(in, 2);
}

/* ------------------------------------------------------------------ RoiAlign */

static void test_roi_align(void)
{
    for (int t = 0; t < 60; t++) {
        int64_t N = 1 + rng_int(2), C = 1 + rng_int(3), H = 2 + rng_int(7), W = 2 + rng_int(7);
        int64_t R = 1 + rng_int(4);
        int64_t oh = 1 + rng_int(4), ow = 1 + rng_int(4), sr = rng_int(3);
        bool half = rng_int(2), maxm = rng_int(3) == 0;
        int opset = half ? 16 : (rng_int(2) ? 10 : 16);
        float scale = rng_int(2) ? 1.0f : 0.5f;
        int64_t xd[4] = {N, C, H, W}, rd[2] = {R, 4}, bd[1] = {R};
        struct kiln_value *in[3] = {rand_tensor(4, xd), rand_tensor(2, rd),
                                    new_tensor(KILN_DTYPE_I64, 1, bd)};
        float *rf = in[1]->t.data;
        int64_t *bi = in[2]->t.data;
        for (int64_t r = 0; r < R; r++) {
            /* Corners in [-1, W + 1] etc. (some outside the map), x1 >= x0 mostly. */
            float x0 = (float)((rng_f32() + 1) * 0.5 * (double)(W + 1)) - 1;
            float y0 = (float)((rng_f32() + 1) * 0.5 * (double)(H + 1)) - 1;
            rf[4 * r + 0] = x0 / scale, rf[4 * r + 1] = y0 / scale;
            rf[4 * r + 2] = (x0 + (float)((rng_f32() + 1) * 0.5 * (double)W)) / scale;
            rf[4 * r + 3] = (y0 + (float)((rng_f32() + 1) * 0.5 * (double)H)) / scale;
            bi[r] = rng_int((int)N);
        }
        struct attrs at = {.n = 0};
        add_i(&at, "output_height", oh);
        add_i(&at, "output_width", ow);
        add_i(&at, "sampling_ratio", sr);
        add_f(&at, "spatial_scale", scale);
        if (maxm) add_s(&at, "mode", "max");
        if (opset >= 16) add_s(&at, "coordinate_transformation_mode", half ? "half_pixel" : "output_half_pixel");
        struct kiln_value *out[1] = {0};
        kiln_err err = {0};
        kiln_status st = run_node("", "RoiAlign", opset, at.a, at.n, in, 3, out, 1, &err);
        CHECK(st == KILN_OK, "RoiAlign: %s", err.msg);
        if (st == KILN_OK) {
            size_t n = (size_t)(R * C * oh * ow), o = 0;
            double *want = calloc(n, sizeof *want);
            const float *x = in[0]->t.data;
            for (int64_t r = 0; r < R; r++)
                for (int64_t c = 0; c < C; c++) {
                    const float *xp = x + (bi[r] * C + c) * H * W;
                    double off = half ? 0.5 : 0;
                    double sx = rf[4 * r] * (double)scale - off, sy = rf[4 * r + 1] * (double)scale - off;
                    double rw = rf[4 * r + 2] * (double)scale - off - sx;
                    double rh = rf[4 * r + 3] * (double)scale - off - sy;
                    if (!half) rw = fmax(rw, 1), rh = fmax(rh, 1);
                    int64_t gh = sr ? sr : (int64_t)ceil(rh / (double)oh);
                    int64_t gw = sr ? sr : (int64_t)ceil(rw / (double)ow);
                    for (int64_t ph = 0; ph < oh; ph++)
                        for (int64_t pw = 0; pw < ow; pw++) {
                            double acc = 0;
                            bool first = true;
                            for (int64_t iy = 0; iy < gh; iy++)
                                for (int64_t ix = 0; ix < gw; ix++) {
                                    double yy = sy + rh / (double)oh * ((double)ph + ((double)iy + 0.5) / (double)gh);
                                    double xx = sx + rw / (double)ow * ((double)pw + ((double)ix + 0.5) / (double)gw);
                                    double v = 0;
                                    if (yy >= -1 && yy <= (double)H && xx >= -1 && xx <= (double)W) {
                                        /* The spec clamps to the map before interpolating. */
                                        yy = fmin(fmax(yy, 0), (double)(H - 1));
                                        xx = fmin(fmax(xx, 0), (double)(W - 1));
                                        if (!maxm) {
                                            v = tent2(xp, H, W, yy, xx);
                                        } else {
                                            /* Max of the weighted corners (reference quirk). */
                                            int64_t y0i = (int64_t)yy, x0i = (int64_t)xx;
                                            int64_t y1i = y0i + 1 < H ? y0i + 1 : y0i, x1i = x0i + 1 < W ? x0i + 1 : x0i;
                                            double ly = yy - (double)y0i, lx = xx - (double)x0i;
                                            double c4[4] = {(1 - ly) * (1 - lx) * xp[y0i * W + x0i],
                                                            (1 - ly) * lx * xp[y0i * W + x1i],
                                                            ly * (1 - lx) * xp[y1i * W + x0i],
                                                            ly * lx * xp[y1i * W + x1i]};
                                            v = c4[0];
                                            for (int q = 1; q < 4; q++) v = fmax(v, c4[q]);
                                        }
                                    } else if (maxm) {
                                        v = 0;
                                    }
                                    if (!maxm) acc += v;
                                    else if (first || v > acc) acc = v;
                                    first = false;
                                }
                            if (!maxm && gh * gw > 0) acc /= (double)(gh * gw);
                            want[o++] = acc;
                        }
                }
            close_to(out[0], want, n, 1e-4, maxm ? "RoiAlign max" : "RoiAlign avg");
            free(want);
            kiln_value_free(out[0]);
        }
        free_all(in, 3);
    }
    /* Errors: batch index out of range; rois of the wrong width. */
    int64_t xd[4] = {1, 1, 4, 4}, rd[2] = {1, 4}, bd[1] = {1}, rd5[2] = {1, 5};
    struct kiln_value *in[3] = {rand_tensor(4, xd), rand_tensor(2, rd), new_tensor(KILN_DTYPE_I64, 1, bd)};
    ((int64_t *)in[2]->t.data)[0] = 3;
    struct kiln_value *out[1] = {0};
    kiln_err err = {0};
    expect_fail(run_node("", "RoiAlign", 16, NULL, 0, in, 3, out, 1, &err), &err,
                "batch_indices[0] = 3",
                "RoiAlign batch index");
    kiln_value_free(in[1]);
    in[1] = rand_tensor(2, rd5);
    expect_fail(run_node("", "RoiAlign", 16, NULL, 0, in, 3, out, 1, &err), &err, "input rois",
                "RoiAlign rois width");
    free_all(in, 3);
}

/* ------------------------------------------------------------------ MaxRoiPool */

static void test_max_roi_pool(void)
{
    for (int t = 0; t < 40; t++) {
        int64_t N = 1 + rng_int(2), C = 1 + rng_int(3), H = 1 + rng_int(8), W = 1 + rng_int(8);
        int64_t R = 1 + rng_int(4);
        int64_t ps[2] = {1 + rng_int(3), 1 + rng_int(3)};
        float scale = rng_int(2) ? 1.0f : 0.5f;
        int64_t xd[4] = {N, C, H, W}, rd[2] = {R, 5};
        struct kiln_value *in[2] = {rand_tensor(4, xd), rand_tensor(2, rd)};
        float *rf = in[1]->t.data;
        for (int64_t r = 0; r < R; r++) {
            rf[5 * r] = (float)rng_int((int)N);
            for (int q = 0; q < 2; q++) {
                float a = (float)rng_int((int)(q ? H : W) + 2) - 1, b = a + (float)rng_int(4);
                rf[5 * r + 1 + q] = a / scale;
                rf[5 * r + 3 + q] = b / scale;
            }
        }
        struct attrs at = {.n = 0};
        add_ints(&at, "pooled_shape", ps, 2);
        add_f(&at, "spatial_scale", scale);
        struct kiln_value *out[1] = {0};
        kiln_err err = {0};
        kiln_status st = run_node("", "MaxRoiPool", 22, at.a, at.n, in, 2, out, 1, &err);
        CHECK(st == KILN_OK, "MaxRoiPool: %s", err.msg);
        if (st == KILN_OK) {
            size_t n = (size_t)(R * C * ps[0] * ps[1]), o = 0;
            double *want = calloc(n, sizeof *want);
            const float *x = in[0]->t.data;
            for (int64_t r = 0; r < R; r++) {
                int64_t b = (int64_t)rf[5 * r];
                int64_t x0 = lround(rf[5 * r + 1] * scale), y0 = lround(rf[5 * r + 2] * scale);
                int64_t x1 = lround(rf[5 * r + 3] * scale), y1 = lround(rf[5 * r + 4] * scale);
                double bh = (double)(y1 - y0 + 1 > 1 ? y1 - y0 + 1 : 1) / (double)ps[0];
                double bw = (double)(x1 - x0 + 1 > 1 ? x1 - x0 + 1 : 1) / (double)ps[1];
                for (int64_t c = 0; c < C; c++)
                    for (int64_t ph = 0; ph < ps[0]; ph++)
                        for (int64_t pw = 0; pw < ps[1]; pw++) {
                            /* Max over pixels whose row/col fall in the clipped bin window. */
                            double m = 0;
                            bool any = false;
                            for (int64_t i = 0; i < H; i++)
                                for (int64_t j = 0; j < W; j++) {
                                    bool in_h = i >= (int64_t)floor((double)ph * bh) + y0 &&
                                                i < (int64_t)ceil((double)(ph + 1) * bh) + y0;
                                    bool in_w = j >= (int64_t)floor((double)pw * bw) + x0 &&
                                                j < (int64_t)ceil((double)(pw + 1) * bw) + x0;
                                    double v = x[((b * C + c) * H + i) * W + j];
                                    if (in_h && in_w && (!any || v > m)) m = v, any = true;
                                }
                            want[o++] = m;
                        }
            }
            close_to(out[0], want, n, 1e-4, "MaxRoiPool");
            free(want);
            kiln_value_free(out[0]);
        }
        free_all(in, 2);
    }
    int64_t xd[4] = {1, 1, 4, 4}, rd[2] = {1, 5};
    struct kiln_value *in[2] = {rand_tensor(4, xd), rand_tensor(2, rd)};
    ((float *)in[1]->t.data)[0] = 2;
    int64_t ps[2] = {2, 2};
    struct attrs at = {.n = 0};
    add_ints(&at, "pooled_shape", ps, 2);
    struct kiln_value *out[1] = {0};
    kiln_err err = {0};
    expect_fail(run_node("", "MaxRoiPool", 22, at.a, at.n, in, 2, out, 1, &err), &err,
                "batch index",
                "MaxRoiPool batch index");
    expect_fail(run_node("", "MaxRoiPool", 22, NULL, 0, in, 2, out, 1, &err), &err, "pooled_shape",
                "MaxRoiPool without pooled_shape");
    free_all(in, 2);
}

/* ------------------------------------------------------------------ DeformConv */

static void test_deform_conv(void)
{
    for (int t = 0; t < 80; t++) {
        bool zero_off = t % 4 == 0;
        int64_t N = 1 + rng_int(2), G = 1 + rng_int(2), cg = 1 + rng_int(2), mg = 1 + rng_int(2);
        int64_t C = G * cg, M = G * mg, OG = rng_int(2) && C % 2 == 0 ? 2 : 1;
        int64_t kk[2], s[2], d[2], pads[4], in[2], out[2];
        for (int i = 0; i < 2; i++) {
            kk[i] = 1 + rng_int(3), s[i] = 1 + rng_int(2), d[i] = 1 + rng_int(2);
            pads[i] = rng_int(2), pads[2 + i] = rng_int(2);
            in[i] = (kk[i] - 1) * d[i] + 1 + rng_int(4);
            out[i] = (in[i] + pads[i] + pads[2 + i] - (kk[i] - 1) * d[i] - 1) / s[i] + 1;
        }
        int64_t K = kk[0] * kk[1], O = out[0] * out[1];
        int64_t xd[4] = {N, C, in[0], in[1]}, wd[4] = {M, cg, kk[0], kk[1]};
        int64_t od[4] = {N, OG * K * 2, out[0], out[1]}, bd[1] = {M}, md[4] = {N, OG * K, out[0], out[1]};
        bool bias = rng_int(2), mask = rng_int(2);
        struct kiln_value *vin[5] = {rand_tensor(4, xd), rand_tensor(4, wd), rand_tensor(4, od),
                                     bias ? rand_tensor(1, bd) : NULL, mask ? rand_tensor(4, md) : NULL};
        float *off = vin[2]->t.data;
        for (size_t i = 0; i < kiln_tensor_numel(&vin[2]->t); i++) off[i] = zero_off ? 0 : 1.5f * off[i];
        struct attrs at = {.n = 0};
        add_ints(&at, "strides", s, 2);
        add_ints(&at, "dilations", d, 2);
        add_ints(&at, "pads", pads, 4);
        add_i(&at, "group", G);
        add_i(&at, "offset_group", OG);
        if (rng_int(2)) add_ints(&at, "kernel_shape", kk, 2);
        struct kiln_value *vout[1] = {0};
        kiln_err err = {0};
        int opset = rng_int(2) ? 19 : 22;
        kiln_status st = run_node("", "DeformConv", opset, at.a, at.n, vin, 5, vout, 1, &err);
        CHECK(st == KILN_OK, "DeformConv: %s", err.msg);
        if (st == KILN_OK) {
            size_t n = (size_t)(N * M * O), o = 0;
            double *want = calloc(n, sizeof *want);
            const float *x = vin[0]->t.data, *w = vin[1]->t.data;
            const float *b = bias ? vin[3]->t.data : NULL, *mk = mask ? vin[4]->t.data : NULL;
            for (int64_t bn = 0; bn < N; bn++)
                for (int64_t m = 0; m < M; m++)
                    for (int64_t oy = 0; oy < out[0]; oy++)
                        for (int64_t ox = 0; ox < out[1]; ox++) {
                            double acc = b ? b[m] : 0;
                            int64_t g = m / mg;
                            for (int64_t ci = 0; ci < cg; ci++) {
                                int64_t c = g * cg + ci, og = c / (C / OG);
                                const float *xp = x + (bn * C + c) * in[0] * in[1];
                                for (int64_t ky = 0; ky < kk[0]; ky++)
                                    for (int64_t kx = 0; kx < kk[1]; kx++) {
                                        int64_t kq = ky * kk[1] + kx;
                                        size_t ob = (size_t)(((bn * OG + og) * K + kq) * 2);
                                        double dy = off[(ob * (size_t)O) + (size_t)(oy * out[1] + ox)];
                                        double dx = off[((ob + 1) * (size_t)O) + (size_t)(oy * out[1] + ox)];
                                        double py = (double)(oy * s[0] - pads[0] + ky * d[0]) + dy;
                                        double px = (double)(ox * s[1] - pads[1] + kx * d[1]) + dx;
                                        double v;
                                        if (zero_off) {
                                            /* Plain convolution: integer taps, zero padding. */
                                            int64_t iy = (int64_t)py, ix = (int64_t)px;
                                            v = iy >= 0 && iy < in[0] && ix >= 0 && ix < in[1] ? xp[iy * in[1] + ix] : 0;
                                        } else {
                                            v = tent2(xp, in[0], in[1], py, px);
                                        }
                                        double mv = mk ? mk[((bn * OG + og) * K + kq) * O + oy * out[1] + ox] : 1;
                                        acc += w[((m * cg + ci) * kk[0] + ky) * kk[1] + kx] * v * mv;
                                    }
                            }
                            want[o++] = acc;
                        }
            close_to(vout[0], want, n, 1e-4, zero_off ? "DeformConv (zero offsets)" : "DeformConv");
            free(want);
            kiln_value_free(vout[0]);
        }
        free_all(vin, 5);
    }
    /* 1-D deformable convolution (nd = 1): a single tap shifted by +0.25. */
    {
        int64_t xd[3] = {1, 1, 4}, wd[3] = {1, 1, 1}, od[3] = {1, 1, 4};
        struct kiln_value *vin[3] = {rand_tensor(3, xd), new_tensor(KILN_DTYPE_F32, 3, wd),
                                     new_tensor(KILN_DTYPE_F32, 3, od)};
        ((float *)vin[1]->t.data)[0] = 2;
        for (int i = 0; i < 4; i++) ((float *)vin[2]->t.data)[i] = 0.25f;
        struct kiln_value *vout[1] = {0};
        kiln_err err = {0};
        kiln_status st = run_node("", "DeformConv", 19, NULL, 0, vin, 3, vout, 1, &err);
        CHECK(st == KILN_OK, "DeformConv 1-D: %s", err.msg);
        if (st == KILN_OK) {
            const float *x = vin[0]->t.data;
            double want[4];
            for (int i = 0; i < 4; i++) want[i] = 2 * (0.75 * x[i] + (i < 3 ? 0.25 * x[i + 1] : 0));
            close_to(vout[0], want, 4, 1e-4, "DeformConv 1-D");
            kiln_value_free(vout[0]);
        }
        free_all(vin, 3);
    }
    /* Errors: offset with the wrong channel count; W channels not matching group. */
    int64_t xd[4] = {1, 2, 4, 4}, wd[4] = {1, 2, 2, 2}, od[4] = {1, 6, 3, 3};
    struct kiln_value *vin[3] = {rand_tensor(4, xd), rand_tensor(4, wd), rand_tensor(4, od)};
    struct kiln_value *vout[1] = {0};
    kiln_err err = {0};
    expect_fail(run_node("", "DeformConv", 19, NULL, 0, vin, 3, vout, 1, &err), &err,
                "input offset is [1,6,3,3]; expected [1,8,3,3]", "DeformConv offset shape");
    struct attrs at = {.n = 0};
    add_i(&at, "group", 2);
    expect_fail(run_node("", "DeformConv", 19, at.a, at.n, vin, 3, vout, 1, &err), &err,
                "with group 2",
                "DeformConv group");
    free_all(vin, 3);
}

/* ------------------------------------------------------------------ SwiGLU */

static void test_swiglu(void)
{
    for (int t = 0; t < 10; t++) {
        int64_t dims[3] = {1 + rng_int(3), 1 + rng_int(4), 1 + rng_int(5)};
        struct kiln_value *in[2] = {rand_tensor(3, dims), rand_tensor(3, dims)};
        float alpha = t % 2 ? 1.0f : 0.5f + (float)rng_int(4);
        struct attrs at = {.n = 0};
        if (t % 2 == 0) add_f(&at, "alpha", alpha);
        struct kiln_value *out[1] = {0};
        kiln_err err = {0};
        kiln_status st = run_node("", "SwiGLU", 28, at.a, at.n, in, 2, out, 1, &err);
        CHECK(st == KILN_OK, "SwiGLU: %s", err.msg);
        if (st == KILN_OK) {
            size_t n = kiln_tensor_numel(&in[0]->t);
            double *want = calloc(n, sizeof *want);
            const float *a = in[0]->t.data, *b = in[1]->t.data;
            for (size_t i = 0; i < n; i++) want[i] = a[i] * b[i] / (1 + exp(-(double)alpha * a[i]));
            close_to(out[0], want, n, 1e-4, "SwiGLU");
            free(want);
            kiln_value_free(out[0]);
        }
        free_all(in, 2);
    }
    int64_t d1[2] = {2, 4}, d2[2] = {1, 4};
    struct kiln_value *in[2] = {rand_tensor(2, d1), rand_tensor(2, d2)};
    struct kiln_value *out[1] = {0};
    kiln_err err = {0};
    expect_fail(run_node("", "SwiGLU", 28, NULL, 0, in, 2, out, 1, &err), &err, "identical shapes",
                "SwiGLU broadcast");
    free_all(in, 2);
}

/* ------------------------------------------------------------------ LinearAttention */

static void test_linear_attention(void)
{
    static const char *const rules[4] = {"linear", "gated", "delta", "gated_delta"};
    for (int t = 0; t < 40; t++) {
        int rule = t % 4;
        bool gating = rule & 1, delta = rule >= 2;
        int64_t B = 1 + rng_int(2), T = 1 + rng_int(4), hkv = 1 + rng_int(2), grp = 1 + rng_int(2);
        int64_t hq = hkv * grp, dk = 1 + rng_int(3), dv = 1 + rng_int(3);
        bool past = rng_int(2), per_dim = rng_int(2), beta1 = rng_int(2);
        int64_t qd[3] = {B, T, hq * dk}, kd[3] = {B, T, hkv * dk}, vd[3] = {B, T, hkv * dv};
        int64_t sd[4] = {B, hkv, dk, dv}, gd[3] = {B, T, per_dim ? hkv * dk : hkv};
        int64_t bd[3] = {B, T, beta1 ? 1 : hkv};
        struct kiln_value *in[6] = {rand_tensor(3, qd), rand_tensor(3, kd), rand_tensor(3, vd),
                                    past ? rand_tensor(4, sd) : NULL,
                                    gating ? rand_tensor(3, gd) : NULL,
                                    delta ? rand_tensor(3, bd) : NULL};
        if (delta) {
            float *bb = in[5]->t.data;
            for (size_t i = 0; i < kiln_tensor_numel(&in[5]->t); i++) bb[i] = 0.5f + 0.5f * bb[i];
        }
        float scale = rng_int(2) ? 0.0f : 0.3f;
        struct attrs at = {.n = 0};
        add_i(&at, "q_num_heads", hq);
        add_i(&at, "kv_num_heads", hkv);
        add_s(&at, "update_rule", rules[rule]);
        if (scale != 0) add_f(&at, "scale", scale);
        struct kiln_value *out[2] = {0};
        kiln_err err = {0};
        kiln_status st = run_node("", "LinearAttention", 27, at.a, at.n, in, 6, out, 2, &err);
        CHECK(st == KILN_OK, "LinearAttention %s: %s", rules[rule], err.msg);
        if (st == KILN_OK) {
            double sc = scale != 0 ? scale : 1 / sqrt((double)dk);
            size_t no = (size_t)(B * T * hq * dv), ns = (size_t)(B * hkv * dk * dv);
            double *want = calloc(no, sizeof *want), *S = calloc(ns, sizeof *S);
            const float *q = in[0]->t.data, *k = in[1]->t.data, *v = in[2]->t.data;
            const float *p = past ? in[3]->t.data : NULL, *g = gating ? in[4]->t.data : NULL;
            const float *be = delta ? in[5]->t.data : NULL;
            for (size_t i = 0; i < ns; i++) S[i] = p ? p[i] : 0;
            if (rule == 0) {
                /* Non-recurrent form: o_t = sc * (q_t S0 + sum_{s<=t} (q_t . k_s) v_s). */
                for (int64_t b = 0; b < B; b++)
                    for (int64_t tt = 0; tt < T; tt++)
                        for (int64_t h = 0; h < hq; h++) {
                            int64_t kh = h / grp;
                            const float *qt = q + ((b * T + tt) * hq + h) * dk;
                            for (int64_t m = 0; m < dv; m++) {
                                double acc = 0;
                                for (int64_t d = 0; d < dk; d++)
                                    acc += qt[d] * S[((b * hkv + kh) * dk + d) * dv + m];
                                for (int64_t s2 = 0; s2 <= tt; s2++) {
                                    const float *ks = k + ((b * T + s2) * hkv + kh) * dk;
                                    double qk = 0;
                                    for (int64_t d = 0; d < dk; d++) qk += qt[d] * ks[d];
                                    acc += qk * v[((b * T + s2) * hkv + kh) * dv + m];
                                }
                                want[((b * T + tt) * hq + h) * dv + m] = sc * acc;
                            }
                        }
            } else {
                /* Recurrence in double, written from the spec's update equations. */
                double *vt = calloc((size_t)dv, sizeof *vt);
                for (int64_t b = 0; b < B; b++)
                    for (int64_t tt = 0; tt < T; tt++)
                        for (int64_t h = 0; h < hkv; h++) {
                            double *Sh = S + (b * hkv + h) * dk * dv;
                            const float *kt = k + ((b * T + tt) * hkv + h) * dk;
                            const float *v0 = v + ((b * T + tt) * hkv + h) * dv;
                            for (int64_t d = 0; gating && d < dk; d++) {
                                double e = exp(g[(b * T + tt) * gd[2] + (per_dim ? h * dk + d : h)]);
                                for (int64_t m = 0; m < dv; m++) Sh[d * dv + m] *= e;
                            }
                            for (int64_t m = 0; m < dv; m++) {
                                double r = 0;
                                for (int64_t d = 0; delta && d < dk; d++) r += Sh[d * dv + m] * kt[d];
                                vt[m] = delta ? be[(b * T + tt) * bd[2] + (beta1 ? 0 : h)] * (v0[m] - r) : v0[m];
                            }
                            for (int64_t d = 0; d < dk; d++)
                                for (int64_t m = 0; m < dv; m++) Sh[d * dv + m] += kt[d] * vt[m];
                            for (int64_t j = 0; j < grp; j++) {
                                int64_t hh = h * grp + j;
                                const float *qt = q + ((b * T + tt) * hq + hh) * dk;
                                for (int64_t m = 0; m < dv; m++) {
                                    double acc = 0;
                                    for (int64_t d = 0; d < dk; d++) acc += qt[d] * Sh[d * dv + m];
                                    want[((b * T + tt) * hq + hh) * dv + m] = sc * acc;
                                }
                            }
                        }
                free(vt);
                close_to(out[1], S, ns, 1e-4, "LinearAttention present_state");
            }
            close_to(out[0], want, no, 1e-4, rules[rule]);
            free(want);
            free(S);
            free_all(out, 2);
        }
        free_all(in, 6);
    }
    /* Errors: gated rule without decay; key width not kv_heads * dk. */
    int64_t qd[3] = {1, 2, 4}, kd[3] = {1, 2, 6};
    struct kiln_value *in[3] = {rand_tensor(3, qd), rand_tensor(3, qd), rand_tensor(3, qd)};
    struct attrs at = {.n = 0};
    add_i(&at, "q_num_heads", 2);
    add_i(&at, "kv_num_heads", 2);
    struct kiln_value *out[2] = {0};
    kiln_err err = {0};
    expect_fail(run_node("", "LinearAttention", 27, at.a, at.n, in, 3, out, 2, &err), &err,
                "requires the decay input", "LinearAttention default rule without decay");
    add_s(&at, "update_rule", "linear");
    kiln_value_free(in[1]);
    in[1] = rand_tensor(3, kd);
    expect_fail(run_node("", "LinearAttention", 27, at.a, at.n, in, 3, out, 2, &err), &err,
                "key width is 6; expected 4", "LinearAttention key width");
    free_all(in, 3);
}

/* ------------------------------------------------------------------ CausalConvWithState */

static void test_causal_conv(void)
{
    for (int t = 0; t < 30; t++) {
        int64_t B = 1 + rng_int(2), C = 1 + rng_int(3), L = 1 + rng_int(6), kw = 1 + rng_int(4);
        bool bias = rng_int(2), past = rng_int(2), silu = rng_int(2);
        int64_t xd[3] = {B, C, L}, wd[3] = {C, 1, kw}, bd[1] = {C}, pd[3] = {B, C, kw - 1};
        struct kiln_value *in[4] = {rand_tensor(3, xd), rand_tensor(3, wd),
                                    bias ? rand_tensor(1, bd) : NULL, past ? rand_tensor(3, pd) : NULL};
        struct attrs at = {.n = 0};
        if (silu) add_s(&at, "activation", rng_int(2) ? "silu" : "swish");
        struct kiln_value *out[2] = {0};
        kiln_err err = {0};
        kiln_status st = run_node("", "CausalConvWithState", 27, at.a, at.n, in, 4, out, 2, &err);
        CHECK(st == KILN_OK, "CausalConvWithState: %s", err.msg);
        if (st == KILN_OK) {
            size_t ny = (size_t)(B * C * L), ns = (size_t)(B * C * (kw - 1));
            double *want = calloc(ny, sizeof *want), *wst = calloc(ns + 1, sizeof *wst);
            const float *x = in[0]->t.data, *w = in[1]->t.data;
            const float *b = bias ? in[2]->t.data : NULL, *p = past ? in[3]->t.data : NULL;
            for (int64_t bb = 0; bb < B; bb++)
                for (int64_t c = 0; c < C; c++) {
                    /* Element at position i of the history: past (or 0) for i < 0. */
                    for (int64_t l = 0; l < L; l++) {
                        double acc = b ? b[c] : 0;
                        for (int64_t j = 0; j < kw; j++) {
                            int64_t i = l + j - (kw - 1);
                            double xv = i >= 0 ? x[(bb * C + c) * L + i]
                                               : p ? p[(bb * C + c) * (kw - 1) + (kw - 1 + i)] : 0;
                            acc += w[c * kw + j] * xv;
                        }
                        want[(bb * C + c) * L + l] = silu ? acc / (1 + exp(-acc)) : acc;
                    }
                    for (int64_t j = 0; j < kw - 1; j++) {
                        int64_t i = L - (kw - 1) + j;
                        wst[(bb * C + c) * (kw - 1) + j] =
                            i >= 0 ? x[(bb * C + c) * L + i] : p ? p[(bb * C + c) * (kw - 1) + (kw - 1 + i)] : 0;
                    }
                }
            close_to(out[0], want, ny, 1e-4, "CausalConvWithState output");
            close_to(out[1], wst, ns, 1e-4, "CausalConvWithState present_state");
            free(want);
            free(wst);
            free_all(out, 2);
        }
        free_all(in, 4);
    }
    int64_t xd[3] = {1, 2, 5}, wd[3] = {2, 1, 3}, pd[3] = {1, 2, 3};
    struct kiln_value *in[4] = {rand_tensor(3, xd), rand_tensor(3, wd), NULL, rand_tensor(3, pd)};
    struct kiln_value *out[2] = {0};
    kiln_err err = {0};
    expect_fail(run_node("", "CausalConvWithState", 27, NULL, 0, in, 4, out, 2, &err), &err,
                "input past_state is [1,2,3]; expected [1, 2, 2]", "CausalConvWithState past");
    free_all(in, 4);
}

/* ------------------------------------------------------------------ FlexAttention */

static void test_flex_attention(void)
{
    for (int t = 0; t < 20; t++) {
        int64_t B = 1 + rng_int(2), hkv = 1 + rng_int(2), hq = hkv * (1 + rng_int(2));
        int64_t L = 1 + rng_int(4);
        int64_t S = 1 + rng_int(5), E = 1 + rng_int(6), Ev = 1 + rng_int(4);
        int64_t qd[4] = {B, hq, L, E}, kd[4] = {B, hkv, S, E}, vd[4] = {B, hkv, S, Ev};
        struct kiln_value *in[3] = {rand_tensor(4, qd), rand_tensor(4, kd), rand_tensor(4, vd)};
        float scale = rng_int(2) ? 0.7f : 0.0f;
        struct attrs at = {.n = 0};
        if (scale != 0) add_f(&at, "scale", scale);
        struct kiln_value *out[1] = {0};
        kiln_err err = {0};
        kiln_status st =
            run_node("ai.onnx.preview", "FlexAttention", 1, at.a, at.n, in, 3, out, 1, &err);
        CHECK(st == KILN_OK, "FlexAttention: %s", err.msg);
        if (st == KILN_OK) {
            double sc = scale != 0 ? scale : 1 / sqrt((double)E);
            size_t n = (size_t)(B * hq * L * Ev);
            double *want = calloc(n, sizeof *want), *p = calloc((size_t)S, sizeof *p);
            const float *q = in[0]->t.data, *k = in[1]->t.data, *v = in[2]->t.data;
            for (int64_t b = 0; b < B; b++)
                for (int64_t h = 0; h < hq; h++) {
                    int64_t kh = h / (hq / hkv);
                    for (int64_t i = 0; i < L; i++) {
                        double mx = -INFINITY, sum = 0;
                        for (int64_t j = 0; j < S; j++) {
                            double dot = 0;
                            for (int64_t e = 0; e < E; e++)
                                dot += q[((b * hq + h) * L + i) * E + e] * k[((b * hkv + kh) * S + j) * E + e];
                            p[j] = sc * dot;
                            mx = fmax(mx, p[j]);
                        }
                        for (int64_t j = 0; j < S; j++) sum += (p[j] = exp(p[j] - mx));
                        for (int64_t m = 0; m < Ev; m++) {
                            double acc = 0;
                            for (int64_t j = 0; j < S; j++) acc += p[j] / sum * v[((b * hkv + kh) * S + j) * Ev + m];
                            want[((b * hq + h) * L + i) * Ev + m] = acc;
                        }
                    }
                }
            close_to(out[0], want, n, 1e-4, "FlexAttention");
            free(want);
            free(p);
            kiln_value_free(out[0]);
        }
        free_all(in, 3);
    }
    int64_t qd[4] = {1, 3, 2, 4}, kd[4] = {1, 2, 2, 4};
    struct kiln_value *in[3] = {rand_tensor(4, qd), rand_tensor(4, kd), rand_tensor(4, kd)};
    struct kiln_value *out[1] = {0};
    kiln_err err = {0};
    expect_fail(run_node("ai.onnx.preview", "FlexAttention", 1, NULL, 0, in, 3, out, 1, &err), &err,
                "q heads 3 not a multiple of kv heads 2", "FlexAttention GQA heads");
    free_all(in, 3);
}

int main(void)
{
    rng_seed(0x243F6A8885A308D3ull);
    test_affine_grid();
    test_roi_align();
    test_max_roi_pool();
    test_deform_conv();
    test_swiglu();
    test_linear_attention();
    test_causal_conv();
    test_flex_attention();
    return test_summary("test_vision");
}
