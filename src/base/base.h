/* base.h: status messages, allocation, arenas and overflow-checked sizes.
 *
 * Every layer of kiln includes this. Nothing here knows about ONNX.
 */
#ifndef KILN_BASE_H
#define KILN_BASE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kiln.h"

#if defined(__GNUC__)
#define KILN_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define KILN_PRINTF(a, b)
#endif

/* Sets err (if not NULL) to st and the formatted one-line message; returns st. */
kiln_status kiln_err_set(kiln_err *err, kiln_status st, const char *fmt, ...) KILN_PRINTF(3, 4);
kiln_status kiln_err_vset(kiln_err *err, kiln_status st, const char *fmt, va_list ap);
/* Prepends "prefix: " to an already-set message (used to add context on the way up). */
void kiln_err_prefix(kiln_err *err, const char *fmt, ...) KILN_PRINTF(2, 3);
void kiln_err_clear(kiln_err *err);

#define KILN_TRY(expr)                                                                         \
    do {                                                                                       \
        kiln_status kiln_try_st_ = (expr);                                                     \
        if (kiln_try_st_ != KILN_OK) return kiln_try_st_;                                      \
    } while (0)

/* All heap allocation goes through these. KILN_FAIL_ALLOC=N (environment) makes the Nth
 * allocation fail, to test out-of-memory paths. kiln_malloc(0) returns a valid pointer. */
void *kiln_malloc(size_t n);
/* Test hook: make the nth allocation from now fail (n >= 1), or none (n = 0). Overrides
 * KILN_FAIL_ALLOC. Returns how many allocations happened since the last call. */
long kiln_alloc_fail_after(long n);
void *kiln_calloc(size_t count, size_t size);
void *kiln_realloc(void *p, size_t n);
void kiln_free(void *p);
/* `align` (a power of two, at most 4096) aligned memory, counted like kiln_malloc; free it
 * with kiln_aligned_free (NULL is fine). */
void *kiln_aligned_alloc(size_t align, size_t n);
void kiln_aligned_free(void *p);
char *kiln_strdup(const char *s);

/* Overflow-checked size arithmetic: return false on overflow. */
static inline bool kiln_mul_size(size_t a, size_t b, size_t *out)
{
    return !__builtin_mul_overflow(a, b, out);
}
static inline bool kiln_add_size(size_t a, size_t b, size_t *out)
{
    return !__builtin_add_overflow(a, b, out);
}

/* Arena: bump allocation in chunks, freed as a whole. Returned memory is 16-byte aligned
 * and zero-filled. NULL on out-of-memory. An arena may be moved by copying the struct (the
 * copy then owns it). */
struct kiln_arena_chunk;
struct kiln_arena_cleanup;
struct kiln_arena {
    struct kiln_arena_chunk *head;
    struct kiln_arena_cleanup *cleanups; /* kiln_arena_on_free's, newest first */
};
void *kiln_arena_alloc(struct kiln_arena *a, size_t n);
void *kiln_arena_array(struct kiln_arena *a, size_t count, size_t size); /* checks overflow */
char *kiln_arena_strndup(struct kiln_arena *a, const char *s, size_t n);
/* Runs the cleanups (newest first), then frees every chunk. The arena is empty after. */
void kiln_arena_free(struct kiln_arena *a);
/* Makes kiln_arena_free(a) call fn(arg) before it frees the arena's memory (so arg may point
 * into the arena): for things the arena's contents own outside it, such as a plugin's
 * prepared state (src/plugin). The record lives in the arena. false on out-of-memory, when
 * nothing is registered. */
KILN_NODISCARD bool kiln_arena_on_free(struct kiln_arena *a, void (*fn)(void *arg), void *arg);

/* Read-only file mapping. */
struct kiln_mapping {
    const uint8_t *data;
    size_t size;
    bool mapped; /* true: munmap; false: kiln_free */
    uint64_t dev, ino; /* the mapped file's identity (kiln_mapping_read) */
};
KILN_NODISCARD kiln_status kiln_map_file(const char *path, struct kiln_mapping *m, kiln_err *err);
void kiln_unmap(struct kiln_mapping *m);
/* Asks for huge pages behind [off, off + n) of a file mapping (MADV_HUGEPAGE; nothing for a
 * kiln_malloc'd one): pages the kernel reads in afterwards come as 2 MB pages where the file
 * system allows. Advice only: no error, nothing changes for pages already in memory. */
void kiln_mapping_advise_huge(const struct kiln_mapping *m, size_t off, size_t n);
/* Copies bytes [off, off + n) of the mapped file (path: the name it was mapped from) into
 * dst, faulting dst's pages in first: by pread when path still names the mapped file (same
 * device and inode; faults taken inside pread cost several times more, and reading through
 * the mapping would fault in its 4 KB pages one by one), else from the mapping. Either way
 * the mapping's pages of the range are dropped from this process afterwards (MADV_DONTNEED:
 * they stay in the page cache and come back on the next read; safe, the mapping is
 * read-only), so resident memory does not hold the range twice. */
void kiln_mapping_read(const struct kiln_mapping *m, const char *path, size_t off, size_t n, uint8_t *dst);

/* Writes bytes to path atomically (temporary file in the same folder, then rename). */
KILN_NODISCARD kiln_status kiln_write_file_atomic(const char *path, const void *data, size_t n,
                                                  kiln_err *err);

/* Growable byte buffer with a cap (0 = no cap beyond SIZE_MAX). */
struct kiln_buf {
    uint8_t *data;
    size_t len, cap, limit;
    bool failed; /* an append failed (NOMEM or limit); later appends do nothing */
};
void kiln_buf_append(struct kiln_buf *b, const void *p, size_t n);
void kiln_buf_free(struct kiln_buf *b);

#endif /* KILN_BASE_H */
