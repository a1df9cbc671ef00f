/* pass_conv1x1_mm.c: a channels-last 1x1 convolution on a small image with large weights
 * becomes the product it is,
 *
 *   kiln.ConvNhwc(X [N, H, W, C], W [M, C, 1, 1], B?, Z?) + activation, stride 1, no pads
 *     => kiln.FusedMatMul(X, W^T [C, M], B?, Z?) + activation      -> [N, H, W, M]
 *
 * (a stride s > 1 first takes every s-th pixel with a Slice: ResNet-50's 1x1 stride-2
 * downsample layers, one of which oneDNN ran at 81 GFLOP/s on a Zen 4)
 * so that it runs on kiln's GEMM with its weights prepacked (src/cpu/pgemm.h), which streams
 * a large B from memory at the speed of arithmetic, where oneDNN's 1x1 convolution kernels
 * stall on it: a batch-1 run reads each weight once, and with few pixels (ResNet-50's 7x7
 * stage: 49 rows) a layer's 2-4 MB of weights are most of its memory traffic. Taken when
 * N * H * W <= ROWS_MAX and the weights are at least W_MIN_BYTES (measured, docs/benchmarks.md
 * "Issue 7, fifth step"), when the process runs at AVX-512, where kiln's GEMM is the one the
 * matmul picks for such products (cpu/ops/gemm.c) on Intel; on AMD's Zen 4 the matmul takes
 * oneDNN's primitive for them, which measured faster there than oneDNN's own 1x1
 * convolution too (ResNet-50's stage 4 and stride-2 downsample 11.9 -> 11.0 ms).
 * At AVX2 the same, and every strided 1x1 convolution whatever its size: oneDNN's AVX2 1x1
 * kernels ran ResNet-50's three stride-2 downsample layers at 4.1-5.3 ms (7x7 and 14x14
 * outputs) and 3.2 ms (28x28, 784 rows, 0.5 MB of weights), Slice + the product at 2.1-2.6 ms
 * each (kiln's GEMM below 512 rows, oneDNN's matmul from 512: gemm.c; Zen 4,
 * KILN_CPU_ISA=avx2, one thread); ResNet-50 at AVX2 ~92-99 -> ~81-86 ms. Same sums in another order (float32 rounding). Needs
 * kiln ops; runs after nhwc.
 */
#include <string.h>

#include "cpu/isa.h"
#include "opt/fuse_util.h"

#define ROWS_MAX 256
#define W_MIN_BYTES ((size_t)2 << 20)

static kiln_status run(struct kiln_opt *o, struct kiln_graph *g, bool *changed)
{
    if (kiln_isa_active() < KILN_ISA_AVX2) return KILN_OK;
    bool avx2 = kiln_isa_active() == KILN_ISA_AVX2;
    for (size_t i = 0; i < g->n_nodes; i++) {
        if (!fu_is(o, g, (int)i, "kiln", "ConvNhwc")) continue;
        const struct kiln_node *n = &g->nodes[i];
        if (n->n_in < 2 || n->n_in > 4 || n->n_out != 1) continue;
        const char *ap = kiln_opt_attr_s(n, "auto_pad", "NOTSET");
        const int64_t *sv = NULL;
        size_t ns = 0;
        int64_t sh = 1, sw = 1; /* strides */
        if (kiln_opt_attr_ints(n, "strides", &sv, &ns)) {
            if (ns != 2 || sv[0] < 1 || sv[1] < 1) continue;
            sh = sv[0], sw = sv[1];
        }
        if (kiln_opt_attr_i(n, "group", 1) != 1 || !fu_ints_all(n, "pads", 0) ||
            (strcmp(ap, "NOTSET") && strcmp(ap, "VALID")) || ((sh > 1 || sw > 1) && fu_opset(o) < 10))
            continue;
        const struct kiln_tensor *w = fu_const_f32(o, g, n->inputs[1]);
        if (!w || w->rank != 4 || w->dims[2] != 1 || w->dims[3] != 1) continue;
        int64_t M = w->dims[0], C = w->dims[1];
        bool any = avx2 && (sh > 1 || sw > 1); /* at AVX2 every strided one */
        if (!any && (size_t)(M * C) * sizeof(float) < W_MIN_BYTES) continue;
        int r;
        int64_t xd[KILN_MAX_RANK];
        if (!fu_is_f32(g, n->inputs[0]) || !kiln_opt_static_shape(g, n->inputs[0], &r, xd) || r != 4 ||
            xd[3] != C || xd[0] * ((xd[1] + sh - 1) / sh) * ((xd[2] + sw - 1) / sw) > (any ? INT64_MAX : ROWS_MAX))
            continue;
        const char *bias = n->n_in > 2 ? n->inputs[2] : "", *z = n->n_in > 3 ? n->inputs[3] : "";
        if (bias[0] && !fu_const_f32(o, g, bias)) continue;
        float *wt = kiln_malloc((size_t)(M * C) * sizeof *wt);
        if (!wt) return fu_nomem(o);
        const float *wv = w->data;
        for (int64_t c = 0; c < C; c++)
            for (int64_t m = 0; m < M; m++) wt[c * M + m] = wv[m * C + c];
        int64_t td[2] = {C, M};
        const char *wn;
        kiln_status st = fu_add_f32(o, g, n->inputs[1], 2, td, wt, &wn);
        kiln_free(wt);
        KILN_TRY(st);
        const char *x = n->inputs[0];
        if (sh > 1 || sw > 1) { /* the pixels the convolution reads: a Slice with steps first */
            int64_t v[4][2] = {{0, 0}, {xd[1], xd[2]}, {1, 2}, {sh, sw}}, d1[1] = {2};
            const char *names[4], *sx;
            for (int k = 0; k < 4; k++) {
                struct kiln_tensor t;
                KILN_TRY(kiln_opt_new_tensor(o, KILN_DTYPE_I64, 1, d1, &t));
                memcpy(t.data, v[k], sizeof v[k]);
                KILN_TRY(kiln_opt_add_init(o, g, "conv1x1_mm_slice", &t, &names[k]));
            }
            KILN_TRY(kiln_opt_unique_name(o, "conv1x1_mm_pixels", &sx));
            const char *sins[5] = {x, names[0], names[1], names[2], names[3]};
            KILN_TRY(kiln_opt_add_node(o, g, "Slice", "", NULL, 5, sins, 1, &sx, NULL));
            n = &g->nodes[i];
            x = sx;
        }
        struct fu_act a;
        fu_node_act(n, &a);
        const char *ins[4] = {x, wn, bias, z}, *out = n->outputs[0];
        size_t nodes[1] = {i};
        struct kiln_node *nn;
        KILN_TRY(fu_replace(o, g, nodes, 1, "FusedMatMul", "kiln", z[0] ? 4 : bias[0] ? 3 : 2, ins, 1, &out, NULL,
                            &nn));
        KILN_TRY(fu_set_act(o, nn, &a));
        *changed = true;
    }
    return KILN_OK;
}

const struct kiln_pass kiln_pass_conv1x1_mm = {
    .name = "conv1x1_mm",
    .level = KILN_OPT_EXTENDED,
    .needs_kiln_ops = true,
    .doc = "channels-last 1x1 convolution on few pixels with large weights -> kiln.FusedMatMul",
    .run = run,
};
