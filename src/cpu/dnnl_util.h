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

#include "base/base.h"

#ifdef KILN_HAVE_DNNL
#include <dnnl.h>

/* The process's CPU engine (created at the first call; never freed); NULL if oneDNN
 * cannot make one. Also applies the instruction-set cap, before any kernel is generated. */
dnnl_engine_t kiln_dnnl_engine(void);
/* This thread's stream on that engine (one per thread, freed when the thread exits); NULL
 * on failure. */
dnnl_stream_t kiln_dnnl_stream(void);
/* Holds oneDNN calls on this thread to one OpenMP thread, for good (see dnnl_util.c for why);
 * kiln_dnnl_threads_end does nothing. */
int kiln_dnnl_threads_begin(void);
void kiln_dnnl_threads_end(int prev);

/* A primitive attribute whose scratchpad kiln provides (dnnl_scratchpad_mode_user); false on
 * failure. Every primitive kiln makes uses one: with the library's own scratchpad, Debian's
 * oneDNN 2.6 gives one primitive run on several threads at once (two slices of one node, or
 * contexts of one engine) the same scratchpad memory, and brgconv's results come out wrong
 * (measured: a 3x3 convolution on 4 threads, ~10% of the runs). */
bool kiln_dnnl_attr_create(dnnl_primitive_attr_t *attr);

/* A matmul primitive a (a_md) x weights -> c (c_md) with the weights [K, N] of type wt in the
 * format oneDNN prefers (*w_md gets it, *sp_md its scratchpad, zeros when none) and kiln's
 * scratchpad attribute; *prim NULL when oneDNN declines, or (no_ref) when it would take its
 * reference implementation. */
void kiln_dnnl_matmul_create(dnnl_engine_t eng, const dnnl_memory_desc_t *a_md, const dnnl_memory_desc_t *c_md,
                             dnnl_data_type_t wt, bool no_ref, dnnl_primitive_t *prim, dnnl_memory_desc_t *w_md,
                             dnnl_memory_desc_t *sp_md);

/* One argument of a primitive's execution: oneDNN's argument number, its memory descriptor
 * (one that lives as long as the primitive: the cache below keys on its address) and the
 * memory it describes. For DNNL_ARG_SCRATCHPAD (md: the primitive's dnnl_query_scratchpad_md)
 * data is ignored: the scratchpad is this thread's (grown when needed, freed when the thread
 * exits); an empty md is left out. */
struct kiln_dnnl_arg {
    int arg;
    const dnnl_memory_desc_t *md;
    const void *data;
};
/* Runs prim on this thread's stream with args[0..n) (n <= 8) and waits; false on failure.
 * The memory objects come from a per-thread cache keyed by each md's address (hit: the
 * object, checked against *md, takes the new data pointer with dnnl_memory_set_data_handle
 * when it changed), so a kernel's run does not create and destroy them at every call: per
 * thread, so contexts of one engine running on several threads at once share nothing. The
 * cache is emptied when it grows past its size (at the start of a call, never while a call
 * holds its objects) and freed when the thread exits. An object whose pointer does not change
 * (packed weights) is not touched again: oneDNN zero-fills the padding of blocked formats at
 * every creation and pointer change. Without memory for the cache (or the scratchpad) the
 * call fails. */
bool kiln_dnnl_execute(dnnl_primitive_t prim, int n, const struct kiln_dnnl_arg *args);

/* This thread's staging buffer of at least `bytes` (64-byte aligned, contents left from its
 * last use), kept in the same per-thread state as the cache above: grown when a call needs
 * more (the first runs), freed when the thread exits. NULL on failure. */
void *kiln_dnnl_thread_buffer(size_t bytes);

struct kiln_kprep;
/* Weights `src` (described by src_md) reordered into the format `md` a primitive chose, as
 * prepacked blob `key` of the node p prepares: computed when building and saved in the
 * engine file, whose mapped copy is taken when loading, after checking that it was packed
 * for the same format (the blob starts with the memory descriptor it holds; another CPU or
 * oneDNN version may choose another). A loaded blob that does not match is not used: the
 * weights are reordered again into memory of the engine. *out NULL (KILN_OK) when oneDNN
 * fails; an error status only for out of memory. */
kiln_status kiln_dnnl_pack_weights(struct kiln_kprep *p, uint32_t key, const dnnl_memory_desc_t *src_md,
                                   const void *src, const dnnl_memory_desc_t *md, const void **out);
#endif

#endif
