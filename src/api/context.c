/* context.c: kiln_context_* and kiln_event_* (kiln.h): contexts on an engine, IO binding,
 * and asynchronous runs on a per-context worker thread.
 *
 * enqueue appends a job to the context's queue and returns; the worker (started by the
 * first enqueue) runs the jobs in order, calls each job's callback, then signals its event.
 * An event is shared by the worker and the caller (a reference each); whoever drops the
 * last reference frees it. kiln_context_free drains the queue and joins the worker.
 */
#include <pthread.h>
#include <string.h>

#include "exec/engine.h"

struct kiln_event {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    int refs;
    kiln_status status;
    kiln_err err;
};

struct job {
    struct job *next;
    const kiln_run_options *ro;
    size_t n_in, n_out;
    const char *const *names;
    const kiln_value *const *inputs;
    kiln_value **outputs;
    kiln_done_fn done;
    void *user;
    struct kiln_event *ev;
};

struct kiln_async {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct job *head, *tail;
    bool stop;
};

static void event_unref(struct kiln_event *ev)
{
    pthread_mutex_lock(&ev->mu);
    bool last = --ev->refs == 0;
    pthread_mutex_unlock(&ev->mu);
    if (!last) return;
    pthread_mutex_destroy(&ev->mu);
    pthread_cond_destroy(&ev->cv);
    kiln_free(ev);
}

kiln_status kiln_context_create(kiln_engine *e, kiln_context **out, kiln_err *err)
{
    if (!out) return kiln_err_set(err, KILN_E_INVALID_ARG, "context: no output pointer");
    *out = NULL;
    if (!e) return kiln_err_set(err, KILN_E_INVALID_ARG, "context: no engine");
    return kiln_context_new(e, out, err);
}

static void async_stop(struct kiln_context *c)
{
    struct kiln_async *a = c->async;
    if (!a) return;
    pthread_mutex_lock(&a->mu);
    a->stop = true;
    pthread_cond_broadcast(&a->cv);
    pthread_mutex_unlock(&a->mu);
    pthread_join(a->thread, NULL);
    pthread_mutex_destroy(&a->mu);
    pthread_cond_destroy(&a->cv);
    kiln_free(a);
    c->async = NULL;
}

void kiln_context_free(kiln_context *c)
{
    if (!c) return;
    async_stop(c);
    kiln_free(c->out_buf);
    kiln_free(c->out_buf_bytes);
    kiln_context_delete(c);
}

uint64_t kiln_context_arena_bytes(const kiln_context *c)
{
    return c && c->plan_valid ? c->plan.arena_bytes : 0;
}

kiln_status kiln_context_bind_output(kiln_context *c, size_t i, void *buf, size_t bytes, kiln_err *err)
{
    if (!c) return kiln_err_set(err, KILN_E_INVALID_ARG, "bind output: no context");
    size_t n = c->e->model->graph->n_outputs;
    if (i >= n) return kiln_err_set(err, KILN_E_INVALID_ARG, "bind output: output %zu of %zu", i, n);
    if (!c->out_buf) {
        c->out_buf = kiln_calloc(n, sizeof *c->out_buf);
        c->out_buf_bytes = kiln_calloc(n, sizeof *c->out_buf_bytes);
        if (!c->out_buf || !c->out_buf_bytes) {
            kiln_free(c->out_buf), kiln_free(c->out_buf_bytes);
            c->out_buf = NULL, c->out_buf_bytes = NULL;
            return kiln_err_set(err, KILN_E_NOMEM, "out of memory binding an output");
        }
    }
    c->out_buf[i] = buf;
    c->out_buf_bytes[i] = buf ? bytes : 0;
    return KILN_OK;
}

/* Moves each bound output into its caller buffer, leaving a view of it. */
static kiln_status deliver_bound(kiln_context *c, size_t n_out, kiln_value **outputs, kiln_err *err)
{
    const struct kiln_graph *g = c->e->model->graph;
    for (size_t i = 0; c->out_buf && i < n_out; i++) {
        if (!c->out_buf[i]) continue;
        struct kiln_value *v = outputs[i];
        if (v->kind != KILN_VALUE_TENSOR || v->t.dtype == KILN_DTYPE_STRING)
            return kiln_err_set(err, KILN_E_INVALID_ARG, "run: output '%s' is not a numeric tensor; it cannot "
                                "go into a bound buffer", g->outputs[i].name);
        size_t bytes = kiln_tensor_nbytes(&v->t);
        if (bytes > c->out_buf_bytes[i])
            return kiln_err_set(err, KILN_E_INVALID_ARG, "run: output '%s' takes %zu bytes; its bound buffer has %zu",
                                g->outputs[i].name, bytes, c->out_buf_bytes[i]);
        if (bytes) memcpy(c->out_buf[i], v->t.data, bytes);
        if (v->t.flags & KILN_TENSOR_OWNS_DATA) kiln_free(v->t.data);
        v->t.data = c->out_buf[i];
        v->t.flags = 0;
    }
    return KILN_OK;
}

kiln_status kiln_context_run(kiln_context *c, const kiln_run_options *ro, size_t n_in, const char *const *names,
                             const kiln_value *const *inputs, size_t n_out, kiln_value **outputs, kiln_err *err)
{
    if (!c) return kiln_err_set(err, KILN_E_INVALID_ARG, "run: no context");
    kiln_status st = kiln_context_run_graph(c, ro, n_in, names, inputs, n_out, outputs, err);
    if (!st) st = deliver_bound(c, n_out, outputs, err);
    if (st)
        for (size_t i = 0; i < n_out; i++) {
            kiln_value_free(outputs[i]);
            outputs[i] = NULL;
        }
    return st;
}

/* ------------------------------------------------------------------ asynchronous runs */

static void *worker(void *arg)
{
    struct kiln_context *c = arg;
    struct kiln_async *a = c->async;
    for (;;) {
        pthread_mutex_lock(&a->mu);
        while (!a->head && !a->stop) pthread_cond_wait(&a->cv, &a->mu);
        struct job *j = a->head;
        if (!j) {
            pthread_mutex_unlock(&a->mu);
            return NULL;
        }
        a->head = j->next;
        if (!a->head) a->tail = NULL;
        pthread_mutex_unlock(&a->mu);
        kiln_err e = {0};
        kiln_status st = kiln_context_run(c, j->ro, j->n_in, j->names, j->inputs, j->n_out, j->outputs, &e);
        if (j->done) j->done(j->user, st, st ? e.msg : "");
        struct kiln_event *ev = j->ev;
        pthread_mutex_lock(&ev->mu);
        ev->status = st;
        ev->err = e;
        ev->done = true;
        pthread_cond_broadcast(&ev->cv);
        pthread_mutex_unlock(&ev->mu);
        event_unref(ev);
        kiln_free(j);
    }
}

kiln_status kiln_context_enqueue(kiln_context *c, const kiln_run_options *ro, size_t n_in, const char *const *names,
                                 const kiln_value *const *inputs, size_t n_out, kiln_value **outputs,
                                 kiln_done_fn done, void *user, kiln_event **ev_out, kiln_err *err)
{
    if (ev_out) *ev_out = NULL;
    if (!c) return kiln_err_set(err, KILN_E_INVALID_ARG, "enqueue: no context");
    if (!c->async) {
        struct kiln_async *a = kiln_calloc(1, sizeof *a);
        if (!a) return kiln_err_set(err, KILN_E_NOMEM, "out of memory starting the context's worker");
        pthread_mutex_init(&a->mu, NULL);
        pthread_cond_init(&a->cv, NULL);
        c->async = a;
        if (pthread_create(&a->thread, NULL, worker, c) != 0) {
            pthread_mutex_destroy(&a->mu);
            pthread_cond_destroy(&a->cv);
            kiln_free(a);
            c->async = NULL;
            return kiln_err_set(err, KILN_E_NOMEM, "cannot start the context's worker thread");
        }
    }
    struct job *j = kiln_calloc(1, sizeof *j);
    struct kiln_event *ev = j ? kiln_calloc(1, sizeof *ev) : NULL;
    if (!ev) {
        kiln_free(j);
        return kiln_err_set(err, KILN_E_NOMEM, "out of memory enqueueing a run");
    }
    pthread_mutex_init(&ev->mu, NULL);
    pthread_cond_init(&ev->cv, NULL);
    ev->refs = ev_out ? 2 : 1;
    *j = (struct job){.ro = ro, .n_in = n_in, .n_out = n_out, .names = names, .inputs = inputs,
                      .outputs = outputs, .done = done, .user = user, .ev = ev};
    struct kiln_async *a = c->async;
    pthread_mutex_lock(&a->mu);
    if (a->tail) a->tail->next = j;
    else a->head = j;
    a->tail = j;
    pthread_cond_signal(&a->cv);
    pthread_mutex_unlock(&a->mu);
    if (ev_out) *ev_out = ev;
    return KILN_OK;
}

kiln_status kiln_event_wait(kiln_event *ev, kiln_err *err)
{
    if (!ev) return kiln_err_set(err, KILN_E_INVALID_ARG, "event wait: no event");
    pthread_mutex_lock(&ev->mu);
    while (!ev->done) pthread_cond_wait(&ev->cv, &ev->mu);
    kiln_status st = ev->status;
    if (st && err) *err = ev->err;
    pthread_mutex_unlock(&ev->mu);
    return st;
}

int kiln_event_done(kiln_event *ev)
{
    if (!ev) return 1;
    pthread_mutex_lock(&ev->mu);
    int d = ev->done;
    pthread_mutex_unlock(&ev->mu);
    return d;
}

void kiln_event_free(kiln_event *ev)
{
    if (!ev) return;
    pthread_mutex_lock(&ev->mu);
    while (!ev->done) pthread_cond_wait(&ev->cv, &ev->mu);
    pthread_mutex_unlock(&ev->mu);
    event_unref(ev);
}
