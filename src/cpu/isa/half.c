/* half.c: bulk float16 <-> float32 conversion, one copy per instruction set (cpu/half_isa.h).
 *
 * With F16C (the avx2 and avx512 copies) vcvtph2ps / vcvtps2ph do 8 or 16 at a time;
 * vcvtps2ph with immediate 0 rounds to nearest even whatever MXCSR says, and both handle
 * subnormals, Inf and NaN as ir/half.h does. The tail, and the portable copy, use ir/half.h.
 */
#include "cpu/half_isa.h"
#include "ir/half.h"

#if defined(__F16C__)
#include <immintrin.h>
#endif

void KILN_ISA_FN(kiln_f16_load_f32_isa)(const uint16_t *x, size_t n, float *y)
{
    size_t i = 0;
#if defined(__AVX512F__)
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(x + i))));
#endif
#if defined(__F16C__)
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i))));
#endif
    for (; i < n; i++) y[i] = kiln_half_f16_to_f32(x[i]);
}

void KILN_ISA_FN(kiln_f16_store_f32_isa)(const float *x, size_t n, uint16_t *y)
{
    size_t i = 0;
#if defined(__AVX512F__)
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((__m256i *)(y + i), _mm512_cvtps_ph(_mm512_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
#endif
#if defined(__F16C__)
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(y + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
#endif
    for (; i < n; i++) y[i] = kiln_half_f32_to_f16(x[i]);
}
