/* pool.h: a small fixed-size thread pool with one operation, a parallel for-loop.
 *
 * A session owns one pool of `threads` participants: the calling thread plus threads - 1
 * workers started at creation (pthreads). kiln_pool_for splits [0, n) into chunks of
 * `grain` indices that the participants claim in order until none is left, and returns when
 * every chunk has run. The chunks must be independent; which thread runs which chunk is not
 * fixed, so results must not depend on it (kernels write disjoint outputs).
 *
 * A NULL pool, a pool of one thread, or a loop of one chunk runs inline on the caller. A
 * kiln_pool_for issued from inside a chunk (nested), or while another thread is using the
 * same pool, also runs inline: never a deadlock, only less parallelism.
 */
#ifndef KILN_BASE_POOL_H
#define KILN_BASE_POOL_H

#include <stddef.h>

#include "base/base.h"

struct kiln_pool;

/* Runs indices [begin, end) of the loop; `worker` is 0 for the caller, 1.. for workers
 * (for per-thread scratch indexed by worker, sized kiln_pool_threads()). */
typedef void (*kiln_pool_fn)(void *ctx, size_t begin, size_t end, int worker);

/* threads >= 1 (1: no workers). Fails with KILN_E_NOMEM when memory or a thread cannot be
 * had (a half-started pool is torn down first). */
KILN_NODISCARD kiln_status kiln_pool_create(int threads, struct kiln_pool **out, kiln_err *err);
/* Stops and joins the workers. NULL is fine. */
void kiln_pool_free(struct kiln_pool *p);
/* Participants, counting the caller; 1 for NULL. */
int kiln_pool_threads(const struct kiln_pool *p);
/* fn over [0, n) in chunks of grain (0 is taken as 1). */
void kiln_pool_for(struct kiln_pool *p, size_t n, size_t grain, kiln_pool_fn fn, void *ctx);

/* Grain for items of `per_item` units of work each (elements, taps) so that a chunk holds at
 * least `min_work` units: enough work to pay for handing it to a thread. At least 1. */
static inline size_t kiln_pool_grain(size_t per_item, size_t min_work)
{
    return per_item >= min_work ? 1 : min_work / (per_item ? per_item : 1);
}

/* CPUs this process may run on (its affinity mask), at least 1, at most 1024. */
int kiln_cpus_available(void);

#endif
