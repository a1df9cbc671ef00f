/* pool_geom.h: the window geometry of MaxPool / AveragePool / LpPool, shared by the NCHW
 * pools (src/cpu/ops/pool.c, which defines these) and kiln's channels-last pools
 * (src/cpu/ops/pool_nhwc.c), so both derive the same output sizes, pads and taps.
 *
 * Output position o along a spatial dim covers input positions o*s - pb + j*d for j < k;
 * pool.c's header comment states the output-size rules (auto_pad, ceil_mode).
 */
#ifndef KILN_CPU_POOL_GEOM_H
#define KILN_CPU_POOL_GEOM_H

#include "cpu/kernel.h"

/* Derived geometry over nd spatial dims: sizes in, out, kernel k, strides s, dilations d,
 * begin / end pads pb, pe; is, os, ks: the products of in, out and k. */
struct pool_geom {
    int nd;
    int64_t in[KILN_MAX_RANK], out[KILN_MAX_RANK], k[KILN_MAX_RANK];
    int64_t s[KILN_MAX_RANK], d[KILN_MAX_RANK], pb[KILN_MAX_RANK], pe[KILN_MAX_RANK];
    size_t is, os, ks;
};

enum pool_pad { POOL_PAD_NOTSET, POOL_PAD_SAME_UPPER, POOL_PAD_SAME_LOWER, POOL_PAD_VALID };

/* The window attributes of a pool node, decoded once by prepare. The lists are borrowed
 * from the node (which outlives the state); n_*: their lengths (0: absent), checked against
 * X's rank by kiln_pool_geom. */
struct pool_attrs {
    size_t n_k, n_s, n_d, n_p;
    const int64_t *k, *s, *d, *p;
    bool ceil_mode;
    enum pool_pad pad;
};

/* Decodes kernel_shape, strides, dilations, pads, ceil_mode and auto_pad; fails only on an
 * auto_pad that is not one of the four. */
KILN_NODISCARD kiln_status kiln_pool_decode_window(struct kiln_kctx *k, struct pool_attrs *a);
/* Checks a against an X of rank `rank` laid out [N, C, spatial...] (dims: its dims in that
 * order) and derives g; a clear error for wrong list lengths, values < 1 (pads < 0) or a
 * window larger than the padded input. */
KILN_NODISCARD kiln_status kiln_pool_geom(struct kiln_kctx *k, const struct pool_attrs *a, int rank,
                                          const int64_t *dims, struct pool_geom *g);
/* Along spatial dim `dim`, the taps j in [*lo, *hi) of output o's window fall inside the
 * input; *cnt is how many fall inside input + pads (AveragePool's count_include_pad). */
void kiln_pool_taps(const struct pool_geom *g, int dim, int64_t o, int64_t *lo, int64_t *hi,
                    int64_t *cnt);

#endif
