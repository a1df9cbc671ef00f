/* session.c: kiln_session_* (kiln.h): an engine built without optimization on the caller's
 * model, and one context. */
#include <string.h>

#include "exec/engine.h"
#include "ops/schema.h"

struct kiln_session {
    struct kiln_engine *e;
    struct kiln_context *c;
};

int kiln_session_threads(const kiln_session *s)
{
    return s ? kiln_engine_threads(s->e) : 0;
}

void kiln_session_free(kiln_session *s)
{
    if (!s) return;
    kiln_context_delete(s->c);
    kiln_engine_release(s->e);
    kiln_free(s);
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
    return kiln_context_run_graph(s->c, ro, n_in, names, inputs, n_out, outputs, err);
}

struct kiln_prof *kiln_session_prof(const kiln_session *s); /* for exec/profile.c */
struct kiln_prof *kiln_session_prof(const kiln_session *s)
{
    return s->c->prof;
}
