/* bench/pgemm_bench.c: GFLOP/s of kiln's own prepacked float32 GEMM (src/cpu/pgemm.h) against
 * oneDNN 2.6's matmul primitive with its weights prepacked (what dnnl_matmul.c runs, one
 * primitive on one thread) and dnnl_sgemm (kiln_sgemm, which packs B at every call), on the
 * float32 products of the bench models. Not a test: a measuring tool.
 *
 *   cc -O2 -DKILN_HAVE_DNNL=1 -Iinclude -Isrc bench/pgemm_bench.c build/release/libkiln.a \
 *      -ldnnl -lpng -ljpeg -lopenjp2 -ltiff -lwebp -lz -lgvc -lcgraph -lcdt -lm -lpthread -ldl \
 *      -o /tmp/pgemm_bench        (the libraries libkiln.a was built with; see CMakeLists.txt)
 *   /tmp/pgemm_bench [--threads T] [--time S] [--cold C] [M N K ...]
 *
 * Without shapes it runs the list below. Each figure is the best of three windows of S
 * seconds (default 0.3) of back-to-back calls on the same operands; pgemm at T threads
 * (kiln's pool, default 1), the oneDNN figures on one thread. --cold C keeps C copies of B
 * (at most 64) and takes them in turn, so that B comes from memory as in a model's run. KILN_CPU_ISA=avx2 measures
 * the AVX2 kernel (and oneDNN held to AVX2).
 */
#include <dnnl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/pool.h"
#include "bench_time.h"
#include "cpu/dnnl_util.h"
#include "cpu/pgemm.h"
#include "cpu/sgemm.h"

static int ncopy = 1; /* --cold N: N copies of B, used in turn (weights streamed from memory) */

struct pg_ctx {
    struct kiln_pgemm g[64];
    int i;
    struct kiln_pool *pool;
    size_t M;
    const float *A;
    float *C;
};

static void run_pg(void *c)
{
    struct pg_ctx *x = c;
    const struct kiln_pgemm *g = &x->g[x->i++ % ncopy];
    kiln_pgemm_run(g, x->pool, x->M, x->A, g->K, x->C, g->N, false, NULL);
}

struct sg_ctx {
    size_t M, N, K;
    const float *A, *B;
    float *C;
};

static void run_sg(void *c)
{
    struct sg_ctx *x = c;
    kiln_sgemm(false, false, x->M, x->N, x->K, 1.0f, x->A, x->K, x->B, x->N, 0.0f, x->C, x->N);
}

struct mm_ctx {
    dnnl_primitive_t prim;
    struct kiln_dnnl_arg args[4];
    void *w[64];
    int i;
};

static void run_mm(void *c)
{
    struct mm_ctx *x = c;
    x->args[1].data = x->w[x->i++ % ncopy];
    kiln_dnnl_execute(x->prim, 4, x->args);
}

/* oneDNN's matmul with B reordered once into the format it picks; seconds per call or 0. */
static double time_dnnl_packed(size_t M, size_t N, size_t K, const float *A, const float *B, float *C)
{
    dnnl_engine_t eng = kiln_dnnl_engine();
    if (!eng) return 0;
    dnnl_memory_desc_t a_md, c_md, b_md, w_md, sp_md;
    dnnl_dims_t ad = {(dnnl_dim_t)M, (dnnl_dim_t)K}, cd = {(dnnl_dim_t)M, (dnnl_dim_t)N},
                bd = {(dnnl_dim_t)K, (dnnl_dim_t)N};
    if (dnnl_memory_desc_init_by_tag(&a_md, 2, ad, dnnl_f32, dnnl_ab) ||
        dnnl_memory_desc_init_by_tag(&c_md, 2, cd, dnnl_f32, dnnl_ab) ||
        dnnl_memory_desc_init_by_tag(&b_md, 2, bd, dnnl_f32, dnnl_ab))
        return 0;
    struct mm_ctx x;
    kiln_dnnl_matmul_create(eng, &a_md, &c_md, dnnl_f32, false, &x.prim, &w_md, &sp_md);
    if (!x.prim) return 0;
    size_t wsz = (dnnl_memory_desc_get_size(&w_md) + 63) / 64 * 64;
    void *w = aligned_alloc(64, wsz * (size_t)ncopy);
    dnnl_primitive_desc_t rpd = NULL;
    dnnl_primitive_t r = NULL;
    double t = 0;
    if (w && dnnl_reorder_primitive_desc_create(&rpd, &b_md, eng, &w_md, eng, NULL) == dnnl_success &&
        dnnl_primitive_create(&r, rpd) == dnnl_success) {
        dnnl_memory_desc_t none;
        memset(&none, 0, sizeof none);
        struct kiln_dnnl_arg ra[3] = {{DNNL_ARG_FROM, &b_md, B}, {DNNL_ARG_TO, &w_md, w}, {DNNL_ARG_SCRATCHPAD, &none, NULL}};
        if (kiln_dnnl_execute(r, 3, ra)) {
            x.args[0] = (struct kiln_dnnl_arg){DNNL_ARG_SRC, &a_md, A};
            x.args[1] = (struct kiln_dnnl_arg){DNNL_ARG_WEIGHTS, &w_md, w};
            x.args[2] = (struct kiln_dnnl_arg){DNNL_ARG_DST, &c_md, C};
            x.args[3] = (struct kiln_dnnl_arg){DNNL_ARG_SCRATCHPAD, &sp_md, NULL};
            x.i = 0;
            for (int c = 0; c < ncopy; c++) {
                x.w[c] = (char *)w + wsz * (size_t)c;
                if (c) memcpy(x.w[c], w, wsz);
            }
            t = bench_best(run_mm, &x);
        }
    }
    if (r) dnnl_primitive_destroy(r);
    if (rpd) dnnl_primitive_desc_destroy(rpd);
    dnnl_primitive_destroy(x.prim);
    free(w);
    return t;
}

static const size_t shapes[][3] = {
    {128, 3072, 768}, {128, 768, 3072}, {128, 768, 768}, {128, 2304, 768}, /* BERT, GPT-2 (M = tokens) */
    {197, 3072, 768}, {197, 768, 3072}, {197, 768, 768}, {197, 2304, 768}, /* ViT-B/16 */
    {3136, 384, 96}, {3136, 96, 384}, {784, 768, 192}, {196, 1536, 384}, {49, 3072, 768}, /* ConvNeXt */
    {1, 768, 768}, {1, 50257, 768}, {8, 50257, 768}, {1, 1000, 768}, /* GEMV, lm head */
    {64, 512, 784}, {64, 10, 512}, {1, 512, 784}, /* MLP-like */
};

int main(int argc, char **argv)
{
    int threads = 1, ai = 1;
    bench_window = 0.3;
    for (; ai + 1 < argc && argv[ai][0] == '-'; ai += 2) {
        if (!strcmp(argv[ai], "--threads")) threads = (int)strtol(argv[ai + 1], NULL, 10);
        else if (!strcmp(argv[ai], "--time")) bench_window = strtod(argv[ai + 1], NULL);
        else if (!strcmp(argv[ai], "--cold")) ncopy = (int)strtol(argv[ai + 1], NULL, 10);
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
    if (ncopy < 1) ncopy = 1;
    if (ncopy > 64) ncopy = 64;
    if (threads <= 1) bench_clock = CLOCK_THREAD_CPUTIME_ID;
    if (threads > 1 && kiln_pool_create(threads, &pool, &e)) return 1;
    printf("isa %s, pgemm at %d thread(s), oneDNN on 1\n", kiln_isa_name(kiln_isa_active()), threads);
    printf("%6s %6s %6s | %9s %9s %9s | pgemm/onednn-packed\n", "M", "N", "K", "pgemm", "dnnl-mm", "sgemm");
    for (size_t s = 0; s < n; s++) {
        size_t M = list[s][0], N = list[s][1], K = list[s][2];
        float *A = malloc(M * K * sizeof(float)), *B = malloc(K * N * sizeof(float)), *C = malloc(M * N * sizeof(float));
        size_t psz = (kiln_pgemm_packed_len(K, N) * sizeof(float) + 63) / 64 * 64;
        float *bp = aligned_alloc(64, psz * (size_t)ncopy);
        if (!A || !B || !C || !bp) return 1;
        for (size_t i = 0; i < M * K; i++) A[i] = (float)(i % 13) * 0.01f;
        for (size_t i = 0; i < K * N; i++) B[i] = (float)(i % 7) * 0.01f;
        kiln_pgemm_pack(B, N, false, K, N, bp);
        struct pg_ctx pg = {.pool = pool, .M = M, .A = A, .C = C};
        for (int c = 0; c < ncopy; c++) {
            float *bc = (float *)((char *)bp + psz * (size_t)c);
            if (c) memcpy(bc, bp, psz);
            kiln_pgemm_init(&pg.g[c], K, N, bc, kiln_isa_active());
        }
        double flop = 2.0 * (double)M * (double)N * (double)K * 1e-9;
        double tp = bench_best(run_pg, &pg), tm = time_dnnl_packed(M, N, K, A, B, C);
        struct sg_ctx sg = {M, N, K, A, B, C};
        double ts = bench_best(run_sg, &sg);
        printf("%6zu %6zu %6zu | %9.1f %9.1f %9.1f | %.2f\n", M, N, K, flop / tp, tm ? flop / tm : 0, flop / ts,
               tm ? tm / tp : 0);
        free(A), free(B), free(C), free(bp);
    }
    kiln_pool_free(pool);
    return 0;
}
