/* batcher.c: the dynamic batcher's decision (Triton's dynamic batcher,
 * docs/user_guide/model_configuration.md#dynamic-batcher), apart from the queue and threads
 * of sched.c so that it can be tested on its own.
 *
 * Starting at the oldest request, the requests whose non-batch dims agree with it are
 * gathered while their rows fit max_batch_size. When they reach the largest preferred batch
 * size (max_batch_size when none is given) the batch runs at once, cut to the largest
 * preferred size that a prefix of them forms exactly. When the next request does not fit or
 * cannot join, the gathered ones run. Otherwise the batcher waits for more, until the oldest
 * request has waited max_queue_delay_microseconds (expired) or the scheduler stops.
 */
#include "serve.h"

size_t sv_batch_decide(const struct sv_config *c, const int64_t *rows, size_t n, bool more, bool expired,
                       bool stopping)
{
    if (n == 0) return 0;
    if (!c->dynamic_batching || c->max_batch_size <= 0) return 1;
    int64_t target = c->n_preferred ? 0 : c->max_batch_size;
    for (int i = 0; i < c->n_preferred; i++)
        if (c->preferred[i] > target) target = c->preferred[i];
    size_t taken = 0, cut_n = 0; /* cut_n: the longest prefix whose rows are a preferred size */
    int64_t sum = 0, cut_rows = 0;
    bool blocked = false, full = false;
    while (taken < n) {
        if (taken == SV_MAX_BATCH_REQUESTS || sum + rows[taken] > c->max_batch_size) {
            blocked = true;
            break;
        }
        sum += rows[taken++];
        for (int i = 0; i < c->n_preferred; i++)
            if (sum == c->preferred[i]) cut_n = taken, cut_rows = sum;
        if (sum >= target) {
            full = true;
            break;
        }
    }
    if (taken == n && (more || n == SV_MAX_BATCH_REQUESTS)) blocked = true; /* the batch cannot grow */
    if (full) return cut_n && cut_rows < sum ? cut_n : taken;
    if (blocked || expired || stopping) return taken;
    return 0;
}
