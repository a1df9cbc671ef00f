/* fuzz_load.c: fuzz target for model loading, checking, the info API and running.
 *
 * Input: the bytes of an ONNX ModelProto (onnx/onnx.proto). The target loads them with
 * kiln_model_load_buffer (no folder, so external data is refused), and on success runs the
 * checker, every model query of kiln.h (the type text both measured and truncated), shape
 * inference and its value listing, then
 * creates a session and runs it once on zero-filled inputs of the declared shapes when
 * every input is a tensor with known dims and at most FUZZ_MAX_INPUT_ELEMS elements in all
 * (empty sequences and empty optionals of the declared element type otherwise). Everything
 * is freed; LeakSanitizer reports what is not.
 *
 * A second copy is optimized (kiln_model_optimize, extended level), checked again when the
 * model was valid, queried and run the same way.
 *
 * Invariants checked: every failure carries a one-line message; the type text reports the
 * length it needs and stays NUL-terminated when cut; a successful run fills every output.
 */
#include "fuzz_common.h"


static void on_problem(void *user, const char *message)
{
    size_t *n = user;
    FUZZ_CHECK(message && message[0], "empty problem message");
    (*n)++;
}

/* The declared type text, measured then written, and cut to a small buffer. */
static void check_type_text(size_t (*fn)(const kiln_model *, size_t, char *, size_t),
                            const kiln_model *m, size_t i)
{
    size_t need = fn(m, i, NULL, 0);
    FUZZ_CHECK(need < (1u << 24), "type text of %zu bytes", need);
    char *buf = malloc(need + 1);
    FUZZ_CHECK(buf != NULL, "malloc");
    size_t got = fn(m, i, buf, need + 1);
    FUZZ_CHECK(got == need && strlen(buf) == need, "type text %zu/%zu/%zu", need, got,
               strlen(buf));
    char small[6];
    memset(small, 'x', sizeof small);
    got = fn(m, i, small, sizeof small);
    FUZZ_CHECK(got == need, "measured %zu, then %zu", need, got);
    FUZZ_CHECK(strlen(small) == (need < sizeof small ? need : sizeof small - 1),
               "cut type text is %zu bytes", strlen(small));
    FUZZ_CHECK(!strncmp(small, buf, strlen(small)), "cut type text differs");
    free(buf);
}

/* Shape inference (also run inside the checker when the model is sound) on any model that
 * links, and the inferred-type listing with the same text invariants. */
static void infer_all(kiln_model *m)
{
    kiln_err err;
    memset(&err, 0, sizeof err);
    kiln_status st = kiln_model_infer_shapes(m, &err);
    FUZZ_CHECK(st == KILN_OK || fuzz_msg_ok(&err), "inference failed without a message");
    size_t n = kiln_model_value_count(m);
    FUZZ_CHECK(st == KILN_OK || n == 0, "failed inference left %zu values", n);
    for (size_t i = 0; i <= n && i <= FUZZ_MAX_LISTED; i++) { /* one past the end too */
        volatile size_t sink = strlen(kiln_model_value_name(m, i));
        (void)sink;
        check_type_text(kiln_model_value_type, m, i);
    }
}

static void query_all(const kiln_model *m)
{
    volatile size_t sink = 0; /* touch every string so ASan sees a bad pointer */
    sink += strlen(kiln_model_producer(m)) + strlen(kiln_model_producer_version(m)) +
            strlen(kiln_model_domain(m)) + strlen(kiln_model_doc(m)) +
            strlen(kiln_model_graph_name(m));
    sink += (size_t)kiln_model_ir_version(m) + (size_t)kiln_model_version(m);
    for (size_t i = 0; i <= kiln_model_opset_count(m); i++) { /* one past the end too */
        const char *d;
        int64_t v;
        kiln_model_opset(m, i, &d, &v);
        sink += strlen(d) + (size_t)v;
    }
    for (size_t i = 0; i <= kiln_model_metadata_count(m); i++) {
        const char *k, *v;
        kiln_model_metadata(m, i, &k, &v);
        sink += strlen(k) + strlen(v);
    }
    size_t n_in = kiln_model_input_count(m), n_out = kiln_model_output_count(m);
    n_in = n_in < FUZZ_MAX_LISTED ? n_in : FUZZ_MAX_LISTED;
    n_out = n_out < FUZZ_MAX_LISTED ? n_out : FUZZ_MAX_LISTED;
    for (size_t i = 0; i <= n_in; i++) {
        sink += strlen(kiln_model_input_name(m, i)) + (size_t)kiln_model_input_kind(m, i);
        check_type_text(kiln_model_input_type, m, i);
    }
    for (size_t i = 0; i <= n_out; i++) {
        sink += strlen(kiln_model_output_name(m, i)) + (size_t)kiln_model_output_kind(m, i);
        check_type_text(kiln_model_output_type, m, i);
    }
    for (size_t i = 0; i <= kiln_model_node_count(m); i++) {
        const char *name, *op, *dom;
        kiln_model_node(m, i, &name, &op, &dom);
        sink += strlen(name) + strlen(op) + strlen(dom);
    }
    uint64_t count, bytes;
    kiln_model_params(m, &count, &bytes);
    sink += (size_t)(count + bytes);
    (void)sink;
}

static void run_once(const kiln_model *m)
{
    kiln_err err;
    kiln_session *s = NULL;
    memset(&err, 0, sizeof err);
    if (kiln_session_create(m, NULL, &s, &err) != KILN_OK) {
        FUZZ_CHECK(fuzz_msg_ok(&err), "session_create failed without a message");
        FUZZ_CHECK(s == NULL, "failed session_create left a session");
        return;
    }
    fuzz_run_session(s, m);
    kiln_session_free(s);
}

/* A second copy optimized at the extended level with kiln's fused ops (docs/optimizer.md):
 * a failure carries a message and is never an internal error (a pass breaking the graph);
 * a valid model stays valid; the optimized model goes through the queries and a run. */
static void optimize_once(const uint8_t *data, size_t size, size_t problems)
{
    kiln_model *m = NULL;
    kiln_err err;
    memset(&err, 0, sizeof err);
    if (kiln_model_load_buffer(data, size, NULL, &m, &err) != KILN_OK) return;
    kiln_optimize_options opt = {.level = KILN_OPT_EXTENDED, .keep_fused = 1};
    kiln_status st = kiln_model_optimize(m, &opt, &err);
    if (st) {
        FUZZ_CHECK(fuzz_msg_ok(&err), "optimize failed (%d) without a message", (int)st);
        FUZZ_CHECK(st != KILN_E_INTERNAL, "optimize: %s", err.msg);
    } else {
        if (problems == 0)
            FUZZ_CHECK(kiln_model_check(m, NULL, NULL) == 0, "optimize made a valid model invalid");
        query_all(m);
        run_once(m);
    }
    kiln_model_free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kiln_model *m = NULL;
    kiln_err err;
    memset(&err, 0, sizeof err);
    if (kiln_model_load_buffer(data, size, NULL, &m, &err) != KILN_OK) {
        FUZZ_CHECK(fuzz_msg_ok(&err), "load failed without a message");
        FUZZ_CHECK(m == NULL, "failed load left a model");
        return 0;
    }
    size_t counted = 0;
    size_t problems = kiln_model_check(m, on_problem, &counted);
    FUZZ_CHECK(problems == counted, "check returned %zu, reported %zu", problems, counted);
    FUZZ_CHECK(kiln_model_check(m, NULL, NULL) == problems, "check is not repeatable");
    query_all(m);
    infer_all(m);
    run_once(m);
    kiln_model_free(m);
    optimize_once(data, size, problems);
    return 0;
}
