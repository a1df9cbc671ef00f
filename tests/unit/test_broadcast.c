/* test_broadcast.c: src/cpu/broadcast.c (ONNX multidirectional broadcasting, Broadcasting.md).
 *
 * kiln_bcast_shape on hand-picked cases (rank 0, size-1 and zero-size dims, rank
 * mismatch, conflicts and their message), kiln_bcast_unidir, and the row iterator against a
 * naive per-element index computation on 2000 random shape sets of 1 to 4 inputs with rank
 * 0..5 and dims drawn from {0, 1, 2, 3, 5}: every output element must be visited once, in
 * order, with each input's offset equal to the reference; same-shape and scalar inputs must
 * collapse to a single row.
 */
#include <stdio.h>
#include <string.h>

#include "cpu/broadcast.h"
#include "test_support.h"


static void shape_case(int ra, const int64_t *a, int rb, const int64_t *b, int want_rank,
                       const int64_t *want)
{
    int ranks[2] = {ra, rb};
    const int64_t *dims[2] = {a, b};
    int r = -1;
    int64_t out[KILN_MAX_RANK];
    kiln_err e = {0};
    kiln_status st = kiln_bcast_shape(2, ranks, dims, &r, out, &e);
    char s1[100], s2[100];
    kiln_shape_str(ra, a, s1, sizeof s1);
    kiln_shape_str(rb, b, s2, sizeof s2);
    if (want_rank < 0) {
        CHECK(st == KILN_E_INVALID_ARG, "%s vs %s should fail", s1, s2);
        CHECK(strstr(e.msg, s1) && strstr(e.msg, s2), "message '%s' names both shapes", e.msg);
        return;
    }
    CHECK(st == KILN_OK, "%s vs %s: %s", s1, s2, e.msg);
    CHECK(r == want_rank, "%s vs %s: rank %d, want %d", s1, s2, r, want_rank);
    for (int d = 0; st == KILN_OK && d < want_rank; d++)
        CHECK(out[d] == want[d], "%s vs %s: dim %d is %lld, want %lld", s1, s2, d,
              (long long)out[d], (long long)want[d]);
}

static void test_shapes(void)
{
    shape_case(0, NULL, 0, NULL, 0, NULL);
    shape_case(0, NULL, 2, (int64_t[]){2, 3}, 2, (int64_t[]){2, 3});
    shape_case(2, (int64_t[]){2, 3}, 1, (int64_t[]){3}, 2, (int64_t[]){2, 3});
    shape_case(2, (int64_t[]){2, 1}, 3, (int64_t[]){4, 1, 5}, 3, (int64_t[]){4, 2, 5});
    shape_case(2, (int64_t[]){0, 1}, 1, (int64_t[]){7}, 2, (int64_t[]){0, 7});
    shape_case(1, (int64_t[]){1}, 1, (int64_t[]){0}, 1, (int64_t[]){0});
    shape_case(2, (int64_t[]){2, 3}, 1, (int64_t[]){4}, -1, NULL);
    shape_case(1, (int64_t[]){0}, 1, (int64_t[]){2}, -1, NULL);
    shape_case(3, (int64_t[]){2, 3, 4}, 3, (int64_t[]){3, 3, 4}, -1, NULL);

    /* three inputs: the conflict names the first input that set the dim */
    int ranks[3] = {1, 2, 1};
    const int64_t *dims[3] = {(int64_t[]){1}, (int64_t[]){2, 3}, (int64_t[]){5}};
    int r;
    int64_t out[KILN_MAX_RANK];
    kiln_err e = {0};
    CHECK(kiln_bcast_shape(3, ranks, dims, &r, out, &e) == KILN_E_INVALID_ARG, "3-way conflict");
    CHECK(strstr(e.msg, "input 1 shape [2,3]") && strstr(e.msg, "input 2 shape [5]"),
          "3-way message: %s", e.msg);

    int big = KILN_MAX_RANK + 1;
    CHECK(kiln_bcast_shape(1, &big, dims, &r, out, &e) == KILN_E_LIMIT, "rank over the limit");

    CHECK(kiln_bcast_unidir(3, (int64_t[]){2, 3, 4}, 2, (int64_t[]){1, 4}, &e) == KILN_OK,
          "unidir [1,4] -> [2,3,4]");
    CHECK(kiln_bcast_unidir(2, (int64_t[]){3, 4}, 0, NULL, &e) == KILN_OK, "unidir scalar");
    CHECK(kiln_bcast_unidir(1, (int64_t[]){4}, 2, (int64_t[]){1, 4}, &e) != KILN_OK,
          "unidir may not grow the rank");
    CHECK(kiln_bcast_unidir(2, (int64_t[]){3, 1}, 2, (int64_t[]){3, 4}, &e) != KILN_OK,
          "unidir may not grow a dim");
    CHECK(strstr(e.msg, "[3,4]") && strstr(e.msg, "[3,1]"), "unidir message: %s", e.msg);
}

/* Walks the iterator and checks every element against the naive offsets. */
static void check_iter(size_t n, const int *ranks, const int64_t *const *dims, int orank,
                       const int64_t *odims, const char *what)
{
    size_t numel = 1;
    for (int d = 0; d < orank; d++) numel *= (size_t)odims[d];
    struct kiln_bcast_iter it;
    kiln_bcast_iter_init(&it, n, ranks, dims, orank, odims);
    CHECK(it.rows * it.inner == numel || (numel == 0 && it.rows == 0),
          "%s: rows %zu x inner %zu != numel %zu", what, it.rows, it.inner, numel);
    size_t j = 0;
    int bad = 0;
    for (size_t r = 0; r < it.rows; r++, kiln_bcast_iter_next(&it)) {
        CHECK(it.out_off == j, "%s: row %zu starts at %zu, want %zu", what, r, it.out_off, j);
        for (size_t q = 0; q < it.inner && !bad; q++, j++) {
            /* naive: unravel j over the output, re-ravel over each input */
            int64_t idx[KILN_MAX_RANK];
            size_t rem = j;
            for (int d = orank - 1; d >= 0; d--) {
                idx[d] = (int64_t)(rem % (size_t)odims[d]);
                rem /= (size_t)odims[d];
            }
            for (size_t i = 0; i < n; i++) {
                size_t off = 0;
                for (int d = 0; d < ranks[i]; d++) {
                    int64_t dim = dims[i][d];
                    int64_t id = idx[d + orank - ranks[i]];
                    off = off * (size_t)dim + (size_t)(dim == 1 ? 0 : id);
                }
                size_t got = it.off[i] + q * it.step[i];
                if (got != off) {
                    CHECK(0, "%s: element %zu input %zu offset %zu, want %zu", what, j, i, got, off);
                    bad = 1;
                }
            }
        }
        if (bad) break;
    }
    if (!bad) CHECK(j == numel, "%s: visited %zu of %zu elements", what, j, numel);
}

static void test_iter_random(void)
{
    static const int64_t pool[] = {0, 1, 2, 3, 5};
    for (int t = 0; t < 2000; t++) {
        int orank = rng_int(6);
        int64_t odims[KILN_MAX_RANK];
        /* zero-size dims are rarer, so most cases walk real data */
        for (int d = 0; d < orank; d++) odims[d] = pool[1 + rng_int(4)];
        if (orank && rng_int(10) == 0) odims[rng_int(orank)] = 0;
        size_t n = 1 + rng_int(4);
        int ranks[KILN_BCAST_MAX_IN];
        int64_t store[KILN_BCAST_MAX_IN][KILN_MAX_RANK];
        const int64_t *dims[KILN_BCAST_MAX_IN];
        for (size_t i = 0; i < n; i++) {
            ranks[i] = orank ? (int)rng_int(orank + 1) : 0;
            for (int d = 0; d < ranks[i]; d++)
                store[i][d] = rng_int(3) == 0 ? 1 : odims[d + orank - ranks[i]];
            dims[i] = store[i];
        }
        /* the shapes must broadcast to exactly odims (or to a shape odims contains) */
        int r;
        int64_t got[KILN_MAX_RANK];
        kiln_err e;
        CHECK(kiln_bcast_shape(n, ranks, dims, &r, got, &e) == KILN_OK, "random case: %s", e.msg);
        char what[64];
        snprintf(what, sizeof what, "random case %d", t);
        check_iter(n, ranks, dims, orank, odims, what);
    }
}

static void test_collapse(void)
{
    struct kiln_bcast_iter it;
    int64_t a[4] = {2, 3, 4, 5};
    int ranks[2] = {4, 4};
    const int64_t *dims[2] = {a, a};
    kiln_bcast_iter_init(&it, 2, ranks, dims, 4, a);
    CHECK(it.rows == 1 && it.inner == 120 && it.step[0] == 1 && it.step[1] == 1,
          "same shape: rows %zu inner %zu", it.rows, it.inner);
    int sr[2] = {4, 0};
    const int64_t *sd[2] = {a, NULL};
    kiln_bcast_iter_init(&it, 2, sr, sd, 4, a);
    CHECK(it.rows == 1 && it.inner == 120 && it.step[0] == 1 && it.step[1] == 0,
          "scalar: rows %zu inner %zu step %zu", it.rows, it.inner, it.step[1]);
    /* NCHW + [C,1,1]: rows over N*C, inner H*W, the bias constant along a row */
    int64_t bias[3] = {3, 1, 1};
    int br[2] = {4, 3};
    const int64_t *bd[2] = {a, bias};
    kiln_bcast_iter_init(&it, 2, br, bd, 4, a);
    CHECK(it.rows == 6 && it.inner == 20 && it.step[1] == 0, "channel bias: rows %zu inner %zu",
          it.rows, it.inner);
    check_iter(2, br, bd, 4, a, "channel bias");
    /* rank-0 output */
    kiln_bcast_iter_init(&it, 1, (int[]){0}, (const int64_t *[]){NULL}, 0, NULL);
    CHECK(it.rows == 1 && it.inner == 1, "rank 0: rows %zu inner %zu", it.rows, it.inner);
}

int main(void)
{
    rng_seed(0x9E3779B97F4A7C15ull);
    test_shapes();
    test_collapse();
    test_iter_random();
    return test_summary("test_broadcast");
}
