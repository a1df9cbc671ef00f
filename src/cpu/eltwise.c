/* src/cpu/eltwise.c: the active-ISA entry points of cpu/eltwise.h. */
#include "cpu/eltwise.h"

void kiln_ew_unary_f32(enum kiln_ew_unary op, const float *x, float *y, size_t n, float alpha,
                       float beta)
{
    KILN_ISA_DISPATCH(kiln_ew_unary_f32_isa, ((int)op, x, y, n, alpha, beta));
}

void kiln_ew_binary_f32(enum kiln_ew_binary op, size_t rows, size_t n, const float *a,
                        size_t ra, size_t sa, const float *b, size_t rb, size_t sb, void *y)
{
    KILN_ISA_DISPATCH(kiln_ew_binary_f32_isa, ((int)op, rows, n, a, ra, sa, b, rb, sb, y));
}
