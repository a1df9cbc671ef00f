/* dnnl_util.c: the oneDNN engine, streams and thread count kiln's kernels share
 * (dnnl_util.h). */
#include "cpu/dnnl_util.h"

#ifdef KILN_HAVE_DNNL
#include <dlfcn.h>
#include <pthread.h>

#include "cpu/isa.h"

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
    pthread_once(&once, init);
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

int kiln_dnnl_threads_begin(void)
{
    pthread_once(&once, init);
    int prev = omp_get_nt ? omp_get_nt() : 1;
    if (prev != 1) omp_set_nt(1);
    return prev;
}

void kiln_dnnl_threads_end(int prev)
{
    if (prev != 1 && omp_set_nt) omp_set_nt(prev);
}
#endif
