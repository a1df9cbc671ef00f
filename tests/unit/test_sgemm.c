/* test_sgemm.c: kiln_sgemm against a naive double-precision reference.
 *
 * Every (M, N, K) in {1, 2, 7, 17, 64, 100}^3, all four transpose combinations, several
 * alpha/beta pairs, and leading dimensions larger than the logical width (to catch code
 * that assumes packed rows). beta == 0 must ignore NaN already in C. Also covers the
 * blocking edges (K > KC, N > NC) with one large case. Runs every case on kiln_sgemm (oneDNN
 * when built with it) and on kiln_sgemm_portable. Speed is measured by benchmarks, not here. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "cpu/sgemm.h"
#include "test_support.h"

typedef void gemm_fn(bool, bool, size_t, size_t, size_t, float, const float *, size_t,
                     const float *, size_t, float, float *, size_t);
static gemm_fn *g_gemm = kiln_sgemm;
static const char *g_name = "kiln_sgemm";

/* Runs one case: C must match the reference within the tolerance, and the padding columns of
 * C must stay untouched. */
static void check(bool tA, bool tB, size_t M, size_t N, size_t K, float alpha, float beta,
                 size_t pad)
{
    size_t lda = (tA ? M : K) + pad, ldb = (tB ? K : N) + pad, ldc = N + pad;
    size_t arows = tA ? K : M, brows = tB ? N : K;
    float *A = malloc(arows * lda * sizeof *A + 1), *B = malloc(brows * ldb * sizeof *B + 1);
    float *C = malloc(M * ldc * sizeof *C + 1);
    double *R = malloc(M * N * sizeof *R + 1);
    for (size_t i = 0; i < arows * lda; i++) A[i] = rng_f32();
    for (size_t i = 0; i < brows * ldb; i++) B[i] = rng_f32();
    for (size_t i = 0; i < M * ldc; i++) C[i] = beta == 0.0f ? NAN : rng_f32();
    for (size_t i = 0; i < M; i++)
        for (size_t j = 0; j < N; j++) {
            double s = 0, mag = 0;
            for (size_t p = 0; p < K; p++) {
                double a = tA ? A[p * lda + i] : A[i * lda + p];
                double b = tB ? B[j * ldb + p] : B[p * ldb + j];
                s += a * b;
                mag += fabs(a * b);
            }
            (void)mag;
            R[i * N + j] = alpha * s + (beta == 0.0f ? 0.0 : beta * (double)C[i * ldc + j]);
        }
    /* Padding columns of C must not be touched. */
    float sentinel = 12345.0f;
    for (size_t i = 0; i < M; i++)
        for (size_t j = N; j < ldc; j++) C[i * ldc + j] = sentinel;
    g_gemm(tA, tB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    size_t bad = M * N; /* the first element off by more than the tolerance */
    for (size_t e = 0; e < M * N && bad == M * N; e++) {
        double got = C[(e / N) * ldc + e % N], want = R[e];
        double tol = 1e-4 * (fabs(want) + sqrt((double)K + 1));
        if (!(fabs(got - want) <= tol)) bad = e;
    }
    CHECK(bad == M * N,
          "%s tA=%d tB=%d M=%zu N=%zu K=%zu alpha=%g beta=%g pad=%zu: C[%zu,%zu] = %.7g, want %.7g",
          g_name, tA, tB, M, N, K, alpha, beta, pad, bad / N, bad % N,
          C[(bad / N) * ldc + bad % N], R[bad]);
    size_t wrote = M; /* the first row whose padding was written */
    for (size_t i = 0; i < M && wrote == M; i++)
        for (size_t j = N; j < ldc; j++)
            if (C[i * ldc + j] != sentinel) {
                wrote = i;
                break;
            }
    CHECK(wrote == M, "%s M=%zu N=%zu K=%zu: wrote past N in row %zu", g_name, M, N, K, wrote);
    free(A), free(B), free(C), free(R);
}

static size_t run_all(void)
{
    static const size_t sizes[] = {1, 2, 7, 17, 64, 100};
    static const float ab[][2] = {{1, 0}, {1, 1}, {0.5f, -2}, {-1.5f, 0}, {0, 0.25f}};
    size_t ns = sizeof sizes / sizeof *sizes, n_cases = 0;
    for (size_t mi = 0; mi < ns; mi++)
        for (size_t ni = 0; ni < ns; ni++)
            for (size_t ki = 0; ki < ns; ki++)
                for (int t = 0; t < 4; t++) {
                    size_t abi = (mi + ni + ki + (size_t)t) % 5;
                    size_t pad = (mi + ki) % 3;
                    check(t & 1, t >> 1, sizes[mi], sizes[ni], sizes[ki], ab[abi][0], ab[abi][1],
                          pad);
                    n_cases++;
                }
    /* All alpha/beta pairs on one odd shape, and degenerate dims. */
    for (int a = 0; a < 5; a++)
        for (int t = 0; t < 4; t++) check(t & 1, t >> 1, 13, 29, 31, ab[a][0], ab[a][1], 1);
    check(false, false, 5, 7, 0, 1.0f, 0.5f, 0); /* K == 0: C = beta*C */
    check(false, false, 0, 7, 3, 1.0f, 0.5f, 0);
    check(true, false, 3, 0, 3, 1.0f, 0.5f, 0);
    /* Crosses the KC and NC block edges. */
    check(false, false, 37, 1100, 300, 1.0f, 0.0f, 0);
    check(true, true, 101, 1030, 513, 0.75f, 1.0f, 2);

    return n_cases;
}

int main(void)
{
    rng_seed(0x9E3779B97F4A7C15ull);
    size_t n_cases = run_all();
    g_gemm = kiln_sgemm_portable;
    g_name = "kiln_sgemm_portable";
    n_cases += run_all();
    printf("test_sgemm: %zu shape cases\n", n_cases);
    return test_summary("test_sgemm");
}
