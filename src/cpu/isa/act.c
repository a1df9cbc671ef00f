/* src/cpu/isa/act.c: the fused ops' activation epilogue y = act(x + z) (cpu/act.h) in one
 * pass, one vectorizable loop per activation (and per residual present or not), with the
 * element functions the Unary ops use (eltwise_core.h). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O3", "no-trapping-math") /* why: src/cpu/isa/vmath.c */
#endif

#include "cpu/act.h"
#include "cpu/isa.h"
#include "cpu/isa/eltwise_core.h"
#include "cpu/isa/vmath_v.h"

/* The residual sum is rounded to float (v) before the activation, as Add then the op. */
#define ACT_LOOP(E)                                                                            \
    if (z) {                                                                                   \
        for (size_t i = 0; i < n; i++) {                                                       \
            const float v = x[i] + z[i];                                                       \
            y[i] = (E);                                                                        \
        }                                                                                      \
    } else {                                                                                   \
        for (size_t i = 0; i < n; i++) {                                                       \
            const float v = x[i];                                                              \
            y[i] = (E);                                                                        \
        }                                                                                      \
    }                                                                                          \
    break

void KILN_ISA_FN(kiln_act_apply_f32_isa)(const struct kiln_act *a, const float *x,
                                         const float *z, float *y, size_t n)
{
    const float A = a->a, B = a->b;
    switch (a->kind) {
    case KILN_ACT_NONE: ACT_LOOP(v);
    case KILN_ACT_RELU: ACT_LOOP(ew_relu(v));
    case KILN_ACT_CLIP: ACT_LOOP(ew_clip(v, A, B));
    case KILN_ACT_LEAKYRELU: ACT_LOOP(ew_leakyrelu(v, A));
#if defined(__AVX512F__)
    case KILN_ACT_SIGMOID: sigmoid_v_rows(x, z, y, n, false, 0.0f); break; /* vmath_v.h */
#else
    case KILN_ACT_SIGMOID: ACT_LOOP(sigmoid_core(v));
#endif
    case KILN_ACT_TANH: ACT_LOOP(tanh_core(v));
    case KILN_ACT_HARDSIGMOID: ACT_LOOP(ew_hardsigmoid(v, A, B));
    case KILN_ACT_HARDSWISH: ACT_LOOP(ew_hardswish(v, (float)(1.0 / 6.0), 0.5f));
#if defined(__AVX512F__)
    case KILN_ACT_SILU: sigmoid_v_rows(x, z, y, n, true, A); break;
#else
    case KILN_ACT_SILU: ACT_LOOP(ew_silu(v, A));
#endif
#if defined(__AVX512F__)
    case KILN_ACT_GELU: gelu_v_rows(x, z, y, n); break; /* the Gelu op's bits (vmath_v.h) */
#else
    case KILN_ACT_GELU: ACT_LOOP(ew_gelu(v));
#endif
    case KILN_ACT_GELU_TANH: ACT_LOOP(ew_gelu_tanh(v));
    }
}
