/* isa/qdq.c: kiln.QAdd's loop (cpu/qdq_isa.h), one copy per instruction set. */
#include <math.h>

#include "cpu/qdq_isa.h"

#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

/* The vector loops multiply by 1 / ys instead of dividing (a division per element was most
 * of QAdd's time), which is not always the quotient's float32 value: it differs by a few
 * units in the last place. Rounded to an integer, that matters only where the quotient lies
 * within those units of a half-integer (|q| < 512: a few times 2^-15), or when the result
 * saturates either way (|q| >= 512 with an 8-bit zero point). So wherever a lane's product
 * is within NEAR_HALF of a half-integer (or NaN), the whole vector is divided exactly
 * instead: the result is always the true division's. */
#define NEAR_HALF (1.0f / 1024.0f)

/* One element, without fused multiply-adds: each product is rounded before the sum. */
static inline float qadd_one(float a, float b, const struct kiln_qadd_params *p)
{
    float fa = (a - p->az) * p->as;
    float fb = (b - p->bz) * p->bs;
#if defined(__FMA__)
    /* keep the products rounded: the compiler may contract fa + fb's operands otherwise */
    __asm__("" : "+x"(fa), "+x"(fb));
#endif
    return nearbyintf((fa + fb) / p->ys) + p->yz;
}

void KILN_ISA_FN(kiln_qadd_u8_isa)(const uint8_t *a, const uint8_t *b, uint8_t *y, size_t n,
                                   const struct kiln_qadd_params *p)
{
    size_t j = 0;
#if defined(__AVX512F__)
    __m512 as = _mm512_set1_ps(p->as), az = _mm512_set1_ps(p->az), bs = _mm512_set1_ps(p->bs),
           bz = _mm512_set1_ps(p->bz), ys = _mm512_set1_ps(p->ys), yz = _mm512_set1_ps(p->yz),
           lo = _mm512_setzero_ps(), hi = _mm512_set1_ps(255.0f);
    __m512 inv = _mm512_set1_ps(1.0f / p->ys), half = _mm512_set1_ps(0.5f), eps = _mm512_set1_ps(NEAR_HALF);
    for (; j + 16 <= n; j += 16) {
        __m512 fa = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(a + j))));
        __m512 fb = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(b + j))));
        fa = _mm512_mul_ps(_mm512_sub_ps(fa, az), as);
        fb = _mm512_mul_ps(_mm512_sub_ps(fb, bz), bs);
        __m512 sum = _mm512_add_ps(fa, fb), q = _mm512_mul_ps(sum, inv);
        __m512 t = _mm512_sub_ps(q, _mm512_roundscale_ps(q, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        __m512 dist = _mm512_abs_ps(_mm512_sub_ps(_mm512_abs_ps(t), half));
        if (_mm512_cmp_ps_mask(dist, eps, _CMP_NGE_UQ)) q = _mm512_div_ps(sum, ys); /* near a tie, NaN */
        q = _mm512_add_ps(_mm512_roundscale_ps(q, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), yz);
        q = _mm512_min_ps(_mm512_max_ps(q, lo), hi);
        _mm_storeu_si128((__m128i *)(y + j), _mm512_cvtusepi32_epi8(_mm512_cvttps_epi32(q)));
    }
#elif defined(__AVX2__)
    __m256 as = _mm256_set1_ps(p->as), az = _mm256_set1_ps(p->az), bs = _mm256_set1_ps(p->bs),
           bz = _mm256_set1_ps(p->bz), ys = _mm256_set1_ps(p->ys), yz = _mm256_set1_ps(p->yz),
           lo = _mm256_setzero_ps(), hi = _mm256_set1_ps(255.0f);
    __m256 inv = _mm256_set1_ps(1.0f / p->ys), half = _mm256_set1_ps(0.5f), eps = _mm256_set1_ps(NEAR_HALF),
           sign = _mm256_set1_ps(-0.0f);
    for (; j + 8 <= n; j += 8) {
        __m256 fa = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(a + j))));
        __m256 fb = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(b + j))));
        fa = _mm256_mul_ps(_mm256_sub_ps(fa, az), as);
        fb = _mm256_mul_ps(_mm256_sub_ps(fb, bz), bs);
        __m256 sum = _mm256_add_ps(fa, fb), q = _mm256_mul_ps(sum, inv);
        __m256 t = _mm256_sub_ps(q, _mm256_round_ps(q, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        __m256 dist = _mm256_andnot_ps(sign, _mm256_sub_ps(_mm256_andnot_ps(sign, t), half));
        if (_mm256_movemask_ps(_mm256_cmp_ps(dist, eps, _CMP_NGE_UQ))) q = _mm256_div_ps(sum, ys);
        q = _mm256_add_ps(_mm256_round_ps(q, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), yz);
        q = _mm256_min_ps(_mm256_max_ps(q, lo), hi);
        __m256i i = _mm256_cvttps_epi32(q);
        __m128i p16 = _mm_packus_epi32(_mm256_castsi256_si128(i), _mm256_extracti128_si256(i, 1));
        _mm_storel_epi64((__m128i *)(y + j), _mm_packus_epi16(p16, p16));
    }
#endif
    for (; j < n; j++) {
        float q = qadd_one((float)a[j], (float)b[j], p);
        y[j] = (uint8_t)(q < 0.0f ? 0.0f : q > 255.0f ? 255.0f : q);
    }
}

