/* test_text.c: error paths of the text ops (src/cpu/ops/text.c) that the ONNX test data does
 * not reach; their results are covered by the conformance cases.
 *
 * TfIdfVectorizer takes string, int32 or int64 input only: a float tensor (which the fuzzer
 * once fed it, reaching an undefined float-to-int conversion) is refused with a message
 * naming the type, and an int64 input with the same attributes runs. */
#include <string.h>

#include "test_support.h"

static void test_tfidf_input_type(void)
{
    /* Two unigrams, 7 and 8, counted into output slots 0 and 1. */
    const int64_t counts[1] = {0}, indexes[2] = {0, 1}, pool[2] = {7, 8};
    struct attrs at = {0};
    add_i(&at, "min_gram_length", 1);
    add_i(&at, "max_gram_length", 1);
    add_i(&at, "max_skip_count", 0);
    add_s(&at, "mode", "TF");
    add_ints(&at, "ngram_counts", counts, 1);
    add_ints(&at, "ngram_indexes", indexes, 2);
    add_ints(&at, "pool_int64s", pool, 2);

    const double xs[4] = {7, 8, 8, 1};
    struct kiln_value *in[1] = {vec_f64(KILN_DTYPE_F32, 4, xs)};
    struct kiln_value *out[1] = {0};
    kiln_err err = {0};
    kiln_status st = run_op("TfIdfVectorizer", 9, at.a, at.n, in, 1, out, &err);
    CHECK(st == KILN_E_INVALID_ARG, "float input: status %d (%s)", (int)st, err.msg);
    CHECK(strstr(err.msg, "float32") && strstr(err.msg, "expected string, int32 or int64"),
          "message names the type: %s", err.msg);
    CHECK(out[0] == NULL, "no output on failure");
    free_all(in, 1);

    in[0] = vec_f64(KILN_DTYPE_I64, 4, xs);
    st = run_op("TfIdfVectorizer", 9, at.a, at.n, in, 1, out, &err);
    CHECK(st == KILN_OK, "int64 input: %s", err.msg);
    if (st == KILN_OK) {
        const float *y = out[0]->t.data;
        CHECK(out[0]->t.rank == 1 && out[0]->t.dims[0] == 2, "output shape [2]");
        CHECK(y[0] == 1.0f && y[1] == 2.0f, "term frequencies of 7 and 8: got %g %g", y[0], y[1]);
    }
    free_all(out, 1);
    free_all(in, 1);
}

int main(void)
{
    test_tfidf_input_type();
    return test_summary("test_text");
}
