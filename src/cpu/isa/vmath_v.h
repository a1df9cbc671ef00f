/* src/cpu/isa/vmath_v.h: explicit AVX-512 forms of the element functions whose scalar
 * versions (vmath_core.h, eltwise_core.h) the compiler vectorizes less well, sixteen floats
 * at a time. Each is the only version at AVX-512 of the ops that use it, so that an op, its
 * fused activation and vmath.h's array function give the same bits.
 *
 * GELU (approximate "none": 0.5 x (1 + erf(x / sqrt 2))), for the Gelu op (eltwise.c) and the
 * fused activation (act.c).
 *
 * erf(t), t = |x| / sqrt 2, from a table of polynomials instead of vmath_core.h's erf_core,
 * which evaluates both of its branches (a polynomial, and 1 - exp of another) in every lane:
 * [0, 4) in 16 intervals of 1/4, on each erf(c + u) ~ sum_d C[d][i] u^d of degree 6 about the
 * interval's centre c (|u| <= 1/8), the coefficients picked per lane with vpermps from
 * sixteen-entry rows; erf = 1 from t = 3.99 on (erfc(3.99) < 2^-25: erf rounds to 1 there).
 * The coefficients are least-squares fits to erf in double on 200 Chebyshev nodes of each
 * interval; evaluated in float (Horner, one FMA a degree) the absolute error of erf is at
 * most 5.9e-8 over [0, 4) (erf_core's bound is 2e-7). GELU's error is then at most about
 * 0.5 |x| 6e-8 plus the rounding of its last two operations. NaN stays NaN (x multiplies
 * the result), +-inf give +inf and NaN as erf_core's formula does (-inf * 0).
 * Measured on a Zen 4 (one core, a buffer in L1): 0.86 ns an element with erf_core, 0.35
 * with this.
 */
#ifndef KILN_CPU_ISA_VMATH_V_H
#define KILN_CPU_ISA_VMATH_V_H

#if defined(__AVX512F__)
#include <immintrin.h>
#include <stdbool.h>
#include <stddef.h>

#include "cpu/isa/vmath_core.h"

static const float gelu_erf_c[7][16] __attribute__((aligned(64))) = {
    {1.403162048e-01f, 4.041169094e-01f, 6.232408822e-01f, 7.840750611e-01f, 8.883882317e-01f,
     9.481700728e-01f, 9.784437332e-01f, 9.919900577e-01f, 9.973459706e-01f, 9.992170618e-01f,
     9.997946243e-01f, 9.999521452e-01f, 9.999901033e-01f, 9.999981847e-01f, 9.999997049e-01f,
     9.999999575e-01f},
    {1.110885260e+00f, 9.803528073e-01f, 7.634995415e-01f, 5.247450530e-01f, 3.182739625e-01f,
     1.703597731e-01f, 8.047225646e-02f, 3.354582637e-02f, 1.234081983e-02f, 4.006477909e-03f,
     1.147875408e-03f, 2.902285032e-04f, 6.475879474e-05f, 1.275178370e-05f, 2.215933560e-06f,
     3.398257770e-07f},
    {-1.388606534e-01f, -3.676322929e-01f, -4.771872035e-01f, -4.591519164e-01f, -3.580582090e-01f,
     -2.342446929e-01f, -1.307674215e-01f, -6.289842694e-02f, -2.622424249e-02f, -9.515384353e-03f,
     -3.013172170e-03f, -8.344064415e-04f, -2.023709911e-04f, -4.303717757e-05f, -8.032730324e-06f,
     -1.316817370e-06f},
    {-3.587182680e-01f, -2.348750285e-01f, -5.567479194e-02f, 9.291964789e-02f, 1.624502828e-01f,
     1.579380010e-01f, 1.148419327e-01f, 6.744214330e-02f, 3.303780615e-02f, 1.373050910e-02f,
     4.890281743e-03f, 1.502423185e-03f, 3.999627120e-04f, 9.256099968e-05f, 1.866695530e-05f,
     3.286753578e-06f},
    {6.870539577e-02f, 1.665799726e-01f, 1.764578197e-01f, 1.123971178e-01f, 2.797512745e-02f,
     -3.049931305e-02f, -4.971868406e-02f, -4.226031457e-02f, -2.636124948e-02f, -1.313339534e-02f,
     -5.414305029e-03f, -1.881718991e-03f, -5.575400188e-04f, -1.418712597e-04f, -3.116242432e-05f,
     -5.930708979e-06f},
    {1.035279918e-01f, 4.532615272e-02f, -2.703504849e-02f, -6.670918569e-02f, -6.106119471e-02f,
     -3.064391533e-02f, -2.303252045e-03f, 1.132802228e-02f, 1.244421186e-02f, 8.360578336e-03f,
     4.236414129e-03f, 1.727707365e-03f, 5.842619766e-04f, 1.665798258e-04f, 4.045956916e-05f,
     8.430410862e-06f},
    {-2.248836105e-02f, -4.975650227e-02f, -4.113639480e-02f, -1.042486351e-02f, 1.534914813e-02f,
     2.202830028e-02f, 1.439652175e-02f, 4.149622318e-03f, -1.778267113e-03f, -3.095476640e-03f,
     -2.245701026e-03f, -1.144289182e-03f, -4.557900017e-04f, -1.481251443e-04f, -4.015966178e-05f,
     -9.205132201e-06f},
};

static inline __m512 gelu_v16(__m512 x)
{
    const __m512 sign = _mm512_set1_ps(-0.0f);
    __m512 t = _mm512_mul_ps(_mm512_andnot_ps(sign, x), _mm512_set1_ps(0.70710678118654752440f));
    __m512 tc = _mm512_min_ps(t, _mm512_set1_ps(3.99f)); /* NaN t gives 3.99: x keeps the NaN */
    __m512i idx = _mm512_cvttps_epi32(_mm512_mul_ps(tc, _mm512_set1_ps(4.0f)));
    __m512 u = _mm512_sub_ps(
        tc, _mm512_fmadd_ps(_mm512_cvtepi32_ps(idx), _mm512_set1_ps(0.25f), _mm512_set1_ps(0.125f)));
    __m512 p = _mm512_permutexvar_ps(idx, _mm512_load_ps(gelu_erf_c[6]));
    for (int d = 5; d >= 0; d--)
        p = _mm512_fmadd_ps(p, u, _mm512_permutexvar_ps(idx, _mm512_load_ps(gelu_erf_c[d])));
    __mmask16 big = _mm512_cmp_ps_mask(t, _mm512_set1_ps(3.99f), _CMP_GE_OQ);
    p = _mm512_mask_mov_ps(p, big, _mm512_set1_ps(1.0f));
    __m512 e = _mm512_or_ps(p, _mm512_and_ps(x, sign)); /* erf(x / sqrt 2), odd */
    __m512 h = _mm512_mul_ps(_mm512_set1_ps(0.5f), x);
    return _mm512_mul_ps(h, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
}

/* y[i] = gelu(x[i] (+ z[i], rounded to float first)) for i < n (z may be NULL). */
static inline void gelu_v_rows(const float *x, const float *z, float *y, size_t n)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 v = _mm512_loadu_ps(x + i);
        if (z) v = _mm512_add_ps(v, _mm512_loadu_ps(z + i));
        _mm512_storeu_ps(y + i, gelu_v16(v));
    }
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        __m512 v = _mm512_maskz_loadu_ps(m, x + i);
        if (z) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, z + i));
        _mm512_mask_storeu_ps(y + i, m, gelu_v16(v));
    }
}

/* Sigmoid, for the Sigmoid op, the fused Sigmoid and SiLU (x * sigmoid(alpha x)) and
 * kiln_vsigmoid_f32: vmath_core.h's sigmoid_core (n / (1 + e), e = exp(-|x|), n = 1 for
 * x >= 0 and e otherwise; the same polynomial for exp on the same reduced argument), with
 * 2^k applied by vscalefps in one rounding instead of two multiplies by built powers of two
 * (the same float except where e is subnormal, x < -87.3, where sigmoid is e itself to
 * within 1e-38), and the rounding to k by vrndscaleps. Zen 4, one core, in L1: 0.43 ns an
 * element as the compiler vectorized sigmoid_core, 0.31 like this. NaN stays NaN. */
static inline __m512 sigmoid_v16(__m512 x)
{
    const __m512 sign = _mm512_set1_ps(-0.0f);
    __m512 a = _mm512_max_ps(_mm512_set1_ps(EXP_LO), _mm512_or_ps(x, sign)); /* -|x|; NaN stays */
    __m512 k = _mm512_roundscale_ps(_mm512_mul_ps(a, _mm512_set1_ps(EXP_LOG2E)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(k, _mm512_set1_ps(EXP_C2), _mm512_fnmadd_ps(k, _mm512_set1_ps(EXP_C1), a));
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0f));
    __m512 e = _mm512_scalef_ps(p, k);
    __mmask16 pos = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_GE_OQ);
    __m512 n = _mm512_mask_mov_ps(e, pos, _mm512_set1_ps(1.0f));
    return _mm512_div_ps(n, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
}

/* SiLU, v * sigmoid(alpha v), for the SiLU/Swish op and the fused SiLU activation (the
 * only AVX-512 version of both): vmath_core.h's silu_core, v / (1 + e) with e = exp(-alpha v)
 * on a degree-5 polynomial, with 2^k by vscalefps and -alpha v clamped to [EXP_LO, 200] (from
 * about 88.7 up e is +inf and the result -0, as silu_core's; sigmoid_v16 keeps subnormal
 * tails for the Sigmoid op). max and min return their second operand, v's, for NaN. Zen 4,
 * one core, in L1: 0.39 ns an element as v * sigmoid_v16(alpha v), 0.26 like this. */
static inline __m512 silu_v16(__m512 v, __m512 alpha)
{
    __m512 a = _mm512_mul_ps(alpha, _mm512_xor_ps(v, _mm512_set1_ps(-0.0f))); /* -alpha v */
    a = _mm512_min_ps(_mm512_set1_ps(200.0f), _mm512_max_ps(_mm512_set1_ps(EXP_LO), a));
    __m512 k = _mm512_roundscale_ps(_mm512_mul_ps(a, _mm512_set1_ps(EXP_LOG2E)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(k, _mm512_set1_ps(EXP_C2), _mm512_fnmadd_ps(k, _mm512_set1_ps(EXP_C1), a));
    __m512 p = _mm512_set1_ps(EXP5_P5);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP5_P4));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP5_P3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP5_P2));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP5_P1));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP5_P0));
    return _mm512_div_ps(v, _mm512_add_ps(_mm512_set1_ps(1.0f), _mm512_scalef_ps(p, k)));
}

/* y[i] = f(x[i] (+ z[i], rounded to float first)) for i < n (z may be NULL): f sigmoid, or
 * with silu v * sigmoid(alpha v) (silu_v16). */
static inline void sigmoid_v_rows(const float *x, const float *z, float *y, size_t n, bool silu, float alpha)
{
    size_t i = 0;
    const __m512 al = _mm512_set1_ps(alpha);
    for (; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        __m512 v = _mm512_maskz_loadu_ps(m, x + i);
        if (z) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, z + i));
        __m512 r = silu ? silu_v16(v, al) : sigmoid_v16(v);
        _mm512_mask_storeu_ps(y + i, m, r);
    }
}
#endif

#endif
