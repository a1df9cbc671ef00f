/* profile.c: per-node times, output shapes and a Chrome trace for profiled sessions.
 *
 * One entry per node of every graph, registered at session creation. kiln_prof_run reads
 * CLOCK_MONOTONIC around the kernel call, adds the span to the entry, keeps the shapes of
 * the outputs of this call and appends one trace event (up to MAX_EVENTS). Sessions without
 * options.profile never get here: the executor tests one pointer per node. A mutex guards
 * the entries and events, as two threads may run one session at the same time.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "exec/profile.h"

#define MAX_EVENTS ((size_t)1 << 22)

struct entry {
    char *name, *kernel;
    const char *op_type; /* borrowed from the model */
    char *shapes;        /* owned, replaced at each call */
    uint64_t total_ns, calls;
    int depth;
};

struct event {
    uint64_t start_ns, dur_ns;
    size_t entry;
};

struct kiln_prof {
    pthread_mutex_t mu; /* guards the times, shapes and events */
    struct entry *e;
    size_t n, cap;
    struct event *ev;
    size_t n_ev, cap_ev;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

struct kiln_prof *kiln_prof_create(void)
{
    struct kiln_prof *p = kiln_calloc(1, sizeof *p);
    if (p) pthread_mutex_init(&p->mu, NULL);
    return p;
}

void kiln_prof_free(struct kiln_prof *p)
{
    if (!p) return;
    for (size_t i = 0; i < p->n; i++) {
        kiln_free(p->e[i].name);
        kiln_free(p->e[i].kernel);
        kiln_free(p->e[i].shapes);
    }
    kiln_free(p->e);
    kiln_free(p->ev);
    pthread_mutex_destroy(&p->mu);
    kiln_free(p);
}

static char *format(const char *fmt, ...) KILN_PRINTF(1, 2);
static char *format(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (len < 0) return NULL;
    char *s = kiln_malloc((size_t)len + 1);
    if (!s) return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)len + 1, fmt, ap);
    va_end(ap);
    return s;
}

kiln_status kiln_prof_add(struct kiln_prof *p, const char *prefix, int depth, const struct kiln_node *n,
                          size_t node_index, const struct kiln_cpu_op *op, const char *backend,
                          const char *variant, size_t *index, kiln_err *err)
{
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 64;
        struct entry *e = kiln_realloc(p->e, cap * sizeof *e);
        if (!e) return kiln_err_set(err, KILN_E_NOMEM, "out of memory creating the session's profile");
        p->e = e;
        p->cap = cap;
    }
    struct entry *e = &p->e[p->n];
    memset(e, 0, sizeof *e);
    const char *sep = prefix[0] ? "/" : "";
    e->name = n->name[0] ? format("%s%s%s", prefix, sep, n->name)
                         : format("%s%s%s#%zu", prefix, sep, n->op_type, node_index);
    char ver[48];
    if (op->until) snprintf(ver, sizeof ver, "v%d-%d", op->since, op->until);
    else snprintf(ver, sizeof ver, "v%d+", op->since);
    e->kernel = variant ? format("%s:%s %s (%s)", backend, op->name, ver, variant)
                        : format("%s:%s %s", backend, op->name, ver);
    e->shapes = kiln_strdup("");
    e->op_type = n->op_type;
    e->depth = depth;
    if (!e->name || !e->kernel || !e->shapes) {
        kiln_free(e->name);
        kiln_free(e->kernel);
        kiln_free(e->shapes);
        return kiln_err_set(err, KILN_E_NOMEM, "out of memory creating the session's profile");
    }
    *index = p->n++;
    return KILN_OK;
}

const char *kiln_prof_name(const struct kiln_prof *p, size_t i)
{
    return p->e[i].name;
}

/* "float32[1,8]; int64[2]" for the outputs of k (a non-tensor output is its kind). */
static void record_shapes(struct entry *e, const struct kiln_kctx *k)
{
    char buf[1024], dims[256];
    size_t o = 0;
    buf[0] = 0;
    for (size_t j = 0; j < k->n_out && o < sizeof buf; j++) {
        const struct kiln_value *v = k->out[j];
        const char *sep = j ? "; " : "";
        if (!v) o += (size_t)snprintf(buf + o, sizeof buf - o, "%s-", sep);
        else if (v->kind != KILN_VALUE_TENSOR)
            o += (size_t)snprintf(buf + o, sizeof buf - o, "%s%s", sep,
                                  v->kind == KILN_VALUE_SEQUENCE ? "sequence" : "optional");
        else
            o += (size_t)snprintf(buf + o, sizeof buf - o, "%s%s%s", sep, kiln_dtype_name(v->t.dtype),
                                  kiln_shape_str(v->t.rank, v->t.dims, dims, sizeof dims));
    }
    if (strcmp(buf, e->shapes) == 0) return;
    char *s = kiln_strdup(buf);
    if (!s) return; /* out of memory: keep the previous shapes */
    kiln_free(e->shapes);
    e->shapes = s;
}

kiln_status kiln_prof_run(struct kiln_prof *p, size_t i, const struct kiln_cpu_op *op, struct kiln_kctx *k)
{
    uint64_t t0 = now_ns();
    kiln_status st = op->run(k);
    uint64_t dur = now_ns() - t0;
    pthread_mutex_lock(&p->mu);
    struct entry *e = &p->e[i];
    e->total_ns += dur;
    e->calls++;
    if (st == KILN_OK) record_shapes(e, k);
    if (p->n_ev == p->cap_ev && p->cap_ev < MAX_EVENTS) {
        size_t cap = p->cap_ev ? p->cap_ev * 2 : 1024;
        struct event *ev = kiln_realloc(p->ev, cap * sizeof *ev);
        if (ev) p->ev = ev, p->cap_ev = cap;
    }
    if (p->n_ev < p->cap_ev) p->ev[p->n_ev++] = (struct event){t0, dur, i};
    pthread_mutex_unlock(&p->mu);
    return st;
}

/* ------------------------------------------------------------------ public API */

struct kiln_prof *kiln_session_prof(const kiln_session *s); /* exec.c */

size_t kiln_session_profile_count(const kiln_session *s)
{
    struct kiln_prof *p = s ? kiln_session_prof(s) : NULL;
    return p ? p->n : 0;
}

kiln_status kiln_session_profile_entry(const kiln_session *s, size_t i, kiln_profile_entry *out, kiln_err *err)
{
    size_t n = kiln_session_profile_count(s);
    if (i >= n)
        return kiln_err_set(err, KILN_E_INVALID_ARG, "profile entry %zu: the session has %zu%s", i, n,
                            s && kiln_session_prof(s) ? " entries" : " (profiling is off)");
    struct kiln_prof *p = kiln_session_prof(s);
    pthread_mutex_lock(&p->mu);
    const struct entry *e = &p->e[i];
    *out = (kiln_profile_entry){.name = e->name, .op_type = e->op_type, .kernel = e->kernel,
                                .shapes = e->shapes, .total_ns = e->total_ns, .calls = e->calls,
                                .depth = e->depth};
    pthread_mutex_unlock(&p->mu);
    return KILN_OK;
}

void kiln_session_profile_reset(kiln_session *s)
{
    struct kiln_prof *p = s ? kiln_session_prof(s) : NULL;
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    for (size_t i = 0; i < p->n; i++) p->e[i].total_ns = p->e[i].calls = 0;
    p->n_ev = 0;
    pthread_mutex_unlock(&p->mu);
}

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

kiln_status kiln_session_profile_write_trace(const kiln_session *s, const char *path, kiln_err *err)
{
    struct kiln_prof *p = s ? kiln_session_prof(s) : NULL;
    if (!p) return kiln_err_set(err, KILN_E_INVALID_ARG, "write trace: the session was created without profiling");
    FILE *f = fopen(path, "w");
    if (!f) return kiln_err_set(err, KILN_E_IO, "%s: cannot open for writing", path);
    pthread_mutex_lock(&p->mu);
    uint64_t base = p->n_ev ? p->ev[0].start_ns : 0;
    for (size_t i = 1; i < p->n_ev; i++) base = p->ev[i].start_ns < base ? p->ev[i].start_ns : base;
    fputs("[\n", f);
    for (size_t i = 0; i < p->n_ev; i++) {
        const struct event *ev = &p->ev[i];
        const struct entry *e = &p->e[ev->entry];
        /* Events are appended as nodes finish: a subgraph node precedes its parent, which
         * started earlier. */
        uint64_t start = ev->start_ns - base;
        fprintf(f, "%s{\"ph\":\"X\",\"pid\":1,\"tid\":1,\"ts\":%.3f,\"dur\":%.3f,\"name\":", i ? ",\n" : "",
                (double)start / 1e3, (double)ev->dur_ns / 1e3);
        json_str(f, e->name);
        fputs(",\"cat\":", f);
        json_str(f, e->op_type);
        fputs(",\"args\":{\"shapes\":", f);
        json_str(f, e->shapes);
        fputs(",\"kernel\":", f);
        json_str(f, e->kernel);
        fputs("}}", f);
    }
    fputs("\n]\n", f);
    pthread_mutex_unlock(&p->mu);
    bool bad = ferror(f) != 0;
    if (fclose(f) != 0) bad = true;
    if (bad) return kiln_err_set(err, KILN_E_IO, "%s: write failed", path);
    return KILN_OK;
}
