/* test_conv1x1_mm.c: the conv1x1_mm pass (src/opt/pass_conv1x1_mm.c), which writes a
 * channels-last 1x1 convolution on few pixels with large weights as kiln.FusedMatMul.
 *
 * A ResNet-stage-4-like model (NCHW: 3x3 Conv + Relu, 1x1 Conv 512 -> 1024 with bias + Relu,
 * 1x1 Conv 1024 -> 512 + the first Conv's output + Relu, a 1x1 stride-2 Conv, global pool),
 * optimized at the extended level with kiln ops, against the unoptimized model at 1 and 2
 * threads: within 1e-5 + 1e-4 |a| (the products sum in another order; 3e-3 + 1e-4 |a| for
 * the wide strided layer, whose outputs cancel from much larger terms). At AVX-512 the two
 * 2 MB 1x1 convolutions become kiln.FusedMatMul (bias, residual and Relu kept), the 3x3 and
 * the small strided 1x1 stay ConvNhwc, a 2 MB strided 1x1 becomes a Slice with steps 2 and a
 * kiln.FusedMatMul. The same model on a 20x20 image (400 rows) and with 1 MB weights: no
 * FusedMatMul. At AVX2 the same, and the strided 1x1 becomes Slice + kiln.FusedMatMul in
 * every case; at the portable level nothing changes (the pass runs only where kiln's GEMM
 * takes such products).
 * ctest also runs it with KILN_CPU_ISA=avx2 (tests/tests.cmake).
 */
#include <stdio.h>
#include <stdlib.h>

#include "cpu/isa.h"
#include "kiln.h"
#include "test_support.h"
#include "test_text_model.h"

#define tf model_text_add

static void pass_case(int hw, int wide, int m3, bool want)
{
    char what[120];
    snprintf(what, sizeof what, "conv1x1_mm, %dx%d image, 1x1 weights %d x %d, strided %d x 512", hw, hw, wide, 512,
             m3);
    model_text_reset();
    tf("opset 17\ninput X f32 1,32,%d,%d\noutput y\n", hw, hw);
    tf("init w0 f32 512,32,3,3 rand\nnode Conv X,w0 -> c0 pads=ints:1,1,1,1\nnode Relu c0 -> a0\n");
    tf("init w1 f32 %d,512,1,1 rand\ninit b1 f32 %d rand\nnode Conv a0,w1,b1 -> c1\nnode Relu c1 -> a1\n", wide,
       wide);
    tf("init w2 f32 512,%d,1,1 rand\nnode Conv a1,w2 -> c2\nnode Add c2,a0 -> s2\nnode Relu s2 -> a2\n", wide);
    tf("init w3 f32 %d,512,1,1 rand\nnode Conv a2,w3 -> c3 strides=ints:2,2\n", m3);
    tf("node GlobalAveragePool c3 -> gp\nnode Flatten gp -> y\n");
    size_t n = (size_t)(32 * hw * hw);
    float *x = malloc(n * sizeof *x);
    if (!x) exit(1);
    for (size_t i = 0; i < n; i++) x[i] = rng_f32();
    int64_t d[4] = {1, 32, hw, hw};
    /* The wide strided layer's outputs (|y| ~ 1-10) are sums of 512 terms of ~1e3 that cancel:
     * float32 sums in another order differ by ~1e-3 there (seen: 6.34054 against 6.34164). */
    kiln_model *m = optimized_matches(x, d, (size_t)m3, m3 > 64 ? 3e-3 : 1e-5, 1e-4, what);
    free(x);
    if (!m) return;
    enum kiln_isa isa = kiln_isa_active();
    size_t mm = model_count_op(m, "kiln", "FusedMatMul"), conv = model_count_op(m, "kiln", "ConvNhwc");
    /* the two stride-1 1x1 layers when few rows meet large weights (AVX2 and up) */
    size_t plain = want && isa >= KILN_ISA_AVX2 ? 2 : 0;
    /* the strided one, after a Slice that takes every 2nd pixel: at AVX-512 when its weights
     * are large and its rows few, at AVX2 always */
    bool strided = isa == KILN_ISA_AVX2 || (want && isa == KILN_ISA_AVX512 && m3 * 512 * 4 >= 2 << 20);
    size_t want_mm = plain + strided;
    CHECK(mm == want_mm && conv == 4 - want_mm, "%s (%s): %zu FusedMatMul, %zu ConvNhwc; expected %zu and %zu", what,
          kiln_isa_name(isa), mm, conv, want_mm, 4 - want_mm);
    CHECK(model_count_op(m, "", "Slice") == strided, "%s: %zu Slice", what, model_count_op(m, "", "Slice"));
    kiln_model_free(m);
}

int main(void)
{
    rng_seed(4242);
    pass_case(7, 1024, 64, true);
    pass_case(20, 1024, 64, false);
    pass_case(7, 512, 64, false);
    pass_case(7, 1024, 1024, true); /* 7x7 at stride 2: 16 pixels */
    return test_summary("test_conv1x1_mm");
}
