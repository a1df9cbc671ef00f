/* test_par_ops.c: the kernels that split their work over the session's thread pool
 * (src/cpu/ops/unary.c, binary.c, softmax.c, norm.c, reduce.c) give bit-identical outputs
 * with a 3-thread pool and without one.
 *
 * Each op runs on shapes from tiny ([1], [2,3]) through odd ([3,5,7]) to ones large enough
 * to be split into many chunks ([1,3,257,131], [2,4,129,67], [64,1031]) plus random ones;
 * every output (dtype, shape and bytes, so NaN payloads and signed zeros too) must match
 * what the same kernel writes with no pool (memcmp). Covered: the generic unary path for
 * float32, double, float16, bfloat16 and integers (Relu, Exp, Tanh, Erf, Sigmoid, Sqrt,
 * Gelu both ways, Softplus, Abs, Neg), Clip (float32, float16, int32), the broadcasting
 * binary ops (same shapes, random broadcasts either way, scalars; Add Sub Mul Div Pow Max
 * Equal, int32 Add), Sum and Mean (variadic), PRelu, Softmax/LogSoftmax (last axis, a middle
 * axis, opset 11 coercion), LayerNormalization (with Mean/InvStdDev), RMSNormalization,
 * BatchNormalization, InstanceNormalization, GroupNormalization, LRN, LpNormalization, and
 * ReduceMean/Sum/Max/LogSumExp (float and int32, kept and reduced outer dims).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/pool.h"
#include "cpu/kernel.h"
#include "test_support.h"

#define MAX_OUT 3

static struct kiln_pool *g_pool;
static int g_compared; /* op runs compared, for the summary line */

static void shape_str(int rank, const int64_t *d, char *buf, size_t size)
{
    kiln_shape_str(rank, d, buf, size);
}

/* The first byte at which a and b differ, n when none does. */
static size_t first_diff(const void *a, const void *b, size_t n)
{
    const unsigned char *p = a, *q = b;
    size_t i = 0;
    while (i < n && p[i] == q[i]) i++;
    return i;
}

/* Runs op without a pool and with g_pool, and checks every output is the same bytes. Frees
 * the inputs. */
static void same(const char *what, const char *op, int opset, const struct attrs *at,
                 struct kiln_value **in, size_t n_in, size_t n_out)
{
    struct kiln_value *a[MAX_OUT] = {0}, *b[MAX_OUT] = {0};
    kiln_err e1 = {0}, e2 = {0};
    char sb[160];
    shape_str(in[0]->t.rank, in[0]->t.dims, sb, sizeof sb);
    kiln_status s1 = run_op_pool(NULL, op, opset, at ? at->a : NULL, at ? at->n : 0, in, n_in, a,
                              n_out, &e1);
    kiln_status s2 = run_op_pool(g_pool, op, opset, at ? at->a : NULL, at ? at->n : 0, in, n_in, b,
                              n_out, &e2);
    CHECK(s1 == KILN_OK, "%s %s: 1 thread: %s", what, sb, e1.msg);
    CHECK(s2 == KILN_OK, "%s %s: 3 threads: %s", what, sb, e2.msg);
    if (s1 == KILN_OK && s2 == KILN_OK) {
        g_compared++;
        for (size_t i = 0; i < n_out; i++) {
            const struct kiln_tensor *ta = &a[i]->t, *tb = &b[i]->t;
            CHECK(ta->dtype == tb->dtype && same_shape(tb, ta->rank, ta->dims),
                  "%s %s: output %zu dtype/shape differ", what, sb, i);
            if (ta->dtype != tb->dtype || !same_shape(tb, ta->rank, ta->dims)) continue;
            size_t nb = kiln_tensor_nbytes(ta), at_ = first_diff(ta->data, tb->data, nb);
            CHECK(at_ == nb, "%s %s: output %zu differs first at element %zu", what, sb, i,
                  at_ / kiln_dtype_size(ta->dtype));
        }
    }
    free_all(a, MAX_OUT);
    free_all(b, MAX_OUT);
    free_all(in, n_in);
}

/* ------------------------------------------------------------------ inputs */

/* A tensor of dtype dt and the given shape, values uniform in [lo, hi) (rounded for ints). */
static struct kiln_value *rand_of(kiln_dtype dt, int rank, const int64_t *dims, double lo,
                                  double hi)
{
    size_t n = 1;
    for (int d = 0; d < rank; d++) n *= (size_t)dims[d];
    double *v = malloc((n ? n : 1) * sizeof *v);
    if (!v) {
        printf("out of memory\n");
        exit(1);
    }
    bool is_int = kiln_dtype_is_int(dt);
    for (size_t i = 0; i < n; i++) {
        double x = rng_range(lo, hi);
        v[i] = is_int ? floor(x) : x;
    }
    struct kiln_value *t = tensor_f64(dt, rank, dims, v);
    free(v);
    return t;
}

static struct kiln_value *randf(int rank, const int64_t *dims)
{
    return rand_of(KILN_DTYPE_F32, rank, dims, -3, 3);
}

/* A few special values sprinkled in (NaN, +-inf, -0) so their handling is compared too. */
static void sprinkle(struct kiln_value *v)
{
    size_t n = kiln_tensor_numel(&v->t);
    if (v->t.dtype != KILN_DTYPE_F32 || n < 8) return;
    float *x = v->t.data;
    x[rng_int((int)n)] = NAN;
    x[rng_int((int)n)] = INFINITY;
    x[rng_int((int)n)] = -INFINITY;
    x[rng_int((int)n)] = -0.0f;
}

struct shape {
    int rank;
    int64_t d[4];
};

#define N_FIXED 7
static const struct shape fixed_shapes[N_FIXED] = {
    {1, {1}},           {2, {2, 3}},         {3, {3, 5, 7}},          {4, {1, 3, 257, 131}},
    {4, {2, 4, 129, 67}}, {2, {64, 1031}}, {3, {4, 128, 96}},
};
#define N_RANDOM 4
#define N_SHAPES (N_FIXED + N_RANDOM)
static struct shape shapes[N_SHAPES];

/* Random shapes of rank 1..4 with up to ~300K elements, some large enough to be split. */
static void make_shapes(void)
{
    memcpy(shapes, fixed_shapes, sizeof fixed_shapes);
    for (int s = N_FIXED; s < N_SHAPES; s++) {
        struct shape *sh = &shapes[s];
        sh->rank = 1 + rng_int(4);
        size_t n = 1;
        for (int d = 0; d < sh->rank; d++) {
            int64_t hi = d == sh->rank - 1 ? 400 : d >= 2 ? 70 : 9;
            sh->d[d] = 1 + rng_int((int)hi);
            n *= (size_t)sh->d[d];
        }
        if (n < 20000 && sh->rank >= 2) { /* large enough to split */
            size_t rest = n / (size_t)sh->d[sh->rank - 1];
            sh->d[sh->rank - 1] = (int64_t)(20000 / rest) + 1;
        }
    }
}

static size_t numel(const struct shape *s)
{
    size_t n = 1;
    for (int d = 0; d < s->rank; d++) n *= (size_t)s->d[d];
    return n;
}

/* ------------------------------------------------------------------ unary */

static void test_unary(void)
{
    static const char *const f32_ops[] = {"Relu", "Exp", "Tanh", "Erf", "Sigmoid", "Sqrt",
                                          "Softplus", "Abs", "Neg", "LeakyRelu", "HardSwish"};
    for (int s = 0; s < N_SHAPES; s++) {
        const struct shape *sh = &shapes[s];
        for (size_t o = 0; o < sizeof f32_ops / sizeof *f32_ops; o++) {
            struct kiln_value *in[1] = {randf(sh->rank, sh->d)};
            sprinkle(in[0]);
            int opset = strcmp(f32_ops[o], "HardSwish") == 0 ? 14 : 13;
            same(f32_ops[o], f32_ops[o], opset, NULL, in, 1, 1);
        }
        for (int approx = 0; approx < 2; approx++) {
            struct attrs at = {0};
            add_s(&at, "approximate", approx ? "tanh" : "none");
            struct kiln_value *in[1] = {randf(sh->rank, sh->d)};
            sprinkle(in[0]);
            same(approx ? "Gelu tanh" : "Gelu", "Gelu", 20, &at, in, 1, 1);
        }
        /* Other dtypes through the same chunked path. */
        struct kiln_value *in[1] = {rand_of(KILN_DTYPE_F64, sh->rank, sh->d, -3, 3)};
        same("Exp f64", "Exp", 13, NULL, in, 1, 1);
        in[0] = rand_of(KILN_DTYPE_F16, sh->rank, sh->d, -3, 3);
        same("Tanh f16", "Tanh", 13, NULL, in, 1, 1);
        in[0] = rand_of(KILN_DTYPE_BF16, sh->rank, sh->d, -3, 3);
        same("Sigmoid bf16", "Sigmoid", 13, NULL, in, 1, 1);
        in[0] = rand_of(KILN_DTYPE_I32, sh->rank, sh->d, -1000, 1000);
        same("Abs i32", "Abs", 13, NULL, in, 1, 1);
        in[0] = rand_of(KILN_DTYPE_I8, sh->rank, sh->d, -128, 128);
        same("Neg i8", "Neg", 13, NULL, in, 1, 1);

        /* Clip: float32 with both bounds, one bound, float16, int32; opset 6 attributes. */
        struct kiln_value *c3[3] = {randf(sh->rank, sh->d), scalar(KILN_DTYPE_F32, -0.5),
                                    scalar(KILN_DTYPE_F32, 0.75)};
        sprinkle(c3[0]);
        same("Clip", "Clip", 13, NULL, c3, 3, 1);
        struct kiln_value *c2[3] = {randf(sh->rank, sh->d), NULL, scalar(KILN_DTYPE_F32, 1)};
        same("Clip max", "Clip", 13, NULL, c2, 3, 1);
        struct kiln_value *ch[3] = {rand_of(KILN_DTYPE_F16, sh->rank, sh->d, -3, 3),
                                    scalar(KILN_DTYPE_F16, -1), scalar(KILN_DTYPE_F16, 2)};
        same("Clip f16", "Clip", 13, NULL, ch, 3, 1);
        struct kiln_value *ci[3] = {rand_of(KILN_DTYPE_I32, sh->rank, sh->d, -100, 100),
                                    scalar(KILN_DTYPE_I32, -7), NULL};
        same("Clip i32", "Clip", 13, NULL, ci, 3, 1);
        struct attrs at = {0};
        add_f(&at, "min", 0.0f);
        add_f(&at, "max", 6.0f);
        struct kiln_value *c6[1] = {randf(sh->rank, sh->d)};
        same("Clip-6", "Clip", 6, &at, c6, 1, 1);
    }
}

/* ------------------------------------------------------------------ binary */

/* b: a shape a's broadcasts with: each dim of sh kept or set to 1 (mask bit d: set to 1),
 * leading dims dropped. */
static struct shape bshape(const struct shape *sh, unsigned mask, int drop)
{
    struct shape b = {0};
    for (int d = drop; d < sh->rank; d++) b.d[b.rank++] = (mask >> d) & 1 ? 1 : sh->d[d];
    return b;
}

static void binary_case(const char *op, int opset, kiln_dtype dt, const struct shape *sa,
                        const struct shape *sb, bool swap)
{
    char what[64];
    snprintf(what, sizeof what, "%s %s b%d", op, swap ? "swapped" : "", sb->rank);
    double lo = dt == KILN_DTYPE_F32 ? -3 : -50, hi = -lo;
    if (strcmp(op, "Pow") == 0) lo = 0.1;
    struct kiln_value *in[2] = {rand_of(dt, sa->rank, sa->d, lo, hi),
                                rand_of(dt, sb->rank, sb->d, lo, hi)};
    if (dt == KILN_DTYPE_F32 && strcmp(op, "Pow") != 0) sprinkle(in[0]);
    if (swap) {
        struct kiln_value *t = in[0];
        in[0] = in[1], in[1] = t;
    }
    same(what, op, opset, NULL, in, 2, 1);
}

static void test_binary(void)
{
    static const char *const ops[] = {"Add", "Sub", "Mul", "Div", "Pow", "Max", "Equal"};
    for (int s = 0; s < N_SHAPES; s++) {
        const struct shape *sh = &shapes[s];
        struct shape variants[6];
        int nv = 0;
        variants[nv++] = *sh;                                  /* same shape */
        variants[nv++] = bshape(sh, 0, sh->rank - 1);          /* last dim only */
        variants[nv++] = (struct shape){0, {0}};               /* scalar */
        variants[nv++] = bshape(sh, ~2u, 0);                   /* dim 1 only (channels) */
        variants[nv++] = bshape(sh, (unsigned)rng_int(16), 0); /* random */
        variants[nv++] = bshape(sh, (unsigned)rng_int(16), rng_int(sh->rank + 1));
        for (size_t o = 0; o < sizeof ops / sizeof *ops; o++)
            for (int v = 0; v < nv; v++)
                for (int swap = 0; swap < 2; swap++)
                    binary_case(ops[o], o == 5 ? 13 : 14, KILN_DTYPE_F32, sh, &variants[v], swap);
        for (int v = 0; v < nv; v++) binary_case("Add", 14, KILN_DTYPE_I32, sh, &variants[v], v & 1);

        /* Variadic Sum/Mean (three inputs, folded in place) and PRelu. */
        struct shape b1 = variants[4], b2 = variants[1];
        struct kiln_value *in3[3] = {randf(sh->rank, sh->d), randf(b1.rank, b1.d),
                                     randf(b2.rank, b2.d)};
        same("Sum", "Sum", 13, NULL, in3, 3, 1);
        struct kiln_value *m3[3] = {randf(b2.rank, b2.d), randf(sh->rank, sh->d),
                                    randf(b1.rank, b1.d)};
        same("Mean", "Mean", 13, NULL, m3, 3, 1);
        struct kiln_value *pr[2] = {randf(sh->rank, sh->d), randf(b1.rank, b1.d)};
        same("PRelu", "PRelu", 16, NULL, pr, 2, 1);
    }
}

/* ------------------------------------------------------------------ softmax */

static void test_softmax(void)
{
    for (int s = 0; s < N_SHAPES; s++) {
        const struct shape *sh = &shapes[s];
        for (int kind = 0; kind < 2; kind++) {
            const char *op = kind ? "LogSoftmax" : "Softmax";
            for (int ax = 0; ax < 3; ax++) {
                struct attrs at = {0};
                int opset = 13;
                if (ax == 0) add_i(&at, "axis", -1);
                else if (ax == 1) add_i(&at, "axis", sh->rank > 1 ? 1 : 0); /* inner > 1 */
                else opset = 11, add_i(&at, "axis", sh->rank > 1 ? 1 : 0); /* coerced 2-D */
                struct kiln_value *in[1] = {randf(sh->rank, sh->d)};
                if (s % 3 == 0) sprinkle(in[0]);
                char what[48];
                snprintf(what, sizeof what, "%s axis case %d", op, ax);
                same(what, op, opset, &at, in, 1, 1);
            }
        }
    }
}

/* ------------------------------------------------------------------ normalizations */

static void test_norm(void)
{
    for (int s = 0; s < N_SHAPES; s++) {
        const struct shape *sh = &shapes[s];
        /* LayerNormalization / RMSNormalization over the last dim and from dim 1. */
        for (int ax = 0; ax < 2; ax++) {
            int axis = ax == 0 || sh->rank < 2 ? sh->rank - 1 : 1;
            struct shape ps = {0};
            for (int d = axis; d < sh->rank; d++) ps.d[ps.rank++] = sh->d[d];
            struct attrs at = {0};
            add_i(&at, "axis", axis);
            struct kiln_value *in[3] = {randf(sh->rank, sh->d), randf(ps.rank, ps.d),
                                        randf(ps.rank, ps.d)};
            same("LayerNormalization", "LayerNormalization", 17, &at, in, 3, 3);
            struct kiln_value *r[2] = {randf(sh->rank, sh->d), randf(ps.rank, ps.d)};
            same("RMSNormalization", "RMSNormalization", 23, &at, r, 2, 1);
        }
        if (sh->rank < 2) continue;
        int64_t C = sh->d[1];
        struct kiln_value *bn[5] = {randf(sh->rank, sh->d), randf(1, &C), randf(1, &C),
                                    randf(1, &C), rand_of(KILN_DTYPE_F32, 1, &C, 0.1, 2)};
        same("BatchNormalization", "BatchNormalization", 15, NULL, bn, 5, 1);
        struct kiln_value *bn1[5] = {randf(sh->rank, sh->d), randf(1, &C), randf(1, &C),
                                     randf(1, &C), rand_of(KILN_DTYPE_F32, 1, &C, 0.1, 2)};
        same("BatchNormalization-9", "BatchNormalization", 9, NULL, bn1, 5, 1);
        struct attrs lp = {0};
        add_i(&lp, "axis", s % 2 ? 0 : -1);
        add_i(&lp, "p", 1 + s % 2);
        struct kiln_value *l[1] = {randf(sh->rank, sh->d)};
        same("LpNormalization", "LpNormalization", 22, &lp, l, 1, 1);
        if (sh->rank < 3) continue;
        struct kiln_value *ins[3] = {randf(sh->rank, sh->d), randf(1, &C), randf(1, &C)};
        same("InstanceNormalization", "InstanceNormalization", 22, NULL, ins, 3, 1);
        struct attrs gn = {0};
        int64_t G = C % 2 == 0 ? C / 2 : C;
        add_i(&gn, "num_groups", G);
        struct kiln_value *g[3] = {randf(sh->rank, sh->d), randf(1, &C), randf(1, &C)};
        same("GroupNormalization", "GroupNormalization", 21, &gn, g, 3, 1);
        struct attrs lr = {0};
        add_i(&lr, "size", 3);
        struct kiln_value *lrn[1] = {randf(sh->rank, sh->d)};
        same("LRN", "LRN", 13, &lr, lrn, 1, 1);
    }
}

/* ------------------------------------------------------------------ reductions */

static void reduce_case(const char *op, int opset, kiln_dtype dt, const struct shape *sh,
                        int64_t axis, bool keepdims)
{
    struct attrs at = {0};
    add_i(&at, "keepdims", keepdims);
    struct kiln_value *in[2] = {rand_of(dt, sh->rank, sh->d, -3, 3),
                                vec_f64(KILN_DTYPE_I64, 1, (double[]){(double)axis})};
    char what[64];
    snprintf(what, sizeof what, "%s axis %lld%s", op, (long long)axis, keepdims ? "" : " nokeep");
    same(what, op, opset, &at, in, 2, 1);
}

static void test_reduce(void)
{
    for (int s = 0; s < N_SHAPES; s++) {
        const struct shape *sh = &shapes[s];
        for (int64_t ax = -1; ax < sh->rank; ax++) {
            bool keep = (s + ax) % 2 == 0;
            reduce_case("ReduceMean", 18, KILN_DTYPE_F32, sh, ax, keep);
            reduce_case("ReduceSum", 13, KILN_DTYPE_F32, sh, ax, !keep);
            reduce_case("ReduceMax", 18, KILN_DTYPE_F32, sh, ax, keep);
            reduce_case("ReduceLogSumExp", 18, KILN_DTYPE_F32, sh, ax, keep);
            reduce_case("ReduceSum", 13, KILN_DTYPE_I32, sh, ax, keep);
            reduce_case("ReduceMin", 18, KILN_DTYPE_I64, sh, ax, keep);
        }
    }
}

int main(void)
{
    rng_seed(0x9a7a11e10ULL);
    kiln_err err = {0};
    CHECK(kiln_pool_create(3, &g_pool, &err) == KILN_OK, "pool: %s", err.msg);
    if (!g_pool) return test_summary("test_par_ops");
    make_shapes();
    test_unary();
    test_binary();
    test_softmax();
    test_norm();
    test_reduce();
    printf("test_par_ops: %d op runs compared (%zu elements in the largest shape)\n", g_compared,
           numel(&shapes[3]));
    kiln_pool_free(g_pool);
    return test_summary("test_par_ops");
}
