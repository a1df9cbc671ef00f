/* serve.h: shared declarations of `kiln serve` (tools/serve/, docs/serve.md), a server of
 * Triton's model repository over the KServe v2 protocol, built on kiln's public API only.
 *
 *   config.c    config.pbtxt (through pbtxt.c) -> struct sv_config, auto-completed from the model
 *   codec.c     KServe datatypes and the binary tensor format (raw bytes <-> kiln values)
 *   repo.c      the model repository: versions, load, unload, reference counts
 *   sched.c     the per-model queue, dynamic batcher and instance threads
 *   metrics.c   per-model statistics, Prometheus text and the statistics JSON
 *   infer.c     an inference request: JSON and binary tensors in, outputs out
 *   http.c      the HTTP endpoints (libmicrohttpd)
 *   grpc.c      the gRPC endpoint (libnghttp2, protobuf-c; kserve_grpc.proto)
 *   serve.c     the command: options, startup, signals, drain
 */
#ifndef KILN_SERVE_H
#define KILN_SERVE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kiln.h"
#include "pbtxt.h"

#define SV_MAX_RANK 16
#define SV_NAME_MAX 256

/* ------------------------------------------------------------------ datatypes (codec.c) */

/* KServe names ("FP32", "BYTES", ...) and config names ("TYPE_FP32", "TYPE_STRING", ...) of
 * kiln's element types; NULL for a type the protocol cannot carry. */
const char *sv_dtype_kserve(kiln_dtype dt);
const char *sv_dtype_config(kiln_dtype dt);
/* The inverse maps; KILN_DTYPE_UNDEFINED for an unknown name. */
kiln_dtype sv_dtype_from_kserve(const char *name);
kiln_dtype sv_dtype_from_config(const char *name);
/* Bytes per element in kiln's layout and on the wire (equal for every type the protocol
 * carries); 0 for BYTES (variable) and unknown types. */
size_t sv_dtype_size(kiln_dtype dt);

/* A tensor made for a request: a kiln value plus, for BYTES, the strings it points to,
 * owned here (kiln's own empty-string pointers are put back before the value is freed). */
struct sv_tensor {
    kiln_value *v;
    char **saved;  /* BYTES: kiln's original element pointers */
    char *strings; /* BYTES: every element, NUL-terminated, one after another */
};
void sv_tensor_fini(struct sv_tensor *t); /* zeroed or half-built is fine */

/* Product of dims with overflow and limit checks: false (message in err) when a dim is
 * negative or the count exceeds max_elems. */
bool sv_numel(int rank, const int64_t *dims, size_t max_elems, size_t *out, char *err, size_t err_size);
/* A new tensor of type dt and shape dims from `len` bytes of the binary tensor format:
 * raw little-endian elements, or for BYTES each element as a 4-byte little-endian length
 * and that many bytes. The bytes must hold exactly the shape's elements. false with a
 * message naming the tensor when they do not (t is left empty). */
bool sv_tensor_from_binary(const char *name, kiln_dtype dt, int rank, const int64_t *dims, const void *buf,
                           size_t len, size_t max_elems, struct sv_tensor *t, char *err, size_t err_size);
/* An empty tensor (zeros; BYTES elements set later with sv_tensor_set_strings). */
bool sv_tensor_create(const char *name, kiln_dtype dt, int rank, const int64_t *dims, size_t max_elems,
                      struct sv_tensor *t, char *err, size_t err_size);
/* BYTES: points element i at strings (n elements, lens[i] bytes each, laid out one after
 * another in `data`); the tensor takes a NUL-terminated copy. */
bool sv_tensor_set_strings(struct sv_tensor *t, const char *const *data, const size_t *lens, size_t n,
                           char *err, size_t err_size);
/* The binary-format size of elements [first, first+count) of a tensor's data (dt: element
 * type; for BYTES data is an array of char *). SIZE_MAX when it would overflow. */
size_t sv_binary_size(kiln_dtype dt, const void *data, size_t first, size_t count);
/* Writes those elements in the binary format to dst (sv_binary_size bytes). */
void sv_binary_write(kiln_dtype dt, const void *data, size_t first, size_t count, unsigned char *dst);

/* ------------------------------------------------------------------ classification (classify.c) */

/* Whether an output of type dt can be classified (real numeric types and BOOL). */
bool sv_classify_supported(kiln_dtype dt);
/* Triton's classification of elements [first, first+count) of a numeric tensor, as `rows`
 * rows: for each row its k largest values, descending, as "<value>:<index>[:<label>]"
 * (labels[index] when index < n_labels). On success *out_ptrs holds rows*k strings that
 * point into *out_buf; free both. false with a message when k is 0 or above the values per
 * row, or on out of memory. */
bool sv_classify(kiln_dtype dt, const void *data, size_t first, size_t count, size_t rows, size_t k,
                 char *const *labels, size_t n_labels, char ***out_ptrs, char **out_buf, char *err, size_t err_size);

/* ------------------------------------------------------------------ config (config.c) */

struct sv_io {
    char *name;
    kiln_dtype dtype;
    int rank; /* dims as configured, without the batch dim when max_batch_size > 0 */
    int64_t dims[SV_MAX_RANK];
    bool has_reshape;
    int reshape_rank; /* the model's shape (without the batch dim) */
    int64_t reshape[SV_MAX_RANK];
    bool optional;
    size_t model_index; /* position among the model's inputs / outputs */
    char *label_filename; /* outputs: labels for classification, one per line */
    char **labels;        /* read by repo.c at load; labels[i] names index i */
    size_t n_labels;
};

enum sv_version_policy { SV_VERSIONS_LATEST, SV_VERSIONS_ALL, SV_VERSIONS_SPECIFIC };

/* Triton's ModelQueuePolicy: what a queue (the model's, or one priority level's) does with
 * its requests' timeouts and how many it holds. */
struct sv_queue_policy {
    uint64_t default_timeout_us; /* 0: none */
    bool timeout_delay;          /* timeout_action DELAY (else REJECT) */
    bool allow_timeout_override; /* a request's timeout may shorten default_timeout_us */
    int64_t max_queue_size;      /* 0: unbounded */
};

/* dynamic_batching.priority_queue_policy: one level's policy. */
struct sv_level_policy {
    uint64_t level;
    struct sv_queue_policy policy;
};

#define SV_MAX_LEVEL_POLICIES 256

struct sv_config {
    char *name, *platform, *backend, *default_model_filename;
    int64_t max_batch_size;
    bool has_max_batch_size;
    struct sv_io *inputs, *outputs;
    size_t n_inputs, n_outputs;
    bool dynamic_batching;
    int64_t preferred[16];
    int n_preferred;
    uint64_t max_queue_delay_us;
    bool preserve_ordering;
    struct sv_queue_policy queue; /* default_queue_policy */
    uint64_t priority_levels;       /* 0: one level (no priorities) */
    uint64_t default_priority_level; /* 1..priority_levels when priority_levels > 0 */
    struct sv_level_policy *level_policies; /* priority_queue_policy, sorted by level */
    size_t n_level_policies;
    int instance_count;
    enum sv_version_policy version_policy;
    int64_t latest_versions;
    int64_t *versions; /* SV_VERSIONS_SPECIFIC */
    size_t n_versions;
    char **param_keys, **param_values;
    size_t n_params;
};

typedef void (*sv_warn_fn)(void *user, const char *message);

/* Reads a parsed config.pbtxt into cfg (zeroed first). Unknown fields are reported through
 * warn and ignored; malformed values of known fields fail (message in err). */
bool sv_config_from_pbtxt(const struct pbtxt_msg *msg, struct sv_config *cfg, sv_warn_fn warn, void *user,
                          char *err, size_t err_size);
/* Fills what the config leaves out from the model and checks the rest against it (as
 * Triton's auto-complete): inputs and outputs, max_batch_size (default_max_batch when the
 * model's every input and output has a dynamic first dim, else 0), instance count 1. */
bool sv_config_complete(struct sv_config *cfg, const kiln_model *m, const char *name, int64_t default_max_batch,
                        char *err, size_t err_size);
void sv_config_fini(struct sv_config *cfg);
/* A request's priority level from the `priority` it asked for (0: none), as Triton's
 * InferenceRequest::SetPriority: 0 or a level above priority_levels gets
 * default_priority_level; without priority levels every request is level 0. */
uint64_t sv_config_priority(const struct sv_config *cfg, uint64_t requested);
/* The queue policy of a priority level: its priority_queue_policy entry, else the default. */
const struct sv_queue_policy *sv_config_queue_policy(const struct sv_config *cfg, uint64_t level);

/* ------------------------------------------------------------------ the batcher (batcher.c) */

#define SV_MAX_BATCH_REQUESTS 1024

/* The dynamic batcher's choice: how many of the oldest queued requests form the next batch,
 * or 0 to wait for more. rows[0..n) are the batch rows of the oldest requests that may share
 * a batch with the first (same non-batch dims), in queue order; more: the request after
 * them may not (so they cannot grow). expired: the oldest has waited
 * max_queue_delay_microseconds; stopping: the scheduler drains. Without dynamic batching
 * (or with max_batch_size 0) a batch is one request. */
size_t sv_batch_decide(const struct sv_config *c, const int64_t *rows, size_t n, bool more, bool expired,
                       bool stopping);

struct sv_request;
/* The queue of a model version (batcher.c, so that its order can be tested alone): requests
 * sorted by priority level (1 first; 0 when the model has no levels) and, within a level, by
 * arrival, except that requests whose timeout passed with timeout_action DELAY (r->delayed)
 * come after the level's other requests, as in Triton's priority queue. */
struct sv_queue {
    struct sv_request *head, *tail;
    size_t n;
};
/* Inserts r at its place (after every queued request of a higher or equal rank). */
void sv_queue_push(struct sv_queue *q, struct sv_request *r);
/* Unlinks r, whose predecessor is prev (NULL for the head). */
void sv_queue_unlink(struct sv_queue *q, struct sv_request *prev, struct sv_request *r);
/* The queued requests of a priority level. */
size_t sv_queue_level_count(const struct sv_queue *q, uint64_t level);
/* preserve_ordering: the requests whose batches finished, waiting for their turn (the order
 * they were taken off the queue). sv_ready_take unlinks and returns the one numbered
 * `order`, or NULL while it has not finished. */
void sv_ready_add(struct sv_request **ready, struct sv_request *r);
struct sv_request *sv_ready_take(struct sv_request **ready, uint64_t order);

/* ------------------------------------------------------------------ statistics (metrics.c) */

struct sv_stats {
    pthread_mutex_t mu;
    uint64_t success, failure;            /* requests */
    uint64_t inference_count, exec_count; /* samples (batch rows) and model executions */
    uint64_t request_ns, queue_ns, compute_ns, fail_ns;
    uint64_t last_inference_ms;
    atomic_long pending; /* queued or running */
};

/* ------------------------------------------------------------------ models (repo.c, sched.c) */

struct sv_model;
struct sv_worker;

/* Scheduler of one loaded model version: a queue (FIFO per priority level) and
 * instance_count threads, each with its own kiln context on the version's engine. */
struct sv_sched {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct sv_queue q;
    bool stopping;
    uint64_t next_order;   /* preserve_ordering: the number the next request taken gets */
    uint64_t next_deliver; /* ... and the number whose response goes out next */
    struct sv_request *ready; /* finished, waiting for next_deliver to reach them */
    struct sv_worker *workers; /* one per instance: a thread, a context, run options */
    size_t n_workers;
    struct sv_model *model;
};

/* One loaded version of a model. Reference counted: lookups take a reference, requests hold
 * it until their response is written; the last sv_model_unref frees it. */
struct sv_model {
    char *name;
    int64_t version;
    char version_str[24];
    struct sv_config cfg;
    kiln_engine *engine;
    const kiln_model *m; /* the engine's model */
    const char **in_names; /* model input names in model order */
    struct sv_sched sched;
    struct sv_stats stats;
    atomic_int refs;
    bool sched_inited, sched_started;
};

void sv_model_unref(struct sv_model *m); /* NULL is fine */

/* Scheduler lifecycle: start builds the contexts and threads; stop lets the threads finish
 * every queued request, then joins them (new submissions fail from then on). */
bool sv_sched_start(struct sv_model *m, char *err, size_t err_size);
void sv_sched_stop(struct sv_model *m);
/* For a shutdown past its deadline: fails every queued request, cancels the running ones
 * (kiln_run_options_cancel) and refuses new ones; sv_sched_stop still joins the threads. */
void sv_sched_abort(struct sv_model *m);
/* Frees the scheduler's lock and condition; for the last reference's free only. */
void sv_sched_fini(struct sv_model *m);

/* An inference request as the scheduler sees it (built by infer.c). Inputs are in model
 * input order; batch is the rows of the batch dim (1 for a model without batching). */
struct sv_request {
    struct sv_model *model;
    struct sv_tensor *in; /* model input count entries */
    int64_t batch;
    uint64_t enqueue_ns, deadline_ns; /* deadline 0: none */
    uint64_t priority;                   /* level (sv_config_priority) */
    const struct sv_queue_policy *policy; /* the level's policy (NULL: the default) */
    bool delayed;                        /* its timeout passed under timeout_action DELAY */
    uint64_t order;                      /* preserve_ordering: taken off the queue as number */
    /* results */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    kiln_status status;
    int http_status;
    bool unloading; /* submission refused because the model version is being unloaded */
    char msg[1100];
    struct sv_batch_result *result; /* shared with the batch's other requests */
    int64_t row0;                   /* first row of this request in result's outputs */
    uint64_t queue_ns, compute_ns;
    struct sv_request *next;
    /* Scheduler state, under the model's sched.mu. */
    enum { SV_REQ_NEW, SV_REQ_QUEUED, SV_REQ_RUNNING, SV_REQ_FINISHED } phase;
    struct sv_worker *worker; /* SV_REQ_RUNNING: the instance running it */
    int client_fd;            /* the connection's socket, watched while waiting; -1: none */
};

/* Outputs of one model execution, shared by the requests of its batch. */
struct sv_batch_result {
    kiln_value **outs;
    size_t n_outs;
    atomic_int refs;
};
void sv_batch_result_unref(struct sv_batch_result *r);

/* Queues r on its model (which must hold a reference). false with r->http_status and
 * r->msg set when the queue is full or the model is unloading; otherwise the request
 * completes later: sv_request_wait returns when it has. */
bool sv_sched_submit(struct sv_request *r);
/* Waits for r to complete. While it waits it watches r->client_fd (when >= 0): a client
 * that closed its connection cancels the request: taken out of the queue when still queued,
 * its run stopped (kiln_run_options_cancel) when it runs alone; a run shared with other
 * requests finishes. */
void sv_request_wait(struct sv_request *r);

uint64_t sv_now_ns(void);

/* ------------------------------------------------------------------ the repository (repo.c) */

enum sv_control_mode { SV_CONTROL_NONE, SV_CONTROL_EXPLICIT, SV_CONTROL_POLL };

struct sv_options {
    const char *repository;
    int http_port, metrics_port;
    int grpc_port; /* -1: no gRPC endpoint */
    enum sv_control_mode control;
    const char **load_models;
    int n_load_models;
    int threads; /* per context; 0: kiln's default */
    bool verbose;
    size_t max_body_bytes, max_header_bytes, max_elements;
    size_t max_json_bytes; /* the JSON part of a request (its parse takes ~20x its size) */
    unsigned max_connections;
    unsigned exit_timeout_s;
    unsigned poll_secs; /* SV_CONTROL_POLL: seconds between repository scans */
    int64_t default_max_batch;
};

struct sv_entry; /* a model name in the repository and its loaded versions */

struct sv_repo {
    const struct sv_options *opt;
    pthread_mutex_t mu;
    struct sv_entry *entries;
    size_t n_entries, cap;
    pthread_mutex_t load_mu; /* serializes loads and unloads */
};

/* True when `name` can name a model folder: 1..255 bytes of letters, digits, '-', '_', '.',
 * not starting with '.' (so never '.', '..' or a hidden file) and without '/'. */
bool sv_model_name_ok(const char *name);
bool sv_repo_init(struct sv_repo *r, const struct sv_options *opt, char *err, size_t err_size);
void sv_repo_fini(struct sv_repo *r); /* unloads everything (draining each model) */
/* Loads (or reloads) model `name` from the repository; on a reload the old versions drain
 * after the new ones are in place. false with a message when the model cannot be loaded
 * (it is then UNAVAILABLE with that reason). */
bool sv_repo_load(struct sv_repo *r, const char *name, char *err, size_t err_size);
/* Loads every model folder of the repository; false when any failed (messages logged). */
bool sv_repo_load_all(struct sv_repo *r);
/* Poll mode: one pass over the repository. A model folder whose contents (names, sizes,
 * modification times, three levels deep) changed since the last pass is loaded or reloaded
 * (a failed reload keeps the loaded versions); a folder that is gone is unloaded. The first
 * pass loads everything. */
void sv_repo_poll(struct sv_repo *r);
/* No model folder is UNAVAILABLE (failed to load). */
bool sv_repo_all_loaded(struct sv_repo *r);
/* Unloads `name`, letting its queued requests finish. false when it is not loaded. */
bool sv_repo_unload(struct sv_repo *r, const char *name, char *err, size_t err_size);
/* A reference to a loaded version (version 0: the newest); NULL when there is none, with
 * *known set when the name is in the repository at all. */
struct sv_model *sv_repo_get(struct sv_repo *r, const char *name, int64_t version, bool *known);
/* Calls fn for every loaded version (under the repository lock; fn must not call back). */
void sv_repo_each(struct sv_repo *r, void (*fn)(void *user, struct sv_model *m), void *user);
/* The repository index as JSON text (malloc'd): every model folder with its state. */
char *sv_repo_index_json(struct sv_repo *r);

/* ------------------------------------------------------------------ metrics (metrics.c) */

/* Prometheus text exposition of every loaded version's counters (malloc'd). */
char *sv_metrics_text(struct sv_repo *r);
void sv_stats_init(struct sv_stats *s);
void sv_stats_fini(struct sv_stats *s);
void sv_stats_request(struct sv_stats *s, bool ok, uint64_t request_ns, uint64_t queue_ns, uint64_t compute_ns);
void sv_stats_exec(struct sv_stats *s, int64_t rows);

/* ------------------------------------------------------------------ logging (serve.c) */

extern bool sv_verbose;
void sv_log(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

#endif /* KILN_SERVE_H */
