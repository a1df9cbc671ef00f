/* grpc.h: the gRPC front of kiln serve (grpc.c): service inference.GRPCInferenceService
 * (Triton's grpc_service.proto, messages in kserve_grpc.proto) over HTTP/2 (libnghttp2),
 * messages encoded and decoded by protobuf-c. One thread per connection runs its HTTP/2
 * session; each call runs on a thread of its own through the same request path as HTTP
 * (infer.h), so that calls of one connection are batched together. */
#ifndef KILN_SERVE_GRPC_H
#define KILN_SERVE_GRPC_H

#include "serve.h"

struct sv_grpc_conn;

struct sv_grpc {
    struct sv_repo *repo;
    const struct sv_options *opt;
    const char *address;      /* IPv4 address to bind */
    const atomic_bool *ready; /* startup models loaded (the HTTP front's flag) */
    int port;                 /* bound port (useful with port 0) */
    /* internal */
    int listen_fd, stop_pipe[2];
    pthread_t accept_thread;
    bool started;
    atomic_bool stopping;
    atomic_long in_flight; /* calls between their headers and their last frame */
    pthread_mutex_t mu;
    struct sv_grpc_conn *conns;
    size_t n_conns;
};

/* Listens on opt->grpc_port and starts accepting. false with a message. */
bool sv_grpc_start(struct sv_grpc *g, char *err, size_t err_size);
/* SIGTERM: stops accepting, tells every connection GOAWAY (new calls are refused) and lets
 * the calls under way finish. */
void sv_grpc_shutdown_begin(struct sv_grpc *g);
/* Waits up to timeout_s for the calls in flight, cancels what is left (their calls end
 * UNAVAILABLE), closes the connections and joins the threads. Returns the calls still in
 * flight at the deadline. */
long sv_grpc_drain_and_stop(struct sv_grpc *g, unsigned timeout_s);

#endif /* KILN_SERVE_GRPC_H */
