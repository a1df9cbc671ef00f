/* pgemm.c: kiln's own float32 GEMM with a prepacked B (pgemm.h): packing, blobs, threads.
 * The register tiles are in src/cpu/isa/pgemm.c (cpu/pgemm_isa.h).
 *
 * Threads: the product is cut into at most one slice per thread, each worth waking a thread
 * for (~1 MFLOP, or 128 KiB of B for the few-row products that only stream their weights),
 * as dnnl_matmul.c cuts oneDNN's: by columns, in whole 32-column panels spread evenly (a
 * slice streams only its share of B and keeps it in its own L2 from run to run), or by rows
 * (all slices sharing B) when there are fewer panels than threads. Every element is computed
 * by one thread in the same order whatever the cut, so results do not depend on the thread
 * count.
 */
#include "cpu/pgemm.h"

#include <string.h>

#include "cpu/kernel.h"

#define NR         KILN_PGEMM_NR
#define MAX_SLICES 64

/* The least work of a slice: flops, or bytes of B for few-row products (tests lower it). */
static double min_flops = 1e6, min_wbytes = 131072.0;
static size_t min_rows = 16;

void kiln_pgemm_set_min_work(double flops, double wbytes)
{
    min_flops = flops, min_wbytes = wbytes, min_rows = flops < 1e6 ? 1 : 16;
}

bool kiln_pgemm_available(void)
{
    return kiln_isa_active() >= KILN_ISA_AVX2;
}

size_t kiln_pgemm_packed_len(size_t K, size_t N)
{
    size_t np = N / NR + (N % NR != 0), n;
    if (!kiln_mul_size(np, NR, &n) || !kiln_mul_size(n, K, &n) || !kiln_mul_size(n, sizeof(float), &(size_t){0}))
        return 0;
    return n;
}

void kiln_pgemm_pack(const float *B, size_t ldb, bool transB, size_t K, size_t N, float *bp)
{
    for (size_t j0 = 0; j0 < N; j0 += NR) {
        size_t nc = N - j0 < NR ? N - j0 : NR;
        float *d = bp + j0 * K; /* panel j0 / NR: K rows of NR */
        if (!transB) {
            for (size_t k = 0; k < K; k++) {
                memcpy(d + k * NR, B + k * ldb + j0, nc * sizeof(float));
                memset(d + k * NR + nc, 0, (NR - nc) * sizeof(float));
            }
        } else {
            /* B [N, K]: column n of op(B) is row n of B; read each row once, in unit stride. */
            memset(d, 0, K * NR * sizeof(float));
            for (size_t j = 0; j < nc; j++) {
                const float *s = B + (j0 + j) * ldb;
                for (size_t k = 0; k < K; k++) d[k * NR + j] = s[k];
            }
        }
    }
}

void kiln_pgemm_init(struct kiln_pgemm *g, size_t K, size_t N, const float *bp, enum kiln_isa isa)
{
    g->K = K, g->N = N, g->bp = bp, g->isa = isa;
    g->block = KILN_ISA_VARIANT(kiln_pgemm_block_isa, isa);
}

kiln_status kiln_pgemm_prepare(struct kiln_kprep *p, uint32_t key, size_t K, size_t N, const float *B,
                               size_t ldb, bool transB, struct kiln_pgemm **out)
{
    *out = NULL;
    size_t len = kiln_pgemm_packed_len(K, N), have;
    if (!kiln_pgemm_available() || !K || !N || !B || !len) return KILN_OK;
    struct kiln_pgemm *g;
    KILN_TRY(kiln_kprep_alloc(p, sizeof *g, (void **)&g));
    void *bp;
    bool fill = true;
    if (!kiln_kprep_loading(p) || (kiln_kprep_blob_peek(p, key, &have) && have == len * sizeof(float)))
        KILN_TRY(kiln_kprep_blob(p, key, len * sizeof(float), &bp, &fill));
    else /* an engine file made with another variant: pack into prepare's own memory */
        KILN_TRY(kiln_kprep_alloc(p, len * sizeof(float), &bp));
    if (fill) kiln_pgemm_pack(B, ldb, transB, K, N, bp);
    kiln_pgemm_init(g, K, N, bp, kiln_isa_active());
    *out = g;
    return KILN_OK;
}

/* The cut for M rows over t threads: the number of slices; *per the panels (columns) or rows
 * of each slice but the last. */
static int cut(const struct kiln_pgemm *g, size_t M, int threads, bool *by_rows, size_t *per)
{
    size_t np = g->N / NR + (g->N % NR != 0);
    size_t t = threads < 1 ? 1 : threads > MAX_SLICES ? MAX_SLICES : (size_t)threads;
    double flops = 2.0 * (double)M * (double)g->N * (double)g->K, wbytes = 4.0 * (double)g->N * (double)g->K;
    *by_rows = np < t && M / t >= min_rows;
    size_t len = *by_rows ? M : np, unit = *by_rows ? min_rows : 1;
    while (t > 1 && (len / t < unit || (flops / (double)t < min_flops && (*by_rows || wbytes / (double)t < min_wbytes))))
        t--;
    if (t == 1) {
        *by_rows = false;
        *per = np;
        return 1;
    }
    if (*by_rows) {
        *per = (M + t - 1) / t;
        *per = (*per + 7) / 8 * 8;
        return (int)((M + *per - 1) / *per);
    }
    *per = 0; /* columns: slice s gets panels [s np / t, (s + 1) np / t) */
    return (int)t;
}

int kiln_pgemm_slices(const struct kiln_pgemm *g, size_t M, int threads, bool *by_rows)
{
    size_t per;
    return cut(g, M, threads, by_rows, &per);
}

struct pg_job {
    const struct kiln_pgemm *g;
    struct kiln_pgemm_args a;
    size_t M, per, np;
    int n;
    bool by_rows;
};

static void pg_slice(const struct pg_job *j, size_t s)
{
    size_t m0 = 0, m1 = j->M, n0 = 0, n1 = j->g->N;
    if (j->by_rows) {
        m0 = s * j->per;
        m1 = m0 + j->per < j->M ? m0 + j->per : j->M;
    } else {
        n0 = s * j->np / (size_t)j->n * NR;
        n1 = (s + 1) * j->np / (size_t)j->n * NR;
        if (n1 > j->g->N) n1 = j->g->N;
    }
    if (m0 < m1 && n0 < n1) j->g->block(&j->a, m0, m1, n0, n1, 0, j->g->K);
}

static void pg_chunk(void *ctx, size_t s0, size_t s1, int worker)
{
    (void)worker;
    for (size_t s = s0; s < s1; s++) pg_slice(ctx, s);
}

void kiln_pgemm_run(const struct kiln_pgemm *g, struct kiln_pool *pool, size_t M, const float *A, size_t lda,
                    float *C, size_t ldc, bool acc, const struct kiln_pgemm_epi *epi)
{
    if (!M || !g->N) return;
    struct pg_job j = {.g = g, .M = M, .np = g->N / NR + (g->N % NR != 0)};
    j.a = (struct kiln_pgemm_args){.A = A, .lda = lda, .bp = g->bp, .K = g->K, .N = g->N, .C = C, .ldc = ldc,
                                   .acc = acc};
    if (epi) j.a.bias = epi->bias, j.a.z = epi->z, j.a.ldz = epi->ldz, j.a.act = epi->act;
    if (!g->K) { /* an empty sum: C = 0 (or kept), then the epilogue */
        static const float zero[NR];
        j.a.bp = zero, j.a.K = 0;
    }
    j.n = cut(g, M, pool ? kiln_pool_threads(pool) : 1, &j.by_rows, &j.per);
    if (j.n <= 1) pg_slice(&j, 0);
    else kiln_pool_for(pool, (size_t)j.n, 1, pg_chunk, &j);
}

size_t kiln_pgemm_a_stride(const struct kiln_pgemm *g, size_t M, size_t lda)
{
    if (g->isa < KILN_ISA_AVX512 || M < 2 || lda % 512 || !g->K) return 0;
    return ((g->K + 15) / 16 | 1) * 16;
}

struct copy_job {
    const float *A;
    float *dst;
    size_t lda, ld, K;
};

static void copy_rows(void *ctx, size_t r0, size_t r1, int worker)
{
    (void)worker;
    const struct copy_job *j = ctx;
    for (size_t r = r0; r < r1; r++) memcpy(j->dst + r * j->ld, j->A + r * j->lda, j->K * sizeof(float));
}

void kiln_pgemm_copy_a(const struct kiln_pgemm *g, struct kiln_pool *pool, size_t M, const float *A, size_t lda,
                       float *dst, size_t ld)
{
    struct copy_job j = {A, dst, lda, ld, g->K};
    /* split only when there is enough to copy (256 KiB a thread) */
    if (pool && kiln_pool_threads(pool) > 1 && M * g->K * sizeof(float) >= 2 * 262144)
        kiln_pool_for(pool, M, 8, copy_rows, &j);
    else copy_rows(&j, 0, M, 0);
}
