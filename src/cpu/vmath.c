/* src/cpu/vmath.c: the vmath.h functions, dispatched to the active instruction-set level
 * (cpu/isa.h); the kernels are in src/cpu/isa/vmath.c. */
#include "cpu/vmath.h"

#include "cpu/isa.h"

void kiln_vexp_f32(const float *x, float *y, size_t n)
{
    KILN_ISA_DISPATCH(kiln_vexp_f32_isa, (x, y, n));
}

void kiln_verf_f32(const float *x, float *y, size_t n)
{
    KILN_ISA_DISPATCH(kiln_verf_f32_isa, (x, y, n));
}

void kiln_vtanh_f32(const float *x, float *y, size_t n)
{
    KILN_ISA_DISPATCH(kiln_vtanh_f32_isa, (x, y, n));
}

void kiln_vsigmoid_f32(const float *x, float *y, size_t n)
{
    KILN_ISA_DISPATCH(kiln_vsigmoid_f32_isa, (x, y, n));
}
