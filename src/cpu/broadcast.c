/* broadcast.c: ONNX multidirectional broadcasting (onnx/docs/Broadcasting.md): output shapes
 * and the row iterator declared in broadcast.h. */
#include <string.h>

#include "cpu/broadcast.h"

static int64_t dim_at(int rank, const int64_t *dims, int out_rank, int d)
{
    int j = d - (out_rank - rank); /* right-aligned */
    return j < 0 ? 1 : dims[j];
}

kiln_status kiln_bcast_shape(size_t n, const int *ranks, const int64_t *const *dims,
                             int *out_rank, int64_t out_dims[KILN_MAX_RANK], kiln_err *err)
{
    int r = 0;
    for (size_t i = 0; i < n; i++) {
        if (ranks[i] < 0 || ranks[i] > KILN_MAX_RANK)
            return kiln_err_set(err, KILN_E_LIMIT, "input %zu has rank %d; the limit is %d", i,
                                ranks[i], KILN_MAX_RANK);
        if (ranks[i] > r) r = ranks[i];
    }
    for (int d = 0; d < r; d++) {
        int64_t o = 1;
        size_t from = 0; /* the input that set o (when o != 1) */
        for (size_t i = 0; i < n; i++) {
            int64_t v = dim_at(ranks[i], dims[i], r, d);
            if (v == 1 || v == o) continue;
            if (o == 1) {
                o = v;
                from = i;
                continue;
            }
            char sa[200], sb[200];
            return kiln_err_set(err, KILN_E_INVALID_ARG,
                                "input %zu shape %s and input %zu shape %s are not broadcastable "
                                "(%lld vs %lld at dim %d from the right)",
                                from, kiln_shape_str(ranks[from], dims[from], sa, sizeof sa), i,
                                kiln_shape_str(ranks[i], dims[i], sb, sizeof sb), (long long)o,
                                (long long)v, r - d);
        }
        out_dims[d] = o;
    }
    *out_rank = r;
    return KILN_OK;
}

kiln_status kiln_bcast_unidir(int rank_a, const int64_t *a, int rank_b, const int64_t *b,
                              kiln_err *err)
{
    char sa[200], sb[200];
    bool ok = rank_b <= rank_a;
    for (int d = 0; ok && d < rank_b; d++) {
        int64_t vb = b[rank_b - 1 - d], va = a[rank_a - 1 - d];
        ok = vb == va || vb == 1;
    }
    if (ok) return KILN_OK;
    return kiln_err_set(err, KILN_E_INVALID_ARG,
                        "shape %s does not broadcast to shape %s (unidirectional broadcasting)",
                        kiln_shape_str(rank_b, b, sb, sizeof sb),
                        kiln_shape_str(rank_a, a, sa, sizeof sa));
}

void kiln_bcast_iter_init(struct kiln_bcast_iter *it, size_t n, const int *ranks,
                          const int64_t *const *dims, int out_rank, const int64_t *out_dims)
{
    memset(it, 0, sizeof *it);
    it->n_in = n;
    size_t numel = 1;
    for (int d = 0; d < out_rank; d++) numel *= (size_t)out_dims[d];
    if (numel == 0) return; /* rows = 0: nothing to walk */

    /* Collapse: keep output dims > 1, merging a dim into the previous kept one when every
     * input is broadcast along both or along neither. Per-input strides of a kept dim are
     * those of its innermost original dim, which is right for merged contiguous dims. */
    int64_t cd[KILN_MAX_RANK];
    size_t cs[KILN_BCAST_MAX_IN][KILN_MAX_RANK];
    bool cb[KILN_BCAST_MAX_IN][KILN_MAX_RANK]; /* input i broadcast along kept dim */
    size_t instride[KILN_BCAST_MAX_IN];
    int c = 0;
    for (size_t i = 0; i < n; i++) instride[i] = 1;
    /* Walk from the innermost dim outwards so input strides accumulate naturally. */
    int64_t rd[KILN_MAX_RANK];
    size_t rs[KILN_BCAST_MAX_IN][KILN_MAX_RANK];
    bool rb[KILN_BCAST_MAX_IN][KILN_MAX_RANK];
    for (int d = out_rank - 1; d >= 0; d--) {
        int64_t od = out_dims[d];
        if (od == 1) continue;
        bool same = c > 0;
        bool bc[KILN_BCAST_MAX_IN];
        for (size_t i = 0; i < n; i++) {
            bc[i] = dim_at(ranks[i], dims[i], out_rank, d) == 1;
            if (same && bc[i] != rb[i][c - 1]) same = false;
        }
        if (same) {
            rd[c - 1] *= od; /* inner strides stay */
        } else {
            rd[c] = od;
            for (size_t i = 0; i < n; i++) {
                rb[i][c] = bc[i];
                rs[i][c] = bc[i] ? 0 : instride[i];
            }
            c++;
        }
        for (size_t i = 0; i < n; i++)
            if (!bc[i]) instride[i] *= (size_t)od;
    }
    /* rd/rs are innermost-first; reverse into outermost-first. */
    for (int j = 0; j < c; j++) {
        cd[j] = rd[c - 1 - j];
        for (size_t i = 0; i < n; i++) {
            cs[i][j] = rs[i][c - 1 - j];
            cb[i][j] = rb[i][c - 1 - j];
        }
    }
    if (c == 0) { /* every dim is 1: one row of one element */
        it->rows = 1;
        it->inner = 1;
        return;
    }
    it->inner = (size_t)cd[c - 1];
    for (size_t i = 0; i < n; i++) it->step[i] = cb[i][c - 1] ? 0 : 1;
    it->rank = c - 1;
    it->rows = 1;
    for (int j = 0; j < c - 1; j++) {
        it->dims[j] = cd[j];
        it->rows *= (size_t)cd[j];
        for (size_t i = 0; i < n; i++) it->strides[i][j] = cs[i][j];
    }
}
