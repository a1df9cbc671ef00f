/* test_public_api.c: a client of the shared library that sees only include/kiln.h: loads a
 * model, checks it, queries it, runs it and compares with the expected output; then checks
 * the structured type queries (dtype, rank, dims with symbolic names) on a model with a
 * symbolic dim and on a sequence input; the profiling calls on a Loop model; tensors that
 * borrow memory (kiln_value_wrap_tensor) and sequences built through the API. Proves the
 * shared library exports what the header declares. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "kiln.h"

static int type_failures;

#define EXPECT(cond, ...)                                                                      \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            type_failures++;                                                                   \
            fprintf(stderr, "test_public_api: " __VA_ARGS__);                                  \
            fputc('\n', stderr);                                                               \
        }                                                                                      \
    } while (0)

/* good_add.onnx: A float32[N,3] (W, an initializer, is hidden), C float32[N,3]. */
static void test_declared_types(void)
{
    kiln_err err = {0};
    kiln_model *m = NULL;
    if (kiln_model_load_file(KILN_SOURCE_DIR "/tests/data/good_add.onnx", &m, &err)) {
        EXPECT(0, "good_add.onnx: %s", err.msg);
        return;
    }
    const char *param = NULL;
    EXPECT(kiln_model_input_count(m) == 1, "good_add has one caller input");
    EXPECT(kiln_model_input_dtype(m, 0) == KILN_DTYPE_F32, "input dtype %d", (int)kiln_model_input_dtype(m, 0));
    EXPECT(kiln_model_input_rank(m, 0) == 2, "input rank %d", kiln_model_input_rank(m, 0));
    EXPECT(kiln_model_input_dim(m, 0, 0, &param) == -1 && strcmp(param, "N") == 0, "dim 0 is symbolic N ('%s')",
           param);
    EXPECT(kiln_model_input_dim(m, 0, 1, &param) == 3 && strcmp(param, "") == 0, "dim 1 is 3");
    EXPECT(kiln_model_input_dim(m, 0, 2, &param) == -1 && strcmp(param, "") == 0, "dim 2 is out of range");
    EXPECT(kiln_model_input_dim(m, 0, -1, NULL) == -1, "dim -1 is out of range");
    EXPECT(kiln_model_output_dtype(m, 0) == KILN_DTYPE_F32 && kiln_model_output_rank(m, 0) == 2,
           "output float32 rank 2");
    EXPECT(kiln_model_output_dim(m, 0, 1, NULL) == 3, "output dim 1 is 3");
    EXPECT(kiln_model_input_dtype(m, 5) == KILN_DTYPE_UNDEFINED && kiln_model_input_rank(m, 5) == -1 &&
               kiln_model_input_dim(m, 5, 0, &param) == -1,
           "input 5 is out of range");
    kiln_model_free(m);

    /* seq(int64) without a shape. */
    m = NULL;
    if (kiln_model_load_file(KILN_ONNX_TESTS "/node/test_sequence_insert_at_back/model.onnx", &m, &err)) {
        EXPECT(0, "sequence model: %s", err.msg);
        return;
    }
    EXPECT(kiln_model_input_kind(m, 0) == KILN_VALUE_SEQUENCE, "input 0 is a sequence");
    EXPECT(kiln_model_input_dtype(m, 0) == KILN_DTYPE_I64, "seq(int64) gives int64");
    EXPECT(kiln_model_input_rank(m, 0) == -1, "no shape declared: rank -1");
    kiln_model_free(m);
}

/* kiln_session_options.threads: N as given, 0 resolved to the CPUs (at least 1), out of
 * range refused with a message naming the option. */
static void test_threads_option(void)
{
    kiln_err err = {0};
    kiln_model *m = NULL;
    if (kiln_model_load_file(KILN_SOURCE_DIR "/tests/data/good_add.onnx", &m, &err)) {
        EXPECT(0, "good_add.onnx: %s", err.msg);
        return;
    }
    const int given[4] = {1, 3, 0, 64};
    for (int i = 0; i < 4; i++) {
        kiln_session *s = NULL;
        kiln_session_options opt = {.threads = given[i]};
        kiln_status st = kiln_session_create(m, &opt, &s, &err);
        EXPECT(st == KILN_OK, "threads %d: %s", given[i], err.msg);
        int t = kiln_session_threads(s);
        EXPECT(given[i] ? t == given[i] : t >= 1, "threads %d: session reports %d", given[i], t);
        kiln_session_free(s);
    }
    const int bad[2] = {-1, 1025};
    for (int i = 0; i < 2; i++) {
        kiln_session *s = NULL;
        kiln_session_options opt = {.threads = bad[i]};
        kiln_status st = kiln_session_create(m, &opt, &s, &err);
        EXPECT(st == KILN_E_INVALID_ARG && !s && strstr(err.msg, "threads"), "threads %d: status %d (%s)", bad[i],
               (int)st, err.msg);
    }
    EXPECT(kiln_session_threads(NULL) == 0, "NULL session");
    kiln_model_free(m);
}

/* Profiling: off by default (no entries, the calls refuse); on, one entry per node of the
 * Loop model and of its body, body nodes named "loop/node" at depth 1, calls counted per run,
 * reset zeroes them, and the trace file is written. */
static void test_profile(void)
{
    const char *dir = KILN_ONNX_TESTS "/node/test_loop11";
    char path[1024];
    kiln_err err = {0};
    kiln_model *m = NULL;
    kiln_session *s = NULL;
    kiln_value *in[3] = {NULL, NULL, NULL}, *out[2] = {NULL, NULL};
    kiln_profile_entry e;
    snprintf(path, sizeof path, "%s/model.onnx", dir);
    if (kiln_model_load_file(path, &m, &err)) {
        EXPECT(0, "%s: %s", path, err.msg);
        return;
    }
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/test_data_set_0/input_%d.pb", dir, i);
        EXPECT(kiln_value_read_file(path, KILN_VALUE_TENSOR, &in[i], &err) == KILN_OK, "%s: %s", path, err.msg);
    }
    EXPECT(kiln_session_create(m, NULL, &s, &err) == KILN_OK, "session: %s", err.msg);
    EXPECT(kiln_session_profile_count(s) == 0, "profiling off: %zu entries", kiln_session_profile_count(s));
    EXPECT(kiln_session_profile_entry(s, 0, &e, &err) == KILN_E_INVALID_ARG, "profiling off: entry 0");
    EXPECT(kiln_session_profile_write_trace(s, "/nonexistent/t.json", &err) == KILN_E_INVALID_ARG,
           "profiling off: write_trace");
    kiln_session_profile_reset(s); /* a no-op */
    kiln_session_free(s);
    s = NULL;

    kiln_session_options opt = {.threads = 1, .profile = 1};
    EXPECT(kiln_session_create(m, &opt, &s, &err) == KILN_OK, "profiled session: %s", err.msg);
    size_t n = kiln_session_profile_count(s);
    EXPECT(n >= 2, "profiled Loop model: %zu entries", n);
    for (int run = 0; run < 2 && s; run++) {
        EXPECT(kiln_session_run(s, 3, NULL, (const kiln_value *const *)in, 2, out, &err) == KILN_OK, "run: %s",
               err.msg);
        kiln_value_free(out[0]);
        kiln_value_free(out[1]);
    }
    size_t top = 0, nested = 0;
    for (size_t i = 0; i < n; i++) {
        if (kiln_session_profile_entry(s, i, &e, &err) != KILN_OK) {
            EXPECT(0, "entry %zu: %s", i, err.msg);
            continue;
        }
        if (e.depth == 0) {
            top++;
            EXPECT(strcmp(e.op_type, "Loop") == 0 && e.calls == 2 && e.total_ns > 0, "main node %s: %s, %llu calls",
                   e.name, e.op_type, (unsigned long long)e.calls);
            EXPECT(strstr(e.shapes, "float32[") != NULL, "main node shapes '%s'", e.shapes);
        } else {
            nested++;
            EXPECT(e.depth == 1 && strchr(e.name, '/') && e.calls >= 2, "body node %s depth %d, %llu calls", e.name,
                   e.depth, (unsigned long long)e.calls);
        }
        EXPECT(strncmp(e.kernel, "cpu:", 4) == 0 && strstr(e.kernel, e.op_type), "kernel '%s'", e.kernel);
    }
    EXPECT(top == 1 && nested == n - 1, "%zu main, %zu body entries", top, nested);
    EXPECT(kiln_session_profile_entry(s, n, &e, &err) == KILN_E_INVALID_ARG, "entry %zu out of range", n);
    snprintf(path, sizeof path, "%s/kiln_api_trace.json", KILN_BINARY_DIR);
    EXPECT(kiln_session_profile_write_trace(s, path, &err) == KILN_OK, "write_trace: %s", err.msg);
    FILE *f = fopen(path, "r");
    EXPECT(f && fgetc(f) == '[', "trace %s does not start with '['", path);
    if (f) fclose(f);
    remove(path);
    EXPECT(kiln_session_profile_write_trace(s, "/nonexistent/dir/t.json", &err) == KILN_E_IO, "bad trace path");
    kiln_session_profile_reset(s);
    for (size_t i = 0; i < n; i++)
        EXPECT(kiln_session_profile_entry(s, i, &e, &err) == KILN_OK && e.calls == 0 && e.total_ns == 0,
               "entry %zu after reset", i);
    kiln_session_free(s);
    for (int i = 0; i < 3; i++) kiln_value_free(in[i]);
    kiln_model_free(m);
}

/* Shape inference through kiln.h: symbolic N carried to the output, then fixed. */
static void test_shape_inference(void)
{
    kiln_err err = {0};
    kiln_model *m = NULL;
    if (kiln_model_load_file(KILN_SOURCE_DIR "/tests/data/good_add.onnx", &m, &err)) {
        EXPECT(0, "good_add.onnx: %s", err.msg);
        return;
    }
    EXPECT(kiln_model_value_count(m) == 0, "no values listed before inference");
    EXPECT(kiln_model_infer_shapes(m, &err) == KILN_OK, "infer: %s", err.msg);
    size_t n = kiln_model_value_count(m);
    char type[64] = "";
    EXPECT(n == 3 && strcmp(kiln_model_value_name(m, 0), "A") == 0 &&
               strcmp(kiln_model_value_name(m, 2), "C") == 0,
           "values: %zu", n);
    kiln_model_value_type(m, 2, type, sizeof type);
    EXPECT(strcmp(type, "float32[N,3]") == 0, "C is %s", type);
    const int64_t dims[2] = {5, 3}, bad[2] = {5, 4};
    EXPECT(kiln_model_set_input_shape(m, "A", 2, bad, &err) == KILN_E_INVALID_ARG, "A[5,4] refused");
    EXPECT(kiln_model_set_input_shape(m, "A", 2, dims, &err) == KILN_OK, "A[5,3]: %s", err.msg);
    EXPECT(kiln_model_infer_shapes(m, &err) == KILN_OK, "infer: %s", err.msg);
    kiln_model_value_type(m, 2, type, sizeof type);
    EXPECT(strcmp(type, "float32[5,3]") == 0, "C is %s after fixing A", type);
    EXPECT(strcmp(kiln_model_value_name(m, 99), "") == 0, "out of range name is empty");
    kiln_model_free(m);
}

/* kiln_value_wrap_tensor borrows memory: the value sees the caller's bytes, a run reads them
 * in place, and kiln_value_free leaves them alone; bad sizes are refused. Then a sequence
 * built with kiln_value_create_sequence / kiln_value_sequence_append. */
static void test_wrap_and_sequence(void)
{
    kiln_err err = {0};
    float x[6] = {1, 2, 3, 4, 5, 6};
    int64_t dims[2] = {2, 3};
    kiln_value *v = NULL;
    EXPECT(kiln_value_wrap_tensor(KILN_DTYPE_F32, 2, dims, x, sizeof x, &v, &err) == KILN_OK, "wrap: %s", err.msg);
    if (v) {
        EXPECT(kiln_value_data(v) == (void *)x, "wrap copied the data");
        EXPECT(kiln_value_numel(v) == 6 && kiln_value_rank(v) == 2 && kiln_value_dims(v)[1] == 3,
               "wrapped shape");
    }
    kiln_value_free(v);
    EXPECT(x[5] == 6, "kiln_value_free touched borrowed memory");
    v = NULL;
    EXPECT(kiln_value_wrap_tensor(KILN_DTYPE_F32, 2, dims, x, sizeof x - 4, &v, &err) == KILN_E_INVALID_ARG && !v,
           "wrong byte count accepted");
    EXPECT(strstr(err.msg, "20 bytes given") != NULL, "message: %s", err.msg);
    int64_t neg[1] = {-1};
    EXPECT(kiln_value_wrap_tensor(KILN_DTYPE_F32, 1, neg, x, 0, &v, &err) == KILN_E_INVALID_ARG, "negative dim");
    EXPECT(kiln_value_wrap_tensor(KILN_DTYPE_UNDEFINED, 1, dims, x, 8, &v, &err) == KILN_E_INVALID_ARG, "bad dtype");
    EXPECT(kiln_value_wrap_tensor(KILN_DTYPE_F32, 17, dims, x, 8, &v, &err) == KILN_E_LIMIT, "rank 17");
    EXPECT(kiln_value_wrap_tensor(KILN_DTYPE_F32, 1, dims, NULL, 8, &v, &err) == KILN_E_INVALID_ARG, "NULL data");
    const char *strs[2] = {"ab", "c"};
    EXPECT(kiln_value_wrap_tensor(KILN_DTYPE_STRING, 1, dims, (void *)strs, sizeof strs, &v, &err) == KILN_OK,
           "wrap strings: %s", err.msg);
    kiln_value_free(v);

    /* A run reads a wrapped input in place: test_add's x + y. */
    kiln_model *m = NULL;
    kiln_session *s = NULL;
    if (kiln_model_load_file(KILN_ONNX_TESTS "/node/test_add/model.onnx", &m, &err) ||
        kiln_session_create(m, NULL, &s, &err)) {
        EXPECT(0, "test_add: %s", err.msg);
    } else {
        static float a[60], b[60];
        for (int i = 0; i < 60; i++) a[i] = (float)i, b[i] = 0.5f * (float)i;
        int64_t d3[3] = {3, 4, 5};
        kiln_value *in[2] = {NULL, NULL}, *out = NULL;
        EXPECT(kiln_value_wrap_tensor(KILN_DTYPE_F32, 3, d3, a, sizeof a, &in[0], &err) == KILN_OK, "%s", err.msg);
        EXPECT(kiln_value_wrap_tensor(KILN_DTYPE_F32, 3, d3, b, sizeof b, &in[1], &err) == KILN_OK, "%s", err.msg);
        if (in[0] && in[1] &&
            kiln_session_run(s, 2, NULL, (const kiln_value *const *)in, 1, &out, &err) == KILN_OK) {
            const float *o = kiln_value_data(out);
            for (int i = 0; i < 60; i++) EXPECT(o[i] == 1.5f * (float)i, "wrapped add [%d] = %g", i, o[i]);
        } else {
            EXPECT(0, "run on wrapped inputs: %s", err.msg);
        }
        kiln_value_free(out);
        kiln_value_free(in[0]);
        kiln_value_free(in[1]);
        EXPECT(a[59] == 59 && b[59] == 29.5f, "the run changed its inputs");
    }
    kiln_session_free(s);
    kiln_model_free(m);

    kiln_value *seq = NULL, *item = NULL;
    EXPECT(kiln_value_create_sequence(KILN_DTYPE_F32, &seq, &err) == KILN_OK, "sequence: %s", err.msg);
    if (!seq) return;
    EXPECT(kiln_value_kind_of(seq) == KILN_VALUE_SEQUENCE && kiln_value_count(seq) == 0, "empty sequence");
    EXPECT(kiln_value_wrap_tensor(KILN_DTYPE_F32, 2, dims, x, sizeof x, &item, &err) == KILN_OK, "%s", err.msg);
    EXPECT(kiln_value_sequence_append(seq, item, &err) == KILN_OK, "append: %s", err.msg);
    EXPECT(kiln_value_create_tensor(KILN_DTYPE_I64, 0, NULL, &item, &err) == KILN_OK, "%s", err.msg);
    EXPECT(kiln_value_sequence_append(seq, item, &err) == KILN_E_INVALID_ARG, "int64 into a float sequence");
    EXPECT(strstr(err.msg, "int64") != NULL, "message: %s", err.msg);
    EXPECT(kiln_value_count(seq) == 1 && kiln_value_item(seq, 0) != NULL, "sequence count");
    EXPECT(kiln_value_elem_dtype(seq) == KILN_DTYPE_F32, "sequence element type");
    kiln_value_free(seq);
    EXPECT(x[0] == 1, "freeing the sequence touched borrowed memory");
}

int main(void)
{
    test_wrap_and_sequence();
    test_declared_types();
    test_threads_option();
    test_shape_inference();
    test_profile();
    const char *dir = KILN_ONNX_TESTS "/node/test_add";
    char path[1024];
    kiln_err err = {0};
    kiln_model *m = NULL;
    kiln_session *s = NULL;
    kiln_value *in[2] = {NULL, NULL}, *want = NULL, *out = NULL;
    int ok = 0;
    snprintf(path, sizeof path, "%s/model.onnx", dir);
    if (kiln_model_load_file(path, &m, &err)) goto done;
    if (kiln_model_check(m, NULL, NULL) != 0 || kiln_model_input_count(m) != 2 ||
        strcmp(kiln_model_input_name(m, 0), "x") != 0) {
        snprintf(err.msg, sizeof err.msg, "unexpected model description");
        goto done;
    }
    char type[64];
    kiln_model_input_type(m, 0, type, sizeof type);
    if (strcmp(type, "float32[3,4,5]") != 0) {
        snprintf(err.msg, sizeof err.msg, "input type '%s'", type);
        goto done;
    }
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/test_data_set_0/input_%d.pb", dir, i);
        if (kiln_value_read_file(path, KILN_VALUE_TENSOR, &in[i], &err)) goto done;
    }
    snprintf(path, sizeof path, "%s/test_data_set_0/output_0.pb", dir);
    if (kiln_value_read_file(path, KILN_VALUE_TENSOR, &want, &err)) goto done;
    if (kiln_session_create(m, NULL, &s, &err)) goto done;
    if (kiln_session_run(s, 2, NULL, (const kiln_value *const *)in, 1, &out, &err)) goto done;
    const float *a = kiln_value_data(out), *b = kiln_value_data(want);
    ok = kiln_value_numel(out) == 60;
    for (size_t i = 0; ok && i < 60; i++) ok = fabsf(a[i] - b[i]) <= 1e-6f * (1 + fabsf(b[i]));
    if (!ok) snprintf(err.msg, sizeof err.msg, "output differs from the expected values");
done:
    kiln_value_free(in[0]);
    kiln_value_free(in[1]);
    kiln_value_free(want);
    kiln_value_free(out);
    kiln_session_free(s);
    kiln_model_free(m);
    if (!ok) fprintf(stderr, "test_public_api: %s\n", err.msg);
    if (!ok || type_failures) return 1;
    printf("test_public_api: ok\n");
    return 0;
}
