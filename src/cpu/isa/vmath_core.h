/* src/cpu/isa/vmath_core.h: the scalar float32 exp, erf, tanh and sigmoid kernels behind
 * cpu/vmath.h, as static inline functions for the loops in src/cpu/isa/ (each compiled per
 * instruction-set level, cpu/isa.h), which vectorize them. How they work and how accurate
 * they are: src/cpu/isa/vmath.c and cpu/vmath.h. */
#ifndef KILN_CPU_ISA_VMATH_CORE_H
#define KILN_CPU_ISA_VMATH_CORE_H

#include <stdint.h>
#include <string.h>

static inline uint32_t f2u(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float u2f(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

#define SIGN_BIT 0x80000000u

/* ------------------------------------------------------------------ exp */

#define EXP_HI 89.0f    /* above ln FLT_MAX = 88.7228: the result overflows anyway */
#define EXP_LO -104.0f  /* below ln 2^-150 = -103.972: the result rounds to 0 anyway */
#define EXP_LOG2E 1.44269504088896341f
#define EXP_C1 0.693359375f     /* 0x3f318000: ln2 to 9 bits */
#define EXP_C2 -2.12194440e-4f  /* ln2 - C1 */
#define ROUND_MAGIC 12582912.0f /* 1.5 * 2^23: adding it rounds |v| < 2^22 to an integer */

static inline float exp_core(float x)
{
    float xc = x < EXP_LO ? EXP_LO : x; /* NaN fails both compares and stays NaN */
    xc = xc > EXP_HI ? EXP_HI : xc;
    float t = xc * EXP_LOG2E + ROUND_MAGIC;
    float kf = t - ROUND_MAGIC;                   /* nearest integer to xc / ln2 */
    uint32_t k = f2u(t) - f2u(ROUND_MAGIC);       /* the same integer, mod 2^32 */
    float r = (xc - kf * EXP_C1) - kf * EXP_C2;   /* |r| <= ln2/2 (+ a little) */
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = (p * (r * r) + r) + 1.0f;
    /* k in [-151, 129]: k1 = floor(k / 2) and k2 = k - k1 both lie in [-76, 65]. */
    uint32_t k1 = ((k + 256u) >> 1) - 128u;
    uint32_t k2 = k - k1;
    float s1 = u2f((k1 + 127u) << 23);
    float s2 = u2f((k2 + 127u) << 23);
    return (p * s1) * s2;
}

/* exp(r) on exp_core's reduced argument (|r| <= ln2/2 and a little), degree 5 in Horner
 * form, for SiLU (silu_core, and vmath_v.h's silu_v16 at AVX-512): float coefficients of a
 * relative least-squares fit of exp on 400 Chebyshev nodes of [-0.3466, 0.3466]; relative
 * error at most 2.0e-7 there, against about 1e-7 for exp_core's degree 7, at two multiply-adds
 * fewer. */
#define EXP5_P5 8.291710168e-03f
#define EXP5_P4 4.191506654e-02f
#define EXP5_P3 1.666766256e-01f
#define EXP5_P2 4.999889731e-01f
#define EXP5_P1 9.999996424e-01f
#define EXP5_P0 1.000000119e+00f

/* SiLU, v * sigmoid(alpha v), as v / (1 + e) with e = exp(-alpha v) (exp_core's reduction, the
 * degree-5 polynomial above): one division and no |x| split or select as sigmoid_core has,
 * relative error about 2.5e-7. -alpha v is clamped to [EXP_LO, EXP_HI]: below, e rounds to 0
 * and the result is v (+inf stays +inf); from ln FLT_MAX = 88.72 up e is +inf and the result
 * -0, where the exact value is at most 3e-37 in magnitude; -inf gives NaN as v * sigmoid(v)
 * does (-inf * 0); NaN stays NaN. */
static inline float silu_core(float v, float alpha)
{
    float a = -(alpha * v);
    a = a < EXP_LO ? EXP_LO : a; /* NaN fails both compares and stays NaN */
    a = a > EXP_HI ? EXP_HI : a;
    float t = a * EXP_LOG2E + ROUND_MAGIC;
    float kf = t - ROUND_MAGIC;
    uint32_t k = f2u(t) - f2u(ROUND_MAGIC);
    float r = (a - kf * EXP_C1) - kf * EXP_C2;
    float p = EXP5_P5;
    p = p * r + EXP5_P4;
    p = p * r + EXP5_P3;
    p = p * r + EXP5_P2;
    p = p * r + EXP5_P1;
    p = p * r + EXP5_P0;
    uint32_t k1 = ((k + 256u) >> 1) - 128u; /* as exp_core: 2^k in two factors */
    uint32_t k2 = k - k1;
    float e = (p * u2f((k1 + 127u) << 23)) * u2f((k2 + 127u) << 23);
    return v / (1.0f + e);
}

/* ------------------------------------------------------------------ erf */

#define ERF_SPLIT 0.9277f
#define ERF_CLAMP 3.93f
#define ERF_CENTER 2.4375f /* exact */

static inline float erf_core(float x)
{
    uint32_t sign = f2u(x) & SIGN_BIT;
    float t = u2f(f2u(x) & ~SIGN_BIT);
    /* t <= 0.9277: t * G(t^2) */
    float s = t * t;
    float g = 8.349695778e-05f;
    g = g * s + -8.138270469e-04f;
    g = g * s + 5.200683626e-03f;
    g = g * s + -2.685927872e-02f;
    g = g * s + 1.128369382e-01f;
    g = g * s + -3.761263367e-01f;
    g = g * s + 1.128379167e+00f;
    float small = t * g;
    /* t > 0.9277: 1 - exp(Q(t)) */
    float tc = t > ERF_CLAMP ? ERF_CLAMP : t;
    float w = tc - ERF_CENTER;
    float q = 1.666957601e-06f;
    q = q * w + -1.410446894e-05f;
    q = q * w + 8.316381858e-05f;
    q = q * w + -4.503197140e-04f;
    q = q * w + 2.301416555e-03f;
    q = q * w + -1.141657137e-02f;
    q = q * w + -9.418060120e-01f;
    q = q * w + -5.234823377e+00f;
    q = q * w + -7.475957126e+00f;
    float big = 1.0f - exp_core(q);
    float e = t <= ERF_SPLIT ? small : big; /* NaN takes the big path, which keeps it NaN */
    return u2f(f2u(e) | sign);
}

/* ------------------------------------------------------------------ tanh */

#define TANH_SPLIT 0.5625f

static inline float tanh_core(float x)
{
    uint32_t sign = f2u(x) & SIGN_BIT;
    float t = u2f(f2u(x) & ~SIGN_BIT);
    float s = t * t;
    float h = -6.525572169e-03f;
    h = h * s + 2.126335345e-02f;
    h = h * s + -5.390175316e-02f;
    h = h * s + 1.333307381e-01f;
    h = h * s + -3.333333170e-01f;
    float small = t + t * (s * h);
    float e = exp_core(-2.0f * t); /* in [0, 1]; +inf gives 0 and so 1 below */
    float big = (1.0f - e) / (1.0f + e);
    float r = t < TANH_SPLIT ? small : big; /* NaN takes the big path and stays NaN */
    return u2f(f2u(r) | sign);
}

/* ------------------------------------------------------------------ sigmoid */

static inline float sigmoid_core(float x)
{
    float e = exp_core(u2f(f2u(x) | SIGN_BIT)); /* exp(-|x|) in [0, 1], NaN for NaN */
    float num = x >= 0.0f ? 1.0f : e;
    return num / (1.0f + e);
}

#endif
