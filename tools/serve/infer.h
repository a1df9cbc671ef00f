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

/* Model metadata, configuration (Triton's ModelConfig as JSON) and statistics. */
char *sv_model_metadata_json(const struct sv_model *m, const char *const *versions, size_t n_versions);
char *sv_model_config_json(const struct sv_model *m);

#endif /* KILN_SERVE_INFER_H */
