/* src/cpu/isa/resize.c: the row loops of Resize's 4-D fast path (contract in resize_isa.h).
 * Plain loops, one per tap count, so that the compilers vectorize them (gathers for the
 * width taps on AVX2 / AVX-512).
 */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O3", "no-trapping-math")
#endif

#include "cpu/resize_isa.h"

void KILN_ISA_FN(kiln_resize_hrow_isa)(const float *src, float *dst, const int32_t *idx,
                                       const float *w, int nt, size_t n)
{
    if (nt == 1) {
        for (size_t j = 0; j < n; j++) dst[j] = w[j] * src[idx[j]];
    } else if (nt == 2) {
        for (size_t j = 0; j < n; j++)
            dst[j] = w[2 * j] * src[idx[2 * j]] + w[2 * j + 1] * src[idx[2 * j + 1]];
    } else {
        for (size_t j = 0; j < n; j++) {
            const int32_t *i = idx + 4 * j;
            const float *c = w + 4 * j;
            dst[j] = (c[0] * src[i[0]] + c[1] * src[i[1]]) + (c[2] * src[i[2]] + c[3] * src[i[3]]);
        }
    }
}

void KILN_ISA_FN(kiln_resize_vrow_isa)(float *dst, const float *const *rows, const float *w, int nt,
                                       size_t n)
{
    const float *r0 = rows[0], *r1 = rows[nt > 1 ? 1 : 0], *r2 = rows[nt > 2 ? 2 : 0],
                *r3 = rows[nt > 3 ? 3 : 0];
    const float w0 = w[0], w1 = nt > 1 ? w[1] : 0, w2 = nt > 2 ? w[2] : 0, w3 = nt > 3 ? w[3] : 0;
    if (nt == 1) {
        for (size_t j = 0; j < n; j++) dst[j] = w0 * r0[j];
    } else if (nt == 2) {
        for (size_t j = 0; j < n; j++) dst[j] = w0 * r0[j] + w1 * r1[j];
    } else if (nt == 3) {
        for (size_t j = 0; j < n; j++) dst[j] = w0 * r0[j] + w1 * r1[j] + w2 * r2[j];
    } else {
        for (size_t j = 0; j < n; j++) dst[j] = (w0 * r0[j] + w1 * r1[j]) + (w2 * r2[j] + w3 * r3[j]);
    }
}
