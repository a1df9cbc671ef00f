/* pass_fuse_mbconv.c: inverted-residual blocks (MobileNetV2, EfficientNet, MnasNet), as the
 * nhwc pass leaves them,
 *
 *     kiln.ConvNhwc(X, W1 [E, C, 1, 1], B1?) + act1                      1x1 expand
 *       -> kiln.ConvNhwc(., W2 [E, 1, k, k], B2?), group E, + act2       depthwise
 *       -> kiln.ConvNhwc(., W3 [M, E, 1, 1], B3?, Z?) + act3             1x1 project
 *
 * become one kiln.MBConv(X, W1, B1, W2, B2, W3, B3, Z) (src/cpu/ops/mbconv.c): the block run
 * in bands of rows, so the expanded tensor stays in each core's L2 instead of going to
 * memory and back twice (docs/fused-ops.md). Also the two-conv forms: expand -> depthwise
 * (EfficientNet, whose squeeze-excitation sits before the project) and depthwise ->
 * project (MobileNetV2's first block, which has no expand), where measured faster.
 *
 * Matched on known shapes: the depthwise's input float32 [N, H, W, E] with every dim known;
 * each convolution a constant float32 W (and constant B or none), no dilation, auto_pad
 * NOTSET or VALID, approximate absent or "none" on the depthwise and the project (MBConv
 * carries the expand's); the 1x1s group 1, stride 1, no pads, no Z on the expand; the
 * depthwise group == E == its input's channels, W2 [E, 1, k, k], any stride and pads, no Z.
 * Each intermediate read by the next convolution only (and no graph output), so the nodes
 * can go: an expand whose output has another reader is left out of the block (and the
 * block is then matched without it, where that form pays).
 *
 * Where it pays (measured on an Intel Xeon with 2 MB of L2 a core, docs/notes-mbconv.md),
 * the rule: blocks with a project (three convolutions, or depthwise -> project) whose
 * depthwise input is at least MB_MIN_BYTES (H * W * E * 4 >= 1.5 MiB: MobileNetV2's
 * features.1 to features.4, 1.6-4.8 MB) and whose E is a multiple of 16 (SSDlite's 80x80x72
 * block, whose GEMM columns and depthwise channels end in partial vectors, measured 1.01 at
 * 1 thread and 0.85 at 2; a lower KILN_MBCONV_MIN lifts this too); below that the unfused tensors stay in L2 between
 * the nodes anyway and oneDNN's 1x1 kernels are 5-15% faster than MBConv's, so fusing
 * lost (0.85-0.97x a block). The expand -> depthwise form (EfficientNet) measured
 * 0.83-0.99x a block, even at 112x112x96: it writes its output to memory all the same, and
 * its SiLU runs as a separate pass; it is not made. The rule was measured at AVX-512; with
 * the AVX2 kernels (KILN_CPU_ISA=avx2 on the same machine) the fused blocks took 0.83-1.06x
 * the unfused ones' time, so the pass runs only where the optimizing process's instruction
 * set (cpu/isa.h: the build machine's, for an engine) is AVX-512. KILN_MBCONV=0 turns the
 * pass off, KILN_MBCONV=1 on at any level, KILN_MBCONV=2 on with the expand -> depthwise
 * form too; KILN_MBCONV_MIN=BYTES sets the threshold (tests, measurements). Needs kiln
 * ops; runs after nhwc (and fuse_se).
 */
#include <stdlib.h>
#include <string.h>

#include "cpu/isa.h"
#include "opt/fuse_util.h"

#define MB_MIN_BYTES 1572864 /* the size rule (see above): 1.5 MiB */

static bool has_input(const struct kiln_node *n, size_t i)
{
    return n->n_in > i && n->inputs[i] && n->inputs[i][0];
}

/* Node i is a ConvNhwc with a constant float32 W of rank 4 [out, in_per_group, kh, kw] (dims
 * into w), a constant B [out] or none, no dilation, auto_pad NOTSET or VALID; *valid when
 * VALID. */
static bool conv_basic(const struct kiln_opt *o, const struct kiln_graph *g, int i, int64_t w[4], bool *valid)
{
    if (i < 0 || !fu_is(o, g, i, "kiln", "ConvNhwc")) return false;
    const struct kiln_node *n = &g->nodes[i];
    if (n->n_in < 2 || !fu_ints_all(n, "dilations", 1)) return false;
    const char *ap = kiln_opt_attr_s(n, "auto_pad", "NOTSET");
    if (strcmp(ap, "NOTSET") && strcmp(ap, "VALID")) return false;
    *valid = !strcmp(ap, "VALID");
    const struct kiln_tensor *t = fu_const_f32(o, g, n->inputs[1]);
    if (!t || t->rank != 4) return false;
    memcpy(w, t->dims, 4 * sizeof *w);
    const int64_t *ks;
    size_t nk;
    if (kiln_opt_attr_ints(n, "kernel_shape", &ks, &nk) && (nk != 2 || ks[0] != w[2] || ks[1] != w[3])) return false;
    if (has_input(n, 2)) {
        const struct kiln_tensor *b = fu_const_f32(o, g, n->inputs[2]);
        if (!b || b->rank != 1 || b->dims[0] != w[0]) return false;
    }
    return true;
}

/* A 1x1 ConvNhwc, group 1, stride 1, no pads, reading `in` with in_c channels: its output
 * channels, or 0. */
static int64_t conv_1x1(const struct kiln_opt *o, const struct kiln_graph *g, int i, const char *in, int64_t in_c)
{
    int64_t w[4];
    bool valid;
    if (!conv_basic(o, g, i, w, &valid)) return 0;
    const struct kiln_node *n = &g->nodes[i];
    if (strcmp(n->inputs[0], in) || w[1] != in_c || w[2] != 1 || w[3] != 1) return 0;
    if (kiln_opt_attr_i(n, "group", 1) != 1 || !fu_ints_all(n, "strides", 1) || !fu_ints_all(n, "pads", 0)) return 0;
    return w[0];
}

static bool approx_none(const struct kiln_node *n)
{
    return !strcmp(kiln_opt_attr_s(n, "approximate", "none"), "none");
}

/* The threshold of the size rule (KILN_MBCONV_MIN overrides it); -1: the pass is off
 * (KILN_MBCONV=0, or unset on a CPU below AVX-512). *two: also the expand -> depthwise form
 * (KILN_MBCONV=2). */
static long long min_bytes(bool *two)
{
    const char *e = getenv("KILN_MBCONV");
    *two = e && e[0] == '2';
    if (e && e[0] == '0') return -1;
    if (!(e && e[0]) && kiln_isa_active() < KILN_ISA_AVX512) return -1;
    e = getenv("KILN_MBCONV_MIN");
    return e ? strtoll(e, NULL, 10) : MB_MIN_BYTES;
}

struct mb_match {
    int e, d, p; /* node indices; -1 for a part not in the block */
};

/* The block around depthwise candidate t. */
static bool match(const struct kiln_opt *o, const struct kiln_graph *g, size_t t, long long min, bool two,
                  struct mb_match *m)
{
    int64_t w[4], xd[4];
    bool valid;
    if (!conv_basic(o, g, (int)t, w, &valid)) return false;
    const struct kiln_node *d = &g->nodes[t];
    int64_t E = w[0];
    if (has_input(d, 3) || w[1] != 1 || kiln_opt_attr_i(d, "group", 1) != E || E < 1 || !approx_none(d) ||
        w[2] > 64 || !fu_shape4(g, d->inputs[0], xd) || xd[3] != E)
        return false;
    if ((double)xd[1] * (double)xd[2] * (double)E * 4.0 < (double)min || (min >= MB_MIN_BYTES && E % 16)) return false;
    m->d = (int)t, m->e = m->p = -1;
    /* the expand, when d is its only reader */
    int pe = kiln_opt_producer(g, d->inputs[0]);
    int64_t xe[4];
    if (pe >= 0 && fu_next(o, g, (size_t)pe) == (int)t && !has_input(&g->nodes[pe], 3) &&
        fu_shape4(g, g->nodes[pe].inputs[0], xe) && conv_1x1(o, g, pe, g->nodes[pe].inputs[0], xe[3]) == E)
        m->e = pe;
    /* the project, when it is d's only reader */
    int pp = fu_next(o, g, t);
    if (pp >= 0 && conv_1x1(o, g, pp, d->outputs[0], E) > 0 && approx_none(&g->nodes[pp])) m->p = pp;
    if (m->p < 0 && (!two || m->e < 0)) return false;
    size_t nodes[3], n = 0;
    if (m->e >= 0) nodes[n++] = (size_t)m->e;
    nodes[n++] = t;
    if (m->p >= 0) nodes[n++] = (size_t)m->p;
    const char *keep = g->nodes[nodes[n - 1]].outputs[0];
    return fu_closed(g, nodes, n, &keep, 1);
}

static kiln_status set_act(struct kiln_opt *o, struct kiln_node *nn, const struct kiln_node *src, const char *name,
                           const char *params)
{
    struct fu_act a;
    fu_node_act(src, &a);
    if (!a.name[0]) return KILN_OK;
    KILN_TRY(kiln_opt_set_attr_s(o, nn, name, a.name));
    if (a.np) KILN_TRY(kiln_opt_set_attr_floats(o, nn, params, a.p, a.np));
    return KILN_OK;
}

static kiln_status run(struct kiln_opt *o, struct kiln_graph *g, bool *changed)
{
    bool two;
    long long min = min_bytes(&two);
    if (min < 0) return KILN_OK;
    for (size_t t = 0; t < g->n_nodes; t++) {
        struct mb_match m;
        if (!match(o, g, t, min, two, &m)) continue;
        const struct kiln_node *e = m.e >= 0 ? &g->nodes[m.e] : NULL, *d = &g->nodes[m.d],
                               *p = m.p >= 0 ? &g->nodes[m.p] : NULL;
        const char *ins[8] = {e ? e->inputs[0] : d->inputs[0],
                              e ? e->inputs[1] : "",
                              e && has_input(e, 2) ? e->inputs[2] : "",
                              d->inputs[1],
                              has_input(d, 2) ? d->inputs[2] : "",
                              p ? p->inputs[1] : "",
                              p && has_input(p, 2) ? p->inputs[2] : "",
                              p && has_input(p, 3) ? p->inputs[3] : ""};
        size_t n_in = 8;
        while (n_in > 4 && !ins[n_in - 1][0]) n_in--;
        size_t nodes[3], n = 0;
        if (e) nodes[n++] = (size_t)m.e;
        nodes[n++] = (size_t)m.d;
        if (p) nodes[n++] = (size_t)m.p;
        const char *out = p ? p->outputs[0] : d->outputs[0];
        /* the depthwise's geometry and the activations, read before the nodes go */
        int64_t strides[2] = {1, 1}, pads[4] = {0, 0, 0, 0};
        const int64_t *v;
        size_t c;
        if (kiln_opt_attr_ints(d, "strides", &v, &c) && c == 2) memcpy(strides, v, sizeof strides);
        if (strcmp(kiln_opt_attr_s(d, "auto_pad", "NOTSET"), "VALID") && kiln_opt_attr_ints(d, "pads", &v, &c) &&
            c == 4)
            memcpy(pads, v, sizeof pads);
        struct fu_act a1 = {0};
        if (e) fu_node_act(e, &a1);
        struct kiln_node dcopy = *d, pcopy = p ? *p : *d;
        struct kiln_node *nn;
        KILN_TRY(fu_replace(o, g, nodes, n, "MBConv", "kiln", n_in, ins, 1, &out, NULL, &nn));
        KILN_TRY(kiln_opt_set_attr_ints(o, nn, "strides", strides, 2));
        KILN_TRY(kiln_opt_set_attr_ints(o, nn, "pads", pads, 4));
        if (e) KILN_TRY(fu_set_act(o, nn, &a1));
        KILN_TRY(set_act(o, nn, &dcopy, "dw_activation", "dw_activation_params"));
        if (p) KILN_TRY(set_act(o, nn, &pcopy, "project_activation", "project_activation_params"));
        *changed = true;
    }
    return KILN_OK;
}

const struct kiln_pass kiln_pass_fuse_mbconv = {
    .name = "fuse_mbconv",
    .level = KILN_OPT_EXTENDED,
    .needs_kiln_ops = true,
    .doc = "channels-last inverted-residual blocks (1x1 expand -> depthwise -> 1x1 project, and the "
           "two-conv forms) -> kiln.MBConv",
    .run = run,
};
