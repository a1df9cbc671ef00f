/* infer.h: one KServe v2 inference request over HTTP (infer.c) and the JSON documents of
 * the other model endpoints (model_json.c), independent of the HTTP library. */
#ifndef KILN_SERVE_INFER_H
#define KILN_SERVE_INFER_H

#include "serve.h"

/* A response: status, body (malloc'd), and for a binary response the length of its JSON
 * header (0: the whole body is JSON). */
struct sv_response {
    int status;
    char *body;
    size_t len;
    size_t json_len;
};

/* Sets resp to an error: status and {"error": "<message>"}. */
void sv_response_error(struct sv_response *resp, int status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* Sets resp to 200 with the JSON text s (taken; NULL means out of memory: 500). */
void sv_response_json(struct sv_response *resp, char *s);

/* Runs the inference request in body (len bytes) on model m. header_len is the value of
 * the Inference-Header-Content-Length header, or -1 when absent (the whole body is JSON).
 * client_fd: the connection's socket, watched for the client going away (-1: not watched).
 * Always fills resp. Returns false (resp a 503) only when m was being unloaded before the
 * request could be queued: the caller may look the model up again (a reload has put a new
 * version in place) and retry; otherwise the request is counted in m's statistics. */
bool sv_infer(const struct sv_options *opt, struct sv_model *m, const char *body, size_t len, long long header_len,
              int client_fd, struct sv_response *resp);

/* A decoded inference request (sv_infer_decode): the request, ready for sv_request_run,
 * and what its response needs. */
struct req_output;
struct sv_decoded {
    void *root;              /* the parsed JSON header (json_t; id points into it) */
    struct sv_request *r;    /* NULL when decoding failed before it was made */
    struct req_output *outs; /* the requested outputs */
    size_t n_outs;
    const char *id;          /* the request's "id", echoed in the response, or NULL */
    bool binary_all;
};
/* Decodes an inference request body (the part sv_infer does before it queues it; kept apart
 * for tests/fuzz/fuzz_serve_infer.c): body holds len bytes, its first header_len of them JSON
 * (-1: all). true with d filled; false with resp set (4xx, or 500 out of memory). Either way
 * free d with sv_decoded_fini. */
bool sv_infer_decode(const struct sv_options *opt, struct sv_model *m, const char *body, size_t len,
                     long long header_len, int client_fd, struct sv_decoded *d, struct sv_response *resp);
void sv_decoded_fini(struct sv_decoded *d);

/* ------------------------------------------------------------------ the shared request path
 * Both front ends (http.c through sv_infer, grpc.c directly) build a struct sv_request with
 * these, so that checks, limits, scheduling and statistics are the same. */

/* A new request on m (which the caller keeps a reference to); NULL when out of memory.
 * client_fd: a socket watched for the client going away (-1: none). */
struct sv_request *sv_request_new(struct sv_model *m, int client_fd);
void sv_request_free(struct sv_request *r); /* NULL is fine */
/* A request's priority level and deadline from its `priority` (0: the default level) and
 * `timeout` (µs; has_timeout: given) parameters under its level's queue policy, and the
 * front end's own deadline (gRPC's grpc-timeout; 0: none), whichever ends first. */
void sv_request_schedule(struct sv_request *r, uint64_t priority, bool has_timeout, uint64_t timeout_us,
                         uint64_t call_deadline_ns);

/* Where an input's data goes: the tensor to create, its type and the dims the model gets
 * (the request's dims, or the configured reshape after the batch dim). */
struct sv_input_slot {
    struct sv_tensor *t;
    kiln_dtype dtype;
    int rank;
    int64_t dims[SV_MAX_RANK];
};
/* Checks an input (name, KServe datatype, shape) against m's config and r's batch size so
 * far; seen[] (one per configured input) catches repeats. false with resp set (400). */
bool sv_request_input(struct sv_model *m, struct sv_request *r, bool *seen, const char *name, const char *dtname,
                      int rank, const int64_t *dims, struct sv_input_slot *slot, struct sv_response *resp);
/* Every configured input was given; n_given is the request's input count (for the message). */
bool sv_request_inputs_complete(const struct sv_model *m, const bool *seen, size_t n_given, struct sv_response *resp);
/* Queues r and waits for it. false with resp set: *unloading when the model version was
 * being unloaded before r could be queued (look it up again and retry, uncounted). */
bool sv_request_run(struct sv_request *r, bool *unloading, struct sv_response *resp);

/* A completed request's share of one output: elements [first, first+count) of data. */
struct sv_out_view {
    kiln_dtype dt;
    int rank;
    int64_t dims[SV_MAX_RANK];
    const void *data;
    size_t first, count;
    char **class_ptrs; /* a classification's strings (data points here), owned */
    char *class_buf;
};
void sv_output_view(const struct sv_model *m, const struct sv_request *r, size_t cfg_index, struct sv_out_view *v);
/* Turns v (of output io) into its classification (Triton's extension): BYTES of shape
 * [rows, k] ([k] without batching), "<value>:<index>[:<label>]" per element; v then owns
 * class_ptrs and class_buf (free both). false with resp set (400) when k exceeds the values
 * per row, or out of memory. */
bool sv_output_classify(const struct sv_model *m, const struct sv_request *r, const struct sv_io *io, int64_t k,
                        struct sv_out_view *v, struct sv_response *resp);

/* Model metadata, configuration (Triton's ModelConfig as JSON) and statistics. */
char *sv_model_metadata_json(const struct sv_model *m, const char *const *versions, size_t n_versions);
char *sv_model_config_json(const struct sv_model *m);

#endif /* KILN_SERVE_INFER_H */
