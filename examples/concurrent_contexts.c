/* concurrent_contexts.c: one engine, many threads, each with its own context.
 *
 *   concurrent_contexts [model.onnx [threads [runs]]]
 *
 * An engine is built once and never changes, so any number of threads may share it; what a
 * run writes (the arena of intermediates, per-run state) lives in a context, one per thread.
 * Each thread here gets its context, runs the model `runs` times (default 200) on the same
 * inputs and compares every result with the first one byte for byte; the main thread then
 * compares the threads' results with each other. Without a model path it uses the tiny
 * model of tiny_model.h. Only the public API (kiln.h) is used.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "example_util.h"
#include "kiln.h"

#define MAX_THREADS 64

struct worker {
    kiln_context *ctx;               /* this thread's; the thread frees it */
    size_t n_in, n_out;
    const kiln_value *const *inputs; /* shared, read-only: runs read inputs in place */
    int runs;
    kiln_value **first;              /* this thread's outputs of its first run */
    int differing;                   /* later runs whose outputs differ from the first */
    kiln_status status;
    char message[1024];
};

/* Bytes per element in memory (kiln.h, "Values"); 0 for strings, which this example does
 * not compare. */
static size_t elem_bytes(kiln_dtype dt)
{
    switch (dt) {
    case KILN_DTYPE_STRING: return 0;
    case KILN_DTYPE_F64: case KILN_DTYPE_I64: case KILN_DTYPE_U64: case KILN_DTYPE_C64: return 8;
    case KILN_DTYPE_C128: return 16;
    case KILN_DTYPE_F32: case KILN_DTYPE_I32: case KILN_DTYPE_U32: return 4;
    case KILN_DTYPE_F16: case KILN_DTYPE_BF16: case KILN_DTYPE_I16: case KILN_DTYPE_U16: return 2;
    default: return 1; /* 8-bit, bool, and the 4- and 2-bit types (one byte each) */
    }
}

/* Whether two tensors have the same type, shape and bytes. */
static int same_value(const kiln_value *a, const kiln_value *b)
{
    if (kiln_value_kind_of(a) != KILN_VALUE_TENSOR || kiln_value_kind_of(b) != KILN_VALUE_TENSOR) return 0;
    if (kiln_value_dtype(a) != kiln_value_dtype(b) || kiln_value_rank(a) != kiln_value_rank(b)) return 0;
    for (int d = 0; d < kiln_value_rank(a); d++)
        if (kiln_value_dims(a)[d] != kiln_value_dims(b)[d]) return 0;
    size_t es = elem_bytes(kiln_value_dtype(a));
    return es && memcmp(kiln_value_data((kiln_value *)a), kiln_value_data((kiln_value *)b),
                        kiln_value_numel(a) * es) == 0;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    kiln_context *ctx = w->ctx;
    kiln_err err = {0};
    kiln_value **out = calloc(w->n_out + 1, sizeof *out);
    w->first = calloc(w->n_out + 1, sizeof *w->first);
    if (!out || !w->first) {
        w->status = KILN_E_NOMEM;
        snprintf(w->message, sizeof w->message, "out of memory");
        free(out);
        kiln_context_free(ctx);
        return NULL;
    }
    for (int r = 0; !w->status && r < w->runs; r++) {
        /* kiln_context_run blocks; ro (run options: timeout, cancel) may be NULL. */
        w->status = kiln_context_run(ctx, NULL, w->n_in, NULL, w->inputs, w->n_out, r ? out : w->first, &err);
        if (w->status || r == 0) continue;
        int same = 1;
        for (size_t i = 0; i < w->n_out; i++) {
            same &= same_value(out[i], w->first[i]);
            kiln_value_free(out[i]);
            out[i] = NULL;
        }
        w->differing += !same;
    }
    if (w->status) snprintf(w->message, sizeof w->message, "%s", err.msg);
    kiln_context_free(ctx);
    free(out);
    return NULL;
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : NULL;
    long n_threads = 4, runs = 200;
    int rc = 1;
    char *end = NULL;
    if (argc > 2) n_threads = strtol(argv[2], &end, 10);
    if (argc > 2 && *end) n_threads = 0;
    if (argc > 3) runs = strtol(argv[3], &end, 10);
    if (argc > 3 && *end) runs = 0;
    if (n_threads < 1 || n_threads > MAX_THREADS || runs < 1 || runs > 1000000) {
        fprintf(stderr, "usage: concurrent_contexts [model.onnx [threads (1..%d) [runs]]]\n", MAX_THREADS);
        return 2;
    }
    kiln_err err = {0};
    kiln_builder *b = NULL;
    kiln_engine *e = NULL;
    kiln_value **inputs = NULL;
    struct worker w[MAX_THREADS];
    pthread_t tid[MAX_THREADS];
    int started = 0;
    memset(w, 0, sizeof w);

    kiln_model *m = example_load(path);
    if (!m) return 1;
    size_t n_in = kiln_model_input_count(m), n_out = kiln_model_output_count(m);

    /* Build the engine once: optimize (a copy of m), prepare every kernel, plan memory. One
     * thread per context, since the parallelism here is across contexts. */
    if (kiln_builder_create(&b, &err) || kiln_builder_set_threads(b, 1, &err) ||
        kiln_builder_build(b, m, &e, &err)) {
        fprintf(stderr, "build: %s\n", err.msg);
        goto done;
    }

    inputs = calloc(n_in + 1, sizeof *inputs);
    if (!inputs) goto done;
    for (size_t i = 0; i < n_in; i++)
        if (!(inputs[i] = example_input(kiln_engine_model(e), i, 2))) goto done;

    /* One context per thread. Creating one is cheap next to building the engine; any thread
     * may do it (here the main thread, before the engine is let go). */
    for (int t = 0; t < n_threads; t++) {
        w[t] = (struct worker){.n_in = n_in, .n_out = n_out, .inputs = (const kiln_value *const *)inputs,
                               .runs = (int)runs};
        if (kiln_context_create(e, &w[t].ctx, &err)) {
            fprintf(stderr, "context: %s\n", err.msg);
            break;
        }
    }
    /* The contexts hold references to the engine: it may go now, and stays alive until the
     * last context is freed. */
    kiln_engine_free(e);
    e = NULL;
    for (int t = 0; t < n_threads && w[t].ctx; t++) {
        if (pthread_create(&tid[t], NULL, worker_main, &w[t]) != 0) {
            fprintf(stderr, "cannot start thread %d\n", t);
            break;
        }
        started++;
    }

    int bad = started < n_threads;
    for (int t = 0; t < started; t++) {
        pthread_join(tid[t], NULL);
        if (w[t].status) {
            fprintf(stderr, "thread %d: %s\n", t, w[t].message);
            bad = 1;
            continue;
        }
        for (size_t i = 0; i < n_out; i++)
            if (!same_value(w[t].first[i], w[0].first[i])) w[t].differing++;
        if (w[t].differing) {
            fprintf(stderr, "thread %d: %d results differ\n", t, w[t].differing);
            bad = 1;
        }
    }
    if (!bad) {
        printf("%ld threads x %ld runs, one context each: all %ld results identical\n", n_threads, runs,
               n_threads * runs);
        for (size_t i = 0; i < n_out; i++) example_print(kiln_model_output_name(m, i), w[0].first[i]);
        rc = 0;
    }

done:
    for (int t = started; t < MAX_THREADS; t++) kiln_context_free(w[t].ctx); /* never started */
    for (int t = 0; t < MAX_THREADS; t++) {
        for (size_t i = 0; w[t].first && i < n_out; i++) kiln_value_free(w[t].first[i]);
        free(w[t].first);
    }
    for (size_t i = 0; inputs && i < n_in; i++) kiln_value_free(inputs[i]);
    free(inputs);
    kiln_engine_free(e);
    kiln_builder_free(b);
    kiln_model_free(m);
    return rc;
}
