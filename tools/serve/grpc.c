/* grpc.c: the KServe v2 gRPC protocol (service inference.GRPCInferenceService of Triton's
 * grpc_service.proto) over HTTP/2 with prior knowledge (h2c, no TLS).
 *
 * gRPC over HTTP/2 (grpc/grpc doc/PROTOCOL-HTTP2.md): a call is one stream: request
 * headers (:method POST, :path /inference.GRPCInferenceService/METHOD, content-type
 * application/grpc[+proto], optional grpc-timeout), DATA carrying each message as a 1-byte
 * compressed flag, a 4-byte big-endian length and the protobuf bytes; the answer is headers
 * (:status 200), the response message, and trailers grpc-status / grpc-message. libnghttp2
 * does the HTTP/2 framing, HPACK and flow control; protobuf-c (kserve_grpc.proto) the
 * messages.
 *
 * Threads: an accept thread; one thread per connection that alone touches its nghttp2
 * session; one thread per call, which decodes the message, runs it through the request path
 * the HTTP front uses (infer.h: same checks, limits, scheduler, statistics) and hands the
 * encoded answer back to the connection thread through a pipe. A stream reset by the client
 * (RST_STREAM) cancels its queued request: each call's request watches one end of a
 * socketpair that the connection thread shuts down (sched.c's client_gone test).
 */
#define _GNU_SOURCE /* accept4, pipe2 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "grpc.h"
#include "infer.h"
#include "kserve_grpc.pb-c.h"

/* gRPC status codes (grpc/grpc doc/statuscodes.md). */
enum {
    GS_OK = 0,
    GS_CANCELLED = 1,
    GS_UNKNOWN = 2,
    GS_INVALID_ARGUMENT = 3,
    GS_DEADLINE_EXCEEDED = 4,
    GS_NOT_FOUND = 5,
    GS_RESOURCE_EXHAUSTED = 8,
    GS_FAILED_PRECONDITION = 9,
    GS_UNIMPLEMENTED = 12,
    GS_INTERNAL = 13,
    GS_UNAVAILABLE = 14,
};

#define SERVICE     "/inference.GRPCInferenceService/"
#define MAX_STREAMS 128u
/* Request bytes one connection may hold at once, in units of --max-request-bytes: its calls
 * together get RESOURCE_EXHAUSTED beyond (128 streams of 64 MiB would be 8 GiB). */
#define CONN_BUDGET 4u

enum call_state { CALL_RECEIVING, CALL_RUNNING, CALL_ANSWERING };

struct call {
    struct sv_grpc_conn *conn;
    int32_t stream_id;
    enum call_state state;
    bool orphan; /* the stream closed while the call ran: free it when it comes back */
    char method[64];
    bool bad_path, bad_type;
    uint64_t deadline_ns; /* from grpc-timeout; 0: none */
    unsigned char *body;
    size_t len, cap;
    bool too_big;
    int cancel[2]; /* socketpair: the request watches [0]; shutting down [1] cancels it */
    /* the answer */
    int status;
    char msg[1024];
    unsigned char *out;
    size_t out_len, out_off;
    struct call *next_done, *next_all;
};

struct sv_grpc_conn {
    struct sv_grpc *g;
    int fd, wake[2];
    pthread_t th;
    atomic_bool finished;
    nghttp2_session *s;
    bool goaway_sent;
    struct call *all; /* every live call (connection thread only) */
    size_t running;   /* calls handed to a thread and not yet back */
    size_t buffered;  /* request bytes its calls hold */
    pthread_mutex_t mu;
    struct call *done; /* calls back from their thread, under mu */
    struct sv_grpc_conn *next;
};

/* ------------------------------------------------------------------ calls */

static void call_fail(struct call *cl, int status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static void call_fail(struct call *cl, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cl->msg, sizeof cl->msg, fmt, ap);
    va_end(ap);
    cl->status = status;
    free(cl->out);
    cl->out = NULL;
    cl->out_len = 0;
}

/* The answer message m, framed (uncompressed flag, 4-byte length, bytes). */
static void call_reply(struct call *cl, const ProtobufCMessage *m)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    if (n > UINT32_MAX) return call_fail(cl, GS_RESOURCE_EXHAUSTED, "the response is over 4 GiB");
    unsigned char *b = malloc(n + 5);
    if (!b) return call_fail(cl, GS_RESOURCE_EXHAUSTED, "out of memory for the response (%zu bytes)", n);
    b[0] = 0;
    b[1] = (unsigned char)(n >> 24), b[2] = (unsigned char)(n >> 16), b[3] = (unsigned char)(n >> 8);
    b[4] = (unsigned char)n;
    protobuf_c_message_pack(m, b + 5);
    free(cl->out);
    cl->out = b;
    cl->out_len = n + 5;
    cl->status = GS_OK;
}

/* An HTTP-front error (status + {"error": msg}) as a gRPC status. */
static void call_fail_resp(struct call *cl, const struct sv_response *resp)
{
    int code = resp->status == 400   ? GS_INVALID_ARGUMENT
               : resp->status == 404 ? GS_NOT_FOUND
               : resp->status == 413 ? GS_RESOURCE_EXHAUSTED
               : resp->status == 415 ? GS_UNIMPLEMENTED
               : resp->status == 503 ? GS_UNAVAILABLE
               : resp->status == 500 ? GS_INTERNAL
                                     : GS_UNKNOWN;
    json_t *o = resp->body ? json_loads(resp->body, 0, NULL) : NULL;
    const char *m = json_string_value(json_object_get(o, "error"));
    call_fail(cl, code, "%s", m ? m : "error");
    json_decref(o);
}

static void call_free(struct call *cl)
{
    cl->conn->buffered -= cl->cap;
    if (cl->cancel[0] >= 0) close(cl->cancel[0]);
    if (cl->cancel[1] >= 0) close(cl->cancel[1]);
    free(cl->body);
    free(cl->out);
    atomic_fetch_sub(&cl->conn->g->in_flight, 1);
    free(cl);
}

/* "" -> 0 (the newest); otherwise a positive integer. */
static bool parse_version(const char *s, int64_t *v)
{
    *v = 0;
    if (!s || !*s) return true;
    char *end;
    errno = 0;
    long long n = strtoll(s, &end, 10);
    if (*end || errno || n < 1) return false;
    *v = n;
    return true;
}

/* A reference to model name/version, or NULL with the call failed (NOT_FOUND / UNAVAILABLE). */
static struct sv_model *lookup(struct call *cl, const char *name, const char *version_s, int64_t *version)
{
    if (!parse_version(version_s, version)) {
        call_fail(cl, GS_INVALID_ARGUMENT, "model version '%s' is not a positive integer", version_s);
        return NULL;
    }
    if (!sv_model_name_ok(name)) {
        call_fail(cl, GS_INVALID_ARGUMENT, "'%s' is not a valid model name", name);
        return NULL;
    }
    bool known;
    struct sv_model *m = sv_repo_get(cl->conn->g->repo, name, *version, &known);
    if (m) return m;
    if (!known)
        call_fail(cl, GS_NOT_FOUND, "Request for unknown model: '%s' is not found", name);
    else if (*version)
        call_fail(cl, GS_NOT_FOUND, "Request for unknown model: '%s' version %lld is not found", name,
                  (long long)*version);
    else
        call_fail(cl, GS_UNAVAILABLE, "model '%s' is not ready (not loaded, unloaded, or failed to load)",
                  name);
    return NULL;
}

#define UNPACK(type, fn, var)                                                                                \
    type *var = fn(NULL, len, msg);                                                                          \
    if (!var)                                                                                                \
    return call_fail(cl, GS_INVALID_ARGUMENT, "malformed %sRequest message (%zu bytes)", cl->method, len)

static void do_server_live(struct call *cl, const uint8_t *msg, size_t len)
{
    UNPACK(Inference__ServerLiveRequest, inference__server_live_request__unpack, q);
    inference__server_live_request__free_unpacked(q, NULL);
    Inference__ServerLiveResponse a = INFERENCE__SERVER_LIVE_RESPONSE__INIT;
    a.live = true;
    call_reply(cl, &a.base);
}

static void do_server_ready(struct call *cl, const uint8_t *msg, size_t len)
{
    UNPACK(Inference__ServerReadyRequest, inference__server_ready_request__unpack, q);
    inference__server_ready_request__free_unpacked(q, NULL);
    Inference__ServerReadyResponse a = INFERENCE__SERVER_READY_RESPONSE__INIT;
    struct sv_grpc *g = cl->conn->g;
    a.ready = atomic_load(g->ready) && !atomic_load(&g->stopping);
    call_reply(cl, &a.base);
}

static void do_server_metadata(struct call *cl, const uint8_t *msg, size_t len)
{
    UNPACK(Inference__ServerMetadataRequest, inference__server_metadata_request__unpack, q);
    inference__server_metadata_request__free_unpacked(q, NULL);
    static char *ext[] = {"binary_tensor_data", "model_repository", "statistics", "model_configuration"};
    Inference__ServerMetadataResponse a = INFERENCE__SERVER_METADATA_RESPONSE__INIT;
    a.name = (char *)"kiln";
    a.version = (char *)kiln_version();
    a.n_extensions = sizeof ext / sizeof ext[0];
    a.extensions = ext;
    call_reply(cl, &a.base);
}

static void do_model_ready(struct call *cl, const uint8_t *msg, size_t len)
{
    UNPACK(Inference__ModelReadyRequest, inference__model_ready_request__unpack, q);
    int64_t v;
    struct sv_model *m = lookup(cl, q->name, q->version, &v);
    bool unavailable = !m && cl->status == GS_UNAVAILABLE;
    inference__model_ready_request__free_unpacked(q, NULL);
    if (!m && !unavailable) return;
    Inference__ModelReadyResponse a = INFERENCE__MODEL_READY_RESPONSE__INIT;
    a.ready = m != NULL;
    sv_model_unref(m);
    call_reply(cl, &a.base);
}

struct versions {
    const char *name;
    char text[64][24];
    char *ptr[64];
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

/* Tensor metadata of a config's inputs or outputs into t (n entries, shape storage in dims). */
static void tensors_meta(const struct sv_io *io, size_t n, bool batch,
                         Inference__ModelMetadataResponse__TensorMetadata *t,
                         Inference__ModelMetadataResponse__TensorMetadata **ptrs,
                         int64_t (*dims)[SV_MAX_RANK + 1])
{
    for (size_t i = 0; i < n; i++) {
        inference__model_metadata_response__tensor_metadata__init(&t[i]);
        t[i].name = io[i].name;
        t[i].datatype = (char *)sv_dtype_kserve(io[i].dtype);
        size_t k = 0;
        if (batch) dims[i][k++] = -1;
        for (int d = 0; d < io[i].rank; d++) dims[i][k++] = io[i].dims[d];
        t[i].n_shape = k;
        t[i].shape = dims[i];
        ptrs[i] = &t[i];
    }
}

static void do_model_metadata(struct call *cl, const uint8_t *msg, size_t len)
{
    UNPACK(Inference__ModelMetadataRequest, inference__model_metadata_request__unpack, q);
    int64_t v;
    struct sv_model *m = lookup(cl, q->name, q->version, &v);
    inference__model_metadata_request__free_unpacked(q, NULL);
    if (!m) return;
    const struct sv_config *c = &m->cfg;
    struct versions vs = {.name = m->name};
    sv_repo_each(cl->conn->g->repo, collect_version, &vs);
    size_t n_io = c->n_inputs + c->n_outputs;
    Inference__ModelMetadataResponse__TensorMetadata *t = calloc(n_io + 1, sizeof *t);
    Inference__ModelMetadataResponse__TensorMetadata **p = calloc(n_io + 1, sizeof *p);
    int64_t(*dims)[SV_MAX_RANK + 1] = calloc(n_io + 1, sizeof *dims);
    if (t && p && dims) {
        bool batch = c->max_batch_size > 0;
        tensors_meta(c->inputs, c->n_inputs, batch, t, p, dims);
        tensors_meta(c->outputs, c->n_outputs, batch, t + c->n_inputs, p + c->n_inputs, dims + c->n_inputs);
        Inference__ModelMetadataResponse a = INFERENCE__MODEL_METADATA_RESPONSE__INIT;
        a.name = m->name;
        a.n_versions = vs.n;
        a.versions = vs.ptr;
        a.platform = c->platform ? c->platform : c->backend ? c->backend : (char *)"";
        a.n_inputs = c->n_inputs;
        a.inputs = p;
        a.n_outputs = c->n_outputs;
        a.outputs = p + c->n_inputs;
        call_reply(cl, &a.base);
    } else {
        call_fail(cl, GS_RESOURCE_EXHAUSTED, "out of memory");
    }
    free(t), free(p), free(dims);
    sv_model_unref(m);
}

static int config_dtype(kiln_dtype dt)
{
    const char *name = sv_dtype_config(dt);
    const ProtobufCEnumValue *v =
        name ? protobuf_c_enum_descriptor_get_value_by_name(&inference__data_type__descriptor, name) : NULL;
    return v ? v->value : INFERENCE__DATA_TYPE__TYPE_INVALID;
}

static void queue_policy_pb(const struct sv_queue_policy *p, Inference__ModelQueuePolicy *q)
{
    inference__model_queue_policy__init(q);
    q->timeout_action = p->timeout_delay ? INFERENCE__MODEL_QUEUE_POLICY__TIMEOUT_ACTION__DELAY
                                         : INFERENCE__MODEL_QUEUE_POLICY__TIMEOUT_ACTION__REJECT;
    q->default_timeout_microseconds = p->default_timeout_us;
    q->allow_timeout_override = p->allow_timeout_override;
    q->max_queue_size = (uint32_t)p->max_queue_size;
}

static void do_model_config(struct call *cl, const uint8_t *msg, size_t len)
{
    UNPACK(Inference__ModelConfigRequest, inference__model_config_request__unpack, q);
    int64_t v;
    struct sv_model *m = lookup(cl, q->name, q->version, &v);
    inference__model_config_request__free_unpacked(q, NULL);
    if (!m) return;
    const struct sv_config *c = &m->cfg;
    Inference__ModelInput *in = calloc(c->n_inputs + 1, sizeof *in);
    Inference__ModelOutput *out = calloc(c->n_outputs + 1, sizeof *out);
    Inference__ModelInput **pin = calloc(c->n_inputs + 1, sizeof *pin);
    Inference__ModelOutput **pout = calloc(c->n_outputs + 1, sizeof *pout);
    Inference__ModelTensorReshape *rs = calloc(c->n_inputs + c->n_outputs + 1, sizeof *rs);
    if (!in || !out || !pin || !pout || !rs) {
        call_fail(cl, GS_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < c->n_inputs; i++) {
        const struct sv_io *io = &c->inputs[i];
        inference__model_input__init(&in[i]);
        in[i].name = io->name;
        in[i].data_type = config_dtype(io->dtype);
        in[i].n_dims = (size_t)io->rank;
        in[i].dims = (int64_t *)io->dims;
        in[i].optional = io->optional;
        if (io->has_reshape) {
            inference__model_tensor_reshape__init(&rs[i]);
            rs[i].n_shape = (size_t)io->reshape_rank;
            rs[i].shape = (int64_t *)io->reshape;
            in[i].reshape = &rs[i];
        }
        pin[i] = &in[i];
    }
    for (size_t i = 0; i < c->n_outputs; i++) {
        const struct sv_io *io = &c->outputs[i];
        Inference__ModelTensorReshape *r = &rs[c->n_inputs + i];
        inference__model_output__init(&out[i]);
        out[i].name = io->name;
        out[i].data_type = config_dtype(io->dtype);
        out[i].n_dims = (size_t)io->rank;
        out[i].dims = (int64_t *)io->dims;
        if (io->label_filename) out[i].label_filename = io->label_filename;
        if (io->has_reshape) {
            inference__model_tensor_reshape__init(r);
            r->n_shape = (size_t)io->reshape_rank;
            r->shape = (int64_t *)io->reshape;
            out[i].reshape = r;
        }
        pout[i] = &out[i];
    }
    Inference__ModelInstanceGroup ig = INFERENCE__MODEL_INSTANCE_GROUP__INIT, *pig = &ig;
    ig.count = c->instance_count;
    Inference__ModelDynamicBatching db = INFERENCE__MODEL_DYNAMIC_BATCHING__INIT;
    int32_t pref[16];
    for (int i = 0; i < c->n_preferred; i++) pref[i] = (int32_t)c->preferred[i];
    db.n_preferred_batch_size = (size_t)c->n_preferred;
    db.preferred_batch_size = pref;
    db.max_queue_delay_microseconds = c->max_queue_delay_us;
    db.preserve_ordering = c->preserve_ordering;
    db.priority_levels = c->priority_levels;
    db.default_priority_level = c->default_priority_level;
    Inference__ModelQueuePolicy dq;
    queue_policy_pb(&c->queue, &dq);
    db.default_queue_policy = &dq;
    Inference__ModelQueuePolicy lq[SV_MAX_LEVEL_POLICIES];
    Inference__ModelDynamicBatching__PriorityQueuePolicyEntry le[SV_MAX_LEVEL_POLICIES], *pe[SV_MAX_LEVEL_POLICIES];
    for (size_t i = 0; i < c->n_level_policies; i++) {
        queue_policy_pb(&c->level_policies[i].policy, &lq[i]);
        inference__model_dynamic_batching__priority_queue_policy_entry__init(&le[i]);
        le[i].key = c->level_policies[i].level;
        le[i].value = &lq[i];
        pe[i] = &le[i];
    }
    db.n_priority_queue_policy = c->n_level_policies;
    db.priority_queue_policy = pe;
    Inference__ModelConfig mc = INFERENCE__MODEL_CONFIG__INIT;
    mc.name = m->name;
    if (c->platform) mc.platform = c->platform;
    if (c->backend) mc.backend = c->backend;
    if (c->default_model_filename) mc.default_model_filename = c->default_model_filename;
    mc.max_batch_size = (int32_t)c->max_batch_size;
    mc.n_input = c->n_inputs;
    mc.input = pin;
    mc.n_output = c->n_outputs;
    mc.output = pout;
    mc.n_instance_group = 1;
    mc.instance_group = &pig;
    if (c->dynamic_batching) mc.dynamic_batching = &db;
    Inference__ModelConfigResponse a = INFERENCE__MODEL_CONFIG_RESPONSE__INIT;
    a.config = &mc;
    call_reply(cl, &a.base);
out:
    free(in), free(out), free(pin), free(pout), free(rs);
    sv_model_unref(m);
}

struct stats_collect {
    const char *name;
    int64_t version;
    Inference__ModelStatistics *st;
    Inference__ModelStatistics **ptrs;
    Inference__InferStatistics *is;
    Inference__StatisticDuration (*d)[6];
    size_t n, cap;
};

static void stats_one(void *user, struct sv_model *m)
{
    struct stats_collect *sc = user;
    if ((sc->name && strcmp(sc->name, m->name) != 0) || (sc->version && sc->version != m->version) ||
        sc->n == sc->cap)
        return;
    size_t k = sc->n++;
    Inference__ModelStatistics *o = &sc->st[k];
    inference__model_statistics__init(o);
    inference__infer_statistics__init(&sc->is[k]);
    Inference__StatisticDuration *d = sc->d[k];
    for (int i = 0; i < 6; i++) inference__statistic_duration__init(&d[i]);
    struct sv_stats *s = &m->stats;
    pthread_mutex_lock(&s->mu);
    o->last_inference = s->last_inference_ms;
    o->inference_count = s->inference_count;
    o->execution_count = s->exec_count;
    d[0].count = s->success, d[0].ns = s->request_ns;
    d[1].count = s->failure, d[1].ns = s->fail_ns;
    d[2].count = s->success, d[2].ns = s->queue_ns;
    d[3].count = s->success;
    d[4].count = s->success, d[4].ns = s->compute_ns;
    d[5].count = s->success;
    pthread_mutex_unlock(&s->mu);
    /* Copies: a model may be unloaded once the repository's lock is released. */
    o->name = strdup(m->name);
    o->version = strdup(m->version_str);
    if (!o->name || !o->version) {
        free(o->name), free(o->version);
        sc->n--;
        return;
    }
    sc->is[k].success = &d[0], sc->is[k].fail = &d[1], sc->is[k].queue = &d[2];
    sc->is[k].compute_input = &d[3], sc->is[k].compute_infer = &d[4], sc->is[k].compute_output = &d[5];
    o->inference_stats = &sc->is[k];
    sc->ptrs[k] = o;
}

static void count_models(void *user, struct sv_model *m)
{
    (void)m;
    (*(size_t *)user)++;
}

static void do_model_statistics(struct call *cl, const uint8_t *msg, size_t len)
{
    UNPACK(Inference__ModelStatisticsRequest, inference__model_statistics_request__unpack, q);
    struct sv_grpc *g = cl->conn->g;
    struct stats_collect sc = {0};
    struct sv_model *m = NULL;
    if (*q->name) {
        if (!(m = lookup(cl, q->name, q->version, &sc.version))) goto out;
        sc.name = m->name;
    }
    /* Names point into the models: hold a reference to each while encoding. */
    size_t n = 0;
    sv_repo_each(g->repo, count_models, &n);
    sc.cap = n;
    sc.st = calloc(n + 1, sizeof *sc.st);
    sc.ptrs = calloc(n + 1, sizeof *sc.ptrs);
    sc.is = calloc(n + 1, sizeof *sc.is);
    sc.d = calloc(n + 1, sizeof *sc.d);
    if (!sc.st || !sc.ptrs || !sc.is || !sc.d) {
        call_fail(cl, GS_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    sv_repo_each(g->repo, stats_one, &sc);
    Inference__ModelStatisticsResponse a = INFERENCE__MODEL_STATISTICS_RESPONSE__INIT;
    a.n_model_stats = sc.n;
    a.model_stats = sc.ptrs;
    call_reply(cl, &a.base);
out:
    for (size_t i = 0; i < sc.n; i++) free(sc.st[i].name), free(sc.st[i].version);
    free(sc.st), free(sc.ptrs), free(sc.is), free(sc.d);
    sv_model_unref(m);
    inference__model_statistics_request__free_unpacked(q, NULL);
}

static void do_repository_index(struct call *cl, const uint8_t *msg, size_t len)
{
    UNPACK(Inference__RepositoryIndexRequest, inference__repository_index_request__unpack, q);
    bool ready_only = q->ready;
    inference__repository_index_request__free_unpacked(q, NULL);
    char *text = sv_repo_index_json(cl->conn->g->repo);
    json_t *list = text ? json_loads(text, 0, NULL) : NULL;
    free(text);
    size_t n = json_array_size(list);
    Inference__RepositoryIndexResponse__ModelIndex *mi = calloc(n + 1, sizeof *mi);
    Inference__RepositoryIndexResponse__ModelIndex **p = calloc(n + 1, sizeof *p);
    if (!list || !mi || !p) {
        call_fail(cl, GS_RESOURCE_EXHAUSTED, "out of memory");
    } else {
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            json_t *o = json_array_get(list, i);
            const char *state = json_string_value(json_object_get(o, "state"));
            if (ready_only && (!state || strcmp(state, "READY") != 0)) continue;
            inference__repository_index_response__model_index__init(&mi[k]);
            const char *f[4] = {json_string_value(json_object_get(o, "name")),
                                json_string_value(json_object_get(o, "version")), state,
                                json_string_value(json_object_get(o, "reason"))};
            if (f[0]) mi[k].name = (char *)f[0];
            if (f[1]) mi[k].version = (char *)f[1];
            if (f[2]) mi[k].state = (char *)f[2];
            if (f[3]) mi[k].reason = (char *)f[3];
            p[k] = &mi[k];
            k++;
        }
        Inference__RepositoryIndexResponse a = INFERENCE__REPOSITORY_INDEX_RESPONSE__INIT;
        a.n_models = k;
        a.models = p;
        call_reply(cl, &a.base);
    }
    free(mi), free(p);
    json_decref(list);
}

static void load_unload(struct call *cl, const char *name, bool load)
{
    struct sv_grpc *g = cl->conn->g;
    if (g->opt->control != SV_CONTROL_EXPLICIT)
        return call_fail(cl, GS_FAILED_PRECONDITION,
                         "explicit model load / unload is not allowed: start kiln serve "
                         "with --model-control-mode explicit");
    if (!sv_model_name_ok(name))
        return call_fail(cl, GS_INVALID_ARGUMENT, "'%s' is not a valid model name", name);
    char err[1024];
    bool ok =
        load ? sv_repo_load(g->repo, name, err, sizeof err) : sv_repo_unload(g->repo, name, err, sizeof err);
    if (!ok) return call_fail(cl, load ? GS_INVALID_ARGUMENT : GS_NOT_FOUND, "%s", err);
    Inference__RepositoryModelLoadResponse a = INFERENCE__REPOSITORY_MODEL_LOAD_RESPONSE__INIT;
    call_reply(cl, &a.base); /* both answers are empty messages */
}

static void do_model_load(struct call *cl, const uint8_t *msg, size_t len)
{
    UNPACK(Inference__RepositoryModelLoadRequest, inference__repository_model_load_request__unpack, q);
    load_unload(cl, q->model_name, true);
    inference__repository_model_load_request__free_unpacked(q, NULL);
}

static void do_model_unload(struct call *cl, const uint8_t *msg, size_t len)
{
    UNPACK(Inference__RepositoryModelUnloadRequest, inference__repository_model_unload_request__unpack, q);
    load_unload(cl, q->model_name, false);
    inference__repository_model_unload_request__free_unpacked(q, NULL);
}

/* ------------------------------------------------------------------ ModelInfer */

/* Element count check for typed contents. */
static bool typed_count(const char *name, size_t got, size_t want, struct sv_response *resp)
{
    if (got == want) return true;
    sv_response_error(resp, 400, "input '%s': contents has %zu elements; its shape needs %zu", name, got,
                      want);
    return false;
}

static bool in_range(int64_t v, int64_t lo, int64_t hi)
{
    return v >= lo && v <= hi;
}

/* Fills the tensor of slot from InferTensorContents (the field of its datatype). */
static bool tensor_from_contents(const struct sv_options *opt, const char *name,
                                 const struct sv_input_slot *slot, const Inference__InferTensorContents *c,
                                 struct sv_response *resp)
{
    char err[768];
    if (!sv_tensor_create(name, slot->dtype, slot->rank, slot->dims, opt->max_elements, slot->t, err,
                          sizeof err))
        return sv_response_error(resp, 400, "%s", err), false;
    size_t n = kiln_value_numel(slot->t->v);
    void *d = kiln_value_data(slot->t->v);
    static const Inference__InferTensorContents empty = INFERENCE__INFER_TENSOR_CONTENTS__INIT;
    if (!c) c = &empty;
#define FILL(field, ctype, lo, hi)                                                                           \
    do {                                                                                                     \
        if (!typed_count(name, c->n_##field, n, resp)) return false;                                         \
        for (size_t i = 0; i < n; i++) {                                                                     \
            if (!in_range((int64_t)c->field[i], lo, hi))                                                     \
                return sv_response_error(resp, 400, "input '%s': element %zu is out of range for %s", name,  \
                                         i, sv_dtype_kserve(slot->dtype)),                                   \
                       false;                                                                                \
            ((ctype *)d)[i] = (ctype)c->field[i];                                                            \
        }                                                                                                    \
    } while (0)
    switch (slot->dtype) {
    case KILN_DTYPE_BOOL:
        FILL(bool_contents, uint8_t, 0, 1);
        break;
    case KILN_DTYPE_I8:
        FILL(int_contents, int8_t, INT8_MIN, INT8_MAX);
        break;
    case KILN_DTYPE_I16:
        FILL(int_contents, int16_t, INT16_MIN, INT16_MAX);
        break;
    case KILN_DTYPE_I32:
        FILL(int_contents, int32_t, INT32_MIN, INT32_MAX);
        break;
    case KILN_DTYPE_U8:
        FILL(uint_contents, uint8_t, 0, UINT8_MAX);
        break;
    case KILN_DTYPE_U16:
        FILL(uint_contents, uint16_t, 0, UINT16_MAX);
        break;
    case KILN_DTYPE_U32:
        FILL(uint_contents, uint32_t, 0, UINT32_MAX);
        break;
    case KILN_DTYPE_I64:
        if (!typed_count(name, c->n_int64_contents, n, resp)) return false;
        memcpy(d, c->int64_contents, n * sizeof(int64_t));
        break;
    case KILN_DTYPE_U64:
        if (!typed_count(name, c->n_uint64_contents, n, resp)) return false;
        memcpy(d, c->uint64_contents, n * sizeof(uint64_t));
        break;
    case KILN_DTYPE_F32:
        if (!typed_count(name, c->n_fp32_contents, n, resp)) return false;
        memcpy(d, c->fp32_contents, n * sizeof(float));
        break;
    case KILN_DTYPE_F64:
        if (!typed_count(name, c->n_fp64_contents, n, resp)) return false;
        memcpy(d, c->fp64_contents, n * sizeof(double));
        break;
    case KILN_DTYPE_STRING: {
        if (!typed_count(name, c->n_bytes_contents, n, resp)) return false;
        const char **s = calloc(n + 1, sizeof *s);
        size_t *l = calloc(n + 1, sizeof *l);
        bool ok = s && l;
        for (size_t i = 0; ok && i < n; i++)
            s[i] = (const char *)c->bytes_contents[i].data, l[i] = c->bytes_contents[i].len;
        if (ok)
            ok = sv_tensor_set_strings(slot->t, s, l, n, err, sizeof err);
        else
            snprintf(err, sizeof err, "out of memory");
        free(s), free(l);
        if (!ok) return sv_response_error(resp, 400, "%s", err), false;
        break;
    }
    default:
        return sv_response_error(resp, 400,
                                 "input '%s': %s data has no typed contents field; use raw_input_contents",
                                 name, sv_dtype_kserve(slot->dtype)),
               false;
    }
#undef FILL
    return true;
}

static const Inference__InferParameter *find_param(void *entries, size_t n, const char *key)
{
    /* Every ParametersEntry type has the same layout: base, key, value. */
    Inference__ModelInferRequest__ParametersEntry **e = entries;
    for (size_t i = 0; i < n; i++)
        if (e[i]->key && strcmp(e[i]->key, key) == 0) return e[i]->value;
    return NULL;
}

/* Reads q's inputs into r. false with resp set. */
static bool infer_inputs(const struct sv_options *opt, struct sv_model *m,
                         const Inference__ModelInferRequest *q, struct sv_request *r,
                         struct sv_response *resp)
{
    if (q->n_raw_input_contents && q->n_raw_input_contents != q->n_inputs)
        return sv_response_error(
                   resp, 400,
                   "the request has %zu raw_input_contents for %zu inputs: give raw contents for every "
                   "input or for none",
                   q->n_raw_input_contents, q->n_inputs),
               false;
    bool *seen = calloc(m->cfg.n_inputs + 1, sizeof *seen);
    if (!seen) return sv_response_error(resp, 500, "out of memory"), false;
    bool ok = true;
    for (size_t i = 0; ok && i < q->n_inputs; i++) {
        const Inference__ModelInferRequest__InferInputTensor *in = q->inputs[i];
        struct sv_input_slot slot;
        if (in->n_shape > SV_MAX_RANK) {
            ok = (sv_response_error(resp, 400, "input '%s': the shape has %zu dims; at most %d are allowed",
                                    in->name, in->n_shape, SV_MAX_RANK),
                  false);
            break;
        }
        ok = sv_request_input(m, r, seen, in->name, in->datatype, (int)in->n_shape, in->shape, &slot, resp);
        if (!ok) break;
        if (q->n_raw_input_contents) {
            char err[768];
            const ProtobufCBinaryData *raw = &q->raw_input_contents[i];
            ok = sv_tensor_from_binary(in->name, slot.dtype, slot.rank, slot.dims, raw->data, raw->len,
                                       opt->max_elements, slot.t, err, sizeof err);
            if (!ok) sv_response_error(resp, 400, "%s", err);
        } else {
            ok = tensor_from_contents(opt, in->name, &slot, in->contents, resp);
        }
    }
    if (ok) ok = sv_request_inputs_complete(m, seen, q->n_inputs, resp);
    free(seen);
    return ok;
}

/* A non-negative integer parameter (int64_param or uint64_param, as clients send either);
 * false when it has another type or is negative. */
static bool param_uint(const Inference__InferParameter *p, uint64_t *out)
{
    if (p->parameter_choice_case == INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_INT64_PARAM && p->int64_param >= 0)
        return *out = (uint64_t)p->int64_param, true;
    if (p->parameter_choice_case == INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_UINT64_PARAM)
        return *out = p->uint64_param, true;
    return false;
}

/* The configured outputs the request asks for (all when it names none), as cfg indexes, and
 * for each its classification count (0: the tensor itself). */
static bool infer_outputs(struct sv_model *m, const Inference__ModelInferRequest *q, size_t *idx, int64_t *classify,
                          size_t *n, struct sv_response *resp)
{
    const struct sv_config *c = &m->cfg;
    if (!q->n_outputs) {
        for (size_t i = 0; i < c->n_outputs; i++) idx[i] = i, classify[i] = 0;
        *n = c->n_outputs;
        return true;
    }
    *n = 0;
    for (size_t i = 0; i < q->n_outputs; i++) {
        const Inference__ModelInferRequest__InferRequestedOutputTensor *o = q->outputs[i];
        const Inference__InferParameter *cp = find_param(o->parameters, o->n_parameters, "classification");
        uint64_t k_top = 0;
        if (cp && (!param_uint(cp, &k_top) || k_top < 1 || k_top > INT32_MAX))
            return sv_response_error(resp, 400, "output '%s': classification must be an integer >= 1", o->name),
                   false;
        size_t k = 0;
        while (k < c->n_outputs && strcmp(c->outputs[k].name, o->name) != 0) k++;
        if (k == c->n_outputs)
            return sv_response_error(resp, 400, "unexpected inference output '%s' for model '%s'", o->name,
                                     m->name),
                   false;
        for (size_t j = 0; j < *n; j++)
            if (idx[j] == k)
                return sv_response_error(resp, 400, "output '%s' is requested twice", o->name), false;
        if (k_top && !sv_classify_supported(c->outputs[k].dtype))
            return sv_response_error(resp, 400, "output '%s': %s values cannot be classified", o->name,
                                     sv_dtype_kserve(c->outputs[k].dtype)),
                   false;
        if (*n == c->n_outputs) break;
        classify[*n] = (int64_t)k_top;
        idx[(*n)++] = k;
    }
    return true;
}

/* The priority level and deadline (sv_request_schedule): the request's "priority" and
 * "timeout" (microseconds) parameters under its level's queue policy, and the call's
 * grpc-timeout. */
static bool infer_schedule(const Inference__ModelInferRequest *q, uint64_t call_deadline, struct sv_request *r,
                           struct sv_response *resp)
{
    uint64_t timeout_us = 0, priority = 0;
    const Inference__InferParameter *to = find_param(q->parameters, q->n_parameters, "timeout");
    if (to && (!param_uint(to, &timeout_us) || timeout_us > INT64_MAX / 1000))
        return sv_response_error(resp, 400, "parameter 'timeout' must be an int64 of microseconds >= 0"), false;
    const Inference__InferParameter *pr = find_param(q->parameters, q->n_parameters, "priority");
    if (pr && !param_uint(pr, &priority))
        return sv_response_error(resp, 400, "parameter 'priority' must be an integer >= 0"), false;
    sv_request_schedule(r, priority, to != NULL, timeout_us, call_deadline);
    return true;
}

/* The answer of a completed request: every output as raw_output_contents (as Triton does). */
static void infer_answer(struct call *cl, struct sv_model *m, const Inference__ModelInferRequest *q,
                         struct sv_request *r, const size_t *idx, const int64_t *classify, size_t n)
{
    Inference__ModelInferResponse__InferOutputTensor *t = calloc(n + 1, sizeof *t);
    Inference__ModelInferResponse__InferOutputTensor **p = calloc(n + 1, sizeof *p);
    ProtobufCBinaryData *raw = calloc(n + 1, sizeof *raw);
    int64_t(*dims)[SV_MAX_RANK] = calloc(n + 1, sizeof *dims);
    bool ok = t && p && raw && dims;
    struct sv_response err = {0};
    for (size_t k = 0; ok && k < n; k++) {
        struct sv_out_view v = {0};
        sv_output_view(m, r, idx[k], &v);
        if (classify[k] && !sv_output_classify(m, r, &m->cfg.outputs[idx[k]], classify[k], &v, &err)) {
            free(t), free(p), free(dims);
            for (size_t j = 0; raw && j < k; j++) free(raw[j].data);
            free(raw);
            call_fail_resp(cl, &err);
            free(err.body);
            return;
        }
        inference__model_infer_response__infer_output_tensor__init(&t[k]);
        t[k].name = m->cfg.outputs[idx[k]].name;
        t[k].datatype = (char *)sv_dtype_kserve(v.dt);
        memcpy(dims[k], v.dims, sizeof(int64_t) * (size_t)v.rank);
        t[k].n_shape = (size_t)v.rank;
        t[k].shape = dims[k];
        p[k] = &t[k];
        size_t b = sv_binary_size(v.dt, v.data, v.first, v.count);
        raw[k].data = b == SIZE_MAX ? NULL : malloc(b + 1);
        if (raw[k].data) sv_binary_write(v.dt, v.data, v.first, v.count, raw[k].data);
        raw[k].len = b;
        free(v.class_ptrs), free(v.class_buf);
        if (!raw[k].data) {
            ok = false;
            break;
        }
    }
    if (ok) {
        Inference__ModelInferResponse a = INFERENCE__MODEL_INFER_RESPONSE__INIT;
        a.model_name = m->name;
        a.model_version = m->version_str;
        a.id = q->id;
        a.n_outputs = n;
        a.outputs = p;
        a.n_raw_output_contents = n;
        a.raw_output_contents = raw;
        call_reply(cl, &a.base);
    } else {
        call_fail(cl, GS_RESOURCE_EXHAUSTED, "out of memory writing the response");
    }
    for (size_t k = 0; raw && k < n; k++) free(raw[k].data);
    free(t), free(p), free(raw), free(dims);
}

/* One attempt on version m. false only when m was being unloaded before the request could
 * be queued (the caller looks the model up again), as sv_infer. */
static bool infer_once(struct call *cl, struct sv_model *m, const Inference__ModelInferRequest *q)
{
    const struct sv_options *opt = cl->conn->g->opt;
    uint64_t t0 = sv_now_ns();
    struct sv_response resp = {0};
    bool unloading = false, ok = false;
    size_t *idx = calloc(m->cfg.n_outputs + 1, sizeof *idx), n_out = 0;
    int64_t *classify = calloc(m->cfg.n_outputs + 1, sizeof *classify);
    struct sv_request *r = sv_request_new(m, cl->cancel[0]);
    if (!r || !idx || !classify)
        sv_response_error(&resp, 500, "out of memory");
    else if (infer_inputs(opt, m, q, r, &resp) && infer_outputs(m, q, idx, classify, &n_out, &resp) &&
             infer_schedule(q, cl->deadline_ns, r, &resp))
        ok = sv_request_run(r, &unloading, &resp);
    if (ok) {
        infer_answer(cl, m, q, r, idx, classify, n_out);
        ok = cl->status == GS_OK;
        if (ok) sv_stats_request(&m->stats, true, sv_now_ns() - t0, r->queue_ns, r->compute_ns);
    } else {
        call_fail_resp(cl, &resp);
        if (r && r->status == KILN_E_LIMIT && r->deadline_ns && sv_now_ns() >= r->deadline_ns)
            cl->status = GS_DEADLINE_EXCEEDED;
        if (r && r->status == KILN_E_CANCELLED) cl->status = GS_CANCELLED;
    }
    if (!ok && !unloading) sv_stats_request(&m->stats, false, sv_now_ns() - t0, 0, 0);
    if (sv_verbose)
        sv_log("grpc infer model=%s version=%s status=%d", m->name, m->version_str, ok ? 0 : cl->status);
    sv_request_free(r);
    free(idx);
    free(classify);
    free(resp.body);
    return !unloading;
}

static void do_model_infer(struct call *cl, const uint8_t *msg, size_t len)
{
    UNPACK(Inference__ModelInferRequest, inference__model_infer_request__unpack, q);
    int64_t version;
    struct sv_model *m = lookup(cl, q->model_name, q->model_version, &version);
    /* A reload swaps versions while requests arrive: retry on the new one, as HTTP does. */
    for (int attempt = 0; m && attempt < 3; attempt++) {
        if (infer_once(cl, m, q)) break;
        sv_model_unref(m);
        bool known;
        m = sv_repo_get(cl->conn->g->repo, q->model_name, version, &known);
        if (!m) call_fail(cl, GS_UNAVAILABLE, "model '%s' is being unloaded", q->model_name);
    }
    sv_model_unref(m);
    inference__model_infer_request__free_unpacked(q, NULL);
}

struct method {
    const char *name;
    void (*fn)(struct call *cl, const uint8_t *msg, size_t len);
};

static const struct method methods[] = {
    {"ServerLive", do_server_live},
    {"ServerReady", do_server_ready},
    {"ModelReady", do_model_ready},
    {"ServerMetadata", do_server_metadata},
    {"ModelMetadata", do_model_metadata},
    {"ModelInfer", do_model_infer},
    {"ModelConfig", do_model_config},
    {"ModelStatistics", do_model_statistics},
    {"RepositoryIndex", do_repository_index},
    {"RepositoryModelLoad", do_model_load},
    {"RepositoryModelUnload", do_model_unload},
};

/* Runs a received call: its one framed message through its method. */
static void call_run(struct call *cl)
{
    const struct method *mt = NULL;
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
        if (strcmp(methods[i].name, cl->method) == 0) mt = &methods[i];
    if (!mt)
        return call_fail(cl, GS_UNIMPLEMENTED, "method '%s' is not implemented by kiln serve", cl->method);
    if (cl->len < 5)
        return call_fail(cl, GS_INVALID_ARGUMENT, "the request has no message (%zu bytes)", cl->len);
    const unsigned char *b = cl->body;
    size_t n = (size_t)b[1] << 24 | (size_t)b[2] << 16 | (size_t)b[3] << 8 | b[4];
    if (b[0] > 1) return call_fail(cl, GS_INVALID_ARGUMENT, "the message's compressed flag is %u", b[0]);
    if (b[0] == 1)
        return call_fail(cl, GS_UNIMPLEMENTED,
                         "compressed messages are not supported (send grpc-encoding identity)");
    if (n != cl->len - 5)
        return call_fail(cl, GS_INVALID_ARGUMENT,
                         "the message's length prefix says %zu bytes but %zu follow (a unary "
                         "call carries exactly one message)",
                         n, cl->len - 5);
    mt->fn(cl, b + 5, n);
    if (cl->status == GS_OK && !cl->out)
        call_fail(cl, GS_INTERNAL, "no answer was made (a bug in kiln serve)");
}

static void *call_thread(void *arg)
{
    struct call *cl = arg;
    call_run(cl);
    struct sv_grpc_conn *c = cl->conn;
    /* The wake-up is written under the lock: once the connection thread has taken this call
     * back (under the same lock) this thread touches nothing of the connection, which may be
     * freed and its pipe closed right after (a write after the unlock raced with that close). */
    pthread_mutex_lock(&c->mu);
    cl->next_done = c->done;
    c->done = cl;
    ssize_t w = write(c->wake[1], "c", 1);
    (void)w;
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

/* ------------------------------------------------------------------ the HTTP/2 session */

/* grpc-message: percent-encoded outside printable ASCII (and '%'). */
static void percent_encode(const char *s, char *out, size_t size)
{
    size_t o = 0;
    for (; *s && o + 4 < size; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch >= 0x20 && ch < 0x7f && ch != '%')
            out[o++] = (char)ch;
        else
            o += (size_t)snprintf(out + o, size - o, "%%%02X", ch);
    }
    out[o] = 0;
}

#define NV(n, v)                                                                                             \
    {                                                                                                        \
        (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE                       \
    }

static ssize_t read_out(nghttp2_session *s, int32_t stream_id, uint8_t *buf, size_t length, uint32_t *flags,
                        nghttp2_data_source *src, void *user)
{
    (void)user;
    struct call *cl = src->ptr;
    size_t n = cl->out_len - cl->out_off;
    if (n > length) n = length;
    memcpy(buf, cl->out + cl->out_off, n);
    cl->out_off += n;
    if (cl->out_off == cl->out_len) {
        *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
        nghttp2_nv tr[] = {NV("grpc-status", "0")};
        if (nghttp2_submit_trailer(s, stream_id, tr, 1) != 0) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    return (ssize_t)n;
}

/* Submits the call's answer: headers, message, trailers; or on error the trailers only. */
static void call_answer(nghttp2_session *s, struct call *cl)
{
    cl->state = CALL_ANSWERING;
    if (cl->status == GS_OK && cl->out) {
        nghttp2_nv h[] = {NV(":status", "200"), NV("content-type", "application/grpc")};
        nghttp2_data_provider dp = {.source.ptr = cl, .read_callback = read_out};
        nghttp2_submit_response(s, cl->stream_id, h, 2, &dp);
        return;
    }
    char code[12], msg[3200];
    snprintf(code, sizeof code, "%d", cl->status);
    percent_encode(cl->msg, msg, sizeof msg);
    nghttp2_nv h[] = {NV(":status", "200"), NV("content-type", "application/grpc"), NV("grpc-status", code),
                      NV("grpc-message", msg)};
    nghttp2_submit_response(s, cl->stream_id, h, 4, NULL);
}

/* Answers at once (headers still arriving, or the body over the limit). */
static void call_reject(nghttp2_session *s, struct call *cl, int status, const char *msg)
{
    snprintf(cl->msg, sizeof cl->msg, "%s", msg);
    cl->status = status;
    call_answer(s, cl);
}

static void call_start(struct sv_grpc_conn *c, struct call *cl)
{
    if (cl->bad_path)
        return call_reject(c->s, cl, GS_UNIMPLEMENTED,
                           "unknown service or method: kiln serve "
                           "implements inference.GRPCInferenceService");
    if (cl->bad_type)
        return call_reject(c->s, cl, GS_INVALID_ARGUMENT, "content-type must be application/grpc");
    if (atomic_load(&c->g->stopping))
        return call_reject(c->s, cl, GS_UNAVAILABLE, "the server is shutting down");
    cl->state = CALL_RUNNING;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    pthread_t t;
    bool ok = pthread_create(&t, &a, call_thread, cl) == 0;
    pthread_attr_destroy(&a);
    if (ok)
        c->running++;
    else
        call_reject(c->s, cl, GS_RESOURCE_EXHAUSTED, "cannot start a thread for the call");
}

static void unlink_call(struct sv_grpc_conn *c, struct call *cl)
{
    for (struct call **p = &c->all; *p; p = &(*p)->next_all)
        if (*p == cl) {
            *p = cl->next_all;
            return;
        }
}

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *user)
{
    struct sv_grpc_conn *c = user;
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
    struct call *cl = calloc(1, sizeof *cl);
    if (!cl) return NGHTTP2_ERR_CALLBACK_FAILURE;
    cl->conn = c;
    cl->stream_id = f->hd.stream_id;
    cl->bad_path = true;
    cl->bad_type = true;
    cl->cancel[0] = cl->cancel[1] = -1;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, cl->cancel) != 0)
        cl->cancel[0] = cl->cancel[1] = -1;
    atomic_fetch_add(&c->g->in_flight, 1);
    cl->next_all = c->all;
    c->all = cl;
    nghttp2_session_set_stream_user_data(s, f->hd.stream_id, cl);
    return 0;
}

/* grpc-timeout: up to 8 digits and a unit (H M S m u n). 0 when malformed. */
static uint64_t parse_timeout(const uint8_t *v, size_t n)
{
    if (n < 2 || n > 9) return 0;
    uint64_t x = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        if (v[i] < '0' || v[i] > '9') return 0;
        x = x * 10 + (v[i] - '0');
    }
    switch (v[n - 1]) {
    case 'H':
        return x * 3600000000000ull;
    case 'M':
        return x * 60000000000ull;
    case 'S':
        return x * 1000000000ull;
    case 'm':
        return x * 1000000ull;
    case 'u':
        return x * 1000ull;
    case 'n':
        return x ? x : 1;
    default:
        return 0;
    }
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t namelen,
                     const uint8_t *value, size_t valuelen, uint8_t flags, void *user)
{
    (void)flags, (void)user;
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
    struct call *cl = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (!cl) return 0;
    if (namelen == 5 && memcmp(name, ":path", 5) == 0) {
        size_t k = sizeof SERVICE - 1;
        cl->bad_path = !(valuelen > k && valuelen - k < sizeof cl->method && memcmp(value, SERVICE, k) == 0);
        if (!cl->bad_path) {
            memcpy(cl->method, value + k, valuelen - k);
            cl->method[valuelen - k] = 0;
        }
    } else if (namelen == 12 && memcmp(name, "content-type", 12) == 0) {
        cl->bad_type = !(valuelen >= 16 && memcmp(value, "application/grpc", 16) == 0 &&
                         (valuelen == 16 || value[16] == '+' || value[16] == ';'));
    } else if (namelen == 12 && memcmp(name, "grpc-timeout", 12) == 0) {
        uint64_t t = parse_timeout(value, valuelen);
        if (t) cl->deadline_ns = sv_now_ns() + t;
    }
    return 0;
}

static int on_data(nghttp2_session *s, uint8_t flags, int32_t stream_id, const uint8_t *data, size_t len,
                   void *user)
{
    (void)flags;
    struct sv_grpc_conn *c = user;
    struct call *cl = nghttp2_session_get_stream_user_data(s, stream_id);
    if (!cl || cl->state != CALL_RECEIVING || cl->too_big) return 0;
    size_t limit = c->g->opt->max_body_bytes + 5;
    size_t max = c->g->opt->max_body_bytes,
           budget = max > SIZE_MAX / CONN_BUDGET ? SIZE_MAX : max * CONN_BUDGET;
    if (len > limit - cl->len ||
        (cl->len + len > cl->cap && c->buffered + (cl->len + len - cl->cap) > budget)) {
        bool own = len > limit - cl->len;
        cl->too_big = true;
        free(cl->body);
        cl->body = NULL;
        c->buffered -= cl->cap;
        cl->cap = cl->len = 0;
        char msg[200];
        if (own)
            snprintf(msg, sizeof msg, "the request message exceeds %zu bytes (--max-request-bytes)",
                     c->g->opt->max_body_bytes);
        else
            snprintf(msg, sizeof msg,
                     "the connection's calls hold over %u x --max-request-bytes of requests; retry "
                     "when some have finished",
                     CONN_BUDGET);
        call_reject(s, cl, GS_RESOURCE_EXHAUSTED, msg);
        return 0;
    }
    if (cl->len + len > cl->cap) {
        size_t cap = cl->cap ? cl->cap : 4096;
        while (cap < cl->len + len) cap *= 2;
        if (cap > limit) cap = limit;
        unsigned char *b = realloc(cl->body, cap);
        if (!b) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        c->buffered += cap - cl->cap;
        cl->body = b;
        cl->cap = cap;
    }
    memcpy(cl->body + cl->len, data, len);
    cl->len += len;
    return 0;
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *user)
{
    struct sv_grpc_conn *c = user;
    if ((f->hd.type != NGHTTP2_DATA && f->hd.type != NGHTTP2_HEADERS) ||
        !(f->hd.flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    struct call *cl = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (cl && cl->state == CALL_RECEIVING) call_start(c, cl);
    return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t stream_id, uint32_t error_code, void *user)
{
    (void)error_code;
    struct sv_grpc_conn *c = user;
    struct call *cl = nghttp2_session_get_stream_user_data(s, stream_id);
    if (!cl) return 0;
    nghttp2_session_set_stream_user_data(s, stream_id, NULL);
    unlink_call(c, cl);
    if (cl->state == CALL_RUNNING) { /* reset by the client: cancel the request, free it when it returns */
        cl->orphan = true;
        if (cl->cancel[1] >= 0) shutdown(cl->cancel[1], SHUT_RDWR);
        return 0;
    }
    call_free(cl);
    return 0;
}

static ssize_t on_send(nghttp2_session *s, const uint8_t *data, size_t len, int flags, void *user)
{
    (void)s, (void)flags;
    struct sv_grpc_conn *c = user;
    ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL);
    if (n < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK ? NGHTTP2_ERR_WOULDBLOCK
                                                       : NGHTTP2_ERR_CALLBACK_FAILURE;
    return n;
}

/* Takes back the calls whose threads finished: answers them, or frees the orphans. */
static void take_done(struct sv_grpc_conn *c)
{
    char buf[64];
    while (read(c->wake[0], buf, sizeof buf) > 0) {
    }
    pthread_mutex_lock(&c->mu);
    struct call *d = c->done;
    c->done = NULL;
    pthread_mutex_unlock(&c->mu);
    while (d) {
        struct call *next = d->next_done;
        c->running--;
        if (d->orphan || !c->s)
            call_free(d);
        else
            call_answer(c->s, d);
        d = next;
    }
}

static bool session_new(struct sv_grpc_conn *c)
{
    nghttp2_session_callbacks *cb;
    if (nghttp2_session_callbacks_new(&cb) != 0) return false;
    nghttp2_session_callbacks_set_send_callback(cb, on_send);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
    int rv = nghttp2_session_server_new(&c->s, cb, c);
    nghttp2_session_callbacks_del(cb);
    if (rv != 0) return false;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, MAX_STREAMS},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, (uint32_t)c->g->opt->max_header_bytes}};
    return nghttp2_submit_settings(c->s, NGHTTP2_FLAG_NONE, iv, 2) == 0;
}

static void *conn_thread(void *arg)
{
    struct sv_grpc_conn *c = arg;
    struct sv_grpc *g = c->g;
    if (!session_new(c)) goto end;
    uint8_t buf[16384];
    for (;;) {
        take_done(c);
        if (atomic_load(&g->stopping) && !c->goaway_sent) {
            nghttp2_submit_goaway(c->s, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(c->s),
                                  NGHTTP2_NO_ERROR, NULL, 0);
            c->goaway_sent = true;
        }
        if (nghttp2_session_send(c->s) != 0) break;
        bool want_write = nghttp2_session_want_write(c->s);
        if (!nghttp2_session_want_read(c->s) && !want_write) break;
        if (c->goaway_sent && !c->all && !want_write) break; /* drained */
        struct pollfd p[2] = {{.fd = c->fd, .events = (short)(POLLIN | (want_write ? POLLOUT : 0))},
                              {.fd = c->wake[0], .events = POLLIN}};
        if (poll(p, 2, 200) < 0 && errno != EINTR) break;
        if (p[0].revents & POLLIN) {
            ssize_t n = recv(c->fd, buf, sizeof buf, 0);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) break;
            if (n > 0 && nghttp2_session_mem_recv(c->s, buf, (size_t)n) < 0) {
                nghttp2_session_send(c->s); /* the GOAWAY nghttp2 queued for a protocol error */
                break;
            }
        } else if (p[0].revents & (POLLERR | POLLHUP)) {
            break;
        }
    }
end:
    /* Cancel what still runs, wait for it, then free every call. */
    for (struct call **p = &c->all; *p;) {
        struct call *cl = *p;
        if (cl->state != CALL_RUNNING) {
            p = &cl->next_all;
            continue;
        }
        *p = cl->next_all; /* freed when its thread hands it back */
        cl->orphan = true;
        if (cl->cancel[1] >= 0) shutdown(cl->cancel[1], SHUT_RDWR);
    }
    while (c->running) {
        struct pollfd p = {.fd = c->wake[0], .events = POLLIN};
        poll(&p, 1, 100);
        take_done(c);
    }
    while (c->all) {
        struct call *cl = c->all;
        c->all = cl->next_all;
        call_free(cl);
    }
    nghttp2_session_del(c->s);
    c->s = NULL;
    shutdown(c->fd, SHUT_RDWR); /* closed by conn_free, after the join */
    atomic_store(&c->finished, true);
    return NULL;
}

/* ------------------------------------------------------------------ the listener */

static void conn_free(struct sv_grpc_conn *c)
{
    pthread_join(c->th, NULL);
    close(c->fd);
    close(c->wake[0]);
    close(c->wake[1]);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

/* Joins the connections that ended (under g->mu). */
static void reap(struct sv_grpc *g)
{
    for (struct sv_grpc_conn **p = &g->conns; *p;) {
        struct sv_grpc_conn *c = *p;
        if (!atomic_load(&c->finished)) {
            p = &c->next;
            continue;
        }
        *p = c->next;
        g->n_conns--;
        conn_free(c);
    }
}

static void conn_start(struct sv_grpc *g, int fd)
{
    struct sv_grpc_conn *c = calloc(1, sizeof *c);
    if (!c || pipe2(c->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
        free(c);
        close(fd);
        return;
    }
    c->g = g;
    c->fd = fd;
    atomic_init(&c->finished, false);
    pthread_mutex_init(&c->mu, NULL);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    if (pthread_create(&c->th, NULL, conn_thread, c) != 0) {
        close(c->wake[0]), close(c->wake[1]);
        pthread_mutex_destroy(&c->mu);
        free(c);
        close(fd);
        return;
    }
    c->next = g->conns;
    g->conns = c;
    g->n_conns++;
}

static void *accept_thread(void *arg)
{
    struct sv_grpc *g = arg;
    for (;;) {
        struct pollfd p[2] = {{.fd = g->listen_fd, .events = POLLIN},
                              {.fd = g->stop_pipe[0], .events = POLLIN}};
        if (poll(p, 2, 1000) < 0 && errno != EINTR) break;
        if (p[1].revents) break;
        pthread_mutex_lock(&g->mu);
        reap(g);
        if (p[0].revents & POLLIN) {
            int fd = accept4(g->listen_fd, NULL, NULL, SOCK_CLOEXEC);
            if (fd >= 0 && g->n_conns >= g->opt->max_connections) {
                if (sv_verbose)
                    sv_log("grpc: connection refused: --max-connections (%u) reached",
                           g->opt->max_connections);
                close(fd);
            } else if (fd >= 0) {
                conn_start(g, fd);
            }
        }
        pthread_mutex_unlock(&g->mu);
    }
    return NULL;
}

bool sv_grpc_start(struct sv_grpc *g, char *err, size_t err_size)
{
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)g->opt->grpc_port);
    if (inet_pton(AF_INET, g->address, &sa.sin_addr) != 1) {
        snprintf(err, err_size, "--grpc-address '%s' is not an IPv4 address", g->address);
        return false;
    }
    atomic_init(&g->stopping, false);
    atomic_init(&g->in_flight, 0);
    g->conns = NULL;
    g->n_conns = 0;
    g->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (g->listen_fd >= 0) setsockopt(g->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    socklen_t sl = sizeof sa;
    if (g->listen_fd < 0 || bind(g->listen_fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        listen(g->listen_fd, 128) != 0 || getsockname(g->listen_fd, (struct sockaddr *)&sa, &sl) != 0) {
        snprintf(err, err_size, "cannot listen on %s:%d (gRPC port): %s", g->address, g->opt->grpc_port,
                 strerror(errno));
        if (g->listen_fd >= 0) close(g->listen_fd);
        return false;
    }
    g->port = ntohs(sa.sin_port);
    if (pipe2(g->stop_pipe, O_CLOEXEC) != 0) {
        snprintf(err, err_size, "cannot make a pipe: %s", strerror(errno));
        close(g->listen_fd);
        return false;
    }
    pthread_mutex_init(&g->mu, NULL);
    if (pthread_create(&g->accept_thread, NULL, accept_thread, g) != 0) {
        snprintf(err, err_size, "cannot start the gRPC accept thread");
        close(g->listen_fd), close(g->stop_pipe[0]), close(g->stop_pipe[1]);
        pthread_mutex_destroy(&g->mu);
        return false;
    }
    g->started = true;
    return true;
}

static void wake_all(struct sv_grpc *g)
{
    pthread_mutex_lock(&g->mu);
    for (struct sv_grpc_conn *c = g->conns; c; c = c->next) {
        ssize_t w = write(c->wake[1], "s", 1);
        (void)w;
    }
    pthread_mutex_unlock(&g->mu);
}

void sv_grpc_shutdown_begin(struct sv_grpc *g)
{
    if (!g->started) return;
    atomic_store(&g->stopping, true);
    ssize_t w = write(g->stop_pipe[1], "s", 1);
    (void)w;
    pthread_join(g->accept_thread, NULL);
    close(g->listen_fd);
    g->listen_fd = -1;
    wake_all(g); /* each sends GOAWAY */
}

static void abort_model(void *user, struct sv_model *m)
{
    (void)user;
    sv_sched_abort(m);
}

long sv_grpc_drain_and_stop(struct sv_grpc *g, unsigned timeout_s)
{
    if (!g->started) return 0;
    uint64_t deadline = sv_now_ns() + (uint64_t)timeout_s * 1000000000u;
    long left;
    while ((left = atomic_load(&g->in_flight)) > 0 && sv_now_ns() < deadline) usleep(10000);
    if (left > 0) {
        sv_repo_each(g->repo, abort_model, NULL);
        uint64_t grace = sv_now_ns() + 1000000000u;
        while (atomic_load(&g->in_flight) > 0 && sv_now_ns() < grace) usleep(10000);
    }
    /* Close what is left: each connection thread ends on its socket's shutdown. */
    pthread_mutex_lock(&g->mu);
    for (struct sv_grpc_conn *c = g->conns; c; c = c->next) shutdown(c->fd, SHUT_RDWR);
    while (g->conns) {
        struct sv_grpc_conn *c = g->conns;
        g->conns = c->next;
        conn_free(c);
    }
    g->n_conns = 0;
    pthread_mutex_unlock(&g->mu);
    pthread_mutex_destroy(&g->mu);
    close(g->stop_pipe[0]), close(g->stop_pipe[1]);
    g->started = false;
    return left;
}
