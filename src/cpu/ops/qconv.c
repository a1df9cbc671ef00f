/* src/cpu/ops/qconv.c: kiln.QConv and kiln.QAdd, the integer forms of a statically
 * quantized (QDQ) CNN's convolutions and residual additions (docs/fused-ops.md,
 * docs/quantization.md "Static QDQ models"). The optimizer's fuse_qdq pass
 * (src/opt/pass_fuse_qdq.c) makes them from DequantizeLinear -> Conv/Add -> QuantizeLinear.
 *
 *   QConv (X [N, H, W, C], W [M, C/group, kh, kw] int8, B? [M] int32, x_scale, x_zero_point,
 *          w_scale (scalar or [M]), y_scale, y_zero_point) -> Y [N, OH, OW, M]
 *
 * channels-last, X and Y uint8 or int8 (the type of x_zero_point / y_zero_point, the same
 * for both), W's zero point 0 (symmetric weights: the pass fuses nothing else). Attributes:
 * Conv's (auto_pad, dilations, group, kernel_shape, pads, strides) and activation "" /
 * "Relu" / "Clip" with activation_params [lo, hi] (Clip's bounds, in the float domain of
 * the convolution's output). Per output element, in float32 operations in this order:
 *
 *     acc = sum over the window of (x - x_zero_point) * w        (exact int32; padding 0)
 *     v   = ((float)acc + (float)B[m]) * S[m],   S[m] = (x_scale * w_scale[m]) / y_scale
 *     v   = max(v, 0) (Relu) / min(max(v, lo / y_scale), hi / y_scale) (Clip)
 *     y   = saturate(round_half_even(v + y_zero_point))
 *
 * which is what oneDNN's int8 convolution computes with its epilogue (cpu/dnnl_qconv.h) and
 * what the reference loop below computes; the tests check both bit for bit. How far this
 * is from the unfused DequantizeLinear -> Conv (float32) -> QuantizeLinear: docs/quantization.md.
 *
 *   QAdd (A, a_scale, a_zero_point, B, b_scale, b_zero_point, y_scale, y_zero_point) -> Y
 *
 * A, B and Y of one shape and one 8-bit type (any layout: element-wise), and exactly the
 * unfused DequantizeLinear(A) + DequantizeLinear(B) -> QuantizeLinear in float32:
 * y = saturate(round_half_even(((float)(a - a_zp) * a_scale + (float)(b - b_zp) * b_scale)
 * / y_scale) + y_zp), with a true division (src/cpu/isa/qdq.c vectorizes it).
 *
 * Variants of QConv: "onednn-int8" / "onednn-int8-noamx" (oneDNN's AMX or VNNI kernels,
 * whichever ran faster when prepared; cpu/dnnl_qconv.h) (prepared when X's shape, W, B and every scale and
 * zero point are known at prepare, and oneDNN has exact int8 kernels); without those kernels, for group 1,
 * "kiln-int8-avx2" (-avx512, -portable: X unfolded channels-last into rows of kh * kw * C, the padding
 * x_zero_point, times W prepacked by cpu/dnnl_int8.h, kiln's own exact int8 kernel there, then the same
 * requantization per element); depthwise (group = C = M) "int32-depthwise" (exact int32 taps,
 * kiln_qdw_tap_isa, then the same requantization); else "reference".
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "base/pool.h"
#include "cpu/dnnl_int8.h"
#include "cpu/dnnl_qconv.h"
#include "cpu/int8_gemm_isa.h"
#include "cpu/isa.h"
#include "cpu/kernel.h"
#include "cpu/qdq_isa.h"
#include "cpu/quant_isa.h"
#include "infer/infer.h"

enum { QC_X, QC_W, QC_B, QC_XS, QC_XZ, QC_WS, QC_YS, QC_YZ, QC_NIN };

struct qconv_attrs {
    int64_t group, k[2], s[2], d[2], pb[2], pe[2];
    int auto_pad; /* 0 NOTSET, 1 SAME_UPPER, 2 SAME_LOWER, 3 VALID */
    int act;      /* 0 none, 1 Relu, 2 Clip */
    float lo, hi; /* Clip's bounds (float domain) */
};

struct qconv_state {
    struct qconv_attrs a;
    struct kiln_dnnl_qconv *fast;
    struct kiln_dnnl_imm *own; /* group 1 without fast: the exact int8 product (dnnl_int8.h) */
    int32_t *wdw;              /* depthwise without fast: W as int32 [kh * kw][C] */
    int64_t H, W, C, M;        /* what fast / own was prepared for */
};

static kiln_status qconv_decode(struct kiln_kctx *k, struct qconv_attrs *a)
{
    memset(a, 0, sizeof *a);
    a->group = kiln_attr_i(k, "group", 1);
    if (a->group < 1) return kiln_kfail(k, KILN_E_INVALID_MODEL, "group = %lld; expected >= 1", (long long)a->group);
    KILN_TRY(kiln_attr_pair(k, "strides", 1, 1, a->s));
    KILN_TRY(kiln_attr_pair(k, "dilations", 1, 1, a->d));
    KILN_TRY(kiln_attr_pair(k, "kernel_shape", -1, 1, a->k));
    const int64_t *p;
    size_t np = kiln_attr_ints(k, "pads", &p);
    if (np && np != 4) return kiln_kfail(k, KILN_E_INVALID_MODEL, "pads has %zu values; expected 4", np);
    for (int i = 0; i < 2; i++) {
        a->pb[i] = np ? p[i] : 0;
        a->pe[i] = np ? p[2 + i] : 0;
        if (a->pb[i] < 0 || a->pe[i] < 0) return kiln_kfail(k, KILN_E_INVALID_MODEL, "pads must be >= 0");
    }
    static const char *const aps[] = {"NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"};
    const char *ap = kiln_attr_s(k, "auto_pad", "NOTSET");
    a->auto_pad = -1;
    for (int i = 0; i < 4; i++)
        if (!strcmp(ap, aps[i])) a->auto_pad = i;
    if (a->auto_pad < 0) return kiln_kfail(k, KILN_E_INVALID_MODEL, "auto_pad '%s' is not one kiln knows", ap);
    const char *act = kiln_attr_s(k, "activation", "");
    const float *ap_v;
    size_t nap = kiln_attr_floats(k, "activation_params", &ap_v);
    if (!strcmp(act, "Relu") && nap == 0) {
        a->act = 1;
    } else if (!strcmp(act, "Clip") && nap == 2) {
        a->act = 2;
        a->lo = ap_v[0], a->hi = ap_v[1];
    } else if (act[0]) {
        return kiln_kfail(k, KILN_E_INVALID_MODEL,
                          "activation '%s' with %zu parameters: expected Relu (none) or Clip (2)", act, nap);
    }
    return KILN_OK;
}

/* Output size and padding of spatial dim i (input size in, kernel size kk). */
static void out_dim(const struct qconv_attrs *a, int i, int64_t in, int64_t kk, int64_t *out, int64_t *pb,
                    int64_t *pe)
{
    int64_t dk = (kk - 1) * a->d[i] + 1;
    if (a->auto_pad == 1 || a->auto_pad == 2) {
        *out = (in + a->s[i] - 1) / a->s[i];
        int64_t tot = (*out - 1) * a->s[i] + dk - in;
        if (tot < 0) tot = 0;
        *pb = a->auto_pad == 1 ? tot / 2 : tot - tot / 2;
        *pe = tot - *pb;
        return;
    }
    *pb = a->auto_pad == 3 ? 0 : a->pb[i];
    *pe = a->auto_pad == 3 ? 0 : a->pe[i];
    int64_t span = in + *pb + *pe - dk;
    *out = span < 0 ? 0 : span / a->s[i] + 1;
}

/* ------------------------------------------------------------------ parameters */

/* The quantization parameters of one QConv, read from its inputs. */
struct qconv_params {
    bool is_signed;
    int32_t xz, yz;
    float xs, ys;
    const float *ws;
    size_t nws;
    const int32_t *b;
};

static bool is8(kiln_dtype dt) { return dt == KILN_DTYPE_U8 || dt == KILN_DTYPE_I8; }

static bool scalar_f32(const struct kiln_tensor *t, float *v)
{
    if (!t || t->dtype != KILN_DTYPE_F32 || kiln_tensor_numel(t) != 1 || t->rank > 1) return false;
    *v = *(const float *)t->data;
    return true;
}

static bool scalar_zp(const struct kiln_tensor *t, kiln_dtype dt, int32_t *v)
{
    if (!t || t->dtype != dt || kiln_tensor_numel(t) != 1 || t->rank > 1) return false;
    *v = dt == KILN_DTYPE_U8 ? *(const uint8_t *)t->data : *(const int8_t *)t->data;
    return true;
}

/* Reads and checks the parameters from tensors t[QC_*] (t[QC_X] gives the type); a message
 * in msg when they do not fit. */
static bool qconv_params(const struct kiln_tensor *const *t, int64_t M, struct qconv_params *q, char *msg,
                         size_t size)
{
    kiln_dtype dt = t[QC_X]->dtype;
    q->is_signed = dt == KILN_DTYPE_I8;
    if (!is8(dt) || !t[QC_W] || t[QC_W]->dtype != KILN_DTYPE_I8) {
        snprintf(msg, size, "X must be uint8 or int8 and W int8");
        return false;
    }
    if (!scalar_f32(t[QC_XS], &q->xs) || !scalar_f32(t[QC_YS], &q->ys) || !scalar_zp(t[QC_XZ], dt, &q->xz) ||
        !scalar_zp(t[QC_YZ], dt, &q->yz)) {
        snprintf(msg, size, "x_scale and y_scale must be float32 scalars, x_zero_point and y_zero_point "
                            "scalars of X's type %s", kiln_dtype_name(dt));
        return false;
    }
    const struct kiln_tensor *ws = t[QC_WS], *b = t[QC_B];
    q->nws = ws ? kiln_tensor_numel(ws) : 0;
    if (!ws || ws->dtype != KILN_DTYPE_F32 || ws->rank > 1 || (q->nws != 1 && q->nws != (size_t)M)) {
        snprintf(msg, size, "w_scale must be a float32 scalar or [%lld]", (long long)M);
        return false;
    }
    q->ws = ws->data;
    if (b && (b->dtype != KILN_DTYPE_I32 || b->rank != 1 || b->dims[0] != M)) {
        snprintf(msg, size, "B must be int32 [%lld]", (long long)M);
        return false;
    }
    q->b = b ? b->data : NULL;
    return true;
}

/* S[m] = (x_scale * w_scale[m]) / y_scale in float32. */
static void qconv_scales(const struct qconv_params *q, int64_t M, float *S)
{
    for (int64_t m = 0; m < M; m++) {
        float p = q->xs * q->ws[q->nws == 1 ? 0 : m];
        S[m] = p / q->ys;
    }
}

/* The epilogue for one element (the formula of the header); lo/hi: the activation's bounds
 * already divided by y_scale. */
static inline int32_t requant(int32_t acc, int32_t bias, float S, int act, float lo, float hi, int32_t yz,
                              int32_t qlo, int32_t qhi)
{
    float v = ((float)acc + (float)bias) * S;
    if (act == 1) v = v > 0.0f ? v : 0.0f;
    if (act == 2) v = v < lo ? lo : v > hi ? hi : v;
    v = nearbyintf(v + (float)yz);
    if (v < (float)qlo) return qlo;
    if (v > (float)qhi) return qhi;
    return (int32_t)v;
}

/* ------------------------------------------------------------------ reference */

struct ref_job {
    const struct qconv_attrs *a;
    const struct qconv_params *q;
    const void *x;
    const int8_t *w;
    void *y;
    const float *S;
    int64_t H, W, C, M, OH, OW, kh, kw, pt, pl;
};

static void ref_rows(void *ctx, size_t r0, size_t r1, int worker)
{
    (void)worker;
    const struct ref_job *j = ctx;
    const struct qconv_attrs *a = j->a;
    const struct qconv_params *q = j->q;
    int64_t G = a->group, Cg = j->C / G, Mg = j->M / G;
    int32_t qlo = q->is_signed ? -128 : 0, qhi = q->is_signed ? 127 : 255;
    float lo = a->lo / q->ys, hi = a->hi / q->ys;
    for (size_t r = r0; r < r1; r++) {
        int64_t n = (int64_t)r / j->OH, oh = (int64_t)r % j->OH;
        for (int64_t ow = 0; ow < j->OW; ow++) {
            for (int64_t m = 0; m < j->M; m++) {
                int64_t g = m / Mg;
                uint32_t acc = 0; /* wrapping, like int32 accumulators */
                for (int64_t ky = 0; ky < j->kh; ky++) {
                    int64_t ih = oh * a->s[0] - j->pt + ky * a->d[0];
                    if (ih < 0 || ih >= j->H) continue;
                    for (int64_t kx = 0; kx < j->kw; kx++) {
                        int64_t iw = ow * a->s[1] - j->pl + kx * a->d[1];
                        if (iw < 0 || iw >= j->W) continue;
                        size_t xo = (size_t)(((n * j->H + ih) * j->W + iw) * j->C + g * Cg);
                        const int8_t *wp = j->w + ((m * Cg) * j->kh + ky) * j->kw + kx;
                        for (int64_t c = 0; c < Cg; c++) {
                            int32_t xv = q->is_signed ? ((const int8_t *)j->x)[xo + (size_t)c]
                                                      : ((const uint8_t *)j->x)[xo + (size_t)c];
                            acc += (uint32_t)((xv - q->xz) * wp[c * j->kh * j->kw]);
                        }
                    }
                }
                int32_t v = requant((int32_t)acc, q->b ? q->b[m] : 0, j->S[m], a->act, lo, hi, q->yz, qlo, qhi);
                size_t yo = (size_t)(((n * j->OH + oh) * j->OW + ow) * j->M + m);
                if (q->is_signed)
                    ((int8_t *)j->y)[yo] = (int8_t)v;
                else
                    ((uint8_t *)j->y)[yo] = (uint8_t)v;
            }
        }
    }
}

/* ------------------------------------------------------------------ prepare, run */

/* Group 1 without oneDNN's exact convolution: W [M, C, kh, kw] as B [kh * kw * C, M] for the
 * exact int8 product (its zero point 0), the rows given at run. */
static kiln_status own_prepare(struct kiln_kprep *p, struct qconv_state *s, const int8_t *w,
                               const struct kiln_qconv_geom *g, bool x_signed)
{
    size_t C = (size_t)g->C, M = (size_t)g->M, taps = (size_t)(g->k[0] * g->k[1]), K = taps * C, bytes;
    if (!kiln_mul_size(K, M, &bytes)) return KILN_OK;
    int8_t *b = kiln_malloc(bytes ? bytes : 1);
    if (!b) return kiln_kfail(&p->kc, KILN_E_NOMEM, "out of memory for %zu bytes of int8 weights", bytes);
    for (size_t m = 0; m < M; m++)
        for (size_t c = 0; c < C; c++)
            for (size_t t = 0; t < taps; t++) b[(t * C + c) * M + m] = w[(m * C + c) * taps + t];
    kiln_status st = kiln_dnnl_imm_prepare(p, 0, K, M, x_signed, b, true, NULL, 0, &s->own);
    kiln_free(b);
    KILN_TRY(st);
    if (s->own) {
        s->H = g->H, s->W = g->W, s->C = g->C, s->M = g->M;
        p->kernel = kiln_dnnl_imm_kernel(s->own);
    }
    return KILN_OK;
}

static const struct kiln_tensor *in_const(const struct kiln_kprep *p, size_t i)
{
    return p->kc.n_in > i && p->kc.node->inputs[i][0] ? kiln_kprep_const(p, i) : NULL;
}

/* Depthwise without oneDNN's exact convolution: W [C, 1, kh, kw] as int32 [kh * kw][C]. */
static kiln_status dw_prepare(struct kiln_kprep *p, struct qconv_state *s, const int8_t *w,
                              const struct kiln_qconv_geom *g)
{
    size_t C = (size_t)g->C, taps = (size_t)(g->k[0] * g->k[1]), n;
    if (!kiln_mul_size(taps * C, sizeof(int32_t), &n)) return KILN_OK;
    KILN_TRY(kiln_kprep_alloc(p, n, (void **)&s->wdw));
    for (size_t c = 0; c < C; c++)
        for (size_t t = 0; t < taps; t++) s->wdw[t * C + c] = w[c * taps + t];
    s->H = g->H, s->W = g->W, s->C = g->C, s->M = g->M;
    p->kernel = "int32-depthwise";
    return KILN_OK;
}

static kiln_status qconv_prepare(struct kiln_kprep *p)
{
    struct qconv_state *s;
    KILN_TRY(kiln_kprep_alloc(p, sizeof *s, (void **)&s));
    KILN_TRY(qconv_decode(&p->kc, &s->a));
    p->state = s;
    p->kernel = "reference";
    if (p->kc.n_in != QC_NIN) return KILN_OK; /* run reports it */
    const struct kiln_type *xt = p->in[0] ? &p->in[0]->type : NULL;
    const struct kiln_tensor *t[QC_NIN] = {0};
    for (size_t i = 1; i < QC_NIN; i++) t[i] = in_const(p, i);
    bool has_b = p->kc.node->inputs[QC_B][0];
    if (!xt || xt->kind != KILN_TYPE_TENSOR || xt->rank != 4 || !is8(xt->elem) || !t[QC_W] ||
        t[QC_W]->rank != 4 || (has_b && !t[QC_B]))
        return KILN_OK;
    for (int i = 1; i < 4; i++)
        if (xt->dims[i].value <= 0) return KILN_OK;
    const struct kiln_tensor *w = t[QC_W];
    struct kiln_tensor xfake = {.dtype = xt->elem, .rank = 4};
    t[QC_X] = &xfake;
    struct qconv_params q;
    char msg[160];
    int64_t M = w->dims[0];
    if (!qconv_params(t, M, &q, msg, sizeof msg)) return KILN_OK;
    struct qconv_attrs *a = &s->a;
    int64_t kh = a->k[0] < 0 ? w->dims[2] : a->k[0], kw = a->k[1] < 0 ? w->dims[3] : a->k[1];
    int64_t C = xt->dims[3].value;
    if (kh != w->dims[2] || kw != w->dims[3] || M % a->group || C != w->dims[1] * a->group) return KILN_OK;
    struct kiln_qconv_geom g = {.C = C, .M = M, .group = a->group, .k = {kh, kw}, .s = {a->s[0], a->s[1]},
                                .d = {a->d[0], a->d[1]}, .H = xt->dims[1].value, .W = xt->dims[2].value};
    out_dim(a, 0, g.H, kh, &g.OH, &g.pb[0], &g.pe[0]);
    out_dim(a, 1, g.W, kw, &g.OW, &g.pb[1], &g.pe[1]);
    float *S;
    KILN_TRY(kiln_kprep_alloc(p, (size_t)M * sizeof *S, (void **)&S));
    qconv_scales(&q, M, S);
    struct kiln_qconv_epi e = {q.is_signed, q.is_signed, q.xz, q.yz, S, a->act, a->lo / q.ys, a->hi / q.ys};
    KILN_TRY(kiln_dnnl_qconv_prepare(p, &g, &e, w->data, q.b, &s->fast));
    if (s->fast) {
        s->H = g.H, s->W = g.W, s->C = C, s->M = M;
        int kind = kiln_dnnl_qconv_kind(s->fast);
        p->kernel = kind ? "onednn-int8-noamx" : "onednn-int8";
        p->chosen = 1 + kind;
    } else if (a->group == 1) {
        KILN_TRY(own_prepare(p, s, w->data, &g, q.is_signed));
    } else if (a->group == C && M == C) {
        KILN_TRY(dw_prepare(p, s, w->data, &g));
    }
    return KILN_OK;
}

/* The own product's run (struct qconv_state's own: X unfolded, the product; wdw: the
 * depthwise taps), then requantized. */
struct own_job {
    const struct qconv_attrs *a;
    const struct qconv_params *q;
    const uint8_t *x;
    uint8_t *A;         /* [rows, lda] */
    const int32_t *acc; /* [rows, M] */
    const int32_t *wdw; /* depthwise: W [kh * kw][C] */
    void *y;
    const float *S;
    size_t lda;
    int64_t H, W, C, M, OH, OW, kh, kw, pt, pl;
};

static void own_unfold(void *ctx, size_t r0, size_t r1, int worker)
{
    (void)worker;
    const struct own_job *j = ctx;
    const struct qconv_attrs *a = j->a;
    size_t C = (size_t)j->C;
    for (size_t r = r0; r < r1; r++) { /* r: (n, oh) */
        int64_t n = (int64_t)r / j->OH, oh = (int64_t)r % j->OH;
        for (int64_t ow = 0; ow < j->OW; ow++) {
            uint8_t *d = j->A + (r * (size_t)j->OW + (size_t)ow) * j->lda;
            for (int64_t ky = 0; ky < j->kh; ky++) {
                int64_t ih = oh * a->s[0] - j->pt + ky * a->d[0];
                for (int64_t kx = 0; kx < j->kw; kx++, d += C) {
                    int64_t iw = ow * a->s[1] - j->pl + kx * a->d[1];
                    if (ih < 0 || ih >= j->H || iw < 0 || iw >= j->W)
                        memset(d, (uint8_t)j->q->xz, C); /* (x - x_zero_point) 0 */
                    else
                        memcpy(d, j->x + (size_t)((n * j->H + ih) * j->W + iw) * C, C);
                }
            }
        }
    }
}

static void own_requant(void *ctx, size_t r0, size_t r1, int worker)
{
    (void)worker;
    const struct own_job *j = ctx;
    const struct qconv_params *q = j->q;
    float lo = j->a->lo / q->ys, hi = j->a->hi / q->ys;
    size_t M = (size_t)j->M;
    void (*row)(const int32_t *, size_t, const int32_t *, const float *, int, float, float, int32_t, bool,
                void *) = KILN_ISA_SELECT(kiln_i8_requant_row_isa);
    for (size_t r = r0; r < r1; r++)
        row(j->acc + r * M, M, q->b, j->S, j->a->act, lo, hi, q->yz, q->is_signed, (uint8_t *)j->y + r * M);
}

/* Depthwise output rows [r0, r1) (r = n * OH + oh) into acc, exact in wrapping int32; taps
 * in the padding add nothing, as in the reference. */
static void dw_rows(void *ctx, size_t r0, size_t r1, int worker)
{
    (void)worker;
    const struct own_job *j = ctx;
    const struct qconv_attrs *a = j->a;
    size_t C = (size_t)j->C;
    void (*tap)(uint32_t *, const uint8_t *, bool, int32_t, const int32_t *, size_t) =
        KILN_ISA_SELECT(kiln_qdw_tap_isa);
    for (size_t r = r0; r < r1; r++) {
        int64_t n = (int64_t)r / j->OH, oh = (int64_t)r % j->OH;
        for (int64_t ow = 0; ow < j->OW; ow++) {
            uint32_t *acc = (uint32_t *)j->acc + (r * (size_t)j->OW + (size_t)ow) * C;
            memset(acc, 0, C * sizeof *acc);
            for (int64_t ky = 0; ky < j->kh; ky++) {
                int64_t ih = oh * a->s[0] - j->pt + ky * a->d[0];
                if (ih < 0 || ih >= j->H) continue;
                for (int64_t kx = 0; kx < j->kw; kx++) {
                    int64_t iw = ow * a->s[1] - j->pl + kx * a->d[1];
                    if (iw < 0 || iw >= j->W) continue;
                    tap(acc, j->x + (size_t)((n * j->H + ih) * j->W + iw) * C, j->q->is_signed, j->q->xz,
                        j->wdw + (size_t)(ky * j->kw + kx) * C, C);
                }
            }
        }
    }
}

static kiln_status own_run(struct kiln_kctx *k, const struct qconv_state *s, const struct qconv_params *q,
                           const struct kiln_tensor *x, struct kiln_tensor *y, int64_t OH, int64_t OW,
                           int64_t pt, int64_t pl, int64_t kh, int64_t kw)
{
    const struct qconv_attrs *a = &s->a;
    size_t N = (size_t)x->dims[0], rows = N * (size_t)(OH * OW), M = (size_t)s->M;
    size_t lda = s->own ? kiln_dnnl_imm_lda(s->own) : 0;
    bool direct = s->wdw || (kh == 1 && kw == 1 && a->s[0] == 1 && a->s[1] == 1 && pt == 0 && pl == 0 &&
                             OH == s->H && OW == s->W && lda == (size_t)s->C);
    size_t abytes = direct ? 0 : (rows * lda + 63) / 64 * 64,
           accbytes = (rows * M * sizeof(int32_t) + 63) / 64 * 64;
    uint8_t *mem;
    KILN_TRY(kiln_scratch(k, abytes + accbytes + M * sizeof(float), (void **)&mem));
    struct own_job j = {a,
                        q,
                        x->data,
                        direct ? x->data : mem,
                        (const int32_t *)(mem + abytes),
                        s->wdw,
                        y->data,
                        (const float *)(mem + abytes + accbytes),
                        lda,
                        s->H,
                        s->W,
                        s->C,
                        s->M,
                        OH,
                        OW,
                        kh,
                        kw,
                        pt,
                        pl};
    qconv_scales(q, s->M, (float *)(mem + abytes + accbytes));
    if (s->wdw) {
        kiln_pool_for(k->pool, N * (size_t)OH, kiln_pool_grain((size_t)(OW * kh * kw * s->C), 1 << 16),
                      dw_rows, &j);
        kiln_pool_for(k->pool, rows, kiln_pool_grain(M, 1 << 16), own_requant, &j);
        return KILN_OK;
    }
    if (!direct)
        kiln_pool_for(k->pool, N * (size_t)OH, kiln_pool_grain((size_t)(OW * kh * kw * s->C), 1 << 16),
                      own_unfold, &j);
    if (!kiln_dnnl_imm_run(s->own, k->pool, j.A, rows, q->xz, (int32_t *)(mem + abytes)))
        return kiln_kfail(k, KILN_E_INTERNAL, "the int8 product failed");
    kiln_pool_for(k->pool, rows, kiln_pool_grain(M, 1 << 16), own_requant, &j);
    return KILN_OK;
}

static kiln_status qconv_run(struct kiln_kctx *k)
{
    const struct qconv_state *s = k->state;
    if (!s) return kiln_cpu_run_unprepared(k, qconv_prepare, qconv_run);
    if (k->n_in != QC_NIN)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "QConv takes %d inputs; got %zu", QC_NIN, k->n_in);
    const struct kiln_tensor *t[QC_NIN];
    for (size_t i = 0; i < QC_NIN; i++) t[i] = kiln_in(k, i);
    const struct kiln_tensor *x = t[QC_X], *w = t[QC_W];
    if (!x || !w) return kiln_kfail(k, KILN_E_INVALID_MODEL, "inputs X and W are required");
    if (x->rank != 4 || w->rank != 4)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "X has %d dims and W %d; expected 4 and 4", x->rank, w->rank);
    const struct qconv_attrs *a = &s->a;
    int64_t N = x->dims[0], H = x->dims[1], W = x->dims[2], C = x->dims[3], M = w->dims[0], G = a->group;
    int64_t kh = a->k[0] < 0 ? w->dims[2] : a->k[0], kw = a->k[1] < 0 ? w->dims[3] : a->k[1];
    if (C != w->dims[1] * G || M % G || kh != w->dims[2] || kw != w->dims[3])
        return kiln_kfail(k, KILN_E_INVALID_MODEL,
                          "X has %lld channels and W is [%lld, %lld, %lld, %lld] with group %lld: they do not agree",
                          (long long)C, (long long)w->dims[0], (long long)w->dims[1], (long long)w->dims[2],
                          (long long)w->dims[3], (long long)G);
    struct qconv_params q;
    char msg[160];
    if (!qconv_params(t, M, &q, msg, sizeof msg)) return kiln_kfail(k, KILN_E_INVALID_MODEL, "%s", msg);
    int64_t OH, OW, pt, pb, pl, pr;
    out_dim(a, 0, H, kh, &OH, &pt, &pb);
    out_dim(a, 1, W, kw, &OW, &pl, &pr);
    int64_t yd[4] = {N, OH, OW, M};
    struct kiln_tensor *y;
    KILN_TRY(kiln_out_tensor_raw(k, 0, x->dtype, 4, yd, &y));
    if (!kiln_tensor_numel(y)) return KILN_OK;
    if (s->fast && H == s->H && W == s->W && C == s->C && M == s->M) {
        if (!kiln_dnnl_qconv_run(s->fast, k->pool, N, x->data, y->data))
            return kiln_kfail(k, KILN_E_INTERNAL, "oneDNN failed to run the int8 convolution");
        return KILN_OK;
    }
    if ((s->own || s->wdw) && H == s->H && W == s->W && C == s->C && M == s->M)
        return own_run(k, s, &q, x, y, OH, OW, pt, pl, kh, kw);
    float *S;
    KILN_TRY(kiln_scratch(k, (size_t)M * sizeof *S, (void **)&S));
    qconv_scales(&q, M, S);
    struct ref_job j = {a, &q, x->data, w->data, y->data, S, H, W, C, M, OH, OW, kh, kw, pt, pl};
    size_t per_row = (size_t)(OW * M * (C / G) * kh * kw);
    kiln_pool_for(k->pool, (size_t)(N * OH), kiln_pool_grain(per_row, 1 << 16), ref_rows, &j);
    return KILN_OK;
}

/* ------------------------------------------------------------------ QAdd */

enum { QA_A, QA_AS, QA_AZ, QA_B, QA_BS, QA_BZ, QA_YS, QA_YZ, QA_NIN };

/* Built for the baseline instruction set (no FMA to contract into), as the header says. */
void kiln_qadd_i8(const int8_t *a, const int8_t *b, int8_t *y, size_t n, const struct kiln_qadd_params *p)
{
    for (size_t j = 0; j < n; j++) {
        float fa = ((float)a[j] - p->az) * p->as, fb = ((float)b[j] - p->bz) * p->bs;
        float q = nearbyintf((fa + fb) / p->ys) + p->yz;
        y[j] = (int8_t)(q < -128.0f ? -128.0f : q > 127.0f ? 127.0f : q);
    }
}

struct qadd_job {
    const void *a, *b;
    void *y;
    struct kiln_qadd_params qp;
    bool is_signed;
};

static void qadd_chunk(void *ctx, size_t i0, size_t i1, int worker)
{
    (void)worker;
    const struct qadd_job *j = ctx;
    if (j->is_signed)
        kiln_qadd_i8((const int8_t *)j->a + i0, (const int8_t *)j->b + i0, (int8_t *)j->y + i0, i1 - i0, &j->qp);
    else
        KILN_ISA_DISPATCH(kiln_qadd_u8_isa,
                          ((const uint8_t *)j->a + i0, (const uint8_t *)j->b + i0, (uint8_t *)j->y + i0, i1 - i0,
                           &j->qp));
}

static kiln_status qadd_run(struct kiln_kctx *k)
{
    if (k->n_in != QA_NIN)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "QAdd takes %d inputs; got %zu", QA_NIN, k->n_in);
    const struct kiln_tensor *A = kiln_in(k, QA_A), *B = kiln_in(k, QA_B);
    if (!A || !B || !is8(A->dtype) || A->dtype != B->dtype || A->rank != B->rank ||
        memcmp(A->dims, B->dims, sizeof *A->dims * (size_t)A->rank))
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "A and B must be 8-bit integer tensors of one type and shape");
    struct qadd_job j = {A->data, B->data, NULL, {0, 0, 0, 0, 0, 0}, A->dtype == KILN_DTYPE_I8};
    int32_t az, bz, yz;
    if (!scalar_f32(kiln_in(k, QA_AS), &j.qp.as) || !scalar_f32(kiln_in(k, QA_BS), &j.qp.bs) ||
        !scalar_f32(kiln_in(k, QA_YS), &j.qp.ys) || !scalar_zp(kiln_in(k, QA_AZ), A->dtype, &az) ||
        !scalar_zp(kiln_in(k, QA_BZ), A->dtype, &bz) || !scalar_zp(kiln_in(k, QA_YZ), A->dtype, &yz))
        return kiln_kfail(k, KILN_E_INVALID_MODEL,
                          "scales must be float32 scalars and zero points scalars of A's type %s",
                          kiln_dtype_name(A->dtype));
    j.qp.az = (float)az, j.qp.bz = (float)bz, j.qp.yz = (float)yz;
    struct kiln_tensor *y;
    KILN_TRY(kiln_out_tensor_raw(k, 0, A->dtype, A->rank, A->dims, &y));
    j.y = y->data;
    size_t n = kiln_tensor_numel(y);
    kiln_pool_for(k->pool, n, kiln_pool_grain(8, 1 << 16), qadd_chunk, &j);
    return KILN_OK;
}

/* ------------------------------------------------------------------ QMaxPool */

/* kiln.QMaxPool(X [N, H, W, C] uint8/int8) -> Y [N, OH, OW, C]: MaxPool-12's 2-D maximum
 * (kernel_shape, strides, pads, dilations; floor rounding; padding never wins) on the 8-bit
 * data of a DequantizeLinear -> MaxPool -> QuantizeLinear with one scale and zero point
 * (pass_fuse_qdq.c says why that is exact), channels-last: the inner loop takes the maximum
 * of contiguous channels. */
struct qpool_job {
    const struct kiln_tensor *x;
    void *y;
    int64_t k[2], s[2], d[2], p[2], OH, OW;
};

static void qpool_rows(void *ctx, size_t r0, size_t r1, int worker)
{
    (void)worker;
    const struct qpool_job *j = ctx;
    int64_t H = j->x->dims[1], W = j->x->dims[2], C = j->x->dims[3];
    bool sg = j->x->dtype == KILN_DTYPE_I8;
    for (size_t r = r0; r < r1; r++) {
        int64_t n = (int64_t)r / j->OH, oh = (int64_t)r % j->OH;
        for (int64_t ow = 0; ow < j->OW; ow++) {
            size_t yo = (size_t)(((n * j->OH + oh) * j->OW + ow) * C);
            bool first = true;
            for (int64_t ky = 0; ky < j->k[0]; ky++) {
                int64_t ih = oh * j->s[0] - j->p[0] + ky * j->d[0];
                if (ih < 0 || ih >= H) continue;
                for (int64_t kx = 0; kx < j->k[1]; kx++) {
                    int64_t iw = ow * j->s[1] - j->p[1] + kx * j->d[1];
                    if (iw < 0 || iw >= W) continue;
                    size_t xo = (size_t)(((n * H + ih) * W + iw) * C);
                    if (sg) {
                        const int8_t *xp = (const int8_t *)j->x->data + xo;
                        int8_t *yp = (int8_t *)j->y + yo;
                        for (int64_t c = 0; c < C; c++) yp[c] = first || xp[c] > yp[c] ? xp[c] : yp[c];
                    } else {
                        const uint8_t *xp = (const uint8_t *)j->x->data + xo;
                        uint8_t *yp = (uint8_t *)j->y + yo;
                        if (first)
                            memcpy(yp, xp, (size_t)C);
                        else
                            for (int64_t c = 0; c < C; c++) yp[c] = xp[c] > yp[c] ? xp[c] : yp[c];
                    }
                    first = false;
                }
            }
        }
    }
}

static kiln_status qmaxpool_run(struct kiln_kctx *k)
{
    const struct kiln_tensor *x = kiln_in(k, 0);
    if (!x || x->rank != 4 || !is8(x->dtype))
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "X must be a 4-D uint8 or int8 tensor");
    struct qpool_job j = {x, NULL, {0, 0}, {1, 1}, {1, 1}, {0, 0}, 0, 0};
    int64_t pe[2] = {0, 0};
    KILN_TRY(kiln_attr_pair(k, "kernel_shape", 0, 1, j.k));
    KILN_TRY(kiln_attr_pair(k, "strides", 1, 1, j.s));
    KILN_TRY(kiln_attr_pair(k, "dilations", 1, 1, j.d));
    const int64_t *p;
    size_t np = kiln_attr_ints(k, "pads", &p);
    if (np && np != 4) return kiln_kfail(k, KILN_E_INVALID_MODEL, "pads has %zu values; expected 4", np);
    for (int i = 0; i < 2; i++) {
        j.p[i] = np ? p[i] : 0, pe[i] = np ? p[2 + i] : 0;
        if (j.p[i] < 0 || pe[i] < 0) return kiln_kfail(k, KILN_E_INVALID_MODEL, "pads must be >= 0");
        if (j.p[i] >= j.k[i] || pe[i] >= j.k[i])
            return kiln_kfail(k, KILN_E_INVALID_MODEL, "pads must be smaller than the kernel");
    }
    int64_t span[2];
    for (int i = 0; i < 2; i++) span[i] = x->dims[1 + i] + j.p[i] + pe[i] - ((j.k[i] - 1) * j.d[i] + 1);
    j.OH = span[0] < 0 ? 0 : span[0] / j.s[0] + 1;
    j.OW = span[1] < 0 ? 0 : span[1] / j.s[1] + 1;
    int64_t yd[4] = {x->dims[0], j.OH, j.OW, x->dims[3]};
    struct kiln_tensor *y;
    KILN_TRY(kiln_out_tensor_raw(k, 0, x->dtype, 4, yd, &y));
    j.y = y->data;
    if (!kiln_tensor_numel(y)) return KILN_OK;
    size_t per_row = (size_t)(j.OW * x->dims[3] * j.k[0] * j.k[1]);
    kiln_pool_for(k->pool, (size_t)(yd[0] * j.OH), kiln_pool_grain(per_row, 1 << 16), qpool_rows, &j);
    return KILN_OK;
}

/* ------------------------------------------------------------------ QuantizeU8 */

/* kiln.QuantizeU8(x float32, scale float32 scalar, zero_point uint8 scalar) -> uint8
 * (attribute nhwc 1: x [N, C, H, W] written as [N, H, W, C], the Transpose after it folded in):
 * QuantizeLinear per tensor, y = saturate(round_half_even(x / scale) + zero_point), NaN to
 * the zero point, in float32 as ONNX defines it for float32 x; on DynamicQuantizeLinear's
 * vectorized quantize pass (cpu/quant_isa.h, which computes exactly that), split over the
 * threads. The fuse_qdq pass makes it from such a QuantizeLinear (a QDQ model's input). */
struct quant_job {
    const float *x;
    uint8_t *y;
    float scale, zp;
    int64_t C, H, W; /* nhwc: x [N, C, H, W] -> y [N, H, W, C]; else 0 */
};

/* nhwc: rows r = (n, h) of [N*H]: each channel's row quantized into a buffer, then
 * interleaved into y. */
static void quant_nhwc_rows(void *ctx, size_t r0, size_t r1, int worker)
{
    (void)worker;
    const struct quant_job *j = ctx;
    uint8_t buf[256];
    for (size_t r = r0; r < r1; r++) {
        int64_t n = (int64_t)r / j->H, h = (int64_t)r % j->H;
        uint8_t *y = j->y + (size_t)r * (size_t)(j->W * j->C);
        for (int64_t c = 0; c < j->C; c++) {
            const float *x = j->x + ((n * j->C + c) * j->H + h) * j->W;
            for (int64_t w0 = 0; w0 < j->W; w0 += 256) {
                int64_t cnt = j->W - w0 < 256 ? j->W - w0 : 256;
                KILN_ISA_DISPATCH(kiln_dql_quantize_isa, (x + w0, (size_t)cnt, j->scale, j->zp, buf));
                for (int64_t w = 0; w < cnt; w++) y[(w0 + w) * j->C + c] = buf[w];
            }
        }
    }
}

/* kiln.QuantizeU8's and DequantizeU8's operands: x of type x_dtype, a float32 scalar scale
 * and a uint8 scalar zero point. */
static kiln_status u8_operands(struct kiln_kctx *k, kiln_dtype x_dtype, const struct kiln_tensor **x, float *s,
                               int32_t *z)
{
    *x = kiln_in(k, 0);
    if (!*x || (*x)->dtype != x_dtype || !scalar_f32(kiln_in(k, 1), s) || !scalar_zp(kiln_in(k, 2), KILN_DTYPE_U8, z))
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "expected %s x, a float32 scalar scale and a uint8 scalar zero point",
                          kiln_dtype_name(x_dtype));
    return KILN_OK;
}

static void quant_chunk(void *ctx, size_t i0, size_t i1, int worker)
{
    (void)worker;
    const struct quant_job *j = ctx;
    KILN_ISA_DISPATCH(kiln_dql_quantize_isa, (j->x + i0, i1 - i0, j->scale, j->zp, j->y + i0));
}

static kiln_status quantize_u8_run(struct kiln_kctx *k)
{
    const struct kiln_tensor *x;
    float s = 0;
    int32_t z = 0;
    KILN_TRY(u8_operands(k, KILN_DTYPE_F32, &x, &s, &z));
    struct kiln_tensor *y;
    if (kiln_attr_i(k, "nhwc", 0)) {
        if (x->rank != 4) return kiln_kfail(k, KILN_E_INVALID_MODEL, "nhwc needs a 4-D x; got %d dims", x->rank);
        int64_t yd[4] = {x->dims[0], x->dims[2], x->dims[3], x->dims[1]};
        KILN_TRY(kiln_out_tensor_raw(k, 0, KILN_DTYPE_U8, 4, yd, &y));
        struct quant_job j = {x->data, y->data, s, (float)z, x->dims[1], x->dims[2], x->dims[3]};
        size_t per_row = (size_t)(x->dims[1] * x->dims[3]);
        kiln_pool_for(k->pool, (size_t)(x->dims[0] * x->dims[2]), kiln_pool_grain(per_row, 1 << 15), quant_nhwc_rows, &j);
        return KILN_OK;
    }
    KILN_TRY(kiln_out_tensor_raw(k, 0, KILN_DTYPE_U8, x->rank, x->dims, &y));
    struct quant_job j = {x->data, y->data, s, (float)z, 0, 0, 0};
    kiln_pool_for(k->pool, kiln_tensor_numel(x), kiln_pool_grain(4, 1 << 16), quant_chunk, &j);
    return KILN_OK;
}

/* kiln.DequantizeU8(x uint8, scale float32 scalar, zero_point uint8 scalar) -> float32:
 * DequantizeLinear per tensor, y = ((float)x - (float)zero_point) * scale in float32 (this
 * file is built for the baseline instruction set: no fused multiply-add), a loop the
 * compiler vectorizes, split over the threads. */
struct dequant_job {
    const uint8_t *x;
    float *y;
    float scale, zp;
};

static void dequant_chunk(void *ctx, size_t i0, size_t i1, int worker)
{
    (void)worker;
    const struct dequant_job *j = ctx;
    for (size_t i = i0; i < i1; i++) j->y[i] = ((float)j->x[i] - j->zp) * j->scale;
}

static kiln_status dequantize_u8_run(struct kiln_kctx *k)
{
    const struct kiln_tensor *x;
    float s = 0;
    int32_t z = 0;
    KILN_TRY(u8_operands(k, KILN_DTYPE_U8, &x, &s, &z));
    struct kiln_tensor *y;
    KILN_TRY(kiln_out_tensor_raw(k, 0, KILN_DTYPE_F32, x->rank, x->dims, &y));
    struct dequant_job j = {x->data, y->data, s, (float)z};
    kiln_pool_for(k->pool, kiln_tensor_numel(x), kiln_pool_grain(1, 1 << 16), dequant_chunk, &j);
    return KILN_OK;
}

const struct kiln_cpu_op kiln_cpu_ops_qconv[] = {
    {"QConv", "kiln", 1, 0, qconv_run, qconv_prepare, 0},
    {"QAdd", "kiln", 1, 0, qadd_run, NULL, 0},
    {"QMaxPool", "kiln", 1, 0, qmaxpool_run, NULL, 0},
    {"QuantizeU8", "kiln", 1, 0, quantize_u8_run, NULL, 0},
    {"DequantizeU8", "kiln", 1, 0, dequantize_u8_run, NULL, 0},
    {0},
};
