/* test_vmath.c: kiln_vexp_f32, kiln_verf_f32, kiln_vtanh_f32 and kiln_vsigmoid_f32 against
 * the double libm result rounded to float.
 *
 * Inputs (~1.9 million): a dense even sweep of [-110, 110] (past both exp limits), random
 * float32 bit patterns (every exponent, NaN and inf included), small magnitudes spread
 * log-uniformly over [2^-40, 8] with both signs, and the special values: +-0, +-inf, NaN,
 * subnormals, FLT_MIN, FLT_MAX and the floats either side of the exp overflow and underflow
 * edges. The bounds asserted are the ones vmath.h states:
 *   exp      <= 2 ulp (distance in float bit patterns, so the subnormals, 0 and +inf count
 *            as neighbours like any floats);
 *   erf      absolute error <= 2e-7;
 *   tanh     relative error <= 1e-6,    (relative to max(|ref|, FLT_MIN), so tiny results
 *   sigmoid  relative error <= 1e-6      are held to an absolute 1e-6 * FLT_MIN)
 * NaN in must give NaN out, and the special values must give their exact limits. Also checks
 * that y == x (in place) and lengths that are no multiple of a vector width give the same
 * values. The measured maxima are printed. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/vmath.h"
#include "test_support.h"

#define N_DENSE (1u << 20)
#define N_RAND (1u << 19)
#define N_SMALL (1u << 18)

static uint32_t bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Distance in representable floats between a and b (neither NaN); +-0 are one point. */
static double ulp_dist(float a, float b)
{
    int64_t ia = (int64_t)(bits(a) & 0x7fffffffu), ib = (int64_t)(bits(b) & 0x7fffffffu);
    if (bits(a) >> 31) ia = -ia;
    if (bits(b) >> 31) ib = -ib;
    return (double)(ia > ib ? ia - ib : ib - ia);
}

static double ref_sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

/* Fills x with the test inputs; returns their count. */
static size_t make_inputs(float *x)
{
    size_t n = 0;
    for (uint32_t i = 0; i < N_DENSE; i++)
        x[n++] = (float)(-110.0 + 220.0 * (double)i / (N_DENSE - 1));
    for (uint32_t i = 0; i < N_RAND; i++) x[n++] = from_bits((uint32_t)rng_u64());
    for (uint32_t i = 0; i < N_SMALL; i++) {
        float m = (float)exp2(rng_range(-40, 3));
        x[n++] = (i & 1) ? -m : m;
    }
    const float specials[] = {
        0.0f, -0.0f, INFINITY, -INFINITY, NAN, -NAN, FLT_MIN, -FLT_MIN, FLT_MAX, -FLT_MAX,
        from_bits(1), from_bits(0x80000001u), from_bits(0x007fffffu), from_bits(0x807fffffu),
        88.72283935546875f, nextafterf(88.72283935546875f, 0), nextafterf(88.72283935546875f, 100),
        88.7f, 88.8f, 89.0f, 89.5f, 100.0f, -87.33654f, -87.4f, -103.27893f, -103.28f,
        -103.972f, -103.9721f, -103.98f, -104.0f, -104.5f, -150.0f, 0.9277f, -0.9277f,
        nextafterf(0.9277f, 1), 0.5625f, nextafterf(0.5625f, 0), 3.92f, 3.93f, 3.94f, -3.93f,
        9.0f, 9.1f, -9.1f, 1e-20f, -1e-20f, 0.34657359f, -0.34657359f,
    };
    for (size_t i = 0; i < sizeof specials / sizeof specials[0]; i++) x[n++] = specials[i];
    return n;
}

enum measure { M_ULP, M_ABS, M_REL };

/* Runs fn over x[0..n) and returns the largest error against ref by the given measure;
 * counts NaN results for non-NaN input (and the reverse) as failures. */
static double sweep(const char *name, void (*fn)(const float *, float *, size_t),
                    double (*ref)(double), enum measure m, const float *x, float *y, size_t n)
{
    fn(x, y, n);
    double worst = 0;
    float worst_x = 0;
    int nan_bad = 0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(x[i]) || isnan(y[i])) {
            if (isnan(x[i]) != isnan(y[i]) && nan_bad++ < 5)
                test_fail(__FILE__, __LINE__, NULL, "%s(%a) = %a; NaN in must match NaN out",
                          name, (double)x[i], (double)y[i]);
            continue;
        }
        float r = (float)ref((double)x[i]);
        double err;
        if (m == M_ULP) err = ulp_dist(y[i], r);
        else if (m == M_ABS) err = fabs((double)y[i] - (double)r);
        else err = fabs((double)y[i] - (double)r) / fmax(fabs((double)r), FLT_MIN);
        if (err > worst) {
            worst = err;
            worst_x = x[i];
        }
    }
    CHECK(nan_bad == 0, "%s: %d NaN mismatches", name, nan_bad);
    printf("%s: max %s %.3g at x = %a over %zu inputs\n", name,
           m == M_ULP ? "ulp" : m == M_ABS ? "abs error" : "rel error", worst, (double)worst_x,
           n);
    return worst;
}

/* f(v) must be exactly want (bit for bit, so the sign of zero counts). */
static void check_exact(const char *name, void (*fn)(const float *, float *, size_t), float v,
                        float want)
{
    float y;
    fn(&v, &y, 1);
    CHECK(bits(y) == bits(want), "%s(%a) = %a; expected %a", name, (double)v, (double)y,
          (double)want);
}

static void check_nan(const char *name, void (*fn)(const float *, float *, size_t))
{
    float in[3] = {NAN, -NAN, from_bits(0x7f800001u)}, out[3];
    fn(in, out, 3);
    for (int i = 0; i < 3; i++)
        CHECK(isnan(out[i]), "%s(NaN #%d) = %a; expected NaN", name, i, (double)out[i]);
}

/* In place and at every length up to 37 (vector bodies plus remainders), the values match
 * a full-length out-of-place run. */
static void check_layout(const char *name, void (*fn)(const float *, float *, size_t))
{
    float x[37], want[37], y[37];
    for (int i = 0; i < 37; i++) x[i] = (float)rng_range(-12, 12);
    fn(x, want, 37);
    for (size_t len = 0; len <= 37; len++) {
        float sentinel = 12345.0f;
        for (int i = 0; i < 37; i++) y[i] = sentinel;
        fn(x, y, len);
        for (size_t i = 0; i < 37; i++) {
            float w = i < len ? want[i] : sentinel;
            CHECK(bits(y[i]) == bits(w), "%s len %zu: y[%zu] = %a; expected %a", name, len, i,
                  (double)y[i], (double)w);
        }
    }
    memcpy(y, x, sizeof y);
    fn(y, y, 37);
    CHECK(memcmp(y, want, sizeof y) == 0, "%s in place differs from out of place", name);
}

int main(void)
{
    rng_seed(0x766d617468ull);
    size_t cap = N_DENSE + N_RAND + N_SMALL + 64;
    float *x = malloc(cap * sizeof *x), *y = malloc(cap * sizeof *y);
    if (!x || !y) {
        printf("out of memory\n");
        return 1;
    }
    size_t n = make_inputs(x);

    double e_exp = sweep("exp", kiln_vexp_f32, exp, M_ULP, x, y, n);
    double e_erf = sweep("erf", kiln_verf_f32, erf, M_ABS, x, y, n);
    double e_tanh = sweep("tanh", kiln_vtanh_f32, tanh, M_REL, x, y, n);
    double e_sig = sweep("sigmoid", kiln_vsigmoid_f32, ref_sigmoid, M_REL, x, y, n);
    CHECK(e_exp <= 2, "exp: max error %g ulp; bound 2", e_exp);
    CHECK(e_erf <= 2e-7, "erf: max abs error %g; bound 2e-7", e_erf);
    CHECK(e_tanh <= 1e-6, "tanh: max rel error %g; bound 1e-6", e_tanh);
    CHECK(e_sig <= 1e-6, "sigmoid: max rel error %g; bound 1e-6", e_sig);

    check_exact("exp", kiln_vexp_f32, 0.0f, 1.0f);
    check_exact("exp", kiln_vexp_f32, -0.0f, 1.0f);
    check_exact("exp", kiln_vexp_f32, INFINITY, INFINITY);
    check_exact("exp", kiln_vexp_f32, -INFINITY, 0.0f);
    check_exact("exp", kiln_vexp_f32, 88.8f, INFINITY);
    check_exact("exp", kiln_vexp_f32, FLT_MAX, INFINITY);
    check_exact("exp", kiln_vexp_f32, -104.0f, 0.0f);
    check_exact("exp", kiln_vexp_f32, -FLT_MAX, 0.0f);
    check_exact("erf", kiln_verf_f32, 0.0f, 0.0f);
    check_exact("erf", kiln_verf_f32, -0.0f, -0.0f);
    check_exact("erf", kiln_verf_f32, INFINITY, 1.0f);
    check_exact("erf", kiln_verf_f32, -INFINITY, -1.0f);
    check_exact("erf", kiln_verf_f32, 5.0f, 1.0f);
    check_exact("erf", kiln_verf_f32, -FLT_MAX, -1.0f);
    check_exact("tanh", kiln_vtanh_f32, 0.0f, 0.0f);
    check_exact("tanh", kiln_vtanh_f32, -0.0f, -0.0f);
    check_exact("tanh", kiln_vtanh_f32, INFINITY, 1.0f);
    check_exact("tanh", kiln_vtanh_f32, -INFINITY, -1.0f);
    check_exact("tanh", kiln_vtanh_f32, 20.0f, 1.0f);
    check_exact("tanh", kiln_vtanh_f32, from_bits(1), from_bits(1));
    check_exact("sigmoid", kiln_vsigmoid_f32, 0.0f, 0.5f);
    check_exact("sigmoid", kiln_vsigmoid_f32, INFINITY, 1.0f);
    check_exact("sigmoid", kiln_vsigmoid_f32, -INFINITY, 0.0f);
    check_exact("sigmoid", kiln_vsigmoid_f32, 30.0f, 1.0f);
    check_exact("sigmoid", kiln_vsigmoid_f32, -200.0f, 0.0f);
    {
        /* The tail does not flush: sigmoid(-100) = 3.7e-44, a subnormal, not 0. */
        float v = -100.0f, s;
        kiln_vsigmoid_f32(&v, &s, 1);
        CHECK(s > 0 && s < FLT_MIN, "sigmoid(-100) = %a; expected a subnormal", (double)s);
    }

    void (*const fns[])(const float *, float *, size_t) = {kiln_vexp_f32, kiln_verf_f32,
                                                          kiln_vtanh_f32, kiln_vsigmoid_f32};
    const char *names[] = {"exp", "erf", "tanh", "sigmoid"};
    for (int f = 0; f < 4; f++) {
        check_nan(names[f], fns[f]);
        check_layout(names[f], fns[f]);
    }

    free(x);
    free(y);
    return test_summary("test_vmath");
}
