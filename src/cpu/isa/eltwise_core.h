/* src/cpu/isa/eltwise_core.h: scalar float32 element functions shared by the element-wise
 * loops (eltwise.c) and the fused activations (act.c) in src/cpu/isa/, so an op and the
 * activation that replaces it compute the same expression. Branch-free (selects, no calls),
 * so the loops around them vectorize. */
#ifndef KILN_CPU_ISA_ELTWISE_CORE_H
#define KILN_CPU_ISA_ELTWISE_CORE_H

#include "cpu/isa/vmath_core.h"

static inline float ew_clamp01(float t)
{
    return t < 0.0f ? 0.0f : t > 1.0f ? 1.0f : t;
}

/* NaN passes the compares (v < 0 is false), as numpy's reference does. */
static inline float ew_relu(float v) { return v < 0.0f ? 0.0f : v; }

static inline float ew_leakyrelu(float v, float alpha) { return v < 0.0f ? alpha * v : v; }

static inline float ew_clip(float v, float lo, float hi)
{
    float w = v < lo ? lo : v;
    return w > hi ? hi : w;
}

static inline float ew_hardsigmoid(float v, float alpha, float beta)
{
    return ew_clamp01(alpha * v + beta);
}

static inline float ew_hardswish(float v, float alpha, float beta)
{
    return v * ew_clamp01(alpha * v + beta);
}

static inline float ew_gelu(float v)
{
    return 0.5f * v * (1.0f + erf_core(v * 0.70710678118654752440f));
}

static inline float ew_gelu_tanh(float v)
{
    float t = tanh_core(0.79788456080286535588f * (v + 0.044715f * v * v * v));
    return 0.5f * v * (1.0f + t);
}

/* v * sigmoid(alpha v) (vmath_core.h's silu_core). */
static inline float ew_silu(float v, float alpha) { return silu_core(v, alpha); }

#endif
