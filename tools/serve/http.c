/* http.c: KServe v2 REST endpoints (kserve "Open Inference Protocol", HTTP/REST) and
 * Triton's HTTP extensions (model repository, statistics, model configuration), over
 * libmicrohttpd (HTTP/1.1, RFC 9112). Routes:
 *
 *   GET  /v2/health/live, /v2/health/ready, /v2
 *   GET  /v2/models/NAME[/versions/V]            metadata
 *   GET  /v2/models/NAME[/versions/V]/ready      200 ready, 404 unknown, 503 not loaded
 *   POST /v2/models/NAME[/versions/V]/infer
 *   GET  /v2/models/NAME[/versions/V]/config
 *   GET  /v2/models[/NAME[/versions/V]]/stats
 *   POST /v2/repository/index
 *   POST /v2/repository/models/NAME/load, .../unload   (--model-control-mode explicit)
 *   GET  /metrics                                 (on the metrics port)
 *
 * Errors are {"error": "..."} with Triton's codes: 400 bad request, 404 unknown model or
 * path, 405 wrong method, 413 body over --max-request-bytes, 415 a compressed body, 503 not
 * ready / queue full / shutting down, 500 a failure of kiln serve itself.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "http.h"
#include "infer.h"

#define MAX_PARTS 8

/* Per-request state across the handler's calls (the body arrives in pieces). */
struct conn {
    char *body;
    size_t len, cap;
    bool too_big;
};

static enum MHD_Result send_response(struct MHD_Connection *c, struct sv_response *resp)
{
    const char *type = resp->json_len ? "application/octet-stream" : "application/json";
    struct MHD_Response *r = MHD_create_response_from_buffer_with_free_callback(resp->len, resp->body, free);
    if (!r) {
        free(resp->body);
        resp->body = NULL;
        return MHD_NO;
    }
    resp->body = NULL; /* owned by the response now */
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    if (resp->json_len) {
        char hl[32];
        snprintf(hl, sizeof hl, "%zu", resp->json_len);
        MHD_add_response_header(r, "Inference-Header-Content-Length", hl);
    }
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)resp->status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result send_empty(struct MHD_Connection *c, unsigned status)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    if (!r) return MHD_NO;
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

/* ------------------------------------------------------------------ statistics JSON */

struct stats_collect {
    json_t *list;
    const char *name; /* NULL: every model */
    int64_t version;
};

static json_t *duration(uint64_t count, uint64_t ns)
{
    return json_pack("{s:I,s:I}", "count", (json_int_t)count, "ns", (json_int_t)ns);
}

static void stats_one(void *user, struct sv_model *m)
{
    struct stats_collect *sc = user;
    if (sc->name && strcmp(sc->name, m->name) != 0) return;
    if (sc->version && sc->version != m->version) return;
    struct sv_stats *s = &m->stats;
    pthread_mutex_lock(&s->mu);
    json_t *o = json_pack("{s:s,s:s,s:I,s:I,s:I,s:{s:o,s:o,s:o,s:o,s:o,s:o},s:[]}", "name", m->name, "version",
                          m->version_str, "last_inference", (json_int_t)s->last_inference_ms, "inference_count",
                          (json_int_t)s->inference_count, "execution_count", (json_int_t)s->exec_count,
                          "inference_stats", "success", duration(s->success, s->request_ns), "fail",
                          duration(s->failure, s->fail_ns), "queue", duration(s->success, s->queue_ns),
                          "compute_input", duration(s->success, 0), "compute_infer",
                          duration(s->success, s->compute_ns), "compute_output", duration(s->success, 0),
                          "batch_stats");
    pthread_mutex_unlock(&s->mu);
    if (o) json_array_append_new(sc->list, o);
}

/* ------------------------------------------------------------------ routes */

struct route {
    const char *method;
    const char *parts[MAX_PARTS];
    int n;
    const char *body;
    size_t len;
    struct MHD_Connection *c;
};

static bool parse_version(const char *s, int64_t *v)
{
    size_t n = strlen(s);
    if (n == 0 || n > 18 || strspn(s, "0123456789") != n || s[0] == '0') return false;
    *v = strtoll(s, NULL, 10);
    return true;
}

static void server_metadata(struct sv_response *resp)
{
    json_t *o = json_pack("{s:s,s:s,s:[s,s,s,s,s]}", "name", "kiln", "version", kiln_version(), "extensions",
                          "classification", "binary_tensor_data", "model_repository", "statistics",
                          "model_configuration");
    sv_response_json(resp, o ? json_dumps(o, JSON_COMPACT) : NULL);
    json_decref(o);
}

static bool method_is(const struct route *rt, const char *m, struct sv_response *resp)
{
    if (strcmp(rt->method, m) == 0) return true;
    sv_response_error(resp, 405, "%s is not allowed here; use %s", rt->method, m);
    return false;
}

/* The versions of `name` now loaded, as strings, for the metadata. */
struct versions {
    const char *name;
    char text[64][24];
    const char *ptr[64];
    size_t n;
};

static void collect_version(void *user, struct sv_model *m)
{
    struct versions *v = user;
    if (strcmp(v->name, m->name) != 0 || v->n == 64) return;
    snprintf(v->text[v->n], sizeof v->text[0], "%s", m->version_str);
    v->ptr[v->n] = v->text[v->n];
    v->n++;
}

static void model_route(struct sv_http *h, struct route *rt, struct sv_response *resp)
{
    const char *name = rt->parts[2];
    int k = 3;
    int64_t version = 0;
    if (rt->n > k && strcmp(rt->parts[k], "versions") == 0) {
        if (rt->n < k + 2 || !parse_version(rt->parts[k + 1], &version))
            return sv_response_error(resp, 400, "a version is a positive integer: /v2/models/NAME/versions/N");
        k += 2;
    }
    const char *action = rt->n > k ? rt->parts[k] : "";
    if (rt->n > k + 1) return sv_response_error(resp, 404, "no such endpoint");
    if (!sv_model_name_ok(name)) return sv_response_error(resp, 400, "'%s' is not a valid model name", name);
    if (strcmp(action, "stats") == 0) {
        if (!method_is(rt, "GET", resp)) return;
        struct stats_collect sc = {json_array(), name, version};
        sv_repo_each(h->repo, stats_one, &sc);
        json_t *o = json_pack("{s:o}", "model_stats", sc.list);
        sv_response_json(resp, o ? json_dumps(o, JSON_COMPACT) : NULL);
        json_decref(o);
        return;
    }
    bool known;
    struct sv_model *m = sv_repo_get(h->repo, name, version, &known);
    if (!m) {
        if (!known) return sv_response_error(resp, 404, "Request for unknown model: '%s' is not found", name);
        if (version) return sv_response_error(resp, 404, "Request for unknown model: '%s' version %lld is not found",
                                              name, (long long)version);
        return sv_response_error(resp, 503, "model '%s' is not ready (not loaded, unloaded, or failed to load; see "
                                 "POST /v2/repository/index)", name);
    }
    if (strcmp(action, "") == 0) {
        if (method_is(rt, "GET", resp)) {
            struct versions v = {.name = name};
            sv_repo_each(h->repo, collect_version, &v);
            sv_response_json(resp, sv_model_metadata_json(m, v.ptr, v.n));
        }
    } else if (strcmp(action, "ready") == 0) {
        if (method_is(rt, "GET", resp)) {
            resp->status = 200;
            resp->body = strdup("");
            resp->len = 0;
        }
    } else if (strcmp(action, "config") == 0) {
        if (method_is(rt, "GET", resp)) sv_response_json(resp, sv_model_config_json(m));
    } else if (strcmp(action, "infer") == 0) {
        if (method_is(rt, "POST", resp)) {
            if (atomic_load(&h->stopping)) sv_response_error(resp, 503, "the server is shutting down");
            else {
                const char *hl = MHD_lookup_connection_value(rt->c, MHD_HEADER_KIND, "Inference-Header-Content-Length");
                const char *ce = MHD_lookup_connection_value(rt->c, MHD_HEADER_KIND, "Content-Encoding");
                if (ce && strcasecmp(ce, "identity") != 0) {
                    sv_response_error(resp, 415, "Content-Encoding '%s' is not supported by kiln serve yet; send the "
                                      "body uncompressed", ce);
                    sv_model_unref(m);
                    return;
                }
                long long header_len = -1;
                if (hl) {
                    char *end;
                    header_len = strtoll(hl, &end, 10);
                    if (!*hl || *end || header_len < 0) {
                        sv_response_error(resp, 400, "Inference-Header-Content-Length '%s' is not a byte count", hl);
                        sv_model_unref(m);
                        return;
                    }
                    if (header_len == 0) header_len = -1; /* as Triton: 0 means the whole body is JSON */
                }
                /* A reload swaps versions while requests arrive: a request that found the
                 * old version just as it stopped taking work goes to the new one. */
                const union MHD_ConnectionInfo *ci =
                    MHD_get_connection_info(rt->c, MHD_CONNECTION_INFO_CONNECTION_FD);
                int fd = ci ? (int)ci->connect_fd : -1;
                for (int attempt = 0; m && attempt < 3; attempt++) {
                    if (sv_infer(h->opt, m, rt->body ? rt->body : "", rt->len, header_len, fd, resp)) break;
                    sv_model_unref(m);
                    bool known;
                    m = sv_repo_get(h->repo, name, version, &known);
                }
            }
        }
    } else {
        sv_response_error(resp, 404, "no such endpoint: '%s'", action);
    }
    sv_model_unref(m);
}

static void repository_route(struct sv_http *h, struct route *rt, struct sv_response *resp)
{
    if (rt->n == 3 && strcmp(rt->parts[2], "index") == 0) {
        if (method_is(rt, "POST", resp)) sv_response_json(resp, sv_repo_index_json(h->repo));
        return;
    }
    if (rt->n != 5 || strcmp(rt->parts[2], "models") != 0) return sv_response_error(resp, 404, "no such endpoint");
    const char *name = rt->parts[3], *action = rt->parts[4];
    bool load = strcmp(action, "load") == 0;
    if (!load && strcmp(action, "unload") != 0) return sv_response_error(resp, 404, "no such endpoint: '%s'", action);
    if (!method_is(rt, "POST", resp)) return;
    if (h->opt->control != SV_CONTROL_EXPLICIT)
        return sv_response_error(resp, 400, "explicit model load / unload is not allowed: start kiln serve with "
                                 "--model-control-mode explicit");
    if (!sv_model_name_ok(name)) return sv_response_error(resp, 400, "'%s' is not a valid model name", name);
    char err[1024];
    bool ok = load ? sv_repo_load(h->repo, name, err, sizeof err) : sv_repo_unload(h->repo, name, err, sizeof err);
    if (!ok) return sv_response_error(resp, load ? 400 : 404, "%s", err);
    resp->status = 200;
    resp->body = strdup("");
    resp->len = 0;
}

static void route(struct sv_http *h, struct route *rt, struct sv_response *resp)
{
    if (rt->n == 0 || strcmp(rt->parts[0], "v2") != 0) return sv_response_error(resp, 404, "no such endpoint");
    if (rt->n == 1) {
        if (method_is(rt, "GET", resp)) server_metadata(resp);
        return;
    }
    const char *p1 = rt->parts[1];
    if (strcmp(p1, "health") == 0 && rt->n == 3) {
        if (!method_is(rt, "GET", resp)) return;
        bool live = strcmp(rt->parts[2], "live") == 0, ready = strcmp(rt->parts[2], "ready") == 0;
        if (!live && !ready) return sv_response_error(resp, 404, "no such endpoint");
        resp->status = live || (atomic_load(&h->ready) && !atomic_load(&h->stopping)) ? 200 : 503;
        resp->body = strdup("");
        resp->len = 0;
        return;
    }
    if (strcmp(p1, "models") == 0 && rt->n == 3 && strcmp(rt->parts[2], "stats") == 0) {
        if (!method_is(rt, "GET", resp)) return;
        struct stats_collect sc = {json_array(), NULL, 0};
        sv_repo_each(h->repo, stats_one, &sc);
        json_t *o = json_pack("{s:o}", "model_stats", sc.list);
        sv_response_json(resp, o ? json_dumps(o, JSON_COMPACT) : NULL);
        json_decref(o);
        return;
    }
    if (strcmp(p1, "models") == 0 && rt->n >= 3) return model_route(h, rt, resp);
    if (strcmp(p1, "repository") == 0) return repository_route(h, rt, resp);
    sv_response_error(resp, 404, "no such endpoint");
}

/* Splits url (MHD has already decoded %XX) into its '/'-separated parts, in buf. */
static bool split_url(const char *url, char *buf, size_t size, struct route *rt)
{
    size_t n = strlen(url);
    if (n >= size) return false;
    memcpy(buf, url, n + 1);
    char *q = strchr(buf, '?');
    if (q) *q = 0;
    rt->n = 0;
    for (char *p = buf; *p;) {
        while (*p == '/') p++;
        if (!*p) break;
        if (rt->n == MAX_PARTS) return false;
        rt->parts[rt->n++] = p;
        while (*p && *p != '/') p++;
        if (*p) *p++ = 0;
    }
    return true;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
    (void)version;
    struct sv_http *h = cls;
    struct conn *st = *con_cls;
    if (!st) {
        st = calloc(1, sizeof *st);
        if (!st) return MHD_NO;
        *con_cls = st;
        atomic_fetch_add(&h->in_flight, 1);
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl) { /* libmicrohttpd has validated the header; a value over the limit ends here */
            char *end;
            errno = 0;
            unsigned long long n = strtoull(cl, &end, 10);
            if (end != cl && (errno == ERANGE || n > h->opt->max_body_bytes)) st->too_big = true;
        }
        if (st->too_big) {
            struct sv_response resp = {0};
            sv_response_error(&resp, 413, "the request body exceeds %zu bytes (--max-request-bytes)",
                              h->opt->max_body_bytes);
            return send_response(c, &resp);
        }
        return MHD_YES;
    }
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (st->too_big) return MHD_YES;
        if (n > h->opt->max_body_bytes - st->len) {
            st->too_big = true;
            free(st->body);
            st->body = NULL;
            st->len = st->cap = 0;
            return MHD_YES;
        }
        if (st->len + n > st->cap) {
            size_t cap = st->cap ? st->cap : 4096;
            while (cap < st->len + n) cap *= 2;
            if (cap > h->opt->max_body_bytes) cap = h->opt->max_body_bytes;
            char *b = realloc(st->body, cap);
            if (!b) return MHD_NO;
            st->body = b;
            st->cap = cap;
        }
        memcpy(st->body + st->len, upload, n);
        st->len += n;
        return MHD_YES;
    }
    struct sv_response resp = {0};
    if (st->too_big) {
        sv_response_error(&resp, 413, "the request body exceeds %zu bytes (--max-request-bytes)", h->opt->max_body_bytes);
        return send_response(c, &resp);
    }
    char buf[4096];
    struct route rt = {.method = method, .body = st->body, .len = st->len, .c = c};
    if (!split_url(url, buf, sizeof buf, &rt)) sv_response_error(&resp, 404, "no such endpoint");
    else route(h, &rt, &resp);
    if (!resp.status) sv_response_error(&resp, 500, "no response was made (a bug in kiln serve)");
    if (!resp.body) sv_response_error(&resp, 500, "out of memory");
    if (sv_verbose) sv_log("%s %s -> %d", method, url, resp.status);
    return send_response(c, &resp);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe)
{
    (void)c, (void)toe;
    struct sv_http *h = cls;
    struct conn *st = *con_cls;
    if (!st) return;
    free(st->body);
    free(st);
    *con_cls = NULL;
    atomic_fetch_sub(&h->in_flight, 1);
}

static enum MHD_Result on_metrics(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
    (void)version, (void)upload;
    struct sv_http *h = cls;
    if (!*con_cls) { /* first call: headers only */
        *con_cls = (void *)1;
        return MHD_YES;
    }
    if (*upload_size) {
        *upload_size = 0;
        return MHD_YES;
    }
    if (strcmp(url, "/metrics") != 0) return send_empty(c, 404);
    if (strcmp(method, "GET") != 0) return send_empty(c, 405);
    char *text = sv_metrics_text(h->repo);
    if (!text) return send_empty(c, 500);
    struct MHD_Response *r = MHD_create_response_from_buffer_with_free_callback(strlen(text), text, free);
    if (!r) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8");
    enum MHD_Result ret = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    return ret;
}

static void log_mhd(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    if (!sv_verbose) return;
    fputs("kiln serve: http: ", stderr);
    vfprintf(stderr, fmt, ap);
}

static struct MHD_Daemon *start_daemon(struct sv_http *h, int port, bool metrics, char *err, size_t err_size)
{
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, h->address, &sa.sin_addr) != 1) {
        snprintf(err, err_size, "--http-address '%s' is not an IPv4 address", h->address);
        return NULL;
    }
    unsigned flags = MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ITC | MHD_USE_ERROR_LOG;
    struct MHD_Daemon *d;
    size_t mem = h->opt->max_header_bytes;
    if (metrics) {
        d = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, on_metrics, h, MHD_OPTION_SOCK_ADDR, &sa,
                             MHD_OPTION_CONNECTION_LIMIT, 64u, MHD_OPTION_CONNECTION_TIMEOUT, 30u,
                             MHD_OPTION_EXTERNAL_LOGGER, log_mhd, NULL, MHD_OPTION_END);
    } else {
        d = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, on_request, h, MHD_OPTION_SOCK_ADDR, &sa,
                             MHD_OPTION_CONNECTION_LIMIT, h->opt->max_connections, MHD_OPTION_CONNECTION_TIMEOUT,
                             60u, MHD_OPTION_CONNECTION_MEMORY_LIMIT, mem, MHD_OPTION_NOTIFY_COMPLETED, on_completed,
                             h, MHD_OPTION_EXTERNAL_LOGGER, log_mhd, NULL, MHD_OPTION_END);
    }
    if (!d) snprintf(err, err_size, "cannot listen on %s:%d (%s port): in use or not allowed", h->address, port,
                     metrics ? "metrics" : "HTTP");
    return d;
}

static int bound_port(struct MHD_Daemon *d)
{
    const union MHD_DaemonInfo *i = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    return i ? i->port : -1;
}

bool sv_http_start(struct sv_http *h, char *err, size_t err_size)
{
    h->api = start_daemon(h, h->opt->http_port, false, err, err_size);
    if (!h->api) return false;
    h->api_port = bound_port(h->api);
    if (h->opt->metrics_port >= 0) {
        h->metrics = start_daemon(h, h->opt->metrics_port, true, err, err_size);
        if (!h->metrics) {
            MHD_stop_daemon(h->api);
            h->api = NULL;
            return false;
        }
        h->metrics_port = bound_port(h->metrics);
    }
    return true;
}

static void abort_model(void *user, struct sv_model *m)
{
    (void)user;
    sv_sched_abort(m);
}

long sv_http_drain_and_stop(struct sv_http *h, unsigned timeout_s)
{
    atomic_store(&h->stopping, true);
    MHD_socket s = h->api ? MHD_quiesce_daemon(h->api) : MHD_INVALID_SOCKET;
    uint64_t deadline = sv_now_ns() + (uint64_t)timeout_s * 1000000000u;
    long left;
    while ((left = atomic_load(&h->in_flight)) > 0 && sv_now_ns() < deadline) usleep(10000);
    /* Past the deadline: stop the inferences that requests still wait for, so that the
     * connection threads (which MHD_stop_daemon joins) return. */
    if (left > 0) {
        sv_repo_each(h->repo, abort_model, NULL);
        /* Give the answers (503) a moment to go out before the sockets close. */
        uint64_t grace = sv_now_ns() + 1000000000u;
        while (atomic_load(&h->in_flight) > 0 && sv_now_ns() < grace) usleep(10000);
    }
    if (h->api) MHD_stop_daemon(h->api);
    if (s != MHD_INVALID_SOCKET) close(s);
    if (h->metrics) MHD_stop_daemon(h->metrics);
    h->api = h->metrics = NULL;
    return left;
}
