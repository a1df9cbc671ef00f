/* pass_conv_taps.c: kernel taps of a Conv that read only padding are dropped.
 *
 * A dilated convolution on a small feature map can have taps that never touch the image:
 * DeepLabV3's ASPP branches on a 16x16 map at dilations 24 and 36 (padding 24 and 36) read,
 * with each of their eight outer taps, only the zeros of the padding, for every output
 * pixel. Such a Conv computes the same values as the Conv of the taps that do read the
 * image: along each spatial dim, tap t reads input rows o * s - pb + t * d for the outputs
 * o in [0, OH); the taps whose rows all fall outside [0, H) form a prefix and a suffix of
 * the kernel (the rows move with t), which are cut off:
 *
 *   Conv(X, W, B) kernel k, pads pb/pe, dilation d
 *     => Conv(X, W[..., lo..hi, ...], B) kernel hi - lo + 1, pads pb - lo d and the end pad
 *        that keeps the output size, dilation d (1 when one tap is left)
 *
 * per spatial dim, when the new pads are >= 0. The image must have a static shape, W a
 * float32 constant, auto_pad NOTSET or VALID. Exact up to the summation order (the dropped
 * terms are products with padding zeros). DeepLabV3's two far branches become 1x1
 * convolutions: 9x fewer FLOPs and weights.
 */
#include <string.h>

#include "opt/fuse_util.h"

#define MAX_SP (KILN_MAX_RANK - 2)

static kiln_status run(struct kiln_opt *o, struct kiln_graph *g, bool *changed)
{
    for (size_t i = 0; i < g->n_nodes; i++) {
        if (!kiln_opt_is_op(o, g, i, "Conv")) continue;
        const struct kiln_node *c = &g->nodes[i];
        int r;
        int64_t xd[KILN_MAX_RANK];
        if (c->n_in < 2 || c->n_out != 1 || !kiln_opt_static_shape(g, c->inputs[0], &r, xd) || r < 3)
            continue;
        const struct kiln_tensor *w = fu_const_f32(o, g, c->inputs[1]);
        if (!w || w->rank != r) continue;
        const char *ap = kiln_opt_attr_s(c, "auto_pad", "NOTSET");
        if (strcmp(ap, "NOTSET") && strcmp(ap, "VALID")) continue;
        int nd = r - 2;
        int64_t k[MAX_SP], s[MAX_SP], d[MAX_SP], pb[MAX_SP], pe[MAX_SP];
        const int64_t *v;
        size_t n;
        bool ok = true;
        for (int a = 0; a < nd; a++) k[a] = w->dims[2 + a], s[a] = d[a] = 1, pb[a] = pe[a] = 0;
        if (kiln_opt_attr_ints(c, "kernel_shape", &v, &n))
            for (int a = 0; a < nd; a++) ok = ok && n == (size_t)nd && v[a] == k[a];
        if (kiln_opt_attr_ints(c, "strides", &v, &n)) {
            ok = ok && n == (size_t)nd;
            for (int a = 0; ok && a < nd; a++) s[a] = v[a], ok = v[a] >= 1;
        }
        if (kiln_opt_attr_ints(c, "dilations", &v, &n)) {
            ok = ok && n == (size_t)nd;
            for (int a = 0; ok && a < nd; a++) d[a] = v[a], ok = v[a] >= 1;
        }
        if (!strcmp(ap, "NOTSET") && kiln_opt_attr_ints(c, "pads", &v, &n)) {
            ok = ok && n == 2 * (size_t)nd;
            for (int a = 0; ok && a < nd; a++) pb[a] = v[a], pe[a] = v[nd + a], ok = v[a] >= 0 && v[nd + a] >= 0;
        }
        if (!ok) continue;
        int64_t lo[MAX_SP], hi[MAX_SP], nk[MAX_SP], npb[MAX_SP], npe[MAX_SP];
        bool cut = false;
        for (int a = 0; ok && a < nd; a++) {
            int64_t H = xd[2 + a], span = (k[a] - 1) * d[a] + 1;
            int64_t OH = (H + pb[a] + pe[a] - span) / s[a] + 1;
            if (H < 1 || H + pb[a] + pe[a] < span || OH < 1) {
                ok = false;
                break;
            }
            /* tap t reads rows [t d - pb, (OH - 1) s + t d - pb]: it touches the image when
             * that range meets [0, H) (with a stride it may still skip every row: kept) */
            lo[a] = 0, hi[a] = k[a] - 1;
            while (lo[a] <= hi[a] && (OH - 1) * s[a] + lo[a] * d[a] - pb[a] < 0) lo[a]++;
            while (hi[a] >= lo[a] && hi[a] * d[a] - pb[a] > H - 1) hi[a]--;
            if (lo[a] > hi[a]) {
                ok = false; /* every tap reads padding: the output is the bias; left alone */
                break;
            }
            nk[a] = hi[a] - lo[a] + 1;
            npb[a] = pb[a] - lo[a] * d[a];
            npe[a] = (OH - 1) * s[a] + (nk[a] - 1) * d[a] + 1 - H - npb[a];
            ok = npb[a] >= 0 && npe[a] >= 0;
            cut = cut || nk[a] != k[a];
        }
        if (!ok || !cut) continue;
        /* the new weights: W's taps [lo, hi] of each spatial dim */
        int64_t wd[KILN_MAX_RANK] = {w->dims[0], w->dims[1]};
        size_t outer = (size_t)(w->dims[0] * w->dims[1]), taps = 1, ntaps = 1;
        for (int a = 0; a < nd; a++) wd[2 + a] = nk[a], taps *= (size_t)k[a], ntaps *= (size_t)nk[a];
        float *nw = kiln_malloc(outer * ntaps * sizeof *nw + 1);
        if (!nw) return fu_nomem(o);
        const float *src = w->data;
        for (size_t q = 0; q < outer; q++)
            for (size_t t = 0; t < ntaps; t++) {
                size_t rem = t, off = 0, mul = 1;
                for (int a = nd - 1; a >= 0; a--) {
                    size_t idx = rem % (size_t)nk[a] + (size_t)lo[a];
                    rem /= (size_t)nk[a];
                    off += idx * mul;
                    mul *= (size_t)k[a];
                }
                nw[q * ntaps + t] = src[q * taps + off];
            }
        const char *wn;
        kiln_status rc = fu_add_f32(o, g, c->inputs[1], r, wd, nw, &wn);
        kiln_free(nw);
        KILN_TRY(rc);
        const char *ins[3] = {c->inputs[0], wn, c->n_in > 2 ? c->inputs[2] : ""};
        const char *outs[1] = {c->outputs[0]};
        size_t nodes[1] = {i};
        struct kiln_node *nn;
        KILN_TRY(fu_replace(o, g, nodes, 1, "Conv", "", c->n_in > 2 ? 3 : 2, ins, 1, outs, c, &nn));
        int64_t pads[2 * MAX_SP], dil[MAX_SP];
        for (int a = 0; a < nd; a++) pads[a] = npb[a], pads[nd + a] = npe[a], dil[a] = nk[a] == 1 ? 1 : d[a];
        kiln_opt_remove_attr(nn, "auto_pad");
        KILN_TRY(kiln_opt_set_attr_ints(o, nn, "kernel_shape", nk, (size_t)nd));
        KILN_TRY(kiln_opt_set_attr_ints(o, nn, "pads", pads, 2 * (size_t)nd));
        KILN_TRY(kiln_opt_set_attr_ints(o, nn, "dilations", dil, (size_t)nd));
        *changed = true;
    }
    return KILN_OK;
}

const struct kiln_pass kiln_pass_conv_taps = {
    .name = "conv_taps",
    .level = KILN_OPT_EXTENDED,
    .doc = "Conv kernel taps that read only padding (far dilations on small maps) -> dropped",
    .run = run,
};
