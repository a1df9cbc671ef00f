/* src/cpu/isa/convt.c: the 2-D col2im of ConvTranspose's oneDNN variant (contract in
 * cpu/convt_isa.h). Plain loops the compiler vectorizes at each level: the adds run over
 * contiguous input rows, the interleave of stride 1 and 2 (the common ones) has its own
 * loop. No contraction: only adds, in the reference's order. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O3", "no-trapping-math", "fp-contract=off")
#endif

#include <string.h>

#include "cpu/convt_isa.h"

static void add_row(float *restrict d, const float *restrict s, int64_t n)
{
    for (int64_t j = 0; j < n; j++) d[j] += s[j];
}

static void interleave(const struct kiln_convt_c2i *c, const float *P, float bv, float *y)
{
    int64_t sx = c->sx, OW = c->OW, len = c->len;
    for (int64_t oy = 0; oy < c->OH; oy++) {
        const float *pr = P + oy * sx * len - c->jmin;
        float *restrict yr = y + oy * OW;
        if (sx == 1) {
            for (int64_t j = 0; j < OW; j++) yr[j] = pr[j] + bv;
        } else if (sx == 2) {
            const float *restrict p0 = pr, *restrict p1 = pr + len;
            int64_t h = OW / 2;
            for (int64_t j = 0; j < h; j++) {
                yr[2 * j] = p0[j] + bv;
                yr[2 * j + 1] = p1[j] + bv;
            }
            if (OW & 1) yr[OW - 1] = p0[h] + bv;
        } else {
            for (int64_t ph = 0; ph < sx && ph < OW; ph++) {
                const float *p = pr + ph * len;
                int64_t n = (OW - ph + sx - 1) / sx;
                for (int64_t j = 0; j < n; j++) yr[ph + j * sx] = p[j] + bv;
            }
        }
    }
}

void KILN_ISA_FN(kiln_convt_col2im_2d_isa)(const struct kiln_convt_c2i *c, const float *col, size_t nc,
                                           const float *bias, float *P, float *y)
{
    size_t pn = (size_t)(c->OH * c->sx * c->len);
    int64_t rs = c->sx * c->len; /* P floats per output row */
    for (size_t ch = 0; ch < nc; ch++) {
        memset(P, 0, pn * sizeof *P);
        for (size_t kidx = 0; kidx < c->ks; kidx++) {
            const float *src = col + (ch * c->ks + kidx) * c->os;
            float *d = P + c->yoff[kidx] * rs + c->xat[kidx];
            for (int64_t iy = c->ylo[kidx]; iy < c->yhi[kidx]; iy++)
                add_row(d + iy * c->sy * rs, src + iy * c->IW, c->IW);
        }
        interleave(c, P, bias ? bias[ch] : 0.0f, y + ch * c->is);
    }
}
