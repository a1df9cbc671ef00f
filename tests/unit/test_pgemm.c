/* test_pgemm.c: kiln's own float32 GEMM with a prepacked B (cpu/pgemm.h, cpu/pgemm_isa.h),
 * every compiled level up to the CPU's best (portable, avx2, avx512; the test also runs under
 * KILN_CPU_ISA, which only changes what kiln_pgemm_available says), against float64.
 *
 * C[M, N] = A[M, K] * op(B) (+ C with acc) + bias + Z, A at a row stride lda > K (the floats
 * past K are NaN: reading them would show), C at a row stride ldc > N (the floats past N must
 * stay untouched), op(B) = B [K, N] or B^T. Shapes: every M 1..16 with N in 1..70 and K odd
 * in 1..300; random M 1..40; M 128 and 197 (ViT's tokens) with N not a multiple of 16 or 32;
 * K = 1; K over one block of 768 (1601, 3072, 769: the next group's prefetch crosses into
 * the next K block); threads 1, 2, 3 (kiln_pgemm_run over a pool, whose slices are columns or rows).
 *
 * Tolerance: |C - ref| <= 1e-6 * (K + 1) * sum_k |a||b| + 1e-6 (|bias| + |z| + |C0|) per
 * element, ref the float64 sum: float32 accumulation in any order errs by at most about
 * K * 2^-24 of sum |a||b|. The activation epilogue is checked bit for bit: the product with
 * the same bias and Z and no activation, then kiln_act_apply_f32 of that level on it (the
 * unfused ops' floats), must equal the fused result. Results must also be the same bits at
 * every thread count (each element is computed by one thread in one order).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/pool.h"
#include "cpu/act.h"
#include "cpu/isa.h"
#include "cpu/pgemm.h"
#include "test_support.h"

static struct kiln_pool *pools[4];

enum { E_BIAS = 1, E_Z = 2, E_ACC = 4 };

/* A row's result does not depend on the rows around it: each row of want (the M-row product
 * of A, C0 and epi) equals, bit for bit, the product of that row alone (AVX-512 and AVX2 run a
 * lone row on its own pass: tiles in the same order, other registers), at 1 and 3 threads.
 * C1 is scratch of want's size. */
static void rows_alone(const struct kiln_pgemm *g, int isa, size_t M, const float *A, size_t lda, const float *C0,
                       const float *want, float *C1, size_t ldc, bool acc, const struct kiln_pgemm_epi *epi)
{
    for (int t = 1; t <= 3; t += 2)
        for (size_t m = 0; m < M; m++) {
            struct kiln_pgemm_epi e1 = *epi;
            if (e1.z) e1.z += m * epi->ldz;
            memcpy(C1, C0 + m * ldc, ldc * sizeof(float));
            kiln_pgemm_run(g, t > 1 ? pools[t] : NULL, 1, A + m * lda, lda, C1, ldc, acc, &e1);
            CHECK(memcmp(C1, want + m * ldc, ldc * sizeof(float)) == 0,
                  "%s M %zu K %zu N %zu, %d threads: row %zu alone differs from the row in the product",
                  kiln_isa_name((enum kiln_isa)isa), M, g->K, g->N, t, m);
        }
}

/* One case at level isa: flags E_*, act (NULL: none). */
static void one_case(int isa, size_t M, size_t K, size_t N, bool transB, int flags, const struct kiln_act *act)
{
    size_t lda = K + 1 + (size_t)rng_int(3), ldc = N + 1 + (size_t)rng_int(3), ldz = N + (size_t)rng_int(2);
    size_t ldb = (transB ? K : N) + (size_t)rng_int(2), brows = transB ? N : K;
    float *A = malloc(M * lda * sizeof(float)), *B = malloc(brows * ldb * sizeof(float));
    float *C0 = malloc(M * ldc * sizeof(float)), *C = malloc(M * ldc * sizeof(float));
    float *C1 = malloc(M * ldc * sizeof(float)), *bias = malloc(N * sizeof(float));
    float *Z = malloc(M * ldz * sizeof(float));
    size_t plen = kiln_pgemm_packed_len(K, N);
    float *bp = malloc((plen + 1) * sizeof(float));
    if (!A || !B || !C0 || !C || !C1 || !bias || !Z || !bp) {
        test_fail(__FILE__, __LINE__, NULL, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < M * lda; i++) A[i] = i % lda < K ? rng_f32() : NAN;
    for (size_t i = 0; i < brows * ldb; i++) B[i] = rng_f32();
    for (size_t i = 0; i < M * ldc; i++) C0[i] = i % ldc < N ? rng_f32() : 1234.5f;
    for (size_t i = 0; i < N; i++) bias[i] = rng_f32();
    for (size_t i = 0; i < M * ldz; i++) Z[i] = rng_f32();
    kiln_pgemm_pack(B, ldb, transB, K, N, bp);
    struct kiln_pgemm g;
    kiln_pgemm_init(&g, K, N, bp, (enum kiln_isa)isa);
    struct kiln_pgemm_epi epi = {flags & E_BIAS ? bias : NULL, flags & E_Z ? Z : NULL, ldz, NULL};
    bool acc = flags & E_ACC;

    /* Without the activation, against float64, at 1 thread; then the same bits at 2 and 3. */
    memcpy(C, C0, M * ldc * sizeof(float));
    kiln_pgemm_run(&g, NULL, M, A, lda, C, ldc, acc, &epi);
    size_t bad = 0, bi = 0;
    double worst = 0;
    for (size_t m = 0; m < M; m++)
        for (size_t n = 0; n < ldc; n++) {
            float got = C[m * ldc + n];
            if (n >= N) {
                if (got != 1234.5f && !bad++) bi = m * ldc + n;
                continue;
            }
            double s = 0, mag = 0;
            for (size_t k = 0; k < K; k++) {
                double a = A[m * lda + k], b = transB ? B[n * ldb + k] : B[k * ldb + n];
                s += a * b, mag += fabs(a * b);
            }
            double extra = 0;
            if (acc) s += C0[m * ldc + n], extra += fabs(C0[m * ldc + n]);
            if (epi.bias) s += bias[n], extra += fabs(bias[n]);
            if (epi.z) s += Z[m * ldz + n], extra += fabs(Z[m * ldz + n]);
            double err = fabs(got - s), tol = 1e-6 * (double)(K + 1) * mag + 1e-6 * extra + 1e-30;
            if (!(err <= tol) && !bad++) bi = m * ldc + n;
            if (err / tol > worst) worst = err / tol;
        }
    CHECK(bad == 0, "%s M %zu K %zu N %zu transB %d flags %d: %zu wrong, first [%zu, %zu] = %g (worst %.2f of tol)",
          kiln_isa_name((enum kiln_isa)isa), M, K, N, transB, flags, bad, bi / ldc, bi % ldc, C[bi], worst);
    for (int t = 2; t <= 3; t++) {
        memcpy(C1, C0, M * ldc * sizeof(float));
        kiln_pgemm_run(&g, pools[t], M, A, lda, C1, ldc, acc, &epi);
        CHECK(memcmp(C, C1, M * ldc * sizeof(float)) == 0, "%s M %zu K %zu N %zu flags %d: %d threads differ",
              kiln_isa_name((enum kiln_isa)isa), M, K, N, flags, t);
    }
    rows_alone(&g, isa, M, A, lda, C0, C, C1, ldc, acc, &epi);
    if (act) {
        /* The activation fused: bit for bit the unfused activation of the result above. */
        for (size_t m = 0; m < M; m++)
            KILN_ISA_VARIANT(kiln_act_apply_f32_isa, isa)(act, C + m * ldc, NULL, C + m * ldc, N);
        epi.act = act;
        for (int t = 1; t <= 3; t++) {
            memcpy(C1, C0, M * ldc * sizeof(float));
            kiln_pgemm_run(&g, t > 1 ? pools[t] : NULL, M, A, lda, C1, ldc, acc, &epi);
            size_t nb = 0;
            for (size_t i = 0; i < M * ldc; i++) nb += memcmp(&C[i], &C1[i], sizeof(float)) != 0;
            CHECK(nb == 0, "%s M %zu K %zu N %zu flags %d act %d, %d threads: %zu differ from the unfused floats",
                  kiln_isa_name((enum kiln_isa)isa), M, K, N, flags, (int)act->kind, t, nb);
        }
        rows_alone(&g, isa, M, A, lda, C0, C, C1, ldc, acc, &epi);
    }
done:
    free(A), free(B), free(C0), free(C), free(C1), free(bias), free(Z), free(bp);
}

/* A at a row stride of 1024 floats (rows that alias in L1): kiln_pgemm_a_stride asks for a
 * copy at AVX-512 only, at a stride of an odd number of lines >= K; the copy's product is
 * the same bits as the product read in place, at 1 and 2 threads. */
static void copy_case(int isa, size_t M, size_t K, size_t N)
{
    size_t lda = 1024, plen = kiln_pgemm_packed_len(K, N);
    float *A = malloc(M * lda * sizeof(float)), *B = malloc(K * N * sizeof(float)), *bp = malloc(plen * sizeof(float));
    float *C = malloc(M * N * sizeof(float)), *C1 = malloc(M * N * sizeof(float)), *T = NULL;
    if (!A || !B || !bp || !C || !C1) {
        test_fail(__FILE__, __LINE__, NULL, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < M * lda; i++) A[i] = i % lda < K ? rng_f32() : NAN;
    for (size_t i = 0; i < K * N; i++) B[i] = rng_f32();
    kiln_pgemm_pack(B, N, false, K, N, bp);
    struct kiln_pgemm g;
    kiln_pgemm_init(&g, K, N, bp, (enum kiln_isa)isa);
    size_t ld = kiln_pgemm_a_stride(&g, M, lda);
    CHECK(kiln_pgemm_a_stride(&g, M, lda + 16) == 0, "%s: a copy asked for at the stride %zu",
          kiln_isa_name((enum kiln_isa)isa), lda + 16);
    if (isa < KILN_ISA_AVX512 || M < 2) {
        CHECK(ld == 0, "%s M %zu: a copy asked for", kiln_isa_name((enum kiln_isa)isa), M);
        goto done;
    }
    CHECK(ld >= K && ld % 16 == 0 && (ld / 16) % 2 == 1, "K %zu: stride %zu is not an odd number of lines >= K", K, ld);
    T = malloc(M * ld * sizeof(float));
    if (!T) goto done;
    kiln_pgemm_run(&g, NULL, M, A, lda, C, N, false, NULL);
    for (int t = 1; t <= 2; t++) {
        memset(T, 0xff, M * ld * sizeof(float));
        kiln_pgemm_copy_a(&g, t > 1 ? pools[t] : NULL, M, A, lda, T, ld);
        kiln_pgemm_run(&g, t > 1 ? pools[t] : NULL, M, T, ld, C1, N, false, NULL);
        CHECK(memcmp(C, C1, M * N * sizeof(float)) == 0, "M %zu K %zu N %zu, %d threads: the copied A's product differs",
              M, K, N, t);
    }
done:
    free(A), free(B), free(bp), free(C), free(C1), free(T);
}

static size_t odd_k(void)
{
    return 1 + 2 * (size_t)rng_int(150);
}

int main(void)
{
    rng_seed(0x9e33);
    kiln_err e;
    for (int t = 2; t <= 3; t++)
        if (kiln_pool_create(t, &pools[t], &e)) {
            test_fail(__FILE__, __LINE__, NULL, "pool of %d: %s", t, e.msg);
            return test_summary("test_pgemm");
        }
    kiln_pgemm_set_min_work(0, 0); /* split even the smallest products over the threads */
    struct kiln_act acts[3];
    kiln_act_parse("Gelu", NULL, 0, "none", &acts[0]);
    kiln_act_parse("Relu", NULL, 0, NULL, &acts[1]);
    kiln_act_parse("Sigmoid", NULL, 0, NULL, &acts[2]);
    for (int isa = 0; isa <= (int)kiln_isa_best(); isa++) {
        for (size_t M = 1; M <= 16; M++) {
            size_t N = 1 + (size_t)rng_int(70), K = odd_k();
            one_case(isa, M, K, N, M & 1, (int)(M % 8), M % 3 ? NULL : &acts[M % 9 / 3]);
        }
        for (int i = 0; i < 40; i++) {
            size_t M = 1 + (size_t)rng_int(40), N = 1 + (size_t)rng_int(70), K = odd_k();
            one_case(isa, M, K, N, i & 1, i % 8, i % 4 ? &acts[i % 3] : NULL);
        }
        for (size_t N = 1; N <= 70; N += 3) one_case(isa, 1 + N % 15, 1 + N % 7, N, N & 1, (int)(N % 4), NULL);
        one_case(isa, 128, 97, 67, false, E_BIAS, &acts[0]);
        one_case(isa, 197, 64, 100, true, E_BIAS | E_Z, NULL);
        one_case(isa, 197, 33, 40, false, E_Z, &acts[1]);
        one_case(isa, 128, 300, 33, false, 0, NULL);
        one_case(isa, 40, 1, 31, false, E_BIAS | E_ACC, NULL);
        one_case(isa, 3, 5, 600, true, E_BIAS | E_Z, &acts[0]); /* several panel groups */
        /* several K blocks (each group prefetches the next group's or the next K block's B):
         * a short last group (3 panels: groups of 2 and 1) followed by a full one */
        one_case(isa, 30, 1601, 70, false, E_BIAS | E_Z, &acts[0]);
        one_case(isa, 197, 3072, 40, true, E_BIAS, NULL);
        one_case(isa, 14, 769, 161, false, E_ACC, &acts[1]);
        one_case(isa, 5, 784, 512, false, E_BIAS, &acts[1]); /* rows alone: several panel pairs */
        one_case(isa, 3, 1601, 161, true, E_BIAS | E_Z | E_ACC, &acts[0]); /* three K blocks, a tail */
        copy_case(isa, 1, 1024, 40);
        copy_case(isa, 37, 1024, 70);
        copy_case(isa, 300, 1000, 33); /* large enough for the copy to split over threads */
    }
    for (int t = 2; t <= 3; t++) kiln_pool_free(pools[t]);
    return test_summary("test_pgemm");
}
