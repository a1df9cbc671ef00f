/* src/cpu/ops/unary.c: ONNX element-wise ops of one tensor (every opset each op appears
 * in): Abs Neg Floor Ceil Round Sqrt Reciprocal Exp Log Sin Cos Tan Asin Acos Atan Sinh
 * Cosh Tanh Asinh Acosh Atanh Sigmoid HardSigmoid HardSwish Relu LeakyRelu Elu Selu Celu
 * ThresholdedRelu Softplus Softsign Erf Gelu Mish Swish Sign IsNaN IsInf Not BitwiseNot
 * Clip Shrink Identity.
 *
 * Semantics we promise:
 * - float, double, float16 and bfloat16 inputs; float16/bfloat16 are computed in float32
 *   (decoded in chunks, the float32 loop run, rounded back to nearest even). Integer inputs
 *   only where the spec allows them (Abs, Neg, Sign, Relu, Shrink, Clip, BitwiseNot).
 * - NaN in gives NaN out for every math function (Relu, Clip, HardSigmoid included: they
 *   are written as comparisons that let NaN through, as numpy's reference does). Signed
 *   integer Abs/Neg of the minimum value wraps (two's complement), as numpy does.
 * - float32 Exp, Tanh, Sigmoid, Erf and Gelu (so float16/bfloat16 too) use the vectorized
 *   cores of cpu/vmath.h (through cpu/eltwise.h, with the other float32 loops that need no
 *   libm call, at this CPU's vector width): exp within 2 ulp, erf within 2e-7 absolute, tanh and sigmoid
 *   within 1e-6 relative, with libm's results for NaN, +-0 and +-inf. Sigmoid's tails do
 *   not flush early (sigmoid(-100) is the subnormal 3.7e-44). Double stays on libm.
 * - Round is half to even. Softplus is computed as max(x,0) + log1p(exp(-|x|)), which
 *   equals log(exp(x)+1) without overflowing for large x.
 * - Clip: opsets 1 and 6 read the attributes min/max (default -+FLT_MAX); opset 11+ reads
 *   optional scalar inputs 1 and 2 (absent: the type's limits). min > max gives max
 *   everywhere, which the spec's min(max(x, lo), hi) order yields.
 * - Identity copies a tensor into its output (nothing to copy when the planner put the
 *   output over the input) and clones any other value (sequence, optional, string tensor).
 *
 * Prepared kernels (cpu/kernel.h): the ops with attributes decode them in prepare into their
 * state (struct ustate, struct clip_state, struct class_state), rejecting the values that are
 * wrong whatever the inputs (Celu alpha 0, an unknown Gelu approximation) there. A kernel run
 * without prepare (k->state NULL: the unit tests call run directly) decodes through the same
 * function at run time, so the values and the messages are the same on both paths.
 *
 * In place (KILN_OP_INPLACE): every op here writes output 0 element by element, reading
 * element i (or the chunk holding it: float16 staging, Gelu, IsNaN/IsInf) before writing it,
 * so output 0 may occupy input 0's memory when both have the same size. Not/IsNaN/IsInf
 * change the element type: they run in place only where the sizes agree (bool from bool or a
 * float8 type).
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include "base/pool.h"
#include "cpu/eltwise.h"
#include "cpu/float8.h"
#include "cpu/tensor_util.h"

/* Attribute values an op's loop reads; meaning per op (e.g. Shrink: alpha = lambd,
 * beta = bias). */
struct uparams {
    double alpha, beta, gamma;
};

typedef void f32_loop(size_t n, const float *x, float *y, const struct uparams *p);
typedef void f64_loop(size_t n, const double *x, double *y, const struct uparams *p);
/* Integer loop; returns false when dt is not an integer type the op accepts. */
typedef bool int_loop(kiln_dtype dt, size_t n, const void *x, void *y, const struct uparams *p);

struct unary_def {
    f32_loop *f32;
    f64_loop *f64;
    int_loop *ints;        /* NULL: no integer types */
    const char *int_types; /* for the error message */
};

/* ------------------------------------------------------------------ float loops
 * Each op is an expression E(T, M, v) of the element v of type T; M(fn) names the libm
 * function of that type (expf vs exp). Loops never alias-assume, so y == x is fine. */

#define MF(fn) fn##f
#define MD(fn) fn
#define CLAMP01(T, t) ((t) < (T)0 ? (T)0 : (t) > (T)1 ? (T)1 : (t))

#define DEF_FLOAT_OP(name, E)                                                                  \
    static void name##_f32(size_t n, const float *x, float *y, const struct uparams *p)       \
    {                                                                                          \
        const float alpha = (float)p->alpha, beta = (float)p->beta, gamma = (float)p->gamma;   \
        (void)alpha, (void)beta, (void)gamma;                                                  \
        for (size_t i = 0; i < n; i++) {                                                       \
            const float v = x[i];                                                              \
            y[i] = E(float, MF, v);                                                            \
        }                                                                                      \
    }                                                                                          \
    DEF_F64_OP(name, E)

/* The double loop alone, for ops whose float loop is one of the vmath ones below. */
#define DEF_F64_OP(name, E)                                                                    \
    static void name##_f64(size_t n, const double *x, double *y, const struct uparams *p)     \
    {                                                                                          \
        const double alpha = p->alpha, beta = p->beta, gamma = p->gamma;                       \
        (void)alpha, (void)beta, (void)gamma;                                                  \
        for (size_t i = 0; i < n; i++) {                                                       \
            const double v = x[i];                                                             \
            y[i] = E(double, MD, v);                                                           \
        }                                                                                      \
    }

#define E_ABS(T, M, v) M(fabs)(v)
#define E_NEG(T, M, v) (-(v))
#define E_FLOOR(T, M, v) M(floor)(v)
#define E_CEIL(T, M, v) M(ceil)(v)
#define E_ROUND(T, M, v) M(nearbyint)(v) /* default rounding mode: ties to even */
#define E_SQRT(T, M, v) M(sqrt)(v)
#define E_RECIPROCAL(T, M, v) ((T)1 / (v))
#define E_EXP(T, M, v) M(exp)(v)
#define E_LOG(T, M, v) M(log)(v)
#define E_SIN(T, M, v) M(sin)(v)
#define E_COS(T, M, v) M(cos)(v)
#define E_TAN(T, M, v) M(tan)(v)
#define E_ASIN(T, M, v) M(asin)(v)
#define E_ACOS(T, M, v) M(acos)(v)
#define E_ATAN(T, M, v) M(atan)(v)
#define E_SINH(T, M, v) M(sinh)(v)
#define E_COSH(T, M, v) M(cosh)(v)
#define E_TANH(T, M, v) M(tanh)(v)
#define E_ASINH(T, M, v) M(asinh)(v)
#define E_ACOSH(T, M, v) M(acosh)(v)
#define E_ATANH(T, M, v) M(atanh)(v)
#define E_ERF(T, M, v) M(erf)(v)
/* exp(-v) overflowing to Inf for very negative v gives 1/Inf = 0, the right limit. */
#define E_SIGMOID(T, M, v) ((T)1 / ((T)1 + M(exp)(-(v))))
#define E_HARDSIGMOID(T, M, v) CLAMP01(T, alpha * (v) + beta)
#define E_HARDSWISH(T, M, v) ((v) * CLAMP01(T, alpha * (v) + beta))
#define E_RELU(T, M, v) ((v) < (T)0 ? (T)0 : (v))
#define E_LEAKYRELU(T, M, v) ((v) < (T)0 ? alpha * (v) : (v))
#define E_ELU(T, M, v) ((v) < (T)0 ? alpha * M(expm1)(v) : (v))
#define E_SELU(T, M, v) ((v) > (T)0 ? gamma * (v) : gamma * alpha * M(expm1)(v))
/* max(0,x) + min(0, alpha*(exp(x/alpha)-1)) for alpha > 0, as a branch so NaN passes. */
#define E_CELU(T, M, v) ((v) > (T)0 ? (v) : alpha * M(expm1)((v) / alpha))
#define E_THRESHOLDEDRELU(T, M, v) ((v) > alpha ? (v) : (T)0)
#define SOFTPLUS(T, M, v) (M(fmax)((v), (T)0) + M(log1p)(M(exp)(-M(fabs)(v))))
#define E_SOFTPLUS(T, M, v) (isnan(v) ? (v) : SOFTPLUS(T, M, v))
#define E_SOFTSIGN(T, M, v) ((v) / ((T)1 + M(fabs)(v)))
#define E_GELU(T, M, v) ((T)0.5 * (v) * ((T)1 + M(erf)((v) * (T)0.70710678118654752440)))
#define E_GELU_TANH(T, M, v)                                                                   \
    ((T)0.5 * (v) *                                                                            \
     ((T)1 + M(tanh)((T)0.79788456080286535588 * ((v) + (T)0.044715 * (v) * (v) * (v)))))
#define E_MISH(T, M, v) (isnan(v) ? (v) : (v) * M(tanh)(SOFTPLUS(T, M, v)))
#define E_SWISH(T, M, v) ((v) / ((T)1 + M(exp)(-alpha * (v))))
#define E_SIGN(T, M, v) ((v) > (T)0 ? (T)1 : (v) < (T)0 ? (T)-1 : (v))
#define E_SHRINK(T, M, v) ((v) < -alpha ? (v) + beta : (v) > alpha ? (v) - beta : (T)0)

DEF_F64_OP(abs, E_ABS)
DEF_F64_OP(neg, E_NEG)
DEF_F64_OP(floor, E_FLOOR)
DEF_F64_OP(ceil, E_CEIL)
DEF_F64_OP(round, E_ROUND)
DEF_F64_OP(sqrt, E_SQRT)
DEF_F64_OP(reciprocal, E_RECIPROCAL)
DEF_F64_OP(exp, E_EXP)
DEF_FLOAT_OP(log, E_LOG)
DEF_FLOAT_OP(sin, E_SIN)
DEF_FLOAT_OP(cos, E_COS)
DEF_FLOAT_OP(tan, E_TAN)
DEF_FLOAT_OP(asin, E_ASIN)
DEF_FLOAT_OP(acos, E_ACOS)
DEF_FLOAT_OP(atan, E_ATAN)
DEF_FLOAT_OP(sinh, E_SINH)
DEF_FLOAT_OP(cosh, E_COSH)
DEF_F64_OP(tanh, E_TANH)
DEF_FLOAT_OP(asinh, E_ASINH)
DEF_FLOAT_OP(acosh, E_ACOSH)
DEF_FLOAT_OP(atanh, E_ATANH)
DEF_F64_OP(erf, E_ERF)
DEF_F64_OP(sigmoid, E_SIGMOID)
DEF_F64_OP(hardsigmoid, E_HARDSIGMOID)
DEF_F64_OP(hardswish, E_HARDSWISH)
DEF_F64_OP(relu, E_RELU)
DEF_F64_OP(leakyrelu, E_LEAKYRELU)
DEF_FLOAT_OP(elu, E_ELU)
DEF_FLOAT_OP(selu, E_SELU)
DEF_FLOAT_OP(celu, E_CELU)
DEF_F64_OP(thresholdedrelu, E_THRESHOLDEDRELU)
DEF_FLOAT_OP(softplus, E_SOFTPLUS)
DEF_F64_OP(softsign, E_SOFTSIGN)
DEF_F64_OP(gelu, E_GELU)
DEF_F64_OP(gelu_tanh, E_GELU_TANH)
DEF_FLOAT_OP(mish, E_MISH)
DEF_FLOAT_OP(swish, E_SWISH)
DEF_F64_OP(sign, E_SIGN)
DEF_F64_OP(shrink, E_SHRINK)

/* Float loops at full vector width (cpu/eltwise.h, src/cpu/isa/eltwise.c): the same
 * expressions as the E_* above, except that Exp, Tanh, Sigmoid, Erf and Gelu use the vmath
 * cores (accuracy in cpu/vmath.h: exp within 2 ulp, erf within 2e-7 absolute, tanh and
 * sigmoid within 1e-6 relative; NaN and +-inf give what libm gives). The rest (Log, Elu,
 * Selu, Celu, Softplus, Mish, Swish, trigonometry) stays on libm, a loop per op above. */
#define EW_F32(name, OP)                                                                       \
    static void name##_f32(size_t n, const float *x, float *y, const struct uparams *p)       \
    {                                                                                          \
        kiln_ew_unary_f32(OP, x, y, n, (float)p->alpha, (float)p->beta);                      \
    }

EW_F32(abs, KILN_EW_ABS)
EW_F32(neg, KILN_EW_NEG)
EW_F32(floor, KILN_EW_FLOOR)
EW_F32(ceil, KILN_EW_CEIL)
EW_F32(round, KILN_EW_ROUND)
EW_F32(sqrt, KILN_EW_SQRT)
EW_F32(reciprocal, KILN_EW_RECIPROCAL)
EW_F32(exp, KILN_EW_EXP)
EW_F32(tanh, KILN_EW_TANH)
EW_F32(erf, KILN_EW_ERF)
EW_F32(sigmoid, KILN_EW_SIGMOID)
EW_F32(hardsigmoid, KILN_EW_HARDSIGMOID)
EW_F32(hardswish, KILN_EW_HARDSWISH)
EW_F32(relu, KILN_EW_RELU)
EW_F32(leakyrelu, KILN_EW_LEAKYRELU)
EW_F32(thresholdedrelu, KILN_EW_THRESHOLDEDRELU)
EW_F32(softsign, KILN_EW_SOFTSIGN)
EW_F32(sign, KILN_EW_SIGN)
EW_F32(shrink, KILN_EW_SHRINK)
EW_F32(gelu, KILN_EW_GELU)
EW_F32(gelu_tanh, KILN_EW_GELU_TANH)

/* ------------------------------------------------------------------ integer loops */

/* Runs the statements with T (and U, its unsigned twin) bound to the C type of dt;
 * `ok` ends false when dt is not in the list. */
#define CASE_T(dt_, T_, U_, ...)                                                               \
    case dt_: {                                                                                \
        typedef T_ T;                                                                          \
        typedef U_ U;                                                                          \
        (void)sizeof(U);                                                                       \
        __VA_ARGS__;                                                                           \
    } break;
#define FOR_SIGNED(dt, ok, ...)                                                                \
    switch (dt) {                                                                              \
        CASE_T(KILN_DTYPE_I8, int8_t, uint8_t, __VA_ARGS__)                                    \
        CASE_T(KILN_DTYPE_I16, int16_t, uint16_t, __VA_ARGS__)                                 \
        CASE_T(KILN_DTYPE_I32, int32_t, uint32_t, __VA_ARGS__)                                 \
        CASE_T(KILN_DTYPE_I64, int64_t, uint64_t, __VA_ARGS__)                                 \
    default: ok = false; break;                                                                \
    }
#define FOR_UNSIGNED(dt, ok, ...)                                                              \
    switch (dt) {                                                                              \
        CASE_T(KILN_DTYPE_U8, uint8_t, uint8_t, __VA_ARGS__)                                   \
        CASE_T(KILN_DTYPE_U16, uint16_t, uint16_t, __VA_ARGS__)                                \
        CASE_T(KILN_DTYPE_U32, uint32_t, uint32_t, __VA_ARGS__)                                \
        CASE_T(KILN_DTYPE_U64, uint64_t, uint64_t, __VA_ARGS__)                                \
    default: ok = false; break;                                                                \
    }

static bool is_signed_int(kiln_dtype dt)
{
    return dt == KILN_DTYPE_I8 || dt == KILN_DTYPE_I16 || dt == KILN_DTYPE_I32 ||
           dt == KILN_DTYPE_I64;
}

/* Signed negation through the unsigned type: wraps for the minimum value instead of UB. */
#define WRAP_NEG(T, U, v) ((T)(U)((U)0 - (U)(v)))

static bool abs_int(kiln_dtype dt, size_t n, const void *xv, void *yv, const struct uparams *p)
{
    bool ok = true;
    (void)p;
    if (is_signed_int(dt)) {
        FOR_SIGNED(dt, ok, const T *x = xv; T *y = yv;
                   for (size_t i = 0; i < n; i++) y[i] = x[i] < 0 ? WRAP_NEG(T, U, x[i]) : x[i])
    } else {
        FOR_UNSIGNED(dt, ok, if (n && yv != xv) memcpy(yv, xv, n * sizeof(T))) /* in place: done */
    }
    return ok;
}

static bool neg_int(kiln_dtype dt, size_t n, const void *xv, void *yv, const struct uparams *p)
{
    bool ok = true;
    (void)p;
    FOR_SIGNED(dt, ok, const T *x = xv; T *y = yv;
               for (size_t i = 0; i < n; i++) y[i] = WRAP_NEG(T, U, x[i]))
    return ok;
}

static bool sign_int(kiln_dtype dt, size_t n, const void *xv, void *yv, const struct uparams *p)
{
    bool ok = true;
    (void)p;
    if (is_signed_int(dt)) {
        FOR_SIGNED(dt, ok, const T *x = xv; T *y = yv;
                   for (size_t i = 0; i < n; i++) y[i] = (T)((x[i] > 0) - (x[i] < 0)))
    } else {
        FOR_UNSIGNED(dt, ok, const T *x = xv; T *y = yv;
                     for (size_t i = 0; i < n; i++) y[i] = (T)(x[i] != 0))
    }
    return ok;
}

static bool relu_int(kiln_dtype dt, size_t n, const void *xv, void *yv, const struct uparams *p)
{
    bool ok = true;
    (void)p;
    FOR_SIGNED(dt, ok, const T *x = xv; T *y = yv;
               for (size_t i = 0; i < n; i++) y[i] = x[i] < 0 ? 0 : x[i])
    return ok;
}

static bool bitwise_not_int(kiln_dtype dt, size_t n, const void *xv, void *yv,
                            const struct uparams *p)
{
    bool ok = true;
    (void)p;
    if (is_signed_int(dt)) {
        FOR_SIGNED(dt, ok, const T *x = xv; T *y = yv;
                   for (size_t i = 0; i < n; i++) y[i] = (T)~(U)x[i])
    } else {
        FOR_UNSIGNED(dt, ok, const T *x = xv; T *y = yv;
                     for (size_t i = 0; i < n; i++) y[i] = (T)~x[i])
    }
    return ok;
}

/* Double of an integer element; the caller has checked dt. */
static double int_get(kiln_dtype dt, const void *x, size_t i)
{
    switch (dt) {
    case KILN_DTYPE_I8: return ((const int8_t *)x)[i];
    case KILN_DTYPE_I16: return ((const int16_t *)x)[i];
    case KILN_DTYPE_I32: return ((const int32_t *)x)[i];
    case KILN_DTYPE_I64: return (double)((const int64_t *)x)[i];
    case KILN_DTYPE_U8: return ((const uint8_t *)x)[i];
    case KILN_DTYPE_U16: return ((const uint16_t *)x)[i];
    case KILN_DTYPE_U32: return ((const uint32_t *)x)[i];
    default: return (double)((const uint64_t *)x)[i];
    }
}

static bool is_plain_int(kiln_dtype dt)
{
    switch (dt) {
    case KILN_DTYPE_I8: case KILN_DTYPE_I16: case KILN_DTYPE_I32: case KILN_DTYPE_I64:
    case KILN_DTYPE_U8: case KILN_DTYPE_U16: case KILN_DTYPE_U32: case KILN_DTYPE_U64:
        return true;
    default:
        return false;
    }
}

/* Shrink on integers: computed in double (the bias is a float attribute) and stored back
 * saturating to the type's range. */
static bool shrink_int(kiln_dtype dt, size_t n, const void *xv, void *yv, const struct uparams *p)
{
    if (!is_plain_int(dt)) return false;
    struct kiln_tensor out = {.dtype = dt, .rank = 1, .dims = {(int64_t)n}, .data = yv};
    for (size_t i = 0; i < n; i++) {
        double v = int_get(dt, xv, i);
        double r = v < -p->alpha ? v + p->beta : v > p->alpha ? v - p->beta : 0.0;
        kiln_tensor_set_f64(&out, i, r);
    }
    return true;
}

/* ------------------------------------------------------------------ drivers */

#define HALF_CHUNK 256

/* float16/bfloat16 through the float32 loop, a chunk at a time. */
static void run_half(f32_loop *fn, kiln_dtype dt, size_t n, const uint16_t *x, uint16_t *y,
                     const struct uparams *p)
{
    float buf[HALF_CHUNK];
    for (size_t i = 0; i < n; i += HALF_CHUNK) {
        size_t m = n - i < HALF_CHUNK ? n - i : HALF_CHUNK;
        kiln_half_load_f32(dt, x + i, m, buf);
        fn(m, buf, buf, p);
        kiln_half_store_f32(dt, buf, m, y + i);
    }
}

/* Element-wise work is split over the session's threads in blocks of PAR_BLOCK elements,
 * PAR_GRAIN blocks to a chunk (so a chunk is >= 16K elements and smaller tensors run
 * inline). Block starts are multiples of PAR_BLOCK, so every element goes through the same
 * loop code (the same HALF_CHUNK pieces) as in one pass, and the float32 loops compute each
 * element alone: results do not depend on the thread count. */
#define PAR_BLOCK 4096
#define PAR_GRAIN 4

static size_t par_blocks(size_t n) { return (n + PAR_BLOCK - 1) / PAR_BLOCK; }

/* The element range [*lo, *hi) of blocks [begin, end) of n elements. */
static void par_range(size_t n, size_t begin, size_t end, size_t *lo, size_t *hi)
{
    *lo = begin * PAR_BLOCK;
    *hi = end * PAR_BLOCK < n ? end * PAR_BLOCK : n;
}

struct unary_job {
    const struct unary_def *d;
    const struct uparams *p;
    kiln_dtype dt;
    size_t n, es;
    const char *x;
    char *y;
};

static void unary_chunk(void *ctx, size_t begin, size_t end, int worker)
{
    const struct unary_job *j = ctx;
    size_t lo, hi;
    (void)worker;
    par_range(j->n, begin, end, &lo, &hi);
    const void *x = j->x + lo * j->es;
    void *y = j->y + lo * j->es;
    size_t m = hi - lo;
    switch (j->dt) {
    case KILN_DTYPE_F32: j->d->f32(m, x, y, j->p); break;
    case KILN_DTYPE_F64: j->d->f64(m, x, y, j->p); break;
    case KILN_DTYPE_F16:
    case KILN_DTYPE_BF16: run_half(j->d->f32, j->dt, m, x, y, j->p); break;
    default: (void)j->d->ints(j->dt, m, x, y, j->p); break; /* dt checked by the caller */
    }
}

/* Runs one element-wise op: output 0 gets input 0's dtype and shape. */
static kiln_status run_unary(struct kiln_kctx *k, const struct unary_def *d,
                             const struct uparams *p)
{
    const struct kiln_tensor *x;
    struct kiln_tensor *y;
    KILN_TRY(kiln_in_req(k, 0, &x));
    kiln_dtype dt = x->dtype;
    bool int_ok = d->ints && is_plain_int(dt);
    if (!kiln_dtype_is_real_float(dt) && !int_ok)
        return kiln_kfail(k, KILN_E_UNSUPPORTED,
                          "input 0 is %s; expected float, double, float16 or bfloat16%s%s",
                          kiln_dtype_name(dt), d->ints ? " or " : "",
                          d->ints ? d->int_types : "");
    /* An integer loop says whether it takes dt; ask with no elements. */
    if (!kiln_dtype_is_real_float(dt) && !d->ints(dt, 0, x->data, NULL, p))
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "input 0 is %s; expected float types or %s",
                          kiln_dtype_name(dt), d->int_types);
    KILN_TRY(kiln_out_tensor_raw(k, 0, dt, x->rank, x->dims, &y));
    size_t n = kiln_tensor_numel(x);
    struct unary_job j = {d, p, dt, n, kiln_dtype_size(dt), x->data, y->data};
    kiln_pool_for(k->pool, par_blocks(n), PAR_GRAIN, unary_chunk, &j);
    return KILN_OK;
}

#define SIGNED_NAMES "int8, int16, int32 or int64"
#define INT_NAMES "8- to 64-bit integers"

/* The descriptor of each float op (and its integer loop where the spec allows ints). */
#define FLOAT_OP(name, ints_fn, int_names)                                                     \
    static const struct unary_def name##_def = {name##_f32, name##_f64, ints_fn, int_names};

FLOAT_OP(abs, abs_int, INT_NAMES)
FLOAT_OP(neg, neg_int, SIGNED_NAMES)
FLOAT_OP(sign, sign_int, INT_NAMES)
FLOAT_OP(relu, relu_int, SIGNED_NAMES)
FLOAT_OP(shrink, shrink_int, INT_NAMES)
FLOAT_OP(floor, NULL, NULL)
FLOAT_OP(ceil, NULL, NULL)
FLOAT_OP(round, NULL, NULL)
FLOAT_OP(sqrt, NULL, NULL)
FLOAT_OP(reciprocal, NULL, NULL)
FLOAT_OP(exp, NULL, NULL)
FLOAT_OP(log, NULL, NULL)
FLOAT_OP(sin, NULL, NULL)
FLOAT_OP(cos, NULL, NULL)
FLOAT_OP(tan, NULL, NULL)
FLOAT_OP(asin, NULL, NULL)
FLOAT_OP(acos, NULL, NULL)
FLOAT_OP(atan, NULL, NULL)
FLOAT_OP(sinh, NULL, NULL)
FLOAT_OP(cosh, NULL, NULL)
FLOAT_OP(tanh, NULL, NULL)
FLOAT_OP(asinh, NULL, NULL)
FLOAT_OP(acosh, NULL, NULL)
FLOAT_OP(atanh, NULL, NULL)
FLOAT_OP(erf, NULL, NULL)
FLOAT_OP(sigmoid, NULL, NULL)
FLOAT_OP(hardsigmoid, NULL, NULL)
FLOAT_OP(hardswish, NULL, NULL)
FLOAT_OP(leakyrelu, NULL, NULL)
FLOAT_OP(elu, NULL, NULL)
FLOAT_OP(selu, NULL, NULL)
FLOAT_OP(celu, NULL, NULL)
FLOAT_OP(thresholdedrelu, NULL, NULL)
FLOAT_OP(softplus, NULL, NULL)
FLOAT_OP(softsign, NULL, NULL)
FLOAT_OP(gelu, NULL, NULL)
FLOAT_OP(gelu_tanh, NULL, NULL)
FLOAT_OP(mish, NULL, NULL)
FLOAT_OP(swish, NULL, NULL)

/* Ops without attributes. */
#define PLAIN_RUN(name)                                                                        \
    static kiln_status run_##name(struct kiln_kctx *k)                                         \
    {                                                                                          \
        static const struct uparams p = {0, 0, 0};                                             \
        return run_unary(k, &name##_def, &p);                                                  \
    }

PLAIN_RUN(abs)
PLAIN_RUN(neg)
PLAIN_RUN(sign)
PLAIN_RUN(relu)
PLAIN_RUN(floor)
PLAIN_RUN(ceil)
PLAIN_RUN(round)
PLAIN_RUN(sqrt)
PLAIN_RUN(reciprocal)
PLAIN_RUN(exp)
PLAIN_RUN(log)
PLAIN_RUN(sin)
PLAIN_RUN(cos)
PLAIN_RUN(tan)
PLAIN_RUN(asin)
PLAIN_RUN(acos)
PLAIN_RUN(atan)
PLAIN_RUN(sinh)
PLAIN_RUN(cosh)
PLAIN_RUN(tanh)
PLAIN_RUN(asinh)
PLAIN_RUN(acosh)
PLAIN_RUN(atanh)
PLAIN_RUN(erf)
PLAIN_RUN(sigmoid)
PLAIN_RUN(softplus)
PLAIN_RUN(softsign)
PLAIN_RUN(mish)

/* HardSwish's alpha 1/6 and beta 1/2 are constants of the spec, not attributes. */
static kiln_status run_hardswish(struct kiln_kctx *k)
{
    static const struct uparams p = {1.0 / 6.0, 0.5, 0};
    return run_unary(k, &hardswish_def, &p);
}

/* ------------------------------------------------------------------ prepared state */

/* An element-wise op with attributes: its loops (Gelu picks one of two) and parameters. */
struct ustate {
    const struct unary_def *d;
    struct uparams p;
};

static kiln_status decode_hardsigmoid(struct kiln_kctx *k, struct ustate *s)
{
    *s = (struct ustate){&hardsigmoid_def,
                         {kiln_attr_f(k, "alpha", 0.2f), kiln_attr_f(k, "beta", 0.5f), 0}};
    return KILN_OK;
}

static kiln_status decode_leakyrelu(struct kiln_kctx *k, struct ustate *s)
{
    *s = (struct ustate){&leakyrelu_def, {kiln_attr_f(k, "alpha", 0.01f), 0, 0}};
    return KILN_OK;
}

static kiln_status decode_elu(struct kiln_kctx *k, struct ustate *s)
{
    *s = (struct ustate){&elu_def, {kiln_attr_f(k, "alpha", 1.0f), 0, 0}};
    return KILN_OK;
}

static kiln_status decode_selu(struct kiln_kctx *k, struct ustate *s)
{
    *s = (struct ustate){&selu_def,
                         {kiln_attr_f(k, "alpha", 1.67326319217681884765625f), 0,
                          kiln_attr_f(k, "gamma", 1.05070102214813232421875f)}};
    return KILN_OK;
}

static kiln_status decode_celu(struct kiln_kctx *k, struct ustate *s)
{
    *s = (struct ustate){&celu_def, {kiln_attr_f(k, "alpha", 1.0f), 0, 0}};
    if (s->p.alpha == 0) return kiln_kfail(k, KILN_E_INVALID_MODEL, "attribute alpha is 0");
    return KILN_OK;
}

static kiln_status decode_thresholdedrelu(struct kiln_kctx *k, struct ustate *s)
{
    *s = (struct ustate){&thresholdedrelu_def, {kiln_attr_f(k, "alpha", 1.0f), 0, 0}};
    return KILN_OK;
}

static kiln_status decode_shrink(struct kiln_kctx *k, struct ustate *s)
{
    *s = (struct ustate){&shrink_def,
                         {kiln_attr_f(k, "lambd", 0.5f), kiln_attr_f(k, "bias", 0.0f), 0}};
    return KILN_OK;
}

static kiln_status decode_swish(struct kiln_kctx *k, struct ustate *s)
{
    *s = (struct ustate){&swish_def, {kiln_attr_f(k, "alpha", 1.0f), 0, 0}};
    return KILN_OK;
}

static kiln_status decode_gelu(struct kiln_kctx *k, struct ustate *s)
{
    const char *approx = kiln_attr_s(k, "approximate", "none");
    *s = (struct ustate){&gelu_def, {0, 0, 0}};
    if (strcmp(approx, "tanh") == 0) s->d = &gelu_tanh_def;
    else if (strcmp(approx, "none") != 0)
        return kiln_kfail(k, KILN_E_INVALID_MODEL,
                          "attribute approximate is '%s'; expected 'none' or 'tanh'", approx);
    return KILN_OK;
}

/* run and prepare of an op whose ustate decode_<name> makes. */
#define ATTR_OP(name)                                                                          \
    static kiln_status run_##name(struct kiln_kctx *k)                                         \
    {                                                                                          \
        struct ustate dec;                                                                     \
        const struct ustate *s;                                                                \
        KILN_STATE_OR_DECODE(k, decode_##name, dec, s);                                             \
        return run_unary(k, s->d, &s->p);                                                      \
    }                                                                                          \
    KILN_PREPARE_WITH(prep_##name, struct ustate, decode_##name)

ATTR_OP(hardsigmoid)
ATTR_OP(leakyrelu)
ATTR_OP(elu)
ATTR_OP(selu)
ATTR_OP(celu)
ATTR_OP(thresholdedrelu)
ATTR_OP(shrink)
ATTR_OP(swish)
ATTR_OP(gelu)

/* ------------------------------------------------------------------ Clip */

static void clip_f64(size_t n, const double *x, double *y, double lo, double hi)
{
    for (size_t i = 0; i < n; i++) {
        double v = x[i];
        v = v < lo ? lo : v;
        y[i] = v > hi ? hi : v;
    }
}

/* Reads optional bound input i (opset 11+): absent gives false; otherwise it must be a
 * one-element tensor of dtype dt. */
static kiln_status clip_bound(struct kiln_kctx *k, size_t i, kiln_dtype dt,
                              const struct kiln_tensor **b)
{
    *b = kiln_in(k, i);
    if (!*b) return KILN_OK;
    if ((*b)->dtype != dt)
        return kiln_kfail(k, KILN_E_INVALID_MODEL,
                          "input %zu ('%s') is %s; expected %s like input 0", i,
                          i == 1 ? "min" : "max", kiln_dtype_name((*b)->dtype),
                          kiln_dtype_name(dt));
    if (kiln_tensor_numel(*b) != 1) {
        char sb[128];
        return kiln_kfail(k, KILN_E_INVALID_MODEL,
                          "input %zu ('%s') has shape %s; expected a scalar", i,
                          i == 1 ? "min" : "max",
                          kiln_shape_str((*b)->rank, (*b)->dims, sb, sizeof sb));
    }
    return KILN_OK;
}

struct clip_job {
    kiln_dtype dt;
    size_t n, es;
    const char *x;
    char *y;
    double lo, hi;                         /* float bounds */
    const struct kiln_tensor *bmin, *bmax; /* integer bounds (NULL: the type's limits) */
};

/* Clip of blocks [begin, end) (see PAR_BLOCK). */
static void clip_chunk(void *ctx, size_t begin, size_t end, int worker)
{
    const struct clip_job *j = ctx;
    size_t lo, hi;
    (void)worker;
    par_range(j->n, begin, end, &lo, &hi);
    const void *xv = j->x + lo * j->es;
    void *yv = j->y + lo * j->es;
    size_t n = hi - lo;
    const kiln_dtype dt = j->dt;
    const struct kiln_tensor *bmin = j->bmin, *bmax = j->bmax;
    switch (dt) {
    case KILN_DTYPE_F32:
        kiln_ew_unary_f32(KILN_EW_CLIP, xv, yv, n, (float)j->lo, (float)j->hi);
        break;
    case KILN_DTYPE_F64: clip_f64(n, xv, yv, j->lo, j->hi); break;
    case KILN_DTYPE_F16:
    case KILN_DTYPE_BF16: {
        /* Bounds and elements are float16/bfloat16 values, so clipping in float32 and
         * converting back is exact. */
        const uint16_t *xs = xv;
        uint16_t *ys = yv;
        float buf[HALF_CHUNK];
        for (size_t i = 0; i < n; i += HALF_CHUNK) {
            size_t m = n - i < HALF_CHUNK ? n - i : HALF_CHUNK;
            kiln_half_load_f32(dt, xs + i, m, buf);
            kiln_ew_unary_f32(KILN_EW_CLIP, buf, buf, m, (float)j->lo, (float)j->hi);
            kiln_half_store_f32(dt, buf, m, ys + i);
        }
        break;
    }
    default: {
        bool ok = true;
#define CLIP_INT(TMIN, TMAX)                                                                   \
    const T *xs = xv;                                                                          \
    T *ys = yv;                                                                                \
    T l = bmin ? *(const T *)bmin->data : (T)(TMIN);                                           \
    T h = bmax ? *(const T *)bmax->data : (T)(TMAX);                                           \
    for (size_t i = 0; i < n; i++) {                                                           \
        T v = xs[i] < l ? l : xs[i];                                                           \
        ys[i] = v > h ? h : v;                                                                 \
    }
        if (is_signed_int(dt)) {
            FOR_SIGNED(dt, ok, CLIP_INT(((U)1 << (sizeof(T) * 8 - 1)), ((U)-1 >> 1)))
        } else {
            FOR_UNSIGNED(dt, ok, CLIP_INT(0, (U)-1))
        }
#undef CLIP_INT
        (void)ok;
        break;
    }
    }
}

/* Clip's attribute bounds (opsets 1 and 6; 11+ reads inputs, and keeps these defaults). */
struct clip_state {
    double lo, hi;
};

static kiln_status decode_clip(struct kiln_kctx *k, struct clip_state *s)
{
    s->lo = -FLT_MAX;
    s->hi = FLT_MAX;
    if (k->opset < 11) {
        s->lo = kiln_attr_f(k, "min", -FLT_MAX);
        s->hi = kiln_attr_f(k, "max", FLT_MAX);
    }
    return KILN_OK;
}

KILN_PREPARE_WITH(prep_clip, struct clip_state, decode_clip)

static kiln_status run_clip(struct kiln_kctx *k)
{
    const struct kiln_tensor *x, *bmin = NULL, *bmax = NULL;
    struct kiln_tensor *y;
    struct clip_state dec;
    const struct clip_state *cs;
    KILN_STATE_OR_DECODE(k, decode_clip, dec, cs);
    KILN_TRY(kiln_in_req(k, 0, &x));
    kiln_dtype dt = x->dtype;
    double lo = cs->lo, hi = cs->hi;
    if (k->opset < 11) {
        if (!kiln_dtype_is_real_float(dt))
            return kiln_kfail(k, KILN_E_UNSUPPORTED,
                              "input 0 is %s; expected float, double, float16 or bfloat16",
                              kiln_dtype_name(dt));
    } else {
        if (!kiln_dtype_is_real_float(dt) && !is_plain_int(dt))
            return kiln_kfail(k, KILN_E_UNSUPPORTED,
                              "input 0 is %s; expected a float or 8- to 64-bit integer type",
                              kiln_dtype_name(dt));
        KILN_TRY(clip_bound(k, 1, dt, &bmin));
        KILN_TRY(clip_bound(k, 2, dt, &bmax));
        if (kiln_dtype_is_real_float(dt)) {
            lo = bmin ? kiln_tensor_get_f64(bmin, 0) : dt == KILN_DTYPE_F64 ? -DBL_MAX : -INFINITY;
            hi = bmax ? kiln_tensor_get_f64(bmax, 0) : dt == KILN_DTYPE_F64 ? DBL_MAX : INFINITY;
        }
    }
    KILN_TRY(kiln_out_tensor_raw(k, 0, dt, x->rank, x->dims, &y));
    size_t n = kiln_tensor_numel(x);
    struct clip_job j = {dt, n, kiln_dtype_size(dt), x->data, y->data, lo, hi, bmin, bmax};
    kiln_pool_for(k->pool, par_blocks(n), PAR_GRAIN, clip_chunk, &j);
    return KILN_OK;
}

/* ------------------------------------------------------------------ predicates */

/* IsInf's signs (IsNaN has no attributes and passes both true). */
struct class_state {
    bool pos, neg;
};

static kiln_status decode_isinf(struct kiln_kctx *k, struct class_state *s)
{
    s->pos = kiln_attr_i(k, "detect_positive", 1) != 0;
    s->neg = kiln_attr_i(k, "detect_negative", 1) != 0;
    return KILN_OK;
}

KILN_PREPARE_WITH(prep_isinf, struct class_state, decode_isinf)

/* IsNaN / IsInf: any float type (the float8 family included) to bool. In place (float8 to
 * bool, both one byte), each chunk is converted to double before its results are stored. */
static kiln_status run_class(struct kiln_kctx *k, bool want_nan, const struct class_state *cs)
{
    const struct kiln_tensor *x;
    struct kiln_tensor *y;
    KILN_TRY(kiln_in_req(k, 0, &x));
    kiln_dtype dt = x->dtype;
    if (!kiln_dtype_is_real_float(dt) && !kiln_f8_is_narrow(dt))
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "input 0 is %s; expected a float type",
                          kiln_dtype_name(dt));
    bool pos = cs->pos, neg = cs->neg;
    KILN_TRY(kiln_out_tensor(k, 0, KILN_DTYPE_BOOL, x->rank, x->dims, &y));
    size_t n = kiln_tensor_numel(x);
    uint8_t *out = y->data;
    double buf[HALF_CHUNK];
    for (size_t i0 = 0; i0 < n; i0 += HALF_CHUNK) {
        size_t m = n - i0 < HALF_CHUNK ? n - i0 : HALF_CHUNK;
        kiln_to_f64_n(dt, x->data, i0, m, buf);
        for (size_t j = 0; j < m; j++) {
            double v = buf[j];
            if (want_nan)
                out[i0 + j] = isnan(v) != 0;
            else
                out[i0 + j] = isinf(v) && (v > 0 ? pos : neg);
        }
    }
    return KILN_OK;
}

static kiln_status run_isnan(struct kiln_kctx *k)
{
    static const struct class_state both = {true, true};
    return run_class(k, true, &both);
}

static kiln_status run_isinf(struct kiln_kctx *k)
{
    struct class_state dec;
    const struct class_state *cs;
    KILN_STATE_OR_DECODE(k, decode_isinf, dec, cs);
    return run_class(k, false, cs);
}

/* ------------------------------------------------------------------ logic, bits, identity */

static kiln_status run_not(struct kiln_kctx *k)
{
    const struct kiln_tensor *x;
    struct kiln_tensor *y;
    KILN_TRY(kiln_in_req(k, 0, &x));
    if (x->dtype != KILN_DTYPE_BOOL)
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "input 0 is %s; expected bool",
                          kiln_dtype_name(x->dtype));
    KILN_TRY(kiln_out_tensor(k, 0, KILN_DTYPE_BOOL, x->rank, x->dims, &y));
    size_t n = kiln_tensor_numel(x);
    const uint8_t *xs = x->data;
    uint8_t *ys = y->data;
    for (size_t i = 0; i < n; i++) ys[i] = xs[i] == 0;
    return KILN_OK;
}

static kiln_status run_bitwise_not(struct kiln_kctx *k)
{
    const struct kiln_tensor *x;
    struct kiln_tensor *y;
    KILN_TRY(kiln_in_req(k, 0, &x));
    if (!is_plain_int(x->dtype))
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "input 0 is %s; expected an integer type",
                          kiln_dtype_name(x->dtype));
    KILN_TRY(kiln_out_tensor(k, 0, x->dtype, x->rank, x->dims, &y));
    bitwise_not_int(x->dtype, kiln_tensor_numel(x), x->data, y->data, NULL);
    return KILN_OK;
}

/* A tensor (not string) goes into output 0 through kiln_out_tensor_raw, so a planned output
 * lands in its arena place; when the planner put it over the input (in place) the data is
 * already there. Other values are cloned. */
static kiln_status run_identity(struct kiln_kctx *k)
{
    const struct kiln_value *v = kiln_in_value(k, 0);
    struct kiln_value *copy;
    kiln_err e;
    if (!v) return kiln_kfail(k, KILN_E_INVALID_MODEL, "required input 0 is missing");
    if (v->kind == KILN_VALUE_TENSOR && v->t.dtype != KILN_DTYPE_STRING) {
        const struct kiln_tensor *x = &v->t;
        struct kiln_tensor *y;
        KILN_TRY(kiln_out_tensor_raw(k, 0, x->dtype, x->rank, x->dims, &y));
        size_t bytes = kiln_tensor_nbytes(x);
        if (bytes && y->data != x->data) memcpy(y->data, x->data, bytes);
        return KILN_OK;
    }
    kiln_status st = kiln_value_clone(v, &copy, &e);
    if (st) return kiln_kfail(k, st, "%s", e.msg);
    return kiln_out_value(k, 0, copy);
}

/* ------------------------------------------------------------------ table */

const struct kiln_cpu_op kiln_cpu_ops_unary[] = {
    {"Abs", "", 1, 0, run_abs, NULL, KILN_OP_INPLACE},
    {"Neg", "", 1, 0, run_neg, NULL, KILN_OP_INPLACE},
    {"Floor", "", 1, 0, run_floor, NULL, KILN_OP_INPLACE},
    {"Ceil", "", 1, 0, run_ceil, NULL, KILN_OP_INPLACE},
    {"Round", "", 11, 0, run_round, NULL, KILN_OP_INPLACE},
    {"Sqrt", "", 1, 0, run_sqrt, NULL, KILN_OP_INPLACE},
    {"Reciprocal", "", 1, 0, run_reciprocal, NULL, KILN_OP_INPLACE},
    {"Exp", "", 1, 0, run_exp, NULL, KILN_OP_INPLACE},
    {"Log", "", 1, 0, run_log, NULL, KILN_OP_INPLACE},
    {"Sin", "", 7, 0, run_sin, NULL, KILN_OP_INPLACE},
    {"Cos", "", 7, 0, run_cos, NULL, KILN_OP_INPLACE},
    {"Tan", "", 7, 0, run_tan, NULL, KILN_OP_INPLACE},
    {"Asin", "", 7, 0, run_asin, NULL, KILN_OP_INPLACE},
    {"Acos", "", 7, 0, run_acos, NULL, KILN_OP_INPLACE},
    {"Atan", "", 7, 0, run_atan, NULL, KILN_OP_INPLACE},
    {"Sinh", "", 9, 0, run_sinh, NULL, KILN_OP_INPLACE},
    {"Cosh", "", 9, 0, run_cosh, NULL, KILN_OP_INPLACE},
    {"Tanh", "", 1, 0, run_tanh, NULL, KILN_OP_INPLACE},
    {"Asinh", "", 9, 0, run_asinh, NULL, KILN_OP_INPLACE},
    {"Acosh", "", 9, 0, run_acosh, NULL, KILN_OP_INPLACE},
    {"Atanh", "", 9, 0, run_atanh, NULL, KILN_OP_INPLACE},
    {"Sigmoid", "", 1, 0, run_sigmoid, NULL, KILN_OP_INPLACE},
    {"HardSigmoid", "", 1, 0, run_hardsigmoid, prep_hardsigmoid, KILN_OP_INPLACE},
    {"HardSwish", "", 14, 0, run_hardswish, NULL, KILN_OP_INPLACE},
    {"Relu", "", 1, 0, run_relu, NULL, KILN_OP_INPLACE},
    {"LeakyRelu", "", 1, 0, run_leakyrelu, prep_leakyrelu, KILN_OP_INPLACE},
    {"Elu", "", 1, 0, run_elu, prep_elu, KILN_OP_INPLACE},
    {"Selu", "", 1, 0, run_selu, prep_selu, KILN_OP_INPLACE},
    {"Celu", "", 12, 0, run_celu, prep_celu, KILN_OP_INPLACE},
    {"ThresholdedRelu", "", 10, 0, run_thresholdedrelu, prep_thresholdedrelu, KILN_OP_INPLACE},
    {"Softplus", "", 1, 0, run_softplus, NULL, KILN_OP_INPLACE},
    {"Softsign", "", 1, 0, run_softsign, NULL, KILN_OP_INPLACE},
    {"Erf", "", 9, 0, run_erf, NULL, KILN_OP_INPLACE},
    {"Gelu", "", 20, 0, run_gelu, prep_gelu, KILN_OP_INPLACE},
    {"Mish", "", 18, 0, run_mish, NULL, KILN_OP_INPLACE},
    {"Swish", "", 24, 0, run_swish, prep_swish, KILN_OP_INPLACE},
    {"Sign", "", 9, 0, run_sign, NULL, KILN_OP_INPLACE},
    {"IsNaN", "", 9, 0, run_isnan, NULL, KILN_OP_INPLACE},
    {"IsInf", "", 10, 0, run_isinf, prep_isinf, KILN_OP_INPLACE},
    {"Not", "", 1, 0, run_not, NULL, KILN_OP_INPLACE},
    {"BitwiseNot", "", 18, 0, run_bitwise_not, NULL, KILN_OP_INPLACE},
    {"Clip", "", 1, 0, run_clip, prep_clip, KILN_OP_INPLACE},
    {"Shrink", "", 9, 0, run_shrink, prep_shrink, KILN_OP_INPLACE},
    {"Identity", "", 1, 0, run_identity, NULL, KILN_OP_INPLACE},
    {0},
};
