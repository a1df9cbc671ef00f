/* test_binary.c: the CPU kernels of src/cpu/ops/binary.c and src/cpu/ops/quant.c against
 * straightforward references.
 *
 * Binary ops: 300 random broadcast pairs (rank 0..5, dims from {0,1,2,3,5}, size-1 dims
 * dropped at random so inputs broadcast both ways) per arithmetic op in float32, float64 and
 * float16, compared per element with the op evaluated on the same inputs through a naive
 * index computation (bit-exact: each is one correctly rounded IEEE operation). Then the
 * integer rules (truncating Div, x/0, INT_MIN/-1, Python and C Mod, wrapping Add/Mul,
 * BitShift past the width, bitwise ops), NaN in Min/Max, mixed-type Pow, comparisons and
 * logic with broadcasting, string Equal, variadic Sum/Mean/Max/Min over three shapes, Where
 * (numbers and strings), PRelu, legacy opset-6 broadcasting, and the error messages.
 *
 * Quantization: QuantizeLinear per tensor (ties to even, saturation), per axis, blocked,
 * int4/uint2 ranges and float8 (every e4m3fn/e5m2 code decodes and re-encodes to itself,
 * saturate on and off); DequantizeLinear per axis and blocked; DynamicQuantizeLinear;
 * MatMulInteger and QLinearMatMul (batched, broadcast, per-row/column zero points) against
 * naive loops.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/kernel.h"
#include "test_support.h"

/* Offset in an input of shape (rank, dims) for output element j of shape (orank, odims). */
static size_t bc_off(int rank, const int64_t *dims, int orank, const int64_t *odims, size_t j)
{
    int64_t idx[KILN_MAX_RANK];
    for (int d = orank - 1; d >= 0; d--) {
        idx[d] = (int64_t)(j % (size_t)odims[d]);
        j /= (size_t)odims[d];
    }
    size_t off = 0;
    for (int d = 0; d < rank; d++) {
        int64_t dim = dims[d];
        off = off * (size_t)dim + (size_t)(dim == 1 ? 0 : idx[d + orank - rank]);
    }
    return off;
}

/* Random pair of shapes broadcasting to a random output shape. */
static void random_shapes(int *ra, int64_t *a, int *rb, int64_t *b, int *ro, int64_t *o)
{
    static const int64_t pool[] = {1, 2, 3, 5};
    *ro = rng_int(6);
    for (int d = 0; d < *ro; d++) o[d] = pool[rng_int(4)];
    if (*ro && rng_int(8) == 0) o[rng_int(*ro)] = 0;
    *ra = *ro ? rng_int(*ro + 1) : 0;
    *rb = *ro;
    if (rng_int(2)) { /* either side may be the shorter */
        *rb = *ra;
        *ra = *ro;
    }
    for (int d = 0; d < *ra; d++) a[d] = rng_int(3) == 0 ? 1 : o[d + *ro - *ra];
    for (int d = 0; d < *rb; d++) b[d] = rng_int(3) == 0 ? 1 : o[d + *ro - *rb];
    /* make o exactly the broadcast (a dim both sides set to 1 is 1 in the output) */
    for (int d = 0; d < *ro; d++) {
        int64_t va = d - (*ro - *ra) >= 0 ? a[d - (*ro - *ra)] : 1;
        int64_t vb = d - (*ro - *rb) >= 0 ? b[d - (*ro - *rb)] : 1;
        o[d] = va == 1 ? vb : va;
    }
}

/* ------------------------------------------------------------------ float arithmetic */

enum fop { F_ADD, F_SUB, F_MUL, F_DIV, F_MIN, F_MAX, F_POW };
static const char *const fop_name[] = {"Add", "Sub", "Mul", "Div", "Min", "Max", "Pow"};

/* The op as one rounding in float (f32/f16 compute) or double. */
static double fref(enum fop op, double x, double z, bool dbl)
{
    if (dbl) {
        switch (op) {
        case F_ADD: return x + z;
        case F_SUB: return x - z;
        case F_MUL: return x * z;
        case F_DIV: return x / z;
        case F_MIN: return x < z ? x : z;
        case F_MAX: return x > z ? x : z;
        case F_POW: return pow(x, z);
        }
    }
    float a = (float)x, b = (float)z;
    switch (op) {
    case F_ADD: return a + b;
    case F_SUB: return a - b;
    case F_MUL: return a * b;
    case F_DIV: return a / b;
    case F_MIN: return a < b ? a : b;
    case F_MAX: return a > b ? a : b;
    case F_POW: return (float)pow(a, b);
    }
    return 0;
}

static void test_float_random(void)
{
    static const kiln_dtype dts[] = {KILN_DTYPE_F32, KILN_DTYPE_F64, KILN_DTYPE_F16,
                                     KILN_DTYPE_BF16};
    for (int op = F_ADD; op <= F_POW; op++)
        for (size_t di = 0; di < 4; di++) {
            kiln_dtype dt = dts[di];
            for (int t = 0; t < 300; t++) {
                int ra, rb, ro;
                int64_t a[KILN_MAX_RANK], b[KILN_MAX_RANK], o[KILN_MAX_RANK];
                random_shapes(&ra, a, &rb, b, &ro, o);
                struct kiln_value *in[2] = {new_tensor(dt, ra, a), new_tensor(dt, rb, b)};
                struct kiln_value *y = NULL;
                for (int i = 0; i < 2; i++)
                    for (size_t j = 0; j < kiln_tensor_numel(&in[i]->t); j++)
                        kiln_tensor_set_f64(&in[i]->t, j,
                                            op == F_POW ? rng_range(0.1, 3) : rng_range(-10, 10));
                kiln_err e;
                kiln_status st = run_op(fop_name[op], 14, NULL, 0, in, 2, &y, &e);
                CHECK(st == KILN_OK, "%s %s: %s", fop_name[op], kiln_dtype_name(dt), e.msg);
                if (st) {
                    free_all(in, 2);
                    continue;
                }
                CHECK(y->t.dtype == dt && same_shape(&y->t, ro, o), "%s: output shape",
                      fop_name[op]);
                size_t n = kiln_tensor_numel(&y->t);
                for (size_t j = 0; j < n; j++) {
                    double x = kiln_tensor_get_f64(&in[0]->t, bc_off(ra, a, ro, o, j));
                    double z = kiln_tensor_get_f64(&in[1]->t, bc_off(rb, b, ro, o, j));
                    struct kiln_value *r = scalar(dt, fref(op, x, z, dt == KILN_DTYPE_F64));
                    double want = kiln_tensor_get_f64(&r->t, 0), got = kiln_tensor_get_f64(&y->t, j);
                    kiln_value_free(r);
                    if (got != want) {
                        CHECK(0, "%s %s case %d elem %zu: %g op %g = %.9g, want %.9g",
                              fop_name[op], kiln_dtype_name(dt), t, j, x, z, got, want);
                        break;
                    }
                }
                kiln_value_free(y);
                free_all(in, 2);
            }
        }
}

/* ------------------------------------------------------------------ integer rules */

/* y = op(a, b) elementwise on equal-length vectors of type dt with attributes. */
static void int_case(const char *op, int opset, const struct kiln_attr *attrs, size_t na,
                     kiln_dtype dt, size_t n, const double *a, const double *b,
                     const double *want)
{
    struct kiln_value *in[2] = {vec_f64(dt, n, a), vec_f64(dt, n, b)}, *y = NULL;
    kiln_err e;
    kiln_status st = run_op(op, opset, attrs, na, in, 2, &y, &e);
    CHECK(st == KILN_OK, "%s %s: %s", op, kiln_dtype_name(dt), e.msg);
    for (size_t j = 0; st == KILN_OK && j < n; j++) {
        double got = kiln_tensor_get_f64(&y->t, j);
        CHECK(got == want[j] || (isnan(got) && isnan(want[j])),
              "%s %s: %g, %g -> %g, want %g", op, kiln_dtype_name(dt), a[j], b[j], got, want[j]);
    }
    if (!st) kiln_value_free(y);
    free_all(in, 2);
}

static void test_int_rules(void)
{
    double a[] = {7, -7, 7, -7, 5, -2147483648.0, 0};
    double b[] = {2, 2, -2, -2, 0, -1, 3};
    int_case("Div", 14, NULL, 0, KILN_DTYPE_I32, 7, a, b,
             (double[]){3, -3, -3, 3, 0, -2147483648.0, 0});
    struct kiln_attr fm0 = attr_i("fmod", 0), fm1 = attr_i("fmod", 1);
    int_case("Mod", 13, &fm0, 1, KILN_DTYPE_I32, 7, a, b, (double[]){1, 1, -1, -1, 0, 0, 0});
    int_case("Mod", 13, &fm1, 1, KILN_DTYPE_I32, 7, a, b, (double[]){1, -1, 1, -1, 0, 0, 0});
    int_case("Mod", 13, &fm0, 1, KILN_DTYPE_I8, 4, a, b, (double[]){1, 1, -1, -1});
    int_case("Mod", 13, &fm1, 1, KILN_DTYPE_F32, 4, (double[]){5.5, -5.5, 5.5, -5.5},
             (double[]){2, 2, -2, -2}, (double[]){1.5, -1.5, 1.5, -1.5});
    int_case("Mod", 13, &fm0, 1, KILN_DTYPE_F64, 4, (double[]){5.5, -5.5, 5.5, -5.5},
             (double[]){2, 2, -2, -2}, (double[]){1.5, 0.5, -0.5, -1.5});
    int_case("Mod", 13, &fm0, 1, KILN_DTYPE_U8, 3, (double[]){7, 200, 9}, (double[]){3, 7, 0},
             (double[]){1, 4, 0});
    int_case("Add", 14, NULL, 0, KILN_DTYPE_I8, 2, (double[]){127, -128},
             (double[]){1, -1}, (double[]){-128, 127});
    int_case("Mul", 14, NULL, 0, KILN_DTYPE_U16, 1, (double[]){65535}, (double[]){65535},
             (double[]){1});
    int_case("Mul", 14, NULL, 0, KILN_DTYPE_I32, 1, (double[]){65536}, (double[]){65536},
             (double[]){0});
    int_case("Sub", 14, NULL, 0, KILN_DTYPE_U32, 1, (double[]){0}, (double[]){1},
             (double[]){4294967295.0});
    int_case("Div", 14, NULL, 0, KILN_DTYPE_U8, 3, (double[]){200, 7, 1}, (double[]){3, 0, 2},
             (double[]){66, 0, 0});
    struct kiln_attr left = attr_s("direction", "LEFT"), right = attr_s("direction", "RIGHT");
    int_case("BitShift", 11, &left, 1, KILN_DTYPE_U16, 3, (double[]){1, 65535, 3},
             (double[]){15, 1, 16}, (double[]){32768, 65534, 0});
    int_case("BitShift", 11, &right, 1, KILN_DTYPE_U64, 2, (double[]){256, 5},
             (double[]){8, 64}, (double[]){1, 0});
    int_case("BitwiseAnd", 18, NULL, 0, KILN_DTYPE_I16, 2, (double[]){-1, 12},
             (double[]){0x1234, 10}, (double[]){0x1234, 8});
    int_case("BitwiseOr", 18, NULL, 0, KILN_DTYPE_I32, 1, (double[]){-16}, (double[]){3},
             (double[]){-13});
    int_case("BitwiseXor", 18, NULL, 0, KILN_DTYPE_U8, 1, (double[]){0xF0}, (double[]){0xFF},
             (double[]){0x0F});
    int_case("Pow", 15, NULL, 0, KILN_DTYPE_I64, 4, (double[]){3, -2, 2, 5},
             (double[]){4, 3, -1, 0}, (double[]){81, -8, 0, 1});
    int_case("Max", 13, NULL, 0, KILN_DTYPE_F32, 3, (double[]){NAN, 1, 2},
             (double[]){1, NAN, 1}, (double[]){NAN, NAN, 2});
    int_case("Min", 13, NULL, 0, KILN_DTYPE_U64, 2, (double[]){3, 1e18}, (double[]){4, 5},
             (double[]){3, 5});
}

static void test_pow_mixed(void)
{
    /* float32 base, int64 exponent; int32 base, float32 exponent (truncates like a cast) */
    struct kiln_value *in[2] = {vec_f64(KILN_DTYPE_F32, 3, (double[]){2, 1.5, -3}),
                                vec_f64(KILN_DTYPE_I64, 3, (double[]){3, 2, 3})}, *y = NULL;
    kiln_err e;
    CHECK(run_op("Pow", 15, NULL, 0, in, 2, &y, &e) == KILN_OK, "Pow f32^i64: %s", e.msg);
    if (y) {
        float *d = y->t.data;
        CHECK(y->t.dtype == KILN_DTYPE_F32 && d[0] == 8 && d[1] == 2.25f && d[2] == -27,
              "Pow f32^i64 values");
        kiln_value_free(y);
    }
    free_all(in, 2);
    in[0] = vec_f64(KILN_DTYPE_I32, 3, (double[]){2, 9, 10});
    in[1] = vec_f64(KILN_DTYPE_F32, 3, (double[]){0.5, 0.5, 2});
    CHECK(run_op("Pow", 15, NULL, 0, in, 2, &y, &e) == KILN_OK, "Pow i32^f32: %s", e.msg);
    if (y) {
        int32_t *d = y->t.data;
        CHECK(y->t.dtype == KILN_DTYPE_I32 && d[0] == 1 && d[1] == 3 && d[2] == 100,
              "Pow i32^f32 values %d %d %d", d[0], d[1], d[2]);
        kiln_value_free(y);
    }
    free_all(in, 2);
}

/* ------------------------------------------------------------------ comparisons and logic */

static void test_compare_logic(void)
{
    static const char *const ops[] = {"Equal", "Less", "Greater", "LessOrEqual",
                                      "GreaterOrEqual"};
    for (int op = 0; op < 5; op++)
        for (int t = 0; t < 100; t++) {
            int ra, rb, ro;
            int64_t a[KILN_MAX_RANK], b[KILN_MAX_RANK], o[KILN_MAX_RANK];
            random_shapes(&ra, a, &rb, b, &ro, o);
            kiln_dtype dt = t % 2 ? KILN_DTYPE_I16 : KILN_DTYPE_F32;
            struct kiln_value *in[2] = {new_tensor(dt, ra, a), new_tensor(dt, rb, b)}, *y = NULL;
            for (int i = 0; i < 2; i++)
                for (size_t j = 0; j < kiln_tensor_numel(&in[i]->t); j++)
                    kiln_tensor_set_f64(&in[i]->t, j, (double)rng_int(4));
            kiln_err e;
            kiln_status st = run_op(ops[op], 16, NULL, 0, in, 2, &y, &e);
            CHECK(st == KILN_OK, "%s: %s", ops[op], e.msg);
            if (!st) {
                CHECK(y->t.dtype == KILN_DTYPE_BOOL && same_shape(&y->t, ro, o), "%s shape",
                      ops[op]);
                for (size_t j = 0; j < kiln_tensor_numel(&y->t); j++) {
                    double x = kiln_tensor_get_f64(&in[0]->t, bc_off(ra, a, ro, o, j));
                    double z = kiln_tensor_get_f64(&in[1]->t, bc_off(rb, b, ro, o, j));
                    bool want = op == 0 ? x == z : op == 1 ? x < z : op == 2 ? x > z
                                : op == 3 ? x <= z : x >= z;
                    if (((uint8_t *)y->t.data)[j] != want) {
                        CHECK(0, "%s(%g, %g) gave %d", ops[op], x, z, ((uint8_t *)y->t.data)[j]);
                        break;
                    }
                }
                kiln_value_free(y);
            }
            free_all(in, 2);
        }
    /* bool logic with broadcasting: [2,2] op [2] */
    int64_t d22[2] = {2, 2}, d2[1] = {2};
    struct kiln_value *in[2] = {new_tensor(KILN_DTYPE_BOOL, 2, d22),
                                new_tensor(KILN_DTYPE_BOOL, 1, d2)};
    uint8_t *pa = in[0]->t.data, *pb = in[1]->t.data;
    pa[0] = 0, pa[1] = 0, pa[2] = 1, pa[3] = 1, pb[0] = 0, pb[1] = 1;
    static const char *const lops[] = {"And", "Or", "Xor"};
    static const uint8_t want[3][4] = {{0, 0, 0, 1}, {0, 1, 1, 1}, {0, 1, 1, 0}};
    for (int op = 0; op < 3; op++) {
        struct kiln_value *y = NULL;
        kiln_err e;
        CHECK(run_op(lops[op], 7, NULL, 0, in, 2, &y, &e) == KILN_OK, "%s: %s", lops[op], e.msg);
        if (y) {
            CHECK(memcmp(y->t.data, want[op], 4) == 0, "%s values", lops[op]);
            kiln_value_free(y);
        }
    }
    free_all(in, 2);
    /* string Equal broadcasting a scalar */
    int64_t d3[1] = {3};
    in[0] = new_tensor(KILN_DTYPE_STRING, 1, d3);
    in[1] = new_tensor(KILN_DTYPE_STRING, 0, NULL);
    char **s = in[0]->t.data;
    const char *words[3] = {"ab", "", "abc"};
    for (int i = 0; i < 3; i++) s[i] = kiln_strdup(words[i]);
    ((char **)in[1]->t.data)[0] = kiln_strdup("abc");
    struct kiln_value *y = NULL;
    kiln_err e;
    CHECK(run_op("Equal", 19, NULL, 0, in, 2, &y, &e) == KILN_OK, "Equal string: %s", e.msg);
    if (y) {
        uint8_t *d = y->t.data;
        CHECK(d[0] == 0 && d[1] == 0 && d[2] == 1, "Equal string values");
        kiln_value_free(y);
    }
    free_all(in, 2);
}

/* ------------------------------------------------------------------ variadic, Where, PRelu */

static void test_variadic(void)
{
    int64_t s0[2] = {2, 3}, s1[1] = {3}, s2[3] = {2, 1, 1};
    struct kiln_value *in[3] = {new_tensor(KILN_DTYPE_F32, 2, s0),
                                new_tensor(KILN_DTYPE_F32, 1, s1),
                                new_tensor(KILN_DTYPE_F32, 3, s2)};
    for (int i = 0; i < 3; i++)
        for (size_t j = 0; j < kiln_tensor_numel(&in[i]->t); j++)
            ((float *)in[i]->t.data)[j] = (float)rng_range(-4, 4);
    int64_t o[3] = {2, 2, 3};
    static const char *const ops[] = {"Sum", "Mean", "Max", "Min"};
    for (int op = 0; op < 4; op++) {
        struct kiln_value *y = NULL;
        kiln_err e;
        kiln_status st = run_op(ops[op], 13, NULL, 0, in, 3, &y, &e);
        CHECK(st == KILN_OK, "%s: %s", ops[op], e.msg);
        if (st) continue;
        CHECK(same_shape(&y->t, 3, o), "%s shape", ops[op]);
        for (size_t j = 0; j < 12; j++) {
            float v[3];
            for (int i = 0; i < 3; i++)
                v[i] = ((float *)in[i]->t.data)[bc_off(in[i]->t.rank, in[i]->t.dims, 3, o, j)];
            float want = op == 0 ? (v[0] + v[1]) + v[2]
                         : op == 1 ? ((v[0] + v[1]) + v[2]) / 3
                         : op == 2 ? fmaxf(fmaxf(v[0], v[1]), v[2])
                                   : fminf(fminf(v[0], v[1]), v[2]);
            float got = ((float *)y->t.data)[j];
            CHECK(fabsf(got - want) <= 1e-6f * fabsf(want), "%s elem %zu: %g want %g", ops[op], j,
                  got, want);
        }
        kiln_value_free(y);
    }
    /* one input: a copy */
    struct kiln_value *y = NULL;
    kiln_err e;
    CHECK(run_op("Sum", 13, NULL, 0, in, 1, &y, &e) == KILN_OK, "Sum of one: %s", e.msg);
    if (y) {
        CHECK(memcmp(y->t.data, in[0]->t.data, 6 * sizeof(float)) == 0, "Sum of one copies");
        kiln_value_free(y);
    }
    free_all(in, 3);
    /* a shape that does not broadcast is named */
    int64_t bad[1] = {4};
    struct kiln_value *in2[2] = {new_tensor(KILN_DTYPE_F32, 2, s0),
                                 new_tensor(KILN_DTYPE_F32, 1, bad)};
    CHECK(run_op("Max", 13, NULL, 0, in2, 2, &y, &e) == KILN_E_INVALID_ARG, "Max bad shapes");
    CHECK(strstr(e.msg, "[2,3]") && strstr(e.msg, "[4]"), "message: %s", e.msg);
    free_all(in2, 2);
}

static void test_where(void)
{
    int64_t dc[2] = {2, 1}, dx[1] = {3};
    struct kiln_value *in[3] = {new_tensor(KILN_DTYPE_BOOL, 2, dc),
                                new_tensor(KILN_DTYPE_I64, 1, dx),
                                new_tensor(KILN_DTYPE_I64, 0, NULL)};
    ((uint8_t *)in[0]->t.data)[0] = 1;
    for (int j = 0; j < 3; j++) ((int64_t *)in[1]->t.data)[j] = 10 + j;
    ((int64_t *)in[2]->t.data)[0] = -1;
    struct kiln_value *y = NULL;
    kiln_err e;
    CHECK(run_op("Where", 16, NULL, 0, in, 3, &y, &e) == KILN_OK, "Where: %s", e.msg);
    if (y) {
        int64_t want[6] = {10, 11, 12, -1, -1, -1};
        CHECK(y->t.rank == 2 && y->t.dims[0] == 2 && y->t.dims[1] == 3 &&
                  memcmp(y->t.data, want, sizeof want) == 0, "Where values");
        kiln_value_free(y);
    }
    kiln_value_free(in[1]);
    kiln_value_free(in[2]);
    in[1] = new_tensor(KILN_DTYPE_STRING, 1, dx);
    in[2] = new_tensor(KILN_DTYPE_STRING, 0, NULL);
    for (int j = 0; j < 3; j++) ((char **)in[1]->t.data)[j] = kiln_strdup(j ? "b" : "a");
    ((char **)in[2]->t.data)[0] = kiln_strdup("no");
    CHECK(run_op("Where", 16, NULL, 0, in, 3, &y, &e) == KILN_OK, "Where string: %s", e.msg);
    if (y) {
        char **s = y->t.data;
        CHECK(strcmp(s[0], "a") == 0 && strcmp(s[2], "b") == 0 && strcmp(s[4], "no") == 0,
              "Where string values");
        CHECK(s[4] != ((char **)in[2]->t.data)[0], "Where copies strings");
        kiln_value_free(y);
    }
    free_all(in, 3);
}

static void test_prelu_legacy(void)
{
    int64_t dx[3] = {2, 3, 2}, ds[2] = {3, 1};
    struct kiln_value *in[2] = {new_tensor(KILN_DTYPE_F32, 3, dx), new_tensor(KILN_DTYPE_F32, 2, ds)};
    struct kiln_value *y = NULL;
    for (int j = 0; j < 12; j++) ((float *)in[0]->t.data)[j] = (float)(j - 6);
    for (int j = 0; j < 3; j++) ((float *)in[1]->t.data)[j] = 0.5f * (float)(j + 1);
    kiln_err e;
    CHECK(run_op("PRelu", 16, NULL, 0, in, 2, &y, &e) == KILN_OK, "PRelu: %s", e.msg);
    if (y) {
        for (int j = 0; j < 12; j++) {
            float x = (float)(j - 6), s = 0.5f * (float)((j / 2) % 3 + 1);
            float want = x < 0 ? x * s : x;
            CHECK(((float *)y->t.data)[j] == want, "PRelu elem %d", j);
        }
        kiln_value_free(y);
    }
    /* slope must not be bigger than X */
    kiln_value_free(in[1]);
    int64_t big[3] = {4, 3, 2};
    in[1] = new_tensor(KILN_DTYPE_F32, 3, big);
    CHECK(run_op("PRelu", 16, NULL, 0, in, 2, &y, &e) == KILN_E_INVALID_ARG, "PRelu slope too big");
    CHECK(strstr(e.msg, "[4,3,2]") && strstr(e.msg, "[2,3,2]"), "PRelu message: %s", e.msg);
    free_all(in, 2);

    /* opset 6 Add with broadcast=1, axis=1: B [3] against A [2,3,2] along dim 1 */
    int64_t db[1] = {3};
    in[0] = new_tensor(KILN_DTYPE_F32, 3, dx);
    in[1] = new_tensor(KILN_DTYPE_F32, 1, db);
    for (int j = 0; j < 12; j++) ((float *)in[0]->t.data)[j] = (float)j;
    for (int j = 0; j < 3; j++) ((float *)in[1]->t.data)[j] = (float)(100 * j);
    struct kiln_attr at[2] = {attr_i("broadcast", 1), attr_i("axis", 1)};
    CHECK(run_op("Add", 6, at, 2, in, 2, &y, &e) == KILN_OK, "legacy Add: %s", e.msg);
    if (y) {
        for (int j = 0; j < 12; j++)
            CHECK(((float *)y->t.data)[j] == (float)(j + 100 * ((j / 2) % 3)), "legacy elem %d", j);
        kiln_value_free(y);
    }
    /* without broadcast=1 the shapes must match */
    CHECK(run_op("Add", 6, NULL, 0, in, 2, &y, &e) == KILN_E_INVALID_ARG, "legacy no broadcast");
    /* and at opset 7 the same B broadcasts from the right: [3] vs last dim 2 fails */
    CHECK(run_op("Add", 7, NULL, 0, in, 2, &y, &e) == KILN_E_INVALID_ARG, "opset 7 mismatch");
    CHECK(strstr(e.msg, "[2,3,2]") && strstr(e.msg, "[3]"), "message: %s", e.msg);
    free_all(in, 2);

    /* type mismatch and unsupported types are refused with a message */
    in[0] = scalar(KILN_DTYPE_F32, 1);
    in[1] = scalar(KILN_DTYPE_F64, 1);
    CHECK(run_op("Mul", 14, NULL, 0, in, 2, &y, &e) == KILN_E_INVALID_MODEL, "type mismatch");
    CHECK(strstr(e.msg, "float32") && strstr(e.msg, "float64"), "message: %s", e.msg);
    free_all(in, 2);
    in[0] = scalar(KILN_DTYPE_F32, 1);
    in[1] = scalar(KILN_DTYPE_F32, 1);
    CHECK(run_op("And", 7, NULL, 0, in, 2, &y, &e) == KILN_E_UNSUPPORTED, "And on float");
    free_all(in, 2);
}

/* ------------------------------------------------------------------ quantization */

static void test_quantize(void)
{
    /* per tensor, uint8, ties to even and saturation */
    double xs[] = {0, 1, 3, 5, -2, 1000, -1000, 7};
    struct kiln_value *in[3] = {vec_f64(KILN_DTYPE_F32, 8, xs), scalar(KILN_DTYPE_F32, 2),
                                scalar(KILN_DTYPE_U8, 10)}, *y = NULL;
    kiln_err e;
    CHECK(run_op("QuantizeLinear", 13, NULL, 0, in, 3, &y, &e) == KILN_OK, "Q: %s", e.msg);
    if (y) {
        uint8_t want[8] = {10, 10, 12, 12, 9, 255, 0, 14};
        CHECK(y->t.dtype == KILN_DTYPE_U8 && memcmp(y->t.data, want, 8) == 0, "Q u8 values");
        kiln_value_free(y);
    }
    free_all(in, 3);

    /* per axis int8, axis 0 of [2,3]; then dequantize back */
    int64_t d23[2] = {2, 3};
    in[0] = new_tensor(KILN_DTYPE_F32, 2, d23);
    for (int j = 0; j < 6; j++) ((float *)in[0]->t.data)[j] = (float)(j * 10 - 25);
    in[1] = vec_f64(KILN_DTYPE_F32, 2, (double[]){1, 4});
    in[2] = vec_f64(KILN_DTYPE_I8, 2, (double[]){0, -3});
    struct kiln_attr ax0 = attr_i("axis", 0);
    CHECK(run_op("QuantizeLinear", 19, &ax0, 1, in, 3, &y, &e) == KILN_OK, "Q axis: %s", e.msg);
    if (y) {
        int8_t want[6] = {-25, -15, -5, 1, 1, 4}; /* row 1: 5/4=1.25->1, 15/4->4, 25/4->6 (-3) */
        want[3] = (int8_t)(nearbyint(5 / 4.0) - 3);
        want[4] = (int8_t)(nearbyint(15 / 4.0) - 3);
        want[5] = (int8_t)(nearbyint(25 / 4.0) - 3);
        CHECK(memcmp(y->t.data, want, 6) == 0, "Q axis values");
        struct kiln_value *din[3] = {y, in[1], in[2]}, *z;
        CHECK(run_op("DequantizeLinear", 19, &ax0, 1, din, 3, &z, &e) == KILN_OK, "DQ axis: %s",
              e.msg);
        if (z) {
            for (int j = 0; j < 6; j++) {
                float s = j < 3 ? 1 : 4, zp = j < 3 ? 0 : -3;
                CHECK(((float *)z->t.data)[j] == ((float)want[j] - zp) * s, "DQ axis elem %d", j);
            }
            kiln_value_free(z);
        }
        kiln_value_free(y);
    }
    free_all(in, 3);

    /* blocked: x [2,5], axis 1, block 2 -> scale [2,3] (last block short); int4 output */
    int64_t d25[2] = {2, 5}, d2b[2] = {2, 3};
    in[0] = new_tensor(KILN_DTYPE_F32, 2, d25);
    for (int j = 0; j < 10; j++) ((float *)in[0]->t.data)[j] = (float)(j - 5);
    in[1] = new_tensor(KILN_DTYPE_F32, 2, d2b);
    for (int j = 0; j < 6; j++) ((float *)in[1]->t.data)[j] = (float)(j + 1) * 0.5f;
    in[2] = new_tensor(KILN_DTYPE_I4, 2, d2b);
    struct kiln_attr blk[2] = {attr_i("axis", 1), attr_i("block_size", 2)};
    CHECK(run_op("QuantizeLinear", 21, blk, 2, in, 3, &y, &e) == KILN_OK, "Q blocked: %s", e.msg);
    if (y) {
        for (int j = 0; j < 10; j++) {
            int r = j / 5, c = j % 5;
            double s = (double)(r * 3 + c / 2 + 1) * 0.5;
            double q = nearbyint((double)(float)((float)(j - 5) / (float)s));
            q = q < -8 ? -8 : q > 7 ? 7 : q;
            CHECK(((int8_t *)y->t.data)[j] == (int8_t)q, "Q blocked elem %d: %d want %g", j,
                  ((int8_t *)y->t.data)[j], q);
        }
        kiln_value_free(y);
    }
    /* a blocked scale of the wrong shape is refused, naming it */
    kiln_value_free(in[1]);
    kiln_value_free(in[2]);
    int64_t d22[2] = {2, 2};
    in[1] = new_tensor(KILN_DTYPE_F32, 2, d22);
    in[2] = NULL;
    CHECK(run_op("QuantizeLinear", 21, blk, 2, in, 2, &y, &e) == KILN_E_INVALID_ARG,
          "Q blocked bad scale");
    CHECK(strstr(e.msg, "y_scale") && strstr(e.msg, "[2,2]"), "message: %s", e.msg);
    free_all(in, 2);

    /* uint2 via output_dtype: range [0,3] */
    in[0] = vec_f64(KILN_DTYPE_F32, 3, (double[]){-1, 2, 9});
    in[1] = scalar(KILN_DTYPE_F32, 1);
    struct kiln_attr od = attr_i("output_dtype", KILN_DTYPE_U2);
    CHECK(run_op("QuantizeLinear", 25, &od, 1, in, 2, &y, &e) == KILN_OK, "Q uint2: %s", e.msg);
    if (y) {
        uint8_t want[3] = {0, 2, 3};
        CHECK(y->t.dtype == KILN_DTYPE_U2 && memcmp(y->t.data, want, 3) == 0, "Q uint2 values");
        kiln_value_free(y);
    }
    free_all(in, 2);
}

/* Every finite float8 code dequantizes (scale 1) and quantizes back to itself. */
static void test_float8_roundtrip(kiln_dtype dt)
{
    int64_t n = 256;
    struct kiln_value *q = new_tensor(dt, 1, &n);
    for (int j = 0; j < 256; j++) ((uint8_t *)q->t.data)[j] = (uint8_t)j;
    struct kiln_value *in[2] = {q, scalar(KILN_DTYPE_F32, 1)}, *f, *back;
    kiln_err e;
    CHECK(run_op("DequantizeLinear", 21, NULL, 0, in, 2, &f, &e) == KILN_OK, "DQ %s: %s",
          kiln_dtype_name(dt), e.msg);
    if (!f) {
        free_all(in, 2);
        return;
    }
    struct kiln_value *zp = new_tensor(dt, 0, NULL);
    struct kiln_value *qin[3] = {f, in[1], zp};
    CHECK(run_op("QuantizeLinear", 21, NULL, 0, qin, 3, &back, &e) == KILN_OK, "Q %s: %s",
          kiln_dtype_name(dt), e.msg);
    if (back) {
        CHECK(back->t.dtype == dt, "Q %s output type", kiln_dtype_name(dt));
        for (int j = 0; j < 256; j++) {
            float v = ((float *)f->t.data)[j];
            if (isnan(v) || isinf(v)) continue;
            uint8_t got = ((uint8_t *)back->t.data)[j];
            if (got != (uint8_t)j) {
                CHECK(0, "%s code 0x%02x -> %g -> 0x%02x", kiln_dtype_name(dt), j, v, got);
                break;
            }
        }
        kiln_value_free(back);
    }
    /* saturation: 1e6 and inf become the largest finite value; without it, NaN/inf */
    kiln_value_free(f);
    f = vec_f64(KILN_DTYPE_F32, 2, (double[]){1e6, -INFINITY});
    qin[0] = f;
    CHECK(run_op("QuantizeLinear", 21, NULL, 0, qin, 3, &back, &e) == KILN_OK, "Q sat: %s", e.msg);
    uint8_t sat0 = 0, sat1 = 0;
    if (back) {
        sat0 = ((uint8_t *)back->t.data)[0];
        sat1 = ((uint8_t *)back->t.data)[1];
        kiln_value_free(back);
    }
    struct kiln_value *maxv = new_tensor(dt, 0, NULL), *mdq;
    *(uint8_t *)maxv->t.data = sat0;
    struct kiln_value *dqin[2] = {maxv, in[1]};
    CHECK(run_op("DequantizeLinear", 21, NULL, 0, dqin, 2, &mdq, &e) == KILN_OK, "DQ max");
    if (mdq) {
        double want = dt == KILN_DTYPE_F8E4M3FN ? 448 : 57344;
        CHECK(((float *)mdq->t.data)[0] == want, "%s saturates to %g, got %g",
              kiln_dtype_name(dt), want, ((float *)mdq->t.data)[0]);
        kiln_value_free(mdq);
    }
    CHECK((sat1 & 0x80) && (sat1 & 0x7f) == (sat0 & 0x7f), "-inf saturates to -max");
    struct kiln_attr nosat = attr_i("saturate", 0);
    CHECK(run_op("QuantizeLinear", 21, &nosat, 1, qin, 3, &back, &e) == KILN_OK, "Q nosat");
    if (back) {
        uint8_t c = ((uint8_t *)back->t.data)[0];
        if (dt == KILN_DTYPE_F8E4M3FN) CHECK(c == 0x7f, "e4m3fn overflow is NaN, got 0x%02x", c);
        else CHECK(c == 0x7c, "e5m2 overflow is inf, got 0x%02x", c);
        kiln_value_free(back);
    }
    kiln_value_free(maxv);
    kiln_value_free(f);
    kiln_value_free(zp);
    free_all(in, 2);
}

static void test_dynamic(void)
{
    struct kiln_value *in[1] = {vec_f64(KILN_DTYPE_F32, 4, (double[]){-1, 0, 2, 3})}, *out[3];
    kiln_err e;
    CHECK(run_node("", "DynamicQuantizeLinear", 11, NULL, 0, in, 1, out, 3, &e) == KILN_OK,
          "DQL: %s",
          e.msg);
    if (out[0]) {
        float scale = 4.0f / 255.0f;
        float zp = nearbyintf(0.0f - (-1.0f) / scale);
        CHECK(*(float *)out[1]->t.data == scale, "DQL scale");
        CHECK(*(uint8_t *)out[2]->t.data == (uint8_t)zp, "DQL zero point");
        for (int j = 0; j < 4; j++) {
            float x = (float)kiln_tensor_get_f64(&in[0]->t, (size_t)j);
            float q = nearbyintf(x / scale) + zp;
            q = q < 0 ? 0 : q > 255 ? 255 : q;
            CHECK(((uint8_t *)out[0]->t.data)[j] == (uint8_t)q, "DQL elem %d", j);
        }
        free_all(out, 3);
    }
    free_all(in, 1);
}

static void test_matmul_integer(void)
{
    /* A [2,3,4] uint8 with per-row zero point [3]; B [4,5] int8 with per-column zp [5] */
    int64_t da[3] = {2, 3, 4}, db[2] = {4, 5};
    struct kiln_value *in[4] = {new_tensor(KILN_DTYPE_U8, 3, da), new_tensor(KILN_DTYPE_I8, 2, db),
                                vec_f64(KILN_DTYPE_U8, 3, (double[]){1, 128, 255}),
                                vec_f64(KILN_DTYPE_I8, 5, (double[]){0, -1, 2, -128, 127})};
    struct kiln_value *y = NULL;
    for (int j = 0; j < 24; j++) ((uint8_t *)in[0]->t.data)[j] = (uint8_t)rng_int(256);
    for (int j = 0; j < 20; j++) ((int8_t *)in[1]->t.data)[j] = (int8_t)(rng_int(256) - 128);
    kiln_err e;
    CHECK(run_op("MatMulInteger", 10, NULL, 0, in, 4, &y, &e) == KILN_OK, "MMI: %s", e.msg);
    if (y) {
        CHECK(y->t.dtype == KILN_DTYPE_I32 && y->t.rank == 3 && y->t.dims[0] == 2 &&
                  y->t.dims[1] == 3 && y->t.dims[2] == 5, "MMI shape");
        for (int b = 0; b < 2; b++)
            for (int i = 0; i < 3; i++)
                for (int j = 0; j < 5; j++) {
                    int32_t acc = 0;
                    for (int t = 0; t < 4; t++) {
                        int av = ((uint8_t *)in[0]->t.data)[b * 12 + i * 4 + t] -
                                 ((uint8_t *)in[2]->t.data)[i];
                        int bv = ((int8_t *)in[1]->t.data)[t * 5 + j] -
                                 ((int8_t *)in[3]->t.data)[j];
                        acc += av * bv;
                    }
                    CHECK(((int32_t *)y->t.data)[(b * 3 + i) * 5 + j] == acc, "MMI [%d,%d,%d]",
                          b, i, j);
                }
        kiln_value_free(y);
    }
    /* QLinearMatMul on the same A/B with scalar parameters */
    kiln_value_free(in[2]);
    kiln_value_free(in[3]);
    struct kiln_value *q[8] = {in[0], scalar(KILN_DTYPE_F32, 0.05), scalar(KILN_DTYPE_U8, 100),
                               in[1], scalar(KILN_DTYPE_F32, 0.02), scalar(KILN_DTYPE_I8, 3),
                               scalar(KILN_DTYPE_F32, 0.7), scalar(KILN_DTYPE_I8, -5)};
    CHECK(run_op("QLinearMatMul", 21, NULL, 0, q, 8, &y, &e) == KILN_OK, "QLMM: %s", e.msg);
    if (y) {
        CHECK(y->t.dtype == KILN_DTYPE_I8, "QLMM output type");
        float mult = (0.05f * 0.02f) / 0.7f;
        for (int b = 0; b < 2; b++)
            for (int i = 0; i < 3; i++)
                for (int j = 0; j < 5; j++) {
                    int32_t acc = 0;
                    for (int t = 0; t < 4; t++)
                        acc += (((uint8_t *)in[0]->t.data)[b * 12 + i * 4 + t] - 100) *
                               (((int8_t *)in[1]->t.data)[t * 5 + j] - 3);
                    double v = nearbyint((double)acc * (double)mult - 5);
                    v = v < -128 ? -128 : v > 127 ? 127 : v;
                    CHECK(((int8_t *)y->t.data)[(b * 3 + i) * 5 + j] == (int8_t)v,
                          "QLMM [%d,%d,%d]", b, i, j);
                }
        kiln_value_free(y);
    }
    /* K mismatch is named */
    int64_t bad[2] = {3, 5};
    struct kiln_value *bb = new_tensor(KILN_DTYPE_I8, 2, bad);
    struct kiln_value *m2[2] = {in[0], bb};
    CHECK(run_op("MatMulInteger", 10, NULL, 0, m2, 2, &y, &e) == KILN_E_INVALID_ARG, "MMI bad K");
    CHECK(strstr(e.msg, "[2,3,4]") && strstr(e.msg, "[3,5]"), "message: %s", e.msg);
    kiln_value_free(bb);
    free_all(q, 8);
}

int main(void)
{
    rng_seed(0x243F6A8885A308D3ull);
    test_float_random();
    test_int_rules();
    test_pow_mixed();
    test_compare_logic();
    test_variadic();
    test_where();
    test_prelu_legacy();
    test_quantize();
    test_float8_roundtrip(KILN_DTYPE_F8E4M3FN);
    test_float8_roundtrip(KILN_DTYPE_F8E5M2);
    test_dynamic();
    test_matmul_integer();
    return test_summary("test_binary");
}
