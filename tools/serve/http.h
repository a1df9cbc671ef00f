/* http.h: the HTTP front of kiln serve (http.c): the KServe v2 REST endpoints on one port
 * and Prometheus metrics on another, served by libmicrohttpd with one thread per connection
 * (a connection waits for its inference while the batcher gathers others). */
#ifndef KILN_SERVE_HTTP_H
#define KILN_SERVE_HTTP_H

#include "serve.h"

struct sv_http {
    struct MHD_Daemon *api, *metrics;
    struct sv_repo *repo;
    const struct sv_options *opt;
    const char *address; /* IPv4 address to bind, "0.0.0.0" by default */
    atomic_long in_flight; /* requests between their first byte and their response */
    atomic_bool stopping;  /* set on SIGTERM: health/ready turns 503, new requests are refused */
    atomic_bool ready;     /* startup models loaded */
    int api_port, metrics_port; /* bound ports (useful with port 0) */
};

/* Starts both daemons (metrics_port < 0: no metrics). false with a message. */
bool sv_http_start(struct sv_http *h, char *err, size_t err_size);
/* Stops accepting connections, waits up to timeout_s for in-flight requests, cancels the
 * inferences still queued or running at the deadline (their requests get 503), then stops
 * the daemons. Returns the number of requests still in flight at the deadline. */
long sv_http_drain_and_stop(struct sv_http *h, unsigned timeout_s);

#endif /* KILN_SERVE_HTTP_H */
