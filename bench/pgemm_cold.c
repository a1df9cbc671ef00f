/* bench/pgemm_cold.c: kiln's own prepacked float32 GEMM (src/cpu/pgemm.h) against oneDNN
 * 2.6's matmul primitive with prepacked weights (what dnnl_matmul.c runs) on the
 * transformer products of the bench models, with B warm in cache and cold: streamed from
 * DRAM at every call, as in a batch-1 model run that uses each weight once. Not a test: a
 * measuring tool (issue 7; figures in docs/notes-bigmm.md).
 *
 *   cmake --build build/release --target pgemm_cold     (EXCLUDE_FROM_ALL; CMakeLists.txt)
 *   build/release/pgemm_cold [--threads T] [--time S] [--mb MB] [--only pgemm|dnnl] [--pad P]
 *                            [M N K ...]
 *
 * For each shape and each of three ways of holding B:
 *   warm   one packed B, called again and again (B stays in L2/L3);
 *   cold   distinct packed copies of B totalling at least MB megabytes (default 600: more
 *          than the 480 MB L3 this VM reports), called in turn, so each call reads its B
 *          from DRAM; malloc'd memory in 4 KiB pages;
 *   huge   the same copies in one mmap'd region aligned to 2 MiB with
 *          madvise(MADV_HUGEPAGE) (transparent huge pages; the kernel's setting must allow
 *          madvise), as main will soon place large weights.
 * it prints GFLOP/s of pgemm and of oneDNN (best of three windows of S seconds, default
 * 0.5). At T threads (default 1) both split the product by columns as kiln does (pgemm
 * through kiln_pgemm_run over kiln's pool; oneDNN as T primitives over column slices of C,
 * each with its own packed share of B, as dnnl_matmul.c), timed by wall clock; at one thread
 * by the thread's CPU time (other jobs on a shared machine then count less; memory stalls
 * still count). A and C stay in cache, as in a model, where the previous node just wrote A.
 * --pad P gives pgemm's A the row stride K + P instead of K (L1 set conflicts of A's rows).
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "base/pool.h"
#include "bench_time.h"
#include "cpu/pgemm.h"
#if KILN_HAVE_DNNL
#include <dnnl.h>

#include "cpu/dnnl_util.h"
#endif

static size_t apad; /* --pad P: pgemm reads A at the row stride K + P (oneDNN: K) */

/* A region of n copies of `bytes` each (rounded up to 4 KiB), in 4 KiB pages (malloc) or in
 * transparent huge pages (mmap, 2 MiB aligned, MADV_HUGEPAGE). */
struct region {
    char *base;
    size_t stride;
    int n;
    void *map;
    size_t map_len;
};

static bool region_alloc(struct region *r, size_t bytes, int n, bool huge)
{
    memset(r, 0, sizeof *r);
    r->stride = (bytes + 4095) / 4096 * 4096;
    r->n = n;
    size_t total = r->stride * (size_t)n;
    if (!huge) {
        r->base = aligned_alloc(4096, total);
        return r->base != NULL;
    }
    size_t two = (size_t)2 << 20;
    r->map_len = total + two;
    r->map = mmap(NULL, r->map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (r->map == MAP_FAILED) return r->map = NULL, false;
    r->base = (char *)(((size_t)r->map + two - 1) / two * two);
    madvise(r->base, total, MADV_HUGEPAGE);
    return true;
}

static void region_free(struct region *r)
{
    if (r->map) munmap(r->map, r->map_len);
    else free(r->base);
    memset(r, 0, sizeof *r);
}

static void *region_at(const struct region *r, int i)
{
    return r->base + r->stride * (size_t)i;
}

/* Fills copies 1..n-1 from copy 0 (touching every page). */
static void region_replicate(struct region *r, size_t bytes)
{
    for (int i = 1; i < r->n; i++) memcpy(region_at(r, i), region_at(r, 0), bytes);
}

/* ------------------------------------------------------------------ pgemm */

struct pg_ctx {
    struct kiln_pgemm *g; /* n of them */
    int n, i;
    struct kiln_pool *pool;
    size_t M;
    const float *A;
    float *C;
};

static void run_pg(void *c)
{
    struct pg_ctx *x = c;
    const struct kiln_pgemm *g = &x->g[x->i++ % x->n];
    kiln_pgemm_run(g, x->pool, x->M, x->A, g->K + apad, x->C, g->N, false, NULL);
}

static double time_pgemm(size_t M, size_t N, size_t K, const float *A, const float *B, float *C, int ncopy,
                         bool huge, struct kiln_pool *pool)
{
    size_t bytes = kiln_pgemm_packed_len(K, N) * sizeof(float);
    struct region r;
    if (!region_alloc(&r, bytes, ncopy, huge)) return 0;
    kiln_pgemm_pack(B, N, false, K, N, region_at(&r, 0));
    region_replicate(&r, bytes);
    struct pg_ctx x = {.n = ncopy, .pool = pool, .M = M, .A = A, .C = C};
    x.g = malloc((size_t)ncopy * sizeof *x.g);
    if (!x.g) return region_free(&r), 0;
    for (int i = 0; i < ncopy; i++) kiln_pgemm_init(&x.g[i], K, N, region_at(&r, i), kiln_isa_active());
    double t = bench_best(run_pg, &x);
    free(x.g);
    region_free(&r);
    return t;
}

/* ------------------------------------------------------------------ oneDNN */

#if KILN_HAVE_DNNL
#define MAXS 8
struct mm_slice {
    dnnl_primitive_t prim;
    dnnl_memory_desc_t a_md, c_md, w_md, sp_md;
    size_t n0, wbytes, woff; /* first column; packed bytes; offset in a copy */
};

struct mm_ctx {
    struct mm_slice s[MAXS];
    int ns, i, cur;
    const float *A;
    float *C;
    size_t N;
    struct region r;
    struct kiln_pool *pool;
};

static void mm_chunk(void *ctx, size_t s0, size_t s1, int worker)
{
    struct mm_ctx *x = ctx;
    (void)worker;
    for (size_t s = s0; s < s1; s++) {
        struct mm_slice *sl = &x->s[s];
        struct kiln_dnnl_arg args[4] = {
            {DNNL_ARG_SRC, &sl->a_md, x->A},
            {DNNL_ARG_WEIGHTS, &sl->w_md, (char *)region_at(&x->r, x->cur) + sl->woff},
            {DNNL_ARG_DST, &sl->c_md, x->C + sl->n0},
            {DNNL_ARG_SCRATCHPAD, &sl->sp_md, NULL},
        };
        kiln_dnnl_execute(sl->prim, 4, args);
    }
}

static void run_mm(void *c)
{
    struct mm_ctx *x = c;
    x->cur = x->i++ % x->r.n;
    if (x->ns == 1 || !x->pool) mm_chunk(x, 0, (size_t)x->ns, 0);
    else kiln_pool_for(x->pool, (size_t)x->ns, 1, mm_chunk, x);
}

/* oneDNN's matmul over ns column slices (multiples of 16 columns), B reordered once per
 * slice into the format it picks; seconds per call or 0. */
static double time_dnnl(size_t M, size_t N, size_t K, const float *A, const float *B, float *C, int ncopy,
                        bool huge, struct kiln_pool *pool, int ns)
{
    dnnl_engine_t eng = kiln_dnnl_engine();
    if (!eng) return 0;
    static struct mm_ctx x;
    memset(&x, 0, sizeof x);
    x.ns = ns < 1 ? 1 : ns > MAXS ? MAXS : ns;
    x.A = A, x.C = C, x.N = N, x.pool = pool;
    size_t units = N / 16, total = 0;
    double t = 0;
    for (int s = 0; s < x.ns; s++) {
        struct mm_slice *sl = &x.s[s];
        size_t n0 = units * (size_t)s / (size_t)x.ns * 16, n1 = s + 1 == x.ns ? N : units * (size_t)(s + 1) / (size_t)x.ns * 16;
        sl->n0 = n0;
        dnnl_dims_t ad = {(dnnl_dim_t)M, (dnnl_dim_t)K}, cd = {(dnnl_dim_t)M, (dnnl_dim_t)(n1 - n0)};
        dnnl_dims_t cs = {(dnnl_dim_t)N, 1};
        if (dnnl_memory_desc_init_by_tag(&sl->a_md, 2, ad, dnnl_f32, dnnl_ab) ||
            dnnl_memory_desc_init_by_strides(&sl->c_md, 2, cd, dnnl_f32, cs))
            goto out;
        kiln_dnnl_matmul_create(eng, &sl->a_md, &sl->c_md, dnnl_f32, false, &sl->prim, &sl->w_md, &sl->sp_md);
        if (!sl->prim) goto out;
        sl->wbytes = dnnl_memory_desc_get_size(&sl->w_md);
        sl->woff = total;
        total += (sl->wbytes + 63) / 64 * 64;
    }
    if (!region_alloc(&x.r, total, ncopy, huge)) goto out;
    for (int s = 0; s < x.ns; s++) { /* reorder each slice's columns of B into copy 0 */
        struct mm_slice *sl = &x.s[s];
        size_t n1 = s + 1 == x.ns ? N : x.s[s + 1].n0;
        dnnl_memory_desc_t b_md, none;
        dnnl_dims_t bd = {(dnnl_dim_t)K, (dnnl_dim_t)(n1 - sl->n0)}, bs = {(dnnl_dim_t)N, 1};
        dnnl_primitive_desc_t rpd = NULL;
        dnnl_primitive_t r = NULL;
        bool ok = !dnnl_memory_desc_init_by_strides(&b_md, 2, bd, dnnl_f32, bs) &&
                  dnnl_reorder_primitive_desc_create(&rpd, &b_md, eng, &sl->w_md, eng, NULL) == dnnl_success &&
                  dnnl_primitive_create(&r, rpd) == dnnl_success;
        memset(&none, 0, sizeof none);
        struct kiln_dnnl_arg ra[3] = {{DNNL_ARG_FROM, &b_md, B + sl->n0},
                                      {DNNL_ARG_TO, &sl->w_md, (char *)region_at(&x.r, 0) + sl->woff},
                                      {DNNL_ARG_SCRATCHPAD, &none, NULL}};
        ok = ok && kiln_dnnl_execute(r, 3, ra);
        if (r) dnnl_primitive_destroy(r);
        if (rpd) dnnl_primitive_desc_destroy(rpd);
        if (!ok) goto out;
    }
    region_replicate(&x.r, total);
    t = bench_best(run_mm, &x);
out:
    for (int s = 0; s < x.ns; s++)
        if (x.s[s].prim) dnnl_primitive_destroy(x.s[s].prim);
    region_free(&x.r);
    return t;
}
#endif

/* ------------------------------------------------------------------ main */

static const size_t shapes[][3] = {
    {128, 768, 768}, {128, 3072, 768}, {128, 768, 3072}, /* BERT-base: Q/K/V/out, FFN1, FFN2 */
    {128, 2304, 768},                                    /* GPT-2's fused QKV (c_attn) */
    {197, 768, 768}, {197, 3072, 768}, {197, 768, 3072}, /* ViT-B/16 */
};

int main(int argc, char **argv)
{
    int threads = 1, ai = 1;
    double mb = 600;
    const char *only = "";
    for (; ai + 1 < argc && argv[ai][0] == '-'; ai += 2) {
        if (!strcmp(argv[ai], "--threads")) threads = (int)strtol(argv[ai + 1], NULL, 10);
        else if (!strcmp(argv[ai], "--time")) bench_window = strtod(argv[ai + 1], NULL);
        else if (!strcmp(argv[ai], "--mb")) mb = strtod(argv[ai + 1], NULL);
        else if (!strcmp(argv[ai], "--only")) only = argv[ai + 1];
        else if (!strcmp(argv[ai], "--pad")) apad = (size_t)strtoull(argv[ai + 1], NULL, 10);
    }
    size_t n = sizeof shapes / sizeof shapes[0], (*list)[3] = (size_t(*)[3])shapes;
    size_t custom[64][3];
    if (ai + 2 < argc) {
        n = 0;
        for (; ai + 2 < argc && n < 64; ai += 3, n++)
            for (int d = 0; d < 3; d++) custom[n][d] = (size_t)strtoull(argv[ai + d], NULL, 10);
        list = custom;
    }
    struct kiln_pool *pool = NULL;
    kiln_err e;
    if (threads <= 1) bench_clock = CLOCK_THREAD_CPUTIME_ID;
    if (threads > 1 && kiln_pool_create(threads, &pool, &e)) return 1;
    printf("isa %s, %d thread(s), cold set %.0f MB; GFLOP/s (pgemm / oneDNN)\n", kiln_isa_name(kiln_isa_active()),
           threads, mb);
    printf("%5s %5s %5s | %13s | %13s | %13s | cold/warm pgemm, oneDNN\n", "M", "N", "K", "warm", "cold 4K",
           "cold huge");
    fflush(stdout);
    for (size_t s = 0; s < n; s++) {
        size_t M = list[s][0], N = list[s][1], K = list[s][2];
        float *A = malloc(M * (K + apad) * sizeof(float)), *B = malloc(K * N * sizeof(float)), *C = malloc(M * N * sizeof(float));
        if (!A || !B || !C) return 1;
        for (size_t i = 0; i < M * (K + apad); i++) A[i] = (float)(i % 13) * 0.01f;
        for (size_t i = 0; i < K * N; i++) B[i] = (float)(i % 7) * 0.01f;
        double flop = 2.0 * (double)M * (double)N * (double)K * 1e-9, gp[3] = {0}, gd[3] = {0};
        int cold = (int)(mb * 1e6 / ((double)K * (double)N * 4.0)) + 1;
        for (int mode = 0; mode < 3; mode++) {
            int nc = mode ? cold : 1;
            if (strcmp(only, "dnnl")) {
                double t = time_pgemm(M, N, K, A, B, C, nc, mode == 2, pool);
                gp[mode] = t ? flop / t : 0;
            }
#if KILN_HAVE_DNNL
            if (strcmp(only, "pgemm")) {
                double t = time_dnnl(M, N, K, A, B, C, nc, mode == 2, pool, threads);
                gd[mode] = t ? flop / t : 0;
            }
#endif
        }
        printf("%5zu %5zu %5zu | %6.1f %6.1f | %6.1f %6.1f | %6.1f %6.1f | %.2f %.2f\n", M, N, K, gp[0], gd[0], gp[1],
               gd[1], gp[2], gd[2], gp[0] ? gp[1] / gp[0] : 0, gd[0] ? gd[1] / gd[0] : 0);
        fflush(stdout);
        free(A), free(B), free(C);
    }
    kiln_pool_free(pool);
    return 0;
}
