/* src/cpu/isa/convt.c: the channels-last col2im of ConvTranspose's oneDNN variant (contract
 * in cpu/convt_isa.h). The adds run over the nm contiguous channels of one (input position,
 * kernel position) pair, which the compiler vectorizes at each level; only adds, no
 * contraction. Fewer than CONVT_FEW channels add straight into the planes, preset to the
 * bias (the bias then comes first in each sum). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O3", "no-trapping-math", "fp-contract=off")
#endif

#include <string.h>

#include "cpu/convt_isa.h"

static void add_vec(float *restrict d, const float *restrict s, size_t n)
{
    for (size_t j = 0; j < n; j++) d[j] += s[j];
}

/* Few channels (nm < CONVT_FEW): the vectors are too short to pay for the buffer and its
 * transpose; the planes start at the bias and take each add directly. */
#define CONVT_FEW 8

static void col2im_few(const struct kiln_convt_cl *c, const float *col, const float *bias, float *y)
{
    size_t nm = c->nm, is = c->is;
    for (size_t m = 0; m < nm; m++) {
        float bv = bias ? bias[m] : 0.0f;
        for (size_t o = 0; o < is; o++) y[m * is + o] = bv;
    }
    const float *src = col;
    for (int64_t iz = 0; iz < c->in[0]; iz++)
        for (int64_t iy = 0; iy < c->in[1]; iy++)
            for (int64_t ix = 0; ix < c->in[2]; ix++) {
                for (int64_t kz = 0; kz < c->k[0]; kz++) {
                    int64_t oz = iz * c->s[0] - c->pb[0] + kz * c->d[0];
                    if (oz < 0 || oz >= c->out[0]) continue;
                    for (int64_t ky = 0; ky < c->k[1]; ky++) {
                        int64_t oy = iy * c->s[1] - c->pb[1] + ky * c->d[1];
                        if (oy < 0 || oy >= c->out[1]) continue;
                        const float *sk = src + (size_t)((kz * c->k[1] + ky) * c->k[2]) * nm;
                        float *yrow = y + (size_t)((oz * c->out[1] + oy) * c->out[2]);
                        for (int64_t kx = 0; kx < c->k[2]; kx++) {
                            int64_t ox = ix * c->s[2] - c->pb[2] + kx * c->d[2];
                            if (ox < 0 || ox >= c->out[2]) continue;
                            const float *sv = sk + (size_t)kx * nm;
                            for (size_t m = 0; m < nm; m++) yrow[m * is + (size_t)ox] += sv[m];
                        }
                    }
                }
                src += c->ks * nm;
            }
}

void KILN_ISA_FN(kiln_convt_col2im_cl_isa)(const struct kiln_convt_cl *c, const float *col,
                                           const float *bias, float *P, float *y)
{
    size_t nm = c->nm;
    if (nm < CONVT_FEW) {
        col2im_few(c, col, bias, y);
        return;
    }
    memset(P, 0, c->is * nm * sizeof *P);
    const float *src = col;
    for (int64_t iz = 0; iz < c->in[0]; iz++)
        for (int64_t iy = 0; iy < c->in[1]; iy++)
            for (int64_t ix = 0; ix < c->in[2]; ix++) {
                for (int64_t kz = 0; kz < c->k[0]; kz++) {
                    int64_t oz = iz * c->s[0] - c->pb[0] + kz * c->d[0];
                    if (oz < 0 || oz >= c->out[0]) continue;
                    for (int64_t ky = 0; ky < c->k[1]; ky++) {
                        int64_t oy = iy * c->s[1] - c->pb[1] + ky * c->d[1];
                        if (oy < 0 || oy >= c->out[1]) continue;
                        const float *sk = src + (size_t)((kz * c->k[1] + ky) * c->k[2]) * nm;
                        float *prow = P + (size_t)((oz * c->out[1] + oy) * c->out[2]) * nm;
                        for (int64_t kx = 0; kx < c->k[2]; kx++) {
                            int64_t ox = ix * c->s[2] - c->pb[2] + kx * c->d[2];
                            if (ox < 0 || ox >= c->out[2]) continue;
                            add_vec(prow + (size_t)ox * nm, sk + (size_t)kx * nm, nm);
                        }
                    }
                }
                src += c->ks * nm;
            }
    /* P [is][nm] -> y [nm][is] in 16 x 16 tiles: whole cache lines read and written. */
    for (size_t o0 = 0; o0 < c->is; o0 += 16) {
        size_t o1 = o0 + 16 < c->is ? o0 + 16 : c->is;
        for (size_t m0 = 0; m0 < nm; m0 += 16) {
            size_t m1 = m0 + 16 < nm ? m0 + 16 : nm;
            for (size_t m = m0; m < m1; m++) {
                float bv = bias ? bias[m] : 0.0f, *restrict yp = y + m * c->is;
                const float *pp = P + m;
                for (size_t o = o0; o < o1; o++) yp[o] = pp[o * nm] + bv;
            }
        }
    }
}
