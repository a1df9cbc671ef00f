/* backend.c: the CPU as a backend (backend/backend.h): host memory, every kernel of
 * src/cpu/ops and of loaded plugins, synchronous execution (no streams; events are always
 * complete). */
#include <string.h>

#include "backend/backend.h"
#include "cpu/kernel.h"

static const struct kiln_cpu_op *cpu_find_op(const char *domain, const char *op_type, int version,
                                             kiln_dtype dtype)
{
    (void)dtype; /* CPU kernels take every type their op allows, checking at run */
    return kiln_cpu_find_op(domain, op_type, version);
}

static void *cpu_alloc(size_t bytes, size_t align)
{
    return kiln_aligned_alloc(align < 64 ? 64 : align, bytes);
}

static kiln_status cpu_copy(void *dst, const void *src, size_t bytes, enum kiln_copy_dir dir, void *stream,
                            kiln_err *err)
{
    (void)dir, (void)stream, (void)err;
    if (bytes) memmove(dst, src, bytes);
    return KILN_OK;
}

static kiln_status cpu_stream_create(void **stream, kiln_err *err)
{
    (void)err;
    *stream = NULL;
    return KILN_OK;
}

static void cpu_stream_destroy(void *stream)
{
    (void)stream;
}

static kiln_status cpu_stream_sync(void *stream, kiln_err *err)
{
    (void)stream, (void)err;
    return KILN_OK;
}

static kiln_status cpu_event_record(void *stream, void **event, kiln_err *err)
{
    (void)stream, (void)err;
    *event = NULL;
    return KILN_OK;
}

static kiln_status cpu_event_wait(void *event, kiln_err *err)
{
    (void)event, (void)err;
    return KILN_OK;
}

const struct kiln_backend kiln_cpu_backend = {
    .name = "cpu",
    .host_memory = true,
    .find_op = cpu_find_op,
    .alloc = cpu_alloc,
    .free = kiln_aligned_free,
    .copy = cpu_copy,
    .stream_create = cpu_stream_create,
    .stream_destroy = cpu_stream_destroy,
    .stream_sync = cpu_stream_sync,
    .event_record = cpu_event_record,
    .event_wait = cpu_event_wait,
    .event_destroy = cpu_stream_destroy,
};
