/* async_enqueue.c: asynchronous runs: kiln_context_enqueue with a callback and an event.
 *
 *   async_enqueue [model.onnx [runs]]
 *
 * kiln_context_enqueue queues a run on the context's worker thread and returns at once. Runs
 * of one context go in order. When a run completes, its callback is called on the worker
 * thread with the run's status, then its event is signalled; kiln_event_wait returns that
 * status (and message). Here `runs` runs (default 4) are queued, run k with every symbolic
 * dim set to k + 1; the callbacks print as the runs finish, then the main thread waits on
 * each event and prints the outputs. Inputs must stay valid and outputs[] writable until the
 * run completes. Without a model path it uses the tiny model of tiny_model.h. Only the
 * public API (kiln.h) is used.
 */
#include <stdio.h>
#include <stdlib.h>

#include "example_util.h"
#include "kiln.h"

#define MAX_RUNS 64

struct run {
    int index;
    kiln_value **inputs;  /* this run's inputs (kept until it completes) */
    kiln_value **outputs; /* written by the run */
    kiln_event *done;     /* signalled after the callback */
};

/* Called on the context's worker thread, in queue order, before the run's event. */
static void on_done(void *user, kiln_status status, const char *message)
{
    const struct run *r = user;
    if (status) printf("run %d done: %s (%s)\n", r->index, kiln_status_name(status), message);
    else printf("run %d done: ok\n", r->index);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : NULL;
    long n_runs = 4;
    if (argc > 2) {
        char *end;
        n_runs = strtol(argv[2], &end, 10);
        if (*end || n_runs < 1 || n_runs > MAX_RUNS) {
            fprintf(stderr, "usage: async_enqueue [model.onnx [runs (1..%d)]]\n", MAX_RUNS);
            return 2;
        }
    }
    int rc = 1;
    kiln_err err = {0};
    kiln_builder *b = NULL;
    kiln_engine *e = NULL;
    kiln_context *ctx = NULL;
    struct run runs[MAX_RUNS] = {{0}};
    long queued = 0;

    kiln_model *m = example_load(path);
    if (!m) return 1;
    size_t n_in = kiln_model_input_count(m), n_out = kiln_model_output_count(m);
    if (kiln_builder_create(&b, &err) || kiln_builder_build(b, m, &e, &err) ||
        kiln_context_create(e, &ctx, &err)) {
        fprintf(stderr, "setup: %s\n", err.msg);
        goto done;
    }

    /* Queue every run; none has to finish before the next is queued. */
    for (long k = 0; k < n_runs; k++) {
        struct run *r = &runs[k];
        r->index = (int)k;
        r->inputs = calloc(n_in + 1, sizeof *r->inputs);
        r->outputs = calloc(n_out + 1, sizeof *r->outputs);
        if (!r->inputs || !r->outputs) goto done;
        for (size_t i = 0; i < n_in; i++)
            if (!(r->inputs[i] = example_input(m, i, k + 1))) goto done;
        if (kiln_context_enqueue(ctx, NULL, n_in, NULL, (const kiln_value *const *)r->inputs, n_out, r->outputs,
                                 on_done, r, &r->done, &err)) {
            fprintf(stderr, "enqueue %ld: %s\n", k, err.msg);
            goto done;
        }
        queued++;
    }
    printf("queued %ld runs\n", queued);
    fflush(stdout);

    /* Wait for every run through its event first: each event is signalled after its run's
     * callback, so once all are, every callback has printed and the worker prints no more
     * (printing run 0's outputs after waiting for run 0 alone could interleave them with
     * run 1's callback). */
    rc = 0;
    kiln_status st[MAX_RUNS];
    static char msg[MAX_RUNS][sizeof err.msg];
    for (long k = 0; k < queued; k++) {
        st[k] = kiln_event_wait(runs[k].done, &err);
        if (st[k]) snprintf(msg[k], sizeof msg[k], "%s", err.msg);
    }
    for (long k = 0; k < queued; k++) {
        if (st[k]) {
            fprintf(stderr, "run %ld: %s\n", k, msg[k]);
            rc = 1;
            continue;
        }
        printf("run %ld:\n", k);
        for (size_t i = 0; i < n_out; i++) example_print(kiln_model_output_name(m, i), runs[k].outputs[i]);
    }

done:
    /* kiln_context_free waits for runs still queued, so everything below is safe even when
     * we left the loop above early; kiln_event_free also waits for its run. */
    kiln_context_free(ctx);
    for (long k = 0; k < n_runs; k++) {
        kiln_event_free(runs[k].done);
        for (size_t i = 0; runs[k].inputs && i < n_in; i++) kiln_value_free(runs[k].inputs[i]);
        for (size_t i = 0; runs[k].outputs && i < n_out; i++) kiln_value_free(runs[k].outputs[i]);
        free(runs[k].inputs);
        free(runs[k].outputs);
    }
    kiln_engine_free(e);
    kiln_builder_free(b);
    kiln_model_free(m);
    return rc;
}
