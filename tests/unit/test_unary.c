/* test_unary.c: the CPU kernels of src/cpu/ops/unary.c against a double-precision reference.
 *
 * Every float op runs on random inputs of sizes 0, 1, 7 and 1000 (values drawn from the op's
 * domain) in float32, float64, float16 and bfloat16, and is compared with the spec's formula
 * evaluated in double on the same (already rounded) inputs: float32 within 1e-5 relative,
 * float64 within 1e-10, float16 within 1e-3 and bfloat16 within 8e-3 (about one unit in the
 * last place plus the float32 error); results beyond float16's range must be Inf. Then
 * special values (NaN, +-Inf, -0, round-half-even ties, wrap-around of integer Abs/Neg),
 * the integer paths, Clip in its attribute and input forms, IsNaN/IsInf/Not/BitwiseNot,
 * Identity on a sequence, and the error messages for wrong dtypes and attributes.
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/kernel.h"
#include "test_support.h"

/* ------------------------------------------------------------------ float ops */

typedef double ref_fn(double x, const double *p);

static double r_abs(double x, const double *p) { (void)p; return fabs(x); }
static double r_neg(double x, const double *p) { (void)p; return -x; }
static double r_floor(double x, const double *p) { (void)p; return floor(x); }
static double r_ceil(double x, const double *p) { (void)p; return ceil(x); }
static double r_round(double x, const double *p) { (void)p; return nearbyint(x); }
static double r_sqrt(double x, const double *p) { (void)p; return sqrt(x); }
static double r_recip(double x, const double *p) { (void)p; return 1 / x; }
static double r_exp(double x, const double *p) { (void)p; return exp(x); }
static double r_log(double x, const double *p) { (void)p; return log(x); }
static double r_sin(double x, const double *p) { (void)p; return sin(x); }
static double r_cos(double x, const double *p) { (void)p; return cos(x); }
static double r_tan(double x, const double *p) { (void)p; return tan(x); }
static double r_asin(double x, const double *p) { (void)p; return asin(x); }
static double r_acos(double x, const double *p) { (void)p; return acos(x); }
static double r_atan(double x, const double *p) { (void)p; return atan(x); }
static double r_sinh(double x, const double *p) { (void)p; return sinh(x); }
static double r_cosh(double x, const double *p) { (void)p; return cosh(x); }
static double r_tanh(double x, const double *p) { (void)p; return tanh(x); }
static double r_asinh(double x, const double *p) { (void)p; return asinh(x); }
static double r_acosh(double x, const double *p) { (void)p; return acosh(x); }
static double r_atanh(double x, const double *p) { (void)p; return atanh(x); }
static double r_erf(double x, const double *p) { (void)p; return erf(x); }
static double r_sigmoid(double x, const double *p) { (void)p; return 1 / (1 + exp(-x)); }
static double r_hardsigmoid(double x, const double *p) { return fmax(0, fmin(1, p[0] * x + p[1])); }
static double r_hardswish(double x, const double *p)
{
    (void)p;
    return x * fmax(0, fmin(1, x / 6 + 0.5));
}
static double r_relu(double x, const double *p) { (void)p; return fmax(x, 0); }
static double r_leakyrelu(double x, const double *p) { return x < 0 ? p[0] * x : x; }
static double r_elu(double x, const double *p) { return x < 0 ? p[0] * (exp(x) - 1) : x; }
static double r_selu(double x, const double *p)
{
    return x > 0 ? p[1] * x : p[1] * (p[0] * exp(x) - p[0]);
}
static double r_celu(double x, const double *p)
{
    return fmax(0, x) + fmin(0, p[0] * (exp(x / p[0]) - 1));
}
static double r_thresholdedrelu(double x, const double *p) { return x > p[0] ? x : 0; }
static double r_softplus(double x, const double *p) { (void)p; return log(exp(x) + 1); }
static double r_softsign(double x, const double *p) { (void)p; return x / (1 + fabs(x)); }
static double r_gelu(double x, const double *p)
{
    (void)p;
    return 0.5 * x * (1 + erf(x / sqrt(2.0)));
}
static double r_gelu_tanh(double x, const double *p)
{
    (void)p;
    return 0.5 * x * (1 + tanh(sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
}
static double r_mish(double x, const double *p) { (void)p; return x * tanh(log(1 + exp(x))); }
static double r_swish(double x, const double *p) { return x / (1 + exp(-p[0] * x)); }
static double r_sign(double x, const double *p) { (void)p; return x > 0 ? 1 : x < 0 ? -1 : 0; }
static double r_shrink(double x, const double *p)
{
    return x < -p[0] ? x + p[1] : x > p[0] ? x - p[1] : 0;
}

struct fcase {
    const char *op;
    int opset;
    ref_fn *ref;
    double lo, hi;           /* input range */
    const char *an[2];       /* float attributes (NULL: none) */
    float av[2];
    const char *sname, *sval; /* one string attribute */
    double p[2];             /* the parameters the reference reads (defaults included) */
    bool nan_to_zero;        /* NaN in gives 0 (comparison-based ops) */
};

static const struct fcase fcases[] = {
    {"Abs", 13, r_abs, -10, 10, {0}, {0}, 0, 0, {0}, 0},
    {"Neg", 13, r_neg, -10, 10, {0}, {0}, 0, 0, {0}, 0},
    {"Floor", 13, r_floor, -10, 10, {0}, {0}, 0, 0, {0}, 0},
    {"Ceil", 13, r_ceil, -10, 10, {0}, {0}, 0, 0, {0}, 0},
    {"Round", 22, r_round, -10, 10, {0}, {0}, 0, 0, {0}, 0},
    {"Sqrt", 13, r_sqrt, 0, 100, {0}, {0}, 0, 0, {0}, 0},
    {"Reciprocal", 13, r_recip, 0.1, 10, {0}, {0}, 0, 0, {0}, 0},
    {"Exp", 13, r_exp, -20, 20, {0}, {0}, 0, 0, {0}, 0},
    {"Log", 13, r_log, 0.01, 100, {0}, {0}, 0, 0, {0}, 0},
    {"Sin", 22, r_sin, -5, 5, {0}, {0}, 0, 0, {0}, 0},
    {"Cos", 22, r_cos, -5, 5, {0}, {0}, 0, 0, {0}, 0},
    {"Tan", 22, r_tan, -1.2, 1.2, {0}, {0}, 0, 0, {0}, 0},
    {"Asin", 22, r_asin, -0.99, 0.99, {0}, {0}, 0, 0, {0}, 0},
    {"Acos", 22, r_acos, -0.99, 0.99, {0}, {0}, 0, 0, {0}, 0},
    {"Atan", 22, r_atan, -10, 10, {0}, {0}, 0, 0, {0}, 0},
    {"Sinh", 22, r_sinh, -10, 10, {0}, {0}, 0, 0, {0}, 0},
    {"Cosh", 22, r_cosh, -10, 10, {0}, {0}, 0, 0, {0}, 0},
    {"Tanh", 13, r_tanh, -10, 10, {0}, {0}, 0, 0, {0}, 0},
    {"Asinh", 22, r_asinh, -100, 100, {0}, {0}, 0, 0, {0}, 0},
    {"Acosh", 22, r_acosh, 1.01, 100, {0}, {0}, 0, 0, {0}, 0},
    {"Atanh", 22, r_atanh, -0.9, 0.9, {0}, {0}, 0, 0, {0}, 0},
    {"Erf", 13, r_erf, -4, 4, {0}, {0}, 0, 0, {0}, 0},
    {"Sigmoid", 13, r_sigmoid, -20, 20, {0}, {0}, 0, 0, {0}, 0},
    {"HardSigmoid", 22, r_hardsigmoid, -5, 5, {"alpha", "beta"}, {0.3f, 0.4f}, 0, 0,
     {0.3f, 0.4f}, 0},
    {"HardSigmoid", 6, r_hardsigmoid, -5, 5, {0}, {0}, 0, 0, {0.2f, 0.5f}, 0},
    {"HardSwish", 22, r_hardswish, -5, 5, {0}, {0}, 0, 0, {0}, 0},
    {"Relu", 14, r_relu, -5, 5, {0}, {0}, 0, 0, {0}, 0},
    {"LeakyRelu", 16, r_leakyrelu, -5, 5, {"alpha"}, {0.2f}, 0, 0, {0.2f}, 0},
    {"LeakyRelu", 16, r_leakyrelu, -5, 5, {0}, {0}, 0, 0, {0.01f}, 0},
    {"Elu", 22, r_elu, -5, 5, {"alpha"}, {1.5f}, 0, 0, {1.5f}, 0},
    {"Selu", 22, r_selu, -5, 5, {"alpha", "gamma"}, {2.0f, 3.0f}, 0, 0, {2.0, 3.0}, 0},
    {"Selu", 22, r_selu, -5, 5, {0}, {0}, 0, 0,
     {1.67326319217681884765625, 1.05070102214813232421875}, 0},
    {"Celu", 12, r_celu, -5, 5, {"alpha"}, {2.0f}, 0, 0, {2.0}, 0},
    {"ThresholdedRelu", 22, r_thresholdedrelu, -5, 5, {"alpha"}, {0.5f}, 0, 0, {0.5f}, 1},
    {"Softplus", 22, r_softplus, -20, 20, {0}, {0}, 0, 0, {0}, 0},
    {"Softsign", 22, r_softsign, -20, 20, {0}, {0}, 0, 0, {0}, 0},
    {"Gelu", 20, r_gelu, -5, 5, {0}, {0}, 0, 0, {0}, 0},
    {"Gelu", 20, r_gelu_tanh, -5, 5, {0}, {0}, "approximate", "tanh", {0}, 0},
    {"Mish", 22, r_mish, -10, 10, {0}, {0}, 0, 0, {0}, 0},
    {"Swish", 24, r_swish, -10, 10, {"alpha"}, {0.7f}, 0, 0, {0.7f}, 0},
    {"Sign", 13, r_sign, -5, 5, {0}, {0}, 0, 0, {0}, 0},
    {"Shrink", 9, r_shrink, -5, 5, {"lambd", "bias"}, {0.7f, 0.3f}, 0, 0, {0.7f, 0.3f}, 1},
};

static size_t case_attrs(const struct fcase *c, struct kiln_attr *a)
{
    size_t n = 0;
    for (int i = 0; i < 2; i++)
        if (c->an[i]) a[n++] = attr_f(c->an[i], c->av[i]);
    if (c->sname) a[n++] = attr_s(c->sname, c->sval);
    return n;
}

/* Tolerances per dtype: relative, absolute, and the largest finite value. */
static void tol_of(kiln_dtype dt, double *rel, double *abs_, double *maxf)
{
    switch (dt) {
    case KILN_DTYPE_F32: *rel = 1e-5, *abs_ = 1e-6, *maxf = FLT_MAX; break;
    case KILN_DTYPE_F64: *rel = 1e-10, *abs_ = 1e-12, *maxf = DBL_MAX; break;
    case KILN_DTYPE_F16: *rel = 1e-3, *abs_ = 1e-4, *maxf = 65504; break;
    default: *rel = 8e-3, *abs_ = 1e-4, *maxf = 3.38e38; break;
    }
}

static void check_float_case(const struct fcase *c, kiln_dtype dt, size_t n)
{
    struct kiln_attr attrs[3];
    size_t na = case_attrs(c, attrs);
    struct kiln_value *x = new_vec(dt, n), *y;
    for (size_t i = 0; i < n; i++) kiln_tensor_set_f64(&x->t, i, rng_range(c->lo, c->hi));
    kiln_err err;
    kiln_status st = run_op(c->op, c->opset, attrs, na, &x, 1, &y, &err);
    CHECK(st == KILN_OK, "%s %s n=%zu: %s", c->op, kiln_dtype_name(dt), n, err.msg);
    if (st == KILN_OK) {
        double rel, abs_, maxf;
        tol_of(dt, &rel, &abs_, &maxf);
        CHECK(y->t.dtype == dt && y->t.rank == 1 && y->t.dims[0] == (int64_t)n,
              "%s %s: output is %s rank %d", c->op, kiln_dtype_name(dt),
              kiln_dtype_name(y->t.dtype), y->t.rank);
        int bad = 0;
        for (size_t i = 0; i < n && bad < 3; i++) {
            double xv = kiln_tensor_get_f64(&x->t, i), want = c->ref(xv, c->p);
            double got = kiln_tensor_get_f64(&y->t, i);
            bool ok = fabs(want) > maxf ? isinf(got) && (got > 0) == (want > 0)
                                        : fabs(got - want) <= rel * fabs(want) + abs_;
            if (!ok) bad++;
            CHECK(ok, "%s %s n=%zu x[%zu]=%.9g: got %.9g want %.9g", c->op, kiln_dtype_name(dt),
                  n, i, xv, got, want);
        }
        kiln_value_free(y);
    }
    kiln_value_free(x);
}

/* Runs op on float32 input {v} and returns output element 0 (NaN on failure). */
static double one_f32(const char *op, int opset, const struct kiln_attr *a, size_t na, double v)
{
    struct kiln_value *x = new_vec(KILN_DTYPE_F32, 1), *y;
    ((float *)x->t.data)[0] = (float)v;
    kiln_err err;
    double r = NAN;
    kiln_status st = run_op(op, opset, a, na, &x, 1, &y, &err);
    CHECK(st == KILN_OK, "%s(%g): %s", op, v, err.msg);
    if (st == KILN_OK) {
        r = ((float *)y->t.data)[0];
        kiln_value_free(y);
    }
    kiln_value_free(x);
    return r;
}

#define SAME(got, want)                                                                        \
    ((isnan(want) && isnan(got)) || ((got) == (want) && signbit(got) == signbit(want)))

static void test_special_values(void)
{
    /* NaN propagates through every float op, except those written as x > t ? x : 0. */
    for (size_t c = 0; c < sizeof fcases / sizeof fcases[0]; c++) {
        struct kiln_attr a[3];
        size_t na = case_attrs(&fcases[c], a);
        double got = one_f32(fcases[c].op, fcases[c].opset, a, na, NAN);
        if (fcases[c].nan_to_zero)
            CHECK(got == 0, "%s(NaN) = %g; want 0", fcases[c].op, got);
        else
            CHECK(isnan(got), "%s(NaN) = %g; want NaN", fcases[c].op, got);
    }
    static const struct {
        const char *op;
        int opset;
        double x, want;
    } sv[] = {
        {"Abs", 13, -0.0, 0.0},         {"Abs", 13, -INFINITY, INFINITY},
        {"Neg", 13, 0.0, -0.0},         {"Round", 22, 0.5, 0.0},
        {"Round", 22, 1.5, 2.0},        {"Round", 22, 2.5, 2.0},
        {"Round", 22, -2.5, -2.0},      {"Round", 22, -0.5, -0.0},
        {"Round", 22, 2.6, 3.0},        {"Floor", 13, -0.5, -1.0},
        {"Ceil", 13, -0.5, -0.0},       {"Sqrt", 13, -1.0, NAN},
        {"Sqrt", 13, -0.0, -0.0},       {"Reciprocal", 13, 0.0, INFINITY},
        {"Reciprocal", 13, -0.0, -INFINITY}, {"Exp", 13, -INFINITY, 0.0},
        {"Exp", 13, 100.0, INFINITY},   {"Log", 13, 0.0, -INFINITY},
        {"Log", 13, -1.0, NAN},         {"Tanh", 13, INFINITY, 1.0},
        {"Tanh", 13, -INFINITY, -1.0},  {"Sigmoid", 13, -INFINITY, 0.0},
        {"Sigmoid", 13, INFINITY, 1.0}, {"Sigmoid", 13, -200.0, 0.0},
        {"Relu", 14, -INFINITY, 0.0},   {"Relu", 14, INFINITY, INFINITY},
        {"Softplus", 22, INFINITY, INFINITY}, {"Softplus", 22, -INFINITY, 0.0},
        {"Softplus", 22, 200.0, 200.0}, {"Mish", 22, 200.0, 200.0},
        {"Elu", 22, -INFINITY, -1.0},   {"Sign", 13, -0.0, -0.0},
        {"Sign", 13, -INFINITY, -1.0},  {"HardSigmoid", 22, INFINITY, 1.0},
        {"HardSwish", 22, -4.0, -0.0}, {"HardSwish", 22, 4.0, 4.0},
        {"Erf", 13, INFINITY, 1.0},
        {"Atanh", 22, 1.0, INFINITY},   {"Acosh", 22, 0.5, NAN},
    };
    for (size_t i = 0; i < sizeof sv / sizeof sv[0]; i++) {
        double got = one_f32(sv[i].op, sv[i].opset, NULL, 0, sv[i].x);
        CHECK(SAME(got, sv[i].want), "%s(%g) = %g; want %g", sv[i].op, sv[i].x, got, sv[i].want);
    }
    /* Swish(-Inf) and Elu(-Inf) read their attributes */
    struct kiln_attr a = attr_f("alpha", 2.0f);
    double got = one_f32("Elu", 22, &a, 1, -INFINITY);
    CHECK(got == -2.0, "Elu(-Inf, alpha 2) = %g", got);
    got = one_f32("ThresholdedRelu", 22, NULL, 0, 1.0);
    CHECK(got == 0.0, "ThresholdedRelu(1) with default alpha 1 = %g; want 0 (strict >)", got);
}

/* ------------------------------------------------------------------ integer paths */

static struct kiln_value *int_tensor(kiln_dtype dt, const int64_t *v, size_t n)
{
    struct kiln_value *x = new_vec(dt, n);
    for (size_t i = 0; i < n; i++) {
        switch (dt) {
        case KILN_DTYPE_I8: ((int8_t *)x->t.data)[i] = (int8_t)v[i]; break;
        case KILN_DTYPE_I16: ((int16_t *)x->t.data)[i] = (int16_t)v[i]; break;
        case KILN_DTYPE_I32: ((int32_t *)x->t.data)[i] = (int32_t)v[i]; break;
        case KILN_DTYPE_I64: ((int64_t *)x->t.data)[i] = v[i]; break;
        case KILN_DTYPE_U8: case KILN_DTYPE_BOOL: ((uint8_t *)x->t.data)[i] = (uint8_t)v[i]; break;
        case KILN_DTYPE_U16: ((uint16_t *)x->t.data)[i] = (uint16_t)v[i]; break;
        case KILN_DTYPE_U32: ((uint32_t *)x->t.data)[i] = (uint32_t)v[i]; break;
        case KILN_DTYPE_U64: ((uint64_t *)x->t.data)[i] = (uint64_t)v[i]; break;
        default: break;
        }
    }
    return x;
}

/* Runs op on integer input `in` and compares to `want` (as int64 via the tensor getter). */
static void check_int(const char *op, int opset, kiln_dtype dt, const int64_t *in,
                      const int64_t *want, size_t n, kiln_dtype out_dt)
{
    struct kiln_value *x = int_tensor(dt, in, n), *y;
    kiln_err err;
    kiln_status st = run_op(op, opset, NULL, 0, &x, 1, &y, &err);
    CHECK(st == KILN_OK, "%s %s: %s", op, kiln_dtype_name(dt), err.msg);
    if (st == KILN_OK) {
        CHECK(y->t.dtype == out_dt, "%s %s: output dtype %s", op, kiln_dtype_name(dt),
              kiln_dtype_name(y->t.dtype));
        for (size_t i = 0; i < n; i++) {
            int64_t got = kiln_tensor_get_i64(&y->t, i);
            CHECK(got == want[i], "%s %s [%zu]: got %lld want %lld", op, kiln_dtype_name(dt), i,
                  (long long)got, (long long)want[i]);
        }
        kiln_value_free(y);
    }
    kiln_value_free(x);
}

static void test_int_ops(void)
{
    int64_t i8in[] = {-128, -5, -1, 0, 1, 7, 127};
    int64_t abs8[] = {-128, 5, 1, 0, 1, 7, 127}; /* abs(-128) wraps, as numpy */
    int64_t neg8[] = {-128, 5, 1, 0, -1, -7, -127};
    int64_t sign8[] = {-1, -1, -1, 0, 1, 1, 1};
    int64_t relu8[] = {0, 0, 0, 0, 1, 7, 127};
    int64_t not8[] = {127, 4, 0, -1, -2, -8, -128};
    check_int("Abs", 13, KILN_DTYPE_I8, i8in, abs8, 7, KILN_DTYPE_I8);
    check_int("Neg", 13, KILN_DTYPE_I8, i8in, neg8, 7, KILN_DTYPE_I8);
    check_int("Sign", 13, KILN_DTYPE_I8, i8in, sign8, 7, KILN_DTYPE_I8);
    check_int("Relu", 14, KILN_DTYPE_I8, i8in, relu8, 7, KILN_DTYPE_I8);
    check_int("BitwiseNot", 18, KILN_DTYPE_I8, i8in, not8, 7, KILN_DTYPE_I8);

    int64_t i64in[] = {INT64_MIN, -3, 0, 3, INT64_MAX};
    int64_t abs64[] = {INT64_MIN, 3, 0, 3, INT64_MAX};
    int64_t neg64[] = {INT64_MIN, 3, 0, -3, -INT64_MAX};
    check_int("Abs", 13, KILN_DTYPE_I64, i64in, abs64, 5, KILN_DTYPE_I64);
    check_int("Neg", 13, KILN_DTYPE_I64, i64in, neg64, 5, KILN_DTYPE_I64);
    check_int("Relu", 14, KILN_DTYPE_I32, (int64_t[]){-7, 0, 9}, (int64_t[]){0, 0, 9}, 3,
              KILN_DTYPE_I32);

    int64_t u8in[] = {0, 1, 200, 255};
    check_int("Abs", 13, KILN_DTYPE_U8, u8in, u8in, 4, KILN_DTYPE_U8);
    check_int("Sign", 13, KILN_DTYPE_U16, u8in, (int64_t[]){0, 1, 1, 1}, 4, KILN_DTYPE_U16);
    check_int("BitwiseNot", 18, KILN_DTYPE_U8, u8in, (int64_t[]){255, 254, 55, 0}, 4,
              KILN_DTYPE_U8);
    check_int("BitwiseNot", 18, KILN_DTYPE_U64, (int64_t[]){0}, (int64_t[]){-1}, 1,
              KILN_DTYPE_U64);
    check_int("Not", 1, KILN_DTYPE_BOOL, (int64_t[]){0, 1, 1, 0}, (int64_t[]){1, 0, 0, 1}, 4,
              KILN_DTYPE_BOOL);

    /* Shrink on int32: |x| <= lambd gives 0, else x -+ bias, computed in double */
    struct kiln_attr a[2] = {attr_f("lambd", 1.5f), attr_f("bias", 1.5f)};
    struct kiln_value *x = int_tensor(KILN_DTYPE_I32, (int64_t[]){-5, -1, 0, 1, 2, 10}, 6), *y;
    kiln_err err;
    kiln_status st = run_op("Shrink", 9, a, 2, &x, 1, &y, &err);
    CHECK(st == KILN_OK, "Shrink int32: %s", err.msg);
    if (!st) {
        int64_t want[] = {-3, 0, 0, 0, 0, 8}; /* -3.5 and 0.5 truncate toward zero */
        for (int i = 0; i < 6; i++)
            CHECK(kiln_tensor_get_i64(&y->t, (size_t)i) == want[i], "Shrink int32 [%d] = %lld", i,
                  (long long)kiln_tensor_get_i64(&y->t, (size_t)i));
        kiln_value_free(y);
    }
    kiln_value_free(x);
}

/* ------------------------------------------------------------------ Clip */

static void test_clip(void)
{
    const float xs[] = {-INFINITY, -3, -1, -0.0f, 0.5f, 2, 7, INFINITY, NAN};
    const size_t n = sizeof xs / sizeof xs[0];
    struct kiln_value *x = new_vec(KILN_DTYPE_F32, n), *y;
    memcpy(x->t.data, xs, sizeof xs);
    kiln_err err;

    /* opset 13: both bounds, one bound, none, min > max */
    struct {
        bool has_lo, has_hi;
        float lo, hi;
    } cfg[] = {{1, 1, -1, 2}, {1, 0, 0, 0}, {0, 1, 0, 1}, {0, 0, 0, 0}, {1, 1, 3, 1}};
    for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++) {
        struct kiln_value *lo = cfg[c].has_lo ? scalar(KILN_DTYPE_F32, cfg[c].lo) : NULL;
        struct kiln_value *hi = cfg[c].has_hi ? scalar(KILN_DTYPE_F32, cfg[c].hi) : NULL;
        struct kiln_value *in[3] = {x, lo, hi};
        kiln_status st = run_op("Clip", 13, NULL, 0, in, 3, &y, &err);
        CHECK(st == KILN_OK, "Clip cfg %zu: %s", c, err.msg);
        if (!st) {
            for (size_t i = 0; i < n; i++) {
                double v = xs[i], want = v;
                if (!isnan(v)) {
                    if (cfg[c].has_lo && v < cfg[c].lo) want = cfg[c].lo;
                    if (cfg[c].has_hi && want > cfg[c].hi) want = cfg[c].hi;
                }
                double got = ((float *)y->t.data)[i];
                CHECK(SAME(got, want) || (got == want), "Clip cfg %zu x=%g: got %g want %g", c,
                      v, got, want);
            }
            kiln_value_free(y);
        }
        kiln_value_free(lo);
        kiln_value_free(hi);
    }

    /* opset 6: attributes; a missing max keeps FLT_MAX (so +Inf becomes FLT_MAX) */
    struct kiln_attr a = attr_f("min", -1.0f);
    kiln_status st = run_op("Clip", 6, &a, 1, &x, 1, &y, &err);
    CHECK(st == KILN_OK, "Clip-6: %s", err.msg);
    if (!st) {
        const float *o = y->t.data;
        CHECK(o[0] == -1 && o[1] == -1 && o[4] == 0.5f && o[7] == FLT_MAX && isnan(o[8]),
              "Clip-6 min=-1: %g %g %g %g %g", o[0], o[1], o[4], o[7], o[8]);
        kiln_value_free(y);
    }

    /* a bound that is not a scalar is refused with a message naming it */
    struct kiln_value *bad = new_vec(KILN_DTYPE_F32, 2);
    struct kiln_value *in[3] = {x, bad, NULL};
    st = run_op("Clip", 13, NULL, 0, in, 3, &y, &err);
    CHECK(st != KILN_OK && strstr(err.msg, "min") && strstr(err.msg, "scalar"),
          "Clip with [2]-shaped min: st %d, '%s'", st, err.msg);
    kiln_value_free(bad);
    kiln_value_free(x);

    /* int8 with default bounds (type limits) and with bounds */
    struct kiln_value *xi = int_tensor(KILN_DTYPE_I8, (int64_t[]){-128, -10, 0, 10, 127}, 5);
    struct kiln_value *lo = int_tensor(KILN_DTYPE_I8, (int64_t[]){-5}, 1);
    struct kiln_value *in2[3] = {xi, NULL, NULL};
    st = run_op("Clip", 13, NULL, 0, in2, 3, &y, &err);
    CHECK(st == KILN_OK && kiln_tensor_get_i64(&y->t, 0) == -128 &&
              kiln_tensor_get_i64(&y->t, 4) == 127,
          "Clip int8 no bounds changed values");
    if (!st) kiln_value_free(y);
    in2[1] = lo;
    st = run_op("Clip", 13, NULL, 0, in2, 3, &y, &err);
    CHECK(st == KILN_OK && kiln_tensor_get_i64(&y->t, 0) == -5 &&
              kiln_tensor_get_i64(&y->t, 1) == -5 && kiln_tensor_get_i64(&y->t, 4) == 127,
          "Clip int8 min=-5 wrong");
    if (!st) kiln_value_free(y);
    kiln_value_free(lo);
    kiln_value_free(xi);

    /* float16 bounds clip exactly */
    struct kiln_value *xh = new_vec(KILN_DTYPE_F16, 3), *hl = new_vec(KILN_DTYPE_F16, 1);
    uint16_t *h = xh->t.data;
    h[0] = 0xC000; /* -2 */
    h[1] = 0x3C00; /* 1 */
    h[2] = 0x4200; /* 3 */
    ((uint16_t *)hl->t.data)[0] = 0x3E00; /* 1.5 */
    struct kiln_value *in3[3] = {xh, NULL, hl};
    st = run_op("Clip", 12, NULL, 0, in3, 3, &y, &err);
    CHECK(st == KILN_OK, "Clip f16: %s", err.msg);
    if (!st) {
        const uint16_t *o = y->t.data;
        CHECK(o[0] == 0xC000 && o[1] == 0x3C00 && o[2] == 0x3E00, "Clip f16: %04x %04x %04x",
              o[0], o[1], o[2]);
        kiln_value_free(y);
    }
    kiln_value_free(hl);
    kiln_value_free(xh);
}

/* ------------------------------------------------------------------ predicates, identity */

static void test_isnan_isinf(void)
{
    const float xs[] = {0, -1, INFINITY, -INFINITY, NAN, FLT_MAX};
    struct kiln_value *x = new_vec(KILN_DTYPE_F32, 6), *y;
    memcpy(x->t.data, xs, sizeof xs);
    kiln_err err;
    static const struct {
        const char *op;
        int pos, neg;
        uint8_t want[6];
    } c[] = {
        {"IsNaN", -1, -1, {0, 0, 0, 0, 1, 0}},
        {"IsInf", -1, -1, {0, 0, 1, 1, 0, 0}},
        {"IsInf", 1, 0, {0, 0, 1, 0, 0, 0}},
        {"IsInf", 0, 1, {0, 0, 0, 1, 0, 0}},
    };
    for (size_t t = 0; t < 4; t++) {
        struct kiln_attr a[2];
        size_t na = 0;
        if (c[t].pos >= 0) a[na++] = attr_i("detect_positive", c[t].pos);
        if (c[t].neg >= 0) a[na++] = attr_i("detect_negative", c[t].neg);
        kiln_status st = run_op(c[t].op, 20, a, na, &x, 1, &y, &err);
        CHECK(st == KILN_OK && y->t.dtype == KILN_DTYPE_BOOL, "%s: %s", c[t].op, err.msg);
        if (!st) {
            CHECK(memcmp(y->t.data, c[t].want, 6) == 0, "%s case %zu: wrong flags", c[t].op, t);
            kiln_value_free(y);
        }
    }
    kiln_value_free(x);

    /* float8e4m3fn has no Inf: 0x7F is NaN; e5m2 0x7C is +Inf */
    struct kiln_value *f8 = new_vec(KILN_DTYPE_F8E4M3FN, 2);
    ((uint8_t *)f8->t.data)[0] = 0x7F;
    ((uint8_t *)f8->t.data)[1] = 0x7E;
    kiln_status st = run_op("IsNaN", 20, NULL, 0, &f8, 1, &y, &err);
    CHECK(st == KILN_OK && ((uint8_t *)y->t.data)[0] == 1 && ((uint8_t *)y->t.data)[1] == 0,
          "IsNaN float8e4m3fn");
    if (!st) kiln_value_free(y);
    kiln_value_free(f8);
    f8 = new_vec(KILN_DTYPE_F8E5M2, 2);
    ((uint8_t *)f8->t.data)[0] = 0x7C;
    ((uint8_t *)f8->t.data)[1] = 0x7B;
    st = run_op("IsInf", 20, NULL, 0, &f8, 1, &y, &err);
    CHECK(st == KILN_OK && ((uint8_t *)y->t.data)[0] == 1 && ((uint8_t *)y->t.data)[1] == 0,
          "IsInf float8e5m2");
    if (!st) kiln_value_free(y);
    kiln_value_free(f8);
}

static void test_identity(void)
{
    struct kiln_value *seq = kiln_value_new(KILN_VALUE_SEQUENCE), *y;
    seq->elem_dtype = KILN_DTYPE_I64;
    for (int i = 0; i < 3; i++) {
        struct kiln_value *t = int_tensor(KILN_DTYPE_I64, (int64_t[]){i, i * 10}, 2);
        if (kiln_value_append(seq, t, NULL)) exit(1);
    }
    kiln_err err;
    kiln_status st = run_op("Identity", 25, NULL, 0, &seq, 1, &y, &err);
    CHECK(st == KILN_OK, "Identity(sequence): %s", err.msg);
    if (!st) {
        CHECK(y != seq && y->kind == KILN_VALUE_SEQUENCE && y->count == 3 &&
                  y->elem_dtype == KILN_DTYPE_I64,
              "Identity(sequence) is not a 3-item int64 sequence");
        for (size_t i = 0; i < y->count && i < 3; i++)
            CHECK(y->items[i] != seq->items[i] &&
                      kiln_tensor_get_i64(&y->items[i]->t, 1) == (int64_t)i * 10,
                  "Identity(sequence) item %zu", i);
        kiln_value_free(y);
    }
    kiln_value_free(seq);

    struct kiln_value *x = new_vec(KILN_DTYPE_STRING, 1);
    ((char **)x->t.data)[0] = kiln_strdup("hello");
    st = run_op("Identity", 13, NULL, 0, &x, 1, &y, &err);
    CHECK(st == KILN_OK && strcmp(((char **)y->t.data)[0], "hello") == 0 &&
              ((char **)y->t.data)[0] != ((char **)x->t.data)[0],
          "Identity(string) is not a deep copy");
    if (!st) kiln_value_free(y);
    kiln_value_free(x);
}

/* ------------------------------------------------------------------ errors */

static void test_errors(void)
{
    kiln_err err;
    struct kiln_value *x = int_tensor(KILN_DTYPE_I32, (int64_t[]){1}, 1), *y;
    kiln_status st = run_op("Exp", 13, NULL, 0, &x, 1, &y, &err);
    CHECK(st == KILN_E_UNSUPPORTED && strstr(err.msg, "Exp node 't' (opset 13)") &&
              strstr(err.msg, "int32"),
          "Exp(int32): st %d '%s'", st, err.msg);
    st = run_op("Neg", 13, NULL, 0, &x, 1, &y, &err);
    CHECK(st == KILN_OK, "Neg(int32): %s", err.msg);
    if (!st) kiln_value_free(y);
    kiln_value_free(x);

    x = int_tensor(KILN_DTYPE_U32, (int64_t[]){1}, 1);
    st = run_op("Neg", 13, NULL, 0, &x, 1, &y, &err);
    CHECK(st == KILN_E_UNSUPPORTED && strstr(err.msg, "uint32"), "Neg(uint32): st %d '%s'", st,
          err.msg);
    kiln_value_free(x);

    x = new_vec(KILN_DTYPE_F32, 2);
    struct kiln_attr a = attr_s("approximate", "erf");
    st = run_op("Gelu", 20, &a, 1, &x, 1, &y, &err);
    CHECK(st == KILN_E_INVALID_MODEL && strstr(err.msg, "'erf'"), "Gelu approximate=erf: '%s'",
          err.msg);
    st = run_op("Not", 1, NULL, 0, &x, 1, &y, &err);
    CHECK(st == KILN_E_UNSUPPORTED && strstr(err.msg, "bool"), "Not(float): '%s'", err.msg);
    struct kiln_value *none = NULL;
    st = run_op("Relu", 14, NULL, 0, &none, 1, &y, &err);
    CHECK(st != KILN_OK, "Relu without input succeeded");
    kiln_value_free(x);
}

int main(void)
{
    rng_seed(0x243F6A8885A308D3ull);
    static const size_t sizes[] = {0, 1, 7, 1000};
    static const kiln_dtype dts[] = {KILN_DTYPE_F32, KILN_DTYPE_F64, KILN_DTYPE_F16,
                                     KILN_DTYPE_BF16};
    for (size_t c = 0; c < sizeof fcases / sizeof fcases[0]; c++)
        for (size_t d = 0; d < 4; d++)
            for (size_t s = 0; s < 4; s++) check_float_case(&fcases[c], dts[d], sizes[s]);
    test_special_values();
    test_int_ops();
    test_clip();
    test_isnan_isinf();
    test_identity();
    test_errors();
    return test_summary("test_unary");
}
