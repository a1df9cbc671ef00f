/* test_reduce.c: the Reduce* and ArgMax/ArgMin CPU kernels against a naive reference.
 *
 * Random shapes (rank 0..5, dims 0..4 with a bias towards small non-empty shapes), random
 * axis sets (including none, all and negative spellings), keepdims on and off, axes as an
 * attribute (opset 13 for all but ReduceSum, which takes them as input from 13) and as an
 * input (opset 18), and noop_with_empty_axes. The reference maps every input element to
 * its output element through explicit coordinates and folds in double, a different
 * algorithm from the kernel's merged-dims walk. Also checks integer exactness (int64 sums
 * beyond 2^53, uint64 max), float16 rounding, empty-set identities, ArgMax/ArgMin with
 * select_last_index against a linear scan, and that bad axes fail with a status.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/kernel.h"
#include "test_support.h"

static int g_cases;

/* ------------------------------------------------------------------ running one node */

struct node_run {
    const char *op;
    struct attrs at;
    struct kiln_value *in[2], *out[1];
    kiln_err err;
};

static void node_init(struct node_run *r, const char *op, struct kiln_value *x,
                      struct kiln_value *axes)
{
    memset(r, 0, sizeof *r);
    r->op = op;
    r->in[0] = x;
    r->in[1] = axes;
}

/* Runs the node at `opset`; on KILN_OK r->out[0] holds the output (caller frees). */
static kiln_status node_exec(struct node_run *r, int opset)
{
    return run_node("", r->op, opset, r->at.a, r->at.n, r->in, r->in[1] ? 2 : 1, r->out, 1,
                    &r->err);
}

/* ------------------------------------------------------------------ reference */

enum rop { R_SUM, R_MEAN, R_MAX, R_MIN, R_PROD, R_L1, R_L2, R_LOGSUM, R_LOGSUMEXP, R_SUMSQ, R_N };
static const char *const rop_name[R_N] = {
    "ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
    "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare",
};

/* Reference reduction of x (doubles, shape dims) over reduced[]: fills ref[on]. */
static void ref_reduce(enum rop op, const double *x, int rank, const int64_t *dims,
                       const bool *reduced, double *ref, size_t on)
{
    size_t n = 1;
    for (int d = 0; d < rank; d++) n *= (size_t)dims[d];
    double *s = calloc(on + 1, sizeof *s), *mx = malloc((on + 1) * sizeof *mx);
    double *p = malloc((on + 1) * sizeof *p), *mn = malloc((on + 1) * sizeof *mn);
    size_t *cnt = calloc(on + 1, sizeof *cnt);
    for (size_t o = 0; o < on; o++) mx[o] = -INFINITY, mn[o] = INFINITY, p[o] = 1;
    /* First pass: max (needed by LogSumExp). */
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < n; i++) {
            size_t rem = i, o = 0, ostride = 1;
            for (int d = rank - 1; d >= 0; d--) {
                size_t c = rem % (size_t)dims[d];
                rem /= (size_t)dims[d];
                if (!reduced[d]) {
                    o += c * ostride;
                    ostride *= (size_t)dims[d];
                }
            }
            double v = x[i];
            if (pass == 0) {
                if (v > mx[o]) mx[o] = v;
                if (v < mn[o]) mn[o] = v;
                continue;
            }
            cnt[o]++;
            p[o] *= v;
            switch (op) {
            case R_L1: s[o] += fabs(v); break;
            case R_L2: case R_SUMSQ: s[o] += v * v; break;
            case R_LOGSUMEXP: s[o] += exp(v - mx[o]); break;
            default: s[o] += v; break;
            }
        }
    }
    for (size_t o = 0; o < on; o++) {
        switch (op) {
        case R_SUM: case R_L1: case R_SUMSQ: ref[o] = s[o]; break;
        case R_MEAN: ref[o] = s[o] / (double)cnt[o]; break;
        case R_MAX: ref[o] = mx[o]; break;
        case R_MIN: ref[o] = mn[o]; break;
        case R_PROD: ref[o] = p[o]; break;
        case R_L2: ref[o] = sqrt(s[o]); break;
        case R_LOGSUM: ref[o] = log(s[o]); break;
        case R_LOGSUMEXP: ref[o] = cnt[o] ? mx[o] + log(s[o]) : -INFINITY; break;
        default: break;
        }
    }
    free(s), free(mx), free(p), free(mn), free(cnt);
}

/* ------------------------------------------------------------------ float reductions */

static void random_case(enum rop op, bool axes_as_input)
{
    int rank = rng_int_low(6);
    int64_t dims[KILN_MAX_RANK];
    for (int d = 0; d < rank; d++) dims[d] = rng_int_low(8) == 0 ? 0 : 1 + rng_int_low(4);
    struct kiln_value *xv = new_tensor(KILN_DTYPE_F32, rank, dims);
    size_t n = kiln_tensor_numel(&xv->t);
    double *xd = malloc((n + 1) * sizeof *xd);
    float *xf = xv->t.data;
    for (size_t i = 0; i < n; i++) {
        /* Keep products and logs tame: ReduceLogSum needs positive sums. */
        double v = rng_range(-2, 2);
        if (op == R_LOGSUM) v = fabs(v) + 0.1;
        if (op == R_PROD) v = 0.5 + fabs(v) * 0.5;
        xf[i] = (float)v;
        xd[i] = xf[i];
    }
    /* Axes: none, or a random subset, each written as d or d - rank. */
    bool reduced[KILN_MAX_RANK] = {false};
    int64_t axes[KILN_MAX_RANK];
    size_t na = 0;
    if (rng_int_low(4) != 0) {
        for (int d = 0; d < rank; d++) {
            if (rng_int_low(2)) {
                reduced[d] = true;
                axes[na++] = rng_int_low(2) ? d : d - rank;
            }
        }
    }
    const bool keepdims = rng_int_low(2);
    const bool noop = axes_as_input && na == 0 && rng_int_low(3) == 0;
    if (na == 0)
        for (int d = 0; d < rank; d++) reduced[d] = !noop;
    /* Empty-set reductions have no finite reference for Max/Min/Mean etc. in floats that
     * the loop above gives consistently; they are covered by empty_set_identities. */
    int64_t odims[KILN_MAX_RANK];
    int orank = 0;
    size_t on = 1, count = 1;
    for (int d = 0; d < rank; d++) {
        if (reduced[d]) count *= (size_t)dims[d];
        if (!reduced[d]) odims[orank++] = dims[d], on *= (size_t)dims[d];
        else if (keepdims) odims[orank++] = 1;
    }
    if (count == 0 && on > 0) {
        kiln_value_free(xv);
        free(xd);
        return;
    }

    struct kiln_value *av = NULL;
    struct node_run r;
    int opset;
    if (axes_as_input) {
        opset = 18;
        int64_t ad = (int64_t)na;
        av = new_tensor(KILN_DTYPE_I64, 1, &ad);
        if (na) memcpy(av->t.data, axes, na * sizeof *axes);
        /* An absent axes input and an empty one must mean the same. */
        if (na == 0 && rng_int_low(2)) {
            kiln_value_free(av);
            av = NULL;
        }
        node_init(&r, rop_name[op], xv, av);
        if (noop) add_i(&r.at, "noop_with_empty_axes", 1);
    } else {
        opset = op == R_SUM ? 11 : 13;
        node_init(&r, rop_name[op], xv, NULL);
        if (na) add_ints(&r.at, "axes", axes, na);
    }
    add_i(&r.at, "keepdims", keepdims);
    g_cases++;
    char sb[128];
    kiln_shape_str(rank, dims, sb, sizeof sb);
    kiln_status st = node_exec(&r, opset);
    CHECK(st == KILN_OK, "%s %s opset %d: %s", rop_name[op], sb, opset, r.err.msg);
    if (st == KILN_OK) {
        const struct kiln_tensor *y = &r.out[0]->t;
        bool shape_ok = y->rank == orank && y->dtype == KILN_DTYPE_F32;
        for (int d = 0; shape_ok && d < orank; d++) shape_ok = y->dims[d] == odims[d];
        CHECK(shape_ok, "%s %s keepdims=%d: output rank %d", rop_name[op], sb, keepdims, y->rank);
        if (shape_ok) {
            double *ref = malloc((on + 1) * sizeof *ref);
            ref_reduce(op, xd, rank, dims, reduced, ref, on);
            const float *yf = y->data;
            for (size_t o = 0; o < on; o++) {
                double tol = 1e-5 * (fabs(ref[o]) + 1);
                if (!(fabs(yf[o] - ref[o]) <= tol) && !(isinf(ref[o]) && yf[o] == ref[o])) {
                    CHECK(0, "%s %s keepdims=%d noop=%d: y[%zu] = %.7g, want %.7g", rop_name[op],
                          sb, keepdims, noop, o, yf[o], ref[o]);
                    break;
                }
            }
            free(ref);
        }
    }
    kiln_value_free(r.out[0]);
    kiln_value_free(xv);
    kiln_value_free(av);
    free(xd);
}

/* Reducing an empty set gives the identity. */
static void empty_set_identities(void)
{
    static const double want[R_N] = {
        [R_SUM] = 0, [R_MAX] = -INFINITY, [R_MIN] = INFINITY, [R_PROD] = 1, [R_L1] = 0,
        [R_L2] = 0, [R_LOGSUM] = -INFINITY, [R_LOGSUMEXP] = -INFINITY, [R_SUMSQ] = 0,
    };
    for (int op = 0; op < R_N; op++) {
        if (op == R_MEAN) continue;
        int64_t dims[3] = {2, 0, 4}, axes[1] = {1}, ad = 1;
        struct kiln_value *xv = new_tensor(KILN_DTYPE_F32, 3, dims);
        struct kiln_value *av = new_tensor(KILN_DTYPE_I64, 1, &ad);
        memcpy(av->t.data, axes, sizeof axes);
        struct node_run r;
        node_init(&r, rop_name[op], xv, av);
        g_cases++;
        kiln_status st = node_exec(&r, 18);
        CHECK(st == KILN_OK, "%s empty set: %s", rop_name[op], r.err.msg);
        if (st == KILN_OK) {
            const struct kiln_tensor *y = &r.out[0]->t;
            CHECK(y->rank == 3 && y->dims[0] == 2 && y->dims[1] == 1 && y->dims[2] == 4,
                  "%s empty set: wrong shape", rop_name[op]);
            const float *yf = y->data;
            for (size_t i = 0; i < kiln_tensor_numel(y); i++)
                if (yf[i] != (float)want[op]) {
                    CHECK(0, "%s empty set: y[%zu] = %g, want %g", rop_name[op], i, yf[i],
                          want[op]);
                    break;
                }
        }
        kiln_value_free(r.out[0]);
        kiln_value_free(xv);
        kiln_value_free(av);
    }
}

/* ------------------------------------------------------------------ integers, float16 */

static void integer_exactness(void)
{
    /* int64 sum beyond 2^53 must be exact (a double accumulator would lose the +1s). */
    int64_t dims[2] = {3, 4};
    struct kiln_value *xv = new_tensor(KILN_DTYPE_I64, 2, dims);
    int64_t *x = xv->t.data;
    for (int i = 0; i < 12; i++) x[i] = (i % 4 == 0) ? (INT64_C(1) << 60) : 1 + i;
    struct node_run r;
    int64_t axes[1] = {1};
    node_init(&r, "ReduceSum", xv, NULL);
    add_ints(&r.at, "axes", axes, 1);
    add_i(&r.at, "keepdims", 0);
    g_cases++;
    kiln_status st = node_exec(&r, 11);
    CHECK(st == KILN_OK, "int64 ReduceSum: %s", r.err.msg);
    if (st == KILN_OK) {
        const int64_t *y = r.out[0]->t.data;
        for (int a = 0; a < 3; a++) {
            int64_t want = (INT64_C(1) << 60);
            for (int b = 1; b < 4; b++) want += x[a * 4 + b];
            CHECK(y[a] == want, "int64 ReduceSum row %d = %lld, want %lld", a, (long long)y[a],
                  (long long)want);
        }
    }
    kiln_value_free(r.out[0]);
    kiln_value_free(xv);

    /* uint64 max compares unsigned; int32 min compares signed. */
    int64_t d1 = 5;
    struct kiln_value *uv = new_tensor(KILN_DTYPE_U64, 1, &d1);
    struct kiln_value *iv = new_tensor(KILN_DTYPE_I32, 1, &d1);
    uint64_t *u = uv->t.data;
    int32_t *iv32 = iv->t.data;
    for (int i = 0; i < 5; i++) {
        u[i] = (uint64_t)i * 3;
        iv32[i] = 7 - 3 * i;
    }
    u[2] = UINT64_MAX - 1;
    node_init(&r, "ReduceMax", uv, NULL);
    g_cases++;
    st = node_exec(&r, 13);
    CHECK(st == KILN_OK && *(uint64_t *)r.out[0]->t.data == UINT64_MAX - 1,
          "uint64 ReduceMax wrong: %s", r.err.msg);
    kiln_value_free(r.out[0]);
    node_init(&r, "ReduceMin", iv, NULL);
    g_cases++;
    st = node_exec(&r, 13);
    CHECK(st == KILN_OK && *(int32_t *)r.out[0]->t.data == -5, "int32 ReduceMin wrong: %s",
          r.err.msg);
    kiln_value_free(r.out[0]);
    kiln_value_free(uv);
    kiln_value_free(iv);
}

static void float16_mean(void)
{
    /* 1000 copies of 0.1 (f16: 0.0999755859375): a float16 accumulator would stall well
     * below the answer; double gives the correctly rounded mean. */
    int64_t d = 1000;
    struct kiln_value *xv = new_tensor(KILN_DTYPE_F16, 1, &d);
    uint16_t *x = xv->t.data;
    for (int i = 0; i < 1000; i++) x[i] = kiln_f32_to_f16(0.1f);
    struct node_run r;
    node_init(&r, "ReduceSum", xv, NULL);
    add_i(&r.at, "keepdims", 0);
    g_cases++;
    kiln_status st = node_exec(&r, 13);
    CHECK(st == KILN_OK, "f16 ReduceSum: %s", r.err.msg);
    if (st == KILN_OK) {
        float got = kiln_f16_to_f32(*(uint16_t *)r.out[0]->t.data);
        float want = kiln_f16_to_f32(kiln_f32_to_f16((float)(1000 * (double)kiln_f16_to_f32(x[0]))));
        CHECK(r.out[0]->t.rank == 0 && got == want, "f16 ReduceSum = %g, want %g", got, want);
    }
    kiln_value_free(r.out[0]);
    kiln_value_free(xv);
}

/* ------------------------------------------------------------------ ArgMax / ArgMin */

static void arg_case(bool want_max)
{
    int rank = 1 + rng_int_low(4);
    int64_t dims[KILN_MAX_RANK];
    for (int d = 0; d < rank; d++) dims[d] = 1 + rng_int_low(4);
    struct kiln_value *xv = new_tensor(KILN_DTYPE_I32, rank, dims);
    size_t n = kiln_tensor_numel(&xv->t);
    int32_t *x = xv->t.data;
    for (size_t i = 0; i < n; i++) x[i] = rng_int_low(3); /* many ties */
    int axis = rng_int_low(rank);
    bool last = rng_int_low(2), keepdims = rng_int_low(2);
    struct node_run r;
    node_init(&r, want_max ? "ArgMax" : "ArgMin", xv, NULL);
    add_i(&r.at, "axis", rng_int_low(2) ? axis : axis - rank);
    add_i(&r.at, "keepdims", keepdims);
    add_i(&r.at, "select_last_index", last);
    g_cases++;
    kiln_status st = node_exec(&r, 13);
    CHECK(st == KILN_OK, "Arg: %s", r.err.msg);
    if (st == KILN_OK) {
        const struct kiln_tensor *y = &r.out[0]->t;
        CHECK(y->dtype == KILN_DTYPE_I64 && y->rank == (keepdims ? rank : rank - 1),
              "Arg output type/rank");
        size_t outer = 1, inner = 1, len = (size_t)dims[axis];
        for (int d = 0; d < axis; d++) outer *= (size_t)dims[d];
        for (int d = axis + 1; d < rank; d++) inner *= (size_t)dims[d];
        const int64_t *yi = y->data;
        for (size_t a = 0; a < outer; a++)
            for (size_t b = 0; b < inner; b++) {
                size_t best = 0;
                for (size_t j = 1; j < len; j++) {
                    int32_t v = x[(a * len + j) * inner + b], bv = x[(a * len + best) * inner + b];
                    bool better = want_max ? v > bv : v < bv;
                    if (better || (last && v == bv)) best = j;
                }
                if (yi[a * inner + b] != (int64_t)best) {
                    CHECK(0, "Arg%s axis %d last %d: got %lld, want %zu", want_max ? "Max" : "Min",
                          axis, last, (long long)yi[a * inner + b], best);
                    a = outer;
                    break;
                }
            }
    }
    kiln_value_free(r.out[0]);
    kiln_value_free(xv);
}

/* ------------------------------------------------------------------ errors */

static void bad_axes(void)
{
    int64_t dims[2] = {2, 3}, axes[2] = {0, -2};
    struct kiln_value *xv = new_tensor(KILN_DTYPE_F32, 2, dims);
    struct node_run r;
    node_init(&r, "ReduceMean", xv, NULL);
    add_ints(&r.at, "axes", axes, 2); /* the same axis twice */
    g_cases++;
    kiln_status st = node_exec(&r, 13);
    CHECK(st == KILN_E_INVALID_ARG && strstr(r.err.msg, "twice"), "duplicate axes: st %d '%s'",
          (int)st, r.err.msg);
    kiln_value_free(r.out[0]);
    axes[0] = 2;
    node_init(&r, "ReduceMean", xv, NULL);
    add_ints(&r.at, "axes", axes, 1);
    g_cases++;
    st = node_exec(&r, 13);
    CHECK(st == KILN_E_INVALID_ARG && strstr(r.err.msg, "out of range"),
          "axis 2 of rank 2: st %d '%s'", (int)st, r.err.msg);
    kiln_value_free(r.out[0]);
    kiln_value_free(xv);
}

int main(void)
{
    rng_seed(0x9E3779B97F4A7C15ull);
    for (int op = 0; op < R_N; op++)
        for (int i = 0; i < 150; i++) random_case((enum rop)op, i % 2);
    empty_set_identities();
    integer_exactness();
    float16_mean();
    for (int i = 0; i < 200; i++) arg_case(i % 2);
    bad_axes();
    printf("test_reduce: %d cases\n", g_cases);
    return test_summary("test_reduce");
}
