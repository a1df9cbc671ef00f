/* src/cpu/ops/fused.h: the kernels of other op families that kiln's fused ops (fused.c,
 * domain "kiln") are built on, so each computation exists once. Not a public interface:
 * nothing outside src/cpu/ops includes it.
 *
 * Each run function is the family's kernel for the standard op, reading the node's inputs
 * and attributes as that op does; inputs and attributes the standard op does not have are
 * ignored, so a fused node may carry more (the residual, the activation). Where the op has
 * a prepare, its run reads what that prepare made from k->state (a fused kernel hands it its
 * own part of the fused state), and decodes the attributes itself when k->state is NULL (a
 * kernel called without prepare, as the unit tests' run_node does).
 */
#ifndef KILN_CPU_OPS_FUSED_H
#define KILN_CPU_OPS_FUSED_H

#include "cpu/kernel.h"

kiln_status kiln_cpu_conv_prepare(struct kiln_kprep *p); /* conv.c: Conv */
kiln_status kiln_cpu_conv_run(struct kiln_kctx *k);
kiln_status kiln_cpu_gemm_prepare(struct kiln_kprep *p); /* gemm.c: Gemm */
kiln_status kiln_cpu_gemm_run(struct kiln_kctx *k);
kiln_status kiln_cpu_matmul_prepare(struct kiln_kprep *p); /* gemm.c: MatMul (inputs 0, 1) */
kiln_status kiln_cpu_matmul_run(struct kiln_kctx *k);
/* gemm.c: MatMul with kiln's GEMM's epilogue (bias, Z, activation) applied inside the product
 * when MatMul runs on it (the variant "kiln-pgemm"); *epi_done says whether it did. */
struct kiln_pgemm_epi;
kiln_status kiln_cpu_matmul_run_epi(struct kiln_kctx *k, const struct kiln_pgemm_epi *epi, bool *epi_done);
kiln_status kiln_cpu_layernorm_run(struct kiln_kctx *k); /* norm.c: LayerNormalization-17 */
kiln_status kiln_cpu_rmsnorm_run(struct kiln_kctx *k);   /* norm.c: RMSNormalization-23 */
/* nn_extra.c: kiln.Attention (3-D Q/K/V, num_heads, causal; see docs/fused-ops.md): a
 * float32 fast path, else the kernel of ONNX Attention; prepare decodes the attributes. */
kiln_status kiln_cpu_kiln_attention_run(struct kiln_kctx *k);
kiln_status kiln_cpu_kiln_attention_prepare(struct kiln_kprep *p);

#endif
