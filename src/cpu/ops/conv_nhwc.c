/* src/cpu/ops/conv_nhwc.c: kiln.ConvNhwc, a 2-D convolution on channels-last tensors
 * (docs/fused-ops.md). The optimizer's NHWC pass (src/opt/pass_nhwc.c) rewrites CNN regions
 * to it, so that activations stay channels-last from one convolution to the next.
 *
 *   ConvNhwc (X [N, H, W, C], W [M, C/group, kH, kW], B? [M], Z? [N, OH, OW, M])
 *       -> Y [N, OH, OW, M] = act(conv(X, W) + B + Z)
 *
 * Attributes are kiln.FusedConv's (Conv's plus activation, activation_params, approximate),
 * and x_nchw (0 or 1, default 0): 1 says X is planar, [N, C, H, W], as a model's input image
 * is; Y is channels-last all the same. The NHWC pass sets it on a region's first
 * convolutions (group 1, at most 4 input channels), whose entry Transpose then goes.
 *
 * Variants:
 *   "onednn-*"  oneDNN's convolution primitive on nhwc memory (its brgconv / depthwise JIT
 *               kernels), when kiln has oneDNN, the instruction set is AVX2 or better, and
 *               C, H, W are known at prepare. kiln's threads split the work into T slices
 *               (T = the engine's threads, fewer when a slice would get under ~1 MFLOP,
 *               0.4 MFLOP for grouped and depthwise convolutions), each its own primitive
 *               created at prepare and run on one OpenMP thread (cpu/dnnl_util.h), in one
 *               of three ways chosen per convolution:
 *                 rows      output rows; each slice's primitive has the padding its rows see
 *                           and reads the input rows they need, and all the weights;
 *                 pixels    1x1, stride 1, no padding: the image's pixels as one row, split
 *                           evenly (7x7 = 49 pixels go 25/24 where rows go 4/3);
 *                 channels  group 1: output channels in blocks of 16; each slice's primitive
 *                           covers every row for its channels with its share of the weights,
 *                           writing a dense [OH*OW, Ms] buffer of its thread (oneDNN takes
 *                           only dense nhwc: a strided view runs its reference kernel, and
 *                           a strided matmul gemm:jit instead of brgemm) that is then copied
 *                           into Y's channels (1-7% of the slice's primitive time, about 95 us
 *                           a run in ResNet-50's 7x7 stage at 2 threads: notes-firstconv.md). For small images with many
 *                           channels (ResNet's 14x14 and 7x7 stages): balanced to a block,
 *                           and each thread reads only its share of the weights.
 *               The choice is a cost estimate (split_cost: the slowest slice's FLOPs and
 *               bytes moved); KILN_CONV_NHWC_SPLIT=rows|pixels|channels forces one where it
 *               applies (tests, measurements), and a loaded engine keeps the one it was built
 *               with (the variant number). Measured per slice at 2 threads (slowest slice,
 *               one at a time): ResNet-50's convolutions 2.01x faster than on one thread
 *               (rows alone, which needed 4 rows a slice, left the 7x7 stage on one thread:
 *               1.69x), MobileNetV2's 1.99x (1.62x). N > 1 runs the images one after another
 *               in every slice, or, when that balances better (N a multiple of T, say), whole
 *               images per thread with a primitive of the whole convolution (sl[n_slices]).
 *               Weights are reordered into each primitive's format at prepare and kept
 *               as prepacked blobs (kiln_dnnl_pack_weights). The epilogue runs in the
 *               primitive: Z as a sum post-op (Z's part copied into the slice's destination
 *               first, while it is about to be used), then the activation as eltwise post-ops
 *               (every kind of cpu/act.h has one; oneDNN's exp/erf/tanh are within a few ulp
 *               of kiln's). Should oneDNN decline those post-ops, the primitives are made
 *               without them and kiln_act_apply_f32 follows per slice; so too for the
 *               activations built on exp/erf/tanh on AMD CPUs, where kiln's pass measured
 *               faster than oneDNN's post-op (onednn_exp_acts). The memory objects of
 *               the arguments come from dnnl_util's per-thread cache: a run creates none.
 *               Results are deterministic for a given engine (its split is fixed at prepare);
 *               engines built for different thread counts may split differently, which can
 *               change the summation order inside oneDNN's kernels and so the last bits.
 *   "onednn-winograd"  the row split on oneDNN's Winograd convolution (AVX-512: F(2x2, 3x3),
 *               or F(4x4, 3x3) for the unequal padding of several slices), for 3x3 stride-1
 *               undilated group-1 convolutions without Z where wino_slices' measured rule says
 *               it is faster. It takes nChw16c only: each slice reorders its input rows into
 *               the thread's staging buffer, runs, and reorders its blocked output into Y
 *               (the activation still a post-op). Not exact like a direct sum: its
 *               transforms round (tests/unit/test_conv_nhwc.c states the tolerance).
 *   "onednn-winograd-channels"  the channel split on oneDNN's F(2x2, 3x3) Winograd kernel:
 *               each slice transforms the whole image (symmetric padding, so F(2x2, 3x3))
 *               into its thread's staging buffer, after the slice's dense output, for its
 *               block of output channels (wino_channels' rule: where row slices would need
 *               F(4x4, 3x3)'s large weights, ResNet-50's 14x14 256 -> 256 layers at 2
 *               threads: 570 -> 545 us a layer; tests/unit/test_conv_wino_channels.c).
 *   "nchw-first"  x_nchw 1, group 1, at AVX-512 for kernels up to 3x3, and for symbolic H
 *               or W at AVX2 and up: kiln's own kernel (cpu/conv_first_isa.h,
 *               src/cpu/isa/conv_first.c) reading each tap from X's planes with a broadcast
 *               into vectors of output channels, weights packed at prepare as [C][kh][kw][M
 *               rounded to 16], 64-byte aligned; output rows split over the threads in
 *               contiguous runs; Relu and Clip (without Z) at the kernel's store, other
 *               activations and Z on each row after it. oneDNN 2.6 has no fast kernel for nchw
 *               src with nhwc dst (it picks ref:any), and the Transpose this replaces cost
 *               70-85 us a run on a 224x224 image. Measured (docs/notes-firstconv.md): on
 *               MobileNetV2's 3 -> 32 3x3/2 layer as fast as oneDNN's brgconv on the
 *               transposed image (148-165 against 150-175 us), so the Transpose is saved; on
 *               ResNet-50's 7x7 layer 5-10% behind it, and at AVX2 at 60% of its speed: there
 *               x_nchw runs "onednn-rows" with each row slice's planar rows copied
 *               channels-last into its thread's buffer first (planar_rows).
 *   "pgemm-taps"  group 1, X channels-last, static shapes, at AVX2 when at most half of the
 *               (tap, output) pairs read inside the image (large dilations on small maps):
 *               tap by tap on kiln's GEMM over only the outputs whose input is inside
 *               (cpu/ops/conv_taps.h), the padding never multiplied. KILN_CONV_NHWC_SPLIT=taps
 *               forces it wherever it applies (tests).
 *   "direct"    the reference: a direct loop with the weights re-laid [g][kh][kw][c][m] so
 *               the inner loop runs over contiguous output channels (X read through strides:
 *               NHWC, or NCHW for x_nchw). Used for symbolic shapes, KILN_CPU_ISA=portable,
 *               builds without oneDNN and grouped x_nchw convolutions.
 * float32 only (the NHWC pass rewrites float32 convolutions only).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/pool.h"
#include "cpu/act.h"
#include "cpu/conv_first_isa.h"
#include "cpu/dnnl_util.h"
#include "cpu/features.h"
#include "cpu/isa.h"
#include "cpu/kernel.h"
#include "cpu/ops/conv_taps.h"
#include "infer/infer.h"

#define MAX_SLICES 16

/* The variants (p->chosen): direct, oneDNN with one of three ways of splitting the work, or
 * oneDNN's Winograd on row slices. */
enum { V_DIRECT, V_ROWS, V_CHANNELS, V_PIXELS, V_WINO, V_WINO_CH, V_FIRST, V_TAPS, V_COUNT };
static const char *const variant_name[V_COUNT] = {"direct",          "onednn-rows",
                                                  "onednn-channels", "onednn-pixels",
                                                  "onednn-winograd", "onednn-winograd-channels",
                                                  "nchw-first",      "pgemm-taps"};

struct nhwc_slice {
    int64_t o0, o1;     /* rows: output rows; pixels: output pixels of an image; channels: 0, OH */
    int64_t in0;        /* rows: the first input row it reads; pixels: the first input pixel */
    int64_t m0, m1;     /* output channels */
#ifdef KILN_HAVE_DNNL
    dnnl_primitive_t prim;
    dnnl_memory_desc_t src_md, dst_md, w_md, b_md, sp_md; /* sp_md: its scratchpad */
    const void *w;      /* weights in w_md's format */
    /* Winograd: the primitive takes src and dst blocked (bsrc_md, bdst_md: nChw16c) in this
     * thread's staging buffer; rin reorders src_md (nhwc) into it, rout dst back. */
    dnnl_primitive_t rin, rout;
    dnnl_memory_desc_t bsrc_md, bdst_md, rin_sp, rout_sp;
#endif
};

struct nhwc_state {
    int64_t group, k[2], s[2], d[2], pb[2], pe[2];
    int auto_pad; /* 0 NOTSET, 1 SAME_UPPER, 2 SAME_LOWER, 3 VALID */
    bool x_nchw;  /* X is [N, C, H, W] (attribute x_nchw 1) */
    const float *wf, *bf; /* nchw-first: weights [C][kh][kw][Mp] and bias [Mp], zero-padded */
    int64_t Mp;
    struct kiln_act act;
    bool epi_in_prim; /* Z (a sum post-op) and the activation run inside the primitive */
    const float *wt;  /* direct: [g][kh][kw][c/g][m/g] */
    const struct kiln_conv_taps *taps; /* pgemm-taps */
    int64_t C, M;     /* 0 when unknown at prepare */
    int split;        /* V_ROWS, V_CHANNELS, V_PIXELS; V_DIRECT: no primitives */
    bool wino;        /* row slices on oneDNN's Winograd convolution (split V_ROWS) */
    int n_slices;
    bool batch;       /* sl[n_slices] is the whole convolution, for N > 1 split by image */
    double share;     /* the largest slice's share of the work */
    int64_t H, W, OH, OW;
    struct nhwc_slice sl[MAX_SLICES + 1];
};

static kiln_status nhwc_decode(struct kiln_kctx *k, struct nhwc_state *s)
{
    memset(s, 0, sizeof *s);
    s->group = kiln_attr_i(k, "group", 1);
    if (s->group < 1)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "group = %lld; expected >= 1", (long long)s->group);
    KILN_TRY(kiln_attr_pair(k, "strides", 1, 1, s->s));
    KILN_TRY(kiln_attr_pair(k, "dilations", 1, 1, s->d));
    s->k[0] = s->k[1] = -1;
    const int64_t *ks;
    size_t nk = kiln_attr_ints(k, "kernel_shape", &ks);
    if (nk && nk != 2)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "kernel_shape has %zu values; expected 2", nk);
    if (nk) s->k[0] = ks[0], s->k[1] = ks[1];
    const int64_t *p;
    size_t np = kiln_attr_ints(k, "pads", &p);
    if (np && np != 4)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "pads has %zu values; expected 4", np);
    for (int i = 0; i < 2; i++) {
        s->pb[i] = np ? p[i] : 0;
        s->pe[i] = np ? p[2 + i] : 0;
        if (s->pb[i] < 0 || s->pe[i] < 0)
            return kiln_kfail(k, KILN_E_INVALID_MODEL, "pads must be >= 0");
    }
    const char *ap = kiln_attr_s(k, "auto_pad", "NOTSET");
    static const char *const aps[] = {"NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"};
    s->auto_pad = -1;
    for (int i = 0; i < 4; i++)
        if (!strcmp(ap, aps[i])) s->auto_pad = i;
    if (s->auto_pad < 0)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "auto_pad '%s' is not one of NOTSET, SAME_UPPER, "
                                                   "SAME_LOWER, VALID", ap);
    int64_t xl = kiln_attr_i(k, "x_nchw", 0);
    if (xl != 0 && xl != 1)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "x_nchw = %lld; expected 0 or 1", (long long)xl);
    s->x_nchw = xl == 1;
    return kiln_attr_act(k, &s->act);
}

/* Output size and begin padding of spatial dim i for input size in (kernel size kk). */
static void nhwc_dim(const struct nhwc_state *s, int i, int64_t in, int64_t kk, int64_t *out,
                     int64_t *pb, int64_t *pe)
{
    int64_t dk = (kk - 1) * s->d[i] + 1;
    if (s->auto_pad == 1 || s->auto_pad == 2) {
        *out = (in + s->s[i] - 1) / s->s[i];
        int64_t tot = (*out - 1) * s->s[i] + dk - in;
        if (tot < 0) tot = 0;
        *pb = s->auto_pad == 1 ? tot / 2 : tot - tot / 2;
        *pe = tot - *pb;
        return;
    }
    *pb = s->auto_pad == 3 ? 0 : s->pb[i];
    *pe = s->auto_pad == 3 ? 0 : s->pe[i];
    int64_t span = in + *pb + *pe - dk;
    *out = span < 0 ? 0 : span / s->s[i] + 1;
}

/* ------------------------------------------------------------------ direct */

/* Re-lays OIHW weights [M][C/g][kh][kw] as [g][kh][kw][c/g][m/g]. */
static void relay_weights(const float *w, int64_t M, int64_t Cg, int64_t G, int64_t kh, int64_t kw,
                          float *wt)
{
    int64_t Mg = M / G;
    for (int64_t g = 0; g < G; g++)
        for (int64_t m = 0; m < Mg; m++)
            for (int64_t c = 0; c < Cg; c++)
                for (int64_t y = 0; y < kh; y++)
                    for (int64_t x = 0; x < kw; x++)
                        wt[(((g * kh + y) * kw + x) * Cg + c) * Mg + m] =
                            w[(((g * Mg + m) * Cg + c) * kh + y) * kw + x];
}

struct direct_job {
    const struct nhwc_state *s;
    const float *x, *wt, *b, *z;
    float *y;
    int64_t H, W, C, M, OH, OW, kh, kw, pt, pl;
    int64_t xn, xh, xw, xc; /* X's strides in elements: NHWC or, x_nchw, NCHW */
};

/* Output rows [r0, r1) of all images (row r = image r / OH, row r % OH). */
static void direct_rows(void *ctx, size_t r0, size_t r1, int worker)
{
    (void)worker;
    const struct direct_job *j = ctx;
    const struct nhwc_state *s = j->s;
    int64_t G = s->group, Cg = j->C / G, Mg = j->M / G;
    for (size_t r = r0; r < r1; r++) {
        int64_t n = (int64_t)r / j->OH, oh = (int64_t)r % j->OH;
        for (int64_t ow = 0; ow < j->OW; ow++) {
            float *yp = j->y + ((n * j->OH + oh) * j->OW + ow) * j->M;
            for (int64_t m = 0; m < j->M; m++) yp[m] = j->b ? j->b[m] : 0.0f;
            for (int64_t ky = 0; ky < j->kh; ky++) {
                int64_t ih = oh * s->s[0] - j->pt + ky * s->d[0];
                if (ih < 0 || ih >= j->H) continue;
                for (int64_t kx = 0; kx < j->kw; kx++) {
                    int64_t iw = ow * s->s[1] - j->pl + kx * s->d[1];
                    if (iw < 0 || iw >= j->W) continue;
                    const float *xp = j->x + n * j->xn + ih * j->xh + iw * j->xw;
                    for (int64_t g = 0; g < G; g++) {
                        const float *wp = j->wt + ((g * j->kh + ky) * j->kw + kx) * Cg * Mg;
                        float *yg = yp + g * Mg;
                        for (int64_t c = 0; c < Cg; c++) {
                            float xv = xp[(g * Cg + c) * j->xc];
                            const float *wc = wp + c * Mg;
                            for (int64_t m = 0; m < Mg; m++) yg[m] += xv * wc[m];
                        }
                    }
                }
            }
            kiln_act_apply_f32(&s->act, yp, j->z ? j->z + (yp - j->y) : NULL, yp, (size_t)j->M);
        }
    }
}

/* ------------------------------------------------------------------ nchw-first */

/* Packs OIHW weights [M][C][kh][kw] (group 1) as [C][kh][kw][Mp] and the bias as [Mp], the
 * padding channels zero (wf and bf come zero-filled). */
static void pack_first(const float *w, const float *b, int64_t M, int64_t C, int64_t kh, int64_t kw,
                       int64_t Mp, float *wf, float *bf)
{
    for (int64_t m = 0; m < M; m++) {
        bf[m] = b ? b[m] : 0.0f;
        for (int64_t c = 0; c < C; c++)
            for (int64_t t = 0; t < kh * kw; t++)
                wf[(c * kh * kw + t) * Mp + m] = w[(m * C + c) * kh * kw + t];
    }
}

struct first_job {
    const struct nhwc_state *s;
    const float *x, *z;
    float *y;
    int64_t C, H, W, M, OH, OW, pt, pl;
    void (*row)(const struct kiln_conv_first_row *r);
};

/* Output rows [r0, r1) of all images (row r = image r / OH, row r % OH), then the epilogue
 * on each row while it is in L1. */
static void first_rows(void *ctx, size_t r0, size_t r1, int worker)
{
    (void)worker;
    const struct first_job *j = ctx;
    const struct nhwc_state *s = j->s;
    size_t n_row = (size_t)(j->OW * j->M);
    for (size_t r = r0; r < r1; r++) {
        int64_t n = (int64_t)r / j->OH, oh = (int64_t)r % j->OH;
        float *y = j->y + r * n_row;
        /* Relu and Clip without Z at the kernel's store (a pass over the row saved: 15-25 us
         * a run on MobileNetV2's layer), the rest after it */
        bool clamp = !j->z && (s->act.kind == KILN_ACT_RELU || s->act.kind == KILN_ACT_CLIP);
        float lo = s->act.kind == KILN_ACT_CLIP ? s->act.a : 0.0f;
        float hi = s->act.kind == KILN_ACT_CLIP ? s->act.b : INFINITY;
        struct kiln_conv_first_row row = {j->x + n * j->C * j->H * j->W, s->wf, s->bf, y, j->C, j->H, j->W,
                                          j->M, s->Mp, j->OW, s->k[0], s->k[1], s->s[1], s->d[0], s->d[1],
                                          oh * s->s[0] - j->pt, j->pl, clamp, lo, hi};
        j->row(&row);
        if (!clamp && (j->z || s->act.kind != KILN_ACT_NONE))
            kiln_act_apply_f32(&s->act, y, j->z ? j->z + r * n_row : NULL, y, n_row);
    }
}

/* ------------------------------------------------------------------ oneDNN */

#ifdef KILN_HAVE_DNNL
static void nhwc_free(void *arg)
{
    struct nhwc_state *s = arg;
    for (int i = 0; i < s->n_slices + s->batch; i++) {
        if (s->sl[i].prim) dnnl_primitive_destroy(s->sl[i].prim);
        if (s->sl[i].rin) dnnl_primitive_destroy(s->sl[i].rin);
        if (s->sl[i].rout) dnnl_primitive_destroy(s->sl[i].rout);
    }
}

/* Whether the activations built on exp, erf or tanh go in oneDNN's primitive as post-ops.
 * On AMD's Zen 4 they cost more there than kiln's own pass over the slice afterwards
 * (EfficientNet-B0 at one thread, the sum of its nodes 14.6 -> 13.5 ms with kiln's SiLU; its
 * 112x112x96 expand 1.34 -> 1.18 ms, SiLU included); on Intel's Sapphire Rapids the
 * post-ops were what was measured, and stay. KILN_CONV_ACT=onednn|kiln forces either. */
static bool onednn_exp_acts(void)
{
    const char *e = getenv("KILN_CONV_ACT");
    if (e && !strcmp(e, "onednn")) return true;
    if (e && !strcmp(e, "kiln")) return false;
    return !kiln_cpu_is_amd();
}

/* The activation as oneDNN eltwise post-ops; false if it has no such form (or kiln's own
 * pass is faster: onednn_exp_acts). */
static bool append_act(dnnl_post_ops_t po, const struct kiln_act *a)
{
#define ELT(alg, x, y) (dnnl_post_ops_append_eltwise(po, 1.0f, (alg), (x), (y)) == dnnl_success)
    bool exp_acts = a->kind == KILN_ACT_SIGMOID || a->kind == KILN_ACT_TANH || a->kind == KILN_ACT_SILU ||
                    a->kind == KILN_ACT_GELU || a->kind == KILN_ACT_GELU_TANH;
    if (exp_acts && !onednn_exp_acts()) return false;
    switch (a->kind) {
    case KILN_ACT_NONE: return true;
    case KILN_ACT_RELU: return ELT(dnnl_eltwise_relu, 0.0f, 0.0f);
    case KILN_ACT_LEAKYRELU: return ELT(dnnl_eltwise_relu, a->a, 0.0f);
    case KILN_ACT_CLIP: return ELT(dnnl_eltwise_clip_v2, a->a, a->b);
    case KILN_ACT_SIGMOID: return ELT(dnnl_eltwise_logistic, 0.0f, 0.0f);
    case KILN_ACT_TANH: return ELT(dnnl_eltwise_tanh, 0.0f, 0.0f);
    case KILN_ACT_HARDSIGMOID: /* clamp(alpha x + beta, 0, 1) */
        return ELT(dnnl_eltwise_linear, a->a, a->b) && ELT(dnnl_eltwise_clip_v2, 0.0f, 1.0f);
    case KILN_ACT_HARDSWISH: return ELT(dnnl_eltwise_hardswish, 0.0f, 0.0f);
    case KILN_ACT_SILU: return ELT(dnnl_eltwise_swish, a->a, 0.0f);
    case KILN_ACT_GELU: return ELT(dnnl_eltwise_gelu_erf, 0.0f, 0.0f);
    case KILN_ACT_GELU_TANH: return ELT(dnnl_eltwise_gelu_tanh, 0.0f, 0.0f);
    default: return false;
    }
#undef ELT
}

/* What one slice's primitive computes: src [1, C, sh, sw] -> dst [1, Ms, dh, dw] with the
 * given padding, output channels [m0, m1) of the weights. */
struct slice_geom {
    int64_t sh, sw, dh, dw, pad_l[2], pad_r[2];
};

/* A reorder from -> to with kiln's scratchpad attribute (*sp its scratchpad); false on failure. */
static bool make_reorder(const dnnl_memory_desc_t *from, const dnnl_memory_desc_t *to, dnnl_primitive_t *r,
                         dnnl_memory_desc_t *sp)
{
    dnnl_engine_t eng = kiln_dnnl_engine();
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    bool ok = kiln_dnnl_attr_create(&attr) &&
              dnnl_reorder_primitive_desc_create(&pd, from, eng, to, eng, attr) == dnnl_success;
    if (attr) dnnl_primitive_attr_destroy(attr);
    if (!ok) return false;
    const dnnl_memory_desc_t *q = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    memset(sp, 0, sizeof *sp);
    if (q) *sp = *q;
    ok = dnnl_primitive_create(r, pd) == dnnl_success;
    dnnl_primitive_desc_destroy(pd);
    return ok;
}

/* Bytes of the Winograd slice's blocked src, rounded to 64 (its dst follows it in the
 * staging buffer). */
static size_t wino_src_bytes(const struct nhwc_slice *sl)
{
    return (dnnl_memory_desc_get_size(&sl->bsrc_md) + 63) / 64 * 64;
}

/* The slice's primitive, with Z as a sum post-op and the activation as eltwise post-ops when
 * epi (the primitive then adds what dst holds before it runs), and its weights packed. wino:
 * oneDNN's Winograd algorithm on blocked src and dst, with the reorders from and to nhwc
 * (never with Z: the activation would have to follow the sum). */
static bool make_prim(struct kiln_kprep *p, struct nhwc_state *s, struct nhwc_slice *sl, int idx,
                      const struct slice_geom *g, const float *w, const float *b, bool z, bool epi,
                      bool wino)
{
    dnnl_engine_t eng = kiln_dnnl_engine();
    int64_t G = s->group, C = s->C, Ms = sl->m1 - sl->m0, Cg = C / G;
    dnnl_dims_t sd = {1, C, g->sh, g->sw}, dd = {1, Ms, g->dh, g->dw};
    dnnl_dims_t wd = {G, Ms / G, Cg, s->k[0], s->k[1]}, bd = {Ms};
    dnnl_dims_t str = {s->s[0], s->s[1]}, dil = {s->d[0] - 1, s->d[1] - 1};
    dnnl_dims_t pad_l = {g->pad_l[0], g->pad_l[1]}, pad_r = {g->pad_r[0], g->pad_r[1]};
    dnnl_memory_desc_t wany, sany, dany;
    if (dnnl_memory_desc_init_by_tag(&sl->src_md, 4, sd, dnnl_f32, dnnl_nhwc) ||
        dnnl_memory_desc_init_by_tag(&sl->dst_md, 4, dd, dnnl_f32, dnnl_nhwc) ||
        dnnl_memory_desc_init_by_tag(&sany, 4, sd, dnnl_f32, dnnl_format_tag_any) ||
        dnnl_memory_desc_init_by_tag(&dany, 4, dd, dnnl_f32, dnnl_format_tag_any) ||
        dnnl_memory_desc_init_by_tag(&wany, G > 1 ? 5 : 4, G > 1 ? wd : wd + 1, dnnl_f32,
                                     dnnl_format_tag_any))
        return false;
    memset(&sl->b_md, 0, sizeof sl->b_md);
    if (b && dnnl_memory_desc_init_by_tag(&sl->b_md, 1, bd, dnnl_f32, dnnl_x)) return false;
    dnnl_convolution_desc_t cd;
    if (dnnl_dilated_convolution_forward_desc_init(&cd, dnnl_forward_inference,
                                                   wino ? dnnl_convolution_winograd : dnnl_convolution_direct,
                                                   wino ? &sany : &sl->src_md, &wany, b ? &sl->b_md : NULL,
                                                   wino ? &dany : &sl->dst_md, str, dil, pad_l, pad_r))
        return false;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    bool ok = kiln_dnnl_attr_create(&attr) && dnnl_post_ops_create(&po) == dnnl_success;
    if (ok && epi)
        ok = (!z || dnnl_post_ops_append_sum(po, 1.0f) == dnnl_success) && append_act(po, &s->act) &&
             dnnl_primitive_attr_set_post_ops(attr, po) == dnnl_success;
    dnnl_primitive_desc_t pd = NULL;
    ok = ok && dnnl_primitive_desc_create(&pd, &cd, attr, eng, NULL) == dnnl_success;
    if (po) dnnl_post_ops_destroy(po);
    if (attr) dnnl_primitive_attr_destroy(attr);
    if (!ok) return false;
    const dnnl_memory_desc_t *wq = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    const dnnl_memory_desc_t *sp = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    ok = wq != NULL;
    if (ok) sl->w_md = *wq;
    if (sp) sl->sp_md = *sp; /* else zeros: no scratchpad */
    if (ok && wino) {
        const dnnl_memory_desc_t *qs = dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
        const dnnl_memory_desc_t *qd = dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
        ok = qs && qd;
        if (ok) sl->bsrc_md = *qs, sl->bdst_md = *qd;
        ok = ok && make_reorder(&sl->src_md, &sl->bsrc_md, &sl->rin, &sl->rin_sp) &&
             make_reorder(&sl->bdst_md, &sl->dst_md, &sl->rout, &sl->rout_sp);
    }
    ok = ok && dnnl_primitive_create(&sl->prim, pd) == dnnl_success;
    dnnl_primitive_desc_destroy(pd);
    if (!ok) return false;
    /* Share the weights of an earlier slice with the same channels and format. */
    for (struct nhwc_slice *o = s->sl; o < sl; o++)
        if (o->m0 == sl->m0 && o->m1 == sl->m1 && dnnl_memory_desc_equal(&o->w_md, &sl->w_md)) {
            sl->w = o->w;
            return true;
        }
    dnnl_memory_desc_t plain;
    if (dnnl_memory_desc_init_by_tag(&plain, G > 1 ? 5 : 4, G > 1 ? wd : wd + 1, dnnl_f32,
                                     G > 1 ? dnnl_goihw : dnnl_oihw))
        return false;
    const float *ws = w + sl->m0 * Cg * s->k[0] * s->k[1]; /* G == 1 when m0 > 0 */
    uint32_t key = 0x63760000u + (uint32_t)idx + (epi ? 0 : 0x100u) + (wino ? 0x200u : 0); /* a retry packs anew */
    if (idx == MAX_SLICES) key |= KILN_BLOB_SPARE; /* the whole convolution beside the slices: N > 1 only */
    if (kiln_dnnl_pack_weights(p, key, &plain, ws, &sl->w_md, &sl->w) != KILN_OK)
        return false;
    return sl->w != NULL;
}

/* The slice's geometry and primitive for split `how`. */
static bool make_slice(struct kiln_kprep *p, struct nhwc_state *s, struct nhwc_slice *sl, int idx, int how,
                       const float *w, const float *b, bool z, bool epi, const int64_t pad[4])
{
    struct slice_geom g = {s->H, s->W, s->OH, s->OW, {pad[0], pad[1]}, {pad[2], pad[3]}};
    sl->in0 = 0;
    if (how == V_PIXELS) { /* 1x1, stride 1, no padding: a [1, P] image of the pixels */
        sl->in0 = sl->o0;
        g.sh = g.dh = 1;
        g.sw = g.dw = sl->o1 - sl->o0;
    } else if (how == V_ROWS) {
        int64_t dk = (s->k[0] - 1) * s->d[0] + 1;
        int64_t first = sl->o0 * s->s[0] - pad[0];           /* may be < 0: padding */
        int64_t last = (sl->o1 - 1) * s->s[0] - pad[0] + dk; /* one past; may be > H */
        int64_t lo = first < 0 ? 0 : first, hi = last > s->H ? s->H : last;
        sl->in0 = lo;
        g.sh = hi - lo;
        g.dh = sl->o1 - sl->o0;
        g.pad_l[0] = lo - first;
        g.pad_r[0] = last - hi;
    }
    return make_prim(p, s, sl, idx, &g, w, b ? b + sl->m0 : NULL, z, epi, s->wino);
}

/* Estimated time of the slowest slice when the work splits `how` over t threads (units:
 * bytes moved, a FLOP counting 1/8 of a byte: the brgconv kernels run near 8 FLOP per byte
 * of L2 traffic on one core); *t_used the slices it makes. Spatial splits read all the
 * weights in every slice; the channel split reads all the input in every slice and writes
 * its output through a dense buffer (one more write and read, and Z's copy in). *per: the
 * channels of a slice (channels) or 0. */
static double split_cost(const struct nhwc_state *s, int how, int64_t t, bool z, int64_t *t_used,
                         int64_t *per_out)
{
    double flops = 2.0 * (double)(s->OH * s->OW * s->M) * (double)(s->C / s->group * s->k[0] * s->k[1]);
    double in = 4.0 * (double)(s->H * s->W * s->C), out = 4.0 * (double)(s->OH * s->OW * s->M);
    double wb = 4.0 * (double)(s->M * (s->C / s->group) * s->k[0] * s->k[1]);
    double share;
    if (how == V_CHANNELS) {
        int64_t blocks = (s->M + 15) / 16;
        if (t > blocks) t = blocks;
        int64_t per = (blocks + t - 1) / t * 16;
        share = (double)(per < s->M ? per : s->M) / (double)s->M;
        *t_used = (s->M + per - 1) / per;
        *per_out = per;
        return flops * share / 8.0 + wb * share + in + out * share * (z ? 5.0 : 3.0);
    }
    int64_t units = how == V_PIXELS ? s->OH * s->OW : s->OH;
    if (t > units) t = units;
    *t_used = t;
    *per_out = 0;
    share = (double)((units + t - 1) / t) / (double)units;
    return flops * share / 8.0 + wb + (in + out * (z ? 2.0 : 1.0)) * share;
}

/* KILN_CONV_NHWC_SPLIT=rows|channels|pixels forces a split where it applies (tests and
 * measurements); unset or anything else: the cost estimate chooses. */
static int forced_split(void)
{
    const char *e = getenv("KILN_CONV_NHWC_SPLIT");
    if (!e) return V_DIRECT;
    for (int v = V_ROWS; v < V_COUNT; v++)
        if (!strcmp(e, variant_name[v] + 7)) return v;
    return V_DIRECT;
}

/* The t slices of split `how` (per: the channels of a slice for V_CHANNELS) and, when batch
 * (several threads), the whole convolution for N > 1; false (nothing left made) when oneDNN
 * declines. The epilogue goes in the primitives when oneDNN takes it, else kiln's
 * activation loop. */
static bool build_slices(struct kiln_kprep *p, struct nhwc_state *s, int how, int64_t t, int64_t per,
                         bool batch, const float *w, const float *b, bool z, const int64_t pad[4])
{
    s->split = how;
    for (int epi = 1; epi >= 0; epi--) {
        s->epi_in_prim = epi;
        int64_t units = how == V_PIXELS ? s->OH * s->OW : s->OH;
        bool fine = true;
        for (int64_t i = 0; i < t && fine; i++) {
            struct nhwc_slice *sl = &s->sl[i];
            memset(sl, 0, sizeof *sl);
            sl->o0 = how == V_CHANNELS ? 0 : units * i / t;
            sl->o1 = how == V_CHANNELS ? s->OH : units * (i + 1) / t;
            sl->m0 = how == V_CHANNELS ? per * i : 0;
            sl->m1 = how == V_CHANNELS ? (per * (i + 1) < s->M ? per * (i + 1) : s->M) : s->M;
            s->n_slices = (int)i + 1;
            fine = make_slice(p, s, sl, (int)i, how, w, b, z, epi, pad);
        }
        /* Several slices: also the whole convolution, which N > 1 images split over the
         * threads use when that balances better (N is known at run only). */
        if (fine && batch) {
            struct nhwc_slice *sl = &s->sl[t];
            memset(sl, 0, sizeof *sl);
            sl->o1 = s->OH, sl->m1 = s->M;
            s->batch = true;
            fine = make_slice(p, s, sl, MAX_SLICES, V_ROWS, w, b, z, epi, pad);
        }
        s->share = how == V_CHANNELS ? (double)(s->sl[0].m1 - s->sl[0].m0) / (double)s->M
                                     : (double)((units + t - 1) / t) / (double)units;
        if (fine) return true;
        nhwc_free(s);
        s->n_slices = 0;
        s->batch = false;
    }
    return false;
}

/* Whether oneDNN's Winograd convolution (F(2x2, 3x3) or F(4x4, 3x3) on AVX-512) can take the
 * convolution: 3x3, stride 1, no dilation, one group, no Z. */
static bool wino_applies(const struct nhwc_state *s, bool z)
{
    return !s->x_nchw && kiln_isa_active() >= KILN_ISA_AVX512 && s->k[0] == 3 && s->k[1] == 3 &&
           s->s[0] == 1 && s->s[1] == 1 && s->d[0] == 1 && s->d[1] == 1 && s->group == 1 && !z;
}

/* Bytes of input a slice of n row slices reads (its rows and the 2 rows around them). */
static int64_t wino_slice_input(const struct nhwc_state *s, int64_t n)
{
    return ((s->OH + n - 1) / n + 2) * s->W * s->C * 4;
}

/* How many row slices make Winograd faster than the direct kernels for t threads, 0 when
 * none does: rules from measurements on an Intel Xeon (Sapphire Rapids), one slice on one
 * thread, the reorders to and from nChw16c included (docs/benchmarks.md, "Issue 7, third
 * step"). oneDNN takes its F(4x4, 3x3) kernel (jit_wino_4x3) for a slice whose top and
 * bottom padding differ, as a row slice's do when there are several, and F(2x2, 3x3)
 * (jit_fp32_wino_2x3) for a whole image:
 *   - F(4x4, 3x3) on slices of 14 to 28 rows (one a thread, or 28-row ones of 56-row
 *     images one after the other on one thread), where its weights (36 x C x M floats) are
 *     small, C x M <= 128 x 128: 1.5-1.9x the direct kernel alone for ResNet's 64 and 128
 *     channels at 56x56 and 28x28, 1.3-1.4x for DenseNet's 128 -> 32; in the models at 1
 *     thread DenseNet's 56x56 layers gained ~10% but its 28x28 ones, as two 14-row slices,
 *     lost ~12% (so one thread keeps F(2x2, 3x3) for them), at 2 threads those gained 1.45x.
 *     For 256 x 256 (9.4 MB of weights) it was 1.6x slower in ResNet-50's stage 3 although
 *     faster alone: the weights leave the caches.
 *   - F(2x2, 3x3) on the whole image (one thread), at least 7 rows: 1.15x for 256 at 14x14,
 *     1.3x for DenseNet's 128 -> 32 at 14x14, 0.9-1.1x at 7x7 and below.
 * Both need at least 8 columns, 32 input and output channels and at most 1 MiB of input a
 * slice (DenseNet's 128 -> 32 at 56x56 as one slice: 0.95x, the reorders leave L2). */
static int64_t wino_slices(const struct nhwc_state *s, int64_t t)
{
    /* On AMD's Zen 4, whose FMA peak is half the Xeon's, the whole-image F(2x2, 3x3) pays
     * at 7x7 too for many channels: ResNet-50's stage-4 3x3 layers (512 -> 512) 2.02-2.05 ->
     * 1.72-1.77 ms at one thread; not for DenseNet's 128 -> 32 (0.63 -> 0.81 ms for 16 layers). */
    bool amd7 = s->OW == 7 && s->C * s->M >= 256 * 256 && kiln_cpu_is_amd();
    if ((s->OW < 8 && !amd7) || s->C < 32 || s->M < 32) return 0;
    if (s->C * s->M <= 128 * 128) {
        int64_t n = (s->OH + 27) / 28;
        if (n < t) n = t;
        if (n >= 2 && n <= MAX_SLICES && s->OH / n >= 14 && wino_slice_input(s, n) <= (1 << 20)) return n;
    }
    return t == 1 && s->OH >= 7 && wino_slice_input(s, 1) <= (1 << 20) ? 1 : 0;
}

/* Whether F(2x2, 3x3) on the whole image, output channels split over t threads, pays where
 * wino_slices' row slices do not: at least 14 rows and 8 columns (at 7x7 the whole-image
 * kernel measured 0.9-1.1x the direct one), 32 input channels, 64 output channels a slice
 * and at most 1 MiB of input (each slice transforms all of it). ResNet-50's stage 3 (256 ->
 * 256 at 14x14, whose 9.4 MB of F(4x4, 3x3) weights ruled row slices out): each thread runs
 * the 1.15x whole-image kernel on half the weights. */
static bool wino_channels(const struct nhwc_state *s, int64_t t)
{
    return t >= 2 && s->OH >= 14 && s->OW >= 8 && s->C >= 32 && s->M >= 64 * t && wino_slice_input(s, 1) <= (1 << 20);
}

/* Sets up the oneDNN variant; false (and s->split V_DIRECT) when it does not apply or fails. */
static bool prepare_onednn(struct kiln_kprep *p, struct nhwc_state *s, const float *w, const float *b,
                           bool z)
{
    if (kiln_isa_active() < KILN_ISA_AVX2 || !kiln_dnnl_engine()) return false;
    int64_t pad[4];
    nhwc_dim(s, 0, s->H, s->k[0], &s->OH, &pad[0], &pad[2]);
    nhwc_dim(s, 1, s->W, s->k[1], &s->OW, &pad[1], &pad[3]);
    if (s->OH < 1 || s->OW < 1) return false;
    /* Threads: one slice each, at least ~1 MFLOP per slice (grouped and depthwise: 0.4 MFLOP;
     * they run at about a third of the dense kernels' FLOP rate, so that is as much time:
     * MobileNetV2's 14x14x384 and 7x7x960 depthwise layers split, measured 1.7-2x at 2). */
    double flops = 2.0 * (double)(s->OH * s->OW * s->M) * (double)(s->C / s->group * s->k[0] * s->k[1]);
    int64_t t = p->threads < 1 ? 1 : p->threads;
    if (t > MAX_SLICES) t = MAX_SLICES;
    while (t > 1 && flops / (double)t < (s->group > 1 ? 4e5 : 1e6)) t--;
    bool ok[V_COUNT] = {false, true, s->group == 1, s->k[0] == 1 && s->k[1] == 1 && s->s[0] == 1 &&
                                                        s->s[1] == 1 && !pad[0] && !pad[1] && !pad[2] && !pad[3]};
    if (s->x_nchw) ok[V_CHANNELS] = ok[V_PIXELS] = false; /* planar X: row slices only */
    int64_t used[V_COUNT] = {0}, pers[V_COUNT] = {0};
    double cost[V_COUNT];
    int how = V_ROWS;
    for (int v = V_ROWS; v < V_COUNT; v++) {
        cost[v] = ok[v] ? split_cost(s, v, t, z, &used[v], &pers[v]) : 0;
        if (ok[v] && cost[v] < cost[how]) how = v;
    }
    int want = p->variant > V_DIRECT && p->variant < V_COUNT ? p->variant : forced_split();
    if (want != V_DIRECT && ok[want]) how = want;
    /* Winograd: row slices, when it applies and pays (wino_slices), or wherever it applies
     * when forced (a loaded engine built with it, KILN_CONV_NHWC_SPLIT=winograd or
     * KILN_CONV_NHWC_WINO=1: the rule's slices, else one per thread); KILN_CONV_NHWC_WINO=0
     * turns the rule off (measurements). Should oneDNN decline it, the split chosen above. */
    if (wino_applies(s, z)) {
        const char *e = getenv("KILN_CONV_NHWC_WINO");
        bool on = want == V_WINO || (want == V_DIRECT && e && e[0] == '1');
        bool rule = want == V_DIRECT && !(e && e[0] == '0');
        int64_t n = want == V_WINO_CH ? 0 : wino_slices(s, used[V_ROWS]);
        if (!n && on) n = used[V_ROWS];
        if (n && (on || rule)) {
            s->wino = true;
            if (build_slices(p, s, V_ROWS, n, 0, used[V_ROWS] > 1, w, b, z, pad)) return true;
            s->wino = false;
        }
        /* Output channels split, each slice F(2x2, 3x3) on the whole image (wino_channels),
         * or where it applies when forced (KILN_CONV_NHWC_SPLIT=winograd-channels, a loaded
         * engine built with it). */
        if (!s->wino && s->group == 1 && t >= 2 &&
            (want == V_WINO_CH || (rule && want == V_DIRECT && wino_channels(s, t)))) {
            int64_t per = ((s->M + t - 1) / t + 15) / 16 * 16;
            s->wino = true;
            if (build_slices(p, s, V_CHANNELS, (s->M + per - 1) / per, per, true, w, b, z, pad)) return true;
            s->wino = false;
        }
    }
    if (build_slices(p, s, how, used[how], pers[how], used[how] > 1, w, b, z, pad)) return true;
    s->split = V_DIRECT;
    return false;
}

struct onednn_job {
    const struct nhwc_state *s;
    const float *x, *b, *z;
    float *y;
    int64_t N;
    bool failed[MAX_SLICES];
};

/* A Winograd slice of one image: x (nhwc) reordered into this thread's staging buffer as
 * nChw16c, the primitive, its blocked output reordered into dst (nhwc). */
static bool wino_image(const struct onednn_job *j, const struct nhwc_slice *sl, const float *x, float *dst,
                       char *buf)
{
    size_t sb = wino_src_bytes(sl);
    if (!buf) buf = kiln_dnnl_thread_buffer(sb + dnnl_memory_desc_get_size(&sl->bdst_md));
    if (!buf) return false;
    struct kiln_dnnl_arg in[3] = {{DNNL_ARG_FROM, &sl->src_md, x},
                                  {DNNL_ARG_TO, &sl->bsrc_md, buf},
                                  {DNNL_ARG_SCRATCHPAD, &sl->rin_sp, NULL}};
    struct kiln_dnnl_arg conv[5] = {{DNNL_ARG_SRC, &sl->bsrc_md, buf},
                                    {DNNL_ARG_WEIGHTS, &sl->w_md, sl->w},
                                    {DNNL_ARG_DST, &sl->bdst_md, buf + sb},
                                    {DNNL_ARG_SCRATCHPAD, &sl->sp_md, NULL},
                                    {DNNL_ARG_BIAS, &sl->b_md, j->b ? j->b + sl->m0 : NULL}};
    struct kiln_dnnl_arg out[3] = {{DNNL_ARG_FROM, &sl->bdst_md, buf + sb},
                                   {DNNL_ARG_TO, &sl->dst_md, dst},
                                   {DNNL_ARG_SCRATCHPAD, &sl->rout_sp, NULL}};
    return kiln_dnnl_execute(sl->rin, 3, in) && kiln_dnnl_execute(sl->prim, j->b ? 5 : 4, conv) &&
           kiln_dnnl_execute(sl->rout, 3, out);
}

/* buf[i * C + c] = x[c * plane + i] for i < cnt: planar rows channels-last. Constant C for the
 * RGB image (2.5x the generic loop's speed: the compiler interleaves the three streams). */
static void planar_rows(const float *restrict x, int64_t C, int64_t plane, int64_t cnt, float *restrict buf)
{
    if (C == 3) {
        const float *a = x, *b = x + plane, *c = x + 2 * plane;
        for (int64_t i = 0; i < cnt; i++) buf[3 * i] = a[i], buf[3 * i + 1] = b[i], buf[3 * i + 2] = c[i];
        return;
    }
    for (int64_t i = 0; i < cnt; i++)
        for (int64_t c = 0; c < C; c++) buf[i * C + c] = x[c * plane + i];
}

/* Slice sl (split `how`) of image n: the primitive, and the epilogue when it is not in the
 * primitive. */
static bool slice_image(const struct onednn_job *j, const struct nhwc_slice *sl, int how, int64_t n)
{
    const struct nhwc_state *s = j->s;
    const float *x = j->x + n * s->H * s->W * s->C;
    int64_t P = s->OH * s->OW, M = s->M, Ms = sl->m1 - sl->m0;
    if (s->x_nchw) { /* planar X (row slices only): the slice's rows, channels-last, in this
                      * thread's buffer, where the primitive reads them while they are in L2 */
        int64_t rows = sl->src_md.dims[2], C = s->C, plane = s->H * s->W, cnt = rows * s->W;
        float *buf = kiln_dnnl_thread_buffer((size_t)(cnt * C) * sizeof *buf);
        if (!buf) return false;
        planar_rows(x + sl->in0 * s->W, C, plane, cnt, buf);
        x = buf;
    }
    int64_t yoff = n * P * M;
    const float *z = j->z ? j->z + yoff : NULL;
    float *y = j->y + yoff, *dst;
    size_t count; /* elements of dst (spatial splits: contiguous in Y) */
    char *stage = NULL; /* Winograd's staging, after dst in the thread's buffer (channels) */
    if (how == V_CHANNELS) {
        size_t db = ((size_t)(P * Ms) * sizeof *dst + 63) / 64 * 64;
        size_t wb = s->wino ? wino_src_bytes(sl) + dnnl_memory_desc_get_size(&sl->bdst_md) : 0;
        dst = kiln_dnnl_thread_buffer(db + wb); /* dense [P, Ms], then the staging */
        if (!dst) return false;
        if (s->wino) stage = (char *)dst + db;
        count = (size_t)(P * Ms);
        if (z && s->epi_in_prim)
            for (int64_t q = 0; q < P; q++) memcpy(dst + q * Ms, z + q * M + sl->m0, (size_t)Ms * sizeof *dst);
    } else {
        int64_t px = how == V_PIXELS ? sl->o0 : sl->o0 * s->OW;
        if (!s->x_nchw) x += (how == V_PIXELS ? sl->in0 : sl->in0 * s->W) * s->C;
        dst = y + px * M;
        if (z) z += px * M;
        count = (size_t)((how == V_PIXELS ? sl->o1 - sl->o0 : (sl->o1 - sl->o0) * s->OW) * M);
        if (z && s->epi_in_prim && z != dst) memcpy(dst, z, count * sizeof *dst);
    }
    if (s->wino) {
        if (!wino_image(j, sl, x, dst, stage)) return false;
    } else {
        struct kiln_dnnl_arg args[5] = {{DNNL_ARG_SRC, &sl->src_md, x},
                                        {DNNL_ARG_WEIGHTS, &sl->w_md, sl->w},
                                        {DNNL_ARG_DST, &sl->dst_md, dst},
                                        {DNNL_ARG_SCRATCHPAD, &sl->sp_md, NULL},
                                        {DNNL_ARG_BIAS, &sl->b_md, j->b ? j->b + sl->m0 : NULL}};
        if (!kiln_dnnl_execute(sl->prim, j->b ? 5 : 4, args)) return false;
    }
    bool epi = !s->epi_in_prim && (z || s->act.kind != KILN_ACT_NONE);
    if (how != V_CHANNELS) {
        if (epi) kiln_act_apply_f32(&s->act, dst, z, dst, count);
        return true;
    }
    for (int64_t q = 0; q < P; q++) { /* back into Y's channels [m0, m1) */
        float *yq = y + q * M + sl->m0;
        if (epi)
            kiln_act_apply_f32(&s->act, dst + q * Ms, z ? z + q * M + sl->m0 : NULL, yq, (size_t)Ms);
        else
            memcpy(yq, dst + q * Ms, (size_t)Ms * sizeof *yq);
    }
    return true;
}

static void onednn_slice(void *ctx, size_t i0, size_t i1, int worker)
{
    (void)worker;
    struct onednn_job *j = ctx;
    for (size_t i = i0; i < i1; i++)
        for (int64_t n = 0; n < j->N; n++)
            if (!slice_image(j, &j->s->sl[i], j->s->split, n)) j->failed[i] = true;
}

/* Images [n0, n1), each the whole convolution. */
static void onednn_images(void *ctx, size_t n0, size_t n1, int worker)
{
    (void)worker;
    struct onednn_job *j = ctx;
    for (size_t n = n0; n < n1; n++)
        if (!slice_image(j, &j->s->sl[j->s->n_slices], V_ROWS, (int64_t)n)) j->failed[0] = true;
}
#endif

/* ------------------------------------------------------------------ prepare, run */

static const struct kiln_tensor *const_f32(const struct kiln_kprep *p, size_t i)
{
    const struct kiln_tensor *t = p->kc.n_in > i ? kiln_kprep_const(p, i) : NULL;
    return t && t->dtype == KILN_DTYPE_F32 ? t : NULL;
}

/* Whether the pgemm-taps variant (cpu/ops/conv_taps.h) takes a convolution (group 1, X
 * channels-last, shapes known): at AVX2 when at most half of its (tap, output) pairs read
 * inside the image. oneDNN's AVX2 direct kernel
 * multiplies the padding too: DeepLabV3's ASPP 3x3 at dilation 12 on a 16x16 map (960 -> 256
 * channels, a quarter of the pairs inside) took it 15 ms at one thread on a Zen 4, ONNX
 * Runtime 3.9 ms; pgemm-taps 2.9 ms (DeepLabV3 at AVX2 35-36 -> 22-23 ms). At AVX-512 oneDNN's
 * kernels skip the padding themselves: 3.1-3.2 ms there, pgemm-taps 2.9-3.0 at one thread and
 * level at two, so oneDNN's stays. */
static bool taps_wins(const struct kiln_conv_taps_geom *g)
{
    const char *e = getenv("KILN_CONV_NHWC_SPLIT"); /* "taps" forces it (tests); another split not */
    if (e && !strcmp(e, "taps")) return true;
    return !e && kiln_isa_active() == KILN_ISA_AVX2 && kiln_conv_taps_useful(g) <= 0.5;
}

#define TAPS_BLOB_KEY 0x74617000u /* "ta": one blob a tap */

static kiln_status nhwc_prepare(struct kiln_kprep *p)
{
    struct nhwc_state *s;
    KILN_TRY(kiln_kprep_alloc(p, sizeof *s, (void **)&s));
    KILN_TRY(nhwc_decode(&p->kc, s));
    p->state = s;
    p->kernel = variant_name[V_DIRECT];
    const struct kiln_tensor *w = const_f32(p, 1), *b = const_f32(p, 2);
    if (!w || w->rank != 4) return KILN_OK; /* run checks and reports it */
    int64_t M = w->dims[0], Cg = w->dims[1];
    if (s->k[0] < 0) s->k[0] = w->dims[2], s->k[1] = w->dims[3];
    if (s->k[0] != w->dims[2] || s->k[1] != w->dims[3] || M % s->group) return KILN_OK;
    s->M = M;
    s->C = Cg * s->group;
    bool has_b = p->kc.n_in > 2 && p->kc.node->inputs[2][0];
    const struct kiln_type *xt = p->in[0] ? &p->in[0]->type : NULL;
    int hx = s->x_nchw ? 2 : 1, cx = s->x_nchw ? 1 : 3; /* X's H and C dims */
    bool known = (!has_b || b) && xt && xt->kind == KILN_TYPE_TENSOR && xt->rank == 4 &&
                 xt->dims[hx].value > 0 && xt->dims[hx + 1].value > 0 && xt->dims[cx].value == s->C;
    /* X planar (x_nchw): kiln's nchw-first kernel where it is as fast as oneDNN's NHWC one
     * (AVX-512, up to 3x3), else oneDNN's on row slices each transposed into the thread's
     * buffer first (AVX2, where kiln's kernel ran at 60% of oneDNN's; ResNet's 7x7), else
     * nchw-first (symbolic shapes, AVX2 and up); the portable level takes the direct loop. A
     * loaded engine keeps its variant (the portable copy of nchw-first computes the same). */
    if (s->x_nchw && s->group == 1) {
        bool fast = kiln_isa_active() >= KILN_ISA_AVX512 && s->k[0] * s->k[1] <= 9;
#ifdef KILN_HAVE_DNNL
        bool dnnl = kiln_isa_active() >= KILN_ISA_AVX2 && known && kiln_dnnl_engine();
#else
        bool dnnl = false;
#endif
        bool first = p->variant == V_FIRST ||
                     (p->variant < 0 && kiln_isa_active() >= KILN_ISA_AVX2 && (fast || !dnnl));
        if (first) {
            int64_t Mp = (M + KILN_CONV_FIRST_MBLOCK - 1) / KILN_CONV_FIRST_MBLOCK * KILN_CONV_FIRST_MBLOCK;
            /* 64-byte aligned (the arena's blocks are not): a vector load split across two
             * cache lines measured 10% slower kernels. bf follows wf, a multiple of 16 floats. */
            size_t nwf = (size_t)(Mp * s->C * s->k[0] * s->k[1]);
            void *mem;
            KILN_TRY(kiln_kprep_alloc(p, (nwf + (size_t)Mp) * sizeof(float) + 64, &mem));
            float *wf = (float *)(((uintptr_t)mem + 63) & ~(uintptr_t)63), *bf = wf + nwf;
            pack_first(w->data, b ? b->data : NULL, M, s->C, s->k[0], s->k[1], Mp, wf, bf);
            s->wf = wf, s->bf = bf, s->Mp = Mp;
            p->chosen = V_FIRST;
            p->kernel = variant_name[V_FIRST];
            return KILN_OK;
        }
    }
    if (known && !s->x_nchw && s->group == 1 && (p->variant < 0 || p->variant == V_TAPS)) {
        struct kiln_conv_taps_geom g = {.H = xt->dims[1].value, .W = xt->dims[2].value, .C = s->C, .M = M,
                                        .kh = s->k[0], .kw = s->k[1], .s = {s->s[0], s->s[1]},
                                        .d = {s->d[0], s->d[1]}};
        int64_t pe;
        nhwc_dim(s, 0, g.H, g.kh, &g.OH, &g.pt, &pe);
        nhwc_dim(s, 1, g.W, g.kw, &g.OW, &g.pl, &pe);
        if (p->variant == V_TAPS || taps_wins(&g)) {
            KILN_TRY(kiln_conv_taps_prepare(p, &g, w->data, TAPS_BLOB_KEY, &s->taps));
            if (s->taps) {
                s->H = g.H, s->W = g.W;
                p->chosen = V_TAPS;
                p->kernel = variant_name[V_TAPS];
                return KILN_OK;
            }
        }
    }
#ifdef KILN_HAVE_DNNL
    if (known && (!s->x_nchw || s->group == 1)) {
        s->H = xt->dims[hx].value;
        s->W = xt->dims[hx + 1].value;
        bool z = p->kc.n_in > 3 && p->kc.node->inputs[3][0];
        if (prepare_onednn(p, s, w->data, b ? b->data : NULL, z)) {
            KILN_TRY(kiln_kprep_on_free(p, nhwc_free, s));
            p->chosen = s->wino ? (s->split == V_CHANNELS ? V_WINO_CH : V_WINO) : s->split;
            p->kernel = variant_name[p->chosen];
            return KILN_OK;
        }
    }
#else
    (void)b;
    (void)known;
#endif
    /* direct: the weights re-laid once */
    float *wt;
    KILN_TRY(kiln_kprep_alloc(p, (size_t)kiln_tensor_numel(w) * sizeof(float) + 1, (void **)&wt));
    relay_weights(w->data, M, Cg, s->group, s->k[0], s->k[1], wt);
    s->wt = wt;
    return KILN_OK;
}

static kiln_status nhwc_run(struct kiln_kctx *k)
{
    const struct nhwc_state *s = k->state;
    if (!s) return kiln_cpu_run_unprepared(k, nhwc_prepare, nhwc_run);
    const struct kiln_tensor *x = kiln_in(k, 0), *w = kiln_in(k, 1);
    const struct kiln_tensor *b = k->n_in > 2 ? kiln_in(k, 2) : NULL;
    const struct kiln_tensor *z = k->n_in > 3 ? kiln_in(k, 3) : NULL;
    if (!x || !w) return kiln_kfail(k, KILN_E_INVALID_MODEL, "inputs X and W are required");
    if (x->dtype != KILN_DTYPE_F32 || w->dtype != KILN_DTYPE_F32 || (b && b->dtype != KILN_DTYPE_F32) ||
        (z && z->dtype != KILN_DTYPE_F32))
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "X, W, B and Z must be float32");
    if (x->rank != 4 || w->rank != 4)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "X has %d dims and W %d; expected 4 and 4", x->rank,
                          w->rank);
    int64_t N = x->dims[0], M = w->dims[0];
    int64_t H = x->dims[s->x_nchw ? 2 : 1], W = x->dims[s->x_nchw ? 3 : 2], C = x->dims[s->x_nchw ? 1 : 3];
    int64_t G = s->group, kh = s->k[0] < 0 ? w->dims[2] : s->k[0], kw = s->k[1] < 0 ? w->dims[3] : s->k[1];
    if (C != w->dims[1] * G || M % G || kh != w->dims[2] || kw != w->dims[3])
        return kiln_kfail(k, KILN_E_INVALID_MODEL,
                          "X has %lld channels and W is [%lld, %lld, %lld, %lld] with group %lld: they "
                          "do not agree", (long long)C, (long long)w->dims[0], (long long)w->dims[1],
                          (long long)w->dims[2], (long long)w->dims[3], (long long)G);
    if (b && (b->rank != 1 || b->dims[0] != M))
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "B must be [%lld]", (long long)M);
    int64_t OH, OW, pt, pb, pl, pr;
    nhwc_dim(s, 0, H, kh, &OH, &pt, &pb);
    nhwc_dim(s, 1, W, kw, &OW, &pl, &pr);
    int64_t yd[4] = {N, OH, OW, M};
    if (z && (z->rank != 4 || memcmp(z->dims, yd, sizeof yd)))
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "Z must have Y's shape [%lld, %lld, %lld, %lld]",
                          (long long)N, (long long)OH, (long long)OW, (long long)M);
    struct kiln_tensor *y;
    KILN_TRY(kiln_out_tensor_raw(k, 0, KILN_DTYPE_F32, 4, yd, &y));
    if (!kiln_tensor_numel(y)) return KILN_OK;
    const float *zd = z ? z->data : NULL;
#ifdef KILN_HAVE_DNNL
    bool onednn = s->split && H == s->H && W == s->W && C == s->C && M == s->M && w->data;
#else
    bool onednn = false;
#endif
    /* Y in Z's memory (KILN_OP_INPLACE_FROM(3): the planner gives Y the residual's block when
     * Z dies here, which saves the copy of Z into Y that oneDNN's sum post-op needs: that
     * memmove was 1.95% of ResNet-50's cycles under perf on a Zen 4, 3.2 MB for each 56x56x256
     * block). Only oneDNN's primitive with the sum inside
     * reads Z where it writes Y; the other paths write Y before they add Z, so they take a
     * copy of Z first. */
    if (zd && zd == (const float *)y->data && !(onednn && s->epi_in_prim)) {
        float *zc;
        size_t zb = (size_t)kiln_tensor_numel(z) * sizeof(float);
        KILN_TRY(kiln_scratch(k, zb, (void **)&zc));
        memcpy(zc, zd, zb);
        zd = zc;
    }
#ifdef KILN_HAVE_DNNL
    if (onednn) {
        struct onednn_job j = {s, x->data, b ? b->data : NULL, zd, y->data, N, {0}};
        /* N > 1: whole images per thread when the largest share of them is below a slice's
         * (the split stays as prepared for a given N, so results do not depend on timing). */
        int64_t T = s->n_slices;
        if (s->batch && N > 1 && (double)((N + T - 1) / T) / (double)N < s->share)
            kiln_pool_for(k->pool, (size_t)N, (size_t)((N + T - 1) / T), onednn_images, &j);
        else
            kiln_pool_for(k->pool, (size_t)s->n_slices, 1, onednn_slice, &j);
        for (int i = 0; i < s->n_slices; i++)
            if (j.failed[i]) return kiln_kfail(k, KILN_E_INTERNAL, "oneDNN failed to run slice %d", i);
        return KILN_OK;
    }
#endif
    if (s->taps && H == s->H && W == s->W && C == s->C && M == s->M)
        return kiln_conv_taps_run(k, s->taps, N, x->data, b ? b->data : NULL, zd, &s->act, y->data);
    if (s->wf && C == s->C && M == s->M) {
        struct first_job j = {s,
                              x->data,
                              zd,
                              y->data,
                              C,
                              H,
                              W,
                              M,
                              OH,
                              OW,
                              pt,
                              pl,
                              KILN_ISA_SELECT(kiln_conv_first_row_isa)};
        /* Contiguous runs of rows per thread (each reads the input rows it needs once). */
        size_t rows = (size_t)(N * OH), t = (size_t)kiln_pool_threads(k->pool);
        size_t per_row = (size_t)(OW * M * C * kh * kw);
        size_t grain = kiln_pool_grain(per_row, 1 << 16), even = (rows + t - 1) / t;
        kiln_pool_for(k->pool, rows, grain > even ? grain : even, first_rows, &j);
        return KILN_OK;
    }
    const float *wt = s->wt;
    float *tmp = NULL;
    if (!wt || M != s->M || C != s->C) { /* weights not prepared: re-lay them for this run */
        KILN_TRY(kiln_scratch(k, (size_t)kiln_tensor_numel(w) * sizeof(float) + 1, (void **)&tmp));
        relay_weights(w->data, M, C / G, G, kh, kw, tmp);
        wt = tmp;
    }
    struct direct_job j = {s,
                           x->data,
                           wt,
                           b ? b->data : NULL,
                           zd,
                           y->data,
                           H,
                           W,
                           C,
                           M,
                           OH,
                           OW,
                           kh,
                           kw,
                           pt,
                           pl,
                           H * W * C,
                           W * C,
                           C,
                           1};
    if (s->x_nchw) j.xn = C * H * W, j.xh = W, j.xw = 1, j.xc = H * W;
    size_t per_row = (size_t)(OW * M * (C / G) * kh * kw);
    kiln_pool_for(k->pool, (size_t)(N * OH), kiln_pool_grain(per_row, 1 << 16), direct_rows, &j);
    return KILN_OK;
}

const struct kiln_cpu_op kiln_cpu_ops_conv_nhwc[] = {
    {"ConvNhwc", "kiln", 1, 0, nhwc_run, nhwc_prepare, KILN_OP_INPLACE_FROM(3)},
    {0},
};
