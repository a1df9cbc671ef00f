/* src/cpu/isa/int8_gemm.c: kiln's exact 8-bit integer product (contract in
 * cpu/int8_gemm_isa.h). AVX2 intrinsics (also the AVX-512 copy, there EVEX-encoded with 32
 * registers) and plain C for the portable copy, left to the compiler's vectorizer.
 *
 * Blocking: K in chunks of KC pairs and the columns in chunks of NBC blocks of 16 (that
 * chunk of B', KC x NBC x 16 int16 pairs = 256 KiB, stays in L2 for all rows); per chunk,
 * panels of MR rows of A are widened to int16 (abuf, on the stack: widened bytes in memory
 * order are exactly the int32 pairs vpmaddwd wants), then a register-blocked MR x 16
 * micro-kernel runs over each column block: per pair, two loads
 * of B', one broadcast of A's pair per row, two vpmaddwd and two vpaddd per row. The first
 * chunk stores C, later ones add to it. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O3", "no-trapping-math", "fp-contract=off")
#endif
#include <math.h>
#include <string.h>

#include "cpu/int8_gemm_isa.h"

#if defined(__AVX2__)
#include <immintrin.h>
#endif

#define NB  KILN_I8GEMM_NB
#define MR  6
#define KC  128 /* pairs of K per chunk */
#define NBC 32  /* column blocks per chunk */

/* Rows [0, mr) of A (at lda), pairs [k2, k2 + kc) of each, widened into abuf (row stride
 * 2 * KC int16); an odd K's last pair gets a zero partner. */
static void widen_panel(const void *A, size_t lda, bool a_signed, size_t mr, size_t K, size_t k2, size_t kc,
                        int16_t *abuf)
{
    for (size_t r = 0; r < mr; r++) {
        int16_t *d = abuf + r * 2 * KC;
        size_t k0 = 2 * k2, k1 = k0 + 2 * kc, kend = k1 < K ? k1 : K, k = k0;
        if (a_signed) {
            const int8_t *s = (const int8_t *)A + r * lda;
#if defined(__AVX2__)
            for (; k + 16 <= kend; k += 16)
                _mm256_storeu_si256((__m256i *)(d + k - k0),
                                    _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(s + k))));
#endif
            for (; k < kend; k++) d[k - k0] = s[k];
        } else {
            const uint8_t *s = (const uint8_t *)A + r * lda;
#if defined(__AVX2__)
            for (; k + 16 <= kend; k += 16)
                _mm256_storeu_si256((__m256i *)(d + k - k0),
                                    _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(s + k))));
#endif
            for (; k < kend; k++) d[k - k0] = s[k];
        }
        for (; k < k1; k++) d[k - k0] = 0;
    }
}

/* Adds the tile t (mr rows of 16) into C's first nc columns (or stores it when !acc). */
static inline void put_tile(const int32_t *t, size_t mr, size_t nc, int32_t *C, size_t ldc, bool acc)
{
    for (size_t r = 0; r < mr; r++)
        for (size_t j = 0; j < nc; j++)
            C[r * ldc + j] =
                acc ? (int32_t)((uint32_t)C[r * ldc + j] + (uint32_t)t[r * NB + j]) : t[r * NB + j];
}

#if defined(__AVX2__)
/* A's pair kk of abuf's row r as one int32 (low half the even k). */
static inline int32_t pair_at(const int16_t *abuf, size_t r, size_t kk)
{
    int32_t v;
    memcpy(&v, abuf + r * 2 * KC + 2 * kk, sizeof v);
    return v;
}

/* Row r's step: A's pair broadcast, times both halves of the block's pair row. */
#define MICRO_ROW(r)                                                                                         \
    if (mr > r) {                                                                                            \
        __m256i a = _mm256_set1_epi32(pair_at(abuf, r, kk));                                                 \
        c##r##0 = _mm256_add_epi32(c##r##0, _mm256_madd_epi16(a, b0));                                       \
        c##r##1 = _mm256_add_epi32(c##r##1, _mm256_madd_epi16(a, b1));                                       \
    }

/* The micro-kernel: C[0..mr)[0..nc) (+)= abuf's rows x the block b (kc pairs of 16
 * columns). mr is a constant where it is inlined, and the 12 accumulators are named
 * variables (an array of them, GCC keeps on the stack), so they live in registers. */
static inline __attribute__((always_inline)) void micro(size_t mr, const int16_t *abuf, const int16_t *b,
                                                        size_t kc, int32_t *C, size_t ldc, size_t nc,
                                                        bool acc)
{
    __m256i z = _mm256_setzero_si256();
    __m256i c00 = z, c01 = z, c10 = z, c11 = z, c20 = z, c21 = z, c30 = z, c31 = z, c40 = z, c41 = z, c50 = z,
            c51 = z;
    for (size_t kk = 0; kk < kc; kk++) {
        __m256i b0 = _mm256_loadu_si256((const __m256i *)(b + kk * 2 * NB));
        __m256i b1 = _mm256_loadu_si256((const __m256i *)(b + kk * 2 * NB + NB));
        MICRO_ROW(0)
        MICRO_ROW(1)
        MICRO_ROW(2)
        MICRO_ROW(3)
        MICRO_ROW(4)
        MICRO_ROW(5)
    }
    const __m256i c0[MR] = {c00, c10, c20, c30, c40, c50}, c1[MR] = {c01, c11, c21, c31, c41, c51};
    if (nc == NB) {
        for (size_t r = 0; r < mr; r++) {
            __m256i *y = (__m256i *)(C + r * ldc), y0 = c0[r], y1 = c1[r];
            if (acc) {
                y0 = _mm256_add_epi32(y0, _mm256_loadu_si256(y));
                y1 = _mm256_add_epi32(y1, _mm256_loadu_si256(y + 1));
            }
            _mm256_storeu_si256(y, y0);
            _mm256_storeu_si256(y + 1, y1);
        }
        return;
    }
    int32_t t[MR * NB];
    for (size_t r = 0; r < mr; r++) {
        _mm256_storeu_si256((__m256i *)(t + r * NB), c0[r]);
        _mm256_storeu_si256((__m256i *)(t + r * NB + 8), c1[r]);
    }
    put_tile(t, mr, nc, C, ldc, acc);
}
#else
static inline __attribute__((always_inline)) void micro(size_t mr, const int16_t *abuf, const int16_t *b,
                                                        size_t kc, int32_t *C, size_t ldc, size_t nc,
                                                        bool acc)
{
    int32_t t[MR * NB] = {0};
    for (size_t r = 0; r < mr; r++)
        for (size_t kk = 0; kk < kc; kk++) {
            int32_t a0 = abuf[r * 2 * KC + 2 * kk], a1 = abuf[r * 2 * KC + 2 * kk + 1];
            const int16_t *bk = b + kk * 2 * NB;
            for (size_t j = 0; j < NB; j++)
                t[r * NB + j] =
                    (int32_t)((uint32_t)t[r * NB + j] + (uint32_t)(a0 * bk[2 * j] + a1 * bk[2 * j + 1]));
        }
    put_tile(t, mr, nc, C, ldc, acc);
}
#endif

#define MICRO_N(n)                                                                                           \
    static void micro##n(const int16_t *abuf, const int16_t *b, size_t kc, int32_t *C, size_t ldc,           \
                         size_t nc, bool acc)                                                                \
    {                                                                                                        \
        micro(n, abuf, b, kc, C, ldc, nc, acc);                                                              \
    }
MICRO_N(1)
MICRO_N(2)
MICRO_N(3)
MICRO_N(4)
MICRO_N(5)
MICRO_N(6)

typedef void (*micro_fn)(const int16_t *, const int16_t *, size_t, int32_t *, size_t, size_t, bool);
static const micro_fn MICRO[MR + 1] = {NULL, micro1, micro2, micro3, micro4, micro5, micro6};

void KILN_ISA_FN(kiln_i8gemm_isa)(const void *A, size_t lda, bool a_signed, size_t M, size_t K,
                                  const int16_t *bp, size_t N, size_t nb0, size_t nb1, int32_t *C, size_t ldc)
{
    size_t K2 = (K + 1) / 2, nblocks = (N + NB - 1) / NB;
    if (nb1 > nblocks) nb1 = nblocks;
    if (K2 == 0) { /* an empty sum */
        for (size_t m = 0; m < M; m++)
            if (nb1 > nb0)
                memset(C + m * ldc + nb0 * NB, 0, ((nb1 * NB < N ? nb1 * NB : N) - nb0 * NB) * sizeof *C);
        return;
    }
    int16_t abuf[MR * 2 * KC];
    for (size_t k2 = 0; k2 < K2; k2 += KC) {
        size_t kc = K2 - k2 < KC ? K2 - k2 : KC;
        for (size_t jc = nb0; jc < nb1; jc += NBC) { /* KC x NBC blocks of B': ~256 KiB, in L2 */
            size_t jend = jc + NBC < nb1 ? jc + NBC : nb1;
            for (size_t m = 0; m < M; m += MR) {
                size_t mr = M - m < MR ? M - m : MR;
                widen_panel((const char *)A + m * lda, lda, a_signed, mr, K, k2, kc, abuf);
                for (size_t jb = jc; jb < jend; jb++) {
                    size_t nc = N - jb * NB < NB ? N - jb * NB : NB;
                    const int16_t *b = bp + jb * K2 * 2 * NB + k2 * 2 * NB;
                    MICRO[mr](abuf, b, kc, C + m * ldc + jb * NB, ldc, nc, k2 > 0);
                }
            }
        }
    }
}

/* One element of the requantization (the header's formula); each operation its own
 * statement, so that nothing contracts into a fused multiply-add. */
static inline float requant_v(int32_t acc, int32_t bias, float S, int act, float lo, float hi, float yz)
{
    float v = (float)acc + (float)bias;
    v = v * S;
    if (act == 1) v = v > 0.0f ? v : 0.0f;
    if (act == 2) v = v < lo ? lo : v > hi ? hi : v;
    v = v + yz;
    return nearbyintf(v);
}

void KILN_ISA_FN(kiln_i8_requant_row_isa)(const int32_t *acc, size_t n, const int32_t *bias, const float *S,
                                          int act, float lo, float hi, int32_t yz, bool y_signed, void *y)
{
    float fz = (float)yz, qlo = y_signed ? -128.0f : 0.0f, qhi = y_signed ? 127.0f : 255.0f;
    for (size_t m = 0; m < n; m++) {
        float v = requant_v(acc[m], bias ? bias[m] : 0, S[m], act, lo, hi, fz);
        v = v < qlo ? qlo : v > qhi ? qhi : v;
        if (y_signed)
            ((int8_t *)y)[m] = (int8_t)(int32_t)v;
        else
            ((uint8_t *)y)[m] = (uint8_t)(int32_t)v;
    }
}
