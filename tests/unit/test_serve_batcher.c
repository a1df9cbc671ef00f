/* test_serve_batcher.c: the dynamic batcher's decision (tools/serve/batcher.c): which of the
 * oldest queued requests form the next batch, or whether to wait, for Triton's rules:
 * preferred batch sizes, max_batch_size, the queue delay, requests that cannot join
 * (other non-batch dims) and the scheduler stopping. Each case lists the queued requests'
 * rows and the expected count (0 = wait). Then the queue's order (priority levels, arrival,
 * requests delayed by their timeout last in their level, as Triton's PriorityQueue) and the
 * ready list of preserve_ordering.
 */
#include <stdio.h>
#include <string.h>

#include "serve.h"
#include "test_support.h"

static struct sv_config config(int64_t max_batch, const int64_t *preferred, int n_preferred)
{
    struct sv_config c;
    memset(&c, 0, sizeof c);
    c.dynamic_batching = true;
    c.max_batch_size = max_batch;
    c.n_preferred = n_preferred;
    for (int i = 0; i < n_preferred; i++) c.preferred[i] = preferred[i];
    return c;
}

struct batch_case {
    const char *what;
    int64_t max_batch;
    int64_t preferred[4];
    int n_preferred;
    int64_t rows[12];
    size_t n;
    bool more, expired, stopping;
    size_t want;
};

/* The queue's request ids, head first, as a string like "3 1 2". */
static void queue_ids(const struct sv_queue *q, const struct sv_request *base, char *out, size_t size)
{
    size_t o = 0;
    out[0] = 0;
    for (const struct sv_request *r = q->head; r && o < size; r = r->next)
        o += (size_t)snprintf(out + o, size - o, "%s%d", o ? " " : "", (int)(r - base));
}

static void test_queue_order(void)
{
    /* Arrivals (id: level): 0:2 1:2 2:1 3:3 4:1 5:2; FIFO within a level. */
    static struct sv_request r[8];
    memset(r, 0, sizeof r);
    const uint64_t level[] = {2, 2, 1, 3, 1, 2};
    struct sv_queue q = {0};
    char ids[64];
    for (int i = 0; i < 6; i++) {
        r[i].priority = level[i];
        sv_queue_push(&q, &r[i]);
    }
    queue_ids(&q, r, ids, sizeof ids);
    CHECK(strcmp(ids, "2 4 0 1 5 3") == 0 && q.n == 6, "levels, then arrival: got %s", ids);
    CHECK(q.tail == &r[3] && sv_queue_level_count(&q, 2) == 3 && sv_queue_level_count(&q, 1) == 2 &&
              sv_queue_level_count(&q, 7) == 0,
          "tail and per-level counts");
    /* Request 0's timeout passes under DELAY: it goes behind level 2's others, and a level 2
     * request arriving later still goes before it. */
    sv_queue_unlink(&q, &r[4], &r[0]);
    r[0].delayed = true;
    sv_queue_push(&q, &r[0]);
    r[6].priority = 2;
    sv_queue_push(&q, &r[6]);
    queue_ids(&q, r, ids, sizeof ids);
    CHECK(strcmp(ids, "2 4 1 5 6 0 3") == 0, "a delayed request after its level's others: got %s", ids);
    /* Taking from the head and unlinking the tail keep head, tail and count right. */
    sv_queue_unlink(&q, NULL, &r[2]);
    sv_queue_unlink(&q, &r[0], &r[3]);
    queue_ids(&q, r, ids, sizeof ids);
    CHECK(strcmp(ids, "4 1 5 6 0") == 0 && q.tail == &r[0] && q.n == 5, "after unlinks: got %s", ids);
    /* Without levels everything is level 0: arrival order, appended. */
    struct sv_queue f = {0};
    static struct sv_request z[4];
    memset(z, 0, sizeof z);
    for (int i = 0; i < 4; i++) sv_queue_push(&f, &z[i]);
    queue_ids(&f, z, ids, sizeof ids);
    CHECK(strcmp(ids, "0 1 2 3") == 0, "one level: FIFO, got %s", ids);
}

static void test_ready_order(void)
{
    /* Batches finish out of order: requests 2 and 3, then 0, then 1. */
    static struct sv_request r[4];
    memset(r, 0, sizeof r);
    for (int i = 0; i < 4; i++) r[i].order = (uint64_t)i;
    struct sv_request *ready = NULL;
    uint64_t next = 0;
    int delivered[4], n = 0;
    const int finish[][2] = {{2, 3}, {0, -1}, {1, -1}};
    for (size_t b = 0; b < 3; b++) {
        for (int k = 0; k < 2; k++)
            if (finish[b][k] >= 0) sv_ready_add(&ready, &r[finish[b][k]]);
        struct sv_request *x;
        while ((x = sv_ready_take(&ready, next))) next++, delivered[n++] = (int)(x - r);
        if (b == 0) CHECK(n == 0, "nothing goes out before request 0 is done");
        if (b == 1) CHECK(n == 1 && delivered[0] == 0, "request 0 alone");
    }
    CHECK(n == 4 && delivered[1] == 1 && delivered[2] == 2 && delivered[3] == 3 && !ready,
          "then 1, 2, 3 in order (%d delivered)", n);
}

int main(void)
{
    static const struct batch_case cases[] = {
        {"empty queue", 8, {0}, 0, {0}, 0, false, true, false, 0},
        {"below max, delay running: wait", 8, {0}, 0, {1, 1, 1}, 3, false, false, false, 0},
        {"below max, delay over: all", 8, {0}, 0, {1, 1, 1}, 3, false, true, false, 3},
        {"stopping: all at once", 8, {0}, 0, {1, 1, 1}, 3, false, false, true, 3},
        {"max reached: run at once", 4, {0}, 0, {1, 1, 1, 1, 1}, 5, false, false, false, 4},
        {"largest preferred reached", 16, {4, 8}, 2, {1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, 10, false, false, false, 8},
        {"preferred reached by a multi-row request: cut to a preferred prefix", 16, {4, 8}, 2, {2, 2, 3, 2}, 4,
         false, false, false, 2},
        {"preferred 4 and 8, 6 rows, delay running: wait", 16, {4, 8}, 2, {2, 2, 2}, 3, false, false, false, 0},
        {"preferred 4 and 8, 6 rows, delay over: all 6", 16, {4, 8}, 2, {2, 2, 2}, 3, false, true, false, 3},
        {"the next request does not fit: run what fits", 8, {0}, 0, {3, 3, 3}, 3, false, false, false, 2},
        {"the next request cannot join: run the others", 8, {0}, 0, {1, 1}, 2, true, false, false, 2},
        {"the oldest alone cannot grow: run it", 8, {0}, 0, {5}, 1, true, false, false, 1},
        {"exactly max_batch_size", 6, {0}, 0, {2, 4, 1}, 3, false, false, false, 2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct batch_case *t = &cases[i];
        struct sv_config c = config(t->max_batch, t->preferred, t->n_preferred);
        size_t got = sv_batch_decide(&c, t->rows, t->n, t->more, t->expired, t->stopping);
        CHECK(got == t->want, "%s: took %zu, want %zu", t->what, got, t->want);
    }
    /* Without dynamic batching, or with max_batch_size 0, a batch is one request. */
    int64_t rows[3] = {1, 1, 1};
    struct sv_config c = config(8, NULL, 0);
    c.dynamic_batching = false;
    CHECK(sv_batch_decide(&c, rows, 3, false, false, false) == 1, "no dynamic batching: one request");
    c = config(0, NULL, 0);
    CHECK(sv_batch_decide(&c, rows, 3, false, false, false) == 1, "max_batch_size 0: one request");
    /* SV_MAX_BATCH_REQUESTS requests of one row under a larger max: run, do not wait. */
    static int64_t many[SV_MAX_BATCH_REQUESTS];
    for (size_t i = 0; i < SV_MAX_BATCH_REQUESTS; i++) many[i] = 1;
    c = config(4 * SV_MAX_BATCH_REQUESTS, NULL, 0);
    CHECK(sv_batch_decide(&c, many, SV_MAX_BATCH_REQUESTS, false, false, false) == SV_MAX_BATCH_REQUESTS,
          "a full request list runs");
    test_queue_order();
    test_ready_order();
    return test_summary("test_serve_batcher");
}
