/* backend.h: what a device offers the engine.
 *
 * A backend is one static `struct kiln_backend`: its name, whether its memory is host
 * memory, which nodes it runs (per op, version and element type), and its memory, copies,
 * streams and events. The CPU backend (src/cpu/backend.c) is the first; a CUDA backend adds
 * a folder src/cuda/ with one more of these, registered when it finds a device
 * (kiln_backend_register), and changes nothing else.
 *
 * The builder (src/engine/builder.c) asks the configured device's backend for each node
 * (`find_op`); a node it cannot run falls back to the next backend in the list that can
 * (the CPU runs everything kiln has a kernel for), and the build log lists every such node.
 * Data crossing between backends whose memory is not the host's goes through `copy`
 * (not needed while every backend is host memory).
 *
 * Streams and events are opaque handles; a backend without queues (the CPU) runs
 * everything synchronously and gives NULL streams, and its events are always complete.
 * Thread safety: every function may be called from any thread; a stream is used by one
 * context at a time.
 */
#ifndef KILN_BACKEND_BACKEND_H
#define KILN_BACKEND_BACKEND_H

#include "ir/ir.h"

struct kiln_cpu_op;

enum kiln_copy_dir { KILN_COPY_H2D, KILN_COPY_D2H, KILN_COPY_D2D };

struct kiln_backend {
    const char *name;  /* "cpu", "cuda" */
    bool host_memory;  /* its tensors live in host memory (kernels of other host backends
                        * may read them directly) */
    /* The kernel for a node (op version resolved; `dtype` is input 0's element type, or
     * KILN_DTYPE_UNDEFINED when unknown); NULL when this backend cannot run it. */
    const struct kiln_cpu_op *(*find_op)(const char *domain, const char *op_type, int version,
                                         kiln_dtype dtype);
    /* Memory: `bytes` aligned to at least `align`; NULL on failure. */
    void *(*alloc)(size_t bytes, size_t align);
    void (*free)(void *p);
    KILN_NODISCARD kiln_status (*copy)(void *dst, const void *src, size_t bytes, enum kiln_copy_dir dir,
                                       void *stream, kiln_err *err);
    /* Streams (queues of work) and events (points in a stream). */
    KILN_NODISCARD kiln_status (*stream_create)(void **stream, kiln_err *err);
    void (*stream_destroy)(void *stream);
    KILN_NODISCARD kiln_status (*stream_sync)(void *stream, kiln_err *err);
    KILN_NODISCARD kiln_status (*event_record)(void *stream, void **event, kiln_err *err);
    KILN_NODISCARD kiln_status (*event_wait)(void *event, kiln_err *err);
    void (*event_destroy)(void *event);
};

/* The backends available, the CPU last (it is everyone's fallback); NULL-ended. */
const struct kiln_backend *const *kiln_backend_list(void);
/* By name ("cpu"); NULL when not available. */
const struct kiln_backend *kiln_backend_find(const char *name);
/* Adds a backend (a device backend's initialization, or a test's), before the CPU; `be`
 * must live as long as the process. Backends are never removed. Register before building
 * engines on other threads. */
KILN_NODISCARD kiln_status kiln_backend_register(const struct kiln_backend *be, kiln_err *err);

extern const struct kiln_backend kiln_cpu_backend;

#endif
