/* dnnl_util.c: the oneDNN engine, streams and thread count kiln's kernels share
 * (dnnl_util.h). */
#include "cpu/dnnl_util.h"

#ifdef KILN_HAVE_DNNL
#include <dlfcn.h>
#include <pthread.h>

#include <string.h>

#include "cpu/isa.h"
#include "cpu/kernel.h"

static dnnl_engine_t engine;
static pthread_key_t stream_key;
static void (*omp_set_nt)(int);
static int (*omp_get_nt)(void);
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void stream_free(void *s) { dnnl_stream_destroy(s); }

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

/* dst (format md) = src (format src_md), one thread. */
static bool reorder(const dnnl_memory_desc_t *src_md, const void *src, const dnnl_memory_desc_t *md,
                    void *dst)
{
    dnnl_engine_t eng = kiln_dnnl_engine();
    dnnl_stream_t st = kiln_dnnl_stream();
    dnnl_memory_t ms = NULL, md_mem = NULL;
    dnnl_primitive_desc_t rpd = NULL;
    dnnl_primitive_t r = NULL;
    bool ok = eng && st && dnnl_memory_create(&ms, src_md, eng, (void *)src) == dnnl_success &&
              dnnl_memory_create(&md_mem, md, eng, dst) == dnnl_success &&
              dnnl_reorder_primitive_desc_create(&rpd, src_md, eng, md, eng, NULL) == dnnl_success &&
              dnnl_primitive_create(&r, rpd) == dnnl_success;
    if (ok) {
        dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, ms}, {DNNL_ARG_TO, md_mem}};
        int prev = kiln_dnnl_threads_begin();
        ok = dnnl_primitive_execute(r, st, 2, args) == dnnl_success && dnnl_stream_wait(st) == dnnl_success;
        kiln_dnnl_threads_end(prev);
    }
    if (r) dnnl_primitive_destroy(r);
    if (rpd) dnnl_primitive_desc_destroy(rpd);
    if (ms) dnnl_memory_destroy(ms);
    if (md_mem) dnnl_memory_destroy(md_mem);
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
#endif
