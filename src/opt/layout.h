/* layout.h: the layout marks that the optimizer's `layout` pass (pass_layout.c, level
 * KILN_OPT_LAYOUT) leaves for the engine builder (docs/optimizer.md, "Layout").
 *
 * A mark is one byte per value id of a graph, in g->layout (ir/ir.h): the memory layout the
 * engine builder should give that value. The low four bits are the kind; for blocked values
 * the flags say which block widths the region allows (the builder picks 16 on AVX-512, 8 on
 * AVX2, when the flag for that width is set; with neither CPU, or neither flag, plain).
 * Values without a mark (graph inputs, initializers, everything outside a chosen region, and
 * every value when the pass has not run) are plain: ONNX's own row-major layout (NCHW for
 * images). The marks never reach the ONNX the writer emits, and they are dropped whenever
 * the graph is relinked (value ids change); the engine builder reads them right after
 * kiln_model_optimize at level layout.
 */
#ifndef KILN_OPT_LAYOUT_H
#define KILN_OPT_LAYOUT_H

#include "ir/ir.h"

enum kiln_layout_kind {
    KILN_LAYOUT_PLAIN = 0,   /* row-major as in ONNX (NCHW); also "no mark" */
    KILN_LAYOUT_NHWC = 1,    /* channels last: [N, H, W, C] */
    KILN_LAYOUT_BLOCKED = 2, /* NCHWc: [N, ceil(C/c), H, W, c], channels zero-padded to c */
};
#define KILN_LAYOUT_KIND_MASK 0x0fu
#define KILN_LAYOUT_BLOCK8 0x10u  /* blocked with c = 8 (AVX2) fits the region */
#define KILN_LAYOUT_BLOCK16 0x20u /* blocked with c = 16 (AVX-512) fits the region */

/* The mark of value `id` of g (0, plain, when g has no marks or id is out of range). */
uint8_t kiln_opt_layout_of(const struct kiln_graph *g, int id);
/* The mark of the value named `name` in g itself (not enclosing graphs); 0 when unknown. */
uint8_t kiln_opt_layout_by_name(const struct kiln_graph *g, const char *name);
/* The block width the builder uses for a mark on a CPU with (avx512) or without AVX-512:
 * 16 or 8, or 0 when the value is not blocked. */
int kiln_opt_layout_block(uint8_t mark, bool avx512);
/* "nchw", "nhwc", "nchwc(8,16)", "nchwc(8)", "nchwc(16)". */
const char *kiln_opt_layout_name(uint8_t mark);

#endif /* KILN_OPT_LAYOUT_H */
