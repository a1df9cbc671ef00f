/* src/cpu/ops/gemm.c: ONNX MatMul (opsets 1, 9, 13) and Gemm (opsets 1, 6, 7, 9, 11, 13).
 *
 * MatMul follows numpy.matmul: a 1-D A is promoted to [1, K] and a 1-D B to [K, 1], and the
 * promoted dim is removed from the result; leading (batch) dims broadcast as in
 * Broadcasting.md. Gemm computes Y = alpha * op(A) * op(B) + beta * C with C (optional from
 * opset 11) broadcast unidirectionally to [M, N]; the opset < 7 `broadcast` attribute is
 * ignored since any legal C broadcasts anyway.
 *
 * Threads: a product big enough for kiln_sgemm_par is split over the session's pool; a
 * batch of smaller ones runs side by side, one kiln_sgemm per batch entry.
 *
 * dtypes: float32 runs on kiln_sgemm; float16/bfloat16 are widened to float32, multiplied
 * there and rounded back once; float64 is computed in double; integer types accumulate in
 * int64 with wrap-around (the spec leaves overflow undefined).
 *
 * Prepare (kernel.h): Gemm decodes transA, transB, alpha and beta once. A float32 constant B
 * with transB = 1 is prepacked as op(B) = B^T, [K, N] row-major (blob 0), and the run hands
 * it to kiln_sgemm untransposed: with oneDNN that orientation measured 1.1x to 2.3x faster
 * than the transposed one for M = 1..64 (and the portable GEMM packs it with unit-stride
 * reads). A B already [K, N] (Gemm with transB = 0, MatMul) is what the GEMM takes as it is,
 * so it is not copied. One implementation each: how a product is split over threads is
 * decided per run from the shapes.
 *
 * Prepacked variants (p->chosen, shown by profiles): a float32 constant B of MatMul, or of a
 * Gemm with transA 0 and alpha 1, is packed once, either for oneDNN's matmul primitive
 * (1 "onednn-packed", dnnl_matmul.h; needs A's rows known at prepare) or for kiln's own GEMM
 * (2 "kiln-pgemm", pgemm.h; any rows, and a Gemm's C of one row with beta 1 is its bias
 * epilogue). pgemm_wins says which (kiln's for few rows, rows unknown, at AVX2 fewer than
 * 512 rows, or at AVX-512 a B of 2 MB or more, which streams from memory at every run;
 * oneDNN's for many rows on a small B;
 * each falls back to the other where it is not there: no oneDNN, or the portable level,
 * which has neither); an engine file keeps the choice; KILN_MATMUL_PACKED=onednn|pgemm forces
 * one (tests, A/B measurements). With kiln's GEMM a transB Gemm keeps no B^T copy, and
 * kiln.FusedMatMul's bias, residual and activation run in its epilogue
 * (kiln_cpu_matmul_run_epi, called by fused.c).
 */
#include <stdlib.h>
#include <string.h>

#include "base/pool.h"
#include "cpu/broadcast.h"
#include "cpu/dnnl_matmul.h"
#include "cpu/features.h"
#include "cpu/ops/fused.h"
#include "cpu/pgemm.h"
#include "cpu/sgemm.h"
#include "cpu/tensor_util.h"
#include "infer/infer.h"

/* ------------------------------------------------------------------ dtype staging */

static bool is_half(kiln_dtype dt)
{
    return dt == KILN_DTYPE_F16 || dt == KILN_DTYPE_BF16;
}

static bool supported_numeric(kiln_dtype dt)
{
    return dt == KILN_DTYPE_F32 || dt == KILN_DTYPE_F64 || is_half(dt) || kiln_dtype_is_int(dt);
}

/* Y[M,N] (+)= A[M,K] B[K,N] for the non-float32 paths; strides as kiln_sgemm. `acc` says
 * whether Y already holds beta*C to add to (then alpha scales only the product). */
static void gemm_f64(bool tA, bool tB, size_t M, size_t N, size_t K, double alpha,
                     const double *A, size_t lda, const double *B, size_t ldb, double *Y)
{
    for (size_t i = 0; i < M; i++)
        for (size_t j = 0; j < N; j++) {
            double s = 0;
            for (size_t p = 0; p < K; p++)
                s += (tA ? A[p * lda + i] : A[i * lda + p]) * (tB ? B[j * ldb + p] : B[p * ldb + j]);
            Y[i * N + j] += alpha * s;
        }
}

/* Integer product through the generic accessors (rare path; int64 accumulation wraps). */
static void gemm_int(bool tA, bool tB, size_t M, size_t N, size_t K, int64_t alpha,
                     const struct kiln_tensor *A, size_t aoff, size_t lda,
                     const struct kiln_tensor *B, size_t boff, size_t ldb, struct kiln_tensor *Y,
                     size_t yoff, bool acc)
{
    for (size_t i = 0; i < M; i++)
        for (size_t j = 0; j < N; j++) {
            uint64_t s = 0;
            for (size_t p = 0; p < K; p++)
                s += (uint64_t)kiln_tensor_get_i64(A, aoff + (tA ? p * lda + i : i * lda + p)) *
                     (uint64_t)kiln_tensor_get_i64(B, boff + (tB ? j * ldb + p : p * ldb + j));
            s *= (uint64_t)alpha;
            if (acc) s += (uint64_t)kiln_tensor_get_i64(Y, yoff + i * N + j);
            int64_t v = (int64_t)s;
            /* set_f64 would lose int64 precision; store by width. */
            switch (Y->dtype) {
            case KILN_DTYPE_I64: ((int64_t *)Y->data)[yoff + i * N + j] = v; break;
            case KILN_DTYPE_U64: ((uint64_t *)Y->data)[yoff + i * N + j] = (uint64_t)v; break;
            case KILN_DTYPE_I32: ((int32_t *)Y->data)[yoff + i * N + j] = (int32_t)v; break;
            case KILN_DTYPE_U32: ((uint32_t *)Y->data)[yoff + i * N + j] = (uint32_t)v; break;
            case KILN_DTYPE_I16: ((int16_t *)Y->data)[yoff + i * N + j] = (int16_t)v; break;
            case KILN_DTYPE_U16: ((uint16_t *)Y->data)[yoff + i * N + j] = (uint16_t)v; break;
            case KILN_DTYPE_I8: ((int8_t *)Y->data)[yoff + i * N + j] = (int8_t)v; break;
            default: ((uint8_t *)Y->data)[yoff + i * N + j] = (uint8_t)v; break;
            }
        }
}

/* ------------------------------------------------------------------ MatMul */

/* A float32 batched MatMul whose products are too small to split: whole products run side by
 * side, each one kiln_sgemm of the shape the serial loop uses. */
struct mm_batch_job {
    const float *a, *b;
    float *y;
    size_t M, N, K;
    int br;
    const int64_t *bdims;
    const size_t *sa, *sb; /* batch-dim element strides (0 where broadcast) */
};

static void mm_batch_chunk(void *ctx, size_t t0, size_t t1, int worker)
{
    (void)worker;
    const struct mm_batch_job *j = ctx;
    for (size_t t = t0; t < t1; t++) {
        size_t rem = t, oa = 0, ob = 0;
        for (int d = j->br - 1; d >= 0; d--) {
            size_t i = rem % (size_t)j->bdims[d];
            rem /= (size_t)j->bdims[d];
            oa += i * j->sa[d];
            ob += i * j->sb[d];
        }
        kiln_sgemm(false, false, j->M, j->N, j->K, 1.0f, j->a + oa, j->K, j->b + ob, j->N, 0.0f,
                   j->y + t * j->M * j->N, j->N);
    }
}

/* ------------------------------------------------------------------ MatMul */

/* ------------------------------------------------------------------ prepacked variants */

/* The variants of a product with a constant float32 B, numbered as engine files keep them
 * (p->chosen): 0 none (kiln_sgemm packs B at every call), 1 oneDNN's matmul primitive with
 * B prepacked (dnnl_matmul.h), 2 kiln's own GEMM with B prepacked (pgemm.h). */
enum { PACKED_NONE, PACKED_ONEDNN, PACKED_PGEMM };
static const char *const packed_name[] = {NULL, "onednn-packed", "kiln-pgemm"};

/* Blob keys of the pgemm variant (oneDNN's are 0x6d6d0000 + slice; Gemm's B^T is 0). */
#define PGEMM_BLOB 0x70670000u

/* Whether kiln's GEMM is the one to take for M x K x N when both are there. M < 0: M unknown
 * at prepare, where the only other choice is kiln_sgemm, which packs B at every call.
 * Measured (docs/notes-bigmm.md, bench/pgemm_cold.c): with B streamed from memory, as a
 * batch-1 model reads its weights, kiln's GEMM prefetches the next panels into L2 spread
 * over the arithmetic and runs at 0.86-1.05 of its warm speed, oneDNN's brgemm at 0.82-0.98:
 * kiln's is 0-20% faster on BERT's, GPT-2's and ViT-B/16's products (B of 2.4-9.4 MB, M
 * 128-197; up to 512 rows measured), their FusedMatMuls in BERT-base 8-11%, and as fast or
 * faster on few rows. Where B stays in
 * L2 (ConvNeXt's pointwise layers, 0.15-0.6 MB, M 784-3136) oneDNN's is 10-20% faster, so
 * many rows go to kiln's only for a B of at least 2 MB (beyond L2). At AVX2 kiln's 6 x 16
 * tile is much faster than oneDNN's AVX2 matmul below 512 rows in the models (below), 1.47x
 * on 8 rows, and one row has its own pass (isa/pgemm.c row_pass), so AVX2 takes kiln's GEMM
 * for every product of fewer than 512 rows, oneDNN's for more. */
static bool pgemm_wins(int64_t M, size_t K, size_t N)
{
    /* Below AVX-512 every product of fewer than 512 rows (measured on a Zen 4 held to AVX2,
     * KILN_CPU_ISA=avx2): oneDNN's AVX2 matmul primitive ran BERT-base's 128 x 768 x 3072
     * product at 47 GFLOP/s (12.8 ms) in the model, kiln's 6 x 16 tile at 83 (7.3 ms); alone
     * (bench/pgemm_bench.c, B cold) oneDNN's falls to 46-72 GFLOP/s at N = 1024, 1536 and
     * 3072 for 128-197 rows, kiln's 80-100; BERT-base 363 -> 265-312 ms, ViT-B/16 521-585 ->
     * 462-516. From 512 rows oneDNN's (85-104 GFLOP/s alone, B in L2) is the faster:
     * ConvNeXt-T's stage-1 and -2 products (3136 and 784 rows) 3.0-4.8 against 3.6-6.3 ms
     * each in the model with kiln's, ResNet-50's 784-row strided downsample 2.4-2.6 against
     * 2.6-3.2 ms. (Without kiln's GEMM, at the portable level, packed_prepare falls back to
     * oneDNN's.) */
    bool avx512 = kiln_isa_active() == KILN_ISA_AVX512;
    if (M < 0 || M <= 16) return true;
    if (!avx512) return M < 512;
    /* Not on AMD's Zen 4, whose memory keeps up better with its (half as fast) arithmetic:
     * there oneDNN's primitive measured 2-5% faster on these (BERT-base's nodes 212-214
     * against 218-224 ms at one thread, ViT-B/16's 344-346 against 352-364, ResNet-50's
     * 7x7-stage products 1.03-2.08 against 1.07-2.26 ms each). AMD's Zen 5 (full 512-bit
     * units) follows the Xeons: kiln's GEMM measured faster there, engines alternated
     * (fastest runs of four): BERT-base 113-117 against 118-120 ms at one thread, 60-63
     * against 65-68 at two; ViT-B/16 173-185 against 186-190 and 100-102 against 105-107. */
    return avx512 && M <= 512 && (double)K * (double)N * sizeof(float) >= 2.0 * 1024 * 1024 &&
           !kiln_cpu_avx512_halves();
}

/* The variant to prepare: an engine file's or --tune's (p->variant), else the environment
 * variable KILN_MATMUL_PACKED (tests, A/B measurements: "onednn" is kiln before its own GEMM,
 * oneDNN's primitive where it applies and kiln_sgemm elsewhere, *only set; "pgemm" kiln's
 * GEMM wherever it applies), else pgemm_wins. */
static int packed_pick(const struct kiln_kprep *p, int64_t M, size_t K, size_t N, bool *only)
{
    *only = false;
    if (p->variant == PACKED_ONEDNN || p->variant == PACKED_PGEMM) return p->variant;
    const char *e = getenv("KILN_MATMUL_PACKED");
    if (e && !strcmp(e, "onednn")) return *only = true, PACKED_ONEDNN;
    if (e && !strcmp(e, "pgemm")) return PACKED_PGEMM;
    return pgemm_wins(M, K, N) ? PACKED_PGEMM : PACKED_ONEDNN;
}

/* Prepacks op(B) (B [K, N] at the row stride ldb, or B^T of B [N, K]) for the variant
 * packed_pick chooses, falling back to the other one where it is not there (no oneDNN, an
 * instruction set without pgemm, M unknown for oneDNN). *mm or *pg is set; both NULL when
 * neither applies. */
static kiln_status packed_prepare(struct kiln_kprep *p, int64_t M, size_t K, size_t N, const float *B,
                                  size_t ldb, bool transB, struct kiln_dnnl_mm **mm, struct kiln_pgemm **pg)
{
    *mm = NULL, *pg = NULL;
    bool only;
    int v = packed_pick(p, M, K, N, &only);
    if (v == PACKED_ONEDNN && M > 0) KILN_TRY(kiln_dnnl_mm_prepare(p, (size_t)M, K, N, B, ldb, transB, mm));
    if (!*mm && !only) KILN_TRY(kiln_pgemm_prepare(p, PGEMM_BLOB, K, N, B, ldb, transB, pg));
    if (!*mm && !*pg && M > 0 && v != PACKED_ONEDNN)
        KILN_TRY(kiln_dnnl_mm_prepare(p, (size_t)M, K, N, B, ldb, transB, mm));
    p->chosen = *pg ? PACKED_PGEMM : *mm ? PACKED_ONEDNN : PACKED_NONE;
    if (p->chosen) p->kernel = packed_name[p->chosen];
    return KILN_OK;
}

/* What MatMul's prepare makes: the product with B prepacked (oneDNN's matmul primitive,
 * dnnl_matmul.h, which needs A's rows, the product of its leading dims, known; or kiln's own
 * GEMM, pgemm.h, for any rows) when B is a float32 constant [K, N]; neither otherwise (the
 * run then calls kiln_sgemm, which packs B itself each time). */
struct matmul_state {
    struct kiln_dnnl_mm *mm;
    struct kiln_pgemm *pg;
    const void *b; /* the constant it packed: a run with another B takes the general path */
};

kiln_status kiln_cpu_matmul_prepare(struct kiln_kprep *p)
{
    struct matmul_state *st;
    KILN_TRY(kiln_kprep_alloc(p, sizeof *st, (void **)&st));
    p->state = st;
    const struct kiln_tensor *b = kiln_kprep_const(p, 1);
    const struct kiln_vtype *at = p->in[0];
    if (!b || b->dtype != KILN_DTYPE_F32 || b->rank != 2 || !b->data || !at ||
        at->type.kind != KILN_TYPE_TENSOR || at->type.elem != KILN_DTYPE_F32 || at->type.rank < 2)
        return KILN_OK;
    int64_t M = 1;
    for (int d = 0; d + 1 < at->type.rank && M > 0; d++)
        M = at->type.dims[d].value < 0 ? -1 : M * at->type.dims[d].value;
    size_t K = (size_t)b->dims[0], N = (size_t)b->dims[1];
    if (at->type.dims[at->type.rank - 1].value != b->dims[0] || M == 0) return KILN_OK;
    KILN_TRY(packed_prepare(p, M, K, N, b->data, N, false, &st->mm, &st->pg));
    if (st->mm || st->pg) st->b = b->data;
    return KILN_OK;
}

/* kiln_pgemm_run, with A first copied to scratch at a better stride where its rows alias in
 * L1 (kiln_pgemm_a_stride). */
static kiln_status pgemm_run(struct kiln_kctx *k, const struct kiln_pgemm *pg, size_t M, const float *A,
                             size_t lda, float *C, size_t ldc, bool acc, const struct kiln_pgemm_epi *epi)
{
    size_t ld = kiln_pgemm_a_stride(pg, M, lda), bytes;
    if (ld) {
        float *t;
        if (!kiln_mul_size(M, ld * sizeof(float), &bytes)) return kiln_kfail(k, KILN_E_LIMIT, "A too large");
        KILN_TRY(kiln_scratch_raw(k, bytes, (void **)&t));
        kiln_pgemm_copy_a(pg, k->pool, M, A, lda, t, ld);
        A = t, lda = ld;
    }
    kiln_pgemm_run(pg, k->pool, M, A, lda, C, ldc, acc, epi);
    return KILN_OK;
}

/* Y = A * B through the prepacked product when the run's operands are the prepared ones;
 * with kiln's GEMM also epi (NULL: none), *epi_done then set. */
static bool matmul_packed(struct kiln_kctx *k, const struct kiln_tensor *a, const struct kiln_tensor *b,
                          struct kiln_tensor *y, const struct kiln_pgemm_epi *epi, bool *epi_done, kiln_status *status)
{
    const struct matmul_state *st = k->state;
    if (!st || !st->b || b->data != st->b || a->dtype != KILN_DTYPE_F32 || a->rank < 2) return false;
    if (st->pg) {
        size_t K = st->pg->K;
        if ((size_t)a->dims[a->rank - 1] != K) return false;
        *status = pgemm_run(k, st->pg, kiln_tensor_numel(a) / K, a->data, K, y->data, st->pg->N, false, epi);
        *epi_done = epi != NULL && *status == KILN_OK;
        return true;
    }
    size_t M, K, N;
    kiln_dnnl_mm_dims(st->mm, &M, &K, &N);
    if (kiln_tensor_numel(a) != M * K || (size_t)a->dims[a->rank - 1] != K) return false;
    return kiln_dnnl_mm_run(st->mm, k->pool, a->data, y->data);
}

/* MatMul; with kiln's GEMM (the packed variant "kiln-pgemm") and epi, also epi's bias, Z
 * and activation in the product's epilogue, *epi_done then set (kiln_cpu_matmul_run_epi). */
static kiln_status matmul_run(struct kiln_kctx *k, const struct kiln_pgemm_epi *epi, bool *epi_done)
{
    const struct kiln_tensor *a, *b;
    KILN_TRY(kiln_in_req(k, 0, &a));
    KILN_TRY(kiln_in_req(k, 1, &b));
    if (a->dtype != b->dtype)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "input B is %s; expected %s like input A",
                          kiln_dtype_name(b->dtype), kiln_dtype_name(a->dtype));
    if (!supported_numeric(a->dtype))
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "input A is %s; expected a numeric type",
                          kiln_dtype_name(a->dtype));
    if (a->rank < 1 || b->rank < 1)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "inputs must have rank >= 1; got %d and %d",
                          a->rank, b->rank);

    /* Promoted views: A [.., M, K], B [.., K, N]. */
    int64_t M = a->rank == 1 ? 1 : a->dims[a->rank - 2];
    int64_t K = a->dims[a->rank - 1];
    int64_t Kb = b->rank == 1 ? b->dims[0] : b->dims[b->rank - 2];
    int64_t N = b->rank == 1 ? 1 : b->dims[b->rank - 1];
    if (K != Kb) {
        char sa[200], sb[200];
        return kiln_kfail(k, KILN_E_INVALID_ARG,
                          "A %s and B %s do not multiply: inner dims %lld vs %lld",
                          kiln_shape_str(a->rank, a->dims, sa, sizeof sa),
                          kiln_shape_str(b->rank, b->dims, sb, sizeof sb), (long long)K,
                          (long long)Kb);
    }
    int ra = a->rank > 2 ? a->rank - 2 : 0, rb = b->rank > 2 ? b->rank - 2 : 0;
    int ranks[2] = {ra, rb};
    const int64_t *bd[2] = {a->dims, b->dims};
    int br;
    int64_t bdims[KILN_MAX_RANK];
    kiln_err e;
    if (kiln_bcast_shape(2, ranks, bd, &br, bdims, &e))
        return kiln_kfail(k, KILN_E_INVALID_ARG, "batch dims: %s", e.msg);

    int64_t ydims[KILN_MAX_RANK];
    int yr = 0;
    for (int d = 0; d < br; d++) ydims[yr++] = bdims[d];
    if (a->rank > 1) ydims[yr++] = M;
    if (b->rank > 1) ydims[yr++] = N;
    if (yr > KILN_MAX_RANK)
        return kiln_kfail(k, KILN_E_LIMIT, "output rank %d exceeds %d", yr, KILN_MAX_RANK);
    struct kiln_tensor *y;
    /* The float32 path (GEMM with beta 0, or a staged copy) writes every element; the
     * float64 and integer products accumulate into a zeroed output. */
    bool f32path = a->dtype == KILN_DTYPE_F32 || is_half(a->dtype);
    if (f32path) KILN_TRY(kiln_out_tensor_raw(k, 0, a->dtype, yr, ydims, &y));
    else KILN_TRY(kiln_out_tensor(k, 0, a->dtype, yr, ydims, &y));

    size_t batch = 1;
    for (int d = 0; d < br; d++) batch *= (size_t)bdims[d];
    size_t um = (size_t)M, un = (size_t)N, uk = (size_t)K;
    if (batch == 0 || um == 0 || un == 0) return KILN_OK;
    kiln_status pst = KILN_OK;
    if (matmul_packed(k, a, b, y, epi, epi_done, &pst)) return pst;

    /* Element strides of each operand's batch dims (0 where broadcast). */
    size_t sa_[KILN_MAX_RANK] = {0}, sb_[KILN_MAX_RANK] = {0};
    size_t st = um * uk;
    for (int d = ra - 1; d >= 0; d--) {
        int od = br - ra + d;
        sa_[od] = a->dims[d] == 1 ? 0 : st;
        st *= (size_t)a->dims[d];
    }
    st = uk * un;
    for (int d = rb - 1; d >= 0; d--) {
        int od = br - rb + d;
        sb_[od] = b->dims[d] == 1 ? 0 : st;
        st *= (size_t)b->dims[d];
    }

    const float *af = NULL, *bf = NULL;
    float *yf = NULL;
    if (f32path) {
        KILN_TRY(kiln_stage_f32(k, a, &af));
        KILN_TRY(kiln_stage_f32(k, b, &bf));
        KILN_TRY(kiln_stage_out_f32(k, y, &yf));
    }

    /* B shared by the whole batch and A contiguous: one tall product. */
    bool fold = rb == 0 && f32path;
    for (int d = 0; d < br && fold; d++)
        if (sa_[d] == 0 && bdims[d] != 1) fold = false;
    if (fold) {
        kiln_sgemm_par(k->pool, false, false, batch * um, un, uk, 1.0f, af, uk, bf, un, 0.0f, yf, un);
    } else if (f32path && batch > 1 && kiln_pool_threads(k->pool) > 1 &&
               !kiln_sgemm_par_splits(k->pool, um, un, uk)) {
        struct mm_batch_job j = {af, bf, yf, um, un, uk, br, bdims, sa_, sb_};
        /* About 64k multiply-adds per chunk at least. */
        size_t work = um * un * uk;
        kiln_pool_for(k->pool, batch, work >= 65536 ? 1 : 65536 / (work ? work : 1),
                      mm_batch_chunk, &j);
    } else {
        int64_t idx[KILN_MAX_RANK] = {0};
        size_t oa = 0, ob = 0;
        for (size_t t = 0; t < batch; t++) {
            size_t oy = t * um * un;
            if (f32path)
                kiln_sgemm_par(k->pool, false, false, um, un, uk, 1.0f, af + oa, uk, bf + ob, un, 0.0f,
                               yf + oy, un);
            else if (a->dtype == KILN_DTYPE_F64)
                gemm_f64(false, false, um, un, uk, 1.0, (const double *)a->data + oa, uk,
                         (const double *)b->data + ob, un, (double *)y->data + oy);
            else
                gemm_int(false, false, um, un, uk, 1, a, oa, uk, b, ob, un, y, oy, false);
            for (int d = br - 1; d >= 0; d--) {
                oa += sa_[d];
                ob += sb_[d];
                if (++idx[d] < bdims[d]) break;
                oa -= sa_[d] * (size_t)bdims[d];
                ob -= sb_[d] * (size_t)bdims[d];
                idx[d] = 0;
            }
        }
    }
    if (f32path) kiln_unstage_f32(y, yf);
    return KILN_OK;
}

kiln_status kiln_cpu_matmul_run(struct kiln_kctx *k)
{
    bool done = false;
    return matmul_run(k, NULL, &done);
}

/* kiln.FusedMatMul's product (fused.c): MatMul, and when it runs on kiln's GEMM the epilogue
 * epi (bias [N], Z at Y's shape with the stride N, activation; float32, checked by the
 * caller) inside it, while each tile of Y is still in L1; *epi_done says whether it did
 * (else the caller applies them after). The same floats either way (pgemm_isa.h). */
kiln_status kiln_cpu_matmul_run_epi(struct kiln_kctx *k, const struct kiln_pgemm_epi *epi, bool *epi_done)
{
    *epi_done = false;
    return matmul_run(k, epi, epi_done);
}

/* ------------------------------------------------------------------ Gemm */

/* What Gemm's prepare makes (k->state of kiln_cpu_gemm_run). */
struct gemm_state {
    bool tA, tB;
    float alpha, beta;
    /* B^T as float32 [K, N] row-major (blob 0) when B is a float32 constant and transB is 1;
     * NULL otherwise. bdims: the constant's dims, which the run's B must have to use it. */
    const float *bt;
    int64_t bdims[2];
    /* op(B) prepacked by oneDNN (dnnl_matmul.h) when also transA is 0, alpha is 1 and A's
     * shape is known; b is the constant it packed. */
    struct kiln_dnnl_mm *mm;
    /* or by kiln's GEMM (pgemm.h), for any rows */
    struct kiln_pgemm *pg;
    const void *b;
};

static void gemm_decode(struct kiln_kctx *k, struct gemm_state *st)
{
    memset(st, 0, sizeof *st);
    st->tA = kiln_attr_i(k, "transA", 0) != 0;
    st->tB = kiln_attr_i(k, "transB", 0) != 0;
    st->alpha = kiln_attr_f(k, "alpha", 1.0f);
    st->beta = kiln_attr_f(k, "beta", 1.0f);
}

/* dst [K, N] = src^T for src [N, K], in tiles that keep both sides in cache. */
static void transpose_f32(const float *src, size_t N, size_t K, float *dst)
{
    enum { T = 32 };
    for (size_t n0 = 0; n0 < N; n0 += T)
        for (size_t k0 = 0; k0 < K; k0 += T) {
            size_t n1 = n0 + T < N ? n0 + T : N, k1 = k0 + T < K ? k0 + T : K;
            for (size_t n = n0; n < n1; n++)
                for (size_t kk = k0; kk < k1; kk++) dst[kk * N + n] = src[n * K + kk];
        }
}

/* The prepacked op(B) of a Gemm with a float32 constant B (any transB), transA 0 and alpha
 * 1 (packed_prepare: oneDNN's when A's rows are known, or kiln's GEMM). */
/* Whether a prepacked variant applies to the Gemm (float32 A with K columns, transA 0,
 * alpha 1): *M its rows (-1: unknown), *K, *N op(B)'s dims. */
static bool gemm_packed_dims(const struct kiln_kprep *p, const struct gemm_state *st, const struct kiln_tensor *b,
                             int64_t *M, size_t *K, size_t *N)
{
    const struct kiln_vtype *at = p->in[0];
    if (st->tA || st->alpha != 1.0f || !at || at->type.kind != KILN_TYPE_TENSOR ||
        at->type.elem != KILN_DTYPE_F32 || at->type.rank != 2 || at->type.dims[0].value == 0)
        return false;
    *M = at->type.dims[0].value < 0 ? -1 : at->type.dims[0].value;
    *K = (size_t)(st->tB ? b->dims[1] : b->dims[0]), *N = (size_t)(st->tB ? b->dims[0] : b->dims[1]);
    return at->type.dims[1].value == (int64_t)*K;
}

static kiln_status gemm_prepare_packed(struct kiln_kprep *p, struct gemm_state *st,
                                       const struct kiln_tensor *b)
{
    int64_t M;
    size_t K, N;
    if (!gemm_packed_dims(p, st, b, &M, &K, &N)) return KILN_OK;
    KILN_TRY(packed_prepare(p, M, K, N, b->data, (size_t)b->dims[1], st->tB, &st->mm, &st->pg));
    if (st->mm || st->pg) st->b = b->data;
    return KILN_OK;
}

/* Gemm's prepare (FusedGemm's too): the attributes, and B^T when B is a float32 constant
 * with transB. */
kiln_status kiln_cpu_gemm_prepare(struct kiln_kprep *p)
{
    struct gemm_state *st;
    KILN_TRY(kiln_kprep_alloc(p, sizeof *st, (void **)&st));
    gemm_decode(&p->kc, st);
    p->state = st;
    const struct kiln_tensor *b = kiln_kprep_const(p, 1);
    if (!b || b->dtype != KILN_DTYPE_F32 || b->rank != 2 || !b->data) return KILN_OK;
    /* B^T for kiln_sgemm (blob 0, made before oneDNN's blobs), unless kiln's GEMM, which takes
     * any A's rows, will pack op(B) */
    int64_t pm;
    size_t pk, pn;
    bool only;
    if (!st->tB || (gemm_packed_dims(p, st, b, &pm, &pk, &pn) && kiln_pgemm_available() &&
                    packed_pick(p, pm, pk, pn, &only) == PACKED_PGEMM))
        return gemm_prepare_packed(p, st, b);
    size_t N = (size_t)b->dims[0], K = (size_t)b->dims[1], bytes, have;
    if (N == 0 || K == 0 || !kiln_mul_size(N, K, &bytes) ||
        !kiln_mul_size(bytes, sizeof(float), &bytes))
        return KILN_OK;
    void *data;
    bool fill = true;
    if (!kiln_kprep_loading(p) || (kiln_kprep_blob_peek(p, 0, &have) && have == bytes))
        KILN_TRY(kiln_kprep_blob(p, 0, bytes, &data, &fill));
    else /* an engine file whose variant needed no B^T: make it in prepare's memory */
        KILN_TRY(kiln_kprep_alloc(p, bytes, &data));
    if (fill) transpose_f32(b->data, N, K, data);
    st->bt = data;
    st->bdims[0] = b->dims[0];
    st->bdims[1] = b->dims[1];
    return gemm_prepare_packed(p, st, b);
}

kiln_status kiln_cpu_gemm_run(struct kiln_kctx *k)
{
    struct gemm_state own;
    const struct gemm_state *st = k->state;
    if (!st) { /* called without prepare (kernel tests): decode the attributes now */
        gemm_decode(k, &own);
        st = &own;
    }
    const struct kiln_tensor *a, *b, *c = kiln_in(k, 2);
    KILN_TRY(kiln_in_req(k, 0, &a));
    KILN_TRY(kiln_in_req(k, 1, &b));
    bool tA = st->tA, tB = st->tB;
    float alpha = st->alpha, beta = st->beta;
    if (a->rank != 2 || b->rank != 2)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "A and B must be 2-D; got ranks %d and %d",
                          a->rank, b->rank);
    if (a->dtype != b->dtype || (c && c->dtype != a->dtype))
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "inputs have mixed dtypes (%s, %s%s%s)",
                          kiln_dtype_name(a->dtype), kiln_dtype_name(b->dtype), c ? ", " : "",
                          c ? kiln_dtype_name(c->dtype) : "");
    if (!supported_numeric(a->dtype))
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "input A is %s; expected a numeric type",
                          kiln_dtype_name(a->dtype));
    int64_t M = tA ? a->dims[1] : a->dims[0], K = tA ? a->dims[0] : a->dims[1];
    int64_t Kb = tB ? b->dims[1] : b->dims[0], N = tB ? b->dims[0] : b->dims[1];
    if (K != Kb)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "op(A) is [%lld,%lld] but op(B) is [%lld,%lld]",
                          (long long)M, (long long)K, (long long)Kb, (long long)N);
    int64_t ydims[2] = {M, N};
    if (c) {
        int64_t cdims[2] = {1, 1};
        if (c->rank > 2)
            return kiln_kfail(k, KILN_E_INVALID_ARG, "C has rank %d; expected <= 2", c->rank);
        for (int d = 0; d < c->rank; d++) cdims[2 - c->rank + d] = c->dims[d];
        if ((cdims[0] != 1 && cdims[0] != M) || (cdims[1] != 1 && cdims[1] != N))
            return kiln_kfail(k, KILN_E_INVALID_ARG,
                              "C [%lld,%lld] does not broadcast to [%lld,%lld]",
                              (long long)cdims[0], (long long)cdims[1], (long long)M, (long long)N);
    }
    struct kiln_tensor *y;
    KILN_TRY(kiln_out_tensor(k, 0, a->dtype, 2, ydims, &y));
    size_t um = (size_t)M, un = (size_t)N, uk = (size_t)K;
    if (um == 0 || un == 0) return KILN_OK;
    size_t lda = (size_t)a->dims[1], ldb = (size_t)b->dims[1];
    bool f32path = a->dtype == KILN_DTYPE_F32 || is_half(a->dtype);

    /* C row stride / col stride in elements (0 where broadcast). */
    size_t cs_r = 0, cs_c = 0;
    if (c) {
        int64_t cr = c->rank == 2 ? c->dims[0] : 1, cc = c->rank >= 1 ? c->dims[c->rank - 1] : 1;
        cs_c = cc == 1 ? 0 : 1;
        cs_r = cr == 1 ? 0 : (size_t)cc;
    }

    if (st->pg && a->dtype == KILN_DTYPE_F32 && b->data == st->b && !tA && alpha == 1.0f && uk == st->pg->K &&
        un == st->pg->N) {
        float *yf = y->data;
        const float *cf = c ? c->data : NULL;
        /* C a row of N with beta 1 (a Linear layer's bias): the bias epilogue; any other C:
         * Y = beta * C first, then the product added, as the kiln_sgemm path computes it */
        struct kiln_pgemm_epi epi = {cs_r == 0 && cs_c == 1 && beta == 1.0f ? cf : NULL, NULL, 0, NULL};
        bool acc = c && !epi.bias;
        for (size_t i = 0; i < um && acc; i++)
            for (size_t j = 0; j < un; j++) yf[i * un + j] = beta * cf[i * cs_r + j * cs_c];
        return pgemm_run(k, st->pg, um, a->data, lda, yf, un, acc, &epi);
    }
    if (st->mm && a->dtype == KILN_DTYPE_F32 && b->data == st->b && !tA && alpha == 1.0f) {
        size_t pm, pk, pn;
        kiln_dnnl_mm_dims(st->mm, &pm, &pk, &pn);
        float *yf = y->data;
        const float *cf = c ? c->data : NULL;
        if (pm == um && pk == uk && pn == un && kiln_dnnl_mm_run(st->mm, k->pool, a->data, yf)) {
            for (size_t i = 0; i < um && c; i++) /* + beta * C, as sgemm's beta 1 adds it */
                for (size_t j = 0; j < un; j++) yf[i * un + j] += beta * cf[i * cs_r + j * cs_c];
            return KILN_OK;
        }
    }
    if (f32path || a->dtype == KILN_DTYPE_F64) {
        const float *af = NULL, *bf = NULL, *cf = NULL;
        float *yf = NULL;
        if (f32path) {
            KILN_TRY(kiln_stage_f32(k, a, &af));
            if (st->bt && b->dtype == KILN_DTYPE_F32 && b->dims[0] == st->bdims[0] &&
                b->dims[1] == st->bdims[1]) {
                bf = st->bt; /* op(B), prepacked: [K, N] */
                tB = false;
                ldb = un;
            } else {
                KILN_TRY(kiln_stage_f32(k, b, &bf));
            }
            if (c) KILN_TRY(kiln_stage_f32(k, c, &cf));
            KILN_TRY(kiln_stage_out_f32(k, y, &yf));
        }
        double *yd = y->data;
        for (size_t i = 0; i < um && c; i++)
            for (size_t j = 0; j < un; j++) {
                size_t ci = i * cs_r + j * cs_c;
                if (f32path)
                    yf[i * un + j] = beta * cf[ci];
                else
                    yd[i * un + j] = (double)beta * ((const double *)c->data)[ci];
            }
        if (f32path) {
            kiln_sgemm_par(k->pool, tA, tB, um, un, uk, alpha, af, lda, bf, ldb, c ? 1.0f : 0.0f, yf, un);
            kiln_unstage_f32(y, yf);
        } else {
            gemm_f64(tA, tB, um, un, uk, alpha, a->data, lda, b->data, ldb, yd);
        }
        return KILN_OK;
    }
    /* Integers: alpha and beta are float attributes; integral values are what make sense. */
    for (size_t i = 0; i < um && c; i++)
        for (size_t j = 0; j < un; j++)
            kiln_tensor_set_f64(y, i * un + j,
                                (double)beta * (double)kiln_tensor_get_i64(c, i * cs_r + j * cs_c));
    gemm_int(tA, tB, um, un, uk, (int64_t)alpha, a, 0, lda, b, 0, ldb, y, 0, c != NULL);
    return KILN_OK;
}

const struct kiln_cpu_op kiln_cpu_ops_gemm[] = {
    {"MatMul", "", 1, 0, kiln_cpu_matmul_run, kiln_cpu_matmul_prepare, 0},
    {"Gemm", "", 1, 0, kiln_cpu_gemm_run, kiln_cpu_gemm_prepare, 0},
    {0},
};
