/* test_bcache.c: the block cache that recycles intermediate tensor memory (base/bcache.h),
 * and its use by sessions.
 *
 * Cache: blocks below KILN_BCACHE_MIN_BYTES are not kept; take gives the smallest block of
 * at least the size asked and at most twice it, else NULL; the byte limit holds; a NULL cache
 * frees and never gives; out of memory while growing the index frees the block instead (ASan
 * checks nothing leaks). Session: running a model whose intermediates are large enough to be
 * recycled (the demo CNN on its 16 images: the first Conv's output is 128 KiB, freed after
 * the Relu) several times gives the same outputs every time, so recycled memory is
 * indistinguishable from fresh. */
#include <string.h>

#include "base/bcache.h"
#include "kiln.h"
#include "test_support.h"

#define MIN KILN_BCACHE_MIN_BYTES

static void *block(size_t bytes)
{
    void *p = kiln_malloc(bytes);
    CHECK(p != NULL, "malloc %zu", bytes);
    return p;
}

static void test_cache(void)
{
    struct kiln_bcache *c = kiln_bcache_create(10 * MIN);
    CHECK(c != NULL, "create");
    CHECK(kiln_bcache_take(c, MIN) == NULL, "empty cache gives nothing");
    kiln_bcache_put(c, block(100), 100); /* too small: freed */
    CHECK(kiln_bcache_held(c) == 0, "small block not kept");

    void *a = block(4 * MIN), *b = block(2 * MIN), *d = block(3 * MIN);
    kiln_bcache_put(c, a, 4 * MIN);
    kiln_bcache_put(c, b, 2 * MIN);
    kiln_bcache_put(c, d, 3 * MIN);
    CHECK(kiln_bcache_held(c) == 9 * MIN, "held %zu", kiln_bcache_held(c));
    CHECK(kiln_bcache_take(c, MIN / 2) == NULL, "below the minimum: not served");
    CHECK(kiln_bcache_held(c) == 9 * MIN, "a take that finds nothing changes nothing");
    void *got = kiln_bcache_take(c, MIN);
    CHECK(got == b, "MIN is served by the 2 MIN block (at most twice the size)");
    kiln_bcache_put(c, got, 2 * MIN);
    got = kiln_bcache_take(c, 2 * MIN + 1);
    CHECK(got == d, "best fit for 2 MIN + 1 is the 3 MIN block");
    kiln_free(got);
    got = kiln_bcache_take(c, 2 * MIN);
    CHECK(got == b, "exact fit");
    kiln_free(got);
    CHECK(kiln_bcache_take(c, MIN + MIN / 2) == NULL, "4 MIN is more than twice 1.5 MIN");
    CHECK(kiln_bcache_held(c) == 4 * MIN, "only a is left");

    /* Limit: 4 MIN held of 10; 7 MIN more does not fit and is freed. */
    kiln_bcache_put(c, block(7 * MIN), 7 * MIN);
    CHECK(kiln_bcache_held(c) == 4 * MIN, "over the limit: freed, held %zu", kiln_bcache_held(c));
    kiln_bcache_put(c, block(6 * MIN), 6 * MIN);
    CHECK(kiln_bcache_held(c) == 10 * MIN, "up to the limit: kept");
    kiln_bcache_free(c); /* frees a and the 6 MIN block */

    /* NULL cache. */
    CHECK(kiln_bcache_take(NULL, 4 * MIN) == NULL, "NULL cache gives nothing");
    kiln_bcache_put(NULL, block(4 * MIN), 4 * MIN);
    kiln_bcache_free(NULL);
    CHECK(kiln_bcache_held(NULL) == 0, "NULL holds nothing");

    /* Out of memory: creating, and growing the index on the first put. */
    kiln_alloc_fail_after(1);
    CHECK(kiln_bcache_create(MIN) == NULL, "create fails cleanly");
    kiln_alloc_fail_after(0);
    c = kiln_bcache_create(100 * MIN);
    void *e = block(MIN);
    kiln_alloc_fail_after(1);
    kiln_bcache_put(c, e, MIN);
    kiln_alloc_fail_after(0);
    CHECK(kiln_bcache_held(c) == 0, "index could not grow: block freed, not kept");
    kiln_bcache_free(c);
}

static void test_session_reuse(void)
{
    kiln_err err = {0};
    kiln_model *m = NULL;
    kiln_session *s = NULL;
    kiln_value *in[1] = {NULL}, *first[2] = {NULL, NULL};
    if (kiln_model_load_file(KILN_SOURCE_DIR "/demo/digits_cnn.onnx", &m, &err) ||
        kiln_value_read_file(KILN_SOURCE_DIR "/demo/test_images.npy", KILN_VALUE_TENSOR, &in[0], &err) ||
        kiln_session_create(m, NULL, &s, &err)) {
        CHECK(0, "setup: %s", err.msg);
        goto done;
    }
    for (int run = 0; run < 4; run++) {
        kiln_value *out[2] = {NULL, NULL};
        kiln_status st = kiln_session_run(s, 1, NULL, (const kiln_value *const *)in, 2, out, &err);
        CHECK(st == KILN_OK, "run %d: %s", run, err.msg);
        for (int o = 0; o < 2 && st == KILN_OK; o++) {
            if (run == 0) {
                first[o] = out[o];
                continue;
            }
            size_t n = kiln_value_numel(out[o]);
            size_t bytes = n * (o == 0 ? sizeof(float) : sizeof(int64_t)); /* logits, label */
            CHECK(n == kiln_value_numel(first[o]) &&
                      memcmp(kiln_value_data(out[o]), kiln_value_data(first[o]), bytes) == 0,
                  "run %d output %d differs from the first run", run, o);
            kiln_value_free(out[o]);
        }
    }
done:
    kiln_value_free(first[0]);
    kiln_value_free(first[1]);
    kiln_value_free(in[0]);
    kiln_session_free(s);
    kiln_model_free(m);
}

int main(void)
{
    test_cache();
    test_session_reuse();
    return test_summary("test_bcache");
}
