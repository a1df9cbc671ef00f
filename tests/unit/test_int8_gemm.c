/* test_int8_gemm.c: kiln's own exact int8 product (cpu/int8_gemm_isa.h), every compiled
 * variant up to the CPU's best, against a plain int32 loop written here, bit for bit.
 *
 * C = A * B' with A uint8 or int8 (row stride lda >= K, the bytes past K garbage that must
 * not be read into the sum), B' int8 or uint8 less 128 (as dnnl_int8.c shifts it), packed
 * by kiln_i8gemm_pack. Shapes: every M, N in 1..9 and K in 1..9 (tiny, odd K), random M, N,
 * K in 1..70, and a few larger ones past the K chunk (K > 256), the column chunk (N > 512)
 * and the 6-row panels; values
 * drawn mostly from the extremes (255, 0, 127, -128: where vpmaddubsw's 16-bit pair sums
 * would saturate); a column-block range [nb0, nb1) inside N (the threads' column slices)
 * leaves C outside it untouched. kiln.QConv's requantization row (kiln_i8_requant_row_isa)
 * likewise against qconv.c's formula written out here. Every comparison is exact.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/int8_gemm_isa.h"
#include "cpu/isa.h"
#include "test_support.h"

/* Mostly extremes: 0/255 for uint8, -128/127 for int8, else random. */
static int draw(bool sgn)
{
    int r = rng_int(4);
    if (r == 0) return sgn ? -128 : 0;
    if (r == 1) return sgn ? 127 : 255;
    return sgn ? rng_int(256) - 128 : rng_int(256);
}

static void one_case(int isa, size_t M, size_t K, size_t N, bool a_signed, bool b_signed, size_t nb0,
                     size_t nb1)
{
    size_t lda = K + (size_t)rng_int(5), ldc = N + (size_t)rng_int(3);
    uint8_t *A = malloc(M * lda + 1), *B = malloc(K * N + 1);
    int32_t *C = malloc((M * ldc + 1) * sizeof *C), *R = malloc((M * N + 1) * sizeof *R);
    int16_t *bp = malloc(kiln_i8gemm_packed_len(K, N) * sizeof *bp + 2);
    if (!A || !B || !C || !R || !bp) {
        test_fail(__FILE__, __LINE__, NULL, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < M * lda; i++) A[i] = (uint8_t)draw(a_signed);
    for (size_t i = 0; i < K * N; i++) B[i] = (uint8_t)draw(b_signed);
    for (size_t m = 0; m < M; m++)
        for (size_t n = 0; n < N; n++) {
            uint32_t s = 0;
            for (size_t k = 0; k < K; k++) {
                int32_t a = a_signed ? (int8_t)A[m * lda + k] : A[m * lda + k];
                int32_t b = b_signed ? (int8_t)B[k * N + n] : (int32_t)B[k * N + n] - 128;
                s += (uint32_t)(a * b);
            }
            R[m * N + n] = (int32_t)s;
        }
    kiln_i8gemm_pack(B, b_signed, 128, K, N, bp);
    for (size_t i = 0; i < M * ldc; i++) C[i] = 0x5a5a5a5a;
    KILN_ISA_VARIANT(kiln_i8gemm_isa, isa)(A, lda, a_signed, M, K, bp, N, nb0, nb1, C, ldc);
    size_t bad = 0, first = 0;
    for (size_t m = 0; m < M; m++)
        for (size_t n = 0; n < ldc; n++) {
            bool in = n >= nb0 * KILN_I8GEMM_NB && n < nb1 * KILN_I8GEMM_NB && n < N;
            int32_t want = in ? R[m * N + n] : 0x5a5a5a5a;
            if (C[m * ldc + n] != want && !bad++) first = m * ldc + n;
        }
    CHECK(bad == 0, "%s M %zu K %zu N %zu A %s B %s blocks [%zu, %zu): %zu wrong, first at [%zu, %zu]: %d",
          kiln_isa_name((enum kiln_isa)isa), M, K, N, a_signed ? "s8" : "u8", b_signed ? "s8" : "u8", nb0,
          nb1, bad, first / ldc, first % ldc, C[first]);
done:
    free(A), free(B), free(C), free(R), free(bp);
}

/* kiln.QConv's requantization (src/cpu/ops/qconv.c's requant), written out here. */
static int32_t requant_ref(int32_t acc, int32_t bias, float S, int act, float lo, float hi, int32_t yz,
                           bool sgn)
{
    float v = (float)acc + (float)bias;
    v = v * S;
    if (act == 1) v = v > 0.0f ? v : 0.0f;
    if (act == 2) v = v < lo ? lo : v > hi ? hi : v;
    v = v + (float)yz;
    v = nearbyintf(v);
    float qlo = sgn ? -128.0f : 0.0f, qhi = sgn ? 127.0f : 255.0f;
    return (int32_t)(v < qlo ? qlo : v > qhi ? qhi : v);
}

/* kiln_i8_requant_row_isa, every variant, against requant_ref byte for byte: lengths
 * around the vector widths, scales 0.5 / 0.25 (exact halves: ties to even) and random,
 * each activation, bias or none, int8 and uint8 output. */
static void requant_cases(void)
{
    enum { N = 77 };
    int32_t acc[N], bias[N];
    float S[N];
    uint8_t y[N + 1], want[N];
    for (int isa = 0; isa <= (int)kiln_isa_best(); isa++)
        for (int i = 0; i < 200; i++) {
            size_t n = (size_t)rng_int(N + 1);
            bool sgn = i & 1, hb = i & 2;
            int act = (i >> 2) % 3;
            int32_t yz = sgn ? rng_int(256) - 128 : rng_int(256);
            float lo = (float)(rng_int(100) - 80), hi = lo + (float)rng_int(200);
            for (size_t m = 0; m < n; m++) {
                acc[m] = rng_int(2) ? rng_int(4001) - 2000 : (int32_t)(rng_u64() >> 40) - (1 << 23);
                bias[m] = rng_int(201) - 100;
                S[m] = i % 8 < 4 ? (rng_int(2) ? 0.5f : 0.25f) : (float)(rng_unit() * 0.01);
            }
            y[n] = 0xa5;
            KILN_ISA_VARIANT(kiln_i8_requant_row_isa, isa)
            (acc, n, hb ? bias : NULL, S, act, lo, hi, yz, sgn, y);
            size_t bad = 0;
            for (size_t m = 0; m < n; m++) {
                want[m] = (uint8_t)requant_ref(acc[m], hb ? bias[m] : 0, S[m], act, lo, hi, yz, sgn);
                bad += y[m] != want[m];
            }
            CHECK(bad == 0 && y[n] == 0xa5, "requant %s n %zu act %d %s bias %d: %zu wrong or past the end",
                  kiln_isa_name((enum kiln_isa)isa), n, act, sgn ? "s8" : "u8", hb, bad);
        }
}

static size_t blocks(size_t N)
{
    return (N + KILN_I8GEMM_NB - 1) / KILN_I8GEMM_NB;
}

int main(void)
{
    rng_seed(0x18e3);
    for (int isa = 0; isa <= (int)kiln_isa_best(); isa++) {
        for (int sg = 0; sg < 4; sg++) {
            bool as = sg & 1, bs = sg & 2;
            for (size_t M = 1; M <= 9; M++)
                for (size_t K = 1; K <= 9; K++)
                    for (size_t N = 1; N <= 9; N += 4) one_case(isa, M, K, N, as, bs, 0, blocks(N));
            for (int i = 0; i < 60; i++) {
                size_t M = 1 + (size_t)rng_int(70), K = 1 + (size_t)rng_int(70), N = 1 + (size_t)rng_int(70);
                size_t nb = blocks(N), nb0 = (size_t)rng_int((int)nb),
                       nb1 = nb0 + 1 + (size_t)rng_int((int)(nb - nb0));
                one_case(isa, M, K, N, as, bs, i % 3 ? 0 : nb0, i % 3 ? nb : nb1);
            }
            one_case(isa, 13, 1031, 37, as, bs, 0, blocks(37)); /* K past two chunks, odd */
            one_case(isa, 7, 600, 64, as, bs, 1, 3);
            one_case(isa, 8, 301, 1061, as, bs, 0, blocks(1061)); /* past a chunk of 32 column blocks */
            one_case(isa, 5, 40, 1061, as, bs, 31, 66);
            one_case(isa, 2, 0, 5, as, bs, 0, 1); /* empty sum: zeros */
        }
    }
    requant_cases();
    return test_summary("test_int8_gemm");
}
