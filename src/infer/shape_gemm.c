/* shape_gemm.c: shape and type rules for MatMul (1, 9, 13) and Gemm (1, 6, 7, 9, 11, 13).
 *
 * MatMul follows numpy.matmul: a 1-D first operand gets a 1 prepended and a 1-D second one a
 * 1 appended (both removed again from the result), batch dims broadcast (a symbol against a
 * known size > 1 gives the known size), and the inner dims must agree.
 * Gemm: A [M, K] (transA: [K, M]) times B [K, N] (transB: [N, K]) gives [M, N]; C must
 * broadcast to [M, N] unidirectionally. The element type is A's (B's when A's is unknown).
 */
#include "infer/rule_util.h"
#include "infer/shape_nn.h"

static kiln_status matmul_infer(struct kiln_ictx *c)
{
    static const size_t ins[] = {0, 1};
    kiln_dtype dt = kiln_infer_dtype_of(c, 2, ins);
    int ra, rb, r;
    const struct kiln_dim *a, *b;
    struct kiln_dim y[KILN_MAX_RANK];
    if (!kiln_infer_shape_of(c, 0, &ra, &a) || !kiln_infer_shape_of(c, 1, &rb, &b))
        return kiln_ic_set_tensor(c, 0, dt, -1, NULL);
    if (!ru_matmul_shape(c, ra, a, rb, b, &r, y)) return KILN_OK;
    return kiln_ic_set_tensor(c, 0, dt, r, y);
}

static kiln_status gemm_infer(struct kiln_ictx *c)
{
    static const size_t ins[] = {0, 1};
    kiln_dtype dt = kiln_infer_dtype_of(c, 2, ins);
    int ra = -1, rb = -1, rc;
    const struct kiln_dim *a = NULL, *b = NULL, *cd;
    bool ta = kiln_ic_attr_i(c, "transA", 0) != 0, tb = kiln_ic_attr_i(c, "transB", 0) != 0;
    kiln_infer_shape_of(c, 0, &ra, &a);
    kiln_infer_shape_of(c, 1, &rb, &b);
    if ((a && ra != 2) || (b && rb != 2)) {
        kiln_ic_problem(c, "inputs A and B have %d and %d dims; expected 2 each", ra, rb);
        return KILN_OK;
    }
    struct kiln_dim y[2] = {a ? a[ta ? 1 : 0] : kiln_dim_unknown(), b ? b[tb ? 0 : 1] : kiln_dim_unknown()};
    if (a && b) {
        struct kiln_dim ka = a[ta ? 0 : 1], kb = b[tb ? 1 : 0];
        if (kiln_dim_ne(ka, kb)) {
            kiln_ic_problem(c, "A gives K = %lld but B gives K = %lld", (long long)ka.value,
                            (long long)kb.value);
            return KILN_OK;
        }
    }
    if (c->n_in > 2 && kiln_infer_shape_of(c, 2, &rc, &cd)) {
        if (rc > 2) {
            kiln_ic_problem(c, "input C has %d dims; expected at most 2", rc);
            return KILN_OK;
        }
        for (int i = 0; i < rc; i++) {
            struct kiln_dim want = y[2 - rc + i];
            if (kiln_dim_known(cd[i]) && cd[i].value != 1 && kiln_dim_ne(cd[i], want)) {
                kiln_ic_problem(c, "input C dim %d is %lld; it does not broadcast to %lld", i,
                                (long long)cd[i].value, (long long)want.value);
                return KILN_OK;
            }
            /* C fixes an output dim that A and B leave open */
            if (!kiln_dim_defined(want) && kiln_dim_known(cd[i]) && cd[i].value != 1) y[2 - rc + i] = cd[i];
        }
    }
    return kiln_ic_set_tensor(c, 0, dt, 2, y);
}

const struct kiln_infer_op kiln_infer_ops_gemm[] = {
    {"MatMul", "", 1, 0, matmul_infer},
    {"Gemm", "", 1, 0, gemm_infer},
    {0},
};
