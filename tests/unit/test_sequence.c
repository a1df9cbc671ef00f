/* test_sequence.c: error paths of the sequence ops (src/cpu/ops/sequence.c) that the ONNX
 * test data does not reach; their results are covered by the conformance cases.
 *
 * SplitToSequence with a `split` entry out of range: a one-line error naming the entry and
 * its value (that message once read the split buffer after freeing it; ASan checks this
 * test in scripts/test.sh), entries that do not sum to the axis length, and a valid split
 * for contrast (pieces of the asked lengths, values in order). */
#include <string.h>

#include "test_support.h"

static void split_case(const double *split, size_t n_split, kiln_status want, const char *msg)
{
    const int64_t dims[1] = {5};
    const double xs[5] = {1, 2, 3, 4, 5};
    struct kiln_value *in[2] = {tensor_f64(KILN_DTYPE_F32, 1, dims, xs), vec_f64(KILN_DTYPE_I64, n_split, split)};
    struct kiln_value *out[1] = {0};
    kiln_err err = {0};
    kiln_status st = run_op("SplitToSequence", 11, NULL, 0, in, 2, out, &err);
    CHECK(st == want, "split of %zu entries: status %d, expected %d (%s)", n_split, (int)st, (int)want, err.msg);
    if (msg) CHECK(strstr(err.msg, msg) != NULL, "message '%s' lacks '%s'", err.msg, msg);
    if (st == KILN_OK) {
        const struct kiln_value *seq = out[0];
        CHECK(seq->kind == KILN_VALUE_SEQUENCE && seq->count == n_split, "a sequence of %zu pieces", n_split);
        double next = 1;
        for (size_t i = 0; i < seq->count && i < n_split; i++) {
            const struct kiln_tensor *t = &seq->items[i]->t;
            CHECK(t->rank == 1 && t->dims[0] == (int64_t)split[i], "piece %zu has %g elements", i, split[i]);
            for (int64_t j = 0; j < t->dims[0]; j++, next++)
                CHECK(((const float *)t->data)[j] == (float)next, "piece %zu element %lld", i, (long long)j);
        }
    } else {
        CHECK(out[0] == NULL, "no output on failure");
    }
    free_all(out, 1);
    free_all(in, 2);
}

int main(void)
{
    const double bad_entry[3] = {2, 9, 1}, bad_sum[2] = {2, 2}, neg[2] = {-1, 6}, good[3] = {2, 0, 3};
    split_case(bad_entry, 3, KILN_E_INVALID_ARG, "entry 1 is 9; expected [0, 5]");
    split_case(neg, 2, KILN_E_INVALID_ARG, "entry 0 is -1");
    split_case(bad_sum, 2, KILN_E_INVALID_ARG, "split");
    split_case(good, 3, KILN_OK, NULL);
    return test_summary("test_sequence");
}
