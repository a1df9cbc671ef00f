/* shape_shape.c: shape-inference rules for the shape and data-movement ops (family `shape`,
 * ONNX opsets 1..latest; docs/Operators.md of onnx/onnx) and their data propagation.
 *
 * Data propagation: Shape, Size, Gather, Concat, Slice, Squeeze, Unsqueeze, Reshape and
 * Expand carry the elements of small integer tensors (vals) so that the arithmetic that
 * exporters emit (Shape -> Gather -> Unsqueeze -> Concat -> Reshape) gives symbolic shapes:
 * Reshape(x[N,seq,768], Concat(Shape(x)[0:2], [12, 64])) is float32[N,seq,12,64]. Integer
 * Add/Sub/Mul/Div and Cast of vals live with their ops in shape_elementwise.c.
 *
 * Data-dependent outputs (NonZero, Unique, Compress) get a fresh symbol ("NonZero_3") for
 * the size that depends on the data, and their data_dependent flag. A rule that finds a
 * contradiction (an axis out of range, sizes that cannot be split or reshaped) reports a
 * problem and leaves what it cannot know unset.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "infer/rule_util.h"

#define MAXR KILN_MAX_RANK
#define HUGE_END (INT64_MAX / 2) /* ends at or beyond this mean "to the end" */

/* Input i's shape when its rank is known. */
static bool shp(const struct kiln_ictx *c, size_t i, int *rank, const struct kiln_dim **dims)
{
    return ru_shape(c, i, rank, dims);
}

static kiln_status set(struct kiln_ictx *c, size_t o, kiln_dtype dt, int rank, const struct kiln_dim *d)
{
    return kiln_ic_set_tensor(c, o, dt, rank, d);
}

/* Product of dims (symbolic); unknown when any is unknown. */
static struct kiln_dim prod(struct kiln_ictx *c, const struct kiln_dim *d, int from, int to)
{
    struct kiln_dim p = kiln_dim_int(1);
    for (int i = from; i < to; i++) p = kiln_sym_mul(c->inf, p, d[i]);
    return p;
}

/* Integers of input i, or (opset below `since_input`) of attribute `attr`: true when known.
 * *present: whether the input/attribute is given at all. */
static bool ints_in_or_attr(const struct kiln_ictx *c, size_t i, const char *attr, bool use_attr,
                            int64_t *v, size_t cap, size_t *n, bool *present)
{
    if (use_attr) {
        const int64_t *a;
        size_t k = kiln_ic_attr_ints(c, attr, &a);
        *present = kiln_ic_attr_has(c, attr);
        if (k > cap) return false;
        for (size_t j = 0; j < k; j++) v[j] = a[j];
        *n = k;
        return true;
    }
    *present = kiln_ic_in(c, i) != NULL;
    if (!*present) {
        *n = 0;
        return true;
    }
    return kiln_ic_ints(c, i, v, cap, n);
}

/* ------------------------------------------------------------------ Shape, Size */

static kiln_status rule_shape(struct kiln_ictx *c)
{
    int r;
    const struct kiln_dim *d;
    if (!shp(c, 0, &r, &d)) return set(c, 0, KILN_DTYPE_I64, 1, (struct kiln_dim[]){kiln_dim_unknown()});
    int64_t s = c->opset >= 15 ? kiln_ic_attr_i(c, "start", 0) : 0;
    int64_t e = c->opset >= 15 ? kiln_ic_attr_i(c, "end", r) : r;
    if (s < 0) s += r;
    if (e < 0) e += r;
    s = s < 0 ? 0 : s > r ? r : s;
    e = e < 0 ? 0 : e > r ? r : e;
    int n = e > s ? (int)(e - s) : 0;
    KILN_TRY(set(c, 0, KILN_DTYPE_I64, 1, (struct kiln_dim[]){kiln_dim_int(n)}));
    return kiln_ic_set_vals(c, 0, n, d + s);
}

static kiln_status rule_size(struct kiln_ictx *c)
{
    int r;
    const struct kiln_dim *d;
    KILN_TRY(set(c, 0, KILN_DTYPE_I64, 0, NULL));
    if (!shp(c, 0, &r, &d)) return KILN_OK;
    struct kiln_dim p = prod(c, d, 0, r);
    return kiln_dim_defined(p) ? kiln_ic_set_vals(c, 0, 1, &p) : KILN_OK;
}

/* ------------------------------------------------------------------ Reshape */

static kiln_status reshape_to(struct kiln_ictx *c, int n, const struct kiln_dim *v, bool allowzero)
{
    int r = -1;
    const struct kiln_dim *d = NULL;
    shp(c, 0, &r, &d);
    kiln_dtype dt = kiln_ic_in_dtype(c, 0);
    if (n > MAXR) {
        kiln_ic_problem(c, "shape has %d entries; kiln's rank limit is %d", n, MAXR);
        return KILN_OK;
    }
    struct kiln_dim out[MAXR];
    int neg = -1;
    for (int i = 0; i < n; i++) {
        int64_t x;
        if (kiln_dim_int_value(v[i], &x)) {
            if (x == 0 && !allowzero) {
                if (r >= 0 && i >= r) {
                    kiln_ic_problem(c, "shape[%d] is 0 (copy) but the input has rank %d", i, r);
                    return KILN_OK;
                }
                out[i] = r >= 0 ? d[i] : kiln_dim_unknown();
            } else if (x == -1) {
                if (neg >= 0) {
                    kiln_ic_problem(c, "shape has more than one -1");
                    return KILN_OK;
                }
                neg = i;
                out[i] = kiln_dim_unknown();
            } else if (x < -1) {
                kiln_ic_problem(c, "shape[%d] is %lld", i, (long long)x);
                return KILN_OK;
            } else {
                out[i] = kiln_dim_int(x);
            }
        } else {
            out[i] = v[i];
        }
    }
    if (neg >= 0 && r >= 0) {
        struct kiln_dim total = prod(c, d, 0, r), rest = kiln_dim_int(1);
        for (int i = 0; i < n; i++)
            if (i != neg) rest = kiln_sym_mul(c->inf, rest, out[i]);
        int64_t t, q;
        if (kiln_dim_int_value(total, &t) && kiln_dim_int_value(rest, &q)) {
            if ((q == 0 && t != 0) || (q != 0 && t % q != 0)) {
                kiln_ic_problem(c, "cannot reshape %lld elements with -1 and %lld others",
                                (long long)t, (long long)q);
                return KILN_OK;
            }
            out[neg] = q ? kiln_dim_int(t / q) : kiln_dim_unknown();
        } else if (kiln_dim_defined(total) && kiln_dim_defined(rest)) {
            out[neg] = kiln_sym_floordiv(c->inf, total, rest);
        }
    } else if (neg < 0 && r >= 0) {
        int64_t t, q;
        struct kiln_dim total = prod(c, d, 0, r), all = prod(c, out, 0, n);
        if (kiln_dim_int_value(total, &t) && kiln_dim_int_value(all, &q) && t != q) {
            kiln_ic_problem(c, "cannot reshape %lld elements into %lld", (long long)t, (long long)q);
            return KILN_OK;
        }
    }
    KILN_TRY(set(c, 0, dt, n, out));
    /* vals pass through a reshape of a small integer tensor to rank 0/1 */
    int nv;
    const struct kiln_dim *vv;
    if (n <= 1 && kiln_ic_vals(c, 0, &nv, &vv) && (n == 1 ? out[0].value == nv : nv == 1))
        KILN_TRY(kiln_ic_set_vals(c, 0, nv, vv));
    return KILN_OK;
}

static kiln_status rule_reshape(struct kiln_ictx *c)
{
    bool allowzero = c->opset >= 14 && kiln_ic_attr_i(c, "allowzero", 0) != 0;
    if (c->opset < 5) {
        const int64_t *a;
        size_t k = kiln_ic_attr_ints(c, "shape", &a);
        if (k > MAXR) return KILN_OK;
        struct kiln_dim v[MAXR];
        for (size_t i = 0; i < k; i++) v[i] = kiln_sym_int(c->inf, a[i]);
        return reshape_to(c, (int)k, v, allowzero);
    }
    int n;
    const struct kiln_dim *v;
    if (kiln_ic_vals(c, 1, &n, &v)) return reshape_to(c, n, v, allowzero);
    int rs;
    const struct kiln_dim *ds;
    kiln_dtype dt = kiln_ic_in_dtype(c, 0);
    if (shp(c, 1, &rs, &ds) && rs == 1 && ds[0].value >= 0 && ds[0].value <= MAXR) {
        struct kiln_dim out[MAXR];
        for (int i = 0; i < ds[0].value; i++) out[i] = kiln_dim_unknown();
        return set(c, 0, dt, (int)ds[0].value, out);
    }
    return set(c, 0, dt, -1, NULL);
}

/* ------------------------------------------------------------------ Concat */

static kiln_status rule_concat(struct kiln_ictx *c)
{
    int64_t axis = kiln_ic_attr_i(c, "axis", c->opset < 4 ? 1 : INT64_MIN);
    kiln_dtype dt = KILN_DTYPE_UNDEFINED;
    int r = -1;
    for (size_t i = 0; i < c->n_in; i++) {
        int ri;
        const struct kiln_dim *di;
        if (dt == KILN_DTYPE_UNDEFINED) dt = kiln_ic_in_dtype(c, i);
        if (!shp(c, i, &ri, &di)) continue;
        if (r >= 0 && ri != r) {
            kiln_ic_problem(c, "inputs have ranks %d and %d", r, ri);
            return KILN_OK;
        }
        r = ri;
    }
    if (r < 0) return set(c, 0, dt, -1, NULL);
    if (axis == INT64_MIN) {
        kiln_ic_problem(c, "attribute 'axis' is required");
        return KILN_OK;
    }
    int ax;
    if (!kiln_ic_axis(c, axis, r, &ax)) return KILN_OK;
    struct kiln_dim out[MAXR];
    for (int k = 0; k < r; k++) out[k] = kiln_dim_unknown();
    struct kiln_dim sum = kiln_dim_int(0);
    bool all = true;
    for (size_t i = 0; i < c->n_in; i++) {
        int ri;
        const struct kiln_dim *di;
        if (!kiln_ic_in(c, i)) continue;
        if (!shp(c, i, &ri, &di)) {
            all = false;
            continue;
        }
        sum = kiln_sym_add(c->inf, sum, di[ax]);
        for (int k = 0; k < r; k++) {
            if (k == ax) continue;
            if (kiln_dim_ne(out[k], di[k])) {
                kiln_ic_problem(c, "input %zu has dim %d of size %lld; others have %lld", i, k,
                                (long long)di[k].value, (long long)out[k].value);
                return KILN_OK;
            }
            if (!kiln_dim_defined(out[k]) || (di[k].value >= 0 && out[k].value < 0)) out[k] = di[k];
        }
    }
    out[ax] = all ? sum : kiln_dim_unknown();
    KILN_TRY(set(c, 0, dt, r, out));
    /* vals */
    if (r != 1) return KILN_OK;
    struct kiln_dim vals[KILN_INFER_MAX_VALS];
    int nv = 0;
    for (size_t i = 0; i < c->n_in; i++) {
        int n;
        const struct kiln_dim *v;
        if (!kiln_ic_in(c, i)) continue;
        if (!kiln_ic_vals(c, i, &n, &v) || nv + n > KILN_INFER_MAX_VALS) return KILN_OK;
        memcpy(vals + nv, v, (size_t)n * sizeof *v);
        nv += n;
    }
    return kiln_ic_set_vals(c, 0, nv, vals);
}

/* ------------------------------------------------------------------ Gather family */

static kiln_status rule_gather(struct kiln_ictx *c)
{
    int r, q;
    const struct kiln_dim *d, *di;
    kiln_dtype dt = kiln_ic_in_dtype(c, 0);
    if (!shp(c, 0, &r, &d) || !shp(c, 1, &q, &di)) return set(c, 0, dt, -1, NULL);
    int ax;
    if (r < 1) {
        kiln_ic_problem(c, "input 'data' must have rank >= 1");
        return KILN_OK;
    }
    if (!kiln_ic_axis(c, kiln_ic_attr_i(c, "axis", 0), r, &ax)) return KILN_OK;
    if (r + q - 1 > MAXR) return set(c, 0, dt, -1, NULL);
    struct kiln_dim out[MAXR];
    int n = 0;
    for (int k = 0; k < ax; k++) out[n++] = d[k];
    for (int k = 0; k < q; k++) out[n++] = di[k];
    for (int k = ax + 1; k < r; k++) out[n++] = d[k];
    KILN_TRY(set(c, 0, dt, n, out));
    /* vals: gathering elements of a 1-D integer tensor with known indices */
    int nv;
    const struct kiln_dim *v;
    int64_t idx[KILN_INFER_MAX_VALS];
    size_t ni;
    if (r == 1 && q <= 1 && kiln_ic_vals(c, 0, &nv, &v) &&
        kiln_ic_ints(c, 1, idx, KILN_INFER_MAX_VALS, &ni)) {
        struct kiln_dim g[KILN_INFER_MAX_VALS];
        for (size_t k = 0; k < ni; k++) {
            int64_t j = idx[k] < 0 ? idx[k] + nv : idx[k];
            if (j < 0 || j >= nv) {
                kiln_ic_problem(c, "index %lld is out of range for %d elements", (long long)idx[k], nv);
                return KILN_OK;
            }
            g[k] = v[j];
        }
        KILN_TRY(kiln_ic_set_vals(c, 0, (int)ni, g));
    }
    return KILN_OK;
}

static kiln_status rule_gather_elements(struct kiln_ictx *c)
{
    int q;
    const struct kiln_dim *di;
    kiln_dtype dt = kiln_ic_in_dtype(c, 0);
    if (!shp(c, 1, &q, &di)) return set(c, 0, dt, kiln_ic_in_rank(c, 0), NULL);
    return set(c, 0, dt, q, di);
}

static kiln_status rule_gather_nd(struct kiln_ictx *c)
{
    int r, q;
    const struct kiln_dim *d, *di;
    kiln_dtype dt = kiln_ic_in_dtype(c, 0);
    int64_t b = c->opset >= 12 ? kiln_ic_attr_i(c, "batch_dims", 0) : 0;
    if (!shp(c, 0, &r, &d) || !shp(c, 1, &q, &di) || q < 1) return set(c, 0, dt, -1, NULL);
    int64_t last;
    if (!kiln_dim_int_value(di[q - 1], &last)) return set(c, 0, dt, -1, NULL);
    if (b < 0 || b >= q || b >= r || last < 1 || last > r - b) {
        kiln_ic_problem(c, "indices' last dim %lld with batch_dims %lld does not fit data of rank %d",
                        (long long)last, (long long)b, r);
        return KILN_OK;
    }
    int n = q - 1 + r - (int)b - (int)last;
    if (n > MAXR) return set(c, 0, dt, -1, NULL);
    struct kiln_dim out[MAXR];
    int k = 0;
    for (int i = 0; i < q - 1; i++) out[k++] = di[i];
    for (int i = (int)(b + last); i < r; i++) out[k++] = d[i];
    return set(c, 0, dt, k, out);
}

static kiln_status rule_like_data(struct kiln_ictx *c)
{
    return ru_like(c, 0, 0, KILN_DTYPE_UNDEFINED);
}

/* ------------------------------------------------------------------ Slice */

/* Elements that slicing a dim of size dim with (start, end, step) keeps (ONNX clamping). */
static int64_t slice_count(int64_t dim, int64_t s, int64_t e, int64_t step)
{
    if (s < 0) s += dim;
    if (e < 0) e += dim;
    if (step > 0) {
        s = s < 0 ? 0 : s > dim ? dim : s;
        e = e < 0 ? 0 : e > dim ? dim : e;
        return e > s ? (e - s - 1) / step + 1 : 0; /* no overflow for any step */
    }
    s = s < 0 ? -1 : s > dim - 1 ? dim - 1 : s;
    e = e < -1 ? -1 : e > dim - 1 ? dim - 1 : e;
    if (step == INT64_MIN) return s > e ? 1 : 0;
    return s > e ? (s - e - 1) / (-step) + 1 : 0;
}

static int64_t slice_start(int64_t dim, int64_t s, int64_t step)
{
    if (s < 0) s += dim;
    if (step > 0) return s < 0 ? 0 : s > dim ? dim : s;
    return s < 0 ? -1 : s > dim - 1 ? dim - 1 : s;
}

static kiln_status rule_slice(struct kiln_ictx *c)
{
    int r;
    const struct kiln_dim *d;
    kiln_dtype dt = kiln_ic_in_dtype(c, 0);
    if (!shp(c, 0, &r, &d)) return set(c, 0, dt, -1, NULL);
    int64_t st[MAXR], en[MAXR], ax[MAXR], sp[MAXR];
    size_t ns, ne, na, nsp;
    bool ps, pe, pa, psp;
    bool attr = c->opset < 10;
    bool ok = ints_in_or_attr(c, 1, "starts", attr, st, MAXR, &ns, &ps) &&
              ints_in_or_attr(c, 2, "ends", attr, en, MAXR, &ne, &pe) &&
              ints_in_or_attr(c, 3, "axes", attr, ax, MAXR, &na, &pa);
    psp = false;
    nsp = 0;
    if (ok && !attr) ok = ints_in_or_attr(c, 4, "", false, sp, MAXR, &nsp, &psp);
    struct kiln_dim out[MAXR];
    if (!ok) { /* which axes are sliced is unknown, or by how much */
        for (int k = 0; k < r; k++) out[k] = kiln_dim_unknown();
        int64_t a2[MAXR];
        size_t n2;
        bool p2;
        if (ints_in_or_attr(c, 3, "axes", attr, a2, MAXR, &n2, &p2) && p2) {
            for (int k = 0; k < r; k++) out[k] = d[k];
            for (size_t i = 0; i < n2; i++) {
                int a;
                if (!kiln_ic_axis(c, a2[i], r, &a)) return KILN_OK;
                out[a] = kiln_dim_unknown();
            }
        }
        return set(c, 0, dt, r, out);
    }
    if (ns != ne || (pa && na != ns) || (psp && nsp != ns)) {
        kiln_ic_problem(c, "starts, ends, axes and steps have different lengths (%zu, %zu, %zu, %zu)",
                        ns, ne, na, nsp);
        return KILN_OK;
    }
    if (!pa)
        for (size_t i = 0; i < ns; i++) ax[i] = (int64_t)i;
    if (!psp)
        for (size_t i = 0; i < ns; i++) sp[i] = 1;
    for (int k = 0; k < r; k++) out[k] = d[k];
    int64_t vstart = 0, vstep = 1;
    bool vsliced = false;
    for (size_t i = 0; i < ns; i++) {
        int a;
        if (!kiln_ic_axis(c, ax[i], r, &a)) return KILN_OK;
        if (sp[i] == 0) {
            kiln_ic_problem(c, "step %zu is 0", i);
            return KILN_OK;
        }
        int64_t dim;
        if (kiln_dim_int_value(d[a], &dim)) {
            out[a] = kiln_dim_int(slice_count(dim, st[i], en[i], sp[i]));
            if (a == 0) {
                vstart = slice_start(dim, st[i], sp[i]);
                vstep = sp[i];
                vsliced = true;
            }
        } else if (kiln_dim_defined(d[a]) && sp[i] == 1 && en[i] >= HUGE_END && st[i] >= 0) {
            /* x[s:]: d-s when d >= s, else 0 */
            out[a] = kiln_sym_max(c->inf, kiln_sym_sub(c->inf, d[a], kiln_dim_int(st[i])), kiln_dim_int(0));
        } else if (kiln_dim_defined(d[a]) && sp[i] == 1 && st[i] == 0 && en[i] < 0 && en[i] > -HUGE_END) {
            /* x[:-k]: d-k when d >= k, else 0 */
            out[a] = kiln_sym_max(c->inf, kiln_sym_sub(c->inf, d[a], kiln_dim_int(-en[i])), kiln_dim_int(0));
        } else if (kiln_dim_defined(d[a]) && sp[i] == 1 && st[i] < 0 && st[i] > -HUGE_END &&
                   en[i] >= HUGE_END) {
            out[a] = kiln_sym_min(c->inf, d[a], kiln_dim_int(-st[i])); /* x[-k:] */
        } else if (kiln_dim_defined(d[a]) && sp[i] == 1 && st[i] == 0 && en[i] >= 0) {
            out[a] = kiln_sym_min(c->inf, d[a], kiln_dim_int(en[i])); /* x[:e] */
        } else {
            out[a] = kiln_dim_unknown();
        }
        if (out[a].value < 0 && kiln_dim_int_value(out[a], &dim)) out[a] = kiln_dim_unknown();
    }
    KILN_TRY(set(c, 0, dt, r, out));
    int nv;
    const struct kiln_dim *v;
    if (r == 1 && kiln_ic_vals(c, 0, &nv, &v) && out[0].value >= 0) {
        struct kiln_dim o[KILN_INFER_MAX_VALS];
        if (!vsliced) vstart = 0, vstep = 1;
        for (int64_t k = 0; k < out[0].value && k < KILN_INFER_MAX_VALS; k++) {
            int64_t j;
            if (__builtin_mul_overflow(k, vstep, &j) || __builtin_add_overflow(j, vstart, &j) ||
                j < 0 || j >= nv)
                return KILN_OK;
            o[k] = v[j];
        }
        KILN_TRY(kiln_ic_set_vals(c, 0, (int)out[0].value, o));
    }
    return KILN_OK;
}

/* ------------------------------------------------------------------ Squeeze, Unsqueeze */

/* Entries of a 1-D input whose values are unknown but whose length is known; -1 otherwise. */
static int axes_count(const struct kiln_ictx *c, size_t i)
{
    int r;
    const struct kiln_dim *d;
    if (!shp(c, i, &r, &d) || r != 1 || d[0].value < 0 || d[0].value > MAXR) return -1;
    return (int)d[0].value;
}

static kiln_status rule_unsqueeze(struct kiln_ictx *c)
{
    int r;
    const struct kiln_dim *d;
    kiln_dtype dt = kiln_ic_in_dtype(c, 0);
    int64_t axes[MAXR + 1];
    size_t na;
    bool present;
    if (!shp(c, 0, &r, &d)) return set(c, 0, dt, -1, NULL);
    if (!ints_in_or_attr(c, 1, "axes", c->opset < 13, axes, MAXR + 1, &na, &present)) {
        int k = axes_count(c, 1);
        if (k < 0 || r + k > MAXR) return set(c, 0, dt, -1, NULL);
        struct kiln_dim out[MAXR];
        for (int i = 0; i < r + k; i++) out[i] = kiln_dim_unknown();
        return set(c, 0, dt, r + k, out);
    }
    int ro = r + (int)na;
    if (ro > MAXR) {
        kiln_ic_problem(c, "output rank %d exceeds kiln's limit %d", ro, MAXR);
        return KILN_OK;
    }
    bool is1[MAXR] = {0};
    for (size_t i = 0; i < na; i++) {
        int a;
        if (!kiln_ic_axis(c, axes[i], ro, &a)) return KILN_OK;
        if (is1[a]) {
            kiln_ic_problem(c, "axis %lld is repeated", (long long)axes[i]);
            return KILN_OK;
        }
        is1[a] = true;
    }
    struct kiln_dim out[MAXR];
    for (int k = 0, j = 0; k < ro; k++) out[k] = is1[k] ? kiln_dim_int(1) : d[j++];
    KILN_TRY(set(c, 0, dt, ro, out));
    int nv;
    const struct kiln_dim *v;
    if (ro <= 1 && kiln_ic_vals(c, 0, &nv, &v)) KILN_TRY(kiln_ic_set_vals(c, 0, nv, v));
    return KILN_OK;
}

static kiln_status rule_squeeze(struct kiln_ictx *c)
{
    int r;
    const struct kiln_dim *d;
    kiln_dtype dt = kiln_ic_in_dtype(c, 0);
    int64_t axes[MAXR];
    size_t na;
    bool present;
    if (!shp(c, 0, &r, &d)) return set(c, 0, dt, -1, NULL);
    if (!ints_in_or_attr(c, 1, "axes", c->opset < 13, axes, MAXR, &na, &present)) {
        int k = axes_count(c, 1);
        if (k < 0 || k > r) return set(c, 0, dt, -1, NULL);
        struct kiln_dim out[MAXR];
        for (int i = 0; i < r - k; i++) out[i] = kiln_dim_unknown();
        return set(c, 0, dt, r - k, out);
    }
    bool drop[MAXR] = {0};
    if (!present) {
        for (int k = 0; k < r; k++) {
            if (d[k].value < 0) return set(c, 0, dt, -1, NULL); /* may or may not be 1 */
            drop[k] = d[k].value == 1;
        }
    }
    for (size_t i = 0; present && i < na; i++) {
        int a;
        if (!kiln_ic_axis(c, axes[i], r, &a)) return KILN_OK;
        if (d[a].value >= 0 && d[a].value != 1) {
            kiln_ic_problem(c, "axis %lld has size %lld; only size-1 dims can be squeezed",
                            (long long)axes[i], (long long)d[a].value);
            return KILN_OK;
        }
        drop[a] = true;
    }
    struct kiln_dim out[MAXR];
    int n = 0;
    for (int k = 0; k < r; k++)
        if (!drop[k]) out[n++] = d[k];
    KILN_TRY(set(c, 0, dt, n, out));
    int nv;
    const struct kiln_dim *v;
    if (n <= 1 && kiln_ic_vals(c, 0, &nv, &v)) KILN_TRY(kiln_ic_set_vals(c, 0, nv, v));
    return KILN_OK;
}

/* ------------------------------------------------------------------ layout ops */

static kiln_status rule_transpose(struct kiln_ictx *c)
{
    int r;
    const struct kiln_dim *d;
    kiln_dtype dt = kiln_ic_in_dtype(c, 0);
    if (!shp(c, 0, &r, &d)) return set(c, 0, dt, -1, NULL);
    const int64_t *perm;
    size_t np = kiln_ic_attr_ints(c, "perm", &perm);
    struct kiln_dim out[MAXR];
    if (!kiln_ic_attr_has(c, "perm")) {
        for (int k = 0; k < r; k++) out[k] = d[r - 1 - k];
        return set(c, 0, dt, r, out);
    }
    if ((int)np != r) {
        kiln_ic_problem(c, "perm has %zu entries for an input of rank %d", np, r);
        return KILN_OK;
    }
    bool seen[MAXR] = {0};
    for (int k = 0; k < r; k++) {
        int a;
        if (!kiln_ic_axis(c, perm[k], r, &a)) return KILN_OK;
        if (seen[a]) {
            kiln_ic_problem(c, "perm repeats axis %d", a);
            return KILN_OK;
        }
        seen[a] = true;
        out[k] = d[a];
    }
    return set(c, 0, dt, r, out);
}

static kiln_status rule_flatten(struct kiln_ictx *c)
{
    int r;
    const struct kiln_dim *d;
    kiln_dtype dt = kiln_ic_in_dtype(c, 0);
    if (!shp(c, 0, &r, &d)) return set(c, 0, dt, 2, (struct kiln_dim[]){kiln_dim_unknown(), kiln_dim_unknown()});
    int64_t axis = kiln_ic_attr_i(c, "axis", 1);
    if (axis < 0) axis += r;
    if (axis < 0 || axis > r) {
        kiln_ic_problem(c, "axis %lld is out of range for rank %d", (long long)kiln_ic_attr_i(c, "axis", 1), r);
        return KILN_OK;
    }
    struct kiln_dim out[2] = {prod(c, d, 0, (int)axis), prod(c, d, (int)axis, r)};
    return set(c, 0, dt, 2, out);
}

static kiln_status rule_split(struct kiln_ictx *c)
{
    int r;
    const struct kiln_dim *d;
    kiln_dtype dt = kiln_ic_in_dtype(c, 0);
    size_t no = c->n_out;
    if (!shp(c, 0, &r, &d)) {
        for (size_t o = 0; o < no; o++) KILN_TRY(set(c, o, dt, -1, NULL));
        return KILN_OK;
    }
    int ax;
    if (!kiln_ic_axis(c, kiln_ic_attr_i(c, "axis", 0), r, &ax)) return KILN_OK;
    int64_t sizes[256];
    size_t ns = 0;
    bool have = false, present = false;
    if (c->opset >= 13) {
        present = kiln_ic_in(c, 1) != NULL;
        have = present && kiln_ic_ints(c, 1, sizes, 256, &ns);
    } else {
        const int64_t *a;
        ns = kiln_ic_attr_ints(c, "split", &a);
        present = kiln_ic_attr_has(c, "split");
        if (present && ns <= 256) {
            memcpy(sizes, a, ns * sizeof *a);
            have = true;
        } else if (c->opset < 2 && kiln_ic_in(c, 1)) {
            present = true;
            have = kiln_ic_ints(c, 1, sizes, 256, &ns);
        }
    }
    struct kiln_dim out[MAXR];
    memcpy(out, d, (size_t)r * sizeof *d);
    if (present && have) {
        if (ns != no) {
            kiln_ic_problem(c, "split has %zu sizes for %zu outputs", ns, no);
            return KILN_OK;
        }
        int64_t sum = 0, dim;
        for (size_t o = 0; o < ns; o++) {
            if (sizes[o] < 0 || __builtin_add_overflow(sum, sizes[o], &sum)) {
                kiln_ic_problem(c, "split size %lld is invalid", (long long)sizes[o]);
                return KILN_OK;
            }
        }
        if (kiln_dim_int_value(d[ax], &dim) && dim != sum) {
            kiln_ic_problem(c, "split sizes add up to %lld; axis %d has %lld", (long long)sum, ax,
                            (long long)dim);
            return KILN_OK;
        }
        for (size_t o = 0; o < no; o++) {
            out[ax] = kiln_dim_int(sizes[o]);
            KILN_TRY(set(c, o, dt, r, out));
        }
        return KILN_OK;
    }
    if (present) { /* sizes given but not known */
        out[ax] = kiln_dim_unknown();
        for (size_t o = 0; o < no; o++) KILN_TRY(set(c, o, dt, r, out));
        return KILN_OK;
    }
    int64_t parts = c->opset >= 18 ? kiln_ic_attr_i(c, "num_outputs", (int64_t)no) : (int64_t)no;
    if (parts < 1 || (size_t)parts != no) {
        kiln_ic_problem(c, "num_outputs is %lld but the node has %zu outputs", (long long)parts, no);
        return KILN_OK;
    }
    int64_t dim;
    if (kiln_dim_int_value(d[ax], &dim)) {
        if (c->opset < 18 && dim % parts != 0) {
            kiln_ic_problem(c, "axis %d of size %lld cannot be split into %lld equal parts", ax,
                            (long long)dim, (long long)parts);
            return KILN_OK;
        }
        int64_t each = (dim + parts - 1) / parts;
        for (size_t o = 0; o < no; o++) {
            int64_t left = dim - each * (int64_t)o;
            out[ax] = kiln_dim_int(left < each ? (left < 0 ? 0 : left) : each);
            KILN_TRY(set(c, o, dt, r, out));
        }
        return KILN_OK;
    }
    if (c->opset < 18) { /* must divide evenly */
        out[ax] = kiln_sym_floordiv(c->inf, d[ax], kiln_dim_int(parts));
        for (size_t o = 0; o < no; o++) KILN_TRY(set(c, o, dt, r, out));
        return KILN_OK;
    }
    /* Split-18: ceil(d/n) each, the last one takes what is left */
    struct kiln_dim each = kiln_sym_ceildiv(c->inf, d[ax], kiln_dim_int(parts));
    for (size_t o = 0; o < no; o++) {
        out[ax] = o + 1 < no ? each
                             : kiln_sym_sub(c->inf, d[ax], kiln_sym_mul(c->inf, each, kiln_dim_int(parts - 1)));
        KILN_TRY(set(c, o, dt, r, out));
    }
    return KILN_OK;
}

static kiln_status rule_tile(struct kiln_ictx *c)
{
    int r;
    const struct kiln_dim *d;
    kiln_dtype dt = kiln_ic_in_dtype(c, 0);
    if (!shp(c, 0, &r, &d)) return set(c, 0, dt, -1, NULL);
    struct kiln_dim out[MAXR];
    int n;
    const struct kiln_dim *v;
    if (c->opset < 6) { /* Tile-1: tiles and axis inputs */
        for (int k = 0; k < r; k++) out[k] = kiln_dim_unknown();
        return set(c, 0, dt, r, out);
    }
    if (!kiln_ic_vals(c, 1, &n, &v)) {
        for (int k = 0; k < r; k++) out[k] = kiln_dim_unknown();
        return set(c, 0, dt, r, out);
    }
    if (n != r) {
        kiln_ic_problem(c, "repeats has %d entries for an input of rank %d", n, r);
        return KILN_OK;
    }
    for (int k = 0; k < r; k++) out[k] = kiln_sym_mul(c->inf, d[k], v[k]);
    return set(c, 0, dt, r, out);
}

static kiln_status rule_pad(struct kiln_ictx *c)
{
    int r;
    const struct kiln_dim *d;
    kiln_dtype dt = kiln_ic_in_dtype(c, 0);
    if (!shp(c, 0, &r, &d)) return set(c, 0, dt, -1, NULL);
    struct kiln_dim out[MAXR];
    int64_t pads[2 * MAXR], axes[MAXR];
    size_t np = 0, na = 0;
    bool ok;
    if (c->opset < 11) {
        const int64_t *a;
        np = kiln_ic_attr_ints(c, c->opset < 2 ? "paddings" : "pads", &a);
        ok = np <= 2 * MAXR;
        if (ok) memcpy(pads, a, np * sizeof *a);
    } else {
        ok = kiln_ic_ints(c, 1, pads, 2 * MAXR, &np);
    }
    bool have_axes = c->opset >= 18 && kiln_ic_in(c, 3) != NULL;
    if (ok && have_axes) ok = kiln_ic_ints(c, 3, axes, MAXR, &na);
    if (!ok) {
        for (int k = 0; k < r; k++) out[k] = kiln_dim_unknown();
        return set(c, 0, dt, r, out);
    }
    if (!have_axes) {
        na = (size_t)r;
        for (int k = 0; k < r; k++) axes[k] = k;
    }
    if (np != 2 * na) {
        kiln_ic_problem(c, "pads has %zu entries; expected %zu", np, 2 * na);
        return KILN_OK;
    }
    memcpy(out, d, (size_t)r * sizeof *d);
    for (size_t i = 0; i < na; i++) {
        int a;
        if (!kiln_ic_axis(c, axes[i], r, &a)) return KILN_OK;
        struct kiln_dim x = kiln_sym_add(c->inf, d[a], kiln_sym_int(c->inf, pads[i]));
        x = kiln_sym_add(c->inf, x, kiln_sym_int(c->inf, pads[i + na]));
        int64_t v;
        if (kiln_dim_int_value(x, &v) && v < 0) {
            kiln_ic_problem(c, "pads make axis %d negative (%lld)", a, (long long)v);
            return KILN_OK;
        }
        out[a] = x;
    }
    return set(c, 0, dt, r, out);
}

static kiln_status rule_expand(struct kiln_ictx *c)
{
    int r;
    const struct kiln_dim *d;
    kiln_dtype dt = kiln_ic_in_dtype(c, 0);
    int n;
    const struct kiln_dim *v;
    if (!kiln_ic_vals(c, 1, &n, &v)) {
        int rs;
        const struct kiln_dim *ds;
        if (shp(c, 1, &rs, &ds) && rs == 1 && ds[0].value >= 0 && shp(c, 0, &r, &d)) {
            int64_t ro = ds[0].value > r ? ds[0].value : r;
            if (ro <= MAXR) {
                struct kiln_dim out[MAXR];
                for (int k = 0; k < ro; k++) out[k] = kiln_dim_unknown();
                return set(c, 0, dt, (int)ro, out);
            }
        }
        return set(c, 0, dt, -1, NULL);
    }
    if (n > MAXR) {
        kiln_ic_problem(c, "shape has %d entries; kiln's rank limit is %d", n, MAXR);
        return KILN_OK;
    }
    struct kiln_dim sv[MAXR], out[MAXR];
    for (int k = 0; k < n; k++) {
        int64_t x;
        sv[k] = v[k];
        if (kiln_dim_int_value(v[k], &x) && x < 0) {
            kiln_ic_problem(c, "shape[%d] is %lld", k, (long long)x);
            return KILN_OK;
        }
    }
    if (!shp(c, 0, &r, &d)) return set(c, 0, dt, -1, NULL);
    int ro;
    if (!ru_bcast(c, "input and shape", r, d, n, sv, &ro, out)) return KILN_OK;
    return set(c, 0, dt, ro, out);
}

static kiln_status rule_depth_space(struct kiln_ictx *c)
{
    int r;
    const struct kiln_dim *d;
    kiln_dtype dt = kiln_ic_in_dtype(c, 0);
    bool to_space = strcmp(c->node->op_type, "DepthToSpace") == 0;
    if (!shp(c, 0, &r, &d)) return set(c, 0, dt, 4, (struct kiln_dim[]){{-1, 0}, {-1, 0}, {-1, 0}, {-1, 0}});
    if (r != 4) {
        kiln_ic_problem(c, "input has rank %d; expected 4 (N, C, H, W)", r);
        return KILN_OK;
    }
    int64_t b = kiln_ic_attr_i(c, "blocksize", 0);
    if (b <= 0 || b > (1 << 20)) {
        kiln_ic_problem(c, "blocksize %lld is invalid", (long long)b);
        return KILN_OK;
    }
    struct kiln_dim bb = kiln_dim_int(b), b2 = kiln_dim_int(b * b), out[4];
    int64_t x;
    out[0] = d[0];
    if (to_space) {
        if (kiln_dim_int_value(d[1], &x) && x % (b * b)) {
            kiln_ic_problem(c, "channels %lld are not divisible by blocksize^2 %lld", (long long)x,
                            (long long)(b * b));
            return KILN_OK;
        }
        out[1] = kiln_sym_floordiv(c->inf, d[1], b2);
        out[2] = kiln_sym_mul(c->inf, d[2], bb);
        out[3] = kiln_sym_mul(c->inf, d[3], bb);
    } else {
        for (int k = 2; k < 4; k++)
            if (kiln_dim_int_value(d[k], &x) && x % b) {
                kiln_ic_problem(c, "dim %d (%lld) is not divisible by blocksize %lld", k, (long long)x,
                                (long long)b);
                return KILN_OK;
            }
        out[1] = kiln_sym_mul(c->inf, d[1], b2);
        out[2] = kiln_sym_floordiv(c->inf, d[2], bb);
        out[3] = kiln_sym_floordiv(c->inf, d[3], bb);
    }
    return set(c, 0, dt, 4, out);
}

/* ------------------------------------------------------------------ generators */

static kiln_status rule_constant_of_shape(struct kiln_ictx *c)
{
    kiln_dtype dt = KILN_DTYPE_F32;
    const struct kiln_attr *a = kiln_node_attr(c->node, "value");
    if (a && a->type == KILN_ATTR_TENSOR && a->t) dt = a->t->dtype;
    int n;
    const struct kiln_dim *v;
    if (kiln_ic_vals(c, 0, &n, &v)) {
        if (n > MAXR) {
            kiln_ic_problem(c, "shape has %d entries; kiln's rank limit is %d", n, MAXR);
            return KILN_OK;
        }
        for (int k = 0; k < n; k++) {
            int64_t x;
            if (kiln_dim_int_value(v[k], &x) && x < 0) {
                kiln_ic_problem(c, "shape[%d] is %lld", k, (long long)x);
                return KILN_OK;
            }
        }
        return set(c, 0, dt, n, v);
    }
    int rs;
    const struct kiln_dim *ds;
    if (shp(c, 0, &rs, &ds) && rs == 1 && ds[0].value >= 0 && ds[0].value <= MAXR) {
        struct kiln_dim out[MAXR];
        for (int k = 0; k < ds[0].value; k++) out[k] = kiln_dim_unknown();
        return set(c, 0, dt, (int)ds[0].value, out);
    }
    return set(c, 0, dt, -1, NULL);
}

static kiln_status rule_range(struct kiln_ictx *c)
{
    kiln_dtype dt = kiln_ic_in_dtype(c, 0);
    struct kiln_dim n = kiln_dim_unknown();
    int k0, k1, k2;
    const struct kiln_dim *s, *l, *dl;
    if (kiln_ic_vals(c, 0, &k0, &s) && kiln_ic_vals(c, 1, &k1, &l) && kiln_ic_vals(c, 2, &k2, &dl) &&
        k0 == 1 && k1 == 1 && k2 == 1 && kiln_dtype_is_int(dt)) {
        int64_t step;
        if (kiln_dim_int_value(dl[0], &step) && step != 0) {
            struct kiln_dim span = kiln_sym_sub(c->inf, l[0], s[0]);
            int64_t sv;
            if (kiln_dim_int_value(span, &sv)) {
                int64_t cnt = step > 0 ? (sv <= 0 ? 0 : (sv - 1) / step + 1)
                              : step == INT64_MIN || sv == INT64_MIN ? (sv < 0 ? 1 : 0)
                                                 : (sv >= 0 ? 0 : (-sv - 1) / (-step) + 1);
                n = kiln_dim_int(cnt);
            } else if (step > 0) {
                n = kiln_sym_ceildiv(c->inf, span, kiln_dim_int(step));
            }
        }
    }
    KILN_TRY(set(c, 0, dt, 1, &n));
    if (!kiln_dim_defined(n)) kiln_ic_data_dependent(c, 0);
    return KILN_OK;
}

static kiln_status rule_eye_like(struct kiln_ictx *c)
{
    kiln_dtype dt = ru_attr_dtype(c, "dtype");
    return ru_like(c, 0, 0, dt);
}

static kiln_status rule_onehot(struct kiln_ictx *c)
{
    int r;
    const struct kiln_dim *d;
    kiln_dtype dt = kiln_ic_in_dtype(c, 2);
    if (!shp(c, 0, &r, &d) || r + 1 > MAXR) return set(c, 0, dt, -1, NULL);
    int ax;
    if (!kiln_ic_axis(c, kiln_ic_attr_i(c, "axis", -1), r + 1, &ax)) return KILN_OK;
    int n;
    const struct kiln_dim *v;
    struct kiln_dim depth = kiln_dim_unknown();
    if (kiln_ic_vals(c, 1, &n, &v) && n == 1) depth = v[0];
    else {
        const struct kiln_tensor *t = kiln_ic_const(c, 1);
        if (t && kiln_tensor_numel(t) == 1 && t->data) {
            double x = t->dtype == KILN_DTYPE_F32 ? ((const float *)t->data)[0]
                       : t->dtype == KILN_DTYPE_F64 ? ((const double *)t->data)[0] : -1;
            if (x >= 0 && x < 1e15) depth = kiln_dim_int((int64_t)x);
        }
    }
    struct kiln_dim out[MAXR];
    for (int k = 0, j = 0; k <= r; k++) out[k] = k == ax ? depth : d[j++];
    return set(c, 0, dt, r + 1, out);
}

static kiln_status rule_constant(struct kiln_ictx *c)
{
    for (size_t k = 0; k < c->node->n_attr; k++) {
        const struct kiln_attr *a = &c->node->attrs[k];
        if (!a->name) continue;
        if (strcmp(a->name, "value") == 0 && a->type == KILN_ATTR_TENSOR && a->t) {
            struct kiln_vtype *o = c->n_out ? c->out[0] : NULL;
            if (!o) return KILN_OK;
            /* borrowed: attribute tensors live as long as the model */
            struct kiln_dim dims[MAXR];
            if (a->t->rank < 0 || a->t->rank > MAXR) return KILN_OK;
            for (int i = 0; i < a->t->rank; i++) dims[i] = kiln_dim_int(a->t->dims[i]);
            KILN_TRY(set(c, 0, a->t->dtype, a->t->rank, dims));
            o->konst = a->t;
            if (a->t->rank <= 1 && kiln_dtype_is_int(a->t->dtype) &&
                kiln_tensor_numel(a->t) <= KILN_INFER_MAX_VALS) {
                int64_t v[KILN_INFER_MAX_VALS];
                size_t n;
                struct kiln_dim vd[KILN_INFER_MAX_VALS];
                o->konst = NULL; /* read it through kiln_ic_ints's tensor path */
                const struct kiln_vtype tmp = {.konst = a->t, .n_vals = -1};
                const struct kiln_vtype *tin[1] = {&tmp};
                struct kiln_ictx c2 = *c;
                c2.in = tin;
                c2.n_in = 1;
                if (kiln_ic_ints(&c2, 0, v, KILN_INFER_MAX_VALS, &n)) {
                    for (size_t i = 0; i < n; i++) vd[i] = kiln_sym_int(c->inf, v[i]);
                    KILN_TRY(kiln_ic_set_vals(c, 0, (int)n, vd));
                }
                o->konst = a->t;
            }
            return KILN_OK;
        }
        if (strcmp(a->name, "sparse_value") == 0 && a->type == KILN_ATTR_SPARSE_TENSOR && a->sp) {
            struct kiln_dim dims[MAXR];
            if (a->sp->rank < 0 || a->sp->rank > MAXR) return KILN_OK;
            for (int i = 0; i < a->sp->rank; i++) dims[i] = kiln_dim_int(a->sp->dims[i]);
            return set(c, 0, a->sp->values.dtype, a->sp->rank, dims);
        }
        /* value_float(s), value_int(s), value_string(s): the CPU kernel evaluates these
         * (no inputs: always constant); their types: */
        if (strcmp(a->name, "value_float") == 0) return set(c, 0, KILN_DTYPE_F32, 0, NULL);
        if (strcmp(a->name, "value_int") == 0) {
            KILN_TRY(set(c, 0, KILN_DTYPE_I64, 0, NULL));
            struct kiln_dim v = kiln_sym_int(c->inf, a->i);
            return kiln_ic_set_vals(c, 0, 1, &v);
        }
        if (strcmp(a->name, "value_string") == 0) return set(c, 0, KILN_DTYPE_STRING, 0, NULL);
        if (strcmp(a->name, "value_floats") == 0)
            return set(c, 0, KILN_DTYPE_F32, 1, (struct kiln_dim[]){kiln_dim_int((int64_t)a->n)});
        if (strcmp(a->name, "value_strings") == 0)
            return set(c, 0, KILN_DTYPE_STRING, 1, (struct kiln_dim[]){kiln_dim_int((int64_t)a->n)});
        if (strcmp(a->name, "value_ints") == 0) {
            KILN_TRY(set(c, 0, KILN_DTYPE_I64, 1, (struct kiln_dim[]){kiln_dim_int((int64_t)a->n)}));
            if (a->n > KILN_INFER_MAX_VALS || (a->n && !a->ints)) return KILN_OK;
            struct kiln_dim vd[KILN_INFER_MAX_VALS];
            for (size_t i = 0; i < a->n; i++) vd[i] = kiln_sym_int(c->inf, a->ints[i]);
            return kiln_ic_set_vals(c, 0, (int)a->n, vd);
        }
    }
    return KILN_OK;
}

/* ------------------------------------------------------------------ data-dependent */

static kiln_status rule_nonzero(struct kiln_ictx *c)
{
    int r = kiln_ic_in_rank(c, 0);
    struct kiln_dim out[2] = {r >= 0 ? kiln_dim_int(r) : kiln_dim_unknown(), kiln_sym_fresh(c->inf, "NonZero")};
    KILN_TRY(set(c, 0, KILN_DTYPE_I64, 2, out));
    kiln_ic_data_dependent(c, 0);
    return KILN_OK;
}

static kiln_status rule_unique(struct kiln_ictx *c)
{
    int r;
    const struct kiln_dim *d;
    kiln_dtype dt = kiln_ic_in_dtype(c, 0);
    struct kiln_dim u = kiln_sym_fresh(c->inf, "Unique");
    bool has_axis = kiln_ic_attr_has(c, "axis");
    bool known = shp(c, 0, &r, &d);
    struct kiln_dim out[MAXR], inv = kiln_dim_unknown();
    if (has_axis && known) {
        int ax;
        if (!kiln_ic_axis(c, kiln_ic_attr_i(c, "axis", 0), r, &ax)) return KILN_OK;
        memcpy(out, d, (size_t)r * sizeof *d);
        out[ax] = u;
        inv = d[ax];
        KILN_TRY(set(c, 0, dt, r, out));
    } else if (has_axis) {
        KILN_TRY(set(c, 0, dt, -1, NULL));
    } else {
        KILN_TRY(set(c, 0, dt, 1, &u));
        if (known) inv = prod(c, d, 0, r);
    }
    KILN_TRY(set(c, 1, KILN_DTYPE_I64, 1, &u));
    KILN_TRY(set(c, 2, KILN_DTYPE_I64, 1, &inv));
    KILN_TRY(set(c, 3, KILN_DTYPE_I64, 1, &u));
    kiln_ic_data_dependent(c, 0);
    kiln_ic_data_dependent(c, 1);
    kiln_ic_data_dependent(c, 3);
    return KILN_OK;
}

static kiln_status rule_compress(struct kiln_ictx *c)
{
    int r;
    const struct kiln_dim *d;
    kiln_dtype dt = kiln_ic_in_dtype(c, 0);
    struct kiln_dim u = kiln_sym_fresh(c->inf, "Compress");
    if (!kiln_ic_attr_has(c, "axis")) {
        KILN_TRY(set(c, 0, dt, 1, &u));
    } else if (shp(c, 0, &r, &d)) {
        int ax;
        if (!kiln_ic_axis(c, kiln_ic_attr_i(c, "axis", 0), r, &ax)) return KILN_OK;
        struct kiln_dim out[MAXR];
        memcpy(out, d, (size_t)r * sizeof *d);
        out[ax] = u;
        KILN_TRY(set(c, 0, dt, r, out));
    } else {
        KILN_TRY(set(c, 0, dt, -1, NULL));
    }
    kiln_ic_data_dependent(c, 0);
    return KILN_OK;
}

/* ------------------------------------------------------------------ Resize, Where, misc */

static float scale_at(const struct kiln_tensor *t, size_t i)
{
    if (t->dtype == KILN_DTYPE_F32) return ((const float *)t->data)[i];
    if (t->dtype == KILN_DTYPE_F64) return (float)((const double *)t->data)[i];
    if (t->dtype == KILN_DTYPE_F16) return kiln_f16_to_f32(((const uint16_t *)t->data)[i]);
    return -1;
}

static kiln_status rule_resize(struct kiln_ictx *c)
{
    int r;
    const struct kiln_dim *d;
    kiln_dtype dt = kiln_ic_in_dtype(c, 0);
    if (!shp(c, 0, &r, &d)) return set(c, 0, dt, -1, NULL);
    struct kiln_dim out[MAXR];
    for (int k = 0; k < r; k++) out[k] = kiln_dim_unknown();
    bool upsample = strcmp(c->node->op_type, "Upsample") == 0;
    size_t scales_in = upsample ? 1 : c->opset < 11 ? 1 : 2;
    int64_t axes[MAXR];
    size_t na = (size_t)r;
    for (int k = 0; k < r; k++) axes[k] = k;
    if (!upsample && c->opset >= 18) {
        const int64_t *a;
        size_t n = kiln_ic_attr_ints(c, "axes", &a);
        if (kiln_ic_attr_has(c, "axes")) {
            if (n > MAXR) return KILN_OK;
            for (size_t i = 0; i < n; i++) {
                int x;
                if (!kiln_ic_axis(c, a[i], r, &x)) return KILN_OK;
                axes[i] = x;
            }
            na = n;
        }
    }
    /* sizes (Resize-11+: input 3) */
    int64_t sizes[MAXR];
    size_t ns;
    if (!upsample && c->opset >= 11 && kiln_ic_in(c, 3) && kiln_ic_ints(c, 3, sizes, MAXR, &ns)) {
        if (ns != na) {
            kiln_ic_problem(c, "sizes has %zu entries for %zu axes", ns, na);
            return KILN_OK;
        }
        memcpy(out, d, (size_t)r * sizeof *d);
        const char *policy = c->opset >= 18 ? kiln_ic_attr_s(c, "keep_aspect_ratio_policy", "stretch") : "stretch";
        if (strcmp(policy, "stretch") == 0) {
            for (size_t i = 0; i < na; i++) out[axes[i]] = kiln_dim_int(sizes[i]);
            return set(c, 0, dt, r, out);
        }
        bool larger = strcmp(policy, "not_smaller") == 0;
        double sc = larger ? 0 : 1e300;
        for (size_t i = 0; i < na; i++) {
            int64_t x;
            if (!kiln_dim_int_value(d[axes[i]], &x) || x == 0) {
                for (size_t j = 0; j < na; j++) out[axes[j]] = kiln_dim_unknown();
                return set(c, 0, dt, r, out);
            }
            double s = (double)sizes[i] / (double)x;
            sc = larger ? (s > sc ? s : sc) : (s < sc ? s : sc);
        }
        for (size_t i = 0; i < na; i++) {
            double v = floor(sc * (double)d[axes[i]].value + 0.5);
            out[axes[i]] = v >= 0 && v <= 1e15 ? kiln_dim_int((int64_t)v) : kiln_dim_unknown();
        }
        return set(c, 0, dt, r, out);
    }
    /* scales */
    const struct kiln_tensor *st = NULL;
    float attr_sc[MAXR];
    size_t nsc = 0;
    if (upsample && c->opset < 9) {
        const struct kiln_attr *a = kiln_node_attr(c->node, "scales");
        if (a && a->type == KILN_ATTR_FLOATS && a->n <= MAXR && a->floats) {
            nsc = a->n;
            memcpy(attr_sc, a->floats, nsc * sizeof(float));
        }
    } else {
        st = kiln_ic_const(c, scales_in);
        if (st && st->data && kiln_tensor_numel(st) <= MAXR) {
            nsc = kiln_tensor_numel(st);
            for (size_t i = 0; i < nsc; i++) attr_sc[i] = scale_at(st, i);
        }
    }
    if (nsc == 0) {
        if (!kiln_ic_in(c, scales_in) && !upsample && c->opset >= 11 && kiln_ic_in(c, 3)) { /* unknown sizes */
            return set(c, 0, dt, r, out);
        }
        return set(c, 0, dt, r, out);
    }
    if (nsc != na) {
        kiln_ic_problem(c, "scales has %zu entries for %zu axes", nsc, na);
        return KILN_OK;
    }
    memcpy(out, d, (size_t)r * sizeof *d);
    for (size_t i = 0; i < na; i++) {
        float s = attr_sc[i];
        struct kiln_dim x = d[axes[i]];
        int64_t v;
        if (!(s > 0) || s > 1e9f) {
            kiln_ic_problem(c, "scale %g is invalid", (double)s);
            return KILN_OK;
        }
        if (kiln_dim_int_value(x, &v)) {
            double o = floor((double)v * (double)s + 1e-9 * 0);
            out[axes[i]] = o < 0 || o > 1e15 ? kiln_dim_unknown() : kiln_dim_int((int64_t)o);
        } else if (s == floorf(s)) {
            out[axes[i]] = kiln_sym_mul(c->inf, x, kiln_dim_int((int64_t)s));
        } else {
            out[axes[i]] = kiln_dim_unknown();
        }
    }
    return set(c, 0, dt, r, out);
}

static kiln_status rule_where(struct kiln_ictx *c)
{
    kiln_dtype dt = kiln_ic_in_dtype(c, 1);
    if (dt == KILN_DTYPE_UNDEFINED) dt = kiln_ic_in_dtype(c, 2);
    int r;
    struct kiln_dim out[MAXR];
    size_t ins[3] = {0, 1, 2};
    bool known = true;
    for (size_t i = 0; i < 3; i++) known = known && kiln_ic_in_rank(c, i) >= 0;
    if (!known || !kiln_ic_broadcast(c, 3, ins, &r, out)) return set(c, 0, dt, -1, NULL);
    return set(c, 0, dt, r, out);
}

static kiln_status rule_grid_sample(struct kiln_ictx *c)
{
    int r, rg;
    const struct kiln_dim *d, *g;
    kiln_dtype dt = kiln_ic_in_dtype(c, 0);
    if (!shp(c, 0, &r, &d) || !shp(c, 1, &rg, &g) || r < 3 || rg != r) return set(c, 0, dt, r >= 0 ? r : -1, NULL);
    struct kiln_dim out[MAXR];
    out[0] = d[0];
    out[1] = d[1];
    for (int k = 2; k < r; k++) out[k] = g[k - 1];
    return set(c, 0, dt, r, out);
}

static kiln_status rule_center_crop_pad(struct kiln_ictx *c)
{
    int r;
    const struct kiln_dim *d;
    kiln_dtype dt = kiln_ic_in_dtype(c, 0);
    int n;
    const struct kiln_dim *v;
    if (!shp(c, 0, &r, &d)) return set(c, 0, dt, -1, NULL);
    struct kiln_dim out[MAXR];
    memcpy(out, d, (size_t)r * sizeof *d);
    const int64_t *a;
    size_t na = kiln_ic_attr_ints(c, "axes", &a);
    bool has_axes = kiln_ic_attr_has(c, "axes");
    if (!kiln_ic_vals(c, 1, &n, &v)) {
        for (int k = 0; k < r; k++)
            if (!has_axes) out[k] = kiln_dim_unknown();
        for (size_t i = 0; has_axes && i < na; i++) {
            int x;
            if (!kiln_ic_axis(c, a[i], r, &x)) return KILN_OK;
            out[x] = kiln_dim_unknown();
        }
        return set(c, 0, dt, r, out);
    }
    if ((has_axes && (size_t)n != na) || (!has_axes && n != r)) {
        kiln_ic_problem(c, "shape has %d entries for %zu axes", n, has_axes ? na : (size_t)r);
        return KILN_OK;
    }
    for (int i = 0; i < n; i++) {
        int x = i;
        if (has_axes && !kiln_ic_axis(c, a[i], r, &x)) return KILN_OK;
        out[x] = v[i];
    }
    return set(c, 0, dt, r, out);
}

const struct kiln_infer_op kiln_infer_ops_shape[] = {
    {"Shape", "", 1, 0, rule_shape},
    {"Size", "", 1, 0, rule_size},
    {"Reshape", "", 1, 0, rule_reshape},
    {"Concat", "", 1, 0, rule_concat},
    {"Gather", "", 1, 0, rule_gather},
    {"GatherElements", "", 11, 0, rule_gather_elements},
    {"GatherND", "", 11, 0, rule_gather_nd},
    {"Scatter", "", 9, 10, rule_like_data},
    {"ScatterElements", "", 11, 0, rule_like_data},
    {"ScatterND", "", 11, 0, rule_like_data},
    {"TensorScatter", "", 24, 0, rule_like_data},
    {"ReverseSequence", "", 10, 0, rule_like_data},
    {"Trilu", "", 14, 0, rule_like_data},
    {"Slice", "", 1, 0, rule_slice},
    {"Unsqueeze", "", 1, 0, rule_unsqueeze},
    {"Squeeze", "", 1, 0, rule_squeeze},
    {"Transpose", "", 1, 0, rule_transpose},
    {"Flatten", "", 1, 0, rule_flatten},
    {"Split", "", 1, 0, rule_split},
    {"Tile", "", 1, 0, rule_tile},
    {"Pad", "", 1, 0, rule_pad},
    {"Expand", "", 8, 0, rule_expand},
    {"DepthToSpace", "", 1, 0, rule_depth_space},
    {"SpaceToDepth", "", 1, 0, rule_depth_space},
    {"ConstantOfShape", "", 9, 0, rule_constant_of_shape},
    {"Range", "", 11, 0, rule_range},
    {"EyeLike", "", 9, 0, rule_eye_like},
    {"OneHot", "", 9, 0, rule_onehot},
    {"Constant", "", 1, 0, rule_constant},
    {"NonZero", "", 9, 0, rule_nonzero},
    {"Unique", "", 11, 0, rule_unique},
    {"Compress", "", 9, 0, rule_compress},
    {"Resize", "", 10, 0, rule_resize},
    {"Upsample", "", 7, 9, rule_resize},
    {"Where", "", 9, 0, rule_where},
    {"GridSample", "", 16, 0, rule_grid_sample},
    {"CenterCropPad", "", 18, 0, rule_center_crop_pad},
    {NULL, NULL, 0, 0, NULL},
};
