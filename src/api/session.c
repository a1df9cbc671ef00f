/* session.c: kiln_session_* (kiln.h): an engine built without optimization on the caller's
 * model, and its contexts.
 *
 * A context runs one thing at a time, but a session may be run from several threads at once
 * (kiln.h: the profiler and the run options are shared by concurrent runs). A run takes the
 * session's first context, whose pool has the session's threads; a run that finds it busy
 * takes an idle extra context, or makes one, and gives it back afterwards for the next
 * concurrent run. Extra contexts run on their caller's thread alone (no pool), as a second
 * thread on a session always has: threads per session stay what options.threads says. */
#include <pthread.h>
#include <string.h>

#include "base/pool.h"
#include "exec/engine.h"
#include "ops/schema.h"

struct kiln_session {
    struct kiln_engine *e;
    struct kiln_context *c;   /* the first context */
    pthread_mutex_t mu;       /* guards what follows */
    bool c_busy;              /* a run is using c */
    struct kiln_context **idle; /* extra contexts not in use */
    size_t n_idle, n_extra;   /* idle has room for n_extra */
};

int kiln_session_threads(const kiln_session *s)
{
    return s ? kiln_engine_threads(s->e) : 0;
}

void kiln_session_free(kiln_session *s)
{
    if (!s) return;
    kiln_context_delete(s->c);
    for (size_t i = 0; i < s->n_idle; i++) kiln_context_delete(s->idle[i]);
    kiln_free(s->idle);
    pthread_mutex_destroy(&s->mu);
    kiln_engine_release(s->e);
    kiln_free(s);
}

/* A context for one run: the first one when it is free, else an idle extra one, else a new
 * extra one. */
static kiln_status session_take(struct kiln_session *s, struct kiln_context **out, kiln_err *err)
{
    pthread_mutex_lock(&s->mu);
    if (!s->c_busy) {
        s->c_busy = true;
        *out = s->c;
    } else if (s->n_idle) {
        *out = s->idle[--s->n_idle];
    } else {
        *out = NULL;
    }
    if (*out) {
        pthread_mutex_unlock(&s->mu);
        return KILN_OK;
    }
    /* Room for it in `idle` first (reserved under the lock), so that giving it back cannot
     * fail. */
    struct kiln_context **idle = kiln_realloc(s->idle, (s->n_extra + 1) * sizeof *idle);
    if (idle) {
        s->idle = idle;
        s->n_extra++;
    }
    pthread_mutex_unlock(&s->mu);
    if (!idle) return kiln_err_set(err, KILN_E_NOMEM, "out of memory for a second context on the session");
    kiln_status st = kiln_context_new(s->e, out, err);
    if (st) {
        pthread_mutex_lock(&s->mu);
        s->n_extra--;
        pthread_mutex_unlock(&s->mu);
        return st;
    }
    kiln_pool_free((*out)->pool);
    (*out)->pool = NULL;
    /* Its runs count in the session's profile (the profile has its own lock). */
    (*out)->prof = s->c->prof;
    (*out)->prof_borrowed = true;
    return KILN_OK;
}

static void session_give(struct kiln_session *s, struct kiln_context *c)
{
    pthread_mutex_lock(&s->mu);
    if (c == s->c) s->c_busy = false;
    else s->idle[s->n_idle++] = c;
    pthread_mutex_unlock(&s->mu);
}

kiln_status kiln_session_create(const kiln_model *m, const kiln_session_options *opt, kiln_session **out,
                                kiln_err *err)
{
    *out = NULL;
    if (!m || !m->graph) return kiln_err_set(err, KILN_E_INVALID_ARG, "session: model has no graph");
    if (m->n_link_errors)
        return kiln_err_set(err, KILN_E_INVALID_MODEL, "%s%s", m->link_problems[0],
                            m->n_link_errors > 1 ? " (and more: run `kiln check`)" : "");
    /* The loader already refuses these; kept here for models changed through the API. */
    for (size_t i = 0; i < m->n_opsets; i++)
        KILN_TRY(kiln_schema_check_import("session: model", m->opsets[i].domain, m->opsets[i].version, err));
    int threads = opt ? opt->threads : 0;
    if (threads < 0 || threads > 1024)
        return kiln_err_set(err, KILN_E_INVALID_ARG, "session: threads is %d; expected 0 (one per CPU) to 1024",
                            threads);
    if (opt && opt->max_depth < 0)
        return kiln_err_set(err, KILN_E_INVALID_ARG, "session: max_depth is %d; expected 0 (64) or more",
                            opt->max_depth);
    struct kiln_session *s = kiln_calloc(1, sizeof *s);
    if (!s) return kiln_err_set(err, KILN_E_NOMEM, "out of memory creating the session");
    pthread_mutex_init(&s->mu, NULL);
    /* The session borrows m: shape inference writes its results into m (documented). */
    kiln_status st = kiln_engine_new((struct kiln_model *)m, false, threads, &s->e, err);
    if (!st) {
        if (opt) s->e->limits = (struct kiln_limits){opt->max_tensor_bytes, opt->max_memory_bytes, opt->max_depth};
        st = kiln_engine_finish(NULL, s->e, err);
    }
    if (!st) st = kiln_context_new(s->e, &s->c, err);
    if (!st && opt && opt->profile) st = kiln_context_profile_on(s->c, err);
    if (st) {
        kiln_session_free(s);
        return st;
    }
    *out = s;
    return KILN_OK;
}

kiln_status kiln_session_create_from_engine(kiln_engine *e, const kiln_session_options *opt, kiln_session **out,
                                            kiln_err *err)
{
    if (!out) return kiln_err_set(err, KILN_E_INVALID_ARG, "session: no output pointer");
    *out = NULL;
    if (!e) return kiln_err_set(err, KILN_E_INVALID_ARG, "session: no engine");
    struct kiln_session *s = kiln_calloc(1, sizeof *s);
    if (!s) return kiln_err_set(err, KILN_E_NOMEM, "out of memory creating the session");
    kiln_engine_retain(e);
    s->e = e;
    kiln_status st = KILN_OK;
    if (opt && opt->threads && opt->threads != kiln_engine_threads(e))
        st = kiln_err_set(err, KILN_E_INVALID_ARG,
                          "session: the engine was built for %d threads; %d asked (rebuild it with that many)",
                          kiln_engine_threads(e), opt->threads);
    if (!st) st = kiln_context_new(e, &s->c, err);
    if (!st && opt && opt->profile) st = kiln_context_profile_on(s->c, err);
    if (st) {
        kiln_session_free(s);
        return st;
    }
    *out = s;
    return KILN_OK;
}

const kiln_model *kiln_session_model(const kiln_session *s)
{
    return s ? s->e->model : NULL;
}

kiln_status kiln_session_run(kiln_session *s, size_t n_in, const char *const *names, const kiln_value *const *inputs,
                             size_t n_out, kiln_value **outputs, kiln_err *err)
{
    return kiln_session_run_with_options(s, NULL, n_in, names, inputs, n_out, outputs, err);
}

kiln_status kiln_session_run_with_options(kiln_session *s, const kiln_run_options *ro, size_t n_in,
                                          const char *const *names, const kiln_value *const *inputs, size_t n_out,
                                          kiln_value **outputs, kiln_err *err)
{
    if (!s) return kiln_err_set(err, KILN_E_INVALID_ARG, "run: no session");
    struct kiln_context *c;
    kiln_status st = session_take(s, &c, err);
    if (st) {
        for (size_t i = 0; outputs && i < n_out; i++) outputs[i] = NULL;
        return st;
    }
    st = kiln_context_run_graph(c, ro, n_in, names, inputs, n_out, outputs, err);
    session_give(s, c);
    return st;
}

struct kiln_prof *kiln_session_prof(const kiln_session *s); /* for exec/profile.c */
struct kiln_prof *kiln_session_prof(const kiln_session *s)
{
    return s->c->prof;
}
