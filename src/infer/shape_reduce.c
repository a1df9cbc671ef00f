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
 */
#include "infer/rule_util.h"

/* Output 0 of a reduction of input 0 over reduced[0..rank). */
static kiln_status reduce_out(struct kiln_ictx *c, kiln_dtype dt, int rank, const struct kiln_dim *d,
                              const bool *reduced, bool keepdims)
{
    struct kiln_dim out[KILN_MAX_RANK];
    int r = 0;
    for (int k = 0; k < rank; k++) {
        if (!reduced[k])
            out[r++] = d[k];
        else if (keepdims)
            out[r++] = kiln_dim_int(1);
    }
    return ru_set(c, 0, dt, r, out, false);
}

static kiln_status reduce_rule(struct kiln_ictx *c, int axes_input_since)
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
        memcpy(axes, av, na * sizeof *axes);
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
    return reduce_out(c, dt, rank, d, reduced, keepdims);

no_axes:
    for (int k = 0; k < rank; k++) reduced[k] = !noop;
    return reduce_out(c, dt, rank, d, reduced, keepdims);
}

static kiln_status rule_reduce_sum(struct kiln_ictx *c)
{
    return reduce_rule(c, 13);
}
static kiln_status rule_reduce(struct kiln_ictx *c)
{
    return reduce_rule(c, 18);
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
    return reduce_out(c, KILN_DTYPE_I64, rank, d, reduced, kiln_ic_attr_i(c, "keepdims", 1) != 0);
}

const struct kiln_infer_op kiln_infer_ops_reduce[] = {
    {"ReduceSum", "", 1, 0, rule_reduce_sum},
    {"ReduceMean", "", 1, 0, rule_reduce},
    {"ReduceMax", "", 1, 0, rule_reduce},
    {"ReduceMin", "", 1, 0, rule_reduce},
    {"ReduceProd", "", 1, 0, rule_reduce},
    {"ReduceL1", "", 1, 0, rule_reduce},
    {"ReduceL2", "", 1, 0, rule_reduce},
    {"ReduceLogSum", "", 1, 0, rule_reduce},
    {"ReduceLogSumExp", "", 1, 0, rule_reduce},
    {"ReduceSumSquare", "", 1, 0, rule_reduce},
    {"ArgMax", "", 1, 0, rule_arg},
    {"ArgMin", "", 1, 0, rule_arg},
    {NULL, NULL, 0, 0, NULL},
};
