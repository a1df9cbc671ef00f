/* src/cpu/ops/quant.c: ONNX linear quantization ops: QuantizeLinear (10..25),
 * DequantizeLinear (10..25), DynamicQuantizeLinear (11), MatMulInteger (10), QLinearMatMul
 * (10, 21), ConvInteger (10) and QLinearConv (10); kiln.DynQuantMatMul and kiln.DynQuantConv
 * (docs/fused-ops.md).
 *
 * Quantization granularity follows the scale's shape: one element is per tensor, a 1-D scale
 * is per axis (`axis`, default 1), and with `block_size` > 0 (opset 21+) the scale has x's
 * shape except along `axis`, where each scale covers block_size consecutive elements (the
 * last block may be short). The zero point, when given, has the scale's shape and fixes the
 * quantized type; otherwise `output_dtype` (opset 21+) or uint8.
 *
 * Numerics follow the ONNX reference implementation (numpy): QuantizeLinear divides in the
 * promoted type of x and scale (or `precision`, opset 23+), so float16 inputs round the
 * quotient to float16 first; integer targets then round half to even, add the zero point
 * and saturate (NaN quantizes to the zero point). Float8 targets cast the quotient with
 * `saturate` (out-of-range values clamp to the largest finite value, or become inf/NaN when
 * saturate=0, as the spec's table says); float4e2m1 adds the zero point and saturates.
 * DequantizeLinear computes (float(x) - float(zero_point)) * scale in float32 and rounds to
 * the output type (scale's type, or `output_dtype`).
 *
 * Prepare decodes the attributes once (QuantizeLinear/DequantizeLinear: block_size, axis,
 * output_dtype, saturate, precision, each read only from the opset that has it;
 * ConvInteger/QLinearConv: group, strides, dilations, pads, kernel_shape and auto_pad);
 * they are checked against the inputs at run time.
 *
 * Every op above is the reference; the common cases take fast paths with the same bits
 * (docs/quantization.md): QuantizeLinear / DequantizeLinear between float32 and integers of
 * up to 16 (dequantize: 32) bits on the kernels of cpu/quant_isa.h; DynamicQuantizeLinear's
 * passes vectorized and threaded; MatMulInteger / QLinearMatMul with a constant B on
 * oneDNN's int8 matmul (cpu/dnnl_int8.h); 2-D ConvInteger / QLinearConv with a constant w,
 * channels-last, on the same matmul (one group) or an int32 depthwise kernel.
 */
#include <math.h>
#include <string.h>

#include "cpu/act.h"
#include "cpu/broadcast.h"
#include "cpu/dnnl_int8.h"
#include "cpu/float8.h"
#include "cpu/quant_isa.h"
#include "cpu/tensor_util.h"
#include "infer/infer.h"

/* ------------------------------------------------------------------ small floats */

/* The float8 family and float4e2m1 (cpu/float8.h), the float quantized types; not
 * float8e8m0, which quantization does not take. */
static bool is_small_float(kiln_dtype dt)
{
    return kiln_f8_is_narrow(dt) && dt != KILN_DTYPE_F8E8M0;
}

/* Encodes x as small float type dt. NaN keeps this file's long-standing encodings, which
 * differ from Cast's (kiln_f8_from_f64) in two places: float8e5m2 gives 0x7E whatever the
 * NaN's sign, and float4e2m1 (which has no NaN) saturates to +-6 by the NaN's sign. */
static uint8_t sf_encode(kiln_dtype dt, double x, bool saturate)
{
    if (isnan(x) && dt == KILN_DTYPE_F8E5M2) return 0x7E;
    if (isnan(x) && dt == KILN_DTYPE_F4E2M1) return signbit(x) ? 0xF : 0x7;
    return kiln_f8_from_f64(dt, x, saturate, KILN_E8M0_UP);
}

/* ------------------------------------------------------------------ helpers */

/* Temporary buffers of one run, freed together when the run returns (on every path). */
struct qmem {
    void *p[8];
    int n;
};

/* count * size zeroed bytes (at least 1) owned by m. */
static kiln_status qmem_alloc(struct kiln_kctx *k, struct qmem *m, size_t count, size_t size,
                              void **out)
{
    size_t bytes;
    *out = NULL;
    if (!kiln_mul_size(count ? count : 1, size, &bytes))
        return kiln_kfail(k, KILN_E_LIMIT, "temporary buffer of %zu x %zu bytes is too large",
                          count, size);
    if (m->n == (int)(sizeof m->p / sizeof m->p[0]))
        return kiln_kfail(k, KILN_E_INTERNAL, "quant.c: too many temporary buffers");
    void *p = kiln_calloc(1, bytes);
    if (!p) return kiln_kfail(k, KILN_E_NOMEM, "out of memory for %zu bytes", bytes);
    m->p[m->n++] = p;
    *out = p;
    return KILN_OK;
}

static void qmem_free(struct qmem *m)
{
    for (int i = 0; i < m->n; i++) kiln_free(m->p[i]);
    m->n = 0;
}

/* Defines run_<name>(k) calling <name>_impl(k, &mem) and freeing mem afterwards; prep is
 * the op's prepare (NULL: none). */
#define WITH_QMEM(name, prep)                                                                   \
    static kiln_status run_##name(struct kiln_kctx *k)                                          \
    {                                                                                           \
        kiln_status (*prep_fn)(struct kiln_kprep *) = prep;                                     \
        if (prep_fn && !k->state) return kiln_cpu_run_unprepared(k, prep_fn, run_##name);       \
        struct qmem m = {0};                                                                    \
        kiln_status st = name##_impl(k, &m);                                                    \
        qmem_free(&m);                                                                          \
        return st;                                                                              \
    }

/* QuantizeLinear / DequantizeLinear attributes; each is its default before the opset that
 * introduced it. */
struct q_state {
    int64_t block_size;   /* 21+ */
    int64_t axis;
    int64_t output_dtype; /* QuantizeLinear 21+, DequantizeLinear 23+; 0: not given */
    int64_t precision;    /* QuantizeLinear 23+; 0: not given */
    bool saturate;
};

static kiln_status q_prepare_with(struct kiln_kprep *p, int output_dtype_since)
{
    struct q_state *s;
    KILN_TRY(kiln_kprep_alloc(p, sizeof *s, (void **)&s));
    const struct kiln_kctx *k = &p->kc;
    s->block_size = k->opset >= 21 ? kiln_attr_i(k, "block_size", 0) : 0;
    s->axis = kiln_attr_i(k, "axis", 1);
    s->output_dtype = k->opset >= output_dtype_since ? kiln_attr_i(k, "output_dtype", 0) : 0;
    s->precision = k->opset >= 23 ? kiln_attr_i(k, "precision", 0) : 0;
    s->saturate = kiln_attr_i(k, "saturate", 1) != 0;
    p->state = s;
    return KILN_OK;
}

static kiln_status quantize_prepare(struct kiln_kprep *p) { return q_prepare_with(p, 21); }
static kiln_status dequantize_prepare(struct kiln_kprep *p) { return q_prepare_with(p, 23); }

/* Integer range of a quantized type; false when dt is not an integer quantized type. */
static bool int_range(kiln_dtype dt, int64_t *lo, int64_t *hi)
{
    switch (dt) {
    case KILN_DTYPE_U8: *lo = 0; *hi = 255; return true;
    case KILN_DTYPE_I8: *lo = -128; *hi = 127; return true;
    case KILN_DTYPE_U16: *lo = 0; *hi = 65535; return true;
    case KILN_DTYPE_I16: *lo = -32768; *hi = 32767; return true;
    case KILN_DTYPE_U4: *lo = 0; *hi = 15; return true;
    case KILN_DTYPE_I4: *lo = -8; *hi = 7; return true;
    case KILN_DTYPE_U2: *lo = 0; *hi = 3; return true;
    case KILN_DTYPE_I2: *lo = -2; *hi = 1; return true;
    case KILN_DTYPE_I32: *lo = INT32_MIN; *hi = INT32_MAX; return true;
    default: return false;
    }
}

/* Rounds v to the precision of dt (a float type), as storing and reloading would. */
static double round_to(kiln_dtype dt, double v)
{
    switch (dt) {
    case KILN_DTYPE_F32: return (float)v;
    case KILN_DTYPE_F16: return kiln_half_f16_to_f32(kiln_half_f32_to_f16((float)v));
    case KILN_DTYPE_BF16: return kiln_half_bf16_to_f32(kiln_half_f32_to_bf16((float)v));
    default: return v;
    }
}

/* numpy's result type of a float op on dtypes a and b (integers promote to float64). */
static kiln_dtype promote_float(kiln_dtype a, kiln_dtype b)
{
    if (!kiln_dtype_is_float(a) || !kiln_dtype_is_float(b)) return KILN_DTYPE_F64;
    if (a == b) return a;
    if (a == KILN_DTYPE_F64 || b == KILN_DTYPE_F64) return KILN_DTYPE_F64;
    return KILN_DTYPE_F32;
}

/* Element j of a quantized tensor (integer or small float) as a double. */
static double q_get(const struct kiln_tensor *t, size_t j)
{
    if (is_small_float(t->dtype)) {
        /* every NaN encoding reads as the one default NaN (sign and payload dropped) */
        float v = kiln_f8_to_f32(t->dtype, ((const uint8_t *)t->data)[j]);
        return isnan(v) ? NAN : v;
    }
    return kiln_tensor_get_f64(t, j);
}

/* How scale/zero point map onto x: x is viewed as [outer, D, inner] around `axis`; the
 * parameter index for (o, c, i) is o*pouter + (c / bs)*pc + i*pinner. */
struct qlayout {
    size_t outer, d, inner;
    size_t bs;                  /* block size along the axis (D for per tensor) */
    size_t pouter, pc, pinner;  /* parameter strides */
    size_t nparam;
};

/* Works out the layout for x and scale, checking the scale's shape. `what` names the scale
 * input in messages. */
static kiln_status q_layout(struct kiln_kctx *k, const struct kiln_tensor *x,
                            const struct kiln_tensor *s, const char *what, struct qlayout *L)
{
    char sx[200], ss[200];
    size_t n = kiln_tensor_numel(x), ns = kiln_tensor_numel(s);
    memset(L, 0, sizeof *L);
    const struct q_state *qs = k->state;
    int64_t bsz = qs->block_size;
    if (bsz < 0) return kiln_kfail(k, KILN_E_INVALID_MODEL, "block_size is %lld; must be >= 0",
                                   (long long)bsz);
    if (ns == 1 && bsz == 0) { /* per tensor */
        L->outer = 1;
        L->d = 1;
        L->inner = n;
        L->bs = 1;
        L->nparam = 1;
        return KILN_OK;
    }
    int axis;
    KILN_TRY(kiln_norm_axis(k, qs->axis, x->rank, "attribute 'axis'", &axis));
    L->outer = 1;
    L->inner = 1;
    for (int d = 0; d < axis; d++) L->outer *= (size_t)x->dims[d];
    for (int d = (int)axis + 1; d < x->rank; d++) L->inner *= (size_t)x->dims[d];
    L->d = (size_t)x->dims[axis];
    if (bsz == 0) { /* per axis */
        if (s->rank != 1 || (size_t)s->dims[0] != L->d)
            return kiln_kfail(k, KILN_E_INVALID_ARG, "%s has shape %s; expected a scalar or [%zu] "
                              "(x %s, axis %lld)", what, kiln_shape_str(s->rank, s->dims, ss, sizeof ss),
                              L->d, kiln_shape_str(x->rank, x->dims, sx, sizeof sx), (long long)axis);
        L->bs = 1;
        L->pc = 1;
        L->nparam = L->d;
        return KILN_OK;
    }
    size_t nb = L->d == 0 ? 0 : (L->d + (size_t)bsz - 1) / (size_t)bsz;
    bool ok = s->rank == x->rank;
    for (int d = 0; ok && d < x->rank; d++)
        ok = d == axis ? (size_t)s->dims[d] == nb : s->dims[d] == x->dims[d];
    if (!ok)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "%s has shape %s; for x %s with block_size %lld "
                          "on axis %lld expected dim %lld to be %zu and the others to match",
                          what, kiln_shape_str(s->rank, s->dims, ss, sizeof ss),
                          kiln_shape_str(x->rank, x->dims, sx, sizeof sx), (long long)bsz,
                          (long long)axis, (long long)axis, nb);
    L->bs = (size_t)bsz;
    L->pinner = 1;
    L->pc = L->inner;
    L->pouter = nb * L->inner;
    L->nparam = ns;
    return KILN_OK;
}

/* Checks an optional zero point against the scale's shape. */
static kiln_status q_check_zp(struct kiln_kctx *k, const struct kiln_tensor *s,
                              const struct kiln_tensor *zp)
{
    char a[200], b[200];
    if (!zp) return KILN_OK;
    bool ok = kiln_tensor_numel(zp) == kiln_tensor_numel(s);
    if (!ok)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "zero point shape %s does not match scale shape %s",
                          kiln_shape_str(zp->rank, zp->dims, a, sizeof a),
                          kiln_shape_str(s->rank, s->dims, b, sizeof b));
    return KILN_OK;
}

/* Reads a parameter tensor (scale or zero point) into a double array (scratch). */
static kiln_status q_params(struct kiln_kctx *k, struct qmem *m, const struct kiln_tensor *t,
                            size_t n, double **out)
{
    KILN_TRY(qmem_alloc(k, m, n, sizeof(double), (void **)out));
    for (size_t j = 0; j < n; j++) (*out)[j] = t ? q_get(t, j) : 0.0;
    if (!t && n == 0) (*out)[0] = 0.0;
    return KILN_OK;
}

/* The inputs of QuantizeLinear / DequantizeLinear: x, its scale and the optional zero point. */
static kiln_status q_inputs(struct kiln_kctx *k, const struct kiln_tensor **x,
                            const struct kiln_tensor **s, const struct kiln_tensor **zp)
{
    KILN_TRY(kiln_in_req(k, 0, x));
    KILN_TRY(kiln_in_req(k, 1, s));
    *zp = kiln_in(k, 2);
    return KILN_OK;
}

/* The common part of QuantizeLinear / DequantizeLinear: lays out x against scale s
 * (q_layout; `what` names the scale), checks the zero point zp, reads the scales into *sc
 * (unless sc is NULL) and creates output 0 (*y) of dtype odt and x's shape. */
static kiln_status q_setup(struct kiln_kctx *k, struct qmem *m, const struct kiln_tensor *x,
                           const struct kiln_tensor *s, const struct kiln_tensor *zp,
                           const char *what, kiln_dtype odt, struct qlayout *L, double **sc,
                           struct kiln_tensor **y)
{
    KILN_TRY(q_layout(k, x, s, what, L));
    KILN_TRY(q_check_zp(k, s, zp));
    if (!sc) /* the fast path: reads the parameters itself and writes every element */
        return kiln_out_tensor_raw(k, 0, odt, x->rank, x->dims, y);
    KILN_TRY(q_params(k, m, s, L->nparam, sc));
    return kiln_out_tensor(k, 0, odt, x->rank, x->dims, y);
}

/* Walks x's elements in order; q_next gives each one's parameter index under layout L. */
struct qwalk {
    size_t o, c, i, pbase;
};

static size_t q_next(const struct qlayout *L, struct qwalk *w)
{
    size_t p = w->pbase + w->i * L->pinner;
    if (++w->i == L->inner) {
        w->i = 0;
        if (++w->c == L->d) w->c = 0, w->o++;
        w->pbase = w->o * L->pouter + (w->c / L->bs) * L->pc;
    }
    return p;
}

/* ------------------------------------------------------------------ fast paths */

/* The fast QuantizeLinear / DequantizeLinear over layout L: float32 parameters (sc, zf; zf
 * NULL without a zero point) and one call of the ISA kernel per run of elements whose
 * parameters are one value (per tensor, per axis, blocks along the last axis) or follow the
 * elements one to one (per axis on the last axis, blocks on an inner axis). */
struct qfast {
    const struct qlayout *L;
    const float *sc, *zf;
    const void *x;
    void *y;
    size_t xsz, ysz;            /* element sizes */
    bool quant;
    int bytes, kind;            /* kiln_q_f32_isa's bytes, kiln_dq_f32_isa's kind */
    float lo, hi;
};

static void qfast_run(const struct qfast *f, size_t off, size_t len, size_t p, bool per_elem)
{
    const char *x = (const char *)f->x + off * f->xsz;
    char *y = (char *)f->y + off * f->ysz;
    const float *z = f->zf ? f->zf + p : NULL;
    if (f->quant)
        KILN_ISA_DISPATCH(kiln_q_f32_isa, ((const float *)x, len, f->sc + p, z, per_elem, f->lo, f->hi, y, f->bytes));
    else
        KILN_ISA_DISPATCH(kiln_dq_f32_isa, (x, f->kind, len, f->sc + p, z, per_elem, (float *)y));
}

/* Rows [r0, r1) of the [outer, D] row space (row r: o = r / D, c = r % D, inner elements). */
static void qfast_rows(void *ctx, size_t r0, size_t r1, int worker)
{
    (void)worker;
    const struct qfast *f = ctx;
    const struct qlayout *L = f->L;
    for (size_t r = r0; r < r1; r++) {
        size_t o = r / L->d, c = r % L->d, base = o * L->pouter + (c / L->bs) * L->pc;
        if (L->inner > 1 || L->d == 1) {
            qfast_run(f, r * L->inner, L->inner, base, L->pinner == 1);
            continue;
        }
        /* inner == 1: the parameters vary along the axis; whole rows of D at c == 0 */
        if (c) continue;
        if (L->bs == 1) {
            qfast_run(f, o * L->d, L->d, o * L->pouter, L->d > 1);
            continue;
        }
        for (size_t c0 = 0; c0 < L->d; c0 += L->bs)
            qfast_run(f, o * L->d + c0, L->d - c0 < L->bs ? L->d - c0 : L->bs, o * L->pouter + (c0 / L->bs) * L->pc,
                      false);
    }
}

/* The zero point's values as float32 into z (n of them; an integer type of at most 32 bits,
 * 4-bit types stored a byte each). */
static void zp_to_f32(const struct kiln_tensor *zp, size_t n, float *z)
{
    const void *d = zp->data;
    switch (zp->dtype) {
    case KILN_DTYPE_U8: case KILN_DTYPE_U4: case KILN_DTYPE_U2:
        for (size_t j = 0; j < n; j++) z[j] = (float)((const uint8_t *)d)[j];
        break;
    case KILN_DTYPE_I8: case KILN_DTYPE_I4: case KILN_DTYPE_I2:
        for (size_t j = 0; j < n; j++) z[j] = (float)((const int8_t *)d)[j];
        break;
    case KILN_DTYPE_U16:
        for (size_t j = 0; j < n; j++) z[j] = (float)((const uint16_t *)d)[j];
        break;
    case KILN_DTYPE_I16:
        for (size_t j = 0; j < n; j++) z[j] = (float)((const int16_t *)d)[j];
        break;
    default:
        for (size_t j = 0; j < n; j++) z[j] = (float)kiln_tensor_get_f64(zp, j);
        break;
    }
}

/* Runs f with the float32 scale s and the zero point zp (NULL: none) as they are. */
static kiln_status qfast(struct kiln_kctx *k, struct qmem *m, struct qfast *f, const struct kiln_tensor *s,
                         const struct kiln_tensor *zp)
{
    const struct qlayout *L = f->L;
    float *z32 = NULL;
    if (zp) {
        KILN_TRY(qmem_alloc(k, m, L->nparam, sizeof *z32, (void **)&z32));
        zp_to_f32(zp, L->nparam, z32);
    }
    f->sc = s->data, f->zf = z32;
    size_t rows = L->outer * L->d;
    kiln_pool_for(k->pool, rows, kiln_pool_grain(L->inner > 1 ? L->inner : L->d, 65536), qfast_rows, f);
    return KILN_OK;
}

/* Whether QuantizeLinear takes the fast path: float32 x and scale, the division in float32
 * (no other `precision`), an integer target of 1 or 2 bytes. */
static bool quantize_fast_ok(const struct kiln_tensor *x, const struct kiln_tensor *s, kiln_dtype prec, kiln_dtype odt)
{
    size_t ysz = kiln_dtype_size(odt);
    return x->dtype == KILN_DTYPE_F32 && s->dtype == KILN_DTYPE_F32 && prec == KILN_DTYPE_F32 &&
           !is_small_float(odt) && (ysz == 1 || ysz == 2);
}

static kiln_status quantize_fast(struct kiln_kctx *k, struct qmem *m, const struct kiln_tensor *x,
                                 const struct kiln_tensor *s, const struct kiln_tensor *zp, const struct qlayout *L,
                                 int64_t lo, int64_t hi, struct kiln_tensor *y)
{
    size_t ysz = kiln_dtype_size(y->dtype);
    if (kiln_tensor_numel(x) == 0) return KILN_OK;
    struct qfast f = {.L = L, .x = x->data, .y = y->data, .xsz = 4, .ysz = ysz, .quant = true, .bytes = (int)ysz,
                      .lo = (float)lo, .hi = (float)hi};
    return qfast(k, m, &f, s, zp);
}

/* DequantizeLinear's fast path: an integer x of at most 32 bits, a float32 scale and output;
 * the kernel's kind of x, or -1. */
static int dequantize_fast_kind(const struct kiln_tensor *x, const struct kiln_tensor *s, kiln_dtype odt)
{
    static const struct { kiln_dtype dt; int kind; } kinds[] = {
        {KILN_DTYPE_U8, KILN_DQ_U8}, {KILN_DTYPE_U4, KILN_DQ_U8}, {KILN_DTYPE_I8, KILN_DQ_I8},
        {KILN_DTYPE_I4, KILN_DQ_I8}, {KILN_DTYPE_U16, KILN_DQ_U16}, {KILN_DTYPE_I16, KILN_DQ_I16},
        {KILN_DTYPE_I32, KILN_DQ_I32}};
    if (s->dtype != KILN_DTYPE_F32 || odt != KILN_DTYPE_F32) return -1;
    for (size_t j = 0; j < sizeof kinds / sizeof kinds[0]; j++)
        if (kinds[j].dt == x->dtype) return kinds[j].kind;
    return -1;
}

static kiln_status dequantize_fast(struct kiln_kctx *k, struct qmem *m, const struct kiln_tensor *x, int kind,
                                   const struct kiln_tensor *s, const struct kiln_tensor *zp, const struct qlayout *L,
                                   struct kiln_tensor *y)
{
    if (kiln_tensor_numel(x) == 0) return KILN_OK;
    struct qfast f = {.L = L, .x = x->data, .y = y->data, .xsz = kiln_dtype_size(x->dtype), .ysz = 4, .kind = kind};
    return qfast(k, m, &f, s, zp);
}

/* ------------------------------------------------------------------ QuantizeLinear */

static kiln_status quantize_impl(struct kiln_kctx *k, struct qmem *m)
{
    const struct kiln_tensor *x, *s, *zp;
    KILN_TRY(q_inputs(k, &x, &s, &zp));
    const struct q_state *qs = k->state;
    kiln_dtype odt = KILN_DTYPE_U8;
    int64_t attr_dt = qs->output_dtype;
    if (zp) {
        odt = zp->dtype;
        if (attr_dt && attr_dt != (int64_t)odt)
            return kiln_kfail(k, KILN_E_INVALID_MODEL, "output_dtype %s differs from the zero "
                              "point's type %s", kiln_dtype_name((kiln_dtype)attr_dt),
                              kiln_dtype_name(odt));
    } else if (attr_dt) {
        if (!kiln_dtype_valid((int)attr_dt))
            return kiln_kfail(k, KILN_E_INVALID_MODEL, "output_dtype %lld is not a type",
                              (long long)attr_dt);
        odt = (kiln_dtype)attr_dt;
    }
    int64_t qlo = 0, qhi = 0;
    const bool sf = is_small_float(odt);
    if (odt == KILN_DTYPE_I32 || (!sf && !int_range(odt, &qlo, &qhi)))
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "cannot quantize to %s", kiln_dtype_name(odt));
    if (!kiln_dtype_is_float(x->dtype) && x->dtype != KILN_DTYPE_I32)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "input x is %s; expected a float type or int32",
                          kiln_dtype_name(x->dtype));
    bool saturate = qs->saturate;
    kiln_dtype prec = promote_float(x->dtype, s->dtype);
    int64_t pa = qs->precision;
    if (pa) prec = (kiln_dtype)pa;
    if (x->dtype == KILN_DTYPE_I32 && !pa) prec = KILN_DTYPE_F64;

    struct qlayout L;
    double *sc, *zv;
    struct kiln_tensor *y;
    bool fast = quantize_fast_ok(x, s, prec, odt);
    KILN_TRY(q_setup(k, m, x, s, zp, "y_scale", odt, &L, fast ? NULL : &sc, &y));
    if (fast) return quantize_fast(k, m, x, s, zp, &L, qlo, qhi, y);
    KILN_TRY(q_params(k, m, zp, zp ? L.nparam : 0, &zv));
    size_t n = kiln_tensor_numel(x);
    struct qwalk w = {0};
    for (size_t j = 0; j < n; j++) {
        size_t p = q_next(&L, &w);
        double scale = round_to(prec, sc[p]);
        double v = round_to(prec, round_to(prec, kiln_tensor_get_f64(x, j)) / scale);
        double z = zp ? zv[p] : 0.0;
        if (sf) {
            if (odt == KILN_DTYPE_F4E2M1) v = round_to(KILN_DTYPE_F32, v + z);
            ((uint8_t *)y->data)[j] = sf_encode(odt, v, saturate);
            continue;
        }
        double q = isnan(v) ? 0.0 : nearbyint(v);
        q += z;
        if (q < (double)qlo) q = (double)qlo;
        if (q > (double)qhi) q = (double)qhi;
        kiln_tensor_set_f64(y, j, q);
    }
    return KILN_OK;
}

/* ------------------------------------------------------------------ DequantizeLinear */

static kiln_status dequantize_impl(struct kiln_kctx *k, struct qmem *m)
{
    const struct kiln_tensor *x, *s, *zp;
    KILN_TRY(q_inputs(k, &x, &s, &zp));
    int64_t lo, hi;
    if (!is_small_float(x->dtype) && !int_range(x->dtype, &lo, &hi))
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "cannot dequantize %s", kiln_dtype_name(x->dtype));
    if (zp && zp->dtype != x->dtype)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "zero point is %s; expected %s like x",
                          kiln_dtype_name(zp->dtype), kiln_dtype_name(x->dtype));
    if (!kiln_dtype_is_float(s->dtype))
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "x_scale is %s; expected a float type",
                          kiln_dtype_name(s->dtype));
    kiln_dtype odt = s->dtype;
    int64_t attr_dt = ((const struct q_state *)k->state)->output_dtype;
    if (attr_dt) {
        if (!kiln_dtype_valid((int)attr_dt) || !kiln_dtype_is_float((kiln_dtype)attr_dt))
            return kiln_kfail(k, KILN_E_INVALID_MODEL, "output_dtype %lld is not a float type",
                              (long long)attr_dt);
        odt = (kiln_dtype)attr_dt;
    }
    struct qlayout L;
    double *sc, *zv;
    struct kiln_tensor *y;
    int kind = dequantize_fast_kind(x, s, odt);
    KILN_TRY(q_setup(k, m, x, s, zp, "x_scale", odt, &L, kind >= 0 ? NULL : &sc, &y));
    if (kind >= 0) return dequantize_fast(k, m, x, kind, s, zp, &L, y);
    /* float8 zero points must be zero; the reference ignores them otherwise */
    bool use_zp = zp && !is_small_float(x->dtype);
    KILN_TRY(q_params(k, m, use_zp ? zp : NULL, use_zp ? L.nparam : 0, &zv));
    size_t n = kiln_tensor_numel(x);
    struct qwalk w = {0};
    for (size_t j = 0; j < n; j++) {
        size_t p = q_next(&L, &w);
        float dx = (float)q_get(x, j);
        if (use_zp) dx -= (float)zv[p];
        float v = dx * (float)sc[p];
        if (odt == KILN_DTYPE_F32) ((float *)y->data)[j] = v;
        else kiln_tensor_set_f64(y, j, v);
    }
    return KILN_OK;
}

/* ------------------------------------------------------------------ DynamicQuantizeLinear */

/* Elements per chunk of the threaded range and quantize passes. */
#define DQL_CHUNK 32768

struct dql_job {
    const float *x;
    size_t n;
    float lo[64], hi[64]; /* range: per chunk */
    float scale, zp;      /* quantize */
    uint8_t *y;
};

static void dql_range_chunks(void *ctx, size_t c0, size_t c1, int worker)
{
    (void)worker;
    struct dql_job *j = ctx;
    size_t per = (j->n + 63) / 64;
    for (size_t c = c0; c < c1; c++) {
        size_t b = c * per, e = b + per < j->n ? b + per : j->n;
        KILN_ISA_DISPATCH(kiln_dql_range_isa, (j->x + b, b < e ? e - b : 0, &j->lo[c], &j->hi[c]));
    }
}

static void dql_quantize_chunks(void *ctx, size_t c0, size_t c1, int worker)
{
    (void)worker;
    struct dql_job *j = ctx;
    size_t b = c0 * DQL_CHUNK, e = c1 * DQL_CHUNK < j->n ? c1 * DQL_CHUNK : j->n;
    KILN_ISA_DISPATCH(kiln_dql_quantize_isa, (j->x + b, e - b, j->scale, j->zp, j->y + b));
}

/* y = saturate(round(x / scale) + zp) for x[0..n), over the pool's threads when long. */
static void dql_quantize_pool(struct kiln_pool *pool, const float *x, size_t n, float scale, float zp, uint8_t *y)
{
    struct dql_job j = {.x = x, .n = n, .scale = scale, .zp = zp, .y = y};
    kiln_pool_for(pool, (n + DQL_CHUNK - 1) / DQL_CHUNK, 1, dql_quantize_chunks, &j);
}

/* The range [min(0, x...), max(0, x...)] of x[0..n) over the pool's threads when long: each
 * chunk's range starts at [0, 0] and skips NaN, so the ranges of the chunks (never NaN, never
 * -0) combine with plain comparisons into exactly the one-pass range. */
static void dql_range_pool(struct kiln_pool *pool, const float *x, size_t n, float *mn, float *mx)
{
    if (n < 2 * DQL_CHUNK || kiln_pool_threads(pool) < 2) {
        KILN_ISA_DISPATCH(kiln_dql_range_isa, (x, n, mn, mx));
        return;
    }
    struct dql_job j = {.x = x, .n = n};
    kiln_pool_for(pool, 64, 1, dql_range_chunks, &j);
    float lo = 0.0f, hi = 0.0f;
    for (int c = 0; c < 64; c++) {
        if (j.lo[c] < lo) lo = j.lo[c];
        if (j.hi[c] > hi) hi = j.hi[c];
    }
    *mn = lo, *mx = hi;
}

/* DynamicQuantizeLinear's scale and zero point for x[0..n) (float32, as the reference), the
 * range over the pool's threads. */
static void dql_params_pool(struct kiln_pool *pool, const float *xd, size_t n, float *scale, float *zp)
{
    float mx, mn;
    dql_range_pool(pool, xd, n, &mn, &mx);
    float s = mx == mn ? 1.0f : (mx - mn) / 255.0f;
    float z = 0.0f - mn / s;
    z = z < 0 ? 0 : z > 255 ? 255 : z;
    *scale = s, *zp = nearbyintf(z);
}

/* uint8 asymmetric quantization with the range taken from x itself, widened to include 0
 * (float32 arithmetic throughout, as the reference). */
static kiln_status run_dynamic_quantize(struct kiln_kctx *k)
{
    const struct kiln_tensor *x;
    KILN_TRY(kiln_in_req(k, 0, &x));
    if (x->dtype != KILN_DTYPE_F32)
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "input x is %s; expected float32",
                          kiln_dtype_name(x->dtype));
    size_t n = kiln_tensor_numel(x);
    const float *xd = x->data;
    float scale, zp;
    dql_params_pool(k->pool, xd, n, &scale, &zp);
    struct kiln_tensor *y, *ys, *yz;
    KILN_TRY(kiln_out_tensor_raw(k, 0, KILN_DTYPE_U8, x->rank, x->dims, &y));
    dql_quantize_pool(k->pool, xd, n, scale, zp, y->data);
    if (kiln_out_wanted(k, 1)) {
        KILN_TRY(kiln_out_tensor(k, 1, KILN_DTYPE_F32, 0, NULL, &ys));
        *(float *)ys->data = scale;
    }
    if (kiln_out_wanted(k, 2)) {
        KILN_TRY(kiln_out_tensor(k, 2, KILN_DTYPE_U8, 0, NULL, &yz));
        *(uint8_t *)yz->data = (uint8_t)zp;
    }
    return KILN_OK;
}

/* ------------------------------------------------------------------ integer matmul */

/* numpy matmul shapes: A [..., M, K] (or [K]), B [..., K, N] (or [K]); batch dims broadcast. */
struct mm_shape {
    size_t m, kk, n;
    int orank;
    int64_t odims[KILN_MAX_RANK];
    int brank;                     /* batch rank of the output */
    int ra, rb;                    /* batch ranks of A and B */
    int64_t bda[KILN_MAX_RANK], bdb[KILN_MAX_RANK];
};

static kiln_status mm_shapes(struct kiln_kctx *k, const struct kiln_tensor *a,
                             const struct kiln_tensor *b, struct mm_shape *S)
{
    char sa[200], sb[200];
    if (a->rank < 1 || b->rank < 1)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "matmul inputs must have rank >= 1 (got %d and %d)",
                          a->rank, b->rank);
    bool a1 = a->rank == 1, b1 = b->rank == 1;
    S->m = a1 ? 1 : (size_t)a->dims[a->rank - 2];
    S->kk = (size_t)a->dims[a->rank - 1];
    size_t kb = (size_t)(b1 ? b->dims[0] : b->dims[b->rank - 2]);
    S->n = b1 ? 1 : (size_t)b->dims[b->rank - 1];
    if (kb != S->kk)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "matmul shapes %s and %s disagree on K (%zu vs %zu)",
                          kiln_shape_str(a->rank, a->dims, sa, sizeof sa),
                          kiln_shape_str(b->rank, b->dims, sb, sizeof sb), S->kk, kb);
    S->ra = a1 ? 0 : a->rank - 2;
    S->rb = b1 ? 0 : b->rank - 2;
    memcpy(S->bda, a->dims, sizeof(int64_t) * (size_t)S->ra);
    memcpy(S->bdb, b->dims, sizeof(int64_t) * (size_t)S->rb);
    int ranks[2] = {S->ra, S->rb};
    const int64_t *dims[2] = {S->bda, S->bdb};
    kiln_err e;
    if (kiln_bcast_shape(2, ranks, dims, &S->brank, S->odims, &e))
        return kiln_kfail(k, KILN_E_INVALID_ARG, "matmul batch dims: %s", e.msg);
    S->orank = S->brank;
    if (S->orank + 2 > KILN_MAX_RANK)
        return kiln_kfail(k, KILN_E_LIMIT, "matmul output rank exceeds %d", KILN_MAX_RANK);
    if (!a1) S->odims[S->orank++] = (int64_t)S->m;
    if (!b1) S->odims[S->orank++] = (int64_t)S->n;
    return KILN_OK;
}

/* Integer zero point for row/column r: scalar or per-row/per-column (1-D of length len). */
static kiln_status zp_check(struct kiln_kctx *k, const struct kiln_tensor *zp, size_t len,
                            const char *what)
{
    if (!zp) return KILN_OK;
    size_t nz = kiln_tensor_numel(zp);
    if (nz == 1 || (zp->rank == 1 && nz == len)) return KILN_OK;
    char sz[200];
    return kiln_kfail(k, KILN_E_UNSUPPORTED, "%s has shape %s; expected a scalar or [%zu]", what,
                      kiln_shape_str(zp->rank, zp->dims, sz, sizeof sz), len);
}

static int32_t zp_at(const struct kiln_tensor *zp, size_t r)
{
    if (!zp) return 0;
    return (int32_t)kiln_tensor_get_i64(zp, kiln_tensor_numel(zp) == 1 ? 0 : r);
}

/* C[batch] = (A - azp) @ (B - bzp) in int32 (wrapping like numpy int32), for every batch of
 * the broadcast. c has numel(batch) * m * n entries. */
static kiln_status imatmul(struct kiln_kctx *k, struct qmem *m, const struct kiln_tensor *a,
                           const struct kiln_tensor *azp, const struct kiln_tensor *b,
                           const struct kiln_tensor *bzp, const struct mm_shape *S, int32_t *c)
{
    size_t na = kiln_tensor_numel(a), nb = kiln_tensor_numel(b);
    int32_t *ia, *ib;
    KILN_TRY(qmem_alloc(k, m, na, sizeof(int32_t), (void **)&ia));
    KILN_TRY(qmem_alloc(k, m, nb, sizeof(int32_t), (void **)&ib));
    for (size_t j = 0; j < na; j++)
        ia[j] = (int32_t)kiln_tensor_get_i64(a, j) - zp_at(azp, (j / S->kk) % S->m);
    for (size_t j = 0; j < nb; j++)
        ib[j] = (int32_t)kiln_tensor_get_i64(b, j) - zp_at(bzp, j % S->n);
    struct kiln_bcast_iter it;
    int ranks[2] = {S->ra, S->rb};
    const int64_t *dims[2] = {S->bda, S->bdb};
    kiln_bcast_iter_init(&it, 2, ranks, dims, S->brank, S->odims);
    size_t mk = S->m * S->kk, kn = S->kk * S->n, mn = S->m * S->n;
    for (size_t r = 0; r < it.rows; r++, kiln_bcast_iter_next(&it))
        for (size_t q = 0; q < it.inner; q++) {
            const int32_t *pa = ia + (it.off[0] + q * it.step[0]) * mk;
            const int32_t *pb = ib + (it.off[1] + q * it.step[1]) * kn;
            int32_t *pc = c + (it.out_off + q) * mn;
            for (size_t i = 0; i < S->m; i++) {
                uint32_t *row = (uint32_t *)(pc + i * S->n);
                for (size_t j = 0; j < S->n; j++) row[j] = 0;
                for (size_t t = 0; t < S->kk; t++) {
                    uint32_t av = (uint32_t)pa[i * S->kk + t];
                    const int32_t *brow = pb + t * S->n;
                    for (size_t j = 0; j < S->n; j++) row[j] += av * (uint32_t)brow[j];
                }
            }
        }
    return KILN_OK;
}

static bool is_8bit(kiln_dtype dt) { return dt == KILN_DTYPE_U8 || dt == KILN_DTYPE_I8; }

/* The inputs of MatMulInteger / ConvInteger: two required 8-bit integer tensors (`what` names
 * them in messages) and their optional zero points. */
static kiln_status int8_inputs(struct kiln_kctx *k, const char *what,
                               const struct kiln_tensor *in[4])
{
    KILN_TRY(kiln_in_req(k, 0, &in[0]));
    KILN_TRY(kiln_in_req(k, 1, &in[1]));
    in[2] = kiln_in(k, 2);
    in[3] = kiln_in(k, 3);
    if (!is_8bit(in[0]->dtype) || !is_8bit(in[1]->dtype))
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "%s are %s and %s; expected int8 or uint8", what,
                          kiln_dtype_name(in[0]->dtype), kiln_dtype_name(in[1]->dtype));
    return KILN_OK;
}

/* What MatMulInteger's prepare makes: the product with B prepacked by oneDNN (dnnl_int8.h)
 * when B is a constant 8-bit [K, N] with a constant zero point (none, per tensor or per
 * column); A's rows (the product of its leading dims) may be known only at the run (dnnl_int8.h's
 * row buckets). NULL otherwise (the run then takes the reference loop). */
struct mmi_state {
    struct kiln_dnnl_imm *mm;
    const void *b, *bzp; /* the constants it packed: a run with others takes the reference */
    kiln_dtype a_dtype;
    struct kiln_act act; /* kiln.DynQuantMatMul's activation (any of cpu/act.h, or none) */
};

/* b's zero point as int32 into *out (kiln_kprep_alloc), *n its count (0, 1 or N); false
 * when it is not a constant of a form the prepared product takes. */
static kiln_status mmi_bzp(struct kiln_kprep *p, size_t zi, const struct kiln_tensor *bzp, size_t N,
                           int32_t **out, size_t *n, bool *ok)
{
    *ok = false, *n = 0, *out = NULL;
    if (!bzp) {
        *ok = p->kc.n_in <= zi || !p->in[zi]; /* a zero point that is not a constant: no */
        return KILN_OK;
    }
    size_t c = kiln_tensor_numel(bzp);
    if (!bzp->data || !is_8bit(bzp->dtype) || !(c == 1 || (bzp->rank == 1 && c == N))) return KILN_OK;
    KILN_TRY(kiln_kprep_alloc(p, c * sizeof(int32_t), (void **)out));
    for (size_t j = 0; j < c; j++) (*out)[j] = (int32_t)kiln_tensor_get_i64(bzp, j);
    *n = c, *ok = true;
    return KILN_OK;
}

/* The prepared product of MatMulInteger (B input bi = 1, its zero point zi = 3) or
 * QLinearMatMul (3, 5). */
static kiln_status mmi_prepare_at(struct kiln_kprep *p, size_t bi, size_t zi, bool a_float)
{
    struct mmi_state *st;
    KILN_TRY(kiln_kprep_alloc(p, sizeof *st, (void **)&st));
    p->state = st;
    const struct kiln_tensor *b = kiln_kprep_const(p, bi);
    const struct kiln_tensor *bzp = p->kc.n_in > zi ? kiln_kprep_const(p, zi) : NULL;
    const struct kiln_vtype *at = p->in[0];
    if (!b || !is_8bit(b->dtype) || b->rank != 2 || !b->data || !at || at->type.kind != KILN_TYPE_TENSOR ||
        !(a_float ? at->type.elem == KILN_DTYPE_F32 : is_8bit(at->type.elem)) || at->type.rank < 2)
        return KILN_OK;
    kiln_dtype a_dtype = a_float ? KILN_DTYPE_U8 : at->type.elem;
    size_t M = 1; /* 0: not known until the run (a symbolic batch or sequence) */
    for (int d = 0; d + 1 < at->type.rank; d++)
        M = at->type.dims[d].value < 0 ? 0 : M * (size_t)at->type.dims[d].value;
    size_t K = (size_t)b->dims[0], N = (size_t)b->dims[1], nz;
    if (at->type.dims[at->type.rank - 1].value != b->dims[0]) return KILN_OK;
    int32_t *z;
    bool ok;
    KILN_TRY(mmi_bzp(p, zi, bzp, N, &z, &nz, &ok));
    if (!ok) return KILN_OK;
    KILN_TRY(kiln_dnnl_imm_prepare(p, M, K, N, a_dtype == KILN_DTYPE_I8, b->data, b->dtype == KILN_DTYPE_I8,
                                   z, nz, &st->mm));
    if (st->mm) {
        st->b = b->data;
        st->bzp = bzp ? bzp->data : NULL;
        st->a_dtype = a_dtype;
        if (a_float && M) p->scratch_bytes = M * K + N * sizeof(float) + 128; /* dqmm_impl's */
        p->kernel = kiln_dnnl_imm_kernel(st->mm);
        p->chosen = 1;
    }
    return KILN_OK;
}

static kiln_status mmi_prepare(struct kiln_kprep *p) { return mmi_prepare_at(p, 1, 3, false); }
static kiln_status qmm_prepare(struct kiln_kprep *p) { return mmi_prepare_at(p, 3, 5, false); }
static kiln_status dqmm_prepare(struct kiln_kprep *p)
{
    KILN_TRY(mmi_prepare_at(p, 1, 2, true));
    struct mmi_state *st = p->state;
    const float *ap;
    size_t np = kiln_attr_floats(&p->kc, "activation_params", &ap);
    if (!kiln_act_parse(kiln_attr_s(&p->kc, "activation", ""), ap, np, kiln_attr_s(&p->kc, "approximate", "none"),
                        &st->act))
        st->act.kind = (enum kiln_act_kind)-1; /* the run reports it */
    return KILN_OK;
}

/* y = (A - azp) * (B - bzp) (int32) through the prepared product when the run's operands
 * are the prepared ones and A's zero point is per tensor. With defer (kiln.DynQuantMatMul's
 * epilogue): when the correction needs no row sums, y lacks the - a_zp * colsum term, and
 * *defer gets colsum (else NULL). */
static bool matmul_integer_packed_d(struct kiln_kctx *k, const struct kiln_tensor *a, const struct kiln_tensor *azp,
                                    const struct kiln_tensor *b, const struct kiln_tensor *bzp, int32_t *y,
                                    const int32_t **defer)
{
    const struct mmi_state *st = k->state;
    if (!st || !st->mm || b->rank != 2 || b->data != st->b || (bzp ? bzp->data : NULL) != st->bzp || a->rank < 2 ||
        (azp && kiln_tensor_numel(azp) != 1))
        return false;
    size_t M, K, N, na = kiln_tensor_numel(a), lda = kiln_dnnl_imm_lda(st->mm);
    kiln_dnnl_imm_dims(st->mm, &M, &K, &N);
    if (!M && K) M = na / K; /* rows given at run */
    if (na != M * K || (size_t)a->dims[a->rank - 1] != K) return false;
    if (a->dtype != st->a_dtype) return false;
    const void *ad = a->data;
    if (lda != K) { /* rows at the product's stride, zero past K */
        uint8_t *pad;
        if (kiln_scratch(k, M * lda, (void **)&pad) != KILN_OK) return false;
        for (size_t r = 0; r < M; r++) memcpy(pad + r * lda, (const uint8_t *)a->data + r * K, K);
        ad = pad;
    }
    const int32_t *cs = defer ? kiln_dnnl_imm_colsum(st->mm) : NULL;
    if (defer) *defer = cs;
    return kiln_dnnl_imm_run(st->mm, k->pool, ad, M, cs ? 0 : zp_at(azp, 0), y);
}

static bool matmul_integer_packed(struct kiln_kctx *k, const struct kiln_tensor *a, const struct kiln_tensor *azp,
                                  const struct kiln_tensor *b, const struct kiln_tensor *bzp, int32_t *y)
{
    return matmul_integer_packed_d(k, a, azp, b, bzp, y, NULL);
}

static kiln_status matmul_integer_impl(struct kiln_kctx *k, struct qmem *m)
{
    const struct kiln_tensor *in[4];
    KILN_TRY(int8_inputs(k, "inputs", in));
    const struct kiln_tensor *a = in[0], *b = in[1], *azp = in[2], *bzp = in[3];
    struct mm_shape S;
    KILN_TRY(mm_shapes(k, a, b, &S));
    KILN_TRY(zp_check(k, azp, S.m, "a_zero_point"));
    KILN_TRY(zp_check(k, bzp, S.n, "b_zero_point"));
    struct kiln_tensor *y;
    KILN_TRY(kiln_out_tensor_raw(k, 0, KILN_DTYPE_I32, S.orank, S.odims, &y));
    if (matmul_integer_packed(k, a, azp, b, bzp, y->data)) return KILN_OK;
    return imatmul(k, m, a, azp, b, bzp, &S, y->data);
}

/* Requantizes an int32 accumulator: y = saturate(rint(acc * multiplier) + yzp). */
static void requant(struct kiln_tensor *y, size_t j, double acc, double mult, double yzp,
                    int64_t lo, int64_t hi)
{
    double v = nearbyint(acc * mult + yzp);
    if (v < (double)lo) v = (double)lo;
    if (v > (double)hi) v = (double)hi;
    kiln_tensor_set_f64(y, j, v);
}

/* Scale parameter r (scalar or 1-D per row/column). */
static double param_at(const struct kiln_tensor *t, size_t r)
{
    return kiln_tensor_get_f64(t, kiln_tensor_numel(t) == 1 ? 0 : r);
}

/* The eight required inputs of QLinearMatMul / QLinearConv: a/x, its scale and zero point,
 * b/w, its scale and zero point, y_scale and y_zero_point. The two data inputs (named `a` and
 * `b` in messages) and y_zero_point must be 8-bit integers. */
static kiln_status qlinear_inputs(struct kiln_kctx *k, const char *a, const char *b,
                                  const struct kiln_tensor *in[8])
{
    for (size_t i = 0; i < 8; i++) KILN_TRY(kiln_in_req(k, i, &in[i]));
    if (!is_8bit(in[0]->dtype) || !is_8bit(in[3]->dtype) || !is_8bit(in[7]->dtype))
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "%s, %s and y_zero_point are %s, %s and %s; "
                          "expected int8 or uint8", a, b, kiln_dtype_name(in[0]->dtype),
                          kiln_dtype_name(in[3]->dtype), kiln_dtype_name(in[7]->dtype));
    return KILN_OK;
}

/* Output 0 of y_zero_point's dtype and shape (rank, dims), with the y_zero_point range
 * [*lo, *hi] and an int32 accumulator *acc of as many elements. */
static kiln_status qlinear_out(struct kiln_kctx *k, struct qmem *m, const struct kiln_tensor *yzp,
                               int rank, const int64_t *dims, struct kiln_tensor **y, int64_t *lo,
                               int64_t *hi, int32_t **acc)
{
    (void)int_range(yzp->dtype, lo, hi);
    KILN_TRY(kiln_out_tensor(k, 0, yzp->dtype, rank, dims, y));
    return qmem_alloc(k, m, kiln_tensor_numel(*y), sizeof(int32_t), (void **)acc);
}

static kiln_status qlinear_matmul_impl(struct kiln_kctx *k, struct qmem *m)
{
    const struct kiln_tensor *in[8];
    KILN_TRY(qlinear_inputs(k, "a", "b", in));
    const struct kiln_tensor *a = in[0], *as = in[1], *azp = in[2], *b = in[3], *bs = in[4],
                             *bzp = in[5], *ys = in[6], *yzp = in[7];
    struct mm_shape S;
    KILN_TRY(mm_shapes(k, a, b, &S));
    KILN_TRY(zp_check(k, azp, S.m, "a_zero_point"));
    KILN_TRY(zp_check(k, bzp, S.n, "b_zero_point"));
    KILN_TRY(zp_check(k, as, S.m, "a_scale"));
    KILN_TRY(zp_check(k, bs, S.n, "b_scale"));
    KILN_TRY(zp_check(k, ys, S.m, "y_scale"));
    KILN_TRY(zp_check(k, yzp, S.m, "y_zero_point"));
    int64_t lo = 0, hi = 0;
    struct kiln_tensor *y;
    int32_t *acc;
    KILN_TRY(qlinear_out(k, m, yzp, S.orank, S.odims, &y, &lo, &hi, &acc));
    size_t total = kiln_tensor_numel(y);
    if (!matmul_integer_packed(k, a, azp, b, bzp, acc)) KILN_TRY(imatmul(k, m, a, azp, b, bzp, &S, acc));
    /* The multiplier is computed in the scales' type, as the reference's numpy does. */
    kiln_dtype st = as->dtype;
    for (size_t j = 0; j < total; j++) {
        size_t i = (j / S.n) % S.m, c = j % S.n;
        double mult = round_to(st, round_to(st, param_at(as, i) * param_at(bs, c)) /
                                       param_at(ys, i));
        requant(y, j, (double)acc[j], mult, (double)kiln_tensor_get_i64(yzp,
                kiln_tensor_numel(yzp) == 1 ? 0 : i), lo, hi);
    }
    return KILN_OK;
}

/* ------------------------------------------------------------------ kiln.DynQuantMatMul */

/* kiln.DynQuantMatMul(x, W, W_zero_point, w_scale[, bias]) (docs/fused-ops.md): what the
 * optimizer's fuse_dynquant pass makes of DynamicQuantizeLinear -> MatMulInteger -> Cast ->
 * Mul(x_scale * w_scale) [-> Add(bias)]. The same steps in the same float32 operations:
 * x quantized (dql_params, kiln_dql_quantize_isa), the exact int32 product (prepared, or the
 * reference loop), then per element float(acc) * (x_scale * w_scale[n]) [+ bias[n]], two
 * roundings as the separate Mul and Add (this file is compiled without FMA contraction: the
 * baseline instruction set has none). The int32 product is written into y's own memory and
 * converted in place. */
static kiln_status dqmm_check(struct kiln_kctx *k, const struct kiln_tensor *in[5], size_t N)
{
    const struct kiln_tensor *ws = in[3], *bias = in[4];
    if (in[0]->dtype != KILN_DTYPE_F32 || ws->dtype != KILN_DTYPE_F32 || (bias && bias->dtype != KILN_DTYPE_F32))
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "x, w_scale and bias must be float32 (got %s, %s, %s)",
                          kiln_dtype_name(in[0]->dtype), kiln_dtype_name(ws->dtype),
                          bias ? kiln_dtype_name(bias->dtype) : "none");
    size_t ns = kiln_tensor_numel(ws);
    if (!(ns == 1 || ns == N) || (bias && kiln_tensor_numel(bias) != N))
        return kiln_kfail(k, KILN_E_INVALID_ARG, "w_scale has %zu elements and bias %zu; expected 1 or %zu, and %zu",
                          ns, bias ? kiln_tensor_numel(bias) : (size_t)0, N, N);
    return KILN_OK;
}

/* The epilogue of rows [r0, r1), in place: y[r, c] = float(acc[r, c] [- a * colsum[c]]) *
 * scale[c] [+ bias[c]] (kiln_dqmm_epilogue_isa), then the activation (when there is one) on
 * the row while it is in cache: the same function as the activation's own node
 * (kiln_act_apply_f32, cpu/act.h), so the same floats. */
struct dqmm_epi {
    void *y;
    const float *scale, *bias;
    size_t n;
    uint32_t a;
    const int32_t *colsum;
    const struct kiln_act *act; /* NULL: none */
};

static void dqmm_epilogue_rows(void *ctx, size_t r0, size_t r1, int worker)
{
    (void)worker;
    const struct dqmm_epi *e = ctx;
    for (size_t r = r0; r < r1; r++) {
        float *row = (float *)((char *)e->y + r * e->n * 4);
        KILN_ISA_DISPATCH(kiln_dqmm_epilogue_isa, (row, e->n, e->scale, e->bias, e->a, e->colsum));
        if (e->act) kiln_act_apply_f32(e->act, row, NULL, row, e->n);
    }
}

static kiln_status dqmm_impl(struct kiln_kctx *k, struct qmem *m)
{
    const struct kiln_tensor *in[5];
    KILN_TRY(kiln_in_req(k, 0, &in[0]));
    KILN_TRY(kiln_in_req(k, 1, &in[1]));
    in[2] = kiln_in(k, 2);
    KILN_TRY(kiln_in_req(k, 3, &in[3]));
    in[4] = kiln_in(k, 4);
    const struct kiln_tensor *x = in[0], *w = in[1], *wzp = in[2];
    if (!is_8bit(w->dtype) || w->rank != 2 || x->rank < 2)
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "W must be a 2-D int8/uint8 matrix and x of rank >= 2");
    size_t n = kiln_tensor_numel(x), N = (size_t)w->dims[1];
    KILN_TRY(dqmm_check(k, in, N));
    const struct mmi_state *st = k->state;
    if ((int)st->act.kind < 0)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "unknown activation '%s' (or its parameters)",
                          kiln_attr_s(k, "activation", ""));
    float xs, xz;
    dql_params_pool(k->pool, x->data, n, &xs, &xz);
    struct kiln_tensor a = *x, azp = {.dtype = KILN_DTYPE_U8, .rank = 0};
    uint8_t zq = (uint8_t)xz;
    a.dtype = KILN_DTYPE_U8, a.flags = 0, azp.data = &zq;
    KILN_TRY(kiln_scratch(k, n ? n : 1, &a.data));
    dql_quantize_pool(k->pool, x->data, n, xs, xz, a.data);
    struct mm_shape S;
    KILN_TRY(mm_shapes(k, &a, w, &S));
    KILN_TRY(zp_check(k, wzp, S.n, "W_zero_point"));
    struct kiln_tensor *y;
    KILN_TRY(kiln_out_tensor_raw(k, 0, KILN_DTYPE_F32, S.orank, S.odims, &y));
    int32_t *acc = y->data; /* int32 and float32 share the size: converted in place below */
    const int32_t *defer = NULL;
    if (!matmul_integer_packed_d(k, &a, &azp, w, wzp, acc, &defer)) {
        defer = NULL;
        KILN_TRY(imatmul(k, m, &a, &azp, w, wzp, &S, acc));
    }
    const float *ws = in[3]->data, *bias = in[4] ? in[4]->data : NULL;
    size_t ns = kiln_tensor_numel(in[3]), rows = N ? kiln_tensor_numel(y) / N : 0;
    float *scale;
    KILN_TRY(kiln_scratch(k, N * sizeof *scale, (void **)&scale));
    for (size_t c = 0; c < N; c++) scale[c] = xs * ws[ns == 1 ? 0 : c];
    struct dqmm_epi ep = {y->data, scale, bias, N, (uint32_t)zq, defer, st->act.kind == KILN_ACT_NONE ? NULL : &st->act};
    kiln_pool_for(k->pool, rows, kiln_pool_grain(N, 32768), dqmm_epilogue_rows, &ep);
    return KILN_OK;
}

/* ------------------------------------------------------------------ integer convolution */

/* Conv geometry (ONNX Conv attributes) for x [N, C, D...] and w [M, C/group, K...]. */
struct conv_geom {
    int sp;                                /* spatial rank */
    size_t n, c, m, group, cg, mg;         /* batch, in/out channels, per-group counts */
    int64_t in[KILN_MAX_RANK], ker[KILN_MAX_RANK], out[KILN_MAX_RANK];
    int64_t stride[KILN_MAX_RANK], dil[KILN_MAX_RANK], pad0[KILN_MAX_RANK];
};

enum { AP_NOTSET, AP_SAME_UPPER, AP_SAME_LOWER, AP_VALID };

/* The Conv attributes of ConvInteger / QLinearConv (lists: the node's). */
struct qconv_state {
    int64_t group;
    const int64_t *strides, *dilations, *pads, *kernel_shape;
    size_t n_strides, n_dilations, n_pads, n_kernel_shape;
    int auto_pad; /* AP_*; values other than SAME_UPPER, SAME_LOWER and VALID act as NOTSET */
};

static void qconv_decode(const struct kiln_kctx *k, struct qconv_state *s)
{
    s->group = kiln_attr_i(k, "group", 1);
    s->n_strides = kiln_attr_ints(k, "strides", &s->strides);
    s->n_dilations = kiln_attr_ints(k, "dilations", &s->dilations);
    s->n_pads = kiln_attr_ints(k, "pads", &s->pads);
    s->n_kernel_shape = kiln_attr_ints(k, "kernel_shape", &s->kernel_shape);
    const char *ap = kiln_attr_s(k, "auto_pad", "NOTSET");
    s->auto_pad = strcmp(ap, "SAME_UPPER") == 0   ? AP_SAME_UPPER
                  : strcmp(ap, "SAME_LOWER") == 0 ? AP_SAME_LOWER
                  : strcmp(ap, "VALID") == 0      ? AP_VALID
                                                  : AP_NOTSET;
}

static kiln_status conv_geometry(struct kiln_kctx *k, const struct kiln_tensor *x,
                                 const struct kiln_tensor *w, struct conv_geom *G)
{
    const struct qconv_state *cs = k->state;
    char sx[200], sw[200];
    memset(G, 0, sizeof *G);
    if (x->rank < 3 || w->rank != x->rank)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "x %s and w %s must both have rank >= 3 and "
                          "the same rank", kiln_shape_str(x->rank, x->dims, sx, sizeof sx),
                          kiln_shape_str(w->rank, w->dims, sw, sizeof sw));
    G->sp = x->rank - 2;
    G->n = (size_t)x->dims[0];
    G->c = (size_t)x->dims[1];
    G->m = (size_t)w->dims[0];
    int64_t group = cs->group;
    if (group < 1 || G->c % (size_t)group || G->m % (size_t)group ||
        (size_t)w->dims[1] * (size_t)group != G->c)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "group %lld does not fit x %s and w %s",
                          (long long)group, kiln_shape_str(x->rank, x->dims, sx, sizeof sx),
                          kiln_shape_str(w->rank, w->dims, sw, sizeof sw));
    G->group = (size_t)group;
    G->cg = G->c / G->group;
    G->mg = G->m / G->group;
    const int64_t *st = cs->strides, *dl = cs->dilations, *pd = cs->pads, *ks = cs->kernel_shape;
    size_t nst = cs->n_strides, ndl = cs->n_dilations;
    size_t npd = cs->n_pads, nks = cs->n_kernel_shape;
    if ((nst && nst != (size_t)G->sp) || (ndl && ndl != (size_t)G->sp) ||
        (npd && npd != 2 * (size_t)G->sp) || (nks && nks != (size_t)G->sp))
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "strides/dilations/pads/kernel_shape lengths "
                          "do not match %d spatial dims", G->sp);
    const int ap = cs->auto_pad;
    for (int d = 0; d < G->sp; d++) {
        G->in[d] = x->dims[2 + d];
        G->ker[d] = w->dims[2 + d];
        G->stride[d] = nst ? st[d] : 1;
        G->dil[d] = ndl ? dl[d] : 1;
        if (G->stride[d] < 1 || G->dil[d] < 1 || (nks && ks[d] != G->ker[d]))
            return kiln_kfail(k, KILN_E_INVALID_MODEL, "bad stride, dilation or kernel_shape "
                              "on spatial dim %d", d);
        int64_t ext = (G->ker[d] - 1) * G->dil[d] + 1;
        int64_t p0 = npd ? pd[d] : 0, p1 = npd ? pd[d + G->sp] : 0;
        if (ap == AP_SAME_UPPER || ap == AP_SAME_LOWER) {
            int64_t o = (G->in[d] + G->stride[d] - 1) / G->stride[d];
            int64_t tot = (o - 1) * G->stride[d] + ext - G->in[d];
            if (tot < 0) tot = 0;
            p0 = ap == AP_SAME_UPPER ? tot / 2 : tot - tot / 2;
            p1 = tot - p0;
        } else if (ap == AP_VALID) {
            p0 = p1 = 0;
        }
        G->pad0[d] = p0;
        int64_t span = G->in[d] + p0 + p1 - ext;
        if (span < 0)
            return kiln_kfail(k, KILN_E_INVALID_ARG, "kernel extent %lld exceeds padded input "
                              "%lld on spatial dim %d", (long long)ext,
                              (long long)(G->in[d] + p0 + p1), d);
        G->out[d] = span / G->stride[d] + 1;
    }
    return KILN_OK;
}

/* acc[n, m, out...] = bias[m] + sum (x - xzp) * (w - wzp[m]) over the group's channels and
 * the kernel window; padding contributes nothing (it pads the zero-point-shifted x). */
static kiln_status iconv(struct kiln_kctx *k, struct qmem *mem, const struct conv_geom *G,
                         const struct kiln_tensor *x, const struct kiln_tensor *xzp,
                         const struct kiln_tensor *w, const struct kiln_tensor *wzp,
                         const struct kiln_tensor *bias, int32_t *acc)
{
    size_t nx = kiln_tensor_numel(x), nw = kiln_tensor_numel(w);
    size_t insz = 1, ksz = 1, osz = 1;
    for (int d = 0; d < G->sp; d++) {
        insz *= (size_t)G->in[d];
        ksz *= (size_t)G->ker[d];
        osz *= (size_t)G->out[d];
    }
    int32_t *xi, *wi;
    KILN_TRY(qmem_alloc(k, mem, nx, sizeof(int32_t), (void **)&xi));
    KILN_TRY(qmem_alloc(k, mem, nw, sizeof(int32_t), (void **)&wi));
    int32_t xz = xzp ? (int32_t)kiln_tensor_get_i64(xzp, 0) : 0;
    for (size_t j = 0; j < nx; j++) xi[j] = (int32_t)kiln_tensor_get_i64(x, j) - xz;
    size_t per_m = G->cg * ksz;
    for (size_t j = 0; j < nw; j++)
        wi[j] = (int32_t)kiln_tensor_get_i64(w, j) - zp_at(wzp, j / (per_m ? per_m : 1));
    for (size_t b = 0; b < G->n; b++)
        for (size_t oc = 0; oc < G->m; oc++) {
            size_t g = oc / G->mg;
            int32_t b0 = bias ? (int32_t)kiln_tensor_get_i64(bias, oc) : 0;
            for (size_t o = 0; o < osz; o++) {
                int64_t oi[KILN_MAX_RANK];
                size_t rem = o;
                for (int d = G->sp - 1; d >= 0; d--) {
                    oi[d] = (int64_t)(rem % (size_t)G->out[d]);
                    rem /= (size_t)G->out[d];
                }
                uint32_t sum = (uint32_t)b0;
                for (size_t kk = 0; kk < ksz; kk++) {
                    size_t krem = kk, ioff = 0;
                    bool inside = true;
                    int64_t kidx[KILN_MAX_RANK];
                    for (int d = G->sp - 1; d >= 0; d--) {
                        kidx[d] = (int64_t)(krem % (size_t)G->ker[d]);
                        krem /= (size_t)G->ker[d];
                    }
                    for (int d = 0; d < G->sp && inside; d++) {
                        int64_t p = oi[d] * G->stride[d] - G->pad0[d] + kidx[d] * G->dil[d];
                        inside = p >= 0 && p < G->in[d];
                        ioff = ioff * (size_t)G->in[d] + (size_t)p;
                    }
                    if (!inside) continue;
                    for (size_t ic = 0; ic < G->cg; ic++) {
                        int32_t xv = xi[(b * G->c + g * G->cg + ic) * insz + ioff];
                        int32_t wv = wi[(oc * G->cg + ic) * ksz + kk];
                        sum += (uint32_t)xv * (uint32_t)wv;
                    }
                }
                acc[(b * G->m + oc) * osz + o] = (int32_t)sum;
            }
        }
    return KILN_OK;
}

static void conv_out_dims(const struct conv_geom *G, int64_t *dims)
{
    dims[0] = (int64_t)G->n;
    dims[1] = (int64_t)G->m;
    for (int d = 0; d < G->sp; d++) dims[2 + d] = G->out[d];
}

/* ------------------------------------------------------------------ fast integer convolution */

/* What ConvInteger's prepare makes: the Conv attributes (first, so that conv_geometry reads
 * them from k->state) and, for a 2-D convolution with a constant 8-bit w, a constant zero
 * point and x's shape known, a channels-last plan (x laid out [N, H, W, C]):
 *  - group 1: the product on a prepacked oneDNN int8 matmul (dnnl_int8.h). A 1x1 kernel with
 *    stride 1 and no padding multiplies x itself; others unfold x into one row per output
 *    pixel (the taps in (kh, kw, c) order; taps in the padding take x's zero point, so that
 *    they add nothing, as the reference's zero-point-shifted padding), multiplied by w^T
 *    laid out in the same order at prepare;
 *  - depthwise (group = C = M): kiln_qdw_tap_isa over each output pixel's taps, with
 *    w - w_zero_point kept as int32 [KH * KW, C] (padding taps skipped: they add nothing).
 * Either writes the [pixels, M] int32 result, which goes back channels-first. x's batch and
 * image size may be known only at run (dyn: the product's rows then too, dnnl_int8.h); its
 * channels must be known. The same plan serves kiln.DynQuantConv, whose x is float32
 * (quantized to uint8 on the way). */
struct iconv_state {
    struct qconv_state cs;
    struct kiln_dnnl_imm *mm; /* group 1 */
    int32_t *wdw;             /* depthwise: [KH * KW, C] */
    const void *w, *wzp;      /* the constants it packed */
    kiln_dtype x_dtype;       /* of the 8-bit x (uint8 for kiln.DynQuantConv) */
    bool direct;              /* group 1, 1x1, stride 1, no padding: no unfold */
    bool dyn;                 /* x's batch / size known only at run: G holds C and the kernel */
    struct conv_geom G;
    size_t kdim;              /* KH * KW * C */
    size_t lda;               /* the product's row stride (kdim rounded up to 4; dnnl_int8.h) */
    struct kiln_act act;      /* kiln.DynQuantConv's activation (Relu, Clip or none) */
};

/* w [M, C, KH, KW] as [KH * KW * C, M] (row (kh * KW + kw) * C + c) into *out (kiln_malloc). */
static kiln_status iconv_weights_t(struct kiln_kprep *p, const struct kiln_tensor *w, void **out)
{
    size_t M = (size_t)w->dims[0], C = (size_t)w->dims[1], KK = (size_t)(w->dims[2] * w->dims[3]);
    size_t total = M * C * KK;
    uint8_t *t = kiln_malloc(total ? total : 1);
    if (!t) return kiln_kfail(&p->kc, KILN_E_NOMEM, "out of memory for the int8 weights");
    const uint8_t *src = w->data;
    for (size_t m = 0; m < M; m++)
        for (size_t c = 0; c < C; c++)
            for (size_t kk = 0; kk < KK; kk++) t[(kk * C + c) * M + m] = src[(m * C + c) * KK + kk];
    *out = t;
    return KILN_OK;
}

/* Depthwise: w - w_zero_point[c] as int32 [KH * KW, C]. */
static kiln_status iconv_prepare_dw(struct kiln_kprep *p, struct iconv_state *st, const struct kiln_tensor *w,
                                    const int32_t *z, size_t nz)
{
    size_t C = st->G.m, KK = (size_t)(st->G.ker[0] * st->G.ker[1]);
    KILN_TRY(kiln_kprep_alloc(p, C * KK * sizeof(int32_t), (void **)&st->wdw));
    for (size_t c = 0; c < C; c++)
        for (size_t kk = 0; kk < KK; kk++) {
            int32_t v = (int32_t)kiln_tensor_get_i64(w, c * KK + kk);
            st->wdw[kk * C + c] = v - (nz == 0 ? 0 : z[nz == 1 ? 0 : c]);
        }
    return KILN_OK;
}

/* The prepared plan when the shapes and constants allow it (iconv_state); x_float: x is
 * kiln.DynQuantConv's float32 input. */
static kiln_status iconv_prepare_fast(struct kiln_kprep *p, struct iconv_state *st, size_t wi, size_t zi, bool x_float)
{
    const struct kiln_tensor *w = kiln_kprep_const(p, wi);
    const struct kiln_tensor *wzp = p->kc.n_in > zi ? kiln_kprep_const(p, zi) : NULL;
    const struct kiln_vtype *xt = p->in[0];
    if (!w || !is_8bit(w->dtype) || w->rank != 4 || !w->data || !xt || xt->type.kind != KILN_TYPE_TENSOR ||
        !(x_float ? xt->type.elem == KILN_DTYPE_F32 : is_8bit(xt->type.elem)) || xt->type.rank != 4)
        return KILN_OK;
    struct kiln_tensor x = {.dtype = x_float ? KILN_DTYPE_U8 : xt->type.elem, .rank = 4};
    if (xt->type.dims[1].value < 1) return KILN_OK; /* the channels must be known */
    for (int d = 0; d < 4; d++) {
        x.dims[d] = xt->type.dims[d].value;
        if (x.dims[d] >= 1) continue;
        /* known only at run: a probe size that fits the kernel (only C and the kernel are kept) */
        st->dyn = true;
        x.dims[d] = d == 0 ? 1 : w->dims[d] * 64;
    }
    struct kiln_kctx kc = p->kc;
    kc.state = &st->cs;
    if (conv_geometry(&kc, &x, w, &st->G) != KILN_OK) return KILN_OK; /* the run reports it */
    const struct conv_geom *G = &st->G;
    bool dw = G->group > 1 && G->cg == 1 && G->mg == 1;
    if (G->group != 1 && !dw) return KILN_OK;
    size_t rows = st->dyn ? 0 : G->n * (size_t)(G->out[0] * G->out[1]), nz;
    st->kdim = (size_t)(G->ker[0] * G->ker[1]) * G->c;
    int32_t *z;
    bool ok;
    KILN_TRY(mmi_bzp(p, zi, wzp, G->m, &z, &nz, &ok));
    if (!ok) return KILN_OK;
    st->direct = !dw && G->ker[0] == 1 && G->ker[1] == 1 && G->stride[0] == 1 && G->stride[1] == 1 &&
                 G->out[0] == G->in[0] && G->out[1] == G->in[1];
    if (dw) {
        KILN_TRY(iconv_prepare_dw(p, st, w, z, nz));
        p->kernel = "int32-depthwise";
    } else {
        void *wt = NULL;
        KILN_TRY(iconv_weights_t(p, w, &wt));
        kiln_status s = kiln_dnnl_imm_prepare(p, rows, st->kdim, G->m, x.dtype == KILN_DTYPE_I8, wt,
                                              w->dtype == KILN_DTYPE_I8, z, nz, &st->mm);
        kiln_free(wt);
        KILN_TRY(s);
        if (!st->mm) return KILN_OK;
        st->lda = kiln_dnnl_imm_lda(st->mm);
        st->direct = st->direct && st->lda == st->kdim;
        p->kernel = kiln_dnnl_imm_kernel(st->mm);
    }
    st->w = w->data;
    st->wzp = wzp ? wzp->data : NULL;
    st->x_dtype = x.dtype;
    size_t csz = G->c * (size_t)(G->in[0] * G->in[1]);
    if (!st->dyn)
        p->scratch_bytes = G->n * csz + (st->direct || dw ? 0 : rows * st->lda) + rows * G->m * sizeof(int32_t) + 3 * 64;
    p->chosen = 1;
    return KILN_OK;
}

/* ConvInteger (w input wi = 1, its zero point zi = 3), QLinearConv (3, 5) or
 * kiln.DynQuantConv (1, 2; x_float). */
static kiln_status iconv_prepare_at(struct kiln_kprep *p, size_t wi, size_t zi, bool x_float)
{
    struct iconv_state *st;
    KILN_TRY(kiln_kprep_alloc(p, sizeof *st, (void **)&st));
    qconv_decode(&p->kc, &st->cs);
    p->state = st;
    return iconv_prepare_fast(p, st, wi, zi, x_float);
}

static kiln_status iconv_prepare(struct kiln_kprep *p) { return iconv_prepare_at(p, 1, 3, false); }
static kiln_status qiconv_prepare(struct kiln_kprep *p) { return iconv_prepare_at(p, 3, 5, false); }
static kiln_status dqconv_prepare(struct kiln_kprep *p)
{
    KILN_TRY(iconv_prepare_at(p, 1, 2, true));
    struct iconv_state *st = p->state;
    const float *ap;
    size_t np = kiln_attr_floats(&p->kc, "activation_params", &ap);
    if (!kiln_act_parse(kiln_attr_s(&p->kc, "activation", ""), ap, np, NULL, &st->act) ||
        !(st->act.kind == KILN_ACT_NONE || st->act.kind == KILN_ACT_RELU || st->act.kind == KILN_ACT_CLIP))
        st->act.kind = (enum kiln_act_kind)-1; /* the run reports it */
    return KILN_OK;
}

/* Whether the run's operands are the prepared plan's (else the reference runs); G: this
 * run's geometry. */
static bool iconv_matches(const struct iconv_state *st, const struct conv_geom *G, const struct kiln_tensor *x,
                          kiln_dtype x_dtype, const struct kiln_tensor *xzp, const struct kiln_tensor *w,
                          const struct kiln_tensor *wzp)
{
    if (!st || !(st->mm || st->wdw) || w->data != st->w || (wzp ? wzp->data : NULL) != st->wzp ||
        x_dtype != st->x_dtype || x->rank != 4 || (xzp && kiln_tensor_numel(xzp) != 1) || G->c != st->G.c ||
        G->m != st->G.m)
        return false;
    const struct conv_geom *P = &st->G;
    return st->dyn || ((size_t)x->dims[0] == P->n && x->dims[2] == P->in[0] && x->dims[3] == P->in[1]);
}

/* Tiles of the layout changes: TILE pixels by TILE channels. */
#define QTILE 64

/* Channels-last 8-bit x from channels-first x (8-bit, or float32 quantized with scale/zp on
 * the way), for pixel tiles [t0, t1) over all images (tile t: image t / tiles, pixels from
 * (t % tiles) * QTILE). */
struct nhwc_job {
    const void *x;      /* [N, C, HW] */
    bool x_float;
    float scale, zp;    /* x_float: DynamicQuantizeLinear's */
    uint8_t *xt;        /* [N, HW, C] */
    size_t c, hw, tiles;
};

static void nhwc_tiles(void *ctx, size_t t0, size_t t1, int worker)
{
    (void)worker;
    const struct nhwc_job *j = ctx;
    uint8_t tmp[QTILE * QTILE];
    for (size_t t = t0; t < t1; t++) {
        size_t n = t / j->tiles, p0 = (t % j->tiles) * QTILE, np = j->hw - p0 < QTILE ? j->hw - p0 : QTILE;
        uint8_t *dst = j->xt + (n * j->hw + p0) * j->c;
        if (j->x_float) {
            KILN_ISA_DISPATCH(kiln_dql_quantize_nhwc_isa, ((const float *)j->x + n * j->c * j->hw + p0, j->hw, np,
                                                           j->c, j->scale, j->zp, dst, j->c));
            continue;
        }
        for (size_t c0 = 0; c0 < j->c; c0 += QTILE) {
            size_t nc = j->c - c0 < QTILE ? j->c - c0 : QTILE;
            for (size_t c = 0; c < nc; c++)
                memcpy(tmp + c * QTILE, (const uint8_t *)j->x + (n * j->c + c0 + c) * j->hw + p0, np);
            for (size_t p = 0; p < np; p++)
                for (size_t c = 0; c < nc; c++) dst[p * j->c + c0 + c] = tmp[c * QTILE + p];
        }
    }
}

static void to_nhwc(struct kiln_pool *pool, struct nhwc_job *j, size_t n)
{
    j->tiles = (j->hw + QTILE - 1) / QTILE;
    kiln_pool_for(pool, n * j->tiles, kiln_pool_grain(QTILE * j->c, 32768), nhwc_tiles, j);
}

struct unfold_job {
    const struct iconv_state *st;
    const struct conv_geom *G;
    const uint8_t *xt; /* [N, H, W, C] */
    uint8_t *cols;     /* [N * OH * OW, KH * KW * C] */
    uint8_t pad;       /* x's zero point */
};

/* Rows of cols for output rows [r0, r1) (r = n * OH + oh). */
static void unfold_rows(void *ctx, size_t r0, size_t r1, int worker)
{
    (void)worker;
    const struct unfold_job *j = ctx;
    const struct conv_geom *G = j->G;
    size_t C = G->c, OH = (size_t)G->out[0], OW = (size_t)G->out[1];
    for (size_t r = r0; r < r1; r++) {
        size_t n = r / OH;
        int64_t oh = (int64_t)(r % OH);
        const uint8_t *img = j->xt + n * (size_t)(G->in[0] * G->in[1]) * C;
        for (size_t ow = 0; ow < OW; ow++) {
            uint8_t *row = j->cols + (r * OW + ow) * j->st->lda; /* the pad past kdim stays 0 */
            for (int64_t kh = 0; kh < G->ker[0]; kh++) {
                int64_t ih = oh * G->stride[0] - G->pad0[0] + kh * G->dil[0];
                for (int64_t kw = 0; kw < G->ker[1]; kw++, row += C) {
                    int64_t iw = (int64_t)ow * G->stride[1] - G->pad0[1] + kw * G->dil[1];
                    if (ih < 0 || ih >= G->in[0] || iw < 0 || iw >= G->in[1])
                        memset(row, j->pad, C);
                    else
                        memcpy(row, img + ((size_t)ih * (size_t)G->in[1] + (size_t)iw) * C, C);
                }
            }
        }
    }
}

struct dw_job {
    const struct iconv_state *st;
    const struct conv_geom *G;
    const uint8_t *xt; /* [N, H, W, C] */
    int32_t azp;
    int32_t *yt;       /* [N * OH * OW, C] */
};

/* Depthwise output rows [r0, r1) (r = n * OH + oh), exact in wrapping int32. */
static void dw_rows(void *ctx, size_t r0, size_t r1, int worker)
{
    (void)worker;
    const struct dw_job *j = ctx;
    const struct conv_geom *G = j->G;
    size_t C = G->c, OH = (size_t)G->out[0], OW = (size_t)G->out[1];
    bool sgn = j->st->x_dtype == KILN_DTYPE_I8;
    for (size_t r = r0; r < r1; r++) {
        size_t n = r / OH;
        int64_t oh = (int64_t)(r % OH);
        const uint8_t *img = j->xt + n * (size_t)(G->in[0] * G->in[1]) * C;
        for (size_t ow = 0; ow < OW; ow++) {
            uint32_t *acc = (uint32_t *)j->yt + (r * OW + ow) * C;
            memset(acc, 0, C * sizeof *acc);
            for (int64_t kh = 0; kh < G->ker[0]; kh++) {
                int64_t ih = oh * G->stride[0] - G->pad0[0] + kh * G->dil[0];
                if (ih < 0 || ih >= G->in[0]) continue;
                for (int64_t kw = 0; kw < G->ker[1]; kw++) {
                    int64_t iw = (int64_t)ow * G->stride[1] - G->pad0[1] + kw * G->dil[1];
                    if (iw < 0 || iw >= G->in[1]) continue;
                    const uint8_t *xp = img + ((size_t)ih * (size_t)G->in[1] + (size_t)iw) * C;
                    const int32_t *wp = j->st->wdw + (size_t)(kh * G->ker[1] + kw) * C;
                    KILN_ISA_DISPATCH(kiln_qdw_tap_isa, (acc, xp, sgn, j->azp, wp, C));
                }
            }
        }
    }
}

/* Group 1, a 1x1 kernel, stride 1, no padding, C a multiple of 4: x itself is the product's A. */
static bool iconv_direct(const struct iconv_state *st, const struct conv_geom *G)
{
    return !st->wdw && G->ker[0] == 1 && G->ker[1] == 1 && G->stride[0] == 1 && G->stride[1] == 1 &&
           G->out[0] == G->in[0] && G->out[1] == G->in[1] && st->lda == st->kdim;
}

/* The prepared convolution (geometry G) of channels-last xt (zero point azp) into yt
 * [pixels, M] int32; cols: the unfold buffer (unless direct or depthwise). False when oneDNN
 * fails. */
static bool iconv_nhwc(struct kiln_kctx *k, const struct iconv_state *st, const struct conv_geom *G,
                       const uint8_t *xt, int32_t azp, uint8_t *cols, int32_t *yt)
{
    bool direct = iconv_direct(st, G);
    size_t orows = G->n * (size_t)G->out[0], per = (size_t)G->out[1] * (size_t)(G->ker[0] * G->ker[1]) * G->c;
    if (st->wdw) {
        struct dw_job dj = {st, G, xt, azp, yt};
        kiln_pool_for(k->pool, orows, kiln_pool_grain(per, 65536), dw_rows, &dj);
        return true;
    }
    if (!direct) {
        struct unfold_job uj = {st, G, xt, cols, (uint8_t)azp};
        kiln_pool_for(k->pool, orows, kiln_pool_grain(per, 65536), unfold_rows, &uj);
    }
    return kiln_dnnl_imm_run(st->mm, k->pool, direct ? xt : cols, G->n * (size_t)(G->out[0] * G->out[1]), azp, yt);
}

/* The [pixels, M] int32 result back channels-first, for tiles [t0, t1) of QTILE pixels
 * (over all images): as int32 (ConvInteger), or float(acc) * scale [+ bias[m]] as float32
 * (kiln.DynQuantConv: the Cast, Mul and Add it replaces, each rounded as they round). */
struct nchw_job {
    const int32_t *yt; /* [N, P, M] */
    void *y;           /* [N, M, P] */
    bool to_float;
    float scale;
    const float *bias;
    const struct kiln_act *act; /* then y = act(y + z) (NULL: nothing) */
    const float *z;
    size_t m, p, tiles;
};

static void nchw_tiles(void *ctx, size_t t0, size_t t1, int worker)
{
    (void)worker;
    const struct nchw_job *j = ctx;
    for (size_t t = t0; t < t1; t++) {
        size_t n = t / j->tiles, p0 = (t % j->tiles) * QTILE, np = j->p - p0 < QTILE ? j->p - p0 : QTILE;
        const int32_t *src = j->yt + (n * j->p + p0) * j->m;
        size_t off = n * j->m * j->p + p0;
        if (j->to_float) {
            KILN_ISA_DISPATCH(kiln_qconv_epilogue_isa, ((float *)j->y + off, j->p, src, j->m, np, j->m, j->scale,
                                                        j->bias));
            for (size_t m = 0; j->act && m < j->m; m++) { /* while the tile is in cache */
                float *row = (float *)j->y + off + m * j->p;
                kiln_act_apply_f32(j->act, row, j->z ? j->z + off + m * j->p : NULL, row, np);
            }
            continue;
        }
        int32_t *y = (int32_t *)j->y + off;
        for (size_t m = 0; m < j->m; m++)
            for (size_t p = 0; p < np; p++) y[m * j->p + p] = src[p * j->m + m];
    }
}

static void to_nchw(struct kiln_pool *pool, struct nchw_job *j, size_t n)
{
    j->tiles = (j->p + QTILE - 1) / QTILE;
    kiln_pool_for(pool, n * j->tiles, kiln_pool_grain(QTILE * j->m, 32768), nchw_tiles, j);
}

/* The prepared plan's buffers for geometry G: xt, cols (NULL when not needed) and yt. */
static kiln_status iconv_scratch(struct kiln_kctx *k, const struct iconv_state *st, const struct conv_geom *G,
                                 uint8_t **xt, uint8_t **cols, int32_t **yt)
{
    size_t rows = G->n * (size_t)(G->out[0] * G->out[1]);
    *cols = NULL;
    KILN_TRY(kiln_scratch(k, G->n * G->c * (size_t)(G->in[0] * G->in[1]), (void **)xt));
    if (!iconv_direct(st, G) && !st->wdw) KILN_TRY(kiln_scratch(k, rows * st->lda, (void **)cols));
    return kiln_scratch(k, rows * G->m * sizeof(int32_t), (void **)yt);
}

/* ConvInteger through the prepared plan; *done false when this run's operands are not the
 * prepared ones (the reference then runs). */
static kiln_status conv_integer_fast(struct kiln_kctx *k, const struct conv_geom *G, const struct kiln_tensor *x,
                                     const struct kiln_tensor *xzp, const struct kiln_tensor *w,
                                     const struct kiln_tensor *wzp, int32_t *yd, bool *done)
{
    const struct iconv_state *st = k->state;
    *done = false;
    if (!iconv_matches(st, G, x, x->dtype, xzp, w, wzp)) return KILN_OK;
    uint8_t *xt, *cols;
    int32_t *yt;
    KILN_TRY(iconv_scratch(k, st, G, &xt, &cols, &yt));
    struct nhwc_job xj = {.x = x->data, .xt = xt, .c = G->c, .hw = (size_t)(G->in[0] * G->in[1])};
    to_nhwc(k->pool, &xj, G->n);
    if (!iconv_nhwc(k, st, G, xt, zp_at(xzp, 0), cols, yt)) return KILN_OK;
    struct nchw_job yj = {.yt = yt, .y = yd, .m = G->m, .p = (size_t)(G->out[0] * G->out[1])};
    to_nchw(k->pool, &yj, G->n);
    *done = true;
    return KILN_OK;
}

static kiln_status conv_integer_impl(struct kiln_kctx *k, struct qmem *m)
{
    const struct kiln_tensor *in[4];
    KILN_TRY(int8_inputs(k, "x and w", in));
    const struct kiln_tensor *x = in[0], *w = in[1], *xzp = in[2], *wzp = in[3];
    struct conv_geom G;
    KILN_TRY(conv_geometry(k, x, w, &G));
    KILN_TRY(zp_check(k, xzp, 1, "x_zero_point"));
    KILN_TRY(zp_check(k, wzp, G.m, "w_zero_point"));
    int64_t od[KILN_MAX_RANK];
    conv_out_dims(&G, od);
    struct kiln_tensor *y;
    KILN_TRY(kiln_out_tensor_raw(k, 0, KILN_DTYPE_I32, x->rank, od, &y));
    bool done;
    KILN_TRY(conv_integer_fast(k, &G, x, xzp, w, wzp, y->data, &done));
    if (done) return KILN_OK;
    return iconv(k, m, &G, x, xzp, w, wzp, NULL, y->data);
}

static kiln_status qlinear_conv_impl(struct kiln_kctx *k, struct qmem *m)
{
    const struct kiln_tensor *in[8];
    KILN_TRY(qlinear_inputs(k, "x", "w", in));
    const struct kiln_tensor *x = in[0], *xs = in[1], *xzp = in[2], *w = in[3], *ws = in[4],
                             *wzp = in[5], *ys = in[6], *yzp = in[7], *bias = kiln_in(k, 8);
    struct conv_geom G;
    KILN_TRY(conv_geometry(k, x, w, &G));
    KILN_TRY(zp_check(k, xzp, 1, "x_zero_point"));
    KILN_TRY(zp_check(k, xs, 1, "x_scale"));
    KILN_TRY(zp_check(k, wzp, G.m, "w_zero_point"));
    KILN_TRY(zp_check(k, ws, G.m, "w_scale"));
    KILN_TRY(zp_check(k, ys, 1, "y_scale"));
    KILN_TRY(zp_check(k, yzp, 1, "y_zero_point"));
    if (bias && (kiln_tensor_numel(bias) != G.m || bias->dtype != KILN_DTYPE_I32))
        return kiln_kfail(k, KILN_E_INVALID_ARG, "B must be int32 with %zu elements", G.m);
    int64_t od[KILN_MAX_RANK], lo = 0, hi = 0;
    conv_out_dims(&G, od);
    struct kiln_tensor *y;
    int32_t *acc;
    KILN_TRY(qlinear_out(k, m, yzp, x->rank, od, &y, &lo, &hi, &acc));
    size_t total = kiln_tensor_numel(y), osz = G.m ? total / (G.n ? G.n : 1) / G.m : 0;
    bool done;
    KILN_TRY(conv_integer_fast(k, &G, x, xzp, w, wzp, acc, &done));
    if (done && bias)
        for (size_t j = 0; j < total; j++) /* wrapping, as the reference's sum */
            acc[j] = (int32_t)((uint32_t)acc[j] + (uint32_t)kiln_tensor_get_i64(bias, osz ? (j / osz) % G.m : 0));
    if (!done) KILN_TRY(iconv(k, m, &G, x, xzp, w, wzp, bias, acc));
    kiln_dtype st = xs->dtype;
    double yz = (double)kiln_tensor_get_i64(yzp, 0);
    for (size_t j = 0; j < total; j++) {
        size_t oc = osz ? (j / osz) % G.m : 0;
        double mult = round_to(st, round_to(st, param_at(xs, 0) * param_at(ws, oc)) /
                                       param_at(ys, 0));
        requant(y, j, (double)acc[j], mult, yz, lo, hi);
    }
    return KILN_OK;
}

/* ------------------------------------------------------------------ kiln.DynQuantConv */

/* kiln.DynQuantConv(x, W, W_zero_point, w_scale[, bias[, Z]]) (docs/fused-ops.md): what the
 * optimizer's fuse_dynquant pass makes of DynamicQuantizeLinear -> ConvInteger -> Cast ->
 * Mul(x_scale * w_scale) [-> Add(Reshape(bias))] [-> Add(Z)] [-> Relu / Clip], with
 * ConvInteger's attributes and `activation` / `activation_params` (cpu/act.h). The same
 * steps in the same float32 operations: x quantized (dql_params_pool, kiln_dql_quantize_isa,
 * on the way to the channels-last layout), the exact int32 convolution (the prepared plan,
 * or the reference), then float(acc) * (x_scale * w_scale) [+ bias[m]], rounded as the
 * separate Mul and Add (kiln_qconv_epilogue_isa, no contraction), then act(y + Z)
 * (kiln_act_apply_f32: the residual sum rounded, then Relu / Clip, which are exact). */
static kiln_status dqconv_inputs(struct kiln_kctx *k, const struct kiln_tensor *in[5])
{
    KILN_TRY(kiln_in_req(k, 0, &in[0]));
    KILN_TRY(kiln_in_req(k, 1, &in[1]));
    in[2] = kiln_in(k, 2);
    KILN_TRY(kiln_in_req(k, 3, &in[3]));
    in[4] = kiln_in(k, 4);
    const struct kiln_tensor *x = in[0], *w = in[1], *wzp = in[2], *ws = in[3], *bias = in[4];
    if (x->dtype != KILN_DTYPE_F32 || ws->dtype != KILN_DTYPE_F32 || (bias && bias->dtype != KILN_DTYPE_F32) ||
        !is_8bit(w->dtype) || (wzp && wzp->dtype != w->dtype))
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "x, w_scale and bias must be float32 and W 8-bit with a zero "
                          "point of its type (got %s, %s, %s, %s, %s)", kiln_dtype_name(x->dtype),
                          kiln_dtype_name(ws->dtype), bias ? kiln_dtype_name(bias->dtype) : "none",
                          kiln_dtype_name(w->dtype), wzp ? kiln_dtype_name(wzp->dtype) : "none");
    if (kiln_tensor_numel(ws) != 1 || (bias && w->rank >= 1 && kiln_tensor_numel(bias) != (size_t)w->dims[0]))
        return kiln_kfail(k, KILN_E_INVALID_ARG, "w_scale has %zu elements and bias %zu; expected 1, and W's %lld "
                          "output channels", kiln_tensor_numel(ws), bias ? kiln_tensor_numel(bias) : (size_t)0,
                          w->rank >= 1 ? (long long)w->dims[0] : -1LL);
    return KILN_OK;
}

/* The reference path: x quantized channels-first, iconv, then the epilogue in place. */
static kiln_status dqconv_reference(struct kiln_kctx *k, struct qmem *m, const struct conv_geom *G,
                                    const struct kiln_tensor *in[5], float xs, float xz, float scale,
                                    struct kiln_tensor *y)
{
    const struct kiln_tensor *x = in[0];
    size_t n = kiln_tensor_numel(x), total = kiln_tensor_numel(y), osz = G->m && G->n ? total / G->n / G->m : 0;
    struct kiln_tensor xq = *x, azp = {.dtype = KILN_DTYPE_U8, .rank = 0};
    uint8_t zq = (uint8_t)xz;
    xq.dtype = KILN_DTYPE_U8, xq.flags = 0, azp.data = &zq;
    KILN_TRY(qmem_alloc(k, m, n, 1, &xq.data));
    KILN_ISA_DISPATCH(kiln_dql_quantize_isa, (x->data, n, xs, xz, xq.data));
    int32_t *acc = y->data; /* int32 and float32 share the size: converted in place */
    KILN_TRY(iconv(k, m, G, &xq, &azp, in[1], in[2], NULL, acc));
    const float *bias = in[4] ? in[4]->data : NULL;
    for (size_t j = 0; j < total; j++) {
        int32_t v;
        memcpy(&v, acc + j, sizeof v);
        float f = (float)v * scale;
        ((float *)y->data)[j] = bias ? f + bias[osz ? (j / osz) % G->m : 0] : f;
    }
    return KILN_OK;
}

/* y = act(y + z) over the pool (z: the residual or NULL), the fused Add and Relu / Clip. */
struct act_job {
    const struct kiln_act *act;
    float *y;
    const float *z;
    size_t n;
};

static void act_chunks(void *ctx, size_t c0, size_t c1, int worker)
{
    (void)worker;
    const struct act_job *j = ctx;
    size_t b = c0 * 65536, e = c1 * 65536 < j->n ? c1 * 65536 : j->n;
    kiln_act_apply_f32(j->act, j->y + b, j->z ? j->z + b : NULL, j->y + b, e - b);
}

/* Checks kiln.DynQuantConv's activation and residual; *act NULL when there is nothing to
 * apply, else the activation and *z the residual (or NULL). */
static kiln_status dqconv_tail_check(struct kiln_kctx *k, const struct kiln_tensor *y, const struct kiln_act **act,
                                     const float **z)
{
    const struct iconv_state *st = k->state;
    const struct kiln_tensor *zt = kiln_in(k, 5);
    *act = NULL, *z = NULL;
    if ((int)st->act.kind < 0)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "activation '%s' is not Relu or Clip",
                          kiln_attr_s(k, "activation", ""));
    if (zt && (zt->dtype != KILN_DTYPE_F32 || kiln_tensor_numel(zt) != kiln_tensor_numel(y) || zt->rank != y->rank))
        return kiln_kfail(k, KILN_E_INVALID_ARG, "residual Z must be float32 of the output's shape");
    if (st->act.kind != KILN_ACT_NONE || zt) *act = &st->act, *z = zt ? zt->data : NULL;
    return KILN_OK;
}

static kiln_status dqconv_tail(struct kiln_kctx *k, struct kiln_tensor *y)
{
    const struct kiln_act *act;
    const float *z;
    KILN_TRY(dqconv_tail_check(k, y, &act, &z));
    if (!act) return KILN_OK;
    size_t n = kiln_tensor_numel(y);
    struct act_job j = {act, y->data, z, n};
    kiln_pool_for(k->pool, (n + 65535) / 65536, 1, act_chunks, &j);
    return KILN_OK;
}

static kiln_status dqconv_impl(struct kiln_kctx *k, struct qmem *m)
{
    const struct kiln_tensor *in[5];
    KILN_TRY(dqconv_inputs(k, in));
    const struct kiln_tensor *x = in[0], *w = in[1], *wzp = in[2];
    struct conv_geom G;
    KILN_TRY(conv_geometry(k, x, w, &G));
    KILN_TRY(zp_check(k, wzp, G.m, "W_zero_point"));
    int64_t od[KILN_MAX_RANK];
    conv_out_dims(&G, od);
    struct kiln_tensor *y;
    KILN_TRY(kiln_out_tensor_raw(k, 0, KILN_DTYPE_F32, x->rank, od, &y));
    float xs, xz;
    dql_params_pool(k->pool, x->data, kiln_tensor_numel(x), &xs, &xz);
    float scale = xs * ((const float *)in[3]->data)[0];
    const struct iconv_state *st = k->state;
    uint8_t zq = (uint8_t)xz;
    struct kiln_tensor azp = {.dtype = KILN_DTYPE_U8, .rank = 0, .data = &zq};
    if (!iconv_matches(st, &G, x, KILN_DTYPE_U8, &azp, w, wzp)) {
        KILN_TRY(dqconv_reference(k, m, &G, in, xs, xz, scale, y));
        return dqconv_tail(k, y);
    }
    uint8_t *xt, *cols;
    int32_t *yt;
    KILN_TRY(iconv_scratch(k, st, &G, &xt, &cols, &yt));
    struct nhwc_job xj = {.x = x->data, .x_float = true, .scale = xs, .zp = xz, .xt = xt, .c = G.c,
                          .hw = (size_t)(G.in[0] * G.in[1])};
    to_nhwc(k->pool, &xj, G.n);
    if (!iconv_nhwc(k, st, &G, xt, (int32_t)zq, cols, yt)) {
        KILN_TRY(dqconv_reference(k, m, &G, in, xs, xz, scale, y));
        return dqconv_tail(k, y);
    }
    struct nchw_job yj = {.yt = yt, .y = y->data, .to_float = true, .scale = scale,
                          .bias = in[4] ? in[4]->data : NULL, .m = G.m, .p = (size_t)(G.out[0] * G.out[1])};
    KILN_TRY(dqconv_tail_check(k, y, &yj.act, &yj.z));
    to_nchw(k->pool, &yj, G.n);
    return KILN_OK;
}

WITH_QMEM(quantize, quantize_prepare)
WITH_QMEM(dequantize, dequantize_prepare)
WITH_QMEM(matmul_integer, mmi_prepare)
WITH_QMEM(qlinear_matmul, qmm_prepare)
WITH_QMEM(conv_integer, iconv_prepare)
WITH_QMEM(dqmm, dqmm_prepare)
WITH_QMEM(qlinear_conv, qiconv_prepare)
WITH_QMEM(dqconv, dqconv_prepare)

/* ------------------------------------------------------------------ table */

const struct kiln_cpu_op kiln_cpu_ops_quant[] = {
    {"QuantizeLinear", "", 10, 0, run_quantize, quantize_prepare, 0},
    {"DequantizeLinear", "", 10, 0, run_dequantize, dequantize_prepare, 0},
    {"DynamicQuantizeLinear", "", 11, 0, run_dynamic_quantize, NULL, 0},
    {"MatMulInteger", "", 10, 0, run_matmul_integer, mmi_prepare, 0},
    {"QLinearMatMul", "", 10, 0, run_qlinear_matmul, qmm_prepare, 0},
    {"ConvInteger", "", 10, 0, run_conv_integer, iconv_prepare, 0},
    {"QLinearConv", "", 10, 0, run_qlinear_conv, qiconv_prepare, 0},
    /* kiln.DynQuantMatMul (docs/fused-ops.md): the fused dynamic quantization pattern */
    {"DynQuantMatMul", "kiln", 1, 0, run_dqmm, dqmm_prepare, 0},
    {"DynQuantConv", "kiln", 1, 0, run_dqconv, dqconv_prepare, 0},
    {0},
};
