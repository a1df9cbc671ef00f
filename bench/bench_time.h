/* bench/bench_time.h: the timing loop of the C measuring tools of bench/ (pgemm_bench.c,
 * pgemm_cold.c): the best seconds per call over three windows. Each tool sets the clock
 * (the thread's CPU time at one thread, so a shared machine's other processes count less;
 * wall time otherwise) and the window length from its options. */
#ifndef KILN_BENCH_TIME_H
#define KILN_BENCH_TIME_H

#include <time.h>

static clockid_t bench_clock = CLOCK_MONOTONIC;
static double bench_window = 0.5; /* seconds */

static inline double bench_now(void)
{
    struct timespec t;
    clock_gettime(bench_clock, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Best seconds per call of fn(ctx) over three windows of bench_window (after one untimed
 * call). */
static inline double bench_best(void (*fn)(void *), void *ctx)
{
    double best = 1e30;
    fn(ctx);
    for (int w = 0; w < 3; w++) {
        int n = 0;
        double t0 = bench_now(), t;
        do {
            fn(ctx);
            n++;
        } while ((t = bench_now() - t0) < bench_window);
        if (t / n < best) best = t / n;
    }
    return best;
}

#endif
