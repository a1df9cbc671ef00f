/* grpc_client.c: the test client of kiln serve's gRPC endpoint (tests/cli/serve_grpc.sh),
 * an HTTP/2 client over libnghttp2 with the messages of tools/serve/kserve_grpc.proto
 * (protobuf-c), since the test machine has neither grpcio nor grpcurl.
 *
 *   grpc_client PORT SRC_DIR check       every check below; exit 0 when all pass
 *   grpc_client PORT SRC_DIR drain PID   queues inferences on digits_slow, sends SIGTERM to
 *                                        PID, and checks that they all complete and that a
 *                                        GOAWAY arrives
 *   grpc_client PORT infer MODEL SPEC OUTDIR
 *                                        one ModelInfer (tests/serve/compare.py): SPEC has a
 *                                        line per input, "NAME DATATYPE RANK DIMS... FILE" (FILE:
 *                                        its raw_input_contents); writes OUTDIR/outputs.txt, a
 *                                        line per output "NAME DATATYPE RANK DIMS... FILE", and
 *                                        each output's raw contents in OUTDIR/out_K.bin
 *   grpc_client PORT repo MODEL          the repository calls on a server in explicit mode:
 *                                        RepositoryIndex, ModelStatistics,
 *                                        RepositoryModelUnload (ModelReady false, the index
 *                                        says UNAVAILABLE, ModelInfer UNAVAILABLE) and
 *                                        RepositoryModelLoad (ready again); exit 0 when all pass
 *
 * Reference data: demo/test_images.npy (16x1x8x8 float32) and demo/test_logits.npy (16x10
 * float32, ONNX Runtime's logits); logits must match within 1e-4 absolute (float32 math
 * in another order).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <nghttp2/nghttp2.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "kserve_grpc.pb-c.h"

static int fails;
#define CHECK(cond, ...)                                                                                     \
    do {                                                                                                     \
        if (!(cond)) {                                                                                       \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                             \
            fprintf(stderr, __VA_ARGS__);                                                                    \
            fputc('\n', stderr);                                                                             \
            fails++;                                                                                         \
        }                                                                                                    \
    } while (0)

struct rpc {
    int32_t sid;
    uint8_t *req;
    size_t req_len, req_off;
    uint8_t *resp;
    size_t resp_len;
    int status; /* grpc-status; -1 until it arrives */
    char msg[512];
    bool closed;
};

struct conn {
    int fd;
    nghttp2_session *s;
    bool goaway;
};

static ssize_t on_send(nghttp2_session *s, const uint8_t *d, size_t n, int f, void *u)
{
    (void)s, (void)f;
    struct conn *c = u;
    ssize_t w = send(c->fd, d, n, MSG_NOSIGNAL);
    return w < 0 ? NGHTTP2_ERR_CALLBACK_FAILURE : w;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nl,
                     const uint8_t *value, size_t vl, uint8_t flags, void *u)
{
    (void)flags, (void)u;
    struct rpc *r = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (!r) return 0;
    if (nl == 11 && memcmp(name, "grpc-status", 11) == 0) r->status = atoi((const char *)value);
    if (nl == 12 && memcmp(name, "grpc-message", 12) == 0)
        snprintf(r->msg, sizeof r->msg, "%.*s", (int)vl, (const char *)value);
    return 0;
}

static int on_data(nghttp2_session *s, uint8_t flags, int32_t sid, const uint8_t *d, size_t n, void *u)
{
    (void)flags, (void)u;
    struct rpc *r = nghttp2_session_get_stream_user_data(s, sid);
    if (!r) return 0;
    r->resp = realloc(r->resp, r->resp_len + n);
    memcpy(r->resp + r->resp_len, d, n);
    r->resp_len += n;
    return 0;
}

static int on_close(nghttp2_session *s, int32_t sid, uint32_t err, void *u)
{
    (void)err, (void)u;
    struct rpc *r = nghttp2_session_get_stream_user_data(s, sid);
    if (r) r->closed = true;
    return 0;
}

static int on_frame(nghttp2_session *s, const nghttp2_frame *f, void *u)
{
    (void)s;
    struct conn *c = u;
    if (f->hd.type == NGHTTP2_GOAWAY) c->goaway = true;
    return 0;
}

static bool conn_open(struct conn *c, int port)
{
    memset(c, 0, sizeof *c);
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) != 0) return false;
    nghttp2_session_callbacks *cb;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_send_callback(cb, on_send);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_close);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame);
    nghttp2_session_client_new(&c->s, cb, c);
    nghttp2_session_callbacks_del(cb);
    nghttp2_submit_settings(c->s, NGHTTP2_FLAG_NONE, NULL, 0);
    return true;
}

static void conn_close(struct conn *c)
{
    nghttp2_session_del(c->s);
    close(c->fd);
}

static ssize_t read_req(nghttp2_session *s, int32_t sid, uint8_t *buf, size_t len, uint32_t *flags,
                        nghttp2_data_source *src, void *u)
{
    (void)s, (void)sid, (void)u;
    struct rpc *r = src->ptr;
    size_t n = r->req_len - r->req_off;
    if (n > len) n = len;
    memcpy(buf, r->req + r->req_off, n);
    r->req_off += n;
    if (r->req_off == r->req_len) *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

#define NV(n, v)                                                                                             \
    {                                                                                                        \
        (uint8_t *)(n), (uint8_t *)(v), strlen(n), strlen(v), NGHTTP2_NV_FLAG_NONE                           \
    }

static const char *grpc_timeout; /* the next calls' grpc-timeout header; NULL: none */

/* Starts a call of METHOD with the raw body (already framed) in r. */
static void start_raw(struct conn *c, const char *method, struct rpc *r, uint8_t *body, size_t len)
{
    memset(r, 0, sizeof *r);
    r->status = -1;
    r->req = body;
    r->req_len = len;
    char path[128];
    snprintf(path, sizeof path, "/inference.GRPCInferenceService/%s", method);
    nghttp2_nv h[] = {NV(":method", "POST"),
                      NV(":scheme", "http"),
                      NV(":authority", "localhost"),
                      NV(":path", path),
                      NV("content-type", "application/grpc"),
                      NV("te", "trailers"),
                      NV("grpc-timeout", grpc_timeout ? grpc_timeout : "")};
    nghttp2_data_provider dp = {.source.ptr = r, .read_callback = read_req};
    r->sid = nghttp2_submit_request(c->s, NULL, h, grpc_timeout ? 7 : 6, &dp, r);
}

static uint8_t *frame(const ProtobufCMessage *m, size_t *len)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *b = malloc(n + 5);
    b[0] = 0, b[1] = (uint8_t)(n >> 24), b[2] = (uint8_t)(n >> 16), b[3] = (uint8_t)(n >> 8),
    b[4] = (uint8_t)n;
    protobuf_c_message_pack(m, b + 5);
    *len = n + 5;
    return b;
}

static void start(struct conn *c, const char *method, const ProtobufCMessage *m, struct rpc *r)
{
    size_t n;
    uint8_t *b = frame(m, &n);
    start_raw(c, method, r, b, n);
}

static int poll_ms = 10000; /* the longest wait for the server; `infer` waits for big models */

/* Runs the session until every call in rs[0..n) closed (or the peer went away). */
static void wait_all(struct conn *c, struct rpc *rs, size_t n)
{
    uint8_t buf[16384];
    for (;;) {
        bool all = true;
        for (size_t i = 0; i < n; i++) all = all && rs[i].closed;
        if (all) return;
        if (nghttp2_session_send(c->s) != 0) return;
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        if (poll(&p, 1, poll_ms) <= 0) {
            fprintf(stderr, "timeout waiting for the server\n");
            return;
        }
        ssize_t k = recv(c->fd, buf, sizeof buf, 0);
        if (k <= 0) return;
        if (nghttp2_session_mem_recv(c->s, buf, (size_t)k) < 0) return;
    }
}

/* The response message of a finished call (NULL when it failed or is malformed). */
static const uint8_t *body_of(const struct rpc *r, size_t *len)
{
    if (r->status != 0 || r->resp_len < 5) return NULL;
    *len = r->resp_len - 5;
    return r->resp + 5;
}

static void rpc_free(struct rpc *r)
{
    free(r->req);
    free(r->resp);
}

/* A .npy file's float32 data (a v1 header, little-endian '<f4'). */
static float *load_npy(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    unsigned char h[10];
    if (fread(h, 1, 10, f) != 10) return fclose(f), NULL;
    size_t hl = h[8] | (size_t)h[9] << 8;
    fseek(f, 0, SEEK_END);
    long end = ftell(f);
    fseek(f, (long)(10 + hl), SEEK_SET);
    *n = (size_t)(end - 10 - (long)hl) / 4;
    float *d = malloc(*n * 4);
    if (fread(d, 4, *n, f) != *n) {
        free(d);
        d = NULL;
    }
    fclose(f);
    return d;
}

static float *images, *logits;
static size_t n_images, n_logits;

/* ModelInferRequest for `model` with images [first, first+count). */
static void infer_request(Inference__ModelInferRequest *q, Inference__ModelInferRequest__InferInputTensor *in,
                          Inference__ModelInferRequest__InferInputTensor **pin,
                          Inference__InferTensorContents *tc, ProtobufCBinaryData *raw, int64_t *shape,
                          const char *model, size_t first, size_t count, bool typed)
{
    inference__model_infer_request__init(q);
    inference__model_infer_request__infer_input_tensor__init(in);
    q->model_name = (char *)model;
    in->name = (char *)"image";
    in->datatype = (char *)"FP32";
    shape[0] = (int64_t)count, shape[1] = 1, shape[2] = 8, shape[3] = 8;
    in->n_shape = 4;
    in->shape = shape;
    *pin = in;
    q->n_inputs = 1;
    q->inputs = pin;
    if (typed) {
        inference__infer_tensor_contents__init(tc);
        tc->n_fp32_contents = count * 64;
        tc->fp32_contents = images + first * 64;
        in->contents = tc;
    } else {
        raw->data = (uint8_t *)(images + first * 64);
        raw->len = count * 64 * 4;
        q->n_raw_input_contents = 1;
        q->raw_input_contents = raw;
    }
}

static void start_infer(struct conn *c, const char *model, size_t first, size_t count, bool typed,
                        struct rpc *r)
{
    Inference__ModelInferRequest q;
    Inference__ModelInferRequest__InferInputTensor in, *pin;
    Inference__InferTensorContents tc;
    ProtobufCBinaryData raw;
    int64_t shape[4];
    infer_request(&q, &in, &pin, &tc, &raw, shape, model, first, count, typed);
    start(c, "ModelInfer", &q.base, r);
}

/* The logits of a finished ModelInfer against the reference rows [first, first+count). */
static void check_logits(const struct rpc *r, size_t first, size_t count, const char *what)
{
    size_t len;
    const uint8_t *b = body_of(r, &len);
    CHECK(b, "%s: status %d (%s)", what, r->status, r->msg);
    if (!b) return;
    Inference__ModelInferResponse *a = inference__model_infer_response__unpack(NULL, len, b);
    CHECK(a, "%s: the response does not decode", what);
    if (!a) return;
    size_t k = 0;
    while (k < a->n_outputs && strcmp(a->outputs[k]->name, "logits") != 0) k++;
    CHECK(k < a->n_outputs && a->n_raw_output_contents == a->n_outputs, "%s: no logits output", what);
    if (k < a->n_outputs && a->n_raw_output_contents == a->n_outputs) {
        const Inference__ModelInferResponse__InferOutputTensor *o = a->outputs[k];
        CHECK(strcmp(o->datatype, "FP32") == 0 && o->n_shape == 2 && o->shape[0] == (int64_t)count &&
                  o->shape[1] == 10,
              "%s: logits is %s with %zu dims", what, o->datatype, o->n_shape);
        CHECK(a->raw_output_contents[k].len == count * 40, "%s: logits has %zu bytes", what,
              a->raw_output_contents[k].len);
        if (a->raw_output_contents[k].len == count * 40) {
            float got[16 * 10];
            memcpy(got, a->raw_output_contents[k].data, count * 40);
            double worst = 0;
            for (size_t i = 0; i < count * 10; i++)
                worst = fmax(worst, fabs(got[i] - logits[first * 10 + i]));
            CHECK(worst <= 1e-4, "%s: logits differ from ONNX Runtime's by %g (tolerance 1e-4)", what, worst);
        }
    }
    inference__model_infer_response__free_unpacked(a, NULL);
}

/* One unary call on its own; returns the rpc (free with rpc_free). */
static struct rpc call1(struct conn *c, const char *method, const ProtobufCMessage *m)
{
    struct rpc r;
    start(c, method, m, &r);
    wait_all(c, &r, 1);
    return r;
}

static void stats(struct conn *c, const char *model, uint64_t *inferences, uint64_t *execs, uint64_t *failed)
{
    Inference__ModelStatisticsRequest q = INFERENCE__MODEL_STATISTICS_REQUEST__INIT;
    q.name = (char *)model;
    struct rpc r = call1(c, "ModelStatistics", &q.base);
    size_t len;
    const uint8_t *b = body_of(&r, &len);
    Inference__ModelStatisticsResponse *a =
        b ? inference__model_statistics_response__unpack(NULL, len, b) : NULL;
    CHECK(a && a->n_model_stats == 1, "ModelStatistics %s: status %d (%s)", model, r.status, r.msg);
    *inferences = a && a->n_model_stats ? a->model_stats[0]->inference_count : 0;
    *execs = a && a->n_model_stats ? a->model_stats[0]->execution_count : 0;
    *failed = a && a->n_model_stats && a->model_stats[0]->inference_stats &&
                      a->model_stats[0]->inference_stats->fail
                  ? a->model_stats[0]->inference_stats->fail->count
                  : 0;
    if (a) inference__model_statistics_response__free_unpacked(a, NULL);
    rpc_free(&r);
}

static void check_server(struct conn *c)
{
    Inference__ServerLiveRequest lq = INFERENCE__SERVER_LIVE_REQUEST__INIT;
    struct rpc r = call1(c, "ServerLive", &lq.base);
    size_t len;
    const uint8_t *b = body_of(&r, &len);
    Inference__ServerLiveResponse *live = b ? inference__server_live_response__unpack(NULL, len, b) : NULL;
    CHECK(live && live->live, "ServerLive: status %d (%s)", r.status, r.msg);
    if (live) inference__server_live_response__free_unpacked(live, NULL);
    rpc_free(&r);

    Inference__ServerReadyRequest rq = INFERENCE__SERVER_READY_REQUEST__INIT;
    r = call1(c, "ServerReady", &rq.base);
    b = body_of(&r, &len);
    Inference__ServerReadyResponse *ready = b ? inference__server_ready_response__unpack(NULL, len, b) : NULL;
    CHECK(ready && ready->ready, "ServerReady: status %d (%s)", r.status, r.msg);
    if (ready) inference__server_ready_response__free_unpacked(ready, NULL);
    rpc_free(&r);

    Inference__ServerMetadataRequest mq = INFERENCE__SERVER_METADATA_REQUEST__INIT;
    r = call1(c, "ServerMetadata", &mq.base);
    b = body_of(&r, &len);
    Inference__ServerMetadataResponse *md =
        b ? inference__server_metadata_response__unpack(NULL, len, b) : NULL;
    CHECK(md && strcmp(md->name, "kiln") == 0 && md->n_extensions > 0, "ServerMetadata: status %d (%s)",
          r.status, r.msg);
    if (md) inference__server_metadata_response__free_unpacked(md, NULL);
    rpc_free(&r);
}

static void check_model_metadata(struct conn *c)
{
    Inference__ModelMetadataRequest q = INFERENCE__MODEL_METADATA_REQUEST__INIT;
    q.name = (char *)"digits";
    struct rpc r = call1(c, "ModelMetadata", &q.base);
    size_t len;
    const uint8_t *b = body_of(&r, &len);
    Inference__ModelMetadataResponse *a = b ? inference__model_metadata_response__unpack(NULL, len, b) : NULL;
    CHECK(a, "ModelMetadata: status %d (%s)", r.status, r.msg);
    if (a) {
        CHECK(strcmp(a->name, "digits") == 0 && a->n_versions == 1 && strcmp(a->versions[0], "1") == 0,
              "ModelMetadata: name/versions");
        CHECK(a->n_inputs == 1 && strcmp(a->inputs[0]->name, "image") == 0 &&
                  strcmp(a->inputs[0]->datatype, "FP32") == 0 && a->inputs[0]->n_shape == 4 &&
                  a->inputs[0]->shape[0] == -1 && a->inputs[0]->shape[3] == 8,
              "ModelMetadata: inputs");
        CHECK(a->n_outputs == 2, "ModelMetadata: %zu outputs, expected 2", a->n_outputs);
        inference__model_metadata_response__free_unpacked(a, NULL);
    }
    rpc_free(&r);

    Inference__ModelConfigRequest cq = INFERENCE__MODEL_CONFIG_REQUEST__INIT;
    cq.name = (char *)"digits";
    r = call1(c, "ModelConfig", &cq.base);
    b = body_of(&r, &len);
    Inference__ModelConfigResponse *cfg = b ? inference__model_config_response__unpack(NULL, len, b) : NULL;
    CHECK(cfg && cfg->config && cfg->config->max_batch_size == 16 && cfg->config->n_input == 1 &&
              cfg->config->input[0]->data_type == INFERENCE__DATA_TYPE__TYPE_FP32 &&
              cfg->config->dynamic_batching,
          "ModelConfig: status %d (%s)", r.status, r.msg);
    if (cfg) inference__model_config_response__free_unpacked(cfg, NULL);
    rpc_free(&r);

    Inference__ModelReadyRequest mq = INFERENCE__MODEL_READY_REQUEST__INIT;
    mq.name = (char *)"digits";
    r = call1(c, "ModelReady", &mq.base);
    b = body_of(&r, &len);
    Inference__ModelReadyResponse *mr = b ? inference__model_ready_response__unpack(NULL, len, b) : NULL;
    CHECK(mr && mr->ready, "ModelReady: status %d (%s)", r.status, r.msg);
    if (mr) inference__model_ready_response__free_unpacked(mr, NULL);
    rpc_free(&r);

    Inference__RepositoryIndexRequest iq = INFERENCE__REPOSITORY_INDEX_REQUEST__INIT;
    r = call1(c, "RepositoryIndex", &iq.base);
    b = body_of(&r, &len);
    Inference__RepositoryIndexResponse *ix =
        b ? inference__repository_index_response__unpack(NULL, len, b) : NULL;
    CHECK(ix && ix->n_models >= 2, "RepositoryIndex: status %d (%s)", r.status, r.msg);
    if (ix) inference__repository_index_response__free_unpacked(ix, NULL);
    rpc_free(&r);
}

static void check_errors(struct conn *c, int port)
{
    struct rpc r;
    start_infer(c, "no_such_model", 0, 1, false, &r);
    wait_all(c, &r, 1);
    CHECK(r.status == 5, "unknown model: grpc-status %d (%s), expected 5 NOT_FOUND", r.status, r.msg);
    rpc_free(&r);

    /* A message whose bytes are not a ModelInferRequest (field 1 as a varint of 10 bytes of 0xff). */
    uint8_t *bad = malloc(16);
    memcpy(bad, "\0\0\0\0\x0b\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 16);
    start_raw(c, "ModelInfer", &r, bad, 16);
    wait_all(c, &r, 1);
    CHECK(r.status == 3, "malformed message: grpc-status %d (%s), expected 3 INVALID_ARGUMENT", r.status,
          r.msg);
    rpc_free(&r);

    /* A length prefix that does not match the bytes. */
    bad = malloc(7);
    memcpy(bad, "\0\0\0\0\x09\x0a\x00", 7);
    start_raw(c, "ServerLive", &r, bad, 7);
    wait_all(c, &r, 1);
    CHECK(r.status == 3, "bad length prefix: grpc-status %d (%s), expected 3", r.status, r.msg);
    rpc_free(&r);

    /* Wrong shape: INVALID_ARGUMENT naming the input. */
    Inference__ModelInferRequest q;
    Inference__ModelInferRequest__InferInputTensor in, *pin;
    Inference__InferTensorContents tc;
    ProtobufCBinaryData raw;
    int64_t shape[4];
    infer_request(&q, &in, &pin, &tc, &raw, shape, "digits", 0, 1, false);
    shape[2] = 7;
    r = call1(c, "ModelInfer", &q.base);
    CHECK(r.status == 3 && strstr(r.msg, "image"), "wrong shape: grpc-status %d (%s)", r.status, r.msg);
    rpc_free(&r);

    /* Over --max-request-bytes (the test starts the server with 100000). */
    size_t big = 200000;
    bad = calloc(1, big + 5);
    bad[1] = (uint8_t)(big >> 24), bad[2] = (uint8_t)(big >> 16), bad[3] = (uint8_t)(big >> 8),
    bad[4] = (uint8_t)big;
    start_raw(c, "ModelInfer", &r, bad, big + 5);
    wait_all(c, &r, 1);
    CHECK(r.status == 8, "message over the limit: grpc-status %d (%s), expected 8 RESOURCE_EXHAUSTED",
          r.status, r.msg);
    rpc_free(&r);

    Inference__RepositoryModelLoadRequest ld = INFERENCE__REPOSITORY_MODEL_LOAD_REQUEST__INIT;
    ld.model_name = (char *)"digits";
    r = call1(c, "RepositoryModelLoad", &ld.base);
    CHECK(r.status == 9,
          "RepositoryModelLoad without explicit mode: grpc-status %d, expected 9 FAILED_PRECONDITION",
          r.status);
    rpc_free(&r);

    Inference__ModelReadyRequest mr = INFERENCE__MODEL_READY_REQUEST__INIT;
    mr.name = (char *)"digits";
    mr.version = (char *)"7";
    r = call1(c, "ModelReady", &mr.base);
    CHECK(r.status == 5, "ModelReady of version 7: grpc-status %d (%s), expected 5 NOT_FOUND", r.status,
          r.msg);
    rpc_free(&r);

    Inference__ServerLiveRequest lq = INFERENCE__SERVER_LIVE_REQUEST__INIT;
    r = call1(c, "ModelStreamInfer", &lq.base);
    CHECK(r.status == 12, "ModelStreamInfer: grpc-status %d, expected 12 UNIMPLEMENTED", r.status);
    rpc_free(&r);

    /* A broken HTTP/2 connection (garbage instead of the preface) does not take the server down. */
    struct conn g;
    if (conn_open(&g, port)) {
        ssize_t w = send(g.fd, "GET / HTTP/1.1\r\n\r\n", 18, MSG_NOSIGNAL);
        (void)w;
        char buf[256];
        struct pollfd p = {.fd = g.fd, .events = POLLIN};
        poll(&p, 1, 2000);
        ssize_t k = recv(g.fd, buf, sizeof buf, 0);
        (void)k;
        close(g.fd);
        nghttp2_session_del(g.s);
    }
    r = call1(c, "ServerLive", &lq.base);
    CHECK(r.status == 0, "ServerLive after the errors: grpc-status %d (%s)", r.status, r.msg);
    rpc_free(&r);
}

static Inference__InferParameter int_param(int64_t v)
{
    Inference__InferParameter p = INFERENCE__INFER_PARAMETER__INIT;
    p.parameter_choice_case = INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_INT64_PARAM;
    p.int64_param = v;
    return p;
}

/* Triton's classification extension over gRPC: logits asked with classification 3 come back
 * as BYTES [count, 3], each "<value>:<index>", the three largest logits of the row in
 * descending order; the `priority` parameter is accepted (digits has no priority levels, so
 * every request gets level 0). */
static void check_classification(struct conn *c)
{
    Inference__ModelInferRequest q;
    Inference__ModelInferRequest__InferInputTensor in, *pin;
    Inference__InferTensorContents tc;
    ProtobufCBinaryData raw;
    int64_t shape[4];
    const size_t first = 2, count = 4, k = 3;
    infer_request(&q, &in, &pin, &tc, &raw, shape, "digits", first, count, false);
    Inference__ModelInferRequest__InferRequestedOutputTensor out = INFERENCE__MODEL_INFER_REQUEST__INFER_REQUESTED_OUTPUT_TENSOR__INIT,
                                                             *pout = &out;
    Inference__InferParameter kp = int_param((int64_t)k), pp = int_param(1);
    Inference__ModelInferRequest__InferRequestedOutputTensor__ParametersEntry ke =
        INFERENCE__MODEL_INFER_REQUEST__INFER_REQUESTED_OUTPUT_TENSOR__PARAMETERS_ENTRY__INIT, *pke = &ke;
    ke.key = (char *)"classification";
    ke.value = &kp;
    out.name = (char *)"logits";
    out.n_parameters = 1;
    out.parameters = &pke;
    q.n_outputs = 1;
    q.outputs = &pout;
    Inference__ModelInferRequest__ParametersEntry pe = INFERENCE__MODEL_INFER_REQUEST__PARAMETERS_ENTRY__INIT, *ppe = &pe;
    pe.key = (char *)"priority";
    pe.value = &pp;
    q.n_parameters = 1;
    q.parameters = &ppe;
    struct rpc r = call1(c, "ModelInfer", &q.base);
    size_t len;
    const uint8_t *b = body_of(&r, &len);
    Inference__ModelInferResponse *a = b ? inference__model_infer_response__unpack(NULL, len, b) : NULL;
    CHECK(a && a->n_outputs == 1 && a->n_raw_output_contents == 1, "classification: status %d (%s)", r.status,
          r.msg);
    if (a && a->n_outputs == 1 && a->n_raw_output_contents == 1) {
        const Inference__ModelInferResponse__InferOutputTensor *o = a->outputs[0];
        CHECK(strcmp(o->datatype, "BYTES") == 0 && o->n_shape == 2 && o->shape[0] == (int64_t)count &&
                  o->shape[1] == (int64_t)k,
              "classification: %s with %zu dims", o->datatype, o->n_shape);
        const uint8_t *p = a->raw_output_contents[0].data, *end = p + a->raw_output_contents[0].len;
        for (size_t row = 0; row < count; row++) {
            const float *lg = logits + (first + row) * 10;
            bool used[10] = {false};
            for (size_t j = 0; j < k; j++) {
                size_t best = 0; /* the reference's j-th largest logit */
                for (size_t i = 0; i < 10; i++)
                    if (!used[i] && (used[best] || lg[i] > lg[best])) best = i;
                used[best] = true;
                uint32_t n = 0;
                if (end - p >= 4) memcpy(&n, p, 4);
                char text[64] = "";
                if (end - p >= 4 && n < sizeof text && (size_t)(end - p - 4) >= n) memcpy(text, p + 4, n);
                p += 4 + n;
                char *colon = strchr(text, ':');
                double value = atof(text);
                long index = colon ? strtol(colon + 1, NULL, 10) : -1;
                CHECK(index == (long)best && fabs(value - lg[best]) <= 1e-4,
                      "classification row %zu #%zu: '%s', expected index %zu value %g", row, j, text, best,
                      (double)lg[best]);
            }
        }
        CHECK(p == end, "classification: %td bytes left after %zu strings", end - p, count * k);
    }
    if (a) inference__model_infer_response__free_unpacked(a, NULL);
    rpc_free(&r);

    /* K above the 10 values per row, and a typed priority: INVALID_ARGUMENT. */
    kp = int_param(11);
    r = call1(c, "ModelInfer", &q.base);
    CHECK(r.status == 3, "classification 11 of 10: grpc-status %d (%s), expected 3", r.status, r.msg);
    rpc_free(&r);
    kp = int_param(2);
    pp.parameter_choice_case = INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_STRING_PARAM;
    pp.string_param = (char *)"high";
    r = call1(c, "ModelInfer", &q.base);
    CHECK(r.status == 3 && strstr(r.msg, "priority"), "priority 'high': grpc-status %d (%s), expected 3", r.status,
          r.msg);
    rpc_free(&r);
}

static void check_infer(struct conn *c)
{
    struct rpc r;
    start_infer(c, "digits", 0, 16, false, &r);
    wait_all(c, &r, 1);
    check_logits(&r, 0, 16, "ModelInfer raw_input_contents");
    rpc_free(&r);
    start_infer(c, "digits", 3, 5, true, &r);
    wait_all(c, &r, 1);
    check_logits(&r, 3, 5, "ModelInfer fp32_contents");
    rpc_free(&r);

    /* 16 calls at once on one connection: the batcher groups them. */
    uint64_t inf0, ex0, inf1, ex1, f0, f1;
    stats(c, "digits", &inf0, &ex0, &f0);
    struct rpc rs[16];
    for (size_t i = 0; i < 16; i++) start_infer(c, "digits", i, 1, i % 2 == 1, &rs[i]);
    wait_all(c, rs, 16);
    for (size_t i = 0; i < 16; i++) {
        char what[64];
        snprintf(what, sizeof what, "concurrent call %zu", i);
        check_logits(&rs[i], i, 1, what);
        rpc_free(&rs[i]);
    }
    stats(c, "digits", &inf1, &ex1, &f1);
    CHECK(inf1 - inf0 == 16, "16 concurrent calls counted %llu inferences",
          (unsigned long long)(inf1 - inf0));
    CHECK(ex1 - ex0 < inf1 - inf0, "16 concurrent calls ran in %llu executions: not batched",
          (unsigned long long)(ex1 - ex0));
    printf("16 concurrent calls on one connection: %llu executions\n", (unsigned long long)(ex1 - ex0));
    check_classification(c);
}

/* Cancelling a queued call (RST_STREAM) takes it out of the queue at once: digits_slow
 * waits 2 s for a batch, yet the call ends (counted as failed, never run) within 0.4 s. */
static void check_cancel(struct conn *c)
{
    uint64_t inf0, ex0, inf1, ex1, f0, f1;
    stats(c, "digits_slow", &inf0, &ex0, &f0);
    struct rpc r;
    start_infer(c, "digits_slow", 0, 1, false, &r);
    nghttp2_session_send(c->s);
    usleep(200000);
    nghttp2_submit_rst_stream(c->s, NGHTTP2_FLAG_NONE, r.sid, NGHTTP2_CANCEL);
    nghttp2_session_send(c->s);
    usleep(400000);
    stats(c, "digits_slow", &inf1, &ex1, &f1);
    CHECK(inf1 == inf0 && ex1 == ex0, "a cancelled call ran: inferences %llu -> %llu",
          (unsigned long long)inf0, (unsigned long long)inf1);
    CHECK(f1 == f0 + 1, "the cancelled call is not out of the queue: failures %llu -> %llu",
          (unsigned long long)f0, (unsigned long long)f1);
    rpc_free(&r);
}

/* grpc-timeout: a call queued on digits_slow (2 s batching delay) with 150 ms ends
 * DEADLINE_EXCEEDED, well before the batch would run. */
static void check_timeout(struct conn *c)
{
    struct rpc r;
    grpc_timeout = "150m";
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    start_infer(c, "digits_slow", 0, 1, false, &r);
    grpc_timeout = NULL;
    wait_all(c, &r, 1);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    CHECK(r.status == 4, "grpc-timeout 150m: grpc-status %d (%s), expected 4 DEADLINE_EXCEEDED", r.status,
          r.msg);
    CHECK(ms < 1500, "grpc-timeout 150m: the call took %.0f ms", ms);
    rpc_free(&r);
}

/* 256 mutations of a valid ModelInferRequest (bit flips, byte changes, truncations, with a
 * length prefix that matches) in batches of 16 streams: every call gets a status, and the
 * server stays up (under ASan in the sanitizer build). */
static void check_mutations(struct conn *c)
{
    Inference__ModelInferRequest q;
    Inference__ModelInferRequest__InferInputTensor in, *pin;
    Inference__InferTensorContents tc;
    ProtobufCBinaryData raw;
    int64_t shape[4];
    infer_request(&q, &in, &pin, &tc, &raw, shape, "digits", 0, 2, false);
    size_t n;
    uint8_t *good = frame(&q.base, &n);
    unsigned seed = 12345;
    int answered = 0;
    for (int round = 0; round < 16; round++) {
        struct rpc rs[16];
        for (int k = 0; k < 16; k++) {
            uint8_t *b = malloc(n);
            memcpy(b, good, n);
            size_t len = n;
            int kind = rand_r(&seed) % 3;
            for (int e = 0; e < 1 + rand_r(&seed) % 4; e++) {
                size_t at = 5 + (size_t)rand_r(&seed) % (n - 5);
                if (kind == 0)
                    b[at] ^= (uint8_t)(1u << (rand_r(&seed) % 8));
                else if (kind == 1)
                    b[at] = (uint8_t)rand_r(&seed);
                else
                    len = at;
            }
            size_t m = len - 5;
            b[1] = (uint8_t)(m >> 24), b[2] = (uint8_t)(m >> 16), b[3] = (uint8_t)(m >> 8), b[4] = (uint8_t)m;
            start_raw(c, "ModelInfer", &rs[k], b, len);
        }
        wait_all(c, rs, 16);
        for (int k = 0; k < 16; k++) {
            answered += rs[k].status >= 0;
            rpc_free(&rs[k]);
        }
    }
    free(good);
    CHECK(answered == 256, "mutated requests: %d of 256 got a status", answered);
    Inference__ServerLiveRequest lq = INFERENCE__SERVER_LIVE_REQUEST__INIT;
    struct rpc r = call1(c, "ServerLive", &lq.base);
    CHECK(r.status == 0, "ServerLive after the mutations: grpc-status %d (%s)", r.status, r.msg);
    rpc_free(&r);
}

/* ---------------------------------------------------------------- `infer`: one call from files */

static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    uint8_t *b = NULL;
    long n = -1;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) free(b), b = NULL;
    fclose(f);
    *len = b ? (size_t)n : 0;
    return b;
}

#define MAX_IO 256

static int infer_files(int port, const char *model, const char *spec, const char *outdir)
{
    FILE *f = fopen(spec, "r");
    if (!f) return fprintf(stderr, "cannot read %s\n", spec), 2;
    static Inference__ModelInferRequest__InferInputTensor in[MAX_IO], *pin[MAX_IO];
    static ProtobufCBinaryData raw[MAX_IO];
    static int64_t shapes[MAX_IO][16];
    static char names[MAX_IO][256], types[MAX_IO][16];
    size_t n = 0;
    int rc = 0;
    char path[4096];
    size_t rank;
    while (n < MAX_IO && fscanf(f, "%255s %15s %zu", names[n], types[n], &rank) == 3 && rank <= 16) {
        inference__model_infer_request__infer_input_tensor__init(&in[n]);
        for (size_t d = 0; d < rank; d++)
            if (fscanf(f, "%" SCNd64, &shapes[n][d]) != 1) rc = 2;
        if (fscanf(f, "%4095s", path) != 1) rc = 2;
        raw[n].data = rc ? NULL : read_file(path, &raw[n].len);
        if (!raw[n].data) {
            fprintf(stderr, "%s: bad line %zu or unreadable %s\n", spec, n + 1, path);
            rc = 2;
            break;
        }
        in[n].name = names[n];
        in[n].datatype = types[n];
        in[n].n_shape = rank;
        in[n].shape = shapes[n];
        pin[n] = &in[n];
        n++;
    }
    fclose(f);
    if (rc) goto out;
    Inference__ModelInferRequest q = INFERENCE__MODEL_INFER_REQUEST__INIT;
    q.model_name = (char *)model;
    q.n_inputs = n;
    q.inputs = pin;
    q.n_raw_input_contents = n;
    q.raw_input_contents = raw;
    struct conn c;
    if (!conn_open(&c, port)) {
        fprintf(stderr, "cannot connect to port %d\n", port);
        rc = 1;
        goto out;
    }
    poll_ms = 600000;
    struct rpc r = call1(&c, "ModelInfer", &q.base);
    size_t len;
    const uint8_t *b = body_of(&r, &len);
    Inference__ModelInferResponse *a = b ? inference__model_infer_response__unpack(NULL, len, b) : NULL;
    if (!a || a->n_raw_output_contents != a->n_outputs) {
        fprintf(stderr, "ModelInfer %s: grpc-status %d (%s)\n", model, r.status, r.msg);
        rc = 1;
    } else {
        snprintf(path, sizeof path, "%s/outputs.txt", outdir);
        FILE *o = fopen(path, "w");
        for (size_t k = 0; o && k < a->n_outputs; k++) {
            const Inference__ModelInferResponse__InferOutputTensor *t = a->outputs[k];
            snprintf(path, sizeof path, "%s/out_%zu.bin", outdir, k);
            FILE *g = fopen(path, "wb");
            if (!g || fwrite(a->raw_output_contents[k].data, 1, a->raw_output_contents[k].len, g) !=
                          a->raw_output_contents[k].len)
                rc = 2;
            if (g) fclose(g);
            fprintf(o, "%s %s %zu", t->name, t->datatype, t->n_shape);
            for (size_t d = 0; d < t->n_shape; d++) fprintf(o, " %" PRId64, t->shape[d]);
            fprintf(o, " %s\n", path);
        }
        if (!o || fclose(o) != 0) rc = 2;
    }
    if (a) inference__model_infer_response__free_unpacked(a, NULL);
    rpc_free(&r);
    conn_close(&c);
out:
    for (size_t i = 0; i < n; i++) free(raw[i].data);
    return rc;
}

/* ---------------------------------------------------------------- `repo`: load and unload */

static bool model_ready(struct conn *c, const char *model, int *status)
{
    Inference__ModelReadyRequest q = INFERENCE__MODEL_READY_REQUEST__INIT;
    q.name = (char *)model;
    struct rpc r = call1(c, "ModelReady", &q.base);
    size_t len;
    const uint8_t *b = body_of(&r, &len);
    Inference__ModelReadyResponse *a = b ? inference__model_ready_response__unpack(NULL, len, b) : NULL;
    bool ready = a && a->ready;
    *status = r.status;
    if (a) inference__model_ready_response__free_unpacked(a, NULL);
    rpc_free(&r);
    return ready;
}

/* The model's state in RepositoryIndex ("" when it is not listed). */
static void index_state(struct conn *c, const char *model, char *state, size_t size)
{
    Inference__RepositoryIndexRequest q = INFERENCE__REPOSITORY_INDEX_REQUEST__INIT;
    struct rpc r = call1(c, "RepositoryIndex", &q.base);
    size_t len;
    const uint8_t *b = body_of(&r, &len);
    Inference__RepositoryIndexResponse *a = b ? inference__repository_index_response__unpack(NULL, len, b) : NULL;
    CHECK(a, "RepositoryIndex: grpc-status %d (%s)", r.status, r.msg);
    state[0] = 0;
    for (size_t i = 0; a && i < a->n_models; i++)
        if (strcmp(a->models[i]->name, model) == 0) snprintf(state, size, "%s", a->models[i]->state);
    if (a) inference__repository_index_response__free_unpacked(a, NULL);
    rpc_free(&r);
}

static int repo_calls(int port, const char *model)
{
    struct conn c;
    if (!conn_open(&c, port)) return fprintf(stderr, "cannot connect to port %d\n", port), 1;
    int st;
    char state[64];
    CHECK(model_ready(&c, model, &st), "ModelReady %s before the unload: grpc-status %d", model, st);
    index_state(&c, model, state, sizeof state);
    CHECK(strcmp(state, "READY") == 0, "RepositoryIndex: %s is '%s', expected READY", model, state);

    Inference__ModelStatisticsRequest sq = INFERENCE__MODEL_STATISTICS_REQUEST__INIT;
    sq.name = (char *)model;
    struct rpc r = call1(&c, "ModelStatistics", &sq.base);
    size_t len;
    const uint8_t *b = body_of(&r, &len);
    Inference__ModelStatisticsResponse *sa = b ? inference__model_statistics_response__unpack(NULL, len, b) : NULL;
    CHECK(sa && sa->n_model_stats >= 1 && strcmp(sa->model_stats[0]->name, model) == 0 &&
              sa->model_stats[0]->inference_stats && sa->model_stats[0]->inference_stats->success &&
              sa->model_stats[0]->inference_stats->success->count > 0,
          "ModelStatistics %s: grpc-status %d (%s), or no successful inference counted", model, r.status, r.msg);
    if (sa) inference__model_statistics_response__free_unpacked(sa, NULL);
    rpc_free(&r);

    Inference__RepositoryModelUnloadRequest uq = INFERENCE__REPOSITORY_MODEL_UNLOAD_REQUEST__INIT;
    uq.model_name = (char *)model;
    r = call1(&c, "RepositoryModelUnload", &uq.base);
    CHECK(r.status == 0, "RepositoryModelUnload %s: grpc-status %d (%s)", model, r.status, r.msg);
    rpc_free(&r);
    CHECK(!model_ready(&c, model, &st), "ModelReady %s after the unload: still ready", model);
    index_state(&c, model, state, sizeof state);
    CHECK(strcmp(state, "READY") != 0, "RepositoryIndex after the unload: %s is still READY", model);
    Inference__ModelInferRequest iq = INFERENCE__MODEL_INFER_REQUEST__INIT;
    iq.model_name = (char *)model;
    r = call1(&c, "ModelInfer", &iq.base);
    CHECK(r.status == 14, "ModelInfer on the unloaded %s: grpc-status %d (%s), expected 14 UNAVAILABLE", model,
          r.status, r.msg);
    rpc_free(&r);

    Inference__RepositoryModelLoadRequest lq = INFERENCE__REPOSITORY_MODEL_LOAD_REQUEST__INIT;
    lq.model_name = (char *)model;
    r = call1(&c, "RepositoryModelLoad", &lq.base);
    CHECK(r.status == 0, "RepositoryModelLoad %s: grpc-status %d (%s)", model, r.status, r.msg);
    rpc_free(&r);
    CHECK(model_ready(&c, model, &st), "ModelReady %s after the load: grpc-status %d", model, st);
    index_state(&c, model, state, sizeof state);
    CHECK(strcmp(state, "READY") == 0, "RepositoryIndex after the load: %s is '%s'", model, state);
    lq.model_name = (char *)"no_such_model";
    r = call1(&c, "RepositoryModelLoad", &lq.base);
    CHECK(r.status != 0, "RepositoryModelLoad of a model the repository lacks succeeded");
    rpc_free(&r);
    conn_close(&c);
    return fails ? 1 : 0;
}

static int drain(int port, pid_t pid)
{
    struct conn c;
    if (!conn_open(&c, port)) return fprintf(stderr, "cannot connect\n"), 1;
    struct rpc rs[4];
    for (size_t i = 0; i < 4; i++) start_infer(&c, "digits_slow", i, 1, false, &rs[i]);
    nghttp2_session_send(c.s);
    usleep(300000); /* queued: digits_slow waits 2 s for more */
    kill(pid, SIGTERM);
    wait_all(&c, rs, 4);
    for (size_t i = 0; i < 4; i++) {
        check_logits(&rs[i], i, 1, "call in flight at SIGTERM");
        rpc_free(&rs[i]);
    }
    CHECK(c.goaway, "no GOAWAY after SIGTERM");
    conn_close(&c);
    return fails ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc < 4)
        return fprintf(stderr, "usage: grpc_client PORT SRC_DIR check|drain [PID] | PORT infer MODEL SPEC OUTDIR | "
                               "PORT repo MODEL\n"),
               2;
    signal(SIGPIPE, SIG_IGN);
    int port = atoi(argv[1]);
    if (strcmp(argv[2], "infer") == 0 && argc == 6) return infer_files(port, argv[3], argv[4], argv[5]);
    if (strcmp(argv[2], "repo") == 0 && argc == 4) {
        int rc = repo_calls(port, argv[3]);
        if (rc) fprintf(stderr, "%d check(s) failed\n", fails);
        else printf("all checks passed\n");
        return rc;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/demo/test_images.npy", argv[2]);
    images = load_npy(path, &n_images);
    snprintf(path, sizeof path, "%s/demo/test_logits.npy", argv[2]);
    logits = load_npy(path, &n_logits);
    if (!images || !logits || n_images != 16 * 64 || n_logits != 160)
        return fprintf(stderr, "cannot read the demo's reference data\n"), 2;
    int rc;
    if (strcmp(argv[3], "drain") == 0 && argc == 5) {
        rc = drain(port, (pid_t)atoi(argv[4]));
    } else {
        struct conn c;
        if (!conn_open(&c, port)) return fprintf(stderr, "cannot connect to port %d\n", port), 1;
        check_server(&c);
        check_model_metadata(&c);
        check_infer(&c);
        check_errors(&c, port);
        check_cancel(&c);
        check_timeout(&c);
        check_mutations(&c);
        conn_close(&c);
        rc = fails ? 1 : 0;
    }
    free(images);
    free(logits);
    if (rc)
        fprintf(stderr, "%d check(s) failed\n", fails);
    else
        printf("all checks passed\n");
    return rc;
}
