/* stages.c: kiln_pool_stages (base/stages.h).
 *
 * State: one claim cursor per slot (participant p owns slot p; the slots of participants
 * not started yet, `here` false, are open to all), each on its own cache line, counting the
 * slot's claimed items over all stages (stage s of a slice of n items is cursor values
 * [s * n, (s + 1) * n)), and `done`, the items finished over all stages. A participant in
 * stage s claims with a compare-and-swap that never passes (s + 1) * n, so it cannot take an
 * item of a stage that is not open yet (the k-th claim of a stage is item k of the slice, or
 * n - 1 - k in a turned stage); it adds what it ran to `done` once per stage (release) and
 * spins until `done` reaches (s + 1) * items (acquire), which publishes every write of the
 * stage to every participant. One that joins late starts at stage done / items, the open
 * one. The wait spins with a pause and yields every 256 spins (the thread waited for may
 * share this CPU); it never sleeps: a stage is short, and the participants of a slow one are
 * all running.
 *
 * Stalls. On a machine with more runnable threads than CPUs, a participant is descheduled
 * now and then, and an item it has claimed holds up the stage for as long as it is off its
 * CPU (milliseconds), every time. A participant whose wait for a stage lasts longer than
 * STALL_NS plus 4 times its own work in that stage therefore makes itself `solo`: from the
 * next stage on the others leave and it runs every item (in the turned order over all
 * slices), so a call loses at most one stall, then runs at one thread's speed. A pool that
 * ran the whole loop on one thread (nested, busy) is solo from the start.
 */
#define _GNU_SOURCE /* sched_yield */
#include "base/stages.h"

#include <sched.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

struct slot {
    alignas(64) atomic_size_t next;
};

struct stages_job {
    kiln_stage_fn fn;
    void *ctx;
    size_t stages, items, turn;
    int n_slots;
    size_t lo[KILN_STAGES_MAX_THREADS + 1]; /* slot r: items [lo[r], lo[r + 1]) */
    struct slot slot[KILN_STAGES_MAX_THREADS];
    alignas(64) atomic_size_t done;
    atomic_int solo; /* the participant that goes on alone; -1: none */
    alignas(64) atomic_bool here[KILN_STAGES_MAX_THREADS]; /* participant r has started */
};

#define STALL_NS 200000ull /* 200 us */

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Runs the unclaimed items of stage s in slot r; returns how many. */
static size_t claim_slot(struct stages_job *j, int r, size_t s)
{
    size_t lo = j->lo[r], n = j->lo[r + 1] - lo, lim = (s + 1) * n, ran = 0;
    atomic_size_t *cur = &j->slot[r].next;
    size_t v = atomic_load_explicit(cur, memory_order_relaxed);
    while (v < lim) {
        if (!atomic_compare_exchange_weak_explicit(cur, &v, v + 1, memory_order_relaxed, memory_order_relaxed))
            continue; /* v reloaded */
        size_t k = v - s * n;
        j->fn(j->ctx, s, lo + (s / j->turn & 1 ? n - 1 - k : k));
        ran++;
        v++;
    }
    return ran;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Waits until `done` reaches target; true when that took longer than limit_ns. */
static bool wait_done(struct stages_job *j, size_t target, uint64_t limit_ns)
{
    uint64_t t0 = 0;
    bool stalled = false;
    for (unsigned r = 1; atomic_load_explicit(&j->done, memory_order_acquire) < target; r++) {
        cpu_relax();
        if (!(r & 255)) {
            uint64_t t = now_ns();
            if (!t0) t0 = t;
            stalled |= t - t0 > limit_ns;
            sched_yield();
        }
    }
    return stalled;
}

static void participate(void *ctx, size_t begin, size_t end, int worker)
{
    (void)worker;
    struct stages_job *j = ctx;
    int me = (int)begin, n = j->n_slots, none = -1;
    if (end - begin == (size_t)n) /* the pool ran the whole loop here: alone */
        atomic_store_explicit(&j->solo, me, memory_order_relaxed);
    atomic_store_explicit(&j->here[me], true, memory_order_relaxed);
    for (size_t s = atomic_load_explicit(&j->done, memory_order_acquire) / j->items; s < j->stages; s++) {
        int solo = atomic_load_explicit(&j->solo, memory_order_relaxed);
        if (solo >= 0 && solo != me) return;
        bool turned = s / j->turn & 1;
        uint64_t t0 = now_ns();
        size_t ran = 0;
        for (int k = 0; k < n; k++) {
            /* own slice first, then those of participants not started yet; alone, every
             * slice, in the turned order too */
            int r = solo == me && turned ? (me + 2 * n - 1 - k) % n : (me + k) % n;
            if (k == 0 || solo == me || !atomic_load_explicit(&j->here[r], memory_order_relaxed))
                ran += claim_slot(j, r, s);
        }
        size_t target = (s + 1) * j->items;
        if (ran && atomic_fetch_add_explicit(&j->done, ran, memory_order_acq_rel) + ran == target) continue;
        uint64_t own = now_ns() - t0;
        if (wait_done(j, target, STALL_NS + 4 * own))
            atomic_compare_exchange_strong_explicit(&j->solo, &none, me, memory_order_relaxed,
                                                    memory_order_relaxed);
    }
}

void kiln_pool_stages(struct kiln_pool *pool, int threads, size_t stages, size_t items, size_t turn,
                      kiln_stage_fn fn, void *ctx)
{
    if (stages == 0 || items == 0) return;
    if (turn == 0) turn = 1;
    int pt = kiln_pool_threads(pool);
    if (threads > pt) threads = pt;
    if (threads > KILN_STAGES_MAX_THREADS) threads = KILN_STAGES_MAX_THREADS;
    if ((size_t)threads > items) threads = (int)items;
    if (threads <= 1 || stages > SIZE_MAX / items) { /* (the cursors count stages * items) */
        for (size_t s = 0; s < stages; s++)
            for (size_t i = 0; i < items; i++) fn(ctx, s, s / turn & 1 ? items - 1 - i : i);
        return;
    }
    struct stages_job j = {.fn = fn, .ctx = ctx, .stages = stages, .items = items, .turn = turn, .n_slots = threads};
    for (int r = 0; r <= threads; r++) j.lo[r] = items * (size_t)r / (size_t)threads;
    for (int r = 0; r < threads; r++) atomic_init(&j.slot[r].next, 0), atomic_init(&j.here[r], false);
    atomic_init(&j.done, 0);
    atomic_init(&j.solo, -1);
    kiln_pool_for(pool, (size_t)threads, 1, participate, &j);
}
