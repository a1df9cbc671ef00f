/* src/cpu/isa/quant.c: DynamicQuantizeLinear's range and quantize passes, the depthwise
 * integer tap and kiln.DynQuantConv's epilogue (contracts in cpu/quant_isa.h): AVX-512 and
 * AVX2 intrinsics, and the reference's scalar loops for the portable copy and the tails.
 * No contraction: the epilogue's product and sum round separately, as the nodes they fuse. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O3", "no-trapping-math", "fp-contract=off")
#endif
#include <math.h>
#include <string.h>

#include "cpu/quant_isa.h"

#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

/* The reference's comparisons: NaN compares false and is skipped. */
static inline void range_scalar(const float *x, size_t n, float *mn, float *mx)
{
    for (size_t j = 0; j < n; j++) {
        if (x[j] > *mx) *mx = x[j];
        if (x[j] < *mn) *mn = x[j];
    }
}

static inline uint8_t quantize_one(float x, float scale, float zp)
{
    float q = nearbyintf(x / scale) + zp;
    if (isnan(q)) q = zp;
    return (uint8_t)(q < 0 ? 0 : q > 255 ? 255 : q);
}

#if defined(__AVX512F__)
/* 16 elements quantized as quantize_one (as int32 in [0, 255]). */
static inline __m512i quantize16(__m512 x, __m512 vs, __m512 vz)
{
    __m512 q = _mm512_div_ps(x, vs);
    q = _mm512_add_ps(_mm512_roundscale_ps(q, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), vz);
    __mmask16 nan = _mm512_cmp_ps_mask(q, q, _CMP_UNORD_Q);
    q = _mm512_min_ps(_mm512_max_ps(q, _mm512_setzero_ps()), _mm512_set1_ps(255.0f));
    q = _mm512_mask_mov_ps(q, nan, vz);
    return _mm512_cvttps_epi32(q);
}

/* r[i][j] <- r[j][i] for a 16 x 16 block of 32-bit lanes. */
static inline void transpose16(__m512i r[16])
{
    __m512i t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
        r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
        r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
        r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    for (int h = 0; h < 16; h += 8)
        for (int i = 0; i < 4; i++) {
            t[h + i] = _mm512_shuffle_i32x4(r[h + i], r[h + i + 4], 0x88);
            t[h + i + 4] = _mm512_shuffle_i32x4(r[h + i], r[h + i + 4], 0xdd);
        }
    for (int i = 0; i < 8; i++) {
        r[i] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0x88);
        r[i + 8] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0xdd);
    }
}
#endif

/* Unsigned arithmetic: wraps like the reference's int32 sums; the loop vectorizes (vpmulld). */
void KILN_ISA_FN(kiln_imm_fold_row_isa)(int32_t *y, size_t n, const int32_t *corr, const int32_t *colsum, uint32_t r,
                                        uint32_t a)
{
    uint32_t *u = (uint32_t *)y;
    for (size_t j = 0; j < n; j++) u[j] += (uint32_t)corr[j] * r - a * (uint32_t)colsum[j];
}

void KILN_ISA_FN(kiln_dql_range_isa)(const float *x, size_t n, float *mn, float *mx)
{
    float lo = 0.0f, hi = 0.0f;
    size_t j = 0;
#if defined(__AVX512F__)
    __m512 vlo = _mm512_setzero_ps(), vhi = _mm512_setzero_ps();
    for (; j + 16 <= n; j += 16) {
        __m512 v = _mm512_loadu_ps(x + j);
        vhi = _mm512_max_ps(v, vhi); /* NaN v or v == vhi: vhi */
        vlo = _mm512_min_ps(v, vlo);
    }
    hi = _mm512_reduce_max_ps(vhi);
    lo = _mm512_reduce_min_ps(vlo);
#elif defined(__AVX2__)
    __m256 vlo = _mm256_setzero_ps(), vhi = _mm256_setzero_ps();
    for (; j + 8 <= n; j += 8) {
        __m256 v = _mm256_loadu_ps(x + j);
        vhi = _mm256_max_ps(v, vhi);
        vlo = _mm256_min_ps(v, vlo);
    }
    float h[8], l[8];
    _mm256_storeu_ps(h, vhi);
    _mm256_storeu_ps(l, vlo);
    range_scalar(h, 8, &lo, &hi);
    range_scalar(l, 8, &lo, &hi);
#endif
    range_scalar(x + j, n - j, &lo, &hi);
    *mn = lo, *mx = hi;
}

void KILN_ISA_FN(kiln_dql_quantize_isa)(const float *x, size_t n, float scale, float zp, uint8_t *y)
{
    size_t j = 0;
#if defined(__AVX512F__)
    __m512 vs = _mm512_set1_ps(scale), vz = _mm512_set1_ps(zp), v0 = _mm512_setzero_ps(),
           v255 = _mm512_set1_ps(255.0f);
    (void)v0, (void)v255;
    for (; j + 16 <= n; j += 16)
        _mm_storeu_si128((__m128i *)(y + j), _mm512_cvtusepi32_epi8(quantize16(_mm512_loadu_ps(x + j), vs, vz)));
#elif defined(__AVX2__)
    __m256 vs = _mm256_set1_ps(scale), vz = _mm256_set1_ps(zp), v0 = _mm256_setzero_ps(),
           v255 = _mm256_set1_ps(255.0f);
    for (; j + 8 <= n; j += 8) {
        __m256 q = _mm256_div_ps(_mm256_loadu_ps(x + j), vs);
        q = _mm256_add_ps(_mm256_round_ps(q, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), vz);
        __m256 nan = _mm256_cmp_ps(q, q, _CMP_UNORD_Q);
        q = _mm256_min_ps(_mm256_max_ps(q, v0), v255);
        q = _mm256_blendv_ps(q, vz, nan);
        __m256i i = _mm256_cvttps_epi32(q);
        __m256i p = _mm256_packus_epi16(_mm256_packus_epi32(i, i), _mm256_setzero_si256());
        uint32_t lo = (uint32_t)_mm_cvtsi128_si32(_mm256_castsi256_si128(p));
        uint32_t hi = (uint32_t)_mm_cvtsi128_si32(_mm256_extracti128_si256(p, 1));
        for (int b = 0; b < 4; b++) y[j + (size_t)b] = (uint8_t)(lo >> (8 * b)), y[j + 4 + (size_t)b] = (uint8_t)(hi >> (8 * b));
    }
#endif
    for (; j < n; j++) y[j] = quantize_one(x[j], scale, zp);
}

void KILN_ISA_FN(kiln_qdw_tap_isa)(uint32_t *acc, const uint8_t *x, bool x_signed, int32_t zp, const int32_t *w,
                                   size_t c)
{
    const uint32_t *uw = (const uint32_t *)w;
    uint32_t z = (uint32_t)zp;
    if (x_signed) {
        const int8_t *s = (const int8_t *)x;
        for (size_t j = 0; j < c; j++) acc[j] += ((uint32_t)(int32_t)s[j] - z) * uw[j];
    } else {
        for (size_t j = 0; j < c; j++) acc[j] += ((uint32_t)x[j] - z) * uw[j];
    }
}

static void epilogue_scalar(float *y, size_t ys, const int32_t *acc, size_t as, size_t p0, size_t p1, size_t m0,
                            size_t m1, float scale, const float *bias)
{
    for (size_t m = m0; m < m1; m++) {
        float *row = y + m * ys;
        const int32_t *a = acc + m;
        if (bias) {
            float b = bias[m];
            for (size_t p = p0; p < p1; p++) {
                float f = (float)a[p * as] * scale;
                row[p] = f + b;
            }
        } else {
            for (size_t p = p0; p < p1; p++) row[p] = (float)a[p * as] * scale;
        }
    }
}

void KILN_ISA_FN(kiln_qconv_epilogue_isa)(float *y, size_t ys, const int32_t *acc, size_t as, size_t np, size_t nm,
                                          float scale, const float *bias)
{
    size_t pv = 0;
#if defined(__AVX512F__)
    size_t mv = nm / 16 * 16;
    pv = np / 16 * 16;
    __m512 vs = _mm512_set1_ps(scale);
    for (size_t p0 = 0; p0 < pv; p0 += 16)
        for (size_t m0 = 0; m0 < mv; m0 += 16) {
            __m512i r[16];
            for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_si512(acc + (p0 + (size_t)i) * as + m0);
            transpose16(r);
            for (int i = 0; i < 16; i++) {
                __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(r[i]), vs);
                if (bias) f = _mm512_add_ps(f, _mm512_set1_ps(bias[m0 + (size_t)i]));
                _mm512_storeu_ps(y + (m0 + (size_t)i) * ys + p0, f);
            }
        }
    epilogue_scalar(y, ys, acc, as, 0, pv, mv, nm, scale, bias);
#endif
    epilogue_scalar(y, ys, acc, as, pv, np, 0, nm, scale, bias);
}

void KILN_ISA_FN(kiln_dql_quantize_nhwc_isa)(const float *x, size_t xs, size_t np, size_t nc, float scale, float zp,
                                             uint8_t *y, size_t ys)
{
    size_t pv = 0;
#if defined(__AVX512F__)
    size_t cv = nc / 16 * 16;
    pv = np / 16 * 16;
    __m512 vs = _mm512_set1_ps(scale), vz = _mm512_set1_ps(zp);
    for (size_t p0 = 0; p0 < pv; p0 += 16)
        for (size_t c0 = 0; c0 < cv; c0 += 16) {
            __m512i r[16];
            for (int i = 0; i < 16; i++) r[i] = quantize16(_mm512_loadu_ps(x + (c0 + (size_t)i) * xs + p0), vs, vz);
            transpose16(r);
            for (int i = 0; i < 16; i++)
                _mm_storeu_si128((__m128i *)(y + (p0 + (size_t)i) * ys + c0), _mm512_cvtusepi32_epi8(r[i]));
        }
    for (size_t c = cv; c < nc; c++)
        for (size_t p = 0; p < pv; p++) y[p * ys + c] = quantize_one(x[c * xs + p], scale, zp);
#endif
    for (size_t c = 0; c < nc; c++)
        for (size_t p = pv; p < np; p++) y[p * ys + c] = quantize_one(x[c * xs + p], scale, zp);
}

/* ------------------------------------------------------------------ QuantizeLinear / DequantizeLinear */

static inline int32_t q_one(float x, float s, float z, float lo, float hi)
{
    float q = nearbyintf(x / s) + z;
    if (isnan(q)) q = z;
    return (int32_t)(q < lo ? lo : q > hi ? hi : q);
}

void KILN_ISA_FN(kiln_q_f32_isa)(const float *x, size_t n, const float *s, const float *z, bool per_elem, float lo,
                                 float hi, void *y, int bytes)
{
    size_t j = 0;
#if defined(__AVX512F__)
    __m512 vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);
    __m512 vs = _mm512_set1_ps(s[0]), vz = _mm512_set1_ps(z ? z[0] : 0.0f);
    for (; j + 16 <= n; j += 16) {
        if (per_elem) {
            vs = _mm512_loadu_ps(s + j);
            if (z) vz = _mm512_loadu_ps(z + j);
        }
        __m512 q = _mm512_div_ps(_mm512_loadu_ps(x + j), vs);
        q = _mm512_add_ps(_mm512_roundscale_ps(q, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), vz);
        __mmask16 nan = _mm512_cmp_ps_mask(q, q, _CMP_UNORD_Q);
        q = _mm512_min_ps(_mm512_max_ps(q, vlo), vhi);
        __m512i i = _mm512_cvttps_epi32(_mm512_mask_mov_ps(q, nan, vz));
        if (bytes == 1) _mm_storeu_si128((__m128i *)((uint8_t *)y + j), _mm512_cvtepi32_epi8(i));
        else _mm256_storeu_si256((__m256i *)((uint16_t *)y + j), _mm512_cvtepi32_epi16(i));
    }
#endif
    for (; j < n; j++) {
        size_t p = per_elem ? j : 0;
        int32_t v = q_one(x[j], s[p], z ? z[p] : 0.0f, lo, hi);
        if (bytes == 1) ((uint8_t *)y)[j] = (uint8_t)v;
        else ((uint16_t *)y)[j] = (uint16_t)v;
    }
}

static inline float dq_load(const void *x, int kind, size_t j)
{
    switch (kind) {
    case KILN_DQ_U8: return (float)((const uint8_t *)x)[j];
    case KILN_DQ_I8: return (float)((const int8_t *)x)[j];
    case KILN_DQ_U16: return (float)((const uint16_t *)x)[j];
    case KILN_DQ_I16: return (float)((const int16_t *)x)[j];
    default: return (float)((const int32_t *)x)[j];
    }
}

void KILN_ISA_FN(kiln_dq_f32_isa)(const void *x, int kind, size_t n, const float *s, const float *z, bool per_elem,
                                  float *y)
{
    size_t j = 0;
#if defined(__AVX512F__)
    __m512 vs = _mm512_set1_ps(s[0]), vz = _mm512_set1_ps(z ? z[0] : 0.0f);
    for (; j + 16 <= n; j += 16) {
        if (per_elem) {
            vs = _mm512_loadu_ps(s + j);
            if (z) vz = _mm512_loadu_ps(z + j);
        }
        __m512i i;
        switch (kind) {
        case KILN_DQ_U8: i = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)((const uint8_t *)x + j))); break;
        case KILN_DQ_I8: i = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)((const int8_t *)x + j))); break;
        case KILN_DQ_U16: i = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)((const uint16_t *)x + j))); break;
        case KILN_DQ_I16: i = _mm512_cvtepi16_epi32(_mm256_loadu_si256((const __m256i *)((const int16_t *)x + j))); break;
        default: i = _mm512_loadu_si512((const int32_t *)x + j); break;
        }
        __m512 f = _mm512_cvtepi32_ps(i);
        if (z) f = _mm512_sub_ps(f, vz);
        _mm512_storeu_ps(y + j, _mm512_mul_ps(f, vs));
    }
#endif
    for (; j < n; j++) {
        size_t p = per_elem ? j : 0;
        float dx = dq_load(x, kind, j);
        if (z) dx -= z[p];
        y[j] = dx * s[p];
    }
}

/* ------------------------------------------------------------------ weight-only rows */

void KILN_ISA_FN(kiln_wo_rows_isa)(float *acc, const float *x, const uint8_t *w, size_t ldw, bool w_signed,
                                   const int32_t *z, size_t kb, size_t nw)
{
    for (size_t k = 0; k < kb; k++) {
        const uint8_t *row = w + k * ldw;
        float xv = x[k];
        size_t n = 0;
#if defined(__AVX512F__)
        __m512 vx = _mm512_set1_ps(xv);
        for (; n + 16 <= nw; n += 16) {
            __m128i b = _mm_loadu_si128((const __m128i *)(row + n));
            __m512i i = w_signed ? _mm512_cvtepi8_epi32(b) : _mm512_cvtepu8_epi32(b);
            if (z) i = _mm512_sub_epi32(i, _mm512_loadu_si512(z + n));
            __m512 a = _mm512_loadu_ps(acc + n);
            _mm512_storeu_ps(acc + n, _mm512_fmadd_ps(vx, _mm512_cvtepi32_ps(i), a));
        }
#endif
        for (; n < nw; n++) {
            int32_t v = w_signed ? (int32_t)(int8_t)row[n] : (int32_t)row[n];
            if (z) v -= z[n];
            acc[n] += xv * (float)v;
        }
    }
}

/* ------------------------------------------------------------------ kiln.DynQuantMatMul's epilogue */

void KILN_ISA_FN(kiln_dqmm_epilogue_isa)(void *y, size_t n, const float *scale, const float *bias, uint32_t a,
                                         const int32_t *colsum)
{
    char *p = y;
    for (size_t c = 0; c < n; c++) {
        uint32_t v;
        memcpy(&v, p + 4 * c, sizeof v);
        if (colsum) v -= a * (uint32_t)colsum[c];
        float f = (float)(int32_t)v * scale[c];
        if (bias) f = f + bias[c];
        memcpy(p + 4 * c, &f, sizeof f);
    }
}
