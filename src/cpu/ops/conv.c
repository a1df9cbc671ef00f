/* src/cpu/ops/conv.c: ONNX Conv (opsets 1, 11, 22) and ConvTranspose (opsets 1, 11, 22).
 *
 * Both handle any number (>= 1) of spatial dims, groups, strides, dilations, explicit pads
 * and auto_pad. A 2-D depthwise Conv (group == C, one input channel per group, any
 * channel multiplier) runs a direct kernel over each output plane, the planes split over the
 * session's threads; any other Conv lowers each (image, group) to im2col + kiln_sgemm
 * (skipping im2col for 1x1 / stride 1 / no-pad kernels); ConvTranspose computes W^T * X
 * and scatters the columns back with col2im: with a oneDNN matmul primitive prepared at
 * build time on W packed once (variant 2 "onednn", when W is a float32 constant and X's
 * shape static; see "ConvTranspose, oneDNN" below), else with kiln_sgemm (variant 1
 * "sgemm+col2im", the reference). kiln.FusedConvTranspose is ConvTranspose followed by an
 * activation (docs/fused-ops.md). With a session pool, a unit
 * whose GEMM is big enough to split runs with its im2col / col2im, GEMM and bias each split
 * over the threads; several units with small GEMMs run side by side instead, one thread each
 * (see "threading" below).
 *
 * Output sizes (spec, Conv): NOTSET: floor((in + pb + pe - dk) / s) + 1 with
 * dk = (k - 1) * d + 1; VALID: pads 0; SAME_UPPER/LOWER: out = ceil(in / s) and the
 * total pad max(0, (out - 1) * s + dk - in) is split with the odd one at the end (UPPER) or
 * the beginning (LOWER).
 * ConvTranspose: out = s * (in - 1) + output_padding + dk - pb - pe; with output_shape given
 * (or auto_pad SAME_*, where output_shape defaults to in * s) the total padding is derived
 * from it and split as for Conv, except that without auto_pad explicit pads win, matching
 * the ONNX reference implementation.
 *
 * Prepare (kernel.h) decodes the attributes once and refuses the values that are wrong
 * whatever the inputs (group < 1, an unknown auto_pad); the list attributes' lengths and
 * entries are checked at run, against the spatial rank of the inputs. Conv has three
 * variants, numbered as engine files keep them: 1 "im2col+sgemm" (any Conv), 2 "1x1-sgemm"
 * (1x1 kernel, stride 1, no pads: X's planes are the GEMM's columns) and 3 "depthwise"
 * (2-D, one input channel per group). Prepare picks one when W's shape is known (the
 * depthwise kernel when it applies, else 1x1, else im2col, as the run always did; with
 * tuning and static shapes the fastest on random data, timed on one thread), or leaves 0
 * "decided per run from the shapes". No Conv weight is prepacked: the GEMM takes W as stored
 * (per group an [M/group, C/group * kernel] row-major A operand, which oneDNN's sgemm runs
 * as fast as or faster than a transposed copy) and so does the depthwise kernel.
 * ConvTranspose's variants are numbered likewise (1 "sgemm+col2im", 2 "onednn", taken at
 * AVX-512, 3 "pgemm+col2im", the same on kiln's GEMM, taken at AVX2; an engine file of an
 * older kiln says 0, which takes the reference); the fast variants keep W, packed, as
 * prepacked blobs.
 *
 * dtypes: float32 natively; float16, bfloat16 and float64 are staged through float32.
 */
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "base/pool.h"
#include "cpu/act.h"
#include "cpu/convt_isa.h"
#include "cpu/dnnl_util.h"
#include "cpu/isa.h"
#include "cpu/ops/fused.h"
#include "cpu/pgemm.h"
#include "cpu/sgemm.h"
#include "cpu/tensor_util.h"
#include "infer/infer.h"

/* ------------------------------------------------------------------ geometry */

struct conv_geom {
    int nd;                       /* spatial dims */
    int64_t in[KILN_MAX_RANK];    /* input spatial size (for ConvTranspose: the output) */
    int64_t out[KILN_MAX_RANK];   /* output positions (ConvTranspose: the input's) */
    int64_t k[KILN_MAX_RANK], s[KILN_MAX_RANK], d[KILN_MAX_RANK], pb[KILN_MAX_RANK];
    size_t ks, is, os;            /* products of k, in, out */
};

/* ------------------------------------------------------------------ attributes */

enum conv_pad { CONV_PAD_NOTSET, CONV_PAD_SAME_UPPER, CONV_PAD_SAME_LOWER, CONV_PAD_VALID };

/* The attributes of a Conv or ConvTranspose node (FusedConv's too), decoded once by prepare.
 * The lists are borrowed from the node, which outlives the state; n_* are their lengths (0:
 * absent), checked against the spatial rank at run. */
struct conv_attrs {
    int64_t group; /* >= 1 */
    enum conv_pad pad;
    size_t n_kshape, n_strides, n_dilations, n_pads, n_opad, n_oshape;
    const int64_t *kshape, *strides, *dilations, *pads, *opad, *oshape;
};

/* Decodes the attributes of node k (ConvTranspose's output_padding and output_shape when
 * `transpose`). Fails only on values wrong whatever the inputs: group < 1, an auto_pad
 * that is not one of the four. */
static kiln_status conv_decode(struct kiln_kctx *k, bool transpose, struct conv_attrs *a)
{
    memset(a, 0, sizeof *a);
    a->group = kiln_attr_i(k, "group", 1);
    if (a->group < 1)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "group = %lld; expected >= 1",
                          (long long)a->group);
    a->n_kshape = kiln_attr_ints(k, "kernel_shape", &a->kshape);
    a->n_strides = kiln_attr_ints(k, "strides", &a->strides);
    a->n_dilations = kiln_attr_ints(k, "dilations", &a->dilations);
    a->n_pads = kiln_attr_ints(k, "pads", &a->pads);
    if (transpose) {
        a->n_opad = kiln_attr_ints(k, "output_padding", &a->opad);
        a->n_oshape = kiln_attr_ints(k, "output_shape", &a->oshape);
    }
    const char *ap = kiln_attr_s(k, "auto_pad", "NOTSET");
    if (!strcmp(ap, "NOTSET"))
        a->pad = CONV_PAD_NOTSET;
    else if (!strcmp(ap, "SAME_UPPER"))
        a->pad = CONV_PAD_SAME_UPPER;
    else if (!strcmp(ap, "SAME_LOWER"))
        a->pad = CONV_PAD_SAME_LOWER;
    else if (!strcmp(ap, "VALID"))
        a->pad = CONV_PAD_VALID;
    else
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "auto_pad '%s' is not one of NOTSET, "
                          "SAME_UPPER, SAME_LOWER, VALID", ap);
    return KILN_OK;
}

/* Attribute `name` (c values v): n values >= 1 (default all 1); n = spatial dims. */
static kiln_status read_steps(struct kiln_kctx *k, const char *name, size_t c, const int64_t *v,
                              int n, int64_t *out)
{
    if (c && c != (size_t)n)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "%s has %zu values; expected %d", name, c, n);
    for (int i = 0; i < n; i++) {
        out[i] = c ? v[i] : 1;
        if (out[i] < 1)
            return kiln_kfail(k, KILN_E_INVALID_MODEL, "%s[%d] = %lld; expected >= 1", name, i,
                              (long long)out[i]);
    }
    return KILN_OK;
}

/* Checks strides/dilations (default 1) into s and d; n = spatial dims. */
static kiln_status read_sd(struct kiln_kctx *k, const struct conv_attrs *a, int n, int64_t *s,
                           int64_t *d)
{
    KILN_TRY(read_steps(k, "strides", a->n_strides, a->strides, n, s));
    return read_steps(k, "dilations", a->n_dilations, a->dilations, n, d);
}

/* Checks `pads` (2n values, begins then ends; default 0) into pb and pe. */
static kiln_status read_pads(struct kiln_kctx *k, const struct conv_attrs *a, int n, int64_t *pb,
                             int64_t *pe)
{
    size_t c = a->n_pads;
    const int64_t *v = a->pads;
    if (c && c != 2 * (size_t)n)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "pads has %zu values; expected %d", c, 2 * n);
    for (int i = 0; i < n; i++) {
        pb[i] = c ? v[i] : 0;
        pe[i] = c ? v[n + i] : 0;
        if (pb[i] < 0 || pe[i] < 0)
            return kiln_kfail(k, KILN_E_INVALID_MODEL, "pads must be >= 0; got %lld, %lld at dim %d",
                              (long long)pb[i], (long long)pe[i], i);
    }
    return KILN_OK;
}

/* ------------------------------------------------------------------ im2col / col2im */

/* Shared by im2col and col2im: for kernel position kidx (offsets kk per dim, row-major over
 * g->k), output position o reads input o*s - pb + kk*d. Along the innermost dim L that is
 * j*s + off for output j, inside the input for j in [lo, hi). */
static void kernel_pos(const struct conv_geom *g, size_t kidx, int64_t *kk, int64_t *off,
                       int64_t *lo, int64_t *hi)
{
    int L = g->nd - 1;
    for (int d = L; d >= 0; d--) {
        kk[d] = (int64_t)(kidx % (size_t)g->k[d]);
        kidx /= (size_t)g->k[d];
    }
    int64_t s = g->s[L];
    *off = kk[L] * g->d[L] - g->pb[L];
    *lo = *off >= 0 ? 0 : kiln_div_ceil(-*off, s);
    *hi = kiln_div_floor(g->in[L] - 1 - *off, s) + 1;
    if (*hi > g->out[L]) *hi = g->out[L];
    if (*lo > *hi) *lo = *hi;
}

/* For outer output position o[0..L) (all dims but the innermost) and kernel offsets kk:
 * *base = the input row (in units of g->in[L] elements) it reads; false when outside. */
static bool outer_row(const struct conv_geom *g, const int64_t *o, const int64_t *kk, size_t *base)
{
    size_t b = 0;
    for (int d = 0; d < g->nd - 1; d++) {
        int64_t ix = o[d] * g->s[d] - g->pb[d] + kk[d] * g->d[d];
        if (ix < 0 || ix >= g->in[d]) return false;
        b = b * (size_t)g->in[d] + (size_t)ix;
    }
    *base = b;
    return true;
}

/* Steps outer output position o[0..L) in row-major order. */
static void outer_next(const struct conv_geom *g, int64_t *o)
{
    for (int d = g->nd - 2; d >= 0; d--) {
        if (++o[d] < g->out[d]) break;
        o[d] = 0;
    }
}

/* col[(c*ks + kidx) * os + o] = x[c][o*s - pb + kk*d] (0 outside), for the col rows
 * r = c*ks + kidx in [r0, r1). x holds the group's planes of g->is elements; the geometry's
 * `in` is x's spatial size. */
static void im2col_rows(const float *x, const struct conv_geom *g, float *col, size_t r0,
                        size_t r1)
{
    int L = g->nd - 1;
    int64_t kk[KILN_MAX_RANK], s = g->s[L];
    size_t inner = (size_t)g->out[L];
    size_t outer = g->os / (inner ? inner : 1);
    for (size_t r = r0; r < r1; r++) {
        size_t c = r / g->ks, kidx = r % g->ks;
        const float *xc = x + c * g->is;
        int64_t off, lo, hi, o[KILN_MAX_RANK] = {0};
        kernel_pos(g, kidx, kk, &off, &lo, &hi);
        float *row = col + r * g->os;
        for (size_t t = 0; t < outer; t++, outer_next(g, o)) {
            float *dst = row + t * inner;
            size_t base;
            if (!outer_row(g, o, kk, &base) || lo >= hi) {
                memset(dst, 0, inner * sizeof *dst);
            } else {
                const float *src = xc + base * (size_t)g->in[L];
                for (int64_t j = 0; j < lo; j++) dst[j] = 0.0f;
                if (s == 1)
                    memcpy(dst + lo, src + lo + off, (size_t)(hi - lo) * sizeof *dst);
                else
                    for (int64_t j = lo; j < hi; j++) dst[j] = src[j * s + off];
                for (int64_t j = hi; j < (int64_t)inner; j++) dst[j] = 0.0f;
            }
        }
    }
}

/* All C * ks rows of col for C input planes. */
static void im2col(const float *x, size_t C, const struct conv_geom *g, float *col)
{
    im2col_rows(x, g, col, 0, C * g->ks);
}

/* The adjoint of im2col: y[c][o*s - pb + kk*d] += col[(c*ks + kidx) * os + o], for the
 * channels c in [c0, c1) (a channel's rows overlap in y; different channels never do). */
static void col2im(const float *col, size_t c0, size_t c1, const struct conv_geom *g, float *y)
{
    int L = g->nd - 1;
    int64_t kk[KILN_MAX_RANK], s = g->s[L];
    size_t inner = (size_t)g->out[L];
    size_t outer = g->os / (inner ? inner : 1);
    for (size_t c = c0; c < c1; c++) {
        float *yc = y + c * g->is;
        for (size_t kidx = 0; kidx < g->ks; kidx++) {
            int64_t off, lo, hi, o[KILN_MAX_RANK] = {0};
            kernel_pos(g, kidx, kk, &off, &lo, &hi);
            const float *row = col + (c * g->ks + kidx) * g->os;
            for (size_t t = 0; t < outer; t++, outer_next(g, o)) {
                const float *src = row + t * inner;
                size_t base;
                if (outer_row(g, o, kk, &base)) {
                    float *dst = yc + base * (size_t)g->in[L];
                    for (int64_t j = lo; j < hi; j++) dst[j * s + off] += src[j];
                }
            }
        }
    }
}

/* ------------------------------------------------------------------ Conv */

/* Common input checks (a: the node's attributes): X, W and the optional B, their dtypes and
 * ranks, kernel_shape against W. */
static kiln_status conv_inputs(struct kiln_kctx *k, const struct conv_attrs *a,
                               const struct kiln_tensor **x, const struct kiln_tensor **w,
                               const struct kiln_tensor **b)
{
    KILN_TRY(kiln_in_req(k, 0, x));
    KILN_TRY(kiln_in_req(k, 1, w));
    *b = kiln_in(k, 2);
    if (!kiln_dtype_is_real_float((*x)->dtype))
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "input X is %s; expected a float type",
                          kiln_dtype_name((*x)->dtype));
    if ((*w)->dtype != (*x)->dtype || (*b && (*b)->dtype != (*x)->dtype))
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "W/B dtype differs from X (%s)",
                          kiln_dtype_name((*x)->dtype));
    if ((*x)->rank < 3)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input X has rank %d; expected >= 3 (N, C, ...)",
                          (*x)->rank);
    if ((*w)->rank != (*x)->rank)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input W has rank %d; expected %d like X",
                          (*w)->rank, (*x)->rank);
    size_t nk = a->n_kshape;
    if (nk) {
        if (nk != (size_t)(*x)->rank - 2)
            return kiln_kfail(k, KILN_E_INVALID_MODEL, "kernel_shape has %zu values; expected %d",
                              nk, (*x)->rank - 2);
        for (size_t i = 0; i < nk; i++)
            if (a->kshape[i] != (*w)->dims[2 + i])
                return kiln_kfail(k, KILN_E_INVALID_ARG,
                                  "kernel_shape[%zu] = %lld but W has %lld there", i,
                                  (long long)a->kshape[i], (long long)(*w)->dims[2 + i]);
    }
    return KILN_OK;
}

/* Checks the optional bias B against M output channels. */
static kiln_status check_bias(struct kiln_kctx *k, const struct kiln_tensor *b, int64_t M)
{
    if (b && (b->rank != 1 || b->dims[0] != M))
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input B must be [%lld]", (long long)M);
    return KILN_OK;
}

/* A Conv's geometry for input spatial sizes xin[0..nd) and kernel sizes wk[0..nd): strides,
 * dilations and pads checked against nd, output sizes as auto_pad says. */
static kiln_status conv_geometry(struct kiln_kctx *k, const struct conv_attrs *a, int nd,
                                 const int64_t *xin, const int64_t *wk, struct conv_geom *g)
{
    *g = (struct conv_geom){.nd = nd, .ks = 1, .is = 1, .os = 1};
    int64_t pe[KILN_MAX_RANK];
    KILN_TRY(read_sd(k, a, nd, g->s, g->d));
    KILN_TRY(read_pads(k, a, nd, g->pb, pe));
    bool same = a->pad == CONV_PAD_SAME_UPPER || a->pad == CONV_PAD_SAME_LOWER;
    for (int i = 0; i < nd; i++) {
        g->in[i] = xin[i];
        g->k[i] = wk[i];
        int64_t dk = (g->k[i] - 1) * g->d[i] + 1;
        if (same) {
            g->out[i] = kiln_div_ceil(g->in[i], g->s[i]);
            int64_t tot = (g->out[i] - 1) * g->s[i] + dk - g->in[i];
            if (tot < 0) tot = 0;
            g->pb[i] = a->pad == CONV_PAD_SAME_UPPER ? tot / 2 : tot - tot / 2;
        } else {
            if (a->pad == CONV_PAD_VALID) g->pb[i] = pe[i] = 0;
            int64_t span = g->in[i] + g->pb[i] + pe[i] - dk;
            g->out[i] = span < 0 ? 0 : span / g->s[i] + 1;
        }
        g->ks *= (size_t)g->k[i];
        g->is *= (size_t)g->in[i];
        g->os *= (size_t)g->out[i];
    }
    return KILN_OK;
}

/* The float32 views of one Conv / ConvTranspose run. */
struct conv_io {
    struct kiln_tensor *y;
    const float *x, *w, *b; /* b NULL without bias */
    float *yf;
};

/* Creates output Y [N, M, sp...] of X's dtype and, unless Y is empty, stages X, W, B and Y
 * as float32 (see tensor_util.h); kiln_unstage_f32(io->y, io->yf) finishes. */
static kiln_status conv_io_open(struct kiln_kctx *k, const struct kiln_tensor *x,
                                const struct kiln_tensor *w, const struct kiln_tensor *b,
                                int64_t M, const int64_t *sp, struct conv_io *io)
{
    int64_t ydims[KILN_MAX_RANK] = {x->dims[0], M};
    for (int i = 0; i < x->rank - 2; i++) ydims[2 + i] = sp[i];
    io->b = NULL;
    /* Conv writes every element (GEMM with beta 0, or the depthwise kernel); ConvTranspose
     * zero-fills its staged output itself before accumulating. */
    KILN_TRY(kiln_out_tensor_raw(k, 0, x->dtype, x->rank, ydims, &io->y));
    if (kiln_tensor_numel(io->y) == 0) return KILN_OK;
    KILN_TRY(kiln_stage_f32(k, x, &io->x));
    KILN_TRY(kiln_stage_f32(k, w, &io->w));
    if (b) KILN_TRY(kiln_stage_f32(k, b, &io->b));
    return kiln_stage_out_f32(k, io->y, &io->yf);
}

/* y[m][0..plane) += b[m] for m < M (nothing when b is NULL). */
static void add_bias(float *y, const float *b, size_t M, size_t plane)
{
    if (!b) return;
    for (size_t m = 0; m < M; m++) {
        float bv = b[m];
        float *yr = y + m * plane;
        for (size_t o = 0; o < plane; o++) yr[o] += bv;
    }
}

/* ------------------------------------------------------------------ threading
 *
 * One (image, group) unit is an im2col (or col2im) and one GEMM. A unit whose GEMM
 * kiln_sgemm_par would split over the pool runs alone, its im2col / col2im and bias split
 * over the pool too. Units whose GEMMs are too small to split run side by side instead, each
 * a plain kiln_sgemm of the same shape on one thread with that thread's own col buffer, so
 * each output element comes from the same call as it would serially. */

/* Indices per kiln_pool_for chunk for items of `per` elements of work each: about 32k
 * elements a chunk, enough to pay for handing it to a thread. */
static size_t grain_for(size_t per)
{
    return kiln_pool_grain(per, 32768);
}

/* A col buffer per thread is taken only up to this many floats each (16 MiB). */
#define UNIT_COL_MAX ((size_t)1 << 22)

struct rows_job {
    const struct conv_geom *g;
    const float *src, *b;
    float *dst;
};

static void im2col_chunk(void *ctx, size_t r0, size_t r1, int worker)
{
    (void)worker;
    const struct rows_job *j = ctx;
    im2col_rows(j->src, j->g, j->dst, r0, r1);
}

/* im2col of C planes, its rows split over the pool. */
static void im2col_par(struct kiln_pool *pool, const float *x, size_t C, const struct conv_geom *g,
                       float *col)
{
    struct rows_job j = {g, x, NULL, col};
    kiln_pool_for(pool, C * g->ks, grain_for(g->os), im2col_chunk, &j);
}

static void col2im_chunk(void *ctx, size_t c0, size_t c1, int worker)
{
    (void)worker;
    const struct rows_job *j = ctx;
    col2im(j->src, c0, c1, j->g, j->dst);
}

/* col2im of C planes, the channels split over the pool. */
static void col2im_par(struct kiln_pool *pool, const float *col, size_t C,
                       const struct conv_geom *g, float *y)
{
    struct rows_job j = {g, col, NULL, y};
    kiln_pool_for(pool, C, grain_for(g->ks * g->os), col2im_chunk, &j);
}

struct bias_job {
    const float *b;
    float *y;
    size_t plane;
};

static void bias_chunk(void *ctx, size_t m0, size_t m1, int worker)
{
    (void)worker;
    const struct bias_job *j = ctx;
    add_bias(j->y + m0 * j->plane, j->b + m0, m1 - m0, j->plane);
}

/* add_bias with the channels split over the pool. */
static void add_bias_par(struct kiln_pool *pool, float *y, const float *b, size_t M, size_t plane)
{
    if (!b) return;
    struct bias_job j = {b, y, plane};
    kiln_pool_for(pool, M, grain_for(plane), bias_chunk, &j);
}

/* ------------------------------------------------------------------ depthwise */

/* A 2-D depthwise Conv (group == C, M = C * mult): output plane (n, m) is input plane
 * (n, m / mult) correlated with W[m][0] plus B[m].
 *
 * Each plane is first copied into a zero-padded buffer (the rows and columns the windows
 * reach, pads included) with its columns split by phase modulo the x stride: row r, phase
 * ph holds padded columns ph, ph + sx, ph + 2 sx, ... Kernel tap (ky, kx) of output row oy
 * then reads one contiguous run of that buffer for every output x, whatever the stride, so
 * the loops over output x have no bounds checks and vectorize. */
struct dw_job {
    const struct conv_geom *g;
    const float *x, *w, *b;
    float *y;
    float *buf; /* per worker: rows * sx * len floats */
    size_t C, M, mult, rows, len;
};

/* y[i] += w * x[i] for i < n. */
static void dw_tap(float *restrict y, const float *restrict x, float w, int64_t n)
{
    for (int64_t i = 0; i < n; i++) y[i] += w * x[i];
}

/* y[i] = b + sum over t < 9 of w[t] * x[t][i], for i < n (a 3x3 kernel in one pass). */
static void dw_taps9(float *restrict y, const float *const *x, const float *w, float b, int64_t n)
{
    const float *restrict x0 = x[0], *restrict x1 = x[1], *restrict x2 = x[2];
    const float *restrict x3 = x[3], *restrict x4 = x[4], *restrict x5 = x[5];
    const float *restrict x6 = x[6], *restrict x7 = x[7], *restrict x8 = x[8];
    float w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3], w4 = w[4], w5 = w[5], w6 = w[6],
          w7 = w[7], w8 = w[8];
    for (int64_t i = 0; i < n; i++) {
        float a = b + w0 * x0[i] + w1 * x1[i] + w2 * x2[i];
        a += w3 * x3[i] + w4 * x4[i] + w5 * x5[i];
        y[i] = a + w6 * x6[i] + w7 * x7[i] + w8 * x8[i];
    }
}

static void dw_plane(const struct dw_job *j, const float *xp, const float *wk, float bias,
                     float *yp, float *buf)
{
    const struct conv_geom *g = j->g;
    int64_t H = g->in[0], W = g->in[1], OH = g->out[0], OW = g->out[1];
    int64_t KH = g->k[0], KW = g->k[1], sy = g->s[0], sx = g->s[1], dy = g->d[0], dx = g->d[1];
    int64_t py = g->pb[0], px = g->pb[1], rows = (int64_t)j->rows, len = (int64_t)j->len;
    /* Fill: padded row r is input row r - py; padded column c is input column c - px. */
    for (int64_t r = 0; r < rows; r++) {
        int64_t iy = r - py;
        for (int64_t ph = 0; ph < sx; ph++) {
            float *d = buf + (r * sx + ph) * len;
            if (iy < 0 || iy >= H) {
                memset(d, 0, (size_t)len * sizeof *d);
                continue;
            }
            const float *xr = xp + iy * W;
            int64_t c = ph - px; /* input column of d[i]: c + i * sx */
            int64_t i0 = c >= 0 ? 0 : kiln_div_ceil(-c, sx);
            int64_t i1 = W - c <= 0 ? 0 : kiln_div_ceil(W - c, sx);
            if (i1 > len) i1 = len;
            if (i0 > i1) i0 = i1;
            for (int64_t i = 0; i < i0; i++) d[i] = 0.0f;
            if (sx == 1) {
                memcpy(d + i0, xr + c + i0, (size_t)(i1 - i0) * sizeof *d);
            } else if (sx == 2) { /* a constant stride the compiler vectorizes */
                for (int64_t i = i0; i < i1; i++) d[i] = xr[c + i * 2];
            } else {
                for (int64_t i = i0; i < i1; i++) d[i] = xr[c + i * sx];
            }
            for (int64_t i = i1; i < len; i++) d[i] = 0.0f;
        }
    }
    /* 3x3: tap t of output row oy reads buf + oy * sy * sx * len + toff[t]. */
    int64_t toff[9] = {0};
    bool k33 = KH == 3 && KW == 3;
    if (k33)
        for (int64_t t = 0; t < 9; t++) {
            int64_t off = (t % 3) * dx;
            toff[t] = ((t / 3) * dy * sx + off % sx) * len + off / sx;
        }
    for (int64_t oy = 0; oy < OH; oy++) {
        float *yr = yp + oy * OW;
        if (k33) {
            const float *row = buf + oy * sy * sx * len, *src[9];
            for (int t = 0; t < 9; t++) src[t] = row + toff[t];
            dw_taps9(yr, src, wk, bias, OW);
            continue;
        }
        for (int64_t i = 0; i < OW; i++) yr[i] = bias;
        for (int64_t ky = 0; ky < KH; ky++)
            for (int64_t kx = 0; kx < KW; kx++) {
                int64_t r = oy * sy + ky * dy, off = kx * dx;
                dw_tap(yr, buf + (r * sx + off % sx) * len + off / sx, wk[ky * KW + kx], OW);
            }
    }
}

static void dw_chunk(void *ctx, size_t p0, size_t p1, int worker)
{
    const struct dw_job *j = ctx;
    const struct conv_geom *g = j->g;
    float *buf = j->buf + (size_t)worker * j->rows * (size_t)g->s[1] * j->len;
    for (size_t pl = p0; pl < p1; pl++) {
        size_t n = pl / j->M, m = pl % j->M, c = m / j->mult;
        dw_plane(j, j->x + (n * j->C + c) * g->is, j->w + m * g->ks, j->b ? j->b[m] : 0.0f,
                 j->y + pl * g->os, buf);
    }
}

/* Units (image, group) of an im2col + GEMM Conv run side by side (see "threading"). */
struct conv_unit_job {
    const struct conv_geom *g;
    const float *x, *w, *b;
    float *y;
    float *col; /* per thread kdim * os floats; NULL for a direct (1x1) Conv */
    size_t C, M, G, cg, mg, kdim;
};

static void conv_unit_chunk(void *ctx, size_t u0, size_t u1, int worker)
{
    const struct conv_unit_job *j = ctx;
    const struct conv_geom *g = j->g;
    float *col = j->col ? j->col + (size_t)worker * j->kdim * g->os : NULL;
    for (size_t u = u0; u < u1; u++) {
        size_t n = u / j->G, gi = u % j->G;
        const float *cols = j->x + (n * j->C + gi * j->cg) * g->is;
        float *yg = j->y + (n * j->M + gi * j->mg) * g->os;
        if (col) {
            im2col(cols, j->cg, g, col);
            cols = col;
        }
        kiln_sgemm(false, false, j->mg, g->os, j->kdim, 1.0f, j->w + gi * j->mg * j->kdim,
                   j->kdim, cols, g->os, 0.0f, yg, g->os);
        add_bias(yg, j->b ? j->b + gi * j->mg : NULL, j->mg, g->os);
    }
}

/* ------------------------------------------------------------------ Conv variants */

enum conv_variant {
    CONV_AUTO = 0,   /* chosen per run from the shapes (W's shape unknown at prepare) */
    CONV_IM2COL = 1, /* im2col + sgemm per (image, group): any Conv */
    CONV_1X1 = 2,    /* sgemm on X's planes: 1x1 kernel, stride 1, no pads */
    CONV_DW = 3,     /* the direct depthwise kernel: 2-D, group == C, one channel per group */
    CONV_VARIANTS
};

static const char *const conv_variant_name[CONV_VARIANTS] = {NULL, "im2col+sgemm", "1x1-sgemm",
                                                             "depthwise"};

/* What Conv's prepare makes (k->state of kiln_cpu_conv_run). */
struct conv_state {
    struct conv_attrs a;
    int variant; /* enum conv_variant */
};

/* The shapes of one Conv computation. */
struct conv_plan {
    struct conv_geom g;
    size_t N, C, M, G, cg, mg, kdim;
    size_t w1; /* W's dims[1]: input channels per group */
};

/* Whether variant v can compute plan c. */
static bool conv_applies(int v, const struct conv_plan *c)
{
    const struct conv_geom *g = &c->g;
    switch (v) {
    case CONV_IM2COL: return true;
    case CONV_1X1:
        for (int i = 0; i < g->nd; i++)
            if (g->k[i] != 1 || g->s[i] != 1 || g->pb[i] != 0 || g->out[i] != g->in[i])
                return false;
        return true;
    case CONV_DW: return g->nd == 2 && c->G == c->C && c->w1 == 1;
    default: return false;
    }
}

/* Variant `want` when it applies to c, else the default: depthwise, else 1x1, else im2col. */
static int conv_pick(int want, const struct conv_plan *c)
{
    if (want > CONV_AUTO && want < CONV_VARIANTS && conv_applies(want, c)) return want;
    if (conv_applies(CONV_DW, c)) return CONV_DW;
    if (conv_applies(CONV_1X1, c)) return CONV_1X1;
    return CONV_IM2COL;
}

/* Whether the GEMM variants run c's (image, group) units side by side on pool (see
 * "threading"); direct: no im2col (the 1x1 variant). */
static bool conv_side(struct kiln_pool *pool, const struct conv_plan *c, bool direct)
{
    size_t threads = (size_t)kiln_pool_threads(pool), units = c->N * c->G;
    return threads > 1 && units > 1 && !kiln_sgemm_par_splits(pool, c->mg, c->g.os, c->kdim) &&
           (direct || c->kdim * c->g.os <= UNIT_COL_MAX);
}

/* The depthwise kernel's padded rows and per-phase row length for c. */
static void dw_dims(const struct conv_geom *g, size_t *rows, size_t *len)
{
    *rows = (size_t)((g->out[0] - 1) * g->s[0] + (g->k[0] - 1) * g->d[0] + 1);
    size_t cols = (size_t)((g->out[1] - 1) * g->s[1] + (g->k[1] - 1) * g->d[1] + 1);
    size_t sx = (size_t)g->s[1];
    *len = (cols + sx - 1) / sx;
}

/* The scratch bytes variant v needs for c on pool (0: none); false when the size overflows. */
static bool conv_scratch_bytes(struct kiln_pool *pool, int v, const struct conv_plan *c, size_t *n)
{
    size_t threads = (size_t)kiln_pool_threads(pool);
    *n = 0;
    if (v == CONV_DW) {
        size_t rows, len;
        dw_dims(&c->g, &rows, &len);
        return kiln_mul_size(rows, (size_t)c->g.s[1], n) && kiln_mul_size(*n, len, n) &&
               kiln_mul_size(*n, threads, n) && kiln_mul_size(*n, sizeof(float), n);
    }
    if (v == CONV_1X1) return true;
    size_t bufs = conv_side(pool, c, false) ? threads : 1;
    return kiln_mul_size(c->kdim, c->g.os, n) && kiln_mul_size(*n, bufs, n) &&
           kiln_mul_size(*n, sizeof(float), n);
}

/* Computes Conv c with variant v (which applies to c) on pool: y [N, M, out] from x [N, C, in],
 * w as stored [M, C/group, k], b [M] or NULL; scratch holds conv_scratch_bytes(pool, v, c).
 * Never fails. */
static void conv_compute(struct kiln_pool *pool, int v, const struct conv_plan *c, const float *x,
                         const float *w, const float *b, float *y, float *scratch)
{
    const struct conv_geom *g = &c->g;
    if (v == CONV_DW) {
        struct dw_job j = {g, x, w, b, y, scratch, c->C, c->M, c->M / c->C, 0, 0};
        dw_dims(g, &j.rows, &j.len);
        /* About 64k multiply-adds per chunk: enough to pay for handing it to a thread. */
        size_t work = g->os * g->ks;
        kiln_pool_for(pool, c->N * c->M, work >= 65536 ? 1 : 65536 / (work ? work : 1), dw_chunk,
                      &j);
        return;
    }
    bool direct = v == CONV_1X1; /* X's planes are already the columns */
    struct conv_unit_job j = {g, x, w, b, y, direct ? NULL : scratch, c->C, c->M, c->G, c->cg,
                              c->mg, c->kdim};
    if (conv_side(pool, c, direct)) {
        kiln_pool_for(pool, c->N * c->G, grain_for(c->mg * g->os * c->kdim / 2), conv_unit_chunk,
                      &j);
        return;
    }
    for (size_t n = 0; n < c->N; n++)
        for (size_t gi = 0; gi < c->G; gi++) {
            const float *xg = x + (n * c->C + gi * c->cg) * g->is;
            float *yg = y + (n * c->M + gi * c->mg) * g->os;
            const float *cols = xg;
            if (!direct) {
                im2col_par(pool, xg, c->cg, g, scratch);
                cols = scratch;
            }
            kiln_sgemm_par(pool, false, false, c->mg, g->os, c->kdim, 1.0f,
                           w + gi * c->mg * c->kdim, c->kdim, cols, g->os, 0.0f, yg, g->os);
            add_bias_par(pool, yg, b ? b + gi * c->mg : NULL, c->mg, g->os);
        }
}

/* ------------------------------------------------------------------ Conv prepare */

/* t's rank and dims when t is a tensor type with every dim known; false otherwise. */
static bool static_dims(const struct kiln_vtype *t, int *rank, int64_t *dims)
{
    if (!t || t->type.kind != KILN_TYPE_TENSOR || t->type.rank < 0 || t->type.rank > KILN_MAX_RANK)
        return false;
    for (int d = 0; d < t->type.rank; d++) {
        if (t->type.dims[d].value < 0) return false;
        dims[d] = t->type.dims[d].value;
    }
    *rank = t->type.rank;
    return true;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Fills x[0..n) with values in [-1, 1) from a fixed sequence (tuning data). */
static void fill_random(float *x, size_t n, uint64_t seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((double)(seed >> 40) / (double)(1ull << 23)) - 1.0f;
    }
}

/* Times the candidates ok[v] on random data of plan c, on one thread; returns the fastest,
 * or CONV_AUTO when memory for it cannot be had. */
static int conv_tune(const struct conv_plan *c, const bool *ok)
{
    size_t nx, nw, ny, scratch = 0, n, total;
    if (!kiln_mul_size(c->N, c->C, &nx) || !kiln_mul_size(nx, c->g.is, &nx) ||
        !kiln_mul_size(c->M, c->w1, &nw) || !kiln_mul_size(nw, c->g.ks, &nw) ||
        !kiln_mul_size(c->N, c->M, &ny) || !kiln_mul_size(ny, c->g.os, &ny))
        return CONV_AUTO;
    for (int v = CONV_AUTO + 1; v < CONV_VARIANTS; v++) {
        if (!ok[v]) continue;
        if (!conv_scratch_bytes(NULL, v, c, &n)) return CONV_AUTO;
        if (n > scratch) scratch = n;
    }
    if (!kiln_add_size(nx, nw, &total) || !kiln_add_size(total, c->M, &total) ||
        !kiln_add_size(total, ny, &total) || !kiln_mul_size(total, sizeof(float), &total) ||
        !kiln_add_size(total, scratch, &total))
        return CONV_AUTO;
    float *mem = kiln_aligned_alloc(64, total ? total : 1);
    if (!mem) return CONV_AUTO;
    float *x = mem, *w = x + nx, *b = w + nw, *y = b + c->M, *s = y + ny;
    fill_random(mem, nx + nw + c->M, 12345);
    int best = CONV_AUTO;
    double best_t = 0;
    for (int v = CONV_AUTO + 1; v < CONV_VARIANTS; v++) {
        if (!ok[v]) continue;
        conv_compute(NULL, v, c, x, w, b, y, s); /* warm caches and pages */
        double t = 0;
        for (int r = 0; r < 3; r++) {
            double t0 = now_s();
            conv_compute(NULL, v, c, x, w, b, y, s);
            double d = now_s() - t0;
            if (r == 0 || d < t) t = d;
        }
        if (best == CONV_AUTO || t < best_t) best = v, best_t = t;
    }
    kiln_aligned_free(mem);
    return best;
}

/* The variant prepare chooses for a Conv with attributes a (see the file comment). */
static int conv_prepare_variant(struct kiln_kprep *p, const struct conv_attrs *a)
{
    int want = p->variant > CONV_AUTO && p->variant < CONV_VARIANTS ? p->variant : CONV_AUTO;
    int wr, xr;
    int64_t wd[KILN_MAX_RANK], xd[KILN_MAX_RANK];
    /* W's shape unknown: the run decides, or checks that the variant asked for applies. */
    if (!static_dims(p->in[1], &wr, wd) || wr < 3) return want;
    bool xs = static_dims(p->in[0], &xr, xd);
    if (xs && xr != wr) return want; /* the run refuses these inputs */
    int nd = wr - 2;
    if (!xs) { /* sizes that decide applicability as any input size would */
        xd[0] = 1;
        xd[1] = wd[1] * a->group;
        for (int i = 0; i < nd; i++) xd[2 + i] = wd[2 + i] + 1;
    }
    if (xd[1] != wd[1] * a->group || wd[0] % a->group) return want;
    struct conv_plan c = {.N = (size_t)xd[0], .C = (size_t)xd[1], .M = (size_t)wd[0],
                          .G = (size_t)a->group, .w1 = (size_t)wd[1]};
    /* Geometry errors belong to the run, which names the actual inputs. */
    kiln_err geom_err;
    struct kiln_kctx kc = p->kc;
    kc.err = &geom_err;
    if (conv_geometry(&kc, a, nd, xd + 2, wd + 2, &c.g)) return want;
    c.cg = c.C / c.G;
    c.mg = c.M / c.G;
    c.kdim = c.cg * c.g.ks;
    if (p->variant >= 0) return want == CONV_AUTO ? CONV_AUTO : conv_pick(want, &c);
    bool ok[CONV_VARIANTS] = {false};
    int n_ok = 0;
    for (int v = CONV_AUTO + 1; v < CONV_VARIANTS; v++) n_ok += ok[v] = conv_applies(v, &c);
    if (p->tune == 1 && xs && n_ok > 1 && c.N && c.M && c.g.os) {
        int v = conv_tune(&c, ok);
        if (v != CONV_AUTO) return v;
    }
    return conv_pick(CONV_AUTO, &c);
}

/* Conv's prepare (FusedConv's too): the attributes, and the variant when W's shape is known. */
kiln_status kiln_cpu_conv_prepare(struct kiln_kprep *p)
{
    struct conv_state *st;
    KILN_TRY(kiln_kprep_alloc(p, sizeof *st, (void **)&st));
    KILN_TRY(conv_decode(&p->kc, false, &st->a));
    st->variant = conv_prepare_variant(p, &st->a);
    p->state = st;
    p->chosen = st->variant;
    p->kernel = conv_variant_name[st->variant];
    return KILN_OK;
}

/* ------------------------------------------------------------------ Conv run */

kiln_status kiln_cpu_conv_run(struct kiln_kctx *k)
{
    struct conv_state own;
    const struct conv_state *st = k->state;
    if (!st) { /* called without prepare (kernel tests): decode the attributes now */
        KILN_TRY(conv_decode(k, false, &own.a));
        own.variant = CONV_AUTO;
        st = &own;
    }
    const struct kiln_tensor *x, *w, *b;
    KILN_TRY(conv_inputs(k, &st->a, &x, &w, &b));
    int64_t group = st->a.group;
    int nd = x->rank - 2;
    int64_t N = x->dims[0], C = x->dims[1], M = w->dims[0];
    if (C != w->dims[1] * group)
        return kiln_kfail(k, KILN_E_INVALID_ARG,
                          "X has %lld channels but W expects %lld x group %lld", (long long)C,
                          (long long)w->dims[1], (long long)group);
    if (M % group)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "W has %lld output channels, not a multiple of group %lld",
                          (long long)M, (long long)group);
    KILN_TRY(check_bias(k, b, M));

    struct conv_plan c = {.N = (size_t)N, .C = (size_t)C, .M = (size_t)M, .G = (size_t)group,
                          .w1 = (size_t)w->dims[1]};
    KILN_TRY(conv_geometry(k, &st->a, nd, x->dims + 2, w->dims + 2, &c.g));
    struct conv_io io;
    KILN_TRY(conv_io_open(k, x, w, b, M, c.g.out, &io));
    if (kiln_tensor_numel(io.y) == 0) return KILN_OK;
    c.cg = c.C / c.G;
    c.mg = c.M / c.G;
    c.kdim = c.cg * c.g.ks;

    int v = conv_pick(st->variant, &c);
    size_t n;
    if (!conv_scratch_bytes(k->pool, v, &c, &n))
        return kiln_kfail(k, KILN_E_LIMIT, "%s buffer size overflows",
                          v == CONV_DW ? "depthwise" : "im2col");
    float *scratch = NULL;
    if (n) KILN_TRY(kiln_scratch(k, n, (void **)&scratch));
    conv_compute(k->pool, v, &c, io.x, io.w, io.b, io.yf, scratch);
    kiln_unstage_f32(io.y, io.yf);
    return KILN_OK;
}

/* ------------------------------------------------------------------ ConvTranspose */

/* ConvTranspose's geometry for input spatial sizes xin[0..nd) and kernel sizes wk[0..nd):
 * that of the Conv whose adjoint it is, so g->in is our output and g->out our input. */
static kiln_status convt_geometry(struct kiln_kctx *k, const struct conv_attrs *a, int nd,
                                  const int64_t *xin, const int64_t *wk, struct conv_geom *g)
{
    *g = (struct conv_geom){.nd = nd, .ks = 1, .is = 1, .os = 1};
    int64_t pe[KILN_MAX_RANK], opad[KILN_MAX_RANK];
    bool pads_given = a->n_pads != 0;
    KILN_TRY(read_sd(k, a, nd, g->s, g->d));
    KILN_TRY(read_pads(k, a, nd, g->pb, pe));
    size_t c = a->n_opad;
    if (c && c != (size_t)nd)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "output_padding has %zu values; expected %d", c, nd);
    for (int i = 0; i < nd; i++) opad[i] = c ? a->opad[i] : 0;
    const int64_t *os = a->oshape;
    size_t nos = a->n_oshape;
    if (nos == (size_t)nd + 2) os += 2, nos -= 2;
    if (nos && nos != (size_t)nd)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "output_shape has %zu values; expected %d", nos, nd);
    bool same = a->pad == CONV_PAD_SAME_UPPER || a->pad == CONV_PAD_SAME_LOWER;
    for (int i = 0; i < nd; i++) {
        g->out[i] = xin[i];
        g->k[i] = wk[i];
        int64_t dk = (g->k[i] - 1) * g->d[i] + 1;
        int64_t full = g->s[i] * (g->out[i] - 1) + opad[i] + dk;
        if (a->pad == CONV_PAD_VALID) g->pb[i] = pe[i] = 0;
        if (same || (nos && !pads_given)) {
            int64_t want = nos ? os[i] : g->out[i] * g->s[i];
            int64_t tot = full - want;
            g->pb[i] = a->pad == CONV_PAD_SAME_UPPER ? kiln_div_floor(tot, 2)
                                                      : tot - kiln_div_floor(tot, 2);
            g->in[i] = want;
        } else {
            g->in[i] = nos ? os[i] : full - g->pb[i] - pe[i];
        }
        if (g->in[i] < 0)
            return kiln_kfail(k, KILN_E_INVALID_ARG, "output spatial dim %d would be %lld", i,
                              (long long)g->in[i]);
        g->ks *= (size_t)g->k[i];
        g->is *= (size_t)g->in[i];
        g->os *= (size_t)g->out[i];
    }
    return KILN_OK;
}

/* Units (image, group) of a ConvTranspose run side by side (see "threading"). */
struct convt_unit_job {
    const struct conv_geom *g;
    const float *x, *w, *b;
    float *y;
    float *col; /* per thread rows * os floats */
    size_t C, M, G, cg, mg, rows;
};

static void convt_unit_chunk(void *ctx, size_t u0, size_t u1, int worker)
{
    const struct convt_unit_job *j = ctx;
    const struct conv_geom *g = j->g;
    float *col = j->col + (size_t)worker * j->rows * g->os;
    for (size_t u = u0; u < u1; u++) {
        size_t n = u / j->G, gi = u % j->G;
        const float *xg = j->x + (n * j->C + gi * j->cg) * g->os;
        float *yg = j->y + (n * j->M + gi * j->mg) * g->is;
        kiln_sgemm(true, false, j->rows, g->os, j->cg, 1.0f, j->w + gi * j->cg * j->rows, j->rows,
                   xg, g->os, 0.0f, col, g->os);
        col2im(col, 0, j->mg, g, yg);
        add_bias(yg, j->b ? j->b + gi * j->mg : NULL, j->mg, g->is);
    }
}

/* The reference ConvTranspose ("sgemm+col2im"): per (image, group) col = W_g^T X_g with
 * kiln_sgemm, which takes W as stored (and transposes it itself, on every call), then
 * col2im and the bias. yf is zero-filled here. */
static kiln_status convt_compute(struct kiln_kctx *k, const struct conv_geom *g, size_t N, size_t C,
                                 size_t M, size_t G, const float *x, const float *w, const float *b,
                                 float *yf, size_t ny)
{
    memset(yf, 0, ny * sizeof *yf);
    size_t cg = C / G, mg = M / G;
    size_t rows = mg * g->ks, units = N * G, n;
    size_t threads = (size_t)kiln_pool_threads(k->pool);
    bool side = threads > 1 && units > 1 && !kiln_sgemm_par_splits(k->pool, rows, g->os, cg) &&
                rows * g->os <= UNIT_COL_MAX;
    size_t bufs = side ? threads : 1;
    struct convt_unit_job j = {g, x, w, b, yf, NULL, C, M, G, cg, mg, rows};
    if (!kiln_mul_size(rows, g->os, &n) || !kiln_mul_size(n, bufs, &n) ||
        !kiln_mul_size(n, sizeof(float), &n))
        return kiln_kfail(k, KILN_E_LIMIT, "col2im buffer size overflows");
    KILN_TRY(kiln_scratch_raw(k, n + 1, (void **)&j.col));
    if (side) {
        kiln_pool_for(k->pool, units, grain_for(rows * g->os * cg / 2), convt_unit_chunk, &j);
        return KILN_OK;
    }
    for (size_t ni = 0; ni < N; ni++)
        for (size_t gi = 0; gi < G; gi++) {
            const float *xg = x + (ni * C + gi * cg) * g->os;
            float *yg = yf + (ni * M + gi * mg) * g->is;
            /* col[rows x in_positions] = W_g^T [rows x cg] * X_g [cg x in_positions]. */
            kiln_sgemm_par(k->pool, true, false, rows, g->os, cg, 1.0f, w + gi * cg * rows, rows, xg,
                           g->os, 0.0f, j.col, g->os);
            col2im_par(k->pool, j.col, mg, g, yg);
            add_bias_par(k->pool, yg, b ? b + gi * mg : NULL, mg, g->is);
        }
    return KILN_OK;
}

/* ------------------------------------------------------------------ ConvTranspose, oneDNN
 *
 * The "onednn" variant, for the shapes the engine was built for: per (image, group) a oneDNN
 * matmul primitive made at prepare computes col [in positions][ks][channels] = X_g^T W_g
 * (X_g^T a strided view of X, no copy; W_g's columns ordered (kernel position, output
 * channel), reordered once at prepare into the primitive's own format and kept as prepacked
 * blobs of the engine, kiln_dnnl_pack_weights), where kiln_sgemm transposed and packed all
 * of W on every call. The col2im then adds whole channel vectors (cpu/convt_isa.h) into a
 * channels-last buffer and writes the NCHW planes with the bias; the activation follows
 * per plane. The output channels of a group are split into T slices (T up to the engine's
 * threads), each with its own primitive, weights (blob key CONVT_BLOB_KEY + slice * group
 * count + group) and buffers, run one per pool thread on one OpenMP thread
 * (cpu/dnnl_util.h): a slice's planes are written by that slice alone, so the slices need no
 * synchronisation. Up to 3 spatial dims.
 *
 * Why not oneDNN's deconvolution primitive: measured on DCGAN's layers (Sapphire Rapids,
 * oneDNN 2.6, one thread) its kernels (backward-data convolutions) ran at 30-60 GFLOP/s in
 * nchw, nhwc and blocked layouts, this matmul at 140-200. */

#define CONVT_MAX_SLICES 16
#define CONVT_BLOB_KEY 0x63740000u /* "ct" */
#define CONVT_MAX_BLOBS 0x10000u

struct convt_slice {
    size_t m0, m1; /* output channels within each group */
    struct kiln_pgemm **pg; /* "pgemm": per group, W' of the slice prepacked for kiln's GEMM */
    const void **w;         /* "onednn": per group, W' in w_md's format */
#ifdef KILN_HAVE_DNNL
    dnnl_primitive_t prim;
    dnnl_memory_desc_t a_md, w_md, c_md, sp_md; /* sp_md: its scratchpad (zeros: none) */
#endif
};

/* What the oneDNN variant's prepare made: the shapes it holds for and the slices. */
struct convt_fast {
    struct conv_geom g;
    size_t N, C, M, G, cg, mg;
    struct kiln_convt_cl cl; /* col2im geometry (nm set per slice) */
    size_t buf_floats;       /* per slice: col, os * ks * nm, the plane buffer, is * nm, and
                              * for "pgemm" X_g^T, os rows at the stride lda */
    bool pgemm;              /* the product on kiln's GEMM, else oneDNN's matmul */
    size_t lda;
    int n_slices;
    struct convt_slice sl[CONVT_MAX_SLICES];
};

/* What ConvTranspose's (and FusedConvTranspose's) prepare makes. */
struct convt_state {
    struct conv_attrs a;
    struct kiln_act act;          /* FusedConvTranspose's activation; none for ConvTranspose */
    const struct convt_fast *fast; /* NULL: the reference variant */
};

enum { CONVT_SGEMM = 1, CONVT_ONEDNN = 2, CONVT_PGEMM = 3 };

/* Reads the activation attributes of a FusedConvTranspose (none for ConvTranspose). */
static kiln_status convt_read_act(struct kiln_kctx *k, bool fused, struct kiln_act *act)
{
    memset(act, 0, sizeof *act);
    act->kind = KILN_ACT_NONE;
    if (!fused) return KILN_OK;
    return kiln_attr_act(k, act);
}

static kiln_status convt_decode(struct kiln_kctx *k, bool fused, struct convt_state *s)
{
    memset(s, 0, sizeof *s);
    KILN_TRY(conv_decode(k, true, &s->a));
    return convt_read_act(k, fused, &s->act);
}

static void convt_fast_free(void *arg)
{
#ifdef KILN_HAVE_DNNL
    struct convt_fast *f = arg;
    for (int i = 0; i < f->n_slices; i++)
        if (f->sl[i].prim) dnnl_primitive_destroy(f->sl[i].prim);
#else
    (void)arg;
#endif
}

#ifdef KILN_HAVE_DNNL

/* Slice sl's primitive: col [os, ks * nm] = X_g^T [os, cg] (X_g as it lies) * W' [cg, ks * nm]. */
static bool convt_make_slice(dnnl_engine_t eng, const struct convt_fast *f, struct convt_slice *sl)
{
    dnnl_dim_t n = (dnnl_dim_t)((sl->m1 - sl->m0) * f->g.ks), K = (dnnl_dim_t)f->cg;
    dnnl_dim_t os = (dnnl_dim_t)f->g.os;
    dnnl_dims_t ad = {os, K}, as = {1, os}, cd = {os, n}, cs = {n, 1};
    if (dnnl_memory_desc_init_by_strides(&sl->a_md, 2, ad, dnnl_f32, as) ||
        dnnl_memory_desc_init_by_strides(&sl->c_md, 2, cd, dnnl_f32, cs))
        return false;
    kiln_dnnl_matmul_create(eng, &sl->a_md, &sl->c_md, dnnl_f32, false, &sl->prim, &sl->w_md, &sl->sp_md);
    return sl->prim != NULL;
}
#endif

/* The number of slices for f: one per thread, each at least one channel and ~1 MFLOP. */
static int convt_slices(const struct convt_fast *f, int threads)
{
    double flops = 2.0 * (double)(f->N * f->M) * (double)(f->cg * f->g.ks) * (double)f->g.os;
    int t = threads < 1 ? 1 : threads;
    if (t > CONVT_MAX_SLICES) t = CONVT_MAX_SLICES;
    if ((size_t)t > f->mg) t = (int)f->mg;
    while (t > 1 && flops / t < 1e6) t--;
    return t;
}

/* Packs group gi's weights for slice sl (blob `key`): W [C, mg, ks] rows gi * cg .. as
 * W' [cg][ks][m1 - m0], the columns the slice computes, then into kiln's GEMM's panels
 * ("pgemm") or sl->w_md's format (oneDNN). tmp holds cg * ks * (m1 - m0) floats. The slice's
 * pg[gi] or w[gi] stays NULL when oneDNN declines. */
static kiln_status convt_pack(struct kiln_kprep *p, const struct convt_fast *f, struct convt_slice *sl,
                              size_t gi, uint32_t key, const float *w, float *tmp)
{
    size_t nm = sl->m1 - sl->m0, ks = f->g.ks;
    for (size_t c = 0; c < f->cg; c++)
        for (size_t kidx = 0; kidx < ks; kidx++)
            for (size_t m = 0; m < nm; m++)
                tmp[(c * ks + kidx) * nm + m] = w[((gi * f->cg + c) * f->mg + sl->m0 + m) * ks + kidx];
    if (f->pgemm) return kiln_pgemm_prepare(p, key, f->cg, ks * nm, tmp, ks * nm, false, &sl->pg[gi]);
#ifdef KILN_HAVE_DNNL
    dnnl_dims_t d = {(dnnl_dim_t)f->cg, (dnnl_dim_t)(ks * nm)}, st = {(dnnl_dim_t)(ks * nm), 1};
    dnnl_memory_desc_t plain;
    if (dnnl_memory_desc_init_by_strides(&plain, 2, d, dnnl_f32, st)) return KILN_OK;
    return kiln_dnnl_pack_weights(p, key, &plain, tmp, &sl->w_md, &sl->w[gi]);
#else
    return KILN_OK;
#endif
}

/* Sets up the "pgemm" variant (pgemm true: kiln's GEMM) or the "onednn" one for p's node
 * (attributes a) when W is a float32 constant, X float32 of static shape with 1 to 3 spatial
 * dims, the instruction set AVX2 or better and (onednn) oneDNN there (B, read at run, may be
 * anything the run accepts); *out stays NULL otherwise (and when oneDNN declines). Errors
 * only for out of memory. */
static kiln_status convt_fast_prepare(struct kiln_kprep *p, const struct conv_attrs *a, bool pgemm,
                                      const struct convt_fast **out)
{
    *out = NULL;
    const struct kiln_tensor *w = kiln_kprep_const(p, 1);
    int xr;
    int64_t xd[KILN_MAX_RANK];
    if (!w || w->dtype != KILN_DTYPE_F32 || !static_dims(p->in[0], &xr, xd) ||
        p->in[0]->type.elem != KILN_DTYPE_F32 || xr != w->rank || xr < 3 || xr > 5 ||
        kiln_isa_active() < KILN_ISA_AVX2)
        return KILN_OK;
    int64_t C = xd[1], G = a->group;
    if (w->dims[0] != C || C % G) return KILN_OK; /* the run reports it */
    for (size_t i = 0; i < a->n_kshape; i++)
        if (a->n_kshape != (size_t)xr - 2 || a->kshape[i] != w->dims[2 + i]) return KILN_OK;
    struct convt_fast f = {.N = (size_t)xd[0], .C = (size_t)C, .G = (size_t)G, .pgemm = pgemm};
    kiln_err geom_err; /* geometry errors belong to the run, which names the inputs */
    struct kiln_kctx kc = p->kc;
    kc.err = &geom_err;
    int nd = xr - 2;
    if (convt_geometry(&kc, a, nd, xd + 2, w->dims + 2, &f.g)) return KILN_OK;
    f.cg = f.C / f.G;
    f.mg = (size_t)w->dims[1];
    f.M = f.mg * f.G;
    size_t nw;
    if (!f.N || !f.mg || !f.cg || !f.g.os || !f.g.is || !kiln_mul_size(f.mg * f.g.ks, f.C, &nw) ||
        nw != kiln_tensor_numel(w))
        return KILN_OK;
    for (int i = 0; i < 3; i++) { /* leading dims of size 1 */
        int s = i - (3 - nd);
        f.cl.in[i] = s < 0 ? 1 : f.g.out[s];
        f.cl.out[i] = s < 0 ? 1 : f.g.in[s];
        f.cl.k[i] = s < 0 ? 1 : f.g.k[s];
        f.cl.s[i] = s < 0 ? 1 : f.g.s[s];
        f.cl.d[i] = s < 0 ? 1 : f.g.d[s];
        f.cl.pb[i] = s < 0 ? 0 : f.g.pb[s];
    }
    f.cl.is = f.g.is;
    f.cl.ks = f.g.ks;
#ifdef KILN_HAVE_DNNL
    dnnl_engine_t eng = pgemm ? NULL : kiln_dnnl_engine();
    if (!pgemm && !eng) return KILN_OK;
#else
    if (!pgemm) return KILN_OK;
#endif
    if (pgemm && !kiln_pgemm_available()) return KILN_OK;
    int t = convt_slices(&f, p->threads);
    if ((size_t)t * f.G > CONVT_MAX_BLOBS) return KILN_OK;
    struct convt_fast *fp;
    KILN_TRY(kiln_kprep_alloc(p, sizeof *fp, (void **)&fp));
    *fp = f;
    size_t nm_max = 0;
    for (int i = 0; i < t; i++) {
        struct convt_slice *sl = &fp->sl[i];
        sl->m0 = fp->mg * (size_t)i / (size_t)t;
        sl->m1 = fp->mg * (size_t)(i + 1) / (size_t)t;
        if (sl->m1 - sl->m0 > nm_max) nm_max = sl->m1 - sl->m0;
        fp->n_slices = i + 1;
#ifdef KILN_HAVE_DNNL
        if (!pgemm && !convt_make_slice(eng, fp, sl)) {
            convt_fast_free(fp);
            return KILN_OK;
        }
#endif
    }
    kiln_status st = kiln_kprep_on_free(p, convt_fast_free, fp);
    if (st) {
        convt_fast_free(fp);
        return st;
    }
    fp->buf_floats = (fp->g.os * fp->g.ks + fp->g.is) * nm_max;
    float *tmp = kiln_malloc(fp->cg * fp->g.ks * nm_max * sizeof *tmp + 1);
    if (!tmp) return kiln_kfail(&p->kc, KILN_E_NOMEM, "out of memory packing W");
    for (int i = 0; i < t && !st; i++) {
        struct convt_slice *sl = &fp->sl[i];
        void **per = pgemm ? (void **)&sl->pg : (void **)&sl->w;
        st = kiln_kprep_alloc(p, fp->G * sizeof(void *), per);
        for (size_t gi = 0; gi < fp->G && !st; gi++) {
            st = convt_pack(p, fp, sl, gi, CONVT_BLOB_KEY + (uint32_t)((size_t)i * fp->G + gi), w->data, tmp);
            if (!st && !(pgemm ? (const void *)sl->pg[gi] : (const void *)sl->w[gi])) {
                kiln_free(tmp);
                return KILN_OK; /* oneDNN failed: the reference variant */
            }
        }
    }
    kiln_free(tmp);
    if (st) return st;
    if (pgemm) { /* X_g^T's rows: cg floats, or the stride kiln's GEMM asks for */
        size_t ld = kiln_pgemm_a_stride(fp->sl[0].pg[0], fp->g.os, fp->cg);
        fp->lda = ld ? ld : fp->cg;
        fp->buf_floats += fp->g.os * fp->lda;
    }
    *out = fp;
    return KILN_OK;
}

struct convt_fast_job {
    const struct convt_fast *f;
    const struct kiln_act *act;
    const float *x, *b;
    float *y;
    bool failed[CONVT_MAX_SLICES];
};

/* Each thread's col and plane buffer, kept from run to run (freed when the thread exits):
 * a megabyte or so that kiln_scratch would zero on every run, which cost 4% of DCGAN. */
static pthread_key_t convt_buf_key;
static pthread_once_t convt_buf_once = PTHREAD_ONCE_INIT;
static bool convt_buf_ok;

static void convt_buf_init(void)
{
    convt_buf_ok = pthread_key_create(&convt_buf_key, kiln_aligned_free) == 0;
}

/* This thread's buffer of at least `floats` floats (contents undefined); NULL when memory
 * cannot be had. */
static float *convt_thread_buf(size_t floats)
{
    pthread_once(&convt_buf_once, convt_buf_init);
    if (!convt_buf_ok) return NULL;
    size_t *h = pthread_getspecific(convt_buf_key), bytes; /* h[0]: capacity in floats */
    if (h && h[0] >= floats) return (float *)((char *)h + 64);
    if (!kiln_mul_size(floats, sizeof(float), &bytes) || !kiln_add_size(bytes, 64, &bytes)) return NULL;
    size_t *n = kiln_aligned_alloc(64, bytes);
    if (!n) return NULL;
    n[0] = floats;
    if (pthread_setspecific(convt_buf_key, n)) {
        kiln_aligned_free(n);
        return NULL;
    }
    kiln_aligned_free(h);
    return (float *)((char *)n + 64);
}

/* col [os, ks * nm] = X_g^T W'_g for slice sl: on kiln's GEMM after X_g [cg, os] is
 * transposed into xt (os rows at f->lda), else on oneDNN's matmul reading X_g^T as a strided
 * view; false when oneDNN fails. */
static bool convt_product(const struct convt_fast *f, const struct convt_slice *sl, size_t gi, const float *xg,
                          float *xt, float *col)
{
    size_t os = f->g.os, nm = sl->m1 - sl->m0;
    if (f->pgemm) {
        for (size_t c0 = 0; c0 < f->cg; c0 += 16) /* 16 channels at a time: whole lines of xt */
            for (size_t q = 0; q < os; q++)
                for (size_t c = c0; c < f->cg && c < c0 + 16; c++) xt[q * f->lda + c] = xg[c * os + q];
        kiln_pgemm_run(sl->pg[gi], NULL, os, xt, f->lda, col, f->g.ks * nm, false, NULL);
        return true;
    }
#ifdef KILN_HAVE_DNNL
    struct kiln_dnnl_arg args[4] = {{DNNL_ARG_SRC, &sl->a_md, xg},
                                    {DNNL_ARG_WEIGHTS, &sl->w_md, sl->w[gi]},
                                    {DNNL_ARG_DST, &sl->c_md, col},
                                    {DNNL_ARG_SCRATCHPAD, &sl->sp_md, NULL}};
    return kiln_dnnl_execute(sl->prim, 4, args);
#else
    (void)nm;
    return false;
#endif
}

/* Runs slice i for every (image, group): the product into its col buffer, then col2im with
 * the bias onto its channels' planes, and the activation. */
static void convt_fast_slice(void *ctx, size_t i0, size_t i1, int worker)
{
    (void)worker;
    struct convt_fast_job *j = ctx;
    const struct convt_fast *f = j->f;
    const struct conv_geom *g = &f->g;
    float *buf = convt_thread_buf(f->buf_floats);
    for (size_t i = i0; i < i1; i++) {
        const struct convt_slice *sl = &f->sl[i];
        size_t nm = sl->m1 - sl->m0;
        float *col = buf, *P = col + g->os * g->ks * nm, *xt = P + g->is * nm;
        if (!buf) j->failed[i] = true;
        struct kiln_convt_cl cl = f->cl;
        cl.nm = nm;
        for (size_t u = 0; u < f->N * f->G && !j->failed[i]; u++) {
            size_t n = u / f->G, gi = u % f->G;
            const float *xg = j->x + (n * f->C + gi * f->cg) * g->os;
            if (!convt_product(f, sl, gi, xg, xt, col)) {
                j->failed[i] = true;
                break;
            }
            size_t m0 = gi * f->mg + sl->m0;
            float *yp = j->y + (n * f->M + m0) * g->is;
            KILN_ISA_DISPATCH(kiln_convt_col2im_cl_isa, (&cl, col, j->b ? j->b + m0 : NULL, P, yp));
            if (j->act->kind != KILN_ACT_NONE) kiln_act_apply_f32(j->act, yp, NULL, yp, nm * g->is);
        }
    }
}

/* Runs the oneDNN variant when x, w and y are what it was prepared for; *done false when it
 * does not apply or oneDNN failed (the reference then computes y). */
static kiln_status convt_fast_run(struct kiln_kctx *k, const struct convt_state *s,
                                  const struct kiln_tensor *x, const struct kiln_tensor *w,
                                  const struct kiln_tensor *b, struct kiln_tensor *y, bool *done)
{
    const struct convt_fast *f = s->fast;
    *done = false;
    if (!f || x->dtype != KILN_DTYPE_F32 || w->dtype != KILN_DTYPE_F32 || y->dtype != KILN_DTYPE_F32 ||
        (b && b->dtype != KILN_DTYPE_F32) ||
        (size_t)x->dims[0] != f->N || (size_t)x->dims[1] != f->C || (size_t)y->dims[1] != f->M)
        return KILN_OK;
    for (int i = 0; i < f->g.nd; i++)
        if (x->dims[2 + i] != f->g.out[i] || y->dims[2 + i] != f->g.in[i] || w->dims[2 + i] != f->g.k[i])
            return KILN_OK;
    (void)k;
    struct convt_fast_job j = {f, &s->act, x->data, b ? b->data : NULL, y->data, {0}};
    kiln_pool_for(k->pool, (size_t)f->n_slices, 1, convt_fast_slice, &j);
    for (int i = 0; i < f->n_slices; i++)
        if (j.failed[i]) return KILN_OK;
    *done = true;
    return KILN_OK;
}

/* ConvTranspose's prepare (fused: FusedConvTranspose's, with its activation): the
 * attributes, and the oneDNN variant when it applies (see above). */
static kiln_status convt_prepare_common(struct kiln_kprep *p, bool fused)
{
    struct convt_state *s;
    KILN_TRY(kiln_kprep_alloc(p, sizeof *s, (void **)&s));
    KILN_TRY(convt_decode(&p->kc, fused, s));
    p->state = s;
    p->chosen = CONVT_SGEMM;
    p->kernel = "sgemm+col2im";
    /* A new engine: kiln's GEMM at AVX2, where oneDNN's AVX2 matmul ran DCGAN's layers at
     * 40-47 GFLOP/s (Zen 4, KILN_CPU_ISA=avx2); oneDNN's at AVX-512. An engine file keeps its
     * variant (older kilns: 0, the reference). */
    int want = p->variant == CONVT_PGEMM || p->variant == CONVT_ONEDNN ? p->variant
               : p->variant >= 0                                     ? CONVT_SGEMM
               : kiln_isa_active() == KILN_ISA_AVX2                  ? CONVT_PGEMM
                                                                     : CONVT_ONEDNN;
    if (want != CONVT_SGEMM) {
        KILN_TRY(convt_fast_prepare(p, &s->a, want == CONVT_PGEMM, &s->fast));
        if (s->fast) {
            p->chosen = want;
            p->kernel = want == CONVT_PGEMM ? "pgemm+col2im" : "onednn";
        }
    }
    return KILN_OK;
}

static kiln_status convt_prepare(struct kiln_kprep *p) { return convt_prepare_common(p, false); }
static kiln_status fused_convt_prepare(struct kiln_kprep *p) { return convt_prepare_common(p, true); }

static kiln_status convt_run_common(struct kiln_kctx *k, bool fused)
{
    struct convt_state own;
    const struct convt_state *s = k->state;
    if (!s) { /* called without prepare (kernel tests): decode the attributes now */
        KILN_TRY(convt_decode(k, fused, &own));
        s = &own;
    }
    const struct conv_attrs *a = &s->a;
    const struct kiln_tensor *x, *w, *b;
    KILN_TRY(conv_inputs(k, a, &x, &w, &b));
    int64_t group = a->group;
    int nd = x->rank - 2;
    int64_t N = x->dims[0], C = x->dims[1];
    if (w->dims[0] != C)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "W has %lld input channels; X has %lld",
                          (long long)w->dims[0], (long long)C);
    if (C % group)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "X has %lld channels, not a multiple of group %lld",
                          (long long)C, (long long)group);
    int64_t M = w->dims[1] * group;
    KILN_TRY(check_bias(k, b, M));
    struct conv_geom g;
    KILN_TRY(convt_geometry(k, a, nd, x->dims + 2, w->dims + 2, &g));
    struct conv_io io;
    KILN_TRY(conv_io_open(k, x, w, b, M, g.in, &io));
    size_t ny = kiln_tensor_numel(io.y);
    if (ny == 0) return KILN_OK;
    if (s->fast) {
        bool done;
        KILN_TRY(convt_fast_run(k, s, x, w, b, io.y, &done));
        if (done) return KILN_OK;
    }
    KILN_TRY(convt_compute(k, &g, (size_t)N, (size_t)C, (size_t)M, (size_t)group, io.x, io.w, io.b,
                           io.yf, ny));
    if (s->act.kind != KILN_ACT_NONE) kiln_act_apply_par(k->pool, &s->act, io.yf, NULL, io.yf, ny);
    kiln_unstage_f32(io.y, io.yf);
    return KILN_OK;
}

static kiln_status convt_run(struct kiln_kctx *k) { return convt_run_common(k, false); }
static kiln_status fused_convt_run(struct kiln_kctx *k) { return convt_run_common(k, true); }

const struct kiln_cpu_op kiln_cpu_ops_conv[] = {
    {"Conv", "", 1, 0, kiln_cpu_conv_run, kiln_cpu_conv_prepare, 0},
    {"ConvTranspose", "", 1, 0, convt_run, convt_prepare, 0},
    /* kiln.FusedConvTranspose (docs/fused-ops.md): ConvTranspose, then the activation. */
    {"FusedConvTranspose", "kiln", 1, 0, fused_convt_run, fused_convt_prepare, 0},
    {0},
};
