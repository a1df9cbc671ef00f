/* shape_reduce.c: shape-inference rules for the reductions of src/cpu/ops/reduce.c (family
 * `reduce`): ReduceSum (1, 11, 13), ReduceMean/Max/Min/Prod/L1/L2/LogSum/LogSumExp/SumSquare
 * (1..20), ArgMax/ArgMin (1, 11, 12, 13).
 *
 * Axes come from the `axes` attribute before opset 13 (ReduceSum) / 18 (the others), from
 * the optional input 1 after. No axes (attribute absent, input absent or empty) reduce every
 * dim, unless noop_with_empty_axes=1 (input versions only), which reduces none. Reduced dims
 * become 1 with keepdims=1 (the default) and disappear with keepdims=0. The output keeps the
 * input's element type; ArgMax/ArgMin (one `axis`, default 0) give int64.
 *
 * Axes given as an input whose elements are not known: with keepdims=1 the rank is kept and
 * every dim that is 1 stays 1 (reduced or not), the others are unknown; with keepdims=0 the
 * rank is the input's less the axes' length when that length is known and nonzero.
 *
 * ReduceSum/Prod/Max/Min of a 1-D int32/int64 tensor whose elements are known as dims fold
 * them (kiln_sym_*): ReduceProd of a slice of Shape is the element count exporters compute.
 */
#include "infer/rule_util.h"

/* Which reductions also fold the elements of a small integer input (shape arithmetic:
 * ReduceProd of a Shape slice is a numel). */
enum rop { R_OTHER, R_SUM, R_PROD, R_MAX, R_MIN };

/* Output 0's elements when input 0 is a 1-D integer tensor with known elements: reduced
 * along its one dim (or kept, when nothing is reduced). */
static kiln_status reduce_vals(struct kiln_ictx *c, enum rop op, kiln_dtype dt, int rank, const bool *reduced)
{
    int nv;
    const struct kiln_dim *v;
    if (op == R_OTHER || rank != 1 || (dt != KILN_DTYPE_I64 && dt != KILN_DTYPE_I32) ||
        !kiln_ic_vals(c, 0, &nv, &v))
        return KILN_OK;
    if (!reduced[0]) return kiln_ic_set_vals(c, 0, nv, v);
    if (nv == 0) {
        /* the identity: only sums and products have one that is a size */
        if (op != R_SUM && op != R_PROD) return KILN_OK;
        struct kiln_dim e = kiln_dim_int(op == R_PROD ? 1 : 0);
        return kiln_ic_set_vals(c, 0, 1, &e);
    }
    struct kiln_dim acc = v[0];
    for (int k = 1; k < nv; k++) {
        int64_t a, b;
        bool ints = ru_dim_int(acc, &a) && ru_dim_int(v[k], &b);
        switch (op) {
        case R_SUM:
            acc = ints && !((b > 0 && a > INT64_MAX - b) || (b < 0 && a < INT64_MIN - b))
                      ? ru_int_dim(c, a + b)
                  : ints ? kiln_dim_unknown()
                         : kiln_sym_add(c->inf, acc, v[k]);
            break;
        case R_PROD:
            acc = ints && !(a != 0 && b != 0 &&
                            (a > INT32_MAX || a < INT32_MIN || b > INT32_MAX || b < INT32_MIN))
                      ? ru_int_dim(c, a * b)
                  : ints ? kiln_dim_unknown()
                         : kiln_sym_mul(c->inf, acc, v[k]);
            break;
        case R_MAX:
            acc = ints ? ru_int_dim(c, a > b ? a : b) : kiln_sym_max(c->inf, acc, v[k]);
            break;
        case R_MIN:
            acc = ints ? ru_int_dim(c, a < b ? a : b) : kiln_sym_min(c->inf, acc, v[k]);
            break;
        case R_OTHER:
            return KILN_OK;
        }
    }
    int64_t x;
    if (dt == KILN_DTYPE_I32 && ru_dim_int(acc, &x) && (x > INT32_MAX || x < INT32_MIN))
        acc = kiln_dim_unknown();
    return kiln_ic_set_vals(c, 0, 1, &acc);
}

/* Output 0 of a reduction of input 0 over reduced[0..rank). */
static kiln_status reduce_out(struct kiln_ictx *c, enum rop op, kiln_dtype dt, int rank,
                              const struct kiln_dim *d, const bool *reduced, bool keepdims)
{
    struct kiln_dim out[KILN_MAX_RANK];
    int r = 0;
    for (int k = 0; k < rank; k++) {
        if (!reduced[k])
            out[r++] = d[k];
        else if (keepdims)
            out[r++] = kiln_dim_int(1);
    }
    KILN_TRY(ru_set(c, 0, dt, r, out, false));
    return reduce_vals(c, op, dt, rank, reduced);
}

static kiln_status reduce_rule(struct kiln_ictx *c, enum rop op, int axes_input_since)
{
    kiln_dtype dt = kiln_ic_in_dtype(c, 0);
    int rank;
    const struct kiln_dim *d;
    bool dd = false;
    bool keepdims = kiln_ic_attr_i(c, "keepdims", 1) != 0;
    bool from_input = c->opset >= axes_input_since;
    bool noop = from_input && kiln_ic_attr_i(c, "noop_with_empty_axes", 0) != 0;
    if (!ru_shape(c, 0, &rank, &d))
        return dt == KILN_DTYPE_UNDEFINED ? KILN_OK : ru_set(c, 0, dt, -1, NULL, dd);

    int64_t axes[KILN_MAX_RANK];
    size_t na = 0;
    bool reduced[KILN_MAX_RANK] = {false};
    if (from_input) {
        if (c->n_in > 1 && kiln_ic_in(c, 1)) {
            if (!kiln_ic_ints(c, 1, axes, KILN_MAX_RANK, &na)) {
                /* axes not known */
                int ra = kiln_ic_in_rank(c, 1);
                const struct kiln_vtype *av = kiln_ic_in(c, 1);
                int64_t len = -1;
                if (ra == 1 && kiln_dim_known(av->type.dims[0])) len = av->type.dims[0].value;
                if (len > rank) {
                    kiln_ic_problem(c, "axes has %lld entries for an input of rank %d", (long long)len, rank);
                    return KILN_OK;
                }
                if (len == 0) goto no_axes;
                struct kiln_dim out[KILN_MAX_RANK];
                if (keepdims) {
                    for (int k = 0; k < rank; k++) out[k] = d[k].value == 1 ? d[k] : kiln_dim_unknown();
                    return ru_set(c, 0, dt, rank, out, dd);
                }
                if (len > 0 && !noop) {
                    for (int k = 0; k < rank - len; k++) out[k] = kiln_dim_unknown();
                    return ru_set(c, 0, dt, (int)(rank - len), out, dd);
                }
                return ru_set(c, 0, dt, -1, NULL, dd);
            }
        }
    } else {
        const int64_t *av;
        na = kiln_ic_attr_ints(c, "axes", &av);
        if (na > KILN_MAX_RANK) {
            kiln_ic_problem(c, "axes has %zu entries for an input of rank %d", na, rank);
            return KILN_OK;
        }
        if (na) memcpy(axes, av, na * sizeof *axes);
    }
    if (na == 0) goto no_axes;
    for (size_t i = 0; i < na; i++) {
        int a;
        if (!kiln_ic_axis(c, axes[i], rank, &a)) return KILN_OK;
        if (reduced[a]) {
            kiln_ic_problem(c, "axis %lld appears twice in axes", (long long)axes[i]);
            return KILN_OK;
        }
        reduced[a] = true;
    }
    return reduce_out(c, op, dt, rank, d, reduced, keepdims);

no_axes:
    for (int k = 0; k < rank; k++) reduced[k] = !noop;
    return reduce_out(c, op, dt, rank, d, reduced, keepdims);
}

static kiln_status rule_reduce_sum(struct kiln_ictx *c)
{
    return reduce_rule(c, R_SUM, 13);
}
static kiln_status rule_reduce_prod(struct kiln_ictx *c)
{
    return reduce_rule(c, R_PROD, 18);
}
static kiln_status rule_reduce_max(struct kiln_ictx *c)
{
    return reduce_rule(c, R_MAX, 18);
}
static kiln_status rule_reduce_min(struct kiln_ictx *c)
{
    return reduce_rule(c, R_MIN, 18);
}
static kiln_status rule_reduce(struct kiln_ictx *c)
{
    return reduce_rule(c, R_OTHER, 18);
}

static kiln_status rule_arg(struct kiln_ictx *c)
{
    int rank;
    const struct kiln_dim *d;
    if (!ru_shape(c, 0, &rank, &d)) return ru_set(c, 0, KILN_DTYPE_I64, -1, NULL, false);
    int a;
    if (!kiln_ic_axis(c, kiln_ic_attr_i(c, "axis", 0), rank, &a)) return KILN_OK;
    bool reduced[KILN_MAX_RANK] = {false};
    reduced[a] = true;
    return reduce_out(c, R_OTHER, KILN_DTYPE_I64, rank, d, reduced, kiln_ic_attr_i(c, "keepdims", 1) != 0);
}

const struct kiln_infer_op kiln_infer_ops_reduce[] = {
    {"ReduceSum", "", 1, 0, rule_reduce_sum},
    {"ReduceMean", "", 1, 0, rule_reduce},
    {"ReduceMax", "", 1, 0, rule_reduce_max},
    {"ReduceMin", "", 1, 0, rule_reduce_min},
    {"ReduceProd", "", 1, 0, rule_reduce_prod},
    {"ReduceL1", "", 1, 0, rule_reduce},
    {"ReduceL2", "", 1, 0, rule_reduce},
    {"ReduceLogSum", "", 1, 0, rule_reduce},
    {"ReduceLogSumExp", "", 1, 0, rule_reduce},
    {"ReduceSumSquare", "", 1, 0, rule_reduce},
    {"ArgMax", "", 1, 0, rule_arg},
    {"ArgMin", "", 1, 0, rule_arg},
    {NULL, NULL, 0, 0, NULL},
};
