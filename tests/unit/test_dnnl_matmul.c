/* test_dnnl_matmul.c: src/cpu/dnnl_matmul.c, float32 products C = A * op(B) with B prepacked
 * by oneDNN, prepared and run directly (a kiln_prep_store as an engine's, a pool of the
 * prepared thread count).
 *
 * Cases: random and odd M, K, N (1..300 rows, odd widths, a row stride of C that oneDNN's
 * in-place primitive declines), narrow N (fewer than 16 columns a thread: split by rows), B
 * plain and transposed with a padded row stride, on 1, 2 and 3 threads; plus fixed shapes
 * whose split (rows or columns, how many slices) is checked through kiln_dnnl_mm_slices. Every result is compared
 * with a float64 reference: |got - want| <= 1e-5 + 1e-5 * |want|. Inputs lie on a 1/16 grid
 * in [-1, 1] and K <= 1024, so every product and partial sum is exact in float32 whatever the
 * summation order: the tolerance catches layout and indexing mistakes (a wrong row block, a
 * slice written to the wrong columns, a stale staging copy), never rounding. Each run starts
 * from C filled with NaN, so a cell no slice writes fails.
 *
 * Without oneDNN, or on an instruction set below AVX2, prepare gives NULL; the test then
 * checks just that.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/pool.h"
#include "cpu/dnnl_matmul.h"
#include "cpu/isa.h"
#include "cpu/kernel.h"
#include "exec/engine.h"
#include "test_support.h"

/* A value on the 1/16 grid in [-1, 1]. */
static float grid(void)
{
    return (float)(rng_int(33) - 16) / 16.0f;
}

struct mm_case {
    size_t M, K, N, ldb;
    bool transB;
};

/* C = A * op(B) in double. */
static void reference(const struct mm_case *c, const float *A, const float *B, double *want)
{
    for (size_t m = 0; m < c->M; m++)
        for (size_t n = 0; n < c->N; n++) {
            double s = 0;
            for (size_t k = 0; k < c->K; k++)
                s += (double)A[m * c->K + k] * (double)(c->transB ? B[n * c->ldb + k] : B[k * c->ldb + n]);
            want[m * c->N + n] = s;
        }
}

/* Prepares and runs the case on `threads` threads, checks C; *by_rows / the result: how it
 * split (0 slices: not prepared). */
static int run_case(const struct mm_case *c, int threads, bool *by_rows)
{
    size_t nb = c->transB ? c->N * c->ldb : c->K * c->ldb;
    float *A = malloc(c->M * c->K * sizeof *A), *B = malloc(nb * sizeof *B), *C = malloc(c->M * c->N * sizeof *C);
    double *want = malloc(c->M * c->N * sizeof *want);
    if (!A || !B || !C || !want) exit(1);
    for (size_t i = 0; i < c->M * c->K; i++) A[i] = grid();
    for (size_t i = 0; i < nb; i++) B[i] = grid();
    reference(c, A, B, want);

    struct kiln_arena arena = {0};
    struct kiln_prep_store store = {.arena = &arena};
    kiln_err err = {0};
    struct kiln_node node = {.op_type = "MatMul", .name = "mm"};
    struct kiln_kprep p = {.kc = {.node = &node, .opset = 17, .err = &err}, .threads = threads, .variant = -1, .store = &store};
    struct kiln_dnnl_mm *mm = NULL;
    struct kiln_pool *pool = NULL;
    char what[128];
    snprintf(what, sizeof what, "%zux%zux%zu%s ldb %zu, %d threads", c->M, c->K, c->N, c->transB ? " transB" : "",
             c->ldb, threads);
    int n = 0;
    *by_rows = false;
    CHECK(kiln_dnnl_mm_prepare(&p, c->M, c->K, c->N, B, c->ldb, c->transB, &mm) == KILN_OK, "%s: prepare: %s",
          what, err.msg);
    if (threads > 1) CHECK(kiln_pool_create(threads, &pool, &err) == KILN_OK, "pool: %s", err.msg);
    if (mm) {
        size_t M, K, N;
        kiln_dnnl_mm_dims(mm, &M, &K, &N);
        CHECK(M == c->M && K == c->K && N == c->N, "%s: dims %zu %zu %zu", what, M, K, N);
        n = kiln_dnnl_mm_slices(mm, by_rows);
        CHECK(n >= 1 && n <= threads, "%s: %d slices", what, n);
        for (int rep = 0; rep < 2; rep++) { /* twice: the cached per-thread arguments */
            for (size_t i = 0; i < c->M * c->N; i++) C[i] = NAN;
            CHECK(kiln_dnnl_mm_run(mm, pool, A, C), "%s: run failed", what);
            size_t bad = 0, first = 0;
            for (size_t i = 0; i < c->M * c->N; i++)
                if (!(fabs((double)C[i] - want[i]) <= 1e-5 + 1e-5 * fabs(want[i])) && !bad++) first = i;
            CHECK(!bad, "%s (%d %s slices): %zu cells wrong, first [%zu, %zu] = %g, want %g", what, n,
                  *by_rows ? "row" : "column", bad, first / c->N, first % c->N, (double)C[first], want[first]);
        }
    } else {
        CHECK(kiln_isa_active() < KILN_ISA_AVX2, "%s: not prepared on an AVX2+ CPU", what);
    }
    kiln_pool_free(pool);
    for (size_t i = 0; i < store.n_blobs; i++)
        if (store.blobs[i].owned) kiln_aligned_free(store.blobs[i].data);
    kiln_free(store.blobs);
    kiln_arena_free(&arena);
    free(A), free(B), free(C), free(want);
    return n;
}

static void test_random(void)
{
    static const size_t odd_n[] = {1, 3, 17, 31, 50, 257, 1000, 2049};
    for (int t = 0; t < 60; t++) {
        struct mm_case c = {.M = 1 + (size_t)rng_int_low(300), .K = 1 + (size_t)rng_int_low(1024),
                            .N = rng_int(2) ? odd_n[rng_int(8)] : 1 + (size_t)rng_int_low(700), .transB = rng_int(2)};
        c.ldb = (c.transB ? c.K : c.N) + (size_t)(rng_int(3) == 0 ? rng_int(9) : 0);
        bool by_rows;
        run_case(&c, 1 + t % 3, &by_rows);
    }
}

/* Shapes whose split is fixed: wide products split by columns (one row: a classifier's
 * weights; an odd row stride staged), narrow ones with many rows by rows (with a short last
 * block), a product too small to share stays whole. */
static void test_splits(void)
{
    static const struct {
        struct mm_case c;
        int threads;
        int want_n;     /* slices */
        bool want_rows; /* split by rows */
    } cases[] = {
        {{3136, 96, 192, 192, false}, 2, 2, false},
        {{3136, 96, 16, 16, false}, 2, 2, true},
        {{1001, 129, 20, 131, true}, 3, 3, true},
        {{83, 1001, 31, 33, false}, 2, 2, true},
        {{40, 3, 5, 5, true}, 2, 1, false},
        {{1, 2048, 1000, 2048, true}, 2, 2, false},
        {{1, 512, 10, 10, false}, 2, 1, false},
        {{4, 768, 50257, 768, true}, 2, 2, false},
        {{3, 7, 9, 9, false}, 3, 1, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        bool by_rows;
        int n = run_case(&cases[i].c, cases[i].threads, &by_rows);
        if (!n) continue; /* not prepared: run_case checked why */
        CHECK(n == cases[i].want_n && by_rows == cases[i].want_rows, "split case %zu: %d %s slices, want %d %s", i,
              n, by_rows ? "row" : "column", cases[i].want_n, cases[i].want_rows ? "row" : "column");
    }
}

int main(void)
{
    rng_seed(0xd22a7a11ULL);
    test_random();
    test_splits();
    return test_summary("test_dnnl_matmul");
}
