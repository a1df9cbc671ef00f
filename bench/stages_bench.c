/* bench/stages_bench.c: the wall time of kiln_pool_stages (src/base/stages.h) on a synthetic
 * recurrent-like load, with and without a stall. Not a test: a measuring tool.
 *
 *   cc -O2 -Iinclude -Isrc bench/stages_bench.c build/release/libkiln.a -lm -lpthread \
 *      -o /tmp/stages_bench
 *   /tmp/stages_bench [--threads T] [--reps R] [--stages S] [--items N] [--work W]
 *
 * To measure another version of stages.c, put it before the library on the command line
 * (e.g. `git show HEAD:src/base/stages.c > /tmp/old_stages.c`, then `... /tmp/old_stages.c
 * build/release/libkiln.a ...`): its kiln_pool_stages is linked instead of the library's.
 *
 * A call is S stages (default 128) of N items (default 64) on T threads (default 2); an
 * item reads 4 values the previous stage wrote and runs W dependent multiply-adds (default
 * 200, about 0.3 us on the development VM; the tool prints the measured time per item on one
 * thread). It prints the median, the 10th and the 90th percentile wall time per call over R
 * calls (default 200) for: the call as is, and the call with item 0 of stage 10 sleeping
 * 2 ms (a participant descheduled while it runs an item). On more than one thread, also:
 * `foreign`, the items per call run by another thread than the one that ran most of their
 * slice in that stage (slice r: items [r N / T, (r + 1) N / T), as base/stages.c cuts
 * them), and for the stalled call `later on 2`, how many of stages 12.. ran on more than one
 * thread (median over the calls).
 */
#define _GNU_SOURCE
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/pool.h"
#include "base/stages.h"

struct bctx {
    size_t stages, items, work, stall_stage;
    double *val;      /* [2][items]: stage s reads row (s - 1) & 1, writes row s & 1 */
    signed char *who; /* [stages * items]: the thread id that ran each item */
};

static atomic_int next_tid;
static _Thread_local int my_tid = -1;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void item(void *ctx, size_t s, size_t i)
{
    struct bctx *c = ctx;
    const double *in = c->val + ((s + 1) & 1) * c->items;
    double x = in[i] + in[(i + 1) % c->items] + in[(i + 7) % c->items] + in[(i + 13) % c->items];
    for (size_t k = 0; k < c->work; k++) x = x * 0.999999 + 1e-7;
    if (s == c->stall_stage && i == 0) {
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
    c->val[(s & 1) * c->items + i] = x * 0.25;
    if (my_tid < 0) my_tid = atomic_fetch_add(&next_tid, 1);
    c->who[s * c->items + i] = (signed char)my_tid;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int cmp_z(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? -1 : x > y;
}

/* Items run by another thread than the one that ran most of their slice (per stage). */
static size_t foreign(const struct bctx *c, int threads)
{
    size_t n = 0;
    for (size_t s = 0; s < c->stages; s++)
        for (int r = 0; r < threads; r++) {
            size_t lo = c->items * (size_t)r / (size_t)threads,
                   hi = c->items * (size_t)(r + 1) / (size_t)threads;
            int cnt[128] = {0}, best = 0;
            for (size_t i = lo; i < hi; i++) {
                int w = c->who[s * c->items + i] & 127;
                if (++cnt[w] > cnt[best]) best = w;
            }
            n += hi - lo - (size_t)cnt[best];
        }
    return n;
}

/* Stages from 12 on whose items ran on more than one thread. */
static size_t later_on_two(const struct bctx *c)
{
    size_t n = 0;
    for (size_t s = 12; s < c->stages; s++) {
        int two = 0;
        for (size_t i = 1; i < c->items; i++) two |= c->who[s * c->items + i] != c->who[s * c->items];
        n += (size_t)two;
    }
    return n;
}

static void measure(struct kiln_pool *pool, int threads, struct bctx *c, int reps, const char *name)
{
    double *t = malloc((size_t)reps * sizeof *t);
    size_t *fo = malloc((size_t)reps * sizeof *fo), *l2 = malloc((size_t)reps * sizeof *l2);
    kiln_pool_stages(pool, threads, c->stages, c->items, 1, item, c); /* warm-up */
    for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        kiln_pool_stages(pool, threads, c->stages, c->items, 1, item, c);
        t[r] = now_s() - t0;
        fo[r] = foreign(c, threads);
        l2[r] = later_on_two(c);
    }
    qsort(t, (size_t)reps, sizeof *t, cmp_d);
    qsort(fo, (size_t)reps, sizeof *fo, cmp_z);
    qsort(l2, (size_t)reps, sizeof *l2, cmp_z);
    printf("%-10s %d thr: median %.3f ms  (p10 %.3f, p90 %.3f)", name, threads, t[reps / 2] * 1e3,
           t[reps / 10] * 1e3, t[reps * 9 / 10] * 1e3);
    if (threads > 1) {
        printf("  foreign/call median %zu (p90 %zu)", fo[reps / 2], fo[reps * 9 / 10]);
        if (c->stall_stage < c->stages) printf("  later on 2: %zu of %zu", l2[reps / 2], c->stages - 12);
    }
    printf("\n");
    free(t);
    free(fo);
    free(l2);
}

int main(int argc, char **argv)
{
    int threads = 2, reps = 200;
    size_t stages = 128, items = 64, work = 200;
    for (int a = 1; a + 1 < argc; a += 2) {
        if (!strcmp(argv[a], "--threads"))
            threads = atoi(argv[a + 1]);
        else if (!strcmp(argv[a], "--reps"))
            reps = atoi(argv[a + 1]);
        else if (!strcmp(argv[a], "--stages"))
            stages = (size_t)atol(argv[a + 1]);
        else if (!strcmp(argv[a], "--items"))
            items = (size_t)atol(argv[a + 1]);
        else if (!strcmp(argv[a], "--work"))
            work = (size_t)atol(argv[a + 1]);
        else {
            fprintf(stderr, "unknown option %s\n", argv[a]);
            return 2;
        }
    }
    if (threads < 1 || threads > 64 || reps < 1 || stages < 13 || items < 1) {
        fprintf(stderr, "need 1..64 threads, 1+ reps, 13+ stages, 1+ items\n");
        return 2;
    }
    struct kiln_pool *pool = NULL;
    kiln_err err = {0};
    if (kiln_pool_create(threads, &pool, &err) != KILN_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    struct bctx c = {.stages = stages, .items = items, .work = work, .stall_stage = SIZE_MAX};
    c.val = calloc(2 * items, sizeof *c.val);
    c.who = calloc(stages * items, sizeof *c.who);
    if (!c.val || !c.who) return 1;

    double t0 = now_s();
    for (int r = 0; r < 20; r++) kiln_pool_stages(NULL, 1, stages, items, 1, item, &c);
    printf("%zu stages of %zu items, %zu multiply-adds an item: %.3f us an item on one thread\n", stages,
           items, work, (now_s() - t0) / 20 / (double)(stages * items) * 1e6);
    measure(pool, threads, &c, reps, "no stall");
    c.stall_stage = 10;
    measure(pool, threads, &c, reps, "2 ms stall");
    kiln_pool_free(pool);
    free(c.val);
    free(c.who);
    return 0;
}
