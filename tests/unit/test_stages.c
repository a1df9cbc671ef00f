/* test_stages.c: kiln_pool_stages (base/stages.h).
 *
 * For pools of 1, 2, 3 and 5 threads, asking for 0 to 7 participants, 0 to 40 stages of 1 to
 * 70 items: every (stage, item) runs exactly once, and when an item of stage s runs every
 * item of stage s - 1 has finished and its plain (non-atomic) write is visible: each item
 * reads the values every item of the previous stage wrote, and the final values are checked
 * against a serial computation (ThreadSanitizer, in scripts/test.sh, reports the race if a
 * stage's writes are not published). Also: a call nested in a pool loop and two threads
 * sharing one pool complete (inline, not deadlocked), with the same checks; inline, the
 * items come in the documented order (ascending, turned every `turn` stages); items that
 * sleep 1 ms now and then (as a descheduled thread) keep every check.
 *
 * Stealing, on a pool of 2 (each call recorded: which thread ran each item, and the values
 * checked as above): after one item that sleeps 3 ms early in the call (a participant
 * descheduled while it runs an item) both threads still run items in later stages (the
 * former scheme ran the rest of the call on one thread); when one thread's items are slow,
 * the other runs more than its own slice in some stages. Both depend on timing on a loaded
 * machine, so each takes the best of up to eight calls and asks for far less than an idle
 * machine gives.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
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
        long sum = 0; /* plain reads of every item's write in stage s - 1 */
        for (size_t j = 0; j < c->items; j++) sum += c->val[(s - 1) * c->items + j] * (long)(j % 3 + 1);
        v += sum % 7;
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
        for (size_t i = 0; i < items; i++) {
            long sum = 0;
            for (size_t j = 0; s && j < items; j++) sum += want[(s - 1) * items + j] * (long)(j % 3 + 1);
            want[s * items + i] = (long)(s * 1000 + i) + sum % 7;
        }
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

/* Items that sleep now and then (a descheduled participant: the others take its unclaimed
 * items); every item still runs once, in stage order. */
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

/* ------------------------------------------------------------------ stealing, pool of 2 */

static atomic_int next_tid;
static _Thread_local int my_tid = -1;

/* A small id per thread that runs an item of the stealing tests: 0, 1, ... */
static int thread_id(void)
{
    if (my_tid < 0) my_tid = atomic_fetch_add(&next_tid, 1);
    return my_tid;
}

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec * 1e-3;
}

static void spin_us(double us)
{
    double t0 = now_us();
    while (now_us() - t0 < us) {
    }
}

struct steal_ctx {
    size_t stages, items;
    int *who;           /* [stages * items]: thread_id() of the thread that ran the item */
    atomic_int *runs;   /* [stages * items] */
    unsigned long *val; /* [stages * items], plain */
    size_t stall_stage; /* item 0 of this stage sleeps 3 ms (SIZE_MAX: none) */
    int slow_tid;       /* items run by this thread spin slow_us, the others fast_us */
    double slow_us, fast_us;
};

static unsigned long mix(size_t s, size_t i, unsigned long prev)
{
    return (prev ^ (s * 1315423911ul + i)) * 2654435761ul % 1000003ul;
}

static void steal_item(void *ctx, size_t s, size_t i)
{
    struct steal_ctx *c = ctx;
    unsigned long sum = 0; /* plain reads of every item's write in stage s - 1 */
    for (size_t j = 0; s && j < c->items; j++) sum += c->val[(s - 1) * c->items + j];
    int t = thread_id();
    if (s == c->stall_stage && i == 0) {
        struct timespec ts = {0, 3000000};
        nanosleep(&ts, NULL);
    }
    spin_us(t == c->slow_tid ? c->slow_us : c->fast_us);
    c->who[s * c->items + i] = t;
    c->val[s * c->items + i] = mix(s, i, sum);
    atomic_fetch_add_explicit(&c->runs[s * c->items + i], 1, memory_order_relaxed);
}

/* One recorded call on `pool`; returns the failed checks (runs, values), fills c->who. */
static int run_recorded(struct kiln_pool *pool, struct steal_ctx *c)
{
    size_t n = c->stages * c->items;
    for (size_t k = 0; k < n; k++) atomic_init(&c->runs[k], 0), c->who[k] = -1, c->val[k] = 0;
    kiln_pool_stages(pool, 2, c->stages, c->items, 1, steal_item, c);
    int bad = 0;
    unsigned long prev = 0;
    for (size_t s = 0; s < c->stages; s++) {
        unsigned long sum = 0;
        for (size_t i = 0; i < c->items; i++) {
            size_t k = s * c->items + i;
            bad += atomic_load(&c->runs[k]) != 1 || c->val[k] != mix(s, i, prev);
            sum += mix(s, i, prev);
        }
        prev = sum;
    }
    return bad;
}

static struct steal_ctx steal_ctx_new(size_t stages, size_t items)
{
    struct steal_ctx c = {.stages = stages, .items = items, .stall_stage = SIZE_MAX, .slow_tid = -1};
    c.who = calloc(stages * items, sizeof *c.who);
    c.runs = calloc(stages * items, sizeof *c.runs);
    c.val = calloc(stages * items, sizeof *c.val);
    return c;
}

static void steal_ctx_free(struct steal_ctx *c)
{
    free(c->who);
    free(c->runs);
    free(c->val);
}

/* Stages from `from` on in which thread `tid` ran more than `more` items. */
static size_t count_stages(const struct steal_ctx *c, size_t from, int tid, size_t more)
{
    size_t n = 0;
    for (size_t s = from; s < c->stages; s++) {
        size_t mine = 0;
        for (size_t i = 0; i < c->items; i++) mine += c->who[s * c->items + i] == tid;
        n += mine > more;
    }
    return n;
}

/* The thread other than `tid` that ran items of the call, -1 if none did. */
static int other_thread(const struct steal_ctx *c, int tid)
{
    for (size_t k = 0; k < c->stages * c->items; k++)
        if (c->who[k] != tid) return c->who[k];
    return -1;
}

/* Item 0 of stage 10 sleeps 3 ms; afterwards, from stage 12 on, both threads must still run
 * items: the one that slept and the other (the former scheme ran the rest of the call on the
 * other thread alone, so the sleeper ran none). An idle machine runs nearly every later stage
 * on both threads. On a loaded one (other processes keeping the CPUs busy) the thread that
 * shares its CPU is away for a scheduler's time slice at a time, stall or not (measured with
 * one or two busy processes: in some calls it ran items in only 6 to 9 of the 388 later
 * stages), so the check asks each thread for 3 of them, in the best of up to eight calls. */
static void test_stall_keeps_both(void)
{
    struct kiln_pool *pool = NULL;
    kiln_err err = {0};
    CHECK(kiln_pool_create(2, &pool, &err) == KILN_OK, "%s", err.msg);
    struct steal_ctx c = steal_ctx_new(400, 16);
    c.stall_stage = 10;
    c.fast_us = 5;
    size_t best = 0, later = c.stages - 12;
    for (int attempt = 0; attempt < 8 && best < 3; attempt++) {
        int bad = run_recorded(pool, &c);
        CHECK(bad == 0, "stall, call %d: %d bad", attempt, bad);
        int sleeper = c.who[10 * c.items], other = other_thread(&c, sleeper);
        size_t a = count_stages(&c, 12, sleeper, 0), b = other >= 0 ? count_stages(&c, 12, other, 0) : 0;
        if ((a < b ? a : b) > best) best = a < b ? a : b;
    }
    CHECK(best >= 3, "after a 3 ms stall in stage 10: a thread ran items in only %zu of the %zu later stages",
          best, later);
    steal_ctx_free(&c);
    kiln_pool_free(pool);
}

/* The caller's items take 25 us, the worker's 4 us: the worker runs its slice (8 of each
 * stage's 16 items), then takes the caller's unclaimed ones, so it runs more than 8 (an idle
 * machine: 13 a stage on average, more than 8 in every stage; without stealing, never more
 * than 8). On a loaded machine the worker is away for a time slice at a time, and at each
 * wait for the slow thread it yields its CPU (stages.c), so with two other processes keeping
 * both CPUs busy it took part in few stages (measured: more than 8 items in 2 to 60 of the
 * 400 stages of a call); the check asks for 2 such stages, in the best of up to eight calls. */
static void test_slow_thread_is_helped(void)
{
    struct kiln_pool *pool = NULL;
    kiln_err err = {0};
    CHECK(kiln_pool_create(2, &pool, &err) == KILN_OK, "%s", err.msg);
    struct steal_ctx c = steal_ctx_new(400, 16);
    c.slow_tid = thread_id();
    c.slow_us = 25;
    c.fast_us = 4;
    size_t best = 0;
    for (int attempt = 0; attempt < 8 && best < 2; attempt++) {
        int bad = run_recorded(pool, &c);
        CHECK(bad == 0, "slow thread, call %d: %d bad", attempt, bad);
        int fast = other_thread(&c, c.slow_tid);
        size_t helped = fast >= 0 ? count_stages(&c, 0, fast, c.items / 2) : 0;
        if (helped > best) best = helped;
    }
    CHECK(best >= 2, "the fast thread ran more than its slice in only %zu of %zu stages", best, c.stages);
    steal_ctx_free(&c);
    kiln_pool_free(pool);
}

int main(void)
{
    test_order();
    test_shapes();
    test_stalls();
    test_nested_and_shared();
    test_stall_keeps_both();
    test_slow_thread_is_helped();
    return test_summary("stages");
}
