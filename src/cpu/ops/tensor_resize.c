/* tensor_resize.c: ONNX resampling ops, following onnx/onnx docs/Operators.md and the
 * reference implementation's numerics (onnx/reference/ops/op_resize.py, op_grid_sample.py):
 *
 *  - Resize 10..19: nearest (all nearest_mode values), linear and cubic (cubic_coeff_a,
 *    exclude_outside, antialias), every coordinate_transformation_mode including
 *    tf_crop_and_resize with roi and extrapolation_value, axes and keep_aspect_ratio_policy
 *    (18+). Opset 10 uses asymmetric coordinates and, for nearest, ONNX Runtime's "simple"
 *    rounding (floor when upsampling, ceil when downsampling), as Upsample does.
 *  - Upsample 7..9 (scales attribute, then input): nearest or linear, asymmetric coordinates.
 *  - GridSample 16+ (2-D at 16; N-D from 20; bilinear/bicubic were renamed linear/cubic).
 *  - Col2Im 18 and CenterCropPad 18.
 *
 * Linear and cubic interpolation are tensor products of 1-D filters, so Resize runs one
 * resized axis at a time over a float64 buffer: each output position of the axis gets a
 * short list of (source index, weight) taps, computed exactly as the reference computes the
 * 1-D coefficients (ratio in (0, 1], edge-clamped neighbours). Nearest Resize is an index
 * gather and moves raw elements, so it works for every dtype. 4-D inputs that keep N and C
 * (images) take a float32 fast path built from the same taps (rz_fast below).
 *
 * Attributes are decoded by prepare (tensor_ops.h, "Prepared kernels"): the mode and
 * coordinate strings are turned into the enums below there, and unknown ones refused. None of
 * these ops runs in place (each reads neighbours of the element it writes).
 */
#include <math.h>
#include <string.h>

#include "cpu/ops/tensor_ops.h"

enum { RZ_NEAREST, RZ_LINEAR, RZ_CUBIC };
enum { CT_HALF, CT_HALF_SYM, CT_PYTORCH, CT_ALIGN, CT_ASYM, CT_TF_CROP };
enum { NM_ROUND_FLOOR, NM_ROUND_CEIL, NM_FLOOR, NM_CEIL, NM_SIMPLE };

struct rz {
    int mode, ct, nm;
    double A, extrap;
    bool exclude, antialias;
};

/* The input coordinate of output position x along an axis (reference
 * _interpolate_1d_with_x); *ext is set when tf_crop_and_resize lands outside the input. */
static double rz_coord(const struct rz *p, double x, double scale, int64_t in, int64_t out,
                       double r0, double r1, bool *ext)
{
    double ow = scale * (double)in, xo;
    *ext = false;
    switch (p->ct) {
    case CT_ALIGN: return ow == 1 ? 0 : x * (double)(in - 1) / (ow - 1);
    case CT_ASYM: return x / scale;
    case CT_TF_CROP:
        xo = ow == 1 ? (r1 - r0) * (double)(in - 1) / 2 : x * (r1 - r0) * (double)(in - 1) / (ow - 1);
        xo += r0 * (double)(in - 1);
        *ext = xo < 0 || xo > (double)(in - 1);
        return xo;
    case CT_PYTORCH: return ow == 1 ? -0.5 : (x + 0.5) / scale - 0.5;
    case CT_HALF_SYM: {
        double adj = (double)out / ow, center = (double)in / 2;
        return center * (1 - adj) + (x + 0.5) / scale - 0.5;
    }
    default: return (x + 0.5) / scale - 0.5;
    }
}

static double cubic_w(double x, double A)
{
    x = fabs(x);
    if (x <= 1) return ((A + 2) * x - (A + 3)) * x * x + 1;
    if (x < 2) return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A;
    return 0;
}

/* Taps per output position for linear/cubic (with or without antialias) at this scale. */
static int64_t rz_ntaps(const struct rz *p, double scale)
{
    if (!p->antialias || scale >= 1) return p->mode == RZ_CUBIC ? 4 : 2;
    double s = scale;
    int64_t start = p->mode == RZ_CUBIC ? (int64_t)floor(-2 / s) + 1 : (int64_t)floor(-1 / s) + 1;
    return 2 - 2 * start;
}

/* Fills taps (ti, tw: out * n entries) and extrapolation flags te for one axis. */
static void rz_taps(const struct rz *p, int64_t in, int64_t out, double scale, double r0,
                    double r1, int64_t n, int64_t *ti, double *tw, bool *te)
{
    for (int64_t o = 0; o < out; o++) {
        int64_t *idx = ti + o * n;
        double *w = tw + o * n, sum = 0;
        double xo = rz_coord(p, (double)o, scale, in, out, r0, r1, &te[o]);
        if (te[o]) continue;
        double fl = floor(xo), ratio = xo - fl;
        int64_t x0 = (int64_t)fl, start;
        if (ratio == 0) { /* the reference keeps ratio in (0, 1]: take the left neighbour */
            ratio = 1;
            x0 -= 1;
        }
        start = 1 - n / 2;
        for (int64_t t = 0; t < n; t++) {
            double c, rel = (double)(start + t) - ratio; /* neighbour minus the sample point */
            if (!p->antialias || scale >= 1) {
                if (p->mode == RZ_LINEAR) c = t == 0 ? 1 - ratio : ratio;
                else if (t == 0) c = ((p->A * (ratio + 1) - 5 * p->A) * (ratio + 1) + 8 * p->A) * (ratio + 1) - 4 * p->A;
                else if (t == 1) c = ((p->A + 2) * ratio - (p->A + 3)) * ratio * ratio + 1;
                else if (t == 2) c = ((p->A + 2) * (1 - ratio) - (p->A + 3)) * (1 - ratio) * (1 - ratio) + 1;
                else c = ((p->A * (2 - ratio) - 5 * p->A) * (2 - ratio) + 8 * p->A) * (2 - ratio) - 4 * p->A;
            } else if (p->mode == RZ_LINEAR) {
                c = 1 - fabs(rel * scale);
                c = c < 0 ? 0 : c > 1 ? 1 : c;
            } else {
                c = cubic_w(rel * scale, p->A);
            }
            int64_t i = x0 + start + t;
            if (p->exclude && (i < 0 || i >= in)) c = 0;
            idx[t] = i < 0 ? 0 : i >= in ? in - 1 : i;
            w[t] = c;
            sum += c;
        }
        /* The reference normalizes antialias filters and exclude_outside weights. */
        if ((p->antialias && scale < 1) || p->exclude)
            for (int64_t t = 0; t < n; t++) w[t] = sum != 0 ? w[t] / sum : 0;
    }
}

/* Nearest source index along an axis for output position o; -1 = extrapolate. */
static int64_t rz_nearest(const struct rz *p, int64_t o, double scale, int64_t in, int64_t out,
                          double r0, double r1)
{
    bool ext;
    double xo = rz_coord(p, (double)o, scale, in, out, r0, r1, &ext);
    if (ext) return -1;
    int64_t i;
    if (p->nm == NM_SIMPLE) {
        i = scale < 1 ? (int64_t)ceil(xo) : (int64_t)floor(xo);
    } else {
        double fl = floor(xo), ratio = xo - fl;
        if (ratio == 0) i = (int64_t)fl;
        else if (p->nm == NM_ROUND_FLOOR) i = (int64_t)fl + (ratio > 0.5);
        else if (p->nm == NM_ROUND_CEIL) i = (int64_t)fl + (ratio >= 0.5);
        else if (p->nm == NM_FLOOR) i = (int64_t)fl;
        else i = (int64_t)fl + 1;
    }
    return i < 0 ? 0 : i >= in ? in - 1 : i;
}

/* ------------------------------------------------------------------ 4-D fast path
 *
 * [N, C, H, W] float32 (linear, cubic) or 4-byte (nearest) tensors with N and C kept: the
 * per-row and per-column taps are computed once per run by the same functions as the
 * generic path (rz_taps, rz_nearest), then each output row is built from width-resized input
 * rows (kiln_resize_hrow / vrow, cpu/resize_isa.h), in float32 rather than float64: within
 * a few float32 roundings of the generic path for finite inputs. (A zero-weight tap on an
 * infinite input gives NaN here and is skipped there; the ONNX reference also gives NaN.)
 * Antialiased downscaling (more than 4 taps) takes the generic path. Work is split over
 * planes and blocks of RZF_ROWS output rows; each block keeps the last 4 width-resized input
 * rows it used, so upscaling resizes each input row about once. The result of an element
 * does not depend on the split. */

#include "base/pool.h"
#include "cpu/resize_isa.h"

#define RZF_ROWS 16

struct rzf {
    int64_t H, W, OH, OW;
    int ny, nx;                       /* taps per output row / column (1, 2 or 4) */
    const int32_t *yi, *xi;           /* source rows / columns, OH * ny and OW * nx */
    const float *yw, *xw;             /* their weights */
    const unsigned char *ye;          /* rows that are extrapolated (tf_crop_and_resize) */
    const int32_t *xcols;             /* columns that are extrapolated, nxcols of them */
    size_t nxcols, nblk;              /* blocks of RZF_ROWS rows per plane */
    const float *erow;                /* the output row of an extrapolated row */
    float extrap;
    uint32_t ebits;                   /* nearest: the extrapolation value's bits */
    const void *x;
    void *y;
    float *buf;                       /* per worker: 4 rows of OW floats */
    void (*hrow)(const float *, float *, const int32_t *, const float *, int, size_t);
    void (*vrow)(float *, const float *const *, const float *, int, size_t);
};

static void rzf_linear_task(void *ctx, size_t b0, size_t b1, int worker)
{
    const struct rzf *f = ctx;
    size_t OW = (size_t)f->OW;
    float *slot[4];
    for (int s = 0; s < 4; s++) slot[s] = f->buf + ((size_t)worker * 4 + (size_t)s) * OW;
    for (size_t task = b0; task < b1; task++) {
        size_t plane = task / f->nblk, r0 = task % f->nblk * RZF_ROWS;
        size_t r1 = r0 + RZF_ROWS < (size_t)f->OH ? r0 + RZF_ROWS : (size_t)f->OH;
        const float *src = (const float *)f->x + plane * (size_t)(f->H * f->W);
        float *dst = (float *)f->y + plane * (size_t)f->OH * OW;
        int64_t sid[4] = {-1, -1, -1, -1}; /* the input row each slot holds */
        for (size_t oh = r0; oh < r1; oh++) {
            float *o = dst + oh * OW;
            if (f->ye[oh]) {
                memcpy(o, f->erow, OW * sizeof *o);
                continue;
            }
            const int32_t *iy = f->yi + oh * (size_t)f->ny;
            const float *rows[4];
            for (int t = 0; t < f->ny; t++) {
                int s = 0;
                while (s < 4 && sid[s] != iy[t]) s++;
                if (s == 4) { /* resize row iy[t] into a slot this output row does not use */
                    for (s = 0; s < 4; s++) {
                        bool used = false;
                        for (int u = 0; u < f->ny; u++) used |= sid[s] == iy[u];
                        if (!used) break;
                    }
                    f->hrow(src + (size_t)iy[t] * (size_t)f->W, slot[s], f->xi, f->xw, f->nx, OW);
                    sid[s] = iy[t];
                }
                rows[t] = slot[s];
            }
            f->vrow(o, rows, f->yw + oh * (size_t)f->ny, f->ny, OW);
            for (size_t c = 0; c < f->nxcols; c++) o[f->xcols[c]] = f->extrap;
        }
    }
}

static void rzf_nearest_task(void *ctx, size_t b0, size_t b1, int worker)
{
    (void)worker;
    const struct rzf *f = ctx;
    size_t OW = (size_t)f->OW;
    for (size_t task = b0; task < b1; task++) {
        size_t plane = task / f->nblk, r0 = task % f->nblk * RZF_ROWS;
        size_t r1 = r0 + RZF_ROWS < (size_t)f->OH ? r0 + RZF_ROWS : (size_t)f->OH;
        const uint32_t *src = (const uint32_t *)f->x + plane * (size_t)(f->H * f->W);
        uint32_t *dst = (uint32_t *)f->y + plane * (size_t)f->OH * OW;
        for (size_t oh = r0; oh < r1; oh++) {
            uint32_t *o = dst + oh * OW;
            if (f->yi[oh] < 0) {
                for (size_t j = 0; j < OW; j++) o[j] = f->ebits;
                continue;
            }
            const uint32_t *row = src + (size_t)f->yi[oh] * (size_t)f->W;
            for (size_t j = 0; j < OW; j++) o[j] = f->xi[j] < 0 ? f->ebits : row[f->xi[j]];
        }
    }
}

/* Taps of one axis as int32 / float (n per position; te: extrapolated positions, taps 0).
 * An axis kept as is gets one tap of weight 1. */
static kiln_status rzf_axis(struct kiln_kctx *k, const struct rz *p, int64_t in, int64_t out, double scale,
                            double r0, double r1, bool ident, int n, int32_t *idx, float *w, unsigned char *te)
{
    if (ident) {
        for (int64_t o = 0; o < out; o++) {
            idx[o] = (int32_t)o;
            w[o] = 1;
        }
        return KILN_OK;
    }
    int64_t *ti;
    double *tw;
    bool *tb;
    KILN_TRY(kiln_scratch(k, (size_t)(out * n) * sizeof *ti, (void **)&ti));
    KILN_TRY(kiln_scratch(k, (size_t)(out * n) * sizeof *tw, (void **)&tw));
    KILN_TRY(kiln_scratch(k, (size_t)out * sizeof *tb, (void **)&tb));
    rz_taps(p, in, out, scale, r0, r1, n, ti, tw, tb);
    for (int64_t o = 0; o < out; o++) {
        te[o] = tb[o];
        for (int t = 0; t < n; t++) {
            idx[o * n + t] = tb[o] ? 0 : (int32_t)ti[o * n + t];
            w[o * n + t] = tb[o] ? 0.0f : (float)tw[o * n + t];
        }
    }
    return KILN_OK;
}

/* The fast path for x (into o, already allocated) when it applies; *done tells. */
static kiln_status rz_fast(struct kiln_kctx *k, const struct rz *p, const struct kiln_tensor *x,
                           struct kiln_tensor *o, const double *scale, const int64_t *od, const double *roi,
                           const bool *ident, bool *done)
{
    *done = false;
    if (x->rank != 4) return KILN_OK;
    /* N and C must be kept: ident, or for tf_crop_and_resize the same size with roi 0..1,
     * which maps every position onto itself (x * (in - 1) / (in - 1) is exact). */
    for (int a = 0; a < 2; a++)
        if (!ident[a] && !(p->ct == CT_TF_CROP && od[a] == x->dims[a] && scale[a] == 1 && roi[a] == 0 &&
                           roi[4 + a] == 1))
            return KILN_OK;
    for (int a = 2; a < 4; a++)
        if (x->dims[a] > INT32_MAX || od[a] > INT32_MAX) return KILN_OK;
    bool nearest = p->mode == RZ_NEAREST;
    if (nearest ? kiln_dtype_size(x->dtype) != 4 || x->dtype == KILN_DTYPE_STRING : x->dtype != KILN_DTYPE_F32)
        return KILN_OK;
    int nt[2] = {1, 1};
    for (int a = 0; a < 2 && !nearest; a++)
        if (!ident[2 + a]) {
            int64_t n = rz_ntaps(p, scale[2 + a]);
            if (n > 4) return KILN_OK; /* antialiased downscaling */
            nt[a] = (int)n;
        }
    struct rzf f = {.H = x->dims[2], .W = x->dims[3], .OH = od[2], .OW = od[3], .ny = nt[0], .nx = nt[1],
                    .extrap = (float)p->extrap, .x = x->data, .y = o->data};
    size_t planes = (size_t)(x->dims[0] * x->dims[1]), OH = (size_t)f.OH, OW = (size_t)f.OW;
    int threads = kiln_pool_threads(k->pool);
    f.nblk = (OH + RZF_ROWS - 1) / RZF_ROWS;
    int32_t *yi, *xi;
    KILN_TRY(kiln_scratch(k, OH * (size_t)f.ny * sizeof *yi, (void **)&yi));
    KILN_TRY(kiln_scratch(k, OW * (size_t)f.nx * sizeof *xi, (void **)&xi));
    f.yi = yi;
    f.xi = xi;
    if (nearest) {
        for (size_t i = 0; i < OH; i++)
            yi[i] = ident[2] ? (int32_t)i : (int32_t)rz_nearest(p, (int64_t)i, scale[2], f.H, f.OH, roi[2], roi[6]);
        for (size_t i = 0; i < OW; i++)
            xi[i] = ident[3] ? (int32_t)i : (int32_t)rz_nearest(p, (int64_t)i, scale[3], f.W, f.OW, roi[3], roi[7]);
        struct kiln_tensor tmp = {.dtype = x->dtype, .data = &f.ebits};
        kiln_tensor_set_f64(&tmp, 0, p->extrap);
        kiln_pool_for(k->pool, planes * f.nblk, kiln_pool_grain((size_t)RZF_ROWS * OW, 32768), rzf_nearest_task, &f);
        *done = true;
        return KILN_OK;
    }
    float *yw, *xw, *erow;
    unsigned char *ye, *xe;
    int32_t *xcols;
    KILN_TRY(kiln_scratch(k, OH * (size_t)f.ny * sizeof *yw, (void **)&yw));
    KILN_TRY(kiln_scratch(k, OW * (size_t)f.nx * sizeof *xw, (void **)&xw));
    KILN_TRY(kiln_scratch(k, OH + OW, (void **)&ye));
    KILN_TRY(kiln_scratch(k, OW * sizeof *xcols, (void **)&xcols));
    KILN_TRY(kiln_scratch(k, OW * sizeof *erow, (void **)&erow));
    KILN_TRY(kiln_scratch(k, (size_t)threads * 4 * OW * sizeof *f.buf, (void **)&f.buf));
    xe = ye + OH;
    KILN_TRY(rzf_axis(k, p, f.H, f.OH, scale[2], roi[2], roi[6], ident[2], f.ny, yi, yw, ye));
    KILN_TRY(rzf_axis(k, p, f.W, f.OW, scale[3], roi[3], roi[7], ident[3], f.nx, xi, xw, xe));
    for (size_t j = 0; j < OW; j++) {
        double acc = 0; /* an extrapolated row, resized along the width as the generic path does */
        for (int t = 0; t < f.nx; t++) acc += (double)xw[j * (size_t)f.nx + (size_t)t] * p->extrap;
        erow[j] = xe[j] ? f.extrap : (float)acc;
        if (xe[j]) xcols[f.nxcols++] = (int32_t)j;
    }
    f.yw = yw;
    f.xw = xw;
    f.ye = ye;
    f.xcols = xcols;
    f.erow = erow;
    f.hrow = KILN_ISA_SELECT(kiln_resize_hrow_isa);
    f.vrow = KILN_ISA_SELECT(kiln_resize_vrow_isa);
    kiln_pool_for(k->pool, planes * f.nblk,
                  kiln_pool_grain((size_t)RZF_ROWS * OW * (size_t)(f.ny + f.nx), 32768), rzf_linear_task, &f);
    *done = true;
    return KILN_OK;
}

/* Resizes x into output 0 with per-axis scales and output sizes (roi: per-axis start/end,
 * used by tf_crop_and_resize). */
static kiln_status rz_run(struct kiln_kctx *k, const struct rz *p, const struct kiln_tensor *x,
                          const double *scale, const int64_t *od, const double *roi)
{
    int r = x->rank;
    struct kiln_tensor *o;
    KILN_TRY(kiln_out_tensor(k, 0, x->dtype, r, od, &o));
    size_t on = kiln_tensor_numel(o), esz = kiln_dtype_size(x->dtype);
    if (on == 0) return KILN_OK;
    for (int a = 0; a < r; a++)
        if (x->dims[a] == 0)
            return kiln_kfail(k, KILN_E_INVALID_ARG, "cannot resize an empty axis %d to %lld", a,
                              (long long)od[a]);
    bool ident[KILN_MAX_RANK];
    for (int a = 0; a < r; a++)
        ident[a] = od[a] == x->dims[a] && scale[a] == 1 && p->ct != CT_TF_CROP;
    bool done;
    KILN_TRY(rz_fast(k, p, x, o, scale, od, roi, ident, &done));
    if (done) return KILN_OK;
    if (p->mode == RZ_NEAREST) {
        int64_t *maps[KILN_MAX_RANK], xs[KILN_MAX_RANK], total = 0;
        unsigned char cval[16] = {0};
        for (int a = 0; a < r; a++) total += od[a];
        int64_t *buf;
        KILN_TRY(kiln_scratch(k, (size_t)total * sizeof *buf, (void **)&buf));
        for (int a = 0; a < r; a++) {
            maps[a] = buf;
            buf += od[a];
            for (int64_t i = 0; i < od[a]; i++)
                maps[a][i] = ident[a] ? i
                                      : rz_nearest(p, i, scale[a], x->dims[a], od[a], roi[a],
                                                   roi[r + a]);
        }
        if (x->dtype != KILN_DTYPE_STRING) {
            struct kiln_tensor tmp = {.dtype = x->dtype, .data = cval};
            kiln_tensor_set_f64(&tmp, 0, p->extrap);
        }
        char *ph = kiln_tops_placeholder(o);
        kiln_tops_strides(r, x->dims, xs);
        kiln_tops_map_copy(o->data, x->data, esz, r, od, (const int64_t *const *)maps, xs, cval);
        return kiln_tops_own_strings(k, o, ph);
    }
    if (!kiln_dtype_is_float(x->dtype) && !kiln_dtype_is_int(x->dtype))
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "%s interpolation of %s",
                          p->mode == RZ_LINEAR ? "linear" : "cubic", kiln_dtype_name(x->dtype));
    /* Two float64 buffers big enough for every intermediate shape. */
    size_t n = kiln_tensor_numel(x), cap = n, cur_n = n;
    int64_t cd[KILN_MAX_RANK];
    memcpy(cd, x->dims, sizeof cd);
    for (int a = 0; a < r; a++) {
        if (ident[a]) continue;
        if (!kiln_mul_size(cur_n / (size_t)cd[a], (size_t)od[a], &cur_n) ||
            cur_n > KILN_MAX_NUMEL)
            return kiln_kfail(k, KILN_E_LIMIT, "intermediate resize buffer is too large");
        cd[a] = od[a];
        if (cur_n > cap) cap = cur_n;
    }
    double *b0, *b1;
    KILN_TRY(kiln_scratch(k, cap * sizeof *b0, (void **)&b0));
    KILN_TRY(kiln_scratch(k, cap * sizeof *b1, (void **)&b1));
    for (size_t i = 0; i < n; i++) b0[i] = kiln_tensor_get_f64(x, i);
    memcpy(cd, x->dims, sizeof cd);
    for (int a = 0; a < r; a++) {
        if (ident[a]) continue;
        int64_t in = cd[a], out = od[a], nt = rz_ntaps(p, scale[a]);
        /* Antialiasing at a tiny scale widens the filter; refuse absurd footprints. */
        if (nt > (1 << 16) || (uint64_t)out * (uint64_t)nt > KILN_MAX_NUMEL)
            return kiln_kfail(k, KILN_E_LIMIT, "scale %g on axis %d needs %lld taps per output",
                              scale[a], a, (long long)nt);
        size_t outer = 1, inner = 1;
        for (int b = 0; b < a; b++) outer *= (size_t)cd[b];
        for (int b = a + 1; b < r; b++) inner *= (size_t)cd[b];
        int64_t *ti;
        double *tw;
        bool *te;
        KILN_TRY(kiln_scratch(k, (size_t)(out * nt) * sizeof *ti, (void **)&ti));
        KILN_TRY(kiln_scratch(k, (size_t)(out * nt) * sizeof *tw, (void **)&tw));
        KILN_TRY(kiln_scratch(k, (size_t)out * sizeof *te, (void **)&te));
        rz_taps(p, in, out, scale[a], roi[a], roi[r + a], nt, ti, tw, te);
        for (size_t u = 0; u < outer; u++)
            for (int64_t q = 0; q < out; q++) {
                double *dst = b1 + (u * (size_t)out + (size_t)q) * inner;
                if (te[q]) {
                    for (size_t j = 0; j < inner; j++) dst[j] = p->extrap;
                    continue;
                }
                for (size_t j = 0; j < inner; j++) dst[j] = 0;
                for (int64_t t = 0; t < nt; t++) {
                    double w = tw[q * nt + t];
                    if (w == 0) continue;
                    const double *src = b0 + (u * (size_t)in + (size_t)ti[q * nt + t]) * inner;
                    for (size_t j = 0; j < inner; j++) dst[j] += w * src[j];
                }
            }
        double *sw = b0;
        b0 = b1;
        b1 = sw;
        cd[a] = out;
    }
    for (size_t i = 0; i < on; i++) kiln_tensor_set_f64(o, i, b0[i]);
    return KILN_OK;
}

/* Reads a float tensor (scales, roi) into v[0..*n). */
static kiln_status read_floats(struct kiln_kctx *k, const struct kiln_tensor *t, const char *what,
                               double *v, size_t cap, size_t *n)
{
    *n = kiln_tensor_numel(t);
    if (!kiln_dtype_is_float(t->dtype) || t->rank > 1 || *n > cap)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "'%s' must be a 1-D float tensor of at most %zu "
                          "entries (got %s, %zu)", what, cap, kiln_dtype_name(t->dtype), *n);
    for (size_t i = 0; i < *n; i++) v[i] = kiln_tensor_get_f64(t, i);
    return KILN_OK;
}

/* Output sizes from scales: floor(in * scale), as the reference's astype(int). */
static kiln_status sizes_from_scales(struct kiln_kctx *k, const struct kiln_tensor *x,
                                     const double *scale, int64_t *od)
{
    for (int a = 0; a < x->rank; a++) {
        double v = floor(scale[a] * (double)x->dims[a]);
        if (!(scale[a] > 0) || v > (double)KILN_MAX_NUMEL)
            return kiln_kfail(k, KILN_E_INVALID_ARG, "scale %g on axis %d is invalid", scale[a], a);
        od[a] = (int64_t)v;
    }
    return KILN_OK;
}

/* Resize: the interpolation, and from opset 18 the `axes` attribute (NULL when absent) and
 * keep_aspect_ratio_policy (checked only when sizes are given, as before). */
struct resize_state {
    struct rz p;
    const int64_t *axes;
    size_t n_axes;
    const char *policy;
};

static kiln_status decode_resize(struct kiln_kctx *k, struct resize_state *s)
{
    memset(s, 0, sizeof *s);
    struct rz *p = &s->p;
    p->A = -0.75;
    s->policy = "stretch";
    const char *mode = kiln_attr_s(k, "mode", "nearest");
    p->mode = strcmp(mode, "nearest") == 0 ? RZ_NEAREST
              : strcmp(mode, "linear") == 0 ? RZ_LINEAR
              : strcmp(mode, "cubic") == 0 && k->opset >= 11 ? RZ_CUBIC
                                                             : -1;
    if (p->mode < 0) return kiln_kfail(k, KILN_E_INVALID_MODEL, "mode '%s' is not valid", mode);
    if (k->opset < 11) {
        p->ct = CT_ASYM;
        p->nm = NM_SIMPLE;
        return KILN_OK;
    }
    const char *ct = kiln_attr_s(k, "coordinate_transformation_mode", "half_pixel");
    static const char *const cts[] = {"half_pixel", "half_pixel_symmetric", "pytorch_half_pixel",
                                      "align_corners", "asymmetric", "tf_crop_and_resize"};
    p->ct = -1;
    for (int i = 0; i < 6; i++)
        if (strcmp(ct, cts[i]) == 0) p->ct = i;
    if (p->ct < 0 || (p->ct == CT_HALF_SYM && k->opset < 19))
        return kiln_kfail(k, KILN_E_INVALID_MODEL,
                          "coordinate_transformation_mode '%s' is not valid", ct);
    const char *nm = kiln_attr_s(k, "nearest_mode", "round_prefer_floor");
    static const char *const nms[] = {"round_prefer_floor", "round_prefer_ceil", "floor", "ceil"};
    p->nm = -1;
    for (int i = 0; i < 4; i++)
        if (strcmp(nm, nms[i]) == 0) p->nm = i;
    if (p->nm < 0) return kiln_kfail(k, KILN_E_INVALID_MODEL, "nearest_mode '%s' is not valid", nm);
    p->A = kiln_attr_f(k, "cubic_coeff_a", -0.75f);
    p->exclude = kiln_attr_i(k, "exclude_outside", 0) != 0;
    p->extrap = kiln_attr_f(k, "extrapolation_value", 0.0f);
    p->antialias = k->opset >= 18 && kiln_attr_i(k, "antialias", 0) != 0;
    if (k->opset >= 18) {
        s->n_axes = kiln_attr_ints(k, "axes", &s->axes);
        s->policy = kiln_attr_s(k, "keep_aspect_ratio_policy", "stretch");
    }
    return KILN_OK;
}

KILN_PREPARE_WITH(resize_prepare, struct resize_state, decode_resize)

kiln_status kiln_tops_resize_prepare(struct kiln_kprep *p)
{
    return resize_prepare(p);
}

kiln_status kiln_tops_resize(struct kiln_kctx *k)
{
    struct resize_state dec;
    const struct resize_state *rs;
    KILN_STATE_OR_DECODE(k, decode_resize, dec, rs);
    const struct kiln_tensor *x;
    KILN_TRY(kiln_in_req(k, 0, &x));
    int r = x->rank;
    struct rz p = rs->p;
    double scale[KILN_MAX_RANK], roi[2 * KILN_MAX_RANK];
    int64_t od[KILN_MAX_RANK];
    for (int a = 0; a < r; a++) {
        scale[a] = 1;
        od[a] = x->dims[a];
        roi[a] = 0;
        roi[r + a] = 1;
    }
    if (k->opset < 11) {
        const struct kiln_tensor *st;
        size_t ns;
        KILN_TRY(kiln_in_req(k, 1, &st));
        KILN_TRY(read_floats(k, st, "scales", scale, KILN_MAX_RANK, &ns));
        if (ns != (size_t)r)
            return kiln_kfail(k, KILN_E_INVALID_ARG, "'scales' has %zu entries; rank is %d", ns, r);
        KILN_TRY(sizes_from_scales(k, x, scale, od));
        return rz_run(k, &p, x, scale, od, roi);
    }
    /* axes (18+) */
    int axes[KILN_MAX_RANK];
    size_t na = (size_t)r;
    const int64_t *av = NULL;
    if (k->opset >= 18) {
        size_t c = rs->n_axes;
        av = rs->axes;
        if (av) {
            if (c > (size_t)r)
                return kiln_kfail(k, KILN_E_INVALID_ARG, "'axes' has %zu entries; rank is %d", c, r);
            na = c;
        }
    }
    bool seen[KILN_MAX_RANK] = {0};
    for (size_t i = 0; i < na; i++) {
        if (av) KILN_TRY(kiln_norm_axis(k, av[i], r, "axes entry", &axes[i]));
        else axes[i] = (int)i;
        if (seen[axes[i]]) return kiln_kfail(k, KILN_E_INVALID_ARG, "axis %d repeats", axes[i]);
        seen[axes[i]] = true;
    }
    const struct kiln_tensor *rt = kiln_in(k, 1), *st = kiln_in(k, 2), *zt = kiln_in(k, 3);
    if (st && kiln_tensor_numel(st) == 0) st = NULL;
    if (zt && kiln_tensor_numel(zt) == 0) zt = NULL;
    if ((st != NULL) == (zt != NULL))
        return kiln_kfail(k, KILN_E_INVALID_ARG, "exactly one of 'scales' and 'sizes' must be given");
    double v[2 * KILN_MAX_RANK];
    size_t nv;
    if (p.ct == CT_TF_CROP && rt && kiln_tensor_numel(rt)) {
        KILN_TRY(read_floats(k, rt, "roi", v, 2 * KILN_MAX_RANK, &nv));
        if (nv != 2 * na)
            return kiln_kfail(k, KILN_E_INVALID_ARG, "'roi' has %zu entries; expected %zu", nv,
                              2 * na);
        for (size_t i = 0; i < na; i++) {
            roi[axes[i]] = v[i];
            roi[r + axes[i]] = v[na + i];
        }
    }
    if (st) {
        KILN_TRY(read_floats(k, st, "scales", v, KILN_MAX_RANK, &nv));
        if (nv != na)
            return kiln_kfail(k, KILN_E_INVALID_ARG, "'scales' has %zu entries; expected %zu", nv,
                              na);
        for (size_t i = 0; i < na; i++) scale[axes[i]] = v[i];
        KILN_TRY(sizes_from_scales(k, x, scale, od));
    } else {
        int64_t sz[KILN_MAX_RANK];
        KILN_TRY(kiln_tops_read_ints(k, zt, "sizes", sz, KILN_MAX_RANK, &nv));
        if (nv != na)
            return kiln_kfail(k, KILN_E_INVALID_ARG, "'sizes' has %zu entries; expected %zu", nv,
                              na);
        for (size_t i = 0; i < na; i++) {
            if (sz[i] < 0 || sz[i] > (int64_t)KILN_MAX_NUMEL)
                return kiln_kfail(k, KILN_E_INVALID_ARG, "sizes[%zu] = %lld is invalid", i,
                                  (long long)sz[i]);
            od[axes[i]] = sz[i];
            scale[axes[i]] = (double)sz[i] / (double)x->dims[axes[i]];
        }
        const char *pol = rs->policy;
        bool larger = strcmp(pol, "not_larger") == 0, smaller = strcmp(pol, "not_smaller") == 0;
        if (!larger && !smaller && strcmp(pol, "stretch") != 0)
            return kiln_kfail(k, KILN_E_INVALID_MODEL, "keep_aspect_ratio_policy '%s' is not valid",
                              pol);
        if (larger || smaller) {
            double s = scale[axes[0]];
            for (size_t i = 1; i < na; i++)
                s = larger ? fmin(s, scale[axes[i]]) : fmax(s, scale[axes[i]]);
            for (size_t i = 0; i < na; i++) {
                scale[axes[i]] = s;
                od[axes[i]] = (int64_t)(s * (double)x->dims[axes[i]] + 0.5);
            }
        }
    }
    return rz_run(k, &p, x, scale, od, roi);
}

/* Upsample: the interpolation and, before opset 9, the `scales` attribute. */
struct upsample_state {
    struct rz p;
    const float *scales;
    size_t ns;
};

static kiln_status decode_upsample(struct kiln_kctx *k, struct upsample_state *s)
{
    const char *mode = kiln_attr_s(k, "mode", "nearest");
    s->p = (struct rz){.ct = CT_ASYM, .nm = NM_SIMPLE, .A = -0.75};
    s->p.mode = strcmp(mode, "nearest") == 0  ? RZ_NEAREST
                : strcmp(mode, "linear") == 0 || strcmp(mode, "bilinear") == 0 ? RZ_LINEAR
                                                                                : -1;
    s->scales = NULL;
    s->ns = k->opset < 9 ? kiln_attr_floats(k, "scales", &s->scales) : 0;
    if (s->p.mode < 0) return kiln_kfail(k, KILN_E_INVALID_MODEL, "mode '%s' is not valid", mode);
    return KILN_OK;
}

KILN_PREPARE_WITH(upsample_prepare, struct upsample_state, decode_upsample)

kiln_status kiln_tops_upsample_prepare(struct kiln_kprep *p)
{
    return upsample_prepare(p);
}

kiln_status kiln_tops_upsample(struct kiln_kctx *k)
{
    struct upsample_state dec;
    const struct upsample_state *us;
    KILN_STATE_OR_DECODE(k, decode_upsample, dec, us);
    const struct kiln_tensor *x;
    KILN_TRY(kiln_in_req(k, 0, &x));
    struct rz p = us->p;
    double scale[KILN_MAX_RANK], roi[2 * KILN_MAX_RANK];
    int64_t od[KILN_MAX_RANK];
    size_t ns;
    if (k->opset < 9) {
        const float *f = us->scales;
        ns = us->ns;
        if (ns != (size_t)x->rank)
            return kiln_kfail(k, KILN_E_INVALID_ARG, "'scales' has %zu entries; rank is %d", ns,
                              x->rank);
        for (size_t i = 0; i < ns; i++) scale[i] = f[i];
    } else {
        const struct kiln_tensor *st;
        KILN_TRY(kiln_in_req(k, 1, &st));
        KILN_TRY(read_floats(k, st, "scales", scale, KILN_MAX_RANK, &ns));
        if (ns != (size_t)x->rank)
            return kiln_kfail(k, KILN_E_INVALID_ARG, "'scales' has %zu entries; rank is %d", ns,
                              x->rank);
    }
    for (int a = 0; a < x->rank; a++) {
        roi[a] = 0;
        roi[x->rank + a] = 1;
    }
    KILN_TRY(sizes_from_scales(k, x, scale, od));
    return rz_run(k, &p, x, scale, od, roi);
}

/* ------------------------------------------------------------------ GridSample */

enum { PAD_ZEROS, PAD_BORDER, PAD_REFLECT };

/* Reflects x into [lo, hi] (reference _gs_reflect). */
static double gs_reflect(double x, double lo, double hi)
{
    double rng = hi - lo;
    if (rng <= 0) return lo;
    if (x < lo) {
        double dx = lo - x;
        int64_t n = (int64_t)(dx / rng);
        double r = dx - (double)n * rng;
        return n % 2 == 0 ? lo + r : hi - r;
    }
    if (x > hi) {
        double dx = x - hi;
        int64_t n = (int64_t)(dx / rng);
        double r = dx - (double)n * rng;
        return n % 2 == 0 ? hi - r : lo + r;
    }
    return x;
}

/* The index actually read for neighbour i along an axis of size d; -1 reads zero. */
static int64_t gs_pixel(int64_t i, int64_t d, int pad, double lo, double hi)
{
    if (pad == PAD_ZEROS) return i >= 0 && i < d ? i : -1;
    if (pad == PAD_BORDER) return i < 0 ? 0 : i >= d ? d - 1 : i;
    int64_t j = (int64_t)gs_reflect((double)i, lo, hi);
    return j < 0 ? 0 : j >= d ? d - 1 : j;
}

static void gs_cubic(float x, float *c)
{
    const float A = -0.75f;
    x = fabsf(x);
    c[0] = ((A * (x + 1) - 5 * A) * (x + 1) + 8 * A) * (x + 1) - 4 * A;
    c[1] = ((A + 2) * x - (A + 3)) * x * x + 1;
    c[2] = ((A + 2) * (1 - x) - (A + 3)) * (1 - x) * (1 - x) + 1;
    c[3] = ((A * (2 - x) - 5 * A) * (2 - x) + 8 * A) * (2 - x) - 4 * A;
}

/* GridSample: interpolation (RZ_*), padding (PAD_*) and align_corners. */
struct gs_state {
    int mode, pad;
    bool align;
};

static kiln_status decode_grid_sample(struct kiln_kctx *k, struct gs_state *s)
{
    const char *ms = kiln_attr_s(k, "mode", k->opset < 20 ? "bilinear" : "linear");
    s->mode = strcmp(ms, "nearest") == 0                                  ? RZ_NEAREST
              : strcmp(ms, "bilinear") == 0 || strcmp(ms, "linear") == 0 ? RZ_LINEAR
              : strcmp(ms, "bicubic") == 0 || strcmp(ms, "cubic") == 0   ? RZ_CUBIC
                                                                         : -1;
    const char *ps = kiln_attr_s(k, "padding_mode", "zeros");
    s->pad = strcmp(ps, "zeros") == 0        ? PAD_ZEROS
             : strcmp(ps, "border") == 0     ? PAD_BORDER
             : strcmp(ps, "reflection") == 0 ? PAD_REFLECT
                                             : -1;
    s->align = kiln_attr_i(k, "align_corners", 0) != 0;
    if (s->mode < 0 || s->pad < 0)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "mode '%s' / padding_mode '%s' is not valid",
                          ms, ps);
    return KILN_OK;
}

KILN_PREPARE_WITH(gs_prepare, struct gs_state, decode_grid_sample)

kiln_status kiln_tops_grid_sample_prepare(struct kiln_kprep *p)
{
    return gs_prepare(p);
}

kiln_status kiln_tops_grid_sample(struct kiln_kctx *k)
{
    struct gs_state dec;
    const struct gs_state *gs;
    KILN_STATE_OR_DECODE(k, decode_grid_sample, dec, gs);
    const struct kiln_tensor *x, *g;
    KILN_TRY(kiln_in_req(k, 0, &x));
    KILN_TRY(kiln_in_req(k, 1, &g));
    int r = x->rank - 2;
    if (r < 1 || (k->opset < 20 && r != 2) || r > 3 || g->rank != x->rank ||
        g->dims[0] != x->dims[0] || g->dims[g->rank - 1] != r)
        return kiln_kfail(k, KILN_E_INVALID_ARG,
                          "X (rank %d) and grid (rank %d) must be [N, C, D1..Dr] and [N, H1..Hr, "
                          "r] with r = 2 (opset 16) or 1..3",
                          x->rank, g->rank);
    if (!kiln_dtype_is_float(x->dtype) || !kiln_dtype_is_float(g->dtype))
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "X is %s and grid %s; expected float types",
                          kiln_dtype_name(x->dtype), kiln_dtype_name(g->dtype));
    const int mode = gs->mode, pad = gs->pad;
    const bool align = gs->align;
    int64_t od[KILN_MAX_RANK], N = x->dims[0], C = x->dims[1];
    od[0] = N;
    od[1] = C;
    for (int a = 0; a < r; a++) od[2 + a] = g->dims[1 + a];
    struct kiln_tensor *o;
    KILN_TRY(kiln_out_tensor(k, 0, x->dtype, x->rank, od, &o));
    if (kiln_tensor_numel(o) == 0) return KILN_OK;
    size_t P = 1, S = 1; /* output points, input spatial size */
    int64_t xs[3];
    for (int a = 0; a < r; a++) P *= (size_t)od[2 + a];
    for (int a = r - 1; a >= 0; a--) {
        xs[a] = (int64_t)S;
        S *= (size_t)x->dims[2 + a];
    }
    if (S == 0) return kiln_kfail(k, KILN_E_INVALID_ARG, "X has an empty spatial axis");
    double lo[3], hi[3];
    for (int a = 0; a < r; a++) {
        double d = (double)x->dims[2 + a];
        lo[a] = align ? 0 : -0.5;
        hi[a] = align ? d - 1 : d - 0.5;
    }
    int nt = mode == RZ_CUBIC ? 4 : mode == RZ_LINEAR ? 2 : 1;
    for (int64_t n = 0; n < N; n++)
        for (size_t pt = 0; pt < P; pt++) {
            int64_t ti[3][4];
            float tw[3][4];
            for (int a = 0; a < r; a++) {
                int64_t d = x->dims[2 + a];
                /* grid's last axis lists coordinates innermost-first (x, y, z) */
                double gv = kiln_tensor_get_f64(g, ((size_t)n * P + pt) * (size_t)r + (size_t)(r - 1 - a));
                float c = align ? (float)((gv + 1) / 2.0 * (double)(d - 1))
                                : (float)(((gv + 1) * (double)d - 1) / 2.0);
                if (mode == RZ_NEAREST)
                    c = nearbyintf(c); /* the test data rounds half to even in 3-D too */
                if (c < lo[a] || c > hi[a]) {
                    if (pad == PAD_BORDER) c = c < 0 ? 0 : c > (float)(d - 1) ? (float)(d - 1) : c;
                    else if (pad == PAD_REFLECT) c = (float)gs_reflect(c, lo[a], hi[a]);
                }
                if (mode == RZ_NEAREST) {
                    ti[a][0] = gs_pixel((int64_t)c, d, pad, lo[a], hi[a]);
                    tw[a][0] = 1;
                    continue;
                }
                float fl = floorf(c), f = c - fl;
                int64_t x0 = (int64_t)fl;
                if (mode == RZ_LINEAR) {
                    tw[a][0] = 1 - f;
                    tw[a][1] = f;
                } else {
                    gs_cubic(f, tw[a]);
                }
                for (int t = 0; t < nt; t++)
                    ti[a][t] = gs_pixel(x0 + t - (mode == RZ_CUBIC), d, pad, lo[a], hi[a]);
            }
            /* Tensor product of the per-axis taps. */
            int64_t off[64];
            double w[64];
            int cnt = 0, combos = 1;
            for (int a = 0; a < r; a++) combos *= nt;
            for (int cmb = 0; cmb < combos; cmb++) {
                int rem = cmb;
                double ww = 1;
                int64_t of = 0;
                for (int a = r - 1; a >= 0; a--) {
                    int t = rem % nt;
                    rem /= nt;
                    if (ti[a][t] < 0) of = -1;
                    if (of >= 0) of += ti[a][t] * xs[a];
                    ww *= tw[a][t];
                }
                if (of < 0 || ww == 0) continue;
                off[cnt] = of;
                w[cnt++] = ww;
            }
            for (int64_t c = 0; c < C; c++) {
                size_t base = ((size_t)n * (size_t)C + (size_t)c) * S;
                double acc = 0;
                for (int i = 0; i < cnt; i++) acc += w[i] * kiln_tensor_get_f64(x, base + (size_t)off[i]);
                kiln_tensor_set_f64(o, ((size_t)n * (size_t)C + (size_t)c) * P + pt, acc);
            }
        }
    return KILN_OK;
}

/* ------------------------------------------------------------------ Col2Im */

/* Col2Im: dilations, pads and strides as written (NULL when absent). */
struct col2im_state {
    const int64_t *dil, *pads, *str;
    size_t nd, np, ns;
};

static kiln_status decode_col2im(struct kiln_kctx *k, struct col2im_state *s)
{
    s->nd = kiln_attr_ints(k, "dilations", &s->dil);
    s->np = kiln_attr_ints(k, "pads", &s->pads);
    s->ns = kiln_attr_ints(k, "strides", &s->str);
    return KILN_OK;
}

KILN_PREPARE_WITH(col2im_prepare, struct col2im_state, decode_col2im)

kiln_status kiln_tops_col2im_prepare(struct kiln_kprep *p)
{
    return col2im_prepare(p);
}

kiln_status kiln_tops_col2im(struct kiln_kctx *k)
{
    struct col2im_state dec;
    const struct col2im_state *cs;
    KILN_STATE_OR_DECODE(k, decode_col2im, dec, cs);
    const struct kiln_tensor *x, *it, *bt;
    KILN_TRY(kiln_in_req(k, 0, &x));
    KILN_TRY(kiln_in_req(k, 1, &it));
    KILN_TRY(kiln_in_req(k, 2, &bt));
    int64_t img[KILN_MAX_RANK], blk[KILN_MAX_RANK];
    size_t r, rb;
    KILN_TRY(kiln_tops_read_ints(k, it, "image_shape", img, KILN_MAX_RANK - 2, &r));
    KILN_TRY(kiln_tops_read_ints(k, bt, "block_shape", blk, KILN_MAX_RANK - 2, &rb));
    if (r == 0 || rb != r || x->rank != 3)
        return kiln_kfail(k, KILN_E_INVALID_ARG,
                          "input must be [N, C*prod(block), L] and image/block shapes equal length");
    const int64_t *dil = cs->dil, *pads = cs->pads, *str = cs->str;
    size_t nd = cs->nd, np = cs->np, ns = cs->ns;
    if ((dil && nd != r) || (pads && np != 2 * r) || (str && ns != r))
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "dilations/pads/strides lengths do not match %zu",
                          r);
    int64_t D[KILN_MAX_RANK], P0[KILN_MAX_RANK], S[KILN_MAX_RANK], nb[KILN_MAX_RANK];
    int64_t bsz = 1, L = 1;
    for (size_t a = 0; a < r; a++) {
        D[a] = dil ? dil[a] : 1;
        S[a] = str ? str[a] : 1;
        P0[a] = pads ? pads[a] : 0;
        int64_t pe = pads ? pads[r + a] : 0;
        if (D[a] < 1 || S[a] < 1 || blk[a] < 1 || img[a] < 0 || P0[a] < 0 || pe < 0)
            return kiln_kfail(k, KILN_E_INVALID_ARG, "invalid block/dilation/stride/pad on dim %zu",
                              a);
        const int64_t lim = (int64_t)KILN_MAX_NUMEL;
        if (D[a] > lim || S[a] > lim || blk[a] > lim || img[a] > lim || P0[a] > lim || pe > lim ||
            D[a] * (blk[a] - 1) > lim)
            return kiln_kfail(k, KILN_E_LIMIT, "block/dilation/stride/pad on dim %zu too large", a);
        int64_t span = D[a] * (blk[a] - 1) + 1, full = img[a] + P0[a] + pe;
        nb[a] = full >= span ? (full - span) / S[a] + 1 : 0;
        if (blk[a] > lim / bsz || (nb[a] && L > lim / nb[a]))
            return kiln_kfail(k, KILN_E_LIMIT, "block or column count exceeds %lld", (long long)lim);
        bsz *= blk[a];
        L *= nb[a];
    }
    int64_t C = bsz ? x->dims[1] / bsz : 0;
    if (bsz == 0 || x->dims[1] % bsz != 0 || x->dims[2] != L)
        return kiln_kfail(k, KILN_E_INVALID_ARG,
                          "input dims [%lld, %lld] do not match C*%lld blocks and L = %lld",
                          (long long)x->dims[1], (long long)x->dims[2], (long long)bsz,
                          (long long)L);
    int64_t od[KILN_MAX_RANK], is[KILN_MAX_RANK];
    od[0] = x->dims[0];
    od[1] = C;
    for (size_t a = 0; a < r; a++) od[2 + a] = img[a];
    struct kiln_tensor *o;
    KILN_TRY(kiln_out_tensor(k, 0, x->dtype, (int)r + 2, od, &o));
    if (!kiln_dtype_is_float(x->dtype) && !kiln_dtype_is_int(x->dtype))
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "input type %s", kiln_dtype_name(x->dtype));
    kiln_tops_strides((int)r, img, is);
    size_t isz = 1;
    for (size_t a = 0; a < r; a++) isz *= (size_t)img[a];
    double *acc;
    KILN_TRY(kiln_scratch(k, isz * sizeof *acc, (void **)&acc));
    for (int64_t n = 0; n < x->dims[0]; n++)
        for (int64_t c = 0; c < C; c++) {
            memset(acc, 0, isz * sizeof *acc);
            for (int64_t b = 0; b < bsz; b++) {
                int64_t bo[KILN_MAX_RANK], rem = b;
                for (int a = (int)r - 1; a >= 0; a--) {
                    bo[a] = rem % blk[a];
                    rem /= blk[a];
                }
                for (int64_t l = 0; l < L; l++) {
                    int64_t rl = l, off = 0;
                    bool in = true;
                    for (int a = (int)r - 1; a >= 0; a--) {
                        int64_t pos = (rl % nb[a]) * S[a] - P0[a] + bo[a] * D[a];
                        rl /= nb[a];
                        if (pos < 0 || pos >= img[a]) in = false;
                        off += pos * is[a];
                    }
                    if (!in) continue;
                    acc[off] += kiln_tensor_get_f64(x, (size_t)(((n * x->dims[1]) + c * bsz + b) * L + l));
                }
            }
            for (size_t i = 0; i < isz; i++)
                kiln_tensor_set_f64(o, (size_t)(n * C + c) * isz + i, acc[i]);
        }
    return KILN_OK;
}

/* ------------------------------------------------------------------ CenterCropPad */

/* CenterCropPad's `axes` (NULL when absent: every axis). */
struct ccp_state {
    const int64_t *axes;
    size_t n;
};

static kiln_status decode_ccp(struct kiln_kctx *k, struct ccp_state *s)
{
    s->n = kiln_attr_ints(k, "axes", &s->axes);
    return KILN_OK;
}

KILN_PREPARE_WITH(ccp_prepare, struct ccp_state, decode_ccp)

kiln_status kiln_tops_center_crop_pad_prepare(struct kiln_kprep *p)
{
    return ccp_prepare(p);
}

kiln_status kiln_tops_center_crop_pad(struct kiln_kctx *k)
{
    struct ccp_state dec;
    const struct ccp_state *cs;
    KILN_STATE_OR_DECODE(k, decode_ccp, dec, cs);
    const struct kiln_tensor *x, *st;
    KILN_TRY(kiln_in_req(k, 0, &x));
    KILN_TRY(kiln_in_req(k, 1, &st));
    int r = x->rank;
    int64_t shape[KILN_MAX_RANK];
    size_t n;
    KILN_TRY(kiln_tops_read_ints(k, st, "shape", shape, KILN_MAX_RANK, &n));
    const int64_t *av = cs->axes;
    size_t na = cs->n;
    if (!av) na = (size_t)r;
    if (n != na)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "'shape' has %zu entries; expected %zu", n, na);
    int64_t od[KILN_MAX_RANK], start[KILN_MAX_RANK] = {0}, xs[KILN_MAX_RANK], total = 0;
    memcpy(od, x->dims, sizeof od);
    for (size_t i = 0; i < na; i++) {
        int a = (int)i;
        if (av) KILN_TRY(kiln_norm_axis(k, av[i], r, "axes entry", &a));
        if (shape[i] < 0 || shape[i] > (int64_t)KILN_MAX_NUMEL)
            return kiln_kfail(k, KILN_E_INVALID_ARG, "shape[%zu] = %lld is invalid", i,
                              (long long)shape[i]);
        od[a] = shape[i];
        /* Crop keeps the centre (extra element dropped at the end); pad likewise. */
        start[a] = shape[i] <= x->dims[a] ? (x->dims[a] - shape[i]) / 2
                                          : -((shape[i] - x->dims[a]) / 2);
    }
    struct kiln_tensor *o;
    KILN_TRY(kiln_out_tensor(k, 0, x->dtype, r, od, &o));
    if (kiln_tensor_numel(o) == 0) return KILN_OK;
    for (int a = 0; a < r; a++) total += od[a];
    int64_t *buf, *maps[KILN_MAX_RANK];
    KILN_TRY(kiln_scratch(k, (size_t)total * sizeof *buf, (void **)&buf));
    for (int a = 0; a < r; a++) {
        maps[a] = buf;
        buf += od[a];
        for (int64_t i = 0; i < od[a]; i++) {
            int64_t s = i + start[a];
            maps[a][i] = s >= 0 && s < x->dims[a] ? s : -1;
        }
    }
    unsigned char zero[16] = {0};
    char *ph = kiln_tops_placeholder(o);
    kiln_tops_strides(r, x->dims, xs);
    kiln_tops_map_copy(o->data, x->data, kiln_dtype_size(x->dtype), r, od,
                       (const int64_t *const *)maps, xs, zero);
    return kiln_tops_own_strings(k, o, ph);
}
