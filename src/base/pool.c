/* pool.c: the thread pool of pool.h.
 *
 * One job at a time. The caller publishes the job under `mu`, bumps `gen` and wakes the
 * workers; every participant (caller included) then claims chunks with one atomic
 * fetch-add each. Kernels issue one job per node, often some microseconds apart, so both
 * sides spin on the atomics for up to SPIN_NS before sleeping on a condition variable. The
 * spin is measured in time, not in pause instructions (a pause lasts 10 to 150 cycles
 * depending on the CPU), and is long: on a virtual machine a sleeping thread's CPU may be
 * descheduled by the host, and waking it took 0.3-0.5 ms per node on the development
 * machine (a 2-thread DCGAN ran 3x slower than 1 thread with a 20000-pause spin). Every 256
 * pauses the spinner yields, so a thread it waits for that shares its CPU can run. The
 * caller wakes the workers (a futex call) only when one of them sleeps.
 *
 * Joining. A worker takes part in a job only by joining it: a compare-and-swap on `ticket`
 * (the job's number in the high 32 bits, a `closed` bit, the count of workers that joined),
 * which fails once the caller has closed the job or published the next one. The caller,
 * when no chunk is left to claim, closes the job and waits only for the workers that
 * joined to finish their chunks (`finished` reaching the joined count), never for one that
 * has not started: a worker that the host or another process keeps off its CPU (2 vCPUs,
 * the other busy) used to hold every node for as long as it was away, although the caller
 * had run its chunks; on ShuffleNetV2 with one CPU kept busy by another process, 2 threads
 * then ran slower than 1. A late worker finds the job closed and goes back to waiting. The
 * last worker to finish wakes a sleeping caller: each worker counts itself in `finished`
 * and then reads `ticket`, the caller closes `ticket` and then reads `finished` (both
 * sequentially consistent), so one of them sees the other's write and no wake-up is lost.
 * `busy` keeps a second caller (another thread using the same session) out: it runs its
 * loop inline instead of waiting. Workers and chunk-running callers mark themselves in a
 * thread-local flag, so a nested loop runs inline too.
 */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include "base/pool.h"

#include <sched.h>
#include <unistd.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

struct kiln_pool {
    int threads;
    int n_workers;   /* started */
    pthread_t *tids;
    pthread_mutex_t mu;
    pthread_cond_t wake, done;
    pthread_mutex_t busy;
    atomic_ulong gen; /* bumped per job (under mu); workers run a job when it differs from theirs */
    bool stop;        /* under mu */
    int sleepers;     /* workers waiting on `wake` (under mu) */
    atomic_uint_least64_t ticket; /* job number << 32 | CLOSED | workers joined */
    atomic_uint finished;         /* workers that joined the current job and are done */
    /* the current job */
    kiln_pool_fn fn;
    void *ctx;
    size_t n, grain;
    atomic_size_t next;
};

struct worker_arg {
    struct kiln_pool *p;
    int id;
};

static _Thread_local bool in_pool;

#define SPIN_NS 2000000ull /* 2 ms */
#define CLOSED 0x80000000u
#define JOINED 0x7fffffffu

/* The ticket of job number g (gen's low 32 bits), nobody joined yet. */
static inline uint64_t ticket_of(unsigned long g) { return (uint64_t)(uint32_t)g << 32; }

/* Joins job g: false when it is closed or no longer the current job. */
static bool join_job(struct kiln_pool *p, unsigned long g)
{
    uint64_t t = atomic_load_explicit(&p->ticket, memory_order_relaxed);
    while ((t >> 32) == (uint32_t)g && !(t & CLOSED))
        if (atomic_compare_exchange_weak_explicit(&p->ticket, &t, t + 1, memory_order_acquire, memory_order_relaxed))
            return true;
    return false;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static void run_chunks(struct kiln_pool *p, int id)
{
    for (;;) {
        size_t b = atomic_fetch_add_explicit(&p->next, p->grain, memory_order_relaxed);
        if (b >= p->n) break;
        size_t e = p->n - b < p->grain ? p->n : b + p->grain;
        p->fn(p->ctx, b, e, id);
    }
}

static void *worker_main(void *arg_)
{
    struct worker_arg arg = *(struct worker_arg *)arg_;
    kiln_free(arg_);
    struct kiln_pool *p = arg.p;
    in_pool = true;
    unsigned long seen = 0;
    for (;;) {
        /* Spin for the next job, then sleep. */
        uint64_t t0 = now_ns();
        for (unsigned r = 1; atomic_load_explicit(&p->gen, memory_order_acquire) == seen; r++) {
            cpu_relax();
            if (!(r & 255)) {
                if (now_ns() - t0 > SPIN_NS) break;
                sched_yield(); /* the thread we wait for may share this CPU */
            }
        }
        pthread_mutex_lock(&p->mu);
        while (!p->stop && atomic_load_explicit(&p->gen, memory_order_acquire) == seen) {
            p->sleepers++;
            pthread_cond_wait(&p->wake, &p->mu);
            p->sleepers--;
        }
        bool stop = p->stop;
        pthread_mutex_unlock(&p->mu);
        if (stop) break;
        seen = atomic_load_explicit(&p->gen, memory_order_acquire);
        if (!join_job(p, seen)) continue; /* closed already: the caller ran it */
        run_chunks(p, arg.id);
        unsigned done = atomic_fetch_add_explicit(&p->finished, 1, memory_order_seq_cst) + 1;
        uint64_t t = atomic_load_explicit(&p->ticket, memory_order_seq_cst);
        if ((t & CLOSED) && (t & JOINED) == done) { /* the last one, and the caller may sleep */
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
    }
    return NULL;
}

kiln_status kiln_pool_create(int threads, struct kiln_pool **out, kiln_err *err)
{
    *out = NULL;
    if (threads < 1 || threads > 4096)
        return kiln_err_set(err, KILN_E_INVALID_ARG, "thread pool: %d threads; expected 1 to 4096", threads);
    struct kiln_pool *p = kiln_calloc(1, sizeof *p);
    if (!p) return kiln_err_set(err, KILN_E_NOMEM, "out of memory creating a thread pool");
    p->threads = threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_mutex_init(&p->busy, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    atomic_init(&p->next, 0);
    atomic_init(&p->gen, 0);
    atomic_init(&p->ticket, ticket_of(0) | CLOSED);
    atomic_init(&p->finished, 0);
    if (threads > 1) {
        p->tids = kiln_calloc((size_t)threads - 1, sizeof *p->tids);
        if (!p->tids) {
            kiln_pool_free(p);
            return kiln_err_set(err, KILN_E_NOMEM, "out of memory creating a thread pool");
        }
    }
    for (int i = 1; i < threads; i++) {
        struct worker_arg *a = kiln_malloc(sizeof *a);
        int rc = a ? 0 : ENOMEM;
        if (a) {
            a->p = p;
            a->id = i;
            rc = pthread_create(&p->tids[p->n_workers], NULL, worker_main, a);
            if (rc) kiln_free(a);
        }
        if (rc) {
            kiln_pool_free(p);
            return kiln_err_set(err, KILN_E_NOMEM, "cannot start thread %d of %d for the pool: %s", i,
                                threads, strerror(rc));
        }
        p->n_workers++;
    }
    *out = p;
    return KILN_OK;
}

void kiln_pool_free(struct kiln_pool *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_workers; i++) pthread_join(p->tids[i], NULL);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    pthread_mutex_destroy(&p->mu);
    pthread_mutex_destroy(&p->busy);
    kiln_free(p->tids);
    kiln_free(p);
}

int kiln_pool_threads(const struct kiln_pool *p)
{
    return p ? p->threads : 1;
}

void kiln_pool_for(struct kiln_pool *p, size_t n, size_t grain, kiln_pool_fn fn, void *ctx)
{
    if (n == 0) return;
    if (grain == 0) grain = 1;
    if (!p || p->n_workers == 0 || n <= grain || in_pool || pthread_mutex_trylock(&p->busy) != 0) {
        fn(ctx, 0, n, 0);
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->ctx = ctx;
    p->n = n;
    p->grain = grain;
    atomic_store_explicit(&p->next, 0, memory_order_relaxed);
    atomic_store_explicit(&p->finished, 0, memory_order_relaxed);
    unsigned long g = atomic_load_explicit(&p->gen, memory_order_relaxed) + 1;
    atomic_store_explicit(&p->ticket, ticket_of(g), memory_order_relaxed);
    atomic_store_explicit(&p->gen, g, memory_order_release); /* publishes the job */
    if (p->sleepers) pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);

    in_pool = true;
    run_chunks(p, 0);
    in_pool = false;

    /* No chunk left to claim: close the job, then wait for the workers that joined it. */
    unsigned joined = (unsigned)(atomic_fetch_or_explicit(&p->ticket, CLOSED, memory_order_seq_cst) & JOINED);
    uint64_t t0 = now_ns();
    for (unsigned r = 1; atomic_load_explicit(&p->finished, memory_order_seq_cst) != joined; r++) {
        cpu_relax();
        if (!(r & 255)) {
            if (now_ns() - t0 > SPIN_NS) break;
            sched_yield();
        }
    }
    if (atomic_load_explicit(&p->finished, memory_order_acquire) != joined) {
        pthread_mutex_lock(&p->mu);
        while (atomic_load_explicit(&p->finished, memory_order_acquire) != joined) pthread_cond_wait(&p->done, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
    pthread_mutex_unlock(&p->busy);
}

int kiln_cpus_available(void)
{
    cpu_set_t set;
    int n = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 0;
    if (n < 1) n = (int)sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 1024 ? 1024 : n;
}
