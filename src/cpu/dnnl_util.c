/* dnnl_util.c: the oneDNN engine, streams and thread count kiln's kernels share
 * (dnnl_util.h). */
#include "cpu/dnnl_util.h"

#ifdef KILN_HAVE_DNNL
#include <dlfcn.h>
#include <pthread.h>

#include <stdlib.h>
#include <string.h>

#include "cpu/isa.h"
#include "cpu/kernel.h"

static dnnl_engine_t engine;
static pthread_key_t stream_key, memo_key;
static bool memo_ok;
static void (*omp_set_nt)(int);
static int (*omp_get_nt)(void);
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void stream_free(void *s) { dnnl_stream_destroy(s); }

/* The per-thread cache of memory objects (kiln_dnnl_execute): open addressing on the
 * descriptor's address, linear probing, emptied at the start of a call once half full. */
#define MEMO_BITS 10
#define MEMO_SIZE (1u << MEMO_BITS)
struct grow_buf {
    void *p;
    size_t bytes;
};

struct memo {
    struct grow_buf buf, scratch; /* kiln_dnnl_thread_buffer; the scratchpads */
    unsigned used;
    struct {
        const dnnl_memory_desc_t *md;
        dnnl_memory_t mem;
    } e[MEMO_SIZE];
};

static void memo_clear(struct memo *m)
{
    for (size_t i = 0; i < MEMO_SIZE; i++)
        if (m->e[i].mem) dnnl_memory_destroy(m->e[i].mem);
    memset(m->e, 0, sizeof m->e);
    m->used = 0;
}

static void memo_free(void *arg)
{
    struct memo *m = arg;
    memo_clear(m);
    free(m->buf.p);
    free(m->scratch.p);
    free(m);
}

static void init(void)
{
    /* libgomp comes with libdnnl; its entry points are looked up rather than linked, so that
     * kiln does not tie itself to one compiler's OpenMP library. */
    *(void **)&omp_set_nt = dlsym(RTLD_DEFAULT, "omp_set_num_threads");
    *(void **)&omp_get_nt = dlsym(RTLD_DEFAULT, "omp_get_max_threads");
    if (!omp_set_nt || !omp_get_nt) omp_set_nt = NULL, omp_get_nt = NULL;
    /* Must precede the first generated kernel; later calls are ignored by oneDNN. */
    if (kiln_isa_active() < KILN_ISA_AVX512) dnnl_set_max_cpu_isa(dnnl_cpu_isa_avx2);
    if (pthread_key_create(&stream_key, stream_free)) return;
    memo_ok = pthread_key_create(&memo_key, memo_free) == 0;
    if (dnnl_engine_create(&engine, dnnl_cpu, 0) != dnnl_success) engine = NULL;
}

dnnl_engine_t kiln_dnnl_engine(void)
{
    kiln_dnnl_threads_begin(); /* creating primitives may run parallel code too */
    return engine;
}

dnnl_stream_t kiln_dnnl_stream(void)
{
    dnnl_engine_t e = kiln_dnnl_engine();
    if (!e) return NULL;
    dnnl_stream_t s = pthread_getspecific(stream_key);
    if (s) return s;
    if (dnnl_stream_create(&s, e, dnnl_stream_default_flags) != dnnl_success) return NULL;
    if (pthread_setspecific(stream_key, s)) {
        dnnl_stream_destroy(s);
        return NULL;
    }
    return s;
}

/* Once a thread has run an OpenMP team of two, libgomp keeps the second thread and wakes it
 * at every later parallel region of that thread, even a region of one thread, after which it
 * spins for a while: measured as half the process's CPU time in a 1-thread ResNet-50 run. So
 * a thread that calls oneDNN is set to one OpenMP thread for good, not just around the call
 * (kiln does not use OpenMP itself). kiln_dnnl_threads_end is kept for symmetry; it does
 * nothing. */
int kiln_dnnl_threads_begin(void)
{
    pthread_once(&once, init);
    if (omp_get_nt && omp_get_nt() != 1) omp_set_nt(1);
    return 1;
}

void kiln_dnnl_threads_end(int prev)
{
    (void)prev;
}

/* This thread's cache, scratchpad and staging buffer; NULL when out of memory (the call
 * then fails). */
static struct memo *memo_get(void)
{
    if (!memo_ok) return NULL;
    struct memo *m = pthread_getspecific(memo_key);
    if (m) return m;
    m = calloc(1, sizeof *m);
    if (m && pthread_setspecific(memo_key, m)) {
        free(m);
        m = NULL;
    }
    return m;
}

/* b's memory, grown to at least `bytes` (64-byte aligned); NULL on failure. */
static void *grow(struct grow_buf *b, size_t bytes)
{
    if (b->bytes < bytes || !b->p) {
        size_t want = (bytes + 4095) / 4096 * 4096;
        void *p = NULL;
        if (posix_memalign(&p, 64, want ? want : 64)) return NULL;
        free(b->p);
        b->p = p;
        b->bytes = want;
    }
    return b->p;
}

void *kiln_dnnl_thread_buffer(size_t bytes)
{
    struct memo *m = memo_get();
    return m ? grow(&m->buf, bytes) : NULL;
}

bool kiln_dnnl_attr_create(dnnl_primitive_attr_t *attr)
{
    *attr = NULL;
    if (dnnl_primitive_attr_create(attr) != dnnl_success) return false;
    if (dnnl_primitive_attr_set_scratchpad_mode(*attr, dnnl_scratchpad_mode_user) == dnnl_success) return true;
    dnnl_primitive_attr_destroy(*attr);
    *attr = NULL;
    return false;
}

/* The cached memory object for md, pointing at data; NULL on failure. Memory of a blocked
 * format whose dims are rounded up (packed weights of 8 output channels in blocks of 16) has
 * padding, which oneDNN fills with zeros whenever an object is created over it or takes a new
 * data pointer: an object keeps its pointer while it does not change, so that happens once
 * per thread, not once per run. */
static dnnl_memory_t memo_take(struct memo *m, dnnl_engine_t eng, const dnnl_memory_desc_t *md, void *data)
{
    size_t h = (size_t)(((uint64_t)(uintptr_t)md >> 4) * 0x9E3779B97F4A7C15ull >> (64 - MEMO_BITS));
    for (;; h = (h + 1) % MEMO_SIZE) {
        if (m->e[h].md == md) break;
        if (!m->e[h].md) {
            m->e[h].md = md;
            m->used++;
            break;
        }
    }
    dnnl_memory_t mem = m->e[h].mem;
    if (mem) {
        /* The address may be reused by another engine's descriptor after the first was freed. */
        const dnnl_memory_desc_t *have = NULL;
        void *old = NULL;
        if (dnnl_memory_get_memory_desc(mem, &have) == dnnl_success && have &&
            dnnl_memory_desc_equal(have, md) && dnnl_memory_get_data_handle(mem, &old) == dnnl_success) {
            if (old == data) return mem; /* weights: no zero-padding again */
            return dnnl_memory_set_data_handle(mem, data) == dnnl_success ? mem : NULL;
        }
        dnnl_memory_destroy(mem);
        m->e[h].mem = NULL;
    }
    if (dnnl_memory_create(&mem, md, eng, data) != dnnl_success) return NULL;
    m->e[h].mem = mem;
    return mem;
}

bool kiln_dnnl_execute(dnnl_primitive_t prim, int n, const struct kiln_dnnl_arg *args)
{
    enum { MAX_ARGS = 8 };
    if (n < 0 || n > MAX_ARGS) return false;
    dnnl_engine_t eng = kiln_dnnl_engine();
    dnnl_stream_t st = kiln_dnnl_stream();
    if (!eng || !st) return false;
    struct memo *m = memo_get();
    if (m && m->used > MEMO_SIZE / 2) memo_clear(m);
    if (!m) return false; /* out of memory: no scratchpad either */
    dnnl_exec_arg_t ea[MAX_ARGS];
    int k = 0;
    bool ok = true;
    for (int i = 0; i < n && ok; i++) {
        void *data = (void *)args[i].data;
        if (args[i].arg == DNNL_ARG_SCRATCHPAD) {
            size_t bytes = dnnl_memory_desc_get_size(args[i].md);
            if (!bytes) continue;
            ok = (data = grow(&m->scratch, bytes)) != NULL;
            if (!ok) break;
        }
        ea[k].arg = args[i].arg;
        ea[k].memory = memo_take(m, eng, args[i].md, data);
        ok = ea[k++].memory != NULL;
    }
    return ok && dnnl_primitive_execute(prim, st, k, ea) == dnnl_success && dnnl_stream_wait(st) == dnnl_success;
}

/* dst (format md) = src (format src_md), one thread. */
static bool reorder(const dnnl_memory_desc_t *src_md, const void *src, const dnnl_memory_desc_t *md,
                    void *dst)
{
    dnnl_engine_t eng = kiln_dnnl_engine();
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t rpd = NULL;
    dnnl_primitive_t r = NULL;
    bool ok = eng && kiln_dnnl_attr_create(&attr) &&
              dnnl_reorder_primitive_desc_create(&rpd, src_md, eng, md, eng, attr) == dnnl_success &&
              dnnl_primitive_create(&r, rpd) == dnnl_success;
    if (ok) {
        const dnnl_memory_desc_t *sp = dnnl_primitive_desc_query_md(rpd, dnnl_query_scratchpad_md, 0);
        dnnl_memory_desc_t none;
        memset(&none, 0, sizeof none);
        /* Local descriptors: copies in memory the per-thread cache may key on later are
         * checked against their contents there, so the cache stays right. */
        struct kiln_dnnl_arg args[3] = {{DNNL_ARG_FROM, src_md, src}, {DNNL_ARG_TO, md, dst},
                                        {DNNL_ARG_SCRATCHPAD, sp ? sp : &none, NULL}};
        ok = kiln_dnnl_execute(r, 3, args);
    }
    if (r) dnnl_primitive_destroy(r);
    if (rpd) dnnl_primitive_desc_destroy(rpd);
    if (attr) dnnl_primitive_attr_destroy(attr);
    return ok;
}

/* The blob's header: the descriptor, padded so the weights stay 64-byte aligned. */
#define PACK_HEADER ((sizeof(dnnl_memory_desc_t) + 63) / 64 * 64)

kiln_status kiln_dnnl_pack_weights(struct kiln_kprep *p, uint32_t key, const dnnl_memory_desc_t *src_md,
                                   const void *src, const dnnl_memory_desc_t *md, const void **out)
{
    *out = NULL;
    size_t size = dnnl_memory_desc_get_size(md), have;
    if (!size) return KILN_OK;
    if (kiln_kprep_blob_peek(p, key, &have) || !kiln_kprep_loading(p)) {
        if (kiln_kprep_loading(p) && have != PACK_HEADER + size) goto repack; /* another format */
        void *blob;
        bool fill;
        KILN_TRY(kiln_kprep_blob(p, key, PACK_HEADER + size, &blob, &fill));
        if (fill) {
            memcpy(blob, md, sizeof *md);
            if (!reorder(src_md, src, md, (char *)blob + PACK_HEADER)) return KILN_OK;
        } else if (!dnnl_memory_desc_equal(blob, md)) {
            goto repack;
        }
        *out = (const char *)blob + PACK_HEADER;
        return KILN_OK;
    }
repack:;
    void *mem;
    KILN_TRY(kiln_kprep_alloc(p, size, &mem));
    if (reorder(src_md, src, md, mem)) *out = mem;
    return KILN_OK;
}

void kiln_dnnl_matmul_create(dnnl_engine_t eng, const dnnl_memory_desc_t *a_md, const dnnl_memory_desc_t *c_md,
                             dnnl_data_type_t wt, bool no_ref, dnnl_primitive_t *prim, dnnl_memory_desc_t *w_md,
                             dnnl_memory_desc_t *sp_md)
{
    *prim = NULL;
    memset(sp_md, 0, sizeof *sp_md);
    dnnl_dims_t wd = {a_md->dims[1], c_md->dims[1]};
    dnnl_memory_desc_t wany;
    dnnl_matmul_desc_t md;
    if (dnnl_memory_desc_init_by_tag(&wany, 2, wd, wt, dnnl_format_tag_any) ||
        dnnl_matmul_desc_init(&md, a_md, &wany, NULL, c_md))
        return;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_attr_t attr = NULL;
    bool made = kiln_dnnl_attr_create(&attr) && dnnl_primitive_desc_create(&pd, &md, attr, eng, NULL) == dnnl_success;
    if (attr) dnnl_primitive_attr_destroy(attr);
    if (!made) return;
    const dnnl_memory_desc_t *wq = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    const dnnl_memory_desc_t *sp = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    const char *impl = NULL;
    dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
    if (wq && (!no_ref || (impl && strncmp(impl, "ref", 3) != 0))) {
        *w_md = *wq;
        if (sp) *sp_md = *sp;
        if (dnnl_primitive_create(prim, pd) != dnnl_success) *prim = NULL;
    }
    dnnl_primitive_desc_destroy(pd);
}
#endif
