/* serve.c: `kiln serve`: options (Triton's names and default ports), loading the repository,
 * starting the HTTP and metrics ports, and the shutdown on SIGTERM/SIGINT: readiness turns
 * 503, no new connections are accepted, in-flight requests finish (up to
 * --exit-timeout-secs), then every model drains its queue and the process exits 0.
 *
 * Signals are blocked in every thread and taken by sigwait in the main thread, so no
 * handler runs in the middle of a request.
 */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../cli/cli.h"
#include "http.h"
#ifdef KILN_HAVE_GRPC
#include "grpc.h"
#endif
#include "serve.h"

bool sv_verbose;

void sv_log(const char *fmt, ...)
{
    char line[1200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    fprintf(stderr, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ kiln serve: %s\n", tm.tm_year + 1900, tm.tm_mon + 1,
            tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, line);
}

static bool parse_size(const char *s, size_t lo, size_t hi, size_t *out)
{
    long v;
    if (!cli_parse_int(s, 0, 0x7fffffffL, &v)) {
        /* larger values: plain decimal up to hi */
        char *end;
        unsigned long long u = strtoull(s, &end, 10);
        if (!*s || *end || s[0] == '-' || u < lo || u > hi) return false;
        *out = (size_t)u;
        return true;
    }
    if ((size_t)v < lo || (size_t)v > hi) return false;
    *out = (size_t)v;
    return true;
}

/* Parses the options into o; CLI_OK or the usage status (message printed). */
static int parse_options(int argc, char **argv, struct sv_options *o, const char **address)
{
    o->http_port = 8000;
    o->metrics_port = 8002;
#ifdef KILN_HAVE_GRPC
    o->grpc_port = 8001;
#else
    o->grpc_port = -1;
#endif
    o->control = SV_CONTROL_NONE;
    o->max_body_bytes = 64u << 20;
    o->max_header_bytes = 16u << 10;
    o->max_json_bytes = 16u << 20;
    o->max_elements = 64u << 20;
    o->max_connections = 256;
    o->exit_timeout_s = 30;
    o->default_max_batch = 4;
    o->poll_secs = 15;
    o->load_models = calloc((size_t)argc + 1, sizeof *o->load_models);
    if (!o->load_models) return cli_error("out of memory");
    for (int i = 0; i < argc; i++) {
        bool missing = false;
        const char *v;
        long n;
        size_t z;
        if ((v = cli_opt_value(argc, argv, &i, "--model-repository", &missing)) ||
            (v = cli_opt_value(argc, argv, &i, "--model-store", &missing))) {
            o->repository = v;
        } else if ((v = cli_opt_value(argc, argv, &i, "--http-port", &missing))) {
            if (!cli_parse_int(v, 0, 65535, &n)) return cli_usage("serve", "--http-port takes 0..65535; got '%s'", v);
            o->http_port = (int)n;
        } else if ((v = cli_opt_value(argc, argv, &i, "--metrics-port", &missing))) {
            if (!cli_parse_int(v, 0, 65535, &n)) return cli_usage("serve", "--metrics-port takes 0..65535; got '%s'", v);
            o->metrics_port = (int)n;
        } else if ((v = cli_opt_value(argc, argv, &i, "--grpc-port", &missing))) {
#ifdef KILN_HAVE_GRPC
            if (!cli_parse_int(v, 0, 65535, &n)) return cli_usage("serve", "--grpc-port takes 0..65535; got '%s'", v);
            if (o->grpc_port >= 0) o->grpc_port = (int)n;
#else
            fprintf(stderr, "kiln serve: --grpc-port %s: this kiln was built without gRPC (libnghttp2-dev, "
                    "libprotobuf-c-dev); serving HTTP/REST only\n", v);
#endif
        } else if ((v = cli_opt_value(argc, argv, &i, "--allow-grpc", &missing))) {
            if (strcmp(v, "false") == 0) o->grpc_port = -1;
            else if (strcmp(v, "true") != 0) return cli_usage("serve", "--allow-grpc takes true or false");
        } else if ((v = cli_opt_value(argc, argv, &i, "--allow-metrics", &missing))) {
            if (strcmp(v, "false") == 0) o->metrics_port = -1;
            else if (strcmp(v, "true") != 0) return cli_usage("serve", "--allow-metrics takes true or false");
        } else if ((v = cli_opt_value(argc, argv, &i, "--http-address", &missing))) {
            *address = v;
        } else if ((v = cli_opt_value(argc, argv, &i, "--model-control-mode", &missing))) {
            if (strcmp(v, "none") == 0) o->control = SV_CONTROL_NONE;
            else if (strcmp(v, "explicit") == 0) o->control = SV_CONTROL_EXPLICIT;
            else if (strcmp(v, "poll") == 0) o->control = SV_CONTROL_POLL;
            else return cli_usage("serve", "--model-control-mode takes none, explicit or poll; got '%s'", v);
        } else if ((v = cli_opt_value(argc, argv, &i, "--repository-poll-secs", &missing))) {
            if (!cli_parse_int(v, 1, 86400, &n))
                return cli_usage("serve", "--repository-poll-secs takes 1..86400; got '%s'", v);
            o->poll_secs = (unsigned)n;
        } else if ((v = cli_opt_value(argc, argv, &i, "--load-model", &missing))) {
            o->load_models[o->n_load_models++] = v;
        } else if ((v = cli_opt_value(argc, argv, &i, "--threads", &missing))) {
            if (!cli_parse_int(v, 0, 1024, &n)) return cli_usage("serve", "--threads takes 0..1024; got '%s'", v);
            o->threads = (int)n;
        } else if ((v = cli_opt_value(argc, argv, &i, "--max-request-bytes", &missing))) {
            if (!parse_size(v, 1024, (size_t)1 << 34, &z))
                return cli_usage("serve", "--max-request-bytes takes 1024..2^34; got '%s'", v);
            o->max_body_bytes = z;
        } else if ((v = cli_opt_value(argc, argv, &i, "--max-json-bytes", &missing))) {
            if (!parse_size(v, 1024, (size_t)1 << 34, &z))
                return cli_usage("serve", "--max-json-bytes takes 1024..2^34; got '%s'", v);
            o->max_json_bytes = z;
        } else if ((v = cli_opt_value(argc, argv, &i, "--max-header-bytes", &missing))) {
            if (!parse_size(v, 2048, 1u << 24, &z))
                return cli_usage("serve", "--max-header-bytes takes 2048..2^24; got '%s'", v);
            o->max_header_bytes = z;
        } else if ((v = cli_opt_value(argc, argv, &i, "--max-tensor-elements", &missing))) {
            if (!parse_size(v, 1, (size_t)1 << 40, &z))
                return cli_usage("serve", "--max-tensor-elements takes 1..2^40; got '%s'", v);
            o->max_elements = z;
        } else if ((v = cli_opt_value(argc, argv, &i, "--max-connections", &missing))) {
            if (!cli_parse_int(v, 1, 65536, &n)) return cli_usage("serve", "--max-connections takes 1..65536; got '%s'", v);
            o->max_connections = (unsigned)n;
        } else if ((v = cli_opt_value(argc, argv, &i, "--exit-timeout-secs", &missing))) {
            if (!cli_parse_int(v, 0, 86400, &n)) return cli_usage("serve", "--exit-timeout-secs takes 0..86400; got '%s'", v);
            o->exit_timeout_s = (unsigned)n;
        } else if ((v = cli_opt_value(argc, argv, &i, "--default-max-batch-size", &missing))) {
            if (!cli_parse_int(v, 0, 1 << 20, &n)) return cli_usage("serve", "--default-max-batch-size takes 0..2^20; got '%s'", v);
            o->default_max_batch = n;
        } else if (strcmp(argv[i], "--verbose") == 0 || strcmp(argv[i], "-v") == 0) {
            o->verbose = true;
        } else if (missing) {
            return cli_usage("serve", "%s needs a value", argv[i]);
        } else {
            return cli_usage("serve", "unknown option '%s'", argv[i]);
        }
    }
    if (!o->repository) return cli_usage("serve", "--model-repository DIR is required");
    if (o->n_load_models && o->control != SV_CONTROL_EXPLICIT)
        return cli_usage("serve", "--load-model needs --model-control-mode explicit");
    return CLI_OK;
}

/* Loads the startup models: all (mode none, or explicit with --load-model '*'), or the named ones. */
static bool load_startup(struct sv_repo *repo, const struct sv_options *o)
{
    if (o->control == SV_CONTROL_NONE) return sv_repo_load_all(repo);
    if (o->control == SV_CONTROL_POLL) {
        sv_repo_poll(repo);
        return sv_repo_all_loaded(repo);
    }
    bool ok = true;
    for (int i = 0; i < o->n_load_models; i++) {
        char err[1024];
        if (strcmp(o->load_models[i], "*") == 0) ok = sv_repo_load_all(repo) && ok;
        else if (!sv_repo_load(repo, o->load_models[i], err, sizeof err)) ok = false;
    }
    return ok;
}

/* The poll thread of --model-control-mode poll: a repository pass every poll_secs until
 * stop is set. */
struct poller {
    struct sv_repo *repo;
    unsigned secs;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
    pthread_t thread;
};

static void *poll_main(void *arg)
{
    struct poller *p = arg;
    pthread_mutex_lock(&p->mu);
    while (!p->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += p->secs;
        while (!p->stop && pthread_cond_timedwait(&p->cv, &p->mu, &ts) == 0) {}
        if (p->stop) break;
        pthread_mutex_unlock(&p->mu);
        sv_repo_poll(p->repo);
        pthread_mutex_lock(&p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static bool poller_start(struct poller *p, struct sv_repo *repo, unsigned secs)
{
    memset(p, 0, sizeof *p);
    p->repo = repo;
    p->secs = secs;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, &ca);
    pthread_condattr_destroy(&ca);
    return pthread_create(&p->thread, NULL, poll_main, p) == 0;
}

static void poller_stop(struct poller *p)
{
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->thread, NULL);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
}

int cli_serve(int argc, char **argv)
{
    struct sv_options o = {0};
    const char *address = "0.0.0.0";
    int rc = parse_options(argc, argv, &o, &address);
    if (rc != CLI_OK) {
        free(o.load_models);
        return rc;
    }
    sv_verbose = o.verbose;
    const uint16_t one = 1;
    if (*(const unsigned char *)&one != 1) {
        free(o.load_models);
        return cli_error("serve: the binary tensor format is little-endian; this host is not");
    }
    /* Block the signals before any thread starts, so that every thread inherits the mask
     * and only sigwait below takes them. SIGPIPE: a client that goes away must not kill us. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct sv_repo repo;
    char err[1024];
    if (!sv_repo_init(&repo, &o, err, sizeof err)) {
        free(o.load_models);
        return cli_error("serve: %s", err);
    }
    struct sv_http http = {.repo = &repo, .opt = &o, .address = address};
    atomic_init(&http.in_flight, 0);
    atomic_init(&http.stopping, false);
    atomic_init(&http.ready, false);
    /* Listen first (health/live answers while models load), then load. */
    if (!sv_http_start(&http, err, sizeof err)) {
        sv_repo_fini(&repo);
        free(o.load_models);
        return cli_error("serve: %s", err);
    }
#ifdef KILN_HAVE_GRPC
    struct sv_grpc grpc = {.repo = &repo, .opt = &o, .address = address, .ready = &http.ready};
    if (o.grpc_port >= 0 && !sv_grpc_start(&grpc, err, sizeof err)) {
        sv_http_drain_and_stop(&http, 0);
        sv_repo_fini(&repo);
        free(o.load_models);
        return cli_error("serve: %s", err);
    }
#endif
    printf("kiln serve: HTTP on %s:%d\n", address, http.api_port);
#ifdef KILN_HAVE_GRPC
    if (o.grpc_port >= 0) printf("kiln serve: gRPC on %s:%d\n", address, grpc.port);
#endif
    if (http.metrics) printf("kiln serve: metrics on %s:%d/metrics\n", address, http.metrics_port);
    fflush(stdout);
    bool loaded = load_startup(&repo, &o);
    /* As Triton with --exit-on-error=false would: serve what loaded; readiness says whether all did. */
    atomic_store(&http.ready, loaded);
    printf("kiln serve: %s\n", loaded ? "ready" : "ready, but some models failed to load (health/ready is 503)");
    fflush(stdout);

    struct poller poller;
    bool polling = o.control == SV_CONTROL_POLL && poller_start(&poller, &repo, o.poll_secs);
    if (o.control == SV_CONTROL_POLL && !polling) fprintf(stderr, "kiln serve: cannot start the poll thread\n");
    int sig = 0;
    sigwait(&set, &sig);
    if (polling) poller_stop(&poller); /* finishes a pass under way first */
    fprintf(stderr, "kiln serve: %s: draining in-flight requests (up to %u s)\n", sig == SIGTERM ? "SIGTERM" : "SIGINT",
            o.exit_timeout_s);
#ifdef KILN_HAVE_GRPC
    uint64_t t0 = sv_now_ns();
    sv_grpc_shutdown_begin(&grpc); /* GOAWAY: the calls under way go on while HTTP drains */
#endif
    long left = sv_http_drain_and_stop(&http, o.exit_timeout_s);
#ifdef KILN_HAVE_GRPC
    uint64_t spent_s = (sv_now_ns() - t0) / 1000000000u;
    left += sv_grpc_drain_and_stop(&grpc, spent_s >= o.exit_timeout_s ? 0 : o.exit_timeout_s - (unsigned)spent_s);
#endif
    sv_repo_fini(&repo);
    free(o.load_models);
    if (left > 0) {
        fprintf(stderr, "kiln serve: %ld requests were still in flight at the exit timeout\n", left);
        return CLI_FAIL;
    }
    fprintf(stderr, "kiln serve: stopped\n");
    return CLI_OK;
}
