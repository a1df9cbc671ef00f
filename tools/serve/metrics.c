/* metrics.c: per-model-version statistics and their Prometheus text exposition
 * (prometheus.io/docs/instrumenting/exposition_formats, text format 0.0.4), with Triton's
 * metric names and labels (model, version) from docs/user_guide/metrics.md.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "serve.h"

void sv_stats_init(struct sv_stats *s)
{
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
    atomic_init(&s->pending, 0);
}

void sv_stats_fini(struct sv_stats *s) { pthread_mutex_destroy(&s->mu); }

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void sv_stats_request(struct sv_stats *s, bool ok, uint64_t request_ns, uint64_t queue_ns, uint64_t compute_ns)
{
    pthread_mutex_lock(&s->mu);
    if (ok) {
        s->success++;
        s->request_ns += request_ns;
        s->queue_ns += queue_ns;
        s->compute_ns += compute_ns;
    } else {
        s->failure++;
        s->fail_ns += request_ns;
    }
    s->last_inference_ms = wall_ms();
    pthread_mutex_unlock(&s->mu);
}

void sv_stats_exec(struct sv_stats *s, int64_t rows)
{
    pthread_mutex_lock(&s->mu);
    s->exec_count++;
    s->inference_count += (uint64_t)rows;
    pthread_mutex_unlock(&s->mu);
}

/* A growable text buffer; on out of memory it stays failed and the result is NULL. */
struct text {
    char *p;
    size_t n, cap;
    bool failed;
};

static void put(struct text *t, const char *fmt, ...)
{
    if (t->failed) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(t->p ? t->p + t->n : NULL, t->p ? t->cap - t->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0) {
            t->failed = true;
            return;
        }
        if (t->p && t->n + (size_t)k < t->cap) {
            t->n += (size_t)k;
            return;
        }
        size_t cap = t->cap ? t->cap * 2 : 4096;
        while (cap < t->n + (size_t)k + 1) cap *= 2;
        char *p = realloc(t->p, cap);
        if (!p) {
            t->failed = true;
            return;
        }
        t->p = p;
        t->cap = cap;
    }
}

struct snapshot {
    char *name;
    char version[24];
    uint64_t success, failure, inference_count, exec_count, request_ns, fail_ns, queue_ns, compute_ns;
    long pending;
};

struct collect {
    struct snapshot *s;
    size_t n, cap;
    bool failed;
};

static void collect_one(void *user, struct sv_model *m)
{
    struct collect *c = user;
    if (c->failed) return;
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 16;
        struct snapshot *s = realloc(c->s, cap * sizeof *s);
        if (!s) {
            c->failed = true;
            return;
        }
        c->s = s;
        c->cap = cap;
    }
    struct snapshot *s = &c->s[c->n];
    s->name = strdup(m->name);
    if (!s->name) {
        c->failed = true;
        return;
    }
    c->n++;
    snprintf(s->version, sizeof s->version, "%s", m->version_str);
    pthread_mutex_lock(&m->stats.mu);
    s->success = m->stats.success;
    s->failure = m->stats.failure;
    s->inference_count = m->stats.inference_count;
    s->exec_count = m->stats.exec_count;
    s->request_ns = m->stats.request_ns;
    s->fail_ns = m->stats.fail_ns;
    s->queue_ns = m->stats.queue_ns;
    s->compute_ns = m->stats.compute_ns;
    pthread_mutex_unlock(&m->stats.mu);
    s->pending = atomic_load(&m->stats.pending);
}

struct metric {
    const char *name, *type, *help;
    int which;
};

static uint64_t metric_value(const struct snapshot *s, int which)
{
    switch (which) {
    case 0: return s->success;
    case 1: return s->failure;
    case 2: return s->inference_count;
    case 3: return s->exec_count;
    case 4: return s->request_ns / 1000; /* successful requests, as Triton */
    case 5: return s->queue_ns / 1000;
    case 6: return s->compute_ns / 1000;
    default: return s->pending > 0 ? (uint64_t)s->pending : 0;
    }
}

char *sv_metrics_text(struct sv_repo *r)
{
    static const struct metric metrics[] = {
        {"nv_inference_request_success", "counter", "Number of successful inference requests, all batch sizes", 0},
        {"nv_inference_request_failure", "counter", "Number of failed inference requests, all batch sizes", 1},
        {"nv_inference_count", "counter", "Number of inferences performed (does not include cached requests)", 2},
        {"nv_inference_exec_count", "counter", "Number of model executions performed (does not include cached "
         "requests)", 3},
        {"nv_inference_request_duration_us", "counter", "Cumulative inference request duration in microseconds "
         "(includes cached requests)", 4},
        {"nv_inference_queue_duration_us", "counter", "Cumulative inference queuing duration in microseconds "
         "(includes cached requests)", 5},
        {"nv_inference_compute_infer_duration_us", "counter", "Cumulative compute inference duration in "
         "microseconds (does not include cached requests)", 6},
        {"nv_inference_pending_request_count", "gauge", "Instantaneous number of pending requests awaiting "
         "execution per-model.", 7},
    };
    struct collect c = {0};
    sv_repo_each(r, collect_one, &c);
    struct text t = {0};
    for (size_t k = 0; k < sizeof metrics / sizeof metrics[0]; k++) {
        put(&t, "# HELP %s %s\n# TYPE %s %s\n", metrics[k].name, metrics[k].help, metrics[k].name, metrics[k].type);
        /* Model names are restricted to [A-Za-z0-9._-] (sv_model_name_ok): no label escaping needed. */
        for (size_t i = 0; i < c.n; i++)
            put(&t, "%s{model=\"%s\",version=\"%s\"} %llu\n", metrics[k].name, c.s[i].name, c.s[i].version,
                (unsigned long long)metric_value(&c.s[i], metrics[k].which));
    }
    for (size_t i = 0; i < c.n; i++) free(c.s[i].name);
    free(c.s);
    if (t.failed || c.failed) {
        free(t.p);
        return NULL;
    }
    if (!t.p) put(&t, "%s", "");
    return t.p;
}
