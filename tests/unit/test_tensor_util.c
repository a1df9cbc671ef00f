/* test_tensor_util.c: the shared kernel helpers of src/cpu/tensor_util.h and the inline
 * float16/bfloat16 conversions of src/ir/half.h.
 *
 * half.h: every float16 code widens and narrows back to itself (NaNs stay NaN), the inline
 * and out-of-line (ir.h) conversions agree bit for bit on all float16 codes and on a sweep of
 * float32 values, and ties round to even at normal, subnormal and overflow boundaries.
 * tensor_util.h: dtype conversions (int4 sign extension, uint64 bits, bool), stores that wrap
 * or saturate as documented, float32 staging round trips, axis normalization and its error,
 * string copies that keep the shared placeholder for empty strings, and slice selection
 * (repeated and reordered slices, strings copied, empty outputs).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cpu/tensor_util.h"
#include "test_support.h"

static uint32_t bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static void half_round_trips(void)
{
    int bad = 0;
    for (uint32_t h = 0; h < 0x10000; h++) {
        float f = kiln_half_f16_to_f32((uint16_t)h);
        if (bits(f) != bits(kiln_f16_to_f32((uint16_t)h))) bad++;
        bool nan = (h & 0x7c00) == 0x7c00 && (h & 0x3ff);
        if (nan ? !isnan(f) : kiln_half_f32_to_f16(f) != h) bad++;
        float b = kiln_half_bf16_to_f32((uint16_t)h);
        bool bnan = (h & 0x7f80) == 0x7f80 && (h & 0x7f);
        if (bnan ? !isnan(b) : kiln_half_f32_to_bf16(b) != h) bad++;
    }
    CHECK(bad == 0, "%d float16/bfloat16 codes do not round-trip", bad);

    /* inline and out-of-line narrowing agree on a sweep of float32 bit patterns */
    bad = 0;
    for (uint64_t u = 0; u < 0x100000000ull; u += 0x10001) {
        float f = from_bits((uint32_t)u);
        if (kiln_half_f32_to_f16(f) != kiln_f32_to_f16(f)) bad++;
        if (kiln_half_f32_to_bf16(f) != kiln_f32_to_bf16(f)) bad++;
    }
    CHECK(bad == 0, "%d float32 values narrow differently inline and out of line", bad);
}

static void half_rounding(void)
{
    static const struct {
        float x;
        uint16_t f16;
    } cases[] = {
        {1.0f + 0x1p-11f, 0x3c00},      /* tie between 1 and 1+2^-10: even (1) */
        {1.0f + 3 * 0x1p-11f, 0x3c02},  /* tie: up to the even mantissa */
        {0x1p-24f, 0x0001},             /* smallest subnormal */
        {0x1p-25f, 0x0000},             /* tie between 0 and it: even (0) */
        {3 * 0x1p-25f, 0x0002},         /* tie between 1 and 2 subnormal steps: 2 */
        {65519.0f, 0x7bff},             /* below the overflow tie */
        {65520.0f, 0x7c00},             /* the tie with the next binade: Inf */
        {-INFINITY, 0xfc00},
        {-0.0f, 0x8000},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        CHECK(kiln_half_f32_to_f16(cases[i].x) == cases[i].f16, "f16(%a) = %#x; expected %#x",
              (double)cases[i].x, kiln_half_f32_to_f16(cases[i].x), cases[i].f16);
    CHECK(kiln_half_f32_to_bf16(1.0f + 0x1p-8f) == 0x3f80, "bf16 tie does not go to even");
    CHECK(kiln_half_f32_to_bf16(1.0f + 3 * 0x1p-8f) == 0x3f82, "bf16 tie does not go up to even");
    CHECK(kiln_half_f32_to_bf16(0x1.fffffep127f) == 0x7f80, "bf16 of FLT_MAX is not Inf");
}

static void conversions(void)
{
    const int8_t i4[] = {-8, -1, 0, 7};
    double d[4];
    int64_t v[4];
    kiln_to_f64_n(KILN_DTYPE_I4, i4, 0, 4, d);
    CHECK(d[0] == -8 && d[1] == -1 && d[3] == 7, "int4 to double: %g %g %g", d[0], d[1], d[3]);
    kiln_to_i64_n(KILN_DTYPE_I4, i4, 1, 3, v);
    CHECK(v[0] == -1 && v[1] == 0 && v[2] == 7, "int4 to int64 from offset 1");
    const uint64_t u64[] = {UINT64_MAX, 1};
    kiln_to_i64_n(KILN_DTYPE_U64, u64, 0, 2, v);
    CHECK((uint64_t)v[0] == UINT64_MAX && v[1] == 1, "uint64 bits not kept");
    kiln_to_f64_n(KILN_DTYPE_U64, u64, 0, 1, d);
    CHECK(d[0] == 0x1p64, "uint64 max as double is %a", d[0]);
    const uint16_t h[] = {0x3c00, 0xc000}; /* 1, -2 */
    kiln_to_f64_n(KILN_DTYPE_F16, h, 0, 2, d);
    CHECK(d[0] == 1 && d[1] == -2, "float16 to double: %g %g", d[0], d[1]);
    const uint8_t e4m3[] = {0x38, 0x7f}; /* 1, NaN */
    kiln_to_f64_n(KILN_DTYPE_F8E4M3FN, e4m3, 0, 2, d);
    CHECK(d[0] == 1 && isnan(d[1]), "float8e4m3fn to double: %g %g", d[0], d[1]);

    /* stores: int16 wraps, bool is != 0, float16 rounds, int32 saturates from double */
    int16_t s16[2] = {0};
    struct kiln_tensor t = {.dtype = KILN_DTYPE_I16, .rank = 1, .dims = {2}, .data = s16};
    kiln_store_i64(&t, (const int64_t[]){70000, -1}, 2);
    CHECK(s16[0] == (int16_t)(70000 - 65536) && s16[1] == -1, "int16 store: %d %d", s16[0], s16[1]);
    uint8_t b[2] = {0};
    t.dtype = KILN_DTYPE_BOOL;
    t.data = b;
    kiln_store_i64(&t, (const int64_t[]){256, 0}, 2);
    CHECK(b[0] == 1 && b[1] == 0, "bool store: %d %d", b[0], b[1]);
    uint16_t hf[2] = {0};
    t.dtype = KILN_DTYPE_F16;
    t.data = hf;
    kiln_store_f64(&t, (const double[]){1.0 + 0x1p-11, 1e6}, 2);
    CHECK(hf[0] == 0x3c00 && hf[1] == 0x7c00, "float16 store: %#x %#x", hf[0], hf[1]);
    int32_t i32[1] = {0};
    t.dtype = KILN_DTYPE_I32;
    t.dims[0] = 1;
    t.data = i32;
    kiln_store_f64(&t, (const double[]){1e12}, 1);
    CHECK(i32[0] == INT32_MAX, "int32 store of 1e12 is %d", i32[0]);
}

static void kernel_helpers(void)
{
    struct kiln_node node = {.name = "n", .op_type = "Test", .domain = ""};
    kiln_err err;
    struct kiln_kctx k = {.node = &node, .opset = 1, .err = &err};

    int a = -1;
    CHECK(kiln_norm_axis(&k, -1, 3, "attribute 'axis'", &a) == KILN_OK && a == 2, "axis -1 -> %d",
          a);
    CHECK(kiln_norm_axis(&k, 0, 1, "axis", &a) == KILN_OK && a == 0, "axis 0 -> %d", a);
    kiln_status st = kiln_norm_axis(&k, 3, 3, "attribute 'axis'", &a);
    CHECK(st == KILN_E_INVALID_ARG && strstr(err.msg, "attribute 'axis' is 3") &&
              strstr(err.msg, "[-3, 2]"),
          "axis 3 of rank 3: %d '%s'", st, err.msg);
    CHECK(kiln_norm_axis(&k, -4, 3, "axis", &a) == KILN_E_INVALID_ARG, "axis -4 accepted");

    /* float16 staging round trip, and float32 staging aliases the tensor's data */
    uint16_t h[3] = {0x3c00, 0x3555, 0xfc00}; /* 1, ~1/3, -Inf */
    struct kiln_tensor th = {.dtype = KILN_DTYPE_F16, .rank = 1, .dims = {3}, .data = h};
    const float *f = NULL;
    CHECK(kiln_stage_f32(&k, &th, &f) == KILN_OK && f[0] == 1 && isinf(f[2]) && f[2] < 0,
          "float16 staging");
    uint16_t out[3] = {0};
    struct kiln_tensor to = th;
    to.data = out;
    float *of = NULL;
    CHECK(kiln_stage_out_f32(&k, &to, &of) == KILN_OK && (void *)of != (void *)out,
          "float16 output staging");
    memcpy(of, f, 3 * sizeof *f);
    kiln_unstage_f32(&to, of);
    CHECK(memcmp(out, h, sizeof h) == 0, "float16 unstage: %#x %#x %#x", out[0], out[1], out[2]);
    float x32[2] = {1, 2};
    struct kiln_tensor t32 = {.dtype = KILN_DTYPE_F32, .rank = 1, .dims = {2}, .data = x32};
    CHECK(kiln_stage_f32(&k, &t32, &f) == KILN_OK && f == x32, "float32 staging copies");

    /* loads: what they accept and what they refuse */
    double *d = NULL;
    int64_t *v = NULL;
    CHECK(kiln_load_f64(&k, &th, "x", &d) == KILN_OK && d[1] == (double)kiln_half_f16_to_f32(0x3555), "load_f64");
    kiln_free(d);
    uint8_t e4m3[1] = {0x38};
    struct kiln_tensor t8 = {.dtype = KILN_DTYPE_F8E4M3FN, .rank = 1, .dims = {1}, .data = e4m3};
    st = kiln_load_f64(&k, &t8, "x", &d);
    CHECK(st == KILN_E_UNSUPPORTED && !d && strstr(err.msg, "float8e4m3fn"), "load_f64 float8: %s",
          err.msg);
    st = kiln_load_i64(&k, &th, "x", &v);
    CHECK(st == KILN_E_UNSUPPORTED && !v, "load_i64 accepted float16");
    int8_t i8[2] = {-5, 5};
    struct kiln_tensor ti = {.dtype = KILN_DTYPE_I8, .rank = 1, .dims = {2}, .data = i8};
    CHECK(kiln_load_i64(&k, &ti, "x", &v) == KILN_OK && v[0] == -5 && v[1] == 5, "load_i64");
    kiln_free(v);

    /* strings: owned copies of non-empty entries; empty and NULL keep the placeholder */
    struct kiln_tensor ts;
    CHECK(kiln_tensor_alloc(&ts, KILN_DTYPE_STRING, 1, (const int64_t[]){3}, &err) == KILN_OK,
          "string alloc");
    char **e = ts.data;
    char *ph = e[0];
    const char *src[3] = {"abc", "", NULL};
    CHECK(kiln_copy_strings(&k, e, src, 3) == KILN_OK && strcmp(e[0], "abc") == 0 &&
              e[0] != src[0] && e[1] == ph && e[2] == ph,
          "string copy");
    kiln_tensor_fini(&ts);
    kiln_kctx_free_scratch(&k);
}

static void take_slices(void)
{
    struct kiln_node node = {.name = "n", .op_type = "Test", .domain = ""};
    kiln_err err;
    struct kiln_kctx k = {.node = &node, .opset = 1, .err = &err};

    /* int32 [2, 3, 2] viewed as outer 2, dim 3, inner 2: slices 2, 0, 2 of each block */
    int32_t x[12];
    for (int i = 0; i < 12; i++) x[i] = i;
    struct kiln_tensor tx = {.dtype = KILN_DTYPE_I32, .rank = 3, .dims = {2, 3, 2}, .data = x};
    int32_t y[12] = {0};
    struct kiln_tensor ty = {.dtype = KILN_DTYPE_I32, .rank = 3, .dims = {2, 3, 2}, .data = y};
    const int64_t sel[3] = {2, 0, 2};
    static const int32_t want[12] = {4, 5, 0, 1, 4, 5, 10, 11, 6, 7, 10, 11};
    CHECK(kiln_take_slices(&k, &ty, &tx, 2, 3, 2, sel, 3) == KILN_OK &&
              memcmp(y, want, sizeof y) == 0,
          "int32 slices: %d %d %d %d ... %d %d", y[0], y[1], y[2], y[3], y[10], y[11]);

    /* an empty output writes nothing, even with no data pointer */
    struct kiln_tensor te = {.dtype = KILN_DTYPE_I32, .rank = 3, .dims = {2, 0, 2}, .data = NULL};
    CHECK(kiln_take_slices(&k, &te, &tx, 2, 3, 2, sel, 0) == KILN_OK, "empty selection");

    /* strings: reversed, non-empty ones copied (owned), empty ones keep the placeholder */
    const char *src[3] = {"a", "", "c"};
    struct kiln_tensor tsx = {.dtype = KILN_DTYPE_STRING, .rank = 1, .dims = {3}, .data = src};
    struct kiln_tensor ts;
    CHECK(kiln_tensor_alloc(&ts, KILN_DTYPE_STRING, 1, (const int64_t[]){3}, &err) == KILN_OK,
          "string alloc");
    char **e = ts.data;
    char *ph = e[0];
    const int64_t rev[3] = {2, 1, 0};
    CHECK(kiln_take_slices(&k, &ts, &tsx, 1, 3, 1, rev, 3) == KILN_OK && strcmp(e[0], "c") == 0 &&
              e[0] != src[2] && e[1] == ph && strcmp(e[2], "a") == 0 && e[2] != src[0],
          "string slices");
    kiln_tensor_fini(&ts);
}

int main(void)
{
    half_round_trips();
    half_rounding();
    conversions();
    kernel_helpers();
    take_slices();
    return test_summary("test_tensor_util");
}
