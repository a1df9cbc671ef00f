/* test_eltwise_fast.c: the float32 element-wise loops at full vector width (cpu/eltwise.h,
 * src/cpu/isa/eltwise.c) and the fused activation epilogue (cpu/act.h, src/cpu/isa/act.c).
 *
 * Every compiled variant up to kiln_isa_best() is called directly (KILN_ISA_VARIANT) and
 * checked against a float64 reference of the op's expression on lengths 0, 1, 15, 17 and
 * 1000003, with random values plus the special ones (+-0, +-inf, NaN, huge, tiny). A result
 * passes when |got - ref| <= atol + rtol * |ref| (NaN where the reference is NaN); the
 * tolerances per op are in the tables below:
 *   exact (0, 0): one correctly rounded operation (Abs, Neg, Floor, Ceil, Round, Sqrt,
 *     Reciprocal, Relu, LeakyRelu, Clip, ThresholdedRelu, Shrink, Sign, x^2, x^0.5, and every
 *     binary op: float + - * and / equal double's result rounded to float);
 *   rtol 3e-7: exp (2 ulp); rtol 1e-6 (+ atol 1e-30 for subnormal tails): tanh, sigmoid
 *     (cpu/vmath.h), and those times v (SiLU, 1.5e-6);
 *   atol 2e-7: erf (absolute, cpu/vmath.h); Gelu 2e-7 * (1 + |v|) (at AVX-512 its erf is the
 *     table of src/cpu/isa/vmath_v.h, 5.9e-8);
 *   rtol 1e-6 + atol 1e-7: expressions of two or three roundings, one maybe an FMA
 *     (HardSigmoid, HardSwish, Softsign, tanh-Gelu 1e-6 * (1 + |v|)).
 * Also: in place (y == x) gives the same bits as out of place; a loop started at any offset
 * gives the same bits as one pass (what thread blocks rely on); the binary tile kernel on
 * every step/stride combination; Add/Mul/Div/Max/Less/Pow/PRelu run as ops on broadcast
 * patterns of rank 1 to 5 (every dim 1 or full on either side) against a float64 walk,
 * with a pool of 2 threads and without one giving the same bytes; the activation with and
 * without a residual, kiln_act_apply_par with 2 threads equal to 1.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/pool.h"
#include "cpu/act.h"
#include "cpu/eltwise.h"
#include "support/test_support.h"

static const size_t lengths[] = {0, 1, 15, 17, 1000003};
#define N_LEN (sizeof lengths / sizeof lengths[0])
#define BIG 1000003

/* ref is the float64 result; it is rounded to float first (the accuracies of cpu/vmath.h
 * are stated against the rounded result, and the exact ops must give exactly it). */
static bool close_enough(float got, double ref_d, double atol, double rtol)
{
    const double ref = (double)(float)ref_d;
    if (isnan(ref)) return isnan(got);
    if (isinf(ref)) return got == ref;
    return fabs((double)got - ref) <= atol + rtol * fabs(ref);
}

static double d_clamp01(double t) { return t < 0 ? 0 : t > 1 ? 1 : t; }
static double d_sigmoid(double v) { return 1.0 / (1.0 + exp(-v)); }

/* ------------------------------------------------------------------ unary */

struct ucase {
    enum kiln_ew_unary op;
    const char *name;
    float alpha, beta;
    double lo, hi; /* random range */
    double atol, rtol, atol_v; /* atol_v: extra absolute tolerance per |v| */
};

static const struct ucase ucases[] = {
    {KILN_EW_ABS, "abs", 0, 0, -100, 100, 0, 0, 0},
    {KILN_EW_NEG, "neg", 0, 0, -100, 100, 0, 0, 0},
    {KILN_EW_FLOOR, "floor", 0, 0, -100, 100, 0, 0, 0},
    {KILN_EW_CEIL, "ceil", 0, 0, -100, 100, 0, 0, 0},
    {KILN_EW_ROUND, "round", 0, 0, -8, 8, 0, 0, 0},
    {KILN_EW_SQRT, "sqrt", 0, 0, -1, 1000, 0, 0, 0},
    {KILN_EW_RECIPROCAL, "reciprocal", 0, 0, -10, 10, 0, 0, 0},
    {KILN_EW_EXP, "exp", 0, 0, -100, 88, 3e-45, 3e-7, 0}, /* 2 ulp of subnormals too */
    {KILN_EW_TANH, "tanh", 0, 0, -10, 10, 1e-30, 1e-6, 0},
    {KILN_EW_SIGMOID, "sigmoid", 0, 0, -30, 30, 1e-30, 1e-6, 0},
    {KILN_EW_ERF, "erf", 0, 0, -5, 5, 2e-7, 0, 0},
    {KILN_EW_RELU, "relu", 0, 0, -10, 10, 0, 0, 0},
    {KILN_EW_LEAKYRELU, "leakyrelu", 0.1f, 0, -10, 10, 0, 0, 0},
    {KILN_EW_CLIP, "clip", -1.5f, 6.0f, -10, 10, 0, 0, 0},
    {KILN_EW_HARDSIGMOID, "hardsigmoid", 0.2f, 0.5f, -6, 6, 1e-7, 1e-6, 0},
    {KILN_EW_HARDSWISH, "hardswish", (float)(1.0 / 6.0), 0.5f, -6, 6, 1e-7, 1e-6, 0},
    {KILN_EW_GELU, "gelu", 0, 0, -8, 8, 2e-7, 0, 2e-7},
    {KILN_EW_GELU_TANH, "gelu_tanh", 0, 0, -8, 8, 1e-6, 0, 1e-6},
    {KILN_EW_SILU, "silu", 1.0f, 0, -30, 30, 1e-30, 1.5e-6, 0},
    {KILN_EW_SILU, "silu(1.7)", 1.7f, 0, -30, 30, 1e-30, 1.5e-6, 0},
    {KILN_EW_SOFTSIGN, "softsign", 0, 0, -10, 10, 1e-7, 1e-6, 0},
    {KILN_EW_THRESHOLDEDRELU, "thresholdedrelu", 1.0f, 0, -3, 3, 0, 0, 0},
    {KILN_EW_SHRINK, "shrink", 0.5f, 0.25f, -3, 3, 0, 0, 0},
    {KILN_EW_SIGN, "sign", 0, 0, -3, 3, 0, 0, 0},
    {KILN_EW_SQUARE, "square", 0, 0, -1e3, 1e3, 0, 0, 0},
    {KILN_EW_POW_HALF, "pow_half", 0, 0, -1, 1e3, 0, 0, 0},
};

/* The float64 reference of the op's expression on float v (params rounded to float, as the
 * kernels take them). */
static double uref(const struct ucase *c, float vf)
{
    const double v = vf, A = c->alpha, B = c->beta;
    switch (c->op) {
    case KILN_EW_ABS: return fabs(v);
    case KILN_EW_NEG: return -v;
    case KILN_EW_FLOOR: return floor(v);
    case KILN_EW_CEIL: return ceil(v);
    case KILN_EW_ROUND: return nearbyint(v);
    case KILN_EW_SQRT: return sqrt(v);
    case KILN_EW_RECIPROCAL: return 1.0 / v;
    case KILN_EW_EXP: return exp(v);
    case KILN_EW_TANH: return tanh(v);
    case KILN_EW_SIGMOID: return d_sigmoid(v);
    case KILN_EW_ERF: return erf(v);
    case KILN_EW_RELU: return v < 0 ? 0 : v;
    case KILN_EW_LEAKYRELU: return v < 0 ? A * v : v;
    case KILN_EW_CLIP: return v < A ? A : v > B ? B : v;
    case KILN_EW_HARDSIGMOID: return isnan(v) ? v : d_clamp01(A * v + B);
    case KILN_EW_HARDSWISH: return isnan(v) ? v : v * d_clamp01(A * v + B);
    case KILN_EW_GELU: return 0.5 * v * (1.0 + erf(v / sqrt(2.0)));
    case KILN_EW_GELU_TANH:
        return 0.5 * v * (1.0 + tanh(sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v)));
    case KILN_EW_SILU: return v * d_sigmoid((double)(float)(A * vf));
    case KILN_EW_SOFTSIGN: return v / (1.0 + fabs(v));
    case KILN_EW_THRESHOLDEDRELU: return v > A ? v : 0;
    case KILN_EW_SHRINK: return v < -A ? (double)(float)(v + B) : v > A ? (double)(float)(v - B) : 0;
    case KILN_EW_SIGN: return v > 0 ? 1 : v < 0 ? -1 : v;
    case KILN_EW_SQUARE: return v * v;
    case KILN_EW_POW_HALF: return pow(v, 0.5);
    default: return NAN;
    }
}

static const float specials[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 1e30f, -1e30f,
                                 1e-30f, -1e-30f, 1.0f, -1.0f, 0.5f, -0.5f, 2.5f, -2.5f};
#define N_SPECIAL (sizeof specials / sizeof specials[0])

static void fill(float *x, size_t n, double lo, double hi)
{
    for (size_t i = 0; i < n; i++) x[i] = (float)rng_range(lo, hi);
    /* Specials spread over the array so they land in vector bodies and tails alike. */
    for (size_t i = 0; i < N_SPECIAL && n; i++) x[(i * 7919) % n] = specials[i];
}

typedef void unary_fn(int op, const float *x, float *y, size_t n, float alpha, float beta);

static void test_unary_isa(enum kiln_isa isa, float *x, float *y, float *y2)
{
    unary_fn *fn = KILN_ISA_VARIANT(kiln_ew_unary_f32_isa, isa);
    for (size_t ci = 0; ci < sizeof ucases / sizeof ucases[0]; ci++) {
        const struct ucase *c = &ucases[ci];
        for (size_t li = 0; li < N_LEN; li++) {
            size_t n = lengths[li];
            fill(x, n, c->lo, c->hi);
            y[n] = 12345.0f; /* guard: nothing past n is written */
            fn(c->op, x, y, n, c->alpha, c->beta);
            CHECK(y[n] == 12345.0f, "%s %s n=%zu: wrote past the end", kiln_isa_name(isa),
                  c->name, n);
            size_t bad = 0, first = 0;
            for (size_t i = 0; i < n; i++) {
                double ref = uref(c, x[i]);
                double atol = c->atol + (c->atol_v ? c->atol_v * fabs(x[i]) : 0);
                if (!close_enough(y[i], ref, atol, c->rtol)) {
                    if (!bad) first = i;
                    bad++;
                }
            }
            CHECK(bad == 0, "%s %s n=%zu: %zu wrong, first x=%.9g got %.9g want %.9g",
                  kiln_isa_name(isa), c->name, n, bad, x[first], y[first], uref(c, x[first]));
            /* In place: the same bits. */
            memcpy(y2, x, n * sizeof *x);
            fn(c->op, y2, y2, n, c->alpha, c->beta);
            CHECK(n == 0 || memcmp(y, y2, n * sizeof *y) == 0, "%s %s n=%zu: in place differs",
                  kiln_isa_name(isa), c->name, n);
            /* Pieces at odd offsets: the same bits as one pass. */
            if (n == BIG) {
                size_t cut[] = {0, 3, 4099, 4100, 65536 + 5, BIG};
                for (size_t k = 0; k + 1 < sizeof cut / sizeof cut[0]; k++)
                    fn(c->op, x + cut[k], y2 + cut[k], cut[k + 1] - cut[k], c->alpha, c->beta);
                CHECK(memcmp(y, y2, n * sizeof *y) == 0, "%s %s: split run differs",
                      kiln_isa_name(isa), c->name);
            }
        }
    }
}

/* ------------------------------------------------------------------ binary tiles */

typedef void binary_fn(int op, size_t rows, size_t n, const float *a, size_t ra, size_t sa,
                       const float *b, size_t rb, size_t sb, void *y);

static double bref(enum kiln_ew_binary op, float xf, float zf)
{
    const double x = xf, z = zf;
    switch (op) {
    case KILN_EW_ADD: return x + z;
    case KILN_EW_SUB: return x - z;
    case KILN_EW_MUL: return x * z;
    case KILN_EW_DIV: return x / z;
    case KILN_EW_MAX: return isnan(x) || isnan(z) ? NAN : x > z ? x : z;
    case KILN_EW_MIN: return isnan(x) || isnan(z) ? NAN : x < z ? x : z;
    case KILN_EW_PRELU: return x < 0 ? x * z : x;
    case KILN_EW_EQ: return x == z;
    case KILN_EW_LT: return x < z;
    case KILN_EW_GT: return x > z;
    case KILN_EW_LE: return x <= z;
    case KILN_EW_GE: return x >= z;
    default: return NAN;
    }
}

static const char *const bnames[] = {"add", "sub", "mul", "div", "max", "min",
                                     "prelu", "eq", "lt", "gt", "le", "ge"};

static void test_binary_isa(enum kiln_isa isa)
{
    binary_fn *fn = KILN_ISA_VARIANT(kiln_ew_binary_f32_isa, isa);
    static float a[4096], b[4096], y[4096 + 1];
    uint8_t *yb = (uint8_t *)y;
    const size_t shapes[][2] = {{1, 1}, {1, 17}, {3, 15}, {5, 16}, {2, 1}, {7, 33}};
    for (int op = 0; op < KILN_EW_BINARY_COUNT; op++) {
        bool cmp = kiln_ew_is_compare((enum kiln_ew_binary)op);
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            for (int mode = 0; mode < 16; mode++) {
                size_t rows = shapes[s][0], n = shapes[s][1];
                size_t sa = mode & 1, sb = (mode >> 1) & 1;
                size_t ra = (mode & 4) ? 0 : (sa ? n : 1), rb = (mode & 8) ? 0 : (sb ? n : 1);
                fill(a, 4096, -4, 4);
                fill(b, 4096, -4, 4);
                for (size_t i = 0; i < 64; i++) b[i * 61 % 4096] = a[i * 61 % 4096]; /* ties */
                fn(op, rows, n, a, ra, sa, b, rb, sb, y);
                size_t bad = 0;
                for (size_t r = 0; r < rows; r++)
                    for (size_t i = 0; i < n; i++) {
                        float x = a[r * ra + i * sa], z = b[r * rb + i * sb];
                        double ref = bref((enum kiln_ew_binary)op, x, z);
                        bool ok = cmp ? yb[r * n + i] == (uint8_t)ref
                                      : close_enough(y[r * n + i], (double)(float)ref, 0, 0);
                        bad += !ok;
                    }
                CHECK(bad == 0, "%s %s tile %zux%zu sa=%zu sb=%zu ra=%zu rb=%zu: %zu wrong",
                      kiln_isa_name(isa), bnames[op], rows, n, sa, sb, ra, rb, bad);
            }
        /* In place over a (same layout): the same bits as out of place. */
        if (!cmp) {
            static float c[4096];
            fill(a, 4096, -4, 4);
            fill(b, 4096, -4, 4);
            fn(op, 4, 1000, a, 1000, 1, b, 0, 1, y);
            memcpy(c, a, sizeof c);
            fn(op, 4, 1000, c, 1000, 1, b, 0, 1, c);
            CHECK(memcmp(c, y, 4000 * sizeof *y) == 0, "%s %s: in place differs",
                  kiln_isa_name(isa), bnames[op]);
        }
    }
}

/* ------------------------------------------------------------------ activation */

static double aref(const struct kiln_act *a, double v)
{
    switch (a->kind) {
    case KILN_ACT_NONE: return v;
    case KILN_ACT_RELU: return v < 0 ? 0 : v;
    case KILN_ACT_CLIP: return v < a->a ? a->a : v > a->b ? a->b : v;
    case KILN_ACT_LEAKYRELU: return v < 0 ? a->a * v : v;
    case KILN_ACT_SIGMOID: return d_sigmoid(v);
    case KILN_ACT_TANH: return tanh(v);
    case KILN_ACT_HARDSIGMOID: return isnan(v) ? v : d_clamp01(a->a * v + a->b);
    case KILN_ACT_HARDSWISH: return isnan(v) ? v : v * d_clamp01(v / 6.0 + 0.5);
    case KILN_ACT_SILU: return v * d_sigmoid((double)(float)(a->a * (float)v));
    case KILN_ACT_GELU: return 0.5 * v * (1.0 + erf(v / sqrt(2.0)));
    case KILN_ACT_GELU_TANH:
        return 0.5 * v * (1.0 + tanh(sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v)));
    }
    return NAN;
}

/* Tolerances as for the unary ops of the same expression (header comment). */
static void atol_rtol(const struct kiln_act *a, double v, double *atol, double *rtol)
{
    *atol = 0;
    *rtol = 0;
    switch (a->kind) {
    case KILN_ACT_SIGMOID: case KILN_ACT_TANH: *atol = 1e-30; *rtol = 1e-6; break;
    case KILN_ACT_SILU: *atol = 1e-30; *rtol = 1.5e-6; break;
    case KILN_ACT_HARDSIGMOID: case KILN_ACT_HARDSWISH: *atol = 1e-7; *rtol = 1e-6; break;
    case KILN_ACT_GELU: *atol = 2e-7 * (1 + fabs(v)); break;
    case KILN_ACT_GELU_TANH: *atol = 1e-6 * (1 + fabs(v)); break;
    default: break;
    }
}

typedef void act_fn(const struct kiln_act *a, const float *x, const float *z, float *y,
                    size_t n);

static const struct kiln_act acts[] = {
    {KILN_ACT_NONE, 0, 0},        {KILN_ACT_RELU, 0, 0},
    {KILN_ACT_CLIP, 0.0f, 6.0f},  {KILN_ACT_LEAKYRELU, 0.01f, 0},
    {KILN_ACT_SIGMOID, 0, 0},     {KILN_ACT_TANH, 0, 0},
    {KILN_ACT_HARDSIGMOID, 0.2f, 0.5f}, {KILN_ACT_HARDSWISH, 0, 0},
    {KILN_ACT_SILU, 1.0f, 0},     {KILN_ACT_SILU, 0.5f, 0},
    {KILN_ACT_GELU, 0, 0},        {KILN_ACT_GELU_TANH, 0, 0},
};

static void test_act_isa(enum kiln_isa isa, float *x, float *z, float *y, float *y2)
{
    act_fn *fn = KILN_ISA_VARIANT(kiln_act_apply_f32_isa, isa);
    for (size_t ai = 0; ai < sizeof acts / sizeof acts[0]; ai++) {
        const struct kiln_act *a = &acts[ai];
        for (size_t li = 0; li < N_LEN; li++)
            for (int withz = 0; withz < 2; withz++) {
                size_t n = lengths[li];
                fill(x, n, -8, 8);
                fill(z, n, -2, 2);
                const float *zz = withz ? z : NULL;
                fn(a, x, zz, y, n);
                size_t bad = 0, first = 0;
                for (size_t i = 0; i < n; i++) {
                    float v = withz ? x[i] + z[i] : x[i]; /* the sum rounds to float first */
                    double atol, rtol, ref = aref(a, v);
                    atol_rtol(a, v, &atol, &rtol);
                    if (!close_enough(y[i], ref, atol, rtol)) {
                        if (!bad) first = i;
                        bad++;
                    }
                }
                CHECK(bad == 0, "%s act %d z=%d n=%zu: %zu wrong, first at %zu (got %.9g)",
                      kiln_isa_name(isa), (int)a->kind, withz, n, bad, first, y[first]);
                memcpy(y2, x, n * sizeof *x);
                fn(a, y2, zz, y2, n);
                CHECK(n == 0 || memcmp(y, y2, n * sizeof *y) == 0,
                      "%s act %d z=%d n=%zu: in place differs", kiln_isa_name(isa),
                      (int)a->kind, withz, n);
            }
    }
}

static void test_act_par(float *x, float *z, float *y, float *y2)
{
    struct kiln_pool *pool = NULL;
    kiln_err err;
    CHECK(kiln_pool_create(2, &pool, &err) == KILN_OK, "pool: %s", err.msg);
    if (!pool) return;
    for (size_t ai = 0; ai < sizeof acts / sizeof acts[0]; ai++) {
        fill(x, BIG, -8, 8);
        fill(z, BIG, -2, 2);
        kiln_act_apply_par(NULL, &acts[ai], x, z, y, BIG);
        kiln_act_apply_par(pool, &acts[ai], x, z, y2, BIG);
        CHECK(memcmp(y, y2, BIG * sizeof *y) == 0, "act %d: 2 threads differ from 1",
              (int)acts[ai].kind);
    }
    kiln_pool_free(pool);
}

/* ------------------------------------------------------------------ ops with broadcasting */

/* Float64 walk of out = op(A, B) with A, B of rank r (dims either 1 or full). */
static void bcast_ref(const char *op, int r, const int64_t *full, const int64_t *da,
                      const int64_t *db, const float *a, const float *b, double *out)
{
    size_t n = 1;
    for (int d = 0; d < r; d++) n *= (size_t)full[d];
    for (size_t i = 0; i < n; i++) {
        size_t rem = i, ia = 0, ib = 0, sa = 1, sb = 1;
        for (int d = r - 1; d >= 0; d--) {
            size_t idx = rem % (size_t)full[d];
            rem /= (size_t)full[d];
            ia += (da[d] == 1 ? 0 : idx) * sa;
            ib += (db[d] == 1 ? 0 : idx) * sb;
            sa *= (size_t)da[d];
            sb *= (size_t)db[d];
        }
        double x = a[ia], z = b[ib], v;
        if (!strcmp(op, "Add")) v = x + z;
        else if (!strcmp(op, "Mul")) v = x * z;
        else if (!strcmp(op, "Div")) v = x / z;
        else if (!strcmp(op, "Max")) v = isnan(x) || isnan(z) ? NAN : x > z ? x : z;
        else v = x < z; /* Less */
        out[i] = strcmp(op, "Less") ? (double)(float)v : v;
    }
}

static void test_bcast_ops(void)
{
    struct kiln_pool *pool = NULL;
    kiln_err err;
    CHECK(kiln_pool_create(2, &pool, &err) == KILN_OK, "pool: %s", err.msg);
    if (!pool) return;
    static const char *const ops[] = {"Add", "Mul", "Div", "Max", "Less"};
    static const int64_t sizes[] = {3, 16, 5, 4, 17};
    for (int r = 1; r <= 5; r++)
        for (int mask = 0; mask < (1 << (2 * r)); mask++) {
            int64_t full[5], da[5], db[5];
            size_t n = 1, na = 1, nb = 1;
            for (int d = 0; d < r; d++) {
                /* Large enough at rank <= 3 that the walk is split over threads. */
                int64_t size = r <= 3 ? sizes[d] * 8 : sizes[d];
                da[d] = (mask >> d) & 1 ? 1 : size;
                db[d] = (mask >> (r + d)) & 1 ? 1 : size;
                full[d] = da[d] == 1 && db[d] == 1 ? 1 : size;
                n *= (size_t)full[d];
                na *= (size_t)da[d];
                nb *= (size_t)db[d];
            }
            const char *op = ops[mask % 5];
            struct kiln_value *in[2] = {tensor_of(KILN_DTYPE_F32, r, da, NULL),
                                        tensor_of(KILN_DTYPE_F32, r, db, NULL)};
            float *a = in[0]->t.data, *b = in[1]->t.data;
            fill(a, na, -3, 3);
            fill(b, nb, 0.5, 3);
            for (size_t i = 0; i < nb; i += 2) b[i] = -b[i];
            double *want = malloc(n * sizeof *want);
            struct kiln_value *o1 = NULL, *o2 = NULL;
            kiln_status s1 = run_op_pool(NULL, op, 14, NULL, 0, in, 2, &o1, 1, &err);
            kiln_status s2 = run_op_pool(pool, op, 14, NULL, 0, in, 2, &o2, 1, &err);
            CHECK(s1 == KILN_OK && s2 == KILN_OK && want, "%s rank %d mask %x: %s", op, r, mask,
                  err.msg);
            if (s1 == KILN_OK && s2 == KILN_OK && want) {
                bcast_ref(op, r, full, da, db, a, b, want);
                size_t bad = 0;
                bool is_cmp = !strcmp(op, "Less");
                for (size_t i = 0; i < n; i++) {
                    double g = is_cmp ? ((uint8_t *)o1->t.data)[i]
                                      : ((float *)o1->t.data)[i];
                    bad += !(g == want[i] || (isnan(g) && isnan(want[i])));
                }
                CHECK(same_shape(&o1->t, r, full) && bad == 0,
                      "%s rank %d mask %x: %zu of %zu wrong", op, r, mask, bad, n);
                CHECK(memcmp(o1->t.data, o2->t.data, kiln_tensor_nbytes(&o1->t)) == 0,
                      "%s rank %d mask %x: 2 threads differ from 1", op, r, mask);
            }
            free(want);
            free_all(in, 2);
            kiln_value_free(o1);
            kiln_value_free(o2);
        }
    kiln_pool_free(pool);
}

/* Pow by a scalar 2 or 0.5 (the unary fast path), PRelu with a per-channel slope. */
static void test_pow_prelu(void)
{
    kiln_err err;
    const float xs[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 2.0f, -3.0f, 1e-20f, 7.5f, 1e30f};
    const size_t nx = sizeof xs / sizeof xs[0];
    const float exps[] = {2.0f, 0.5f, 3.0f};
    for (size_t e = 0; e < 3; e++) {
        struct kiln_value *in[2] = {vec_of(KILN_DTYPE_F32, nx, xs), scalar(KILN_DTYPE_F32, exps[e])};
        struct kiln_value *out = NULL;
        CHECK(run_op("Pow", 15, NULL, 0, in, 2, &out, &err) == KILN_OK, "Pow: %s", err.msg);
        for (size_t i = 0; out && i < nx; i++) {
            float got = ((float *)out->t.data)[i], want = (float)pow(xs[i], exps[e]);
            CHECK(memcmp(&got, &want, 4) == 0 || (isnan(got) && isnan(want)),
                  "Pow(%g, %g) = %g, want %g", xs[i], exps[e], got, want);
        }
        free_all(in, 2);
        kiln_value_free(out);
    }
    int64_t dx[4] = {2, 5, 3, 7}, ds[3] = {5, 1, 1};
    struct kiln_value *in[2] = {tensor_of(KILN_DTYPE_F32, 4, dx, NULL),
                                tensor_of(KILN_DTYPE_F32, 3, ds, NULL)};
    float *x = in[0]->t.data, *s = in[1]->t.data;
    fill(x, 210, -2, 2);
    fill(s, 5, -1, 1);
    struct kiln_value *out = NULL;
    CHECK(run_op("PRelu", 16, NULL, 0, in, 2, &out, &err) == KILN_OK, "PRelu: %s", err.msg);
    size_t bad = 0;
    for (size_t i = 0; out && i < 210; i++) {
        float v = x[i], sl = s[(i / 21) % 5], want = v < 0 ? v * sl : v;
        float got = ((float *)out->t.data)[i];
        bad += !(got == want || (isnan(got) && isnan(want)));
    }
    CHECK(out && bad == 0, "PRelu: %zu wrong", bad);
    free_all(in, 2);
    kiln_value_free(out);
}

int main(void)
{
    rng_seed(0xe17e5u);
    float *x = malloc((BIG + 1) * sizeof *x), *y = malloc((BIG + 1) * sizeof *y);
    float *y2 = malloc((BIG + 1) * sizeof *y2), *z = malloc((BIG + 1) * sizeof *z);
    CHECK(x && y && y2 && z, "out of memory");
    if (!x || !y || !y2 || !z) return test_summary("test_eltwise_fast");
    for (int isa = 0; isa <= (int)kiln_isa_best(); isa++) {
        test_unary_isa((enum kiln_isa)isa, x, y, y2);
        test_binary_isa((enum kiln_isa)isa);
        test_act_isa((enum kiln_isa)isa, x, z, y, y2);
    }
    test_act_par(x, z, y, y2);
    test_bcast_ops();
    test_pow_prelu();
    free(x);
    free(y);
    free(y2);
    free(z);
    return test_summary("test_eltwise_fast");
}
