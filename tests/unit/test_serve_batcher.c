/* test_serve_batcher.c: the dynamic batcher's decision (tools/serve/batcher.c): which of the
 * oldest queued requests form the next batch, or whether to wait, for Triton's rules:
 * preferred batch sizes, max_batch_size, the queue delay, requests that cannot join
 * (other non-batch dims) and the scheduler stopping. Each case lists the queued requests'
 * rows and the expected count (0 = wait).
 */
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
    return test_summary("test_serve_batcher");
}
