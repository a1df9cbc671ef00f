/* dnnl_int8.c: exact integer products with a constant 8-bit B prepacked by oneDNN's int8
 * matmul primitive, or by kiln's own int8 kernel where oneDNN has none exact (dnnl_int8.h). */
#include "cpu/dnnl_int8.h"

#include <stdatomic.h>
#include <string.h>

#include "cpu/int8_gemm_isa.h"
#include "cpu/isa.h"
#include "cpu/kernel.h"
#include "cpu/quant_isa.h"

#ifdef KILN_HAVE_DNNL
#include "cpu/dnnl_util.h"
#endif

#define IMM_MAX_SLICES 16

struct imm_slice {
    size_t m0, m1, n0, n1; /* its rows and columns of Y */
#ifdef KILN_HAVE_DNNL
    dnnl_primitive_t prim;
    dnnl_memory_desc_t a_md, w_md, c_md, sp_md; /* sp_md: its scratchpad (zeros: none) */
    const void *w;
#endif
};

typedef void (*imm_gemm_fn)(const void *, size_t, bool, size_t, size_t, const int16_t *, size_t, size_t,
                            size_t, int32_t *, size_t);

struct kiln_dnnl_imm {
    size_t M, K, N;           /* M 0: rows given at run (the slices are the row buckets) */
    size_t Kp;                /* A's row stride: K rounded up to 4 for oneDNN, K for kiln's own */
    bool a_signed;
    bool any_corr;  /* some corr[n] != 0: the rows' sums are needed */
    int32_t *colsum; /* [N] colsum(B') */
    int32_t *corr;   /* [N] off - b_zp[n] */
    int16_t *own;    /* B' packed for kiln's own kernel (int8_gemm_isa.h); NULL: oneDNN's slices */
    imm_gemm_fn gemm; /* the own kernel's active variant */
    const char *kernel;
    int n;
    struct imm_slice sl[IMM_MAX_SLICES];
};

/* colsum(B') and the corrections' constants (B' = B - off, off = 128 for a uint8 B). */
static void fold_constants(struct kiln_dnnl_imm *mm, const void *B, bool b_signed, const int32_t *bzp,
                           size_t nbzp)
{
    size_t K = mm->K, N = mm->N;
    int32_t off = b_signed ? 0 : 128;
    memset(mm->colsum, 0, N * sizeof *mm->colsum);
    for (size_t k = 0; k < K; k++)
        for (size_t n = 0; n < N; n++)
            mm->colsum[n] +=
                b_signed ? ((const int8_t *)B)[k * N + n] : (int32_t)((const uint8_t *)B)[k * N + n] - 128;
    mm->any_corr = false;
    for (size_t n = 0; n < N; n++) {
        int32_t z = nbzp == 0 ? 0 : bzp[nbzp == 1 ? 0 : n];
        mm->corr[n] = (int32_t)((uint32_t)off - (uint32_t)z);
        mm->any_corr |= mm->corr[n] != 0;
    }
}

#ifdef KILN_HAVE_DNNL
static void imm_free(void *arg)
{
    struct kiln_dnnl_imm *mm = arg;
    for (int i = 0; i < mm->n; i++)
        if (mm->sl[i].prim) dnnl_primitive_destroy(mm->sl[i].prim);
}

/* Whether oneDNN's int8 kernels at its effective instruction set accumulate exactly: VNNI
 * (AVX-512 or AVX) or AMX. */
static bool exact_int8_isa(void)
{
    unsigned isa = (unsigned)dnnl_get_effective_cpu_isa();
    unsigned v512 = (unsigned)dnnl_cpu_isa_avx512_core_vnni, v256 = (unsigned)dnnl_cpu_isa_avx2_vnni;
    return (isa & v512) == v512 || (isa & v256) == v256;
}

/* The slice's primitive; false when oneDNN declines it. */
static bool make_slice(dnnl_engine_t eng, struct kiln_dnnl_imm *mm, struct imm_slice *s)
{
    size_t nt = s->n1 - s->n0, mt = s->m1 - s->m0;
    dnnl_dims_t ad = {(dnnl_dim_t)mt, (dnnl_dim_t)mm->Kp}, as = {(dnnl_dim_t)mm->Kp, 1};
    dnnl_dims_t cd = {(dnnl_dim_t)mt, (dnnl_dim_t)nt}, cs = {(dnnl_dim_t)mm->N, 1};
    if (dnnl_memory_desc_init_by_strides(&s->a_md, 2, ad, mm->a_signed ? dnnl_s8 : dnnl_u8, as) ||
        dnnl_memory_desc_init_by_strides(&s->c_md, 2, cd, dnnl_s32, cs))
        return false;
    /* the reference matmul is exact too, but slower than kiln's own loop: decline it */
    kiln_dnnl_matmul_create(eng, &s->a_md, &s->c_md, dnnl_s8, true, &s->prim, &s->w_md, &s->sp_md);
    return s->prim != NULL;
}

/* B' = B - off as int8 into bs ([Kp, N], the rows past K zero). */
static void shift_weights(const struct kiln_dnnl_imm *mm, const void *B, bool b_signed, int8_t *bs)
{
    size_t K = mm->K, N = mm->N;
    memset(bs + K * N, 0, (mm->Kp - K) * N);
    for (size_t k = 0; k < K * N; k++)
        bs[k] = b_signed ? ((const int8_t *)B)[k] : (int8_t)((int32_t)((const uint8_t *)B)[k] - 128);
}

/* Rows given at run: the slices are primitives for blocks of IMM_BUCKETS[i] rows, all on one
 * packed B (when oneDNN picks the same layout for each); a run splits its M rows into
 * blocks of the largest (run in parallel), then the rest greedily into smaller ones. */
static const size_t IMM_BUCKETS[] = {256, 64, 16, 4, 1};
#define IMM_N_BUCKETS (sizeof IMM_BUCKETS / sizeof IMM_BUCKETS[0])

/* Slices: one per thread, each worth waking a thread for: ~2 M integer operations or 128
 * KiB of weights (the M = 1 products that only stream them). With at least 16 rows a slice
 * the rows are split (whole 16-row tiles): every slice then writes whole rows of Y, dense,
 * which oneDNN's brgemm (AMX / VNNI) kernels need, and all share one packed B; a column
 * slice writes a strided block of Y, which oneDNN 2.6 gives to its much slower gemm:jit, so
 * the columns are split (whole 16-column tiles) only when the rows are too few. *by_rows
 * says which; the result is the slice's extent. */
static size_t slice_extent(const struct kiln_kprep *p, size_t M, size_t K, size_t N, bool *by_rows)
{
    size_t t = p->threads < 1 ? 1 : (size_t)p->threads;
    if (t > IMM_MAX_SLICES) t = IMM_MAX_SLICES;
    double ops = 2.0 * (double)M * (double)N * (double)K, wbytes = (double)N * (double)K;
    *by_rows = M / t >= 16;
    size_t len = *by_rows ? M : N;
    while (t > 1 && (len / t < 16 || (ops / (double)t < 2e6 && (*by_rows || wbytes / (double)t < 131072.0)))) t--;
    size_t per = (len + t - 1) / t;
    if (t > 1) per = (per + 15) / 16 * 16;
    return per;
}

static kiln_status pack_slices(struct kiln_kprep *p, struct kiln_dnnl_imm *mm, const int8_t *bs)
{
    for (int i = 0; i < mm->n; i++) {
        struct imm_slice *s = &mm->sl[i];
        if (i > 0 && s->n0 == mm->sl[0].n0 && s->n1 == mm->sl[0].n1 && dnnl_memory_desc_equal(&s->w_md, &mm->sl[0].w_md)) {
            s->w = mm->sl[0].w; /* a row slice: the same packed B */
            continue;
        }
        dnnl_dims_t d = {(dnnl_dim_t)mm->Kp, (dnnl_dim_t)(s->n1 - s->n0)}, str = {(dnnl_dim_t)mm->N, 1};
        dnnl_memory_desc_t plain;
        if (dnnl_memory_desc_init_by_strides(&plain, 2, d, dnnl_s8, str)) return KILN_OK;
        KILN_TRY(kiln_dnnl_pack_weights(p, (uint32_t)(0x69380000u + (unsigned)i), &plain, bs + s->n0,
                                        &s->w_md, &s->w));
        if (!s->w) return KILN_OK;
    }
    return KILN_OK;
}

/* oneDNN's slices and packed B for mm (its constants set); *ok false when oneDNN is not
 * there, has no exact kernel at the active instruction set, or declines (mm->n then counts
 * the primitives the engine's release destroys). */
static kiln_status dnnl_prepare(struct kiln_kprep *p, struct kiln_dnnl_imm *mm, const void *B, bool b_signed,
                                bool *ok)
{
    *ok = false;
    dnnl_engine_t eng;
    size_t M = mm->M, K = mm->K, N = mm->N;
    if (kiln_isa_active() < KILN_ISA_AVX2 || !(eng = kiln_dnnl_engine()) || !exact_int8_isa()) return KILN_OK;
    mm->Kp = (K + 3) / 4 * 4; /* oneDNN 2.6's AMX kernels can fault (SIGILL) on a K tail */
    bool by_rows = true;
    size_t per = M ? slice_extent(p, M, K, N, &by_rows) : 0, len = by_rows ? M : N;
    for (size_t b = 0; !M && b < IMM_N_BUCKETS; b++) {
        struct imm_slice *s = &mm->sl[mm->n++];
        s->m0 = 0, s->m1 = IMM_BUCKETS[b], s->n0 = 0, s->n1 = N;
        if (!make_slice(eng, mm, s)) {
            imm_free(mm);
            mm->n = 0;
            return KILN_OK;
        }
    }
    for (size_t i0 = 0; i0 < len && mm->n < IMM_MAX_SLICES; i0 += per) {
        struct imm_slice *s = &mm->sl[mm->n++];
        size_t i1 = i0 + per < len ? i0 + per : len;
        s->m0 = by_rows ? i0 : 0, s->m1 = by_rows ? i1 : M;
        s->n0 = by_rows ? 0 : i0, s->n1 = by_rows ? N : i1;
        if (!make_slice(eng, mm, s)) {
            imm_free(mm);
            mm->n = 0;
            return KILN_OK; /* oneDNN declined: kiln's own kernel */
        }
    }
    kiln_status st = kiln_kprep_on_free(p, imm_free, mm);
    if (st) {
        imm_free(mm);
        mm->n = 0;
        return st;
    }
    size_t bytes;
    if (!kiln_mul_size(mm->Kp, N, &bytes)) return KILN_OK;
    int8_t *bs = kiln_malloc(bytes);
    if (!bs) return kiln_kfail(&p->kc, KILN_E_NOMEM, "out of memory for %zu bytes of int8 weights", bytes);
    shift_weights(mm, B, b_signed, bs);
    st = pack_slices(p, mm, bs);
    kiln_free(bs);
    KILN_TRY(st);
    for (int i = 0; i < mm->n; i++)
        if (!mm->sl[i].w) return KILN_OK; /* not packed: kiln's own kernel */
    *ok = true;
    mm->kernel = "onednn-int8";
    return KILN_OK;
}

#endif

/* A run's blocks of rows: block i runs slice slice[i] on rows [r0[i], r0[i] + its rows);
 * rows given at run: blocks [0, nfull) are the largest bucket's, at i * IMM_BUCKETS[0].
 * kiln's own kernel: block i is rows [own_mt * (i / own_nn), ...) x column blocks
 * [own_nbt * (i % own_nn), ...) of KILN_I8GEMM_NB. */
#define IMM_MAX_REST 16
struct imm_job {
    const struct kiln_dnnl_imm *mm;
    const void *A;
    int32_t azp;
    int32_t *Y;
    size_t M;
    size_t nfull, nrest, rest_r0[IMM_MAX_REST];
    int rest_slice[IMM_MAX_REST];
    size_t own_mt, own_nbt, own_nn;
    atomic_bool failed;
};

/* Row m's sum of A, wrapping like int32. */
static uint32_t row_sum(const struct kiln_dnnl_imm *mm, const void *A, size_t m)
{
    uint32_t s = 0;
    if (mm->a_signed) {
        const int8_t *r = (const int8_t *)A + m * mm->Kp;
        for (size_t k = 0; k < mm->K; k++) s += (uint32_t)(int32_t)r[k];
    } else {
        const uint8_t *r = (const uint8_t *)A + m * mm->Kp;
        for (size_t k = 0; k < mm->K; k++) s += r[k];
    }
    return s;
}

/* The zero points folded into rows [m0, m1) x columns [n0, n1) of Y (dnnl_int8.h's
 * formula). */
static void fold_zero_points(const struct imm_job *j, size_t n0, size_t n1, size_t m0, size_t m1)
{
    const struct kiln_dnnl_imm *mm = j->mm;
    uint32_t a = (uint32_t)j->azp, ka = (uint32_t)mm->K * a;
    if (!a && !mm->any_corr) return;
    void (*fold)(int32_t *, size_t, const int32_t *, const int32_t *, uint32_t, uint32_t) =
        KILN_ISA_SELECT(kiln_imm_fold_row_isa);
    for (size_t m = m0; m < m1; m++) {
        uint32_t r = mm->any_corr ? row_sum(mm, j->A, m) - ka : 0;
        fold(j->Y + m * mm->N + n0, n1 - n0, mm->corr + n0, mm->colsum + n0, r, a);
    }
}

#ifdef KILN_HAVE_DNNL
static void imm_chunk(void *ctx, size_t i0, size_t i1, int worker)
{
    (void)worker;
    struct imm_job *j = ctx;
    const struct kiln_dnnl_imm *mm = j->mm;
    for (size_t i = i0; i < i1; i++) {
        size_t si = i, r0;
        if (mm->M) {
            r0 = mm->sl[i].m0;
        } else if (i < j->nfull) {
            si = 0, r0 = i * IMM_BUCKETS[0];
        } else {
            si = (size_t)j->rest_slice[i - j->nfull], r0 = j->rest_r0[i - j->nfull];
        }
        const struct imm_slice *s = &mm->sl[si];
        size_t r1 = r0 + (s->m1 - s->m0);
        const char *a = (const char *)j->A + r0 * mm->Kp;
        struct kiln_dnnl_arg args[4] = {{DNNL_ARG_SRC, &s->a_md, a},
                                        {DNNL_ARG_WEIGHTS, &s->w_md, s->w},
                                        {DNNL_ARG_DST, &s->c_md, j->Y + r0 * mm->N + s->n0},
                                        {DNNL_ARG_SCRATCHPAD, &s->sp_md, NULL}};
        if (!kiln_dnnl_execute(s->prim, 4, args)) {
            atomic_store(&j->failed, true);
            continue;
        }
        fold_zero_points(j, s->n0, s->n1, r0, r1);
    }
}

#endif

/* kiln's own kernel on blocks [i0, i1) of the run (struct imm_job), each then corrected. */
static void own_chunk(void *ctx, size_t i0, size_t i1, int worker)
{
    (void)worker;
    const struct imm_job *j = ctx;
    const struct kiln_dnnl_imm *mm = j->mm;
    for (size_t i = i0; i < i1; i++) {
        size_t m0 = (i / j->own_nn) * j->own_mt, m1 = m0 + j->own_mt < j->M ? m0 + j->own_mt : j->M;
        size_t b0 = (i % j->own_nn) * j->own_nbt, b1 = b0 + j->own_nbt;
        size_t n0 = b0 * KILN_I8GEMM_NB, n1 = b1 * KILN_I8GEMM_NB < mm->N ? b1 * KILN_I8GEMM_NB : mm->N;
        if (n0 >= n1 || m0 >= m1) continue;
        mm->gemm((const char *)j->A + m0 * mm->Kp, mm->Kp, mm->a_signed, m1 - m0, mm->K, mm->own, mm->N, b0,
                 b1, j->Y + m0 * mm->N, mm->N);
        fold_zero_points(j, n0, n1, m0, m1);
    }
}

/* Splits the own kernel's M x N product into blocks for t threads: rows in panels of 48
 * (whole 6-row micro-tiles), the column blocks too when the panels are fewer than 2t; one
 * block when the whole product is under ~2 M integer operations. */
static size_t own_blocks(struct imm_job *j, size_t M, int threads)
{
    const struct kiln_dnnl_imm *mm = j->mm;
    size_t nb = (mm->N + KILN_I8GEMM_NB - 1) / KILN_I8GEMM_NB, t = threads < 1 ? 1 : (size_t)threads;
    double ops = 2.0 * (double)M * (double)mm->N * (double)mm->K;
    if (t == 1 || ops < 2e6) {
        j->own_mt = M ? M : 1, j->own_nbt = nb ? nb : 1, j->own_nn = 1;
        return 1;
    }
    j->own_mt = 48;
    size_t np = (M + 47) / 48, want = 2 * t, split = np >= want ? 1 : (want + np - 1) / np;
    if (split > nb) split = nb ? nb : 1;
    j->own_nbt = (nb + split - 1) / split;
    j->own_nn = (nb + j->own_nbt - 1) / j->own_nbt;
    return np * j->own_nn;
}

bool kiln_dnnl_imm_run(const struct kiln_dnnl_imm *mm, struct kiln_pool *pool, const void *A, size_t M,
                       int32_t a_zp, int32_t *Y)
{
    struct imm_job j = {.mm = mm, .A = A, .azp = a_zp, .Y = Y, .M = M};
    atomic_init(&j.failed, false);
    if (mm->M && M != mm->M) return false;
    if (mm->own) {
        size_t blocks = own_blocks(&j, M, kiln_pool_threads(pool));
        kiln_pool_for(pool, blocks, 1, own_chunk, &j);
        return true;
    }
#ifdef KILN_HAVE_DNNL
    size_t blocks = (size_t)mm->n;
    if (!mm->M) { /* rows given at run: the largest bucket's blocks, then the rest */
        j.nfull = M / IMM_BUCKETS[0];
        size_t r = j.nfull * IMM_BUCKETS[0];
        for (size_t b = 1; b < IMM_N_BUCKETS; b++)
            for (; M - r >= IMM_BUCKETS[b] && j.nrest < IMM_MAX_REST; r += IMM_BUCKETS[b])
                j.rest_slice[j.nrest] = (int)b, j.rest_r0[j.nrest++] = r;
        if (r != M) return false; /* cannot happen: the last bucket is 1 row, at most 3 of each */
        blocks = j.nfull + j.nrest;
    }
    kiln_pool_for(pool, blocks, 1, imm_chunk, &j);
    return !atomic_load(&j.failed);
#else
    return false;
#endif
}

/* B' packed for kiln's own kernel, its active variant chosen. */
static kiln_status own_prepare(struct kiln_kprep *p, struct kiln_dnnl_imm *mm, const void *B, bool b_signed)
{
    size_t len, bytes;
    if (!kiln_mul_size(mm->K, mm->N, &len) ||
        !kiln_mul_size(kiln_i8gemm_packed_len(mm->K, mm->N), 2, &bytes) || bytes / 2 < len)
        return kiln_kfail(&p->kc, KILN_E_NOMEM, "int8 weights of %zu x %zu are too large", mm->K, mm->N);
    KILN_TRY(kiln_kprep_alloc(p, bytes, (void **)&mm->own));
    kiln_i8gemm_pack(B, b_signed, 128, mm->K, mm->N, mm->own);
    mm->Kp = mm->K;
    mm->gemm = KILN_ISA_SELECT(kiln_i8gemm_isa);
    mm->kernel = kiln_isa_active() == KILN_ISA_AVX512 ? "kiln-int8-avx512"
                 : kiln_isa_active() == KILN_ISA_AVX2 ? "kiln-int8-avx2"
                                                      : "kiln-int8-portable";
    return KILN_OK;
}

kiln_status kiln_dnnl_imm_prepare(struct kiln_kprep *p, size_t M, size_t K, size_t N, bool a_signed,
                                  const void *B, bool b_signed, const int32_t *bzp, size_t nbzp,
                                  struct kiln_dnnl_imm **out)
{
    *out = NULL;
    if (!K || !N || !B) return KILN_OK;
    struct kiln_dnnl_imm *mm;
    KILN_TRY(kiln_kprep_alloc(p, sizeof *mm, (void **)&mm));
    memset(mm, 0, sizeof *mm);
    KILN_TRY(kiln_kprep_alloc(p, N * sizeof(int32_t), (void **)&mm->colsum));
    KILN_TRY(kiln_kprep_alloc(p, N * sizeof(int32_t), (void **)&mm->corr));
    mm->M = M, mm->K = K, mm->N = N, mm->a_signed = a_signed;
    fold_constants(mm, B, b_signed, bzp, nbzp);
    bool ok = false;
#ifdef KILN_HAVE_DNNL
    KILN_TRY(dnnl_prepare(p, mm, B, b_signed, &ok));
#endif
    if (!ok) KILN_TRY(own_prepare(p, mm, B, b_signed));
    *out = mm;
    return KILN_OK;
}

void kiln_dnnl_imm_dims(const struct kiln_dnnl_imm *mm, size_t *M, size_t *K, size_t *N)
{
    *M = mm->M, *K = mm->K, *N = mm->N;
}

size_t kiln_dnnl_imm_lda(const struct kiln_dnnl_imm *mm)
{
    return mm->Kp;
}

const int32_t *kiln_dnnl_imm_colsum(const struct kiln_dnnl_imm *mm)
{
    return mm->any_corr ? NULL : mm->colsum;
}

const char *kiln_dnnl_imm_kernel(const struct kiln_dnnl_imm *mm)
{
    return mm->kernel;
}
