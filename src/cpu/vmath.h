/* src/cpu/vmath.h: float32 array versions of exp, erf, tanh and sigmoid that the compiler
 * vectorizes (branch-free polynomial code with no libm call in the loop), for the kernels
 * that apply them to whole tensors (Exp, Erf, Tanh, Sigmoid, Gelu, Softmax, LogSoftmax).
 *
 * Every function computes y[i] = f(x[i]) for i in [0, n). y may be x (in place); other
 * overlaps are not supported. n == 0 does nothing. Accuracy, measured against the double
 * libm result rounded to float by tests/unit/test_vmath.c:
 *
 *   kiln_vexp_f32      <= 2 ulp over all of float32, subnormal results included (they are
 *                      rounded once, not flushed). exp(x) = +inf for x > 88.7228394
 *                      (ln FLT_MAX, give or take the last ulp); 0 for x < -103.97 (below half
 *                      the smallest subnormal); exp(+-0) = 1, exp(-inf) = 0, exp(+inf) = +inf.
 *   kiln_verf_f32      absolute error <= 2e-7 (about 3 ulp of values near 1); erf(+-inf) = +-1,
 *                      erf(-0) = -0. Odd by construction.
 *   kiln_vtanh_f32     relative error <= 1e-6 (measured ~2.5e-7); tanh(+-inf) = +-1, odd,
 *                      tanh(-0) = -0.
 *   kiln_vsigmoid_f32  relative error <= 1e-6 where the result is a normal float (measured
 *                      ~4e-7), computed as 1/(1+e) or e/(1+e) with e = exp(-|x|) so neither
 *                      tail overflows or cancels; sigmoid(-inf) = 0, sigmoid(+inf) = 1.
 *
 * NaN in gives NaN out for all four (its payload and sign are not kept). The rounding mode
 * must be the default (to nearest); the exp range reduction relies on it.
 */
#ifndef KILN_CPU_VMATH_H
#define KILN_CPU_VMATH_H

#include <stddef.h>

#include "cpu/isa.h"

void kiln_vexp_f32(const float *x, float *y, size_t n);
void kiln_verf_f32(const float *x, float *y, size_t n);
void kiln_vtanh_f32(const float *x, float *y, size_t n);
void kiln_vsigmoid_f32(const float *x, float *y, size_t n);

/* The compiled variants (src/cpu/isa/vmath.c), for tests and for loops in src/cpu/isa/. */
KILN_ISA_DECLARE(void, kiln_vexp_f32_isa, (const float *x, float *y, size_t n));
KILN_ISA_DECLARE(void, kiln_verf_f32_isa, (const float *x, float *y, size_t n));
KILN_ISA_DECLARE(void, kiln_vtanh_f32_isa, (const float *x, float *y, size_t n));
KILN_ISA_DECLARE(void, kiln_vsigmoid_f32_isa, (const float *x, float *y, size_t n));

#endif
