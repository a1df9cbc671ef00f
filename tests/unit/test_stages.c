/* test_stages.c: kiln_pool_stages (base/stages.h).
 *
 * For pools of 1, 2, 3 and 5 threads, asking for 0 to 7 participants, 0 to 40 stages of 1 to
 * 70 items: every (stage, item) runs exactly once, and when an item of stage s runs every
 * item of stage s - 1 has finished and its plain (non-atomic) write is visible: each item
 * reads a value another item of the previous stage wrote (ThreadSanitizer, in
 * scripts/test.sh, reports the race if a stage's writes are not published). Also: a call
 * nested in a pool loop and two threads sharing one pool complete (inline, not
 * deadlocked), with the same checks; inline, the items come in the documented order
 * (ascending, turned every `turn` stages); items that sleep 1 ms now and then (as a
 * descheduled thread: the others go on alone) keep every check.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "base/base.h"
#include "base/pool.h"
#include "base/stages.h"
#include "test_support.h"

struct sctx {
    size_t stages, items;
    atomic_int *runs;      /* [stages * items] */
    atomic_size_t *ended;  /* [stages]: items of the stage finished */
    long *val;             /* [stages * items], plain */
    atomic_int early, wrong;
    size_t nap_every;      /* > 0: every nap_every-th item sleeps 1 ms (a descheduled thread) */
};

static void item_fn(void *ctx, size_t s, size_t i)
{
    struct sctx *c = ctx;
    if (s >= c->stages || i >= c->items) {
        atomic_fetch_add(&c->wrong, 1);
        return;
    }
    long v = (long)(s * 1000 + i);
    if (s > 0) {
        if (atomic_load_explicit(&c->ended[s - 1], memory_order_relaxed) != c->items) atomic_fetch_add(&c->early, 1);
        size_t j = (i * 7 + 3) % c->items;
        v += c->val[(s - 1) * c->items + j] % 5; /* a plain read of another item's write */
    }
    if (c->nap_every && (s * c->items + i) % c->nap_every == 0) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    c->val[s * c->items + i] = v;
    atomic_fetch_add_explicit(&c->runs[s * c->items + i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->ended[s], 1, memory_order_relaxed);
}

/* Runs one call and checks it; returns the number of failed checks. */
static int run_napping(struct kiln_pool *pool, int threads, size_t stages, size_t items, size_t turn,
                       size_t nap_every)
{
    struct sctx c = {.stages = stages, .items = items, .nap_every = nap_every};
    size_t n = stages * items + 1;
    c.runs = calloc(n, sizeof *c.runs);
    c.ended = calloc(stages + 1, sizeof *c.ended);
    c.val = calloc(n, sizeof *c.val);
    kiln_pool_stages(pool, threads, stages, items, turn, item_fn, &c);
    int bad = 0;
    for (size_t k = 0; k + 1 < n; k++) bad += atomic_load(&c.runs[k]) != 1;
    /* the values, recomputed in order */
    long *want = calloc(n, sizeof *want);
    for (size_t s = 0; s < stages; s++)
        for (size_t i = 0; i < items; i++)
            want[s * items + i] =
                (long)(s * 1000 + i) + (s ? want[(s - 1) * items + (i * 7 + 3) % items] % 5 : 0);
    for (size_t k = 0; k + 1 < n; k++) bad += c.val[k] != want[k];
    bad += atomic_load(&c.early) + atomic_load(&c.wrong);
    free(want);
    free(c.runs);
    free((void *)c.ended);
    free(c.val);
    return bad;
}

static int run_one(struct kiln_pool *pool, int threads, size_t stages, size_t items, size_t turn)
{
    return run_napping(pool, threads, stages, items, turn, 0);
}

static void test_shapes(void)
{
    static const int sizes[] = {1, 2, 3, 5};
    static const size_t stage_counts[] = {0, 1, 2, 7, 40};
    static const size_t item_counts[] = {1, 2, 3, 5, 16, 70};
    for (int p = 0; p < 4; p++) {
        struct kiln_pool *pool = NULL;
        kiln_err err = {0};
        CHECK(kiln_pool_create(sizes[p], &pool, &err) == KILN_OK, "%s", err.msg);
        for (int threads = 0; threads <= 7; threads++)
            for (int si = 0; si < 5; si++)
                for (int ii = 0; ii < 6; ii++) {
                    size_t turn = (size_t)(ii % 3);
                    int bad = run_one(pool, threads, stage_counts[si], item_counts[ii], turn);
                    CHECK(bad == 0, "pool %d, %d participants, %zu stages of %zu items, turn %zu: %d bad",
                          sizes[p], threads, stage_counts[si], item_counts[ii], turn, bad);
                }
        kiln_pool_free(pool);
    }
}

/* ------------------------------------------------------------------ nested, shared pool */

struct nest_ctx {
    struct kiln_pool *pool;
    atomic_int bad;
};

static void nested_chunk(void *ctx_, size_t b, size_t e, int worker)
{
    (void)worker;
    struct nest_ctx *c = ctx_;
    for (size_t i = b; i < e; i++) atomic_fetch_add(&c->bad, run_one(c->pool, 3, 5, 9 + i, 1));
}

static void *sharer(void *arg)
{
    struct nest_ctx *c = arg;
    for (int r = 0; r < 20; r++) atomic_fetch_add(&c->bad, run_one(c->pool, 3, 12, 17, 2));
    return NULL;
}

/* Items that sleep now and then: a participant waits past its stall limit and goes on
 * alone (stages.c); every item still runs once, in stage order. */
static void test_stalls(void)
{
    static const int sizes[] = {2, 3};
    for (int p = 0; p < 2; p++) {
        struct kiln_pool *pool = NULL;
        kiln_err err = {0};
        CHECK(kiln_pool_create(sizes[p], &pool, &err) == KILN_OK, "%s", err.msg);
        for (size_t nap = 7; nap <= 61; nap += 27) {
            int bad = run_napping(pool, sizes[p], 9, 8, 1, nap);
            CHECK(bad == 0, "pool %d, a nap every %zu items: %d bad", sizes[p], nap, bad);
        }
        kiln_pool_free(pool);
    }
}

static void test_nested_and_shared(void)
{
    struct kiln_pool *pool = NULL;
    kiln_err err = {0};
    CHECK(kiln_pool_create(3, &pool, &err) == KILN_OK, "%s", err.msg);
    struct nest_ctx c = {.pool = pool};
    atomic_init(&c.bad, 0);
    kiln_pool_for(pool, 6, 1, nested_chunk, &c);
    CHECK(atomic_load(&c.bad) == 0, "nested calls: %d bad", atomic_load(&c.bad));
    pthread_t t[2];
    for (int i = 0; i < 2; i++) CHECK(pthread_create(&t[i], NULL, sharer, &c) == 0, "pthread_create");
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    CHECK(atomic_load(&c.bad) == 0, "two threads on one pool: %d bad", atomic_load(&c.bad));
    kiln_pool_free(pool);
}

/* ------------------------------------------------------------------ order on one thread */

struct order_ctx {
    size_t seq[64][2], n;
};

static void record(void *ctx, size_t s, size_t i)
{
    struct order_ctx *c = ctx;
    if (c->n < 64) c->seq[c->n][0] = s, c->seq[c->n][1] = i;
    c->n++;
}

/* Inline, the order is the documented one: ascending, turned every `turn` stages. */
static void test_order(void)
{
    for (size_t turn = 0; turn <= 3; turn++) {
        struct order_ctx c = {.n = 0};
        kiln_pool_stages(NULL, 4, 7, 5, turn, record, &c);
        CHECK(c.n == 35, "turn %zu: %zu calls, want 35", turn, c.n);
        size_t t = turn ? turn : 1;
        for (size_t k = 0; k < 35 && k < c.n; k++) {
            size_t s = k / 5, i = s / t & 1 ? 4 - k % 5 : k % 5;
            CHECK(c.seq[k][0] == s && c.seq[k][1] == i, "turn %zu call %zu: (%zu, %zu), want (%zu, %zu)", turn,
                  k, c.seq[k][0], c.seq[k][1], s, i);
        }
    }
}

int main(void)
{
    test_order();
    test_shapes();
    test_stalls();
    test_nested_and_shared();
    return test_summary("stages");
}
