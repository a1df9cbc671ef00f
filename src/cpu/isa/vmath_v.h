/* src/cpu/isa/vmath_v.h: explicit AVX-512 forms of the element functions whose scalar
 * versions (vmath_core.h, eltwise_core.h) the compiler vectorizes less well, sixteen floats
 * at a time. Each is the only version at AVX-512 of the ops that use it, so that an op, its
 * fused activation and vmath.h's array function give the same bits.
 *
 * GELU (approximate "none": 0.5 x (1 + erf(x / sqrt 2))), for the Gelu op (eltwise.c) and the
 * fused activation (act.c), as x (0.5 + sign(x) q(|x|)) with q(a) = 0.5 erf(a / sqrt 2), q from
 * a table of polynomials instead of vmath_core.h's erf_core, which evaluates both of its
 * branches (a polynomial, and 1 - exp of another) in every lane: for a = |x| below 15 w
 * (w = 25/64), q(k w + u) ~ sum_d C[d][k] u^d of degree 5 about the nearest centre k w
 * (k = round(a / w), |u| <= w / 2), the coefficients picked per lane with vpermps from
 * sixteen-entry rows whose last entry is the constant 0.5 that q rounds to from a = 5.63 on
 * (a is clamped to 15 w, so every larger |x| takes it). The coefficients are least-squares
 * fits in double (scripts/fit_gelu.py prints the table). Evaluated in float (Horner, one FMA
 * a degree) GELU's error is at most 1.4e-7 (1 + |gelu(x)|) over [-10, 10] (float64
 * reference), as the former table over t = |x| / sqrt 2 (16 intervals of degree 6, picked by
 * truncation, then 0.5 x (1 + erf)), which took 9 more vector operations an element and ran
 * about 25% slower (0.62 against 0.50 ns an element, one Zen 4 core, a buffer in L1; erf_core
 * took 0.86 there at another time). The sign is multiplied in, not added: gelu(-0) is -0, and
 * a large negative x gives -0 as the formula does; NaN stays NaN (x multiplies the result),
 * +inf gives +inf and -inf NaN as erf_core's formula does (-inf * 0).
 */
#ifndef KILN_CPU_ISA_VMATH_V_H
#define KILN_CPU_ISA_VMATH_V_H

#if defined(__AVX512F__)
#include <immintrin.h>
#include <stdbool.h>
#include <stddef.h>

#include "cpu/isa/vmath_core.h"

static const float gelu_q_c[6][16] __attribute__((aligned(64))) = {
    {0.000000000e+00f, 1.519627720e-01f, 2.826722562e-01f, 3.793763816e-01f, 4.409148693e-01f,
     4.745976031e-01f, 4.904545248e-01f, 4.968750477e-01f, 4.991109669e-01f, 4.997806251e-01f,
     4.999531209e-01f, 4.999913275e-01f, 4.999986291e-01f, 4.999998212e-01f, 4.999999702e-01f,
     5.000000000e-01f},
    {3.989422619e-01f, 3.696374893e-01f, 2.940180004e-01f, 2.007722706e-01f, 1.176970154e-01f,
     5.923236534e-02f, 2.559084259e-02f, 9.491656907e-03f, 3.022257471e-03f, 8.261387702e-04f,
     1.938683272e-04f, 3.905650374e-05f, 6.754806236e-06f, 1.002919589e-06f, 1.278361736e-07f,
     0.000000000e+00f},
    {0.000000000e+00f, -7.219136506e-02f, -1.148469970e-01f, -1.176386699e-01f, -9.195190668e-02f,
     -5.784587190e-02f, -2.999031916e-02f, -1.297706179e-02f, -4.722066689e-03f, -1.451967983e-03f,
     -3.785191220e-04f, -8.385825640e-05f, -1.581546167e-05f, -2.542508355e-06f, -3.487578510e-07f,
     0.000000000e+00f},
    {-6.648802012e-02f, -5.220464244e-02f, -1.909476146e-02f, 1.248940919e-02f, 2.827393450e-02f,
     2.778700180e-02f, 1.916453056e-02f, 1.024631318e-02f, 4.415421281e-03f, 1.564058824e-03f,
     4.606643051e-04f, 1.136432256e-04f, 2.359905193e-05f, 4.139845714e-06f, 6.151180401e-07f,
     0.000000000e+00f},
    {0.000000000e+00f, 1.693769358e-02f, 2.265993319e-02f, 1.587316580e-02f, 4.342836794e-03f,
     -3.828514135e-03f, -6.172366906e-03f, -4.831051920e-03f, -2.674256684e-03f, -1.145417569e-03f,
     -3.940165625e-04f, -1.110072990e-04f, -2.591647717e-05f, -5.052775577e-06f, -8.270695844e-07f,
     0.000000000e+00f},
    {9.874721989e-03f, 6.440709345e-03f, -6.751343608e-04f, -5.541307386e-03f, -5.539753009e-03f,
     -2.639827086e-03f, 2.293411671e-05f, 1.095053391e-03f, 9.979259921e-04f, 5.636534770e-04f,
     2.354407188e-04f, 7.716732216e-05f, 2.041412517e-05f, 4.429515684e-06f, 7.964157476e-07f,
     0.000000000e+00f},
};

static inline __m512 gelu_v16(__m512 x)
{
    const __m512 sign = _mm512_set1_ps(-0.0f);
    /* NaN gives 15 w (min returns its second operand): x keeps the NaN */
    __m512 a = _mm512_min_ps(_mm512_andnot_ps(sign, x), _mm512_set1_ps(15.0f * 0.390625f));
    __m512 kf = _mm512_roundscale_ps(_mm512_mul_ps(a, _mm512_set1_ps(2.56f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512i idx = _mm512_cvtps_epi32(kf);
    __m512 u = _mm512_fnmadd_ps(kf, _mm512_set1_ps(0.390625f), a);
    __m512 p = _mm512_permutexvar_ps(idx, _mm512_load_ps(gelu_q_c[5]));
    for (int d = 4; d >= 0; d--)
        p = _mm512_fmadd_ps(p, u, _mm512_permutexvar_ps(idx, _mm512_load_ps(gelu_q_c[d])));
    /* p | (x & sign): q(|x|) with x's sign */
    __m512 ps = _mm512_castsi512_ps(_mm512_ternarylogic_epi32(_mm512_castps_si512(p), _mm512_castps_si512(x),
                                                              _mm512_castps_si512(sign), 0xF8));
    return _mm512_mul_ps(x, _mm512_add_ps(_mm512_set1_ps(0.5f), ps));
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

/* exp(a) for a in [EXP_LO, 0] (NaN stays NaN): vmath_core.h's exp_core on the same reduced
 * argument and polynomial, with 2^k applied by vscalefps in one rounding instead of two
 * multiplies by built powers of two (the same float except where the result is subnormal,
 * a < -87.3) and the rounding to k by vrndscaleps. For sigmoid_v16 and the attention
 * softmax's rows (isa/attention.c). */
static inline __m512 exp_nonpos_v16(__m512 a)
{
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
    return _mm512_scalef_ps(p, k);
}

/* Sigmoid, for the Sigmoid op, the fused Sigmoid and SiLU (x * sigmoid(alpha x)) and
 * kiln_vsigmoid_f32: vmath_core.h's sigmoid_core (n / (1 + e), e = exp(-|x|), n = 1 for
 * x >= 0 and e otherwise), e from exp_nonpos_v16 (the same float as sigmoid_core's except
 * where e is subnormal, x < -87.3, where sigmoid is e itself to within 1e-38). Zen 4, one
 * core, in L1: 0.43 ns an element as the compiler vectorized sigmoid_core, 0.31 like this.
 * NaN stays NaN. */
static inline __m512 sigmoid_v16(__m512 x)
{
    const __m512 sign = _mm512_set1_ps(-0.0f);
    __m512 a = _mm512_max_ps(_mm512_set1_ps(EXP_LO), _mm512_or_ps(x, sign)); /* -|x|; NaN stays */
    __m512 e = exp_nonpos_v16(a);
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
