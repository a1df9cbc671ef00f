/* src/cpu/isa/vmath.c: vectorizable float32 exp, erf, tanh and sigmoid (contract in vmath.h).
 *
 * Each array function is one plain loop over an inline scalar kernel with no branches and no
 * calls: selects are conditional expressions, bit casts are 4-byte memcpy, integer work is
 * uint32_t, so gcc and clang turn the loop into SIMD code on whatever ISA the build targets
 * (SSE2 on baseline x86-64: no FMA and no roundps, hence the round-to-nearest trick below).
 *
 * exp(x): clamp x to [-104, 89] (NaN passes the compares and stays NaN); k = nearest
 * integer to x/ln2, found by adding and subtracting 1.5*2^23; r = x - k*ln2 with ln2 split
 * Cody-Waite style into C1 (9 significant bits, so k*C1 is exact) and C2; exp(r) on
 * |r| <= ln2/2 is 1 + r + r^2*P(r), P of degree 5 (Cephes expf's minimax coefficients);
 * the result is scaled by 2^k as two factors 2^k1 * 2^k2 (k1 = floor(k/2)), both normal
 * floats for every k in [-151, 129], so huge results overflow to +inf and tiny ones round
 * once into the subnormals or to 0, with no separate cases.
 *
 * erf(x) = sign(x) * E(|x|). For t = |x| <= 0.9277: E = t * G(t^2), G of degree 6.
 * Above it: E = 1 - exp(Q(t)), Q(t) ~ log(erfc(t)) of degree 8 in t - 2.4375, for t up to
 * 3.93 (clamped there: erfc(3.93) < 2^-25, so E rounds to 1, as it does for all larger t).
 *
 * tanh(x) = sign(x) * T(|x|). For t = |x| < 0.5625: T = t + t*s*H(s), s = t^2, H of
 * degree 4. Above it: T = (1 - e) / (1 + e) with e = exp(-2t) <= 0.325, no cancellation.
 *
 * sigmoid(x) = n / (1 + e), e = exp(-|x|), n = 1 for x >= 0 and e otherwise.
 *
 * The G, Q and H coefficients are Chebyshev interpolants (near-minimax) fitted in long
 * double to erf(t)/t, log(erfc(t)) and (tanh(t)/t - 1)/t^2; fit errors 5e-10, 1.5e-8 and
 * 1.6e-8, well below the float rounding of the evaluation.
 */
#if defined(__GNUC__) && !defined(__clang__)
/* gcc 12's -O2 vectorizes only loops that need no runtime alias check and no epilogue;
 * these loops need both (y may be x), so ask for -O3 here as sgemm.c does. Under the default
 * -ftrapping-math gcc keeps the float selects (x < lo ? lo : x) as branches, which stops
 * vectorization; the values do not depend on it (only which FP exception flags get raised,
 * which kiln never reads), so turn it off for this file. clang vectorizes without either. */
#pragma GCC optimize("O3", "no-trapping-math")
#endif

#include "cpu/isa.h"
#include "cpu/vmath.h"
#include "cpu/isa/vmath_core.h"
#include "cpu/isa/vmath_v.h"

void KILN_ISA_FN(kiln_vexp_f32_isa)(const float *x, float *y, size_t n)
{
    for (size_t i = 0; i < n; i++) y[i] = exp_core(x[i]);
}

void KILN_ISA_FN(kiln_verf_f32_isa)(const float *x, float *y, size_t n)
{
    for (size_t i = 0; i < n; i++) y[i] = erf_core(x[i]);
}

void KILN_ISA_FN(kiln_vtanh_f32_isa)(const float *x, float *y, size_t n)
{
    for (size_t i = 0; i < n; i++) y[i] = tanh_core(x[i]);
}

void KILN_ISA_FN(kiln_vsigmoid_f32_isa)(const float *x, float *y, size_t n)
{
#if defined(__AVX512F__)
    sigmoid_v_rows(x, NULL, y, n, false, 0.0f); /* the Sigmoid op's bits (vmath_v.h) */
#else
    for (size_t i = 0; i < n; i++) y[i] = sigmoid_core(x[i]);
#endif
}
