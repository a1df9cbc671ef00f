/* src/cpu/eltwise.h: the float32 element-wise loops of Unary/Binary ops at full vector width
 * (compiled per instruction-set level in src/cpu/isa/eltwise.c, cpu/isa.h).
 *
 * Each op computes exactly the expression its op's kernel always computed (src/cpu/ops/
 * unary.c, binary.c); the transcendental ones use the cores of cpu/vmath.h, with the
 * accuracy stated there. The AVX2 and AVX-512 copies may contract a*b+c into one FMA, which
 * can change the last bit against the portable copy and nothing more. Every element is
 * computed alone, so results do not depend on where a call starts or ends (thread blocks).
 *
 * y may be x (in place); other overlaps are not supported. n == 0 does nothing.
 */
#ifndef KILN_CPU_ELTWISE_H
#define KILN_CPU_ELTWISE_H

#include <stddef.h>
#include <stdint.h>

#include "cpu/isa.h"

/* Unary ops; alpha and beta as named (the ONNX attributes). */
enum kiln_ew_unary {
    KILN_EW_ABS,
    KILN_EW_NEG,
    KILN_EW_FLOOR,
    KILN_EW_CEIL,
    KILN_EW_ROUND,       /* half to even */
    KILN_EW_SQRT,
    KILN_EW_RECIPROCAL,
    KILN_EW_EXP,         /* kiln_vexp_f32 */
    KILN_EW_TANH,        /* kiln_vtanh_f32 */
    KILN_EW_SIGMOID,     /* kiln_vsigmoid_f32 */
    KILN_EW_ERF,         /* kiln_verf_f32 */
    KILN_EW_RELU,        /* v < 0 ? 0 : v */
    KILN_EW_LEAKYRELU,   /* v < 0 ? alpha v : v */
    KILN_EW_CLIP,        /* min(max(v, alpha), beta) */
    KILN_EW_HARDSIGMOID, /* clamp(alpha v + beta, 0, 1) */
    KILN_EW_HARDSWISH,   /* v clamp(alpha v + beta, 0, 1) */
    KILN_EW_GELU,        /* 0.5 v (1 + erf(v / sqrt 2)) */
    KILN_EW_GELU_TANH,   /* 0.5 v (1 + tanh(sqrt(2/pi) (v + 0.044715 v^3))) */
    KILN_EW_SILU,        /* v sigmoid(alpha v) */
    KILN_EW_SOFTSIGN,    /* v / (1 + |v|) */
    KILN_EW_THRESHOLDEDRELU, /* v > alpha ? v : 0 */
    KILN_EW_SHRINK,      /* v < -alpha ? v + beta : v > alpha ? v - beta : 0 */
    KILN_EW_SIGN,        /* 1, -1, or v itself (+-0, NaN) */
    KILN_EW_SQUARE,      /* v * v: Pow(x, 2) */
    KILN_EW_POW_HALF,    /* pow(v, 0.5): sqrt, but +0 for -0 and +inf for -inf as pow gives */
    KILN_EW_UNARY_COUNT
};

/* Binary ops (float32 out) and comparisons (bool out, one byte 0/1). */
enum kiln_ew_binary {
    KILN_EW_ADD,
    KILN_EW_SUB,
    KILN_EW_MUL,
    KILN_EW_DIV,
    KILN_EW_MAX,   /* NaN in either gives NaN (numpy maximum) */
    KILN_EW_MIN,
    KILN_EW_PRELU, /* a < 0 ? a b : a */
    KILN_EW_EQ,
    KILN_EW_LT,
    KILN_EW_GT,
    KILN_EW_LE,
    KILN_EW_GE,
    KILN_EW_BINARY_COUNT
};

static inline int kiln_ew_is_compare(enum kiln_ew_binary op) { return op >= KILN_EW_EQ; }

/* y[i] = op(x[i]) for i < n. */
void kiln_ew_unary_f32(enum kiln_ew_unary op, const float *x, float *y, size_t n, float alpha,
                       float beta);

/* A 2-D tile of a broadcast walk: for r < rows and i < n,
 *     y[r*n + i] = op(a[r*ra + i*sa], b[r*rb + i*sb])
 * with sa, sb 0 or 1 (input broadcast along the row or not) and ra, rb the element strides
 * between rows (0 when broadcast along them). y is float for arithmetic ops and uint8_t
 * (0/1) for comparisons. y may be a or b when that input has the output's layout
 * (stride 1, row stride n). */
void kiln_ew_binary_f32(enum kiln_ew_binary op, size_t rows, size_t n, const float *a,
                        size_t ra, size_t sa, const float *b, size_t rb, size_t sb, void *y);

/* The compiled variants (src/cpu/isa/eltwise.c), for tests. */
KILN_ISA_DECLARE(void, kiln_ew_unary_f32_isa,
                 (int op, const float *x, float *y, size_t n, float alpha, float beta));
KILN_ISA_DECLARE(void, kiln_ew_binary_f32_isa,
                 (int op, size_t rows, size_t n, const float *a, size_t ra, size_t sa,
                  const float *b, size_t rb, size_t sb, void *y));

#endif
