/* test_cast.c: Cast/CastLike (src/cpu/ops/cast.c) and the narrow-float conversions
 * (src/cpu/float8.c).
 *
 * The float8/float4 encoders are checked against a brute-force reference written here from
 * the formats' definitions: the nearest representable value, ties to the even code, with
 * the spec's saturate/overflow tables; on every code (decode) and on random values of all
 * magnitudes (encode), from float32 and float64 inputs. double -> float16 must round once
 * (a value just above a float16 tie must not be pulled down through float32). Integer
 * targets wrap (int4/int2 sign-extended), float -> int truncates, NaN -> bool is true.
 * Number <-> string: numpy-style shortest text, reserved INF/NaN spellings, parse errors.
 * Sizes 0, 1, 7 and 1000 cover the chunked conversion loop.
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/float8.h"
#include "cpu/kernel.h"
#include "test_support.h"

/* ------------------------------------------------------------------ harness */

/* Runs Cast (to = `to`, or CastLike when like != NULL) on x; returns the output or NULL. */
static struct kiln_value *cast(struct kiln_value *x, int to, int opset, int saturate,
                               const char *round_mode, kiln_err *err, kiln_status *stp)
{
    struct kiln_attr a[3];
    size_t na = 0;
    a[na++] = attr_i("to", to);
    if (saturate >= 0) a[na++] = attr_i("saturate", saturate);
    if (round_mode) a[na++] = attr_s("round_mode", round_mode);
    struct kiln_value *y = NULL;
    kiln_status st = run_op("Cast", opset, a, na, &x, 1, &y, err);
    if (stp) *stp = st;
    return y;
}

/* ------------------------------------------------------------------ narrow float reference */

struct fmt {
    kiln_dtype dt;
    int ebits, mbits, bias;
    bool ieee, fn, uz; /* e5m2-like Inf/NaN; e4m3fn's single NaN; fnuz's 0x80 NaN */
};

static const struct fmt fmts[] = {
    {KILN_DTYPE_F8E4M3FN, 4, 3, 7, false, true, false},
    {KILN_DTYPE_F8E4M3FNUZ, 4, 3, 8, false, false, true},
    {KILN_DTYPE_F8E5M2, 5, 2, 15, true, false, false},
    {KILN_DTYPE_F8E5M2FNUZ, 5, 2, 16, false, false, true},
    {KILN_DTYPE_F4E2M1, 2, 1, 1, false, false, false},
};

/* Value of positive code c (sign bit clear) from the format's definition; NaN for the
 * NaN/Inf codes. */
static double ref_value(const struct fmt *f, unsigned c)
{
    unsigned e = c >> f->mbits, m = c & ((1u << f->mbits) - 1);
    unsigned emax = (1u << f->ebits) - 1;
    if (f->ieee && e == emax) return m ? NAN : INFINITY;
    if (f->fn && e == emax && m == (1u << f->mbits) - 1) return NAN;
    if (e == 0) return m * pow(2, 1 - f->bias - f->mbits);
    return (1 + m / pow(2, f->mbits)) * pow(2, (int)e - f->bias);
}

static unsigned ref_maxcode(const struct fmt *f)
{
    unsigned c = (1u << (f->ebits + f->mbits)) - 1;
    while (!isfinite(ref_value(f, c))) c--;
    return c;
}

/* The spec's rule by brute force: nearest finite value, ties to even code; a value that
 * rounds past the max (towards a virtual code max+1) is out of range. */
static unsigned ref_encode(const struct fmt *f, double x, bool saturate)
{
    unsigned sbit = 1u << (f->ebits + f->mbits);
    unsigned maxc = ref_maxcode(f);
    unsigned sign = signbit(x) ? sbit : 0;
    unsigned nan = f->uz ? sbit : f->ieee ? (sign | (((1u << f->ebits) - 1) << f->mbits) | 2)
                                          : (sign | (sbit - 1));
    if (f->dt == KILN_DTYPE_F4E2M1 && isnan(x)) return sbit;
    if (isnan(x)) return nan;
    double a = fabs(x);
    bool over = false;
    unsigned best = 0;
    if (isinf(a)) {
        over = true;
    } else {
        double top = ref_value(f, maxc), ulp = top - ref_value(f, maxc - 1);
        /* ulp of the top binade: for the virtual next value use the top's spacing */
        double virt = top + ulp;
        double bd = INFINITY;
        for (unsigned c = 0; c <= maxc + 1; c++) {
            double v = c <= maxc ? ref_value(f, c) : virt;
            double d = fabs(v - a);
            if (d < bd || (d == bd && (c & 1) == 0)) bd = d, best = c;
        }
        over = best > maxc;
    }
    if (over) {
        if (saturate || f->dt == KILN_DTYPE_F4E2M1) return sign | maxc;
        if (f->ieee) return sign | (((1u << f->ebits) - 1) << f->mbits);
        return nan;
    }
    if (best == 0 && f->uz) return 0;
    return sign | best;
}

static void test_narrow_decode(void)
{
    for (size_t i = 0; i < sizeof fmts / sizeof fmts[0]; i++) {
        const struct fmt *f = &fmts[i];
        unsigned ncodes = 1u << (f->ebits + f->mbits + 1), sbit = ncodes / 2;
        for (unsigned c = 0; c < ncodes; c++) {
            double want = ref_value(f, c & (sbit - 1));
            if (c & sbit) want = -want;
            if (f->uz && c == sbit) want = NAN;
            float got = kiln_f8_to_f32(f->dt, (uint8_t)c);
            CHECK((isnan(want) && isnan(got)) || (got == want && !signbit(got) == !signbit(want)),
                  "%s code 0x%02x decodes to %g; want %g", kiln_dtype_name(f->dt), c, got, want);
        }
    }
    /* float8e8m0: 2^(c-127), 0xFF NaN */
    CHECK(kiln_f8_to_f32(KILN_DTYPE_F8E8M0, 127) == 1.0f, "e8m0 127 != 1");
    CHECK(kiln_f8_to_f32(KILN_DTYPE_F8E8M0, 0) == ldexpf(1, -127), "e8m0 0 != 2^-127");
    CHECK(kiln_f8_to_f32(KILN_DTYPE_F8E8M0, 254) == ldexpf(1, 127), "e8m0 254 != 2^127");
    CHECK(isnan(kiln_f8_to_f32(KILN_DTYPE_F8E8M0, 255)), "e8m0 255 is not NaN");
}

/* Random values across the format's range (and beyond), via Cast from float32 and float64. */
static void test_narrow_encode(void)
{
    enum { N = 1000 };
    for (size_t i = 0; i < sizeof fmts / sizeof fmts[0]; i++) {
        const struct fmt *f = &fmts[i];
        double top = ref_value(f, ref_maxcode(f));
        for (int sat = 0; sat <= 1; sat++) {
            struct kiln_value *x32 = new_vec(KILN_DTYPE_F32, N);
            struct kiln_value *x64 = new_vec(KILN_DTYPE_F64, N);
            float *a = x32->t.data;
            double *b = x64->t.data;
            for (size_t j = 0; j < N; j++) {
                double mag =
                    ldexp(rng_range(1, 2), (int)rng_range(-f->bias - f->mbits - 3, log2(top) + 3));
                if (j % 97 == 0) mag = (double)(j % 5) * 0.5 * ref_value(f, 1); /* ties, zero */
                b[j] = (rng_u64() & 1) ? -mag : mag;
                a[j] = (float)b[j];
            }
            a[0] = NAN, b[0] = NAN;
            a[1] = INFINITY, b[1] = INFINITY;
            a[2] = -INFINITY, b[2] = -INFINITY;
            a[3] = -0.0f, b[3] = -0.0;
            a[4] = (float)(top * 1.0001), b[4] = top * 1.0001;
            a[5] = (float)top, b[5] = top;
            kiln_err err;
            struct kiln_value *y32 = cast(x32, (int)f->dt, 25, sat, NULL, &err, NULL);
            CHECK(y32, "Cast float -> %s: %s", kiln_dtype_name(f->dt), err.msg);
            struct kiln_value *y64 = cast(x64, (int)f->dt, 25, sat, NULL, &err, NULL);
            CHECK(y64, "Cast double -> %s: %s", kiln_dtype_name(f->dt), err.msg);
            int bad = 0;
            for (size_t j = 0; j < N && y32 && y64 && bad < 5; j++) {
                unsigned w32 = ref_encode(f, a[j], sat), w64 = ref_encode(f, b[j], sat);
                unsigned g32 = ((uint8_t *)y32->t.data)[j], g64 = ((uint8_t *)y64->t.data)[j];
                if (g32 != w32 || g64 != w64) bad++;
                CHECK(g32 == w32, "%s sat=%d from float %.9g: got 0x%02x want 0x%02x",
                      kiln_dtype_name(f->dt), sat, a[j], g32, w32);
                CHECK(g64 == w64, "%s sat=%d from double %.17g: got 0x%02x want 0x%02x",
                      kiln_dtype_name(f->dt), sat, b[j], g64, w64);
            }
            kiln_value_free(y32);
            kiln_value_free(y64);
            kiln_value_free(x32);
            kiln_value_free(x64);
        }
    }
}

static void test_e8m0(void)
{
    static const struct {
        double x;
        int sat;
        const char *rm;
        uint8_t want;
    } c[] = {
        {1.0, 1, "up", 127},        {1.1, 1, "up", 128},       {1.1, 1, "down", 127},
        {1.49, 1, "nearest", 127},  {1.5, 1, "nearest", 128},  {0.124, 1, "up", 124},
        {0.0, 1, "up", 0},          {0.0, 0, "nearest", 255},  {INFINITY, 1, "up", 254},
        {INFINITY, 0, "up", 255},   {1e39, 1, "up", 254},      {NAN, 1, "up", 255},
        {3.0, 1, "down", 128},      {8.0, 1, "up", 130},       {0x1p127, 1, "up", 254},
        {0x1.8p127, 0, "up", 255},  {0x1.8p127, 1, "down", 254},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        double v = c[i].x;
        struct kiln_value *x = new_vec(KILN_DTYPE_F64, 1), *y;
        ((double *)x->t.data)[0] = v;
        kiln_err err;
        y = cast(x, KILN_DTYPE_F8E8M0, 25, c[i].sat, c[i].rm, &err, NULL);
        CHECK(y && ((uint8_t *)y->t.data)[0] == c[i].want, "e8m0(%g, sat %d, %s) = %d; want %d",
              v, c[i].sat, c[i].rm, y ? ((uint8_t *)y->t.data)[0] : -1, c[i].want);
        kiln_value_free(y);
        kiln_value_free(x);
    }
}

/* ------------------------------------------------------------------ wide types */

static void test_f16_bf16(void)
{
    /* Nearest-even from double with one rounding: 1 + 2^-11 + 2^-40 lies just above the
     * midpoint between 1 and 1 + 2^-10, so it must round up (float32 would first round it
     * to the midpoint, and then to even = 1.0). */
    struct kiln_value *x = new_vec(KILN_DTYPE_F64, 4), *y;
    double *d = x->t.data;
    d[0] = 1 + 0x1p-11 + 0x1p-40;
    d[1] = 1 + 0x1p-11;      /* the tie itself: even -> 1.0 */
    d[2] = 65520;            /* rounds past 65504: Inf */
    d[3] = -0x1p-25;         /* below half the smallest subnormal: -0 */
    kiln_err err;
    y = cast(x, KILN_DTYPE_F16, 13, -1, NULL, &err, NULL);
    CHECK(y, "double -> float16: %s", err.msg);
    if (y) {
        const uint16_t *h = y->t.data;
        CHECK(h[0] == 0x3C01 && h[1] == 0x3C00 && h[2] == 0x7C00 && h[3] == 0x8000,
              "double -> float16: %04x %04x %04x %04x", h[0], h[1], h[2], h[3]);
        kiln_value_free(y);
    }
    y = cast(x, KILN_DTYPE_BF16, 13, -1, NULL, &err, NULL);
    CHECK(y && ((uint16_t *)y->t.data)[1] == 0x3F80, "double -> bfloat16 of 1+2^-11");
    kiln_value_free(y);
    kiln_value_free(x);

    /* float32 -> float16 -> float32 and double -> float16 agree with the float32 path on
     * values that are floats (both are nearest-even) */
    enum { N = 1000 };
    struct kiln_value *xf = new_vec(KILN_DTYPE_F32, N), *xd = new_vec(KILN_DTYPE_F64, N);
    for (size_t i = 0; i < N; i++) {
        /* within float16's range */
        float v = (float)ldexp(rng_range(-2, 2), (int)rng_range(-26, 15));
        ((float *)xf->t.data)[i] = v;
        ((double *)xd->t.data)[i] = v;
    }
    for (int t = 0; t < 2; t++) {
        int to = t ? KILN_DTYPE_BF16 : KILN_DTYPE_F16;
        struct kiln_value *a = cast(xf, to, 13, -1, NULL, &err, NULL);
        struct kiln_value *b = cast(xd, to, 13, -1, NULL, &err, NULL);
        CHECK(a && b && memcmp(a->t.data, b->t.data, N * 2) == 0,
              "float -> %s and double -> %s differ", kiln_dtype_name(to), kiln_dtype_name(to));
        /* and back to float is exact and within half an ulp */
        struct kiln_value *back = a ? cast(a, KILN_DTYPE_F32, 13, -1, NULL, &err, NULL) : NULL;
        for (size_t i = 0; back && i < N; i++) {
            double v = ((float *)xf->t.data)[i], g = ((float *)back->t.data)[i];
            double ulp = t ? 0x1p-8 : 0x1p-11;
            CHECK(fabs(g - v) <= ulp * fabs(v) + (t ? 0 : 0x1p-25), "%s round trip of %g gave %g",
                  kiln_dtype_name(to), v, g);
        }
        kiln_value_free(back);
        kiln_value_free(a);
        kiln_value_free(b);
    }
    kiln_value_free(xf);
    kiln_value_free(xd);
}

/* Cast x (given as doubles into dtype from) to `to` and compare with want (as doubles). */
static void check_pair(kiln_dtype from, kiln_dtype to, const double *in, const double *want,
                       size_t n)
{
    struct kiln_value *x = new_vec(from, n), *y;
    for (size_t i = 0; i < n; i++) {
        if (from == KILN_DTYPE_U64)
            ((uint64_t *)x->t.data)[i] = (uint64_t)in[i];
        else if (from == KILN_DTYPE_I64)
            ((int64_t *)x->t.data)[i] = (int64_t)in[i];
        else
            kiln_tensor_set_f64(&x->t, i, in[i]);
    }
    kiln_err err;
    y = cast(x, (int)to, 21, -1, NULL, &err, NULL);
    CHECK(y && y->t.dtype == to, "%s -> %s: %s", kiln_dtype_name(from), kiln_dtype_name(to),
          y ? "wrong dtype" : err.msg);
    for (size_t i = 0; y && i < n; i++) {
        double got = to == KILN_DTYPE_U64 ? (double)((uint64_t *)y->t.data)[i]
                                          : kiln_tensor_get_f64(&y->t, i);
        CHECK((isnan(got) && isnan(want[i])) || got == want[i],
              "%s -> %s of %.17g: got %.17g want %.17g",
              kiln_dtype_name(from), kiln_dtype_name(to), in[i], got, want[i]);
    }
    kiln_value_free(y);
    kiln_value_free(x);
}

static void test_int_rules(void)
{
    /* float -> int truncates toward zero, NaN -> 0, then keeps the low bits */
    check_pair(KILN_DTYPE_F32, KILN_DTYPE_I32, (double[]){2.9, -2.9, NAN, -0.0, 1e6},
               (double[]){2, -2, 0, 0, 1e6}, 5);
    check_pair(KILN_DTYPE_F32, KILN_DTYPE_I4, (double[]){-9, -8, 7, 8, 15, 2.5},
               (double[]){7, -8, 7, -8, -1, 2}, 6);
    check_pair(KILN_DTYPE_F32, KILN_DTYPE_U4, (double[]){-1, 15, 16, 3.9},
               (double[]){15, 15, 0, 3}, 4);
    check_pair(KILN_DTYPE_F32, KILN_DTYPE_I2, (double[]){-3, -2, -1, 0, 1, 2, 3},
               (double[]){1, -2, -1, 0, 1, -2, -1}, 7);
    check_pair(KILN_DTYPE_F32, KILN_DTYPE_U2, (double[]){-3, 3, 4}, (double[]){1, 3, 0}, 3);
    check_pair(KILN_DTYPE_F32, KILN_DTYPE_U8, (double[]){-1, 255.5, 256}, (double[]){255, 255, 0},
               3);
    check_pair(KILN_DTYPE_F64, KILN_DTYPE_U64, (double[]){1.8e19, -1, 4.0},
               (double[]){18000000000000000000.0, 18446744073709551615.0, 4}, 3);
    /* int -> int wraps; bool is != 0 */
    check_pair(KILN_DTYPE_I16, KILN_DTYPE_I8, (double[]){200, -129, 5}, (double[]){-56, 127, 5}, 3);
    check_pair(KILN_DTYPE_I32, KILN_DTYPE_U16, (double[]){-1, 65536, 70000},
               (double[]){65535, 0, 4464}, 3);
    check_pair(KILN_DTYPE_I64, KILN_DTYPE_BOOL, (double[]){0, -5, 1 << 20}, (double[]){0, 1, 1}, 3);
    check_pair(KILN_DTYPE_F32, KILN_DTYPE_BOOL, (double[]){0, -0.0, NAN, 1e-30, -INFINITY},
               (double[]){0, 0, 1, 1, 1}, 5);
    check_pair(KILN_DTYPE_BOOL, KILN_DTYPE_F16, (double[]){0, 1}, (double[]){0, 1}, 2);
    check_pair(KILN_DTYPE_I4, KILN_DTYPE_F32, (double[]){-8, 7, -1}, (double[]){-8, 7, -1}, 3);
    check_pair(KILN_DTYPE_U4, KILN_DTYPE_I8, (double[]){15, 0}, (double[]){15, 0}, 2);
    /* int64 -> float32 rounds once: 2^53 + 2^29 + 1 is just above a float tie (through
     * double it would become the tie 2^53 + 2^29 and round to even, down) */
    struct kiln_value *x = new_vec(KILN_DTYPE_I64, 1), *y;
    ((int64_t *)x->t.data)[0] = (INT64_C(1) << 53) + (INT64_C(1) << 29) + 1;
    kiln_err err;
    y = cast(x, KILN_DTYPE_F32, 13, -1, NULL, &err, NULL);
    CHECK(y && ((float *)y->t.data)[0] == 0x1p53f + 0x1p30f, "int64 2^53+2^29+1 -> float: %.17g",
          y ? ((float *)y->t.data)[0] : 0.0);
    kiln_value_free(y);
    kiln_value_free(x);
    x = new_vec(KILN_DTYPE_U64, 1);
    ((uint64_t *)x->t.data)[0] = UINT64_MAX;
    y = cast(x, KILN_DTYPE_F64, 13, -1, NULL, &err, NULL);
    CHECK(y && ((double *)y->t.data)[0] == 0x1p64, "uint64 max -> double");
    kiln_value_free(y);
    kiln_value_free(x);
    /* float -> float: out of range is Inf */
    check_pair(KILN_DTYPE_F64, KILN_DTYPE_F32, (double[]){1e300, -1e300, 1e-300},
               (double[]){INFINITY, -INFINITY, 0}, 3);
    check_pair(KILN_DTYPE_F32, KILN_DTYPE_F16, (double[]){1e6, NAN}, (double[]){INFINITY, NAN}, 2);

    /* sizes around the chunk: every element of a long tensor */
    static const size_t sizes[] = {0, 1, 7, 1000};
    for (size_t s = 0; s < 4; s++) {
        size_t n = sizes[s];
        double *in = malloc(n * sizeof *in + 1), *want = malloc(n * sizeof *want + 1);
        for (size_t i = 0; i < n; i++) {
            in[i] = nearbyint(rng_range(-1e9, 1e9)) + 0.25;
            want[i] = trunc(in[i]);
        }
        check_pair(KILN_DTYPE_F64, KILN_DTYPE_I64, in, want, n);
        for (size_t i = 0; i < n; i++) want[i] = (double)(float)in[i];
        check_pair(KILN_DTYPE_F64, KILN_DTYPE_F32, in, want, n);
        free(in);
        free(want);
    }
}

/* ------------------------------------------------------------------ strings */

static void test_strings(void)
{
    kiln_err err;
    /* float32 -> string: numpy's str() layout */
    static const float fv[] = {0.1f, 1e20f, 100.0f, 1.5e-5f, -0.0f, NAN, INFINITY, -INFINITY,
                               123456789.0f, 0.0001f, 3.4028235e38f, 1e16f, 1e15f};
    static const char *fw[] = {"0.1", "1e+20", "100.0", "1.5e-05", "-0.0", "NaN", "INF",
                               "-INF", "123456790.0", "0.0001", "3.4028235e+38", "1e+16",
                               "1000000000000000.0"};
    struct kiln_value *x = vec_of(KILN_DTYPE_F32, 13, fv);
    struct kiln_value *y = cast(x, KILN_DTYPE_STRING, 13, -1, NULL, &err, NULL);
    CHECK(y, "float -> string: %s", err.msg);
    for (size_t i = 0; y && i < 13; i++)
        CHECK(strcmp(((char **)y->t.data)[i], fw[i]) == 0, "float %g -> '%s'; want '%s'", fv[i],
              ((char **)y->t.data)[i], fw[i]);
    kiln_value_free(y);
    kiln_value_free(x);

    /* float16 and double use their own shortest digits */
    x = new_vec(KILN_DTYPE_F16, 1);
    ((uint16_t *)x->t.data)[0] = 0x2E66; /* the float16 nearest 0.1 */
    y = cast(x, KILN_DTYPE_STRING, 13, -1, NULL, &err, NULL);
    CHECK(y && strcmp(((char **)y->t.data)[0], "0.1") == 0, "float16 0.1 -> '%s'",
          y ? ((char **)y->t.data)[0] : err.msg);
    kiln_value_free(y);
    kiln_value_free(x);
    check_pair(KILN_DTYPE_F64, KILN_DTYPE_F64, (double[]){0.1}, (double[]){0.1}, 1);
    x = new_vec(KILN_DTYPE_F64, 2);
    ((double *)x->t.data)[0] = 0.1;
    ((double *)x->t.data)[1] = 1.0 / 3;
    y = cast(x, KILN_DTYPE_STRING, 13, -1, NULL, &err, NULL);
    CHECK(y && strcmp(((char **)y->t.data)[0], "0.1") == 0 &&
              strcmp(((char **)y->t.data)[1], "0.3333333333333333") == 0,
          "double -> string: '%s' '%s'", y ? ((char **)y->t.data)[0] : "",
          y ? ((char **)y->t.data)[1] : "");
    kiln_value_free(y);
    kiln_value_free(x);

    /* integers and bool */
    x = new_vec(KILN_DTYPE_I64, 2);
    ((int64_t *)x->t.data)[0] = -42;
    ((int64_t *)x->t.data)[1] = INT64_MIN;
    y = cast(x, KILN_DTYPE_STRING, 13, -1, NULL, &err, NULL);
    CHECK(y && strcmp(((char **)y->t.data)[0], "-42") == 0 &&
              strcmp(((char **)y->t.data)[1], "-9223372036854775808") == 0,
          "int64 -> string");
    kiln_value_free(y);
    kiln_value_free(x);
    x = new_vec(KILN_DTYPE_BOOL, 2);
    ((uint8_t *)x->t.data)[1] = 1;
    y = cast(x, KILN_DTYPE_STRING, 13, -1, NULL, &err, NULL);
    CHECK(y && strcmp(((char **)y->t.data)[0], "False") == 0 &&
              strcmp(((char **)y->t.data)[1], "True") == 0,
          "bool -> string");
    kiln_value_free(y);
    kiln_value_free(x);

    /* string -> float: the reserved spellings in any case, scientific notation */
    static const char *sv[] = {"3.14", "1E8", "-INF", "+inf", "INF", "NaN", "nan", " 2 ", "-1e-5"};
    static const float sw[] = {3.14f, 1e8f, -INFINITY, INFINITY, INFINITY, NAN, NAN, 2, -1e-5f};
    x = vec_of(KILN_DTYPE_STRING, 9, sv);
    y = cast(x, KILN_DTYPE_F32, 13, -1, NULL, &err, NULL);
    CHECK(y, "string -> float: %s", err.msg);
    for (size_t i = 0; y && i < 9; i++) {
        float g = ((float *)y->t.data)[i];
        CHECK((isnan(sw[i]) && isnan(g)) || g == sw[i], "'%s' -> %g; want %g", sv[i], g, sw[i]);
    }
    kiln_value_free(y);
    /* ... to integers: "3.14" truncates to 3, "-INF" saturates then wraps to int8's low bits */
    y = cast(x, KILN_DTYPE_I32, 13, -1, NULL, &err, NULL);
    CHECK(y && ((int32_t *)y->t.data)[0] == 3 && ((int32_t *)y->t.data)[1] == 100000000 &&
              ((int32_t *)y->t.data)[7] == 2,
          "string -> int32");
    kiln_value_free(y);
    kiln_value_free(x);

    static const char *iv[] = {"18446744073709551615", "-7", "100.5", "true", "0"};
    x = vec_of(KILN_DTYPE_STRING, 5, iv);
    y = cast(x, KILN_DTYPE_U64, 13, -1, NULL, &err, NULL);
    CHECK(!y, "'true' cast to uint64 should fail");
    kiln_value_free(x);
    x = vec_of(KILN_DTYPE_STRING, 3, iv);
    y = cast(x, KILN_DTYPE_U64, 13, -1, NULL, &err, NULL);
    CHECK(y && ((uint64_t *)y->t.data)[0] == UINT64_MAX &&
              ((uint64_t *)y->t.data)[1] == (uint64_t)-7 && ((uint64_t *)y->t.data)[2] == 100,
          "string -> uint64");
    kiln_value_free(y);
    kiln_value_free(x);
    x = vec_of(KILN_DTYPE_STRING, 4, (const char *[]){"true", "False", "0", "2.5"});
    y = cast(x, KILN_DTYPE_BOOL, 13, -1, NULL, &err, NULL);
    CHECK(y && memcmp(y->t.data, (uint8_t[]){1, 0, 0, 1}, 4) == 0, "string -> bool");
    kiln_value_free(y);
    kiln_value_free(x);

    /* text that is not a number fails with the element named */
    x = vec_of(KILN_DTYPE_STRING, 2, (const char *[]){"1", "Hello World!"});
    kiln_status st;
    y = cast(x, KILN_DTYPE_F32, 13, -1, NULL, &err, &st);
    CHECK(!y && st == KILN_E_INVALID_ARG && strstr(err.msg, "element 1") &&
              strstr(err.msg, "Hello World!"),
          "bad string: st %d '%s'", st, err.msg);
    kiln_value_free(x);

    /* random floats survive float -> string -> float exactly */
    enum { N = 1000 };
    float *rv = malloc(N * sizeof *rv);
    for (size_t i = 0; i < N; i++) {
        uint32_t bits = (uint32_t)rng_u64();
        memcpy(&rv[i], &bits, 4);
        if (!isfinite(rv[i])) rv[i] = 1.5f;
    }
    x = vec_of(KILN_DTYPE_F32, N, rv);
    y = cast(x, KILN_DTYPE_STRING, 13, -1, NULL, &err, NULL);
    struct kiln_value *z = y ? cast(y, KILN_DTYPE_F32, 13, -1, NULL, &err, NULL) : NULL;
    CHECK(z && memcmp(z->t.data, rv, N * sizeof *rv) == 0, "float -> string -> float not exact");
    kiln_value_free(z);
    kiln_value_free(y);
    kiln_value_free(x);
    free(rv);
}

/* ------------------------------------------------------------------ attributes, CastLike */

static void test_forms(void)
{
    kiln_err err;
    float v[3] = {1.5f, -2.5f, 3};
    struct kiln_value *x = vec_of(KILN_DTYPE_F32, 3, v);

    /* opset 1: `to` is a type name */
    struct kiln_attr a = {0};
    a.name = "to", a.type = KILN_ATTR_STRING, a.s = "INT32";
    const char *ins[2] = {"x", "like"}, *outs[1] = {"y"};
    struct kiln_node node = {.name = "c1", .op_type = "Cast", .domain = "", .n_in = 1, .n_out = 1,
                             .n_attr = 1, .inputs = ins, .outputs = outs, .attrs = &a, .since = 1};
    struct kiln_value *o[1] = {NULL};
    struct kiln_kctx k = {.node = &node, .opset = 1, .n_in = 1, .n_out = 1, .in = &x, .out = o,
                          .err = &err};
    kiln_status st = kiln_cpu_find_op("", "Cast", 1)->run(&k);
    CHECK(st == KILN_OK && o[0]->t.dtype == KILN_DTYPE_I32 && ((int32_t *)o[0]->t.data)[1] == -2,
          "Cast-1 to='INT32': %s", err.msg);
    kiln_value_free(o[0]);

    /* CastLike takes the dtype of input 1 */
    struct kiln_value *like = new_vec(KILN_DTYPE_F16, 0);
    struct kiln_value *in2[2] = {x, like};
    struct kiln_node node2 = {.name = "cl", .op_type = "CastLike", .domain = "", .n_in = 2,
                              .n_out = 1, .inputs = ins, .outputs = outs, .since = 15};
    struct kiln_kctx k2 = {.node = &node2, .opset = 15, .n_in = 2, .n_out = 1, .in = in2,
                           .out = o, .err = &err};
    o[0] = NULL;
    st = kiln_cpu_find_op("", "CastLike", 15)->run(&k2);
    CHECK(st == KILN_OK && o[0]->t.dtype == KILN_DTYPE_F16 && o[0]->t.dims[0] == 3 &&
              ((uint16_t *)o[0]->t.data)[0] == 0x3E00,
          "CastLike to float16: %s", err.msg);
    kiln_value_free(o[0]);
    kiln_value_free(like);

    /* same type is a copy; an invalid `to` and round_mode are refused */
    struct kiln_value *y = cast(x, KILN_DTYPE_F32, 13, -1, NULL, &err, NULL);
    CHECK(y && y != x && memcmp(y->t.data, v, sizeof v) == 0, "float -> float copy");
    kiln_value_free(y);
    y = cast(x, 99, 13, -1, NULL, &err, &st);
    CHECK(!y && st == KILN_E_INVALID_MODEL, "to=99 accepted");
    y = cast(x, KILN_DTYPE_C64, 13, -1, NULL, &err, &st);
    CHECK(!y && st == KILN_E_UNSUPPORTED && strstr(err.msg, "complex64"), "to=complex64: '%s'",
          err.msg);
    y = cast(x, KILN_DTYPE_F8E8M0, 25, 1, "sideways", &err, &st);
    CHECK(!y && strstr(err.msg, "sideways"), "round_mode=sideways accepted");
    kiln_value_free(x);
}

int main(void)
{
    rng_seed(0x13198A2E03707344ull);
    test_narrow_decode();
    test_narrow_encode();
    test_e8m0();
    test_f16_bf16();
    test_int_rules();
    test_strings();
    test_forms();
    return test_summary("test_cast");
}
