/* src/cpu/ops/tensor.c: ONNX shape and data-movement ops, every opset version, all dtypes.
 *
 * Follows docs/Operators.md and docs/Changelog.md of onnx/onnx for: Reshape (1: `shape`
 * attribute; 5+: input; 14+: allowzero), Flatten, Squeeze / Unsqueeze (attribute axes up to
 * 11, input from 13), Shape (start/end from 15), Size, Transpose, Concat, Split (1: split
 * input or attribute; 2, 11: attribute; 13: input; 18: num_outputs), Slice (1: attributes;
 * 10+: inputs, negative steps, numpy clamping), Expand, Tile (1: scalar tiles/axis inputs; 6+:
 * repeats), Pad (1: paddings; 2: pads attribute; 11: inputs; 18: axes; 19: wrap),
 * DepthToSpace (DCR/CRD) and SpaceToDepth. The other ops of this family live in
 * tensor_misc.c and tensor_resize.c; their run functions are declared in tensor_ops.h and
 * listed in this file's table so that the family stays one table.
 *
 * Everything here moves whole elements by size, so any dtype works; STRING tensors move
 * their pointers and then own copies of the strings (kiln_tops_own_strings). Shapes read from
 * tensors are checked (negative dims, element count limits) before anything is allocated.
 *
 * Attributes are decoded by prepare (tensor_ops.h, "Prepared kernels"). Reshape, Flatten,
 * Squeeze and Unsqueeze only relabel the shape and copy the bytes unchanged, so they are
 * marked KILN_OP_INPLACE: when the planner puts output 0 over input 0 the copy is skipped.
 */
#include <string.h>

#include "cpu/ops/tensor_ops.h"

/* ------------------------------------------------------------------ Reshape */

/* Opset 1..4: the `shape` attribute; 14+: allowzero. */
struct reshape_state {
    const int64_t *shape;
    size_t n;
    bool allowzero;
};

static kiln_status decode_reshape(struct kiln_kctx *k, struct reshape_state *s)
{
    s->shape = NULL;
    s->n = 0;
    s->allowzero = k->opset >= 14 && kiln_attr_i(k, "allowzero", 0) != 0;
    if (k->opset < 5) {
        s->n = kiln_attr_ints(k, "shape", &s->shape);
        if (s->n > KILN_MAX_RANK)
            return kiln_kfail(k, KILN_E_LIMIT, "attribute 'shape' has %zu dims; limit is %d", s->n,
                              KILN_MAX_RANK);
    }
    return KILN_OK;
}

KILN_PREPARE_WITH(reshape_prepare, struct reshape_state, decode_reshape)

static kiln_status reshape_run(struct kiln_kctx *k)
{
    struct reshape_state dec;
    const struct reshape_state *rs;
    KILN_STATE_OR_DECODE(k, decode_reshape, dec, rs);
    const struct kiln_tensor *x;
    KILN_TRY(kiln_in_req(k, 0, &x));
    int64_t shape[KILN_MAX_RANK];
    size_t n;
    if (k->opset < 5) {
        n = rs->n;
        for (size_t i = 0; i < n; i++) shape[i] = rs->shape[i];
    } else {
        const struct kiln_tensor *s;
        KILN_TRY(kiln_in_req(k, 1, &s));
        KILN_TRY(kiln_tops_read_ints(k, s, "shape", shape, KILN_MAX_RANK, &n));
    }
    bool allowzero = rs->allowzero;
    int neg = -1;
    uint64_t known = 1;
    for (size_t i = 0; i < n; i++) {
        if (shape[i] == 0 && !allowzero) {
            if ((int)i >= x->rank)
                return kiln_kfail(k, KILN_E_INVALID_ARG,
                                  "shape[%zu] is 0 (copy input dim) but the input has rank %d", i,
                                  x->rank);
            shape[i] = x->dims[i];
        } else if (shape[i] == -1) {
            if (neg >= 0)
                return kiln_kfail(k, KILN_E_INVALID_ARG, "shape has -1 at both %d and %zu", neg, i);
            neg = (int)i;
            continue;
        } else if (shape[i] < 0) {
            return kiln_kfail(k, KILN_E_INVALID_ARG, "shape[%zu] is %lld; expected >= -1", i,
                              (long long)shape[i]);
        }
        if (shape[i] && known > KILN_MAX_NUMEL / (uint64_t)shape[i])
            return kiln_kfail(k, KILN_E_LIMIT, "shape exceeds %llu elements",
                              (unsigned long long)KILN_MAX_NUMEL);
        known *= (uint64_t)shape[i];
    }
    uint64_t numel = kiln_tensor_numel(x);
    if (neg >= 0) {
        if (known == 0 || numel % known != 0) {
            char sb[200];
            return kiln_kfail(k, KILN_E_INVALID_ARG,
                              "cannot infer the -1 dim: input %s has %llu elements, not a "
                              "multiple of %llu",
                              kiln_shape_str(x->rank, x->dims, sb, sizeof sb),
                              (unsigned long long)numel, (unsigned long long)known);
        }
        shape[neg] = (int64_t)(numel / known);
        known = numel;
    }
    if (known != numel) {
        char sa[200], sb[200];
        return kiln_kfail(k, KILN_E_INVALID_ARG, "cannot reshape input %s (%llu elements) to %s",
                          kiln_shape_str(x->rank, x->dims, sa, sizeof sa),
                          (unsigned long long)numel, kiln_shape_str((int)n, shape, sb, sizeof sb));
    }
    return kiln_tops_out_copy(k, 0, x, (int)n, shape);
}

/* ------------------------------------------------------------------ Flatten */

/* The `axis` attribute as written (Flatten, Concat, Split, OneHot, ...). */
struct axis_state {
    int64_t axis;
};

static kiln_status decode_flatten(struct kiln_kctx *k, struct axis_state *s)
{
    s->axis = kiln_attr_i(k, "axis", 1);
    return KILN_OK;
}

KILN_PREPARE_WITH(flatten_prepare, struct axis_state, decode_flatten)

static kiln_status flatten_run(struct kiln_kctx *k)
{
    struct axis_state dec;
    const struct axis_state *as;
    KILN_STATE_OR_DECODE(k, decode_flatten, dec, as);
    const struct kiln_tensor *x;
    KILN_TRY(kiln_in_req(k, 0, &x));
    int64_t axis = as->axis;
    if (axis < 0) axis += x->rank;
    if (axis < 0 || axis > x->rank)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "axis %lld is out of range [%d, %d]",
                          (long long)as->axis, -x->rank, x->rank);
    int64_t d[2] = {1, 1};
    for (int a = 0; a < x->rank; a++) d[a < axis ? 0 : 1] *= x->dims[a];
    return kiln_tops_out_copy(k, 0, x, 2, d);
}

/* ------------------------------------------------------------------ Squeeze / Unsqueeze */

/* The operands of Squeeze/Unsqueeze: input 0 and the axes (n of them; given says whether
 * there were any, even an empty list). */
struct axes_in {
    const struct kiln_tensor *x;
    int64_t axes[KILN_MAX_RANK];
    size_t n;
    bool given;
};

/* Squeeze/Unsqueeze before opset 13: the `axes` attribute (given: present, even empty). */
struct axes_state {
    const int64_t *axes;
    size_t n;
    bool given;
};

static kiln_status decode_axes(struct kiln_kctx *k, struct axes_state *s)
{
    s->axes = NULL;
    s->n = 0;
    s->given = false;
    if (k->opset < 13) {
        s->n = kiln_attr_ints(k, "axes", &s->axes);
        s->given = kiln_attr_has(k, "axes");
        if (s->n > KILN_MAX_RANK)
            return kiln_kfail(k, KILN_E_LIMIT, "attribute 'axes' has %zu entries; limit is %d",
                              s->n, KILN_MAX_RANK);
    }
    return KILN_OK;
}

KILN_PREPARE_WITH(axes_prepare, struct axes_state, decode_axes)

/* Reads input 0 and the axes: the attribute before opset 13, input 1 from 13. */
static kiln_status read_axes(struct kiln_kctx *k, struct axes_in *in)
{
    struct axes_state dec;
    const struct axes_state *as;
    KILN_STATE_OR_DECODE(k, decode_axes, dec, as);
    KILN_TRY(kiln_in_req(k, 0, &in->x));
    in->n = 0;
    in->given = false;
    if (k->opset < 13) {
        in->given = as->given;
        for (size_t i = 0; i < as->n; i++) in->axes[i] = as->axes[i];
        in->n = as->n;
        return KILN_OK;
    }
    const struct kiln_tensor *t = kiln_in(k, 1);
    if (!t) return KILN_OK;
    in->given = true;
    return kiln_tops_read_ints(k, t, "axes", in->axes, KILN_MAX_RANK, &in->n);
}

static kiln_status squeeze_run(struct kiln_kctx *k)
{
    struct axes_in in;
    KILN_TRY(read_axes(k, &in));
    const struct kiln_tensor *x = in.x;
    bool drop[KILN_MAX_RANK] = {0};
    if (!in.given) {
        for (int a = 0; a < x->rank; a++) drop[a] = x->dims[a] == 1;
    } else {
        for (size_t i = 0; i < in.n; i++) {
            int a;
            KILN_TRY(kiln_norm_axis(k, in.axes[i], x->rank, "axes entry", &a));
            if (x->dims[a] != 1)
                return kiln_kfail(k, KILN_E_INVALID_ARG,
                                  "cannot squeeze axis %d: its dim is %lld, not 1", a,
                                  (long long)x->dims[a]);
            drop[a] = true;
        }
    }
    int64_t d[KILN_MAX_RANK];
    int r = 0;
    for (int a = 0; a < x->rank; a++)
        if (!drop[a]) d[r++] = x->dims[a];
    return kiln_tops_out_copy(k, 0, x, r, d);
}

static kiln_status unsqueeze_run(struct kiln_kctx *k)
{
    struct axes_in in;
    KILN_TRY(read_axes(k, &in));
    const struct kiln_tensor *x = in.x;
    if (!in.given) return kiln_kfail(k, KILN_E_INVALID_MODEL, "'axes' is required");
    int r = x->rank + (int)in.n;
    if (r > KILN_MAX_RANK)
        return kiln_kfail(k, KILN_E_LIMIT, "output rank %d exceeds the limit %d", r, KILN_MAX_RANK);
    bool ins[KILN_MAX_RANK] = {0};
    for (size_t i = 0; i < in.n; i++) {
        int a;
        KILN_TRY(kiln_norm_axis(k, in.axes[i], r, "axes entry", &a));
        if (ins[a]) return kiln_kfail(k, KILN_E_INVALID_ARG, "axis %d appears twice in 'axes'", a);
        ins[a] = true;
    }
    int64_t d[KILN_MAX_RANK];
    for (int a = 0, j = 0; a < r; a++) d[a] = ins[a] ? 1 : x->dims[j++];
    return kiln_tops_out_copy(k, 0, x, r, d);
}

/* ------------------------------------------------------------------ Shape / Size */

/* Shape 15+: start, and end when given (absent: the rank). */
struct shape_state {
    int64_t start, end;
    bool has_end;
};

static kiln_status decode_shape(struct kiln_kctx *k, struct shape_state *s)
{
    const struct kiln_attr *end = kiln_node_attr(k->node, "end");
    s->start = kiln_attr_i(k, "start", 0);
    s->has_end = end && end->type == KILN_ATTR_INT;
    s->end = s->has_end ? end->i : 0;
    return KILN_OK;
}

KILN_PREPARE_WITH(shape_prepare, struct shape_state, decode_shape)

static kiln_status shape_run(struct kiln_kctx *k)
{
    struct shape_state dec;
    const struct shape_state *ss;
    KILN_STATE_OR_DECODE(k, decode_shape, dec, ss);
    const struct kiln_tensor *x;
    KILN_TRY(kiln_in_req(k, 0, &x));
    int64_t r = x->rank, start = 0, end = r;
    if (k->opset >= 15) {
        start = ss->start;
        end = ss->has_end ? ss->end : r;
        if (start < 0) start += r;
        if (end < 0) end += r;
        start = start < 0 ? 0 : start > r ? r : start;
        end = end < 0 ? 0 : end > r ? r : end;
    }
    int64_t n = end > start ? end - start : 0;
    struct kiln_tensor *o;
    KILN_TRY(kiln_out_tensor(k, 0, KILN_DTYPE_I64, 1, &n, &o));
    for (int64_t i = 0; i < n; i++) ((int64_t *)o->data)[i] = x->dims[start + i];
    return KILN_OK;
}

static kiln_status size_run(struct kiln_kctx *k)
{
    const struct kiln_tensor *x;
    KILN_TRY(kiln_in_req(k, 0, &x));
    struct kiln_tensor *o;
    KILN_TRY(kiln_out_tensor(k, 0, KILN_DTYPE_I64, 0, NULL, &o));
    *(int64_t *)o->data = (int64_t)kiln_tensor_numel(x);
    return KILN_OK;
}

/* ------------------------------------------------------------------ Transpose */

/* Allocates output 0 with shape dims[0..rank) and fills it from the strided view of x at
 * origin element `origin` (see kiln_tops_strided_copy). */
static kiln_status out_view(struct kiln_kctx *k, size_t i, const struct kiln_tensor *x, int rank,
                            const int64_t *dims, const int64_t *strides, int64_t origin,
                            int out_rank, const int64_t *out_dims)
{
    struct kiln_tensor *o;
    KILN_TRY(kiln_out_tensor(k, i, x->dtype, out_rank, out_dims, &o));
    if (kiln_tensor_numel(o) == 0) return KILN_OK;
    char *ph = kiln_tops_placeholder(o);
    size_t esz = kiln_dtype_size(x->dtype);
    kiln_tops_strided_copy(o->data, (const unsigned char *)x->data + origin * (int64_t)esz, esz,
                           rank, dims, strides);
    return kiln_tops_own_strings(k, o, ph);
}

/* Transpose's `perm` (NULL when absent: reverse the dims). */
struct perm_state {
    const int64_t *perm;
    size_t n;
};

static kiln_status decode_transpose(struct kiln_kctx *k, struct perm_state *s)
{
    s->n = kiln_attr_ints(k, "perm", &s->perm);
    return KILN_OK;
}

KILN_PREPARE_WITH(transpose_prepare, struct perm_state, decode_transpose)

static kiln_status transpose_run(struct kiln_kctx *k)
{
    struct perm_state dec;
    const struct perm_state *ps;
    KILN_STATE_OR_DECODE(k, decode_transpose, dec, ps);
    const struct kiln_tensor *x;
    KILN_TRY(kiln_in_req(k, 0, &x));
    const int64_t *perm = ps->perm;
    size_t n = ps->n;
    int64_t p[KILN_MAX_RANK], xs[KILN_MAX_RANK], d[KILN_MAX_RANK], s[KILN_MAX_RANK];
    bool seen[KILN_MAX_RANK] = {0};
    if (perm && n != (size_t)x->rank)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "'perm' has %zu entries; input has rank %d", n,
                          x->rank);
    for (int a = 0; a < x->rank; a++) {
        int64_t v = perm ? perm[a] : x->rank - 1 - a;
        int pa;
        KILN_TRY(kiln_norm_axis(k, v, x->rank, "perm entry", &pa));
        if (seen[pa]) return kiln_kfail(k, KILN_E_INVALID_ARG, "'perm' repeats axis %d", pa);
        seen[pa] = true;
        p[a] = pa;
    }
    kiln_tops_strides(x->rank, x->dims, xs);
    for (int a = 0; a < x->rank; a++) {
        d[a] = x->dims[p[a]];
        s[a] = xs[p[a]];
    }
    return out_view(k, 0, x, x->rank, d, s, 0, x->rank, d);
}

/* ------------------------------------------------------------------ Concat */

static kiln_status decode_concat(struct kiln_kctx *k, struct axis_state *s)
{
    s->axis = kiln_attr_i(k, "axis", k->opset < 4 ? 1 : 0);
    return KILN_OK;
}

KILN_PREPARE_WITH(concat_prepare, struct axis_state, decode_concat)

static kiln_status concat_run(struct kiln_kctx *k)
{
    struct axis_state dec;
    const struct axis_state *as;
    KILN_STATE_OR_DECODE(k, decode_concat, dec, as);
    if (k->n_in == 0) return kiln_kfail(k, KILN_E_INVALID_MODEL, "needs at least one input");
    const struct kiln_tensor *x0;
    KILN_TRY(kiln_in_req(k, 0, &x0));
    if (x0->rank == 0) return kiln_kfail(k, KILN_E_INVALID_ARG, "inputs must have rank >= 1");
    int axis;
    KILN_TRY(kiln_norm_axis(k, as->axis, x0->rank, "axis", &axis));
    int64_t d[KILN_MAX_RANK];
    memcpy(d, x0->dims, sizeof d);
    d[axis] = 0;
    for (size_t i = 0; i < k->n_in; i++) {
        const struct kiln_tensor *x;
        KILN_TRY(kiln_in_req(k, i, &x));
        if (x->dtype != x0->dtype)
            return kiln_kfail(k, KILN_E_INVALID_ARG, "input %zu is %s; input 0 is %s", i,
                              kiln_dtype_name(x->dtype), kiln_dtype_name(x0->dtype));
        bool ok = x->rank == x0->rank;
        for (int a = 0; ok && a < x->rank; a++) ok = a == axis || x->dims[a] == x0->dims[a];
        if (!ok) {
            char sa[200], sb[200];
            return kiln_kfail(k, KILN_E_INVALID_ARG,
                              "input %zu has shape %s; expected %s except on axis %d", i,
                              kiln_shape_str(x->rank, x->dims, sa, sizeof sa),
                              kiln_shape_str(x0->rank, x0->dims, sb, sizeof sb), axis);
        }
        d[axis] += x->dims[axis];
    }
    struct kiln_tensor *o;
    KILN_TRY(kiln_out_tensor_raw(k, 0, x0->dtype, x0->rank, d, &o));
    size_t esz = kiln_dtype_size(x0->dtype);
    size_t outer = 1, inner = esz;
    for (int a = 0; a < axis; a++) outer *= (size_t)d[a];
    for (int a = axis + 1; a < x0->rank; a++) inner *= (size_t)d[a];
    if (kiln_tensor_numel(o) == 0) return KILN_OK;
    char *ph = kiln_tops_placeholder(o);
    /* Output rows in order, each filled from every input: the output is written once,
     * front to back, which matters when rows are short (channels-last Concat on the last
     * axis: one row per pixel). */
    unsigned char *out = o->data;
    const unsigned char *src[64];
    size_t rows[64], n_src = k->n_in <= 64 ? k->n_in : 0; /* inputs looked up once */
    for (size_t i = 0; i < n_src; i++) {
        const struct kiln_tensor *x = kiln_in(k, i);
        src[i] = x->data;
        rows[i] = (size_t)x->dims[axis] * inner;
    }
    for (size_t j = 0; j < outer; j++) {
        for (size_t i = 0; i < k->n_in; i++) {
            const struct kiln_tensor *x = i < n_src ? NULL : kiln_in(k, i);
            size_t row = x ? (size_t)x->dims[axis] * inner : rows[i];
            if (row == 0) continue;
            memcpy(out, (x ? (const unsigned char *)x->data : src[i]) + j * row, row);
            out += row;
        }
    }
    return kiln_tops_own_strings(k, o, ph);
}

/* ------------------------------------------------------------------ Split */

/* Split: axis, the `split` attribute (opsets 1..12; NULL when absent) and num_outputs (18+). */
struct split_state {
    int64_t axis, num_outputs;
    const int64_t *split;
    size_t ns;
};

static kiln_status decode_split(struct kiln_kctx *k, struct split_state *s)
{
    s->axis = kiln_attr_i(k, "axis", 0);
    s->num_outputs = kiln_attr_i(k, "num_outputs", 0);
    s->split = NULL;
    s->ns = k->opset < 13 ? kiln_attr_ints(k, "split", &s->split) : 0;
    return KILN_OK;
}

KILN_PREPARE_WITH(split_prepare, struct split_state, decode_split)

static kiln_status split_run(struct kiln_kctx *k)
{
    struct split_state dec;
    const struct split_state *ss;
    KILN_STATE_OR_DECODE(k, decode_split, dec, ss);
    const struct kiln_tensor *x;
    KILN_TRY(kiln_in_req(k, 0, &x));
    if (x->rank == 0) return kiln_kfail(k, KILN_E_INVALID_ARG, "input must have rank >= 1");
    int axis;
    KILN_TRY(kiln_norm_axis(k, ss->axis, x->rank, "axis", &axis));
    size_t nout = k->n_out;
    if (nout == 0) return kiln_kfail(k, KILN_E_INVALID_MODEL, "has no outputs");
    int64_t *sizes;
    KILN_TRY(kiln_scratch(k, nout * sizeof *sizes, (void **)&sizes));
    int64_t dim = x->dims[axis];
    /* The split sizes come from input 1 (opsets 1 and 13+) or the attribute (1..12). */
    const struct kiln_tensor *st = (k->opset >= 13 || k->opset == 1) ? kiln_in(k, 1) : NULL;
    const int64_t *sa = ss->split;
    size_t ns = ss->ns;
    bool given = st != NULL || sa != NULL;
    if (st) {
        ns = kiln_tensor_numel(st);
        if (!kiln_dtype_is_int(st->dtype) || st->rank > 1)
            return kiln_kfail(k, KILN_E_INVALID_ARG, "input 'split' must be a 1-D integer tensor");
    }
    if (given) {
        if (ns != nout)
            return kiln_kfail(k, KILN_E_INVALID_ARG, "'split' has %zu entries; node has %zu outputs",
                              ns, nout);
        int64_t sum = 0;
        for (size_t i = 0; i < nout; i++) {
            sizes[i] = st ? kiln_tensor_get_i64(st, i) : sa[i];
            if (sizes[i] < 0 || sizes[i] > dim)
                return kiln_kfail(k, KILN_E_INVALID_ARG, "'split' entry %zu is %lld", i,
                                  (long long)sizes[i]);
            sum += sizes[i];
        }
        if (sum != dim)
            return kiln_kfail(k, KILN_E_INVALID_ARG,
                              "'split' sums to %lld; axis %d has dim %lld", (long long)sum, axis,
                              (long long)dim);
    } else {
        int64_t parts = (int64_t)nout;
        if (k->opset >= 18) {
            parts = ss->num_outputs;
            if (parts <= 0 || parts != (int64_t)nout)
                return kiln_kfail(k, KILN_E_INVALID_MODEL,
                                  "without 'split', num_outputs (%lld) must equal the %zu outputs",
                                  (long long)parts, nout);
        } else if (dim % parts != 0) {
            return kiln_kfail(k, KILN_E_INVALID_ARG,
                              "axis %d of dim %lld does not split into %lld equal parts", axis,
                              (long long)dim, (long long)parts);
        }
        /* Opset 18: ceil(dim / n) per output, the last one smaller. */
        int64_t chunk = (dim + parts - 1) / parts, left = dim;
        for (size_t i = 0; i < nout; i++) {
            sizes[i] = left < chunk ? left : chunk;
            left -= sizes[i];
        }
    }
    int64_t xs[KILN_MAX_RANK];
    kiln_tops_strides(x->rank, x->dims, xs);
    int64_t d[KILN_MAX_RANK], off = 0;
    memcpy(d, x->dims, sizeof d);
    for (size_t i = 0; i < nout; i++) {
        d[axis] = sizes[i];
        if (kiln_out_wanted(k, i)) KILN_TRY(out_view(k, i, x, x->rank, d, xs, off, x->rank, d));
        off += sizes[i] * xs[axis];
    }
    return KILN_OK;
}

/* ------------------------------------------------------------------ Slice */

/* Slice before opset 10: the starts/ends/axes attributes (axes NULL when absent). */
struct slice_state {
    const int64_t *starts, *ends, *axes;
    size_t ns, ne, na;
};

static kiln_status decode_slice(struct kiln_kctx *k, struct slice_state *s)
{
    memset(s, 0, sizeof *s);
    if (k->opset < 10) {
        s->ns = kiln_attr_ints(k, "starts", &s->starts);
        s->ne = kiln_attr_ints(k, "ends", &s->ends);
        s->na = kiln_attr_ints(k, "axes", &s->axes);
    }
    return KILN_OK;
}

KILN_PREPARE_WITH(slice_prepare, struct slice_state, decode_slice)

static kiln_status slice_run(struct kiln_kctx *k)
{
    struct slice_state dec;
    const struct slice_state *ss;
    KILN_STATE_OR_DECODE(k, decode_slice, dec, ss);
    const struct kiln_tensor *x;
    KILN_TRY(kiln_in_req(k, 0, &x));
    int r = x->rank;
    int64_t starts[KILN_MAX_RANK], ends[KILN_MAX_RANK], axes[KILN_MAX_RANK], steps[KILN_MAX_RANK];
    size_t ns, ne, na = 0, nst = 0;
    bool has_axes = false;
    if (k->opset < 10) {
        ns = ss->ns;
        if (ns > (size_t)r) goto too_many;
        if (ns) memcpy(starts, ss->starts, ns * sizeof *starts);
        ne = ss->ne;
        if (ne > (size_t)r) goto too_many;
        if (ne) memcpy(ends, ss->ends, ne * sizeof *ends);
        na = ss->na;
        if (na > (size_t)r) goto too_many;
        if (ss->axes) memcpy(axes, ss->axes, na * sizeof *axes);
        has_axes = ss->axes != NULL;
    } else {
        const struct kiln_tensor *t;
        KILN_TRY(kiln_in_req(k, 1, &t));
        KILN_TRY(kiln_tops_read_ints(k, t, "starts", starts, (size_t)r, &ns));
        KILN_TRY(kiln_in_req(k, 2, &t));
        KILN_TRY(kiln_tops_read_ints(k, t, "ends", ends, (size_t)r, &ne));
        if ((t = kiln_in(k, 3)) != NULL) {
            KILN_TRY(kiln_tops_read_ints(k, t, "axes", axes, (size_t)r, &na));
            has_axes = true;
        }
        if ((t = kiln_in(k, 4)) != NULL)
            KILN_TRY(kiln_tops_read_ints(k, t, "steps", steps, (size_t)r, &nst));
    }
    if (ne != ns || (has_axes && na != ns) || (nst && nst != ns))
        return kiln_kfail(k, KILN_E_INVALID_ARG,
                          "starts/ends/axes/steps have %zu/%zu/%zu/%zu entries; expected equal",
                          ns, ne, has_axes ? na : ns, nst ? nst : ns);
    int64_t xs[KILN_MAX_RANK], d[KILN_MAX_RANK], s[KILN_MAX_RANK], origin = 0;
    bool seen[KILN_MAX_RANK] = {0};
    kiln_tops_strides(r, x->dims, xs);
    memcpy(d, x->dims, sizeof d);
    memcpy(s, xs, sizeof s);
    for (size_t j = 0; j < ns; j++) {
        int a;
        KILN_TRY(kiln_norm_axis(k, has_axes ? axes[j] : (int64_t)j, r, "axes entry", &a));
        if (seen[a]) return kiln_kfail(k, KILN_E_INVALID_ARG, "axis %d is sliced twice", a);
        seen[a] = true;
        int64_t step = nst ? steps[j] : 1, dim = x->dims[a], b = starts[j], e = ends[j], len;
        if (step == 0) return kiln_kfail(k, KILN_E_INVALID_ARG, "steps entry %zu is 0", j);
        if (b < 0) b += dim;
        if (e < 0) e += dim;
        if (step > 0) {
            b = b < 0 ? 0 : b > dim ? dim : b;
            e = e < 0 ? 0 : e > dim ? dim : e;
            len = e > b ? (e - b - 1) / step + 1 : 0;
        } else {
            b = b < 0 ? -1 : b > dim - 1 ? dim - 1 : b;
            e = e < -1 ? -1 : e > dim - 1 ? dim - 1 : e;
            len = b > e ? (b - e - 1) / -step + 1 : 0;
        }
        d[a] = len;
        s[a] = xs[a] * step;
        if (len > 0) origin += b * xs[a];
    }
    return out_view(k, 0, x, r, d, s, origin, r, d);
too_many:
    return kiln_kfail(k, KILN_E_INVALID_ARG, "slice attributes have more entries than rank %d", r);
}

/* ------------------------------------------------------------------ Expand */

static kiln_status expand_run(struct kiln_kctx *k)
{
    const struct kiln_tensor *x, *st;
    KILN_TRY(kiln_in_req(k, 0, &x));
    KILN_TRY(kiln_in_req(k, 1, &st));
    int64_t shape[KILN_MAX_RANK];
    size_t n;
    KILN_TRY(kiln_tops_read_ints(k, st, "shape", shape, KILN_MAX_RANK, &n));
    int r = x->rank > (int)n ? x->rank : (int)n;
    int64_t xs[KILN_MAX_RANK], d[KILN_MAX_RANK], s[KILN_MAX_RANK];
    kiln_tops_strides(x->rank, x->dims, xs);
    for (int a = 0; a < r; a++) {
        int ax = a - (r - x->rank), as = a - (r - (int)n);
        int64_t xd = ax >= 0 ? x->dims[ax] : 1, sd = as >= 0 ? shape[as] : 1;
        if (sd < 0 || (xd != sd && xd != 1 && sd != 1)) {
            char sa[200], sb[200];
            return kiln_kfail(k, KILN_E_INVALID_ARG, "cannot broadcast input %s to shape %s",
                              kiln_shape_str(x->rank, x->dims, sa, sizeof sa),
                              kiln_shape_str((int)n, shape, sb, sizeof sb));
        }
        d[a] = xd == 1 ? sd : xd;
        s[a] = xd == 1 ? 0 : xs[ax];
    }
    return out_view(k, 0, x, r, d, s, 0, r, d);
}

/* ------------------------------------------------------------------ Tile */

static kiln_status tile_run(struct kiln_kctx *k)
{
    const struct kiln_tensor *x, *rt;
    KILN_TRY(kiln_in_req(k, 0, &x));
    KILN_TRY(kiln_in_req(k, 1, &rt));
    int64_t rep[KILN_MAX_RANK];
    size_t n;
    if (k->opset < 6) {
        /* Opset 1: scalar `tiles` copies along scalar `axis`. */
        const struct kiln_tensor *at;
        KILN_TRY(kiln_in_req(k, 2, &at));
        int64_t t, av;
        size_t c1, c2;
        KILN_TRY(kiln_tops_read_ints(k, rt, "tiles", &t, 1, &c1));
        KILN_TRY(kiln_tops_read_ints(k, at, "axis", &av, 1, &c2));
        if (c1 != 1 || c2 != 1)
            return kiln_kfail(k, KILN_E_INVALID_ARG, "'tiles' and 'axis' must be scalars");
        int a;
        KILN_TRY(kiln_norm_axis(k, av, x->rank, "axis", &a));
        for (int i = 0; i < x->rank; i++) rep[i] = i == a ? t : 1;
        n = (size_t)x->rank;
    } else {
        KILN_TRY(kiln_tops_read_ints(k, rt, "repeats", rep, KILN_MAX_RANK, &n));
    }
    if (n != (size_t)x->rank)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "'repeats' has %zu entries; input has rank %d", n,
                          x->rank);
    /* Output (r0, d0, r1, d1, ...) read with stride 0 on the repeat dims. */
    int64_t xs[KILN_MAX_RANK], d[KILN_TOPS_MAX_RANK], s[KILN_TOPS_MAX_RANK], od[KILN_MAX_RANK];
    kiln_tops_strides(x->rank, x->dims, xs);
    for (int a = 0; a < x->rank; a++) {
        if (rep[a] < 0)
            return kiln_kfail(k, KILN_E_INVALID_ARG, "repeats[%d] is %lld; expected >= 0", a,
                              (long long)rep[a]);
        if (x->dims[a] && rep[a] > (int64_t)(KILN_MAX_NUMEL / (uint64_t)x->dims[a]))
            return kiln_kfail(k, KILN_E_LIMIT, "repeats[%d] = %lld is too large", a,
                              (long long)rep[a]);
        d[2 * a] = rep[a];
        s[2 * a] = 0;
        d[2 * a + 1] = x->dims[a];
        s[2 * a + 1] = xs[a];
        od[a] = rep[a] * x->dims[a];
    }
    return out_view(k, 0, x, 2 * x->rank, d, s, 0, x->rank, od);
}

/* ------------------------------------------------------------------ Pad */

/* Source index along one axis for output position o, or -1 for the constant. */
static int64_t pad_src(int64_t o, int64_t before, int64_t dim, int mode)
{
    int64_t i = o - before;
    if (i >= 0 && i < dim) return i;
    switch (mode) {
    case 1: /* reflect: mirror without repeating the edge, period 2(dim-1) */
        if (dim == 1) return 0;
        {
            int64_t p = 2 * (dim - 1), m = ((i % p) + p) % p;
            return m >= dim ? p - m : m;
        }
    case 2: return i < 0 ? 0 : dim - 1; /* edge */
    case 3: return ((i % dim) + dim) % dim; /* wrap */
    default: return -1;
    }
}

/* Pad: the mode (0 constant, 1 reflect, 2 edge, 3 wrap; ms its name) and, before opset 11,
 * the pads (`paddings` at opset 1) and the constant `value`. */
struct pad_state {
    int mode;
    const char *ms;
    const int64_t *pads;
    size_t np;
    float value;
};

static kiln_status decode_pad(struct kiln_kctx *k, struct pad_state *s)
{
    s->pads = NULL;
    s->np = 0;
    s->value = 0;
    if (k->opset < 11) {
        s->np = kiln_attr_ints(k, k->opset < 2 ? "paddings" : "pads", &s->pads);
        s->value = kiln_attr_f(k, "value", 0.0f);
    }
    const char *ms = kiln_attr_s(k, "mode", "constant");
    s->ms = ms;
    s->mode = strcmp(ms, "constant") == 0  ? 0
              : strcmp(ms, "reflect") == 0 ? 1
              : strcmp(ms, "edge") == 0    ? 2
              : strcmp(ms, "wrap") == 0    ? 3
                                           : -1;
    if (s->mode < 0 || (s->mode == 3 && k->opset < 19))
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "mode '%s' is not valid at this opset", ms);
    return KILN_OK;
}

KILN_PREPARE_WITH(pad_prepare, struct pad_state, decode_pad)

static kiln_status pad_run(struct kiln_kctx *k)
{
    struct pad_state dec;
    const struct pad_state *ps;
    KILN_STATE_OR_DECODE(k, decode_pad, dec, ps);
    const struct kiln_tensor *x;
    KILN_TRY(kiln_in_req(k, 0, &x));
    int r = x->rank;
    size_t esz = kiln_dtype_size(x->dtype);
    int64_t pads[2 * KILN_MAX_RANK], axes_v[KILN_MAX_RANK];
    size_t np = 0, na = 0;
    bool has_axes = false;
    unsigned char cval[16] = {0};
    if (k->opset < 11) {
        np = ps->np;
        if (np > 2 * (size_t)r) np = 2 * (size_t)r + 1; /* reported below */
        else if (np) memcpy(pads, ps->pads, np * sizeof *pads);
        struct kiln_tensor tmp = {.dtype = x->dtype, .rank = 0, .data = cval};
        kiln_tensor_set_f64(&tmp, 0, ps->value);
    } else {
        const struct kiln_tensor *t;
        KILN_TRY(kiln_in_req(k, 1, &t));
        KILN_TRY(kiln_tops_read_ints(k, t, "pads", pads, 2 * KILN_MAX_RANK, &np));
        if ((t = kiln_in(k, 2)) != NULL && kiln_tensor_numel(t) > 0) {
            if (t->dtype != x->dtype)
                return kiln_kfail(k, KILN_E_INVALID_ARG, "constant_value is %s; data is %s",
                                  kiln_dtype_name(t->dtype), kiln_dtype_name(x->dtype));
            memcpy(cval, t->data, esz);
        }
        if (k->opset >= 18 && (t = kiln_in(k, 3)) != NULL) {
            KILN_TRY(kiln_tops_read_ints(k, t, "axes", axes_v, KILN_MAX_RANK, &na));
            has_axes = true;
        }
    }
    if (!has_axes) {
        na = (size_t)r;
        for (int a = 0; a < r; a++) axes_v[a] = a;
    }
    if (np != 2 * na)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "'pads' has %zu entries; expected %zu", np,
                          2 * na);
    const char *ms = ps->ms;
    int mode = ps->mode;
    int64_t before[KILN_MAX_RANK] = {0}, after[KILN_MAX_RANK] = {0}, od[KILN_MAX_RANK];
    bool seen[KILN_MAX_RANK] = {0};
    for (size_t j = 0; j < na; j++) {
        int a;
        KILN_TRY(kiln_norm_axis(k, axes_v[j], r, "axes entry", &a));
        if (seen[a]) return kiln_kfail(k, KILN_E_INVALID_ARG, "axis %d is padded twice", a);
        seen[a] = true;
        before[a] = pads[j];
        after[a] = pads[j + na];
    }
    size_t total = 0;
    for (int a = 0; a < r; a++) {
        if (before[a] < -x->dims[a] || after[a] < -x->dims[a] ||
            before[a] > (int64_t)KILN_MAX_NUMEL || after[a] > (int64_t)KILN_MAX_NUMEL)
            return kiln_kfail(k, KILN_E_INVALID_ARG, "pads %lld/%lld are invalid for axis %d of dim %lld",
                              (long long)before[a], (long long)after[a], a, (long long)x->dims[a]);
        od[a] = x->dims[a] + before[a] + after[a];
        if (od[a] < 0)
            return kiln_kfail(k, KILN_E_INVALID_ARG, "pads make axis %d negative (%lld)", a,
                              (long long)od[a]);
        if (mode != 0 && x->dims[a] == 0 && od[a] > 0)
            return kiln_kfail(k, KILN_E_INVALID_ARG, "cannot %s-pad axis %d of dim 0", ms, a);
        total += (size_t)od[a];
    }
    struct kiln_tensor *o;
    KILN_TRY(kiln_out_tensor(k, 0, x->dtype, r, od, &o));
    size_t n = kiln_tensor_numel(o);
    if (n == 0) return KILN_OK;
    char *ph = kiln_tops_placeholder(o);
    if (r == 0) {
        memcpy(o->data, x->data, esz);
        return kiln_tops_own_strings(k, o, ph);
    }
    /* map[a][o]: the source index along axis a of output position o, -1 for the constant. */
    int64_t *map, *offs[KILN_MAX_RANK], xs[KILN_MAX_RANK];
    KILN_TRY(kiln_scratch(k, total * sizeof *map, (void **)&map));
    kiln_tops_strides(r, x->dims, xs);
    size_t p = 0;
    for (int a = 0; a < r; a++) {
        offs[a] = map + p;
        for (int64_t i = 0; i < od[a]; i++) offs[a][i] = pad_src(i, before[a], x->dims[a], mode);
        p += (size_t)od[a];
    }
    kiln_tops_map_copy(o->data, x->data, esz, r, od, (const int64_t *const *)offs, xs, cval);
    return kiln_tops_own_strings(k, o, ph);
}

/* ------------------------------------------------------------------ DepthToSpace / SpaceToDepth */

/* DepthToSpace / SpaceToDepth: blocksize and (DepthToSpace) whether the mode is CRD. */
struct depth_state {
    int64_t b;
    bool crd;
};

static kiln_status decode_depth(struct kiln_kctx *k, struct depth_state *s, bool to_space)
{
    s->b = kiln_attr_i(k, "blocksize", 0);
    s->crd = false;
    if (s->b <= 0 || s->b > 65536)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "blocksize %lld must be positive",
                          (long long)s->b);
    if (to_space) {
        const char *mode = kiln_attr_s(k, "mode", "DCR");
        s->crd = strcmp(mode, "CRD") == 0;
        if (!s->crd && strcmp(mode, "DCR") != 0)
            return kiln_kfail(k, KILN_E_INVALID_MODEL, "mode '%s' is not DCR or CRD", mode);
    }
    return KILN_OK;
}

static kiln_status decode_d2s(struct kiln_kctx *k, struct depth_state *s)
{
    return decode_depth(k, s, true);
}

static kiln_status decode_s2d(struct kiln_kctx *k, struct depth_state *s)
{
    return decode_depth(k, s, false);
}

KILN_PREPARE_WITH(d2s_prepare, struct depth_state, decode_d2s)
KILN_PREPARE_WITH(s2d_prepare, struct depth_state, decode_s2d)

static kiln_status depth_space_run(struct kiln_kctx *k, bool to_space)
{
    struct depth_state dec;
    const struct depth_state *ds;
    KILN_STATE_OR_DECODE(k, to_space ? decode_d2s : decode_s2d, dec, ds);
    const struct kiln_tensor *x;
    KILN_TRY(kiln_in_req(k, 0, &x));
    int64_t b = ds->b;
    if (x->rank != 4)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input has rank %d; expected 4 (N, C, H, W)",
                          x->rank);
    int64_t N = x->dims[0], C = x->dims[1], H = x->dims[2], W = x->dims[3];
    int64_t d[6], s[6], od[4];
    if (to_space) {
        if (C % (b * b) != 0)
            return kiln_kfail(k, KILN_E_INVALID_ARG, "channels %lld are not divisible by %lld",
                              (long long)C, (long long)(b * b));
        int64_t c = C / (b * b);
        bool crd = ds->crd;
        /* Output (N, c, H, b1, W, b2); input channel = DCR: (b1, b2, c), CRD: (c, b1, b2). */
        int64_t sc = crd ? b * b * H * W : H * W, sb1 = crd ? b * H * W : b * c * H * W,
                sb2 = crd ? H * W : c * H * W;
        int64_t dd[6] = {N, c, H, b, W, b}, ss[6] = {C * H * W, sc, W, sb1, 1, sb2};
        memcpy(d, dd, sizeof d);
        memcpy(s, ss, sizeof s);
        od[0] = N, od[1] = c, od[2] = H * b, od[3] = W * b;
    } else {
        if (H % b != 0 || W % b != 0)
            return kiln_kfail(k, KILN_E_INVALID_ARG, "H %lld and W %lld must be divisible by %lld",
                              (long long)H, (long long)W, (long long)b);
        int64_t h = H / b, w = W / b;
        /* Output (N, b1, b2, C, h, w) from input (N, C, h, b1, w, b2). */
        int64_t dd[6] = {N, b, b, C, h, w}, ss[6] = {C * H * W, W, 1, H * W, b * W, b};
        memcpy(d, dd, sizeof d);
        memcpy(s, ss, sizeof s);
        od[0] = N, od[1] = C * b * b, od[2] = h, od[3] = w;
    }
    return out_view(k, 0, x, 6, d, s, 0, 4, od);
}

static kiln_status depth_to_space_run(struct kiln_kctx *k) { return depth_space_run(k, true); }
static kiln_status space_to_depth_run(struct kiln_kctx *k) { return depth_space_run(k, false); }

/* ------------------------------------------------------------------ table */

const struct kiln_cpu_op kiln_cpu_ops_tensor[] = {
    {"Reshape", "", 1, 0, reshape_run, reshape_prepare, KILN_OP_INPLACE},
    {"Flatten", "", 1, 0, flatten_run, flatten_prepare, KILN_OP_INPLACE},
    {"Squeeze", "", 1, 0, squeeze_run, axes_prepare, KILN_OP_INPLACE},
    {"Unsqueeze", "", 1, 0, unsqueeze_run, axes_prepare, KILN_OP_INPLACE},
    {"Shape", "", 1, 0, shape_run, shape_prepare, 0},
    {"Size", "", 1, 0, size_run, NULL, 0},
    {"Transpose", "", 1, 0, transpose_run, transpose_prepare, 0},
    {"Concat", "", 1, 0, concat_run, concat_prepare, 0},
    {"Split", "", 1, 0, split_run, split_prepare, 0},
    {"Slice", "", 1, 0, slice_run, slice_prepare, 0},
    {"Expand", "", 8, 0, expand_run, NULL, 0},
    {"Tile", "", 1, 0, tile_run, NULL, 0},
    {"Pad", "", 1, 0, pad_run, pad_prepare, 0},
    {"DepthToSpace", "", 1, 0, depth_to_space_run, d2s_prepare, 0},
    {"SpaceToDepth", "", 1, 0, space_to_depth_run, s2d_prepare, 0},
    {"Constant", "", 1, 0, kiln_tops_constant, kiln_tops_constant_prepare, 0},
    {"ConstantOfShape", "", 9, 0, kiln_tops_constant_of_shape, kiln_tops_constant_of_shape_prepare,
     0},
    {"Range", "", 11, 0, kiln_tops_range, NULL, 0},
    {"OneHot", "", 9, 0, kiln_tops_onehot, kiln_tops_onehot_prepare, 0},
    {"Trilu", "", 14, 0, kiln_tops_trilu, kiln_tops_trilu_prepare, 0},
    {"EyeLike", "", 9, 0, kiln_tops_eyelike, kiln_tops_eyelike_prepare, 0},
    {"Compress", "", 9, 0, kiln_tops_compress, kiln_tops_compress_prepare, 0},
    {"NonZero", "", 9, 0, kiln_tops_nonzero, NULL, 0},
    {"ReverseSequence", "", 10, 0, kiln_tops_reverse_sequence, kiln_tops_reverse_sequence_prepare,
     0},
    {"Unique", "", 11, 0, kiln_tops_unique, kiln_tops_unique_prepare, 0},
    {"Resize", "", 10, 0, kiln_tops_resize, kiln_tops_resize_prepare, 0},
    {"Upsample", "", 7, 9, kiln_tops_upsample, kiln_tops_upsample_prepare, 0},
    {"GridSample", "", 16, 0, kiln_tops_grid_sample, kiln_tops_grid_sample_prepare, 0},
    {"Col2Im", "", 18, 0, kiln_tops_col2im, kiln_tops_col2im_prepare, 0},
    {"CenterCropPad", "", 18, 0, kiln_tops_center_crop_pad, kiln_tops_center_crop_pad_prepare, 0},
    {0},
};
