/* base.c: error messages, the fault-injectable allocator, arenas and capped buffers. */
#include "base/base.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* ------------------------------------------------------------------ status and errors */

#define KILN_STR2(x) #x
#define KILN_STR(x) KILN_STR2(x)
const char *kiln_version(void)
{
    return KILN_STR(KILN_VERSION_MAJOR) "." KILN_STR(KILN_VERSION_MINOR) "." KILN_STR(KILN_VERSION_PATCH);
}

const char *kiln_status_name(kiln_status st)
{
    switch (st) {
    case KILN_OK: return "ok";
    case KILN_E_INVALID_MODEL: return "invalid model";
    case KILN_E_UNSUPPORTED: return "unsupported";
    case KILN_E_INVALID_ARG: return "invalid argument";
    case KILN_E_NOMEM: return "out of memory";
    case KILN_E_IO: return "i/o error";
    case KILN_E_LIMIT: return "limit exceeded";
    case KILN_E_DEVICE: return "device error";
    case KILN_E_INTERNAL: return "internal error";
    case KILN_E_CANCELLED: return "cancelled";
    }
    return "unknown status";
}

kiln_status kiln_err_vset(kiln_err *err, kiln_status st, const char *fmt, va_list ap)
{
    if (!err) return st;
    err->status = st;
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    /* One line: fold any newline a message part carried in. */
    for (char *p = err->msg; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    return st;
}

kiln_status kiln_err_set(kiln_err *err, kiln_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    kiln_err_vset(err, st, fmt, ap);
    va_end(ap);
    return st;
}

void kiln_err_prefix(kiln_err *err, const char *fmt, ...)
{
    if (!err) return;
    char prefix[512], old[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    size_t n = strlen(prefix);
    if (n > sizeof err->msg - 3) n = sizeof err->msg - 3;
    memcpy(err->msg, prefix, n);
    memcpy(err->msg + n, ": ", 2);
    size_t rest = sizeof err->msg - n - 2;
    size_t m = strnlen(old, rest - 1);
    memcpy(err->msg + n + 2, old, m);
    err->msg[n + 2 + m] = 0;
}

void kiln_err_clear(kiln_err *err)
{
    if (!err) return;
    err->status = KILN_OK;
    err->msg[0] = 0;
}

/* ------------------------------------------------------------------ allocation */

/* KILN_FAIL_ALLOC=N: the Nth allocation (1-based) and only it fails. Read once. */
static atomic_long alloc_count;
static atomic_long fail_at = -1; /* -1: environment not read yet; 0: never fail */

static bool alloc_should_fail(void)
{
    long at = atomic_load_explicit(&fail_at, memory_order_relaxed);
    if (at == -1) {
        const char *s = getenv("KILN_FAIL_ALLOC");
        char *end = NULL;
        long v = s ? strtol(s, &end, 10) : 0;
        at = (s && end && *end == 0 && v > 0) ? v : 0;
        long expect = -1; /* a concurrent first reader computes the same value */
        atomic_compare_exchange_strong(&fail_at, &expect, at);
        at = atomic_load_explicit(&fail_at, memory_order_relaxed);
    }
    long nth = atomic_fetch_add(&alloc_count, 1) + 1;
    return at != 0 && nth == at;
}

long kiln_alloc_fail_after(long n)
{
    long count = atomic_exchange(&alloc_count, 0);
    atomic_store(&fail_at, n > 0 ? n : 0);
    return count;
}

void *kiln_malloc(size_t n)
{
    if (alloc_should_fail()) return NULL;
    return malloc(n ? n : 1);
}

void *kiln_calloc(size_t count, size_t size)
{
    if (alloc_should_fail()) return NULL;
    if (count == 0 || size == 0) return calloc(1, 1);
    return calloc(count, size);
}

void *kiln_realloc(void *p, size_t n)
{
    if (alloc_should_fail()) return NULL;
    return realloc(p, n ? n : 1);
}

void kiln_free(void *p) { free(p); }

char *kiln_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = kiln_malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* ------------------------------------------------------------------ arena */

struct kiln_arena_chunk {
    struct kiln_arena_chunk *next;
    size_t used, size;
    _Alignas(16) unsigned char data[];
};

#define ARENA_CHUNK (64 * 1024)

void *kiln_arena_alloc(struct kiln_arena *a, size_t n)
{
    size_t need = (n + 15) & ~(size_t)15;
    if (need < n) return NULL;
    struct kiln_arena_chunk *c = a->head;
    if (!c || c->size - c->used < need) {
        size_t size = need > ARENA_CHUNK / 4 ? need : ARENA_CHUNK;
        size_t total;
        if (!kiln_add_size(sizeof *c, size, &total)) return NULL;
        c = kiln_malloc(total);
        if (!c) return NULL;
        c->size = size;
        c->used = 0;
        /* Big allocations get a chunk of their own, kept behind the current one so the
         * current chunk's free space stays usable. */
        if (size != ARENA_CHUNK && a->head) {
            c->next = a->head->next;
            a->head->next = c;
        } else {
            c->next = a->head;
            a->head = c;
        }
    }
    void *p = c->data + c->used;
    c->used += need;
    memset(p, 0, n);
    return p;
}

void *kiln_arena_array(struct kiln_arena *a, size_t count, size_t size)
{
    size_t n;
    if (!kiln_mul_size(count, size, &n)) return NULL;
    return kiln_arena_alloc(a, n);
}

char *kiln_arena_strndup(struct kiln_arena *a, const char *s, size_t n)
{
    size_t total;
    if (!kiln_add_size(n, 1, &total)) return NULL;
    char *d = kiln_arena_alloc(a, total);
    if (!d) return NULL;
    if (n) memcpy(d, s, n);
    d[n] = 0;
    return d;
}

struct kiln_arena_cleanup {
    struct kiln_arena_cleanup *next;
    void (*fn)(void *arg);
    void *arg;
};

bool kiln_arena_on_free(struct kiln_arena *a, void (*fn)(void *arg), void *arg)
{
    struct kiln_arena_cleanup *c = kiln_arena_alloc(a, sizeof *c);
    if (!c) return false;
    *c = (struct kiln_arena_cleanup){.next = a->cleanups, .fn = fn, .arg = arg};
    a->cleanups = c;
    return true;
}

void kiln_arena_free(struct kiln_arena *a)
{
    /* Cleanups first, newest first: a later record may depend on an earlier one. */
    for (struct kiln_arena_cleanup *k = a->cleanups; k; k = k->next) k->fn(k->arg);
    a->cleanups = NULL;
    struct kiln_arena_chunk *c = a->head;
    while (c) {
        struct kiln_arena_chunk *next = c->next;
        kiln_free(c);
        c = next;
    }
    a->head = NULL;
}

/* ------------------------------------------------------------------ buffers */

void kiln_buf_append(struct kiln_buf *b, const void *p, size_t n)
{
    if (b->failed) return;
    size_t need;
    if (!kiln_add_size(b->len, n, &need) || (b->limit && need > b->limit)) {
        b->failed = true;
        return;
    }
    if (need > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < need) {
            if (cap > SIZE_MAX / 2) {
                cap = need;
                break;
            }
            cap *= 2;
        }
        uint8_t *d = kiln_realloc(b->data, cap);
        if (!d) {
            b->failed = true;
            return;
        }
        b->data = d;
        b->cap = cap;
    }
    if (n) memcpy(b->data + b->len, p, n);
    b->len = need;
}

void kiln_buf_free(struct kiln_buf *b)
{
    kiln_free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
    b->failed = false;
}

/* Blocks of at least KILN_HUGE_MIN bytes are mappings of their own, starting on a 2 MB
 * boundary and marked MADV_HUGEPAGE, so that the kernel backs them with huge pages where its
 * transparent-huge-page setting allows (Linux's default "madvise" mode gives them only to
 * memory that asks). Weights and activation arenas are such blocks: a batch-1 run streams
 * every weight once, and with 4 KB pages each 4 KB of a layer's weights costs a TLB miss and
 * a page walk (ResNet-50 at 1 thread 2-4% faster with them, docs/benchmarks.md). The tail
 * beyond the last full 2 MB stays in small pages, so resident memory grows by nothing.
 * Smaller blocks come from kiln_malloc, and so does every block with KILN_HUGE_PAGES=0 in the
 * environment (measurements). Either way two words below the returned pointer say which: the
 * raw block's address, and the mapping's length (0: kiln_malloc). */
#define KILN_HUGE ((size_t)2 << 20)
#define KILN_HUGE_MIN KILN_HUGE

/* NULL with *failed when the allocation must fail (KILN_FAIL_ALLOC, or a size that overflows);
 * NULL alone when the mapping could not be made and kiln_malloc should try. */
static void *huge_alloc(size_t align, size_t n, bool *failed)
{
#if defined(MADV_HUGEPAGE)
    static atomic_int off = -1; /* -1: environment not read yet */
    int o = atomic_load_explicit(&off, memory_order_relaxed);
    if (o < 0) {
        const char *e = getenv("KILN_HUGE_PAGES");
        o = e && !strcmp(e, "0");
        atomic_store(&off, o);
    }
    *failed = false;
    if (o) return NULL;
    size_t head = align < 2 * sizeof(void *) ? 2 * sizeof(void *) : align, len, span;
    *failed = true;
    if (!kiln_add_size(n, head, &len) || !kiln_add_size(len, KILN_HUGE, &span)) return NULL;
    if (alloc_should_fail()) return NULL;
    *failed = false;
    unsigned char *raw = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) return NULL;
    /* Keep [base, base + len rounded to pages) and give back the rest of the span. */
    uintptr_t base = ((uintptr_t)raw + KILN_HUGE - 1) & ~(uintptr_t)(KILN_HUGE - 1);
    size_t page = 4096, keep = (len + page - 1) & ~(page - 1);
    if (base > (uintptr_t)raw) munmap(raw, base - (uintptr_t)raw);
    uintptr_t end = (uintptr_t)raw + span;
    if (end > base + keep) munmap((void *)(base + keep), end - (base + keep));
    (void)madvise((void *)base, keep, MADV_HUGEPAGE); /* advice: a refusal leaves small pages */
    unsigned char *at = (unsigned char *)base + head;
    ((void **)at)[-1] = (void *)base;
    ((size_t *)at)[-2] = keep;
    return at;
#else
    (void)align, (void)n;
    *failed = false;
    return NULL;
#endif
}

void *kiln_aligned_alloc(size_t align, size_t n)
{
    size_t total;
    if (align < sizeof(void *) || (align & (align - 1)) || align > 4096 ||
        !kiln_add_size(n, align + 2 * sizeof(void *), &total))
        return NULL;
    if (n >= KILN_HUGE_MIN) {
        bool failed;
        void *p = huge_alloc(align, n, &failed);
        if (p || failed) return p;
    }
    unsigned char *raw = kiln_malloc(total);
    if (!raw) return NULL;
    uintptr_t at = ((uintptr_t)raw + 2 * sizeof(void *) + align - 1) & ~(uintptr_t)(align - 1);
    ((void **)at)[-1] = raw;
    ((size_t *)at)[-2] = 0;
    return (void *)at;
}

void kiln_aligned_free(void *p)
{
    if (!p) return;
    size_t len = ((size_t *)p)[-2];
    if (len) munmap(((void **)p)[-1], len);
    else kiln_free(((void **)p)[-1]);
}
