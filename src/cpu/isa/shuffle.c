/* src/cpu/isa/shuffle.c: the two-way interleave of the channel shuffle ops (contract in
 * cpu/shuffle_isa.h). A plain loop the compiler vectorizes per level (unpack / permute). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O3")
#endif

#include "cpu/shuffle_isa.h"

void KILN_ISA_FN(kiln_interleave2_u32_isa)(unsigned *restrict y, const unsigned *restrict a,
                                           const unsigned *restrict b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        y[2 * i] = a[i];
        y[2 * i + 1] = b[i];
    }
}
