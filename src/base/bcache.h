/* bcache.h: a cache of large heap blocks, so that a session running the same graph again and
 * again reuses its intermediate tensors' memory instead of returning it to the system and
 * faulting fresh pages in on the next run (for BERT-base that was ~17 000 page faults and
 * an mmap/munmap pair per large tensor, every run).
 *
 * Blocks come from kiln_malloc and go back to the cache with kiln_bcache_put; a block taken
 * with kiln_bcache_take is an ordinary kiln_malloc block again (kiln_free may free it, so a
 * tensor holding one can leave the session as a graph output). take picks the smallest cached
 * block of at least `bytes` and at most twice that; the cache holds at most `limit` bytes
 * (put frees what does not fit). Thread-safe (one mutex). The memory plan of a later engine
 * stage replaces this for planned graphs.
 */
#ifndef KILN_BASE_BCACHE_H
#define KILN_BASE_BCACHE_H

#include <stddef.h>

#include "base/base.h"

/* Blocks below this size are left to malloc, which recycles them well already. */
#define KILN_BCACHE_MIN_BYTES ((size_t)64 << 10)

struct kiln_bcache;

/* NULL on out-of-memory (callers then run without a cache). */
struct kiln_bcache *kiln_bcache_create(size_t limit);
/* Frees the cached blocks and the cache. NULL is fine. */
void kiln_bcache_free(struct kiln_bcache *c);
/* A block of at least `bytes` (contents undefined), or NULL when none fits (or c is NULL or
 * bytes is below KILN_BCACHE_MIN_BYTES): the caller then allocates. */
void *kiln_bcache_take(struct kiln_bcache *c, size_t bytes);
/* Gives p (a kiln_malloc block of at least `bytes`) to the cache, or frees it when the
 * cache is NULL, full, or bytes is below KILN_BCACHE_MIN_BYTES. */
void kiln_bcache_put(struct kiln_bcache *c, void *p, size_t bytes);
/* Bytes held now (for tests). */
size_t kiln_bcache_held(struct kiln_bcache *c);

#endif
