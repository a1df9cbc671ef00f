/* bcache.c: the block cache of bcache.h. An unsorted array searched linearly: a graph has
 * at most a few hundred large intermediates alive across runs, and one scan per node is
 * noise next to the kernel. */
#include "base/bcache.h"

#include <pthread.h>

struct block {
    void *p;
    size_t bytes;
};

struct kiln_bcache {
    pthread_mutex_t mu;
    struct block *b;
    size_t n, cap;
    size_t held, limit;
};

struct kiln_bcache *kiln_bcache_create(size_t limit)
{
    struct kiln_bcache *c = kiln_calloc(1, sizeof *c);
    if (!c) return NULL;
    pthread_mutex_init(&c->mu, NULL);
    c->limit = limit;
    return c;
}

void kiln_bcache_free(struct kiln_bcache *c)
{
    if (!c) return;
    for (size_t i = 0; i < c->n; i++) kiln_free(c->b[i].p);
    kiln_free(c->b);
    pthread_mutex_destroy(&c->mu);
    kiln_free(c);
}

void *kiln_bcache_take(struct kiln_bcache *c, size_t bytes)
{
    if (!c || bytes < KILN_BCACHE_MIN_BYTES) return NULL;
    void *p = NULL;
    pthread_mutex_lock(&c->mu);
    size_t best = c->n;
    for (size_t i = 0; i < c->n; i++) {
        size_t have = c->b[i].bytes;
        if (have >= bytes && have / 2 <= bytes && (best == c->n || have < c->b[best].bytes)) best = i;
    }
    if (best < c->n) {
        p = c->b[best].p;
        c->held -= c->b[best].bytes;
        c->b[best] = c->b[--c->n];
    }
    pthread_mutex_unlock(&c->mu);
    return p;
}

void kiln_bcache_put(struct kiln_bcache *c, void *p, size_t bytes)
{
    if (!p) return;
    if (!c || bytes < KILN_BCACHE_MIN_BYTES) {
        kiln_free(p);
        return;
    }
    pthread_mutex_lock(&c->mu);
    bool keep = bytes <= c->limit - c->held;
    if (keep && c->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 32;
        struct block *nb = kiln_realloc(c->b, cap * sizeof *nb);
        if (nb) {
            c->b = nb;
            c->cap = cap;
        } else {
            keep = false;
        }
    }
    if (keep) {
        c->b[c->n++] = (struct block){p, bytes};
        c->held += bytes;
    }
    pthread_mutex_unlock(&c->mu);
    if (!keep) kiln_free(p);
}

size_t kiln_bcache_held(struct kiln_bcache *c)
{
    if (!c) return 0;
    pthread_mutex_lock(&c->mu);
    size_t h = c->held;
    pthread_mutex_unlock(&c->mu);
    return h;
}
