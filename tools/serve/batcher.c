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
 *
 * The queue itself is kept in the order the batcher reads it: priority levels first
 * (priority_levels, a request's `priority`), arrival within a level, and requests delayed by
 * their timeout (timeout_action DELAY) after the others of their level, as in Triton's
 * PriorityQueue. With preserve_ordering, the ready list holds finished requests until the
 * ones taken off the queue before them have been answered.
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

/* ------------------------------------------------------------------ the queue's order */

/* Requests run in order of (level, delayed), arrival within. */
static bool ranks_before_or_with(const struct sv_request *a, const struct sv_request *b)
{
    if (a->priority != b->priority) return a->priority < b->priority;
    return a->delayed <= b->delayed;
}

void sv_queue_push(struct sv_queue *q, struct sv_request *r)
{
    r->next = NULL;
    q->n++;
    /* Equal priorities (the common case, and the only one without priority levels) append. */
    if (!q->tail || ranks_before_or_with(q->tail, r)) {
        if (q->tail) q->tail->next = r;
        else q->head = r;
        q->tail = r;
        return;
    }
    struct sv_request *prev = NULL, *at = q->head;
    while (at && ranks_before_or_with(at, r)) prev = at, at = at->next;
    r->next = at;
    if (prev) prev->next = r;
    else q->head = r;
}

void sv_queue_unlink(struct sv_queue *q, struct sv_request *prev, struct sv_request *r)
{
    if (prev) prev->next = r->next;
    else q->head = r->next;
    if (q->tail == r) q->tail = prev;
    r->next = NULL;
    q->n--;
}

size_t sv_queue_level_count(const struct sv_queue *q, uint64_t level)
{
    size_t n = 0;
    for (const struct sv_request *r = q->head; r; r = r->next) n += r->priority == level;
    return n;
}

void sv_ready_add(struct sv_request **ready, struct sv_request *r)
{
    r->next = *ready;
    *ready = r;
}

struct sv_request *sv_ready_take(struct sv_request **ready, uint64_t order)
{
    for (struct sv_request **p = ready; *p; p = &(*p)->next)
        if ((*p)->order == order) {
            struct sv_request *r = *p;
            *p = r->next;
            r->next = NULL;
            return r;
        }
    return NULL;
}
