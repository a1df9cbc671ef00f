/* test_random.c: the random generators of src/cpu/ops/random.c (RandomUniform,
 * RandomNormal, their *Like forms, Bernoulli, Multinomial).
 *
 * The ONNX node tests compare against numpy's generator, which kiln does not reproduce, so
 * this file checks what the spec does promise: output shapes and types, value ranges
 * (uniform in [low, high) even where rounding to a 16-bit float would reach `high`),
 * determinism for a given seed, and statistics over 1e5 samples, each within 5 standard
 * errors of the exact value. Bernoulli with p = 0 / 1 and Multinomial with one-hot rows
 * are exact.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/kernel.h"
#include "test_support.h"

/* ------------------------------------------------------------------ harness */

/* Runs op (one input, which may be NULL for none) at opset; on KILN_OK *out is a new value
 * owned by the caller. */
static kiln_status run1(const char *op, int opset, const struct attrs *at, struct kiln_value *in,
                        struct kiln_value **out, kiln_err *err)
{
    return run_op(op, opset, at->a, at->n, &in, in ? 1 : 0, out, err);
}

static double get(const struct kiln_value *v, size_t i)
{
    return kiln_tensor_get_f64(&v->t, i);
}

static bool is_tensor(const struct kiln_value *v, kiln_dtype dt, int rank, const int64_t *dims)
{
    return v && v->t.dtype == dt && same_shape(&v->t, rank, dims);
}

/* Sample mean and variance of v's elements. */
static void moments(const struct kiln_value *v, double *mean, double *var)
{
    size_t n = kiln_tensor_numel(&v->t);
    double s = 0, s2 = 0;
    for (size_t i = 0; i < n; i++) s += get(v, i);
    *mean = s / (double)n;
    for (size_t i = 0; i < n; i++) s2 += (get(v, i) - *mean) * (get(v, i) - *mean);
    *var = s2 / (double)(n - 1);
}

#define N_SAMPLES 100000

/* ------------------------------------------------------------------ RandomUniform */

static void test_uniform(void)
{
    const kiln_dtype dts[4] = {KILN_DTYPE_F32, KILN_DTYPE_F64, KILN_DTYPE_F16, KILN_DTYPE_BF16};
    const int opsets[2] = {1, 22};
    int64_t shape[2] = {250, 400};
    for (int t = 0; t < 4; t++) {
        for (int o = 0; o < 2; o++) {
            /* [0, 1) is the case where 16-bit rounding most often reaches `high`. */
            double lo = t < 2 ? -2.0 : 0.0, hi = t < 2 ? 3.0 : 1.0;
            struct attrs at = {.n = 0};
            add_ints(&at, "shape", shape, 2);
            if (t) add_i(&at, "dtype", dts[t]);
            add_f(&at, "low", (float)lo);
            add_f(&at, "high", (float)hi);
            kiln_err e = {0};
            struct kiln_value *y = NULL;
            kiln_status st = run1("RandomUniform", opsets[o], &at, NULL, &y, &e);
            CHECK(st == KILN_OK, "RandomUniform %s: %s", kiln_dtype_name(dts[t]), e.msg);
            if (st) continue;
            CHECK(is_tensor(y, dts[t], 2, shape), "RandomUniform %s: wrong type or shape", kiln_dtype_name(dts[t]));
            size_t bad = 0;
            for (size_t i = 0; i < N_SAMPLES; i++) bad += !(get(y, i) >= lo && get(y, i) < hi);
            CHECK(bad == 0, "RandomUniform %s: %zu values outside [%g, %g)", kiln_dtype_name(dts[t]), bad, lo, hi);
            double m, v, w = hi - lo;
            moments(y, &m, &v);
            /* Exact: mean (lo+hi)/2, variance w^2/12, fourth central moment w^4/80. 16-bit
             * rounding adds at most half a step of bias (2^-9 for bf16), inside the margin. */
            double se_m = sqrt(w * w / 12 / N_SAMPLES), se_v = sqrt((pow(w, 4) / 80 - pow(w * w / 12, 2)) / N_SAMPLES);
            double slack = dts[t] == KILN_DTYPE_BF16 ? 0x1p-9 : 0;
            CHECK(fabs(m - (lo + hi) / 2) < 5 * se_m + slack, "RandomUniform %s: mean %g", kiln_dtype_name(dts[t]), m);
            CHECK(fabs(v - w * w / 12) < 5 * se_v + slack, "RandomUniform %s: variance %g", kiln_dtype_name(dts[t]), v);
            kiln_value_free(y);
        }
    }
    /* low == high: every value is low. */
    struct attrs at = {.n = 0};
    int64_t s1[1] = {64};
    add_ints(&at, "shape", s1, 1);
    add_f(&at, "low", 2.5f);
    add_f(&at, "high", 2.5f);
    kiln_err e = {0};
    struct kiln_value *y = NULL;
    CHECK(run1("RandomUniform", 22, &at, NULL, &y, &e) == KILN_OK, "low == high: %s", e.msg);
    for (size_t i = 0; y && i < 64; i++) CHECK(get(y, i) == 2.5, "low == high: element %zu is %g", i, get(y, i));
    kiln_value_free(y);
}

/* ------------------------------------------------------------------ RandomNormal */

static void test_normal(void)
{
    const kiln_dtype dts[3] = {KILN_DTYPE_F32, KILN_DTYPE_F64, KILN_DTYPE_F16};
    int64_t shape[3] = {10, 100, 100};
    for (int t = 0; t < 3; t++) {
        struct attrs at = {.n = 0};
        add_ints(&at, "shape", shape, 3);
        add_i(&at, "dtype", dts[t]);
        add_f(&at, "mean", 1.5f);
        add_f(&at, "scale", 2.0f);
        kiln_err e = {0};
        struct kiln_value *y = NULL;
        kiln_status st = run1("RandomNormal", 22, &at, NULL, &y, &e);
        CHECK(st == KILN_OK, "RandomNormal %s: %s", kiln_dtype_name(dts[t]), e.msg);
        if (st) continue;
        CHECK(is_tensor(y, dts[t], 3, shape), "RandomNormal %s: wrong type or shape", kiln_dtype_name(dts[t]));
        double m, v;
        moments(y, &m, &v);
        double se_m = 2.0 / sqrt(N_SAMPLES), se_v = sqrt(2.0 * 16 / (N_SAMPLES - 1));
        CHECK(fabs(m - 1.5) < 5 * se_m, "RandomNormal %s: mean %g, want 1.5", kiln_dtype_name(dts[t]), m);
        CHECK(fabs(v - 4.0) < 5 * se_v, "RandomNormal %s: variance %g, want 4", kiln_dtype_name(dts[t]), v);
        /* Tails: P(|z| > 3) = 0.0027; a generator without tails (or with too many) fails. */
        size_t far = 0;
        for (size_t i = 0; i < N_SAMPLES; i++) far += fabs(get(y, i) - 1.5) > 6.0;
        double pf = 0.0026998, se_f = sqrt(pf * (1 - pf) * N_SAMPLES);
        CHECK(fabs((double)far - pf * N_SAMPLES) < 5 * se_f, "RandomNormal %s: %zu values beyond 3 sigma",
              kiln_dtype_name(dts[t]), far);
        kiln_value_free(y);
    }
}

/* ------------------------------------------------------------------ seeds */

static bool same_bytes(const struct kiln_value *a, const struct kiln_value *b)
{
    return a && b && kiln_tensor_nbytes(&a->t) == kiln_tensor_nbytes(&b->t) &&
           memcmp(a->t.data, b->t.data, kiln_tensor_nbytes(&a->t)) == 0;
}

static void test_seed(void)
{
    const char *ops[2] = {"RandomUniform", "RandomNormal"};
    int64_t shape[1] = {1000};
    for (int o = 0; o < 2; o++) {
        struct kiln_value *y[4] = {NULL, NULL, NULL, NULL};
        float seeds[3] = {3.0f, 3.0f, 4.0f};
        kiln_err e = {0};
        for (int i = 0; i < 4; i++) {
            struct attrs at = {.n = 0};
            add_ints(&at, "shape", shape, 1);
            if (i < 3) add_f(&at, "seed", seeds[i]);
            CHECK(run1(ops[o], 1, &at, NULL, &y[i], &e) == KILN_OK, "%s seed: %s", ops[o], e.msg);
        }
        CHECK(same_bytes(y[0], y[1]), "%s: the same seed gave different values", ops[o]);
        CHECK(!same_bytes(y[0], y[2]), "%s: seeds 3 and 4 gave the same values", ops[o]);
        struct kiln_value *y2 = NULL;
        struct attrs at = {.n = 0};
        add_ints(&at, "shape", shape, 1);
        CHECK(run1(ops[o], 1, &at, NULL, &y2, &e) == KILN_OK, "%s: %s", ops[o], e.msg);
        CHECK(!same_bytes(y[3], y2), "%s: two unseeded runs gave the same values", ops[o]);
        kiln_value_free(y2);
        for (int i = 0; i < 4; i++) kiln_value_free(y[i]);
    }
}

/* ------------------------------------------------------------------ *Like */

static void test_like(void)
{
    int64_t dims[3] = {2, 3, 5};
    struct kiln_value *x64 = new_tensor(KILN_DTYPE_F64, 3, dims);
    struct kiln_value *xi = new_tensor(KILN_DTYPE_I32, 3, dims);
    const char *ops[2] = {"RandomUniformLike", "RandomNormalLike"};
    for (int o = 0; o < 2; o++) {
        kiln_err e = {0};
        struct kiln_value *y = NULL;
        struct attrs at = {.n = 0};
        CHECK(run1(ops[o], 22, &at, x64, &y, &e) == KILN_OK, "%s: %s", ops[o], e.msg);
        CHECK(is_tensor(y, KILN_DTYPE_F64, 3, dims), "%s: want the input's shape and dtype", ops[o]);
        kiln_value_free(y);
        /* dtype overrides the input's type, also for an integer input. */
        add_i(&at, "dtype", KILN_DTYPE_F16);
        CHECK(run1(ops[o], 1, &at, xi, &y, &e) == KILN_OK, "%s dtype: %s", ops[o], e.msg);
        CHECK(is_tensor(y, KILN_DTYPE_F16, 3, dims), "%s: want float16 of the input's shape", ops[o]);
        kiln_value_free(y);
        at.n = 0;
        CHECK(run1(ops[o], 22, &at, xi, &y, &e) != KILN_OK && strstr(e.msg, "int32"),
              "%s of an int32 input without dtype must fail naming int32: '%s'", ops[o], e.msg);
    }
    /* RandomUniformLike range with low/high. */
    int64_t big[1] = {N_SAMPLES};
    struct kiln_value *xb = new_tensor(KILN_DTYPE_F32, 1, big);
    struct attrs at = {.n = 0};
    add_f(&at, "low", 10.0f);
    add_f(&at, "high", 11.0f);
    kiln_err e = {0};
    struct kiln_value *y = NULL;
    CHECK(run1("RandomUniformLike", 22, &at, xb, &y, &e) == KILN_OK, "RandomUniformLike: %s", e.msg);
    size_t bad = 0;
    for (size_t i = 0; y && i < N_SAMPLES; i++) bad += !(get(y, i) >= 10.0 && get(y, i) < 11.0);
    CHECK(y && bad == 0, "RandomUniformLike: %zu values outside [10, 11)", bad);
    kiln_value_free(y);
    kiln_value_free(xb);
    kiln_value_free(x64);
    kiln_value_free(xi);
}

/* ------------------------------------------------------------------ Bernoulli */

static void test_bernoulli(void)
{
    int64_t dims[2] = {100, 1000};
    struct kiln_value *x = new_tensor(KILN_DTYPE_F32, 2, dims);
    float *p = x->t.data;
    /* p = 0 and p = 1 exactly, alternating. */
    for (size_t i = 0; i < N_SAMPLES; i++) p[i] = (float)(i % 2);
    const kiln_dtype outs[5] = {KILN_DTYPE_F32, KILN_DTYPE_I64, KILN_DTYPE_BOOL, KILN_DTYPE_U8, KILN_DTYPE_F64};
    for (int t = 0; t < 5; t++) {
        struct attrs at = {.n = 0};
        if (t) add_i(&at, "dtype", outs[t]);
        kiln_err e = {0};
        struct kiln_value *y = NULL;
        kiln_status st = run1("Bernoulli", t % 2 ? 15 : 22, &at, x, &y, &e);
        CHECK(st == KILN_OK, "Bernoulli %s: %s", kiln_dtype_name(outs[t]), e.msg);
        if (st) continue;
        CHECK(is_tensor(y, outs[t], 2, dims), "Bernoulli %s: wrong type or shape", kiln_dtype_name(outs[t]));
        size_t bad = 0;
        for (size_t i = 0; i < N_SAMPLES; i++) bad += get(y, i) != (double)(i % 2);
        CHECK(bad == 0, "Bernoulli %s: %zu of p = 0/1 draws wrong", kiln_dtype_name(outs[t]), bad);
        kiln_value_free(y);
    }
    /* p = 0.3 (double input): the count of ones within 5 sigma, and only 0/1 values. */
    struct kiln_value *xd = new_tensor(KILN_DTYPE_F64, 2, dims);
    for (size_t i = 0; i < N_SAMPLES; i++) ((double *)xd->t.data)[i] = 0.3;
    kiln_err e = {0};
    struct kiln_value *y = NULL;
    struct attrs at = {.n = 0};
    add_f(&at, "seed", 7.0f);
    CHECK(run1("Bernoulli", 22, &at, xd, &y, &e) == KILN_OK, "Bernoulli 0.3: %s", e.msg);
    if (y) {
        CHECK(y->t.dtype == KILN_DTYPE_F64, "Bernoulli: default dtype must be the input's");
        double ones = 0;
        size_t other = 0;
        for (size_t i = 0; i < N_SAMPLES; i++) {
            ones += get(y, i) == 1.0;
            other += get(y, i) != 0.0 && get(y, i) != 1.0;
        }
        double se = sqrt(0.3 * 0.7 * N_SAMPLES);
        CHECK(fabs(ones - 0.3 * N_SAMPLES) < 5 * se, "Bernoulli 0.3: %g ones in %d", ones, N_SAMPLES);
        CHECK(other == 0, "Bernoulli: %zu values other than 0 and 1", other);
        struct kiln_value *y2 = NULL;
        CHECK(run1("Bernoulli", 22, &at, xd, &y2, &e) == KILN_OK, "Bernoulli seeded: %s", e.msg);
        CHECK(same_bytes(y, y2), "Bernoulli: the same seed gave different draws");
        kiln_value_free(y2);
    }
    kiln_value_free(y);
    /* An integer input is refused. */
    struct kiln_value *xi = new_tensor(KILN_DTYPE_I32, 2, dims);
    at.n = 0;
    CHECK(run1("Bernoulli", 22, &at, xi, &y, &e) != KILN_OK && strstr(e.msg, "int32"),
          "Bernoulli of int32 must fail: '%s'", e.msg);
    kiln_value_free(xi);
    kiln_value_free(xd);
    kiln_value_free(x);
}

/* ------------------------------------------------------------------ Multinomial */

static void test_multinomial(void)
{
    /* One-hot rows (by -inf, and by a gap large enough that exp underflows to 0), and a row
     * whose maximum is +inf, which spreads over its +inf entries. */
    double v[12] = {-INFINITY, -INFINITY, 0, -INFINITY, 0, -1e4, -1e4, -1e4, 0, INFINITY, 5, INFINITY};
    const kiln_dtype in_dts[3] = {KILN_DTYPE_F32, KILN_DTYPE_F64, KILN_DTYPE_F16};
    for (int t = 0; t < 3; t++) {
        struct kiln_value *x = tensor_f64(in_dts[t], 2, (const int64_t[]){3, 4}, v);
        struct attrs at = {.n = 0};
        add_i(&at, "sample_size", 5000);
        if (t == 1) add_i(&at, "dtype", KILN_DTYPE_I64);
        kiln_err e = {0};
        struct kiln_value *y = NULL;
        kiln_dtype want = t == 1 ? KILN_DTYPE_I64 : KILN_DTYPE_I32;
        kiln_status st = run1("Multinomial", t == 2 ? 7 : 22, &at, x, &y, &e);
        CHECK(st == KILN_OK, "Multinomial %s: %s", kiln_dtype_name(in_dts[t]), e.msg);
        int64_t od[2] = {3, 5000};
        CHECK(st || is_tensor(y, want, 2, od), "Multinomial: want %s [3, 5000]", kiln_dtype_name(want));
        if (!st) {
            size_t bad0 = 0, bad1 = 0, bad2 = 0, n1 = 0;
            for (size_t s = 0; s < 5000; s++) {
                bad0 += get(y, s) != 2;
                bad1 += get(y, 5000 + s) != 0;
                double c = get(y, 10000 + s);
                bad2 += c != 1 && c != 3;
                n1 += c == 1;
            }
            CHECK(bad0 + bad1 + bad2 == 0, "Multinomial one-hot rows: %zu/%zu/%zu wrong draws", bad0, bad1, bad2);
            double se = sqrt(0.25 * 5000);
            CHECK(fabs((double)n1 - 2500) < 5 * se, "Multinomial +inf row: class 1 drawn %zu of 5000", n1);
        }
        kiln_value_free(y);
        kiln_value_free(x);
    }
    /* Frequencies of p = (0.2, 0.5, 0.3) given as logs plus an offset. */
    double w[3] = {log(0.2) + 7, log(0.5) + 7, log(0.3) + 7}, pr[3] = {0.2, 0.5, 0.3};
    struct kiln_value *x = tensor_f64(KILN_DTYPE_F32, 2, (const int64_t[]){1, 3}, w);
    struct attrs at = {.n = 0};
    add_i(&at, "sample_size", N_SAMPLES);
    add_f(&at, "seed", 1.0f);
    kiln_err e = {0};
    struct kiln_value *y = NULL;
    CHECK(run1("Multinomial", 22, &at, x, &y, &e) == KILN_OK, "Multinomial: %s", e.msg);
    if (y) {
        double cnt[3] = {0, 0, 0};
        size_t other = 0;
        for (size_t s = 0; s < N_SAMPLES; s++) {
            int64_t c = (int64_t)get(y, s);
            if (c >= 0 && c < 3) cnt[c]++;
            else other++;
        }
        CHECK(other == 0, "Multinomial: %zu draws outside [0, 3)", other);
        for (int c = 0; c < 3; c++) {
            double se = sqrt(pr[c] * (1 - pr[c]) * N_SAMPLES);
            CHECK(fabs(cnt[c] - pr[c] * N_SAMPLES) < 5 * se, "Multinomial: class %d drawn %g times of %d, p = %g", c,
                  cnt[c], N_SAMPLES, pr[c]);
        }
        struct kiln_value *y2 = NULL;
        CHECK(run1("Multinomial", 22, &at, x, &y2, &e) == KILN_OK, "Multinomial seeded: %s", e.msg);
        CHECK(same_bytes(y, y2), "Multinomial: the same seed gave different draws");
        kiln_value_free(y2);
    }
    kiln_value_free(y);
    kiln_value_free(x);

    /* Refused: all -inf, NaN, rank 1, bad dtype, negative sample_size. */
    double bad_rows[2][2] = {{-INFINITY, -INFINITY}, {0, NAN}};
    const char *needles[2] = {"all -inf", "NaN"};
    for (int i = 0; i < 2; i++) {
        x = tensor_f64(KILN_DTYPE_F32, 2, (const int64_t[]){1, 2}, bad_rows[i]);
        at.n = 0;
        CHECK(run1("Multinomial", 22, &at, x, &y, &e) != KILN_OK && strstr(e.msg, needles[i]),
              "Multinomial must refuse a row with %s: '%s'", needles[i], e.msg);
        add_i(&at, "dtype", KILN_DTYPE_F32);
        CHECK(run1("Multinomial", 22, &at, x, &y, &e) != KILN_OK && strstr(e.msg, "dtype"),
              "Multinomial must refuse dtype float: '%s'", e.msg);
        at.n = 0;
        add_i(&at, "sample_size", -1);
        CHECK(run1("Multinomial", 22, &at, x, &y, &e) != KILN_OK && strstr(e.msg, "sample_size"),
              "Multinomial must refuse sample_size -1: '%s'", e.msg);
        kiln_value_free(x);
    }
    int64_t d1[1] = {4};
    x = new_tensor(KILN_DTYPE_F32, 1, d1);
    at.n = 0;
    CHECK(run1("Multinomial", 22, &at, x, &y, &e) != KILN_OK && strstr(e.msg, "rank 1"),
          "Multinomial must refuse rank 1: '%s'", e.msg);
    kiln_value_free(x);
}

/* ------------------------------------------------------------------ errors */

static void test_errors(void)
{
    kiln_err e = {0};
    struct kiln_value *y = NULL;
    struct attrs at = {.n = 0};
    CHECK(run1("RandomUniform", 22, &at, NULL, &y, &e) != KILN_OK && strstr(e.msg, "shape"),
          "RandomUniform without shape must fail: '%s'", e.msg);
    int64_t s[2] = {3, -1};
    add_ints(&at, "shape", s, 2);
    CHECK(run1("RandomNormal", 22, &at, NULL, &y, &e) != KILN_OK && strstr(e.msg, "-1"),
          "RandomNormal with a negative dim must fail: '%s'", e.msg);
    at.n = 0;
    s[1] = 2;
    add_ints(&at, "shape", s, 2);
    add_f(&at, "low", 2.0f);
    add_f(&at, "high", 1.0f);
    CHECK(run1("RandomUniform", 22, &at, NULL, &y, &e) != KILN_OK && strstr(e.msg, "low"),
          "RandomUniform with low > high must fail: '%s'", e.msg);
    at.n = 0;
    add_ints(&at, "shape", s, 2);
    add_i(&at, "dtype", KILN_DTYPE_I32);
    CHECK(run1("RandomUniform", 22, &at, NULL, &y, &e) != KILN_OK && strstr(e.msg, "int32"),
          "RandomUniform with dtype int32 must fail: '%s'", e.msg);
    /* Out of memory fails cleanly on every allocation. */
    at.n = 0;
    int64_t big[2] = {64, 64};
    add_ints(&at, "shape", big, 2);
    for (long n = 1; n < 20; n++) {
        kiln_alloc_fail_after(n);
        kiln_status st = run1("RandomNormal", 22, &at, NULL, &y, &e);
        kiln_alloc_fail_after(0);
        CHECK(st == KILN_OK || st == KILN_E_NOMEM, "OOM at allocation %ld: status %d", n, (int)st);
        kiln_value_free(y);
        y = NULL;
        if (st == KILN_OK) break;
    }
}

int main(void)
{
    test_uniform();
    test_normal();
    test_seed();
    test_like();
    test_bernoulli();
    test_multinomial();
    test_errors();
    return test_summary("test_random");
}
