/* broadcast.h: ONNX multidirectional (numpy-style) broadcasting, per onnx/docs/Broadcasting.md.
 *
 * Shapes are aligned from the right; in each position the dims must be equal or one of them
 * 1, and the output takes the larger (a 0 dim against 1 gives 0). kiln_bcast_shape computes
 * the output shape of any number of inputs; kiln_bcast_iter walks the output in rows so that
 * kernels run a tight inner loop per row:
 *
 *     struct kiln_bcast_iter it;
 *     kiln_bcast_iter_init(&it, 2, ranks, dims, out_rank, out_dims);
 *     for (size_t r = 0; r < it.rows; r++, kiln_bcast_iter_next(&it))
 *         row(it.inner, a + it.off[0], it.step[0], b + it.off[1], it.step[1], y + it.out_off);
 *
 * Within a row input i advances by step[i] (1, or 0 when it is broadcast along the row);
 * the output is written contiguously. Adjacent dims along which every input is either
 * broadcast in both or in neither are merged first, so same-shape inputs give a single row
 * of numel elements, and scalar-vs-tensor gives a single row with step 0 for the scalar.
 */
#ifndef KILN_CPU_BROADCAST_H
#define KILN_CPU_BROADCAST_H

#include "ir/ir.h"

/* Most inputs one iterator walks together (Where has 3; variadic ops fold pairwise). */
#define KILN_BCAST_MAX_IN 8

/* Output shape of broadcasting n (>= 1) shapes: shape i is ranks[i] dims at dims[i] (may be
 * NULL for rank 0). Writes *out_rank and out_dims[0..*out_rank). Fails with
 * KILN_E_INVALID_ARG naming both conflicting shapes, e.g. "input 0 shape [2,3] and input 1
 * shape [4] are not broadcastable (3 vs 4 at the last dim)", or KILN_E_LIMIT for rank >
 * KILN_MAX_RANK. */
KILN_NODISCARD kiln_status kiln_bcast_shape(size_t n, const int *ranks,
                                            const int64_t *const *dims, int *out_rank,
                                            int64_t out_dims[KILN_MAX_RANK], kiln_err *err);

/* Unidirectional broadcasting (PRelu, legacy opset < 7 broadcasting): succeeds when shape b
 * broadcasts to shape a without changing a. The message names both shapes. */
KILN_NODISCARD kiln_status kiln_bcast_unidir(int rank_a, const int64_t *a, int rank_b,
                                             const int64_t *b, kiln_err *err);

struct kiln_bcast_iter {
    size_t n_in;
    size_t rows;  /* number of rows; 0 when the output is empty */
    size_t inner; /* elements per row (>= 1 when rows > 0) */
    size_t step[KILN_BCAST_MAX_IN];  /* 1, or 0 when input i is constant along a row */
    /* Cursor: element offsets of the current row's start. */
    size_t off[KILN_BCAST_MAX_IN];
    size_t out_off;
    /* Collapsed outer dims (all but the row), innermost last, with element strides. */
    int rank;
    int64_t dims[KILN_MAX_RANK];
    int64_t idx[KILN_MAX_RANK];
    size_t strides[KILN_BCAST_MAX_IN][KILN_MAX_RANK];
};

/* Prepares to walk out_dims (which must be the broadcast of the n <= KILN_BCAST_MAX_IN input
 * shapes, e.g. from kiln_bcast_shape, or a shape every input broadcasts to) from the first
 * row. Never fails. */
void kiln_bcast_iter_init(struct kiln_bcast_iter *it, size_t n, const int *ranks,
                          const int64_t *const *dims, int out_rank, const int64_t *out_dims);

/* Moves the cursor to the next row (harmless past the last). */
static inline void kiln_bcast_iter_next(struct kiln_bcast_iter *it)
{
    it->out_off += it->inner;
    for (int d = it->rank - 1; d >= 0; d--) {
        if (++it->idx[d] < it->dims[d]) {
            for (size_t i = 0; i < it->n_in; i++) it->off[i] += it->strides[i][d];
            return;
        }
        it->idx[d] = 0;
        for (size_t i = 0; i < it->n_in; i++)
            it->off[i] -= it->strides[i][d] * (size_t)(it->dims[d] - 1);
    }
}

#endif
