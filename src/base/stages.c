/* stages.c: kiln_pool_stages (base/stages.h).
 *
 * Claims. Participant p owns slot p: the items [lo[p], lo[p + 1]) of every stage, a slice of
 * n_p items. A slot holds, on its own cache line, a 64-bit word `claim` and the count `fin` of
 * items its participant has finished (run, its own or stolen) over all stages. The word packs
 * a stage number and the bounds [front, back) of the slot's unclaimed items in that stage, as
 * positions in the stage's order (position k is item lo + k, or lo + n_p - 1 - k in a turned
 * stage). The owner claims position `front`, a thief position back - 1 (the item the owner
 * would reach last); a claim is one compare-and-swap of the whole word. A word that still
 * names stage s - 1 when a participant claims in stage s has nothing unclaimed (stage s opens
 * only after every item of s - 1 has finished), and the claim's compare-and-swap also resets
 * it to the full slice of stage s, so only one participant does. A word that names a later
 * stage tells the claimer its stage is over. The stage numbers in the words are exact, never
 * wrapped, so a claimer descheduled for any number of stages cannot take an item of one stage
 * for another: each bound gets b bits (enough for the largest slice), the stage the other
 * 64 - 2b. A call with more stages than that holds (2^62 / n^2 always fit, n the largest
 * slice), a slice of 2^31 items or more, or more than SIZE_MAX items in all runs inline.
 *
 * Stages. In stage s a participant claims its own slice from the front until none is left,
 * then the other slots' items from the back, one at a time, until no slot has any; then every
 * item of the stage is claimed. After each item it stores its `fin` (release); after its
 * claims it adds the items it ran in the stage to `done` (one fetch-add a stage) and spins
 * until `done` reaches (s + 1) * items (acquire), which publishes every write of the stage.
 * `done` alone would make a participant descheduled between two items hold up the stage (the
 * items it ran are not added yet), so every 256 spins the waiter also sums the `fin` counts
 * (acquire; each only grows, so the sum is at most what has finished), and it reads that sum
 * at every spin for as long as `done` lags (the absent participant has not added its items
 * yet). Reading a `fin` takes its line from a running owner, so it is not done at every spin:
 * the owners' per-item store then stays in their own cache (summing the counts at every spin
 * instead: bench/stages_bench.c at 0.15 us an item, 0.95 ms a call in 5 of 6 runs, against
 * 0.65-0.7 ms in 4 of 6 for this). The stage it goes on with is the one the count says is
 * open, as does one that starts late. The spin pauses and yields every 256 rounds (the thread
 * waited for may share this CPU); it never sleeps: a stage is short, and its unfinished items
 * are held by running participants.
 *
 * Why steal. On a machine with more runnable threads than CPUs a participant is descheduled
 * now and then, for milliseconds. The others take the unclaimed items of its slice, so one
 * descheduled between items or at the wait holds up no stage, and one descheduled while it
 * runs an item holds up that stage until it runs again; back, it claims its own slice in the
 * stage then open. Without a stall the participants finish their slices at nearly the same
 * time and each runs its own items but for a few at the end of a slice, so a slice's data
 * stays in its owner's cache (bench/stages_bench.c, 2 threads, 128 stages of 64 items of
 * 0.3 us: 0 to 263 items of a call's 8192, at most 2 a stage on average, ran on another thread
 * than the rest of their slice). The scheme this replaces (one that waited too long for a
 * stage went on alone for the rest of the call) turned one stall of a few milliseconds into a
 * one-thread run of the remaining stages. Measured on the 2-vCPU development VM: that bench
 * with one item sleeping 2 ms, medians of 8 runs, 4.6-4.8 ms a call before, 3.4-3.7 with
 * stealing (1.2-1.7 ms without the sleep, both); the bench set's LSTM at 2 threads with the
 * other CPU kept busy by a spinning process, 2 runs each, median 10.7-11.0 ms (p99 24-27)
 * before, 9.3-9.7 (p99 16-17) with stealing. So going on alone is not kept for a participant
 * that shares its CPU: with stealing it adds its work while it runs, and the others lose only
 * the time it is away while it holds an item.
 *
 * A pool that runs the whole loop on one thread (nested call, busy pool) runs the items in the
 * documented order, as the caller does for one thread.
 */
#define _GNU_SOURCE /* sched_yield */
#include "base/stages.h"

#include <sched.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct slot {
    alignas(64) _Atomic uint64_t claim; /* stage << 2b | front << b | back */
    atomic_size_t fin;                  /* items this participant finished (own, stolen), all stages */
};

struct stages_job {
    kiln_stage_fn fn;
    void *ctx;
    size_t stages, items, turn;
    int n_slots;
    unsigned bits;                          /* b: bits of each bound in a claim word */
    size_t lo[KILN_STAGES_MAX_THREADS + 1]; /* slot r: items [lo[r], lo[r + 1]) */
    struct slot slot[KILN_STAGES_MAX_THREADS];
    alignas(64) atomic_size_t done; /* items finished, added once per participant per stage */
};

#define NONE UINT64_MAX

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Runs fn over every (stage, item) on this thread, in the documented order. */
static void run_inline(size_t stages, size_t items, size_t turn, kiln_stage_fn fn, void *ctx)
{
    for (size_t s = 0; s < stages; s++)
        for (size_t i = 0; i < items; i++) fn(ctx, s, s / turn & 1 ? items - 1 - i : i);
}

/* Claims one unclaimed item of stage s in slot r, from the front or (a thief) the back;
 * returns its position in the stage's order, NONE when the slot has none left in stage s. */
static uint64_t claim(struct stages_job *j, int r, uint64_t s, bool back)
{
    _Atomic uint64_t *w = &j->slot[r].claim;
    unsigned b = j->bits;
    uint64_t mask = (1ull << b) - 1, n = j->lo[r + 1] - j->lo[r];
    uint64_t v = atomic_load_explicit(w, memory_order_relaxed);
    for (;;) {
        uint64_t t = v >> 2 * b, f = v >> b & mask, e = v & mask;
        if (t > s) return NONE;  /* stage s is over */
        if (t < s) f = 0, e = n; /* stage s - 1's word, all claimed: reset to stage s */
        if (f == e) return NONE;
        uint64_t nv = s << 2 * b | (back ? f << b | (e - 1) : (f + 1) << b | e);
        if (atomic_compare_exchange_weak_explicit(w, &v, nv, memory_order_relaxed, memory_order_relaxed))
            return back ? e - 1 : f;
    }
}

/* Runs the item at position pos of slot r in stage s and publishes it in me's count. */
static void run_item(struct stages_job *j, int me, int r, size_t s, size_t pos, size_t *fin)
{
    size_t lo = j->lo[r], n = j->lo[r + 1] - lo;
    j->fn(j->ctx, s, lo + (s / j->turn & 1 ? n - 1 - pos : pos));
    atomic_store_explicit(&j->slot[me].fin, ++*fin, memory_order_release);
}

/* Items finished over all stages, read with acquire (each count only grows, so the sum is
 * at most what has finished by the time it returns). */
static size_t finished(struct stages_job *j)
{
    size_t sum = 0;
    for (int r = 0; r < j->n_slots; r++) sum += atomic_load_explicit(&j->slot[r].fin, memory_order_acquire);
    return sum;
}

static void participate(void *ctx, size_t begin, size_t end, int worker)
{
    (void)worker;
    struct stages_job *j = ctx;
    int me = (int)begin, n = j->n_slots;
    if (end - begin == (size_t)n) { /* the pool ran the whole loop here */
        run_inline(j->stages, j->items, j->turn, j->fn, j->ctx);
        return;
    }
    size_t fin = 0;   /* == slot[me].fin, which only this participant writes */
    bool lag = false; /* `done` fell behind in the last stage: read the counts at every spin */
    for (size_t s = finished(j) / j->items; s < j->stages;) {
        size_t fin0 = fin;
        uint64_t pos;
        while ((pos = claim(j, me, s, false)) != NONE) run_item(j, me, me, s, (size_t)pos, &fin);
        for (int k = 1; k < n; k++) {
            int r = (me + k) % n;
            while ((pos = claim(j, r, s, true)) != NONE) run_item(j, me, r, s, (size_t)pos, &fin);
        }
        /* every item of stage s is claimed: wait for those others run */
        size_t target = (s + 1) * j->items, ran = fin - fin0, sum;
        if (ran && (sum = atomic_fetch_add_explicit(&j->done, ran, memory_order_acq_rel) + ran) >= target) {
            s = sum / j->items; /* this participant finished the stage */
            continue;
        }
        for (unsigned k = 1;; k++) {
            if ((sum = atomic_load_explicit(&j->done, memory_order_acquire)) >= target) {
                lag = false;
                break;
            }
            if ((lag || !(k & 255)) && (sum = finished(j)) >= target) {
                lag = true;
                break;
            }
            cpu_relax();
            if (!(k & 255)) sched_yield();
        }
        s = sum / j->items;
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
    unsigned bits = 1;
    if (threads > 1)
        while (bits < 32 && (uint64_t)((items + (size_t)threads - 1) / (size_t)threads) >> bits) bits++;
    /* one thread, or too large for the counts or the claim words: inline */
    if (threads <= 1 || stages > SIZE_MAX / items || bits > 31 || (uint64_t)(stages - 1) >> (64 - 2 * bits)) {
        run_inline(stages, items, turn, fn, ctx);
        return;
    }
    struct stages_job j = {.fn = fn, .ctx = ctx, .stages = stages, .items = items, .turn = turn};
    j.n_slots = threads;
    j.bits = bits;
    for (int r = 0; r <= threads; r++) j.lo[r] = items * (size_t)r / (size_t)threads;
    for (int r = 0; r < threads; r++) {
        atomic_init(&j.slot[r].claim, (uint64_t)(j.lo[r + 1] - j.lo[r])); /* stage 0: [0, n_r) */
        atomic_init(&j.slot[r].fin, 0);
    }
    atomic_init(&j.done, 0);
    kiln_pool_for(pool, (size_t)threads, 1, participate, &j);
}
