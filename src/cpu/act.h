/* src/cpu/act.h: the activation functions kiln's fused ops (src/cpu/ops/fused.c) apply after
 * a Conv, Gemm or MatMul, and the float32 GELU loops that Gelu (unary.c) shares with them.
 *
 * An activation is named as the ONNX op it replaces, with that op's attributes as
 * parameters, and computes exactly what that op's float32 kernel computes (same expression,
 * same vmath kernel), so a fused graph gives the same floats as the unfused one:
 *
 *   ""           none (identity)
 *   Relu         v < 0 ? 0 : v (NaN passes)
 *   Clip         params (min, max), defaults -inf / +inf; min(max(v, min), max) as Clip-11+
 *   LeakyRelu    params (alpha = 0.01): v < 0 ? alpha * v : v
 *   Sigmoid      kiln_vsigmoid_f32
 *   Tanh         kiln_vtanh_f32
 *   HardSigmoid  params (alpha = 0.2, beta = 0.5): clamp(alpha * v + beta, 0, 1)
 *   HardSwish    v * clamp(v / 6 + 1/2, 0, 1)
 *   SiLU, Swish  v * sigmoid(alpha * v) with params (alpha = 1): for alpha 1 this is
 *                Mul(x, Sigmoid(x)) (the sigmoid from kiln_vsigmoid_f32)
 *   Gelu         0.5 v (1 + erf(v / sqrt 2)); with approximate "tanh"
 *                0.5 v (1 + tanh(sqrt(2/pi) (v + 0.044715 v^3)))
 */
#ifndef KILN_CPU_ACT_H
#define KILN_CPU_ACT_H

#include <stdbool.h>
#include <stddef.h>

#include "base/pool.h"
#include "cpu/isa.h"

enum kiln_act_kind {
    KILN_ACT_NONE,
    KILN_ACT_RELU,
    KILN_ACT_CLIP,
    KILN_ACT_LEAKYRELU,
    KILN_ACT_SIGMOID,
    KILN_ACT_TANH,
    KILN_ACT_HARDSIGMOID,
    KILN_ACT_HARDSWISH,
    KILN_ACT_SILU,
    KILN_ACT_GELU,
    KILN_ACT_GELU_TANH,
};

struct kiln_act {
    enum kiln_act_kind kind;
    float a, b; /* Clip: min, max; LeakyRelu/SiLU: alpha; HardSigmoid: alpha, beta */
};

/* Parses activation `name` with parameters p[0..np) (missing ones take the defaults above)
 * and, for Gelu, `approximate` ("none" or "tanh"; NULL is "none"). Returns false for an
 * unknown name, too many parameters or an unknown approximation. */
bool kiln_act_parse(const char *name, const float *p, size_t np, const char *approximate,
                    struct kiln_act *out);

/* y[i] = act(x[i] + (z ? z[i] : 0)) for i in [0, n). y may be x (in place); z may be NULL.
 * The residual sum is rounded to float before the activation, as Add then the op would.
 * One pass at this CPU's vector width (src/cpu/isa/act.c, cpu/isa.h); the AVX2/AVX-512
 * copies may contract a*b+c into an FMA, which changes at most the last bit. */
void kiln_act_apply_f32(const struct kiln_act *a, const float *x, const float *z, float *y,
                        size_t n);

/* kiln_act_apply_f32 split over the pool's threads in fixed blocks (results do not depend on
 * the thread count). pool may be NULL. */
void kiln_act_apply_par(struct kiln_pool *pool, const struct kiln_act *a, const float *x,
                        const float *z, float *y, size_t n);

/* The float32 GELU loops: y[i] = gelu(x[i]), erf form and tanh form; y may be x. */
void kiln_gelu_f32(const float *x, float *y, size_t n);
void kiln_gelu_tanh_f32(const float *x, float *y, size_t n);

/* The compiled variants of kiln_act_apply_f32 (src/cpu/isa/act.c), for tests. The copy
 * (kind none, no z) is included: y = x. */
KILN_ISA_DECLARE(void, kiln_act_apply_f32_isa,
                 (const struct kiln_act *a, const float *x, const float *z, float *y, size_t n));

#endif
