/* test_pool.c: the thread pool (base/pool.h), the parallel GEMM built on it, and the
 * session's `threads` option.
 *
 * Pool: every index of a loop runs exactly once, for thread counts 1..8, loop lengths from
 * 0 to 100003 and grains from 1 to 1000; worker ids stay in range; a nested loop and two
 * threads sharing one pool both complete (inline, not deadlocked); with every thread on one
 * CPU (workers late to most jobs, which the caller then closes without them) every index
 * still runs once; bad thread counts and
 * out-of-memory at every allocation of kiln_pool_create fail cleanly (ASan checks no leak).
 * kiln_sgemm_par: against a double-precision reference on odd shapes, all transposes,
 * padded leading dimensions, with 1, 2, 3 and 5 threads (tolerance: 1e-5 * sum|a*b| per
 * element, the float32 accumulation bound with margin). Runs under TSan in scripts/test.sh.
 */
#define _GNU_SOURCE /* sched_setaffinity, CPU_SET */
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "base/pool.h"
#include "cpu/sgemm.h"
#include "test_support.h"

/* ------------------------------------------------------------------ pool */

struct count_ctx {
    atomic_int *hits;
    int threads;
    atomic_int bad_worker;
    atomic_int bad_range;
    size_t n;
};

static void count_chunk(void *ctx_, size_t b, size_t e, int worker)
{
    struct count_ctx *c = ctx_;
    if (worker < 0 || worker >= c->threads) atomic_fetch_add(&c->bad_worker, 1);
    if (b >= e || e > c->n) atomic_fetch_add(&c->bad_range, 1);
    for (size_t i = b; i < e && i < c->n; i++) atomic_fetch_add(&c->hits[i], 1);
}

static void run_count(struct kiln_pool *p, int threads, size_t n, size_t grain)
{
    struct count_ctx c = {.threads = threads, .n = n};
    c.hits = calloc(n + 1, sizeof *c.hits);
    atomic_init(&c.bad_worker, 0);
    atomic_init(&c.bad_range, 0);
    kiln_pool_for(p, n, grain, count_chunk, &c);
    size_t wrong = 0;
    for (size_t i = 0; i < n; i++) wrong += atomic_load(&c.hits[i]) != 1;
    CHECK(wrong == 0, "threads %d n %zu grain %zu: %zu indices not run exactly once", threads, n, grain,
          wrong);
    CHECK(atomic_load(&c.bad_worker) == 0, "threads %d: worker id out of range", threads);
    CHECK(atomic_load(&c.bad_range) == 0, "threads %d: empty or out-of-range chunk", threads);
    free(c.hits);
}

static void test_loops(void)
{
    const size_t ns[] = {0, 1, 2, 5, 63, 64, 65, 1000, 100003};
    const size_t grains[] = {0, 1, 3, 64, 1000};
    run_count(NULL, 1, 777, 5); /* NULL pool: inline */
    for (int t = 1; t <= 8; t++) {
        struct kiln_pool *p = NULL;
        kiln_err err = {0};
        CHECK(kiln_pool_create(t, &p, &err) == KILN_OK, "create %d: %s", t, err.msg);
        if (!p) continue;
        CHECK(kiln_pool_threads(p) == t, "threads %d reported as %d", t, kiln_pool_threads(p));
        for (size_t i = 0; i < sizeof ns / sizeof *ns; i++)
            for (size_t j = 0; j < sizeof grains / sizeof *grains; j++) run_count(p, t, ns[i], grains[j]);
        /* Many short jobs back to back: no lost wake-up, no stale job. */
        for (int r = 0; r < 300; r++) run_count(p, t, (size_t)(r % 17) + 2, 1);
        kiln_pool_free(p);
    }
    CHECK(kiln_pool_threads(NULL) == 1, "NULL pool has one thread");
}

struct nest_ctx {
    struct kiln_pool *p;
    atomic_int inner;
};

static void inner_chunk(void *ctx_, size_t b, size_t e, int worker)
{
    (void)worker;
    struct nest_ctx *c = ctx_;
    atomic_fetch_add(&c->inner, (int)(e - b));
}

static void outer_chunk(void *ctx_, size_t b, size_t e, int worker)
{
    (void)worker;
    for (size_t i = b; i < e; i++) kiln_pool_for(((struct nest_ctx *)ctx_)->p, 10, 1, inner_chunk, ctx_);
}

struct share_arg {
    struct kiln_pool *p;
    int ok;
};

static void *share_main(void *a_)
{
    struct share_arg *a = a_;
    int ok = 1;
    for (int r = 0; r < 200 && ok; r++) {
        struct count_ctx c = {.threads = kiln_pool_threads(a->p), .n = 97};
        c.hits = calloc(97, sizeof *c.hits);
        atomic_init(&c.bad_worker, 0);
        atomic_init(&c.bad_range, 0);
        kiln_pool_for(a->p, 97, 2, count_chunk, &c);
        for (size_t i = 0; i < 97; i++) ok &= atomic_load(&c.hits[i]) == 1;
        ok &= atomic_load(&c.bad_range) == 0 && atomic_load(&c.bad_worker) == 0;
        free(c.hits);
    }
    a->ok = ok;
    return NULL;
}

static void test_nested_and_shared(void)
{
    struct kiln_pool *p = NULL;
    kiln_err err = {0};
    CHECK(kiln_pool_create(4, &p, &err) == KILN_OK, "create: %s", err.msg);
    if (!p) return;
    struct nest_ctx c = {.p = p};
    atomic_init(&c.inner, 0);
    kiln_pool_for(p, 50, 1, outer_chunk, &c);
    CHECK(atomic_load(&c.inner) == 500, "nested loops ran %d inner indices; expected 500", atomic_load(&c.inner));

    struct share_arg a[3] = {{p, 0}, {p, 0}, {p, 0}};
    pthread_t tid[3];
    for (int i = 0; i < 3; i++) CHECK(pthread_create(&tid[i], NULL, share_main, &a[i]) == 0, "pthread_create");
    for (int i = 0; i < 3; i++) pthread_join(tid[i], NULL);
    for (int i = 0; i < 3; i++) CHECK(a[i].ok, "caller thread %d saw a wrong loop on the shared pool", i);
    kiln_pool_free(p);
}

/* Workers that are often late: every thread of the process on one CPU (the workers inherit
 * the affinity the pool is created with), so a worker runs only when the caller yields or
 * is preempted, and most jobs are closed before a worker could join them (pool.c's
 * "Joining"). Every index still runs exactly once, and no job is lost or run twice. */
static void test_late_workers(void)
{
#ifdef __linux__
    cpu_set_t old, one;
    if (sched_getaffinity(0, sizeof old, &old) != 0) return;
    int cpu = 0;
    while (cpu < CPU_SETSIZE && !CPU_ISSET(cpu, &old)) cpu++;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    CHECK(sched_setaffinity(0, sizeof one, &one) == 0, "sched_setaffinity to one CPU");
    for (int t = 2; t <= 4; t += 2) {
        struct kiln_pool *p = NULL;
        kiln_err err = {0};
        CHECK(kiln_pool_create(t, &p, &err) == KILN_OK, "create %d: %s", t, err.msg);
        if (!p) continue;
        for (int r = 0; r < 2000; r++) run_count(p, t, (size_t)(r % 7) + 2, 1);
        run_count(p, t, 100003, 64);
        kiln_pool_free(p);
    }
    CHECK(sched_setaffinity(0, sizeof old, &old) == 0, "sched_setaffinity back");
#endif
}

static void test_errors(void)
{
    struct kiln_pool *p = (struct kiln_pool *)&p;
    kiln_err err = {0};
    CHECK(kiln_pool_create(0, &p, &err) == KILN_E_INVALID_ARG && !p, "0 threads refused");
    CHECK(strstr(err.msg, "0 threads") != NULL, "message names the count: %s", err.msg);
    CHECK(kiln_pool_create(-3, &p, &err) == KILN_E_INVALID_ARG && !p, "negative refused");
    kiln_pool_free(NULL);
    /* Out of memory at each allocation of a 3-thread pool (the pool, the thread ids, one
     * argument block per worker): a clean KILN_E_NOMEM, workers already started joined. */
    for (long k = 1; k <= 4; k++) {
        kiln_alloc_fail_after(k);
        kiln_status st = kiln_pool_create(3, &p, &err);
        kiln_alloc_fail_after(0);
        CHECK(st == KILN_E_NOMEM && !p, "allocation %ld failing: status %d", k, (int)st);
        kiln_pool_free(p);
    }
    kiln_alloc_fail_after(5);
    kiln_status st = kiln_pool_create(3, &p, &err);
    kiln_alloc_fail_after(0);
    CHECK(st == KILN_OK && p, "3-thread pool takes 4 allocations");
    kiln_pool_free(p);
    int n = kiln_cpus_available();
    CHECK(n >= 1 && n <= 1024, "cpus available: %d", n);
}

/* ------------------------------------------------------------------ parallel sgemm */

static void check_par(struct kiln_pool *p, bool tA, bool tB, size_t M, size_t N, size_t K, float alpha,
                      float beta, size_t pad)
{
    size_t lda = (tA ? M : K) + pad, ldb = (tB ? K : N) + pad, ldc = N + pad;
    size_t arows = tA ? K : M, brows = tB ? N : K;
    float *A = malloc(arows * lda * sizeof *A + 4), *B = malloc(brows * ldb * sizeof *B + 4);
    float *C = malloc(M * ldc * sizeof *C + 4);
    for (size_t i = 0; i < arows * lda; i++) A[i] = rng_f32();
    for (size_t i = 0; i < brows * ldb; i++) B[i] = rng_f32();
    for (size_t i = 0; i < M * ldc; i++) C[i] = beta == 0.0f ? NAN : rng_f32();
    float *C0 = malloc(M * ldc * sizeof *C0 + 4);
    memcpy(C0, C, M * ldc * sizeof *C);
    kiln_sgemm_par(p, tA, tB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    size_t bad = 0, untouched = 0;
    for (size_t i = 0; i < M; i++) {
        for (size_t j = 0; j < N; j++) {
            double s = 0, mag = 0;
            for (size_t q = 0; q < K; q++) {
                double a = tA ? A[q * lda + i] : A[i * lda + q];
                double b = tB ? B[j * ldb + q] : B[q * ldb + j];
                s += a * b;
                mag += fabs(a * b);
            }
            double c0 = beta == 0.0f ? 0.0 : (double)C0[i * ldc + j];
            double want = alpha * s + beta * c0;
            double tol = 1e-5 * (fabs(alpha) * mag + fabs(beta * c0)) + 1e-30;
            if (!(fabs((double)C[i * ldc + j] - want) <= tol)) bad++;
        }
        for (size_t j = N; j < ldc; j++) untouched += memcmp(&C[i * ldc + j], &C0[i * ldc + j], sizeof *C) == 0;
    }
    CHECK(bad == 0, "sgemm_par %d threads tA %d tB %d M %zu N %zu K %zu: %zu elements off",
          kiln_pool_threads(p), tA, tB, M, N, K, bad);
    CHECK(untouched == M * pad, "sgemm_par wrote into the padding of C");
    free(A), free(B), free(C), free(C0);
}

static void test_sgemm_par(void)
{
    const size_t shapes[][3] = {{1, 1, 1}, {3, 200, 17}, {200, 3, 33}, {97, 131, 64}, {257, 255, 129},
                                {64, 1000, 27}, {1000, 48, 75}, {40, 40, 0}, {0, 300, 300}};
    const int threads[] = {1, 2, 3, 5};
    for (size_t t = 0; t < sizeof threads / sizeof *threads; t++) {
        struct kiln_pool *p = NULL;
        kiln_err err = {0};
        CHECK(kiln_pool_create(threads[t], &p, &err) == KILN_OK, "create: %s", err.msg);
        for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
            for (int tr = 0; tr < 4; tr++)
                check_par(p, tr & 1, tr & 2, shapes[s][0], shapes[s][1], shapes[s][2], tr == 3 ? -0.5f : 1.0f,
                          tr == 1 ? 0.75f : 0.0f, (size_t)(s % 3));
        kiln_pool_free(p);
    }
}

int main(void)
{
    rng_seed(0x2545F4914F6CDD1Dull);
    test_loops();
    test_nested_and_shared();
    test_late_workers();
    test_errors();
    test_sgemm_par();
    return test_summary("test_pool");
}
