/* sched.c: the scheduler of one loaded model version: a FIFO queue served by one thread
 * per instance (instance_group count), each running batches on its own kiln context over
 * the version's shared engine.
 *
 * Without dynamic batching (or with max_batch_size 0) each request runs alone, in queue
 * order. With it, batcher.c decides which of the first queued requests form the next batch
 * (Triton's dynamic batcher). The queue is ordered by priority level, then arrival
 * (batcher.c); a request whose queue timeout passes first is rejected (its level's
 * timeout_action REJECT) or moved behind its level's other requests (DELAY). Requests are
 * concatenated along dim 0, and every output is split back along dim 0. With
 * preserve_ordering, responses go out in the order their requests were taken off the queue,
 * whichever instance finishes first.
 */
#define _GNU_SOURCE /* POLLRDHUP */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "serve.h"

struct sv_worker {
    struct sv_model *model;
    pthread_t thread;
    bool started;
    kiln_context *ctx;
    kiln_run_options *ro;
    struct sv_request *batch[SV_MAX_BATCH_REQUESTS];
    int64_t rows[SV_MAX_BATCH_REQUESTS]; /* pick's scratch */
    size_t batch_n; /* requests of the batch running now (under the sched lock) */
};

uint64_t sv_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void sv_batch_result_unref(struct sv_batch_result *r)
{
    if (!r || atomic_fetch_sub(&r->refs, 1) != 1) return;
    for (size_t i = 0; i < r->n_outs; i++) kiln_value_free(r->outs[i]);
    free(r->outs);
    free(r);
}

/* Sets r's outcome; its waiter reads it once deliver() has marked it done. */
static void stage(struct sv_request *r, int http_status, kiln_status st, const char *msg)
{
    r->http_status = http_status;
    r->status = st;
    if (msg) snprintf(r->msg, sizeof r->msg, "%s", msg);
}

/* Marks r done and wakes its waiter; r may be freed by the waiter right after. */
static void deliver(struct sv_request *r)
{
    struct sv_stats *s = &r->model->stats;
    atomic_fetch_sub(&s->pending, 1);
    pthread_mutex_lock(&r->mu);
    r->done = true;
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

static void complete(struct sv_request *r, int http_status, kiln_status st, const char *msg)
{
    stage(r, http_status, st, msg);
    deliver(r);
}

/* True when the peer of socket fd has closed the connection (or its sending side). */
static bool client_gone(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN | POLLRDHUP};
    if (poll(&p, 1, 0) <= 0) return false;
    if (p.revents & (POLLHUP | POLLERR | POLLNVAL | POLLRDHUP)) return true;
    char c;
    return (p.revents & POLLIN) && recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

/* Unlinks `r` (whose predecessor is prev, NULL for the head). Under s->mu. */
static void unlink_req(struct sv_sched *s, struct sv_request *prev, struct sv_request *r)
{
    sv_queue_unlink(&s->q, prev, r);
    r->phase = SV_REQ_FINISHED;
}

static const struct sv_queue_policy *policy_of(const struct sv_request *r)
{
    return r->policy ? r->policy : &r->model->cfg.queue;
}

/* The client of r went away: drop r from the queue, or stop its run when it runs alone. */
static void cancel(struct sv_request *r)
{
    struct sv_sched *s = &r->model->sched;
    pthread_mutex_lock(&s->mu);
    if (r->phase == SV_REQ_QUEUED) {
        struct sv_request *prev = NULL;
        for (struct sv_request *q = s->q.head; q && q != r; q = q->next) prev = q;
        unlink_req(s, prev, r);
        r->queue_ns = sv_now_ns() - r->enqueue_ns;
        complete(r, 503, KILN_E_CANCELLED, "cancelled: the client closed the connection while the request was queued");
    } else if (r->phase == SV_REQ_RUNNING && r->worker && r->worker->batch_n == 1) {
        /* The worker resets its run options when it picks a batch, under this lock, and
         * marks its requests finished under it too: this cancel reaches r's run only. */
        kiln_run_options_cancel(r->worker->ro);
    }
    pthread_mutex_unlock(&s->mu);
}

void sv_request_wait(struct sv_request *r)
{
    bool cancelled = false;
    pthread_mutex_lock(&r->mu);
    while (!r->done) {
        if (r->client_fd < 0 || cancelled) {
            pthread_cond_wait(&r->cv, &r->mu);
            continue;
        }
        /* Look at the connection every 20 ms. */
        uint64_t t = sv_now_ns() + 20000000u;
        struct timespec ts = {(time_t)(t / 1000000000u), (long)(t % 1000000000u)};
        pthread_cond_timedwait(&r->cv, &r->mu, &ts);
        if (!r->done && client_gone(r->client_fd)) {
            cancelled = true;
            pthread_mutex_unlock(&r->mu);
            cancel(r);
            pthread_mutex_lock(&r->mu);
        }
    }
    pthread_mutex_unlock(&r->mu);
}

bool sv_sched_submit(struct sv_request *r)
{
    struct sv_model *m = r->model;
    struct sv_sched *s = &m->sched;
    pthread_mutex_lock(&s->mu);
    if (s->stopping) {
        pthread_mutex_unlock(&s->mu);
        r->http_status = 503;
        r->unloading = true;
        snprintf(r->msg, sizeof r->msg, "model '%s' version %s is being unloaded", m->name, m->version_str);
        return false;
    }
    /* max_queue_size bounds each priority level's queue (one queue without levels). */
    int64_t max = policy_of(r)->max_queue_size;
    size_t queued = max > 0 ? (m->cfg.priority_levels ? sv_queue_level_count(&s->q, r->priority) : s->q.n) : 0;
    if (max > 0 && queued >= (size_t)max) {
        pthread_mutex_unlock(&s->mu);
        r->http_status = 503;
        if (m->cfg.priority_levels)
            snprintf(r->msg, sizeof r->msg,
                     "exceeds maximum queue size: model '%s' version %s has %zu requests queued at priority level "
                     "%llu (max_queue_size %lld)",
                     m->name, m->version_str, queued, (unsigned long long)r->priority, (long long)max);
        else
            snprintf(r->msg, sizeof r->msg,
                     "exceeds maximum queue size: model '%s' version %s has %zu requests queued (max_queue_size %lld)",
                     m->name, m->version_str, queued, (long long)max);
        return false;
    }
    r->enqueue_ns = sv_now_ns();
    r->delayed = false;
    sv_queue_push(&s->q, r);
    r->phase = SV_REQ_QUEUED;
    atomic_fetch_add(&m->stats.pending, 1);
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return true;
}

/* Applies the queue policy to the queued requests whose timeout has passed: rejected
 * (timeout_action REJECT) or moved behind the other requests of their level (DELAY; they
 * stay queued until they run). */
static void expire(struct sv_sched *s, uint64_t now)
{
    struct sv_request *prev = NULL, *r = s->q.head, *delayed = NULL;
    while (r) {
        struct sv_request *next = r->next;
        if (r->deadline_ns && now >= r->deadline_ns && !r->delayed && policy_of(r)->timeout_delay) {
            sv_queue_unlink(&s->q, prev, r);
            r->delayed = true;
            r->next = delayed; /* put back below, after this walk */
            delayed = r;
        } else if (r->deadline_ns && now >= r->deadline_ns && !r->delayed) {
            unlink_req(s, prev, r);
            char msg[160];
            snprintf(msg, sizeof msg, "request timeout expired: waited %.3f ms in the queue",
                     (double)(now - r->enqueue_ns) / 1e6);
            r->queue_ns = now - r->enqueue_ns;
            complete(r, 503, KILN_E_LIMIT, msg);
        } else {
            prev = r;
        }
        r = next;
    }
    /* Back in the order they had (the walk collected them reversed). */
    struct sv_request *rev = NULL;
    while (delayed) {
        struct sv_request *next = delayed->next;
        delayed->next = rev;
        rev = delayed;
        delayed = next;
    }
    while (rev) {
        struct sv_request *next = rev->next;
        sv_queue_push(&s->q, rev);
        rev = next;
    }
}

/* Requests a and b can share a batch: every input has the same dims past dim 0. */
static bool compatible(const struct sv_model *m, const struct sv_request *a, const struct sv_request *b)
{
    size_t n = kiln_model_input_count(m->m);
    for (size_t i = 0; i < n; i++) {
        const kiln_value *x = a->in[i].v, *y = b->in[i].v;
        int rank = kiln_value_rank(x);
        if (rank != kiln_value_rank(y) || rank < 1) return false;
        if (memcmp(kiln_value_dims(x) + 1, kiln_value_dims(y) + 1, (size_t)(rank - 1) * sizeof(int64_t)) != 0)
            return false;
    }
    return true;
}

/* Takes the next batch off the queue into w->batch (sv_batch_decide chooses it); returns
 * its request count, or 0 when the batcher should wait (until *wake_ns when that is not 0).
 * Under s->mu. */
static size_t pick(struct sv_sched *s, struct sv_worker *w, uint64_t now, uint64_t *wake_ns)
{
    const struct sv_config *c = &s->model->cfg;
    *wake_ns = 0;
    if (!s->q.head) return 0;
    /* The rows of the requests that may join the oldest one, until they overflow the batch. */
    size_t k = 0;
    int64_t sum = 0;
    bool more = false;
    for (struct sv_request *r = s->q.head; r && k < SV_MAX_BATCH_REQUESTS; r = r->next) {
        if (k && !compatible(s->model, s->q.head, r)) {
            more = true;
            break;
        }
        w->rows[k++] = r->batch;
        sum += r->batch;
        if (sum > c->max_batch_size) break;
    }
    uint64_t deadline = s->q.head->enqueue_ns + c->max_queue_delay_us * 1000;
    size_t n = sv_batch_decide(c, w->rows, k, more, now >= deadline, s->stopping);
    for (size_t i = 0; i < n; i++) {
        struct sv_request *r = s->q.head;
        unlink_req(s, NULL, r);
        r->order = s->next_order++;
        w->batch[i] = r;
    }
    if (!n) {
        /* Wake for the batch delay, or sooner for a queued request's timeout. */
        *wake_ns = deadline;
        for (struct sv_request *r = s->q.head; r; r = r->next)
            if (r->deadline_ns && !r->delayed && r->deadline_ns < *wake_ns) *wake_ns = r->deadline_ns;
    }
    return n;
}

static int http_status_of(kiln_status st)
{
    switch (st) {
    case KILN_E_INVALID_ARG:
    case KILN_E_UNSUPPORTED:
    case KILN_E_INVALID_MODEL:
    case KILN_E_LIMIT: return 400;
    case KILN_E_CANCELLED: return 503;
    default: return 500;
    }
}

/* Concatenates input i of the batch's requests along dim 0 into t. Strings are borrowed
 * (t's element pointers point into the requests' own tensors). */
static bool concat_input(struct sv_worker *w, size_t n, size_t i, int64_t rows, struct sv_tensor *t, char *err,
                         size_t err_size)
{
    const kiln_value *first = w->batch[0]->in[i].v;
    int rank = kiln_value_rank(first);
    int64_t dims[SV_MAX_RANK];
    memcpy(dims, kiln_value_dims(first), (size_t)rank * sizeof *dims);
    dims[0] = rows;
    kiln_dtype dt = kiln_value_dtype(first);
    if (!sv_tensor_create(w->model->in_names[i], dt, rank, dims, SIZE_MAX, t, err, err_size)) return false;
    size_t es = dt == KILN_DTYPE_STRING ? sizeof(char *) : sv_dtype_size(dt);
    unsigned char *dst = kiln_value_data(t->v);
    for (size_t k = 0; k < n; k++) {
        kiln_value *v = w->batch[k]->in[i].v;
        size_t bytes = kiln_value_numel(v) * es;
        if (bytes) memcpy(dst, kiln_value_data(v), bytes);
        dst += bytes;
    }
    return true;
}

/* Answers the finished batch w->batch[0..n) (outcomes staged). With preserve_ordering, a
 * request waits on the ready list until every request taken off the queue before it has
 * been answered, then goes out with the ready ones that follow it. */
static void deliver_batch(struct sv_worker *w, size_t n)
{
    struct sv_sched *s = &w->model->sched;
    if (!w->model->cfg.preserve_ordering) {
        for (size_t k = 0; k < n; k++) deliver(w->batch[k]);
        return;
    }
    pthread_mutex_lock(&s->mu);
    for (size_t k = 0; k < n; k++) sv_ready_add(&s->ready, w->batch[k]);
    struct sv_request *r;
    while ((r = sv_ready_take(&s->ready, s->next_deliver))) {
        s->next_deliver++;
        deliver(r);
    }
    pthread_mutex_unlock(&s->mu);
}

/* Runs the batch w->batch[0..n) and completes each request. */
static void run_batch(struct sv_worker *w, size_t n)
{
    struct sv_model *m = w->model;
    size_t n_in = kiln_model_input_count(m->m), n_out = kiln_model_output_count(m->m);
    bool batched = m->cfg.max_batch_size > 0;
    uint64_t start = sv_now_ns();
    int64_t rows = 0;
    uint64_t deadline = 0;
    for (size_t k = 0; k < n; k++) {
        rows += w->batch[k]->batch;
        w->batch[k]->queue_ns = start - w->batch[k]->enqueue_ns;
        uint64_t d = w->batch[k]->deadline_ns;
        if (d && (!deadline || d < deadline)) deadline = d;
    }
    char msg[1100] = "";
    int http = 500;
    kiln_status st = KILN_OK;
    struct sv_tensor *cat = calloc(n_in ? n_in : 1, sizeof *cat);
    const kiln_value **ins = calloc(n_in ? n_in : 1, sizeof *ins);
    struct sv_batch_result *res = calloc(1, sizeof *res);
    if (res) res->outs = calloc(n_out ? n_out : 1, sizeof *res->outs);
    if (!cat || !ins || !res || !res->outs) {
        st = KILN_E_NOMEM;
        snprintf(msg, sizeof msg, "out of memory forming a batch");
        goto done;
    }
    res->n_outs = n_out;
    for (size_t i = 0; i < n_in; i++) {
        if (n == 1) {
            ins[i] = w->batch[0]->in[i].v;
        } else if (!concat_input(w, n, i, rows, &cat[i], msg, sizeof msg)) {
            st = KILN_E_NOMEM;
            goto done;
        } else {
            ins[i] = cat[i].v;
        }
    }
    double timeout_s = 0;
    if (deadline) {
        uint64_t now = sv_now_ns();
        /* A request whose deadline has passed (timeout action DELAY) still runs, unbounded. */
        timeout_s = deadline > now ? (double)(deadline - now) / 1e9 : 0;
    }
    kiln_err ke = {0};
    if (kiln_run_options_set_timeout(w->ro, timeout_s, &ke) != KILN_OK) {
        st = ke.status;
        snprintf(msg, sizeof msg, "%s", ke.msg);
        goto done;
    }
    st = kiln_context_run(w->ctx, w->ro, n_in, m->in_names, ins, n_out, res->outs, &ke);
    if (st != KILN_OK) {
        /* A run stopped by a request's deadline is that request's timeout, not a bad request. */
        http = st == KILN_E_LIMIT && deadline ? 503 : http_status_of(st);
        snprintf(msg, sizeof msg, "%s", ke.msg);
        goto done;
    }
    for (size_t o = 0; batched && o < n_out; o++) {
        const kiln_value *v = res->outs[o];
        if (kiln_value_kind_of(v) != KILN_VALUE_TENSOR || kiln_value_rank(v) < 1 || kiln_value_dims(v)[0] != rows) {
            st = KILN_E_INVALID_MODEL;
            snprintf(msg, sizeof msg,
                     "output '%s' does not have the batch's %lld rows as its first dim: the model does not "
                     "batch along dim 0 (set max_batch_size 0)",
                     kiln_model_output_name(m->m, o), (long long)rows);
            goto done;
        }
    }
done:;
    uint64_t compute = sv_now_ns() - start;
    pthread_mutex_lock(&m->sched.mu);
    for (size_t k = 0; k < n; k++) w->batch[k]->phase = SV_REQ_FINISHED, w->batch[k]->worker = NULL;
    w->batch_n = 0;
    pthread_mutex_unlock(&m->sched.mu);
    for (size_t i = 0; cat && i < n_in; i++) sv_tensor_fini(&cat[i]);
    free(cat);
    free(ins);
    if (st == KILN_OK) {
        sv_stats_exec(&m->stats, rows);
        atomic_store(&res->refs, (int)n);
        int64_t row = 0;
        for (size_t k = 0; k < n; k++) {
            struct sv_request *r = w->batch[k];
            r->result = res;
            r->row0 = row;
            r->compute_ns = compute;
            row += r->batch;
            stage(r, 200, KILN_OK, NULL);
        }
    } else {
        if (res) {
            atomic_store(&res->refs, 1);
            sv_batch_result_unref(res);
        }
        for (size_t k = 0; k < n; k++) {
            w->batch[k]->compute_ns = compute;
            stage(w->batch[k], http, st, msg);
        }
    }
    deliver_batch(w, n);
}

static void *worker_main(void *arg)
{
    struct sv_worker *w = arg;
    struct sv_sched *s = &w->model->sched;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        size_t n = 0;
        for (;;) {
            uint64_t now = sv_now_ns(), wake = 0;
            expire(s, now);
            if (!s->q.head) {
                if (s->stopping) {
                    pthread_mutex_unlock(&s->mu);
                    return NULL;
                }
                pthread_cond_wait(&s->cv, &s->mu);
                continue;
            }
            n = pick(s, w, now, &wake);
            if (n) {
                for (size_t k = 0; k < n; k++) w->batch[k]->phase = SV_REQ_RUNNING, w->batch[k]->worker = w;
                w->batch_n = n;
                kiln_run_options_reset(w->ro); /* under the lock: see cancel() */
                break;
            }
            struct timespec ts = {(time_t)(wake / 1000000000u), (long)(wake % 1000000000u)};
            pthread_cond_timedwait(&s->cv, &s->mu, &ts);
        }
        pthread_mutex_unlock(&s->mu);
        run_batch(w, n);
    }
}

bool sv_sched_start(struct sv_model *m, char *err, size_t err_size)
{
    struct sv_sched *s = &m->sched;
    memset(s, 0, sizeof *s);
    s->model = m;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);
    m->sched_inited = true;
    m->sched_started = true;
    s->workers = calloc((size_t)m->cfg.instance_count, sizeof *s->workers);
    if (!s->workers) return snprintf(err, err_size, "out of memory"), false;
    for (int i = 0; i < m->cfg.instance_count; i++) {
        struct sv_worker *w = &s->workers[i];
        w->model = m;
        s->n_workers++;
        kiln_err ke = {0};
        if (kiln_context_create(m->engine, &w->ctx, &ke) != KILN_OK ||
            kiln_run_options_create(&w->ro, &ke) != KILN_OK)
            return snprintf(err, err_size, "instance %d: %s", i, ke.msg), false;
        int e = pthread_create(&w->thread, NULL, worker_main, w);
        if (e) return snprintf(err, err_size, "instance %d: cannot start a thread: %s", i, strerror(e)), false;
        w->started = true;
    }
    return true;
}

void sv_sched_abort(struct sv_model *m)
{
    struct sv_sched *s = &m->sched;
    if (!m->sched_started) return;
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    while (s->q.head) {
        struct sv_request *r = s->q.head;
        unlink_req(s, NULL, r);
        r->queue_ns = sv_now_ns() - r->enqueue_ns;
        complete(r, 503, KILN_E_CANCELLED, "cancelled: the server is shutting down and its exit timeout passed");
    }
    for (size_t i = 0; i < s->n_workers; i++)
        if (s->workers[i].batch_n) kiln_run_options_cancel(s->workers[i].ro);
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

void sv_sched_stop(struct sv_model *m)
{
    struct sv_sched *s = &m->sched;
    if (!m->sched_started) return;
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    for (size_t i = 0; i < s->n_workers; i++)
        if (s->workers[i].started) pthread_join(s->workers[i].thread, NULL);
    /* A version whose workers never started may still hold requests: fail them. */
    pthread_mutex_lock(&s->mu);
    while (s->q.head) {
        struct sv_request *r = s->q.head;
        unlink_req(s, NULL, r);
        complete(r, 503, KILN_E_CANCELLED, "the model was unloaded before the request ran");
    }
    struct sv_worker *workers = s->workers;
    size_t n = s->n_workers;
    s->workers = NULL;
    s->n_workers = 0;
    pthread_mutex_unlock(&s->mu);
    for (size_t i = 0; i < n; i++) {
        kiln_context_free(workers[i].ctx);
        kiln_run_options_free(workers[i].ro);
    }
    free(workers);
    m->sched_started = false;
    /* The lock and condition stay until the last reference goes (sv_sched_fini): a request
     * thread holding a reference may still try to submit, and is told the model unloads. */
}

void sv_sched_fini(struct sv_model *m)
{
    if (!m->sched_inited) return;
    pthread_cond_destroy(&m->sched.cv);
    pthread_mutex_destroy(&m->sched.mu);
    m->sched_inited = false;
}
