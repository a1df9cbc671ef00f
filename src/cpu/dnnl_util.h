/* dnnl_util.h: what kiln's kernels share to call oneDNN primitives (Debian's libdnnl, when
 * kiln is built with it: KILN_HAVE_DNNL). See docs/DEPENDENCIES.md for why and where.
 *
 * oneDNN runs each primitive on an OpenMP team as wide as omp_get_max_threads() of the
 * calling thread. kiln's threads are its own pool, so every call is held to one OpenMP
 * thread (kiln splits the work itself) and oneDNN's highest instruction set follows
 * kiln's (KILN_CPU_ISA=avx2 caps it at AVX2; cpu/isa.h).
 */
#ifndef KILN_CPU_DNNL_UTIL_H
#define KILN_CPU_DNNL_UTIL_H

#include <stdbool.h>

#ifdef KILN_HAVE_DNNL
#include <dnnl.h>

/* The process's CPU engine (created at the first call; never freed); NULL if oneDNN
 * cannot make one. Also applies the instruction-set cap, before any kernel is generated. */
dnnl_engine_t kiln_dnnl_engine(void);
/* This thread's stream on that engine (one per thread, freed when the thread exits); NULL
 * on failure. */
dnnl_stream_t kiln_dnnl_stream(void);
/* Holds oneDNN calls on this thread to one OpenMP thread; returns what to restore with
 * kiln_dnnl_threads_end. */
int kiln_dnnl_threads_begin(void);
void kiln_dnnl_threads_end(int prev);
#endif

#endif
