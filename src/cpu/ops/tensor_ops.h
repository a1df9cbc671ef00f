/* tensor_ops.h: private helpers shared by the shape/data-movement kernels (tensor*.c) and the
 * Gather/Scatter family (index.c), and the run functions that tensor.c's table lists but other
 * tensor_*.c files define. Not a public interface: nothing outside src/cpu/ops includes it.
 */
#ifndef KILN_CPU_OPS_TENSOR_OPS_H
#define KILN_CPU_OPS_TENSOR_OPS_H

#include "cpu/tensor_util.h"

/* Largest rank a strided copy accepts: Tile and DepthToSpace split each axis in two. */
#define KILN_TOPS_MAX_RANK (2 * KILN_MAX_RANK)

/* Reads a 0-D or 1-D integer tensor into v[0..*n) (at most cap entries). Fails when it is not
 * an integer tensor, has rank > 1, or holds more than cap entries. `what` names the input. */
KILN_NODISCARD kiln_status kiln_tops_read_ints(struct kiln_kctx *k, const struct kiln_tensor *t,
                                               const char *what, int64_t *v, size_t cap,
                                               size_t *n);

/* Copies a strided view of src into contiguous dst: dst element (i0..i{r-1}) (row-major over
 * dims) = src[sum i_a * sstride[a]] (strides in elements, may be 0 or negative; src points at
 * the view's origin). esz is the element size; string tensors move their pointers, so call
 * kiln_tops_own_strings on the output afterwards. rank <= KILN_TOPS_MAX_RANK. */
void kiln_tops_strided_copy(void *dst, const void *src, size_t esz, int rank, const int64_t *dims,
                            const int64_t *sstride);

/* Fills contiguous dst (shape dims[0..rank)) by per-axis index maps: maps[a][o] is the source
 * index along axis a for output position o, or -1 for "use the constant" (cval, esz bytes).
 * sstride: source strides in elements. Used by Pad, CenterCropPad and nearest Resize. */
void kiln_tops_map_copy(void *dst, const void *src, size_t esz, int rank, const int64_t *dims,
                        const int64_t *const *maps, const int64_t *sstride, const void *cval);

/* Row-major strides (in elements) of a shape. */
void kiln_tops_strides(int rank, const int64_t *dims, int64_t *strides);

/* For a freshly allocated STRING output t: the shared "" placeholder its entries hold (NULL for
 * other dtypes or empty tensors). Take it before overwriting entries with borrowed pointers. */
char *kiln_tops_placeholder(const struct kiln_tensor *t);

/* Replaces every entry of a STRING tensor (holding borrowed pointers after a byte move) with an
 * owned copy. On NOMEM, the entries not yet copied are reset to `ph` so the tensor stays safe to
 * free. Does nothing for other dtypes. */
KILN_NODISCARD kiln_status kiln_tops_own_strings(struct kiln_kctx *k, struct kiln_tensor *t,
                                                 char *ph);

/* Allocates output i and copies src's data into it with the given shape (numel must match).
 * When the output landed on src's own memory (in place: the planner put output 0 over input
 * 0) there is nothing to copy. */
KILN_NODISCARD kiln_status kiln_tops_out_copy(struct kiln_kctx *k, size_t i,
                                              const struct kiln_tensor *src, int rank,
                                              const int64_t *dims);

/* Prepared kernels (cpu/kernel.h). An op with attributes has a decode function
 * `kiln_status decode(struct kiln_kctx *k, T *state)` that reads them into its own struct T
 * and refuses the values that are wrong whatever the inputs; prepare runs it once (the state
 * lives as long as the engine, and may point into the node's attributes, which live as long
 * too), and run reads it as k->state. A kernel run without prepare (k->state NULL: the unit
 * tests call run directly) decodes into a local T through the same function, so both paths
 * give the same values and the same errors. */

/* Run and prepare functions defined in tensor_misc.c and tensor_resize.c, listed in
 * tensor.c's table. */
kiln_status kiln_tops_constant(struct kiln_kctx *k);
kiln_status kiln_tops_constant_of_shape(struct kiln_kctx *k);
kiln_status kiln_tops_range(struct kiln_kctx *k);
kiln_status kiln_tops_onehot(struct kiln_kctx *k);
kiln_status kiln_tops_trilu(struct kiln_kctx *k);
kiln_status kiln_tops_eyelike(struct kiln_kctx *k);
kiln_status kiln_tops_compress(struct kiln_kctx *k);
kiln_status kiln_tops_nonzero(struct kiln_kctx *k);
kiln_status kiln_tops_reverse_sequence(struct kiln_kctx *k);
kiln_status kiln_tops_unique(struct kiln_kctx *k);
kiln_status kiln_tops_resize(struct kiln_kctx *k);
kiln_status kiln_tops_upsample(struct kiln_kctx *k);
kiln_status kiln_tops_grid_sample(struct kiln_kctx *k);
kiln_status kiln_tops_col2im(struct kiln_kctx *k);
kiln_status kiln_tops_center_crop_pad(struct kiln_kctx *k);
kiln_status kiln_tops_constant_prepare(struct kiln_kprep *p);
kiln_status kiln_tops_constant_of_shape_prepare(struct kiln_kprep *p);
kiln_status kiln_tops_onehot_prepare(struct kiln_kprep *p);
kiln_status kiln_tops_trilu_prepare(struct kiln_kprep *p);
kiln_status kiln_tops_eyelike_prepare(struct kiln_kprep *p);
kiln_status kiln_tops_compress_prepare(struct kiln_kprep *p);
kiln_status kiln_tops_reverse_sequence_prepare(struct kiln_kprep *p);
kiln_status kiln_tops_unique_prepare(struct kiln_kprep *p);
kiln_status kiln_tops_resize_prepare(struct kiln_kprep *p);
kiln_status kiln_tops_upsample_prepare(struct kiln_kprep *p);
kiln_status kiln_tops_grid_sample_prepare(struct kiln_kprep *p);
kiln_status kiln_tops_col2im_prepare(struct kiln_kprep *p);
kiln_status kiln_tops_center_crop_pad_prepare(struct kiln_kprep *p);

#endif
