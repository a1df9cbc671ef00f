/* dnnl_matmul.c: products with a constant B prepacked by oneDNN's matmul primitive
 * (dnnl_matmul.h). */
#include "cpu/dnnl_matmul.h"

#include <string.h>

#include "cpu/isa.h"
#include "cpu/kernel.h"

#ifdef KILN_HAVE_DNNL
#include "cpu/dnnl_util.h"

#define MM_MAX_SLICES 16

struct mm_slice {
    size_t m0, m1, n0, n1; /* its rows and columns of C */
    dnnl_primitive_t prim;
    dnnl_memory_desc_t a_md, w_md, c_md, sp_md; /* sp_md: its scratchpad (zeros: none) */
    const void *w;
    bool staged; /* c_md is a dense [M, n1 - n0]: the run writes a thread buffer, then C */
};

struct kiln_dnnl_mm {
    size_t M, K, N;
    int n;
    struct mm_slice sl[MM_MAX_SLICES];
};

static void mm_free(void *arg)
{
    struct kiln_dnnl_mm *mm = arg;
    for (int i = 0; i < mm->n; i++)
        if (mm->sl[i].prim) dnnl_primitive_destroy(mm->sl[i].prim);
}

/* The slice's columns of op(B) packed into w_md's format (blob `key`). */
static kiln_status pack(struct kiln_kprep *p, struct mm_slice *s, uint32_t key, const float *B, size_t K,
                        size_t ldb, bool transB)
{
    size_t nt = s->n1 - s->n0;
    dnnl_dims_t d = {(dnnl_dim_t)K, (dnnl_dim_t)nt};
    dnnl_dims_t str = {transB ? 1 : (dnnl_dim_t)ldb, transB ? (dnnl_dim_t)ldb : 1};
    const float *src = transB ? B + s->n0 * ldb : B + s->n0;
    dnnl_memory_desc_t plain;
    if (dnnl_memory_desc_init_by_strides(&plain, 2, d, dnnl_f32, str)) return KILN_OK;
    return kiln_dnnl_pack_weights(p, key, &plain, src, &s->w_md, &s->w);
}

/* The slice's primitive writing C's columns in place (dense false) or a dense [M, nt] buffer;
 * false when oneDNN declines it. */
static bool make_prim(dnnl_engine_t eng, struct kiln_dnnl_mm *mm, struct mm_slice *s, bool dense)
{
    size_t nt = s->n1 - s->n0, mt = s->m1 - s->m0;
    dnnl_dims_t ad = {(dnnl_dim_t)mt, (dnnl_dim_t)mm->K}, as = {(dnnl_dim_t)mm->K, 1};
    dnnl_dims_t cd = {(dnnl_dim_t)mt, (dnnl_dim_t)nt}, cs = {(dnnl_dim_t)(dense ? nt : mm->N), 1};
    if (dnnl_memory_desc_init_by_strides(&s->a_md, 2, ad, dnnl_f32, as) ||
        dnnl_memory_desc_init_by_strides(&s->c_md, 2, cd, dnnl_f32, cs))
        return false;
    kiln_dnnl_matmul_create(eng, &s->a_md, &s->c_md, dnnl_f32, false, &s->prim, &s->w_md, &s->sp_md);
    s->staged = dense && nt < mm->N;
    return s->prim != NULL;
}

/* Whether the slice's primitive packs its weights (a blocked format). One whose weights stay
 * plain is oneDNN's gemm fallback, which repacks B at every call (2-3 times slower). */
static bool packs_weights(const struct mm_slice *s)
{
    dnnl_memory_desc_t plain;
    dnnl_dims_t wd = {s->w_md.dims[0], s->w_md.dims[1]};
    return dnnl_memory_desc_init_by_tag(&plain, 2, wd, dnnl_f32, dnnl_ab) == dnnl_success &&
           !dnnl_memory_desc_equal(&plain, &s->w_md);
}

/* The slice's primitive; false when oneDNN declines it. A slice narrower than C whose
 * in-place primitive keeps plain weights (oneDNN's brgemm matmul declines some row strides
 * of C, e.g. the odd 50257 of GPT-2's vocabulary) is made again writing a dense buffer,
 * copied into C by the run, when that one packs. */
static bool make_slice(dnnl_engine_t eng, struct kiln_dnnl_mm *mm, struct mm_slice *s)
{
    if (!make_prim(eng, mm, s, false)) return false;
    if (s->n1 - s->n0 == mm->N || packs_weights(s)) return true;
    struct mm_slice d = *s;
    d.prim = NULL;
    if (!make_prim(eng, mm, &d, true) || !packs_weights(&d)) {
        if (d.prim) dnnl_primitive_destroy(d.prim);
        return true;
    }
    dnnl_primitive_destroy(s->prim);
    *s = d;
    return true;
}

/* Slices: one per thread, whole 16-column or 16-row tiles, each worth waking a thread for:
 * ~1 MFLOP (about 5 us of arithmetic) or, for the few-row products that only stream their
 * weights (a classifier's M = 1), 128 KiB of weights (about 5 us of memory traffic; each
 * thread then also keeps its share of the weights in its own L2 from run to run).
 *
 * The columns are split when each slice gets at least 16: for float32, oneDNN 2.6's brgemm
 * takes a strided column block of C (unlike int8's, dnnl_int8.c), and a column slice streams
 * only its share of B, where a row slice streams all of it: measured on the bench models'
 * shapes at 2 threads, row slices were never faster and up to 2x slower (ViT's 197 x 3072 x
 * 768: 112 + 85 rows 5.3 + 2.4 ms against 2 x 2.6 ms; docs/benchmarks.md). Narrower products
 * with many rows (N < 16 T, M >= 16 T) split the rows instead: every slice writes whole dense
 * rows of C and all share one packed B. *by_rows says which; the result is the slice's
 * extent (N for one slice). */
static size_t slice_extent(const struct kiln_kprep *p, size_t M, size_t K, size_t N, bool *by_rows)
{
    size_t t = p->threads < 1 ? 1 : (size_t)p->threads;
    if (t > MM_MAX_SLICES) t = MM_MAX_SLICES;
    double flops = 2.0 * (double)M * (double)N * (double)K;
    double wbytes = 4.0 * (double)N * (double)K;
    *by_rows = N / t < 16 && M / t >= 16;
    size_t len = *by_rows ? M : N;
    while (t > 1 && (len / t < 16 || (flops / (double)t < 1e6 && (*by_rows || wbytes / (double)t < 131072.0)))) t--;
    if (t == 1) *by_rows = false;
    size_t per = (len + t - 1) / t;
    if (t > 1) per = (per + 15) / 16 * 16;
    return t == 1 ? N : per;
}

kiln_status kiln_dnnl_mm_prepare(struct kiln_kprep *p, size_t M, size_t K, size_t N, const float *B,
                                 size_t ldb, bool transB, struct kiln_dnnl_mm **out)
{
    *out = NULL;
    dnnl_engine_t eng;
    if (!M || !K || !N || !B || kiln_isa_active() < KILN_ISA_AVX2 || !(eng = kiln_dnnl_engine()))
        return KILN_OK;
    struct kiln_dnnl_mm *mm;
    KILN_TRY(kiln_kprep_alloc(p, sizeof *mm, (void **)&mm));
    mm->M = M, mm->K = K, mm->N = N;
    bool by_rows;
    size_t per = slice_extent(p, M, K, N, &by_rows), len = by_rows ? M : N;
    for (size_t i0 = 0; i0 < len && mm->n < MM_MAX_SLICES; i0 += per) {
        struct mm_slice *s = &mm->sl[mm->n++];
        size_t i1 = i0 + per < len ? i0 + per : len;
        s->m0 = by_rows ? i0 : 0, s->m1 = by_rows ? i1 : M;
        s->n0 = by_rows ? 0 : i0, s->n1 = by_rows ? N : i1;
        if (!make_slice(eng, mm, s)) {
            mm_free(mm);
            return KILN_OK; /* oneDNN declined: the caller keeps its sgemm */
        }
    }
    kiln_status st = kiln_kprep_on_free(p, mm_free, mm);
    if (st) {
        mm_free(mm);
        return st;
    }
    for (int i = 0; i < mm->n; i++) {
        struct mm_slice *s = &mm->sl[i], *s0 = &mm->sl[0];
        if (i > 0 && s->n0 == s0->n0 && s->n1 == s0->n1 && dnnl_memory_desc_equal(&s->w_md, &s0->w_md)) {
            s->w = s0->w; /* a row slice: the same packed B */
            continue;
        }
        KILN_TRY(pack(p, s, (uint32_t)(0x6d6d0000u + (unsigned)i), B, K, ldb, transB));
        if (!mm->sl[i].w) return KILN_OK; /* not packed: the caller keeps its sgemm */
    }
    *out = mm;
    return KILN_OK;
}

struct mm_job {
    const struct kiln_dnnl_mm *mm;
    const float *A;
    float *C;
    bool failed[MM_MAX_SLICES];
};

static void mm_chunk(void *ctx, size_t i0, size_t i1, int worker)
{
    (void)worker;
    struct mm_job *j = ctx;
    for (size_t i = i0; i < i1; i++) {
        const struct mm_slice *s = &j->mm->sl[i];
        size_t M = s->m1 - s->m0, N = j->mm->N, nt = s->n1 - s->n0;
        float *C = j->C + s->m0 * N;
        float *dst = s->staged ? kiln_dnnl_thread_buffer(M * nt * sizeof(float)) : C + s->n0;
        struct kiln_dnnl_arg args[4] = {{DNNL_ARG_SRC, &s->a_md, j->A + s->m0 * j->mm->K},
                                        {DNNL_ARG_WEIGHTS, &s->w_md, s->w},
                                        {DNNL_ARG_DST, &s->c_md, dst},
                                        {DNNL_ARG_SCRATCHPAD, &s->sp_md, NULL}};
        j->failed[i] = !dst || !kiln_dnnl_execute(s->prim, 4, args);
        if (s->staged && !j->failed[i])
            for (size_t r = 0; r < M; r++) memcpy(C + r * N + s->n0, dst + r * nt, nt * sizeof(float));
    }
}

bool kiln_dnnl_mm_run(const struct kiln_dnnl_mm *mm, struct kiln_pool *pool, const float *A, float *C)
{
    struct mm_job j = {mm, A, C, {0}};
    kiln_pool_for(pool, (size_t)mm->n, 1, mm_chunk, &j);
    for (int i = 0; i < mm->n; i++)
        if (j.failed[i]) return false;
    return true;
}

void kiln_dnnl_mm_dims(const struct kiln_dnnl_mm *mm, size_t *M, size_t *K, size_t *N)
{
    *M = mm->M, *K = mm->K, *N = mm->N;
}

int kiln_dnnl_mm_slices(const struct kiln_dnnl_mm *mm, bool *by_rows)
{
    *by_rows = mm->n > 1 && mm->sl[0].m1 < mm->M;
    return mm->n;
}
#else
kiln_status kiln_dnnl_mm_prepare(struct kiln_kprep *p, size_t M, size_t K, size_t N, const float *B,
                                 size_t ldb, bool transB, struct kiln_dnnl_mm **out)
{
    (void)p, (void)M, (void)K, (void)N, (void)B, (void)ldb, (void)transB;
    *out = NULL;
    return KILN_OK;
}

bool kiln_dnnl_mm_run(const struct kiln_dnnl_mm *mm, struct kiln_pool *pool, const float *A, float *C)
{
    (void)mm, (void)pool, (void)A, (void)C;
    return false;
}

void kiln_dnnl_mm_dims(const struct kiln_dnnl_mm *mm, size_t *M, size_t *K, size_t *N)
{
    (void)mm;
    *M = *K = *N = 0;
}

int kiln_dnnl_mm_slices(const struct kiln_dnnl_mm *mm, bool *by_rows)
{
    (void)mm;
    *by_rows = false;
    return 0;
}
#endif
