/* convt_isa.h: the 2-D col2im of ConvTranspose's oneDNN variant (src/cpu/ops/conv.c),
 * compiled per instruction set (src/cpu/isa/convt.c).
 *
 * kiln_convt_col2im_2d_isa: for channels c < nc, y[c] (an output plane of is = OH * OW
 * floats) = bias[c] (0 when bias is NULL) + the sum of the col rows that land on it: row
 * (c * ks + kidx) of col (os = IH * IW floats, one per input position) adds input row iy in
 * [ylo[kidx], yhi[kidx]) to output row iy * sy + yoff[kidx], input column ix at output column
 * ix * sx + xoff (xoff of kidx). The adds go into phase buffer P first (len floats per
 * (output row, phase) pair; column ox = j * sx + ph of row oy at P[(oy * sx + ph) * len + j -
 * jmin]; xat[kidx] = (phase of xoff) * len + floor(xoff / sx) - jmin is where input column 0
 * lands), contiguously, and one pass interleaves P's phases into y with the bias. Each
 * output element's sum is taken in kidx order, then the bias: the order of col2im followed
 * by the bias in the reference variant, so the results agree bit for bit. P holds OH * sx *
 * len floats of scratch; y and P do not overlap col.
 */
#ifndef KILN_CPU_CONVT_ISA_H
#define KILN_CPU_CONVT_ISA_H

#include <stddef.h>
#include <stdint.h>

#include "cpu/isa.h"

struct kiln_convt_c2i {
    size_t ks, os, is;             /* kernel positions, input positions, output plane */
    int64_t IW, OH, OW, sx, sy;    /* input width, output height and width, strides */
    int64_t len, jmin;             /* phase buffer rows */
    const int64_t *ylo, *yhi, *yoff, *xat; /* per kernel position (ks entries) */
};

KILN_ISA_DECLARE(void, kiln_convt_col2im_2d_isa,
                 (const struct kiln_convt_c2i *c, const float *col, size_t nc, const float *bias,
                  float *P, float *y));

#endif
