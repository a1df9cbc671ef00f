/* test_reduce_fast.c: the streaming reductions (src/cpu/ops/reduce.c, cpu/isa/reduce.c).
 *
 * 1. The row/column folds of every ISA variant up to kiln_isa_best() against float64 sums
 *    and max/min on random, odd and tiny lengths; every variant gives the same bits as the
 *    portable one (fixed association order).
 * 2. float32 ReduceSum/Mean/Max/Min/L1/L2/SumSquare/LogSumExp/Prod and ArgMax/ArgMin on
 *    random shapes of rank 1..4 (dims 1..37, odd), every subset of axes, against a float64
 *    reference computed here by coordinates. Tolerance: |y - ref| <= 4e-7 |ref| + 1e-12 *
 *    sum |terms| (the final rounding to float32 is 2^-24 relative; the double accumulation
 *    error bound (n/32 + 6) 2^-53 sum|x| is far below 1e-12 sum|x| for these sizes).
 *    Each case runs inline and over a 2-thread pool: the results must be identical.
 * 3. Shapes large enough to be chunked (row and column cases), 1 vs 2 threads identical and
 *    within tolerance.
 * 4. ReduceSum over 64 M float32 elements: the process's peak RSS grows by less than a
 *    quarter of the input while reducing (the old kernel copied it to double: 2x).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "base/pool.h"
#include "cpu/isa.h"
#include "cpu/reduce_isa.h"
#include "test_support.h"

typedef void (*row_fn)(const float *, size_t, int, double, double *);
typedef void (*col_fn)(const float *, size_t, int, const double *, double *);

static void test_folds(void)
{
    static const size_t lens[] = {0, 1, 2, 3, 7, 31, 32, 33, 63, 64, 65, 100, 257, 1000, 4099};
    float *x = malloc(4099 * sizeof *x);
    double *acc = malloc(4099 * sizeof *acc), *acc0 = malloc(4099 * sizeof *acc0);
    for (size_t i = 0; i < 4099; i++) x[i] = rng_f32() * (i % 7 == 0 ? 100.0f : 1.0f);
    for (int isa = 0; isa <= (int)kiln_isa_best(); isa++) {
        row_fn row = KILN_ISA_VARIANT(kiln_red_row_f32_isa, isa);
        row_fn row0 = kiln_red_row_f32_isa_portable;
        col_fn col = KILN_ISA_VARIANT(kiln_red_col_f32_isa, isa);
        for (size_t li = 0; li < sizeof lens / sizeof *lens; li++) {
            size_t n = lens[li];
            double s = 0, sa = 0, sq = 0, mx = -INFINITY, mn = INFINITY;
            for (size_t i = 0; i < n; i++) {
                s += x[i], sa += fabs(x[i]), sq += (double)x[i] * x[i];
                mx = x[i] > mx ? x[i] : mx, mn = x[i] < mn ? x[i] : mn;
            }
            const int ops[] = {KILN_RED_SUM, KILN_RED_ASUM, KILN_RED_SQSUM, KILN_RED_MAX, KILN_RED_MIN};
            const double want[] = {s, sa, sq, mx, mn};
            for (int o = 0; o < 5; o++) {
                double init = ops[o] == KILN_RED_MAX ? -INFINITY : ops[o] == KILN_RED_MIN ? INFINITY : 0;
                double a = init, b = init;
                row(x, n, ops[o], 0, &a);
                row0(x, n, ops[o], 0, &b);
                CHECK(a == want[o] || fabs(a - want[o]) <= 1e-13 * (sa + sq + 1), "%s row op %d n %zu: %.17g vs %.17g",
                      kiln_isa_name(isa), ops[o], n, a, want[o]);
                CHECK(a == b || fabs(a - b) <= 1e-13 * (sa + sq + 1), "%s row op %d n %zu vs portable",
                      kiln_isa_name(isa), ops[o], n);
                for (size_t i = 0; i < n; i++) acc[i] = acc0[i] = init;
                col(x, n, ops[o], NULL, acc);
                bool ok = true;
                for (size_t i = 0; i < n; i++) {
                    double v = x[i];
                    double e = ops[o] == KILN_RED_ASUM ? fabs(v) : ops[o] == KILN_RED_SQSUM ? v * v : v;
                    ok = ok && acc[i] == e;
                }
                CHECK(ok, "%s col op %d n %zu", kiln_isa_name(isa), ops[o], n);
            }
            /* NaN sticks in max/min wherever it is. */
            if (n >= 3) {
                float keep = x[n / 2];
                x[n / 2] = NAN;
                double a = -INFINITY, b = INFINITY;
                row(x, n, KILN_RED_MAX, 0, &a);
                row(x, n, KILN_RED_MIN, 0, &b);
                CHECK(isnan(a) && isnan(b), "%s NaN max/min n %zu", kiln_isa_name(isa), n);
                x[n / 2] = keep;
            }
        }
    }
    free(x), free(acc), free(acc0);
}

/* ------------------------------------------------------------------ ops vs float64 */

enum { O_SUM, O_MEAN, O_MAX, O_MIN, O_L1, O_L2, O_SUMSQ, O_LSE, O_PROD, O_ARGMAX, O_ARGMIN, O_N };
static const char *const op_name[O_N] = {"ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin",
                                         "ReduceL1", "ReduceL2", "ReduceSumSquare",
                                         "ReduceLogSumExp", "ReduceProd", "ArgMax", "ArgMin"};

static struct kiln_pool *g_pool;

/* Runs op on x over mask (bit d: axis d reduced; ArgMax/ArgMin: the lowest set bit is the
 * axis) with the pool or inline; returns the output value. */
static struct kiln_value *run_red(int op, struct kiln_value *x, int rank, unsigned mask,
                                  struct kiln_pool *pool)
{
    struct attrs at = {0};
    add_i(&at, "keepdims", 1);
    struct kiln_value *in[2] = {x, NULL}, *out[1] = {NULL};
    kiln_err err = {0};
    int64_t axes[KILN_MAX_RANK];
    size_t na = 0;
    for (int d = 0; d < rank; d++)
        if (mask >> d & 1) axes[na++] = d;
    if (op >= O_ARGMAX) {
        add_i(&at, "axis", axes[0]);
    } else {
        in[1] = vec_of(KILN_DTYPE_I64, na, axes);
        if (na == 0) add_i(&at, "noop_with_empty_axes", 1);
    }
    kiln_status st = run_op_pool(pool, op_name[op], 18, at.a, at.n, in, 2, out, 1, &err);
    CHECK(st == KILN_OK, "%s: %s", op_name[op], err.msg);
    if (in[1]) kiln_value_free(in[1]);
    return out[0];
}

static void check_case(int rank, const int64_t *dims, unsigned mask, int op, const float *xv)
{
    size_t n = 1;
    for (int d = 0; d < rank; d++) n *= (size_t)dims[d];
    struct kiln_value *x = tensor_of(KILN_DTYPE_F32, rank, dims, xv);
    struct kiln_value *y1 = run_red(op, x, rank, mask, NULL);
    struct kiln_value *y2 = run_red(op, x, rank, mask, g_pool);
    if (!y1 || !y2) goto out;
    const struct kiln_tensor *t1 = &y1->t, *t2 = &y2->t;
    size_t on = kiln_tensor_numel(t1);
    CHECK(memcmp(t1->data, t2->data, kiln_tensor_nbytes(t1)) == 0, "%s mask %x: 1 vs 2 threads differ",
          op_name[op], mask);
    /* Reference by coordinates: output index of each input element. */
    double *ref = calloc(on, sizeof *ref), *mag = calloc(on, sizeof *mag), *mxv = malloc(on * sizeof *mxv);
    int64_t *arg = calloc(on, sizeof *arg);
    size_t *cnt = calloc(on, sizeof *cnt);
    for (size_t o = 0; o < on; o++) mxv[o] = -INFINITY;
    int axis = 0;
    while (op >= O_ARGMAX && !(mask >> axis & 1)) axis++;
    unsigned rmask = op >= O_ARGMAX ? 1u << axis : mask;
    for (int pass = 0; pass < 2; pass++) {
        int64_t idx[KILN_MAX_RANK] = {0};
        for (size_t i = 0; i < n; i++) {
            size_t o = 0;
            for (int d = 0; d < rank; d++) o = o * (size_t)(rmask >> d & 1 ? 1 : dims[d]) + (size_t)(rmask >> d & 1 ? 0 : idx[d]);
            double v = xv[i];
            if (pass == 0) {
                if (v > mxv[o]) mxv[o] = v;
                if (op == O_ARGMAX || op == O_ARGMIN) {
                    bool take = cnt[o] == 0 || (op == O_ARGMAX ? v > ref[o] : v < ref[o]);
                    if (take) ref[o] = v, arg[o] = idx[axis];
                    cnt[o]++;
                }
            } else if (op < O_ARGMAX) {
                double t;
                switch (op) {
                case O_MAX: t = v; if (cnt[o] == 0 || v > ref[o]) ref[o] = v; break;
                case O_MIN: t = v; if (cnt[o] == 0 || v < ref[o]) ref[o] = v; break;
                case O_L1: t = fabs(v); ref[o] += t; break;
                case O_L2: case O_SUMSQ: t = v * v; ref[o] += t; break;
                case O_LSE: t = exp(v - mxv[o]); ref[o] += t; break;
                case O_PROD: t = fabs(v); ref[o] = (cnt[o] ? ref[o] : 1) * v; break;
                default: t = v; ref[o] += v; break;
                }
                mag[o] += fabs(t);
                cnt[o]++;
            }
            for (int d = rank - 1; d >= 0; d--) {
                if (++idx[d] < dims[d]) break;
                idx[d] = 0;
            }
        }
    }
    bool ok = true;
    size_t bad = 0;
    for (size_t o = 0; o < on && ok; o++) {
        if (op >= O_ARGMAX) {
            ok = ((const int64_t *)t1->data)[o] == arg[o];
            bad = o;
            continue;
        }
        double r = ref[o];
        if (op == O_MEAN) r /= (double)cnt[o];
        if (op == O_L2) r = sqrt(r);
        if (op == O_LSE) r = log(r) + mxv[o], mag[o] = fabs(r);
        if (op == O_PROD) mag[o] = fabs(r);
        double y = ((const float *)t1->data)[o];
        ok = fabs(y - r) <= 4e-7 * fabs(r) + 1e-12 * mag[o] + 1e-30;
        bad = o;
    }
    CHECK(ok, "%s rank %d mask %x at %zu", op_name[op], rank, mask, bad);
    free(ref), free(mag), free(mxv), free(arg), free(cnt);
out:
    kiln_value_free(x);
    if (y1) kiln_value_free(y1);
    if (y2) kiln_value_free(y2);
}

static void test_ops(void)
{
    for (int trial = 0; trial < 40; trial++) {
        int rank = 1 + trial % 4;
        int64_t dims[4];
        size_t n = 1;
        for (int d = 0; d < rank; d++) {
            dims[d] = trial < 8 ? 1 + rng_int(3) : 1 + rng_int(rank <= 2 ? 37 : 13);
            n *= (size_t)dims[d];
        }
        float *xv = malloc(n * sizeof *xv);
        for (unsigned mask = 0; mask < 1u << rank; mask++) {
            for (int op = 0; op < O_N; op++) {
                if (op >= O_ARGMAX && mask == 0) continue;
                for (size_t i = 0; i < n; i++)
                    xv[i] = op == O_PROD ? 1.0f + 0.01f * rng_f32() : rng_f32() * 4.0f;
                if (op >= O_ARGMAX)
                    for (size_t i = 0; i < n; i++) xv[i] = (float)rng_int(5); /* ties */
                check_case(rank, dims, mask, op, xv);
            }
        }
        free(xv);
    }
}

/* Big enough to be split into chunks: a row case ([3, 300001] over axis 1), a column case
 * ([700001, 3] over axis 0) and all axes of [5, 300007]. */
static void test_chunked(void)
{
    const int64_t shapes[3][2] = {{3, 300001}, {700001, 3}, {5, 300007}};
    const unsigned masks[3] = {2, 1, 3};
    for (int c = 0; c < 3; c++) {
        size_t n = (size_t)(shapes[c][0] * shapes[c][1]);
        float *xv = malloc(n * sizeof *xv);
        for (size_t i = 0; i < n; i++) xv[i] = rng_f32();
        check_case(2, shapes[c], masks[c], O_SUM, xv);
        check_case(2, shapes[c], masks[c], O_MAX, xv);
        free(xv);
    }
}

static long maxrss_kb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static void test_big_memory(void)
{
    const int64_t dims[1] = {64 << 20};
    struct kiln_value *x = new_tensor(KILN_DTYPE_F32, 1, dims);
    float *xv = x->t.data;
    for (size_t i = 0; i < (size_t)dims[0]; i++) xv[i] = (float)(i & 1023) * (1.0f / 1024);
    long before = maxrss_kb();
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    struct kiln_value *y = run_red(O_SUM, x, 1, 1, g_pool);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("ReduceSum of %lld float32 (2 threads): %.3f s, peak RSS +%ld KiB\n", (long long)dims[0],
           (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec),
           maxrss_kb() - before);
    long grew = maxrss_kb() - before, input_kb = (long)(dims[0] * 4 / 1024);
    CHECK(grew < input_kb / 4, "ReduceSum of %lld floats grew the peak RSS by %ld KiB (input %ld KiB)",
          (long long)dims[0], grew, input_kb);
    double want = (double)(dims[0] / 1024) * (1023.0 * 1024 / 2) / 1024;
    if (y) {
        double got = *(const float *)y->t.data;
        CHECK(fabs(got - want) <= 4e-7 * want, "big sum %.9g vs %.9g", got, want);
        kiln_value_free(y);
    }
    kiln_value_free(x);
}

int main(void)
{
    rng_seed(0x5ed0c3);
    kiln_err err = {0};
    if (kiln_pool_create(2, &g_pool, &err) != KILN_OK) {
        printf("FAIL: no pool: %s\n", err.msg);
        return 1;
    }
    test_folds();
    test_ops();
    test_chunked();
    test_big_memory();
    kiln_pool_free(g_pool);
    return test_summary("test_reduce_fast");
}
